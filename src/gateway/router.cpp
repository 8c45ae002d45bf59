#include "gateway/router.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <optional>
#include <set>

#include "core/ascii.hpp"
#include "core/uri_reference.hpp"

namespace civicbus::gateway {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

std::vector<std::string_view> split_segments(std::string_view path) {
  // "/a/b" -> {"a", "b"}; "/a/" -> {"a", ""}; "/" -> {""}.
  std::vector<std::string_view> segments;
  std::size_t start = 1;
  while (true) {
    const std::size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) {
      segments.push_back(path.substr(start));
      return segments;
    }
    segments.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
}

// The request's host without port, lower case, without a trailing dot.
std::string request_host(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const std::size_t close = host.find(']');
    host = close == std::string_view::npos ? host : host.substr(0, close + 1);
  } else if (const std::size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  return ascii_lower(host);
}

bool valid_host_chars(std::string_view host) {
  if (host.empty()) return false;
  return std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '[' ||
           c == ']' || c == ':';
  });
}

bool valid_param_name(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

int kind_rank(PathKind kind) {
  switch (kind) {
    case PathKind::kExact:
      return 0;
    case PathKind::kTemplate:
      return 1;
    case PathKind::kPrefix:
      return 2;
  }
  return 3;
}

std::string_view kind_name(PathKind kind) {
  switch (kind) {
    case PathKind::kExact:
      return "exact";
    case PathKind::kTemplate:
      return "template";
    case PathKind::kPrefix:
      return "prefix";
  }
  return "?";
}

}  // namespace

const std::string* RouteResult::param(std::string_view name) const {
  for (const RouteParam& p : params) {
    if (p.name == name) return &p.value;
  }
  return nullptr;
}

namespace {

// The first segment of a normalised path ("permits" of "/permits/7", "" of "/").
std::string_view first_segment(std::string_view path) {
  path.remove_prefix(std::min<std::size_t>(1, path.size()));
  return path.substr(0, path.find('/'));
}

// What a byte of a request target is to the normal-path check below: most are plain.
enum PathByte : std::uint8_t {
  kPlain,
  kSlash,  // a segment starts
  kEnd,    // '?' or '#': the path ends
  kOther,  // a byte that needs escaping, '%' or '\\': the path takes the normalising passes
};

constexpr std::array<std::uint8_t, 256> kPathBytes = [] {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[c] = (c <= 0x20 || c >= 0x7f || c == '\\' || c == '%') ? kOther : kPlain;
  }
  t['/'] = kSlash;
  t['?'] = kEnd;
  t['#'] = kEnd;
  return t;
}();

// The path of `target` (up to '?' or '#') when normalize_path() would return it unchanged:
// it starts with '/', has only bytes that need no escaping and no '%' at all, and no empty,
// "." or ".." segment (a final empty segment, the trailing '/', is kept). Most request paths
// are: they skip both passes. nullopt otherwise. One pass, a table lookup per byte.
std::optional<std::string_view> normal_path_of(std::string_view target) {
  const char* p = target.data();
  const std::size_t n = target.size();
  if (n == 0 || p[0] != '/') return std::nullopt;
  // A segment ends at byte k: the end, a '/', '?' or '#'.
  auto segment_ends = [&](std::size_t k) {
    if (k == n) return true;
    const std::uint8_t kind = kPathBytes[static_cast<unsigned char>(p[k])];
    return kind == kSlash || kind == kEnd;
  };
  std::size_t i = 0;
  while (true) {
    // p[i] is a '/': the segment after it must not be empty, "." or "..".
    const std::size_t s = i + 1;
    if (s < n) {
      if (p[s] == '/') return std::nullopt;
      if (p[s] == '.' && (segment_ends(s + 1) || (p[s + 1] == '.' && segment_ends(s + 2)))) {
        return std::nullopt;
      }
    }
    i = s;
    std::uint8_t kind = kPlain;
    while (i < n && (kind = kPathBytes[static_cast<unsigned char>(p[i])]) == kPlain) ++i;
    if (i == n || kind == kEnd) return target.substr(0, i);
    if (kind == kOther) return std::nullopt;
  }
}

}  // namespace

Result<std::string> normalize_path(std::string_view target) {
  std::string storage;
  auto normal = normalize_path(target, storage);
  if (!normal.ok()) return normal.status();
  if (normal->data() == storage.data()) return storage;
  return std::string(*normal);
}

Result<std::string_view> normalize_path(std::string_view target, std::string& storage) {
  if (const auto normal = normal_path_of(target)) return *normal;
  const auto end =
      std::find_if(target.begin(), target.end(), [](char c) { return c == '?' || c == '#'; });
  target = target.substr(0, static_cast<std::size_t>(end - target.begin()));
  if (target.empty() || target.front() != '/') {
    return invalid_argument(fmt::format("request target '{}' does not start with '/'", target));
  }
  // Pass 1: check and normalise escapes, refuse unsafe bytes.
  std::string clean;
  clean.reserve(target.size());
  for (std::size_t i = 0; i < target.size(); ++i) {
    const auto c = static_cast<unsigned char>(target[i]);
    if (c <= 0x20 || c >= 0x7f || c == '\\') {
      return invalid_argument(
          fmt::format("request path has a byte 0x{:02x} that must be percent-encoded", c));
    }
    if (c != '%') {
      clean.push_back(static_cast<char>(c));
      continue;
    }
    if (i + 2 >= target.size()) {
      return invalid_argument("request path has a truncated percent-escape");
    }
    const int hi = hex_value(target[i + 1]);
    const int lo = hex_value(target[i + 2]);
    if (hi < 0 || lo < 0) {
      return invalid_argument(
          fmt::format("request path has a bad percent-escape '{}'", target.substr(i, 3)));
    }
    const auto decoded = static_cast<unsigned char>(hi * 16 + lo);
    if (decoded == '/' || decoded == '\\' || decoded == 0) {
      return invalid_argument(
          fmt::format("request path has an encoded '/', '\\' or NUL ('{}'), which is refused",
                      target.substr(i, 3)));
    }
    if (is_unreserved(decoded)) {
      clean.push_back(static_cast<char>(decoded));
    } else {
      clean += fmt::format("%{:02X}", decoded);
    }
    i += 2;
  }
  // Pass 2: dot segments and empty segments.
  std::vector<std::string_view> out;
  const std::vector<std::string_view> segments = split_segments(clean);
  bool trailing_slash = false;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const std::string_view s = segments[i];
    const bool last = i + 1 == segments.size();
    if (s == ".") {
      trailing_slash = last;
    } else if (s == "..") {
      if (out.empty()) {
        return invalid_argument(fmt::format("request path '{}' climbs above the root", target));
      }
      out.pop_back();
      trailing_slash = last;
    } else if (s.empty()) {
      trailing_slash = last;  // "//" merges; only a final empty segment keeps a '/'
    } else {
      out.push_back(s);
      trailing_slash = false;
    }
  }
  storage.clear();
  for (std::string_view s : out) {
    storage += '/';
    storage += s;
  }
  if (storage.empty() || trailing_slash) storage += '/';
  return std::string_view(storage);
}

Status Router::add(RouteSpec spec) {
  if (spec.id.empty()) return invalid_argument("route id must not be empty");
  for (const Route& r : routes_) {
    if (r.spec.id == spec.id)
      return already_exists(fmt::format("route '{}' already exists", spec.id));
  }
  const std::string context = fmt::format("route '{}'", spec.id);
  Route route;
  if (spec.method != "" && spec.method != "*") {
    if (!std::all_of(spec.method.begin(), spec.method.end(),
                     [](char c) { return c >= 'A' && c <= 'Z'; })) {
      return invalid_argument(
          fmt::format("{}: method '{}' must be upper-case letters (\"GET\"), or \"*\" for any",
                      context, spec.method));
    }
    route.method = spec.method;
  }
  const std::string host = ascii_lower(spec.host);
  if (host != "" && host != "*") {
    const bool wildcard = host.starts_with("*.");
    const std::string_view rest = wildcard ? std::string_view(host).substr(1) : host;
    if (!valid_host_chars(wildcard ? rest.substr(1) : rest) ||
        rest.find('*') != std::string_view::npos || host.ends_with(".")) {
      return invalid_argument(
          fmt::format("{}: host '{}' must be a name, \"*.\" followed by a name, or \"*\" for any",
                      context, spec.host));
    }
    route.host_rank = wildcard ? 1 : 0;
    route.host = std::string(rest);
  }
  auto normal = normalize_path(spec.path);
  if (!normal.ok() || *normal != spec.path) {
    return invalid_argument(fmt::format(
        "{}: path '{}' is not a normalised path (starts with '/', no '//', '.' or '..', "
        "percent-escapes only where needed)",
        context, spec.path));
  }
  std::string path_key = spec.path;
  if (spec.kind == PathKind::kTemplate) {
    path_key.clear();
    std::set<std::string, std::less<>> names;
    for (std::string_view segment : split_segments(spec.path)) {
      Segment s;
      if (segment.starts_with('{') && segment.ends_with('}') && segment.size() >= 2) {
        s.param = true;
        s.text = std::string(segment.substr(1, segment.size() - 2));
        if (!valid_param_name(s.text)) {
          return invalid_argument(fmt::format(
              "{}: template parameter '{}' must match [A-Za-z_][A-Za-z0-9_]*", context, segment));
        }
        if (!names.insert(s.text).second) {
          return invalid_argument(
              fmt::format("{}: template parameter '{}' appears twice", context, s.text));
        }
        path_key += "/{}";
      } else {
        if (segment.find_first_of("{}") != std::string_view::npos) {
          return invalid_argument(
              fmt::format("{}: segment '{}' mixes text and braces; a parameter is a whole segment",
                          context, segment));
        }
        s.text = std::string(segment);
        path_key += '/';
        path_key += segment;
      }
      route.segments.push_back(std::move(s));
    }
    if (names.empty()) {
      return invalid_argument(fmt::format(
          "{}: template path '{}' has no {{parameter}}; use an exact route", context, spec.path));
    }
  }
  route.conflict_key = fmt::format("{} {} {} {}", route.method.empty() ? "*" : route.method,
                                   host.empty() ? "*" : host, kind_name(spec.kind), path_key);
  for (const Route& r : routes_) {
    if (r.conflict_key == route.conflict_key) {
      return already_exists(fmt::format("route '{}' conflicts with route '{}': both are {}",
                                        spec.id, r.spec.id, route.conflict_key));
    }
  }
  if (spec.kind == PathKind::kTemplate) has_templates_ = true;
  if (route.host_rank != 2) has_hosts_ = true;
  // Filed by the first segment of the path (normalised: it starts with '/'), unless a path
  // with another first segment could match: the prefix "/", or a template's parameter.
  const std::string_view first = first_segment(spec.path);
  const bool any_first = (spec.kind == PathKind::kPrefix && spec.path == "/") ||
                         (spec.kind == PathKind::kTemplate && route.segments[0].param);
  if (any_first) {
    any_first_segment_.push_back(routes_.size());
  } else {
    by_first_segment_[std::string(first)].push_back(routes_.size());
  }
  route.spec = std::move(spec);
  routes_.push_back(std::move(route));
  return {};
}

template <class F>
void Router::for_each_candidate(std::string_view path, F f) const {
  static const std::vector<std::size_t> kNone;
  const auto filed = by_first_segment_.find(first_segment(path));
  const std::vector<std::size_t>& a = filed == by_first_segment_.end() ? kNone : filed->second;
  const std::vector<std::size_t>& b = any_first_segment_;
  // Both lists are in registration order; merged, so is the walk.
  std::size_t i = 0;
  std::size_t j = 0;
  while (i < a.size() || j < b.size()) {
    const bool from_a = j == b.size() || (i < a.size() && a[i] < b[j]);
    f(routes_[from_a ? a[i++] : b[j++]]);
  }
}

bool Router::host_matches(const Route& route, std::string_view host) const {
  switch (route.host_rank) {
    case 0:
      return host == route.host;
    case 1:
      return host.size() > route.host.size() && host.ends_with(route.host);
    default:
      return true;
  }
}

bool Router::path_matches(const Route& route, std::string_view path,
                          const std::vector<std::string_view>& segments,
                          std::vector<RouteParam>* params) const {
  const std::string& p = route.spec.path;
  switch (route.spec.kind) {
    case PathKind::kExact:
      return path == p;
    case PathKind::kPrefix:
      if (!path.starts_with(p)) return false;
      return p.ends_with('/') || path.size() == p.size() || path[p.size()] == '/';
    case PathKind::kTemplate:
      if (segments.size() != route.segments.size()) return false;
      for (std::size_t i = 0; i < segments.size(); ++i) {
        const Segment& s = route.segments[i];
        if (s.param ? segments[i].empty() : segments[i] != s.text) return false;
      }
      if (params != nullptr) {
        params->clear();
        for (std::size_t i = 0; i < segments.size(); ++i) {
          if (route.segments[i].param) {
            params->push_back(
                RouteParam{route.segments[i].text, detail::percent_decode(segments[i])});
          }
        }
      }
      return true;
  }
  return false;
}

RouteResult Router::match(std::string_view method, std::string_view host,
                          std::string_view target) const {
  auto normal = normalize_path(target);
  if (!normal.ok()) {
    RouteResult result;
    result.outcome = RouteOutcome::kBadRequest;
    result.error = normal.status().message();
    return result;
  }
  RouteResult result = match_normalized(method, host, *normal);
  result.path = std::move(normal).value();
  return result;
}

RouteResult Router::match_normalized(std::string_view method, std::string_view host,
                                     std::string_view path) const {
  RouteResult result;
  const std::string request_host_name = has_hosts_ ? request_host(host) : std::string();
  std::vector<std::string_view> segments;
  if (has_templates_) segments = split_segments(path);

  // Is `a` strictly better than `b`? Both match host and path.
  auto better = [](const Route& a, const Route& b) {
    if (a.host_rank != b.host_rank) return a.host_rank < b.host_rank;
    if (a.host_rank == 1 && a.host.size() != b.host.size()) return a.host.size() > b.host.size();
    const int ka = kind_rank(a.spec.kind);
    const int kb = kind_rank(b.spec.kind);
    if (ka != kb) return ka < kb;
    if (a.spec.kind == PathKind::kTemplate) {
      for (std::size_t i = 0; i < a.segments.size() && i < b.segments.size(); ++i) {
        if (a.segments[i].param != b.segments[i].param) return !a.segments[i].param;
      }
    }
    if (a.spec.kind == PathKind::kPrefix && a.spec.path.size() != b.spec.path.size()) {
      return a.spec.path.size() > b.spec.path.size();
    }
    if (a.method.empty() != b.method.empty()) return !a.method.empty();
    return false;  // registration order: the earlier one stays
  };

  const Route* best = nullptr;
  std::set<std::string> other_methods;
  for_each_candidate(path, [&](const Route& route) {
    if (!host_matches(route, request_host_name)) return;
    if (!path_matches(route, path, segments, nullptr)) return;
    if (!route.method.empty() && route.method != method) {
      other_methods.insert(route.method);
      return;
    }
    if (best == nullptr || better(route, *best)) best = &route;
  });
  if (best != nullptr) {
    result.outcome = RouteOutcome::kMatched;
    result.route_id = best->spec.id;
    result.index = static_cast<std::size_t>(best - routes_.data());
    path_matches(*best, path, segments, &result.params);
  } else if (!other_methods.empty()) {
    result.outcome = RouteOutcome::kMethodNotAllowed;
    result.allow.assign(other_methods.begin(), other_methods.end());
  }
  return result;
}

}  // namespace civicbus::gateway
