// The gateway from the command line: `civicbus openapi`, `serve` with a gateway section
// (SIGHUP reload), and the demo's curl commands, replayed against the running demo.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <signal.h>

#include <chrono>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/http/client.hpp"
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

std::string gateway_yaml(std::string_view extra_route = "") {
  return fmt::format(R"(node: {{name: gw-test, data_dir: data, worker_threads: 2}}
security: {{master_key_env: CIVICBUS_CLI_TEST_UNSET_KEY}}
logging: {{level: info}}
gateway:
  api_title: Test city API
  listener: {{bind_address: 127.0.0.1, port: 0}}
  upstreams:
    - {{name: permits, targets: ["127.0.0.1:9"]}}
  routes:
    - id: permit
      method: GET
      match: template
      path: /api/v1/permits/{{id}}
      upstream: permits
      auth: [api_key]
      summary: One permit
      tags: [permits]
{}
  consumers:
    - {{id: ops, groups: [admin], api_keys: [ops-key-0123456789abcdef]}}
)",
                     extra_route);
}

TEST_CASE("cli: openapi prints the configured gateway's OpenAPI document") {
  TempDir dir;
  const std::string config = dir.file("node.yaml");
  testing::write_file(config, gateway_yaml());

  auto r = cli({"openapi", "--config", config});
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  auto doc = Json::parse(r.output);
  REQUIRE_MESSAGE(doc.ok(), doc.status().to_string());
  CHECK(doc->get_string("openapi").starts_with("3.1"));
  CHECK(doc->at_pointer("/info/title")->as_string() == "Test city API");
  const Json* paths = doc->find("paths");
  REQUIRE(paths != nullptr);
  CHECK(paths->find("/api/v1/permits/{id}") != nullptr);
  CHECK(paths->find("/api/v1/openapi.json") != nullptr);
  CHECK(paths->find("/api/v1/gateway/consumers") != nullptr);
  // Nothing listened and the data directory was not created.
  CHECK_FALSE(std::filesystem::exists(dir.file("data")));

  auto builtin = cli({"openapi"});
  REQUIRE(builtin.exit_code == 0);
  auto builtin_doc = Json::parse(builtin.output);
  REQUIRE(builtin_doc.ok());
  CHECK(builtin_doc->at_pointer("/paths/~1api~1v1~1openapi.json") != nullptr);

  testing::write_file(dir.file("plain.yaml"), "node: {name: plain}\n");
  auto plain = cli({"openapi", "--config", dir.file("plain.yaml")});
  CHECK(plain.exit_code == 1);
  CHECK(contains(plain.output, "has no enabled 'gateway' section"));

  testing::write_file(dir.file("bad.yaml"), "gateway:\n  routes:\n    - {id: a, pth: /a}\n");
  auto bad = cli({"openapi", "--config", dir.file("bad.yaml")});
  CHECK(bad.exit_code == 1);
  CHECK(contains(bad.output,
                 "bad.yaml:3: unknown key 'pth' in gateway.routes[0] (did you mean "
                 "'path'?)"));

  CHECK(contains(cli({"help"}).output, "openapi"));
}

// The port in "civicbus: gateway listening on http://127.0.0.1:PORT ...", or 0.
int listening_port(const std::string& log) {
  std::smatch m;
  static const std::regex kListening(R"(gateway listening on http://127\.0\.0\.1:(\d+))");
  if (!std::regex_search(log, m, kListening)) return 0;
  return std::stoi(m[1].str());
}

bool serves_path(int port, std::string_view path) {
  auto client = http::HttpClient::create();
  if (!client.ok()) return false;
  http::HttpRequest request;
  request.method = "GET";
  request.target = "/api/v1/openapi.json";
  auto r = (*client)->send(fmt::format("127.0.0.1:{}", port), std::move(request));
  if (!r.ok() || r->status != 200) return false;
  auto doc = Json::parse(r->body);
  return doc.ok() && doc->find("paths") != nullptr && doc->find("paths")->find(path) != nullptr;
}

TEST_CASE("cli: serve runs the gateway and reloads it on SIGHUP") {
  TempDir dir;
  const std::string config = dir.file("node.yaml");
  testing::write_file(config, gateway_yaml());
  const std::string log = dir.file("serve.log");
  auto child = testing::ChildProcess::start({kCli, "serve", "--config", config}, log);
  REQUIRE(child.has_value());
  REQUIRE(
      testing::wait_until([&] { return contains(testing::read_file(log), "node running"); }, 20s));
  const int port = listening_port(testing::read_file(log));
  INFO(testing::read_file(log));
  REQUIRE(port > 0);
  CHECK(serves_path(port, "/api/v1/permits/{id}"));
  CHECK_FALSE(serves_path(port, "/api/v1/parcels"));

  testing::write_file(config, gateway_yaml("    - {id: parcels, path: /api/v1/parcels, upstream: "
                                           "permits}"));
  child->kill_now(SIGHUP);
  CHECK(testing::wait_until([&] { return serves_path(port, "/api/v1/parcels"); }, 10s));

  // A file that does not load is logged; the running configuration stays.
  testing::write_file(config, gateway_yaml("    - {id: parcels, path: /api/v1/parcels, upstream: "
                                           "parcels}"));
  child->kill_now(SIGHUP);
  CHECK(testing::wait_until(
      [&] { return contains(testing::read_file(log), "gateway configuration not reloaded"); },
      10s));
  CHECK(contains(testing::read_file(log), "no upstream 'parcels'"));
  CHECK(serves_path(port, "/api/v1/parcels"));

  child->kill_now(SIGTERM);
  auto code = child->wait_for(20s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}

struct CurlCall {
  std::string line;
  std::string api_key;
  std::string host_port;
  std::string target;
  int printed_status = 0;
};

// The "$ curl -s [-H 'X-API-Key: K'] [']http://HOST:PORT/PATH[']" lines of the demo's output,
// each with the status printed under it.
std::vector<CurlCall> curl_calls(const std::string& output) {
  static const std::regex kCurl(
      R"(^\s*\$ curl -s (?:-H 'X-API-Key: ([^']+)' )?'?http://([0-9.]+:\d+)(/[^'\s]*)'?$)");
  static const std::regex kStatus(R"(^\s+(\d{3}) )");
  std::vector<CurlCall> calls;
  std::istringstream in(output);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, kCurl)) {
      calls.push_back({line, m[1].str(), m[2].str(), m[3].str(), 0});
    } else if (!calls.empty() && calls.back().printed_status == 0 &&
               std::regex_search(line, m, kStatus)) {
      calls.back().printed_status = std::stoi(m[1].str());
    }
  }
  return calls;
}

TEST_CASE("cli: the demo's curl commands work against the running demo (--serve)") {
  TempDir dir;
  const std::string log = dir.file("demo.log");
  auto child = testing::ChildProcess::start(
      {kCli, "demo", "--duration", "1s", "--rate", "100", "--serve"}, log);
  REQUIRE(child.has_value());
  bool serving = testing::wait_until(
      [&] { return contains(testing::read_file(log), "serving the gateway"); }, 60s);
  const std::string output = testing::read_file(log);
  INFO(output);
  REQUIRE(serving);
  CHECK(contains(output, "demo finished"));

  std::vector<CurlCall> calls = curl_calls(output);
  REQUIRE(calls.size() >= 5);
  auto client = http::HttpClient::create();
  REQUIRE(client.ok());
  bool saw_in_process = false, saw_proxied = false, saw_admin = false;
  for (const CurlCall& call : calls) {
    CAPTURE(call.line);
    http::HttpRequest request;
    request.method = "GET";
    request.target = call.target;
    if (!call.api_key.empty()) request.headers.add("X-API-Key", call.api_key);
    auto response = (*client)->send(call.host_port, std::move(request));
    REQUIRE_MESSAGE(response.ok(), response.status().to_string());
    CHECK(response->status == call.printed_status);
    if (response->status != 200) continue;
    saw_in_process = saw_in_process || (call.target.starts_with("/api/v1/permits/") &&
                                        contains(response->body, "\"permit_id\""));
    saw_proxied = saw_proxied || contains(response->body, "permits-legacy");
    saw_admin = saw_admin || call.target == "/api/v1/gateway/consumers";
  }
  CHECK(saw_in_process);
  CHECK(saw_proxied);
  CHECK(saw_admin);

  child->kill_now(SIGINT);
  auto code = child->wait_for(30s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
}

}  // namespace
}  // namespace civicbus
