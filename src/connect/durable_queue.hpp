// DurableQueue and ResponseCache: what the connector hub keeps in SQLite while a connection is
// down. The queue holds requests (writes, pushes) that could not be delivered while the
// connection's circuit breaker was open, in order, so they are replayed once it closes; the cache
// holds the last good answer per (connection, key), served as fallback with its age.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/storage/database.hpp"

namespace civicbus::connect {

struct QueuedRequest {
  std::int64_t id = 0;  // increases with every enqueue: FIFO order
  std::string connection;
  std::string kind;  // what to do with the payload ("write", "webhook", …); the
                     // hub decides
  Json payload;
  SystemTime enqueued_at;
  int attempts = 0;  // failed delivery attempts so far
  std::string last_error;
};

struct DurableQueueOptions {
  // Requests kept per connection; enqueue() beyond it fails with kResourceExhausted rather than
  // filling the disk while a connection stays down. Default 100,000; 0: no limit.
  std::int64_t max_per_connection = 100'000;
};

// What one replay() did.
struct ReplayResult {
  std::int64_t delivered = 0;  // acknowledged and removed
  std::int64_t remaining = 0;  // still queued for the connection afterwards
  // The delivery failure that stopped the replay (ok when the queue drained or `max` was reached);
  // the request stays at the head of the queue with its attempt counted.
  Status stopped_by;
};

// A FIFO of requests per connection in the table connect_queue (migration component
// "connect_queue"). It does not own the Database or the Clock, which must outlive it. Thread-safe
// as far as the Database is (its calls are serialised); replays of one connection must not run
// concurrently (the hub runs one per connection).
class DurableQueue {
 public:
  static Result<std::unique_ptr<DurableQueue>> open(storage::Database& db, const Clock& clock,
                                                    DurableQueueOptions options = {});

  // Appends a request; returns its id.
  Result<std::int64_t> enqueue(std::string_view connection, std::string_view kind,
                               const Json& payload);
  // The oldest request of `connection`, nullopt when its queue is empty.
  Result<std::optional<QueuedRequest>> peek(std::string_view connection);
  // Up to `limit` oldest requests of `connection`, oldest first.
  Result<std::vector<QueuedRequest>> peek_many(std::string_view connection, std::int64_t limit);
  // Removes a delivered (or deliberately dropped) request; kNotFound if it is not queued.
  Status ack(std::int64_t id);
  // Records a failed delivery; returns the request's attempt count after it.
  Result<int> fail(std::int64_t id, std::string_view error);
  Result<std::int64_t> size(std::string_view connection);
  // Connections with queued requests, by name.
  Result<std::vector<std::string>> connections();
  // Drops every request of `connection` (the connection was deleted); returns how many.
  Result<std::int64_t> clear(std::string_view connection);

  // Delivers the queued requests of `connection` in order, acknowledging each one `deliver`
  // accepts, and stops at the first failure so that no request overtakes an earlier one. `max` < 0:
  // until the queue is empty. `deliver` runs outside any transaction.
  Result<ReplayResult> replay(std::string_view connection,
                              const std::function<Status(const QueuedRequest&)>& deliver,
                              std::int64_t max = -1);

 private:
  DurableQueue(storage::Database& db, const Clock& clock, DurableQueueOptions options)
      : db_(db), clock_(clock), options_(options) {}

  storage::Database& db_;
  const Clock& clock_;
  const DurableQueueOptions options_;
};

struct CachedValue {
  Json value;
  SystemTime stored_at;
  std::chrono::milliseconds age{0};  // now - stored_at when read
};

// The last good answer of a connection per key (table connect_cache, migration component
// "connect_cache"): the "cached data" a caller gets, labelled with its age, while the connection is
// down. Does not own the Database or the Clock.
class ResponseCache {
 public:
  static Result<std::unique_ptr<ResponseCache>> open(storage::Database& db, const Clock& clock);

  // Stores or replaces the value of (connection, key), stamped now.
  Status put(std::string_view connection, std::string_view key, const Json& value);
  // The stored value with its age; nullopt when absent or older than `max_age` (if given).
  Result<std::optional<CachedValue>> get(std::string_view connection, std::string_view key,
                                         std::optional<std::chrono::milliseconds> max_age = {});
  // Drops one connection's entries; returns how many.
  Result<std::int64_t> clear(std::string_view connection);
  // Drops entries older than `max_age`; returns how many.
  Result<std::int64_t> prune(std::chrono::milliseconds max_age);

 private:
  ResponseCache(storage::Database& db, const Clock& clock) : db_(db), clock_(clock) {}
  storage::Database& db_;
  const Clock& clock_;
};

}  // namespace civicbus::connect
