#include "fleet/device_types.hpp"

#include <doctest/doctest.h>

#include <set>
#include <string>

using namespace civicbus;
using namespace civicbus::fleet;

namespace {

std::string error_of(std::string_view text) {
  auto r = parse_device_types(text);
  REQUIRE_FALSE(r.ok());
  return r.status().message();
}

}  // namespace

TEST_CASE("device_types: the built-in catalogue parses and holds all 16 types") {
  auto types = builtin_device_types();
  REQUIRE_MESSAGE(types.ok(), types.status().to_string());
  std::set<std::string> names;
  for (const auto& t : *types) names.insert(t.name);
  const std::set<std::string> expected{
      "water_meter",     "pressure_sensor",     "traffic_counter", "air_quality",
      "weather_station", "parking_sensor",      "streetlight",     "flood_gauge",
      "rain_gauge",      "noise_monitor",       "waste_bin",       "ev_charger",
      "scada_rtu",       "building_controller", "smart_lock",      "cctv_camera"};
  CHECK(names == expected);

  auto catalog = DeviceTypeCatalog::with_builtin_types();
  REQUIRE(catalog.ok());
  auto water = (*catalog)->find("water_meter");
  REQUIRE(water != nullptr);
  CHECK(water->expected_interval_s == 900);
  REQUIRE(water->metric("flow_rate") != nullptr);
  CHECK(water->metric("flow_rate")->unit == "L/min");
  CHECK(water->metric("total_volume")->unit == "m3");
  std::set<std::string> kinds;
  for (const auto& r : water->default_rules) kinds.insert(r.get_string("kind"));
  CHECK(kinds.contains("inactivity"));
  CHECK((kinds.contains("threshold") || kinds.contains("rate_of_change")));

  auto air = (*catalog)->find("air_quality");
  REQUIRE(air != nullptr);
  CHECK(air->expected_interval_s == 300);
  bool pm25 = false;
  for (const auto& r : air->default_rules) {
    if (r.get_string("metric") == "pm2_5") {
      pm25 = true;
      CHECK(r.find("warning")->as_double() == 35);
      CHECK(r.find("critical")->as_double() == 55);
    }
  }
  CHECK(pm25);

  auto flood = (*catalog)->find("flood_gauge");
  REQUIRE(flood != nullptr);
  CHECK(flood->expected_interval_s == 120);
  bool level = false, rising = false;
  for (const auto& r : flood->default_rules) {
    if (r.get_string("kind") == "threshold" && r.get_string("metric") == "water_level") {
      level = true;
      CHECK(r.find("warning")->as_double() == 1.0);
      CHECK(r.find("critical")->as_double() == 1.5);
    }
    if (r.get_string("kind") == "rate_of_change" && r.get_string("direction") == "rise") {
      rising = true;
    }
  }
  CHECK(level);
  CHECK(rising);

  auto parking = (*catalog)->find("parking_sensor");
  REQUIRE(parking != nullptr);
  CHECK(parking->default_network == Network::kSigfox);
  CHECK(parking->expected_interval_s == 3600);
  CHECK(parking->default_rules.at(0).get_string("kind") == "inactivity");

  // Every type round-trips through its JSON form.
  for (const auto& t : *types) {
    auto again = parse_device_type(device_type_to_json(t));
    REQUIRE_MESSAGE(again.ok(), again.status().to_string());
    CHECK(device_type_to_json(*again) == device_type_to_json(t));
  }
}

TEST_CASE("device_types: errors name the type, its index and the field") {
  CHECK(error_of(R"([{"name":"a","metrics":[{"name":"x","unit":"m"}]},
                    {"name":"b","metrics":[{"name":"level"}]}])") ==
        "device type #1 'b': metric #0 'level': missing field 'unit'");
  CHECK(error_of(R"([{"name":"a","metrics":[{"name":"x","unit":"m"}],"colour":"red"}])")
            .starts_with("device type #0 'a': unknown field 'colour'"));
  CHECK(error_of(R"([{"name":"a","metrics":[{"name":"x","unit":"m","min":5,"max":1}]}])") ==
        "device type #0 'a': metric 'x' has min 5 greater than max 1");
  CHECK(error_of(R"([{"name":"a","metrics":[{"name":"x","unit":"m"},{"name":"x","unit":"m"}]}])") ==
        "device type #0 'a': metric 'x' is listed twice");
  CHECK(error_of(R"([{"name":"a","metrics":[{"name":"x","unit":"m"}]},
                    {"name":"a","metrics":[{"name":"x","unit":"m"}]}])") ==
        "device type #1 'a': the name is used by an earlier type");
  CHECK(error_of(R"([{"metrics":[]}])") == "device type #0: missing field 'name'");
  CHECK(error_of(R"([{"name":"a","metrics":[{"name":"x","unit":"m"}],
                      "default_rules":[{"name":"r","kind":"threshold","metric":"y"}]}])") ==
        "device type #0 'a': default rule #0 ('r'): metric 'y' is not a metric of the type");
  CHECK(error_of(R"([{"name":"a","metrics":[{"name":"x","unit":"m"}],"default_network":"zigbee"}])")
            .starts_with("device type #0 'a': field 'default_network': unknown network 'zigbee'"));
  CHECK(error_of(R"({"name":"a"})").find("must be a JSON array") != std::string::npos);
}

TEST_CASE("device_types: a catalogue registers and replaces custom types with validation") {
  auto catalog = DeviceTypeCatalog::with_builtin_types();
  REQUIRE(catalog.ok());
  DeviceTypeCatalog& c = **catalog;
  CHECK(c.size() == 16);

  DeviceType gate;
  gate.name = "floodgate";
  gate.metrics.push_back(MetricSpec{"position", "%", "gate opening", 0.0, 100.0});
  gate.expected_interval_s = 60;
  CHECK(c.register_type(gate).ok());
  CHECK(c.size() == 17);
  auto again = c.register_type(gate);
  CHECK(again.code() == ErrorCode::kAlreadyExists);

  gate.expected_interval_s = 30;
  auto held = c.find("floodgate");
  CHECK(c.register_type(gate, /*replace=*/true).ok());
  CHECK(c.find("floodgate")->expected_interval_s == 30);
  CHECK(held->expected_interval_s == 60);  // an earlier snapshot stays as it was

  DeviceType bad = gate;
  bad.name = "bad";
  bad.metrics.push_back(MetricSpec{"position", "%", "", {}, {}});
  auto st = c.register_type(bad);
  CHECK(st.code() == ErrorCode::kInvalidArgument);
  CHECK(st.message() == "device type 'bad': metric 'position' is listed twice");
  CHECK(c.find("bad") == nullptr);
}
