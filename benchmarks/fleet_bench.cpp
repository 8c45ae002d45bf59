// fleet_bench: the device fleet's figures (issue 4), each beside a peer measured in the same run.
//
//   ingest     readings through DeviceFleet::ingest() on a Node (validation against the device
//              type, time series with 5m/1h/1d rollups, alert evaluation, batched reading
//              events to the broker), from one thread in batches of 1,000, to the last
//              flush(). Peer: the sqlite3 CLI importing the same readings as CSV (.import)
//              into one table: storing raw rows only, without rollups or rules.
//   latency    reading-to-alert inside the node: ingest() of a reading that crosses a rule's
//              level, to the rule's local action callback (raised), while the ingest phase's
//              load is gone; p50/p99 over --probes probes. Peer: none (no program on the
//              machine evaluates rules); the target is p99 <= 1 ms.
//   mqtt       end to end through mosquitto (QoS 1): a Paho publisher sends messages of 10
//              readings to <prefix>/<id>/telemetry, the node's MQTT link ingests them; to the
//              last reading accepted. Peer: the same messages from the same publisher to
//              mosquitto_sub -q 1 writing to /dev/null.
//   registry   --devices devices provisioned in one import (no certificates), then lookups by
//              id (p50/p99 per call) and queries by type + bounding box (about 1 km²). Peer:
//              the same rows in an SQLite table (primary key on id, index on type, lat, lon),
//              queried through the SQLite library in this process.
//   import     --import-devices devices from a CSV with a certificate each (ECDSA P-256
//              keys, signed by the node's device CA). Peer: the openssl CLI making the same
//              key and certificate for --openssl-devices devices (one process pair each).
//
// Flags: --readings N (1000000) --devices N (200000; the issue's figures are at 1000000, a
//        run of about two minutes) --import-devices N (10000) --openssl-devices N (100)
//        --probes N (5000) --mqtt-messages N (50000)
//        --only ingest|latency|mqtt|registry|import
#include <fmt/format.h>
#include <mqtt/async_client.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "civicbus/fleet/fleet.hpp"
#include "civicbus/node/node.hpp"

namespace civicbus::bench {
namespace {

struct Flags {
  std::size_t readings = 1'000'000;
  std::size_t devices = 200'000;
  std::size_t import_devices = 10'000;
  std::size_t openssl_devices = 100;
  std::size_t probes = 5'000;
  std::size_t mqtt_messages = 50'000;
  std::string only;
};

Flags parse_flags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const std::string v = argv[i + 1];
    if (k == "--readings")
      f.readings = std::stoul(v);
    else if (k == "--devices")
      f.devices = std::stoul(v);
    else if (k == "--import-devices")
      f.import_devices = std::stoul(v);
    else if (k == "--openssl-devices")
      f.openssl_devices = std::stoul(v);
    else if (k == "--probes")
      f.probes = std::stoul(v);
    else if (k == "--mqtt-messages")
      f.mqtt_messages = std::stoul(v);
    else if (k == "--only")
      f.only = v;
    else
      throw std::runtime_error("unknown flag " + k);
  }
  return f;
}

template <typename T>
T check(Result<T> r, std::string_view what) {
  if (!r.ok()) throw std::runtime_error(fmt::format("{}: {}", what, r.status().to_string()));
  return std::move(r).value();
}
void check(const Status& s, std::string_view what) {
  if (!s.ok()) throw std::runtime_error(fmt::format("{}: {}", what, s.to_string()));
}

double seconds_since(std::int64_t start_ns) {
  return (steady_now_ns() - start_ns) / 1e9;
}

fleet::TimeMs now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A node on a temp dir with a fleet section.
std::unique_ptr<Node> make_node(const std::filesystem::path& dir, fleet::FleetOptions fleet) {
  NodeOptions o;
  o.data_dir = (dir / "node").string();
  o.generate_master_key = true;
  o.logging.level = LogLevel::kWarn;
  o.fleet = std::move(fleet);
  return check(Node::create(std::move(o)), "node");
}

std::string meter_csv(std::size_t n, std::size_t offset = 0) {
  std::string csv = "id,serial,type,lat,lon,department\n";
  csv.reserve(n * 64);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t k = i + offset;
    csv += fmt::format("wm-{:07},S{:07},water_meter,{:.6f},{:.6f},water\n", k, k,
                       45.20 + (k % 1000) * 0.0004, -75.95 + (k / 1000 % 1000) * 0.0005);
  }
  return csv;
}

// ----- ingest ---------------------------------------------------------------------------------

void bench_ingest(const Flags& f) {
  TempDir dir("fleet-ingest");
  fleet::FleetOptions fo;
  fo.issue_certificates = false;
  auto node = make_node(dir.path(), fo);
  fleet::DeviceFleet& fleet = *node->fleet();
  constexpr std::size_t kDevices = 10'000;
  auto report = check(fleet.import_devices(meter_csv(kDevices), fleet::ImportFormat::kCsv, "bench"),
                      "import");
  if (report.provisioned.size() != kDevices) throw std::runtime_error("import refused rows");

  // Readings: each device reports flow_rate and total_volume every 15 minutes, oldest first,
  // ending now; values stay under the leak rule so the rules are evaluated, not raised.
  const std::size_t per_device = std::max<std::size_t>(1, f.readings / (kDevices * 2));
  const fleet::TimeMs end = now_ms();
  const fleet::TimeMs start = end - static_cast<fleet::TimeMs>(per_device) * 900'000;
  std::vector<fleet::Reading> all;
  all.reserve(per_device * kDevices * 2);
  for (std::size_t s = 0; s < per_device; ++s) {
    const fleet::TimeMs t = start + static_cast<fleet::TimeMs>(s) * 900'000;
    for (std::size_t d = 0; d < kDevices; ++d) {
      std::string id = fmt::format("wm-{:07}", d);
      all.push_back({id, "flow_rate", 0.5 + (d % 13) * 0.4, "L/min", t});
      all.push_back({std::move(id), "total_volume", 100.0 + s * 0.1, "m3", t});
    }
  }
  const std::int64_t t0 = steady_now_ns();
  std::size_t accepted = 0;
  for (std::size_t at = 0; at < all.size(); at += 1000) {
    const std::size_t n = std::min<std::size_t>(1000, all.size() - at);
    accepted += fleet.ingest(std::span<const fleet::Reading>(all).subspan(at, n)).accepted;
  }
  const double calls_secs = seconds_since(t0);
  check(fleet.flush(), "flush");
  const double secs = seconds_since(t0);
  if (accepted != all.size()) throw std::runtime_error("readings rejected in the ingest bench");
  const double ours = accepted / secs;
  print_bench("fleet_ingest", {{"readings", accepted},
                               {"devices", kDevices},
                               {"seconds", secs},
                               {"ingest_calls_seconds", calls_secs},
                               {"final_flush_seconds", secs - calls_secs},
                               {"readings_per_s", ours}});

  // The peer: sqlite3 .import of the same readings.
  auto sqlite3 = find_program("sqlite3");
  if (!sqlite3) {
    std::fprintf(stderr, "# fleet_ingest sqlite3: not installed\n");
    return;
  }
  const auto csv_path = dir.path() / "readings.csv";
  {
    std::ofstream out(csv_path);
    for (const auto& r : all)
      out << r.device_id << ',' << r.metric << ',' << r.value << ',' << r.time << '\n';
  }
  const auto script = dir.path() / "import.sql";
  {
    std::ofstream out(script);
    out << "PRAGMA journal_mode=WAL;\nPRAGMA synchronous=NORMAL;\n"
        << "CREATE TABLE readings(device TEXT, metric TEXT, value REAL, time INTEGER);\n"
        << "CREATE INDEX readings_by_series ON readings(device, metric, time);\n"
        << ".mode csv\n.import " << csv_path.string() << " readings\n";
  }
  const std::int64_t p0 = steady_now_ns();
  const std::string cmd = fmt::format("{} {} < {} > /dev/null", sqlite3->string(),
                                      (dir.path() / "peer.db").string(), script.string());
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("sqlite3 .import failed");
  const double psecs = seconds_since(p0);
  const double peer = all.size() / psecs;
  print_bench("fleet_ingest", {{"peer", "sqlite3_import"},
                               {"readings", all.size()},
                               {"seconds", psecs},
                               {"readings_per_s", peer}});
  print_vs("fleet_ingest", ours, peer, "sqlite3_import_raw_rows", "readings/s", true);
}

// ----- latency --------------------------------------------------------------------------------

void bench_latency(const Flags& f) {
  TempDir dir("fleet-latency");
  fleet::FleetOptions fo;
  fo.issue_certificates = false;
  auto node = make_node(dir.path(), fo);
  fleet::DeviceFleet& fleet = *node->fleet();
  check(fleet.import_devices(meter_csv(1000), fleet::ImportFormat::kCsv, "bench"), "import");
  check(fleet.add_rule(Json::parse(R"({"id":"probe","name":"probe","scope":{"type":"water_meter"},
        "kind":"threshold","metric":"flow_rate","direction":"above","critical":100,"clear":10,
        "actions":[{"output":"probe","command":"raised","on":"raised"}]})")
                           .value()),
        "rule");
  std::atomic<std::int64_t> fired_ns{0};
  fleet.on_action([&](std::string_view, std::string_view, const fleet::Alert&) {
    fired_ns.store(steady_now_ns());
  });
  std::vector<std::int64_t> samples;
  samples.reserve(f.probes);
  fleet::TimeMs t = now_ms() - static_cast<fleet::TimeMs>(f.probes) * 2000;
  for (std::size_t i = 0; i < f.probes; ++i) {
    const std::string id = fmt::format("wm-{:07}", i % 1000);
    // Clear first (not timed), then the crossing reading (timed to the action).
    fleet.ingest(std::vector<fleet::Reading>{{id, "flow_rate", 1.0, "", t++}});
    fired_ns.store(0);
    const std::int64_t start = steady_now_ns();
    fleet.ingest(std::vector<fleet::Reading>{{id, "flow_rate", 150.0, "", t++}});
    const std::int64_t end = fired_ns.load();
    if (end == 0) throw std::runtime_error("the probe rule did not fire");
    samples.push_back(end - start);
    fleet.ingest(std::vector<fleet::Reading>{{id, "flow_rate", 1.0, "", t++}});
  }
  auto s = summarize_latencies(samples);
  print_bench("fleet_alert_latency", {{"probes", f.probes},
                                      {"p50_us", s.p50_us},
                                      {"p99_us", s.p99_us},
                                      {"max_us", s.max_us},
                                      {"target_p99_us", 1000}});
}

// ----- mqtt -----------------------------------------------------------------------------------

struct Publisher {
  // Publishes `messages` QoS 1 messages as fast as the broker acknowledges (up to 4,096 in
  // flight); returns when every PUBACK arrived.
  static void run(std::uint16_t port, std::size_t messages, std::size_t devices) {
    mqtt::async_client client(fmt::format("tcp://127.0.0.1:{}", port), "fleet-bench-pub",
                              mqtt::create_options(MQTTVERSION_3_1_1, 4096));
    auto opts = mqtt::connect_options_builder().clean_session(true).max_inflight(4096).finalize();
    client.connect(opts)->wait();
    std::vector<mqtt::delivery_token_ptr> tokens;
    const fleet::TimeMs base = now_ms() - 3'600'000;
    for (std::size_t i = 0; i < messages; ++i) {
      const std::size_t d = i % devices;
      std::string body = "[";
      for (int k = 0; k < 5; ++k) {
        body += fmt::format(
            R"({}{{"ts":{},"values":{{"flow_rate":{:.1f},"total_volume":{:.2f}}}}})", k ? "," : "",
            base + static_cast<fleet::TimeMs>(i) * 5 + k, 1.0 + k, 100.0 + i * 0.01);
      }
      body += "]";
      auto msg =
          mqtt::make_message(fmt::format("civicbus/devices/wm-{:07}/telemetry", d), body, 1, false);
      tokens.push_back(client.publish(msg));
      if (tokens.size() >= 4000) {
        for (auto& t : tokens) t->wait();
        tokens.clear();
      }
    }
    for (auto& t : tokens) t->wait();
    client.disconnect()->wait();
  }
};

void bench_mqtt(const Flags& f) {
  if (!find_program("mosquitto") || !find_program("mosquitto_sub")) {
    std::fprintf(stderr, "# fleet_mqtt: mosquitto or mosquitto_sub not installed\n");
    return;
  }
  TempDir dir("fleet-mqtt");
  const std::uint16_t port = free_port();
  {
    std::ofstream conf(dir.path() / "mosquitto.conf");
    conf << "listener " << port << " 127.0.0.1\nallow_anonymous true\npersistence false\n"
         << "max_inflight_messages 0\nmax_queued_messages 1000000\n";
  }
  ServerProcess mosquitto;
  mosquitto.start({"mosquitto",
                   {"-c", (dir.path() / "mosquitto.conf").string()},
                   dir.path() / "mosquitto.log",
                   port});
  constexpr std::size_t kDevices = 1000;
  const std::size_t readings = f.mqtt_messages * 10;

  // Peer first: mosquitto_sub -q 1 counting the messages to /dev/null.
  double peer = 0;
  {
    const std::string cmd = fmt::format(
        "mosquitto_sub -h 127.0.0.1 -p {} -q 1 -i fleet-bench-sub -t "
        "'civicbus/devices/+/telemetry' "
        "-C {} > /dev/null",
        port, f.mqtt_messages);
    std::atomic<std::int64_t> done_ns{0};
    std::thread sub([&] {
      if (std::system(cmd.c_str()) == 0) done_ns.store(steady_now_ns());
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // subscribed
    const std::int64_t t0 = steady_now_ns();
    Publisher::run(port, f.mqtt_messages, kDevices);
    sub.join();
    if (done_ns.load() == 0) throw std::runtime_error("mosquitto_sub failed");
    const double secs = (done_ns.load() - t0) / 1e9;
    peer = readings / secs;
    print_bench("fleet_mqtt", {{"peer", "mosquitto_sub"},
                               {"messages", f.mqtt_messages},
                               {"readings", readings},
                               {"seconds", secs},
                               {"readings_per_s", peer}});
  }

  fleet::FleetOptions fo;
  fo.issue_certificates = false;
  fo.mqtt = fleet::FleetMqttOptions{};
  fo.mqtt->server_uri = fmt::format("tcp://127.0.0.1:{}", port);
  fo.mqtt->client_id = "fleet-bench-node";
  auto node = make_node(dir.path(), fo);
  fleet::DeviceFleet& fleet = *node->fleet();
  check(fleet.import_devices(meter_csv(kDevices), fleet::ImportFormat::kCsv, "bench"), "import");
  for (int i = 0; i < 100 && !fleet.mqtt_connected(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!fleet.mqtt_connected()) throw std::runtime_error("the fleet did not connect to mosquitto");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // subscriptions in place
  const std::uint64_t before = fleet.stats().readings_accepted;
  const std::int64_t t0 = steady_now_ns();
  Publisher::run(port, f.mqtt_messages, kDevices);
  for (int i = 0; i < 6000 && fleet.stats().readings_accepted - before < readings; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  check(fleet.flush(), "flush");
  const double secs = seconds_since(t0);
  const std::uint64_t got = fleet.stats().readings_accepted - before;
  const double ours = got / secs;
  print_bench("fleet_mqtt", {{"messages", f.mqtt_messages},
                             {"readings", got},
                             {"lost", readings - std::min<std::uint64_t>(got, readings)},
                             {"seconds", secs},
                             {"readings_per_s", ours}});
  print_vs("fleet_mqtt", ours, peer, "mosquitto_sub_qos1", "readings/s", true);
}

// ----- registry -------------------------------------------------------------------------------

void bench_registry(const Flags& f) {
  TempDir dir("fleet-registry");
  fleet::FleetOptions fo;
  fo.issue_certificates = false;
  fo.reading_events = fleet::ReadingEvents::kOff;
  auto node = make_node(dir.path(), fo);
  fleet::DeviceFleet& fleet = *node->fleet();
  const std::int64_t i0 = steady_now_ns();
  const std::size_t chunk = 100'000;
  for (std::size_t at = 0; at < f.devices; at += chunk) {
    auto r = check(fleet.import_devices(meter_csv(std::min(chunk, f.devices - at), at),
                                        fleet::ImportFormat::kCsv, "bench"),
                   "import");
    if (!r.errors.empty()) throw std::runtime_error("registry import refused rows");
  }
  const double import_secs = seconds_since(i0);

  std::mt19937_64 rng(42);
  std::vector<std::string> ids;
  for (int i = 0; i < 200'000; ++i) ids.push_back(fmt::format("wm-{:07}", rng() % f.devices));
  std::vector<std::int64_t> lookups;
  lookups.reserve(ids.size());
  std::size_t found = 0;
  for (const auto& id : ids) {
    const std::int64_t s = steady_now_ns();
    found += fleet.device(id) != nullptr;
    lookups.push_back(steady_now_ns() - s);
  }
  if (found != ids.size()) throw std::runtime_error("lookups missed devices");
  auto ls = summarize_latencies(lookups);

  std::vector<std::int64_t> queries;
  std::size_t matched = 0;
  for (int i = 0; i < 50; ++i) {
    fleet::DeviceQuery q;
    q.type = "water_meter";
    const double lat = 45.20 + (rng() % 900) * 0.0004, lon = -75.95 + (rng() % 900) * 0.0005;
    q.bbox = fleet::BoundingBox{lat, lon, lat + 0.009, lon + 0.0127};  // about 1 km x 1 km
    q.limit = 100;
    const std::int64_t s = steady_now_ns();
    matched += fleet.devices(q).total;
    queries.push_back(steady_now_ns() - s);
  }
  auto qs = summarize_latencies(queries);
  print_bench("fleet_registry", {{"devices", f.devices},
                                 {"import_seconds", import_secs},
                                 {"lookup_p50_us", ls.p50_us},
                                 {"lookup_p99_us", ls.p99_us},
                                 {"bbox_query_p50_ms", qs.p50_us / 1e3},
                                 {"bbox_query_max_ms", qs.max_us / 1e3},
                                 {"bbox_matches_avg", matched / 50.0}});
  node.reset();

  // The peer: the same rows in SQLite, queried through the library.
  sqlite3* db = nullptr;
  sqlite3_open((dir.path() / "peer.db").string().c_str(), &db);
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; CREATE TABLE devices(id TEXT PRIMARY KEY, type TEXT, "
               "lat REAL, lon REAL); CREATE INDEX devices_geo ON devices(type, lat, lon);",
               nullptr, nullptr, nullptr);
  sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO devices VALUES (?, 'water_meter', ?, ?)", -1, &ins, nullptr);
  for (std::size_t k = 0; k < f.devices; ++k) {
    std::string id = fmt::format("wm-{:07}", k);
    sqlite3_bind_text(ins, 1, id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(ins, 2, 45.20 + (k % 1000) * 0.0004);
    sqlite3_bind_double(ins, 3, -75.95 + (k / 1000 % 1000) * 0.0005);
    sqlite3_step(ins);
    sqlite3_reset(ins);
  }
  sqlite3_finalize(ins);
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_stmt* get = nullptr;
  sqlite3_prepare_v2(db, "SELECT id, type, lat, lon FROM devices WHERE id = ?", -1, &get, nullptr);
  std::vector<std::int64_t> plookups;
  for (const auto& id : ids) {
    const std::int64_t s = steady_now_ns();
    sqlite3_bind_text(get, 1, id.c_str(), -1, SQLITE_STATIC);
    if (sqlite3_step(get) != SQLITE_ROW) throw std::runtime_error("peer lookup missed");
    sqlite3_reset(get);
    plookups.push_back(steady_now_ns() - s);
  }
  sqlite3_finalize(get);
  auto pls = summarize_latencies(plookups);
  sqlite3_stmt* box = nullptr;
  sqlite3_prepare_v2(db,
                     "SELECT count(*) FROM devices WHERE type = 'water_meter' AND lat BETWEEN ? "
                     "AND ? AND lon BETWEEN ? AND ?",
                     -1, &box, nullptr);
  std::vector<std::int64_t> pqueries;
  for (int i = 0; i < 50; ++i) {
    const double lat = 45.20 + (rng() % 900) * 0.0004, lon = -75.95 + (rng() % 900) * 0.0005;
    const std::int64_t s = steady_now_ns();
    sqlite3_bind_double(box, 1, lat);
    sqlite3_bind_double(box, 2, lat + 0.009);
    sqlite3_bind_double(box, 3, lon);
    sqlite3_bind_double(box, 4, lon + 0.0127);
    sqlite3_step(box);
    sqlite3_reset(box);
    pqueries.push_back(steady_now_ns() - s);
  }
  sqlite3_finalize(box);
  sqlite3_close(db);
  auto pqs = summarize_latencies(pqueries);
  print_bench("fleet_registry", {{"peer", "sqlite_btree"},
                                 {"devices", f.devices},
                                 {"lookup_p50_us", pls.p50_us},
                                 {"lookup_p99_us", pls.p99_us},
                                 {"bbox_query_p50_ms", pqs.p50_us / 1e3},
                                 {"bbox_query_max_ms", pqs.max_us / 1e3}});
  print_vs("fleet_registry_lookup", ls.p99_us, pls.p99_us, "sqlite_btree", "us_p99", false);
  print_vs("fleet_registry_bbox", qs.max_us / 1e3, pqs.max_us / 1e3, "sqlite_btree", "ms_max",
           false);
}

// ----- import ---------------------------------------------------------------------------------

void bench_import(const Flags& f) {
  TempDir dir("fleet-import");
  auto node = make_node(dir.path(), fleet::FleetOptions{});
  fleet::DeviceFleet& fleet = *node->fleet();
  const std::string csv = meter_csv(f.import_devices);
  const std::int64_t t0 = steady_now_ns();
  auto report = check(fleet.import_devices(csv, fleet::ImportFormat::kCsv, "bench"), "import");
  const double secs = seconds_since(t0);
  if (report.provisioned.size() != f.import_devices)
    throw std::runtime_error("import refused rows");
  const double ours = f.import_devices / secs;
  print_bench("fleet_import", {{"devices", f.import_devices},
                               {"seconds", secs},
                               {"devices_per_s", ours},
                               {"target_seconds", 60}});

  // Peer: openssl making a P-256 key and a CA-signed certificate per device.
  if (!find_program("openssl")) return;
  const auto p = dir.path();
  const std::string ca = fmt::format(
      "openssl ecparam -name prime256v1 -genkey -noout -out {0}/ca.key && openssl req -new -x509 "
      "-key {0}/ca.key -subj /CN=bench-ca -days 3650 -out {0}/ca.pem 2>/dev/null",
      p.string());
  if (std::system(ca.c_str()) != 0) throw std::runtime_error("openssl CA failed");
  const std::int64_t p0 = steady_now_ns();
  for (std::size_t i = 0; i < f.openssl_devices; ++i) {
    const std::string cmd = fmt::format(
        "openssl ecparam -name prime256v1 -genkey -noout -out {0}/d.key && openssl req -new "
        "-key {0}/d.key -subj /CN=wm-{1} 2>/dev/null | openssl x509 -req -CA {0}/ca.pem -CAkey "
        "{0}/ca.key -CAcreateserial -days 1825 -out {0}/d.pem 2>/dev/null",
        p.string(), i);
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl device cert failed");
  }
  const double psecs = seconds_since(p0);
  const double peer = f.openssl_devices / psecs;
  print_bench("fleet_import", {{"peer", "openssl_cli"},
                               {"devices", f.openssl_devices},
                               {"seconds", psecs},
                               {"devices_per_s", peer}});
  print_vs("fleet_import", ours, peer, "openssl_cli_per_device", "devices/s", true);
}

int run(const Flags& f) {
  std::fprintf(stdout, "# fleet_bench on %u cores\n", std::thread::hardware_concurrency());
  auto want = [&](std::string_view part) { return f.only.empty() || f.only == part; };
  if (want("ingest")) bench_ingest(f);
  if (want("latency")) bench_latency(f);
  if (want("mqtt")) bench_mqtt(f);
  if (want("import")) bench_import(f);
  if (want("registry")) bench_registry(f);
  return 0;
}

}  // namespace
}  // namespace civicbus::bench

int main(int argc, char** argv) {
  try {
    return civicbus::bench::run(civicbus::bench::parse_flags(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fleet_bench: %s\n", e.what());
    return 2;
  }
}
