#include <doctest/doctest.h>

#include "civicbus/connect/connector.hpp"
#include "civicbus/storage/database.hpp"
#include "support/test_support.hpp"

using namespace civicbus;
using namespace civicbus::connect;

namespace {

std::unique_ptr<storage::Database> open_file(const std::string& path) {
  storage::SqliteOptions o;
  o.path = path;
  auto db = storage::open_sqlite(o);
  REQUIRE(db.ok());
  return std::move(db).value();
}

std::unique_ptr<Connector> make(std::string_view name) {
  auto c = ConnectorCatalog::builtin().create(name);
  REQUIRE(c.ok());
  return std::move(c).value();
}

ConnectorContext context_for(const std::string& path, Json extra = Json::object()) {
  ConnectorContext c;
  c.config = Json::object({{"path", path}});
  for (const auto& [k, v] : extra.as_object()) c.config.set(k, v);
  return c;
}

}  // namespace

TEST_CASE("sqlite connector: discover gives columns, types and the primary key") {
  testing::TempDir dir;
  auto db = open_file(dir.file("src.db"));
  REQUIRE(db->execute_script("CREATE TABLE permits (id INTEGER PRIMARY KEY, issued DATE, fee REAL "
                             "NOT NULL, note TEXT, updated_at TIMESTAMP)")
              .ok());
  auto sqlite = make("sqlite");
  CHECK(sqlite->spec().is_source);
  CHECK(sqlite->spec().is_sink);
  auto ctx = context_for(dir.file("src.db"),
                         Json::object({{"table", "permits"}, {"cursor_field", "updated_at"}}));
  REQUIRE(sqlite->check(ctx).ok());
  auto streams = sqlite->discover(ctx);
  REQUIRE(streams.ok());
  REQUIRE(streams->size() == 1);
  const StreamSpec& s = streams->front();
  CHECK(s.name == "permits");
  REQUIRE(s.fields.size() == 5);
  CHECK(s.field("id")->type == FieldType::kInteger);
  CHECK(s.field("issued")->type == FieldType::kDate);
  CHECK(s.field("fee")->type == FieldType::kNumber);
  CHECK_FALSE(s.field("fee")->nullable);
  CHECK(s.field("updated_at")->type == FieldType::kTimestamp);
  CHECK(s.primary_key == std::vector<std::string>{"id"});
  CHECK(s.cursor_field == "updated_at");
  Json schema = s.to_json_schema();
  CHECK(schema.at_pointer("/properties/issued/format")->as_string() == "date");

  auto bad = sqlite->discover(context_for(
      dir.file("src.db"), Json::object({{"table", "permits"}, {"cursor_field", "nope"}})));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("cursor_field 'nope'") != std::string::npos);
}

TEST_CASE("sqlite connector: incremental reads resume after the cursor, ties are re-read") {
  testing::TempDir dir;
  auto db = open_file(dir.file("src.db"));
  REQUIRE(db->execute_script("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)").ok());
  // Cursor values 1,1,2,2,2,3: a batch boundary inside a tie group must not lose rows.
  int ids[] = {1, 2, 3, 4, 5, 6};
  int vs[] = {1, 1, 2, 2, 2, 3};
  for (int i = 0; i < 6; ++i) {
    REQUIRE(db->execute("INSERT INTO t VALUES (?, ?)", {std::int64_t{ids[i]}, std::int64_t{vs[i]}})
                .ok());
  }
  auto sqlite = make("sqlite");
  auto ctx = context_for(dir.file("src.db"), Json::object({{"table", "t"}, {"cursor_field", "v"}}));
  ReadRequest req;
  req.batch_size = 4;  // first batch ends inside the "2" group
  CollectingEmitter out;
  REQUIRE(sqlite->read(ctx, req, out).ok());
  CHECK(out.record_count() == 6);
  REQUIRE(out.batches.size() == 2);
  CHECK(out.states.at_pointer("/t/cursor")->as_int() == 3);

  // Resuming from the checkpoint after the first batch (cursor 1: rows of "2" not all read).
  CollectingEmitter first_only;
  struct StopAfterFirst : RecordEmitter {
    CollectingEmitter& inner;
    explicit StopAfterFirst(CollectingEmitter& i) : inner(i) {}
    Status emit(RecordBatch b) override { return inner.emit(std::move(b)); }
    Status checkpoint(std::string_view s, Json st) override {
      inner.checkpoint(s, std::move(st)).ignore_error();
      return civicbus::cancelled("stop");
    }
  } stopper(first_only);
  CHECK(sqlite->read(ctx, req, stopper).code() == ErrorCode::kCancelled);
  REQUIRE(first_only.states.at_pointer("/t/cursor") != nullptr);
  CHECK(first_only.states.at_pointer("/t/cursor")->as_int() == 1);

  ReadRequest resume = req;
  resume.state = first_only.states;
  CollectingEmitter rest;
  REQUIRE(sqlite->read(ctx, resume, rest).ok());
  CHECK(rest.record_count() == 4);  // the three "2" rows and the "3"

  // New rows after the final state are the only ones read next time.
  REQUIRE(db->execute("INSERT INTO t VALUES (7, 4)").ok());
  ReadRequest next = req;
  next.state = out.states;
  CollectingEmitter fresh;
  REQUIRE(sqlite->read(ctx, next, fresh).ok());
  REQUIRE(fresh.record_count() == 1);
  CHECK(fresh.batches[0].records[0].values[0].as_int() == 7);
}

TEST_CASE("sqlite connector: upsert by key, refused rows reported while the rest load") {
  testing::TempDir dir;
  auto sqlite = make("sqlite");
  auto ctx = context_for(dir.file("out.db"), Json::object({{"table", "parcels"}}));
  RecordBatch batch("parcels", {"roll", "owner", "value"});
  batch.records.push_back({{Json("1901"), Json("A"), Json(100)}, 2});
  batch.records.push_back({{Json("1902"), Json("B"), Json(200)}, 3});
  WriteRequest w;
  w.mode = WriteMode::kUpsert;
  w.key = {"roll"};
  auto r = sqlite->write(ctx, w, batch);
  REQUIRE(r.ok());
  CHECK(r->written == 2);

  RecordBatch update("parcels", {"roll", "owner", "value"});
  update.records.push_back({{Json("1901"), Json("A2"), Json(150)}, 2});
  update.records.push_back({{Json("1903"), Json("C"), Json(300)}, 3});
  r = sqlite->write(ctx, w, update);
  REQUIRE(r.ok());
  auto db = open_file(dir.file("out.db"));
  CHECK(db->query_int("SELECT COUNT(*) FROM parcels")->value() == 3);
  CHECK(db->query_int("SELECT value FROM parcels WHERE roll = '1901'")->value() == 150);

  // A NOT NULL column refuses one row; the others are written.
  REQUIRE(db->execute_script("CREATE TABLE strict_t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
              .ok());
  RecordBatch mixed("strict_t", {"id", "name"});
  mixed.records.push_back({{Json(1), Json("ok")}, 10});
  mixed.records.push_back({{Json(2), Json()}, 11});
  mixed.records.push_back({{Json(3), Json("ok too")}, 12});
  WriteRequest append;
  append.stream = "strict_t";
  append.key = {"id"};
  auto m = sqlite->write(ctx, append, mixed);
  REQUIRE(m.ok());
  CHECK(m->written == 2);
  REQUIRE(m->rejected.size() == 1);
  CHECK(m->rejected[0].position == 11);
  CHECK(m->rejected[0].reason.find("NOT NULL") != std::string::npos);
  CHECK(db->query_int("SELECT COUNT(*) FROM strict_t")->value() == 2);

  // Upsert needs the key among the columns.
  WriteRequest bad = w;
  bad.key = {"missing"};
  auto e = sqlite->write(ctx, bad, batch);
  REQUIRE_FALSE(e.ok());
  CHECK(e.status().message().find("'missing'") != std::string::npos);
}

TEST_CASE("sqlite connector: a repeated batch id is acknowledged without writing twice") {
  testing::TempDir dir;
  auto sqlite = make("sqlite");
  auto ctx = context_for(dir.file("out.db"), Json::object({{"table", "log"}}));
  RecordBatch batch("log", {"n"});
  for (int i = 0; i < 5; ++i) batch.records.push_back({{Json(i)}, i + 1});
  WriteRequest w;
  w.batch_id = "run-1:0";
  auto first = sqlite->write(ctx, w, batch);
  REQUIRE(first.ok());
  CHECK(first->written == 5);
  auto again = sqlite->write(ctx, w, batch);
  REQUIRE(again.ok());
  CHECK(again->written == 5);
  w.batch_id = "run-1:1";
  REQUIRE(sqlite->write(ctx, w, batch).ok());
  auto db = open_file(dir.file("out.db"));
  CHECK(db->query_int("SELECT COUNT(*) FROM log")->value() == 10);
  // The bookkeeping table is not offered as a stream.
  auto streams = sqlite->discover(context_for(dir.file("out.db")));
  REQUIRE(streams.ok());
  REQUIRE(streams->size() == 1);
  CHECK(streams->front().name == "log");
}

TEST_CASE("connector catalog: third-party connectors register, names are unique") {
  struct Echo final : Connector {
    ConnectorSpec s;
    Echo() {
      s.name = "echo";
      s.config_schema = Json::parse(R"({"type":"object","required":["token"],
        "properties":{"token":{"type":"string","secret":true},
                      "auth":{"type":"object","properties":{"password":{"type":"string","airbyte_secret":true}}}}})")
                            .value();
    }
    const ConnectorSpec& spec() const override { return s; }
    Status check(const ConnectorContext&) override { return Status(); }
    Result<std::vector<StreamSpec>> discover(const ConnectorContext&) override {
      return std::vector<StreamSpec>{};
    }
  };
  ConnectorCatalog catalog;
  REQUIRE(catalog.add([] { return std::make_unique<Echo>(); }).ok());
  CHECK(catalog.contains("echo"));
  CHECK(catalog.add([] { return std::make_unique<Echo>(); }).code() == ErrorCode::kAlreadyExists);
  auto missing = catalog.create("nope");
  CHECK(missing.status().code() == ErrorCode::kNotFound);
  CHECK(missing.status().message().find("echo") != std::string::npos);

  auto echo = catalog.create("echo");
  REQUIRE(echo.ok());
  CHECK((*echo)->spec().secret_pointers() == std::vector<std::string>{"/token", "/auth/password"});
  // Not a source and not a sink by default.
  ConnectorContext ctx;
  CollectingEmitter out;
  CHECK((*echo)->read(ctx, ReadRequest{}, out).code() == ErrorCode::kFailedPrecondition);

  // Config errors name the property and never echo values (they may be secrets).
  Status bad = validate_config((*echo)->spec(), Json::object({{"token", 42}}));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.message().find("/token") != std::string::npos);
  CHECK(bad.message().find("42") == std::string::npos);
  CHECK(validate_config((*echo)->spec(), Json::object({{"token", "s3cr3t"}})).ok());

  // The built-in catalog lists its connectors by name.
  auto builtin = ConnectorCatalog::builtin().list();
  CHECK(std::is_sorted(builtin.begin(), builtin.end(),
                       [](const auto& a, const auto& b) { return a.name < b.name; }));
  CHECK(ConnectorCatalog::builtin().contains("sqlite"));
}

TEST_CASE("record batch: columns, short records and objects") {
  RecordBatch b("s", {"a"});
  b.append_object(Json::object({{"a", 1}, {"b", "x"}}), 7);
  b.append_object(Json::object({{"c", true}}), 8);
  CHECK(b.columns == std::vector<std::string>{"a", "b", "c"});
  CHECK(b.records[0].position == 7);
  CHECK(RecordBatch::value(b.records[0], 2).is_null());  // short record
  CHECK(b.to_object(b.records[1]) == Json::object({{"a", nullptr}, {"b", nullptr}, {"c", true}}));
  CHECK(b.column_index("zz") == -1);
  CHECK(parse_field_type("timestamp").value() == FieldType::kTimestamp);
  CHECK_FALSE(parse_field_type("float").ok());
}
