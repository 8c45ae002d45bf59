// KeyStore: the per-topic data keys that encrypt PII fields, and the grants saying which
// consumer groups may see them in clear. Data keys are 256-bit AES-GCM keys stored wrapped
// (AES-256-GCM) under a key derived from the master key; unwrapped keys and grants are cached
// in memory so the publish and delivery paths take no database round trip.
// It owns the tables broker_keys, broker_key_check and broker_pii_grants (migration component
// "broker_keys"); it does not own the Database, the RandomSource or the Clock.
//
// Caches are per instance: a second process (or a second KeyStore on the same database) does
// not see another's shred or revoke until it is reopened.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/crypto.hpp"
#include "civicbus/core/id.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/storage/database.hpp"
#include "core/string_map.hpp"

namespace civicbus::broker {

// An unwrapped data key. Immutable; shared by the cache and the callers holding it.
struct DataKey {
  std::string key_id;  // a UUIDv7; never contains ':'
  std::string topic;
  crypto::AesGcm cipher;
};

struct PiiGrant {
  std::string topic;
  std::string group;
  SystemTime granted_at;
  std::string granted_by;
};

class KeyStore {
 public:
  // Creates or migrates the tables and checks `master_key` (32 bytes) against the key check
  // value stored when the database was first used: a different key fails with
  // kFailedPrecondition instead of later turning every PII value into an error. `db`,
  // `random` (a CSPRNG outside tests) and `clock` must outlive the KeyStore.
  static Result<std::unique_ptr<KeyStore>> open(storage::Database& db, std::string master_key,
                                                RandomSource& random, const Clock& clock);
  ~KeyStore();
  KeyStore(const KeyStore&) = delete;
  KeyStore& operator=(const KeyStore&) = delete;

  // The key new values of `topic` are encrypted with; created (and committed) on first use.
  // Call it outside any transaction the caller may roll back: a key created inside one would
  // stay cached while its row is gone, and values encrypted with it would be lost.
  Result<std::shared_ptr<const DataKey>> current_key(std::string_view topic);

  // The key a stored value names. nullptr when the key was shredded (the values it
  // encrypted are unrecoverable); kNotFound when no such key was ever stored.
  Result<std::shared_ptr<const DataKey>> key_by_id(std::string_view key_id);

  // Makes a fresh key current for `topic`; values under older keys stay readable.
  Result<std::shared_ptr<const DataKey>> rotate(std::string_view topic);

  // Crypto-shredding: destroys the wrapped material of every key of `topic` (overwritten,
  // then set to NULL, and marked shredded). The next current_key() creates a fresh key.
  // A topic without keys is fine (nothing to shred). With SQLite, older copies of the
  // wrapped keys may linger in the WAL until it is checkpointed and reused; they are still
  // wrapped under the master key.
  Status shred(std::string_view topic);

  // Grants survive restarts. grant() of an existing grant is a no-op; revoke() of a grant
  // that does not exist fails with kNotFound.
  Status grant(std::string_view topic, std::string_view group, std::string_view actor);
  Status revoke(std::string_view topic, std::string_view group);
  // From memory; safe on the delivery hot path.
  bool is_granted(std::string_view topic, std::string_view group) const;
  // Every grant, ordered by topic then group.
  Result<std::vector<PiiGrant>> grants();

  // The caches above are updated as soon as this store's own statements succeed. When
  // current_key(), rotate(), shred(), grant() or revoke() ran inside a caller's transaction
  // that then rolled back, call reload() so memory matches the database again (above all
  // for grant(): until then the group would see plaintext without a stored grant).
  Status reload();

 private:
  KeyStore(storage::Database& db, std::string_view master_key, RandomSource& random,
           const Clock& clock);

  // Lookups by view allocate nothing (core/string_map.hpp).
  template <typename V>
  using StringMap = civicbus::detail::StringMap<V>;
  using GroupSet = std::set<std::string, std::less<>>;

  Status check_master_key();
  Status load_grants();
  Result<std::shared_ptr<const DataKey>> unwrap(std::string key_id, std::string topic,
                                                std::string_view wrapped) const;
  // Creates and stores a new key for `topic`. Inside a transaction.
  Result<std::shared_ptr<const DataKey>> create_key(std::string_view topic);
  // Makes `key` current for its topic in the cache. Inside a transaction.
  void install_current(const std::shared_ptr<const DataKey>& key);

  storage::Database& db_;
  // Only keys derived from the master key are kept, not the master key itself.
  std::string wrap_key_;   // wraps the data keys
  std::string key_check_;  // the check value this master key gives
  RandomSource& random_;
  const Clock& clock_;
  IdGenerator ids_;

  // Every change to the caches happens inside a database transaction, which already keeps
  // writers apart; mu_ only keeps readers off a half-made change. Lock order: the
  // transaction first, then mu_, and no database call while holding mu_.
  mutable std::shared_mutex mu_;
  StringMap<std::shared_ptr<const DataKey>> current_by_topic_;
  StringMap<std::shared_ptr<const DataKey>> by_id_;  // nullptr values: shredded keys
  StringMap<GroupSet> granted_;                      // topic -> groups
};

}  // namespace civicbus::broker
