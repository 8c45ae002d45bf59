// The HTTP connector family against stand-in servers (civicbus http::HttpServer
// on loopback, port 0) that speak each protocol's JSON shapes.
#include "connect/http_connectors.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "civicbus/connect/connector.hpp"
#include "civicbus/core/crypto.hpp"
#include "civicbus/http/client.hpp"
#include "civicbus/http/server.hpp"
#include "connect/canada_post_client.hpp"
#include "connect/rest_client.hpp"
#include "support/test_support.hpp"

namespace civicbus::connect {
namespace {

using http::HttpRequest;
using http::HttpResponder;
using http::HttpResponse;
using http::HttpServer;
using http::HttpServerOptions;
using namespace std::chrono_literals;

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else if (s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::map<std::string, std::string> parse_form(std::string_view text) {
  std::map<std::string, std::string> out;
  while (!text.empty()) {
    auto amp = text.find('&');
    std::string_view pair = text.substr(0, amp);
    auto eq = pair.find('=');
    out[percent_decode(pair.substr(0, eq))] =
        eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    text.remove_prefix(amp + 1);
  }
  return out;
}

HttpResponse json_response(int status, const Json& body) {
  return HttpResponse::text(status, body.dump(), "application/json");
}

// A stand-in server on 127.0.0.1 with a blocking handler; logs each request
// target.
struct StandIn {
  explicit StandIn(std::function<HttpResponse(const HttpRequest&)> handler) {
    HttpServerOptions options;
    options.threads = 2;
    server = std::make_unique<HttpServer>(options, [this, handler](const HttpRequest& r) {
      {
        std::lock_guard lock(mutex);
        targets.push_back(r.target);
      }
      return handler(r);
    });
    auto bound = server->start();
    REQUIRE(bound.ok());
    port = *bound;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
  std::vector<std::string> seen() {
    std::lock_guard lock(mutex);
    return targets;
  }
  std::unique_ptr<HttpServer> server;
  std::uint16_t port = 0;
  std::mutex mutex;
  std::vector<std::string> targets;
};

// Five permits, updated one minute apart.
Json permit(int i) {
  return Json::object({{"id", i},
                       {"kind", i % 2 == 0 ? "demolition" : "building"},
                       {"updated_at", "2026-11-30T10:0" + std::to_string(i) + ":00Z"}});
}

Json permits(int from, int to) {
  Json list = Json::array();
  for (int i = from; i <= to; ++i) list.push_back(permit(i));
  return list;
}

std::vector<std::int64_t> ids(const CollectingEmitter& out) {
  std::vector<std::int64_t> result;
  for (const auto& batch : out.batches) {
    int column = batch.column_index("id");
    for (const auto& r : batch.records) result.push_back(RecordBatch::value(r, column).as_int());
  }
  return result;
}

ConnectorContext context_with(Json config) {
  ConnectorContext context;
  context.config = std::move(config);
  context.timeout = 5s;
  return context;
}

std::unique_ptr<Connector> make(std::string_view name) {
  auto catalog = ConnectorCatalog::builtin();
  auto connector = catalog.create(name);
  REQUIRE_MESSAGE(connector.ok(), connector.status().to_string());
  return std::move(connector).value();
}

WriteRequest write_to(std::string stream) {
  WriteRequest request;
  request.stream = std::move(stream);
  return request;
}

const std::vector<std::int64_t> kAllFive{1, 2, 3, 4, 5};

TEST_CASE("http connectors are in the builtin catalog with secrets marked") {
  auto catalog = ConnectorCatalog::builtin();
  for (const char* name : {"http", "webhook", "canada_post", "arcgis", "open311"}) {
    CHECK_MESSAGE(catalog.contains(name), name);
  }
  auto http = make("http");
  auto secrets = http->spec().secret_pointers();
  CHECK(std::find(secrets.begin(), secrets.end(), "/auth/token") != secrets.end());
  CHECK(std::find(secrets.begin(), secrets.end(), "/auth/client_secret") != secrets.end());
  CHECK(make("canada_post")->spec().secret_pointers() == std::vector<std::string>{"/api_key"});
  CHECK(make("webhook")->spec().secret_pointers() == std::vector<std::string>{"/secret"});
  CHECK(make("open311")->spec().is_sink);
}

TEST_CASE("link header parsing finds rel=next among several links") {
  http::HttpHeaders headers;
  headers.add("Link",
              "<https://a.example/p?page=1>; rel=\"first\", "
              "<https://a.example/p?page=3>; "
              "rel=\"prev next\"");
  CHECK(detail::next_link(headers) == "https://a.example/p?page=3");
  http::HttpHeaders none;
  none.add("Link", "</p?page=1>; rel=prev");
  CHECK(detail::next_link(none).empty());
}

TEST_CASE(
    "http source pages by page number with a bearer token and resumes by "
    "cursor") {
  StandIn api([](const HttpRequest& r) {
    if (r.headers.get("Authorization").value_or("") != "Bearer s3cret") {
      return json_response(401, Json::object({{"error", "bad token"}}));
    }
    auto q = parse_form(r.query);
    int page = std::stoi(q["page"]);
    int since = 0;
    if (q.count("updated_since")) since = q["updated_since"][15] - '0';  // the minute digit
    Json all = permits(since + 1, 5);
    Json data = Json::array();
    for (std::size_t i = (page - 1) * 2; i < all.size() && i < std::size_t(page * 2); ++i) {
      data.push_back(all.as_array()[i]);
    }
    return json_response(200, Json::object({{"data", data}, {"page", page}}));
  });
  auto connector = make("http");
  Json config = Json::object(
      {{"base_url", api.url()},
       {"path", "/permits"},
       {"records_pointer", "/data"},
       {"primary_key", Json::array({"id"})},
       {"cursor_field", "updated_at"},
       {"cursor_param", "updated_since"},
       {"pagination",
        Json::object({{"type", "page_number"}, {"page_size", 2}, {"size_param", "per_page"}})},
       {"auth", Json::object({{"type", "bearer"}, {"token", "s3cret"}})}});
  REQUIRE(validate_config(connector->spec(), config).ok());
  auto context = context_with(config);
  REQUIRE(connector->check(context).ok());

  auto streams = connector->discover(context);
  REQUIRE(streams.ok());
  REQUIRE(streams->size() == 1);
  CHECK((*streams)[0].name == "records");
  CHECK((*streams)[0].field("id")->type == FieldType::kInteger);
  CHECK((*streams)[0].field("updated_at")->type == FieldType::kTimestamp);
  CHECK((*streams)[0].cursor_field == "updated_at");

  CollectingEmitter out;
  ReadRequest request;
  REQUIRE(connector->read(context, request, out).ok());
  CHECK(ids(out) == kAllFive);
  CHECK(out.states["records"]["cursor"] == Json("2026-11-30T10:05:00Z"));
  CHECK(api.seen().back().find("per_page=2") != std::string::npos);

  // The next run carries the cursor and gets only what changed after it.
  Json state = out.states;
  CollectingEmitter again;
  request.state = state;
  REQUIRE(connector->read(context, request, again).ok());
  CHECK(again.record_count() == 0);
  CHECK(api.seen().back().find("updated_since=2026-11-30T10%3A05%3A00Z") != std::string::npos);

  // A wrong token is a clear check() error.
  Json wrong = config;
  wrong["auth"].set("token", "nope");
  Status checked = connector->check(context_with(wrong));
  CHECK(checked.code() == ErrorCode::kUnauthenticated);
  CHECK(checked.message().find("401") != std::string::npos);
  CHECK(checked.message().find("nope") == std::string::npos);
}

TEST_CASE(
    "http source follows offset, cursor token, next URL and Link header "
    "pagination") {
  StandIn api([](const HttpRequest& r) {
    auto q = parse_form(r.query);
    if (r.path == "/offset") {
      if (q["key"] != "k1") return json_response(403, Json::object());
      int offset = std::stoi(q["offset"]);
      int limit = std::stoi(q["limit"]);
      return json_response(200, permits(offset + 1, std::min(5, offset + limit)));
    }
    if (r.path == "/cursor") {
      if (r.headers.get("Authorization").value_or("") !=
          "Basic " + crypto::base64_encode("ana:pw")) {
        return json_response(401, Json::object());
      }
      int from = q.count("cursor") ? std::stoi(q["cursor"]) : 1;
      int to = std::min(5, from + 1);
      Json body = Json::object({{"items", permits(from, to)}});
      body.set("meta", Json::object({{"next", to < 5 ? Json(std::to_string(to + 1)) : Json()}}));
      return json_response(200, body);
    }
    if (r.path == "/next") {
      if (r.headers.get("X-Api-Key").value_or("") != "hk")
        return json_response(401, Json::object());
      int from = q.count("from") ? std::stoi(q["from"]) : 1;
      int to = std::min(5, from + 1);
      Json body = Json::object({{"results", permits(from, to)}});
      body.set("next", to < 5 ? Json("/next?from=" + std::to_string(to + 1)) : Json());
      return json_response(200, body);
    }
    if (r.path == "/link") {
      int from = q.count("from") ? std::stoi(q["from"]) : 1;
      int to = std::min(5, from + 1);
      HttpResponse response = json_response(200, permits(from, to));
      response.headers.add("Link", "</link?from=1>; rel=\"first\"");
      if (to < 5)
        response.headers.add("Link", "</link?from=" + std::to_string(to + 1) + ">; rel=\"next\"");
      return response;
    }
    return json_response(404, Json::object());
  });
  auto connector = make("http");
  struct Case {
    const char* name;
    Json config;
  };
  std::vector<Case> cases{
      {"offset", Json::object({{"path", "/offset"},
                               {"pagination", Json::object({{"type", "offset"}, {"page_size", 2}})},
                               {"auth", Json::object({{"type", "api_key"},
                                                      {"in", "query"},
                                                      {"name", "key"},
                                                      {"key", "k1"}})}})},
      {"cursor",
       Json::object(
           {{"path", "/cursor"},
            {"records_pointer", "/items"},
            {"pagination", Json::object({{"type", "cursor"}, {"cursor_pointer", "/meta/next"}})},
            {"auth", Json::object({{"type", "basic"}, {"username", "ana"}, {"password", "pw"}})}})},
      {"next_url",
       Json::object(
           {{"path", "/next"},
            {"records_pointer", "/results"},
            {"pagination", Json::object({{"type", "next_url"}, {"next_url_pointer", "/next"}})},
            {"auth", Json::object({{"type", "api_key"}, {"name", "X-Api-Key"}, {"key", "hk"}})}})},
      {"link_header",
       Json::object({{"path", "/link"}, {"pagination", Json::object({{"type", "link_header"}})}})},
  };
  for (auto& c : cases) {
    CAPTURE(c.name);
    c.config.set("base_url", api.url());
    REQUIRE(validate_config(connector->spec(), c.config).ok());
    CollectingEmitter out;
    Status read = connector->read(context_with(c.config), ReadRequest{}, out);
    REQUIRE_MESSAGE(read.ok(), read.to_string());
    CHECK(ids(out) == kAllFive);
  }
  // max_records stops early.
  CollectingEmitter sample;
  ReadRequest limited;
  limited.max_records = 3;
  REQUIRE(connector->read(context_with(cases[0].config), limited, sample).ok());
  CHECK(sample.record_count() == 3);
}

TEST_CASE("http source retries 503 and honours Retry-After on 429") {
  std::atomic<int> calls{0};
  StandIn api([&](const HttpRequest& r) {
    int n = calls.fetch_add(1);
    if (r.path == "/flaky" && n == 0) return HttpResponse::text(503, "busy");
    if (r.path == "/limited" && n == 0) {
      HttpResponse response = HttpResponse::text(429, "slow down");
      response.headers.add("Retry-After", "1");
      return response;
    }
    if (r.path == "/down") return HttpResponse::text(503, "down for maintenance");
    return json_response(200, permits(1, 2));
  });
  auto connector = make("http");
  Json config =
      Json::object({{"base_url", api.url()},
                    {"path", "/flaky"},
                    {"retry", Json::object({{"max_retries", 2}, {"initial_backoff_ms", 10}})}});
  CollectingEmitter out;
  REQUIRE(connector->read(context_with(config), ReadRequest{}, out).ok());
  CHECK(out.record_count() == 2);
  CHECK(calls.load() == 2);

  calls = 0;
  config.set("path", "/limited");
  auto start = std::chrono::steady_clock::now();
  CollectingEmitter limited;
  REQUIRE(connector->read(context_with(config), ReadRequest{}, limited).ok());
  CHECK(std::chrono::steady_clock::now() - start >= 900ms);  // waited as asked, not 10 ms
  CHECK(limited.record_count() == 2);

  // Bounded: a service that stays down is kUnavailable after 1 + max_retries
  // attempts.
  calls = 0;
  config.set("path", "/down");
  CollectingEmitter down;
  Status status = connector->read(context_with(config), ReadRequest{}, down);
  CHECK(status.code() == ErrorCode::kUnavailable);
  CHECK(calls.load() == 3);
}

TEST_CASE(
    "http source ends a read cut by a disconnect with kUnavailable after "
    "the complete pages") {
  std::mutex mutex;
  std::vector<HttpResponder> held;
  std::atomic<bool> page_two_asked{false};
  HttpServerOptions options;
  auto server = std::make_unique<HttpServer>(options, [&](HttpRequest r, HttpResponder responder) {
    auto q = parse_form(r.query);
    if (q["page"] == "1") {
      responder.send(json_response(200, Json::object({{"data", permits(1, 2)}})));
      return;
    }
    // Page 2: the server goes away before answering.
    std::lock_guard lock(mutex);
    held.push_back(std::move(responder));
    page_two_asked = true;
  });
  auto port = server->start();
  REQUIRE(port.ok());
  auto connector = make("http");
  Json config =
      Json::object({{"base_url", "http://127.0.0.1:" + std::to_string(*port)},
                    {"path", "/permits"},
                    {"records_pointer", "/data"},
                    {"cursor_field", "updated_at"},
                    {"pagination", Json::object({{"type", "page_number"}, {"page_size", 2}})},
                    {"retry", Json::object({{"max_retries", 1}, {"initial_backoff_ms", 10}})}});
  CollectingEmitter out;
  Status status;
  std::thread reader([&] { status = connector->read(context_with(config), ReadRequest{}, out); });
  REQUIRE(testing::wait_until([&] { return page_two_asked.load(); }));
  server->stop();
  {
    std::lock_guard lock(mutex);
    held.clear();
  }
  reader.join();
  CHECK(status.code() == ErrorCode::kUnavailable);
  CHECK(status.message().find("page 2") != std::string::npos);
  CHECK(ids(out) == std::vector<std::int64_t>{1, 2});
  CHECK(out.states["records"]["cursor"] == Json("2026-11-30T10:02:00Z"));
}

TEST_CASE(
    "http source fetches an OAuth token once, caches it and refreshes it "
    "on 401") {
  std::atomic<int> tokens_issued{0};
  std::mutex mutex;
  std::string valid_token;
  StandIn api([&](const HttpRequest& r) {
    if (r.path == "/oauth/token") {
      auto form = parse_form(r.body);
      if (form["grant_type"] != "client_credentials" ||
          r.headers.get("Authorization").value_or("") !=
              "Basic " + crypto::base64_encode("app:app-secret")) {
        return json_response(401, Json::object({{"error", "invalid_client"}}));
      }
      std::lock_guard lock(mutex);
      valid_token = "tok-" + std::to_string(tokens_issued.fetch_add(1) + 1);
      return json_response(200, Json::object({{"access_token", valid_token},
                                              {"token_type", "Bearer"},
                                              {"expires_in", 3600}}));
    }
    std::lock_guard lock(mutex);
    if (r.headers.get("Authorization").value_or("") != "Bearer " + valid_token) {
      return json_response(401, Json::object({{"error", "invalid_token"}}));
    }
    auto q = parse_form(r.query);
    int page = std::stoi(q["page"]);
    if (page == 2) valid_token = "revoked-by-server";  // the token dies after page 2
    return json_response(200, page <= 3 ? permits(page, page) : Json::array());
  });
  auto connector = make("http");
  Json config = Json::object({{"base_url", api.url()},
                              {"path", "/permits"},
                              {"pagination", Json::object({{"type", "page_number"}})},
                              {"auth", Json::object({{"type", "oauth2_client_credentials"},
                                                     {"token_url", api.url() + "/oauth/token"},
                                                     {"client_id", "app"},
                                                     {"client_secret", "app-secret"}})}});
  CollectingEmitter out;
  Status read = connector->read(context_with(config), ReadRequest{}, out);
  REQUIRE_MESSAGE(read.ok(), read.to_string());
  CHECK(ids(out) == std::vector<std::int64_t>{1, 2, 3});
  CHECK(tokens_issued.load() == 2);  // one for pages 1-2, one after the 401 on page 3

  Json bad = config;
  bad["auth"].set("client_secret", "wrong");
  Status checked = connector->check(context_with(bad));
  CHECK(checked.code() == ErrorCode::kUnauthenticated);
  CHECK(checked.message().find("wrong") == std::string::npos);
}

TEST_CASE("http sink posts each record or a batch and rejects what the API refuses") {
  std::mutex mutex;
  std::vector<Json> received;
  StandIn api([&](const HttpRequest& r) {
    auto body = Json::parse(r.body);
    if (!body.ok()) return HttpResponse::text(400, "bad json");
    std::lock_guard lock(mutex);
    if (body->is_object() && body->get_string("kind").empty()) {
      return json_response(422, Json::object({{"error", "kind is required"}}));
    }
    received.push_back(*body);
    return json_response(201, Json::object());
  });
  auto connector = make("http");
  RecordBatch batch("permits", {});
  batch.append_object(permit(1), 1);
  batch.append_object(Json::object({{"id", 2}}), 2);
  batch.append_object(permit(3), 3);
  Json config = Json::object({{"base_url", api.url()}, {"write", Json::object({{"path", "/in"}})}});
  auto result = connector->write(context_with(config), write_to("permits"), batch);
  REQUIRE(result.ok());
  CHECK(result->written == 2);
  REQUIRE(result->rejected.size() == 1);
  CHECK(result->rejected[0].position == 2);
  CHECK(result->rejected[0].reason.find("kind is required") != std::string::npos);

  config["write"].set("batch", true);
  RecordBatch good("permits", {});
  good.append_object(permit(4), 4);
  good.append_object(permit(5), 5);
  auto batched = connector->write(context_with(config), write_to("permits"), good);
  REQUIRE(batched.ok());
  CHECK(batched->written == 2);
  std::lock_guard lock(mutex);
  REQUIRE(received.size() == 3);
  CHECK(received[2].is_array());
  CHECK(received[2].size() == 2);
}

// Posts to the webhook listener on loopback.
Result<http::HttpResponse> post(std::uint16_t port, std::string path, std::string body,
                                std::string signature = {}) {
  auto client = http::HttpClient::create();
  if (!client.ok()) return client.status();
  HttpRequest request;
  request.method = "POST";
  request.target = std::move(path);
  request.body = std::move(body);
  request.headers.set("Content-Type", "application/json");
  if (!signature.empty()) request.headers.set("X-Signature", signature);
  return (*client)->send("127.0.0.1:" + std::to_string(port), std::move(request));
}

TEST_CASE(
    "webhook source verifies signatures, stores before 202 and survives "
    "a restart") {
  testing::TempDir dir;
  Json config = Json::object(
      {{"path", "/hooks/permits"}, {"port", 0}, {"secret", "shh"}, {"max_body_bytes", 4096}});
  ConnectorContext context = context_with(config);
  context.work_dir = dir.file("webhook");
  auto sign = [](std::string_view body) {
    return "sha256=" + crypto::to_hex(crypto::hmac_sha256("shh", body));
  };
  std::string one = R"({"permit":"A-1","status":"issued"})";
  std::string two = R"([{"permit":"A-2"},{"permit":"A-3"}])";
  {
    auto connector = make("webhook");
    CHECK(detail::webhook_listening_port(*connector) == 0);
    REQUIRE(connector->check(context).ok());
    std::uint16_t port = detail::webhook_listening_port(*connector);
    REQUIRE(port != 0);

    auto good = post(port, "/hooks/permits", one, sign(one));
    REQUIRE(good.ok());
    CHECK(good->status == 202);
    auto bad = post(port, "/hooks/permits", two, sign("something else"));
    REQUIRE(bad.ok());
    CHECK(bad->status == 401);
    auto unsigned_post = post(port, "/hooks/permits", two);
    REQUIRE(unsigned_post.ok());
    CHECK(unsigned_post->status == 401);
    auto wrong_path = post(port, "/elsewhere", one, sign(one));
    REQUIRE(wrong_path.ok());
    CHECK(wrong_path->status == 404);
    auto too_big = post(port, "/hooks/permits", std::string(8192, ' ') + one);
    REQUIRE(too_big.ok());
    CHECK(too_big->status == 413);
    auto not_objects = post(port, "/hooks/permits", "[1,2]", sign("[1,2]"));
    REQUIRE(not_objects.ok());
    CHECK(not_objects->status == 400);
    auto batch = post(port, "/hooks/permits", two, sign(two));
    REQUIRE(batch.ok());
    CHECK(batch->status == 202);

    CollectingEmitter out;
    REQUIRE(connector->read(context, ReadRequest{}, out).ok());
    REQUIRE(out.record_count() == 3);
    CHECK(out.batches[0].to_object(out.batches[0].records[0])["permit"] == Json("A-1"));
    CHECK(out.states["webhook"]["cursor"] == Json(3));
    // Destroying the connector stops the listener.
  }
  // One more delivery is stored by a second instance; the first instance's
  // records are still in the inbox and the state cursor skips them.
  auto restarted = make("webhook");
  REQUIRE(restarted->check(context).ok());
  std::uint16_t port = detail::webhook_listening_port(*restarted);
  std::string three = R"({"permit":"A-4"})";
  auto late = post(port, "/hooks/permits", three, sign(three));
  REQUIRE(late.ok());
  CHECK(late->status == 202);

  CollectingEmitter everything;
  REQUIRE(restarted->read(context, ReadRequest{}, everything).ok());
  CHECK(everything.record_count() == 4);

  ReadRequest resume;
  resume.state = Json::object({{"webhook", Json::object({{"cursor", 3}})}});
  CollectingEmitter rest;
  REQUIRE(restarted->read(context, resume, rest).ok());
  REQUIRE(rest.record_count() == 1);
  CHECK(rest.batches[0].to_object(rest.batches[0].records[0])["permit"] == Json("A-4"));
  CHECK(rest.states["webhook"]["cursor"] == Json(4));

  // Without a work_dir there is nowhere durable to keep deliveries.
  auto no_dir = make("webhook");
  CHECK(no_dir->check(context_with(config)).code() == ErrorCode::kFailedPrecondition);
}

// AddressComplete stand-in: "24 Sussex" finds a street container, searching
// within it finds the address; "nowhere" finds nothing; "boom" fails the
// service.
StandIn address_complete() {
  return StandIn([](const HttpRequest& r) {
    auto q = parse_form(r.query);
    auto items = [](Json rows) { return json_response(200, Json::object({{"Items", rows}})); };
    if (q["Key"] != "AA11-BB22") {
      return items(Json::array({Json::object({{"Error", "2"},
                                              {"Description", "Unknown key"},
                                              {"Cause", "The key you are using is not valid"},
                                              {"Resolution", "Check the key"}})}));
    }
    if (r.path == "/AddressComplete/Interactive/Find/v2.10/json3.ws") {
      if (q["SearchTerm"] == "boom") return HttpResponse::text(500, "internal error");
      if (q["SearchTerm"] == "nowhere") return items(Json::array());
      if (q.count("LastId") == 0) {
        return items(Json::array({Json::object({{"Id", "CAN|ST|1"},
                                                {"Type", "Street"},
                                                {"Text", "Sussex Dr"},
                                                {"Highlight", "0-6"},
                                                {"Description", "Ottawa, ON - 12 Addresses"},
                                                {"Next", "Find"}})}));
      }
      CHECK(q["LastId"] == "CAN|ST|1");
      return items(Json::array({Json::object({{"Id", "CAN|PR|X24"},
                                              {"Type", "Address"},
                                              {"Text", "24 Sussex Dr"},
                                              {"Description", "Ottawa, ON, K1M 1M4"},
                                              {"Next", "Retrieve"}})}));
    }
    if (r.path == "/AddressComplete/Interactive/Retrieve/v2.11/json3.ws") {
      auto row = [](const char* language, const char* city) {
        return Json::object({{"Id", "CAN|PR|X24"},
                             {"Language", language},
                             {"Line1", "24 Sussex Dr"},
                             {"Line2", ""},
                             {"City", city},
                             {"ProvinceCode", "ON"},
                             {"PostalCode", "K1M 1M4"},
                             {"CountryIso2", "CA"},
                             {"Label", "24 Sussex Dr\nOTTAWA ON  K1M 1M4\nCANADA"}});
      };
      return items(Json::array({row("FRE", "Ottawa (FR)"), row("ENG", "Ottawa")}));
    }
    return HttpResponse::text(404, "no such service");
  });
}

TEST_CASE("canada_post validates addresses through Find and Retrieve") {
  StandIn service = address_complete();
  testing::TempDir dir;
  testing::write_file(dir.file("in.ndjson"), "{\"address\":\"nowhere\",\"ref\":7}\n\n");
  auto connector = make("canada_post");
  Json config = Json::object({{"base_url", service.url()},
                              {"api_key", "AA11-BB22"},
                              {"addresses", Json::array({"24 Sussex"})},
                              {"input_path", dir.file("in.ndjson")}});
  REQUIRE(validate_config(connector->spec(), config).ok());
  REQUIRE(connector->check(context_with(config)).ok());
  CollectingEmitter out;
  REQUIRE(connector->read(context_with(config), ReadRequest{}, out).ok());
  REQUIRE(out.record_count() == 2);
  Json first = out.batches[0].to_object(out.batches[0].records[0]);
  CHECK(first["status"] == Json("valid"));
  CHECK(first["line1"] == Json("24 Sussex Dr"));
  CHECK(first["city"] == Json("Ottawa"));  // the English row
  CHECK(first["province_code"] == Json("ON"));
  CHECK(first["postal_code"] == Json("K1M 1M4"));
  Json second = out.batches.back().to_object(out.batches.back().records.back());
  CHECK(second["status"] == Json("not_found"));
  CHECK(second["ref"] == Json(7));
  CHECK(out.states["addresses"]["cursor"] == Json(2));

  // Wrong key: check() says so, without quoting it.
  Json wrong = config;
  wrong.set("api_key", "ZZ99-ZZ99");
  Status checked = connector->check(context_with(wrong));
  CHECK(checked.code() == ErrorCode::kUnauthenticated);
  CHECK(checked.message().find("Unknown key") != std::string::npos);
  CHECK(checked.message().find("ZZ99") == std::string::npos);

  // Service faults are kUnavailable, for the hub's circuit breaker.
  detail::AddressCompleteOptions options;
  options.base_url = service.url();
  options.api_key = "AA11-BB22";
  options.retry.max_retries = 0;
  auto client = detail::AddressCompleteClient::create(options);
  REQUIRE(client.ok());
  auto failed = (*client)->validate("boom");
  CHECK(failed.status().code() == ErrorCode::kUnavailable);
  CHECK(failed.status().message().find("AA11") == std::string::npos);
  options.base_url = "http://127.0.0.1:" + std::to_string(testing::free_loopback_port());
  auto offline = detail::AddressCompleteClient::create(options);
  REQUIRE(offline.ok());
  CHECK((*offline)->find("24 Sussex").status().code() == ErrorCode::kUnavailable);
}

// An ArcGIS feature service with 5 point features and an edit-date field, 2 per
// page.
StandIn feature_service(std::vector<std::string>* wheres) {
  return StandIn([wheres](const HttpRequest& r) {
    auto q = parse_form(r.query);
    if (q["token"] != "tk") {
      return json_response(200,
                           Json::object({{"error", Json::object({{"code", 498},
                                                                 {"message", "Invalid token."},
                                                                 {"details", Json::array()}})}}));
    }
    if (r.path == "/arcgis/rest/services/Permits/FeatureServer/0") {
      auto field = [](const char* name, const char* type) {
        return Json::object({{"name", name}, {"type", type}, {"alias", name}});
      };
      return json_response(
          200, Json::object({{"name", "Permits"},
                             {"type", "Feature Layer"},
                             {"geometryType", "esriGeometryPoint"},
                             {"objectIdField", "OBJECTID"},
                             {"maxRecordCount", 2},
                             {"editFieldsInfo", Json::object({{"editDateField", "EditDate"}})},
                             {"fields", Json::array({field("OBJECTID", "esriFieldTypeOID"),
                                                     field("Ward", "esriFieldTypeSmallInteger"),
                                                     field("Value", "esriFieldTypeDouble"),
                                                     field("Status", "esriFieldTypeString"),
                                                     field("EditDate", "esriFieldTypeDate"),
                                                     field("Shape", "esriFieldTypeGeometry")})}}));
    }
    if (r.path == "/arcgis/rest/services/Permits/FeatureServer/0/query") {
      if (q["f"] != "json" || q["outFields"] != "*") return json_response(400, Json::object());
      wheres->push_back(q["where"]);
      // Incremental runs ask for edits from 2026-11-30 10:03:00 UTC on.
      int first_id =
          q["where"].find("EditDate >= timestamp '2026-11-30 10:03:00'") != std::string::npos ? 4
                                                                                              : 1;
      int offset = std::stoi(q["resultOffset"]);
      int count = std::stoi(q["resultRecordCount"]);
      Json features = Json::array();
      int id = first_id + offset;
      for (; id <= 5 && id < first_id + offset + count; ++id) {
        std::int64_t edit_ms = 1'796'032'800'000 + std::int64_t(id) * 60'000;  // 10:0<id>
        features.push_back(
            Json::object({{"attributes", Json::object({{"OBJECTID", id},
                                                       {"Ward", id % 3},
                                                       {"Value", id * 1.5},
                                                       {"Status", "open"},
                                                       {"EditDate", edit_ms}})},
                          {"geometry", Json::object({{"x", -75.7 + id}, {"y", 45.4}})}}));
      }
      return json_response(200, Json::object({{"objectIdFieldName", "OBJECTID"},
                                              {"geometryType", "esriGeometryPoint"},
                                              {"features", features},
                                              {"exceededTransferLimit", id <= 5}}));
    }
    return json_response(
        200, Json::object({{"error", Json::object({{"code", 400}, {"message", "Invalid URL"}})}}));
  });
}

TEST_CASE(
    "arcgis source maps layer fields, pages while exceededTransferLimit "
    "and resumes by edit date") {
  std::vector<std::string> wheres;
  StandIn service = feature_service(&wheres);
  auto connector = make("arcgis");
  Json config =
      Json::object({{"service_url", service.url() + "/arcgis/rest/services/Permits/FeatureServer"},
                    {"layer", 0},
                    {"token", "tk"}});
  REQUIRE(validate_config(connector->spec(), config).ok());
  auto context = context_with(config);
  REQUIRE(connector->check(context).ok());
  auto streams = connector->discover(context);
  REQUIRE(streams.ok());
  const StreamSpec& layer = (*streams)[0];
  CHECK(layer.name == "Permits");
  CHECK(layer.primary_key == std::vector<std::string>{"OBJECTID"});
  CHECK(layer.cursor_field == "EditDate");
  CHECK(layer.field("Ward")->type == FieldType::kInteger);
  CHECK(layer.field("Value")->type == FieldType::kNumber);
  CHECK(layer.field("EditDate")->type == FieldType::kTimestamp);
  CHECK(layer.field("x")->type == FieldType::kNumber);
  CHECK(layer.field("Shape") == nullptr);

  CollectingEmitter out;
  REQUIRE(connector->read(context, ReadRequest{}, out).ok());
  std::vector<std::int64_t> object_ids;
  for (const auto& batch : out.batches) {
    for (const auto& r : batch.records)
      object_ids.push_back(batch.to_object(r)["OBJECTID"].as_int());
  }
  CHECK(object_ids == kAllFive);
  CHECK(out.batches.size() == 3);  // pages of 2, 2 and 1
  Json first = out.batches[0].to_object(out.batches[0].records[0]);
  CHECK(first["EditDate"] == Json("2026-11-30T10:01:00.000000Z"));
  CHECK(first["x"].as_double() == doctest::Approx(-74.7));
  CHECK(first["y"].as_double() == doctest::Approx(45.4));
  CHECK(out.states["Permits"]["cursor"] == Json(std::int64_t{1'796'032'800'000 + 5 * 60'000}));

  ReadRequest incremental;
  incremental.state = Json::object(
      {{"Permits", Json::object({{"cursor", std::int64_t{1'796'032'800'000 + 3 * 60'000}}})}});
  CollectingEmitter newer;
  REQUIRE(connector->read(context, incremental, newer).ok());
  CHECK(newer.record_count() == 2);
  CHECK(wheres.back() == "(1=1) AND EditDate >= timestamp '2026-11-30 10:03:00'");

  Json bad = config;
  bad.set("token", "expired");
  Status checked = connector->check(context_with(bad));
  CHECK(checked.code() == ErrorCode::kUnauthenticated);
  CHECK(checked.message().find("Invalid token") != std::string::npos);
}

TEST_CASE(
    "open311 reads services and requests incrementally and posts service "
    "requests") {
  std::mutex mutex;
  std::vector<std::map<std::string, std::string>> posted;
  StandIn server([&](const HttpRequest& r) {
    auto q = parse_form(r.query);
    if (r.method == "POST") q = parse_form(r.body);
    if (q["jurisdiction_id"] != "city.example") {
      return json_response(
          404,
          Json::array({Json::object({{"code", 404}, {"description", "unknown jurisdiction"}})}));
    }
    if (r.method == "GET" && r.path == "/open311/v2/services.json") {
      return json_response(200, Json::array({Json::object({{"service_code", "001"},
                                                           {"service_name", "Pothole"},
                                                           {"metadata", false},
                                                           {"type", "realtime"}}),
                                             Json::object({{"service_code", "002"},
                                                           {"service_name", "Graffiti"},
                                                           {"metadata", true},
                                                           {"type", "batch"}})}));
    }
    if (r.method == "GET" && r.path == "/open311/v2/requests.json") {
      auto req = [](const char* id, const char* updated) {
        return Json::object({{"service_request_id", id},
                             {"status", "open"},
                             {"service_code", "001"},
                             {"requested_datetime", "2026-11-01T08:00:00-05:00"},
                             {"updated_datetime", updated},
                             {"lat", 45.42},
                             {"long", -75.69}});
      };
      CHECK(q["status"] == "open");
      Json all = Json::array({req("R3", "2026-11-03T08:00:00-05:00"),
                              req("R1", "2026-11-01T08:00:00-05:00"),
                              req("R2", "2026-11-02T08:00:00-05:00")});
      if (q.count("start_date")) {  // inclusive, as servers do
        Json later = Json::array();
        for (const auto& x : all.as_array()) {
          if (x.get_string("updated_datetime") >= q["start_date"]) later.push_back(x);
        }
        return json_response(200, later);
      }
      return json_response(200, all);
    }
    if (r.method == "POST" && r.path == "/open311/v2/requests.json") {
      CHECK(r.headers.get("Content-Type").value_or("") == "application/x-www-form-urlencoded");
      auto form = parse_form(r.body);
      if (form["api_key"] != "key-311") {
        return json_response(
            403, Json::array({Json::object({{"code", 403}, {"description", "invalid api_key"}})}));
      }
      if (form["service_code"] == "999") {
        return json_response(
            400, Json::array(
                     {Json::object({{"code", 400}, {"description", "service_code not found"}})}));
      }
      std::lock_guard lock(mutex);
      posted.push_back(form);
      if (form["service_code"] == "002") {
        return json_response(200, Json::array({Json::object({{"token", "T-77"}})}));
      }
      return json_response(
          201, Json::array(
                   {Json::object({{"service_request_id", "R" + std::to_string(posted.size() + 10)},
                                  {"service_notice", "within 5 days"}})}));
    }
    return json_response(404, Json::array());
  });
  auto connector = make("open311");
  testing::TempDir dir;
  Json config = Json::object({{"base_url", server.url() + "/open311/v2"},
                              {"jurisdiction_id", "city.example"},
                              {"status", "open"},
                              {"api_key", "key-311"}});
  REQUIRE(validate_config(connector->spec(), config).ok());
  auto context = context_with(config);
  context.work_dir = dir.file("open311");
  REQUIRE(connector->check(context).ok());

  CollectingEmitter out;
  REQUIRE(connector->read(context, ReadRequest{}, out).ok());
  REQUIRE(out.batches.size() == 2);
  CHECK(out.batches[0].stream == "services");
  CHECK(out.batches[0].size() == 2);
  CHECK(out.batches[1].stream == "requests");
  REQUIRE(out.batches[1].size() == 3);
  CHECK(out.batches[1].to_object(out.batches[1].records[0])["service_request_id"] == Json("R1"));
  CHECK(out.states["requests"]["cursor"] == Json("2026-11-03T08:00:00-05:00"));

  ReadRequest next;
  next.streams = {"requests"};
  next.state = out.states;
  CollectingEmitter nothing_new;
  REQUIRE(connector->read(context, next, nothing_new).ok());
  CHECK(nothing_new.record_count() == 0);  // R3 (== cursor) is not read twice
  CHECK(server.seen().back().find("start_date=2026-11-03T08%3A00%3A00-05%3A00") !=
        std::string::npos);

  RecordBatch batch("requests", {});
  batch.append_object(Json::object({{"service_code", "001"},
                                    {"lat", 45.42},
                                    {"long", -75.69},
                                    {"description", "Deep pothole & more"},
                                    {"attributes", Json::object({{"WHISPER", "yes"}})}}),
                      1);
  batch.append_object(Json::object({{"service_code", "002"}, {"address_string", "24 Sussex Dr"}}),
                      2);
  batch.append_object(Json::object({{"service_code", "999"}, {"address_string", "x"}}), 3);
  batch.append_object(Json::object({{"service_code", "001"}}),
                      4);  // no location
  auto written = connector->write(context, write_to("requests"), batch);
  REQUIRE_MESSAGE(written.ok(), written.status().to_string());
  CHECK(written->written == 2);
  REQUIRE(written->rejected.size() == 2);
  CHECK(written->rejected[0].position == 3);
  CHECK(written->rejected[0].reason.find("service_code not found") != std::string::npos);
  CHECK(written->rejected[1].position == 4);
  auto submissions = detail::open311_last_submissions(*connector);
  REQUIRE(submissions.size() == 2);
  CHECK(submissions[0].service_request_id == "R11");
  CHECK(submissions[0].service_notice == "within 5 days");
  CHECK(submissions[1].token == "T-77");
  {
    std::lock_guard lock(mutex);
    REQUIRE(posted.size() == 2);
    CHECK(posted[0]["description"] == "Deep pothole & more");
    CHECK(posted[0]["attribute[WHISPER]"] == "yes");
    CHECK(posted[0]["jurisdiction_id"] == "city.example");
  }

  Json wrong = config;
  wrong.set("api_key", "nope");
  auto refused = connector->write(context_with(wrong), write_to("requests"), batch);
  CHECK(refused.status().code() == ErrorCode::kPermissionDenied);
  CHECK(refused.status().message().find("invalid api_key") != std::string::npos);
}

}  // namespace
}  // namespace civicbus::connect
