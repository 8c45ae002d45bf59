#include "fleet/alert_rules.hpp"

#include <fmt/format.h>

#include <array>
#include <cmath>

namespace civicbus::fleet {

namespace {

constexpr std::array<std::string_view, 5> kKinds{"threshold", "rate_of_change", "inactivity",
                                                 "geofence", "composite"};
constexpr std::array<std::string_view, 5> kDirections{"above", "below", "rise", "fall", "either"};
constexpr std::array<std::string_view, 3> kActionOn{"raised", "critical", "resolved"};

// Reads the fields of one rule, prefixing every error with the rule's identity.
class FieldReader {
 public:
  FieldReader(const Json& j, std::string who) : j_(j), who_(std::move(who)) {}

  Status error(std::string_view field, std::string_view what) const {
    return invalid_argument(fmt::format("alert rule {}: field '{}' {}", who_, field, what));
  }

  Status text(std::string_view key, std::string& out, bool required) const {
    const Json* v = j_.find(key);
    if (v == nullptr || v->is_null()) {
      return required ? error(key, "is required") : Status();
    }
    if (!v->is_string()) return error(key, "must be a string");
    out = v->as_string();
    if (required && out.empty()) return error(key, "must not be empty");
    return Status();
  }

  Status number(std::string_view key, std::optional<double>& out) const {
    const Json* v = j_.find(key);
    if (v == nullptr || v->is_null()) return Status();
    if (!v->is_number() || !std::isfinite(v->as_double())) {
      return error(key, "must be a finite number");
    }
    out = v->as_double();
    return Status();
  }

  Status seconds(std::string_view key, std::int64_t& out, bool required) const {
    std::optional<double> v;
    CIVICBUS_RETURN_IF_ERROR(number(key, v));
    if (!v) return required ? error(key, "is required (seconds)") : Status();
    if (*v < 0 || *v != std::floor(*v)) return error(key, "must be a whole number of seconds >= 0");
    out = static_cast<std::int64_t>(*v);
    return Status();
  }

  template <std::size_t N>
  Status choice(std::string_view key, const std::array<std::string_view, N>& names,
                std::size_t first, std::size_t last, std::size_t& out, bool required) const {
    std::string s;
    CIVICBUS_RETURN_IF_ERROR(text(key, s, required));
    if (s.empty()) return Status();
    std::string expected;
    for (std::size_t i = first; i <= last; ++i) {
      if (names[i] == s) {
        out = i;
        return Status();
      }
      expected += fmt::format("{}'{}'", expected.empty() ? "" : ", ", names[i]);
    }
    return error(key, fmt::format("is '{}' (expected one of {})", s, expected));
  }

  Status severity(Severity& out) const {
    std::string s;
    CIVICBUS_RETURN_IF_ERROR(text("severity", s, false));
    if (s.empty()) return Status();
    if (s == "warning") {
      out = Severity::kWarning;
    } else if (s == "critical") {
      out = Severity::kCritical;
    } else {
      return error("severity", fmt::format("is '{}' (expected 'warning' or 'critical')", s));
    }
    return Status();
  }

 private:
  const Json& j_;
  std::string who_;
};

Status parse_levels(const FieldReader& r, AlertRule& rule) {
  CIVICBUS_RETURN_IF_ERROR(r.number("warning", rule.warning));
  CIVICBUS_RETURN_IF_ERROR(r.number("critical", rule.critical));
  if (!rule.warning && !rule.critical) {
    return r.error("warning", "or 'critical' is required (at least one level)");
  }
  std::optional<double> clear;
  CIVICBUS_RETURN_IF_ERROR(r.number("clear", clear));
  // "Lower" means the level reached first as the value worsens.
  const bool below = rule.direction == RuleDirection::kBelow;
  auto worse = [&](double a, double b) { return below ? a < b : a > b; };
  if (rule.warning && rule.critical && worse(*rule.warning, *rule.critical)) {
    return r.error("critical", fmt::format("({}) must be {} than warning ({})", *rule.critical,
                                           below ? "lower" : "higher", *rule.warning));
  }
  const double first = rule.warning ? *rule.warning : *rule.critical;
  rule.clear = clear ? *clear : first;
  if (worse(rule.clear, first)) {
    return r.error("clear", fmt::format("({}) must be {} {} than the raise level ({})", rule.clear,
                                        "at or", below ? "above" : "below", first));
  }
  if (rule.kind == RuleKind::kRateOfChange && rule.clear < 0) {
    return r.error("clear", "must be >= 0 (a rate magnitude)");
  }
  return Status();
}

Status parse_area(const FieldReader& r, const Json* a, GeoArea& area) {
  if (a == nullptr || !a->is_object()) {
    return r.error("area",
                   "is required: {\"bbox\":[min_lat,min_lon,max_lat,max_lon]} or "
                   "{\"center\":{\"lat\":..,\"lon\":..},\"radius_m\":..}");
  }
  if (const Json* b = a->find("bbox"); b != nullptr) {
    if (!b->is_array() || b->size() != 4) {
      return r.error("area.bbox", "must be [min_lat, min_lon, max_lat, max_lon]");
    }
    std::array<double, 4> v{};
    for (std::size_t i = 0; i < 4; ++i) {
      if (!b->as_array()[i].is_number()) return r.error("area.bbox", "must hold 4 numbers");
      v[i] = b->as_array()[i].as_double();
    }
    if (v[0] > v[2] || v[1] > v[3]) {
      return r.error("area.bbox", "has min above max (order: min_lat, min_lon, max_lat, max_lon)");
    }
    area.bbox = BoundingBox{v[0], v[1], v[2], v[3]};
    return Status();
  }
  const Json* c = a->find("center");
  const Json* lat = c != nullptr ? c->find("lat") : nullptr;
  const Json* lon = c != nullptr ? c->find("lon") : nullptr;
  if (lat == nullptr || lon == nullptr || !lat->is_number() || !lon->is_number()) {
    return r.error("area", "needs \"bbox\" or \"center\":{\"lat\":..,\"lon\":..}");
  }
  area.center = GeoPoint{lat->as_double(), lon->as_double()};
  const Json* radius = a->find("radius_m");
  if (radius == nullptr || !radius->is_number() || radius->as_double() <= 0) {
    return r.error("area.radius_m", "must be a number > 0 with \"center\"");
  }
  area.radius_m = radius->as_double();
  return Status();
}

}  // namespace

std::string_view rule_kind_name(RuleKind k) {
  return kKinds[static_cast<std::size_t>(k)];
}
std::string_view rule_direction_name(RuleDirection d) {
  return kDirections[static_cast<std::size_t>(d)];
}

bool GeoArea::contains(const GeoPoint& p) const {
  if (bbox) return bbox->contains(p);
  return distance_m(center, p) <= radius_m;
}

Result<AlertRule> AlertRule::from_json(const Json& j, std::string_view default_type) {
  if (!j.is_object()) return invalid_argument("an alert rule must be a JSON object");
  AlertRule rule;
  {
    FieldReader pre(j, "(unnamed)");
    CIVICBUS_RETURN_IF_ERROR(pre.text("id", rule.id, false));
    CIVICBUS_RETURN_IF_ERROR(pre.text("name", rule.name, false));
  }
  std::string who = !rule.id.empty()     ? fmt::format("'{}'", rule.id)
                    : !rule.name.empty() ? fmt::format("'{}'", rule.name)
                                         : std::string("(unnamed)");
  FieldReader r(j, who);

  std::size_t kind = 0;
  CIVICBUS_RETURN_IF_ERROR(r.choice("kind", kKinds, 0, kKinds.size() - 1, kind, true));
  rule.kind = static_cast<RuleKind>(kind);

  if (rule.kind != RuleKind::kComposite) {
    const Json* scope = j.find("scope");
    if (scope == nullptr || scope->is_null()) {
      if (default_type.empty()) {
        return r.error("scope", "is required: {\"type\":..} | {\"group\":..} | {\"device\":..}");
      }
      rule.scope.type = std::string(default_type);
    } else {
      if (!scope->is_object()) return r.error("scope", "must be an object");
      FieldReader s(*scope, who);
      CIVICBUS_RETURN_IF_ERROR(s.text("type", rule.scope.type, false));
      CIVICBUS_RETURN_IF_ERROR(s.text("group", rule.scope.group, false));
      CIVICBUS_RETURN_IF_ERROR(s.text("device", rule.scope.device, false));
      const int n =
          !rule.scope.type.empty() + !rule.scope.group.empty() + !rule.scope.device.empty();
      if (n != 1) {
        return r.error("scope", "must name exactly one of \"type\", \"group\", \"device\"");
      }
    }
  }

  switch (rule.kind) {
    case RuleKind::kThreshold: {
      CIVICBUS_RETURN_IF_ERROR(r.text("metric", rule.metric, true));
      std::size_t d = 0;
      CIVICBUS_RETURN_IF_ERROR(r.choice("direction", kDirections, 0, 1, d, false));
      rule.direction = static_cast<RuleDirection>(d);
      CIVICBUS_RETURN_IF_ERROR(r.seconds("for_s", rule.for_s, false));
      CIVICBUS_RETURN_IF_ERROR(parse_levels(r, rule));
      break;
    }
    case RuleKind::kRateOfChange: {
      CIVICBUS_RETURN_IF_ERROR(r.text("metric", rule.metric, true));
      std::size_t d = 2;
      CIVICBUS_RETURN_IF_ERROR(r.choice("direction", kDirections, 2, 4, d, false));
      rule.direction = static_cast<RuleDirection>(d);
      CIVICBUS_RETURN_IF_ERROR(r.seconds("window_s", rule.window_s, true));
      if (rule.window_s == 0) return r.error("window_s", "must be > 0");
      CIVICBUS_RETURN_IF_ERROR(parse_levels(r, rule));
      if ((rule.warning && *rule.warning <= 0) || (rule.critical && *rule.critical <= 0)) {
        return r.error("warning", "and 'critical' must be > 0 (a change magnitude)");
      }
      break;
    }
    case RuleKind::kInactivity: {
      rule.metric = "*";
      CIVICBUS_RETURN_IF_ERROR(r.text("metric", rule.metric, false));
      if (rule.metric.empty()) rule.metric = "*";
      std::optional<double> factor;
      CIVICBUS_RETURN_IF_ERROR(r.number("factor", factor));
      CIVICBUS_RETURN_IF_ERROR(r.seconds("after_s", rule.after_s, false));
      if (factor && rule.after_s > 0) return r.error("factor", "and 'after_s' are exclusive");
      if (factor) {
        if (*factor <= 0) return r.error("factor", "must be > 0");
        rule.factor = *factor;
      } else if (rule.after_s == 0) {
        return r.error("factor", "or 'after_s' (> 0) is required");
      }
      CIVICBUS_RETURN_IF_ERROR(r.severity(rule.severity));
      break;
    }
    case RuleKind::kGeofence: {
      CIVICBUS_RETURN_IF_ERROR(parse_area(r, j.find("area"), rule.area));
      std::string mode = "exit";
      CIVICBUS_RETURN_IF_ERROR(r.text("mode", mode, false));
      if (mode != "exit" && mode != "enter") {
        return r.error("mode", fmt::format("is '{}' (expected 'exit' or 'enter')", mode));
      }
      rule.alert_on_enter = mode == "enter";
      rule.severity = Severity::kCritical;
      CIVICBUS_RETURN_IF_ERROR(r.severity(rule.severity));
      break;
    }
    case RuleKind::kComposite: {
      rule.severity = Severity::kCritical;
      CIVICBUS_RETURN_IF_ERROR(r.severity(rule.severity));
      CIVICBUS_RETURN_IF_ERROR(r.seconds("within_s", rule.within_s, true));
      std::optional<double> dist;
      CIVICBUS_RETURN_IF_ERROR(r.number("distance_m", dist));
      if (!dist || *dist <= 0) return r.error("distance_m", "is required (metres, > 0)");
      rule.distance_m = *dist;
      const Json* conds = j.find("conditions");
      if (conds == nullptr || !conds->is_array() || conds->size() == 0) {
        return r.error("conditions",
                       "must be a non-empty array of {\"rule\":id,\"min_devices\":n}");
      }
      for (std::size_t i = 0; i < conds->size(); ++i) {
        const Json& c = conds->as_array()[i];
        const std::string field = fmt::format("conditions[{}]", i);
        const Json* id = c.find("rule");
        if (id == nullptr || !id->is_string() || id->as_string().empty()) {
          return r.error(field + ".rule", "must be a rule id");
        }
        CompositeCondition cc{id->as_string(), 1};
        if (const Json* m = c.find("min_devices"); m != nullptr) {
          if (!m->is_integral() || m->as_double() < 1) {
            return r.error(field + ".min_devices", "must be an integer >= 1");
          }
          cc.min_devices = static_cast<int>(m->as_double());
        }
        rule.conditions.push_back(std::move(cc));
      }
      break;
    }
  }

  if (const Json* acts = j.find("actions"); acts != nullptr && !acts->is_null()) {
    if (!acts->is_array()) return r.error("actions", "must be an array");
    for (std::size_t i = 0; i < acts->size(); ++i) {
      const Json& a = acts->as_array()[i];
      const std::string field = fmt::format("actions[{}]", i);
      if (!a.is_object()) return r.error(field, "must be an object");
      FieldReader ar(a, who);
      RuleAction action;
      Status st = ar.text("output", action.output, true);
      if (!st.ok()) return r.error(field + ".output", "is required (a string)");
      st = ar.text("command", action.command, true);
      if (!st.ok()) return r.error(field + ".command", "is required (a string)");
      std::size_t on = 0;
      st = ar.choice("on", kActionOn, 0, kActionOn.size() - 1, on, false);
      if (!st.ok()) {
        return r.error(field + ".on", "must be 'raised', 'critical' or 'resolved'");
      }
      action.on = static_cast<RuleAction::On>(on);
      rule.actions.push_back(std::move(action));
    }
  }
  return rule;
}

Json AlertRule::to_json() const {
  Json j = Json::object();
  if (!id.empty()) j["id"] = id;
  if (!name.empty()) j["name"] = name;
  j["kind"] = std::string(rule_kind_name(kind));
  if (kind != RuleKind::kComposite) {
    Json s = Json::object();
    if (!scope.type.empty()) s["type"] = scope.type;
    if (!scope.group.empty()) s["group"] = scope.group;
    if (!scope.device.empty()) s["device"] = scope.device;
    j["scope"] = std::move(s);
  }
  switch (kind) {
    case RuleKind::kThreshold:
    case RuleKind::kRateOfChange:
      j["metric"] = metric;
      j["direction"] = std::string(rule_direction_name(direction));
      if (kind == RuleKind::kRateOfChange) j["window_s"] = window_s;
      if (warning) j["warning"] = *warning;
      if (critical) j["critical"] = *critical;
      j["clear"] = clear;
      if (kind == RuleKind::kThreshold && for_s > 0) j["for_s"] = for_s;
      break;
    case RuleKind::kInactivity:
      j["metric"] = metric;
      if (after_s > 0) {
        j["after_s"] = after_s;
      } else {
        j["factor"] = factor;
      }
      j["severity"] = std::string(severity_name(severity));
      break;
    case RuleKind::kGeofence: {
      Json a = Json::object();
      if (area.bbox) {
        a["bbox"] = Json::array(
            {area.bbox->min_lat, area.bbox->min_lon, area.bbox->max_lat, area.bbox->max_lon});
      } else {
        a["center"] = Json::object({{"lat", area.center.lat}, {"lon", area.center.lon}});
        a["radius_m"] = area.radius_m;
      }
      j["area"] = std::move(a);
      j["mode"] = alert_on_enter ? "enter" : "exit";
      j["severity"] = std::string(severity_name(severity));
      break;
    }
    case RuleKind::kComposite: {
      j["severity"] = std::string(severity_name(severity));
      j["within_s"] = within_s;
      j["distance_m"] = distance_m;
      Json cs = Json::array();
      for (const auto& c : conditions) {
        cs.push_back(Json::object({{"rule", c.rule}, {"min_devices", c.min_devices}}));
      }
      j["conditions"] = std::move(cs);
      break;
    }
  }
  if (!actions.empty()) {
    Json as = Json::array();
    for (const auto& a : actions) {
      as.push_back(Json::object({{"output", a.output},
                                 {"command", a.command},
                                 {"on", std::string(kActionOn[static_cast<std::size_t>(a.on)])}}));
    }
    j["actions"] = std::move(as);
  }
  return j;
}

}  // namespace civicbus::fleet
