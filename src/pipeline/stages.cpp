#include "stages.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <unordered_map>

#include "civicbus/connect/field_mapping.hpp"
#include "civicbus/core/crypto.hpp"
#include "civicbus/core/json_schema.hpp"
#include "civicbus/core/time_zone.hpp"
#include "civicbus/match/address.hpp"
#include "civicbus/match/compare.hpp"
#include "civicbus/match/engine.hpp"
#include "core/civil_date.hpp"
#include "core/read_file.hpp"

namespace civicbus::pipeline::detail {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

// Sets `target` to the text `value`, reusing the string `target` already holds: stages run
// on another thread than the source that allocated the record, and writing into the existing
// buffer saves a free into that thread's malloc arena and an allocation.
void assign_text(Json& target, std::string_view value) {
  if (target.is_string()) {
    target.as_string().assign(value);
  } else {
    target = Json(value);
  }
}

// The text of a scalar for error reports and string conversions.
std::string text_of(const Json& v) {
  return v.is_string() ? v.as_string() : v.dump();
}

// Remembers the columns of the last batch seen so a stage resolves field names once per
// column list, not once per record.
class ColumnCache {
 public:
  // True when `batch` has another column list than last time (the caller re-resolves).
  bool changed(const RecordBatch& batch) {
    if (batch.columns == columns_) return false;
    columns_ = batch.columns;
    return true;
  }

 private:
  std::vector<std::string> columns_;
};

bool parse_number(std::string_view s, int width_min, int width_max, std::int64_t& out) {
  if (s.size() < static_cast<std::size_t>(width_min)) return false;
  int n = 0;
  std::int64_t v = 0;
  while (n < width_max && static_cast<std::size_t>(n) < s.size() && s[n] >= '0' && s[n] <= '9') {
    v = v * 10 + (s[n] - '0');
    ++n;
  }
  if (n < width_min) return false;
  out = v;
  return true;
}

constexpr std::string_view kMonths[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                        "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};

}  // namespace

bool parse_date_time(std::string_view text, std::string_view format, std::int64_t& days,
                     std::int64_t& seconds) {
  std::int64_t year = 1970, month = 1, day = 1, hour = 0, minute = 0, second = 0;
  std::size_t t = 0;
  auto take = [&](int min_width, int max_width, std::int64_t& out) {
    std::int64_t v = 0;
    std::string_view rest = text.substr(t);
    int n = 0;
    while (n < max_width && static_cast<std::size_t>(n) < rest.size() && rest[n] >= '0' &&
           rest[n] <= '9') {
      ++n;
    }
    if (n < min_width || !parse_number(rest, n, n, v)) return false;
    t += static_cast<std::size_t>(n);
    out = v;
    return true;
  };
  for (std::size_t f = 0; f < format.size(); ++f) {
    if (format[f] != '%' || f + 1 == format.size()) {
      if (t >= text.size() || text[t] != format[f]) return false;
      ++t;
      continue;
    }
    char spec = format[++f];
    bool ok = true;
    switch (spec) {
      case 'Y':
        ok = take(4, 4, year);
        break;
      case 'y':
        ok = take(2, 2, year);
        year += year < 70 ? 2000 : 1900;  // POSIX's pivot
        break;
      case 'm':
        ok = take(1, 2, month);
        break;
      case 'd':
        ok = take(1, 2, day);
        break;
      case 'H':
        ok = take(1, 2, hour);
        break;
      case 'M':
        ok = take(1, 2, minute);
        break;
      case 'S':
        ok = take(1, 2, second);
        break;
      case 'b': {
        if (t + 3 > text.size()) return false;
        std::string m = upper(text.substr(t, 3));
        auto it = std::find(std::begin(kMonths), std::end(kMonths), m);
        if (it == std::end(kMonths)) return false;
        month = (it - std::begin(kMonths)) + 1;
        t += 3;
        break;
      }
      case '%':
        ok = t < text.size() && text[t++] == '%';
        break;
      default:
        return false;
    }
    if (!ok) return false;
  }
  if (t != text.size()) return false;
  if (month < 1 || month > 12 || day < 1 ||
      day > civicbus::detail::days_in_month(year, static_cast<unsigned>(month)) || hour > 23 ||
      minute > 59 || second > 60) {
    return false;
  }
  days = civicbus::detail::days_from_civil(year, static_cast<unsigned>(month),
                                           static_cast<unsigned>(day));
  seconds = hour * 3600 + minute * 60 + std::min<std::int64_t>(second, 59);
  return true;
}

namespace {

enum class Target { kString, kInteger, kNumber, kBoolean, kDate, kTimestamp, kEnum };

struct FieldRule {
  std::string field;
  Target target = Target::kString;
  std::vector<std::string> formats;
  std::vector<std::string> values;              // enum values, canonical spelling
  std::unordered_map<std::string, int> lookup;  // upper-cased value -> index
  bool required = false;
  char thousands = 0;
  std::string formats_text;  // for messages
  int column = -1;
};

// Converts fields to their types: integer, number, boolean, date (ISO 8601 out), timestamp
// (RFC 3339 UTC out; inputs without an offset are read in `time_zone`), enum, string.
class TypesStage final : public Stage {
 public:
  static Result<std::unique_ptr<Stage>> create(const StageOptions& options) {
    auto stage = std::unique_ptr<TypesStage>(new TypesStage(options.name));
    const Json* fields = options.config.find("fields");
    if (fields == nullptr || !fields->is_object() || fields->size() == 0) {
      return invalid_argument("types stage needs 'fields': {name: {type: …}}");
    }
    if (std::string zone = options.config.get_string("time_zone"); !zone.empty()) {
      CIVICBUS_ASSIGN_OR_RETURN(TimeZone tz, TimeZone::load(zone));
      stage->zone_ = std::move(tz);
    }
    for (const auto& [name, spec] : fields->as_object()) {
      FieldRule rule;
      rule.field = name;
      std::string type = spec.is_string() ? spec.as_string() : spec.get_string("type", "string");
      static const std::pair<std::string_view, Target> kTargets[] = {
          {"string", Target::kString}, {"integer", Target::kInteger},
          {"number", Target::kNumber}, {"boolean", Target::kBoolean},
          {"date", Target::kDate},     {"timestamp", Target::kTimestamp},
          {"enum", Target::kEnum}};
      auto it = std::find_if(std::begin(kTargets), std::end(kTargets),
                             [&](const auto& p) { return p.first == type; });
      if (it == std::end(kTargets)) {
        return invalid_argument(fmt::format(
            "field '{}': unknown type '{}' (string, integer, number, boolean, date, timestamp, "
            "enum)",
            name, type));
      }
      rule.target = it->second;
      rule.required = spec.get_bool("required");
      if (std::string sep = spec.get_string("thousands_separator"); sep.size() == 1) {
        rule.thousands = sep[0];
      }
      if (const Json* formats = spec.find("formats"); formats != nullptr && formats->is_array()) {
        for (const auto& f : formats->as_array()) rule.formats.push_back(f.as_string());
      } else if (std::string f = spec.get_string("format"); !f.empty()) {
        rule.formats.push_back(f);
      }
      if (rule.formats.empty()) {
        if (rule.target == Target::kDate) rule.formats = {"%Y-%m-%d"};
        if (rule.target == Target::kTimestamp) {
          rule.formats = {"%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"};
        }
      }
      for (const auto& f : rule.formats) {
        rule.formats_text += (rule.formats_text.empty() ? "" : ", ") + f;
      }
      if (rule.target == Target::kEnum) {
        const Json* values = spec.find("values");
        if (values == nullptr || !values->is_array() || values->size() == 0) {
          return invalid_argument(fmt::format("field '{}': an enum needs 'values'", name));
        }
        for (const auto& v : values->as_array()) {
          rule.lookup.emplace(upper(text_of(v)), static_cast<int>(rule.values.size()));
          rule.values.push_back(text_of(v));
        }
      }
      stage->rules_.push_back(std::move(rule));
    }
    return std::unique_ptr<Stage>(std::move(stage));
  }

  std::string_view name() const override { return name_; }

  Status process(RecordBatch& batch, std::vector<RowError>& errors) override {
    if (columns_.changed(batch)) {
      for (auto& rule : rules_) rule.column = batch.column_index(rule.field);
    }
    std::size_t kept = 0;
    for (std::size_t r = 0; r < batch.records.size(); ++r) {
      connect::Record& record = batch.records[r];
      bool ok = true;
      for (const auto& rule : rules_) {
        if (rule.column < 0) {
          if (rule.required) {
            errors.push_back({record.position, rule.field, "", "required field is missing"});
            ok = false;
            break;
          }
          continue;
        }
        if (record.values.size() <= static_cast<std::size_t>(rule.column)) {
          record.values.resize(batch.columns.size());
        }
        Json& value = record.values[static_cast<std::size_t>(rule.column)];
        std::string reason;
        if (!convert(rule, value, reason)) {
          errors.push_back({record.position, rule.field, text_of(value), std::move(reason)});
          ok = false;
          break;
        }
      }
      if (ok) {
        if (kept != r) batch.records[kept] = std::move(record);
        ++kept;
      }
    }
    batch.records.resize(kept);
    return Status();
  }

 private:
  explicit TypesStage(std::string name) : name_(std::move(name)) {}

  bool convert(const FieldRule& rule, Json& value, std::string& reason) const {
    if (value.is_null() || (value.is_string() && trim(value.as_string()).empty())) {
      if (rule.required) {
        reason = "required field is empty";
        return false;
      }
      value = Json();
      return true;
    }
    switch (rule.target) {
      case Target::kString:
        if (!value.is_string()) value = Json(value.dump());
        return true;
      case Target::kInteger: {
        if (value.is_int()) return true;
        if (value.is_double() && value.is_integral()) {
          value = Json(static_cast<std::int64_t>(value.as_double()));
          return true;
        }
        if (!value.is_string()) break;
        std::string digits = strip(trim(value.as_string()), rule.thousands);
        std::string_view s = digits;
        if (!s.empty() && s.front() == '+') s.remove_prefix(1);
        std::int64_t v = 0;
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec != std::errc() || end != s.data() + s.size()) {
          reason = ec == std::errc::result_out_of_range ? "integer out of range" : "not an integer";
          return false;
        }
        value = Json(v);
        return true;
      }
      case Target::kNumber: {
        if (value.is_number()) return true;
        if (!value.is_string()) break;
        std::string digits = strip(trim(value.as_string()), rule.thousands);
        std::string_view s = digits;
        if (!s.empty() && s.front() == '+') s.remove_prefix(1);
        double v = 0;
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec != std::errc() || end != s.data() + s.size()) {
          reason = "not a number";
          return false;
        }
        value = Json(v);
        return true;
      }
      case Target::kBoolean: {
        if (value.is_bool()) return true;
        std::string s = upper(trim(text_of(value)));
        if (s == "TRUE" || s == "T" || s == "YES" || s == "Y" || s == "1" || s == "OUI") {
          value = Json(true);
          return true;
        }
        if (s == "FALSE" || s == "F" || s == "NO" || s == "N" || s == "0" || s == "NON") {
          value = Json(false);
          return true;
        }
        reason = "not a boolean (true/false, yes/no, y/n, 1/0, oui/non)";
        return false;
      }
      case Target::kDate:
      case Target::kTimestamp: {
        std::string_view s = value.is_string() ? trim(value.as_string()) : std::string_view();
        if (rule.target == Target::kTimestamp && s.size() > 10) {
          if (auto t = parse_rfc3339(s); t.ok()) {
            value = Json(format_rfc3339(t.value()));
            return true;
          }
        }
        for (const auto& f : rule.formats) {
          std::int64_t days = 0, secs = 0;
          if (!parse_date_time(s, f, days, secs)) continue;
          if (rule.target == Target::kDate) {
            auto c = civicbus::detail::civil_from_days(days);
            char text[16];
            auto put = [&](char* at, std::int64_t v, int width) {
              for (int i = width - 1; i >= 0; --i, v /= 10) at[i] = static_cast<char>('0' + v % 10);
            };
            if (c.year >= 0 && c.year <= 9999) {
              put(text, c.year, 4);
              text[4] = '-';
              put(text + 5, c.month, 2);
              text[7] = '-';
              put(text + 8, c.day, 2);
              assign_text(value, std::string_view(text, 10));
            } else {
              value = Json(fmt::format("{:04}-{:02}-{:02}", c.year, c.month, c.day));
            }
          } else {
            std::int64_t local = days * 86400 + secs;
            // A time in the spring-forward gap moves forward by the gap (02:30 → 03:30 EDT), as
            // java.time and Postgres do; a repeated hour takes its first occurrence.
            LocalTimeResolution at = zone_.from_local(local, Disambiguation::kEarlier);
            if (at.kind == LocalTimeKind::kSkipped) {
              at = zone_.from_local(local, Disambiguation::kLater);
            }
            std::int64_t utc = at.utc_seconds;
            value = Json(format_rfc3339(SystemTime{std::chrono::seconds{utc}}));
          }
          return true;
        }
        reason = fmt::format("not a {} in the format{} {}",
                             rule.target == Target::kDate ? "date" : "timestamp",
                             rule.formats.size() > 1 ? "s" : "", rule.formats_text);
        return false;
      }
      case Target::kEnum: {
        auto it = rule.lookup.find(upper(trim(text_of(value))));
        if (it == rule.lookup.end()) {
          reason = "not one of the allowed values";
          return false;
        }
        value = Json(rule.values[static_cast<std::size_t>(it->second)]);
        return true;
      }
    }
    reason = fmt::format("cannot convert a {} value",
                         value.is_array() || value.is_object() ? "structured" : "boolean");
    return false;
  }

  static std::string strip(std::string_view s, char thousands) {
    if (thousands == 0) return std::string(s);
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
      if (c != thousands) out += c;
    }
    return out;
  }

  std::string name_;
  std::vector<FieldRule> rules_;
  TimeZone zone_ = TimeZone::utc();
  ColumnCache columns_;
};

// Maps codes through lookup tables: {"fields": {"STATUS": {"table": {"ISS": "issued"},
// "target": "status", "on_missing": "error" | "keep" | "default", "default": …}}}.
class MapCodesStage final : public Stage {
 public:
  static Result<std::unique_ptr<Stage>> create(const StageOptions& options) {
    auto stage = std::unique_ptr<MapCodesStage>(new MapCodesStage(options.name));
    const Json* fields = options.config.find("fields");
    if (fields == nullptr || !fields->is_object() || fields->size() == 0) {
      return invalid_argument("map_codes stage needs 'fields': {name: {table: {code: value}}}");
    }
    for (const auto& [name, spec] : fields->as_object()) {
      Map m;
      m.field = name;
      m.target = spec.get_string("target", name);
      m.case_insensitive = spec.get_bool("case_insensitive", true);
      std::string on_missing = spec.get_string("on_missing", "error");
      if (on_missing != "error" && on_missing != "keep" && on_missing != "default") {
        return invalid_argument(fmt::format(
            "field '{}': on_missing is '{}' (expected error, keep or default)", name, on_missing));
      }
      m.on_missing = on_missing[0];
      if (const Json* d = spec.find("default")) m.fallback = *d;
      const Json* table = spec.find("table");
      if (table == nullptr || !table->is_object()) {
        return invalid_argument(fmt::format("field '{}': map_codes needs a 'table' object", name));
      }
      for (const auto& [code, value] : table->as_object()) {
        m.table.emplace(m.case_insensitive ? upper(code) : code, value);
      }
      stage->maps_.push_back(std::move(m));
    }
    return std::unique_ptr<Stage>(std::move(stage));
  }

  std::string_view name() const override { return name_; }

  Status process(RecordBatch& batch, std::vector<RowError>& errors) override {
    if (columns_.changed(batch)) {
      for (auto& m : maps_) {
        m.column = batch.column_index(m.field);
        m.target_column = batch.add_column(m.target);
      }
      columns_.changed(batch);  // add_column may have grown the list
    }
    std::size_t kept = 0;
    std::string key;
    for (std::size_t r = 0; r < batch.records.size(); ++r) {
      connect::Record& record = batch.records[r];
      if (record.values.size() < batch.columns.size()) record.values.resize(batch.columns.size());
      bool ok = true;
      for (const auto& m : maps_) {
        const Json& in = RecordBatch::value(record, m.column);
        if (in.is_null()) {
          record.values[static_cast<std::size_t>(m.target_column)] = Json();
          continue;
        }
        if (in.is_string()) {
          key.assign(trim(in.as_string()));
        } else {
          key = in.dump();
        }
        if (m.case_insensitive) {
          for (char& c : key) {
            if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
          }
        }
        auto it = m.table.find(key);
        const Json* out = nullptr;
        if (it != m.table.end()) {
          out = &it->second;
        } else if (m.on_missing == 'd') {
          out = &m.fallback;
        } else if (m.on_missing != 'k') {
          errors.push_back({record.position, m.field, text_of(in), "code not in the lookup table"});
          ok = false;
          break;
        }
        if (out == nullptr) {  // keep: the code itself, into the target if it is another field
          if (m.target_column != m.column) {
            record.values[static_cast<std::size_t>(m.target_column)] = Json(in);
          }
          continue;
        }
        Json& target = record.values[static_cast<std::size_t>(m.target_column)];
        if (out->is_string()) {
          assign_text(target, out->as_string());
        } else {
          target = *out;
        }
      }
      if (ok) {
        if (kept != r) batch.records[kept] = std::move(record);
        ++kept;
      }
    }
    batch.records.resize(kept);
    return Status();
  }

 private:
  struct Map {
    std::string field;
    std::string target;
    bool case_insensitive = true;
    char on_missing = 'e';
    Json fallback;
    std::unordered_map<std::string, Json> table;
    int column = -1;
    int target_column = -1;
  };
  explicit MapCodesStage(std::string name) : name_(std::move(name)) {}
  std::string name_;
  std::vector<Map> maps_;
  ColumnCache columns_;
};

// Validates each record (as a JSON object) against a JSON Schema 2020-12.
class ValidateStage final : public Stage {
 public:
  static Result<std::unique_ptr<Stage>> create(const StageOptions& options) {
    const Json* schema = options.config.find("schema");
    if (schema == nullptr) return invalid_argument("validate stage needs a 'schema'");
    JsonSchema::Options o;
    o.format_assertion = options.config.get_bool("format_assertion", true);
    o.max_errors = 1;
    CIVICBUS_ASSIGN_OR_RETURN(JsonSchema compiled, JsonSchema::compile(*schema, o));
    return std::unique_ptr<Stage>(new ValidateStage(options.name, std::move(compiled)));
  }

  std::string_view name() const override { return name_; }

  Status process(RecordBatch& batch, std::vector<RowError>& errors) override {
    std::size_t kept = 0;
    for (std::size_t r = 0; r < batch.records.size(); ++r) {
      connect::Record& record = batch.records[r];
      Json object = batch.to_object(record);
      if (!schema_.is_valid(object)) {
        auto found = schema_.errors(object);
        RowError e;
        e.position = record.position;
        if (!found.empty()) {
          e.field = found.front().instance_location;
          if (!e.field.empty() && e.field.front() == '/') e.field.erase(0, 1);
          if (const Json* v = object.at_pointer(found.front().instance_location))
            e.value = text_of(*v);
          e.reason = found.front().message;
        } else {
          e.reason = "record does not match the schema";
        }
        errors.push_back(std::move(e));
        continue;
      }
      if (kept != r) batch.records[kept] = std::move(record);
      ++kept;
    }
    batch.records.resize(kept);
    return Status();
  }

 private:
  ValidateStage(std::string name, JsonSchema schema)
      : name_(std::move(name)), schema_(std::move(schema)) {}
  std::string name_;
  JsonSchema schema_;
};

// Normalises Canadian addresses with the match engine's rules (shared with matching, so a
// pipeline and the match engine agree on what an address is). Config: the input columns
// ("street", "municipality", "province", "postal_code", or "line" for one-line addresses),
// "prefix" of the component columns it adds (default "address_"), and "on_error": "reject"
// (default: the record goes to the error report) or "keep" (the record passes unchanged).
// The canonical street line, municipality, province and postal code replace the inputs.
class NormalizeAddressStage final : public Stage {
 public:
  static Result<std::unique_ptr<Stage>> create(const StageOptions& options) {
    CIVICBUS_ASSIGN_OR_RETURN(match::AddressNormalizer normalizer,
                              match::AddressNormalizer::create());
    auto stage = std::unique_ptr<NormalizeAddressStage>(
        new NormalizeAddressStage(options.name, std::move(normalizer)));
    const Json& c = options.config;
    stage->line_ = c.get_string("line");
    stage->street_ = c.get_string("street");
    if (stage->line_.empty() && stage->street_.empty()) {
      return invalid_argument(
          "normalize_address needs 'street' (with 'municipality', 'province', "
          "'postal_code') or 'line'");
    }
    stage->municipality_ = c.get_string("municipality");
    stage->province_ = c.get_string("province");
    stage->postal_code_ = c.get_string("postal_code");
    stage->prefix_ = c.get_string("prefix", "address_");
    std::string on_error = c.get_string("on_error", "reject");
    if (on_error != "reject" && on_error != "keep") {
      return invalid_argument("normalize_address: on_error is '" + on_error +
                              "' (expected reject or keep)");
    }
    stage->keep_on_error_ = on_error == "keep";
    return std::unique_ptr<Stage>(std::move(stage));
  }

  std::string_view name() const override { return name_; }

  Status process(RecordBatch& batch, std::vector<RowError>& errors) override {
    if (columns_.changed(batch)) {
      in_line_ = line_.empty() ? -1 : batch.column_index(line_);
      in_street_ = street_.empty() ? -1 : batch.column_index(street_);
      in_municipality_ = municipality_.empty() ? -1 : batch.column_index(municipality_);
      in_province_ = province_.empty() ? -1 : batch.column_index(province_);
      in_postal_ = postal_code_.empty() ? -1 : batch.column_index(postal_code_);
      static constexpr std::string_view kParts[] = {
          "civic_number", "street_name", "street_type", "street_direction", "unit", "one_line"};
      for (std::size_t i = 0; i < std::size(kParts); ++i) {
        out_[i] = batch.add_column(prefix_ + std::string(kParts[i]));
      }
      columns_.changed(batch);
    }
    const std::string& at_field = line_.empty() ? street_ : line_;
    const int at = line_.empty() ? in_street_ : in_line_;
    if (at < 0) {
      return failed_precondition("normalize_address: the records have no column '" + at_field +
                                 "'");
    }
    auto text = [](const connect::Record& r, int column) -> std::string_view {
      const Json& v = RecordBatch::value(r, column);
      return v.is_string() ? std::string_view(v.as_string()) : std::string_view();
    };
    std::size_t kept = 0;
    for (std::size_t r = 0; r < batch.records.size(); ++r) {
      connect::Record& record = batch.records[r];
      if (record.values.size() < batch.columns.size()) record.values.resize(batch.columns.size());
      Result<match::Address> address =
          line_.empty() ? normalizer_.normalize(match::AddressParts{
                              text(record, in_street_), text(record, in_municipality_),
                              text(record, in_province_), text(record, in_postal_)})
                        : normalizer_.normalize(text(record, in_line_));
      if (!address.ok()) {
        if (!keep_on_error_) {
          errors.push_back({record.position, at_field, std::string(text(record, at)),
                            address.status().message()});
          continue;
        }
      } else {
        match::Address& a = *address;
        auto put = [&](int column, std::string_view value) {
          if (column >= 0) assign_text(record.values[static_cast<std::size_t>(column)], value);
        };
        put(out_[5], a.one_line());
        if (line_.empty()) {
          // (street_line() builds a new string; the rest are views of the address.)
          put(in_street_, a.street_line());
          put(in_municipality_, a.municipality);
          put(in_province_, a.province);
          put(in_postal_, a.postal_code);
        }
        put(out_[0], a.civic_number);
        put(out_[1], a.street_name);
        put(out_[2], a.street_type);
        put(out_[3], a.street_direction);
        put(out_[4], a.unit);
      }
      if (kept != r) batch.records[kept] = std::move(record);
      ++kept;
    }
    batch.records.resize(kept);
    return Status();
  }

 private:
  NormalizeAddressStage(std::string name, match::AddressNormalizer normalizer)
      : name_(std::move(name)), normalizer_(std::move(normalizer)) {}
  std::string name_;
  match::AddressNormalizer normalizer_;
  std::string line_, street_, municipality_, province_, postal_code_, prefix_;
  bool keep_on_error_ = false;
  int in_line_ = -1, in_street_ = -1, in_municipality_ = -1, in_province_ = -1, in_postal_ = -1;
  int out_[6] = {-1, -1, -1, -1, -1, -1};
  ColumnCache columns_;
};

// Links duplicate records to one entity id (the applicants of legacy permits, typed again for
// each permit) with the MatchEngine: the stage's config is match settings (docs/match.md:
// typed comparisons, blocking rules as a union, deterministic rules, thresholds). Records
// stream through a MatchIndex: each is compared with the earlier records of the run that share
// a blocking key and joins the entity of the best one scored at or above the match threshold.
// The model is trained, unsupervised, on the first batch (m by EM, u from random pairs), or
// read from "model" (a file `civicbus match --save-model` wrote). Each record gets its entity
// id in "id_field" ("entity_id"); a sink upserting by it keeps one row per entity.
// "id_prefix" ("E"): an id is the prefix and a hash of the entity's first record.
class DedupeStage final : public Stage {
 public:
  static Result<std::unique_ptr<Stage>> create(const StageOptions& options) {
    const Json& c = options.config;
    if (c.contains("name_fields") || c.contains("block_on")) {
      return invalid_argument(
          "dedupe: 'name_fields' and 'block_on' were replaced by match settings: "
          "'comparisons' (e.g. [{field: full_name, kind: name}, {field: phone, kind: phone}]) "
          "and 'blocking' (e.g. [[postal_code], [phone]]); see docs/pipelines.md");
    }
    // The stage's own keys are not match settings.
    Json settings_json = c;
    for (auto key : {"id_field", "id_prefix", "model"}) settings_json.erase(key);
    auto settings = match::MatchSettings::from_json(settings_json);
    if (!settings.ok()) return settings.status().with_context("dedupe");
    auto engine = match::MatchEngine::create(*settings);
    if (!engine.ok()) return engine.status().with_context("dedupe");
    auto stage = std::unique_ptr<DedupeStage>(new DedupeStage(options.name));
    stage->fields_ = settings->fields();
    stage->engine_ = std::make_unique<match::MatchEngine>(std::move(engine).value());
    if (std::string model = c.get_string("model"); !model.empty()) {
      auto text = read_text_file(model);
      if (!text.ok()) return text.status().with_context("dedupe model");
      auto doc = Json::parse(*text);
      if (!doc.ok()) return doc.status().with_context("dedupe model '" + model + "'");
      CIVICBUS_RETURN_IF_ERROR(stage->engine_->load_model(*doc).with_context("dedupe model"));
    }
    stage->id_field_ = c.get_string("id_field", "entity_id");
    stage->prefix_ = c.get_string("id_prefix", "E");
    return std::unique_ptr<Stage>(std::move(stage));
  }

  std::string_view name() const override { return name_; }

  Status process(RecordBatch& batch, std::vector<RowError>&) override {
    if (columns_.changed(batch)) {
      field_columns_.clear();
      for (const auto& f : fields_) field_columns_.push_back(batch.column_index(f));
      id_column_ = batch.add_column(id_field_);
      columns_.changed(batch);
    }
    // The values as text, in the order of fields_.
    std::vector<std::string> text(fields_.size());
    std::vector<std::string_view> values(fields_.size());
    auto read = [&](const connect::Record& record) {
      for (std::size_t i = 0; i < fields_.size(); ++i) {
        const Json& v = RecordBatch::value(record, field_columns_[i]);
        text[i] = v.is_string() ? v.as_string() : v.is_null() ? std::string() : v.dump();
        values[i] = text[i];
      }
    };
    if (!index_) {
      if (!engine_->trained()) {
        match::Dataset sample(fields_, "first batch");
        for (const auto& record : batch.records) {
          read(record);
          sample.add(values);
        }
        if (sample.size() >= 2) {
          auto trained = engine_->train(sample);
          if (!trained.ok())
            return trained.status().with_context("dedupe: training on the first batch");
        }
      }
      if (engine_->trained()) {
        CIVICBUS_ASSIGN_OR_RETURN(match::MatchIndex index,
                                  match::MatchIndex::create(*engine_, fields_));
        index_ = std::make_unique<match::MatchIndex>(std::move(index));
      }
    }
    for (auto& record : batch.records) {
      if (record.values.size() < batch.columns.size()) record.values.resize(batch.columns.size());
      read(record);
      std::optional<match::MatchIndex::Match> found;
      if (index_) found = index_->add(values);
      std::string entity;
      if (found && found->decision == match::ScoredPair::Decision::kMatch) {
        entity = entities_[found->row];
      } else {
        // A new entity's id comes from its first record's content, not a counter, so a resumed
        // run (whose index starts empty) never hands a loaded id to someone else.
        std::string seed;
        for (auto v : values) (seed += v) += '\x1f';
        seed += std::to_string(record.position);
        entity = prefix_ + crypto::to_hex(crypto::sha256(seed)).substr(0, 16);
      }
      if (index_) entities_.push_back(entity);
      record.values[static_cast<std::size_t>(id_column_)] = Json(std::move(entity));
    }
    return Status();
  }

 private:
  explicit DedupeStage(std::string name) : name_(std::move(name)) {}

  std::string name_;
  std::vector<std::string> fields_;
  std::unique_ptr<match::MatchEngine> engine_;
  std::unique_ptr<match::MatchIndex> index_;
  std::vector<std::string> entities_;  // per record added to the index
  std::string id_field_;
  std::string prefix_;
  std::vector<int> field_columns_;
  int id_column_ = -1;
  ColumnCache columns_;
};

// Maps records to the platform's model with the connector hub's field mapping (renames,
// conversions, lookups, defaults, expressions; docs/connectors.md "Field mapping"). The
// stage's config is the mapping document. Records that fail go to the report, one error per
// failing field.
class MapFieldsStage final : public Stage {
 public:
  static Result<std::unique_ptr<Stage>> create(const StageOptions& options) {
    CIVICBUS_ASSIGN_OR_RETURN(connect::FieldMapping mapping,
                              connect::FieldMapping::compile(options.config, {}));
    return std::unique_ptr<Stage>(new MapFieldsStage(options.name, std::move(mapping)));
  }
  std::string_view name() const override { return name_; }
  Status process(RecordBatch& batch, std::vector<RowError>& errors) override {
    connect::MappedBatch mapped = mapping_.apply(std::move(batch));
    for (auto& e : mapped.errors) errors.push_back(std::move(e));
    batch = std::move(mapped.batch);
    return Status();
  }

 private:
  MapFieldsStage(std::string name, connect::FieldMapping mapping)
      : name_(std::move(name)), mapping_(std::move(mapping)) {}
  std::string name_;
  connect::FieldMapping mapping_;
};

}  // namespace

Result<std::unique_ptr<Stage>> make_builtin_stage(const StageOptions& options) {
  if (options.type == "types") return TypesStage::create(options);
  if (options.type == "map_codes") return MapCodesStage::create(options);
  if (options.type == "validate") return ValidateStage::create(options);
  if (options.type == "normalize_address") return NormalizeAddressStage::create(options);
  if (options.type == "dedupe") return DedupeStage::create(options);
  if (options.type == "map_fields") return MapFieldsStage::create(options);
  std::string known;
  for (const auto& t : builtin_stage_types()) known += (known.empty() ? "" : ", ") + t;
  return invalid_argument(
      fmt::format("unknown stage type '{}' (built-in: {}; custom types are "
                  "registered in PipelineEnv::stage_types)",
                  options.type, known));
}

}  // namespace civicbus::pipeline::detail

namespace civicbus::pipeline {
std::vector<std::string> builtin_stage_types() {
  return {"types", "map_codes", "validate", "normalize_address", "dedupe", "map_fields"};
}
}  // namespace civicbus::pipeline
