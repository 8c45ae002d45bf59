// Pipeline: multi-stage ETL over record batches. A source connector's records are cut into
// batches (100,000 records by default), each batch runs through the stages (types, code
// maps, address normalisation, JSON Schema validation, field mapping, custom C++ stages)
// and is written to a sink connector; then the run's checkpoint is committed. A stopped or
// crashed run of the same name resumes after its last committed batch, and a batch the sink
// had already taken is acknowledged without loading twice (WriteRequest::batch_id).
//
// Failing records never stop a batch: each lands in the error report (CSV and JSON, with
// its line, field, value and reason) while the rest of the batch loads.
//
// A Pipeline owns its connectors, stages and threads; it does not own the state database,
// the broker or the metrics registry it is given.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/connect/connector.hpp"
#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/metrics.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"
#include "civicbus/storage/database.hpp"

namespace civicbus::broker {
class Broker;
}

namespace civicbus::pipeline {

using connect::RecordBatch;
using connect::RowError;

// A step over batches. process() edits the batch in place; a record it refuses is removed
// from the batch and described in `errors` (its position, field, value and reason). Stages
// of one pipeline run on one thread, one batch at a time, in order, so a stage may keep
// state across batches (a deduplication index). A non-ok status fails the run: use it for
// faults of the stage itself, never for bad records.
class CIVICBUS_EXPORT Stage {
 public:
  virtual ~Stage() = default;
  virtual std::string_view name() const = 0;
  virtual Status process(RecordBatch& batch, std::vector<RowError>& errors) = 0;
};

// A stage as configuration: {"type": "map_codes", "name": "status codes", ...}.
struct StageOptions {
  std::string type;  // built-in: types, map_codes, validate, normalize_address, map_fields
  std::string name;  // for reports and errors; defaults to the type
  Json config = Json::object();
};

using StageFactory = std::function<Result<std::unique_ptr<Stage>>(const StageOptions&)>;

struct EndpointOptions {
  std::string connector;  // catalog name: "csv", "sqlite", …
  Json config = Json::object();
  std::string stream;  // source: the stream to read (empty: the first discovered);
                       // sink: the table or resource to write
};

struct CIVICBUS_EXPORT PipelineOptions {
  // Names the pipeline's checkpoints: a run resumes the unfinished run of the same name.
  std::string name;
  EndpointOptions source;
  std::vector<StageOptions> stages;
  EndpointOptions sink;
  connect::WriteMode write_mode = connect::WriteMode::kAppend;
  std::vector<std::string> key;  // upsert key
  std::size_t batch_size = 100'000;
  // Where errors.csv and errors.json go; empty: the report is kept only in memory
  // (RunReport::errors, capped at `max_errors_in_memory`).
  std::string error_report_dir;
  std::size_t max_errors_in_memory = 1000;
  // For progress: the number of records the source will give (0: unknown, no ETA).
  std::int64_t expected_rows = 0;
  // Start from the beginning even when an unfinished run of this name exists.
  bool restart = false;

  Status validate() const;
  // The JSON form of a pipeline file (`civicbus pipeline run FILE` reads it as YAML):
  // {"name", "source": {"connector", "config", "stream"}, "stages": [{"type", "name", ...config}],
  //  "sink": {"connector", "config", "stream", "mode": "append"|"upsert", "key": [...]},
  //  "batch_size", "error_report_dir", "expected_rows"}. Unknown keys are refused by name.
  static Result<PipelineOptions> from_json(const Json& json);
};

struct Progress {
  std::int64_t rows_read = 0;
  std::int64_t rows_loaded = 0;
  std::int64_t rows_failed = 0;
  std::int64_t batches = 0;
  double rows_per_second = 0;
  std::optional<std::chrono::seconds> eta;  // when expected_rows is known
};

struct ErrorEntry {
  std::int64_t batch = 0;
  std::string stage;  // the stage or "load"
  RowError error;
};

struct CIVICBUS_EXPORT RunReport {
  std::string run_id;
  bool resumed = false;
  std::int64_t resumed_after_rows = 0;  // records the earlier attempt had committed
  std::int64_t rows_read = 0;
  std::int64_t rows_loaded = 0;
  std::int64_t rows_failed = 0;
  std::int64_t batches = 0;
  std::chrono::milliseconds elapsed{0};
  std::string error_csv_path;
  std::string error_json_path;
  std::vector<ErrorEntry> errors;  // the first max_errors_in_memory

  // Loaded / (loaded + failed); 1 when nothing was read.
  double success_rate() const;
};

// What a pipeline runs with. Everything is optional.
struct PipelineEnv {
  const connect::ConnectorCatalog* catalog = nullptr;  // null: the built-in catalog
  // Checkpoints (table pipeline_runs). Null: an SQLite file "<name>.pipeline.db" in
  // error_report_dir, or in the working directory.
  storage::Database* state = nullptr;
  broker::Broker* broker = nullptr;  // pipeline.run.progressed / completed / failed events
  MetricsRegistry* metrics = nullptr;
  const Clock* clock = nullptr;  // null: the system clock
  // Stage types beyond the built-in ones (custom C++ stages), by type name.
  std::map<std::string, StageFactory, std::less<>> stage_types;
  // Called on the loading thread after each committed batch.
  std::function<void(const Progress&)> on_progress;
};

class CIVICBUS_EXPORT Pipeline {
 public:
  // Builds the connectors and stages; errors name the stage or endpoint at fault.
  static Result<std::unique_ptr<Pipeline>> create(PipelineOptions options, PipelineEnv env = {});
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Appends a stage object after the configured ones (for stages built in code).
  void add_stage(std::unique_ptr<Stage> stage);

  // Runs to the end of the source (blocking). Resumes an unfinished run of the same name.
  // A cancelled run commits the batch in flight and returns kCancelled; running it again
  // continues where it stopped.
  Result<RunReport> run();
  // Thread-safe; run() returns soon after.
  void cancel();

  const PipelineOptions& options() const;

 private:
  struct Impl;
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The built-in stage types, for `civicbus pipeline stages` and docs.
CIVICBUS_EXPORT std::vector<std::string> builtin_stage_types();

}  // namespace civicbus::pipeline
