// RFC 9421 HTTP Message Signatures with `hmac-sha256` for the gateway's HMAC authentication,
// with RFC 9530 `Content-Digest` (sha-256, sha-512) checked against the body. mbedTLS stays
// in the .cpp.
//
// Fail closed: every verification failure is kUnauthenticated with a reason a client can act
// on (unknown key, bad signature, stale, replay, digest mismatch, missing component, malformed
// field). Caller configuration errors are kInvalidArgument.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/http/message.hpp"

namespace civicbus::gateway {

// The parameters of one signature (one member of Signature-Input), typed.
struct HttpSignatureParams {
  std::vector<std::string> components;  // covered component identifiers, in order
  std::optional<std::int64_t> created;  // Unix seconds
  std::optional<std::int64_t> expires;  // Unix seconds
  std::optional<std::string> nonce;
  std::optional<std::string> alg;
  std::optional<std::string> keyid;
  std::optional<std::string> tag;
  // Parameter names in the order they are serialized (the signer's order matters to the
  // signature base); empty: created, expires, nonce, alg, keyid, tag.
  std::vector<std::string> param_order;
};

// Returns the shared secret for a keyid, or nullopt when the keyid is unknown. Called on the
// verifying thread during verify(); must be thread-safe if verify() is called concurrently.
using HmacKeyLookup = std::function<std::optional<std::string>(std::string_view keyid)>;

struct HttpSignatureVerifierOptions {
  // The signature label to verify; empty: the first member of Signature-Input.
  std::string label;
  // Scheme used for @target-uri / @scheme when the request-target is in origin-form.
  std::string scheme = "https";
  // `created` must be present and within ±clock_skew of the clock.
  bool require_created = true;
  std::chrono::seconds clock_skew{300};
  // Required coverage: @method; @target-uri, or both @path and @authority (or @request-target
  // with @authority); content-digest when the request has a body.
  bool require_method = true;
  bool require_target = true;
  bool require_content_digest_with_body = true;
  // Further components that must be covered (lower-case, e.g. "date").
  std::vector<std::string> required_components;
  // A non-empty body (or a covered content-digest) requires a Content-Digest that matches.
  bool check_content_digest = true;
  // Replay cache: (keyid, nonce) when a nonce is given, else (keyid, signature bytes), kept
  // for 2 × clock_skew. At capacity the oldest entry is evicted.
  bool reject_replays = true;
  std::size_t replay_cache_capacity = 100'000;
};

// What a successful verification established.
struct VerifiedHttpSignature {
  std::string label;
  std::string keyid;
  HttpSignatureParams params;
};

// Verifies hmac-sha256 signatures. Thread-safe (the replay cache has its own lock). The clock
// must outlive the verifier.
class HttpSignatureVerifier {
 public:
  HttpSignatureVerifier(HmacKeyLookup keys, const Clock& clock,
                        HttpSignatureVerifierOptions options = {});
  ~HttpSignatureVerifier();
  HttpSignatureVerifier(HttpSignatureVerifier&&) noexcept;
  HttpSignatureVerifier& operator=(HttpSignatureVerifier&&) noexcept;

  Result<VerifiedHttpSignature> verify(const http::HttpRequest& request) const;

  // Entries currently in the replay cache (for tests and metrics).
  std::size_t replay_cache_size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct HttpSignatureSignOptions {
  std::string label = "sig1";
  std::vector<std::string> components = {"@method", "@target-uri", "content-digest"};
  std::string keyid;
  std::string key;                      // the shared secret
  std::optional<std::int64_t> created;  // Unix seconds; set it (e.g. from a Clock)
  std::optional<std::int64_t> expires;
  std::optional<std::string> nonce;
  std::optional<std::string> tag;
  bool include_alg = false;  // adds alg="hmac-sha256"
  std::string scheme = "https";
  // Sets Content-Digest (sha-256) from the body first when content-digest is covered and the
  // header is absent.
  bool add_content_digest = true;
};

// Adds Signature-Input and Signature members under options.label (replacing any existing
// Signature-Input/Signature fields).
Status sign_http_request(http::HttpRequest& request, const HttpSignatureSignOptions& options);

// "sha-256=:<base64>:" for the body (RFC 9530).
std::string content_digest_sha256(std::string_view body);

// Parses one Signature-Input member value (an inner list with parameters), strictly.
Result<HttpSignatureParams> parse_signature_params(std::string_view inner_list);
// The canonical RFC 8941 serialization of params (the @signature-params value).
std::string serialize_signature_params(const HttpSignatureParams& params);

// The RFC 9421 §2.5 signature base for a request and params.
Result<std::string> http_signature_base(const http::HttpRequest& request,
                                        const HttpSignatureParams& params,
                                        std::string_view scheme = "https");

}  // namespace civicbus::gateway
