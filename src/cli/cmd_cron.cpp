// `civicbus cron next`: the next fire times of a cron expression in a time zone, to check a
// connector's schedule (and what daylight saving does to it) before deploying it. Opens no
// node.
#include <fmt/format.h>

#include <charconv>
#include <chrono>

#include "civicbus/core/cron.hpp"
#include "cli/commands.hpp"

namespace civicbus::cli {
namespace {

constexpr std::int64_t kMaxCount = 1000;

// "2026-03-08T03:00:00-04:00": the wall time `zone` shows at `t`, with its offset.
std::string local_iso8601(const TimeZone& zone, SystemTime t) {
  const std::int64_t s = std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count();
  const int offset = zone.offset_at(s);
  const CivilTime c = civil_from_seconds(s + offset);
  const int magnitude = offset < 0 ? -offset : offset;
  const std::string zone_part = offset == 0 ? std::string("Z")
                                            : fmt::format("{}{:02}:{:02}", offset < 0 ? '-' : '+',
                                                          magnitude / 3600, magnitude / 60 % 60);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}", c.year, c.month, c.day, c.hour,
                     c.minute, c.second, zone_part);
}

}  // namespace

int run_cron_next(const Args& args) {
  if (args.positionals().empty()) {
    return usage_error("cron next",
                       "needs a cron expression, quoted: civicbus cron next "
                       "\"*/15 * * * *\"");
  }
  const std::string& expr = args.positionals()[0];

  std::int64_t count = 5;
  if (auto text = args.value("count")) {
    auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), count);
    if (text->empty() || ec != std::errc() || ptr != text->data() + text->size() || count < 1 ||
        count > kMaxCount) {
      return usage_error("cron next", fmt::format("--count must be a whole number between 1 "
                                                  "and {}; got '{}'",
                                                  kMaxCount, *text));
    }
  }
  SystemTime after = SystemClock().now();
  if (auto text = args.value("after")) {
    auto t = parse_rfc3339(*text);
    if (!t.ok()) {
      return usage_error("cron next", fmt::format("--after: {}", t.status().message()));
    }
    after = *t;
  }

  auto zone = TimeZone::load(args.value_or("tz", "UTC"));
  if (!zone.ok()) return fail(zone.status());
  auto schedule = CronSchedule::parse(expr, *zone);
  if (!schedule.ok()) return fail(schedule.status());

  std::int64_t printed = 0;
  for (SystemTime t = after; printed < count; ++printed) {
    const auto next = schedule->next_after(t);
    if (!next) break;
    fmt::print("{}\n", local_iso8601(*zone, *next));
    t = *next;
  }
  if (printed == 0) {
    return fail(fmt::format("'{}' does not fire within {} years after {} in {}",
                            schedule->expression(), CronSchedule::kHorizonYears,
                            local_iso8601(*zone, after), zone->name()));
  }
  if (printed < count) {
    std::fprintf(stderr, "civicbus: '%s' does not fire again within %d years\n",
                 std::string(schedule->expression()).c_str(), CronSchedule::kHorizonYears);
  }
  return kExitOk;
}

}  // namespace civicbus::cli
