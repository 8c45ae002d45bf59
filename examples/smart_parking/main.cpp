// smart_parking: the spec's "Smart Parking Occupancy" scenario on two downtown blocks: 120
// in-ground sensors report over Sigfox (the network's HTTP callback, a hex payload decoded by the
// parking_sensor codec: byte 0 occupied, byte 1 battery %). Occupancy changes and hourly
// heartbeats feed the real-time count of free bays per block; six sensors stop reporting and the
// type's inactivity rule (3 x the hourly interval) flags them for the maintenance crew; a new
// battery's first report resolves each alert. The hourly rollups give each block's occupancy
// rate. The clock is a ManualClock, so five hours take a second. Exits non-zero when an outcome
// differs from the scenario's.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "civicbus/fleet/fleet.hpp"
#include "civicbus/node/node.hpp"

using namespace civicbus;
using namespace civicbus::fleet;
namespace fs = std::filesystem;

namespace {

constexpr int kSensors = 120;  // pk-000 .. pk-119; 0-59 on block A, 60-119 on block B

int fail(const std::string& what) {
  std::fprintf(stderr, "smart_parking: %s\n", what.c_str());
  return 1;
}

std::string sensor(int i) {
  char id[16];
  std::snprintf(id, sizeof id, "pk-%03d", i);
  return id;
}
std::string sigfox_id(int i) {  // what the Sigfox network calls the device
  char id[16];
  std::snprintf(id, sizeof id, "1A%04X", i);
  return id;
}

}  // namespace

int main() {
  const fs::path dir = fs::temp_directory_path() / ("civicbus-park-" + std::to_string(::getpid()));
  NodeOptions node_options;
  node_options.data_dir = dir.string();
  node_options.worker_threads = 2;
  node_options.generate_master_key = true;
  node_options.logging.level = LogLevel::kWarn;
  auto node = Node::create(node_options);
  if (!node.ok()) return fail("creating the node: " + node.status().to_string());

  ManualClock clock{SystemTime(std::chrono::milliseconds(1764600000000))};  // 2025-12-01 14:40Z
  FleetOptions options;
  options.issue_certificates = false;
  options.tick_interval = std::chrono::hours(1);  // we call tick() ourselves
  FleetDeps deps;
  deps.db = &(*node)->database();
  deps.timeseries_path = (dir / "timeseries.db").string();
  deps.broker = &(*node)->broker();
  deps.clock = &clock;
  auto opened = DeviceFleet::open(options, std::move(deps));
  if (!opened.ok()) return fail("opening the fleet: " + opened.status().to_string());
  DeviceFleet& fleet = **opened;

  // 1. Provision the sensors, the Sigfox id as serial, the block as a tag.
  for (int i = 0; i < kSensors; ++i) {
    Device d;
    d.id = sensor(i);
    d.serial = sigfox_id(i);
    d.type = "parking_sensor";
    d.network = Network::kSigfox;
    d.location = GeoPoint{45.4210 + (i / 60) * 0.002 + (i % 60) * 0.00005, -75.6990};
    d.tags = {{"block", i < 60 ? "A" : "B"}};
    if (auto p = fleet.provision(d, "parking-ops"); !p.ok()) return fail(p.status().to_string());
  }

  // 2. Sigfox callbacks: {"device": <Sigfox id>, "time": <s>, "data": <hex payload>}.
  auto now_s = [&] {
    return std::chrono::duration_cast<std::chrono::seconds>(clock.now().time_since_epoch()).count();
  };
  auto report = [&](int i, bool occupied) {
    char body[128];
    std::snprintf(body, sizeof body, R"({"device":"%s","time":%lld,"data":"%02x%02x"})",
                  sigfox_id(i).c_str(), static_cast<long long>(now_s()), occupied ? 1 : 0, 87);
    return fleet.ingest_sigfox(body).accepted == 2;  // occupied and battery
  };
  // 3. Free bays per block, from each sensor's latest reading.
  auto free_bays = [&](const std::string& block) {
    DeviceQuery q;
    q.tags = {{"block", block}};
    int free = 0;
    for (const auto& d : fleet.devices(q).devices) {
      for (const auto& r : fleet.latest(d->id)) free += r.metric == "occupied" && r.value == 0;
    }
    return free;
  };

  // Hourly: block A fills up through the afternoon, block B stays half full; sensors 40-45 stop
  // reporting after the first hour (flat batteries).
  for (int hour = 0; hour < 5; ++hour) {
    for (int i = 0; i < kSensors; ++i) {
      if (hour > 0 && i >= 40 && i < 46) continue;
      const bool occupied = i < 60 ? i < 20 + hour * 10 : i % 2 == 0;
      if (!report(i, occupied)) return fail("a Sigfox callback of " + sensor(i) + " was refused");
    }
    if (Status s = fleet.tick(); !s.ok()) return fail("tick: " + s.to_string());
    std::printf("hour %d: block A %2d free, block B %2d free\n", hour, free_bays("A"),
                free_bays("B"));
    clock.advance(std::chrono::hours(1));
  }
  if (free_bays("B") != 30) return fail("block B should have 30 free bays");

  // 4. Inactivity: the six silent sensors, and only they, are flagged.
  AlertQuery active;
  active.active_only = true;
  std::set<std::string> silent;
  const std::vector<Alert> alerts = fleet.alerts(active).value();
  for (const Alert& a : alerts) {
    if (a.rule_id == "parking_sensor.inactive") silent.insert(a.device_id);
  }
  std::printf("inactivity alerts: %zu sensors (%s .. %s): maintenance dispatched\n", silent.size(),
              silent.empty() ? "-" : silent.begin()->c_str(),
              silent.empty() ? "-" : silent.rbegin()->c_str());
  if (silent != std::set<std::string>{sensor(40), sensor(41), sensor(42), sensor(43), sensor(44),
                                      sensor(45)}) {
    return fail("expected inactivity alerts for pk-040 .. pk-045 only");
  }
  // New batteries: each sensor's next report resolves its alert.
  for (int i = 40; i < 46; ++i) {
    if (!report(i, false)) return fail("a report after the battery change was refused");
  }
  if (!fleet.alerts(active).value().empty()) return fail("alerts still active after maintenance");
  std::printf("batteries replaced: every inactivity alert resolved by the next report\n");

  // 5. History: the hourly tier gives each block's occupancy rate over the afternoon.
  if (Status s = fleet.flush(); !s.ok()) return fail("flushing: " + s.to_string());
  const TimeMs to =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock.now().time_since_epoch()).count();
  double rate[2] = {0, 0};
  int readings[2] = {0, 0};
  for (int i = 0; i < kSensors; ++i) {
    auto hourly = fleet.readings(sensor(i), "occupied", to - 6 * 3600 * 1000, to, "1h");
    if (!hourly.ok()) return fail("reading the hourly tier: " + hourly.status().to_string());
    for (const auto& p : hourly->points) {
      rate[i / 60] += p.sum;
      readings[i / 60] += static_cast<int>(p.count);
    }
  }
  std::printf("occupancy over the afternoon: block A %.0f%%, block B %.0f%%\n",
              100 * rate[0] / readings[0], 100 * rate[1] / readings[1]);
  if (readings[1] != 60 * 5 || rate[1] != 150) return fail("block B's history is not half full");

  opened->reset();
  node->reset();
  fs::remove_all(dir);
  std::printf("ok: occupancy counted, silent sensors flagged and back after maintenance\n");
  return 0;
}
