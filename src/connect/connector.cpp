#include "civicbus/connect/connector.hpp"

#include <algorithm>
#include <array>

#include "civicbus/core/json_schema.hpp"
#include "core/uri_reference.hpp"

namespace civicbus::connect {

namespace {

constexpr std::array<std::pair<FieldType, std::string_view>, 7> kFieldTypeNames{{
    {FieldType::kString, "string"},
    {FieldType::kInteger, "integer"},
    {FieldType::kNumber, "number"},
    {FieldType::kBoolean, "boolean"},
    {FieldType::kDate, "date"},
    {FieldType::kTimestamp, "timestamp"},
    {FieldType::kJson, "json"},
}};

const Json& null_json() {
  static const Json kNull;
  return kNull;
}

// Escapes one JSON pointer token (RFC 6901).
std::string pointer_token(std::string_view name) {
  std::string out;
  detail::append_pointer_token(out, name);
  return out;
}

void collect_secrets(const Json& schema, const std::string& prefix, std::vector<std::string>& out) {
  const Json* properties = schema.find("properties");
  if (properties == nullptr || !properties->is_object()) return;
  for (const auto& [name, property] : properties->as_object()) {
    std::string pointer = prefix + "/" + pointer_token(name);
    if (property.get_bool("secret") || property.get_bool("airbyte_secret")) {
      out.push_back(pointer);
    } else {
      collect_secrets(property, pointer, out);
    }
  }
}

}  // namespace

std::string_view field_type_name(FieldType type) {
  for (const auto& [t, name] : kFieldTypeNames) {
    if (t == type) return name;
  }
  return "string";
}

Result<FieldType> parse_field_type(std::string_view name) {
  for (const auto& [t, n] : kFieldTypeNames) {
    if (n == name) return t;
  }
  return invalid_argument("unknown field type '" + std::string(name) +
                          "' (expected string, integer, number, boolean, date, timestamp or json)");
}

const FieldSpec* StreamSpec::field(std::string_view field_name) const {
  for (const auto& f : fields) {
    if (f.name == field_name) return &f;
  }
  return nullptr;
}

Json StreamSpec::to_json_schema() const {
  Json properties = Json::object();
  Json required = Json::array();
  for (const auto& f : fields) {
    Json property = Json::object();
    Json type;
    switch (f.type) {
      case FieldType::kString:
        type = "string";
        break;
      case FieldType::kInteger:
        type = "integer";
        break;
      case FieldType::kNumber:
        type = "number";
        break;
      case FieldType::kBoolean:
        type = "boolean";
        break;
      case FieldType::kDate:
        type = "string";
        property.set("format", "date");
        break;
      case FieldType::kTimestamp:
        type = "string";
        property.set("format", "date-time");
        break;
      case FieldType::kJson:
        break;
    }
    if (!type.is_null()) {
      property.set("type", f.nullable ? Json::array({type, "null"}) : type);
    }
    properties.set(f.name, std::move(property));
    if (!f.nullable) required.push_back(f.name);
  }
  Json schema = Json::object({{"type", "object"}, {"properties", std::move(properties)}});
  if (required.size() > 0) schema.set("required", std::move(required));
  return schema;
}

std::vector<std::string> ConnectorSpec::secret_pointers() const {
  std::vector<std::string> out;
  collect_secrets(config_schema, "", out);
  return out;
}

int RecordBatch::column_index(std::string_view column) const {
  for (std::size_t i = 0; i < columns.size(); ++i) {
    if (columns[i] == column) return static_cast<int>(i);
  }
  return -1;
}

int RecordBatch::add_column(std::string_view column) {
  int index = column_index(column);
  if (index >= 0) return index;
  columns.emplace_back(column);
  return static_cast<int>(columns.size() - 1);
}

const Json& RecordBatch::value(const Record& record, int column) {
  if (column < 0 || static_cast<std::size_t>(column) >= record.values.size()) return null_json();
  return record.values[static_cast<std::size_t>(column)];
}

Json RecordBatch::to_object(const Record& record) const {
  Json::Object members;
  members.reserve(columns.size());
  for (std::size_t i = 0; i < columns.size(); ++i) {
    members.emplace_back(columns[i], value(record, static_cast<int>(i)));
  }
  return Json(std::move(members));
}

void RecordBatch::append_object(const Json& object, std::int64_t position) {
  Record record;
  record.position = position;
  if (object.is_object()) {
    record.values.resize(columns.size());
    for (const auto& [name, value] : object.as_object()) {
      auto index = static_cast<std::size_t>(add_column(name));
      if (record.values.size() <= index) record.values.resize(index + 1);
      record.values[index] = value;
    }
  }
  records.push_back(std::move(record));
}

SystemTime ConnectorContext::now() const {
  if (clock != nullptr) return clock->now();
  return std::chrono::system_clock::now();
}

const Json* ReadRequest::stream_state(std::string_view stream) const {
  const Json* s = state.find(stream);
  return s == nullptr || s->is_null() ? nullptr : s;
}

Status Connector::read(const ConnectorContext&, const ReadRequest&, RecordEmitter&) {
  return failed_precondition("connector '" + spec().name + "' is not a source");
}

Result<WriteResult> Connector::write(const ConnectorContext&, const WriteRequest&,
                                     const RecordBatch&) {
  return failed_precondition("connector '" + spec().name + "' is not a sink");
}

Result<Json> Connector::call(const ConnectorContext&, std::string_view operation, const Json&) {
  return failed_precondition("connector '" + spec().name + "' has no operation '" +
                             std::string(operation) + "'");
}

Status ConnectorCatalog::add(ConnectorFactory factory) {
  if (!factory) return invalid_argument("connector factory is empty");
  std::unique_ptr<Connector> probe = factory();
  if (probe == nullptr) return invalid_argument("connector factory returned no connector");
  ConnectorSpec spec = probe->spec();
  if (spec.name.empty()) return invalid_argument("connector spec has no name");
  auto compiled = JsonSchema::compile(spec.config_schema);
  if (!compiled.ok()) {
    return invalid_argument("connector '" + spec.name +
                            "' has an invalid config schema: " + compiled.status().message());
  }
  auto it = std::lower_bound(entries_.begin(), entries_.end(), spec.name,
                             [](const Entry& e, const std::string& n) { return e.spec.name < n; });
  if (it != entries_.end() && it->spec.name == spec.name) {
    return already_exists("connector '" + spec.name + "' is already in the catalog");
  }
  entries_.insert(it, Entry{std::move(spec), std::move(factory)});
  return Status();
}

bool ConnectorCatalog::contains(std::string_view name) const {
  return std::any_of(entries_.begin(), entries_.end(),
                     [&](const Entry& e) { return e.spec.name == name; });
}

std::vector<ConnectorSpec> ConnectorCatalog::list() const {
  std::vector<ConnectorSpec> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(e.spec);
  return out;
}

Result<std::unique_ptr<Connector>> ConnectorCatalog::create(std::string_view name) const {
  for (const auto& e : entries_) {
    if (e.spec.name == name) return e.factory();
  }
  std::string known;
  for (const auto& e : entries_) {
    if (!known.empty()) known += ", ";
    known += e.spec.name;
  }
  return not_found("no connector '" + std::string(name) + "' in the catalog (known: " +
                   (known.empty() ? std::string("none") : known) + ")");
}

Status validate_config(const ConnectorSpec& spec, const Json& config) {
  JsonSchema::Options options;
  options.format_assertion = true;
  auto schema = JsonSchema::compile(spec.config_schema, options);
  if (!schema.ok()) return schema.status();
  auto errors = schema->errors(config);
  if (errors.empty()) return Status();
  // Messages name the property and the rule; for a secret property they never say more,
  // since the schema's message may quote the value.
  const std::vector<std::string> secrets = spec.secret_pointers();
  std::string message = "config of connector '" + spec.name + "' is invalid:";
  for (const auto& e : errors) {
    bool secret = std::any_of(secrets.begin(), secrets.end(), [&](const std::string& p) {
      return e.instance_location.rfind(p, 0) == 0 &&
             (e.instance_location.size() == p.size() || e.instance_location[p.size()] == '/');
    });
    message += " at '" + (e.instance_location.empty() ? std::string("/") : e.instance_location) +
               "': " + (secret ? "fails " + e.keyword_location : e.message) + ";";
  }
  message.pop_back();
  return invalid_argument(std::move(message));
}

Status CollectingEmitter::emit(RecordBatch batch) {
  batches.push_back(std::move(batch));
  return Status();
}

Status CollectingEmitter::checkpoint(std::string_view stream, Json state) {
  states.set(stream, std::move(state));
  return Status();
}

std::int64_t CollectingEmitter::record_count() const {
  std::int64_t n = 0;
  for (const auto& b : batches) n += static_cast<std::int64_t>(b.size());
  return n;
}

}  // namespace civicbus::connect
