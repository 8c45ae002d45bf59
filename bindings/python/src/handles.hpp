// The C++ objects behind the module's Python classes that more than one translation unit makes:
// a Node and the views of its components (Broker, Gateway, DeviceFleet, ConnectorHub), each
// holding the Lifetime that keeps the object valid.
#pragma once

#include <functional>
#include <memory>
#include <utility>

#include "civicbus/connect/connector.hpp"
#include "civicbus/connect/hub.hpp"
#include "civicbus/fleet/fleet.hpp"
#include "civicbus/gateway/gateway.hpp"
#include "civicbus/node/node.hpp"
#include "common.hpp"

namespace civicbus::python {

class NodeState final : public Lifetime {
 public:
  NodeState() : Lifetime("node") {}
  ~NodeState() override { close_from_destructor(); }
  // Valid while a Use is held (or before the node is shared).
  Node& node() { return *node_; }
  void set(std::unique_ptr<Node> node) { node_ = std::move(node); }

 protected:
  void interrupt() override {
    if (node_) node_->stop();  // run() holds a Use until it returns
  }
  void destroy() override { node_.reset(); }

 private:
  std::unique_ptr<Node> node_;
};

// The options of one section of a node configuration (`gateway`, `fleet`...) given as a dict
// or YAML text, read by NodeOptions::from_yaml; `origin` names it in errors.
NodeOptions section_options(py::handle config, std::string_view section);

// Runs `body(resource)` with the GIL released while `life` stays open; `get` resolves the C++
// object once the Use is held. Results must be C++ values (Python objects need the GIL).
template <typename T, typename Body>
auto use_without_gil(const std::shared_ptr<Lifetime>& life, const std::function<T*()>& get,
                     Body&& body) {
  py::gil_scoped_release nogil;
  Lifetime::Use use = life->use();
  T* resource = get();
  if (resource == nullptr) throw StatusError(failed_precondition("the component is not running"));
  return body(*resource);
}

// A node's broker (the node's Lifetime).
struct BrokerRef {
  std::shared_ptr<NodeState> node;
  template <typename Body>
  auto with(Body&& body) const {
    std::function<broker::Broker*()> get = [n = node.get()] { return &n->node().broker(); };
    return use_without_gil<broker::Broker>(node, get, std::forward<Body>(body));
  }
};

// A gateway: the node's, or one created from Python (its own Lifetime).
struct GatewayRef {
  std::shared_ptr<Lifetime> life;
  std::function<gateway::Gateway*()> get;
  bool owned = false;  // created from Python: start() and stop() are the caller's
  template <typename Body>
  auto with(Body&& body) const {
    return use_without_gil<gateway::Gateway>(life, get, std::forward<Body>(body));
  }
};

// A device fleet (the node's).
struct FleetRef {
  std::shared_ptr<NodeState> node;
  template <typename Body>
  auto with(Body&& body) const {
    std::function<fleet::DeviceFleet*()> get = [n = node.get()] { return n->node().fleet(); };
    return use_without_gil<fleet::DeviceFleet>(node, get, std::forward<Body>(body));
  }
};

// A connector hub: the node's, or one opened from Python on the node's database with a
// catalog of Python connectors (its own Lifetime, a dependent of the node's).
struct HubRef {
  std::shared_ptr<Lifetime> life;
  std::function<connect::ConnectorHub*()> get;
  bool owned = false;  // opened from Python: close() is the caller's
  template <typename Body>
  auto with(Body&& body) const {
    return use_without_gil<connect::ConnectorHub>(life, get, std::forward<Body>(body));
  }
};

// A catalog of connectors (built-in and Python ones), copied into each hub and pipeline that
// uses it so later additions never race with a running one.
struct CatalogRef {
  std::shared_ptr<connect::ConnectorCatalog> catalog;
};

}  // namespace civicbus::python
