// JWK/JWKS (RFC 7517/7518), JWS compact serialization (RFC 7515) and JWT claims (RFC 7519)
// for the gateway's token authentication and its OAuth2 token endpoint. mbedTLS stays in
// jwt.cpp; nothing here shows one of its types.
//
// Security rules, all fail-closed:
//  - Every key is pinned to one algorithm: its JWK "alg", or the one its type implies
//    (EC P-256 → ES256, P-384 → ES384, P-521 → ES512, RSA → RS256, oct → HS256). A token whose
//    header names another algorithm is refused, so an RSA public key is never used as an HMAC
//    secret (the RS/HS confusion attack) and `alg: none` never verifies.
//  - Keys come only from the configured key set: `jwk`, `jku`, `x5u` headers are ignored.
//  - Any `crit` header is refused (no extension is understood).
//  - base64url is strict: no padding, no characters outside the alphabet, canonical tail bits.
//  - Signature lengths are exact (ES256: 64-byte r||s, RS256: modulus length, HS256: 32).
//  - A duplicated header member or claim takes its lexically last value (Json::parse keeps
//    the last), as RFC 7515 §5.2 and RFC 7519 §4 allow.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/core/status.hpp"

namespace civicbus::gateway {

enum class JwsAlgorithm { kEs256, kEs384, kEs512, kRs256, kHs256 };

// "ES256", ...
std::string_view jws_algorithm_name(JwsAlgorithm alg);
// Fails for "none" and for every algorithm civicbus does not implement, naming it.
Result<JwsAlgorithm> parse_jws_algorithm(std::string_view name);

// Strict RFC 7515 §2 base64url: no padding, alphabet only, unused tail bits zero.
Result<std::string> jose_base64url_decode(std::string_view text);

// One key, loaded into mbedTLS. Copies share the loaded key (immutable after parsing;
// operations on it are serialised internally, so a Jwk may be used from any thread).
class Jwk {
 public:
  enum class Type { kEc, kRsa, kOct };

  // Parses one JWK object. Errors name the key and the field: "JWK key 'k1': field 'x' ...".
  // `label` names the key in errors ("JWKS key 2", followed by "(kid 'k1')" when it has one).
  static Result<Jwk> parse(const Json& jwk, std::string_view label = "JWK key");
  static Result<Jwk> parse_text(std::string_view text);

  // New signing keys (the token endpoint's). RSA bits: 2048..8192.
  static Result<Jwk> generate_ec(RandomSource& random, std::string kid,
                                 JwsAlgorithm alg = JwsAlgorithm::kEs256);
  static Result<Jwk> generate_rsa(RandomSource& random, std::string kid, unsigned bits = 2048);
  // An HS256 key. Secrets shorter than 32 bytes are refused (RFC 7518 §3.2).
  static Result<Jwk> from_secret(std::string_view secret, std::string kid);

  Type type() const;
  const std::string& kid() const;
  const std::string& use() const;  // "" when absent
  JwsAlgorithm algorithm() const;  // the pinned algorithm
  bool can_sign() const;           // has private parts (always true for oct)

  // The public JWK (no private members). Fails for oct keys, which have no public part.
  Result<Json> public_jwk() const;
  // The full JWK, private members included (for storing a generated key).
  Json private_jwk() const;

  // Checks `signature` over `signing_input` with this key's pinned algorithm.
  // kUnauthenticated when it does not verify.
  Status verify(std::string_view signing_input, std::string_view signature) const;
  // Signs with this key's pinned algorithm (ES*: raw r||s). `random` feeds ECDSA nonces and
  // RSA blinding.
  Result<std::string> sign(std::string_view signing_input, RandomSource& random) const;

  struct Impl;

 private:
  friend class JwkSet;  // compares HMAC secrets with public keys (JwkSet::add)
  explicit Jwk(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// A JWKS: `{"keys": [...]}`. Key ids must be unique when present, and an HMAC secret may not
// be (or contain, or be the PEM of) a public key of the set: such a "secret" is public.
class JwkSet {
 public:
  JwkSet() = default;
  // add() for each key, in order.
  static Result<JwkSet> from_keys(std::vector<Jwk> keys);
  static Result<JwkSet> parse(const Json& jwks);
  static Result<JwkSet> parse_text(std::string_view text);

  // kAlreadyExists for a duplicate kid; kInvalidArgument for an HMAC secret that is a public key.
  Status add(Jwk key);
  const std::vector<Jwk>& keys() const { return keys_; }
  const Jwk* find(std::string_view kid) const;
  // The public JWKS of the asymmetric keys (oct keys are left out), for /.well-known/jwks.json.
  Json public_jwks() const;

 private:
  std::vector<Jwk> keys_;
};

// A parsed, not yet verified, compact JWS.
struct JwsParts {
  Json header;                // the protected header, an object
  JwsAlgorithm algorithm;     // header "alg"
  std::string kid;            // header "kid", "" when absent
  std::string payload;        // decoded
  std::string signature;      // decoded
  std::string signing_input;  // ASCII(BASE64URL(header) '.' BASE64URL(payload))
};

// Syntax only: three parts, strict base64url, a JSON object header with a supported `alg`,
// no `crit`. Never verifies anything.
Result<JwsParts> parse_jws_compact(std::string_view token);

// Parses and verifies with the key named by `kid` (or, without a kid, every key pinned to the
// header's algorithm). Returns the parts of a token whose signature verified.
Result<JwsParts> verify_jws_compact(std::string_view token, const JwkSet& keys);

// Signs `payload` with `key`; the header gets alg, kid (when the key has one) and the members
// of `extra_header` (an object; alg/kid/crit in it are ignored).
Result<std::string> sign_jws_compact(std::string_view payload, const Jwk& key, RandomSource& random,
                                     const Json& extra_header = Json());

struct JwtVerifierOptions {
  // Required `iss`; empty: not checked.
  std::string issuer;
  // The token's `aud` (string or array) must contain one of these; empty: not checked.
  std::vector<std::string> audiences;
  // Allowed clock skew for exp, nbf and iat.
  std::chrono::seconds leeway{60};
  // A token without `exp` is refused (default), since it would never expire.
  bool require_exp = true;
};

struct Jwt {
  Json header;
  Json claims;  // an object
};

// Verifies JWTs against a key set. Holds the keys and options by value and the clock by
// reference (it must outlive the verifier). Thread-safe.
class JwtVerifier {
 public:
  JwtVerifier(JwkSet keys, JwtVerifierOptions options, const Clock& clock)
      : keys_(std::move(keys)), options_(std::move(options)), clock_(&clock) {}

  // kUnauthenticated with the reason ("token expired at ...", "wrong audience ...").
  Result<Jwt> verify(std::string_view token) const;

 private:
  JwkSet keys_;
  JwtVerifierOptions options_;
  const Clock* clock_;
};

// Signs `claims` (an object) as a JWT with header typ "JWT".
Result<std::string> sign_jwt(const Json& claims, const Jwk& key, RandomSource& random);

}  // namespace civicbus::gateway
