#include "gateway/http_signature.hpp"

#include <mbedtls/md.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "civicbus/core/crypto.hpp"
#include "core/ascii.hpp"
#include "http/framing.hpp"

namespace civicbus::gateway {
namespace {

using http::detail::trim_ows;

using http::HttpRequest;

// ---- RFC 8941 structured fields: the subset Signature-Input, Signature and Content-Digest
// use. Decimals are refused (no parameter of these fields is a decimal). ----

struct SfBare {
  enum class Kind { kInteger, kString, kToken, kBytes, kBoolean };
  Kind kind = Kind::kBoolean;
  std::int64_t integer = 0;
  std::string text;  // string/token text, or decoded bytes
  bool boolean = true;
};

using SfParams = std::vector<std::pair<std::string, SfBare>>;

struct SfItem {
  SfBare value;
  SfParams params;
};

struct SfMember {
  std::string key;
  bool inner_list = false;
  SfItem item;                // when !inner_list
  std::vector<SfItem> items;  // when inner_list
  SfParams params;            // the inner list's parameters
};

bool is_lcalpha(char c) {
  return c >= 'a' && c <= 'z';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
  return is_lcalpha(c) || (c >= 'A' && c <= 'Z');
}
using http::detail::is_tchar;  // RFC 9110 token characters

class SfParser {
 public:
  explicit SfParser(std::string_view in) : in_(in) {}

  Result<std::vector<SfMember>> dictionary() {
    std::vector<SfMember> members;
    skip_sp();
    if (eof()) return fail("empty dictionary");
    while (!eof()) {
      SfMember m;
      CIVICBUS_ASSIGN_OR_RETURN(m.key, key());
      for (const auto& other : members) {
        if (other.key == m.key) return fail("duplicate dictionary key '" + m.key + "'");
      }
      if (peek() == '=') {
        ++pos_;
        if (peek() == '(') {
          m.inner_list = true;
          CIVICBUS_RETURN_IF_ERROR(inner_list(m.items, m.params));
        } else {
          CIVICBUS_ASSIGN_OR_RETURN(m.item.value, bare_item());
          CIVICBUS_ASSIGN_OR_RETURN(m.item.params, parameters());
        }
      } else {
        m.item.value = SfBare{};  // boolean true
        CIVICBUS_ASSIGN_OR_RETURN(m.item.params, parameters());
      }
      members.push_back(std::move(m));
      skip_ows();
      if (eof()) break;
      if (peek() != ',')
        return fail(std::string("expected ',' between members, found '") + peek() + "'");
      ++pos_;
      skip_ows();
      if (eof()) return fail("trailing ',' in dictionary");
    }
    return members;
  }

  // A whole field that is one inner list with parameters.
  Status whole_inner_list(std::vector<SfItem>& items, SfParams& params) {
    skip_sp();
    CIVICBUS_RETURN_IF_ERROR(inner_list(items, params));
    skip_sp();
    if (!eof()) return fail("unexpected characters after the inner list");
    return Status();
  }

 private:
  bool eof() const { return pos_ >= in_.size(); }
  char peek() const { return eof() ? '\0' : in_[pos_]; }
  void skip_sp() {
    while (peek() == ' ') ++pos_;
  }
  void skip_ows() {
    while (peek() == ' ' || peek() == '\t') ++pos_;
  }
  Status fail(std::string what) const {
    return invalid_argument(what + " at offset " + std::to_string(pos_));
  }

  Result<std::string> key() {
    if (!(is_lcalpha(peek()) || peek() == '*')) {
      return fail("a key must start with a lower-case letter or '*'");
    }
    std::size_t start = pos_;
    while (!eof()) {
      char c = peek();
      if (!(is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '.' || c == '*')) break;
      ++pos_;
    }
    return std::string(in_.substr(start, pos_ - start));
  }

  Status inner_list(std::vector<SfItem>& items, SfParams& params) {
    if (peek() != '(') return fail("expected '(' to open an inner list");
    ++pos_;
    while (true) {
      skip_sp();
      if (eof()) return fail("unterminated inner list");
      if (peek() == ')') {
        ++pos_;
        CIVICBUS_ASSIGN_OR_RETURN(params, parameters());
        return Status();
      }
      SfItem item;
      CIVICBUS_ASSIGN_OR_RETURN(item.value, bare_item());
      CIVICBUS_ASSIGN_OR_RETURN(item.params, parameters());
      items.push_back(std::move(item));
      if (eof()) return fail("unterminated inner list");
      if (peek() != ' ' && peek() != ')') return fail("expected ' ' or ')' in an inner list");
    }
  }

  Result<SfParams> parameters() {
    SfParams params;
    while (peek() == ';') {
      ++pos_;
      skip_sp();
      CIVICBUS_ASSIGN_OR_RETURN(std::string name, key());
      SfBare value;  // boolean true when there is no '='
      if (peek() == '=') {
        ++pos_;
        CIVICBUS_ASSIGN_OR_RETURN(value, bare_item());
      }
      auto it = std::find_if(params.begin(), params.end(),
                             [&](const auto& p) { return p.first == name; });
      if (it != params.end()) return fail("duplicate parameter '" + name + "'");
      params.emplace_back(std::move(name), std::move(value));
    }
    return params;
  }

  Result<SfBare> bare_item() {
    char c = peek();
    if (c == '-' || is_digit(c)) return integer();
    if (c == '"') return string();
    if (c == ':') return bytes();
    if (c == '?') return boolean();
    if (is_alpha(c) || c == '*') return token();
    if (eof()) return fail("expected an item, found the end of the field");
    return fail(std::string("unexpected character '") + c + "' where an item should start");
  }

  Result<SfBare> integer() {
    bool negative = false;
    if (peek() == '-') {
      negative = true;
      ++pos_;
    }
    if (!is_digit(peek())) return fail("expected a digit");
    std::int64_t v = 0;
    int digits = 0;
    while (is_digit(peek())) {
      if (++digits > 15) return fail("integer longer than 15 digits");
      v = v * 10 + (peek() - '0');
      ++pos_;
    }
    if (peek() == '.') return fail("decimals are not supported here");
    SfBare b;
    b.kind = SfBare::Kind::kInteger;
    b.integer = negative ? -v : v;
    return b;
  }

  Result<SfBare> string() {
    ++pos_;  // '"'
    SfBare b;
    b.kind = SfBare::Kind::kString;
    while (true) {
      if (eof()) return fail("unterminated string");
      char c = in_[pos_++];
      if (c == '\\') {
        if (eof()) return fail("unterminated string");
        char e = in_[pos_++];
        if (e != '"' && e != '\\') return fail("invalid escape in a string");
        b.text.push_back(e);
      } else if (c == '"') {
        return b;
      } else if (c < 0x20 || c > 0x7e) {
        return fail("non-printable character in a string");
      } else {
        b.text.push_back(c);
      }
    }
  }

  Result<SfBare> token() {
    SfBare b;
    b.kind = SfBare::Kind::kToken;
    std::size_t start = pos_;
    ++pos_;
    while (is_tchar(peek()) || peek() == ':' || peek() == '/') ++pos_;
    b.text = std::string(in_.substr(start, pos_ - start));
    return b;
  }

  Result<SfBare> bytes() {
    ++pos_;  // ':'
    std::size_t start = pos_;
    while (!eof() && peek() != ':') {
      char c = peek();
      if (!(is_alpha(c) || is_digit(c) || c == '+' || c == '/' || c == '=')) {
        return fail("invalid character in a byte sequence");
      }
      ++pos_;
    }
    if (eof()) return fail("unterminated byte sequence");
    std::string_view text = in_.substr(start, pos_ - start);
    ++pos_;  // ':'
    auto decoded = crypto::base64_decode(text);
    if (!decoded.ok()) return fail("byte sequence is not valid base64");
    SfBare b;
    b.kind = SfBare::Kind::kBytes;
    b.text = std::move(*decoded);
    return b;
  }

  Result<SfBare> boolean() {
    ++pos_;  // '?'
    if (peek() != '0' && peek() != '1') return fail("a boolean must be ?0 or ?1");
    SfBare b;
    b.kind = SfBare::Kind::kBoolean;
    b.boolean = peek() == '1';
    ++pos_;
    return b;
  }

  std::string_view in_;
  std::size_t pos_ = 0;
};

std::string serialize_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// Joins every field line of a name with ", " (RFC 9110 §5.3), as RFC 8941 parsing requires.
std::optional<std::string> combined_field(const http::HttpHeaders& headers, std::string_view name) {
  auto values = headers.get_all(name);
  if (values.empty()) return std::nullopt;
  std::string out;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out += ", ";
    out += values[i];
  }
  return out;
}

std::string sha512(std::string_view data) {
  unsigned char out[64];
  // mbedtls_md has the same signature in 2.28 and 3.x.
  const mbedtls_md_info_t* info = mbedtls_md_info_from_type(MBEDTLS_MD_SHA512);
  if (info == nullptr || mbedtls_md(info, reinterpret_cast<const unsigned char*>(data.data()),
                                    data.size(), out) != 0) {
    return {};
  }
  return std::string(reinterpret_cast<const char*>(out), sizeof out);
}

Result<HttpSignatureParams> params_from_sf(const std::vector<SfItem>& items, const SfParams& sf) {
  HttpSignatureParams p;
  for (const auto& item : items) {
    if (item.value.kind != SfBare::Kind::kString) {
      return invalid_argument("covered component identifiers must be strings");
    }
    if (!item.params.empty()) {
      return invalid_argument("component parameters (;" + item.params.front().first + ") on \"" +
                              item.value.text + "\" are not supported");
    }
    const std::string& id = item.value.text;
    if (id.empty()) return invalid_argument("empty component identifier");
    if (id != ascii_lower(id)) {
      return invalid_argument("component identifier \"" + id + "\" is not lower case");
    }
    if (std::find(p.components.begin(), p.components.end(), id) != p.components.end()) {
      return invalid_argument("component \"" + id + "\" is covered twice");
    }
    p.components.push_back(id);
  }
  for (const auto& [name, value] : sf) {
    // Init-captures: clang before 16 cannot capture structured bindings (P1091).
    auto need = [&name = name, &value = value](SfBare::Kind kind, const char* what) -> Status {
      if (value.kind != kind) return invalid_argument("parameter '" + name + "' must be " + what);
      return Status();
    };
    if (name == "created" || name == "expires") {
      CIVICBUS_RETURN_IF_ERROR(need(SfBare::Kind::kInteger, "an integer"));
      if (value.integer < 0) return invalid_argument("parameter '" + name + "' is negative");
      (name == "created" ? p.created : p.expires) = value.integer;
    } else if (name == "nonce" || name == "alg" || name == "keyid" || name == "tag") {
      CIVICBUS_RETURN_IF_ERROR(need(SfBare::Kind::kString, "a string"));
      (name == "nonce"   ? p.nonce
       : name == "alg"   ? p.alg
       : name == "keyid" ? p.keyid
                         : p.tag) = value.text;
    } else {
      return invalid_argument("unknown signature parameter '" + name + "'");
    }
    p.param_order.push_back(name);
  }
  return p;
}

// The value of one covered component (RFC 9421 §2.1, §2.2).
Result<std::string> component_value(const HttpRequest& request, const std::string& id,
                                    std::string_view scheme) {
  auto authority = [&]() -> Result<std::string> {
    auto host = request.headers.get("host");
    if (!host || request.headers.count("host") != 1 || trim_ows(*host).empty()) {
      return invalid_argument("@authority needs exactly one non-empty Host header");
    }
    return ascii_lower(trim_ows(*host));
  };
  bool absolute_form = request.target.find("://") != std::string::npos;
  if (id == "@method") return request.method;
  if (id == "@authority") return authority();
  if (id == "@scheme") return ascii_lower(scheme);
  if (id == "@path") return request.path.empty() ? std::string("/") : request.path;
  if (id == "@query") return "?" + request.query;
  if (id == "@request-target") return request.target;
  if (id == "@target-uri") {
    if (absolute_form) return request.target;
    if (request.target.empty() || request.target.front() != '/') {
      return invalid_argument("@target-uri needs an origin-form or absolute-form request-target");
    }
    CIVICBUS_ASSIGN_OR_RETURN(std::string auth, authority());
    return ascii_lower(scheme) + "://" + auth + request.target;
  }
  if (id.front() == '@') {
    return invalid_argument("derived component \"" + id + "\" is not supported for requests");
  }
  auto values = request.headers.get_all(id);
  if (values.empty()) return invalid_argument("covered header field \"" + id + "\" is missing");
  std::string out;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out += ", ";
    // Obsolete line folding cannot reach here: the HTTP parser rejects it.
    out += trim_ows(values[i]);
  }
  return out;
}

std::string replay_key(const std::string& keyid, const HttpSignatureParams& p,
                       const std::string& signature) {
  return keyid + (p.nonce ? "\nn\n" + *p.nonce : "\ns\n" + signature);
}

Status unauth(std::string_view reason, const Status& detail = Status()) {
  std::string message = "HTTP signature rejected: " + std::string(reason);
  if (!detail.ok()) message += ": " + detail.message();
  return unauthenticated(std::move(message));
}

Status check_content_digest(const HttpRequest& request) {
  auto field = combined_field(request.headers, "content-digest");
  if (!field) return unauth("the request has a body but no Content-Digest");
  auto members = SfParser(*field).dictionary();
  if (!members.ok()) return unauth("malformed Content-Digest", members.status());
  bool checked = false;
  for (const auto& m : *members) {
    std::string expected;
    if (m.key == "sha-256") {
      expected = crypto::sha256(request.body);
    } else if (m.key == "sha-512") {
      expected = sha512(request.body);
    } else {
      continue;  // RFC 9530: unknown algorithms are ignored
    }
    if (m.inner_list || m.item.value.kind != SfBare::Kind::kBytes) {
      return unauth("Content-Digest member '" + m.key + "' is not a byte sequence");
    }
    if (!crypto::constant_time_equal(expected, m.item.value.text)) {
      return unauth("Content-Digest " + m.key + " does not match the body");
    }
    checked = true;
  }
  if (!checked) return unauth("Content-Digest has no sha-256 or sha-512 member");
  return Status();
}

}  // namespace

std::string content_digest_sha256(std::string_view body) {
  return "sha-256=:" + crypto::base64_encode(crypto::sha256(body)) + ":";
}

Result<HttpSignatureParams> parse_signature_params(std::string_view inner_list) {
  std::vector<SfItem> items;
  SfParams params;
  CIVICBUS_RETURN_IF_ERROR(SfParser(inner_list).whole_inner_list(items, params));
  return params_from_sf(items, params);
}

std::string serialize_signature_params(const HttpSignatureParams& p) {
  std::string out = "(";
  for (std::size_t i = 0; i < p.components.size(); ++i) {
    if (i) out += ' ';
    out += serialize_string(p.components[i]);
  }
  out += ')';
  static const std::vector<std::string> kDefaultOrder = {"created", "expires", "nonce",
                                                         "alg",     "keyid",   "tag"};
  for (const auto& name : p.param_order.empty() ? kDefaultOrder : p.param_order) {
    if (name == "created" && p.created) out += ";created=" + std::to_string(*p.created);
    if (name == "expires" && p.expires) out += ";expires=" + std::to_string(*p.expires);
    if (name == "nonce" && p.nonce) out += ";nonce=" + serialize_string(*p.nonce);
    if (name == "alg" && p.alg) out += ";alg=" + serialize_string(*p.alg);
    if (name == "keyid" && p.keyid) out += ";keyid=" + serialize_string(*p.keyid);
    if (name == "tag" && p.tag) out += ";tag=" + serialize_string(*p.tag);
  }
  return out;
}

Result<std::string> http_signature_base(const HttpRequest& request,
                                        const HttpSignatureParams& params,
                                        std::string_view scheme) {
  std::string base;
  for (const auto& id : params.components) {
    if (id == "@signature-params") {
      return invalid_argument("\"@signature-params\" must not be a covered component");
    }
    CIVICBUS_ASSIGN_OR_RETURN(std::string value, component_value(request, id, scheme));
    if (value.find('\n') != std::string::npos || value.find('\r') != std::string::npos) {
      return invalid_argument("component \"" + id + "\" contains a line break");
    }
    base += serialize_string(id) + ": " + value + "\n";
  }
  base += "\"@signature-params\": " + serialize_signature_params(params);
  return base;
}

Status sign_http_request(HttpRequest& request, const HttpSignatureSignOptions& options) {
  if (options.key.empty()) return invalid_argument("the signing key is empty");
  HttpSignatureParams params;
  params.components = options.components;
  params.created = options.created;
  params.expires = options.expires;
  params.nonce = options.nonce;
  if (options.include_alg) params.alg = "hmac-sha256";
  if (!options.keyid.empty()) params.keyid = options.keyid;
  params.tag = options.tag;
  if (options.add_content_digest && !request.headers.contains("content-digest") &&
      std::find(params.components.begin(), params.components.end(), "content-digest") !=
          params.components.end()) {
    request.headers.set("Content-Digest", content_digest_sha256(request.body));
  }
  // Round-trip the label through the parser's key rule.
  auto label_ok = SfParser(options.label + "=?1").dictionary();
  if (!label_ok.ok() || label_ok->size() != 1) {
    return invalid_argument("signature label '" + options.label + "' is not an RFC 8941 key");
  }
  CIVICBUS_ASSIGN_OR_RETURN(std::string base, http_signature_base(request, params, options.scheme));
  std::string signature = crypto::hmac_sha256(options.key, base);
  request.headers.set("Signature-Input", options.label + "=" + serialize_signature_params(params));
  request.headers.set("Signature", options.label + "=:" + crypto::base64_encode(signature) + ":");
  return Status();
}

// ---- Verifier ----

struct HttpSignatureVerifier::Impl {
  HmacKeyLookup keys;
  const Clock* clock;
  HttpSignatureVerifierOptions options;

  // Replay cache: insertion order equals expiry order (expiry = insertion time + 2 × skew).
  mutable std::mutex mu;
  mutable std::unordered_map<std::string, SystemTime> seen;
  mutable std::deque<std::pair<std::string, SystemTime>> order;

  void expire(SystemTime now) const {
    while (!order.empty() &&
           (order.front().second <= now || seen.size() > options.replay_cache_capacity)) {
      auto it = seen.find(order.front().first);
      if (it != seen.end() && it->second == order.front().second) seen.erase(it);
      order.pop_front();
    }
  }

  // Records the key; false when it was already seen and has not expired.
  bool remember(const std::string& key, SystemTime now) const {
    std::lock_guard lock(mu);
    expire(now);
    auto it = seen.find(key);
    if (it != seen.end() && it->second > now) return false;
    SystemTime until = now + 2 * options.clock_skew;
    seen[key] = until;
    order.emplace_back(key, until);
    // Evict the oldest when over capacity.
    while (seen.size() > options.replay_cache_capacity && !order.empty()) {
      auto old = seen.find(order.front().first);
      if (old != seen.end() && old->second == order.front().second) seen.erase(old);
      order.pop_front();
    }
    return true;
  }
};

HttpSignatureVerifier::HttpSignatureVerifier(HmacKeyLookup keys, const Clock& clock,
                                             HttpSignatureVerifierOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->keys = std::move(keys);
  impl_->clock = &clock;
  impl_->options = std::move(options);
}
HttpSignatureVerifier::~HttpSignatureVerifier() = default;
HttpSignatureVerifier::HttpSignatureVerifier(HttpSignatureVerifier&&) noexcept = default;
HttpSignatureVerifier& HttpSignatureVerifier::operator=(HttpSignatureVerifier&&) noexcept = default;

std::size_t HttpSignatureVerifier::replay_cache_size() const {
  std::lock_guard lock(impl_->mu);
  return impl_->seen.size();
}

Result<VerifiedHttpSignature> HttpSignatureVerifier::verify(const HttpRequest& request) const {
  const auto& opt = impl_->options;
  auto input_field = combined_field(request.headers, "signature-input");
  if (!input_field) return unauth("the request has no Signature-Input header");
  auto signature_field = combined_field(request.headers, "signature");
  if (!signature_field) return unauth("the request has no Signature header");

  auto inputs = SfParser(*input_field).dictionary();
  if (!inputs.ok()) return unauth("malformed Signature-Input", inputs.status());
  auto signatures = SfParser(*signature_field).dictionary();
  if (!signatures.ok()) return unauth("malformed Signature", signatures.status());

  const SfMember* input = nullptr;
  if (opt.label.empty()) {
    input = &inputs->front();
  } else {
    for (const auto& m : *inputs) {
      if (m.key == opt.label) input = &m;
    }
    if (!input) return unauth("Signature-Input has no member labelled '" + opt.label + "'");
  }
  const std::string& label = input->key;
  if (!input->inner_list) {
    return unauth("malformed Signature-Input: member '" + label + "' is not an inner list");
  }
  const SfMember* sig = nullptr;
  for (const auto& m : *signatures) {
    if (m.key == label) sig = &m;
  }
  if (!sig) return unauth("Signature has no member labelled '" + label + "'");
  if (sig->inner_list || sig->item.value.kind != SfBare::Kind::kBytes) {
    return unauth("malformed Signature: member '" + label + "' is not a byte sequence");
  }
  const std::string& signature = sig->item.value.text;

  auto parsed = params_from_sf(input->items, input->params);
  if (!parsed.ok()) return unauth("malformed Signature-Input", parsed.status());
  HttpSignatureParams params = std::move(*parsed);

  if (params.alg && *params.alg != "hmac-sha256") {
    return unauth("algorithm '" + *params.alg + "' is not accepted (only hmac-sha256)");
  }
  if (!params.keyid) return unauth("Signature-Input has no keyid");

  // Coverage policy.
  auto covered = [&](std::string_view id) {
    return std::find(params.components.begin(), params.components.end(), id) !=
           params.components.end();
  };
  if (opt.require_method && !covered("@method")) return unauth("\"@method\" is not covered");
  if (opt.require_target && !covered("@target-uri") &&
      !(covered("@authority") && (covered("@path") || covered("@request-target")))) {
    return unauth("the target is not covered (\"@target-uri\", or \"@authority\" with \"@path\")");
  }
  bool has_body = !request.body.empty();
  if (has_body && opt.require_content_digest_with_body && !covered("content-digest")) {
    return unauth("the request has a body but \"content-digest\" is not covered");
  }
  for (const auto& id : opt.required_components) {
    if (!covered(id)) return unauth("required component \"" + id + "\" is not covered");
  }

  // Time policy.
  const std::int64_t now_s = to_unix_micros(impl_->clock->now()) / 1'000'000;
  const std::int64_t skew = opt.clock_skew.count();
  if (params.created) {
    if (*params.created > now_s + skew) return unauth("'created' is in the future");
    if (*params.created < now_s - skew) {
      return unauth("stale: 'created' is more than " + std::to_string(skew) + " s old");
    }
  } else if (opt.require_created) {
    return unauth("Signature-Input has no 'created'");
  }
  if (params.expires && now_s >= *params.expires) return unauth("the signature has expired");

  // Key and signature.
  std::optional<std::string> key = impl_->keys ? impl_->keys(*params.keyid) : std::nullopt;
  if (!key || key->empty()) return unauth("unknown keyid '" + *params.keyid + "'");
  auto base = http_signature_base(request, params, opt.scheme);
  if (!base.ok()) return unauth("missing component", base.status());
  std::string expected = crypto::hmac_sha256(*key, *base);
  if (!crypto::constant_time_equal(expected, signature)) return unauth("bad signature");

  if (opt.check_content_digest && (has_body || covered("content-digest"))) {
    CIVICBUS_RETURN_IF_ERROR(check_content_digest(request));
  }

  if (opt.reject_replays &&
      !impl_->remember(replay_key(*params.keyid, params, signature), impl_->clock->now())) {
    return unauth("replay: this signature (or nonce) was already accepted");
  }
  return VerifiedHttpSignature{label, *params.keyid, std::move(params)};
}

}  // namespace civicbus::gateway
