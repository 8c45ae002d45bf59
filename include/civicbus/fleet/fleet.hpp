// DeviceFleet: the IoT platform of a civicbus node. It owns the device registry (types,
// devices, lifecycle, groups, twins), the node's device CA, ingestion (library calls, MQTT
// through a broker such as mosquitto, LoRaWAN network servers and Sigfox callbacks over
// HTTP), the time series with 5-minute, hourly and daily rollups, the alert rules and their
// alerts, OTA rollouts, and on an edge gateway the store-and-forward uplink to the central
// node. It publishes `iot.*` events through the broker and serves `/api/v1/iot/*` through the
// gateway (mount()).
//
//   CIVICBUS_ASSIGN_OR_RETURN(auto fleet, fleet::DeviceFleet::open(options, deps));
//   fleet->provision(device, "ops@city");
//   fleet->ingest(readings);           // validated, stored, rolled up, alerts evaluated
//   fleet->mount(gateway);             // the HTTP API
//
// What it does not own: the database, broker, clock, random source and metrics registry come
// from the host (FleetDeps) and must outlive the fleet.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/log.hpp"
#include "civicbus/core/metrics.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"
#include "civicbus/fleet/types.hpp"
#include "civicbus/gateway/options.hpp"

namespace civicbus {
namespace storage {
class Database;
}
namespace broker {
class Broker;
}
namespace gateway {
class Gateway;
}
}  // namespace civicbus

namespace civicbus::fleet {

// The MQTT broker the fleet's devices (and LoRaWAN network servers) publish to.
struct FleetMqttOptions {
  std::string server_uri;  // "tcp://127.0.0.1:1883"
  std::string client_id = "civicbus-fleet";
  std::string username;
  std::string password;
  std::string device_prefix = "civicbus/devices";  // <prefix>/<id>/telemetry, /senml, …
  std::string chirpstack_prefix = "application";   // "" to not subscribe
  std::string tts_prefix = "v3";                   // "" to not subscribe
};

// An edge gateway forwards what it ingests to a central node (see docs/fleet.md, "Edge").
struct FleetEdgeOptions {
  std::string edge_id;      // unique per central node
  std::string buffer_path;  // SQLite file of the store-and-forward buffer
  // The central node's gateway: "127.0.0.1:8080" (host:port); batches go to
  // POST <api_prefix>/edge/batches.
  std::string uplink;
  std::string api_key;  // sent as X-API-Key when set
  std::size_t max_batch = 1000;
};

enum class ReadingEvents {
  kOff,      // no iot.reading.received events
  kBatched,  // one event per batch of readings, up to reading_events_per_second readings
};

struct CIVICBUS_EXPORT FleetOptions {
  // Daily rollups start at local midnight in this IANA zone.
  std::string time_zone = "UTC";
  std::chrono::milliseconds raw_retention = std::chrono::hours(24 * 30);
  std::chrono::milliseconds retention_5m = std::chrono::hours(24 * 90);
  std::chrono::milliseconds retention_1h = std::chrono::hours(24 * 730);
  std::chrono::milliseconds retention_1d = std::chrono::hours(24 * 3650);
  // A reading stamped further ahead of the node's clock than this is refused.
  std::chrono::milliseconds max_future_skew = std::chrono::minutes(5);

  // Types added to (or replacing) the built-in catalogue.
  std::vector<DeviceType> device_types;

  // Each provisioned device gets an X.509 certificate from the node's device CA (needs
  // FleetDeps::master_key, which seals the CA key).
  bool issue_certificates = true;
  std::string ca_common_name = "civicbus device CA";
  std::string ca_organization = "civicbus";

  std::optional<FleetMqttOptions> mqtt;
  // Where Sigfox callbacks keep the device id, the hex payload and the time (top-level member
  // names, or JSON pointers starting with '/').
  std::string sigfox_device_field = "device";
  std::string sigfox_data_field = "data";
  std::string sigfox_time_field = "time";

  ReadingEvents reading_events = ReadingEvents::kBatched;
  std::size_t reading_events_per_second = 10'000;  // readings carried by events, at most
  std::size_t readings_per_event = 500;

  // How often the fleet's own thread checks inactivity, rollout timeouts and retention.
  std::chrono::milliseconds tick_interval{1000};

  std::optional<FleetEdgeOptions> edge;

  // The HTTP API mounted on a gateway: its prefix, and what a caller needs (empty auth: the
  // routes are public — only for a closed network).
  std::string api_prefix = "/api/v1/iot";
  std::vector<gateway::AuthMethod> api_auth;
  std::vector<std::string> api_groups;  // ACL: the consumer must be in one of these

  Status validate() const;
};

struct FleetDeps {
  storage::Database* db = nullptr;  // required: registry, alerts, rollouts, device CA
  // The time series' SQLite file, apart from `db` so readings never wait for other writes;
  // "" keeps the time series in `db`.
  std::string timeseries_path;
  broker::Broker* broker = nullptr;  // iot.* events; null: none are published
  const Clock* clock = nullptr;      // null: the system clock
  RandomSource* random = nullptr;    // null: a secure random source of the fleet's own
  MetricsRegistry* metrics = nullptr;
  Logger logger;
  std::string master_key;                  // 32 bytes; required when issue_certificates
  std::string source = "/civicbus/fleet";  // CloudEvents source of the fleet's events
  // How OTA commands reach a device; empty: MQTT (<prefix>/<id>/commands) when configured.
  std::function<Status(const std::string& device_id, const Json& command)> command_sender;
};

// ----- registry vocabulary ------------------------------------------------------------------
// (DeviceQuery, DeviceQueryResult, DeviceUpdate, Group: types.hpp)

// A device as provisioned: its certificate and private key are returned here once and never
// again (only the certificate is kept).
struct CIVICBUS_EXPORT ProvisionedDevice {
  std::shared_ptr<const Device> device;
  std::string certificate_pem;
  std::string private_key_pem;
  std::string ca_certificate_pem;
  std::vector<std::string> topics;  // the device's MQTT topics
  std::vector<std::string> rules;   // alert rules that apply to it (ids)

  Json to_json() const;
};

enum class ImportFormat { kAuto, kCsv, kJson };

struct ImportIssue {
  std::string where;  // "line 7" (CSV) or "item 7" (JSON)
  std::string field;
  std::string reason;
};

struct CIVICBUS_EXPORT ImportReport {
  std::vector<ProvisionedDevice> provisioned;
  std::vector<ImportIssue> errors;  // rows refused, in file order
  std::chrono::milliseconds elapsed{0};

  Json to_json() const;
  // The errors as CSV ("where,field,reason").
  std::string errors_csv() const;
};

struct IngestResult {
  std::size_t accepted = 0;
  std::vector<Rejection> rejected;
};

struct CIVICBUS_EXPORT SeriesResult {
  std::string tier;  // "raw", "5m", "1h", "1d"
  std::vector<SeriesPoint> points;
  Json to_json() const;
};

struct LatestReading {
  std::string metric;
  double value = 0;
  std::string unit;
  TimeMs time = 0;
};

struct AlertQuery {
  std::optional<AlertState> state;
  bool active_only = false;
  std::string device_id;
  std::optional<Severity> severity;
  std::string rule_id;
  std::size_t limit = 1000;
};

struct FleetStats {
  std::size_t devices = 0;
  std::uint64_t readings_accepted = 0;
  std::uint64_t readings_rejected = 0;
  std::size_t active_alerts = 0;
  std::uint64_t mqtt_messages = 0;
  std::int64_t edge_buffered = 0;
};

class CIVICBUS_EXPORT DeviceFleet {
 public:
  // Called when a rule with actions fires (an edge gateway opens a floodgate here).
  using ActionHandler =
      std::function<void(std::string_view output, std::string_view command, const Alert& alert)>;

  static Result<std::unique_ptr<DeviceFleet>> open(FleetOptions options, FleetDeps deps);
  // Stops the MQTT link, the edge uplink and the fleet's thread, then flushes the time
  // series and the alert state.
  ~DeviceFleet();
  DeviceFleet(const DeviceFleet&) = delete;
  DeviceFleet& operator=(const DeviceFleet&) = delete;

  // ----- types and devices --------------------------------------------------------------
  Status register_type(DeviceType type);
  std::vector<DeviceType> device_types() const;

  // Validates and stores the device, issues its certificate, installs its type's default
  // alert rules and starts inactivity tracking; publishes iot.device.provisioned.
  Result<ProvisionedDevice> provision(Device device, std::string_view actor);
  // A CSV or JSON list: good rows are provisioned (certificates made on two threads, one
  // transaction), bad rows reported by line with the reason. `progress(done, total)`.
  Result<ImportReport> import_devices(
      std::string_view text, ImportFormat format, std::string_view actor,
      const std::function<void(std::size_t done, std::size_t total)>& progress = {});

  std::shared_ptr<const Device> device(std::string_view id) const;  // null when unknown
  DeviceQueryResult devices(const DeviceQuery& query) const;
  Result<std::shared_ptr<const Device>> update_device(std::string_view id,
                                                      const DeviceUpdate& update,
                                                      std::string_view actor);
  // Publishes iot.device.status_changed. Decommissioning revokes the device's certificates
  // and stops its alerts and inactivity tracking.
  Result<std::shared_ptr<const Device>> set_status(std::string_view id, DeviceStatus status,
                                                   std::string_view actor, std::string_view reason);
  Result<std::vector<StatusChange>> history(std::string_view id) const;
  // Bulk decommission (by location, project, type…); returns the ids decommissioned.
  Result<std::vector<std::string>> decommission_where(const DeviceQuery& query,
                                                      std::string_view actor,
                                                      std::string_view reason);

  // ----- groups and configuration ---------------------------------------------------------
  Result<Group> create_group(Group group, std::string_view actor);
  Result<Group> group(std::string_view id) const;
  std::vector<Group> groups() const;
  Status delete_group(std::string_view id, std::string_view actor);
  Result<std::vector<std::string>> group_members(std::string_view id) const;
  // Device twin: merges `patch` into the desired state and sends the delta to the device
  // (MQTT <prefix>/<id>/twin/desired when connected).
  Result<Json> push_config(std::string_view device_id, const Json& patch, std::string_view actor);
  // The same for every member of a group; returns the ids updated.
  Result<std::vector<std::string>> push_group_config(std::string_view group_id, const Json& patch,
                                                     std::string_view actor);
  // What the device reports it runs; returns the remaining delta ({} when caught up).
  Result<Json> report_config(std::string_view device_id, const Json& reported);
  Result<Json> twin(std::string_view device_id) const;  // desired, reported, delta, versions

  // ----- ingestion and time series -----------------------------------------------------------
  // Validates each reading against its device's type (unknown device or metric, unit
  // mismatch, out of range, too far in the future → rejected with the reason and counted),
  // stores the rest, updates the rollups and evaluates the alert rules. Thread-safe.
  IngestResult ingest(std::span<const Reading> readings);
  // Device JSON, SenML, ChirpStack v4, The Things Stack v3 and Sigfox bodies (the HTTP
  // routes and the MQTT link use these).
  IngestResult ingest_device_json(std::string_view device_id, std::string_view body);
  IngestResult ingest_senml(std::string_view body, std::string_view device_id = {});
  IngestResult ingest_chirpstack(std::string_view body);
  IngestResult ingest_tts(std::string_view body);
  IngestResult ingest_sigfox(std::string_view body);

  // agg: "raw", "5m", "1h", "1d" or "auto"/"" (the finest tier with at most 1000 points).
  Result<SeriesResult> readings(std::string_view device_id, std::string_view metric, TimeMs from,
                                TimeMs to, std::string_view agg = {});
  std::vector<LatestReading> latest(std::string_view device_id) const;

  // ----- alerts ------------------------------------------------------------------------------
  // Rules in their JSON form (docs/fleet.md, "Rules").
  Result<Json> add_rule(const Json& rule);
  Result<Json> put_rule(const Json& rule);
  Status remove_rule(std::string_view rule_id);
  Json rules() const;
  Result<std::vector<Alert>> alerts(const AlertQuery& query = {}) const;
  Result<Alert> alert(std::string_view id) const;
  Result<Alert> acknowledge(std::string_view alert_id, std::string_view who,
                            std::string_view note = {});
  Result<Alert> resolve(std::string_view alert_id, std::string_view who,
                        std::string_view note = {});
  void on_action(ActionHandler handler);

  // ----- OTA rollouts ----------------------------------------------------------------------
  // The rollout's JSON form (docs/fleet.md, "Rollouts"); "group" names the devices.
  Result<Json> start_rollout(const Json& rollout, std::string_view actor);
  Result<Json> rollout(std::string_view id) const;  // progress and devices
  Json rollouts() const;
  Status abort_rollout(std::string_view id, std::string_view actor, std::string_view reason);
  // A device's answer to an OTA command ({"rollout": id, "success": bool, "version": …}).
  Status report_ota(std::string_view device_id, const Json& result);

  // ----- operations ----------------------------------------------------------------------------
  // Inactivity, rollout timeouts, batched state and (hourly) retention; the fleet's thread
  // calls it every tick_interval, tests call it after moving a ManualClock.
  Status tick();
  // Everything ingested so far is durable when it returns.
  Status flush();
  // Registers the HTTP API (api_prefix) on `gateway`.
  Status mount(gateway::Gateway& gateway);
  // The MQTT link connects in open(); this says whether it is connected now.
  bool mqtt_connected() const;
  const std::string& ca_certificate_pem() const;
  FleetStats stats() const;

  struct Impl;  // not API: src/fleet/fleet_impl.hpp

 private:
  explicit DeviceFleet(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace civicbus::fleet
