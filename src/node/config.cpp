// The YAML loader for NodeOptions and the duration and size syntax it shares with the command
// line. yaml-cpp is used only in src/node (here, gateway_config.cpp, which loads the
// `gateway:` section, and webhooks_config.cpp, which loads `webhooks:`), and its exceptions
// never leave Loader::load(). Every error names the origin and the line it is about, so an
// operator can go straight to it.
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "civicbus/core/json_schema_compat.hpp"
#include "civicbus/node/node.hpp"
#include "core/ascii.hpp"
#include "core/edit_distance.hpp"
#include "node/config_loader.hpp"

namespace civicbus {
namespace config_detail {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string did_you_mean(std::string_view got, const std::vector<std::string_view>& candidates) {
  std::string_view best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  for (std::string_view c : candidates) {
    std::size_t d = detail::edit_distance(ascii_lower(got), c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  // Short words tolerate one slip, longer ones two or three.
  std::size_t limit = best.size() <= 4 ? 1 : best.size() <= 8 ? 2 : 3;
  if (best.empty() || best_distance > limit) return "";
  return fmt::format(" (did you mean '{}'?)", best);
}

std::string join(const std::vector<std::string_view>& items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    out += items[i];
  }
  return out;
}

Status Loader::fail(const YAML::Mark& mark, std::string_view message) const {
  if (mark.is_null()) return invalid_argument(fmt::format("{}: {}", origin_, message));
  return invalid_argument(fmt::format("{}:{}: {}", origin_, mark.line + 1, message));
}

Result<Fields> Loader::fields(const YAML::Node& node, std::string_view what, std::string_view where,
                              const std::vector<std::string_view>& allowed) const {
  Fields out;
  if (!node.IsDefined() || node.IsNull()) return out;
  if (!node.IsMap()) {
    return fail(node, fmt::format("{} must be a mapping of keys ({})", what, join(allowed)));
  }
  for (auto it = node.begin(); it != node.end(); ++it) {
    // A copy (cheap: a handle), not a reference: yaml-cpp's iterator hands out the pair
    // through a temporary proxy, so `const YAML::Node& k = it->first` dangles at once (ASan:
    // stack-use-after-scope on every key of every configuration).
    const YAML::Node key_node = it->first;
    if (!key_node.IsScalar())
      return fail(key_node, fmt::format("keys {} must be plain names", where));
    std::string key = key_node.Scalar();
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      if (where.empty()) {
        return fail(key_node, fmt::format("unknown top-level key '{}'{}; expected one of {}", key,
                                          did_you_mean(key, allowed), join(allowed)));
      }
      return fail(key_node,
                  fmt::format("unknown key '{}' {}{}", key, where, did_you_mean(key, allowed)));
    }
    if (const Entry* earlier = out.get(key)) {
      return fail(key_node,
                  fmt::format("key '{}' appears twice {} (first at line {})", key,
                              where.empty() ? std::string_view("at the top level") : where,
                              earlier->key_node.Mark().line + 1));
    }
    out.entries().push_back(Entry{key, key_node, it->second});
  }
  return out;
}

Result<std::string> Loader::read_string(const Entry& e) const {
  if (!e.value.IsScalar()) {
    return fail(e.value.IsDefined() && !e.value.IsNull() ? e.value : e.key_node,
                fmt::format("'{}' must be a text value", e.key));
  }
  return e.value.Scalar();
}

Result<std::int64_t> Loader::read_integer(const Entry& e, std::int64_t min,
                                          std::int64_t max) const {
  CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_string(e));
  std::string_view t = trim(text);
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || ptr != t.data() + t.size() || t.empty()) {
    return fail(e.value, fmt::format("'{}' must be a whole number; got '{}'", e.key, text));
  }
  if (v < min || v > max) {
    return fail(e.value, fmt::format("'{}' must be between {} and {}; got {}", e.key, min, max, v));
  }
  return v;
}

Result<milliseconds> Loader::read_duration(const Entry& e) const {
  CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_string(e));
  auto d = parse_duration(text);
  if (!d.ok()) {
    return fail(
        e.value,
        fmt::format("'{}' must be a duration like 30s, 15m, 12h, 7d or 0; got '{}'", e.key, text));
  }
  return *d;
}

Result<std::int64_t> Loader::read_size(const Entry& e) const {
  CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_string(e));
  auto s = parse_size(text);
  if (!s.ok()) {
    return fail(e.value, fmt::format("'{}' must be a size like 512, 10KiB, 5MiB or 1GiB; got '{}'",
                                     e.key, text));
  }
  return *s;
}

Result<std::vector<std::string>> Loader::read_string_list(const Entry& e) const {
  std::vector<std::string> out;
  if (e.value.IsNull()) return out;
  if (!e.value.IsSequence()) {
    return fail(e.value, fmt::format("'{}' must be a list, e.g. [a, b]", e.key));
  }
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    YAML::Node item = e.value[i];
    if (!item.IsScalar()) {
      return fail(item, fmt::format("'{}' items must be text values", e.key));
    }
    out.push_back(item.Scalar());
  }
  return out;
}

Result<std::string> Loader::read_choice(const Entry& e,
                                        const std::vector<std::string_view>& choices) const {
  CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_string(e));
  std::string l = ascii_lower(trim(text));
  for (std::string_view c : choices) {
    if (l == c) return l;
  }
  return fail(e.value, fmt::format("'{}' must be one of {}; got '{}'", e.key, join(choices), text));
}

std::string Loader::resolve(const std::string& path) const {
  if (path.empty() || !base_dir_) return path;
  fs::path p(path);
  if (p.is_absolute()) return path;
  return (*base_dir_ / p).lexically_normal().string();
}

Result<bool> Loader::read_bool(const Entry& e) const {
  CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_string(e));
  std::string l = ascii_lower(trim(text));
  if (l == "true" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "no" || l == "off") return false;
  return fail(e.value, fmt::format("'{}' must be true or false; got '{}'", e.key, text));
}

Result<double> Loader::read_number(const Entry& e, double min, double max) const {
  CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_string(e));
  std::string_view t = trim(text);
  double v = 0;
  auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  // from_chars also reads "nan" and "inf", which no setting means (and a NaN passes every
  // range check below).
  if (ec != std::errc() || ptr != t.data() + t.size() || t.empty() || !std::isfinite(v)) {
    return fail(e.value, fmt::format("'{}' must be a number; got '{}'", e.key, text));
  }
  if (v < min || v > max) {
    return fail(e.value, fmt::format("'{}' must be between {} and {}; got {}", e.key, min, max, v));
  }
  return v;
}

Result<std::chrono::seconds> Loader::read_seconds(const Entry& e) const {
  CIVICBUS_ASSIGN_OR_RETURN(auto d, read_duration(e));
  if (d.count() % 1000 != 0) {
    return fail(e.value, fmt::format("'{}' must be whole seconds like 30s or 5m; got '{}'", e.key,
                                     e.value.Scalar()));
  }
  return std::chrono::duration_cast<std::chrono::seconds>(d);
}

Result<std::string> Loader::read_secret(const YAML::Node& value, std::string_view what) const {
  if (!value.IsScalar()) return fail(value, fmt::format("{} must be a text value", what));
  const std::string& text = value.Scalar();
  std::string_view t = trim(text);
  if (!t.starts_with("${") || !t.ends_with("}")) return text;
  std::string_view name = t.substr(2, t.size() - 3);
  bool valid = !name.empty() && !is_digit(name.front());
  for (char c : name) {
    valid = valid && (is_digit(c) || c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'));
  }
  if (!valid) {
    return fail(value, fmt::format("{}: '{}' is not a valid ${{NAME}} reference to an environment "
                                   "variable",
                                   what, text));
  }
  const char* env = std::getenv(std::string(name).c_str());
  if (env == nullptr || *env == '\0') {
    return fail(value,
                fmt::format("{}: environment variable '{}' is not set (or empty)", what, name));
  }
  return std::string(env);
}

Result<SystemTime> Loader::read_time(const Entry& e) const {
  CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_string(e));
  std::string_view t = trim(text);
  if (auto rfc3339 = parse_rfc3339(t); rfc3339.ok()) return *rfc3339;
  if (auto http_date = parse_http_date(t); http_date.ok()) return *http_date;
  return fail(e.value, fmt::format("'{}' must be an RFC 3339 time (2027-07-01T00:00:00Z) or an "
                                   "HTTP-date (Thu, 01 Jul 2027 00:00:00 GMT); got '{}'",
                                   e.key, text));
}

Result<Json> Loader::yaml_to_json(const YAML::Node& node) const {
  if (!node.IsDefined() || node.IsNull()) return Json();
  if (node.IsMap()) {
    Json out = Json::object();
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;
      if (!key.IsScalar()) return fail(key, "JSON object keys must be plain text");
      CIVICBUS_ASSIGN_OR_RETURN(Json value, yaml_to_json(it->second));
      out.set(key.Scalar(), std::move(value));
    }
    return out;
  }
  if (node.IsSequence()) {
    Json out = Json::array();
    for (std::size_t i = 0; i < node.size(); ++i) {
      CIVICBUS_ASSIGN_OR_RETURN(Json value, yaml_to_json(node[i]));
      out.push_back(std::move(value));
    }
    return out;
  }
  // A quoted scalar is text; a plain one is read as YAML 1.2's core schema reads it.
  const std::string& text = node.Scalar();
  if (node.Tag() == "!") return Json(text);
  if (text == "null" || text == "~") return Json();
  if (text == "true") return Json(true);
  if (text == "false") return Json(false);
  std::int64_t i = 0;
  if (auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
      ec == std::errc() && ptr == text.data() + text.size() && !text.empty()) {
    return Json(static_cast<long long>(i));
  }
  double d = 0;
  if (auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
      ec == std::errc() && ptr == text.data() + text.size() && !text.empty()) {
    return Json(d);
  }
  return Json(text);
}

Result<Json> Loader::read_json(const Entry& e) const {
  if (!e.value.IsScalar()) return yaml_to_json(e.value);  // inline; a scalar names a file
  const std::string path = resolve(e.value.Scalar());
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail(e.value, fmt::format("'{}': cannot read JSON file '{}'{}", e.key, e.value.Scalar(),
                                     path != e.value.Scalar() ? " (looked at " + path + ")"
                                                              : std::string()));
  }
  std::ostringstream text;
  text << in.rdbuf();
  auto parsed = Json::parse(text.str());
  if (!parsed.ok()) {
    return fail(e.value, fmt::format("'{}': '{}' is not valid JSON: {}", e.key, e.value.Scalar(),
                                     parsed.status().message()));
  }
  return std::move(parsed).value();
}

Status Loader::expect_list(const YAML::Node& node, std::string_view what,
                           std::string_view item_shape) const {
  if (!node.IsSequence()) {
    return fail(node, fmt::format("{} must be a list of {}", what, item_shape));
  }
  for (std::size_t i = 0; i < node.size(); ++i) {
    if (!node[i].IsMap()) {
      return fail(node[i], fmt::format("{}[{}] must be a mapping with {}", what, i, item_shape));
    }
  }
  return {};
}

Status Loader::load_node(const Entry& e, NodeOptions& out) {
  CIVICBUS_ASSIGN_OR_RETURN(
      Fields f, fields(e.value, "'node'", "in node", {"name", "data_dir", "worker_threads"}));
  if (const Entry* v = f.get("name")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.name, read_string(*v));
    if (trim(out.name).empty()) return fail(v->value, "'name' must not be empty");
  }
  if (const Entry* v = f.get("data_dir")) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string dir, read_string(*v));
    if (trim(dir).empty()) return fail(v->value, "'data_dir' must not be empty");
    out.data_dir = resolve(dir);
  }
  if (const Entry* v = f.get("worker_threads")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 0, 256));
    out.worker_threads = static_cast<std::size_t>(n);
  }
  return {};
}

Status Loader::load_logging(const Entry& e, NodeOptions& out) {
  CIVICBUS_ASSIGN_OR_RETURN(Fields f,
                            fields(e.value, "'logging'", "in logging", {"level", "format"}));
  if (const Entry* v = f.get("level")) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string level,
                              read_choice(*v, {"trace", "debug", "info", "warn", "error", "off"}));
    auto parsed = parse_log_level(level);
    if (!parsed.ok()) return fail(v->value, parsed.status().message());
    out.logging.level = *parsed;
  }
  if (const Entry* v = f.get("format")) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string format, read_choice(*v, {"text", "json"}));
    out.logging.format = format == "json" ? LogFormat::kJson : LogFormat::kText;
  }
  return {};
}

Status Loader::load_security(const Entry& e, NodeOptions& out) {
  CIVICBUS_ASSIGN_OR_RETURN(Fields f, fields(e.value, "'security'", "in security",
                                             {"master_key_env", "master_key_file", "master_key"}));
  if (const Entry* v = f.get("master_key_env")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.master_key_env, read_string(*v));
  }
  if (const Entry* v = f.get("master_key_file")) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string file, read_string(*v));
    out.master_key_file = resolve(file);
  }
  if (const Entry* v = f.get("master_key")) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string mode, read_choice(*v, {"load", "generate"}));
    out.generate_master_key = mode == "generate";
  }
  return {};
}

Status Loader::load_log(const Entry& e, NodeOptions& out) {
  CIVICBUS_ASSIGN_OR_RETURN(
      Fields f, fields(e.value, "'log'", "in log",
                       {"synchronous", "dedup_window_hours", "dedup_max_entries", "max_batch",
                        "max_queued", "append_block_timeout", "cache_records", "cache_bytes"}));
  if (const Entry* v = f.get("synchronous")) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string mode, read_choice(*v, {"full", "normal"}));
    out.log.synchronous_full = mode == "full";
  }
  if (const Entry* v = f.get("dedup_window_hours")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto hours, read_integer(*v, 24, 24 * 366));
    out.log.dedup_window = std::chrono::hours(hours);
  }
  if (const Entry* v = f.get("dedup_max_entries")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 1, std::int64_t{1} << 40));
    out.log.dedup_max_entries = static_cast<std::size_t>(n);
  }
  if (const Entry* v = f.get("max_batch")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 1, 1'000'000));
    out.log.max_batch = static_cast<std::size_t>(n);
  }
  if (const Entry* v = f.get("max_queued")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 1, 100'000'000));
    out.log.max_queued = static_cast<std::size_t>(n);
  }
  if (const Entry* v = f.get("append_block_timeout")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.log.append_block_timeout, read_duration(*v));
  }
  if (const Entry* v = f.get("cache_records")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 0, 100'000'000));
    out.log.cache_records = static_cast<std::size_t>(n);
  }
  if (const Entry* v = f.get("cache_bytes")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto n, read_size(*v));
    out.log.cache_bytes = static_cast<std::size_t>(n);
  }
  return {};
}

Status Loader::load_broker(const Entry& e, NodeOptions& out) {
  CIVICBUS_ASSIGN_OR_RETURN(Fields f, fields(e.value, "'broker'", "in broker",
                                             {"max_event_bytes", "dlq_retention_days",
                                              "maintenance_interval", "node_source"}));
  if (const Entry* v = f.get("max_event_bytes")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto n, read_size(*v));
    if (n < 1024 || n > (std::int64_t{256} << 20)) {
      return fail(v->value, fmt::format("'max_event_bytes' must be between 1KiB and 256MiB; got {}",
                                        format_size(n)));
    }
    out.broker.max_event_bytes = static_cast<std::size_t>(n);
  }
  if (const Entry* v = f.get("dlq_retention_days")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto days, read_integer(*v, 1, 3660));
    out.broker.dlq_retention = std::chrono::hours(24 * days);
  }
  if (const Entry* v = f.get("maintenance_interval")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto d, read_duration(*v));
    if (d < milliseconds(10)) {
      return fail(v->value, "'maintenance_interval' must be at least 10ms");
    }
    out.broker.maintenance_interval = d;
  }
  if (const Entry* v = f.get("node_source")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.broker.node_source, read_string(*v));
  }
  return {};
}

Status Loader::load_topics(const Entry& e, NodeOptions& out) {
  if (e.value.IsNull()) return {};
  if (!e.value.IsSequence()) {
    return fail(e.value,
                "'topics' must be a list of topics (each a mapping with name, owner, ...)");
  }
  std::vector<std::pair<std::string, int>> seen;  // name, line
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    YAML::Node item = e.value[i];
    std::string where = fmt::format("in topics[{}]", i);
    if (!item.IsMap()) {
      return fail(item, fmt::format("topics[{}] must be a mapping with name, owner, ...", i));
    }
    CIVICBUS_ASSIGN_OR_RETURN(
        Fields f, fields(item, fmt::format("topics[{}]", i), where,
                         {"name", "owner", "description", "retention", "retention_bytes",
                          "sensitivity", "pii_fields", "schema_subject"}));
    broker::TopicOptions topic;
    const Entry* name = f.get("name");
    if (name == nullptr) return fail(item, fmt::format("topics[{}] has no 'name'", i));
    CIVICBUS_ASSIGN_OR_RETURN(topic.name, read_string(*name));
    if (Status s = broker::validate_topic_name(topic.name); !s.ok()) {
      return fail(name->value, fmt::format("invalid topic name '{}' in topics[{}]: {}", topic.name,
                                           i, s.message()));
    }
    for (const auto& [other, line] : seen) {
      if (other == topic.name) {
        return fail(name->value, fmt::format("duplicate topic '{}' in topics[{}] (first defined at "
                                             "line {})",
                                             topic.name, i, line));
      }
    }
    seen.emplace_back(topic.name, name->value.Mark().line + 1);

    const Entry* owner = f.get("owner");
    if (owner == nullptr) {
      return fail(item, fmt::format("topic '{}' (topics[{}]) has no 'owner'; every topic needs an "
                                    "owner who answers for it",
                                    topic.name, i));
    }
    CIVICBUS_ASSIGN_OR_RETURN(topic.owner, read_string(*owner));
    if (trim(topic.owner).empty()) {
      return fail(owner->value, fmt::format("'owner' of topic '{}' must not be empty", topic.name));
    }
    if (const Entry* v = f.get("description")) {
      CIVICBUS_ASSIGN_OR_RETURN(topic.description, read_string(*v));
    }
    if (const Entry* v = f.get("retention")) {
      CIVICBUS_ASSIGN_OR_RETURN(auto d, read_duration(*v));
      if (d.count() % 1000 != 0) {
        return fail(v->value,
                    fmt::format("'retention' must be whole seconds; got '{}'", v->value.Scalar()));
      }
      topic.retention = std::chrono::duration_cast<std::chrono::seconds>(d);
    }
    if (const Entry* v = f.get("retention_bytes")) {
      CIVICBUS_ASSIGN_OR_RETURN(topic.retention_bytes, read_size(*v));
    }
    if (const Entry* v = f.get("sensitivity")) {
      CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_string(*v));
      auto s = broker::parse_sensitivity(ascii_lower(trim(text)));
      if (!s.ok()) {
        return fail(v->value, fmt::format("'sensitivity' must be one of public, internal, "
                                          "confidential, restricted; got '{}'",
                                          text));
      }
      topic.sensitivity = *s;
    }
    if (const Entry* v = f.get("pii_fields")) {
      CIVICBUS_ASSIGN_OR_RETURN(topic.pii_fields, read_string_list(*v));
      for (std::size_t j = 0; j < topic.pii_fields.size(); ++j) {
        const std::string& p = topic.pii_fields[j];
        if (p.size() < 2 || p.front() != '/') {
          return fail(v->value[j],
                      fmt::format("'pii_fields' entries must be JSON pointers into the "
                                  "event data like /owner_name; got '{}'",
                                  p));
        }
      }
    }
    if (const Entry* v = f.get("schema_subject")) {
      CIVICBUS_ASSIGN_OR_RETURN(topic.schema_subject, read_string(*v));
    }
    out.topics.push_back(std::move(topic));
  }
  return {};
}

Status Loader::load_schemas(const Entry& e, NodeOptions& out) {
  if (e.value.IsNull()) return {};
  if (!e.value.IsSequence()) {
    return fail(e.value, "'schemas' must be a list of {subject, file, compatibility}");
  }
  std::vector<std::pair<std::string, int>> seen;
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    YAML::Node item = e.value[i];
    std::string where = fmt::format("in schemas[{}]", i);
    if (!item.IsMap()) {
      return fail(item, fmt::format("schemas[{}] must be a mapping with subject, file, "
                                    "compatibility",
                                    i));
    }
    CIVICBUS_ASSIGN_OR_RETURN(Fields f, fields(item, fmt::format("schemas[{}]", i), where,
                                               {"subject", "file", "compatibility"}));
    NodeOptions::SchemaFile schema;
    const Entry* subject = f.get("subject");
    if (subject == nullptr) return fail(item, fmt::format("schemas[{}] has no 'subject'", i));
    CIVICBUS_ASSIGN_OR_RETURN(schema.subject, read_string(*subject));
    if (trim(schema.subject).empty()) return fail(subject->value, "'subject' must not be empty");
    for (const auto& [other, line] : seen) {
      if (other == schema.subject) {
        return fail(subject->value, fmt::format("duplicate schema subject '{}' in schemas[{}] "
                                                "(first defined at line {})",
                                                schema.subject, i, line));
      }
    }
    seen.emplace_back(schema.subject, subject->value.Mark().line + 1);
    const Entry* file = f.get("file");
    if (file == nullptr) {
      return fail(item, fmt::format("schema '{}' (schemas[{}]) has no 'file'", schema.subject, i));
    }
    CIVICBUS_ASSIGN_OR_RETURN(std::string path, read_string(*file));
    schema.path = resolve(path);
    std::error_code ec;
    if (!fs::is_regular_file(schema.path, ec)) {
      return fail(
          file->value,
          fmt::format("schema file '{}' for subject '{}' not found{}", path, schema.subject,
                      schema.path != path ? " (looked at " + schema.path + ")" : std::string()));
    }
    if (const Entry* v = f.get("compatibility")) {
      CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_string(*v));
      if (!parse_schema_compatibility(text).ok()) {
        return fail(v->value, fmt::format("'compatibility' must be one of BACKWARD, FORWARD, FULL, "
                                          "NONE, BACKWARD_TRANSITIVE, FORWARD_TRANSITIVE, "
                                          "FULL_TRANSITIVE; got '{}'",
                                          text));
      }
      schema.compatibility = text;
    }
    out.schemas.push_back(std::move(schema));
  }
  return {};
}

Result<NodeOptions> Loader::load(std::string_view text) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return fail(e.mark, fmt::format("YAML syntax error: {}", e.msg));
  } catch (const std::exception& e) {
    return invalid_argument(fmt::format("{}: cannot read YAML: {}", origin_, e.what()));
  }

  NodeOptions out;
  try {
    if (root.IsDefined() && !root.IsNull() && !root.IsMap()) {
      return fail(root,
                  "the configuration must be a mapping with sections node, logging, "
                  "security, log, broker, topics, schemas, gateway, webhooks, fleet, connectors");
    }
    CIVICBUS_ASSIGN_OR_RETURN(
        Fields f, fields(root, "the configuration", "",
                         {"node", "logging", "security", "log", "broker", "topics", "schemas",
                          "gateway", "webhooks", "fleet", "connectors"}));
    for (const Entry& e : f.entries()) {
      Status s;
      if (e.key == "node") s = load_node(e, out);
      if (e.key == "logging") s = load_logging(e, out);
      if (e.key == "security") s = load_security(e, out);
      if (e.key == "log") s = load_log(e, out);
      if (e.key == "broker") s = load_broker(e, out);
      if (e.key == "topics") s = load_topics(e, out);
      if (e.key == "schemas") s = load_schemas(e, out);
      if (e.key == "gateway") s = load_gateway(e, out);
      if (e.key == "webhooks") s = load_webhooks(e, out);
      if (e.key == "fleet") s = load_fleet(e, out);
      if (e.key == "connectors") s = load_connectors(e, out);
      CIVICBUS_RETURN_IF_ERROR(s);
    }
  } catch (const YAML::Exception& e) {
    return fail(e.mark, e.msg);
  } catch (const std::exception& e) {
    return invalid_argument(fmt::format("{}: {}", origin_, e.what()));
  }
  if (Status s = out.validate(); !s.ok()) return s.with_context(origin_);
  return out;
}

}  // namespace config_detail

using config_detail::is_digit;
using config_detail::Loader;
using config_detail::trim;
namespace fs = std::filesystem;

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  std::string_view t = trim(text);
  auto bad = [&] {
    return invalid_argument(fmt::format(
        "'{}' is not a duration; use a number and a unit (ms, s, m, h, d, w) like 30s, 15m, 12h, "
        "7d or 1h30m, or 0",
        text));
  };
  if (t.empty()) return bad();
  if (t == "0") return std::chrono::milliseconds(0);
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max() / 1000;
  std::int64_t total = 0;
  while (!t.empty()) {
    std::size_t n = 0;
    while (n < t.size() && is_digit(t[n])) ++n;
    if (n == 0) return bad();
    std::int64_t value = 0;
    auto [ptr, ec] = std::from_chars(t.data(), t.data() + n, value);
    if (ec != std::errc()) return bad();
    t.remove_prefix(n);
    std::size_t u = 0;
    while (u < t.size() && !is_digit(t[u])) ++u;
    std::string unit = ascii_lower(t.substr(0, u));
    t.remove_prefix(u);
    std::int64_t scale = 0;
    if (unit == "ms")
      scale = 1;
    else if (unit == "s")
      scale = 1000;
    else if (unit == "m")
      scale = 60'000;
    else if (unit == "h")
      scale = 3'600'000;
    else if (unit == "d")
      scale = 86'400'000;
    else if (unit == "w")
      scale = 7 * 86'400'000LL;
    else
      return bad();
    if (value > kMax / scale || value * scale > kMax - total) {
      return invalid_argument(fmt::format("duration '{}' is too long", text));
    }
    total += value * scale;
  }
  return std::chrono::milliseconds(total);
}

Result<std::int64_t> parse_size(std::string_view text) {
  std::string_view t = trim(text);
  auto bad = [&] {
    return invalid_argument(fmt::format(
        "'{}' is not a size; use a number and an optional unit like 512, 10KiB, 5MiB, 1GiB or 5MB",
        text));
  };
  std::size_t n = 0;
  while (n < t.size() && is_digit(t[n])) ++n;
  if (n == 0) return bad();
  std::int64_t value = 0;
  auto [ptr, ec] = std::from_chars(t.data(), t.data() + n, value);
  if (ec != std::errc()) return bad();
  std::string unit = ascii_lower(trim(t.substr(n)));
  std::int64_t scale = 0;
  if (unit.empty() || unit == "b")
    scale = 1;
  else if (unit == "kib")
    scale = std::int64_t{1} << 10;
  else if (unit == "mib")
    scale = std::int64_t{1} << 20;
  else if (unit == "gib")
    scale = std::int64_t{1} << 30;
  else if (unit == "tib")
    scale = std::int64_t{1} << 40;
  else if (unit == "kb")
    scale = 1000;
  else if (unit == "mb")
    scale = 1000'000;
  else if (unit == "gb")
    scale = 1000'000'000;
  else if (unit == "tb")
    scale = 1000'000'000'000;
  else
    return bad();
  if (value > std::numeric_limits<std::int64_t>::max() / scale) {
    return invalid_argument(fmt::format("size '{}' is too large", text));
  }
  return value * scale;
}

std::string format_duration(std::chrono::milliseconds d) {
  std::int64_t ms = d.count();
  if (ms == 0) return "0";
  struct Unit {
    std::int64_t scale;
    const char* name;
  };
  static constexpr Unit kUnits[] = {
      {86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}};
  for (const Unit& u : kUnits) {
    if (ms % u.scale == 0) return fmt::format("{}{}", ms / u.scale, u.name);
  }
  return fmt::format("{}ms", ms);
}

std::string format_size(std::int64_t bytes) {
  if (bytes == 0) return "0";
  static constexpr std::pair<std::int64_t, const char*> kUnits[] = {
      {std::int64_t{1} << 40, "TiB"}, {1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}};
  for (const auto& [scale, name] : kUnits) {
    if (bytes % scale == 0) return fmt::format("{}{}", bytes / scale, name);
  }
  return fmt::format("{}B", bytes);
}

Result<NodeOptions> NodeOptions::from_yaml(std::string_view text, std::string_view origin) {
  return Loader(origin, std::nullopt).load(text);
}

Result<NodeOptions> NodeOptions::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      return not_found(fmt::format("configuration file '{}' does not exist", path));
    }
    return io_error(fmt::format("cannot read configuration file '{}'", path));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return io_error(fmt::format("cannot read configuration file '{}'", path));
  fs::path base = fs::path(path).parent_path();
  if (base.empty()) base = ".";
  CIVICBUS_ASSIGN_OR_RETURN(NodeOptions options, Loader(path, base).load(text.str()));
  std::error_code ec;
  fs::path absolute = fs::absolute(path, ec);
  options.config_file = ec ? path : absolute.lexically_normal().string();
  return options;
}

Status NodeOptions::validate() const {
  if (trim(name).empty()) return invalid_argument("node name must not be empty");
  if (trim(data_dir).empty()) return invalid_argument("data_dir must not be empty");
  if (worker_threads > 256) {
    return invalid_argument(
        fmt::format("worker_threads must be at most 256; got {}", worker_threads));
  }
  if (!broker.master_key.empty() && broker.master_key.size() != 32) {
    return invalid_argument(
        fmt::format("the master key must be 32 bytes; got {}", broker.master_key.size()));
  }
  if (broker.max_event_bytes < 1024) {
    return invalid_argument("broker max_event_bytes must be at least 1KiB");
  }
  if (broker.dlq_retention.count() <= 0) {
    return invalid_argument("broker dlq_retention must be positive");
  }
  if (broker.maintenance_interval < std::chrono::milliseconds(10)) {
    return invalid_argument("broker maintenance_interval must be at least 10ms");
  }
  if (log.max_batch == 0) return invalid_argument("log max_batch must be at least 1");
  if (log.max_queued == 0) return invalid_argument("log max_queued must be at least 1");
  if (log.dedup_window < std::chrono::hours(24)) {
    return invalid_argument(fmt::format(
        "log dedup window must be at least 24h (duplicates are recognised for a day at least); "
        "got {}h",
        log.dedup_window.count()));
  }
  std::set<std::string, std::less<>> names;
  for (std::size_t i = 0; i < topics.size(); ++i) {
    const broker::TopicOptions& t = topics[i];
    if (Status s = broker::validate_topic_name(t.name); !s.ok()) {
      return s.with_context(fmt::format("topics[{}]", i));
    }
    if (!names.insert(t.name).second) {
      return invalid_argument(fmt::format("duplicate topic '{}' (topics[{}])", t.name, i));
    }
    if (trim(t.owner).empty()) {
      return invalid_argument(
          fmt::format("topic '{}' has no owner; every topic needs one", t.name));
    }
    if (t.retention.count() < 0) {
      return invalid_argument(fmt::format("topic '{}': retention must not be negative", t.name));
    }
    if (t.retention_bytes < 0) {
      return invalid_argument(
          fmt::format("topic '{}': retention_bytes must not be negative", t.name));
    }
    std::set<std::string, std::less<>> pointers;
    for (const std::string& p : t.pii_fields) {
      if (p.size() < 2 || p.front() != '/') {
        return invalid_argument(fmt::format(
            "topic '{}': PII field '{}' must be a JSON pointer like /owner_name", t.name, p));
      }
      if (!pointers.insert(p).second) {
        return invalid_argument(
            fmt::format("topic '{}': PII field '{}' is listed twice", t.name, p));
      }
    }
  }
  std::set<std::string, std::less<>> subjects;
  for (std::size_t i = 0; i < schemas.size(); ++i) {
    const SchemaFile& s = schemas[i];
    if (trim(s.subject).empty()) {
      return invalid_argument(fmt::format("schemas[{}] has no subject", i));
    }
    if (!subjects.insert(s.subject).second) {
      return invalid_argument(
          fmt::format("duplicate schema subject '{}' (schemas[{}])", s.subject, i));
    }
    if (trim(s.path).empty()) {
      return invalid_argument(fmt::format("schema '{}' has no file", s.subject));
    }
    if (!s.compatibility.empty() && !parse_schema_compatibility(s.compatibility).ok()) {
      return invalid_argument(
          fmt::format("schema '{}': unknown compatibility '{}'", s.subject, s.compatibility));
    }
  }
  if (webhooks) {
    std::set<std::string, std::less<>> ids;
    for (std::size_t i = 0; i < webhooks->subscriptions.size(); ++i) {
      const gateway::WebhookOptions& w = webhooks->subscriptions[i];
      CIVICBUS_RETURN_IF_ERROR(w.validate().with_context(fmt::format("webhooks[{}]", i)));
      if (!ids.insert(w.id).second) {
        return invalid_argument(fmt::format("duplicate webhook id '{}' (webhooks[{}])", w.id, i));
      }
      if (w.secret.empty()) {
        return invalid_argument(fmt::format(
            "webhook '{}' has no secret; a node has no one to show a generated secret to, so "
            "give one",
            w.id));
      }
    }
  }
  if (fleet) CIVICBUS_RETURN_IF_ERROR(fleet->validate());
  if (connectors) {
    for (const auto& c : connectors->connections) {
      CIVICBUS_RETURN_IF_ERROR(c.validate().with_context("connectors"));
    }
  }
  return {};
}

}  // namespace civicbus
