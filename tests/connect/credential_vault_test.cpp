#include "connect/credential_vault.hpp"

#include <doctest/doctest.h>

#include <filesystem>

#include "support/postgres.hpp"
#include "support/test_support.hpp"

namespace civicbus::connect {
namespace {

const std::string kMasterKey(32, '\x21');
const std::string kNewKey(32, '\x5a');
const std::string kSecret = "Tr0ub4dor&3-correct-horse-battery";

class VaultFixture {
 public:
  VaultFixture() { reopen(); }

  void reopen(const std::string& key = kMasterKey) {
    Status status = try_reopen(key);
    REQUIRE_MESSAGE(status.ok(), status.to_string());
  }

  Status try_reopen(const std::string& key) {
    vault_.reset();
    db_.reset();
    storage::SqliteOptions options;
    options.path = path();
    CIVICBUS_ASSIGN_OR_RETURN(db_, storage::open_sqlite(options));
    CIVICBUS_ASSIGN_OR_RETURN(vault_, CredentialVault::open(*db_, key, random_, clock_));
    return {};
  }

  std::string path() const { return dir_.file("vault.db"); }

  // Every byte SQLite wrote: the database file, its WAL and shared-memory index.
  std::string file_bytes() const {
    std::string all;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      all += testing::read_file(entry.path().string());
    }
    return all;
  }

  std::string sealed(const std::string& connection, const std::string& pointer) {
    std::string out;
    REQUIRE(db_->query("SELECT sealed_value FROM connect_credentials WHERE "
                       "connection = ? AND "
                       "pointer = ?",
                       {std::string_view(connection), std::string_view(pointer)},
                       [&](const storage::Row& row) {
                         out = std::string(row.get_blob(0));
                         return false;
                       })
                .ok());
    return out;
  }

  void store_sealed(const std::string& connection, const std::string& pointer,
                    const std::string& value) {
    auto n = db_->execute(
        "UPDATE connect_credentials SET sealed_value = ? "
        "WHERE connection = ? AND pointer = ?",
        {storage::Blob{value}, std::string_view(connection), std::string_view(pointer)});
    REQUIRE(n.ok());
    REQUIRE(*n == 1);
  }

  testing::TempDir dir_;
  ManualClock clock_;
  SecureRandom random_;
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<CredentialVault> vault_;
};

Json permits_config() {
  return Json::object({{"host", "db.city.example"},
                       {"port", 5432},
                       {"user", "etl"},
                       {"password", kSecret},
                       {"auth", Json::object({{"token", "tok-123456789"}})}});
}

TEST_CASE("credential vault: put, get, resolve and redact") {
  VaultFixture f;
  REQUIRE(f.vault_->put("permits-db", "/password", Json(kSecret)).ok());
  REQUIRE(f.vault_->put("permits-db", "/auth/token", Json("tok-123456789")).ok());
  REQUIRE(f.vault_->put("gis", "/password", Json("another")).ok());

  auto got = f.vault_->get("permits-db", "/password");
  REQUIRE(got.ok());
  CHECK(*got == Json(kSecret));
  auto missing = f.vault_->get("permits-db", "/api_key");
  CHECK(missing.status().code() == ErrorCode::kNotFound);
  CHECK(missing.status().message().find("'/api_key'") != std::string::npos);

  // The stored configuration has no secrets; resolve() fills them in, objects included.
  Json stored = Json::object({{"host", "db.city.example"}, {"user", "etl"}});
  auto resolved = f.vault_->resolve("permits-db", stored);
  REQUIRE(resolved.ok());
  CHECK(resolved->get_string("password") == kSecret);
  CHECK(resolved->at_pointer("/auth/token")->as_string() == "tok-123456789");
  CHECK(resolved->get_string("host") == "db.city.example");

  Json shown = CredentialVault::redact(*resolved, {"/password", "/auth/token", "/absent"});
  CHECK(shown.get_string("password") == "********");
  CHECK(shown.at_pointer("/auth/token")->as_string() == "********");
  CHECK_FALSE(shown.contains("absent"));
  CHECK(shown.dump().find(kSecret) == std::string::npos);

  auto pointers = f.vault_->pointers("permits-db");
  REQUIRE(pointers.ok());
  CHECK(*pointers == std::vector<std::string>{"/auth/token", "/password"});

  // Survives a restart.
  f.reopen();
  CHECK(*f.vault_->get("gis", "/password") == Json("another"));

  auto erased = f.vault_->erase("permits-db");
  REQUIRE(erased.ok());
  CHECK(*erased == 2);
  CHECK(f.vault_->get("permits-db", "/password").status().code() == ErrorCode::kNotFound);
  CHECK(f.vault_->get("gis", "/password").ok());
}

TEST_CASE("credential vault: absorb moves secrets out of a config") {
  VaultFixture f;
  auto clear =
      f.vault_->absorb("permits-db", permits_config(), {"/password", "/auth/token", "/not_set"});
  REQUIRE(clear.ok());
  CHECK_FALSE(clear->contains("password"));
  CHECK(clear->at_pointer("/auth/token") == nullptr);
  CHECK(clear->get_int("port") == 5432);
  auto resolved = f.vault_->resolve("permits-db", *clear);
  REQUIRE(resolved.ok());
  CHECK(*resolved == permits_config());
  CHECK(f.vault_->put("c", "password", Json("x")).code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("credential vault: the database file never holds a secret in clear") {
  VaultFixture f;
  REQUIRE(f.vault_->put("permits-db", "/password", Json(kSecret)).ok());
  REQUIRE(f.vault_->put("permits-db", "/auth", Json::object({{"token", kSecret + "-2"}})).ok());
  REQUIRE(f.vault_->rotate_master_key(kNewKey).ok());
  f.vault_.reset();
  f.db_.reset();  // closes the connection (checkpoints the WAL into the file)
  const std::string bytes = f.file_bytes();
  REQUIRE(bytes.size() > 4096);
  CHECK(bytes.find("connect_credentials") != std::string::npos);  // we read the right file
  CHECK(bytes.find(kSecret) == std::string::npos);
  CHECK(bytes.find("Tr0ub4dor") == std::string::npos);
}

TEST_CASE("credential vault: a wrong master key is refused at open") {
  VaultFixture f;
  REQUIRE(f.vault_->put("permits-db", "/password", Json(kSecret)).ok());
  Status refused = f.try_reopen(kNewKey);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.code() == ErrorCode::kFailedPrecondition);
  CHECK(refused.message().find("key check failed") != std::string::npos);

  SUBCASE("also when the key-check row was deleted") {
    f.reopen();
    REQUIRE(f.db_->execute_script("DELETE FROM connect_vault_check").ok());
    Status again = f.try_reopen(kNewKey);
    CHECK(again.code() == ErrorCode::kFailedPrecondition);
    f.reopen();  // the right key still opens, and restores the check row
    CHECK(*f.db_->query_int("SELECT COUNT(*) FROM connect_vault_check") == 1);
  }
  SUBCASE("a key of the wrong length") {
    Status short_key = f.try_reopen(std::string(31, 'k'));
    CHECK(short_key.code() == ErrorCode::kInvalidArgument);
    CHECK(short_key.message().find("32-byte") != std::string::npos);
  }
}

TEST_CASE("credential vault: a flipped byte or a swapped row is detected") {
  VaultFixture f;
  REQUIRE(f.vault_->put("permits-db", "/password", Json(kSecret)).ok());
  REQUIRE(f.vault_->put("gis", "/password", Json("gis-secret")).ok());

  SUBCASE("tampered value") {
    std::string value = f.sealed("permits-db", "/password");
    REQUIRE(value.size() > 20);
    value[value.size() / 2] ^= 0x01;
    f.store_sealed("permits-db", "/password", value);
    auto got = f.vault_->get("permits-db", "/password");
    REQUIRE_FALSE(got.ok());
    CHECK(got.status().code() == ErrorCode::kDataLoss);
    CHECK(got.status().message().find("'permits-db'") != std::string::npos);
    CHECK(got.status().message().find(kSecret) == std::string::npos);
    CHECK(f.vault_->resolve("permits-db", Json::object()).status().code() == ErrorCode::kDataLoss);
    // Rotation refuses and changes nothing: the old key still opens the other secrets.
    Status rotated = f.vault_->rotate_master_key(kNewKey);
    CHECK(rotated.code() == ErrorCode::kDataLoss);
    CHECK(rotated.message().find("nothing changed") != std::string::npos);
    f.reopen(kMasterKey);
    CHECK(*f.vault_->get("gis", "/password") == Json("gis-secret"));
  }
  SUBCASE("a sealed value moved to another connection does not open") {
    f.store_sealed("gis", "/password", f.sealed("permits-db", "/password"));
    auto got = f.vault_->get("gis", "/password");
    CHECK(got.status().code() == ErrorCode::kDataLoss);
    CHECK(got.status().message().find(kSecret) == std::string::npos);
  }
}

TEST_CASE("credential vault: rotating the master key re-seals every secret") {
  VaultFixture f;
  REQUIRE(f.vault_->put("permits-db", "/password", Json(kSecret)).ok());
  REQUIRE(f.vault_->put("gis", "/auth/token", Json("tok")).ok());
  const std::string before = f.sealed("permits-db", "/password");
  CHECK(f.vault_->key_version() == 1);

  REQUIRE(f.vault_->rotate_master_key(kNewKey).ok());
  CHECK(f.vault_->key_version() == 2);
  CHECK(f.sealed("permits-db", "/password") != before);
  CHECK(*f.vault_->get("permits-db", "/password") == Json(kSecret));  // same instance, new key
  CHECK(*f.db_->query_int("SELECT MIN(key_version) FROM connect_credentials") == 2);
  CHECK(f.vault_->rotate_master_key(kNewKey).code() == ErrorCode::kInvalidArgument);

  Status old_key = f.try_reopen(kMasterKey);
  CHECK(old_key.code() == ErrorCode::kFailedPrecondition);
  CHECK(old_key.message().find("rotated") != std::string::npos);
  f.reopen(kNewKey);
  CHECK(f.vault_->key_version() == 2);
  CHECK(*f.vault_->get("permits-db", "/password") == Json(kSecret));
  CHECK(*f.vault_->get("gis", "/auth/token") == Json("tok"));
  // New secrets are sealed under the new key.
  REQUIRE(f.vault_->put("new", "/password", Json("fresh")).ok());
  f.reopen(kNewKey);
  CHECK(*f.vault_->get("new", "/password") == Json("fresh"));
}

TEST_CASE("credential vault: set_at_pointer") {
  Json doc = Json::object({{"list", Json::array({1, 2})}, {"n", 5}});
  REQUIRE(set_at_pointer(doc, "/a/b~1c", Json("x")).ok());
  CHECK(doc.at_pointer("/a/b~1c")->as_string() == "x");
  REQUIRE(set_at_pointer(doc, "/list/1", Json(9)).ok());
  CHECK(doc.at_pointer("/list/1")->as_int() == 9);
  CHECK(set_at_pointer(doc, "/list/7", Json(1)).code() == ErrorCode::kInvalidArgument);
  CHECK(set_at_pointer(doc, "/n/x", Json(1)).code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("credential vault: the same behaviour on PostgreSQL") {
  testing::Postgres server;
  ManualClock clock;
  SecureRandom random;
  auto connect = [&]() {
    auto db = storage::open_postgres(storage::PostgresOptions{.connection = server.uri()});
    REQUIRE_MESSAGE(db.ok(), db.status().to_string());
    return std::move(*db);
  };
  std::unique_ptr<storage::Database> db = connect();
  auto vault = CredentialVault::open(*db, kMasterKey, random, clock);
  REQUIRE_MESSAGE(vault.ok(), vault.status().to_string());
  REQUIRE((*vault)->put("permits-db", "/password", Json(kSecret)).ok());
  REQUIRE((*vault)->put("permits-db", "/password", Json(kSecret + "!")).ok());  // replaces
  REQUIRE((*vault)->put("gis", "/auth/token", Json("tok")).ok());
  CHECK(*(*vault)->get("permits-db", "/password") == Json(kSecret + "!"));
  REQUIRE((*vault)->rotate_master_key(kNewKey).ok());
  vault->reset();

  db = connect();
  CHECK(CredentialVault::open(*db, kMasterKey, random, clock).status().code() ==
        ErrorCode::kFailedPrecondition);
  vault = CredentialVault::open(*db, kNewKey, random, clock);
  REQUIRE_MESSAGE(vault.ok(), vault.status().to_string());
  CHECK((*vault)->key_version() == 2);
  auto resolved = (*vault)->resolve("gis", Json::object());
  REQUIRE(resolved.ok());
  CHECK(resolved->at_pointer("/auth/token")->as_string() == "tok");

  // A flipped byte in the stored value is caught there too.
  std::string sealed;
  REQUIRE(db->query("SELECT sealed_value FROM connect_credentials WHERE connection = 'gis'", {},
                    [&](const storage::Row& row) {
                      sealed = std::string(row.get_blob(0));
                      return false;
                    })
              .ok());
  REQUIRE(sealed.size() > 28);
  sealed[20] ^= 0x40;
  REQUIRE(db->execute("UPDATE connect_credentials SET sealed_value = ? WHERE connection = 'gis'",
                      {storage::Blob{sealed}})
              .ok());
  CHECK((*vault)->get("gis", "/auth/token").status().code() == ErrorCode::kDataLoss);
}

}  // namespace
}  // namespace civicbus::connect
