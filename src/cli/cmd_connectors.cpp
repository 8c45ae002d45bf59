// `civicbus connectors list|check|test|sync|status` and `civicbus pipeline run`: the connector
// hub and the pipeline engine from the command line (docs/CLI.md, docs/connectors.md,
// docs/pipelines.md).
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "civicbus/connect/hub.hpp"
#include "civicbus/pipeline/pipeline.hpp"
#include "cli/commands.hpp"
#include "cli/progress.hpp"

namespace civicbus::cli {
namespace {

std::string time_or_dash(const std::optional<SystemTime>& t) {
  return t ? format_rfc3339(*t) : std::string("-");
}

// Opens the node's hub (schedules off: an operator command runs what it is asked only).
connect::ConnectorHub* open_hub(const Args& args, std::string_view command, int& code,
                                std::unique_ptr<Node>& node) {
  node = open_node(args, command, code, NodeParts::kWithConnectors);
  if (!node) return nullptr;
  connect::ConnectorHub* hub = node->connectors();
  if (hub == nullptr) {
    code = fail("the node has no connector hub (add a 'connectors' section to its configuration)");
  }
  return hub;
}

// Counts the lines of a regular file, for the progress bar's total (a header line included:
// an estimate is all the ETA needs).
std::int64_t count_lines(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return 0;
  std::int64_t lines = 0;
  char buffer[1 << 16];
  std::size_t n = 0;
  bool last_newline = true;
  while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0) {
    for (std::size_t i = 0; i < n; ++i) lines += buffer[i] == '\n';
    last_newline = buffer[n - 1] == '\n';
  }
  std::fclose(f);
  return lines + (last_newline ? 0 : 1);
}

}  // namespace

int run_connectors_list(const Args& args) {
  auto catalog = connect::ConnectorCatalog::builtin().list();
  if (args.has("json")) {
    Json out = Json::array();
    for (const auto& c : catalog) {
      out.push_back(Json::object({{"name", c.name},
                                  {"title", c.title},
                                  {"source", c.is_source},
                                  {"sink", c.is_sink},
                                  {"format_source", c.format_source},
                                  {"config_schema", c.config_schema}}));
    }
    std::printf("%s\n", out.dump(2).c_str());
    return kExitOk;
  }
  std::printf("%-16s %-6s %-5s %s\n", "CONNECTOR", "SOURCE", "SINK", "TITLE (FORMAT SOURCE)");
  for (const auto& c : catalog) {
    std::printf("%-16s %-6s %-5s %s (%s)\n", c.name.c_str(), c.is_source ? "yes" : "-",
                c.is_sink ? "yes" : "-", c.title.c_str(), c.format_source.c_str());
  }
  std::printf("%zu connectors\n", catalog.size());
  return kExitOk;
}

int run_connectors_check(const Args& args) {
  if (args.positionals().size() != 1) return usage_error("connectors check", "give a CONNECTION");
  int code = kExitOk;
  std::unique_ptr<Node> node;
  auto* hub = open_hub(args, "connectors check", code, node);
  if (hub == nullptr) return code;
  Status s = hub->check(args.positionals()[0]);
  if (!s.ok()) return fail(s);
  std::printf("%s: ok\n", args.positionals()[0].c_str());
  return kExitOk;
}

int run_connectors_test(const Args& args) {
  if (args.positionals().size() != 1) return usage_error("connectors test", "give a CONNECTION");
  int code = kExitOk;
  std::unique_ptr<Node> node;
  auto* hub = open_hub(args, "connectors test", code, node);
  if (hub == nullptr) return code;
  auto report = hub->test_sync(args.positionals()[0], 5);
  if (!report.ok()) return fail(report.status());
  std::printf("check: %s\n", report->check.ok() ? "ok" : report->check.to_string().c_str());
  for (const auto& s : report->streams) {
    std::printf("stream %s: %zu fields%s\n", s.name.c_str(), s.fields.size(),
                s.supports_incremental() ? (", incremental by " + s.cursor_field).c_str() : "");
  }
  for (const auto& p : report->mapping_problems) std::printf("mapping: %s\n", p.c_str());
  for (const auto& d : report->drift) std::printf("schema change: %s\n", d.c_str());
  for (const auto& r : report->sample) std::printf("sample: %s\n", r.dump().c_str());
  for (const auto& e : report->sample_errors) {
    std::printf("refused: line %lld %s: %s\n", static_cast<long long>(e.position), e.field.c_str(),
                e.reason.c_str());
  }
  return report->ok() ? kExitOk : kExitFailure;
}

int run_connectors_sync(const Args& args) {
  if (args.positionals().size() != 1) return usage_error("connectors sync", "give a CONNECTION");
  int code = kExitOk;
  std::unique_ptr<Node> node;
  auto* hub = open_hub(args, "connectors sync", code, node);
  if (hub == nullptr) return code;
  auto report = hub->sync(args.positionals()[0]);
  if (!report.ok()) return fail(report.status());
  std::printf("%s: read %lld, written %lld, refused %lld in %.1f s\n", report->connection.c_str(),
              static_cast<long long>(report->records_read),
              static_cast<long long>(report->records_written),
              static_cast<long long>(report->records_rejected), report->elapsed.count() / 1000.0);
  for (const auto& d : report->drift) std::printf("schema change: %s\n", d.c_str());
  for (const auto& e : report->errors) {
    std::printf("  line %lld %s: %s\n", static_cast<long long>(e.position), e.field.c_str(),
                e.reason.c_str());
  }
  std::printf("state: %s\n", report->state.dump().c_str());
  return kExitOk;
}

int run_connectors_status(const Args& args) {
  int code = kExitOk;
  std::unique_ptr<Node> node;
  auto* hub = open_hub(args, "connectors status", code, node);
  if (hub == nullptr) return code;
  std::vector<std::string> names = hub->names();
  if (!args.positionals().empty()) names = {args.positionals()[0]};
  Json out = Json::array();
  for (const auto& name : names) {
    auto s = hub->status(name);
    if (!s.ok()) return fail(s.status());
    if (args.has("json")) {
      out.push_back(Json::object({{"name", s->name},
                                  {"connector", s->connector},
                                  {"health", connect::health_name(s->health)},
                                  {"last_run_at", time_or_dash(s->last_run_at)},
                                  {"last_success_at", time_or_dash(s->last_success_at)},
                                  {"next_run_at", time_or_dash(s->next_run_at)},
                                  {"last_error", s->last_error},
                                  {"queued", s->queued},
                                  {"state", s->state},
                                  {"config", s->config}}));
      continue;
    }
    std::printf("%s (%s): %s; last run %s; next %s; queued %lld%s%s\n", s->name.c_str(),
                s->connector.c_str(), std::string(connect::health_name(s->health)).c_str(),
                time_or_dash(s->last_run_at).c_str(), time_or_dash(s->next_run_at).c_str(),
                static_cast<long long>(s->queued),
                s->last_error.empty() ? "" : "; last error: ", s->last_error.c_str());
  }
  if (args.has("json")) std::printf("%s\n", out.dump(2).c_str());
  return kExitOk;
}

int run_pipeline_run(const Args& args) {
  if (args.positionals().size() != 1) return usage_error("pipeline run", "give the pipeline FILE");
  auto options = load_pipeline_file(args.positionals()[0]);
  if (!options.ok()) return fail(options.status());
  if (auto dir = args.value("errors")) options->error_report_dir = *dir;
  if (options->error_report_dir.empty()) options->error_report_dir = options->name + "-report";
  if (args.has("restart")) options->restart = true;
  if (options->expected_rows == 0) {
    std::string path = options->source.config.get_string("path");
    if (!path.empty()) options->expected_rows = count_lines(path);
  }
  const std::int64_t expected = options->expected_rows;
  Progress progress("rows", ::isatty(STDERR_FILENO) == 1);
  pipeline::PipelineEnv env;
  env.on_progress = [&](const pipeline::Progress& p) {
    std::string suffix = fmt::format("{:.0f} rows/s, {} failed", p.rows_per_second, p.rows_failed);
    if (p.eta) suffix += fmt::format(", ETA {}s", p.eta->count());
    progress.update(static_cast<std::size_t>(p.rows_read),
                    static_cast<std::size_t>(std::max(expected, p.rows_read)), suffix);
  };
  auto p = pipeline::Pipeline::create(*options, std::move(env));
  if (!p.ok()) return fail(p.status());
  install_stop_handlers();
  auto report = (*p)->run();
  if (!report.ok()) return fail(report.status());
  std::printf("%s: read %lld, loaded %lld, failed %lld in %lld batches, %.1f s%s\n",
              options->name.c_str(), static_cast<long long>(report->rows_read),
              static_cast<long long>(report->rows_loaded),
              static_cast<long long>(report->rows_failed), static_cast<long long>(report->batches),
              report->elapsed.count() / 1000.0, report->resumed ? " (resumed)" : "");
  std::printf("success rate: %.2f%%\n", report->success_rate() * 100.0);
  if (report->rows_failed > 0) {
    std::printf("error report: %s and %s\n", report->error_csv_path.c_str(),
                report->error_json_path.c_str());
  }
  return kExitOk;
}

}  // namespace civicbus::cli
