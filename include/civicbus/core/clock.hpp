// Clock: the only way civicbus code reads the time, so that rate limits, retries, retention,
// cron and inactivity checks are tested with a ManualClock instead of sleeping.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus {

using SystemTime = std::chrono::system_clock::time_point;
using SteadyTime = std::chrono::steady_clock::time_point;

class CIVICBUS_EXPORT Clock {
 public:
  virtual ~Clock() = default;
  virtual SystemTime now() const = 0;         // wall time (event times, retention)
  virtual SteadyTime steady_now() const = 0;  // monotonic time (timeouts, latency)
};

// The real clocks. Thread-safe; a process may share one instance.
class CIVICBUS_EXPORT SystemClock final : public Clock {
 public:
  SystemTime now() const override { return std::chrono::system_clock::now(); }
  SteadyTime steady_now() const override { return std::chrono::steady_clock::now(); }
};

// A clock that moves only when told to. Thread-safe. Both times advance together.
class CIVICBUS_EXPORT ManualClock final : public Clock {
 public:
  explicit ManualClock(SystemTime start = SystemTime{std::chrono::seconds{1'700'000'000}})
      : wall_us_(to_us(start)) {}
  SystemTime now() const override;
  SteadyTime steady_now() const override;
  void advance(std::chrono::microseconds by) {
    wall_us_ += by.count();
    steady_us_ += by.count();
  }
  void set(SystemTime t) { wall_us_ = to_us(t); }

 private:
  static std::int64_t to_us(SystemTime t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  }
  std::atomic<std::int64_t> wall_us_;
  std::atomic<std::int64_t> steady_us_{0};
};

// Microseconds since the Unix epoch, the unit civicbus stores times in.
CIVICBUS_EXPORT std::int64_t to_unix_micros(SystemTime t);
CIVICBUS_EXPORT SystemTime from_unix_micros(std::int64_t us);

// RFC 3339 with microseconds, UTC: "2026-11-22T14:52:00.123456Z".
CIVICBUS_EXPORT std::string format_rfc3339(SystemTime t);
// Accepts any RFC 3339 date-time (offsets, fractional seconds of any length).
CIVICBUS_EXPORT Result<SystemTime> parse_rfc3339(std::string_view text);

// IMF-fixdate, the preferred HTTP-date (RFC 9110 §5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT".
// Sub-second parts are dropped (rounded down).
CIVICBUS_EXPORT std::string format_http_date(SystemTime t);
// Parses an HTTP-date in any of the three forms recipients must accept: IMF-fixdate, obsolete
// RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime ("Sun Nov  6 08:49:37 1994"). Names
// are case-sensitive; the day name is checked for syntax only (RFC 8594's own example has the
// wrong one). An RFC 850 two-digit year is 19yy for yy >= 70 and 20yy below (a fixed pivot,
// not the "50 years in the future" rule, so parsing does not depend on the clock).
CIVICBUS_EXPORT Result<SystemTime> parse_http_date(std::string_view text);

}  // namespace civicbus
