// Transport: the port that carries events between producers and consumers and keeps them
// durably in order. The broker sits on top of it (topics, schemas, groups, DLQ, PII); a
// Transport only knows records. The in-process adapter (the embedded default) is a SQLite
// log with group commit and an in-memory fan-out; a NATS JetStream adapter can take its
// place without the broker changing.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus {
class MetricsRegistry;
}

namespace civicbus::transport {

struct AppendRequest {
  std::string topic;
  std::string source;  // with event_id, the idempotency key
  std::string event_id;
  std::string partition_key;  // records with one key keep their order for every consumer
  std::string payload;        // the stored bytes (a structured CloudEvent)
};

struct AppendResult {
  std::int64_t offset = 0;  // of the stored record; of the earlier copy when duplicate
  bool duplicate = false;   // source+id was seen inside the dedup window; nothing stored
};

// A record as stored. Shared between the log's cache and every reader; immutable.
struct StoredRecord {
  std::int64_t offset = 0;
  std::string topic;
  std::string source;
  std::string event_id;
  std::string partition_key;
  SystemTime stored_at;
  std::string payload;
};
using RecordPtr = std::shared_ptr<const StoredRecord>;

// Runs on the transport's completion thread once the record is durable or refused, in the
// order the records were committed. It must not block; hand longer work to an executor.
using AppendCallback = std::function<void(Result<AppendResult>)>;

class CIVICBUS_EXPORT Transport {
 public:
  virtual ~Transport() = default;

  // Queues `request` for the next group commit. When the queue is full (backpressure) the
  // call blocks up to the configured time, then fails with kResourceExhausted.
  virtual void append(AppendRequest request, AppendCallback done) = 0;

  // Up to `max_records` records with offset >= `from`, in offset order (fewer, or none, at the
  // end of the log). Offsets have gaps where retention removed records.
  virtual Result<std::vector<RecordPtr>> read(std::int64_t from, std::size_t max_records) = 0;

  // One record by offset; kNotFound when absent.
  virtual Result<RecordPtr> read_one(std::int64_t offset) = 0;

  // The offset the next stored record will get (1 for an empty log).
  virtual std::int64_t next_offset() const = 0;

  // The first offset stored at or after `t` (next_offset() when none).
  virtual Result<std::int64_t> offset_at_time(SystemTime t) = 0;

  // Called after every commit with the highest committed offset, on the writer thread; the
  // listener must not block. Returns an id for remove_commit_listener.
  virtual std::uint64_t add_commit_listener(std::function<void(std::int64_t last_offset)> fn) = 0;
  virtual void remove_commit_listener(std::uint64_t id) = 0;

  // Retention: removes `topic`'s records stored before `older_than` and, when its records
  // take more than `max_bytes` (> 0), its oldest records until they fit. Returns how many
  // were removed.
  virtual Result<std::int64_t> expire(const std::string& topic, SystemTime older_than,
                                      std::int64_t max_bytes) = 0;

  // Per topic: how many records are stored above `after_offset` and when the oldest of them
  // was stored. Consumer lag is computed from this.
  struct Backlog {
    std::string topic;
    std::int64_t records = 0;
    SystemTime oldest_stored_at;
  };
  virtual Result<std::vector<Backlog>> backlog(std::int64_t after_offset) = 0;

  // Records and payload bytes currently stored for `topic`.
  struct TopicUsage {
    std::int64_t records = 0;
    std::int64_t bytes = 0;
  };
  virtual TopicUsage usage(const std::string& topic) const = 0;

  // Records appended per topic since this Transport was opened, and the offset they reach:
  // one consistent snapshot, so the difference of two snapshots counts exactly the records
  // between their offsets (what the broker's publish audit records, without re-reading them).
  struct AppendCounts {
    std::int64_t next_offset = 1;
    std::map<std::string, std::int64_t, std::less<>> per_topic;
  };
  virtual AppendCounts append_counts() const = 0;

  // Stops accepting appends, commits what is queued, and joins the writer. Idempotent.
  virtual void close() = 0;
};

struct InProcessOptions {
  std::string path;                           // SQLite file (":memory:" for tests)
  bool synchronous_full = true;               // fsync every commit (synchronous=FULL)
  std::chrono::hours dedup_window{24};        // how long source+id is remembered
  std::size_t dedup_max_entries = 2'000'000;  // bound on memory; oldest entries go first
  std::size_t max_batch = 8192;               // records per group commit
  std::size_t max_queued = 65536;             // appends waiting for a commit (backpressure)
  std::chrono::milliseconds append_block_timeout{30'000};
  // Recent records kept in memory for readers that keep up, bounded by count and by bytes
  // (payload and keys); older reads go to SQLite.
  std::size_t cache_records = 65536;
  std::size_t cache_bytes = 16u << 20;
  // The writer never checkpoints the WAL itself (that would stall commits); a background
  // connection copies it into the database file this often.
  std::chrono::milliseconds checkpoint_interval{500};
  bool verify_on_open = true;  // PRAGMA quick_check when opening the file
  // SQLite page cache of the writer and of the reader connection each. Appends touch only
  // the right edge of the log's B-trees, so a small cache does; the rest of the budget is
  // better left to the OS page cache.
  std::int64_t cache_size_kib = 4096;
};

// The embedded transport: a SQLite log (table `log_records`) written by one writer thread
// with group commit, a bounded cache of recent records, and commit listeners. `clock` and
// `metrics` must outlive it (metrics may be null).
CIVICBUS_EXPORT Result<std::unique_ptr<Transport>> open_in_process(
    const InProcessOptions& options, const Clock& clock, MetricsRegistry* metrics = nullptr);

}  // namespace civicbus::transport
