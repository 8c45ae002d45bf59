#include "broker/schema_registry.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "broker/audit_log.hpp"
#include "civicbus/storage/database.hpp"

namespace civicbus::broker::detail {
namespace {

using storage::Value;

SchemaState parse_state(std::string_view s) {
  if (s == "active") return SchemaState::kActive;
  if (s == "superseded") return SchemaState::kSuperseded;
  return SchemaState::kProposed;
}

}  // namespace

SchemaRegistry::SchemaRegistry(storage::Database& db, AuditLog& audit, const Clock& clock,
                               Hooks hooks)
    : db_(db), audit_(audit), clock_(clock), hooks_(std::move(hooks)) {}

Status SchemaRegistry::load() {
  std::map<std::string, Active, std::less<>> loaded;
  Status failed;
  CIVICBUS_RETURN_IF_ERROR(db_.query(
      "SELECT subject, version, schema FROM broker_schema_versions WHERE state = 'active'", {},
      [&](const storage::Row& row) {
        std::string subject(row.get_text(0));
        auto doc = Json::parse(row.get_text(2));
        if (!doc.ok()) {
          failed = data_loss(fmt::format("stored schema {} v{} is not valid JSON: {}", subject,
                                         row.get_int(1), doc.status().message()));
          return false;
        }
        auto compiled = JsonSchema::compile(*doc);
        if (!compiled.ok()) {
          failed = data_loss(fmt::format("stored schema {} v{} does not compile: {}", subject,
                                         row.get_int(1), compiled.status().message()));
          return false;
        }
        loaded[subject] = Active{static_cast<int>(row.get_int(1)),
                                 std::make_shared<const JsonSchema>(std::move(compiled).value())};
        return true;
      }));
  CIVICBUS_RETURN_IF_ERROR(failed);
  std::unique_lock lock(active_mu_);
  active_ = std::move(loaded);
  return {};
}

SchemaRegistry::Active SchemaRegistry::active(std::string_view subject) const {
  std::shared_lock lock(active_mu_);
  auto it = active_.find(subject);
  return it == active_.end() ? Active{} : it->second;
}

Result<SchemaCompatibility> SchemaRegistry::compatibility_of(std::string_view subject) {
  std::string mode = "BACKWARD";
  CIVICBUS_RETURN_IF_ERROR(
      db_.query("SELECT compatibility FROM broker_schema_subjects WHERE subject = ?",
                {Value{subject}}, [&](const storage::Row& row) {
                  mode = std::string(row.get_text(0));
                  return false;
                }));
  return parse_schema_compatibility(mode);
}

Status SchemaRegistry::set_compatibility(std::string_view subject, SchemaCompatibility mode,
                                         std::string_view actor) {
  std::lock_guard lock(write_mu_);
  return db_.transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(
        db_.execute("INSERT INTO broker_schema_subjects(subject, compatibility) VALUES (?, ?) "
                    "ON CONFLICT(subject) DO UPDATE SET compatibility = excluded.compatibility",
                    {Value{subject}, Value{to_string(mode)}})
            .status());
    return audit_.append(actor, "schema.compatibility_set", subject,
                         Json::object({{"compatibility", std::string(to_string(mode))}}));
  });
}

Result<SchemaVersion> SchemaRegistry::load_version(std::string_view subject, int version) {
  SchemaVersion v;
  bool found = false;
  Status parse_error;
  CIVICBUS_RETURN_IF_ERROR(db_.query(
      "SELECT schema, state, created_at, activated_at FROM broker_schema_versions "
      "WHERE subject = ? AND version = ?",
      {Value{subject}, Value{static_cast<std::int64_t>(version)}}, [&](const storage::Row& row) {
        found = true;
        auto doc = Json::parse(row.get_text(0));
        if (!doc.ok()) {
          parse_error =
              data_loss(fmt::format("stored schema {} v{} is not valid JSON", subject, version));
          return false;
        }
        v.schema = std::move(doc).value();
        v.state = parse_state(row.get_text(1));
        v.created_at = from_unix_micros(row.get_int(2));
        if (!row.is_null(3)) v.activated_at = from_unix_micros(row.get_int(3));
        return false;
      }));
  CIVICBUS_RETURN_IF_ERROR(parse_error);
  if (!found) {
    return not_found(fmt::format("schema subject '{}' has no version {}", subject, version));
  }
  v.subject = std::string(subject);
  v.version = version;
  CIVICBUS_RETURN_IF_ERROR(db_.query(
      "SELECT group_name FROM broker_schema_acks WHERE subject = ? AND version = ? ORDER BY "
      "group_name",
      {Value{subject}, Value{static_cast<std::int64_t>(version)}}, [&](const storage::Row& row) {
        v.acknowledged_by.emplace_back(row.get_text(0));
        return true;
      }));
  if (v.state == SchemaState::kProposed) {
    for (auto& g : hooks_.groups_of_subject(subject)) {
      if (std::find(v.acknowledged_by.begin(), v.acknowledged_by.end(), g) ==
          v.acknowledged_by.end()) {
        v.waiting_for.push_back(std::move(g));
      }
    }
  }
  return v;
}

Result<std::vector<SchemaVersion>> SchemaRegistry::versions(std::string_view subject) {
  std::vector<int> numbers;
  CIVICBUS_RETURN_IF_ERROR(
      db_.query("SELECT version FROM broker_schema_versions WHERE subject = ? ORDER BY version",
                {Value{subject}}, [&](const storage::Row& row) {
                  numbers.push_back(static_cast<int>(row.get_int(0)));
                  return true;
                }));
  std::vector<SchemaVersion> out;
  for (int n : numbers) {
    CIVICBUS_ASSIGN_OR_RETURN(auto v, load_version(subject, n));
    out.push_back(std::move(v));
  }
  return out;
}

Result<SchemaVersion> SchemaRegistry::register_version(std::string_view subject, const Json& schema,
                                                       std::string_view actor) {
  if (subject.empty()) return invalid_argument("schema subject must not be empty");
  auto compiled = JsonSchema::compile(schema);
  if (!compiled.ok()) {
    return compiled.status().with_context(
        fmt::format("schema for subject '{}' is not a valid JSON Schema", subject));
  }
  std::lock_guard lock(write_mu_);
  CIVICBUS_ASSIGN_OR_RETURN(auto existing, versions(subject));
  for (const auto& v : existing) {
    if (v.schema == schema) return v;  // registering the same document again is a no-op
  }
  if (!existing.empty()) {
    CIVICBUS_ASSIGN_OR_RETURN(SchemaCompatibility mode, compatibility_of(subject));
    std::vector<Json> earlier;
    for (const auto& v : existing) earlier.push_back(v.schema);
    Status compatible = check_compatibility(mode, earlier, schema);
    if (!compatible.ok()) {
      return Status(
          ErrorCode::kFailedPrecondition,
          fmt::format("schema for subject '{}' rejected: {}", subject, compatible.message()));
    }
  }
  const int version = existing.empty() ? 1 : existing.back().version + 1;
  const std::int64_t now = to_unix_micros(clock_.now());
  const std::string text = schema.dump();
  CIVICBUS_RETURN_IF_ERROR(db_.transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(
        db_.execute(
               "INSERT INTO broker_schema_subjects(subject, compatibility) VALUES (?, 'BACKWARD') "
               "ON CONFLICT(subject) DO NOTHING",
               {Value{subject}})
            .status());
    CIVICBUS_RETURN_IF_ERROR(
        db_.execute("INSERT INTO broker_schema_versions(subject, version, schema, "
                    "state, created_at) VALUES (?, ?, ?, 'proposed', ?)",
                    {Value{subject}, Value{static_cast<std::int64_t>(version)},
                     Value{std::string_view(text)}, Value{now}})
            .status());
    return audit_.append(actor, "schema.registered", fmt::format("{}@{}", subject, version),
                         Json::object({{"subject", std::string(subject)}, {"version", version}}));
  }));
  // The first version has nobody to wait for; later ones wait for the subject's groups.
  if (existing.empty() || hooks_.groups_of_subject(subject).empty()) {
    CIVICBUS_RETURN_IF_ERROR(
        make_active(subject, version, actor,
                    existing.empty() ? "first version" : "no consumer groups to wait for"));
  }
  return load_version(subject, version);
}

Result<SchemaVersion> SchemaRegistry::acknowledge(std::string_view subject, int version,
                                                  std::string_view group) {
  std::lock_guard lock(write_mu_);
  CIVICBUS_ASSIGN_OR_RETURN(auto v, load_version(subject, version));
  auto groups = hooks_.groups_of_subject(subject);
  if (std::find(groups.begin(), groups.end(), group) == groups.end()) {
    return failed_precondition(fmt::format(
        "group '{}' does not consume any topic of schema subject '{}'; only its consumer groups "
        "acknowledge its versions",
        group, subject));
  }
  CIVICBUS_RETURN_IF_ERROR(db_.transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(
        db_.execute("INSERT INTO broker_schema_acks(subject, version, group_name, acked_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    {Value{subject}, Value{static_cast<std::int64_t>(version)}, Value{group},
                     Value{to_unix_micros(clock_.now())}})
            .status());
    return audit_.append(group, "schema.acknowledged", fmt::format("{}@{}", subject, version),
                         Json::object({{"group", std::string(group)}}));
  }));
  CIVICBUS_ASSIGN_OR_RETURN(v, load_version(subject, version));
  if (v.state == SchemaState::kProposed && v.waiting_for.empty()) {
    CIVICBUS_RETURN_IF_ERROR(
        make_active(subject, version, group, "acknowledged by every consumer group"));
    return load_version(subject, version);
  }
  return v;
}

Result<SchemaVersion> SchemaRegistry::activate(std::string_view subject, int version,
                                               std::string_view actor) {
  std::lock_guard lock(write_mu_);
  CIVICBUS_ASSIGN_OR_RETURN(auto v, load_version(subject, version));
  auto owners = hooks_.owners_of_subject(subject);
  if (std::find(owners.begin(), owners.end(), actor) == owners.end()) {
    return permission_denied(fmt::format(
        "'{}' may not activate schema {}@{}: only the owner of a topic using the subject may "
        "override consumer acknowledgement{}",
        actor, subject, version,
        owners.empty() ? " (no topic uses this subject)"
                       : fmt::format(" (owners: {})", fmt::join(owners, ", "))));
  }
  if (v.state == SchemaState::kActive) return v;
  CIVICBUS_RETURN_IF_ERROR(make_active(subject, version, actor, "owner override"));
  return load_version(subject, version);
}

Status SchemaRegistry::reconcile() {
  std::vector<std::pair<std::string, int>> proposed;
  CIVICBUS_RETURN_IF_ERROR(db_.query(
      "SELECT subject, version FROM broker_schema_versions WHERE state = 'proposed' ORDER BY "
      "subject, version",
      {}, [&](const storage::Row& row) {
        proposed.emplace_back(std::string(row.get_text(0)), static_cast<int>(row.get_int(1)));
        return true;
      }));
  std::lock_guard lock(write_mu_);
  for (const auto& [subject, version] : proposed) {
    CIVICBUS_ASSIGN_OR_RETURN(auto v, load_version(subject, version));
    if (v.waiting_for.empty()) {
      CIVICBUS_RETURN_IF_ERROR(
          make_active(subject, version, "system", "no consumer groups left to wait for"));
    }
  }
  return {};
}

Status SchemaRegistry::make_active(std::string_view subject, int version, std::string_view actor,
                                   std::string_view reason) {
  // Callers hold write_mu_.
  CIVICBUS_ASSIGN_OR_RETURN(auto v, load_version(subject, version));
  auto compiled = JsonSchema::compile(v.schema);
  if (!compiled.ok()) return compiled.status();
  const std::int64_t now = to_unix_micros(clock_.now());
  CIVICBUS_RETURN_IF_ERROR(db_.transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(db_.execute("UPDATE broker_schema_versions SET state = 'superseded' "
                                         "WHERE subject = ? AND state = 'active'",
                                         {Value{subject}})
                                 .status());
    // Proposed versions older than the one activated can never become active.
    CIVICBUS_RETURN_IF_ERROR(
        db_.execute("UPDATE broker_schema_versions SET state = 'superseded' "
                    "WHERE subject = ? AND state = 'proposed' AND version < ?",
                    {Value{subject}, Value{static_cast<std::int64_t>(version)}})
            .status());
    CIVICBUS_RETURN_IF_ERROR(
        db_.execute("UPDATE broker_schema_versions SET state = 'active', activated_at = ? "
                    "WHERE subject = ? AND version = ?",
                    {Value{now}, Value{subject}, Value{static_cast<std::int64_t>(version)}})
            .status());
    return audit_.append(actor, "schema.activated", fmt::format("{}@{}", subject, version),
                         Json::object({{"reason", std::string(reason)}}));
  }));
  std::unique_lock lock(active_mu_);
  active_[std::string(subject)] =
      Active{version, std::make_shared<const JsonSchema>(std::move(compiled).value())};
  return {};
}

}  // namespace civicbus::broker::detail
