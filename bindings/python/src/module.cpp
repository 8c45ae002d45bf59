// The `civicbus._civicbus` extension module: one init function per area (split across
// translation units to keep each compile small). The package `civicbus` re-exports it.
#include "civicbus/node/node.hpp"
#include "common.hpp"

PYBIND11_MODULE(_civicbus, m) {
  using namespace civicbus::python;
  m.doc() =
      "Python bindings of civicbus, the embeddable integration fabric for municipalities: "
      "Node, Broker, Gateway, connectors and pipelines, the match engine and the device fleet.";
  m.attr("__version__") = std::string(civicbus::library_version());
  init_errors(m);  // first: the other parts raise these
  declare_node(m);
  init_broker(m);
  init_gateway(m);
  init_connect(m);
  init_pipeline(m);
  init_match(m);
  init_golden(m);
  init_fleet(m);
  init_node(m);  // last: its accessors return the component classes
  // Nodes, gateways and hubs run C++ threads that call into Python; they must stop while the
  // interpreter is still whole, so close them from atexit (which runs before finalisation).
  py::module_::import("atexit").attr("register")(py::cpp_function([] { close_all_for_exit(); }));
}
