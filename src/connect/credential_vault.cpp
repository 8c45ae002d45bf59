#include "connect/credential_vault.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cstring>
#include <optional>
#include <span>
#include <utility>

namespace civicbus::connect {
namespace {

constexpr storage::Migration kVaultMigrations[] = {
    {1, "connection credentials sealed under the master key",
     R"sql(
CREATE TABLE connect_vault_check (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  check_value BLOB NOT NULL,         -- HMAC of a fixed label under the master key
  key_version BIGINT NOT NULL,       -- increases with each master key rotation
  created_at BIGINT NOT NULL,        -- Unix microseconds
  rotated_at BIGINT
);
CREATE TABLE connect_credentials (
  connection TEXT NOT NULL,
  pointer TEXT NOT NULL,             -- JSON pointer of the secret in the connection's config
  key_version BIGINT NOT NULL,
  sealed_value BLOB NOT NULL,        -- AES-256-GCM: nonce || ciphertext || tag
  updated_at BIGINT NOT NULL,       -- Unix microseconds
  PRIMARY KEY (connection, pointer)
);
)sql"},
};

std::span<const storage::Migration> vault_migrations(storage::Dialect dialect) {
  if (dialect == storage::Dialect::kSqlite) return kVaultMigrations;
  static const std::string sql = storage::ddl_for(dialect, kVaultMigrations[0].sql);
  static const storage::Migration kPostgres[] = {{1, kVaultMigrations[0].description, sql}};
  return kPostgres;
}

// Labels distinct from the broker's, so the same master key gives unrelated keys here.
constexpr std::string_view kCheckLabel = "civicbus connect vault key check v1";
constexpr std::string_view kSealKeyLabel = "civicbus connect vault seal key v1";
constexpr std::string_view kAadLabel = "civicbus connect credential v1";
constexpr std::size_t kKeyBytes = 32;

constexpr std::string_view kWrongMasterKey =
    "master key does not match the one the connector credential vault was "
    "sealed with (key "
    "check failed); if the master key was rotated, open the vault with the new "
    "key";

using crypto::wipe;

std::string credential_aad(std::string_view connection, std::string_view pointer) {
  return crypto::bound_aad(kAadLabel, {connection, pointer});
}

Status check_pointer(std::string_view pointer) {
  if (pointer.empty() || pointer.front() != '/') {
    return invalid_argument(
        fmt::format("secret location '{}' is not a JSON pointer to a property "
                    "(it must start with '/')",
                    pointer));
  }
  return {};
}

std::string unescape_token(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  for (std::size_t i = 0; i < token.size(); ++i) {
    if (token[i] == '~' && i + 1 < token.size() && (token[i + 1] == '0' || token[i + 1] == '1')) {
      out.push_back(token[i + 1] == '0' ? '~' : '/');
      ++i;
    } else {
      out.push_back(token[i]);
    }
  }
  return out;
}

}  // namespace

Status set_at_pointer(Json& doc, std::string_view pointer, Json value) {
  if (pointer.empty()) {
    doc = std::move(value);
    return {};
  }
  if (pointer.front() != '/') {
    return invalid_argument(fmt::format("'{}' is not a JSON pointer", pointer));
  }
  Json* at = &doc;
  std::size_t start = 1;
  while (true) {
    const std::size_t slash = pointer.find('/', start);
    const std::string token = unescape_token(pointer.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    const bool last = slash == std::string_view::npos;
    Json* next = nullptr;
    if (at->is_array()) {
      std::size_t index = 0;
      auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), index);
      if (ec != std::errc() || end != token.data() + token.size() ||
          index >= at->as_array().size()) {
        return invalid_argument(fmt::format(
            "JSON pointer '{}': '{}' is not an index of the array there", pointer, token));
      }
      next = &at->as_array()[index];
    } else if (at->is_object() || at->is_null()) {
      next = &(*at)[token];
    } else {
      return invalid_argument(
          fmt::format("JSON pointer '{}' runs through a value that is not an object", pointer));
    }
    if (last) {
      *next = std::move(value);
      return {};
    }
    at = next;
    start = slash + 1;
  }
}

CredentialVault::CredentialVault(storage::Database& db, RandomSource& random, const Clock& clock,
                                 Keys keys)
    : db_(db), random_(random), clock_(clock), keys_(std::move(keys)) {}

CredentialVault::~CredentialVault() {
  wipe(keys_.check);
}

Result<CredentialVault::Keys> CredentialVault::derive(std::string_view master_key,
                                                      std::int64_t version) {
  if (master_key.size() != kKeyBytes) {
    return invalid_argument(
        fmt::format("the connector credential vault needs "
                    "a {}-byte master key, got {} bytes",
                    kKeyBytes, master_key.size()));
  }
  std::string seal_key = crypto::hmac_sha256(master_key, kSealKeyLabel);
  Result<crypto::AesGcm> cipher = crypto::AesGcm::create(seal_key);
  wipe(seal_key);
  if (!cipher.ok()) return cipher.status();
  return Keys{std::move(*cipher), crypto::hmac_sha256(master_key, kCheckLabel), version};
}

Result<std::unique_ptr<CredentialVault>> CredentialVault::open(storage::Database& db,
                                                               std::string master_key,
                                                               RandomSource& random,
                                                               const Clock& clock) {
  Result<Keys> keys = derive(master_key, 1);
  wipe(master_key);  // only the derived keys stay in memory
  if (!keys.ok()) return keys.status();
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(db, "connect_vault", vault_migrations(db.dialect())));
  std::unique_ptr<CredentialVault> vault(new CredentialVault(db, random, clock, std::move(*keys)));
  CIVICBUS_RETURN_IF_ERROR(vault->check_master_key());
  return vault;
}

Status CredentialVault::check_master_key() {
  std::lock_guard lock(mu_);
  return db_.transaction([&]() -> Status {
    std::optional<std::pair<std::string, std::int64_t>> stored;
    CIVICBUS_RETURN_IF_ERROR(
        db_.query("SELECT check_value, key_version FROM connect_vault_check WHERE id = 1", {},
                  [&](const storage::Row& row) {
                    stored.emplace(std::string(row.get_blob(0)), row.get_int(1));
                    return false;
                  }));
    if (stored) {
      if (!crypto::constant_time_equal(stored->first, keys_.check)) {
        return failed_precondition(std::string(kWrongMasterKey));
      }
      keys_.version = stored->second;
      return Status();
    }
    // No check value: a new vault, or the row was deleted. In the second case try a stored secret
    // rather than sealing a wrong key in as the new check value.
    struct Sample {
      std::string connection, pointer, sealed;
      std::int64_t version;
    };
    std::optional<Sample> sample;
    CIVICBUS_RETURN_IF_ERROR(
        db_.query("SELECT connection, pointer, sealed_value, key_version FROM "
                  "connect_credentials LIMIT 1",
                  {}, [&](const storage::Row& row) {
                    sample = Sample{std::string(row.get_text(0)), std::string(row.get_text(1)),
                                    std::string(row.get_blob(2)), row.get_int(3)};
                    return false;
                  }));
    if (sample) {
      if (!open_value(keys_.cipher, sample->connection, sample->pointer, sample->sealed).ok()) {
        return failed_precondition(std::string(kWrongMasterKey));
      }
      keys_.version = sample->version;
    }
    return db_
        .execute(
            "INSERT INTO connect_vault_check (id, check_value, "
            "key_version, created_at) "
            "VALUES (1, ?, ?, ?)",
            {storage::Blob{keys_.check}, keys_.version, to_unix_micros(clock_.now())})
        .status();
  });
}

Result<Json> CredentialVault::open_value(const crypto::AesGcm& cipher, std::string_view connection,
                                         std::string_view pointer, std::string_view sealed) const {
  Result<std::string> plain = cipher.open(sealed, credential_aad(connection, pointer));
  if (!plain.ok()) {
    return data_loss(
        fmt::format("the secret '{}' of connection '{}' cannot be opened: its "
                    "stored value was altered, "
                    "moved from another row or sealed under another master key",
                    pointer, connection));
  }
  Result<Json> value = Json::parse(*plain);
  wipe(*plain);
  if (!value.ok()) {
    // The parse error could quote the secret: report without it.
    return data_loss(
        fmt::format("the secret '{}' of connection '{}' is not valid JSON", pointer, connection));
  }
  return std::move(*value);
}

Status CredentialVault::put(std::string_view connection, std::string_view pointer,
                            const Json& value) {
  if (connection.empty()) return invalid_argument("storing a secret needs a connection name");
  CIVICBUS_RETURN_IF_ERROR(check_pointer(pointer));
  std::string plain = value.dump();
  std::lock_guard lock(mu_);
  const std::string sealed = keys_.cipher.seal(random_, plain, credential_aad(connection, pointer));
  wipe(plain);
  Result<std::int64_t> stored = db_.execute(
      "INSERT INTO connect_credentials (connection, pointer, "
      "key_version, sealed_value, "
      "updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (connection, "
      "pointer) DO UPDATE SET "
      "key_version = excluded.key_version, sealed_value = "
      "excluded.sealed_value, "
      "updated_at = excluded.updated_at",
      {connection, pointer, keys_.version, storage::Blob{sealed}, to_unix_micros(clock_.now())});
  if (!stored.ok()) {
    return stored.status().with_context(
        fmt::format("storing secret '{}' of connection '{}'", pointer, connection));
  }
  return {};
}

Result<Json> CredentialVault::get(std::string_view connection, std::string_view pointer) {
  std::lock_guard lock(mu_);
  std::optional<std::pair<std::string, std::int64_t>> stored;
  CIVICBUS_RETURN_IF_ERROR(
      db_.query("SELECT sealed_value, key_version FROM connect_credentials "
                "WHERE connection = ? AND "
                "pointer = ?",
                {connection, pointer}, [&](const storage::Row& row) {
                  stored.emplace(std::string(row.get_blob(0)), row.get_int(1));
                  return false;
                }));
  if (!stored) {
    return not_found(
        fmt::format("connection '{}' has no secret stored at '{}'", connection, pointer));
  }
  if (stored->second != keys_.version) {
    return data_loss(
        fmt::format("the secret '{}' of connection '{}' was "
                    "sealed under master key version {}, but the "
                    "vault is at version {}",
                    pointer, connection, stored->second, keys_.version));
  }
  return open_value(keys_.cipher, connection, pointer, stored->first);
}

Result<std::vector<std::string>> CredentialVault::pointers(std::string_view connection) {
  std::vector<std::string> out;
  CIVICBUS_RETURN_IF_ERROR(
      db_.query("SELECT pointer FROM connect_credentials "
                "WHERE connection = ? ORDER BY pointer",
                {connection}, [&](const storage::Row& row) {
                  out.emplace_back(row.get_text(0));
                  return true;
                }));
  return out;
}

Result<Json> CredentialVault::absorb(std::string_view connection, Json config,
                                     const std::vector<std::string>& secret_pointers) {
  for (const std::string& pointer : secret_pointers) {
    CIVICBUS_RETURN_IF_ERROR(check_pointer(pointer));
    Json* secret = config.at_pointer(pointer);
    if (secret == nullptr || secret->is_null()) continue;
    CIVICBUS_RETURN_IF_ERROR(put(connection, pointer, *secret));
    // Remove the member from its parent object (or null it inside an array).
    const std::size_t slash = pointer.rfind('/');
    Json* parent = config.at_pointer(std::string_view(pointer).substr(0, slash));
    if (parent != nullptr && parent->is_object()) {
      parent->erase(unescape_token(std::string_view(pointer).substr(slash + 1)));
    } else {
      *secret = Json();
    }
  }
  return config;
}

Result<Json> CredentialVault::resolve(std::string_view connection, Json config) {
  CIVICBUS_ASSIGN_OR_RETURN(std::vector<std::string> stored, pointers(connection));
  for (const std::string& pointer : stored) {
    CIVICBUS_ASSIGN_OR_RETURN(Json secret, get(connection, pointer));
    Status placed = set_at_pointer(config, pointer, std::move(secret));
    if (!placed.ok()) {
      return invalid_argument(
          fmt::format("the configuration of connection '{}' has no place for "
                      "its secret '{}': {}",
                      connection, pointer, placed.message()));
    }
  }
  return config;
}

Json CredentialVault::redact(Json config, const std::vector<std::string>& secret_pointers) {
  for (const std::string& pointer : secret_pointers) {
    if (pointer.empty()) continue;  // never blank out the whole document by accident
    Json* secret = config.at_pointer(pointer);
    if (secret != nullptr && !secret->is_null()) *secret = Json(kRedacted);
  }
  return config;
}

Result<std::int64_t> CredentialVault::erase(std::string_view connection) {
  std::lock_guard lock(mu_);
  return db_.execute("DELETE FROM connect_credentials WHERE connection = ?", {connection});
}

std::int64_t CredentialVault::key_version() const {
  std::lock_guard lock(mu_);
  return keys_.version;
}

Status CredentialVault::rotate_master_key(std::string new_master_key) {
  std::lock_guard lock(mu_);
  Result<Keys> next = derive(new_master_key, keys_.version + 1);
  wipe(new_master_key);
  if (!next.ok()) return next.status();
  if (crypto::constant_time_equal(next->check, keys_.check)) {
    return invalid_argument("the new master key is the one the vault is already sealed with");
  }
  CIVICBUS_RETURN_IF_ERROR(db_.transaction([&]() -> Status {
    struct Row {
      std::string connection, pointer, sealed;
    };
    std::vector<Row> rows;
    CIVICBUS_RETURN_IF_ERROR(
        db_.query("SELECT connection, pointer, sealed_value FROM connect_credentials", {},
                  [&](const storage::Row& row) {
                    rows.push_back(Row{std::string(row.get_text(0)), std::string(row.get_text(1)),
                                       std::string(row.get_blob(2))});
                    return true;
                  }));
    const std::int64_t now = to_unix_micros(clock_.now());
    for (const Row& row : rows) {
      const std::string aad = credential_aad(row.connection, row.pointer);
      Result<std::string> plain = keys_.cipher.open(row.sealed, aad);
      if (!plain.ok()) {
        return data_loss(
            fmt::format("master key rotation stopped, nothing changed: the "
                        "secret '{}' of connection '{}' "
                        "cannot be opened with the current key",
                        row.pointer, row.connection));
      }
      const std::string resealed = next->cipher.seal(random_, *plain, aad);
      wipe(*plain);
      CIVICBUS_RETURN_IF_ERROR(
          db_.execute("UPDATE connect_credentials SET sealed_value = ?, "
                      "key_version = ?, "
                      "updated_at = ? WHERE connection = ? AND pointer = ?",
                      {storage::Blob{resealed}, next->version, now,
                       std::string_view(row.connection), std::string_view(row.pointer)})
              .status());
    }
    CIVICBUS_ASSIGN_OR_RETURN(
        std::int64_t updated,
        db_.execute("UPDATE connect_vault_check SET check_value = ?, key_version = ?, "
                    "rotated_at = ? WHERE id = 1",
                    {storage::Blob{next->check}, next->version, now}));
    if (updated != 1) return internal_error("the vault's key-check row is missing");
    return Status();
  }));
  wipe(keys_.check);
  keys_ = std::move(*next);
  return {};
}

}  // namespace civicbus::connect
