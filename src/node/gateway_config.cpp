// The `gateway:` section of the node's YAML: fills gateway::GatewayOptions (docs/CONFIG.md).
// What one field alone decides (types, choices, durations, key hashes, targets) and what the
// section decides by name (duplicate ids, a route's upstream, CORS policy and version) is
// checked here, with the line; the rest (CIDR entries, key files, router conflicts) by
// Gateway::create(), whose errors name the route, upstream or consumer.
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "civicbus/http/client.hpp"
#include "node/config_loader.hpp"

namespace civicbus::config_detail {
namespace {

using gateway::GatewayOptions;

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// "sha256:" and 64 hex digits, as ConsumerOptions::api_key_hashes takes them.
bool is_sha256_hash(std::string_view text) {
  constexpr std::string_view kPrefix = "sha256:";
  if (!text.starts_with(kPrefix) || text.size() != kPrefix.size() + 64) return false;
  return std::all_of(text.begin() + kPrefix.size(), text.end(), is_hex);
}

bool is_method_token(std::string_view m) {
  if (m.empty()) return false;
  return std::all_of(m.begin(), m.end(), [](char c) { return (c >= 'A' && c <= 'Z') || c == '-'; });
}

// Remembers names with their lines to report duplicates.
class Seen {
 public:
  // The line an earlier `name` was defined at, or 0.
  int add(const std::string& name, const YAML::Node& at) {
    for (const auto& [n, line] : names_) {
      if (n == name) return line;
    }
    names_.emplace_back(name, at.Mark().line + 1);
    return 0;
  }

 private:
  std::vector<std::pair<std::string, int>> names_;
};

}  // namespace

Status Loader::load_gateway(const Entry& e, NodeOptions& out) {
  CIVICBUS_ASSIGN_OR_RETURN(
      Fields f, fields(e.value, "'gateway'", "in gateway",
                       {"enabled", "listener", "upstreams", "routes", "consumers", "cors",
                        "versions", "jwt", "oauth", "hmac", "admin", "load_shedding", "access_log",
                        "api_title", "api_version", "scheme"}));
  GatewayOptions g;
  bool enabled = true;
  if (const Entry* v = f.get("enabled")) {
    CIVICBUS_ASSIGN_OR_RETURN(enabled, read_bool(*v));
  }
  if (const Entry* v = f.get("listener")) {
    CIVICBUS_RETURN_IF_ERROR(load_listener(*v, g.listener));
  }
  // Routes refer to upstreams, CORS policies and versions by name: those load first.
  if (const Entry* v = f.get("upstreams")) {
    CIVICBUS_RETURN_IF_ERROR(load_upstreams(*v, g));
  }
  if (const Entry* v = f.get("cors")) {
    CIVICBUS_RETURN_IF_ERROR(load_cors(*v, g));
  }
  if (const Entry* v = f.get("versions")) {
    CIVICBUS_RETURN_IF_ERROR(load_versions(*v, g));
  }
  if (const Entry* v = f.get("routes")) {
    CIVICBUS_RETURN_IF_ERROR(load_routes(*v, g));
  }
  if (const Entry* v = f.get("consumers")) {
    CIVICBUS_RETURN_IF_ERROR(load_consumers(*v, g));
  }
  if (const Entry* v = f.get("jwt")) {
    CIVICBUS_RETURN_IF_ERROR(load_jwt(*v, g.jwt));
  }
  if (const Entry* v = f.get("oauth")) {
    CIVICBUS_RETURN_IF_ERROR(load_oauth(*v, g.oauth));
  }
  if (const Entry* v = f.get("hmac")) {
    CIVICBUS_ASSIGN_OR_RETURN(Fields h, fields(v->value, "'gateway.hmac'", "in gateway.hmac",
                                               {"clock_skew", "replay_cache_capacity"}));
    if (const Entry* x = h.get("clock_skew")) {
      CIVICBUS_ASSIGN_OR_RETURN(g.hmac.clock_skew, read_seconds(*x));
    }
    if (const Entry* x = h.get("replay_cache_capacity")) {
      CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*x, 1, 100'000'000));
      g.hmac.replay_cache_capacity = static_cast<std::size_t>(n);
    }
  }
  if (const Entry* v = f.get("admin")) {
    CIVICBUS_ASSIGN_OR_RETURN(
        Fields a, fields(v->value, "'gateway.admin'", "in gateway.admin", {"enabled", "group"}));
    if (const Entry* x = a.get("enabled")) {
      CIVICBUS_ASSIGN_OR_RETURN(g.admin.enabled, read_bool(*x));
    }
    if (const Entry* x = a.get("group")) {
      CIVICBUS_ASSIGN_OR_RETURN(g.admin.group, read_string(*x));
      if (trim(g.admin.group).empty()) return fail(x->value, "'group' must not be empty");
    }
  }
  if (const Entry* v = f.get("load_shedding")) {
    CIVICBUS_RETURN_IF_ERROR(load_load_shedding(*v, g.load_shedding));
  }
  if (const Entry* v = f.get("access_log")) {
    CIVICBUS_ASSIGN_OR_RETURN(
        Fields a, fields(v->value, "'gateway.access_log'", "in gateway.access_log", {"enabled"}));
    if (const Entry* x = a.get("enabled")) {
      CIVICBUS_ASSIGN_OR_RETURN(g.access_log.enabled, read_bool(*x));
    }
  }
  if (const Entry* v = f.get("api_title")) {
    CIVICBUS_ASSIGN_OR_RETURN(g.api_title, read_string(*v));
  }
  if (const Entry* v = f.get("api_version")) {
    CIVICBUS_ASSIGN_OR_RETURN(g.api_version, read_string(*v));
  }
  if (const Entry* v = f.get("scheme")) {
    CIVICBUS_ASSIGN_OR_RETURN(g.scheme, read_choice(*v, {"http", "https"}));
  }
  // A disabled section is still read whole, so that a typo in it is found before it is enabled.
  if (enabled) {
    out.gateway = std::move(g);
  } else {
    out.gateway.reset();
  }
  return {};
}

Status Loader::load_listener(const Entry& e, http::HttpServerOptions& out) const {
  CIVICBUS_ASSIGN_OR_RETURN(
      Fields f, fields(e.value, "'gateway.listener'", "in gateway.listener",
                       {"bind_address", "port", "threads", "max_header_count", "max_header_bytes",
                        "max_body_bytes", "header_timeout", "body_timeout", "idle_timeout",
                        "max_pipelined_requests", "tls"}));
  if (const Entry* v = f.get("bind_address")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.bind_address, read_string(*v));
    if (trim(out.bind_address).empty()) return fail(v->value, "'bind_address' must not be empty");
  }
  if (const Entry* v = f.get("port")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto port, read_integer(*v, 0, 65535));
    out.port = static_cast<std::uint16_t>(port);
  }
  if (const Entry* v = f.get("threads")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 1, 256));
    out.threads = static_cast<std::size_t>(n);
  }
  if (const Entry* v = f.get("max_header_count")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 1, 10'000));
    out.max_header_count = static_cast<std::size_t>(n);
  }
  for (auto [key, field] : {std::pair{"max_header_bytes", &out.max_header_bytes},
                            std::pair{"max_body_bytes", &out.max_body_bytes}}) {
    if (const Entry* v = f.get(key)) {
      CIVICBUS_ASSIGN_OR_RETURN(auto n, read_size(*v));
      if (n < 1) return fail(v->value, fmt::format("'{}' must be at least 1 byte", key));
      *field = static_cast<std::size_t>(n);
    }
  }
  for (auto [key, field] : {std::pair{"header_timeout", &out.header_timeout},
                            std::pair{"body_timeout", &out.body_timeout},
                            std::pair{"idle_timeout", &out.idle_timeout}}) {
    if (const Entry* v = f.get(key)) {
      CIVICBUS_ASSIGN_OR_RETURN(auto d, read_duration(*v));
      if (d.count() <= 0) return fail(v->value, fmt::format("'{}' must be positive", key));
      *field = d;
    }
  }
  if (const Entry* v = f.get("max_pipelined_requests")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 1, 1024));
    out.max_pipelined_requests = static_cast<std::size_t>(n);
  }
  if (const Entry* v = f.get("tls")) {
    http::TlsServerOptions tls;
    CIVICBUS_RETURN_IF_ERROR(load_server_tls(*v, tls));
    out.tls = std::move(tls);
  }
  return {};
}

Result<http::TlsVersion> Loader::read_tls_version(const Entry& e) const {
  CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_string(e));
  std::string t = ascii_lower(trim(text));
  if (t == "1.2" || t == "tls1.2") return http::TlsVersion::kTls12;
  if (t == "1.3" || t == "tls1.3") return http::TlsVersion::kTls13;
  return fail(e.value, fmt::format("'{}' must be 1.2 or 1.3; got '{}'", e.key, text));
}

Status Loader::load_server_tls(const Entry& e, http::TlsServerOptions& out) const {
  CIVICBUS_ASSIGN_OR_RETURN(
      Fields f, fields(e.value, "'gateway.listener.tls'", "in gateway.listener.tls",
                       {"cert_chain_file", "key_file", "sni_certificates", "client_ca_file",
                        "client_auth", "min_version"}));
  const Entry* cert = f.get("cert_chain_file");
  const Entry* key = f.get("key_file");
  if (cert == nullptr || key == nullptr) {
    return fail(e.value.IsDefined() && !e.value.IsNull() ? e.value : e.key_node,
                "gateway.listener.tls needs cert_chain_file and key_file (PEM)");
  }
  CIVICBUS_ASSIGN_OR_RETURN(std::string cert_file, read_string(*cert));
  CIVICBUS_ASSIGN_OR_RETURN(std::string key_file, read_string(*key));
  out.default_certificate.cert_chain_file = resolve(cert_file);
  out.default_certificate.key_file = resolve(key_file);
  if (const Entry* v = f.get("sni_certificates")) {
    CIVICBUS_RETURN_IF_ERROR(
        expect_list(v->value, "'sni_certificates'", "server_name, cert_chain_file, key_file"));
    for (std::size_t i = 0; i < v->value.size(); ++i) {
      YAML::Node item = v->value[i];
      CIVICBUS_ASSIGN_OR_RETURN(
          Fields sf, fields(item, fmt::format("sni_certificates[{}]", i),
                            fmt::format("in gateway.listener.tls.sni_certificates[{}]", i),
                            {"server_name", "cert_chain_file", "key_file"}));
      http::TlsSniCertificate sni;
      for (auto [name, field] : {std::pair{"server_name", &sni.server_name},
                                 std::pair{"cert_chain_file", &sni.cert_chain_file},
                                 std::pair{"key_file", &sni.key_file}}) {
        const Entry* x = sf.get(name);
        if (x == nullptr) {
          return fail(item, fmt::format("sni_certificates[{}] has no '{}'", i, name));
        }
        CIVICBUS_ASSIGN_OR_RETURN(*field, read_string(*x));
      }
      sni.cert_chain_file = resolve(sni.cert_chain_file);
      sni.key_file = resolve(sni.key_file);
      out.sni_certificates.push_back(std::move(sni));
    }
  }
  if (const Entry* v = f.get("client_ca_file")) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string file, read_string(*v));
    out.client_ca_file = resolve(file);
  }
  if (const Entry* v = f.get("client_auth")) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string mode, read_choice(*v, {"none", "optional", "required"}));
    out.client_auth = mode == "none"       ? http::TlsClientAuth::kNone
                      : mode == "optional" ? http::TlsClientAuth::kOptional
                                           : http::TlsClientAuth::kRequired;
    if (out.client_auth != http::TlsClientAuth::kNone && out.client_ca_file.empty()) {
      return fail(v->value,
                  "client_auth optional or required needs 'client_ca_file' (the CAs "
                  "that issue client certificates)");
    }
  }
  if (const Entry* v = f.get("min_version")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.min_version, read_tls_version(*v));
  }
  return {};
}

Status Loader::load_client_tls(const Entry& e, http::TlsClientOptions& out) const {
  CIVICBUS_ASSIGN_OR_RETURN(Fields f,
                            fields(e.value, "'tls'", "in tls",
                                   {"ca_file", "verify_peer", "server_name", "client_cert_file",
                                    "client_key_file", "min_version"}));
  for (auto [name, field] :
       {std::pair{"ca_file", &out.ca_file}, std::pair{"client_cert_file", &out.client_cert_file},
        std::pair{"client_key_file", &out.client_key_file}}) {
    if (const Entry* v = f.get(name)) {
      CIVICBUS_ASSIGN_OR_RETURN(std::string file, read_string(*v));
      *field = resolve(file);
    }
  }
  if (out.client_cert_file.empty() != out.client_key_file.empty()) {
    return fail(e.value, "tls: client_cert_file and client_key_file go together");
  }
  if (const Entry* v = f.get("verify_peer")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.verify_peer, read_bool(*v));
  }
  if (const Entry* v = f.get("server_name")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.server_name, read_string(*v));
  }
  if (const Entry* v = f.get("min_version")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.min_version, read_tls_version(*v));
  }
  return {};
}

Status Loader::load_rate_limit(const Entry& e, gateway::RateLimitPolicy& out) const {
  CIVICBUS_ASSIGN_OR_RETURN(Fields f, fields(e.value, "'rate_limit'", "in rate_limit",
                                             {"requests_per_minute", "burst", "requests_per_day"}));
  for (auto [key, field] :
       {std::pair{"requests_per_minute", &out.requests_per_minute}, std::pair{"burst", &out.burst},
        std::pair{"requests_per_day", &out.requests_per_day}}) {
    if (const Entry* v = f.get(key)) {
      CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 0, 1'000'000'000));
      *field = static_cast<std::uint32_t>(n);
    }
  }
  return {};
}

Status Loader::load_ip(const Entry& e, gateway::IpAllowlistOptions& out) const {
  CIVICBUS_ASSIGN_OR_RETURN(Fields f, fields(e.value, "'ip'", "in ip", {"allow", "deny"}));
  if (const Entry* v = f.get("allow")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.allow, read_string_list(*v));
  }
  if (const Entry* v = f.get("deny")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.deny, read_string_list(*v));
  }
  return {};
}

Status Loader::load_upstreams(const Entry& e, GatewayOptions& out) const {
  if (e.value.IsNull()) return {};
  CIVICBUS_RETURN_IF_ERROR(
      expect_list(e.value, "'gateway.upstreams'", "name, targets, ... (see docs/CONFIG.md)"));
  Seen seen;
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    YAML::Node item = e.value[i];
    const std::string where = fmt::format("in gateway.upstreams[{}]", i);
    CIVICBUS_ASSIGN_OR_RETURN(
        Fields f, fields(item, fmt::format("gateway.upstreams[{}]", i), where,
                         {"name", "targets", "balancing", "active", "passive",
                          "max_concurrent_requests", "connect_timeout", "request_timeout",
                          "retries", "max_connections_per_target", "tls"}));
    gateway::UpstreamOptions u;
    const Entry* name = f.get("name");
    if (name == nullptr) return fail(item, fmt::format("gateway.upstreams[{}] has no 'name'", i));
    CIVICBUS_ASSIGN_OR_RETURN(u.name, read_string(*name));
    if (trim(u.name).empty()) return fail(name->value, "'name' must not be empty");
    if (int line = seen.add(u.name, name->value)) {
      return fail(name->value, fmt::format("duplicate upstream '{}' in gateway.upstreams[{}] "
                                           "(first defined at line {})",
                                           u.name, i, line));
    }
    const Entry* targets = f.get("targets");
    if (targets == nullptr) {
      return fail(item,
                  fmt::format("upstream '{}' has no 'targets' (a list of \"host:port\")", u.name));
    }
    CIVICBUS_ASSIGN_OR_RETURN(u.targets, read_string_list(*targets));
    if (u.targets.empty()) {
      return fail(targets->value, fmt::format("upstream '{}': 'targets' must list at least one "
                                              "\"host:port\"",
                                              u.name));
    }
    for (std::size_t t = 0; t < u.targets.size(); ++t) {
      if (auto parsed = http::Upstream::parse(u.targets[t]); !parsed.ok()) {
        return fail(targets->value[t],
                    fmt::format("upstream '{}': target '{}' is not \"host:port\": {}", u.name,
                                u.targets[t], parsed.status().message()));
      }
    }
    if (const Entry* v = f.get("balancing")) {
      CIVICBUS_ASSIGN_OR_RETURN(std::string b, read_choice(*v, {"round_robin", "least_request"}));
      u.balancing = b == "least_request" ? gateway::Balancing::kLeastRequest
                                         : gateway::Balancing::kRoundRobin;
    }
    if (const Entry* v = f.get("active")) {
      CIVICBUS_ASSIGN_OR_RETURN(Fields a, fields(v->value, "'active'", where + ".active",
                                                 {"path", "interval", "timeout",
                                                  "healthy_threshold", "unhealthy_threshold"}));
      if (const Entry* x = a.get("path")) {
        CIVICBUS_ASSIGN_OR_RETURN(u.active.path, read_string(*x));
        if (!u.active.path.starts_with('/')) {
          return fail(x->value, fmt::format("'path' must start with '/'; got '{}'", u.active.path));
        }
      }
      for (auto [key, field] :
           {std::pair{"interval", &u.active.interval}, std::pair{"timeout", &u.active.timeout}}) {
        if (const Entry* x = a.get(key)) {
          CIVICBUS_ASSIGN_OR_RETURN(auto d, read_duration(*x));
          if (d.count() <= 0) return fail(x->value, fmt::format("'{}' must be positive", key));
          *field = d;
        }
      }
      for (auto [key, field] : {std::pair{"healthy_threshold", &u.active.healthy_threshold},
                                std::pair{"unhealthy_threshold", &u.active.unhealthy_threshold}}) {
        if (const Entry* x = a.get(key)) {
          CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*x, 1, 1000));
          *field = static_cast<std::uint32_t>(n);
        }
      }
    }
    if (const Entry* v = f.get("passive")) {
      CIVICBUS_ASSIGN_OR_RETURN(Fields p, fields(v->value, "'passive'", where + ".passive",
                                                 {"consecutive_failures", "open_duration"}));
      if (const Entry* x = p.get("consecutive_failures")) {
        CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*x, 0, 1'000'000));
        u.passive.consecutive_failures = static_cast<std::uint32_t>(n);
      }
      if (const Entry* x = p.get("open_duration")) {
        CIVICBUS_ASSIGN_OR_RETURN(u.passive.open_duration, read_duration(*x));
      }
    }
    if (const Entry* v = f.get("max_concurrent_requests")) {
      CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 0, 10'000'000));
      u.max_concurrent_requests = static_cast<std::uint32_t>(n);
    }
    for (auto [key, field] : {std::pair{"connect_timeout", &u.connect_timeout},
                              std::pair{"request_timeout", &u.request_timeout}}) {
      if (const Entry* v = f.get(key)) {
        CIVICBUS_ASSIGN_OR_RETURN(auto d, read_duration(*v));
        if (d.count() <= 0) return fail(v->value, fmt::format("'{}' must be positive", key));
        *field = d;
      }
    }
    if (const Entry* v = f.get("retries")) {
      CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 0, 10));
      u.retries = static_cast<std::uint32_t>(n);
    }
    if (const Entry* v = f.get("max_connections_per_target")) {
      CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 1, 100'000));
      u.max_connections_per_target = static_cast<std::size_t>(n);
    }
    if (const Entry* v = f.get("tls")) {
      http::TlsClientOptions tls;  // `tls: {}` is https with the system's CAs
      CIVICBUS_RETURN_IF_ERROR(load_client_tls(*v, tls));
      u.tls = std::move(tls);
    }
    out.upstreams.push_back(std::move(u));
  }
  return {};
}

Status Loader::load_routes(const Entry& e, GatewayOptions& out) const {
  if (e.value.IsNull()) return {};
  CIVICBUS_RETURN_IF_ERROR(
      expect_list(e.value, "'gateway.routes'", "id, path, upstream, ... (see docs/CONFIG.md)"));
  Seen seen;
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    YAML::Node item = e.value[i];
    const std::string where = fmt::format("in gateway.routes[{}]", i);
    CIVICBUS_ASSIGN_OR_RETURN(
        Fields f,
        fields(item, fmt::format("gateway.routes[{}]", i), where,
               {"id", "method", "host", "match", "path", "upstream", "strip_prefix",
                "upstream_prefix", "auth", "groups", "rate_limit", "ip", "cors", "version",
                "upstream_format", "summary", "tags", "request_schema", "response_schema"}));
    gateway::RouteOptions r;
    const Entry* id = f.get("id");
    if (id == nullptr) return fail(item, fmt::format("gateway.routes[{}] has no 'id'", i));
    CIVICBUS_ASSIGN_OR_RETURN(r.id, read_string(*id));
    if (trim(r.id).empty()) return fail(id->value, "'id' must not be empty");
    if (r.id.starts_with("gateway.")) {
      return fail(id->value,
                  fmt::format("route id '{}': ids starting with 'gateway.' are reserved for the "
                              "gateway's own routes",
                              r.id));
    }
    if (int line = seen.add(r.id, id->value)) {
      return fail(id->value, fmt::format("duplicate route id '{}' in gateway.routes[{}] (first "
                                         "defined at line {})",
                                         r.id, i, line));
    }
    if (const Entry* v = f.get("method")) {
      CIVICBUS_ASSIGN_OR_RETURN(r.method, read_string(*v));
      if (r.method != "*" && !r.method.empty() && !is_method_token(r.method)) {
        return fail(v->value, fmt::format("route '{}': 'method' must be an upper-case method like "
                                          "GET or POST, or * for any; got '{}'",
                                          r.id, r.method));
      }
    }
    if (const Entry* v = f.get("host")) {
      CIVICBUS_ASSIGN_OR_RETURN(r.host, read_string(*v));
    }
    if (const Entry* v = f.get("match")) {
      CIVICBUS_ASSIGN_OR_RETURN(std::string m, read_choice(*v, {"exact", "prefix", "template"}));
      r.match = m == "exact"    ? gateway::PathKind::kExact
                : m == "prefix" ? gateway::PathKind::kPrefix
                                : gateway::PathKind::kTemplate;
    }
    const Entry* path = f.get("path");
    if (path == nullptr) return fail(item, fmt::format("route '{}' has no 'path'", r.id));
    CIVICBUS_ASSIGN_OR_RETURN(r.path, read_string(*path));
    if (!r.path.starts_with('/')) {
      return fail(path->value,
                  fmt::format("route '{}': 'path' must start with '/'; got '{}'", r.id, r.path));
    }
    if (r.match == gateway::PathKind::kTemplate && r.path.find('{') == std::string::npos) {
      return fail(path->value, fmt::format("route '{}': a template path needs a parameter like "
                                           "/permits/{{id}}; got '{}' (use match: exact)",
                                           r.id, r.path));
    }
    const Entry* upstream = f.get("upstream");
    if (upstream == nullptr) {
      return fail(item, fmt::format("route '{}' has no 'upstream' (routes served in this process "
                                    "are added in code with Gateway::add_route)",
                                    r.id));
    }
    CIVICBUS_ASSIGN_OR_RETURN(r.upstream, read_string(*upstream));
    if (std::none_of(out.upstreams.begin(), out.upstreams.end(),
                     [&](const auto& u) { return u.name == r.upstream; })) {
      std::vector<std::string_view> names;
      for (const auto& u : out.upstreams) names.push_back(u.name);
      return fail(upstream->value,
                  fmt::format("route '{}': no upstream '{}' in gateway.upstreams{}", r.id,
                              r.upstream, did_you_mean(r.upstream, names)));
    }
    for (auto [key, field] : {std::pair{"strip_prefix", &r.strip_prefix},
                              std::pair{"upstream_prefix", &r.upstream_prefix}}) {
      if (const Entry* v = f.get(key)) {
        CIVICBUS_ASSIGN_OR_RETURN(*field, read_string(*v));
        if (!field->empty() && !field->starts_with('/')) {
          return fail(v->value, fmt::format("route '{}': '{}' must start with '/'; got '{}'", r.id,
                                            key, *field));
        }
      }
    }
    if (const Entry* v = f.get("auth")) {
      CIVICBUS_ASSIGN_OR_RETURN(r.auth, read_auth_methods(*v, fmt::format("route '{}'", r.id)));
    }
    if (const Entry* v = f.get("groups")) {
      CIVICBUS_ASSIGN_OR_RETURN(r.groups, read_string_list(*v));
      if (!r.groups.empty() && r.auth.empty()) {
        return fail(v->value, fmt::format("route '{}': 'groups' needs 'auth' (a public route has "
                                          "no consumer to check)",
                                          r.id));
      }
    }
    if (const Entry* v = f.get("rate_limit")) {
      CIVICBUS_RETURN_IF_ERROR(load_rate_limit(*v, r.rate_limit));
    }
    if (const Entry* v = f.get("ip")) {
      CIVICBUS_RETURN_IF_ERROR(load_ip(*v, r.ip));
    }
    if (const Entry* v = f.get("cors")) {
      CIVICBUS_ASSIGN_OR_RETURN(r.cors, read_string(*v));
      if (!r.cors.empty() && !out.cors.contains(r.cors)) {
        std::vector<std::string_view> names;
        for (const auto& [n, c] : out.cors) names.push_back(n);
        return fail(v->value, fmt::format("route '{}': no CORS policy '{}' in gateway.cors{}", r.id,
                                          r.cors, did_you_mean(r.cors, names)));
      }
    }
    if (const Entry* v = f.get("version")) {
      CIVICBUS_ASSIGN_OR_RETURN(r.version, read_string(*v));
      if (!r.version.empty() &&
          std::none_of(out.versions.begin(), out.versions.end(),
                       [&](const auto& ver) { return ver.version == r.version; })) {
        std::vector<std::string_view> names;
        for (const auto& ver : out.versions) names.push_back(ver.version);
        return fail(v->value, fmt::format("route '{}': no API version '{}' in gateway.versions{}",
                                          r.id, r.version, did_you_mean(r.version, names)));
      }
    }
    if (const Entry* v = f.get("upstream_format")) {
      CIVICBUS_ASSIGN_OR_RETURN(std::string fmt_name, read_choice(*v, {"json", "xml", "csv"}));
      r.upstream_format = fmt_name == "json"  ? gateway::BodyFormat::kJson
                          : fmt_name == "xml" ? gateway::BodyFormat::kXml
                                              : gateway::BodyFormat::kCsv;
    }
    if (const Entry* v = f.get("summary")) {
      CIVICBUS_ASSIGN_OR_RETURN(r.summary, read_string(*v));
    }
    if (const Entry* v = f.get("tags")) {
      CIVICBUS_ASSIGN_OR_RETURN(r.tags, read_string_list(*v));
    }
    if (const Entry* v = f.get("request_schema")) {
      CIVICBUS_ASSIGN_OR_RETURN(r.request_schema, read_json(*v));
    }
    if (const Entry* v = f.get("response_schema")) {
      CIVICBUS_ASSIGN_OR_RETURN(r.response_schema, read_json(*v));
    }
    out.routes.push_back(std::move(r));
  }
  return {};
}

Status Loader::load_consumers(const Entry& e, GatewayOptions& out) const {
  if (e.value.IsNull()) return {};
  CIVICBUS_RETURN_IF_ERROR(expect_list(e.value, "'gateway.consumers'",
                                       "id, groups, api_keys, ... (see docs/CONFIG.md)"));
  Seen seen;
  Seen key_ids;
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    YAML::Node item = e.value[i];
    const std::string where = fmt::format("in gateway.consumers[{}]", i);
    CIVICBUS_ASSIGN_OR_RETURN(
        Fields f, fields(item, fmt::format("gateway.consumers[{}]", i), where,
                         {"id", "groups", "api_keys", "api_key_hashes", "hmac", "client_id",
                          "client_secret", "jwt_subject", "certificate_fingerprints",
                          "certificate_uris", "rate_limit", "ip", "priority_tier"}));
    gateway::ConsumerOptions c;
    const Entry* id = f.get("id");
    if (id == nullptr) return fail(item, fmt::format("gateway.consumers[{}] has no 'id'", i));
    CIVICBUS_ASSIGN_OR_RETURN(c.id, read_string(*id));
    const bool id_ok =
        !c.id.empty() && c.id.size() <= 128 && std::all_of(c.id.begin(), c.id.end(), [](char ch) {
          return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '_' || ch == '-';
        });
    if (!id_ok) {
      return fail(id->value, fmt::format("consumer id '{}' must be 1 to 128 characters of "
                                         "A-Z a-z 0-9 . _ -",
                                         c.id));
    }
    if (int line = seen.add(c.id, id->value)) {
      return fail(id->value, fmt::format("duplicate consumer '{}' in gateway.consumers[{}] (first "
                                         "defined at line {})",
                                         c.id, i, line));
    }
    if (const Entry* v = f.get("groups")) {
      CIVICBUS_ASSIGN_OR_RETURN(c.groups, read_string_list(*v));
    }
    if (const Entry* v = f.get("api_keys")) {
      if (!v->value.IsSequence()) {
        return fail(v->value, "'api_keys' must be a list, e.g. [\"${PORTAL_API_KEY}\"]");
      }
      for (std::size_t j = 0; j < v->value.size(); ++j) {
        CIVICBUS_ASSIGN_OR_RETURN(
            std::string key,
            read_secret(v->value[j], fmt::format("consumer '{}': api_keys[{}]", c.id, j)));
        if (key.size() < 16) {
          return fail(v->value[j], fmt::format("consumer '{}': api_keys[{}] is shorter than 16 "
                                               "characters; use a long random key",
                                               c.id, j));
        }
        c.api_keys.push_back(std::move(key));
      }
    }
    if (const Entry* v = f.get("api_key_hashes")) {
      CIVICBUS_ASSIGN_OR_RETURN(c.api_key_hashes, read_string_list(*v));
      for (std::size_t j = 0; j < c.api_key_hashes.size(); ++j) {
        if (!is_sha256_hash(c.api_key_hashes[j])) {
          return fail(v->value[j],
                      fmt::format("consumer '{}': api_key_hashes[{}] must be 'sha256:' followed "
                                  "by 64 hex digits (printf %s KEY | sha256sum); got '{}'",
                                  c.id, j, c.api_key_hashes[j]));
        }
      }
    }
    if (const Entry* v = f.get("hmac")) {
      CIVICBUS_RETURN_IF_ERROR(expect_list(v->value, "'hmac'", "key_id and secret"));
      for (std::size_t j = 0; j < v->value.size(); ++j) {
        YAML::Node h = v->value[j];
        CIVICBUS_ASSIGN_OR_RETURN(
            Fields hf, fields(h, fmt::format("hmac[{}]", j), fmt::format("{}.hmac[{}]", where, j),
                              {"key_id", "secret"}));
        gateway::HmacCredential cred;
        const Entry* key_id = hf.get("key_id");
        const Entry* secret = hf.get("secret");
        if (key_id == nullptr || secret == nullptr) {
          return fail(h, fmt::format("consumer '{}': hmac[{}] needs key_id and secret", c.id, j));
        }
        CIVICBUS_ASSIGN_OR_RETURN(cred.key_id, read_string(*key_id));
        if (trim(cred.key_id).empty()) return fail(key_id->value, "'key_id' must not be empty");
        if (int line = key_ids.add(cred.key_id, key_id->value)) {
          return fail(key_id->value, fmt::format("hmac key_id '{}' is already used at line {}; "
                                                 "key ids name one secret across all consumers",
                                                 cred.key_id, line));
        }
        CIVICBUS_ASSIGN_OR_RETURN(
            cred.secret,
            read_secret(secret->value, fmt::format("consumer '{}': hmac[{}].secret", c.id, j)));
        if (cred.secret.size() < 32) {
          return fail(secret->value, fmt::format("consumer '{}': hmac secret '{}' must be at "
                                                 "least 32 bytes",
                                                 c.id, cred.key_id));
        }
        c.hmac.push_back(std::move(cred));
      }
    }
    if (const Entry* v = f.get("client_id")) {
      CIVICBUS_ASSIGN_OR_RETURN(c.client_id, read_string(*v));
    }
    if (const Entry* v = f.get("client_secret")) {
      CIVICBUS_ASSIGN_OR_RETURN(
          c.client_secret,
          read_secret(v->value, fmt::format("consumer '{}': client_secret", c.id)));
      if (c.client_secret.starts_with("sha256:") && !is_sha256_hash(c.client_secret)) {
        return fail(v->value, fmt::format("consumer '{}': a hashed client_secret must be "
                                          "'sha256:' followed by 64 hex digits",
                                          c.id));
      }
    }
    if (c.client_id.empty() != c.client_secret.empty()) {
      return fail(item,
                  fmt::format("consumer '{}': client_id and client_secret go together", c.id));
    }
    if (const Entry* v = f.get("jwt_subject")) {
      CIVICBUS_ASSIGN_OR_RETURN(c.jwt_subject, read_string(*v));
    }
    if (const Entry* v = f.get("certificate_fingerprints")) {
      CIVICBUS_ASSIGN_OR_RETURN(c.certificate_fingerprints, read_string_list(*v));
      for (std::size_t j = 0; j < c.certificate_fingerprints.size(); ++j) {
        const std::string& fp = c.certificate_fingerprints[j];
        if (http::normalize_fingerprint(fp).size() != 64 ||
            !std::all_of(fp.begin(), fp.end(), [](char ch) { return is_hex(ch) || ch == ':'; })) {
          return fail(v->value[j], fmt::format("consumer '{}': certificate_fingerprints[{}] must "
                                               "be a SHA-256 fingerprint (64 hex digits, colons "
                                               "allowed); got '{}'",
                                               c.id, j, c.certificate_fingerprints[j]));
        }
      }
    }
    if (const Entry* v = f.get("certificate_uris")) {
      CIVICBUS_ASSIGN_OR_RETURN(c.certificate_uris, read_string_list(*v));
    }
    if (const Entry* v = f.get("rate_limit")) {
      CIVICBUS_RETURN_IF_ERROR(load_rate_limit(*v, c.rate_limit));
    }
    if (const Entry* v = f.get("ip")) {
      CIVICBUS_RETURN_IF_ERROR(load_ip(*v, c.ip));
    }
    if (const Entry* v = f.get("priority_tier")) {
      CIVICBUS_ASSIGN_OR_RETURN(auto tier, read_integer(*v, 0, 2));
      c.priority_tier = static_cast<std::uint32_t>(tier);
    }
    out.consumers.push_back(std::move(c));
  }
  return {};
}

Status Loader::load_cors(const Entry& e, GatewayOptions& out) const {
  if (e.value.IsNull()) return {};
  if (!e.value.IsMap()) {
    return fail(e.value,
                "'gateway.cors' must map policy names to policies, e.g. "
                "{portal: {allowed_origins: [https://portal.example.ca]}}");
  }
  for (auto it = e.value.begin(); it != e.value.end(); ++it) {
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar() || trim(key.Scalar()).empty()) {
      return fail(key, "CORS policy names must be plain, non-empty names");
    }
    const std::string name = key.Scalar();
    if (out.cors.contains(name)) {
      return fail(key, fmt::format("CORS policy '{}' is defined twice", name));
    }
    CIVICBUS_ASSIGN_OR_RETURN(Fields f,
                              fields(value, fmt::format("CORS policy '{}'", name),
                                     fmt::format("in gateway.cors.{}", name),
                                     {"allowed_origins", "allowed_methods", "allowed_headers",
                                      "exposed_headers", "allow_credentials", "max_age"}));
    gateway::CorsOptions c;
    const Entry* origins = f.get("allowed_origins");
    if (origins == nullptr) {
      return fail(key, fmt::format("CORS policy '{}' has no 'allowed_origins'", name));
    }
    CIVICBUS_ASSIGN_OR_RETURN(c.allowed_origins, read_string_list(*origins));
    if (const Entry* v = f.get("allowed_methods")) {
      CIVICBUS_ASSIGN_OR_RETURN(c.allowed_methods, read_string_list(*v));
    }
    if (const Entry* v = f.get("allowed_headers")) {
      CIVICBUS_ASSIGN_OR_RETURN(c.allowed_headers, read_string_list(*v));
    }
    if (const Entry* v = f.get("exposed_headers")) {
      CIVICBUS_ASSIGN_OR_RETURN(c.exposed_headers, read_string_list(*v));
    }
    if (const Entry* v = f.get("allow_credentials")) {
      CIVICBUS_ASSIGN_OR_RETURN(c.allow_credentials, read_bool(*v));
    }
    if (const Entry* v = f.get("max_age")) {
      CIVICBUS_ASSIGN_OR_RETURN(c.max_age, read_seconds(*v));
    }
    out.cors.emplace(name, std::move(c));
  }
  return {};
}

Status Loader::load_versions(const Entry& e, GatewayOptions& out) const {
  if (e.value.IsNull()) return {};
  CIVICBUS_RETURN_IF_ERROR(expect_list(e.value, "'gateway.versions'",
                                       "version, deprecated_at, sunset_at, successor_url"));
  Seen seen;
  for (std::size_t i = 0; i < e.value.size(); ++i) {
    YAML::Node item = e.value[i];
    CIVICBUS_ASSIGN_OR_RETURN(Fields f, fields(item, fmt::format("gateway.versions[{}]", i),
                                               fmt::format("in gateway.versions[{}]", i),
                                               {"version", "deprecated_at", "sunset_at",
                                                "successor_url", "deprecation_doc_url"}));
    gateway::ApiVersionOptions v;
    const Entry* version = f.get("version");
    if (version == nullptr) {
      return fail(item, fmt::format("gateway.versions[{}] has no 'version'", i));
    }
    CIVICBUS_ASSIGN_OR_RETURN(v.version, read_string(*version));
    if (trim(v.version).empty()) return fail(version->value, "'version' must not be empty");
    if (int line = seen.add(v.version, version->value)) {
      return fail(
          version->value,
          fmt::format("API version '{}' is defined twice (first at line {})", v.version, line));
    }
    if (const Entry* x = f.get("deprecated_at")) {
      CIVICBUS_ASSIGN_OR_RETURN(v.deprecated_at, read_time(*x));
    }
    if (const Entry* x = f.get("sunset_at")) {
      CIVICBUS_ASSIGN_OR_RETURN(v.sunset_at, read_time(*x));
      if (v.deprecated_at && *v.sunset_at < *v.deprecated_at) {
        return fail(x->value, fmt::format("API version '{}': 'sunset_at' must not be before "
                                          "'deprecated_at'",
                                          v.version));
      }
    }
    if (const Entry* x = f.get("successor_url")) {
      CIVICBUS_ASSIGN_OR_RETURN(v.successor_url, read_string(*x));
    }
    if (const Entry* x = f.get("deprecation_doc_url")) {
      CIVICBUS_ASSIGN_OR_RETURN(v.deprecation_doc_url, read_string(*x));
    }
    out.versions.push_back(std::move(v));
  }
  return {};
}

Status Loader::load_jwt(const Entry& e, gateway::JwtAuthOptions& out) const {
  CIVICBUS_ASSIGN_OR_RETURN(
      Fields f, fields(e.value, "'gateway.jwt'", "in gateway.jwt",
                       {"jwks_file", "jwks_url", "jwks_ca_file", "refresh_min_interval", "issuer",
                        "audiences", "leeway", "consumer_claim"}));
  if (const Entry* v = f.get("jwks_file")) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string file, read_string(*v));
    out.jwks_file = resolve(file);
  }
  if (const Entry* v = f.get("jwks_url")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.jwks_url, read_string(*v));
    if (!out.jwks_url.empty() && !out.jwks_url.starts_with("http://") &&
        !out.jwks_url.starts_with("https://")) {
      return fail(v->value, fmt::format("'jwks_url' must be an http:// or https:// URL; got '{}'",
                                        out.jwks_url));
    }
  }
  if (const Entry* v = f.get("jwks_ca_file")) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string file, read_string(*v));
    out.jwks_ca_file = resolve(file);
  }
  if (const Entry* v = f.get("refresh_min_interval")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.refresh_min_interval, read_seconds(*v));
  }
  if (const Entry* v = f.get("issuer")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.issuer, read_string(*v));
  }
  if (const Entry* v = f.get("audiences")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.audiences, read_string_list(*v));
  }
  if (const Entry* v = f.get("leeway")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.leeway, read_seconds(*v));
  }
  if (const Entry* v = f.get("consumer_claim")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.consumer_claim, read_string(*v));
    if (trim(out.consumer_claim).empty())
      return fail(v->value, "'consumer_claim' must not be empty");
  }
  return {};
}

Status Loader::load_oauth(const Entry& e, gateway::TokenEndpointOptions& out) const {
  CIVICBUS_ASSIGN_OR_RETURN(Fields f, fields(e.value, "'gateway.oauth'", "in gateway.oauth",
                                             {"enabled", "path", "jwks_path", "issuer", "audience",
                                              "algorithm", "token_lifetime", "signing_key_file"}));
  if (const Entry* v = f.get("enabled")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.enabled, read_bool(*v));
  }
  for (auto [key, field] : {std::pair{"path", &out.path}, std::pair{"jwks_path", &out.jwks_path}}) {
    if (const Entry* v = f.get(key)) {
      CIVICBUS_ASSIGN_OR_RETURN(*field, read_string(*v));
      if (!field->starts_with('/')) {
        return fail(v->value, fmt::format("'{}' must start with '/'; got '{}'", key, *field));
      }
    }
  }
  if (const Entry* v = f.get("issuer")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.issuer, read_string(*v));
  }
  if (const Entry* v = f.get("audience")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.audience, read_string(*v));
  }
  if (const Entry* v = f.get("algorithm")) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string alg, read_choice(*v, {"es256", "rs256"}));
    out.algorithm = alg == "es256" ? "ES256" : "RS256";
  }
  if (const Entry* v = f.get("token_lifetime")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.token_lifetime, read_seconds(*v));
    if (out.token_lifetime.count() <= 0) return fail(v->value, "'token_lifetime' must be positive");
  }
  if (const Entry* v = f.get("signing_key_file")) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string file, read_string(*v));
    out.signing_key_file = resolve(file);
  }
  return {};
}

Status Loader::load_load_shedding(const Entry& e, gateway::LoadShedderOptions& out) const {
  CIVICBUS_ASSIGN_OR_RETURN(
      Fields f,
      fields(e.value, "'gateway.load_shedding'", "in gateway.load_shedding",
             {"enabled", "initial_limit", "min_limit", "max_limit", "tolerance", "sample_window",
              "min_samples", "min_latency_refresh", "tier_shares", "retry_after"}));
  if (const Entry* v = f.get("enabled")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.enabled, read_bool(*v));
  }
  for (auto [key, field] :
       {std::pair{"initial_limit", &out.initial_limit}, std::pair{"min_limit", &out.min_limit},
        std::pair{"max_limit", &out.max_limit},
        std::pair{"min_latency_refresh", &out.min_latency_refresh}}) {
    if (const Entry* v = f.get(key)) {
      CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 1, 10'000'000));
      *field = static_cast<std::uint32_t>(n);
    }
  }
  if (const Entry* v = f.get("tolerance")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.tolerance, read_number(*v, 1.0, 100.0));
  }
  if (const Entry* v = f.get("sample_window")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.sample_window, read_duration(*v));
    if (out.sample_window.count() <= 0) return fail(v->value, "'sample_window' must be positive");
  }
  if (const Entry* v = f.get("min_samples")) {
    CIVICBUS_ASSIGN_OR_RETURN(auto n, read_integer(*v, 1, 10'000'000));
    out.min_samples = static_cast<std::size_t>(n);
  }
  if (const Entry* v = f.get("tier_shares")) {
    if (!v->value.IsSequence() || v->value.size() == 0) {
      return fail(v->value,
                  "'tier_shares' must be a non-empty list of shares, e.g. [1.0, 0.9, 0.7]");
    }
    out.tier_shares.clear();
    for (std::size_t i = 0; i < v->value.size(); ++i) {
      Entry item{fmt::format("tier_shares[{}]", i), v->value[i], v->value[i]};
      CIVICBUS_ASSIGN_OR_RETURN(double share, read_number(item, 0.0, 1.0));
      if (i == 0 && share != 1.0) {
        return fail(v->value[i], "'tier_shares' must start with 1.0 (tier 0 may fill the limit)");
      }
      if (i > 0 && share > out.tier_shares.back()) {
        return fail(v->value[i], "'tier_shares' must not increase from one tier to the next");
      }
      out.tier_shares.push_back(share);
    }
  }
  if (const Entry* v = f.get("retry_after")) {
    CIVICBUS_ASSIGN_OR_RETURN(out.retry_after, read_seconds(*v));
  }
  if (out.min_limit > out.max_limit || out.initial_limit < out.min_limit ||
      out.initial_limit > out.max_limit) {
    return fail(e.value, fmt::format("gateway.load_shedding: limits must satisfy min_limit <= "
                                     "initial_limit <= max_limit; got {} <= {} <= {}",
                                     out.min_limit, out.initial_limit, out.max_limit));
  }
  return {};
}

Result<std::vector<gateway::AuthMethod>> Loader::read_auth_methods(const Entry& e,
                                                                   std::string_view who) const {
  CIVICBUS_ASSIGN_OR_RETURN(auto methods, read_string_list(e));
  std::vector<gateway::AuthMethod> out;
  for (std::size_t j = 0; j < methods.size(); ++j) {
    std::string m = ascii_lower(trim(methods[j]));
    gateway::AuthMethod method;
    if (m == "api_key") {
      method = gateway::AuthMethod::kApiKey;
    } else if (m == "jwt") {
      method = gateway::AuthMethod::kJwt;
    } else if (m == "hmac") {
      method = gateway::AuthMethod::kHmac;
    } else if (m == "mtls") {
      method = gateway::AuthMethod::kMtls;
    } else {
      return fail(
          e.value[j],
          fmt::format("{}: 'auth' entries must be api_key, jwt, hmac or mtls; got '{}'{}", who,
                      methods[j], did_you_mean(m, {"api_key", "jwt", "hmac", "mtls"})));
    }
    if (std::find(out.begin(), out.end(), method) != out.end()) {
      return fail(e.value[j], fmt::format("{}: '{}' is listed twice in 'auth'", who, m));
    }
    out.push_back(method);
  }
  return out;
}

}  // namespace civicbus::config_detail
