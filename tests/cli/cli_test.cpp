// Runs the built `civicbus` binary (CIVICBUS_CLI_PATH) the way an operator would.
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <vector>

#include "civicbus/core/json.hpp"
#include "cli/cli_support.hpp"
#include "support/test_support.hpp"

namespace civicbus {
namespace {

using cli_testing::cli;
using cli_testing::contains;
using cli_testing::kCli;

using namespace std::chrono_literals;
using testing::run_command;
using testing::RunResult;
using testing::TempDir;

// A configuration with a schema'd topic and a PII topic, in its own directory.
struct Config {
  TempDir dir;
  std::string path = dir.file("node.yaml");

  Config() {
    testing::write_file(dir.file("permit.json"), R"({
      "$schema": "https://json-schema.org/draft/2020-12/schema",
      "type": "object",
      "required": ["permit_id"],
      "properties": {"permit_id": {"type": "string"}, "valuation": {"type": "integer"}}
    })");
    testing::write_file(path, R"(node: {name: cli-test, data_dir: data, worker_threads: 2}
logging: {level: info}
security: {master_key_env: CIVICBUS_CLI_TEST_UNSET_KEY, master_key: generate}
broker: {maintenance_interval: 200ms}
topics:
  - name: permit.issued
    owner: permits-team
    description: A permit was issued
    retention: 30d
    schema_subject: permit
  - name: property.assessment.updated
    owner: assessment-team
    sensitivity: confidential
    pii_fields: [/owner_name]
schemas:
  - {subject: permit, file: permit.json, compatibility: BACKWARD}
)");
  }
};

TEST_CASE("cli: version, help and usage errors") {
  auto version = cli({"version"});
  CHECK(version.exit_code == 0);
  CHECK(version.output.rfind("civicbus ", 0) == 0);
  CHECK(cli({"--version"}).exit_code == 0);

  auto help = cli({"help"});
  CHECK(help.exit_code == 0);
  for (const char* command : {"serve", "demo", "topics", "publish", "tail", "dlq list",
                              "dlq replay", "asyncapi", "openapi", "audit verify"}) {
    CAPTURE(command);
    CHECK(contains(help.output, command));
  }
  auto help_publish = cli({"help", "publish"});
  CHECK(help_publish.exit_code == 0);
  CHECK(contains(help_publish.output, "--type TYPE"));
  CHECK(cli({"publish", "--help"}).exit_code == 0);
  CHECK(contains(cli({"help", "dlq"}).output, "dlq replay"));

  auto none = cli({});
  CHECK(none.exit_code == 2);

  auto unknown = cli({"pubish"});
  CHECK(unknown.exit_code == 2);
  CHECK(contains(unknown.output, "unknown command 'pubish' (did you mean 'publish'?)"));

  auto option = cli({"publish", "--config", "x.yaml", "--tpye", "a.b"});
  CHECK(option.exit_code == 2);
  CHECK(contains(option.output,
                 "civicbus publish: unknown option '--tpye' (did you mean '--type'?)"));

  auto missing_value = cli({"tail", "--config"});
  CHECK(missing_value.exit_code == 2);
  CHECK(contains(missing_value.output, "option '--config' needs a value"));

  auto no_config = cli({"topics"});
  CHECK(no_config.exit_code == 2);
  CHECK(contains(no_config.output, "give --config FILE or --data-dir DIR"));

  auto sub = cli({"dlq", "lst"});
  CHECK(sub.exit_code == 2);
  CHECK(contains(sub.output, "unknown subcommand 'lst' (did you mean 'list'?)"));

  auto bad_limit = cli({"tail", "--config", "x.yaml", "--limit", "many"});
  CHECK(bad_limit.exit_code == 2);
  CHECK(contains(bad_limit.output, "--limit must be a whole number"));

  auto bad_duration = cli({"demo", "--duration", "soon"});
  CHECK(bad_duration.exit_code == 2);
  CHECK(contains(bad_duration.output, "--duration"));
}

TEST_CASE("cli: demo runs end to end and prints a summary") {
  auto r = cli({"demo", "--duration", "2s", "--rate", "200"});
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(contains(r.output, "topic    property.assessment.updated"));
  CHECK(contains(r.output, "refused  an assessment"));
  CHECK(contains(r.output, "acknowledged as a duplicate"));
  CHECK(contains(r.output, "published"));
  CHECK(contains(r.output, "v2 proposed"));
  CHECK(contains(r.output, "-> active"));
  CHECK(contains(r.output, "dead letters in group notifier"));
  CHECK(contains(r.output, "queued for replay"));
  CHECK(contains(r.output, "tax (granted) sees owner_name \""));
  CHECK(contains(r.output, "gis (not granted) sees \"[redacted]\""));
  CHECK(contains(r.output, "audit    hash chain intact"));
  CHECK(contains(r.output, "summary"));
  CHECK(contains(r.output, "demo finished"));
  // The gateway part: every call answered as expected, with its curl equivalent.
  CHECK(contains(r.output, "gateway  http://127.0.0.1:"));
  CHECK(contains(r.output, "$ curl -s http://127.0.0.1:"));
  CHECK(contains(r.output, "/api/v1/openapi.json\n    200 OpenAPI 3.1"));
  CHECK(contains(r.output, "/api/v1/permits/BP-2026-DEMO\n    200 {\"permit\":"));
  CHECK(contains(r.output, "/api/v1/legacy/permits/BP-2019-00042\n    200 "));
  CHECK_FALSE(contains(r.output, "    expected "));
  // The MDM part: the property file matched by roll number and by address, and a golden record
  // with each attribute's value, source, record and time.
  CHECK(contains(r.output, "mdm      a small MPAC file matched against"));
  CHECK(contains(r.output, "5 candidate pairs (roll_number 4, postal_code & civic(address) 1"));
  CHECK(contains(r.output, "linked 4 by roll number, 1 by address; 1 new property"));
  CHECK(contains(r.output,
                 "0614013004006670000 '123 MAIN ST' has no roll number in the tax "
                 "system: linked to P-"));
  CHECK(contains(r.output, "each attribute with its provenance"));
  auto line_of = [&](std::string_view start) {
    auto at = r.output.find(start);
    if (at == std::string::npos) return std::string();
    return r.output.substr(at, r.output.find('\n', at) - at);
  };
  const std::string assessed = line_of("           assessed_value ");
  CHECK(contains(assessed, " 472000 "));
  CHECK(contains(assessed, " mpac "));
  CHECK(contains(assessed, " 0614013004006670000 "));
  CHECK(contains(assessed, " 2026-01-15T00:00:00"));
  const std::string mailing = line_of("           mailing_address ");
  CHECK(contains(mailing, " PO BOX 88 STN A OTTAWA ON  K1N 5A1 "));
  CHECK(contains(mailing, " tax "));
  CHECK(contains(mailing, " TX-1003 "));
  CHECK(contains(mailing, " 2026-03-01T00:00:00"));
  CHECK(contains(r.output, "11 golden-record versions announced on mdm.golden_record.updated"));
  CHECK_FALSE(contains(r.output, "UNEXPECTED"));
}

TEST_CASE("cli: serve starts and stops cleanly on SIGTERM") {
  Config config;
  std::string log = config.dir.file("serve.log");
  auto child = testing::ChildProcess::start({kCli, "serve", "--config", config.path}, log);
  REQUIRE(child.has_value());
  bool serving =
      testing::wait_until([&] { return contains(testing::read_file(log), "serving"); }, 20s);
  INFO(testing::read_file(log));
  REQUIRE(serving);
  CHECK(contains(testing::read_file(log), "node 'cli-test' serving 2 topics"));

  // While it runs, the data directory is locked against a second writer.
  auto locked = cli({"publish", "--config", config.path, "--type", "permit.issued", "--source",
                     "/permits", "--data", R"({"permit_id":"BP-1"})"});
  CHECK(locked.exit_code == 1);
  CHECK(contains(locked.output, "is in use by another civicbus node"));

  child->kill_now(SIGTERM);
  auto code = child->wait_for(20s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  std::string output = testing::read_file(log);
  INFO(output);
  CHECK(contains(output, "stop requested by signal"));
  CHECK(contains(output, "node 'cli-test' stopped"));
}

TEST_CASE("cli: publish then tail shows the event, PII redacted") {
  Config config;
  auto published = cli({"publish", "--config", config.path, "--type", "permit.issued", "--source",
                        "/permits/portal", "--id", "permit-42", "--subject", "BP-2026-0042",
                        "--data", R"({"permit_id":"BP-2026-0042","valuation":125000})"});
  INFO(published.output);
  REQUIRE(published.exit_code == 0);
  CHECK(contains(published.output, "stored permit.issued offset="));
  CHECK(contains(published.output, "id=permit-42"));

  auto again =
      cli({"publish", "--config", config.path, "--type", "permit.issued", "--source",
           "/permits/portal", "--id", "permit-42", "--data", R"({"permit_id":"BP-2026-0042"})"});
  CHECK(again.exit_code == 0);
  CHECK(contains(again.output, "duplicate permit.issued offset="));

  auto pii =
      cli({"publish", "--config", config.path, "--event",
           R"({"specversion":"1.0","id":"a-1","source":"/tax","type":"property.assessment.updated",
                      "data":{"roll_number":"1101-000-000-00001","owner_name":"Marie Tremblay"}})"});
  INFO(pii.output);
  REQUIRE(pii.exit_code == 0);

  auto tail = cli({"tail", "--config", config.path});
  INFO(tail.output);
  REQUIRE(tail.exit_code == 0);
  CHECK(contains(tail.output, "BP-2026-0042"));
  CHECK(contains(tail.output, R"("owner_name":"[redacted]")"));
  CHECK_FALSE(contains(tail.output, "Marie Tremblay"));

  // Each line is a JSON record with offset, topic and the event.
  std::size_t lines = 0;
  std::size_t start = 0;
  while (start < tail.output.size()) {
    std::size_t end = tail.output.find('\n', start);
    if (end == std::string::npos) end = tail.output.size();
    std::string line = tail.output.substr(start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    auto doc = Json::parse(line);
    REQUIRE_MESSAGE(doc.ok(), line);
    CHECK(doc->get_int("offset") > 0);
    CHECK(doc->find("event") != nullptr);
    ++lines;
  }
  CHECK(lines == 2);

  auto filtered = cli({"tail", "--config", config.path, "--topic", "permit.*", "--events-only"});
  REQUIRE(filtered.exit_code == 0);
  auto event = Json::parse(filtered.output.substr(0, filtered.output.find('\n')));
  REQUIRE(event.ok());
  CHECK(event->get_string("type") == "permit.issued");
  CHECK(event->get_string("subject") == "BP-2026-0042");

  auto from = cli({"tail", "--config", config.path, "--from", "1", "--limit", "1"});
  CHECK(from.exit_code == 0);
  CHECK(contains(from.output, "permit-42"));
  CHECK_FALSE(contains(from.output, "a-1"));

  auto topics = cli({"topics", "--config", config.path});
  INFO(topics.output);
  CHECK(topics.exit_code == 0);
  CHECK(contains(topics.output, "TOPIC"));
  CHECK(contains(topics.output, "permits-team"));
  CHECK(contains(topics.output, "30d"));
  CHECK(contains(topics.output, "/owner_name"));

  auto topics_json = cli({"topics", "--data-dir", config.dir.file("data"), "--json"});
  REQUIRE(topics_json.exit_code == 0);
  auto array = Json::parse(topics_json.output);
  REQUIRE_MESSAGE(array.ok(), topics_json.output);
  CHECK(array->size() == 2);
}

TEST_CASE("cli: publish --file reports each line") {
  Config config;
  testing::write_file(
      config.dir.file("events.ndjson"),
      R"({"specversion":"1.0","id":"1","source":"/p","type":"permit.issued","data":{"permit_id":"A"}}
{"specversion":"1.0","id":"2","source":"/p","type":"permit.issued","data":{"permit_id":"B"}}

{"specversion":"1.0","id":"1","source":"/p","type":"permit.issued","data":{"permit_id":"A"}}
)");
  auto r = cli({"publish", "--config", config.path, "--file", config.dir.file("events.ndjson")});
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(contains(r.output, "line 1: stored permit.issued"));
  CHECK(contains(r.output, "line 2: stored permit.issued"));
  CHECK(contains(r.output, "line 4: duplicate permit.issued"));
  CHECK(contains(r.output, "2 stored, 1 duplicates, 0 refused"));

  auto stdin_run = cli(
      {"publish", "--config", config.path, "--file", "-"},
      R"({"specversion":"1.0","id":"3","source":"/p","type":"permit.issued","data":{"kind":"sign"}}
not json
)");
  INFO(stdin_run.output);
  CHECK(stdin_run.exit_code == 1);
  CHECK(contains(stdin_run.output, "line 1: refused: "));
  CHECK(contains(stdin_run.output, "line 2: refused: invalid CloudEvent"));
  CHECK(contains(stdin_run.output, "0 stored, 0 duplicates, 2 refused"));
}

TEST_CASE("cli: a publish the schema refuses exits 1 with the schema error") {
  Config config;
  auto r = cli({"publish", "--config", config.path, "--type", "permit.issued", "--source", "/p",
                "--data", R"({"valuation":"a lot"})"});
  INFO(r.output);
  CHECK(r.exit_code == 1);
  CHECK(contains(r.output, "civicbus: error: publish refused: "));
  CHECK(contains(r.output, "permit_id"));

  auto unknown_topic = cli({"publish", "--config", config.path, "--type", "no.such.topic",
                            "--source", "/p", "--data", "{}"});
  CHECK(unknown_topic.exit_code == 1);
  CHECK(contains(unknown_topic.output, "no.such.topic"));

  auto bad_json = cli({"publish", "--config", config.path, "--type", "permit.issued", "--source",
                       "/p", "--data", "{oops"});
  CHECK(bad_json.exit_code == 2);
  CHECK(contains(bad_json.output, "--data is not valid JSON"));

  auto modes =
      cli({"publish", "--config", config.path, "--type", "permit.issued", "--event", "{}"});
  CHECK(modes.exit_code == 2);
}

TEST_CASE("cli: audit verify, asyncapi and the dlq on a fresh node") {
  Config config;
  REQUIRE(cli({"publish", "--config", config.path, "--type", "permit.issued", "--source", "/p",
               "--data", R"({"permit_id":"BP-1"})"})
              .exit_code == 0);
  auto audit = cli({"audit", "verify", "--config", config.path});
  INFO(audit.output);
  CHECK(audit.exit_code == 0);
  CHECK(contains(audit.output, "audit log intact"));

  auto records = cli({"audit", "list", "--config", config.path, "--limit", "5"});
  CHECK(records.exit_code == 0);
  CHECK(contains(records.output, "topic.created"));

  auto asyncapi = cli({"asyncapi", "--config", config.path});
  REQUIRE(asyncapi.exit_code == 0);
  auto doc = Json::parse(asyncapi.output);
  REQUIRE_MESSAGE(doc.ok(), asyncapi.output);
  CHECK(contains(asyncapi.output, "permit.issued"));

  auto dlq = cli({"dlq", "list", "--config", config.path});
  CHECK(dlq.exit_code == 0);
  CHECK(contains(dlq.output, "no dead letters match"));

  auto replay_all = cli({"dlq", "replay", "--config", config.path});
  CHECK(replay_all.exit_code == 2);
  CHECK(contains(replay_all.output, "give a filter"));

  auto replay = cli({"dlq", "replay", "--config", config.path, "--group", "gis", "--since", "2h"});
  CHECK(replay.exit_code == 0);
  CHECK(contains(replay.output, "queued 0 dead letters for replay to group gis"));

  auto bad_since = cli({"dlq", "list", "--config", config.path, "--since", "yesterday"});
  CHECK(bad_since.exit_code == 2);
  CHECK(contains(bad_since.output, "'yesterday' is neither an RFC 3339 time"));
}

TEST_CASE("cli: a bad configuration exits non-zero naming the file and line") {
  TempDir dir;
  std::string path = dir.file("node.yaml");
  testing::write_file(path,
                      "node: {name: x, data_dir: data}\ntopics:\n  - name: permit.issued\n"
                      "    owner: permits\n    retension: 7d\n");
  auto r = cli({"serve", "--config", path});
  CHECK(r.exit_code == 1);
  CHECK(contains(r.output,
                 path + ":5: unknown key 'retension' in topics[0] (did you mean 'retention'?)"));

  testing::write_file(path, "node: {name: x\ntopics: []\n");
  auto syntax = cli({"topics", "--config", path});
  CHECK(syntax.exit_code == 1);
  CHECK(contains(syntax.output, path + ":"));
  CHECK(contains(syntax.output, "YAML syntax error"));

  auto missing = cli({"serve", "--config", dir.file("absent.yaml")});
  CHECK(missing.exit_code == 1);
  CHECK(contains(missing.output, "absent.yaml' does not exist"));
}

}  // namespace
}  // namespace civicbus
