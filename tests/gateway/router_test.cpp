#include "gateway/router.hpp"

#include <doctest/doctest.h>

namespace civicbus::gateway {
namespace {

void add(Router& router, std::string id, std::string method, std::string host, PathKind kind,
         std::string path) {
  const Status s = router.add(
      RouteSpec{std::move(id), std::move(method), std::move(host), kind, std::move(path)});
  REQUIRE_MESSAGE(s.ok(), s.to_string());
}

std::string route_of(const Router& router, std::string_view method, std::string_view host,
                     std::string_view target) {
  const RouteResult r = router.match(method, host, target);
  switch (r.outcome) {
    case RouteOutcome::kMatched:
      return r.route_id;
    case RouteOutcome::kNotFound:
      return "404";
    case RouteOutcome::kMethodNotAllowed:
      return "405";
    case RouteOutcome::kBadRequest:
      return "400";
  }
  return "?";
}

std::string normal(std::string_view target) {
  auto p = normalize_path(target);
  return p.ok() ? *p : "error: " + p.status().message();
}

TEST_CASE("router: normalize_path merges slashes, removes dot segments, checks escapes") {
  CHECK(normal("/") == "/");
  CHECK(normal("/a/b") == "/a/b");
  CHECK(normal("/a/b/") == "/a/b/");
  CHECK(normal("//a///b//") == "/a/b/");
  CHECK(normal("/a/./b") == "/a/b");
  CHECK(normal("/a/b/.") == "/a/b/");
  CHECK(normal("/a/b/..") == "/a/");
  CHECK(normal("/a/b/../c") == "/a/c");
  CHECK(normal("/a/../../") == "error: request path '/a/../../' climbs above the root");
  CHECK(normal("/..").starts_with("error:"));
  CHECK(normal("/a/%2e%2E/b") == "/b");  // encoded dots are dots (unreserved)
  CHECK(normal("/a?x=/../..#frag") == "/a");
  CHECK(normal("/%7euser/%41") == "/~user/A");
  CHECK(normal("/caf%c3%a9") == "/caf%C3%A9");
  CHECK(normal("/a%20b") == "/a%20b");
  CHECK(normal("/a%2Fb").find("encoded '/'") != std::string::npos);
  CHECK(normal("/a%2fb").starts_with("error:"));
  CHECK(normal("/a%5Cb").starts_with("error:"));
  CHECK(normal("/a%00").starts_with("error:"));
  CHECK(normal("/a%zz").find("bad percent-escape '%zz'") != std::string::npos);
  CHECK(normal("/a%4").starts_with("error:"));
  CHECK(normal("/a%").starts_with("error:"));
  CHECK(normal("/a\\b").starts_with("error:"));
  CHECK(normal("/a b").starts_with("error:"));
  CHECK(normal("/caf\xc3\xa9").starts_with("error:"));
  CHECK(normal("a/b").starts_with("error:"));
  CHECK(normal("*").starts_with("error:"));
  CHECK(normal("http://example.ca/a").starts_with("error:"));
  CHECK(normal("").starts_with("error:"));
}

TEST_CASE("router: normalize_path is idempotent on random paths (fast and slow paths agree)") {
  // Paths already normal take a fast path that returns them as they are; every normalised
  // path must therefore normalise to itself, and a path that differs only by a normal
  // prefix must normalise the same way through either path.
  std::uint64_t state = 0x9e3779b97f4a7c15ULL;
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  static constexpr std::string_view kPieces[] = {"/",   "a",   "b",   ".",      "..",     "%41",
                                                 "%2e", "~",   "-",   "_",      "%c3%a9", "//",
                                                 "/.",  "/..", "x.y", "?q=/..", "#f",     "?"};
  for (int i = 0; i < 20'000; ++i) {
    std::string path = "/";
    const std::size_t n = next() % 8;
    for (std::size_t k = 0; k < n; ++k) path += kPieces[next() % std::size(kPieces)];
    auto once = normalize_path(path);
    if (!once.ok()) continue;
    INFO(path, " -> ", *once);
    auto twice = normalize_path(*once);
    REQUIRE(twice.ok());
    CHECK(*twice == *once);
    // The query and fragment never change the path: the same without them.
    const std::string bare = path.substr(0, path.find_first_of("?#"));
    auto without = normalize_path(bare);
    REQUIRE(without.ok());
    CHECK(*without == *once);
  }
}

TEST_CASE("router: normalize_path into storage views the target when it is already normal") {
  std::string storage = "left over";
  auto same = normalize_path("/permits/B-1?page=2", storage);
  REQUIRE(same.ok());
  CHECK(*same == "/permits/B-1");
  const std::string_view target = "/permits/B-1?page=2";
  auto view = normalize_path(target, storage);
  REQUIRE(view.ok());
  CHECK(view->data() == target.data());  // no copy

  auto changed = normalize_path("/a//b/./c/../%7e?x", storage);
  REQUIRE(changed.ok());
  CHECK(*changed == "/a/b/~");
  CHECK(changed->data() == storage.data());
  CHECK(normalize_path("/a/%2F", storage).status().code() == ErrorCode::kInvalidArgument);

  // match_normalized() answers as match() does, leaving the path to the caller.
  Router router;
  REQUIRE(router.add({"p", "GET", "", PathKind::kPrefix, "/a"}).ok());
  const RouteResult full = router.match("GET", "", "/a//b?x");
  const RouteResult part = router.match_normalized("GET", "", "/a/b");
  CHECK(full.outcome == RouteOutcome::kMatched);
  CHECK(part.outcome == RouteOutcome::kMatched);
  CHECK(full.route_id == part.route_id);
  CHECK(full.path == "/a/b");
  CHECK(part.path.empty());
}

TEST_CASE("router: exact, prefix and template routes, params percent-decoded") {
  Router router;
  add(router, "health", "GET", "", PathKind::kExact, "/health");
  add(router, "readings", "GET", "", PathKind::kTemplate, "/api/v1/iot/devices/{id}/readings");
  add(router, "docs", "", "", PathKind::kPrefix, "/docs");
  CHECK(router.size() == 3);

  CHECK(route_of(router, "GET", "h", "/health") == "health");
  CHECK(route_of(router, "GET", "h", "/health/") == "404");  // a trailing slash is significant
  CHECK(route_of(router, "GET", "h", "/healthz") == "404");

  RouteResult r = router.match("GET", "h", "/api/v1/iot/devices/meter%20A-1/readings?from=0");
  REQUIRE(r.outcome == RouteOutcome::kMatched);
  CHECK(r.route_id == "readings");
  REQUIRE(r.params.size() == 1);
  CHECK(r.params[0].name == "id");
  CHECK(*r.param("id") == "meter A-1");
  CHECK(r.param("other") == nullptr);
  CHECK(r.path == "/api/v1/iot/devices/meter%20A-1/readings");
  r = router.match("GET", "h", "/api/v1/iot/devices/caf%C3%A9/readings");
  CHECK(*r.param("id") == "caf\xc3\xa9");
  CHECK(route_of(router, "GET", "h", "/api/v1/iot/devices//readings") == "404");  // empty id
  CHECK(route_of(router, "GET", "h", "/api/v1/iot/devices/a/b/readings") == "404");
  CHECK(route_of(router, "GET", "h", "/api/v1/iot/devices/x/../7/readings") == "readings");

  // Prefixes match on a segment boundary.
  CHECK(route_of(router, "DELETE", "h", "/docs") == "docs");
  CHECK(route_of(router, "GET", "h", "/docs/") == "docs");
  CHECK(route_of(router, "GET", "h", "/docs/a/b") == "docs");
  CHECK(route_of(router, "GET", "h", "/docsearch") == "404");
  CHECK(route_of(router, "GET", "h", "/docs/../health") == "health");

  CHECK(router.match("GET", "h", "/a%2Fb").outcome == RouteOutcome::kBadRequest);
  CHECK(router.match("GET", "h", "/../etc/passwd").error.find("above the root") !=
        std::string::npos);
}

TEST_CASE("router: path precedence — exact, then template, then the longest prefix") {
  Router router;
  add(router, "prefix-short", "GET", "", PathKind::kPrefix, "/devices");
  add(router, "prefix-long", "GET", "", PathKind::kPrefix, "/devices/new");
  add(router, "template", "GET", "", PathKind::kTemplate, "/devices/{id}");
  add(router, "exact", "GET", "", PathKind::kExact, "/devices/new");
  add(router, "root", "GET", "", PathKind::kPrefix, "/");
  CHECK(route_of(router, "GET", "h", "/devices/new") == "exact");
  CHECK(route_of(router, "GET", "h", "/devices/42") == "template");
  CHECK(route_of(router, "GET", "h", "/devices/new/x") == "prefix-long");
  CHECK(route_of(router, "GET", "h", "/devices/42/x") == "prefix-short");
  CHECK(route_of(router, "GET", "h", "/devices") == "prefix-short");
  CHECK(route_of(router, "GET", "h", "/other") == "root");
  CHECK(route_of(router, "GET", "h", "/") == "root");

  // Among templates, a literal segment beats a parameter at the first place they differ.
  Router t;
  add(t, "any-any", "GET", "", PathKind::kTemplate, "/{a}/{b}");
  add(t, "any-lit", "GET", "", PathKind::kTemplate, "/{a}/readings");
  add(t, "lit-any", "GET", "", PathKind::kTemplate, "/devices/{b}");
  CHECK(route_of(t, "GET", "h", "/devices/readings") == "lit-any");
  CHECK(route_of(t, "GET", "h", "/meters/readings") == "any-lit");
  CHECK(route_of(t, "GET", "h", "/meters/7") == "any-any");
}

TEST_CASE("router: routes filed by first segment still answer as one list would") {
  // A match looks only at the routes of the request's first segment and those any path could
  // match ("/" prefixes, templates starting with a parameter): precedence, 405 and the Allow
  // list still take every route that matches into account.
  Router router;
  for (int i = 0; i < 300; ++i) {
    const std::string seg = "s" + std::to_string(i);
    add(router, seg + ".exact", "GET", "", PathKind::kExact, "/" + seg + "/items");
    add(router, seg + ".prefix", "GET", "", PathKind::kPrefix, "/" + seg);
    add(router, seg + ".template", "PUT", "", PathKind::kTemplate, "/" + seg + "/{id}");
  }
  add(router, "any.items", "POST", "", PathKind::kTemplate, "/{area}/items");
  add(router, "root", "DELETE", "", PathKind::kPrefix, "/");
  for (const int i : {0, 7, 150, 299}) {
    const std::string seg = "/s" + std::to_string(i);
    CHECK(route_of(router, "GET", "h", seg + "/items") == "s" + std::to_string(i) + ".exact");
    CHECK(route_of(router, "GET", "h", seg + "/other") == "s" + std::to_string(i) + ".prefix");
    CHECK(route_of(router, "PUT", "h", seg + "/9") == "s" + std::to_string(i) + ".template");
    CHECK(route_of(router, "POST", "h", seg + "/items") == "any.items");
    CHECK(route_of(router, "DELETE", "h", seg + "/items") == "root");
    const RouteResult r = router.match("PATCH", "h", seg + "/items");
    CHECK(r.outcome == RouteOutcome::kMethodNotAllowed);
    CHECK(r.allow == std::vector<std::string>{"DELETE", "GET", "POST", "PUT"});
  }
  CHECK(route_of(router, "POST", "h", "/unfiled/items") == "any.items");
  // s1x is not the segment s1: only the routes any path could match apply.
  for (const char* path : {"/s1x/items", "/unfiled/items"}) {
    const RouteResult r = router.match("GET", "h", path);
    CHECK(r.outcome == RouteOutcome::kMethodNotAllowed);
    CHECK(r.allow == std::vector<std::string>{"DELETE", "POST"});
  }
}

TEST_CASE("router: versioned prefixes are ordinary routes") {
  Router router;
  add(router, "v1", "", "", PathKind::kPrefix, "/v1/");
  add(router, "v2", "", "", PathKind::kPrefix, "/v2/");
  add(router, "v2-permits", "POST", "", PathKind::kExact, "/v2/permits");
  CHECK(route_of(router, "GET", "h", "/v1/permits") == "v1");
  CHECK(route_of(router, "GET", "h", "/v2/permits") == "v2");
  CHECK(route_of(router, "POST", "h", "/v2/permits") == "v2-permits");
  CHECK(route_of(router, "GET", "h", "/v1") == "404");  // "/v1/" was registered, with its slash
  CHECK(route_of(router, "GET", "h", "/v3/permits") == "404");
}

TEST_CASE("router: host precedence — exact, then the longest wildcard, then any") {
  Router router;
  add(router, "any", "GET", "", PathKind::kPrefix, "/");
  add(router, "wild", "GET", "*.example.ca", PathKind::kPrefix, "/");
  add(router, "wild-long", "GET", "*.api.example.ca", PathKind::kPrefix, "/");
  add(router, "exact", "GET", "Permits.Example.CA", PathKind::kPrefix, "/");
  CHECK(route_of(router, "GET", "permits.example.ca", "/x") == "exact");
  CHECK(route_of(router, "GET", "PERMITS.example.ca:8443", "/x") == "exact");
  CHECK(route_of(router, "GET", "permits.example.ca.", "/x") == "exact");
  CHECK(route_of(router, "GET", "parking.example.ca", "/x") == "wild");
  CHECK(route_of(router, "GET", "a.b.example.ca", "/x") == "wild");
  CHECK(route_of(router, "GET", "v1.api.example.ca", "/x") == "wild-long");
  CHECK(route_of(router, "GET", "example.ca", "/x") == "any");  // "*." needs a label
  CHECK(route_of(router, "GET", "[::1]:8080", "/x") == "any");
  CHECK(route_of(router, "GET", "", "/x") == "any");
  // Host is decided before path: an exact host's prefix beats an any-host exact path.
  add(router, "any-exact", "GET", "", PathKind::kExact, "/x");
  CHECK(route_of(router, "GET", "permits.example.ca", "/x") == "exact");
  CHECK(route_of(router, "GET", "other.ca", "/x") == "any-exact");
  Router ip;
  add(ip, "v6", "GET", "[::1]", PathKind::kExact, "/x");
  CHECK(route_of(ip, "GET", "[::1]:8080", "/x") == "v6");
}

TEST_CASE("router: method-specific beats any method, 405 lists the allowed methods") {
  Router router;
  add(router, "list", "GET", "", PathKind::kExact, "/permits");
  add(router, "create", "POST", "", PathKind::kExact, "/permits");
  add(router, "one", "GET", "", PathKind::kTemplate, "/permits/{id}");
  add(router, "delete", "DELETE", "", PathKind::kTemplate, "/permits/{id}");
  add(router, "admin-any", "*", "", PathKind::kExact, "/admin");
  add(router, "admin-get", "GET", "", PathKind::kExact, "/admin");
  add(router, "secure", "GET", "secure.example.ca", PathKind::kExact, "/vault");

  CHECK(route_of(router, "GET", "h", "/permits") == "list");
  CHECK(route_of(router, "POST", "h", "/permits") == "create");
  RouteResult r = router.match("PUT", "h", "/permits");
  CHECK(r.outcome == RouteOutcome::kMethodNotAllowed);
  CHECK(r.allow == std::vector<std::string>{"GET", "POST"});
  r = router.match("PATCH", "h", "/permits/7");
  CHECK(r.outcome == RouteOutcome::kMethodNotAllowed);
  CHECK(r.allow == std::vector<std::string>{"DELETE", "GET"});
  // HEAD is not implied by GET.
  CHECK(route_of(router, "HEAD", "h", "/permits") == "405");
  CHECK(route_of(router, "GET", "h", "/admin") == "admin-get");
  CHECK(route_of(router, "POST", "h", "/admin") == "admin-any");
  CHECK(route_of(router, "GET", "h", "/nothing") == "404");
  // A route on another host does not turn a 404 into a 405.
  CHECK(route_of(router, "POST", "other.ca", "/vault") == "404");
  CHECK(route_of(router, "POST", "secure.example.ca", "/vault") == "405");
  // A lower-precedence route that accepts the method wins over a 405.
  add(router, "fallback", "", "", PathKind::kPrefix, "/");
  CHECK(route_of(router, "PUT", "h", "/permits") == "fallback");
}

TEST_CASE("router: a match names the route's place in the order of add()") {
  Router router;
  add(router, "a", "GET", "", PathKind::kPrefix, "/");
  add(router, "b", "GET", "", PathKind::kExact, "/b");
  add(router, "c", "", "api.example.ca", PathKind::kTemplate, "/c/{x}");
  RouteResult r = router.match("GET", "", "/b");
  CHECK(r.route_id == "b");
  CHECK(r.index == 1);
  r = router.match("GET", "api.example.ca", "/c/1");
  CHECK(r.route_id == "c");
  CHECK(r.index == 2);
  r = router.match("GET", "", "/anything");
  CHECK(r.route_id == "a");
  CHECK(r.index == 0);
}

TEST_CASE("router: conflicting registrations are refused") {
  Router router;
  add(router, "a", "GET", "api.example.ca", PathKind::kTemplate, "/devices/{id}");
  Status s = router.add({"a", "POST", "", PathKind::kExact, "/other"});
  CHECK(s.code() == ErrorCode::kAlreadyExists);
  CHECK(s.message() == "route 'a' already exists");
  s = router.add({"b", "GET", "API.example.ca", PathKind::kTemplate, "/devices/{device}"});
  CHECK(s.code() == ErrorCode::kAlreadyExists);
  CHECK(s.message() ==
        "route 'b' conflicts with route 'a': both are GET api.example.ca template /devices/{}");
  add(router, "c", "POST", "api.example.ca", PathKind::kTemplate, "/devices/{id}");
  add(router, "d", "GET", "", PathKind::kTemplate, "/devices/{id}");
  add(router, "e", "GET", "api.example.ca", PathKind::kPrefix, "/devices");
  add(router, "f", "", "", PathKind::kExact, "/x");
  CHECK(router.add({"g", "*", "*", PathKind::kExact, "/x"}).code() == ErrorCode::kAlreadyExists);
  CHECK(router.size() == 5);
}

TEST_CASE("router: malformed routes are refused with the reason") {
  Router router;
  auto code = [&](RouteSpec spec) { return router.add(std::move(spec)).code(); };
  CHECK(code({"", "GET", "", PathKind::kExact, "/x"}) == ErrorCode::kInvalidArgument);
  CHECK(code({"m", "get", "", PathKind::kExact, "/x"}) == ErrorCode::kInvalidArgument);
  CHECK(code({"m", "GE T", "", PathKind::kExact, "/x"}) == ErrorCode::kInvalidArgument);
  CHECK(code({"p", "GET", "", PathKind::kExact, "x"}) == ErrorCode::kInvalidArgument);
  CHECK(code({"p", "GET", "", PathKind::kExact, "/a//b"}) == ErrorCode::kInvalidArgument);
  CHECK(code({"p", "GET", "", PathKind::kExact, "/a/../b"}) == ErrorCode::kInvalidArgument);
  CHECK(code({"p", "GET", "", PathKind::kExact, "/%7e"}) == ErrorCode::kInvalidArgument);
  CHECK(code({"h", "GET", "*.*.ca", PathKind::kExact, "/x"}) == ErrorCode::kInvalidArgument);
  CHECK(code({"h", "GET", "a*.ca", PathKind::kExact, "/x"}) == ErrorCode::kInvalidArgument);
  CHECK(code({"h", "GET", "*.", PathKind::kExact, "/x"}) == ErrorCode::kInvalidArgument);
  CHECK(code({"h", "GET", "a b.ca", PathKind::kExact, "/x"}) == ErrorCode::kInvalidArgument);
  CHECK(code({"t", "GET", "", PathKind::kTemplate, "/devices"}) == ErrorCode::kInvalidArgument);
  CHECK(code({"t", "GET", "", PathKind::kTemplate, "/d/{id}x"}) == ErrorCode::kInvalidArgument);
  CHECK(code({"t", "GET", "", PathKind::kTemplate, "/d/{}"}) == ErrorCode::kInvalidArgument);
  CHECK(code({"t", "GET", "", PathKind::kTemplate, "/d/{1a}"}) == ErrorCode::kInvalidArgument);
  const Status twice = router.add({"t", "GET", "", PathKind::kTemplate, "/d/{id}/e/{id}"});
  CHECK(twice.message() == "route 't': template parameter 'id' appears twice");
  CHECK(router.size() == 0);
}

}  // namespace
}  // namespace civicbus::gateway
