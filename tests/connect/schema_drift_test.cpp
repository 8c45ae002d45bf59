#include "connect/schema_drift.hpp"

#include <doctest/doctest.h>

#include "support/postgres.hpp"
#include "support/test_support.hpp"

namespace civicbus::connect {
namespace {

StreamSpec permits_v1() {
  StreamSpec spec;
  spec.name = "permits";
  spec.fields = {{"permit_id", FieldType::kString, false},
                 {"ward", FieldType::kInteger, true},
                 {"issued_on", FieldType::kDate, true},
                 {"fee", FieldType::kNumber, true}};
  spec.primary_key = {"permit_id"};
  spec.cursor_field = "issued_on";
  return spec;
}

class DriftFixture {
 public:
  DriftFixture() { reopen(); }
  void reopen() {
    tracker_.reset();
    db_.reset();
    storage::SqliteOptions options;
    options.path = dir_.file("connect.db");
    auto db = storage::open_sqlite(options);
    REQUIRE(db.ok());
    db_ = std::move(*db);
    auto tracker = SchemaDriftTracker::open(*db_, clock_);
    REQUIRE_MESSAGE(tracker.ok(), tracker.status().to_string());
    tracker_ = std::move(*tracker);
  }
  DriftReport check(const StreamSpec& spec, DriftPolicy policy) {
    auto report = tracker_->check("permits-db", spec, policy);
    REQUIRE_MESSAGE(report.ok(), report.status().to_string());
    return *report;
  }

  testing::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<SchemaDriftTracker> tracker_;
};

TEST_CASE(
    "schema drift: diff lists added, removed, retyped and nullability "
    "changes") {
  StreamSpec before = permits_v1();
  StreamSpec after = before;
  after.fields = {{"permit_id", FieldType::kString, true},  // now nullable
                  {"ward", FieldType::kString, true},       // integer -> string
                  {"fee", FieldType::kNumber, true},
                  {"applicant", FieldType::kString, true}};  // added; issued_on removed
  after.primary_key = {"permit_id", "ward"};
  after.cursor_field = "";
  const auto changes = diff_schemas(before, after);
  REQUIRE(changes.size() == 6);
  CHECK(changes[0].kind == SchemaChangeKind::kNullabilityChanged);
  CHECK(changes[0].describe() == "field 'permit_id' changed from not null to nullable");
  CHECK(changes[1].kind == SchemaChangeKind::kTypeChanged);
  CHECK(changes[1].describe() == "field 'ward' changed type from integer to string");
  CHECK(changes[2].kind == SchemaChangeKind::kFieldRemoved);
  CHECK(changes[2].describe() == "field 'issued_on' was removed (was date)");
  CHECK(changes[3].kind == SchemaChangeKind::kFieldAdded);
  CHECK(changes[3].describe() == "field 'applicant' was added (string)");
  CHECK(changes[4].describe() == "primary key changed from [permit_id] to [permit_id, ward]");
  CHECK(changes[5].kind == SchemaChangeKind::kCursorFieldChanged);
  CHECK(diff_schemas(before, before).empty());
}

TEST_CASE("schema drift: the first run records, an unchanged schema passes") {
  DriftFixture f;
  DriftReport first = f.check(permits_v1(), DriftPolicy::kReject);
  CHECK(first.outcome == DriftOutcome::kRecorded);
  CHECK(first.may_run());
  f.reopen();
  auto recorded = f.tracker_->recorded("permits-db", "permits");
  REQUIRE(recorded.ok());
  REQUIRE(recorded->has_value());
  CHECK(recorded->value().fields == permits_v1().fields);
  CHECK(recorded->value().primary_key == permits_v1().primary_key);
  CHECK(recorded->value().cursor_field == "issued_on");

  DriftReport again = f.check(permits_v1(), DriftPolicy::kReject);
  CHECK(again.outcome == DriftOutcome::kUnchanged);
  CHECK(again.changes.empty());
  CHECK(again.to_status().ok());
}

TEST_CASE("schema drift: propagate accepts and records the new schema") {
  DriftFixture f;
  f.check(permits_v1(), DriftPolicy::kPropagate);
  StreamSpec v2 = permits_v1();
  v2.fields.push_back({"applicant", FieldType::kString, true});
  DriftReport report = f.check(v2, DriftPolicy::kPropagate);
  CHECK(report.outcome == DriftOutcome::kAccepted);
  CHECK(report.may_run());
  REQUIRE(report.changes.size() == 1);
  CHECK(report.changes[0].field == "applicant");
  CHECK(report.summary().find("propagated") != std::string::npos);
  CHECK(f.check(v2, DriftPolicy::kReject).outcome == DriftOutcome::kUnchanged);
}

TEST_CASE("schema drift: pause waits for an operator's accept, across restarts") {
  DriftFixture f;
  f.check(permits_v1(), DriftPolicy::kPause);
  StreamSpec v2 = permits_v1();
  v2.fields[1].type = FieldType::kString;
  DriftReport report = f.check(v2, DriftPolicy::kPause);
  CHECK(report.outcome == DriftOutcome::kPaused);
  CHECK_FALSE(report.may_run());
  Status status = report.to_status();
  CHECK(status.code() == ErrorCode::kFailedPrecondition);
  CHECK(status.message().find("paused until an operator accepts") != std::string::npos);
  CHECK(status.message().find("field 'ward' changed type from integer to string") !=
        std::string::npos);

  f.reopen();
  auto paused = f.tracker_->paused_streams("permits-db");
  REQUIRE(paused.ok());
  CHECK(*paused == std::vector<std::string>{"permits"});
  // Still paused on the next run; the recorded schema is still the old one.
  CHECK(f.check(v2, DriftPolicy::kPause).outcome == DriftOutcome::kPaused);
  CHECK(f.tracker_->recorded("permits-db", "permits")->value().fields[1].type ==
        FieldType::kInteger);

  REQUIRE(f.tracker_->accept("permits-db", "permits").ok());
  CHECK(f.tracker_->recorded("permits-db", "permits")->value().fields[1].type ==
        FieldType::kString);
  CHECK_FALSE(f.tracker_->pending("permits-db", "permits")->has_value());
  CHECK(f.check(v2, DriftPolicy::kPause).outcome == DriftOutcome::kUnchanged);
  CHECK(f.tracker_->accept("permits-db", "permits").code() == ErrorCode::kNotFound);
}

TEST_CASE("schema drift: a source that reverts clears the pending schema") {
  DriftFixture f;
  f.check(permits_v1(), DriftPolicy::kPause);
  StreamSpec v2 = permits_v1();
  v2.fields.pop_back();
  CHECK(f.check(v2, DriftPolicy::kPause).outcome == DriftOutcome::kPaused);
  CHECK(f.check(permits_v1(), DriftPolicy::kPause).outcome == DriftOutcome::kUnchanged);
  CHECK(f.tracker_->paused_streams("permits-db")->empty());
}

TEST_CASE("schema drift: reject fails the run and keeps the recorded schema") {
  DriftFixture f;
  f.check(permits_v1(), DriftPolicy::kReject);
  StreamSpec v2 = permits_v1();
  v2.fields.erase(v2.fields.begin() + 2);
  DriftReport report = f.check(v2, DriftPolicy::kReject);
  CHECK(report.outcome == DriftOutcome::kRejected);
  CHECK(report.to_status().code() == ErrorCode::kFailedPrecondition);
  CHECK(report.summary().find("field 'issued_on' was removed") != std::string::npos);
  CHECK(f.tracker_->recorded("permits-db", "permits")->value().fields.size() == 4);
  CHECK(f.check(v2, DriftPolicy::kReject).outcome == DriftOutcome::kRejected);

  auto erased = f.tracker_->erase("permits-db");
  REQUIRE(erased.ok());
  CHECK(*erased == 1);
  CHECK(f.check(v2, DriftPolicy::kReject).outcome == DriftOutcome::kRecorded);
}

TEST_CASE("schema drift: policy names") {
  CHECK(*parse_drift_policy("pause") == DriftPolicy::kPause);
  CHECK(drift_policy_name(DriftPolicy::kPropagate) == "propagate");
  auto bad = parse_drift_policy("ignore");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("'ignore'") != std::string::npos);
}

TEST_CASE("schema drift: the same behaviour on PostgreSQL") {
  testing::Postgres server;
  ManualClock clock;
  auto db = storage::open_postgres(storage::PostgresOptions{.connection = server.uri()});
  REQUIRE_MESSAGE(db.ok(), db.status().to_string());
  auto tracker = SchemaDriftTracker::open(**db, clock);
  REQUIRE_MESSAGE(tracker.ok(), tracker.status().to_string());
  auto check = [&](const StreamSpec& spec, DriftPolicy policy) {
    auto report = (*tracker)->check("permits-db", spec, policy);
    REQUIRE_MESSAGE(report.ok(), report.status().to_string());
    return report->outcome;
  };
  CHECK(check(permits_v1(), DriftPolicy::kPause) == DriftOutcome::kRecorded);
  StreamSpec v2 = permits_v1();
  v2.fields.push_back({"applicant", FieldType::kString, true});
  CHECK(check(v2, DriftPolicy::kPause) == DriftOutcome::kPaused);
  CHECK(check(v2, DriftPolicy::kPause) == DriftOutcome::kPaused);
  REQUIRE((*tracker)->accept("permits-db", "permits").ok());
  CHECK(check(v2, DriftPolicy::kReject) == DriftOutcome::kUnchanged);
  CHECK(check(permits_v1(), DriftPolicy::kPropagate) == DriftOutcome::kAccepted);
}

}  // namespace
}  // namespace civicbus::connect
