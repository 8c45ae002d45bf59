#include "broker/audit_log.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "civicbus/storage/database.hpp"
#include "support/test_support.hpp"

namespace civicbus::broker {
namespace {

const std::string kMasterKey(32, '\x11');
const std::string kOtherKey(32, '\x22');

class AuditFixture {
 public:
  AuditFixture() { open_db(); }

  void open_db() {
    log_.reset();
    db_.reset();
    storage::SqliteOptions options;
    options.path = dir_.file("audit.db");
    auto db = storage::open_sqlite(options);
    REQUIRE_MESSAGE(db.ok(), db.status().to_string());
    db_ = std::move(db).value();
  }

  AuditLog& open_log(const std::string& key = kMasterKey) {
    log_.reset();
    auto log = AuditLog::open(*db_, key, clock_);
    REQUIRE_MESSAGE(log.ok(), log.status().to_string());
    log_ = std::move(log).value();
    return *log_;
  }

  void append_n(int n) {
    for (int i = 0; i < n; ++i) {
      clock_.advance(std::chrono::milliseconds(1));
      Status s = log_->append("alice", "topic.updated", fmt::format("topic.{}", i % 7),
                              Json::object({{"i", i}, {"note", "n\"ote"}}));
      REQUIRE_MESSAGE(s.ok(), s.to_string());
    }
  }

  void sql(const std::string& script) {
    Status s = db_->execute_script(script);
    REQUIRE_MESSAGE(s.ok(), s.to_string());
  }

  AuditReport verify() {
    auto report = log_->verify();
    REQUIRE_MESSAGE(report.ok(), report.status().to_string());
    return std::move(report).value();
  }

  storage::Database& db() { return *db_; }
  AuditLog& log() { return *log_; }
  ManualClock& clock() { return clock_; }

 private:
  testing::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<AuditLog> log_;
};

bool any_problem_has(const AuditReport& report, std::string_view a, std::string_view b = {}) {
  return std::any_of(report.problems.begin(), report.problems.end(), [&](const std::string& p) {
    return p.find(a) != std::string::npos && p.find(b) != std::string::npos;
  });
}

std::string all_problems(const AuditReport& report) {
  std::string out;
  for (const auto& p : report.problems) out += p + "\n";
  return out;
}

TEST_CASE("audit: a chain of 1000 records verifies and reads back in order") {
  AuditFixture f;
  f.open_log();
  f.append_n(1000);
  CHECK(f.log().last_seq() == 1000);

  AuditReport report = f.verify();
  CHECK_MESSAGE(report.intact, all_problems(report));
  CHECK(report.records == 1000);
  CHECK(report.problems.empty());

  auto first = f.log().records(1, 3);
  REQUIRE(first.ok());
  REQUIRE(first->size() == 3);
  CHECK((*first)[0].seq == 1);
  CHECK((*first)[0].actor == "alice");
  CHECK((*first)[0].action == "topic.updated");
  CHECK((*first)[0].subject == "topic.0");
  CHECK((*first)[0].detail == Json::object({{"i", 0}, {"note", "n\"ote"}}));
  CHECK((*first)[0].hash.size() == 64);
  CHECK((*first)[1].at > (*first)[0].at);

  auto tail = f.log().records(995, 100);
  REQUIRE(tail.ok());
  REQUIRE(tail->size() == 6);
  CHECK(tail->back().seq == 1000);
  CHECK(f.log().records(1, 0)->empty());
}

TEST_CASE("audit: an empty log verifies") {
  AuditFixture f;
  f.open_log();
  AuditReport report = f.verify();
  CHECK(report.intact);
  CHECK(report.records == 0);
}

TEST_CASE("audit: the master key must be 32 bytes") {
  AuditFixture f;
  auto log = AuditLog::open(f.db(), "short", f.clock());
  REQUIRE_FALSE(log.ok());
  CHECK(log.status().code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("audit: editing a record's detail or actor is detected, naming the seq") {
  AuditFixture f;
  f.open_log();
  f.append_n(100);

  SUBCASE("detail") {
    f.sql("UPDATE broker_audit SET detail = '{\"i\":999}' WHERE seq = 17");
  }
  SUBCASE("actor") {
    f.sql("UPDATE broker_audit SET actor = 'mallory' WHERE seq = 17");
  }
  SUBCASE("time") {
    f.sql("UPDATE broker_audit SET recorded_at = recorded_at + 1 WHERE seq = 17");
  }

  AuditReport report = f.verify();
  CHECK_FALSE(report.intact);
  CHECK(report.records == 100);
  REQUIRE_MESSAGE(report.problems.size() == 1, all_problems(report));
  CHECK(report.problems[0].find("seq 17:") != std::string::npos);
  CHECK(report.problems[0].find("edited") != std::string::npos);
}

TEST_CASE("audit: an edit with a re-computed unkeyed hash is still detected") {
  AuditFixture f;
  f.open_log();
  f.append_n(10);
  // Whoever edits without the key can only make up a hash; the next record's link breaks
  // too but is not reported twice.
  f.sql("UPDATE broker_audit SET detail = '{}', hash = '" + std::string(64, 'a') +
        "' WHERE seq = 4");
  AuditReport report = f.verify();
  CHECK_FALSE(report.intact);
  REQUIRE_MESSAGE(report.problems.size() == 1, all_problems(report));
  CHECK(report.problems[0].find("seq 4:") != std::string::npos);
}

TEST_CASE("audit: a deleted middle record is detected") {
  AuditFixture f;
  f.open_log();
  f.append_n(1000);
  f.sql("DELETE FROM broker_audit WHERE seq = 500");
  AuditReport report = f.verify();
  CHECK_FALSE(report.intact);
  CHECK(report.records == 999);
  REQUIRE_MESSAGE(report.problems.size() == 1, all_problems(report));
  CHECK(report.problems[0] == "seq 500: missing (deleted)");
}

TEST_CASE("audit: deleting the last records is detected by the head") {
  AuditFixture f;
  f.open_log();
  f.append_n(1000);
  f.sql("DELETE FROM broker_audit WHERE seq > 997");

  SUBCASE("head left alone") {
    AuditReport report = f.verify();
    CHECK_FALSE(report.intact);
    REQUIRE_MESSAGE(report.problems.size() == 1, all_problems(report));
    CHECK(report.problems[0].find("seq 998..1000: missing at the tail (truncated)") == 0);
  }
  SUBCASE("head moved back without the key") {
    f.sql(
        "UPDATE broker_audit_head SET seq = 997, "
        "hash = (SELECT hash FROM broker_audit WHERE seq = 997)");
    AuditReport report = f.verify();
    CHECK_FALSE(report.intact);
    CHECK_MESSAGE(any_problem_has(report, "head: does not match its MAC"), all_problems(report));
  }
  SUBCASE("head deleted too") {
    f.sql("DELETE FROM broker_audit_head");
    AuditReport report = f.verify();
    CHECK_FALSE(report.intact);
    CHECK_MESSAGE(any_problem_has(report, "head: missing"), all_problems(report));
  }
  SUBCASE("the next append keeps the gap visible instead of re-sealing a shorter chain") {
    f.open_log();  // as after a restart
    f.append_n(1);
    CHECK(f.log().last_seq() == 1001);
    AuditReport report = f.verify();
    CHECK_FALSE(report.intact);
    REQUIRE_MESSAGE(report.problems.size() == 1, all_problems(report));
    CHECK(report.problems[0] == "seq 998..1000: missing (deleted)");
  }
}

TEST_CASE("audit: swapping two records is detected as a reordering") {
  AuditFixture f;
  f.open_log();
  f.append_n(50);
  SUBCASE("swap their seq numbers") {
    f.sql(
        "UPDATE broker_audit SET seq = -1 WHERE seq = 10;"
        "UPDATE broker_audit SET seq = 10 WHERE seq = 11;"
        "UPDATE broker_audit SET seq = 11 WHERE seq = -1;");
  }
  SUBCASE("swap every column but seq") {
    f.sql(
        "CREATE TEMP TABLE t AS SELECT * FROM broker_audit WHERE seq IN (10, 11);"
        "UPDATE broker_audit SET (recorded_at, actor, action, subject, detail, prev_hash, hash) = "
        "(SELECT recorded_at, actor, action, subject, detail, prev_hash, hash FROM t "
        " WHERE t.seq = 21 - broker_audit.seq) WHERE seq IN (10, 11);"
        "DROP TABLE t;");
  }
  AuditReport report = f.verify();
  CHECK_FALSE(report.intact);
  CHECK(report.records == 50);
  REQUIRE_MESSAGE(report.problems.size() == 2, all_problems(report));
  CHECK(report.problems[0].find("seq 10: out of order (reordered)") == 0);
  CHECK(report.problems[0].find("now at seq 11") != std::string::npos);
  CHECK(report.problems[1].find("seq 11: out of order (reordered)") == 0);
}

TEST_CASE("audit: verifying with another master key reports every record") {
  AuditFixture f;
  f.open_log();
  f.append_n(40);
  f.open_log(kOtherKey);
  AuditReport report = f.verify();
  CHECK_FALSE(report.intact);
  CHECK(report.records == 40);
  for (int seq = 1; seq <= 40; ++seq) {
    CHECK_MESSAGE(any_problem_has(report, fmt::format("seq {}:", seq), "master key"), seq);
  }
  CHECK(any_problem_has(report, "head: does not match its MAC"));
  CHECK(any_problem_has(report, "no record matches its hash"));
}

TEST_CASE("audit: reopening continues the chain") {
  AuditFixture f;
  f.open_log();
  f.append_n(10);
  f.open_db();  // a restart: new connection, new AuditLog
  f.open_log();
  CHECK(f.log().last_seq() == 10);
  f.append_n(5);
  auto records = f.log().records(0, 100);
  REQUIRE(records.ok());
  REQUIRE(records->size() == 15);
  for (std::size_t i = 0; i < records->size(); ++i)
    CHECK((*records)[i].seq == static_cast<std::int64_t>(i) + 1);
  AuditReport report = f.verify();
  CHECK_MESSAGE(report.intact, all_problems(report));
  CHECK(report.records == 15);
}

TEST_CASE("audit: append joins the caller's transaction and survives its rollback") {
  AuditFixture f;
  f.open_log();
  f.append_n(3);
  Status rolled_back = f.db().transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(f.log().append("bob", "topic.created", "x", Json::object()));
    CIVICBUS_RETURN_IF_ERROR(f.log().append("bob", "topic.created", "y", Json::object()));
    return aborted("the caller changed its mind");
  });
  CHECK(rolled_back.code() == ErrorCode::kAborted);
  CHECK(f.log().records(0, 100)->size() == 3);

  // The in-memory tail must not point at the rolled-back records.
  REQUIRE(f.log().append("bob", "topic.created", "z", Json::object()).ok());
  auto records = f.log().records(0, 100);
  REQUIRE(records->size() == 4);
  CHECK(records->back().seq == 4);
  CHECK(records->back().subject == "z");
  AuditReport report = f.verify();
  CHECK_MESSAGE(report.intact, all_problems(report));

  Status committed = f.db().transaction(
      [&]() -> Status { return f.log().append("bob", "topic.created", "w", Json::object()); });
  CHECK(committed.ok());
  CHECK(f.log().records(0, 100)->size() == 5);
}

TEST_CASE("audit: two instances on one database keep one chain") {
  AuditFixture f;
  f.open_log();
  auto second = AuditLog::open(f.db(), kMasterKey, f.clock());
  REQUIRE(second.ok());
  for (int i = 0; i < 10; ++i) {
    REQUIRE(f.log().append("a", "x", "s", Json(i)).ok());
    REQUIRE((*second)->append("b", "x", "s", Json(i)).ok());
  }
  AuditReport report = f.verify();
  CHECK_MESSAGE(report.intact, all_problems(report));
  CHECK(report.records == 20);
}

TEST_CASE("audit: concurrent appends form one intact chain") {
  AuditFixture f;
  f.open_log();
  constexpr int kThreads = 4;
  constexpr int kEach = 200;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        if (!f.log().append(fmt::format("worker-{}", t), "event.published", "t", Json(i)).ok()) {
          ++failures;
        }
      }
    });
  }
  // verify() runs alongside the appends and must not blame the ones still arriving.
  AuditReport during = f.verify();
  CHECK_MESSAGE(during.intact, all_problems(during));
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  AuditReport report = f.verify();
  CHECK_MESSAGE(report.intact, all_problems(report));
  CHECK(report.records == kThreads * kEach);
}

}  // namespace
}  // namespace civicbus::broker
