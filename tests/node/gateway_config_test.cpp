// The node's `gateway:` YAML section, and the gateway a Node runs: started with it, stopped
// with it, reloaded from its file (reload_gateway(), SIGHUP).
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "civicbus/broker/broker.hpp"
#include "civicbus/gateway/gateway.hpp"
#include "civicbus/http/client.hpp"
#include "civicbus/node/node.hpp"
#include "support/test_support.hpp"

namespace civicbus {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

std::string yaml_error(std::string_view text) {
  auto r = NodeOptions::from_yaml(text, "node.yaml");
  return r.ok() ? std::string() : r.status().message();
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// 64 hex digits: the SHA-256 of "x" is as good as any for the loader.
constexpr std::string_view kHash =
    "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";

constexpr std::string_view kGatewayYaml = R"(gateway:
  api_title: City API
  api_version: 2.1.0
  scheme: https
  listener:
    bind_address: 0.0.0.0
    port: 8443
    threads: 3
    max_header_count: 50
    max_header_bytes: 8KiB
    max_body_bytes: 2MiB
    header_timeout: 5s
    body_timeout: 20s
    idle_timeout: 2m
    max_pipelined_requests: 8
  upstreams:
    - name: permits-legacy
      targets: [10.0.0.5:8080, "10.0.0.6:8080"]
      balancing: least_request
      max_concurrent_requests: 200
      connect_timeout: 500ms
      request_timeout: 10s
      retries: 2
      max_connections_per_target: 16
      active: {path: /health, interval: 5s, timeout: 1s, healthy_threshold: 3, unhealthy_threshold: 4}
      passive: {consecutive_failures: 7, open_duration: 45s}
    - name: gis
      targets: [gis.internal:443]
      tls: {ca_file: ca.pem, server_name: gis.example.ca, min_version: "1.3"}
  cors:
    portal:
      allowed_origins: [https://portal.example.ca, "https://*.example.ca"]
      allowed_methods: [GET, POST]
      allowed_headers: [X-API-Key]
      exposed_headers: [RateLimit-Remaining]
      allow_credentials: true
      max_age: 10m
  versions:
    - version: v1
      deprecated_at: 2027-01-01T00:00:00Z
      sunset_at: "Thu, 01 Jul 2027 00:00:00 GMT"
      successor_url: https://api.example.ca/v2/
      deprecation_doc_url: https://api.example.ca/docs/v1-sunset
  routes:
    - id: permits-search
      method: GET
      host: api.example.ca
      match: template
      path: /api/v1/permits/{id}
      upstream: permits-legacy
      strip_prefix: /api/v1
      upstream_prefix: /v2
      auth: [api_key, jwt, hmac]
      groups: [permits]
      rate_limit: {requests_per_minute: 600, burst: 100, requests_per_day: 100000}
      ip: {allow: [10.0.0.0/8], deny: [10.9.0.0/16]}
      cors: portal
      version: v1
      upstream_format: xml
      summary: A permit
      tags: [permits, public]
      response_schema:
        type: object
        required: [permit_id]
        properties: {permit_id: {type: string}, valuation: {type: integer, minimum: 0}}
    - id: gis-layers
      match: prefix
      path: /api/v1/gis
      upstream: gis
      auth: [mtls]
  consumers:
    - id: permits-portal
      groups: [permits]
      api_keys: [this-is-a-long-portal-key]
      api_key_hashes: ["{HASH}"]
      hmac: [{key_id: portal-2026, secret: 0123456789abcdef0123456789abcdef}]
      client_id: portal
      client_secret: "{HASH}"
      jwt_subject: portal-app
      certificate_fingerprints: ["AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"]
      certificate_uris: [spiffe://city.example/portal]
      rate_limit: {requests_per_minute: 60}
      ip: {allow: [192.168.0.0/16]}
      priority_tier: 0
  jwt:
    jwks_file: keys/jwks.json
    jwks_url: http://127.0.0.1:8081/jwks.json
    refresh_min_interval: 1m
    issuer: https://idp.example.ca
    audiences: [civicbus, permits]
    leeway: 30s
    consumer_claim: client_id
  oauth: {enabled: false, path: /token, jwks_path: /jwks, issuer: city, audience: apis, algorithm: RS256, token_lifetime: 15m, signing_key_file: keys/signing.jwk}
  hmac: {clock_skew: 2m, replay_cache_capacity: 5000}
  admin: {enabled: true, group: operators}
  load_shedding: {enabled: false, initial_limit: 500, min_limit: 10, max_limit: 2000, tolerance: 1.5, sample_window: 100ms, min_samples: 10, min_latency_refresh: 20, tier_shares: [1.0, 0.8, 0.5], retry_after: 2s}
  access_log: {enabled: false}
)";

std::string gateway_yaml() {
  std::string text(kGatewayYaml);
  for (std::size_t at; (at = text.find("{HASH}")) != std::string::npos;) {
    text.replace(at, 6, kHash);
  }
  return text;
}

TEST_CASE("node config: a gateway section fills every GatewayOptions field") {
  auto r = NodeOptions::from_yaml(gateway_yaml());
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  REQUIRE(r->gateway.has_value());
  const gateway::GatewayOptions& g = *r->gateway;
  CHECK(g.api_title == "City API");
  CHECK(g.api_version == "2.1.0");
  CHECK(g.scheme == "https");

  CHECK(g.listener.bind_address == "0.0.0.0");
  CHECK(g.listener.port == 8443);
  CHECK(g.listener.threads == 3);
  CHECK(g.listener.max_header_count == 50);
  CHECK(g.listener.max_header_bytes == 8 * 1024);
  CHECK(g.listener.max_body_bytes == 2 * 1024 * 1024);
  CHECK(g.listener.header_timeout == 5s);
  CHECK(g.listener.body_timeout == 20s);
  CHECK(g.listener.idle_timeout == 2min);
  CHECK(g.listener.max_pipelined_requests == 8);
  CHECK_FALSE(g.listener.tls.has_value());

  REQUIRE(g.upstreams.size() == 2);
  const gateway::UpstreamOptions& u = g.upstreams[0];
  CHECK(u.name == "permits-legacy");
  CHECK(u.targets == std::vector<std::string>{"10.0.0.5:8080", "10.0.0.6:8080"});
  CHECK(u.balancing == gateway::Balancing::kLeastRequest);
  CHECK(u.max_concurrent_requests == 200);
  CHECK(u.connect_timeout == 500ms);
  CHECK(u.request_timeout == 10s);
  CHECK(u.retries == 2);
  CHECK(u.max_connections_per_target == 16);
  CHECK(u.active.path == "/health");
  CHECK(u.active.interval == 5s);
  CHECK(u.active.timeout == 1s);
  CHECK(u.active.healthy_threshold == 3);
  CHECK(u.active.unhealthy_threshold == 4);
  CHECK(u.passive.consecutive_failures == 7);
  CHECK(u.passive.open_duration == 45s);
  CHECK_FALSE(u.tls.has_value());
  REQUIRE(g.upstreams[1].tls.has_value());
  CHECK(g.upstreams[1].tls->ca_file == "ca.pem");  // from_yaml: paths stay as written
  CHECK(g.upstreams[1].tls->server_name == "gis.example.ca");
  CHECK(g.upstreams[1].tls->min_version == http::TlsVersion::kTls13);
  CHECK(g.upstreams[1].tls->verify_peer);

  REQUIRE(g.cors.count("portal") == 1);
  const gateway::CorsOptions& c = g.cors.at("portal");
  CHECK(c.allowed_origins ==
        std::vector<std::string>{"https://portal.example.ca", "https://*.example.ca"});
  CHECK(c.allowed_methods == std::vector<std::string>{"GET", "POST"});
  CHECK(c.allowed_headers == std::vector<std::string>{"X-API-Key"});
  CHECK(c.exposed_headers == std::vector<std::string>{"RateLimit-Remaining"});
  CHECK(c.allow_credentials);
  CHECK(c.max_age == std::chrono::seconds(600));

  REQUIRE(g.versions.size() == 1);
  CHECK(g.versions[0].version == "v1");
  REQUIRE(g.versions[0].deprecated_at.has_value());
  CHECK(format_rfc3339(*g.versions[0].deprecated_at).starts_with("2027-01-01T00:00:00"));
  REQUIRE(g.versions[0].sunset_at.has_value());
  CHECK(format_rfc3339(*g.versions[0].sunset_at).starts_with("2027-07-01T00:00:00"));
  CHECK(g.versions[0].successor_url == "https://api.example.ca/v2/");
  CHECK(g.versions[0].deprecation_doc_url == "https://api.example.ca/docs/v1-sunset");

  REQUIRE(g.routes.size() == 2);
  const gateway::RouteOptions& route = g.routes[0];
  CHECK(route.id == "permits-search");
  CHECK(route.method == "GET");
  CHECK(route.host == "api.example.ca");
  CHECK(route.match == gateway::PathKind::kTemplate);
  CHECK(route.path == "/api/v1/permits/{id}");
  CHECK(route.upstream == "permits-legacy");
  CHECK(route.strip_prefix == "/api/v1");
  CHECK(route.upstream_prefix == "/v2");
  CHECK(route.auth == std::vector<gateway::AuthMethod>{gateway::AuthMethod::kApiKey,
                                                       gateway::AuthMethod::kJwt,
                                                       gateway::AuthMethod::kHmac});
  CHECK(route.groups == std::vector<std::string>{"permits"});
  CHECK(route.rate_limit.requests_per_minute == 600);
  CHECK(route.rate_limit.burst == 100);
  CHECK(route.rate_limit.requests_per_day == 100000);
  CHECK(route.ip.allow == std::vector<std::string>{"10.0.0.0/8"});
  CHECK(route.ip.deny == std::vector<std::string>{"10.9.0.0/16"});
  CHECK(route.cors == "portal");
  CHECK(route.version == "v1");
  CHECK(route.upstream_format == gateway::BodyFormat::kXml);
  CHECK(route.summary == "A permit");
  CHECK(route.tags == std::vector<std::string>{"permits", "public"});
  CHECK(route.response_schema.get_string("type") == "object");
  const Json* minimum = route.response_schema.at_pointer("/properties/valuation/minimum");
  REQUIRE(minimum != nullptr);
  CHECK(minimum->is_int());
  CHECK(route.request_schema.is_null());
  CHECK(g.routes[1].match == gateway::PathKind::kPrefix);
  CHECK(g.routes[1].method.empty());
  CHECK(g.routes[1].auth == std::vector<gateway::AuthMethod>{gateway::AuthMethod::kMtls});

  REQUIRE(g.consumers.size() == 1);
  const gateway::ConsumerOptions& consumer = g.consumers[0];
  CHECK(consumer.id == "permits-portal");
  CHECK(consumer.groups == std::vector<std::string>{"permits"});
  CHECK(consumer.api_keys == std::vector<std::string>{"this-is-a-long-portal-key"});
  CHECK(consumer.api_key_hashes == std::vector<std::string>{std::string(kHash)});
  REQUIRE(consumer.hmac.size() == 1);
  CHECK(consumer.hmac[0].key_id == "portal-2026");
  CHECK(consumer.hmac[0].secret == "0123456789abcdef0123456789abcdef");
  CHECK(consumer.client_id == "portal");
  CHECK(consumer.client_secret == kHash);
  CHECK(consumer.jwt_subject == "portal-app");
  CHECK(consumer.certificate_fingerprints.size() == 1);
  CHECK(consumer.certificate_uris == std::vector<std::string>{"spiffe://city.example/portal"});
  CHECK(consumer.rate_limit.requests_per_minute == 60);
  CHECK(consumer.ip.allow == std::vector<std::string>{"192.168.0.0/16"});
  CHECK(consumer.priority_tier == 0);

  CHECK(g.jwt.jwks_file == "keys/jwks.json");
  CHECK(g.jwt.jwks_url == "http://127.0.0.1:8081/jwks.json");
  CHECK(g.jwt.refresh_min_interval == 60s);
  CHECK(g.jwt.issuer == "https://idp.example.ca");
  CHECK(g.jwt.audiences == std::vector<std::string>{"civicbus", "permits"});
  CHECK(g.jwt.leeway == 30s);
  CHECK(g.jwt.consumer_claim == "client_id");

  CHECK_FALSE(g.oauth.enabled);
  CHECK(g.oauth.path == "/token");
  CHECK(g.oauth.jwks_path == "/jwks");
  CHECK(g.oauth.issuer == "city");
  CHECK(g.oauth.audience == "apis");
  CHECK(g.oauth.algorithm == "RS256");
  CHECK(g.oauth.token_lifetime == 15min);
  CHECK(g.oauth.signing_key_file == "keys/signing.jwk");

  CHECK(g.hmac.clock_skew == 120s);
  CHECK(g.hmac.replay_cache_capacity == 5000);
  CHECK(g.admin.enabled);
  CHECK(g.admin.group == "operators");
  CHECK_FALSE(g.load_shedding.enabled);
  CHECK(g.load_shedding.initial_limit == 500);
  CHECK(g.load_shedding.min_limit == 10);
  CHECK(g.load_shedding.max_limit == 2000);
  CHECK(g.load_shedding.tolerance == doctest::Approx(1.5));
  CHECK(g.load_shedding.sample_window == 100ms);
  CHECK(g.load_shedding.min_samples == 10);
  CHECK(g.load_shedding.min_latency_refresh == 20);
  CHECK(g.load_shedding.tier_shares == std::vector<double>{1.0, 0.8, 0.5});
  CHECK(g.load_shedding.retry_after == 2s);
  CHECK_FALSE(g.access_log.enabled);
}

TEST_CASE("node config: gateway defaults, enabled: false, listener TLS and relative paths") {
  auto none = NodeOptions::from_yaml("node: {name: x}\n");
  REQUIRE(none.ok());
  CHECK_FALSE(none->gateway.has_value());

  auto empty = NodeOptions::from_yaml("gateway: {}\n");
  REQUIRE(empty.ok());
  REQUIRE(empty->gateway.has_value());
  CHECK(empty->gateway->listener.port == gateway::GatewayOptions().listener.port);
  CHECK(empty->gateway->routes.empty());
  CHECK(empty->gateway->admin.group == "admin");

  auto disabled = NodeOptions::from_yaml("gateway:\n  enabled: false\n  listener: {port: 80}\n");
  REQUIRE(disabled.ok());
  CHECK_FALSE(disabled->gateway.has_value());
  // A disabled section is still checked.
  CHECK(contains(yaml_error("gateway:\n  enabled: false\n  listner: {port: 80}\n"),
                 "node.yaml:3: unknown key 'listner' in gateway (did you mean 'listener'?)"));

  TempDir dir;
  testing::write_file(dir.file("node.yaml"), R"(gateway:
  listener:
    tls:
      cert_chain_file: tls/server.pem
      key_file: tls/server.key
      client_ca_file: /etc/civicbus/clients.pem
      client_auth: optional
      sni_certificates: [{server_name: "*.example.ca", cert_chain_file: w.pem, key_file: w.key}]
  jwt: {jwks_file: jwks.json}
  routes:
    - id: doc
      match: exact
      path: /doc
      upstream: u
      request_schema: schemas/req.json
  upstreams: [{name: u, targets: ["127.0.0.1:9"]}]
)");
  std::filesystem::create_directories(dir.path() / "schemas");
  testing::write_file(dir.file("schemas/req.json"), R"({"type": "object"})");
  auto file = NodeOptions::from_file(dir.file("node.yaml"));
  REQUIRE_MESSAGE(file.ok(), file.status().to_string());
  const gateway::GatewayOptions& g = *file->gateway;
  REQUIRE(g.listener.tls.has_value());
  CHECK(g.listener.tls->default_certificate.cert_chain_file == dir.file("tls/server.pem"));
  CHECK(g.listener.tls->default_certificate.key_file == dir.file("tls/server.key"));
  CHECK(g.listener.tls->client_ca_file == "/etc/civicbus/clients.pem");
  CHECK(g.listener.tls->client_auth == http::TlsClientAuth::kOptional);
  REQUIRE(g.listener.tls->sni_certificates.size() == 1);
  CHECK(g.listener.tls->sni_certificates[0].server_name == "*.example.ca");
  CHECK(g.listener.tls->sni_certificates[0].cert_chain_file == dir.file("w.pem"));
  CHECK(g.jwt.jwks_file == dir.file("jwks.json"));
  CHECK(g.routes[0].request_schema.get_string("type") == "object");
  CHECK(file->config_file == std::filesystem::absolute(dir.file("node.yaml")).lexically_normal());
}

TEST_CASE("node config: secrets from ${ENV} in the gateway section") {
  ::setenv("CIVICBUS_TEST_PORTAL_KEY", "key-from-the-environment-0123", 1);
  ::unsetenv("CIVICBUS_TEST_UNSET_SECRET");
  auto r = NodeOptions::from_yaml(R"(gateway:
  consumers:
    - id: portal
      api_keys: ["${CIVICBUS_TEST_PORTAL_KEY}", plain-key-0123456789]
)");
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(r->gateway->consumers[0].api_keys ==
        std::vector<std::string>{"key-from-the-environment-0123", "plain-key-0123456789"});
  CHECK(yaml_error(R"(gateway:
  consumers:
    - id: portal
      client_id: portal
      client_secret: ${CIVICBUS_TEST_UNSET_SECRET}
)") == "node.yaml:5: consumer 'portal': client_secret: environment variable "
       "'CIVICBUS_TEST_UNSET_SECRET' is not set (or empty)");
}

TEST_CASE("node config: gateway errors name the line") {
  struct Case {
    std::string yaml;
    std::string error;
  };
  const std::string up = "  upstreams: [{name: legacy, targets: [\"127.0.0.1:9000\"]}]\n";
  const Case cases[] = {
      {"gateway:\n  listener: {prot: 8080}\n",
       "node.yaml:2: unknown key 'prot' in gateway.listener (did you mean 'port'?)"},
      {"gateway:\n  listener: {port: 70000}\n",
       "node.yaml:2: 'port' must be between 0 and 65535; got 70000"},
      {"gateway:\n  listener:\n    idle_timeout: 1 minute\n",
       "node.yaml:3: 'idle_timeout' must be a duration like 30s, 15m, 12h, 7d or 0; got '1 "
       "minute'"},
      {"gateway:\n  routs: []\n",
       "node.yaml:2: unknown key 'routs' in gateway (did you mean 'routes'?)"},
      {"gateway:\n" + up +
           "  routes:\n    - id: a\n      path: /a\n      upstream: legacy\n"
           "      strip_prefx: /a\n",
       "node.yaml:7: unknown key 'strip_prefx' in gateway.routes[0] (did you mean "
       "'strip_prefix'?)"},
      {"gateway:\n" + up +
           "  routes:\n    - id: a\n      path: /a\n      upstream: legacy\n"
           "      match: regex\n",
       "node.yaml:7: 'match' must be one of exact, prefix, template; got 'regex'"},
      {"gateway:\n" + up + "  routes:\n    - id: a\n      path: /a\n      upstream: legasy\n",
       "node.yaml:6: route 'a': no upstream 'legasy' in gateway.upstreams (did you mean "
       "'legacy'?)"},
      {"gateway:\n" + up +
           "  routes:\n    - {id: a, path: /a, upstream: legacy}\n"
           "    - {id: a, path: /b, upstream: legacy}\n",
       "node.yaml:5: duplicate route id 'a' in gateway.routes[1] (first defined at line 4)"},
      {"gateway:\n" + up + "  routes:\n    - {id: a, path: /a, upstream: legacy, auth: [apikey]}\n",
       "node.yaml:4: route 'a': 'auth' entries must be api_key, jwt, hmac or mtls; got 'apikey' "
       "(did you mean 'api_key'?)"},
      {"gateway:\n" + up +
           "  routes:\n    - {id: a, path: /a, upstream: legacy, "
           "upstream_format: yaml}\n",
       "node.yaml:4: 'upstream_format' must be one of json, xml, csv; got 'yaml'"},
      {"gateway:\n" + up + "  routes:\n    - {id: a, path: a, upstream: legacy}\n",
       "node.yaml:4: route 'a': 'path' must start with '/'; got 'a'"},
      {"gateway:\n" + up + "  routes:\n    - {id: a, path: /a, upstream: legacy, cors: portal}\n",
       "node.yaml:4: route 'a': no CORS policy 'portal' in gateway.cors"},
      {"gateway:\n" + up + "  routes:\n    - {id: a, path: /a}\n",
       "node.yaml:4: route 'a' has no 'upstream' (routes served in this process are added in "
       "code with Gateway::add_route)"},
      {"gateway:\n  upstreams:\n    - {name: x, targets: [nohost]}\n",
       "node.yaml:3: upstream 'x': target 'nohost' is not \"host:port\""},
      {"gateway:\n  upstreams:\n    - {name: x, targets: [\"a:1\"], balancing: random}\n",
       "node.yaml:3: 'balancing' must be one of round_robin, least_request; got 'random'"},
      {"gateway:\n  upstreams:\n    - name: x\n      targets: [\"a:1\"]\n      active: "
       "{pth: /h}\n",
       "node.yaml:5: unknown key 'pth' in gateway.upstreams[0].active (did you mean 'path'?)"},
      {"gateway:\n  consumers:\n    - id: p\n      api_key_hashes: [\"sha256:abc\"]\n",
       "node.yaml:4: consumer 'p': api_key_hashes[0] must be 'sha256:' followed by 64 hex "
       "digits"},
      {"gateway:\n  consumers:\n    - id: p\n      api_keys: [short]\n",
       "node.yaml:4: consumer 'p': api_keys[0] is shorter than 16 characters"},
      {"gateway:\n  consumers:\n    - id: p\n      priority_tier: 3\n",
       "node.yaml:4: 'priority_tier' must be between 0 and 2; got 3"},
      {"gateway:\n  consumers:\n    - id: p\n      groop: [a]\n",
       "node.yaml:4: unknown key 'groop' in gateway.consumers[0] (did you mean 'groups'?)"},
      {"gateway:\n  consumers:\n    - {id: p}\n    - {id: p}\n",
       "node.yaml:4: duplicate consumer 'p' in gateway.consumers[1] (first defined at line 3)"},
      {"gateway:\n  versions:\n    - {version: v1, sunset_at: next year}\n",
       "node.yaml:3: 'sunset_at' must be an RFC 3339 time"},
      {"gateway:\n  versions:\n    - {version: v1, deprecated_at: 2027-07-01T00:00:00Z, "
       "sunset_at: 2027-01-01T00:00:00Z}\n",
       "node.yaml:3: API version 'v1': 'sunset_at' must not be before 'deprecated_at'"},
      {"gateway:\n  cors:\n    portal: {allowed_origins: [\"*\"], max_age: 1500ms}\n",
       "node.yaml:3: 'max_age' must be whole seconds"},
      {"gateway:\n  oauth: {algorithm: HS256}\n",
       "node.yaml:2: 'algorithm' must be one of es256, rs256; got 'HS256'"},
      {"gateway:\n  load_shedding: {tier_shares: [1.0, 0.5, 0.9]}\n",
       "node.yaml:2: 'tier_shares' must not increase from one tier to the next"},
      {"gateway:\n  admin: {enabled: maybe}\n",
       "node.yaml:2: 'enabled' must be true or false; got 'maybe'"},
      {"gateway:\n  listener:\n    tls: {cert_chain_file: a.pem}\n",
       "node.yaml:3: gateway.listener.tls needs cert_chain_file and key_file (PEM)"},
      {"gatway: {}\n",
       "node.yaml:1: unknown top-level key 'gatway' (did you mean 'gateway'?); expected one of "
       "node, logging, security, log, broker, topics, schemas, gateway"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.yaml);
    std::string error = yaml_error(c.yaml);
    CAPTURE(error);
    CHECK(error.starts_with(c.error));
  }
}

TEST_CASE("node config: the gateway example of docs/CONFIG.md loads") {
  const std::string doc = testing::read_file(std::string(CIVICBUS_SOURCE_DIR) + "/docs/CONFIG.md");
  const std::size_t section = doc.find("### `gateway`");
  REQUIRE(section != std::string::npos);
  const std::size_t begin = doc.find("```yaml\n", section);
  REQUIRE(begin != std::string::npos);
  const std::size_t end = doc.find("```", begin + 8);
  REQUIRE(end != std::string::npos);
  ::setenv("PORTAL_API_KEY", "portal-key-from-the-environment", 1);
  ::setenv("PORTAL_HMAC_SECRET", "a-hmac-secret-of-at-least-32-bytes!", 1);
  auto r = NodeOptions::from_yaml(doc.substr(begin + 8, end - begin - 8), "CONFIG.md");
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  REQUIRE(r->gateway.has_value());
  CHECK(r->gateway->routes.size() == 1);
  CHECK(r->gateway->consumers.size() == 2);
  CHECK(r->gateway->upstreams.size() == 2);
}

// --- the node runs the gateway --------------------------------------------------------------

NodeOptions quiet_node(const TempDir& dir) {
  NodeOptions o;
  o.data_dir = dir.file("data");
  o.worker_threads = 2;
  o.master_key_env = "CIVICBUS_NODE_TEST_UNSET_KEY";
  o.logging.level = LogLevel::kError;
  o.logging.sink = [](std::string_view) {};
  return o;
}

Result<http::HttpResponse> get(std::uint16_t port, std::string target, std::string api_key = {}) {
  http::HttpClientOptions options;
  options.max_retries = 0;
  options.request_timeout = 5s;
  auto client = http::HttpClient::create(options);
  if (!client.ok()) return client.status();
  http::HttpRequest request;
  request.method = "GET";
  request.target = std::move(target);
  if (!api_key.empty()) request.headers.add("X-API-Key", api_key);
  return (*client)->send(fmt::format("127.0.0.1:{}", port), std::move(request));
}

bool openapi_has_path(std::uint16_t port, std::string_view path) {
  auto r = get(port, "/api/v1/openapi.json");
  if (!r.ok() || r->status != 200) return false;
  auto doc = Json::parse(r->body);
  return doc.ok() && doc->at_pointer("/paths") != nullptr &&
         doc->at_pointer("/paths")->find(path) != nullptr;
}

TEST_CASE("node: starts the configured gateway, serves in-process routes, stops it with itself") {
  TempDir dir;
  NodeOptions options = quiet_node(dir);
  options.gateway.emplace();
  options.gateway->listener.port = 0;
  gateway::ConsumerOptions admin;
  admin.id = "ops";
  admin.groups = {"admin"};
  admin.api_keys = {"ops-key-0123456789abcdef"};
  options.gateway->consumers.push_back(admin);

  auto created = Node::create(std::move(options));
  REQUIRE_MESSAGE(created.ok(), created.status().to_string());
  std::unique_ptr<Node> node = std::move(created).value();
  gateway::Gateway* gw = node->gateway();
  REQUIRE(gw != nullptr);
  const std::uint16_t port = gw->port();
  REQUIRE(port != 0);

  // A module adds a route served from the broker.
  broker::TopicOptions topic;
  topic.name = "permit.issued";
  topic.owner = "permits";
  REQUIRE(node->broker().create_topic(topic, "test").ok());
  gateway::RouteOptions route;
  route.id = "topics";
  route.method = "GET";
  route.match = gateway::PathKind::kExact;
  route.path = "/api/v1/topics";
  Node* n = node.get();
  REQUIRE(gw->add_route(route, [n](const gateway::GatewayRequest&) {
              return http::HttpResponse::text(
                  200, std::to_string(n->broker().topics().size()) + " topics");
            }).ok());
  auto topics = get(port, "/api/v1/topics");
  REQUIRE_MESSAGE(topics.ok(), topics.status().to_string());
  CHECK(topics->status == 200);
  CHECK(topics->body == "1 topics");

  auto health = get(port, "/api/v1/gateway/consumers", "ops-key-0123456789abcdef");
  REQUIRE(health.ok());
  CHECK(health->status == 200);
  CHECK(contains(health->body, "\"ops\""));

  // The gateway's metrics are the node's.
  CHECK(contains(node->metrics().prometheus_text(), "civicbus_gateway_"));

  node.reset();
  auto after = get(port, "/api/v1/topics");
  CHECK_FALSE(after.ok());
}

TEST_CASE("node: no gateway section, no gateway; a taken port fails create()") {
  TempDir dir;
  auto plain = Node::create(quiet_node(dir));
  REQUIRE(plain.ok());
  CHECK((*plain)->gateway() == nullptr);
  CHECK((*plain)->reload_gateway().code() == ErrorCode::kFailedPrecondition);
  CHECK((*plain)->reload_gateway(gateway::GatewayOptions()).code() ==
        ErrorCode::kFailedPrecondition);
  plain->reset();

  TempDir first_dir, second_dir;
  NodeOptions first = quiet_node(first_dir);
  first.gateway.emplace();
  auto one = Node::create(first);
  REQUIRE(one.ok());
  NodeOptions second = quiet_node(second_dir);
  second.gateway.emplace();
  second.gateway->listener.port = (*one)->gateway()->port();
  auto two = Node::create(second);
  REQUIRE_FALSE(two.ok());
  CHECK(contains(two.status().message(), "gateway"));
}

std::string node_yaml(std::string_view routes) {
  return fmt::format(R"(node: {{worker_threads: 2, data_dir: data}}
security: {{master_key_env: CIVICBUS_NODE_TEST_UNSET_KEY}}
logging: {{level: error}}
gateway:
  listener: {{port: 0}}
  upstreams: [{{name: legacy, targets: ["127.0.0.1:9"]}}]
  routes:
{}
)",
                     routes);
}

TEST_CASE("node: reload_gateway() re-reads the file; a bad file keeps the running config") {
  TempDir dir;
  const std::string path = dir.file("node.yaml");
  testing::write_file(path, node_yaml("    - {id: a, path: /a, upstream: legacy}"));
  auto options = NodeOptions::from_file(path);
  REQUIRE_MESSAGE(options.ok(), options.status().to_string());
  options->logging.sink = [](std::string_view) {};
  auto node = Node::create(std::move(options).value());
  REQUIRE_MESSAGE(node.ok(), node.status().to_string());
  const std::uint16_t port = (*node)->gateway()->port();
  CHECK(openapi_has_path(port, "/a"));
  CHECK_FALSE(openapi_has_path(port, "/b"));

  testing::write_file(path, node_yaml("    - {id: a, path: /a, upstream: legacy}\n"
                                      "    - {id: b, path: /b, upstream: legacy}"));
  Status reloaded = (*node)->reload_gateway();
  CHECK_MESSAGE(reloaded.ok(), reloaded.to_string());
  CHECK(openapi_has_path(port, "/b"));

  testing::write_file(path, node_yaml("    - {id: c, path: /c, upstream: legasy}"));
  Status bad = (*node)->reload_gateway();
  CHECK_FALSE(bad.ok());
  CHECK(contains(bad.message(), "node.yaml:8: route 'c': no upstream 'legasy'"));
  CHECK(openapi_has_path(port, "/b"));
  CHECK_FALSE(openapi_has_path(port, "/c"));
}

TEST_CASE("node: SIGHUP during run() reloads the gateway configuration") {
  TempDir dir;
  const std::string path = dir.file("node.yaml");
  testing::write_file(path, node_yaml("    - {id: a, path: /a, upstream: legacy}"));
  auto options = NodeOptions::from_file(path);
  REQUIRE(options.ok());
  // "node running" is logged once run() has installed its SIGHUP handler; before that a
  // SIGHUP would end the test process.
  auto running = std::make_shared<std::atomic<bool>>(false);
  options->logging.level = LogLevel::kInfo;
  options->logging.sink = [running](std::string_view line) {
    if (line.find("node running") != std::string_view::npos) running->store(true);
  };
  auto created = Node::create(std::move(options).value());
  REQUIRE(created.ok());
  Node& node = **created;
  const std::uint16_t port = node.gateway()->port();

  Status run_status;
  std::thread runner([&] { run_status = node.run(); });
  REQUIRE(testing::wait_until([&] { return running->load(); }, 10s));
  testing::write_file(path, node_yaml("    - {id: a, path: /a, upstream: legacy}\n"
                                      "    - {id: hup, path: /hup, upstream: legacy}"));
  ::kill(::getpid(), SIGHUP);
  bool reloaded = testing::wait_until([&] { return openapi_has_path(port, "/hup"); }, 10s);
  CHECK(reloaded);
  node.stop();
  runner.join();
  CHECK(run_status.ok());
}

}  // namespace
}  // namespace civicbus

namespace civicbus {
namespace {

TEST_CASE("node: POST /api/v1/gateway/reload re-reads the file for an admin consumer") {
  TempDir dir;
  const std::string path = dir.file("node.yaml");
  const std::string admin =
      "  consumers: [{id: ops, groups: [admin], api_keys: [\"ops-key-0123456789abcdef\"]}]\n";
  testing::write_file(path, node_yaml("    - {id: a, path: /a, upstream: legacy}") + admin);
  auto options = NodeOptions::from_file(path);
  REQUIRE_MESSAGE(options.ok(), options.status().to_string());
  options->logging.sink = [](std::string_view) {};
  auto node = Node::create(std::move(options).value());
  REQUIRE_MESSAGE(node.ok(), node.status().to_string());
  const std::uint16_t port = (*node)->gateway()->port();
  testing::write_file(path, node_yaml("    - {id: a, path: /a, upstream: legacy}\n"
                                      "    - {id: b, path: /b, upstream: legacy}") +
                                admin);
  auto post = [&](std::string key) {
    auto client = std::move(http::HttpClient::create({})).value();
    http::HttpRequest request;
    request.method = "POST";
    request.target = "/api/v1/gateway/reload";
    if (!key.empty()) request.headers.add("X-API-Key", key);
    auto r = client->send(fmt::format("127.0.0.1:{}", port), std::move(request));
    REQUIRE(r.ok());
    return std::move(r).value();
  };
  CHECK(post("").status == 401);
  CHECK_FALSE(openapi_has_path(port, "/b"));
  auto r = post("ops-key-0123456789abcdef");
  CHECK_MESSAGE(r.status == 200, r.body);
  CHECK(openapi_has_path(port, "/b"));
  testing::write_file(path, node_yaml("    - {id: c, path: /c, upstream: legasy}") + admin);
  r = post("ops-key-0123456789abcdef");
  CHECK(r.status >= 400);
  CHECK(contains(r.body, "legasy"));
  CHECK(openapi_has_path(port, "/b"));
}

}  // namespace
}  // namespace civicbus
