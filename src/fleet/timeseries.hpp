// TimeSeriesStore: the fleet's readings, raw and rolled up at 5 minutes, 1 hour and 1 local
// day (count, sum, min, max, first and last with their times).
//
// Ingestion is built for hundreds of thousands of readings a second: append() only updates
// in-memory partial aggregates of the buckets a reading touches and queues the raw reading
// under its series; one background writer thread (with its own SQLite connection to the same
// WAL file, synchronous=NORMAL) writes them in large transactions.
//
// Raw readings are stored in chunks, as time-series databases do: per flush, the readings of
// one series become one row of fleet_raw_chunks (more when they span over an hour or exceed
// 4,096 readings) whose blob packs (time, value) pairs; see timeseries.cpp for the format.
// Chunks of one series may overlap in time (a late reading lands in a later chunk), so raw
// queries sort what they unpack. The 1-hour and 1-day rollups are upserts that merge a
// partial aggregate into the stored one, so a late reading touches only its own buckets and
// nothing is read back to maintain them. The 5-minute tier is computed from the raw chunks
// while they are kept and written as rows when they expire (a sparse series would otherwise
// cost one more row per reading; see timeseries.cpp). Device ids and metric names are
// interned as small integers (fleet_series).
//
// It does not validate readings (the façade checks them against device types first) and
// does not publish events.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "civicbus/core/status.hpp"
#include "civicbus/core/time_zone.hpp"
#include "civicbus/fleet/types.hpp"
#include "civicbus/storage/database.hpp"

namespace civicbus::fleet {

enum class Tier { kRaw = 0, k5m = 1, k1h = 2, k1d = 3, kAuto = 4 };
std::string_view tier_name(Tier t);  // "raw", "5m", "1h", "1d", "auto"
// Accepts those names (and "" for auto); anything else is kInvalidArgument listing them.
Result<Tier> parse_tier(std::string_view text);

struct TimeSeriesOptions {
  // IANA zone whose local midnight starts the daily buckets.
  std::string time_zone = "UTC";
  // How long each tier keeps data (expire() deletes older rows).
  std::chrono::milliseconds raw_retention = std::chrono::hours(24 * 30);
  std::chrono::milliseconds retention_5m = std::chrono::hours(24 * 90);
  std::chrono::milliseconds retention_1h = std::chrono::hours(24 * 730);
  std::chrono::milliseconds retention_1d = std::chrono::hours(24 * 3650);
  // The writer commits at least this often while readings arrive…
  std::chrono::milliseconds flush_interval{250};
  // …and sooner when this many raw readings are queued.
  std::size_t batch_size = 50'000;
  // append() waits for the writer when this many raw readings are queued (back-pressure
  // instead of unbounded memory).
  std::size_t max_pending = 2'000'000;
  // Tier::kAuto picks the finest tier giving at most this many points.
  std::size_t auto_max_points = 1000;
};

struct SeriesQueryResult {
  Tier tier = Tier::kRaw;           // the tier used (never kAuto)
  std::vector<SeriesPoint> points;  // ascending by time
};

struct LatestValue {
  std::string metric;
  double value = 0;
  TimeMs time = 0;
};

struct ExpireCounts {
  std::int64_t raw = 0;                 // raw readings deleted (whole chunks, see expire())
  std::int64_t m5 = 0, h1 = 0, d1 = 0;  // rollup buckets deleted per tier
};

class TimeSeriesStore {
 public:
  // Creates the tables (component "fleet_timeseries") in `db` and starts the writer. `db`
  // must outlive the store. For a SQLite file the writer opens its own connection to it; for
  // ":memory:" it shares `db`.
  static Result<std::unique_ptr<TimeSeriesStore>> open(storage::Database& db,
                                                       TimeSeriesOptions options);
  ~TimeSeriesStore();  // close()
  TimeSeriesStore(const TimeSeriesStore&) = delete;
  TimeSeriesStore& operator=(const TimeSeriesStore&) = delete;

  // Records readings already validated by the caller. Cheap (about a microsecond each); may
  // wait when max_pending readings are queued. After close() readings are dropped.
  void append(std::span<const Reading> readings);
  // Returns once everything appended before the call is committed, with the first write
  // error since the previous flush (the failed batch is dropped).
  Status flush();
  // Flushes and stops the writer. Idempotent.
  Status close();

  // Points of one series with time in [from, to) (rollups: buckets overlapping it), readings
  // still queued included. An unknown series gives no points.
  Result<SeriesQueryResult> query(std::string_view device_id, std::string_view metric, TimeMs from,
                                  TimeMs to, Tier tier);
  // The latest reading of each metric of a device (by reading time), from memory; metrics
  // in name order.
  std::vector<LatestValue> latest(std::string_view device_id) const;
  // Deletes rows older than each tier's retention before `now`, first writing the 5-minute
  // buckets of the raw chunks it deletes (those still within retention_5m). Raw readings go by
  // whole chunks: a chunk is deleted once its newest reading is older than raw_retention, so a
  // chunk straddling the limit keeps its older readings until all of it is old (a chunk
  // spans at most an hour, so raw data outlives its retention by less than that).
  Result<ExpireCounts> expire(TimeMs now);

  const TimeZone& time_zone() const { return zone_; }
  // Bucket bounds [start, end) of `tier` (not raw or auto) around `t`.
  std::pair<TimeMs, TimeMs> bucket_of(Tier tier, TimeMs t) const;

  struct Series;  // interned (device, metric) with its caches; defined in timeseries.cpp
  struct Pending;

 private:
  TimeSeriesStore(storage::Database& db, std::unique_ptr<storage::Database> writer_db,
                  TimeSeriesOptions options, TimeZone zone);
  Status load();
  void run_writer();
  Status write(Pending& batch);
  Series& intern(std::string_view device_id, std::string_view metric);
  // `device_series` is the list of `device_id`'s series in the index.
  Series& intern_metric(std::vector<Series*>& device_series, std::string_view device_id,
                        std::string_view metric);
  const Series* find_series(std::string_view device_id, std::string_view metric) const;

  storage::Database& db_;
  std::unique_ptr<storage::Database> own_writer_db_;
  storage::Database& writer_db_;
  const TimeSeriesOptions options_;
  const TimeZone zone_;

  mutable std::mutex mu_;
  std::condition_variable writer_cv_;  // wakes the writer
  std::condition_variable done_cv_;    // wakes flush() and a waiting append()
  std::unique_ptr<Pending> pending_;   // filled by append()
  std::unique_ptr<Pending> spare_;     // the writer's, swapped with pending_
  struct SeriesIndex;
  std::unique_ptr<SeriesIndex> index_;
  std::int64_t next_series_id_ = 1;
  std::uint64_t generation_ = 1;  // bumps when pending_ is swapped out
  std::uint64_t appended_ = 0;    // batches appended
  std::uint64_t written_ = 0;     // batches written (or failed)
  bool flush_requested_ = false;
  bool stopping_ = false;
  bool closed_ = false;
  Status write_error_;
  std::thread writer_;
};

}  // namespace civicbus::fleet
