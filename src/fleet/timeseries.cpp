#include "fleet/timeseries.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <utility>

#include "core/string_map.hpp"

namespace civicbus::fleet {

namespace {

constexpr TimeMs k5m = 5 * 60 * 1000;
constexpr TimeMs k1h = 60 * 60 * 1000;
// The tiers kept as rows while readings arrive: 1h and 1d (index = Tier value - 2). The 5m
// tier is not: see "The 5-minute tier" below.
constexpr std::size_t kStoredTiers = 2;
constexpr Tier kStoredTier[kStoredTiers] = {Tier::k1h, Tier::k1d};

// Rollup rows per multi-row statement (SQLite allows 32,766 parameters); the tail of a batch
// uses the one-row statement, so only two texts are ever prepared.
constexpr std::size_t kRollupChunk = 64;  // 11 parameters a row
constexpr std::size_t kChunkRows = 64;    // raw chunks: 5 parameters a row

// A raw chunk spans less than this from its first to its last reading, so a query for
// [from, to) finds every chunk it needs among those starting in (from - kMaxChunkSpan, to):
// one index range, however old the series or late its readings.
constexpr TimeMs kMaxChunkSpan = k1h;
// …and holds at most this many readings (64 KiB of blob).
constexpr std::size_t kMaxChunkReadings = 4096;

// Raw chunk blob, format 1: `count` records of 16 bytes, ascending by time as written (ties
// in arrival order; readers sort anyway and do not rely on it): the reading time as a
// two's-complement int64 of milliseconds since the Unix epoch, then the value as an
// IEEE-754 binary64, both little-endian. No header: the blob's size is exactly 16 × the
// row's count column, and a row where it is not is reported as damaged (kDataLoss).
constexpr std::size_t kChunkRecordBytes = 16;

constexpr std::string_view kComponent = "fleet_timeseries";

// Version 1 was edited in place when raw readings moved from one row each to chunks: no
// release ever created the earlier fleet_readings table.
const storage::Migration kMigrations[] = {
    {1, "series, raw reading chunks and rollups",
     R"sql(
CREATE TABLE fleet_series (
  id INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL,
  metric TEXT NOT NULL,
  UNIQUE (device_id, metric)
);
CREATE TABLE fleet_raw_chunks (
  id INTEGER PRIMARY KEY,
  series INTEGER NOT NULL,
  start_time INTEGER NOT NULL,
  end_time INTEGER NOT NULL,
  count INTEGER NOT NULL,
  data BLOB NOT NULL
);
CREATE INDEX fleet_raw_chunks_series_start ON fleet_raw_chunks (series, start_time);
CREATE TABLE fleet_rollups (
  series INTEGER NOT NULL,
  tier INTEGER NOT NULL,
  bucket INTEGER NOT NULL,
  count INTEGER NOT NULL,
  sum REAL NOT NULL,
  min REAL NOT NULL,
  max REAL NOT NULL,
  first_value REAL NOT NULL,
  first_time INTEGER NOT NULL,
  last_value REAL NOT NULL,
  last_time INTEGER NOT NULL,
  PRIMARY KEY (series, tier, bucket)
) WITHOUT ROWID;
)sql"},
    // 5-minute buckets are now derived from the raw chunks while those are kept, and written
    // as rows only when their chunks expire (see "The 5-minute tier"). Rows of buckets that
    // retained chunks cover would now count twice: drop them. A bucket straddling the oldest
    // retained chunk loses the readings of the chunks expired before it.
    {2, "5-minute buckets derived from raw chunks",
     R"sql(
DELETE FROM fleet_rollups WHERE tier = 1 AND bucket + 300000 > (
  SELECT min(start_time) FROM fleet_raw_chunks c WHERE c.series = fleet_rollups.series);
)sql"},
};

std::string repeat_rows(std::string_view head, std::string_view row, std::size_t n,
                        std::string_view tail) {
  std::string sql(head);
  for (std::size_t i = 0; i < n; ++i) {
    if (i) sql += ',';
    sql += row;
  }
  sql += tail;
  return sql;
}

constexpr std::string_view kChunkHead =
    "INSERT INTO fleet_raw_chunks (series, start_time, end_time, count, data) VALUES ";
constexpr std::string_view kRollupHead =
    "INSERT INTO fleet_rollups (series, tier, bucket, count, sum, min, max, first_value, "
    "first_time, last_value, last_time) VALUES ";
// Merges a partial aggregate into the stored one. SET expressions read the old row, so
// first_time in the CASE is the stored one. On equal times the later write wins "last".
constexpr std::string_view kRollupMerge =
    " ON CONFLICT (series, tier, bucket) DO UPDATE SET count = count + excluded.count, "
    "sum = sum + excluded.sum, min = min(min, excluded.min), max = max(max, excluded.max), "
    "first_value = CASE WHEN excluded.first_time < first_time THEN excluded.first_value "
    "ELSE first_value END, first_time = min(first_time, excluded.first_time), "
    "last_value = CASE WHEN excluded.last_time >= last_time THEN excluded.last_value "
    "ELSE last_value END, last_time = max(last_time, excluded.last_time)";

const std::string& chunk_sql(bool many) {
  static const std::string kOne = repeat_rows(kChunkHead, "(?,?,?,?,?)", 1, "");
  static const std::string kMany = repeat_rows(kChunkHead, "(?,?,?,?,?)", kChunkRows, "");
  return many ? kMany : kOne;
}

const std::string& rollup_sql(bool many) {
  static const std::string kOne =
      repeat_rows(kRollupHead, "(?,?,?,?,?,?,?,?,?,?,?)", 1, kRollupMerge);
  static const std::string kMany =
      repeat_rows(kRollupHead, "(?,?,?,?,?,?,?,?,?,?,?)", kRollupChunk, kRollupMerge);
  return many ? kMany : kOne;
}

struct Agg {
  std::int64_t count = 0;
  double sum = 0, min = 0, max = 0, first = 0, last = 0;
  TimeMs first_time = 0, last_time = 0;

  void add(double v, TimeMs t) {
    if (count == 0) {
      count = 1;
      sum = min = max = first = last = v;
      first_time = last_time = t;
      return;
    }
    ++count;
    sum += v;
    min = std::min(min, v);
    max = std::max(max, v);
    if (t < first_time) {
      first = v;
      first_time = t;
    }
    if (t >= last_time) {
      last = v;
      last_time = t;
    }
  }

  // Folds another partial aggregate of the same bucket into this one.
  void merge(const Agg& o) {
    if (o.count == 0) return;
    if (count == 0) {
      *this = o;
      return;
    }
    count += o.count;
    sum += o.sum;
    min = std::min(min, o.min);
    max = std::max(max, o.max);
    if (o.first_time < first_time) {
      first = o.first;
      first_time = o.first_time;
    }
    if (o.last_time >= last_time) {
      last = o.last;
      last_time = o.last_time;
    }
  }
};

struct AggKey {
  std::int64_t series;
  std::int64_t tier;
  TimeMs bucket;
  bool operator==(const AggKey&) const = default;
};

// The partial aggregates of one batch, appended as readings move into buckets. A series that
// comes back to a bucket it left in the same batch (a late reading) opens a second entry for
// it; the writer sorts the entries by key and folds such twins together. No hash map: most
// readings of a sparse series open a new bucket, and hashing and node allocation per entry
// cost more than the sort. Entries live in fixed blocks, so pointers to them stay valid, and
// the blocks are kept for the next batch.
class AggPool {
 public:
  struct Entry {
    AggKey key;
    Agg agg;
  };
  Agg& open(const AggKey& key) {
    if (size_ == blocks_.size() * kBlock) blocks_.push_back(std::make_unique<Entry[]>(kBlock));
    Entry& e = blocks_[size_ / kBlock][size_ % kBlock];
    e.key = key;
    e.agg = Agg{};
    ++size_;
    return e.agg;
  }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void clear() { size_ = 0; }
  const Entry& operator[](std::size_t i) const { return blocks_[i / kBlock][i % kBlock]; }

 private:
  static constexpr std::size_t kBlock = 4096;
  std::vector<std::unique_ptr<Entry[]>> blocks_;
  std::size_t size_ = 0;
};

struct RawPoint {
  TimeMs time;
  double value;
};

// The raw readings of one series queued since the last flush, in arrival order.
struct PendingChunk {
  std::int64_t series = 0;
  std::vector<RawPoint> points;
};

TimeMs saturating_add(TimeMs a, TimeMs b) {
  TimeMs r;
  if (__builtin_add_overflow(a, b, &r)) {
    return b > 0 ? std::numeric_limits<TimeMs>::max() : std::numeric_limits<TimeMs>::min();
  }
  return r;
}

std::uint64_t to_little_endian(std::uint64_t v) {
  if constexpr (std::endian::native == std::endian::big) return __builtin_bswap64(v);
  return v;
}

// Appends the blob of `points` to `out`.
void encode_chunk(std::span<const RawPoint> points, std::string& out) {
  const std::size_t at = out.size();
  out.resize(at + points.size() * kChunkRecordBytes);
  char* p = out.data() + at;
  for (const RawPoint& r : points) {
    const std::uint64_t t = to_little_endian(static_cast<std::uint64_t>(r.time));
    const std::uint64_t v = to_little_endian(std::bit_cast<std::uint64_t>(r.value));
    std::memcpy(p, &t, 8);
    std::memcpy(p + 8, &v, 8);
    p += kChunkRecordBytes;
  }
}

RawPoint decode_record(const char* p) {
  std::uint64_t t, v;
  std::memcpy(&t, p, 8);
  std::memcpy(&v, p + 8, 8);
  return RawPoint{static_cast<TimeMs>(to_little_endian(t)),
                  std::bit_cast<double>(to_little_endian(v))};
}

// A stored chunk as query() sees it; `data` is valid only inside the scan callback.
struct StoredChunk {
  TimeMs start_time, end_time;
  std::int64_t count;
  std::string_view data;
};

// kDataLoss unless the blob's size matches the row's count.
Status check_chunk(std::int64_t series, const StoredChunk& c) {
  if (c.count >= 0 && c.data.size() == static_cast<std::uint64_t>(c.count) * kChunkRecordBytes) {
    return Status();
  }
  return data_loss(
      fmt::format("time series: the raw chunk of series {} starting at {} holds {} bytes for {} "
                  "readings (expected {} bytes each); the database file is damaged",
                  series, c.start_time, c.data.size(), c.count, kChunkRecordBytes));
}

// Calls `on_chunk` for each chunk of `series` that may hold readings in [from, to), in
// (start_time, id) order, until it returns false. Checks each blob's size against its count.
Status scan_chunks(storage::Database& db, std::int64_t series, TimeMs from, TimeMs to,
                   const std::function<bool(const StoredChunk&)>& on_chunk) {
  Status bad;
  Status s = db.query(
      "SELECT start_time, end_time, count, data FROM fleet_raw_chunks WHERE series = ? AND "
      "start_time > ? AND start_time < ? AND end_time >= ? ORDER BY start_time, id",
      {series, saturating_add(from, -kMaxChunkSpan), to, from}, [&](const storage::Row& row) {
        StoredChunk c{row.get_int(0), row.get_int(1), row.get_int(2), row.get_blob(3)};
        bad = check_chunk(series, c);
        return bad.ok() && on_chunk(c);
      });
  CIVICBUS_RETURN_IF_ERROR(s);
  return bad;
}

// ----- The 5-minute tier
// A sparse series (a meter every 15 minutes) opens a new 5-minute bucket with nearly every
// reading, so keeping that tier as rows would cost the writer one more upsert per reading.
// Instead, while the raw chunks are kept, 5-minute buckets are computed from them when
// queried (a bucket is at most a few hundred 16-byte records); expire() writes the buckets of
// the chunks it deletes as fleet_rollups rows (tier 1), merging into any row already there,
// and a query merges those rows with what retained chunks add. Every reading is counted
// once: it is either in a chunk or, after its chunk expired, in a row.

// The start of the fixed-width bucket holding `t`.
TimeMs bucket_start(TimeMs t, TimeMs width) {
  TimeMs start = t / width * width;
  return start > t ? start - width : start;  // negative times round down
}

struct BucketAgg {
  TimeMs bucket;
  Agg agg;
};

// Folds `points` (sorted by time, ties in arrival order) into 5-minute buckets, in order.
std::vector<BucketAgg> fold_5m(std::span<const RawPoint> points) {
  std::vector<BucketAgg> out;
  for (const RawPoint& r : points) {
    const TimeMs b = bucket_start(r.time, k5m);
    if (out.empty() || out.back().bucket != b) out.push_back(BucketAgg{b, Agg{}});
    out.back().agg.add(r.value, r.time);
  }
  return out;
}

SeriesPoint to_point(TimeMs bucket, const Agg& a) {
  SeriesPoint p;
  p.time = bucket;
  p.count = a.count;
  p.sum = a.sum;
  p.min = a.min;
  p.max = a.max;
  p.avg = a.count > 0 ? a.sum / static_cast<double>(a.count) : 0;
  p.first = a.first;
  p.first_time = a.first_time;
  p.last = a.last;
  p.last_time = a.last_time;
  return p;
}

Agg to_agg(const SeriesPoint& p) {
  Agg a;
  a.count = p.count;
  a.sum = p.sum;
  a.min = p.min;
  a.max = p.max;
  a.first = p.first;
  a.first_time = p.first_time;
  a.last = p.last;
  a.last_time = p.last_time;
  return a;
}

bool by_time(const RawPoint& a, const RawPoint& b) {
  return a.time < b.time;
}

struct NewSeries {
  std::int64_t id;
  std::string device_id, metric;
};

}  // namespace

struct TimeSeriesStore::Series {
  std::int64_t id = 0;
  std::string device_id, metric;
  // All series of this device (a value of SeriesIndex::by_device: stable, the map is
  // node-based and never erases).
  std::vector<Series*>* device_series = nullptr;
  bool has_latest = false;
  double latest_value = 0;
  TimeMs latest_time = 0;
  // The bucket each rollup tier last touched, valid while generation matches the store's.
  std::array<TimeMs, kStoredTiers> bucket_start{}, bucket_end{};
  std::array<Agg*, kStoredTiers> agg{};
  std::array<std::uint64_t, kStoredTiers> generation{};
  // This series' PendingChunk in the pending batch, valid while raw_generation matches.
  std::size_t raw_chunk = 0;
  std::uint64_t raw_generation = 0;
};

struct TimeSeriesStore::Pending {
  // chunks[0, chunk_count) are in use; the rest keep their capacity for the next batches.
  std::vector<PendingChunk> chunks;
  std::size_t chunk_count = 0;
  std::size_t raw_count = 0;  // readings in the chunks
  AggPool aggs;
  std::vector<NewSeries> new_series;
  bool empty() const { return raw_count == 0 && aggs.empty() && new_series.empty(); }
  void clear() {
    for (std::size_t i = 0; i < chunk_count; ++i) chunks[i].points.clear();
    chunk_count = 0;
    raw_count = 0;
    aggs.clear();
    new_series.clear();
  }
};

struct TimeSeriesStore::SeriesIndex {
  std::vector<std::unique_ptr<Series>> all;
  // A device's series; a device has few metrics, so they are searched linearly.
  // Searched with a string_view (no std::string built per reading).
  civicbus::detail::StringMap<std::vector<Series*>> by_device;
};

std::string_view tier_name(Tier t) {
  switch (t) {
    case Tier::kRaw:
      return "raw";
    case Tier::k5m:
      return "5m";
    case Tier::k1h:
      return "1h";
    case Tier::k1d:
      return "1d";
    case Tier::kAuto:
      return "auto";
  }
  return "?";
}

Result<Tier> parse_tier(std::string_view text) {
  if (text.empty() || text == "auto") return Tier::kAuto;
  for (Tier t : {Tier::kRaw, Tier::k5m, Tier::k1h, Tier::k1d}) {
    if (text == tier_name(t)) return t;
  }
  return invalid_argument(
      fmt::format("aggregation '{}' is unknown; use one of raw, 5m, 1h, 1d or auto", text));
}

// ----- lifecycle ---------------------------------------------------------------------------

TimeSeriesStore::TimeSeriesStore(storage::Database& db,
                                 std::unique_ptr<storage::Database> writer_db,
                                 TimeSeriesOptions options, TimeZone zone)
    : db_(db),
      own_writer_db_(std::move(writer_db)),
      writer_db_(own_writer_db_ ? *own_writer_db_ : db),
      options_(std::move(options)),
      zone_(std::move(zone)),
      pending_(std::make_unique<Pending>()),
      spare_(std::make_unique<Pending>()),
      index_(std::make_unique<SeriesIndex>()) {}

Result<std::unique_ptr<TimeSeriesStore>> TimeSeriesStore::open(storage::Database& db,
                                                               TimeSeriesOptions options) {
  if (options.batch_size == 0 || options.max_pending < options.batch_size) {
    return invalid_argument(
        "time series options: batch_size must be at least 1 and max_pending at least "
        "batch_size");
  }
  if (options.flush_interval.count() <= 0 || options.auto_max_points == 0) {
    return invalid_argument(
        "time series options: flush_interval and auto_max_points must be positive");
  }
  auto zone = TimeZone::load(options.time_zone);
  if (!zone.ok()) return zone.status().with_context("time series options: time_zone");
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(db, kComponent, kMigrations));

  std::unique_ptr<storage::Database> writer_db;
  const std::string where = db.describe();
  if (db.dialect() == storage::Dialect::kSqlite && where != ":memory:" && !where.empty()) {
    storage::SqliteOptions so;
    so.path = where;
    so.create_if_missing = false;
    so.verify_on_open = false;  // the caller's connection just opened (and checked) it
    // Readings are telemetry: after a power loss the last commits may be lost, never the
    // file (WAL + NORMAL), which saves an fsync per writer transaction.
    so.synchronous = storage::Synchronous::kNormal;
    so.cache_size_kib = 64 * 1024;
    auto opened = storage::open_sqlite(so);
    if (!opened.ok()) return opened.status().with_context("time series writer connection");
    writer_db = std::move(opened).value();
  }
  std::unique_ptr<TimeSeriesStore> store(
      new TimeSeriesStore(db, std::move(writer_db), std::move(options), std::move(zone).value()));
  CIVICBUS_RETURN_IF_ERROR(store->load());
  store->writer_ = std::thread([s = store.get()] { s->run_writer(); });
  return store;
}

Status TimeSeriesStore::load() {
  std::lock_guard lock(mu_);
  CIVICBUS_RETURN_IF_ERROR(db_.query("SELECT id, device_id, metric FROM fleet_series ORDER BY id",
                                     {}, [&](const storage::Row& row) {
                                       auto s = std::make_unique<Series>();
                                       s->id = row.get_int(0);
                                       s->device_id = std::string(row.get_text(1));
                                       s->metric = std::string(row.get_text(2));
                                       next_series_id_ = std::max(next_series_id_, s->id + 1);
                                       s->device_series = &index_->by_device[s->device_id];
                                       s->device_series->push_back(s.get());
                                       index_->all.push_back(std::move(s));
                                       return true;
                                     }));
  // The latest reading of each series is the last of its newest daily bucket.
  std::unordered_map<std::int64_t, Series*> by_id;
  for (const auto& s : index_->all) by_id.emplace(s->id, s.get());
  return db_.query(
      "SELECT r.series, r.last_value, r.last_time FROM fleet_series s JOIN fleet_rollups r "
      "ON r.series = s.id AND r.tier = 3 AND r.bucket = (SELECT max(bucket) FROM "
      "fleet_rollups WHERE series = s.id AND tier = 3)",
      {}, [&](const storage::Row& row) {
        auto it = by_id.find(row.get_int(0));
        if (it != by_id.end()) {
          it->second->has_latest = true;
          it->second->latest_value = row.get_double(1);
          it->second->latest_time = row.get_int(2);
        }
        return true;
      });
}

TimeSeriesStore::~TimeSeriesStore() {
  close().ignore_error();
}

Status TimeSeriesStore::close() {
  {
    std::lock_guard lock(mu_);
    if (closed_) return Status();
    closed_ = true;
    stopping_ = true;
  }
  writer_cv_.notify_one();
  if (writer_.joinable()) writer_.join();
  std::lock_guard lock(mu_);
  Status s = write_error_;
  write_error_ = Status();
  return s;
}

// ----- ingestion ---------------------------------------------------------------------------

std::pair<TimeMs, TimeMs> TimeSeriesStore::bucket_of(Tier tier, TimeMs t) const {
  auto fixed = [t](TimeMs width) {
    const TimeMs start = bucket_start(t, width);
    return std::pair<TimeMs, TimeMs>(start, start + width);
  };
  switch (tier) {
    case Tier::k5m:
      return fixed(k5m);
    case Tier::k1h:
      return fixed(k1h);
    case Tier::k1d:
      return {zone_.start_of_local_day(t), zone_.next_local_midnight(t)};
    default:
      return {t, t + 1};
  }
}

TimeSeriesStore::Series& TimeSeriesStore::intern(std::string_view device_id,
                                                 std::string_view metric) {
  auto it = index_->by_device.find(device_id);
  if (it == index_->by_device.end()) {
    it = index_->by_device.emplace(std::string(device_id), std::vector<Series*>()).first;
  }
  return intern_metric(it->second, device_id, metric);
}

TimeSeriesStore::Series& TimeSeriesStore::intern_metric(std::vector<Series*>& device_series,
                                                        std::string_view device_id,
                                                        std::string_view metric) {
  for (Series* s : device_series) {
    if (s->metric == metric) return *s;
  }
  auto s = std::make_unique<Series>();
  s->id = next_series_id_++;
  s->device_id = std::string(device_id);
  s->metric = std::string(metric);
  s->device_series = &device_series;
  Series* p = s.get();
  pending_->new_series.push_back(NewSeries{p->id, p->device_id, p->metric});
  device_series.push_back(p);
  index_->all.push_back(std::move(s));
  return *p;
}

const TimeSeriesStore::Series* TimeSeriesStore::find_series(std::string_view device_id,
                                                            std::string_view metric) const {
  auto it = index_->by_device.find(device_id);
  if (it == index_->by_device.end()) return nullptr;
  for (Series* s : it->second) {
    if (s->metric == metric) return s;
  }
  return nullptr;
}

void TimeSeriesStore::append(std::span<const Reading> readings) {
  if (readings.empty()) return;
  std::unique_lock lock(mu_);
  if (closed_) return;
  if (pending_->raw_count >= options_.max_pending) {
    writer_cv_.notify_one();
    done_cv_.wait(lock, [&] { return pending_->raw_count < options_.max_pending || stopping_; });
    if (closed_) return;
  }
  Pending& p = *pending_;
  Series* last = nullptr;
  for (const Reading& r : readings) {
    // Readings usually come grouped by device: a reading of the previous reading's device
    // only scans that device's few metrics; another device costs one hash of its id.
    if (last == nullptr || r.device_id != last->device_id) {
      last = &intern(r.device_id, r.metric);
    } else if (r.metric != last->metric) {
      last = &intern_metric(*last->device_series, last->device_id, r.metric);
    }
    Series& s = *last;
    if (s.raw_generation != generation_) {
      if (p.chunk_count == p.chunks.size()) p.chunks.emplace_back();
      p.chunks[p.chunk_count].series = s.id;
      s.raw_chunk = p.chunk_count++;
      s.raw_generation = generation_;
    }
    p.chunks[s.raw_chunk].points.push_back(RawPoint{r.time, r.value});
    ++p.raw_count;
    if (!s.has_latest || r.time >= s.latest_time) {
      s.has_latest = true;
      s.latest_value = r.value;
      s.latest_time = r.time;
    }
    for (std::size_t i = 0; i < kStoredTiers; ++i) {
      if (s.generation[i] != generation_ || r.time < s.bucket_start[i] ||
          r.time >= s.bucket_end[i]) {
        const auto [start, end] = bucket_of(kStoredTier[i], r.time);
        s.agg[i] = &p.aggs.open(AggKey{s.id, static_cast<std::int64_t>(kStoredTier[i]), start});
        s.bucket_start[i] = start;
        s.bucket_end[i] = end;
        s.generation[i] = generation_;
      }
      s.agg[i]->add(r.value, r.time);
    }
  }
  ++appended_;
  if (p.raw_count >= options_.batch_size) writer_cv_.notify_one();
}

Status TimeSeriesStore::flush() {
  std::unique_lock lock(mu_);
  const std::uint64_t target = appended_;
  if (written_ < target) {
    flush_requested_ = true;
    writer_cv_.notify_one();
    done_cv_.wait(lock, [&] { return written_ >= target; });
  }
  Status s = write_error_;
  write_error_ = Status();
  return s;
}

void TimeSeriesStore::run_writer() {
  std::unique_lock lock(mu_);
  for (;;) {
    writer_cv_.wait_for(lock, options_.flush_interval, [&] {
      return stopping_ || flush_requested_ || pending_->raw_count >= options_.batch_size;
    });
    flush_requested_ = false;
    if (pending_->empty()) {
      written_ = appended_;
      done_cv_.notify_all();
      if (stopping_) return;
      continue;
    }
    std::swap(pending_, spare_);
    ++generation_;  // the series' cached aggregate pointers and chunks are spare_'s now
    const std::uint64_t upto = appended_;
    lock.unlock();
    done_cv_.notify_all();  // an append() waiting for room may go on
    Status s = write(*spare_);
    spare_->clear();
    lock.lock();
    if (!s.ok() && write_error_.ok()) write_error_ = s;
    written_ = upto;
    done_cv_.notify_all();
  }
}

Status TimeSeriesStore::write(Pending& batch) {
  // Series in id order and buckets in key order walk the indexes front to back.
  std::vector<PendingChunk*> chunks;
  chunks.reserve(batch.chunk_count);
  for (std::size_t i = 0; i < batch.chunk_count; ++i) chunks.push_back(&batch.chunks[i]);
  std::sort(chunks.begin(), chunks.end(),
            [](const PendingChunk* a, const PendingChunk* b) { return a->series < b->series; });
  std::vector<const AggPool::Entry*> sorted;
  sorted.reserve(batch.aggs.size());
  for (std::size_t i = 0; i < batch.aggs.size(); ++i) sorted.push_back(&batch.aggs[i]);
  // Stable: twins stay in append order, so a later reading at an equal time still wins "last".
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) {
    return std::tie(a->key.series, a->key.tier, a->key.bucket) <
           std::tie(b->key.series, b->key.tier, b->key.bucket);
  });
  // One row per bucket: twins (a series back in a bucket it left) folded together.
  std::vector<AggPool::Entry> aggs;
  aggs.reserve(sorted.size());
  for (const AggPool::Entry* e : sorted) {
    if (!aggs.empty() && aggs.back().key == e->key) {
      aggs.back().agg.merge(e->agg);
    } else {
      aggs.push_back(*e);
    }
  }
  // Every chunk row of the batch, its blob a slice of `blobs`.
  struct ChunkRow {
    std::int64_t series;
    TimeMs start, end;
    std::size_t count, offset;
  };
  std::vector<ChunkRow> rows;
  rows.reserve(chunks.size());
  std::string blobs;
  blobs.reserve(batch.raw_count * kChunkRecordBytes);
  for (PendingChunk* chunk : chunks) {
    std::vector<RawPoint>& points = chunk->points;  // the writer's until clear()
    if (!std::is_sorted(points.begin(), points.end(), by_time)) {
      std::stable_sort(points.begin(), points.end(), by_time);
    }
    for (std::size_t b = 0; b < points.size();) {
      const TimeMs limit = saturating_add(points[b].time, kMaxChunkSpan);
      std::size_t e = b + 1;
      while (e < points.size() && e - b < kMaxChunkReadings && points[e].time < limit) ++e;
      rows.push_back(
          ChunkRow{chunk->series, points[b].time, points[e - 1].time, e - b, blobs.size()});
      encode_chunk(std::span<const RawPoint>(points.data() + b, e - b), blobs);
      b = e;
    }
  }
  return writer_db_.transaction([&]() -> Status {
    for (const NewSeries& s : batch.new_series) {
      CIVICBUS_RETURN_IF_ERROR(
          writer_db_
              .execute("INSERT INTO fleet_series (id, device_id, metric) VALUES (?, ?, ?)",
                       {s.id, std::string_view(s.device_id), std::string_view(s.metric)})
              .status());
    }

    std::vector<storage::Value> params;
    params.reserve(std::max(kChunkRows * 5, kRollupChunk * 11));
    for (std::size_t i = 0; i < rows.size();) {
      // Full groups of kChunkRows rows, then the tail one by one, as for rollups below.
      const std::size_t n = rows.size() - i >= kChunkRows ? kChunkRows : 1;
      params.clear();
      for (std::size_t j = i; j < i + n; ++j) {
        const ChunkRow& r = rows[j];
        params.emplace_back(r.series);
        params.emplace_back(r.start);
        params.emplace_back(r.end);
        params.emplace_back(static_cast<std::int64_t>(r.count));
        params.emplace_back(
            storage::Blob{std::string_view(blobs).substr(r.offset, r.count * kChunkRecordBytes)});
      }
      CIVICBUS_RETURN_IF_ERROR(writer_db_.execute(chunk_sql(n > 1), params).status());
      i += n;
    }

    params.clear();
    std::size_t pending_rows = 0;
    auto add_row = [&](const AggKey& k, const Agg& a) {
      params.emplace_back(k.series);
      params.emplace_back(k.tier);
      params.emplace_back(k.bucket);
      params.emplace_back(a.count);
      params.emplace_back(a.sum);
      params.emplace_back(a.min);
      params.emplace_back(a.max);
      params.emplace_back(a.first);
      params.emplace_back(a.first_time);
      params.emplace_back(a.last);
      params.emplace_back(a.last_time);
    };
    for (const AggPool::Entry& entry : aggs) {
      add_row(entry.key, entry.agg);
      if (++pending_rows == kRollupChunk) {
        CIVICBUS_RETURN_IF_ERROR(writer_db_.execute(rollup_sql(true), params).status());
        params.clear();
        pending_rows = 0;
      }
    }
    // Rows after the last full group go one by one (one more statement text, not 63).
    for (std::size_t r = 0; r < pending_rows; ++r) {
      CIVICBUS_RETURN_IF_ERROR(writer_db_
                                   .execute(rollup_sql(false), std::span<const storage::Value>(
                                                                   params.data() + r * 11, 11))
                                   .status());
    }
    return Status();
  });
}

// ----- queries -----------------------------------------------------------------------------

std::vector<LatestValue> TimeSeriesStore::latest(std::string_view device_id) const {
  std::vector<LatestValue> out;
  std::lock_guard lock(mu_);
  auto it = index_->by_device.find(device_id);
  if (it == index_->by_device.end()) return out;
  for (const Series* s : it->second) {
    if (s->has_latest) out.push_back(LatestValue{s->metric, s->latest_value, s->latest_time});
  }
  std::sort(out.begin(), out.end(),
            [](const LatestValue& a, const LatestValue& b) { return a.metric < b.metric; });
  return out;
}

Result<SeriesQueryResult> TimeSeriesStore::query(std::string_view device_id,
                                                 std::string_view metric, TimeMs from, TimeMs to,
                                                 Tier tier) {
  if (to < from) {
    return invalid_argument(
        fmt::format("readings of '{}' metric '{}': 'to' ({}) is before 'from' ({})", device_id,
                    metric, to, from));
  }
  std::int64_t series_id = 0;
  {
    std::unique_lock lock(mu_);
    if (const Series* s = find_series(device_id, metric)) series_id = s->id;
    // Queued readings must be visible: wait until the writer has committed them.
    const std::uint64_t target = appended_;
    if (series_id != 0 && written_ < target && !closed_) {
      flush_requested_ = true;
      writer_cv_.notify_one();
      done_cv_.wait(lock, [&] { return written_ >= target; });
    }
  }
  SeriesQueryResult result;
  if (tier == Tier::kAuto) {
    const auto max_points = static_cast<std::int64_t>(options_.auto_max_points);
    std::int64_t raw_count = 0;
    if (series_id != 0) {
      // Chunks inside the range count whole; one straddling an edge is unpacked.
      CIVICBUS_RETURN_IF_ERROR(scan_chunks(db_, series_id, from, to, [&](const StoredChunk& c) {
        if (c.start_time >= from && c.end_time < to) {
          raw_count += c.count;
        } else {
          for (std::size_t i = 0; i < c.data.size(); i += kChunkRecordBytes) {
            const TimeMs t = decode_record(c.data.data() + i).time;
            if (t >= from && t < to) ++raw_count;
          }
        }
        return raw_count <= max_points;
      }));
    }
    const TimeMs span = to - from;
    if (raw_count <= max_points) {
      tier = Tier::kRaw;
    } else if ((span + k5m - 1) / k5m <= max_points) {
      tier = Tier::k5m;
    } else if ((span + k1h - 1) / k1h <= max_points) {
      tier = Tier::k1h;
    } else {
      tier = Tier::k1d;
    }
  }
  result.tier = tier;
  if (series_id == 0) return result;

  if (tier == Tier::kRaw) {
    CIVICBUS_RETURN_IF_ERROR(scan_chunks(db_, series_id, from, to, [&](const StoredChunk& c) {
      for (std::size_t i = 0; i < c.data.size(); i += kChunkRecordBytes) {
        const RawPoint r = decode_record(c.data.data() + i);
        if (r.time < from || r.time >= to) continue;
        SeriesPoint p;
        p.time = p.first_time = p.last_time = r.time;
        p.count = 1;
        p.sum = p.min = p.max = p.avg = p.first = p.last = r.value;
        result.points.push_back(p);
      }
      return true;
    }));
    // Chunks overlap when readings came late; stable keeps chunk order among equal times.
    std::stable_sort(result.points.begin(), result.points.end(),
                     [](const SeriesPoint& a, const SeriesPoint& b) { return a.time < b.time; });
    return result;
  }
  const TimeMs first_bucket = bucket_of(tier, from).first;
  CIVICBUS_RETURN_IF_ERROR(db_.query(
      "SELECT bucket, count, sum, min, max, first_value, first_time, last_value, last_time "
      "FROM fleet_rollups WHERE series = ? AND tier = ? AND bucket >= ? AND bucket < ? "
      "ORDER BY bucket",
      {series_id, static_cast<std::int64_t>(tier), first_bucket, to}, [&](const storage::Row& row) {
        SeriesPoint p;
        p.time = row.get_int(0);
        p.count = row.get_int(1);
        p.sum = row.get_double(2);
        p.min = row.get_double(3);
        p.max = row.get_double(4);
        p.avg = p.count > 0 ? p.sum / static_cast<double>(p.count) : 0;
        p.first = row.get_double(5);
        p.first_time = row.get_int(6);
        p.last = row.get_double(7);
        p.last_time = row.get_int(8);
        result.points.push_back(p);
        return true;
      }));
  if (tier != Tier::k5m || first_bucket >= to) return result;

  // The rows above hold expired chunks only; the retained ones are folded here.
  const TimeMs end = bucket_of(Tier::k5m, to - 1).second;  // readings of buckets before `to`
  std::vector<RawPoint> raw;
  CIVICBUS_RETURN_IF_ERROR(
      scan_chunks(db_, series_id, first_bucket, end, [&](const StoredChunk& c) {
        for (std::size_t i = 0; i < c.data.size(); i += kChunkRecordBytes) {
          const RawPoint r = decode_record(c.data.data() + i);
          if (r.time >= first_bucket && r.time < end) raw.push_back(r);
        }
        return true;
      }));
  if (raw.empty()) return result;
  std::stable_sort(raw.begin(), raw.end(), by_time);
  std::vector<BucketAgg> folded = fold_5m(raw);
  std::vector<SeriesPoint> merged;
  merged.reserve(result.points.size() + folded.size());
  std::size_t i = 0;
  for (const BucketAgg& b : folded) {
    while (i < result.points.size() && result.points[i].time < b.bucket) {
      merged.push_back(result.points[i++]);
    }
    if (i < result.points.size() && result.points[i].time == b.bucket) {
      Agg a = to_agg(result.points[i++]);
      a.merge(b.agg);
      merged.push_back(to_point(b.bucket, a));
    } else {
      merged.push_back(to_point(b.bucket, b.agg));
    }
  }
  merged.insert(merged.end(), result.points.begin() + static_cast<std::ptrdiff_t>(i),
                result.points.end());
  result.points = std::move(merged);
  return result;
}

// ----- retention ---------------------------------------------------------------------------

Result<ExpireCounts> TimeSeriesStore::expire(TimeMs now) {
  std::vector<std::int64_t> ids;
  {
    std::lock_guard lock(mu_);
    ids.reserve(index_->all.size());
    for (const auto& s : index_->all) ids.push_back(s->id);
  }
  std::sort(ids.begin(), ids.end());
  ExpireCounts counts;
  const TimeMs raw_cutoff = now - options_.raw_retention.count();
  const TimeMs cutoff_5m = now - options_.retention_5m.count();
  const std::array<std::pair<std::int64_t, TimeMs>, 3> cutoffs = {{
      {1, cutoff_5m},
      {2, now - options_.retention_1h.count()},
      {3, now - options_.retention_1d.count()},
  }};
  // Per series, so every delete walks an index range instead of the whole table.
  CIVICBUS_RETURN_IF_ERROR(writer_db_.transaction([&]() -> Status {
    std::vector<RawPoint> expiring;
    for (std::int64_t id : ids) {
      // end_time >= start_time, so the start_time bound only narrows the index range.
      expiring.clear();
      Status bad;
      CIVICBUS_RETURN_IF_ERROR(writer_db_.query(
          "DELETE FROM fleet_raw_chunks WHERE series = ? AND start_time < ? AND end_time < ? "
          "RETURNING start_time, end_time, count, data",
          {id, raw_cutoff, raw_cutoff}, [&](const storage::Row& row) {
            StoredChunk c{row.get_int(0), row.get_int(1), row.get_int(2), row.get_blob(3)};
            bad = check_chunk(id, c);
            if (!bad.ok()) return false;
            counts.raw += c.count;
            for (std::size_t i = 0; i < c.data.size(); i += kChunkRecordBytes) {
              expiring.push_back(decode_record(c.data.data() + i));
            }
            return true;
          }));
      CIVICBUS_RETURN_IF_ERROR(bad);
      // The 5-minute buckets of the deleted readings become rows, unless they are past that
      // tier's retention too: then they are gone, and counted as such.
      std::stable_sort(expiring.begin(), expiring.end(), by_time);
      for (const BucketAgg& b : fold_5m(expiring)) {
        if (b.bucket < cutoff_5m) {
          ++counts.m5;
          continue;
        }
        const Agg& a = b.agg;
        CIVICBUS_RETURN_IF_ERROR(
            writer_db_
                .execute(rollup_sql(false), {id, std::int64_t{1}, b.bucket, a.count, a.sum, a.min,
                                             a.max, a.first, a.first_time, a.last, a.last_time})
                .status());
      }
      for (const auto& [tier, cutoff] : cutoffs) {
        CIVICBUS_ASSIGN_OR_RETURN(
            std::int64_t m,
            writer_db_.execute(
                "DELETE FROM fleet_rollups WHERE series = ? AND tier = ? AND bucket < ?",
                {id, tier, cutoff}));
        (tier == 1 ? counts.m5 : tier == 2 ? counts.h1 : counts.d1) += m;
      }
    }
    return Status();
  }));
  return counts;
}

}  // namespace civicbus::fleet
