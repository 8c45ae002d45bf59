#include "broker/consumer_group.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>

#include "civicbus/core/executor.hpp"
#include "civicbus/core/metrics.hpp"

namespace civicbus::broker::detail {
namespace {

constexpr std::size_t kFetchBatch = 1024;
// Events one lane runs back to back on one thread before yielding to the executor.
constexpr int kInlineEvents = 64;

}  // namespace

ConsumerGroupRuntime::ConsumerGroupRuntime(GroupHost& host, ConsumerGroupOptions options,
                                           AsyncHandler handler, std::int64_t committed_offset)
    : host_(host),
      options_(std::move(options)),
      handler_(std::move(handler)),
      lanes_(static_cast<std::size_t>(std::max(1, options_.parallelism))),
      fetch_from_(committed_offset + 1),
      committed_(committed_offset),
      flushed_(committed_offset) {}

void ConsumerGroupRuntime::start() {
  {
    std::lock_guard lock(mu_);
    known_last_ = host_.transport().next_offset() - 1;
    schedule_fetch_locked();
  }
  poll_replays();
}

void ConsumerGroupRuntime::notify(std::int64_t last_offset) {
  std::lock_guard lock(mu_);
  known_last_ = std::max(known_last_, last_offset);
  schedule_fetch_locked();
}

void ConsumerGroupRuntime::schedule_fetch_locked() {
  if (stopping_ || fetch_scheduled_ || fetching_) return;
  if (fetch_from_ > known_last_) return;
  if (outstanding_.size() >= options_.max_in_flight) return;
  fetch_scheduled_ = true;
  host_.executor().post([self = shared_from_this()] { self->fetch(); });
}

bool ConsumerGroupRuntime::matches(const std::string& topic) {
  auto it = topic_matches_.find(topic);
  if (it != topic_matches_.end()) return it->second;
  bool m = std::any_of(options_.topics.begin(), options_.topics.end(),
                       [&](const std::string& p) { return topic_matches(p, topic); });
  topic_matches_.emplace(topic, m);
  return m;
}

std::size_t ConsumerGroupRuntime::lane_of(const transport::StoredRecord& record) const {
  if (lanes_.size() == 1) return 0;
  // Events without a key spread by id; events with one stay on one lane, in order.
  const std::string& key = record.partition_key.empty() ? record.event_id : record.partition_key;
  return std::hash<std::string>{}(key) % lanes_.size();
}

void ConsumerGroupRuntime::fetch() {
  std::int64_t from;
  std::size_t room;
  {
    std::lock_guard lock(mu_);
    fetch_scheduled_ = false;
    if (stopping_) return;
    fetching_ = true;
    from = fetch_from_;
    room = options_.max_in_flight - std::min(options_.max_in_flight, outstanding_.size());
  }
  auto records = host_.transport().read(from, kFetchBatch);
  std::unique_lock lock(mu_);
  fetching_ = false;
  if (!records.ok()) {
    host_.logger().error("fetch failed; retrying in 1 s",
                         {{"group", options_.group}, {"error", records.status().to_string()}});
    host_.executor().post_after(std::chrono::seconds(1), [self = shared_from_this()] {
      std::lock_guard l(self->mu_);
      self->schedule_fetch_locked();
    });
    return;
  }
  if (stopping_ || fetch_from_ != from) return;
  for (const auto& rec : *records) {
    if (room == 0) break;
    fetch_from_ = rec->offset + 1;
    if (!matches(rec->topic)) continue;
    outstanding_.insert(rec->offset);
    lanes_[lane_of(*rec)].queue.push_back(Item{rec, 1, 0, {}});
    --room;
  }
  if (!records->empty() && room > 0 && records->size() < kFetchBatch) {
    // Everything up to the end of what was read has been looked at.
    fetch_from_ = std::max(fetch_from_, records->back()->offset + 1);
  }
  if (records->empty()) {
    // Nothing at or after `from` yet (or the records there expired): wait for a commit.
    fetch_from_ = std::max(fetch_from_, std::min(known_last_ + 1, host_.transport().next_offset()));
  }
  advance_committed_locked();
  // This is already an executor thread: one lane runs here, the others are posted.
  const std::optional<std::size_t> here = start_idle_lanes_locked(/*keep_one=*/true);
  schedule_fetch_locked();
  lock.unlock();
  if (here) run_lane(*here);
}

std::optional<std::size_t> ConsumerGroupRuntime::start_idle_lanes_locked(bool keep_one) {
  std::optional<std::size_t> kept;
  for (std::size_t i = 0; i < lanes_.size(); ++i) {
    Lane& lane = lanes_[i];
    if (lane.busy || lane.queue.empty() || stopping_) continue;
    lane.busy = true;
    if (keep_one && !kept) {
      kept = i;
      continue;
    }
    host_.executor().post([self = shared_from_this(), i] { self->run_lane(i); });
  }
  return kept;
}

void ConsumerGroupRuntime::run_lane(std::size_t lane_index) {
  for (int budget = kInlineEvents; budget > 0; --budget) {
    Item item;
    {
      std::lock_guard lock(mu_);
      Lane& lane = lanes_[lane_index];
      if (stopping_ || lane.queue.empty()) {
        lane.busy = false;
        return;
      }
      item = lane.queue.front();
      ++executing_;
    }
    auto decoded = host_.decode(*item.record, options_.group);
    if (!decoded.ok()) {
      // An event this node cannot read (corrupt payload, shredded key material it needs) will
      // not get better by retrying: finish() dead-letters kDataLoss at once.
      if (!finish(lane_index,
                  Status(ErrorCode::kDataLoss,
                         "event could not be decoded: " + decoded.status().message()),
                  /*continue_inline=*/true)) {
        return;
      }
      continue;
    }
    DeliveredEvent& ev = *decoded;
    ev.attempt = item.attempt;
    ev.replay = item.dlq_id > 0;
    auto counters = host_.counters(options_.group, item.record->topic);
    if (counters.latency != nullptr && item.attempt == 1 && item.dlq_id == 0) {
      counters.latency->observe(std::max(
          0.0,
          std::chrono::duration<double>(host_.clock().now() - item.record->stored_at).count()));
    }
    // Whoever comes second of "the handler called done" and "the handler returned" settles
    // the event: done during the call leaves it to this loop (inline), done after the call
    // settles it from the callback and continues the lane through the executor.
    struct Completion {
      std::once_flag once;
      std::atomic<int> phase{0};  // 0 in the call, 1 done during the call, 2 call returned
      Status result;
    };
    auto completion = std::make_shared<Completion>();
    auto self = shared_from_this();
    handler_(ev, [self, lane_index, completion](Status result) {
      std::call_once(completion->once, [&] {
        completion->result = std::move(result);
        int in_call = 0;
        if (!completion->phase.compare_exchange_strong(in_call, 1)) {
          self->finish(lane_index, std::move(completion->result));
        }
      });
    });
    int in_call = 0;
    if (completion->phase.compare_exchange_strong(in_call, 2)) return;  // completes later
    if (!finish(lane_index, std::move(completion->result), /*continue_inline=*/true)) return;
  }
  // Budget spent with events left: let other work on the executor run, then go on.
  host_.executor().post([self = shared_from_this(), lane_index] { self->run_lane(lane_index); });
}

std::chrono::milliseconds ConsumerGroupRuntime::backoff(int failed_attempts) const {
  double ms = static_cast<double>(options_.initial_backoff.count()) *
              std::pow(options_.backoff_multiplier, std::max(0, failed_attempts - 1));
  ms = std::min(ms, static_cast<double>(options_.max_backoff.count()));
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
}

bool ConsumerGroupRuntime::finish(std::size_t lane_index, Status result, bool continue_inline) {
  std::unique_lock lock(mu_);
  Lane& lane = lanes_[lane_index];
  const transport::RecordPtr record = lane.queue.front().record;
  auto counters = host_.counters(options_.group, record->topic);
  bool done = false;
  if (result.ok()) {
    if (counters.delivered) counters.delivered->inc();
    const std::int64_t dlq_id = lane.queue.front().dlq_id;
    if (dlq_id > 0) {
      lock.unlock();
      Status st = host_.mark_replayed(dlq_id);
      lock.lock();
      if (!st.ok())
        host_.logger().error("could not mark dead letter replayed", {{"error", st.to_string()}});
    }
    done = true;
  } else {
    if (counters.errors) counters.errors->inc();
    Item& item = lane.queue.front();
    if (item.attempt == 1) item.first_failed_at = host_.clock().now();
    if (item.attempt >= options_.max_deliveries || result.code() == ErrorCode::kDataLoss) {
      // The dead letter must be durable before the offset can move past the event.
      const std::int64_t dlq_id = item.dlq_id;
      const int attempts = item.attempt;
      const SystemTime first_failed = item.first_failed_at;
      lock.unlock();
      Status st = host_.dead_letter(options_.group, *record, dlq_id, result.message(), attempts,
                                    first_failed);
      lock.lock();
      if (st.ok()) {
        if (counters.dead_lettered) counters.dead_lettered->inc();
        done = true;
      } else {
        host_.logger().error("could not store dead letter; will retry delivery",
                             {{"group", options_.group},
                              {"offset", std::to_string(record->offset)},
                              {"error", st.to_string()}});
      }
    }
  }
  --executing_;
  idle_cv_.notify_all();
  if (!done) {
    if (stopping_) {
      lane.busy = false;  // left unacknowledged: delivered again after a restart
      return false;
    }
    Item& again = lane.queue.front();
    ++again.attempt;
    host_.executor().post_after(
        backoff(again.attempt - 1),
        [self = shared_from_this(), lane_index] { self->run_lane(lane_index); });
    return false;  // the lane stays busy: later events of its keys wait for this one
  }
  Item finished = std::move(lane.queue.front());
  lane.queue.pop_front();
  if (finished.dlq_id > 0) {
    replays_in_progress_.erase(finished.dlq_id);
  } else {
    outstanding_.erase(finished.record->offset);
    advance_committed_locked();
  }
  bool run_next_here = false;
  if (!lane.queue.empty() && !stopping_) {
    if (continue_inline) {
      run_next_here = true;  // the lane stays busy; the caller runs its next event
    } else {
      host_.executor().post(
          [self = shared_from_this(), lane_index] { self->run_lane(lane_index); });
    }
  } else {
    lane.busy = false;
  }
  schedule_fetch_locked();
  return run_next_here;
}

void ConsumerGroupRuntime::advance_committed_locked() {
  std::int64_t c = outstanding_.empty() ? fetch_from_ - 1 : *outstanding_.begin() - 1;
  committed_ = std::max(committed_, c);
}

std::int64_t ConsumerGroupRuntime::committed_offset() const {
  std::lock_guard lock(mu_);
  return committed_;
}

Status ConsumerGroupRuntime::flush_offset() {
  std::int64_t c;
  {
    std::lock_guard lock(mu_);
    if (committed_ == flushed_) return {};
    c = committed_;
  }
  CIVICBUS_RETURN_IF_ERROR(host_.commit_offset(options_.group, c));
  std::lock_guard lock(mu_);
  flushed_ = std::max(flushed_, c);
  return {};
}

void ConsumerGroupRuntime::poll_replays() {
  std::set<std::int64_t> in_progress;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    in_progress = replays_in_progress_;
  }
  auto items = host_.pending_replays(options_.group, in_progress);
  if (!items.ok()) {
    host_.logger().error("could not load dead letters to replay",
                         {{"group", options_.group}, {"error", items.status().to_string()}});
    return;
  }
  std::lock_guard lock(mu_);
  for (auto& it : *items) {
    if (!replays_in_progress_.insert(it.dlq_id).second) continue;
    lanes_[lane_of(*it.record)].queue.push_back(Item{it.record, 1, it.dlq_id, {}});
  }
  start_idle_lanes_locked();
}

void ConsumerGroupRuntime::stop() {
  {
    std::unique_lock lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    // Handlers already running may finish (and be acknowledged); events waiting for a retry
    // stay unacknowledged and are delivered again after a restart.
    if (!idle_cv_.wait_for(lock, std::chrono::seconds(30), [&] { return executing_ == 0; })) {
      host_.logger().warn("stopping a group while handlers are still running",
                          {{"group", options_.group}, {"running", std::to_string(executing_)}});
    }
  }
  Status st = flush_offset();
  if (!st.ok()) {
    host_.logger().error("could not commit the group's offset at stop",
                         {{"group", options_.group}, {"error", st.to_string()}});
  }
}

}  // namespace civicbus::broker::detail
