// AlertRule: one alert rule of the fleet, parsed from (and written back to) its JSON form, the
// form device types use for their default_rules (data/fleet/device_types.json) and the API
// accepts. Parsing only; the AlertEngine (alerts.hpp) evaluates rules.
//
//   threshold       {"kind":"threshold","metric":"pm2_5","direction":"above"|"below",
//                    "warning":35,"critical":55,"clear":30,"for_s":0}
//   rate_of_change  {"kind":"rate_of_change","metric":"water_level","window_s":600,
//                    "direction":"rise"|"fall"|"either","warning":0.3,"critical":0.6,"clear":0.1}
//   inactivity      {"kind":"inactivity","metric":"*"|name,"factor":3 | "after_s":N,
//                    "severity":"warning"}
//   geofence        {"kind":"geofence","area":{"bbox":[min_lat,min_lon,max_lat,max_lon]} |
//                    {"center":{"lat":..,"lon":..},"radius_m":..},"mode":"exit"|"enter",
//                    "severity":"critical"}
//   composite       {"kind":"composite","severity":"critical","within_s":900,"distance_m":500,
//                    "conditions":[{"rule":"<rule id>","min_devices":2}, …]}
//
// Every rule also has "id" (optional: the engine generates one), "name", "scope"
// ({"type":t} | {"group":g} | {"device":d}; not used by composite rules), and optional
// "actions": [{"output":"floodgate-3","command":"close","on":"raised"|"critical"|"resolved"}]
// ("on" defaults to "raised": any raise, warning or critical; "critical" runs when the alert
// reaches critical, at raise or on escalation; "resolved" when it resolves).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/fleet/types.hpp"

namespace civicbus::fleet {

enum class RuleKind { kThreshold, kRateOfChange, kInactivity, kGeofence, kComposite };
std::string_view rule_kind_name(RuleKind k);  // "threshold", "rate_of_change", …

// above/below for thresholds; rise/fall/either for rates of change.
enum class RuleDirection { kAbove, kBelow, kRise, kFall, kEither };
std::string_view rule_direction_name(RuleDirection d);

// Which devices a rule applies to: exactly one of the three is set (none for composite).
struct RuleScope {
  std::string type;
  std::string group;
  std::string device;
  bool empty() const { return type.empty() && group.empty() && device.empty(); }
};

struct RuleAction {
  enum class On { kRaised, kCritical, kResolved };
  std::string output;   // "floodgate-3"
  std::string command;  // "close"
  On on = On::kRaised;
};

struct GeoArea {
  std::optional<BoundingBox> bbox;  // either a box …
  GeoPoint center;                  // … or a circle
  double radius_m = 0;
  bool contains(const GeoPoint& p) const;
};

struct CompositeCondition {
  std::string rule;  // id of a device-level rule
  int min_devices = 1;
};

struct AlertRule {
  std::string id;
  std::string name;
  RuleScope scope;
  RuleKind kind = RuleKind::kThreshold;
  std::string metric;  // threshold, rate, inactivity ("*" = any metric); "" for the others

  // threshold / rate_of_change. At least one of warning and critical is set; `clear` is
  // always set after parsing (defaults to the lower raise level: warning, else critical).
  RuleDirection direction = RuleDirection::kAbove;
  std::optional<double> warning;
  std::optional<double> critical;
  double clear = 0;
  std::int64_t for_s = 0;     // threshold: the condition must hold this long before raising
  std::int64_t window_s = 0;  // rate_of_change

  // inactivity: silent for after_s seconds, or for factor × the device's expected interval.
  double factor = 0;
  std::int64_t after_s = 0;

  // inactivity, geofence, composite (threshold and rate derive it from the level).
  Severity severity = Severity::kWarning;

  // geofence
  GeoArea area;
  bool alert_on_enter = false;  // mode "enter"; "exit" (default) alerts while outside

  // composite
  std::int64_t within_s = 0;
  double distance_m = 0;
  std::vector<CompositeCondition> conditions;

  std::vector<RuleAction> actions;

  // Parses the JSON form. Errors name the rule (id or name) and the field. When the rule has
  // no "scope" and `default_type` is not empty, the rule applies to that device type (how a
  // type's default_rules are read).
  static Result<AlertRule> from_json(const Json& j, std::string_view default_type = {});
  Json to_json() const;
};

}  // namespace civicbus::fleet
