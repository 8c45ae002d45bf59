#include "fleet/registry.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/storage/database.hpp"
#include "fleet/device_types.hpp"
#include "support/test_support.hpp"

using namespace civicbus;
using namespace civicbus::fleet;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<storage::Database> open_db(const std::string& path, bool fast = false) {
  storage::SqliteOptions o;
  o.path = path;
  if (fast) o.synchronous = storage::Synchronous::kOff;
  auto db = storage::open_sqlite(o);
  REQUIRE_MESSAGE(db.ok(), db.status().to_string());
  return std::move(db).value();
}

std::unique_ptr<DeviceTypeCatalog> catalog() {
  auto c = DeviceTypeCatalog::with_builtin_types();
  REQUIRE(c.ok());
  return std::move(c).value();
}

Device meter(std::string id, double lat = 45.50, double lon = -73.56) {
  Device d;
  d.id = id;
  d.serial = "SN-" + id;
  d.type = "water_meter";
  d.location = GeoPoint{lat, lon};
  d.department = "water";
  d.network = Network::kLorawan;
  d.install_date = "2024-03-15";
  return d;
}

struct Fixture {
  civicbus::testing::TempDir dir;
  ManualClock clock;
  std::unique_ptr<DeviceTypeCatalog> types = catalog();
  std::unique_ptr<storage::Database> db = open_db(dir.file("fleet.db"));
  std::unique_ptr<Registry> registry = open_registry();

  std::unique_ptr<Registry> open_registry() {
    auto r = Registry::open(*db, clock, *types);
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    return std::move(r).value();
  }
  void reopen() {
    registry.reset();
    db.reset();
    db = open_db(dir.file("fleet.db"));
    registry = open_registry();
  }
};

}  // namespace

TEST_CASE("registry: lifecycle transitions are enforced and recorded with who, when and why") {
  Fixture f;
  std::vector<std::string> provisioned;
  std::vector<StatusChange> changes;
  f.registry->on_provisioned([&](const Device& d) { provisioned.push_back(d.id); });
  f.registry->on_status_changed([&](const StatusChange& c, const Device& d) {
    CHECK(d.status == c.to);
    changes.push_back(c);
  });

  auto d = f.registry->provision(meter("wm-1"), "alice");
  REQUIRE_MESSAGE(d.ok(), d.status().to_string());
  CHECK((*d)->status == DeviceStatus::kProvisioned);
  CHECK((*d)->created_at == 1'700'000'000'000);
  CHECK(provisioned == std::vector<std::string>{"wm-1"});

  // Provisioned → Maintenance is not a lifecycle step.
  auto refused = f.registry->set_status("wm-1", DeviceStatus::kMaintenance, "bob", "check");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == ErrorCode::kFailedPrecondition);
  CHECK(refused.status().message().starts_with(
      "device 'wm-1' cannot go from provisioned to maintenance"));

  f.clock.advance(10s);
  REQUIRE(f.registry->set_status("wm-1", DeviceStatus::kActive, "bob", "installed").ok());
  f.clock.advance(10s);
  REQUIRE(f.registry->set_status("wm-1", DeviceStatus::kMaintenance, "carol", "battery").ok());
  f.clock.advance(10s);
  REQUIRE(f.registry->set_status("wm-1", DeviceStatus::kActive, "carol", "battery replaced").ok());
  f.clock.advance(10s);
  auto gone = f.registry->set_status("wm-1", DeviceStatus::kDecommissioned, "dave", "replaced");
  REQUIRE(gone.ok());
  CHECK((*gone)->status == DeviceStatus::kDecommissioned);
  CHECK((*gone)->updated_at == 1'700'000'040'000);
  auto back = f.registry->set_status("wm-1", DeviceStatus::kActive, "eve", "oops");
  REQUIRE_FALSE(back.ok());
  CHECK(
      back.status().message().starts_with("device 'wm-1' cannot go from decommissioned to active"));
  CHECK(f.registry->set_status("nope", DeviceStatus::kActive, "eve", "").status().code() ==
        ErrorCode::kNotFound);

  auto h = f.registry->history("wm-1");
  REQUIRE(h.ok());
  REQUIRE(h->size() == 4);
  CHECK((*h)[0].from == DeviceStatus::kProvisioned);
  CHECK((*h)[0].to == DeviceStatus::kActive);
  CHECK((*h)[0].actor == "bob");
  CHECK((*h)[0].reason == "installed");
  CHECK((*h)[0].at == 1'700'000'010'000);
  CHECK((*h)[1].to == DeviceStatus::kMaintenance);
  CHECK((*h)[1].reason == "battery");
  CHECK((*h)[3].actor == "dave");
  CHECK((*h)[3].to == DeviceStatus::kDecommissioned);
  REQUIRE(changes.size() == 4);
  CHECK(changes[3].reason == "replaced");
}

TEST_CASE("registry: batch provisioning stores the good items and names why the bad ones fail") {
  Fixture f;
  REQUIRE(f.registry->provision(meter("wm-existing"), "ops").ok());
  std::vector<Device> batch;
  batch.push_back(meter("wm-1"));
  Device no_serial = meter("wm-2");
  no_serial.serial.clear();
  batch.push_back(no_serial);
  Device bad_type = meter("wm-3");
  bad_type.type = "toaster";
  batch.push_back(bad_type);
  batch.push_back(meter("wm-4", 91, 0));
  Device bad_date = meter("wm-5");
  bad_date.install_date = "2024-02-30";
  batch.push_back(bad_date);
  batch.push_back(meter("wm-existing"));
  Device dup_serial = meter("wm-7");
  dup_serial.serial = "SN-wm-1";
  batch.push_back(dup_serial);
  Device by_serial = meter("");
  by_serial.serial = "SERIAL-8";
  batch.push_back(by_serial);
  batch.push_back(meter("wm-1"));  // twice in the same batch

  auto results = f.registry->provision_batch(batch, "import");
  REQUIRE(results.ok());
  REQUIRE(results->size() == 9);
  const auto& r = *results;
  CHECK(r[0].status.ok());
  CHECK(r[1].status.message() == "device 'wm-2' has no serial");
  CHECK(r[2].status.message().starts_with("device 'wm-3': unknown device type 'toaster'"));
  CHECK(r[3].status.message().find("outside latitude -90..90") != std::string::npos);
  CHECK(r[4].status.message() ==
        "device 'wm-5': install_date '2024-02-30' is not a date in the form YYYY-MM-DD");
  CHECK(r[5].status.code() == ErrorCode::kAlreadyExists);
  CHECK(r[6].status.message() == "device 'wm-7': serial 'SN-wm-1' is already used");
  CHECK(r[7].status.ok());
  CHECK(r[7].id == "SERIAL-8");
  CHECK(r[8].status.code() == ErrorCode::kAlreadyExists);
  CHECK(r[8].index == 8);

  CHECK(f.registry->size() == 3);
  CHECK(f.registry->find("wm-1") != nullptr);
  CHECK(f.registry->find("SERIAL-8") != nullptr);
  CHECK(f.registry->find_by_serial("SN-wm-1")->id == "wm-1");
  CHECK(f.registry->find("wm-3") == nullptr);
  f.reopen();
  CHECK(f.registry->size() == 3);
}

TEST_CASE("registry: queries filter by attributes, box and radius and page by id") {
  Fixture f;
  std::vector<Device> batch;
  for (int i = 0; i < 30; ++i) {
    Device d = meter(fmt::format("wm-{:03}", i), 45.50 + i * 0.001, -73.56);
    d.project = i % 2 ? "odd" : "even";
    d.tags["district"] = i < 10 ? "north" : "south";
    batch.push_back(d);
  }
  Device aq;
  aq.id = "aq-1";
  aq.serial = "AQ1";
  aq.type = "air_quality";
  aq.location = GeoPoint{45.505, -73.56};
  batch.push_back(aq);
  Device nowhere = meter("wm-nowhere");
  nowhere.location.reset();
  batch.push_back(nowhere);
  REQUIRE(f.registry->provision_batch(batch, "ops").ok());

  DeviceQuery q;
  q.type = "water_meter";
  CHECK(f.registry->query(q).total == 31);
  q.bbox = BoundingBox{45.5045, -73.57, 45.5095, -73.55};
  auto r = f.registry->query(q);
  CHECK(r.total == 5);  // wm-005..wm-009
  REQUIRE(r.devices.size() == 5);
  CHECK(r.devices.front()->id == "wm-005");
  CHECK(r.devices.back()->id == "wm-009");
  q.type.reset();
  CHECK(f.registry->query(q).total == 6);  // plus the air quality monitor

  DeviceQuery paged;
  paged.type = "water_meter";
  paged.project = "even";
  paged.limit = 4;
  paged.offset = 4;
  r = f.registry->query(paged);
  CHECK(r.total == 15);
  REQUIRE(r.devices.size() == 4);
  CHECK(r.devices[0]->id == "wm-008");

  DeviceQuery circle;
  circle.circle = GeoCircle{GeoPoint{45.50, -73.56}, 250};  // 0.001° of latitude is ~111 m
  r = f.registry->query(circle);
  CHECK(r.total == 3);  // wm-000, wm-001, wm-002
  DeviceQuery tagged;
  tagged.tags["district"] = "north";
  tagged.status = DeviceStatus::kProvisioned;
  CHECK(f.registry->query(tagged).total == 10);
}

TEST_CASE("registry: static and query groups, members and groups_of") {
  Fixture f;
  std::vector<Device> batch;
  for (int i = 0; i < 10; ++i) {
    Device d = meter(fmt::format("wm-{}", i), 45.50 + i * 0.01, -73.56);
    if (i < 3) d.tags["zone"] = "dma-7";
    batch.push_back(d);
  }
  Device ps;
  ps.id = "ps-1";
  ps.serial = "PS1";
  ps.type = "pressure_sensor";
  ps.location = GeoPoint{45.50, -73.56};
  ps.tags["zone"] = "dma-7";
  batch.push_back(ps);
  REQUIRE(f.registry->provision_batch(batch, "ops").ok());

  Group pilot;
  pilot.name = "Pilot meters";
  pilot.members = {"wm-2", "wm-1"};
  auto created = f.registry->create_group(pilot, "alice");
  REQUIRE_MESSAGE(created.ok(), created.status().to_string());
  CHECK(created->id == "pilot-meters");
  CHECK(created->members == std::vector<std::string>{"wm-1", "wm-2"});
  CHECK(f.registry->create_group(pilot, "alice").status().code() == ErrorCode::kAlreadyExists);
  Group bad = pilot;
  bad.id = "bad";
  bad.members = {"wm-404"};
  CHECK(f.registry->create_group(bad, "alice").status().message() ==
        "group 'bad': no device 'wm-404'");

  REQUIRE(f.registry->add_members("pilot-meters", {"wm-5"}).ok());
  REQUIRE(f.registry->remove_members("pilot-meters", {"wm-1"}).ok());
  CHECK(*f.registry->members("pilot-meters") == std::vector<std::string>{"wm-2", "wm-5"});

  // Query groups: JSON form as the API sends it.
  auto south = Group::from_json(*Json::parse(
      R"({"id":"south","name":"South meters","kind":"query",
          "query":{"type":"water_meter","bbox":{"min_lat":45.4,"min_lon":-73.6,"max_lat":45.525,"max_lon":-73.5}}})"));
  REQUIRE(south.ok());
  REQUIRE(f.registry->create_group(*south, "alice").ok());
  CHECK(*f.registry->members("south") == std::vector<std::string>{"wm-0", "wm-1", "wm-2"});
  auto near = Group::from_json(*Json::parse(
      R"({"id":"near","name":"Near the plant","kind":"query",
          "query":{"circle":{"lat":45.50,"lon":-73.56,"radius_m":1200}}})"));
  REQUIRE(near.ok());
  REQUIRE(f.registry->create_group(*near, "alice").ok());
  CHECK(*f.registry->members("near") == std::vector<std::string>{"ps-1", "wm-0", "wm-1"});
  auto zone = Group::from_json(*Json::parse(
      R"({"id":"dma-7","name":"DMA 7","kind":"query","query":{"tags":{"zone":"dma-7"}}})"));
  REQUIRE(f.registry->create_group(*zone, "alice").ok());
  CHECK(f.registry->members("dma-7")->size() == 4);
  auto bad_query = Group::from_json(
      *Json::parse(R"({"id":"x","name":"x","kind":"query","query":{"colour":"red"}})"));
  CHECK(
      bad_query.status().message().starts_with("group 'x': device query: unknown field 'colour'"));

  CHECK(f.registry->groups_of("wm-2") ==
        std::vector<std::string>{"dma-7", "pilot-meters", "south"});
  CHECK(f.registry->groups_of("ps-1") == std::vector<std::string>{"dma-7", "near"});
  // Moving a device changes its query groups; the cache follows.
  DeviceUpdate move;
  move.location = std::optional<GeoPoint>(GeoPoint{46.0, -73.0});
  move.remove_tags = {"zone"};
  REQUIRE(f.registry->update("wm-2", move, "ops").ok());
  CHECK(f.registry->groups_of("wm-2") == std::vector<std::string>{"pilot-meters"});
  CHECK(*f.registry->members("south") == std::vector<std::string>{"wm-0", "wm-1"});

  f.reopen();
  CHECK(f.registry->list_groups().size() == 4);
  CHECK(*f.registry->members("pilot-meters") == std::vector<std::string>{"wm-2", "wm-5"});
  CHECK(*f.registry->members("south") == std::vector<std::string>{"wm-0", "wm-1"});
  CHECK(f.registry->get_group("near")->query.circle->radius_m == 1200);
  REQUIRE(f.registry->delete_group("near", "alice").ok());
  CHECK(f.registry->get_group("near").status().code() == ErrorCode::kNotFound);
  CHECK(f.registry->groups_of("ps-1") == std::vector<std::string>{"dma-7"});
  f.reopen();
  CHECK(f.registry->list_groups().size() == 3);
}

TEST_CASE("registry: the twin delta closes when the device reports the desired state") {
  Fixture f;
  REQUIRE(f.registry->provision(meter("wm-1"), "ops").ok());
  auto d = f.registry->set_desired(
      "wm-1", *Json::parse(R"({"interval_s":900,"lora":{"adr":true,"sf":9},"debug":true})"),
      "alice");
  REQUIRE(d.ok());
  CHECK((*d)->desired_version == 1);
  d = f.registry->set_desired("wm-1", *Json::parse(R"({"debug":null,"lora":{"sf":10}})"), "alice");
  REQUIRE(d.ok());
  CHECK((*d)->desired_version == 2);
  CHECK((*d)->desired == *Json::parse(R"({"interval_s":900,"lora":{"adr":true,"sf":10}})"));
  CHECK(*f.registry->delta("wm-1") == (*d)->desired);

  auto rep = f.registry->report(
      "wm-1", *Json::parse(R"({"interval_s":900,"lora":{"adr":true,"sf":7},"fw":"1.2"})"));
  REQUIRE(rep.ok());
  CHECK((*rep)->reported_version == 1);
  CHECK(*f.registry->delta("wm-1") == *Json::parse(R"({"lora":{"sf":10}})"));

  f.reopen();
  CHECK(*f.registry->delta("wm-1") == *Json::parse(R"({"lora":{"sf":10}})"));
  rep = f.registry->report("wm-1", *Json::parse(R"({"lora":{"sf":10}})"));
  REQUIRE(rep.ok());
  CHECK((*rep)->reported_version == 2);
  CHECK((*rep)->reported.get_string("fw") == "1.2");  // merged, not replaced
  CHECK(*f.registry->delta("wm-1") == Json::object());
  CHECK(f.registry->set_desired("wm-1", Json::array(), "alice").status().code() ==
        ErrorCode::kInvalidArgument);
}

TEST_CASE("registry: reopening restores devices, statuses, history and metadata") {
  Fixture f;
  Device d = meter("wm-1");
  d.tags["district"] = "north";
  d.model = "Kamstrup flowIQ 2200";
  d.firmware_version = "1.0.3";
  d.asset_id = "A-77";
  d.project = "ami-2025";
  REQUIRE(f.registry->provision(d, "ops").ok());
  REQUIRE(f.registry->provision(meter("wm-2", 45.6, -73.6), "ops").ok());
  Device active = meter("wm-3");
  active.status = DeviceStatus::kActive;
  REQUIRE(f.registry->provision(active, "import").ok());
  REQUIRE(f.registry->set_status("wm-1", DeviceStatus::kActive, "bob", "installed").ok());
  DeviceUpdate fw;
  fw.firmware_version = "1.1.0";
  fw.set_tags["vendor"] = "kamstrup";
  f.clock.advance(5s);
  auto updated = f.registry->update("wm-1", fw, "ops");
  REQUIRE(updated.ok());
  CHECK((*updated)->updated_at == 1'700'000'005'000);
  DeviceQuery area;
  area.bbox = BoundingBox{45.55, -73.7, 45.7, -73.5};
  auto ids = f.registry->decommission_where(area, "carol", "district closed");
  REQUIRE(ids.ok());
  CHECK(*ids == std::vector<std::string>{"wm-2"});
  const Json before = (*updated)->to_json();

  f.reopen();
  REQUIRE(f.registry->size() == 3);
  auto again = f.registry->find("wm-1");
  REQUIRE(again != nullptr);
  CHECK(again->to_json() == before);
  CHECK(f.registry->find("wm-2")->status == DeviceStatus::kDecommissioned);
  CHECK(f.registry->find("wm-3")->status == DeviceStatus::kActive);
  CHECK(f.registry->history("wm-1")->size() == 1);
  CHECK(f.registry->history("wm-2")->at(0).reason == "district closed");
  CHECK(f.registry->history("wm-3")->at(0).reason == "provisioned as active");
  // Indexes are rebuilt too.
  DeviceQuery q;
  q.type = "water_meter";
  q.bbox = area.bbox;
  CHECK(f.registry->query(q).total == 1);
  // A second decommission over the same area changes nothing.
  CHECK(f.registry->decommission_where(area, "carol", "again")->empty());
}

TEST_CASE("registry: lookups and box queries stay correct and fast at scale") {
  std::size_t n = 200'000;
  if (const char* env = std::getenv("CIVICBUS_REGISTRY_DEVICES")) n = std::stoul(env);
  ManualClock clock;
  auto types = catalog();
  auto db = open_db(":memory:", /*fast=*/true);
  auto opened = Registry::open(*db, clock, *types);
  REQUIRE(opened.ok());
  auto& registry = **opened;

  static const char* kTypes[] = {"water_meter", "pressure_sensor", "air_quality", "parking_sensor",
                                 "streetlight", "flood_gauge",     "waste_bin",   "noise_monitor"};
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> lat(45.40, 45.70), lon(-73.95, -73.45);
  std::vector<Device> all;
  all.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    Device d;
    d.id = fmt::format("dev-{:07}", i);
    d.serial = fmt::format("S{:07}", i);
    d.type = kTypes[i % 8];
    d.location = GeoPoint{lat(rng), lon(rng)};
    d.department = i % 3 ? "water" : "roads";
    all.push_back(d);
  }
  auto t0 = std::chrono::steady_clock::now();
  for (std::size_t at = 0; at < n; at += 50'000) {
    std::vector<Device> chunk(all.begin() + at, all.begin() + std::min(n, at + 50'000));
    auto r = registry.provision_batch(std::move(chunk), "scale");
    REQUIRE(r.ok());
  }
  const double provision_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(registry.size() == n);

  // Lookups: correct, and their latency measured.
  std::vector<double> lat_us;
  lat_us.reserve(100'000);
  std::uniform_int_distribution<std::size_t> pick(0, n - 1);
  for (int i = 0; i < 100'000; ++i) {
    const std::size_t k = pick(rng);
    const std::string id = fmt::format("dev-{:07}", k);
    auto s = std::chrono::steady_clock::now();
    auto d = registry.find(id);
    auto e = std::chrono::steady_clock::now();
    lat_us.push_back(std::chrono::duration<double, std::micro>(e - s).count());
    REQUIRE(d != nullptr);
    if (i % 1000 == 0) CHECK(d->serial == all[k].serial);
  }
  CHECK(registry.find("dev-missing") == nullptr);
  std::sort(lat_us.begin(), lat_us.end());
  const double p99 = lat_us[lat_us.size() * 99 / 100];

  // Type + box queries against a brute-force filter.
  double worst_ms = 0;
  for (int i = 0; i < 20; ++i) {
    const double a = lat(rng), b = lon(rng);
    const double h = 0.01 + (i % 5) * 0.02, w = 0.01 + (i % 4) * 0.03;
    DeviceQuery q;
    q.type = kTypes[i % 8];
    q.bbox = BoundingBox{a, b, std::min(a + h, 90.0), std::min(b + w, 180.0)};
    if (i % 3 == 0) q.department = "water";
    q.limit = 100;
    auto s = std::chrono::steady_clock::now();
    auto r = registry.query(q);
    worst_ms = std::max(
        worst_ms,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
    std::vector<std::string> expected;
    for (const auto& d : all) {
      if (q.matches(d)) expected.push_back(d.id);
    }
    std::sort(expected.begin(), expected.end());
    REQUIRE(r.total == expected.size());
    const std::size_t page = std::min<std::size_t>(100, expected.size());
    REQUIRE(r.devices.size() == page);
    for (std::size_t k = 0; k < page; ++k) REQUIRE(r.devices[k]->id == expected[k]);
  }
  // A radius query too.
  DeviceQuery c;
  c.circle = GeoCircle{GeoPoint{45.55, -73.70}, 800};
  auto r = registry.query(c);
  std::size_t expected = 0;
  for (const auto& d : all) expected += c.matches(d) ? 1 : 0;
  CHECK(r.total == expected);
  CHECK(expected > 0);

  MESSAGE(
      fmt::format("registry at {} devices: provisioning {:.2f} s, lookup p99 {:.2f} us, "
                  "worst type+bbox query {:.2f} ms",
                  n, provision_s, p99, worst_ms));
}
