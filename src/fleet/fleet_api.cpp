// The fleet's HTTP API, served through the gateway: /api/v1/iot/* (FleetOptions::api_prefix).
// Errors are RFC 9457 problem documents; every route is in the gateway's OpenAPI document.
#include <fmt/format.h>

#include <charconv>
#include <cstdlib>

#include "civicbus/gateway/gateway.hpp"
#include "core/uri_reference.hpp"
#include "fleet/fleet_impl.hpp"

namespace civicbus::fleet {

namespace {

using gateway::GatewayRequest;
using gateway::json_response;
using gateway::problem_response;
using http::HttpResponse;

// The query string as name → value (percent-decoded, '+' as space).
std::map<std::string, std::string, std::less<>> query_params(std::string_view query) {
  std::map<std::string, std::string, std::less<>> out;
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    std::size_t eq = pair.find('=');
    std::string name(pair.substr(0, eq));
    std::string value(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    std::replace(name.begin(), name.end(), '+', ' ');
    std::replace(value.begin(), value.end(), '+', ' ');
    out[detail::percent_decode(name)] = detail::percent_decode(value);
  }
  return out;
}

Result<double> parse_number(std::string_view name, std::string_view text) {
  char* end = nullptr;
  std::string copy(text);
  double v = std::strtod(copy.c_str(), &end);
  if (copy.empty() || end != copy.c_str() + copy.size() || !std::isfinite(v)) {
    return invalid_argument(fmt::format("query parameter '{}': '{}' is not a number", name, text));
  }
  return v;
}

Result<std::vector<double>> parse_numbers(std::string_view name, std::string_view text,
                                          std::size_t count) {
  std::vector<double> out;
  std::size_t at = 0;
  while (at <= text.size()) {
    std::size_t comma = text.find(',', at);
    if (comma == std::string_view::npos) comma = text.size();
    CIVICBUS_ASSIGN_OR_RETURN(double v, parse_number(name, text.substr(at, comma - at)));
    out.push_back(v);
    at = comma + 1;
  }
  if (out.size() != count) {
    return invalid_argument(
        fmt::format("query parameter '{}' needs {} comma-separated numbers", name, count));
  }
  return out;
}

// A time parameter: epoch milliseconds or RFC 3339.
Result<TimeMs> parse_time(std::string_view name, std::string_view text) {
  TimeMs ms = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
  if (ec == std::errc() && ptr == text.data() + text.size()) return ms;
  auto t = parse_rfc3339(text);
  if (!t.ok()) {
    return invalid_argument(
        fmt::format("query parameter '{}': '{}' is neither epoch milliseconds nor an RFC 3339 time",
                    name, text));
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch()).count();
}

Result<DeviceQuery> device_query(const std::map<std::string, std::string, std::less<>>& p) {
  DeviceQuery q;
  for (const auto& [name, value] : p) {
    if (name == "type") {
      q.type = value;
    } else if (name == "status") {
      CIVICBUS_ASSIGN_OR_RETURN(auto s, parse_status(value));
      q.status = s;
    } else if (name == "department") {
      q.department = value;
    } else if (name == "project") {
      q.project = value;
    } else if (name == "network") {
      CIVICBUS_ASSIGN_OR_RETURN(auto n, parse_network(value));
      q.network = n;
    } else if (name == "bbox") {
      CIVICBUS_ASSIGN_OR_RETURN(auto v, parse_numbers(name, value, 4));
      q.bbox = BoundingBox{v[0], v[1], v[2], v[3]};
    } else if (name == "near") {
      CIVICBUS_ASSIGN_OR_RETURN(auto v, parse_numbers(name, value, 3));
      q.circle = GeoCircle{GeoPoint{v[0], v[1]}, v[2]};
    } else if (name == "tag") {
      std::size_t eq = value.find(':');
      if (eq == std::string::npos)
        return invalid_argument("query parameter 'tag' must be key:value");
      q.tags[value.substr(0, eq)] = value.substr(eq + 1);
    } else if (name == "limit" || name == "offset") {
      CIVICBUS_ASSIGN_OR_RETURN(double v, parse_number(name, value));
      if (v < 0) return invalid_argument(fmt::format("query parameter '{}' must be >= 0", name));
      (name == "limit" ? q.limit : q.offset) = static_cast<std::size_t>(v);
    } else {
      return invalid_argument(fmt::format(
          "unknown query parameter '{}' (type, status, department, project, network, "
          "bbox=minLat,minLon,maxLat,maxLon, near=lat,lon,radius_m, tag=key:value, limit, "
          "offset)",
          name));
    }
  }
  if (q.limit == 0) q.limit = 100;
  return q;
}

std::string actor_of(const GatewayRequest& req) {
  return req.consumer_id.empty() ? std::string("anonymous") : std::string(req.consumer_id);
}

Result<Json> body_json(const GatewayRequest& req) {
  auto j = Json::parse(req.http.body);
  if (!j.ok())
    return invalid_argument(fmt::format("request body is not JSON: {}", j.status().message()));
  return j;
}

Json ingest_json(const IngestResult& r) {
  Json j = Json::object();
  j["accepted"] = static_cast<std::int64_t>(r.accepted);
  j["rejected"] = static_cast<std::int64_t>(r.rejected.size());
  Json list = Json::array();
  for (std::size_t i = 0; i < r.rejected.size() && i < 100; ++i) {
    const auto& x = r.rejected[i];
    list.as_array().push_back(Json::object({{"device_id", x.reading.device_id},
                                            {"metric", x.reading.metric},
                                            {"reason", std::string(reject_reason_name(x.reason))},
                                            {"message", x.message}}));
  }
  j["rejections"] = std::move(list);
  return j;
}

Json devices_json(const DeviceQueryResult& r, std::size_t limit, std::size_t offset) {
  Json list = Json::array();
  for (const auto& d : r.devices) list.as_array().push_back(d->to_json());
  return Json::object({{"total", static_cast<std::int64_t>(r.total)},
                       {"limit", static_cast<std::int64_t>(limit)},
                       {"offset", static_cast<std::int64_t>(offset)},
                       {"devices", std::move(list)}});
}

}  // namespace

Status DeviceFleet::mount(gateway::Gateway& gw) {
  DeviceFleet* fleet = this;
  const FleetOptions& o = impl_->options;
  Status first;
  auto route = [&](std::string id, std::string method, std::string path, std::string summary,
                   gateway::GatewayHandler handler) {
    if (!first.ok()) return;
    gateway::RouteOptions r;
    r.id = std::move(id);
    r.method = std::move(method);
    r.match = path.find('{') != std::string::npos ? gateway::PathKind::kTemplate
                                                  : gateway::PathKind::kExact;
    r.path = o.api_prefix + path;
    r.auth = o.api_auth;
    r.groups = o.api_groups;
    r.summary = std::move(summary);
    r.tags = {"iot"};
    first = gw.add_route(std::move(r), std::move(handler));
  };
  // A handler's error becomes a problem document instead of a 500 with no detail.
  auto wrap = [](auto fn) {
    return [fn](const GatewayRequest& req) -> HttpResponse {
      Result<HttpResponse> r = fn(req);
      return r.ok() ? std::move(*r) : problem_response(r.status());
    };
  };

  route("iot.devices.list", "GET", "/devices",
        "List devices (filters: type, status, department, project, network, bbox, near, tag)",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          CIVICBUS_ASSIGN_OR_RETURN(auto q, device_query(query_params(req.http.query)));
          return json_response(200, devices_json(fleet->devices(q), q.limit, q.offset));
        }));
  route("iot.devices.provision", "POST", "/devices",
        "Provision a device (the response holds its private key, once)",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          CIVICBUS_ASSIGN_OR_RETURN(Json body, body_json(req));
          CIVICBUS_ASSIGN_OR_RETURN(Device d, Device::from_json(body));
          CIVICBUS_ASSIGN_OR_RETURN(auto p, fleet->provision(std::move(d), actor_of(req)));
          HttpResponse r = json_response(201, p.to_json());
          r.headers.add("Cache-Control", "no-store");  // a private key is in the body
          return r;
        }));
  route("iot.devices.import", "POST", "/devices/import",
        "Bulk-provision devices from CSV or JSON; bad rows are reported by line",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          auto ct = req.http.headers.get("Content-Type").value_or("");
          ImportFormat f = ct.find("csv") != std::string_view::npos    ? ImportFormat::kCsv
                           : ct.find("json") != std::string_view::npos ? ImportFormat::kJson
                                                                       : ImportFormat::kAuto;
          CIVICBUS_ASSIGN_OR_RETURN(auto report,
                                    fleet->import_devices(req.http.body, f, actor_of(req)));
          HttpResponse r = json_response(200, report.to_json());
          r.headers.add("Cache-Control", "no-store");
          return r;
        }));
  route("iot.devices.decommission", "POST", "/devices/decommission",
        "Decommission every device matching a query (type, project, bbox…)",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          CIVICBUS_ASSIGN_OR_RETURN(Json body, body_json(req));
          const Json* query = body.find("query");
          if (query == nullptr) return invalid_argument("body needs a 'query' object");
          CIVICBUS_ASSIGN_OR_RETURN(auto q, DeviceQuery::from_json(*query));
          CIVICBUS_ASSIGN_OR_RETURN(
              auto ids, fleet->decommission_where(q, actor_of(req), body.get_string("reason")));
          Json list = Json::array();
          for (auto& id : ids) list.as_array().emplace_back(std::move(id));
          return json_response(200, Json::object({{"decommissioned", std::move(list)}}));
        }));
  route("iot.devices.get", "GET", "/devices/{id}", "A device with its latest readings",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          auto d = fleet->device(req.param("id"));
          if (!d) return not_found(fmt::format("unknown device '{}'", req.param("id")));
          Json j = d->to_json();
          Json latest = Json::object();
          for (const auto& r : fleet->latest(d->id)) {
            latest[r.metric] = Json::object(
                {{"value", r.value},
                 {"unit", r.unit},
                 {"time", format_rfc3339(SystemTime(std::chrono::milliseconds(r.time)))}});
          }
          j["latest"] = std::move(latest);
          return json_response(200, j);
        }));
  route("iot.devices.status", "POST", "/devices/{id}/status",
        "Move a device along its lifecycle: {\"status\", \"reason\"}",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          CIVICBUS_ASSIGN_OR_RETURN(Json body, body_json(req));
          CIVICBUS_ASSIGN_OR_RETURN(auto s, parse_status(body.get_string("status")));
          CIVICBUS_ASSIGN_OR_RETURN(auto d, fleet->set_status(req.param("id"), s, actor_of(req),
                                                              body.get_string("reason")));
          return json_response(200, d->to_json());
        }));
  route("iot.devices.history", "GET", "/devices/{id}/history", "A device's status changes",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          CIVICBUS_ASSIGN_OR_RETURN(auto h, fleet->history(req.param("id")));
          Json list = Json::array();
          for (const auto& c : h) {
            list.as_array().push_back(Json::object(
                {{"from", std::string(status_name(c.from))},
                 {"to", std::string(status_name(c.to))},
                 {"actor", c.actor},
                 {"reason", c.reason},
                 {"at", format_rfc3339(SystemTime(std::chrono::milliseconds(c.at)))}}));
          }
          return json_response(200, list);
        }));
  route("iot.devices.readings", "GET", "/devices/{id}/readings",
        "Time series of one metric: metric, from, to (ms or RFC 3339), agg=raw|5m|1h|1d|auto",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          auto p = query_params(req.http.query);
          auto metric = p.find("metric");
          if (metric == p.end()) return invalid_argument("query parameter 'metric' is required");
          const TimeMs now = fleet->impl_->now_ms();
          TimeMs from = now - 24 * 3600 * 1000, to = now + 1;
          if (auto it = p.find("from"); it != p.end()) {
            CIVICBUS_ASSIGN_OR_RETURN(from, parse_time("from", it->second));
          }
          if (auto it = p.find("to"); it != p.end()) {
            CIVICBUS_ASSIGN_OR_RETURN(to, parse_time("to", it->second));
          }
          std::string agg = p.count("agg") ? p.find("agg")->second : std::string();
          CIVICBUS_ASSIGN_OR_RETURN(
              auto r, fleet->readings(req.param("id"), metric->second, from, to, agg));
          Json j = r.to_json();
          j["device_id"] = std::string(req.param("id"));
          j["metric"] = metric->second;
          return json_response(200, j);
        }));
  route("iot.devices.ingest", "POST", "/devices/{id}/readings",
        "Readings over HTTP: device JSON ({\"ts\", \"values\"}) or SenML (application/senml+json)",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          auto ct = req.http.headers.get("Content-Type").value_or("");
          IngestResult r = ct.find("senml") != std::string_view::npos
                               ? fleet->ingest_senml(req.http.body, req.param("id"))
                               : fleet->ingest_device_json(req.param("id"), req.http.body);
          return json_response(r.accepted > 0 || r.rejected.empty() ? 202 : 422, ingest_json(r));
        }));
  route("iot.devices.twin", "GET", "/devices/{id}/twin", "Desired and reported configuration",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          CIVICBUS_ASSIGN_OR_RETURN(Json t, fleet->twin(req.param("id")));
          return json_response(200, t);
        }));
  route("iot.devices.config", "POST", "/devices/{id}/config",
        "Push configuration (a JSON merge patch of the desired state)",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          CIVICBUS_ASSIGN_OR_RETURN(Json body, body_json(req));
          CIVICBUS_ASSIGN_OR_RETURN(Json delta,
                                    fleet->push_config(req.param("id"), body, actor_of(req)));
          return json_response(200, Json::object({{"delta", std::move(delta)}}));
        }));
  route("iot.groups.list", "GET", "/groups", "Device groups",
        wrap([fleet](const GatewayRequest&) -> Result<HttpResponse> {
          Json list = Json::array();
          for (const auto& g : fleet->groups()) list.as_array().push_back(g.to_json());
          return json_response(200, list);
        }));
  route("iot.groups.create", "POST", "/groups", "Create a static or query group",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          CIVICBUS_ASSIGN_OR_RETURN(Json body, body_json(req));
          CIVICBUS_ASSIGN_OR_RETURN(Group g, Group::from_json(body));
          CIVICBUS_ASSIGN_OR_RETURN(auto created, fleet->create_group(std::move(g), actor_of(req)));
          return json_response(201, created.to_json());
        }));
  route("iot.groups.get", "GET", "/groups/{id}", "A group and its members now",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          CIVICBUS_ASSIGN_OR_RETURN(auto g, fleet->group(req.param("id")));
          CIVICBUS_ASSIGN_OR_RETURN(auto members, fleet->group_members(req.param("id")));
          Json j = g.to_json();
          Json list = Json::array();
          for (auto& m : members) list.as_array().emplace_back(std::move(m));
          j["members"] = std::move(list);
          return json_response(200, j);
        }));
  route("iot.groups.config", "POST", "/groups/{id}/config",
        "Push configuration to every member of a group",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          CIVICBUS_ASSIGN_OR_RETURN(Json body, body_json(req));
          CIVICBUS_ASSIGN_OR_RETURN(auto ids,
                                    fleet->push_group_config(req.param("id"), body, actor_of(req)));
          return json_response(200,
                               Json::object({{"updated", static_cast<std::int64_t>(ids.size())}}));
        }));
  route("iot.rules.list", "GET", "/rules", "Alert rules",
        wrap([fleet](const GatewayRequest&) -> Result<HttpResponse> {
          return json_response(200, fleet->rules());
        }));
  route("iot.rules.create", "POST", "/rules",
        "Add an alert rule (threshold, rate_of_change, inactivity, geofence, composite)",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          CIVICBUS_ASSIGN_OR_RETURN(Json body, body_json(req));
          CIVICBUS_ASSIGN_OR_RETURN(Json rule, fleet->add_rule(body));
          return json_response(201, rule);
        }));
  route("iot.alerts.list", "GET", "/alerts",
        "Alerts (filters: state, active, device, severity, rule)",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          AlertQuery q;
          for (const auto& [name, value] : query_params(req.http.query)) {
            if (name == "state") {
              if (value == "raised")
                q.state = AlertState::kRaised;
              else if (value == "acknowledged")
                q.state = AlertState::kAcknowledged;
              else if (value == "resolved")
                q.state = AlertState::kResolved;
              else
                return invalid_argument(fmt::format("unknown alert state '{}'", value));
            } else if (name == "active") {
              q.active_only = value == "true" || value == "1";
            } else if (name == "device") {
              q.device_id = value;
            } else if (name == "severity") {
              if (value == "warning")
                q.severity = Severity::kWarning;
              else if (value == "critical")
                q.severity = Severity::kCritical;
              else
                return invalid_argument(fmt::format("unknown severity '{}'", value));
            } else if (name == "rule") {
              q.rule_id = value;
            } else {
              return invalid_argument(fmt::format("unknown query parameter '{}'", name));
            }
          }
          CIVICBUS_ASSIGN_OR_RETURN(auto list, fleet->alerts(q));
          Json out = Json::array();
          for (const auto& a : list) out.as_array().push_back(a.to_json());
          return json_response(200, out);
        }));
  route("iot.alerts.acknowledge", "POST", "/alerts/{id}/acknowledge", "Acknowledge an alert",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          auto body = Json::parse(req.http.body.empty() ? "{}" : req.http.body);
          std::string note = body.ok() ? body->get_string("note") : std::string();
          CIVICBUS_ASSIGN_OR_RETURN(auto a,
                                    fleet->acknowledge(req.param("id"), actor_of(req), note));
          return json_response(200, a.to_json());
        }));
  route("iot.alerts.resolve", "POST", "/alerts/{id}/resolve", "Resolve an alert",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          auto body = Json::parse(req.http.body.empty() ? "{}" : req.http.body);
          std::string note = body.ok() ? body->get_string("note") : std::string();
          CIVICBUS_ASSIGN_OR_RETURN(auto a, fleet->resolve(req.param("id"), actor_of(req), note));
          return json_response(200, a.to_json());
        }));
  route("iot.rollouts.list", "GET", "/rollouts", "OTA rollouts",
        wrap([fleet](const GatewayRequest&) -> Result<HttpResponse> {
          return json_response(200, fleet->rollouts());
        }));
  route("iot.rollouts.start", "POST", "/rollouts", "Start a staged OTA rollout to a group",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          CIVICBUS_ASSIGN_OR_RETURN(Json body, body_json(req));
          CIVICBUS_ASSIGN_OR_RETURN(Json p, fleet->start_rollout(body, actor_of(req)));
          return json_response(201, p);
        }));
  route("iot.rollouts.get", "GET", "/rollouts/{id}", "A rollout's progress per wave and device",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          CIVICBUS_ASSIGN_OR_RETURN(Json p, fleet->rollout(req.param("id")));
          return json_response(200, p);
        }));
  route("iot.rollouts.abort", "POST", "/rollouts/{id}/abort",
        "Abort a rollout (rolls back updated devices)",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          auto body = Json::parse(req.http.body.empty() ? "{}" : req.http.body);
          std::string reason = body.ok() ? body->get_string("reason") : std::string();
          CIVICBUS_RETURN_IF_ERROR(fleet->abort_rollout(req.param("id"), actor_of(req), reason));
          CIVICBUS_ASSIGN_OR_RETURN(Json p, fleet->rollout(req.param("id")));
          return json_response(200, p);
        }));
  route("iot.uplinks.chirpstack", "POST", "/uplinks/chirpstack",
        "ChirpStack v4 HTTP integration (uplink events)",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          // ChirpStack posts every event type to one URL and names it in ?event=.
          auto p = query_params(req.http.query);
          if (auto it = p.find("event"); it != p.end() && it->second != "up") {
            return json_response(200, Json::object({{"ignored", it->second}}));
          }
          IngestResult r = fleet->ingest_chirpstack(req.http.body);
          return json_response(r.accepted > 0 || r.rejected.empty() ? 202 : 422, ingest_json(r));
        }));
  route("iot.uplinks.tts", "POST", "/uplinks/tts", "The Things Stack v3 webhook (uplink messages)",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          IngestResult r = fleet->ingest_tts(req.http.body);
          return json_response(r.accepted > 0 || r.rejected.empty() ? 202 : 422, ingest_json(r));
        }));
  route("iot.uplinks.sigfox", "POST", "/uplinks/sigfox", "Sigfox data callbacks (JSON body)",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          IngestResult r = fleet->ingest_sigfox(req.http.body);
          return json_response(r.accepted > 0 || r.rejected.empty() ? 202 : 422, ingest_json(r));
        }));
  route("iot.edge.batches", "POST", "/edge/batches",
        "Readings forwarded by an edge gateway (in order, deduplicated by sequence number)",
        wrap([fleet](const GatewayRequest& req) -> Result<HttpResponse> {
          CIVICBUS_ASSIGN_OR_RETURN(Json body, body_json(req));
          CIVICBUS_ASSIGN_OR_RETURN(EdgeBatch batch, EdgeBatch::from_json(body));
          CIVICBUS_ASSIGN_OR_RETURN(Json r, fleet->impl_->receive_edge_batch(batch));
          return json_response(200, r);
        }));
  route("iot.ca", "GET", "/ca", "The device CA certificate (PEM) and revoked serials",
        wrap([fleet](const GatewayRequest&) -> Result<HttpResponse> {
          if (!fleet->impl_->ca) return not_found("this node issues no device certificates");
          CIVICBUS_ASSIGN_OR_RETURN(Json revoked, fleet->impl_->ca->revocation_list());
          return json_response(200, Json::object({{"certificate_pem", fleet->ca_certificate_pem()},
                                                  {"revocations", std::move(revoked)}}));
        }));
  return first;
}

}  // namespace civicbus::fleet
