// civicbus.Node: the composition root, opened from a dict, YAML text, a file or the embedded
// defaults; and the node area's free functions (durations, sizes, version).
#include <fmt/format.h>

#include "handles.hpp"

namespace civicbus::python {
namespace {

std::shared_ptr<NodeState> open_node(NodeOptions options) {
  auto state = std::make_shared<NodeState>();
  Result<std::unique_ptr<Node>> created = [&] {
    py::gil_scoped_release nogil;
    return Node::create(std::move(options));
  }();
  state->set(unwrap(std::move(created)));
  state->register_for_exit();
  return state;
}

std::shared_ptr<NodeState> node_from_config(const py::object& config,
                                            const std::optional<std::string>& data_dir) {
  NodeOptions options;
  if (!config.is_none()) {
    const std::string origin = py::isinstance<py::str>(config) ? "<yaml>" : "<config>";
    options = unwrap(NodeOptions::from_yaml(config_text(config, ""), origin));
  }
  if (data_dir) options.data_dir = *data_dir;
  return open_node(std::move(options));
}

template <typename T>
T with_node(const std::shared_ptr<NodeState>& node, const std::function<T(Node&)>& body) {
  std::function<Node*()> get = [n = node.get()] { return &n->node(); };
  return use_without_gil<Node>(node, get, body);
}

}  // namespace

NodeOptions section_options(py::handle config, std::string_view section) {
  return unwrap(NodeOptions::from_yaml(config_text(config, section), fmt::format("<{}>", section)));
}

void declare_node(py::module_& m) {
  py::class_<NodeState, std::shared_ptr<NodeState>>(m, "Node", R"doc(
A civicbus node: broker, event log, storage and, as configured, the API gateway, the device
fleet and the connector hub, all running from the moment it is opened.

``config`` is a dict of the node.yaml sections (``{"node": {...}, "topics": [...],
"gateway": {...}, "fleet": {...}, "connectors": {...}}``, values written as in the YAML file,
see docs/CONFIG.md), YAML text, or None for the embedded defaults. ``data_dir`` overrides
``node.data_dir``. A data directory is used by one node at a time.

Use it as a context manager, or call close(): the node stops its subscriptions, gateway,
fleet and hub, and releases the data directory.
)doc");
}

void init_node(py::module_& m) {
  m.def(
      "library_version", [] { return std::string(library_version()); },
      "The version of the civicbus C++ library this module was built with (\"0.1.0\").");
  m.def(
      "parse_duration", [](std::string_view text) { return unwrap(parse_duration(text)); },
      py::arg("text"),
      "Reads a duration as configuration writes it (\"30s\", \"15m\", \"12h\", \"7d\", \"2w\", "
      "\"250ms\", \"1h30m\" or \"0\") and returns it as a timedelta. Raises InvalidArgument.");
  m.def(
      "format_duration", [](std::chrono::milliseconds d) { return format_duration(d); },
      py::arg("duration"),
      "The short form of a duration (timedelta or seconds): \"7d\", \"90m\", \"1500ms\".");
  m.def(
      "parse_size", [](std::string_view text) { return unwrap(parse_size(text)); }, py::arg("text"),
      "Reads a size (\"512\", \"10KiB\", \"5MiB\", \"1GB\") in bytes. Raises InvalidArgument.");
  m.def(
      "format_size", [](std::int64_t bytes) { return format_size(bytes); }, py::arg("bytes"),
      "The short form of a size in bytes: \"1GiB\", \"1500B\".");

  auto node =
      py::reinterpret_borrow<py::class_<NodeState, std::shared_ptr<NodeState>>>(m.attr("Node"));
  node.def(py::init([](const py::object& config, const std::optional<std::string>& data_dir) {
             return node_from_config(config, data_dir);
           }),
           py::arg("config") = py::none(), py::kw_only(), py::arg("data_dir") = py::none(),
           "Opens (and starts) a node; see the class documentation.")
      .def_static(
          "open",
          [](const py::object& config, const std::optional<std::string>& data_dir) {
            return node_from_config(config, data_dir);
          },
          py::arg("config") = py::none(), py::kw_only(), py::arg("data_dir") = py::none(),
          "The same as Node(config, data_dir=...): opens and starts a node.")
      .def_static(
          "from_file",
          [](const std::string& path, const std::optional<std::string>& data_dir) {
            NodeOptions options = unwrap(NodeOptions::from_file(path));
            if (data_dir) options.data_dir = *data_dir;
            return open_node(std::move(options));
          },
          py::arg("path"), py::kw_only(), py::arg("data_dir") = py::none(),
          "Opens a node from a node.yaml file (relative paths in it are taken from the file's "
          "folder); errors name the file and line.")
      .def_property_readonly(
          "name",
          [](const std::shared_ptr<NodeState>& n) {
            return with_node<std::string>(n, [](Node& node) { return node.options().name; });
          },
          "The node's name (node.name).")
      .def_property_readonly(
          "data_dir",
          [](const std::shared_ptr<NodeState>& n) {
            return with_node<std::string>(n, [](Node& node) { return node.options().data_dir; });
          },
          "The data directory the node holds.")
      .def_property_readonly(
          "config_file",
          [](const std::shared_ptr<NodeState>& n) {
            return with_node<std::string>(n, [](Node& node) { return node.options().config_file; });
          },
          "The YAML file the node was opened from; \"\" otherwise.")
      .def_property_readonly(
          "broker", [](const std::shared_ptr<NodeState>& n) { return BrokerRef{n}; },
          "The node's broker: topics, publishing, consumer groups, schemas, the DLQ.")
      .def_property_readonly(
          "gateway",
          [](const std::shared_ptr<NodeState>& n) -> std::optional<GatewayRef> {
            const bool has =
                with_node<bool>(n, [](Node& node) { return node.gateway() != nullptr; });
            if (!has) return std::nullopt;
            return GatewayRef{n, [p = n.get()] { return p->node().gateway(); }, false};
          },
          "The API gateway when the configuration has a `gateway` section (listening), else "
          "None.")
      .def_property_readonly(
          "fleet",
          [](const std::shared_ptr<NodeState>& n) -> std::optional<FleetRef> {
            const bool has = with_node<bool>(n, [](Node& node) { return node.fleet() != nullptr; });
            if (!has) return std::nullopt;
            return FleetRef{n};
          },
          "The device fleet when the configuration has a `fleet` section, else None.")
      .def_property_readonly(
          "connectors",
          [](const std::shared_ptr<NodeState>& n) -> std::optional<HubRef> {
            const bool has =
                with_node<bool>(n, [](Node& node) { return node.connectors() != nullptr; });
            if (!has) return std::nullopt;
            return HubRef{n, [p = n.get()] { return p->node().connectors(); }, false};
          },
          "The connector hub when the configuration has a `connectors` section (built-in "
          "connectors only), else None. For connectors written in Python, open a "
          "ConnectorHub(node, catalog=...).")
      .def(
          "metrics_text",
          [](const std::shared_ptr<NodeState>& n) {
            return with_node<std::string>(
                n, [](Node& node) { return node.metrics().prometheus_text(); });
          },
          "The node's metrics in the Prometheus text format.")
      .def(
          "reload_gateway",
          [](const std::shared_ptr<NodeState>& n, const py::object& config) {
            if (config.is_none()) {
              check(with_node<Status>(n, [](Node& node) { return node.reload_gateway(); }));
              return;
            }
            NodeOptions options = section_options(config, "gateway");
            if (!options.gateway) {
              throw StatusError(invalid_argument("the gateway configuration is disabled"));
            }
            gateway::GatewayOptions g = std::move(*options.gateway);
            check(with_node<Status>(
                n, [&g](Node& node) { return node.reload_gateway(std::move(g)); }));
          },
          py::arg("config") = py::none(),
          "Replaces the gateway's routes, upstreams, consumers and auth settings with `config` "
          "(the `gateway` section as a dict or YAML text), or with the node's file again when "
          "None. Raises FailedPrecondition when the node runs no gateway.")
      .def(
          "run",
          [](const std::shared_ptr<NodeState>& n) {
            check(with_node<Status>(n, [](Node& node) { return node.run(); }));
          },
          "Blocks (without the GIL) until stop() or close() is called, or the process gets "
          "SIGINT or SIGTERM (while it runs, those stop the node instead of raising "
          "KeyboardInterrupt). The node's components run whether or not run() is called.")
      .def(
          "stop",
          [](const std::shared_ptr<NodeState>& n) {
            with_node<bool>(n, [](Node& node) {
              node.stop();
              return true;
            });
          },
          "Makes run() return. Thread-safe and idempotent.")
      .def_property_readonly(
          "stop_requested",
          [](const std::shared_ptr<NodeState>& n) {
            return with_node<bool>(n, [](Node& node) { return node.stop_requested(); });
          },
          "True once stop() was called (or a stop signal arrived during run()).")
      .def(
          "close",
          [](const std::shared_ptr<NodeState>& n) {
            refuse_close_in_callback("node");
            without_gil([&] { n->close(); });
          },
          "Stops the node: subscriptions and what was opened on it first, then the gateway, "
          "fleet, hub, broker and storage. Idempotent; later calls on the node or its "
          "components raise FailedPrecondition.")
      .def_property_readonly(
          "closed", [](const std::shared_ptr<NodeState>& n) { return n->closed(); },
          "True once close() was called.")
      .def(
          "__enter__", [](const std::shared_ptr<NodeState>& n) { return n; }, "Returns the node.")
      .def(
          "__exit__",
          [](const std::shared_ptr<NodeState>& n, const py::object&, const py::object&,
             const py::object&) { without_gil([&] { n->close(); }); },
          py::arg("exc_type"), py::arg("exc"), py::arg("traceback"), "Closes the node.")
      .def("__repr__", [](const std::shared_ptr<NodeState>& n) {
        if (n->closed()) return std::string("<civicbus.Node (closed)>");
        return with_node<std::string>(n, [](Node& node) {
          return fmt::format("<civicbus.Node '{}' data_dir='{}'>", node.options().name,
                             node.options().data_dir);
        });
      });
}

}  // namespace civicbus::python
