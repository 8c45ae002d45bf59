// The Gateway. Configuration is compiled into an immutable Snapshot (router, routes with their
// policies and metric handles, upstream pools) that a request holds for its whole life; a
// reload builds a new one and swaps it in. Consumers, rate-limit counters and the load
// shedder live beside the snapshot and survive reloads.
//
// A request runs on the listener worker that read it, from HttpServer's asynchronous handler:
// each step either answers (finish) or passes the Exchange on. Upstream requests go through an
// HttpClient that runs on the same worker's event loop (one per worker and upstream), so a
// proxied request never changes threads.
#include "civicbus/gateway/gateway.hpp"

#include <algorithm>
#include <array>
#include <asio.hpp>
#include <atomic>
#include <charconv>
#include <map>
#include <mutex>
#include <unordered_map>

#include "civicbus/core/crypto.hpp"
#include "civicbus/core/id.hpp"
#include "civicbus/http/client.hpp"
#include "civicbus/http/server.hpp"
#include "core/read_file.hpp"
#include "gateway/consumers.hpp"
#include "gateway/cors.hpp"
#include "gateway/http_signature.hpp"
#include "gateway/ip_allowlist.hpp"
#include "gateway/jwt.hpp"
#include "gateway/load_shedder.hpp"
#include "gateway/openapi.hpp"
#include "gateway/rate_limiter.hpp"
#include "gateway/router.hpp"
#include "gateway/trace_context.hpp"
#include "gateway/transform.hpp"
#include "gateway/upstream_pool.hpp"
#include "gateway/versioning.hpp"
#include "http/client_access.hpp"
#include "http/framing.hpp"
#include "http/response_parser.hpp"
#include "http/server_access.hpp"

namespace civicbus::gateway {

using namespace std::string_view_literals;

http::HttpResponse json_response(int status, const Json& body) {
  http::HttpResponse r;
  r.status = status;
  r.headers.add("Content-Type", "application/json");
  r.body = body.dump();
  return r;
}

namespace {

using http::HttpHeaders;
using http::HttpRequest;
using http::HttpResponse;
using http::detail::same_name;

constexpr std::string_view kAdminPrefix = "/api/v1/gateway";
constexpr std::string_view kOpenApiPath = "/api/v1/openapi.json";

// RFC 9457 problem details; every error the gateway makes itself looks like this.
HttpResponse problem(int status, std::string_view detail, std::string_view request_id = {},
                     std::string_view code = {}) {
  HttpResponse r;
  r.status = status;
  r.headers.add("Content-Type", "application/problem+json");
  Json body = Json::object({{"type", "about:blank"},
                            {"title", std::string(http::reason_phrase(status))},
                            {"status", status},
                            {"detail", std::string(detail)}});
  if (!request_id.empty()) body.set("request_id", std::string(request_id));
  if (!code.empty()) body.set("code", std::string(code));  // clients can branch on it
  r.body = body.dump();
  return r;
}

// What a proxy does with a field of a message it passes on. Each field of every proxied
// message is looked up here: the names are told apart by length first, so most fields cost
// one comparison or none.
enum class FieldRole {
  kEndToEnd,       // passed on
  kHopByHop,       // dropped (RFC 9110 7.6.1)
  kConnection,     // dropped, and the names it lists too
  kContentLength,  // dropped: the gateway frames the message it sends itself
  kDate,           // passed on (noted: the server adds none)
  kServer,         // likewise
};

FieldRole field_role(std::string_view name) {
  auto hop_by_hop_if = [](bool is) { return is ? FieldRole::kHopByHop : FieldRole::kEndToEnd; };
  switch (name.size()) {
    case 2:
      return hop_by_hop_if(same_name(name, "TE"));
    case 4:
      return same_name(name, "Date") ? FieldRole::kDate : FieldRole::kEndToEnd;
    case 6:
      return same_name(name, "Server") ? FieldRole::kServer : FieldRole::kEndToEnd;
    case 7:
      return hop_by_hop_if(same_name(name, "Trailer") || same_name(name, "Upgrade"));
    case 10:
      if (same_name(name, "Connection")) return FieldRole::kConnection;
      return hop_by_hop_if(same_name(name, "Keep-Alive"));
    case 14:
      return same_name(name, "Content-Length") ? FieldRole::kContentLength : FieldRole::kEndToEnd;
    case 16:
      return hop_by_hop_if(same_name(name, "Proxy-Connection"));
    case 17:
      return hop_by_hop_if(same_name(name, "Transfer-Encoding"));
    case 18:
      return hop_by_hop_if(same_name(name, "Proxy-Authenticate"));
    case 19:
      return hop_by_hop_if(same_name(name, "Proxy-Authorization"));
    default:
      return FieldRole::kEndToEnd;
  }
}

bool is_hop_by_hop(std::string_view name) {
  const FieldRole role = field_role(name);
  return role == FieldRole::kHopByHop || role == FieldRole::kConnection;
}

// What proxy() does with a field of the client's request, beside dropping hop-by-hop ones.
enum class RequestField {
  kCopy,
  kGatewaySets,    // replaced by the gateway's own value, or consumed by it (API keys)
  kAuthorization,  // dropped when it carried the API key
  kForwardedFor,   // extended, not copied
};

RequestField request_field(std::string_view name) {
  if (name.size() >= 11 && same_name(name.substr(0, 11), "X-Consumer-")) {
    return RequestField::kGatewaySets;
  }
  bool sets = false;
  switch (name.size()) {
    case 4:
      sets = same_name(name, "Host");
      break;
    case 6:
      sets = same_name(name, "apikey");
      break;
    case 9:
      sets = same_name(name, "X-API-Key");
      break;
    case 11:
      sets = same_name(name, "traceparent");
      break;
    case 12:
      sets = same_name(name, "X-Request-Id");
      break;
    case 13:
      if (same_name(name, "Authorization")) return RequestField::kAuthorization;
      break;
    case 15:
      if (same_name(name, "X-Forwarded-For")) return RequestField::kForwardedFor;
      break;
    case 16:
      sets = same_name(name, "X-Forwarded-Host");
      break;
    case 17:
      sets = same_name(name, "X-Forwarded-Proto");
      break;
    default:
      break;
  }
  return sets ? RequestField::kGatewaySets : RequestField::kCopy;
}

// Field names listed in Connection (RFC 9110 7.6.1) are hop-by-hop too. Calls f(name) for
// each name one Connection value lists, leaving out those that are hop-by-hop anyway
// ("keep-alive"; "close" is no field), so the usual "Connection: keep-alive" lists none.
template <class F>
void for_each_connection_option(std::string_view value, F f) {
  std::size_t at = 0;
  while (at <= value.size()) {
    std::size_t comma = value.find(',', at);
    if (comma == std::string_view::npos) comma = value.size();
    const std::string_view token = http::detail::trim_ows(value.substr(at, comma - at));
    if (!token.empty() && !is_hop_by_hop(token) && !same_name(token, "close")) {
      f(token);
    }
    at = comma + 1;
  }
}

// The names every Connection field of `headers` lists (for_each_connection_option); the views
// point into `headers`.
std::vector<std::string_view> connection_options(const HttpHeaders& headers) {
  std::vector<std::string_view> out;
  headers.for_each("Connection", [&](std::string_view value) {
    for_each_connection_option(value, [&](std::string_view name) { out.push_back(name); });
  });
  return out;
}

template <class Names>
bool listed(const Names& names, std::string_view name) {
  return std::any_of(names.begin(), names.end(),
                     [&](std::string_view n) { return same_name(n, name); });
}

const char* auth_method_name(AuthMethod m) {
  switch (m) {
    case AuthMethod::kApiKey:
      return "key-auth";
    case AuthMethod::kJwt:
      return "jwt";
    case AuthMethod::kHmac:
      return "hmac";
    case AuthMethod::kMtls:
      return "mtls";
  }
  return "?";
}

// application/x-www-form-urlencoded (RFC 6749 uses it for the token request).
Result<std::map<std::string, std::string>> parse_form(std::string_view body) {
  std::map<std::string, std::string> out;
  auto decode = [](std::string_view s) -> Result<std::string> {
    std::string v;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '+') {
        v += ' ';
      } else if (s[i] == '%') {
        if (i + 2 >= s.size()) {
          return invalid_argument("truncated percent-escape in form body");
        }
        auto hex = crypto::from_hex(s.substr(i + 1, 2));
        if (!hex.ok()) return invalid_argument("bad percent-escape in form body");
        v += *hex;
        i += 2;
      } else {
        v += s[i];
      }
    }
    return v;
  };
  std::size_t at = 0;
  while (at < body.size()) {
    std::size_t amp = body.find('&', at);
    if (amp == std::string_view::npos) amp = body.size();
    std::string_view pair = body.substr(at, amp - at);
    if (!pair.empty()) {
      const std::size_t eq = pair.find('=');
      CIVICBUS_ASSIGN_OR_RETURN(std::string key, decode(pair.substr(0, eq)));
      CIVICBUS_ASSIGN_OR_RETURN(
          std::string value,
          decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1)));
      if (out.count(key) != 0) {
        return invalid_argument("parameter '" + key + "' is repeated");  // RFC 6749 3.2
      }
      out.emplace(std::move(key), std::move(value));
    }
    at = amp + 1;
  }
  return out;
}

struct JwksUrl {
  bool https = false;
  std::string authority;  // host:port, the port filled in from the scheme when absent
  std::string target;     // path and query
};

Result<JwksUrl> parse_jwks_url(const std::string& url) {
  JwksUrl out;
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    out.https = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else {
    return invalid_argument("jwt.jwks_url '" + url + "' must start with http:// or https://");
  }
  const std::size_t slash = rest.find('/');
  out.authority = rest.substr(0, slash);
  out.target = slash == std::string::npos ? "/" : rest.substr(slash);
  const std::size_t bracket = out.authority.rfind(']');
  const std::size_t colon = out.authority.rfind(':');
  if (colon == std::string::npos || (bracket != std::string::npos && colon < bracket)) {
    out.authority += out.https ? ":443" : ":80";
  }
  if (!http::Upstream::parse(out.authority).ok()) {
    return invalid_argument("jwt.jwks_url '" + url + "' has no valid host[:port]");
  }
  return out;
}

// The route's forwarded path: strip_prefix removed, upstream_prefix put in front, as the two
// pieces `prefix` + `rest` (views of the route and of `path`: the gateway writes them onto the
// wire without making the path a string of its own).
struct ForwardedPath {
  std::string_view prefix;
  std::string_view rest;
};

ForwardedPath rewrite_path(const RouteOptions& route, std::string_view path) {
  std::string_view rest = path;
  const std::string& strip = route.strip_prefix;
  if (!strip.empty() && strip != "/" && rest.starts_with(strip) &&
      (rest.size() == strip.size() || rest[strip.size()] == '/')) {
    rest.remove_prefix(strip.size());
    if (rest.empty()) rest = "/";
  }
  if (route.upstream_prefix.empty() || route.upstream_prefix == "/") return {{}, rest};
  std::string_view prefix = route.upstream_prefix;
  if (prefix.back() == '/') prefix.remove_suffix(1);
  return {prefix, rest};
}

// The per-route metric handles, looked up once per snapshot instead of once per request.
struct RouteMetrics {
  std::array<Counter*, 5> responses{};  // 1xx .. 5xx
  Histogram* duration = nullptr;
};

struct CompiledRoute {
  RouteOptions options;
  GatewayHandler handler;  // in-process routes
  bool builtin = false;    // the gateway's own (admin, token endpoint, OpenAPI)
  std::shared_ptr<UpstreamPool> pool;
  const UpstreamOptions* upstream = nullptr;
  std::optional<IpAllowlist> ip;
  const CorsPolicy* cors = nullptr;
  const ApiVersionPolicy* version = nullptr;
  RouteMetrics metrics;
};

struct Snapshot {
  std::uint64_t generation = 0;
  GatewayOptions options;
  Router router;
  std::vector<CompiledRoute> routes;  // in the router's order: RouteResult::index finds one
  std::map<std::string, CorsPolicy> cors;
  std::map<std::string, ApiVersionPolicy> versions;
  std::vector<std::shared_ptr<UpstreamPool>> pools;  // in options.upstreams order
  // Their targets parsed (UpstreamPoolOptions::validate checked them), by pool, then target.
  std::vector<std::vector<http::Upstream>> addresses;
  std::vector<MetricsRegistry::CallbackHandle> gauges;
};

}  // namespace

int http_status_of(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kUnauthenticated:
      return 401;
    case ErrorCode::kPermissionDenied:
      return 403;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kFailedPrecondition:
      return 409;
    case ErrorCode::kResourceExhausted:
      return 429;
    case ErrorCode::kUnavailable:
      return 503;
    case ErrorCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

http::HttpResponse problem_response(const Status& status) {
  return problem(http_status_of(status.code()), status.message(), {},
                 error_code_name(status.code()));
}

std::string_view GatewayRequest::param(std::string_view name) const {
  for (const auto& [n, v] : params) {
    if (n == name) return v;
  }
  return {};
}

// A proxied response's fields, written on as the listener's own lines (http::detail::OwnFields)
// as the client's parser hands them over, without HttpHeaders entries: hop-by-hop fields and
// Content-Length (the server sets it) are left out, Date and Server noted. A field named in
// Connection is hop-by-hop too; such a name is known only once every field has come, so it is
// noted here and its lines are taken out by drop_connection_options().
class UpstreamFields final : public http::detail::FieldSink {
 public:
  void attach(http::detail::OwnFields* own) { own_ = own; }
  void restart() override {
    if (own_ != nullptr) own_->clear();
    size_ = 0;
    count_ = 0;
    lengths_ = 0;
    connection_.clear();
  }
  // The parser has checked the name and value (FieldSink): nothing in them can split a line.
  void field(std::string_view name, std::string_view value) override {
    if (own_ == nullptr) return;
    switch (field_role(name)) {
      case FieldRole::kHopByHop:
      case FieldRole::kContentLength:
        return;
      case FieldRole::kConnection:
        for_each_connection_option(value, [&](std::string_view option) {
          if (!connection_.empty()) connection_ += ',';
          connection_ += option;
        });
        return;
      case FieldRole::kDate:
        own_->has_date = true;
        break;
      case FieldRole::kServer:
        own_->has_server = true;
        break;
      case FieldRole::kEndToEnd:
        break;
    }
    lengths_ |= length_bit(name);
    if (count_ < kIndexed) index_[count_] = {own_->lines.size(), name.size()};
    ++count_;
    // The lines keep their room from response to response.
    http::detail::append_field_line(own_->lines, name, value);
    size_ = own_->lines.size();
  }
  // Takes out the lines of fields the response's Connection field named (RFC 9110 7.6.1).
  void drop_connection_options();
  // Whether a field of that name was written on (case-insensitive).
  bool has(std::string_view name) const;

  static std::uint64_t length_bit(std::string_view name) {
    return name.size() < 64 ? std::uint64_t{1} << name.size() : 0;
  }
  // Bit n: a field name of n bytes was written on (n < 64).
  std::uint64_t lengths() const { return lengths_; }

 private:
  // Calls f(name, value) for each field line of `lines` ("name: value\r\n" each).
  template <class F>
  static void for_each_line(std::string_view lines, F f);

  http::detail::OwnFields* own_ = nullptr;
  std::size_t size_ = 0;  // the bytes of own_->lines that are the response's fields
  std::uint64_t lengths_ = 0;
  // Where the names of the first fields are, for has(): a response rarely has more.
  static constexpr std::size_t kIndexed = 16;
  struct Name {  // no initialisers: only the first count_ are read, and each is set first
    std::size_t at;
    std::size_t size;
  };
  std::array<Name, kIndexed> index_;
  std::size_t count_ = 0;
  std::string connection_;  // the Connection values, joined
};

template <class F>
void UpstreamFields::for_each_line(std::string_view lines, F f) {
  std::size_t at = 0;
  while (at < lines.size()) {
    const std::size_t end = lines.find("\r\n", at);
    const std::string_view line = lines.substr(at, end - at);
    const std::size_t colon = line.find(':');
    f(line.substr(0, colon), line.substr(colon + 2));  // written as "name: value"
    at = end + 2;
  }
}

bool UpstreamFields::has(std::string_view name) const {
  const std::uint64_t bit = length_bit(name);
  if (own_ == nullptr || (bit != 0 && (bit & lengths_) == 0)) return false;
  const std::string_view lines = std::string_view(own_->lines).substr(0, size_);
  if (count_ <= kIndexed) {
    return std::any_of(index_.begin(), index_.begin() + static_cast<std::ptrdiff_t>(count_),
                       [&](const Name& n) { return same_name(lines.substr(n.at, n.size), name); });
  }
  bool found = false;
  for_each_line(lines,
                [&](std::string_view n, std::string_view) { found = found || same_name(n, name); });
  return found;
}

// The fields written on so far are written on again, without those the Connection field
// named: field() does the bookkeeping (index, lengths, Date and Server) as it did the first time.
void UpstreamFields::drop_connection_options() {
  if (own_ == nullptr || connection_.empty()) return;
  std::vector<std::string> listed;
  for_each_connection_option(connection_,
                             [&](std::string_view name) { listed.emplace_back(name); });
  const std::string written = own_->lines.substr(0, size_);
  restart();  // also forgets connection_
  for_each_line(written, [&](std::string_view name, std::string_view value) {
    if (std::none_of(listed.begin(), listed.end(),
                     [&](const std::string& l) { return same_name(l, name); })) {
      field(name, value);
    }
  });
}

// ---- Impl ---------------------------------------------------------------------------------

struct Gateway::Impl {
  // One request on its way through the gateway.
  struct Exchange {
    explicit Exchange(HttpRequest& r) : request(r) {}
    std::shared_ptr<const Snapshot> snap;
    const CompiledRoute* route = nullptr;
    // The connection's request (the server's parser's), used in place: it stays as it is
    // until serve() returns, and nothing reads it after the exchange is answered. A
    // continuation that runs after serve() is gone (`out` null) must not touch it.
    HttpRequest& request;
    // The request fields the steps before dispatch() read, found in one pass over the fields
    // (serve()); each the first of its name. They view `request`, whose fields do not change
    // until dispatch() (a request transform may rewrite them there).
    struct Fields {
      std::optional<std::string_view> host;
      std::optional<std::string_view> request_id;
      std::optional<std::string_view> traceparent;
      std::optional<std::string_view> apikey;
      std::optional<std::string_view> x_api_key;
      std::optional<std::string_view> authorization;
      bool signature = false;  // Signature or Signature-Input
    } fields;
    std::size_t worker = 0;
    SteadyTime start{};
    std::vector<std::pair<std::string, std::string>> params;
    // Normalised: a view of request.target when that was already normal (most are), else
    // of path_storage.
    std::string_view path;
    std::string path_storage;
    // The client's X-Request-Id when acceptable (copied into id_storage: a transform may
    // change the request's fields), else a new one in id_text.
    std::string_view request_id;
    std::string id_storage;
    std::array<char, 36> id_text;
    TraceParent trace;
    std::shared_ptr<const Consumer> consumer;
    AuthMethod auth_method = AuthMethod::kApiKey;
    // Added to whatever the answer is, unless the answer has a field of that name (Vary adds
    // up): the request id and RateLimit fields are kept as values, the rest as fields.
    HttpHeaders response_headers;
    std::optional<RateLimitDecision> rate_shown;  // the RateLimit fields, when a policy applied
    bool via = false;                             // Via: the answer came from an upstream
    LoadShedder::Ticket ticket;
    UpstreamPool::Lease lease;
    std::string_view upstream_target;  // in snap's options
    std::uint32_t attempts = 0;
    bool jwks_refreshed = false;
    std::optional<std::string> client_accept;  // kept when a transform rewrote Accept
    // What serve() does next: answer (`answered`, set once by finish(), the response being in
    // *out) or send `call` upstream. While neither is set the exchange went asynchronous (a
    // JWKS fetch) and serve() waits on `waiter`, which finish() and proxy() cancel.
    // `out` is the connection's response, null once serve() is gone (the server stopped).
    // `own` takes the lines the server writes after the response's fields (the proxied
    // response's, by `upstream_fields`, then the gateway's own, by complete()), also null once
    // serve() is gone.
    HttpResponse* out = nullptr;
    http::detail::OwnFields* own = nullptr;
    // The upstream response's fields when they go straight to `own` (a route without
    // transforms); `passed_on` once upstream_answered() took that response as the answer
    // (else complete() drops what they wrote).
    UpstreamFields upstream_fields;
    bool fields_to_own = false;
    bool passed_on = false;
    bool answered = false;
    struct UpstreamCall {
      http::HttpClient* client = nullptr;
      const http::Upstream* upstream = nullptr;  // in the snapshot, which the exchange holds
      std::string wire;                          // the whole request (ClientAccess::send_wire)
      bool may_retry = false;
      http::detail::FieldSink* sink = nullptr;  // the response's fields go there
    };
    std::optional<UpstreamCall> call;
    asio::steady_timer* waiter = nullptr;
    void wake() const {
      if (waiter != nullptr) waiter->cancel();
    }
  };
  using ExchangePtr = std::shared_ptr<Exchange>;

  // What one listener worker keeps; touched only on that worker's thread.
  struct Worker {
    asio::io_context* io = nullptr;
    std::uint64_t generation = 0;  // the snapshot the clients were made for
    std::unordered_map<std::string, std::unique_ptr<http::HttpClient>> clients;  // by upstream
    std::vector<std::unique_ptr<http::HttpClient>> retired;  // of older snapshots
    std::unique_ptr<http::HttpClient> health_client;         // worker 0 only
    std::vector<std::shared_ptr<asio::steady_timer>> health_timers;
    std::shared_ptr<asio::steady_timer> maintenance;  // worker 0: idle rate-limit keys
    bool stopped = false;
    // Request and trace ids: not secrets, so a fast generator per worker, seeded from the
    // secure one, instead of the shared CSPRNG and its lock on every request.
    std::unique_ptr<SeededRandom> random;
    std::unique_ptr<IdGenerator> ids;
    ApiKeyCache api_keys;  // of `consumers`, for this worker's requests
    // The current snapshot as of installs == snap_installs, aliased onto a control block of
    // this worker's own: requests copy it without the lock or a count shared by the workers.
    std::shared_ptr<const Snapshot> snap;
    std::uint64_t snap_installs = 0;
  };

  GatewayOptions options;  // the latest applied configuration
  SystemClock own_clock;
  std::unique_ptr<SecureRandom> own_random;
  std::unique_ptr<MetricsRegistry> own_metrics;
  const Clock* clock = nullptr;
  RandomSource* random = nullptr;
  MetricsRegistry* metrics = nullptr;
  Logger log;
  Logger access_log;
  std::unique_ptr<IdGenerator> ids;
  std::function<Status()> reload_config;

  ConsumerStore consumers;
  std::unique_ptr<RateLimiter> limiter;
  std::unique_ptr<LoadShedder> shedder;

  mutable std::mutex snap_mu;
  std::shared_ptr<const Snapshot> snapshot;
  std::atomic<std::uint64_t> installs{0};  // counts install()s, after the swap
  std::uint64_t next_generation = 1;
  std::vector<std::pair<RouteOptions, GatewayHandler>> code_routes;  // guarded by snap_mu

  // The token endpoint's signing key and the verifier of its tokens.
  std::optional<Jwk> signing_key;
  std::unique_ptr<JwtVerifier> own_verifier;
  // Tokens of other issuers: keys from jwt.jwks_file and jwt.jwks_url.
  std::mutex jwks_mu;
  JwkSet file_keys;
  JwkSet url_keys;
  std::shared_ptr<const JwtVerifier> external_verifier;
  std::optional<SteadyTime> last_jwks_fetch;
  std::vector<std::function<void()>> jwks_waiters;  // requests waiting for a refresh
  bool jwks_fetching = false;
  std::unique_ptr<http::HttpClient> jwks_client;
  std::string jwks_client_url;  // the URL jwks_client was made for
  std::unique_ptr<HttpSignatureVerifier> hmac;

  std::unique_ptr<http::HttpServer> server;
  std::vector<Worker> workers;
  std::atomic<bool> running{false};

  Counter* auth_failures = nullptr;
  Counter* rate_limited = nullptr;
  Counter* shed = nullptr;
  std::vector<MetricsRegistry::CallbackHandle> gauges;

  // ---- configuration ----

  Result<std::shared_ptr<const Snapshot>> compile(const GatewayOptions& next);
  Status add_builtin_routes(Snapshot& snap);
  Status add_compiled_route(Snapshot& snap, RouteOptions route, GatewayHandler handler,
                            bool builtin);
  Status load_jwt_keys(const JwtAuthOptions& jwt);
  void rebuild_external_verifier();  // under jwks_mu
  void install(std::shared_ptr<const Snapshot> snap);
  std::shared_ptr<const Snapshot> current() const {
    std::lock_guard lock(snap_mu);
    return snapshot;
  }

  // ---- the request path (on the worker) ----

  // A request from the listener, in its connection's coroutine on worker `worker`: the steps
  // below run until one answers or asks for the upstream, which is awaited here.
  asio::awaitable<void> serve(HttpRequest& request, HttpResponse& out, http::detail::OwnFields& own,
                              std::size_t worker);
  static void find_fields(const HttpHeaders& headers, Exchange::Fields& out);
  void route_request(const ExchangePtr& ex);
  void authenticate(const ExchangePtr& ex);
  Status authenticate_jwt(const ExchangePtr& ex, std::string_view token, bool* wait_for_keys);
  void admit(const ExchangePtr& ex);
  void dispatch(const ExchangePtr& ex);
  void proxy(const ExchangePtr& ex);  // prepares ex->call
  // The upstream's response is in *ex->out when `sent` is OK.
  void upstream_answered(const ExchangePtr& ex, const Status& sent, bool may_retry);
  void finish(const ExchangePtr& ex, HttpResponse response);
  // finish() for a response already in `response` (*ex->out, or a stand-in once it is gone).
  void complete(const ExchangePtr& ex, HttpResponse& response);
  static void write_own_fields(const Exchange& ex, const HttpResponse& response,
                               http::detail::OwnFields& own);
  // Route transforms (RouteOptions::upstream_format); an error is the answer to send.
  std::optional<HttpResponse> transform_request(const ExchangePtr& ex);
  void transform_response(const ExchangePtr& ex, HttpResponse& response);
  void deny_unauthenticated(const ExchangePtr& ex, std::string_view reason);
  http::HttpClient* client_for(Worker& worker, const Snapshot& snap, std::size_t upstream);
  void refresh_jwks(std::function<void()> then);

  // ---- built-in handlers ----

  HttpResponse token_endpoint(const GatewayRequest& r);
  HttpResponse admin_consumers_post(const GatewayRequest& r);
  Result<std::string> add_consumer(ConsumerOptions consumer, bool generate_api_key);
  Json consumers_json() const;
  Json health_json() const;
  Json metrics_json() const;
  Json openapi_json() const;

  // ---- maintenance (worker 0) ----
  void schedule_maintenance();

  // ---- health checks (worker 0) ----
  void start_health_checks(std::shared_ptr<const Snapshot> snap);
  void schedule_probe(std::shared_ptr<const Snapshot> snap, std::size_t upstream,
                      std::shared_ptr<asio::steady_timer> timer);
};

// ---- configuration ---------------------------------------------------------------------------

Status Gateway::Impl::add_compiled_route(Snapshot& snap, RouteOptions route, GatewayHandler handler,
                                         bool builtin) {
  const std::string name = "route '" + route.id + "'";
  if (route.id.empty()) return invalid_argument("a route has no id");
  if (handler && !route.upstream.empty()) {
    return invalid_argument(name + ": an in-process route has no upstream");
  }
  if (!handler && route.upstream.empty()) {
    return invalid_argument(name + " has no upstream (and no in-process handler)");
  }
  CompiledRoute compiled;
  if (!route.upstream.empty()) {
    auto it = std::find_if(snap.options.upstreams.begin(), snap.options.upstreams.end(),
                           [&](const UpstreamOptions& u) { return u.name == route.upstream; });
    if (it == snap.options.upstreams.end()) {
      return invalid_argument(name + " names upstream '" + route.upstream +
                              "', which is not defined");
    }
    const auto index = static_cast<std::size_t>(it - snap.options.upstreams.begin());
    compiled.upstream = &*it;
    compiled.pool = snap.pools[index];
  }
  if (!route.ip.allow.empty() || !route.ip.deny.empty()) {
    auto list = IpAllowlist::create(route.ip);
    if (!list.ok()) return list.status().with_context(name);
    compiled.ip = std::move(list).value();
  }
  if (!route.cors.empty()) {
    auto it = snap.cors.find(route.cors);
    if (it == snap.cors.end()) {
      return invalid_argument(name + " names CORS policy '" + route.cors +
                              "', which is not defined");
    }
    compiled.cors = &it->second;
  }
  if (!route.version.empty()) {
    auto it = snap.versions.find(route.version);
    if (it == snap.versions.end()) {
      return invalid_argument(name + " names API version '" + route.version +
                              "', which is not defined");
    }
    compiled.version = &it->second;
  }
  if (!route.groups.empty() && route.auth.empty()) {
    return invalid_argument(name + " restricts groups but accepts no credentials (auth is empty)");
  }
  RouteSpec spec{route.id, route.method, route.host, route.match, route.path};
  if (Status added = snap.router.add(spec); !added.ok()) return added;
  const Labels labels{{"route", route.id}};
  static constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  for (std::size_t i = 0; i < 5; ++i) {
    compiled.metrics.responses[i] = &metrics->counter(
        "civicbus_gateway_responses_total", "Responses sent by the gateway, by route and class",
        {{"route", route.id}, {"class", kClasses[i]}});
  }
  compiled.metrics.duration =
      &metrics->histogram("civicbus_gateway_request_duration_seconds",
                          "Time from the request's arrival to its response, by route", labels);
  compiled.options = std::move(route);
  compiled.handler = std::move(handler);
  compiled.builtin = builtin;
  snap.routes.push_back(std::move(compiled));
  return Status();
}

namespace {

// A route of the gateway's own (exact path, tagged "gateway" in OpenAPI).
RouteOptions builtin_route(std::string id, std::string method, std::string path,
                           std::string summary) {
  RouteOptions r;
  r.id = std::move(id);
  r.method = std::move(method);
  r.match = PathKind::kExact;
  r.path = std::move(path);
  r.summary = std::move(summary);
  r.tags = {"gateway"};
  return r;
}

}  // namespace

Status Gateway::Impl::add_builtin_routes(Snapshot& snap) {
  const GatewayOptions& o = snap.options;
  if (o.oauth.enabled) {
    const RouteOptions token =
        builtin_route("gateway.oauth2_token", "POST", o.oauth.path,
                      "OAuth 2.0 client credentials token endpoint (RFC 6749 4.4)");
    CIVICBUS_RETURN_IF_ERROR(add_compiled_route(
        snap, token, [this](const GatewayRequest& r) { return token_endpoint(r); }, true));
    const RouteOptions jwks =
        builtin_route("gateway.jwks", "GET", o.oauth.jwks_path,
                      "The public keys that sign the gateway's tokens (JWKS)");
    CIVICBUS_RETURN_IF_ERROR(add_compiled_route(
        snap, jwks,
        [this](const GatewayRequest&) {
          JwkSet set;
          if (signing_key) (void)set.add(*signing_key);
          HttpResponse r = json_response(200, set.public_jwks());
          r.headers.set("Content-Type", "application/jwk-set+json");
          r.headers.add("Cache-Control", "max-age=300");
          return r;
        },
        true));
  }
  const RouteOptions openapi =
      builtin_route("gateway.openapi", "GET", std::string(kOpenApiPath), "This document");
  CIVICBUS_RETURN_IF_ERROR(add_compiled_route(
      snap, openapi, [this](const GatewayRequest&) { return json_response(200, openapi_json()); },
      true));
  if (!o.admin.enabled) return Status();
  const RouteOptions health =
      builtin_route("gateway.health", "GET", std::string(kAdminPrefix) + "/health",
                    "Gateway health: ok, or degraded when an upstream has no healthy target");
  CIVICBUS_RETURN_IF_ERROR(add_compiled_route(
      snap, health,
      [this](const GatewayRequest&) {
        Json h = health_json();
        return json_response(h.get_string("status") == "ok" ? 200 : 503, h);
      },
      true));
  const std::vector<AuthMethod> admin_auth = {AuthMethod::kApiKey, AuthMethod::kJwt,
                                              AuthMethod::kHmac};
  RouteOptions list =
      builtin_route("gateway.consumers_list", "GET", std::string(kAdminPrefix) + "/consumers",
                    "The consumers, without secrets");
  list.auth = admin_auth;
  list.groups = {o.admin.group};
  CIVICBUS_RETURN_IF_ERROR(add_compiled_route(
      snap, list, [this](const GatewayRequest&) { return json_response(200, consumers_json()); },
      true));
  RouteOptions create = list;
  create.id = "gateway.consumers_create";
  create.method = "POST";
  create.summary = "Adds or replaces a consumer; generate_api_key returns a new key once";
  create.request_schema = Json::object(
      {{"type", "object"},
       {"required", Json::array({"id"})},
       {"properties",
        Json::object({{"id", Json::object({{"type", "string"}})},
                      {"groups", Json::object({{"type", "array"},
                                               {"items", Json::object({{"type", "string"}})}})},
                      {"generate_api_key", Json::object({{"type", "boolean"}})},
                      {"priority_tier", Json::object({{"type", "integer"}})}})}});
  CIVICBUS_RETURN_IF_ERROR(add_compiled_route(
      snap, create, [this](const GatewayRequest& r) { return admin_consumers_post(r); }, true));
  RouteOptions reload = list;
  reload.id = "gateway.reload";
  reload.method = "POST";
  reload.path = std::string(kAdminPrefix) + "/reload";
  reload.summary = "Reads the configuration again and applies it (as SIGHUP does)";
  CIVICBUS_RETURN_IF_ERROR(add_compiled_route(
      snap, reload,
      [this](const GatewayRequest& r) {
        if (!reload_config) {
          return problem(501, "this gateway has no configuration source to reload from",
                         r.request_id);
        }
        Status s = reload_config();
        if (!s.ok()) {
          log.warn("reload refused", {{"by", std::string(r.consumer_id)}, {"error", s.message()}});
          return problem(s.code() == ErrorCode::kInvalidArgument ? 422 : 400, s.message(),
                         r.request_id);
        }
        log.info("reloaded through the admin API", {{"by", std::string(r.consumer_id)}});
        return json_response(200, Json::object({{"status", "reloaded"}}));
      },
      true));
  RouteOptions metrics_route = list;
  metrics_route.id = "gateway.metrics";
  metrics_route.method = "GET";
  metrics_route.path = std::string(kAdminPrefix) + "/metrics";
  metrics_route.summary = "Metrics: Prometheus text, or JSON with Accept: application/json";
  CIVICBUS_RETURN_IF_ERROR(add_compiled_route(
      snap, metrics_route,
      [this](const GatewayRequest& r) {
        const auto accept = r.http.headers.get("Accept");
        if (accept && accept->find("application/json") != std::string_view::npos) {
          return json_response(200, metrics_json());
        }
        HttpResponse out;
        out.headers.add("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        out.body = metrics->prometheus_text();
        return out;
      },
      true));
  return Status();
}

Result<std::shared_ptr<const Snapshot>> Gateway::Impl::compile(const GatewayOptions& next) {
  auto snap = std::make_shared<Snapshot>();
  snap->options = next;
  // RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ). It is forwarded as it is.
  const std::string& scheme = snap->options.scheme;
  if (scheme.empty() || !std::isalpha(static_cast<unsigned char>(scheme[0])) ||
      !std::all_of(scheme.begin(), scheme.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
      })) {
    return invalid_argument("scheme '" + scheme + "' is not a URI scheme (e.g. 'https')");
  }
  // Upstreams.
  for (const UpstreamOptions& u : snap->options.upstreams) {
    if (std::count_if(snap->options.upstreams.begin(), snap->options.upstreams.end(),
                      [&](const UpstreamOptions& o) { return o.name == u.name; }) > 1) {
      return invalid_argument("upstream '" + u.name + "' is defined twice");
    }
    if (u.connect_timeout.count() <= 0 || u.request_timeout.count() <= 0) {
      return invalid_argument("upstream '" + u.name + "': timeouts must be positive");
    }
    if (u.max_connections_per_target == 0) {
      return invalid_argument("upstream '" + u.name +
                              "': max_connections_per_target must be at least 1");
    }
    CIVICBUS_ASSIGN_OR_RETURN(std::unique_ptr<UpstreamPool> pool, UpstreamPool::create(u, *clock));
    snap->pools.push_back(std::move(pool));
    std::vector<http::Upstream>& addresses = snap->addresses.emplace_back();
    for (const std::string& target : u.targets) {
      CIVICBUS_ASSIGN_OR_RETURN(http::Upstream address, http::Upstream::parse(target));
      addresses.push_back(std::move(address));
    }
  }
  for (const auto& [name, cors] : snap->options.cors) {
    auto policy = CorsPolicy::create(cors);
    if (!policy.ok()) return policy.status().with_context("CORS policy '" + name + "'");
    snap->cors.emplace(name, std::move(policy).value());
  }
  for (const ApiVersionOptions& v : snap->options.versions) {
    auto policy = ApiVersionPolicy::create(*clock, v);
    if (!policy.ok()) return policy.status().with_context("API version '" + v.version + "'");
    if (!snap->versions.emplace(v.version, std::move(policy).value()).second) {
      return invalid_argument("API version '" + v.version + "' is defined twice");
    }
  }
  CIVICBUS_RETURN_IF_ERROR(add_builtin_routes(*snap));
  for (const RouteOptions& r : snap->options.routes) {
    if (r.id.rfind("gateway.", 0) == 0) {
      return invalid_argument("route '" + r.id + "': ids starting with 'gateway.' are reserved");
    }
    CIVICBUS_RETURN_IF_ERROR(add_compiled_route(*snap, r, nullptr, false));
  }
  {
    std::lock_guard lock(snap_mu);
    for (const auto& [r, handler] : code_routes) {
      CIVICBUS_RETURN_IF_ERROR(add_compiled_route(*snap, r, handler, false));
    }
    snap->generation = next_generation++;
  }
  // Upstream target health as gauges, read at export time.
  for (std::size_t i = 0; i < snap->pools.size(); ++i) {
    const std::shared_ptr<UpstreamPool>& pool = snap->pools[i];
    for (std::size_t t = 0; t < pool->options().targets.size(); ++t) {
      UpstreamPool* p = pool.get();
      snap->gauges.push_back(metrics->gauge_callback(
          "civicbus_gateway_upstream_target_up",
          "1 when an upstream target takes requests (healthy, breaker not open)",
          {{"upstream", pool->options().name}, {"target", pool->options().targets[t]}}, [p, t] {
            const auto status = p->status();
            return status[t].healthy && status[t].breaker != BreakerState::kOpen ? 1.0 : 0.0;
          }));
    }
  }
  return std::shared_ptr<const Snapshot>(std::move(snap));
}

void Gateway::Impl::install(std::shared_ptr<const Snapshot> snap) {
  {
    std::lock_guard lock(snap_mu);
    snapshot = snap;
  }
  installs.fetch_add(1, std::memory_order_release);
  if (running.load() && !workers.empty()) {
    asio::post(*workers[0].io, [this, snap] { start_health_checks(snap); });
  }
}

Status Gateway::Impl::load_jwt_keys(const JwtAuthOptions& jwt) {
  JwkSet keys;
  if (!jwt.jwks_file.empty()) {
    auto text = read_text_file(jwt.jwks_file);
    if (!text.ok()) return text.status().with_context("jwt.jwks_file");
    auto set = JwkSet::parse_text(*text);
    if (!set.ok()) return set.status().with_context("jwt.jwks_file '" + jwt.jwks_file + "'");
    keys = std::move(set).value();
  }
  if (!jwt.jwks_url.empty()) {
    CIVICBUS_RETURN_IF_ERROR(parse_jwks_url(jwt.jwks_url).status());
  }
  std::lock_guard lock(jwks_mu);
  file_keys = std::move(keys);
  rebuild_external_verifier();
  return Status();
}

void Gateway::Impl::rebuild_external_verifier() {
  JwkSet merged;
  for (const Jwk& k : file_keys.keys()) (void)merged.add(k);
  for (const Jwk& k : url_keys.keys()) (void)merged.add(k);  // a kid in both: the file's wins
  JwtVerifierOptions vo;
  vo.issuer = options.jwt.issuer;
  vo.audiences = options.jwt.audiences;
  vo.leeway = options.jwt.leeway;
  external_verifier = std::make_shared<JwtVerifier>(std::move(merged), vo, *clock);
}

// ---- the request path ---------------------------------------------------------------------

void Gateway::Impl::find_fields(const HttpHeaders& headers, Exchange::Fields& out) {
  auto first = [](std::optional<std::string_view>& slot, std::string_view value) {
    if (!slot) slot = value;
  };
  for (const auto& [name, value] : headers) {
    switch (name.size()) {  // by length first: most fields are none of these
      case 4:
        if (same_name(name, "Host")) first(out.host, value);
        break;
      case 6:
        if (same_name(name, "apikey")) first(out.apikey, value);
        break;
      case 9:
        if (same_name(name, "X-API-Key")) {
          first(out.x_api_key, value);
        } else if (same_name(name, "Signature")) {
          out.signature = true;
        }
        break;
      case 11:
        if (same_name(name, "traceparent")) first(out.traceparent, value);
        break;
      case 12:
        if (same_name(name, "X-Request-Id")) first(out.request_id, value);
        break;
      case 13:
        if (same_name(name, "Authorization")) first(out.authorization, value);
        break;
      case 15:
        if (same_name(name, "Signature-Input")) out.signature = true;
        break;
      default:
        break;
    }
  }
}

asio::awaitable<void> Gateway::Impl::serve(HttpRequest& request, HttpResponse& out,
                                           http::detail::OwnFields& own, std::size_t worker_index) {
  auto ex = std::make_shared<Exchange>(request);
  ex->start = clock->steady_now();
  ex->worker = worker_index;
  ex->out = &out;
  ex->own = &own;
  // Also when the frame is destroyed suspended (the worker's loop stopped): a late
  // continuation must neither write the response nor cancel a timer that is gone.
  struct Unhook {
    Exchange& ex;
    ~Unhook() {
      ex.out = nullptr;
      ex.own = nullptr;
      ex.upstream_fields.attach(nullptr);
      ex.waiter = nullptr;
    }
  } unhook{*ex};
  Worker& worker = workers[ex->worker];
  // Read before current(): an install in between is picked up by the next request.
  const std::uint64_t seen = installs.load(std::memory_order_acquire);
  if (!worker.snap || worker.snap_installs != seen) {
    auto shared = std::make_shared<std::shared_ptr<const Snapshot>>(current());
    worker.snap = std::shared_ptr<const Snapshot>(shared, shared->get());
    worker.snap_installs = seen;
  }
  ex->snap = worker.snap;
  find_fields(ex->request.headers, ex->fields);
  const auto incoming_id = ex->fields.request_id;
  if (incoming_id && acceptable_request_id(*incoming_id)) {
    ex->id_storage.assign(*incoming_id);
    ex->request_id = ex->id_storage;
  } else {
    worker.ids->next(ex->id_text);
    ex->request_id = std::string_view(ex->id_text.data(), ex->id_text.size());
  }
  const auto incoming_trace = ex->fields.traceparent;
  ex->trace = next_traceparent(incoming_trace ? parse_traceparent(*incoming_trace) : std::nullopt,
                               *worker.random);
  try {
    route_request(ex);
  } catch (const std::exception& e) {
    log.error("request failed", {{"request_id", std::string(ex->request_id)}, {"error", e.what()}});
    finish(ex, problem(500, "internal error", ex->request_id));
  }
  while (!ex->answered) {
    if (ex->call) {
      Exchange::UpstreamCall call = std::move(*ex->call);
      ex->call.reset();
      const Status sent = co_await http::detail::ClientAccess::send_wire(
          *call.client, *call.upstream, std::move(call.wire), out, call.sink);
      try {
        upstream_answered(ex, sent, call.may_retry);
      } catch (const std::exception& e) {
        finish(ex, problem(500, "internal error", ex->request_id));
      }
      continue;
    }
    // Asynchronous (a JWKS fetch for an unknown kid): the fetch has a timeout and its
    // continuation, posted to this worker, answers or asks for the upstream.
    asio::steady_timer waiter(*worker.io, asio::steady_timer::time_point::max());
    ex->waiter = &waiter;
    asio::error_code ec;
    co_await waiter.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    ex->waiter = nullptr;
  }
}

void Gateway::Impl::route_request(const ExchangePtr& ex) {
  const Snapshot& snap = *ex->snap;
  const auto host = ex->fields.host;
  const auto normal = normalize_path(ex->request.target, ex->path_storage);
  if (!normal.ok()) {
    return finish(
        ex, problem(400, "request target refused: " + normal.status().message(), ex->request_id));
  }
  ex->path = *normal;
  RouteResult match = snap.router.match_normalized(ex->request.method, host.value_or(""), ex->path);
  switch (match.outcome) {
    case RouteOutcome::kNotFound:
      return finish(ex, problem(404, "no route for " + ex->request.method + " " + ex->request.path,
                                ex->request_id));
    case RouteOutcome::kBadRequest:
      return finish(ex, problem(400, "request target refused: " + match.error, ex->request_id));
    case RouteOutcome::kMethodNotAllowed: {
      HttpResponse r = problem(405, ex->request.method + " is not allowed on " + ex->request.path,
                               ex->request_id);
      std::string allow;
      for (const auto& m : match.allow) allow += (allow.empty() ? "" : ", ") + m;
      r.headers.add("Allow", allow);
      // A CORS preflight to a path whose routes have a policy is still answered below.
      const bool preflight = CorsPolicy::is_preflight(ex->request);
      if (!preflight) return finish(ex, std::move(r));
      match.outcome = RouteOutcome::kMatched;
      // Preflight: find any route of this path that has a CORS policy, by asking for the
      // method the browser wants to send.
      const auto wanted = ex->request.headers.get("Access-Control-Request-Method");
      RouteResult again =
          snap.router.match(wanted.value_or(""), host.value_or(""), ex->request.target);
      if (again.outcome != RouteOutcome::kMatched) return finish(ex, std::move(r));
      const CompiledRoute& target = snap.routes[again.index];
      if (target.cors == nullptr) return finish(ex, std::move(r));
      CorsPreflightResult pre = target.cors->preflight(ex->request);
      ex->route = &target;
      for (const auto& [n, v] : ex->response_headers) pre.response.headers.add(n, v);
      ex->response_headers = {};
      return finish(ex, std::move(pre.response));
    }
    case RouteOutcome::kMatched:
      break;
  }
  ex->route = &snap.routes[match.index];
  for (auto& p : match.params) ex->params.emplace_back(std::move(p.name), std::move(p.value));
  const CompiledRoute& route = *ex->route;

  if (route.version != nullptr) {
    VersionDecision decision = route.version->decide();
    for (const auto& [n, v] : decision.headers) ex->response_headers.add(n, v);
    if (decision.gone) {
      HttpResponse gone = std::move(*decision.gone);
      for (const auto& [n, v] : decision.headers) gone.headers.remove(n);
      return finish(ex, std::move(gone));
    }
  }
  if (route.cors != nullptr) {
    if (CorsPolicy::is_preflight(ex->request)) {
      CorsPreflightResult pre = route.cors->preflight(ex->request);
      return finish(ex, std::move(pre.response));
    }
    for (const auto& [n, v] : route.cors->response_headers(ex->request)) {
      ex->response_headers.add(n, v);
    }
  }
  if (route.ip) {
    const IpDecision d = route.ip->check(ex->request.remote_address);
    if (!d.allowed()) {
      return finish(
          ex, problem(403,
                      "client address " + ex->request.remote_address + " may not call route '" +
                          route.options.id + "' (" + d.reason + ")",
                      ex->request_id));
    }
  }
  authenticate(ex);
}

void Gateway::Impl::deny_unauthenticated(const ExchangePtr& ex, std::string_view reason) {
  auth_failures->inc();
  HttpResponse r = problem(401, reason, ex->request_id);
  std::string challenges;
  for (AuthMethod m : ex->route->options.auth) {
    if (!challenges.empty()) challenges += ", ";
    switch (m) {
      case AuthMethod::kApiKey:
        challenges += "ApiKey realm=\"civicbus\"";
        break;
      case AuthMethod::kJwt:
        challenges += "Bearer realm=\"civicbus\"";
        break;
      case AuthMethod::kHmac:
        challenges += "Signature realm=\"civicbus\"";
        break;
      case AuthMethod::kMtls:
        break;  // no HTTP challenge: the certificate belongs to the TLS handshake
    }
  }
  r.headers.add("WWW-Authenticate", challenges);
  finish(ex, std::move(r));
}

void Gateway::Impl::authenticate(const ExchangePtr& ex) {
  const RouteOptions& route = ex->route->options;
  if (route.auth.empty()) return admit(ex);
  auto accepts = [&](AuthMethod m) {
    return std::find(route.auth.begin(), route.auth.end(), m) != route.auth.end();
  };
  const Exchange::Fields& h = ex->fields;
  // The credential presented decides the method; more than one kind is refused rather than
  // guessing which one the client meant.
  std::optional<std::string_view> api_key = h.apikey;
  if (!api_key) api_key = h.x_api_key;
  std::optional<std::string_view> bearer;
  if (const auto authz = h.authorization) {
    const std::string_view v = *authz;
    if (v.size() > 7 && same_name(v.substr(0, 7), "Bearer ")) {
      bearer = v.substr(7);
    } else if (v.size() > 7 && same_name(v.substr(0, 7), "ApiKey ")) {
      if (api_key) return deny_unauthenticated(ex, "two API keys presented");
      api_key = v.substr(7);
    }
  }
  const bool signature = h.signature;
  const int presented = int(api_key.has_value()) + int(bearer.has_value()) + int(signature);
  // A client certificate belongs to the connection; it authenticates when the request carries
  // no other credential and the route accepts it.
  if (presented == 0 && ex->request.peer_certificate && accepts(AuthMethod::kMtls)) {
    ex->consumer = consumers.by_certificate(*ex->request.peer_certificate);
    if (!ex->consumer) {
      return deny_unauthenticated(
          ex, "client certificate '" + ex->request.peer_certificate->subject + "' (sha256 " +
                  ex->request.peer_certificate->sha256_fingerprint.substr(0, 16) +
                  "…) is not mapped to a consumer");
    }
    ex->auth_method = AuthMethod::kMtls;
    return admit(ex);
  }
  if (presented == 0) {
    std::string accepted;
    for (AuthMethod m : route.auth)
      accepted += (accepted.empty() ? "" : ", ") + std::string(auth_method_name(m));
    return deny_unauthenticated(ex, "credentials required (accepted: " + accepted + ")");
  }
  if (presented > 1) {
    return deny_unauthenticated(ex, "more than one kind of credential presented");
  }
  if (api_key) {
    if (!accepts(AuthMethod::kApiKey)) {
      return deny_unauthenticated(ex, "this route does not accept API keys");
    }
    ex->consumer = workers[ex->worker].api_keys.find(consumers, *api_key);
    if (!ex->consumer) return deny_unauthenticated(ex, "invalid API key");
    ex->auth_method = AuthMethod::kApiKey;
    return admit(ex);
  }
  if (bearer) {
    if (!accepts(AuthMethod::kJwt)) {
      return deny_unauthenticated(ex, "this route does not accept bearer tokens");
    }
    bool wait = false;
    Status s = authenticate_jwt(ex, *bearer, &wait);
    if (wait) {
      // An unknown kid: fetch the JWKS again, then try once more on this worker.
      asio::io_context* io = workers[ex->worker].io;
      return refresh_jwks([this, ex, io] {
        asio::post(*io, [this, ex] {
          if (ex->out == nullptr) return;  // serve() is gone, and the request with it
          try {
            authenticate(ex);
          } catch (const std::exception& e) {
            finish(ex, problem(500, "internal error", ex->request_id));
          }
        });
      });
    }
    if (!s.ok()) return deny_unauthenticated(ex, s.message());
    ex->auth_method = AuthMethod::kJwt;
    return admit(ex);
  }
  if (!accepts(AuthMethod::kHmac)) {
    return deny_unauthenticated(ex, "this route does not accept HTTP message signatures");
  }
  auto verified = hmac->verify(ex->request);
  if (!verified.ok()) return deny_unauthenticated(ex, verified.status().message());
  auto found = consumers.by_hmac_key(verified->keyid);
  if (!found) return deny_unauthenticated(ex, "unknown HMAC key id");
  ex->consumer = found->first;
  ex->auth_method = AuthMethod::kHmac;
  admit(ex);
}

Status Gateway::Impl::authenticate_jwt(const ExchangePtr& ex, std::string_view token,
                                       bool* wait_for_keys) {
  CIVICBUS_ASSIGN_OR_RETURN(JwsParts parts, parse_jws_compact(token));
  // The gateway's own tokens: signed by its key; `sub` is the consumer id.
  if (signing_key && own_verifier &&
      (parts.kid.empty() ? parts.algorithm == signing_key->algorithm()
                         : parts.kid == signing_key->kid())) {
    CIVICBUS_ASSIGN_OR_RETURN(Jwt jwt, own_verifier->verify(token));
    const std::string sub = jwt.claims.get_string("sub");
    ex->consumer = consumers.by_id(sub);
    if (!ex->consumer) return unauthenticated("token subject '" + sub + "' is not a consumer");
    return Status();
  }
  std::shared_ptr<const JwtVerifier> verifier;
  bool unknown_kid = false;
  {
    std::lock_guard lock(jwks_mu);
    verifier = external_verifier;
    unknown_kid = !parts.kid.empty() && file_keys.find(parts.kid) == nullptr &&
                  url_keys.find(parts.kid) == nullptr;
    if (unknown_kid && !options.jwt.jwks_url.empty() && !ex->jwks_refreshed) {
      const bool may_fetch =
          !last_jwks_fetch ||
          clock->steady_now() - *last_jwks_fetch >= options.jwt.refresh_min_interval ||
          jwks_fetching;
      if (may_fetch) {
        ex->jwks_refreshed = true;
        *wait_for_keys = true;
        return Status();
      }
    }
  }
  if (unknown_kid) return unauthenticated("token key id '" + parts.kid + "' is not known");
  if (!verifier) return unauthenticated("no keys to verify bearer tokens are configured");
  CIVICBUS_ASSIGN_OR_RETURN(Jwt jwt, verifier->verify(token));
  const Json* claim = jwt.claims.find(options.jwt.consumer_claim);
  if (claim == nullptr || !claim->is_string()) {
    return unauthenticated("token has no string claim '" + options.jwt.consumer_claim +
                           "' naming the consumer");
  }
  ex->consumer = consumers.by_jwt_subject(claim->as_string());
  if (!ex->consumer) {
    return unauthenticated("token " + options.jwt.consumer_claim + " '" + claim->as_string() +
                           "' is not a consumer");
  }
  return Status();
}

void Gateway::Impl::refresh_jwks(std::function<void()> then) {
  std::string url;
  {
    std::lock_guard lock(jwks_mu);
    jwks_waiters.push_back(std::move(then));
    if (jwks_fetching) return;
    jwks_fetching = true;
    last_jwks_fetch = clock->steady_now();
    url = options.jwt.jwks_url;
  }
  auto parsed = parse_jwks_url(url);  // checked at configuration time
  HttpRequest get;
  get.method = "GET";
  get.target = parsed.ok() ? parsed->target : "/";
  get.headers.add("Accept", "application/json");
  auto done = [this, url](Result<HttpResponse> result) {
    std::vector<std::function<void()>> waiters;
    {
      std::lock_guard lock(jwks_mu);
      if (!result.ok()) {
        log.warn("JWKS fetch failed", {{"url", url}, {"error", result.status().message()}});
      } else if (result->status != 200) {
        log.warn("JWKS fetch failed", {{"url", url}, {"status", std::to_string(result->status)}});
      } else if (auto set = JwkSet::parse_text(result->body); !set.ok()) {
        log.warn("JWKS refused", {{"url", url}, {"error", set.status().message()}});
      } else {
        url_keys = std::move(set).value();
        rebuild_external_verifier();
        log.info("JWKS refreshed",
                 {{"url", url}, {"keys", std::to_string(url_keys.keys().size())}});
      }
      jwks_fetching = false;
      waiters.swap(jwks_waiters);
    }
    for (auto& w : waiters) w();
  };
  if (!parsed.ok()) return done(parsed.status());
  if (!jwks_client || jwks_client_url != url) {
    http::HttpClientOptions co;
    co.request_timeout = std::chrono::seconds(5);
    co.max_retries = 1;
    if (parsed->https) {
      co.tls = http::TlsClientOptions{};
      co.tls->ca_file = options.jwt.jwks_ca_file;
    }
    auto client = http::HttpClient::create(co);
    if (!client.ok()) return done(client.status());
    jwks_client = std::move(client).value();
    jwks_client_url = url;
  }
  jwks_client->send_async(parsed->authority, std::move(get), std::move(done));
}

void Gateway::Impl::admit(const ExchangePtr& ex) {
  const CompiledRoute& route = *ex->route;
  const Consumer* consumer = ex->consumer.get();
  if (consumer != nullptr) {
    if (consumer->ip) {
      const IpDecision d = consumer->ip->check(ex->request.remote_address);
      if (!d.allowed()) {
        return finish(ex, problem(403,
                                  "consumer '" + consumer->options.id + "' may not call from " +
                                      ex->request.remote_address + " (" + d.reason + ")",
                                  ex->request_id));
      }
    }
    if (!route.options.groups.empty() &&
        std::none_of(route.options.groups.begin(), route.options.groups.end(),
                     [&](const std::string& g) { return consumer->in_group(g); })) {
      return finish(ex,
                    problem(403,
                            "consumer '" + consumer->options.id +
                                "' is not in a group allowed on route '" + route.options.id + "'",
                            ex->request_id));
    }
  }
  // Rate limits: the consumer's own, then the route's (per consumer, or per address when
  // anonymous). The headers describe the tighter of the two.
  std::optional<RateLimitDecision> shown;
  // `route` empty: the consumer's own policy; else the route's. The key is built only for a
  // policy that limits something (most requests have none).
  auto apply = [&](const RateLimitPolicy& policy, std::string_view route_id) -> bool {
    if (policy.requests_per_minute == 0 && policy.requests_per_day == 0) return true;
    // A consumer's own key is made once, with the consumer.
    auto decision = consumer != nullptr && route_id.empty()
                        ? limiter->check(consumer->rate_key, policy)
                        : limiter->check(rate_limit_key(consumer != nullptr
                                                            ? "c:" + consumer->options.id
                                                            : "ip:" + ex->request.remote_address,
                                                        route_id),
                                         policy);
    if (!decision.ok()) {
      finish(ex, problem(500, decision.status().message(), ex->request_id));
      return false;
    }
    const bool allowed = decision->allowed;
    if (!shown || !allowed || decision->remaining < shown->remaining) {
      shown = std::move(decision).value();
    }
    return allowed;
  };
  bool allowed = true;
  if (consumer != nullptr) allowed = apply(consumer->options.rate_limit, {});
  if (!ex->answered && allowed) allowed = apply(route.options.rate_limit, route.options.id);
  if (ex->answered) return;  // answered (limiter error)
  const std::int64_t retry_after = shown ? shown->retry_after_seconds : 0;
  if (shown && shown->window != RateLimitWindow::kNone) {
    ex->rate_shown = std::move(shown);
  }
  if (!allowed) {
    rate_limited->inc();
    HttpResponse r = problem(
        429,
        "rate limit exceeded" + (consumer ? " for consumer '" + consumer->options.id + "'"
                                          : std::string(" for ") + ex->request.remote_address),
        ex->request_id);
    r.headers.add("Retry-After", std::to_string(std::max<std::int64_t>(1, retry_after)));
    return finish(ex, std::move(r));
  }
  // Load shedding: the gateway's own endpoints are never shed (operators need them most when
  // the node is overloaded).
  if (!route.builtin) {
    const std::size_t tier = consumer != nullptr ? consumer->options.priority_tier : 2;
    auto ticket = shedder->acquire(tier, ex->start);
    if (!ticket.ok()) {
      shed->inc();
      HttpResponse r = problem(503, "overloaded: " + ticket.status().message(), ex->request_id);
      r.headers.add("Retry-After", std::to_string(shedder->options().retry_after.count()));
      return finish(ex, std::move(r));
    }
    ex->ticket = std::move(ticket).value();
  }
  dispatch(ex);
}

std::optional<HttpResponse> Gateway::Impl::transform_request(const ExchangePtr& ex) {
  const BodyFormat to = *ex->route->options.upstream_format;
  HttpRequest& r = ex->request;
  // What the upstream is asked to answer in; the client's Accept is honoured on the way back.
  if (const auto accept = r.headers.get("Accept")) {
    ex->client_accept = std::string(*accept);
  }
  r.headers.set("Accept", std::string(media_type_of(to)));
  if (r.body.empty()) return std::nullopt;
  const auto type = r.headers.get("Content-Type");
  if (!type) {
    return problem(415,
                   "a request body needs a Content-Type (application/json, "
                   "application/xml or text/csv)",
                   ex->request_id);
  }
  auto from = body_format_from_media_type(*type);
  if (!from.ok()) {
    return problem(
        415,
        "Content-Type '" + std::string(*type) + "' cannot be converted: " + from.status().message(),
        ex->request_id);
  }
  if (*from == to) return std::nullopt;
  auto converted = transform_body(r.body, *from, to);
  if (!converted.ok()) {
    return problem(converted.status().code() == ErrorCode::kResourceExhausted ? 413 : 400,
                   "request body (" + std::string(body_format_name(*from)) +
                       "): " + converted.status().message(),
                   ex->request_id);
  }
  r.body = std::move(converted).value();
  r.headers.set("Content-Type", std::string(media_type_of(to)));
  return std::nullopt;
}

void Gateway::Impl::transform_response(const ExchangePtr& ex, HttpResponse& response) {
  if (response.body.empty() || !ex->client_accept) return;
  const std::string& accept = *ex->client_accept;
  const auto type = response.headers.get("Content-Type");
  if (!type) return;
  auto from = body_format_from_media_type(*type);
  if (!from.ok()) return;  // not a format we convert: passed as it is
  // The body's own format is fine when the client accepts it (or anything).
  const std::string_view subtype = body_format_name(*from);
  if (accept.find("*/*") != std::string::npos || accept.find(subtype) != std::string::npos) return;
  auto to = body_format_from_media_type(accept);
  if (!to.ok() || *to == *from) return;
  auto converted = transform_body(response.body, *from, *to);
  if (!converted.ok()) {
    response = problem(502,
                       "the upstream's " + std::string(subtype) + " response cannot be " +
                           "converted to " + std::string(body_format_name(*to)) + ": " +
                           converted.status().message(),
                       ex->request_id);
    return;
  }
  response.body = std::move(converted).value();
  response.headers.set("Content-Type", std::string(media_type_of(*to)));
}

void Gateway::Impl::dispatch(const ExchangePtr& ex) {
  const CompiledRoute& route = *ex->route;
  if (route.options.upstream_format) {
    if (auto refused = transform_request(ex)) return finish(ex, std::move(*refused));
  }
  if (!route.handler) return proxy(ex);
  static const std::vector<std::string> kNoGroups;
  const GatewayRequest request{ex->request,
                               route.options.id,
                               ex->params,
                               ex->consumer ? std::string_view(ex->consumer->options.id) : "",
                               ex->consumer ? ex->consumer->options.groups : kNoGroups,
                               ex->request_id};
  HttpResponse response;
  try {
    response = route.handler(request);
  } catch (const std::exception& e) {
    log.error("handler failed", {{"route", route.options.id},
                                 {"request_id", std::string(ex->request_id)},
                                 {"error", e.what()}});
    response = problem(500, "internal error", ex->request_id);
  } catch (...) {
    response = problem(500, "internal error", ex->request_id);
  }
  if (route.options.upstream_format && response.status < 300) transform_response(ex, response);
  finish(ex, std::move(response));
}

http::HttpClient* Gateway::Impl::client_for(Worker& worker, const Snapshot& snap,
                                            std::size_t upstream) {
  if (worker.generation != snap.generation) {
    // A reload: clients of the old snapshot finish what they carry, then wait for stop().
    for (auto& [name, client] : worker.clients) {
      http::detail::ClientAccess::shut_down(*client);
      worker.retired.push_back(std::move(client));
    }
    worker.clients.clear();
    worker.generation = snap.generation;
  }
  const UpstreamOptions& u = snap.options.upstreams[upstream];
  auto it = worker.clients.find(u.name);
  if (it != worker.clients.end()) return it->second.get();
  http::HttpClientOptions co;
  co.connect_timeout = u.connect_timeout;
  co.request_timeout = u.request_timeout;
  co.max_connections_per_upstream = u.max_connections_per_target;
  co.max_retries = 0;  // the gateway retries itself, on another target
  co.tls = u.tls;
  auto client = http::detail::ClientAccess::create_on(*worker.io, co);
  if (!client.ok()) return nullptr;
  return worker.clients.emplace(u.name, std::move(client).value()).first->second.get();
}

void Gateway::Impl::proxy(const ExchangePtr& ex) {
  const CompiledRoute& route = *ex->route;
  const Snapshot& snap = *ex->snap;
  const std::size_t upstream =
      static_cast<std::size_t>(route.upstream - snap.options.upstreams.data());
  const std::size_t previous = ex->lease ? ex->lease.target() : SIZE_MAX;
  auto lease = route.pool->acquire(previous);
  if (!lease.ok()) {
    HttpResponse r = problem(503, lease.status().message(), ex->request_id);
    r.headers.add("Retry-After", "1");
    return finish(ex, std::move(r));
  }
  ex->lease = std::move(lease).value();
  ex->upstream_target = ex->lease.host_port();
  ++ex->attempts;
  http::HttpClient* client = client_for(workers[ex->worker], snap, upstream);
  if (client == nullptr) return finish(ex, problem(500, "no HTTP client", ex->request_id));

  // The upstream request, put on the wire here: the client's fields were checked by the
  // listener's parser, the gateway's own values are checked as they are added.
  const HttpRequest& in = ex->request;
  const ForwardedPath target = rewrite_path(route.options, ex->path);
  const bool may_retry =
      http::is_idempotent_method(in.method) && ex->attempts <= route.upstream->retries;
  std::string wire;
  wire.reserve(512 + in.body.size());
  http::detail::FieldWriter w(wire);
  auto copy = [&w](std::string_view name, std::string_view value) { w.field(name, value); };
  // The path is normalised (no byte below 0x21 survives it) and the query passed the parser;
  // an upstream_prefix from configuration could still hold a space.
  if (std::any_of(target.prefix.begin(), target.prefix.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; })) {
    return finish(ex, problem(500,
                              "route '" + route.options.id +
                                  "' rewrites the path to one with a space or control "
                                  "character",
                              ex->request_id));
  }
  w.text(in.method);
  w.text(" "sv);
  w.text(target.prefix);
  w.text(target.rest);
  if (!in.query.empty()) {
    w.text("?"sv);
    w.text(in.query);
  }
  w.text(" HTTP/1.1\r\n"sv);
  copy("Host", ex->lease.host_port());  // Upstream::parse checked it
  const std::vector<std::string_view> conn_opts = connection_options(in.headers);
  std::string_view client_host;
  std::size_t forwarded_for = 0;  // X-Forwarded-For fields the client sent
  for (const auto& [name, value] : in.headers) {
    if (is_hop_by_hop(name) || listed(conn_opts, name) || http::detail::is_framing_field(name)) {
      continue;
    }
    switch (request_field(name)) {
      case RequestField::kCopy:
        copy(name, value);
        break;
      case RequestField::kAuthorization:
        // An API key in Authorization stays here.
        if (!(ex->auth_method == AuthMethod::kApiKey && ex->consumer)) copy(name, value);
        break;
      case RequestField::kForwardedFor:
        ++forwarded_for;
        break;
      case RequestField::kGatewaySets:
        if (client_host.empty() && same_name(name, "Host")) client_host = value;
        break;
    }
  }
  w.text("X-Forwarded-For: "sv);
  if (forwarded_for != 0) {
    in.headers.for_each("X-Forwarded-For", [&](std::string_view v) {
      w.text(v);
      w.text(", "sv);
    });
  }
  w.text(in.remote_address);
  w.text("\r\n"sv);
  // The gateway's own values, none of which can hold a CR, LF or NUL: the scheme is checked
  // with the configuration (compile()), the client's Host by the listener's parser, the
  // request id is the gateway's or passed acceptable_request_id(), the consumer's id and
  // groups field are checked as it is made (consumers.cpp).
  copy("X-Forwarded-Proto", snap.options.scheme);
  if (!client_host.empty()) copy("X-Forwarded-Host", client_host);
  copy("X-Request-Id", ex->request_id);
  copy("traceparent", ex->trace.to_string());
  if (ex->consumer) {
    copy("X-Consumer-Id", ex->consumer->options.id);
    if (!ex->consumer->groups_field.empty()) {
      copy("X-Consumer-Groups", ex->consumer->groups_field);
    }
  }
  w.text("Via: 1.1 civicbus\r\n"sv);
  w.flush();
  http::detail::ClientAccess::end_wire(wire, in.method, in.body);
  if (!may_retry) ex->request.body = {};  // sent once: the copy above is the only one needed

  // Without a transform, the response's fields go straight to the listener's lines.
  ex->fields_to_own = !route.options.upstream_format && ex->own != nullptr;
  if (ex->fields_to_own) ex->upstream_fields.attach(ex->own);
  ex->call =
      Exchange::UpstreamCall{client, &snap.addresses[upstream][ex->lease.target()], std::move(wire),
                             may_retry, ex->fields_to_own ? &ex->upstream_fields : nullptr};
  ex->wake();
}

void Gateway::Impl::upstream_answered(const ExchangePtr& ex, const Status& sent, bool may_retry) {
  if (!sent.ok()) {
    const ErrorCode code = sent.code();
    if (code == ErrorCode::kCancelled) {
      ex->lease.report(UpstreamOutcome::kNotConsidered);
      return finish(ex, problem(503, "gateway stopping", ex->request_id));
    }
    const bool timeout = code == ErrorCode::kDeadlineExceeded;
    ex->lease.report(timeout ? UpstreamOutcome::kTimeout : UpstreamOutcome::kFailure);
    if (!timeout && may_retry) return proxy(ex);
    log.warn("upstream request failed", {{"route", ex->route->options.id},
                                         {"target", std::string(ex->upstream_target)},
                                         {"request_id", std::string(ex->request_id)},
                                         {"error", sent.message()}});
    return finish(
        ex, problem(timeout ? 504 : 502, timeout ? "upstream timed out" : "upstream unavailable",
                    ex->request_id));
  }
  if (ex->out == nullptr) return;  // serve() is gone
  HttpResponse& response = *ex->out;
  const bool failed = response.status >= 500;
  ex->lease.report(failed ? UpstreamOutcome::kFailure : UpstreamOutcome::kSuccess);
  if (may_retry && (response.status == 502 || response.status == 503 || response.status == 504)) {
    return proxy(ex);
  }
  if (ex->fields_to_own) {
    // The fields are in the listener's lines already, filtered as they came.
    ex->upstream_fields.drop_connection_options();
    ex->passed_on = true;
  } else {
    // Filtered in place: the listed names are copied first, as they view the fields.
    std::vector<std::string> opts;
    for (std::string_view o : connection_options(response.headers)) opts.emplace_back(o);
    response.headers.remove_if([&](const std::string& name, const std::string&) {
      return is_hop_by_hop(name) || listed(opts, name);
    });
  }
  ex->via = true;
  if (ex->route->options.upstream_format && response.status < 300) {
    transform_response(ex, response);
  }
  complete(ex, response);
}

void Gateway::Impl::finish(const ExchangePtr& ex, HttpResponse response) {
  if (ex->answered) return;  // answered once
  ex->passed_on = false;     // not the upstream's response (complete() drops its fields)
  if (ex->out == nullptr) return complete(ex, response);  // still counted and logged
  *ex->out = std::move(response);
  complete(ex, *ex->out);
}

// The exchange's own fields as lines for the server to write after the response's (the
// listener's own lines): each unless the response has a field of that name (among its headers,
// or among the proxied fields already in the lines), Vary always.
void Gateway::Impl::write_own_fields(const Exchange& ex, const HttpResponse& response,
                                     http::detail::OwnFields& own) {
  // A name is looked up among the response's fields only when one of its length is there:
  // usually none is.
  const bool proxied = ex.fields_to_own && ex.passed_on;
  std::uint64_t lengths = proxied ? ex.upstream_fields.lengths() : 0;
  auto length_bit = &UpstreamFields::length_bit;
  for (const auto& [name, value] : response.headers) lengths |= length_bit(name);
  auto response_has = [&](std::string_view name) {
    const std::uint64_t bit = length_bit(name);
    if (bit != 0 && (lengths & bit) == 0) return false;
    return response.headers.contains(name) || (proxied && ex.upstream_fields.has(name));
  };
  http::detail::FieldWriter w(own.lines);
  // The request id is the gateway's or passed acceptable_request_id(); the RateLimit values
  // are the limiter's numbers and policy text.
  if (!response_has("X-Request-Id")) w.field("X-Request-Id", ex.request_id);
  if (ex.rate_shown) {
    const RateLimitDecision& rate = *ex.rate_shown;
    auto number = [&](std::string_view name, auto n) {
      if (response_has(name)) return;
      char digits[24];
      const char* end = std::to_chars(digits, digits + sizeof digits, n).ptr;
      w.field(name, std::string_view(digits, static_cast<std::size_t>(end - digits)));
    };
    number("RateLimit-Limit", rate.limit);
    number("RateLimit-Remaining", rate.remaining);
    number("RateLimit-Reset", rate.reset_seconds);
    if (!response_has("RateLimit-Policy")) w.field("RateLimit-Policy", rate.policy);
  }
  // The others (API version, CORS, from configuration and the request): the first of a name,
  // Vary each time, each checked, and left out when it holds a CR, LF or NUL.
  const auto own_begin = ex.response_headers.begin();
  for (auto it = own_begin; it != ex.response_headers.end(); ++it) {
    const std::string& name = it->first;
    if (!same_name(name, "Vary")) {
      if (response_has(name)) continue;
      if (std::any_of(own_begin, it, [&](const HttpHeaders::Field& earlier) {
            return same_name(earlier.first, name);
          })) {
        continue;
      }
    }
    if (http::detail::is_safe_field_text(name) && http::detail::is_safe_field_text(it->second)) {
      w.field(name, it->second);
    }
  }
  if (ex.via) w.text("Via: 1.1 civicbus\r\n"sv);
}

void Gateway::Impl::complete(const ExchangePtr& ex, HttpResponse& response) {
  if (ex->answered) return;
  if (ex->own != nullptr) {
    // A response that was not passed on (an error instead, a retry's) leaves no field.
    if (!ex->passed_on) ex->own->clear();
    write_own_fields(*ex, response, *ex->own);
  }
  const SteadyTime end = clock->steady_now();
  const double seconds = std::chrono::duration<double>(end - ex->start).count();
  if (ex->route != nullptr) {
    const int cls = std::clamp(response.status / 100, 1, 5);
    ex->route->metrics.responses[static_cast<std::size_t>(cls - 1)]->inc();
    ex->route->metrics.duration->observe(seconds);
  }
  if (ex->ticket) {
    if (response.status >= 500) {
      ex->ticket.cancel();
    } else {
      ex->ticket.release(end);
    }
  }
  if (options.access_log.enabled && access_log.enabled(LogLevel::kInfo)) {
    access_log.info("request",
                    {{"method", ex->request.method},
                     {"path", ex->request.path},
                     {"status", std::to_string(response.status)},
                     {"route", ex->route ? ex->route->options.id : std::string("-")},
                     {"consumer", ex->consumer ? ex->consumer->options.id : std::string("-")},
                     {"upstream", ex->upstream_target.empty() ? std::string("-")
                                                              : std::string(ex->upstream_target)},
                     {"remote", ex->request.remote_address},
                     {"duration_us", std::to_string(static_cast<long long>(seconds * 1e6))},
                     {"request_id", std::string(ex->request_id)},
                     {"trace_id", std::string(ex->trace.trace_id())}});
  }
  ex->answered = true;
  ex->wake();
}

// ---- built-in handlers ----------------------------------------------------------------------

HttpResponse Gateway::Impl::token_endpoint(const GatewayRequest& r) {
  // RFC 6749 5.2 errors, with Cache-Control: no-store on every answer (5.1).
  auto error = [](int status, const char* code, std::string description) {
    HttpResponse out = json_response(
        status, Json::object({{"error", code}, {"error_description", std::move(description)}}));
    out.headers.add("Cache-Control", "no-store");
    if (status == 401) out.headers.add("WWW-Authenticate", "Basic realm=\"civicbus\"");
    return out;
  };
  const auto type = r.http.headers.get("Content-Type");
  if (!type || type->find("application/x-www-form-urlencoded") != 0) {
    return error(400, "invalid_request",
                 "the token request must be application/x-www-form-urlencoded");
  }
  auto form = parse_form(r.http.body);
  if (!form.ok()) return error(400, "invalid_request", form.status().message());
  if ((*form)["grant_type"] != "client_credentials") {
    return error(400, "unsupported_grant_type", "only grant_type=client_credentials is supported");
  }
  std::string client_id = (*form)["client_id"];
  std::string secret = (*form)["client_secret"];
  if (const auto authz = r.http.headers.get("Authorization");
      authz && authz->size() > 6 && same_name(authz->substr(0, 6), "Basic ")) {
    auto decoded = crypto::base64_decode(authz->substr(6));
    const std::size_t colon = decoded.ok() ? decoded->find(':') : std::string::npos;
    if (colon == std::string::npos)
      return error(401, "invalid_client", "malformed Basic credentials");
    client_id = decoded->substr(0, colon);
    secret = decoded->substr(colon + 1);
  }
  if (client_id.empty() || secret.empty()) {
    return error(401, "invalid_client", "client_id and client_secret are required");
  }
  auto consumer = consumers.by_client_id(client_id);
  // The digest is compared even for an unknown client, so timing does not tell which it was.
  const std::string digest = crypto::sha256(secret);
  const std::string expected = consumer ? consumer->client_secret_digest : std::string(32, '\0');
  if (!crypto::constant_time_equal(digest, expected) || !consumer) {
    auth_failures->inc();
    return error(401, "invalid_client", "unknown client or wrong secret");
  }
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(clock->now().time_since_epoch()).count();
  const auto lifetime = options.oauth.token_lifetime.count();
  Json claims = Json::object({{"iss", options.oauth.issuer},
                              {"sub", consumer->options.id},
                              {"aud", options.oauth.audience},
                              {"client_id", client_id},
                              {"iat", static_cast<long long>(now)},
                              {"nbf", static_cast<long long>(now)},
                              {"exp", static_cast<long long>(now + lifetime)},
                              {"jti", ids->next()}});
  if (!consumer->options.groups.empty()) {
    Json groups = Json::array();
    for (const auto& g : consumer->options.groups) groups.push_back(g);
    claims.set("groups", std::move(groups));
  }
  auto token = sign_jwt(claims, *signing_key, *random);
  if (!token.ok()) return error(500, "server_error", token.status().message());
  HttpResponse out =
      json_response(200, Json::object({{"access_token", *token},
                                       {"token_type", "Bearer"},
                                       {"expires_in", static_cast<long long>(lifetime)}}));
  out.headers.add("Cache-Control", "no-store");
  return out;
}

HttpResponse Gateway::Impl::admin_consumers_post(const GatewayRequest& r) {
  auto body = Json::parse(r.http.body);
  if (!body.ok() || !body->is_object()) {
    return problem(400,
                   "the body must be a JSON object: " +
                       (body.ok() ? std::string("got another type") : body.status().message()),
                   r.request_id);
  }
  ConsumerOptions c;
  c.id = body->get_string("id");
  if (const Json* groups = body->find("groups"); groups != nullptr) {
    if (!groups->is_array())
      return problem(400, "'groups' must be an array of strings", r.request_id);
    for (const Json& g : groups->as_array()) {
      if (!g.is_string()) return problem(400, "'groups' must be an array of strings", r.request_id);
      c.groups.push_back(g.as_string());
    }
  }
  c.priority_tier = static_cast<std::uint32_t>(body->get_int("priority_tier", 1));
  if (const Json* rl = body->find("rate_limit"); rl != nullptr && rl->is_object()) {
    c.rate_limit.requests_per_minute =
        static_cast<std::uint32_t>(rl->get_int("requests_per_minute"));
    c.rate_limit.burst = static_cast<std::uint32_t>(rl->get_int("burst"));
    c.rate_limit.requests_per_day = static_cast<std::uint32_t>(rl->get_int("requests_per_day"));
  }
  const std::string id = c.id;
  auto key = add_consumer(std::move(c), body->get_bool("generate_api_key"));
  if (!key.ok()) {
    return problem(key.status().code() == ErrorCode::kAlreadyExists ? 409 : 400,
                   key.status().message(), r.request_id);
  }
  const ConsumerInfo info = consumers.by_id(id)->info();
  log.info("consumer added", {{"consumer", info.id}, {"by", std::string(r.consumer_id)}});
  Json out = Json::object({{"id", info.id}});
  Json groups = Json::array();
  for (const auto& g : info.groups) groups.push_back(g);
  out.set("groups", std::move(groups));
  if (!key->empty()) out.set("api_key", *key);
  HttpResponse response = json_response(201, out);
  response.headers.add("Cache-Control", "no-store");
  return response;
}

Json Gateway::Impl::consumers_json() const {
  Json list = Json::array();
  for (const auto& c : consumers.all()) {
    const ConsumerInfo info = c->info();
    Json groups = Json::array();
    for (const auto& g : info.groups) groups.push_back(g);
    Json hmac_ids = Json::array();
    for (const auto& k : info.hmac_key_ids) hmac_ids.push_back(k);
    list.push_back(Json::object({{"id", info.id},
                                 {"groups", std::move(groups)},
                                 {"api_keys", static_cast<long long>(info.api_keys)},
                                 {"hmac_key_ids", std::move(hmac_ids)},
                                 {"client_id", info.client_id},
                                 {"priority_tier", info.priority_tier}}));
  }
  return Json::object({{"consumers", std::move(list)}});
}

Json Gateway::Impl::health_json() const {
  auto snap = current();
  Json upstreams = Json::object();
  bool degraded = false;
  for (const auto& pool : snap->pools) {
    std::size_t up = 0;
    const auto status = pool->status();
    for (const auto& t : status) {
      if (t.healthy && t.breaker != BreakerState::kOpen) ++up;
    }
    degraded = degraded || up == 0;
    upstreams.set(pool->options().name,
                  Json::object({{"targets", static_cast<long long>(status.size())},
                                {"available", static_cast<long long>(up)}}));
  }
  const LoadShedderStatus shed_status = shedder->status();
  bool shedding = false;
  for (bool s : shed_status.shedding_per_tier) shedding = shedding || s;
  return Json::object({{"status", degraded ? "degraded" : "ok"},
                       {"routes", static_cast<long long>(snap->routes.size())},
                       {"upstreams", std::move(upstreams)},
                       {"shedding", shedding}});
}

Json Gateway::Impl::metrics_json() const {
  auto snap = current();
  Json routes = Json::object();
  for (const CompiledRoute& r : snap->routes) {
    Json classes = Json::object();
    static constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    for (std::size_t i = 0; i < 5; ++i) {
      classes.set(kClasses[i], static_cast<long long>(r.metrics.responses[i]->value()));
    }
    const Histogram& h = *r.metrics.duration;
    routes.set(r.options.id, Json::object({{"responses", std::move(classes)},
                                           {"count", static_cast<long long>(h.count())},
                                           {"p50_ms", h.quantile(0.5) * 1e3},
                                           {"p99_ms", h.quantile(0.99) * 1e3}}));
  }
  Json upstreams = Json::object();
  for (const auto& pool : snap->pools) {
    Json targets = Json::array();
    for (const auto& t : pool->status()) {
      const char* breaker = t.breaker == BreakerState::kClosed ? "closed"
                            : t.breaker == BreakerState::kOpen ? "open"
                                                               : "half-open";
      targets.push_back(Json::object({{"target", t.target},
                                      {"healthy", t.healthy},
                                      {"breaker", breaker},
                                      {"in_flight", static_cast<long long>(t.in_flight)},
                                      {"requests", static_cast<long long>(t.requests)},
                                      {"failures", static_cast<long long>(t.failures)}}));
    }
    upstreams.set(pool->options().name, std::move(targets));
  }
  const LoadShedderStatus s = shedder->status();
  Json shed_tiers = Json::array();
  for (std::size_t i = 0; i < s.shed_per_tier.size(); ++i) {
    shed_tiers.push_back(Json::object({{"tier", static_cast<long long>(i)},
                                       {"shed", static_cast<long long>(s.shed_per_tier[i])},
                                       {"shedding", bool(s.shedding_per_tier[i])}}));
  }
  return Json::object(
      {{"routes", std::move(routes)},
       {"upstreams", std::move(upstreams)},
       {"load_shedding", Json::object({{"limit", static_cast<long long>(s.limit)},
                                       {"in_flight", static_cast<long long>(s.in_flight)},
                                       {"min_latency_ms", s.min_latency_ms},
                                       {"sample_latency_ms", s.sample_latency_ms},
                                       {"tiers", std::move(shed_tiers)}})},
       {"auth_failures", static_cast<long long>(auth_failures->value())},
       {"rate_limited", static_cast<long long>(rate_limited->value())},
       {"rate_limit_keys", static_cast<long long>(limiter->key_count())}});
}

Json Gateway::Impl::openapi_json() const {
  auto snap = current();
  std::vector<OpenApiRoute> routes;
  for (const CompiledRoute& r : snap->routes) {
    bool deprecated = false;
    if (r.version != nullptr) deprecated = r.version->decide().phase != VersionPhase::kActive;
    routes.push_back(OpenApiRoute{&r.options, deprecated, static_cast<bool>(r.handler)});
  }
  OpenApiInfo info{snap->options.api_title, snap->options.api_version,
                   snap->options.oauth.enabled ? snap->options.oauth.path : std::string()};
  return openapi_document(info, routes);
}

// ---- health checks -------------------------------------------------------------------------

void Gateway::Impl::start_health_checks(std::shared_ptr<const Snapshot> snap) {
  Worker& w = workers[0];
  if (w.stopped) return;
  for (auto& timer : w.health_timers) timer->cancel();
  w.health_timers.clear();
  for (std::size_t i = 0; i < snap->pools.size(); ++i) {
    if (snap->options.upstreams[i].active.path.empty()) continue;
    auto timer = std::make_shared<asio::steady_timer>(*w.io);
    w.health_timers.push_back(timer);
    schedule_probe(snap, i, timer);
  }
}

void Gateway::Impl::schedule_probe(std::shared_ptr<const Snapshot> snap, std::size_t upstream,
                                   std::shared_ptr<asio::steady_timer> timer) {
  const ActiveHealthCheckOptions& active = snap->options.upstreams[upstream].active;
  timer->expires_after(active.interval);
  timer->async_wait([this, snap, upstream, timer](const asio::error_code& ec) {
    Worker& w = workers[0];
    if (ec || w.stopped) return;
    const UpstreamOptions& u = snap->options.upstreams[upstream];
    if (!w.health_client) {
      http::HttpClientOptions co;
      co.max_retries = 0;
      co.request_timeout = std::chrono::seconds(5);
      auto client = http::detail::ClientAccess::create_on(*w.io, co);
      if (!client.ok()) return;
      w.health_client = std::move(client).value();
    }
    std::shared_ptr<UpstreamPool> pool = snap->pools[upstream];
    for (std::size_t t = 0; t < u.targets.size(); ++t) {
      HttpRequest probe;
      probe.method = "GET";
      probe.target = u.active.path;
      probe.headers.add("User-Agent", "civicbus-gateway-health-check");
      const auto started = std::chrono::steady_clock::now();
      const auto limit = u.active.timeout;
      w.health_client->send_async(
          u.targets[t], std::move(probe), [pool, t, started, limit](Result<HttpResponse> r) {
            const bool in_time = std::chrono::steady_clock::now() - started <= limit;
            pool->report_probe(t, r.ok() && r->status < 400 && in_time);
          });
    }
    schedule_probe(snap, upstream, timer);
  });
}

void Gateway::Impl::schedule_maintenance() {
  Worker& w = workers[0];
  if (w.stopped) return;
  if (!w.maintenance) w.maintenance = std::make_shared<asio::steady_timer>(*w.io);
  w.maintenance->expires_after(std::chrono::minutes(1));
  w.maintenance->async_wait([this](const asio::error_code& ec) {
    if (ec || workers[0].stopped) return;
    const std::size_t evicted = limiter->evict_idle();
    if (evicted > 0) log.debug("idle rate-limit keys evicted", {{"keys", std::to_string(evicted)}});
    schedule_maintenance();
  });
}

// ---- Gateway ----------------------------------------------------------------------------------

Gateway::Gateway(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Gateway::~Gateway() {
  stop();
}

Result<std::unique_ptr<Gateway>> Gateway::create(GatewayOptions options, GatewayDeps deps) {
  if (options.listener.tls && options.scheme == "http") options.scheme = "https";
  auto impl = std::make_unique<Impl>();
  Impl& g = *impl;
  g.clock = deps.clock != nullptr ? deps.clock : &g.own_clock;
  if (deps.random == nullptr) g.own_random = std::make_unique<SecureRandom>();
  g.random = deps.random != nullptr ? deps.random : g.own_random.get();
  if (deps.metrics == nullptr) g.own_metrics = std::make_unique<MetricsRegistry>();
  g.metrics = deps.metrics != nullptr ? deps.metrics : g.own_metrics.get();
  g.log = deps.logger.with_component("gateway");
  g.reload_config = std::move(deps.reload_config);
  g.access_log = deps.logger.with_component("gateway.access");
  g.ids = std::make_unique<IdGenerator>(*g.clock, *g.random);
  CIVICBUS_RETURN_IF_ERROR(options.listener.validate().with_context("gateway listener"));
  CIVICBUS_RETURN_IF_ERROR(options.load_shedding.validate().with_context("gateway load_shedding"));
  g.limiter = std::make_unique<RateLimiter>(*g.clock);
  g.shedder = std::make_unique<LoadShedder>(options.load_shedding, *g.clock);
  g.auth_failures = &g.metrics->counter("civicbus_gateway_auth_failures_total",
                                        "Requests refused for missing or invalid credentials");
  g.rate_limited =
      &g.metrics->counter("civicbus_gateway_rate_limited_total", "Requests refused with 429");
  g.shed = &g.metrics->counter("civicbus_gateway_shed_total",
                               "Requests refused with 503 by load shedding");
  LoadShedder* shedder = g.shedder.get();
  g.gauges.push_back(g.metrics->gauge_callback(
      "civicbus_gateway_concurrency_limit", "The adaptive concurrency limit", {},
      [shedder] { return static_cast<double>(shedder->status().limit); }));
  g.gauges.push_back(g.metrics->gauge_callback(
      "civicbus_gateway_in_flight", "Requests the gateway is working on", {},
      [shedder] { return static_cast<double>(shedder->status().in_flight); }));
  for (std::size_t tier = 0; tier < options.load_shedding.tier_shares.size(); ++tier) {
    g.gauges.push_back(g.metrics->gauge_callback(
        "civicbus_gateway_shedding", "1 while requests of this priority tier are being shed",
        {{"tier", std::to_string(tier)}}, [shedder, tier] {
          const auto s = shedder->status();
          return tier < s.shedding_per_tier.size() && s.shedding_per_tier[tier] ? 1.0 : 0.0;
        }));
  }

  // The token endpoint's key.
  if (options.oauth.enabled) {
    auto alg = parse_jws_algorithm(options.oauth.algorithm);
    if (!alg.ok() || (*alg != JwsAlgorithm::kEs256 && *alg != JwsAlgorithm::kRs256)) {
      return invalid_argument("gateway oauth.algorithm '" + options.oauth.algorithm +
                              "' must be ES256 or RS256");
    }
    if (!options.oauth.signing_key_file.empty()) {
      auto text = read_text_file(options.oauth.signing_key_file);
      if (!text.ok()) return text.status().with_context("gateway oauth.signing_key_file");
      auto key = Jwk::parse_text(*text);
      if (!key.ok()) return key.status().with_context("gateway oauth.signing_key_file");
      if (!key->can_sign() || key->algorithm() != *alg) {
        return invalid_argument("gateway oauth.signing_key_file must hold a private " +
                                options.oauth.algorithm + " key");
      }
      g.signing_key = std::move(key).value();
    } else {
      const std::string kid = "gw-" + crypto::to_hex(g.random->bytes(6));
      auto key = *alg == JwsAlgorithm::kEs256 ? Jwk::generate_ec(*g.random, kid)
                                              : Jwk::generate_rsa(*g.random, kid);
      if (!key.ok()) return key.status().with_context("generating the gateway's signing key");
      g.signing_key = std::move(key).value();
    }
    JwkSet own;
    CIVICBUS_RETURN_IF_ERROR(own.add(*g.signing_key));
    JwtVerifierOptions vo;
    vo.issuer = options.oauth.issuer;
    vo.audiences = {options.oauth.audience};
    vo.leeway = options.jwt.leeway;
    g.own_verifier = std::make_unique<JwtVerifier>(std::move(own), vo, *g.clock);
  }
  HttpSignatureVerifierOptions hv;
  hv.scheme = options.scheme;
  hv.clock_skew = options.hmac.clock_skew;
  hv.replay_cache_capacity = options.hmac.replay_cache_capacity;
  ConsumerStore* store = &g.consumers;
  g.hmac = std::make_unique<HttpSignatureVerifier>(
      [store](std::string_view key_id) -> std::optional<std::string> {
        auto found = store->by_hmac_key(key_id);
        if (!found) return std::nullopt;
        return found->second;
      },
      *g.clock, hv);

  g.options = options;
  CIVICBUS_RETURN_IF_ERROR(g.load_jwt_keys(options.jwt));
  std::vector<std::shared_ptr<const Consumer>> configured;
  for (const ConsumerOptions& c : options.consumers) {
    CIVICBUS_ASSIGN_OR_RETURN(auto compiled, ConsumerStore::compile(c, true));
    configured.push_back(std::move(compiled));
  }
  CIVICBUS_RETURN_IF_ERROR(g.consumers.replace_configured(std::move(configured)));
  CIVICBUS_ASSIGN_OR_RETURN(auto snap, g.compile(options));
  g.install(std::move(snap));
  return std::unique_ptr<Gateway>(new Gateway(std::move(impl)));
}

Status Gateway::add_route(RouteOptions route, GatewayHandler handler) {
  if (!handler) return invalid_argument("route '" + route.id + "': the handler is empty");
  if (route.id.rfind("gateway.", 0) == 0) {
    return invalid_argument("route '" + route.id + "': ids starting with 'gateway.' are reserved");
  }
  Impl& g = *impl_;
  {
    std::lock_guard lock(g.snap_mu);
    g.code_routes.emplace_back(route, handler);
  }
  auto snap = g.compile(g.current()->options);
  if (!snap.ok()) {
    std::lock_guard lock(g.snap_mu);
    g.code_routes.pop_back();
    return snap.status();
  }
  g.install(std::move(snap).value());
  return Status();
}

Result<std::uint16_t> Gateway::start() {
  Impl& g = *impl_;
  if (g.server) return failed_precondition("the gateway is already started");
  g.server = http::detail::ServerAccess::create_awaitable(
      g.options.listener,
      [&g](HttpRequest& request, HttpResponse& response, http::detail::OwnFields& own,
           std::size_t worker) { return g.serve(request, response, own, worker); });
  const std::size_t n = http::detail::ServerAccess::worker_count(*g.server);
  g.workers.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    g.workers[i].io = &http::detail::ServerAccess::worker_io(*g.server, i);
    g.workers[i].random = std::make_unique<SeededRandom>(g.random->next_u64());
    g.workers[i].ids = std::make_unique<IdGenerator>(*g.clock, *g.workers[i].random);
  }
  auto port = g.server->start();
  if (!port.ok()) {
    g.server.reset();
    g.workers.clear();
    return port.status().with_context("gateway");
  }
  g.running = true;
  auto snap = g.current();
  asio::post(*g.workers[0].io, [&g, snap] {
    g.start_health_checks(snap);
    g.schedule_maintenance();
  });
  if (!g.options.jwt.jwks_url.empty()) g.refresh_jwks([] {});
  g.log.info("gateway listening", {{"address", g.options.listener.bind_address},
                                   {"port", std::to_string(*port)},
                                   {"routes", std::to_string(snap->routes.size())}});
  return port;
}

std::uint16_t Gateway::port() const {
  return impl_->server ? impl_->server->port() : 0;
}

void Gateway::stop() {
  Impl& g = *impl_;
  if (!g.server) return;
  g.running = false;
  // Each worker shuts its own clients down (they live on its thread); their exchanges end
  // with kCancelled and answer 503 before the server closes the connections.
  for (Impl::Worker& w : g.workers) {
    asio::post(*w.io, [&w] {
      w.stopped = true;
      for (auto& timer : w.health_timers) timer->cancel();
      if (w.maintenance) w.maintenance->cancel();
      for (auto& [name, client] : w.clients) http::detail::ClientAccess::shut_down(*client);
      for (auto& client : w.retired) http::detail::ClientAccess::shut_down(*client);
      if (w.health_client) http::detail::ClientAccess::shut_down(*w.health_client);
    });
  }
  g.server->stop();
  // The workers' event loops have stopped: the clients can go, then the server.
  for (Impl::Worker& w : g.workers) {
    w.clients.clear();
    w.retired.clear();
    w.health_client.reset();
    w.health_timers.clear();
    w.maintenance.reset();
  }
  g.server.reset();
  g.workers.clear();
  g.jwks_client.reset();
}

Status Gateway::reload(GatewayOptions options) {
  Impl& g = *impl_;
  options.listener = g.options.listener;  // the listener stays
  options.load_shedding = g.options.load_shedding;
  std::vector<std::shared_ptr<const Consumer>> configured;
  for (const ConsumerOptions& c : options.consumers) {
    CIVICBUS_ASSIGN_OR_RETURN(auto compiled, ConsumerStore::compile(c, true));
    configured.push_back(std::move(compiled));
  }
  CIVICBUS_ASSIGN_OR_RETURN(auto snap, g.compile(options));
  CIVICBUS_RETURN_IF_ERROR(g.consumers.replace_configured(std::move(configured)));
  {
    std::lock_guard lock(g.jwks_mu);
    g.options.jwt = options.jwt;
  }
  CIVICBUS_RETURN_IF_ERROR(g.load_jwt_keys(options.jwt));
  g.options = options;
  g.install(std::move(snap));
  if (g.server && g.options.listener.tls) {
    // Certificates are re-read too: new connections get the new ones.
    if (Status s = g.server->reload_tls(); !s.ok()) {
      g.log.error("TLS certificates not reloaded; the old ones stay", {{"error", s.message()}});
      return s.with_context("gateway reload: routes applied, TLS certificates kept");
    }
  }
  g.log.info("gateway configuration reloaded",
             {{"routes", std::to_string(g.current()->routes.size())}});
  return Status();
}

Result<std::string> Gateway::Impl::add_consumer(ConsumerOptions consumer, bool generate_api_key) {
  std::string key;
  if (generate_api_key) {
    key = "cb_" + crypto::base64url_encode(random->bytes(24));  // 192 bits
    consumer.api_keys.push_back(key);
  }
  CIVICBUS_ASSIGN_OR_RETURN(auto compiled, ConsumerStore::compile(std::move(consumer), false));
  CIVICBUS_RETURN_IF_ERROR(consumers.put(std::move(compiled)));
  return key;
}

Result<std::string> Gateway::add_consumer(ConsumerOptions consumer, bool generate_api_key) {
  return impl_->add_consumer(std::move(consumer), generate_api_key);
}

std::vector<ConsumerInfo> Gateway::consumers() const {
  std::vector<ConsumerInfo> out;
  for (const auto& c : impl_->consumers.all()) out.push_back(c->info());
  return out;
}

Json Gateway::openapi() const {
  return impl_->openapi_json();
}

Json Gateway::health() const {
  return impl_->health_json();
}

Json Gateway::metrics_json() const {
  return impl_->metrics_json();
}

std::string Gateway::metrics_text() const {
  return impl_->metrics->prometheus_text();
}

}  // namespace civicbus::gateway
