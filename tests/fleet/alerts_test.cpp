#include "fleet/alerts.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "civicbus/core/id.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/storage/database.hpp"
#include "support/test_support.hpp"

namespace civicbus::fleet {
namespace {

constexpr TimeMs kT0 = 1'700'000'000'000;  // ManualClock's default start
constexpr TimeMs kMin = 60'000;

struct Recorded {
  std::string alert_id;
  std::string transition;
  Severity severity;
  std::vector<std::string> devices;
};

class AlertsFixture {
 public:
  AlertsFixture() {
    open_db();
    open_engine();
  }

  void open_db() {
    engine_.reset();
    db_.reset();
    storage::SqliteOptions options;
    options.path = dir_.file("alerts.db");
    options.synchronous = storage::Synchronous::kNormal;
    auto db = storage::open_sqlite(options);
    REQUIRE_MESSAGE(db.ok(), db.status().to_string());
    db_ = std::move(db).value();
  }

  AlertEngine& open_engine() {
    engine_.reset();
    auto e = AlertEngine::open(*db_, clock_, [this] { return ids_.next(); });
    REQUIRE_MESSAGE(e.ok(), e.status().to_string());
    engine_ = std::move(e).value();
    engine_->set_on_alert([this](const Alert& a, std::string_view t) {
      events.push_back({a.id, std::string(t), a.severity, a.devices});
    });
    engine_->set_on_action([this](const RuleAction& act, const Alert& a) {
      actions.push_back(fmt::format("{}:{}:{}", act.output, act.command, a.device_id));
    });
    return *engine_;
  }

  void reopen() {
    open_db();
    open_engine();
  }

  AlertRule add(std::string_view json) {
    auto j = Json::parse(json);
    REQUIRE_MESSAGE(j.ok(), j.status().to_string());
    auto r = engine_->add_rule(*j);
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    return *r;
  }

  void feed(const DeviceContext& ctx, std::string_view metric, double value, TimeMs t) {
    Reading r{ctx.device_id, std::string(metric), value, "", t};
    Status st = engine_->evaluate(r, ctx);
    REQUIRE_MESSAGE(st.ok(), st.to_string());
  }

  std::vector<Alert> active() {
    AlertFilter f;
    f.active_only = true;
    auto l = engine_->list_alerts(f);
    REQUIRE_MESSAGE(l.ok(), l.status().to_string());
    return *l;
  }

  std::vector<std::string> transitions() const {
    std::vector<std::string> out;
    for (const auto& e : events) out.push_back(e.transition);
    return out;
  }

  AlertEngine& engine() { return *engine_; }
  ManualClock& clock() { return clock_; }

  std::vector<Recorded> events;
  std::vector<std::string> actions;

 private:
  testing::TempDir dir_;
  ManualClock clock_;
  SeededRandom random_{42};
  IdGenerator ids_{clock_, random_};
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<AlertEngine> engine_;
};

DeviceContext aq(std::string id) {
  return {std::move(id), "air_quality", GeoPoint{52.0, 4.0}, {}};
}

TEST_CASE("alerts: rule parsing names the rule and the field") {
  auto bad = [](std::string_view json) {
    auto j = Json::parse(json);
    REQUIRE(j.ok());
    auto r = AlertRule::from_json(*j);
    REQUIRE_FALSE(r.ok());
    return r.status().message();
  };
  std::string m = bad(R"({"name":"pm25","kind":"threshold","scope":{"type":"air_quality"},
                          "metric":"pm2_5","direction":"up","warning":35})");
  CHECK(m.find("'pm25'") != std::string::npos);
  CHECK(m.find("'direction'") != std::string::npos);
  m = bad(R"({"id":"r1","kind":"threshold","scope":{"type":"a"},"metric":"x","warning":50,
              "critical":40})");
  CHECK(m.find("'r1'") != std::string::npos);
  CHECK(m.find("'critical'") != std::string::npos);
  m = bad(R"({"name":"n","kind":"threshold","metric":"x","warning":5})");
  CHECK(m.find("'scope'") != std::string::npos);
  m = bad(
      R"({"name":"g","kind":"geofence","scope":{"device":"d"},"area":{"center":{"lat":1,"lon":2}}})");
  CHECK(m.find("radius_m") != std::string::npos);
  m = bad(
      R"({"name":"c","kind":"composite","within_s":60,"distance_m":10,"conditions":[{"min_devices":2}]})");
  CHECK(m.find("conditions[0].rule") != std::string::npos);
  m = bad(R"({"name":"i","kind":"inactivity","scope":{"type":"t"}})");
  CHECK(m.find("'factor'") != std::string::npos);

  auto ok = Json::parse(R"({"name":"rise","kind":"rate_of_change","scope":{"group":"g-1"},
      "metric":"water_level","window_s":600,"direction":"rise","warning":0.3,"critical":0.6,
      "clear":0.1,"actions":[{"output":"floodgate-3","command":"close","on":"critical"}]})");
  REQUIRE(ok.ok());
  auto r = AlertRule::from_json(*ok);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(r->scope.group == "g-1");
  CHECK(r->actions.size() == 1);
  CHECK(r->actions[0].on == RuleAction::On::kCritical);
  auto again = AlertRule::from_json(r->to_json());
  REQUIRE(again.ok());
  CHECK(again->to_json() == r->to_json());
}

TEST_CASE("alerts: threshold hysteresis escalation and dedup") {
  AlertsFixture f;
  f.add(R"({"id":"pm25","name":"pm25","scope":{"type":"air_quality"},"kind":"threshold",
            "metric":"pm2_5","direction":"above","warning":35,"critical":55,"clear":30})");
  auto dev = aq("aq-01");
  f.feed(dev, "pm2_5", 20, kT0);
  CHECK(f.events.empty());
  f.feed(dev, "pm2_5", 36, kT0 + 5 * kMin);   // raise warning
  f.feed(dev, "pm2_5", 33, kT0 + 10 * kMin);  // below warning, above clear: stays
  f.feed(dev, "pm2_5", 36, kT0 + 15 * kMin);  // no second alert (dedup, no flapping)
  f.feed(dev, "pm2_5", 34, kT0 + 20 * kMin);
  REQUIRE(f.transitions() == std::vector<std::string>{"raised"});
  CHECK(f.events[0].severity == Severity::kWarning);
  f.feed(dev, "pm2_5", 57, kT0 + 25 * kMin);  // escalate on the same alert
  f.feed(dev, "pm2_5", 40, kT0 + 30 * kMin);  // no de-escalation above clear
  REQUIRE(f.transitions() == std::vector<std::string>{"raised", "escalated"});
  CHECK(f.events[1].alert_id == f.events[0].alert_id);
  CHECK(f.events[1].severity == Severity::kCritical);
  auto act = f.active();
  REQUIRE(act.size() == 1);
  CHECK(act[0].severity == Severity::kCritical);
  CHECK(act[0].value == 40);  // later readings update value and updated_at
  CHECK(act[0].updated_at == kT0 + 30 * kMin);
  f.feed(dev, "pm2_5", 29, kT0 + 35 * kMin);  // past clear → resolved by system
  REQUIRE(f.transitions() == std::vector<std::string>{"raised", "escalated", "resolved"});
  auto done = f.engine().get_alert(f.events[0].alert_id);
  REQUIRE(done.ok());
  CHECK(done->state == AlertState::kResolved);
  CHECK(done->resolved_by == "system");
  CHECK(done->resolved_at == kT0 + 35 * kMin);
  CHECK(f.active().empty());
  // A new episode is a new alert; other devices of the type have their own.
  f.feed(dev, "pm2_5", 60, kT0 + 40 * kMin);
  f.feed(aq("aq-02"), "pm2_5", 60, kT0 + 40 * kMin);
  CHECK(f.active().size() == 2);
  f.feed(DeviceContext{"w-1", "weather", std::nullopt, {}}, "pm2_5", 99, kT0);
  CHECK(f.active().size() == 2);  // another type: no rule
}

TEST_CASE("alerts: below direction and for_s") {
  AlertsFixture f;
  f.add(R"({"id":"lowp","scope":{"device":"ps-1"},"kind":"threshold","metric":"pressure",
            "direction":"below","warning":250,"clear":280,"for_s":120})");
  DeviceContext ps{"ps-1", "pressure_sensor", GeoPoint{52, 4}, {}};
  f.feed(ps, "pressure", 240, kT0);
  f.feed(ps, "pressure", 240, kT0 + 60'000);
  CHECK(f.events.empty());                    // not yet held for 120 s
  f.feed(ps, "pressure", 260, kT0 + 90'000);  // condition broke: restart the wait
  f.feed(ps, "pressure", 240, kT0 + 100'000);
  f.feed(ps, "pressure", 240, kT0 + 200'000);
  CHECK(f.events.empty());
  REQUIRE(f.engine().tick(kT0 + 221'000).ok());  // held 121 s: the tick raises it
  REQUIRE(f.transitions() == std::vector<std::string>{"raised"});
  f.feed(ps, "pressure", 270, kT0 + 300'000);  // above warning, below clear: stays
  CHECK(f.transitions().size() == 1);
  f.feed(ps, "pressure", 290, kT0 + 400'000);
  CHECK(f.transitions() == std::vector<std::string>{"raised", "resolved"});
}

TEST_CASE("alerts: flood gauge levels and rate of change over a window") {
  AlertsFixture f;
  f.add(R"({"id":"level","scope":{"type":"flood_gauge"},"kind":"threshold","metric":"water_level",
            "direction":"above","warning":1.0,"critical":1.5,"clear":0.9})");
  f.add(R"({"id":"rise","scope":{"type":"flood_gauge"},"kind":"rate_of_change",
            "metric":"water_level","window_s":600,"direction":"rise","warning":0.3,
            "critical":0.6,"clear":0.1,
            "actions":[{"output":"floodgate-3","command":"close","on":"critical"}]})");
  DeviceContext fg{"fg-1", "flood_gauge", GeoPoint{52, 4}, {}};
  // Normal weather: every 2 minutes, slow drift, nothing raised.
  double level = 0.50;
  TimeMs t = kT0;
  for (int i = 0; i < 10; ++i, t += 2 * kMin) {
    level += 0.01;
    f.feed(fg, "water_level", level, t);
  }
  CHECK(f.events.empty());
  // Storm: every 30 s, +0.04 m each → 0.8 m per 10 minutes.
  std::vector<std::pair<std::string, std::string>> seen;  // (rule, transition)
  f.engine().set_on_alert([&](const Alert& a, std::string_view tr) {
    seen.emplace_back(a.rule_id + ":" + std::string(severity_name(a.severity)), std::string(tr));
  });
  for (int i = 0; i < 40; ++i, t += 30'000) {
    level += 0.04;
    f.feed(fg, "water_level", level, t);
  }
  // rise warning (0.3 in 10 min) comes first, then the level warning at 1 m, the rise
  // critical, the level critical at 1.5 m.
  std::vector<std::pair<std::string, std::string>> expected{{"rise:warning", "raised"},
                                                            {"level:warning", "raised"},
                                                            {"rise:critical", "escalated"},
                                                            {"level:critical", "escalated"}};
  CHECK(seen == expected);
  CHECK(f.actions == std::vector<std::string>{"floodgate-3:close:fg-1"});
  // The water stops rising: the rate alert clears (change < 0.1 over the window), the level
  // alert stays until below 0.9 m.
  for (int i = 0; i < 30; ++i, t += 30'000) f.feed(fg, "water_level", level, t);
  CHECK(seen.back() == std::make_pair(std::string("rise:critical"), std::string("resolved")));
  auto act = f.active();
  REQUIRE(act.size() == 1);
  CHECK(act[0].rule_id == "level");
}

TEST_CASE("alerts: inactivity for a silent device and one that stopped") {
  AlertsFixture f;
  f.add(R"({"id":"inactive","scope":{"type":"parking_sensor"},"kind":"inactivity","metric":"*",
            "factor":3,"severity":"warning"})");
  f.add(R"({"id":"no-temp","scope":{"type":"parking_sensor"},"kind":"inactivity",
            "metric":"temperature","after_s":3600})");
  DeviceContext never{"p-never", "parking_sensor", GeoPoint{52, 4}, {}};
  DeviceContext stops{"p-stops", "parking_sensor", GeoPoint{52, 4}, {}};
  f.engine().track_device(never, 600, kT0);
  f.engine().track_device(stops, 600, kT0);
  f.feed(stops, "occupied", 1, kT0 + 10 * kMin);
  f.feed(stops, "temperature", 1, kT0 + 10 * kMin);
  REQUIRE(f.engine().tick(kT0 + 29 * kMin).ok());
  CHECK(f.events.empty());
  REQUIRE(f.engine().tick(kT0 + 30 * kMin).ok());  // never reported: 3 × 600 s since tracking
  auto act = f.active();
  REQUIRE(act.size() == 1);
  CHECK(act[0].device_id == "p-never");
  CHECK(act[0].message.find("never reported") != std::string::npos);
  f.feed(stops, "occupied", 0, kT0 + 35 * kMin);   // occupancy keeps coming, temperature not
  REQUIRE(f.engine().tick(kT0 + 64 * kMin).ok());  // + p-never's temperature (1 h)
  CHECK(f.active().size() == 2);
  REQUIRE(f.engine().tick(kT0 + 65 * kMin).ok());  // p-stops silent 30 min after +35
  CHECK(f.active().size() == 3);
  REQUIRE(f.engine().tick(kT0 + 69 * kMin).ok());
  CHECK(f.active().size() == 3);
  REQUIRE(f.engine().tick(kT0 + 70 * kMin).ok());  // p-stops: 1 h without temperature
  CHECK(f.active().size() == 4);
  REQUIRE(f.engine().tick(kT0 + 90 * kMin).ok());  // dedup: no new alerts
  CHECK(f.active().size() == 4);
  CHECK(f.transitions().size() == 4);
  // The next reading resolves each device's "*" alert; the temperature ones stay.
  f.feed(never, "occupied", 1, kT0 + 91 * kMin);
  f.feed(stops, "occupied", 1, kT0 + 91 * kMin);
  act = f.active();
  REQUIRE(act.size() == 2);
  CHECK(act[0].rule_id == "no-temp");
  CHECK(act[1].rule_id == "no-temp");
  f.feed(stops, "temperature", 3, kT0 + 92 * kMin);
  CHECK(f.active().size() == 1);
}

TEST_CASE("alerts: geofence exit on position readings and context location") {
  AlertsFixture f;
  f.add(R"({"id":"yard","scope":{"device":"bin-7"},"kind":"geofence",
            "area":{"center":{"lat":52.0,"lon":4.0},"radius_m":500},"mode":"exit",
            "severity":"critical"})");
  DeviceContext bin{"bin-7", "waste_bin", std::nullopt, {}};
  f.feed(bin, "lat", 52.001, kT0);
  f.feed(bin, "lon", 4.001, kT0);
  CHECK(f.events.empty());  // inside
  f.feed(bin, "lat", 52.02, kT0 + kMin);
  CHECK(f.events.empty());  // only half a position
  f.feed(bin, "lon", 4.0, kT0 + kMin);
  REQUIRE(f.transitions() == std::vector<std::string>{"raised"});
  CHECK(f.events[0].severity == Severity::kCritical);
  auto act = f.active();
  REQUIRE(act.size() == 1);
  REQUIRE(act[0].location.has_value());
  CHECK(act[0].location->lat == doctest::Approx(52.02));
  // Back inside through the device context location.
  bin.location = GeoPoint{52.0005, 4.0};
  f.feed(bin, "fill_level", 10, kT0 + 2 * kMin);
  CHECK(f.transitions() == std::vector<std::string>{"raised", "resolved"});
}

TEST_CASE("alerts: composite leak across two meters and a pressure sensor") {
  auto run = [](double second_meter_lat) {
    AlertsFixture f;
    f.add(R"({"id":"flow-spike","scope":{"type":"water_meter"},"kind":"threshold",
              "metric":"flow_rate","warning":15,"critical":40,"clear":5})");
    f.add(R"({"id":"low-pressure","scope":{"type":"pressure_sensor"},"kind":"threshold",
              "metric":"pressure","direction":"below","warning":250,"critical":150,"clear":280})");
    f.add(R"({"id":"leak","name":"leak","kind":"composite","severity":"critical","within_s":900,
              "distance_m":500,"conditions":[{"rule":"flow-spike","min_devices":2},
              {"rule":"low-pressure","min_devices":1}]})");
    DeviceContext m1{"wm-1", "water_meter", GeoPoint{52.0000, 4.0000}, {}};
    DeviceContext m2{"wm-2", "water_meter", GeoPoint{second_meter_lat, 4.0000}, {}};
    DeviceContext far{"wm-far", "water_meter", GeoPoint{52.2, 4.0}, {}};
    DeviceContext ps{"ps-1", "pressure_sensor", GeoPoint{52.0010, 4.0010}, {}};
    f.feed(m1, "flow_rate", 50, kT0);
    f.feed(far, "flow_rate", 50, kT0 + kMin);
    f.feed(ps, "pressure", 200, kT0 + 2 * kMin);
    f.feed(m2, "flow_rate", 45, kT0 + 5 * kMin);
    f.feed(m2, "flow_rate", 46, kT0 + 6 * kMin);
    f.feed(ps, "pressure", 190, kT0 + 7 * kMin);
    std::vector<Recorded> composites;
    for (const auto& e : f.events) {
      if (e.devices.size() > 1) composites.push_back(e);
    }
    return std::make_pair(composites, f.engine().list_alerts({}).value());
  };
  auto [near_events, near_all] = run(52.0020);  // ~220 m apart
  REQUIRE(near_events.size() == 1);
  CHECK(near_events[0].transition == "raised");
  CHECK(near_events[0].severity == Severity::kCritical);
  CHECK(near_events[0].devices == std::vector<std::string>{"ps-1", "wm-1", "wm-2"});
  auto [far_events, far_all] = run(52.045);  // 5 km apart
  CHECK(far_events.empty());

  // Resolution: when one meter recovers, the composite resolves.
  AlertsFixture f;
  f.add(R"({"id":"flow-spike","scope":{"type":"water_meter"},"kind":"threshold",
            "metric":"flow_rate","warning":15,"clear":5})");
  f.add(R"({"id":"low-pressure","scope":{"type":"pressure_sensor"},"kind":"threshold",
            "metric":"pressure","direction":"below","warning":250,"clear":280})");
  f.add(R"({"id":"leak","kind":"composite","within_s":900,"distance_m":500,
            "conditions":[{"rule":"flow-spike","min_devices":2},{"rule":"low-pressure"}]})");
  DeviceContext m1{"wm-1", "water_meter", GeoPoint{52.0000, 4.0000}, {}};
  DeviceContext m2{"wm-2", "water_meter", GeoPoint{52.0020, 4.0000}, {}};
  DeviceContext ps{"ps-1", "pressure_sensor", GeoPoint{52.0010, 4.0010}, {}};
  f.feed(m1, "flow_rate", 20, kT0);
  f.feed(m2, "flow_rate", 20, kT0);
  f.feed(ps, "pressure", 200, kT0);
  AlertFilter crit;
  crit.rule_id = "leak";
  auto leak = f.engine().list_alerts(crit);
  REQUIRE(leak.ok());
  REQUIRE(leak->size() == 1);
  CHECK((*leak)[0].state == AlertState::kRaised);
  AlertFilter by_dev;
  by_dev.device_id = "wm-2";
  CHECK(f.engine().list_alerts(by_dev)->size() == 2);  // its own and the composite
  f.feed(m2, "flow_rate", 1, kT0 + kMin);
  leak = f.engine().list_alerts(crit);
  REQUIRE(leak->size() == 1);
  CHECK((*leak)[0].state == AlertState::kResolved);
  CHECK((*leak)[0].resolved_by == "system");
}

TEST_CASE("alerts: acknowledge and resolve record who and when in order") {
  AlertsFixture f;
  f.add(R"({"id":"pm25","scope":{"type":"air_quality"},"kind":"threshold","metric":"pm2_5",
            "warning":35,"critical":55,"clear":30})");
  auto dev = aq("aq-01");
  f.clock().set(SystemTime{std::chrono::milliseconds{kT0 + 10 * kMin}});
  f.feed(dev, "pm2_5", 40, kT0);
  REQUIRE(f.events.size() == 1);
  const std::string id = f.events[0].alert_id;
  auto acked = f.engine().acknowledge(id, "ops:anna", "looking");
  REQUIRE_MESSAGE(acked.ok(), acked.status().to_string());
  CHECK(acked->state == AlertState::kAcknowledged);
  CHECK(acked->acknowledged_by == "ops:anna");
  CHECK(acked->acknowledged_at == kT0 + 10 * kMin);
  CHECK(f.engine().acknowledge(id, "ops:bob").status().code() == ErrorCode::kFailedPrecondition);
  f.feed(dev, "pm2_5", 60, kT0 + 11 * kMin);  // escalation keeps the acknowledgement
  CHECK(f.engine().get_alert(id)->state == AlertState::kAcknowledged);
  f.clock().advance(std::chrono::minutes(5));
  auto resolved = f.engine().resolve(id, "ops:bob", "sensor cleaned");
  REQUIRE(resolved.ok());
  CHECK(resolved->state == AlertState::kResolved);
  CHECK(resolved->resolved_by == "ops:bob");
  CHECK(resolved->resolved_at == kT0 + 15 * kMin);
  CHECK(resolved->acknowledged_by == "ops:anna");
  CHECK(f.engine().resolve(id, "x").status().code() == ErrorCode::kFailedPrecondition);
  CHECK(f.engine().get_alert("nope").status().code() == ErrorCode::kNotFound);
  CHECK(f.transitions() ==
        std::vector<std::string>{"raised", "acknowledged", "escalated", "resolved"});
  // Manually resolved while still high: the next reading above the level raises afresh.
  f.feed(dev, "pm2_5", 60, kT0 + 20 * kMin);
  CHECK(f.transitions().back() == "raised");
  CHECK(f.events.back().alert_id != id);
  AlertFilter resolved_only;
  resolved_only.state = AlertState::kResolved;
  CHECK(f.engine().list_alerts(resolved_only)->size() == 1);
}

TEST_CASE("alerts: state survives a restart") {
  AlertsFixture f;
  f.add(R"({"id":"pm25","scope":{"type":"air_quality"},"kind":"threshold","metric":"pm2_5",
            "warning":35,"critical":55,"clear":30})");
  f.add(R"({"id":"inactive","scope":{"type":"air_quality"},"kind":"inactivity","factor":3})");
  auto dev = aq("aq-01");
  auto quiet = aq("aq-quiet");
  f.engine().track_device(dev, 300, kT0);
  f.engine().track_device(quiet, 300, kT0);
  f.feed(dev, "pm2_5", 40, kT0 + kMin);
  f.feed(quiet, "pm2_5", 10, kT0 + 2 * kMin);
  REQUIRE(f.events.size() == 1);
  const std::string id = f.events[0].alert_id;
  REQUIRE(f.engine().flush().ok());
  REQUIRE(f.engine().list_rules().size() == 2);

  f.reopen();
  CHECK(f.engine().list_rules().size() == 2);
  CHECK(f.engine().active_alert_count() == 1);
  CHECK(f.engine().get_alert(id)->state == AlertState::kRaised);
  f.events.clear();
  f.feed(dev, "pm2_5", 45, kT0 + 3 * kMin);  // still above: no duplicate
  CHECK(f.events.empty());
  CHECK(f.engine().active_alert_count() == 1);
  f.feed(dev, "pm2_5", 60, kT0 + 4 * kMin);  // escalates the same alert
  REQUIRE(f.transitions() == std::vector<std::string>{"escalated"});
  CHECK(f.events[0].alert_id == id);
  // Last-seen times survived: aq-quiet (last seen at +2 min) alerts 15 min later, no earlier,
  // with no further reading or track_device call after the restart.
  REQUIRE(f.engine().tick(kT0 + 16 * kMin).ok());
  CHECK(f.engine().active_alert_count() == 1);
  REQUIRE(f.engine().tick(kT0 + 17 * kMin).ok());
  AlertFilter q;
  q.device_id = "aq-quiet";
  auto l = f.engine().list_alerts(q);
  REQUIRE(l.ok());
  REQUIRE(l->size() == 1);
  CHECK((*l)[0].rule_id == "inactive");
}

TEST_CASE("alerts: every default rule of the device type catalogue parses") {
  const std::filesystem::path path =
      std::filesystem::path(CIVICBUS_SOURCE_DIR) / "data" / "fleet" / "device_types.json";
  if (!std::filesystem::exists(path)) {
    MESSAGE("skipped: " << path.string() << " does not exist yet");
    return;
  }
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto doc = Json::parse(ss.str());
  REQUIRE_MESSAGE(doc.ok(), doc.status().to_string());
  const Json* types = doc->is_array() ? &*doc : doc->find("types");
  REQUIRE(types != nullptr);
  REQUIRE(types->is_array());
  AlertsFixture f;
  int n = 0;
  for (const auto& t : types->as_array()) {
    DeviceType type;
    type.name = t.get_string("name");
    if (const Json* rules = t.find("default_rules"); rules != nullptr && rules->is_array()) {
      type.default_rules = rules->as_array();
    }
    for (const auto& r : type.default_rules) {
      auto parsed = AlertRule::from_json(r, type.name);
      CHECK_MESSAGE(parsed.ok(), type.name, ": ", parsed.status().to_string());
      ++n;
    }
    Status st = f.engine().install_type_rules(type);
    CHECK_MESSAGE(st.ok(), st.to_string());
    Status again = f.engine().install_type_rules(type);  // idempotent
    CHECK(again.ok());
  }
  CHECK(static_cast<int>(f.engine().list_rules().size()) == n);
  MESSAGE(n << " default rules parsed and installed");
}

TEST_CASE("alerts: evaluate cost per reading") {
  AlertsFixture f;
  f.add(R"({"id":"pm25","scope":{"type":"air_quality"},"kind":"threshold","metric":"pm2_5",
            "warning":35,"critical":55,"clear":30})");
  f.add(R"({"id":"pm10","scope":{"type":"air_quality"},"kind":"threshold","metric":"pm10",
            "warning":50,"critical":100,"clear":45})");
  f.add(R"({"id":"inactive","scope":{"type":"air_quality"},"kind":"inactivity","factor":3})");
  f.add(R"({"id":"rise","scope":{"type":"air_quality"},"kind":"rate_of_change","metric":"pm10",
            "window_s":600,"warning":30,"clear":10})");
  constexpr int kDevices = 1000;
  std::vector<DeviceContext> devs;
  for (int i = 0; i < kDevices; ++i) devs.push_back(aq(fmt::format("aq-{:05}", i)));
  std::vector<Reading> readings;
  for (int i = 0; i < kDevices; ++i) {
    readings.push_back({devs[i].device_id, i % 2 ? "pm2_5" : "pm10", 10.0, "", kT0});
  }
  constexpr int kRounds = 1000;
  const auto start = std::chrono::steady_clock::now();
  for (int round = 0; round < kRounds; ++round) {
    for (int i = 0; i < kDevices; ++i) {
      Reading& r = readings[i];
      r.time = kT0 + round * 30'000;
      r.value = 10.0 + (round % 5);
      (void)f.engine().evaluate(r, devs[i]);
    }
  }
  const double ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count() /
      (double(kRounds) * kDevices);
  CHECK(f.events.empty());
  REQUIRE(f.engine().flush().ok());
  MESSAGE(
      fmt::format("evaluate(): {:.0f} ns per reading over {} readings, {} devices, 4 rules "
                  "(this build type; no level changes)",
                  ns, kRounds * kDevices, kDevices));
}

}  // namespace
}  // namespace civicbus::fleet

namespace civicbus::fleet {
namespace {

TEST_CASE("alerts: reading-to-alert latency with synchronous=FULL") {
  testing::TempDir dir;
  storage::SqliteOptions options;  // the defaults a node uses: WAL, synchronous=FULL
  options.path = dir.file("latency.db");
  auto db = storage::open_sqlite(options);
  REQUIRE_MESSAGE(db.ok(), db.status().to_string());
  ManualClock clock;
  SeededRandom random(7);
  IdGenerator ids(clock, random);
  auto engine = AlertEngine::open(**db, clock, [&] { return ids.next(); });
  REQUIRE_MESSAGE(engine.ok(), engine.status().to_string());
  auto rule = Json::parse(R"({"id":"pm25","scope":{"type":"air_quality"},"kind":"threshold",
      "metric":"pm2_5","warning":35,"critical":55,"clear":30})");
  REQUIRE((*engine)->add_rule(*rule).ok());
  std::chrono::steady_clock::time_point sent;
  std::vector<double> us;
  (*engine)->set_on_alert([&](const Alert&, std::string_view) {
    us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - sent).count());
  });
  DeviceContext dev{"aq-1", "air_quality", GeoPoint{52, 4}, {}};
  constexpr int kTransitions = 400;
  for (int i = 0; i < kTransitions; ++i) {
    Reading r{"aq-1", "pm2_5", i % 2 == 0 ? 40.0 : 20.0, "", kT0 + i * 1000};
    sent = std::chrono::steady_clock::now();
    REQUIRE((*engine)->evaluate(r, dev).ok());
  }
  REQUIRE(us.size() == kTransitions);
  std::sort(us.begin(), us.end());
  MESSAGE(
      fmt::format("reading-to-alert latency (raise/resolve; the callback runs before the "
                  "commit, which follows in the same call): p50 {:.0f} us, p99 {:.0f} us, "
                  "max {:.0f} us",
                  us[us.size() / 2], us[us.size() * 99 / 100], us.back()));
}

TEST_CASE("alerts: concurrent evaluate and tick keep one alert per rule and device") {
  AlertsFixture f;
  f.add(R"({"id":"pm25","scope":{"type":"air_quality"},"kind":"threshold","metric":"pm2_5",
            "warning":35,"critical":55,"clear":30})");
  f.add(R"({"id":"inactive","scope":{"type":"air_quality"},"kind":"inactivity","after_s":60})");
  std::atomic<int> raised{0}, resolved{0};
  f.engine().set_on_alert([&](const Alert&, std::string_view t) {
    if (t == "raised") ++raised;
    if (t == "resolved") ++resolved;
  });
  auto worker = [&](int base) {
    for (int i = 0; i < 2000; ++i) {
      DeviceContext d = aq(fmt::format("aq-{}", base + i % 20));
      Reading r{d.device_id, "pm2_5", (i / 20) % 2 == 0 ? 40.0 : 10.0, "", kT0 + i * 1000};
      CHECK(f.engine().evaluate(r, d).ok());
    }
  };
  std::thread a(worker, 0), b(worker, 100);
  for (int i = 0; i < 50; ++i) CHECK(f.engine().tick(kT0 + i * 1000).ok());
  a.join();
  b.join();
  // Each device alternates 20 readings above / 20 below: 50 episodes × 40 devices.
  CHECK(raised.load() == 50 * 40);
  CHECK(resolved.load() == 50 * 40);
  CHECK(f.engine().active_alert_count() == 0);
  AlertFilter all;
  all.limit = 100000;
  CHECK(f.engine().list_alerts(all)->size() == 50 * 40);
}

}  // namespace
}  // namespace civicbus::fleet
