// The Connector SDK: what a connector is, as Airbyte and Singer define it. A connector
// describes its configuration (spec, a JSON Schema), tests a connection (check), lists the
// streams it offers (discover), reads records from them (read, incremental through a state
// cursor) and, when it is a sink, writes them (write). Third parties implement `Connector`
// against this header alone and register a factory with a `ConnectorCatalog`; the hub
// (connect/hub.hpp) and pipelines (pipeline/pipeline.hpp) drive it.
//
// Records travel in batches that share one column list, so a CSV row of twelve fields is
// twelve values, not twelve (name, value) pairs. Values are `Json` scalars (nested arrays and
// objects are allowed for sources such as JSON files and REST APIs).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus::connect {

// The type of a stream field, as discovered or declared.
enum class FieldType { kString, kInteger, kNumber, kBoolean, kDate, kTimestamp, kJson };
CIVICBUS_EXPORT std::string_view field_type_name(FieldType type);  // "string", "integer", … "json"
CIVICBUS_EXPORT Result<FieldType> parse_field_type(std::string_view name);

struct FieldSpec {
  std::string name;
  FieldType type = FieldType::kString;
  bool nullable = true;
  friend bool operator==(const FieldSpec&, const FieldSpec&) = default;
};

// One stream a source offers (a file, a table, an API resource).
struct CIVICBUS_EXPORT StreamSpec {
  std::string name;
  std::vector<FieldSpec> fields;
  std::vector<std::string> primary_key;  // empty when the source has none
  // The field incremental reads order by and resume after; empty: full refresh only.
  std::string cursor_field;

  bool supports_incremental() const { return !cursor_field.empty(); }
  const FieldSpec* field(std::string_view name) const;
  // {"type":"object","properties":{...},"required":[...]} (JSON Schema 2020-12).
  Json to_json_schema() const;
};

// What a connector is and how it is configured. `config_schema` is a JSON Schema 2020-12;
// a property marked `"secret": true` (Airbyte's `airbyte_secret`) is a credential: the hub
// keeps it in the vault, never logs it and never returns it.
struct CIVICBUS_EXPORT ConnectorSpec {
  std::string name;   // catalog id: "csv", "postgres", "mpac"
  std::string title;  // "MPAC property assessment extract"
  std::string description;
  // Where the protocol or file format is defined ("RFC 4180", "Payments Canada Standard 005").
  std::string format_source;
  bool is_source = true;
  bool is_sink = false;
  Json config_schema = Json::object({{"type", "object"}});

  // JSON pointers ("/password", "/auth/token") of the properties marked secret.
  std::vector<std::string> secret_pointers() const;
};

// A record: its values in the batch's column order (a shorter record reads as null in the
// missing columns) and where it came from in the source (line or row number, 0 if none).
struct Record {
  std::vector<Json> values;
  std::int64_t position = 0;
};

class CIVICBUS_EXPORT RecordBatch {
 public:
  RecordBatch() = default;
  RecordBatch(std::string stream, std::vector<std::string> columns)
      : stream(std::move(stream)), columns(std::move(columns)) {}

  std::string stream;
  std::vector<std::string> columns;
  std::vector<Record> records;

  std::size_t size() const { return records.size(); }
  bool empty() const { return records.empty(); }
  // The index of `column`, or -1.
  int column_index(std::string_view column) const;
  // Adds `column` if it is new; returns its index.
  int add_column(std::string_view column);
  // The value of `column` in `record`; null when the record is short.
  static const Json& value(const Record& record, int column);
  // {"column": value, …} for one record.
  Json to_object(const Record& record) const;
  // Appends a record built from a JSON object, adding columns for new members.
  void append_object(const Json& object, std::int64_t position = 0);
};

// One record a sink refused, or a stage rejected: where, which field, what value, why.
struct RowError {
  std::int64_t position = 0;
  std::string field;
  std::string value;
  std::string reason;
};

// How a source hands records downstream. Calls come from the thread running read().
class CIVICBUS_EXPORT RecordEmitter {
 public:
  virtual ~RecordEmitter() = default;
  // Hands a batch on. A non-ok status (the sink failed, the run was cancelled) tells the
  // source to stop and return that status from read().
  virtual Status emit(RecordBatch batch) = 0;
  // The state reached after every batch emitted so far for `stream` (for instance
  // {"cursor": "2026-11-30T02:00:00Z"}). The hub commits it only once the sink has
  // acknowledged those batches, so a failed run resumes without loss (Singer's rule).
  virtual Status checkpoint(std::string_view stream, Json state) = 0;
  // True once the run is cancelled; long reads should poll it between pages or files.
  virtual bool cancelled() const { return false; }
  // A record the source met but could not read (a line of an NDJSON file that is not JSON):
  // it goes to the run's error report with its position and reason, and reading goes on.
  virtual void reject(RowError error) { (void)error; }
};

// What a connector gets for one call. `config` has its secrets resolved; it is valid for
// the duration of the call.
struct CIVICBUS_EXPORT ConnectorContext {
  Json config = Json::object();
  const Clock* clock = nullptr;  // null: the system clock (see now())
  // A directory this connection may keep files in between runs (downloads, bookkeeping of
  // a watched folder); empty when there is none.
  std::string work_dir;
  // The deadline of each network call the connector makes.
  std::chrono::milliseconds timeout{30'000};

  SystemTime now() const;
};

struct CIVICBUS_EXPORT ReadRequest {
  // Streams to read; empty: every stream discover() returns.
  std::vector<std::string> streams;
  // The committed state per stream ({"permits": {"cursor": …}}); null: read from the start.
  Json state;
  std::size_t batch_size = 10'000;
  // Stop after this many records in total (a test sync's sample); negative: no limit.
  std::int64_t max_records = -1;

  const Json* stream_state(std::string_view stream) const;
};

enum class WriteMode {
  kAppend,  // insert every record
  kUpsert,  // insert or update by `key`
};

struct WriteRequest {
  std::string stream;  // the table, file or resource to write to
  WriteMode mode = WriteMode::kAppend;
  std::vector<std::string> key;  // the upsert key's columns
  // Identifies the batch across retries and restarts ("<run>:<batch number>"). A sink that
  // can records it in the same transaction as the records and acknowledges a repeat without
  // writing again, which makes a replayed batch load once. Empty: no such guarantee asked.
  std::string batch_id;
};

struct WriteResult {
  std::int64_t written = 0;
  std::vector<RowError> rejected;  // the other records of the batch are written
};

class CIVICBUS_EXPORT Connector {
 public:
  virtual ~Connector() = default;
  virtual const ConnectorSpec& spec() const = 0;
  // Tests the connection or the path with the given config; the error says what failed.
  virtual Status check(const ConnectorContext& context) = 0;
  virtual Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) = 0;
  // Sources: reads the requested streams into `out`, checkpointing as it goes. The default
  // refuses (kFailedPrecondition): the connector is not a source.
  virtual Status read(const ConnectorContext& context, const ReadRequest& request,
                      RecordEmitter& out);
  // Sinks: writes one batch; records it cannot take go to `rejected` with the reason while
  // the rest are written. Returning ok acknowledges the written records (they are durable).
  // The default refuses (kFailedPrecondition): the connector is not a sink.
  virtual Result<WriteResult> write(const ConnectorContext& context, const WriteRequest& request,
                                    const RecordBatch& batch);
  // Request/response operations a service offers beside streams ("validate_address" of an
  // address service, "create_request" of Open311). The hub wraps them with retries, the
  // circuit breaker, the durable queue and the response cache. The default refuses
  // (kFailedPrecondition): the connector has no operations.
  virtual Result<Json> call(const ConnectorContext& context, std::string_view operation,
                            const Json& input);
  // The operations call() accepts.
  virtual std::vector<std::string> operations() const { return {}; }
};

using ConnectorFactory = std::function<std::unique_ptr<Connector>()>;

// The connectors a node knows, by name. `builtin()` holds the pre-built catalog; modules
// and third parties add their own.
class CIVICBUS_EXPORT ConnectorCatalog {
 public:
  ConnectorCatalog() = default;
  static ConnectorCatalog builtin();

  // Fails with kAlreadyExists when `name` is taken, kInvalidArgument when the factory's
  // connector reports another name or a config schema that is not a valid JSON Schema.
  Status add(ConnectorFactory factory);
  bool contains(std::string_view name) const;
  // Specs ordered by name.
  std::vector<ConnectorSpec> list() const;
  Result<std::unique_ptr<Connector>> create(std::string_view name) const;

 private:
  struct Entry {
    ConnectorSpec spec;
    ConnectorFactory factory;
  };
  std::vector<Entry> entries_;  // ordered by name
};

// Checks `config` against the connector's config schema; the error names each failing
// property (by JSON pointer) and never quotes a secret's value.
CIVICBUS_EXPORT Status validate_config(const ConnectorSpec& spec, const Json& config);

// An emitter that keeps everything in memory: for tests and test syncs.
class CIVICBUS_EXPORT CollectingEmitter : public RecordEmitter {
 public:
  Status emit(RecordBatch batch) override;
  Status checkpoint(std::string_view stream, Json state) override;

  std::vector<RecordBatch> batches;
  Json states = Json::object();  // the last checkpoint per stream
  std::int64_t record_count() const;
};

}  // namespace civicbus::connect
