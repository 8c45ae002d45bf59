// `civicbus devices import|list` against a data directory with a fleet section.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "civicbus/core/json.hpp"
#include "cli/cli_support.hpp"
#include "support/mosquitto.hpp"
#include "support/test_support.hpp"

namespace civicbus {
namespace {

using cli_testing::cli;
using cli_testing::contains;
using cli_testing::kCli;

using testing::run_command;
using testing::RunResult;
using testing::TempDir;

}  // namespace

TEST_CASE(
    "cli: devices import provisions the good rows, lists the bad ones and writes the keys 0600") {
  TempDir dir;
  const std::string config = dir.file("node.yaml");
  testing::write_file(
      config,
      "node: {name: fleet-cli, data_dir: data}\n"
      "security: {master_key_env: CIVICBUS_CLI_TEST_UNSET_KEY, master_key: generate}\n"
      "fleet: {time_zone: America/Toronto}\n");
  const std::string csv = dir.file("meters.csv");
  testing::write_file(csv,
                      "serial,type,lat,lon,asset_id\n"
                      "WM-1,water_meter,45.40,-75.70,A-1\n"
                      "WM-2,water_meter,91.5,-75.70,A-2\n"
                      "WM-3,water_meter,45.41,-75.71,A-3\n");
  // Without somewhere to put the keys the command refuses to start.
  RunResult no_keys = cli({"devices", "import", "--config", config, csv});
  CHECK(no_keys.exit_code == 2);
  CHECK(contains(no_keys.output, "--keys"));

  const std::string keys = dir.file("keys.pem");
  RunResult r = cli({"devices", "import", "--config", config, csv, "--keys", keys});
  INFO(r.output);
  CHECK(r.exit_code == 1);  // a row was refused
  CHECK(contains(r.output, "imported 2 devices"));
  CHECK(contains(r.output, "line 3"));
  CHECK(contains(r.output, "91.5"));
  const std::string pem = testing::read_file(keys);
  CHECK(contains(pem, "# device WM-1"));
  CHECK(contains(pem, "PRIVATE KEY"));
  struct stat st {};
  REQUIRE(::stat(keys.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  RunResult list = cli({"devices", "list", "--config", config, "--json"});
  INFO(list.output);
  CHECK(list.exit_code == 0);
  CHECK(contains(list.output, "\"id\":\"WM-1\""));
  CHECK(contains(list.output, "\"id\":\"WM-3\""));
  CHECK_FALSE(contains(list.output, "PRIVATE"));
  RunResult table = cli({"devices", "list", "--config", config, "--type", "water_meter"});
  CHECK(contains(table.output, "2 of 2 devices"));
}

TEST_CASE("cli: the demo's simulated gauges publish over MQTT through a real mosquitto") {
  testing::Mosquitto mosquitto;
  RunResult r = cli({"demo", "--duration", "1s", "--rate", "100", "--mqtt", mosquitto.uri()});
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(contains(r.output, "the flood gauges publish over MQTT"));
  CHECK(contains(r.output, "732 MQTT messages received"));  // 61 steps x 12 gauges
  CHECK(contains(r.output, "resolved by system"));
  RunResult bad = cli({"demo", "--mqtt", "http://127.0.0.1:1"});
  CHECK(bad.exit_code == 2);
}

}  // namespace civicbus
