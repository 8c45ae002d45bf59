// water_leak_detection: the spec's "Automated Water Leak Detection" scenario on a small district
// (a 6 x 8 grid of AMI water meters about 100 m apart and four pressure sensors). Every meter
// reports its flow every 15 minutes; a rate-of-change rule watches for flow spikes, and a
// composite rule raises one critical alert when two meters spike near a pressure sensor whose
// pressure drops. The on-call crew, a consumer of the iot.alert.* events, is "notified"; it
// acknowledges the alert, repairs the main and resolves it. The clock is a ManualClock moved 15
// minutes per interval, so the hour and a half of readings takes a second. Exits non-zero when an
// outcome differs from the scenario's.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "civicbus/fleet/fleet.hpp"
#include "civicbus/node/node.hpp"

using namespace civicbus;
using namespace civicbus::fleet;
namespace fs = std::filesystem;

namespace {

int fail(const std::string& what) {
  std::fprintf(stderr, "water_leak_detection: %s\n", what.c_str());
  return 1;
}

std::string meter_id(int row, int col) {
  return "wm-" + std::to_string(row) + "-" + std::to_string(col);
}

TimeMs now_ms(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock.now().time_since_epoch())
      .count();
}

}  // namespace

int main() {
  const fs::path dir = fs::temp_directory_path() / ("civicbus-leak-" + std::to_string(::getpid()));
  NodeOptions node_options;
  node_options.data_dir = dir.string();
  node_options.worker_threads = 2;
  node_options.generate_master_key = true;  // the audit chain is keyed by it
  node_options.logging.level = LogLevel::kWarn;
  auto node = Node::create(node_options);
  if (!node.ok()) return fail("creating the node: " + node.status().to_string());

  // The fleet keeps its registry and alerts in the node's database; its clock is ours to move.
  ManualClock clock{SystemTime(std::chrono::milliseconds(1764600000000))};  // 2025-12-01 14:40Z
  FleetOptions options;
  options.issue_certificates = false;             // no device CA needed for this scenario
  options.tick_interval = std::chrono::hours(1);  // we call tick() ourselves
  FleetDeps deps;
  deps.db = &(*node)->database();
  deps.timeseries_path = (dir / "timeseries.db").string();
  deps.broker = &(*node)->broker();
  deps.clock = &clock;
  auto opened = DeviceFleet::open(options, std::move(deps));
  if (!opened.ok()) return fail("opening the fleet: " + opened.status().to_string());
  DeviceFleet& fleet = **opened;

  // 1. Provision the district: meters on a grid, pressure sensors between them.
  for (int r = 0; r < 6; ++r) {
    for (int c = 0; c < 8; ++c) {
      Device d;
      d.id = meter_id(r, c);
      d.serial = "SN-" + d.id;
      d.type = "water_meter";
      d.location = GeoPoint{45.40 + r * 0.0009, -75.70 + c * 0.00127};
      if (auto p = fleet.provision(d, "ops@city"); !p.ok()) return fail(p.status().to_string());
    }
  }
  for (int i = 0; i < 4; ++i) {
    Device d;
    d.id = "ps-" + std::to_string(i);
    d.serial = "SN-" + d.id;
    d.type = "pressure_sensor";
    d.location = GeoPoint{45.40 + (i / 2 * 3 + 1) * 0.0009, -75.70 + (i % 2 * 4 + 2) * 0.00127};
    if (auto p = fleet.provision(d, "ops@city"); !p.ok()) return fail(p.status().to_string());
  }
  std::printf("provisioned %zu devices (48 water meters, 4 pressure sensors)\n",
              fleet.stats().devices);

  // 2. The rules: a flow spike on a meter, and the composite "main break" over several devices.
  for (const char* rule : {
           R"({"id":"meter-spike","name":"flow spike","scope":{"type":"water_meter"},
               "kind":"rate_of_change","metric":"flow_rate","window_s":1800,"direction":"rise",
               "warning":20,"critical":35,"clear":5})",
           R"({"id":"main-break","name":"main break","kind":"composite","severity":"critical",
               "within_s":900,"distance_m":500,
               "conditions":[{"rule":"meter-spike","min_devices":2},
                             {"rule":"pressure_sensor.low_pressure","min_devices":1}]})"}) {
    if (auto added = fleet.add_rule(Json::parse(rule).value()); !added.ok()) {
      return fail("adding a rule: " + added.status().to_string());
    }
  }

  // 5. The on-call crew's phone: a consumer group of the alert events.
  std::mutex mu;
  std::vector<std::string> crew_saw;  // "raised", "acknowledged", "resolved" of main-break
  broker::ConsumerGroupOptions crew;
  crew.group = "on-call-crew";
  crew.topics = {"iot.alert.>"};
  auto subscription = (*node)->broker().subscribe(crew, [&](const broker::DeliveredEvent& e) {
    const Json& alert = e.event.data();
    if (alert.get_string("rule_id") != "main-break") return Status();
    const std::string transition = e.topic.substr(e.topic.rfind('.') + 1);
    std::printf("  crew phone: %s %s alert, %zu devices, near %.5f,%.5f\n", transition.c_str(),
                alert.get_string("severity").c_str(), alert.find("devices")->size(),
                alert.at_pointer("/location/lat")->as_double(),
                alert.at_pointer("/location/lon")->as_double());
    std::lock_guard lock(mu);
    crew_saw.push_back(transition);
    return Status();
  });
  if (!subscription.ok()) return fail("subscribing the crew: " + subscription.status().to_string());

  // One 15-minute interval: every device reports, then the clock moves on.
  auto interval = [&](const std::set<std::string>& spiking, const std::string& dropping) {
    std::vector<Reading> readings;
    const TimeMs t = now_ms(clock);
    for (int r = 0; r < 6; ++r) {
      for (int c = 0; c < 8; ++c) {
        double flow = spiking.count(meter_id(r, c)) ? 48.0 : 0.5 + (r * 8 + c) % 7 * 0.3;
        readings.push_back({meter_id(r, c), "flow_rate", flow, "L/min", t});
      }
    }
    for (int i = 0; i < 4; ++i) {
      const std::string id = "ps-" + std::to_string(i);
      readings.push_back({id, "pressure", id == dropping ? 120.0 : 410.0, "kPa", t});
    }
    IngestResult result = fleet.ingest(readings);
    fleet.tick().ignore_error();
    clock.advance(std::chrono::minutes(15));
    return result.rejected.empty();
  };
  AlertQuery active_only;
  active_only.active_only = true;
  auto active_main_breaks = [&] {
    std::vector<Alert> out;
    const std::vector<Alert> active = fleet.alerts(active_only).value();
    for (const auto& a : active) {
      if (a.rule_id == "main-break") out.push_back(a);
    }
    return out;
  };

  // 3-4. An hour of normal flow, then two adjacent meters spike while ps-0 beside them drops.
  for (int i = 0; i < 4; ++i) {
    if (!interval({}, "")) return fail("a normal reading was rejected");
  }
  if (!fleet.alerts(active_only).value().empty()) return fail("alert on normal flow");
  std::printf("one hour of normal flow: no alert\n");
  const TimeMs leak_time = now_ms(clock);
  if (!interval({meter_id(1, 2), meter_id(1, 3)}, "ps-0")) return fail("a leak reading rejected");
  auto breaks = active_main_breaks();
  if (breaks.size() != 1)
    return fail("expected one main-break alert, got " + std::to_string(breaks.size()));
  const Alert leak = breaks[0];
  const std::set<std::string> involved(leak.devices.begin(), leak.devices.end());
  std::printf("leak: %s alert '%s' over %zu devices, %lld s after the readings\n",
              std::string(severity_name(leak.severity)).c_str(), leak.message.c_str(),
              involved.size(), static_cast<long long>((leak.raised_at - leak_time) / 1000));
  if (leak.severity != Severity::kCritical || !leak.location ||
      involved != std::set<std::string>{meter_id(1, 2), meter_id(1, 3), "ps-0"}) {
    return fail("the composite alert is not critical over wm-1-2, wm-1-3 and ps-0");
  }

  // 6. The crew acknowledges, isolates the section, repairs, and resolves.
  if (auto a = fleet.acknowledge(leak.id, "crew-12", "isolating valve V-88"); !a.ok()) {
    return fail("acknowledging: " + a.status().to_string());
  }
  if (auto r = fleet.resolve(leak.id, "crew-12", "main repaired"); !r.ok()) {
    return fail("resolving: " + r.status().to_string());
  }
  if (!interval({}, "")) return fail("a reading after the repair was rejected");
  const Alert closed = fleet.alert(leak.id).value();
  std::printf("alert %s: acknowledged by %s (%s), resolved by %s (%s)\n",
              std::string(alert_state_name(closed.state)).c_str(), closed.acknowledged_by.c_str(),
              closed.acknowledge_note.c_str(), closed.resolved_by.c_str(),
              closed.resolve_note.c_str());
  if (closed.state != AlertState::kResolved || closed.acknowledged_by != "crew-12" ||
      !active_main_breaks().empty()) {
    return fail("the alert is not resolved, or a main break was raised again");
  }

  // The crew's phone got the three transitions (events are delivered asynchronously).
  std::vector<std::string> seen;
  for (int i = 0; i < 500; ++i) {
    {
      std::lock_guard lock(mu);
      seen = crew_saw;
    }
    if (seen.size() >= 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  (*subscription)->stop();
  if (seen != std::vector<std::string>{"raised", "acknowledged", "resolved"}) {
    return fail("the crew did not see raised, acknowledged, resolved in order");
  }
  opened->reset();
  node->reset();
  fs::remove_all(dir);
  std::printf("ok: leak found, crew notified, alert acknowledged and resolved\n");
  return 0;
}
