// `civicbus cron next`: fire times printed in the schedule's zone, and its
// errors.
#include <doctest/doctest.h>

#include <string>

#include "cli/cli_support.hpp"

namespace civicbus {
namespace {

using cli_testing::cli;
using cli_testing::contains;

TEST_CASE("cli: cron next prints fire times in the zone, across spring forward") {
  auto r = cli({"cron", "next", "30 2 * * *", "--tz", "America/Toronto", "--count", "3", "--after",
                "2026-03-07T12:00:00Z"});
  CHECK(r.exit_code == 0);
  CHECK(r.output ==
        "2026-03-08T03:00:00-04:00\n"
        "2026-03-09T02:30:00-04:00\n"
        "2026-03-10T02:30:00-04:00\n");
}

TEST_CASE("cli: cron next with six fields, a macro and the default zone") {
  auto six = cli({"cron", "next", "0 30 1 * * *", "--tz=America/Toronto", "--count=2",
                  "--after=2026-10-31T12:00:00Z"});
  CHECK(six.exit_code == 0);
  CHECK(six.output == "2026-11-01T01:30:00-04:00\n2026-11-02T01:30:00-05:00\n");

  auto daily = cli({"cron", "next", "@daily", "--after", "2026-05-14T10:30:00+02:00"});
  CHECK(daily.exit_code == 0);
  CHECK(daily.output ==
        "2026-05-15T00:00:00Z\n2026-05-16T00:00:00Z\n2026-05-17T00:00:00Z\n"
        "2026-05-18T00:00:00Z\n2026-05-19T00:00:00Z\n");

  auto now = cli({"cron", "next", "* * * * *", "--count", "1"});  // after the real clock
  CHECK(now.exit_code == 0);
  CHECK(now.output.size() == std::string("2026-05-15T00:00:00Z\n").size());
}

TEST_CASE("cli: cron next errors") {
  auto bad = cli({"cron", "next", "0 25 * * *"});
  CHECK(bad.exit_code == 1);
  CHECK(contains(bad.output, "cron field 'hour' value 25 is out of range 0-23 in '0 25 * * *'"));

  auto zone = cli({"cron", "next", "@daily", "--tz", "Mars/Olympus_Mons"});
  CHECK(zone.exit_code == 1);
  CHECK(contains(zone.output, "Mars/Olympus_Mons"));

  auto never = cli({"cron", "next", "0 0 30 2 *", "--after", "2026-01-01T00:00:00Z"});
  CHECK(never.exit_code == 1);
  CHECK(contains(never.output, "'0 0 30 2 *' does not fire within 28 years"));

  auto missing = cli({"cron", "next"});
  CHECK(missing.exit_code == 2);
  CHECK(contains(missing.output, "needs a cron expression"));

  auto count = cli({"cron", "next", "@hourly", "--count", "0"});
  CHECK(count.exit_code == 2);
  CHECK(contains(count.output, "--count must be a whole number between 1 and 1000; got '0'"));

  auto after = cli({"cron", "next", "@hourly", "--after", "yesterday"});
  CHECK(after.exit_code == 2);
  CHECK(contains(after.output, "--after"));

  auto help = cli({"help", "cron", "next"});
  CHECK(help.exit_code == 0);
  CHECK(contains(help.output, "--tz ZONE"));
}

}  // namespace
}  // namespace civicbus
