// Webhooks end to end: a real broker on a temp SQLite dir, the dispatcher, and a receiver that
// is our HttpServer on a loopback port. Schedules that take hours in production run on a
// ManualClock (run_due() after each advance) or in milliseconds.
#include "civicbus/gateway/webhooks.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "broker/broker_fixture.hpp"
#include "civicbus/broker/cloud_event.hpp"
#include "civicbus/core/crypto.hpp"
#include "civicbus/core/executor.hpp"
#include "civicbus/core/metrics.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/http/server.hpp"
#include "support/test_pki.hpp"
#include "support/test_support.hpp"

namespace civicbus::gateway {
namespace {

using broker::testing_support::BrokerFixture;
using http::HttpRequest;
using http::HttpResponse;
using namespace std::chrono_literals;

// ---- a receiver ------------------------------------------------------------------------------

struct Received {
  std::string id;
  std::string timestamp;
  std::string signature;
  std::string content_type;
  std::string body;
  int status = 0;
};

class Receiver {
 public:
  // `decide` gets the request and how many times this webhook-id came before; returns the
  // response. Default: 204.
  using Decide = std::function<HttpResponse(const HttpRequest&, int seen_before)>;

  explicit Receiver(Decide decide = {}, std::optional<http::TlsServerOptions> tls = std::nullopt)
      : decide_(std::move(decide)), scheme_(tls ? "https" : "http") {
    http::HttpServerOptions o;
    o.threads = 2;
    o.tls = std::move(tls);
    server_ = std::make_unique<http::HttpServer>(o, [this](const HttpRequest& r) {
      const std::string id(r.headers.get("webhook-id").value_or(""));
      int before = 0;
      Decide decide;
      {
        std::lock_guard lock(mu_);
        before = seen_[id]++;
        decide = decide_;
      }
      HttpResponse out = decide ? decide(r, before) : HttpResponse::text(204, "");
      std::lock_guard lock(mu_);
      Received rec{id,
                   std::string(r.headers.get("webhook-timestamp").value_or("")),
                   std::string(r.headers.get("webhook-signature").value_or("")),
                   std::string(r.headers.get("content-type").value_or("")),
                   r.body,
                   out.status};
      if (out.status >= 200 && out.status < 300) delivered_.insert(id);
      requests_.push_back(std::move(rec));
      return out;
    });
    auto p = server_->start();
    REQUIRE(p.ok());
    port_ = *p;
  }
  ~Receiver() { server_->stop(); }

  void set(Decide decide) {
    std::lock_guard lock(mu_);
    decide_ = std::move(decide);
  }
  std::string url(std::string_view path = "/hooks/civicbus") const {
    return scheme_ + "://127.0.0.1:" + std::to_string(port_) + std::string(path);
  }
  std::size_t count() const {
    std::lock_guard lock(mu_);
    return requests_.size();
  }
  std::vector<Received> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::set<std::string> delivered() const {
    std::lock_guard lock(mu_);
    return delivered_;
  }
  bool wait_requests(std::size_t n, std::chrono::milliseconds t = 10s) const {
    return civicbus::testing::wait_until([&] { return count() >= n; }, t);
  }
  bool wait_delivered(std::size_t n, std::chrono::milliseconds t = 10s) const {
    return civicbus::testing::wait_until([&] { return delivered().size() >= n; }, t);
  }

 private:
  mutable std::mutex mu_;
  Decide decide_;
  std::map<std::string, int> seen_;
  std::vector<Received> requests_;
  std::set<std::string> delivered_;
  std::string scheme_;
  std::unique_ptr<http::HttpServer> server_;
  std::uint16_t port_ = 0;
};

HttpResponse status(int code, std::string body = {}) {
  return HttpResponse::text(code, std::move(body));
}

// ---- the dispatcher over a broker ------------------------------------------------------------

BrokerFixture::Config broker_config(const Clock* clock) {
  BrokerFixture::Config c;
  c.clock = clock;
  return c;
}

class Hooks {
 public:
  explicit Hooks(const Clock* clock = nullptr)
      : clock_(clock ? *clock : system_clock_),
        f_(broker_config(clock)),
        executor_(make_thread_pool(2)),
        random_(7) {
    f_.topic("permit.issued");
    open();
  }
  ~Hooks() { dispatcher_.reset(); }

  void open() {
    WebhookDispatcherOptions o;
    o.poll_interval = 5ms;
    o.master_key = master_key_;
    Logger logger(LogOptions{LogLevel::kOff, LogFormat::kText, {}}, clock_);
    auto d = WebhookDispatcher::open(
        o, WebhookContext{f_.broker(), f_.db(), *executor_, clock_, f_.metrics(), random_, logger});
    REQUIRE_MESSAGE(d.ok(), d.status().to_string());
    dispatcher_ = std::move(d).value();
  }
  // Closes the dispatcher and the broker and opens both again on the same files.
  void restart() {
    dispatcher_.reset();
    f_.reopen();
    open();
  }

  WebhookSubscription create(WebhookOptions o) {
    auto s = dispatcher_->create(std::move(o));
    REQUIRE_MESSAGE(s.ok(), s.status().to_string());
    return *s;
  }
  std::string publish(const std::string& type = "permit.issued", int n = 0) {
    broker::CloudEvent e(type, "urn:civicbus:permits",
                         Json::object({{"permit", "BP-" + std::to_string(n)}}));
    auto ack = f_.broker().publish(std::move(e));
    REQUIRE_MESSAGE(ack.ok(), ack.status().to_string());
    return ack->id;
  }
  void publish_id(const std::string& event_id, const std::string& permit) {
    auto ack = f_.broker().publish(broker::testing_support::event(
        "permit.issued", Json::object({{"permit", permit}}), event_id));
    REQUIRE_MESSAGE(ack.ok(), ack.status().to_string());
  }
  std::vector<WebhookRetry> retries(const std::string& id) {
    auto r = dispatcher_->pending_retries(id);
    REQUIRE(r.ok());
    return *r;
  }
  WebhookEndpointState state(const std::string& id) {
    auto s = dispatcher_->endpoint_state(id);
    REQUIRE(s.ok());
    return *s;
  }
  bool wait(const std::function<bool()>& ready, std::chrono::milliseconds t = 10s) {
    return civicbus::testing::wait_until(ready, t);
  }

  // The next open() uses this key (the broker keeps its own).
  void set_master_key(std::string key) { master_key_ = std::move(key); }
  // Closes the dispatcher alone; open_with() opens it again, reporting failures.
  void close_dispatcher() { dispatcher_.reset(); }
  Result<std::unique_ptr<WebhookDispatcher>> open_with(WebhookDispatcherOptions o) {
    Logger logger(LogOptions{LogLevel::kOff, LogFormat::kText, {}}, clock_);
    return WebhookDispatcher::open(
        std::move(o),
        WebhookContext{f_.broker(), f_.db(), *executor_, clock_, f_.metrics(), random_, logger});
  }
  void adopt(std::unique_ptr<WebhookDispatcher> d) { dispatcher_ = std::move(d); }

  WebhookDispatcher& d() { return *dispatcher_; }
  BrokerFixture& f() { return f_; }
  std::string metrics() { return f_.metrics().prometheus_text(); }

 private:
  SystemClock system_clock_;
  const Clock& clock_;
  BrokerFixture f_;
  std::unique_ptr<Executor> executor_;
  SeededRandom random_;
  std::string master_key_ = std::string(32, '\x3c');
  std::unique_ptr<WebhookDispatcher> dispatcher_;
};

WebhookOptions hook(const Receiver& r, std::string id = "gis") {
  WebhookOptions o;
  o.id = std::move(id);
  o.topics = {"permit.*"};
  o.url = r.url();
  return o;
}

std::vector<std::chrono::milliseconds> ms(std::initializer_list<int> v) {
  std::vector<std::chrono::milliseconds> out;
  for (int x : v) out.emplace_back(x);
  return out;
}

// ---- signing ---------------------------------------------------------------------------------

constexpr std::string_view kSpecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
constexpr std::string_view kSpecId = "msg_p5jXN8AQM9LWM0D4loKWxJek";
constexpr std::int64_t kSpecTimestamp = 1614265330;
constexpr std::string_view kSpecBody = R"({"test": 2432232314})";
constexpr std::string_view kSpecSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

SystemTime at(std::int64_t unix_seconds) {
  return SystemTime{std::chrono::seconds(unix_seconds)};
}

TEST_CASE("webhooks: signature matches the Standard Webhooks example vector") {
  auto sig = sign_webhook(kSpecSecret, kSpecId, kSpecTimestamp, kSpecBody);
  REQUIRE(sig.ok());
  CHECK(*sig == kSpecSignature);
  // The prefix is optional, as in the reference libraries.
  CHECK(*sign_webhook(kSpecSecret.substr(6), kSpecId, kSpecTimestamp, kSpecBody) == kSpecSignature);
  // An independent computation of the signed content.
  auto key = crypto::base64_decode(kSpecSecret.substr(6));
  REQUIRE(key.ok());
  const std::string content = std::string(kSpecId) + ".1614265330." + std::string(kSpecBody);
  CHECK(*sig == "v1," + crypto::base64_encode(crypto::hmac_sha256(*key, content)));

  const std::vector<std::string> secrets{std::string(kSpecSecret)};
  CHECK(verify_webhook(secrets, kSpecId, "1614265330", kSpecSignature, kSpecBody,
                       at(kSpecTimestamp + 10))
            .ok());
  // Several signatures, space-separated (rotation), one of them valid; unknown schemes skipped.
  CHECK(verify_webhook(secrets, kSpecId, "1614265330",
                       "v1a,c29tZXRoaW5n v1,bm9wZQ== " + std::string(kSpecSignature), kSpecBody,
                       at(kSpecTimestamp))
            .ok());
}

TEST_CASE("webhooks: verify rejects a bad signature, a stale timestamp and missing headers") {
  const std::vector<std::string> secrets{std::string(kSpecSecret)};
  const SystemTime now = at(kSpecTimestamp);
  Status bad = verify_webhook(secrets, kSpecId, "1614265330", "v1,bm9wZQ==", kSpecBody, now);
  CHECK(bad.code() == ErrorCode::kUnauthenticated);
  CHECK(bad.message().find("no webhook signature matches") != std::string::npos);
  // The body, the id or the timestamp changed: the signature no longer matches.
  CHECK_FALSE(
      verify_webhook(secrets, kSpecId, "1614265330", kSpecSignature, R"({"test": 2432232315})", now)
          .ok());
  CHECK_FALSE(
      verify_webhook(secrets, "msg_other", "1614265330", kSpecSignature, kSpecBody, now).ok());
  CHECK_FALSE(verify_webhook(secrets, kSpecId, "1614265331", kSpecSignature, kSpecBody, now).ok());
  // Another secret.
  SeededRandom random(1);
  CHECK_FALSE(verify_webhook({generate_webhook_secret(random)}, kSpecId, "1614265330",
                             kSpecSignature, kSpecBody, now)
                  .ok());

  Status stale = verify_webhook(secrets, kSpecId, "1614265330", kSpecSignature, kSpecBody,
                                at(kSpecTimestamp + 301));
  CHECK(stale.code() == ErrorCode::kUnauthenticated);
  CHECK(stale.message().find("301 s old") != std::string::npos);
  Status future = verify_webhook(secrets, kSpecId, "1614265330", kSpecSignature, kSpecBody,
                                 at(kSpecTimestamp - 400));
  CHECK(future.message().find("in the future") != std::string::npos);
  CHECK(verify_webhook(secrets, kSpecId, "1614265330", kSpecSignature, kSpecBody,
                       at(kSpecTimestamp + 3000), WebhookVerifyOptions{3600s})
            .ok());
  CHECK(verify_webhook(secrets, kSpecId, "16142x5330", kSpecSignature, kSpecBody, now)
            .message()
            .find("not Unix seconds") != std::string::npos);
  http::HttpHeaders h;
  h.add("webhook-id", std::string(kSpecId));
  h.add("webhook-signature", std::string(kSpecSignature));
  CHECK(verify_webhook(secrets, h, kSpecBody, now).message().find("webhook-timestamp") !=
        std::string::npos);
  h.add("Webhook-Timestamp", "1614265330");  // header names are case-insensitive
  CHECK(verify_webhook(secrets, h, kSpecBody, now).ok());
}

TEST_CASE("webhooks: secrets and options are validated") {
  SeededRandom random(3);
  const std::string secret = generate_webhook_secret(random);
  CHECK(secret.rfind("whsec_", 0) == 0);
  CHECK(validate_webhook_secret(secret).ok());
  CHECK(crypto::base64_decode(secret.substr(6))->size() == 32);
  CHECK_FALSE(validate_webhook_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").ok());
  CHECK(validate_webhook_secret("whsec_c2hvcnQ=").message().find("24..64 bytes") !=
        std::string::npos);
  CHECK_FALSE(validate_webhook_secret("whsec_***").ok());

  WebhookOptions o;
  o.id = "gis";
  o.topics = {"permit.*"};
  o.url = "http://127.0.0.1:8080/hooks?x=1";
  CHECK(o.validate().ok());
  o.url = "http://receiver.example";  // port 80, path /
  CHECK(o.validate().ok());
  o.url = "https://receiver.example/hooks";  // port 443
  CHECK(o.validate().ok());
  o.tls.ca_file = "/etc/civicbus/municipal-ca.pem";
  o.tls.server_name = "receiver.example";
  CHECK(o.validate().ok());
  o.url = "http://receiver.example/hooks";  // TLS options with a plain URL: a mistake
  Status plain = o.validate();
  CHECK(plain.code() == ErrorCode::kInvalidArgument);
  CHECK(plain.message().find("https:// URLs only") != std::string::npos);
  o.tls = {};
  o.url = "ftp://x/";
  CHECK(o.validate().message().find("must start with http:// or https://") != std::string::npos);
  o.url = "http://user:pw@host/";
  CHECK_FALSE(o.validate().ok());
  o.url = "http://127.0.0.1:8080/";
  o.id = "GIS hooks";
  CHECK(o.validate().message().find("a-z") != std::string::npos);
  o.id = "gis";
  o.schedule = {};
  CHECK_FALSE(o.validate().ok());
  o.schedule = default_webhook_schedule();
  CHECK(o.schedule.size() == 9);
  CHECK(o.schedule.back() == 24h);
  o.jitter = 1.5;
  CHECK_FALSE(o.validate().ok());
  o.jitter = 0.2;
  o.topics = {};
  CHECK_FALSE(o.validate().ok());
}

// ---- delivery --------------------------------------------------------------------------------

TEST_CASE("webhooks: an event is delivered to a local receiver, signed, as a CloudEvent") {
  Receiver r;
  Hooks h;
  const WebhookSubscription s = h.create(hook(r));
  CHECK(validate_webhook_secret(s.secret).ok());

  const std::string id = h.publish();
  REQUIRE(r.wait_delivered(1));
  const Received got = r.requests().front();
  CHECK(got.id == id);
  CHECK(got.content_type.find("application/cloudevents+json") == 0);
  CHECK(verify_webhook({s.secret}, got.id, got.timestamp, got.signature, got.body,
                       std::chrono::system_clock::now())
            .ok());
  auto event = broker::CloudEvent::parse(got.body);
  REQUIRE(event.ok());
  CHECK(event->id() == id);
  CHECK(event->type() == "permit.issued");
  CHECK(event->data().get_string("permit") == "BP-0");

  CHECK(h.wait([&] {
    return h.metrics().find(
               "civicbus_webhook_deliveries_total{outcome=\"delivered\",subscription=\"gis\"} 1") !=
           std::string::npos;
  }));
  const std::string m = h.metrics();
  CHECK(m.find("civicbus_webhook_attempts_total{result=\"success\",subscription=\"gis\"} 1") !=
        std::string::npos);
  CHECK(m.find("civicbus_webhook_endpoint_paused{subscription=\"gis\"} 0") != std::string::npos);
  CHECK(m.find("civicbus_webhook_attempt_duration_seconds_count{subscription=\"gis\"} 1") !=
        std::string::npos);

  // Stored and listed without the secret; a second subscription of the same id is refused.
  auto list = h.d().subscriptions();
  REQUIRE(list.ok());
  REQUIRE(list->size() == 1);
  CHECK(list->front().options.url == r.url());
  CHECK(list->front().secret.empty());
  auto again = h.d().create(hook(r));
  CHECK(again.status().code() == ErrorCode::kAlreadyExists);
  CHECK(h.d().remove("gis").ok());
  CHECK(h.d().subscriptions()->empty());
  CHECK(h.d().remove("gis").code() == ErrorCode::kNotFound);
}

TEST_CASE("webhooks: the event type filter and secret rotation") {
  Receiver r;
  Hooks h;
  h.f().topic("permit.revoked");
  WebhookOptions o = hook(r);
  o.event_types = {"permit.issued"};
  const WebhookSubscription s = h.create(o);
  h.publish("permit.revoked");
  const std::string issued = h.publish("permit.issued");
  REQUIRE(r.wait_delivered(1));
  std::this_thread::sleep_for(100ms);
  CHECK(r.count() == 1);
  CHECK(r.requests().front().id == issued);

  auto rotated = h.d().rotate_secret("gis");
  REQUIRE(rotated.ok());
  CHECK(rotated->secret != s.secret);
  h.publish("permit.issued", 2);
  REQUIRE(r.wait_delivered(2));
  const Received got = r.requests().back();
  CHECK(got.signature.find(' ') != std::string::npos);  // both secrets sign during the overlap
  const SystemTime now = std::chrono::system_clock::now();
  CHECK(verify_webhook({s.secret}, got.id, got.timestamp, got.signature, got.body, now).ok());
  CHECK(
      verify_webhook({rotated->secret}, got.id, got.timestamp, got.signature, got.body, now).ok());
}

TEST_CASE("webhooks: retries follow the schedule within the jitter bounds") {
  ManualClock clock;
  Receiver r([](const HttpRequest&, int) { return status(503, "down"); });
  Hooks h(&clock);
  WebhookOptions o = hook(r);
  o.schedule = ms({0, 1000, 4000, 10000});
  o.jitter = 0.25;
  o.pause.after_failures = 0;  // never pause here
  h.create(o);

  constexpr int kEvents = 20;
  for (int i = 0; i < kEvents; ++i) h.publish("permit.issued", i);
  REQUIRE(h.wait([&] { return h.retries("gis").size() == kEvents; }));
  CHECK(r.count() == kEvents);  // each tried once, at once
  const SystemTime t0 = clock.now();
  std::set<std::int64_t> dues;
  for (const auto& w : h.retries("gis")) {
    const auto wait = w.next_attempt_at - t0;
    CHECK(wait >= 750ms);
    CHECK(wait <= 1250ms);
    CHECK(w.attempts == 1);
    CHECK(w.last_error.find("HTTP 503") != std::string::npos);
    dues.insert(to_unix_micros(w.next_attempt_at));
  }
  CHECK(dues.size() > 1);  // jitter spreads them

  // Nothing before the earliest due time.
  clock.advance(740ms);
  h.d().run_due();
  std::this_thread::sleep_for(50ms);
  CHECK(r.count() == kEvents);
  // Every second attempt once the latest is due; the third follows 4 s +-25% later.
  clock.set(t0 + 1250ms);
  h.d().run_due();
  REQUIRE(r.wait_requests(2 * kEvents));
  REQUIRE(h.wait([&] {
    auto rs = h.retries("gis");
    return std::all_of(rs.begin(), rs.end(), [](const WebhookRetry& w) { return w.attempts == 2; });
  }));
  for (const auto& w : h.retries("gis")) {
    const auto wait = w.next_attempt_at - clock.now();
    CHECK(wait >= 3000ms);
    CHECK(wait <= 5000ms);
  }
  // The same webhook-id each time, a fresh timestamp and signature.
  const auto reqs = r.requests();
  const auto first = std::find_if(reqs.begin(), reqs.end(),
                                  [&](const Received& x) { return x.id == reqs.back().id; });
  CHECK(first->timestamp != reqs.back().timestamp);
  CHECK(first->signature != reqs.back().signature);
}

TEST_CASE("webhooks: 4xx, 5xx and timeouts are retried, then the DLQ keeps the last reason") {
  ManualClock clock;
  Receiver r([](const HttpRequest&, int before) {
    if (before == 0) return status(404, "no such hook");
    if (before == 1) {
      std::this_thread::sleep_for(400ms);  // past the attempt timeout
      return status(200);
    }
    return status(503, "still down");
  });
  Hooks h(&clock);
  WebhookOptions o = hook(r);
  o.schedule = ms({0, 1000, 1000});
  o.jitter = 0;
  o.attempt_timeout = 150ms;
  o.pause.after_failures = 0;
  h.create(o);

  const std::string id = h.publish();
  REQUIRE(h.wait([&] { return h.retries("gis").size() == 1; }));
  CHECK(h.retries("gis").front().last_error.find("HTTP 404") != std::string::npos);
  clock.advance(1000ms);
  h.d().run_due();
  REQUIRE(
      h.wait([&] { return !h.retries("gis").empty() && h.retries("gis").front().attempts == 2; }));
  CHECK(h.retries("gis").front().last_error.find("deadline_exceeded") != std::string::npos);
  // A blocking handler holds its server worker: let the slow one finish first.
  std::this_thread::sleep_for(350ms);
  clock.advance(1000ms);
  h.d().run_due();
  REQUIRE(h.wait([&] { return h.d().dead_letters("gis")->size() == 1; }));
  const WebhookDeadLetter dl = h.d().dead_letters("gis")->front();
  CHECK(dl.event_id == id);
  CHECK(dl.attempts == 3);
  INFO("reason: ", dl.reason);
  CHECK(dl.reason.find("HTTP 503") != std::string::npos);
  CHECK(dl.reason.find("still down") != std::string::npos);
  CHECK(broker::CloudEvent::parse(dl.body)->id() == id);
  CHECK(h.retries("gis").empty());
  CHECK(h.state("gis").dead_letters == 1);
  REQUIRE(h.wait([&] {
    return h.metrics().find(
               "civicbus_webhook_deliveries_total{outcome=\"dead_lettered\","
               "subscription=\"gis\"} 1") != std::string::npos;
  }));
  const std::string m = h.metrics();
  for (const char* result : {"http_4xx", "http_5xx", "timeout"}) {
    INFO("result ", result, " in ", m);
    CHECK(m.find("civicbus_webhook_attempts_total{result=\"" + std::string(result) +
                 "\",subscription=\"gis\"} 1") != std::string::npos);
  }
  CHECK(m.find("civicbus_webhook_dead_letters{subscription=\"gis\"} 1") != std::string::npos);

  // Replayed: a fresh schedule, delivered once the receiver is back.
  r.set([](const HttpRequest&, int) { return status(200); });
  auto replayed = h.d().replay_dead_letters("gis");
  REQUIRE(replayed.ok());
  CHECK(*replayed == 1);
  REQUIRE(r.wait_delivered(1));
  CHECK(h.wait([&] { return h.retries("gis").empty(); }));
  CHECK(h.d().dead_letters("gis")->empty());
  CHECK(h.state("gis").dead_letters == 0);
}

// For a failure's message: what the receiver got and what the endpoint still holds.
std::string describe(Hooks& h, const Receiver& r, const ManualClock& clock, const std::string& id) {
  std::string out;
  for (const Received& rec : r.requests()) {
    out += "\n  received " + rec.id + " -> " + std::to_string(rec.status);
  }
  const WebhookEndpointState s = h.state(id);
  out += "\n  paused " + std::to_string(s.paused) + ", in flight " + std::to_string(s.in_flight) +
         ", consecutive failures " + std::to_string(s.consecutive_failures) + ", dead letters " +
         std::to_string(s.dead_letters);
  for (const WebhookRetry& w : h.retries(id)) {
    out +=
        "\n  parked " + w.event_id + " after " + std::to_string(w.attempts) + " attempts, due in " +
        std::to_string(
            std::chrono::duration_cast<std::chrono::milliseconds>(w.next_attempt_at - clock.now())
                .count()) +
        " ms, last error: " + w.last_error;
  }
  return out;
}

TEST_CASE("webhooks: a failing endpoint is paused and resumes on its own") {
  ManualClock clock;
  Receiver r([](const HttpRequest&, int) { return status(500, "boom"); });
  Hooks h(&clock);
  WebhookOptions o = hook(r);
  o.schedule = ms({0, 1000, 1000, 1000, 1000});
  o.jitter = 0;
  o.max_concurrent = 1;
  o.pause.after_failures = 3;
  o.pause.cool_off = 10s;
  o.pause.max_cool_off = 60s;
  h.create(o);

  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(h.publish("permit.issued", i));
  REQUIRE(h.wait([&] { return h.state("gis").paused; }));
  std::this_thread::sleep_for(100ms);
  CHECK(r.count() == 3);
  CHECK(h.state("gis").paused_until == clock.now() + 10s);
  CHECK(h.metrics().find("civicbus_webhook_endpoint_paused{subscription=\"gis\"} 1") !=
        std::string::npos);

  // While paused: retries come due, but nothing is sent and no attempt is counted.
  clock.advance(5s);
  h.d().run_due();
  std::this_thread::sleep_for(100ms);
  CHECK(r.count() == 3);
  for (const auto& w : h.retries("gis")) CHECK(w.attempts == 1);

  // The cool-off ends: one probe; it fails, so the cool-off doubles.
  clock.advance(5s);
  h.d().run_due();
  REQUIRE(r.wait_requests(4));
  REQUIRE(h.wait([&] { return h.state("gis").paused_until == clock.now() + 20s; }));
  // The failed probe is parked again (its next try due a second after the failure) before the
  // clock moves on: parking reads the clock after the pause is stored, so advancing it sooner
  // would put that try 1 s past the advanced time, where a manual clock never gets.
  REQUIRE(h.wait([&] {
    const auto parked = h.retries("gis");
    return std::any_of(parked.begin(), parked.end(),
                       [](const WebhookRetry& w) { return w.attempts == 2; });
  }));
  std::this_thread::sleep_for(50ms);
  CHECK(r.count() == 4);

  // The endpoint recovers; the next probe succeeds and everything waiting goes out.
  r.set([](const HttpRequest&, int) { return status(200); });
  clock.advance(20s);
  h.d().run_due();
  INFO("where the endpoint stands: ", describe(h, r, clock, "gis"));
  REQUIRE(r.wait_delivered(ids.size()));
  CHECK(h.wait([&] { return !h.state("gis").paused && h.retries("gis").empty(); }));
  CHECK(h.metrics().find("civicbus_webhook_endpoint_paused{subscription=\"gis\"} 0") !=
        std::string::npos);
  CHECK(h.d().dead_letters("gis")->empty());
  CHECK(r.delivered() == std::set<std::string>(ids.begin(), ids.end()));
}

TEST_CASE("webhooks: a restart resumes parked and unacknowledged events without loss") {
  Receiver r([](const HttpRequest&, int) { return status(503); });
  Hooks h;
  WebhookOptions o = hook(r);
  o.schedule = ms({0, 20, 20, 20, 20, 20, 20, 20, 20});
  o.max_concurrent = 2;
  o.pause.after_failures = 4;
  o.pause.cool_off = 300ms;
  h.create(o);

  std::set<std::string> ids;
  for (int i = 0; i < 30; ++i) ids.insert(h.publish("permit.issued", i));
  REQUIRE(h.wait([&] { return h.state("gis").paused; }));
  CHECK_FALSE(h.retries("gis").empty());
  CHECK(r.delivered().empty());

  h.restart();
  r.set([](const HttpRequest&, int) { return status(200); });
  // The pause survived the restart; after its cool-off the probe resumes the endpoint.
  REQUIRE(r.wait_delivered(ids.size()));
  CHECK(r.delivered() == ids);
  CHECK(h.wait([&] { return h.retries("gis").empty() && !h.state("gis").paused; }));
  CHECK(h.d().dead_letters("gis")->empty());
}

TEST_CASE("webhooks: a receiver failing 20 percent of requests gets all of 500 events") {
  std::mutex mu;
  std::mt19937 rng(2026);
  std::atomic<int> bad_signatures{0};
  std::string secret;
  Receiver r([&](const HttpRequest& req, int) {
    {
      std::lock_guard lock(mu);
      if (std::uniform_real_distribution<double>(0, 1)(rng) < 0.2) return status(500, "random");
      if (!verify_webhook({secret}, req.headers, req.body, std::chrono::system_clock::now()).ok()) {
        bad_signatures.fetch_add(1);
        return status(401, "bad signature");
      }
    }
    return status(204);
  });
  Hooks h;
  WebhookOptions o = hook(r);
  o.schedule = ms({0, 10, 20, 50, 100, 200, 500, 1000, 2000});
  o.max_concurrent = 8;
  o.pause.after_failures = 50;
  {
    auto s = h.create(o);
    std::lock_guard lock(mu);
    secret = s.secret;
  }
  constexpr int kEvents = 500;
  std::set<std::string> ids;
  for (int i = 0; i < kEvents; ++i) ids.insert(h.publish("permit.issued", i));
  REQUIRE(r.wait_delivered(kEvents, 15s));
  CHECK(r.delivered() == ids);
  CHECK(bad_signatures.load() == 0);
  CHECK(h.d().dead_letters("gis")->empty());
  CHECK(h.wait([&] { return h.retries("gis").empty(); }));
  CHECK(r.count() > static_cast<std::size_t>(kEvents));  // some were retried
}

// ---- at rest ---------------------------------------------------------------------------------

// The database file and its WAL, as bytes.
std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
std::string db_bytes(BrokerFixture& f) {
  return file_bytes(f.path()) + file_bytes(f.path() + "-wal");
}
bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST_CASE("webhooks: secrets and parked bodies are sealed at rest and bound to their rows") {
  ManualClock clock;
  Receiver r([](const HttpRequest&, int) { return status(503, "down"); });
  Hooks h(&clock);
  WebhookOptions o = hook(r);
  o.schedule = ms({0, 60'000});
  o.jitter = 0;
  o.pause.after_failures = 0;
  const WebhookSubscription gis = h.create(o);
  WebhookOptions dl = hook(r, "archive");
  dl.schedule = ms({0});  // one attempt: straight to the dead letters
  const WebhookSubscription archive = h.create(dl);
  h.publish_id("ev-sealed-1", "PLAINTEXT-MARKER-4711-a");
  h.publish_id("ev-sealed-2", "PLAINTEXT-MARKER-4711-b");
  REQUIRE(h.wait([&] { return h.retries("gis").size() == 2; }));
  REQUIRE(h.wait([&] { return h.d().dead_letters("archive")->size() == 2; }));

  const std::string raw = db_bytes(h.f());
  CHECK(contains(raw, "ev-sealed-1"));  // the rows are in what was read (ids are not secret)
  for (const auto& secret : {gis.secret, archive.secret}) {
    CHECK_FALSE(contains(raw, secret));
    CHECK_FALSE(contains(raw, secret.substr(6)));
    CHECK_FALSE(contains(raw, *crypto::base64_decode(secret.substr(6))));
  }
  CHECK_FALSE(contains(raw, "PLAINTEXT-MARKER-4711"));

  // Opened again, with the same master key: the dead letters read back in clear...
  const auto dead = h.d().dead_letters("archive");
  REQUIRE(dead.ok());
  for (const auto& d : *dead) {
    auto e = broker::CloudEvent::parse(d.body);
    REQUIRE_MESSAGE(e.ok(), e.status().to_string(), " body: ", d.body);
    CHECK(e->data().get_string("permit").rfind("PLAINTEXT-MARKER-4711-", 0) == 0);
  }
  // ...and after a restart the parked events go out signed with the unsealed secret.
  h.restart();
  r.set([](const HttpRequest&, int) { return status(200); });
  clock.advance(61s);
  h.d().run_due();
  REQUIRE(r.wait_delivered(2));
  for (const auto& got : r.requests()) {
    if (got.status != 200) continue;
    CHECK(verify_webhook({gis.secret}, got.id, got.timestamp, got.signature, got.body,
                         at(std::stoll(got.timestamp)))
              .ok());
    CHECK(contains(got.body, "PLAINTEXT-MARKER-4711-"));
  }
  CHECK(h.wait([&] { return h.retries("gis").empty(); }));

  // A body moved to another row no longer opens: an error, not another event's body.
  REQUIRE(
      h.f()
          .db()
          .execute_script(
              "UPDATE webhook_dead_letters SET body = (SELECT d2.body FROM webhook_dead_letters d2 "
              "WHERE d2.event_id = 'ev-sealed-2' AND d2.subscription_id = 'archive') "
              "WHERE event_id = 'ev-sealed-1' AND subscription_id = 'archive'")
          .ok());
  auto swapped = h.d().dead_letters("archive");
  CHECK(swapped.status().code() == ErrorCode::kDataLoss);
  CHECK(contains(swapped.status().message(), "event ev-sealed-1 does not decrypt"));
}

TEST_CASE("webhooks: a missing or wrong master key fails clearly") {
  Receiver r;
  Hooks h;
  const WebhookSubscription s = h.create(hook(r));
  h.close_dispatcher();

  WebhookDispatcherOptions o;
  auto none = h.open_with(o);
  CHECK(none.status().code() == ErrorCode::kInvalidArgument);
  CHECK(contains(none.status().message(), "master key"));
  o.master_key = std::string(16, 'k');
  CHECK(contains(h.open_with(o).status().message(), "must be 32 bytes, got 16"));

  o.master_key = std::string(32, '\x01');  // not the one the rows were sealed with
  auto wrong = h.open_with(o);
  CHECK(wrong.status().code() == ErrorCode::kFailedPrecondition);
  CHECK(contains(wrong.status().message(), "master key does not match"));
  // Without the stored check value, a sealed row is tried instead of trusting the new key.
  REQUIRE(h.f().db().execute_script("DELETE FROM webhook_key_check").ok());
  CHECK(h.open_with(o).status().code() == ErrorCode::kFailedPrecondition);

  // The right key: the secret unseals and signs.
  o.master_key = std::string(32, '\x3c');
  o.poll_interval = 5ms;
  auto right = h.open_with(o);
  REQUIRE_MESSAGE(right.ok(), right.status().to_string());
  h.adopt(std::move(right).value());
  h.publish();
  REQUIRE(r.wait_delivered(1));
  const Received got = r.requests().front();
  CHECK(verify_webhook({s.secret}, got.id, got.timestamp, got.signature, got.body,
                       std::chrono::system_clock::now())
            .ok());
}

TEST_CASE("webhooks: rows stored in clear by the first version are sealed on open") {
  ManualClock clock;
  Receiver r([](const HttpRequest&, int) { return status(503); });
  Hooks h(&clock);
  WebhookOptions o = hook(r);
  o.schedule = ms({0, 60'000});
  o.jitter = 0;
  o.pause.after_failures = 0;
  const WebhookSubscription s = h.create(o);
  h.publish_id("ev-legacy", "LEGACY-CLEAR-BODY");
  REQUIRE(h.wait([&] { return h.retries("gis").size() == 1; }));
  h.close_dispatcher();
  // What version 1 wrote: the secret and the body in clear.
  const std::string body =
      broker::CloudEvent::parse(R"({"specversion":"1.0","id":"ev-legacy","source":"urn:x",)"
                                R"("type":"permit.issued","data":{"permit":"LEGACY-CLEAR-BODY"}})")
          ->to_json();
  REQUIRE(h.f()
              .db()
              .execute("UPDATE webhook_subscriptions SET secret = ?, sealed = 0",
                       {storage::Value{std::string_view(s.secret)}})
              .ok());
  REQUIRE(h.f()
              .db()
              .execute("UPDATE webhook_retries SET body = ?, sealed = 0",
                       {storage::Value{storage::Blob{body}}})
              .ok());
  h.open();
  auto sealed = h.f().db().query_int("SELECT count(*) FROM webhook_retries WHERE sealed = 1");
  CHECK(sealed->value_or(0) == 1);
  CHECK(h.f()
            .db()
            .query_int("SELECT count(*) FROM webhook_subscriptions WHERE secret LIKE 'whsec_%'")
            ->value_or(-1) == 0);
  r.set([](const HttpRequest&, int) { return status(200); });
  clock.advance(61s);
  h.d().run_due();
  REQUIRE(r.wait_delivered(1));
  const Received got = r.requests().back();
  CHECK(contains(got.body, "LEGACY-CLEAR-BODY"));
  CHECK(verify_webhook({s.secret}, got.id, got.timestamp, got.signature, got.body,
                       at(std::stoll(got.timestamp)))
            .ok());
}

// ---- https -------------------------------------------------------------------------------------

http::TlsServerOptions server_tls(const std::string& cert, const std::string& key) {
  http::TlsServerOptions t;
  t.default_certificate = {cert, key};
  return t;
}

TEST_CASE("webhooks: https endpoints are verified against the configured CA") {
  const auto& pki = civicbus::testing::pki();
  Receiver trusted({}, server_tls(pki.server, pki.server_key));
  Receiver untrusted({}, server_tls(pki.untrusted, pki.untrusted_key));  // self-signed
  Hooks h;
  WebhookOptions o = hook(trusted);
  o.tls.ca_file = pki.ca;
  const WebhookSubscription s = h.create(o);
  WebhookOptions named = hook(trusted, "named");
  named.url = "https://127.0.0.1:" + trusted.url().substr(trusted.url().rfind(':') + 1);
  named.tls.ca_file = pki.ca;
  named.tls.server_name = "localhost";  // checked against the certificate instead of the IP
  const std::string named_secret = h.create(named).secret;
  WebhookOptions bad = hook(untrusted, "bad");
  bad.tls.ca_file = pki.ca;
  bad.schedule = ms({0, 60'000});
  bad.pause.after_failures = 0;
  h.create(bad);

  const std::string id = h.publish();
  REQUIRE(trusted.wait_requests(2));
  REQUIRE(trusted.wait_delivered(1));
  // Both subscriptions (by IP address, and by IP with server_name localhost) got it, signed.
  REQUIRE(trusted.wait_delivered(1));
  REQUIRE(h.wait([&] { return trusted.count() == 2; }));
  for (const Received& got : trusted.requests()) {
    CHECK(got.id == id);
    CHECK(got.status == 204);
    CHECK(verify_webhook({s.secret, named_secret}, got.id, got.timestamp, got.signature, got.body,
                         std::chrono::system_clock::now())
              .ok());
  }

  // The untrusted certificate: no request reaches the handler; the event is parked with the
  // certificate error and counted as a TLS failure.
  REQUIRE(h.wait([&] { return h.retries("bad").size() == 1; }));
  const WebhookRetry w = h.retries("bad").front();
  INFO("last error: ", w.last_error);
  CHECK(contains(w.last_error, "certificate verify failed"));
  CHECK(contains(w.last_error, "not trusted"));
  CHECK(untrusted.count() == 0);
  CHECK(h.wait([&] {
    return contains(h.metrics(),
                    "civicbus_webhook_attempts_total{result=\"tls_error\",subscription=\"bad\"} 1");
  }));

  // A CA file that does not exist fails create() with the file named.
  WebhookOptions missing = hook(trusted, "missing");
  missing.tls.ca_file = "/nonexistent/ca.pem";
  auto refused = h.d().create(missing);
  CHECK_FALSE(refused.ok());
  CHECK(contains(refused.status().message(), "/nonexistent/ca.pem"));
  CHECK(h.d().endpoint_state("missing").status().code() == ErrorCode::kNotFound);
}

// ---- group commit ----------------------------------------------------------------------------

TEST_CASE("webhooks: a retry row that cannot be written leaves only its event with the group") {
  Receiver r([](const HttpRequest&, int) { return status(503); });
  Hooks h;
  WebhookOptions o = hook(r);
  o.schedule = ms({0, 60'000});
  o.pause.after_failures = 0;
  o.max_concurrent = 8;
  h.create(o);
  // The row of one event is refused; the group commit must not take the others with it.
  REQUIRE(h.f()
              .db()
              .execute_script("CREATE TRIGGER refuse_poison BEFORE INSERT ON webhook_retries "
                              "WHEN NEW.event_id = 'ev-poison' BEGIN SELECT RAISE(ABORT, 'refused "
                              "by the test'); END;")
              .ok());
  for (int i = 0; i < 4; ++i) h.publish_id("ev-ok-" + std::to_string(i), "BP");
  h.publish_id("ev-poison", "BP");
  REQUIRE(h.wait([&] { return h.retries("gis").size() == 4; }));
  // Not acknowledged without its row: the group brings it again (after its 1 s backoff).
  REQUIRE(h.wait([&] {
    const auto reqs = r.requests();
    return std::count_if(reqs.begin(), reqs.end(),
                         [](const Received& x) { return x.id == "ev-poison"; }) >= 2;
  }));
  CHECK(h.retries("gis").size() == 4);
  REQUIRE(h.f().db().execute_script("DROP TRIGGER refuse_poison").ok());
  REQUIRE(h.wait([&] { return h.retries("gis").size() == 5; }));
  const auto rows = h.retries("gis");
  CHECK(std::any_of(rows.begin(), rows.end(),
                    [](const WebhookRetry& w) { return w.event_id == "ev-poison"; }));
}

}  // namespace
}  // namespace civicbus::gateway
