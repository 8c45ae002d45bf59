// `civicbus webhooks list|dlq|replay` against a data directory configured with a webhooks
// section.
#include <doctest/doctest.h>
#include <fmt/format.h>

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

using testing::run_command;
using testing::RunResult;
using testing::TempDir;

constexpr std::string_view kSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

std::string webhooks_yaml() {
  return fmt::format(R"(node: {{name: hooks-test, data_dir: data, worker_threads: 2}}
security: {{master_key_env: CIVICBUS_CLI_TEST_UNSET_KEY, master_key: generate}}
topics:
  - {{name: permit.issued, owner: permits}}
webhooks:
  subscriptions:
    - id: gis-vendor
      topics: [permit.*]
      url: http://127.0.0.1:9/hooks
      secret: {}
    - id: finance
      topics: [payment.>, permit.issued]
      url: http://127.0.0.1:9/finance
      secret: {}
)",
                     kSecret, kSecret);
}

TEST_CASE("cli: webhooks list shows the configured subscriptions and their state") {
  TempDir dir;
  const std::string config = dir.file("node.yaml");
  testing::write_file(config, webhooks_yaml());

  auto r = cli({"webhooks", "list", "--config", config});
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(contains(r.output, "ID"));
  CHECK(contains(r.output, "DEAD LETTERS"));
  CHECK(contains(r.output, "gis-vendor"));
  CHECK(contains(r.output, "http://127.0.0.1:9/hooks"));
  CHECK(contains(r.output, "payment.>,permit.issued"));
  CHECK(contains(r.output, "active"));
  CHECK(contains(r.output, "2 subscriptions"));
  CHECK_FALSE(contains(r.output, kSecret));

  auto json = cli({"webhooks", "list", "--config", config, "--json"});
  INFO(json.output);
  REQUIRE(json.exit_code == 0);
  int lines = 0;
  for (std::size_t start = 0; start < json.output.size();) {
    std::size_t end = json.output.find('\n', start);
    if (end == std::string::npos) end = json.output.size();
    auto line = Json::parse(json.output.substr(start, end - start));
    REQUIRE_MESSAGE(line.ok(), line.status().to_string());
    CHECK(line->get_string("state") == "active");
    CHECK(line->find("pending_retries") != nullptr);
    ++lines;
    start = end + 1;
  }
  CHECK(lines == 2);

  // The stored subscriptions are listed from the data directory alone too.
  auto by_dir = cli({"webhooks", "list", "--data-dir", dir.file("data")});
  INFO(by_dir.output);
  CHECK(by_dir.exit_code == 0);
  CHECK(contains(by_dir.output, "gis-vendor"));

  auto dlq = cli({"webhooks", "dlq", "--config", config, "gis-vendor"});
  INFO(dlq.output);
  CHECK(dlq.exit_code == 0);
  CHECK(contains(dlq.output, "webhook 'gis-vendor' has no dead letters"));

  auto replay = cli({"webhooks", "replay", "--config", config, "gis-vendor"});
  INFO(replay.output);
  CHECK(replay.exit_code == 0);
  CHECK(contains(replay.output, "0 dead letters of webhook 'gis-vendor' queued"));

  auto unknown = cli({"webhooks", "replay", "--config", config, "gis-vendr"});
  INFO(unknown.output);
  CHECK(unknown.exit_code == 1);
  CHECK(
      contains(unknown.output, "no webhook subscription 'gis-vendr' (did you mean 'gis-vendor'?)"));

  auto missing_id = cli({"webhooks", "dlq", "--config", config});
  CHECK(missing_id.exit_code == 2);
  CHECK(contains(missing_id.output, "give the subscription's ID"));
}

TEST_CASE("cli: webhooks list without subscriptions, and a bad webhooks section") {
  TempDir dir;
  const std::string config = dir.file("node.yaml");
  testing::write_file(config, R"(node: {name: hooks-test, data_dir: data, worker_threads: 2}
security: {master_key_env: CIVICBUS_CLI_TEST_UNSET_KEY, master_key: generate}
)");
  auto r = cli({"webhooks", "list", "--config", config});
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(contains(r.output, "no webhook subscriptions"));

  testing::write_file(config, R"(node: {name: hooks-test, data_dir: data}
webhooks:
  subscriptions:
    - {id: a, topics: [x.y], url: 'http://127.0.0.1:9/', secrte: x}
)");
  auto bad = cli({"webhooks", "list", "--config", config});
  INFO(bad.output);
  CHECK(bad.exit_code == 1);
  CHECK(contains(bad.output, "node.yaml:4: unknown key 'secrte'"));
  CHECK(contains(bad.output, "did you mean 'secret'?"));
}

}  // namespace
}  // namespace civicbus
