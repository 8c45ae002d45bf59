// Gateway: the API gateway in front of a Civic node's modules, as Kong or Envoy would sit in
// front of them. It owns an HttpServer (its listener), one HTTP client per worker for the
// upstreams, and the gateway's state: routes, consumers and their credentials (API keys held
// as SHA-256 hashes), rate-limit counters, the adaptive concurrency limit and upstream health.
//
// A request passes, in order: routing (404/405/400) → API version (410 after sunset) → CORS
// preflight → route IP list (403) → authentication (401; fails closed) → consumer IP list and
// groups (403) → rate limits (429) → load shedding (503) → request transform → the route's
// in-process handler or its upstream (502/503/504) → response transform and headers (request
// id, traceparent, RateLimit-*, Deprecation/Sunset, CORS) → access log and metrics.
//
// Built-in routes: the OAuth 2.0 token endpoint and its JWKS, the admin API
// (/api/v1/gateway/health, /consumers, /metrics) and /api/v1/openapi.json. See
// docs/gateway.md.
//
// Threads: requests run on the listener's workers; in-process handlers run there too and must
// not block for long. All public methods are thread-safe; start/stop must not be called from a
// handler.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/log.hpp"
#include "civicbus/core/metrics.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"
#include "civicbus/gateway/options.hpp"
#include "civicbus/http/message.hpp"

namespace civicbus::gateway {

// What an in-process handler is given. Valid only during the call.
struct CIVICBUS_EXPORT GatewayRequest {
  const http::HttpRequest& http;
  std::string_view route_id;
  const std::vector<std::pair<std::string, std::string>>& params;  // {id} values, decoded
  std::string_view consumer_id;                                    // "" when anonymous
  const std::vector<std::string>& consumer_groups;
  std::string_view request_id;

  // The value of a path parameter, or "".
  std::string_view param(std::string_view name) const;
};

// Returns the response; may throw (the client then gets 500). Runs on a gateway worker.
using GatewayHandler = std::function<http::HttpResponse(const GatewayRequest&)>;

// For in-process handlers: a JSON body, and an RFC 9457 problem document for an error (the
// gateway's own errors look the same), with the error's code name in "code".
// http_status_of: invalid_argument 400, unauthenticated 401, permission_denied 403,
// not_found 404, already_exists and failed_precondition 409, resource_exhausted 429,
// unavailable 503, deadline_exceeded 504, anything else 500.
CIVICBUS_EXPORT http::HttpResponse json_response(int status, const Json& body);
CIVICBUS_EXPORT http::HttpResponse problem_response(const Status& status);
CIVICBUS_EXPORT int http_status_of(ErrorCode code);

// What the gateway needs from its host. Every pointer may be null: the gateway then uses one
// of its own (system clock, secure random, a metrics registry of its own, stderr logs).
// Whatever is given must outlive the gateway.
struct GatewayDeps {
  const Clock* clock = nullptr;
  RandomSource* random = nullptr;
  MetricsRegistry* metrics = nullptr;
  Logger logger;
  // Called by POST /api/v1/gateway/reload (admin group), on a gateway worker: re-reads the
  // host's configuration and calls Gateway::reload() with it. Empty: the route answers 501.
  std::function<Status()> reload_config;
};

// A consumer as the admin API lists it: no secrets, only what identifies them.
struct ConsumerInfo {
  std::string id;
  std::vector<std::string> groups;
  std::size_t api_keys = 0;
  std::vector<std::string> hmac_key_ids;
  std::string client_id;
  std::uint32_t priority_tier = 1;
};

class CIVICBUS_EXPORT Gateway {
 public:
  // Validates everything (errors name the route, upstream or consumer and the field) and
  // loads key files; does not listen yet.
  static Result<std::unique_ptr<Gateway>> create(GatewayOptions options, GatewayDeps deps = {});
  ~Gateway();  // stop()s
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // A route served by `handler` in this process (route.upstream must be empty). Routes added
  // this way survive reload(). Before or after start().
  Status add_route(RouteOptions route, GatewayHandler handler);

  // Listens (options.listener) and starts health checks; returns the bound port.
  Result<std::uint16_t> start();
  std::uint16_t port() const;
  // Stops listening, closes connections (requests in flight get no answer) and waits.
  void stop();

  // Replaces routes, upstreams, consumers from configuration, CORS, versions and auth options
  // with `options`' (the listener's address and threads stay; open connections stay open).
  // Consumers added through the admin API are kept unless the new configuration has one with
  // the same id. Nothing changes when `options` does not validate.
  Status reload(GatewayOptions options);

  // Adds (or replaces) a consumer at run time. With `generate_api_key`, a new random API key
  // is added and returned (it is shown once: only its hash is kept).
  Result<std::string> add_consumer(ConsumerOptions consumer, bool generate_api_key = false);
  std::vector<ConsumerInfo> consumers() const;

  // The OpenAPI 3.1 document of the routes registered now (also at /api/v1/openapi.json).
  Json openapi() const;
  // Health and metrics as the admin API serves them.
  Json health() const;
  Json metrics_json() const;
  std::string metrics_text() const;

  struct Impl;

 private:
  explicit Gateway(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace civicbus::gateway
