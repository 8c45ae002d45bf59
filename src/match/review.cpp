#include "civicbus/match/review.hpp"

#include <fmt/format.h>

#include <cmath>
#include <span>
#include <utility>

#include "civicbus/storage/database.hpp"

namespace civicbus::match {
namespace {

// `pair_low`/`pair_high` are the two ids in byte order: the unordered pair's key, so (a, b)
// and (b, a) are one item. left_id/right_id keep the order the engine first gave.
constexpr storage::Migration kMigrations[] = {
    {1, "clerical review items of the match engine",
     R"sql(
CREATE TABLE match_review_items (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  pair_low TEXT NOT NULL,
  pair_high TEXT NOT NULL,
  left_id TEXT NOT NULL,
  right_id TEXT NOT NULL,
  match_probability DOUBLE PRECISION NOT NULL,
  match_weight DOUBLE PRECISION NOT NULL,
  explanation TEXT NOT NULL,             -- JSON
  status TEXT NOT NULL,                  -- pending | accepted | rejected
  enqueued_at BIGINT NOT NULL,           -- Unix microseconds
  decided_by TEXT NOT NULL DEFAULT '',
  decided_at BIGINT,                     -- Unix microseconds; null while pending
  reason TEXT NOT NULL DEFAULT '',
  UNIQUE (pair_low, pair_high)
);
CREATE INDEX match_review_by_status ON match_review_items(status, match_probability);
)sql"},
};

std::span<const storage::Migration> migrations(storage::Dialect dialect) {
  if (dialect == storage::Dialect::kSqlite) return kMigrations;
  static const std::string sql = storage::ddl_for(dialect, kMigrations[0].sql);
  static const storage::Migration kPostgres[] = {{1, kMigrations[0].description, sql}};
  return kPostgres;
}

constexpr std::string_view kSelectItem =
    "SELECT id, left_id, right_id, match_probability, match_weight, explanation, status, "
    "enqueued_at, decided_by, decided_at, reason FROM match_review_items ";

Result<ReviewStatus> parse_status(std::string_view text) {
  if (text == "pending") return ReviewStatus::kPending;
  if (text == "accepted") return ReviewStatus::kAccepted;
  if (text == "rejected") return ReviewStatus::kRejected;
  return data_loss(fmt::format("review status '{}' is not pending, accepted or rejected", text));
}

Result<ReviewItem> read_item(const storage::Row& row) {
  ReviewItem item;
  item.id = row.get_int(0);
  item.left_id = std::string(row.get_text(1));
  item.right_id = std::string(row.get_text(2));
  item.match_probability = row.get_double(3);
  item.match_weight = row.get_double(4);
  auto explanation = Json::parse(row.get_text(5));
  if (!explanation.ok()) {
    return data_loss(fmt::format("review item {} has an unreadable explanation: {}", item.id,
                                 explanation.status().message()));
  }
  item.explanation = std::move(*explanation);
  CIVICBUS_ASSIGN_OR_RETURN(item.status, parse_status(row.get_text(6)));
  item.enqueued_at = from_unix_micros(row.get_int(7));
  item.decided_by = std::string(row.get_text(8));
  if (!row.is_null(9)) item.decided_at = from_unix_micros(row.get_int(9));
  item.reason = std::string(row.get_text(10));
  return item;
}

Status check_item(const ReviewItem& item, std::size_t index) {
  auto where = [&] {
    return fmt::format("review item {} ('{}', '{}')", index, item.left_id, item.right_id);
  };
  if (item.left_id.empty() || item.right_id.empty()) {
    return invalid_argument(where() + ": both record ids are required");
  }
  if (item.left_id == item.right_id) {
    return invalid_argument(where() + ": a record cannot be paired with itself");
  }
  if (!std::isfinite(item.match_probability) || item.match_probability < 0 ||
      item.match_probability > 1) {
    return invalid_argument(fmt::format("{}: match_probability {} is not within [0, 1]", where(),
                                        item.match_probability));
  }
  if (!std::isfinite(item.match_weight)) {
    return invalid_argument(
        fmt::format("{}: match_weight {} is not a finite number", where(), item.match_weight));
  }
  return {};
}

}  // namespace

std::string_view to_string(ReviewStatus status) {
  switch (status) {
    case ReviewStatus::kPending:
      return "pending";
    case ReviewStatus::kAccepted:
      return "accepted";
    case ReviewStatus::kRejected:
      return "rejected";
  }
  return "pending";
}

struct ReviewQueue::Impl {
  storage::Database& db;
  const Clock& clock;

  Result<std::optional<ReviewItem>> find(std::int64_t id) const {
    std::optional<ReviewItem> found;
    Status read_status;
    CIVICBUS_RETURN_IF_ERROR(
        db.query(std::string(kSelectItem) + "WHERE id = ?", {id}, [&](const storage::Row& row) {
          auto item = read_item(row);
          if (!item.ok()) {
            read_status = item.status();
          } else {
            found = std::move(*item);
          }
          return false;
        }));
    CIVICBUS_RETURN_IF_ERROR(read_status);
    return found;
  }
};

ReviewQueue::ReviewQueue(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ReviewQueue::~ReviewQueue() = default;

Result<std::unique_ptr<ReviewQueue>> ReviewQueue::open(storage::Database& db, const Clock* clock) {
  static const SystemClock kSystemClock;
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(db, "match_review", migrations(db.dialect())));
  return std::unique_ptr<ReviewQueue>(
      new ReviewQueue(std::make_unique<Impl>(Impl{db, clock ? *clock : kSystemClock})));
}

Result<EnqueueReport> ReviewQueue::enqueue(const std::vector<ReviewItem>& items) {
  for (std::size_t i = 0; i < items.size(); ++i) {
    CIVICBUS_RETURN_IF_ERROR(check_item(items[i], i));
  }
  EnqueueReport report;
  storage::Database& db = impl_->db;
  const std::int64_t now = to_unix_micros(impl_->clock.now());
  CIVICBUS_RETURN_IF_ERROR(db.transaction([&]() -> Status {
    for (const ReviewItem& item : items) {
      const bool ordered = item.left_id < item.right_id;
      const std::string& low = ordered ? item.left_id : item.right_id;
      const std::string& high = ordered ? item.right_id : item.left_id;
      const std::string explanation =
          item.explanation.is_null() ? std::string("{}") : item.explanation.dump();
      std::optional<std::string> status;
      CIVICBUS_RETURN_IF_ERROR(
          db.query("SELECT status FROM match_review_items WHERE pair_low = ? AND pair_high = ?",
                   {low, high}, [&](const storage::Row& row) {
                     status = std::string(row.get_text(0));
                     return false;
                   }));
      if (!status) {
        CIVICBUS_RETURN_IF_ERROR(
            db.execute("INSERT INTO match_review_items (pair_low, pair_high, left_id, right_id, "
                       "match_probability, match_weight, explanation, status, enqueued_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                       {low, high, item.left_id, item.right_id, item.match_probability,
                        item.match_weight, explanation, now})
                .status());
        ++report.added;
      } else if (*status == "pending") {
        CIVICBUS_RETURN_IF_ERROR(
            db.execute("UPDATE match_review_items SET match_probability = ?, match_weight = ?, "
                       "explanation = ? WHERE pair_low = ? AND pair_high = ?",
                       {item.match_probability, item.match_weight, explanation, low, high})
                .status());
        ++report.updated;
      } else {
        ++report.already_decided;
      }
    }
    return Status();
  }));
  return report;
}

Result<std::vector<ReviewItem>> ReviewQueue::pending(std::size_t limit) const {
  std::vector<ReviewItem> out;
  Status read_status;
  CIVICBUS_RETURN_IF_ERROR(impl_->db.query(
      std::string(kSelectItem) +
          "WHERE status = 'pending' ORDER BY match_probability DESC, id ASC LIMIT ?",
      {static_cast<std::int64_t>(limit)}, [&](const storage::Row& row) {
        auto item = read_item(row);
        if (!item.ok()) {
          read_status = item.status();
          return false;
        }
        out.push_back(std::move(*item));
        return true;
      }));
  CIVICBUS_RETURN_IF_ERROR(read_status);
  return out;
}

Result<ReviewItem> ReviewQueue::get(std::int64_t id) const {
  CIVICBUS_ASSIGN_OR_RETURN(std::optional<ReviewItem> item, impl_->find(id));
  if (!item) return not_found(fmt::format("review item {} does not exist", id));
  return std::move(*item);
}

Result<ReviewItem> ReviewQueue::decide(std::int64_t id, bool accept, std::string_view who,
                                       std::string_view reason) {
  if (who.empty()) {
    return invalid_argument(
        fmt::format("deciding review item {}: who decided is required (the clerk's name)", id));
  }
  storage::Database& db = impl_->db;
  const std::int64_t now = to_unix_micros(impl_->clock.now());
  std::optional<ReviewItem> decided;
  CIVICBUS_RETURN_IF_ERROR(db.transaction([&]() -> Status {
    CIVICBUS_ASSIGN_OR_RETURN(std::optional<ReviewItem> item, impl_->find(id));
    if (!item) return not_found(fmt::format("review item {} does not exist", id));
    if (item->status != ReviewStatus::kPending) {
      return failed_precondition(
          fmt::format("review item {} ('{}', '{}') was already {} by '{}' at {}", id, item->left_id,
                      item->right_id, to_string(item->status), item->decided_by,
                      item->decided_at ? format_rfc3339(*item->decided_at) : std::string("?")));
    }
    const std::string_view status = accept ? "accepted" : "rejected";
    CIVICBUS_RETURN_IF_ERROR(
        db.execute("UPDATE match_review_items SET status = ?, decided_by = ?, decided_at = ?, "
                   "reason = ? WHERE id = ? AND status = 'pending'",
                   {status, who, now, reason, id})
            .status());
    item->status = accept ? ReviewStatus::kAccepted : ReviewStatus::kRejected;
    item->decided_by = std::string(who);
    item->decided_at = from_unix_micros(now);
    item->reason = std::string(reason);
    decided = std::move(item);
    return Status();
  }));
  return std::move(*decided);
}

Result<std::vector<LabelledPair>> ReviewQueue::labelled() const {
  std::vector<LabelledPair> out;
  CIVICBUS_RETURN_IF_ERROR(impl_->db.query(
      "SELECT left_id, right_id, status FROM match_review_items WHERE status <> 'pending' "
      "ORDER BY id",
      {}, [&](const storage::Row& row) {
        out.push_back(LabelledPair{std::string(row.get_text(0)), std::string(row.get_text(1)),
                                   row.get_text(2) == "accepted"});
        return true;
      }));
  return out;
}

Result<ReviewCounts> ReviewQueue::counts() const {
  ReviewCounts counts;
  Status read_status;
  CIVICBUS_RETURN_IF_ERROR(
      impl_->db.query("SELECT status, COUNT(*) FROM match_review_items GROUP BY status", {},
                      [&](const storage::Row& row) {
                        auto status = parse_status(row.get_text(0));
                        if (!status.ok()) {
                          read_status = status.status();
                          return false;
                        }
                        switch (*status) {
                          case ReviewStatus::kPending:
                            counts.pending = row.get_int(1);
                            break;
                          case ReviewStatus::kAccepted:
                            counts.accepted = row.get_int(1);
                            break;
                          case ReviewStatus::kRejected:
                            counts.rejected = row.get_int(1);
                            break;
                        }
                        return true;
                      }));
  CIVICBUS_RETURN_IF_ERROR(read_status);
  return counts;
}

}  // namespace civicbus::match
