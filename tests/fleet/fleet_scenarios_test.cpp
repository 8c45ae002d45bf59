// The four IoT scenarios of the specification (shared/spec/001_9df4257d48924c02.txt), each run
// against a DeviceFleet on real SQLite files and a real broker, with the clock moved by hand.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <map>
#include <set>

#include "broker/broker_fixture.hpp"
#include "civicbus/core/time_zone.hpp"
#include "civicbus/fleet/fleet.hpp"
#include "support/test_support.hpp"

using namespace civicbus;
using namespace civicbus::fleet;
using broker::testing_support::BrokerFixture;
using broker::testing_support::kTestMasterKey;

namespace {

constexpr TimeMs kStart = 1764600000000;  // 2025-12-01T14:40:00Z

struct Scenario {
  ManualClock clock{SystemTime(std::chrono::milliseconds(kStart))};
  BrokerFixture broker;
  testing::TempDir dir;
  std::unique_ptr<DeviceFleet> fleet;

  explicit Scenario(FleetOptions options = {}) {
    options.tick_interval = std::chrono::hours(1);
    options.issue_certificates = false;  // covered elsewhere; keeps these fast
    FleetDeps deps;
    deps.db = &broker.db();
    deps.timeseries_path = dir.file("timeseries.db");
    deps.broker = &broker.broker();
    deps.clock = &clock;
    auto opened = DeviceFleet::open(std::move(options), std::move(deps));
    REQUIRE_MESSAGE(opened.ok(), opened.status().to_string());
    fleet = std::move(opened).value();
  }
  TimeMs now() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock.now().time_since_epoch())
        .count();
  }
  void advance(std::chrono::milliseconds by) { clock.advance(by); }
  void provision_all(std::vector<Device> devices) {
    for (auto& d : devices) {
      auto p = fleet->provision(std::move(d), "ops@city");
      REQUIRE_MESSAGE(p.ok(), p.status().to_string());
    }
  }
  std::vector<Alert> active() { return fleet->alerts({.active_only = true}).value(); }
};

Device device(std::string id, std::string type, double lat, double lon) {
  Device d;
  d.id = id;
  d.serial = "SN-" + id;
  d.type = std::move(type);
  d.location = GeoPoint{lat, lon};
  return d;
}

}  // namespace

TEST_CASE(
    "scenario: water leak detection with a composite alert (1,500 meters, 50 pressure sensors)") {
  Scenario s;
  // Meters on a 30 × 50 grid about 100 m apart; pressure sensors on a 5 × 10 grid.
  std::vector<Device> devices;
  auto meter_id = [](int r, int c) { return fmt::format("wm-{:02}-{:02}", r, c); };
  for (int r = 0; r < 30; ++r) {
    for (int c = 0; c < 50; ++c) {
      devices.push_back(
          device(meter_id(r, c), "water_meter", 45.40 + r * 0.0009, -75.70 + c * 0.00127));
    }
  }
  for (int r = 0; r < 5; ++r) {
    for (int c = 0; c < 10; ++c) {
      devices.push_back(device(fmt::format("ps-{}-{}", r, c), "pressure_sensor",
                               45.40 + (r * 6 + 3) * 0.0009, -75.70 + (c * 5 + 2) * 0.00127));
    }
  }
  s.provision_all(std::move(devices));
  CHECK(s.fleet->stats().devices == 1550);

  // A flow spike rule on the meters, and the composite: two meters spiking near a pressure drop.
  REQUIRE(s.fleet
              ->add_rule(Json::parse(R"({"id":"meter-spike","name":"flow spike",
      "scope":{"type":"water_meter"},"kind":"rate_of_change","metric":"flow_rate",
      "window_s":1800,"direction":"rise","warning":20,"critical":35,"clear":5})")
                             .value())
              .ok());
  REQUIRE(s.fleet
              ->add_rule(Json::parse(R"({"id":"main-break","name":"main break",
      "kind":"composite","severity":"critical","within_s":900,"distance_m":500,
      "conditions":[{"rule":"meter-spike","min_devices":2},
                    {"rule":"pressure_sensor.low_pressure","min_devices":1}]})")
                             .value())
              .ok());

  // Four normal 15-minute intervals.
  auto interval = [&](const std::set<std::string>& spiking, const std::string& dropping) {
    std::vector<Reading> rs;
    const TimeMs t = s.now();
    for (int r = 0; r < 30; ++r) {
      for (int c = 0; c < 50; ++c) {
        std::string id = meter_id(r, c);
        double flow = spiking.count(id) ? 48.0 : 0.5 + ((r * 50 + c) % 7) * 0.3;
        rs.push_back({id, "flow_rate", flow, "L/min", t});
      }
    }
    for (int r = 0; r < 5; ++r) {
      for (int c = 0; c < 10; ++c) {
        std::string id = fmt::format("ps-{}-{}", r, c);
        rs.push_back({id, "pressure", id == dropping ? 120.0 : 410.0 + r, "kPa", t});
      }
    }
    IngestResult result = s.fleet->ingest(rs);
    REQUIRE(result.rejected.empty());
    REQUIRE(s.fleet->tick().ok());
    s.advance(std::chrono::minutes(15));
  };
  for (int i = 0; i < 4; ++i) interval({}, "");
  CHECK(s.active().empty());

  // Two adjacent meters spike while the pressure sensor beside them drops.
  const TimeMs leak_time = s.now();
  interval({meter_id(10, 12), meter_id(10, 13)}, "ps-1-2");
  std::vector<Alert> composite;
  for (const auto& a : s.active()) {
    if (a.rule_id == "main-break") composite.push_back(a);
  }
  REQUIRE(composite.size() == 1);
  const Alert& leak = composite[0];
  CHECK(leak.severity == Severity::kCritical);
  std::set<std::string> involved(leak.devices.begin(), leak.devices.end());
  CHECK(involved == std::set<std::string>{meter_id(10, 12), meter_id(10, 13), "ps-1-2"});
  // Detected at the reading that completed the pattern (well within 5 minutes).
  CHECK(leak.raised_at - leak_time <= 5 * 60 * 1000);
  CHECK(leak.location.has_value());

  // The crew acknowledges, isolates the section and resolves after the repair.
  REQUIRE(s.fleet->acknowledge(leak.id, "crew-12", "isolating valve V-88").ok());
  REQUIRE(s.fleet->resolve(leak.id, "crew-12", "main repaired").ok());
  // Back to normal: nothing is raised again.
  interval({}, "");
  for (const auto& a : s.active()) CHECK(a.rule_id != "main-break");
  auto closed = s.fleet->alert(leak.id).value();
  CHECK(closed.state == AlertState::kResolved);
  CHECK(closed.acknowledged_by == "crew-12");
  CHECK(closed.resolved_by == "crew-12");
  CHECK(closed.acknowledge_note == "isolating valve V-88");
  CHECK(closed.resolve_note == "main repaired");
}

TEST_CASE("scenario: air quality monitoring (25 monitors, 5-minute data, PM2.5 35/55)") {
  FleetOptions o;
  o.time_zone = "America/Toronto";
  Scenario s(o);
  // Provisioned by bulk import with GPS coordinates.
  std::string csv = "serial,type,lat,lon,department\n";
  for (int i = 0; i < 25; ++i) {
    csv += fmt::format("AQ-{:02},air_quality,{:.4f},{:.4f},environment\n", i, 45.38 + i * 0.004,
                       -75.72 + i * 0.003);
  }
  auto report = s.fleet->import_devices(csv, ImportFormat::kCsv, "compliance@city");
  REQUIRE(report.ok());
  REQUIRE(report->provisioned.size() == 25);
  REQUIRE(report->errors.empty());

  // One day of 5-minute data starting at local midnight; AQ-07 reaches 40 (warning) around
  // noon, AQ-19 reaches 62 (critical) in the evening.
  auto midnight = TimeZone::load("America/Toronto").value().start_of_local_day(s.now());
  s.clock.set(SystemTime(std::chrono::milliseconds(midnight)));
  std::size_t accepted = 0;
  for (int step = 0; step < 288; ++step) {
    std::vector<Reading> rs;
    const TimeMs t = s.now();
    for (int i = 0; i < 25; ++i) {
      const std::string id = fmt::format("AQ-{:02}", i);
      double pm25 = 8 + (i % 5) + 3 * std::sin(step / 20.0);
      if (i == 7 && step >= 144 && step < 156) pm25 = 40;
      if (i == 19 && step >= 228 && step < 236) pm25 = 62;
      rs.push_back({id, "pm2_5", pm25, "ug/m3", t});
      rs.push_back({id, "pm10", pm25 * 1.6, "ug/m3", t});
    }
    accepted += s.fleet->ingest(rs).accepted;
    s.advance(std::chrono::minutes(5));
  }
  CHECK(accepted == 288 * 25 * 2);
  auto alerts = s.fleet->alerts({}).value();
  std::map<std::string, Alert> pm25;
  for (const auto& a : alerts) {
    if (a.metric == "pm2_5") pm25[a.device_id] = a;
  }
  REQUIRE(pm25.size() == 2);
  CHECK(pm25["AQ-07"].severity == Severity::kWarning);
  CHECK(pm25["AQ-19"].severity == Severity::kCritical);
  CHECK(pm25["AQ-07"].state == AlertState::kResolved);  // cleared below 30 by the evening

  // The compliance report reads the hourly tier: 24 buckets of 12 readings for the day.
  REQUIRE(s.fleet->flush().ok());
  auto hourly = s.fleet->readings("AQ-07", "pm2_5", midnight, midnight + 24 * 3600 * 1000, "1h");
  REQUIRE(hourly.ok());
  REQUIRE(hourly->points.size() == 24);
  for (const auto& p : hourly->points) CHECK(p.count == 12);
  CHECK(hourly->points[12].max == 40);
  auto daily = s.fleet->readings("AQ-07", "pm2_5", midnight, midnight + 24 * 3600 * 1000, "1d");
  REQUIRE(daily.ok());
  REQUIRE(daily->points.size() == 1);
  CHECK(daily->points[0].time == midnight);
  CHECK(daily->points[0].count == 288);
}

TEST_CASE("scenario: smart parking (3,000 sensors over Sigfox, inactivity alerts)") {
  Scenario s;
  std::vector<Device> devices;
  for (int i = 0; i < 3000; ++i) {
    Device d = device(fmt::format("pk-{:04}", i), "parking_sensor", 45.41 + (i / 60) * 0.0002,
                      -75.70 + (i % 60) * 0.0003);
    d.network = Network::kSigfox;
    devices.push_back(std::move(d));
  }
  s.provision_all(std::move(devices));
  auto report = [&](int from, int to, int skip_from, int skip_to) {
    std::vector<Reading> rs;
    for (int i = from; i < to; ++i) {
      if (i >= skip_from && i < skip_to) continue;
      rs.push_back(
          {fmt::format("pk-{:04}", i), "occupied", static_cast<double>(i % 2), "1", s.now()});
    }
    REQUIRE(s.fleet->ingest(rs).rejected.empty());
  };
  // Hourly heartbeats; sensors 100..139 stop reporting after the first hour.
  report(0, 3000, 0, 0);
  for (int hour = 1; hour <= 4; ++hour) {
    s.advance(std::chrono::hours(1));
    report(0, 3000, 100, 140);
    REQUIRE(s.fleet->tick().ok());
  }
  std::set<std::string> silent;
  for (const auto& a : s.active()) {
    CHECK(a.rule_id == "parking_sensor.inactive");
    silent.insert(a.device_id);
  }
  CHECK(silent.size() == 40);
  CHECK(silent.count("pk-0100") == 1);
  CHECK(silent.count("pk-0139") == 1);
  // Maintenance replaced their batteries: the next report resolves each alert.
  report(100, 140, 0, 0);
  CHECK(s.active().empty());
  // Real-time occupancy per sensor is in the latest readings.
  CHECK(s.fleet->latest("pk-0101")[0].metric == "occupied");
}

TEST_CASE("scenario: flood early warning (20 flood and 15 rain gauges, storm mode)") {
  Scenario s;
  std::vector<Device> devices;
  for (int i = 0; i < 20; ++i)
    devices.push_back(device(fmt::format("fg-{:02}", i), "flood_gauge", 45.30 + i * 0.01, -75.80));
  for (int i = 0; i < 15; ++i)
    devices.push_back(device(fmt::format("rg-{:02}", i), "rain_gauge", 45.30 + i * 0.013, -75.78));
  s.provision_all(std::move(devices));
  std::vector<std::pair<std::string, Alert>> log;
  double creek = 0.45;  // fg-03's level
  auto sample = [&](bool storm) {
    std::vector<Reading> rs;
    const TimeMs t = s.now();
    for (int i = 0; i < 20; ++i) {
      rs.push_back(
          {fmt::format("fg-{:02}", i), "water_level", i == 3 ? creek : 0.40 + i * 0.01, "m", t});
    }
    for (int i = 0; i < 15; ++i) {
      rs.push_back({fmt::format("rg-{:02}", i), "rain_rate", storm ? 12.0 + i : 0.0, "mm/h", t});
    }
    REQUIRE(s.fleet->ingest(rs).rejected.empty());
    REQUIRE(s.fleet->tick().ok());
  };
  // One hour of normal conditions: every 2 minutes.
  for (int i = 0; i < 30; ++i) {
    sample(false);
    s.advance(std::chrono::minutes(2));
  }
  CHECK(s.active().empty());
  // The storm: every 30 s, fg-03 rises 2 cm per sample (0.4 m per 10 minutes) up to 1.6 m.
  TimeMs rate_raised = 0, warning_at = 0, critical_at = 0;
  while (creek < 1.6) {
    creek += 0.02;
    sample(true);
    for (const auto& a : s.active()) {
      if (a.device_id != "fg-03") continue;
      if (a.rule_id == "flood_gauge.rising_water" && rate_raised == 0) rate_raised = a.raised_at;
      if (a.rule_id == "flood_gauge.water_level") {
        if (warning_at == 0) warning_at = a.raised_at;
        if (a.severity == Severity::kCritical && critical_at == 0) critical_at = s.now();
      }
    }
    s.advance(std::chrono::seconds(30));
  }
  // The rate-of-change alert gives the early warning, before the 1 m and 1.5 m levels.
  REQUIRE(rate_raised != 0);
  REQUIRE(warning_at != 0);
  REQUIRE(critical_at != 0);
  CHECK(rate_raised < warning_at);
  CHECK(warning_at < critical_at);
  // Only the creek's gauge alerts among the flood gauges; heavy rain shows on the rain gauges
  // whose rate reached the 20 mm/h warning level.
  std::set<std::string> flood_devices, rain_devices;
  for (const auto& a : s.active()) {
    if (a.device_id.starts_with("fg-")) flood_devices.insert(a.device_id);
    if (a.device_id.starts_with("rg-")) rain_devices.insert(a.device_id);
  }
  CHECK(flood_devices == std::set<std::string>{"fg-03"});
  CHECK(rain_devices.size() == 7);  // rg-08 .. rg-14 (20..26 mm/h)
}
