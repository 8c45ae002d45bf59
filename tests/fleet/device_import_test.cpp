#include "fleet/device_import.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <chrono>
#include <ctime>
#include <string>

namespace civicbus::fleet {
namespace {

struct Types {
  DeviceType water_meter{.name = "water_meter", .default_network = Network::kLorawan};
  DeviceType pressure{.name = "pressure_sensor"};
  DeviceTypeLookup lookup() const {
    return [this](std::string_view name) -> const DeviceType* {
      if (name == "water_meter") return &water_meter;
      if (name == "pressure_sensor") return &pressure;
      return nullptr;
    };
  }
};

const ImportError* error_on(const ImportPlan& plan, std::size_t line) {
  for (const auto& e : plan.errors) {
    if (e.line == line) return &e;
  }
  return nullptr;
}

TEST_CASE("device_import: CSV with good and bad rows reports bad ones by line and reason") {
  Types types;
  const std::string csv =
      "serial,type,lat,lon,asset_id,id,model,firmware_version,install_date,department,project,"
      "network,tags\n"
      "WM-1,water_meter,45.5017,-73.5673,A-1,wm-1,Itron,1.2.3,2024-02-29,water,north,,"
      "zone=3;dma=7\n"
      "WM-2,water_meter,,,,,,,,,,,\n"                                      // 3: minimal
      "WM-3,hovercraft,45.5,-73.5,,,,,,,,,\n"                              // 4: unknown type
      "PS-1,pressure_sensor,45.6,-73.6,,ps-1,,,2023-11-30,water,,mqtt,\n"  // 5
      "WM-4,water_meter,45.5,abc,,,,,,,,,\n"                               // 6: lon not a number
      "WM-1,water_meter,,,,,,,,,,,\n"                                      // 7: duplicate serial
      "WM-5,water_meter,,,,,,,2023-02-30,,,,\n"                            // 8: not a real date
      "\"WM-6, rear\",water_meter,,,,wm-6,\"Kamstrup, 21\",,,,,sigfox,\"note=a, b\"\n"  // 9
      "PS-2,pressure_sensor,-33.8688,151.2093,,,,,,,,http,\n";                          // 10
  auto plan = parse_device_csv(csv, types.lookup());
  REQUIRE_MESSAGE(plan.ok(), plan.status().to_string());
  REQUIRE(plan->rows.size() == 5);
  REQUIRE(plan->errors.size() == 4);

  const Device& d1 = plan->rows[0].device;
  CHECK(plan->rows[0].line == 2);
  CHECK(d1.id == "wm-1");
  CHECK(d1.serial == "WM-1");
  CHECK(d1.type == "water_meter");
  REQUIRE(d1.location);
  CHECK(d1.location->lat == doctest::Approx(45.5017));
  CHECK(d1.location->lon == doctest::Approx(-73.5673));
  CHECK(d1.asset_id == "A-1");
  CHECK(d1.model == "Itron");
  CHECK(d1.firmware_version == "1.2.3");
  CHECK(d1.install_date == "2024-02-29");
  CHECK(d1.department == "water");
  CHECK(d1.project == "north");
  CHECK(d1.network == Network::kLorawan);  // the type's default
  CHECK(d1.tags == std::map<std::string, std::string>{{"zone", "3"}, {"dma", "7"}});

  const Device& d2 = plan->rows[1].device;
  CHECK(plan->rows[1].line == 3);
  CHECK(d2.id == "WM-2");  // id defaults to the serial
  CHECK_FALSE(d2.location);

  CHECK(plan->rows[2].line == 5);
  CHECK(plan->rows[2].device.network == Network::kMqtt);

  const Device& d6 = plan->rows[3].device;
  CHECK(plan->rows[3].line == 9);
  CHECK(d6.serial == "WM-6, rear");
  CHECK(d6.model == "Kamstrup, 21");
  CHECK(d6.network == Network::kSigfox);
  CHECK(d6.tags.at("note") == "a, b");
  CHECK(plan->rows[4].line == 10);
  CHECK(plan->rows[4].device.network == Network::kHttp);
  CHECK(plan->rows[4].device.location->lat == doctest::Approx(-33.8688));

  auto* e4 = error_on(*plan, 4);
  REQUIRE(e4);
  CHECK(e4->field == "type");
  CHECK(e4->reason.find("unknown device type 'hovercraft'") != std::string::npos);
  auto* e6 = error_on(*plan, 6);
  REQUIRE(e6);
  CHECK(e6->field == "lon");
  CHECK(e6->reason.find("'abc' is not a number") != std::string::npos);
  auto* e7 = error_on(*plan, 7);
  REQUIRE(e7);
  CHECK(e7->field == "serial");
  CHECK(e7->reason.find("duplicate serial 'WM-1' (first on line 2)") != std::string::npos);
  auto* e8 = error_on(*plan, 8);
  REQUIRE(e8);
  CHECK(e8->field == "install_date");
  CHECK(e8->message() == "line 8: install_date: '2023-02-30' is not a date in the form YYYY-MM-DD");

  const std::string report = import_errors_csv(*plan);
  CHECK(report.starts_with("where,field,reason\r\n"));
  CHECK(report.find("line 4,type,unknown device type 'hovercraft'") != std::string::npos);
}

TEST_CASE("device_import: more row problems, each named") {
  Types types;
  auto plan = parse_device_csv(
      "Serial,Type,Latitude,Longitude,id,network,tags,install_date\n"
      ",water_meter,,,,,,\n"                  // 2: serial missing
      "S2,,,,,,,\n"                           // 3: type missing
      "S3,water_meter,91,10,,,,\n"            // 4: lat out of range
      "S4,water_meter,45,,,,,\n"              // 5: lat without lon
      "S5,water_meter,,,,carrier-pigeon,,\n"  // 6: bad network
      "S6,water_meter,,,x1,,,\n"              // 7: ok
      "S7,water_meter,,,x1,,,\n"              // 8: duplicate id
      "S8,water_meter,,,,,novalue,\n"         // 9: bad tags
      "S9/A,water_meter,,,,,,\n"              // 10: serial unusable as id
      "S10,water_meter,,,,,,2024-13-01\n"     // 11: month 13
      "S11,water_meter,,,,,,,extra\n"         // 12: too many fields
          + std::string("S12,water_meter,,,") + std::string(200, 'i') + ",,,\n",  // 13: id too long
      types.lookup());
  REQUIRE_MESSAGE(plan.ok(), plan.status().to_string());
  REQUIRE(plan->rows.size() == 1);
  CHECK(plan->rows[0].line == 7);
  struct Expect {
    std::size_t line;
    std::string field, text;
  };
  const Expect expected[] = {
      {2, "serial", "is required"},
      {3, "type", "is required"},
      {4, "lat", "outside -90..90"},
      {5, "lon", "lat is given without lon"},
      {6, "network", "unknown network 'carrier-pigeon'"},
      {8, "id", "duplicate id 'x1' (first on line 7)"},
      {9, "tags", "'novalue' is not key=value"},
      {10, "serial", "may not contain '/'"},
      {11, "install_date", "'2024-13-01'"},
      {12, "", "has 9 fields, the header has 8 columns"},
      {13, "id", "at most 128 allowed"},
  };
  REQUIRE(plan->errors.size() == std::size(expected));
  for (std::size_t i = 0; i < std::size(expected); ++i) {
    const ImportError& e = plan->errors[i];
    INFO(e.message());
    CHECK(e.line == expected[i].line);
    CHECK(e.field == expected[i].field);
    CHECK(e.reason.find(expected[i].text) != std::string::npos);
  }
}

TEST_CASE("device_import: whole-file problems fail with a clear message") {
  Types types;
  auto unknown = parse_device_csv("serial,type,lattitude\nS1,water_meter,4\n", types.lookup());
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.status().code() == ErrorCode::kInvalidArgument);
  CHECK(unknown.status().message().find("unknown column 'lattitude'") != std::string::npos);
  auto missing = parse_device_csv("serial,lat\nS1,4\n", types.lookup());
  CHECK(missing.status().message().find("no 'type' column") != std::string::npos);
  auto syntax = parse_device_csv("serial,type\nS1,\"water_meter\nS2,x\n", types.lookup());
  REQUIRE_FALSE(syntax.ok());
  CHECK(syntax.status().message().find("line 2") != std::string::npos);
  CHECK(parse_device_csv("", types.lookup()).status().code() == ErrorCode::kInvalidArgument);
  CHECK_FALSE(parse_device_json("{\"a\": 1}", types.lookup()).ok());
  auto header_only = parse_device_csv("serial,type\r\n", types.lookup());
  REQUIRE(header_only.ok());
  CHECK(header_only->rows.empty());
}

TEST_CASE("device_import: JSON array input names items") {
  Types types;
  const std::string json = R"([
    {"serial": "J1", "type": "water_meter", "lat": 45.5, "lon": -73.5, "tags": {"zone": "3"}},
    {"serial": "J2", "type": "pressure_sensor", "location": {"lat": 1, "lon": 2},
     "network": "lorawan", "tags": "a=1;b=2"},
    {"serial": "J3", "type": "nope"},
    {"serial": "J1", "type": "water_meter"},
    "not an object",
    {"serial": "J6", "type": "water_meter", "colour": "blue"}
  ])";
  auto plan = parse_device_import(json, types.lookup());  // sniffed as JSON
  REQUIRE_MESSAGE(plan.ok(), plan.status().to_string());
  REQUIRE(plan->rows.size() == 2);
  CHECK(plan->rows[0].line == 1);
  CHECK(plan->rows[0].device.location->lon == doctest::Approx(-73.5));
  CHECK(plan->rows[0].device.tags.at("zone") == "3");
  CHECK(plan->rows[1].device.location->lat == doctest::Approx(1));
  CHECK(plan->rows[1].device.network == Network::kLorawan);
  CHECK(plan->rows[1].device.tags.size() == 2);
  REQUIRE(plan->errors.size() == 4);
  CHECK(plan->errors[0].message() == "item 3: type: unknown device type 'nope'");
  CHECK(plan->errors[1].message() == "item 4: serial: duplicate serial 'J1' (first on item 1)");
  CHECK(plan->errors[2].message() == "item 5: is not an object");
  CHECK(plan->errors[3].location() == "item 6");
  CHECK(plan->errors[3].field == "colour");
}

TEST_CASE("device_import: 10,000-row CSV parses well under a second") {
  Types types;
  std::string csv = "serial,type,lat,lon,asset_id,model,install_date,department,tags\n";
  for (int i = 0; i < 10000; ++i) {
    csv += fmt::format(
        "WM-{:06},water_meter,{:.5f},{:.5f},A-{},\"Itron, Inc.\",2024-05-01,"
        "water,zone={};dma={}\n",
        i, 45.4 + i * 1e-5, -73.6 + i * 1e-5, i, i % 10, i % 100);
  }
  const auto start = std::chrono::steady_clock::now();
  const std::clock_t cpu_start = std::clock();
  auto plan = parse_device_csv(csv, types.lookup());
  const double cpu_ms = 1000.0 * static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("device_import: 10,000 CSV rows in " << ms << " ms wall, " << cpu_ms << " ms CPU");
  REQUIRE(plan.ok());
  CHECK(plan->rows.size() == 10000);
  CHECK(plan->errors.empty());
  CHECK(plan->rows.back().line == 10001);
  // CPU time: the wall time of a shared, loaded test machine says little.
  CHECK(cpu_ms < 1000);
}

}  // namespace
}  // namespace civicbus::fleet
