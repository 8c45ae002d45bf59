// ConsumerStore: the gateway's consumers and the indexes from each credential to its consumer.
// API keys and OAuth client secrets are held only as SHA-256 digests (they are random tokens
// of at least 128 bits, for which a fast hash is the right one: no dictionary to slow down);
// HMAC secrets must be kept to verify signatures. Thread-safe: lookups take a shared lock,
// changes build the changed consumer and swap it in.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "civicbus/core/status.hpp"
#include "civicbus/gateway/gateway.hpp"
#include "civicbus/gateway/options.hpp"
#include "core/string_map.hpp"
#include "gateway/ip_allowlist.hpp"

namespace civicbus::gateway {

// An immutable consumer: options without plaintext secrets, and the compiled IP list.
struct Consumer {
  ConsumerOptions options;                   // api_keys and client_secret cleared
  std::vector<std::string> api_key_digests;  // raw SHA-256
  std::string client_secret_digest;          // raw SHA-256, "" without client credentials
  std::optional<IpAllowlist> ip;             // nullopt: no IP rules
  // options.groups joined by ",": X-Consumer-Groups; empty when a group holds a CR, LF or NUL
  std::string groups_field;
  std::string rate_key;     // "c:<id>": this consumer's own rate-limit key
  bool from_config = true;  // false: added through the admin API

  ConsumerInfo info() const;
  bool in_group(std::string_view group) const;
};

// "sha256:<hex>" or a plaintext secret → its raw SHA-256 digest. `what` names the field in
// errors.
Result<std::string> secret_digest(std::string_view hashed_or_plain, bool hashed,
                                  std::string_view what);

class ConsumerStore {
 public:
  // Validates and compiles one consumer (errors name it and the field).
  static Result<std::shared_ptr<const Consumer>> compile(ConsumerOptions options, bool from_config);

  // Adds or replaces one consumer. kAlreadyExists when one of its credentials (API key,
  // HMAC key id, client id, JWT subject) belongs to another consumer.
  Status put(std::shared_ptr<const Consumer> consumer);
  // Replaces every consumer that came from configuration by `configured` (compiled); admin
  // consumers stay unless `configured` has the same id. All or nothing.
  Status replace_configured(std::vector<std::shared_ptr<const Consumer>> configured);

  std::shared_ptr<const Consumer> by_id(std::string_view id) const;
  std::shared_ptr<const Consumer> by_api_key(std::string_view key) const;
  // The consumer and the secret of an HMAC key id.
  std::optional<std::pair<std::shared_ptr<const Consumer>, std::string>> by_hmac_key(
      std::string_view key_id) const;
  std::shared_ptr<const Consumer> by_client_id(std::string_view client_id) const;
  std::shared_ptr<const Consumer> by_jwt_subject(std::string_view subject) const;
  // The consumer of a client certificate: by fingerprint first, then by SAN URI.
  std::shared_ptr<const Consumer> by_certificate(const http::PeerCertificate& certificate) const;
  std::vector<std::shared_ptr<const Consumer>> all() const;
  // Changes with every put() and replace_configured() (ApiKeyCache drops what it holds).
  std::uint64_t version() const { return version_.load(std::memory_order_acquire); }

 private:
  struct Index {
    civicbus::detail::StringMap<std::shared_ptr<const Consumer>> by_id;
    civicbus::detail::StringMap<std::shared_ptr<const Consumer>> by_key_digest;
    civicbus::detail::StringMap<std::pair<std::shared_ptr<const Consumer>, std::string>> by_hmac;
    civicbus::detail::StringMap<std::shared_ptr<const Consumer>> by_client_id;
    civicbus::detail::StringMap<std::shared_ptr<const Consumer>> by_subject;
    civicbus::detail::StringMap<std::shared_ptr<const Consumer>> by_fingerprint;
    civicbus::detail::StringMap<std::shared_ptr<const Consumer>> by_certificate_uri;
  };
  // Rebuilds the index from `consumers`; kAlreadyExists on a credential used twice.
  static Result<Index> build(const std::vector<std::shared_ptr<const Consumer>>& consumers);

  mutable std::shared_mutex mu_;
  Index index_;
  std::atomic<std::uint64_t> version_{0};
};

// One thread's memo of ConsumerStore::by_api_key, which hashes the key (SHA-256) and takes the
// store's lock on every call. It keeps the keys that matched, as presented, until the store
// changes (or kMaxKeys is reached), so a key is hashed once per thread instead of once per
// request. The consumers it returns have a reference count of this cache's own, so the
// threads' requests do not all update one shared count. Not thread-safe: one per worker.
class ApiKeyCache {
 public:
  static constexpr std::size_t kMaxKeys = 4096;
  std::shared_ptr<const Consumer> find(const ConsumerStore& store, std::string_view key);

 private:
  std::uint64_t version_ = 0;
  bool filled_ = false;  // version_ is meaningful
  civicbus::detail::StringMap<std::shared_ptr<const Consumer>> consumers_;
};

}  // namespace civicbus::gateway
