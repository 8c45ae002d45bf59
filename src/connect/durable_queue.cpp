#include "connect/durable_queue.hpp"

#include <fmt/format.h>

#include <span>
#include <utility>

namespace civicbus::connect {
namespace {

constexpr storage::Migration kQueueMigrations[] = {
    {1, "requests queued while a connection is down",
     R"sql(
CREATE TABLE connect_queue (
  id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so ids order requests
  connection TEXT NOT NULL,
  kind TEXT NOT NULL,
  payload TEXT NOT NULL,                 -- JSON
  enqueued_at BIGINT NOT NULL,           -- Unix microseconds
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT
);
CREATE INDEX connect_queue_by_connection ON connect_queue(connection, id);
)sql"},
};

constexpr storage::Migration kCacheMigrations[] = {
    {1, "last good responses per connection",
     R"sql(
CREATE TABLE connect_cache (
  connection TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,                   -- JSON
  stored_at BIGINT NOT NULL,             -- Unix microseconds
  PRIMARY KEY (connection, key)
);
)sql"},
};

std::span<const storage::Migration> queue_migrations(storage::Dialect dialect) {
  if (dialect == storage::Dialect::kSqlite) return kQueueMigrations;
  static const std::string sql = storage::ddl_for(dialect, kQueueMigrations[0].sql);
  static const storage::Migration kPostgres[] = {{1, kQueueMigrations[0].description, sql}};
  return kPostgres;
}

constexpr std::string_view kSelectRequest =
    "SELECT id, connection, kind, payload, enqueued_at, attempts, last_error "
    "FROM connect_queue ";

Result<QueuedRequest> read_request(const storage::Row& row) {
  QueuedRequest r;
  r.id = row.get_int(0);
  r.connection = std::string(row.get_text(1));
  r.kind = std::string(row.get_text(2));
  Result<Json> payload = Json::parse(row.get_text(3));
  if (!payload.ok()) {
    return data_loss(
        fmt::format("queued request {} of connection '{}' has an unreadable payload: {}", r.id,
                    r.connection, payload.status().message()));
  }
  r.payload = std::move(*payload);
  r.enqueued_at = from_unix_micros(row.get_int(4));
  r.attempts = static_cast<int>(row.get_int(5));
  if (!row.is_null(6)) r.last_error = std::string(row.get_text(6));
  return r;
}

}  // namespace

Result<std::unique_ptr<DurableQueue>> DurableQueue::open(storage::Database& db, const Clock& clock,
                                                         DurableQueueOptions options) {
  if (options.max_per_connection < 0) {
    return invalid_argument("durable queue: max_per_connection must be >= 0 (0: no limit)");
  }
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(db, "connect_queue", queue_migrations(db.dialect())));
  return std::unique_ptr<DurableQueue>(new DurableQueue(db, clock, options));
}

Result<std::int64_t> DurableQueue::enqueue(std::string_view connection, std::string_view kind,
                                           const Json& payload) {
  if (connection.empty()) return invalid_argument("enqueue(): the connection name is empty");
  std::int64_t id = 0;
  CIVICBUS_RETURN_IF_ERROR(db_.transaction([&]() -> Status {
    if (options_.max_per_connection > 0) {
      CIVICBUS_ASSIGN_OR_RETURN(std::int64_t queued, size(connection));
      if (queued >= options_.max_per_connection) {
        return resource_exhausted(
            fmt::format("the queue of connection '{}' is full ({} requests "
                        "waiting for it to come back)",
                        connection, queued));
      }
    }
    const std::string text = payload.dump();
    CIVICBUS_RETURN_IF_ERROR(
        db_.execute("INSERT INTO connect_queue (connection, kind, payload, "
                    "enqueued_at, attempts) "
                    "VALUES (?, ?, ?, ?, 0)",
                    {connection, kind, std::string_view(text), to_unix_micros(clock_.now())})
            .status());
    id = db_.last_insert_id();
    return Status();
  }));
  return id;
}

Result<std::vector<QueuedRequest>> DurableQueue::peek_many(std::string_view connection,
                                                           std::int64_t limit) {
  std::vector<QueuedRequest> out;
  Status bad;
  CIVICBUS_RETURN_IF_ERROR(
      db_.query(std::string(kSelectRequest) + "WHERE connection = ? ORDER BY id LIMIT ?",
                {connection, limit}, [&](const storage::Row& row) {
                  Result<QueuedRequest> r = read_request(row);
                  if (!r.ok()) {
                    bad = r.status();
                    return false;
                  }
                  out.push_back(std::move(*r));
                  return true;
                }));
  CIVICBUS_RETURN_IF_ERROR(bad);
  return out;
}

Result<std::optional<QueuedRequest>> DurableQueue::peek(std::string_view connection) {
  CIVICBUS_ASSIGN_OR_RETURN(std::vector<QueuedRequest> head, peek_many(connection, 1));
  if (head.empty()) return std::optional<QueuedRequest>();
  return std::optional<QueuedRequest>(std::move(head.front()));
}

Status DurableQueue::ack(std::int64_t id) {
  CIVICBUS_ASSIGN_OR_RETURN(std::int64_t removed,
                            db_.execute("DELETE FROM connect_queue WHERE id = ?", {id}));
  if (removed == 0) return not_found(fmt::format("no queued request has id {}", id));
  return {};
}

Result<int> DurableQueue::fail(std::int64_t id, std::string_view error) {
  std::optional<std::int64_t> attempts;
  CIVICBUS_RETURN_IF_ERROR(db_.transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(db_.execute("UPDATE connect_queue SET attempts = attempts + 1, "
                                         "last_error = ? WHERE id = ?",
                                         {error, id})
                                 .status());
    CIVICBUS_ASSIGN_OR_RETURN(
        attempts, db_.query_int("SELECT attempts FROM connect_queue WHERE id = ?", {id}));
    return Status();
  }));
  if (!attempts) return not_found(fmt::format("no queued request has id {}", id));
  return static_cast<int>(*attempts);
}

Result<std::int64_t> DurableQueue::size(std::string_view connection) {
  CIVICBUS_ASSIGN_OR_RETURN(
      std::optional<std::int64_t> n,
      db_.query_int("SELECT COUNT(*) FROM connect_queue WHERE connection = ?", {connection}));
  return n.value_or(0);
}

Result<std::vector<std::string>> DurableQueue::connections() {
  std::vector<std::string> out;
  CIVICBUS_RETURN_IF_ERROR(db_.query("SELECT DISTINCT connection FROM connect_queue ORDER BY 1", {},
                                     [&](const storage::Row& row) {
                                       out.emplace_back(row.get_text(0));
                                       return true;
                                     }));
  return out;
}

Result<std::int64_t> DurableQueue::clear(std::string_view connection) {
  return db_.execute("DELETE FROM connect_queue WHERE connection = ?", {connection});
}

Result<ReplayResult> DurableQueue::replay(
    std::string_view connection, const std::function<Status(const QueuedRequest&)>& deliver,
    std::int64_t max) {
  ReplayResult result;
  // Pages of requests, so a long queue is not read into memory at once.
  constexpr std::int64_t kPage = 256;
  bool stopped = false;
  while (!stopped && (max < 0 || result.delivered < max)) {
    const std::int64_t want = max < 0 ? kPage : std::min(kPage, max - result.delivered);
    CIVICBUS_ASSIGN_OR_RETURN(std::vector<QueuedRequest> page, peek_many(connection, want));
    if (page.empty()) break;
    for (const QueuedRequest& request : page) {
      Status delivered = deliver(request);
      if (!delivered.ok()) {
        CIVICBUS_RETURN_IF_ERROR(fail(request.id, delivered.message()).status());
        result.stopped_by = delivered;
        stopped = true;
        break;
      }
      CIVICBUS_RETURN_IF_ERROR(ack(request.id));
      ++result.delivered;
    }
  }
  CIVICBUS_ASSIGN_OR_RETURN(result.remaining, size(connection));
  return result;
}

Result<std::unique_ptr<ResponseCache>> ResponseCache::open(storage::Database& db,
                                                           const Clock& clock) {
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(db, "connect_cache", kCacheMigrations));
  return std::unique_ptr<ResponseCache>(new ResponseCache(db, clock));
}

Status ResponseCache::put(std::string_view connection, std::string_view key, const Json& value) {
  const std::string text = value.dump();
  return db_
      .execute(
          "INSERT INTO connect_cache (connection, key, value, stored_at) "
          "VALUES (?, ?, ?, ?) "
          "ON CONFLICT (connection, key) DO UPDATE SET value = excluded.value, "
          "stored_at = excluded.stored_at",
          {connection, key, std::string_view(text), to_unix_micros(clock_.now())})
      .status();
}

Result<std::optional<CachedValue>> ResponseCache::get(
    std::string_view connection, std::string_view key,
    std::optional<std::chrono::milliseconds> max_age) {
  std::optional<std::pair<std::string, std::int64_t>> stored;
  CIVICBUS_RETURN_IF_ERROR(
      db_.query("SELECT value, stored_at FROM connect_cache WHERE connection = "
                "? AND key = ?",
                {connection, key}, [&](const storage::Row& row) {
                  stored.emplace(std::string(row.get_text(0)), row.get_int(1));
                  return false;
                }));
  if (!stored) return std::optional<CachedValue>();
  CachedValue cached;
  cached.stored_at = from_unix_micros(stored->second);
  cached.age =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now() - cached.stored_at);
  if (cached.age.count() < 0) cached.age = std::chrono::milliseconds(0);  // the clock went back
  if (max_age && cached.age > *max_age) return std::optional<CachedValue>();
  Result<Json> value = Json::parse(stored->first);
  if (!value.ok()) {
    return data_loss(fmt::format("cached value '{}' of connection '{}' is unreadable: {}", key,
                                 connection, value.status().message()));
  }
  cached.value = std::move(*value);
  return std::optional<CachedValue>(std::move(cached));
}

Result<std::int64_t> ResponseCache::clear(std::string_view connection) {
  return db_.execute("DELETE FROM connect_cache WHERE connection = ?", {connection});
}

Result<std::int64_t> ResponseCache::prune(std::chrono::milliseconds max_age) {
  const std::int64_t horizon =
      to_unix_micros(clock_.now()) -
      std::chrono::duration_cast<std::chrono::microseconds>(max_age).count();
  return db_.execute("DELETE FROM connect_cache WHERE stored_at < ?", {horizon});
}

}  // namespace civicbus::connect
