// `civicbus serve`: a node from a configuration file, until SIGINT or SIGTERM.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

#include "civicbus/broker/broker.hpp"
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
  std::fflush(stdout);

  Status s = node->run();
  std::string name = o.name;
  node.reset();  // closes the broker, commits the log
  if (!s.ok()) return fail(s);
  fmt::print("civicbus: node '{}' stopped\n", name);
  return kExitOk;
}

}  // namespace civicbus::cli
