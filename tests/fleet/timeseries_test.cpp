#include "fleet/timeseries.hpp"

#include <doctest/doctest.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <set>
#include <tuple>
#include <utility>

#include "support/test_support.hpp"

namespace civicbus::fleet {
namespace {

constexpr TimeMs kMinute = 60'000;
constexpr TimeMs kHourMs = 3'600'000;
constexpr TimeMs kDayMs = 86'400'000;

TimeMs utc_ms(int y, int mo, int d, int h = 0, int mi = 0) {
  return seconds_from_civil(CivilTime{y, mo, d, h, mi, 0, 0}) * 1000;
}

std::unique_ptr<storage::Database> open_db(const testing::TempDir& dir) {
  storage::SqliteOptions o;
  o.path = dir.file("fleet.db");
  auto db = storage::open_sqlite(o);
  REQUIRE_MESSAGE(db.ok(), db.status().to_string());
  return std::move(db).value();
}

std::unique_ptr<TimeSeriesStore> open_store(storage::Database& db, TimeSeriesOptions o = {}) {
  auto s = TimeSeriesStore::open(db, std::move(o));
  REQUIRE_MESSAGE(s.ok(), s.status().to_string());
  return std::move(s).value();
}

Reading reading(std::string device, std::string metric, double value, TimeMs t) {
  Reading r;
  r.device_id = std::move(device);
  r.metric = std::move(metric);
  r.value = value;
  r.time = t;
  return r;
}

SeriesQueryResult must_query(TimeSeriesStore& s, std::string_view device, std::string_view metric,
                             TimeMs from, TimeMs to, Tier tier) {
  auto r = s.query(device, metric, from, to, tier);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

// The expected aggregate, computed from scratch in arrival order with the store's tie rules
// (first: earliest time, earliest arrival; last: latest time, latest arrival).
struct Expected {
  std::int64_t count = 0;
  double sum = 0, min = 0, max = 0, first = 0, last = 0;
  TimeMs first_time = 0, last_time = 0;
};

TEST_CASE("timeseries: parse_tier names the accepted values") {
  CHECK(*parse_tier("raw") == Tier::kRaw);
  CHECK(*parse_tier("5m") == Tier::k5m);
  CHECK(*parse_tier("1h") == Tier::k1h);
  CHECK(*parse_tier("1d") == Tier::k1d);
  CHECK(*parse_tier("auto") == Tier::kAuto);
  CHECK(*parse_tier("") == Tier::kAuto);
  auto bad = parse_tier("15m");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == ErrorCode::kInvalidArgument);
  CHECK(bad.status().message().find("'15m'") != std::string::npos);
  CHECK(bad.status().message().find("raw, 5m, 1h, 1d or auto") != std::string::npos);
}

TEST_CASE("timeseries: rollups match a brute-force computation, late readings included") {
  testing::TempDir dir;
  auto db = open_db(dir);
  TimeSeriesOptions o;
  o.time_zone = "America/Toronto";
  o.batch_size = 500;  // many transactions, so stored buckets get merged into
  o.flush_interval = std::chrono::milliseconds(5);
  auto store = open_store(*db, o);

  std::mt19937_64 rng(7);
  const TimeMs t0 = utc_ms(2026, 3, 6);
  const TimeMs span = 4 * kDayMs;  // crosses the 2026-03-08 change
  std::uniform_int_distribution<TimeMs> when(t0, t0 + span - 1);
  std::uniform_int_distribution<int> value(-1000, 1000);
  const std::vector<std::string> devices = {"wm-1", "wm-2", "ps-9"};
  const std::vector<std::string> metrics = {"flow_rate", "pressure"};

  std::vector<Reading> all;
  // Mostly ascending time, with a share of late readings for old buckets.
  TimeMs clock = t0;
  for (int i = 0; i < 12'000; ++i) {
    clock += std::uniform_int_distribution<TimeMs>(0, 60'000)(rng);
    const TimeMs t = (rng() % 5 == 0) ? when(rng) : std::min(clock, t0 + span - 1);
    all.push_back(
        reading(devices[rng() % devices.size()], metrics[rng() % metrics.size()], value(rng), t));
  }
  std::size_t i = 0;
  while (i < all.size()) {
    const std::size_t n = std::min<std::size_t>(all.size() - i, 1 + rng() % 300);
    store->append(std::span<const Reading>(all.data() + i, n));
    i += n;
    if (rng() % 10 == 0) REQUIRE(store->flush().ok());
  }

  for (Tier tier : {Tier::k5m, Tier::k1h, Tier::k1d}) {
    for (const auto& device : devices) {
      for (const auto& metric : metrics) {
        std::map<TimeMs, Expected> expected;
        for (const Reading& r : all) {
          if (r.device_id != device || r.metric != metric) continue;
          Expected& e = expected[store->bucket_of(tier, r.time).first];
          if (e.count == 0) {
            e = Expected{1, r.value, r.value, r.value, r.value, r.value, r.time, r.time};
            continue;
          }
          ++e.count;
          e.sum += r.value;
          e.min = std::min(e.min, r.value);
          e.max = std::max(e.max, r.value);
          if (r.time < e.first_time) std::tie(e.first, e.first_time) = std::tie(r.value, r.time);
          if (r.time >= e.last_time) std::tie(e.last, e.last_time) = std::tie(r.value, r.time);
        }
        const auto got = must_query(*store, device, metric, t0 - kDayMs, t0 + span + kDayMs, tier);
        CHECK(got.tier == tier);
        REQUIRE(got.points.size() == expected.size());
        std::size_t k = 0;
        for (const auto& [bucket, e] : expected) {
          const SeriesPoint& p = got.points[k++];
          INFO(tier_name(tier), " ", device, " ", metric, " bucket ", bucket);
          CHECK(p.time == bucket);
          CHECK(p.count == e.count);
          CHECK(p.sum == e.sum);  // integer values: exact in any order
          CHECK(p.min == e.min);
          CHECK(p.max == e.max);
          CHECK(p.avg == doctest::Approx(e.sum / static_cast<double>(e.count)));
          CHECK(p.first == e.first);
          CHECK(p.first_time == e.first_time);
          CHECK(p.last == e.last);
          CHECK(p.last_time == e.last_time);
        }
      }
    }
  }
  // Raw readings are all there, in time order.
  std::size_t raw_total = 0;
  for (const auto& device : devices) {
    for (const auto& metric : metrics) {
      const auto got = must_query(*store, device, metric, t0, t0 + span, Tier::kRaw);
      CHECK(std::is_sorted(
          got.points.begin(), got.points.end(),
          [](const SeriesPoint& a, const SeriesPoint& b) { return a.time < b.time; }));
      raw_total += got.points.size();
    }
  }
  CHECK(raw_total == all.size());
  CHECK(store->close().ok());
}

TEST_CASE("timeseries: daily buckets start at local midnight, a DST day is one 23 hour bucket") {
  testing::TempDir dir;
  auto db = open_db(dir);
  TimeSeriesOptions o;
  o.time_zone = "America/Toronto";
  auto store = open_store(*db, o);
  CHECK(store->time_zone().name() == "America/Toronto");
  std::vector<Reading> rs;
  // Every 30 minutes from 2026-03-07 00:00 to 2026-03-10 00:00 local.
  for (TimeMs t = utc_ms(2026, 3, 7, 5); t < utc_ms(2026, 3, 10, 4); t += 30 * kMinute) {
    rs.push_back(reading("wm-1", "flow_rate", 1.0, t));
  }
  store->append(rs);
  const auto got = must_query(*store, "wm-1", "flow_rate", utc_ms(2026, 3, 7, 5),
                              utc_ms(2026, 3, 10, 4), Tier::k1d);
  REQUIRE(got.points.size() == 3);
  CHECK(got.points[0].time == utc_ms(2026, 3, 7, 5));  // EST midnight
  CHECK(got.points[0].count == 48);
  CHECK(got.points[1].time == utc_ms(2026, 3, 8, 5));
  CHECK(got.points[1].count == 46);                    // 23 hours
  CHECK(got.points[2].time == utc_ms(2026, 3, 9, 4));  // EDT midnight
  CHECK(got.points[2].count == 48);
  CHECK(got.points[1].last_time == utc_ms(2026, 3, 9, 3, 30));
  // Hourly buckets stay on UTC hours.
  const auto hours = must_query(*store, "wm-1", "flow_rate", utc_ms(2026, 3, 8, 5),
                                utc_ms(2026, 3, 9, 4), Tier::k1h);
  CHECK(hours.points.size() == 23);
}

TEST_CASE("timeseries: auto picks the finest tier within the point budget") {
  testing::TempDir dir;
  auto db = open_db(dir);
  auto store = open_store(*db);
  const TimeMs t0 = utc_ms(2026, 1, 1);
  std::vector<Reading> rs;
  for (int i = 0; i < 3000; ++i) rs.push_back(reading("aq-1", "pm2_5", i % 60, t0 + i * kMinute));
  store->append(rs);
  auto pick = [&](TimeMs from, TimeMs to) {
    return must_query(*store, "aq-1", "pm2_5", from, to, Tier::kAuto);
  };
  const auto hour = pick(t0, t0 + kHourMs);
  CHECK(hour.tier == Tier::kRaw);
  CHECK(hour.points.size() == 60);
  const auto day = pick(t0, t0 + kDayMs);  // 1,440 readings: too many raw, 288 five-minute buckets
  CHECK(day.tier == Tier::k5m);
  CHECK(day.points.size() == 288);
  CHECK(day.points[0].count == 5);
  CHECK(pick(t0, t0 + 10 * kDayMs).tier == Tier::k1h);   // 2,880 five-minute, 240 hourly
  CHECK(pick(t0, t0 + 100 * kDayMs).tier == Tier::k1d);  // 2,400 hourly
  // An empty range of a busy series, and an unknown series, are raw.
  CHECK(pick(t0 + 30 * kDayMs, t0 + 100 * kDayMs).tier == Tier::kRaw);
  auto unknown = store->query("nope", "pm2_5", t0, t0 + 100 * kDayMs, Tier::kAuto);
  REQUIRE(unknown.ok());
  CHECK(unknown->points.empty());
  auto backwards = store->query("aq-1", "pm2_5", t0 + 1, t0, Tier::kRaw);
  CHECK(backwards.status().code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("timeseries: expire deletes what is older than each tier's retention") {
  testing::TempDir dir;
  auto db = open_db(dir);
  TimeSeriesOptions o;
  o.raw_retention = std::chrono::hours(24);
  o.retention_5m = std::chrono::hours(48);
  o.retention_1h = std::chrono::hours(24 * 10);
  o.retention_1d = std::chrono::hours(24 * 30);
  auto store = open_store(*db, o);
  const TimeMs now = utc_ms(2026, 6, 1);
  std::vector<Reading> rs;
  // One reading at the middle of each of the last 40 days, for two series.
  for (int d = 1; d <= 40; ++d) {
    rs.push_back(reading("rg-1", "level", d, now - d * kDayMs + kHourMs / 2));
    rs.push_back(reading("rg-1", "rain", d, now - d * kDayMs + kHourMs / 2));
  }
  store->append(rs);
  REQUIRE(store->flush().ok());
  auto counts = store->expire(now);
  REQUIRE_MESSAGE(counts.ok(), counts.status().to_string());
  // Kept: raw 1 day (d = 1 is 23.5 h old), 5m 2 days, 1h 10 days, 1d 30 days; per series.
  CHECK(counts->raw == 2 * 39);
  CHECK(counts->m5 == 2 * 38);
  CHECK(counts->h1 == 2 * 30);
  CHECK(counts->d1 == 2 * 10);
  const TimeMs all_from = now - 100 * kDayMs;
  CHECK(must_query(*store, "rg-1", "level", all_from, now, Tier::kRaw).points.size() == 1);
  CHECK(must_query(*store, "rg-1", "level", all_from, now, Tier::k5m).points.size() == 2);
  CHECK(must_query(*store, "rg-1", "level", all_from, now, Tier::k1h).points.size() == 10);
  CHECK(must_query(*store, "rg-1", "level", all_from, now, Tier::k1d).points.size() == 30);
  auto again = store->expire(now);
  REQUIRE(again.ok());
  CHECK(again->raw + again->m5 + again->h1 + again->d1 == 0);
}

TEST_CASE("timeseries: 5-minute buckets survive their raw chunks' expiry, counted once") {
  testing::TempDir dir;
  auto db = open_db(dir);
  TimeSeriesOptions o;
  o.raw_retention = std::chrono::hours(24);
  o.retention_5m = std::chrono::hours(24 * 10);
  auto store = open_store(*db, o);
  const TimeMs now = utc_ms(2026, 6, 1) + 150'000;  // the raw cutoff splits a 5-minute bucket
  std::mt19937_64 rng(7);
  std::vector<Reading> all;
  // Two days of readings every 40 s give or take, flushed now and then, so chunks end on
  // both sides of the cutoff and some 5-minute buckets straddle it.
  for (TimeMs t = now - 2 * kDayMs; t < now; t += 20'000 + static_cast<TimeMs>(rng() % 40'000)) {
    all.push_back(reading("lv-1", "level", static_cast<double>(rng() % 1000), t));
  }
  for (std::size_t i = 0; i < all.size(); i += 37) {
    store->append(
        std::span<const Reading>(all.data() + i, std::min<std::size_t>(37, all.size() - i)));
    REQUIRE(store->flush().ok());
  }
  auto check_5m = [&](const std::vector<Reading>& readings) {
    std::map<TimeMs, std::pair<std::int64_t, double>> expected;  // bucket -> count, sum
    for (const Reading& r : readings) {
      auto& e = expected[store->bucket_of(Tier::k5m, r.time).first];
      ++e.first;
      e.second += r.value;
    }
    const auto got = must_query(*store, "lv-1", "level", now - 3 * kDayMs, now, Tier::k5m);
    REQUIRE(got.points.size() == expected.size());
    std::size_t k = 0;
    for (const auto& [bucket, e] : expected) {
      INFO("bucket ", bucket);
      CHECK(got.points[k].time == bucket);
      CHECK(got.points[k].count == e.first);
      CHECK(got.points[k].sum == e.second);
      ++k;
    }
  };
  check_5m(all);
  auto counts = store->expire(now);
  REQUIRE_MESSAGE(counts.ok(), counts.status().to_string());
  CHECK(counts->raw > 0);
  CHECK(counts->m5 == 0);  // every expired bucket is within retention_5m: written as rows
  CHECK(must_query(*store, "lv-1", "level", now - 3 * kDayMs, now - kDayMs - kHourMs, Tier::kRaw)
            .points.empty());
  check_5m(all);
  // A late reading older than the raw cutoff lands in a chunk that the next expiry merges
  // into the bucket's row.
  all.push_back(reading("lv-1", "level", 5, now - 2 * kDayMs + 1000));
  store->append(std::span<const Reading>(&all.back(), 1));
  REQUIRE(store->flush().ok());
  check_5m(all);
  auto again = store->expire(now);
  REQUIRE(again.ok());
  CHECK(again->raw == 1);
  check_5m(all);
}

TEST_CASE("timeseries: pending readings are visible, latest comes from memory") {
  testing::TempDir dir;
  auto db = open_db(dir);
  TimeSeriesOptions o;
  o.flush_interval = std::chrono::hours(1);  // the writer only writes when asked
  auto store = open_store(*db, o);
  const TimeMs t0 = utc_ms(2026, 5, 1, 12);
  store->append(std::vector<Reading>{reading("fg-1", "water_level", 0.8, t0),
                                     reading("fg-1", "water_level", 1.2, t0 + kMinute),
                                     reading("fg-1", "water_level", 0.5, t0 - kMinute),  // late
                                     reading("fg-1", "battery", 3.6, t0)});
  const auto latest = store->latest("fg-1");
  REQUIRE(latest.size() == 2);
  CHECK(latest[0].metric == "battery");
  CHECK(latest[1].metric == "water_level");
  CHECK(latest[1].value == 1.2);  // by reading time, not arrival
  CHECK(latest[1].time == t0 + kMinute);
  CHECK(store->latest("nobody").empty());
  // Nothing is in the file yet.
  auto stored = db->query_int("SELECT count(*) FROM fleet_raw_chunks");
  REQUIRE(stored.ok());
  CHECK(stored->value_or(-1) == 0);
  const auto raw =
      must_query(*store, "fg-1", "water_level", t0 - kHourMs, t0 + kHourMs, Tier::kRaw);
  REQUIRE(raw.points.size() == 3);
  CHECK(raw.points[0].first == 0.5);
  CHECK(raw.points[2].last == 1.2);
}

TEST_CASE("timeseries: data is durable across close and reopen") {
  testing::TempDir dir;
  const TimeMs t0 = utc_ms(2026, 7, 1);
  {
    auto db = open_db(dir);
    auto store = open_store(*db);
    std::vector<Reading> rs;
    for (int i = 0; i < 100; ++i)
      rs.push_back(reading("pk-" + std::to_string(i % 10), "occupied", i % 2, t0 + i * 1000));
    store->append(rs);
    CHECK(store->close().ok());
    CHECK(store->close().ok());  // idempotent
    store->append(rs);           // dropped after close
  }
  auto db = open_db(dir);
  auto store = open_store(*db);
  const auto raw = must_query(*store, "pk-3", "occupied", t0, t0 + kHourMs, Tier::kRaw);
  CHECK(raw.points.size() == 10);
  const auto day = must_query(*store, "pk-3", "occupied", t0, t0 + kDayMs, Tier::k1d);
  REQUIRE(day.points.size() == 1);
  CHECK(day.points[0].count == 10);
  CHECK(day.points[0].sum == 10);  // i = 3, 13, … are odd
  const auto latest = store->latest("pk-3");
  REQUIRE(latest.size() == 1);
  CHECK(latest[0].time == t0 + 93 * 1000);
  // New readings after reopening merge into the stored buckets and reuse the series ids.
  store->append(std::vector<Reading>{reading("pk-3", "occupied", 5, t0 + 500)});
  const auto merged = must_query(*store, "pk-3", "occupied", t0, t0 + kDayMs, Tier::k1d);
  REQUIRE(merged.points.size() == 1);
  CHECK(merged.points[0].count == 11);
  CHECK(merged.points[0].max == 5);
  auto series = db->query_int("SELECT count(*) FROM fleet_series");
  REQUIRE(series.ok());
  CHECK(series->value_or(0) == 10);
}

TEST_CASE("timeseries: raw queries over chunks sort late readings and cut at the range edges") {
  testing::TempDir dir;
  auto db = open_db(dir);
  TimeSeriesOptions o;
  o.flush_interval = std::chrono::hours(1);  // one chunk per series per explicit flush
  o.auto_max_points = 40;
  auto store = open_store(*db, o);
  const TimeMs t0 = utc_ms(2026, 4, 1);
  std::mt19937_64 rng(11);
  // Distinct times (so the expected order is unique), mostly ascending per batch, with late
  // readings reaching back up to three hours; some batches span more than an hour, so the
  // writer splits them into several chunks.
  std::set<TimeMs> used;
  std::vector<std::pair<TimeMs, double>> expected;  // of wm-1 / flow_rate
  TimeMs clock = t0 + 3 * kHourMs;
  for (int batch = 0; batch < 30; ++batch) {
    std::vector<Reading> rs;
    const int n = 1 + static_cast<int>(rng() % 60);
    for (int i = 0; i < n; ++i) {
      clock += 1 + static_cast<TimeMs>(rng() % (batch % 7 == 0 ? 600'000 : 40'000));
      TimeMs t = (rng() % 4 == 0) ? clock - static_cast<TimeMs>(rng() % (3 * kHourMs)) : clock;
      while (!used.insert(t).second) ++t;
      const double v = static_cast<double>(rng() % 1000) / 8;
      rs.push_back(reading("wm-1", "flow_rate", v, t));
      rs.push_back(reading("wm-1", "pressure", -v, t));  // a neighbour series in the same chunks
      expected.emplace_back(t, v);
    }
    store->append(rs);
    REQUIRE(store->flush().ok());
  }
  std::sort(expected.begin(), expected.end());

  // Chunks as stored: more than one per flush for the long batches, none wider than an hour.
  std::vector<std::pair<TimeMs, TimeMs>> chunks;
  REQUIRE(db->query("SELECT c.start_time, c.end_time FROM fleet_raw_chunks c JOIN fleet_series "
                    "s ON s.id = c.series WHERE s.metric = 'flow_rate'",
                    {},
                    [&](const storage::Row& row) {
                      chunks.emplace_back(row.get_int(0), row.get_int(1));
                      return true;
                    })
              .ok());
  CHECK(chunks.size() > 30);
  for (const auto& [start, end] : chunks) {
    CHECK(start <= end);
    CHECK(end - start < kHourMs);
  }
  auto sum = db->query_int("SELECT sum(count) FROM fleet_raw_chunks");
  REQUIRE(sum.ok());
  CHECK(sum->value_or(0) == static_cast<std::int64_t>(2 * expected.size()));

  // Ranges at every chunk edge (inclusive from, exclusive to), at reading times, and random.
  std::vector<std::pair<TimeMs, TimeMs>> ranges;
  for (const auto& [start, end] : chunks) {
    ranges.emplace_back(start, end);
    ranges.emplace_back(start, end + 1);
    if (start < end) ranges.emplace_back(start + 1, end);
    ranges.emplace_back(end, end + kHourMs);
    ranges.emplace_back(start - kHourMs, start);
  }
  for (int i = 0; i < 200; ++i) {
    const TimeMs a = expected[rng() % expected.size()].first + static_cast<TimeMs>(rng() % 3) - 1;
    const TimeMs b = a + static_cast<TimeMs>(rng() % (4 * kHourMs));
    ranges.emplace_back(a, b);
  }
  ranges.emplace_back(t0 - kDayMs, clock + kDayMs);
  ranges.emplace_back(clock + 1, clock + kDayMs);  // after every reading
  for (const auto& [from, to] : ranges) {
    std::vector<std::pair<TimeMs, double>> want;
    for (const auto& e : expected) {
      if (e.first >= from && e.first < to) want.push_back(e);
    }
    INFO("range [", from - t0, ", ", to - t0, ") after t0");
    const auto got = must_query(*store, "wm-1", "flow_rate", from, to, Tier::kRaw);
    REQUIRE(got.points.size() == want.size());
    for (std::size_t k = 0; k < want.size(); ++k) {
      CHECK(got.points[k].time == want[k].first);
      CHECK(got.points[k].first == want[k].second);
      CHECK(got.points[k].count == 1);
    }
    // auto counts the readings in the range exactly, chunks straddling its edges included.
    const auto picked = must_query(*store, "wm-1", "flow_rate", from, to, Tier::kAuto);
    CHECK((picked.tier == Tier::kRaw) == (want.size() <= o.auto_max_points));
  }

  // A damaged blob is reported, not misread.
  REQUIRE(db->execute("UPDATE fleet_raw_chunks SET data = x'0001' WHERE start_time = ?",
                      {chunks.front().first})
              .ok());
  auto damaged = store->query("wm-1", "flow_rate", chunks.front().first, chunks.front().second + 1,
                              Tier::kRaw);
  REQUIRE_FALSE(damaged.ok());
  CHECK(damaged.status().code() == ErrorCode::kDataLoss);
  CHECK(damaged.status().message().find("damaged") != std::string::npos);
}

TEST_CASE("timeseries: a raw chunk straddling the retention limit stays until all of it is old") {
  testing::TempDir dir;
  auto db = open_db(dir);
  TimeSeriesOptions o;
  o.raw_retention = std::chrono::hours(24);
  auto store = open_store(*db, o);
  const TimeMs now = utc_ms(2026, 6, 1);
  const TimeMs cutoff = now - kDayMs;
  store->append(std::vector<Reading>{reading("rg-1", "level", 1, cutoff - 10 * kMinute),
                                     reading("rg-1", "level", 2, cutoff + 10 * kMinute)});
  REQUIRE(store->flush().ok());
  auto kept = store->expire(now);
  REQUIRE(kept.ok());
  CHECK(kept->raw == 0);
  CHECK(must_query(*store, "rg-1", "level", cutoff - kHourMs, now, Tier::kRaw).points.size() == 2);
  auto gone = store->expire(now + 20 * kMinute);
  REQUIRE(gone.ok());
  CHECK(gone->raw == 2);
  CHECK(must_query(*store, "rg-1", "level", cutoff - kHourMs, now, Tier::kRaw).points.empty());
}

TEST_CASE("timeseries: open refuses a bad zone and bad options") {
  testing::TempDir dir;
  auto db = open_db(dir);
  TimeSeriesOptions o;
  o.time_zone = "Nowhere/Atlantis";
  auto s = TimeSeriesStore::open(*db, o);
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().message().find("Nowhere/Atlantis") != std::string::npos);
  TimeSeriesOptions zero;
  zero.batch_size = 0;
  CHECK_FALSE(TimeSeriesStore::open(*db, zero).ok());
}

TEST_CASE("timeseries: append throughput for 1,000 devices x 3 metrics") {
#ifdef NDEBUG
  const int total = 2'000'000;
#else
  const int total = 200'000;  // a Debug build measures little; keep it short
#endif
  testing::TempDir dir;
  auto db = open_db(dir);
  auto store = open_store(*db);
  const std::vector<std::string> metrics = {"flow_rate", "pressure", "temperature"};
  std::vector<Reading> batch;
  for (int d = 0; d < 1000; ++d) {
    for (const auto& m : metrics) batch.push_back(reading("wm-" + std::to_string(d), m, 0, 0));
  }
  const TimeMs t0 = utc_ms(2026, 1, 1);
  auto cpu_seconds = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  };
  const double cpu_start = cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration appending{};
  for (int done = 0, round = 0; done < total; done += static_cast<int>(batch.size()), ++round) {
    for (std::size_t k = 0; k < batch.size(); ++k) {
      batch[k].time = t0 + round * 1000 + static_cast<TimeMs>(k % 1000);
      batch[k].value = static_cast<double>((round + k) % 97);
    }
    const auto a = std::chrono::steady_clock::now();
    store->append(batch);
    appending += std::chrono::steady_clock::now() - a;
  }
  REQUIRE(store->flush().ok());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = cpu_seconds() - cpu_start;  // both threads, user + system
  const double append_s = std::chrono::duration<double>(appending).count();
  MESSAGE("timeseries: ", total, " readings in ", seconds,
          " s including the final flush = ", static_cast<int>(total / seconds),
          " readings/s; process CPU ", cpu * 1e6 / total, " us a reading; append() alone ",
          append_s * 1e9 / total, " ns a reading");
  auto stored = db->query_int("SELECT sum(count) FROM fleet_raw_chunks");
  REQUIRE(stored.ok());
  CHECK(stored->value_or(0) >= total);
}

// The worst case for chunks: every flush sees each series once, so each chunk holds one
// reading (a large fleet reporting every minute looks like this).
TEST_CASE("timeseries: append throughput when each flush sees every series once") {
#ifdef NDEBUG
  const int devices = 50'000;
#else
  const int devices = 10'000;
#endif
  const int rounds = 10;
  testing::TempDir dir;
  auto db = open_db(dir);
  TimeSeriesOptions o;
  o.batch_size = static_cast<std::size_t>(devices);
  o.max_pending = 2 * o.batch_size;
  auto store = open_store(*db, o);
  std::vector<Reading> batch;
  for (int d = 0; d < devices; ++d)
    batch.push_back(reading("wm-" + std::to_string(d), "flow_rate", 0, 0));
  const TimeMs t0 = utc_ms(2026, 1, 1);
  const auto start = std::chrono::steady_clock::now();
  for (int round = 0; round < rounds; ++round) {
    for (std::size_t k = 0; k < batch.size(); ++k) {
      batch[k].time = t0 + round * 60'000 + static_cast<TimeMs>(k % 1000);
      batch[k].value = static_cast<double>((round + k) % 97);
    }
    for (std::size_t k = 0; k < batch.size(); k += 1000) {
      store->append(std::span<const Reading>(batch.data() + k,
                                             std::min<std::size_t>(1000, batch.size() - k)));
    }
  }
  REQUIRE(store->flush().ok());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int total = devices * rounds;
  MESSAGE("timeseries: ", total, " readings of ", devices, " series, one a series a flush, in ",
          seconds, " s = ", static_cast<int>(total / seconds), " readings/s");
  auto stored = db->query_int("SELECT sum(count) FROM fleet_raw_chunks");
  REQUIRE(stored.ok());
  CHECK(stored->value_or(0) == total);
}

}  // namespace
}  // namespace civicbus::fleet
