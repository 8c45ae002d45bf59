#include "rest_client.hpp"

#include <algorithm>
#include <charconv>
#include <thread>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/crypto.hpp"

namespace civicbus::connect::detail {

namespace {

bool is_unreserved(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string body_excerpt(std::string_view body) {
  constexpr std::size_t kMax = 200;
  std::string out(body.substr(0, kMax));
  if (body.size() > kMax) out += "…";
  return out;
}

// The wait a Retry-After field asks for (delta-seconds or an HTTP-date), if it
// has one.
std::optional<std::chrono::milliseconds> retry_after(const http::HttpHeaders& headers) {
  auto value = headers.get("Retry-After");
  if (!value) return std::nullopt;
  std::string_view text = trim(*value);
  std::int64_t seconds = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec == std::errc() && ptr == text.data() + text.size() && seconds >= 0) {
    return std::chrono::milliseconds(seconds * 1000);
  }
  auto date = parse_http_date(text);
  if (!date.ok()) return std::nullopt;
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
      *date - std::chrono::system_clock::now());
  return std::max(wait, std::chrono::milliseconds(0));
}

Result<std::chrono::milliseconds> read_ms(const Json* config, std::string_view key,
                                          std::chrono::milliseconds fallback) {
  if (config == nullptr) return fallback;
  const Json* v = config->find(key);
  if (v == nullptr || v->is_null()) return fallback;
  if (!v->is_int() || v->as_int() < 0) {
    return invalid_argument("'" + std::string(key) + "' must be a non-negative integer");
  }
  return std::chrono::milliseconds(v->as_int());
}

}  // namespace

Result<Url> Url::parse(std::string_view text) {
  Url url;
  auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) {
    return invalid_argument("'" + std::string(text) + "' is not an absolute http(s) URL");
  }
  url.scheme = lower(text.substr(0, scheme_end));
  if (url.scheme != "http" && url.scheme != "https") {
    return invalid_argument("URL '" + std::string(text) + "' has scheme '" + url.scheme +
                            "'; only http and https are supported");
  }
  std::string_view rest = text.substr(scheme_end + 3);
  auto path_start = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_start);
  if (path_start != std::string_view::npos) {
    url.target = std::string(rest.substr(path_start));
    if (url.target.front() == '?') url.target.insert(url.target.begin(), '/');
  }
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    return invalid_argument("URL '" + std::string(text.substr(0, scheme_end + 3)) +
                            "…' carries credentials; put them in the auth settings instead");
  }
  url.port = url.scheme == "https" ? 443 : 80;
  std::string_view host = authority;
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) {
      return invalid_argument("URL '" + std::string(text) + "' has an unclosed IPv6 address");
    }
    host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':') {
      port_text = authority.substr(close + 2);
    }
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port_text = authority.substr(colon + 1);
  }
  if (host.empty()) return invalid_argument("URL '" + std::string(text) + "' has no host");
  url.host = std::string(host);
  if (!port_text.empty()) {
    unsigned port = 0;
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
      return invalid_argument("URL '" + std::string(text) + "' has an invalid port");
    }
    url.port = static_cast<std::uint16_t>(port);
  }
  return url;
}

Result<Url> Url::resolve(std::string_view reference) const {
  if (reference.find("://") != std::string_view::npos) return parse(reference);
  Url out = *this;
  if (!reference.empty() && reference.front() == '/') {
    out.target = std::string(reference);
    return out;
  }
  if (!reference.empty() && reference.front() == '?') {
    out.target = out.target.substr(0, out.target.find('?')) + std::string(reference);
    return out;
  }
  // A relative path: replace the last segment of the base path.
  std::string path = out.target.substr(0, out.target.find('?'));
  out.target = path.substr(0, path.rfind('/') + 1) + std::string(reference);
  return out;
}

std::string Url::host_port() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::string Url::to_string() const {
  return scheme + "://" + host_port() + target;
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (is_unreserved(c)) {
      out += c;
    } else {
      auto b = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[b >> 4];
      out += kHex[b & 15];
    }
  }
  return out;
}

std::string encode_query(const QueryParams& params) {
  std::string out;
  for (const auto& [name, value] : params) {
    if (!out.empty()) out += '&';
    out += percent_encode(name);
    out += '=';
    out += percent_encode(value);
  }
  return out;
}

std::string append_query(std::string target, const QueryParams& params) {
  if (params.empty()) return target;
  target += target.find('?') == std::string::npos ? '?' : '&';
  target += encode_query(params);
  return target;
}

std::string next_link(const http::HttpHeaders& headers) {
  for (std::string_view field : headers.get_all("Link")) {
    // link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param ), comma
    // separated.
    std::size_t pos = 0;
    while (pos < field.size()) {
      auto open = field.find('<', pos);
      if (open == std::string_view::npos) break;
      auto close = field.find('>', open);
      if (close == std::string_view::npos) break;
      std::string_view uri = field.substr(open + 1, close - open - 1);
      auto next_open = field.find('<', close);
      std::string_view params =
          field.substr(close + 1, next_open == std::string_view::npos ? std::string_view::npos
                                                                      : next_open - close - 1);
      // rel may hold several space-separated relation types, quoted or not.
      auto rel = lower(params).find("rel=");
      if (rel != std::string::npos) {
        std::string_view value = params.substr(rel + 4);
        bool quoted = !value.empty() && value.front() == '"';
        if (quoted) value.remove_prefix(1);
        auto end = value.find_first_of(quoted ? "\"" : ";,");
        std::string types = lower(value.substr(0, end));
        std::size_t start = 0;
        while (start <= types.size()) {
          auto space = types.find(' ', start);
          if (types.substr(start, space - start) == "next") return std::string(uri);
          if (space == std::string::npos) break;
          start = space + 1;
        }
      }
      if (next_open == std::string_view::npos) break;
      pos = next_open;
    }
  }
  return {};
}

Result<RetryPolicy> RetryPolicy::from_json(const Json* config) {
  RetryPolicy policy;
  if (config == nullptr || config->is_null()) return policy;
  if (!config->is_object()) return invalid_argument("'retry' must be an object");
  if (const Json* n = config->find("max_retries"); n != nullptr) {
    if (!n->is_int() || n->as_int() < 0 || n->as_int() > 20) {
      return invalid_argument("'retry.max_retries' must be an integer from 0 to 20");
    }
    policy.max_retries = static_cast<int>(n->as_int());
  }
  CIVICBUS_ASSIGN_OR_RETURN(policy.initial_backoff,
                            read_ms(config, "initial_backoff_ms", policy.initial_backoff));
  CIVICBUS_ASSIGN_OR_RETURN(policy.max_backoff,
                            read_ms(config, "max_backoff_ms", policy.max_backoff));
  CIVICBUS_ASSIGN_OR_RETURN(policy.max_retry_after,
                            read_ms(config, "max_retry_after_ms", policy.max_retry_after));
  return policy;
}

Result<AuthConfig> AuthConfig::from_json(const Json* auth) {
  AuthConfig config;
  if (auth == nullptr || auth->is_null()) return config;
  if (!auth->is_object()) return invalid_argument("'auth' must be an object");
  std::string type = auth->get_string("type", "none");
  auto need = [&](std::string_view key) -> Result<std::string> {
    std::string value = auth->get_string(key);
    if (value.empty()) {
      return invalid_argument("auth type '" + type + "' needs 'auth/" + std::string(key) + "'");
    }
    return value;
  };
  if (type == "none") {
    config.type = Type::kNone;
  } else if (type == "bearer") {
    config.type = Type::kBearer;
    CIVICBUS_ASSIGN_OR_RETURN(config.token, need("token"));
  } else if (type == "basic") {
    config.type = Type::kBasic;
    CIVICBUS_ASSIGN_OR_RETURN(config.username, need("username"));
    config.password = auth->get_string("password");
  } else if (type == "api_key") {
    config.type = Type::kApiKey;
    config.key_name = auth->get_string("name", config.key_name);
    CIVICBUS_ASSIGN_OR_RETURN(config.key_value, need("key"));
    std::string in = auth->get_string("in", "header");
    if (in != "header" && in != "query") {
      return invalid_argument("'auth/in' must be 'header' or 'query', not '" + in + "'");
    }
    config.key_in_query = in == "query";
  } else if (type == "oauth2_client_credentials") {
    config.type = Type::kOAuth2;
    CIVICBUS_ASSIGN_OR_RETURN(config.token_url, need("token_url"));
    CIVICBUS_RETURN_IF_ERROR(Url::parse(config.token_url).status().with_context("auth/token_url"));
    CIVICBUS_ASSIGN_OR_RETURN(config.client_id, need("client_id"));
    CIVICBUS_ASSIGN_OR_RETURN(config.client_secret, need("client_secret"));
    config.scope = auth->get_string("scope");
  } else {
    return invalid_argument("unknown auth type '" + type +
                            "' (expected none, bearer, basic, api_key or "
                            "oauth2_client_credentials)");
  }
  return config;
}

Json AuthConfig::schema() {
  auto str = [] { return Json::object({{"type", "string"}}); };
  auto secret = [] { return Json::object({{"type", "string"}, {"secret", true}}); };
  return Json::object(
      {{"type", "object"},
       {"properties",
        Json::object(
            {{"type", Json::object({{"enum", Json::array({"none", "bearer", "basic", "api_key",
                                                          "oauth2_client_credentials"})}})},
             {"token", secret()},
             {"username", str()},
             {"password", secret()},
             {"name", str()},
             {"key", secret()},
             {"in", Json::object({{"enum", Json::array({"header", "query"})}})},
             {"token_url", str()},
             {"client_id", str()},
             {"client_secret", secret()},
             {"scope", str()}})}});
}

Result<std::unique_ptr<RestClient>> RestClient::create(AuthConfig auth, RetryPolicy retry,
                                                       std::chrono::milliseconds timeout,
                                                       std::size_t max_body_bytes) {
  std::unique_ptr<RestClient> client(new RestClient());
  client->auth_ = std::move(auth);
  client->retry_ = retry;
  client->timeout_ = timeout;
  client->max_body_bytes_ = max_body_bytes;
  http::HttpClientOptions options;
  options.max_response_body_bytes = max_body_bytes;
  options.request_timeout = timeout;
  options.connect_timeout = std::min<std::chrono::milliseconds>(timeout, options.connect_timeout);
  options.max_retries = 0;  // retries are ours, so Retry-After and the policy's bounds apply
  CIVICBUS_ASSIGN_OR_RETURN(client->plain_, http::HttpClient::create(options));
  return client;
}

http::HttpClient* RestClient::client_for(const Url& url) {
  if (url.scheme != "https") return plain_.get();
  if (tls_ == nullptr) {
    http::HttpClientOptions options;
    options.request_timeout = timeout_;
    options.connect_timeout =
        std::min<std::chrono::milliseconds>(timeout_, options.connect_timeout);
    options.max_retries = 0;
    options.max_response_body_bytes = max_body_bytes_;
    options.tls = http::TlsClientOptions{};
    auto client = http::HttpClient::create(options);
    if (!client.ok()) return nullptr;
    tls_ = std::move(client).value();
  }
  return tls_.get();
}

int RestClient::tokens_fetched() const {
  std::lock_guard lock(token_mutex_);
  return tokens_fetched_;
}

Result<http::HttpResponse> RestClient::exchange(const Url& url, http::HttpRequest request) {
  http::HttpClient* client = client_for(url);
  if (client == nullptr) return unavailable("cannot set up TLS for " + url.host_port());
  request.target = url.target;
  request.headers.set("Host",
                      url.port == (url.scheme == "https" ? 443 : 80) ? url.host : url.host_port());
  std::chrono::milliseconds backoff = retry_.initial_backoff;
  for (int attempt = 0;; ++attempt) {
    auto response = client->send(url.host_port(), request);
    bool last = attempt >= retry_.max_retries;
    std::chrono::milliseconds wait = backoff;
    if (!response.ok()) {
      ErrorCode code = response.status().code();
      bool transient = code == ErrorCode::kUnavailable || code == ErrorCode::kDeadlineExceeded;
      // A POST that may have reached the server is not repeated: it could be
      // applied twice.
      bool safe = http::is_idempotent_method(request.method) ||
                  response.status().message().find("cannot connect") != std::string::npos ||
                  response.status().message().find("cannot resolve") != std::string::npos;
      if (!transient || last || !safe) {
        // Timeouts count as the service being unavailable: callers (a circuit
        // breaker) treat both the same way. The query is left out: it may carry
        // an API key.
        std::string shown =
            url.scheme + "://" + url.host_port() + url.target.substr(0, url.target.find('?'));
        return unavailable(request.method + " " + shown + " failed after " +
                           std::to_string(attempt + 1) +
                           " attempt(s): " + response.status().message());
      }
    } else {
      int status = response->status;
      if ((status != 429 && status != 503) || last) return response;
      if (auto asked = retry_after(response->headers)) {
        wait = std::min(*asked, retry_.max_retry_after);
      }
    }
    std::this_thread::sleep_for(wait);
    backoff = std::min(backoff * 2, retry_.max_backoff);
  }
}

Result<std::string> RestClient::access_token(bool force_refresh) {
  std::lock_guard lock(token_mutex_);
  auto now = std::chrono::steady_clock::now();
  if (!force_refresh && !token_.empty() && now < token_expiry_) return token_;
  CIVICBUS_ASSIGN_OR_RETURN(Url url, Url::parse(auth_.token_url));
  http::HttpRequest request;
  request.method = "POST";
  QueryParams form{{"grant_type", "client_credentials"}};
  if (!auth_.scope.empty()) form.emplace_back("scope", auth_.scope);
  request.body = encode_query(form);
  request.headers.set("Content-Type", "application/x-www-form-urlencoded");
  request.headers.set("Accept", "application/json");
  // RFC 6749 §2.3.1: client_secret_basic, the method every server must support.
  request.headers.set("Authorization",
                      "Basic " + crypto::base64_encode(percent_encode(auth_.client_id) + ":" +
                                                       percent_encode(auth_.client_secret)));
  CIVICBUS_ASSIGN_OR_RETURN(http::HttpResponse response, exchange(url, std::move(request)));
  if (response.status == 400 || response.status == 401) {
    return unauthenticated("token endpoint " + url.to_string() +
                           " refused the client credentials (" + std::to_string(response.status) +
                           "): " + body_excerpt(response.body));
  }
  if (response.status / 100 != 2) {
    return unavailable("token endpoint " + url.to_string() + " answered " +
                       std::to_string(response.status));
  }
  auto json = Json::parse(response.body);
  std::string token = json.ok() ? json->get_string("access_token") : std::string();
  if (token.empty()) {
    return data_loss("token endpoint " + url.to_string() + " answered without an access_token");
  }
  std::int64_t expires_in = json->get_int("expires_in", 3600);
  // Renew a little early so a token does not expire between the check and the
  // call.
  auto lifetime = std::chrono::seconds(std::max<std::int64_t>(expires_in - 30, expires_in / 2));
  token_ = token;
  token_expiry_ = now + lifetime;
  ++tokens_fetched_;
  return token_;
}

Result<RestResponse> RestClient::send(std::string_view method, const Url& url,
                                      const QueryParams& query, std::string body,
                                      std::string content_type,
                                      const http::HttpHeaders& extra_headers) {
  QueryParams params = query;
  if (auth_.type == AuthConfig::Type::kApiKey && auth_.key_in_query) {
    params.emplace_back(auth_.key_name, auth_.key_value);
  }
  Url target = url;
  target.target = append_query(url.target, params);
  bool refreshed = false;
  for (;;) {
    http::HttpRequest request;
    request.method = std::string(method);
    for (const auto& [name, value] : extra_headers) request.headers.add(name, value);
    if (!request.headers.contains("Accept")) request.headers.set("Accept", "application/json");
    if (!content_type.empty()) request.headers.set("Content-Type", content_type);
    request.body = body;
    switch (auth_.type) {
      case AuthConfig::Type::kNone:
        break;
      case AuthConfig::Type::kBearer:
        request.headers.set("Authorization", "Bearer " + auth_.token);
        break;
      case AuthConfig::Type::kBasic:
        request.headers.set("Authorization", "Basic " + crypto::base64_encode(auth_.username + ":" +
                                                                              auth_.password));
        break;
      case AuthConfig::Type::kApiKey:
        if (!auth_.key_in_query) request.headers.set(auth_.key_name, auth_.key_value);
        break;
      case AuthConfig::Type::kOAuth2: {
        CIVICBUS_ASSIGN_OR_RETURN(std::string token, access_token(refreshed));
        request.headers.set("Authorization", "Bearer " + token);
        break;
      }
    }
    CIVICBUS_ASSIGN_OR_RETURN(http::HttpResponse response, exchange(target, std::move(request)));
    // An access token can be revoked or expire early: fetch a new one, once.
    if (response.status == 401 && auth_.type == AuthConfig::Type::kOAuth2 && !refreshed) {
      refreshed = true;
      continue;
    }
    RestResponse out;
    out.status = response.status;
    out.headers = std::move(response.headers);
    out.body = std::move(response.body);
    // Without the added parameters: they may carry an API key or token.
    out.url = url.to_string();
    return out;
  }
}

Status status_from_response(const RestResponse& response, std::string_view what) {
  std::string message =
      std::string(what) + ": " + response.url + " answered " + std::to_string(response.status);
  if (!response.body.empty()) message += ": " + body_excerpt(response.body);
  int s = response.status;
  if (s == 401) return unauthenticated(message + " (check the credentials)");
  if (s == 403) return permission_denied(message);
  if (s == 404) return not_found(message);
  if (s == 429 || s >= 500) return unavailable(message);
  return invalid_argument(message);
}

Result<Json> RestClient::get_json(const Url& url, const QueryParams& query) {
  CIVICBUS_ASSIGN_OR_RETURN(RestResponse response, send("GET", url, query));
  if (response.status / 100 != 2) return status_from_response(response, "GET");
  auto json = Json::parse(response.body);
  if (!json.ok()) {
    return data_loss("GET " + response.url + " did not answer JSON: " + json.status().message());
  }
  return std::move(json).value();
}

FieldType infer_field_type(const Json& value) {
  switch (value.type()) {
    case Json::Type::kBool:
      return FieldType::kBoolean;
    case Json::Type::kInt:
      return FieldType::kInteger;
    case Json::Type::kDouble:
      return FieldType::kNumber;
    case Json::Type::kString:
      return parse_rfc3339(value.as_string()).ok() ? FieldType::kTimestamp : FieldType::kString;
    case Json::Type::kArray:
    case Json::Type::kObject:
      return FieldType::kJson;
    case Json::Type::kNull:
      break;
  }
  return FieldType::kString;
}

std::vector<FieldSpec> infer_fields(const std::vector<Json>& objects) {
  std::vector<FieldSpec> fields;
  std::vector<bool> typed;
  for (const Json& object : objects) {
    if (!object.is_object()) continue;
    for (const auto& [name, value] : object.as_object()) {
      auto it = std::find_if(fields.begin(), fields.end(),
                             [&](const FieldSpec& f) { return f.name == name; });
      std::size_t index = static_cast<std::size_t>(it - fields.begin());
      if (it == fields.end()) {
        fields.push_back(FieldSpec{name, FieldType::kString, true});
        typed.push_back(false);
      }
      if (value.is_null()) continue;
      FieldType type = infer_field_type(value);
      FieldSpec& field = fields[index];
      if (!typed[index]) {
        field.type = type;
        typed[index] = true;
      } else if (field.type != type) {
        bool numeric = (field.type == FieldType::kInteger || field.type == FieldType::kNumber) &&
                       (type == FieldType::kInteger || type == FieldType::kNumber);
        bool textual = (field.type == FieldType::kString || field.type == FieldType::kTimestamp) &&
                       (type == FieldType::kString || type == FieldType::kTimestamp);
        field.type = numeric ? FieldType::kNumber : textual ? FieldType::kString : FieldType::kJson;
      }
    }
  }
  return fields;
}

}  // namespace civicbus::connect::detail
