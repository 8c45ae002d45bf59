#include "civicbus/match/review.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "civicbus/storage/database.hpp"
#include "support/postgres.hpp"
#include "support/test_support.hpp"

namespace civicbus::match {
namespace {

ReviewItem pair(std::string left, std::string right, double probability, Json explanation = {}) {
  ReviewItem item;
  item.left_id = std::move(left);
  item.right_id = std::move(right);
  item.match_probability = probability;
  item.match_weight = std::log2(probability / (1 - probability));
  item.explanation = std::move(explanation);
  return item;
}

class QueueFixture {
 public:
  QueueFixture() { reopen(); }

  void reopen() {
    queue_.reset();
    db_.reset();
    auto db = storage::open_sqlite(storage::SqliteOptions{.path = dir_.file("civicbus.db")});
    REQUIRE_MESSAGE(db.ok(), db.status().to_string());
    db_ = std::move(*db);
    auto queue = ReviewQueue::open(*db_, &clock_);
    REQUIRE_MESSAGE(queue.ok(), queue.status().to_string());
    queue_ = std::move(*queue);
  }

  EnqueueReport enqueue(const std::vector<ReviewItem>& items) {
    auto r = queue_->enqueue(items);
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    return *r;
  }

  std::vector<ReviewItem> pending(std::size_t limit = 100) {
    auto p = queue_->pending(limit);
    REQUIRE_MESSAGE(p.ok(), p.status().to_string());
    return *p;
  }

  ReviewCounts counts() {
    auto c = queue_->counts();
    REQUIRE_MESSAGE(c.ok(), c.status().to_string());
    return *c;
  }

  std::int64_t id_of(const std::string& left, const std::string& right) {
    for (const auto& item : pending()) {
      if (item.left_id == left && item.right_id == right) return item.id;
    }
    FAIL("no pending item (", left, ", ", right, ")");
    return 0;
  }

  testing::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<ReviewQueue> queue_;
};

std::vector<std::string> pairs_of(const std::vector<ReviewItem>& items) {
  std::vector<std::string> out;
  for (const auto& i : items) out.push_back(i.left_id + "-" + i.right_id);
  return out;
}

TEST_CASE("review: pending pairs come highest probability first, one item per unordered pair") {
  QueueFixture f;
  auto report = f.enqueue({pair("a", "b", 0.7, Json::object({{"surname", "jaro_winkler"}})),
                           pair("c", "d", 0.9), pair("e", "f", 0.6)});
  CHECK(report.added == 3);
  CHECK(report.updated == 0);
  auto pending = f.pending();
  CHECK(pairs_of(pending) == std::vector<std::string>{"c-d", "a-b", "e-f"});
  CHECK(pending[1].status == ReviewStatus::kPending);
  CHECK(pending[1].explanation == Json::object({{"surname", "jaro_winkler"}}));
  CHECK(pending[1].enqueued_at == f.clock_.now());
  CHECK(pending[1].match_weight == doctest::Approx(std::log2(0.7 / 0.3)));
  CHECK_FALSE(pending[1].decided_at.has_value());
  CHECK(pairs_of(f.pending(2)) == std::vector<std::string>{"c-d", "a-b"});
  const std::int64_t ab = pending[1].id;

  // (b, a) is the same pair: re-scored in place, same id, first orientation kept.
  report = f.enqueue({pair("b", "a", 0.95, Json::object({{"surname", "exact"}}))});
  CHECK(report.added == 0);
  CHECK(report.updated == 1);
  pending = f.pending();
  CHECK(pairs_of(pending) == std::vector<std::string>{"a-b", "c-d", "e-f"});
  CHECK(pending[0].id == ab);
  CHECK(pending[0].match_probability == doctest::Approx(0.95));
  CHECK(pending[0].explanation == Json::object({{"surname", "exact"}}));

  // Twice in one batch: one item.
  report = f.enqueue({pair("g", "h", 0.5), pair("h", "g", 0.55)});
  CHECK(report.added == 1);
  CHECK(report.updated == 1);
  auto counts = f.counts();
  CHECK(counts.pending == 4);
  CHECK(counts.accepted == 0);
  CHECK(counts.rejected == 0);
}

TEST_CASE("review: decisions become labels and a decided pair is never reopened") {
  QueueFixture f;
  f.enqueue({pair("a", "b", 0.7), pair("c", "d", 0.9), pair("e", "f", 0.6)});
  const std::int64_t cd = f.id_of("c", "d");
  const std::int64_t ab = f.id_of("a", "b");
  f.clock_.advance(std::chrono::minutes(5));

  auto accepted = f.queue_->decide(cd, true, "clerk-ana", "same roll number, same owner");
  REQUIRE_MESSAGE(accepted.ok(), accepted.status().to_string());
  CHECK(accepted->status == ReviewStatus::kAccepted);
  CHECK(accepted->decided_by == "clerk-ana");
  CHECK(accepted->decided_at == f.clock_.now());
  CHECK(accepted->reason == "same roll number, same owner");
  auto rejected = f.queue_->decide(ab, false, "clerk-ben");
  REQUIRE_MESSAGE(rejected.ok(), rejected.status().to_string());
  CHECK(rejected->status == ReviewStatus::kRejected);

  auto stored = f.queue_->get(cd);
  REQUIRE(stored.ok());
  CHECK(stored->status == ReviewStatus::kAccepted);
  CHECK(stored->decided_by == "clerk-ana");
  CHECK(stored->decided_at == f.clock_.now());

  CHECK(pairs_of(f.pending()) == std::vector<std::string>{"e-f"});
  auto labels = f.queue_->labelled();
  REQUIRE(labels.ok());
  CHECK(*labels == std::vector<LabelledPair>{{"a", "b", false}, {"c", "d", true}});
  auto counts = f.counts();
  CHECK(counts.pending == 1);
  CHECK(counts.accepted == 1);
  CHECK(counts.rejected == 1);

  // The engine scores the pair again next run: the clerk's decision stands.
  auto report = f.enqueue({pair("d", "c", 0.99), pair("e", "f", 0.65), pair("x", "y", 0.8)});
  CHECK(report.already_decided == 1);
  CHECK(report.updated == 1);
  CHECK(report.added == 1);
  stored = f.queue_->get(cd);
  REQUIRE(stored.ok());
  CHECK(stored->status == ReviewStatus::kAccepted);
  CHECK(stored->match_probability == doctest::Approx(0.9));
  CHECK(f.counts().pending == 2);

  // Decisions survive a restart.
  f.reopen();
  labels = f.queue_->labelled();
  REQUIRE(labels.ok());
  CHECK(labels->size() == 2);
  CHECK(pairs_of(f.pending()) == std::vector<std::string>{"x-y", "e-f"});
  auto version = storage::schema_version(*f.db_, "match_review");
  REQUIRE(version.ok());
  CHECK(*version == 1);
}

TEST_CASE("review: errors name the item") {
  QueueFixture f;
  f.enqueue({pair("a", "b", 0.7)});
  const std::int64_t ab = f.id_of("a", "b");

  auto unknown = f.queue_->decide(9999, true, "clerk-ana");
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.status().code() == ErrorCode::kNotFound);
  CHECK(unknown.status().message() == "review item 9999 does not exist");
  CHECK(f.queue_->get(9999).status().code() == ErrorCode::kNotFound);

  auto nobody = f.queue_->decide(ab, true, "");
  REQUIRE_FALSE(nobody.ok());
  CHECK(nobody.status().code() == ErrorCode::kInvalidArgument);
  CHECK(f.counts().pending == 1);

  REQUIRE(f.queue_->decide(ab, true, "clerk-ana").ok());
  auto twice = f.queue_->decide(ab, false, "clerk-ben");
  REQUIRE_FALSE(twice.ok());
  CHECK(twice.status().code() == ErrorCode::kFailedPrecondition);
  CHECK(twice.status().message().find("review item " + std::to_string(ab) +
                                      " ('a', 'b') was already accepted by 'clerk-ana'") !=
        std::string::npos);
  CHECK(f.queue_->get(ab)->status == ReviewStatus::kAccepted);

  // A bad item refuses the whole batch.
  auto bad = f.queue_->enqueue({pair("c", "d", 0.6), pair("e", "e", 0.6)});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == ErrorCode::kInvalidArgument);
  CHECK(bad.status().message() ==
        "review item 1 ('e', 'e'): a record cannot be paired with itself");
  bad = f.queue_->enqueue({pair("c", "d", 1.5)});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("match_probability 1.5 is not within [0, 1]") !=
        std::string::npos);
  ReviewItem no_weight = pair("c", "d", 0.6);
  no_weight.match_weight = std::numeric_limits<double>::quiet_NaN();
  CHECK_FALSE(f.queue_->enqueue({no_weight}).ok());
  CHECK_FALSE(f.queue_->enqueue({pair("", "d", 0.6)}).ok());
  auto counts = f.counts();
  CHECK(counts.pending == 0);
  CHECK(counts.accepted == 1);
}

TEST_CASE("review: the same behaviour on PostgreSQL") {
  testing::Postgres server;
  ManualClock clock;
  auto db = storage::open_postgres(storage::PostgresOptions{.connection = server.uri()});
  REQUIRE_MESSAGE(db.ok(), db.status().to_string());
  auto queue = ReviewQueue::open(**db, &clock);
  REQUIRE_MESSAGE(queue.ok(), queue.status().to_string());
  auto report =
      (*queue)->enqueue({pair("a", "b", 0.7, Json::object({{"dob", "exact"}})), pair("c", "d", 0.9),
                         pair("b", "a", 0.75, Json::object({{"dob", "exact"}}))});
  REQUIRE_MESSAGE(report.ok(), report.status().to_string());
  CHECK(report->added == 2);
  CHECK(report->updated == 1);
  auto pending = (*queue)->pending(10);
  REQUIRE_MESSAGE(pending.ok(), pending.status().to_string());
  CHECK(pairs_of(*pending) == std::vector<std::string>{"c-d", "a-b"});
  CHECK((*pending)[1].match_probability == doctest::Approx(0.75));
  CHECK((*pending)[1].explanation == Json::object({{"dob", "exact"}}));
  auto decided = (*queue)->decide((*pending)[0].id, true, "clerk-ana", "same person");
  REQUIRE_MESSAGE(decided.ok(), decided.status().to_string());
  CHECK(decided->decided_at == clock.now());
  CHECK((*queue)->decide((*pending)[0].id, false, "clerk-ben").status().code() ==
        ErrorCode::kFailedPrecondition);
  auto labels = (*queue)->labelled();
  REQUIRE(labels.ok());
  CHECK(*labels == std::vector<LabelledPair>{{"c", "d", true}});
  auto counts = (*queue)->counts();
  REQUIRE(counts.ok());
  CHECK(counts->pending == 1);
  CHECK(counts->accepted == 1);
}

}  // namespace
}  // namespace civicbus::match
