// Change data capture: SQLite triggers and PostgreSQL logical decoding into broker events,
// in commit order, at least once (a broker failure leaves changes pending) and stored once
// (replays carry the same event ids).
#include "civicbus/pipeline/cdc.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <set>

#include "broker/broker_fixture.hpp"
#include "civicbus/storage/database.hpp"
#include "pipeline/cdc_source.hpp"
#include "support/postgres.hpp"
#include "support/test_support.hpp"

using namespace civicbus;
using namespace civicbus::pipeline;
using civicbus::broker::testing_support::BrokerFixture;

namespace {

void require_ok(const Status& s) {
  REQUIRE_MESSAGE(s.ok(), s.to_string());
}

// Forwards to a real broker; publish can be made to fail before storing (the broker is
// down) or after storing (the acknowledgement is lost, as in a crash right after publish).
class FlakyBroker final : public broker::Broker {
 public:
  explicit FlakyBroker(broker::Broker& inner) : inner_(inner) {}

  std::atomic<int> fail_after{-1};     // publishes that succeed before failures start; -1: none
  std::atomic<bool> lose_acks{false};  // failures store the event and report an error

  Result<broker::PublishAck> publish(broker::CloudEvent event) override {
    if (fail_after.load() == 0) {
      if (lose_acks.load()) inner_.publish(std::move(event)).status().ignore_error();
      return unavailable("test broker: publish failed");
    }
    if (fail_after.load() > 0) --fail_after;
    return inner_.publish(std::move(event));
  }
  void publish_async(broker::CloudEvent event,
                     std::function<void(Result<broker::PublishAck>)> done) override {
    done(publish(std::move(event)));
  }

  Status create_topic(const broker::TopicOptions& o, std::string_view a) override {
    return inner_.create_topic(o, a);
  }
  Status update_topic(const broker::TopicOptions& o, std::string_view a) override {
    return inner_.update_topic(o, a);
  }
  Result<broker::TopicInfo> topic(std::string_view n) const override { return inner_.topic(n); }
  std::vector<broker::TopicInfo> topics() const override { return inner_.topics(); }
  Result<std::unique_ptr<broker::Subscription>> subscribe(broker::ConsumerGroupOptions o,
                                                          broker::Handler h) override {
    return inner_.subscribe(std::move(o), std::move(h));
  }
  Result<std::unique_ptr<broker::Subscription>> subscribe_async(broker::ConsumerGroupOptions o,
                                                                broker::AsyncHandler h) override {
    return inner_.subscribe_async(std::move(o), std::move(h));
  }
  Result<std::vector<broker::GroupInfo>> groups() override { return inner_.groups(); }
  Status seek_group(std::string_view g, std::int64_t o) override { return inner_.seek_group(g, o); }
  Status seek_group_to_time(std::string_view g, SystemTime t) override {
    return inner_.seek_group_to_time(g, t);
  }
  Result<std::vector<broker::DeliveredEvent>> read(std::string_view p, std::int64_t f,
                                                   std::size_t l) override {
    return inner_.read(p, f, l);
  }
  Status set_compatibility(std::string_view s, SchemaCompatibility m, std::string_view a) override {
    return inner_.set_compatibility(s, m, a);
  }
  Result<broker::SchemaVersion> register_schema(std::string_view s, const Json& j,
                                                std::string_view a) override {
    return inner_.register_schema(s, j, a);
  }
  Result<broker::SchemaVersion> acknowledge_schema(std::string_view s, int v,
                                                   std::string_view g) override {
    return inner_.acknowledge_schema(s, v, g);
  }
  Result<broker::SchemaVersion> activate_schema(std::string_view s, int v,
                                                std::string_view a) override {
    return inner_.activate_schema(s, v, a);
  }
  Result<std::vector<broker::SchemaVersion>> schema_versions(std::string_view s) override {
    return inner_.schema_versions(s);
  }
  Result<std::vector<broker::DeadLetter>> dead_letters(const broker::DlqFilter& f) override {
    return inner_.dead_letters(f);
  }
  Result<std::int64_t> replay_dead_letters(const broker::DlqFilter& f,
                                           std::string_view a) override {
    return inner_.replay_dead_letters(f, a);
  }
  Status grant_pii(std::string_view t, std::string_view g, std::string_view a) override {
    return inner_.grant_pii(t, g, a);
  }
  Status revoke_pii(std::string_view t, std::string_view g, std::string_view a) override {
    return inner_.revoke_pii(t, g, a);
  }
  Status shred_pii(std::string_view t, std::string_view a) override {
    return inner_.shred_pii(t, a);
  }
  Result<std::vector<broker::AuditRecord>> audit_records(std::int64_t f, std::size_t l) override {
    return inner_.audit_records(f, l);
  }
  Result<broker::AuditReport> verify_audit() override { return inner_.verify_audit(); }
  Json asyncapi() const override { return inner_.asyncapi(); }
  Status run_maintenance() override { return inner_.run_maintenance(); }
  void close() override {}

 private:
  broker::Broker& inner_;
};

std::vector<broker::DeliveredEvent> events_of(broker::Broker& b,
                                              std::string_view pattern = "cdc.>") {
  auto events = b.read(pattern, 0, 1000);
  REQUIRE_MESSAGE(events.ok(), events.status().to_string());
  return std::move(events).value();
}

std::unique_ptr<storage::Database> open_sqlite_file(const std::string& path) {
  storage::SqliteOptions o;
  o.path = path;
  auto db = storage::open_sqlite(o);
  REQUIRE_MESSAGE(db.ok(), db.status().to_string());
  return std::move(db).value();
}

std::unique_ptr<ChangeCapture> open_capture(storage::Database& db, broker::Broker& b,
                                            std::vector<std::string> tables,
                                            std::string slot = "civicbus_cdc") {
  ChangeCaptureOptions o;
  o.tables = std::move(tables);
  o.source = "civicbus://cdc/test";
  o.slot = std::move(slot);
  auto capture = ChangeCapture::open(db, b, o);
  REQUIRE_MESSAGE(capture.ok(), capture.status().to_string());
  return std::move(capture).value();
}

std::int64_t count(storage::Database& db, std::string_view sql) {
  auto n = db.query_int(sql);
  REQUIRE_MESSAGE(n.ok(), n.status().to_string());
  return n->value_or(-1);
}

}  // namespace

TEST_CASE("cdc sqlite: changes of several transactions come out in commit order with images") {
  BrokerFixture fx;
  testing::TempDir dir;
  auto app = open_sqlite_file(dir.file("app.db"));
  require_ok(app->execute_script(
      "CREATE TABLE permits (id INTEGER PRIMARY KEY, status TEXT, fee REAL, scan BLOB);"
      "CREATE TABLE \"Folder People\" (id INTEGER PRIMARY KEY, name TEXT);"
      "CREATE TABLE untracked (id INTEGER PRIMARY KEY);"));
  // The capture has a connection of its own, as it would next to a running application.
  auto cdc_db = open_sqlite_file(dir.file("app.db"));
  auto capture = open_capture(*cdc_db, fx.broker(), {"permits", "Folder People"});
  // Topics exist before the first change.
  CHECK(fx.broker().topic("cdc.permits.changed").ok());
  CHECK(fx.broker().topic("cdc.folder_people.changed").ok());

  require_ok(app->transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(app->execute("INSERT INTO permits VALUES (1, 'applied', 12.5, ?)",
                                          {storage::Blob{std::string_view("\x01\x02", 2)}})
                                 .status());
    CIVICBUS_RETURN_IF_ERROR(
        app->execute("INSERT INTO \"Folder People\" VALUES (7, 'O''Brien')").status());
    return app->execute("INSERT INTO untracked VALUES (1)").status();
  }));
  require_ok(
      app->execute("UPDATE permits SET status = 'issued', fee = NULL WHERE id = 1").status());
  // A rolled-back transaction leaves no change.
  CHECK_FALSE(app->transaction([&]() -> Status {
                   CIVICBUS_RETURN_IF_ERROR(
                       app->execute("INSERT INTO permits (id, status) VALUES (3, 'x')").status());
                   return aborted("changed my mind");
                 })
                  .ok());
  require_ok(app->transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(app->execute("DELETE FROM permits WHERE id = 1").status());
    return app->execute("INSERT INTO permits (id, status) VALUES (2, 'applied')").status();
  }));

  auto polled = capture->poll();
  REQUIRE_MESSAGE(polled.ok(), polled.status().to_string());
  CHECK(polled->published == 5);
  CHECK(polled->duplicates == 0);
  CHECK(count(*cdc_db, "SELECT COUNT(*) FROM _civicbus_changes") == 0);

  auto events = events_of(fx.broker());
  REQUIRE(events.size() == 5);
  std::vector<std::string> ops;
  std::int64_t last_seq = 0;
  for (auto& e : events) {
    ops.push_back(e.event.data().get_string("op"));
    std::int64_t seq = e.event.data().get_int("commit_seq");
    CHECK(seq > last_seq);
    last_seq = seq;
    CHECK(e.event.source() == "civicbus://cdc/test");
    CHECK_FALSE(e.event.data().get_string("committed_at").empty());
  }
  CHECK(ops == std::vector<std::string>{"insert", "insert", "update", "delete", "insert"});

  const Json& first = events[0].event.data();
  CHECK(events[0].event.type() == "cdc.permits.changed");
  CHECK(first.get_string("table") == "permits");
  CHECK(first.find("before")->is_null());
  CHECK(first.at_pointer("/after/id")->as_int() == 1);
  CHECK(first.at_pointer("/after/fee")->as_double() == doctest::Approx(12.5));
  CHECK(first.at_pointer("/after/scan")->as_string() == "0102");  // blobs as hex

  CHECK(events[1].event.type() == "cdc.folder_people.changed");
  CHECK(events[1].event.data().at_pointer("/after/name")->as_string() == "O'Brien");

  const Json& update = events[2].event.data();
  CHECK(update.at_pointer("/before/status")->as_string() == "applied");
  CHECK(update.at_pointer("/after/status")->as_string() == "issued");
  CHECK(update.at_pointer("/after/fee")->is_null());

  const Json& removed = events[3].event.data();
  CHECK(removed.at_pointer("/before/status")->as_string() == "issued");
  CHECK(removed.find("after")->is_null());
  CHECK(events[4].event.data().at_pointer("/after/id")->as_int() == 2);

  // Nothing new: nothing published.
  auto again = capture->poll();
  REQUIRE(again.ok());
  CHECK(again->published == 0);
  CHECK(events_of(fx.broker()).size() == 5);
}

TEST_CASE("cdc sqlite: a broker failure leaves changes pending and a later poll delivers once") {
  BrokerFixture fx;
  FlakyBroker flaky(fx.broker());
  testing::TempDir dir;
  auto db = open_sqlite_file(dir.file("app.db"));
  require_ok(db->execute_script("CREATE TABLE permits (id INTEGER PRIMARY KEY, status TEXT)"));
  auto capture = open_capture(*db, flaky, {"permits"});
  for (int i = 1; i <= 4; ++i) {
    require_ok(
        db->execute("INSERT INTO permits VALUES (?, 'applied')", {std::int64_t{i}}).status());
  }

  // The broker takes one change, then is down: the rest stay in the change log.
  flaky.fail_after = 1;
  auto failed = capture->poll();
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.status().code() == ErrorCode::kUnavailable);
  CHECK(failed.status().message().find("stays pending") != std::string::npos);
  CHECK(events_of(fx.broker()).size() == 1);
  CHECK(count(*db, "SELECT COUNT(*) FROM _civicbus_changes") == 3);

  // The broker stores the next one but its acknowledgement is lost (a crash after publish).
  flaky.lose_acks = true;
  flaky.fail_after = 0;
  CHECK_FALSE(capture->poll().ok());
  CHECK(events_of(fx.broker()).size() == 2);
  CHECK(count(*db, "SELECT COUNT(*) FROM _civicbus_changes") == 3);

  // Healed: the three pending changes are published; the one already stored is recognised by
  // its id and not stored twice.
  flaky.fail_after = -1;
  auto healed = capture->poll();
  REQUIRE_MESSAGE(healed.ok(), healed.status().to_string());
  CHECK(healed->published == 3);
  CHECK(healed->duplicates == 1);
  auto events = events_of(fx.broker());
  REQUIRE(events.size() == 4);
  std::set<std::string> ids;
  for (std::size_t i = 0; i < events.size(); ++i) {
    CHECK(events[i].event.data().at_pointer("/after/id")->as_int() == static_cast<int>(i) + 1);
    ids.insert(events[i].event.id());
  }
  CHECK(ids.size() == 4);
  CHECK(count(*db, "SELECT COUNT(*) FROM _civicbus_changes") == 0);
}

TEST_CASE("cdc sqlite: background polling, reinstall after schema change and uninstall") {
  BrokerFixture fx;
  testing::TempDir dir;
  auto db = open_sqlite_file(dir.file("app.db"));
  require_ok(db->execute_script("CREATE TABLE permits (id INTEGER PRIMARY KEY, status TEXT)"));
  {
    auto capture = open_capture(*db, fx.broker(), {"permits"});
    require_ok(capture->start(std::chrono::milliseconds(10)));
    CHECK(capture->running());
    CHECK(capture->start(std::chrono::milliseconds(10)).code() == ErrorCode::kFailedPrecondition);
    require_ok(db->execute("INSERT INTO permits VALUES (1, 'applied')").status());
    CHECK(testing::wait_until([&] { return events_of(fx.broker()).size() == 1; },
                              std::chrono::seconds(10)));
    capture->stop();
    CHECK_FALSE(capture->running());
    require_ok(capture->last_error());
  }
  // Changes made while no capture runs are kept by the triggers and published later.
  require_ok(db->execute("INSERT INTO permits VALUES (2, 'applied')").status());
  require_ok(db->execute_script("ALTER TABLE permits ADD COLUMN ward INTEGER"));
  auto capture = open_capture(*db, fx.broker(), {"permits"});  // re-created triggers
  require_ok(db->execute("INSERT INTO permits VALUES (3, 'applied', 10)").status());
  auto polled = capture->poll();
  REQUIRE(polled.ok());
  CHECK(polled->published == 2);
  auto events = events_of(fx.broker());
  REQUIRE(events.size() == 3);
  CHECK(events[1].event.data().at_pointer("/after/ward") == nullptr);
  CHECK(events[2].event.data().at_pointer("/after/ward")->as_int() == 10);

  require_ok(capture->uninstall());
  CHECK(count(*db, "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE '_civicbus%'") == 0);
  require_ok(db->execute("INSERT INTO permits VALUES (4, 'applied', 1)").status());

  // A table that does not exist is refused by name.
  ChangeCaptureOptions bad;
  bad.tables = {"nope"};
  auto refused = ChangeCapture::open(*db, fx.broker(), bad);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == ErrorCode::kInvalidArgument);
  CHECK(refused.status().message().find("'nope'") != std::string::npos);
  CHECK(ChangeCapture::open(*db, fx.broker(), ChangeCaptureOptions{}).status().code() ==
        ErrorCode::kInvalidArgument);
}

TEST_CASE("cdc postgres: test_decoding lines parse with quotes, NULLs and bracketed types") {
  using detail::DecodedLine;
  auto begin = detail::parse_test_decoding("BEGIN 529");
  REQUIRE(begin.ok());
  CHECK(begin->kind == DecodedLine::Kind::kBegin);
  CHECK(begin->xid == "529");

  auto commit = detail::parse_test_decoding("COMMIT 529 (at 2026-12-01 21:00:00.123456+00)");
  REQUIRE(commit.ok());
  CHECK(commit->kind == DecodedLine::Kind::kCommit);
  CHECK(commit->committed_at == "2026-12-01T21:00:00.123456+00:00");
  CHECK(detail::timestamptz_to_rfc3339("2026-12-01 16:00:00-05") == "2026-12-01T16:00:00-05:00");
  CHECK(detail::timestamptz_to_rfc3339("2026-12-01 21:30:00+05:30") == "2026-12-01T21:30:00+05:30");

  auto insert = detail::parse_test_decoding(
      "table public.\"Folder \"\"X\"\"\": INSERT: id[integer]:1 note[text]:'it''s  a '' test' "
      "fee[numeric]:12.50 ok[boolean]:true tags[text[]]:'{a,b}' gone[text]:null "
      "doc[jsonb]:'{\"a\": [1, 2]}' \"My Col\"[character varying(20)]:'x y' "
      "big[bigint]:-9000000000 r[double precision]:NaN");
  REQUIRE_MESSAGE(insert.ok(), insert.status().to_string());
  CHECK(insert->kind == DecodedLine::Kind::kChange);
  CHECK(insert->schema == "public");
  CHECK(insert->table == "Folder \"X\"");
  CHECK(insert->op == "insert");
  const Json& a = insert->after;
  CHECK(a.get_int("id") == 1);
  CHECK(a.get_string("note") == "it's  a ' test");
  CHECK(a.find("fee")->as_double() == doctest::Approx(12.5));
  CHECK(a.find("ok")->as_bool());
  CHECK(a.get_string("tags") == "{a,b}");
  CHECK(a.find("gone")->is_null());
  CHECK(a.at_pointer("/doc/a/1")->as_int() == 2);
  CHECK(a.get_string("My Col") == "x y");
  CHECK(a.get_int("big") == -9000000000LL);
  CHECK(a.get_string("r") == "NaN");

  auto update = detail::parse_test_decoding(
      "table s.t: UPDATE: old-key: id[integer]:1 v[text]:'old-key: new-tuple:' new-tuple: "
      "id[integer]:1 v[text]:'new' blob[text]:unchanged-toast-datum");
  REQUIRE_MESSAGE(update.ok(), update.status().to_string());
  CHECK(update->op == "update");
  CHECK(update->before.get_string("v") == "old-key: new-tuple:");
  CHECK(update->after.get_string("v") == "new");
  CHECK(update->unchanged_toast == std::vector<std::string>{"blob"});

  auto no_old = detail::parse_test_decoding("table public.t: UPDATE: id[integer]:2");
  REQUIRE(no_old.ok());
  CHECK(no_old->before.is_null());
  CHECK(no_old->after.get_int("id") == 2);

  auto del = detail::parse_test_decoding("table public.t: DELETE: (no-tuple-data)");
  REQUIRE(del.ok());
  CHECK(del->op == "delete");
  CHECK(del->before.is_null());
  CHECK(detail::parse_test_decoding("table public.t: TRUNCATE: (no-flags)")->op == "truncate");
  CHECK(detail::parse_test_decoding("message: transactional: 1 prefix: x, sz: 1 content:y")->kind ==
        DecodedLine::Kind::kOther);

  for (const char* bad :
       {"table public.t: INSERT: id[integer]:'open", "table public.t: INSERT: id[integer:1",
        "table public.t: MERGE: x", "table \"open: INSERT:"}) {
    auto r = detail::parse_test_decoding(bad);
    CHECK_MESSAGE(!r.ok(), bad);
    if (!r.ok()) CHECK(r.status().message().find("test_decoding output") != std::string::npos);
  }
}

namespace {
testing::Postgres& pg_server() {
  static testing::Postgres server;
  return server;
}
std::unique_ptr<storage::Database> open_pg(const std::string& uri) {
  auto db = storage::open_postgres(storage::PostgresOptions{.connection = uri});
  REQUIRE_MESSAGE(db.ok(), db.status().to_string());
  return std::move(db).value();
}
}  // namespace

TEST_CASE("cdc postgres: logical decoding publishes commits in order with full before images") {
  BrokerFixture fx;
  std::string uri = pg_server().create_database("cdc_order");
  auto app = open_pg(uri);
  // Logical decoding reads only flushed WAL, and the test server commits asynchronously:
  // the application's commits are made synchronous so they are decodable at once.
  require_ok(app->execute_script("SET synchronous_commit = on"));
  auto cdc_db = open_pg(uri);
  require_ok(app->execute_script(
      "CREATE TABLE permits (id BIGINT PRIMARY KEY, status TEXT, fee NUMERIC(8,2), "
      "issued DATE, extra JSONB);"
      "CREATE TABLE untracked (id BIGINT PRIMARY KEY);"));
  auto capture = open_capture(*cdc_db, fx.broker(), {"permits"}, "cdc_order_slot");

  require_ok(app->transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(app->execute("INSERT INTO permits VALUES (1, 'it''s applied', 12.50, "
                                          "'2026-12-01', '{\"storeys\": 2}')")
                                 .status());
    CIVICBUS_RETURN_IF_ERROR(
        app->execute("INSERT INTO permits (id, status) VALUES (2, 'applied')").status());
    return app->execute("INSERT INTO untracked VALUES (1)").status();
  }));
  require_ok(app->execute("INSERT INTO untracked VALUES (2)").status());  // skipped entirely
  require_ok(
      app->execute("UPDATE permits SET status = 'issued', fee = NULL WHERE id = 1").status());
  CHECK_FALSE(app->transaction([&]() -> Status {
                   CIVICBUS_RETURN_IF_ERROR(
                       app->execute("INSERT INTO permits (id) VALUES (3)").status());
                   return aborted("rolled back");
                 })
                  .ok());
  require_ok(app->execute("DELETE FROM permits WHERE id = 2").status());

  auto polled = capture->poll();
  REQUIRE_MESSAGE(polled.ok(), polled.status().to_string());
  CHECK(polled->published == 4);
  auto events = events_of(fx.broker());
  REQUIRE(events.size() == 4);
  std::vector<std::string> ops;
  for (auto& e : events) ops.push_back(e.event.data().get_string("op"));
  CHECK(ops == std::vector<std::string>{"insert", "insert", "update", "delete"});
  // The two inserts share their commit; commits are in order.
  CHECK(events[0].event.data().get_string("lsn") == events[1].event.data().get_string("lsn"));
  CHECK(events[1].event.data().get_int("commit_seq") <
        events[2].event.data().get_int("commit_seq"));
  CHECK(events[2].event.data().get_int("commit_seq") <
        events[3].event.data().get_int("commit_seq"));
  CHECK(events[0].event.type() == "cdc.permits.changed");
  CHECK(events[0].event.time().find('T') != std::string::npos);

  const Json& first = events[0].event.data();
  CHECK(first.at_pointer("/after/id")->as_int() == 1);
  CHECK(first.at_pointer("/after/status")->as_string() == "it's applied");
  CHECK(first.at_pointer("/after/fee")->as_double() == doctest::Approx(12.5));
  CHECK(first.at_pointer("/after/issued")->as_string() == "2026-12-01");
  CHECK(first.at_pointer("/after/extra/storeys")->as_int() == 2);

  const Json& update = events[2].event.data();
  CHECK(update.at_pointer("/before/status")->as_string() == "it's applied");
  CHECK(update.at_pointer("/before/fee")->as_double() == doctest::Approx(12.5));
  CHECK(update.at_pointer("/after/fee")->is_null());

  // The deleted row had NULL columns, which test_decoding leaves out of the old tuple: the
  // before image still lists them.
  const Json& removed = events[3].event.data();
  CHECK(removed.at_pointer("/before/id")->as_int() == 2);
  REQUIRE(removed.at_pointer("/before/fee") != nullptr);
  CHECK(removed.at_pointer("/before/fee")->is_null());
  CHECK(removed.find("after")->is_null());

  auto again = capture->poll();
  REQUIRE(again.ok());
  CHECK(again->published == 0);

  require_ok(capture->uninstall());
  CHECK(count(*app,
              "SELECT COUNT(*) FROM pg_replication_slots WHERE slot_name = "
              "'cdc_order_slot'") == 0);
}

TEST_CASE("cdc postgres: a broker failure mid-transaction keeps the slot, the retry stores once") {
  BrokerFixture fx;
  FlakyBroker flaky(fx.broker());
  std::string uri = pg_server().create_database("cdc_retry");
  auto app = open_pg(uri);
  // Logical decoding reads only flushed WAL, and the test server commits asynchronously:
  // the application's commits are made synchronous so they are decodable at once.
  require_ok(app->execute_script("SET synchronous_commit = on"));
  auto cdc_db = open_pg(uri);
  require_ok(app->execute_script("CREATE TABLE permits (id BIGINT PRIMARY KEY, status TEXT)"));
  auto capture = open_capture(*cdc_db, flaky, {"permits"}, "cdc_retry_slot");
  require_ok(app->transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(app->execute("INSERT INTO permits VALUES (1, 'a')").status());
    return app->execute("INSERT INTO permits VALUES (2, 'b')").status();
  }));
  require_ok(app->execute("INSERT INTO permits VALUES (3, 'c')").status());

  // The first change of the first transaction is stored, the second fails: the slot cannot
  // advance inside a transaction, so all three stay pending.
  flaky.fail_after = 1;
  REQUIRE_FALSE(capture->poll().ok());
  CHECK(events_of(fx.broker()).size() == 1);

  flaky.fail_after = -1;
  auto healed = capture->poll();
  REQUIRE_MESSAGE(healed.ok(), healed.status().to_string());
  CHECK(healed->published == 3);
  CHECK(healed->duplicates == 1);  // the first change, recognised by its id
  auto events = events_of(fx.broker());
  REQUIRE(events.size() == 3);
  for (std::size_t i = 0; i < events.size(); ++i) {
    CHECK(events[i].event.data().at_pointer("/after/id")->as_int() == static_cast<int>(i) + 1);
  }
  // A new capture on the same slot (a restart) finds nothing left to publish.
  capture.reset();
  auto restarted = open_capture(*cdc_db, flaky, {"permits"}, "cdc_retry_slot");
  auto polled = restarted->poll();
  REQUIRE(polled.ok());
  CHECK(polled->published == 0);
  require_ok(restarted->uninstall());
}
