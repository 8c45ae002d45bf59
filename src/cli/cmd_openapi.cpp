// `civicbus openapi`: the OpenAPI 3.1 document of the gateway a configuration describes. The
// gateway is created (so the document is the one it would serve at /api/v1/openapi.json) but
// not started, and the node's data directory is not opened: it works while `serve` runs.
#include <fmt/format.h>

#include "civicbus/gateway/gateway.hpp"
#include "cli/commands.hpp"

namespace civicbus::cli {

int run_openapi(const Args& args) {
  gateway::GatewayOptions options;  // without --config: the gateway's own routes only
  if (auto config = args.value("config")) {
    auto loaded = NodeOptions::from_file(*config);
    if (!loaded.ok()) return fail(loaded.status());
    if (!loaded->gateway) {
      return fail(fmt::format(
          "{} has no enabled 'gateway' section; there is no API to describe (see docs/CONFIG.md)",
          *config));
    }
    options = std::move(*loaded->gateway);
  }
  LogOptions log;
  log.level = args.has("verbose") ? LogLevel::kInfo : LogLevel::kWarn;
  SystemClock clock;
  gateway::GatewayDeps deps;
  deps.clock = &clock;
  deps.logger = Logger(log, clock);
  auto gw = gateway::Gateway::create(std::move(options), std::move(deps));
  if (!gw.ok()) return fail(gw.status().with_context("gateway"));
  fmt::print("{}\n", (*gw)->openapi().dump(2));
  return kExitOk;
}

}  // namespace civicbus::cli
