#include "civicbus/node/node.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "broker/master_key.hpp"
#include "civicbus/core/crypto.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/gateway/gateway.hpp"
#include "civicbus/gateway/webhooks.hpp"
#include "civicbus/storage/database.hpp"
#include "civicbus/version.hpp"
#include "core/read_file.hpp"

namespace civicbus {
namespace {

namespace fs = std::filesystem;

// The last SIGINT/SIGTERM received while a Node::run() was waiting. A signal handler can only
// reach global state; this lock-free atomic is the one piece civicbus has, and only run()
// installs the handler that writes it.
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void civicbus_on_stop_signal(int signal) {
  g_stop_signal.store(signal);
}

// SIGHUPs received while a Node::run() with a gateway to reload was waiting.
std::atomic<int> g_reload_signals{0};

extern "C" void civicbus_on_reload_signal(int) {
  g_reload_signals.fetch_add(1);
}

// An exclusive advisory lock on <data_dir>/LOCK, held while the Node lives (as LevelDB does),
// so that two processes never append to one log.
Result<int> lock_data_dir(const std::string& data_dir) {
  std::string path = (fs::path(data_dir) / "LOCK").string();
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return io_error(fmt::format("cannot open lock file '{}': {}", path, std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    std::string holder;
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    if (n > 0) holder = std::string(buf, static_cast<std::size_t>(n));
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return failed_precondition(fmt::format(
          "data directory '{}' is in use by another civicbus node{}; stop it first or use "
          "another data_dir",
          data_dir, holder.empty() ? std::string() : " (pid " + holder + ")"));
    }
    return io_error(fmt::format("cannot lock '{}': {}", path, std::strerror(err)));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) {
    ssize_t written = ::pwrite(fd, pid.data(), pid.size(), 0);
    (void)written;  // the pid is a hint for the error above, nothing depends on it
  }
  return fd;
}

bool env_has_value(const std::string& name) {
  if (name.empty()) return false;
  const char* v = std::getenv(name.c_str());
  return v != nullptr && *v != '\0';
}

// The options that decide whether a stored webhook subscription is the configured one.
// from_earliest is left out: it only matters when a subscription is first created.
bool same_webhook_options(const gateway::WebhookOptions& a, const gateway::WebhookOptions& b) {
  return a.topics == b.topics && a.event_types == b.event_types && a.url == b.url &&
         a.tls.ca_file == b.tls.ca_file && a.tls.server_name == b.tls.server_name &&
         a.schedule == b.schedule && a.jitter == b.jitter &&
         a.attempt_timeout == b.attempt_timeout && a.max_concurrent == b.max_concurrent &&
         a.pause.after_failures == b.pause.after_failures && a.pause.cool_off == b.pause.cool_off &&
         a.pause.max_cool_off == b.pause.max_cool_off;
}

// A keyed digest of what the configuration asked for, secret included: the dispatcher never
// hands a stored secret back, so this is how a restart tells "the configured secret is the
// one in use" from "the configuration has a new secret". Keyed by the master key so the table
// says nothing about the secret.
std::string webhook_config_digest(std::string_view master_key, const gateway::WebhookOptions& o) {
  std::string text;
  auto add = [&text](std::string_view name, std::string_view value) {
    text += fmt::format("{}={}:{};", name, value.size(), value);
  };
  add("id", o.id);
  for (const std::string& t : o.topics) add("topic", t);
  for (const std::string& t : o.event_types) add("event_type", t);
  add("url", o.url);
  add("ca_file", o.tls.ca_file);
  add("server_name", o.tls.server_name);
  add("secret", o.secret);
  for (auto d : o.schedule) add("wait", std::to_string(d.count()));
  add("jitter", fmt::format("{}", o.jitter));
  add("attempt_timeout", std::to_string(o.attempt_timeout.count()));
  add("max_concurrent", std::to_string(o.max_concurrent));
  add("after_failures", std::to_string(o.pause.after_failures));
  add("cool_off", std::to_string(o.pause.cool_off.count()));
  add("max_cool_off", std::to_string(o.pause.max_cool_off.count()));
  const std::string key = crypto::hmac_sha256(master_key, "civicbus node webhook config v1");
  return crypto::to_hex(crypto::hmac_sha256(key, text));
}

}  // namespace

std::string_view library_version() {
  return version();
}

struct Node::Impl {
  NodeOptions options;
  std::unique_ptr<Clock> owned_clock;
  const Clock* clock = nullptr;
  std::unique_ptr<SecureRandom> random;
  std::unique_ptr<MetricsRegistry> metrics;
  Logger logger;
  int lock_fd = -1;
  std::unique_ptr<Executor> executor;
  std::unique_ptr<storage::Database> db;
  std::unique_ptr<transport::Transport> transport;
  std::unique_ptr<broker::Broker> broker;
  std::unique_ptr<gateway::Gateway> gateway;
  std::unique_ptr<gateway::WebhookDispatcher> webhooks;
  std::unique_ptr<fleet::DeviceFleet> fleet;
  std::unique_ptr<connect::ConnectorHub> hub;
  std::mutex reload_mu;  // one gateway reload at a time

  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;

  ~Impl() {
    // The gateway stops first: its in-process handlers may use the broker. Then the broker
    // goes: it stops subscriptions (waiting for running handlers) and its
    // maintenance. The transport then commits what is queued. The executor is joined before
    // the broker and transport objects are freed, so no task posted by them can run against
    // freed memory; tasks not yet started are dropped. The webhook dispatcher closes before
    // the broker (its consumer groups and retry writes run on the broker and the database)
    // and is freed after the executor is joined, for the same reason.
    if (gateway) gateway->stop();
    // The hub's scheduler may be running a sync that writes to the database and publishes.
    if (hub) hub->stop();
    hub.reset();
    // The fleet next: its MQTT link and rules publish through the broker; closing it flushes
    // the time series and the alert state.
    fleet.reset();
    if (webhooks) webhooks->close();
    if (broker) broker->close();
    if (transport) transport->close();
    executor.reset();
    webhooks.reset();
    broker.reset();
    transport.reset();
    db.reset();
    if (lock_fd >= 0) {
      ::flock(lock_fd, LOCK_UN);
      ::close(lock_fd);
    }
  }

  Status load_master_key(const Logger& log);
  Status register_schemas(const Logger& log);
  Status create_topics(const Logger& log);
  Status start_gateway(const Logger& log);
  Status start_webhooks(const Logger& log);
  Status start_fleet(const Logger& log);
  Status start_connectors(const Logger& log);
  Status apply_webhook(const gateway::WebhookOptions& wanted,
                       const std::vector<gateway::WebhookSubscription>& stored, const Logger& log);

  std::atomic<Node*> owner{nullptr};  // the Node this Impl belongs to, once constructed
};

Status Node::Impl::start_gateway(const Logger& logger) {
  if (!options.gateway) return {};
  gateway::GatewayDeps deps;
  deps.clock = clock;
  deps.random = random.get();
  deps.metrics = metrics.get();
  deps.logger = this->logger;
  // POST /api/v1/gateway/reload re-reads the file, as SIGHUP does. `owner` is set once the
  // Node exists, before any request can arrive (the listener starts below but the lambda
  // checks).
  deps.reload_config = [this] {
    Node* node = owner.load();
    if (node == nullptr) return failed_precondition("the node is still starting");
    return node->reload_gateway();
  };
  CIVICBUS_ASSIGN_OR_RETURN(gateway, gateway::Gateway::create(*options.gateway, std::move(deps)));
  if (fleet) CIVICBUS_RETURN_IF_ERROR(fleet->mount(*gateway).with_context("fleet API"));
  auto port = gateway->start();
  if (!port.ok()) {
    gateway.reset();
    return port.status().with_context(fmt::format("gateway on {}:{}",
                                                  options.gateway->listener.bind_address,
                                                  options.gateway->listener.port));
  }
  logger.info("gateway started", {{"address", options.gateway->listener.bind_address},
                                  {"port", std::to_string(*port)}});
  return {};
}

Status Node::Impl::start_connectors(const Logger& logger) {
  if (!options.connectors) return {};
  NodeOptions::Connectors& c = *options.connectors;
  if (options.broker.master_key.empty()) {
    return failed_precondition(
        "the connector hub needs the master key (its credential vault is sealed under it): set "
        "`security: {master_key: generate}` or a master key file, or remove the connectors "
        "section");
  }
  connect::HubOptions hub_options = c.hub;
  if (hub_options.data_dir.empty() || hub_options.data_dir == ".") {
    hub_options.data_dir = (fs::path(options.data_dir) / "connect").string();
  }
  connect::HubDeps deps;
  deps.db = db.get();
  deps.master_key = options.broker.master_key;
  deps.broker = broker.get();
  deps.clock = clock;
  deps.metrics = metrics.get();
  CIVICBUS_ASSIGN_OR_RETURN(hub, connect::ConnectorHub::open(hub_options, deps));
  for (const auto& connection : c.connections) {
    CIVICBUS_RETURN_IF_ERROR(
        hub->add(connection).with_context(fmt::format("connection '{}'", connection.name)));
  }
  if (c.run_schedules) hub->start();
  logger.info("connector hub started", {{"connections", std::to_string(hub->names().size())},
                                        {"schedules", c.run_schedules ? "running" : "off"}});
  return {};
}

Status Node::Impl::start_fleet(const Logger& logger) {
  if (!options.fleet) return {};
  fleet::FleetDeps deps;
  deps.db = db.get();
  deps.timeseries_path = (fs::path(options.data_dir) / "timeseries.db").string();
  deps.broker = broker.get();
  deps.clock = clock;
  deps.random = random.get();
  deps.metrics = metrics.get();
  deps.logger = this->logger.with_component("fleet");
  deps.master_key = options.broker.master_key;
  deps.source = "/civicbus/" + options.name + "/fleet";
  auto opened = fleet::DeviceFleet::open(*options.fleet, std::move(deps));
  if (!opened.ok()) return opened.status().with_context("fleet");
  fleet = std::move(opened).value();
  logger.info("fleet started", {{"devices", std::to_string(fleet->stats().devices)}});
  return {};
}

Status Node::Impl::start_webhooks(const Logger& logger) {
  if (!options.webhooks) return {};
  gateway::WebhookDispatcherOptions dispatcher = options.webhooks->dispatcher;
  dispatcher.master_key = options.broker.master_key;
  gateway::WebhookContext context{
      *broker, *db, *executor, *clock, *metrics, *random, this->logger.with_component("webhooks")};
  auto opened = gateway::WebhookDispatcher::open(std::move(dispatcher), context);
  if (!opened.ok()) return opened.status().with_context("webhooks");
  webhooks = std::move(opened).value();
  CIVICBUS_RETURN_IF_ERROR(
      db->execute_script("CREATE TABLE IF NOT EXISTS node_webhook_config ("
                         "  id TEXT PRIMARY KEY,"
                         "  digest TEXT NOT NULL)"));
  CIVICBUS_ASSIGN_OR_RETURN(auto stored, webhooks->subscriptions());
  for (const gateway::WebhookOptions& wanted : options.webhooks->subscriptions) {
    CIVICBUS_RETURN_IF_ERROR(
        apply_webhook(wanted, stored, logger).with_context(fmt::format("webhook '{}'", wanted.id)));
  }
  logger.info("webhooks started",
              {{"configured", std::to_string(options.webhooks->subscriptions.size())}});
  return {};
}

// Creates, keeps, rotates or replaces one configured subscription (NodeWebhooksOptions says
// when each happens). Logs ids and URLs, never secrets.
Status Node::Impl::apply_webhook(const gateway::WebhookOptions& wanted,
                                 const std::vector<gateway::WebhookSubscription>& stored,
                                 const Logger& logger) {
  const std::string digest = webhook_config_digest(options.broker.master_key, wanted);
  auto record = [&]() -> Status {
    return db
        ->execute(
            "INSERT INTO node_webhook_config (id, digest) VALUES (?, ?) "
            "ON CONFLICT(id) DO UPDATE SET digest = excluded.digest",
            {std::string_view(wanted.id), std::string_view(digest)})
        .status();
  };
  auto existing = std::find_if(stored.begin(), stored.end(),
                               [&](const auto& s) { return s.options.id == wanted.id; });
  if (existing == stored.end()) {
    CIVICBUS_RETURN_IF_ERROR(webhooks->create(wanted).status());
    logger.info("webhook subscription created", {{"id", wanted.id}, {"url", wanted.url}});
    return record();
  }
  std::optional<std::string> recorded;
  CIVICBUS_RETURN_IF_ERROR(db->query("SELECT digest FROM node_webhook_config WHERE id = ?",
                                     {std::string_view(wanted.id)}, [&](const storage::Row& row) {
                                       recorded = std::string(row.get_text(0));
                                       return false;
                                     }));
  if (recorded && crypto::constant_time_equal(*recorded, digest)) return {};  // kept as it is
  if (same_webhook_options(existing->options, wanted)) {
    // Only the secret can differ (or the subscription was stored by someone else): rotate, so
    // the previous secret keeps signing for rotation_overlap while receivers switch.
    CIVICBUS_RETURN_IF_ERROR(webhooks->rotate_secret(wanted.id, wanted.secret).status());
    logger.info("webhook secret set from the configuration", {{"id", wanted.id}});
    return record();
  }
  gateway::WebhookEndpointState state;
  if (auto s = webhooks->endpoint_state(wanted.id); s.ok()) state = *s;
  CIVICBUS_RETURN_IF_ERROR(webhooks->remove(wanted.id));
  CIVICBUS_RETURN_IF_ERROR(webhooks->create(wanted).status());
  if (state.pending_retries > 0 || state.dead_letters > 0) {
    logger.warn(
        "webhook subscription replaced with its configured options; its parked retries "
        "and dead letters were dropped",
        {{"id", wanted.id},
         {"url", wanted.url},
         {"dropped_retries", std::to_string(state.pending_retries)},
         {"dropped_dead_letters", std::to_string(state.dead_letters)}});
  } else {
    logger.info("webhook subscription updated from the configuration",
                {{"id", wanted.id}, {"url", wanted.url}});
  }
  return record();
}

Status Node::Impl::load_master_key(const Logger& logger) {
  NodeOptions& o = options;
  if (!o.broker.master_key.empty()) return {};  // given by the embedding program
  bool from_env = env_has_value(o.master_key_env);
  std::error_code ec;
  bool file_exists = fs::exists(o.master_key_file, ec);
  if (!from_env && !file_exists && o.generate_master_key) {
    CIVICBUS_RETURN_IF_ERROR(broker::write_new_master_key(o.master_key_file, *random));
    logger.info("generated a new master key", {{"file", o.master_key_file}});
    file_exists = true;
  }
  if (from_env || file_exists) {
    CIVICBUS_ASSIGN_OR_RETURN(
        o.broker.master_key,
        broker::load_master_key(from_env ? o.master_key_env : std::string(), o.master_key_file));
    logger.info("master key loaded",
                {{"source", from_env ? "$" + o.master_key_env : o.master_key_file}});
    return {};
  }
  if (o.fleet && o.fleet->issue_certificates) {
    return failed_precondition(fmt::format(
        "the fleet's device CA needs the master key (its private key is stored sealed under it) "
        "but none is available: set ${} to 64 hex digits, create '{}' (mode 0600), set "
        "`security: {{master_key: generate}}`, or set `fleet: {{certificates: {{enabled: "
        "false}}}}`",
        o.master_key_env.empty() ? std::string("CIVICBUS_MASTER_KEY") : o.master_key_env,
        o.master_key_file));
  }
  if (o.webhooks) {
    return failed_precondition(fmt::format(
        "webhooks need the master key (their secrets are stored sealed under it) but none is "
        "available: set ${} to 64 hex digits, create '{}' (mode 0600), or set "
        "`security: {{master_key: generate}}`",
        o.master_key_env.empty() ? std::string("CIVICBUS_MASTER_KEY") : o.master_key_env,
        o.master_key_file));
  }
  for (const broker::TopicOptions& t : o.topics) {
    if (!t.pii_fields.empty()) {
      return failed_precondition(fmt::format(
          "topic '{}' has PII fields but no master key is available: set ${} to 64 hex digits, "
          "create '{}' (mode 0600), or set `security: {{master_key: generate}}`",
          t.name, o.master_key_env.empty() ? std::string("CIVICBUS_MASTER_KEY") : o.master_key_env,
          o.master_key_file));
    }
  }
  logger.info("running without a master key: PII encryption and keyed audit are unavailable");
  return {};
}

Status Node::Impl::register_schemas(const Logger& logger) {
  for (const NodeOptions::SchemaFile& file : options.schemas) {
    auto text = read_text_file(file.path);
    if (!text.ok()) {
      return text.status().with_context(fmt::format("schema file for subject '{}'", file.subject));
    }
    auto schema = Json::parse(*text);
    if (!schema.ok()) {
      return invalid_argument(fmt::format("schema file '{}' (subject '{}') is not valid JSON: {}",
                                          file.path, file.subject, schema.status().message()));
    }
    auto versions = broker->schema_versions(file.subject);
    if (!versions.ok() && versions.status().code() != ErrorCode::kNotFound) {
      return versions.status().with_context(fmt::format("subject '{}'", file.subject));
    }
    if (versions.ok() &&
        std::any_of(versions->begin(), versions->end(),
                    [&](const broker::SchemaVersion& v) { return v.schema == *schema; })) {
      continue;  // already registered (the registry would make this a no-op as well)
    }
    // The compatibility mode is applied together with a new version (the broker audits each
    // change, so it is not re-set on every start).
    if (!file.compatibility.empty()) {
      CIVICBUS_ASSIGN_OR_RETURN(SchemaCompatibility mode,
                                parse_schema_compatibility(file.compatibility));
      CIVICBUS_RETURN_IF_ERROR(broker->set_compatibility(file.subject, mode, "config")
                                   .with_context(fmt::format("subject '{}'", file.subject)));
    }
    auto registered = broker->register_schema(file.subject, *schema, "config");
    if (!registered.ok()) {
      return registered.status().with_context(
          fmt::format("registering '{}' from '{}'", file.subject, file.path));
    }
    logger.info("schema registered",
                {{"subject", file.subject},
                 {"version", std::to_string(registered->version)},
                 {"state", std::string(broker::to_string(registered->state))}});
  }
  return {};
}

Status Node::Impl::create_topics(const Logger& logger) {
  for (const broker::TopicOptions& t : options.topics) {
    Status s = broker->create_topic(t, "config");
    if (s.code() == ErrorCode::kAlreadyExists) {
      s = broker->update_topic(t, "config");
      if (s.ok()) logger.info("topic updated from configuration", {{"topic", t.name}});
    }
    CIVICBUS_RETURN_IF_ERROR(s.with_context(fmt::format("topic '{}'", t.name)));
  }
  return {};
}

Result<std::unique_ptr<Node>> Node::create(NodeOptions options, const Clock* clock) {
  CIVICBUS_RETURN_IF_ERROR(options.validate());
  auto impl = std::make_unique<Impl>();
  if (clock == nullptr) {
    impl->owned_clock = std::make_unique<SystemClock>();
    clock = impl->owned_clock.get();
  }
  impl->clock = clock;
  impl->random = std::make_unique<SecureRandom>();
  impl->metrics = std::make_unique<MetricsRegistry>();
  impl->logger = Logger(options.logging, *clock);
  Logger log = impl->logger.with_component("node");

  std::error_code ec;
  fs::create_directories(options.data_dir, ec);
  if (ec || !fs::is_directory(options.data_dir, ec)) {
    return io_error(fmt::format("cannot create data directory '{}': {}", options.data_dir,
                                ec ? ec.message() : "not a directory"));
  }
  CIVICBUS_ASSIGN_OR_RETURN(impl->lock_fd, lock_data_dir(options.data_dir));
  // Two files: the broker's state (topics, schemas, offsets, DLQ, keys, audit) and the event
  // log. SQLite has one writer per file, so keeping them apart means a maintenance pass or a
  // DLQ write never holds up a group commit of the log.
  std::string db_path = (fs::path(options.data_dir) / "civicbus.db").string();
  std::string log_path = (fs::path(options.data_dir) / "log.db").string();
  if (options.master_key_file.empty()) {
    options.master_key_file = (fs::path(options.data_dir) / "master.key").string();
  }
  options.log.path = log_path;
  impl->options = std::move(options);
  NodeOptions& o = impl->options;
  CIVICBUS_RETURN_IF_ERROR(impl->load_master_key(log));

  std::size_t threads = o.worker_threads;
  if (threads == 0) threads = std::max<std::size_t>(2, std::thread::hardware_concurrency());
  impl->executor = make_thread_pool(threads);

  storage::SqliteOptions db_options;
  db_options.path = db_path;
  db_options.synchronous =
      o.log.synchronous_full ? storage::Synchronous::kFull : storage::Synchronous::kNormal;
  CIVICBUS_ASSIGN_OR_RETURN(impl->db, storage::open_sqlite(db_options));
  CIVICBUS_ASSIGN_OR_RETURN(impl->transport,
                            transport::open_in_process(o.log, *clock, impl->metrics.get()));
  broker::BrokerContext context{*impl->db,
                                *impl->transport,
                                *impl->executor,
                                *clock,
                                *impl->metrics,
                                *impl->random,
                                impl->logger.with_component("broker")};
  CIVICBUS_ASSIGN_OR_RETURN(impl->broker, broker::Broker::open(o.broker, context));

  CIVICBUS_RETURN_IF_ERROR(impl->register_schemas(log));
  CIVICBUS_RETURN_IF_ERROR(impl->create_topics(log));
  CIVICBUS_RETURN_IF_ERROR(impl->start_webhooks(log));
  CIVICBUS_RETURN_IF_ERROR(impl->start_fleet(log));
  CIVICBUS_RETURN_IF_ERROR(impl->start_connectors(log));
  CIVICBUS_RETURN_IF_ERROR(impl->start_gateway(log));
  log.info("node started", {{"name", o.name},
                            {"data_dir", o.data_dir},
                            {"workers", std::to_string(threads)},
                            {"topics", std::to_string(impl->broker->topics().size())}});
  return std::unique_ptr<Node>(new Node(std::move(impl)));
}

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
  impl_->owner.store(this);
}

Node::~Node() {
  if (impl_)
    impl_->logger.with_component("node").info("node stopping", {{"name", impl_->options.name}});
}

broker::Broker& Node::broker() {
  return *impl_->broker;
}
MetricsRegistry& Node::metrics() {
  return *impl_->metrics;
}
Executor& Node::executor() {
  return *impl_->executor;
}
const Clock& Node::clock() const {
  return *impl_->clock;
}
Logger Node::logger(std::string_view component) const {
  return impl_->logger.with_component(component);
}
storage::Database& Node::database() {
  return *impl_->db;
}
transport::Transport& Node::transport() {
  return *impl_->transport;
}
const NodeOptions& Node::options() const {
  return impl_->options;
}
gateway::Gateway* Node::gateway() {
  return impl_->gateway.get();
}
gateway::WebhookDispatcher* Node::webhooks() {
  return impl_->webhooks.get();
}
connect::ConnectorHub* Node::connectors() {
  return impl_->hub.get();
}

fleet::DeviceFleet* Node::fleet() {
  return impl_->fleet.get();
}

Status Node::reload_gateway() {
  const std::string& file = impl_->options.config_file;
  if (file.empty()) {
    return failed_precondition(
        "the node's options were not read from a file (NodeOptions::from_file), so there is no "
        "configuration to reload");
  }
  if (!impl_->gateway) return failed_precondition("the node runs no gateway");
  CIVICBUS_ASSIGN_OR_RETURN(NodeOptions next, NodeOptions::from_file(file));
  if (!next.gateway) {
    return failed_precondition(fmt::format(
        "{} no longer has an enabled 'gateway' section; stopping the gateway needs a restart",
        file));
  }
  const http::HttpServerOptions& running = impl_->options.gateway->listener;
  const http::HttpServerOptions& wanted = next.gateway->listener;
  if (wanted.bind_address != running.bind_address || wanted.port != running.port ||
      wanted.threads != running.threads) {
    logger("node").warn("gateway listener changes take effect at the next restart",
                        {{"file", file}});
  }
  return reload_gateway(std::move(*next.gateway));
}

Status Node::reload_gateway(gateway::GatewayOptions options) {
  if (!impl_->gateway) return failed_precondition("the node runs no gateway");
  std::lock_guard lock(impl_->reload_mu);
  return impl_->gateway->reload(std::move(options));
}

Status Node::run() {
  struct sigaction action {};
  action.sa_handler = civicbus_on_stop_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction old_int {
  }, old_term{};
  g_stop_signal.store(0);
  ::sigaction(SIGINT, &action, &old_int);
  ::sigaction(SIGTERM, &action, &old_term);
  // SIGHUP reloads the gateway when there is one and a file to reload it from; otherwise it
  // keeps its disposition.
  const bool reloads = impl_->gateway != nullptr && !impl_->options.config_file.empty();
  struct sigaction reload_action {};
  reload_action.sa_handler = civicbus_on_reload_signal;
  sigemptyset(&reload_action.sa_mask);
  struct sigaction old_hup {};
  g_reload_signals.store(0);
  if (reloads) ::sigaction(SIGHUP, &reload_action, &old_hup);

  Logger log = impl_->logger.with_component("node");
  log.info("node running", {{"name", impl_->options.name}});
  int signal = 0;
  {
    std::unique_lock<std::mutex> lock(impl_->mu);
    // A signal handler cannot notify a condition variable, so the wait wakes every 50 ms to
    // look at the flag; stop() wakes it at once.
    while (!impl_->stop) {
      signal = g_stop_signal.load();
      if (signal != 0) break;
      if (reloads && g_reload_signals.exchange(0) > 0) {
        lock.unlock();  // stop() may come meanwhile
        log.info("SIGHUP: reloading the gateway configuration",
                 {{"file", impl_->options.config_file}});
        if (Status s = reload_gateway(); !s.ok()) {
          log.error("gateway configuration not reloaded; the running one stays",
                    {{"error", s.message()}});
        }
        lock.lock();
        continue;
      }
      impl_->cv.wait_for(lock, std::chrono::milliseconds(50));
    }
    impl_->stop = true;
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  if (reloads) ::sigaction(SIGHUP, &old_hup, nullptr);
  if (signal != 0) {
    log.info("stop requested by signal", {{"signal", signal == SIGINT ? "SIGINT" : "SIGTERM"}});
  } else {
    log.info("stop requested");
  }
  return {};
}

void Node::stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
}

bool Node::stop_requested() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stop;
}

}  // namespace civicbus
