// flood_early_warning: the spec's "Flood Early Warning System" scenario. 20 flood gauges and 15
// rain gauges report to an edge gateway by the creek every 2 minutes, every 30 seconds during
// the storm. The edge runs the alert rules itself (a rising-water rate-of-change alert first,
// then the water level's warning at 1 m and critical at 1.5 m) and a local rule that opens
// floodgate 3 at the critical level, without waiting for the central node. It forwards every
// reading to the central node (a civicbus Node with a gateway and a fleet, in this process on a
// loopback port), where emergency management consumes the alerts with the devices of the
// affected area. The edge's clock is a ManualClock, so the storm takes a second. Exits non-zero
// when an outcome differs from the scenario's.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "civicbus/fleet/fleet.hpp"
#include "civicbus/gateway/gateway.hpp"
#include "civicbus/node/node.hpp"
#include "civicbus/storage/database.hpp"

using namespace civicbus;
using namespace civicbus::fleet;
namespace fs = std::filesystem;

namespace {

int fail(const std::string& what) {
  std::fprintf(stderr, "flood_early_warning: %s\n", what.c_str());
  return 1;
}

std::string gauge(const char* prefix, int i) {
  return prefix + std::string(i < 10 ? "-0" : "-") + std::to_string(i);
}

}  // namespace

int main() {
  const fs::path dir = fs::temp_directory_path() / ("civicbus-flood-" + std::to_string(::getpid()));

  // The central node: a gateway on a loopback port with the fleet's API behind it.
  NodeOptions central_options;
  central_options.data_dir = (dir / "central").string();
  central_options.worker_threads = 2;
  central_options.generate_master_key = true;
  central_options.logging.level = LogLevel::kWarn;
  central_options.gateway = gateway::GatewayOptions{};  // port 0: any free port
  central_options.fleet = FleetOptions{};
  central_options.fleet->issue_certificates = false;
  auto central = Node::create(central_options);
  if (!central.ok()) return fail("creating the central node: " + central.status().to_string());
  DeviceFleet& cloud = *(*central)->fleet();

  // The edge gateway: its own database and buffer; its clock runs from three hours ago, so
  // every reading it forwards is in the central node's past.
  ManualClock clock{std::chrono::time_point_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now() - std::chrono::hours(3))};
  fs::create_directories(dir / "edge");
  storage::SqliteOptions edge_store;
  edge_store.path = (dir / "edge/edge.db").string();
  auto edge_db = storage::open_sqlite(edge_store);
  if (!edge_db.ok()) return fail("opening the edge database: " + edge_db.status().to_string());
  FleetOptions edge_options;
  edge_options.issue_certificates = false;
  edge_options.tick_interval = std::chrono::hours(1);
  edge_options.edge =
      FleetEdgeOptions{"edge-creek", (dir / "edge/buffer.db").string(),
                       "127.0.0.1:" + std::to_string((*central)->gateway()->port()), "", 500};
  FleetDeps edge_deps;
  edge_deps.db = edge_db->get();
  edge_deps.clock = &clock;
  auto opened = DeviceFleet::open(edge_options, std::move(edge_deps));
  if (!opened.ok()) return fail("opening the edge fleet: " + opened.status().to_string());
  DeviceFleet& edge = **opened;

  // 1. The gauges, known to both; the floodgate rule lives on the edge.
  for (int i = 0; i < 35; ++i) {
    Device d;
    d.id = i < 20 ? gauge("fg", i) : gauge("rg", i - 20);
    d.serial = "SN-" + d.id;
    d.type = i < 20 ? "flood_gauge" : "rain_gauge";
    d.location = GeoPoint{45.30 + (i % 20) * 0.01, i < 20 ? -75.80 : -75.78};
    for (DeviceFleet* f : {&edge, &cloud}) {
      if (auto p = f->provision(d, "emergency-mgmt"); !p.ok()) return fail(p.status().to_string());
    }
  }
  auto gate_rule = Json::parse(R"({"id":"floodgate-3","name":"open floodgate 3",
      "scope":{"device":"fg-03"},"kind":"threshold","metric":"water_level","direction":"above",
      "critical":1.5,"clear":0.9,"actions":[{"output":"floodgate-3","command":"open","on":"critical"}]})");
  if (auto r = edge.add_rule(*gate_rule); !r.ok()) return fail(r.status().to_string());
  std::atomic<int> gate_opened{0};
  std::atomic<TimeMs> gate_opened_at{0};
  edge.on_action([&](std::string_view output, std::string_view command, const Alert& alert) {
    std::printf("  EDGE: %s %s (%s at %.2f m)\n", std::string(command).c_str(),
                std::string(output).c_str(), alert.device_id.c_str(), alert.value);
    if (output == "floodgate-3" && command == "open" && gate_opened++ == 0) {
      gate_opened_at = alert.raised_at;
    }
  });

  // 5. Emergency management: the central node's alert events, with the area's gauges.
  std::atomic<int> eoc_alerts{0};
  broker::ConsumerGroupOptions eoc;
  eoc.group = "emergency-operations";
  eoc.topics = {"iot.alert.raised", "iot.alert.escalated"};
  auto subscription = (*central)->broker().subscribe(eoc, [&](const broker::DeliveredEvent& e) {
    const Json& a = e.event.data();
    if (a.get_string("device_id") != "fg-03") return Status();
    DeviceQuery area;  // every gauge within 2 km: the affected area on the map
    area.circle = GeoCircle{
        {a.at_pointer("/location/lat")->as_double(), a.at_pointer("/location/lon")->as_double()},
        2000};
    std::printf("  EOC: %s %s on fg-03 (%s), %zu gauges in the 2 km area\n",
                e.topic.substr(10).c_str(), a.get_string("severity").c_str(),
                a.get_string("rule_id").c_str(), cloud.devices(area).total);
    ++eoc_alerts;
    return Status();
  });
  if (!subscription.ok()) return fail("subscribing: " + subscription.status().to_string());

  // 2. Readings: the creek at fg-03 rises during the storm; the others stay low.
  double creek = 0.45;
  AlertQuery active;
  active.active_only = true;
  TimeMs rate_at = 0, warning_at = 0, critical_at = 0;
  auto sample = [&](bool storm) {
    std::vector<Reading> readings;
    const TimeMs t =
        std::chrono::duration_cast<std::chrono::milliseconds>(clock.now().time_since_epoch())
            .count();
    for (int i = 0; i < 20; ++i) {
      readings.push_back({gauge("fg", i), "water_level", i == 3 ? creek : 0.40 + i * 0.01, "m", t});
    }
    for (int i = 0; i < 15; ++i) {
      readings.push_back({gauge("rg", i), "rain_rate", storm ? 4.0 + i : 0.0, "mm/h", t});
    }
    const bool all = edge.ingest(readings).rejected.empty();
    const std::vector<Alert> alerts = edge.alerts(active).value();
    for (const Alert& a : alerts) {
      if (a.device_id != "fg-03") continue;
      if (a.rule_id == "flood_gauge.rising_water" && rate_at == 0) rate_at = t;
      if (a.rule_id == "flood_gauge.water_level" && warning_at == 0) warning_at = t;
      if (a.rule_id == "flood_gauge.water_level" && a.severity == Severity::kCritical &&
          critical_at == 0) {
        critical_at = t;
      }
    }
    return all;
  };
  for (int i = 0; i < 30; ++i) {  // an hour of normal conditions, every 2 minutes
    if (!sample(false)) return fail("a normal reading was rejected");
    clock.advance(std::chrono::minutes(2));
  }
  std::printf("one hour of normal levels: %zu active alerts\n", edge.alerts(active).value().size());
  // 3. The storm: every 30 s, fg-03 rises 2 cm (0.4 m per 10 minutes) up to 1.6 m.
  const bool critical_before_storm = critical_at != 0;
  while (creek < 1.6) {
    creek += 0.02;
    if (!sample(true)) return fail("a storm reading was rejected");
    clock.advance(std::chrono::seconds(30));
  }
  auto minute = [&](TimeMs t) { return t == 0 ? -1.0 : (t - rate_at) / 60000.0; };
  std::printf(
      "fg-03: rising-water alert first, level warning (1 m) %.1f min later, critical "
      "(1.5 m) %.1f min later; floodgate opened %d time(s)\n",
      minute(warning_at), minute(critical_at), gate_opened.load());
  if (critical_before_storm || rate_at == 0 ||
      !(rate_at < warning_at && warning_at < critical_at)) {
    return fail("expected the rate-of-change alert, then the warning, then the critical level");
  }
  // 4. The edge acted at the critical level, in the same ingest call.
  if (gate_opened != 1 || gate_opened_at != critical_at) {
    return fail("the floodgate should open once, at the critical reading");
  }

  // 6. Everything reached the central node, which raised its own alerts for emergency management.
  const std::uint64_t sent = edge.stats().readings_accepted;
  for (int i = 0; i < 1000 && (cloud.stats().readings_accepted < sent || eoc_alerts < 3); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::printf("central node: %llu of %llu readings forwarded; emergency management saw %d alerts\n",
              static_cast<unsigned long long>(cloud.stats().readings_accepted),
              static_cast<unsigned long long>(sent), eoc_alerts.load());
  (*subscription)->stop();
  if (cloud.stats().readings_accepted != sent || eoc_alerts < 3) {
    return fail("the central node did not get every reading and the three fg-03 alerts");
  }
  opened->reset();
  central->reset();
  fs::remove_all(dir);
  std::printf("ok: early warning raised, floodgate opened at the edge, central node up to date\n");
  return 0;
}
