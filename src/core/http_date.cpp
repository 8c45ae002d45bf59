// HTTP-dates (RFC 9110 §5.6.7), shared by the HTTP server's Date header and the gateway's
// Sunset header.
#include <fmt/format.h>

#include <array>
#include <cctype>
#include <chrono>
#include <string>
#include <string_view>

#include "civicbus/core/clock.hpp"

namespace civicbus {
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
  // SystemTime counts nanoseconds in 64 bits: 1677-09-21 to 2262-04-11. Found by fuzzing
  // ("Sat, 29 Feb 9020 23:59:60 GMT" overflowed).
  if (year < 1678 || year > 2261) {
    return invalid_argument(fmt::format(
        "HTTP-date '{}' is outside the years 1678 to 2261 this node can represent", text));
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

}  // namespace civicbus
