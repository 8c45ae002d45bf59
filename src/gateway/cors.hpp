// CorsPolicy: the CORS decisions of one API (Fetch standard, "CORS protocol"), as Kong's and
// Envoy's CORS plugins make them. Pure: given a request it returns the preflight response or the
// headers to add to an actual response; it owns its validated options and nothing else. Immutable
// after create(), so any number of threads may share one policy.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/status.hpp"
#include "civicbus/gateway/options.hpp"
#include "civicbus/http/message.hpp"

namespace civicbus::gateway {

// The answer to a preflight. `allowed` false: `response` carries no Access-Control-Allow-*
// headers (so the browser blocks the real request) and `reason` says why, for logs.
struct CorsPreflightResult {
  bool allowed = false;
  http::HttpResponse response;
  std::string reason;
};

class CorsPolicy {
 public:
  // Refuses malformed origins and tokens, and an empty origin list.
  static Result<CorsPolicy> create(CorsOptions options);

  // OPTIONS with Origin and Access-Control-Request-Method. Other OPTIONS requests are ordinary
  // requests for the upstream.
  static bool is_preflight(const http::HttpRequest& request);

  // Whether an Origin header value is allowed by this policy.
  bool origin_allowed(std::string_view origin) const;

  // Call only when is_preflight(request). 204 with the Access-Control-Allow-* headers, or 403
  // without them.
  CorsPreflightResult preflight(const http::HttpRequest& request) const;

  // The headers to add to the response of an actual (non-preflight) request: none for a request
  // without Origin or from a disallowed origin, except `Vary: Origin` whenever the answer
  // depends on the origin (so a shared cache never replays one origin's answer to another).
  http::HttpHeaders response_headers(const http::HttpRequest& request) const;

  const CorsOptions& options() const { return options_; }

 private:
  struct OriginPattern {
    std::string scheme;  // lower case
    std::string host;    // lower case; for a wildcard, the suffix starting with '.'
    std::string port;    // "" = none
    bool wildcard = false;
  };

  explicit CorsPolicy(CorsOptions options) : options_(std::move(options)) {}
  // True when the Access-Control-Allow-Origin value is not a constant "*".
  bool varies_by_origin() const { return !any_origin_ || options_.allow_credentials; }
  void add_origin_headers(std::string_view origin, http::HttpHeaders& out) const;

  CorsOptions options_;
  std::vector<OriginPattern> patterns_;
  bool any_origin_ = false;
  bool null_origin_ = false;
  bool any_method_ = false;
  bool any_header_ = false;
};

}  // namespace civicbus::gateway
