// Fuzz target: the gateway's request-target normalisation and routing
// (src/gateway/router.hpp: normalize_path, Router::match).
//
// The input is a request target, or "host\ntarget". Checks: a normalised path starts with
// '/', has no "//", no "." or ".." segment, no encoded '/', '\' or NUL, no escape of an
// unreserved character, no byte that must be escaped; normalising it again changes nothing
// (idempotent) and a query or fragment does not change it; match() on a fixed route table
// never crashes, refuses exactly the targets normalize_path refuses and otherwise reports
// the normalised path; template parameters are found; a route added at the normalised path
// (exact and prefix) matches the target.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gateway/router.hpp"

namespace {

using civicbus::gateway::normalize_path;
using civicbus::gateway::PathKind;
using civicbus::gateway::RouteOutcome;
using civicbus::gateway::Router;
using civicbus::gateway::RouteSpec;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "router fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

bool is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // lower-case hex is not normal form
}

void check_normal(const std::string& path) {
  if (path.empty() || path.front() != '/') fail("normalised path does not start with '/'", path);
  if (path.find("//") != std::string::npos) fail("normalised path has '//'", path);
  if (path.find("/./") != std::string::npos || path.find("/../") != std::string::npos ||
      path.ends_with("/.") || path.ends_with("/..")) {
    fail("normalised path has a dot segment", path);
  }
  if (path.find_first_of("?#") != std::string::npos) fail("normalised path has '?' or '#'", path);
  for (std::size_t i = 0; i < path.size(); ++i) {
    const auto c = static_cast<unsigned char>(path[i]);
    if (c <= 0x20 || c >= 0x7f || c == '\\') fail("normalised path has an unsafe byte", path);
    if (c != '%') continue;
    if (i + 2 >= path.size() || hex(path[i + 1]) < 0 || hex(path[i + 2]) < 0) {
      fail("normalised path has a bad or lower-case escape", path);
    }
    const auto decoded = static_cast<unsigned char>(hex(path[i + 1]) * 16 + hex(path[i + 2]));
    if (decoded == '/' || decoded == '\\' || decoded == 0) {
      fail("normalised path has an encoded '/', '\\' or NUL", path);
    }
    if (is_unreserved(decoded)) fail("normalised path escapes an unreserved character", path);
    i += 2;
  }
}

const Router& fixed_router() {
  static const Router router = [] {
    Router r;
    auto add = [&](const char* id, const char* method, const char* host, PathKind kind,
                   const char* path) {
      if (!r.add(RouteSpec{id, method, host, kind, path}).ok()) fail("fixed route refused", id);
    };
    add("root", "GET", "", PathKind::kExact, "/");
    add("health", "*", "", PathKind::kExact, "/healthz");
    add("api", "", "api.example.ca", PathKind::kPrefix, "/v1");
    add("api_slash", "POST", "*.example.ca", PathKind::kPrefix, "/v1/");
    add("device", "GET", "", PathKind::kTemplate, "/devices/{id}");
    add("reading", "GET", "", PathKind::kTemplate, "/devices/{id}/readings/{n}");
    add("latest", "GET", "", PathKind::kTemplate, "/devices/{id}/readings/latest");
    add("put_device", "PUT", "", PathKind::kTemplate, "/devices/{id}");
    add("escaped", "", "", PathKind::kExact, "/a%20b");
    add("static", "GET", "static.example.ca", PathKind::kPrefix, "/");
    return r;
  }();
  return router;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view host = "api.example.ca";
  if (const std::size_t nl = input.find('\n'); nl != std::string_view::npos) {
    host = input.substr(0, nl);
    input.remove_prefix(nl + 1);
  }
  const std::string_view target = input;

  auto normal = normalize_path(target);
  if (normal.ok()) {
    const std::string& path = *normal;
    check_normal(path);
    auto again = normalize_path(path);
    if (!again.ok()) fail("normalised path is refused", path + "\n" + again.status().message());
    if (*again != path) fail("normalize_path is not idempotent", path + "\n" + *again);
    auto with_query = normalize_path(std::string(target) + "?q=/../x#f");
    if (!with_query.ok() || *with_query != path) fail("a query changes the path", path);
  }

  const Router& router = fixed_router();
  for (const std::string_view method : {"GET", "POST", "DELETE"}) {
    const auto result = router.match(method, host, target);
    if (!normal.ok()) {
      if (result.outcome != RouteOutcome::kBadRequest) fail("refused target was routed");
      if (result.error.empty()) fail("kBadRequest without a reason");
      continue;
    }
    if (result.outcome == RouteOutcome::kBadRequest) fail("normalised target got kBadRequest");
    if (result.path != *normal) fail("match() path is not the normalised path", result.path);
    if (result.outcome == RouteOutcome::kMatched) {
      if (result.route_id.empty()) fail("matched without a route id");
      if ((result.route_id == "device" || result.route_id == "reading") &&
          (result.param("id") == nullptr || result.param("id")->empty())) {
        fail("template matched without its parameter", result.path);
      }
    } else if (result.outcome == RouteOutcome::kMethodNotAllowed) {
      if (result.allow.empty()) fail("405 without Allow");
      for (const std::string& allowed : result.allow) {
        if (allowed == method) fail("405 allows the method it refused");
      }
    }
  }

  // A route at the normalised path matches the target, for any host and method.
  if (normal.ok()) {
    for (const PathKind kind : {PathKind::kExact, PathKind::kPrefix}) {
      Router own;
      if (!own.add(RouteSpec{"own", "", "", kind, *normal}).ok()) {
        fail("a normalised path is refused as a route", *normal);
      }
      const auto result = own.match("GET", host, target);
      if (result.outcome != RouteOutcome::kMatched || result.route_id != "own") {
        fail("a route at the normalised path does not match", *normal);
      }
    }
  }
  return 0;
}
