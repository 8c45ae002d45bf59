// `civicbus connectors ...` and `civicbus pipeline run` against real files.
#include <doctest/doctest.h>

#include "civicbus/core/json.hpp"
#include "cli/cli_support.hpp"

using namespace civicbus;
using namespace civicbus::cli_testing;

TEST_CASE("cli: connectors list shows the catalog") {
  auto r = cli({"connectors", "list"});
  REQUIRE(r.exit_code == 0);
  for (const char* name : {"csv", "json", "xml", "sqlite", "postgres", "http", "webhook", "mpac",
                           "cpa005", "bai2", "gtfs", "gtfs_rt", "open311", "arcgis", "amanda"}) {
    CHECK_MESSAGE(contains(r.output, std::string("\n") + name + " "), name);
  }
  auto j = cli({"connectors", "list", "--json"});
  REQUIRE(j.exit_code == 0);
  auto parsed = Json::parse(j.output);
  REQUIRE(parsed.ok());
  CHECK(parsed->size() >= 18);  // 20+ once mqtt, smtp, s3 and sftp land
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
