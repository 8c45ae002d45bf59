#include "civicbus/fleet/types.hpp"

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <numbers>

namespace civicbus::fleet {

double distance_m(const GeoPoint& a, const GeoPoint& b) {
  constexpr double kEarthRadiusM = 6371008.8;
  constexpr double kRad = std::numbers::pi / 180.0;
  const double dlat = (b.lat - a.lat) * kRad;
  const double dlon = (b.lon - a.lon) * kRad;
  const double s =
      std::sin(dlat / 2) * std::sin(dlat / 2) +
      std::cos(a.lat * kRad) * std::cos(b.lat * kRad) * std::sin(dlon / 2) * std::sin(dlon / 2);
  return 2 * kEarthRadiusM * std::asin(std::min(1.0, std::sqrt(s)));
}

namespace {

template <typename E, std::size_t N>
Result<E> parse_enum(std::string_view text, const std::array<std::string_view, N>& names,
                     std::string_view what) {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == text) return static_cast<E>(i);
  }
  std::string choices;
  for (auto n : names) choices += fmt::format("{}'{}'", choices.empty() ? "" : ", ", n);
  return invalid_argument(fmt::format("unknown {} '{}' (expected one of {})", what, text, choices));
}

constexpr std::array<std::string_view, 4> kNetworks{"mqtt", "lorawan", "sigfox", "http"};
constexpr std::array<std::string_view, 4> kStatuses{"provisioned", "active", "maintenance",
                                                    "decommissioned"};
constexpr std::array<std::string_view, 7> kRejects{
    "unknown_device", "device_not_reporting", "unknown_metric", "unit_mismatch",
    "out_of_range",   "future_timestamp",     "malformed"};
constexpr std::array<std::string_view, 2> kSeverities{"warning", "critical"};
constexpr std::array<std::string_view, 3> kAlertStates{"raised", "acknowledged", "resolved"};

}  // namespace

std::string_view network_name(Network n) {
  return kNetworks[static_cast<std::size_t>(n)];
}
Result<Network> parse_network(std::string_view text) {
  return parse_enum<Network>(text, kNetworks, "network");
}
std::string_view status_name(DeviceStatus s) {
  return kStatuses[static_cast<std::size_t>(s)];
}
Result<DeviceStatus> parse_status(std::string_view text) {
  return parse_enum<DeviceStatus>(text, kStatuses, "device status");
}
std::string_view reject_reason_name(RejectReason r) {
  return kRejects[static_cast<std::size_t>(r)];
}
std::string_view severity_name(Severity s) {
  return kSeverities[static_cast<std::size_t>(s)];
}
std::string_view alert_state_name(AlertState s) {
  return kAlertStates[static_cast<std::size_t>(s)];
}

bool transition_allowed(DeviceStatus from, DeviceStatus to) {
  using S = DeviceStatus;
  if (from == to) return false;
  switch (from) {
    case S::kProvisioned:
      return to == S::kActive || to == S::kDecommissioned;
    case S::kActive:
      return to == S::kMaintenance || to == S::kDecommissioned;
    case S::kMaintenance:
      return to == S::kActive || to == S::kDecommissioned;
    case S::kDecommissioned:
      return false;
  }
  return false;
}

const MetricSpec* DeviceType::metric(std::string_view metric_name) const {
  for (const auto& m : metrics) {
    if (m.name == metric_name) return &m;
  }
  return nullptr;
}

Json Device::to_json() const {
  Json j = Json::object();
  j["id"] = id;
  j["serial"] = serial;
  j["type"] = type;
  j["model"] = model;
  j["firmware_version"] = firmware_version;
  j["install_date"] = install_date;
  if (location) {
    j["location"] = Json::object({{"lat", location->lat}, {"lon", location->lon}});
  } else {
    j["location"] = nullptr;
  }
  j["asset_id"] = asset_id;
  j["department"] = department;
  j["project"] = project;
  j["network"] = std::string(network_name(network));
  Json t = Json::object();
  for (const auto& [k, v] : tags) t[k] = v;
  j["tags"] = std::move(t);
  j["status"] = std::string(status_name(status));
  j["certificate_serial"] = certificate_serial;
  j["created_at"] = created_at;
  j["updated_at"] = updated_at;
  j["desired"] = desired;
  j["reported"] = reported;
  j["desired_version"] = desired_version;
  j["reported_version"] = reported_version;
  return j;
}

Result<Device> Device::from_json(const Json& j) {
  if (!j.is_object()) return invalid_argument("a device must be a JSON object");
  Device d;
  auto text = [&](std::string_view key, std::string& out) -> Status {
    const Json* v = j.find(key);
    if (v == nullptr || v->is_null()) return Status();
    if (!v->is_string()) {
      return invalid_argument(fmt::format("device field '{}' must be a string", key));
    }
    out = v->as_string();
    return Status();
  };
  CIVICBUS_RETURN_IF_ERROR(text("id", d.id));
  CIVICBUS_RETURN_IF_ERROR(text("serial", d.serial));
  CIVICBUS_RETURN_IF_ERROR(text("type", d.type));
  CIVICBUS_RETURN_IF_ERROR(text("model", d.model));
  CIVICBUS_RETURN_IF_ERROR(text("firmware_version", d.firmware_version));
  CIVICBUS_RETURN_IF_ERROR(text("install_date", d.install_date));
  CIVICBUS_RETURN_IF_ERROR(text("asset_id", d.asset_id));
  CIVICBUS_RETURN_IF_ERROR(text("department", d.department));
  CIVICBUS_RETURN_IF_ERROR(text("project", d.project));
  CIVICBUS_RETURN_IF_ERROR(text("certificate_serial", d.certificate_serial));
  if (const Json* loc = j.find("location"); loc != nullptr && !loc->is_null()) {
    const Json* lat = loc->is_object() ? loc->find("lat") : nullptr;
    const Json* lon = loc->is_object() ? loc->find("lon") : nullptr;
    if (lat == nullptr || lon == nullptr || !lat->is_number() || !lon->is_number()) {
      return invalid_argument("device field 'location' must be {\"lat\": n, \"lon\": n}");
    }
    GeoPoint p{lat->as_double(), lon->as_double()};
    if (!(p.lat >= -90 && p.lat <= 90) || !(p.lon >= -180 && p.lon <= 180)) {
      return invalid_argument(
          fmt::format("device location {},{} is outside -90..90, -180..180", p.lat, p.lon));
    }
    d.location = p;
  }
  if (const Json* n = j.find("network"); n != nullptr && !n->is_null()) {
    if (!n->is_string()) return invalid_argument("device field 'network' must be a string");
    CIVICBUS_ASSIGN_OR_RETURN(d.network, parse_network(n->as_string()));
  }
  if (const Json* s = j.find("status"); s != nullptr && !s->is_null()) {
    if (!s->is_string()) return invalid_argument("device field 'status' must be a string");
    CIVICBUS_ASSIGN_OR_RETURN(d.status, parse_status(s->as_string()));
  }
  if (const Json* t = j.find("tags"); t != nullptr && !t->is_null()) {
    if (!t->is_object()) return invalid_argument("device field 'tags' must be an object");
    for (const auto& [k, v] : t->as_object()) {
      if (!v.is_string()) {
        return invalid_argument(fmt::format("device tag '{}' must be a string", k));
      }
      d.tags[k] = v.as_string();
    }
  }
  d.created_at = j.get_int("created_at");
  d.updated_at = j.get_int("updated_at");
  if (const Json* v = j.find("desired"); v != nullptr && v->is_object()) d.desired = *v;
  if (const Json* v = j.find("reported"); v != nullptr && v->is_object()) d.reported = *v;
  d.desired_version = j.get_int("desired_version");
  d.reported_version = j.get_int("reported_version");
  return d;
}

Json Alert::to_json() const {
  Json j = Json::object();
  j["id"] = id;
  j["rule_id"] = rule_id;
  j["device_id"] = device_id;
  Json devs = Json::array();
  for (const auto& d : devices) devs.as_array().push_back(d);
  j["devices"] = std::move(devs);
  j["metric"] = metric;
  j["severity"] = std::string(severity_name(severity));
  j["state"] = std::string(alert_state_name(state));
  j["message"] = message;
  j["value"] = value;
  if (location) {
    j["location"] = Json::object({{"lat", location->lat}, {"lon", location->lon}});
  }
  j["raised_at"] = raised_at;
  j["updated_at"] = updated_at;
  if (!acknowledged_by.empty()) {
    j["acknowledged_by"] = acknowledged_by;
    j["acknowledged_at"] = acknowledged_at;
    if (!acknowledge_note.empty()) j["acknowledge_note"] = acknowledge_note;
  }
  if (!resolved_by.empty()) {
    j["resolved_by"] = resolved_by;
    j["resolved_at"] = resolved_at;
    if (!resolve_note.empty()) j["resolve_note"] = resolve_note;
  }
  return j;
}

}  // namespace civicbus::fleet
