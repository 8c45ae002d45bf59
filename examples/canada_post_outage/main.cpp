// canada_post_outage: the spec's "External System Outage Recovery" scenario. The permits module
// validates each application's address through the connector hub, which wraps every call in a
// circuit breaker. Canada Post's AddressComplete cannot run here, so an http::HttpServer on a
// loopback port stands in for its Find service (taking a JSON body, to keep the example short),
// and a small connector calls it with civicbus' HTTP client. The service goes down during a busy
// hour: after three consecutive failures the breaker opens, later calls fail fast without
// reaching it, every request is queued durably, an address validated before is answered from the
// cache, and integration.connector_health_changed tells operations. No application is refused.
// When the service is back, the health check after the cool-down closes the breaker and the
// queued requests replay in order. The hub's clock is a ManualClock (no waiting for cool-downs).
// Exits non-zero when an outcome differs from the scenario's.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "civicbus/connect/hub.hpp"
#include "civicbus/http/client.hpp"
#include "civicbus/http/server.hpp"
#include "civicbus/node/node.hpp"

using namespace civicbus;
namespace fs = std::filesystem;

namespace {

int fail(const std::string& what) {
  std::fprintf(stderr, "canada_post_outage: %s\n", what.c_str());
  return 1;
}

// The address service as a connector with one operation, validate_address. (The built-in
// canada_post connector reads address lists as a stream; it offers no call() operation.)
class AddressServiceConnector final : public connect::Connector {
 public:
  explicit AddressServiceConnector(std::vector<std::string>* validated) : validated_(validated) {
    spec_.name = "address_service";
    spec_.config_schema = Json::parse(R"({"type":"object","required":["service","api_key"],
        "properties":{"service":{"type":"string"},"api_key":{"type":"string","secret":true}}})")
                              .value();
  }
  const connect::ConnectorSpec& spec() const override { return spec_; }
  std::vector<std::string> operations() const override { return {"validate_address"}; }
  Result<std::vector<connect::StreamSpec>> discover(const connect::ConnectorContext&) override {
    return std::vector<connect::StreamSpec>{};
  }
  // The health check: a Find the service must answer.
  Status check(const connect::ConnectorContext& context) override {
    return find(context, "1 Main St").status();
  }
  Result<Json> call(const connect::ConnectorContext& context, std::string_view,
                    const Json& input) override {
    CIVICBUS_ASSIGN_OR_RETURN(Json item, find(context, input.get_string("address")));
    validated_->push_back(input.get_string("application"));  // hub calls are serialised
    return Json::object(
        {{"address_id", item.get_string("Id")}, {"label", item.get_string("Text")}});
  }

 private:
  Result<Json> find(const connect::ConnectorContext& context, const std::string& term) {
    if (!client_) {
      http::HttpClientOptions options;
      options.request_timeout = context.timeout;  // the connection's resilience.timeout
      CIVICBUS_ASSIGN_OR_RETURN(client_, http::HttpClient::create(options));
    }
    http::HttpRequest request;
    request.method = "POST";
    request.target = "/AddressComplete/Interactive/Find/v2.10/json3.ws";
    request.headers.add("Content-Type", "application/json");
    request.body =
        Json::object({{"Key", context.config.get_string("api_key")}, {"SearchTerm", term}}).dump();
    CIVICBUS_ASSIGN_OR_RETURN(auto response,
                              client_->send(context.config.get_string("service"), request));
    if (response.status >= 500)
      return unavailable("address service answered " + std::to_string(response.status));
    CIVICBUS_ASSIGN_OR_RETURN(Json body, Json::parse(response.body));
    const Json* items = body.find("Items");
    if (items == nullptr || items->size() == 0) return not_found("no address for '" + term + "'");
    return items->as_array()[0];
  }

  connect::ConnectorSpec spec_;
  std::vector<std::string>* validated_;
  std::unique_ptr<http::HttpClient> client_;
};

}  // namespace

int main() {
  const fs::path dir = fs::temp_directory_path() / ("civicbus-cp-" + std::to_string(::getpid()));
  NodeOptions node_options;
  node_options.data_dir = dir.string();
  node_options.worker_threads = 2;
  node_options.generate_master_key = true;  // the hub's credential vault is sealed under it
  node_options.logging.level = LogLevel::kWarn;
  auto node = Node::create(node_options);
  if (!node.ok()) return fail("creating the node: " + node.status().to_string());

  // The stand-in for Canada Post: answers Find, or 503 while `down`.
  std::atomic<bool> down{false};
  std::atomic<int> reached{0};
  http::HttpServer service({}, [&](const http::HttpRequest& request) {
    ++reached;
    if (down) return http::HttpResponse::text(503, "service unavailable");
    const Json term = Json::parse(request.body).value_or(Json::object());
    http::HttpResponse ok;
    ok.headers.add("Content-Type", "application/json");
    ok.body = Json::object({{"Items", Json::array({Json::object(
                                          {{"Id", "CAN|" + std::to_string(reached.load())},
                                           {"Text", term.get_string("SearchTerm") + ", OTTAWA ON"},
                                           {"Next", "Retrieve"}})})}})
                  .dump();
    return ok;
  });
  auto port = service.start();
  if (!port.ok()) return fail("starting the stand-in service: " + port.status().to_string());

  // The hub with the connection; three consecutive failures open the breaker for 30 s.
  std::vector<std::string> validated;  // applications whose address the service validated
  connect::ConnectorCatalog catalog = connect::ConnectorCatalog::builtin();
  if (Status s = catalog.add([&] { return std::make_unique<AddressServiceConnector>(&validated); });
      !s.ok()) {
    return fail(s.to_string());
  }
  ManualClock clock;
  connect::HubDeps deps;
  deps.db = &(*node)->database();
  deps.master_key = (*node)->options().broker.master_key;
  deps.catalog = &catalog;
  deps.broker = &(*node)->broker();
  deps.clock = &clock;
  connect::HubOptions hub_options;
  hub_options.data_dir = dir.string();
  auto hub = connect::ConnectorHub::open(hub_options, deps);
  if (!hub.ok()) return fail("opening the hub: " + hub.status().to_string());
  connect::ConnectionOptions canada_post;
  canada_post.name = "canada-post";
  canada_post.connector = "address_service";
  canada_post.config = Json::object(
      {{"service", "127.0.0.1:" + std::to_string(*port)}, {"api_key", "AA11-BB22-CC33-DD44"}});
  canada_post.resilience.max_attempts = 1;
  canada_post.resilience.failure_threshold = 3;
  canada_post.resilience.open_for = std::chrono::seconds(30);
  if (Status s = (*hub)->add(canada_post); !s.ok()) return fail(s.to_string());

  // 3-4. Operations: the health events, and an alert to the on-call staff for each.
  std::mutex mu;
  std::vector<std::string> health;
  broker::ConsumerGroupOptions ops;
  ops.group = "operations-dashboard";
  ops.topics = {"integration.connector_health_changed"};
  auto dashboard = (*node)->broker().subscribe(ops, [&](const broker::DeliveredEvent& e) {
    std::printf("  dashboard: %s is %s; email and SMS sent to operations\n",
                e.event.data().get_string("connection").c_str(),
                e.event.data().get_string("to").c_str());
    std::lock_guard lock(mu);
    health.push_back(e.event.data().get_string("to"));
    return Status();
  });
  if (!dashboard.ok()) return fail(dashboard.status().to_string());

  // The permits module: each application validates its address, whatever the service's state.
  int accepted = 0;
  auto apply = [&](const std::string& application, const std::string& address) -> Status {
    auto r = (*hub)->call("canada-post", "validate_address",
                          Json::object({{"application", application}, {"address", address}}),
                          /*cache_key=*/address);
    if (!r.ok()) return r.status();
    const char* how = r->source == connect::CallResult::Source::kLive    ? "validated"
                      : r->source == connect::CallResult::Source::kCache ? "from cache, queued"
                                                                         : "queued";
    std::printf("  %s %-22s %s\n", application.c_str(), address.c_str(), how);
    ++accepted;
    return Status();
  };
  const std::vector<std::string> before = {"110 Laurier Ave W", "200 Elgin St", "75 Albert St"};
  const std::vector<std::string> during = {"1 Rideau St",    "450 Bank St", "200 Elgin St",
                                           "30 Metcalfe St", "99 Bank St",  "12 Sparks St"};
  std::printf("the service is up:\n");
  for (std::size_t i = 0; i < before.size(); ++i) {
    if (Status s = apply("BP-" + std::to_string(100 + i), before[i]); !s.ok())
      return fail(s.message());
  }
  // 1-2. The outage: three failures open the breaker; then calls fail fast, queued.
  down = true;
  std::printf("the service is down:\n");
  int reached_while_open = 0;
  for (std::size_t i = 0; i < during.size(); ++i) {
    if (i == 3) reached_while_open = reached;
    if (Status s = apply("BP-" + std::to_string(200 + i), during[i]); !s.ok())
      return fail(s.message());
  }
  auto status = (*hub)->status("canada-post");
  if (!status.ok()) return fail(status.status().to_string());
  std::printf(
      "health %s, %lld requests queued, %d applications accepted, %d calls reached the "
      "service once the breaker was open\n",
      std::string(connect::health_name(status->health)).c_str(),
      static_cast<long long>(status->queued), accepted, reached - reached_while_open);
  if (status->health != connect::Health::kDown || status->queued != 6 || accepted != 9 ||
      reached != reached_while_open) {
    return fail("expected the breaker open, 6 queued, 9 accepted, no call reaching the service");
  }

  // 6. Back: after the cool-down the health check closes the breaker and the queue replays.
  down = false;
  clock.advance(std::chrono::seconds(31));
  if (Status s = (*hub)->check("canada-post"); !s.ok()) return fail("health check: " + s.message());
  status = (*hub)->status("canada-post");
  std::printf("the service is back: health %s, %lld queued; validated in order:",
              std::string(connect::health_name(status->health)).c_str(),
              static_cast<long long>(status->queued));
  for (const auto& a : validated) std::printf(" %s", a.c_str());
  std::printf("\n");
  const std::vector<std::string> expected = {"BP-100", "BP-101", "BP-102", "BP-200", "BP-201",
                                             "BP-202", "BP-203", "BP-204", "BP-205"};
  if (status->health != connect::Health::kHealthy || status->queued != 0 || validated != expected) {
    return fail("expected the breaker closed and the six queued requests replayed in order");
  }
  // The health events reach the dashboard asynchronously.
  auto events_seen = [&] {
    std::lock_guard lock(mu);
    return health.size();
  };
  for (int i = 0; i < 500 && events_seen() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  (*dashboard)->stop();
  if (health != std::vector<std::string>{"down", "degraded", "healthy"}) {
    return fail("expected the health events down, degraded, healthy");
  }
  hub->reset();
  service.stop();
  node->reset();
  fs::remove_all(dir);
  std::printf("ok: no application refused during the outage; recovery was automatic\n");
  return 0;
}
