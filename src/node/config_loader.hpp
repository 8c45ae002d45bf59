// The YAML loader behind NodeOptions::from_file / from_yaml, shared by the files that load its
// sections (config.cpp: node, logging, security, log, broker, topics, schemas;
// gateway_config.cpp: gateway; webhooks_config.cpp: webhooks). yaml-cpp appears only in
// src/node; its exceptions never leave Loader::load().
#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/gateway/options.hpp"
#include "civicbus/gateway/webhooks.hpp"
#include "civicbus/node/node.hpp"
#include "core/ascii.hpp"

namespace civicbus::config_detail {

std::string_view trim(std::string_view s);
// " (did you mean 'x'?)" when a candidate is close to `got`, else "".
std::string did_you_mean(std::string_view got, const std::vector<std::string_view>& candidates);
std::string join(const std::vector<std::string_view>& items);

// One key of a YAML mapping with the node of its key (for the line) and its value.
struct Entry {
  std::string key;
  YAML::Node key_node;
  YAML::Node value;
};

class Fields {
 public:
  const Entry* get(std::string_view key) const {
    for (const Entry& e : entries_) {
      if (e.key == key) return &e;
    }
    return nullptr;
  }
  std::vector<Entry>& entries() { return entries_; }

 private:
  std::vector<Entry> entries_;
};

class Loader {
 public:
  Loader(std::string_view origin, std::optional<std::filesystem::path> base_dir)
      : origin_(origin), base_dir_(std::move(base_dir)) {}

  Result<NodeOptions> load(std::string_view text);

 private:
  Status fail(const YAML::Node& at, std::string_view message) const {
    return fail(at.IsDefined() ? at.Mark() : YAML::Mark::null_mark(), message);
  }
  Status fail(const YAML::Mark& mark, std::string_view message) const;

  // `node` must be a mapping (or empty) whose keys are all in `allowed`, each once. `where`
  // completes "unknown key 'x' ..." ("in topics[0]"); `what` names the mapping for type
  // errors ("'logging'").
  Result<Fields> fields(const YAML::Node& node, std::string_view what, std::string_view where,
                        const std::vector<std::string_view>& allowed) const;

  Result<std::string> read_string(const Entry& e) const;
  Result<std::int64_t> read_integer(const Entry& e, std::int64_t min, std::int64_t max) const;
  Result<std::chrono::milliseconds> read_duration(const Entry& e) const;
  Result<std::int64_t> read_size(const Entry& e) const;
  Result<std::vector<std::string>> read_string_list(const Entry& e) const;
  Result<std::string> read_choice(const Entry& e,
                                  const std::vector<std::string_view>& choices) const;
  std::string resolve(const std::string& path) const;

  // Used by the gateway section.
  Result<bool> read_bool(const Entry& e) const;
  Result<double> read_number(const Entry& e, double min, double max) const;
  // A duration in whole seconds ("30s", "5m", "1h").
  Result<std::chrono::seconds> read_seconds(const Entry& e) const;
  // A secret: as written, or "${NAME}" for the value of environment variable NAME (which must
  // be set and non-empty), so the file need not hold it.
  Result<std::string> read_secret(const YAML::Node& value, std::string_view what) const;
  // RFC 3339 ("2027-07-01T00:00:00Z") or an HTTP-date ("Thu, 01 Jul 2027 00:00:00 GMT").
  Result<SystemTime> read_time(const Entry& e) const;
  // A JSON value: an inline YAML mapping/list/scalar, or a string naming a .json file
  // (relative to the configuration's directory).
  Result<Json> read_json(const Entry& e) const;
  Result<Json> yaml_to_json(const YAML::Node& node) const;
  // `node` must be a list of mappings; `what` names it ("'gateway.routes'") for errors.
  Status expect_list(const YAML::Node& node, std::string_view what,
                     std::string_view item_shape) const;

  Status load_node(const Entry& e, NodeOptions& out);
  Status load_logging(const Entry& e, NodeOptions& out);
  Status load_security(const Entry& e, NodeOptions& out);
  Status load_log(const Entry& e, NodeOptions& out);
  Status load_broker(const Entry& e, NodeOptions& out);
  Status load_topics(const Entry& e, NodeOptions& out);
  Status load_schemas(const Entry& e, NodeOptions& out);

  // A list of api_key, jwt, hmac, mtls; `who` names the owner in errors ("route 'x'").
  Result<std::vector<gateway::AuthMethod>> read_auth_methods(const Entry& e,
                                                             std::string_view who) const;

  // fleet_config.cpp
  Status load_fleet(const Entry& e, NodeOptions& out);

  // connectors_config.cpp
  Status load_connectors(const Entry& e, NodeOptions& out);

 public:
  // A whole YAML document as JSON (pipeline files).
  Result<Json> document_to_json(std::string_view text);

 private:
  // gateway_config.cpp
  Status load_gateway(const Entry& e, NodeOptions& out);
  Status load_listener(const Entry& e, http::HttpServerOptions& out) const;
  Status load_upstreams(const Entry& e, gateway::GatewayOptions& out) const;
  Status load_routes(const Entry& e, gateway::GatewayOptions& out) const;
  Status load_consumers(const Entry& e, gateway::GatewayOptions& out) const;
  Status load_cors(const Entry& e, gateway::GatewayOptions& out) const;
  Status load_versions(const Entry& e, gateway::GatewayOptions& out) const;
  Status load_jwt(const Entry& e, gateway::JwtAuthOptions& out) const;
  Status load_oauth(const Entry& e, gateway::TokenEndpointOptions& out) const;
  Status load_load_shedding(const Entry& e, gateway::LoadShedderOptions& out) const;
  Status load_rate_limit(const Entry& e, gateway::RateLimitPolicy& out) const;
  Status load_ip(const Entry& e, gateway::IpAllowlistOptions& out) const;
  Status load_server_tls(const Entry& e, http::TlsServerOptions& out) const;
  Status load_client_tls(const Entry& e, http::TlsClientOptions& out) const;
  Result<http::TlsVersion> read_tls_version(const Entry& e) const;

  // webhooks_config.cpp
  Status load_webhooks(const Entry& e, NodeOptions& out);
  Status load_webhook_subscriptions(const YAML::Node& list, NodeWebhooksOptions& out) const;
  Status load_webhook(const YAML::Node& item, std::size_t index,
                      gateway::WebhookOptions& out) const;

  std::string origin_;
  std::optional<std::filesystem::path> base_dir_;
};

}  // namespace civicbus::config_detail
