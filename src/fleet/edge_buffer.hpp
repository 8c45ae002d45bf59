// Edge store-and-forward. On an edge gateway, readings are appended to a local SQLite file
// (committed before append() returns) and a forwarding thread sends them to the central node
// in order, in batches, through an Uplink the host supplies (HTTP to the central gateway, for
// instance). A batch leaves the buffer only once the uplink acknowledged it; while the uplink
// is down the thread backs off and retries the same batch. Every reading carries the edge's
// sequence number, so the central side (EdgeWatermarks) drops a batch it already stored:
// nothing is lost and nothing is counted twice, even when an acknowledgement is lost.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/fleet/types.hpp"
#include "civicbus/storage/database.hpp"

namespace civicbus::fleet {

struct EdgeBufferOptions {
  std::string path;              // the buffer's SQLite file (required)
  std::string edge_id;           // this edge gateway's id, unique per central node (required)
  std::size_t max_batch = 1000;  // readings per uplink call
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{30'000};
  // Readings kept while the uplink is down; append() then fails with kResourceExhausted
  // (the caller decides whether to drop or wait) instead of filling the disk.
  std::int64_t max_buffered = 10'000'000;

  Status validate() const;
};

// One batch on the wire: the edge, the sequence number of its first reading, the readings.
struct EdgeBatch {
  std::string edge_id;
  std::int64_t first_seq = 0;
  std::vector<Reading> readings;

  Json to_json() const;
  static Result<EdgeBatch> from_json(const Json& j);
};

class EdgeForwarder {
 public:
  // Sends one batch; ok means the central node stored it (or already had it).
  using Uplink = std::function<Status(const EdgeBatch&)>;

  static Result<std::unique_ptr<EdgeForwarder>> open(EdgeBufferOptions options, Uplink uplink,
                                                     const Clock& clock);
  ~EdgeForwarder();  // stops the thread; buffered readings stay on disk for the next open

  // Durable when it returns ok.
  Status append(std::span<const Reading> readings);

  // Starts the forwarding thread (idempotent). Without it, call forward_once() yourself.
  void start();
  void stop();

  // Sends the oldest batch once: ok when it was acknowledged (or nothing was buffered), the
  // uplink's error otherwise (the batch stays).
  Status forward_once();

  std::int64_t buffered() const;   // readings waiting
  std::int64_t forwarded() const;  // readings acknowledged since open
  std::int64_t next_seq() const;
  // True while the last uplink call failed.
  bool uplink_down() const { return uplink_down_.load(); }

 private:
  EdgeForwarder(EdgeBufferOptions options, Uplink uplink, const Clock& clock,
                std::unique_ptr<storage::Database> db);
  Status load_counters();
  void run();

  EdgeBufferOptions options_;
  Uplink uplink_;
  const Clock& clock_;
  std::unique_ptr<storage::Database> db_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::int64_t next_seq_ = 1;
  std::int64_t buffered_ = 0;
  std::atomic<std::int64_t> forwarded_{0};
  std::atomic<bool> uplink_down_{false};
  std::mutex forward_mu_;  // one forward_once at a time
  bool stopping_ = false;
  std::thread thread_;
};

// The central side: per edge, the highest sequence number stored. accept() says which part of
// a batch is new; commit() records it after the readings were stored durably.
class EdgeWatermarks {
 public:
  static Result<std::unique_ptr<EdgeWatermarks>> open(storage::Database& db);

  // The index of the first reading of `batch` not stored yet (batch.readings.size() when
  // all were). A gap (first_seq beyond the watermark + 1) is accepted: the edge may have
  // dropped readings deliberately (max_buffered).
  Result<std::size_t> first_new(const EdgeBatch& batch);
  Status commit(const EdgeBatch& batch);
  std::int64_t watermark(std::string_view edge_id) const;

 private:
  explicit EdgeWatermarks(storage::Database& db) : db_(db) {}
  storage::Database& db_;
  mutable std::mutex mu_;
  std::map<std::string, std::int64_t, std::less<>> marks_;
};

}  // namespace civicbus::fleet
