// Router: maps (method, host, path) to a route id and the path's template parameters. Owns
// its route table; does no I/O. Routes are added while the gateway is being configured and
// then only read: match() is const and safe from many threads once add() calls have stopped
// (a configuration reload builds a new Router and swaps it in; add() takes no lock).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/status.hpp"
#include "civicbus/gateway/options.hpp"
#include "core/string_map.hpp"

namespace civicbus::gateway {

struct RouteSpec {
  std::string id;      // unique, names the route in results, logs and errors
  std::string method;  // "GET", "POST", ...: upper case; "" or "*" for any method
  std::string host;    // "api.example.ca", "*.example.ca" (one label or more), "" or "*" any
  PathKind kind = PathKind::kExact;
  std::string path;  // normalised: starts with '/', no "//", "." or ".." segments
};

struct RouteParam {
  std::string name;
  std::string value;  // percent-decoded
};

enum class RouteOutcome {
  kMatched,
  kNotFound,          // 404
  kMethodNotAllowed,  // 405: the path matches for other methods; see `allow`
  kBadRequest,        // 400: the request target cannot be normalised; see `error`
};

struct RouteResult {
  RouteOutcome outcome = RouteOutcome::kNotFound;
  std::string route_id;
  std::size_t index = 0;  // the matched route's place in the order of add() calls
  std::vector<RouteParam> params;
  std::vector<std::string> allow;  // sorted methods for the Allow header (405 only)
  std::string path;                // the normalised path that was matched (forward this)
  std::string error;               // why the target was refused (400 only)

  // The value of a template parameter, or nullptr.
  const std::string* param(std::string_view name) const;
};

// Normalises an origin-form request target (query and fragment dropped):
//  - percent-escapes are checked (two hex digits); escapes of unreserved characters
//    (A-Z a-z 0-9 - . _ ~) are decoded, the others kept with upper-case hex (RFC 3986 6.2.2);
//  - "//" collapses to "/", "." segments are removed and ".." removes the segment before it
//    (RFC 3986 5.2.4, as Envoy's normalize_path + merge_slashes do);
// and refuses (kInvalidArgument): a target not starting with '/', ".." above the root,
// encoded '/', '\' or NUL (%2F %5C %00), raw '\', control, space and non-ASCII bytes.
Result<std::string> normalize_path(std::string_view target);
// The same without a copy when none is needed: the result views `target` itself when its path
// is already normal (most are), else `storage`, which then holds the normalised path.
Result<std::string_view> normalize_path(std::string_view target, std::string& storage);

class Router {
 public:
  // kInvalidArgument for a malformed spec (bad method, host, path or template);
  // kAlreadyExists for a duplicate id or a route with the same method, host, kind and path
  // as an earlier one (template parameter names do not matter: /a/{x} = /a/{y}).
  Status add(RouteSpec spec);

  // Precedence among routes matching all three: host (exact, then the longest wildcard, then
  // any), then path kind (exact, template, prefix; among templates a literal segment beats a
  // parameter at the first place they differ; among prefixes the longer wins), then a
  // specific method over any method, then registration order.
  // `host` may carry a port ("api.example.ca:8443", "[::1]:80"); it is compared without it,
  // case-insensitively, ignoring a trailing dot.
  RouteResult match(std::string_view method, std::string_view host, std::string_view target) const;
  // match() for a path normalize_path() returned (the caller keeps it: the result's `path` is
  // left empty, and a kBadRequest is the caller's to answer).
  RouteResult match_normalized(std::string_view method, std::string_view host,
                               std::string_view path) const;

  std::size_t size() const { return routes_.size(); }

 private:
  struct Segment {
    std::string text;  // literal text, or the parameter name
    bool param = false;
  };
  struct Route {
    RouteSpec spec;
    std::string method;             // "" = any
    int host_rank = 2;              // 0 exact, 1 wildcard, 2 any
    std::string host;               // exact host, or the wildcard's suffix (".example.ca")
    std::vector<Segment> segments;  // templates only
    std::string conflict_key;
  };
  bool host_matches(const Route& route, std::string_view host) const;
  bool path_matches(const Route& route, std::string_view path,
                    const std::vector<std::string_view>& segments,
                    std::vector<RouteParam>* params) const;

  // Calls f(route) for each route that could match `path`, in registration order: those
  // filed under the path's first segment and those any path could match (by_first_segment_).
  template <class F>
  void for_each_candidate(std::string_view path, F f) const;

  std::vector<Route> routes_;   // registration order
  bool has_templates_ = false;  // the request path is split into segments only for these
  bool has_hosts_ = false;      // the request's host is normalised only for these
  // The routes by the first segment every path they match has ("permits" for a prefix route
  // /permits, an exact route /permits/a or a template /permits/{id}), each list in
  // registration order; and those without one (the prefix "/", a template starting with a
  // parameter). A match looks only at the routes of the request's first segment and those.
  civicbus::detail::StringMap<std::vector<std::size_t>> by_first_segment_;
  std::vector<std::size_t> any_first_segment_;
};

}  // namespace civicbus::gateway
