#include "civicbus/core/clock.hpp"

#include <fmt/format.h>

#include <array>
#include <limits>

#include "core/civil_date.hpp"

namespace civicbus {
namespace {

constexpr std::int64_t kMicrosPerSecond = 1'000'000;
constexpr std::int64_t kSecondsPerDay = 86'400;

using detail::civil_from_days;
using detail::CivilDate;
using detail::days_from_civil;
using detail::days_in_month;

constexpr std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

void put_digits(char* out, std::uint64_t v, int width) {
  for (int i = width - 1; i >= 0; --i) {
    out[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
}

// Reads exactly `n` digits at `pos`; false if any is not a digit.
bool read_digits(std::string_view s, std::size_t pos, std::size_t n, unsigned& out) {
  if (pos + n > s.size()) return false;
  unsigned v = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    const char c = s[i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  out = v;
  return true;
}

Status bad_time(std::string_view text, std::string_view why) {
  return invalid_argument(fmt::format(
      "'{}' is not an RFC 3339 date-time ({}); expected e.g. 2026-11-22T14:52:00.123Z or "
      "2026-11-22T09:52:00-05:00",
      text.substr(0, 64), why));
}

}  // namespace

SystemTime ManualClock::now() const {
  return from_unix_micros(wall_us_.load());
}

SteadyTime ManualClock::steady_now() const {
  return SteadyTime{std::chrono::duration_cast<SteadyTime::duration>(
      std::chrono::microseconds{steady_us_.load()})};
}

std::int64_t to_unix_micros(SystemTime t) {
  // floor, not truncation: a time 0.5 us before the epoch is -1 us, so ordering is kept.
  return std::chrono::floor<std::chrono::microseconds>(t.time_since_epoch()).count();
}

SystemTime from_unix_micros(std::int64_t us) {
  return SystemTime{
      std::chrono::duration_cast<SystemTime::duration>(std::chrono::microseconds{us})};
}

std::string format_rfc3339(SystemTime t) {
  const std::int64_t us = to_unix_micros(t);
  const std::int64_t days = floor_div(us, kSecondsPerDay * kMicrosPerSecond);
  const std::int64_t us_of_day = us - days * kSecondsPerDay * kMicrosPerSecond;
  const CivilDate date = civil_from_days(days);
  const std::int64_t sec_of_day = us_of_day / kMicrosPerSecond;

  // "YYYY-MM-DDTHH:MM:SS.ffffffZ" is 27 characters; written by hand because this runs for
  // every log line and every event envelope.
  std::string out(27, '\0');
  char* p = out.data();
  // The system clock cannot reach years outside 0..9999 with nanosecond ticks (1677..2262).
  put_digits(p, static_cast<std::uint64_t>(date.year < 0 ? 0 : date.year % 10000), 4);
  p[4] = '-';
  put_digits(p + 5, date.month, 2);
  p[7] = '-';
  put_digits(p + 8, date.day, 2);
  p[10] = 'T';
  put_digits(p + 11, static_cast<std::uint64_t>(sec_of_day / 3600), 2);
  p[13] = ':';
  put_digits(p + 14, static_cast<std::uint64_t>(sec_of_day / 60 % 60), 2);
  p[16] = ':';
  put_digits(p + 17, static_cast<std::uint64_t>(sec_of_day % 60), 2);
  p[19] = '.';
  put_digits(p + 20, static_cast<std::uint64_t>(us_of_day % kMicrosPerSecond), 6);
  p[26] = 'Z';
  return out;
}

Result<SystemTime> parse_rfc3339(std::string_view text) {
  // date-time = full-date "T" full-time (RFC 3339 §5.6), read position by position.
  unsigned year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!read_digits(text, 0, 4, year) || text.size() < 5 || text[4] != '-' ||
      !read_digits(text, 5, 2, month) || text.size() < 8 || text[7] != '-' ||
      !read_digits(text, 8, 2, day)) {
    return bad_time(text, "the date must be YYYY-MM-DD");
  }
  if (text.size() < 11 || (text[10] != 'T' && text[10] != 't')) {
    return bad_time(text, "the date and time must be separated by 'T'");
  }
  if (!read_digits(text, 11, 2, hour) || text.size() < 14 || text[13] != ':' ||
      !read_digits(text, 14, 2, minute) || text.size() < 17 || text[16] != ':' ||
      !read_digits(text, 17, 2, second)) {
    return bad_time(text, "the time must be HH:MM:SS");
  }
  if (month < 1 || month > 12) return bad_time(text, fmt::format("month {} does not exist", month));
  if (day < 1 || day > days_in_month(year, month)) {
    return bad_time(text, fmt::format("day {} does not exist in {:04}-{:02}", day, year, month));
  }
  if (hour > 23) return bad_time(text, fmt::format("hour {} is out of range 00-23", hour));
  if (minute > 59) return bad_time(text, fmt::format("minute {} is out of range 00-59", minute));
  if (second > 60) return bad_time(text, fmt::format("second {} is out of range 00-60", second));

  std::size_t pos = 19;
  std::int64_t nanos = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    const std::size_t start = pos;
    std::int64_t scale = 100'000'000;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      // Digits past nanoseconds are accepted and dropped: the clock cannot hold them.
      nanos += (text[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return bad_time(text, "a '.' must be followed by digits");
  }

  std::int64_t offset_minutes = 0;
  if (pos >= text.size()) return bad_time(text, "the UTC offset ('Z' or +HH:MM) is missing");
  const char sign = text[pos];
  if (sign == 'Z' || sign == 'z') {
    ++pos;
  } else if (sign == '+' || sign == '-') {
    unsigned off_h = 0, off_m = 0;
    if (!read_digits(text, pos + 1, 2, off_h) || text.size() < pos + 4 || text[pos + 3] != ':' ||
        !read_digits(text, pos + 4, 2, off_m)) {
      return bad_time(text, "the UTC offset must be +HH:MM or -HH:MM");
    }
    if (off_h > 23 || off_m > 59) return bad_time(text, "the UTC offset is out of range");
    offset_minutes = (sign == '+' ? 1 : -1) * static_cast<std::int64_t>(off_h * 60 + off_m);
    pos += 6;
  } else {
    return bad_time(text, "the UTC offset must be 'Z', +HH:MM or -HH:MM");
  }
  if (pos != text.size()) return bad_time(text, "unexpected text after the UTC offset");

  const std::int64_t local_minute_of_day = hour * 60 + minute;
  if (second == 60) {
    // A leap second exists only in the last minute of a UTC day (RFC 3339 §5.7), and the
    // system clock has no slot for it: like java.time, it is read as second 59.
    const std::int64_t utc_minute_of_day =
        ((local_minute_of_day - offset_minutes) % 1440 + 1440) % 1440;
    if (utc_minute_of_day != 23 * 60 + 59) {
      return bad_time(text, "second 60 is a leap second and only exists at 23:59 UTC");
    }
    second = 59;
  }

  const std::int64_t days = days_from_civil(year, month, day);
  const std::int64_t seconds =
      days * kSecondsPerDay + local_minute_of_day * 60 + second - offset_minutes * 60;
  // The system clock counts nanoseconds in an int64, which spans 1677..2262.
  constexpr std::int64_t kMaxSeconds = std::numeric_limits<std::int64_t>::max() / 1'000'000'000 - 1;
  if (seconds > kMaxSeconds || seconds < -kMaxSeconds) {
    return out_of_range(
        fmt::format("'{}' is outside the range the system clock can hold "
                    "(years 1678 to 2261)",
                    text.substr(0, 64)));
  }
  const auto since_epoch = std::chrono::seconds{seconds} + std::chrono::nanoseconds{nanos};
  return SystemTime{std::chrono::duration_cast<SystemTime::duration>(since_epoch)};
}

}  // namespace civicbus
