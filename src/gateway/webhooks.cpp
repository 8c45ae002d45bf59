// Webhook delivery: see include/civicbus/gateway/webhooks.hpp and docs/webhooks.md.
// Secrets and parked bodies are sealed (Shared::seal_*), retry-table writes group-committed
// (RetryWriter).
//
// One Endpoint per subscription. Work reaches it from two places:
//  - the consumer group's handler (a "fresh" event, holding the group's `done`), and
//  - the retry table, mirrored in memory as a due-time index (`due_`), loaded at start.
// pump() starts attempts while the endpoint has room (max_concurrent) and is not paused;
// finish() settles each attempt: acknowledge, park for later, or dead-letter. Every state
// change an event's fate depends on is written to the database before the group is told.
#include "civicbus/gateway/webhooks.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <utility>

#include "civicbus/broker/broker.hpp"
#include "civicbus/core/crypto.hpp"
#include "civicbus/core/executor.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/metrics.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/http/client.hpp"
#include "civicbus/storage/database.hpp"

namespace civicbus::gateway {

using storage::Value;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view kSecretPrefix = "whsec_";
constexpr std::size_t kMaxReasonBodyBytes = 200;

// ---- small helpers ---------------------------------------------------------------------------

std::int64_t unix_seconds(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::string strip_secret_prefix(std::string_view secret) {
  if (secret.substr(0, kSecretPrefix.size()) == kSecretPrefix)
    secret.remove_prefix(kSecretPrefix.size());
  return std::string(secret);
}

Result<std::string> secret_key(std::string_view secret) {
  auto key = crypto::base64_decode(strip_secret_prefix(secret));
  if (!key.ok()) {
    return invalid_argument("webhook secret is not base64 after the \"whsec_\" prefix");
  }
  return std::move(key).value();
}

// Where requests go, from the subscription's URL.
struct EndpointTarget {
  http::Upstream upstream;
  std::string target;  // path and query
  bool tls = false;    // https
};

Result<EndpointTarget> parse_endpoint_url(std::string_view url) {
  std::string lower;
  for (char c : url.substr(0, 8))
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const bool tls = lower.rfind("https://", 0) == 0;
  if (!tls && lower.rfind("http://", 0) != 0) {
    return invalid_argument(
        fmt::format("webhook URL '{}' must start with http:// or https://", url));
  }
  std::string_view rest = url.substr(tls ? 8 : 7);
  const std::size_t end = rest.find_first_of("/?#");
  std::string authority(rest.substr(0, end));
  std::string target = end == std::string_view::npos ? "/" : std::string(rest.substr(end));
  if (const auto hash = target.find('#'); hash != std::string::npos) target.resize(hash);
  if (target.empty() || target[0] == '?') target.insert(0, "/");
  if (authority.empty()) return invalid_argument(fmt::format("webhook URL '{}' has no host", url));
  if (authority.find('@') != std::string::npos) {
    return invalid_argument(fmt::format(
        "webhook URL '{}' carries credentials; endpoints authenticate the sender by the "
        "signature instead",
        url));
  }
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return invalid_argument(
          fmt::format("webhook URL '{}' has a space or control character in its path", url));
    }
  }
  const bool bracketed = authority.front() == '[';
  const std::size_t colon = authority.rfind(':');
  const bool has_port = bracketed ? authority.back() != ']' : colon != std::string::npos;
  if (!has_port) authority += tls ? ":443" : ":80";
  auto upstream = http::Upstream::parse(authority);
  if (!upstream.ok()) {
    return invalid_argument(fmt::format("webhook URL '{}': {}", url, upstream.status().message()));
  }
  return EndpointTarget{std::move(upstream).value(), std::move(target), tls};
}

Status validate_id(std::string_view id) {
  if (id.empty() || id.size() > 64) {
    return invalid_argument("webhook id must have 1 to 64 characters");
  }
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
      return invalid_argument(fmt::format(
          "webhook id '{}' may hold only a-z, 0-9, '_' and '-' (it names the consumer group "
          "'webhook.<id>')",
          id));
    }
  }
  return {};
}

Json strings_json(const std::vector<std::string>& v) {
  Json a = Json::array();
  for (const auto& s : v) a.push_back(s);
  return a;
}

std::vector<std::string> strings_from(const Json* j) {
  std::vector<std::string> out;
  if (j == nullptr || !j->is_array()) return out;
  for (const auto& e : j->as_array()) {
    if (e.is_string()) out.push_back(e.as_string());
  }
  return out;
}

// The stored form of the options (without the secret, which has its own column).
Json options_json(const WebhookOptions& o) {
  Json schedule = Json::array();
  for (auto d : o.schedule) schedule.push_back(static_cast<std::int64_t>(d.count()));
  return Json::object(
      {{"id", o.id},
       {"topics", strings_json(o.topics)},
       {"event_types", strings_json(o.event_types)},
       {"url", o.url},
       {"tls_ca_file", o.tls.ca_file},
       {"tls_server_name", o.tls.server_name},
       {"schedule_ms", std::move(schedule)},
       {"jitter", o.jitter},
       {"attempt_timeout_ms", static_cast<std::int64_t>(o.attempt_timeout.count())},
       {"max_concurrent", static_cast<std::int64_t>(o.max_concurrent)},
       {"pause_after_failures", o.pause.after_failures},
       {"pause_cool_off_ms", static_cast<std::int64_t>(o.pause.cool_off.count())},
       {"pause_max_cool_off_ms", static_cast<std::int64_t>(o.pause.max_cool_off.count())},
       {"from_earliest", o.from_earliest}});
}

Result<WebhookOptions> options_from_json(std::string_view text) {
  CIVICBUS_ASSIGN_OR_RETURN(Json j, Json::parse(text));
  WebhookOptions o;
  o.id = j.get_string("id");
  o.topics = strings_from(j.find("topics"));
  o.event_types = strings_from(j.find("event_types"));
  o.url = j.get_string("url");
  o.tls.ca_file = j.get_string("tls_ca_file");
  o.tls.server_name = j.get_string("tls_server_name");
  o.schedule.clear();
  if (const Json* s = j.find("schedule_ms"); s != nullptr && s->is_array()) {
    for (const auto& d : s->as_array()) {
      if (d.is_int()) o.schedule.emplace_back(d.as_int());
    }
  }
  if (const Json* jit = j.find("jitter"); jit != nullptr && jit->is_number()) {
    o.jitter = jit->as_double();
  }
  o.attempt_timeout = std::chrono::milliseconds(j.get_int("attempt_timeout_ms", 15'000));
  o.max_concurrent = static_cast<std::size_t>(j.get_int("max_concurrent", 4));
  o.pause.after_failures = static_cast<int>(j.get_int("pause_after_failures", 10));
  o.pause.cool_off = std::chrono::milliseconds(j.get_int("pause_cool_off_ms", 60'000));
  o.pause.max_cool_off = std::chrono::milliseconds(j.get_int("pause_max_cool_off_ms", 3'600'000));
  o.from_earliest = j.get_bool("from_earliest");
  return o;
}

constexpr storage::Migration kWebhookMigrations[] = {
    {1, "webhook subscriptions, parked retries, dead letters",
     R"sql(
CREATE TABLE webhook_subscriptions (
  id TEXT PRIMARY KEY,
  options TEXT NOT NULL,                 -- JSON, without the secret
  secret TEXT NOT NULL,
  previous_secret TEXT NOT NULL,         -- still signing until previous_secret_until
  previous_secret_until INTEGER NOT NULL,
  paused_until INTEGER,                  -- set while the endpoint is paused
  cool_off_ms INTEGER NOT NULL,          -- the current cool-off (doubles on failed probes)
  created_at INTEGER NOT NULL
);
CREATE TABLE webhook_retries (
  subscription_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  topic TEXT NOT NULL,
  body BLOB NOT NULL,                    -- the CloudEvent JSON as sent
  attempts INTEGER NOT NULL,             -- made so far
  next_attempt_at INTEGER NOT NULL,
  first_failed_at INTEGER NOT NULL,
  stored_at INTEGER NOT NULL,            -- when the broker stored the event
  last_error TEXT NOT NULL,
  PRIMARY KEY (subscription_id, event_id)
);
CREATE TABLE webhook_dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  subscription_id TEXT NOT NULL,
  event_id TEXT NOT NULL,
  topic TEXT NOT NULL,
  body BLOB NOT NULL,
  reason TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  first_failed_at INTEGER NOT NULL,
  stored_at INTEGER NOT NULL,
  dead_at INTEGER NOT NULL
);
CREATE INDEX webhook_dead_letters_by_subscription ON webhook_dead_letters(subscription_id, dead_at);
)sql"},
    {2, "webhook secrets and bodies sealed under the master key",
     R"sql(
CREATE TABLE webhook_key_check (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  check_value BLOB NOT NULL,             -- HMAC of a fixed label under the master key
  created_at INTEGER NOT NULL
);
-- 1: secret and previous_secret hold base64 of AES-256-GCM sealed bytes, body holds sealed
-- bytes. 0: a row written in clear by version 1; the dispatcher seals it when it starts.
ALTER TABLE webhook_subscriptions ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhook_retries ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhook_dead_letters ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;
)sql"},
};

// ---- sealing at rest -------------------------------------------------------------------------

// Labels of the keys derived from the master key (HMAC-SHA256(master_key, label), as the
// broker derives its PII wrap key and audit chain key), and of the AAD of each sealed field.
constexpr std::string_view kSealKeyLabel = "civicbus webhooks v1";
constexpr std::string_view kKeyCheckLabel = "civicbus webhooks key check v1";
constexpr std::string_view kBodyAadLabel = "civicbus webhook body v1";
constexpr std::string_view kSecretAadLabel = "civicbus webhook secret v1";
constexpr std::size_t kMasterKeyBytes = 32;

using crypto::wipe;

// A parked or dead-lettered body is bound to its subscription and event: moved to another row
// it no longer opens. The retry and dead-letter rows of one event share it, so a replay copies
// the sealed bytes as they are.
std::string body_aad(std::string_view subscription, std::string_view event_id) {
  return crypto::bound_aad(kBodyAadLabel, {subscription, event_id});
}

// `column` is "secret" or "previous_secret": the two cannot be exchanged either.
std::string secret_aad(std::string_view subscription, std::string_view column) {
  return crypto::bound_aad(kSecretAadLabel, {subscription, column});
}

// ---- group commit of the retry tables --------------------------------------------------------

// Collects writes to the retry and dead-letter tables from every endpoint and commits them
// together: one transaction (one fsync) per batch instead of per row. A batch starts
// `delay` after its first write, at once when it reaches `max_batch`, and right after the
// previous commit when writes gathered meanwhile. Writes commit in the order they were
// submitted. Each write's `done` runs after its commit (or failure), on an executor thread,
// outside the writer's lock; it may submit more writes.
//
// Held by shared_ptr: a scheduled flush keeps it alive; one that runs after the dispatcher
// closed finds nothing queued and touches nothing.
class RetryWriter : public std::enable_shared_from_this<RetryWriter> {
 public:
  // Statements of one write; called inside a transaction, possibly twice (a failed batch is
  // replayed write by write), so it must only issue statements.
  using Write = std::function<Status(storage::Database&)>;
  using Done = std::function<void(Status)>;

  RetryWriter(storage::Database& db, Executor& executor, std::chrono::milliseconds delay,
              std::size_t max_batch, Logger logger, Histogram& batch_rows)
      : db_(db),
        executor_(executor),
        delay_(delay),
        max_batch_(max_batch),
        logger_(std::move(logger)),
        batch_rows_(batch_rows) {}

  void submit(Write write, Done done) {
    std::lock_guard lock(mu_);
    queue_.push_back(Item{std::move(write), std::move(done)});
    if (flushing_) return;  // the running commit starts the next batch when it ends
    if (queue_.size() >= max_batch_ || delay_ <= std::chrono::milliseconds(0)) {
      post_flush_locked(/*now=*/true);
    } else if (!armed_) {
      post_flush_locked(/*now=*/false);
    }
  }

 private:
  struct Item {
    Write write;
    Done done;
  };

  void post_flush_locked(bool now) {
    armed_ = true;
    std::weak_ptr<RetryWriter> weak = weak_from_this();
    auto run = [weak] {
      if (auto self = weak.lock()) self->flush();
    };
    if (now) {
      executor_.post(std::move(run));
    } else {
      executor_.post_after(delay_, std::move(run));
    }
  }

  void flush() {
    std::vector<Item> batch;
    {
      std::lock_guard lock(mu_);
      armed_ = false;
      if (flushing_ || queue_.empty()) return;
      flushing_ = true;
      const std::size_t n = std::min(queue_.size(), max_batch_);
      batch.assign(std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + static_cast<std::ptrdiff_t>(n)));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    }
    std::vector<Status> results(batch.size());
    Status st = db_.transaction([&]() -> Status {
      for (auto& item : batch) CIVICBUS_RETURN_IF_ERROR(item.write(db_));
      return {};
    });
    if (!st.ok() && batch.size() > 1) {
      // One bad write (or a commit that failed) must not fail the others: one by one.
      logger_.warn("webhook retry-table batch failed; writing its rows one by one",
                   {{"rows", std::to_string(batch.size())}, {"error", st.to_string()}});
      for (std::size_t i = 0; i < batch.size(); ++i) {
        results[i] = db_.transaction([&]() -> Status { return batch[i].write(db_); });
      }
    } else {
      for (auto& r : results) r = st;
    }
    batch_rows_.observe(static_cast<double>(batch.size()));
    {
      std::lock_guard lock(mu_);
      flushing_ = false;
      if (!queue_.empty() && !armed_) post_flush_locked(/*now=*/true);
    }
    for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done(results[i]);
  }

  storage::Database& db_;
  Executor& executor_;
  const std::chrono::milliseconds delay_;
  const std::size_t max_batch_;
  Logger logger_;
  Histogram& batch_rows_;

  std::mutex mu_;
  std::deque<Item> queue_;
  bool armed_ = false;     // a flush is posted
  bool flushing_ = false;  // a batch is being committed
};

// ---- the dispatcher's shared parts -----------------------------------------------------------

struct Shared {
  WebhookDispatcherOptions options;  // master_key already wiped
  WebhookContext ctx;
  crypto::AesGcm cipher;  // under HMAC-SHA256(master_key, kSealKeyLabel)
  std::string key_check;  // HMAC-SHA256(master_key, kKeyCheckLabel)
  std::shared_ptr<RetryWriter> writer;
  std::mutex random_mu;

  std::string seal(std::string_view plaintext, std::string_view aad) {
    std::lock_guard lock(random_mu);  // the nonce comes from ctx.random
    return cipher.seal(ctx.random, plaintext, aad);
  }
  std::string seal_body(std::string_view subscription, std::string_view event_id,
                        std::string_view body) {
    return seal(body, body_aad(subscription, event_id));
  }
  Result<std::string> open_body(std::string_view subscription, std::string_view event_id,
                                std::string_view sealed) const {
    auto body = cipher.open(sealed, body_aad(subscription, event_id));
    if (!body.ok()) {
      return data_loss(fmt::format(
          "webhook '{}': the stored body of event {} does not decrypt with the master key (the "
          "row is corrupt, was copied from another row, or was sealed under another master key)",
          subscription, event_id));
    }
    return body;
  }
  // Secrets live in TEXT columns: base64 of the sealed bytes; "" stays "" (no previous secret).
  std::string seal_secret(std::string_view subscription, std::string_view column,
                          std::string_view secret) {
    if (secret.empty()) return {};
    return crypto::base64_encode(seal(secret, secret_aad(subscription, column)));
  }
  Result<std::string> open_secret(std::string_view subscription, std::string_view column,
                                  std::string_view stored) const {
    if (stored.empty()) return std::string();
    auto sealed = crypto::base64_decode(stored);
    Result<std::string> secret = sealed.ok()
                                     ? cipher.open(*sealed, secret_aad(subscription, column))
                                     : Result<std::string>(sealed.status());
    if (!secret.ok()) {
      return data_loss(fmt::format(
          "webhook '{}': its stored {} does not decrypt with the master key (the row is corrupt, "
          "was copied from another row, or was sealed under another master key)",
          subscription, column == "secret" ? "signing secret" : "previous signing secret"));
    }
    return secret;
  }

  // Uniform in [0, 1).
  double uniform() {
    std::lock_guard lock(random_mu);
    return static_cast<double>(ctx.random.next_u64() >> 11) * 0x1.0p-53;
  }
  std::string new_secret() {
    std::lock_guard lock(random_mu);
    return generate_webhook_secret(ctx.random);
  }
};

std::vector<double> delivery_latency_bounds() {
  return {0.001, 0.01, 0.1, 0.5, 1, 5, 30, 60, 300, 1800, 3600, 7200, 18000, 36000, 86400, 172800};
}

// One attempt: a fresh event from the group (with `done`) or a parked retry.
struct Attempt {
  bool fresh = true;
  bool probe = false;  // the one request a paused endpoint sends when its cool-off ended
  std::string event_id;
  std::string topic;
  std::string body;
  int attempts_before = 0;
  SystemTime first_failed_at{};
  SystemTime stored_at{};
  std::function<void(Status)> done;  // fresh only
};

struct Outcome {
  bool ok = false;
  bool cancelled = false;
  std::string result;  // the attempts_total label
  std::string error;   // for the retry row and the dead letter
  double seconds = 0;
};

Outcome classify(const Result<http::HttpResponse>& r) {
  Outcome o;
  if (!r.ok()) {
    const ErrorCode code = r.status().code();
    o.cancelled = code == ErrorCode::kCancelled;
    // The HTTP client reports a failed certificate check as kUnauthenticated.
    o.result = code == ErrorCode::kDeadlineExceeded  ? "timeout"
               : code == ErrorCode::kUnauthenticated ? "tls_error"
                                                     : "network_error";
    o.error = r.status().to_string();
    return o;
  }
  const int status = r->status;
  if (status >= 200 && status < 300) {
    o.ok = true;
    o.result = "success";
    return o;
  }
  o.result = status >= 500 ? "http_5xx" : status >= 400 ? "http_4xx" : "http_other";
  o.error = fmt::format("HTTP {} {}", status,
                        r->reason.empty() ? std::string(http::reason_phrase(status)) : r->reason);
  if (!r->body.empty()) {
    std::string snippet;
    for (char c : std::string_view(r->body).substr(0, kMaxReasonBodyBytes)) {
      snippet += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
    }
    o.error += ": " + snippet;
  }
  return o;
}

// ---- one subscription's endpoint -------------------------------------------------------------

class Endpoint : public std::enable_shared_from_this<Endpoint> {
 public:
  struct Stored {
    std::string secret;
    std::string previous_secret;
    std::int64_t previous_until_us = 0;
    std::optional<std::int64_t> paused_until_us;
    std::int64_t cool_off_ms = 0;
  };

  Endpoint(Shared& shared, WebhookOptions options, EndpointTarget target, Stored stored)
      : shared_(shared),
        options_(std::move(options)),
        target_(std::move(target)),
        secret_(std::move(stored.secret)),
        previous_secret_(std::move(stored.previous_secret)),
        previous_until_us_(stored.previous_until_us),
        cool_off_ms_(stored.cool_off_ms > 0 ? stored.cool_off_ms
                                            : options_.pause.cool_off.count()) {
    if (stored.paused_until_us) {
      paused_ = true;
      paused_until_us_ = *stored.paused_until_us;
    }
    const Labels labels{{"subscription", options_.id}};
    auto& m = shared_.ctx.metrics;
    delivered_ = &m.counter("civicbus_webhook_deliveries_total",
                            "Webhook events settled, by subscription and outcome",
                            {{"subscription", options_.id}, {"outcome", "delivered"}});
    dead_lettered_ = &m.counter("civicbus_webhook_deliveries_total",
                                "Webhook events settled, by subscription and outcome",
                                {{"subscription", options_.id}, {"outcome", "dead_lettered"}});
    attempt_duration_ = &m.histogram("civicbus_webhook_attempt_duration_seconds",
                                     "Time from sending a webhook request to its answer", labels);
    delivery_latency_ = &m.histogram(
        "civicbus_webhook_delivery_latency_seconds",
        "Time from the broker storing an event to the endpoint's 2xx, retries included", labels,
        delivery_latency_bounds());
    paused_gauge_ = &m.gauge("civicbus_webhook_endpoint_paused",
                             "1 while the endpoint is paused after consecutive failures", labels);
    paused_gauge_->set(paused_ ? 1 : 0);
  }

  ~Endpoint() { stop(); }

  const WebhookOptions& options() const { return options_; }

  Status start() {
    http::HttpClientOptions co;
    co.request_timeout = options_.attempt_timeout;
    co.connect_timeout = std::min<std::chrono::milliseconds>(options_.attempt_timeout, 5'000ms);
    co.max_connections_per_upstream = options_.max_concurrent;
    co.max_retries = 0;  // retries follow the webhook schedule, not the client's
    if (target_.tls) {
      http::TlsClientOptions tls;  // verify_peer stays on: a webhook carries signed events
      tls.ca_file = options_.tls.ca_file;
      tls.server_name = options_.tls.server_name;
      co.tls = std::move(tls);
    }
    auto client = http::HttpClient::create(co);
    if (!client.ok()) return client.status().with_context("webhook '" + options_.id + "'");
    client_ = std::shared_ptr<http::HttpClient>(std::move(client).value());

    // Parked retries and the dead-letter count, as the last run left them.
    std::int64_t dead = 0;
    Status st = shared_.ctx.db.query(
        "SELECT event_id, next_attempt_at FROM webhook_retries WHERE subscription_id = ?",
        {Value{std::string_view(options_.id)}}, [&](const storage::Row& row) {
          std::string id(row.get_text(0));
          const std::int64_t due = row.get_int(1);
          parked_[id] = due;
          due_.emplace(due, std::move(id));
          return true;
        });
    CIVICBUS_RETURN_IF_ERROR(st);
    CIVICBUS_ASSIGN_OR_RETURN(
        auto count, shared_.ctx.db.query_int(
                        "SELECT count(*) FROM webhook_dead_letters WHERE subscription_id = ?",
                        {Value{std::string_view(options_.id)}}));
    dead = count.value_or(0);
    dead_letters_ = dead;

    const Labels labels{{"subscription", options_.id}};
    auto& m = shared_.ctx.metrics;
    std::weak_ptr<Endpoint> weak = weak_from_this();
    pending_gauge_ = m.gauge_callback("civicbus_webhook_pending_retries",
                                      "Webhook events parked for a later attempt", labels, [weak] {
                                        auto self = weak.lock();
                                        if (!self) return 0.0;
                                        std::lock_guard lock(self->mu_);
                                        return static_cast<double>(self->parked_.size());
                                      });
    dlq_gauge_ = m.gauge_callback("civicbus_webhook_dead_letters",
                                  "Webhook dead letters kept for the subscription", labels, [weak] {
                                    auto self = weak.lock();
                                    if (!self) return 0.0;
                                    std::lock_guard lock(self->mu_);
                                    return static_cast<double>(self->dead_letters_);
                                  });

    broker::ConsumerGroupOptions g;
    g.group = "webhook." + options_.id;
    g.topics = options_.topics;
    g.parallelism = static_cast<int>(options_.max_concurrent);
    g.max_in_flight = std::max<std::size_t>(64, 4 * options_.max_concurrent);
    // The handler fails an event only when its retry row could not be written (or at close):
    // the group then tries again slowly, and dead-letters in the broker's DLQ only after many.
    g.max_deliveries = 100;
    g.initial_backoff = 1'000ms;
    g.max_backoff = 60'000ms;
    g.start_from =
        options_.from_earliest ? broker::StartFrom::kEarliest : broker::StartFrom::kLatest;
    auto sub = shared_.ctx.broker.subscribe_async(
        g, [weak](const broker::DeliveredEvent& e, std::function<void(Status)> done) {
          auto self = weak.lock();
          if (!self) {
            done(cancelled("webhook subscription is closing"));
            return;
          }
          self->on_event(e, std::move(done));
        });
    if (!sub.ok()) return sub.status().with_context("webhook '" + options_.id + "'");
    subscription_ = std::move(sub).value();
    return {};
  }

  // Stops the group and the client; waits for attempts in flight. Idempotent.
  void stop() {
    std::deque<Attempt> held;
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      stopped_ = true;
      closing_ = true;
      held.swap(fresh_);
    }
    // The group's stop() waits for handlers that have not called `done`: it runs beside us
    // while we give the held events back.
    std::unique_ptr<broker::Subscription> sub = std::move(subscription_);
    std::thread stopper([&sub] {
      if (sub) sub->stop();
    });
    for (auto& a : held) a.done(cancelled("webhook subscription is closing"));
    {
      std::lock_guard lock(mu_);
      client_.reset();  // attempts in flight are cancelled once no pump() still holds it
    }
    {
      std::unique_lock lock(mu_);
      // Writes queued for the group commit finish too: they acknowledge events to the group.
      if (!idle_cv_.wait_for(lock, std::chrono::seconds(60),
                             [&] { return in_flight_ == 0 && pending_writes_ == 0; })) {
        shared_.ctx.logger.warn("webhook attempts or retry-table writes still pending at close",
                                {{"subscription", options_.id}});
      }
    }
    stopper.join();
    sub.reset();
    pending_gauge_ = {};
    dlq_gauge_ = {};
  }

  void on_event(const broker::DeliveredEvent& e, std::function<void(Status)> done) {
    if (!options_.event_types.empty()) {
      const std::string type = e.event.type();
      const bool wanted =
          std::any_of(options_.event_types.begin(), options_.event_types.end(),
                      [&](const std::string& p) { return broker::topic_matches(p, type); });
      if (!wanted) {
        done(Status());
        return;
      }
    }
    Attempt a;
    a.fresh = true;
    a.event_id = e.event.id();
    a.topic = e.topic;
    a.body = e.event.to_json();
    a.stored_at = e.stored_at;
    a.done = std::move(done);
    {
      std::unique_lock lock(mu_);
      if (closing_) {
        lock.unlock();
        a.done(cancelled("webhook subscription is closing"));
        return;
      }
      if (parked_.count(a.event_id) != 0) {
        // Delivered again by the group (its commit did not reach the disk before a restart)
        // although the retry table already holds it: that row carries it on.
        lock.unlock();
        a.done(Status());
        return;
      }
    }
    if (!options_.schedule.empty() && options_.schedule.front() > 0ms) {
      // The first attempt waits too: park at once (park() gives back a slot, so take one).
      {
        std::lock_guard lock(mu_);
        ++in_flight_;
      }
      park(std::move(a), 0, "", /*count_failure=*/false);
      return;
    }
    {
      std::lock_guard lock(mu_);
      fresh_.push_back(std::move(a));
    }
    pump();
  }

  // Starts as many attempts as the endpoint has room for.
  void pump() {
    std::vector<Attempt> start;
    std::shared_ptr<http::HttpClient> client;
    {
      std::lock_guard lock(mu_);
      if (closing_ || !client_) return;
      client = client_;
      const std::int64_t now = to_unix_micros(shared_.ctx.clock.now());
      while (in_flight_ < options_.max_concurrent) {
        bool probe = false;
        if (paused_) {
          if (probing_ || now < paused_until_us_) break;
          probe = true;
        }
        Attempt a;
        if (!due_.empty() && due_.begin()->first <= now) {
          a.fresh = false;
          a.event_id = due_.begin()->second;
          due_.erase(due_.begin());
        } else if (!fresh_.empty()) {
          a = std::move(fresh_.front());
          fresh_.pop_front();
        } else {
          break;
        }
        a.probe = probe;
        if (probe) probing_ = true;
        ++in_flight_;
        start.push_back(std::move(a));
      }
    }
    for (auto& a : start) {
      if (!a.fresh && !load(a)) continue;
      send(*client, std::move(a));
    }
  }

  // Ends a pause (operator's call, or a successful probe).
  void resume() {
    {
      std::lock_guard lock(mu_);
      if (!paused_) return;
      paused_ = false;
      probing_ = false;
      consecutive_failures_ = 0;
      cool_off_ms_ = options_.pause.cool_off.count();
      paused_gauge_->set(0);
    }
    persist_pause(std::nullopt, options_.pause.cool_off.count());
    shared_.ctx.logger.info("webhook endpoint resumed", {{"subscription", options_.id}});
    pump();
  }

  WebhookEndpointState state() {
    std::lock_guard lock(mu_);
    WebhookEndpointState s;
    s.id = options_.id;
    s.paused = paused_;
    if (paused_) s.paused_until = from_unix_micros(paused_until_us_);
    s.consecutive_failures = consecutive_failures_;
    s.in_flight = in_flight_;
    s.pending_retries = static_cast<std::int64_t>(parked_.size());
    s.dead_letters = dead_letters_;
    return s;
  }

  std::string secret() const {
    std::lock_guard lock(mu_);
    return secret_;
  }

  void set_secrets(std::string secret, std::string previous, std::int64_t previous_until_us) {
    std::lock_guard lock(mu_);
    secret_ = std::move(secret);
    previous_secret_ = std::move(previous);
    previous_until_us_ = previous_until_us;
  }

  // Rows moved into the retry table by a replay.
  void add_parked(const std::vector<std::pair<std::string, std::int64_t>>& rows,
                  std::int64_t replayed_dead) {
    {
      std::lock_guard lock(mu_);
      for (const auto& [id, due] : rows) {
        if (parked_.emplace(id, due).second) due_.emplace(due, id);
      }
      dead_letters_ -= replayed_dead;
    }
    pump();
  }

 private:
  // Reads a parked event's row. False (and the slot given back) when it is gone or unreadable.
  bool load(Attempt& a) {
    bool found = false;
    std::string sealed;
    Status st = shared_.ctx.db.query(
        "SELECT topic, body, attempts, first_failed_at, stored_at FROM webhook_retries "
        "WHERE subscription_id = ? AND event_id = ?",
        {Value{std::string_view(options_.id)}, Value{std::string_view(a.event_id)}},
        [&](const storage::Row& row) {
          a.topic = std::string(row.get_text(0));
          sealed = std::string(row.get_blob(1));
          a.attempts_before = static_cast<int>(row.get_int(2));
          a.first_failed_at = from_unix_micros(row.get_int(3));
          a.stored_at = from_unix_micros(row.get_int(4));
          found = true;
          return false;
        });
    if (found) {
      auto body = shared_.open_body(options_.id, a.event_id, sealed);
      if (body.ok()) {
        a.body = std::move(body).value();
        return true;
      }
      // Never send what did not decrypt. The row stays (pending_retries() lists it) but is
      // not tried again in this run; an operator removes it or restores the right key.
      shared_.ctx.logger.error("a parked webhook event cannot be decrypted; it is not sent",
                               {{"subscription", options_.id},
                                {"event_id", a.event_id},
                                {"error", body.status().to_string()}});
      std::lock_guard lock(mu_);
      if (a.probe) probing_ = false;
      --in_flight_;
      idle_cv_.notify_all();
      return false;
    }
    std::lock_guard lock(mu_);
    if (!st.ok()) {
      // The database is unwell: look again a little later.
      shared_.ctx.logger.error("could not read a parked webhook event",
                               {{"subscription", options_.id}, {"error", st.to_string()}});
      const std::int64_t due = to_unix_micros(shared_.ctx.clock.now() + 1s);
      parked_[a.event_id] = due;
      due_.emplace(due, a.event_id);
    } else {
      parked_.erase(a.event_id);
    }
    if (a.probe) probing_ = false;
    --in_flight_;
    idle_cv_.notify_all();
    return false;
  }

  void send(http::HttpClient& client, Attempt a) {
    const std::int64_t ts = unix_seconds(shared_.ctx.clock.now());
    std::string secret;
    std::string previous;
    {
      std::lock_guard lock(mu_);
      secret = secret_;
      if (!previous_secret_.empty() &&
          to_unix_micros(shared_.ctx.clock.now()) < previous_until_us_) {
        previous = previous_secret_;
      }
    }
    std::string signatures;
    for (const std::string* s : {&secret, &previous}) {
      if (s->empty()) continue;
      auto sig = sign_webhook(*s, a.event_id, ts, a.body);
      if (!sig.ok()) continue;  // validated at create(); cannot happen
      if (!signatures.empty()) signatures += ' ';
      signatures += *sig;
    }
    http::HttpRequest req;
    req.method = "POST";
    req.target = target_.target;
    req.headers.add("Content-Type", "application/cloudevents+json; charset=utf-8");
    req.headers.add("User-Agent", shared_.options.user_agent);
    req.headers.add("webhook-id", a.event_id);
    req.headers.add("webhook-timestamp", std::to_string(ts));
    req.headers.add("webhook-signature", std::move(signatures));
    req.body = a.body;
    const SteadyTime started = shared_.ctx.clock.steady_now();
    auto attempt = std::make_shared<Attempt>(std::move(a));
    client.send_async(
        target_.upstream, std::move(req),
        [self = shared_from_this(), attempt, started](Result<http::HttpResponse> r) {
          Outcome o = classify(r);
          o.seconds =
              std::chrono::duration<double>(self->shared_.ctx.clock.steady_now() - started).count();
          // Bookkeeping writes to the database: not on the client's thread.
          self->shared_.ctx.executor.post(
              [self, attempt, o = std::move(o)] { self->finish(std::move(*attempt), o); });
        });
  }

  void finish(Attempt a, const Outcome& o) {
    bool closing;
    {
      std::lock_guard lock(mu_);
      closing = closing_;
    }
    if (o.cancelled && closing) {
      // Not an attempt: the event stays where it was (the group, or its retry row).
      if (a.fresh) {
        a.done(cancelled("webhook subscription is closing"));
      } else {
        std::lock_guard lock(mu_);
        if (auto it = parked_.find(a.event_id); it != parked_.end())
          due_.emplace(it->second, a.event_id);
      }
      release(a);
      return;
    }
    attempts_counter(o.result).inc();
    attempt_duration_->observe(o.seconds);
    if (o.ok) {
      if (!a.fresh) {
        write(
            [sub = options_.id, event_id = a.event_id](storage::Database& db) {
              return db
                  .execute("DELETE FROM webhook_retries WHERE subscription_id = ? AND event_id = ?",
                           {Value{std::string_view(sub)}, Value{std::string_view(event_id)}})
                  .status();
            },
            [this](const Status& st) {
              if (st.ok()) return;
              // The row stays: after a restart the event goes once more (at least once).
              shared_.ctx.logger.error("could not remove a delivered webhook's retry row",
                                       {{"subscription", options_.id}, {"error", st.to_string()}});
            });
      } else {
        a.done(Status());
      }
      delivered_->inc();
      delivery_latency_->observe(std::max(
          0.0, std::chrono::duration<double>(shared_.ctx.clock.now() - a.stored_at).count()));
      bool was_paused = false;
      {
        std::lock_guard lock(mu_);
        parked_.erase(a.event_id);
        consecutive_failures_ = 0;
        was_paused = paused_;
      }
      release(a);
      if (was_paused) resume();
      pump();
      return;
    }
    note_failure(a, o.error);
    const int attempts = a.attempts_before + 1;
    if (attempts >= static_cast<int>(options_.schedule.size())) {
      dead_letter(std::move(a), attempts, o.error);
    } else {
      park(std::move(a), attempts, o.error, /*count_failure=*/true);
    }
  }

  // Counts a failed attempt towards a pause.
  void note_failure(const Attempt& a, const std::string& error) {
    std::optional<std::int64_t> pause_until;
    std::int64_t cool_off = 0;
    {
      std::lock_guard lock(mu_);
      ++consecutive_failures_;
      const std::int64_t now = to_unix_micros(shared_.ctx.clock.now());
      if (paused_ && a.probe) {
        probing_ = false;
        cool_off_ms_ =
            std::min<std::int64_t>(cool_off_ms_ * 2, options_.pause.max_cool_off.count());
        paused_until_us_ = now + cool_off_ms_ * 1000;
        pause_until = paused_until_us_;
      } else if (!paused_ && options_.pause.after_failures > 0 &&
                 consecutive_failures_ >= options_.pause.after_failures) {
        paused_ = true;
        cool_off_ms_ = options_.pause.cool_off.count();
        paused_until_us_ = now + cool_off_ms_ * 1000;
        pause_until = paused_until_us_;
        paused_gauge_->set(1);
        shared_.ctx.logger.warn("webhook endpoint paused after consecutive failures",
                                {{"subscription", options_.id},
                                 {"failures", std::to_string(consecutive_failures_)},
                                 {"cool_off_ms", std::to_string(cool_off_ms_)},
                                 {"last_error", error}});
      }
      cool_off = cool_off_ms_;
    }
    if (pause_until) persist_pause(pause_until, cool_off);
  }

  void persist_pause(std::optional<std::int64_t> until, std::int64_t cool_off_ms) {
    auto st = shared_.ctx.db.execute(
        "UPDATE webhook_subscriptions SET paused_until = ?, cool_off_ms = ? WHERE id = ?",
        {until ? Value{*until} : Value{nullptr}, Value{cool_off_ms},
         Value{std::string_view(options_.id)}});
    if (!st.ok()) {
      shared_.ctx.logger.error("could not store the webhook endpoint's pause",
                               {{"subscription", options_.id}, {"error", st.status().to_string()}});
    }
  }

  std::chrono::milliseconds jittered(std::chrono::milliseconds d) {
    if (d <= 0ms || options_.jitter <= 0) return d;
    const double factor = 1.0 + options_.jitter * (2.0 * shared_.uniform() - 1.0);
    return std::chrono::milliseconds(
        static_cast<std::int64_t>(static_cast<double>(d.count()) * factor));
  }

  // Queues `w` for the group commit; `done` runs after it committed (or failed). stop() waits
  // for every queued write of the endpoint.
  void write(RetryWriter::Write w, std::function<void(const Status&)> done) {
    {
      std::lock_guard lock(mu_);
      ++pending_writes_;
    }
    shared_.writer->submit(std::move(w),
                           [self = shared_from_this(), done = std::move(done)](Status st) {
                             done(st);
                             std::lock_guard lock(self->mu_);
                             --self->pending_writes_;
                             self->idle_cv_.notify_all();
                           });
  }

  // Writes (or updates) the event's retry row; a fresh event is acknowledged to the group only
  // once its row is committed. The slot is given back at once: the commit holds no request.
  void park(Attempt a, int attempts, const std::string& error, bool count_failure) {
    const SystemTime now = shared_.ctx.clock.now();
    const std::int64_t due = to_unix_micros(now + jittered(options_.schedule[attempts]));
    std::string event_id = a.event_id;
    if (a.fresh) {
      if (count_failure) a.first_failed_at = now;
      struct RetryRow {
        std::string subscription, event_id, topic, sealed_body, error;
        std::int64_t attempts, due, first_failed_at, stored_at;
      };
      RetryRow row{options_.id,
                   a.event_id,
                   a.topic,
                   shared_.seal_body(options_.id, a.event_id, a.body),
                   error,
                   attempts,
                   due,
                   to_unix_micros(count_failure ? a.first_failed_at : now),
                   to_unix_micros(a.stored_at)};
      auto done = std::move(a.done);
      release(a);
      write(
          [row = std::move(row)](storage::Database& db) {
            return db
                .execute(
                    "INSERT INTO webhook_retries(subscription_id, event_id, topic, body, "
                    "attempts, next_attempt_at, first_failed_at, stored_at, last_error, sealed) "
                    "VALUES (?,?,?,?,?,?,?,?,?,1) "
                    "ON CONFLICT(subscription_id, event_id) DO UPDATE SET "
                    "attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at, "
                    "last_error = excluded.last_error",
                    {Value{std::string_view(row.subscription)},
                     Value{std::string_view(row.event_id)}, Value{std::string_view(row.topic)},
                     Value{storage::Blob{row.sealed_body}}, Value{row.attempts}, Value{row.due},
                     Value{row.first_failed_at}, Value{row.stored_at},
                     Value{std::string_view(row.error)}})
                .status();
          },
          [this, event_id, due, done = std::move(done)](const Status& st) {
            if (!st.ok()) {
              // Not parked: the group keeps the event and brings it again.
              shared_.ctx.logger.error("could not park a webhook event for retry",
                                       {{"subscription", options_.id}, {"error", st.to_string()}});
              done(st);
              pump();
              return;
            }
            {
              std::lock_guard lock(mu_);
              parked_[event_id] = due;
              due_.emplace(due, event_id);
            }
            done(Status());
            pump();
          });
      pump();
      return;
    }
    release(a);
    write(
        [sub = options_.id, event_id, attempts, due, error](storage::Database& db) {
          return db
              .execute(
                  "UPDATE webhook_retries SET attempts = ?, next_attempt_at = ?, last_error = ? "
                  "WHERE subscription_id = ? AND event_id = ?",
                  {Value{static_cast<std::int64_t>(attempts)}, Value{due},
                   Value{std::string_view(error)}, Value{std::string_view(sub)},
                   Value{std::string_view(event_id)}})
              .status();
        },
        // Due again only once the row says so: an attempt must read the new count.
        [this, event_id, due](const Status& st) {
          if (!st.ok()) {
            // The row keeps its older count; the schedule in memory goes on.
            shared_.ctx.logger.error("could not update a webhook retry row",
                                     {{"subscription", options_.id}, {"error", st.to_string()}});
          }
          {
            std::lock_guard lock(mu_);
            parked_[event_id] = due;
            due_.emplace(due, event_id);
          }
          pump();
        });
    pump();
  }

  void dead_letter(Attempt a, int attempts, const std::string& reason) {
    const SystemTime now = shared_.ctx.clock.now();
    if (a.fresh) a.first_failed_at = now;
    struct DeadRow {
      std::string subscription, event_id, topic, sealed_body, reason;
      std::int64_t attempts, first_failed_at, stored_at, dead_at;
    };
    DeadRow row{options_.id,
                a.event_id,
                a.topic,
                shared_.seal_body(options_.id, a.event_id, a.body),
                reason,
                attempts,
                to_unix_micros(a.first_failed_at),
                to_unix_micros(a.stored_at),
                to_unix_micros(now)};
    const bool fresh = a.fresh;
    std::string event_id = a.event_id;
    auto done = std::move(a.done);
    {
      // Counted at once (state() agrees with the table as soon as it commits); undone below
      // when the write fails.
      std::lock_guard lock(mu_);
      parked_.erase(event_id);
      ++dead_letters_;
    }
    release(a);
    write(
        [row = std::move(row), fresh](storage::Database& db) -> Status {
          CIVICBUS_RETURN_IF_ERROR(
              db.execute("INSERT INTO webhook_dead_letters(subscription_id, event_id, topic, body, "
                         "reason, attempts, first_failed_at, stored_at, dead_at, sealed) "
                         "VALUES (?,?,?,?,?,?,?,?,?,1)",
                         {Value{std::string_view(row.subscription)},
                          Value{std::string_view(row.event_id)}, Value{std::string_view(row.topic)},
                          Value{storage::Blob{row.sealed_body}},
                          Value{std::string_view(row.reason)}, Value{row.attempts},
                          Value{row.first_failed_at}, Value{row.stored_at}, Value{row.dead_at}})
                  .status());
          if (fresh) return {};
          return db
              .execute("DELETE FROM webhook_retries WHERE subscription_id = ? AND event_id = ?",
                       {Value{std::string_view(row.subscription)},
                        Value{std::string_view(row.event_id)}})
              .status();
        },
        [this, fresh, event_id, attempts, reason, done = std::move(done)](const Status& st) {
          if (!st.ok()) {
            shared_.ctx.logger.error("could not dead-letter a webhook event",
                                     {{"subscription", options_.id}, {"error", st.to_string()}});
            {
              std::lock_guard lock(mu_);
              --dead_letters_;
              if (!fresh) {
                const std::int64_t due = to_unix_micros(shared_.ctx.clock.now() + 60s);
                parked_[event_id] = due;
                due_.emplace(due, event_id);
              }
            }
            if (fresh) done(st);
            pump();
            return;
          }
          if (fresh) done(Status());
          dead_lettered_->inc();
          shared_.ctx.logger.warn("webhook event dead-lettered after its last attempt",
                                  {{"subscription", options_.id},
                                   {"event_id", event_id},
                                   {"attempts", std::to_string(attempts)},
                                   {"reason", reason}});
          pump();
        });
    pump();
  }

  // Gives the attempt's slot back.
  void release(const Attempt& a) {
    std::lock_guard lock(mu_);
    if (a.probe && probing_ && paused_) {
      // A probe that settled without an answer either way (closing): let another go.
      probing_ = false;
    }
    --in_flight_;
    idle_cv_.notify_all();
  }

  Counter& attempts_counter(const std::string& result) {
    return shared_.ctx.metrics.counter("civicbus_webhook_attempts_total",
                                       "Webhook requests sent, by subscription and result",
                                       {{"subscription", options_.id}, {"result", result}});
  }

  Shared& shared_;
  const WebhookOptions options_;
  const EndpointTarget target_;

  Counter* delivered_ = nullptr;
  Counter* dead_lettered_ = nullptr;
  Histogram* attempt_duration_ = nullptr;
  Histogram* delivery_latency_ = nullptr;
  Gauge* paused_gauge_ = nullptr;
  MetricsRegistry::CallbackHandle pending_gauge_;
  MetricsRegistry::CallbackHandle dlq_gauge_;

  std::unique_ptr<broker::Subscription> subscription_;

  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  std::shared_ptr<http::HttpClient> client_;
  std::string secret_;
  std::string previous_secret_;
  std::int64_t previous_until_us_ = 0;
  std::deque<Attempt> fresh_;                             // from the group, waiting for a slot
  std::unordered_map<std::string, std::int64_t> parked_;  // event id -> due (every retry row)
  std::set<std::pair<std::int64_t, std::string>> due_;    // parked and not in flight, by due
  std::size_t in_flight_ = 0;
  std::size_t pending_writes_ = 0;  // queued for the group commit, `done` not yet run
  int consecutive_failures_ = 0;
  bool paused_ = false;
  bool probing_ = false;
  std::int64_t paused_until_us_ = 0;
  std::int64_t cool_off_ms_ = 0;
  std::int64_t dead_letters_ = 0;
  bool closing_ = false;
  bool stopped_ = false;
};

// ---- the dispatcher --------------------------------------------------------------------------

// The poll timer holds this, not the dispatcher, so a timer that fires after close() finds
// nothing to do.
struct TickState {
  std::mutex mu;
  class DispatcherImpl* owner = nullptr;
};

class DispatcherImpl final : public WebhookDispatcher {
 public:
  DispatcherImpl(WebhookDispatcherOptions options, WebhookContext ctx, crypto::AesGcm cipher,
                 std::string key_check)
      : shared_{std::move(options),
                std::move(ctx),
                std::move(cipher),
                std::move(key_check),
                {},
                {}},
        tick_(std::make_shared<TickState>()) {
    tick_->owner = this;
    Histogram& batch_rows = shared_.ctx.metrics.histogram(
        "civicbus_webhook_retry_write_batch_rows",
        "Retry and dead-letter table writes committed per transaction (group commit)", {},
        {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024});
    shared_.writer = std::make_shared<RetryWriter>(
        shared_.ctx.db, shared_.ctx.executor, shared_.options.retry_write_delay,
        shared_.options.retry_write_batch, shared_.ctx.logger, batch_rows);
  }
  ~DispatcherImpl() override { close(); }

  Status start() {
    CIVICBUS_RETURN_IF_ERROR(storage::migrate(shared_.ctx.db, "webhooks", kWebhookMigrations));
    CIVICBUS_RETURN_IF_ERROR(check_master_key());
    CIVICBUS_RETURN_IF_ERROR(seal_rows_in_clear());
    struct Row {
      std::string id, options;
      Endpoint::Stored stored;
    };
    std::vector<Row> rows;
    CIVICBUS_RETURN_IF_ERROR(shared_.ctx.db.query(
        "SELECT id, options, secret, previous_secret, previous_secret_until, paused_until, "
        "cool_off_ms FROM webhook_subscriptions ORDER BY id",
        {}, [&](const storage::Row& r) {
          Row row;
          row.id = std::string(r.get_text(0));
          row.options = std::string(r.get_text(1));
          row.stored.secret = std::string(r.get_text(2));  // sealed, opened below
          row.stored.previous_secret = std::string(r.get_text(3));
          row.stored.previous_until_us = r.get_int(4);
          row.stored.paused_until_us = r.get_optional_int(5);
          row.stored.cool_off_ms = r.get_int(6);
          rows.push_back(std::move(row));
          return true;
        }));
    for (auto& row : rows) {
      CIVICBUS_ASSIGN_OR_RETURN(row.stored.secret,
                                shared_.open_secret(row.id, "secret", row.stored.secret));
      CIVICBUS_ASSIGN_OR_RETURN(
          row.stored.previous_secret,
          shared_.open_secret(row.id, "previous_secret", row.stored.previous_secret));
      auto options = options_from_json(row.options);
      if (!options.ok()) {
        return data_loss(fmt::format("webhook '{}': stored options are unreadable: {}", row.id,
                                     options.status().message()));
      }
      auto target = parse_endpoint_url(options->url);
      if (!target.ok()) return target.status().with_context("webhook '" + row.id + "'");
      auto ep = std::make_shared<Endpoint>(shared_, std::move(options).value(),
                                           std::move(target).value(), std::move(row.stored));
      CIVICBUS_RETURN_IF_ERROR(ep->start());
      std::lock_guard lock(mu_);
      endpoints_[row.id] = std::move(ep);
    }
    schedule_tick();
    return {};
  }

  Result<WebhookSubscription> create(WebhookOptions options) override {
    CIVICBUS_RETURN_IF_ERROR(options.validate());
    CIVICBUS_ASSIGN_OR_RETURN(auto target, parse_endpoint_url(options.url));
    std::string secret = options.secret.empty() ? shared_.new_secret() : options.secret;
    options.secret.clear();
    const SystemTime now = shared_.ctx.clock.now();
    {
      std::lock_guard lock(mu_);
      if (closed_) return unavailable("webhook dispatcher is closed");
      if (endpoints_.count(options.id) != 0 || creating_.count(options.id) != 0) {
        return already_exists(fmt::format("webhook '{}' exists; remove it first", options.id));
      }
      creating_.insert(options.id);
    }
    auto done_creating = [&] {
      std::lock_guard lock(mu_);
      creating_.erase(options.id);
    };
    auto inserted = shared_.ctx.db.execute(
        "INSERT INTO webhook_subscriptions(id, options, secret, previous_secret, "
        "previous_secret_until, paused_until, cool_off_ms, created_at, sealed) "
        "VALUES (?,?,?,'',0,NULL,?,?,1)",
        {Value{std::string_view(options.id)}, Value{std::string_view(options_json(options).dump())},
         Value{std::string_view(shared_.seal_secret(options.id, "secret", secret))},
         Value{static_cast<std::int64_t>(options.pause.cool_off.count())},
         Value{to_unix_micros(now)}});
    if (!inserted.ok()) {
      done_creating();
      return inserted.status().with_context("webhook '" + options.id + "'");
    }
    Endpoint::Stored stored;
    stored.secret = secret;
    auto ep = std::make_shared<Endpoint>(shared_, options, std::move(target), std::move(stored));
    Status st = ep->start();
    if (!st.ok()) {
      ep->stop();
      shared_.ctx.db
          .execute("DELETE FROM webhook_subscriptions WHERE id = ?",
                   {Value{std::string_view(options.id)}})
          .status()
          .ignore_error();
      done_creating();
      return st;
    }
    {
      std::lock_guard lock(mu_);
      creating_.erase(options.id);
      endpoints_[options.id] = ep;
    }
    shared_.ctx.logger.info("webhook subscription created",
                            {{"subscription", options.id}, {"url", options.url}});
    return WebhookSubscription{std::move(options), std::move(secret), now};
  }

  Status remove(std::string_view id) override {
    std::shared_ptr<Endpoint> ep;
    {
      std::lock_guard lock(mu_);
      auto it = endpoints_.find(id);
      if (it == endpoints_.end()) return not_found(fmt::format("webhook '{}' does not exist", id));
      ep = it->second;
      endpoints_.erase(it);
    }
    ep->stop();
    auto& db = shared_.ctx.db;
    return db.transaction([&]() -> Status {
      for (const char* sql : {"DELETE FROM webhook_retries WHERE subscription_id = ?",
                              "DELETE FROM webhook_dead_letters WHERE subscription_id = ?",
                              "DELETE FROM webhook_subscriptions WHERE id = ?"}) {
        CIVICBUS_RETURN_IF_ERROR(db.execute(sql, {Value{id}}).status());
      }
      return {};
    });
  }

  Result<std::vector<WebhookSubscription>> subscriptions() override {
    std::vector<WebhookSubscription> out;
    Status parse_error;
    CIVICBUS_RETURN_IF_ERROR(
        shared_.ctx.db.query("SELECT options, created_at FROM webhook_subscriptions ORDER BY id",
                             {}, [&](const storage::Row& r) {
                               auto o = options_from_json(r.get_text(0));
                               if (!o.ok()) {
                                 parse_error = o.status();
                                 return false;
                               }
                               out.push_back(WebhookSubscription{std::move(o).value(), "",
                                                                 from_unix_micros(r.get_int(1))});
                               return true;
                             }));
    CIVICBUS_RETURN_IF_ERROR(parse_error);
    return out;
  }

  Result<WebhookSubscription> rotate_secret(std::string_view id, std::string new_secret) override {
    CIVICBUS_ASSIGN_OR_RETURN(auto ep, endpoint(id));
    if (new_secret.empty()) new_secret = shared_.new_secret();
    CIVICBUS_RETURN_IF_ERROR(validate_webhook_secret(new_secret));
    const SystemTime now = shared_.ctx.clock.now();
    const std::int64_t until = to_unix_micros(now + shared_.options.rotation_overlap);
    std::string old = ep->secret();  // as the stored row holds it, sealed
    SystemTime created{};
    auto& db = shared_.ctx.db;
    const std::string sealed_new = shared_.seal_secret(id, "secret", new_secret);
    const std::string sealed_old = shared_.seal_secret(id, "previous_secret", old);
    CIVICBUS_RETURN_IF_ERROR(db.transaction([&]() -> Status {
      CIVICBUS_RETURN_IF_ERROR(db.query("SELECT created_at FROM webhook_subscriptions WHERE id = ?",
                                        {Value{id}}, [&](const storage::Row& r) {
                                          created = from_unix_micros(r.get_int(0));
                                          return false;
                                        }));
      return db
          .execute(
              "UPDATE webhook_subscriptions SET secret = ?, previous_secret = ?, "
              "previous_secret_until = ?, sealed = 1 WHERE id = ?",
              {Value{std::string_view(sealed_new)}, Value{std::string_view(sealed_old)},
               Value{until}, Value{id}})
          .status();
    }));
    ep->set_secrets(new_secret, old, until);
    WebhookOptions o = ep->options();
    o.secret.clear();
    return WebhookSubscription{std::move(o), std::move(new_secret), created};
  }

  Result<WebhookEndpointState> endpoint_state(std::string_view id) override {
    CIVICBUS_ASSIGN_OR_RETURN(auto ep, endpoint(id));
    return ep->state();
  }

  Status resume(std::string_view id) override {
    CIVICBUS_ASSIGN_OR_RETURN(auto ep, endpoint(id));
    ep->resume();
    return {};
  }

  Result<std::vector<WebhookRetry>> pending_retries(std::string_view id,
                                                    std::size_t limit) override {
    CIVICBUS_ASSIGN_OR_RETURN(auto ep, endpoint(id));
    (void)ep;
    std::vector<WebhookRetry> out;
    CIVICBUS_RETURN_IF_ERROR(shared_.ctx.db.query(
        "SELECT event_id, topic, attempts, next_attempt_at, first_failed_at, last_error "
        "FROM webhook_retries WHERE subscription_id = ? ORDER BY next_attempt_at, event_id LIMIT ?",
        {Value{id}, Value{static_cast<std::int64_t>(limit)}}, [&](const storage::Row& r) {
          WebhookRetry w;
          w.event_id = std::string(r.get_text(0));
          w.topic = std::string(r.get_text(1));
          w.attempts = static_cast<int>(r.get_int(2));
          w.next_attempt_at = from_unix_micros(r.get_int(3));
          w.first_failed_at = from_unix_micros(r.get_int(4));
          w.last_error = std::string(r.get_text(5));
          out.push_back(std::move(w));
          return true;
        }));
    return out;
  }

  Result<std::vector<WebhookDeadLetter>> dead_letters(std::string_view id,
                                                      std::size_t limit) override {
    std::vector<WebhookDeadLetter> out;
    Status unreadable;
    CIVICBUS_RETURN_IF_ERROR(shared_.ctx.db.query(
        "SELECT id, subscription_id, event_id, topic, body, reason, attempts, first_failed_at, "
        "dead_at FROM webhook_dead_letters WHERE subscription_id = ? ORDER BY id LIMIT ?",
        {Value{id}, Value{static_cast<std::int64_t>(limit)}}, [&](const storage::Row& r) {
          WebhookDeadLetter d;
          d.id = r.get_int(0);
          d.subscription = std::string(r.get_text(1));
          d.event_id = std::string(r.get_text(2));
          d.topic = std::string(r.get_text(3));
          auto body = shared_.open_body(d.subscription, d.event_id, r.get_blob(4));
          if (!body.ok()) {
            unreadable = body.status();
            return false;
          }
          d.body = std::move(body).value();
          d.reason = std::string(r.get_text(5));
          d.attempts = static_cast<int>(r.get_int(6));
          d.first_failed_at = from_unix_micros(r.get_int(7));
          d.dead_at = from_unix_micros(r.get_int(8));
          out.push_back(std::move(d));
          return true;
        }));
    CIVICBUS_RETURN_IF_ERROR(unreadable);
    return out;
  }

  Result<std::int64_t> replay_dead_letters(std::string_view id) override {
    CIVICBUS_ASSIGN_OR_RETURN(auto ep, endpoint(id));
    const std::int64_t now = to_unix_micros(shared_.ctx.clock.now());
    std::vector<std::pair<std::string, std::int64_t>> rows;
    std::int64_t moved = 0;
    auto& db = shared_.ctx.db;
    CIVICBUS_RETURN_IF_ERROR(db.transaction([&]() -> Status {
      rows.clear();
      CIVICBUS_RETURN_IF_ERROR(
          db.query("SELECT event_id FROM webhook_dead_letters WHERE subscription_id = ?",
                   {Value{id}}, [&](const storage::Row& r) {
                     rows.emplace_back(std::string(r.get_text(0)), now);
                     return true;
                   }));
      CIVICBUS_RETURN_IF_ERROR(
          // The sealed body moves as it is: retry and dead-letter rows share its AAD.
          db.execute(
                "INSERT INTO webhook_retries(subscription_id, event_id, topic, body, attempts, "
                "next_attempt_at, first_failed_at, stored_at, last_error, sealed) "
                "SELECT subscription_id, event_id, topic, body, 0, ?, first_failed_at, "
                "stored_at, 'replayed from the dead letters: ' || reason, sealed "
                "FROM webhook_dead_letters WHERE subscription_id = ? "
                "ON CONFLICT(subscription_id, event_id) DO NOTHING",
                {Value{now}, Value{id}})
              .status());
      CIVICBUS_ASSIGN_OR_RETURN(
          moved,
          db.execute("DELETE FROM webhook_dead_letters WHERE subscription_id = ?", {Value{id}}));
      return {};
    }));
    ep->add_parked(rows, moved);
    return moved;
  }

  void run_due() override {
    std::vector<std::shared_ptr<Endpoint>> eps;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      for (auto& [_, ep] : endpoints_) eps.push_back(ep);
    }
    for (auto& ep : eps) ep->pump();
  }

  void close() override {
    {
      std::lock_guard lock(tick_->mu);  // waits for a tick that is running
      tick_->owner = nullptr;
    }
    std::map<std::string, std::shared_ptr<Endpoint>, std::less<>> eps;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
      eps.swap(endpoints_);
    }
    for (auto& [_, ep] : eps) ep->stop();
  }

 private:
  // The master key must be the one this database's webhook data was sealed under: checked
  // against a stored HMAC of a label, so a wrong key fails here, clearly, instead of at every
  // row. (As the broker's key store checks its own.)
  Status check_master_key() {
    auto& db = shared_.ctx.db;
    const std::string wrong_key = fmt::format(
        "the master key does not match the one the webhook secrets and parked events in {} were "
        "sealed with (key check failed); start the node with its original master key",
        db.describe());
    return db.transaction([&]() -> Status {
      std::optional<std::string> stored;
      CIVICBUS_RETURN_IF_ERROR(db.query("SELECT check_value FROM webhook_key_check WHERE id = 1",
                                        {}, [&](const storage::Row& row) {
                                          stored = std::string(row.get_blob(0));
                                          return false;
                                        }));
      if (stored) {
        if (!crypto::constant_time_equal(*stored, shared_.key_check)) {
          return failed_precondition(wrong_key);
        }
        return {};
      }
      // No check value yet. Sealed rows without one mean it was deleted: try a row rather
      // than recording a wrong key as the right one.
      std::optional<std::pair<std::string, std::string>> sample;
      CIVICBUS_RETURN_IF_ERROR(
          db.query("SELECT id, secret FROM webhook_subscriptions WHERE sealed = 1 LIMIT 1", {},
                   [&](const storage::Row& row) {
                     sample.emplace(std::string(row.get_text(0)), std::string(row.get_text(1)));
                     return false;
                   }));
      if (sample && !shared_.open_secret(sample->first, "secret", sample->second).ok()) {
        return failed_precondition(wrong_key);
      }
      return db
          .execute("INSERT INTO webhook_key_check(id, check_value, created_at) VALUES (1, ?, ?)",
                   {Value{storage::Blob{shared_.key_check}},
                    Value{to_unix_micros(shared_.ctx.clock.now())}})
          .status();
    });
  }

  // Rows that version 1 of the tables stored in clear are sealed in one transaction. With
  // SQLite, secure_delete zeroes the cells the clear values leave behind; copies in the WAL
  // last until it is checkpointed.
  Status seal_rows_in_clear() {
    auto& db = shared_.ctx.db;
    struct Clear {
      std::string key;  // subscription id, or the dead letter's id
      std::string subscription, event_id, value, previous;
    };
    std::vector<Clear> subs, retries, dead;
    CIVICBUS_RETURN_IF_ERROR(db.query(
        "SELECT id, secret, previous_secret FROM webhook_subscriptions WHERE sealed = 0", {},
        [&](const storage::Row& r) {
          std::string id(r.get_text(0));
          subs.push_back({id, id, "", std::string(r.get_text(1)), std::string(r.get_text(2))});
          return true;
        }));
    CIVICBUS_RETURN_IF_ERROR(
        db.query("SELECT subscription_id, event_id, body FROM webhook_retries WHERE sealed = 0", {},
                 [&](const storage::Row& r) {
                   retries.push_back({"", std::string(r.get_text(0)), std::string(r.get_text(1)),
                                      std::string(r.get_blob(2)), ""});
                   return true;
                 }));
    CIVICBUS_RETURN_IF_ERROR(db.query(
        "SELECT id, subscription_id, event_id, body FROM webhook_dead_letters WHERE sealed = 0", {},
        [&](const storage::Row& r) {
          dead.push_back({std::to_string(r.get_int(0)), std::string(r.get_text(1)),
                          std::string(r.get_text(2)), std::string(r.get_blob(3)), ""});
          return true;
        }));
    if (subs.empty() && retries.empty() && dead.empty()) return {};
    const bool sqlite = db.dialect() == storage::Dialect::kSqlite;
    Status st = db.transaction([&]() -> Status {
      std::optional<std::int64_t> secure_delete;
      if (sqlite) {
        CIVICBUS_ASSIGN_OR_RETURN(secure_delete, db.query_int("PRAGMA secure_delete"));
        CIVICBUS_RETURN_IF_ERROR(db.execute_script("PRAGMA secure_delete = ON"));
      }
      Status status = [&]() -> Status {
        for (auto& c : subs) {
          CIVICBUS_RETURN_IF_ERROR(
              db.execute("UPDATE webhook_subscriptions SET secret = ?, previous_secret = ?, "
                         "sealed = 1 WHERE id = ? AND sealed = 0",
                         {Value{std::string_view(shared_.seal_secret(c.key, "secret", c.value))},
                          Value{std::string_view(
                              shared_.seal_secret(c.key, "previous_secret", c.previous))},
                          Value{std::string_view(c.key)}})
                  .status());
        }
        for (auto& c : retries) {
          const std::string sealed = shared_.seal_body(c.subscription, c.event_id, c.value);
          CIVICBUS_RETURN_IF_ERROR(
              db.execute("UPDATE webhook_retries SET body = ?, sealed = 1 "
                         "WHERE subscription_id = ? AND event_id = ? AND sealed = 0",
                         {Value{storage::Blob{sealed}}, Value{std::string_view(c.subscription)},
                          Value{std::string_view(c.event_id)}})
                  .status());
        }
        for (auto& c : dead) {
          const std::string sealed = shared_.seal_body(c.subscription, c.event_id, c.value);
          CIVICBUS_RETURN_IF_ERROR(
              db.execute("UPDATE webhook_dead_letters SET body = ?, sealed = 1 "
                         "WHERE id = ? AND sealed = 0",
                         {Value{storage::Blob{sealed}}, Value{std::stoll(c.key)}})
                  .status());
        }
        return {};
      }();
      if (sqlite && secure_delete) {
        Status restored = db.execute_script(*secure_delete != 0 ? "PRAGMA secure_delete = ON"
                                                                : "PRAGMA secure_delete = OFF");
        if (status.ok()) status = restored;
      }
      return status;
    });
    for (auto* v : {&subs, &retries, &dead}) {
      for (auto& c : *v) {
        wipe(c.value);
        wipe(c.previous);
      }
    }
    if (!st.ok()) return st.with_context("sealing webhook rows stored in clear");
    shared_.ctx.logger.info("webhook rows stored in clear are now sealed under the master key",
                            {{"subscriptions", std::to_string(subs.size())},
                             {"retries", std::to_string(retries.size())},
                             {"dead_letters", std::to_string(dead.size())}});
    return {};
  }

  Result<std::shared_ptr<Endpoint>> endpoint(std::string_view id) {
    std::lock_guard lock(mu_);
    auto it = endpoints_.find(id);
    if (it == endpoints_.end()) return not_found(fmt::format("webhook '{}' does not exist", id));
    return it->second;
  }

  void schedule_tick() {
    std::weak_ptr<TickState> weak = tick_;
    shared_.ctx.executor.post_after(shared_.options.poll_interval, [weak] {
      auto state = weak.lock();
      if (!state) return;
      std::lock_guard lock(state->mu);
      if (state->owner == nullptr) return;
      state->owner->run_due();
      state->owner->schedule_tick();
    });
  }

  Shared shared_;
  std::shared_ptr<TickState> tick_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Endpoint>, std::less<>> endpoints_;
  std::set<std::string, std::less<>> creating_;
  bool closed_ = false;
};

}  // namespace

// ---- signing ---------------------------------------------------------------------------------

std::string generate_webhook_secret(RandomSource& random) {
  return std::string(kSecretPrefix) + crypto::base64_encode(random.bytes(32));
}

Status validate_webhook_secret(std::string_view secret) {
  if (secret.substr(0, kSecretPrefix.size()) != kSecretPrefix) {
    return invalid_argument("webhook secret must start with \"whsec_\" (Standard Webhooks format)");
  }
  auto key = crypto::base64_decode(secret.substr(kSecretPrefix.size()));
  if (!key.ok()) return invalid_argument("webhook secret is not base64 after \"whsec_\"");
  if (key->size() < 24 || key->size() > 64) {
    return invalid_argument(fmt::format(
        "webhook secret must decode to 24..64 bytes, got {}; generate_webhook_secret() makes one",
        key->size()));
  }
  return {};
}

Result<std::string> sign_webhook(std::string_view secret, std::string_view webhook_id,
                                 std::int64_t timestamp, std::string_view body) {
  CIVICBUS_ASSIGN_OR_RETURN(std::string key, secret_key(secret));
  std::string content;
  content.reserve(webhook_id.size() + body.size() + 24);
  content.append(webhook_id);
  content += '.';
  content += std::to_string(timestamp);
  content += '.';
  content.append(body);
  return "v1," + crypto::base64_encode(crypto::hmac_sha256(key, content));
}

Status verify_webhook(const std::vector<std::string>& secrets, std::string_view webhook_id,
                      std::string_view timestamp, std::string_view signature_header,
                      std::string_view body, SystemTime now, WebhookVerifyOptions options) {
  if (webhook_id.empty()) return unauthenticated("webhook-id header is missing");
  if (timestamp.empty()) return unauthenticated("webhook-timestamp header is missing");
  if (signature_header.empty()) return unauthenticated("webhook-signature header is missing");
  if (timestamp.size() > 18 || !std::all_of(timestamp.begin(), timestamp.end(),
                                            [](char c) { return c >= '0' && c <= '9'; })) {
    return unauthenticated(fmt::format("webhook-timestamp '{}' is not Unix seconds", timestamp));
  }
  const std::int64_t ts = std::stoll(std::string(timestamp));
  const std::int64_t age = unix_seconds(now) - ts;
  if (age > options.tolerance.count()) {
    return unauthenticated(
        fmt::format("webhook timestamp is {} s old, more than the {} s tolerance", age,
                    options.tolerance.count()));
  }
  if (-age > options.tolerance.count()) {
    return unauthenticated(
        fmt::format("webhook timestamp is {} s in the future, more than the {} s tolerance", -age,
                    options.tolerance.count()));
  }
  std::vector<std::string> expected;
  for (const auto& s : secrets) {
    auto sig = sign_webhook(s, webhook_id, ts, body);
    if (sig.ok()) expected.push_back(std::move(sig).value());
  }
  if (expected.empty()) return unauthenticated("no usable webhook secret to verify with");
  bool any_v1 = false;
  std::size_t pos = 0;
  while (pos < signature_header.size()) {
    std::size_t end = signature_header.find(' ', pos);
    if (end == std::string_view::npos) end = signature_header.size();
    const std::string_view entry = signature_header.substr(pos, end - pos);
    pos = end + 1;
    if (entry.substr(0, 3) != "v1,") continue;  // other schemes (v1a: ed25519) are skipped
    any_v1 = true;
    bool match = false;
    for (const auto& e : expected) match |= crypto::constant_time_equal(entry, e);
    if (match) return {};
  }
  return unauthenticated(any_v1 ? "no webhook signature matches"
                                : "webhook-signature has no v1 signature");
}

Status verify_webhook(const std::vector<std::string>& secrets, const http::HttpHeaders& headers,
                      std::string_view body, SystemTime now, WebhookVerifyOptions options) {
  return verify_webhook(secrets, headers.get("webhook-id").value_or(""),
                        headers.get("webhook-timestamp").value_or(""),
                        headers.get("webhook-signature").value_or(""), body, now, options);
}

// ---- options ---------------------------------------------------------------------------------

std::vector<std::chrono::milliseconds> default_webhook_schedule() {
  using std::chrono::hours;
  using std::chrono::milliseconds;
  using std::chrono::minutes;
  using std::chrono::seconds;
  return {milliseconds(0), seconds(5), seconds(30), minutes(5), minutes(30),
          hours(2),        hours(5),   hours(10),   hours(24)};
}

Status WebhookOptions::validate() const {
  CIVICBUS_RETURN_IF_ERROR(validate_id(id));
  const std::string who = "webhook '" + id + "': ";
  if (topics.empty()) return invalid_argument(who + "needs at least one topic pattern");
  for (const auto& p : topics) {
    std::string check = p;
    for (char& c : check) {
      if (c == '*' || c == '>') c = 'x';
    }
    if (!broker::validate_topic_name(check).ok()) {
      return invalid_argument(who + "'" + p + "' is not a topic pattern");
    }
  }
  CIVICBUS_ASSIGN_OR_RETURN(const EndpointTarget target, parse_endpoint_url(url));
  if (!target.tls && !tls.empty()) {
    return invalid_argument(who + "tls.ca_file and tls.server_name apply to https:// URLs only; '" +
                            url + "' is http://");
  }
  if (!secret.empty()) {
    Status st = validate_webhook_secret(secret);
    if (!st.ok()) return invalid_argument(who + st.message());
  }
  if (schedule.empty() || schedule.size() > 100) {
    return invalid_argument(who + "schedule must have 1 to 100 attempts");
  }
  for (auto d : schedule) {
    if (d < 0ms) return invalid_argument(who + "schedule waits must not be negative");
  }
  if (!(jitter >= 0.0 && jitter <= 1.0)) return invalid_argument(who + "jitter must be in 0..1");
  if (attempt_timeout <= 0ms) return invalid_argument(who + "attempt_timeout must be positive");
  if (max_concurrent < 1 || max_concurrent > 1024) {
    return invalid_argument(who + "max_concurrent must be 1..1024");
  }
  if (pause.after_failures < 0) return invalid_argument(who + "pause.after_failures must be >= 0");
  if (pause.cool_off <= 0ms || pause.max_cool_off < pause.cool_off) {
    return invalid_argument(who + "pause.cool_off must be positive and at most pause.max_cool_off");
  }
  return {};
}

Status WebhookDispatcherOptions::validate() const {
  if (master_key.empty()) {
    return invalid_argument(
        "webhooks need the node's master key (WebhookDispatcherOptions::master_key, 32 bytes, "
        "as broker::load_master_key() reads it): signing secrets and parked events are stored "
        "only encrypted under it");
  }
  if (master_key.size() != kMasterKeyBytes) {
    return invalid_argument(fmt::format("webhook master_key must be {} bytes, got {}",
                                        kMasterKeyBytes, master_key.size()));
  }
  if (retry_write_delay < 0ms || retry_write_delay > 1000ms) {
    return invalid_argument("webhook retry_write_delay must be 0..1000 ms");
  }
  if (retry_write_batch < 1 || retry_write_batch > 10'000) {
    return invalid_argument("webhook retry_write_batch must be 1..10000");
  }
  if (poll_interval <= 0ms) return invalid_argument("webhook poll_interval must be positive");
  if (rotation_overlap.count() < 0)
    return invalid_argument("rotation_overlap must not be negative");
  return {};
}

Result<std::unique_ptr<WebhookDispatcher>> WebhookDispatcher::open(WebhookDispatcherOptions options,
                                                                   WebhookContext context) {
  CIVICBUS_RETURN_IF_ERROR(options.validate());
  // Only keys derived from the master key are kept.
  std::string seal_key = crypto::hmac_sha256(options.master_key, kSealKeyLabel);
  std::string key_check = crypto::hmac_sha256(options.master_key, kKeyCheckLabel);
  wipe(options.master_key);
  auto cipher = crypto::AesGcm::create(seal_key);
  wipe(seal_key);
  CIVICBUS_RETURN_IF_ERROR(cipher.status());
  auto d = std::make_unique<DispatcherImpl>(std::move(options), std::move(context),
                                            std::move(cipher).value(), std::move(key_check));
  Status st = d->start();
  if (!st.ok()) {
    d->close();
    return st;
  }
  return std::unique_ptr<WebhookDispatcher>(std::move(d));
}

}  // namespace civicbus::gateway
