// Schema drift: how the hub notices that a source's stream changed shape since the last run (a
// column added, dropped, retyped or made nullable) and what it does about it, by a policy chosen
// per connection.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/connect/connector.hpp"
#include "civicbus/connect/hub.hpp"
#include "civicbus/core/clock.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/storage/database.hpp"

namespace civicbus::connect {

// DriftPolicy, drift_policy_name() and parse_drift_policy() are public: connect/hub.hpp.

enum class SchemaChangeKind {
  kFieldAdded,
  kFieldRemoved,
  kTypeChanged,
  kNullabilityChanged,
  kPrimaryKeyChanged,
  kCursorFieldChanged,
};
std::string_view schema_change_kind_name(SchemaChangeKind kind);  // "field_added", …

struct SchemaChange {
  SchemaChangeKind kind = SchemaChangeKind::kFieldAdded;
  std::string field;   // empty for primary key and cursor changes
  std::string before;  // "integer", "nullable", "[id]"; empty for an added field
  std::string after;   // empty for a removed field
  // "field 'ward' changed type from integer to string".
  std::string describe() const;
};

// The changes from `recorded` to `discovered`, in the order: fields of the recorded schema
// (removed, retyped, nullability), then added fields in discovered order, then key changes.
std::vector<SchemaChange> diff_schemas(const StreamSpec& recorded, const StreamSpec& discovered);

enum class DriftOutcome {
  kRecorded,   // first time this stream was seen: its schema is now the recorded one
  kUnchanged,  // nothing changed
  kAccepted,   // changes were propagated: the new schema is recorded
  kPaused,     // changes wait for an operator's accept(); the connection should stop
  kRejected,   // changes fail the run
};
std::string_view drift_outcome_name(DriftOutcome outcome);

struct DriftReport {
  std::string connection;
  std::string stream;
  DriftPolicy policy = DriftPolicy::kPropagate;
  DriftOutcome outcome = DriftOutcome::kUnchanged;
  std::vector<SchemaChange> changes;

  // True when the run may go on (recorded, unchanged, accepted).
  bool may_run() const;
  // One line per change under a heading naming the connection, stream and outcome.
  std::string summary() const;
  // Ok when may_run(); kFailedPrecondition carrying summary() otherwise.
  Status to_status() const;
};

// StreamSpec <-> JSON, as stored: {"name","fields":[{"name","type","nullable"}],
// "primary_key":[…],"cursor_field":…}.
Json stream_spec_to_json(const StreamSpec& spec);
Result<StreamSpec> stream_spec_from_json(const Json& json);

// The schemas recorded per (connection, stream) in the table connect_schemas (migration component
// "connect_schemas"), with a pending schema per stream while a paused change waits for an operator.
// Does not own the Database or the Clock.
class SchemaDriftTracker {
 public:
  static Result<std::unique_ptr<SchemaDriftTracker>> open(storage::Database& db,
                                                          const Clock& clock);

  // Compares `discovered` with the recorded schema of (connection, discovered.name) and applies
  // `policy`. Returns the report; the caller acts on report.may_run() (an error status is only for
  // storage failures).
  Result<DriftReport> check(std::string_view connection, const StreamSpec& discovered,
                            DriftPolicy policy);
  // The recorded schema; nullopt when the stream was never recorded.
  Result<std::optional<StreamSpec>> recorded(std::string_view connection, std::string_view stream);
  // The schema waiting for accept(); nullopt when none is.
  Result<std::optional<StreamSpec>> pending(std::string_view connection, std::string_view stream);
  // Streams of `connection` with a pending schema, by name.
  Result<std::vector<std::string>> paused_streams(std::string_view connection);
  // An operator accepts the pending schema: it becomes the recorded one. kNotFound when nothing is
  // pending.
  Status accept(std::string_view connection, std::string_view stream);
  // Records `spec` as the schema of (connection, spec.name), clearing any pending one.
  Status record(std::string_view connection, const StreamSpec& spec);
  // Forgets every schema of `connection`; returns how many streams.
  Result<std::int64_t> erase(std::string_view connection);

 private:
  SchemaDriftTracker(storage::Database& db, const Clock& clock) : db_(db), clock_(clock) {}
  Result<std::optional<StreamSpec>> load(std::string_view connection, std::string_view stream,
                                         bool pending_column);

  storage::Database& db_;
  const Clock& clock_;
};

}  // namespace civicbus::connect
