#include "civicbus/core/crypto.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "civicbus/core/json.hpp"
#include "support/test_support.hpp"

namespace civicbus::crypto {
namespace {

std::string unhex(std::string_view hex) {
  auto r = from_hex(hex);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return *r;
}

TEST_CASE("crypto: hex of every byte value, and back") {
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  std::string expected;
  for (int b = 0; b < 256; ++b) {
    expected += "0123456789abcdef"[b >> 4];
    expected += "0123456789abcdef"[b & 15];
  }
  CHECK(to_hex(all) == expected);
  CHECK(to_hex("") == "");
  std::string into(6, '-');
  to_hex(std::string_view("\x00\xff\x10", 3), into.data());
  CHECK(into == "00ff10");
  CHECK(unhex(expected) == all);
  // Every length up to three blocks of eight and their tails, from every offset of a block.
  for (std::size_t at = 0; at < 8; ++at) {
    for (std::size_t n = 0; n <= 24; ++n) {
      CHECK(to_hex(std::string_view(all).substr(240 + at - n, n)) ==
            expected.substr(2 * (240 + at - n), 2 * n));
    }
  }
}

TEST_CASE("crypto: SHA-256 known answers (FIPS 180-2)") {
  CHECK(to_hex(sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(to_hex(sha256("abc")) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(to_hex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(to_hex(sha256(std::string(1'000'000, 'a'))) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  CHECK(sha256(std::string("a\0b", 3)) != sha256("a"));  // binary-safe
}

TEST_CASE("crypto: HMAC-SHA256 (RFC 4231 test cases 1-7)") {
  CHECK(to_hex(hmac_sha256(std::string(20, '\x0b'), "Hi There")) ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  CHECK(to_hex(hmac_sha256("Jefe", "what do ya want for nothing?")) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(to_hex(hmac_sha256(std::string(20, '\xaa'), std::string(50, '\xdd'))) ==
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
  CHECK(to_hex(hmac_sha256(unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                           std::string(50, '\xcd'))) ==
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
  CHECK(to_hex(hmac_sha256(std::string(20, '\x0c'), "Test With Truncation")).substr(0, 32) ==
        "a3b6167473100ee06e0c796c2955552b");
  CHECK(to_hex(hmac_sha256(std::string(131, '\xaa'),
                           "Test Using Larger Than Block-Size Key - Hash Key First")) ==
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  CHECK(to_hex(hmac_sha256(std::string(131, '\xaa'),
                           "This is a test using a larger than block-size key and a larger than "
                           "block-size data. The key needs to be hashed before being used by the "
                           "HMAC algorithm.")) ==
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
  // A key of exactly one block is used as is; one byte more is hashed first.
  CHECK(hmac_sha256(std::string(64, 'k'), "m") != hmac_sha256(std::string(65, 'k'), "m"));
  CHECK(hmac_sha256(sha256(std::string(65, 'k')), "m") == hmac_sha256(std::string(65, 'k'), "m"));
  CHECK(hmac_sha256("", "").size() == 32);
}

TEST_CASE("crypto: constant_time_equal") {
  CHECK(constant_time_equal("", ""));
  CHECK(constant_time_equal("abc", "abc"));
  CHECK_FALSE(constant_time_equal("abc", "abd"));
  CHECK_FALSE(constant_time_equal("abc", "bbc"));
  CHECK_FALSE(constant_time_equal("abc", "ab"));
  CHECK_FALSE(constant_time_equal(std::string("a\0", 2), "a"));
  CHECK(constant_time_equal(std::string("a\0b", 3), std::string("a\0b", 3)));
}

TEST_CASE("crypto: hex") {
  CHECK(to_hex("") == "");
  CHECK(to_hex(std::string("\x00\x01\xab\xff", 4)) == "0001abff");
  CHECK(*from_hex("0001abff") == std::string("\x00\x01\xab\xff", 4));
  CHECK(*from_hex("0001ABFF") == std::string("\x00\x01\xab\xff", 4));
  CHECK(from_hex("").ok());
  CHECK(from_hex("abc").status().code() == ErrorCode::kInvalidArgument);
  CHECK_FALSE(from_hex("0g").ok());
  CHECK_FALSE(from_hex(" 00").ok());
  CHECK(from_hex("00zz").status().message().find("offset 2") != std::string::npos);
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  CHECK(*from_hex(to_hex(all)) == all);
}

TEST_CASE("crypto: base64 (RFC 4648 section 10 vectors)") {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (auto [plain, encoded] : vectors) {
    CHECK(base64_encode(plain) == encoded);
    auto back = base64_decode(encoded);
    REQUIRE(back.ok());
    CHECK(*back == plain);
    std::string url = encoded;
    while (!url.empty() && url.back() == '=') url.pop_back();
    CHECK(base64url_encode(plain) == url);
    auto url_back = base64url_decode(url);
    REQUIRE(url_back.ok());
    CHECK(*url_back == plain);
  }
  // The two alphabets differ in the last two symbols.
  const std::string bytes("\xfb\xff\xbf", 3);
  CHECK(base64_encode(bytes) == "+/+/");
  CHECK(base64url_encode(bytes) == "-_-_");
  CHECK(*base64url_decode("-_-_") == bytes);
  CHECK_FALSE(base64_decode("-_-_").ok());
  CHECK_FALSE(base64url_decode("+/+/").ok());

  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (std::size_t n = 0; n <= all.size(); n += 17) {
    CHECK(*base64_decode(base64_encode(all.substr(0, n))) == all.substr(0, n));
    CHECK(*base64url_decode(base64url_encode(all.substr(0, n))) == all.substr(0, n));
  }
}

TEST_CASE("crypto: base64 decoding is strict") {
  const char* bad_base64[] = {"Zg",    "Zg=",   "Zm8",  "Zg===", "Z===", "====",     "Zm9v\n",
                              " Zm9v", "Zm9=v", "Zh==", "Zm9=",  "Zm$v", "Zg==Zg==", "=Zm9"};
  for (const char* text : bad_base64) {
    auto r = base64_decode(text);
    CHECK_MESSAGE(!r.ok(), text);
    if (!r.ok()) CHECK(r.status().code() == ErrorCode::kInvalidArgument);
  }
  // "Zh==" and "Zm9=" carry non-zero bits after the last byte: a second spelling of "f"/"fo".
  CHECK(base64_decode("Zh==").status().message().find("canonical") != std::string::npos);
  const char* bad_base64url[] = {"Zg==", "Z", "Zm9vY", "Zh", "Zm9", "Zm+v", "Zm/v", "Zm9v="};
  for (const char* text : bad_base64url) CHECK_MESSAGE(!base64url_decode(text).ok(), text);
}

TEST_CASE("crypto: AES-GCM known answers (McGrew-Viega test cases 1-4, 13-14)") {
  auto k128 = AesGcm::create(std::string(16, '\0'));
  REQUIRE(k128.ok());
  const std::string iv0(12, '\0');
  CHECK(to_hex(*k128->encrypt(iv0, "", "")) == "58e2fccefa7e3061367f1d57a4e7455a");
  CHECK(to_hex(*k128->encrypt(iv0, "", std::string(16, '\0'))) ==
        "0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf");

  auto k3 = AesGcm::create(unhex("feffe9928665731c6d6a8f9467308308"));
  REQUIRE(k3.ok());
  const std::string iv3 = unhex("cafebabefacedbaddecaf888");
  const std::string p3 = unhex(
      "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6"
      "b525"
      "b16aedf5aa0de657ba637b39");
  const std::string aad4 = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  auto c4 = k3->encrypt(iv3, aad4, p3);
  REQUIRE(c4.ok());
  CHECK(to_hex(*c4) ==
        "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac"
        "84aa05"
        "1ba30b396a0aac973d58e091"
        "5bc94fbc3221a5db94fae95ae7121a47");
  auto p4 = k3->decrypt(iv3, aad4, *c4);
  REQUIRE(p4.ok());
  CHECK(*p4 == p3);
  // Truncated tags are a prefix of the full tag.
  auto c4_12 = k3->encrypt(iv3, aad4, p3, 12);
  REQUIRE(c4_12.ok());
  CHECK(*c4_12 == c4->substr(0, c4->size() - 4));
  CHECK(k3->decrypt(iv3, aad4, *c4_12, 12).ok());
  CHECK_FALSE(k3->decrypt(iv3, aad4, *c4_12, 16).ok());

  auto k256 = AesGcm::create(std::string(32, '\0'));
  REQUIRE(k256.ok());
  CHECK(to_hex(*k256->encrypt(iv0, "", "")) == "530f8afbc74536b9a963b4f1c4cb738b");
  CHECK(to_hex(*k256->encrypt(iv0, "", std::string(16, '\0'))) ==
        "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
}

TEST_CASE("crypto: AES-GCM rejects bad keys, IVs, tags and tampering") {
  CHECK(AesGcm::create("").status().code() == ErrorCode::kInvalidArgument);
  CHECK_FALSE(AesGcm::create(std::string(15, 'k')).ok());
  CHECK_FALSE(AesGcm::create(std::string(33, 'k')).ok());
  CHECK(AesGcm::create(std::string(24, 'k')).ok());

  auto gcm = AesGcm::create(std::string(32, 'k'));
  REQUIRE(gcm.ok());
  const std::string iv(12, 'i');
  CHECK(gcm->encrypt("", "", "x").status().code() == ErrorCode::kInvalidArgument);
  CHECK(gcm->encrypt(iv, "", "x", 3).status().code() == ErrorCode::kInvalidArgument);
  CHECK(gcm->encrypt(iv, "", "x", 17).status().code() == ErrorCode::kInvalidArgument);
  CHECK(gcm->encrypt(iv, "", "x", 4).ok());
  CHECK(gcm->encrypt(std::string(1, 'i'), "", "x").ok());    // short IVs go through GHASH
  CHECK(gcm->encrypt(std::string(300, 'i'), "", "x").ok());  // and so do long ones

  auto ct = gcm->encrypt(iv, "aad", "hello");
  REQUIRE(ct.ok());
  CHECK(*gcm->decrypt(iv, "aad", *ct) == "hello");
  for (std::size_t i = 0; i < ct->size(); ++i) {
    std::string bad = *ct;
    bad[i] ^= 0x01;
    auto r = gcm->decrypt(iv, "aad", bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kDataLoss);
  }
  CHECK_FALSE(gcm->decrypt(iv, "aae", *ct).ok());
  CHECK_FALSE(gcm->decrypt(std::string(12, 'j'), "aad", *ct).ok());
  CHECK(gcm->decrypt(iv, "aad", ct->substr(0, 15)).status().code() == ErrorCode::kDataLoss);
  CHECK(gcm->decrypt(iv, "aad", "").status().code() == ErrorCode::kDataLoss);
  auto other = AesGcm::create(std::string(32, 'K'));
  CHECK_FALSE(other->decrypt(iv, "aad", *ct).ok());
}

TEST_CASE("crypto: AES-GCM seal and open") {
  SecureRandom random;
  auto gcm = AesGcm::create(random.bytes(32));
  REQUIRE(gcm.ok());
  const std::string sealed = gcm->seal(random, "jane.doe@example.org", "permit.issued/42");
  CHECK(sealed.size() == 12 + 20 + 16);
  CHECK(*gcm->open(sealed, "permit.issued/42") == "jane.doe@example.org");
  CHECK(gcm->open(sealed, "permit.issued/43").status().code() == ErrorCode::kDataLoss);
  // The same plaintext seals differently each time: the nonce is fresh.
  CHECK(gcm->seal(random, "x") != gcm->seal(random, "x"));
  CHECK(*gcm->open(gcm->seal(random, "")) == "");
  // Truncated and tampered inputs fail with one message, whatever the cause.
  auto truncated = gcm->open(sealed.substr(0, 27), "permit.issued/42");
  std::string flipped = sealed;
  flipped[3] ^= 0x80;
  auto tampered = gcm->open(flipped, "permit.issued/42");
  REQUIRE_FALSE(truncated.ok());
  REQUIRE_FALSE(tampered.ok());
  CHECK(truncated.status() == tampered.status());
  CHECK(truncated.status().code() == ErrorCode::kDataLoss);
  // The seal layout is nonce || ciphertext || tag, readable by the raw primitive.
  CHECK(*gcm->decrypt(sealed.substr(0, 12), "permit.issued/42", sealed.substr(12)) ==
        "jane.doe@example.org");
  // Copies share the key.
  const crypto::AesGcm copy = *gcm;
  CHECK(*copy.open(sealed, "permit.issued/42") == "jane.doe@example.org");
}

TEST_CASE("crypto: AES-GCM from many threads at once") {
  SecureRandom random;
  auto gcm = AesGcm::create(random.bytes(16));
  REQUIRE(gcm.ok());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  // More threads than context slots, so the fallback path runs too.
  for (int t = 0; t < 12; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::string plain = "field-" + std::to_string(t) + "-" + std::to_string(i);
        const std::string sealed = gcm->seal(random, plain, "aad");
        auto opened = gcm->open(sealed, "aad");
        if (!opened.ok() || *opened != plain) failures.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures.load() == 0);
}

// ---- Wycheproof (C2SP) suites: /work/shared/conformance/wycheproof/testvectors_v1 ----

Json load_wycheproof(const std::string& file) {
  const std::string path =
      std::string(CIVICBUS_SHARED_DIR) + "/conformance/wycheproof/testvectors_v1/" + file;
  const std::string text = civicbus::testing::read_file(path);
  REQUIRE_MESSAGE(!text.empty(), "cannot read " << path);
  auto doc = Json::parse(text);
  REQUIRE_MESSAGE(doc.ok(), path << ": " << doc.status().to_string());
  REQUIRE(doc->is_object());
  return std::move(doc).value();
}

struct Tally {
  std::int64_t total = 0;  // tests in the file
  std::int64_t passed = 0;
  std::int64_t skipped = 0;
  std::string skip_reasons;  // "; "-joined, one per skipped group
  std::vector<std::string> failures;

  void fail(std::int64_t tc_id, const std::string& why) {
    if (failures.size() < 20) failures.push_back("tcId " + std::to_string(tc_id) + ": " + why);
  }
  void report(const std::string& file, std::int64_t declared) {
    const std::int64_t run = total - skipped;
    std::string line = "wycheproof " + file + ": " + std::to_string(passed) + "/" +
                       std::to_string(run) + " passed (" + std::to_string(skipped) + " skipped" +
                       (skip_reasons.empty() ? "" : ": " + skip_reasons) + ")";
    MESSAGE(line);
    for (const auto& f : failures) MESSAGE(f);
    CHECK(total == declared);  // every test in the file was seen
    CHECK(passed == run);
    CHECK(failures.empty());
  }
};

std::string hex_field(const Json& test, std::string_view key) {
  const Json* v = test.find(key);
  REQUIRE_MESSAGE((v != nullptr && v->is_string()), "missing hex field " << key);
  return unhex(v->as_string());
}

TEST_CASE("crypto: Wycheproof aes_gcm_test.json") {
  const std::string file = "aes_gcm_test.json";
  const Json doc = load_wycheproof(file);
  CHECK(doc.get_string("algorithm") == "AES-GCM");
  Tally tally;
  for (const Json& group : doc.find("testGroups")->as_array()) {
    const std::int64_t key_bits = group.get_int("keySize");
    const std::int64_t iv_bits = group.get_int("ivSize");
    const std::int64_t tag_bits = group.get_int("tagSize");
    const Json::Array& tests = group.find("tests")->as_array();
    tally.total += static_cast<std::int64_t>(tests.size());
    // AesGcm takes AES-128/192/256 keys and whole-byte tags of 4..16 bytes; any IV length but
    // zero is fine for GCM (and zero is exactly what the invalid tests probe).
    if ((key_bits != 128 && key_bits != 192 && key_bits != 256) || tag_bits % 8 != 0 ||
        tag_bits < 32 || tag_bits > 128 || iv_bits % 8 != 0) {
      tally.skipped += static_cast<std::int64_t>(tests.size());
      if (!tally.skip_reasons.empty()) tally.skip_reasons += "; ";
      tally.skip_reasons += "key " + std::to_string(key_bits) + " bits, tag " +
                            std::to_string(tag_bits) + " bits, iv " + std::to_string(iv_bits) +
                            " bits not supported";
      continue;
    }
    const std::size_t tag_len = static_cast<std::size_t>(tag_bits / 8);
    for (const Json& t : tests) {
      const std::int64_t id = t.get_int("tcId");
      const std::string result = t.get_string("result");
      const std::string key = hex_field(t, "key"), iv = hex_field(t, "iv"),
                        aad = hex_field(t, "aad"), msg = hex_field(t, "msg"),
                        ct = hex_field(t, "ct"), tag = hex_field(t, "tag");
      if (result == "acceptable") {
        ++tally.passed;  // either outcome is allowed
        continue;
      }
      auto gcm = AesGcm::create(key);
      if (result == "valid") {
        if (!gcm.ok()) {
          tally.fail(id, "key rejected: " + gcm.status().to_string());
          continue;
        }
        auto sealed = gcm->encrypt(iv, aad, msg, tag_len);
        auto opened = gcm->decrypt(iv, aad, ct + tag, tag_len);
        if (!sealed.ok()) {
          tally.fail(id, "encrypt failed: " + sealed.status().to_string());
        } else if (*sealed != ct + tag) {
          tally.fail(id, "ciphertext||tag differs: " + to_hex(*sealed));
        } else if (!opened.ok()) {
          tally.fail(id, "decrypt failed: " + opened.status().to_string());
        } else if (*opened != msg) {
          tally.fail(id, "decrypted plaintext differs");
        } else {
          ++tally.passed;
        }
      } else if (result == "invalid") {
        // Must be refused: the key, the parameters, or the authentication.
        const bool refused = !gcm.ok() || !gcm->decrypt(iv, aad, ct + tag, tag_len).ok();
        if (refused) {
          ++tally.passed;
        } else {
          tally.fail(id, "invalid ciphertext was accepted");
        }
      } else {
        tally.fail(id, "unknown result '" + result + "'");
      }
    }
  }
  tally.report(file, doc.get_int("numberOfTests"));
}

TEST_CASE("crypto: Wycheproof hmac_sha256_test.json") {
  const std::string file = "hmac_sha256_test.json";
  const Json doc = load_wycheproof(file);
  CHECK(doc.get_string("algorithm") == "HMACSHA256");
  Tally tally;
  for (const Json& group : doc.find("testGroups")->as_array()) {
    const std::int64_t tag_bits = group.get_int("tagSize");
    const Json::Array& tests = group.find("tests")->as_array();
    tally.total += static_cast<std::int64_t>(tests.size());
    if (tag_bits % 8 != 0 || tag_bits <= 0 || tag_bits > 256) {
      tally.skipped += static_cast<std::int64_t>(tests.size());
      if (!tally.skip_reasons.empty()) tally.skip_reasons += "; ";
      tally.skip_reasons += "tag " + std::to_string(tag_bits) + " bits not whole bytes";
      continue;
    }
    const std::size_t tag_len = static_cast<std::size_t>(tag_bits / 8);
    for (const Json& t : tests) {
      const std::int64_t id = t.get_int("tcId");
      const std::string result = t.get_string("result");
      const std::string key = hex_field(t, "key"), msg = hex_field(t, "msg"),
                        tag = hex_field(t, "tag");
      // A truncated tag is compared against the same prefix of the full MAC.
      const bool match = constant_time_equal(hmac_sha256(key, msg).substr(0, tag_len), tag);
      if (result == "acceptable" || (result == "valid" && match) ||
          (result == "invalid" && !match)) {
        ++tally.passed;
      } else {
        tally.fail(id, result + " test " + (match ? "matched" : "did not match"));
      }
    }
  }
  tally.report(file, doc.get_int("numberOfTests"));
}

}  // namespace
}  // namespace civicbus::crypto
