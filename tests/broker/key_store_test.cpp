#include "broker/key_store.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <atomic>
#include <thread>

#include "civicbus/core/crypto.hpp"
#include "civicbus/storage/database.hpp"
#include "support/test_support.hpp"

namespace civicbus::broker {
namespace {

const std::string kMasterKey(32, '\x33');
const std::string kOtherKey(32, '\x44');

class KeyStoreFixture {
 public:
  KeyStoreFixture() { reopen(); }

  // A restart: a new connection and a new KeyStore on the same file.
  void reopen(const std::string& key = kMasterKey) {
    auto status = try_reopen(key);
    REQUIRE_MESSAGE(status.ok(), status.to_string());
  }

  Status try_reopen(const std::string& key) {
    keys_.reset();
    db_.reset();
    storage::SqliteOptions options;
    options.path = dir_.file("keys.db");
    CIVICBUS_ASSIGN_OR_RETURN(db_, storage::open_sqlite(options));
    CIVICBUS_ASSIGN_OR_RETURN(keys_, KeyStore::open(*db_, key, random_, clock_));
    return {};
  }

  std::optional<std::int64_t> count(const std::string& sql) {
    auto n = db_->query_int(sql);
    REQUIRE_MESSAGE(n.ok(), n.status().to_string());
    return *n;
  }

  KeyStore& keys() { return *keys_; }
  storage::Database& db() { return *db_; }
  RandomSource& random() { return random_; }
  ManualClock& clock() { return clock_; }

 private:
  testing::TempDir dir_;
  ManualClock clock_;
  SecureRandom random_;
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<KeyStore> keys_;
};

std::shared_ptr<const DataKey> must(Result<std::shared_ptr<const DataKey>> r) {
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

TEST_CASE("key store: a topic gets one current key, kept across restarts") {
  KeyStoreFixture f;
  auto a = must(f.keys().current_key("citizen.registered"));
  REQUIRE(a != nullptr);
  CHECK(is_uuid(a->key_id));
  CHECK(a->topic == "citizen.registered");
  CHECK(must(f.keys().current_key("citizen.registered")) == a);  // cached, same object
  auto other = must(f.keys().current_key("permit.issued"));
  CHECK(other->key_id != a->key_id);
  CHECK(must(f.keys().key_by_id(a->key_id)) == a);

  RandomSource& random = f.random();
  const std::string sealed = a->cipher.seal(random, "secret", "aad");
  f.reopen();
  auto again = must(f.keys().current_key("citizen.registered"));
  CHECK(again->key_id == a->key_id);
  auto opened = again->cipher.open(sealed, "aad");
  REQUIRE(opened.ok());
  CHECK(*opened == "secret");
  CHECK(must(f.keys().key_by_id(a->key_id))->key_id == a->key_id);
}

TEST_CASE("key store: data keys are stored wrapped, never in clear") {
  KeyStoreFixture f;
  auto key = must(f.keys().current_key("citizen.registered"));
  const std::string probe = "probe";
  const std::string sealed = key->cipher.seal(f.random(), probe);
  // The raw key is not in the database: the wrapped blob is nonce + ciphertext + tag.
  std::string wrapped;
  REQUIRE(f.db()
              .query("SELECT wrapped_key FROM broker_keys WHERE key_id = ?", {key->key_id},
                     [&](const storage::Row& row) {
                       wrapped = std::string(row.get_blob(0));
                       return false;
                     })
              .ok());
  CHECK(wrapped.size() == 12 + 32 + 16);
  for (std::size_t i = 0; i + 32 <= wrapped.size(); ++i) {
    auto candidate = crypto::AesGcm::create(std::string_view(wrapped).substr(i, 32));
    REQUIRE(candidate.ok());
    CHECK_FALSE(candidate->open(sealed).ok());
  }
}

TEST_CASE("key store: a wrong master key is refused at open") {
  KeyStoreFixture f;
  must(f.keys().current_key("citizen.registered"));
  Status refused = f.try_reopen(kOtherKey);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.code() == ErrorCode::kFailedPrecondition);
  CHECK(refused.message() ==
        "master key does not match the one this database was created with (key check failed)");
  CHECK(refused.message().find(crypto::to_hex(kOtherKey)) == std::string::npos);

  SUBCASE("also when the key check row was deleted") {
    f.reopen();
    REQUIRE(f.db().execute_script("DELETE FROM broker_key_check").ok());
    Status again = f.try_reopen(kOtherKey);
    CHECK(again.code() == ErrorCode::kFailedPrecondition);
    CHECK(again.message().find("key check failed") != std::string::npos);
    f.reopen();  // the right key still opens, and restores the check row
    CHECK(f.count("SELECT COUNT(*) FROM broker_key_check") == 1);
  }
  SUBCASE("the right key still opens") {
    f.reopen();
  }
}

TEST_CASE("key store: the master key must be 32 bytes") {
  KeyStoreFixture f;
  Status s = f.try_reopen("too short");
  CHECK(s.code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("key store: shredding destroys every key of the topic; the next use gets a fresh one") {
  KeyStoreFixture f;
  auto first = must(f.keys().current_key("citizen.registered"));
  auto rotated = must(f.keys().rotate("citizen.registered"));
  CHECK(rotated->key_id != first->key_id);
  CHECK(must(f.keys().current_key("citizen.registered")) == rotated);
  CHECK(must(f.keys().key_by_id(first->key_id)) != nullptr);  // older keys stay readable
  auto bystander = must(f.keys().current_key("permit.issued"));

  const auto secure_delete_before = f.count("PRAGMA secure_delete");
  REQUIRE(f.keys().shred("citizen.registered").ok());
  // secure_delete is switched on only for the shred.
  CHECK(f.count("PRAGMA secure_delete") == secure_delete_before);
  CHECK(must(f.keys().key_by_id(first->key_id)) == nullptr);
  CHECK(must(f.keys().key_by_id(rotated->key_id)) == nullptr);
  CHECK(must(f.keys().key_by_id(bystander->key_id)) == bystander);
  CHECK(f.count("SELECT COUNT(*) FROM broker_keys WHERE topic = 'citizen.registered' "
                "AND wrapped_key IS NULL AND shredded_at IS NOT NULL") == 2);

  auto fresh = must(f.keys().current_key("citizen.registered"));
  CHECK(fresh->key_id != first->key_id);
  CHECK(fresh->key_id != rotated->key_id);

  f.reopen();
  CHECK(must(f.keys().key_by_id(first->key_id)) == nullptr);
  CHECK(must(f.keys().current_key("citizen.registered"))->key_id == fresh->key_id);
  CHECK(f.keys().shred("never.used").ok());
}

TEST_CASE("key store: unknown and corrupt keys") {
  KeyStoreFixture f;
  auto unknown = f.keys().key_by_id("0190163d-8694-739b-aea5-966c26f8ad91");
  CHECK(unknown.status().code() == ErrorCode::kNotFound);

  // A wrapped key moved to another topic's row does not unwrap: the AAD binds id and topic.
  auto a = must(f.keys().current_key("a.topic"));
  auto b = must(f.keys().current_key("b.topic"));
  REQUIRE(f.db()
              .execute("UPDATE broker_keys SET wrapped_key = (SELECT wrapped_key FROM broker_keys "
                       "WHERE key_id = ?) WHERE key_id = ?",
                       {a->key_id, b->key_id})
              .ok());
  f.reopen();
  auto moved = f.keys().key_by_id(b->key_id);
  CHECK(moved.status().code() == ErrorCode::kDataLoss);
  CHECK(must(f.keys().key_by_id(a->key_id))->key_id == a->key_id);
}

TEST_CASE("key store: grants and revocations persist across restarts") {
  KeyStoreFixture f;
  CHECK_FALSE(f.keys().is_granted("citizen.registered", "tax-office"));
  REQUIRE(f.keys().grant("citizen.registered", "tax-office", "alice").ok());
  REQUIRE(f.keys().grant("citizen.registered", "tax-office", "bob").ok());  // no-op
  REQUIRE(f.keys().grant("citizen.registered", "registry", "alice").ok());
  CHECK(f.keys().is_granted("citizen.registered", "tax-office"));
  CHECK_FALSE(f.keys().is_granted("citizen.moved", "tax-office"));
  CHECK_FALSE(f.keys().is_granted("citizen.registered", "tax"));

  f.reopen();
  CHECK(f.keys().is_granted("citizen.registered", "tax-office"));
  auto grants = f.keys().grants();
  REQUIRE(grants.ok());
  REQUIRE(grants->size() == 2);
  CHECK((*grants)[0].group == "registry");
  CHECK((*grants)[1].group == "tax-office");
  CHECK((*grants)[1].granted_by == "alice");
  CHECK((*grants)[1].granted_at == f.clock().now());

  REQUIRE(f.keys().revoke("citizen.registered", "tax-office").ok());
  CHECK_FALSE(f.keys().is_granted("citizen.registered", "tax-office"));
  Status again = f.keys().revoke("citizen.registered", "tax-office");
  CHECK(again.code() == ErrorCode::kNotFound);
  CHECK(again.message() ==
        "consumer group 'tax-office' has no PII grant for topic 'citizen.registered'");
  f.reopen();
  CHECK_FALSE(f.keys().is_granted("citizen.registered", "tax-office"));
  CHECK(f.keys().is_granted("citizen.registered", "registry"));
  CHECK(f.keys().grant("", "g", "a").code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("key store: reload() undoes cached changes of a rolled-back transaction") {
  KeyStoreFixture f;
  Status s = f.db().transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(f.keys().grant("citizen.registered", "tax-office", "alice"));
    return aborted("the audit record could not be written");
  });
  CHECK(s.code() == ErrorCode::kAborted);
  REQUIRE(f.keys().reload().ok());
  CHECK_FALSE(f.keys().is_granted("citizen.registered", "tax-office"));

  // A revoke inside a caller's transaction does not roll that transaction back when the
  // grant does not exist: the caller gets kNotFound and decides.
  Status outer = f.db().transaction([&]() -> Status {
    Status revoked = f.keys().revoke("citizen.registered", "nobody");
    CHECK(revoked.code() == ErrorCode::kNotFound);
    return Status();
  });
  CHECK(outer.ok());
}

TEST_CASE("key store: concurrent first use of a topic creates one key") {
  KeyStoreFixture f;
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  std::vector<std::string> ids(kThreads);
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        auto key = f.keys().current_key(fmt::format("topic.{}", i % 5));
        if (!key.ok()) ++failures;
        if (i == 0 && key.ok()) ids[t] = (*key)->key_id;
        (void)f.keys().is_granted("topic.0", "g");
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  for (const auto& id : ids) CHECK(id == ids[0]);
  CHECK(f.count("SELECT COUNT(*) FROM broker_keys") == 5);
}

}  // namespace
}  // namespace civicbus::broker
