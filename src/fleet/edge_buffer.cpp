#include "fleet/edge_buffer.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace civicbus::fleet {

namespace {

constexpr storage::Migration kBufferMigrations[] = {
    {1, "edge buffer",
     R"sql(
CREATE TABLE fleet_edge_buffer (
  seq INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL,
  metric TEXT NOT NULL,
  value REAL NOT NULL,
  unit TEXT NOT NULL,
  time INTEGER NOT NULL
);
CREATE TABLE fleet_edge_meta (
  key TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
)sql"},
};

constexpr storage::Migration kWatermarkMigrations[] = {
    {1, "edge watermarks",
     "CREATE TABLE fleet_edge_watermarks (edge_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, "
     "updated_at INTEGER NOT NULL DEFAULT 0);"},
};

}  // namespace

Status EdgeBufferOptions::validate() const {
  if (path.empty()) return invalid_argument("edge buffer: path is required");
  if (edge_id.empty()) return invalid_argument("edge buffer: edge_id is required");
  if (max_batch == 0) return invalid_argument("edge buffer: max_batch must be at least 1");
  if (initial_backoff.count() <= 0 || max_backoff < initial_backoff) {
    return invalid_argument("edge buffer: backoff must be positive and max >= initial");
  }
  if (max_buffered <= 0) return invalid_argument("edge buffer: max_buffered must be positive");
  return Status();
}

Json EdgeBatch::to_json() const {
  Json j = Json::object();
  j["edge_id"] = edge_id;
  j["first_seq"] = first_seq;
  Json list = Json::array();
  list.as_array().reserve(readings.size());
  for (const auto& r : readings) {
    Json item = Json::object();
    item["device"] = r.device_id;
    item["metric"] = r.metric;
    item["value"] = r.value;
    if (!r.unit.empty()) item["unit"] = r.unit;
    item["time"] = r.time;
    list.as_array().push_back(std::move(item));
  }
  j["readings"] = std::move(list);
  return j;
}

Result<EdgeBatch> EdgeBatch::from_json(const Json& j) {
  if (!j.is_object()) return invalid_argument("edge batch: the body must be a JSON object");
  EdgeBatch b;
  const Json* edge = j.find("edge_id");
  const Json* seq = j.find("first_seq");
  const Json* list = j.find("readings");
  if (edge == nullptr || !edge->is_string() || edge->as_string().empty()) {
    return invalid_argument("edge batch: 'edge_id' must be a non-empty string");
  }
  if (seq == nullptr || !seq->is_int() || seq->as_int() < 1) {
    return invalid_argument("edge batch: 'first_seq' must be an integer >= 1");
  }
  if (list == nullptr || !list->is_array()) {
    return invalid_argument("edge batch: 'readings' must be an array");
  }
  b.edge_id = edge->as_string();
  b.first_seq = seq->as_int();
  b.readings.reserve(list->as_array().size());
  std::size_t index = 0;
  for (const auto& item : list->as_array()) {
    ++index;
    const Json* device = item.is_object() ? item.find("device") : nullptr;
    const Json* metric = item.is_object() ? item.find("metric") : nullptr;
    const Json* value = item.is_object() ? item.find("value") : nullptr;
    const Json* time = item.is_object() ? item.find("time") : nullptr;
    if (device == nullptr || !device->is_string() || metric == nullptr || !metric->is_string() ||
        value == nullptr || !value->is_number() || time == nullptr || !time->is_int()) {
      return invalid_argument(fmt::format(
          "edge batch: readings[{}] needs string 'device' and 'metric', number 'value' and "
          "integer 'time' (ms)",
          index - 1));
    }
    Reading r;
    r.device_id = device->as_string();
    r.metric = metric->as_string();
    r.value = value->as_double();
    r.unit = item.get_string("unit");
    r.time = time->as_int();
    b.readings.push_back(std::move(r));
  }
  return b;
}

EdgeForwarder::EdgeForwarder(EdgeBufferOptions options, Uplink uplink, const Clock& clock,
                             std::unique_ptr<storage::Database> db)
    : options_(std::move(options)), uplink_(std::move(uplink)), clock_(clock), db_(std::move(db)) {}

Result<std::unique_ptr<EdgeForwarder>> EdgeForwarder::open(EdgeBufferOptions options, Uplink uplink,
                                                           const Clock& clock) {
  CIVICBUS_RETURN_IF_ERROR(options.validate());
  if (!uplink) return invalid_argument("edge buffer: an uplink is required");
  storage::SqliteOptions so;
  so.path = options.path;
  so.synchronous = storage::Synchronous::kFull;  // an acknowledged append survives power loss
  CIVICBUS_ASSIGN_OR_RETURN(auto db, storage::open_sqlite(so));
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(*db, "fleet.edge_buffer", kBufferMigrations));
  std::unique_ptr<EdgeForwarder> f(
      new EdgeForwarder(std::move(options), std::move(uplink), clock, std::move(db)));
  CIVICBUS_RETURN_IF_ERROR(f->load_counters());
  return f;
}

EdgeForwarder::~EdgeForwarder() {
  stop();
}

Status EdgeForwarder::load_counters() {
  // The next sequence number survives an empty buffer (every batch forwarded) through
  // fleet_edge_meta, so the central node's watermark never sees a number twice.
  CIVICBUS_ASSIGN_OR_RETURN(auto max_seq, db_->query_int("SELECT MAX(seq) FROM fleet_edge_buffer"));
  CIVICBUS_ASSIGN_OR_RETURN(
      auto meta, db_->query_int("SELECT value FROM fleet_edge_meta WHERE key = 'next_seq'"));
  CIVICBUS_ASSIGN_OR_RETURN(auto count, db_->query_int("SELECT COUNT(*) FROM fleet_edge_buffer"));
  next_seq_ = std::max(max_seq.value_or(0) + 1, meta.value_or(1));
  buffered_ = count.value_or(0);
  return Status();
}

Status EdgeForwarder::append(std::span<const Reading> readings) {
  if (readings.empty()) return Status();
  {
    std::lock_guard lock(mu_);
    if (buffered_ + static_cast<std::int64_t>(readings.size()) > options_.max_buffered) {
      return resource_exhausted(fmt::format(
          "edge buffer '{}' holds {} readings (max_buffered {}); the uplink has been down too long",
          options_.path, buffered_, options_.max_buffered));
    }
    std::int64_t seq = next_seq_;
    CIVICBUS_RETURN_IF_ERROR(db_->transaction([&]() -> Status {
      for (const auto& r : readings) {
        CIVICBUS_RETURN_IF_ERROR(
            db_->execute(
                   "INSERT INTO fleet_edge_buffer (seq, device_id, metric, value, unit, time) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   {seq++, std::string_view(r.device_id), std::string_view(r.metric), r.value,
                    std::string_view(r.unit), r.time})
                .status());
      }
      return db_
          ->execute(
              "INSERT INTO fleet_edge_meta (key, value) VALUES ('next_seq', ?) "
              "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
              {seq})
          .status();
    }));
    next_seq_ = seq;
    buffered_ += static_cast<std::int64_t>(readings.size());
  }
  cv_.notify_all();
  return Status();
}

Status EdgeForwarder::forward_once() {
  std::lock_guard forward_lock(forward_mu_);
  EdgeBatch batch;
  batch.edge_id = options_.edge_id;
  std::int64_t last_seq = 0;
  {
    std::lock_guard lock(mu_);
    CIVICBUS_RETURN_IF_ERROR(db_->query(
        "SELECT seq, device_id, metric, value, unit, time FROM fleet_edge_buffer ORDER BY seq "
        "LIMIT ?",
        {static_cast<std::int64_t>(options_.max_batch)}, [&](const storage::Row& row) {
          if (batch.readings.empty()) batch.first_seq = row.get_int(0);
          // Sequence numbers of one batch are consecutive: appends are, and only whole
          // batches are deleted from the front.
          last_seq = row.get_int(0);
          Reading r;
          r.device_id = std::string(row.get_text(1));
          r.metric = std::string(row.get_text(2));
          r.value = row.get_double(3);
          r.unit = std::string(row.get_text(4));
          r.time = row.get_int(5);
          batch.readings.push_back(std::move(r));
          return true;
        }));
  }
  if (batch.readings.empty()) return Status();
  Status sent = uplink_(batch);
  uplink_down_.store(!sent.ok());
  if (!sent.ok()) return sent;
  std::lock_guard lock(mu_);
  CIVICBUS_ASSIGN_OR_RETURN(
      auto deleted, db_->execute("DELETE FROM fleet_edge_buffer WHERE seq <= ?", {last_seq}));
  buffered_ -= deleted;
  forwarded_ += static_cast<std::int64_t>(batch.readings.size());
  return Status();
}

void EdgeForwarder::start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void EdgeForwarder::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EdgeForwarder::run() {
  auto backoff = options_.initial_backoff;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || buffered_ > 0; });
      if (stopping_) return;
    }
    Status s = forward_once();
    if (s.ok()) {
      backoff = options_.initial_backoff;
      continue;
    }
    std::unique_lock lock(mu_);
    // Waits on the real steady clock: the backoff paces a network retry, not domain time.
    cv_.wait_for(lock, backoff, [&] { return stopping_; });
    if (stopping_) return;
    backoff = std::min(options_.max_backoff, backoff * 2);
  }
}

std::int64_t EdgeForwarder::buffered() const {
  std::lock_guard lock(mu_);
  return buffered_;
}
std::int64_t EdgeForwarder::forwarded() const {
  return forwarded_.load();
}
std::int64_t EdgeForwarder::next_seq() const {
  std::lock_guard lock(mu_);
  return next_seq_;
}

Result<std::unique_ptr<EdgeWatermarks>> EdgeWatermarks::open(storage::Database& db) {
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(db, "fleet.edge_watermarks", kWatermarkMigrations));
  std::unique_ptr<EdgeWatermarks> w(new EdgeWatermarks(db));
  CIVICBUS_RETURN_IF_ERROR(
      db.query("SELECT edge_id, seq FROM fleet_edge_watermarks", {}, [&](const storage::Row& row) {
        w->marks_[std::string(row.get_text(0))] = row.get_int(1);
        return true;
      }));
  return w;
}

Result<std::size_t> EdgeWatermarks::first_new(const EdgeBatch& batch) {
  std::lock_guard lock(mu_);
  auto it = marks_.find(batch.edge_id);
  const std::int64_t mark = it == marks_.end() ? 0 : it->second;
  if (batch.first_seq > mark) return std::size_t{0};
  const auto skip = static_cast<std::size_t>(mark - batch.first_seq + 1);
  return std::min(skip, batch.readings.size());
}

Status EdgeWatermarks::commit(const EdgeBatch& batch) {
  if (batch.readings.empty()) return Status();
  const std::int64_t last = batch.first_seq + static_cast<std::int64_t>(batch.readings.size()) - 1;
  std::lock_guard lock(mu_);
  auto& mark = marks_[batch.edge_id];
  if (last <= mark) return Status();
  CIVICBUS_RETURN_IF_ERROR(
      db_.execute("INSERT INTO fleet_edge_watermarks (edge_id, seq) VALUES (?, ?) "
                  "ON CONFLICT(edge_id) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                  {std::string_view(batch.edge_id), last})
          .status());
  mark = last;
  return Status();
}

std::int64_t EdgeWatermarks::watermark(std::string_view edge_id) const {
  std::lock_guard lock(mu_);
  auto it = marks_.find(edge_id);
  return it == marks_.end() ? 0 : it->second;
}

}  // namespace civicbus::fleet
