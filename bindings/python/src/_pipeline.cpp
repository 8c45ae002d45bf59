// civicbus.Pipeline: ETL runs from Python, with stages written in Python (civicbus.Stage) and
// sources and sinks from a ConnectorCatalog (so Python connectors too). A run blocks the
// calling thread without the GIL; the source reads on a thread of its own and the stages on
// another, each taking the GIL for the Python code it calls.
#include <fmt/format.h>

#include <unordered_map>
#include <unordered_set>

#include "civicbus/pipeline/pipeline.hpp"
#include "handles.hpp"

namespace civicbus::python {
namespace {

using pipeline::Pipeline;

constexpr const char* kStageSource = R"python(
class Stage:
    """Base class of pipeline stages written in Python. process(batch) gets a StageBatch:
    edit batch.records (a list of dicts) in place or assign a new list, and call
    batch.reject(record, reason) for a record that fails (it leaves the batch and goes to the
    run's error report with its position). Raising fails the whole run: use it for faults of
    the stage itself, never for bad records. Stages of a pipeline run one batch at a time, in
    order, so a stage may keep state across batches."""

    name = ""

    def process(self, batch):
        """Processes one batch in place."""
        return None
)python";

// A batch as a Python stage sees it.
struct StageBatch {
  std::string stream;
  py::list records;
  // Rejected records by identity, with what the stage said.
  std::vector<std::pair<py::object, connect::RowError>> rejected;
};

class PythonStage final : public pipeline::Stage {
 public:
  PythonStage(PyHandle instance, std::string name)
      : instance_(std::move(instance)), name_(std::move(name)) {}
  std::string_view name() const override { return name_; }

  Status process(connect::RecordBatch& batch, std::vector<connect::RowError>& errors) override {
    return call_python(fmt::format("stage '{}'", name_), [&] {
      auto view = std::make_shared<StageBatch>();
      view->stream = batch.stream;
      // The originals stay referenced so that their ids cannot be reused by new dicts.
      py::list originals;
      std::unordered_map<PyObject*, std::int64_t> positions;
      for (const auto& r : batch.records) {
        py::object d = json_to_python(batch.to_object(r));
        positions[d.ptr()] = r.position;
        originals.append(d);
        view->records.append(d);
      }
      instance_->attr("process")(py::cast(view));

      auto position_of = [&](PyObject* p) {
        auto it = positions.find(p);
        return it == positions.end() ? std::int64_t{0} : it->second;
      };
      std::unordered_set<PyObject*> rejected;
      for (auto& [record, error] : view->rejected) {
        rejected.insert(record.ptr());
        error.position = position_of(record.ptr());
        errors.push_back(error);
      }
      connect::RecordBatch out(batch.stream, {});
      for (auto item : view->records) {
        if (rejected.count(item.ptr()) != 0) continue;
        Json object = json_from_python(item);
        if (!object.is_object()) {
          throw py::type_error(fmt::format("stage '{}': batch.records must hold dicts", name_));
        }
        out.append_object(object, position_of(item.ptr()));
      }
      batch = std::move(out);
    });
  }

 private:
  PyHandle instance_;
  std::string name_;
};

std::string stage_name(const py::object& instance, std::string_view fallback) {
  std::string name;
  if (py::hasattr(instance, "name")) name = py::str(instance.attr("name")).cast<std::string>();
  return name.empty() ? std::string(fallback) : name;
}

// A pipeline and what it runs with. close() (by the node, or when dropped) cancels a run in
// progress and waits for it.
class PipelineState final : public Closeable {
 public:
  PipelineState(std::shared_ptr<NodeState> node, connect::ConnectorCatalog catalog)
      : node_(std::move(node)), catalog_(std::move(catalog)) {}
  ~PipelineState() override {
    without_gil([this] { close(); });
  }

  const connect::ConnectorCatalog& catalog() const { return catalog_; }
  const std::shared_ptr<NodeState>& node() const { return node_; }
  void set(std::unique_ptr<Pipeline> p) { pipeline_ = std::move(p); }

  void close() override {
    closed_.store(true);
    {
      std::lock_guard<std::mutex> lock(ptr_mu_);
      if (pipeline_) pipeline_->cancel();
    }
    std::lock_guard<std::mutex> run(run_mu_);
    std::unique_ptr<Pipeline> gone;
    {
      std::lock_guard<std::mutex> lock(ptr_mu_);
      gone = std::move(pipeline_);
    }
  }

  void cancel() {
    std::lock_guard<std::mutex> lock(ptr_mu_);
    if (pipeline_) pipeline_->cancel();
  }

  // Runs with the GIL released (the caller released it).
  Result<pipeline::RunReport> run() {
    std::lock_guard<std::mutex> run(run_mu_);
    if (closed_.load() || !pipeline_) return failed_precondition("the pipeline is closed");
    if (node_) {
      Lifetime::Use use = node_->use();  // the node's database and broker stay meanwhile
      return pipeline_->run();
    }
    return pipeline_->run();
  }

  Pipeline& pipeline() {
    if (closed_.load() || !pipeline_)
      throw StatusError(failed_precondition("the pipeline is closed"));
    return *pipeline_;
  }

 private:
  std::shared_ptr<NodeState> node_;  // null: the pipeline keeps its own state file
  connect::ConnectorCatalog catalog_;
  std::atomic<bool> closed_{false};
  std::mutex run_mu_;
  std::mutex ptr_mu_;
  std::unique_ptr<Pipeline> pipeline_;
};

std::shared_ptr<PipelineState> make_pipeline(pipeline::PipelineOptions options,
                                             const std::optional<CatalogRef>& catalog,
                                             const py::object& stage_types,
                                             const std::shared_ptr<NodeState>& node,
                                             const py::object& on_progress) {
  auto state = std::make_shared<PipelineState>(
      node, catalog ? *catalog->catalog : connect::ConnectorCatalog::builtin());
  pipeline::PipelineEnv env;
  env.catalog = &state->catalog();
  if (!stage_types.is_none()) {
    for (auto item : stage_types.cast<py::dict>()) {
      const std::string type = item.first.cast<std::string>();
      PyHandle factory = share(py::reinterpret_borrow<py::object>(item.second));
      env.stage_types[type] =
          [factory,
           type](const pipeline::StageOptions& o) -> Result<std::unique_ptr<pipeline::Stage>> {
        std::unique_ptr<pipeline::Stage> stage;
        Status s =
            call_python(fmt::format("creating stage '{}'", o.name.empty() ? type : o.name), [&] {
              py::object instance = (*factory)(json_to_python(o.config));
              std::string name = o.name.empty() ? stage_name(instance, type) : o.name;
              stage = std::make_unique<PythonStage>(share(instance), name);
            });
        if (!s.ok()) return s;
        return stage;
      };
    }
  }
  if (!on_progress.is_none()) {
    env.on_progress = [fn = share(on_progress)](const pipeline::Progress& p) {
      call_python("the pipeline's on_progress", [&] {
        (*fn)(py::cast(pipeline::Progress(p)));
      }).ignore_error();  // progress reporting must not fail the run
    };
  }
  auto created = [&]() -> Result<std::unique_ptr<Pipeline>> {
    py::gil_scoped_release nogil;
    if (node) {
      Lifetime::Use use = node->use();
      env.state = &node->node().database();
      env.broker = &node->node().broker();
      env.metrics = &node->node().metrics();
      env.clock = &node->node().clock();
      return Pipeline::create(std::move(options), std::move(env));
    }
    return Pipeline::create(std::move(options), std::move(env));
  }();
  state->set(unwrap(std::move(created)));
  if (node) node->add_dependent(state);
  register_closeable_for_exit(state);
  return state;
}

void bind_reports(py::module_& m) {
  py::class_<pipeline::Progress>(m, "Progress", "A pipeline run's progress after a batch.")
      .def_readonly("rows_read", &pipeline::Progress::rows_read, "Records read so far.")
      .def_readonly("rows_loaded", &pipeline::Progress::rows_loaded, "Records loaded.")
      .def_readonly("rows_failed", &pipeline::Progress::rows_failed, "Records failed.")
      .def_readonly("batches", &pipeline::Progress::batches, "Batches committed.")
      .def_readonly("rows_per_second", &pipeline::Progress::rows_per_second, "Throughput.")
      .def_readonly("eta", &pipeline::Progress::eta,
                    "Time left when expected_rows is known, else None.");

  py::class_<pipeline::ErrorEntry>(m, "PipelineError", "A record that failed a stage or the load.")
      .def_readonly("batch", &pipeline::ErrorEntry::batch, "The batch number.")
      .def_readonly("stage", &pipeline::ErrorEntry::stage, "The stage, or \"load\".")
      .def_property_readonly(
          "position", [](const pipeline::ErrorEntry& e) { return e.error.position; },
          "The record's line or row number.")
      .def_property_readonly(
          "field", [](const pipeline::ErrorEntry& e) { return e.error.field; }, "The field.")
      .def_property_readonly(
          "value", [](const pipeline::ErrorEntry& e) { return e.error.value; }, "The value.")
      .def_property_readonly(
          "reason", [](const pipeline::ErrorEntry& e) { return e.error.reason; }, "Why.")
      .def("__repr__", [](const pipeline::ErrorEntry& e) {
        return fmt::format("<civicbus.PipelineError {} {} {}: {}>", e.stage, e.error.position,
                           e.error.field, e.error.reason);
      });

  py::class_<pipeline::RunReport>(m, "RunReport", "What a pipeline run did.")
      .def_readonly("run_id", &pipeline::RunReport::run_id, "The run's id.")
      .def_readonly("resumed", &pipeline::RunReport::resumed, "True when it resumed a run.")
      .def_readonly("resumed_after_rows", &pipeline::RunReport::resumed_after_rows,
                    "Records the earlier attempt had committed.")
      .def_readonly("rows_read", &pipeline::RunReport::rows_read, "Records read.")
      .def_readonly("rows_loaded", &pipeline::RunReport::rows_loaded, "Records loaded.")
      .def_readonly("rows_failed", &pipeline::RunReport::rows_failed, "Records failed.")
      .def_readonly("batches", &pipeline::RunReport::batches, "Batches committed.")
      .def_readonly("elapsed", &pipeline::RunReport::elapsed, "How long it took.")
      .def_readonly("error_csv_path", &pipeline::RunReport::error_csv_path,
                    "errors.csv, when error_report_dir is set.")
      .def_readonly("error_json_path", &pipeline::RunReport::error_json_path,
                    "errors.json, when error_report_dir is set.")
      .def_readonly("errors", &pipeline::RunReport::errors, "The first errors.")
      .def("success_rate", &pipeline::RunReport::success_rate,
           "Loaded / (loaded + failed); 1 when nothing was read.");

  py::class_<StageBatch, std::shared_ptr<StageBatch>>(m, "StageBatch",
                                                      "One batch as a Python stage gets it.")
      .def_readonly("stream", &StageBatch::stream, "The stream the records come from.")
      .def_readwrite("records", &StageBatch::records,
                     "The records (dicts); edit them in place or assign a new list.")
      .def(
          "reject",
          [](StageBatch& b, const py::object& record, std::string reason, std::string field,
             std::string value) {
            py::object target = record;
            if (PyLong_Check(record.ptr())) target = b.records[record.cast<std::size_t>()];
            b.rejected.emplace_back(target, connect::RowError{0, std::move(field), std::move(value),
                                                              std::move(reason)});
          },
          py::arg("record"), py::arg("reason"), py::kw_only(), py::arg("field") = "",
          py::arg("value") = "",
          "Refuses a record (the dict itself, or its index in records now): it leaves the batch "
          "and goes to the error report with its position.")
      .def(
          "__len__", [](const StageBatch& b) { return py::len(b.records); },
          "The number of records.");
}

}  // namespace

void init_pipeline(py::module_& m) {
  py::dict scope = m.attr("__dict__");
  py::exec(kStageSource, scope);
  bind_reports(m);

  m.def("builtin_stage_types", &pipeline::builtin_stage_types,
        "The built-in stage types (types, map_codes, validate, normalize_address, ...).");

  py::class_<PipelineState, std::shared_ptr<PipelineState>>(m, "Pipeline", R"doc(
A multi-stage ETL run: a source connector's records in batches through the stages into a sink
connector, with checkpoints (a stopped run resumes) and an error report for failing records.

``options`` is the pipeline file's shape as a dict (docs/pipelines.md: name, source, stages,
sink, batch_size, error_report_dir...). ``catalog`` supplies the connectors (Python ones too);
``stage_types`` maps stage type names to factories called with the stage's config dict and
returning a Stage; with ``node``, checkpoints live in the node's database and progress events
go to its broker (otherwise in <name>.pipeline.db beside the error report);
``on_progress(progress)`` runs after each committed batch.
)doc")
      .def(py::init([](const Json& options, const std::optional<CatalogRef>& catalog,
                       const py::object& stage_types, const std::shared_ptr<NodeState>& node,
                       const py::object& on_progress) {
             return make_pipeline(unwrap(pipeline::PipelineOptions::from_json(options)), catalog,
                                  stage_types, node, on_progress);
           }),
           py::arg("options"), py::kw_only(), py::arg("catalog") = py::none(),
           py::arg("stage_types") = py::none(), py::arg("node") = py::none(),
           py::arg("on_progress") = py::none(), "Builds the pipeline (connectors and stages).")
      .def_static(
          "from_file",
          [](const std::string& path, const std::optional<CatalogRef>& catalog,
             const py::object& stage_types, const std::shared_ptr<NodeState>& node,
             const py::object& on_progress) {
            return make_pipeline(unwrap(load_pipeline_file(path)), catalog, stage_types, node,
                                 on_progress);
          },
          py::arg("path"), py::kw_only(), py::arg("catalog") = py::none(),
          py::arg("stage_types") = py::none(), py::arg("node") = py::none(),
          py::arg("on_progress") = py::none(),
          "Builds a pipeline from a pipeline file (YAML; relative paths from its folder).")
      .def(
          "add_stage",
          [](PipelineState& self, const py::object& stage) {
            if (!py::hasattr(stage, "process")) {
              throw py::type_error("add_stage() takes a Stage (an object with process(batch))");
            }
            self.pipeline().add_stage(
                std::make_unique<PythonStage>(share(stage), stage_name(stage, "python")));
          },
          py::arg("stage"), "Appends a Stage after the configured ones.")
      .def(
          "run",
          [](PipelineState& self) {
            auto report = [&] {
              py::gil_scoped_release nogil;
              return self.run();
            }();
            return unwrap(std::move(report));
          },
          "Runs to the end of the source (blocking, without the GIL) and returns the report. "
          "A cancelled run raises Cancelled; running again resumes it.")
      .def(
          "cancel", [](PipelineState& self) { self.cancel(); },
          "Makes a running run() stop soon (thread-safe).")
      .def_property_readonly(
          "name", [](PipelineState& self) { return self.pipeline().options().name; },
          "The pipeline's name (its checkpoints' key).")
      .def(
          "close",
          [](PipelineState& self) {
            refuse_close_in_callback("pipeline");
            without_gil([&] { self.close(); });
          },
          "Cancels a run in progress, waits for it and releases the connectors.");
}

}  // namespace civicbus::python
