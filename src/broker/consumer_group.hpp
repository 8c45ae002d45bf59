// ConsumerGroupRuntime: delivers one consumer group's events while a Subscription is open.
//
// It fetches matching records from the transport after the group's position, spreads them
// over `parallelism` lanes by partition key (so one key is always handled in order, by one
// handler at a time), retries a failing event with exponential backoff while its lane waits,
// and after max_deliveries hands it to the dead-letter queue. The committed offset is the
// highest offset below which every matching event is done (acknowledged or dead-lettered).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "civicbus/broker/broker.hpp"
#include "civicbus/transport/transport.hpp"

namespace civicbus {
class Counter;
class Histogram;
}  // namespace civicbus

namespace civicbus::broker::detail {

// A dead letter waiting to be delivered again.
struct ReplayItem {
  std::int64_t dlq_id = 0;
  transport::RecordPtr record;
};

// What a group needs from the broker around it. Implemented by the broker.
class GroupHost {
 public:
  virtual ~GroupHost() = default;
  virtual transport::Transport& transport() = 0;
  virtual Executor& executor() = 0;
  virtual const Clock& clock() const = 0;
  virtual const Logger& logger() const = 0;
  // Parses a stored record into what the group's handler sees (PII revealed or redacted).
  virtual Result<DeliveredEvent> decode(const transport::StoredRecord& record,
                                        std::string_view group) = 0;
  // Stores a dead letter (or, for a replayed one, updates its row). Durable on return.
  virtual Status dead_letter(std::string_view group, const transport::StoredRecord& record,
                             std::int64_t replayed_dlq_id, std::string_view error, int attempts,
                             SystemTime first_failed_at) = 0;
  virtual Status mark_replayed(std::int64_t dlq_id) = 0;
  virtual Status commit_offset(std::string_view group, std::int64_t offset) = 0;
  virtual Result<std::vector<ReplayItem>> pending_replays(
      std::string_view group, const std::set<std::int64_t>& in_progress) = 0;
  struct Counters {
    Counter* delivered = nullptr;
    Counter* errors = nullptr;
    Counter* dead_lettered = nullptr;
    Histogram* latency = nullptr;  // stored → handler start, seconds
  };
  virtual Counters counters(std::string_view group, std::string_view topic) = 0;
};

class ConsumerGroupRuntime : public std::enable_shared_from_this<ConsumerGroupRuntime> {
 public:
  ConsumerGroupRuntime(GroupHost& host, ConsumerGroupOptions options, AsyncHandler handler,
                       std::int64_t committed_offset);

  const ConsumerGroupOptions& options() const { return options_; }
  const std::string& group() const { return options_.group; }

  void start();
  // New records up to `last_offset` are in the log.
  void notify(std::int64_t last_offset);
  // Looks for dead letters queued for replay.
  void poll_replays();
  // Writes the committed offset if it moved.
  Status flush_offset();
  // Stops fetching, waits for running handlers, flushes the offset. Idempotent.
  void stop();

  std::int64_t committed_offset() const;

 private:
  struct Item {
    transport::RecordPtr record;
    int attempt = 1;
    std::int64_t dlq_id = 0;  // > 0: a replay from the DLQ
    SystemTime first_failed_at{};
  };
  struct Lane {
    std::deque<Item> queue;
    bool busy = false;
  };

  void schedule_fetch_locked();
  void fetch();
  // Runs the lane's events in order on the calling thread for as long as their handlers
  // finish synchronously (up to a budget), so consecutive events do not each pay a hop
  // through the executor; an asynchronous completion continues the lane from its callback.
  void run_lane(std::size_t lane);
  // Settles the lane's front event. With `continue_inline`, returns true when the lane has a
  // next event that the caller should run now (instead of posting it to the executor).
  bool finish(std::size_t lane, Status result, bool continue_inline = false);
  // Marks idle lanes with events busy and posts them to the executor; with `keep_one`, one of
  // them is returned instead, for the caller to run itself (after releasing the lock).
  std::optional<std::size_t> start_idle_lanes_locked(bool keep_one = false);
  std::size_t lane_of(const transport::StoredRecord& record) const;
  bool matches(const std::string& topic);
  std::chrono::milliseconds backoff(int failed_attempts) const;
  void advance_committed_locked();

  GroupHost& host_;
  const ConsumerGroupOptions options_;
  const AsyncHandler handler_;

  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  std::vector<Lane> lanes_;
  std::int64_t fetch_from_;             // next offset to read
  std::int64_t known_last_ = 0;         // highest offset known to be in the log
  std::set<std::int64_t> outstanding_;  // fetched, not yet done
  std::set<std::int64_t> replays_in_progress_;
  std::int64_t committed_;
  std::int64_t flushed_;
  bool fetch_scheduled_ = false;
  bool fetching_ = false;
  bool stopping_ = false;
  int executing_ = 0;  // handlers called and not yet finished
  std::unordered_map<std::string, bool> topic_matches_;
};

}  // namespace civicbus::broker::detail
