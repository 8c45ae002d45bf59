// The civicbus command: runs a node from a YAML file and hosts the operator tools. See
// docs/CLI.md. Exit codes: 0 success, 1 failure, 2 usage error.
#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.hpp"

namespace civicbus::cli {
namespace {

constexpr OptionSpec kServeOptions[] = {
    kConfigOption,
    kDataDirOption,
    {"log-level", true, "LEVEL", "override logging.level (trace, debug, info, warn, error)"},
};

constexpr OptionSpec kDemoOptions[] = {
    {"duration", true, "DURATION", "how long to publish traffic (default 5s)"},
    {"rate", true, "N", "events published per second (default 400)"},
    {"data-dir", true, "DIR", "keep the demo's data here (default: a temporary directory)"},
    {"keep", false, "", "do not delete the temporary data directory"},
    {"gateway-port", true, "PORT", "the demo gateway's port on 127.0.0.1 (default: any free one)"},
    {"mqtt", true, "URI",
     "the MQTT broker the simulated devices publish to (default tcp://127.0.0.1:1883 when "
     "something listens there, else readings go in process)"},
    {"serve", false, "",
     "after the tour, keep the node and its gateway running until Ctrl-C (to try the curl "
     "commands)"},
    kVerboseOption,
};

constexpr OptionSpec kTopicsOptions[] = {
    kConfigOption, kDataDirOption, {"json", false, "", "print a JSON array"}, kVerboseOption};

constexpr OptionSpec kPublishOptions[] = {
    kConfigOption,
    kDataDirOption,
    {"type", true, "TYPE", "event type, which is the topic (property.assessment.updated)"},
    {"source", true, "URI", "event source (/tax/assessment-roll)"},
    {"id", true, "ID", "event id (default: a new UUIDv7)"},
    {"subject", true, "SUBJECT", "event subject, also the ordering key"},
    {"partition-key", true, "KEY", "ordering key when it is not the subject"},
    {"data", true, "JSON", "event data (JSON)"},
    {"event", true, "JSON", "a whole CloudEvent (structured JSON)"},
    {"file", true, "FILE", "CloudEvents, one JSON object a line ('-' reads stdin)"},
    kVerboseOption,
};

constexpr OptionSpec kTailOptions[] = {
    kConfigOption,
    kDataDirOption,
    {"topic", true, "PATTERN",
     "topics to show: a name or a pattern (permit.*, property.>); default >"},
    {"from", true, "OFFSET", "first offset to show (default: the last --limit events)"},
    {"limit", true, "N", "events to show (default 10; with --follow, the backlog shown first)"},
    {"follow", false, "", "keep printing new events until Ctrl-C"},
    {"events-only", false, "",
     "print bare CloudEvents instead of {offset, topic, stored_at, event}"},
    kVerboseOption,
};

// The dead-letter filters, shared by `dlq list` and `dlq replay`.
constexpr OptionSpec kDlqGroup{"group", true, "GROUP", "only this consumer group"};
constexpr OptionSpec kDlqTopic{"topic", true, "PATTERN", "only topics matching this pattern"};
constexpr OptionSpec kDlqId{"id", true, "N", "only the dead letter with this id"};
constexpr OptionSpec kDlqSince{"since", true, "TIME",
                               "dead at or after TIME (RFC 3339, or a duration ago: 2h)"};
constexpr OptionSpec kDlqUntil{"until", true, "TIME", "dead before TIME"};
constexpr OptionSpec kDlqError{"error", true, "TEXT",
                               "only dead letters whose error contains TEXT"};

constexpr OptionSpec kDlqListOptions[] = {
    kConfigOption,
    kDataDirOption,
    kDlqGroup,
    kDlqTopic,
    kDlqId,
    kDlqSince,
    kDlqUntil,
    kDlqError,
    {"all", false, "", "include dead letters already replayed"},
    {"limit", true, "N", "at most N (default 1000)"},
    {"json", false, "", "print JSON lines with payloads"},
    kVerboseOption,
};

constexpr OptionSpec kDlqReplayOptions[] = {
    kConfigOption,
    kDataDirOption,
    kDlqGroup,
    kDlqTopic,
    kDlqId,
    kDlqSince,
    kDlqUntil,
    kDlqError,
    {"all", false, "", "replay every dead letter (required when no filter is given)"},
    {"actor", true, "NAME", "who asks, for the audit log (default: $USER)"},
    kVerboseOption,
};

constexpr OptionSpec kAsyncApiOptions[] = {kConfigOption, kDataDirOption, kVerboseOption};
constexpr OptionSpec kOpenApiOptions[] = {kConfigOption, kVerboseOption};
constexpr OptionSpec kAuditVerifyOptions[] = {kConfigOption, kDataDirOption, kVerboseOption};
constexpr OptionSpec kAuditListOptions[] = {kConfigOption,
                                            kDataDirOption,
                                            {"from", true, "SEQ", "first record (default 1)"},
                                            {"limit", true, "N", "records to show (default 100)"},
                                            kVerboseOption};
constexpr OptionSpec kConnectorsListOptions[] = {
    {"json", false, "", "print the catalog with each connector's config schema as JSON"}};
constexpr OptionSpec kConnectorsNodeOptions[] = {kConfigOption, kDataDirOption, kVerboseOption};
constexpr OptionSpec kConnectorsStatusOptions[] = {
    kConfigOption, kDataDirOption, {"json", false, "", "print JSON"}, kVerboseOption};
constexpr OptionSpec kPipelineRunOptions[] = {
    {"errors", true, "DIR",
     "where errors.csv and errors.json go (default: the file's, or NAME-report)"},
    {"restart", false, "", "start from the beginning instead of resuming an unfinished run"},
    kVerboseOption};
constexpr OptionSpec kMatchOptions[] = {
    {"config", true, "FILE", "the match rules (YAML, docs/match.md)"},
    {"out", true, "FILE", "where the scored pairs go (default pairs.csv)"},
    {"clusters", true, "FILE", "where the clusters go (default: OUT with _clusters)"},
    {"all", false, "", "write every candidate pair, non-matches too"},
    {"one-to-one", false, "", "a linkage joins each record to at most one of the other file"},
    {"model", true, "FILE", "score with this trained model instead of training"},
    {"save-model", true, "FILE", "write the trained model (m, u, prior) as JSON"},
    {"explain", true, "N", "explain the first N pairs field by field"},
    {"verbose", false, "", "print the trained m and u of every level"}};
constexpr OptionSpec kDevicesImportOptions[] = {
    kConfigOption,
    kDataDirOption,
    {"format", true, "csv|json", "the file's format (default: by its extension or content)"},
    {"keys", true, "FILE", "write the certificates and private keys here (mode 0600, new file)"},
    {"errors", true, "FILE", "write the refused rows as CSV (where,field,reason)"},
    {"actor", true, "NAME", "who is recorded as provisioning (default civicbus-cli)"},
    {"json", false, "", "print the report, keys included, as JSON"},
    kVerboseOption};
constexpr OptionSpec kDevicesListOptions[] = {kConfigOption,
                                              kDataDirOption,
                                              {"type", true, "TYPE", "only this device type"},
                                              {"status", true, "STATUS", "only this status"},
                                              {"limit", true, "N", "at most N (default 1000)"},
                                              {"json", false, "", "print JSON lines"},
                                              kVerboseOption};
constexpr OptionSpec kWebhooksListOptions[] = {
    kConfigOption, kDataDirOption, {"json", false, "", "print JSON lines"}, kVerboseOption};
constexpr OptionSpec kWebhooksDlqOptions[] = {kConfigOption,
                                              kDataDirOption,
                                              {"limit", true, "N", "at most N (default 1000)"},
                                              {"json", false, "", "print JSON lines with bodies"},
                                              kVerboseOption};
constexpr OptionSpec kWebhooksReplayOptions[] = {kConfigOption, kDataDirOption, kVerboseOption};
constexpr OptionSpec kCronNextOptions[] = {
    {"tz", true, "ZONE", "IANA time zone the schedule runs in (default UTC)"},
    {"count", true, "N", "fire times to print (default 5, at most 1000)"},
    {"after", true, "TIME", "start after this RFC 3339 instant (default: now)"}};
constexpr OptionSpec kNoOptions[] = {{"help", false, "", "show this help"}};

int run_version(const Args&) {
  fmt::print("civicbus {}\n", library_version());
  return kExitOk;
}

int run_help(const Args& args);

constexpr Command kCommands[] = {
    {"serve", "run a node from a configuration file until SIGINT/SIGTERM",
     "civicbus serve --config FILE [--data-dir DIR] [--log-level LEVEL]", kServeOptions, 0,
     run_serve,
     "Creates the configured topics and schemas, starts the gateway and the webhook\n"
     "subscriptions of the file's 'gateway' and 'webhooks' sections, then serves until\n"
     "stopped. The data directory is locked while the node runs.\n\n"
     "Example:\n  civicbus serve --config /etc/civicbus/node.yaml\n"},
    {"demo", "run a self-contained municipal demo and print what happens",
     "civicbus demo [--duration 5s] [--rate 400] [--data-dir DIR] [--keep]\n"
     "              [--gateway-port PORT] [--serve]",
     kDemoOptions, 0, run_demo,
     "Creates sample topics (property.assessment.updated with a schema and PII fields,\n"
     "permit.issued, payment.completed, iot.alert.raised) and consumer groups (tax, gis,\n"
     "finance and a deliberately flaky 'notifier'), publishes steady traffic, evolves the\n"
     "assessment schema to v2, replays the dead-letter queue and verifies the audit log.\n"
     "An API gateway runs in front of the node (admin API, OpenAPI, a proxied legacy permits\n"
     "service and an in-process permits API); the demo calls it and prints the curl\n"
     "equivalents. It tours the connectors and a pipeline, and matches a small MPAC-like\n"
     "property file against existing records, printing a golden record with its provenance.\n\n"
     "Examples:\n  civicbus demo --duration 10s\n  civicbus demo --serve   # then try the "
     "printed curl commands\n"},
    {"topics", "list topics with owner, sensitivity, retention and usage",
     "civicbus topics (--config FILE | --data-dir DIR) [--json]", kTopicsOptions, 0, run_topics,
     "Example:\n  civicbus topics --config node.yaml\n"},
    {"publish", "publish one event, a CloudEvent, or a file of CloudEvents",
     "civicbus publish (--config FILE | --data-dir DIR) --type TYPE --source URI [--id ID]\n"
     "                 [--subject S] --data JSON\n"
     "       civicbus publish ... --event JSON\n"
     "       civicbus publish ... --file events.ndjson",
     kPublishOptions, 0, run_publish,
     "Prints the offset each event was stored at, or that it was a duplicate (same source and\n"
     "id inside the dedup window). An event the topic's schema refuses exits 1 with the\n"
     "schema error; nothing is stored.\n\n"
     "Examples:\n"
     "  civicbus publish --config node.yaml --type permit.issued --source /permits \\\n"
     "      --subject BP-2026-0042 --data "
     "'{\"permit_id\":\"BP-2026-0042\",\"kind\":\"building\"}'\n"
     "  civicbus publish --config node.yaml --file events.ndjson\n"},
    {"tail", "print stored events as JSON lines (PII redacted)",
     "civicbus tail (--config FILE | --data-dir DIR) [--topic PATTERN] [--from OFFSET]\n"
     "              [--limit N] [--follow] [--events-only]",
     kTailOptions, 0, run_tail,
     "Examples:\n"
     "  civicbus tail --config node.yaml --topic 'property.>' --limit 20\n"
     "  civicbus tail --config node.yaml --from 1 --limit 1000 --events-only > backup.ndjson\n"},
    {"dlq list", "list dead letters",
     "civicbus dlq list (--config FILE | --data-dir DIR) [--group G] [--topic P] [--id N]\n"
     "                  [--since TIME] [--until TIME] [--error TEXT] [--all] [--json]",
     kDlqListOptions, 0, run_dlq_list,
     "Example:\n  civicbus dlq list --config node.yaml --group gis --since 2h\n"},
    {"dlq replay", "queue dead letters for redelivery to their consumer group",
     "civicbus dlq replay (--config FILE | --data-dir DIR) [--group G] [--topic P] [--id N]\n"
     "                    [--since TIME] [--until TIME] [--error TEXT] [--all]",
     kDlqReplayOptions, 0, run_dlq_replay,
     "Replayed events are delivered again (with replay=true) when their group next runs.\n\n"
     "Example:\n  civicbus dlq replay --config node.yaml --group gis --error timeout\n"},
    {"asyncapi", "print the AsyncAPI 3.0 document of every topic (JSON)",
     "civicbus asyncapi (--config FILE | --data-dir DIR)", kAsyncApiOptions, 0, run_asyncapi,
     "Example:\n  civicbus asyncapi --config node.yaml > asyncapi.json\n"},
    {"openapi", "print the OpenAPI 3.1 document of the configured gateway (JSON)",
     "civicbus openapi [--config FILE]", kOpenApiOptions, 0, run_openapi,
     "Creates the gateway of the configuration's 'gateway' section without starting it (the\n"
     "node's data directory is not opened) and prints what it would serve at\n"
     "/api/v1/openapi.json. Without --config: the gateway's own routes (token endpoint, JWKS,\n"
     "admin API).\n\n"
     "Example:\n  civicbus openapi --config node.yaml > openapi.json\n"},
    {"audit verify", "check the audit log's hash chain (exit 0 intact, 1 problems)",
     "civicbus audit verify (--config FILE | --data-dir DIR)", kAuditVerifyOptions, 0,
     run_audit_verify, "Example:\n  civicbus audit verify --config node.yaml\n"},
    {"audit list", "print audit records as JSON lines",
     "civicbus audit list (--config FILE | --data-dir DIR) [--from SEQ] [--limit N]",
     kAuditListOptions, 0, run_audit_list, ""},
    {"devices import", "provision devices from a CSV or JSON list (certificates included)",
     "civicbus devices import (--config FILE | --data-dir DIR) FILE (--keys FILE | --json)",
     kDevicesImportOptions, 1, run_devices_import,
     "Validates every row; good rows are provisioned (each gets an X.509 certificate from the\n"
     "node's device CA, its MQTT topics and its type's alert rules) while bad rows are listed\n"
     "by line with the reason. Shows a progress bar on a terminal. The private keys are shown\n"
     "once: they go to the --keys file (created with mode 0600) and are never stored. CSV\n"
     "columns: serial,type,lat,lon,asset_id,id,model,firmware_version,install_date,\n"
     "department,project,network,tags (k=v;k=v). Exit 1 when a row was refused.\n\n"
     "Example:\n  civicbus devices import --config node.yaml meters.csv --keys meters-keys.pem\n"},
    {"devices list", "list the fleet's devices",
     "civicbus devices list (--config FILE | --data-dir DIR) [--type TYPE] [--status S] [--json]",
     kDevicesListOptions, 0, run_devices_list,
     "Example:\n  civicbus devices list --config node.yaml --type water_meter\n"},
    {"webhooks list", "list webhook subscriptions with their state, retries and dead letters",
     "civicbus webhooks list (--config FILE | --data-dir DIR) [--json]", kWebhooksListOptions, 0,
     run_webhooks_list,
     "Opens the node's webhook dispatcher (creating or updating the subscriptions of the\n"
     "configuration's 'webhooks' section, as 'serve' does) and prints every stored\n"
     "subscription. While the command runs the dispatcher delivers, as the node would. Like\n"
     "the other operator commands it needs the node stopped (the data directory is locked).\n\n"
     "Example:\n  civicbus webhooks list --config node.yaml\n"},
    {"webhooks dlq", "list a webhook subscription's dead letters",
     "civicbus webhooks dlq (--config FILE | --data-dir DIR) ID [--limit N] [--json]",
     kWebhooksDlqOptions, 1, run_webhooks_dlq,
     "Example:\n  civicbus webhooks dlq --config node.yaml gis-vendor\n"},
    {"webhooks replay", "queue a webhook subscription's dead letters for delivery again",
     "civicbus webhooks replay (--config FILE | --data-dir DIR) ID", kWebhooksReplayOptions, 1,
     run_webhooks_replay,
     "Moves the dead letters back to the retry table with a fresh schedule, due at once. They\n"
     "go out when the node next runs (or while this command runs).\n\n"
     "Example:\n  civicbus webhooks replay --config node.yaml gis-vendor\n"},
    {"connectors list", "list the built-in connector catalog", "civicbus connectors list [--json]",
     kConnectorsListOptions, 0, run_connectors_list,
     "Each connector with whether it reads (source) and writes (sink), and where its format or\n"
     "protocol is defined. --json adds each one's config schema. See docs/connectors.md.\n"},
    {"connectors check", "test a configured connection",
     "civicbus connectors check (--config FILE | --data-dir DIR) CONNECTION",
     kConnectorsNodeOptions, 1, run_connectors_check,
     "Runs the connector's check (connectivity, credentials, paths) with the connection's\n"
     "config and the secrets from the vault. Exit 0 when it passes.\n\n"
     "Example:\n  civicbus connectors check --config node.yaml mpac-nightly\n"},
    {"connectors test", "test sync: check, discover, read a sample and report the mapping",
     "civicbus connectors test (--config FILE | --data-dir DIR) CONNECTION", kConnectorsNodeOptions,
     1, run_connectors_test,
     "Writes nothing and commits no state. Exit 1 when the check fails or the mapping does\n"
     "not fit the discovered schema.\n"},
    {"connectors sync", "run a connection's sync now",
     "civicbus connectors sync (--config FILE | --data-dir DIR) CONNECTION", kConnectorsNodeOptions,
     1, run_connectors_sync,
     "Reads from the committed state, maps, writes to the destination, and commits the new\n"
     "state once the destination acknowledged.\n\n"
     "Example:\n  civicbus connectors sync --config node.yaml mpac-nightly\n"},
    {"connectors status", "show connections' health, runs, schedule and queue",
     "civicbus connectors status (--config FILE | --data-dir DIR) [CONNECTION] [--json]",
     kConnectorsStatusOptions, 1, run_connectors_status, ""},
    {"pipeline run", "run a pipeline file with a progress bar and an error report",
     "civicbus pipeline run FILE [--errors DIR] [--restart]", kPipelineRunOptions, 1,
     run_pipeline_run,
     "FILE is YAML (docs/pipelines.md): a source connector, stages, a sink. Failing rows go\n"
     "to errors.csv and errors.json with their line, field, value and reason while the rest\n"
     "load. A stopped or crashed run resumes after its last committed batch when run again.\n\n"
     "Example:\n  civicbus pipeline run amanda-permits.yaml\n"},
    {"match", "deduplicate a CSV file or link two, writing scored pairs and clusters",
     "civicbus match --config RULES LEFT.csv [RIGHT.csv] [--out pairs.csv]", kMatchOptions, 2,
     run_match,
     "RULES is YAML (docs/match.md): typed comparisons, blocking rules, deterministic rules,\n"
     "thresholds. Without --model the engine trains itself (u from random pairs, m by EM).\n"
     "pairs.csv has left_id,right_id,match_weight,match_probability,decision,rule,cluster;\n"
     "the clusters file maps every record to its entity.\n"
     "Example:\n  civicbus match --config people.yaml applicants.csv citizens.csv --explain 3\n"},
    {"cron next", "print the next fire times of a cron expression",
     "civicbus cron next \"EXPR\" [--tz ZONE] [--count N] [--after TIME]", kCronNextOptions, 1,
     run_cron_next,
     "Prints one ISO 8601 time a line, with the zone's offset. EXPR has 5 fields (minute hour\n"
     "day-of-month month day-of-week), 6 (seconds first) or is a macro (@daily); see\n"
     "docs/cron.md. A time the clock skips (spring forward) fires once when the gap ends; a\n"
     "time it shows twice (fall back) fires once, on its first pass.\n\n"
     "Examples:\n"
     "  civicbus cron next \"30 2 * * *\" --tz America/Toronto --after 2026-03-07T12:00:00Z\n"
     "  civicbus cron next \"0 0 9 ? * MON-FRI\" --tz Australia/Adelaide --count 10\n"},
    {"version", "print the version", "civicbus version", kNoOptions, 0, run_version, ""},
    {"help", "show help for all commands or one", "civicbus help [COMMAND]", kNoOptions, 2,
     run_help, ""},
};

void print_command_help(const Command& c) {
  fmt::print("{}\n\nUsage:\n  {}\n", c.summary, c.synopsis);
  if (c.run != run_version && c.run != run_help) {
    fmt::print("\nOptions:\n{}", options_help(c.options));
  }
  if (!c.details.empty()) fmt::print("\n{}", c.details);
}

void print_overview() {
  fmt::print(
      "civicbus {} - an embeddable integration node for municipalities\n\n"
      "Usage: civicbus COMMAND [OPTIONS]\n\nCommands:\n",
      library_version());
  std::size_t width = 0;
  for (const Command& c : kCommands) width = std::max(width, c.name.size());
  for (const Command& c : kCommands) fmt::print("  {:<{}}  {}\n", c.name, width, c.summary);
  fmt::print(
      "\nRun 'civicbus help COMMAND' for a command's options. Exit codes: 0 ok, 1 failure, "
      "2 usage error.\n");
}

const Command* find_command(std::string_view name) {
  for (const Command& c : kCommands) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::vector<std::string_view> command_names() {
  std::vector<std::string_view> names;
  for (const Command& c : kCommands) names.push_back(c.name);
  return names;
}

int run_help(const Args& args) {
  const auto& words = args.positionals();
  if (words.empty()) {
    print_overview();
    return kExitOk;
  }
  std::string name = words[0];
  if (words.size() > 1) name += " " + words[1];
  const Command* c = find_command(name);
  if (c == nullptr && words.size() == 1) {
    // "help dlq" shows both dlq commands.
    bool any = false;
    for (const Command& sub : kCommands) {
      if (sub.name.starts_with(name + " ")) {
        if (any) fmt::print("\n");
        fmt::print("civicbus {}: ", sub.name);
        print_command_help(sub);
        any = true;
      }
    }
    if (any) return kExitOk;
  }
  if (c == nullptr) {
    auto names = command_names();
    auto hint = closest(name, names);
    return usage_error("", fmt::format("no command '{}'{}", name,
                                       hint ? fmt::format(" (did you mean '{}'?)", *hint) : ""));
  }
  print_command_help(*c);
  return kExitOk;
}

int dispatch(const std::vector<std::string>& words) {
  if (words.empty()) {
    print_overview();
    return kExitUsage;
  }
  std::string first = words[0];
  if (first == "--help" || first == "-h") first = "help";
  if (first == "--version" || first == "-V") first = "version";

  std::size_t consumed = 1;
  const Command* command = find_command(first);
  if (command == nullptr && words.size() >= 2) {
    command = find_command(first + " " + words[1]);
    if (command != nullptr) consumed = 2;
  }
  if (command == nullptr) {
    bool is_group = false;
    std::vector<std::string_view> subs;
    for (const Command& c : kCommands) {
      if (c.name.starts_with(first + " ")) {
        is_group = true;
        subs.push_back(c.name.substr(first.size() + 1));
      }
    }
    if (is_group) {
      std::string list;
      for (auto s : subs) list += (list.empty() ? "" : ", ") + std::string(s);
      if (words.size() < 2) {
        return usage_error(first, fmt::format("needs a subcommand: {}", list));
      }
      auto hint = closest(words[1], subs);
      return usage_error(
          first, fmt::format("unknown subcommand '{}'{}; expected {}", words[1],
                             hint ? fmt::format(" (did you mean '{}'?)", *hint) : "", list));
    }
    auto names = command_names();
    auto hint = closest(first, names);
    return usage_error("", fmt::format("unknown command '{}'{}", first,
                                       hint ? fmt::format(" (did you mean '{}'?)", *hint) : ""));
  }

  std::vector<std::string> rest(words.begin() + static_cast<std::ptrdiff_t>(consumed), words.end());
  if (command->run != run_help) {
    for (const std::string& w : rest) {
      if (w == "--") break;
      if (w == "--help" || w == "-h") {
        print_command_help(*command);
        return kExitOk;
      }
    }
  }
  UsageError error;
  auto args = Args::parse(rest, command->options, command->max_positionals, error);
  if (!args) return usage_error(command->name, error.message);
  return command->run(*args);
}

}  // namespace

std::span<const Command> commands() {
  return kCommands;
}

}  // namespace civicbus::cli

int main(int argc, char** argv) {
  std::vector<std::string> words(argv + 1, argv + argc);
  int code = civicbus::cli::dispatch(words);
  std::fflush(stdout);
  return code;
}
