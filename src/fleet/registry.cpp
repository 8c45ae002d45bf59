#include "fleet/registry.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <unordered_map>

#include "core/civil_date.hpp"
#include "core/string_map.hpp"

namespace civicbus::fleet {

namespace {

constexpr std::string_view kComponent = "fleet_registry";

constexpr storage::Migration kMigrations[] = {
    {1, "devices, status history, groups",
     R"sql(
CREATE TABLE fleet_devices (
  id TEXT PRIMARY KEY,
  serial TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  model TEXT NOT NULL,
  firmware_version TEXT NOT NULL,
  install_date TEXT NOT NULL,
  lat REAL,
  lon REAL,
  asset_id TEXT NOT NULL,
  department TEXT NOT NULL,
  project TEXT NOT NULL,
  network TEXT NOT NULL,
  tags TEXT NOT NULL,
  status TEXT NOT NULL,
  certificate_serial TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  desired TEXT NOT NULL,
  reported TEXT NOT NULL,
  desired_version INTEGER NOT NULL,
  reported_version INTEGER NOT NULL
);
CREATE TABLE fleet_device_history (
  seq INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL,
  from_status TEXT NOT NULL,
  to_status TEXT NOT NULL,
  actor TEXT NOT NULL,
  reason TEXT NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX fleet_device_history_device ON fleet_device_history (device_id, seq);
CREATE TABLE fleet_groups (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  query TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE fleet_group_members (
  group_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  PRIMARY KEY (group_id, device_id)
);
)sql"},
};

constexpr char kInsertDevice[] =
    "INSERT INTO fleet_devices (id, serial, type, model, firmware_version, install_date, lat, "
    "lon, asset_id, department, project, network, tags, status, certificate_serial, "
    "created_at, updated_at, desired, reported, desired_version, reported_version) VALUES "
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

constexpr char kUpsertDevice[] =
    "INSERT INTO fleet_devices (id, serial, type, model, firmware_version, install_date, lat, "
    "lon, asset_id, department, project, network, tags, status, certificate_serial, "
    "created_at, updated_at, desired, reported, desired_version, reported_version) VALUES "
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET serial = excluded.serial, type = excluded.type, "
    "model = excluded.model, firmware_version = excluded.firmware_version, "
    "install_date = excluded.install_date, lat = excluded.lat, lon = excluded.lon, "
    "asset_id = excluded.asset_id, department = excluded.department, "
    "project = excluded.project, network = excluded.network, tags = excluded.tags, "
    "status = excluded.status, certificate_serial = excluded.certificate_serial, "
    "created_at = excluded.created_at, updated_at = excluded.updated_at, "
    "desired = excluded.desired, reported = excluded.reported, "
    "desired_version = excluded.desired_version, reported_version = excluded.reported_version";

constexpr char kSelectDevices[] =
    "SELECT id, serial, type, model, firmware_version, install_date, lat, lon, asset_id, "
    "department, project, network, tags, status, certificate_serial, created_at, updated_at, "
    "desired, reported, desired_version, reported_version FROM fleet_devices";

constexpr char kInsertHistory[] =
    "INSERT INTO fleet_device_history (device_id, from_status, to_status, actor, reason, at) "
    "VALUES (?, ?, ?, ?, ?, ?)";

Status write_device(storage::Database& db, const Device& d, bool insert) {
  std::string tags;
  {
    Json t = Json::object();
    for (const auto& [k, v] : d.tags) t[k] = v;
    tags = t.dump();
  }
  const std::string desired = d.desired.dump();
  const std::string reported = d.reported.dump();
  const std::string_view network = network_name(d.network);
  const std::string_view status = status_name(d.status);
  storage::Value lat = nullptr, lon = nullptr;
  if (d.location) {
    lat = d.location->lat;
    lon = d.location->lon;
  }
  const storage::Value params[] = {std::string_view(d.id),
                                   std::string_view(d.serial),
                                   std::string_view(d.type),
                                   std::string_view(d.model),
                                   std::string_view(d.firmware_version),
                                   std::string_view(d.install_date),
                                   lat,
                                   lon,
                                   std::string_view(d.asset_id),
                                   std::string_view(d.department),
                                   std::string_view(d.project),
                                   network,
                                   std::string_view(tags),
                                   status,
                                   std::string_view(d.certificate_serial),
                                   std::int64_t{d.created_at},
                                   std::int64_t{d.updated_at},
                                   std::string_view(desired),
                                   std::string_view(reported),
                                   std::int64_t{d.desired_version},
                                   std::int64_t{d.reported_version}};
  auto r = db.execute(insert ? kInsertDevice : kUpsertDevice, params);
  if (!r.ok()) return r.status().with_context(fmt::format("storing device '{}'", d.id));
  return Status();
}

Status write_history(storage::Database& db, const StatusChange& c) {
  auto r = db.execute(kInsertHistory,
                      {std::string_view(c.device_id), status_name(c.from), status_name(c.to),
                       std::string_view(c.actor), std::string_view(c.reason), std::int64_t{c.at}});
  if (!r.ok()) {
    return r.status().with_context(fmt::format("recording the status of '{}'", c.device_id));
  }
  return Status();
}

Status check_date(std::string_view s, std::string_view what) {
  if (detail::is_iso_date(s)) return Status();
  return invalid_argument(fmt::format("{} '{}' is not a date in the form YYYY-MM-DD", what, s));
}

Status check_location(const std::optional<GeoPoint>& p, std::string_view id) {
  if (!p) return Status();
  if (!(p->lat >= -90 && p->lat <= 90) || !(p->lon >= -180 && p->lon <= 180)) {
    return invalid_argument(
        fmt::format("device '{}': location {},{} is outside latitude -90..90, longitude -180..180",
                    id, p->lat, p->lon));
  }
  return Status();
}

Status check_bbox(const BoundingBox& b) {
  for (double v : {b.min_lat, b.max_lat}) {
    if (!(v >= -90 && v <= 90)) {
      return invalid_argument(fmt::format("bbox latitude {} is outside -90..90", v));
    }
  }
  for (double v : {b.min_lon, b.max_lon}) {
    if (!(v >= -180 && v <= 180)) {
      return invalid_argument(fmt::format("bbox longitude {} is outside -180..180", v));
    }
  }
  if (b.min_lat > b.max_lat || b.min_lon > b.max_lon) {
    return invalid_argument(fmt::format("bbox min ({},{}) is not below max ({},{})", b.min_lat,
                                        b.min_lon, b.max_lat, b.max_lon));
  }
  return Status();
}

TimeMs now_ms(const Clock& clock) {
  return to_unix_micros(clock.now()) / 1000;
}

std::string slug(std::string_view name) {
  std::string out;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) {
      out += static_cast<char>(std::tolower(u));
    } else if (c == '_' || c == '.') {
      out += c;
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

Result<std::string> opt_string(const Json& j, std::string_view key, std::string_view where) {
  const Json* v = j.find(key);
  if (!v->is_string()) {
    return invalid_argument(fmt::format("{}: field '{}' must be a string", where, key));
  }
  return v->as_string();
}

Result<double> need_number(const Json& j, std::string_view key, std::string_view where) {
  const Json* v = j.find(key);
  if (v == nullptr || !v->is_number()) {
    return invalid_argument(fmt::format("{}: field '{}' must be a number", where, key));
  }
  return v->as_double();
}

}  // namespace

// ----- merge patch and twin delta ----------------------------------------------------------

void apply_merge_patch(Json& target, const Json& patch) {
  if (!patch.is_object()) {
    target = patch;
    return;
  }
  if (!target.is_object()) target = Json::object();
  for (const auto& [key, value] : patch.as_object()) {
    if (value.is_null()) {
      target.erase(key);
    } else {
      Json* existing = target.find(key);
      if (existing == nullptr) existing = &target.set(key, Json::object());
      apply_merge_patch(*existing, value);
    }
  }
}

Json twin_delta(const Json& desired, const Json& reported) {
  Json out = Json::object();
  if (!desired.is_object()) return out;
  for (const auto& [key, want] : desired.as_object()) {
    const Json* have = reported.is_object() ? reported.find(key) : nullptr;
    if (have != nullptr && *have == want) continue;
    if (want.is_object() && have != nullptr && have->is_object()) {
      Json sub = twin_delta(want, *have);
      if (sub.size() > 0) out.set(key, std::move(sub));
    } else {
      out.set(key, want);
    }
  }
  return out;
}

// ----- DeviceQuery -------------------------------------------------------------------------

bool DeviceQuery::matches(const Device& d) const {
  if (type && d.type != *type) return false;
  if (status && d.status != *status) return false;
  if (department && d.department != *department) return false;
  if (network && d.network != *network) return false;
  if (project && d.project != *project) return false;
  for (const auto& [k, v] : tags) {
    auto it = d.tags.find(k);
    if (it == d.tags.end() || it->second != v) return false;
  }
  if (bbox || circle) {
    if (!d.location) return false;
    if (bbox && !bbox->contains(*d.location)) return false;
    if (circle && distance_m(circle->center, *d.location) > circle->radius_m) return false;
  }
  return true;
}

Json DeviceQuery::to_json() const {
  Json j = Json::object();
  if (type) j["type"] = *type;
  if (status) j["status"] = std::string(status_name(*status));
  if (department) j["department"] = *department;
  if (network) j["network"] = std::string(network_name(*network));
  if (project) j["project"] = *project;
  if (!tags.empty()) {
    Json t = Json::object();
    for (const auto& [k, v] : tags) t[k] = v;
    j["tags"] = std::move(t);
  }
  if (bbox) {
    j["bbox"] = Json::object({{"min_lat", bbox->min_lat},
                              {"min_lon", bbox->min_lon},
                              {"max_lat", bbox->max_lat},
                              {"max_lon", bbox->max_lon}});
  }
  if (circle) {
    j["circle"] = Json::object(
        {{"lat", circle->center.lat}, {"lon", circle->center.lon}, {"radius_m", circle->radius_m}});
  }
  if (limit != 0) j["limit"] = static_cast<std::int64_t>(limit);
  if (offset != 0) j["offset"] = static_cast<std::int64_t>(offset);
  return j;
}

Result<DeviceQuery> DeviceQuery::from_json(const Json& j) {
  constexpr std::string_view kWhere = "device query";
  if (!j.is_object()) return invalid_argument("device query must be a JSON object");
  DeviceQuery q;
  for (const auto& [key, value] : j.as_object()) {
    if (value.is_null()) continue;
    if (key == "type") {
      CIVICBUS_ASSIGN_OR_RETURN(q.type, opt_string(j, key, kWhere));
    } else if (key == "department") {
      CIVICBUS_ASSIGN_OR_RETURN(q.department, opt_string(j, key, kWhere));
    } else if (key == "project") {
      CIVICBUS_ASSIGN_OR_RETURN(q.project, opt_string(j, key, kWhere));
    } else if (key == "status") {
      CIVICBUS_ASSIGN_OR_RETURN(std::string s, opt_string(j, key, kWhere));
      CIVICBUS_ASSIGN_OR_RETURN(q.status, parse_status(s));
    } else if (key == "network") {
      CIVICBUS_ASSIGN_OR_RETURN(std::string s, opt_string(j, key, kWhere));
      CIVICBUS_ASSIGN_OR_RETURN(q.network, parse_network(s));
    } else if (key == "tags") {
      if (!value.is_object()) return invalid_argument("device query: 'tags' must be an object");
      for (const auto& [k, v] : value.as_object()) {
        if (!v.is_string()) {
          return invalid_argument(fmt::format("device query: tag '{}' must be a string", k));
        }
        q.tags[k] = v.as_string();
      }
    } else if (key == "bbox") {
      if (!value.is_object()) return invalid_argument("device query: 'bbox' must be an object");
      BoundingBox b;
      CIVICBUS_ASSIGN_OR_RETURN(b.min_lat, need_number(value, "min_lat", "device query bbox"));
      CIVICBUS_ASSIGN_OR_RETURN(b.min_lon, need_number(value, "min_lon", "device query bbox"));
      CIVICBUS_ASSIGN_OR_RETURN(b.max_lat, need_number(value, "max_lat", "device query bbox"));
      CIVICBUS_ASSIGN_OR_RETURN(b.max_lon, need_number(value, "max_lon", "device query bbox"));
      auto st = check_bbox(b);
      if (!st.ok()) return st.with_context("device query");
      q.bbox = b;
    } else if (key == "circle") {
      if (!value.is_object()) return invalid_argument("device query: 'circle' must be an object");
      GeoCircle c;
      CIVICBUS_ASSIGN_OR_RETURN(c.center.lat, need_number(value, "lat", "device query circle"));
      CIVICBUS_ASSIGN_OR_RETURN(c.center.lon, need_number(value, "lon", "device query circle"));
      CIVICBUS_ASSIGN_OR_RETURN(c.radius_m, need_number(value, "radius_m", "device query circle"));
      CIVICBUS_RETURN_IF_ERROR(check_location(c.center, "circle centre"));
      if (!(c.radius_m > 0)) {
        return invalid_argument(
            fmt::format("device query circle: radius_m must be positive, not {}", c.radius_m));
      }
      q.circle = c;
    } else if (key == "limit" || key == "offset") {
      if (!value.is_integral() || value.as_double() < 0) {
        return invalid_argument(
            fmt::format("device query: '{}' must be a non-negative integer", key));
      }
      (key == "limit" ? q.limit : q.offset) = static_cast<std::size_t>(value.as_double());
    } else {
      return invalid_argument(fmt::format(
          "device query: unknown field '{}' (expected type, status, department, network, "
          "project, tags, bbox, circle, limit, offset)",
          key));
    }
  }
  return q;
}

// ----- DeviceUpdate ------------------------------------------------------------------------

Result<DeviceUpdate> DeviceUpdate::from_json(const Json& j) {
  constexpr std::string_view kWhere = "device update";
  if (!j.is_object()) return invalid_argument("a device update must be a JSON object");
  DeviceUpdate u;
  auto tag_map = [&](const Json& v,
                     std::string_view key) -> Result<std::map<std::string, std::string>> {
    if (!v.is_object()) {
      return invalid_argument(fmt::format("device update: '{}' must be an object", key));
    }
    std::map<std::string, std::string> out;
    for (const auto& [k, t] : v.as_object()) {
      if (!t.is_string()) {
        return invalid_argument(fmt::format("device update: tag '{}' must be a string", k));
      }
      out[k] = t.as_string();
    }
    return out;
  };
  for (const auto& [key, value] : j.as_object()) {
    if (key == "model") {
      CIVICBUS_ASSIGN_OR_RETURN(u.model, opt_string(j, key, kWhere));
    } else if (key == "firmware_version") {
      CIVICBUS_ASSIGN_OR_RETURN(u.firmware_version, opt_string(j, key, kWhere));
    } else if (key == "install_date") {
      CIVICBUS_ASSIGN_OR_RETURN(u.install_date, opt_string(j, key, kWhere));
    } else if (key == "asset_id") {
      CIVICBUS_ASSIGN_OR_RETURN(u.asset_id, opt_string(j, key, kWhere));
    } else if (key == "department") {
      CIVICBUS_ASSIGN_OR_RETURN(u.department, opt_string(j, key, kWhere));
    } else if (key == "project") {
      CIVICBUS_ASSIGN_OR_RETURN(u.project, opt_string(j, key, kWhere));
    } else if (key == "certificate_serial") {
      CIVICBUS_ASSIGN_OR_RETURN(u.certificate_serial, opt_string(j, key, kWhere));
    } else if (key == "network") {
      CIVICBUS_ASSIGN_OR_RETURN(std::string s, opt_string(j, key, kWhere));
      CIVICBUS_ASSIGN_OR_RETURN(u.network, parse_network(s));
    } else if (key == "location") {
      if (value.is_null()) {
        u.location = std::optional<GeoPoint>();
      } else {
        if (!value.is_object()) {
          return invalid_argument("device update: 'location' must be {\"lat\": n, \"lon\": n}");
        }
        GeoPoint p;
        CIVICBUS_ASSIGN_OR_RETURN(p.lat, need_number(value, "lat", "device update location"));
        CIVICBUS_ASSIGN_OR_RETURN(p.lon, need_number(value, "lon", "device update location"));
        u.location = std::optional<GeoPoint>(p);
      }
    } else if (key == "tags") {
      CIVICBUS_ASSIGN_OR_RETURN(u.tags, tag_map(value, key));
    } else if (key == "set_tags") {
      CIVICBUS_ASSIGN_OR_RETURN(u.set_tags, tag_map(value, key));
    } else if (key == "remove_tags") {
      if (!value.is_array()) {
        return invalid_argument("device update: 'remove_tags' must be an array of strings");
      }
      for (const Json& k : value.as_array()) {
        if (!k.is_string()) {
          return invalid_argument("device update: 'remove_tags' must be an array of strings");
        }
        u.remove_tags.push_back(k.as_string());
      }
    } else {
      return invalid_argument(fmt::format(
          "device update: field '{}' cannot be changed this way (id, serial and type are fixed; "
          "status and twin have their own calls)",
          key));
    }
  }
  return u;
}

// ----- Group -------------------------------------------------------------------------------

std::string_view group_kind_name(GroupKind k) {
  return k == GroupKind::kStatic ? "static" : "query";
}

Json Group::to_json() const {
  Json j = Json::object();
  j["id"] = id;
  j["name"] = name;
  j["kind"] = std::string(group_kind_name(kind));
  if (kind == GroupKind::kStatic) {
    Json m = Json::array();
    for (const auto& d : members) m.push_back(d);
    j["members"] = std::move(m);
  } else {
    DeviceQuery q = query;
    q.limit = q.offset = 0;
    j["query"] = q.to_json();
  }
  j["created_by"] = created_by;
  j["created_at"] = created_at;
  j["updated_at"] = updated_at;
  return j;
}

Result<Group> Group::from_json(const Json& j) {
  if (!j.is_object()) return invalid_argument("a group must be a JSON object");
  Group g;
  g.id = j.get_string("id");
  g.name = j.get_string("name");
  const std::string kind = j.get_string("kind", "static");
  if (kind == "static") {
    g.kind = GroupKind::kStatic;
  } else if (kind == "query") {
    g.kind = GroupKind::kQuery;
  } else {
    return invalid_argument(
        fmt::format("group '{}': kind '{}' is neither 'static' nor 'query'", g.name, kind));
  }
  if (const Json* m = j.find("members"); m != nullptr && !m->is_null()) {
    if (!m->is_array()) {
      return invalid_argument(fmt::format("group '{}': 'members' must be an array", g.name));
    }
    for (const Json& id : m->as_array()) {
      if (!id.is_string()) {
        return invalid_argument(
            fmt::format("group '{}': 'members' must hold device ids (strings)", g.name));
      }
      g.members.push_back(id.as_string());
    }
  }
  if (const Json* q = j.find("query"); q != nullptr && !q->is_null()) {
    auto query = DeviceQuery::from_json(*q);
    if (!query.ok()) return query.status().with_context(fmt::format("group '{}'", g.name));
    g.query = std::move(query).value();
  }
  g.created_by = j.get_string("created_by");
  g.created_at = j.get_int("created_at");
  g.updated_at = j.get_int("updated_at");
  return g;
}

// ----- Registry ----------------------------------------------------------------------------

namespace {

using civicbus::detail::StringMap;

using Slot = std::uint32_t;
using CellKey = std::int64_t;
using Grid = std::unordered_map<CellKey, std::vector<Slot>>;

// 0.01° cells (about 1.1 km of latitude): a city-sized box touches a few thousand cells.
constexpr double kCellsPerDegree = 100.0;
constexpr std::int64_t kLonCells = 360 * 100 + 2;

std::int64_t lat_cell(double lat) {
  return static_cast<std::int64_t>(std::floor(lat * kCellsPerDegree));
}
std::int64_t lon_cell(double lon) {
  return static_cast<std::int64_t>(std::floor(lon * kCellsPerDegree));
}
CellKey cell_key(std::int64_t la, std::int64_t lo) {
  return (la + 90 * 100) * kLonCells + (lo + 180 * 100);
}
CellKey cell_of(const GeoPoint& p) {
  return cell_key(lat_cell(p.lat), lon_cell(p.lon));
}

void grid_remove(Grid& grid, CellKey key, Slot slot) {
  auto it = grid.find(key);
  if (it == grid.end()) return;
  auto& v = it->second;
  auto pos = std::find(v.begin(), v.end(), slot);
  if (pos != v.end()) {
    *pos = v.back();
    v.pop_back();
  }
  if (v.empty()) grid.erase(it);
}

// The box a query's geography confines it to, or nullopt when it has none. `empty` is set
// when the box and circle do not overlap.
std::optional<BoundingBox> query_box(const DeviceQuery& q, bool& empty) {
  empty = false;
  std::optional<BoundingBox> box = q.bbox;
  if (q.circle) {
    constexpr double kMetresPerDegree = 111'195.0;  // mean Earth radius × π / 180
    const double dlat = q.circle->radius_m / kMetresPerDegree * 1.001 + 1e-9;
    const double coslat = std::cos((std::min(89.9, std::abs(q.circle->center.lat) + dlat)) *
                                   3.14159265358979323846 / 180.0);
    const double dlon = dlat / std::max(coslat, 1e-6);
    BoundingBox c{std::max(-90.0, q.circle->center.lat - dlat), q.circle->center.lon - dlon,
                  std::min(90.0, q.circle->center.lat + dlat), q.circle->center.lon + dlon};
    if (c.min_lon < -180 || c.max_lon > 180 || c.min_lat <= -90 || c.max_lat >= 90) {
      // Wraps the antimeridian or covers a pole: take every longitude.
      c.min_lon = -180;
      c.max_lon = 180;
    }
    if (box) {
      box = BoundingBox{std::max(box->min_lat, c.min_lat), std::max(box->min_lon, c.min_lon),
                        std::min(box->max_lat, c.max_lat), std::min(box->max_lon, c.max_lon)};
    } else {
      box = c;
    }
  }
  if (box && (box->min_lat > box->max_lat || box->min_lon > box->max_lon)) empty = true;
  return box;
}

struct GroupsCacheEntry {
  std::uint64_t generation = 0;
  std::shared_ptr<const Device> device;  // the snapshot the entry was computed for
  std::vector<std::string> groups;
};

}  // namespace

struct Registry::Impl {
  Impl(storage::Database& d, const Clock& c, const DeviceTypeCatalog& t)
      : db(d), clock(c), catalog(t) {}

  storage::Database& db;
  const Clock& clock;
  const DeviceTypeCatalog& catalog;

  // Serialises writers: validation, the SQL write and the in-memory install happen under it,
  // so a check and the change it guards cannot interleave with another writer.
  std::mutex write_mu;
  // Guards the in-memory state; taken exclusively only for the instant a change is
  // installed, never across disk I/O.
  mutable std::shared_mutex mu;
  std::vector<std::shared_ptr<const Device>> slots;
  StringMap<Slot> by_id;
  StringMap<Slot> by_serial;
  StringMap<std::vector<Slot>> by_type;
  Grid grid;
  StringMap<Grid> type_grid;
  std::map<std::string, Group, std::less<>> groups;
  std::uint64_t groups_generation = 1;  // under mu

  mutable std::mutex cache_mu;  // after mu (shared) when both are held
  mutable std::unordered_map<Slot, GroupsCacheEntry> groups_cache;

  std::vector<StatusChangedCallback> status_callbacks;
  std::vector<ProvisionedCallback> provisioned_callbacks;

  // --- in-memory state (callers hold mu exclusively) ---
  void add_locked(std::shared_ptr<const Device> d) {
    const Slot slot = static_cast<Slot>(slots.size());
    by_id.emplace(d->id, slot);
    by_serial.emplace(d->serial, slot);
    by_type[d->type].push_back(slot);
    if (d->location) {
      const CellKey key = cell_of(*d->location);
      grid[key].push_back(slot);
      type_grid[d->type][key].push_back(slot);
    }
    slots.push_back(std::move(d));
  }
  void replace_locked(Slot slot, std::shared_ptr<const Device> d) {
    const auto& old = slots[slot];
    const std::optional<CellKey> before =
        old->location ? std::optional<CellKey>(cell_of(*old->location)) : std::nullopt;
    const std::optional<CellKey> after =
        d->location ? std::optional<CellKey>(cell_of(*d->location)) : std::nullopt;
    if (before != after) {
      Grid& tg = type_grid[d->type];
      if (before) {
        grid_remove(grid, *before, slot);
        grid_remove(tg, *before, slot);
      }
      if (after) {
        grid[*after].push_back(slot);
        tg[*after].push_back(slot);
      }
    }
    slots[slot] = std::move(d);
  }
  std::optional<Slot> slot_of(std::string_view id) const {
    auto it = by_id.find(id);
    if (it == by_id.end()) return std::nullopt;
    return it->second;
  }

  // Calls fn(slot) for every candidate of q (a superset of the matches). Holds mu (shared).
  template <typename Fn>
  void for_candidates(const DeviceQuery& q, Fn&& fn) const {
    bool empty = false;
    const std::optional<BoundingBox> box = query_box(q, empty);
    if (empty) return;
    if (box) {
      const Grid* g = &grid;
      if (q.type) {
        auto it = type_grid.find(*q.type);
        if (it == type_grid.end()) return;
        g = &it->second;
      }
      const std::int64_t la0 = lat_cell(box->min_lat), la1 = lat_cell(box->max_lat);
      const std::int64_t lo0 = lon_cell(box->min_lon), lo1 = lon_cell(box->max_lon);
      const double cells = double(la1 - la0 + 1) * double(lo1 - lo0 + 1);
      if (cells <= double(g->size())) {
        for (std::int64_t la = la0; la <= la1; ++la) {
          for (std::int64_t lo = lo0; lo <= lo1; ++lo) {
            auto it = g->find(cell_key(la, lo));
            if (it == g->end()) continue;
            for (Slot s : it->second) fn(s);
          }
        }
      } else {
        // A box wider than the populated area: walk the populated cells instead.
        const CellKey k0 = cell_key(la0, lo0), k1 = cell_key(la1, lo1);
        for (const auto& [key, cell] : *g) {
          if (key < k0 || key > k1) continue;
          const std::int64_t lo = key % kLonCells - 180 * 100;
          if (lo < lo0 || lo > lo1) continue;
          for (Slot s : cell) fn(s);
        }
      }
      return;
    }
    if (q.type) {
      auto it = by_type.find(*q.type);
      if (it == by_type.end()) return;
      for (Slot s : it->second) fn(s);
      return;
    }
    for (Slot s = 0; s < slots.size(); ++s) fn(s);
  }

  // Matching slots sorted by id. Holds mu (shared).
  std::vector<const Device*> matching(const DeviceQuery& q) const {
    std::vector<const Device*> out;
    for_candidates(q, [&](Slot s) {
      const Device* d = slots[s].get();
      if (q.matches(*d)) out.push_back(d);
    });
    return out;
  }

  std::vector<std::string> compute_groups_of(const Device& d) const {
    std::vector<std::string> out;
    for (const auto& [id, g] : groups) {
      if (g.kind == GroupKind::kStatic) {
        if (std::binary_search(g.members.begin(), g.members.end(), d.id)) out.push_back(id);
      } else if (g.query.matches(d)) {
        out.push_back(id);
      }
    }
    return out;
  }

  // Copies the device, lets `edit` change the copy, stores it and installs it.
  Result<std::shared_ptr<const Device>> modify(std::string_view id,
                                               const std::function<Status(Device&)>& edit) {
    std::lock_guard write(write_mu);
    std::shared_ptr<const Device> current;
    Slot slot;
    {
      std::shared_lock read(mu);
      auto s = slot_of(id);
      if (!s) return not_found(fmt::format("no device '{}'", id));
      slot = *s;
      current = slots[slot];
    }
    auto d = std::make_shared<Device>(*current);
    CIVICBUS_RETURN_IF_ERROR(edit(*d));
    d->updated_at = now_ms(clock);
    CIVICBUS_RETURN_IF_ERROR(write_device(db, *d, false));
    std::shared_ptr<const Device> next = d;
    std::unique_lock lock(mu);
    replace_locked(slot, next);
    return next;
  }

  Status validate_new(Device& d) const {
    if (d.serial.empty()) {
      return invalid_argument(d.id.empty() ? std::string("device has no serial")
                                           : fmt::format("device '{}' has no serial", d.id));
    }
    if (d.id.empty()) d.id = d.serial;
    if (d.type.empty()) return invalid_argument(fmt::format("device '{}' has no type", d.id));
    if (!catalog.contains(d.type)) {
      return invalid_argument(fmt::format("device '{}': unknown device type '{}' (known: {})", d.id,
                                          d.type, catalog.names()));
    }
    CIVICBUS_RETURN_IF_ERROR(check_location(d.location, d.id));
    if (!d.install_date.empty()) {
      auto st = check_date(d.install_date, "install_date");
      if (!st.ok()) return st.with_context(fmt::format("device '{}'", d.id));
    }
    if (d.status == DeviceStatus::kDecommissioned) {
      return invalid_argument(
          fmt::format("device '{}' cannot be provisioned as decommissioned", d.id));
    }
    if (!d.desired.is_object() || !d.reported.is_object()) {
      return invalid_argument(
          fmt::format("device '{}': desired and reported must be JSON objects", d.id));
    }
    return Status();
  }
};

Registry::Registry(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Registry::~Registry() = default;

Result<std::unique_ptr<Registry>> Registry::open(storage::Database& db, const Clock& clock,
                                                 const DeviceTypeCatalog& catalog) {
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(db, kComponent, kMigrations));
  auto impl = std::make_unique<Impl>(db, clock, catalog);
  Impl& r = *impl;
  auto parse_object = [](std::string_view text, std::string_view id,
                         std::string_view column) -> Result<Json> {
    if (text == "{}") return Json::object();
    auto j = Json::parse(text);
    if (!j.ok() || !j->is_object()) {
      return data_loss(
          fmt::format("fleet_devices row '{}': column {} is not a JSON object", id, column));
    }
    return std::move(j).value();
  };
  Status row_error;
  auto count = db.query_int("SELECT COUNT(*) FROM fleet_devices");
  if (count.ok() && count->has_value()) r.slots.reserve(static_cast<std::size_t>(**count));
  CIVICBUS_RETURN_IF_ERROR(db.query(kSelectDevices, {}, [&](const storage::Row& row) {
    auto d = std::make_shared<Device>();
    d->id = row.get_text(0);
    d->serial = row.get_text(1);
    d->type = row.get_text(2);
    d->model = row.get_text(3);
    d->firmware_version = row.get_text(4);
    d->install_date = row.get_text(5);
    if (!row.is_null(6) && !row.is_null(7)) {
      d->location = GeoPoint{row.get_double(6), row.get_double(7)};
    }
    d->asset_id = row.get_text(8);
    d->department = row.get_text(9);
    d->project = row.get_text(10);
    auto network = parse_network(row.get_text(11));
    auto status = parse_status(row.get_text(13));
    if (!network.ok() || !status.ok()) {
      row_error = data_loss(fmt::format("fleet_devices row '{}': bad network or status", d->id));
      return false;
    }
    d->network = *network;
    d->status = *status;
    auto tags = parse_object(row.get_text(12), d->id, "tags");
    auto desired = parse_object(row.get_text(17), d->id, "desired");
    auto reported = parse_object(row.get_text(18), d->id, "reported");
    if (!tags.ok() || !desired.ok() || !reported.ok()) {
      row_error = !tags.ok() ? tags.status() : !desired.ok() ? desired.status() : reported.status();
      return false;
    }
    for (const auto& [k, v] : tags->as_object()) {
      d->tags.emplace(k, v.is_string() ? v.as_string() : v.dump());
    }
    d->certificate_serial = row.get_text(14);
    d->created_at = row.get_int(15);
    d->updated_at = row.get_int(16);
    d->desired = std::move(desired).value();
    d->reported = std::move(reported).value();
    d->desired_version = row.get_int(19);
    d->reported_version = row.get_int(20);
    r.add_locked(std::move(d));
    return true;
  }));
  CIVICBUS_RETURN_IF_ERROR(row_error);
  CIVICBUS_RETURN_IF_ERROR(
      db.query("SELECT id, name, kind, query, created_by, created_at, updated_at FROM fleet_groups",
               {}, [&](const storage::Row& row) {
                 Group g;
                 g.id = row.get_text(0);
                 g.name = row.get_text(1);
                 g.kind = row.get_text(2) == "query" ? GroupKind::kQuery : GroupKind::kStatic;
                 auto qj = Json::parse(row.get_text(3));
                 auto q = qj.ok() ? DeviceQuery::from_json(*qj) : Result<DeviceQuery>(qj.status());
                 if (!q.ok()) {
                   row_error = data_loss(fmt::format("fleet_groups row '{}': bad query: {}", g.id,
                                                     q.status().message()));
                   return false;
                 }
                 g.query = std::move(q).value();
                 g.created_by = row.get_text(4);
                 g.created_at = row.get_int(5);
                 g.updated_at = row.get_int(6);
                 std::string id = g.id;
                 r.groups.emplace(std::move(id), std::move(g));
                 return true;
               }));
  CIVICBUS_RETURN_IF_ERROR(row_error);
  CIVICBUS_RETURN_IF_ERROR(
      db.query("SELECT group_id, device_id FROM fleet_group_members ORDER BY group_id, device_id",
               {}, [&](const storage::Row& row) {
                 auto it = r.groups.find(row.get_text(0));
                 if (it != r.groups.end()) it->second.members.emplace_back(row.get_text(1));
                 return true;
               }));
  return std::unique_ptr<Registry>(new Registry(std::move(impl)));
}

// ----- provisioning ------------------------------------------------------------------------

Result<std::shared_ptr<const Device>> Registry::provision(Device device, std::string_view actor) {
  std::vector<Device> one;
  one.push_back(std::move(device));
  CIVICBUS_ASSIGN_OR_RETURN(auto results, provision_batch(std::move(one), actor));
  if (!results[0].status.ok()) return results[0].status;
  return results[0].device;
}

Result<std::vector<ProvisionResult>> Registry::provision_batch(std::vector<Device> devices,
                                                               std::string_view actor) {
  Impl& r = *impl_;
  std::vector<ProvisionResult> results(devices.size());
  std::vector<std::shared_ptr<const Device>> added;
  {
    std::lock_guard write(r.write_mu);
    const TimeMs now = now_ms(r.clock);
    StringMap<std::size_t> batch_ids, batch_serials;
    std::vector<std::shared_ptr<Device>> good;
    good.reserve(devices.size());
    {
      std::shared_lock read(r.mu);
      for (std::size_t i = 0; i < devices.size(); ++i) {
        Device& d = devices[i];
        ProvisionResult& res = results[i];
        res.index = i;
        res.status = r.validate_new(d);
        res.id = d.id.empty() ? d.serial : d.id;
        if (!res.status.ok()) continue;
        if (r.by_id.contains(d.id) || batch_ids.contains(d.id)) {
          res.status = already_exists(fmt::format("device id '{}' is already provisioned", d.id));
          continue;
        }
        if (r.by_serial.contains(d.serial) || batch_serials.contains(d.serial)) {
          res.status = already_exists(
              fmt::format("device '{}': serial '{}' is already used", d.id, d.serial));
          continue;
        }
        batch_ids.emplace(d.id, i);
        batch_serials.emplace(d.serial, i);
        d.created_at = now;
        d.updated_at = now;
        d.desired_version = 0;
        d.reported_version = 0;
        good.push_back(std::make_shared<Device>(std::move(d)));
        res.device = good.back();
      }
    }
    if (!good.empty()) {
      CIVICBUS_RETURN_IF_ERROR(r.db.transaction([&]() -> Status {
        for (const auto& d : good) {
          CIVICBUS_RETURN_IF_ERROR(write_device(r.db, *d, /*insert=*/true));
          if (d->status != DeviceStatus::kProvisioned) {
            CIVICBUS_RETURN_IF_ERROR(write_history(
                r.db, StatusChange{d->id, DeviceStatus::kProvisioned, d->status, std::string(actor),
                                   fmt::format("provisioned as {}", status_name(d->status)), now}));
          }
        }
        return Status();
      }));
      std::unique_lock lock(r.mu);
      for (auto& d : good) {
        r.add_locked(d);
        added.push_back(std::move(d));
      }
    }
  }
  for (const auto& d : added) {
    for (const auto& cb : r.provisioned_callbacks) cb(*d);
  }
  return results;
}

// ----- lifecycle ---------------------------------------------------------------------------

Result<std::shared_ptr<const Device>> Registry::set_status(std::string_view id, DeviceStatus to,
                                                           std::string_view actor,
                                                           std::string_view reason) {
  Impl& r = *impl_;
  StatusChange change;
  std::shared_ptr<const Device> next;
  {
    std::lock_guard write(r.write_mu);
    std::shared_ptr<const Device> current;
    Slot slot;
    {
      std::shared_lock read(r.mu);
      auto s = r.slot_of(id);
      if (!s) return not_found(fmt::format("no device '{}'", id));
      slot = *s;
      current = r.slots[slot];
    }
    if (!transition_allowed(current->status, to)) {
      return failed_precondition(fmt::format(
          "device '{}' cannot go from {} to {} (allowed: provisioned → active, active ⇄ "
          "maintenance, any but decommissioned → decommissioned)",
          id, status_name(current->status), status_name(to)));
    }
    const TimeMs now = now_ms(r.clock);
    auto d = std::make_shared<Device>(*current);
    d->status = to;
    d->updated_at = now;
    change = StatusChange{d->id, current->status, to, std::string(actor), std::string(reason), now};
    CIVICBUS_RETURN_IF_ERROR(r.db.transaction([&]() -> Status {
      CIVICBUS_RETURN_IF_ERROR(write_device(r.db, *d, false));
      return write_history(r.db, change);
    }));
    next = d;
    std::unique_lock lock(r.mu);
    r.replace_locked(slot, next);
  }
  for (const auto& cb : r.status_callbacks) cb(change, *next);
  return next;
}

Result<std::vector<StatusChange>> Registry::history(std::string_view id) const {
  if (find(id) == nullptr) return not_found(fmt::format("no device '{}'", id));
  std::vector<StatusChange> out;
  Status bad;
  CIVICBUS_RETURN_IF_ERROR(impl_->db.query(
      "SELECT from_status, to_status, actor, reason, at FROM fleet_device_history "
      "WHERE device_id = ? ORDER BY seq",
      {id}, [&](const storage::Row& row) {
        auto from = parse_status(row.get_text(0));
        auto to = parse_status(row.get_text(1));
        if (!from.ok() || !to.ok()) {
          bad = data_loss(fmt::format("fleet_device_history of '{}' holds an unknown status", id));
          return false;
        }
        out.push_back(StatusChange{std::string(id), *from, *to, std::string(row.get_text(2)),
                                   std::string(row.get_text(3)), row.get_int(4)});
        return true;
      }));
  CIVICBUS_RETURN_IF_ERROR(bad);
  return out;
}

Result<std::vector<std::string>> Registry::transition_many(
    const std::function<void(const std::function<void(const Device&)>&)>& candidates,
    DeviceStatus to, std::string_view actor, std::string_view reason) {
  Impl& r = *impl_;
  std::vector<std::pair<StatusChange, std::shared_ptr<const Device>>> changes;
  {
    std::lock_guard write(r.write_mu);
    const TimeMs now = now_ms(r.clock);
    std::vector<std::pair<Slot, std::shared_ptr<const Device>>> next;
    {
      std::shared_lock read(r.mu);
      candidates([&](const Device& cur) {
        if (!transition_allowed(cur.status, to)) return;
        auto d = std::make_shared<Device>(cur);
        d->status = to;
        d->updated_at = now;
        changes.emplace_back(
            StatusChange{d->id, cur.status, to, std::string(actor), std::string(reason), now}, d);
        next.emplace_back(r.by_id.find(d->id)->second, d);
      });
    }
    if (!changes.empty()) {
      CIVICBUS_RETURN_IF_ERROR(r.db.transaction([&]() -> Status {
        for (const auto& [change, d] : changes) {
          CIVICBUS_RETURN_IF_ERROR(write_device(r.db, *d, false));
          CIVICBUS_RETURN_IF_ERROR(write_history(r.db, change));
        }
        return Status();
      }));
      std::unique_lock lock(r.mu);
      for (auto& [slot, d] : next) r.replace_locked(slot, std::move(d));
    }
  }
  std::vector<std::string> ids;
  ids.reserve(changes.size());
  for (const auto& [change, d] : changes) {
    for (const auto& cb : r.status_callbacks) cb(change, *d);
    ids.push_back(change.device_id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

Result<std::vector<std::string>> Registry::decommission_where(const DeviceQuery& query,
                                                              std::string_view actor,
                                                              std::string_view reason) {
  DeviceQuery q = query;
  q.limit = q.offset = 0;
  return transition_many(
      [&](const std::function<void(const Device&)>& each) {
        for (const Device* cur : impl_->matching(q)) each(*cur);
      },
      DeviceStatus::kDecommissioned, actor, reason);
}

Result<std::vector<std::string>> Registry::set_status_many(const std::vector<std::string>& ids,
                                                           DeviceStatus to, std::string_view actor,
                                                           std::string_view reason) {
  return transition_many(
      [&](const std::function<void(const Device&)>& each) {
        std::set<std::string_view> seen;
        for (const auto& id : ids) {
          if (!seen.insert(id).second) continue;
          if (auto s = impl_->slot_of(id)) each(*impl_->slots[*s]);
        }
      },
      to, actor, reason);
}

// ----- metadata and twin -------------------------------------------------------------------

Result<std::shared_ptr<const Device>> Registry::update(std::string_view id, const DeviceUpdate& u,
                                                       std::string_view /*actor*/) {
  return impl_->modify(id, [&](Device& d) -> Status {
    if (u.install_date && !u.install_date->empty()) {
      auto st = check_date(*u.install_date, "install_date");
      if (!st.ok()) return st.with_context(fmt::format("device '{}'", d.id));
    }
    if (u.location) CIVICBUS_RETURN_IF_ERROR(check_location(*u.location, d.id));
    if (u.model) d.model = *u.model;
    if (u.firmware_version) d.firmware_version = *u.firmware_version;
    if (u.install_date) d.install_date = *u.install_date;
    if (u.location) d.location = *u.location;
    if (u.asset_id) d.asset_id = *u.asset_id;
    if (u.department) d.department = *u.department;
    if (u.project) d.project = *u.project;
    if (u.network) d.network = *u.network;
    if (u.certificate_serial) d.certificate_serial = *u.certificate_serial;
    if (u.tags) d.tags = *u.tags;
    for (const auto& [k, v] : u.set_tags) d.tags[k] = v;
    for (const auto& k : u.remove_tags) d.tags.erase(k);
    return Status();
  });
}

Result<std::shared_ptr<const Device>> Registry::set_desired(std::string_view id, const Json& patch,
                                                            std::string_view /*actor*/) {
  if (!patch.is_object()) {
    return invalid_argument(
        fmt::format("device '{}': a desired configuration must be a JSON object", id));
  }
  return impl_->modify(id, [&](Device& d) -> Status {
    if (d.status == DeviceStatus::kDecommissioned) {
      return failed_precondition(
          fmt::format("device '{}' is decommissioned; its configuration cannot change", id));
    }
    apply_merge_patch(d.desired, patch);
    ++d.desired_version;
    return Status();
  });
}

Result<std::shared_ptr<const Device>> Registry::report(std::string_view id, const Json& reported,
                                                       bool replace) {
  if (!reported.is_object()) {
    return invalid_argument(
        fmt::format("device '{}': a reported configuration must be a JSON object", id));
  }
  return impl_->modify(id, [&](Device& d) -> Status {
    if (replace) {
      d.reported = reported;
    } else {
      apply_merge_patch(d.reported, reported);
    }
    ++d.reported_version;
    return Status();
  });
}

Result<Json> Registry::delta(std::string_view id) const {
  auto d = find(id);
  if (d == nullptr) return not_found(fmt::format("no device '{}'", id));
  return twin_delta(d->desired, d->reported);
}

// ----- reads -------------------------------------------------------------------------------

std::shared_ptr<const Device> Registry::find(std::string_view id) const {
  std::shared_lock read(impl_->mu);
  auto it = impl_->by_id.find(id);
  return it == impl_->by_id.end() ? nullptr : impl_->slots[it->second];
}

std::shared_ptr<const Device> Registry::find_by_serial(std::string_view serial) const {
  std::shared_lock read(impl_->mu);
  auto it = impl_->by_serial.find(serial);
  return it == impl_->by_serial.end() ? nullptr : impl_->slots[it->second];
}

std::size_t Registry::size() const {
  std::shared_lock read(impl_->mu);
  return impl_->slots.size();
}

DeviceQueryResult Registry::query(const DeviceQuery& q) const {
  const Impl& r = *impl_;
  std::shared_lock read(r.mu);
  std::vector<const Device*> hits = r.matching(q);
  DeviceQueryResult out;
  out.total = hits.size();
  if (q.offset >= hits.size()) return out;
  const auto by_id = [](const Device* a, const Device* b) { return a->id < b->id; };
  const std::size_t end = q.limit == 0 ? hits.size() : std::min(hits.size(), q.offset + q.limit);
  if (end < hits.size()) {
    std::partial_sort(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(end), hits.end(),
                      by_id);
  } else {
    std::sort(hits.begin(), hits.end(), by_id);
  }
  out.devices.reserve(end - q.offset);
  for (std::size_t i = q.offset; i < end; ++i) {
    out.devices.push_back(r.slots[r.by_id.find(hits[i]->id)->second]);
  }
  return out;
}

// ----- groups ------------------------------------------------------------------------------

Result<Group> Registry::create_group(Group group, std::string_view actor) {
  Impl& r = *impl_;
  if (group.name.empty()) return invalid_argument("a group needs a name");
  if (group.id.empty()) group.id = slug(group.name);
  if (group.id.empty()) {
    return invalid_argument(
        fmt::format("group '{}': cannot derive an id from the name; give one", group.name));
  }
  std::sort(group.members.begin(), group.members.end());
  group.members.erase(std::unique(group.members.begin(), group.members.end()), group.members.end());
  if (group.kind == GroupKind::kQuery && !group.members.empty()) {
    return invalid_argument(fmt::format(
        "group '{}' is a query group: its members come from its query, not a list", group.id));
  }
  group.query.limit = group.query.offset = 0;
  if (group.query.bbox) {
    auto st = check_bbox(*group.query.bbox);
    if (!st.ok()) return st.with_context(fmt::format("group '{}'", group.id));
  }
  std::lock_guard write(r.write_mu);
  {
    std::shared_lock read(r.mu);
    if (r.groups.contains(group.id)) {
      return already_exists(fmt::format("group '{}' already exists", group.id));
    }
    for (const auto& m : group.members) {
      if (!r.by_id.contains(m)) {
        return invalid_argument(fmt::format("group '{}': no device '{}'", group.id, m));
      }
    }
  }
  const TimeMs now = now_ms(r.clock);
  group.created_by = std::string(actor);
  group.created_at = group.updated_at = now;
  const std::string query_text = group.query.to_json().dump();
  CIVICBUS_RETURN_IF_ERROR(r.db.transaction([&]() -> Status {
    auto ins = r.db.execute(
        "INSERT INTO fleet_groups (id, name, kind, query, created_by, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        {std::string_view(group.id), std::string_view(group.name), group_kind_name(group.kind),
         std::string_view(query_text), std::string_view(group.created_by), std::int64_t{now},
         std::int64_t{now}});
    if (!ins.ok()) return ins.status();
    for (const auto& m : group.members) {
      auto st = r.db.execute("INSERT INTO fleet_group_members (group_id, device_id) VALUES (?, ?)",
                             {std::string_view(group.id), std::string_view(m)});
      if (!st.ok()) return st.status();
    }
    return Status();
  }));
  std::unique_lock lock(r.mu);
  r.groups.emplace(group.id, group);
  ++r.groups_generation;
  return group;
}

Result<Group> Registry::get_group(std::string_view group_id) const {
  std::shared_lock read(impl_->mu);
  auto it = impl_->groups.find(group_id);
  if (it == impl_->groups.end()) return not_found(fmt::format("no group '{}'", group_id));
  return it->second;
}

std::vector<Group> Registry::list_groups() const {
  std::shared_lock read(impl_->mu);
  std::vector<Group> out;
  out.reserve(impl_->groups.size());
  for (const auto& [id, g] : impl_->groups) out.push_back(g);
  return out;
}

Status Registry::delete_group(std::string_view group_id, std::string_view /*actor*/) {
  Impl& r = *impl_;
  std::lock_guard write(r.write_mu);
  {
    std::shared_lock read(r.mu);
    if (!r.groups.contains(group_id)) return not_found(fmt::format("no group '{}'", group_id));
  }
  CIVICBUS_RETURN_IF_ERROR(r.db.transaction([&]() -> Status {
    auto a = r.db.execute("DELETE FROM fleet_group_members WHERE group_id = ?", {group_id});
    if (!a.ok()) return a.status();
    auto b = r.db.execute("DELETE FROM fleet_groups WHERE id = ?", {group_id});
    return b.ok() ? Status() : b.status();
  }));
  std::unique_lock lock(r.mu);
  r.groups.erase(r.groups.find(group_id));
  ++r.groups_generation;
  return Status();
}

namespace {

Status change_members(storage::Database& db, std::string_view group_id,
                      const std::vector<std::string>& ids, bool add) {
  return db.transaction([&]() -> Status {
    for (const auto& m : ids) {
      auto st =
          add ? db.execute(
                    "INSERT INTO fleet_group_members (group_id, device_id) VALUES (?, ?) "
                    "ON CONFLICT DO NOTHING",
                    {group_id, std::string_view(m)})
              : db.execute("DELETE FROM fleet_group_members WHERE group_id = ? AND device_id = ?",
                           {group_id, std::string_view(m)});
      if (!st.ok()) return st.status();
    }
    return Status();
  });
}

}  // namespace

Status Registry::add_members(std::string_view group_id, const std::vector<std::string>& ids) {
  Impl& r = *impl_;
  std::lock_guard write(r.write_mu);
  {
    std::shared_lock read(r.mu);
    auto it = r.groups.find(group_id);
    if (it == r.groups.end()) return not_found(fmt::format("no group '{}'", group_id));
    if (it->second.kind != GroupKind::kStatic) {
      return failed_precondition(fmt::format(
          "group '{}' is a query group: change its query to change its members", group_id));
    }
    for (const auto& m : ids) {
      if (!r.by_id.contains(m)) {
        return invalid_argument(fmt::format("group '{}': no device '{}'", group_id, m));
      }
    }
  }
  CIVICBUS_RETURN_IF_ERROR(change_members(r.db, group_id, ids, true));
  std::unique_lock lock(r.mu);
  auto& members = r.groups.find(group_id)->second.members;
  members.insert(members.end(), ids.begin(), ids.end());
  std::sort(members.begin(), members.end());
  members.erase(std::unique(members.begin(), members.end()), members.end());
  r.groups.find(group_id)->second.updated_at = now_ms(r.clock);
  ++r.groups_generation;
  return Status();
}

Status Registry::remove_members(std::string_view group_id, const std::vector<std::string>& ids) {
  Impl& r = *impl_;
  std::lock_guard write(r.write_mu);
  {
    std::shared_lock read(r.mu);
    auto it = r.groups.find(group_id);
    if (it == r.groups.end()) return not_found(fmt::format("no group '{}'", group_id));
    if (it->second.kind != GroupKind::kStatic) {
      return failed_precondition(fmt::format(
          "group '{}' is a query group: change its query to change its members", group_id));
    }
  }
  CIVICBUS_RETURN_IF_ERROR(change_members(r.db, group_id, ids, false));
  std::unique_lock lock(r.mu);
  auto& members = r.groups.find(group_id)->second.members;
  std::set<std::string_view> gone(ids.begin(), ids.end());
  std::erase_if(members, [&](const std::string& m) { return gone.contains(m); });
  r.groups.find(group_id)->second.updated_at = now_ms(r.clock);
  ++r.groups_generation;
  return Status();
}

Result<std::vector<std::string>> Registry::members(std::string_view group_id) const {
  const Impl& r = *impl_;
  std::shared_lock read(r.mu);
  auto it = r.groups.find(group_id);
  if (it == r.groups.end()) return not_found(fmt::format("no group '{}'", group_id));
  const Group& g = it->second;
  if (g.kind == GroupKind::kStatic) return g.members;
  std::vector<const Device*> hits = r.matching(g.query);
  std::vector<std::string> ids;
  ids.reserve(hits.size());
  for (const Device* d : hits) ids.push_back(d->id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<std::string> Registry::groups_of(std::string_view device_id) const {
  const Impl& r = *impl_;
  std::shared_lock read(r.mu);
  auto s = r.slot_of(device_id);
  if (!s) return {};
  const auto& device = r.slots[*s];
  std::lock_guard cache(r.cache_mu);
  GroupsCacheEntry& e = r.groups_cache[*s];
  if (e.generation != r.groups_generation || e.device != device) {
    e.groups = r.compute_groups_of(*device);
    e.generation = r.groups_generation;
    e.device = device;
  }
  return e.groups;
}

// ----- callbacks ---------------------------------------------------------------------------

void Registry::on_status_changed(StatusChangedCallback cb) {
  impl_->status_callbacks.push_back(std::move(cb));
}

void Registry::on_provisioned(ProvisionedCallback cb) {
  impl_->provisioned_callbacks.push_back(std::move(cb));
}

}  // namespace civicbus::fleet
