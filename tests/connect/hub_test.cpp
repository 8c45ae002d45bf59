#include "civicbus/connect/hub.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <fstream>
#include <mutex>

#include "broker/broker_fixture.hpp"
#include "civicbus/storage/database.hpp"
#include "support/test_support.hpp"

using namespace civicbus;
using namespace civicbus::connect;
using civicbus::broker::testing_support::BrokerFixture;

namespace {

const std::string kMasterKey(32, '\x17');

// What the scripted connector does, shared with the test.
struct Script {
  std::mutex mu;
  bool down = false;               // check/read/call fail with kUnavailable
  bool extra_field = false;        // discover() adds a field (schema drift)
  std::int64_t rows = 5;           // rows 1..rows, cursor = id
  std::vector<std::string> calls;  // operations seen, in order
  Json last_config;                // the config the connector was given (secrets resolved)
  int reads = 0;
};

class Scripted final : public Connector {
 public:
  explicit Scripted(Script& s) : s_(s) {
    spec_.name = "scripted";
    spec_.config_schema = Json::parse(R"({"type":"object","required":["endpoint"],
      "properties":{"endpoint":{"type":"string"},"api_key":{"type":"string","secret":true}}})")
                              .value();
  }
  const ConnectorSpec& spec() const override { return spec_; }
  Status check(const ConnectorContext& ctx) override {
    std::lock_guard lock(s_.mu);
    s_.last_config = ctx.config;
    return s_.down ? unavailable("service down") : Status();
  }
  Result<std::vector<StreamSpec>> discover(const ConnectorContext&) override {
    std::lock_guard lock(s_.mu);
    if (s_.down) return unavailable("service down");
    StreamSpec s;
    s.name = "parcels";
    s.fields = {{"id", FieldType::kInteger, false}, {"roll", FieldType::kString, true}};
    if (s_.extra_field) s.fields.push_back({"ward", FieldType::kInteger, true});
    s.cursor_field = "id";
    s.primary_key = {"id"};
    return std::vector<StreamSpec>{s};
  }
  Status read(const ConnectorContext& ctx, const ReadRequest& request,
              RecordEmitter& out) override {
    std::int64_t start = 0;
    std::int64_t rows = 0;
    {
      std::lock_guard lock(s_.mu);
      s_.last_config = ctx.config;
      ++s_.reads;
      if (s_.down) return unavailable("service down");
      rows = s_.rows;
    }
    if (const Json* st = request.stream_state("parcels")) start = st->get_int("cursor");
    RecordBatch b("parcels", {"id", "roll"});
    for (std::int64_t id = start + 1; id <= rows; ++id) {
      b.records.push_back({{Json(id), Json(fmt::format("R{:04}", id))}, id});
      if (request.max_records > 0 && static_cast<std::int64_t>(b.size()) >= request.max_records)
        break;
    }
    std::int64_t last = b.empty() ? start : b.records.back().values[0].as_int();
    CIVICBUS_RETURN_IF_ERROR(out.emit(std::move(b)));
    return out.checkpoint("parcels", Json::object({{"cursor", last}}));
  }
  Result<Json> call(const ConnectorContext&, std::string_view operation,
                    const Json& input) override {
    std::lock_guard lock(s_.mu);
    if (s_.down) return unavailable("service down");
    s_.calls.push_back(std::string(operation) + ":" + input.get_string("q"));
    return Json::object({{"answer", "ok:" + input.get_string("q")}});
  }

 private:
  Script& s_;
  ConnectorSpec spec_;
};

struct HubFixture {
  testing::TempDir dir;
  Script script;
  ManualClock clock{SystemTime{std::chrono::seconds{1'780'000'000}}};  // 2026-05-28
  ConnectorCatalog catalog = ConnectorCatalog::builtin();
  std::unique_ptr<storage::Database> db;
  std::unique_ptr<ConnectorHub> hub;

  explicit HubFixture(broker::Broker* broker = nullptr) {
    REQUIRE(catalog.add([this] { return std::make_unique<Scripted>(script); }).ok());
    storage::SqliteOptions so;
    so.path = dir.file("node.db");
    db = storage::open_sqlite(so).value();
    open(broker);
  }
  void open(broker::Broker* broker = nullptr, std::string key = kMasterKey) {
    hub.reset();
    HubOptions o;
    o.data_dir = dir.path().string();
    HubDeps d;
    d.db = db.get();
    d.master_key = std::move(key);
    d.catalog = &catalog;
    d.clock = &clock;
    d.broker = broker;
    auto h = ConnectorHub::open(o, d);
    REQUIRE_MESSAGE(h.ok(), h.status().to_string());
    hub = std::move(h).value();
  }
  ConnectionOptions scripted(std::string name = "assessor") {
    ConnectionOptions c;
    c.name = std::move(name);
    c.connector = "scripted";
    c.config =
        Json::object({{"endpoint", "http://127.0.0.1:9/api"}, {"api_key", "k-very-secret-1"}});
    c.resilience.max_attempts = 1;
    c.resilience.failure_threshold = 2;
    c.resilience.open_for = std::chrono::minutes(1);
    return c;
  }
  ConnectionOptions sqlite_sink(std::string name = "warehouse") {
    ConnectionOptions c;
    c.name = std::move(name);
    c.connector = "sqlite";
    c.config = Json::object({{"path", dir.file("warehouse.db")}});
    return c;
  }
  std::int64_t warehouse_rows() {
    storage::SqliteOptions so;
    so.path = dir.file("warehouse.db");
    auto w = storage::open_sqlite(so).value();
    return w->query_int("SELECT COUNT(*) FROM property")->value_or(-1);
  }
};

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("hub: secrets go to the vault and never come back out") {
  HubFixture f;
  REQUIRE(f.hub->add(f.scripted()).ok());
  REQUIRE(f.hub->check("assessor").ok());
  CHECK(f.script.last_config.get_string("api_key") == "k-very-secret-1");  // resolved for the call
  auto shown = f.hub->options("assessor");
  REQUIRE(shown.ok());
  CHECK(shown->config.get_string("api_key") == "********");
  CHECK(shown->config.get_string("endpoint") == "http://127.0.0.1:9/api");
  auto status = f.hub->status("assessor");
  REQUIRE(status.ok());
  CHECK(status->config.get_string("api_key") == "********");
  f.db.reset();  // flush and close, then look at the bytes on disk
  std::string bytes = file_bytes(f.dir.file("node.db")) + file_bytes(f.dir.file("node.db-wal"));
  CHECK(bytes.find("k-very-secret-1") == std::string::npos);
}

TEST_CASE("hub: add validates the config, the schedule and the destination") {
  HubFixture f;
  auto c = f.scripted();
  c.config.erase("endpoint");
  Status s = f.hub->add(c);
  CHECK(s.code() == ErrorCode::kInvalidArgument);
  CHECK(s.message().find("endpoint") != std::string::npos);
  c = f.scripted();
  c.schedule = "0 25 * * *";
  s = f.hub->add(c);
  CHECK(s.message().find("hour") != std::string::npos);
  c = f.scripted();
  c.destination = "nowhere";
  CHECK(f.hub->add(c).code() == ErrorCode::kNotFound);
  c = f.scripted("Bad Name");
  CHECK(f.hub->add(c).code() == ErrorCode::kInvalidArgument);
  c = f.scripted();
  c.mapping = Json::parse(R"({"fields":{"x":{"expr":"upper("}}})").value();
  s = f.hub->add(c);
  CHECK(s.message().find("'x'") != std::string::npos);
}

TEST_CASE("hub: a sync maps records, loads them into the sink and commits the state after") {
  HubFixture f;
  REQUIRE(f.hub->add(f.sqlite_sink()).ok());
  auto c = f.scripted();
  c.destination = "warehouse";
  c.destination_stream = "property";
  c.mapping =
      Json::parse(R"json({"fields":{"parcel_id":{"from":"id","type":"integer","required":true},
                                         "roll_number":{"from":"roll","type":"string"},
                                         "label":{"expr":"concat('parcel ', roll)"}}})json")
          .value();
  REQUIRE(f.hub->add(c).ok());
  auto r = f.hub->sync("assessor");
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(r->records_read == 5);
  CHECK(r->records_written == 5);
  CHECK(f.warehouse_rows() == 5);
  CHECK(r->state.at_pointer("/parcels/cursor")->as_int() == 5);

  // Incremental: the next run reads only what is new.
  f.script.rows = 8;
  r = f.hub->sync("assessor");
  REQUIRE(r.ok());
  CHECK(r->records_read == 3);
  CHECK(f.warehouse_rows() == 8);
  auto st = f.hub->status("assessor");
  REQUIRE(st.ok());
  CHECK(st->last_success_at.has_value());
  CHECK(st->state.at_pointer("/parcels/cursor")->as_int() == 8);
}

TEST_CASE("hub: a failed run commits no state and the next run loads nothing twice") {
  HubFixture f;
  REQUIRE(f.hub->add(f.sqlite_sink()).ok());
  auto c = f.scripted();
  c.destination = "warehouse";
  c.destination_stream = "property";
  REQUIRE(f.hub->add(c).ok());
  f.script.down = true;
  auto r = f.hub->sync("assessor");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::kUnavailable);
  auto st = f.hub->status("assessor");
  REQUIRE(st.ok());
  CHECK(st->last_error.find("service down") != std::string::npos);
  CHECK(st->state.size() == 0);
  f.script.down = false;
  f.clock.advance(std::chrono::minutes(2));  // past the breaker's cool-down if it opened
  r = f.hub->sync("assessor");
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  // Replaying the same state gives the same batch ids: a second sync from it writes nothing new.
  CHECK(f.warehouse_rows() == 5);
}

TEST_CASE("hub: the breaker opens, calls queue and fall back to the cache, then replay in order") {
  BrokerFixture broker;
  HubFixture f(&broker.broker());
  REQUIRE(f.hub->add(f.scripted()).ok());
  auto live = f.hub->call("assessor", "validate", Json::object({{"q", "a"}}), "key-a");
  REQUIRE(live.ok());
  CHECK(live->source == CallResult::Source::kLive);

  f.script.down = true;
  // Two failures open the breaker (failure_threshold 2); each call is queued.
  auto first = f.hub->call("assessor", "validate", Json::object({{"q", "b"}}));
  REQUIRE(first.ok());
  CHECK(first->source == CallResult::Source::kQueued);
  auto second = f.hub->call("assessor", "validate", Json::object({{"q", "a"}}), "key-a");
  REQUIRE(second.ok());
  CHECK(second->source == CallResult::Source::kCache);  // the cached answer, with its time
  CHECK(second->response.get_string("answer") == "ok:a");
  CHECK(second->cached_at.has_value());
  CHECK(f.hub->status("assessor")->health == Health::kDown);
  // While open, calls don't reach the service at all.
  auto third = f.hub->call("assessor", "validate", Json::object({{"q", "c"}}));
  REQUIRE(third.ok());
  CHECK(f.hub->status("assessor")->queued == 3);
  // Without queueing and without cache, the caller sees the error.
  auto refused = f.hub->call("assessor", "validate", Json::object({{"q", "d"}}), {}, false);
  CHECK(refused.status().code() == ErrorCode::kUnavailable);

  // The service is back; after the cool-down a probe closes the breaker and the queue replays.
  f.script.down = false;
  f.clock.advance(std::chrono::seconds(61));
  auto probe = f.hub->call("assessor", "validate", Json::object({{"q", "e"}}));
  REQUIRE(probe.ok());
  CHECK(probe->source == CallResult::Source::kLive);
  CHECK(f.hub->status("assessor")->health == Health::kHealthy);
  CHECK(f.hub->status("assessor")->queued == 0);
  std::vector<std::string> expected{"validate:a", "validate:e", "validate:b", "validate:a",
                                    "validate:c"};
  CHECK(f.script.calls == expected);

  // Each health change is an event: healthy -> down -> degraded -> healthy.
  // (Published asynchronously: wait until the three are stored.)
  Result<std::vector<broker::DeliveredEvent>> events = std::vector<broker::DeliveredEvent>{};
  CHECK(testing::wait_until([&] {
    events = broker.broker().read("integration.connector_health_changed", 0, 100);
    return events.ok() && events->size() >= 3;
  }));
  REQUIRE(events.ok());
  REQUIRE(events->size() == 3);
  std::vector<std::string> seen;
  for (const auto& e : *events) seen.push_back(e.event.data().get_string("to"));
  CHECK(seen == std::vector<std::string>{"down", "degraded", "healthy"});
  CHECK((*events)[0].event.data().get_string("connection") == "assessor");
}

TEST_CASE("hub: cron schedules run due connections in their time zone") {
  HubFixture f;
  auto c = f.scripted();
  c.schedule = "0 2 * * *";  // nightly at 02:00 Toronto time
  REQUIRE(f.hub->add(c).ok());
  // 2026-05-28T06:00Z is 02:00 EDT.
  f.clock.set(SystemTime{std::chrono::seconds{1'779'940'000}});  // before: 2026-05-28T03:46:40Z
  REQUIRE(f.hub->add(c).ok());
  auto next = f.hub->next_run("assessor");
  REQUIRE(next.ok());
  CHECK(format_rfc3339(*next) == "2026-05-28T06:00:00.000000Z");
  CHECK(f.hub->run_due() == 0);
  f.clock.set(*next + std::chrono::seconds(5));
  CHECK(f.hub->run_due() == 1);
  CHECK(f.script.reads == 1);
  CHECK(format_rfc3339(f.hub->next_run("assessor").value()) == "2026-05-29T06:00:00.000000Z");
  // A paused connection is skipped.
  REQUIRE(f.hub->pause("assessor").ok());
  f.clock.set(f.hub->next_run("assessor").value() + std::chrono::seconds(1));
  CHECK(f.hub->run_due() == 0);
  CHECK(f.hub->status("assessor")->health == Health::kPaused);
  REQUIRE(f.hub->resume("assessor").ok());

  // Reopened after a day down: the missed run is beyond the grace window, so it is skipped.
  f.clock.advance(std::chrono::hours(30));
  f.open();
  auto after = f.hub->next_run("assessor");
  REQUIRE(after.ok());
  CHECK(*after > f.clock.now());
}

TEST_CASE("hub: schema drift pauses the connection until an operator accepts it") {
  BrokerFixture broker;
  HubFixture f(&broker.broker());
  auto c = f.scripted();
  c.drift = DriftPolicy::kPause;
  REQUIRE(f.hub->add(c).ok());
  REQUIRE(f.hub->sync("assessor").ok());
  f.script.extra_field = true;
  auto r = f.hub->sync("assessor");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("ward") != std::string::npos);
  CHECK(f.hub->status("assessor")->health == Health::kPaused);
  CHECK_FALSE(f.hub->sync("assessor").ok());
  REQUIRE(f.hub->accept_schema("assessor").ok());
  CHECK(f.hub->sync("assessor").ok());

  // Reject fails the run but does not pause.
  c.drift = DriftPolicy::kReject;
  REQUIRE(f.hub->add(c).ok());
  f.script.extra_field = false;
  CHECK_FALSE(f.hub->sync("assessor").ok());
  CHECK(f.hub->status("assessor")->health != Health::kPaused);
  // Propagate records the change and runs.
  c.drift = DriftPolicy::kPropagate;
  REQUIRE(f.hub->add(c).ok());
  auto ok = f.hub->sync("assessor");
  REQUIRE(ok.ok());
  CHECK_FALSE(ok->drift.empty());
}

TEST_CASE("hub: test sync checks, samples and reports mapping problems without writing") {
  HubFixture f;
  REQUIRE(f.hub->add(f.sqlite_sink()).ok());
  auto c = f.scripted();
  c.destination = "warehouse";
  c.destination_stream = "property";
  c.mapping = Json::parse(R"({"fields":{"roll_number":{"from":"rol"}}})").value();
  REQUIRE(f.hub->add(c).ok());
  auto t = f.hub->test_sync("assessor", 3);
  REQUIRE(t.ok());
  CHECK(t->check.ok());
  REQUIRE(t->streams.size() == 1);
  REQUIRE(t->mapping_problems.size() == 1);
  CHECK(t->mapping_problems[0].find("'rol'") != std::string::npos);
  CHECK_FALSE(t->ok());

  c.mapping = Json::parse(R"({"fields":{"roll_number":{"from":"roll"}}})").value();
  REQUIRE(f.hub->add(c).ok());
  t = f.hub->test_sync("assessor", 3);
  REQUIRE(t.ok());
  CHECK(t->ok());
  REQUIRE(t->sample.size() == 3);
  CHECK(t->sample[0] == Json::object({{"roll_number", "R0001"}}));
  // Nothing was written and no state committed.
  CHECK(f.hub->status("assessor")->state.size() == 0);
  storage::SqliteOptions so;
  so.path = f.dir.file("warehouse.db");
  auto w = storage::open_sqlite(so);
  if (w.ok())
    CHECK((*w)->query_int("SELECT COUNT(*) FROM sqlite_master WHERE name = 'property'")->value() ==
          0);
}

TEST_CASE("hub: connections survive a restart, the vault needs the right key, rotation works") {
  HubFixture f;
  REQUIRE(f.hub->add(f.scripted()).ok());
  f.open();
  CHECK(f.hub->names() == std::vector<std::string>{"assessor"});
  REQUIRE(f.hub->check("assessor").ok());
  CHECK(f.script.last_config.get_string("api_key") == "k-very-secret-1");

  const std::string new_key(32, '\x42');
  REQUIRE(f.hub->rotate_master_key(new_key).ok());
  f.hub.reset();
  HubOptions o;
  HubDeps d;
  d.db = f.db.get();
  d.master_key = kMasterKey;
  d.catalog = &f.catalog;
  d.clock = &f.clock;
  auto old = ConnectorHub::open(o, d);
  CHECK(old.status().code() == ErrorCode::kFailedPrecondition);
  f.open(nullptr, new_key);
  REQUIRE(f.hub->check("assessor").ok());
  CHECK(f.script.last_config.get_string("api_key") == "k-very-secret-1");
  REQUIRE(f.hub->remove("assessor").ok());
  CHECK(f.hub->names().empty());
  CHECK(f.hub->status("assessor").status().code() == ErrorCode::kNotFound);
}

TEST_CASE("hub: a topic destination publishes each record as an event, once") {
  BrokerFixture broker;
  HubFixture f(&broker.broker());
  auto c = f.scripted();
  c.destination = "topic:property.parcel.received";
  REQUIRE(f.hub->add(c).ok());
  auto r = f.hub->sync("assessor");
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(r->records_written == 5);
  auto events = broker.broker().read("property.parcel.received", 0, 100);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 5);
  CHECK((*events)[0].event.data().get_string("roll") == "R0001");
  CHECK((*events)[0].event.source() == "civicbus/connect/assessor");
  // The topic was created with the hub as its owner.
  auto topic = broker.broker().topic("property.parcel.received");
  REQUIRE(topic.ok());
  CHECK(topic->options.owner == "connect");
}
