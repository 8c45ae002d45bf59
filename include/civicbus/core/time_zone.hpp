// TimeZone: IANA time zones read from the system's TZif files (RFC 8536), because GCC 12's
// libstdc++ has no std::chrono::tzdb. Used where civicbus cuts time at local boundaries:
// daily rollups at local midnight, cron schedules.
//
// A TimeZone is an immutable value, cheap to copy (the parsed data is shared) and safe to use
// from any thread. Instants are seconds (or milliseconds where named) since the Unix epoch;
// "local seconds" are the same count on the zone's wall clock (UTC seconds + offset), so
// local midnight is a multiple of 86,400. Leap seconds are ignored (as POSIX time does).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus {

// Which instant to take for a local time that the clock skipped or showed twice.
enum class Disambiguation {
  kEarlier,  // repeated: the first occurrence; skipped: the instant before the gap's shift
  kLater,    // repeated: the second occurrence; skipped: the instant after the shift
};

enum class LocalTimeKind {
  kUnique,    // the local time happened exactly once
  kSkipped,   // the clock jumped over it (spring forward)
  kRepeated,  // the clock showed it twice (fall back)
};

struct LocalTimeResolution {
  std::int64_t utc_seconds = 0;
  LocalTimeKind kind = LocalTimeKind::kUnique;
};

// A broken-down date and time (proleptic Gregorian), without a zone.
struct CivilTime {
  int year = 1970;
  int month = 1;    // 1..12
  int day = 1;      // 1..31
  int hour = 0;     // 0..23
  int minute = 0;   // 0..59
  int second = 0;   // 0..59
  int weekday = 4;  // 0 = Sunday .. 6 = Saturday (filled by civil_from_seconds)
};
CIVICBUS_EXPORT CivilTime civil_from_seconds(std::int64_t seconds);
CIVICBUS_EXPORT std::int64_t seconds_from_civil(const CivilTime& t);  // ignores weekday

class CIVICBUS_EXPORT TimeZone {
 public:
  // Loads "America/Toronto" from /usr/share/zoneinfo (the Debian package tzdata). Names with
  // "..", absolute paths and characters outside [A-Za-z0-9/_+-.] are refused (kInvalidArgument);
  // a missing file is kNotFound and a malformed one kDataLoss, both naming the zone and file.
  // "UTC" (and "Etc/UTC") work without the file.
  static Result<TimeZone> load(std::string_view name);
  static Result<TimeZone> load(std::string_view name, std::string_view zoneinfo_dir);
  // Parses TZif bytes directly (tests, embedded zones); `name` is what name() reports.
  static Result<TimeZone> from_tzif(std::string_view name, std::string_view tzif_bytes);
  static TimeZone utc();

  const std::string& name() const;

  // Seconds to add to UTC to get local time at `utc_seconds` (Toronto in winter: -18,000).
  int offset_at(std::int64_t utc_seconds) const;
  bool is_dst(std::int64_t utc_seconds) const;
  std::string abbreviation(std::int64_t utc_seconds) const;  // "EST", "EDT", "-03"

  std::int64_t to_local(std::int64_t utc_seconds) const {
    return utc_seconds + offset_at(utc_seconds);
  }
  // The instant showing `local_seconds` on the zone's clock, and whether the clock skipped or
  // repeated it. A skipped time resolves (kEarlier) with the offset after the gap or (kLater)
  // with the offset before it, so 02:30 on a spring-forward day is 01:30 or 03:30 in wall time.
  LocalTimeResolution from_local(std::int64_t local_seconds,
                                 Disambiguation d = Disambiguation::kEarlier) const;

  // The first instant (ms) of the local day containing `utc_ms`: local midnight, or the end
  // of the gap when midnight itself was skipped. A day may last 23 or 25 hours.
  std::int64_t start_of_local_day(std::int64_t utc_ms) const;
  // The first instant (ms) of the next local day.
  std::int64_t next_local_midnight(std::int64_t utc_ms) const;

  struct Data;  // parsed transitions and footer rule; defined in time_zone.cpp

 private:
  explicit TimeZone(std::shared_ptr<const Data> data) : data_(std::move(data)) {}
  std::int64_t start_of_local_date(std::int64_t local_day_start) const;

  std::shared_ptr<const Data> data_;
};

}  // namespace civicbus
