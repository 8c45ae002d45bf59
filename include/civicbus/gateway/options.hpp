// The Gateway's configuration: plain option structs with documented defaults, filled by the
// node's YAML loader or by a module in code, validated once by Gateway::create() (and by
// reload()). Nothing here does I/O.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"
#include "civicbus/http/server.hpp"

namespace civicbus::gateway {

// ---- building blocks (each used by one gateway component) ----------------------------------

enum class PathKind {
  kExact,     // the whole normalised path equals `path`
  kPrefix,    // `path` and everything below it, on a segment boundary
  kTemplate,  // literal segments and whole-segment parameters: /devices/{id}/readings
};

// The limits applied to one key. A zero limit is "no limit" for that window.
struct RateLimitPolicy {
  std::uint32_t requests_per_minute = 0;  // steady refill rate of the bucket
  std::uint32_t burst = 0;                // bucket capacity; 0 = requests_per_minute
  std::uint32_t requests_per_day = 0;     // sliding 24 h window
};

struct IpAllowlistOptions {
  // CIDR entries. Both empty: every address is allowed.
  std::vector<std::string> allow;
  std::vector<std::string> deny;
};

struct CorsOptions {
  // "https://app.example.ca" (exact; scheme and host compare case-insensitively, the port must
  // match), "https://*.example.ca" (one or more labels before the suffix, never the bare
  // domain), "*" (any origin), or "null" (the opaque origin; only when listed explicitly).
  std::vector<std::string> allowed_origins;
  // Case-sensitive method tokens; "*" = the requested method. Default: the safelisted ones.
  std::vector<std::string> allowed_methods = {"GET", "HEAD", "POST"};
  // Request header names (case-insensitive); "*" = whatever the preflight asks for.
  std::vector<std::string> allowed_headers;
  // Response header names scripts may read; "*" is refused with credentials (Fetch ignores it).
  std::vector<std::string> exposed_headers;
  bool allow_credentials = false;
  // Access-Control-Max-Age; nullopt = no header (browsers then cache a preflight for 5 s).
  std::optional<std::chrono::seconds> max_age;
};

struct ApiVersionOptions {
  std::string version;                      // "v1"; named in the 410 body. Required.
  std::optional<SystemTime> deprecated_at;  // when the version is (or was) deprecated
  std::optional<SystemTime> sunset_at;      // when it stops answering; not before deprecated_at
  std::string successor_url;                // "https://api.example.ca/v2/"; "" = none
  std::string deprecation_doc_url;          // human documentation of the deprecation; "" = none
};

enum class Balancing { kRoundRobin, kLeastRequest };

struct ActiveHealthCheckOptions {
  std::string path;  // "" = no active checks; else GET this path, 2xx/3xx = success
  std::chrono::milliseconds interval{10'000};
  std::chrono::milliseconds timeout{2'000};
  std::uint32_t healthy_threshold = 2;    // successes in a row to become healthy
  std::uint32_t unhealthy_threshold = 3;  // failures in a row to become unhealthy
};

struct PassiveHealthOptions {
  std::uint32_t consecutive_failures = 5;  // 0 = never open the breaker
  std::chrono::milliseconds open_duration{30'000};
};

struct CIVICBUS_EXPORT UpstreamPoolOptions {
  std::string name;                  // names the upstream in errors, metrics and logs
  std::vector<std::string> targets;  // "host:port" (http::Upstream::parse); at least one
  Balancing balancing = Balancing::kRoundRobin;
  ActiveHealthCheckOptions active;
  PassiveHealthOptions passive;
  std::uint32_t max_concurrent_requests = 0;  // 0 = no cap

  Status validate() const;  // names the upstream and the bad field
};

struct CIVICBUS_EXPORT LoadShedderOptions {
  bool enabled = true;  // false: acquire() always succeeds (and still counts in-flight)
  std::uint32_t initial_limit = 1000;
  std::uint32_t min_limit = 100;
  std::uint32_t max_limit = 10'000;
  double tolerance = 3.0;  // latency may grow this much over min_latency before shrinking
  std::chrono::milliseconds sample_window{250};
  std::size_t min_samples = 20;            // a window with fewer samples does not change the limit
  std::uint32_t min_latency_refresh = 40;  // windows between re-measuring min_latency
  // Share of the limit each tier may fill, tier 0 first; non-increasing, the first 1.0.
  // Default: critical 100%, normal 90%, low 70%.
  std::vector<double> tier_shares = {1.0, 0.9, 0.7};
  std::chrono::seconds retry_after{1};  // the Retry-After of a shed request

  Status validate() const;
};

// ---- the gateway ------------------------------------------------------------------------------

// An upstream service: its targets and how requests to them are sent.
struct UpstreamOptions : UpstreamPoolOptions {
  std::chrono::milliseconds connect_timeout{2'000};
  // From sending the request until the whole response is read; then 504.
  std::chrono::milliseconds request_timeout{30'000};
  // Further attempts, each on another target when there is one, after a connection failure
  // or a 502/503/504 answer; only for idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS).
  std::uint32_t retries = 1;
  // Kept-alive connections per target and gateway worker.
  std::size_t max_connections_per_target = 128;
  // https to the targets; nullopt: plain http.
  std::optional<http::TlsClientOptions> tls;
};

enum class AuthMethod {
  kApiKey,  // "apikey" or "X-API-Key" header (or Authorization: ApiKey <key>)
  kJwt,     // Authorization: Bearer <JWT>, from the token endpoint or a configured JWKS
  kHmac,    // RFC 9421 Signature-Input / Signature with hmac-sha256
  kMtls,    // the client certificate of a mutual-TLS connection (listener.tls client_auth)
};

// Body formats for transforms; see docs/transforms.md.
enum class BodyFormat { kJson, kXml, kCsv };

struct RouteOptions {
  std::string id;      // unique; names the route in logs, metrics and OpenAPI operationIds
  std::string method;  // "GET", ...; "" or "*" for any
  std::string host;    // "api.example.ca", "*.example.ca"; "" or "*" for any
  PathKind match = PathKind::kPrefix;
  std::string path;  // "/permits", "/devices/{id}"
  // Where requests go: an upstream by name, or (set by Gateway::add_route) a handler in this
  // process. Exactly one.
  std::string upstream;
  // Rewrites the forwarded path: `strip_prefix` is removed from its start (on a segment
  // boundary) and `upstream_prefix` put in front: /api/permits/7 with strip "/api" and
  // prefix "/v2" goes out as /v2/permits/7.
  std::string strip_prefix;
  std::string upstream_prefix;
  // Credentials accepted; empty: a public route (no credentials asked, anonymous).
  std::vector<AuthMethod> auth;
  // With auth: the consumer must be in one of these groups (ACL); empty: any consumer.
  std::vector<std::string> groups;
  // Per consumer on this route (per client address when anonymous); zero: none.
  RateLimitPolicy rate_limit;
  IpAllowlistOptions ip;
  std::string cors;     // a key of GatewayOptions::cors; "" none
  std::string version;  // an ApiVersionOptions::version of GatewayOptions::versions; "" none
  // The upstream's body format: request bodies in another format (by Content-Type) are
  // converted to it, and responses are converted to the format the client's Accept asks
  // for. nullopt: bodies pass as they are.
  std::optional<BodyFormat> upstream_format;
  // OpenAPI: what the operation does; JSON Schemas of the bodies (null: none).
  std::string summary;
  std::vector<std::string> tags;
  Json request_schema;
  Json response_schema;
};

struct HmacCredential {
  std::string key_id;
  std::string secret;  // shared secret, at least 32 bytes
};

struct ConsumerOptions {
  std::string id;  // "permits-portal"; [A-Za-z0-9._-], at most 128 characters
  std::vector<std::string> groups;
  // API keys as given (configuration, admin API); the gateway keeps only their SHA-256.
  std::vector<std::string> api_keys;
  // Or their hashes, "sha256:<64 hex>", so a config file need not hold the keys.
  std::vector<std::string> api_key_hashes;
  std::vector<HmacCredential> hmac;
  // OAuth 2.0 client credentials for the token endpoint: the id, and the secret or its
  // "sha256:<hex>" hash. Tokens issued to it name the consumer in `sub`.
  std::string client_id;
  std::string client_secret;
  // JWTs from another issuer (JwtAuthOptions) name this consumer by this value of their
  // consumer claim; "" = the consumer id.
  std::string jwt_subject;
  // Mutual TLS: client certificates that authenticate as this consumer, by SHA-256
  // fingerprint ("AB:CD:..." or hex, as `openssl x509 -fingerprint -sha256` prints it) or by
  // a SAN URI (a SPIFFE id such as "spiffe://city.example/permits").
  std::vector<std::string> certificate_fingerprints;
  std::vector<std::string> certificate_uris;
  RateLimitPolicy rate_limit;
  IpAllowlistOptions ip;
  // Load-shedding tier: 0 critical (shed last), 1 normal, 2 low (shed first).
  std::uint32_t priority_tier = 1;
};

struct JwtAuthOptions {
  // Keys of other issuers besides the token endpoint's own: a JWKS file, and/or a JWKS URL
  // ("http://127.0.0.1:8081/jwks.json") fetched at start and again when a token names an
  // unknown kid (at most once per refresh_min_interval).
  std::string jwks_file;
  std::string jwks_url;  // http:// or https:// (port optional)
  // Trust anchors (PEM) for an https jwks_url; "" = the system bundle.
  std::string jwks_ca_file;
  std::chrono::seconds refresh_min_interval{30};
  std::string issuer;                  // required `iss` of those tokens; "" not checked
  std::vector<std::string> audiences;  // their `aud` must hold one; empty not checked
  std::chrono::seconds leeway{60};
  std::string consumer_claim = "sub";  // the claim that names the consumer
};

// The OAuth 2.0 client-credentials token endpoint (RFC 6749 4.4) and its JWKS.
struct TokenEndpointOptions {
  bool enabled = true;
  std::string path = "/oauth2/token";
  std::string jwks_path = "/.well-known/jwks.json";
  std::string issuer = "civicbus-gateway";
  std::string audience = "civicbus";
  std::string algorithm = "ES256";  // or "RS256"
  std::chrono::seconds token_lifetime{3600};
  // A private JWK to sign with; "" = a key generated at start (tokens then do not survive a
  // restart).
  std::string signing_key_file;
};

struct HmacAuthOptions {
  std::chrono::seconds clock_skew{300};
  std::size_t replay_cache_capacity = 100'000;
};

struct AdminOptions {
  bool enabled = true;
  // Consumers of this group may call the admin API (/api/v1/gateway/...); it always asks for
  // credentials (API key, JWT or HMAC), even on loopback.
  std::string group = "admin";
};

struct AccessLogOptions {
  bool enabled = true;  // one info line per request, component "gateway.access"
};

struct GatewayOptions {
  http::HttpServerOptions listener;
  std::vector<UpstreamOptions> upstreams;
  std::vector<RouteOptions> routes;
  std::vector<ConsumerOptions> consumers;
  std::map<std::string, CorsOptions> cors;  // policies by name
  std::vector<ApiVersionOptions> versions;
  JwtAuthOptions jwt;
  TokenEndpointOptions oauth;
  HmacAuthOptions hmac;
  AdminOptions admin;
  LoadShedderOptions load_shedding;
  AccessLogOptions access_log;
  std::string api_title = "civicbus gateway";  // OpenAPI info
  std::string api_version = "1.0.0";
  // The scheme forwarded in X-Forwarded-Proto and used for signature bases.
  std::string scheme = "http";
};

}  // namespace civicbus::gateway
