#include "broker/key_store.hpp"

#include <fmt/format.h>

#include <cstring>
#include <mutex>
#include <optional>

#include "civicbus/core/crypto.hpp"

namespace civicbus::broker {
namespace {

constexpr storage::Migration kKeyMigrations[] = {
    {1, "PII data keys, master key check, PII grants",
     R"sql(
CREATE TABLE broker_key_check (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  check_value BLOB NOT NULL,         -- HMAC of a fixed label under the master key
  created_at INTEGER NOT NULL
);
CREATE TABLE broker_keys (
  key_id TEXT PRIMARY KEY,           -- UUIDv7, named by every value it encrypted
  topic TEXT NOT NULL,
  wrapped_key BLOB,                  -- AES-256-GCM under the wrap key; NULL once shredded
  created_at INTEGER NOT NULL,
  shredded_at INTEGER
);
CREATE INDEX broker_keys_by_topic ON broker_keys(topic, created_at);
CREATE TABLE broker_pii_grants (
  topic TEXT NOT NULL,
  group_name TEXT NOT NULL,
  granted_at INTEGER NOT NULL,
  granted_by TEXT NOT NULL,
  PRIMARY KEY (topic, group_name)
);
)sql"},
};

// Distinct labels keep the keys derived from the master key apart from one another.
constexpr std::string_view kKeyCheckLabel = "civicbus key check v1";
constexpr std::string_view kWrapKeyLabel = "civicbus data key wrap v1";
constexpr std::string_view kWrapAadLabel = "civicbus data key v1";
constexpr std::size_t kKeyBytes = 32;

constexpr std::string_view kWrongMasterKey =
    "master key does not match the one this database was created with (key check failed)";

using crypto::wipe;

// Binds a wrapped key to its id and topic, so a row's key material cannot be moved to
// another row (another topic) and still unwrap.
std::string wrap_aad(std::string_view key_id, std::string_view topic) {
  return crypto::bound_aad(kWrapAadLabel, {key_id, topic});
}

}  // namespace

KeyStore::KeyStore(storage::Database& db, std::string_view master_key, RandomSource& random,
                   const Clock& clock)
    : db_(db),
      wrap_key_(crypto::hmac_sha256(master_key, kWrapKeyLabel)),
      key_check_(crypto::hmac_sha256(master_key, kKeyCheckLabel)),
      random_(random),
      clock_(clock),
      ids_(clock, random) {}

KeyStore::~KeyStore() {
  wipe(wrap_key_);
}

Result<std::unique_ptr<KeyStore>> KeyStore::open(storage::Database& db, std::string master_key,
                                                 RandomSource& random, const Clock& clock) {
  if (master_key.size() != kKeyBytes) {
    const std::size_t got = master_key.size();
    wipe(master_key);
    return invalid_argument(
        fmt::format("the PII key store needs a {}-byte master key, got {} bytes", kKeyBytes, got));
  }
  std::unique_ptr<KeyStore> store(new KeyStore(db, master_key, random, clock));
  wipe(master_key);  // only the derived keys stay in memory
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(db, "broker_keys", kKeyMigrations));
  CIVICBUS_RETURN_IF_ERROR(store->check_master_key());
  CIVICBUS_RETURN_IF_ERROR(store->load_grants());
  return store;
}

Status KeyStore::check_master_key() {
  const std::string& expected = key_check_;
  return db_.transaction([&]() -> Status {
    std::optional<std::string> stored;
    CIVICBUS_RETURN_IF_ERROR(db_.query("SELECT check_value FROM broker_key_check WHERE id = 1", {},
                                       [&](const storage::Row& row) {
                                         stored = std::string(row.get_blob(0));
                                         return false;
                                       }));
    if (stored) {
      if (!crypto::constant_time_equal(*stored, expected)) {
        return failed_precondition(std::string(kWrongMasterKey));
      }
      return Status();
    }
    // No check value yet. If keys exist anyway the row was deleted: try one of them rather
    // than sealing a wrong key in as the new check value.
    struct Sample {
      std::string key_id, topic, wrapped;
    };
    std::optional<Sample> sample;
    CIVICBUS_RETURN_IF_ERROR(db_.query(
        "SELECT key_id, topic, wrapped_key FROM broker_keys WHERE wrapped_key IS NOT NULL LIMIT 1",
        {}, [&](const storage::Row& row) {
          sample = Sample{std::string(row.get_text(0)), std::string(row.get_text(1)),
                          std::string(row.get_blob(2))};
          return false;
        }));
    if (sample && !unwrap(sample->key_id, sample->topic, sample->wrapped).ok()) {
      return failed_precondition(std::string(kWrongMasterKey));
    }
    return db_
        .execute("INSERT INTO broker_key_check (id, check_value, created_at) VALUES (1, ?, ?)",
                 {storage::Blob{expected}, to_unix_micros(clock_.now())})
        .status();
  });
}

Status KeyStore::load_grants() {
  StringMap<GroupSet> loaded;
  CIVICBUS_RETURN_IF_ERROR(db_.query(
      "SELECT topic, group_name FROM broker_pii_grants", {}, [&](const storage::Row& row) {
        loaded[std::string(row.get_text(0))].emplace(row.get_text(1));
        return true;
      }));
  std::unique_lock lock(mu_);
  granted_ = std::move(loaded);
  return {};
}

Status KeyStore::reload() {
  return db_.transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(load_grants());
    std::unique_lock lock(mu_);
    current_by_topic_.clear();
    by_id_.clear();
    return Status();
  });
}

Result<std::shared_ptr<const DataKey>> KeyStore::unwrap(std::string key_id, std::string topic,
                                                        std::string_view wrapped) const {
  CIVICBUS_ASSIGN_OR_RETURN(crypto::AesGcm wrapper, crypto::AesGcm::create(wrap_key_));
  Result<std::string> raw = wrapper.open(wrapped, wrap_aad(key_id, topic));
  if (!raw.ok() || raw->size() != kKeyBytes) {
    if (raw.ok()) wipe(*raw);
    return data_loss(fmt::format(
        "PII key {} of topic '{}' cannot be unwrapped with the master key (its row is corrupt "
        "or was written under another master key)",
        key_id, topic));
  }
  Result<crypto::AesGcm> cipher = crypto::AesGcm::create(*raw);
  wipe(*raw);
  if (!cipher.ok()) return cipher.status();
  return std::make_shared<const DataKey>(
      DataKey{std::move(key_id), std::move(topic), std::move(*cipher)});
}

Result<std::shared_ptr<const DataKey>> KeyStore::create_key(std::string_view topic) {
  std::string key_id = ids_.next();
  std::string raw = random_.bytes(kKeyBytes);
  CIVICBUS_ASSIGN_OR_RETURN(crypto::AesGcm wrapper, crypto::AesGcm::create(wrap_key_));
  const std::string wrapped = wrapper.seal(random_, raw, wrap_aad(key_id, topic));
  Result<crypto::AesGcm> cipher = crypto::AesGcm::create(raw);
  wipe(raw);
  if (!cipher.ok()) return cipher.status();
  Result<std::int64_t> inserted = db_.execute(
      "INSERT INTO broker_keys (key_id, topic, wrapped_key, created_at, shredded_at) "
      "VALUES (?, ?, ?, ?, NULL)",
      {std::string_view(key_id), topic, storage::Blob{wrapped}, to_unix_micros(clock_.now())});
  if (!inserted.ok()) {
    return inserted.status().with_context(fmt::format("storing a PII key for topic '{}'", topic));
  }
  return std::make_shared<const DataKey>(
      DataKey{std::move(key_id), std::string(topic), std::move(*cipher)});
}

void KeyStore::install_current(const std::shared_ptr<const DataKey>& key) {
  std::unique_lock lock(mu_);
  current_by_topic_.insert_or_assign(key->topic, key);
  by_id_.insert_or_assign(key->key_id, key);
}

Result<std::shared_ptr<const DataKey>> KeyStore::current_key(std::string_view topic) {
  {
    std::shared_lock lock(mu_);
    if (auto it = current_by_topic_.find(topic); it != current_by_topic_.end()) return it->second;
  }
  if (topic.empty()) return invalid_argument("current_key(): the topic name is empty");
  std::shared_ptr<const DataKey> key;
  CIVICBUS_RETURN_IF_ERROR(db_.transaction([&]() -> Status {
    {
      // Another thread may have loaded it while this one waited for the transaction.
      std::shared_lock lock(mu_);
      if (auto it = current_by_topic_.find(topic); it != current_by_topic_.end()) {
        key = it->second;
        return Status();
      }
    }
    std::optional<std::pair<std::string, std::string>> stored;  // key_id, wrapped
    CIVICBUS_RETURN_IF_ERROR(db_.query(
        "SELECT key_id, wrapped_key FROM broker_keys WHERE topic = ? AND shredded_at IS NULL "
        "AND wrapped_key IS NOT NULL ORDER BY created_at DESC, key_id DESC LIMIT 1",
        {topic}, [&](const storage::Row& row) {
          stored.emplace(std::string(row.get_text(0)), std::string(row.get_blob(1)));
          return false;
        }));
    if (stored) {
      CIVICBUS_ASSIGN_OR_RETURN(key, unwrap(stored->first, std::string(topic), stored->second));
    } else {
      CIVICBUS_ASSIGN_OR_RETURN(key, create_key(topic));
    }
    install_current(key);
    return Status();
  }));
  return key;
}

Result<std::shared_ptr<const DataKey>> KeyStore::rotate(std::string_view topic) {
  if (topic.empty()) return invalid_argument("rotate(): the topic name is empty");
  std::shared_ptr<const DataKey> key;
  CIVICBUS_RETURN_IF_ERROR(db_.transaction([&]() -> Status {
    CIVICBUS_ASSIGN_OR_RETURN(key, create_key(topic));
    install_current(key);
    return Status();
  }));
  return key;
}

Result<std::shared_ptr<const DataKey>> KeyStore::key_by_id(std::string_view key_id) {
  {
    std::shared_lock lock(mu_);
    if (auto it = by_id_.find(key_id); it != by_id_.end()) return it->second;
  }
  std::shared_ptr<const DataKey> key;
  bool found = false;
  // A transaction, so that a shred cannot commit between reading the row and caching the
  // unwrapped key (which would bring a shredded key back to life in memory).
  CIVICBUS_RETURN_IF_ERROR(db_.transaction([&]() -> Status {
    {
      std::shared_lock lock(mu_);
      if (auto it = by_id_.find(key_id); it != by_id_.end()) {
        key = it->second;
        found = true;
        return Status();
      }
    }
    struct Stored {
      std::string topic;
      std::optional<std::string> wrapped;
      bool shredded;
    };
    std::optional<Stored> stored;
    CIVICBUS_RETURN_IF_ERROR(db_.query(
        "SELECT topic, wrapped_key, shredded_at FROM broker_keys WHERE key_id = ?", {key_id},
        [&](const storage::Row& row) {
          stored = Stored{std::string(row.get_text(0)),
                          row.is_null(1) ? std::nullopt
                                         : std::optional<std::string>(std::string(row.get_blob(1))),
                          !row.is_null(2)};
          return false;
        }));
    if (!stored) return Status();  // reported after the transaction, which must not fail
    found = true;
    if (!stored->shredded && stored->wrapped) {
      CIVICBUS_ASSIGN_OR_RETURN(key, unwrap(std::string(key_id), stored->topic, *stored->wrapped));
      wipe(*stored->wrapped);
    }
    std::unique_lock lock(mu_);
    by_id_.insert_or_assign(std::string(key_id), key);  // nullptr remembers a shredded key
    return Status();
  }));
  if (!found) {
    return not_found(fmt::format("PII key '{}' does not exist in {}", key_id, db_.describe()));
  }
  return key;
}

Status KeyStore::shred(std::string_view topic) {
  if (topic.empty()) return invalid_argument("shred(): the topic name is empty");
  return db_.transaction([&]() -> Status {
    const std::int64_t now = to_unix_micros(clock_.now());
    const bool sqlite = db_.dialect() == storage::Dialect::kSqlite;
    std::optional<std::int64_t> secure_delete;
    if (sqlite) {
      // secure_delete makes SQLite zero the freed bytes instead of leaving the old wrapped
      // key in the page's free space. It is a connection setting: restored below.
      CIVICBUS_ASSIGN_OR_RETURN(secure_delete, db_.query_int("PRAGMA secure_delete"));
      CIVICBUS_RETURN_IF_ERROR(db_.execute_script("PRAGMA secure_delete = ON"));
    }
    Status status = [&]() -> Status {
      if (sqlite) {
        // Overwrite in place first, so the cell that held the key is rewritten with zeros
        // before it is freed.
        CIVICBUS_RETURN_IF_ERROR(
            db_.execute("UPDATE broker_keys SET wrapped_key = zeroblob(length(wrapped_key)) "
                        "WHERE topic = ? AND wrapped_key IS NOT NULL",
                        {topic})
                .status());
      }
      return db_
          .execute(
              "UPDATE broker_keys SET wrapped_key = NULL, shredded_at = ? "
              "WHERE topic = ? AND shredded_at IS NULL",
              {now, topic})
          .status();
    }();
    if (sqlite && secure_delete) {
      Status restored = db_.execute_script(*secure_delete != 0 ? "PRAGMA secure_delete = ON"
                                                               : "PRAGMA secure_delete = OFF");
      if (status.ok()) status = restored;
    }
    CIVICBUS_RETURN_IF_ERROR(status);
    std::unique_lock lock(mu_);
    current_by_topic_.erase(std::string(topic));
    for (auto& [id, key] : by_id_) {
      if (key && key->topic == topic) key = nullptr;
    }
    return Status();
  });
}

Status KeyStore::grant(std::string_view topic, std::string_view group, std::string_view actor) {
  if (topic.empty() || group.empty()) {
    return invalid_argument("a PII grant needs both a topic and a consumer group");
  }
  return db_.transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(
        db_.execute("INSERT INTO broker_pii_grants (topic, group_name, granted_at, granted_by) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (topic, group_name) DO NOTHING",
                    {topic, group, to_unix_micros(clock_.now()), actor})
            .status());
    std::unique_lock lock(mu_);
    granted_[std::string(topic)].emplace(group);
    return Status();
  });
}

Status KeyStore::revoke(std::string_view topic, std::string_view group) {
  std::int64_t removed = 0;
  // An unknown grant is reported after the transaction: failing inside it would roll back a
  // caller's enclosing transaction too.
  CIVICBUS_RETURN_IF_ERROR(db_.transaction([&]() -> Status {
    CIVICBUS_ASSIGN_OR_RETURN(
        removed, db_.execute("DELETE FROM broker_pii_grants WHERE topic = ? AND group_name = ?",
                             {topic, group}));
    std::unique_lock lock(mu_);
    if (auto it = granted_.find(topic); it != granted_.end()) {
      if (auto g = it->second.find(group); g != it->second.end()) it->second.erase(g);
      if (it->second.empty()) granted_.erase(it);
    }
    return Status();
  }));
  if (removed == 0) {
    return not_found(
        fmt::format("consumer group '{}' has no PII grant for topic '{}'", group, topic));
  }
  return {};
}

bool KeyStore::is_granted(std::string_view topic, std::string_view group) const {
  std::shared_lock lock(mu_);
  auto it = granted_.find(topic);
  return it != granted_.end() && it->second.find(group) != it->second.end();
}

Result<std::vector<PiiGrant>> KeyStore::grants() {
  std::vector<PiiGrant> out;
  CIVICBUS_RETURN_IF_ERROR(db_.query(
      "SELECT topic, group_name, granted_at, granted_by FROM broker_pii_grants "
      "ORDER BY topic, group_name",
      {}, [&](const storage::Row& row) {
        out.push_back(PiiGrant{std::string(row.get_text(0)), std::string(row.get_text(1)),
                               from_unix_micros(row.get_int(2)), std::string(row.get_text(3))});
        return true;
      }));
  return out;
}

}  // namespace civicbus::broker
