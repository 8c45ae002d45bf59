#include "civicbus/pipeline/pipeline.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "batch_queue.hpp"
#include "civicbus/broker/broker.hpp"
#include "civicbus/core/csv.hpp"
#include "civicbus/core/random.hpp"
#include "stages.hpp"

namespace civicbus::pipeline {
namespace {

constexpr storage::Migration kMigrations[] = {
    {1, "pipeline runs and their checkpoints",
     "CREATE TABLE pipeline_runs ("
     " run_id TEXT PRIMARY KEY,"
     " name TEXT NOT NULL,"
     " status TEXT NOT NULL,"  // running | completed | failed | cancelled
     " started_at TEXT NOT NULL,"
     " finished_at TEXT,"
     " rows_read INTEGER NOT NULL DEFAULT 0,"
     " rows_loaded INTEGER NOT NULL DEFAULT 0,"
     " rows_failed INTEGER NOT NULL DEFAULT 0,"
     " batches INTEGER NOT NULL DEFAULT 0,"
     // The source's committed state per stream, and how many records after that state the
     // committed batches already hold (a resumed read skips them).
     " source_state TEXT NOT NULL DEFAULT '{}',"
     " rows_after_state INTEGER NOT NULL DEFAULT 0,"
     " error TEXT);"
     "CREATE INDEX pipeline_runs_by_name ON pipeline_runs (name, started_at);"},
};

// A source checkpoint, valid once every record before `seq` is committed.
struct PendingCheckpoint {
  std::int64_t seq = 0;
  std::string stream;
  Json state;
};

// One batch on its way from the reader to the loader.
struct Chunk {
  std::int64_t number = 0;   // 0-based, counted over the whole run
  std::int64_t end_seq = 0;  // records read since the resumed state, through this chunk
  RecordBatch batch;
  std::vector<PendingCheckpoint> checkpoints;
  std::vector<ErrorEntry> errors;
};

// The state of a run as the checkpoint table holds it.
struct RunState {
  std::string run_id;
  std::int64_t rows_read = 0;
  std::int64_t rows_loaded = 0;
  std::int64_t rows_failed = 0;
  std::int64_t batches = 0;
  Json source_state = Json::object();
  std::int64_t rows_after_state = 0;
};

std::string now_text(const Clock* clock) {
  return format_rfc3339(clock != nullptr ? clock->now() : std::chrono::system_clock::now());
}

// The error report: errors.csv and errors.json (an array), appended to across resumed runs.
class ErrorReport {
 public:
  Status open(const std::string& dir, bool resume) {
    if (dir.empty()) return Status();
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec)
      return io_error(fmt::format("cannot create error report folder '{}': {}", dir, ec.message()));
    csv_path_ = (std::filesystem::path(dir) / "errors.csv").string();
    json_path_ = (std::filesystem::path(dir) / "errors.json").string();
    bool append =
        resume && std::filesystem::exists(csv_path_) && std::filesystem::exists(json_path_);
    csv_ = std::fopen(csv_path_.c_str(), append ? "ab" : "wb");
    if (csv_ == nullptr) return io_error(fmt::format("cannot write '{}'", csv_path_));
    if (!append) std::fputs("batch,stage,line,field,value,reason\n", csv_);
    if (append) {
      // Reopen the array a finished (or crashed) earlier attempt left.
      std::ifstream in(json_path_, std::ios::binary);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == ']')) {
        text.pop_back();
      }
      json_entries_ = text.size() > 1 ? 1 : 0;
      if (text.empty()) text = "[";
      std::ofstream out(json_path_, std::ios::binary | std::ios::trunc);
      out << text;
    } else {
      std::ofstream out(json_path_, std::ios::binary | std::ios::trunc);
      out << "[";
    }
    json_ = std::fopen(json_path_.c_str(), "ab");
    if (json_ == nullptr) return io_error(fmt::format("cannot write '{}'", json_path_));
    return Status();
  }

  void add(const ErrorEntry& e) {
    if (csv_ == nullptr) return;
    std::string line =
        fmt::format("{},{},{},{},{},{}\n", e.batch, csv_quote(e.stage), e.error.position,
                    csv_quote(e.error.field), csv_quote(e.error.value), csv_quote(e.error.reason));
    std::fwrite(line.data(), 1, line.size(), csv_);
    Json j = Json::object({{"batch", e.batch},
                           {"stage", e.stage},
                           {"line", e.error.position},
                           {"field", e.error.field},
                           {"value", e.error.value},
                           {"reason", e.error.reason}});
    std::string text = (json_entries_++ ? ",\n" : "\n") + j.dump();
    std::fwrite(text.data(), 1, text.size(), json_);
  }

  // Makes what was added so far durable (called before the checkpoint that covers it).
  void flush() {
    if (csv_ != nullptr) std::fflush(csv_);
    if (json_ != nullptr) std::fflush(json_);
  }

  void close() {
    if (json_ != nullptr) {
      std::fputs("\n]\n", json_);
      std::fclose(json_);
      json_ = nullptr;
    }
    if (csv_ != nullptr) {
      std::fclose(csv_);
      csv_ = nullptr;
    }
  }

  ~ErrorReport() {
    if (csv_ != nullptr) std::fclose(csv_);
    if (json_ != nullptr) std::fclose(json_);  // left open-ended: a resumed run continues it
  }

  const std::string& csv_path() const { return csv_path_; }
  const std::string& json_path() const { return json_path_; }

 private:
  std::string csv_path_;
  std::string json_path_;
  std::FILE* csv_ = nullptr;
  std::FILE* json_ = nullptr;
  std::int64_t json_entries_ = 0;
};

}  // namespace

double RunReport::success_rate() const {
  std::int64_t total = rows_loaded + rows_failed;
  return total == 0 ? 1.0 : static_cast<double>(rows_loaded) / static_cast<double>(total);
}

Status PipelineOptions::validate() const {
  if (name.empty()) return invalid_argument("pipeline has no name (checkpoints are kept by name)");
  if (source.connector.empty()) {
    return invalid_argument(fmt::format("pipeline '{}' has no source connector", name));
  }
  if (sink.connector.empty()) {
    return invalid_argument(fmt::format("pipeline '{}' has no sink connector", name));
  }
  if (batch_size == 0) return invalid_argument(fmt::format("pipeline '{}': batch_size is 0", name));
  if (write_mode == connect::WriteMode::kUpsert && key.empty()) {
    return invalid_argument(fmt::format("pipeline '{}' upserts but names no key", name));
  }
  for (std::size_t i = 0; i < stages.size(); ++i) {
    if (stages[i].type.empty()) {
      return invalid_argument(fmt::format("pipeline '{}': stage {} has no type", name, i + 1));
    }
  }
  return Status();
}

namespace {

Status only_keys(const Json& j, std::initializer_list<std::string_view> keys,
                 std::string_view where) {
  if (!j.is_object()) return invalid_argument(fmt::format("{} must be a mapping", where));
  for (const auto& [key, _] : j.as_object()) {
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      std::string known;
      for (auto k : keys) known += (known.empty() ? "" : ", ") + std::string(k);
      return invalid_argument(fmt::format("unknown key '{}' in {} (known: {})", key, where, known));
    }
  }
  return Status();
}

Result<EndpointOptions> endpoint_from_json(const Json& j, std::string_view where, bool sink) {
  CIVICBUS_RETURN_IF_ERROR(
      sink ? only_keys(j, {"connector", "config", "stream", "mode", "key"}, where)
           : only_keys(j, {"connector", "config", "stream"}, where));
  EndpointOptions e;
  e.connector = j.get_string("connector");
  if (const Json* c = j.find("config")) e.config = *c;
  e.stream = j.get_string("stream");
  return e;
}

}  // namespace

Result<PipelineOptions> PipelineOptions::from_json(const Json& j) {
  CIVICBUS_RETURN_IF_ERROR(only_keys(j,
                                     {"name", "source", "stages", "sink", "batch_size",
                                      "error_report_dir", "expected_rows", "restart"},
                                     "the pipeline"));
  PipelineOptions o;
  o.name = j.get_string("name");
  if (const Json* s = j.find("source")) {
    CIVICBUS_ASSIGN_OR_RETURN(o.source, endpoint_from_json(*s, "source", false));
  }
  if (const Json* s = j.find("sink")) {
    CIVICBUS_ASSIGN_OR_RETURN(o.sink, endpoint_from_json(*s, "sink", true));
    std::string mode = s->get_string("mode", "append");
    if (mode != "append" && mode != "upsert") {
      return invalid_argument(fmt::format("sink mode is '{}' (append or upsert)", mode));
    }
    o.write_mode = mode == "upsert" ? connect::WriteMode::kUpsert : connect::WriteMode::kAppend;
    if (const Json* k = s->find("key")) {
      if (k->is_string()) {
        o.key.push_back(k->as_string());
      } else if (k->is_array()) {
        for (const auto& v : k->as_array())
          o.key.push_back(v.is_string() ? v.as_string() : v.dump());
      }
    }
  }
  if (const Json* stages = j.find("stages")) {
    if (!stages->is_array()) return invalid_argument("'stages' must be a list");
    for (const auto& st : stages->as_array()) {
      if (!st.is_object()) return invalid_argument("each stage must be a mapping with a 'type'");
      StageOptions s;
      s.type = st.get_string("type");
      s.name = st.get_string("name");
      s.config = Json::object();
      for (const auto& [k, v] : st.as_object()) {
        if (k != "type" && k != "name") s.config.set(k, v);
      }
      o.stages.push_back(std::move(s));
    }
  }
  if (const Json* b = j.find("batch_size")) {
    if (!b->is_int() || b->as_int() <= 0)
      return invalid_argument("'batch_size' must be a positive integer");
    o.batch_size = static_cast<std::size_t>(b->as_int());
  }
  o.error_report_dir = j.get_string("error_report_dir");
  o.expected_rows = j.get_int("expected_rows", 0);
  o.restart = j.get_bool("restart", false);
  return o;
}

struct Pipeline::Impl {
  PipelineOptions options;
  PipelineEnv env;
  std::unique_ptr<connect::Connector> source;
  std::unique_ptr<connect::Connector> sink;
  std::vector<std::unique_ptr<Stage>> stages;
  std::unique_ptr<storage::Database> owned_state;
  storage::Database* state = nullptr;
  std::atomic<bool> cancelled{false};
  SecureRandom random;
  Counter* rows_read_metric = nullptr;
  Counter* rows_loaded_metric = nullptr;
  Counter* rows_failed_metric = nullptr;

  Result<RunState> begin_run();
  Status commit(const RunState& run, std::string_view status, std::string_view error = {});
  void publish(std::string_view type, const Json& data);
  Result<RunReport> run();
};

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::~Pipeline() = default;

void Pipeline::add_stage(std::unique_ptr<Stage> stage) {
  impl_->stages.push_back(std::move(stage));
}
void Pipeline::cancel() {
  impl_->cancelled = true;
}
const PipelineOptions& Pipeline::options() const {
  return impl_->options;
}
Result<RunReport> Pipeline::run() {
  return impl_->run();
}

Result<std::unique_ptr<Pipeline>> Pipeline::create(PipelineOptions options, PipelineEnv env) {
  CIVICBUS_RETURN_IF_ERROR(options.validate());
  auto impl = std::make_unique<Impl>();
  const connect::ConnectorCatalog builtin =
      env.catalog == nullptr ? connect::ConnectorCatalog::builtin() : connect::ConnectorCatalog();
  const connect::ConnectorCatalog& catalog = env.catalog ? *env.catalog : builtin;

  auto make_endpoint = [&](const EndpointOptions& e, std::string_view role,
                           bool need_sink) -> Result<std::unique_ptr<connect::Connector>> {
    auto c = catalog.create(e.connector);
    if (!c.ok())
      return c.status().with_context(fmt::format("pipeline '{}' {}", options.name, role));
    const connect::ConnectorSpec& spec = (*c)->spec();
    if (need_sink ? !spec.is_sink : !spec.is_source) {
      return invalid_argument(fmt::format("pipeline '{}': connector '{}' cannot be a {}",
                                          options.name, e.connector, role));
    }
    CIVICBUS_RETURN_IF_ERROR(
        connect::validate_config(spec, e.config)
            .with_context(fmt::format("pipeline '{}' {}", options.name, role)));
    return std::move(c).value();
  };
  CIVICBUS_ASSIGN_OR_RETURN(impl->source, make_endpoint(options.source, "source", false));
  CIVICBUS_ASSIGN_OR_RETURN(impl->sink, make_endpoint(options.sink, "sink", true));

  for (std::size_t i = 0; i < options.stages.size(); ++i) {
    StageOptions s = options.stages[i];
    if (s.name.empty()) s.name = s.type;
    Result<std::unique_ptr<Stage>> stage = [&]() -> Result<std::unique_ptr<Stage>> {
      if (auto it = env.stage_types.find(s.type); it != env.stage_types.end()) return it->second(s);
      return detail::make_builtin_stage(s);
    }();
    if (!stage.ok()) {
      return stage.status().with_context(
          fmt::format("pipeline '{}' stage {} ('{}')", options.name, i + 1, s.name));
    }
    impl->stages.push_back(std::move(stage).value());
  }

  if (env.state != nullptr) {
    impl->state = env.state;
  } else {
    storage::SqliteOptions so;
    std::filesystem::path dir = options.error_report_dir.empty() ? "." : options.error_report_dir;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    so.path = (dir / (options.name + ".pipeline.db")).string();
    CIVICBUS_ASSIGN_OR_RETURN(impl->owned_state, storage::open_sqlite(so));
    impl->state = impl->owned_state.get();
  }
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(*impl->state, "pipeline", kMigrations));

  if (env.broker != nullptr) {
    static constexpr std::pair<std::string_view, std::string_view> kTopics[] = {
        {"pipeline.run.progressed", "A pipeline run committed a batch (rows read, loaded, failed)"},
        {"pipeline.run.completed", "A pipeline run finished (totals and success rate)"},
        {"pipeline.run.failed", "A pipeline run stopped on an error; running it again resumes"},
    };
    for (const auto& [name, description] : kTopics) {
      if (env.broker->topic(name).ok()) continue;
      broker::TopicOptions t;
      t.name = std::string(name);
      t.owner = "pipeline";
      t.description = std::string(description);
      Status s = env.broker->create_topic(t, "pipeline");
      if (!s.ok() && s.code() != ErrorCode::kAlreadyExists) return s;
    }
  }
  if (env.metrics != nullptr) {
    Labels labels{{"pipeline", options.name}};
    impl->rows_read_metric = &env.metrics->counter("civicbus_pipeline_rows_read_total",
                                                   "Records read by pipelines", labels);
    impl->rows_loaded_metric = &env.metrics->counter("civicbus_pipeline_rows_loaded_total",
                                                     "Records loaded by pipelines", labels);
    impl->rows_failed_metric = &env.metrics->counter(
        "civicbus_pipeline_rows_failed_total", "Records that failed a stage or the load", labels);
  }
  impl->options = std::move(options);
  impl->env = std::move(env);
  return std::unique_ptr<Pipeline>(new Pipeline(std::move(impl)));
}

Result<RunState> Pipeline::Impl::begin_run() {
  RunState run;
  bool found = false;
  if (!options.restart) {
    CIVICBUS_RETURN_IF_ERROR(state->query(
        "SELECT run_id, status, rows_read, rows_loaded, rows_failed, batches, source_state, "
        "rows_after_state FROM pipeline_runs WHERE name = ? ORDER BY started_at DESC, rowid DESC "
        "LIMIT 1",
        {std::string_view(options.name)}, [&](const storage::Row& row) {
          if (row.get_text(1) == "completed") return false;
          found = true;
          run.run_id = std::string(row.get_text(0));
          run.rows_read = row.get_int(2);
          run.rows_loaded = row.get_int(3);
          run.rows_failed = row.get_int(4);
          run.batches = row.get_int(5);
          if (auto s = Json::parse(row.get_text(6)); s.ok())
            run.source_state = std::move(s).value();
          run.rows_after_state = row.get_int(7);
          return false;
        }));
  }
  if (found) {
    CIVICBUS_RETURN_IF_ERROR(
        state
            ->execute("UPDATE pipeline_runs SET status = 'running', error = NULL WHERE run_id = ?",
                      {std::string_view(run.run_id)})
            .status());
    return run;
  }
  run.run_id =
      fmt::format("{}-{}", options.name,
                  to_unix_micros(env.clock ? env.clock->now() : std::chrono::system_clock::now()));
  CIVICBUS_RETURN_IF_ERROR(
      state
          ->execute("INSERT INTO pipeline_runs (run_id, name, status, started_at) VALUES (?, ?, "
                    "'running', ?)",
                    {std::string_view(run.run_id), std::string_view(options.name),
                     std::string_view(now_text(env.clock))})
          .status());
  return run;
}

Status Pipeline::Impl::commit(const RunState& run, std::string_view status,
                              std::string_view error) {
  std::string source_state = run.source_state.dump();
  std::string finished = status == "running" ? std::string() : now_text(env.clock);
  return state
      ->execute(
          "UPDATE pipeline_runs SET status = ?, rows_read = ?, rows_loaded = ?, rows_failed = ?, "
          "batches = ?, source_state = ?, rows_after_state = ?, finished_at = ?, error = ? "
          "WHERE run_id = ?",
          {status, run.rows_read, run.rows_loaded, run.rows_failed, run.batches,
           std::string_view(source_state), run.rows_after_state,
           finished.empty() ? storage::Value(nullptr) : storage::Value(std::string_view(finished)),
           error.empty() ? storage::Value(nullptr) : storage::Value(error),
           std::string_view(run.run_id)})
      .status();
}

void Pipeline::Impl::publish(std::string_view type, const Json& data) {
  if (env.broker == nullptr) return;
  broker::CloudEvent event{std::string(type), "civicbus/pipeline/" + options.name, data};
  event.set_subject(options.name);
  env.broker->publish_async(std::move(event), [](Result<broker::PublishAck>) {});
}

namespace {

// Cuts the source's batches into the pipeline's, counting records from the resumed state so
// that batch boundaries (and so batch ids) are the same in every attempt of a run.
class Chunker final : public connect::RecordEmitter {
 public:
  Chunker(detail::BatchQueue<Chunk>& out, detail::BatchQueue<Chunk>& spent, std::size_t batch_size,
          std::int64_t skip, std::int64_t first_batch, const std::atomic<bool>& cancelled)
      : out_(out),
        spent_(spent),
        batch_size_(batch_size),
        skip_(skip),
        next_number_(first_batch),
        cancelled_(cancelled) {
    current_.number = next_number_++;
  }

  Status emit(RecordBatch batch) override {
    if (cancelled_) return civicbus::cancelled("pipeline cancelled");
    if (current_.batch.columns.empty() && current_.batch.records.empty()) {
      current_.batch.stream = batch.stream;
      current_.batch.columns = batch.columns;
    }
    // Column positions of the incoming batch in the chunk (sources such as JSON files add
    // columns as they meet them).
    mapping_.resize(batch.columns.size());
    bool identity = batch.columns.size() <= current_.batch.columns.size();
    for (std::size_t i = 0; i < batch.columns.size(); ++i) {
      int at = i < current_.batch.columns.size() && current_.batch.columns[i] == batch.columns[i]
                   ? static_cast<int>(i)
                   : current_.batch.add_column(batch.columns[i]);
      mapping_[i] = at;
      identity = identity && at == static_cast<int>(i);
    }
    for (auto& record : batch.records) {
      ++seq_;
      if (skip_ > 0) {
        --skip_;
        continue;
      }
      if (!identity) {
        std::vector<Json> values(current_.batch.columns.size());
        for (std::size_t i = 0; i < record.values.size() && i < mapping_.size(); ++i) {
          values[static_cast<std::size_t>(mapping_[i])] = std::move(record.values[i]);
        }
        record.values = std::move(values);
      }
      current_.batch.records.push_back(std::move(record));
      if (current_.batch.records.size() >= batch_size_) {
        CIVICBUS_RETURN_IF_ERROR(ship());
      }
    }
    return Status();
  }

  Status checkpoint(std::string_view stream, Json state) override {
    current_.checkpoints.push_back(PendingCheckpoint{seq_, std::string(stream), std::move(state)});
    return Status();
  }

  bool cancelled() const override { return cancelled_.load(); }

  // Counted like a record, so that a resumed attempt skips it as it skips records.
  void reject(RowError error) override {
    ++seq_;
    if (skip_ > 0) {
      --skip_;
      return;
    }
    current_.errors.push_back(ErrorEntry{current_.number + 1, "source", std::move(error)});
  }

  // Ships what is left, even an empty batch that only carries checkpoints.
  Status finish() {
    if (current_.batch.records.empty() && current_.checkpoints.empty()) return Status();
    return ship();
  }

  std::int64_t records_seen() const { return seq_; }

 private:
  Status ship() {
    current_.end_seq = seq_;
    std::vector<std::string> columns = current_.batch.columns;
    std::string stream = current_.batch.stream;
    if (!out_.push(std::move(current_))) return civicbus::cancelled("pipeline stopped downstream");
    // A chunk the loader is done with comes back here to be freed and reused: its records
    // were mostly allocated on this thread (freeing them here avoids contending for another
    // thread's malloc arena), and its record array keeps its capacity.
    if (auto spent = spent_.try_pop()) {
      current_ = std::move(*spent);
      current_.batch.records.clear();
      current_.checkpoints.clear();
      current_.errors.clear();
    } else {
      current_ = Chunk{};
    }
    current_.number = next_number_++;
    current_.batch.stream = std::move(stream);
    current_.batch.columns = std::move(columns);
    current_.batch.records.reserve(batch_size_);
    return Status();
  }

  detail::BatchQueue<Chunk>& out_;
  detail::BatchQueue<Chunk>& spent_;
  std::size_t batch_size_;
  std::int64_t skip_;
  std::int64_t next_number_;
  const std::atomic<bool>& cancelled_;
  std::int64_t seq_ = 0;
  Chunk current_;
  std::vector<int> mapping_;
};

}  // namespace

Result<RunReport> Pipeline::Impl::run() {
  const auto started = std::chrono::steady_clock::now();
  cancelled = false;
  CIVICBUS_ASSIGN_OR_RETURN(RunState run, begin_run());
  RunReport report;
  report.run_id = run.run_id;
  report.resumed = run.batches > 0 || run.rows_read > 0;
  report.resumed_after_rows = run.rows_read;

  ErrorReport errors;
  CIVICBUS_RETURN_IF_ERROR(errors.open(options.error_report_dir, report.resumed));
  report.error_csv_path = errors.csv_path();
  report.error_json_path = errors.json_path();

  connect::ConnectorContext source_context;
  source_context.config = options.source.config;
  source_context.clock = env.clock;
  connect::ConnectorContext sink_context;
  sink_context.config = options.sink.config;
  sink_context.clock = env.clock;

  connect::ReadRequest request;
  if (!options.source.stream.empty()) request.streams.push_back(options.source.stream);
  request.state = run.source_state;
  request.batch_size = std::min<std::size_t>(options.batch_size, 50'000);

  detail::BatchQueue<Chunk> read_queue(2);
  detail::BatchQueue<Chunk> load_queue(2);
  detail::BatchQueue<Chunk> spent_queue(2);  // loaded chunks going back to the reader
  Status read_status;
  Status stage_status;

  // The records the committed batches hold past the committed source state are skipped.
  Chunker chunker(read_queue, spent_queue, options.batch_size, run.rows_after_state, run.batches,
                  cancelled);
  std::thread reader([&] {
    read_status = source->read(source_context, request, chunker);
    if (read_status.ok()) read_status = chunker.finish();
    read_queue.close();
  });
  std::thread stager([&] {
    while (auto chunk = read_queue.pop()) {
      for (auto& stage : stages) {
        if (chunk->batch.empty()) break;
        std::vector<RowError> rejected;
        Status s = stage->process(chunk->batch, rejected);
        if (!s.ok()) {
          stage_status = s.with_context(
              fmt::format("stage '{}' on batch {}", stage->name(), chunk->number + 1));
          read_queue.abandon();
          load_queue.close();
          return;
        }
        for (auto& e : rejected) {
          chunk->errors.push_back(
              ErrorEntry{chunk->number + 1, std::string(stage->name()), std::move(e)});
        }
      }
      if (!load_queue.push(std::move(*chunk))) {
        read_queue.abandon();
        return;
      }
    }
    load_queue.close();
  });

  Status load_status;
  // The read position (records since the state the read started from) at which the
  // committed source state was taken: the resumed state itself at first.
  std::int64_t origin_seq = 0;
  while (auto chunk = load_queue.pop()) {
    const std::int64_t chunk_rows =
        static_cast<std::int64_t>(chunk->batch.size() + chunk->errors.size());
    std::int64_t loaded = 0;
    if (!chunk->batch.empty()) {
      connect::WriteRequest write;
      write.stream = options.sink.stream;
      write.mode = options.write_mode;
      write.key = options.key;
      write.batch_id = fmt::format("{}:{}", run.run_id, chunk->number);
      auto written = sink->write(sink_context, write, chunk->batch);
      if (!written.ok()) {
        load_status = written.status().with_context(
            fmt::format("loading batch {} into '{}'", chunk->number + 1, options.sink.connector));
        break;
      }
      loaded = written->written;
      for (auto& e : written->rejected) {
        chunk->errors.push_back(ErrorEntry{chunk->number + 1, "load", std::move(e)});
      }
    }
    // The errors go to the report before the checkpoint that covers them.
    for (const auto& e : chunk->errors) {
      errors.add(e);
      if (report.errors.size() < options.max_errors_in_memory) report.errors.push_back(e);
    }
    errors.flush();
    const std::int64_t failed = static_cast<std::int64_t>(chunk->errors.size());
    // A chunk with no records only carries the source's last checkpoint: it commits the
    // state but is not a batch.
    const bool counted = chunk_rows > 0;
    run.rows_read += chunk_rows;
    run.rows_loaded += loaded;
    run.rows_failed += failed;
    if (counted) run.batches = chunk->number + 1;
    if (!chunk->checkpoints.empty()) {
      for (auto& cp : chunk->checkpoints) run.source_state.set(cp.stream, std::move(cp.state));
      origin_seq = chunk->checkpoints.back().seq;
    }
    run.rows_after_state = chunk->end_seq - origin_seq;
    if (Status s = commit(run, "running"); !s.ok()) {
      load_status = s.with_context("committing the pipeline checkpoint");
      break;
    }
    if (!counted) continue;
    report.rows_read += chunk_rows;
    report.rows_loaded += loaded;
    report.rows_failed += failed;
    report.batches += 1;
    if (rows_read_metric != nullptr) {
      rows_read_metric->inc(static_cast<double>(chunk_rows));
      rows_loaded_metric->inc(static_cast<double>(loaded));
      rows_failed_metric->inc(static_cast<double>(failed));
    }
    Progress progress;
    progress.rows_read = run.rows_read;
    progress.rows_loaded = run.rows_loaded;
    progress.rows_failed = run.rows_failed;
    progress.batches = run.batches;
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    progress.rows_per_second = seconds > 0 ? static_cast<double>(report.rows_read) / seconds : 0;
    if (options.expected_rows > 0 && progress.rows_per_second > 0) {
      double left =
          static_cast<double>(std::max<std::int64_t>(0, options.expected_rows - run.rows_read));
      progress.eta =
          std::chrono::seconds(static_cast<std::int64_t>(left / progress.rows_per_second));
    }
    if (env.on_progress) env.on_progress(progress);
    publish("pipeline.run.progressed",
            Json::object({{"run_id", run.run_id},
                          {"rows_read", run.rows_read},
                          {"rows_loaded", run.rows_loaded},
                          {"rows_failed", run.rows_failed},
                          {"batches", run.batches},
                          {"rows_per_second", progress.rows_per_second}}));
    // Back to the reader for freeing and reuse; dropped here when the reader has enough.
    spent_queue.try_push(std::move(*chunk));
  }
  if (!load_status.ok()) {
    cancelled = true;  // the reader stops at its next emit
    load_queue.abandon();
    read_queue.abandon();
  }
  reader.join();
  stager.join();

  report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  Status outcome =
      !load_status.ok()    ? load_status
      : !stage_status.ok() ? stage_status
      : !read_status.ok()
          ? read_status.with_context(fmt::format("reading from '{}'", options.source.connector))
          : Status();
  if (outcome.ok()) errors.close();
  std::string_view status = outcome.ok()                              ? "completed"
                            : outcome.code() == ErrorCode::kCancelled ? "cancelled"
                                                                      : "failed";
  CIVICBUS_RETURN_IF_ERROR(commit(run, status, outcome.ok() ? "" : outcome.message()));
  Json summary = Json::object({{"run_id", run.run_id},
                               {"status", status},
                               {"rows_read", run.rows_read},
                               {"rows_loaded", run.rows_loaded},
                               {"rows_failed", run.rows_failed},
                               {"batches", run.batches},
                               {"success_rate", report.success_rate()}});
  if (!outcome.ok()) summary.set("error", outcome.message());
  publish(outcome.ok() ? "pipeline.run.completed" : "pipeline.run.failed", summary);
  if (!outcome.ok()) return outcome;
  return report;
}

}  // namespace civicbus::pipeline
