// The node.yaml schema (data/node/config_schema.json) against the loader it describes: the YAML
// examples in the docs and every configuration the loader accepts validate against it; typos and
// wrong types are refused by both; each key the schema lists is accepted by the loader with its
// default and examples; and the key lists the loader passes to fields() are the schema's mappings,
// key for key. docs/config-reference.md is generated from the schema (a ctest entry checks it is
// current), so these tests are what keeps the reference true to the code.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/core/json_schema.hpp"
#include "civicbus/node/node.hpp"
#include "node/config_loader.hpp"
#include "support/test_support.hpp"

namespace civicbus {
namespace {

namespace fs = std::filesystem;
using testing::read_file;
using testing::TempDir;
using testing::write_file;

const fs::path kSource = CIVICBUS_SOURCE_DIR;

const Json& schema_document() {
  static const Json doc = [] {
    auto parsed = Json::parse(read_file((kSource / "data/node/config_schema.json").string()));
    REQUIRE_MESSAGE(parsed.ok(), parsed.status().message());
    return *parsed;
  }();
  return doc;
}

const JsonSchema& schema() {
  static const JsonSchema compiled = [] {
    JsonSchema::Options options;
    options.max_errors = 3;
    auto s = JsonSchema::compile(schema_document(), options);
    REQUIRE_MESSAGE(s.ok(), s.status().message());
    return *s;
  }();
  return compiled;
}

// YAML as the loader turns it into JSON (plain scalars typed by YAML 1.2's core schema, quoted ones
// text), which is what a schema-aware editor sees too.
Result<Json> yaml_to_json(std::string_view text) {
  config_detail::Loader loader("<yaml>", std::nullopt);
  return loader.document_to_json(text);
}

// JSON written as YAML flow style (which JSON almost is; spaces after ':' keep every YAML parser
// happy).
void to_yaml(const Json& j, std::string& out) {
  if (j.is_object()) {
    out += '{';
    bool first = true;
    for (const auto& [k, v] : j.as_object()) {
      if (!first) out += ", ";
      first = false;
      out += Json(k).dump();
      out += ": ";
      to_yaml(v, out);
    }
    out += '}';
  } else if (j.is_array()) {
    out += '[';
    for (std::size_t i = 0; i < j.as_array().size(); ++i) {
      if (i > 0) out += ", ";
      to_yaml(j.as_array()[i], out);
    }
    out += ']';
  } else {
    out += j.dump();
  }
}

std::string to_yaml(const Json& j) {
  std::string out;
  to_yaml(j, out);
  return out;
}

std::string schema_errors(const Json& instance) {
  Status s = schema().validate(instance);
  return s.ok() ? std::string() : s.message();
}

// A directory holding the files configurations refer to that the loader opens (schema files must
// exist when the file is loaded).
class ConfigDir {
 public:
  ConfigDir() {
    fs::create_directories(dir_.path() / "schemas");
    write_file(dir_.file("schemas/property_assessment.json"), R"({"type": "object"})");
  }
  // Loads `yaml` as dir/node.yaml.
  Result<NodeOptions> load(std::string_view yaml) const {
    const std::string file = dir_.file("node.yaml");
    write_file(file, yaml);
    return NodeOptions::from_file(file);
  }
  const fs::path& path() const { return dir_.path(); }

 private:
  TempDir dir_;
};

// ---- the YAML blocks of the docs ----------------------------------------------------------------

struct Block {
  std::string where;  // "docs/CONFIG.md:14"
  std::string text;
};

std::vector<Block> yaml_blocks(const std::string& doc) {
  std::vector<Block> out;
  const std::string text = read_file((kSource / doc).string());
  REQUIRE_MESSAGE(!text.empty(), doc, " is missing or empty");
  std::size_t line = 0;
  std::size_t pos = 0;
  bool in_block = false;
  Block block;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view l(text.data() + pos, end - pos);
    ++line;
    if (!in_block && l == "```yaml") {
      in_block = true;
      block = Block{fmt::format("{}:{}", doc, line), ""};
    } else if (in_block && l.starts_with("```")) {
      in_block = false;
      out.push_back(block);
    } else if (in_block) {
      block.text.append(l).push_back('\n');
    }
    pos = end + 1;
  }
  return out;
}

TEST_CASE("node: config schema: the node.yaml examples in the docs validate and load") {
  // The docs write secrets as ${NAME}; one value serves every such field (a webhook secret is also
  // long enough for an API key and an HMAC secret).
  const std::string secret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
  for (const char* name : {"PORTAL_API_KEY", "PORTAL_HMAC_SECRET", "GIS_WEBHOOK_SECRET",
                           "MQTT_PASSWORD", "EDGE_API_KEY"}) {
    ::setenv(name, secret.c_str(), 1);
  }
  ConfigDir dir;
  // The fleet example names a device type file beside the configuration.
  write_file((dir.path() / "device-types.json").string(),
             R"([{"name": "creek_gauge", "metrics": [{"name": "level", "unit": "m"}]}])");

  std::size_t checked = 0;
  for (const char* doc : {"docs/CONFIG.md", "docs/connectors.md", "docs/webhooks.md"}) {
    for (const Block& b : yaml_blocks(doc)) {
      CAPTURE(b.where);
      auto json = yaml_to_json(b.text);
      REQUIRE_MESSAGE(json.ok(), json.status().message());
      CHECK_MESSAGE(schema_errors(*json).empty(), schema_errors(*json));
      auto loaded = dir.load(b.text);
      CHECK_MESSAGE(loaded.ok(), loaded.status().message());
      ++checked;
    }
  }
  CHECK(checked >= 7);
}

// ---- what the loader accepts, the schema accepts --------------------------------------------

TEST_CASE("node: config schema: every configuration the loader accepts validates") {
  std::vector<std::pair<std::string, std::string>> configs;
  // The fuzzer's seed corpus: valid files in every style and invalid ones (those the loader refuses
  // are skipped here).
  for (const auto& entry : fs::directory_iterator(kSource / "tests/fuzz/corpus/node_config")) {
    configs.emplace_back(entry.path().filename().string(), read_file(entry.path().string()));
  }
  // The loader reads each scalar as text, so it takes more than the canonical spellings.
  configs.emplace_back("lenient scalars", R"(
node: {name: 2024, data_dir: 7, worker_threads: '2'}
logging: {level: DEBUG, format: " JSON "}
security: {master_key: Generate}
log: {synchronous: Normal, append_block_timeout: 1h30M, cache_bytes: 64 MiB, max_batch: "100"}
broker: {max_event_bytes: 1048576, maintenance_interval: 250MS, node_source: 12}
topics:
  - {name: permit.issued, owner: 42, retention: 0, retention_bytes: 5GB, sensitivity: PUBLIC}
  - {name: permit.revoked, owner: permits, retention: "0", description: true}
gateway:
  enabled: Yes
  scheme: HTTPS
  listener:
    port: "8080"
    max_body_bytes: 10485760
    tls: {cert_chain_file: a.pem, key_file: a.key, min_version: 1.2, client_auth: NONE}
  upstreams: [{name: u, targets: ["127.0.0.1:1"], balancing: Least_Request, tls: }]
  routes: [{id: r, path: /r, upstream: u, auth: [API_KEY, " jwt "], match: EXACT}]
  oauth: {algorithm: rs256, token_lifetime: 2h}
  load_shedding: {tolerance: "2.5", tier_shares: [1, 0.5]}
webhooks:
  - {id: a, topics: permit.*, url: "https://h.example/x",
     secret: whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=}
fleet: {reading_events: {mode: "OFF"}, api: {auth: [MTLS]}}
connectors:
)");
  configs.emplace_back("list sections left empty", "topics:\nschemas:\ngateway:\nfleet:\n");
  configs.emplace_back("webhooks mapping with no subscriptions", "webhooks: {enabled: off}\n");

  ConfigDir dir;
  std::size_t accepted = 0;
  for (const auto& [name, text] : configs) {
    CAPTURE(name);
    if (!dir.load(text).ok()) continue;
    ++accepted;
    auto json = yaml_to_json(text);
    REQUIRE_MESSAGE(json.ok(), json.status().message());
    CHECK_MESSAGE(schema_errors(*json).empty(), schema_errors(*json));
  }
  // The corpus holds a dozen valid files; the three above must load too.
  CHECK(accepted >= 10);
  for (std::size_t i = configs.size() - 3; i < configs.size(); ++i) {
    auto loaded = dir.load(configs[i].second);
    CHECK_MESSAGE(loaded.ok(), configs[i].first, ": ", loaded.status().message());
  }
}

// ---- typos and wrong types: refused by both -----------------------------------------------------

TEST_CASE(
    "node: config schema: misspelt keys and wrong types are refused by the loader and the schema") {
  const char* const bad[] = {
      // misspelt keys, one per section and depth
      "nodes: {name: x}\n",
      "node: {nmae: x}\n",
      "logging: {levle: info}\n",
      "security: {master_key_evn: X}\n",
      "log: {max_batches: 10}\n",
      "broker: {max_event_byte: 1MiB}\n",
      "topics: [{name: a.b, owner: x, retension: 7d}]\n",
      "schemas: [{subject: s, file: schemas/property_assessment.json, compat: NONE}]\n",
      "gateway: {listner: {port: 1}}\n",
      "gateway: {listener: {tls: {cert_chain_file: a, key_file: b, min_versoin: '1.2'}}}\n",
      "gateway: {upstreams: [{name: u, targets: ['h:1'], activ: {path: /h}}]}\n",
      "gateway: {upstreams: [{name: u, targets: ['h:1'], tls: {verify: false}}]}\n",
      "gateway:\n  upstreams: [{name: u, targets: ['h:1']}]\n  routes: [{id: r, path: /r, "
      "upstream: u, strip_prefx: /a}]\n",
      "gateway:\n  upstreams: [{name: u, targets: ['h:1']}]\n  routes: [{id: r, path: /r, "
      "upstream: u, rate_limit: {rpm: 5}}]\n",
      "gateway: {consumers: [{id: c, hmac: [{keyid: k, secret: s}]}]}\n",
      "gateway: {cors: {portal: {allowed_origin: ['*']}}}\n",
      "gateway: {versions: [{version: v1, sunset: '2027-01-01T00:00:00Z'}]}\n",
      "gateway: {jwt: {jwks: x.json}}\n",
      "gateway: {oauth: {lifetime: 1h}}\n",
      "gateway: {load_shedding: {max: 10}}\n",
      "webhooks: {poll: 1s}\n",
      "webhooks: [{id: a, topics: [x], url: 'https://h/x', secret: s, atempt_timeout: 1s}]\n",
      "webhooks: [{id: a, topics: [x], url: 'https://h/x', secret: s, pause: {cool: 1m}}]\n",
      "fleet: {retention: {raw: 1d, 1w: 2d}}\n",
      "fleet: {mqtt: {server: 'tcp://h:1', pass: x}}\n",
      "fleet: {device_types: [{name: t, metrics: [{name: m, unit: u, maximum: 1}]}]}\n",
      "fleet: {device_types: [{name: t, metrics: [{name: m, unit: u}], interval: 5}]}\n",
      "connectors: {misfire: 1h}\n",
      "connectors: {connections: [{name: c, connector: sqlite, schedul: '@daily'}]}\n",
      // wrong types and values
      "node: [a, b]\n",
      "node: {worker_threads: many}\n",
      "node: {worker_threads: 257}\n",
      "node: {name: [a]}\n",
      "logging: {level: loud}\n",
      "log: {append_block_timeout: 30}\n",
      "log: {cache_bytes: lots}\n",
      "broker: {max_event_bytes: 512}\n",
      "topics: {name: a.b}\n",
      "topics: [{name: a.b, owner: x, retention: 7 days}]\n",
      "topics: [{name: a.b, owner: x, sensitivity: secret}]\n",
      "topics: [{name: Permit Issued, owner: x}]\n",
      "topics: [{name: a.b}]\n",
      "gateway: {enabled: maybe}\n",
      "gateway: {listener: {port: 70000}}\n",
      "gateway: {listener: {tls: {key_file: b}}}\n",
      "gateway: {upstreams: [{name: u, targets: []}]}\n",
      "gateway: {consumers: [{id: 'bad id'}]}\n",
      "gateway: {consumers: [{id: c, api_key_hashes: ['sha256:abc']}]}\n",
      "gateway: {load_shedding: {tier_shares: []}}\n",
      "gateway: {hmac: {clock_skew: 1500ms}}\n",
      "webhooks: {rotation_overlap: 90m}\n",
      "webhooks: [{id: A, topics: [x], url: 'https://h/x', secret: "
      "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}]\n",
      "webhooks: [{id: a, url: 'https://h/x', secret: s}]\n",
      "fleet: {api: {auth: [password]}}\n",
      "fleet: {reading_events: {mode: sometimes}}\n",
      "fleet: {mqtt: {username: x}}\n",
      "connectors: {connections: {name: c}}\n",
      "connectors: {connections: [{name: c, connector: sqlite, write_mode: merge}]}\n",
      "connectors: {connections: [{name: C!, connector: sqlite}]}\n",
  };
  ConfigDir dir;
  for (const char* yaml : bad) {
    CAPTURE(yaml);
    auto loaded = dir.load(yaml);
    CHECK_MESSAGE(!loaded.ok(), "the loader accepted it");
    auto json = yaml_to_json(yaml);
    REQUIRE_MESSAGE(json.ok(), json.status().message());
    CHECK_MESSAGE(!schema().is_valid(*json), "the schema accepted it");
  }
}

// ---- every key of the schema is a key of the loader ---------------------------------------------

// Walks the schema and loads, for every key it lists, a configuration with that key set to its
// default and to each of its examples (the rest minimal: required keys from their examples). Each
// configuration must validate against the schema and load.
class SchemaWalk {
 public:
  using Build = std::function<Json(const Json& value)>;

  explicit SchemaWalk(const ConfigDir& dir) : dir_(dir) {}

  void walk(const Json& s, const Build& build, const std::string& where) {
    const Json& d = resolve(s);
    if (const Json* props = d.find("properties")) {
      const Json base = minimal(s);
      for (const auto& [key, sub] : props->as_object()) {
        const std::string here = where + "." + key;
        auto with = [&, key = key](const Json& value) {
          Json instance = base.is_object() ? base : Json::object();
          instance.set(key, value);
          return build(instance);
        };
        for (const Json& value : candidates(sub)) check(with(value), here + " = " + value.dump());
        keys_.insert(here);
        walk(sub, with, here);
      }
    } else if (const Json* entry = d.find("additionalProperties"); entry && entry->is_object()) {
      // A mapping of named entries (gateway.cors): one entry, named as in the base.
      const Json base = minimal(s);
      std::string name = "example";
      if (base.is_object() && base.size() > 0) name = base.as_object().front().first;
      walk(
          *entry,
          [&](const Json& value) {
            return build(Json::object({{name, value}}));
          },
          where + "." + name);
    }
    if (const Json* items = d.find("items"); items && items->is_object()) {
      walk(
          *items, [&](const Json& value) { return build(Json::array({value})); }, where + "[]");
    }
    if (const Json* any = d.find("anyOf")) {
      for (const Json& branch : any->as_array()) walk(branch, build, where);
    }
  }

  std::size_t configurations() const { return checked_; }
  const std::set<std::string>& keys() const { return keys_; }

 private:
  const Json& resolve(const Json& s) const {
    const Json* d = &s;
    while (const Json* ref = d->find("$ref")) {
      REQUIRE_MESSAGE(ref->as_string().starts_with("#/"), ref->as_string());
      d = schema_document().at_pointer(ref->as_string().substr(1));
      REQUIRE_MESSAGE(d != nullptr, "dangling $ref ", ref->as_string());
    }
    return *d;
  }

  static std::vector<Json> candidates(const Json& s) {
    std::vector<Json> out;
    if (const Json* d = s.find("default")) out.push_back(*d);
    if (const Json* e = s.find("examples")) {
      for (const Json& x : e->as_array()) out.push_back(x);
    }
    return out;
  }

  // The smallest instance worth building on: the first example, else the required keys filled in,
  // else the default.
  Json minimal(const Json& s) const {
    if (const Json* e = s.find("examples")) return e->as_array().front();
    const Json& d = resolve(s);
    if (const Json* e = d.find("examples")) return e->as_array().front();
    if (const Json* props = d.find("properties")) {
      Json out = Json::object();
      if (const Json* required = d.find("required")) {
        for (const Json& k : required->as_array()) {
          const Json* sub = props->find(k.as_string());
          REQUIRE_MESSAGE(sub != nullptr, "required key ", k.as_string(), " is not a property");
          out.set(k.as_string(), minimal(*sub));
        }
      }
      return out;
    }
    if (const Json* def = s.find("default")) return *def;
    if (d.find("items") != nullptr) return Json::array();
    if (const Json* any = d.find("anyOf")) return minimal(any->as_array().front());
    return Json();
  }

  void check(const Json& config, const std::string& where) {
    ++checked_;
    CAPTURE(where);
    const std::string yaml = to_yaml(config);
    CAPTURE(yaml);
    CHECK_MESSAGE(schema_errors(config).empty(), schema_errors(config));
    auto loaded = dir_.load(yaml);
    CHECK_MESSAGE(loaded.ok(), loaded.status().message());
  }

  const ConfigDir& dir_;
  std::size_t checked_ = 0;
  std::set<std::string> keys_;
};

TEST_CASE("node: config schema: each key it lists loads with its default and its examples") {
  ConfigDir dir;
  SchemaWalk walk(dir);
  walk.walk(
      schema_document(), [](const Json& config) { return config; }, "");
  MESSAGE(walk.keys().size(), " keys, ", walk.configurations(), " configurations loaded");
  CHECK(walk.keys().size() > 250);
  for (const char* key :
       {".node.worker_threads", ".gateway.routes[].upstream_format", ".gateway.cors.portal.max_age",
        ".webhooks[].pause.max_cool_off", ".fleet.device_types[].metrics[].unit",
        ".connectors.connections[].resilience.open_for_ms"}) {
    CHECK_MESSAGE(walk.keys().count(key) == 1, key, " was not reached");
  }
}

// ---- every key of the loader is a key of the schema ---------------------------------------------

struct KeyList {
  std::string where;  // file:line
  std::set<std::string> keys;
};

// The brace lists of string literals passed to `call(` in `text` ("fields(e.value, ..., {"name",
// "data_dir"})"), or following `call` when it ends in '=' ("kKeys[] = {...}").
std::vector<KeyList> key_lists(const std::string& file, std::string_view call) {
  const std::string text = read_file((kSource / file).string());
  REQUIRE_MESSAGE(!text.empty(), file, " is missing or empty");
  std::vector<KeyList> out;
  auto is_ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (std::size_t at = text.find(call); at != std::string::npos;
       at = text.find(call, at + call.size())) {
    if (at > 0 && is_ident(text[at - 1])) continue;
    const bool assignment = call.back() == '=';
    int parens = assignment ? 0 : 1;
    std::size_t i = at + call.size();
    std::set<std::string> keys;
    bool in_list = false;
    bool list_ok = true;
    for (; i < text.size(); ++i) {
      const char c = text[i];
      if (c == '"') {  // a string literal: skipped, or collected inside the list
        std::string literal;
        for (++i; i < text.size() && text[i] != '"'; ++i) {
          if (text[i] == '\\') ++i;
          literal += text[i];
        }
        if (in_list) keys.insert(literal);
        continue;
      }
      if (c == '\'') {
        i += text[i + 1] == '\\' ? 3 : 2;
        continue;
      }
      if (in_list) {
        if (c == '}') break;
        if (c != ',' && c != ' ' && c != '\n') list_ok = false;
        continue;
      }
      if (c == '{' && (parens == 1 || assignment)) {
        in_list = true;
        continue;
      }
      if (c == '(') ++parens;
      if (c == ')' && --parens == 0) break;
      if (c == ';') break;
    }
    if (in_list && list_ok && !keys.empty()) {
      const auto line = std::count(text.begin(), text.begin() + static_cast<long>(at), '\n') + 1;
      out.push_back(KeyList{fmt::format("{}:{}", file, line), std::move(keys)});
    }
  }
  return out;
}

// The key sets of the schema's closed mappings (additionalProperties: false), with where.
void schema_mappings(const Json& s, const std::string& where,
                     std::vector<std::pair<std::string, std::set<std::string>>>& out) {
  if (s.is_object()) {
    const Json* props = s.find("properties");
    const Json* extra = s.find("additionalProperties");
    if (props && props->is_object() && extra && extra->is_bool() && !extra->as_bool()) {
      std::set<std::string> keys;
      for (const auto& [k, v] : props->as_object()) keys.insert(k);
      out.emplace_back(where, std::move(keys));
    }
    for (const auto& [k, v] : s.as_object()) {
      if (k == "default" || k == "examples") continue;
      schema_mappings(v, where + "/" + k, out);
    }
  } else if (s.is_array()) {
    for (std::size_t i = 0; i < s.as_array().size(); ++i) {
      schema_mappings(s.as_array()[i], fmt::format("{}/{}", where, i), out);
    }
  }
}

std::string join(const std::set<std::string>& keys) {
  std::string out;
  for (const auto& k : keys) out += (out.empty() ? "" : ", ") + k;
  return out;
}

TEST_CASE("node: config schema: its mappings are the key lists of the loader") {
  std::vector<KeyList> lists;
  for (const char* file :
       {"src/node/config.cpp", "src/node/gateway_config.cpp", "src/node/webhooks_config.cpp",
        "src/node/fleet_config.cpp", "src/node/connectors_config.cpp"}) {
    for (auto& l : key_lists(file, "fields(")) lists.push_back(std::move(l));
  }
  // Connections and device types go through their JSON forms, which refuse unknown keys too.
  for (auto& l : key_lists("src/connect/hub.cpp", "kKeys[] =")) lists.push_back(std::move(l));
  for (auto& l : key_lists("src/connect/hub.cpp", "kResilienceKeys[] =")) {
    lists.push_back(std::move(l));
  }
  for (auto& l : key_lists("src/fleet/device_types.cpp", "check_fields(")) {
    lists.push_back(std::move(l));
  }
  std::vector<std::pair<std::string, std::set<std::string>>> mappings;
  schema_mappings(schema_document(), "#", mappings);
  // The scan must have found every section's list (a change in the loader's style that hides them
  // from it should fail here, not pass vacuously).
  CHECK(lists.size() >= 40);
  CHECK(mappings.size() >= 40);

  for (const KeyList& l : lists) {
    CAPTURE(l.where);
    const auto same = std::find_if(mappings.begin(), mappings.end(),
                                   [&](const auto& m) { return m.second == l.keys; });
    if (same != mappings.end()) continue;
    // Name the closest mapping and the keys that differ.
    std::size_t best = 0;
    std::size_t best_common = 0;
    for (std::size_t i = 0; i < mappings.size(); ++i) {
      std::size_t common = 0;
      for (const auto& k : l.keys) common += mappings[i].second.count(k);
      if (common > best_common) {
        best_common = common;
        best = i;
      }
    }
    std::set<std::string> missing;
    std::set<std::string> extra;
    for (const auto& k : l.keys) {
      if (!mappings[best].second.count(k)) missing.insert(k);
    }
    for (const auto& k : mappings[best].second) {
      if (!l.keys.count(k)) extra.insert(k);
    }
    FAIL_CHECK("the loader's keys {", join(l.keys), "} are no mapping of the schema; closest ",
               mappings[best].first, " lacks {", join(missing), "} and has {", join(extra), "}");
  }
  for (const auto& [where, keys] : mappings) {
    CAPTURE(where);
    const bool found = std::any_of(lists.begin(), lists.end(),
                                   [&, &keys = keys](const KeyList& l) { return l.keys == keys; });
    CHECK_MESSAGE(found, "the schema's mapping {", join(keys), "} is no key list of the loader");
  }
}

}  // namespace
}  // namespace civicbus
