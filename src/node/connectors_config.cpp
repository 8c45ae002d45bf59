// The `connectors:` section of the node's YAML (docs/connectors.md) and pipeline files
// (docs/pipelines.md). Connections and pipelines have a JSON form (ConnectionOptions::
// from_json, PipelineOptions::from_json) shared with the HTTP API; this file turns YAML into
// it and puts the line of the entry at fault in front of any error.
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "civicbus/connect/hub.hpp"
#include "civicbus/match/engine.hpp"
#include "civicbus/pipeline/pipeline.hpp"
#include "node/config_loader.hpp"

namespace civicbus::config_detail {

Status Loader::load_connectors(const Entry& e, NodeOptions& out) {
  NodeOptions::Connectors c;
  if (e.value.IsNull()) {
    out.connectors = std::move(c);
    return {};
  }
  CIVICBUS_ASSIGN_OR_RETURN(
      Fields f, fields(e.value, "'connectors'", "in connectors",
                       {"enabled", "data_dir", "misfire_grace", "run_schedules", "connections"}));
  bool enabled = true;
  if (const Entry* v = f.get("enabled")) {
    CIVICBUS_ASSIGN_OR_RETURN(enabled, read_bool(*v));
  }
  if (const Entry* v = f.get("data_dir")) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string dir, read_string(*v));
    c.hub.data_dir = resolve(dir);
  } else {
    c.hub.data_dir.clear();  // the node puts it under its data_dir
  }
  if (const Entry* v = f.get("misfire_grace")) {
    CIVICBUS_ASSIGN_OR_RETURN(c.hub.misfire_grace, read_seconds(*v));
  }
  if (const Entry* v = f.get("run_schedules")) {
    CIVICBUS_ASSIGN_OR_RETURN(c.run_schedules, read_bool(*v));
  }
  if (const Entry* v = f.get("connections")) {
    CIVICBUS_RETURN_IF_ERROR(
        expect_list(v->value, "'connectors.connections'", "{name, connector, config, ...}"));
    for (std::size_t i = 0; i < v->value.size(); ++i) {
      const YAML::Node& item = v->value[i];
      CIVICBUS_ASSIGN_OR_RETURN(Json j, yaml_to_json(item));
      auto options = connect::ConnectionOptions::from_json(j);
      if (!options.ok()) return fail(item, options.status().message());
      if (Status s = options->validate(); !s.ok()) return fail(item, s.message());
      c.connections.push_back(std::move(options).value());
    }
  }
  if (enabled) out.connectors = std::move(c);
  return {};
}

Result<Json> Loader::document_to_json(std::string_view text) {
  try {
    YAML::Node root = YAML::Load(std::string(text));
    return yaml_to_json(root);
  } catch (const YAML::Exception& e) {
    return fail(e.mark, e.msg);
  }
}

}  // namespace civicbus::config_detail

namespace civicbus {

Result<match::MatchSettings> load_match_file(std::string_view path) {
  std::ifstream in{std::string(path)};
  if (!in) return not_found(fmt::format("cannot read match rules file '{}'", path));
  std::stringstream text;
  text << in.rdbuf();
  namespace fs = std::filesystem;
  config_detail::Loader loader(path, fs::absolute(fs::path(path)).parent_path());
  CIVICBUS_ASSIGN_OR_RETURN(Json doc, loader.document_to_json(text.str()));
  auto settings = match::MatchSettings::from_json(doc);
  if (!settings.ok()) return settings.status().with_context(std::string(path));
  return settings;
}

Result<pipeline::PipelineOptions> load_pipeline_file(std::string_view path) {
  namespace fs = std::filesystem;
  std::ifstream in{std::string(path)};
  if (!in) return not_found(fmt::format("cannot read pipeline file '{}'", path));
  std::stringstream text;
  text << in.rdbuf();
  fs::path base = fs::absolute(fs::path(path)).parent_path();
  config_detail::Loader loader(path, base);
  CIVICBUS_ASSIGN_OR_RETURN(Json doc, loader.document_to_json(text.str()));
  auto options = pipeline::PipelineOptions::from_json(doc);
  if (!options.ok()) return options.status().with_context(std::string(path));
  auto relative = [&](Json& config) {
    if (Json* p = config.find("path"); p != nullptr && p->is_string() && !p->as_string().empty() &&
                                       fs::path(p->as_string()).is_relative()) {
      *p = Json((base / p->as_string()).string());
    }
  };
  relative(options->source.config);
  relative(options->sink.config);
  if (!options->error_report_dir.empty() && fs::path(options->error_report_dir).is_relative()) {
    options->error_report_dir = (base / options->error_report_dir).string();
  }
  if (options->name.empty()) options->name = fs::path(path).stem().string();
  if (Status s = options->validate(); !s.ok()) return s.with_context(std::string(path));
  return options;
}

}  // namespace civicbus
