// `civicbus serve`: a node (and its gateway, when configured) from a configuration file, until
// SIGINT or SIGTERM. SIGHUP reloads the gateway's configuration (Node::run).
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

#include "civicbus/broker/broker.hpp"
#include "civicbus/gateway/gateway.hpp"
#include "cli/commands.hpp"

namespace civicbus::cli {

int run_serve(const Args& args) {
  auto config = args.value("config");
  if (!config) return usage_error("serve", "--config FILE is required");
  auto loaded = NodeOptions::from_file(*config);
  if (!loaded.ok()) return fail(loaded.status());
  NodeOptions options = std::move(loaded).value();
  if (auto dir = args.value("data-dir")) {
    if (dir->empty()) return usage_error("serve", "--data-dir must not be empty");
    options.data_dir = *dir;
  }
  if (auto level = args.value("log-level")) {
    auto parsed = parse_log_level(*level);
    if (!parsed.ok()) {
      return usage_error("serve",
                         fmt::format("--log-level must be one of trace, debug, info, warn, "
                                     "error, off; got '{}'",
                                     *level));
    }
    options.logging.level = *parsed;
  }

  auto created = Node::create(std::move(options));
  if (!created.ok()) return fail(created.status());
  std::unique_ptr<Node> node = std::move(created).value();
  const NodeOptions& o = node->options();
  fmt::print(
      "civicbus: node '{}' serving {} topics from {} (pid {}); stop with Ctrl-C or SIGTERM\n",
      o.name, node->broker().topics().size(), o.data_dir, ::getpid());
  if (gateway::Gateway* gw = node->gateway()) {
    fmt::print(
        "civicbus: gateway listening on http://{}:{} ({} routes, OpenAPI at "
        "/api/v1/openapi.json); SIGHUP reloads its configuration from {}\n",
        o.gateway->listener.bind_address.find(':') != std::string::npos
            ? "[" + o.gateway->listener.bind_address + "]"
            : o.gateway->listener.bind_address,
        gw->port(), o.gateway->routes.size(), o.config_file);
  }
  std::fflush(stdout);

  Status s = node->run();
  std::string name = o.name;
  node.reset();  // closes the broker, commits the log
  if (!s.ok()) return fail(s);
  fmt::print("civicbus: node '{}' stopped\n", name);
  return kExitOk;
}

}  // namespace civicbus::cli
