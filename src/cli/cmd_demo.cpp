// `civicbus demo`: a self-contained tour of the broker. It builds a node in a temporary
// directory with the topics a city would have, starts consumer groups (one of them flaky),
// publishes steady traffic, evolves a schema, replays the dead-letter queue and verifies the
// audit log, printing what happens as it goes. An API gateway runs in front of the node: an
// in-process permits API fed by a consumer group, a proxied stand-in for a legacy permits
// system, the admin API and OpenAPI; the demo calls it and prints the curl equivalents. A small
// simulated device fleet (water meters, pressure sensors, flood gauges) reports readings,
// raises a flood alert that an operator acknowledges and that resolves when the water drops,
// and is served at /api/v1/iot/* (over MQTT too when a mosquitto listens on 127.0.0.1:1883).
// Last, MDM matches a small property file against existing records and shows a golden record
// with its provenance.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "civicbus/broker/broker.hpp"
#include "civicbus/connect/hub.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/fleet/fleet.hpp"
#include "civicbus/gateway/gateway.hpp"
#include "civicbus/http/client.hpp"
#include "civicbus/http/server.hpp"
#include "civicbus/match/engine.hpp"
#include "civicbus/match/golden.hpp"
#include "civicbus/match/mdm.hpp"
#include "civicbus/pipeline/pipeline.hpp"
#include "civicbus/storage/database.hpp"
#include "cli/commands.hpp"
#include "cli/progress.hpp"

namespace civicbus::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using broker::CloudEvent;
using SteadyClock = std::chrono::steady_clock;

constexpr std::string_view kAssessmentTopic = "property.assessment.updated";
constexpr std::string_view kPermitTopic = "permit.issued";
constexpr std::string_view kPaymentTopic = "payment.completed";
constexpr std::string_view kAlertTopic = "iot.alert.raised";
constexpr std::string_view kSubject = "property.assessment";
constexpr std::string_view kFlakyGroup = "notifier";
constexpr std::string_view kFlakyError = "SMS gateway refused the message (HTTP 503)";
constexpr std::string_view kLegacyUpstream = "permits-legacy";
constexpr std::string_view kDemoPermit = "BP-2026-DEMO";

const char* const kOwners[] = {"Marie Tremblay", "Jean Gagnon",   "Aisha Khan",  "Liam O'Brien",
                               "Sofia Rossi",    "Wei Chen",      "Noah Martin", "Emma Roy",
                               "Olivia Singh",   "Lucas Bouchard"};
const char* const kStreets[] = {"Rue Principale", "King St W", "Boulevard Laurier",
                                "Elm Ave",        "Rideau St", "Chemin du Lac"};
const char* const kPermitKinds[] = {"building", "demolition", "sign", "plumbing", "patio"};
const char* const kPaymentMethods[] = {"card", "pre-authorized debit", "online banking", "cash"};
const char* const kMetrics[] = {"water_level_cm", "pressure_kpa", "air_quality_aqi", "noise_db"};

Json schema_v1() {
  auto parsed = Json::parse(R"({
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Property assessment updated",
    "type": "object",
    "required": ["roll_number", "assessed_value", "tax_class"],
    "properties": {
      "roll_number": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{3}-[0-9]{3}-[0-9]{5}$"},
      "assessed_value": {"type": "integer", "minimum": 0},
      "previous_value": {"type": "integer", "minimum": 0},
      "tax_class": {"enum": ["residential", "commercial", "industrial", "farm"]},
      "owner_name": {"type": "string"},
      "owner_email": {"type": "string"},
      "seq": {"type": "integer"}
    }
  })");
  return parsed.ok() ? std::move(parsed).value() : Json();
}

// v2 adds an optional `ward`: old events still validate, so it is BACKWARD compatible.
Json schema_v2() {
  Json s = schema_v1();
  if (Json* props = s.find("properties")) {
    props->set("ward", Json::object({{"type", "integer"}, {"minimum", 1}, {"maximum", 24}}));
  }
  return s;
}

std::vector<broker::TopicOptions> demo_topics() {
  std::vector<broker::TopicOptions> topics;
  broker::TopicOptions t;
  t.name = std::string(kAssessmentTopic);
  t.owner = "assessment-team";
  t.description = "A property's assessed value changed (annual roll or appeal decision)";
  t.retention = std::chrono::hours(24 * 30);
  t.sensitivity = broker::Sensitivity::kConfidential;
  t.pii_fields = {"/owner_name", "/owner_email"};
  t.schema_subject = std::string(kSubject);
  topics.push_back(t);

  t = {};
  t.name = std::string(kPermitTopic);
  t.owner = "permits-team";
  t.description = "A building, demolition or sign permit was issued";
  t.sensitivity = broker::Sensitivity::kPublic;
  topics.push_back(t);

  t = {};
  t.name = std::string(kPaymentTopic);
  t.owner = "finance-team";
  t.description = "A tax or utility payment cleared";
  t.retention = std::chrono::hours(24 * 90);
  t.sensitivity = broker::Sensitivity::kConfidential;
  topics.push_back(t);

  t = {};
  t.name = std::string(kAlertTopic);
  t.owner = "iot-team";
  t.description = "A sensor crossed an alert threshold";
  t.retention = std::chrono::hours(24 * 7);
  t.retention_bytes = std::int64_t{1} << 30;
  t.sensitivity = broker::Sensitivity::kInternal;
  topics.push_back(t);
  return topics;
}

std::string roll_number(std::uint64_t n) {
  return fmt::format("{:04}-{:03}-{:03}-{:05}", 1101 + n % 7, (n / 7) % 1000, (n * 37) % 1000,
                     n % 100000);
}

// The n-th event of the demo's traffic mix: 40% assessments, 25% permits, 25% payments,
// 10% IoT alerts.
CloudEvent make_event(std::uint64_t n, bool with_ward) {
  std::uint64_t kind = n % 20;
  if (kind < 8) {
    const char* owner = kOwners[n % std::size(kOwners)];
    std::string email = fmt::format("owner{}@example.ca", n % 5000);
    Json data =
        Json::object({{"roll_number", roll_number(n)},
                      {"assessed_value", static_cast<std::int64_t>(250'000 + (n * 7919) % 900'000)},
                      {"previous_value", static_cast<std::int64_t>(240'000 + (n * 6007) % 880'000)},
                      {"tax_class", n % 5 == 0 ? "commercial" : "residential"},
                      {"owner_name", owner},
                      {"owner_email", email},
                      {"seq", static_cast<std::int64_t>(n)}});
    if (with_ward) data.set("ward", static_cast<std::int64_t>(1 + n % 24));
    CloudEvent ev(std::string(kAssessmentTopic), "/tax/assessment-roll", std::move(data));
    ev.set_subject(roll_number(n));
    return ev;
  }
  if (kind < 13) {
    std::string permit = fmt::format("BP-2026-{:05}", n % 100000);
    CloudEvent ev(
        std::string(kPermitTopic), "/permits/portal",
        Json::object(
            {{"permit_id", permit},
             {"kind", kPermitKinds[n % std::size(kPermitKinds)]},
             {"address", fmt::format("{} {}", 10 + n % 990, kStreets[n % std::size(kStreets)])},
             {"valuation", static_cast<std::int64_t>(5'000 + (n * 131) % 400'000)},
             {"seq", static_cast<std::int64_t>(n)}}));
    ev.set_subject(permit);
    return ev;
  }
  if (kind < 18) {
    std::string account = fmt::format("TX-{:06}", (n * 17) % 1'000'000);
    CloudEvent ev(
        std::string(kPaymentTopic), "/finance/payments",
        Json::object({{"payment_id", fmt::format("PAY-{:08}", n)},
                      {"account", account},
                      {"amount_cents", static_cast<std::int64_t>(2'500 + (n * 97) % 350'000)},
                      {"method", kPaymentMethods[n % std::size(kPaymentMethods)]},
                      {"seq", static_cast<std::int64_t>(n)}}));
    ev.set_subject(account);
    return ev;
  }
  std::string device = fmt::format("sensor-{:03}", n % 60);
  CloudEvent ev(std::string(kAlertTopic), "/iot/fleet",
                Json::object({{"device_id", device},
                              {"metric", kMetrics[n % std::size(kMetrics)]},
                              {"value", static_cast<double>(50 + (n * 13) % 70) + 0.5},
                              {"threshold", 100.0},
                              {"severity", n % 3 == 0 ? "critical" : "warning"},
                              {"seq", static_cast<std::int64_t>(n)}}));
  ev.set_subject(device);
  return ev;
}

// The stand-in for a city's legacy permits system that the gateway proxies: GET
// /permits/{id} answers a permit as JSON, GET /health answers ok.
http::HttpResponse legacy_permits(const http::HttpRequest& request) {
  constexpr std::string_view kPrefix = "/permits/";
  if (request.method == "GET" && request.path == "/health")
    return http::HttpResponse::text(200, "ok");
  if (request.method != "GET" || !request.path.starts_with(kPrefix) ||
      request.path.size() == kPrefix.size()) {
    return http::HttpResponse::text(404, "no such resource in the legacy permits system");
  }
  std::string id = request.path.substr(kPrefix.size());
  http::HttpResponse out;
  out.headers.set("Content-Type", "application/json");
  out.body = Json::object({{"permit_id", id},
                           {"kind", "building"},
                           {"status", "closed"},
                           {"issued_on", "2019-05-14"},
                           {"address", "12 Rue Principale"},
                           {"system", std::string(kLegacyUpstream)}})
                 .dump();
  return out;
}

// The demo gateway: a proxied route to the legacy system (the in-process permits API and the
// consumers are added once the node runs).
// Whether something accepts TCP connections there (the demo's optional mosquitto).
bool port_open(const char* host, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, host, &addr.sin_addr);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

gateway::GatewayOptions demo_gateway_options(std::uint16_t upstream_port, std::uint16_t port) {
  gateway::GatewayOptions g;
  g.api_title = "civicbus demo gateway";
  g.listener.bind_address = "127.0.0.1";
  g.listener.port = port;
  g.listener.threads = 2;
  gateway::UpstreamOptions legacy;
  legacy.name = std::string(kLegacyUpstream);
  legacy.targets = {fmt::format("127.0.0.1:{}", upstream_port)};
  legacy.active.path = "/health";
  legacy.active.interval = 2s;
  legacy.request_timeout = 5s;
  g.upstreams.push_back(legacy);
  gateway::RouteOptions route;
  route.id = "legacy-permits";
  route.method = "GET";
  route.match = gateway::PathKind::kTemplate;
  route.path = "/api/v1/legacy/permits/{id}";
  route.upstream = std::string(kLegacyUpstream);
  route.strip_prefix = "/api/v1/legacy";
  route.auth = {gateway::AuthMethod::kApiKey};
  route.groups = {"permits"};
  route.rate_limit.requests_per_minute = 600;
  route.rate_limit.burst = 50;
  route.summary = "A permit from the legacy permits system (proxied)";
  route.tags = {"permits"};
  g.routes.push_back(route);
  return g;
}

// One call of the gateway part: what is sent, what curl would send, what must come back.
struct GatewayCall {
  std::string path;
  std::string api_key;  // "" = no credentials
  int expected_status = 200;
  std::string note;
};

struct GroupStats {
  std::atomic<std::int64_t> delivered{0};
  std::atomic<std::int64_t> failed_attempts{0};
  std::atomic<std::int64_t> replayed{0};
};

struct Totals {
  std::int64_t lag = 0;
  std::int64_t dlq = 0;
};

Totals group_totals(broker::Broker& b) {
  Totals t;
  auto groups = b.groups();
  if (!groups.ok()) return t;
  for (const auto& g : *groups) {
    t.lag += g.lag_events;
    t.dlq += g.dlq_events;
  }
  return t;
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? std::string("nobody") : out;
}

std::string seconds_label(SteadyClock::duration d) {
  return fmt::format("[{:5.1f}s]", std::chrono::duration<double>(d).count());
}

// Removes the temporary data directory when the demo created it.
struct DataDir {
  std::string path;
  bool remove = false;
  ~DataDir() {
    if (remove && !path.empty()) {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  }
};

class Demo {
 public:
  Demo(Node& node, std::chrono::milliseconds duration, std::int64_t rate, bool serve,
       std::uint16_t upstream_port, std::string mqtt_uri)
      : mqtt_uri_(std::move(mqtt_uri)),
        node_(node),
        broker_(node.broker()),
        duration_(duration),
        rate_(rate),
        serve_(serve),
        upstream_port_(upstream_port) {}

  // Stops the consumer groups (waiting for running handlers). Must run before the node goes.
  void stop_subscriptions() { subscriptions_.clear(); }
  ~Demo() {
    stop_subscriptions();
    if (devices_mqtt_ && devices_mqtt_->is_connected()) {
      try {
        devices_mqtt_->disconnect()->wait();
      } catch (const mqtt::exception&) {
        // The broker went first; nothing to close.
      }
    }
  }

  int run();

 private:
  Status setup();
  Status subscribe();
  Status setup_gateway();
  void exercise_gateway();
  void run_call(http::HttpClient& client, const std::string& base, const GatewayCall& call);
  void fleet_tour();
  // The connector hub syncing an MPAC drop folder on its schedule, then a permits pipeline
  // with a progress bar and an error report.
  void connectors_tour();
  // MDM: a small MPAC file matched against the tax system's property records and applied to
  // their golden records; one golden record shown with its provenance.
  void mdm_tour();
  // Publishes the flood gauges' readings of one step as the devices would (QoS 1) and waits
  // until the fleet ingested them; false when the broker refused.
  bool publish_over_mqtt(const std::vector<fleet::Reading>& readings);

  std::string mqtt_uri_;
  std::unique_ptr<mqtt::async_client> devices_mqtt_;
  void serve_gateway();
  void show_refusal_and_dedup();
  Status traffic();
  void drain(std::string_view what);
  Status replay_dlq();
  void show_pii();
  bool verify_audit();
  void summary();
  void progress(SteadyClock::time_point start, std::int64_t last_published, double interval_s);

  Node& node_;
  broker::Broker& broker_;
  std::chrono::milliseconds duration_;
  std::int64_t rate_;
  bool serve_;
  std::uint16_t upstream_port_;

  // The permits API's read model, fed by consumer group permits-api: permit id -> the
  // latest permit.issued data and its offset.
  std::mutex permits_mu_;
  std::map<std::string, std::pair<Json, std::int64_t>> permits_;
  std::string admin_key_;
  std::string portal_key_;
  std::string iot_key_;

  std::map<std::string, GroupStats> stats_;
  std::vector<std::unique_ptr<broker::Subscription>> subscriptions_;
  std::atomic<bool> notifier_fixed_{false};
  std::atomic<std::int64_t> published_{0};
  std::atomic<std::int64_t> acked_{0};
  std::atomic<std::int64_t> refused_{0};
  std::atomic<std::int64_t> sample_offset_{0};
  std::mutex mu_;
  std::string first_refusal_;
  std::string tax_sample_;  // owner_name as the tax group (granted) sees it
  std::string gis_sample_;  // ... and as the gis group (not granted) sees it
  int failures_ = 0;        // unexpected errors: the demo then exits 1
};

Status Demo::setup() {
  CIVICBUS_RETURN_IF_ERROR(
      broker_.set_compatibility(kSubject, SchemaCompatibility::kBackward, "assessment-team"));
  Json v1 = schema_v1();
  auto first = broker_.register_schema(kSubject, v1, "assessment-team");
  if (!first.ok()) return first.status().with_context("registering the assessment schema");
  fmt::print("schema   {} v{} {} (compatibility BACKWARD)\n", kSubject, first->version,
             broker::to_string(first->state));
  for (const auto& t : demo_topics()) {
    if (auto existing = broker_.topic(t.name); existing.ok()) {
      // The fleet created its iot.* topics when the node started.
      fmt::print("topic    {:<28} owner={:<16} (created by the {})\n", t.name,
                 existing->options.owner, existing->options.owner);
      continue;
    }
    CIVICBUS_RETURN_IF_ERROR(broker_.create_topic(t, t.owner));
    std::string pii;
    for (const auto& p : t.pii_fields) pii += (pii.empty() ? "" : ",") + p;
    fmt::print("topic    {:<28} owner={:<16} {:<12}{}{}\n", t.name, t.owner,
               broker::to_string(t.sensitivity), pii.empty() ? "" : " PII " + pii,
               t.schema_subject.empty() ? "" : " schema " + t.schema_subject);
  }
  return {};
}

Status Demo::subscribe() {
  struct Spec {
    std::string group;
    std::vector<std::string> topics;
    std::string note;
  };
  const Spec specs[] = {
      {"tax", {"property.>", std::string(kPaymentTopic)}, "granted PII of assessments"},
      {"gis", {std::string(kAssessmentTopic), std::string(kPermitTopic)}, "sees PII redacted"},
      {"finance", {std::string(kPaymentTopic)}, ""},
      {std::string(kFlakyGroup),
       {std::string(kAlertTopic), std::string(kPermitTopic)},
       "flaky: refuses every 9th event, 3 attempts, then DLQ"},
  };
  CIVICBUS_RETURN_IF_ERROR(broker_.grant_pii(kAssessmentTopic, "tax", "assessment-team"));
  for (const Spec& spec : specs) {
    broker::ConsumerGroupOptions options;
    options.group = spec.group;
    options.topics = spec.topics;
    options.start_from = broker::StartFrom::kEarliest;
    options.parallelism = 2;
    bool flaky = spec.group == kFlakyGroup;
    if (flaky) {
      options.max_deliveries = 3;
      options.initial_backoff = 20ms;
      options.max_backoff = 100ms;
    }
    GroupStats& stats = stats_[spec.group];
    std::string group = spec.group;
    auto sub =
        broker_.subscribe(options, [this, &stats, group, flaky](const broker::DeliveredEvent& ev) {
          if (flaky && !notifier_fixed_.load()) {
            const Json* seq = ev.event.data().find("seq");
            if (seq != nullptr && seq->is_int() && seq->as_int() % 9 == 0) {
              stats.failed_attempts.fetch_add(1);
              return unavailable(std::string(kFlakyError));
            }
          }
          if (ev.replay) stats.replayed.fetch_add(1);
          stats.delivered.fetch_add(1);
          if (ev.topic == kAssessmentTopic && (group == "tax" || group == "gis")) {
            const Json* owner = ev.event.data().find("owner_name");
            if (owner != nullptr && owner->is_string()) {
              std::lock_guard lock(mu_);
              std::string& sample = group == "tax" ? tax_sample_ : gis_sample_;
              if (sample.empty()) sample = owner->as_string();
            }
          }
          return Status();
        });
    if (!sub.ok()) return sub.status().with_context(fmt::format("subscribing group '{}'", group));
    subscriptions_.push_back(std::move(sub).value());
    std::string topics;
    for (const auto& t : spec.topics) topics += (topics.empty() ? "" : ", ") + t;
    fmt::print("group    {:<9} <- {}{}\n", spec.group, topics,
               spec.note.empty() ? "" : "  (" + spec.note + ")");
  }
  return {};
}

Status Demo::setup_gateway() {
  gateway::Gateway* gw = node_.gateway();
  if (gw == nullptr) return failed_precondition("the demo node has no gateway");
  broker::ConsumerGroupOptions options;
  options.group = "permits-api";
  options.topics = {std::string(kPermitTopic)};
  options.start_from = broker::StartFrom::kEarliest;
  auto sub = broker_.subscribe(options, [this](const broker::DeliveredEvent& ev) {
    const Json* id = ev.event.data().find("permit_id");
    if (id != nullptr && id->is_string()) {
      std::lock_guard lock(permits_mu_);
      permits_[id->as_string()] = {ev.event.data(), ev.offset};
    }
    return Status();
  });
  if (!sub.ok()) return sub.status().with_context("subscribing group 'permits-api'");
  subscriptions_.push_back(std::move(sub).value());

  gateway::RouteOptions route;
  route.id = "permits-api";
  route.method = "GET";
  route.match = gateway::PathKind::kTemplate;
  route.path = "/api/v1/permits/{id}";
  route.auth = {gateway::AuthMethod::kApiKey};
  route.groups = {"permits"};
  route.summary = "A permit as issued, from the permit.issued events (in process)";
  route.tags = {"permits"};
  CIVICBUS_RETURN_IF_ERROR(gw->add_route(route, [this](const gateway::GatewayRequest& r) {
    std::string id(r.param("id"));
    http::HttpResponse out;
    out.headers.set("Content-Type", "application/json");
    std::lock_guard lock(permits_mu_);
    auto it = permits_.find(id);
    if (it == permits_.end()) {
      out.status = 404;
      out.headers.set("Content-Type", "application/problem+json");
      out.body = Json::object({{"title", "Not Found"},
                               {"status", 404},
                               {"detail", fmt::format("no permit '{}' was issued", id)}})
                     .dump();
      return out;
    }
    out.body = Json::object({{"permit", it->second.first},
                             {"offset", it->second.second},
                             {"topic", std::string(kPermitTopic)}})
                   .dump();
    return out;
  }));

  gateway::ConsumerOptions admin;
  admin.id = "demo-admin";
  admin.groups = {"admin"};
  CIVICBUS_ASSIGN_OR_RETURN(admin_key_, gw->add_consumer(admin, true));
  gateway::ConsumerOptions iot;
  iot.id = "iot-console";
  iot.groups = {"iot"};
  CIVICBUS_ASSIGN_OR_RETURN(iot_key_, gw->add_consumer(iot, true));
  gateway::ConsumerOptions portal;
  portal.id = "permits-portal";
  portal.groups = {"permits"};
  CIVICBUS_ASSIGN_OR_RETURN(portal_key_, gw->add_consumer(portal, true));

  fmt::print(
      "gateway  http://127.0.0.1:{} in front of the node: admin API, OpenAPI, "
      "/api/v1/permits/{{id}} (in process, group permits-api),\n"
      "         /api/v1/legacy/permits/{{id}} -> upstream {} on 127.0.0.1:{}\n",
      gw->port(), kLegacyUpstream, upstream_port_);
  fmt::print("consumer demo-admin     (group admin)   X-API-Key {}\n", admin_key_);
  fmt::print("consumer permits-portal (group permits) X-API-Key {}\n", portal_key_);
  fmt::print("consumer iot-console    (group iot)     X-API-Key {}\n", iot_key_);
  return {};
}

// Sends one call, prints its curl equivalent and what came back; counts a failure when the
// status is not the expected one.
void Demo::run_call(http::HttpClient& client, const std::string& base, const GatewayCall& call) {
  http::HttpRequest request;
  request.method = "GET";
  request.target = call.path;
  std::string curl = "curl -s";
  if (!call.api_key.empty()) {
    request.headers.add("X-API-Key", call.api_key);
    curl += fmt::format(" -H 'X-API-Key: {}'", call.api_key);
  }
  // Quoted when the shell would read '&' or '?'.
  const bool quote = call.path.find_first_of("?&") != std::string::npos;
  curl += quote ? fmt::format(" 'http://{}{}'", base, call.path)
                : fmt::format(" http://{}{}", base, call.path);
  fmt::print("  $ {}\n", curl);
  auto response = client.send(base, std::move(request));
  if (!response.ok()) {
    fmt::print("    failed: {}\n", response.status().message());
    ++failures_;
    return;
  }
  std::string answer;
  if (call.path == "/api/v1/openapi.json") {
    auto doc = Json::parse(response->body);
    const Json* paths = doc.ok() ? doc->find("paths") : nullptr;
    answer = doc.ok() ? fmt::format("OpenAPI {}, {} paths", doc->get_string("openapi"),
                                    paths != nullptr ? paths->size() : 0)
                      : "not JSON";
  } else {
    answer = truncate(response->body, 110);
  }
  fmt::print("    {} {}  ({})\n", response->status, answer, call.note);
  if (response->status != call.expected_status) {
    fmt::print("    expected {}\n", call.expected_status);
    ++failures_;
  }
}

void Demo::exercise_gateway() {
  gateway::Gateway* gw = node_.gateway();
  if (gw == nullptr) return;
  const std::string base = fmt::format("127.0.0.1:{}", gw->port());
  fmt::print("\ngateway  calls, with their curl equivalents{}:\n",
             serve_ ? " (the gateway stays up after the tour: --serve)"
                    : " (they work while the demo runs; --serve keeps it up)");
  auto client = http::HttpClient::create();
  if (!client.ok()) {
    fmt::print("         cannot create an HTTP client: {}\n", client.status().message());
    ++failures_;
    return;
  }
  const GatewayCall calls[] = {
      {"/api/v1/openapi.json", "", 200, "the OpenAPI 3.1 document"},
      {"/api/v1/permits/" + std::string(kDemoPermit), portal_key_, 200,
       "in process, from the permit.issued events"},
      {"/api/v1/permits/" + std::string(kDemoPermit), "", 401, "no API key"},
      {"/api/v1/legacy/permits/BP-2019-00042", portal_key_, 200,
       "proxied to the legacy permits system"},
      {"/api/v1/gateway/health", "", 200, "gateway health"},
      {"/api/v1/gateway/consumers", admin_key_, 200, "admin API: the consumers, no secrets"},
      {"/api/v1/gateway/consumers", portal_key_, 403, "admin API: not in group admin"},
  };
  for (const GatewayCall& call : calls) run_call(**client, base, call);
  fmt::print("\n");
  std::fflush(stdout);
}

void Demo::serve_gateway() {
  gateway::Gateway* gw = node_.gateway();
  if (gw == nullptr) return;
  fmt::print(
      "\nserving the gateway on http://127.0.0.1:{} until Ctrl-C; try the curl commands "
      "above\n",
      gw->port());
  std::fflush(stdout);
  while (!stop_requested()) std::this_thread::sleep_for(50ms);
}

void Demo::show_refusal_and_dedup() {
  CloudEvent bad(std::string(kAssessmentTopic), "/tax/assessment-roll",
                 Json::object({{"roll_number", "1101-000-000-00001"},
                               {"assessed_value", "four hundred thousand"},
                               {"tax_class", "residential"}}));
  auto refused = broker_.publish(std::move(bad));
  if (refused.ok()) {
    fmt::print(
        "refused  NO: an assessment with a text assessed_value was stored at offset {} "
        "(the schema should have refused it)\n",
        refused->offset);
    ++failures_;
  } else {
    fmt::print(
        "refused  an assessment with assessed_value \"four hundred thousand\":\n"
        "           {}\n",
        refused.status().message());
  }

  CloudEvent permit(std::string(kPermitTopic), "/permits/portal",
                    Json::object({{"permit_id", std::string(kDemoPermit)},
                                  {"kind", "building"},
                                  {"address", "1 Rue Principale"},
                                  {"valuation", 125000}}));
  permit.set_id("demo-permit-0001").set_subject(std::string(kDemoPermit));
  CloudEvent again = permit;
  auto first = broker_.publish(std::move(permit));
  auto second = broker_.publish(std::move(again));
  if (!first.ok() || !second.ok()) {
    fmt::print("dedup    publishing failed: {}\n",
               (!first.ok() ? first.status() : second.status()).message());
    ++failures_;
    return;
  }
  fmt::print(
      "dedup    permit demo-permit-0001 stored at offset {}; sent again: {}\n", first->offset,
      second->duplicate
          ? fmt::format("acknowledged as a duplicate of offset {}, not stored", second->offset)
          : fmt::format("stored AGAIN at offset {} (unexpected)", second->offset));
  if (!second->duplicate) ++failures_;
}

void Demo::progress(SteadyClock::time_point start, std::int64_t last_published, double interval_s) {
  Totals totals = group_totals(broker_);
  std::int64_t now_published = acked_.load();
  std::string delivered;
  for (const auto& [name, s] : stats_) {
    delivered += fmt::format(" {}={}", name, s.delivered.load());
  }
  fmt::print("{} published {:>6} ({:>5.0f}/s)  delivered{}  lag {}  dlq {}\n",
             seconds_label(SteadyClock::now() - start), now_published,
             static_cast<double>(now_published - last_published) / std::max(interval_s, 0.001),
             delivered, totals.lag, totals.dlq);
  std::fflush(stdout);
}

Status Demo::traffic() {
  fmt::print("\ntraffic  {} events/s for {}\n", rate_, format_duration(duration_));
  auto start = SteadyClock::now();
  auto next_progress = start + 1s;
  auto last_progress = start;
  std::int64_t last_published = acked_.load();
  auto propose_at = start + duration_ * 35 / 100;
  auto acknowledge_at = start + duration_ * 60 / 100;
  int proposed_version = 0;
  std::vector<std::string> waiting;
  bool v2_active = false;
  std::uint64_t n = 0;
  constexpr std::int64_t kMaxInFlight = 5000;

  while (!stop_requested()) {
    auto now = SteadyClock::now();
    auto elapsed = now - start;
    if (elapsed >= duration_) break;

    if (proposed_version == 0 && now >= propose_at) {
      auto v2 = broker_.register_schema(kSubject, schema_v2(), "assessment-team");
      if (!v2.ok()) return v2.status().with_context("proposing schema v2");
      proposed_version = v2->version;
      waiting = v2->waiting_for;
      fmt::print("{} schema {} v{} {} (adds optional 'ward'); waiting for {}\n",
                 seconds_label(elapsed), kSubject, v2->version, broker::to_string(v2->state),
                 join_names(waiting));
      v2_active = v2->state == broker::SchemaState::kActive;
    }
    if (proposed_version != 0 && !v2_active && now >= acknowledge_at) {
      for (const std::string& group : waiting) {
        auto acked = broker_.acknowledge_schema(kSubject, proposed_version, group);
        if (!acked.ok()) return acked.status().with_context("acknowledging schema v2");
        fmt::print("{} {} acknowledged {} v{} -> {}\n", seconds_label(SteadyClock::now() - start),
                   group, kSubject, proposed_version, broker::to_string(acked->state));
        v2_active = acked->state == broker::SchemaState::kActive;
      }
      if (!v2_active) {
        auto versions = broker_.schema_versions(kSubject);
        if (versions.ok()) {
          for (const auto& v : *versions) {
            if (v.version == proposed_version && v.state == broker::SchemaState::kActive) {
              v2_active = true;
            }
          }
        }
      }
      if (!v2_active) {
        fmt::print("{} schema v{} still proposed after every group acknowledged\n",
                   seconds_label(SteadyClock::now() - start), proposed_version);
        ++failures_;
        v2_active = true;  // stop trying; events go on without 'ward'
        proposed_version = -1;
      }
    }

    auto target = static_cast<std::int64_t>(static_cast<double>(rate_) *
                                            std::chrono::duration<double>(elapsed).count());
    while (published_.load() < target + 1 &&
           published_.load() - acked_.load() - refused_.load() < kMaxInFlight) {
      CloudEvent ev = make_event(n++, v2_active && proposed_version > 0);
      bool assessment = ev.type() == kAssessmentTopic;
      published_.fetch_add(1);
      broker_.publish_async(std::move(ev), [this, assessment](Result<broker::PublishAck> r) {
        if (r.ok()) {
          acked_.fetch_add(1);
          if (assessment && sample_offset_.load() == 0) sample_offset_.store(r->offset);
        } else {
          if (refused_.fetch_add(1) == 0) {
            std::lock_guard lock(mu_);
            first_refusal_ = r.status().message();
          }
        }
      });
    }
    if (now >= next_progress) {
      double interval = std::chrono::duration<double>(now - last_progress).count();
      progress(start, last_published, interval);
      last_published = acked_.load();
      last_progress = now;
      next_progress += 1s;
    }
    std::this_thread::sleep_for(5ms);
  }
  // Wait for the last acknowledgements from the log.
  auto deadline = SteadyClock::now() + 30s;
  while (acked_.load() + refused_.load() < published_.load() && SteadyClock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  auto elapsed = std::chrono::duration<double>(SteadyClock::now() - start).count();
  fmt::print("{} done: {} events stored in {:.1f}s ({:.0f}/s){}\n",
             seconds_label(SteadyClock::now() - start), acked_.load(), elapsed,
             static_cast<double>(acked_.load()) / std::max(elapsed, 0.001),
             stop_requested() ? " (interrupted)" : "");
  if (refused_.load() > 0) {
    std::lock_guard lock(mu_);
    fmt::print("         {} events refused; the first: {}\n", refused_.load(), first_refusal_);
    ++failures_;
  }
  return {};
}

void Demo::drain(std::string_view what) {
  auto start = SteadyClock::now();
  auto deadline = start + 20s;
  auto next_line = start + 1s;
  Totals totals = group_totals(broker_);
  while (totals.lag > 0 && SteadyClock::now() < deadline && !stop_requested()) {
    std::this_thread::sleep_for(50ms);
    totals = group_totals(broker_);
    if (SteadyClock::now() >= next_line) {
      fmt::print("         {}: lag {} events\n", what, totals.lag);
      std::fflush(stdout);
      next_line += 1s;
    }
  }
  fmt::print("drain    {}: {} in {:.1f}s (dlq {})\n", what,
             totals.lag == 0 ? "every group caught up"
                             : fmt::format("{} events still lagging", totals.lag),
             std::chrono::duration<double>(SteadyClock::now() - start).count(), totals.dlq);
}

Status Demo::replay_dlq() {
  broker::DlqFilter filter;
  filter.group = std::string(kFlakyGroup);
  auto letters = broker_.dead_letters(filter);
  if (!letters.ok()) return letters.status().with_context("listing dead letters");
  fmt::print("\ndlq      {} dead letters in group {}", letters->size(), kFlakyGroup);
  if (!letters->empty()) {
    const auto& d = letters->front();
    fmt::print("; e.g. #{} {} offset {} after {} attempts: {}", d.id, d.topic, d.offset, d.attempts,
               truncate(d.error, 70));
  }
  fmt::print("\n");
  if (letters->empty()) return {};

  notifier_fixed_.store(true);
  GroupStats& stats = stats_[std::string(kFlakyGroup)];
  std::int64_t replayed_before = stats.replayed.load();
  auto queued = broker_.replay_dead_letters(filter, "demo-operator");
  if (!queued.ok()) return queued.status().with_context("replaying dead letters");
  fmt::print("replay   SMS gateway fixed; {} dead letters queued for replay to {}\n", *queued,
             kFlakyGroup);
  auto deadline = SteadyClock::now() + 20s;
  while (stats.replayed.load() - replayed_before < *queued && SteadyClock::now() < deadline &&
         !stop_requested()) {
    std::this_thread::sleep_for(20ms);
  }
  std::int64_t replayed = stats.replayed.load() - replayed_before;
  auto remaining = broker_.dead_letters(filter);
  fmt::print("replay   {} of {} redelivered and handled; dlq now {}\n", replayed, *queued,
             remaining.ok() ? std::to_string(remaining->size()) : remaining.status().message());
  if (replayed < *queued) {
    fmt::print("         (not every replayed event arrived within 20s)\n");
  }
  return {};
}

void Demo::show_pii() {
  std::lock_guard lock(mu_);
  fmt::print("\npii      tax (granted) sees owner_name \"{}\"; gis (not granted) sees \"{}\"\n",
             tax_sample_.empty() ? "?" : tax_sample_, gis_sample_.empty() ? "?" : gis_sample_);
  std::int64_t offset = sample_offset_.load();
  if (offset <= 0) return;
  auto record = node_.transport().read_one(offset);
  if (!record.ok()) return;
  auto doc = Json::parse((*record)->payload);
  if (!doc.ok()) return;
  const Json* stored = doc->at_pointer("/data/owner_name");
  if (stored == nullptr) return;
  std::string text = stored->is_string() ? stored->as_string() : stored->dump();
  fmt::print("         at rest (offset {}) owner_name is stored as \"{}\"\n", offset,
             truncate(text, 60));
}

bool Demo::verify_audit() {
  auto report = broker_.verify_audit();
  if (!report.ok()) {
    fmt::print("audit    verification failed to run: {}\n", report.status().message());
    return false;
  }
  if (report->intact) {
    fmt::print("audit    hash chain intact: {} records verified\n", report->records);
    return true;
  }
  fmt::print("audit    NOT intact: {} problems in {} records\n", report->problems.size(),
             report->records);
  for (const auto& p : report->problems) fmt::print("           {}\n", p);
  return false;
}

// What the demo's connectors and pipeline read: an MPAC-style assessment extract dropped in
// a folder, and a legacy permits export with a few rows no migration should load as they are.
void write_demo_files(const std::string& dir) {
  fs::create_directories(fs::path(dir) / "mpac-drop");
  auto assessments = [](int from, int to) {
    std::string csv =
        "roll_number,address,municipality,province,postal_code,assessed_value,class\n";
    for (int i = from; i < to; ++i) {
      csv += fmt::format("0614{:015},{} Bank St,Ottawa,ON,K1S 3W7,{}.00,{}\n", 100000 + i, 10 + i,
                         250000 + i * 1500, i % 5 == 0 ? "340" : "201");
    }
    return csv;
  };
  std::FILE* f = std::fopen((fs::path(dir) / "mpac-drop" / "extract-2026-11.csv").c_str(), "wb");
  if (f != nullptr) {
    std::string text = assessments(0, 150);
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
  f = std::fopen((fs::path(dir) / "mpac-late.csv").c_str(), "wb");
  if (f != nullptr) {
    std::string text = assessments(150, 180);
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
  std::string permits = "permit_id,issued_on,status,street,city,province,postal_code\n";
  static const char* kStreets[] = {"123 Main Street", "104-2701 23rd Ave SW", "45 rue Principale",
                                   "9 King St W", "77 Elgin Street"};
  for (int i = 1; i <= 2000; ++i) {
    std::string date = fmt::format("{:02}/{:02}/{}", 1 + i % 28, 1 + i % 12, 2012 + i % 14);
    std::string postal = "K1P 1J1";
    if (i == 417) date = "31/02/2019";  // the faults a legacy export has
    if (i == 1208) postal = "D1A 1A1";
    if (i == 1650) date = "N/A";
    permits += fmt::format("{},{},{},\"{}\",Ottawa,ON,{}\n", i, date, i % 3 == 0 ? "FIN" : "ISS",
                           kStreets[i % 5], postal);
  }
  permits += "2001,01/05/2020,ZZ,\"5 Bay St\",Ottawa,ON,K1R 5B6\n";  // a retired status code
  f = std::fopen((fs::path(dir) / "permits-export.csv").c_str(), "wb");
  if (f != nullptr) {
    std::fwrite(permits.data(), 1, permits.size(), f);
    std::fclose(f);
  }
}

NodeOptions::Connectors demo_connectors(const std::string& dir) {
  NodeOptions::Connectors c;
  c.hub.data_dir = (fs::path(dir) / "connect").string();
  connect::ConnectionOptions warehouse;
  warehouse.name = "warehouse";
  warehouse.connector = "sqlite";
  warehouse.config = Json::object({{"path", (fs::path(dir) / "warehouse.db").string()}});
  connect::ConnectionOptions mpac;
  mpac.name = "mpac-drop";
  mpac.connector = "csv";
  mpac.config = Json::object({{"path", (fs::path(dir) / "mpac-drop").string()},
                              {"pattern", "*.csv"},
                              {"stream", "assessments"}});
  mpac.schedule = "*/2 * * * * *";  // every two seconds, for the demo (nightly: "0 2 * * *")
  mpac.time_zone = "America/Toronto";
  mpac.destination = "warehouse";
  mpac.destination_stream = "assessments";
  mpac.write_mode = connect::WriteMode::kUpsert;
  mpac.key = {"roll_number"};
  mpac.mapping = Json::parse(R"json({"lookups": {"class": {"values": {"201": "residential",
                                                                   "340": "commercial"},
                                                        "default": "other"}},
                                  "fields": {
                                    "roll_number": {"from": "roll_number", "required": true},
                                    "address": {"expr": "upper(address)"},
                                    "assessed_value": {"from": "assessed_value", "type": "number"},
                                    "property_class": {"from": "class", "lookup": "class"}}})json")
                     .value();
  c.connections = {warehouse, mpac};
  return c;
}

void Demo::connectors_tour() {
  connect::ConnectorHub* hub = node_.connectors();
  if (hub == nullptr) return;
  const std::string dir = node_.options().data_dir;
  fmt::print(
      "\nconnect  the connector hub: 'mpac-drop' watches a folder for MPAC extracts on the "
      "cron schedule '*/2 * * * * *' (America/Toronto) and upserts into 'warehouse'\n");
  auto wait_for_run = [&](std::optional<SystemTime> after) {
    for (int i = 0; i < 60; ++i) {
      auto s = hub->status("mpac-drop");
      if (s.ok() && s->last_run_at && (!after || *s->last_run_at > *after)) return *s;
      std::this_thread::sleep_for(100ms);
    }
    return hub->status("mpac-drop").value_or(connect::ConnectionStatus{});
  };
  auto rows = [&] {
    storage::SqliteOptions so;
    so.path = (fs::path(dir) / "warehouse.db").string();
    so.create_if_missing = false;
    auto db = storage::open_sqlite(so);
    if (!db.ok()) return std::int64_t{-1};
    return (*db)->query_int("SELECT COUNT(*) FROM assessments")->value_or(-1);
  };
  connect::ConnectionStatus first = wait_for_run(std::nullopt);
  fmt::print("         scheduled run: {}; the warehouse holds {} assessments\n",
             first.last_error.empty() ? "ok" : first.last_error, rows());
  std::error_code ec;
  fs::rename(fs::path(dir) / "mpac-late.csv", fs::path(dir) / "mpac-drop" / "extract-2026-12.csv",
             ec);
  connect::ConnectionStatus second = wait_for_run(first.last_run_at);
  fmt::print(
      "         a new extract dropped in; the next run reads only it: {} assessments, "
      "health {}, next run {}\n",
      rows(), connect::health_name(second.health),
      second.next_run_at ? format_rfc3339(*second.next_run_at) : std::string("-"));
  if (rows() != 180) {
    fmt::print("         UNEXPECTED: the warehouse should hold 180 assessments\n");
    ++failures_;
  }

  fmt::print(
      "\npipeline permits-export.csv -> types -> normalize_address -> map_codes -> sqlite "
      "(upsert by permit_id)\n");
  pipeline::PipelineOptions p;
  p.name = "demo-permits";
  p.source = {"csv", Json::object({{"path", (fs::path(dir) / "permits-export.csv").string()}}), ""};
  p.stages = {
      {"types", "types",
       Json::parse(R"({"fields": {"permit_id": {"type": "integer"},
                                  "issued_on": {"type": "date", "formats": ["%d/%m/%Y"]}}})")
           .value()},
      {"normalize_address", "addresses",
       Json::object({{"street", "street"},
                     {"municipality", "city"},
                     {"province", "province"},
                     {"postal_code", "postal_code"}})},
      {"map_codes", "status codes",
       Json::parse(R"({"fields": {"status": {"table": {"ISS": "issued", "FIN": "final"}}}})")
           .value()},
  };
  p.sink = {"sqlite", Json::object({{"path", (fs::path(dir) / "warehouse.db").string()}}),
            "permits"};
  p.write_mode = connect::WriteMode::kUpsert;
  p.key = {"permit_id"};
  p.batch_size = 250;
  p.expected_rows = 2001;
  p.error_report_dir = (fs::path(dir) / "permits-report").string();
  std::fflush(stdout);  // the bar goes to stderr: keep the two in order
  Progress bar("         rows", ::isatty(STDERR_FILENO) == 1);
  pipeline::PipelineEnv env;
  env.broker = &broker_;
  env.metrics = &node_.metrics();
  env.on_progress = [&](const pipeline::Progress& pr) {
    bar.update(static_cast<std::size_t>(pr.rows_read), 2001,
               fmt::format("{:.0f} rows/s, {} failed", pr.rows_per_second, pr.rows_failed));
  };
  auto created = pipeline::Pipeline::create(p, std::move(env));
  if (!created.ok()) {
    fmt::print("         UNEXPECTED: {}\n", created.status().message());
    ++failures_;
    return;
  }
  auto report = (*created)->run();
  if (!report.ok()) {
    fmt::print("         UNEXPECTED: {}\n", report.status().message());
    ++failures_;
    return;
  }
  fmt::print("         read {}, loaded {}, failed {} in {} batches; success rate {:.2f}%\n",
             report->rows_read, report->rows_loaded, report->rows_failed, report->batches,
             report->success_rate() * 100);
  fmt::print("         error report: {}\n", report->error_csv_path);
  for (const auto& e : report->errors) {
    fmt::print("           line {} {} '{}': {}\n", e.error.position, e.error.field, e.error.value,
               e.error.reason);
  }
  if (report->rows_failed != 4 || report->rows_loaded != 1997) {
    fmt::print("         UNEXPECTED: 4 rows should fail and 1997 load\n");
    ++failures_;
  }
}

// The MDM step's data: five properties as the tax system holds them (one without its roll
// number, one with its unit written out), and MPAC's file for them plus a new property.
constexpr std::string_view kTaxProperties =
    "account,roll_number,address,postal_code,owner_name,mailing_address,assessed_value,"
    "updated_at\n"
    "TX-1001,0614012003004510000,45 Bank Street,K1P 5N2,Marie Tremblay,"
    "\"45 Bank St, Ottawa ON K1P 5N2\",412000,2025-06-01\n"
    "TX-1002,0614012003004520000,47 Bank Street,K1P 5N2,Jean Gagnon,"
    "\"47 Bank St, Ottawa ON K1P 5N2\",398000,2025-06-01\n"
    "TX-1003,,123 Main Street,K1S 1C4,Aisha Khan,\"PO BOX 88 STN A OTTAWA ON  K1N 5A1\","
    "455000,2026-03-01\n"
    "TX-1004,0614014005007890000,\"Unit 1204, 200 Elgin Street\",K2P 1L5,Liam O'Brien,"
    "\"200 Elgin St Apt 1204, Ottawa ON K2P 1L5\",320000,2025-06-01\n"
    "TX-1005,0614015006001110000,9 King Edward Avenue,K1N 7L4,Sofia Rossi,"
    "\"9 King Edward Ave, Ottawa ON K1N 7L4\",510000,2025-06-01\n";
constexpr std::string_view kMpacProperties =
    "roll_number,address,postal_code,owner_name,mailing_address,assessed_value,assessment_year,"
    "extract_date\n"
    "0614012003004510000,45 BANK ST,K1P 5N2,MARIE TREMBLAY,45 BANK ST OTTAWA ON  K1P 5N2,"
    "431000,2026,2026-01-15\n"
    "0614012003004520000,47 BANK ST,K1P 5N2,JEAN GAGNON,47 BANK ST OTTAWA ON  K1P 5N2,398000,"
    "2026,2026-01-15\n"
    "0614013004006670000,123 MAIN ST,K1S 1C4,AISHA KHAN,123 MAIN ST OTTAWA ON  K1S 1C4,472000,"
    "2026,2026-01-15\n"
    "0614014005007890000,1204-200 ELGIN ST,K2P 1L5,LIAM O'BRIEN,"
    "1204-200 ELGIN ST OTTAWA ON  K2P 1L5,333000,2026,2026-01-15\n"
    "0614015006001110000,9 KING EDWARD AVE,K1N 7L4,SOFIA ROSSI,"
    "9 KING EDWARD AVE OTTAWA ON  K1N 7L4,525000,2026,2026-01-15\n"
    "0614016007002220000,310 RIDEAU ST,K1N 5Y4,WEI CHEN,310 RIDEAU ST OTTAWA ON  K1N 5Y4,"
    "289000,2026,2026-01-15\n";

// Roll number first (an equal roll is the same property), then candidates sharing a postal
// code and civic number, or a street and civic number, scored on address, owner and postal
// code.
constexpr std::string_view kPropertyMatching = R"json({
  "link_type": "link",
  "unique_id": "roll_number",
  "comparisons": [{"field": "address", "kind": "address"},
                  {"field": "owner_name", "kind": "name"},
                  {"field": "postal_code", "kind": "postal_code"}],
  "deterministic": [["roll_number"]],
  "blocking": [["roll_number"], ["postal_code", "civic(address)"],
               ["street(address)", "civic(address)"]],
  "one_to_one": true
})json";

// A handful of records is too few for EM, so the demo scores with a model trained once on a
// whole roll (what `civicbus match --save-model` writes).
constexpr std::string_view kPropertyModel = R"json({
  "prior": 0.003,
  "comparisons": [
    {"name": "address", "levels": [{"m": 0.90, "u": 0.003}, {"m": 0.05, "u": 0.0001},
                                   {"m": 0.02, "u": 0.0001}, {"m": 0.02, "u": 0.08},
                                   {"m": 0.01, "u": 0.9159}]},
    {"name": "owner_name", "levels": [{"m": 0.85, "u": 0.02}, {"m": 0.08, "u": 0.0001},
                                      {"m": 0.03, "u": 0.004}, {"m": 0.02, "u": 0.07},
                                      {"m": 0.02, "u": 0.9059}]},
    {"name": "postal_code", "levels": [{"m": 0.90, "u": 0.009}, {"m": 0.05, "u": 0.065},
                                       {"m": 0.05, "u": 0.926}]}]
})json";

// MPAC is the authority for assessment values; anything else goes to the most recent source.
// The store announces new versions on mdm.golden_record.updated only: the demo's own
// property.assessment.updated topic has a schema of its own for the traffic above.
constexpr std::string_view kPropertyGolden = R"json({
  "kind": "property",
  "default": "most_recent",
  "attributes": {
    "assessed_value": {"rule": "source_priority", "sources": ["mpac"]},
    "assessment_year": {"rule": "source_priority", "sources": ["mpac"]},
    "roll_number": {"rule": "source_priority", "sources": ["mpac", "tax"]}
  }
})json";

void Demo::mdm_tour() {
  const fs::path dir = node_.options().data_dir;
  fmt::print(
      "\nmdm      a small MPAC file matched against the tax system's property records (roll "
      "number, else address, owner and postal code) and applied to their golden records\n");
  auto unexpected = [&](const Status& s) {
    fmt::print("         UNEXPECTED: {}\n", s.message());
    ++failures_;
  };
  storage::SqliteOptions so;
  so.path = (dir / "mdm.db").string();
  auto db = storage::open_sqlite(so);
  if (!db.ok()) return unexpected(db.status());
  auto golden = match::GoldenRecordOptions::from_json(Json::parse(kPropertyGolden).value());
  if (!golden.ok()) return unexpected(golden.status());
  auto opened = match::GoldenRecordStore::open(**db, &broker_, std::move(*golden));
  if (!opened.ok()) return unexpected(opened.status());
  match::GoldenRecordStore& store = **opened;
  auto settings = match::MatchSettings::from_json(Json::parse(kPropertyMatching).value());
  if (!settings.ok()) return unexpected(settings.status());

  // The tax system's records become the first golden records.
  auto tax_engine = match::MatchEngine::create(*settings);
  auto tax_data = match::Dataset::parse_csv(kTaxProperties, "tax");
  if (!tax_engine.ok()) return unexpected(tax_engine.status());
  if (!tax_data.ok()) return unexpected(tax_data.status());
  match::ApplyExtractOptions tax;
  tax.source = "tax";
  tax.record_id_column = "account";
  tax.updated_at_column = "updated_at";
  tax.fields = {"roll_number", "address",         "postal_code",
                "owner_name",  "mailing_address", "assessed_value"};
  tax.value_types = {{"assessed_value", match::ExtractValueType::kInteger}};
  tax.entity_prefix = "P-";
  auto loaded = match::apply_extract(*tax_engine, store, *tax_data, tax);
  if (!loaded.ok()) return unexpected(loaded.status());

  // MPAC's file, matched and applied.
  const std::string path = (dir / "mpac-properties.csv").string();
  if (std::FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(kMpacProperties.data(), 1, kMpacProperties.size(), f);
    std::fclose(f);
  }
  auto mpac_data = match::Dataset::read_csv(path, "mpac");
  auto engine = match::MatchEngine::create(*settings);
  if (!mpac_data.ok()) return unexpected(mpac_data.status());
  if (!engine.ok()) return unexpected(engine.status());
  if (Status s = engine->load_model(Json::parse(kPropertyModel).value()); !s.ok()) {
    return unexpected(s);
  }
  match::ApplyExtractOptions mpac;
  mpac.source = "mpac";
  mpac.record_id_column = "roll_number";
  mpac.updated_at_column = "extract_date";
  mpac.fields = {"roll_number",     "address",        "postal_code",    "owner_name",
                 "mailing_address", "assessed_value", "assessment_year"};
  mpac.value_types = {{"assessed_value", match::ExtractValueType::kInteger},
                      {"assessment_year", match::ExtractValueType::kInteger}};
  mpac.entity_prefix = "P-";
  auto report = match::apply_extract(*engine, store, *mpac_data, mpac);
  if (!report.ok()) return unexpected(report.status());
  std::string rules;
  for (const auto& r : report->rules) {
    rules += fmt::format("{}{} {}", rules.empty() ? "" : ", ", r.rule, r.candidate_pairs);
  }
  fmt::print("         {} tax records loaded as golden records; MPAC's file {} has {} records\n",
             loaded->created, path, report->records);
  fmt::print("         {} candidate pairs ({})\n", report->candidate_pairs, rules);
  fmt::print(
      "         linked {} by roll number, {} by address; {} new propert{}; {} golden records "
      "changed, {} unchanged\n",
      report->linked_by_rule, report->linked_by_score, report->created,
      report->created == 1 ? "y" : "ies", report->changed, report->unchanged);
  const match::ExtractRecordOutcome* by_address = nullptr;
  for (const auto& o : report->outcomes) {
    if (o.link == match::ExtractLink::kScore && by_address == nullptr) by_address = &o;
  }
  std::size_t events = 0;
  for (const auto& c : loaded->changes) events += c.events.size();
  for (const auto& c : report->changes) events += c.events.size();
  if (report->linked_by_rule != 4 || report->linked_by_score != 1 || report->created != 1 ||
      by_address == nullptr) {
    fmt::print(
        "         UNEXPECTED: 4 records should link by roll number, 1 by address, 1 be "
        "new\n");
    ++failures_;
    return;
  }
  auto g = store.get(by_address->entity_id);
  if (!g.ok()) return unexpected(g.status());
  fmt::print(
      "         {} '{}' has no roll number in the tax system: linked to {} by address, owner and "
      "postal code (match probability {:.4f})\n",
      by_address->record_id, mpac_data->value(by_address->row, mpac_data->column("address")),
      by_address->entity_id, by_address->match_probability);
  fmt::print(
      "         golden record {} version {}, each attribute with its provenance (assessment "
      "values: MPAC, the authority; the rest: the most recent record):\n",
      g->entity_id, g->version);
  Table table({"           ATTRIBUTE", "VALUE", "SOURCE", "RECORD", "UPDATED"});
  for (const auto& [name, a] : g->attributes) {
    table.add({"           " + name, a.value.is_string() ? a.value.as_string() : a.value.dump(),
               a.source, a.record_id, a.updated_at ? format_rfc3339(*a.updated_at) : "-"});
  }
  fmt::print("{}", table.render());
  fmt::print("         {} golden-record versions announced on {}\n", events,
             match::kGoldenRecordTopic);
}

void Demo::summary() {
  fmt::print("\nsummary\n");
  Table topics({"  TOPIC", "RECORDS", "BYTES"});
  auto infos = broker_.topics();
  std::sort(infos.begin(), infos.end(),
            [](const auto& a, const auto& b) { return a.options.name < b.options.name; });
  for (const auto& t : infos) {
    topics.add({"  " + t.options.name, std::to_string(t.records), std::to_string(t.bytes)});
  }
  fmt::print("{}", topics.render());
  Table groups({"  GROUP", "DELIVERED", "FAILED ATTEMPTS", "REPLAYED", "COMMITTED", "LAG", "DLQ"});
  auto infos_g = broker_.groups();
  std::map<std::string, broker::GroupInfo> by_name;
  if (infos_g.ok()) {
    for (auto& g : *infos_g) by_name[g.group] = g;
  }
  for (const auto& [name, s] : stats_) {
    auto it = by_name.find(name);
    groups.add({"  " + name, std::to_string(s.delivered.load()),
                std::to_string(s.failed_attempts.load()), std::to_string(s.replayed.load()),
                it == by_name.end() ? "?" : std::to_string(it->second.committed_offset),
                it == by_name.end() ? "?" : std::to_string(it->second.lag_events),
                it == by_name.end() ? "?" : std::to_string(it->second.dlq_events)});
  }
  fmt::print("{}", groups.render());
}

// The device fleet: a few hundred devices imported from CSV (each with a certificate), readings
// every simulated 15 minutes (2 minutes for the flood gauges), a flood alert raised on one
// gauge, acknowledged by an operator and resolved when the water drops.
void Demo::fleet_tour() {
  fleet::DeviceFleet* f = node_.fleet();
  if (f == nullptr) return;
  for (int i = 0; i < 50 && !mqtt_uri_.empty() && !f->mqtt_connected(); ++i) {
    std::this_thread::sleep_for(100ms);
  }
  const bool over_mqtt = !mqtt_uri_.empty() && f->mqtt_connected();
  fmt::print("\nfleet    a simulated device fleet{}\n",
             over_mqtt ? fmt::format(" (the flood gauges publish over MQTT to {}; the node's MQTT "
                                     "link ingests them)",
                                     mqtt_uri_)
                       : std::string(" (readings over the in-process API; start mosquitto on "
                                     "127.0.0.1:1883, or give --mqtt URI, to see them go over "
                                     "MQTT)"));
  std::string csv = "id,serial,type,lat,lon,department,project\n";
  for (int i = 0; i < 240; ++i) {
    csv += fmt::format("wm-{:03},WM{:06},water_meter,{:.5f},{:.5f},water,ami-2026\n", i, 100000 + i,
                       45.40 + (i / 20) * 0.0009, -75.70 + (i % 20) * 0.0013);
  }
  for (int i = 0; i < 20; ++i) {
    csv += fmt::format("ps-{:02},PS{:04},pressure_sensor,{:.5f},{:.5f},water,ami-2026\n", i, i,
                       45.40 + (i / 5) * 0.003, -75.70 + (i % 5) * 0.005);
  }
  for (int i = 0; i < 12; ++i) {
    csv += fmt::format("fg-{:02},FG{:04},flood_gauge,{:.5f},-75.68000,emergency,creek-watch\n", i,
                       i, 45.38 + i * 0.004);
  }
  csv += "bad-1,X1,water_metre,45.4,-75.7,water,ami-2026\n";  // refused: unknown type
  auto report = f->import_devices(csv, fleet::ImportFormat::kCsv, "demo-operator");
  if (!report.ok()) {
    fmt::print("         import failed: {}\n", report.status().message());
    ++failures_;
    return;
  }
  fmt::print("         imported {} devices with certificates in {} ms; refused {}",
             report->provisioned.size(), report->elapsed.count(), report->errors.size());
  if (!report->errors.empty()) {
    fmt::print(" ({}: {})", report->errors[0].where, report->errors[0].reason);
  }
  fmt::print("\n");

  // Two simulated hours: meters every 15 minutes, flood gauges every 2 minutes; fg-03's creek
  // rises past 1 m and 1.5 m, then falls back.
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const std::int64_t start = now - 2 * 3600 * 1000;
  std::size_t accepted = 0, rejected = 0;
  std::string alert_id;
  for (int step = 0; step <= 60; ++step) {
    const std::int64_t t = start + step * 120'000;
    std::vector<fleet::Reading> rs;
    for (int i = 0; i < 12; ++i) {
      double level = 0.40 + i * 0.02;
      if (i == 3)
        level = step < 20   ? 0.5
                : step < 38 ? 0.5 + (step - 20) * 0.065
                            : std::max(0.4, 1.67 - (step - 38) * 0.09);
      rs.push_back({fmt::format("fg-{:02}", i), "water_level", level, "m", t});
    }
    if (step % 7 == 0) {
      for (int i = 0; i < 240; ++i) {
        rs.push_back({fmt::format("wm-{:03}", i), "flow_rate", 0.4 + (i % 9) * 0.3, "L/min", t});
      }
      for (int i = 0; i < 20; ++i)
        rs.push_back({fmt::format("ps-{:02}", i), "pressure", 410.0, "kPa", t});
    }
    if (over_mqtt) {
      // The gauges' readings go through mosquitto; the rest stays in process.
      std::vector<fleet::Reading> gauges(rs.begin(), rs.begin() + 12);
      rs.erase(rs.begin(), rs.begin() + 12);
      if (!publish_over_mqtt(gauges)) {
        ++failures_;
        return;
      }
      accepted += gauges.size();
    }
    if (step == 10) rs.push_back({"wm-000", "flow_rate", 12.0, "m3/h", t});  // refused: wrong unit
    auto r = f->ingest(rs);
    accepted += r.accepted;
    rejected += r.rejected.size();
    if (step == 10 && !r.rejected.empty()) {
      fmt::print("         refused reading: {}\n", r.rejected[0].message);
    }
    fleet::AlertQuery query;
    query.active_only = true;
    query.device_id = "fg-03";
    auto active = f->alerts(query);
    if (active.ok()) {
      for (const auto& a : *active) {
        if (a.rule_id != "flood_gauge.water_level") continue;
        if (alert_id.empty()) {
          alert_id = a.id;
          fmt::print("         t+{:>3} min  ALERT {} {} on fg-03: {}\n", step * 2,
                     fleet::severity_name(a.severity), a.rule_id, a.message);
          auto acked = f->acknowledge(a.id, "demo-operator", "crew dispatched to the creek");
          if (acked.ok())
            fmt::print("         t+{:>3} min  acknowledged by demo-operator\n", step * 2);
        } else if (a.severity == fleet::Severity::kCritical && a.id == alert_id &&
                   alert_id.back() != '!') {
          fmt::print("         t+{:>3} min  escalated to critical (level {:.2f} m)\n", step * 2,
                     a.value);
          alert_id.push_back('!');  // printed once
        }
      }
    }
  }
  if (!alert_id.empty() && alert_id.back() == '!') alert_id.pop_back();
  auto done = alert_id.empty() ? Result<fleet::Alert>(not_found("no alert")) : f->alert(alert_id);
  if (!done.ok() || done->state != fleet::AlertState::kResolved) {
    fmt::print("         expected the flood alert raised and resolved; it was not\n");
    ++failures_;
  } else {
    fmt::print("         the water dropped below 0.9 m: resolved by {}\n", done->resolved_by);
  }
  (void)f->flush();
  auto stats = f->stats();
  fmt::print(
      "         {} readings stored with 5-min/hour/day rollups, {} refused; {} devices{}\n",
      accepted, rejected, stats.devices,
      over_mqtt ? fmt::format("; {} MQTT messages received", stats.mqtt_messages) : std::string());
  gateway::Gateway* gw = node_.gateway();
  if (gw != nullptr) {
    const std::string base = fmt::format("127.0.0.1:{}", gw->port());
    fmt::print("         look at it (API key of iot-console):\n");
    auto client = http::HttpClient::create();
    if (!client.ok()) {
      ++failures_;
      return;
    }
    const GatewayCall calls[] = {
        {"/api/v1/iot/devices?type=flood_gauge&limit=2", iot_key_, 200, "flood gauges"},
        {"/api/v1/iot/devices/fg-03", iot_key_, 200, "a device with its latest readings"},
        {"/api/v1/iot/devices/fg-03/readings?metric=water_level&agg=1h", iot_key_, 200,
         "hourly rollups"},
        {"/api/v1/iot/alerts?device=fg-03", iot_key_, 200, "its alerts, raised to resolved"},
        {"/api/v1/iot/alerts", portal_key_, 403, "not in group iot"},
    };
    for (const GatewayCall& call : calls) run_call(**client, base, call);
  }
  std::fflush(stdout);
}

bool Demo::publish_over_mqtt(const std::vector<fleet::Reading>& readings) {
  fleet::DeviceFleet* f = node_.fleet();
  try {
    if (!devices_mqtt_) {
      devices_mqtt_ = std::make_unique<mqtt::async_client>(
          mqtt_uri_, fmt::format("civicbus-demo-devices-{}", ::getpid()));
      auto opts = mqtt::connect_options_builder().clean_session(true).finalize();
      devices_mqtt_->connect(opts)->wait();
    }
    const std::uint64_t before = f->stats().readings_accepted;
    std::vector<mqtt::delivery_token_ptr> tokens;
    for (const auto& r : readings) {
      const std::string body =
          fmt::format(R"({{"ts":{},"values":{{"{}":{}}}}})", r.time, r.metric, r.value);
      tokens.push_back(devices_mqtt_->publish(
          fmt::format("civicbus/devices/{}/telemetry", r.device_id), body, 1, false));
    }
    for (auto& t : tokens) t->wait();
    // QoS 1 is acknowledged by mosquitto; the node receives the messages on its own link.
    const auto deadline = SteadyClock::now() + 5s;
    while (f->stats().readings_accepted < before + readings.size()) {
      if (SteadyClock::now() > deadline) {
        fmt::print("         the fleet did not receive the gauges' MQTT messages in 5 s\n");
        return false;
      }
      std::this_thread::sleep_for(1ms);
    }
    return true;
  } catch (const mqtt::exception& e) {
    fmt::print("         MQTT publish to {} failed: {}\n", mqtt_uri_, e.what());
    return false;
  }
}

int Demo::run() {
  fmt::print("\n");
  if (Status s = setup(); !s.ok()) return fail(s);
  if (Status s = subscribe(); !s.ok()) return fail(s);
  if (Status s = setup_gateway(); !s.ok()) return fail(s);
  show_refusal_and_dedup();
  if (Status s = traffic(); !s.ok()) return fail(s);
  drain("after traffic");
  if (Status s = replay_dlq(); !s.ok()) return fail(s);
  show_pii();
  exercise_gateway();
  fleet_tour();
  connectors_tour();
  mdm_tour();
  bool audit_ok = verify_audit();
  summary();
  stop_subscriptions();
  if (!audit_ok) return fail("the audit log did not verify");
  if (failures_ > 0) {
    return fail(fmt::format("the demo saw {} unexpected result{} (see above)", failures_,
                            failures_ == 1 ? "" : "s"));
  }
  fmt::print("\ndemo finished: {} events published, {} delivered in total\n", acked_.load(), [&] {
    std::int64_t total = 0;
    for (const auto& [name, s] : stats_) total += s.delivered.load();
    return total;
  }());
  if (serve_) serve_gateway();
  return kExitOk;
}

}  // namespace

int run_demo(const Args& args) {
  auto duration = parse_duration(args.value_or("duration", "5s"));
  if (!duration.ok())
    return usage_error("demo", fmt::format("--duration: {}", duration.status().message()));
  if (*duration < 500ms || *duration > std::chrono::hours(24)) {
    return usage_error("demo", "--duration must be between 500ms and 24h");
  }
  std::int64_t rate = 400;
  if (auto text = args.value("rate")) {
    char* end = nullptr;
    long long v = std::strtoll(text->c_str(), &end, 10);
    if (end == text->c_str() || *end != '\0' || v < 1 || v > 1'000'000) {
      return usage_error("demo", fmt::format("--rate must be a number of events per second between "
                                             "1 and 1000000; got '{}'",
                                             *text));
    }
    rate = v;
  }

  std::uint16_t gateway_port = 0;
  if (auto text = args.value("gateway-port")) {
    char* end = nullptr;
    long v = std::strtol(text->c_str(), &end, 10);
    if (end == text->c_str() || *end != '\0' || v < 0 || v > 65535) {
      return usage_error("demo", fmt::format("--gateway-port must be a port number (0 for any "
                                             "free one); got '{}'",
                                             *text));
    }
    gateway_port = static_cast<std::uint16_t>(v);
  }

  DataDir dir;
  if (auto given = args.value("data-dir")) {
    if (given->empty()) return usage_error("demo", "--data-dir must not be empty");
    dir.path = *given;
  } else {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/civicbus-demo-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      return fail(fmt::format("cannot create a temporary directory from '{}'", tmpl));
    }
    dir.path = tmpl;
    dir.remove = !args.has("keep");
  }
  install_stop_handlers();

  NodeOptions options;
  options.name = "civicbus-demo";
  options.data_dir = dir.path;
  options.generate_master_key = true;
  options.logging.level = args.has("verbose") ? LogLevel::kInfo : LogLevel::kError;
  options.broker.maintenance_interval = 500ms;
  options.broker.node_source = "civicbus://demo";

  // The legacy permits system behind the gateway, on a loopback port of its own. Declared
  // before the node, so it outlives the gateway that proxies to it.
  http::HttpServerOptions upstream_options;
  upstream_options.bind_address = "127.0.0.1";
  http::HttpServer upstream(upstream_options, legacy_permits);
  auto upstream_port = upstream.start();
  if (!upstream_port.ok()) {
    return fail(upstream_port.status().with_context("starting the demo's legacy permits service"));
  }
  options.gateway = demo_gateway_options(*upstream_port, gateway_port);
  fleet::FleetOptions fleet;
  fleet.api_auth = {gateway::AuthMethod::kApiKey};
  fleet.api_groups = {"iot", "admin"};
  fleet.time_zone = "America/Toronto";
  std::string mqtt_uri;
  if (auto given = args.value("mqtt")) {
    if (!given->starts_with("tcp://")) {
      return usage_error("demo", fmt::format("--mqtt must be tcp://host:port; got '{}'", *given));
    }
    mqtt_uri = *given;
  } else if (port_open("127.0.0.1", 1883)) {
    mqtt_uri = "tcp://127.0.0.1:1883";
  }
  if (!mqtt_uri.empty()) {
    fleet.mqtt = fleet::FleetMqttOptions{};
    fleet.mqtt->server_uri = mqtt_uri;
    fleet.mqtt->client_id = fmt::format("civicbus-demo-{}", ::getpid());
  }
  options.fleet = std::move(fleet);
  write_demo_files(dir.path);
  options.connectors = demo_connectors(dir.path);

  fmt::print("civicbus demo: a municipal integration node, {} at {} events/s\n",
             format_duration(*duration), rate);
  fmt::print("data     {}{}\n", dir.path, dir.remove ? " (removed at exit; --keep keeps it)" : "");
  auto created = Node::create(std::move(options));
  if (!created.ok()) return fail(created.status());
  std::unique_ptr<Node> node = std::move(created).value();
  // The demo outlives the node: the log may still answer publishes while it closes.
  Demo demo(*node, *duration, rate, args.has("serve"), *upstream_port, mqtt_uri);
  int code = demo.run();
  demo.stop_subscriptions();
  node.reset();
  std::fflush(stdout);
  return code;
}

}  // namespace civicbus::cli
