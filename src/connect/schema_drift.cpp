#include "connect/schema_drift.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace civicbus::connect {
namespace {

constexpr storage::Migration kSchemaMigrations[] = {
    {1, "stream schemas recorded per connection",
     R"sql(
CREATE TABLE connect_schemas (
  connection TEXT NOT NULL,
  stream TEXT NOT NULL,
  schema_json TEXT NOT NULL,       -- the recorded StreamSpec
  recorded_at BIGINT NOT NULL,     -- Unix microseconds
  pending_json TEXT,               -- a drifted schema waiting for an operator (policy pause)
  pending_since BIGINT,
  PRIMARY KEY (connection, stream)
);
)sql"},
};

std::string key_text(const std::vector<std::string>& key) {
  return fmt::format("[{}]", fmt::join(key, ", "));
}

std::string_view nullability(bool nullable) {
  return nullable ? "nullable" : "not null";
}

}  // namespace

std::string_view drift_policy_name(DriftPolicy policy) {
  switch (policy) {
    case DriftPolicy::kPropagate:
      return "propagate";
    case DriftPolicy::kPause:
      return "pause";
    case DriftPolicy::kReject:
      return "reject";
  }
  return "unknown";
}

Result<DriftPolicy> parse_drift_policy(std::string_view name) {
  for (DriftPolicy p : {DriftPolicy::kPropagate, DriftPolicy::kPause, DriftPolicy::kReject}) {
    if (drift_policy_name(p) == name) return p;
  }
  return invalid_argument(
      fmt::format("unknown schema drift policy '{}'; use propagate, pause or reject", name));
}

std::string_view schema_change_kind_name(SchemaChangeKind kind) {
  switch (kind) {
    case SchemaChangeKind::kFieldAdded:
      return "field_added";
    case SchemaChangeKind::kFieldRemoved:
      return "field_removed";
    case SchemaChangeKind::kTypeChanged:
      return "type_changed";
    case SchemaChangeKind::kNullabilityChanged:
      return "nullability_changed";
    case SchemaChangeKind::kPrimaryKeyChanged:
      return "primary_key_changed";
    case SchemaChangeKind::kCursorFieldChanged:
      return "cursor_field_changed";
  }
  return "unknown";
}

std::string_view drift_outcome_name(DriftOutcome outcome) {
  switch (outcome) {
    case DriftOutcome::kRecorded:
      return "recorded";
    case DriftOutcome::kUnchanged:
      return "unchanged";
    case DriftOutcome::kAccepted:
      return "accepted";
    case DriftOutcome::kPaused:
      return "paused";
    case DriftOutcome::kRejected:
      return "rejected";
  }
  return "unknown";
}

std::string SchemaChange::describe() const {
  switch (kind) {
    case SchemaChangeKind::kFieldAdded:
      return fmt::format("field '{}' was added ({})", field, after);
    case SchemaChangeKind::kFieldRemoved:
      return fmt::format("field '{}' was removed (was {})", field, before);
    case SchemaChangeKind::kTypeChanged:
      return fmt::format("field '{}' changed type from {} to {}", field, before, after);
    case SchemaChangeKind::kNullabilityChanged:
      return fmt::format("field '{}' changed from {} to {}", field, before, after);
    case SchemaChangeKind::kPrimaryKeyChanged:
      return fmt::format("primary key changed from {} to {}", before, after);
    case SchemaChangeKind::kCursorFieldChanged:
      return fmt::format("cursor field changed from '{}' to '{}'", before, after);
  }
  return "unknown change";
}

std::vector<SchemaChange> diff_schemas(const StreamSpec& recorded, const StreamSpec& discovered) {
  std::vector<SchemaChange> changes;
  for (const FieldSpec& before : recorded.fields) {
    const FieldSpec* after = discovered.field(before.name);
    if (after == nullptr) {
      changes.push_back({SchemaChangeKind::kFieldRemoved, before.name,
                         std::string(field_type_name(before.type)), ""});
      continue;
    }
    if (after->type != before.type) {
      changes.push_back({SchemaChangeKind::kTypeChanged, before.name,
                         std::string(field_type_name(before.type)),
                         std::string(field_type_name(after->type))});
    }
    if (after->nullable != before.nullable) {
      changes.push_back({SchemaChangeKind::kNullabilityChanged, before.name,
                         std::string(nullability(before.nullable)),
                         std::string(nullability(after->nullable))});
    }
  }
  for (const FieldSpec& after : discovered.fields) {
    if (recorded.field(after.name) == nullptr) {
      changes.push_back({SchemaChangeKind::kFieldAdded, after.name, "",
                         std::string(field_type_name(after.type))});
    }
  }
  if (recorded.primary_key != discovered.primary_key) {
    changes.push_back({SchemaChangeKind::kPrimaryKeyChanged, "", key_text(recorded.primary_key),
                       key_text(discovered.primary_key)});
  }
  if (recorded.cursor_field != discovered.cursor_field) {
    changes.push_back({SchemaChangeKind::kCursorFieldChanged, "", recorded.cursor_field,
                       discovered.cursor_field});
  }
  return changes;
}

bool DriftReport::may_run() const {
  return outcome != DriftOutcome::kPaused && outcome != DriftOutcome::kRejected;
}

std::string DriftReport::summary() const {
  std::string out;
  switch (outcome) {
    case DriftOutcome::kRecorded:
      out = fmt::format("connection '{}' stream '{}': first schema recorded", connection, stream);
      break;
    case DriftOutcome::kUnchanged:
      out = fmt::format("connection '{}' stream '{}': schema unchanged", connection, stream);
      break;
    case DriftOutcome::kAccepted:
      out = fmt::format("connection '{}' stream '{}': {} schema change(s) propagated", connection,
                        stream, changes.size());
      break;
    case DriftOutcome::kPaused:
      out = fmt::format(
          "connection '{}' stream '{}': {} schema change(s); the "
          "connection is paused until an "
          "operator accepts the new schema",
          connection, stream, changes.size());
      break;
    case DriftOutcome::kRejected:
      out = fmt::format(
          "connection '{}' stream '{}': {} schema change(s) "
          "rejected by the connection's drift "
          "policy",
          connection, stream, changes.size());
      break;
  }
  for (const SchemaChange& change : changes) {
    out += "\n  - ";
    out += change.describe();
  }
  return out;
}

Status DriftReport::to_status() const {
  if (may_run()) return {};
  return failed_precondition(summary());
}

Json stream_spec_to_json(const StreamSpec& spec) {
  Json fields = Json::array();
  for (const FieldSpec& f : spec.fields) {
    fields.push_back(Json::object({{"name", f.name},
                                   {"type", std::string(field_type_name(f.type))},
                                   {"nullable", f.nullable}}));
  }
  Json key = Json::array();
  for (const std::string& k : spec.primary_key) key.push_back(k);
  return Json::object({{"name", spec.name},
                       {"fields", std::move(fields)},
                       {"primary_key", std::move(key)},
                       {"cursor_field", spec.cursor_field}});
}

Result<StreamSpec> stream_spec_from_json(const Json& json) {
  const Json* fields = json.find("fields");
  if (!json.is_object() || fields == nullptr || !fields->is_array()) {
    return invalid_argument("a stream schema must be an object with a 'fields' array");
  }
  StreamSpec spec;
  spec.name = json.get_string("name");
  spec.cursor_field = json.get_string("cursor_field");
  for (const Json& f : fields->as_array()) {
    FieldSpec field;
    field.name = f.get_string("name");
    CIVICBUS_ASSIGN_OR_RETURN(field.type, parse_field_type(f.get_string("type", "string")));
    field.nullable = f.get_bool("nullable", true);
    spec.fields.push_back(std::move(field));
  }
  if (const Json* key = json.find("primary_key"); key != nullptr && key->is_array()) {
    for (const Json& k : key->as_array()) {
      if (k.is_string()) spec.primary_key.push_back(k.as_string());
    }
  }
  return spec;
}

Result<std::unique_ptr<SchemaDriftTracker>> SchemaDriftTracker::open(storage::Database& db,
                                                                     const Clock& clock) {
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(db, "connect_schemas", kSchemaMigrations));
  return std::unique_ptr<SchemaDriftTracker>(new SchemaDriftTracker(db, clock));
}

Result<std::optional<StreamSpec>> SchemaDriftTracker::load(std::string_view connection,
                                                           std::string_view stream,
                                                           bool pending_column) {
  std::optional<std::string> text;
  CIVICBUS_RETURN_IF_ERROR(db_.query(pending_column ? "SELECT pending_json FROM connect_schemas "
                                                      "WHERE connection = ? AND stream = ?"
                                                    : "SELECT schema_json FROM connect_schemas "
                                                      "WHERE connection = ? AND stream = ?",
                                     {connection, stream}, [&](const storage::Row& row) {
                                       if (!row.is_null(0)) text = std::string(row.get_text(0));
                                       return false;
                                     }));
  if (!text) return std::optional<StreamSpec>();
  Result<Json> json = Json::parse(*text);
  Result<StreamSpec> spec =
      json.ok() ? stream_spec_from_json(*json) : Result<StreamSpec>(json.status());
  if (!spec.ok()) {
    return data_loss(fmt::format("the {} schema of connection '{}' stream '{}' is unreadable: {}",
                                 pending_column ? "pending" : "recorded", connection, stream,
                                 spec.status().message()));
  }
  spec->name = std::string(stream);
  return std::optional<StreamSpec>(std::move(*spec));
}

Result<std::optional<StreamSpec>> SchemaDriftTracker::recorded(std::string_view connection,
                                                               std::string_view stream) {
  return load(connection, stream, false);
}

Result<std::optional<StreamSpec>> SchemaDriftTracker::pending(std::string_view connection,
                                                              std::string_view stream) {
  return load(connection, stream, true);
}

Status SchemaDriftTracker::record(std::string_view connection, const StreamSpec& spec) {
  if (connection.empty() || spec.name.empty()) {
    return invalid_argument("recording a schema needs a connection and a stream name");
  }
  const std::string text = stream_spec_to_json(spec).dump();
  return db_
      .execute(
          "INSERT INTO connect_schemas (connection, stream, schema_json, "
          "recorded_at, "
          "pending_json, pending_since) VALUES (?, ?, ?, ?, NULL, NULL) "
          "ON CONFLICT (connection, stream) DO UPDATE SET schema_json = "
          "excluded.schema_json, "
          "recorded_at = excluded.recorded_at, pending_json = NULL, "
          "pending_since = NULL",
          {connection, std::string_view(spec.name), std::string_view(text),
           to_unix_micros(clock_.now())})
      .status();
}

Result<DriftReport> SchemaDriftTracker::check(std::string_view connection,
                                              const StreamSpec& discovered, DriftPolicy policy) {
  DriftReport report;
  report.connection = std::string(connection);
  report.stream = discovered.name;
  report.policy = policy;
  CIVICBUS_RETURN_IF_ERROR(db_.transaction([&]() -> Status {
    CIVICBUS_ASSIGN_OR_RETURN(std::optional<StreamSpec> before,
                              recorded(connection, discovered.name));
    if (!before) {
      report.outcome = DriftOutcome::kRecorded;
      return record(connection, discovered);
    }
    report.changes = diff_schemas(*before, discovered);
    if (report.changes.empty()) {
      report.outcome = DriftOutcome::kUnchanged;
      // The source went back to the recorded shape: nothing is pending any more.
      return db_
          .execute(
              "UPDATE connect_schemas SET pending_json = NULL, "
              "pending_since = NULL "
              "WHERE connection = ? AND stream = ?",
              {connection, std::string_view(discovered.name)})
          .status();
    }
    switch (policy) {
      case DriftPolicy::kPropagate:
        report.outcome = DriftOutcome::kAccepted;
        return record(connection, discovered);
      case DriftPolicy::kPause: {
        report.outcome = DriftOutcome::kPaused;
        const std::string text = stream_spec_to_json(discovered).dump();
        // pending_since keeps the time the drift was first seen while it stays the same.
        return db_
            .execute(
                "UPDATE connect_schemas SET pending_since = CASE WHEN "
                "pending_json = ? "
                "THEN pending_since ELSE ? END, pending_json = ? "
                "WHERE connection = ? AND stream = ?",
                {std::string_view(text), to_unix_micros(clock_.now()), std::string_view(text),
                 connection, std::string_view(discovered.name)})
            .status();
      }
      case DriftPolicy::kReject:
        report.outcome = DriftOutcome::kRejected;
        return Status();
    }
    return Status();
  }));
  return report;
}

Result<std::vector<std::string>> SchemaDriftTracker::paused_streams(std::string_view connection) {
  std::vector<std::string> out;
  CIVICBUS_RETURN_IF_ERROR(
      db_.query("SELECT stream FROM connect_schemas WHERE connection = ? AND "
                "pending_json IS NOT NULL "
                "ORDER BY stream",
                {connection}, [&](const storage::Row& row) {
                  out.emplace_back(row.get_text(0));
                  return true;
                }));
  return out;
}

Status SchemaDriftTracker::accept(std::string_view connection, std::string_view stream) {
  bool found = false;
  CIVICBUS_RETURN_IF_ERROR(db_.transaction([&]() -> Status {
    CIVICBUS_ASSIGN_OR_RETURN(std::optional<StreamSpec> waiting, pending(connection, stream));
    if (!waiting) return Status();  // reported after the transaction
    found = true;
    return record(connection, *waiting);
  }));
  if (!found) {
    return not_found(
        fmt::format("connection '{}' stream '{}' has no schema "
                    "change waiting to be accepted",
                    connection, stream));
  }
  return {};
}

Result<std::int64_t> SchemaDriftTracker::erase(std::string_view connection) {
  return db_.execute("DELETE FROM connect_schemas WHERE connection = ?", {connection});
}

}  // namespace civicbus::connect
