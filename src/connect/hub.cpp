#include "civicbus/connect/hub.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "circuit_breaker.hpp"
#include "civicbus/broker/broker.hpp"
#include "civicbus/connect/field_mapping.hpp"
#include "civicbus/core/cron.hpp"
#include "civicbus/core/crypto.hpp"
#include "civicbus/core/random.hpp"
#include "credential_vault.hpp"
#include "durable_queue.hpp"
#include "schema_drift.hpp"

namespace civicbus::connect {
namespace {

constexpr storage::Migration kMigrations[] = {
    {1, "connections and their run state",
     "CREATE TABLE connect_connections ("
     " name TEXT PRIMARY KEY,"
     " options TEXT NOT NULL,"  // ConnectionOptions as JSON, secrets removed
     " paused INTEGER NOT NULL DEFAULT 0,"
     " updated_at TEXT NOT NULL);"
     "CREATE TABLE connect_state ("
     " name TEXT PRIMARY KEY,"
     " state TEXT NOT NULL DEFAULT '{}',"
     " last_run_at INTEGER,"
     " last_success_at INTEGER,"
     " last_error TEXT NOT NULL DEFAULT '',"
     " consecutive_failures INTEGER NOT NULL DEFAULT 0);"
     "CREATE TABLE connect_runs ("
     " id INTEGER PRIMARY KEY,"
     " name TEXT NOT NULL,"
     " started_at INTEGER NOT NULL,"
     " finished_at INTEGER NOT NULL,"
     " records_read INTEGER NOT NULL,"
     " records_written INTEGER NOT NULL,"
     " records_rejected INTEGER NOT NULL,"
     " error TEXT NOT NULL DEFAULT '');"
     "CREATE INDEX connect_runs_by_name ON connect_runs (name, id);"},
};

constexpr std::string_view kHealthTopic = "integration.connector_health_changed";

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(name.front())) return false;
  for (char c : name) {
    if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

std::int64_t micros(SystemTime t) {
  return to_unix_micros(t);
}

}  // namespace

Json ConnectionOptions::to_json() const {
  const ConnectionOptions& o = *this;
  Json streams = Json::array();
  for (const auto& s : o.streams) streams.push_back(s);
  Json key = Json::array();
  for (const auto& k : o.key) key.push_back(k);
  const ResilienceOptions& r = o.resilience;
  return Json::object({
      {"name", o.name},
      {"connector", o.connector},
      {"config", o.config},
      {"streams", std::move(streams)},
      {"schedule", o.schedule},
      {"time_zone", o.time_zone},
      {"mapping", o.mapping},
      {"drift", drift_policy_name(o.drift)},
      {"destination", o.destination},
      {"destination_stream", o.destination_stream},
      {"write_mode", o.write_mode == WriteMode::kUpsert ? "upsert" : "append"},
      {"key", std::move(key)},
      {"batch_size", static_cast<std::int64_t>(o.batch_size)},
      {"resilience", Json::object({{"timeout_ms", r.timeout.count()},
                                   {"max_attempts", r.max_attempts},
                                   {"initial_backoff_ms", r.initial_backoff.count()},
                                   {"backoff_multiplier", r.backoff_multiplier},
                                   {"max_backoff_ms", r.max_backoff.count()},
                                   {"failure_threshold", r.failure_threshold},
                                   {"open_for_ms", r.open_for.count()},
                                   {"max_open_for_ms", r.max_open_for.count()}})},
  });
}

Result<ConnectionOptions> ConnectionOptions::from_json(const Json& j) {
  if (!j.is_object()) return invalid_argument("a connection must be an object");
  static constexpr std::string_view kKeys[] = {
      "name",       "connector", "config",     "streams",     "schedule",
      "time_zone",  "mapping",   "drift",      "destination", "destination_stream",
      "write_mode", "key",       "batch_size", "resilience"};
  for (const auto& [key, _] : j.as_object()) {
    if (std::find(std::begin(kKeys), std::end(kKeys), key) == std::end(kKeys)) {
      return invalid_argument(
          fmt::format("unknown key '{}' in connection '{}'", key, j.get_string("name")));
    }
  }
  // Each value's type is checked: a mistyped value is refused, not read as its default.
  const std::string shown = j.get_string("name");  // empty when it is not a string
  auto wrong = [&](std::string_view key, std::string_view want) {
    return invalid_argument(fmt::format("connection '{}': {} must be {}", shown, key, want));
  };
  for (std::string_view key : {"name", "connector", "schedule", "time_zone", "drift", "destination",
                               "destination_stream", "write_mode"}) {
    if (const Json* v = j.find(key); v && !v->is_string()) return wrong(key, "a string");
  }
  for (std::string_view key : {"streams", "key"}) {
    const Json* v = j.find(key);
    if (v == nullptr) continue;
    const bool strings = v->is_array() && std::all_of(v->as_array().begin(), v->as_array().end(),
                                                      [](const Json& e) { return e.is_string(); });
    if (!strings) return wrong(key, "a list of strings");
  }
  if (const Json* v = j.find("batch_size"); v && !(v->is_integral() && v->as_double() >= 1)) {
    return wrong("batch_size", "a whole number of at least 1");
  }
  static constexpr std::string_view kResilienceKeys[] = {
      "timeout_ms",     "max_attempts",      "initial_backoff_ms", "backoff_multiplier",
      "max_backoff_ms", "failure_threshold", "open_for_ms",        "max_open_for_ms"};
  if (const Json* r = j.find("resilience")) {
    if (!r->is_object()) return wrong("resilience", "an object");
    for (const auto& [key, value] : r->as_object()) {
      if (std::find(std::begin(kResilienceKeys), std::end(kResilienceKeys), key) ==
          std::end(kResilienceKeys)) {
        return invalid_argument(
            fmt::format("unknown key '{}' in connection '{}' resilience", key, shown));
      }
      const bool ok = key == "backoff_multiplier" ? value.is_number() : value.is_integral();
      if (!ok) {
        return wrong("resilience." + key,
                     key == "backoff_multiplier" ? "a number" : "a whole number");
      }
    }
  }

  ConnectionOptions o;
  o.name = j.get_string("name");
  o.connector = j.get_string("connector");
  if (const Json* c = j.find("config")) o.config = *c;
  if (const Json* s = j.find("streams")) {
    for (const auto& v : s->as_array()) o.streams.push_back(v.as_string());
  }
  o.schedule = j.get_string("schedule");
  o.time_zone = j.get_string("time_zone", "America/Toronto");
  if (const Json* m = j.find("mapping")) o.mapping = *m;
  CIVICBUS_ASSIGN_OR_RETURN(o.drift, parse_drift_policy(j.get_string("drift", "propagate")));
  o.destination = j.get_string("destination");
  o.destination_stream = j.get_string("destination_stream");
  std::string mode = j.get_string("write_mode", "append");
  if (mode != "append" && mode != "upsert") {
    return invalid_argument(
        fmt::format("connection '{}': write_mode is '{}' (append or upsert)", o.name, mode));
  }
  o.write_mode = mode == "upsert" ? WriteMode::kUpsert : WriteMode::kAppend;
  if (const Json* k = j.find("key")) {
    for (const auto& v : k->as_array()) o.key.push_back(v.as_string());
  }
  o.batch_size = static_cast<std::size_t>(j.get_int("batch_size", 10'000));
  if (const Json* r = j.find("resilience")) {
    ResilienceOptions& x = o.resilience;
    x.timeout = std::chrono::milliseconds(r->get_int("timeout_ms", x.timeout.count()));
    x.max_attempts = static_cast<int>(r->get_int("max_attempts", x.max_attempts));
    x.initial_backoff =
        std::chrono::milliseconds(r->get_int("initial_backoff_ms", x.initial_backoff.count()));
    if (const Json* m = r->find("backoff_multiplier"); m && m->is_number()) {
      x.backoff_multiplier = m->as_double();
    }
    x.max_backoff = std::chrono::milliseconds(r->get_int("max_backoff_ms", x.max_backoff.count()));
    x.failure_threshold = static_cast<int>(r->get_int("failure_threshold", x.failure_threshold));
    x.open_for = std::chrono::milliseconds(r->get_int("open_for_ms", x.open_for.count()));
    x.max_open_for =
        std::chrono::milliseconds(r->get_int("max_open_for_ms", x.max_open_for.count()));
  }
  return o;
}

namespace {

Health health_of(BreakerState s) {
  switch (s) {
    case BreakerState::kClosed:
      return Health::kHealthy;
    case BreakerState::kHalfOpen:
      return Health::kDegraded;
    case BreakerState::kOpen:
      return Health::kDown;
  }
  return Health::kHealthy;
}

}  // namespace

std::string_view health_name(Health health) {
  switch (health) {
    case Health::kHealthy:
      return "healthy";
    case Health::kDegraded:
      return "degraded";
    case Health::kDown:
      return "down";
    case Health::kPaused:
      return "paused";
  }
  return "healthy";
}

Status ConnectionOptions::validate() const {
  if (!valid_name(name)) {
    return invalid_argument(fmt::format(
        "connection name '{}' is not valid: use lower-case letters, digits, '.', '_' and '-', "
        "starting with a letter or digit",
        name));
  }
  if (connector.empty())
    return invalid_argument(fmt::format("connection '{}' names no connector", name));
  if (!config.is_object()) {
    return invalid_argument(fmt::format("connection '{}': config must be an object", name));
  }
  if (batch_size == 0)
    return invalid_argument(fmt::format("connection '{}': batch_size is 0", name));
  if (write_mode == WriteMode::kUpsert && key.empty()) {
    return invalid_argument(fmt::format("connection '{}' upserts but names no key", name));
  }
  if (resilience.max_attempts < 1 || resilience.failure_threshold < 1) {
    return invalid_argument(
        fmt::format("connection '{}': max_attempts and failure_threshold must be >= 1", name));
  }
  return Status();
}

struct ConnectorHub::Impl {
  struct Connection {
    ConnectionOptions options;  // config without its secrets
    std::vector<std::string> secret_pointers;
    std::unique_ptr<Connector> connector;
    std::optional<CronSchedule> schedule;
    std::optional<SystemTime> next_run;
    std::unique_ptr<CircuitBreaker> breaker;
    std::optional<RetryPolicy> retry;
    bool paused = false;
    std::mutex run_mutex;  // one sync or replay at a time
    std::atomic<bool> replay_wanted{false};
  };

  HubOptions options;
  HubDeps deps;
  const Clock& clock;
  ConnectorCatalog owned_catalog;
  const ConnectorCatalog* catalog = nullptr;
  SecureRandom random;
  std::unique_ptr<CredentialVault> vault;
  std::unique_ptr<DurableQueue> queue;
  std::unique_ptr<ResponseCache> cache;
  std::unique_ptr<SchemaDriftTracker> drift;

  mutable std::mutex mutex;  // connections, pending events
  std::map<std::string, std::shared_ptr<Connection>, std::less<>> connections;
  std::vector<Json> pending_health;  // transitions waiting to be published

  std::thread scheduler;
  std::condition_variable wake;
  bool stopping = false;

  Impl(HubOptions o, HubDeps d)
      : options(std::move(o)),
        deps(std::move(d)),
        clock(deps.clock ? *deps.clock : system_clock_()) {}

  static const Clock& system_clock_() {
    static const SystemClock kClock;
    return kClock;
  }

  Result<std::shared_ptr<Connection>> find(std::string_view name) const {
    std::lock_guard lock(mutex);
    auto it = connections.find(name);
    if (it == connections.end()) {
      return not_found(fmt::format("no connection '{}' in the hub", name));
    }
    return it->second;
  }

  Result<std::shared_ptr<Connection>> build(ConnectionOptions o, bool paused) {
    auto conn = std::make_shared<Connection>();
    CIVICBUS_ASSIGN_OR_RETURN(conn->connector, catalog->create(o.connector));
    conn->secret_pointers = conn->connector->spec().secret_pointers();
    if (!o.schedule.empty()) {
      auto schedule = CronSchedule::parse(o.schedule, o.time_zone);
      if (!schedule.ok()) {
        return schedule.status().with_context(fmt::format("connection '{}' schedule", o.name));
      }
      conn->schedule = std::move(schedule).value();
    }
    CircuitBreakerOptions b;
    b.name = o.name;
    b.failure_threshold = o.resilience.failure_threshold;
    b.open_duration = o.resilience.open_for;
    b.max_open_duration = std::max(o.resilience.max_open_for, o.resilience.open_for);
    std::weak_ptr<Connection> weak = conn;
    std::string connector_name = o.connector;
    CIVICBUS_ASSIGN_OR_RETURN(
        conn->breaker,
        CircuitBreaker::create(b, clock, [this, weak, connector_name](const BreakerTransition& t) {
          note_transition(t, connector_name);
          if (t.to == BreakerState::kClosed) {
            if (auto c = weak.lock()) c->replay_wanted = true;
          }
        }));
    RetryPolicyOptions r;
    r.max_attempts = o.resilience.max_attempts;
    r.initial_backoff = o.resilience.initial_backoff;
    r.multiplier = std::max(1.0, o.resilience.backoff_multiplier);
    r.max_backoff = std::max(o.resilience.max_backoff, o.resilience.initial_backoff);
    CIVICBUS_ASSIGN_OR_RETURN(RetryPolicy policy, RetryPolicy::create(r, &random));
    conn->retry.emplace(std::move(policy));
    conn->paused = paused;
    conn->options = std::move(o);
    return conn;
  }

  void schedule_next(Connection& c, SystemTime after) {
    c.next_run.reset();
    if (c.schedule) c.next_run = c.schedule->next_after(after);
  }

  // Called under the breaker's lock: only queue the event.
  void note_transition(const BreakerTransition& t, const std::string& connector) {
    Json event = Json::object({{"connection", t.name},
                               {"connector", connector},
                               {"from", health_name(health_of(t.from))},
                               {"to", health_name(health_of(t.to))},
                               {"reason", t.reason},
                               {"consecutive_failures", t.consecutive_failures},
                               {"at", format_rfc3339(clock.now())}});
    if (t.to == BreakerState::kOpen) event.set("retry_after_ms", t.open_for.count());
    std::lock_guard lock(mutex);
    pending_health.push_back(std::move(event));
  }

  void publish_health(Json event) {
    std::lock_guard lock(mutex);
    pending_health.push_back(std::move(event));
  }

  // Publishes the queued health changes, in order, outside every lock.
  void flush_health() {
    std::vector<Json> events;
    {
      std::lock_guard lock(mutex);
      events.swap(pending_health);
    }
    if (deps.metrics != nullptr) {
      for (const auto& e : events) {
        deps.metrics
            ->counter("civicbus_connector_health_changes_total",
                      "Health changes of hub connections",
                      {{"connection", e.get_string("connection")}, {"to", e.get_string("to")}})
            .inc();
      }
    }
    if (deps.broker == nullptr) return;
    for (auto& e : events) {
      broker::CloudEvent event{std::string(kHealthTopic), "civicbus/connect", std::move(e)};
      event.set_subject(event.data().get_string("connection"));
      event.set_partition_key(event.data().get_string("connection"));
      deps.broker->publish_async(std::move(event), [](Result<broker::PublishAck>) {});
    }
  }

  Result<ConnectorContext> context_for(const Connection& c) {
    ConnectorContext ctx;
    CIVICBUS_ASSIGN_OR_RETURN(ctx.config, vault->resolve(c.options.name, c.options.config));
    ctx.clock = &clock;
    ctx.timeout = c.options.resilience.timeout;
    std::filesystem::path dir =
        std::filesystem::path(options.data_dir) / "connections" / c.options.name;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    ctx.work_dir = dir.string();
    return ctx;
  }

  // Runs `body` with the breaker and the retry policy; the last failure is returned.
  Status resilient(Connection& c, const std::function<Status()>& body) {
    Status last;
    for (int attempt = 1;; ++attempt) {
      if (Status admitted = c.breaker->acquire(); !admitted.ok()) {
        flush_health();
        return admitted;
      }
      last = body();
      c.breaker->record(last);
      flush_health();
      if (last.ok() || !c.retry->should_retry(last, attempt)) break;
      std::this_thread::sleep_for(c.retry->next_delay(attempt));
    }
    if (c.replay_wanted.exchange(false)) replay_locked_free(c);
    return last;
  }

  void replay_locked_free(Connection& c) {
    // Replays run on the caller's thread after the call that closed the breaker.
    auto done = replay(c);
    (void)done;
  }

  Result<std::int64_t> replay(Connection& c) {
    auto ctx = context_for(c);
    if (!ctx.ok()) return ctx.status();
    CIVICBUS_ASSIGN_OR_RETURN(
        ReplayResult r, queue->replay(c.options.name, [&](const QueuedRequest& q) -> Status {
          if (Status admitted = c.breaker->acquire(); !admitted.ok()) return admitted;
          auto answer =
              c.connector->call(*ctx, q.payload.get_string("operation"),
                                q.payload.find("input") ? *q.payload.find("input") : Json());
          c.breaker->record(answer.status());
          if (!answer.ok()) return answer.status();
          if (std::string key = q.payload.get_string("cache_key"); !key.empty()) {
            cache->put(c.options.name, key, *answer).ignore_error();
          }
          return Status();
        }));
    flush_health();
    return r.delivered;
  }

  Status save_state(const Connection& c, const Json& state) {
    std::string text = state.dump();
    return deps.db
        ->execute(
            "INSERT INTO connect_state (name, state) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
            "SET state = excluded.state",
            {std::string_view(c.options.name), std::string_view(text)})
        .status();
  }

  Result<Json> load_state(std::string_view name) {
    Json state = Json::object();
    CIVICBUS_RETURN_IF_ERROR(deps.db->query("SELECT state FROM connect_state WHERE name = ?",
                                            {name}, [&](const storage::Row& row) {
                                              if (auto s = Json::parse(row.get_text(0)); s.ok())
                                                state = std::move(s).value();
                                              return false;
                                            }));
    return state;
  }

  Status record_run(const Connection& c, SystemTime started, const SyncReport& report,
                    const Status& outcome) {
    std::int64_t now = micros(clock.now());
    std::string error = outcome.ok() ? std::string() : outcome.message();
    return deps.db->transaction([&]() -> Status {
      CIVICBUS_RETURN_IF_ERROR(
          deps.db
              ->execute(
                  "INSERT INTO connect_runs (name, started_at, finished_at, records_read, "
                  "records_written, records_rejected, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  {std::string_view(c.options.name), micros(started), now, report.records_read,
                   report.records_written, report.records_rejected, std::string_view(error)})
              .status());
      return deps.db
          ->execute(
              outcome.ok()
                  ? "INSERT INTO connect_state (name, last_run_at, last_success_at, last_error, "
                    "consecutive_failures) VALUES (?, ?, ?, '', 0) ON CONFLICT (name) DO UPDATE "
                    "SET "
                    "last_run_at = excluded.last_run_at, last_success_at = "
                    "excluded.last_success_at, last_error = '', consecutive_failures = 0"
                  : "INSERT INTO connect_state (name, last_run_at, last_success_at, last_error, "
                    "consecutive_failures) VALUES (?, ?, ?, ?, 1) ON CONFLICT (name) DO UPDATE SET "
                    "last_run_at = excluded.last_run_at, last_error = excluded.last_error, "
                    "consecutive_failures = connect_state.consecutive_failures + 1",
              outcome.ok()
                  ? std::initializer_list<storage::Value>{std::string_view(c.options.name), now,
                                                          now}
                  : std::initializer_list<storage::Value>{std::string_view(c.options.name), now,
                                                          nullptr, std::string_view(error)})
          .status();
    });
  }

  Result<SyncReport> sync(Connection& c, bool test_only);
};

ConnectorHub::ConnectorHub(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ConnectorHub::~ConnectorHub() {
  stop();
}

Result<std::unique_ptr<ConnectorHub>> ConnectorHub::open(HubOptions options, HubDeps deps) {
  if (deps.db == nullptr) return invalid_argument("ConnectorHub needs a database (HubDeps::db)");
  auto impl = std::make_unique<Impl>(std::move(options), std::move(deps));
  if (impl->deps.catalog == nullptr) {
    impl->owned_catalog = ConnectorCatalog::builtin();
    impl->catalog = &impl->owned_catalog;
  } else {
    impl->catalog = impl->deps.catalog;
  }
  storage::Database& db = *impl->deps.db;
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(db, "connect_hub", kMigrations));
  CIVICBUS_ASSIGN_OR_RETURN(
      impl->vault, CredentialVault::open(db, impl->deps.master_key, impl->random, impl->clock));
  CIVICBUS_ASSIGN_OR_RETURN(impl->queue, DurableQueue::open(db, impl->clock));
  CIVICBUS_ASSIGN_OR_RETURN(impl->cache, ResponseCache::open(db, impl->clock));
  CIVICBUS_ASSIGN_OR_RETURN(impl->drift, SchemaDriftTracker::open(db, impl->clock));
  if (impl->deps.broker != nullptr && !impl->deps.broker->topic(kHealthTopic).ok()) {
    broker::TopicOptions t;
    t.name = std::string(kHealthTopic);
    t.owner = "connect";
    t.description = "A hub connection's health changed (healthy, degraded, down, paused)";
    Status s = impl->deps.broker->create_topic(t, "connect");
    if (!s.ok() && s.code() != ErrorCode::kAlreadyExists) return s;
  }

  // Connections stored by earlier runs; their next runs count from their last run so that a
  // run missed while the node was down still happens (within the misfire grace).
  std::vector<std::pair<std::string, bool>> stored;
  CIVICBUS_RETURN_IF_ERROR(db.query("SELECT options, paused FROM connect_connections ORDER BY name",
                                    {}, [&](const storage::Row& row) {
                                      stored.emplace_back(std::string(row.get_text(0)),
                                                          row.get_int(1) != 0);
                                      return true;
                                    }));
  const SystemTime now = impl->clock.now();
  for (auto& [text, paused] : stored) {
    CIVICBUS_ASSIGN_OR_RETURN(Json j, Json::parse(text));
    CIVICBUS_ASSIGN_OR_RETURN(ConnectionOptions o, ConnectionOptions::from_json(j));
    std::string name = o.name;
    auto conn = impl->build(std::move(o), paused);
    if (!conn.ok()) return conn.status().with_context("loading connection '" + name + "'");
    std::optional<std::int64_t> last_run;
    CIVICBUS_RETURN_IF_ERROR(db.query("SELECT last_run_at FROM connect_state WHERE name = ?",
                                      {std::string_view(name)}, [&](const storage::Row& row) {
                                        last_run = row.get_optional_int(0);
                                        return false;
                                      }));
    SystemTime from = last_run ? from_unix_micros(*last_run) : now;
    impl->schedule_next(**conn, from);
    if ((*conn)->next_run && *(*conn)->next_run + impl->options.misfire_grace < now) {
      impl->schedule_next(**conn, now);
    }
    impl->connections.emplace(name, std::move(conn).value());
  }
  return std::unique_ptr<ConnectorHub>(new ConnectorHub(std::move(impl)));
}

Status ConnectorHub::add(ConnectionOptions options) {
  CIVICBUS_RETURN_IF_ERROR(options.validate());
  auto probe = impl_->catalog->create(options.connector);
  if (!probe.ok()) return probe.status().with_context(fmt::format("connection '{}'", options.name));
  const ConnectorSpec& spec = (*probe)->spec();
  // Secrets already in the vault count as given (replacing a connection need not repeat them).
  CIVICBUS_ASSIGN_OR_RETURN(Json resolved, impl_->vault->resolve(options.name, options.config));
  CIVICBUS_RETURN_IF_ERROR(validate_config(spec, resolved));
  if (!options.destination.empty() && options.destination.rfind("topic:", 0) != 0) {
    auto sink = impl_->find(options.destination);
    if (!sink.ok()) {
      return not_found(
          fmt::format("connection '{}': destination '{}' is not a connection (or "
                      "'topic:<event type>')",
                      options.name, options.destination));
    }
    if (!(*sink)->connector->spec().is_sink) {
      return invalid_argument(fmt::format("connection '{}': destination '{}' ({}) is not a sink",
                                          options.name, options.destination,
                                          (*sink)->options.connector));
    }
  }
  if (!options.mapping.is_null()) {
    // Checked without the source's schema here; test_sync and every run check it against the
    // discovered streams.
    auto problems = FieldMapping::check(options.mapping, {});
    if (!problems.empty()) {
      std::string message = fmt::format("connection '{}' mapping:", options.name);
      for (const auto& p : problems) {
        message += fmt::format(" {}{};", p.target.empty() ? "" : "'" + p.target + "': ", p.message);
      }
      message.pop_back();
      return invalid_argument(std::move(message));
    }
  }
  CIVICBUS_ASSIGN_OR_RETURN(
      options.config, impl_->vault->absorb(options.name, options.config, spec.secret_pointers()));
  bool paused = false;
  if (auto existing = impl_->find(options.name); existing.ok()) paused = (*existing)->paused;
  std::string text = options.to_json().dump();
  CIVICBUS_RETURN_IF_ERROR(
      impl_->deps.db
          ->execute(
              "INSERT INTO connect_connections (name, options, paused, updated_at) VALUES (?, ?, "
              "?, ?) ON CONFLICT (name) DO UPDATE SET options = excluded.options, updated_at = "
              "excluded.updated_at",
              {std::string_view(options.name), std::string_view(text), std::int64_t{paused ? 1 : 0},
               std::string_view(format_rfc3339(impl_->clock.now()))})
          .status());
  std::string name = options.name;
  CIVICBUS_ASSIGN_OR_RETURN(auto conn, impl_->build(std::move(options), paused));
  impl_->schedule_next(*conn, impl_->clock.now());
  {
    std::lock_guard lock(impl_->mutex);
    impl_->connections[name] = std::move(conn);
  }
  impl_->wake.notify_all();
  return Status();
}

Status ConnectorHub::remove(std::string_view name) {
  CIVICBUS_ASSIGN_OR_RETURN(auto conn, impl_->find(name));
  std::lock_guard run(conn->run_mutex);
  return impl_->deps.db->transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(
        impl_->deps.db->execute("DELETE FROM connect_connections WHERE name = ?", {name}).status());
    CIVICBUS_RETURN_IF_ERROR(
        impl_->deps.db->execute("DELETE FROM connect_state WHERE name = ?", {name}).status());
    CIVICBUS_RETURN_IF_ERROR(impl_->vault->erase(name).status());
    CIVICBUS_RETURN_IF_ERROR(impl_->queue->clear(name).status());
    CIVICBUS_RETURN_IF_ERROR(impl_->cache->clear(name).status());
    CIVICBUS_RETURN_IF_ERROR(impl_->drift->erase(name).status());
    std::lock_guard lock(impl_->mutex);
    impl_->connections.erase(impl_->connections.find(name));
    return Status();
  });
}

std::vector<std::string> ConnectorHub::names() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<std::string> out;
  for (const auto& [name, _] : impl_->connections) out.push_back(name);
  return out;
}

Result<ConnectionOptions> ConnectorHub::options(std::string_view name) const {
  CIVICBUS_ASSIGN_OR_RETURN(auto conn, impl_->find(name));
  ConnectionOptions o = conn->options;
  // Secrets in the vault show as "********" at their place; absent ones stay absent.
  auto resolved = impl_->vault->resolve(name, o.config);
  if (!resolved.ok()) return resolved.status();
  o.config = CredentialVault::redact(std::move(resolved).value(), conn->secret_pointers);
  return o;
}

Result<ConnectionStatus> ConnectorHub::status(std::string_view name) {
  CIVICBUS_ASSIGN_OR_RETURN(auto conn, impl_->find(name));
  ConnectionStatus s;
  s.name = conn->options.name;
  s.connector = conn->options.connector;
  s.health = conn->paused ? Health::kPaused : health_of(conn->breaker->state());
  s.consecutive_failures = conn->breaker->consecutive_failures();
  s.next_run_at = conn->next_run;
  CIVICBUS_ASSIGN_OR_RETURN(s.queued, impl_->queue->size(name));
  CIVICBUS_ASSIGN_OR_RETURN(s.state, impl_->load_state(name));
  CIVICBUS_RETURN_IF_ERROR(impl_->deps.db->query(
      "SELECT last_run_at, last_success_at, last_error FROM connect_state WHERE name = ?", {name},
      [&](const storage::Row& row) {
        if (auto t = row.get_optional_int(0)) s.last_run_at = from_unix_micros(*t);
        if (auto t = row.get_optional_int(1)) s.last_success_at = from_unix_micros(*t);
        s.last_error = std::string(row.get_text(2));
        return false;
      }));
  CIVICBUS_ASSIGN_OR_RETURN(ConnectionOptions o, options(name));
  s.config = std::move(o.config);
  return s;
}

Status ConnectorHub::check(std::string_view name) {
  CIVICBUS_ASSIGN_OR_RETURN(auto conn, impl_->find(name));
  CIVICBUS_ASSIGN_OR_RETURN(ConnectorContext ctx, impl_->context_for(*conn));
  return impl_->resilient(*conn, [&] { return conn->connector->check(ctx); });
}

namespace {

// Where a sync's records go, and the state committed once they are there.
class HubEmitter final : public RecordEmitter {
 public:
  using Deliver = std::function<Status(RecordBatch&, std::int64_t batch_index)>;
  using Commit = std::function<Status(std::string_view stream, const Json& state)>;

  HubEmitter(const FieldMapping* mapping, Deliver deliver, Commit commit, SyncReport& report,
             std::size_t max_errors)
      : mapping_(mapping),
        deliver_(std::move(deliver)),
        commit_(std::move(commit)),
        report_(report),
        max_errors_(max_errors) {}

  Status emit(RecordBatch batch) override {
    report_.records_read += static_cast<std::int64_t>(batch.size());
    if (mapping_ != nullptr) {
      MappedBatch mapped = mapping_->apply(std::move(batch));
      for (auto& e : mapped.errors) note(std::move(e));
      batch = std::move(mapped.batch);
    }
    return deliver_(batch, index_++);
  }

  Status checkpoint(std::string_view stream, Json state) override { return commit_(stream, state); }
  void reject(RowError error) override {
    ++report_.records_read;
    note(std::move(error));
  }

  void note(RowError e) {
    ++report_.records_rejected;
    if (report_.errors.size() < max_errors_) report_.errors.push_back(std::move(e));
  }

 private:
  const FieldMapping* mapping_;
  Deliver deliver_;
  Commit commit_;
  SyncReport& report_;
  std::size_t max_errors_;
  std::int64_t index_ = 0;
};

}  // namespace

Result<SyncReport> ConnectorHub::Impl::sync(Connection& c, bool test_only) {
  (void)test_only;
  std::unique_lock run_lock(c.run_mutex);
  const SystemTime started = clock.now();
  const auto t0 = clock.steady_now();
  SyncReport report;
  report.connection = c.options.name;
  auto body = [&]() -> Status {
    if (c.paused) {
      return failed_precondition(fmt::format(
          "connection '{}' is paused (schema drift or an operator); accept the schema or resume it",
          c.options.name));
    }
    CIVICBUS_ASSIGN_OR_RETURN(ConnectorContext ctx, context_for(c));
    std::vector<StreamSpec> streams;
    CIVICBUS_RETURN_IF_ERROR(resilient(c, [&]() -> Status {
      auto d = c.connector->discover(ctx);
      if (!d.ok()) return d.status();
      streams = std::move(d).value();
      return Status();
    }));
    std::vector<StreamSpec> selected;
    for (auto& s : streams) {
      if (c.options.streams.empty() || std::find(c.options.streams.begin(), c.options.streams.end(),
                                                 s.name) != c.options.streams.end()) {
        selected.push_back(std::move(s));
      }
    }
    for (const auto& s : selected) {
      CIVICBUS_ASSIGN_OR_RETURN(DriftReport d, drift->check(c.options.name, s, c.options.drift));
      for (const auto& change : d.changes)
        report.drift.push_back(s.name + ": " + change.describe());
      if (!d.may_run()) {
        if (d.outcome == DriftOutcome::kPaused) {
          c.paused = true;
          CIVICBUS_RETURN_IF_ERROR(
              deps.db
                  ->execute("UPDATE connect_connections SET paused = 1 WHERE name = ?",
                            {std::string_view(c.options.name)})
                  .status());
          publish_health(Json::object({{"connection", c.options.name},
                                       {"connector", c.options.connector},
                                       {"from", health_name(health_of(c.breaker->state()))},
                                       {"to", "paused"},
                                       {"reason", d.summary()},
                                       {"at", format_rfc3339(clock.now())}}));
          flush_health();
        }
        return d.to_status();
      }
    }
    std::optional<FieldMapping> mapping;
    if (!c.options.mapping.is_null()) {
      CIVICBUS_ASSIGN_OR_RETURN(FieldMapping m, FieldMapping::compile(c.options.mapping, selected));
      mapping.emplace(std::move(m));
    }

    // The destination.
    std::shared_ptr<Connection> sink;
    std::optional<ConnectorContext> sink_ctx;
    std::string topic;
    if (c.options.destination.rfind("topic:", 0) == 0) {
      topic = c.options.destination.substr(6);
      if (deps.broker == nullptr) {
        return failed_precondition(
            fmt::format("connection '{}' publishes to topic '{}' but the hub has no broker",
                        c.options.name, topic));
      }
      if (!deps.broker->topic(topic).ok()) {
        broker::TopicOptions t;
        t.name = topic;
        t.owner = "connect";
        t.description = fmt::format("Records of connection '{}'", c.options.name);
        Status s = deps.broker->create_topic(t, "connect");
        if (!s.ok() && s.code() != ErrorCode::kAlreadyExists) return s;
      }
    } else if (!c.options.destination.empty()) {
      CIVICBUS_ASSIGN_OR_RETURN(sink, find(c.options.destination));
      CIVICBUS_ASSIGN_OR_RETURN(ConnectorContext sc, context_for(*sink));
      sink_ctx.emplace(std::move(sc));
    }

    CIVICBUS_ASSIGN_OR_RETURN(Json state, load_state(c.options.name));
    // Batches are named by the state they were read from: re-reading after a failure gives
    // the same names, so a sink that keeps batch ids loads each batch once.
    const std::string origin = crypto::to_hex(crypto::sha256(state.dump())).substr(0, 16);
    HubEmitter* emitter_ptr = nullptr;
    auto deliver = [&](RecordBatch& batch, std::int64_t index) -> Status {
      if (batch.empty()) return Status();
      if (sink) {
        WriteRequest w;
        w.stream =
            c.options.destination_stream.empty() ? batch.stream : c.options.destination_stream;
        w.mode = c.options.write_mode;
        w.key = c.options.key;
        w.batch_id = fmt::format("{}:{}:{}", c.options.name, origin, index);
        std::optional<WriteResult> written;
        CIVICBUS_RETURN_IF_ERROR(resilient(*sink, [&]() -> Status {
          auto r = sink->connector->write(*sink_ctx, w, batch);
          if (!r.ok()) return r.status();
          written = std::move(r).value();
          return Status();
        }));
        report.records_written += written->written;
        for (auto& e : written->rejected) emitter_ptr->note(std::move(e));
        return Status();
      }
      if (!topic.empty()) {
        for (std::size_t i = 0; i < batch.records.size(); ++i) {
          broker::CloudEvent event{topic, "civicbus/connect/" + c.options.name,
                                   batch.to_object(batch.records[i])};
          event.set_id(fmt::format("{}-{}-{}", origin, index, i));
          auto ack = deps.broker->publish(std::move(event));
          if (!ack.ok()) {
            if (ack.status().code() == ErrorCode::kInvalidArgument) {
              emitter_ptr->note({batch.records[i].position, "", "", ack.status().message()});
              continue;
            }
            return ack.status();
          }
          ++report.records_written;
        }
        return Status();
      }
      report.records_written += static_cast<std::int64_t>(batch.size());
      return Status();
    };
    auto commit = [&](std::string_view stream, const Json& stream_state) -> Status {
      state.set(stream, stream_state);
      report.state = state;
      return save_state(c, state);
    };
    HubEmitter emitter(mapping ? &*mapping : nullptr, deliver, commit, report,
                       options.max_errors_in_report);
    emitter_ptr = &emitter;
    ReadRequest request;
    for (const auto& s : selected) request.streams.push_back(s.name);
    request.state = state;
    request.batch_size = c.options.batch_size;
    CIVICBUS_RETURN_IF_ERROR(
        resilient(c, [&] { return c.connector->read(ctx, request, emitter); }));
    report.state = state;
    return Status();
  };
  Status outcome = body();
  report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(clock.steady_now() - t0);
  CIVICBUS_RETURN_IF_ERROR(record_run(c, started, report, outcome));
  if (deps.metrics != nullptr) {
    Labels labels{{"connection", c.options.name}};
    deps.metrics->counter("civicbus_connector_runs_total", "Hub syncs run", labels).inc();
    if (!outcome.ok()) {
      deps.metrics->counter("civicbus_connector_run_failures_total", "Hub syncs failed", labels)
          .inc();
    }
    deps.metrics
        ->counter("civicbus_connector_records_read_total", "Records read by hub syncs", labels)
        .inc(static_cast<double>(report.records_read));
  }
  if (!outcome.ok()) return outcome.with_context(fmt::format("sync of '{}'", c.options.name));
  return report;
}

Result<SyncReport> ConnectorHub::sync(std::string_view name) {
  CIVICBUS_ASSIGN_OR_RETURN(auto conn, impl_->find(name));
  return impl_->sync(*conn, false);
}

Result<TestSyncReport> ConnectorHub::test_sync(std::string_view name, std::size_t sample) {
  CIVICBUS_ASSIGN_OR_RETURN(auto conn, impl_->find(name));
  std::lock_guard run(conn->run_mutex);
  TestSyncReport report;
  CIVICBUS_ASSIGN_OR_RETURN(ConnectorContext ctx, impl_->context_for(*conn));
  report.check = conn->connector->check(ctx);
  if (!report.check.ok()) return report;
  auto streams = conn->connector->discover(ctx);
  if (!streams.ok()) {
    report.check = streams.status().with_context("discover");
    return report;
  }
  for (auto& s : *streams) {
    if (conn->options.streams.empty() ||
        std::find(conn->options.streams.begin(), conn->options.streams.end(), s.name) !=
            conn->options.streams.end()) {
      report.streams.push_back(std::move(s));
    }
  }
  for (const auto& s : report.streams) {
    CIVICBUS_ASSIGN_OR_RETURN(auto recorded, impl_->drift->recorded(name, s.name));
    if (recorded) {
      for (const auto& change : diff_schemas(*recorded, s)) {
        report.drift.push_back(s.name + ": " + change.describe());
      }
    }
  }
  std::optional<FieldMapping> mapping;
  if (!conn->options.mapping.is_null()) {
    for (const auto& p : FieldMapping::check(conn->options.mapping, report.streams)) {
      report.mapping_problems.push_back(
          p.target.empty() ? p.message : fmt::format("'{}': {}", p.target, p.message));
    }
    if (report.mapping_problems.empty()) {
      auto m = FieldMapping::compile(conn->options.mapping, report.streams);
      if (m.ok()) mapping.emplace(std::move(m).value());
    }
  }
  ReadRequest request;
  for (const auto& s : report.streams) request.streams.push_back(s.name);
  CIVICBUS_ASSIGN_OR_RETURN(request.state, impl_->load_state(name));
  request.max_records = static_cast<std::int64_t>(sample);
  request.batch_size = sample == 0 ? 1 : sample;
  CollectingEmitter collected;
  Status read = conn->connector->read(ctx, request, collected);
  if (!read.ok()) {
    report.check = read.with_context("reading a sample");
    return report;
  }
  for (auto& batch : collected.batches) {
    if (mapping) {
      MappedBatch mapped = mapping->apply(batch);
      for (auto& e : mapped.errors) report.sample_errors.push_back(std::move(e));
      batch = std::move(mapped.batch);
    }
    for (const auto& r : batch.records) {
      if (report.sample.size() < sample) report.sample.push_back(batch.to_object(r));
    }
  }
  return report;
}

Status ConnectorHub::accept_schema(std::string_view name) {
  CIVICBUS_ASSIGN_OR_RETURN(auto conn, impl_->find(name));
  CIVICBUS_ASSIGN_OR_RETURN(auto streams, impl_->drift->paused_streams(name));
  for (const auto& s : streams) CIVICBUS_RETURN_IF_ERROR(impl_->drift->accept(name, s));
  return resume(name);
}

Status ConnectorHub::pause(std::string_view name) {
  CIVICBUS_ASSIGN_OR_RETURN(auto conn, impl_->find(name));
  CIVICBUS_RETURN_IF_ERROR(
      impl_->deps.db->execute("UPDATE connect_connections SET paused = 1 WHERE name = ?", {name})
          .status());
  if (!conn->paused) {
    conn->paused = true;
    impl_->publish_health(Json::object({{"connection", conn->options.name},
                                        {"connector", conn->options.connector},
                                        {"from", health_name(health_of(conn->breaker->state()))},
                                        {"to", "paused"},
                                        {"reason", "paused by an operator"},
                                        {"at", format_rfc3339(impl_->clock.now())}}));
    impl_->flush_health();
  }
  return Status();
}

Status ConnectorHub::resume(std::string_view name) {
  CIVICBUS_ASSIGN_OR_RETURN(auto conn, impl_->find(name));
  CIVICBUS_RETURN_IF_ERROR(
      impl_->deps.db->execute("UPDATE connect_connections SET paused = 0 WHERE name = ?", {name})
          .status());
  if (conn->paused) {
    conn->paused = false;
    impl_->publish_health(Json::object({{"connection", conn->options.name},
                                        {"connector", conn->options.connector},
                                        {"from", "paused"},
                                        {"to", health_name(health_of(conn->breaker->state()))},
                                        {"reason", "resumed"},
                                        {"at", format_rfc3339(impl_->clock.now())}}));
    impl_->flush_health();
  }
  return Status();
}

Result<CallResult> ConnectorHub::call(std::string_view name, std::string_view operation,
                                      const Json& input, std::string_view cache_key,
                                      bool queue_when_down) {
  CIVICBUS_ASSIGN_OR_RETURN(auto conn, impl_->find(name));
  CIVICBUS_ASSIGN_OR_RETURN(ConnectorContext ctx, impl_->context_for(*conn));
  Json answer;
  Status outcome = impl_->resilient(*conn, [&]() -> Status {
    auto r = conn->connector->call(ctx, operation, input);
    if (!r.ok()) return r.status();
    answer = std::move(r).value();
    return Status();
  });
  if (outcome.ok()) {
    if (!cache_key.empty()) impl_->cache->put(name, cache_key, answer).ignore_error();
    return CallResult{CallResult::Source::kLive, std::move(answer), std::nullopt, 0};
  }
  // Only a connection that is down (or that kept failing in a way worth retrying) falls back;
  // a bad request fails at once.
  const bool down = outcome.code() == ErrorCode::kUnavailable ||
                    outcome.code() == ErrorCode::kDeadlineExceeded ||
                    outcome.code() == ErrorCode::kResourceExhausted;
  if (!down) return outcome;
  CallResult result;
  result.source = CallResult::Source::kQueued;
  bool fallback = false;
  if (queue_when_down) {
    Json payload =
        Json::object({{"operation", operation}, {"input", input}, {"cache_key", cache_key}});
    CIVICBUS_ASSIGN_OR_RETURN(result.queue_id, impl_->queue->enqueue(name, "call", payload));
    fallback = true;
  }
  if (!cache_key.empty()) {
    CIVICBUS_ASSIGN_OR_RETURN(auto cached, impl_->cache->get(name, cache_key));
    if (cached) {
      result.source = CallResult::Source::kCache;
      result.response = std::move(cached->value);
      result.cached_at = cached->stored_at;
      fallback = true;
    }
  }
  if (!fallback) return outcome;
  return result;
}

Result<std::int64_t> ConnectorHub::replay(std::string_view name) {
  CIVICBUS_ASSIGN_OR_RETURN(auto conn, impl_->find(name));
  std::lock_guard run(conn->run_mutex);
  return impl_->replay(*conn);
}

int ConnectorHub::run_due() {
  const SystemTime now = impl_->clock.now();
  std::vector<std::shared_ptr<Impl::Connection>> due;
  {
    std::lock_guard lock(impl_->mutex);
    for (auto& [_, c] : impl_->connections) {
      if (c->next_run && *c->next_run <= now) due.push_back(c);
    }
  }
  int ran = 0;
  for (auto& c : due) {
    const bool within_grace = now - *c->next_run <= impl_->options.misfire_grace;
    {
      std::lock_guard lock(impl_->mutex);
      impl_->schedule_next(*c, now);
    }
    if (!within_grace || c->paused) continue;
    // A failed scheduled run is recorded (connect_runs, the breaker); the schedule goes on.
    impl_->sync(*c, false).status().ignore_error();
    ++ran;
  }
  // Queues of connections that are back are replayed even when no call closed the breaker.
  for (auto& c : due) {
    if (c->replay_wanted.exchange(false)) impl_->replay(*c).status().ignore_error();
  }
  return ran;
}

Result<SystemTime> ConnectorHub::next_run(std::string_view name) const {
  CIVICBUS_ASSIGN_OR_RETURN(auto conn, impl_->find(name));
  std::lock_guard lock(impl_->mutex);
  if (!conn->next_run) {
    return not_found(fmt::format("connection '{}' has no scheduled run", name));
  }
  return *conn->next_run;
}

void ConnectorHub::start() {
  std::lock_guard lock(impl_->mutex);
  if (impl_->scheduler.joinable()) return;
  impl_->stopping = false;
  impl_->scheduler = std::thread([impl = impl_.get(), this] {
    std::unique_lock lock(impl->mutex);
    while (!impl->stopping) {
      std::optional<SystemTime> next;
      for (const auto& [_, c] : impl->connections) {
        if (c->next_run && (!next || *c->next_run < *next)) next = *c->next_run;
      }
      const SystemTime now = impl->clock.now();
      if (next && *next <= now) {
        lock.unlock();
        run_due();
        lock.lock();
        continue;
      }
      // Wakes for the next run, a new connection, or stop(); at most a minute apart so that
      // a wall clock stepped forward is noticed.
      auto wait = next ? std::min<std::chrono::nanoseconds>(*next - now, std::chrono::minutes(1))
                       : std::chrono::nanoseconds(std::chrono::minutes(1));
      impl->wake.wait_for(lock, wait);
    }
  });
}

void ConnectorHub::stop() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  if (impl_->scheduler.joinable()) impl_->scheduler.join();
}

Status ConnectorHub::rotate_master_key(std::string_view new_master_key) {
  return impl_->vault->rotate_master_key(std::string(new_master_key));
}

}  // namespace civicbus::connect
