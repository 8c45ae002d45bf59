#include "gateway/cors.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <utility>

#include "core/ascii.hpp"
#include "http/framing.hpp"

namespace civicbus::gateway {
namespace {

using http::detail::is_token;
using http::detail::trim_ows;

struct ParsedOrigin {
  std::string scheme, host, port;
};

// "scheme://host[:port]" as browsers serialise an origin (no path, userinfo or trailing slash).
// Hosts may be names or bracketed IPv6 literals.
std::optional<ParsedOrigin> parse_origin(std::string_view text) {
  const auto sep = text.find("://");
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  ParsedOrigin o;
  o.scheme = ascii_lower(text.substr(0, sep));
  for (char c : o.scheme) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') {
      return std::nullopt;
    }
  }
  std::string_view rest = text.substr(sep + 3);
  std::string_view host = rest;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = rest.substr(0, close + 1);
    rest.remove_prefix(close + 1);
    if (!rest.empty() && rest.front() != ':') return std::nullopt;
  } else {
    const auto colon = rest.find(':');
    host = rest.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon);
  }
  if (!rest.empty()) {  // ":port"
    rest.remove_prefix(1);
    if (rest.empty() || rest.size() > 5 || !std::all_of(rest.begin(), rest.end(), [](char c) {
          return std::isdigit(static_cast<unsigned char>(c));
        })) {
      return std::nullopt;
    }
    if (std::stoi(std::string(rest)) > 65535) return std::nullopt;
    o.port = std::string(rest);
  }
  if (host.empty()) return std::nullopt;
  for (char c : host) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' ||
                    c == '*' || c == '[' || c == ']' || c == ':';
    if (!ok) return std::nullopt;
  }
  o.host = ascii_lower(host);
  return o;
}

bool contains_exact(const std::vector<std::string>& list, std::string_view value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

bool contains_ignore_case(const std::vector<std::string>& list, std::string_view value) {
  return std::any_of(list.begin(), list.end(),
                     [&](const std::string& s) { return http::equals_ignore_case(s, value); });
}

std::string join(const std::vector<std::string>& list) {
  std::string out;
  for (const auto& s : list) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

// Splits a comma-separated field value into trimmed, non-empty items.
std::vector<std::string> split_list(std::string_view value) {
  std::vector<std::string> out;
  while (!value.empty()) {
    const auto comma = value.find(',');
    const auto item = trim_ows(value.substr(0, comma));
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return out;
}

http::HttpResponse refusal(std::string reason) {
  return http::HttpResponse::text(403, "CORS preflight refused: " + reason + "\n");
}

}  // namespace

Result<CorsPolicy> CorsPolicy::create(CorsOptions options) {
  if (options.allowed_origins.empty()) {
    return invalid_argument(
        "cors: allowed_origins is empty; list the origins (or \"*\") allowed to call this API");
  }
  CorsPolicy policy(std::move(options));
  const CorsOptions& opts = policy.options_;
  for (const auto& origin : opts.allowed_origins) {
    if (origin == "*") {
      policy.any_origin_ = true;
      continue;
    }
    if (origin == "null") {
      policy.null_origin_ = true;
      continue;
    }
    auto parsed = parse_origin(origin);
    const auto star = origin.find('*');
    if (!parsed) {
      return invalid_argument(fmt::format(
          "cors: allowed origin '{}' is not 'scheme://host[:port]' (no path or trailing slash)",
          origin));
    }
    OriginPattern p{parsed->scheme, parsed->host, parsed->port, false};
    if (star != std::string::npos) {
      // Only a leading "*." label is a pattern: "https://*.example.ca".
      if (p.host.rfind("*.", 0) != 0 || p.host.find('*', 1) != std::string::npos ||
          p.host.size() < 3 || p.host.find('.', 2) == std::string::npos) {
        return invalid_argument(fmt::format(
            "cors: allowed origin '{}': a wildcard must be a whole first label followed by at "
            "least two labels, as in 'https://*.example.ca'",
            origin));
      }
      p.wildcard = true;
      p.host.erase(0, 1);  // keep ".example.ca"
    }
    policy.patterns_.push_back(std::move(p));
  }
  for (const auto& m : opts.allowed_methods) {
    if (m == "*") {
      policy.any_method_ = true;
    } else if (!is_token(m)) {
      return invalid_argument(fmt::format("cors: allowed method '{}' is not a token", m));
    }
  }
  for (const auto& h : opts.allowed_headers) {
    if (h == "*") {
      policy.any_header_ = true;
    } else if (!is_token(h)) {
      return invalid_argument(fmt::format("cors: allowed header '{}' is not a field name", h));
    }
  }
  for (const auto& h : opts.exposed_headers) {
    if (h == "*" && opts.allow_credentials) {
      return invalid_argument(
          "cors: exposed_headers \"*\" has no effect with allow_credentials (browsers read it as "
          "a header named '*'); list the header names");
    }
    if (!is_token(h)) {
      return invalid_argument(fmt::format("cors: exposed header '{}' is not a field name", h));
    }
  }
  if (opts.max_age && opts.max_age->count() < 0) {
    return invalid_argument("cors: max_age must not be negative");
  }
  return policy;
}

bool CorsPolicy::is_preflight(const http::HttpRequest& request) {
  return request.method == "OPTIONS" && request.headers.contains("Origin") &&
         request.headers.contains("Access-Control-Request-Method");
}

bool CorsPolicy::origin_allowed(std::string_view origin) const {
  if (origin == "null") return null_origin_;  // "*" never admits the opaque origin
  const auto parsed = parse_origin(origin);
  if (!parsed || parsed->host.find('*') != std::string::npos) return false;
  if (any_origin_) return true;
  for (const auto& p : patterns_) {
    if (p.scheme != parsed->scheme || p.port != parsed->port) continue;
    if (!p.wildcard) {
      if (p.host == parsed->host) return true;
      continue;
    }
    const auto& h = parsed->host;
    if (h.size() > p.host.size() &&
        h.compare(h.size() - p.host.size(), p.host.size(), p.host) == 0 &&
        h[h.size() - p.host.size() - 1] != '.') {
      return true;
    }
  }
  return false;
}

void CorsPolicy::add_origin_headers(std::string_view origin, http::HttpHeaders& out) const {
  if (options_.allow_credentials) {
    out.add("Access-Control-Allow-Origin", std::string(origin));  // never "*" with credentials
    out.add("Access-Control-Allow-Credentials", "true");
  } else {
    out.add("Access-Control-Allow-Origin", any_origin_ ? "*" : std::string(origin));
  }
}

CorsPreflightResult CorsPolicy::preflight(const http::HttpRequest& request) const {
  CorsPreflightResult result;
  const auto origin = request.headers.get("Origin").value_or("");
  const auto method = trim_ows(request.headers.get("Access-Control-Request-Method").value_or(""));
  auto refuse = [&](std::string reason) {
    result.allowed = false;
    result.response = refusal(reason);
    if (varies_by_origin()) result.response.headers.add("Vary", "Origin");
    result.reason = std::move(reason);
    return result;
  };
  if (!origin_allowed(origin)) return refuse(fmt::format("origin '{}' is not allowed", origin));
  if (!is_token(method)) return refuse("Access-Control-Request-Method is not a method token");
  if (!any_method_ && !contains_exact(options_.allowed_methods, method)) {
    return refuse(fmt::format("method '{}' is not allowed", method));
  }
  std::vector<std::string> requested;
  for (auto value : request.headers.get_all("Access-Control-Request-Headers")) {
    for (auto& h : split_list(value)) requested.push_back(std::move(h));
  }
  for (const auto& h : requested) {
    if (!is_token(h)) return refuse(fmt::format("requested header '{}' is not a field name", h));
    if (!any_header_ && !contains_ignore_case(options_.allowed_headers, h)) {
      return refuse(fmt::format("header '{}' is not allowed", h));
    }
  }

  result.allowed = true;
  result.response.status = 204;
  auto& out = result.response.headers;
  add_origin_headers(origin, out);
  // Echo rather than "*" for wildcards: "*" means nothing to a browser with credentials, and an
  // echo is correct either way.
  out.add("Access-Control-Allow-Methods",
          any_method_ ? std::string(method) : join(options_.allowed_methods));
  if (any_header_) {
    if (!requested.empty()) out.add("Access-Control-Allow-Headers", join(requested));
  } else if (!options_.allowed_headers.empty()) {
    out.add("Access-Control-Allow-Headers", join(options_.allowed_headers));
  }
  if (options_.max_age) {
    out.add("Access-Control-Max-Age", std::to_string(options_.max_age->count()));
  }
  if (varies_by_origin()) out.add("Vary", "Origin");
  return result;
}

http::HttpHeaders CorsPolicy::response_headers(const http::HttpRequest& request) const {
  http::HttpHeaders out;
  const auto origin = request.headers.get("Origin");
  if (origin && origin_allowed(*origin)) {
    add_origin_headers(*origin, out);
    if (!options_.exposed_headers.empty()) {
      out.add("Access-Control-Expose-Headers", join(options_.exposed_headers));
    }
  }
  if (varies_by_origin()) out.add("Vary", "Origin");
  return out;
}

}  // namespace civicbus::gateway
