#include "gateway/cors.hpp"

#include <doctest/doctest.h>

namespace civicbus::gateway {
namespace {

CorsPolicy make(CorsOptions options) {
  auto policy = CorsPolicy::create(std::move(options));
  REQUIRE_MESSAGE(policy.ok(), policy.status().to_string());
  return std::move(policy).value();
}

http::HttpRequest preflight_request(std::string origin, std::string method,
                                    std::string headers = "") {
  http::HttpRequest r;
  r.method = "OPTIONS";
  r.target = r.path = "/permits";
  r.headers.add("Origin", std::move(origin));
  r.headers.add("Access-Control-Request-Method", std::move(method));
  if (!headers.empty()) r.headers.add("Access-Control-Request-Headers", std::move(headers));
  return r;
}

http::HttpRequest actual_request(std::string origin) {
  http::HttpRequest r;
  r.method = "GET";
  r.target = r.path = "/permits";
  if (!origin.empty()) r.headers.add("Origin", std::move(origin));
  return r;
}

std::string header(const http::HttpHeaders& h, std::string_view name) {
  return std::string(h.get(name).value_or("<absent>"));
}

bool has_cors_headers(const http::HttpHeaders& h) {
  for (const auto& [name, value] : h) {
    if (name.rfind("Access-Control-", 0) == 0) return true;
  }
  return false;
}

TEST_CASE("cors: options are validated at create") {
  CHECK(CorsPolicy::create({}).status().code() == ErrorCode::kInvalidArgument);
  for (std::string bad : {"https://app.example.ca/", "app.example.ca", "https://", "https://a b",
                          "https://app.example.ca:99999", "https://a.*.example.ca",
                          "https://*example.ca", "https://*.ca", "https://x.example.ca/path"}) {
    CAPTURE(bad);
    CorsOptions o;
    o.allowed_origins = {bad};
    CHECK(CorsPolicy::create(o).status().code() == ErrorCode::kInvalidArgument);
  }
  CorsOptions bad_method;
  bad_method.allowed_origins = {"*"};
  bad_method.allowed_methods = {"GE T"};
  CHECK_FALSE(CorsPolicy::create(bad_method).ok());
  CorsOptions star_exposed;
  star_exposed.allowed_origins = {"https://app.example.ca"};
  star_exposed.exposed_headers = {"*"};
  star_exposed.allow_credentials = true;
  CHECK_FALSE(CorsPolicy::create(star_exposed).ok());
  star_exposed.allow_credentials = false;
  CHECK(CorsPolicy::create(star_exposed).ok());
}

TEST_CASE("cors: origins match exactly, by wildcard label or by *") {
  CorsOptions o;
  o.allowed_origins = {"https://app.example.ca", "https://*.city.example.ca",
                       "http://localhost:3000"};
  const auto p = make(o);
  CHECK(p.origin_allowed("https://app.example.ca"));
  CHECK(p.origin_allowed("HTTPS://APP.Example.CA"));       // scheme and host are case-insensitive
  CHECK_FALSE(p.origin_allowed("http://app.example.ca"));  // scheme matters
  CHECK_FALSE(p.origin_allowed("https://app.example.ca:8443"));  // port matters
  CHECK_FALSE(p.origin_allowed("https://app.example.ca.evil.com"));
  CHECK(p.origin_allowed("https://permits.city.example.ca"));
  CHECK(p.origin_allowed("https://a.b.city.example.ca"));
  CHECK_FALSE(p.origin_allowed("https://city.example.ca"));  // never the bare domain
  CHECK_FALSE(p.origin_allowed("https://evilcity.example.ca"));
  CHECK_FALSE(p.origin_allowed("https://permits.city.example.ca.evil.com"));
  CHECK(p.origin_allowed("http://localhost:3000"));
  CHECK_FALSE(p.origin_allowed("http://localhost"));
  CHECK_FALSE(p.origin_allowed("null"));
  CHECK_FALSE(p.origin_allowed(""));
  CHECK_FALSE(p.origin_allowed("https://*.city.example.ca"));  // a pattern is not an origin

  CorsOptions any;
  any.allowed_origins = {"*"};
  const auto a = make(any);
  CHECK(a.origin_allowed("https://anything.example"));
  CHECK_FALSE(a.origin_allowed("null"));  // the opaque origin only when listed
  CHECK_FALSE(a.origin_allowed("not an origin"));
  any.allowed_origins = {"*", "null"};
  CHECK(make(any).origin_allowed("null"));
}

TEST_CASE("cors: a preflight is OPTIONS with Origin and Access-Control-Request-Method") {
  CHECK(CorsPolicy::is_preflight(preflight_request("https://a.ca", "PUT")));
  auto no_method = preflight_request("https://a.ca", "PUT");
  no_method.headers.remove("Access-Control-Request-Method");
  CHECK_FALSE(CorsPolicy::is_preflight(no_method));
  auto not_options = preflight_request("https://a.ca", "PUT");
  not_options.method = "GET";
  CHECK_FALSE(CorsPolicy::is_preflight(not_options));
  CHECK_FALSE(CorsPolicy::is_preflight(actual_request("https://a.ca")));
}

TEST_CASE("cors: an allowed preflight gets 204 and the Access-Control-Allow-* headers") {
  CorsOptions o;
  o.allowed_origins = {"https://app.example.ca"};
  o.allowed_methods = {"GET", "PUT", "DELETE"};
  o.allowed_headers = {"Authorization", "Content-Type", "X-Request-Id"};
  o.max_age = std::chrono::seconds{600};
  const auto p = make(o);
  const auto r =
      p.preflight(preflight_request("https://app.example.ca", "PUT", "content-type, x-request-id"));
  CHECK(r.allowed);
  CHECK(r.response.status == 204);
  CHECK(r.response.body.empty());
  const auto& h = r.response.headers;
  CHECK(header(h, "Access-Control-Allow-Origin") == "https://app.example.ca");
  CHECK(header(h, "Access-Control-Allow-Methods") == "GET, PUT, DELETE");
  CHECK(header(h, "Access-Control-Allow-Headers") == "Authorization, Content-Type, X-Request-Id");
  CHECK(header(h, "Access-Control-Max-Age") == "600");
  CHECK(header(h, "Vary") == "Origin");
  CHECK_FALSE(h.contains("Access-Control-Allow-Credentials"));
}

TEST_CASE("cors: requested headers are checked case-insensitively") {
  CorsOptions o;
  o.allowed_origins = {"https://app.example.ca"};
  o.allowed_methods = {"POST"};
  o.allowed_headers = {"Content-Type", "X-Api-Key"};
  const auto p = make(o);
  CHECK(p.preflight(preflight_request("https://app.example.ca", "POST", "x-api-key,CONTENT-TYPE"))
            .allowed);
  auto two_fields = preflight_request("https://app.example.ca", "POST", "x-api-key");
  two_fields.headers.add("Access-Control-Request-Headers", "Content-Type");
  CHECK(p.preflight(two_fields).allowed);
  const auto refused =
      p.preflight(preflight_request("https://app.example.ca", "POST", "x-api-key, x-debug"));
  CHECK_FALSE(refused.allowed);
  CHECK(refused.reason.find("x-debug") != std::string::npos);
  CHECK_FALSE(has_cors_headers(refused.response.headers));
}

TEST_CASE("cors: a preflight is refused without CORS headers for a bad origin or method") {
  CorsOptions o;
  o.allowed_origins = {"https://app.example.ca"};
  o.allowed_methods = {"GET", "POST"};
  const auto p = make(o);
  const auto bad_origin = p.preflight(preflight_request("https://evil.example", "GET"));
  CHECK_FALSE(bad_origin.allowed);
  CHECK(bad_origin.response.status == 403);
  CHECK_FALSE(has_cors_headers(bad_origin.response.headers));
  CHECK(header(bad_origin.response.headers, "Vary") == "Origin");
  const auto bad_method = p.preflight(preflight_request("https://app.example.ca", "DELETE"));
  CHECK_FALSE(bad_method.allowed);
  CHECK_FALSE(has_cors_headers(bad_method.response.headers));
  // Methods are case-sensitive tokens (Fetch only upper-cases the six standard ones itself).
  CHECK_FALSE(p.preflight(preflight_request("https://app.example.ca", "post")).allowed);
}

TEST_CASE("cors: with credentials the origin is echoed, never *") {
  CorsOptions o;
  o.allowed_origins = {"*"};
  o.allowed_methods = {"*"};
  o.allowed_headers = {"*"};
  o.exposed_headers = {"X-Total-Count"};
  o.allow_credentials = true;
  const auto p = make(o);
  const auto r = p.preflight(preflight_request("https://app.example.ca", "PATCH", "authorization"));
  REQUIRE(r.allowed);
  const auto& h = r.response.headers;
  CHECK(header(h, "Access-Control-Allow-Origin") == "https://app.example.ca");
  CHECK(header(h, "Access-Control-Allow-Credentials") == "true");
  CHECK(header(h, "Access-Control-Allow-Methods") == "PATCH");          // echoed, not "*"
  CHECK(header(h, "Access-Control-Allow-Headers") == "authorization");  // echoed, not "*"
  CHECK(header(h, "Vary") == "Origin");

  const auto actual = p.response_headers(actual_request("https://other.example"));
  CHECK(header(actual, "Access-Control-Allow-Origin") == "https://other.example");
  CHECK(header(actual, "Access-Control-Allow-Credentials") == "true");
  CHECK(header(actual, "Access-Control-Expose-Headers") == "X-Total-Count");
  CHECK(header(actual, "Vary") == "Origin");
}

TEST_CASE("cors: * without credentials answers * and needs no Vary") {
  CorsOptions o;
  o.allowed_origins = {"*"};
  o.exposed_headers = {"X-Total-Count", "ETag"};
  const auto p = make(o);
  const auto h = p.response_headers(actual_request("https://app.example.ca"));
  CHECK(header(h, "Access-Control-Allow-Origin") == "*");
  CHECK(header(h, "Access-Control-Expose-Headers") == "X-Total-Count, ETag");
  CHECK_FALSE(h.contains("Vary"));
  CHECK_FALSE(h.contains("Access-Control-Allow-Credentials"));
  const auto pre = p.preflight(preflight_request("https://app.example.ca", "GET"));
  CHECK(header(pre.response.headers, "Access-Control-Allow-Origin") == "*");
  CHECK_FALSE(pre.response.headers.contains("Vary"));
  CHECK_FALSE(pre.response.headers.contains("Access-Control-Max-Age"));
}

TEST_CASE("cors: actual requests from a listed origin get the origin echoed and Vary: Origin") {
  CorsOptions o;
  o.allowed_origins = {"https://*.example.ca"};
  const auto p = make(o);
  const auto h = p.response_headers(actual_request("https://app.example.ca"));
  CHECK(header(h, "Access-Control-Allow-Origin") == "https://app.example.ca");
  CHECK(header(h, "Vary") == "Origin");
  CHECK_FALSE(h.contains("Access-Control-Expose-Headers"));
}

TEST_CASE("cors: a disallowed or missing origin gets no CORS headers") {
  CorsOptions o;
  o.allowed_origins = {"https://app.example.ca"};
  o.exposed_headers = {"X-Total-Count"};
  o.allow_credentials = true;
  const auto p = make(o);
  const auto evil = p.response_headers(actual_request("https://evil.example"));
  CHECK_FALSE(has_cors_headers(evil));
  CHECK(header(evil, "Vary") == "Origin");  // the answer still depends on the origin
  const auto none = p.response_headers(actual_request(""));
  CHECK_FALSE(has_cors_headers(none));
  CHECK(header(none, "Vary") == "Origin");
}

}  // namespace
}  // namespace civicbus::gateway
