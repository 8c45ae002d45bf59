// civicbus.Gateway: the API gateway, created from Python or a node's, with routes served by
// Python handlers. Handlers run on the gateway's workers with the GIL taken; one that raises
// answers 500 (a civicbus.Error answers its code's status instead: NotFound 404...).
#include <fmt/format.h>

#include <cctype>

#include "handles.hpp"

namespace civicbus::python {
namespace {

using gateway::Gateway;

class GatewayState final : public Lifetime {
 public:
  GatewayState() : Lifetime("gateway") {}
  ~GatewayState() override { close_from_destructor(); }
  Gateway* get() { return gateway_.get(); }
  void set(std::unique_ptr<Gateway> g) { gateway_ = std::move(g); }

 protected:
  void destroy() override { gateway_.reset(); }  // stops the listener, waits for workers

 private:
  std::unique_ptr<Gateway> gateway_;
};

// What a Python route handler is given: a copy of the request, valid after the call too.
struct PyRequest {
  std::string method, target, path, query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string remote_address;
  std::uint16_t remote_port = 0;
  std::string route_id;
  std::vector<std::pair<std::string, std::string>> params;
  std::string consumer_id;
  std::vector<std::string> consumer_groups;
  std::string request_id;

  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (http::equals_ignore_case(n, name)) return v;
    }
    return std::nullopt;
  }
};

// What a handler may return, as an HTTP response.
struct PyResponse {
  int status = 200;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

std::string body_bytes(const py::handle& body, std::string* content_type) {
  if (body.is_none()) return {};
  if (py::isinstance<py::bytes>(body) || py::isinstance<py::bytearray>(body)) {
    if (content_type && content_type->empty()) *content_type = "application/octet-stream";
    return py::bytes(py::reinterpret_borrow<py::object>(body)).cast<std::string>();
  }
  if (py::isinstance<py::str>(body)) {
    if (content_type && content_type->empty()) *content_type = "text/plain; charset=utf-8";
    return body.cast<std::string>();
  }
  if (content_type && content_type->empty()) *content_type = "application/json";
  return json_from_python(body).dump();
}

PyResponse make_response(const py::object& body, int status, const py::object& headers,
                         std::optional<std::string> content_type) {
  PyResponse r;
  r.status = status;
  std::string type = content_type.value_or("");
  r.body = body_bytes(body, &type);
  if (!headers.is_none()) {
    if (py::isinstance<py::dict>(headers)) {
      for (auto item : headers.cast<py::dict>()) {
        r.headers.emplace_back(py::str(item.first).cast<std::string>(),
                               py::str(item.second).cast<std::string>());
      }
    } else {
      r.headers = headers.cast<std::vector<std::pair<std::string, std::string>>>();
    }
  }
  bool has_type = false;
  for (const auto& [n, v] : r.headers) has_type |= http::equals_ignore_case(n, "Content-Type");
  if (!has_type && !type.empty()) {
    r.headers.emplace_back("Content-Type", type);
  }
  return r;
}

http::HttpResponse to_http(const PyResponse& r) {
  http::HttpResponse out;
  out.status = r.status;
  out.reason = r.reason;
  for (const auto& [n, v] : r.headers) out.headers.add(n, v);
  out.body = r.body;
  return out;
}

// A handler's return value as a response: Response, dict/list (JSON), str, bytes, None (204),
// or a (body, status) tuple.
http::HttpResponse response_of(const py::object& result) {
  if (py::isinstance<PyResponse>(result)) return to_http(result.cast<const PyResponse&>());
  if (result.is_none()) {
    http::HttpResponse r;
    r.status = 204;
    return r;
  }
  if (py::isinstance<py::tuple>(result) && py::len(result) == 2) {
    py::tuple t = result.cast<py::tuple>();
    return to_http(make_response(t[0], t[1].cast<int>(), py::none(), std::nullopt));
  }
  if (py::isinstance<py::dict>(result) || py::isinstance<py::list>(result)) {
    return gateway::json_response(200, json_from_python(result));
  }
  return to_http(make_response(result, 200, py::none(), std::nullopt));
}

PyRequest request_of(const gateway::GatewayRequest& r) {
  PyRequest p;
  p.method = r.http.method;
  p.target = r.http.target;
  p.path = r.http.path;
  p.query = r.http.query;
  for (const auto& field : r.http.headers) p.headers.push_back(field);
  p.body = r.http.body;
  p.remote_address = r.http.remote_address;
  p.remote_port = r.http.remote_port;
  p.route_id = std::string(r.route_id);
  p.params = r.params;
  p.consumer_id = std::string(r.consumer_id);
  p.consumer_groups = r.consumer_groups;
  p.request_id = std::string(r.request_id);
  return p;
}

gateway::GatewayHandler python_handler(const py::object& handler, std::string route_id) {
  return [fn = share(handler), route_id](const gateway::GatewayRequest& request) {
    const std::string context = fmt::format("the handler of route '{}'", route_id);
    if (python_finalizing()) {
      return gateway::problem_response(unavailable("the Python interpreter is shutting down"));
    }
    PyRequest copy = request_of(request);  // before taking the GIL: plain copying
    py::gil_scoped_acquire gil;
    CallbackScope scope;
    try {
      return response_of((*fn)(py::cast(std::move(copy))));
    } catch (py::error_already_set& e) {
      if (is_civicbus_error(e)) return gateway::problem_response(status_from_python(e, context));
      // A bug in the handler: the client learns only that the route failed (fail closed);
      // the traceback goes to stderr for the developer.
      print_python_error(e, context);
      return gateway::problem_response(internal_error(fmt::format("route '{}' failed", route_id)));
    } catch (const StatusError& e) {
      return gateway::problem_response(e.status());
    } catch (const std::exception& e) {
      PySys_WriteStderr("civicbus: %s failed: %s\n", context.c_str(), e.what());
      return gateway::problem_response(internal_error(fmt::format("route '{}' failed", route_id)));
    }
  };
}

gateway::PathKind parse_match(std::string_view s) {
  if (s == "prefix") return gateway::PathKind::kPrefix;
  if (s == "exact") return gateway::PathKind::kExact;
  if (s == "template") return gateway::PathKind::kTemplate;
  throw StatusError(
      invalid_argument(fmt::format("match must be 'prefix', 'exact' or 'template', got '{}'", s)));
}

gateway::AuthMethod parse_auth(std::string_view s) {
  if (s == "api_key") return gateway::AuthMethod::kApiKey;
  if (s == "jwt") return gateway::AuthMethod::kJwt;
  if (s == "hmac") return gateway::AuthMethod::kHmac;
  if (s == "mtls") return gateway::AuthMethod::kMtls;
  throw StatusError(invalid_argument(
      fmt::format("auth methods are 'api_key', 'jwt', 'hmac' and 'mtls', got '{}'", s)));
}

gateway::RouteOptions route_options(
    const std::string& path, const std::optional<std::string>& id, const std::string& method,
    const std::optional<std::string>& match, const std::string& host,
    const std::vector<std::string>& auth, const std::vector<std::string>& groups,
    const std::string& summary, const std::vector<std::string>& tags, const std::string& cors,
    const std::string& version, std::uint32_t requests_per_minute, std::uint32_t burst,
    std::uint32_t requests_per_day, const Json& request_schema, const Json& response_schema) {
  gateway::RouteOptions r;
  r.path = path;
  r.method = method;
  if (id) {
    r.id = *id;
  } else {
    std::string m = method.empty() || method == "*" ? "any" : method;
    for (char& c : m) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.id = m + ":" + path;
  }
  if (match) {
    r.match = parse_match(*match);
  } else {
    r.match = path.find('{') != std::string::npos ? gateway::PathKind::kTemplate
                                                  : gateway::PathKind::kPrefix;
  }
  r.host = host;
  for (const auto& a : auth) r.auth.push_back(parse_auth(a));
  r.groups = groups;
  r.summary = summary;
  r.tags = tags;
  r.cors = cors;
  r.version = version;
  r.rate_limit.requests_per_minute = requests_per_minute;
  r.rate_limit.burst = burst;
  r.rate_limit.requests_per_day = requests_per_day;
  r.request_schema = request_schema;
  r.response_schema = response_schema;
  return r;
}

py::dict consumer_dict(const gateway::ConsumerInfo& c) {
  py::dict d;
  d["id"] = c.id;
  d["groups"] = c.groups;
  d["api_keys"] = c.api_keys;
  d["hmac_key_ids"] = c.hmac_key_ids;
  d["client_id"] = c.client_id;
  d["priority_tier"] = c.priority_tier;
  return d;
}

GatewayRef create_gateway(const py::object& config, const std::optional<std::string>& bind_address,
                          std::optional<std::uint16_t> port, std::optional<std::size_t> threads,
                          std::string_view log_level) {
  NodeOptions options = section_options(config, "gateway");
  if (!options.gateway)
    throw StatusError(invalid_argument("the gateway configuration is disabled"));
  gateway::GatewayOptions o = std::move(*options.gateway);
  if (bind_address) o.listener.bind_address = *bind_address;
  if (port) o.listener.port = *port;
  if (threads) o.listener.threads = *threads;
  // Logs go to stderr like a node's; the clock must outlive every copy of the logger, so it
  // is never destroyed.
  static const SystemClock* log_clock = new SystemClock();
  LogOptions log_options;
  log_options.level = unwrap(parse_log_level(log_level));
  gateway::GatewayDeps deps;
  deps.logger = Logger(std::move(log_options), *log_clock);
  auto state = std::make_shared<GatewayState>();
  auto created = [&] {
    py::gil_scoped_release nogil;
    return Gateway::create(std::move(o), std::move(deps));
  }();
  state->set(unwrap(std::move(created)));
  state->register_for_exit();
  return GatewayRef{state, [s = state.get()] { return s->get(); }, true};
}

#define CIVICBUS_ROUTE_ARGS                                                                        \
  py::kw_only(),                                                                                   \
      py::arg("id") = py::none(), py::arg("method") = "GET", py::arg("match") = py::none(),        \
      py::arg("host") = "", py::arg("auth") = std::vector<std::string>{},                          \
      py::arg("groups") = std::vector<std::string>{}, py::arg("summary") = "",                     \
      py::arg("tags") = std::vector<std::string>{}, py::arg("cors") = "", py::arg("version") = "", \
      py::arg("requests_per_minute") = 0, py::arg("burst") = 0, py::arg("requests_per_day") = 0,   \
      py::arg("request_schema") = py::none(), py::arg("response_schema") = py::none()

void add_route(const GatewayRef& self, const std::string& path, const py::object& handler,
               const std::optional<std::string>& id, const std::string& method,
               const std::optional<std::string>& match, const std::string& host,
               const std::vector<std::string>& auth, const std::vector<std::string>& groups,
               const std::string& summary, const std::vector<std::string>& tags,
               const std::string& cors, const std::string& version,
               std::uint32_t requests_per_minute, std::uint32_t burst,
               std::uint32_t requests_per_day, const Json& request_schema,
               const Json& response_schema) {
  if (!PyCallable_Check(handler.ptr())) throw py::type_error("handler must be callable");
  gateway::RouteOptions r =
      route_options(path, id, method, match, host, auth, groups, summary, tags, cors, version,
                    requests_per_minute, burst, requests_per_day, request_schema, response_schema);
  gateway::GatewayHandler h = python_handler(handler, r.id);
  check(self.with([&](Gateway& g) { return g.add_route(std::move(r), std::move(h)); }));
}

}  // namespace

void init_gateway(py::module_& m) {
  py::class_<PyRequest>(m, "Request",
                        "An HTTP request as a route handler gets it (a copy: it stays valid after "
                        "the handler returns).")
      .def_readonly("method", &PyRequest::method, "\"GET\", \"POST\", ...")
      .def_readonly("target", &PyRequest::target, "The request-target as sent (\"/p?x=1\").")
      .def_readonly("path", &PyRequest::path, "The target up to '?'.")
      .def_readonly("query", &PyRequest::query, "The target after '?' (\"\" when none).")
      .def_readonly("headers", &PyRequest::headers, "Header fields in arrival order.")
      .def_property_readonly(
          "body", [](const PyRequest& r) { return py::bytes(r.body); }, "The body (bytes).")
      .def_property_readonly(
          "text",
          [](const PyRequest& r) {
            return py::reinterpret_steal<py::str>(PyUnicode_DecodeUTF8(
                r.body.data(), static_cast<Py_ssize_t>(r.body.size()), "replace"));
          },
          "The body decoded as UTF-8.")
      .def_readonly("remote_address", &PyRequest::remote_address, "The client's IP address.")
      .def_readonly("remote_port", &PyRequest::remote_port, "The client's port.")
      .def_readonly("route_id", &PyRequest::route_id, "The id of the route that matched.")
      .def_property_readonly(
          "params",
          [](const PyRequest& r) {
            py::dict d;
            for (const auto& [k, v] : r.params) d[py::str(k)] = v;
            return d;
          },
          "Path parameters ({id} values, decoded).")
      .def_readonly("consumer_id", &PyRequest::consumer_id, "The authenticated consumer, or \"\".")
      .def_readonly("consumer_groups", &PyRequest::consumer_groups, "The consumer's groups.")
      .def_readonly("request_id", &PyRequest::request_id, "The gateway's request id.")
      .def("header", &PyRequest::header, py::arg("name"),
           "The first value of a header (case-insensitive), or None.")
      .def(
          "param",
          [](const PyRequest& r, std::string_view name) {
            for (const auto& [k, v] : r.params) {
              if (k == name) return v;
            }
            return std::string();
          },
          py::arg("name"), "A path parameter's value, or \"\".")
      .def(
          "json", [](const PyRequest& r) { return to_py(unwrap(Json::parse(r.body))); },
          "The body parsed as JSON; raises InvalidArgument when it is not JSON.")
      .def("__repr__", [](const PyRequest& r) {
        return fmt::format("<civicbus.Request {} {}>", r.method, r.target);
      });

  py::class_<PyResponse>(m, "Response",
                         "An HTTP response for a route handler to return. A handler may also "
                         "return a dict or list (JSON), str, bytes, None (204) or (body, status).")
      .def(py::init(&make_response), py::arg("body") = py::none(), py::arg("status") = 200,
           py::kw_only(), py::arg("headers") = py::none(), py::arg("content_type") = py::none(),
           "A response: `body` is str, bytes, or a JSON value (dict, list...); `headers` a dict "
           "or a list of (name, value); the Content-Type follows the body unless given.")
      .def_static(
          "json",
          [](const py::object& value, int status) {
            return make_response(value, status, py::none(), std::string("application/json"));
          },
          py::arg("value"), py::arg("status") = 200, "A JSON response.")
      .def_readwrite("status", &PyResponse::status, "The status code.")
      .def_readwrite("reason", &PyResponse::reason, "The reason phrase (\"\": the standard one).")
      .def_readwrite("headers", &PyResponse::headers, "Header fields.")
      .def_property(
          "body", [](const PyResponse& r) { return py::bytes(r.body); },
          [](PyResponse& r, const py::object& body) { r.body = body_bytes(body, nullptr); },
          "The body (bytes; set str, bytes or a JSON value).")
      .def("__repr__",
           [](const PyResponse& r) { return fmt::format("<civicbus.Response {}>", r.status); });

  py::class_<GatewayRef>(m, "Gateway", R"doc(
The API gateway: routing, authentication (API keys, JWT, HMAC, mTLS), rate limits, CORS, load
shedding and the admin API, in front of upstreams and of routes served by Python handlers.

Gateway(config) creates one from the `gateway` section of a node configuration (dict or YAML
text; docs/gateway.md); start() listens. A node's gateway (Node.gateway) is already listening.
Handlers run on the gateway's workers (with the GIL); they should not block for long.
)doc")
      .def(py::init(&create_gateway), py::arg("config") = py::none(), py::kw_only(),
           py::arg("bind_address") = py::none(), py::arg("port") = py::none(),
           py::arg("threads") = py::none(), py::arg("log_level") = "info",
           "Creates a gateway (not listening yet); keyword arguments override the listener's. "
           "Logs (one access line per request at info) go to stderr from `log_level` up "
           "(\"trace\", \"debug\", \"info\", \"warn\", \"error\" or \"off\").")
      .def("add_route", &add_route, py::arg("path"), py::arg("handler"), CIVICBUS_ROUTE_ARGS,
           R"doc(Serves `path` by handler(request) -> Response | dict | list | str | bytes |
None. `match` is "prefix", "exact" or "template" (default: template when the path has {params},
else prefix); `auth` lists the accepted credentials ("api_key", "jwt", "hmac", "mtls"; empty:
public); `id` defaults to "<method>:<path>". A handler that raises answers 500, or the status
of a civicbus.Error's code.)doc")
      .def(
          "route",
          [](const GatewayRef& self, const std::string& path, const std::optional<std::string>& id,
             const std::string& method, const std::optional<std::string>& match,
             const std::string& host, const std::vector<std::string>& auth,
             const std::vector<std::string>& groups, const std::string& summary,
             const std::vector<std::string>& tags, const std::string& cors,
             const std::string& version, std::uint32_t requests_per_minute, std::uint32_t burst,
             std::uint32_t requests_per_day, const Json& request_schema,
             const Json& response_schema) {
            return py::cpp_function([=](const py::object& handler) {
              add_route(self, path, handler, id, method, match, host, auth, groups, summary, tags,
                        cors, version, requests_per_minute, burst, requests_per_day, request_schema,
                        response_schema);
              return handler;
            });
          },
          py::arg("path"), CIVICBUS_ROUTE_ARGS,
          "A decorator form of add_route(): @gateway.route(\"/hello\", method=\"GET\").")
      .def(
          "start",
          [](const GatewayRef& self) {
            return unwrap(self.with([](Gateway& g) { return g.start(); }));
          },
          "Listens and returns the bound port (FailedPrecondition when already listening).")
      .def_property_readonly(
          "port",
          [](const GatewayRef& self) { return self.with([](Gateway& g) { return g.port(); }); },
          "The bound port (0 before start()).")
      .def(
          "stop",
          [](const GatewayRef& self) {
            self.with([](Gateway& g) {
              g.stop();
              return true;
            });
          },
          "Stops listening and waits for the workers.")
      .def(
          "close",
          [](const GatewayRef& self) {
            if (!self.owned) {
              throw StatusError(
                  failed_precondition("this is the node's gateway: it is closed with the node"));
            }
            refuse_close_in_callback("gateway");
            without_gil([&] { self.life->close(); });
          },
          "Stops and destroys a gateway created from Python (idempotent).")
      .def(
          "reload",
          [](const GatewayRef& self, const py::object& config) {
            NodeOptions options = section_options(config, "gateway");
            if (!options.gateway) {
              throw StatusError(invalid_argument("the gateway configuration is disabled"));
            }
            gateway::GatewayOptions o = std::move(*options.gateway);
            check(self.with([&](Gateway& g) { return g.reload(std::move(o)); }));
          },
          py::arg("config"),
          "Replaces routes, upstreams, consumers, CORS, versions and auth settings (routes "
          "added from Python stay); nothing changes when `config` does not validate.")
      .def(
          "add_consumer",
          [](const GatewayRef& self, const py::object& consumer,
             bool generate_api_key) -> std::optional<std::string> {
            py::dict wrapper;
            py::list list;
            list.append(consumer);
            wrapper["consumers"] = list;
            NodeOptions options = section_options(wrapper, "gateway");
            if (!options.gateway || options.gateway->consumers.size() != 1) {
              throw StatusError(invalid_argument("expected one consumer"));
            }
            gateway::ConsumerOptions c = std::move(options.gateway->consumers[0]);
            std::string key = unwrap(self.with(
                [&](Gateway& g) { return g.add_consumer(std::move(c), generate_api_key); }));
            if (key.empty()) return std::nullopt;
            return key;
          },
          py::arg("consumer"), py::kw_only(), py::arg("generate_api_key") = false,
          "Adds or replaces a consumer given as in the configuration ({\"id\", \"groups\", "
          "\"api_keys\", ...}); with generate_api_key, returns a new API key (shown once).")
      .def(
          "consumers",
          [](const GatewayRef& self) {
            std::vector<gateway::ConsumerInfo> list =
                self.with([](Gateway& g) { return g.consumers(); });
            py::list out;
            for (const auto& c : list) out.append(consumer_dict(c));
            return out;
          },
          "The consumers (no secrets): dicts of id, groups, api_keys (a count), hmac_key_ids, "
          "client_id, priority_tier.")
      .def(
          "openapi",
          [](const GatewayRef& self) { return self.with([](Gateway& g) { return g.openapi(); }); },
          "The OpenAPI 3.1 document of the routes (dict).")
      .def(
          "health",
          [](const GatewayRef& self) { return self.with([](Gateway& g) { return g.health(); }); },
          "Health as the admin API serves it (dict).")
      .def(
          "metrics",
          [](const GatewayRef& self) {
            return self.with([](Gateway& g) { return g.metrics_json(); });
          },
          "Metrics as the admin API serves them (dict).")
      .def(
          "metrics_text",
          [](const GatewayRef& self) {
            return self.with([](Gateway& g) { return g.metrics_text(); });
          },
          "Metrics in the Prometheus text format.")
      .def(
          "__enter__", [](const GatewayRef& self) { return self; }, "Returns the gateway.")
      .def(
          "__exit__",
          [](const GatewayRef& self, const py::object&, const py::object&, const py::object&) {
            if (self.owned) without_gil([&] { self.life->close(); });
          },
          py::arg("exc_type"), py::arg("exc"), py::arg("traceback"),
          "Closes a gateway created from Python.");
}

}  // namespace civicbus::python
