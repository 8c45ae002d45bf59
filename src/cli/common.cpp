#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>

#include "cli/commands.hpp"

namespace civicbus::cli {
namespace {

// Set by SIGINT/SIGTERM; a handler can only reach global state.
std::atomic<int> g_signals{0};

extern "C" void civicbus_cli_on_signal(int) {
  if (g_signals.fetch_add(1) >= 1) ::_exit(130);  // a second Ctrl-C: leave now
}

}  // namespace

int fail(std::string_view message) {
  std::fflush(stdout);
  fmt::print(stderr, "civicbus: error: {}\n", message);
  return kExitFailure;
}

int fail(const Status& status) {
  return fail(status.message());
}

int usage_error(std::string_view command, std::string_view message) {
  std::fflush(stdout);
  if (command.empty()) {
    fmt::print(stderr, "civicbus: {}; see 'civicbus help'\n", message);
  } else {
    fmt::print(stderr, "civicbus {}: {}; see 'civicbus help {}'\n", command, message, command);
  }
  return kExitUsage;
}

Result<NodeOptions> load_options(const Args& args, std::string_view command, int& exit_code,
                                 NodeParts parts) {
  auto config = args.value("config");
  auto data_dir = args.value("data-dir");
  if (!config && !data_dir) {
    exit_code = usage_error(command, "give --config FILE or --data-dir DIR");
    return invalid_argument("no configuration");
  }
  NodeOptions options;
  if (config) {
    auto loaded = NodeOptions::from_file(*config);
    if (!loaded.ok()) {
      exit_code = fail(loaded.status());
      return loaded.status();
    }
    options = std::move(loaded).value();
  }
  if (data_dir) {
    if (data_dir->empty()) {
      exit_code = usage_error(command, "--data-dir must not be empty");
      return invalid_argument("empty data dir");
    }
    options.data_dir = *data_dir;
  }
  // Operator commands work on the data directory; the gateway is served by `civicbus serve`
  // only (an operator command must not take its port).
  options.gateway.reset();
  if (parts == NodeParts::kWithWebhooks) {
    if (!options.webhooks) options.webhooks.emplace();
  } else {
    options.webhooks.reset();
  }
  // The fleet's MQTT link and edge uplink belong to the running node (`serve`); an operator
  // command works on the registry only.
  if (parts == NodeParts::kWithFleet) {
    if (!options.fleet) options.fleet.emplace();
    options.fleet->mqtt.reset();
    options.fleet->edge.reset();
  } else {
    options.fleet.reset();
  }
  // The hub's schedules belong to the running node; an operator command runs what it asks.
  if (parts == NodeParts::kWithConnectors) {
    if (options.connectors) options.connectors->run_schedules = false;
  } else {
    options.connectors.reset();
  }
  if (!args.has("verbose") &&
      static_cast<int>(options.logging.level) < static_cast<int>(LogLevel::kWarn)) {
    options.logging.level = LogLevel::kWarn;
  }
  return options;
}

std::unique_ptr<Node> open_node(const Args& args, std::string_view command, int& exit_code,
                                NodeParts parts) {
  auto options = load_options(args, command, exit_code, parts);
  if (!options.ok()) return nullptr;
  auto node = Node::create(std::move(options).value());
  if (!node.ok()) {
    exit_code = fail(node.status());
    return nullptr;
  }
  return std::move(node).value();
}

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = civicbus_cli_on_signal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
}

bool stop_requested() {
  return g_signals.load() > 0;
}

Result<SystemTime> parse_time_or_ago(std::string_view text, SystemTime now) {
  if (auto t = parse_rfc3339(text); t.ok()) return *t;
  if (auto d = parse_duration(text); d.ok()) return now - *d;
  return invalid_argument(fmt::format(
      "'{}' is neither an RFC 3339 time (2026-11-22T14:00:00Z) nor a duration ago (30m, 2h, 7d)",
      text));
}

std::string Table::render() const {
  std::vector<std::size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (i + 1 == row.size()) {
        line += row[i];
      } else {
        line += fmt::format("{:<{}}  ", row[i], widths[i]);
      }
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

std::string truncate(std::string_view text, std::size_t max) {
  std::string out;
  for (char c : text) out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  if (out.size() <= max) return out;
  out.resize(max > 3 ? max - 3 : 0);
  // Do not cut a UTF-8 sequence in half.
  while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
  if (!out.empty() && (static_cast<unsigned char>(out.back()) & 0x80) != 0) out.pop_back();
  return out + "...";
}

}  // namespace civicbus::cli
