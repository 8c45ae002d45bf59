#include "civicbus/core/time_zone.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <random>
#include <string>

#include "support/test_support.hpp"

namespace civicbus {
namespace {

constexpr std::int64_t kHour = 3600;

// UTC seconds of a civil time given in UTC.
std::int64_t utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
  return seconds_from_civil(CivilTime{y, mo, d, h, mi, s, 0});
}

TimeZone must_load(std::string_view name) {
  auto z = TimeZone::load(name);
  REQUIRE_MESSAGE(z.ok(), z.status().to_string());
  return *z;
}

TEST_CASE("time_zone: civil conversions round-trip and know the weekday") {
  const CivilTime t = civil_from_seconds(utc(2026, 3, 8, 7, 15, 42));
  CHECK(t.year == 2026);
  CHECK(t.month == 3);
  CHECK(t.day == 8);
  CHECK(t.hour == 7);
  CHECK(t.minute == 15);
  CHECK(t.second == 42);
  CHECK(t.weekday == 0);  // a Sunday
  CHECK(civil_from_seconds(0).weekday == 4);
  CHECK(civil_from_seconds(-1).year == 1969);
  CHECK(civil_from_seconds(-1).second == 59);
  CHECK(utc(2000, 2, 29) == 951'782'400);
}

TEST_CASE("time_zone: UTC needs no file and has no offset") {
  const TimeZone z = TimeZone::utc();
  CHECK(z.name() == "UTC");
  CHECK(z.offset_at(utc(2026, 7, 1)) == 0);
  CHECK_FALSE(z.is_dst(utc(2026, 7, 1)));
  CHECK(z.start_of_local_day(utc(2026, 7, 1, 13) * 1000 + 5) == utc(2026, 7, 1) * 1000);
  CHECK(z.next_local_midnight(utc(2026, 7, 1, 13) * 1000) == utc(2026, 7, 2) * 1000);
  // Negative instants round down to the day before, not towards zero.
  CHECK(z.start_of_local_day(-1) == -86'400'000);
  auto loaded = TimeZone::load("UTC");
  REQUIRE(loaded.ok());
  CHECK(loaded->offset_at(utc(2050, 1, 1)) == 0);
}

TEST_CASE("time_zone: America/Toronto spring forward on 2026-03-08 makes a 23 hour day") {
  const TimeZone z = must_load("America/Toronto");
  CHECK(z.name() == "America/Toronto");
  const std::int64_t change = utc(2026, 3, 8, 7);  // 02:00 EST
  CHECK(z.offset_at(change - 1) == -5 * kHour);
  CHECK(z.abbreviation(change - 1) == "EST");
  CHECK_FALSE(z.is_dst(change - 1));
  CHECK(z.offset_at(change) == -4 * kHour);
  CHECK(z.abbreviation(change) == "EDT");
  CHECK(z.is_dst(change));

  const std::int64_t midnight = utc(2026, 3, 8, 5);
  CHECK(z.start_of_local_day(change * 1000) == midnight * 1000);
  CHECK(z.start_of_local_day(midnight * 1000) == midnight * 1000);
  CHECK(z.start_of_local_day(midnight * 1000 - 1) == utc(2026, 3, 7, 5) * 1000);
  const std::int64_t next = z.next_local_midnight(change * 1000);
  CHECK(next == utc(2026, 3, 9, 4) * 1000);
  CHECK(next - midnight * 1000 == 23 * kHour * 1000);

  // 02:30 on that day never showed on a clock.
  const std::int64_t skipped = utc(2026, 3, 8, 2, 30);  // as local seconds
  const LocalTimeResolution e = z.from_local(skipped, Disambiguation::kEarlier);
  const LocalTimeResolution l = z.from_local(skipped, Disambiguation::kLater);
  CHECK(e.kind == LocalTimeKind::kSkipped);
  CHECK(l.kind == LocalTimeKind::kSkipped);
  CHECK(e.utc_seconds == utc(2026, 3, 8, 6, 30));  // 01:30 EST
  CHECK(l.utc_seconds == utc(2026, 3, 8, 7, 30));  // 03:30 EDT
  const LocalTimeResolution u = z.from_local(utc(2026, 3, 8, 12));
  CHECK(u.kind == LocalTimeKind::kUnique);
  CHECK(u.utc_seconds == utc(2026, 3, 8, 16));
}

TEST_CASE("time_zone: America/Toronto fall back on 2026-11-01 makes a 25 hour day") {
  const TimeZone z = must_load("America/Toronto");
  const std::int64_t change = utc(2026, 11, 1, 6);  // 02:00 EDT becomes 01:00 EST
  CHECK(z.offset_at(change - 1) == -4 * kHour);
  CHECK(z.offset_at(change) == -5 * kHour);
  const std::int64_t midnight = utc(2026, 11, 1, 4);
  CHECK(z.start_of_local_day(change * 1000) == midnight * 1000);
  const std::int64_t next = z.next_local_midnight(midnight * 1000);
  CHECK(next == utc(2026, 11, 2, 5) * 1000);
  CHECK(next - midnight * 1000 == 25 * kHour * 1000);

  const std::int64_t repeated = utc(2026, 11, 1, 1, 30);  // as local seconds
  const LocalTimeResolution e = z.from_local(repeated, Disambiguation::kEarlier);
  const LocalTimeResolution l = z.from_local(repeated, Disambiguation::kLater);
  CHECK(e.kind == LocalTimeKind::kRepeated);
  CHECK(e.utc_seconds == utc(2026, 11, 1, 5, 30));  // 01:30 EDT
  CHECK(l.utc_seconds == utc(2026, 11, 1, 6, 30));  // 01:30 EST
  CHECK(z.to_local(e.utc_seconds) == repeated);
  CHECK(z.to_local(l.utc_seconds) == repeated);
}

TEST_CASE("time_zone: half-hour offsets, zones without DST and the southern hemisphere") {
  const TimeZone stj = must_load("America/St_Johns");
  CHECK(stj.offset_at(utc(2026, 1, 15)) == -(3 * kHour + 1800));
  CHECK(stj.offset_at(utc(2026, 7, 15)) == -(2 * kHour + 1800));
  CHECK(stj.abbreviation(utc(2026, 7, 15)) == "NDT");
  CHECK(stj.start_of_local_day(utc(2026, 1, 15, 12) * 1000) ==
        (utc(2026, 1, 15) + 3 * kHour + 1800) * 1000);

  const TimeZone regina = must_load("America/Regina");
  for (int month = 1; month <= 12; ++month) {
    CHECK(regina.offset_at(utc(2026, month, 15)) == -6 * kHour);
    CHECK_FALSE(regina.is_dst(utc(2026, month, 15)));
  }
  CHECK(regina.offset_at(utc(2045, 7, 1)) == -6 * kHour);
  CHECK(regina.next_local_midnight(utc(2026, 3, 8, 12) * 1000) -
            regina.start_of_local_day(utc(2026, 3, 8, 12) * 1000) ==
        24 * kHour * 1000);

  const TimeZone sydney = must_load("Australia/Sydney");
  CHECK(sydney.offset_at(utc(2026, 1, 15)) == 11 * kHour);
  CHECK(sydney.offset_at(utc(2026, 7, 15)) == 10 * kHour);
  CHECK(sydney.offset_at(utc(2041, 1, 15)) == 11 * kHour);
}

TEST_CASE("time_zone: dates past 2037 follow the footer rule") {
  const TimeZone z = must_load("America/Toronto");
  CHECK(z.offset_at(utc(2040, 1, 15)) == -5 * kHour);
  CHECK(z.offset_at(utc(2040, 7, 1)) == -4 * kHour);
  CHECK(z.offset_at(utc(2100, 7, 1)) == -4 * kHour);
  // 2040-03-11 is the second Sunday of March.
  CHECK(z.offset_at(utc(2040, 3, 11, 7) - 1) == -5 * kHour);
  CHECK(z.offset_at(utc(2040, 3, 11, 7)) == -4 * kHour);
  const std::int64_t day = z.start_of_local_day(utc(2040, 3, 11, 12) * 1000);
  CHECK(day == utc(2040, 3, 11, 5) * 1000);
  CHECK(z.next_local_midnight(day) - day == 23 * kHour * 1000);
  // And before the footer: 1990 started DST on the first Sunday of April.
  CHECK(z.offset_at(utc(1990, 4, 1, 7) - 1) == -5 * kHour);
  CHECK(z.offset_at(utc(1990, 4, 1, 7)) == -4 * kHour);
}

TEST_CASE("time_zone: offsets agree with the C library over random instants") {
  const char* saved = std::getenv("TZ");
  const std::string saved_tz = saved ? saved : "";
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::int64_t> when(utc(1950, 1, 1), utc(2100, 1, 1));
  for (const char* name : {"America/Toronto", "America/St_Johns", "Australia/Sydney",
                           "Europe/London", "Asia/Kolkata", "America/Santiago"}) {
    const TimeZone z = must_load(name);
    ::setenv("TZ", (std::string(":") + name).c_str(), 1);
    ::tzset();
    for (int i = 0; i < 2000; ++i) {
      const std::int64_t t = when(rng);
      const std::time_t tt = static_cast<std::time_t>(t);
      std::tm tm{};
      ::localtime_r(&tt, &tm);
      INFO(name, " at ", t);
      REQUIRE(z.offset_at(t) == tm.tm_gmtoff);
      CHECK(z.is_dst(t) == (tm.tm_isdst > 0));
      const LocalTimeResolution r = z.from_local(z.to_local(t));
      if (r.kind == LocalTimeKind::kUnique) {
        CHECK(r.utc_seconds == t);
      } else {
        CHECK(r.kind == LocalTimeKind::kRepeated);
        CHECK((r.utc_seconds == t ||
               z.from_local(z.to_local(t), Disambiguation::kLater).utc_seconds == t));
      }
    }
  }
  if (saved) {
    ::setenv("TZ", saved_tz.c_str(), 1);
  } else {
    ::unsetenv("TZ");
  }
  ::tzset();
}

TEST_CASE("time_zone: bad names and files are refused with the zone and the path") {
  for (const char* bad : {"", "/etc/passwd", "../etc/passwd", "America/../../etc/passwd",
                          "America/Toronto;rm", "America//Toronto", "./UTC"}) {
    auto z = TimeZone::load(bad);
    CHECK_FALSE(z.ok());
    CHECK(z.status().code() == ErrorCode::kInvalidArgument);
  }
  auto missing = TimeZone::load("Mars/Olympus_Mons");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == ErrorCode::kNotFound);
  CHECK(missing.status().message().find("Mars/Olympus_Mons") != std::string::npos);
  CHECK(missing.status().message().find("/usr/share/zoneinfo/Mars/Olympus_Mons") !=
        std::string::npos);

  testing::TempDir dir;
  {
    std::ofstream out(dir.path() / "Broken", std::ios::binary);
    out << "TZif2 this is not a time zone";
  }
  auto broken = TimeZone::load("Broken", dir.path().string());
  REQUIRE_FALSE(broken.ok());
  CHECK(broken.status().code() == ErrorCode::kDataLoss);
  CHECK(broken.status().message().find("Broken") != std::string::npos);

  auto bad_rule = TimeZone::from_tzif("x", "not tzif at all");
  CHECK_FALSE(bad_rule.ok());
}

}  // namespace
}  // namespace civicbus
