// Fuzz target: cron schedules (include/civicbus/core/cron.hpp), which the connectors' pollers
// are configured with.
//
// The input is one expression ("*/15 9-17 * * MON-FRI", "0 0 12 ? * 5#3", "@daily").
// Nothing may crash or hang; an error must be kInvalidArgument and say "cron". A schedule that
// parses is evaluated in UTC and in America/Toronto from instants next to both 2026
// transitions and a leap day: every fire time is after the instant asked about, asking from
// any instant between two fire times gives the later one (none skipped), the expression it
// reports parses to the same schedule, lower-casing it changes nothing, and prefixing a
// five-field expression with a seconds field of 0 changes nothing.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "civicbus/core/cron.hpp"
#include "core/ascii.hpp"

namespace {

using civicbus::CronSchedule;
using civicbus::SystemTime;
using std::chrono::seconds;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "cron fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

const civicbus::TimeZone& toronto() {
  static const civicbus::TimeZone zone = [] {
    auto z = civicbus::TimeZone::load("America/Toronto");
    return z.ok() ? *z : civicbus::TimeZone::utc();
  }();
  return zone;
}

constexpr std::int64_t kStarts[] = {
    1'772'951'400,  // 2026-03-08T06:30:00Z, before Toronto springs forward
    1'793'511'000,  // 2026-11-01T05:30:00Z, in Toronto's first pass of 01:00-02:00 EST/EDT
    1'835'308'800,  // 2028-02-28T00:00:00Z, the day before a leap day
};

// Follows up to 8 fire times of `c` from each start; `same`, when given, must agree.
void check_chain(const CronSchedule& c, const CronSchedule* same, std::string_view expr) {
  for (std::int64_t start : kStarts) {
    SystemTime t{seconds{start}};
    for (int i = 0; i < 8; ++i) {
      const std::optional<SystemTime> next = c.next_after(t);
      if (same != nullptr && same->next_after(t) != next) {
        fail("an equivalent expression fires at another time", expr);
      }
      if (!next) break;
      if (*next <= t) fail("a fire time not after the instant asked about", expr);
      // Any instant in between leads to the same fire time.
      const SystemTime mid = t + (*next - t) / 2;
      if (c.next_after(mid) != next) fail("an instant between two fire times skips one", expr);
      if (c.next_after(*next - seconds{1}) != next) fail("the second before a fire time", expr);
      t = *next;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 512) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const civicbus::TimeZone zones[] = {toronto(), civicbus::TimeZone::utc()};
  for (const civicbus::TimeZone& z : zones) {
    auto parsed = CronSchedule::parse(text, z);
    if (!parsed.ok()) {
      if (parsed.status().code() != civicbus::ErrorCode::kInvalidArgument ||
          parsed.status().message().find("cron") == std::string::npos) {
        fail("an error that is not an invalid cron expression", parsed.status().to_string());
      }
      return 0;
    }
    const CronSchedule& c = *parsed;
    if (c.expression().empty() || text.find(c.expression()) == std::string_view::npos) {
      fail("expression() is not the input's text", text);
    }
    auto again = CronSchedule::parse(c.expression(), z);
    if (!again.ok()) fail("expression() does not parse again", again.status().to_string());
    check_chain(c, &*again, text);

    auto lower = CronSchedule::parse(civicbus::ascii_lower(text), z);
    if (!lower.ok()) fail("the lower-case expression is refused", lower.status().to_string());
    check_chain(*lower, &c, text);

    if (!c.expression().starts_with('@')) {
      auto with_seconds = CronSchedule::parse("0 " + std::string(c.expression()), z);
      if (with_seconds.ok()) check_chain(*with_seconds, &c, text);
    }
  }
  return 0;
}
