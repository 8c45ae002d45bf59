#include "fleet/device_types.hpp"

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <mutex>
#include <set>

namespace civicbus::fleet {

namespace {

std::string type_label(std::string_view where, std::string_view name) {
  if (name.empty()) return std::string(where);
  return fmt::format("{} '{}'", where, name);
}

Status check_fields(const Json& j, std::initializer_list<std::string_view> known,
                    std::string_view label) {
  for (const auto& [key, value] : j.as_object()) {
    bool found = false;
    for (auto k : known) found = found || k == key;
    if (!found) {
      std::string choices;
      for (auto k : known) choices += fmt::format("{}{}", choices.empty() ? "" : ", ", k);
      return invalid_argument(
          fmt::format("{}: unknown field '{}' (expected {})", label, key, choices));
    }
  }
  return Status();
}

Result<std::string> string_field(const Json& j, std::string_view key, std::string_view label,
                                 bool required) {
  const Json* v = j.find(key);
  if (v == nullptr || v->is_null()) {
    if (required) return invalid_argument(fmt::format("{}: missing field '{}'", label, key));
    return std::string();
  }
  if (!v->is_string()) {
    return invalid_argument(fmt::format("{}: field '{}' must be a string", label, key));
  }
  return v->as_string();
}

Result<std::optional<double>> number_field(const Json& j, std::string_view key,
                                           std::string_view label) {
  const Json* v = j.find(key);
  if (v == nullptr || v->is_null()) return std::optional<double>();
  if (!v->is_number() || !std::isfinite(v->as_double())) {
    return invalid_argument(fmt::format("{}: field '{}' must be a finite number", label, key));
  }
  return std::optional<double>(v->as_double());
}

Result<MetricSpec> parse_metric(const Json& j, std::string_view label) {
  if (!j.is_object()) return invalid_argument(fmt::format("{} must be a JSON object", label));
  MetricSpec m;
  CIVICBUS_ASSIGN_OR_RETURN(m.name, string_field(j, "name", label, true));
  const std::string named =
      m.name.empty() ? std::string(label) : fmt::format("{} '{}'", label, m.name);
  CIVICBUS_RETURN_IF_ERROR(check_fields(j, {"name", "unit", "description", "min", "max"}, named));
  CIVICBUS_ASSIGN_OR_RETURN(m.unit, string_field(j, "unit", named, true));
  CIVICBUS_ASSIGN_OR_RETURN(m.description, string_field(j, "description", named, false));
  CIVICBUS_ASSIGN_OR_RETURN(m.min, number_field(j, "min", named));
  CIVICBUS_ASSIGN_OR_RETURN(m.max, number_field(j, "max", named));
  return m;
}

}  // namespace

namespace {

Status validate_labelled(const DeviceType& type, const std::string& label) {
  if (type.name.empty()) return invalid_argument(label + ": the name is empty");
  for (char c : type.name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return invalid_argument(
          fmt::format("{}: the name may hold only letters, digits, '_', '-' and '.'", label));
    }
  }
  if (type.metrics.empty()) return invalid_argument(fmt::format("{}: has no metrics", label));
  if (type.expected_interval_s <= 0) {
    return invalid_argument(fmt::format("{}: expected_interval_s must be positive, not {}", label,
                                        type.expected_interval_s));
  }
  std::set<std::string_view> seen;
  for (const MetricSpec& m : type.metrics) {
    if (m.name.empty()) return invalid_argument(fmt::format("{}: a metric has no name", label));
    if (!seen.insert(m.name).second) {
      return invalid_argument(fmt::format("{}: metric '{}' is listed twice", label, m.name));
    }
    if (m.unit.empty()) {
      return invalid_argument(fmt::format("{}: metric '{}' has no unit", label, m.name));
    }
    if (m.min && m.max && *m.min > *m.max) {
      return invalid_argument(fmt::format("{}: metric '{}' has min {} greater than max {}", label,
                                          m.name, *m.min, *m.max));
    }
  }
  std::set<std::string> rule_names;
  for (std::size_t i = 0; i < type.default_rules.size(); ++i) {
    const Json& r = type.default_rules[i];
    const std::string rlabel = fmt::format("{}: default rule #{}", label, i);
    if (!r.is_object()) return invalid_argument(rlabel + " must be a JSON object");
    const Json* name = r.find("name");
    const Json* kind = r.find("kind");
    if (name == nullptr || !name->is_string() || name->as_string().empty()) {
      return invalid_argument(rlabel + " has no \"name\"");
    }
    if (!rule_names.insert(name->as_string()).second) {
      return invalid_argument(
          fmt::format("{} ('{}'): the name is used twice", rlabel, name->as_string()));
    }
    if (kind == nullptr || !kind->is_string() || kind->as_string().empty()) {
      return invalid_argument(fmt::format("{} ('{}') has no \"kind\"", rlabel, name->as_string()));
    }
    if (const Json* metric = r.find("metric"); metric != nullptr) {
      if (!metric->is_string()) {
        return invalid_argument(
            fmt::format("{} ('{}'): \"metric\" must be a string", rlabel, name->as_string()));
      }
      if (metric->as_string() != "*" && type.metric(metric->as_string()) == nullptr) {
        return invalid_argument(fmt::format("{} ('{}'): metric '{}' is not a metric of the type",
                                            rlabel, name->as_string(), metric->as_string()));
      }
    }
  }
  return Status();
}

}  // namespace

Status validate_device_type(const DeviceType& type) {
  return validate_labelled(type, type.name.empty() ? std::string("device type")
                                                   : fmt::format("device type '{}'", type.name));
}

Result<DeviceType> parse_device_type(const Json& j, std::string_view where) {
  if (!j.is_object()) return invalid_argument(fmt::format("{} must be a JSON object", where));
  DeviceType t;
  CIVICBUS_ASSIGN_OR_RETURN(t.name, string_field(j, "name", where, true));
  const std::string label = type_label(where, t.name);
  CIVICBUS_RETURN_IF_ERROR(check_fields(j,
                                        {"name", "description", "metrics", "expected_interval_s",
                                         "default_network", "codec", "default_rules"},
                                        label));
  CIVICBUS_ASSIGN_OR_RETURN(t.description, string_field(j, "description", label, false));
  CIVICBUS_ASSIGN_OR_RETURN(t.codec, string_field(j, "codec", label, false));
  if (const Json* v = j.find("expected_interval_s"); v != nullptr && !v->is_null()) {
    if (!v->is_integral()) {
      return invalid_argument(
          fmt::format("{}: field 'expected_interval_s' must be a whole number of seconds", label));
    }
    t.expected_interval_s = static_cast<std::int64_t>(v->as_double());
  }
  CIVICBUS_ASSIGN_OR_RETURN(std::string network, string_field(j, "default_network", label, false));
  if (!network.empty()) {
    auto n = parse_network(network);
    if (!n.ok()) return n.status().with_context(label + ": field 'default_network'");
    t.default_network = *n;
  }
  const Json* metrics = j.find("metrics");
  if (metrics == nullptr || !metrics->is_array()) {
    return invalid_argument(fmt::format("{}: field 'metrics' must be an array", label));
  }
  for (std::size_t i = 0; i < metrics->as_array().size(); ++i) {
    CIVICBUS_ASSIGN_OR_RETURN(MetricSpec m, parse_metric(metrics->as_array()[i],
                                                         fmt::format("{}: metric #{}", label, i)));
    t.metrics.push_back(std::move(m));
  }
  if (const Json* rules = j.find("default_rules"); rules != nullptr && !rules->is_null()) {
    if (!rules->is_array()) {
      return invalid_argument(fmt::format("{}: field 'default_rules' must be an array", label));
    }
    t.default_rules = rules->as_array();
  }
  CIVICBUS_RETURN_IF_ERROR(validate_labelled(t, label));
  return t;
}

Json device_type_to_json(const DeviceType& type) {
  Json j = Json::object();
  j["name"] = type.name;
  j["description"] = type.description;
  Json metrics = Json::array();
  for (const MetricSpec& m : type.metrics) {
    Json mj = Json::object({{"name", m.name}, {"unit", m.unit}, {"description", m.description}});
    if (m.min) mj["min"] = *m.min;
    if (m.max) mj["max"] = *m.max;
    metrics.push_back(std::move(mj));
  }
  j["metrics"] = std::move(metrics);
  j["expected_interval_s"] = type.expected_interval_s;
  j["default_network"] = std::string(network_name(type.default_network));
  j["codec"] = type.codec;
  j["default_rules"] = Json(Json::Array(type.default_rules));
  return j;
}

Result<std::vector<DeviceType>> parse_device_types(std::string_view json_text) {
  auto parsed = Json::parse(json_text);
  if (!parsed.ok()) return parsed.status().with_context("device type catalogue");
  if (!parsed->is_array()) {
    return invalid_argument("device type catalogue: must be a JSON array of device types");
  }
  std::vector<DeviceType> out;
  std::set<std::string> names;
  const auto& items = parsed->as_array();
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string where = fmt::format("device type #{}", i);
    CIVICBUS_ASSIGN_OR_RETURN(DeviceType t, parse_device_type(items[i], where));
    if (!names.insert(t.name).second) {
      return invalid_argument(
          fmt::format("{} '{}': the name is used by an earlier type", where, t.name));
    }
    out.push_back(std::move(t));
  }
  return out;
}

Result<std::vector<DeviceType>> builtin_device_types() {
  return parse_device_types(builtin_device_types_json());
}

Result<std::unique_ptr<DeviceTypeCatalog>> DeviceTypeCatalog::with_builtin_types() {
  CIVICBUS_ASSIGN_OR_RETURN(auto types, builtin_device_types());
  auto catalog = std::make_unique<DeviceTypeCatalog>();
  CIVICBUS_RETURN_IF_ERROR(catalog->register_types(std::move(types)));
  return catalog;
}

Status DeviceTypeCatalog::register_type(DeviceType type, bool replace) {
  CIVICBUS_RETURN_IF_ERROR(validate_device_type(type));
  std::unique_lock lock(mu_);
  auto it = types_.find(type.name);
  if (it != types_.end() && !replace) {
    return already_exists(fmt::format(
        "device type '{}' is already registered; replace it explicitly to change it", type.name));
  }
  std::string name = type.name;
  types_[std::move(name)] = std::make_shared<const DeviceType>(std::move(type));
  return Status();
}

Status DeviceTypeCatalog::register_types(std::vector<DeviceType> types, bool replace) {
  for (auto& t : types) CIVICBUS_RETURN_IF_ERROR(validate_device_type(t));
  for (auto& t : types) CIVICBUS_RETURN_IF_ERROR(register_type(std::move(t), replace));
  return Status();
}

std::shared_ptr<const DeviceType> DeviceTypeCatalog::find(std::string_view name) const {
  std::shared_lock lock(mu_);
  auto it = types_.find(name);
  return it == types_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<const DeviceType>> DeviceTypeCatalog::list() const {
  std::shared_lock lock(mu_);
  std::vector<std::shared_ptr<const DeviceType>> out;
  out.reserve(types_.size());
  for (const auto& [name, t] : types_) out.push_back(t);
  return out;
}

std::string DeviceTypeCatalog::names() const {
  std::shared_lock lock(mu_);
  std::string out;
  for (const auto& [name, t] : types_) out += fmt::format("{}{}", out.empty() ? "" : ", ", name);
  return out;
}

std::size_t DeviceTypeCatalog::size() const {
  std::shared_lock lock(mu_);
  return types_.size();
}

}  // namespace civicbus::fleet
