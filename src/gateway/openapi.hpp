// The OpenAPI 3.1 document of the gateway's routes: one operation per route and method, path
// parameters from {param} segments, security requirements from the route's accepted
// credentials, request and response schemas where the route has them, and `deprecated` for
// routes of a deprecated API version. Pure: builds a Json value.
#pragma once

#include <string>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/gateway/options.hpp"

namespace civicbus::gateway {

struct OpenApiRoute {
  const RouteOptions* route = nullptr;
  bool deprecated = false;
  bool in_process = false;  // served by a handler in the node (x-civicbus-target: in-process)
};

struct OpenApiInfo {
  std::string title;
  std::string version;
  std::string token_url;  // the OAuth 2.0 token endpoint's path; "" when disabled
};

Json openapi_document(const OpenApiInfo& info, const std::vector<OpenApiRoute>& routes);

}  // namespace civicbus::gateway
