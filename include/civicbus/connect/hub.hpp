// ConnectorHub: runs configured connectors ("connections", as Airbyte calls a connector with
// its config) on a node. It keeps their credentials in a vault encrypted under the node's
// master key, runs them on cron schedules in their own time zones, maps source fields to the
// platform's data model, detects schema drift between runs, and wraps every call in timeouts,
// retries and a circuit breaker. While a connection's breaker is open, calls are queued
// durably and answered from the response cache where it has data; when it closes, the queue
// replays in order. Each health change publishes `integration.connector_health_changed`.
// A sync commits the connection's state only after its destination acknowledged the records.
//
// The hub owns its tables (connect_*) in the database it is given, its scheduler thread and
// the connector instances; it does not own the database, the broker, the clock or the metrics
// registry, which must outlive it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/connect/connector.hpp"
#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/metrics.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"
#include "civicbus/storage/database.hpp"

namespace civicbus::broker {
class Broker;
}

namespace civicbus::connect {

// What a sync does when a stream's discovered schema differs from the last run's.
enum class DriftPolicy {
  kPropagate,  // accept the new schema, record it, carry on (the change is reported)
  kPause,      // pause the connection until an operator accepts the new schema
  kReject,     // fail this run; the next run checks again
};
CIVICBUS_EXPORT std::string_view drift_policy_name(DriftPolicy policy);
CIVICBUS_EXPORT Result<DriftPolicy> parse_drift_policy(std::string_view name);

struct ResilienceOptions {
  std::chrono::milliseconds timeout{30'000};  // each connector call
  int max_attempts = 3;                       // per call, retryable errors only
  std::chrono::milliseconds initial_backoff{500};
  double backoff_multiplier = 2.0;
  std::chrono::milliseconds max_backoff{30'000};
  int failure_threshold = 5;                   // consecutive failed calls that open the breaker
  std::chrono::milliseconds open_for{60'000};  // before the first half-open probe
  std::chrono::milliseconds max_open_for{600'000};  // the cool-down doubles up to this
};

struct CIVICBUS_EXPORT ConnectionOptions {
  std::string name;       // "mpac-nightly": [a-z0-9][a-z0-9._-]*
  std::string connector;  // catalog name
  // The connector's config. Properties its spec marks secret are moved into the vault by
  // add() and never returned.
  Json config = Json::object();
  std::vector<std::string> streams;  // empty: every discovered stream
  std::string schedule;              // cron expression (5 or 6 fields, @daily…); empty: manual
  std::string time_zone = "America/Toronto";
  // Field mapping from source fields to the platform's model (docs/connectors.md, "Field
  // mapping"); null: records pass as they are.
  Json mapping;
  DriftPolicy drift = DriftPolicy::kPropagate;
  ResilienceOptions resilience;
  // Where a sync's records go: the name of another connection whose connector is a sink, or
  // "topic:<event type>" to publish each record as an event. Empty: records are read and
  // counted (and the state advanced) but stored nowhere.
  std::string destination;
  std::string destination_stream;  // the sink's table or resource; default: the stream's name
  WriteMode write_mode = WriteMode::kAppend;
  std::vector<std::string> key;
  std::size_t batch_size = 10'000;

  Status validate() const;
  // The JSON form (what the YAML `connectors.connections` entries and the HTTP API hold):
  // {"name", "connector", "config", "streams", "schedule", "time_zone", "mapping", "drift",
  //  "destination", "destination_stream", "write_mode", "key", "batch_size",
  //  "resilience": {"timeout_ms", "max_attempts", "initial_backoff_ms", "backoff_multiplier",
  //                 "max_backoff_ms", "failure_threshold", "open_for_ms", "max_open_for_ms"}}.
  // Unknown keys are refused, naming the key.
  static Result<ConnectionOptions> from_json(const Json& json);
  Json to_json() const;
};

enum class Health {
  kHealthy,   // breaker closed
  kDegraded,  // breaker half-open: probing
  kDown,      // breaker open: calls queued, answers from cache
  kPaused,    // stopped by the drift policy or an operator
};
CIVICBUS_EXPORT std::string_view health_name(Health health);

struct SyncReport {
  std::string connection;
  std::int64_t records_read = 0;
  std::int64_t records_written = 0;
  std::int64_t records_rejected = 0;  // by the mapping or the destination
  std::vector<RowError> errors;       // the first 100
  std::vector<std::string> drift;     // schema changes found, one sentence each
  Json state;                         // the committed state after the run
  std::chrono::milliseconds elapsed{0};
};

struct TestSyncReport {
  Status check;                               // the connection test
  std::vector<StreamSpec> streams;            // discovered
  std::vector<Json> sample;                   // mapped sample records (at most the sample size)
  std::vector<std::string> mapping_problems;  // the mapping against the discovered schema
  std::vector<RowError> sample_errors;        // sample records the mapping refused
  std::vector<std::string> drift;             // against the last run's schema
  bool ok() const { return check.ok() && mapping_problems.empty(); }
};

struct ConnectionStatus {
  std::string name;
  std::string connector;
  Health health = Health::kHealthy;
  int consecutive_failures = 0;
  std::optional<SystemTime> last_run_at;
  std::optional<SystemTime> last_success_at;
  std::string last_error;
  std::optional<SystemTime> next_run_at;
  std::int64_t queued = 0;  // calls waiting for the breaker to close
  Json state;               // the committed read state
  Json config;              // with secrets shown as "********"
};

// The answer of a call through the hub.
struct CallResult {
  enum class Source { kLive, kCache, kQueued };
  Source source = Source::kLive;
  Json response;                        // live or cached; null when queued without cache
  std::optional<SystemTime> cached_at;  // when the cached response was stored
  std::int64_t queue_id = 0;            // when queued
};

struct HubOptions {
  // The connections' working folders (connector files such as a webhook inbox) live here.
  std::string data_dir = ".";
  // How late a scheduled run may start and still run (a node down at 02:00 runs the 02:00
  // sync at start-up when it is back within this window; later, it skips to the next).
  std::chrono::seconds misfire_grace{3600};
  std::size_t max_errors_in_report = 100;
};

struct HubDeps {
  storage::Database* db = nullptr;            // required: connect_* tables
  std::string master_key;                     // required: 32 bytes, seals the vault
  const ConnectorCatalog* catalog = nullptr;  // null: ConnectorCatalog::builtin()
  broker::Broker* broker = nullptr;           // health events, topic destinations
  const Clock* clock = nullptr;               // null: the system clock
  MetricsRegistry* metrics = nullptr;
};

class CIVICBUS_EXPORT ConnectorHub {
 public:
  static Result<std::unique_ptr<ConnectorHub>> open(HubOptions options, HubDeps deps);
  ~ConnectorHub();
  ConnectorHub(const ConnectorHub&) = delete;
  ConnectorHub& operator=(const ConnectorHub&) = delete;

  // Adds or replaces a connection (kept in the database; reloaded by open()). The config is
  // checked against the connector's spec, the schedule and time zone are parsed, secrets go
  // to the vault. Replacing keeps the state, the vault's secrets not given again, and the
  // recorded schema.
  Status add(ConnectionOptions options);
  Status remove(std::string_view name);
  std::vector<std::string> names() const;
  // The options as stored, secrets redacted.
  Result<ConnectionOptions> options(std::string_view name) const;
  Result<ConnectionStatus> status(std::string_view name);

  Status check(std::string_view name);
  // check + discover + read a sample + mapping report, writing nothing and committing no
  // state: what an administrator runs before the first schedule.
  Result<TestSyncReport> test_sync(std::string_view name, std::size_t sample = 10);
  // Runs a sync now, on the calling thread.
  Result<SyncReport> sync(std::string_view name);
  // Accepts the current discovered schema of a paused connection and resumes it.
  Status accept_schema(std::string_view name);
  Status pause(std::string_view name);
  Status resume(std::string_view name);

  // A request/response operation of the connection's connector (Connector::call) with
  // retries and the breaker. While the breaker is open (or the call fails for good) the
  // request is queued durably when `queue_when_down`, and the last response cached under
  // `cache_key` (if given) is returned instead; with neither, the error is returned.
  Result<CallResult> call(std::string_view name, std::string_view operation, const Json& input,
                          std::string_view cache_key = {}, bool queue_when_down = true);
  // Replays queued calls of `name` in order while they succeed; returns how many ran. Runs
  // by itself when the breaker closes again.
  Result<std::int64_t> replay(std::string_view name);

  // Scheduling. start() runs a thread that sleeps until the next due run; stop() joins it.
  // run_due() runs, on the calling thread, every connection due at the clock's now (tests
  // and single-threaded embedders drive it with a ManualClock).
  void start();
  void stop();
  int run_due();
  Result<SystemTime> next_run(std::string_view name) const;

  // Re-seals every credential under `new_master_key`; the old key stops working.
  Status rotate_master_key(std::string_view new_master_key);

 private:
  struct Impl;
  explicit ConnectorHub(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace civicbus::connect
