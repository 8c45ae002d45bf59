// The `connectors:` section of the node's YAML and pipeline files (src/node/connectors_config.cpp),
// and a node running its connector hub.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "civicbus/connect/hub.hpp"
#include "civicbus/node/node.hpp"
#include "civicbus/storage/database.hpp"
#include "support/test_support.hpp"

using namespace civicbus;

TEST_CASE("node config: the connectors section fills the hub's connections") {
  auto o = NodeOptions::from_yaml(R"(
connectors:
  misfire_grace: 30m
  connections:
    - name: mpac-nightly
      connector: sqlite
      config: {path: /srv/mpac.db, table: assessments, cursor_field: extract_date}
      schedule: "0 2 * * *"
      time_zone: America/Toronto
      drift: pause
      destination: warehouse
      write_mode: upsert
      key: [roll_number]
      resilience: {max_attempts: 4, failure_threshold: 3, open_for_ms: 120000}
    - name: warehouse
      connector: sqlite
      config: {path: /srv/warehouse.db}
)",
                                  "node.yaml");
  REQUIRE_MESSAGE(o.ok(), o.status().to_string());
  REQUIRE(o->connectors.has_value());
  CHECK(o->connectors->hub.misfire_grace == std::chrono::minutes(30));
  REQUIRE(o->connectors->connections.size() == 2);
  const auto& c = o->connectors->connections[0];
  CHECK(c.name == "mpac-nightly");
  CHECK(c.schedule == "0 2 * * *");
  CHECK(c.drift == connect::DriftPolicy::kPause);
  CHECK(c.write_mode == connect::WriteMode::kUpsert);
  CHECK(c.key == std::vector<std::string>{"roll_number"});
  CHECK(c.resilience.max_attempts == 4);
  CHECK(c.resilience.open_for == std::chrono::minutes(2));
  CHECK(c.config.get_string("table") == "assessments");

  auto bad = NodeOptions::from_yaml(R"(
connectors:
  connections:
    - name: x
      connector: sqlite
      shedule: "0 2 * * *"
)",
                                    "node.yaml");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("node.yaml:4") != std::string::npos);
  CHECK(bad.status().message().find("unknown key 'shedule'") != std::string::npos);

  // A typo inside resilience and a mistyped value are refused too, not read as defaults.
  for (const auto& [body, expected] : std::vector<std::pair<std::string, std::string>>{
           {"resilience: {max_atempts: 4}",
            "unknown key 'max_atempts' in connection 'x' resilience"},
           {"resilience: {open_for_ms: 2m}",
            "connection 'x': resilience.open_for_ms must be a whole"},
           {"resilience: 3", "connection 'x': resilience must be an object"},
           {"batch_size: ten", "connection 'x': batch_size must be a whole number of at least 1"},
           {"batch_size: -5", "connection 'x': batch_size must be a whole number of at least 1"},
           {"streams: permits", "connection 'x': streams must be a list of strings"},
           {"key: [{id: 1}]", "connection 'x': key must be a list of strings"},
           {"schedule: [daily]", "connection 'x': schedule must be a string"}}) {
    CAPTURE(body);
    auto mistyped = NodeOptions::from_yaml(
        "\nconnectors:\n  connections:\n    - name: x\n      connector: sqlite\n      " + body +
            "\n",
        "node.yaml");
    REQUIRE_FALSE(mistyped.ok());
    CHECK(mistyped.status().message().find("node.yaml:4") != std::string::npos);
    CHECK_MESSAGE(mistyped.status().message().find(expected) != std::string::npos,
                  mistyped.status().message());
  }
}

TEST_CASE("node: a node with connectors runs the hub and syncs a connection") {
  testing::TempDir dir;
  {
    storage::SqliteOptions so;
    so.path = dir.file("source.db");
    auto db = storage::open_sqlite(so).value();
    REQUIRE(db->execute_script("CREATE TABLE permits (id INTEGER PRIMARY KEY, status TEXT);"
                               "INSERT INTO permits VALUES (1, 'ISS'), (2, 'FIN');")
                .ok());
  }
  NodeOptions o;
  o.data_dir = dir.file("data");
  o.master_key_env = "";
  o.logging.level = LogLevel::kError;
  o.connectors.emplace();
  connect::ConnectionOptions sink;
  sink.name = "warehouse";
  sink.connector = "sqlite";
  sink.config = Json::object({{"path", dir.file("warehouse.db")}});
  connect::ConnectionOptions source;
  source.name = "permits";
  source.connector = "sqlite";
  source.config =
      Json::object({{"path", dir.file("source.db")}, {"table", "permits"}, {"cursor_field", "id"}});
  source.destination = "warehouse";
  source.schedule = "@daily";
  o.connectors->connections = {sink, source};
  auto refused = Node::create(o);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().message().find("master key") != std::string::npos);

  o.generate_master_key = true;
  auto node = Node::create(o);
  REQUIRE_MESSAGE(node.ok(), node.status().to_string());
  connect::ConnectorHub* hub = (*node)->connectors();
  REQUIRE(hub != nullptr);
  CHECK(hub->next_run("permits").ok());
  auto r = hub->sync("permits");
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(r->records_written == 2);
  CHECK((*node)->broker().topic("integration.connector_health_changed").ok());
}

TEST_CASE("node: pipeline files are YAML with paths relative to the file") {
  testing::TempDir dir;
  testing::write_file(dir.file("in.csv"), "id,status\n1,ISS\n2,FIN\n");
  testing::write_file(dir.file("p.yaml"), R"(
name: permits
source: {connector: csv, config: {path: in.csv}}
stages:
  - type: map_codes
    fields: {status: {table: {ISS: issued, FIN: final}}}
sink: {connector: sqlite, config: {path: out.db}, stream: permits, mode: upsert, key: id}
batch_size: 1000
error_report_dir: report
)");
  auto p = load_pipeline_file(dir.file("p.yaml"));
  REQUIRE_MESSAGE(p.ok(), p.status().to_string());
  CHECK(p->name == "permits");
  CHECK(p->source.config.get_string("path") == dir.file("in.csv"));
  CHECK(p->sink.config.get_string("path") == dir.file("out.db"));
  CHECK(p->error_report_dir == dir.file("report"));
  CHECK(p->key == std::vector<std::string>{"id"});
  REQUIRE(p->stages.size() == 1);
  CHECK(p->stages[0].config.at_pointer("/fields/status/table/ISS")->as_string() == "issued");

  testing::write_file(dir.file("bad.yaml"),
                      "name: x\nsource: {connector: csv}\nsink: {connector: sqlite}\nbatch: 5\n");
  auto bad = load_pipeline_file(dir.file("bad.yaml"));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("unknown key 'batch'") != std::string::npos);
  CHECK(load_pipeline_file(dir.file("missing.yaml")).status().code() == ErrorCode::kNotFound);
}
