// The `fleet:` section of the node's YAML (src/node/fleet_config.cpp) and a node running it.
#include <doctest/doctest.h>

#include "civicbus/fleet/fleet.hpp"
#include "civicbus/node/node.hpp"
#include "support/test_support.hpp"

using namespace civicbus;

namespace {

std::string fleet_error(std::string_view text) {
  auto r = NodeOptions::from_yaml(text, "node.yaml");
  return r.ok() ? std::string() : r.status().message();
}

}  // namespace

TEST_CASE("node config: the fleet section fills FleetOptions") {
  auto o = NodeOptions::from_yaml(R"(
fleet:
  time_zone: America/Toronto
  retention: {raw: 7d, 5m: 30d}
  max_future_skew: 2m
  certificates: {enabled: false}
  mqtt:
    server: tcp://127.0.0.1:1883
    client_id: node-1
    chirpstack_prefix: ""
  sigfox: {device_field: /device/id, data_field: payload}
  reading_events: {mode: off}
  device_types:
    - name: soil_probe
      description: Soil moisture probe
      metrics: [{name: moisture, unit: "%", min: 0, max: 100}]
      expected_interval_s: 1800
  edge: {id: edge-1, uplink: 10.0.0.5:8080, buffer: buffer.db}
  api: {auth: [api_key], groups: [iot]}
)",
                                  "node.yaml");
  REQUIRE_MESSAGE(o.ok(), o.status().to_string());
  REQUIRE(o->fleet.has_value());
  const fleet::FleetOptions& f = *o->fleet;
  CHECK(f.time_zone == "America/Toronto");
  CHECK(f.raw_retention == std::chrono::hours(24 * 7));
  CHECK(f.retention_5m == std::chrono::hours(24 * 30));
  CHECK(f.max_future_skew == std::chrono::minutes(2));
  CHECK_FALSE(f.issue_certificates);
  REQUIRE(f.mqtt.has_value());
  CHECK(f.mqtt->client_id == "node-1");
  CHECK(f.mqtt->chirpstack_prefix.empty());
  CHECK(f.sigfox_device_field == "/device/id");
  CHECK(f.reading_events == fleet::ReadingEvents::kOff);
  REQUIRE(f.device_types.size() == 1);
  CHECK(f.device_types[0].metrics[0].unit == "%");
  REQUIRE(f.edge.has_value());
  CHECK(f.edge->uplink == "10.0.0.5:8080");
  CHECK(f.api_auth == std::vector<gateway::AuthMethod>{gateway::AuthMethod::kApiKey});
}

TEST_CASE("node config: fleet errors name the line and the field") {
  CHECK(fleet_error("fleet:\n  time_zon: UTC\n") ==
        "node.yaml:2: unknown key 'time_zon' in fleet (did you mean 'time_zone'?)");
  CHECK(fleet_error("fleet:\n  time_zone: Mars/Olympus\n").find("node.yaml:2:") == 0);
  CHECK(fleet_error("fleet:\n  time_zone: Mars/Olympus\n").find("Mars/Olympus") !=
        std::string::npos);
  CHECK(fleet_error("fleet:\n  mqtt: {server: http://x}\n").find("tcp://host:port") !=
        std::string::npos);
  CHECK(fleet_error("fleet:\n  api: {groups: [iot]}\n").find("needs 'fleet.api.auth'") !=
        std::string::npos);
  CHECK(fleet_error("fleet:\n  device_types:\n    - name: x\n      metrics: []\n").find("'x'") !=
        std::string::npos);
  CHECK(fleet_error("fleet:\n  reading_events: {mode: sometimes}\n").find("node.yaml:2:") == 0);
}

TEST_CASE("node: a node with a fleet section runs the fleet and refuses to start without a key") {
  testing::TempDir dir;
  NodeOptions o;
  o.data_dir = dir.file("data");
  o.master_key_env = "";
  o.logging.level = LogLevel::kError;
  o.fleet.emplace();
  auto refused = Node::create(o);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().message().find("device CA needs the master key") != std::string::npos);

  o.generate_master_key = true;
  auto node = Node::create(o);
  REQUIRE_MESSAGE(node.ok(), node.status().to_string());
  fleet::DeviceFleet* f = (*node)->fleet();
  REQUIRE(f != nullptr);
  fleet::Device d;
  d.id = "wm-1";
  d.serial = "S1";
  d.type = "water_meter";
  REQUIRE(f->provision(d, "test").ok());
  CHECK((*node)->broker().topic("iot.device.provisioned").ok());
  node->reset();
  // Reopened, the device and its certificate are still there.
  auto again = Node::create(o);
  REQUIRE_MESSAGE(again.ok(), again.status().to_string());
  auto device = (*again)->fleet()->device("wm-1");
  REQUIRE(device != nullptr);
  CHECK_FALSE(device->certificate_serial.empty());
}
