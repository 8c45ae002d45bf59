// DeviceFleet end to end: the façade over the registry, CA, time series, alerts and rollouts,
// with the real broker (events), the real gateway (HTTP API), a real mosquitto (MQTT) and an
// edge node forwarding to a central node over HTTP.
#include "civicbus/fleet/fleet.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "broker/broker_fixture.hpp"
#include "civicbus/gateway/gateway.hpp"
#include "civicbus/http/client.hpp"
#include "support/mosquitto.hpp"
#include "support/test_support.hpp"

using namespace civicbus;
using namespace civicbus::fleet;
using broker::testing_support::BrokerFixture;
using broker::testing_support::kTestMasterKey;

namespace {

constexpr TimeMs kStart = 1764600000000;  // 2025-12-01T14:40:00Z

// Collects the events of topics matching `pattern` from the start of the log.
class EventLog {
 public:
  EventLog(broker::Broker& b, std::string pattern) {
    broker::ConsumerGroupOptions o;
    o.group = "test-" + pattern;
    o.topics = {pattern};
    o.start_from = broker::StartFrom::kEarliest;
    auto sub = b.subscribe(o, [this](const broker::DeliveredEvent& e) {
      std::lock_guard lock(mu_);
      events_.push_back({e.topic, e.event.data()});
      return Status();
    });
    REQUIRE_MESSAGE(sub.ok(), sub.status().to_string());
    sub_ = std::move(sub).value();
  }
  // Waits until `n` events of `topic` arrived (or 10 s).
  std::vector<Json> wait_for(const std::string& topic, std::size_t n) {
    for (int i = 0; i < 1000; ++i) {
      auto got = of(topic);
      if (got.size() >= n) return got;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return of(topic);
  }
  std::vector<Json> of(const std::string& topic) {
    std::lock_guard lock(mu_);
    std::vector<Json> out;
    for (const auto& [t, d] : events_) {
      if (t == topic) out.push_back(d);
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<std::pair<std::string, Json>> events_;
  std::unique_ptr<broker::Subscription> sub_;
};

struct FleetHarness {
  ManualClock clock{SystemTime(std::chrono::milliseconds(kStart))};
  BrokerFixture broker{BrokerFixture::Config{.clock = nullptr}};
  testing::TempDir dir;
  std::unique_ptr<DeviceFleet> fleet;
  std::vector<std::pair<std::string, Json>> commands;
  std::mutex commands_mu;

  explicit FleetHarness(FleetOptions options = {}) {
    options.tick_interval = std::chrono::hours(1);  // the tests call tick()
    options.time_zone = options.time_zone.empty() ? "UTC" : options.time_zone;
    FleetDeps deps;
    deps.db = &broker.db();
    deps.timeseries_path = dir.file("timeseries.db");
    deps.broker = &broker.broker();
    deps.clock = &clock;
    deps.master_key = kTestMasterKey;
    deps.command_sender = [this](const std::string& device, const Json& command) {
      std::lock_guard lock(commands_mu);
      commands.emplace_back(device, command);
      return Status();
    };
    auto opened = DeviceFleet::open(std::move(options), std::move(deps));
    REQUIRE_MESSAGE(opened.ok(), opened.status().to_string());
    fleet = std::move(opened).value();
  }

  Device meter(const std::string& id, double lat = 45.4215, double lon = -75.6972) {
    Device d;
    d.id = id;
    d.serial = "SN-" + id;
    d.type = "water_meter";
    d.location = GeoPoint{lat, lon};
    d.department = "water";
    d.firmware_version = "1.0.0";
    return d;
  }
  Device provision(Device d) {
    auto p = fleet->provision(std::move(d), "ops@city");
    REQUIRE_MESSAGE(p.ok(), p.status().to_string());
    return *p->device;
  }
  TimeMs now() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock.now().time_since_epoch())
        .count();
  }
};

}  // namespace

TEST_CASE("fleet: provisioning issues a certificate, topics and the type's rules") {
  FleetHarness h;
  EventLog events(h.broker.broker(), "iot.device.>");
  auto p = h.fleet->provision(h.meter("wm-0001"), "ops@city");
  REQUIRE_MESSAGE(p.ok(), p.status().to_string());
  CHECK(p->certificate_pem.find("BEGIN CERTIFICATE") != std::string::npos);
  CHECK(p->private_key_pem.find("PRIVATE KEY") != std::string::npos);
  CHECK(p->ca_certificate_pem == h.fleet->ca_certificate_pem());
  CHECK_FALSE(p->device->certificate_serial.empty());
  CHECK(p->device->status == DeviceStatus::kProvisioned);
  CHECK(std::find(p->topics.begin(), p->topics.end(), "civicbus/devices/wm-0001/telemetry") !=
        p->topics.end());
  // Water meters come with leak detection and inactivity.
  std::string rules;
  for (const auto& r : p->rules) rules += r + " ";
  CHECK(rules.find("leak") != std::string::npos);
  CHECK(rules.find("inactive") != std::string::npos);
  // The private key is returned once: the stored device has only its certificate serial.
  CHECK(h.fleet->device("wm-0001")->to_json().dump().find("PRIVATE") == std::string::npos);

  auto again = h.fleet->provision(h.meter("wm-0001"), "ops@city");
  CHECK(again.status().code() == ErrorCode::kAlreadyExists);
  Device bad = h.meter("wm-0002");
  bad.type = "water_metre";
  auto refused = h.fleet->provision(bad, "ops@city");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().message().find("water_metre") != std::string::npos);

  auto provisioned = events.wait_for("iot.device.provisioned", 1);
  REQUIRE(provisioned.size() == 1);
  CHECK(provisioned[0].get_string("id") == "wm-0001");

  // Lifecycle: allowed moves are recorded and published; others refused.
  REQUIRE(h.fleet->set_status("wm-0001", DeviceStatus::kActive, "ops@city", "installed").ok());
  auto wrong = h.fleet->set_status("wm-0001", DeviceStatus::kProvisioned, "ops@city", "oops");
  CHECK_FALSE(wrong.ok());
  REQUIRE(
      h.fleet->set_status("wm-0001", DeviceStatus::kDecommissioned, "ops@city", "replaced").ok());
  auto changes = events.wait_for("iot.device.status_changed", 2);
  REQUIRE(changes.size() == 2);
  CHECK(changes[1].get_string("to") == "decommissioned");
  CHECK(changes[1].get_string("reason") == "replaced");
  CHECK(h.fleet->history("wm-0001")->size() == 2);
}

TEST_CASE("fleet: readings are validated against the device type, stored and rolled up") {
  FleetHarness h;
  h.provision(h.meter("wm-1"));
  const TimeMs t0 = h.now() - 3600 * 1000;
  std::vector<Reading> readings;
  for (int i = 0; i < 12; ++i) {
    readings.push_back({"wm-1", "flow_rate", 1.0 + i, "L/min", t0 + i * 5 * 60 * 1000});
  }
  readings.push_back({"nobody", "flow_rate", 1, "", t0});
  readings.push_back({"wm-1", "pm2_5", 1, "", t0});
  readings.push_back({"wm-1", "flow_rate", 1, "m3/h", t0});
  readings.push_back({"wm-1", "flow_rate", -5, "", t0});
  readings.push_back({"wm-1", "flow_rate", 1, "", h.now() + 3600 * 1000});
  IngestResult r = h.fleet->ingest(readings);
  CHECK(r.accepted == 12);
  REQUIRE(r.rejected.size() == 5);
  CHECK(r.rejected[0].reason == RejectReason::kUnknownDevice);
  CHECK(r.rejected[1].reason == RejectReason::kUnknownMetric);
  CHECK(r.rejected[1].message.find("flow_rate") != std::string::npos);  // lists the known ones
  CHECK(r.rejected[2].reason == RejectReason::kUnitMismatch);
  CHECK(r.rejected[3].reason == RejectReason::kOutOfRange);
  CHECK(r.rejected[4].reason == RejectReason::kFutureTimestamp);
  CHECK(h.fleet->stats().readings_rejected == 5);

  // The first reading made the device active.
  CHECK(h.fleet->device("wm-1")->status == DeviceStatus::kActive);
  REQUIRE(h.fleet->flush().ok());
  auto raw = h.fleet->readings("wm-1", "flow_rate", t0, h.now(), "raw");
  REQUIRE(raw.ok());
  CHECK(raw->points.size() == 12);
  auto hourly = h.fleet->readings("wm-1", "flow_rate", t0, h.now(), "1h");
  REQUIRE(hourly.ok());
  std::int64_t count = 0;
  double sum = 0;
  for (const auto& p : hourly->points) {
    count += p.count;
    sum += p.sum;
  }
  CHECK(count == 12);
  CHECK(sum == doctest::Approx(78.0));
  auto latest = h.fleet->latest("wm-1");
  REQUIRE(latest.size() == 1);
  CHECK(latest[0].value == 12.0);
  CHECK(latest[0].unit == "L/min");
  CHECK(h.fleet->readings("wm-1", "flow_rate", t0, h.now(), "2h").status().code() ==
        ErrorCode::kInvalidArgument);
}

TEST_CASE("fleet: alerts raise, escalate, acknowledge and resolve, each an event") {
  FleetHarness h;
  EventLog events(h.broker.broker(), "iot.alert.>");
  Device aq;
  aq.id = "aq-01";
  aq.serial = "AQ-01";
  aq.type = "air_quality";
  aq.location = GeoPoint{45.42, -75.70};
  h.provision(aq);
  auto t = [&](int minutes) { return h.now() + minutes * 60 * 1000; };
  h.fleet->ingest(std::vector<Reading>{{"aq-01", "pm2_5", 12, "ug/m3", t(0)}});
  CHECK(h.fleet->stats().active_alerts == 0);
  h.fleet->ingest(std::vector<Reading>{{"aq-01", "pm2_5", 41, "ug/m3", t(0)}});
  auto active = h.fleet->alerts({.active_only = true}).value();
  REQUIRE(active.size() == 1);
  CHECK(active[0].severity == Severity::kWarning);
  // Still above: the same alert (deduplicated), then critical.
  h.fleet->ingest(std::vector<Reading>{{"aq-01", "pm2_5", 44, "ug/m3", t(0)}});
  h.fleet->ingest(std::vector<Reading>{{"aq-01", "pm2_5", 61, "ug/m3", t(0)}});
  active = h.fleet->alerts({.active_only = true}).value();
  REQUIRE(active.size() == 1);
  CHECK(active[0].severity == Severity::kCritical);
  auto acked = h.fleet->acknowledge(active[0].id, "crew-7", "on site");
  REQUIRE(acked.ok());
  CHECK(acked->state == AlertState::kAcknowledged);
  CHECK(acked->acknowledged_by == "crew-7");
  // Hysteresis: 33 is below warning but above clear (30): still active.
  h.fleet->ingest(std::vector<Reading>{{"aq-01", "pm2_5", 33, "ug/m3", t(0)}});
  CHECK(h.fleet->stats().active_alerts == 1);
  h.fleet->ingest(std::vector<Reading>{{"aq-01", "pm2_5", 20, "ug/m3", t(0)}});
  CHECK(h.fleet->stats().active_alerts == 0);
  auto resolved = h.fleet->alert(active[0].id).value();
  CHECK(resolved.state == AlertState::kResolved);
  CHECK(resolved.resolved_by == "system");

  CHECK(events.wait_for("iot.alert.raised", 1).size() == 1);
  CHECK(events.wait_for("iot.alert.escalated", 1).size() == 1);
  CHECK(events.wait_for("iot.alert.acknowledged", 1).size() == 1);
  auto res = events.wait_for("iot.alert.resolved", 1);
  REQUIRE(res.size() == 1);
  CHECK(res[0].get_string("device_id") == "aq-01");
}

TEST_CASE("fleet: bulk import provisions the good rows and reports the bad ones by line") {
  FleetHarness h;
  std::string csv =
      "serial,type,lat,lon,asset_id,department\n"
      "WM-100,water_meter,45.40,-75.70,A-100,water\n"
      "WM-101,water_meter,45.41,-75.71,A-101,water\n"
      "WM-102,water_metre,45.41,-75.71,A-102,water\n"
      "WM-103,water_meter,91.0,-75.71,A-103,water\n"
      "WM-104,water_meter,45.42,-75.72,A-104,water\n"
      "WM-100,water_meter,45.43,-75.73,A-105,water\n";
  std::vector<std::size_t> progress;
  auto report =
      h.fleet->import_devices(csv, ImportFormat::kCsv, "ops@city",
                              [&](std::size_t done, std::size_t) { progress.push_back(done); });
  REQUIRE_MESSAGE(report.ok(), report.status().to_string());
  CHECK(report->provisioned.size() == 3);
  REQUIRE(report->errors.size() == 3);
  CHECK(report->errors[0].where == "line 4");
  CHECK(report->errors[0].reason.find("water_metre") != std::string::npos);
  CHECK(report->errors[1].where == "line 5");
  CHECK(report->errors[2].where == "line 7");
  for (const auto& p : report->provisioned) {
    CHECK(p.private_key_pem.find("PRIVATE KEY") != std::string::npos);
    CHECK(h.fleet->device(p.device->id) != nullptr);
  }
  CHECK_FALSE(progress.empty());
  CHECK(report->errors_csv().find("line 4") != std::string::npos);

  // Bulk decommission by query revokes and stops tracking.
  DeviceQuery q;
  q.bbox = BoundingBox{45.405, -75.715, 45.415, -75.705};
  auto gone = h.fleet->decommission_where(q, "ops@city", "pilot ended");
  REQUIRE(gone.ok());
  CHECK(*gone == std::vector<std::string>{"WM-101"});
  CHECK(h.fleet->device("WM-101")->status == DeviceStatus::kDecommissioned);
  auto rejected = h.fleet->ingest(std::vector<Reading>{{"WM-101", "flow_rate", 1, "", h.now()}});
  REQUIRE(rejected.rejected.size() == 1);
  CHECK(rejected.rejected[0].reason == RejectReason::kDeviceNotReporting);
}

TEST_CASE("fleet: configuration push to a group and the twin closing its delta") {
  FleetHarness h;
  for (int i = 0; i < 4; ++i) h.provision(h.meter(fmt::format("wm-{}", i)));
  Group g;
  g.id = "north";
  g.name = "North meters";
  g.kind = GroupKind::kStatic;
  g.members = {"wm-0", "wm-1", "wm-2"};
  REQUIRE(h.fleet->create_group(g, "ops@city").ok());
  auto updated = h.fleet->push_group_config("north", Json::parse(R"({"interval_s": 300})").value(),
                                            "ops@city");
  REQUIRE(updated.ok());
  CHECK(updated->size() == 3);
  auto twin = h.fleet->twin("wm-1").value();
  CHECK(twin["delta"].dump() == R"({"interval_s":300})");
  auto delta = h.fleet->report_config("wm-1", Json::parse(R"({"interval_s": 300})").value());
  REQUIRE(delta.ok());
  CHECK(delta->dump() == "{}");
  CHECK(h.fleet->twin("wm-3").value()["delta"].dump() == "{}");
}

TEST_CASE("fleet: an OTA rollout goes out in waves and completes") {
  FleetHarness h;
  EventLog events(h.broker.broker(), "iot.rollout.>");
  Group g;
  g.id = "pilot";
  g.name = "pilot";
  for (int i = 0; i < 7; ++i) {
    h.provision(h.meter(fmt::format("wm-{}", i)));
    g.members.push_back(fmt::format("wm-{}", i));
  }
  REQUIRE(h.fleet->create_group(g, "ops@city").ok());
  auto started = h.fleet->start_rollout(
      Json::parse(R"({"group":"pilot","firmware_version":"1.1.0","first_wave":2,"growth":2,)"
                  R"("min_devices":3,"max_failure_ratio":0.5})")
          .value(),
      "ops@city");
  REQUIRE_MESSAGE(started.ok(), started.status().to_string());
  CHECK(started->get_int("total") == 7);
  for (std::size_t answered = 0;;) {
    std::vector<std::pair<std::string, Json>> cmds;
    {
      std::lock_guard lock(h.commands_mu);
      cmds = h.commands;
    }
    if (answered == cmds.size()) break;
    for (; answered < cmds.size(); ++answered) {
      Json result = Json::object({{"rollout", cmds[answered].second.get_string("rollout")},
                                  {"success", true},
                                  {"version", "1.1.0"}});
      REQUIRE(h.fleet->report_ota(cmds[answered].first, result).ok());
    }
  }
  auto done = h.fleet->rollout(started->get_string("id")).value();
  CHECK(done.get_string("state") == "completed");
  CHECK(done.get_int("succeeded") == 7);
  CHECK(h.fleet->device("wm-3")->firmware_version == "1.1.0");
  auto progressed = events.wait_for("iot.rollout.progressed", 3);
  CHECK(progressed.size() >= 3);
}

TEST_CASE("fleet: the HTTP API through the gateway, with API keys") {
  FleetOptions fo;
  fo.api_auth = {gateway::AuthMethod::kApiKey};
  FleetHarness h(fo);
  gateway::GatewayOptions go;
  go.listener.port = 0;
  gateway::ConsumerOptions ops;
  ops.id = "ops-console";
  ops.api_keys = {"k-ops-0123456789abcdef0123456789"};
  go.consumers.push_back(ops);
  auto gw = gateway::Gateway::create(go).value();
  REQUIRE(h.fleet->mount(*gw).ok());
  auto port = gw->start();
  REQUIRE(port.ok());
  auto client = http::HttpClient::create().value();
  const std::string host = fmt::format("127.0.0.1:{}", *port);
  auto call = [&](std::string method, std::string target, std::string body = {},
                  bool with_key = true) {
    http::HttpRequest req;
    req.method = std::move(method);
    req.target = std::move(target);
    if (with_key) req.headers.add("X-API-Key", "k-ops-0123456789abcdef0123456789");
    if (!body.empty()) req.headers.add("Content-Type", "application/json");
    req.body = std::move(body);
    auto r = client->send(host, std::move(req));
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    return std::move(r).value();
  };
  CHECK(call("GET", "/api/v1/iot/devices", {}, false).status == 401);
  auto created = call("POST", "/api/v1/iot/devices",
                      R"({"id":"wm-77","serial":"S77","type":"water_meter",)"
                      R"("location":{"lat":45.5,"lon":-75.6}})");
  REQUIRE_MESSAGE(created.status == 201, created.body);
  CHECK(created.body.find("PRIVATE KEY") != std::string::npos);
  CHECK(created.headers.get("Cache-Control").value_or("") == "no-store");
  CHECK(call("POST", "/api/v1/iot/devices", R"({"id":"x","serial":"x","type":"nope"})").status ==
        400);

  auto ingest = call("POST", "/api/v1/iot/devices/wm-77/readings",
                     fmt::format(R"({{"ts":{},"values":{{"flow_rate":3.5,"total_volume":12.25}}}})",
                                 h.now() - 1000));
  CHECK(ingest.status == 202);
  REQUIRE(h.fleet->flush().ok());
  auto device = call("GET", "/api/v1/iot/devices/wm-77");
  REQUIRE(device.status == 200);
  auto dj = Json::parse(device.body).value();
  CHECK(dj["latest"]["flow_rate"]["value"].as_double() == 3.5);
  CHECK(call("GET", "/api/v1/iot/devices/nope").status == 404);

  auto list =
      Json::parse(call("GET", "/api/v1/iot/devices?type=water_meter&bbox=45,-76,46,-75").body)
          .value();
  CHECK(list.get_int("total") == 1);
  auto empty = Json::parse(call("GET", "/api/v1/iot/devices?bbox=10,10,11,11").body).value();
  CHECK(empty.get_int("total") == 0);
  CHECK(call("GET", "/api/v1/iot/devices?bbox=1,2").status == 400);
  CHECK(call("GET", "/api/v1/iot/devices?colour=red").status == 400);

  auto readings = call(
      "GET", fmt::format("/api/v1/iot/devices/wm-77/readings?metric=flow_rate&from={}&to={}&agg=5m",
                         h.now() - 3600 * 1000, h.now() + 1));
  REQUIRE_MESSAGE(readings.status == 200, readings.body);
  auto rj = Json::parse(readings.body).value();
  CHECK(rj.get_string("tier") == "5m");
  CHECK(rj["points"].as_array().size() == 1);

  auto status = call("POST", "/api/v1/iot/devices/wm-77/status",
                     R"({"status":"maintenance","reason":"valve"})");
  CHECK(status.status == 200);
  auto history = Json::parse(call("GET", "/api/v1/iot/devices/wm-77/history").body).value();
  CHECK(history.as_array().back().get_string("actor") == "ops-console");
  CHECK(call("POST", "/api/v1/iot/devices/wm-77/status", R"({"status":"provisioned"})").status ==
        409);
  CHECK(call("GET", "/api/v1/iot/rules").status == 200);
  CHECK(call("GET", "/api/v1/iot/alerts?active=true").status == 200);
  gw->stop();
}

TEST_CASE("fleet: MQTT telemetry through a real mosquitto") {
  testing::Mosquitto mosquitto;
  FleetOptions fo;
  fo.mqtt = FleetMqttOptions{};
  fo.mqtt->server_uri = mosquitto.uri();
  fo.mqtt->client_id = "fleet-test";
  FleetHarness h(fo);
  for (int i = 0; i < 30 && !h.fleet->mqtt_connected(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  REQUIRE(h.fleet->mqtt_connected());
  h.provision(h.meter("wm-mq"));
  const TimeMs ts = h.now() - 60'000;
  auto pub = testing::run_command({"mosquitto_pub", "-h", "127.0.0.1", "-p",
                                   std::to_string(mosquitto.port()), "-q", "1", "-t",
                                   "civicbus/devices/wm-mq/telemetry", "-m",
                                   fmt::format(R"({{"ts":{},"values":{{"flow_rate":4.5}}}})", ts)});
  REQUIRE_MESSAGE(pub.exit_code == 0, pub.output);
  for (int i = 0; i < 100 && h.fleet->stats().readings_accepted < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(h.fleet->stats().readings_accepted == 1);
  auto latest = h.fleet->latest("wm-mq");
  REQUIRE(latest.size() == 1);
  CHECK(latest[0].value == 4.5);
}

TEST_CASE("fleet: an edge node acts locally and forwards to the central node without loss") {
  // The central node: a fleet behind a gateway.
  FleetHarness central;
  central.provision(central.meter("fg-edge"));
  gateway::GatewayOptions go;
  go.listener.port = 0;
  auto gw = gateway::Gateway::create(go).value();
  REQUIRE(central.fleet->mount(*gw).ok());
  auto port = gw->start();
  REQUIRE(port.ok());

  // The edge: its own fleet (own database) with a local rule that closes a floodgate.
  testing::TempDir edge_dir;
  FleetOptions eo;
  eo.issue_certificates = false;
  eo.edge = FleetEdgeOptions{"edge-creek", edge_dir.file("buffer.db"),
                             fmt::format("127.0.0.1:{}", *port), "", 50};
  BrokerFixture edge_broker;
  ManualClock edge_clock{SystemTime(std::chrono::milliseconds(kStart))};
  FleetDeps ed;
  ed.db = &edge_broker.db();
  ed.clock = &edge_clock;
  auto edge = DeviceFleet::open(eo, ed);
  REQUIRE_MESSAGE(edge.ok(), edge.status().to_string());
  std::vector<std::string> actions;
  std::mutex actions_mu;
  (*edge)->on_action([&](std::string_view output, std::string_view command, const Alert&) {
    std::lock_guard lock(actions_mu);
    actions.push_back(fmt::format("{} {}", output, command));
  });
  REQUIRE((*edge)->provision(central.meter("fg-edge"), "edge").ok());
  REQUIRE((*edge)
              ->add_rule(
                  Json::parse(
                      R"({"id":"gate","name":"gate","scope":{"device":"fg-edge"},)"
                      R"("kind":"threshold","metric":"flow_rate","direction":"above",)"
                      R"("critical":30,"clear":10,)"
                      R"("actions":[{"output":"floodgate-3","command":"close","on":"critical"}]})")
                      .value())
              .ok());
  std::vector<Reading> batch;
  for (int i = 0; i < 120; ++i) {
    batch.push_back({"fg-edge", "flow_rate", i < 100 ? 2.0 : 35.0, "", kStart - (120 - i) * 1000});
  }
  REQUIRE((*edge)->ingest(batch).accepted == 120);
  {
    std::lock_guard lock(actions_mu);
    REQUIRE(actions.size() == 1);
    CHECK(actions[0] == "floodgate-3 close");
  }
  for (int i = 0; i < 500 && central.fleet->stats().readings_accepted < 120; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(central.fleet->stats().readings_accepted == 120);

  // The uplink goes down: the edge keeps its readings and sends them when it is back.
  gw->stop();
  std::vector<Reading> more;
  for (int i = 0; i < 30; ++i) more.push_back({"fg-edge", "flow_rate", 3.0, "", kStart + i});
  REQUIRE((*edge)->ingest(more).accepted == 30);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK((*edge)->stats().edge_buffered == 30);
  go.listener.port = *port;
  auto gw2 = gateway::Gateway::create(go).value();
  REQUIRE(central.fleet->mount(*gw2).ok());
  REQUIRE(gw2->start().ok());
  for (int i = 0; i < 1000 && (central.fleet->stats().readings_accepted < 150 ||
                               (*edge)->stats().edge_buffered > 0);
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(central.fleet->stats().readings_accepted == 150);
  CHECK((*edge)->stats().edge_buffered == 0);
  gw2->stop();
}
