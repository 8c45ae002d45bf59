// The device fleet's vocabulary: device types (data, not code), devices, readings, alert
// rules and alerts. Every part of the fleet (registry, ingestion, time series, alerts,
// rollouts, edge store) speaks these types; DeviceFleet (fleet.hpp) is the façade over them.
//
// Times are milliseconds since the Unix epoch (UTC) in an int64: readings arrive by the
// hundred thousand a second, and a plain integer is what the time series and the rule engine
// compare and bucket.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus::fleet {

using TimeMs = std::int64_t;  // milliseconds since 1970-01-01T00:00:00Z

// ----- geography -------------------------------------------------------------------------

struct GeoPoint {
  double lat = 0;  // degrees, -90..90
  double lon = 0;  // degrees, -180..180
};

struct BoundingBox {
  double min_lat = 0, min_lon = 0, max_lat = 0, max_lon = 0;
  bool contains(const GeoPoint& p) const {
    return p.lat >= min_lat && p.lat <= max_lat && p.lon >= min_lon && p.lon <= max_lon;
  }
};

// Great-circle distance in metres (haversine, mean Earth radius 6,371,008.8 m).
CIVICBUS_EXPORT double distance_m(const GeoPoint& a, const GeoPoint& b);

// ----- device types ----------------------------------------------------------------------

struct MetricSpec {
  std::string name;  // "flow_rate", "pm2_5", "water_level"
  std::string unit;  // UCUM-style: "L/min", "ug/m3", "m", "kPa", "Cel", "%", "1"
  std::string description;
  // Plausible range: a reading outside it is rejected as out of range (not stored).
  std::optional<double> min;
  std::optional<double> max;
};

enum class Network { kMqtt, kLorawan, kSigfox, kHttp };
CIVICBUS_EXPORT std::string_view network_name(Network n);  // "mqtt", "lorawan", "sigfox", "http"
CIVICBUS_EXPORT Result<Network> parse_network(std::string_view text);

// A device type is data: the built-in catalogue is data/fleet/device_types.json, and a node
// may register its own types (YAML or API) without code.
struct CIVICBUS_EXPORT DeviceType {
  std::string name;  // "water_meter", "pressure_sensor", "air_quality", …
  std::string description;
  std::vector<MetricSpec> metrics;
  std::int64_t expected_interval_s = 900;  // how often a healthy device reports
  Network default_network = Network::kMqtt;
  // Payload codec for binary uplinks (LoRaWAN, Sigfox), by name (see payload codecs); "" when
  // the type sends JSON or SenML.
  std::string codec;
  // Alert rules created for every device of this type at provisioning (JSON, the AlertRule
  // form; see alerts). Water meters: leak and inactivity.
  std::vector<Json> default_rules;

  const MetricSpec* metric(std::string_view metric_name) const;
};

// One type from its JSON form (the fields above; unknown fields are refused), as in
// data/fleet/device_types.json. `where` prefixes error messages ("device type #3
// 'flood_gauge'").
CIVICBUS_EXPORT Result<DeviceType> parse_device_type(const Json& j,
                                                     std::string_view where = "device type");
CIVICBUS_EXPORT Json device_type_to_json(const DeviceType& type);

// ----- devices ---------------------------------------------------------------------------

enum class DeviceStatus { kProvisioned, kActive, kMaintenance, kDecommissioned };
CIVICBUS_EXPORT std::string_view status_name(
    DeviceStatus s);  // "provisioned", "active", "maintenance", …
CIVICBUS_EXPORT Result<DeviceStatus> parse_status(std::string_view text);
// Provisioned → Active; Active ⇄ Maintenance; any but Decommissioned → Decommissioned.
CIVICBUS_EXPORT bool transition_allowed(DeviceStatus from, DeviceStatus to);

struct CIVICBUS_EXPORT Device {
  std::string id;  // stable id ("wm-000123"); the serial when none is given
  std::string serial;
  std::string type;  // DeviceType::name
  std::string model;
  std::string firmware_version;
  std::string install_date;  // YYYY-MM-DD, "" when unknown
  std::optional<GeoPoint> location;
  std::string asset_id;
  std::string department;
  std::string project;
  Network network = Network::kMqtt;
  std::map<std::string, std::string> tags;
  DeviceStatus status = DeviceStatus::kProvisioned;
  std::string certificate_serial;  // hex, "" when the device has no certificate
  TimeMs created_at = 0;
  TimeMs updated_at = 0;
  // Device twin: what operators asked for, and what the device last said it runs.
  Json desired = Json::object();
  Json reported = Json::object();
  std::int64_t desired_version = 0;
  std::int64_t reported_version = 0;

  Json to_json() const;
  static Result<Device> from_json(const Json& j);
};

// One recorded change of status: who, when, why.
struct StatusChange {
  std::string device_id;
  DeviceStatus from = DeviceStatus::kProvisioned;
  DeviceStatus to = DeviceStatus::kProvisioned;
  std::string actor;
  std::string reason;
  TimeMs at = 0;
};

// ----- registry queries and groups ------------------------------------------------------

struct GeoCircle {
  GeoPoint center;
  double radius_m = 0;
};

// A filter over devices. Every set field must match; tags must all be present with these
// values. Results are sorted by id; `offset` and `limit` (0: no limit) page through them.
struct CIVICBUS_EXPORT DeviceQuery {
  std::optional<std::string> type;
  std::optional<DeviceStatus> status;
  std::optional<std::string> department;
  std::optional<Network> network;
  std::optional<std::string> project;
  std::map<std::string, std::string> tags;
  std::optional<BoundingBox> bbox;  // devices without a location never match
  std::optional<GeoCircle> circle;  // idem
  std::size_t limit = 0;
  std::size_t offset = 0;

  // The attribute filters (limit and offset are paging, not part of the match).
  bool matches(const Device& d) const;
  // {"type":…, "status":…, "department":…, "network":…, "project":…, "tags":{…},
  //  "bbox":{"min_lat","min_lon","max_lat","max_lon"}, "circle":{"lat","lon","radius_m"},
  //  "limit":n, "offset":n}; absent fields are not filters.
  Json to_json() const;
  static Result<DeviceQuery> from_json(const Json& j);
};

struct DeviceQueryResult {
  std::vector<std::shared_ptr<const Device>> devices;  // the page, sorted by id
  std::size_t total = 0;                               // all matches, before paging
};

// Metadata a caller may change after provisioning (unset fields stay as they are).
struct CIVICBUS_EXPORT DeviceUpdate {
  std::optional<std::string> model;
  std::optional<std::string> firmware_version;
  std::optional<std::string> install_date;
  std::optional<std::optional<GeoPoint>> location;  // set to nullopt inside to clear it
  std::optional<std::string> asset_id;
  std::optional<std::string> department;
  std::optional<std::string> project;
  std::optional<Network> network;
  std::optional<std::string> certificate_serial;
  std::optional<std::map<std::string, std::string>> tags;  // replaces all tags
  std::map<std::string, std::string> set_tags;             // then adds or overwrites these
  std::vector<std::string> remove_tags;                    // then removes these keys

  // From a JSON object of the Device fields above (and "set_tags", "remove_tags"); other
  // fields are refused, naming them.
  static Result<DeviceUpdate> from_json(const Json& j);
};

enum class GroupKind { kStatic, kQuery };
CIVICBUS_EXPORT std::string_view group_kind_name(GroupKind k);  // "static", "query"

struct CIVICBUS_EXPORT Group {
  std::string id;  // derived from the name when empty ("North meters" → "north-meters")
  std::string name;
  GroupKind kind = GroupKind::kStatic;
  std::vector<std::string> members;  // static groups: device ids, sorted
  DeviceQuery query;                 // query groups (limit/offset ignored)
  std::string created_by;
  TimeMs created_at = 0;
  TimeMs updated_at = 0;

  Json to_json() const;
  static Result<Group> from_json(const Json& j);
};

// ----- readings --------------------------------------------------------------------------

struct Reading {
  std::string device_id;
  std::string metric;
  double value = 0;
  std::string unit;  // "" means the type's unit
  TimeMs time = 0;
};

// Why a reading was refused (counted per reason in metrics).
enum class RejectReason {
  kUnknownDevice,
  kDeviceNotReporting,  // decommissioned
  kUnknownMetric,
  kUnitMismatch,
  kOutOfRange,
  kFutureTimestamp,
  kMalformed,
};
CIVICBUS_EXPORT std::string_view reject_reason_name(RejectReason r);  // "unknown_metric", …

struct Rejection {
  Reading reading;
  RejectReason reason = RejectReason::kMalformed;
  std::string message;  // names the device, metric and what is wrong
};

// One point of a query. Raw readings have count 1 and every value equal to the reading.
struct SeriesPoint {
  TimeMs time = 0;  // reading time, or bucket start
  std::int64_t count = 0;
  double sum = 0, min = 0, max = 0, avg = 0;
  double first = 0;
  TimeMs first_time = 0;
  double last = 0;
  TimeMs last_time = 0;
};

// ----- alerts ----------------------------------------------------------------------------

enum class Severity { kWarning, kCritical };
CIVICBUS_EXPORT std::string_view severity_name(Severity s);  // "warning", "critical"

enum class AlertState { kRaised, kAcknowledged, kResolved };
CIVICBUS_EXPORT std::string_view alert_state_name(
    AlertState s);  // "raised", "acknowledged", "resolved"

struct CIVICBUS_EXPORT Alert {
  std::string id;                    // UUIDv7
  std::string rule_id;               // the rule that raised it
  std::string device_id;             // "" for a composite alert over several devices
  std::vector<std::string> devices;  // every device involved
  std::string metric;
  Severity severity = Severity::kWarning;
  AlertState state = AlertState::kRaised;
  std::string message;
  double value = 0;  // the reading that raised (or last escalated) it
  std::optional<GeoPoint> location;
  TimeMs raised_at = 0;
  TimeMs updated_at = 0;
  std::string acknowledged_by;
  TimeMs acknowledged_at = 0;
  std::string acknowledge_note;  // what the person acknowledging wrote ("crew dispatched")
  std::string resolved_by;       // "system" when the condition cleared
  TimeMs resolved_at = 0;
  std::string resolve_note;

  Json to_json() const;
};

}  // namespace civicbus::fleet
