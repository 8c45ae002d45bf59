#include "fleet/device_import.hpp"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <unordered_map>

#include "civicbus/core/csv.hpp"
#include "civicbus/core/json.hpp"
#include "core/civil_date.hpp"

namespace civicbus::fleet {
namespace {

enum Field : std::size_t {
  kSerial,
  kType,
  kLat,
  kLon,
  kAssetId,
  kId,
  kModel,
  kFirmwareVersion,
  kInstallDate,
  kDepartment,
  kProject,
  kNetwork,
  kTags,
  kFieldCount,
};

constexpr std::array<std::string_view, kFieldCount> kFieldNames = {
    "serial",           "type",         "lat",        "lon",     "asset_id", "id",  "model",
    "firmware_version", "install_date", "department", "project", "network",  "tags"};

std::optional<Field> field_by_name(std::string_view name) {
  for (std::size_t i = 0; i < kFieldCount; ++i) {
    if (kFieldNames[i] == name) return static_cast<Field>(i);
  }
  if (name == "latitude") return kLat;
  if (name == "longitude" || name == "lng") return kLon;
  if (name == "firmware") return kFirmwareVersion;
  return std::nullopt;
}

std::string known_fields() {
  std::string out;
  for (auto name : kFieldNames) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// One row before validation: the text of each field ("" when absent), from either format.
struct RawRow {
  std::size_t line = 0;
  bool json_item = false;
  std::array<std::string, kFieldCount> values;
  std::optional<std::map<std::string, std::string>> tag_object;  // JSON "tags": {…}
  std::vector<ImportError> errors;  // found while reading (JSON value types, unknown keys)
};

std::optional<double> parse_number(std::string_view text) {
  double v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || p != end || !std::isfinite(v)) return std::nullopt;
  return v;
}

bool valid_date(std::string_view s) {
  return detail::is_iso_date(s);
}

// Why `id` cannot name a device (it goes into MQTT topics and certificate subjects), or "".
std::string id_problem(std::string_view id) {
  for (char c : id) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) return "may not contain spaces or control characters";
    if (c == '/' || c == '+' || c == '#') {
      return fmt::format("may not contain '{}' (device ids are MQTT topic levels)", c);
    }
  }
  return "";
}

// Tracks serials and ids already seen in the file, to name the first line of a duplicate.
struct Seen {
  std::unordered_map<std::string, std::size_t> serials;
  std::unordered_map<std::string, std::size_t> ids;
};

void validate(RawRow&& raw, const DeviceTypeLookup& types, Seen& seen, ImportPlan& plan) {
  std::vector<ImportError> errors = std::move(raw.errors);
  auto fail = [&](Field f, std::string reason) {
    errors.push_back(
        ImportError{raw.line, std::string(kFieldNames[f]), std::move(reason), raw.json_item});
  };
  auto where = [&](std::size_t line) {
    return fmt::format("{} {}", raw.json_item ? "item" : "line", line);
  };
  auto& v = raw.values;
  Device d;

  // Lengths first: nothing below should quote a 10 kB cell back.
  for (std::size_t f = 0; f < kFieldCount; ++f) {
    if (f == kTags) continue;
    const std::size_t limit =
        (f == kSerial || f == kId) ? kMaxImportIdLength : kMaxImportFieldLength;
    if (v[f].size() > limit) {
      fail(static_cast<Field>(f),
           fmt::format("is {} characters long, at most {} allowed", v[f].size(), limit));
      v[f].clear();
      v[f].push_back('\0');  // marks "present but rejected" for the checks below
    }
  }
  auto rejected = [&](Field f) { return v[f].size() == 1 && v[f][0] == '\0'; };

  if (v[kSerial].empty()) {
    fail(kSerial, "is required");
  } else if (!rejected(kSerial)) {
    d.serial = v[kSerial];
    auto [it, inserted] = seen.serials.emplace(d.serial, raw.line);
    if (!inserted) {
      fail(kSerial,
           fmt::format("duplicate serial '{}' (first on {})", d.serial, where(it->second)));
    }
  }

  const DeviceType* type = nullptr;
  if (v[kType].empty()) {
    fail(kType, "is required");
  } else if (!rejected(kType)) {
    type = types ? types(v[kType]) : nullptr;
    if (type == nullptr) {
      fail(kType, fmt::format("unknown device type '{}'", v[kType]));
    } else {
      d.type = type->name;
    }
  }

  // id: given, or the serial.
  if (!rejected(kId) && !rejected(kSerial)) {
    const bool from_serial = v[kId].empty();
    d.id = from_serial ? d.serial : v[kId];
    if (!d.id.empty()) {
      if (std::string problem = id_problem(d.id); !problem.empty()) {
        fail(from_serial ? kSerial : kId,
             from_serial ? fmt::format("serial '{}' is also the device id (no id given) and {}; "
                                       "give an id",
                                       d.id, problem)
                         : fmt::format("id '{}' {}", d.id, problem));
      } else {
        auto [it, inserted] = seen.ids.emplace(d.id, raw.line);
        // A serial standing in for the id was already reported if it is a duplicate serial.
        const bool reported = from_serial && seen.serials.find(d.serial)->second != raw.line;
        if (!inserted && !reported) {
          fail(from_serial ? kSerial : kId,
               fmt::format("duplicate id '{}' (first on {}){}", d.id, where(it->second),
                           from_serial ? "; the serial is the id when no id is given" : ""));
        }
      }
    }
  }

  // Location: both or neither.
  const bool has_lat = !v[kLat].empty() && !rejected(kLat);
  const bool has_lon = !v[kLon].empty() && !rejected(kLon);
  std::optional<double> lat, lon;
  if (has_lat) {
    lat = parse_number(v[kLat]);
    if (!lat) {
      fail(kLat, fmt::format("'{}' is not a number", v[kLat]));
    } else if (*lat < -90 || *lat > 90) {
      fail(kLat, fmt::format("{} is outside -90..90", v[kLat]));
      lat.reset();
    }
  }
  if (has_lon) {
    lon = parse_number(v[kLon]);
    if (!lon) {
      fail(kLon, fmt::format("'{}' is not a number", v[kLon]));
    } else if (*lon < -180 || *lon > 180) {
      fail(kLon, fmt::format("{} is outside -180..180", v[kLon]));
      lon.reset();
    }
  }
  if (has_lat != has_lon && !rejected(kLat) && !rejected(kLon)) {
    fail(has_lat ? kLon : kLat, fmt::format("{} is given without {}: give both or neither",
                                            has_lat ? "lat" : "lon", has_lat ? "lon" : "lat"));
  }
  if (lat && lon) d.location = GeoPoint{*lat, *lon};

  if (!v[kInstallDate].empty() && !rejected(kInstallDate)) {
    if (!valid_date(v[kInstallDate])) {
      fail(kInstallDate, fmt::format("'{}' is not a date in the form YYYY-MM-DD", v[kInstallDate]));
    } else {
      d.install_date = v[kInstallDate];
    }
  }

  if (!v[kNetwork].empty() && !rejected(kNetwork)) {
    auto network = parse_network(lower(v[kNetwork]));
    if (!network.ok()) {
      fail(kNetwork,
           fmt::format("unknown network '{}' (mqtt, lorawan, sigfox or http)", v[kNetwork]));
    } else {
      d.network = *network;
    }
  } else if (type != nullptr) {
    d.network = type->default_network;
  }

  // Tags: "k=v;k=v" or a JSON object.
  std::map<std::string, std::string> tags;
  bool tags_ok = true;
  if (raw.tag_object) {
    tags = std::move(*raw.tag_object);
  } else if (!v[kTags].empty()) {
    std::string_view rest = v[kTags];
    while (!rest.empty() && tags_ok) {
      const std::size_t semi = rest.find(';');
      std::string_view pair = trim(rest.substr(0, semi));
      rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
      if (pair.empty()) continue;
      const std::size_t eq = pair.find('=');
      if (eq == std::string_view::npos || trim(pair.substr(0, eq)).empty()) {
        fail(kTags, fmt::format("'{}' is not key=value (tags are \"k=v;k=v\")", pair));
        tags_ok = false;
        break;
      }
      std::string key(trim(pair.substr(0, eq)));
      if (tags.count(key) != 0) {
        fail(kTags, fmt::format("tag '{}' is given twice", key));
        tags_ok = false;
        break;
      }
      tags.emplace(std::move(key), std::string(trim(pair.substr(eq + 1))));
    }
  }
  if (tags_ok) {
    if (tags.size() > kMaxImportTags) {
      fail(kTags, fmt::format("{} tags, at most {} allowed", tags.size(), kMaxImportTags));
    } else {
      for (const auto& [key, value] : tags) {
        if (key.size() > kMaxImportTagKeyLength || value.size() > kMaxImportFieldLength) {
          fail(kTags,
               fmt::format("tag '{}' is too long (keys at most {}, values at most {} "
                           "characters)",
                           key.substr(0, 32), kMaxImportTagKeyLength, kMaxImportFieldLength));
          tags_ok = false;
          break;
        }
      }
    }
  }

  if (!errors.empty()) {
    for (auto& e : errors) plan.errors.push_back(std::move(e));
    return;
  }
  d.tags = std::move(tags);
  d.asset_id = v[kAssetId];
  d.model = v[kModel];
  d.firmware_version = v[kFirmwareVersion];
  d.department = v[kDepartment];
  d.project = v[kProject];
  plan.rows.push_back(ImportRow{raw.line, std::move(d)});
}

// A JSON value as field text; an error for arrays, objects and booleans.
std::optional<std::string> json_text(const Json& j) {
  switch (j.type()) {
    case Json::Type::kNull:
      return std::string();
    case Json::Type::kString:
      return std::string(trim(j.as_string()));
    case Json::Type::kInt:
      return std::to_string(j.as_int());
    case Json::Type::kDouble:
      return fmt::format("{}", j.as_double());
    default:
      return std::nullopt;
  }
}

}  // namespace

std::string ImportError::location() const {
  return fmt::format("{} {}", json_item ? "item" : "line", line);
}

std::string ImportError::message() const {
  if (field.empty()) return fmt::format("{}: {}", location(), reason);
  return fmt::format("{}: {}: {}", location(), field, reason);
}

Result<ImportPlan> parse_device_csv(std::string_view text, const DeviceTypeLookup& types,
                                    const ImportOptions& options) {
  CsvReader reader(text, CsvOptions{.delimiter = options.csv_delimiter});
  CIVICBUS_ASSIGN_OR_RETURN(std::optional<CsvRecord> header, reader.next_record());
  if (!header) return invalid_argument("device import: the CSV file is empty (no header row)");

  std::vector<std::optional<Field>> columns;
  std::vector<std::string> unknown;
  std::array<bool, kFieldCount> present{};
  for (const std::string& name : header->fields) {
    const std::string key = lower(trim(name));
    auto f = field_by_name(key);
    if (!f) {
      unknown.push_back(fmt::format("'{}'", name));
    } else if (present[*f]) {
      return invalid_argument(fmt::format(
          "device import: column '{}' appears twice in the header (line {})", name, header->line));
    } else {
      present[*f] = true;
    }
    columns.push_back(f);
  }
  if (!unknown.empty()) {
    return invalid_argument(fmt::format(
        "device import: unknown column{} {} in the header (line {}); known columns: {}",
        unknown.size() > 1 ? "s" : "", fmt::join(unknown, ", "), header->line, known_fields()));
  }
  for (Field required : {kSerial, kType}) {
    if (!present[required]) {
      return invalid_argument(fmt::format(
          "device import: the header (line {}) has no '{}' column; required columns: serial, "
          "type",
          header->line, kFieldNames[required]));
    }
  }

  ImportPlan plan;
  Seen seen;
  for (;;) {
    CIVICBUS_ASSIGN_OR_RETURN(std::optional<CsvRecord> record, reader.next_record());
    if (!record) break;
    RawRow raw;
    raw.line = record->line;
    if (record->fields.size() > columns.size()) {
      plan.errors.push_back(ImportError{record->line, "",
                                        fmt::format("has {} fields, the header has {} columns",
                                                    record->fields.size(), columns.size())});
      continue;
    }
    for (std::size_t i = 0; i < record->fields.size(); ++i) {
      raw.values[*columns[i]] = std::string(trim(record->fields[i]));
    }
    validate(std::move(raw), types, seen, plan);
  }
  return plan;
}

Result<ImportPlan> parse_device_json(std::string_view text, const DeviceTypeLookup& types) {
  auto parsed = Json::parse(text);
  if (!parsed.ok()) return parsed.status().with_context("device import: the JSON is invalid");
  const Json* items = &*parsed;
  if (items->is_object() && items->find("devices") != nullptr) items = items->find("devices");
  if (!items->is_array()) {
    return invalid_argument(
        "device import: the JSON must be an array of device objects (or {\"devices\": [...]})");
  }
  ImportPlan plan;
  Seen seen;
  std::size_t index = 0;
  for (const Json& item : items->as_array()) {
    ++index;
    RawRow raw;
    raw.line = index;
    raw.json_item = true;
    if (!item.is_object()) {
      plan.errors.push_back(ImportError{index, "", "is not an object", true});
      continue;
    }
    for (const auto& [key, value] : item.as_object()) {
      if (key == "location" && (value.is_object() || value.is_null())) {
        for (auto [name, field] : {std::pair{"lat", kLat}, std::pair{"lon", kLon}}) {
          const Json* coord = value.find(name);
          if (coord == nullptr) continue;
          auto t = json_text(*coord);
          if (!t) {
            raw.errors.push_back(ImportError{index, name, "must be a number", true});
          } else {
            raw.values[field] = std::move(*t);
          }
        }
        continue;
      }
      auto f = field_by_name(lower(key));
      if (!f) {
        raw.errors.push_back(ImportError{
            index, key, fmt::format("unknown field; known fields: {}, location", known_fields()),
            true});
        continue;
      }
      if (*f == kTags && value.is_object()) {
        std::map<std::string, std::string> tags;
        for (const auto& [k, tv] : value.as_object()) {
          auto t = json_text(tv);
          if (!t) {
            raw.errors.push_back(ImportError{
                index, "tags", fmt::format("tag '{}' must be a string or a number", k), true});
            continue;
          }
          tags[k] = std::move(*t);
        }
        raw.tag_object = std::move(tags);
        continue;
      }
      auto t = json_text(value);
      if (!t) {
        raw.errors.push_back(
            ImportError{index, std::string(kFieldNames[*f]), "must be a string or a number", true});
        continue;
      }
      raw.values[*f] = std::move(*t);
    }
    validate(std::move(raw), types, seen, plan);
  }
  return plan;
}

Result<ImportPlan> parse_device_import(std::string_view text, const DeviceTypeLookup& types,
                                       const ImportOptions& options) {
  std::string_view body = text;
  if (body.starts_with("\xEF\xBB\xBF")) body.remove_prefix(3);
  const std::size_t first = body.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && (body[first] == '[' || body[first] == '{')) {
    return parse_device_json(body, types);
  }
  return parse_device_csv(text, types, options);
}

std::string import_errors_csv(const ImportPlan& plan) {
  std::string out = "where,field,reason\r\n";
  for (const ImportError& e : plan.errors) {
    const std::string fields[] = {e.location(), e.field, e.reason};
    out += csv_format_record(fields);
  }
  return out;
}

}  // namespace civicbus::fleet
