#include "gateway/openapi.hpp"

#include <algorithm>
#include <map>

#include "core/ascii.hpp"

namespace civicbus::gateway {

namespace {

const char* scheme_name(AuthMethod m) {
  switch (m) {
    case AuthMethod::kApiKey:
      return "apiKey";
    case AuthMethod::kJwt:
      return "bearerJwt";
    case AuthMethod::kHmac:
      return "httpSignature";
    case AuthMethod::kMtls:
      return "mutualTls";
  }
  return "apiKey";
}

// {name} segments of a template path, in order.
std::vector<std::string> path_params(const std::string& path) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while ((at = path.find('{', at)) != std::string::npos) {
    const std::size_t end = path.find('}', at);
    if (end == std::string::npos) break;
    out.push_back(path.substr(at + 1, end - at - 1));
    at = end + 1;
  }
  return out;
}

Json error_response(const char* description) {
  return Json::object(
      {{"description", description},
       {"content",
        Json::object(
            {{"application/problem+json",
              Json::object(
                  {{"schema", Json::object({{"$ref", "#/components/schemas/Problem"}})}})}})}});
}

}  // namespace

Json openapi_document(const OpenApiInfo& info, const std::vector<OpenApiRoute>& routes) {
  Json doc =
      Json::object({{"openapi", "3.1.0"},
                    {"info", Json::object({{"title", info.title}, {"version", info.version}})}});
  // Paths sorted for a stable document; operations keep the route order within a path.
  std::map<std::string, Json> paths;
  std::map<std::string, int> operation_ids;
  for (const OpenApiRoute& entry : routes) {
    const RouteOptions& r = *entry.route;
    // OpenAPI has no prefix match: a prefix route is listed at its prefix, marked with
    // x-civicbus-match.
    const std::string& path = r.path;
    std::vector<std::string> methods;
    if (r.method.empty() || r.method == "*") {
      methods = {"get", "post", "put", "patch", "delete"};
    } else {
      methods = {ascii_lower(r.method)};
    }
    for (const std::string& method : methods) {
      Json op = Json::object();
      std::string op_id = r.id + (methods.size() > 1 ? "_" + method : "");
      if (int n = operation_ids[op_id]++; n > 0) op_id += "_" + std::to_string(n + 1);
      op.set("operationId", op_id);
      if (!r.summary.empty()) op.set("summary", r.summary);
      if (!r.tags.empty()) {
        Json tags = Json::array();
        for (const auto& t : r.tags) tags.push_back(t);
        op.set("tags", std::move(tags));
      }
      const auto params = path_params(r.match == PathKind::kTemplate ? r.path : std::string());
      if (!params.empty()) {
        Json list = Json::array();
        for (const auto& p : params) {
          list.push_back(Json::object({{"name", p},
                                       {"in", "path"},
                                       {"required", true},
                                       {"schema", Json::object({{"type", "string"}})}}));
        }
        op.set("parameters", std::move(list));
      }
      if (!r.request_schema.is_null() && method != "get" && method != "delete") {
        op.set("requestBody",
               Json::object(
                   {{"required", true},
                    {"content", Json::object({{"application/json",
                                               Json::object({{"schema", r.request_schema}})}})}}));
      }
      Json ok = Json::object({{"description", "Success"}});
      if (!r.response_schema.is_null()) {
        ok.set("content",
               Json::object({{"application/json", Json::object({{"schema", r.response_schema}})}}));
      }
      Json responses = Json::object({{"200", std::move(ok)}});
      if (!r.auth.empty()) {
        responses.set("401", error_response("Missing or invalid credentials"));
        responses.set("403", error_response("The consumer may not call this operation"));
        Json security = Json::array();
        for (AuthMethod m : r.auth) {
          security.push_back(Json::object({{scheme_name(m), Json::array()}}));
          if (m == AuthMethod::kJwt && !info.token_url.empty()) {
            security.push_back(Json::object({{"oauth2ClientCredentials", Json::array()}}));
          }
        }
        op.set("security", std::move(security));
      } else {
        op.set("security", Json::array({Json::object()}));
      }
      if (r.rate_limit.requests_per_minute != 0 || r.rate_limit.requests_per_day != 0 ||
          !r.auth.empty()) {
        responses.set("429", error_response("Rate limit exceeded; see Retry-After"));
      }
      responses.set("503", error_response("Overloaded or no healthy upstream; see Retry-After"));
      op.set("responses", std::move(responses));
      if (entry.deprecated) op.set("deprecated", true);
      if (r.match == PathKind::kPrefix) op.set("x-civicbus-match", "prefix");
      op.set("x-civicbus-target", entry.in_process ? Json("in-process") : Json(r.upstream));
      paths[path].set(method, std::move(op));
    }
  }
  Json paths_json = Json::object();
  for (auto& [p, item] : paths) paths_json.set(p, std::move(item));
  doc.set("paths", std::move(paths_json));

  Json schemes = Json::object(
      {{"apiKey", Json::object({{"type", "apiKey"}, {"in", "header"}, {"name", "apikey"}})},
       {"bearerJwt",
        Json::object({{"type", "http"}, {"scheme", "bearer"}, {"bearerFormat", "JWT"}})},
       {"httpSignature",
        Json::object({{"type", "apiKey"},
                      {"in", "header"},
                      {"name", "Signature"},
                      {"description",
                       "RFC 9421 HTTP Message Signatures, hmac-sha256, covering @method, "
                       "@target-uri and content-digest, with Signature-Input"}})}});
  schemes.set("mutualTls", Json::object({{"type", "mutualTLS"}}));
  if (!info.token_url.empty()) {
    schemes.set(
        "oauth2ClientCredentials",
        Json::object({{"type", "oauth2"},
                      {"flows", Json::object({{"clientCredentials",
                                               Json::object({{"tokenUrl", info.token_url},
                                                             {"scopes", Json::object()}})}})}}));
  }
  Json problem = Json::object(
      {{"type", "object"},
       {"properties", Json::object({{"type", Json::object({{"type", "string"}})},
                                    {"title", Json::object({{"type", "string"}})},
                                    {"status", Json::object({{"type", "integer"}})},
                                    {"detail", Json::object({{"type", "string"}})},
                                    {"request_id", Json::object({{"type", "string"}})}})}});
  doc.set("components",
          Json::object({{"securitySchemes", std::move(schemes)},
                        {"schemas", Json::object({{"Problem", std::move(problem)}})}}));
  return doc;
}

}  // namespace civicbus::gateway
