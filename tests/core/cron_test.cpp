#include "civicbus/core/cron.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace civicbus {
namespace {

using std::chrono::seconds;

// An instant given as a UTC civil time.
SystemTime utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
  return SystemTime{seconds{seconds_from_civil(CivilTime{y, mo, d, h, mi, s, 0})}};
}

// An instant given as the wall time of `zone` (the first occurrence of a repeated time).
SystemTime wall(const TimeZone& zone, int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
  const auto r = zone.from_local(seconds_from_civil(CivilTime{y, mo, d, h, mi, s, 0}));
  REQUIRE(r.kind == LocalTimeKind::kUnique);
  return SystemTime{seconds{r.utc_seconds}};
}

// "2026-03-08T03:00:00-04:00": the wall time and offset the schedule's zone shows.
std::string local_iso(const TimeZone& zone, SystemTime t) {
  const std::int64_t s = std::chrono::floor<seconds>(t.time_since_epoch()).count();
  const int offset = zone.offset_at(s);
  const CivilTime c = civil_from_seconds(s + offset);
  const int abs = offset < 0 ? -offset : offset;
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{:02}:{:02}", c.year, c.month, c.day,
                     c.hour, c.minute, c.second, offset < 0 ? '-' : '+', abs / 3600, abs / 60 % 60);
}

CronSchedule must_parse(std::string_view expr, std::string_view zone = "UTC") {
  auto c = CronSchedule::parse(expr, zone);
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  return *c;
}

// The next `n` fire times after `from`, as local ISO strings ("never" once it stops).
std::vector<std::string> fires(const CronSchedule& c, SystemTime from, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    const auto next = c.next_after(from);
    if (!next) {
      out.emplace_back("never");
      break;
    }
    out.push_back(local_iso(c.zone(), *next));
    from = *next;
  }
  return out;
}

std::string first_fire(std::string_view expr, SystemTime from, std::string_view zone = "UTC") {
  return fires(must_parse(expr, zone), from, 1).front();
}

std::string parse_error(std::string_view expr) {
  auto c = CronSchedule::parse(expr);
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == ErrorCode::kInvalidArgument);
  return c.status().message();
}

using Fires = std::vector<std::string>;

TEST_CASE("cron: five fields with ranges, steps and lists") {
  // 2026-01-02 is a Friday.
  const auto c = must_parse("*/15 9-17 * * MON-FRI");
  CHECK(fires(c, utc(2026, 1, 2, 16, 50), 5) ==
        Fires{"2026-01-02T17:00:00+00:00", "2026-01-02T17:15:00+00:00", "2026-01-02T17:30:00+00:00",
              "2026-01-02T17:45:00+00:00", "2026-01-05T09:00:00+00:00"});
  CHECK(fires(must_parse("5,20-22 3 * * *"), utc(2026, 1, 1), 5) ==
        Fires{"2026-01-01T03:05:00+00:00", "2026-01-01T03:20:00+00:00", "2026-01-01T03:21:00+00:00",
              "2026-01-01T03:22:00+00:00", "2026-01-02T03:05:00+00:00"});
  // a-b/n and a/n (from a to the end of the field).
  CHECK(fires(must_parse("0 8-18/5 * * *"), utc(2026, 1, 1), 4) ==
        Fires{"2026-01-01T08:00:00+00:00", "2026-01-01T13:00:00+00:00", "2026-01-01T18:00:00+00:00",
              "2026-01-02T08:00:00+00:00"});
  CHECK(
      fires(must_parse("45/10 0 * * *"), utc(2026, 1, 1), 3) ==
      Fires{"2026-01-01T00:45:00+00:00", "2026-01-01T00:55:00+00:00", "2026-01-02T00:45:00+00:00"});
  CHECK(first_fire("0 0 1 */5 *", utc(2026, 2, 1)) == "2026-06-01T00:00:00+00:00");
  CHECK(first_fire("* * * * *", utc(2026, 12, 31, 23, 59, 30)) == "2027-01-01T00:00:00+00:00");
}

TEST_CASE("cron: six fields put seconds first") {
  CHECK(fires(must_parse("*/20 * * * * *"), utc(2026, 1, 1, 12, 0, 5), 4) ==
        Fires{"2026-01-01T12:00:20+00:00", "2026-01-01T12:00:40+00:00", "2026-01-01T12:01:00+00:00",
              "2026-01-01T12:01:20+00:00"});
  CHECK(first_fire("30 0 12 * * ?", utc(2026, 1, 1, 12)) == "2026-01-01T12:00:30+00:00");
  CHECK(first_fire("59 59 23 31 12 *", utc(2026, 6, 1)) == "2026-12-31T23:59:59+00:00");
}

TEST_CASE("cron: next_after is strictly after, in whole seconds") {
  const auto c = must_parse("0 12 * * *");
  CHECK(first_fire("0 12 * * *", utc(2026, 1, 1, 12)) == "2026-01-02T12:00:00+00:00");
  CHECK(first_fire("0 12 * * *", utc(2026, 1, 1, 11, 59, 59)) == "2026-01-01T12:00:00+00:00");
  // 11:59:59.999 is still before noon.
  const auto almost = utc(2026, 1, 1, 11, 59, 59) + std::chrono::milliseconds(999);
  CHECK(c.next_after(almost) == utc(2026, 1, 1, 12));
  CHECK(c.next_after(utc(2026, 1, 1, 12) + std::chrono::microseconds(1)) == utc(2026, 1, 2, 12));
}

TEST_CASE("cron: month and day names, case-insensitive, and 7 is Sunday") {
  CHECK(fires(must_parse("0 0 1 jan,JUL *"), utc(2026, 1, 2), 2) ==
        Fires{"2026-07-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"});
  CHECK(first_fire("0 0 1 Mar-May/2 *", utc(2026, 3, 2)) == "2026-05-01T00:00:00+00:00");
  // 2026-01-02 is a Friday; Sunday is both 0 and 7.
  CHECK(first_fire("0 0 * * 7", utc(2026, 1, 2)) == "2026-01-04T00:00:00+00:00");
  CHECK(first_fire("0 0 * * 0", utc(2026, 1, 2)) == "2026-01-04T00:00:00+00:00");
  CHECK(first_fire("0 0 * * sun", utc(2026, 1, 2)) == "2026-01-04T00:00:00+00:00");
  CHECK(fires(must_parse("0 0 * * 5-7"), utc(2026, 1, 2), 3) == Fires{"2026-01-03T00:00:00+00:00",
                                                                      "2026-01-04T00:00:00+00:00",
                                                                      "2026-01-09T00:00:00+00:00"});
  CHECK(
      fires(must_parse("0 0 * * */3"), utc(2026, 1, 1), 3) ==  // Sun, Wed, Sat
      Fires{"2026-01-03T00:00:00+00:00", "2026-01-04T00:00:00+00:00", "2026-01-07T00:00:00+00:00"});
}

TEST_CASE("cron: day-of-month and day-of-week both restricted fire when either matches") {
  // Friday the 13th or any Friday: 2026-02-06 is a Friday, 2026-02-13 too.
  CHECK(
      fires(must_parse("0 0 13 * FRI"), utc(2026, 2, 1), 3) ==
      Fires{"2026-02-06T00:00:00+00:00", "2026-02-13T00:00:00+00:00", "2026-02-20T00:00:00+00:00"});
  // 2026-03-01 and 2026-03-15 are Sundays.
  CHECK(
      fires(must_parse("0 0 1,15 * MON"), utc(2026, 3, 1), 3) ==
      Fires{"2026-03-02T00:00:00+00:00", "2026-03-09T00:00:00+00:00", "2026-03-15T00:00:00+00:00"});
  // One of them '*' or '?': only the other counts.
  CHECK(first_fire("0 0 13 * *", utc(2026, 2, 1)) == "2026-02-13T00:00:00+00:00");
  CHECK(first_fire("0 0 ? * FRI", utc(2026, 2, 1)) == "2026-02-06T00:00:00+00:00");
  CHECK(first_fire("0 0 0 13 * ?", utc(2026, 2, 1)) == "2026-02-13T00:00:00+00:00");
}

TEST_CASE("cron: macros") {
  const auto from = utc(2026, 5, 14, 10, 30);  // a Thursday
  CHECK(first_fire("@yearly", from) == "2027-01-01T00:00:00+00:00");
  CHECK(first_fire("@annually", from) == "2027-01-01T00:00:00+00:00");
  CHECK(first_fire("@monthly", from) == "2026-06-01T00:00:00+00:00");
  CHECK(first_fire("@weekly", from) == "2026-05-17T00:00:00+00:00");
  CHECK(first_fire("@daily", from) == "2026-05-15T00:00:00+00:00");
  CHECK(first_fire("@MIDNIGHT", from) == "2026-05-15T00:00:00+00:00");
  CHECK(first_fire("@hourly", from) == "2026-05-14T11:00:00+00:00");
  CHECK(must_parse("  @daily ").expression() == "@daily");
  CHECK(parse_error("@reboot").find("'@reboot' is not a time schedule") != std::string::npos);
  CHECK(parse_error("@dayly") ==
        "unknown cron macro '@dayly'; expected @yearly, @annually, @monthly, @weekly, @daily, "
        "@midnight or @hourly");
}

TEST_CASE("cron: L, L-n and LW in day-of-month") {
  CHECK(first_fire("0 0 L * *", utc(2026, 2, 1)) == "2026-02-28T00:00:00+00:00");
  CHECK(first_fire("0 0 L * *", utc(2028, 2, 1)) == "2028-02-29T00:00:00+00:00");
  CHECK(fires(must_parse("0 0 L-3 * *"), utc(2026, 2, 1), 2) ==
        Fires{"2026-02-25T00:00:00+00:00", "2026-03-28T00:00:00+00:00"});
  // Last weekday: 2026-02-28 is a Saturday, so Friday the 27th; 2028-02-29 (leap) is a
  // Tuesday; 2026-05-31 is a Sunday, so Friday the 29th.
  CHECK(first_fire("0 0 LW * *", utc(2026, 2, 1)) == "2026-02-27T00:00:00+00:00");
  CHECK(first_fire("0 0 LW 2 *", utc(2026, 3, 1)) == "2027-02-26T00:00:00+00:00");
  CHECK(first_fire("0 0 LW * *", utc(2028, 2, 1)) == "2028-02-29T00:00:00+00:00");
  CHECK(first_fire("0 0 LW * *", utc(2026, 5, 1)) == "2026-05-29T00:00:00+00:00");
  CHECK(first_fire("0 0 L,15 * *", utc(2026, 4, 16)) == "2026-04-30T00:00:00+00:00");
}

TEST_CASE("cron: nW is the nearest weekday without leaving the month") {
  // 2026-07-01 is a Wednesday; 2026-08-01 a Saturday: the 1st never moves back into July.
  CHECK(fires(must_parse("0 0 1W * *"), utc(2026, 6, 15), 2) ==
        Fires{"2026-07-01T00:00:00+00:00", "2026-08-03T00:00:00+00:00"});
  // 15th: Saturday 2026-08-15 gives Friday the 14th, Sunday 2026-11-15 Monday the 16th.
  CHECK(first_fire("0 0 15W * *", utc(2026, 8, 1)) == "2026-08-14T00:00:00+00:00");
  CHECK(first_fire("0 0 15W * *", utc(2026, 11, 1)) == "2026-11-16T00:00:00+00:00");
  // 31W: 2026-01-31 is a Saturday (Friday the 30th); 2026-05-31 a Sunday and the last day,
  // so Friday the 29th; months without a 31st (April) do not fire.
  CHECK(first_fire("0 0 31W * *", utc(2026, 1, 1)) == "2026-01-30T00:00:00+00:00");
  CHECK(first_fire("0 0 31W * *", utc(2026, 3, 31, 1)) == "2026-05-29T00:00:00+00:00");
}

TEST_CASE("cron: dL and d#k in day-of-week") {
  // Last Friday: 2026-01-30, 2026-02-27.
  CHECK(fires(must_parse("0 0 * * 5L"), utc(2026, 1, 1), 2) ==
        Fires{"2026-01-30T00:00:00+00:00", "2026-02-27T00:00:00+00:00"});
  CHECK(first_fire("0 0 * * friL", utc(2026, 1, 1)) == "2026-01-30T00:00:00+00:00");
  CHECK(first_fire("0 0 * * 7L", utc(2026, 5, 1)) == "2026-05-31T00:00:00+00:00");
  // Third Friday: January 2026 has Fridays 2, 9, 16.
  CHECK(first_fire("0 0 * * 5#3", utc(2026, 1, 1)) == "2026-01-16T00:00:00+00:00");
  CHECK(first_fire("0 0 * * FRI#3", utc(2026, 1, 16, 0, 0, 1)) == "2026-02-20T00:00:00+00:00");
  // A fifth Monday exists only in some months: in 2026 March, June, August and November.
  CHECK(
      fires(must_parse("0 0 * * MON#5"), utc(2026, 4, 1), 3) ==
      Fires{"2026-06-29T00:00:00+00:00", "2026-08-31T00:00:00+00:00", "2026-11-30T00:00:00+00:00"});
  // A fifth Friday in February needs a leap year starting on a Friday: 2036.
  CHECK(first_fire("0 0 * 2 5#5", utc(2026, 1, 1)) == "2036-02-29T00:00:00+00:00");
}

TEST_CASE("cron: leap days and schedules that never fire") {
  CHECK(fires(must_parse("0 0 29 2 *"), utc(2026, 3, 1), 2) ==
        Fires{"2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"});
  // 2100 is not a leap year.
  CHECK(first_fire("0 0 29 2 *", utc(2096, 3, 1)) == "2104-02-29T00:00:00+00:00");
  CHECK_FALSE(must_parse("0 0 30 2 *").next_after(utc(2026, 1, 1)).has_value());
  CHECK_FALSE(must_parse("0 0 31 4,6,9,11 *").next_after(utc(2026, 1, 1)).has_value());
  CHECK_FALSE(must_parse("0 0 L-30 2 *").next_after(utc(2026, 1, 1)).has_value());
}

TEST_CASE("cron: errors name the field and the token") {
  CHECK(parse_error("0 25 * * *") ==
        "cron field 'hour' value 25 is out of range 0-23 in '0 25 * * *'");
  CHECK(parse_error("60 * * * *") ==
        "cron field 'minute' value 60 is out of range 0-59 in '60 * * * *'");
  CHECK(parse_error("61 * * * * *") ==
        "cron field 'second' value 61 is out of range 0-59 in '61 * * * * *'");
  CHECK(parse_error("0 0 32 * *") ==
        "cron field 'day-of-month' value 32 is out of range 1-31 in '0 0 32 * *'");
  CHECK(parse_error("0 0 0 * *") ==
        "cron field 'day-of-month' value 0 is out of range 1-31 in '0 0 0 * *'");
  CHECK(parse_error("0 0 * 13 *") ==
        "cron field 'month' value 13 is out of range 1-12 in '0 0 * 13 *'");
  CHECK(parse_error("0 0 * * 8") ==
        "cron field 'day-of-week' value 8 is out of range 0-7 in '0 0 * * 8'");
  CHECK(parse_error("0 0 * FOO *") ==
        "cron field 'month' value 'FOO' is not a month name (JAN-DEC) in '0 0 * FOO *'");
  CHECK(parse_error("0 0 * * FRU") ==
        "cron field 'day-of-week' value 'FRU' is not a day name (SUN-SAT) in '0 0 * * FRU'");
  CHECK(parse_error("x * * * *") == "cron field 'minute' has an invalid token 'x' in 'x * * * *'");
  CHECK(parse_error("*/0 * * * *") ==
        "cron field 'minute' step 0 in '*/0' must be at least 1 in '*/0 * * * *'");
  CHECK(parse_error("*/x * * * *") ==
        "cron field 'minute' step 'x' in '*/x' is not a number in '*/x * * * *'");
  CHECK(parse_error("0 20-10 * * *") ==
        "cron field 'hour' range '20-10' runs backwards (write a wrapping range as two: "
        "'20-23,0-10') in '0 20-10 * * *'");
  CHECK(parse_error("0 1,,2 * * *") ==
        "cron field 'hour' has an empty list item in '1,,2' in '0 1,,2 * * *'");
  CHECK(parse_error("0 ? * * *") ==
        "cron field 'hour' has '?', which only day-of-month and day-of-week accept in "
        "'0 ? * * *'");
  CHECK(parse_error("0 0 * * 5#6") ==
        "cron field 'day-of-week' occurrence '6' in '5#6' is out of range 1-5 in '0 0 * * 5#6'");
  CHECK(parse_error("0 0 L-31 * *") ==
        "cron field 'day-of-month' offset '31' in 'L-31' is not a number of days 0-30 in "
        "'0 0 L-31 * *'");
  CHECK(parse_error("0 0 32W * *") ==
        "cron field 'day-of-month' value 32 is out of range 1-31 in '0 0 32W * *'");
  CHECK(parse_error("0 0 * * L").find("'L' alone") != std::string::npos);
  CHECK(parse_error("0 0 5L * *").find("'day-of-month' has an invalid token '5L'") !=
        std::string::npos);
  CHECK(parse_error("0 0 * * 1W").find("'day-of-week'") != std::string::npos);
  CHECK(parse_error("0 0 3#2 * *").find("'day-of-month'") != std::string::npos);
  CHECK(parse_error("99999999999 * * * *").find("value 99999999999 is out of range") !=
        std::string::npos);
  CHECK(parse_error("0 0 * *") ==
        "cron expression '0 0 * *' has 4 fields; expected 5 (minute hour day-of-month month "
        "day-of-week) or 6 (second minute hour day-of-month month day-of-week)");
  CHECK(parse_error("0 0 * * * * 2026").find("has 7 fields") != std::string::npos);
  CHECK(parse_error("   ").find("cron expression is empty") != std::string::npos);

  auto zone = CronSchedule::parse("@daily", "Mars/Olympus_Mons");
  REQUIRE_FALSE(zone.ok());
  CHECK(zone.status().code() == ErrorCode::kNotFound);
}

TEST_CASE("cron: a time zone per schedule") {
  const auto toronto = must_parse("0 9 * * *", "America/Toronto");
  CHECK(toronto.zone().name() == "America/Toronto");
  CHECK(toronto.next_after(utc(2026, 1, 15)) == utc(2026, 1, 15, 14));  // EST
  CHECK(toronto.next_after(utc(2026, 7, 15)) == utc(2026, 7, 15, 13));  // EDT
  const auto kolkata = must_parse("0 9 * * *", "Asia/Kolkata");
  CHECK(kolkata.next_after(utc(2026, 7, 15)) == utc(2026, 7, 15, 3, 30));
  CHECK(first_fire("0 9 * * *", utc(2026, 7, 15), "Asia/Kolkata") == "2026-07-15T09:00:00+05:30");
}

TEST_CASE("cron: Toronto spring forward runs a skipped time once, when the gap ends") {
  // 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00Z).
  const auto c = must_parse("30 2 * * *", "America/Toronto");
  CHECK(fires(c, utc(2026, 3, 7, 12), 3) == Fires{"2026-03-08T03:00:00-04:00",
                                                  "2026-03-09T02:30:00-04:00",
                                                  "2026-03-10T02:30:00-04:00"});
  CHECK(c.next_after(utc(2026, 3, 7, 12)) == utc(2026, 3, 8, 7));
  // Just before the gap ends, and right at its end (already fired).
  CHECK(c.next_after(utc(2026, 3, 8, 6, 59, 59)) == utc(2026, 3, 8, 7));
  CHECK(c.next_after(utc(2026, 3, 8, 7)) == utc(2026, 3, 9, 6, 30));

  // Every matching time inside the gap collapses into one firing, shared with 03:00 itself.
  CHECK(fires(must_parse("*/15 * * * *", "America/Toronto"), utc(2026, 3, 8, 6, 30), 4) ==
        Fires{"2026-03-08T01:45:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:15:00-04:00",
              "2026-03-08T03:30:00-04:00"});
  CHECK(
      fires(must_parse("0,30 2 * * *", "America/Toronto"), utc(2026, 3, 7, 12), 3) ==
      Fires{"2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00", "2026-03-09T02:30:00-04:00"});
  CHECK(
      fires(must_parse("@hourly", "America/Toronto"), utc(2026, 3, 8, 5, 30), 3) ==
      Fires{"2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"});
  // Midnight schedules are untouched (Toronto shifts at 02:00).
  CHECK(first_fire("@daily", utc(2026, 3, 8, 6), "America/Toronto") == "2026-03-09T00:00:00-04:00");
}

TEST_CASE("cron: Toronto fall back runs a repeated time once, on its first pass") {
  // 2026-11-01: 02:00 EDT (06:00Z) becomes 01:00 EST; 01:00-01:59 happens twice.
  const auto c = must_parse("30 1 * * *", "America/Toronto");
  CHECK(fires(c, utc(2026, 10, 31, 12), 3) == Fires{"2026-11-01T01:30:00-04:00",
                                                    "2026-11-02T01:30:00-05:00",
                                                    "2026-11-03T01:30:00-05:00"});
  CHECK(c.next_after(utc(2026, 10, 31, 12)) == utc(2026, 11, 1, 5, 30));
  // Asked during the second pass, before 01:30 EST: that wall time already fired.
  CHECK(c.next_after(utc(2026, 11, 1, 6, 10)) == utc(2026, 11, 2, 6, 30));

  // Every-minute fields too: no firing during the second pass.
  CHECK(
      fires(must_parse("*/15 * * * *", "America/Toronto"), utc(2026, 11, 1, 5, 40), 3) ==
      Fires{"2026-11-01T01:45:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T02:15:00-05:00"});
  CHECK(must_parse("*/15 * * * *", "America/Toronto").next_after(utc(2026, 11, 1, 6, 20)) ==
        utc(2026, 11, 1, 7));
  CHECK(
      fires(must_parse("@hourly", "America/Toronto"), utc(2026, 11, 1, 4, 30), 3) ==
      Fires{"2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"});
  CHECK(fires(must_parse("0 0 2 * * *", "America/Toronto"), utc(2026, 10, 31, 12), 2) ==
        Fires{"2026-11-01T02:00:00-05:00", "2026-11-02T02:00:00-05:00"});
}

TEST_CASE("cron: a whole year in Toronto fires once per local day") {
  for (const char* expr : {"30 2 * * *", "30 1 * * *", "0 0 * * *"}) {
    const auto c = must_parse(expr, "America/Toronto");
    SystemTime t = wall(c.zone(), 2025, 12, 31, 12);
    std::string last_date;
    int count = 0;
    for (;;) {
      const auto next = c.next_after(t);
      REQUIRE(next.has_value());
      CHECK(*next > t);
      const std::string iso = local_iso(c.zone(), *next);
      if (iso.substr(0, 4) != "2026") break;
      CHECK(iso.substr(0, 10) != last_date);
      last_date = iso.substr(0, 10);
      ++count;
      t = *next;
    }
    CHECK_MESSAGE(count == 365, expr);
  }
}

TEST_CASE("cron: southern hemisphere and half-hour zones") {
  // Adelaide (+09:30 / +10:30). 2026-10-04: 02:00 ACST becomes 03:00 ACDT (2026-10-03 16:30Z).
  const auto adelaide = must_parse("30 2 * * *", "Australia/Adelaide");
  CHECK(fires(adelaide, utc(2026, 10, 2), 3) == Fires{"2026-10-03T02:30:00+09:30",
                                                      "2026-10-04T03:00:00+10:30",
                                                      "2026-10-05T02:30:00+10:30"});
  CHECK(adelaide.next_after(utc(2026, 10, 3)) == utc(2026, 10, 3, 16, 30));
  // 2026-04-05: 03:00 ACDT becomes 02:00 ACST (2026-04-04 16:30Z); 02:30 fires once.
  CHECK(fires(adelaide, utc(2026, 4, 3), 3) == Fires{"2026-04-04T02:30:00+10:30",
                                                     "2026-04-05T02:30:00+10:30",
                                                     "2026-04-06T02:30:00+09:30"});
  CHECK(adelaide.next_after(utc(2026, 4, 4, 12)) == utc(2026, 4, 4, 16));

  // Lord Howe shifts by half an hour: 2026-10-04 02:00 +10:30 becomes 02:30 +11:00.
  const auto lord_howe = must_parse("15 2 * * *", "Australia/Lord_Howe");
  CHECK(fires(lord_howe, utc(2026, 10, 3), 2) ==
        Fires{"2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"});
  // 2026-04-05 02:00 +11:00 becomes 01:30 +10:30: 01:45 fires on its first pass only.
  CHECK(fires(must_parse("45 1 * * *", "Australia/Lord_Howe"), utc(2026, 4, 4), 2) ==
        Fires{"2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"});
}

}  // namespace
}  // namespace civicbus
