#include "gateway/consumers.hpp"

#include <algorithm>
#include <mutex>

#include "civicbus/core/crypto.hpp"
#include "gateway/rate_limiter.hpp"
#include "http/framing.hpp"

namespace civicbus::gateway {

namespace {

bool valid_consumer_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

}  // namespace

Result<std::string> secret_digest(std::string_view text, bool hashed, std::string_view what) {
  if (!hashed) {
    if (text.size() < 16) {
      return invalid_argument(std::string(what) +
                              " is shorter than 16 characters; use a random key of at least "
                              "128 bits");
    }
    return crypto::sha256(text);
  }
  constexpr std::string_view kPrefix = "sha256:";
  if (text.substr(0, kPrefix.size()) != kPrefix || text.size() != kPrefix.size() + 64) {
    return invalid_argument(std::string(what) + " must be 'sha256:' followed by 64 hex digits");
  }
  auto digest = crypto::from_hex(text.substr(kPrefix.size()));
  if (!digest.ok()) return invalid_argument(std::string(what) + " is not valid hex");
  return std::move(digest).value();
}

ConsumerInfo Consumer::info() const {
  ConsumerInfo out;
  out.id = options.id;
  out.groups = options.groups;
  out.api_keys = api_key_digests.size();
  for (const HmacCredential& h : options.hmac) out.hmac_key_ids.push_back(h.key_id);
  out.client_id = options.client_id;
  out.priority_tier = options.priority_tier;
  return out;
}

bool Consumer::in_group(std::string_view group) const {
  return std::find(options.groups.begin(), options.groups.end(), group) != options.groups.end();
}

Result<std::shared_ptr<const Consumer>> ConsumerStore::compile(ConsumerOptions options,
                                                               bool from_config) {
  const std::string name = "consumer '" + options.id + "'";
  if (!valid_consumer_id(options.id)) {
    return invalid_argument("consumer id '" + options.id +
                            "' must be 1 to 128 characters of A-Z a-z 0-9 . _ -");
  }
  auto consumer = std::make_shared<Consumer>();
  consumer->from_config = from_config;
  for (std::size_t i = 0; i < options.api_keys.size(); ++i) {
    CIVICBUS_ASSIGN_OR_RETURN(
        std::string d,
        secret_digest(options.api_keys[i], false, name + ": api_keys[" + std::to_string(i) + "]"));
    consumer->api_key_digests.push_back(std::move(d));
  }
  for (std::size_t i = 0; i < options.api_key_hashes.size(); ++i) {
    CIVICBUS_ASSIGN_OR_RETURN(std::string d,
                              secret_digest(options.api_key_hashes[i], true,
                                            name + ": api_key_hashes[" + std::to_string(i) + "]"));
    consumer->api_key_digests.push_back(std::move(d));
  }
  for (const HmacCredential& h : options.hmac) {
    if (h.key_id.empty()) return invalid_argument(name + ": an hmac credential has no key_id");
    if (h.secret.size() < 32) {
      return invalid_argument(name + ": hmac key '" + h.key_id +
                              "' has a secret shorter than 32 bytes");
    }
  }
  if (!options.client_id.empty() || !options.client_secret.empty()) {
    if (options.client_id.empty() || options.client_secret.empty()) {
      return invalid_argument(name + ": client_id and client_secret go together");
    }
    const bool hashed = options.client_secret.rfind("sha256:", 0) == 0;
    CIVICBUS_ASSIGN_OR_RETURN(
        consumer->client_secret_digest,
        secret_digest(options.client_secret, hashed, name + ": client_secret"));
  }
  for (std::string& f : options.certificate_fingerprints) {
    f = http::normalize_fingerprint(f);
    if (f.size() != 64) {
      return invalid_argument(name + ": certificate fingerprint '" + f +
                              "' is not a SHA-256 fingerprint (64 hex digits)");
    }
  }
  if (options.priority_tier > 2) {
    return invalid_argument(name + ": priority_tier must be 0 (critical), 1 or 2 (low)");
  }
  if (!options.ip.allow.empty() || !options.ip.deny.empty()) {
    auto list = IpAllowlist::create(options.ip);
    if (!list.ok()) return list.status().with_context(name);
    consumer->ip = std::move(list).value();
  }
  options.api_keys.clear();
  options.api_key_hashes.clear();
  options.client_secret.clear();
  for (const std::string& g : options.groups) {
    consumer->groups_field.append(consumer->groups_field.empty() ? "" : ",").append(g);
  }
  // Written into upstream requests as it is: left out when a group could split the field.
  if (!http::detail::is_safe_field_text(consumer->groups_field)) consumer->groups_field.clear();
  consumer->rate_key = rate_limit_key("c:" + options.id);
  consumer->options = std::move(options);
  return std::shared_ptr<const Consumer>(std::move(consumer));
}

Result<ConsumerStore::Index> ConsumerStore::build(
    const std::vector<std::shared_ptr<const Consumer>>& consumers) {
  Index index;
  auto taken = [](std::string_view what, std::string_view value, const Consumer& a,
                  const Consumer& b) {
    return already_exists(std::string(what) + " '" + std::string(value) + "' of consumer '" +
                          b.options.id + "' already belongs to consumer '" + a.options.id + "'");
  };
  for (const auto& c : consumers) {
    if (!index.by_id.emplace(c->options.id, c).second) {
      return already_exists("consumer '" + c->options.id + "' is defined twice");
    }
    for (const std::string& d : c->api_key_digests) {
      auto [it, added] = index.by_key_digest.emplace(d, c);
      if (!added) return taken("an API key", crypto::to_hex(d).substr(0, 8) + "…", *it->second, *c);
    }
    for (const HmacCredential& h : c->options.hmac) {
      auto [it, added] = index.by_hmac.emplace(h.key_id, std::make_pair(c, h.secret));
      if (!added) return taken("HMAC key id", h.key_id, *it->second.first, *c);
    }
    if (!c->options.client_id.empty()) {
      auto [it, added] = index.by_client_id.emplace(c->options.client_id, c);
      if (!added) return taken("client id", c->options.client_id, *it->second, *c);
    }
    for (const std::string& f : c->options.certificate_fingerprints) {
      auto [fit, fadded] = index.by_fingerprint.emplace(f, c);
      if (!fadded) return taken("certificate fingerprint", f.substr(0, 16) + "…", *fit->second, *c);
    }
    for (const std::string& u : c->options.certificate_uris) {
      auto [uit, uadded] = index.by_certificate_uri.emplace(u, c);
      if (!uadded) return taken("certificate URI", u, *uit->second, *c);
    }
    const std::string& subject =
        c->options.jwt_subject.empty() ? c->options.id : c->options.jwt_subject;
    auto [it, added] = index.by_subject.emplace(subject, c);
    if (!added) return taken("JWT subject", subject, *it->second, *c);
  }
  return index;
}

Status ConsumerStore::put(std::shared_ptr<const Consumer> consumer) {
  std::unique_lock lock(mu_);
  std::vector<std::shared_ptr<const Consumer>> next;
  for (const auto& [id, c] : index_.by_id) {
    if (id != consumer->options.id) next.push_back(c);
  }
  next.push_back(std::move(consumer));
  CIVICBUS_ASSIGN_OR_RETURN(Index index, build(next));
  index_ = std::move(index);
  version_.fetch_add(1, std::memory_order_release);
  return Status();
}

Status ConsumerStore::replace_configured(std::vector<std::shared_ptr<const Consumer>> configured) {
  std::unique_lock lock(mu_);
  std::vector<std::shared_ptr<const Consumer>> next = std::move(configured);
  for (const auto& [id, c] : index_.by_id) {
    if (c->from_config) continue;
    const bool replaced =
        std::any_of(next.begin(), next.end(), [&](const auto& n) { return n->options.id == id; });
    if (!replaced) next.push_back(c);
  }
  CIVICBUS_ASSIGN_OR_RETURN(Index index, build(next));
  index_ = std::move(index);
  version_.fetch_add(1, std::memory_order_release);
  return Status();
}

namespace {
template <typename Map>
auto find_in(const Map& map, std::string_view key) -> typename Map::mapped_type {
  auto it = map.find(key);
  return it == map.end() ? typename Map::mapped_type{} : it->second;
}
}  // namespace

std::shared_ptr<const Consumer> ConsumerStore::by_id(std::string_view id) const {
  std::shared_lock lock(mu_);
  return find_in(index_.by_id, id);
}

std::shared_ptr<const Consumer> ConsumerStore::by_api_key(std::string_view key) const {
  const std::string digest = crypto::sha256(key);
  std::shared_lock lock(mu_);
  return find_in(index_.by_key_digest, digest);
}

std::optional<std::pair<std::shared_ptr<const Consumer>, std::string>> ConsumerStore::by_hmac_key(
    std::string_view key_id) const {
  std::shared_lock lock(mu_);
  auto it = index_.by_hmac.find(key_id);
  if (it == index_.by_hmac.end()) return std::nullopt;
  return it->second;
}

std::shared_ptr<const Consumer> ConsumerStore::by_client_id(std::string_view client_id) const {
  std::shared_lock lock(mu_);
  return find_in(index_.by_client_id, client_id);
}

std::shared_ptr<const Consumer> ConsumerStore::by_jwt_subject(std::string_view subject) const {
  std::shared_lock lock(mu_);
  return find_in(index_.by_subject, subject);
}

std::shared_ptr<const Consumer> ConsumerStore::by_certificate(
    const http::PeerCertificate& certificate) const {
  std::shared_lock lock(mu_);
  if (auto c = find_in(index_.by_fingerprint, certificate.sha256_fingerprint)) return c;
  for (const std::string& uri : certificate.uris) {
    if (auto c = find_in(index_.by_certificate_uri, uri)) return c;
  }
  return nullptr;
}

std::shared_ptr<const Consumer> ApiKeyCache::find(const ConsumerStore& store,
                                                  std::string_view key) {
  // The version is read before the lookup: a change in between is seen on the next call.
  const std::uint64_t version = store.version();
  if (!filled_ || version != version_ || consumers_.size() >= kMaxKeys) {
    consumers_.clear();
    version_ = version;
    filled_ = true;
  }
  if (auto it = consumers_.find(key); it != consumers_.end()) return it->second;
  std::shared_ptr<const Consumer> found = store.by_api_key(key);
  if (!found) return nullptr;  // unknown keys are not kept: they would fill the cache
  // Aliased onto a control block of this cache's own (which keeps `found` alive).
  auto owner = std::make_shared<std::shared_ptr<const Consumer>>(found);
  std::shared_ptr<const Consumer> local(owner, found.get());
  consumers_.emplace(std::string(key), local);
  return local;
}

std::vector<std::shared_ptr<const Consumer>> ConsumerStore::all() const {
  std::shared_lock lock(mu_);
  std::vector<std::shared_ptr<const Consumer>> out;
  for (const auto& [id, c] : index_.by_id) out.push_back(c);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a->options.id < b->options.id; });
  return out;
}

}  // namespace civicbus::gateway
