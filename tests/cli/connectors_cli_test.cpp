// `civicbus connectors ...` and `civicbus pipeline run` against real files.
#include <doctest/doctest.h>

#include "civicbus/core/json.hpp"
#include "cli/cli_support.hpp"

using namespace civicbus;
using namespace civicbus::cli_testing;

TEST_CASE("cli: connectors list shows the catalog") {
  auto r = cli({"connectors", "list"});
  REQUIRE(r.exit_code == 0);
  for (const char* name :
       {"csv", "json", "xml", "sqlite", "postgres", "http", "webhook", "mpac", "mqtt", "smtp", "s3",
        "sftp", "cpa005", "bai2", "gtfs", "gtfs_rt", "open311", "arcgis", "amanda"}) {
    CHECK_MESSAGE(contains(r.output, std::string("\n") + name + " "), name);
  }
  auto j = cli({"connectors", "list", "--json"});
  REQUIRE(j.exit_code == 0);
  auto parsed = Json::parse(j.output);
  REQUIRE(parsed.ok());
  CHECK(parsed->size() >= 20);
}

TEST_CASE(
    "cli: pipeline run loads a CSV with an error report, and a second run upserts the same rows") {
  testing::TempDir dir;
  std::string csv = "permit_id,issued_on,status\n";
  for (int i = 1; i <= 50; ++i) {
    csv += std::to_string(i) + "," + (i % 10 == 0 ? "2020-13-01" : "2020-06-15") + "," +
           (i % 2 ? "ISS" : "FIN") + "\n";
  }
  testing::write_file(dir.file("permits.csv"), csv);
  testing::write_file(dir.file("load.yaml"), R"(
name: permits
source: {connector: csv, config: {path: permits.csv}}
stages:
  - {type: types, fields: {permit_id: {type: integer}, issued_on: {type: date}}}
  - {type: map_codes, fields: {status: {table: {ISS: issued, FIN: final}}}}
sink: {connector: sqlite, config: {path: out.db}, stream: permits, mode: upsert, key: permit_id}
batch_size: 20
error_report_dir: report
)");
  auto r = cli({"pipeline", "run", dir.file("load.yaml")});
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(contains(r.output, "read 50, loaded 45, failed 5 in 3 batches"));
  CHECK(contains(r.output, "success rate: 90.00%"));
  CHECK(contains(r.output, "rows"));  // progress lines
  std::string report = testing::read_file(dir.file("report/errors.csv"));
  CHECK(contains(report, "issued_on,2020-13-01,not a date"));
  auto again = cli({"pipeline", "run", dir.file("load.yaml")});
  REQUIRE(again.exit_code == 0);
  CHECK(contains(again.output, "loaded 45"));

  auto missing = cli({"pipeline", "run", dir.file("nope.yaml")});
  CHECK(missing.exit_code == 1);
  CHECK(contains(missing.output, "nope.yaml"));
}

TEST_CASE("cli: connectors check, test, sync and status on a configured node") {
  testing::TempDir dir;
  testing::write_file(dir.file("parcels.csv"), "roll,owner\n1901,A\n1902,B\n1903,C\n");
  const std::string config = dir.file("node.yaml");
  testing::write_file(
      config,
      "node: {name: connect-cli, data_dir: data}\n"
      "security: {master_key_env: CIVICBUS_CLI_TEST_UNSET_KEY, master_key: generate}\n"
      "connectors:\n"
      "  connections:\n"
      "    - {name: warehouse, connector: sqlite, config: {path: " +
          dir.file("w.db") +
          "}}\n"
          "    - name: parcels\n"
          "      connector: csv\n"
          "      config: {path: " +
          dir.file("parcels.csv") +
          "}\n"
          "      schedule: \"0 2 * * *\"\n"
          "      destination: warehouse\n"
          "      write_mode: upsert\n"
          "      key: [roll]\n"
          "      mapping: {fields: {roll: {from: roll, required: true}, "
          "owner_name: {from: owner}}}\n");
  auto check = cli({"connectors", "check", "--config", config, "parcels"});
  INFO(check.output);
  REQUIRE(check.exit_code == 0);
  CHECK(contains(check.output, "parcels: ok"));
  auto test = cli({"connectors", "test", "--config", config, "parcels"});
  INFO(test.output);
  REQUIRE(test.exit_code == 0);
  CHECK(contains(test.output, "sample: {\"roll\":\"1901\",\"owner_name\":\"A\"}"));
  auto sync = cli({"connectors", "sync", "--config", config, "parcels"});
  INFO(sync.output);
  REQUIRE(sync.exit_code == 0);
  CHECK(contains(sync.output, "read 3, written 3, refused 0"));
  auto status = cli({"connectors", "status", "--config", config, "parcels", "--json"});
  INFO(status.output);
  REQUIRE(status.exit_code == 0);
  auto parsed = Json::parse(status.output);
  REQUIRE(parsed.ok());
  CHECK(parsed->as_array()[0].get_string("health") == "healthy");
  CHECK(parsed->as_array()[0].get_string("next_run_at").find("T07:00:00") /* 02:00 EST */ !=
        std::string::npos);
  auto unknown = cli({"connectors", "sync", "--config", config, "nope"});
  CHECK(unknown.exit_code == 1);
  CHECK(contains(unknown.output, "no connection 'nope'"));
}
