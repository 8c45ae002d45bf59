// The clerical review queue: pairs the MatchEngine scored between its two thresholds wait here
// for a clerk to accept (same entity) or reject them; the decisions become labels the engine
// trains m and u from (MatchEngine::train_from_labels).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus::storage {
class Database;
}

namespace civicbus::match {

// A decided pair of record ids: the same entity (`match`) or not.
struct LabelledPair {
  std::string left_id;
  std::string right_id;
  bool match = false;
  friend bool operator==(const LabelledPair&, const LabelledPair&) = default;
};

enum class ReviewStatus { kPending, kAccepted, kRejected };
// "pending", "accepted", "rejected".
CIVICBUS_EXPORT std::string_view to_string(ReviewStatus status);

struct ReviewItem {
  std::int64_t id = 0;  // assigned by enqueue()
  std::string left_id;
  std::string right_id;
  double match_probability = 0;  // in [0, 1]
  double match_weight = 0;
  Json explanation;  // PairExplanation::to_json(), shown to the clerk
  ReviewStatus status = ReviewStatus::kPending;
  SystemTime enqueued_at;
  // Set by decide():
  std::string decided_by;
  std::optional<SystemTime> decided_at;
  std::string reason;
};

struct EnqueueReport {
  std::int64_t added = 0;            // new pending items
  std::int64_t updated = 0;          // pending items re-scored (probability, weight, explanation)
  std::int64_t already_decided = 0;  // pairs a clerk decided before: left as decided
};

struct ReviewCounts {
  std::int64_t pending = 0;
  std::int64_t accepted = 0;
  std::int64_t rejected = 0;
};

// Keeps review items in the table `match_review_items` of a Database it does not own (the
// database must outlive the queue). Thread-safe: every call is one statement or one
// transaction.
class CIVICBUS_EXPORT ReviewQueue {
 public:
  // Creates or migrates the table. `clock` (default: the system clock) stamps items and
  // decisions.
  static Result<std::unique_ptr<ReviewQueue>> open(storage::Database& db,
                                                   const Clock* clock = nullptr);
  ~ReviewQueue();
  ReviewQueue(const ReviewQueue&) = delete;
  ReviewQueue& operator=(const ReviewQueue&) = delete;

  // Queues pairs for review, in one transaction. A pair is unordered: (a, b) and (b, a) are
  // one item. Queuing a pending pair again updates its scores and explanation (the engine
  // re-scored it) and keeps its id; a decided pair is never reopened. Ids, status and
  // decision fields of the items given are ignored. Errors name the item (its index and ids).
  Result<EnqueueReport> enqueue(const std::vector<ReviewItem>& items);

  // Pending items, highest match probability first (then oldest first).
  Result<std::vector<ReviewItem>> pending(std::size_t limit = 100) const;
  Result<ReviewItem> get(std::int64_t id) const;

  // Records a clerk's decision and returns the decided item. An unknown id is kNotFound, an
  // item already decided kFailedPrecondition (both naming the id); `who` is required.
  Result<ReviewItem> decide(std::int64_t id, bool accept, std::string_view who,
                            std::string_view reason = {});

  // Every decided pair, in the order they were queued: the engine's training labels.
  Result<std::vector<LabelledPair>> labelled() const;
  Result<ReviewCounts> counts() const;

 private:
  struct Impl;
  explicit ReviewQueue(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace civicbus::match
