#include "broker/pii.hpp"

#include <doctest/doctest.h>

#include "civicbus/storage/database.hpp"
#include "support/test_support.hpp"

namespace civicbus::broker {
namespace {

const std::string kMasterKey(32, '\x55');
const std::string kTopic = "citizen.registered";

class PiiFixture {
 public:
  PiiFixture() { reopen(); }

  void reopen(const std::string& key = kMasterKey) {
    Status s = try_reopen(key);
    REQUIRE_MESSAGE(s.ok(), s.to_string());
  }

  Status try_reopen(const std::string& key) {
    keys_.reset();
    db_.reset();
    storage::SqliteOptions options;
    options.path = dir_.file("pii.db");
    CIVICBUS_ASSIGN_OR_RETURN(db_, storage::open_sqlite(options));
    CIVICBUS_ASSIGN_OR_RETURN(keys_, KeyStore::open(*db_, key, random_, clock_));
    return {};
  }

  Json encrypted(Json data, const std::vector<std::string>& pointers,
                 const std::string& topic = kTopic) {
    auto key = keys_->current_key(topic);
    REQUIRE_MESSAGE(key.ok(), key.status().to_string());
    Status s = encrypt_pii(data, pointers, topic, **key, random_);
    REQUIRE_MESSAGE(s.ok(), s.to_string());
    return data;
  }

  KeyStore& keys() { return *keys_; }

 private:
  testing::TempDir dir_;
  ManualClock clock_;
  SecureRandom random_;
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<KeyStore> keys_;
};

Json citizen() {
  return Json::object({{"name", "Ana Souza"},
                       {"age", 42},
                       {"income", 5123.75},
                       {"address", Json::object({{"street", "Rua 7"}, {"zip", "01000"}})},
                       {"phones", Json::array({"555-0100", "555-0101"})},
                       {"verified", true},
                       {"nickname", nullptr},
                       {"district", "north"}});
}

const std::vector<std::string> kPointers = {"/name",     "/age",      "/income",   "/address",
                                            "/phones/1", "/verified", "/nickname", "/missing/x"};

TEST_CASE("pii: strings, numbers, objects and arrays round-trip for a granted group") {
  PiiFixture f;
  const Json original = citizen();
  Json data = f.encrypted(original, kPointers);
  auto key = f.keys().current_key(kTopic);
  REQUIRE(key.ok());

  for (const auto& p :
       {"/name", "/age", "/income", "/address", "/phones/1", "/verified", "/nickname"}) {
    const Json* v = data.at_pointer(p);
    REQUIRE(v != nullptr);
    REQUIRE(v->is_string());
    CHECK(v->as_string().starts_with("enc:v1:" + (*key)->key_id + ":"));
  }
  CHECK(*data.at_pointer("/district") == "north");  // not a PII field
  CHECK(*data.at_pointer("/phones/0") == "555-0100");
  CHECK(data.at_pointer("/missing") == nullptr);  // absent pointers are skipped
  const std::string stored = data.dump();
  // Looked for as JSON values (with their quote or colon): base64 ciphertext can spell "Ana"
  // by chance (about once in a thousand runs), never a quote or, in practice, ":5123".
  CHECK(stored.find("\"Ana") == std::string::npos);
  CHECK(stored.find("\"Rua 7") == std::string::npos);
  CHECK(stored.find(":5123") == std::string::npos);

  // Same plaintext, different ciphertext (fresh nonce each time).
  Json twice = f.encrypted(original, kPointers);
  CHECK(*twice.at_pointer("/name") != *data.at_pointer("/name"));

  Status s = reveal_pii(data, kPointers, kTopic, f.keys(), /*granted=*/true);
  REQUIRE_MESSAGE(s.ok(), s.to_string());
  CHECK(data == original);
  CHECK(data.at_pointer("/age")->is_int());
  CHECK(data.at_pointer("/income")->is_double());
}

TEST_CASE("pii: a group without a grant sees [redacted]") {
  PiiFixture f;
  Json data = f.encrypted(citizen(), kPointers);
  // A field declared PII after this event was stored holds plaintext: redacted all the same.
  std::vector<std::string> now_pii = kPointers;
  now_pii.push_back("/phones/0");
  REQUIRE(reveal_pii(data, now_pii, kTopic, f.keys(), /*granted=*/false).ok());
  CHECK(*data.at_pointer("/name") == "[redacted]");
  CHECK(*data.at_pointer("/address") == "[redacted]");
  CHECK(*data.at_pointer("/phones/0") == "[redacted]");
  CHECK(*data.at_pointer("/phones/1") == "[redacted]");
  CHECK(*data.at_pointer("/district") == "north");
  CHECK(data.at_pointer("/missing") == nullptr);
}

TEST_CASE("pii: a granted group gets non-encrypted values as they are") {
  PiiFixture f;
  Json data = citizen();
  REQUIRE(reveal_pii(data, kPointers, kTopic, f.keys(), /*granted=*/true).ok());
  CHECK(data == citizen());
}

TEST_CASE("pii: the AAD binds the topic and the field") {
  PiiFixture f;
  Json data = f.encrypted(citizen(), {"/name", "/district"});

  SUBCASE("another topic") {
    Status s = reveal_pii(data, {"/name"}, "citizen.moved", f.keys(), true);
    CHECK(s.code() == ErrorCode::kDataLoss);
    CHECK(s.message().find("/name") != std::string::npos);
    CHECK(s.message().find("citizen.moved") != std::string::npos);
  }
  SUBCASE("copied to another field") {
    data.set("district", *data.at_pointer("/name"));
    Status s = reveal_pii(data, {"/district"}, kTopic, f.keys(), true);
    CHECK(s.code() == ErrorCode::kDataLoss);
  }
}

TEST_CASE("pii: tampered or malformed values fail with kDataLoss and reveal nothing") {
  PiiFixture f;
  Json data = f.encrypted(Json::object({{"ssn", "123-45-6789"}}), {"/ssn"});
  std::string& value = data.at_pointer("/ssn")->as_string();
  const std::string original = value;

  SUBCASE("flipped ciphertext byte") {
    const std::size_t at = original.size() - 10;
    value[at] = value[at] == 'A' ? 'B' : 'A';
  }
  SUBCASE("truncated") {
    value.resize(original.size() - 8);
  }
  SUBCASE("not base64") {
    value += "!!";
  }
  SUBCASE("no key id separator") {
    value = "enc:v1:garbage";
  }
  SUBCASE("unknown key id") {
    value = "enc:v1:0190163d-8694-739b-aea5-966c26f8ad91" + original.substr(original.rfind(':'));
  }
  Status s = reveal_pii(data, {"/ssn"}, kTopic, f.keys(), true);
  CHECK(s.code() == ErrorCode::kDataLoss);
  CHECK(s.message().find("/ssn") != std::string::npos);
  CHECK(s.message().find("123-45") == std::string::npos);
  CHECK(data.dump().find("123-45") == std::string::npos);
}

TEST_CASE("pii: after shredding, old values read [shredded] and new events still work") {
  PiiFixture f;
  Json before = f.encrypted(citizen(), kPointers);
  REQUIRE(f.keys().shred(kTopic).ok());

  Json old_copy = before;
  REQUIRE(reveal_pii(old_copy, kPointers, kTopic, f.keys(), true).ok());
  CHECK(*old_copy.at_pointer("/name") == "[shredded]");
  CHECK(*old_copy.at_pointer("/address") == "[shredded]");
  CHECK(*old_copy.at_pointer("/district") == "north");

  Json after = f.encrypted(citizen(), kPointers);
  REQUIRE(reveal_pii(after, kPointers, kTopic, f.keys(), true).ok());
  CHECK(after == citizen());

  f.reopen();  // the shred is durable
  old_copy = before;
  REQUIRE(reveal_pii(old_copy, kPointers, kTopic, f.keys(), true).ok());
  CHECK(*old_copy.at_pointer("/name") == "[shredded]");
}

TEST_CASE("pii: grants survive a restart and decide what a group sees") {
  PiiFixture f;
  Json stored = f.encrypted(citizen(), kPointers);
  REQUIRE(f.keys().grant(kTopic, "tax-office", "alice").ok());
  f.reopen();
  Json seen = stored;
  REQUIRE(reveal_pii(seen, kPointers, kTopic, f.keys(), f.keys().is_granted(kTopic, "tax-office"))
              .ok());
  CHECK(seen == citizen());

  REQUIRE(f.keys().revoke(kTopic, "tax-office").ok());
  f.reopen();
  seen = stored;
  REQUIRE(reveal_pii(seen, kPointers, kTopic, f.keys(), f.keys().is_granted(kTopic, "tax-office"))
              .ok());
  CHECK(*seen.at_pointer("/name") == "[redacted]");
}

TEST_CASE("pii: a wrong master key is refused before any value is touched") {
  PiiFixture f;
  Json stored = f.encrypted(citizen(), kPointers);
  Status refused = f.try_reopen(std::string(32, '\x66'));
  CHECK(refused.code() == ErrorCode::kFailedPrecondition);
  CHECK(refused.message().find("key check failed") != std::string::npos);
  f.reopen();
  REQUIRE(reveal_pii(stored, kPointers, kTopic, f.keys(), true).ok());
  CHECK(stored == citizen());
}

TEST_CASE("pii: nested PII fields round-trip in either order") {
  PiiFixture f;
  const Json original = citizen();
  for (const std::vector<std::string>& pointers :
       {std::vector<std::string>{"/address/zip", "/address"},
        std::vector<std::string>{"/address", "/address/zip"}}) {
    Json data = f.encrypted(original, pointers);
    CHECK(data.dump().find("01000") == std::string::npos);
    REQUIRE(reveal_pii(data, pointers, kTopic, f.keys(), true).ok());
    CHECK(data == original);
  }
}

TEST_CASE("pii: a publisher cannot plant a value that breaks consumers") {
  PiiFixture f;
  const Json original = Json::object({{"name", "enc:v1:not-a-key:AAAA"}});
  Json data = f.encrypted(original, {"/name"});
  REQUIRE(reveal_pii(data, {"/name"}, kTopic, f.keys(), true).ok());
  CHECK(data == original);
}

TEST_CASE("pii: PII field pointers are validated") {
  CHECK(validate_pii_pointer("/citizen/name").ok());
  CHECK(validate_pii_pointer("/a~1b/c~0d").ok());
  CHECK(validate_pii_pointer("/items/0").ok());
  CHECK(validate_pii_pointer("").code() == ErrorCode::kInvalidArgument);
  CHECK(validate_pii_pointer("name").code() == ErrorCode::kInvalidArgument);
  CHECK(validate_pii_pointer("/a~2").code() == ErrorCode::kInvalidArgument);
  CHECK(validate_pii_pointer("/a~").code() == ErrorCode::kInvalidArgument);
  CHECK(is_encrypted_pii(Json("enc:v1:x:y")));
  CHECK_FALSE(is_encrypted_pii(Json("plain")));
  CHECK_FALSE(is_encrypted_pii(Json(1)));
}

}  // namespace
}  // namespace civicbus::broker
