// CredentialVault: the secrets of connections (passwords, API tokens, the properties a connector
// spec marks "secret": true), encrypted at rest with AES-256-GCM under a key derived from the
// node's master key. Configurations are stored without their secrets; the vault fills them in
// (resolve) just before a connector call and masks them (redact) for everything shown or logged.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/crypto.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/storage/database.hpp"

namespace civicbus::connect {

// What redact() puts in place of a secret.
inline constexpr std::string_view kRedacted = "********";

// It owns the tables connect_credentials and connect_vault_check (migration component
// "connect_vault"); it does not own the Database, the RandomSource or the Clock, which must outlive
// it. Each sealed value is bound (AES-GCM associated data) to its connection and JSON pointer, so a
// value copied into another row does not open. Thread-safe: calls take the vault's lock, then the
// Database (so do not call it from a thread that holds a transaction on that Database while another
// thread rotates the key). Nothing it returns or puts in an error carries a secret.
class CredentialVault {
 public:
  // Creates or migrates the tables and checks `master_key` (32 bytes) against the key-check value
  // stored on first use: another key fails with kFailedPrecondition (a key that was rotated away
  // included). `random` must be a CSPRNG outside tests.
  static Result<std::unique_ptr<CredentialVault>> open(storage::Database& db,
                                                       std::string master_key, RandomSource& random,
                                                       const Clock& clock);
  ~CredentialVault();
  CredentialVault(const CredentialVault&) = delete;
  CredentialVault& operator=(const CredentialVault&) = delete;

  // Stores (or replaces) the secret at JSON pointer `pointer` ("/password") of `connection`. Any
  // JSON value may be a secret (a string, or an object such as a service-account key).
  Status put(std::string_view connection, std::string_view pointer, const Json& value);
  // The secret, decrypted: for the hub's own use, never for API output. kNotFound when absent;
  // kDataLoss when the stored value was altered or cannot be opened.
  Result<Json> get(std::string_view connection, std::string_view pointer);
  // JSON pointers of the secrets stored for `connection`, sorted.
  Result<std::vector<std::string>> pointers(std::string_view connection);

  // Moves the secrets at `secret_pointers` out of `config` into the vault (a pointer that is absent
  // or null in `config` is skipped, keeping any stored value) and returns `config` with them
  // removed, ready to be stored in clear.
  Result<Json> absorb(std::string_view connection, Json config,
                      const std::vector<std::string>& secret_pointers);
  // `config` with every secret of `connection` set at its pointer (objects on the way are created).
  Result<Json> resolve(std::string_view connection, Json config);
  // `config` with kRedacted at each of `secret_pointers` that is present and not null.
  static Json redact(Json config, const std::vector<std::string>& secret_pointers);

  // Forgets every secret of `connection`; returns how many.
  Result<std::int64_t> erase(std::string_view connection);

  // Re-seals every secret under a key derived from `new_master_key` (32 bytes) in one transaction
  // and replaces the key-check value, so afterwards only the new key opens the vault. Nothing
  // changes when any secret cannot be opened with the current key.
  Status rotate_master_key(std::string new_master_key);
  // Increases with each rotation (1 for a new vault).
  std::int64_t key_version() const;

 private:
  struct Keys {
    crypto::AesGcm cipher;
    std::string check;  // HMAC of a fixed label: identifies the master key without revealing it
    std::int64_t version;
  };
  CredentialVault(storage::Database& db, RandomSource& random, const Clock& clock, Keys keys);
  static Result<Keys> derive(std::string_view master_key, std::int64_t version);
  Status check_master_key();
  Result<Json> open_value(const crypto::AesGcm& cipher, std::string_view connection,
                          std::string_view pointer, std::string_view sealed) const;

  storage::Database& db_;
  RandomSource& random_;
  const Clock& clock_;
  mutable std::mutex mu_;  // guards keys_ (swapped by rotation)
  Keys keys_;
};

// Sets `value` at RFC 6901 `pointer` in `doc`, creating objects on the way (an array index must
// exist). kInvalidArgument when the path runs through a scalar or a missing index.
Status set_at_pointer(Json& doc, std::string_view pointer, Json value);

}  // namespace civicbus::connect
