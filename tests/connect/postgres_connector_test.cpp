#include <doctest/doctest.h>

#include "civicbus/connect/connector.hpp"
#include "civicbus/storage/database.hpp"
#include "connect/postgres_server.hpp"
#include "support/test_support.hpp"

using namespace civicbus;
using namespace civicbus::connect;

namespace {

std::unique_ptr<storage::Database> open_pg(const std::string& uri) {
  auto db = storage::open_postgres(storage::PostgresOptions{.connection = uri});
  REQUIRE_MESSAGE(db.ok(), db.status().to_string());
  return std::move(db).value();
}

std::unique_ptr<Connector> make(std::string_view name) {
  auto c = ConnectorCatalog::builtin().create(name);
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  return std::move(c).value();
}

ConnectorContext context_for(const std::string& uri, Json extra = Json::object()) {
  ConnectorContext c;
  c.config = Json::object({{"uri", uri}});
  for (const auto& [k, v] : extra.as_object()) c.config.set(k, v);
  return c;
}

std::int64_t count(storage::Database& db, std::string_view sql) {
  auto n = db.query_int(sql);
  REQUIRE_MESSAGE(n.ok(), n.status().to_string());
  REQUIRE(n->has_value());
  return **n;
}

}  // namespace

TEST_CASE("postgres connector: discover reads types, nullability and the primary key") {
  std::string uri = test::fresh_postgres_database("pgconn");
  auto db = open_pg(uri);
  REQUIRE(db->execute_script(
                "CREATE TABLE permits (roll TEXT, seq INTEGER, issued DATE, fee NUMERIC(10,2) "
                "NOT NULL, paid BOOLEAN, extra JSONB, span INTERVAL, updated_at TIMESTAMPTZ, "
                "PRIMARY KEY (seq, roll));"
                "CREATE SCHEMA other; CREATE TABLE other.hidden (id BIGINT);")
              .ok());
  auto pg = make("postgres");
  CHECK(pg->spec().is_source);
  CHECK(pg->spec().is_sink);
  auto secrets = pg->spec().secret_pointers();
  CHECK(std::find(secrets.begin(), secrets.end(), "/uri") != secrets.end());
  CHECK(std::find(secrets.begin(), secrets.end(), "/password") != secrets.end());

  auto ctx = context_for(uri, Json::object({{"cursor_field", "updated_at"}}));
  REQUIRE(pg->check(ctx).ok());
  auto streams = pg->discover(ctx);
  REQUIRE_MESSAGE(streams.ok(), streams.status().to_string());
  REQUIRE(streams->size() == 1);  // only the public schema's table
  const StreamSpec& s = streams->front();
  CHECK(s.name == "permits");
  REQUIRE(s.fields.size() == 8);
  CHECK(s.field("roll")->type == FieldType::kString);
  CHECK_FALSE(s.field("roll")->nullable);  // part of the primary key
  CHECK(s.field("seq")->type == FieldType::kInteger);
  CHECK(s.field("issued")->type == FieldType::kDate);
  CHECK(s.field("fee")->type == FieldType::kNumber);
  CHECK_FALSE(s.field("fee")->nullable);
  CHECK(s.field("paid")->type == FieldType::kBoolean);
  CHECK(s.field("extra")->type == FieldType::kJson);
  CHECK(s.field("span")->type == FieldType::kString);  // no JSON counterpart: its text
  CHECK(s.field("updated_at")->type == FieldType::kTimestamp);
  CHECK(s.primary_key == std::vector<std::string>{"seq", "roll"});  // key order, not column order
  CHECK(s.cursor_field == "updated_at");

  auto other = pg->discover(context_for(uri, Json::object({{"schema", "other"}})));
  REQUIRE(other.ok());
  REQUIRE(other->size() == 1);
  CHECK(other->front().name == "hidden");

  auto bad = pg->discover(context_for(uri, Json::object({{"table", "nope"}})));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == ErrorCode::kNotFound);
  CHECK(bad.status().message().find("'nope'") != std::string::npos);
}

TEST_CASE("postgres connector: incremental reads resume after the cursor, values keep types") {
  std::string uri = test::fresh_postgres_database("pgconn");
  auto db = open_pg(uri);
  REQUIRE(db->execute_script(
                "CREATE TABLE permits (id BIGINT PRIMARY KEY, fee NUMERIC(10,2), paid BOOLEAN, "
                "extra JSONB, note TEXT, changed_at TIMESTAMP NOT NULL);"
                "INSERT INTO permits VALUES "
                "(1, 12.50, true, '{\"storeys\": 2}', 'it''s new', '2026-01-01 10:00:00'),"
                "(2, NULL, false, NULL, NULL, '2026-01-02 10:00:00'),"
                "(3, 7, NULL, '[1,2]', 'x', '2026-01-02 10:00:00');")
              .ok());
  auto pg = make("postgres");
  auto ctx = context_for(uri, Json::object({{"table", "permits"}, {"cursor_field", "changed_at"}}));
  ReadRequest req;
  req.batch_size = 2;
  CollectingEmitter out;
  REQUIRE(pg->read(ctx, req, out).ok());
  REQUIRE(out.record_count() == 3);
  RecordBatch& first = out.batches.front();
  Json row = first.to_object(first.records[0]);
  CHECK(row["id"].as_int() == 1);
  CHECK(row["fee"].as_double() == doctest::Approx(12.5));
  CHECK(row["paid"].as_bool() == true);
  CHECK(row["extra"]["storeys"].as_int() == 2);
  CHECK(row["note"].as_string() == "it's new");
  CHECK(row["changed_at"].as_string() == "2026-01-01 10:00:00");
  Json second = first.to_object(first.records[1]);
  CHECK(second["fee"].is_null());
  CHECK(second["paid"].as_bool() == false);
  REQUIRE(out.states.at_pointer("/permits/cursor") != nullptr);
  CHECK(out.states.at_pointer("/permits/cursor")->as_string() == "2026-01-02 10:00:00");

  // Only rows changed after the committed cursor are read next time.
  REQUIRE(db->execute_script("INSERT INTO permits VALUES (4, 1, true, NULL, 'late', "
                             "'2026-01-03 09:00:00'); UPDATE permits SET note = 'changed', "
                             "changed_at = '2026-01-04 00:00:00' WHERE id = 1")
              .ok());
  ReadRequest next = req;
  next.state = out.states;
  CollectingEmitter fresh;
  REQUIRE(pg->read(ctx, next, fresh).ok());
  REQUIRE(fresh.record_count() == 2);
  CHECK(fresh.batches[0].to_object(fresh.batches[0].records[0])["id"].as_int() == 4);
  CHECK(fresh.batches[0].to_object(fresh.batches[0].records[1])["note"].as_string() == "changed");

  // A query as the stream; its columns come from the first row.
  auto qctx = context_for(uri, Json::object({{"query", "SELECT id, note FROM permits WHERE id > 2"},
                                             {"cursor_field", "id"}}));
  auto qs = pg->discover(qctx);
  REQUIRE_MESSAGE(qs.ok(), qs.status().to_string());
  REQUIRE(qs->size() == 1);
  CHECK(qs->front().field("id")->type == FieldType::kInteger);
  CollectingEmitter q;
  REQUIRE(pg->read(qctx, ReadRequest{}, q).ok());
  CHECK(q.record_count() == 2);
  CHECK(q.states.at_pointer("/query/cursor")->as_int() == 4);
}

TEST_CASE("postgres connector: sink appends and upserts, refused rows reported, batches once") {
  std::string uri = test::fresh_postgres_database("pgconn");
  auto pg = make("postgres");
  auto ctx = context_for(uri, Json::object({{"table", "parcels"}}));

  // The table is created from the first batch with PostgreSQL types.
  RecordBatch batch("parcels", {"roll", "owner", "value", "vacant", "detail"});
  batch.records.push_back(
      {{Json("1901"), Json("A"), Json(100), Json(true), Json::object({{"zone", "R1"}})}, 2});
  batch.records.push_back({{Json("1902"), Json("B"), Json(200.5), Json(false), Json()}, 3});
  WriteRequest upsert;
  upsert.mode = WriteMode::kUpsert;
  upsert.key = {"roll"};
  upsert.batch_id = "run-1:0";
  auto r = pg->write(ctx, upsert, batch);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(r->written == 2);
  // A replay of the same batch id is acknowledged without writing.
  auto again = pg->write(ctx, upsert, batch);
  REQUIRE(again.ok());
  CHECK(again->written == 2);

  auto db = open_pg(uri);
  CHECK(count(*db, "SELECT COUNT(*) FROM parcels") == 2);
  CHECK(count(*db, "SELECT COUNT(*) FROM _civicbus_batches") == 1);
  CHECK(count(*db, "SELECT COUNT(*) FROM parcels WHERE vacant AND detail->>'zone' = 'R1'") == 1);

  RecordBatch update("parcels", {"roll", "owner", "value", "vacant", "detail"});
  update.records.push_back({{Json("1901"), Json("A2"), Json(150), Json(false), Json()}, 2});
  update.records.push_back({{Json("1903"), Json("C"), Json(300), Json(true), Json()}, 3});
  upsert.batch_id = "run-1:1";
  r = pg->write(ctx, upsert, update);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(count(*db, "SELECT COUNT(*) FROM parcels") == 3);
  CHECK(count(*db, "SELECT CAST(value AS BIGINT) FROM parcels WHERE roll = '1901'") == 150);

  // Refused rows (NOT NULL, a bad integer) are reported; the others load, in one transaction
  // that PostgreSQL would otherwise abort at the first error.
  REQUIRE(
      db->execute_script("CREATE TABLE strict_t (id BIGINT PRIMARY KEY, name TEXT NOT NULL)").ok());
  RecordBatch mixed("strict_t", {"id", "name"});
  mixed.records.push_back({{Json(1), Json("ok")}, 10});
  mixed.records.push_back({{Json(2), Json()}, 11});
  mixed.records.push_back({{Json("three"), Json("bad id")}, 12});
  mixed.records.push_back({{Json(4), Json("ok too")}, 13});
  WriteRequest append;
  append.stream = "strict_t";
  append.batch_id = "run-2:0";
  auto m = pg->write(ctx, append, mixed);
  REQUIRE_MESSAGE(m.ok(), m.status().to_string());
  CHECK(m->written == 2);
  REQUIRE(m->rejected.size() == 2);
  CHECK(m->rejected[0].position == 11);
  CHECK(m->rejected[0].reason.find("not-null") != std::string::npos);
  CHECK(m->rejected[1].position == 12);
  CHECK(count(*db, "SELECT COUNT(*) FROM strict_t") == 2);
  // The batch is recorded with its outcome, so a replay writes nothing.
  auto replay = pg->write(ctx, append, mixed);
  REQUIRE(replay.ok());
  CHECK(count(*db, "SELECT COUNT(*) FROM strict_t") == 2);
  CHECK(count(*db, "SELECT rejected FROM _civicbus_batches WHERE batch_id = 'run-2:0'") == 2);

  // The sink's bookkeeping table is not offered as a stream.
  auto streams = pg->discover(context_for(uri));
  REQUIRE(streams.ok());
  for (const auto& s : *streams) CHECK(s.name != "_civicbus_batches");
}

TEST_CASE("postgres connector: host, port, dbname, user and password instead of a uri") {
  test::postgres_server();
  std::string uri = test::fresh_postgres_database("pgconn");
  std::string dbname = uri.substr(uri.rfind('/') + 1);
  auto pg = make("postgres");
  ConnectorContext ctx;
  ctx.config = Json::object({{"host", "127.0.0.1"},
                             {"port", test::postgres_server().port()},
                             {"dbname", dbname},
                             {"user", test::postgres_server().user()},
                             {"password", "it's \\ secret"}});  // trust auth ignores it
  CHECK(validate_config(pg->spec(), ctx.config).ok());
  REQUIRE_MESSAGE(pg->check(ctx).ok(), pg->check(ctx).to_string());

  // Neither a uri nor a dbname: refused by the schema and by the connector.
  ConnectorContext none;
  none.config = Json::object({{"host", "127.0.0.1"}});
  CHECK_FALSE(validate_config(pg->spec(), none.config).ok());
  Status refused = pg->check(none);
  CHECK(refused.code() == ErrorCode::kInvalidArgument);
  CHECK(refused.message().find("'uri'") != std::string::npos);

  // A wrong database: the error names the target but never the password.
  ConnectorContext wrong = ctx;
  wrong.config.set("dbname", "no_such_db");
  Status missing = pg->check(wrong);
  CHECK(missing.code() == ErrorCode::kNotFound);
  CHECK(missing.message().find("secret") == std::string::npos);
}
