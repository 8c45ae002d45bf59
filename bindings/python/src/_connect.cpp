// Connectors written in Python (civicbus.Connector subclasses), the ConnectorCatalog that holds
// them beside the built-in ones, and civicbus.ConnectorHub. A Python connector is driven from
// C++ threads (a hub's sync, a pipeline's reader and loader): each call takes the GIL, and an
// exception becomes the call's error status.
#include <fmt/format.h>

#include "handles.hpp"

namespace civicbus::python {
namespace {

using connect::ConnectorHub;

// The base class is Python code: subclasses need no super().__init__() call, and every hook
// has a default.
constexpr const char* kConnectorSource = R"python(
class Connector:
    """Base class of connectors written in Python (the Airbyte/Singer protocol of
    include/civicbus/connect/connector.hpp). Set the class attributes, override the hooks,
    and add the class to a ConnectorCatalog; hubs and pipelines create one instance per use
    (the class is called with no arguments) and call the hooks from their own threads.

    Hooks: check(context) raises when the connection does not work; discover(context) returns
    the streams as dicts {"name", "fields": [{"name", "type", "nullable"}], "primary_key",
    "cursor_field"}; read(context, request, emitter) emits records with emitter.emit();
    write(context, request, records) stores a list of dicts and returns how many it wrote
    (None: all); call(context, operation, input) answers a request/response operation.
    Raising a civicbus.Error gives the caller its code; any other exception is an internal
    error naming the connector."""

    name = ""
    title = ""
    description = ""
    format_source = ""
    is_source = True
    is_sink = False
    config_schema = {"type": "object"}

    def check(self, context):
        """Tests the connection with context.config; raises when it does not work."""
        return None

    def discover(self, context):
        """The streams this connector offers (a list of dicts)."""
        return []

    def read(self, context, request, emitter):
        """Emits the requested streams' records (sources)."""
        raise FailedPrecondition(f"connector '{self.name}' is not a source")

    def write(self, context, request, records):
        """Writes a batch of records (sinks); returns the number written (None: all)."""
        raise FailedPrecondition(f"connector '{self.name}' is not a sink")

    def call(self, context, operation, input):
        """Answers a request/response operation."""
        raise FailedPrecondition(f"connector '{self.name}' has no operations")

    def operations(self):
        """The operations call() accepts."""
        return []
)python";

// Valid for the duration of one read() call: afterwards emit() raises.
struct EmitterSlot {
  std::mutex mu;
  connect::RecordEmitter* emitter = nullptr;
};
struct PyEmitter {
  std::shared_ptr<EmitterSlot> slot;

  template <typename T>
  T with(const std::function<T(connect::RecordEmitter&)>& body) const {
    std::lock_guard<std::mutex> lock(slot->mu);
    if (slot->emitter == nullptr) {
      throw StatusError(failed_precondition("the emitter is used after read() returned"));
    }
    return body(*slot->emitter);
  }
};

connect::FieldSpec field_from(py::handle item) {
  connect::FieldSpec f;
  if (py::isinstance<py::str>(item)) {
    f.name = item.cast<std::string>();
    return f;
  }
  py::dict d = item.cast<py::dict>();
  f.name = d["name"].cast<std::string>();
  if (d.contains("type")) f.type = unwrap(connect::parse_field_type(d["type"].cast<std::string>()));
  if (d.contains("nullable")) f.nullable = d["nullable"].cast<bool>();
  return f;
}

connect::StreamSpec stream_from(py::handle item) {
  connect::StreamSpec s;
  if (py::isinstance<py::str>(item)) {
    s.name = item.cast<std::string>();
    return s;
  }
  py::dict d = item.cast<py::dict>();
  s.name = d["name"].cast<std::string>();
  if (d.contains("fields")) {
    py::object fields = d["fields"];
    if (py::isinstance<py::dict>(fields)) {  // {"name": "type"}
      for (auto kv : fields.cast<py::dict>()) {
        connect::FieldSpec f;
        f.name = kv.first.cast<std::string>();
        f.type = unwrap(connect::parse_field_type(kv.second.cast<std::string>()));
        s.fields.push_back(std::move(f));
      }
    } else {
      for (auto f : fields) s.fields.push_back(field_from(f));
    }
  }
  if (d.contains("primary_key")) s.primary_key = d["primary_key"].cast<std::vector<std::string>>();
  if (d.contains("cursor_field")) s.cursor_field = d["cursor_field"].cast<std::string>();
  return s;
}

connect::ConnectorSpec spec_from(const py::object& instance) {
  connect::ConnectorSpec spec;
  spec.name = py::str(instance.attr("name")).cast<std::string>();
  spec.title = py::str(instance.attr("title")).cast<std::string>();
  spec.description = py::str(instance.attr("description")).cast<std::string>();
  spec.format_source = py::str(instance.attr("format_source")).cast<std::string>();
  spec.is_source = instance.attr("is_source").cast<bool>();
  spec.is_sink = instance.attr("is_sink").cast<bool>();
  spec.config_schema = json_from_python(instance.attr("config_schema"));
  if (spec.title.empty()) spec.title = spec.name;
  return spec;
}

// A connector whose Python object could not be created: every call reports why.
class FailedConnector final : public connect::Connector {
 public:
  FailedConnector(connect::ConnectorSpec spec, Status error)
      : spec_(std::move(spec)), error_(std::move(error)) {}
  const connect::ConnectorSpec& spec() const override { return spec_; }
  Status check(const connect::ConnectorContext&) override { return error_; }
  Result<std::vector<connect::StreamSpec>> discover(const connect::ConnectorContext&) override {
    return error_;
  }
  Status read(const connect::ConnectorContext&, const connect::ReadRequest&,
              connect::RecordEmitter&) override {
    return error_;
  }
  Result<connect::WriteResult> write(const connect::ConnectorContext&, const connect::WriteRequest&,
                                     const connect::RecordBatch&) override {
    return error_;
  }
  Result<Json> call(const connect::ConnectorContext&, std::string_view, const Json&) override {
    return error_;
  }

 private:
  connect::ConnectorSpec spec_;
  Status error_;
};

// Hooks get copies: a connector may keep what it is given beyond the call.
py::object copy(const connect::ConnectorContext& context) {
  return py::cast(connect::ConnectorContext(context));
}

// A C++ Connector delegating to a Python object.
class PythonConnector final : public connect::Connector {
 public:
  PythonConnector(PyHandle instance, connect::ConnectorSpec spec)
      : instance_(std::move(instance)), spec_(std::move(spec)) {}

  const connect::ConnectorSpec& spec() const override { return spec_; }

  Status check(const connect::ConnectorContext& context) override {
    return call_python(where("check"), [&] { instance_->attr("check")(copy(context)); });
  }

  Result<std::vector<connect::StreamSpec>> discover(
      const connect::ConnectorContext& context) override {
    std::vector<connect::StreamSpec> streams;
    Status s = call_python(where("discover"), [&] {
      py::object result = instance_->attr("discover")(copy(context));
      if (result.is_none()) return;
      for (auto item : result) streams.push_back(stream_from(item));
    });
    if (!s.ok()) return s;
    return streams;
  }

  Status read(const connect::ConnectorContext& context, const connect::ReadRequest& request,
              connect::RecordEmitter& out) override {
    auto slot = std::make_shared<EmitterSlot>();
    slot->emitter = &out;
    Status s = call_python(where("read"), [&] {
      instance_->attr("read")(copy(context), py::cast(connect::ReadRequest(request)),
                              PyEmitter{slot});
    });
    std::lock_guard<std::mutex> lock(slot->mu);
    slot->emitter = nullptr;
    return s;
  }

  Result<connect::WriteResult> write(const connect::ConnectorContext& context,
                                     const connect::WriteRequest& request,
                                     const connect::RecordBatch& batch) override {
    connect::WriteResult result;
    Status s = call_python(where("write"), [&] {
      py::list records;
      for (const auto& r : batch.records) records.append(json_to_python(batch.to_object(r)));
      py::object written = instance_->attr("write")(
          copy(context), py::cast(connect::WriteRequest(request)), records);
      if (written.is_none()) {
        result.written = static_cast<std::int64_t>(batch.size());
      } else if (py::isinstance<connect::WriteResult>(written)) {
        result = written.cast<connect::WriteResult>();
      } else {
        result.written = written.cast<std::int64_t>();
      }
    });
    if (!s.ok()) return s;
    return result;
  }

  Result<Json> call(const connect::ConnectorContext& context, std::string_view operation,
                    const Json& input) override {
    Json answer;
    Status s = call_python(where("call"), [&] {
      answer = json_from_python(
          instance_->attr("call")(copy(context), std::string(operation), json_to_python(input)));
    });
    if (!s.ok()) return s;
    return answer;
  }

  std::vector<std::string> operations() const override {
    std::vector<std::string> ops;
    call_python(where("operations"), [&] {
      ops = instance_->attr("operations")().cast<std::vector<std::string>>();
    }).ignore_error();  // no way to report it: an empty list says "no operations"
    return ops;
  }

 private:
  std::string where(std::string_view hook) const {
    return fmt::format("connector '{}' {}()", spec_.name, hook);
  }
  PyHandle instance_;
  connect::ConnectorSpec spec_;
};

void add_connector(const CatalogRef& self, const py::object& factory) {
  if (!PyCallable_Check(factory.ptr())) {
    throw py::type_error("add() takes a Connector subclass (or a callable returning a Connector)");
  }
  // Made once here, with the GIL, so a broken class is reported to the caller at once.
  py::object probe = factory();
  connect::ConnectorSpec spec = spec_from(probe);
  auto first = std::make_shared<PyHandle>(share(probe));
  PyHandle shared_factory = share(factory);
  connect::ConnectorFactory f = [shared_factory, spec,
                                 first]() mutable -> std::unique_ptr<connect::Connector> {
    if (*first) {  // the catalog's own probe takes the instance made above
      PyHandle instance = std::move(*first);
      first->reset();
      return std::make_unique<PythonConnector>(std::move(instance), spec);
    }
    PyHandle instance;
    Status s = call_python(fmt::format("creating connector '{}'", spec.name),
                           [&] { instance = share((*shared_factory)()); });
    if (!s.ok()) return std::make_unique<FailedConnector>(spec, s);
    return std::make_unique<PythonConnector>(std::move(instance), spec);
  };
  check(self.catalog->add(std::move(f)));
}

py::dict spec_dict(const connect::ConnectorSpec& s) {
  py::dict d;
  d["name"] = s.name;
  d["title"] = s.title;
  d["description"] = s.description;
  d["format_source"] = s.format_source;
  d["is_source"] = s.is_source;
  d["is_sink"] = s.is_sink;
  d["config_schema"] = to_py(s.config_schema);
  return d;
}

py::dict stream_dict(const connect::StreamSpec& s) {
  py::dict d;
  d["name"] = s.name;
  py::list fields;
  for (const auto& f : s.fields) {
    py::dict fd;
    fd["name"] = f.name;
    fd["type"] = std::string(connect::field_type_name(f.type));
    fd["nullable"] = f.nullable;
    fields.append(fd);
  }
  d["fields"] = fields;
  d["primary_key"] = s.primary_key;
  d["cursor_field"] = s.cursor_field;
  return d;
}

// A hub opened from Python on a node's database, with a catalog holding Python connectors.
class HubState final : public Lifetime {
 public:
  HubState(std::shared_ptr<NodeState> node, connect::ConnectorCatalog catalog)
      : Lifetime("connector hub"), node_(std::move(node)), catalog_(std::move(catalog)) {}
  ~HubState() override { close_from_destructor(); }
  ConnectorHub* get() { return hub_.get(); }
  const connect::ConnectorCatalog& catalog() const { return catalog_; }
  void set(std::unique_ptr<ConnectorHub> hub) { hub_ = std::move(hub); }

 protected:
  void destroy() override { hub_.reset(); }

 private:
  std::shared_ptr<NodeState> node_;  // the database and broker outlive the hub
  connect::ConnectorCatalog catalog_;
  std::unique_ptr<ConnectorHub> hub_;
};

HubRef open_hub(const std::shared_ptr<NodeState>& node, const std::optional<CatalogRef>& catalog,
                const std::optional<std::string>& data_dir, std::chrono::seconds misfire_grace) {
  connect::ConnectorCatalog copy =
      catalog ? *catalog->catalog : connect::ConnectorCatalog::builtin();
  auto state = std::make_shared<HubState>(node, std::move(copy));
  std::function<Node*()> get_node = [n = node.get()] { return &n->node(); };
  auto opened = use_without_gil<Node>(node, get_node, [&](Node& n) {
    connect::HubOptions options;
    options.data_dir = data_dir ? *data_dir : (n.options().data_dir + "/connect-python");
    options.misfire_grace = misfire_grace;
    connect::HubDeps deps;
    deps.db = &n.database();
    deps.master_key = n.options().broker.master_key;
    deps.catalog = &state->catalog();
    deps.broker = &n.broker();
    deps.clock = &n.clock();
    deps.metrics = &n.metrics();
    if (deps.master_key.empty()) {
      return Result<std::unique_ptr<ConnectorHub>>(failed_precondition(
          "the connector hub needs the node's master key (its credential vault is sealed under "
          "it): open the node with `security: {master_key: generate}` or a master key file"));
    }
    return ConnectorHub::open(options, deps);
  });
  state->set(unwrap(std::move(opened)));
  node->add_dependent(state);
  state->register_for_exit();
  return HubRef{state, [s = state.get()] { return s->get(); }, true};
}

void bind_types(py::module_& m) {
  py::class_<connect::ConnectorContext>(m, "ConnectorContext",
                                        "What a connector hook gets: its config (secrets "
                                        "resolved), a working folder and the call timeout.")
      .def_readonly("config", &connect::ConnectorContext::config, "The connection's config (dict).")
      .def_readonly("work_dir", &connect::ConnectorContext::work_dir,
                    "A folder the connection may keep files in (\"\" when none).")
      .def_readonly("timeout", &connect::ConnectorContext::timeout,
                    "The deadline of each network call (timedelta).")
      .def("now", &connect::ConnectorContext::now, "The current time of the caller's clock (UTC).");

  py::class_<connect::ReadRequest>(m, "ReadRequest", "What a source is asked to read.")
      .def_readonly("streams", &connect::ReadRequest::streams,
                    "Streams to read (empty: every discovered stream).")
      .def_readonly("state", &connect::ReadRequest::state,
                    "The committed state per stream ({stream: state}), or None.")
      .def_readonly("batch_size", &connect::ReadRequest::batch_size, "Records per batch.")
      .def_readonly("max_records", &connect::ReadRequest::max_records,
                    "Stop after this many records (negative: no limit).")
      .def(
          "stream_state",
          [](const connect::ReadRequest& r, std::string_view stream) {
            const Json* s = r.stream_state(stream);
            return s ? to_py(*s) : py::object(py::none());
          },
          py::arg("stream"), "The committed state of one stream, or None.");

  py::class_<connect::WriteRequest>(m, "WriteRequest", "What a sink is asked to write.")
      .def_readonly("stream", &connect::WriteRequest::stream, "The table or resource.")
      .def_property_readonly(
          "mode",
          [](const connect::WriteRequest& r) {
            return std::string(r.mode == connect::WriteMode::kUpsert ? "upsert" : "append");
          },
          "\"append\" or \"upsert\".")
      .def_readonly("key", &connect::WriteRequest::key, "The upsert key's columns.")
      .def_readonly("batch_id", &connect::WriteRequest::batch_id,
                    "Identifies the batch across retries (\"\" when none).");

  py::class_<connect::RowError>(m, "RowError", "A record refused: where, which field, why.")
      .def(py::init(
               [](std::int64_t position, std::string reason, std::string field, std::string value) {
                 return connect::RowError{position, std::move(field), std::move(value),
                                          std::move(reason)};
               }),
           py::arg("position"), py::arg("reason"), py::arg("field") = "", py::arg("value") = "",
           "A row error (for WriteResult.rejected).")
      .def_readonly("position", &connect::RowError::position, "Line or row number (0 if none).")
      .def_readonly("field", &connect::RowError::field, "The field at fault (\"\" if none).")
      .def_readonly("value", &connect::RowError::value, "The value at fault.")
      .def_readonly("reason", &connect::RowError::reason, "Why.")
      .def("__repr__", [](const connect::RowError& e) {
        return fmt::format("<civicbus.RowError {} {}: {}>", e.position, e.field, e.reason);
      });

  py::class_<connect::WriteResult>(m, "WriteResult",
                                   "What a Python sink's write() may return when it refuses "
                                   "some records.")
      .def(py::init([](std::int64_t written, std::vector<connect::RowError> rejected) {
             return connect::WriteResult{written, std::move(rejected)};
           }),
           py::arg("written"), py::arg("rejected") = std::vector<connect::RowError>{},
           "`written` records stored, `rejected` the others with their reasons.")
      .def_readonly("written", &connect::WriteResult::written, "Records stored.")
      .def_readonly("rejected", &connect::WriteResult::rejected, "Records refused.");

  py::class_<PyEmitter>(m, "RecordEmitter",
                        "How a Python source hands records on during read(); valid only "
                        "during that call.")
      .def(
          "emit",
          [](const PyEmitter& self, std::string stream, const py::object& records,
             const std::optional<std::vector<std::int64_t>>& positions) {
            connect::RecordBatch batch(std::move(stream), {});
            std::size_t i = 0;
            for (auto item : records) {
              std::int64_t position = positions && i < positions->size()
                                          ? (*positions)[i]
                                          : static_cast<std::int64_t>(i + 1);
              Json object = json_from_python(item);
              if (!object.is_object()) throw py::type_error("each record must be a dict");
              batch.append_object(object, position);
              ++i;
            }
            py::gil_scoped_release nogil;  // the downstream queue may be full
            check(self.with<Status>(
                [&](connect::RecordEmitter& e) { return e.emit(std::move(batch)); }));
          },
          py::arg("stream"), py::arg("records"), py::kw_only(), py::arg("positions") = py::none(),
          "Hands a batch of records (dicts) of `stream` on; `positions` are their line or row "
          "numbers (default 1, 2, ...). Raises when downstream failed or the run was cancelled: "
          "let it propagate.")
      .def(
          "checkpoint",
          [](const PyEmitter& self, std::string_view stream, const Json& state) {
            py::gil_scoped_release nogil;
            check(self.with<Status>(
                [&](connect::RecordEmitter& e) { return e.checkpoint(stream, state); }));
          },
          py::arg("stream"), py::arg("state"),
          "The state reached after the batches emitted so far for `stream` (committed once the "
          "sink acknowledged them).")
      .def(
          "reject",
          [](const PyEmitter& self, std::int64_t position, std::string reason, std::string field,
             std::string value) {
            self.with<bool>([&](connect::RecordEmitter& e) {
              e.reject(connect::RowError{position, std::move(field), std::move(value),
                                         std::move(reason)});
              return true;
            });
          },
          py::arg("position"), py::arg("reason"), py::kw_only(), py::arg("field") = "",
          py::arg("value") = "", "Reports a record the source could not read; reading goes on.")
      .def_property_readonly(
          "cancelled",
          [](const PyEmitter& self) {
            return self.with<bool>([](connect::RecordEmitter& e) { return e.cancelled(); });
          },
          "True once the run is cancelled; long reads should check it between pages.");

  py::class_<connect::SyncReport>(m, "SyncReport", "What one sync of a connection did.")
      .def_readonly("connection", &connect::SyncReport::connection, "The connection.")
      .def_readonly("records_read", &connect::SyncReport::records_read, "Records read.")
      .def_readonly("records_written", &connect::SyncReport::records_written, "Records written.")
      .def_readonly("records_rejected", &connect::SyncReport::records_rejected,
                    "Records refused by the mapping or the destination.")
      .def_readonly("errors", &connect::SyncReport::errors, "The first errors (RowError).")
      .def_readonly("drift", &connect::SyncReport::drift, "Schema changes found.")
      .def_readonly("state", &connect::SyncReport::state, "The committed state after the run.")
      .def_readonly("elapsed", &connect::SyncReport::elapsed, "How long it took.");
}

py::dict status_dict(const connect::ConnectionStatus& s) {
  py::dict d;
  d["name"] = s.name;
  d["connector"] = s.connector;
  d["health"] = std::string(connect::health_name(s.health));
  d["consecutive_failures"] = s.consecutive_failures;
  d["last_run_at"] = py::cast(s.last_run_at);
  d["last_success_at"] = py::cast(s.last_success_at);
  d["last_error"] = s.last_error;
  d["next_run_at"] = py::cast(s.next_run_at);
  d["queued"] = s.queued;
  d["state"] = to_py(s.state);
  d["config"] = to_py(s.config);
  return d;
}

py::dict test_sync_dict(const connect::TestSyncReport& r) {
  py::dict d;
  d["ok"] = r.ok();
  d["check"] = r.check.ok() ? std::string() : r.check.message();
  py::list streams;
  for (const auto& s : r.streams) streams.append(stream_dict(s));
  d["streams"] = streams;
  py::list sample;
  for (const auto& j : r.sample) sample.append(to_py(j));
  d["sample"] = sample;
  d["mapping_problems"] = r.mapping_problems;
  d["sample_errors"] = py::cast(r.sample_errors);
  d["drift"] = r.drift;
  return d;
}

py::dict call_dict(const connect::CallResult& r) {
  py::dict d;
  d["source"] = r.source == connect::CallResult::Source::kLive    ? "live"
                : r.source == connect::CallResult::Source::kCache ? "cache"
                                                                  : "queued";
  d["response"] = to_py(r.response);
  d["cached_at"] = py::cast(r.cached_at);
  d["queue_id"] = r.queue_id;
  return d;
}

}  // namespace

void init_connect(py::module_& m) {
  py::dict scope = m.attr("__dict__");
  py::exec(kConnectorSource, scope);
  bind_types(m);

  py::class_<CatalogRef>(m, "ConnectorCatalog",
                         "The connectors a hub or pipeline can use, by name: the built-in ones "
                         "and Connector subclasses added from Python. Hubs and pipelines take a "
                         "copy when they open.")
      .def(py::init([](bool builtin) {
             return CatalogRef{std::make_shared<connect::ConnectorCatalog>(
                 builtin ? connect::ConnectorCatalog::builtin() : connect::ConnectorCatalog())};
           }),
           py::kw_only(), py::arg("builtin") = true,
           "A catalog holding the built-in connectors (or none with builtin=False).")
      .def("add", &add_connector, py::arg("connector"),
           "Adds a Connector subclass (or a callable returning a Connector): it is instantiated "
           "once now to read its spec. Raises AlreadyExists for a taken name, InvalidArgument "
           "for an invalid config_schema.")
      .def(
          "__contains__",
          [](const CatalogRef& self, std::string_view name) {
            return self.catalog->contains(name);
          },
          py::arg("name"), "True when a connector of that name is in the catalog.")
      .def(
          "names",
          [](const CatalogRef& self) {
            std::vector<std::string> names;
            for (const auto& s : self.catalog->list()) names.push_back(s.name);
            return names;
          },
          "The connector names, sorted.")
      .def(
          "specs",
          [](const CatalogRef& self) {
            py::list out;
            for (const auto& s : self.catalog->list()) out.append(spec_dict(s));
            return out;
          },
          "Every connector's spec (dicts: name, title, description, format_source, is_source, "
          "is_sink, config_schema).");

  py::class_<HubRef>(m, "ConnectorHub", R"doc(
Runs connections (a connector with its config) on a node: credentials in a vault sealed under
the node's master key, cron schedules, field mapping, schema drift, retries and a circuit
breaker. ConnectorHub(node, catalog=...) opens one on the node's database that can run
Python connectors; Node.connectors is the node's own (built-in connectors). Syncs run on the
calling thread without the GIL.
)doc")
      .def(py::init(&open_hub), py::arg("node"), py::kw_only(), py::arg("catalog") = py::none(),
           py::arg("data_dir") = py::none(), py::arg("misfire_grace") = std::chrono::seconds(3600),
           "Opens a hub on `node`'s database and broker with `catalog` (default: the built-in "
           "connectors); connection working folders go under `data_dir` (default "
           "<node data_dir>/connect-python). Needs the node's master key.")
      .def(
          "add",
          [](const HubRef& self, const Json& connection) {
            connect::ConnectionOptions o =
                unwrap(connect::ConnectionOptions::from_json(connection));
            check(self.with([&](ConnectorHub& h) { return h.add(std::move(o)); }));
          },
          py::arg("connection"),
          "Adds or replaces a connection given as a dict (ConnectionOptions' JSON form: name, "
          "connector, config, streams, schedule, destination...; docs/connectors.md).")
      .def(
          "remove",
          [](const HubRef& self, std::string_view name) {
            check(self.with([&](ConnectorHub& h) { return h.remove(name); }));
          },
          py::arg("name"), "Removes a connection.")
      .def(
          "names",
          [](const HubRef& self) { return self.with([](ConnectorHub& h) { return h.names(); }); },
          "The connections' names.")
      .def(
          "options",
          [](const HubRef& self, std::string_view name) {
            return unwrap(self.with([&](ConnectorHub& h) { return h.options(name); })).to_json();
          },
          py::arg("name"), "A connection's options as stored (dict, secrets redacted).")
      .def(
          "status",
          [](const HubRef& self, std::string_view name) {
            return status_dict(unwrap(self.with([&](ConnectorHub& h) { return h.status(name); })));
          },
          py::arg("name"),
          "A connection's health, last runs, queue and state (dict; health is \"healthy\", "
          "\"degraded\", \"down\" or \"paused\").")
      .def(
          "check",
          [](const HubRef& self, std::string_view name) {
            check(self.with([&](ConnectorHub& h) { return h.check(name); }));
          },
          py::arg("name"), "Tests the connection; raises with what failed.")
      .def(
          "test_sync",
          [](const HubRef& self, std::string_view name, std::size_t sample) {
            return test_sync_dict(
                unwrap(self.with([&](ConnectorHub& h) { return h.test_sync(name, sample); })));
          },
          py::arg("name"), py::arg("sample") = 10,
          "check + discover + a mapped sample, writing nothing (dict: ok, check, streams, "
          "sample, mapping_problems, sample_errors, drift).")
      .def(
          "sync",
          [](const HubRef& self, std::string_view name) {
            return unwrap(self.with([&](ConnectorHub& h) { return h.sync(name); }));
          },
          py::arg("name"), "Runs a sync now, on this thread (without the GIL).")
      .def(
          "accept_schema",
          [](const HubRef& self, std::string_view name) {
            check(self.with([&](ConnectorHub& h) { return h.accept_schema(name); }));
          },
          py::arg("name"), "Accepts a paused connection's new schema and resumes it.")
      .def(
          "pause",
          [](const HubRef& self, std::string_view name) {
            check(self.with([&](ConnectorHub& h) { return h.pause(name); }));
          },
          py::arg("name"), "Pauses a connection.")
      .def(
          "resume",
          [](const HubRef& self, std::string_view name) {
            check(self.with([&](ConnectorHub& h) { return h.resume(name); }));
          },
          py::arg("name"), "Resumes a paused connection.")
      .def(
          "call",
          [](const HubRef& self, std::string_view name, std::string_view operation,
             const Json& input, std::string_view cache_key, bool queue_when_down) {
            return call_dict(unwrap(self.with([&](ConnectorHub& h) {
              return h.call(name, operation, input, cache_key, queue_when_down);
            })));
          },
          py::arg("name"), py::arg("operation"), py::arg("input") = py::none(), py::kw_only(),
          py::arg("cache_key") = "", py::arg("queue_when_down") = true,
          "A request/response operation of the connection's connector with retries and the "
          "breaker (dict: source \"live\"/\"cache\"/\"queued\", response, cached_at, queue_id).")
      .def(
          "replay",
          [](const HubRef& self, std::string_view name) {
            return unwrap(self.with([&](ConnectorHub& h) { return h.replay(name); }));
          },
          py::arg("name"), "Replays queued calls in order; returns how many ran.")
      .def(
          "start",
          [](const HubRef& self) {
            self.with([](ConnectorHub& h) {
              h.start();
              return true;
            });
          },
          "Runs the cron schedules on a thread of the hub.")
      .def(
          "stop",
          [](const HubRef& self) {
            self.with([](ConnectorHub& h) {
              h.stop();
              return true;
            });
          },
          "Stops the schedule thread.")
      .def(
          "run_due",
          [](const HubRef& self) { return self.with([](ConnectorHub& h) { return h.run_due(); }); },
          "Runs every connection due now, on this thread; returns how many ran.")
      .def(
          "next_run",
          [](const HubRef& self, std::string_view name) {
            return unwrap(self.with([&](ConnectorHub& h) { return h.next_run(name); }));
          },
          py::arg("name"), "When a scheduled connection runs next (UTC).")
      .def(
          "close",
          [](const HubRef& self) {
            if (!self.owned) {
              throw StatusError(failed_precondition(
                  "this is the node's connector hub: it is closed with the node"));
            }
            refuse_close_in_callback("connector hub");
            without_gil([&] { self.life->close(); });
          },
          "Closes a hub opened from Python (idempotent).")
      .def(
          "__enter__", [](const HubRef& self) { return self; }, "Returns the hub.")
      .def(
          "__exit__",
          [](const HubRef& self, const py::object&, const py::object&, const py::object&) {
            if (self.owned) without_gil([&] { self.life->close(); });
          },
          py::arg("exc_type"), py::arg("exc"), py::arg("traceback"),
          "Closes a hub opened from Python.");
}

}  // namespace civicbus::python
