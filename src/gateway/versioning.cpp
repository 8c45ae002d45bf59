#include "gateway/versioning.hpp"

#include <fmt/format.h>

#include <array>
#include <cctype>
#include <chrono>

namespace civicbus::gateway {
namespace {

using namespace std::chrono;

constexpr std::array<std::string_view, 7> kDays = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 7> kLongDays = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                       "Thursday", "Friday", "Saturday"};
constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// A cursor over the text; every reader fails (returns false) without consuming on a mismatch
// of the fixed grammar.
struct Cursor {
  std::string_view s;

  bool literal(std::string_view lit) {
    if (s.substr(0, lit.size()) != lit) return false;
    s.remove_prefix(lit.size());
    return true;
  }
  bool digits(std::size_t n, int& out) {
    if (s.size() < n) return false;
    int v = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
      v = v * 10 + (s[i] - '0');
    }
    s.remove_prefix(n);
    out = v;
    return true;
  }
  template <std::size_t N>
  bool name(const std::array<std::string_view, N>& names, int& index) {
    for (std::size_t i = 0; i < N; ++i) {
      if (literal(names[i])) {
        index = static_cast<int>(i);
        return true;
      }
    }
    return false;
  }
  // "HH:MM:SS"
  bool time_of_day(int& h, int& m, int& sec) {
    return digits(2, h) && literal(":") && digits(2, m) && literal(":") && digits(2, sec);
  }
};

Result<SystemTime> build(std::string_view text, int weekday, int year, int month, int day, int h,
                         int m, int s) {
  const year_month_day ymd{std::chrono::year{year}, std::chrono::month{unsigned(month + 1)},
                           std::chrono::day{unsigned(day)}};
  if (!ymd.ok() || h > 23 || m > 59 || s > 60) {
    return invalid_argument(fmt::format("HTTP-date '{}' names no valid date and time", text));
  }
  // The day name is checked for syntax only (as Go's net/http does): senders get it wrong, RFC
  // 8594's own example among them ("Sat, 31 Dec 2018" was a Monday).
  (void)weekday;
  const sys_days days{ymd};
  return SystemTime{days + hours{h} + minutes{m} + seconds{s}};
}

}  // namespace

std::string format_http_date(SystemTime t) {
  const auto secs = floor<seconds>(t);
  const auto days = floor<std::chrono::days>(secs);
  const year_month_day ymd{days};
  const hh_mm_ss hms{secs - days};
  return fmt::format("{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
                     kDays[std::chrono::weekday{days}.c_encoding()], unsigned(ymd.day()),
                     kMonths[unsigned(ymd.month()) - 1], int(ymd.year()), hms.hours().count(),
                     hms.minutes().count(), hms.seconds().count());
}

Result<SystemTime> parse_http_date(std::string_view text) {
  int wd = 0, day = 0, mon = 0, year = 0, h = 0, m = 0, s = 0;
  {  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
    Cursor c{text};
    if (c.name(kDays, wd) && c.literal(", ") && c.digits(2, day) && c.literal(" ") &&
        c.name(kMonths, mon) && c.literal(" ") && c.digits(4, year) && c.literal(" ") &&
        c.time_of_day(h, m, s) && c.literal(" GMT") && c.s.empty()) {
      return build(text, wd, year, mon, day, h, m, s);
    }
  }
  {  // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
    Cursor c{text};
    if (c.name(kLongDays, wd) && c.literal(", ") && c.digits(2, day) && c.literal("-") &&
        c.name(kMonths, mon) && c.literal("-") && c.digits(2, year) && c.literal(" ") &&
        c.time_of_day(h, m, s) && c.literal(" GMT") && c.s.empty()) {
      year += year >= 70 ? 1900 : 2000;
      return build(text, wd, year, mon, day, h, m, s);
    }
  }
  {  // asctime: "Sun Nov  6 08:49:37 1994" (day is two digits or space and one digit)
    Cursor c{text};
    if (c.name(kDays, wd) && c.literal(" ") && c.name(kMonths, mon) && c.literal(" ") &&
        (c.literal(" ") ? c.digits(1, day) : c.digits(2, day)) && c.literal(" ") &&
        c.time_of_day(h, m, s) && c.literal(" ") && c.digits(4, year) && c.s.empty()) {
      return build(text, wd, year, mon, day, h, m, s);
    }
  }
  return invalid_argument(fmt::format(
      "'{}' is not an HTTP-date; expected IMF-fixdate as in 'Sun, 06 Nov 1994 08:49:37 GMT'",
      text));
}

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
