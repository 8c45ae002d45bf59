#include "gateway/versioning.hpp"

#include <fmt/format.h>

#include <chrono>

namespace civicbus::gateway {

using namespace std::chrono;

std::string format_structured_date(SystemTime t) {
  return fmt::format("@{}", floor<seconds>(t).time_since_epoch().count());
}

namespace {

Status check_link_target(std::string_view what, std::string_view url) {
  for (char c : url) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '<' || c == '>' || c == '"') {
      return invalid_argument(fmt::format(
          "api version: {} '{}' contains a space, control, non-ASCII, '<', '>' or '\"'; "
          "percent-encode it",
          what, url));
    }
  }
  return Status::ok_status();
}

}  // namespace

Result<ApiVersionPolicy> ApiVersionPolicy::create(const Clock& clock, ApiVersionOptions options) {
  if (options.version.empty()) {
    return invalid_argument("api version: version is empty; name it (\"v1\")");
  }
  if (options.deprecated_at && options.sunset_at && *options.sunset_at < *options.deprecated_at) {
    return invalid_argument(fmt::format(
        "api version '{}': sunset ({}) is before deprecation ({}); RFC 9745 requires the sunset "
        "not to precede the deprecation",
        options.version, format_http_date(*options.sunset_at),
        format_http_date(*options.deprecated_at)));
  }
  CIVICBUS_RETURN_IF_ERROR(check_link_target("successor_url", options.successor_url));
  CIVICBUS_RETURN_IF_ERROR(check_link_target("deprecation_doc_url", options.deprecation_doc_url));
  return ApiVersionPolicy(clock, std::move(options));
}

VersionDecision ApiVersionPolicy::decide_at(SystemTime now) const {
  VersionDecision d;
  const auto& o = options_;
  if (o.sunset_at && now >= *o.sunset_at) {
    d.phase = VersionPhase::kSunset;
  } else if (o.deprecated_at && now >= *o.deprecated_at) {
    d.phase = VersionPhase::kDeprecated;
  }
  if (o.deprecated_at) d.headers.add("Deprecation", format_structured_date(*o.deprecated_at));
  if (o.sunset_at) d.headers.add("Sunset", format_http_date(*o.sunset_at));
  if (!o.successor_url.empty()) {
    d.headers.add("Link", fmt::format("<{}>; rel=\"successor-version\"", o.successor_url));
  }
  if (!o.deprecation_doc_url.empty()) {
    d.headers.add("Link", fmt::format("<{}>; rel=\"deprecation\"; type=\"text/html\"",
                                      o.deprecation_doc_url));
  }
  if (d.phase == VersionPhase::kSunset) {
    std::string body =
        fmt::format("API version {} was retired on {}.", o.version, format_http_date(*o.sunset_at));
    if (!o.successor_url.empty()) body += fmt::format(" Use {} instead.", o.successor_url);
    if (!o.deprecation_doc_url.empty()) {
      body += fmt::format(" See {}.", o.deprecation_doc_url);
    }
    auto gone = http::HttpResponse::text(410, body + "\n");
    for (const auto& [name, value] : d.headers) gone.headers.add(name, value);
    d.gone = std::move(gone);
  }
  return d;
}

}  // namespace civicbus::gateway
