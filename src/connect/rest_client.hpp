// RestClient: what every HTTP connector needs around http::HttpClient — URLs,
// query strings, authentication (bearer, basic, API key, OAuth 2.0 client
// credentials with a cached token), and bounded retries that honour
// Retry-After. Private to the connect area.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "civicbus/connect/connector.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/http/client.hpp"
#include "civicbus/http/message.hpp"
#include "core/json_text.hpp"

namespace civicbus::connect::detail {

// An absolute http(s) URL split into what HttpClient needs.
struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;
  std::uint16_t port = 0;
  std::string target = "/";  // path and query, as sent

  // kInvalidArgument naming the URL when it is not an absolute http(s) URL.
  static Result<Url> parse(std::string_view text);
  // `reference` resolved against this URL: absolute URLs stand alone, "/x"
  // keeps the host.
  Result<Url> resolve(std::string_view reference) const;
  std::string host_port() const;
  std::string to_string() const;
};

using QueryParams = std::vector<std::pair<std::string, std::string>>;

// RFC 3986 percent-encoding of everything but unreserved characters.
std::string percent_encode(std::string_view text);
// "a=1&b=x%20y" (also the application/x-www-form-urlencoded body, which encodes
// the same way for the characters we send).
std::string encode_query(const QueryParams& params);
// `target` with `params` appended after '?' or '&'.
std::string append_query(std::string target, const QueryParams& params);
// The URI of the first `Link` field value with rel="next" (RFC 8288), or empty.
std::string next_link(const http::HttpHeaders& headers);
// A JSON scalar as query-string text (strings as is, numbers as JSON).
using civicbus::detail::scalar_text;

struct RetryPolicy {
  // Retries after the first attempt for 429, 503 and connection failures.
  int max_retries = 3;
  std::chrono::milliseconds initial_backoff{200};  // doubled each retry
  std::chrono::milliseconds max_backoff{5'000};
  // A Retry-After longer than this is cut to it (a server asking for an hour
  // would stall a run).
  std::chrono::milliseconds max_retry_after{30'000};

  // Reads {"max_retries", "initial_backoff_ms", "max_backoff_ms",
  // "max_retry_after_ms"}.
  static Result<RetryPolicy> from_json(const Json* config);
};

struct AuthConfig {
  enum class Type { kNone, kBearer, kBasic, kApiKey, kOAuth2 };
  Type type = Type::kNone;
  std::string token;                   // bearer
  std::string username, password;      // basic
  std::string key_name = "X-API-Key";  // api_key: header or query parameter name
  std::string key_value;
  bool key_in_query = false;
  std::string token_url;  // oauth2 client credentials (RFC 6749 §4.4)
  std::string client_id, client_secret, scope;

  // Reads the "auth" object of a connector config ({"type": "bearer", "token":
  // …}).
  static Result<AuthConfig> from_json(const Json* auth);
  // The JSON Schema of that object, secrets marked.
  static Json schema();
};

struct RestResponse {
  int status = 0;
  http::HttpHeaders headers;
  std::string body;
  std::string url;  // what was asked, for errors
};

// Thread-compatible: one connector call uses it at a time (the token cache is
// locked anyway).
class RestClient {
 public:
  // `max_body_bytes`: the largest response body accepted (kResourceExhausted beyond).
  static Result<std::unique_ptr<RestClient>> create(AuthConfig auth, RetryPolicy retry,
                                                    std::chrono::milliseconds timeout,
                                                    std::size_t max_body_bytes = 8 << 20);

  // Sends and retries as the policy says; any final status code is a result,
  // except that 429/503 after the last retry and connection failures are
  // kUnavailable. A 401 with OAuth fetches a fresh token and tries once more.
  Result<RestResponse> send(std::string_view method, const Url& url, const QueryParams& query,
                            std::string body = {}, std::string content_type = {},
                            const http::HttpHeaders& extra_headers = {});
  // GET returning the parsed body of a 2xx answer; other answers become errors
  // by status (401 kUnauthenticated, 403 kPermissionDenied, 404 kNotFound, 5xx
  // kUnavailable, other 4xx kInvalidArgument), each naming the URL and quoting
  // the start of the body.
  Result<Json> get_json(const Url& url, const QueryParams& query = {});

  // How many access tokens were fetched (tests check caching and refresh).
  int tokens_fetched() const;

 private:
  RestClient() = default;
  Result<http::HttpResponse> exchange(const Url& url, http::HttpRequest request);
  Result<std::string> access_token(bool force_refresh);
  http::HttpClient* client_for(const Url& url);

  AuthConfig auth_;
  RetryPolicy retry_;
  std::chrono::milliseconds timeout_{30'000};
  std::size_t max_body_bytes_ = 8 << 20;
  std::unique_ptr<http::HttpClient> plain_;
  std::unique_ptr<http::HttpClient> tls_;
  mutable std::mutex token_mutex_;
  std::string token_;
  std::chrono::steady_clock::time_point token_expiry_{};
  int tokens_fetched_ = 0;
};

// Maps a non-2xx answer to a Status as get_json documents, prefixed by `what`.
Status status_from_response(const RestResponse& response, std::string_view what);

// The type a JSON value suggests for a discovered field.
FieldType infer_field_type(const Json& value);
// Fields inferred from sample objects, in first-seen order; a field seen with
// two types is kJson (integer and number merge to number).
std::vector<FieldSpec> infer_fields(const std::vector<Json>& objects);

}  // namespace civicbus::connect::detail
