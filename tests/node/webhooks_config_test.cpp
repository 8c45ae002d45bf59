// The node's `webhooks:` YAML section, and the WebhookDispatcher a Node runs with it: opened on
// the node's broker, database and master key, configured subscriptions created, kept, rotated
// or replaced at start, events delivered signed to a receiver on loopback.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "civicbus/broker/broker.hpp"
#include "civicbus/gateway/webhooks.hpp"
#include "civicbus/http/server.hpp"
#include "civicbus/node/node.hpp"
#include "support/test_support.hpp"

namespace civicbus {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

// The Standard Webhooks example secret (24 bytes).
constexpr std::string_view kSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
constexpr std::string_view kOtherSecret = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

std::string yaml_error(std::string_view text) {
  auto r = NodeOptions::from_yaml(text, "node.yaml");
  return r.ok() ? std::string() : r.status().message();
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

TEST_CASE("node config: a webhooks section fills the dispatcher and subscription options") {
  ::setenv("CIVICBUS_TEST_WEBHOOK_SECRET", std::string(kSecret).c_str(), 1);
  auto loaded = NodeOptions::from_yaml(R"(webhooks:
  poll_interval: 100ms
  rotation_overlap: 48h
  user_agent: city-hooks/1
  retry_write_delay: 5ms
  retry_write_batch: 64
  subscriptions:
    - id: gis-vendor
      topics: [permit.*, "property.>"]
      event_types: [permit.issued]
      url: https://gis.vendor.example/hooks
      secret: ${CIVICBUS_TEST_WEBHOOK_SECRET}
      schedule: [0, 5s, 1m, 1h]
      jitter: 0.1
      attempt_timeout: 3s
      max_concurrent: 8
      pause: {after_failures: 3, cool_off: 30s, max_cool_off: 10m}
      tls: {ca_file: /etc/civicbus/vendor-ca.pem, server_name: gis.vendor.example}
      from_earliest: true
    - id: plain
      topics: payment.completed
      url: http://127.0.0.1:9/hooks
      secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
)");
  REQUIRE_MESSAGE(loaded.ok(), loaded.status().to_string());
  REQUIRE(loaded->webhooks.has_value());
  const NodeWebhooksOptions& w = *loaded->webhooks;
  CHECK(w.dispatcher.poll_interval == 100ms);
  CHECK(w.dispatcher.rotation_overlap == std::chrono::hours(48));
  CHECK(w.dispatcher.user_agent == "city-hooks/1");
  CHECK(w.dispatcher.retry_write_delay == 5ms);
  CHECK(w.dispatcher.retry_write_batch == 64);
  CHECK(w.dispatcher.master_key.empty());  // the node's, filled by Node::create()
  REQUIRE(w.subscriptions.size() == 2);
  const gateway::WebhookOptions& g = w.subscriptions[0];
  CHECK(g.id == "gis-vendor");
  CHECK(g.topics == std::vector<std::string>{"permit.*", "property.>"});
  CHECK(g.event_types == std::vector<std::string>{"permit.issued"});
  CHECK(g.url == "https://gis.vendor.example/hooks");
  CHECK(g.secret == kSecret);
  CHECK(g.schedule == std::vector<std::chrono::milliseconds>{0ms, 5s, 1min, 1h});
  CHECK(g.jitter == doctest::Approx(0.1));
  CHECK(g.attempt_timeout == 3s);
  CHECK(g.max_concurrent == 8);
  CHECK(g.pause.after_failures == 3);
  CHECK(g.pause.cool_off == 30s);
  CHECK(g.pause.max_cool_off == 10min);
  CHECK(g.tls.ca_file == "/etc/civicbus/vendor-ca.pem");
  CHECK(g.tls.server_name == "gis.vendor.example");
  CHECK(g.from_earliest);
  const gateway::WebhookOptions& p = w.subscriptions[1];
  CHECK(p.topics == std::vector<std::string>{"payment.completed"});
  CHECK(p.schedule == gateway::default_webhook_schedule());
  CHECK(p.jitter == doctest::Approx(0.2));
  CHECK_FALSE(p.from_earliest);

  // The short form: just the list. And `enabled: false` reads the section but runs nothing.
  auto list = NodeOptions::from_yaml(
      "webhooks:\n  - {id: a, topics: [x.y], url: 'http://127.0.0.1:9/', secret: " +
      std::string(kSecret) + "}\n");
  REQUIRE_MESSAGE(list.ok(), list.status().to_string());
  REQUIRE(list->webhooks.has_value());
  CHECK(list->webhooks->subscriptions.size() == 1);
  auto off = NodeOptions::from_yaml("webhooks: {enabled: false, subscriptions: []}\n");
  REQUIRE(off.ok());
  CHECK_FALSE(off->webhooks.has_value());
  auto none = NodeOptions::from_yaml("node: {name: x}\n");
  REQUIRE(none.ok());
  CHECK_FALSE(none->webhooks.has_value());
}

TEST_CASE("node config: webhooks errors name the line and never show the secret") {
  struct Case {
    std::string yaml;
    std::string error;
  };
  const std::string s = std::string(kSecret);
  const std::string head =
      "webhooks:\n  subscriptions:\n    - id: a\n      topics: [permit.*]\n"
      "      url: http://127.0.0.1:9/h\n";
  const Case cases[] = {
      {"webhooks:\n  pol_interval: 1s\n",
       "node.yaml:2: unknown key 'pol_interval' in webhooks (did you mean 'poll_interval'?)"},
      {"webhooks:\n  rotation_overlap: 90m\n",
       "node.yaml:2: 'rotation_overlap' must be whole hours like 24h or 7d; got '90m'"},
      {head + "      secret: " + s + "\n      atempt_timeout: 1s\n",
       "node.yaml:7: unknown key 'atempt_timeout' in webhooks.subscriptions[0] (did you mean "
       "'attempt_timeout'?)"},
      {head + "      secret: " + s + "\n      jitter: 2\n",
       "node.yaml:7: 'jitter' must be between 0 and 1; got 2"},
      // from_chars reads these, and a NaN would pass the range check.
      {head + "      secret: " + s + "\n      jitter: nan\n",
       "node.yaml:7: 'jitter' must be a number; got 'nan'"},
      {head + "      secret: " + s + "\n      jitter: inf\n",
       "node.yaml:7: 'jitter' must be a number; got 'inf'"},
      {head + "      secret: " + s + "\n      schedule: [0, 5 s]\n",
       "node.yaml:7: 'schedule[1]' must be a duration like 30s, 15m, 12h, 7d or 0; got '5 s'"},
      {head + "      secret: " + s + "\n      pause: {after_failure: 3}\n",
       "node.yaml:7: unknown key 'after_failure' in webhooks.subscriptions[0].pause (did you "
       "mean 'after_failures'?)"},
      {head + "      secret: " + s + "\n      tls: {ca_file: ca.pem}\n",
       "node.yaml:3: webhook 'a': tls.ca_file and tls.server_name apply to https:// URLs only"},
      {head, "node.yaml:3: webhook 'a' has no 'secret'"},
      {head + "      secret: not-a-secret-value\n",
       "node.yaml:6: webhook 'a': webhook secret must start with \"whsec_\""},
      {head + "      secret: ${CIVICBUS_TEST_SURELY_UNSET_VAR}\n",
       "node.yaml:6: webhook 'a': secret: environment variable 'CIVICBUS_TEST_SURELY_UNSET_VAR' "
       "is not set"},
      {"webhooks:\n  subscriptions:\n    - {topics: [a.b]}\n",
       "node.yaml:3: webhooks.subscriptions[0] has no 'id'"},
      {"webhooks:\n  subscriptions:\n    - {id: a, url: 'http://127.0.0.1:9/'}\n",
       "node.yaml:3: webhook 'a' has no 'topics'"},
      {"webhooks:\n  subscriptions:\n"
       "    - {id: a, topics: [a.b], url: 'http://127.0.0.1:9/', secret: " +
           s +
           "}\n"
           "    - {id: a, topics: [a.c], url: 'http://127.0.0.1:9/', secret: " +
           s + "}\n",
       "node.yaml:4: duplicate webhook id 'a' in webhooks.subscriptions[1] (first defined at "
       "line 3)"},
      {"webhooks:\n  subscriptions: {id: a}\n",
       "node.yaml:2: 'webhooks.subscriptions' must be a list of id, topics, url, secret"},
      {"webhoks: []\n", "node.yaml:1: unknown top-level key 'webhoks' (did you mean 'webhooks'?)"},
  };
  for (const Case& c : cases) {
    std::string error = yaml_error(c.yaml);
    INFO(c.yaml);
    INFO(error);
    CHECK(contains(error, c.error));
    CHECK_FALSE(contains(error, kSecret));
  }
}

TEST_CASE("node config: the webhooks examples of docs/CONFIG.md load") {
  const std::string doc = testing::read_file(std::string(CIVICBUS_SOURCE_DIR) + "/docs/CONFIG.md");
  ::setenv("GIS_WEBHOOK_SECRET", std::string(kSecret).c_str(), 1);
  ::setenv("PORTAL_API_KEY", "portal-key-from-the-environment", 1);
  // The complete example at the top, and the section's own.
  for (std::string_view heading : {"## A complete example", "### `webhooks`"}) {
    const std::size_t section = doc.find(heading);
    REQUIRE(section != std::string::npos);
    std::size_t begin = doc.find("```yaml\n", section);
    REQUIRE(begin != std::string::npos);
    begin += 8;
    const std::size_t end = doc.find("```", begin);
    REQUIRE(end != std::string::npos);
    // The complete example names schema files that exist only on a real node: its webhooks
    // part is taken alone.
    if (heading.starts_with("## ")) begin = doc.find("\nwebhooks:", begin) + 1;
    REQUIRE(begin < end);
    auto r = NodeOptions::from_yaml(doc.substr(begin, end - begin), "CONFIG.md");
    INFO(heading);
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    REQUIRE(r->webhooks.has_value());
    REQUIRE(r->webhooks->subscriptions.size() == 1);
    CHECK(r->webhooks->subscriptions[0].id == "gis-vendor");
    CHECK(r->webhooks->subscriptions[0].secret == kSecret);
  }
}

NodeOptions webhook_node(const TempDir& dir, std::vector<std::string>* log_lines,
                         std::mutex* log_mu) {
  NodeOptions o;
  o.data_dir = dir.file("data");
  o.worker_threads = 2;
  o.master_key_env = "CIVICBUS_NODE_TEST_UNSET_KEY";
  o.generate_master_key = true;
  o.logging.level = LogLevel::kDebug;
  o.logging.sink = [log_lines, log_mu](std::string_view line) {
    std::lock_guard lock(*log_mu);
    log_lines->emplace_back(line);
  };
  broker::TopicOptions topic;
  topic.name = "permit.issued";
  topic.owner = "permits";
  o.topics.push_back(topic);
  return o;
}

// A receiver on loopback that records what it got and answers 204.
struct Receiver {
  struct Got {
    http::HttpHeaders headers;
    std::string body;
  };
  std::mutex mu;
  std::vector<Got> got;
  std::unique_ptr<http::HttpServer> server;
  std::uint16_t port = 0;

  Receiver() {
    http::HttpServerOptions o;
    o.bind_address = "127.0.0.1";
    o.port = 0;
    o.threads = 1;
    server = std::make_unique<http::HttpServer>(o, [this](const http::HttpRequest& r) {
      std::lock_guard lock(mu);
      got.push_back({r.headers, r.body});
      return http::HttpResponse::text(204, "");
    });
    auto started = server->start();
    REQUIRE_MESSAGE(started.ok(), started.status().to_string());
    port = *started;
  }
  std::size_t count() {
    std::lock_guard lock(mu);
    return got.size();
  }
};

gateway::WebhookOptions subscription(std::uint16_t port, std::string_view secret) {
  gateway::WebhookOptions w;
  w.id = "gis";
  w.topics = {"permit.*"};
  w.url = fmt::format("http://127.0.0.1:{}/hooks", port);
  w.secret = std::string(secret);
  w.schedule = {0ms, 50ms, 50ms};
  return w;
}

TEST_CASE("node: a webhooks section delivers published events, signed, to a receiver") {
  TempDir dir;
  Receiver receiver;
  std::mutex log_mu;
  std::vector<std::string> log;
  NodeOptions options = webhook_node(dir, &log, &log_mu);
  options.webhooks.emplace();
  options.webhooks->dispatcher.poll_interval = 20ms;
  options.webhooks->subscriptions.push_back(subscription(receiver.port, kSecret));

  {
    auto created = Node::create(options);
    REQUIRE_MESSAGE(created.ok(), created.status().to_string());
    std::unique_ptr<Node> node = std::move(created).value();
    REQUIRE(node->webhooks() != nullptr);
    auto subs = node->webhooks()->subscriptions();
    REQUIRE(subs.ok());
    REQUIRE(subs->size() == 1);
    CHECK(subs->front().options.url == options.webhooks->subscriptions[0].url);

    broker::CloudEvent ev("permit.issued", "/permits", Json::object({{"permit", "BP-1"}}));
    ev.set_subject("BP-1");
    auto ack = node->broker().publish(std::move(ev));
    REQUIRE_MESSAGE(ack.ok(), ack.status().to_string());
    REQUIRE(testing::wait_until([&] { return receiver.count() >= 1; }, 10s));

    std::lock_guard lock(receiver.mu);
    const Receiver::Got& got = receiver.got.front();
    CHECK(contains(got.body, "BP-1"));
    Status verified =
        gateway::verify_webhook({std::string(kSecret)}, got.headers, got.body, node->clock().now());
    CHECK_MESSAGE(verified.ok(), verified.to_string());
    CHECK_FALSE(gateway::verify_webhook({std::string(kOtherSecret)}, got.headers, got.body,
                                        node->clock().now())
                    .ok());
  }
  {
    std::lock_guard lock(log_mu);
    bool created_logged = false;
    for (const std::string& line : log) {
      CHECK_FALSE(contains(line, kSecret));
      created_logged = created_logged || contains(line, "webhook subscription created");
    }
    CHECK(created_logged);
    log.clear();
  }

  // A restart with the same configuration keeps the subscription as it is.
  {
    auto again = Node::create(options);
    REQUIRE_MESSAGE(again.ok(), again.status().to_string());
    std::lock_guard lock(log_mu);
    for (const std::string& line : log) {
      CHECK_FALSE(contains(line, "webhook subscription created"));
      CHECK_FALSE(contains(line, "webhook secret set"));
      CHECK_FALSE(contains(line, "updated from the configuration"));
    }
    log.clear();
  }

  // A new secret in the configuration is a rotation: both secrets sign for a while.
  options.webhooks->subscriptions[0].secret = std::string(kOtherSecret);
  {
    auto rotated = Node::create(options);
    REQUIRE_MESSAGE(rotated.ok(), rotated.status().to_string());
    std::unique_ptr<Node> node = std::move(rotated).value();
    const std::size_t before = receiver.count();
    broker::CloudEvent ev("permit.issued", "/permits", Json::object({{"permit", "BP-2"}}));
    REQUIRE(node->broker().publish(std::move(ev)).ok());
    REQUIRE(testing::wait_until([&] { return receiver.count() > before; }, 10s));
    std::lock_guard lock(receiver.mu);
    const Receiver::Got& got = receiver.got.back();
    CHECK(gateway::verify_webhook({std::string(kOtherSecret)}, got.headers, got.body,
                                  node->clock().now())
              .ok());
    std::lock_guard log_lock(log_mu);
    bool rotated_logged = false;
    for (const std::string& line : log) {
      CHECK_FALSE(contains(line, kOtherSecret));
      rotated_logged = rotated_logged || contains(line, "webhook secret set");
    }
    CHECK(rotated_logged);
    log.clear();
  }

  // Other options changed: the subscription is replaced with the configured ones.
  options.webhooks->subscriptions[0].max_concurrent = 2;
  {
    auto updated = Node::create(options);
    REQUIRE_MESSAGE(updated.ok(), updated.status().to_string());
    auto subs = (*updated)->webhooks()->subscriptions();
    REQUIRE(subs.ok());
    REQUIRE(subs->size() == 1);
    CHECK(subs->front().options.max_concurrent == 2);
  }
}

TEST_CASE("node: no webhooks section, no dispatcher; webhooks without a master key fail") {
  TempDir dir;
  std::mutex log_mu;
  std::vector<std::string> log;
  NodeOptions plain = webhook_node(dir, &log, &log_mu);
  auto node = Node::create(plain);
  REQUIRE(node.ok());
  CHECK((*node)->webhooks() == nullptr);
  node->reset();

  TempDir other;
  NodeOptions keyless = webhook_node(other, &log, &log_mu);
  keyless.generate_master_key = false;
  keyless.webhooks.emplace();
  auto refused = Node::create(keyless);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == ErrorCode::kFailedPrecondition);
  CHECK(contains(refused.status().message(), "webhooks need the master key"));

  // Options built in code are validated too: a subscription needs its secret.
  NodeOptions no_secret = webhook_node(other, &log, &log_mu);
  no_secret.webhooks.emplace();
  no_secret.webhooks->subscriptions.push_back(subscription(9, ""));
  CHECK(contains(no_secret.validate().message(), "has no secret"));
}

}  // namespace
}  // namespace civicbus
