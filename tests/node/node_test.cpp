#include "civicbus/node/node.hpp"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "civicbus/broker/broker.hpp"
#include "civicbus/transport/transport.hpp"
#include "support/test_support.hpp"

namespace civicbus {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

// Errors of a YAML text, or "" when it loads.
std::string yaml_error(std::string_view text, std::string_view origin = "node.yaml") {
  auto r = NodeOptions::from_yaml(text, origin);
  return r.ok() ? std::string() : r.status().message();
}

// Options for a node in `dir` that neither reads the developer's environment nor logs.
NodeOptions quiet_options(const TempDir& dir) {
  NodeOptions o;
  o.data_dir = dir.file("data");
  o.worker_threads = 2;
  o.master_key_env = "CIVICBUS_NODE_TEST_UNSET_KEY";
  o.logging.level = LogLevel::kError;
  o.logging.sink = [](std::string_view) {};
  return o;
}

broker::TopicOptions topic(std::string name, std::string owner = "test-team") {
  broker::TopicOptions t;
  t.name = std::move(name);
  t.owner = std::move(owner);
  return t;
}

std::unique_ptr<Node> must_create(NodeOptions o) {
  auto node = Node::create(std::move(o));
  REQUIRE_MESSAGE(node.ok(), node.status().to_string());
  return std::move(node).value();
}

// --- durations and sizes -------------------------------------------------------------------

TEST_CASE("node config: durations") {
  CHECK(parse_duration("0").value() == 0ms);
  CHECK(parse_duration("30s").value() == 30s);
  CHECK(parse_duration("15m").value() == 15min);
  CHECK(parse_duration("12h").value() == 12h);
  CHECK(parse_duration("7d").value() == std::chrono::hours(24 * 7));
  CHECK(parse_duration("2w").value() == std::chrono::hours(24 * 14));
  CHECK(parse_duration("250ms").value() == 250ms);
  CHECK(parse_duration("1h30m").value() == 90min);
  CHECK(parse_duration(" 5s ").value() == 5s);
  for (const char* bad : {"", "7", "7 days", "7days", "-1s", "1.5h", "s", "10y", "1h30", "0s5"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_duration(bad).ok());
  }
  CHECK_FALSE(parse_duration("99999999999999999999s").ok());
  CHECK(format_duration(0ms) == "0");
  CHECK(format_duration(std::chrono::hours(24 * 7)) == "7d");
  CHECK(format_duration(90min) == "90m");
  CHECK(format_duration(1500ms) == "1500ms");
}

TEST_CASE("node config: sizes") {
  CHECK(parse_size("512").value() == 512);
  CHECK(parse_size("512B").value() == 512);
  CHECK(parse_size("10KiB").value() == 10 * 1024);
  CHECK(parse_size("5MiB").value() == 5 * 1024 * 1024);
  CHECK(parse_size("1GiB").value() == std::int64_t{1} << 30);
  CHECK(parse_size("2TiB").value() == std::int64_t{2} << 40);
  CHECK(parse_size("5MB").value() == 5'000'000);
  CHECK(parse_size("1gib").value() == std::int64_t{1} << 30);
  for (const char* bad : {"", "GiB", "1.5GiB", "-1", "10 apples", "1PiB"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_size(bad).ok());
  }
  CHECK_FALSE(parse_size("9999999999TiB").ok());
  CHECK(format_size(std::int64_t{1} << 30) == "1GiB");
  CHECK(format_size(1500) == "1500B");
}

// --- YAML ------------------------------------------------------------------------------------

constexpr std::string_view kFullYaml =
    R"(node: {name: tax-node, data_dir: ./data, worker_threads: 4}
logging: {level: debug, format: json}
security: {master_key_env: TAX_KEY, master_key_file: ./master.key, master_key: generate}
log: {synchronous: normal, dedup_window_hours: 48, max_batch: 1024, cache_bytes: 4MiB}
broker: {max_event_bytes: 2MiB, dlq_retention_days: 14, maintenance_interval: 250ms}
topics:
  - name: property.assessment.updated
    owner: assessment-team
    description: A property's assessed value changed
    retention: 7d
    retention_bytes: 1GiB
    sensitivity: confidential
    pii_fields: [/owner_name, /owner_email]
    schema_subject: property.assessment
  - name: permit.issued
    owner: permits-team
    retention: 0
)";

TEST_CASE("node config: a full file fills every option") {
  auto r = NodeOptions::from_yaml(kFullYaml);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  const NodeOptions& o = *r;
  CHECK(o.name == "tax-node");
  CHECK(o.data_dir == "./data");  // from_yaml leaves relative paths alone
  CHECK(o.worker_threads == 4);
  CHECK(o.logging.level == LogLevel::kDebug);
  CHECK(o.logging.format == LogFormat::kJson);
  CHECK(o.master_key_env == "TAX_KEY");
  CHECK(o.master_key_file == "./master.key");
  CHECK(o.generate_master_key);
  CHECK_FALSE(o.log.synchronous_full);
  CHECK(o.log.dedup_window == std::chrono::hours(48));
  CHECK(o.log.max_batch == 1024);
  CHECK(o.log.cache_bytes == 4u << 20);
  CHECK(o.broker.max_event_bytes == 2u << 20);
  CHECK(o.broker.dlq_retention == std::chrono::hours(24 * 14));
  CHECK(o.broker.maintenance_interval == 250ms);
  REQUIRE(o.topics.size() == 2);
  const auto& t = o.topics[0];
  CHECK(t.name == "property.assessment.updated");
  CHECK(t.owner == "assessment-team");
  CHECK(t.description == "A property's assessed value changed");
  CHECK(t.retention == std::chrono::hours(24 * 7));
  CHECK(t.retention_bytes == std::int64_t{1} << 30);
  CHECK(t.sensitivity == broker::Sensitivity::kConfidential);
  CHECK(t.pii_fields == std::vector<std::string>{"/owner_name", "/owner_email"});
  CHECK(t.schema_subject == "property.assessment");
  CHECK(o.topics[1].retention == 0s);
  CHECK(o.topics[1].sensitivity == broker::Sensitivity::kInternal);
}

TEST_CASE("node config: an empty file gives the defaults") {
  auto r = NodeOptions::from_yaml("");
  REQUIRE(r.ok());
  CHECK(r->name == "civicbus");
  CHECK(r->data_dir == "./civicbus-data");
  CHECK(r->topics.empty());
  CHECK(NodeOptions::from_yaml("# only a comment\n").ok());
}

TEST_CASE("node config: errors name the file, the line and what is wrong") {
  CHECK(yaml_error("topics:\n  - name: permit.issued\n    owner: permits\n    retension: 7d\n") ==
        "node.yaml:4: unknown key 'retension' in topics[0] (did you mean 'retention'?)");
  CHECK(yaml_error("topics:\n  - name: a.b\n    owner: x\n  - name: permit.issued\n    owner: p\n"
                   "    sensitivity: secret\n") ==
        "node.yaml:6: 'sensitivity' must be one of public, internal, confidential, restricted; "
        "got 'secret'");
  CHECK(yaml_error("topics:\n  - name: permit.issued\n    owner: a\n  - name: permit.issued\n"
                   "    owner: b\n") ==
        "node.yaml:4: duplicate topic 'permit.issued' in topics[1] (first defined at line 2)");
  CHECK(yaml_error("topics:\n  - name: permit.issued\n    owner: a\n    retention: 7 days\n") ==
        "node.yaml:4: 'retention' must be a duration like 30s, 15m, 12h, 7d or 0; got '7 days'");
  CHECK(yaml_error("topics:\n  - name: permit.issued\n    description: no owner here\n") ==
        "node.yaml:2: topic 'permit.issued' (topics[0]) has no 'owner'; every topic needs an owner "
        "who answers for it");
  CHECK(yaml_error("topics:\n  - owner: a\n") == "node.yaml:2: topics[0] has no 'name'");
  CHECK(yaml_error("topics:\n  - name: retention_bytes: 5\n")
            .find("node.yaml:2: YAML syntax error") == 0);

  std::string bad_name = yaml_error("topics:\n  - name: Permit Issued\n    owner: a\n");
  CHECK(bad_name.find("node.yaml:2: invalid topic name 'Permit Issued' in topics[0]: ") == 0);

  CHECK(yaml_error("topics:\n  - name: a.b\n    owner: x\n    retention_bytes: lots\n") ==
        "node.yaml:4: 'retention_bytes' must be a size like 512, 10KiB, 5MiB or 1GiB; got 'lots'");
  CHECK(yaml_error("topics:\n  - name: a.b\n    owner: x\n    pii_fields: [owner_name]\n") ==
        "node.yaml:4: 'pii_fields' entries must be JSON pointers into the event data like "
        "/owner_name; got 'owner_name'");
  CHECK(yaml_error("topics:\n  - name: a.b\n    owner: x\n    pii_fields: /owner_name\n") ==
        "node.yaml:4: 'pii_fields' must be a list, e.g. [a, b]");
  CHECK(yaml_error("topics: {name: a.b}\n").find("node.yaml:1: 'topics' must be a list") == 0);
}

TEST_CASE("node config: section and value errors") {
  CHECK(yaml_error("topcs: []\n") ==
        "node.yaml:1: unknown top-level key 'topcs' (did you mean 'topics'?); expected one of "
        "node, logging, security, log, broker, topics, schemas, gateway, webhooks, fleet, "
        "connectors");
  CHECK(yaml_error("node:\n  name: x\n  worker_threads: four\n") ==
        "node.yaml:3: 'worker_threads' must be a whole number; got 'four'");
  CHECK(yaml_error("node:\n  worker_threads: 1000\n") ==
        "node.yaml:2: 'worker_threads' must be between 0 and 256; got 1000");
  CHECK(yaml_error("logging: {level: loud}\n") ==
        "node.yaml:1: 'level' must be one of trace, debug, info, warn, error, off; got 'loud'");
  CHECK(yaml_error("logging:\n  levl: info\n") ==
        "node.yaml:2: unknown key 'levl' in logging (did you mean 'level'?)");
  CHECK(yaml_error("log: {synchronous: sometimes}\n") ==
        "node.yaml:1: 'synchronous' must be one of full, normal; got 'sometimes'");
  CHECK(yaml_error("log:\n  dedup_window_hours: 1\n") ==
        "node.yaml:2: 'dedup_window_hours' must be between 24 and 8784; got 1");
  CHECK(yaml_error("broker:\n  max_event_bytes: 12\n") ==
        "node.yaml:2: 'max_event_bytes' must be between 1KiB and 256MiB; got 12B");
  CHECK(yaml_error("security: {master_key: maybe}\n") ==
        "node.yaml:1: 'master_key' must be one of load, generate; got 'maybe'");
  CHECK(yaml_error("node: [a, b]\n") ==
        "node.yaml:1: 'node' must be a mapping of keys (name, data_dir, worker_threads)");
  CHECK(yaml_error("node:\n  name: a\n  name: b\n") ==
        "node.yaml:3: key 'name' appears twice in node (first at line 2)");
  CHECK(yaml_error("- just\n- a list\n").find("node.yaml:1: the configuration must be a mapping") ==
        0);
  CHECK(yaml_error("node: {name: [x]}\n") == "node.yaml:1: 'name' must be a text value");
  std::string unterminated = yaml_error("node: {name: \"unterminated}\n");
  CHECK(unterminated.find("node.yaml:") == 0);
  CHECK(unterminated.find(": YAML syntax error: ") != std::string::npos);
  CHECK(yaml_error("node: {name: x}\nnode: {name: y}\n") ==
        "node.yaml:2: key 'node' appears twice at the top level (first at line 1)");
}

TEST_CASE("node config: schemas") {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "conf" / "schemas");
  testing::write_file(dir.file("conf/schemas/assessment.json"), R"({"type": "object"})");
  testing::write_file(dir.file("conf/node.yaml"),
                      "node: {data_dir: data}\n"
                      "security: {master_key_file: keys/master.key}\n"
                      "schemas:\n"
                      "  - {subject: property.assessment, file: schemas/assessment.json, "
                      "compatibility: FULL_TRANSITIVE}\n");
  auto r = NodeOptions::from_file(dir.file("conf/node.yaml"));
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  // Relative paths are taken from the configuration file's directory.
  CHECK(r->data_dir == dir.file("conf/data"));
  CHECK(r->master_key_file == dir.file("conf/keys/master.key"));
  REQUIRE(r->schemas.size() == 1);
  CHECK(r->schemas[0].subject == "property.assessment");
  CHECK(r->schemas[0].path == dir.file("conf/schemas/assessment.json"));
  CHECK(r->schemas[0].compatibility == "FULL_TRANSITIVE");

  std::string origin = dir.file("conf/node.yaml");
  testing::write_file(origin, "schemas:\n  - subject: a\n    file: missing.json\n");
  auto missing = NodeOptions::from_file(origin);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message() ==
        origin + ":3: schema file 'missing.json' for subject 'a' not found (looked at " +
            dir.file("conf/missing.json") + ")");

  testing::write_file(origin,
                      "schemas:\n  - subject: a\n    file: schemas/assessment.json\n"
                      "    compatibility: SIDEWAYS\n");
  auto bad = NodeOptions::from_file(origin);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find(origin + ":4: 'compatibility' must be one of BACKWARD") == 0);

  testing::write_file(origin,
                      "schemas:\n  - {subject: a, file: schemas/assessment.json}\n"
                      "  - {subject: a, file: schemas/assessment.json}\n");
  auto dup = NodeOptions::from_file(origin);
  REQUIRE_FALSE(dup.ok());
  CHECK(dup.status().message() ==
        origin + ":3: duplicate schema subject 'a' in schemas[1] (first defined at line 2)");

  auto absent = NodeOptions::from_file(dir.file("nope.yaml"));
  REQUIRE_FALSE(absent.ok());
  CHECK(absent.status().code() == ErrorCode::kNotFound);
  CHECK(absent.status().message() ==
        "configuration file '" + dir.file("nope.yaml") + "' does not exist");
}

TEST_CASE("node config: validate() checks options built in code") {
  NodeOptions o;
  CHECK(o.validate().ok());
  o.topics.push_back(topic("permit.issued", ""));
  CHECK(o.validate().message() == "topic 'permit.issued' has no owner; every topic needs one");
  o.topics[0].owner = "permits";
  o.topics.push_back(topic("permit.issued"));
  CHECK(o.validate().message() == "duplicate topic 'permit.issued' (topics[1])");
  o.topics.pop_back();
  o.topics[0].pii_fields = {"/a", "/a"};
  CHECK(o.validate().message() == "topic 'permit.issued': PII field '/a' is listed twice");
  o.topics[0].pii_fields.clear();
  o.log.dedup_window = std::chrono::hours(1);
  CHECK_FALSE(o.validate().ok());
  o.log.dedup_window = std::chrono::hours(24);
  o.schemas.push_back({"s", "s.json", "SIDEWAYS"});
  CHECK(o.validate().message() == "schema 's': unknown compatibility 'SIDEWAYS'");
  o.schemas[0].compatibility = "backward";
  CHECK(o.validate().ok());
}

// --- the node --------------------------------------------------------------------------------

TEST_CASE("node: publish and subscribe through a node, and restart keeps the data") {
  TempDir dir;
  NodeOptions options = quiet_options(dir);
  options.topics.push_back(topic("permit.issued", "permits-team"));
  {
    auto node = must_create(options);
    CHECK(std::filesystem::exists(dir.file("data/civicbus.db")));
    CHECK(std::filesystem::exists(dir.file("data/log.db")));
    CHECK(node->options().log.path == dir.file("data/log.db"));
    CHECK(node->options().master_key_file == dir.file("data/master.key"));
    CHECK(node->executor().thread_count() == 2);
    auto info = node->broker().topic("permit.issued");
    REQUIRE(info.ok());
    CHECK(info->options.owner == "permits-team");

    std::mutex mu;
    std::vector<std::string> seen;
    broker::ConsumerGroupOptions group;
    group.group = "gis";
    group.topics = {"permit.*"};
    group.start_from = broker::StartFrom::kEarliest;
    auto sub = node->broker().subscribe(group, [&](const broker::DeliveredEvent& ev) {
      std::lock_guard lock(mu);
      seen.push_back(ev.event.subject());
      return Status();
    });
    REQUIRE_MESSAGE(sub.ok(), sub.status().to_string());
    for (int i = 0; i < 3; ++i) {
      broker::CloudEvent ev("permit.issued", "/permits", Json::object({{"n", i}}));
      ev.set_subject("BP-" + std::to_string(i));
      auto ack = node->broker().publish(std::move(ev));
      REQUIRE_MESSAGE(ack.ok(), ack.status().to_string());
      CHECK(ack->offset > 0);
    }
    CHECK(testing::wait_until([&] {
      std::lock_guard lock(mu);
      return seen.size() == 3;
    }));
    std::lock_guard lock(mu);
    CHECK(seen == std::vector<std::string>{"BP-0", "BP-1", "BP-2"});
  }
  auto node = must_create(options);
  auto info = node->broker().topic("permit.issued");
  REQUIRE(info.ok());
  CHECK(info->records == 3);
  auto events = node->broker().read("permit.issued", 0, 10);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 3);
  CHECK(events->back().event.subject() == "BP-2");
  // The group's offset survived too: nothing is left to deliver.
  auto groups = node->broker().groups();
  REQUIRE(groups.ok());
  REQUIRE(groups->size() == 1);
  CHECK(groups->front().group == "gis");
  CHECK(groups->front().lag_events == 0);
}

TEST_CASE("node: one node per data directory") {
  TempDir dir;
  auto first = must_create(quiet_options(dir));
  auto second = Node::create(quiet_options(dir));
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == ErrorCode::kFailedPrecondition);
  CHECK(second.status().message().find("data directory '" + dir.file("data") +
                                       "' is in use by another civicbus node") == 0);
  first.reset();
  CHECK(Node::create(quiet_options(dir)).ok());
}

TEST_CASE("node: master key sources") {
  TempDir dir;
  NodeOptions options = quiet_options(dir);
  broker::TopicOptions pii = topic("property.assessment.updated", "assessment-team");
  pii.pii_fields = {"/owner_name"};
  options.topics.push_back(pii);

  SUBCASE("a PII topic without a key refuses to start and says how to fix it") {
    auto node = Node::create(options);
    REQUIRE_FALSE(node.ok());
    CHECK(node.status().code() == ErrorCode::kFailedPrecondition);
    CHECK(node.status().message().find("topic 'property.assessment.updated' has PII fields but no "
                                       "master key is available") == 0);
  }
  SUBCASE("generate creates a private key file and later starts load it") {
    options.generate_master_key = true;
    {
      auto node = must_create(options);
      CHECK(node->options().broker.master_key.size() == 32);
    }
    struct stat st {};
    REQUIRE(::stat(dir.file("data/master.key").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    std::string first_key;
    {
      auto node = must_create(options);
      first_key = node->options().broker.master_key;
    }
    options.generate_master_key = false;
    auto node = must_create(options);
    CHECK(node->options().broker.master_key == first_key);

    broker::CloudEvent ev("property.assessment.updated", "/tax",
                          Json::object({{"owner_name", "Marie Tremblay"}}));
    REQUIRE(node->broker().publish(std::move(ev)).ok());
    auto events = node->broker().read(">", 0, 10);
    REQUIRE(events.ok());
    REQUIRE(events->size() == 1);
    CHECK(events->front().event.data().get_string("owner_name") == "[redacted]");
  }
  SUBCASE("a key given in code wins") {
    options.broker.master_key = std::string(32, 'k');
    auto node = must_create(options);
    CHECK_FALSE(std::filesystem::exists(dir.file("data/master.key")));
  }
  SUBCASE("without PII topics the node runs without a key") {
    options.topics.clear();
    auto node = must_create(options);
    CHECK(node->options().broker.master_key.empty());
  }
}

TEST_CASE("node: schemas from the configuration are registered once") {
  TempDir dir;
  testing::write_file(dir.file("permit.json"),
                      R"({"type": "object", "required": ["permit_id"],
                          "properties": {"permit_id": {"type": "string"}}})");
  NodeOptions options = quiet_options(dir);
  options.schemas.push_back({"permit", dir.file("permit.json"), "BACKWARD"});
  broker::TopicOptions t = topic("permit.issued");
  t.schema_subject = "permit";
  options.topics.push_back(t);
  {
    auto node = must_create(options);
    auto versions = node->broker().schema_versions("permit");
    REQUIRE(versions.ok());
    REQUIRE(versions->size() == 1);
    CHECK(versions->front().state == broker::SchemaState::kActive);
    auto refused = node->broker().publish(
        broker::CloudEvent("permit.issued", "/permits", Json::object({{"kind", "sign"}})));
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.status().message().find("permit_id") != std::string::npos);
    CHECK(node->broker()
              .publish(broker::CloudEvent("permit.issued", "/permits",
                                          Json::object({{"permit_id", "BP-1"}})))
              .ok());
  }
  auto audit_count = [](Node& node) {
    auto records = node.broker().audit_records(0, 100000);
    REQUIRE(records.ok());
    return records->size();
  };
  std::size_t before = 0;
  {
    auto node = must_create(options);
    before = audit_count(*node);
    auto versions = node->broker().schema_versions("permit");
    REQUIRE(versions.ok());
    CHECK(versions->size() == 1);
  }
  {
    // An unchanged configuration writes nothing new at start-up.
    auto node = must_create(options);
    CHECK(audit_count(*node) <= before + 2);  // the broker may audit published ranges at close
    auto report = node->broker().verify_audit();
    REQUIRE(report.ok());
    CHECK(report->intact);
  }
  // A changed file proposes version 2 (no groups wait for it, so it is active at once).
  testing::write_file(dir.file("permit.json"),
                      R"({"type": "object", "required": ["permit_id"],
                          "properties": {"permit_id": {"type": "string"}, "ward": {"type": "integer"}}})");
  auto node = must_create(options);
  auto versions = node->broker().schema_versions("permit");
  REQUIRE(versions.ok());
  CHECK(versions->size() == 2);

  testing::write_file(dir.file("broken.json"), "{not json");
  NodeOptions broken = quiet_options(dir);
  broken.data_dir = dir.file("other");
  broken.schemas.push_back({"broken", dir.file("broken.json"), ""});
  auto failed = Node::create(broken);
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.status().message().find("schema file '" + dir.file("broken.json") +
                                       "' (subject 'broken') is not valid JSON") == 0);
}

TEST_CASE("node: run() returns on stop() and on SIGTERM") {
  TempDir dir;
  auto node = must_create(quiet_options(dir));
  SUBCASE("stop from another thread") {
    std::thread stopper([&] {
      std::this_thread::sleep_for(50ms);
      node->stop();
      node->stop();  // idempotent
    });
    CHECK(node->run().ok());
    stopper.join();
    CHECK(node->stop_requested());
  }
  SUBCASE("stop before run") {
    node->stop();
    CHECK(node->run().ok());
  }
  SUBCASE("SIGTERM") {
    std::thread signaller([] {
      std::this_thread::sleep_for(100ms);
      ::kill(::getpid(), SIGTERM);
    });
    auto start = std::chrono::steady_clock::now();
    CHECK(node->run().ok());
    signaller.join();
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    // The previous disposition is back (doctest's own handler, or the default).
  }
}

TEST_CASE("node: invalid options are refused before anything is created") {
  TempDir dir;
  NodeOptions options = quiet_options(dir);
  options.topics.push_back(topic("Bad Name"));
  auto node = Node::create(options);
  REQUIRE_FALSE(node.ok());
  CHECK(node.status().code() == ErrorCode::kInvalidArgument);
  CHECK_FALSE(std::filesystem::exists(dir.file("data")));
}

TEST_CASE("node: logger, metrics and clock come from the node") {
  TempDir dir;
  NodeOptions options = quiet_options(dir);
  auto lines = std::make_shared<std::vector<std::string>>();
  auto mu = std::make_shared<std::mutex>();
  options.logging.level = LogLevel::kInfo;
  options.logging.sink = [lines, mu](std::string_view line) {
    std::lock_guard lock(*mu);
    lines->emplace_back(line);
  };
  ManualClock clock;
  {
    auto created = Node::create(options, &clock);
    REQUIRE(created.ok());
    auto& node = **created;
    CHECK(&node.clock() == &clock);
    node.logger("gateway").info("hello from a component");
    node.metrics().counter("civicbus_test_total", "a test counter").inc();
    CHECK(node.metrics().prometheus_text().find("civicbus_test_total") != std::string::npos);
    CHECK(library_version().size() > 0);
  }
  std::lock_guard lock(*mu);
  bool started = false, component = false;
  for (const auto& l : *lines) {
    if (l.find("node started") != std::string::npos) started = true;
    if (l.find("gateway") != std::string::npos &&
        l.find("hello from a component") != std::string::npos) {
      component = true;
    }
  }
  CHECK(started);
  CHECK(component);
}

}  // namespace
}  // namespace civicbus
