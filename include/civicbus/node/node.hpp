// Node: the composition root of a civicbus process. It owns, in construction order, the clock,
// the secure random source, the metrics registry, the logger, the executor (worker threads),
// the storage database, the event transport and the Broker, and hands them to the components
// a module asks for. It does not own topics' data or schemas: those live in the broker's
// tables inside the node's data directory (SQLite files `civicbus.db` for the broker's state
// and `log.db` for the event log).
//
//   CIVICBUS_ASSIGN_OR_RETURN(auto options, civicbus::NodeOptions::from_file("node.yaml"));
//   CIVICBUS_ASSIGN_OR_RETURN(auto node, civicbus::Node::create(std::move(options)));
//   node->broker().publish(...);
//   return node->run();  // until stop(), SIGINT or SIGTERM
//
// With a `gateway` section (NodeOptions::gateway) the node also runs the API gateway in front of
// its modules: created and started by create(), stopped first by the destructor, and
// reachable through gateway() so a module can add_route() its in-process handlers.
//
// With a `webhooks` section (NodeOptions::webhooks) the node also runs a WebhookDispatcher on its
// broker, database and master key: opened by create(), which creates or updates the configured
// subscriptions, closed by the destructor before the broker, and reachable through webhooks().
//
// A data directory is used by one Node at a time: create() takes an exclusive lock on
// `<data_dir>/LOCK` and fails (kFailedPrecondition) when another Node, in this process or
// another, holds it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/broker/broker.hpp"
#include "civicbus/connect/hub.hpp"
#include "civicbus/core/clock.hpp"
#include "civicbus/core/executor.hpp"
#include "civicbus/core/log.hpp"
#include "civicbus/core/metrics.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"
#include "civicbus/fleet/fleet.hpp"
#include "civicbus/gateway/options.hpp"
#include "civicbus/gateway/webhooks.hpp"
#include "civicbus/match/engine.hpp"
#include "civicbus/pipeline/pipeline.hpp"
#include "civicbus/transport/transport.hpp"

namespace civicbus {

namespace storage {
class Database;
}
namespace gateway {
class Gateway;
}

// The node's webhooks (YAML: `webhooks:`; see docs/CONFIG.md and docs/webhooks.md).
struct NodeWebhooksOptions {
  // Dispatcher settings. master_key is filled by Node::create() with the node's master key
  // (the broker's); a value set here is replaced.
  gateway::WebhookDispatcherOptions dispatcher;
  // Created at start-up when missing. One stored with the same id is kept when its options
  // and secret are those configured; when only the secret changed it is rotated
  // (rotate_secret: the old one keeps signing for dispatcher.rotation_overlap); when other
  // options changed it is replaced (removed and created again: the consumer group's offset
  // stays, its parked retries and dead letters are dropped, with a warning in the log).
  // Stored subscriptions that are not listed (created through the API) are left alone. Each
  // needs a secret: a node has no one to show a generated secret to.
  std::vector<gateway::WebhookOptions> subscriptions;
};

struct CIVICBUS_EXPORT NodeOptions {
  std::string name = "civicbus";
  // Holds civicbus.db (the broker's state), log.db (the event log), LOCK and, by
  // default, master.key. Created when missing.
  std::string data_dir = "./civicbus-data";
  std::size_t worker_threads = 0;  // 0: hardware concurrency, at least 2
  LogOptions logging;

  // Where the 32-byte master key comes from (see broker::load_master_key): the environment
  // variable first, then the file.
  std::string master_key_env = "CIVICBUS_MASTER_KEY";
  std::string master_key_file;  // default <data_dir>/master.key when empty
  // When neither source has a key, create master_key_file (mode 0600) with a fresh random
  // key. YAML: `security: {master_key: generate}`. Without it, a node whose topics have PII
  // fields refuses to start; a node without PII topics runs without a key.
  bool generate_master_key = false;

  // master_key is filled from the sources above by Node::create() unless already set.
  broker::BrokerOptions broker;
  // path is filled from data_dir by Node::create().
  transport::InProcessOptions log;
  // Created at start-up, or updated when they exist with other settings.
  std::vector<broker::TopicOptions> topics;

  struct SchemaFile {
    std::string subject;
    std::string path;           // a JSON Schema file; from_file() makes it relative to the YAML
    std::string compatibility;  // BACKWARD, FORWARD, FULL, NONE, *_TRANSITIVE; empty: keep
  };
  // Registered at start-up (before the topics are created). A file whose schema equals the
  // subject's newest version registers nothing; a changed file proposes a new version.
  std::vector<SchemaFile> schemas;

  // The API gateway (YAML: `gateway:`; see docs/CONFIG.md). Empty: no gateway. Its relative
  // file paths (JWKS, signing key, schemas) are resolved like the others.
  std::optional<civicbus::gateway::GatewayOptions> gateway;

  // The webhook dispatcher (YAML: `webhooks:`). Empty: none is opened (subscriptions stored
  // in the database stay idle). Needs the master key.
  std::optional<NodeWebhooksOptions> webhooks;

  // The device fleet (YAML: `fleet:`; see docs/fleet.md). Empty: none. It keeps its registry,
  // alerts, rollouts and device CA in civicbus.db and its time series in timeseries.db, and
  // mounts its HTTP API on the gateway when there is one. Issuing device certificates needs
  // the master key.
  std::optional<fleet::FleetOptions> fleet;

  // The connector hub (YAML: `connectors:`; see docs/connectors.md): its connections, added
  // (or replaced) at start-up, and whether their cron schedules run in this process. Empty:
  // no hub. Needs the master key (the credential vault is sealed under it).
  struct Connectors {
    connect::HubOptions hub;  // hub.data_dir defaults to <data_dir>/connect
    std::vector<connect::ConnectionOptions> connections;
    bool run_schedules = true;
  };
  std::optional<Connectors> connectors;

  // The YAML file these options were read from (absolute; set by from_file()), which
  // Node::reload_gateway() reads again. Empty for options built in code or from_yaml().
  std::string config_file;

  // Reads a YAML configuration (docs/CONFIG.md). Relative paths in it (data_dir,
  // master_key_file, schema files) are taken relative to the directory of `path`. Errors
  // name the file and line: "node.yaml:14: unknown key 'retension' in topics[0] (did you
  // mean 'retention'?)".
  static Result<NodeOptions> from_file(const std::string& path);
  // The same from text; `origin` names it in errors. Relative paths stay as written.
  static Result<NodeOptions> from_yaml(std::string_view text, std::string_view origin = "<string>");

  // Checks every field (done by create() and by the YAML loader).
  Status validate() const;
};

// "30s", "15m", "12h", "7d", "2w", "250ms" or "0" (a bare 0 only). Used by the YAML loader
// and the command line.
CIVICBUS_EXPORT Result<std::chrono::milliseconds> parse_duration(std::string_view text);
// "512", "512B", "10KiB", "5MiB", "1GiB", "2TiB" (powers of 1024) or "10KB", "5MB", "1GB"
// (powers of 1000).
CIVICBUS_EXPORT Result<std::int64_t> parse_size(std::string_view text);
// The inverse for messages and tables: "7d", "90m", "1GiB", "1500B".
CIVICBUS_EXPORT std::string format_duration(std::chrono::milliseconds d);
CIVICBUS_EXPORT std::string format_size(std::int64_t bytes);

// The civicbus version this library was built as ("0.1.0").
CIVICBUS_EXPORT std::string_view library_version();

// Reads a pipeline file (YAML; the shape of pipeline::PipelineOptions::from_json, see
// docs/pipelines.md). Relative file paths in the source and sink configs ("path") and the
// error report folder are taken relative to the file's directory. Errors name the file.
CIVICBUS_EXPORT Result<pipeline::PipelineOptions> load_pipeline_file(std::string_view path);

// Reads match rules (YAML; the shape of match::MatchSettings::from_json, see docs/match.md).
// Errors name the file.
CIVICBUS_EXPORT Result<match::MatchSettings> load_match_file(std::string_view path);

class CIVICBUS_EXPORT Node {
 public:
  // Validates `options`, creates the data directory, loads (or generates) the master key,
  // opens storage, transport and broker, registers the configured schemas and creates the
  // configured topics. `clock` (SystemClock when null) must outlive the Node.
  static Result<std::unique_ptr<Node>> create(NodeOptions options, const Clock* clock = nullptr);

  // Closes the webhook dispatcher, then the broker (stopping every subscription), then the
  // transport, then the rest in reverse construction order.
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  broker::Broker& broker();
  MetricsRegistry& metrics();
  Executor& executor();
  const Clock& clock() const;
  // A logger whose lines carry `component`.
  Logger logger(std::string_view component) const;
  storage::Database& database();
  // The event log under the broker (offsets, usage). Components publish through broker().
  transport::Transport& transport();
  // The options as resolved at create(): data_dir, log path and master key filled in. (The
  // gateway's part is the one of create(); reloads do not change it.)
  const NodeOptions& options() const;

  // The gateway when the options have one (it is listening once create() returned), else
  // null. Valid as long as the Node.
  civicbus::gateway::Gateway* gateway();
  // The webhook dispatcher when the options have a webhooks section (its subscriptions are
  // running once create() returned), else null. Valid as long as the Node.
  civicbus::gateway::WebhookDispatcher* webhooks();
  // The device fleet when the options have a fleet section (MQTT connecting, API mounted
  // once create() returned), else null. Valid as long as the Node.
  fleet::DeviceFleet* fleet();
  // The connector hub when the options have a connectors section (schedules running unless
  // connectors.run_schedules is false); null otherwise. Owned by the node.
  connect::ConnectorHub* connectors();

  // Reads options().config_file again and hands its gateway section to
  // reload_gateway(GatewayOptions): the way SIGHUP (see run()) and the admin API reload.
  // Errors (the file does not load, no config_file, no gateway) change nothing.
  Status reload_gateway();
  // Replaces the gateway's routes, upstreams, consumers, CORS, versions and auth settings
  // (Gateway::reload: the listener and load shedding stay as they were started).
  // kFailedPrecondition when the node runs no gateway. Thread-safe; reloads are serialised.
  Status reload_gateway(civicbus::gateway::GatewayOptions options);

  // Blocks until stop() is called or the process receives SIGINT or SIGTERM (the previous
  // signal dispositions are restored on return). Retention, DLQ expiry and lag gauges run on
  // the broker's own schedule (BrokerOptions::maintenance_interval) meanwhile. When the node
  // runs a gateway and was configured from a file, SIGHUP reloads the gateway's
  // configuration from it (reload_gateway(), on run()'s thread; a file that does not load is
  // logged and the running configuration kept). Returns ok on a requested stop; call it from
  // one thread at a time.
  Status run();
  // Makes run() return. Thread-safe, idempotent, callable before run() (run() then returns
  // at once) and from a signal-free context only.
  void stop();
  bool stop_requested() const;

 private:
  struct Impl;
  explicit Node(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace civicbus
