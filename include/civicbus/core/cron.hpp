// CronSchedule: a parsed cron expression evaluated on the wall clock of one IANA time zone, so
// connectors can poll "at 02:30 every night in Toronto" without a cron daemon. Syntax and the
// daylight-saving rules are in docs/cron.md.
//
// A CronSchedule is an immutable value: cheap to copy (the zone's data is shared), safe to use
// from any thread, and it never reads a clock (callers pass the instant to start from, so
// schedulers are tested with a ManualClock).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/core/time_zone.hpp"
#include "civicbus/export.hpp"

namespace civicbus {

// One cron schedule: 5 fields (minute hour day-of-month month day-of-week) or 6 (second
// first, as Quartz and Spring write them), or a macro (@daily, @hourly...). Does not run
// anything: it only answers "when does it fire next".
class CIVICBUS_EXPORT CronSchedule {
 public:
  // Parses `expr` to be evaluated in `zone`. Errors are kInvalidArgument and name the field
  // and the token: "cron field 'hour' value 25 is out of range 0-23 in '0 25 * * *'".
  static Result<CronSchedule> parse(std::string_view expr, const TimeZone& zone);
  // As above, loading the zone by IANA name ("America/Toronto", "UTC"); a zone that does not
  // load is reported as TimeZone::load reports it.
  static Result<CronSchedule> parse(std::string_view expr, std::string_view zone_name);
  // As above, in UTC.
  static Result<CronSchedule> parse(std::string_view expr) { return parse(expr, TimeZone::utc()); }

  // The first fire time strictly after `t`, in whole seconds. nullopt when the schedule does
  // not fire within kHorizonYears of `t` ("0 0 30 2 *" never does).
  //
  // Daylight saving: a matching wall time the clock skips (02:30 on a spring-forward day)
  // fires once, at the first instant after the gap (03:00 EDT); several skipped matches
  // collapse into that one firing. A wall time the clock shows twice fires once, on its
  // first occurrence; that holds for every field, so "*/15 * * * *" does not fire during the
  // repeated hour's second pass.
  std::optional<SystemTime> next_after(SystemTime t) const;

  // The expression as given (surrounding blanks removed).
  std::string_view expression() const { return expression_; }
  const TimeZone& zone() const { return zone_; }

  // 28 years: the weekday calendar repeats every 28 years between century years, so a
  // date-and-weekday pattern that can happen (the fifth Friday of February) does so within it.
  static constexpr int kHorizonYears = 28;

 private:
  // The parsed fields, as bit sets over their values.
  struct Fields {
    std::uint64_t seconds = 0;                      // bits 0..59
    std::uint64_t minutes = 0;                      // bits 0..59
    std::uint32_t hours = 0;                        // bits 0..23
    std::uint32_t days = 0;                         // bits 1..31
    std::uint32_t months = 0;                       // bits 1..12
    std::uint32_t weekdays = 0;                     // bits 0..6, 0 = Sunday
    bool any_day = true;                            // day-of-month is '*' or '?'
    bool any_weekday = true;                        // day-of-week is '*' or '?'
    std::uint32_t days_before_last = 0;             // bit n: "L-n" (L is L-0)
    bool last_weekday_of_month = false;             // "LW"
    std::uint32_t nearest_weekday = 0;              // bit n: "nW"
    std::uint32_t last_of_weekday = 0;              // bit d: "dL" (the last Friday is 5L)
    std::array<std::uint32_t, 7> nth_of_weekday{};  // [d] bit k: "d#k"
  };

  CronSchedule(std::string expression, TimeZone zone, Fields fields)
      : expression_(std::move(expression)), zone_(std::move(zone)), fields_(fields) {}

  bool day_matches(std::int64_t year, unsigned month, unsigned day, int weekday) const;
  // The first local time (seconds on the zone's clock) at or after `local` that matches.
  std::optional<std::int64_t> next_local_match(std::int64_t local) const;

  std::string expression_;
  TimeZone zone_;
  Fields fields_;
};

}  // namespace civicbus
