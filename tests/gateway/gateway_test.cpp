// The Gateway end to end: real sockets on loopback, real upstream servers (HttpServer), and
// requests sent with HttpClient or raw bytes.
#include "civicbus/gateway/gateway.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "civicbus/core/crypto.hpp"
#include "civicbus/core/id.hpp"
#include "civicbus/http/client.hpp"
#include "civicbus/http/server.hpp"
#include "gateway/http_signature.hpp"
#include "gateway/jwt.hpp"
#include "http/raw_client.hpp"
#include "http/raw_server.hpp"
#include "support/test_support.hpp"

namespace civicbus::gateway {
namespace {

using http::HttpRequest;
using http::HttpResponse;
using namespace std::chrono_literals;

constexpr std::string_view kAdminKey = "admin-key-0123456789abcdef";
constexpr std::string_view kPortalKey = "portal-key-0123456789abcdef";
constexpr std::string_view kBulkKey = "bulk-key-0123456789abcdef0";
const std::string kHmacSecret(40, 's');

// An upstream that answers with what it received, as JSON.
struct EchoUpstream {
  explicit EchoUpstream(std::string name = "echo") : name(std::move(name)) {
    server =
        std::make_unique<http::HttpServer>(http::HttpServerOptions{}, [this](const HttpRequest& r) {
          calls.fetch_add(1);
          if (r.path == "/health") {
            return HttpResponse::text(healthy.load() ? 200 : 500, "health\n");
          }
          if (r.path.find("/fail") != std::string::npos) return HttpResponse::text(503, "down\n");
          if (r.path.find("/slow") != std::string::npos) std::this_thread::sleep_for(300ms);
          Json headers = Json::object();
          for (const auto& [n, v] : r.headers) {
            std::string lower;
            for (char c : n)
              lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            headers.set(lower, v);
          }
          HttpResponse out;
          out.headers.add("Content-Type", "application/json");
          out.body = Json::object({{"upstream", this->name},
                                   {"method", r.method},
                                   {"target", r.target},
                                   {"body", r.body},
                                   {"headers", std::move(headers)}})
                         .dump();
          return out;
        });
    auto p = server->start();
    REQUIRE(p.ok());
    port = *p;
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
  std::string name;
  std::unique_ptr<http::HttpServer> server;
  std::uint16_t port = 0;
  std::atomic<int> calls{0};
  std::atomic<bool> healthy{true};
};

// A port nothing listens on.
std::uint16_t closed_port() {
  http::HttpServer s({}, [](const HttpRequest&) { return HttpResponse(); });
  auto p = s.start();
  REQUIRE(p.ok());
  const std::uint16_t port = *p;
  s.stop();
  return port;
}

GatewayOptions base_options(const EchoUpstream& upstream) {
  GatewayOptions o;
  o.listener.threads = 2;
  o.access_log.enabled = false;
  UpstreamOptions u;
  u.name = "permits";
  u.targets = {upstream.address()};
  u.request_timeout = 2s;
  o.upstreams.push_back(u);
  RouteOptions open;
  open.id = "public";
  open.method = "GET";
  open.path = "/public";
  open.upstream = "permits";
  open.strip_prefix = "/public";
  open.upstream_prefix = "/v2";
  o.routes.push_back(open);
  RouteOptions keyed;
  keyed.id = "permits";
  keyed.path = "/permits";
  keyed.upstream = "permits";
  keyed.auth = {AuthMethod::kApiKey, AuthMethod::kJwt, AuthMethod::kHmac};
  o.routes.push_back(keyed);
  RouteOptions staff = keyed;
  staff.id = "staff";
  staff.path = "/staff";
  staff.groups = {"staff"};
  o.routes.push_back(staff);
  ConsumerOptions admin;
  admin.id = "ops";
  admin.groups = {"admin", "staff"};
  admin.api_keys = {std::string(kAdminKey)};
  admin.priority_tier = 0;
  o.consumers.push_back(admin);
  ConsumerOptions portal;
  portal.id = "permits-portal";
  portal.groups = {"public-apps"};
  portal.api_keys = {std::string(kPortalKey)};
  portal.hmac = {HmacCredential{"portal-hmac", kHmacSecret}};
  portal.client_id = "portal-client";
  portal.client_secret = "portal-secret-0123456789";
  o.consumers.push_back(portal);
  ConsumerOptions bulk;
  bulk.id = "bulk-export";
  bulk.api_keys = {std::string(kBulkKey)};
  bulk.priority_tier = 2;
  o.consumers.push_back(bulk);
  return o;
}

struct Client {
  Client() {
    http::HttpClientOptions o;
    o.max_retries = 0;
    o.request_timeout = 5s;
    client = std::move(http::HttpClient::create(o)).value();
  }
  HttpResponse send(std::uint16_t port, std::string method, std::string target,
                    std::vector<std::pair<std::string, std::string>> headers = {},
                    std::string body = {}) {
    HttpRequest r;
    r.method = std::move(method);
    r.target = std::move(target);
    for (auto& [n, v] : headers) r.headers.add(n, v);
    r.body = std::move(body);
    auto response = client->send("127.0.0.1:" + std::to_string(port), std::move(r));
    REQUIRE_MESSAGE(response.ok(), response.status().to_string());
    return std::move(response).value();
  }
  std::unique_ptr<http::HttpClient> client;
};

Json body_json(const HttpResponse& r) {
  auto j = Json::parse(r.body);
  REQUIRE_MESSAGE(j.ok(), r.body);
  return std::move(j).value();
}

std::unique_ptr<Gateway> start_gateway(GatewayOptions options, GatewayDeps deps = {}) {
  auto g = Gateway::create(std::move(options), std::move(deps));
  REQUIRE_MESSAGE(g.ok(), g.status().to_string());
  auto port = (*g)->start();
  REQUIRE_MESSAGE(port.ok(), port.status().to_string());
  return std::move(g).value();
}

TEST_CASE("gateway: a public route is proxied with the path rewritten and trace headers") {
  EchoUpstream up;
  auto gw = start_gateway(base_options(up));
  Client c;
  const std::string trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  // Raw bytes, so that the Connection field is exactly what the test says.
  civicbus::testing::RawClient raw(gw->port());
  raw.send("GET /public/items?page=2 HTTP/1.1\r\nHost: t\r\ntraceparent: " + trace +
           "\r\nX-Request-Id: req-123\r\nX-Consumer-Id: forged\r\n"
           "X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Host: forged.example\r\n"
           "Connection: keep-alive, X-Secret\r\nX-Secret: hop\r\nX-Keep: kept\r\n\r\n");
  const auto raw_response = raw.read_response();
  REQUIRE(raw_response.has_value());
  REQUIRE(raw_response->status == 200);
  CHECK(raw_response->header("X-Request-Id") == "req-123");
  CHECK(raw_response->header("Via") == "1.1 civicbus");
  HttpResponse r;
  r.body = raw_response->body;
  const Json j = body_json(r);
  CHECK(j.get_string("target") == "/v2/items?page=2");
  const Json& h = *j.find("headers");
  CHECK(h.get_string("x-request-id") == "req-123");
  const std::string forwarded = h.get_string("traceparent");
  CHECK(forwarded.substr(0, 36) == trace.substr(0, 36));  // same trace id
  CHECK(forwarded != trace);                              // the gateway's own span
  CHECK(forwarded.substr(53) == "01");
  CHECK(h.get_string("x-forwarded-for") == "10.1.2.3, 127.0.0.1");  // extended
  CHECK(h.get_string("x-forwarded-proto") == "http");
  CHECK(h.get_string("x-forwarded-host") == "t");           // the client's Host, not its claim
  CHECK(h.get_string("host").rfind("127.0.0.1:", 0) == 0);  // the upstream target
  CHECK(h.get_string("via") == "1.1 civicbus");
  CHECK(h.get_string("x-keep") == "kept");
  CHECK_FALSE(h.contains("x-consumer-id"));           // forged by the client: removed
  CHECK_FALSE(h.contains("x-secret"));                // listed in Connection: hop-by-hop
  CHECK(h.get_string("connection") == "keep-alive");  // the gateway's own, not the client's

  // Without an incoming traceparent or request id, new ones are made.
  r = c.send(gw->port(), "GET", "/public");
  const Json j2 = body_json(r);
  CHECK(j2.get_string("target") == "/v2/");
  CHECK(is_uuid(j2.find("headers")->get_string("x-request-id")));
  CHECK(j2.find("headers")->get_string("traceparent").size() == 55);
}

TEST_CASE("gateway: unknown paths get 404 and wrong methods 405 with Allow") {
  EchoUpstream up;
  auto gw = start_gateway(base_options(up));
  Client c;
  HttpResponse r = c.send(gw->port(), "GET", "/nowhere");
  CHECK(r.status == 404);
  CHECK(r.headers.get("Content-Type") == "application/problem+json");
  CHECK(body_json(r).get_string("request_id").size() > 0);
  r = c.send(gw->port(), "DELETE", "/public");
  CHECK(r.status == 405);
  CHECK(r.headers.get("Allow") == "GET");
  r = c.send(gw->port(), "GET", "/public/../../etc/passwd");
  CHECK(r.status == 400);
  CHECK(up.calls.load() == 0);
}

TEST_CASE("gateway: API keys authenticate, are stripped, and groups are enforced") {
  EchoUpstream up;
  auto gw = start_gateway(base_options(up));
  Client c;
  HttpResponse r = c.send(gw->port(), "GET", "/permits/7");
  CHECK(r.status == 401);
  CHECK(r.headers.get("WWW-Authenticate").value_or("").find("ApiKey") != std::string_view::npos);
  r = c.send(gw->port(), "GET", "/permits/7", {{"apikey", "wrong-key-0123456789abcdef"}});
  CHECK(r.status == 401);
  CHECK(body_json(r).get_string("detail") == "invalid API key");
  r = c.send(gw->port(), "GET", "/permits/7", {{"apikey", std::string(kPortalKey)}});
  REQUIRE(r.status == 200);
  Json j = body_json(r);
  CHECK(j.find("headers")->get_string("x-consumer-id") == "permits-portal");
  CHECK(j.find("headers")->get_string("x-consumer-groups") == "public-apps");
  CHECK_FALSE(j.find("headers")->contains("apikey"));
  r = c.send(gw->port(), "GET", "/permits/7",
             {{"Authorization", "ApiKey " + std::string(kPortalKey)}});
  CHECK(r.status == 200);
  r = c.send(gw->port(), "GET", "/permits/7", {{"X-API-Key", std::string(kPortalKey)}});
  CHECK(r.status == 200);
  // Two kinds of credentials at once: refused rather than guessed.
  r = c.send(gw->port(), "GET", "/permits/7",
             {{"apikey", std::string(kPortalKey)}, {"Authorization", "Bearer x.y.z"}});
  CHECK(r.status == 401);
  // Groups.
  r = c.send(gw->port(), "GET", "/staff", {{"apikey", std::string(kPortalKey)}});
  CHECK(r.status == 403);
  r = c.send(gw->port(), "GET", "/staff", {{"apikey", std::string(kAdminKey)}});
  CHECK(r.status == 200);
  // Keys are stored hashed: nothing the admin API shows holds them.
  r = c.send(gw->port(), "GET", "/api/v1/gateway/consumers", {{"apikey", std::string(kAdminKey)}});
  REQUIRE(r.status == 200);
  CHECK(r.body.find(std::string(kPortalKey)) == std::string::npos);
  CHECK(r.body.find("portal-secret") == std::string::npos);
}

TEST_CASE("gateway: a gateway value with a line break is left out of the upstream request") {
  // Groups are free text: one with CR LF must not add a field to the upstream request. The
  // gateway's other fields are still sent.
  EchoUpstream up;
  GatewayOptions o = base_options(up);
  for (ConsumerOptions& consumer : o.consumers) {
    if (consumer.id == "permits-portal") consumer.groups = {"public-apps\r\nX-Injected: 1"};
  }
  auto gw = start_gateway(std::move(o));
  Client c;
  HttpResponse r = c.send(gw->port(), "GET", "/permits/7", {{"apikey", std::string(kPortalKey)}});
  REQUIRE(r.status == 200);
  Json j = body_json(r);
  const Json* headers = j.find("headers");
  REQUIRE(headers != nullptr);
  CHECK_FALSE(headers->contains("x-injected"));
  CHECK_FALSE(headers->contains("x-consumer-groups"));
  CHECK(headers->get_string("x-consumer-id") == "permits-portal");
  CHECK(headers->get_string("x-request-id").size() > 0);
  CHECK(headers->get_string("traceparent").size() == 55);
  CHECK(headers->get_string("x-forwarded-proto") == "http");
  CHECK(headers->get_string("via") == "1.1 civicbus");
}

TEST_CASE("gateway: the forwarded path: the prefix stripped, the upstream prefix put on") {
  EchoUpstream up;
  GatewayOptions o = base_options(up);
  RouteOptions slash;  // an upstream prefix with a trailing slash
  slash.id = "slash";
  slash.method = "GET";
  slash.path = "/docs";
  slash.upstream = "permits";
  slash.strip_prefix = "/docs";
  slash.upstream_prefix = "/v3/";
  o.routes.push_back(slash);
  RouteOptions spaced;  // configuration that would put a space into the request line
  spaced.id = "spaced";
  spaced.method = "GET";
  spaced.path = "/spaced";
  spaced.upstream = "permits";
  spaced.upstream_prefix = "/v 2";
  o.routes.push_back(spaced);
  auto gw = start_gateway(std::move(o));
  Client c;
  HttpResponse r = c.send(gw->port(), "GET", "/public");  // the whole path stripped
  REQUIRE(r.status == 200);
  CHECK(body_json(r).get_string("target") == "/v2/");
  r = c.send(gw->port(), "GET", "/docs/a/b?x=1");
  REQUIRE(r.status == 200);
  CHECK(body_json(r).get_string("target") == "/v3/a/b?x=1");
  r = c.send(gw->port(), "GET", "/docs");
  REQUIRE(r.status == 200);
  CHECK(body_json(r).get_string("target") == "/v3/");
  r = c.send(gw->port(), "GET", "/spaced/x");
  CHECK(r.status == 500);
  CHECK(body_json(r).get_string("detail").find("space or control character") != std::string::npos);
}

TEST_CASE("gateway: OAuth client credentials issue ES256 tokens that authenticate") {
  EchoUpstream up;
  auto gw = start_gateway(base_options(up));
  Client c;
  const std::vector<std::pair<std::string, std::string>> form = {
      {"Content-Type", "application/x-www-form-urlencoded"}};
  HttpResponse r = c.send(gw->port(), "POST", "/oauth2/token", form,
                          "grant_type=client_credentials&client_id=portal-client&client_secret="
                          "portal-secret-0123456789");
  REQUIRE(r.status == 200);
  CHECK(r.headers.get("Cache-Control") == "no-store");
  Json token = body_json(r);
  CHECK(token.get_string("token_type") == "Bearer");
  CHECK(token.get_int("expires_in") == 3600);
  const std::string access = token.get_string("access_token");
  auto parts = parse_jws_compact(access);
  REQUIRE(parts.ok());
  CHECK(parts->algorithm == JwsAlgorithm::kEs256);

  // Basic authentication of the client works too.
  r = c.send(gw->port(), "POST", "/oauth2/token",
             {{"Content-Type", "application/x-www-form-urlencoded"},
              {"Authorization",
               "Basic " + crypto::base64_encode("portal-client:portal-secret-0123456789")}},
             "grant_type=client_credentials");
  CHECK(r.status == 200);

  r = c.send(gw->port(), "GET", "/permits", {{"Authorization", "Bearer " + access}});
  REQUIRE(r.status == 200);
  CHECK(body_json(r).find("headers")->get_string("x-consumer-id") == "permits-portal");

  // The JWKS verifies the token.
  r = c.send(gw->port(), "GET", "/.well-known/jwks.json");
  REQUIRE(r.status == 200);
  auto jwks = JwkSet::parse_text(r.body);
  REQUIRE(jwks.ok());
  CHECK(verify_jws_compact(access, *jwks).ok());
  CHECK(r.body.find("\"d\"") == std::string::npos);  // no private part

  // Wrong secret, unknown client, other grant types.
  r = c.send(gw->port(), "POST", "/oauth2/token", form,
             "grant_type=client_credentials&client_id=portal-client&client_secret=nope");
  CHECK(r.status == 401);
  CHECK(body_json(r).get_string("error") == "invalid_client");
  r = c.send(gw->port(), "POST", "/oauth2/token", form,
             "grant_type=client_credentials&client_id=ghost&client_secret=nope");
  CHECK(r.status == 401);
  r = c.send(gw->port(), "POST", "/oauth2/token", form, "grant_type=password&username=a");
  CHECK(r.status == 400);
  CHECK(body_json(r).get_string("error") == "unsupported_grant_type");

  // A tampered token.
  std::string tampered = access;
  tampered[tampered.size() - 5] = tampered[tampered.size() - 5] == 'A' ? 'B' : 'A';
  r = c.send(gw->port(), "GET", "/permits", {{"Authorization", "Bearer " + tampered}});
  CHECK(r.status == 401);
}

// A JWKS file with one RSA key of another issuer, and tokens signed with it.
struct ExternalIssuer {
  ExternalIssuer() : random(7) {
    auto k = Jwk::generate_rsa(random, "ext-1");
    REQUIRE(k.ok());
    key = std::move(k).value();
    JwkSet set;
    REQUIRE(set.add(key).ok());
    jwks_path = (dir.path() / "jwks.json").string();
    civicbus::testing::write_file(jwks_path, set.public_jwks().dump());
  }
  std::string token(Json claims, const Jwk* with = nullptr) {
    auto t = sign_jwt(claims, with ? *with : key, random);
    REQUIRE(t.ok());
    return *t;
  }
  SeededRandom random;
  Jwk key = std::move(Jwk::from_secret(std::string(32, 'x'), "unused")).value();
  civicbus::testing::TempDir dir;
  std::string jwks_path;
};

TEST_CASE("gateway: JWT bearer tokens from a JWKS file, with the attacks refused") {
  EchoUpstream up;
  ExternalIssuer issuer;
  GatewayOptions o = base_options(up);
  o.jwt.jwks_file = issuer.jwks_path;
  o.jwt.issuer = "https://idp.example.ca";
  o.jwt.audiences = {"civicbus"};
  o.consumers[1].jwt_subject = "portal-service-account";
  auto gw = start_gateway(o);
  Client c;
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  auto claims = [&](std::int64_t exp_offset, std::string aud) {
    return Json::object({{"iss", "https://idp.example.ca"},
                         {"sub", "portal-service-account"},
                         {"aud", std::move(aud)},
                         {"iat", static_cast<long long>(now)},
                         {"exp", static_cast<long long>(now + exp_offset)}});
  };
  auto call = [&](const std::string& token) {
    return c.send(gw->port(), "GET", "/permits", {{"Authorization", "Bearer " + token}});
  };
  HttpResponse r = call(issuer.token(claims(300, "civicbus")));
  REQUIRE(r.status == 200);
  CHECK(body_json(r).find("headers")->get_string("x-consumer-id") == "permits-portal");

  r = call(issuer.token(claims(-3600, "civicbus")));
  CHECK(r.status == 401);
  CHECK(body_json(r).get_string("detail").find("expired") != std::string::npos);
  r = call(issuer.token(claims(300, "another-api")));
  CHECK(r.status == 401);
  CHECK(body_json(r).get_string("detail").find("audience") != std::string::npos);

  // alg "none".
  const std::string payload = crypto::base64url_encode(claims(300, "civicbus").dump());
  r = call(crypto::base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." + payload + ".");
  CHECK(r.status == 401);
  // HS256 with the RSA public key (as PEM-less JWK text) as the HMAC secret.
  const std::string public_text = issuer.key.public_jwk()->dump();
  auto confused = Jwk::from_secret(public_text, "ext-1");
  REQUIRE(confused.ok());
  r = call(issuer.token(claims(300, "civicbus"), &*confused));
  CHECK(r.status == 401);
  CHECK(up.calls.load() == 1);
}

TEST_CASE("gateway: an unknown kid refreshes the JWKS from its URL, at most once per interval") {
  EchoUpstream up;
  SeededRandom random(11);
  auto first = std::move(Jwk::generate_ec(random, "k1")).value();
  auto second = std::move(Jwk::generate_ec(random, "k2")).value();
  std::mutex mu;
  JwkSet served;
  REQUIRE(served.add(first).ok());
  std::atomic<int> fetches{0};
  http::HttpServer idp({}, [&](const HttpRequest&) {
    fetches.fetch_add(1);
    std::lock_guard lock(mu);
    HttpResponse r;
    r.headers.add("Content-Type", "application/json");
    r.body = served.public_jwks().dump();
    return r;
  });
  auto idp_port = idp.start();
  REQUIRE(idp_port.ok());
  GatewayOptions o = base_options(up);
  o.jwt.jwks_url = "http://127.0.0.1:" + std::to_string(*idp_port) + "/jwks.json";
  o.jwt.refresh_min_interval = 1s;
  auto gw = start_gateway(o);
  Client c;
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  Json claims =
      Json::object({{"sub", "permits-portal"}, {"exp", static_cast<long long>(now + 60)}});
  auto call = [&](const Jwk& key) {
    auto token = sign_jwt(claims, key, random);
    REQUIRE(token.ok());
    return c.send(gw->port(), "GET", "/permits", {{"Authorization", "Bearer " + *token}});
  };
  // The fetch at start may still be running: the first request waits for it.
  CHECK(call(first).status == 200);
  std::this_thread::sleep_for(1100ms);  // past refresh_min_interval
  {
    std::lock_guard lock(mu);
    REQUIRE(served.add(second).ok());
  }
  // k2 is unknown: one refresh, then it verifies.
  CHECK(call(second).status == 200);
  const int after = fetches.load();
  CHECK(after >= 1);
  CHECK(after <= 2);
  // An unknown kid again within the interval does not fetch again.
  auto third = std::move(Jwk::generate_ec(random, "k3")).value();
  CHECK(call(third).status == 401);
  CHECK(fetches.load() == after);
}

TEST_CASE("gateway: HMAC signatures authenticate once, and replays and stale dates are refused") {
  EchoUpstream up;
  auto gw = start_gateway(base_options(up));
  Client c;
  auto signed_request = [&](std::int64_t created, std::string nonce) {
    HttpRequest r;
    r.method = "POST";
    r.target = "/permits/applications";
    r.headers.add("Host", "127.0.0.1:" + std::to_string(gw->port()));
    r.headers.add("Content-Type", "application/json");
    r.body = R"({"permit":"B-1"})";
    HttpSignatureSignOptions s;
    s.keyid = "portal-hmac";
    s.key = kHmacSecret;
    s.created = created;
    s.nonce = std::move(nonce);
    s.scheme = "http";
    REQUIRE(sign_http_request(r, s).ok());
    return r;
  };
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  HttpRequest good = signed_request(now, "n-1");
  std::vector<std::pair<std::string, std::string>> headers(good.headers.begin(),
                                                           good.headers.end());
  HttpResponse r = c.send(gw->port(), "POST", good.target, headers, good.body);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  CHECK(body_json(r).find("headers")->get_string("x-consumer-id") == "permits-portal");
  // The same signature again: a replay.
  r = c.send(gw->port(), "POST", good.target, headers, good.body);
  CHECK(r.status == 401);
  // A stale signature.
  HttpRequest stale = signed_request(now - 3600, "n-2");
  r = c.send(gw->port(), "POST", stale.target, {stale.headers.begin(), stale.headers.end()},
             stale.body);
  CHECK(r.status == 401);
  // A body that does not match its digest.
  HttpRequest fresh = signed_request(now, "n-3");
  r = c.send(gw->port(), "POST", fresh.target, {fresh.headers.begin(), fresh.headers.end()},
             R"({"permit":"B-2"})");
  CHECK(r.status == 401);
  CHECK(up.calls.load() == 1);
}

TEST_CASE("gateway: IP lists per route and per consumer") {
  EchoUpstream up;
  GatewayOptions o = base_options(up);
  o.routes[0].ip.deny = {"127.0.0.0/8"};
  o.consumers[1].ip.allow = {"10.0.0.0/8", "2001:db8::/32"};
  auto gw = start_gateway(o);
  Client c;
  HttpResponse r = c.send(gw->port(), "GET", "/public");
  CHECK(r.status == 403);
  r = c.send(gw->port(), "GET", "/permits", {{"apikey", std::string(kPortalKey)}});
  CHECK(r.status == 403);
  CHECK(body_json(r).get_string("detail").find("permits-portal") != std::string::npos);
  r = c.send(gw->port(), "GET", "/permits", {{"apikey", std::string(kAdminKey)}});
  CHECK(r.status == 200);
}

TEST_CASE("gateway: rate limits answer 429 with Retry-After and RateLimit headers") {
  EchoUpstream up;
  GatewayOptions o = base_options(up);
  o.consumers[1].rate_limit.requests_per_minute = 3;
  o.routes[0].rate_limit.requests_per_minute = 2;  // anonymous: per address
  auto gw = start_gateway(o);
  Client c;
  for (int i = 0; i < 3; ++i) {
    HttpResponse r = c.send(gw->port(), "GET", "/permits", {{"apikey", std::string(kPortalKey)}});
    REQUIRE(r.status == 200);
    CHECK(r.headers.get("RateLimit-Limit") == "3");
    CHECK(r.headers.get("RateLimit-Remaining") == std::to_string(2 - i));
  }
  HttpResponse r = c.send(gw->port(), "GET", "/permits", {{"apikey", std::string(kPortalKey)}});
  CHECK(r.status == 429);
  CHECK(std::stoi(std::string(r.headers.get("Retry-After").value_or("0"))) >= 1);
  CHECK(r.headers.get("RateLimit-Remaining") == "0");
  // Another consumer is not affected.
  CHECK(c.send(gw->port(), "GET", "/permits", {{"apikey", std::string(kAdminKey)}}).status == 200);
  CHECK(c.send(gw->port(), "GET", "/public").status == 200);
  CHECK(c.send(gw->port(), "GET", "/public").status == 200);
  CHECK(c.send(gw->port(), "GET", "/public").status == 429);
  CHECK(gw->metrics_text().find("civicbus_gateway_rate_limited_total 2") != std::string::npos);
}

TEST_CASE("gateway: load shedding refuses low-priority consumers first") {
  // An upstream that holds every request until released.
  std::mutex mu;
  std::vector<http::HttpResponder> held;
  http::HttpServer slow({}, [&](HttpRequest, http::HttpResponder responder) {
    std::lock_guard lock(mu);
    held.push_back(std::move(responder));
  });
  auto slow_port = slow.start();
  REQUIRE(slow_port.ok());
  EchoUpstream up;
  GatewayOptions o = base_options(up);
  o.upstreams[0].targets = {"127.0.0.1:" + std::to_string(*slow_port)};
  o.load_shedding.initial_limit = 10;
  o.load_shedding.min_limit = 10;
  o.load_shedding.max_limit = 10;
  auto gw = start_gateway(o);
  http::HttpClientOptions co;
  co.max_retries = 0;
  co.max_connections_per_upstream = 32;
  auto client = std::move(http::HttpClient::create(co)).value();
  std::atomic<int> answered{0};
  auto send = [&](std::string_view key) {
    HttpRequest r;
    r.method = "GET";
    r.target = "/permits";
    r.headers.add("apikey", std::string(key));
    client->send_async("127.0.0.1:" + std::to_string(gw->port()), std::move(r),
                       [&](Result<HttpResponse>) { answered.fetch_add(1); });
  };
  // Seven normal-tier requests in flight: at the low tier's 70% share.
  for (int i = 0; i < 7; ++i) send(kPortalKey);
  for (int i = 0; i < 200 &&
                  [&] {
                    std::lock_guard l(mu);
                    return held.size();
                  }() < 7;
       ++i) {
    std::this_thread::sleep_for(5ms);
  }
  Client c;
  HttpResponse r = c.send(gw->port(), "GET", "/permits", {{"apikey", std::string(kBulkKey)}});
  CHECK(r.status == 503);
  CHECK(r.headers.get("Retry-After") == "1");
  const Json m = gw->metrics_json();
  CHECK(m.find("load_shedding")->find("tiers")->as_array()[2].get_bool("shedding"));
  // Critical and normal tiers still pass: send them and let everything go.
  send(kAdminKey);
  send(kPortalKey);
  for (int i = 0; i < 200 &&
                  [&] {
                    std::lock_guard l(mu);
                    return held.size();
                  }() < 9;
       ++i) {
    std::this_thread::sleep_for(5ms);
  }
  {
    std::lock_guard lock(mu);
    CHECK(held.size() == 9);
    for (auto& h : held) h.send(HttpResponse::text(200, "done"));
    held.clear();
  }
  for (int i = 0; i < 400 && answered.load() < 9; ++i) std::this_thread::sleep_for(5ms);
  CHECK(answered.load() == 9);
  CHECK(gw->metrics_text().find("civicbus_gateway_shed_total 1") != std::string::npos);
  gw->stop();
  slow.stop();
}

TEST_CASE("gateway: round robin, retries on another target, breaker and 503 when all are down") {
  EchoUpstream a("a");
  EchoUpstream b("b");
  GatewayOptions o = base_options(a);
  o.upstreams[0].targets = {a.address(), b.address(), "127.0.0.1:" + std::to_string(closed_port())};
  o.upstreams[0].passive.consecutive_failures = 1;
  o.upstreams[0].passive.open_duration = 60s;
  o.upstreams[0].retries = 2;
  auto gw = start_gateway(o);
  Client c;
  std::map<std::string, int> seen;
  for (int i = 0; i < 6; ++i) {
    HttpResponse r = c.send(gw->port(), "GET", "/public");
    REQUIRE(r.status == 200);  // the dead target is retried elsewhere, then skipped
    seen[body_json(r).get_string("upstream")]++;
  }
  CHECK(seen["a"] == 3);
  CHECK(seen["b"] == 3);
  const Json m = gw->metrics_json();
  const auto& targets = m.find("upstreams")->find("permits")->as_array();
  CHECK(targets[2].get_string("breaker") == "open");
  // A POST to a failing path is not retried: 503 from the upstream passes through.
  HttpResponse r =
      c.send(gw->port(), "POST", "/permits/fail", {{"apikey", std::string(kPortalKey)}});
  CHECK(r.status == 503);
  // Every target down: 503 from the gateway.
  a.server->stop();
  b.server->stop();
  r = c.send(gw->port(), "GET", "/public");
  CHECK((r.status == 502 || r.status == 503));
  r = c.send(gw->port(), "GET", "/public");
  CHECK(r.status == 503);
  CHECK(body_json(r).get_string("detail").find("permits") != std::string::npos);
  CHECK(gw->health().get_string("status") == "degraded");
}

TEST_CASE("gateway: a slow upstream gets 504, and active health checks take a target out") {
  EchoUpstream a("a");
  EchoUpstream b("b");
  GatewayOptions o = base_options(a);
  o.upstreams[0].targets = {a.address(), b.address()};
  o.upstreams[0].request_timeout = 100ms;
  o.upstreams[0].passive.consecutive_failures = 0;
  o.upstreams[0].active.path = "/health";
  o.upstreams[0].active.interval = 50ms;
  o.upstreams[0].active.unhealthy_threshold = 2;
  o.upstreams[0].active.healthy_threshold = 1;
  auto gw = start_gateway(o);
  Client c;
  HttpResponse r = c.send(gw->port(), "GET", "/public/slow");
  CHECK(r.status == 504);
  b.healthy = false;
  std::this_thread::sleep_for(400ms);
  for (int i = 0; i < 4; ++i) {
    r = c.send(gw->port(), "GET", "/public");
    REQUIRE(r.status == 200);
    CHECK(body_json(r).get_string("upstream") == "a");
  }
  b.healthy = true;
  std::this_thread::sleep_for(300ms);
  std::set<std::string> seen;
  for (int i = 0; i < 4; ++i)
    seen.insert(body_json(c.send(gw->port(), "GET", "/public")).get_string("upstream"));
  CHECK(seen.size() == 2);
}

TEST_CASE("gateway: in-process routes get params, consumer and request id") {
  EchoUpstream up;
  auto gw = start_gateway(base_options(up));
  RouteOptions route;
  route.id = "devices.readings";
  route.method = "GET";
  route.match = PathKind::kTemplate;
  route.path = "/devices/{id}/readings";
  route.auth = {AuthMethod::kApiKey};
  route.summary = "Readings of a device";
  REQUIRE(gw->add_route(route, [](const GatewayRequest& r) {
              return HttpResponse::text(200, std::string(r.param("id")) + " for " +
                                                 std::string(r.consumer_id) + " " +
                                                 std::string(r.request_id.substr(0, 4)));
            }).ok());
  RouteOptions boom = route;
  boom.id = "devices.boom";
  boom.path = "/devices/{id}/boom";
  REQUIRE(gw->add_route(boom, [](const GatewayRequest&) -> HttpResponse {
              throw std::runtime_error("handler bug");
            }).ok());
  Client c;
  HttpResponse r = c.send(gw->port(), "GET", "/devices/m%2D7/readings",
                          {{"apikey", std::string(kPortalKey)}, {"X-Request-Id", "abcd-1"}});
  CHECK(r.status == 200);
  CHECK(r.body == "m-7 for permits-portal abcd");
  r = c.send(gw->port(), "GET", "/devices/7/boom", {{"apikey", std::string(kPortalKey)}});
  CHECK(r.status == 500);
  CHECK(r.body.find("handler bug") == std::string::npos);
  // Duplicate route ids are refused.
  CHECK_FALSE(gw->add_route(route, [](const GatewayRequest&) { return HttpResponse(); }).ok());
}

TEST_CASE("gateway: fields the response already has are not added again by the gateway") {
  EchoUpstream up;
  auto gw = start_gateway(base_options(up));
  RouteOptions route;
  route.id = "own.fields";
  route.method = "GET";
  route.path = "/own-fields";
  route.rate_limit.requests_per_minute = 1000;
  REQUIRE(gw->add_route(route, [](const GatewayRequest&) {
              HttpResponse out = HttpResponse::text(200, "mine\n");
              out.headers.add("X-Request-Id", "handler-1");  // the gateway's id is left out
              out.headers.add("RateLimit-Limit", "7");       // so is its RateLimit-Limit
              out.headers.add("X-Something-Else", "kept");
              return out;
            }).ok());
  Client c;
  const HttpResponse r = c.send(gw->port(), "GET", "/own-fields", {});
  REQUIRE(r.status == 200);
  CHECK(r.headers.count("X-Request-Id") == 1);
  CHECK(r.headers.get("X-Request-Id") == "handler-1");
  CHECK(r.headers.count("RateLimit-Limit") == 1);
  CHECK(r.headers.get("RateLimit-Limit") == "7");
  // The gateway's other RateLimit fields, whose names the response does not have, are added.
  CHECK(r.headers.count("RateLimit-Remaining") == 1);
  CHECK(r.headers.count("RateLimit-Reset") == 1);
  CHECK(r.headers.count("RateLimit-Policy") == 1);
  CHECK(r.headers.get("X-Something-Else") == "kept");
}

// Counts the lines of a response head whose name is `name` (any case).
std::size_t count_fields(std::string_view head, std::string_view name) {
  std::size_t n = 0;
  std::size_t at = head.find("\r\n");
  while (at != std::string_view::npos && at + 2 < head.size()) {
    const std::size_t end = std::min(head.find("\r\n", at + 2), head.size());
    const std::string_view line = head.substr(at + 2, end - at - 2);
    if (http::equals_ignore_case(line.substr(0, line.find(':')), name)) ++n;
    at = end == head.size() ? std::string_view::npos : end;
  }
  return n;
}

TEST_CASE("gateway: a proxied response's fields pass on, but not hop-by-hop ones") {
  // The upstream's fields as it sent them, Date, Server and its own request id included; the
  // hop-by-hop ones, those its Connection field names and its framing are the gateway's to set.
  const std::string fields =
      "Date: Tue, 01 Dec 2026 10:00:00 GMT\r\nServer: upstream/1.0\r\n"
      "Connection: keep-alive, X-Hop, close-not\r\nX-Hop: gone\r\nclose-not: gone too\r\n"
      "Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nTrailer: X-T\r\n"
      "X-Request-Id: upstream-7\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
      "Content-Type: text/plain\r\nX-Empty:\r\nContent-Length: 3\r\n\r\nok\n";
  std::atomic<int> served{0};
  civicbus::testing::RawServer upstream([&](civicbus::testing::RawConnection& conn, int) {
    while (conn.read_request()) {
      // Every other answer is a 503 with a field of its own, which the gateway retries on the
      // same target (a GET): none of that answer's fields reach the client.
      if (served.fetch_add(1) % 2 == 0) {
        conn.send("HTTP/1.1 503 Busy\r\nX-Failed-Attempt: 1\r\nContent-Length: 0\r\n\r\n");
      } else {
        conn.send("HTTP/1.1 200 OK\r\n" + fields);
      }
    }
  });
  EchoUpstream unused;
  GatewayOptions o = base_options(unused);
  o.upstreams[0].targets = {upstream.address()};
  o.upstreams[0].retries = 1;
  auto gw = start_gateway(o);
  civicbus::testing::RawClient raw(gw->port());
  for (int i = 0; i < 3; ++i) {
    raw.send("GET /public/x HTTP/1.1\r\nHost: t\r\n\r\n");
    const auto r = raw.read_response();
    REQUIRE(r.has_value());
    CAPTURE(r->head);
    CHECK(r->status == 200);
    CHECK(r->body == "ok\n");
    CHECK(r->header("Date") == "Tue, 01 Dec 2026 10:00:00 GMT");
    CHECK(r->header("Server") == "upstream/1.0");
    CHECK(r->header("X-Request-Id") == "upstream-7");
    CHECK(r->header("Content-Type") == "text/plain");
    CHECK(r->header("Via") == "1.1 civicbus");
    CHECK(r->header("Connection").empty());  // HTTP/1.1 keep-alive: none needed
    for (const char* once :
         {"Date", "Server", "X-Request-Id", "Content-Length", "Via", "Content-Type", "X-Empty"}) {
      CHECK_MESSAGE(count_fields(r->head, once) == 1, once);
    }
    CHECK(count_fields(r->head, "Set-Cookie") == 2);
    for (const char* gone : {"X-Hop", "close-not", "Keep-Alive", "Proxy-Authenticate", "Trailer",
                             "X-Failed-Attempt", "Connection"}) {
      CHECK_MESSAGE(count_fields(r->head, gone) == 0, gone);
    }
  }
  CHECK(served.load() == 6);
}

TEST_CASE("gateway: a connection's next response carries nothing of the one before") {
  EchoUpstream up;
  auto gw = start_gateway(base_options(up));
  RouteOptions route;
  route.id = "first.then.second";
  route.method = "GET";
  route.match = PathKind::kPrefix;
  route.path = "/turns";
  REQUIRE(gw->add_route(route, [](const GatewayRequest& r) {
              HttpResponse out = HttpResponse::text(200, std::string(r.http.path) + "\n");
              if (r.http.path == "/turns/first") out.headers.add("X-First-Only", "yes");
              return out;
            }).ok());
  Client c;  // one pooled connection for both
  const HttpResponse first = c.send(gw->port(), "GET", "/turns/first");
  CHECK(first.headers.get("X-First-Only") == "yes");
  const HttpResponse second = c.send(gw->port(), "GET", "/turns/second");
  CHECK(second.body == "/turns/second\n");
  CHECK_FALSE(second.headers.contains("X-First-Only"));
  CHECK(second.headers.count("X-Request-Id") == 1);
  // Proxied too: the upstream's fields of one answer are not left for the next.
  const HttpResponse proxied = c.send(gw->port(), "GET", "/public/permits/1");
  const HttpResponse after = c.send(gw->port(), "GET", "/turns/second");
  CHECK(proxied.headers.get("Content-Type") == "application/json");
  CHECK(after.headers.get("Content-Type") == "text/plain; charset=utf-8");
  CHECK(after.headers.count("Content-Type") == 1);
}

TEST_CASE("gateway: a connection's next request keeps nothing of the one before") {
  // The connection's request is reused in place (the parser's own): the request id, path,
  // consumer and trace of one request must not show in the next on the same connection.
  EchoUpstream up;
  auto gw = start_gateway(base_options(up));
  Client c;  // one pooled connection, so one worker
  HttpResponse r =
      c.send(gw->port(), "GET", "/permits/a/rather/long/path/for/the/first",
             {{"apikey", std::string(kPortalKey)},
              {"X-Request-Id", "client-chosen-request-id-0001"},
              {"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}});
  REQUIRE(r.status == 200);
  CHECK(r.headers.get("X-Request-Id") == "client-chosen-request-id-0001");
  Json j = body_json(r);
  CHECK(j.get_string("target") == "/permits/a/rather/long/path/for/the/first");
  CHECK(j.find("headers")->get_string("x-consumer-id") == "permits-portal");

  r = c.send(gw->port(), "GET", "/public/1");
  REQUIRE(r.status == 200);
  const std::string id = std::string(r.headers.get("X-Request-Id").value_or(""));
  CHECK(is_uuid(id));
  j = body_json(r);
  CHECK(j.get_string("target") == "/v2/1");
  const Json& h = *j.find("headers");
  CHECK(h.get_string("x-request-id") == id);
  CHECK_FALSE(h.contains("x-consumer-id"));
  CHECK(h.get_string("traceparent").substr(3, 32) != "4bf92f3577b34da6a3ce929d0e0e4736");

  // The consumer of the first request does not authenticate a later one without a key.
  r = c.send(gw->port(), "GET", "/permits/1");
  CHECK(r.status == 401);
  r = c.send(gw->port(), "GET", "/public/2");
  CHECK(r.status == 200);
  CHECK(r.headers.get("X-Request-Id") != std::optional<std::string_view>(id));
}

TEST_CASE("gateway: CORS preflight and response headers") {
  EchoUpstream up;
  GatewayOptions o = base_options(up);
  CorsOptions cors;
  cors.allowed_origins = {"https://portal.example.ca"};
  cors.allowed_methods = {"GET", "POST"};
  cors.allowed_headers = {"apikey", "Content-Type"};
  cors.max_age = 600s;
  o.cors["portal"] = cors;
  o.routes[1].cors = "portal";
  auto gw = start_gateway(o);
  Client c;
  HttpResponse r = c.send(gw->port(), "OPTIONS", "/permits",
                          {{"Origin", "https://portal.example.ca"},
                           {"Access-Control-Request-Method", "POST"},
                           {"Access-Control-Request-Headers", "apikey"}});
  CHECK(r.status == 204);
  CHECK(r.headers.get("Access-Control-Allow-Origin") == "https://portal.example.ca");
  CHECK(r.headers.get("Access-Control-Max-Age") == "600");
  r = c.send(gw->port(), "OPTIONS", "/permits",
             {{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}});
  CHECK(r.status == 403);
  r = c.send(gw->port(), "GET", "/permits",
             {{"Origin", "https://portal.example.ca"}, {"apikey", std::string(kPortalKey)}});
  CHECK(r.status == 200);
  CHECK(r.headers.get("Access-Control-Allow-Origin") == "https://portal.example.ca");
  CHECK(up.calls.load() == 1);
}

TEST_CASE("gateway: deprecated versions get Deprecation, Sunset and Link, then 410") {
  EchoUpstream up;
  ManualClock clock(SystemTime{std::chrono::seconds{1'800'000'000}});
  GatewayOptions o = base_options(up);
  ApiVersionOptions v1;
  v1.version = "v1";
  v1.deprecated_at = SystemTime{std::chrono::seconds{1'790'000'000}};
  v1.sunset_at = SystemTime{std::chrono::seconds{1'810'000'000}};
  v1.successor_url = "http://127.0.0.1/v2/";
  o.versions.push_back(v1);
  o.routes[0].version = "v1";
  GatewayDeps deps;
  deps.clock = &clock;
  auto gw = start_gateway(o, deps);
  Client c;
  HttpResponse r = c.send(gw->port(), "GET", "/public");
  CHECK(r.status == 200);
  CHECK(r.headers.get("Deprecation") == "@1790000000");
  CHECK(r.headers.contains("Sunset"));
  CHECK(r.headers.get("Link").value_or("").find("successor-version") != std::string_view::npos);
  CHECK(gw->openapi().at_pointer("/paths/~1public/get/deprecated") != nullptr);
  clock.advance(std::chrono::seconds(20'000'000));
  r = c.send(gw->port(), "GET", "/public");
  CHECK(r.status == 410);
  CHECK(up.calls.load() == 1);
}

TEST_CASE(
    "gateway: admin API needs an admin consumer and creates consumers with a key shown once") {
  EchoUpstream up;
  auto gw = start_gateway(base_options(up));
  Client c;
  HttpResponse r = c.send(gw->port(), "GET", "/api/v1/gateway/health");
  CHECK(r.status == 200);
  CHECK(body_json(r).get_string("status") == "ok");
  r = c.send(gw->port(), "GET", "/api/v1/gateway/consumers");
  CHECK(r.status == 401);
  r = c.send(gw->port(), "GET", "/api/v1/gateway/consumers", {{"apikey", std::string(kPortalKey)}});
  CHECK(r.status == 403);
  r = c.send(gw->port(), "POST", "/api/v1/gateway/consumers", {{"apikey", std::string(kAdminKey)}},
             R"({"id":"parking-app","groups":["public-apps"],"generate_api_key":true})");
  REQUIRE(r.status == 201);
  const std::string key = body_json(r).get_string("api_key");
  CHECK(key.size() > 30);
  r = c.send(gw->port(), "GET", "/permits", {{"apikey", key}});
  CHECK(r.status == 200);
  CHECK(body_json(r).find("headers")->get_string("x-consumer-id") == "parking-app");
  r = c.send(gw->port(), "GET", "/api/v1/gateway/consumers", {{"apikey", std::string(kAdminKey)}});
  CHECK(r.body.find("parking-app") != std::string::npos);
  CHECK(r.body.find(key) == std::string::npos);
  r = c.send(gw->port(), "POST", "/api/v1/gateway/consumers", {{"apikey", std::string(kAdminKey)}},
             R"({"id":"bad id!"})");
  CHECK(r.status == 400);
  r = c.send(gw->port(), "GET", "/api/v1/gateway/metrics", {{"apikey", std::string(kAdminKey)}});
  CHECK(r.status == 200);
  CHECK(r.body.find("civicbus_gateway_responses_total{class=\"2xx\",route=\"permits\"}") !=
        std::string::npos);
  r = c.send(gw->port(), "GET", "/api/v1/gateway/metrics",
             {{"apikey", std::string(kAdminKey)}, {"Accept", "application/json"}});
  CHECK(body_json(r).at_pointer("/routes/permits/responses/2xx")->as_int() == 1);
}

TEST_CASE("gateway: the OpenAPI document lists every route with parameters and security") {
  EchoUpstream up;
  auto gw = start_gateway(base_options(up));
  RouteOptions route;
  route.id = "devices.get";
  route.method = "GET";
  route.match = PathKind::kTemplate;
  route.path = "/devices/{id}";
  route.auth = {AuthMethod::kJwt};
  route.response_schema = Json::object({{"type", "object"}});
  REQUIRE(gw->add_route(route, [](const GatewayRequest&) { return HttpResponse(); }).ok());
  Client c;
  HttpResponse r = c.send(gw->port(), "GET", "/api/v1/openapi.json");
  REQUIRE(r.status == 200);
  const Json doc = body_json(r);
  CHECK(doc.get_string("openapi") == "3.1.0");
  const Json* op = doc.at_pointer("/paths/~1devices~1{id}/get");
  REQUIRE(op != nullptr);
  CHECK(op->get_string("operationId") == "devices.get");
  CHECK(op->at_pointer("/parameters/0/name")->as_string() == "id");
  CHECK(op->at_pointer("/security/0/bearerJwt") != nullptr);
  CHECK(op->at_pointer("/responses/200/content/application~1json/schema/type")->as_string() ==
        "object");
  CHECK(doc.at_pointer("/paths/~1permits/post/security") != nullptr);
  CHECK(doc.at_pointer("/components/securitySchemes/oauth2ClientCredentials/flows/"
                       "clientCredentials/tokenUrl")
            ->as_string() == "/oauth2/token");
  CHECK(doc.at_pointer("/paths/~1api~1v1~1gateway~1consumers/post") != nullptr);
  CHECK(doc == gw->openapi());
}

TEST_CASE("gateway: reload swaps routes while an open connection keeps working") {
  EchoUpstream up;
  GatewayOptions o = base_options(up);
  auto gw = start_gateway(o);
  civicbus::testing::RawClient raw(gw->port());
  raw.send("GET /public HTTP/1.1\r\nHost: t\r\n\r\n");
  auto first = raw.read_response();
  REQUIRE(first.has_value());
  CHECK(first->status == 200);
  RouteOptions added = o.routes[0];
  added.id = "public2";
  added.path = "/public2";
  added.strip_prefix = "/public2";
  o.routes.push_back(added);
  o.routes.erase(o.routes.begin());  // /public goes away
  REQUIRE(gw->reload(o).ok());
  raw.send("GET /public2/x HTTP/1.1\r\nHost: t\r\n\r\n");
  auto second = raw.read_response();
  REQUIRE(second.has_value());
  CHECK(second->status == 200);
  raw.send("GET /public HTTP/1.1\r\nHost: t\r\n\r\n");
  auto third = raw.read_response();
  REQUIRE(third.has_value());
  CHECK(third->status == 404);
  // A bad configuration changes nothing.
  GatewayOptions bad = o;
  bad.routes[0].upstream = "missing";
  Status s = gw->reload(bad);
  CHECK(s.code() == ErrorCode::kInvalidArgument);
  CHECK(s.message().find("missing") != std::string::npos);
  CHECK(Client().send(gw->port(), "GET", "/public2").status == 200);
}

TEST_CASE("gateway: stop() ends a request waiting on its upstream and returns") {
  // The request is suspended inside its connection's coroutine, awaiting the upstream: stop()
  // must cancel it and return, and the suspended coroutine must go without touching freed
  // state (the sanitizer build runs this too).
  EchoUpstream up;
  GatewayOptions o = base_options(up);
  o.upstreams[0].request_timeout = 10s;
  auto gw = start_gateway(o);
  civicbus::testing::RawClient raw(gw->port());
  raw.send("GET /public/slow HTTP/1.1\r\nHost: t\r\n\r\n");
  std::this_thread::sleep_for(100ms);  // the upstream has the request
  gw->stop();
  // Either the 503 made it out before the connection closed, or the connection just closed.
  const auto response = raw.read_response();
  if (response) CHECK(response->status == 503);
  CHECK(gw->port() == 0);
}

TEST_CASE("gateway: an API key stops working with the reload that removes it") {
  // Each worker remembers the keys it has seen (ApiKeyCache); a reload must still be obeyed
  // at once, on every connection, and a new key must work on them too.
  EchoUpstream up;
  GatewayOptions o = base_options(up);
  o.listener.threads = 2;
  auto gw = start_gateway(o);
  std::vector<std::unique_ptr<civicbus::testing::RawClient>> connections;
  auto status_on = [&](civicbus::testing::RawClient& raw, std::string_view key) {
    raw.send("GET /permits HTTP/1.1\r\nHost: t\r\napikey: " + std::string(key) + "\r\n\r\n");
    auto r = raw.read_response();
    REQUIRE(r.has_value());
    return r->status;
  };
  for (int i = 0; i < 4; ++i) {  // connections go to the workers in turn
    connections.push_back(std::make_unique<civicbus::testing::RawClient>(gw->port()));
    CHECK(status_on(*connections.back(), kPortalKey) == 200);
  }
  const std::string rotated = "portal-key-rotated-0123456789abcdef";
  o.consumers[1].api_keys = {rotated};
  REQUIRE(gw->reload(o).ok());
  for (auto& raw : connections) {
    CHECK(status_on(*raw, kPortalKey) == 401);
    CHECK(status_on(*raw, rotated) == 200);
    CHECK(status_on(*raw, kAdminKey) == 200);
  }
}

TEST_CASE("gateway: smuggling attempts are refused by the listener and never forwarded") {
  EchoUpstream up;
  auto gw = start_gateway(base_options(up));
  const char* attacks[] = {
      "POST /public HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\nGET /public HTTP/1.1\r\nHost: t\r\n\r\n",
      "POST /public HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
      "1\r\nG\r\n0\r\n\r\n",
      "POST /public HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
      "POST /public HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
      "GET /public HTTP/1.1\nHost: t\n\n",
      "POST /public HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n"};
  for (const char* attack : attacks) {
    civicbus::testing::RawClient raw(gw->port());
    raw.send(attack);
    auto r = raw.read_response();
    REQUIRE(r.has_value());
    CHECK(r->status >= 400);
    CHECK(r->status < 500);
  }
  CHECK(up.calls.load() == 0);
}

TEST_CASE("gateway: create() refuses bad configuration naming what is wrong") {
  EchoUpstream up;
  auto expect_error = [](GatewayOptions o, std::string_view needle) {
    auto g = Gateway::create(std::move(o));
    REQUIRE_FALSE(g.ok());
    CHECK_MESSAGE(g.status().message().find(needle) != std::string::npos, g.status().message());
  };
  GatewayOptions o = base_options(up);
  o.routes[1].upstream = "nope";
  expect_error(o, "route 'permits' names upstream 'nope'");
  o = base_options(up);
  o.consumers[1].api_keys = {"short"};
  expect_error(o, "consumer 'permits-portal': api_keys[0]");
  o = base_options(up);
  o.consumers[2].api_keys = {std::string(kPortalKey)};
  expect_error(o, "already belongs to consumer");
  o = base_options(up);
  o.upstreams[0].targets = {"no-port"};
  expect_error(o, "no-port");
  o = base_options(up);
  o.routes[0].cors = "missing";
  expect_error(o, "CORS policy 'missing'");
  o = base_options(up);
  o.oauth.algorithm = "HS256";
  expect_error(o, "ES256 or RS256");
  // The scheme is forwarded in X-Forwarded-Proto as it is.
  for (const char* scheme : {"", "1http", "ht tp", "https\r\nX-Injected: 1"}) {
    o = base_options(up);
    o.scheme = scheme;
    expect_error(o, "is not a URI scheme");
  }
  o = base_options(up);
  o.scheme = "svn+ssh";
  CHECK(Gateway::create(o).ok());
}

}  // namespace
}  // namespace civicbus::gateway

namespace civicbus::gateway {
namespace {

TEST_CASE("gateway: bodies are converted between JSON, XML and CSV by route and Accept") {
  // An upstream that speaks JSON only: it answers with the request body it got.
  std::atomic<int> calls{0};
  std::string seen_type;
  std::mutex mu;
  http::HttpServer json_only({}, [&](const HttpRequest& r) {
    calls.fetch_add(1);
    {
      std::lock_guard lock(mu);
      seen_type = std::string(r.headers.get("Content-Type").value_or(""));
    }
    HttpResponse out;
    out.headers.add("Content-Type", "application/json");
    out.body = r.body.empty() ? R"([{"roll":"1001","value":"250000"}])" : r.body;
    return out;
  });
  auto up_port = json_only.start();
  REQUIRE(up_port.ok());
  EchoUpstream unused;
  GatewayOptions o = base_options(unused);
  o.upstreams[0].targets = {"127.0.0.1:" + std::to_string(*up_port)};
  RouteOptions r;
  r.id = "assessments";
  r.path = "/assessments";
  r.upstream = "permits";
  r.upstream_format = BodyFormat::kJson;
  o.routes.push_back(r);
  auto gw = start_gateway(o);
  Client c;
  // XML in: the upstream receives JSON; the client asked for XML back.
  HttpResponse resp = c.send(gw->port(), "POST", "/assessments",
                             {{"Content-Type", "application/xml"}, {"Accept", "application/xml"}},
                             "<property roll=\"1001\"><value>250000</value></property>");
  REQUIRE_MESSAGE(resp.status == 200, resp.body);
  {
    std::lock_guard lock(mu);
    CHECK(seen_type == "application/json");
  }
  CHECK(resp.headers.get("Content-Type") == "application/xml");
  CHECK(resp.body.find("<property roll=\"1001\">") != std::string::npos);
  // CSV wanted from a JSON upstream.
  resp = c.send(gw->port(), "GET", "/assessments", {{"Accept", "text/csv"}});
  REQUIRE(resp.status == 200);
  CHECK(resp.headers.get("Content-Type") == "text/csv");
  CHECK(resp.body == "roll,value\r\n1001,250000\r\n");
  // No Accept: the upstream's JSON as it is.
  resp = c.send(gw->port(), "GET", "/assessments");
  CHECK(resp.headers.get("Content-Type") == "application/json");
  // Bad XML is refused before the upstream, naming where.
  const int before = calls.load();
  resp = c.send(gw->port(), "POST", "/assessments", {{"Content-Type", "application/xml"}},
                "<property><value></property>");
  CHECK(resp.status == 400);
  CHECK(body_json(resp).get_string("detail").find("line 1") != std::string::npos);
  resp = c.send(gw->port(), "POST", "/assessments", {{"Content-Type", "application/xml"}},
                "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\">]><x>&a;</x>");
  CHECK(resp.status == 400);
  resp = c.send(gw->port(), "POST", "/assessments", {{"Content-Type", "image/png"}}, "abc");
  CHECK(resp.status == 415);
  CHECK(calls.load() == before);
}

}  // namespace
}  // namespace civicbus::gateway

#include "support/test_pki.hpp"

namespace civicbus::gateway {
namespace {

TEST_CASE("gateway: TLS listener, client certificates mapped to consumers, https upstreams") {
  const auto& pki = civicbus::testing::pki();
  // An https upstream.
  http::HttpServerOptions up_options;
  http::TlsServerOptions up_tls;
  up_tls.default_certificate = {pki.server, pki.server_key};
  up_options.tls = up_tls;
  http::HttpServer upstream(up_options, [](const HttpRequest& r) {
    return HttpResponse::text(
        200, "secure upstream saw " + std::string(r.headers.get("X-Consumer-Id").value_or("-")) +
                 " via " + std::string(r.headers.get("X-Forwarded-Proto").value_or("")));
  });
  auto up_port = upstream.start();
  REQUIRE(up_port.ok());

  EchoUpstream unused;
  GatewayOptions o = base_options(unused);
  o.upstreams[0].targets = {"127.0.0.1:" + std::to_string(*up_port)};
  o.upstreams[0].tls = http::TlsClientOptions{};
  o.upstreams[0].tls->ca_file = pki.ca;
  http::TlsServerOptions tls;
  tls.default_certificate = {pki.server, pki.server_key};
  tls.client_ca_file = pki.ca;
  tls.client_auth = http::TlsClientAuth::kOptional;
  o.listener.tls = tls;
  o.routes[1].auth.push_back(AuthMethod::kMtls);
  o.consumers[0].certificate_uris = {"spiffe://civicbus.test/consumer/permits"};
  auto gw = start_gateway(o);

  auto client_with = [&](bool certificate) {
    http::HttpClientOptions co;
    co.max_retries = 0;
    co.tls = http::TlsClientOptions{};
    co.tls->ca_file = pki.ca;
    if (certificate) {
      co.tls->client_cert_file = pki.client;
      co.tls->client_key_file = pki.client_key;
    }
    return std::move(http::HttpClient::create(co)).value();
  };
  const std::string address = "127.0.0.1:" + std::to_string(gw->port());
  HttpRequest get;
  get.method = "GET";
  get.target = "/permits/1";
  // The client certificate authenticates as the consumer it is mapped to.
  auto r = client_with(true)->send(address, get);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(r->status == 200);
  CHECK(r->body == "secure upstream saw ops via https");
  // Without one, the route asks for credentials; an API key still works.
  auto anonymous = client_with(false);
  r = anonymous->send(address, get);
  REQUIRE(r.ok());
  CHECK(r->status == 401);
  get.headers.add("apikey", std::string(kPortalKey));
  r = anonymous->send(address, get);
  REQUIRE(r.ok());
  CHECK(r->body == "secure upstream saw permits-portal via https");
  // A certificate that maps to no consumer is refused on routes that accept mTLS.
  GatewayOptions unmapped = o;
  unmapped.consumers[0].certificate_uris.clear();
  REQUIRE(gw->reload(unmapped).ok());
  get.headers.remove("apikey");
  r = client_with(true)->send(address, get);
  REQUIRE(r.ok());
  CHECK(r->status == 401);
  CHECK(r->body.find("not mapped to a consumer") != std::string::npos);
  CHECK(gw->openapi().at_pointer("/components/securitySchemes/mutualTls/type")->as_string() ==
        "mutualTLS");
}

}  // namespace
}  // namespace civicbus::gateway

namespace civicbus::gateway {
namespace {

TEST_CASE("gateway: a JWKS URL over https, verified against its CA") {
  const auto& pki = civicbus::testing::pki();
  SeededRandom random(23);
  auto key = std::move(Jwk::generate_ec(random, "idp-1")).value();
  JwkSet served;
  REQUIRE(served.add(key).ok());
  http::HttpServerOptions idp_options;
  http::TlsServerOptions tls;
  tls.default_certificate = {pki.server, pki.server_key};
  idp_options.tls = tls;
  http::HttpServer idp(idp_options, [&](const HttpRequest&) {
    HttpResponse r;
    r.headers.add("Content-Type", "application/json");
    r.body = served.public_jwks().dump();
    return r;
  });
  auto idp_port = idp.start();
  REQUIRE(idp_port.ok());
  EchoUpstream up;
  GatewayOptions o = base_options(up);
  o.jwt.jwks_url = "https://127.0.0.1:" + std::to_string(*idp_port) + "/jwks.json";
  o.jwt.jwks_ca_file = pki.ca;
  auto gw = start_gateway(o);
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  auto token =
      sign_jwt(Json::object({{"sub", "permits-portal"}, {"exp", static_cast<long long>(now + 60)}}),
               key, random);
  REQUIRE(token.ok());
  Client c;
  HttpResponse r = c.send(gw->port(), "GET", "/permits", {{"Authorization", "Bearer " + *token}});
  CHECK(r.status == 200);
  // A scheme other than http(s) is refused at configuration time.
  o.jwt.jwks_url = "ftp://127.0.0.1/jwks.json";
  auto bad = Gateway::create(o);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("http:// or https://") != std::string::npos);
}

}  // namespace
}  // namespace civicbus::gateway
