#include "civicbus/core/clock.hpp"

#include <doctest/doctest.h>

#include <thread>
#include <vector>

namespace civicbus {
namespace {

using std::chrono::microseconds;
using std::chrono::seconds;

std::int64_t parsed_micros(std::string_view text) {
  auto t = parse_rfc3339(text);
  REQUIRE_MESSAGE(t.ok(), t.status().to_string());
  return to_unix_micros(*t);
}

TEST_CASE("clock: ManualClock moves only when told") {
  ManualClock clock;
  CHECK(to_unix_micros(clock.now()) == 1'700'000'000'000'000);
  const SteadyTime s0 = clock.steady_now();
  CHECK(clock.now() == clock.now());
  clock.advance(microseconds{1500});
  CHECK(to_unix_micros(clock.now()) == 1'700'000'000'001'500);
  CHECK(clock.steady_now() - s0 == microseconds{1500});
  // Setting the wall clock (an NTP step) leaves the steady clock alone.
  clock.set(from_unix_micros(42));
  CHECK(to_unix_micros(clock.now()) == 42);
  CHECK(clock.steady_now() - s0 == microseconds{1500});
}

TEST_CASE("clock: ManualClock is safe to advance from several threads") {
  ManualClock clock(from_unix_micros(0));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) clock.advance(microseconds{1});
    });
  }
  for (auto& th : threads) th.join();
  CHECK(to_unix_micros(clock.now()) == 40000);
}

TEST_CASE("clock: unix micros round-trip, floor below the epoch") {
  for (std::int64_t us : {0LL, 1LL, -1LL, 1'700'000'000'123'456LL, -86'400'000'001LL}) {
    CHECK(to_unix_micros(from_unix_micros(us)) == us);
  }
  CHECK(to_unix_micros(SystemTime{std::chrono::nanoseconds{-1}}) == -1);
  CHECK(to_unix_micros(SystemTime{std::chrono::nanoseconds{1999}}) == 1);
}

TEST_CASE("clock: format_rfc3339") {
  CHECK(format_rfc3339(from_unix_micros(0)) == "1970-01-01T00:00:00.000000Z");
  CHECK(format_rfc3339(from_unix_micros(1'700'000'000'000'000)) == "2023-11-14T22:13:20.000000Z");
  CHECK(format_rfc3339(from_unix_micros(1'795'359'120'123'456)) == "2026-11-22T14:52:00.123456Z");
  CHECK(format_rfc3339(from_unix_micros(951'782'400'000'001)) == "2000-02-29T00:00:00.000001Z");
  CHECK(format_rfc3339(from_unix_micros(-1)) == "1969-12-31T23:59:59.999999Z");
  CHECK(format_rfc3339(from_unix_micros(-2'208'988'800'000'000)) == "1900-01-01T00:00:00.000000Z");
  CHECK(format_rfc3339(from_unix_micros(4'102'444'799'999'999)) == "2099-12-31T23:59:59.999999Z");
}

TEST_CASE("clock: format and parse round-trip over many days") {
  // Every day for 800 years around the epoch, at a time with all fields non-zero.
  for (std::int64_t day = -365 * 270; day < 365 * 290; day += 7) {
    const std::int64_t us = day * 86'400'000'000LL + 45'296'789'012LL;
    const std::string text = format_rfc3339(from_unix_micros(us));
    auto back = parse_rfc3339(text);
    REQUIRE_MESSAGE(back.ok(), text);
    REQUIRE_MESSAGE(to_unix_micros(*back) == us, text);
  }
}

TEST_CASE("clock: parse_rfc3339 accepts the RFC 3339 forms") {
  CHECK(parsed_micros("1970-01-01T00:00:00Z") == 0);
  CHECK(parsed_micros("1970-01-01t00:00:00z") == 0);
  CHECK(parsed_micros("2026-11-22T14:52:00.123456Z") == 1'795'359'120'123'456);
  // Offsets move the instant: 09:52-05:00 and 20:22+05:30 are both 14:52Z.
  CHECK(parsed_micros("2026-11-22T09:52:00-05:00") == 1'795'359'120'000'000);
  CHECK(parsed_micros("2026-11-22T20:22:00+05:30") == 1'795'359'120'000'000);
  CHECK(parsed_micros("2026-11-22T10:52:00-04:00") == 1'795'359'120'000'000);
  CHECK(parsed_micros("2026-11-22T14:52:00+00:00") == 1'795'359'120'000'000);
  CHECK(parsed_micros("2026-11-22T14:52:00-00:00") == 1'795'359'120'000'000);
  // Fractions of any length; digits past the clock's resolution are dropped.
  CHECK(parsed_micros("1970-01-01T00:00:00.5Z") == 500'000);
  CHECK(parsed_micros("1970-01-01T00:00:00.12Z") == 120'000);
  CHECK(parsed_micros("1970-01-01T00:00:00.000001Z") == 1);
  CHECK(parsed_micros("1970-01-01T00:00:00.0000019Z") == 1);
  CHECK(parsed_micros("1970-01-01T00:00:00.123456789123456789Z") == 123'456);
  auto ns = parse_rfc3339("1970-01-01T00:00:01.000000123Z");
  REQUIRE(ns.ok());
  CHECK(std::chrono::duration_cast<std::chrono::nanoseconds>(ns->time_since_epoch()).count() ==
        1'000'000'123);
  // Leap days.
  CHECK(parsed_micros("2000-02-29T00:00:00Z") == 951'782'400'000'000);
  CHECK(parsed_micros("2024-02-29T12:00:00Z") == 1'709'208'000'000'000);
  // Before the epoch.
  CHECK(parsed_micros("1969-12-31T23:59:59.999999Z") == -1);
  // Day boundaries crossed by the offset.
  CHECK(parsed_micros("2026-01-01T00:30:00+01:00") == parsed_micros("2025-12-31T23:30:00Z"));
}

TEST_CASE("clock: leap seconds are accepted at 23:59:60 UTC only") {
  CHECK(parsed_micros("2016-12-31T23:59:60Z") == parsed_micros("2016-12-31T23:59:59Z"));
  CHECK(parsed_micros("2016-12-31T23:59:60.5Z") == parsed_micros("2016-12-31T23:59:59.5Z"));
  // The same leap second seen from New York and from Kolkata.
  CHECK(parsed_micros("2016-12-31T18:59:60-05:00") == parsed_micros("2016-12-31T23:59:59Z"));
  CHECK(parsed_micros("2017-01-01T05:29:60+05:30") == parsed_micros("2016-12-31T23:59:59Z"));
  CHECK_FALSE(parse_rfc3339("2016-12-31T12:00:60Z").ok());
  CHECK_FALSE(parse_rfc3339("2016-12-31T23:59:60+01:00").ok());
  CHECK_FALSE(parse_rfc3339("2016-12-31T23:59:61Z").ok());
}

TEST_CASE("clock: parse_rfc3339 rejects what RFC 3339 does not allow") {
  const char* bad[] = {
      "",
      "2026-11-22",
      "2026-11-22T14:52:00",     // no offset
      "2026-11-22 14:52:00Z",    // space separator (an ISO 8601 / SQL habit)
      "2026-11-22T14:52Z",       // no seconds
      "2026-11-22T14:52:00.Z",   // '.' without digits
      "2026-11-22T14:52:00,5Z",  // comma fraction
      "2026-02-30T00:00:00Z",    // Feb 30
      "2025-02-29T00:00:00Z",    // not a leap year
      "1900-02-29T00:00:00Z",    // century, not a leap year
      "2026-04-31T00:00:00Z",    // April has 30 days
      "2026-13-01T00:00:00Z",
      "2026-00-10T00:00:00Z",
      "2026-11-00T00:00:00Z",
      "2026-11-22T24:00:00Z",  // hour 24
      "2026-11-22T23:60:00Z",
      "2026-11-22T14:52:00+0530",  // offset without colon
      "2026-11-22T14:52:00+05",
      "2026-11-22T14:52:00+24:00",
      "2026-11-22T14:52:00+05:60",
      "2026-11-22T14:52:00ZZ",
      "2026-11-22T14:52:00Z ",
      " 2026-11-22T14:52:00Z",
      "26-11-22T14:52:00Z",
      "2026-1-22T14:52:00Z",
      "2026-11-22T4:52:00Z",
      "+2026-11-22T14:52:00Z",
      "2026-11-22T14:52:00.123+",
      "2026/11/22T14:52:00Z",
      "２026-11-22T14:52:00Z",
  };
  for (const char* text : bad) {
    auto r = parse_rfc3339(text);
    CHECK_MESSAGE(!r.ok(), text);
    if (!r.ok()) CHECK(r.status().code() == ErrorCode::kInvalidArgument);
  }
  auto feb30 = parse_rfc3339("2026-02-30T00:00:00Z");
  CHECK(feb30.status().message().find("day 30") != std::string::npos);
}

TEST_CASE("clock: times the system clock cannot hold are out of range") {
  auto r = parse_rfc3339("0001-01-01T00:00:00Z");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::kOutOfRange);
  CHECK_FALSE(parse_rfc3339("9999-12-31T23:59:59Z").ok());
  CHECK(parse_rfc3339("2200-01-01T00:00:00Z").ok());
}

}  // namespace
}  // namespace civicbus
