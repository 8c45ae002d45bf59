// The subcommands of the civicbus binary and what they share: exit codes, error printing,
// opening a Node from --config / --data-dir, and a stop flag set by SIGINT/SIGTERM.
#pragma once

#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "civicbus/core/status.hpp"
#include "civicbus/node/node.hpp"
#include "cli/args.hpp"

namespace civicbus::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the command ran and something failed
inline constexpr int kExitUsage = 2;    // the command line is wrong

struct Command {
  std::string_view name;      // "serve", "dlq list"
  std::string_view summary;   // one line for `civicbus help`
  std::string_view synopsis;  // "civicbus serve --config FILE"
  std::span<const OptionSpec> options;
  std::size_t max_positionals = 0;
  int (*run)(const Args& args);
  std::string_view details;  // more text and examples for `civicbus help NAME`
};

// Every command, in the order `civicbus help` lists them.
std::span<const Command> commands();

// Prints "civicbus: error: MESSAGE" to stderr; returns kExitFailure.
int fail(std::string_view message);
int fail(const Status& status);
// Prints "civicbus COMMAND: MESSAGE; see 'civicbus help COMMAND'"; returns kExitUsage.
int usage_error(std::string_view command, std::string_view message);

// Options shared by the commands that open a node.
inline constexpr OptionSpec kConfigOption{"config", true, "FILE", "node configuration (YAML)"};
inline constexpr OptionSpec kDataDirOption{"data-dir", true, "DIR",
                                           "data directory (overrides the configuration's)"};
inline constexpr OptionSpec kVerboseOption{"verbose", false, "", "show the node's info logs"};

// What an operator command's node runs besides the broker.
enum class NodeParts {
  kBrokerOnly,      // no gateway, no webhook dispatcher
  kWithWebhooks,    // the webhook dispatcher too (the `webhooks` commands); an empty one when
                    // the configuration has no webhooks section
  kWithConnectors,  // the connector hub too (the `connectors` commands), schedules off
  kWithFleet,       // the device fleet too (the `devices` commands), without its MQTT link and
                    // edge uplink; a default one when the configuration has no fleet section
};

// Opens a node for an operator command from --config and/or --data-dir (one is required).
// Logs below warn are hidden unless --verbose. On failure prints the error and stores the
// exit code in `exit_code`.
std::unique_ptr<Node> open_node(const Args& args, std::string_view command, int& exit_code,
                                NodeParts parts = NodeParts::kBrokerOnly);

// Loads the NodeOptions an operator command would use (no node is opened). The gateway section
// is dropped: only `serve` (and `demo`) run a gateway. So is the webhooks section, unless
// `parts` asks for it: a `publish` or `tail` must not start delivering webhooks.
Result<NodeOptions> load_options(const Args& args, std::string_view command, int& exit_code,
                                 NodeParts parts = NodeParts::kBrokerOnly);

// SIGINT/SIGTERM handling for commands that loop (demo, tail --follow): the first signal
// sets the flag, a second one exits at once.
void install_stop_handlers();
bool stop_requested();

// Parses "2026-11-22T14:00:00Z" or a duration ago ("1h" = one hour before now).
Result<SystemTime> parse_time_or_ago(std::string_view text, SystemTime now);

// Left-aligned text table with a header row; columns sized to their widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string render() const;
  std::size_t size() const { return rows_.size() - 1; }

 private:
  std::vector<std::vector<std::string>> rows_;
};

std::string truncate(std::string_view text, std::size_t max);

// The command entry points.
int run_serve(const Args& args);
int run_demo(const Args& args);
int run_topics(const Args& args);
int run_publish(const Args& args);
int run_tail(const Args& args);
int run_dlq_list(const Args& args);
int run_dlq_replay(const Args& args);
int run_asyncapi(const Args& args);
int run_openapi(const Args& args);
int run_audit_verify(const Args& args);
int run_audit_list(const Args& args);
int run_webhooks_list(const Args& args);
int run_devices_import(const Args& args);
int run_devices_list(const Args& args);
int run_webhooks_dlq(const Args& args);
int run_webhooks_replay(const Args& args);
int run_connectors_list(const Args& args);
int run_connectors_check(const Args& args);
int run_connectors_test(const Args& args);
int run_connectors_sync(const Args& args);
int run_connectors_status(const Args& args);
int run_pipeline_run(const Args& args);
int run_cron_next(const Args& args);
int run_match(const Args& args);

}  // namespace civicbus::cli
