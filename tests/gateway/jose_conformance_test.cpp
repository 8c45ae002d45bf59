// Runs the JOSE cookbook (RFC 7520 §4) JWS examples and Wycheproof's ECDSA P-256 (IEEE P1363
// signatures, i.e. JOSE's r||s), RSA PKCS#1 v1.5 SHA-256 and HMAC-SHA256 vectors through the
// gateway's JWK loading and signature verification (Jwk::parse, Jwk::verify: the code that
// verify_jws_compact runs for every token). The vectors are read from CIVICBUS_SHARED_DIR and
// never edited.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "civicbus/core/crypto.hpp"
#include "civicbus/core/json.hpp"
#include "gateway/jwt.hpp"
#include "support/test_support.hpp"

namespace civicbus::gateway {
namespace {

namespace fs = std::filesystem;

const fs::path kConformance = fs::path(CIVICBUS_SHARED_DIR) / "conformance";
const fs::path kCookbook = kConformance / "jose-cookbook";
const fs::path kWycheproof = kConformance / "wycheproof" / "testvectors_v1";

JwkSet key_set(std::vector<Jwk> keys) {
  auto set = JwkSet::from_keys(std::move(keys));
  REQUIRE_MESSAGE(set.ok(), set.status().to_string());
  return std::move(set).value();
}

Json load(const fs::path& path) {
  REQUIRE_MESSAGE(fs::exists(path), "missing ", path.string());
  auto json = Json::parse(testing::read_file(path.string()));
  REQUIRE_MESSAGE(json.ok(), path.string(), ": ", json.status().to_string());
  return std::move(json).value();
}

Jwk load_key(const fs::path& path) {
  auto key = Jwk::parse(load(path));
  REQUIRE_MESSAGE(key.ok(), path.string(), ": ", key.status().to_string());
  return std::move(key).value();
}

void report(const std::string& line) {
  MESSAGE(line);
  std::printf("%s\n", line.c_str());
}

// ---- JOSE cookbook ----

// Verifies the example's compact output with the cookbook's public key, checks the payload,
// and refuses a tampered copy. With a private key and a reproducible algorithm, signing the
// same input must give the very same token.
void run_cookbook_example(const std::string& file, const Jwk& public_key, const Jwk* private_key,
                          int& passed, int& total) {
  const Json example = load(kCookbook / "jws" / file);
  const std::string compact = example.at_pointer("/output/compact")->as_string();
  const std::string payload = example.at_pointer("/input/payload")->as_string();
  CAPTURE(file);
  ++total;
  auto parts = verify_jws_compact(compact, key_set({public_key}));
  CHECK_MESSAGE(parts.ok(), file, ": ", parts.status().to_string());
  if (!parts.ok()) return;
  CHECK(parts->payload == payload);
  const std::size_t dot = compact.rfind('.');
  std::string tampered = compact;
  tampered[dot - 2] = tampered[dot - 2] == 'A' ? 'B' : 'A';
  CHECK_FALSE(verify_jws_compact(tampered, key_set({public_key})).ok());
  if (private_key != nullptr) {
    SeededRandom random(1);
    auto signed_token = sign_jws_compact(payload, *private_key, random);
    REQUIRE(signed_token.ok());
    CHECK(verify_jws_compact(*signed_token, key_set({public_key})).ok());
    if (example.get_bool("reproducible")) CHECK(*signed_token == compact);
  }
  ++passed;
}

TEST_CASE("jose-cookbook: JWKs (RFC 7520 §3)") {
  const Jwk ec_pub = load_key(kCookbook / "jwk" / "3_1.ec_public_key.json");
  CHECK(ec_pub.algorithm() == JwsAlgorithm::kEs512);
  CHECK_FALSE(ec_pub.can_sign());
  const Jwk ec_priv = load_key(kCookbook / "jwk" / "3_2.ec_private_key.json");
  CHECK(ec_priv.can_sign());
  CHECK(*ec_priv.public_jwk() == *ec_pub.public_jwk());
  const Jwk rsa_pub = load_key(kCookbook / "jwk" / "3_3.rsa_public_key.json");
  const Jwk rsa_priv = load_key(kCookbook / "jwk" / "3_4.rsa_private_key.json");
  CHECK(rsa_priv.can_sign());
  CHECK(*rsa_priv.public_jwk() == *rsa_pub.public_jwk());
  // The cookbook's private JWK round-trips through ours (same members, same values).
  const Json original = load(kCookbook / "jwk" / "3_4.rsa_private_key.json");
  Json ours = rsa_priv.private_jwk();
  for (const char* member : {"n", "e", "d", "p", "q", "dp", "dq", "qi"}) {
    CAPTURE(member);
    CHECK(ours.get_string(member) == original.get_string(member));
  }
  const Jwk hmac = load_key(kCookbook / "jwk" / "3_5.symmetric_key_mac_computation.json");
  CHECK(hmac.algorithm() == JwsAlgorithm::kHs256);
  // 3.6 is an A256GCM encryption key: not a JWS key, refused with the reason.
  auto enc = Jwk::parse(load(kCookbook / "jwk" / "3_6.symmetric_key_encryption.json"));
  REQUIRE_FALSE(enc.ok());
  CHECK(enc.status().message().find("field 'alg'") != std::string::npos);
}

TEST_CASE(
    "jose-cookbook: JWS examples (RFC 7520 §4.1, 4.3, 4.4 verify and sign, 4.2 RSA-PSS refused)") {
  const Jwk ec_pub = load_key(kCookbook / "jwk" / "3_1.ec_public_key.json");
  const Jwk ec_priv = load_key(kCookbook / "jwk" / "3_2.ec_private_key.json");
  const Jwk rsa_pub = load_key(kCookbook / "jwk" / "3_3.rsa_public_key.json");
  const Jwk rsa_priv = load_key(kCookbook / "jwk" / "3_4.rsa_private_key.json");
  const Jwk hmac = load_key(kCookbook / "jwk" / "3_5.symmetric_key_mac_computation.json");
  int passed = 0;
  int total = 0;
  run_cookbook_example("4_1.rsa_v15_signature.json", rsa_pub, &rsa_priv, passed, total);
  run_cookbook_example("4_3.ecdsa_signature.json", ec_pub, &ec_priv, passed, total);
  run_cookbook_example("4_4.hmac-sha2_integrity_protection.json", hmac, &hmac, passed, total);

  // 4.2 is PS384 (RSA-PSS), which civicbus does not implement: it must be refused, by name.
  const Json pss = load(kCookbook / "jws" / "4_2.rsa-pss_signature.json");
  auto refused =
      verify_jws_compact(pss.at_pointer("/output/compact")->as_string(), key_set({rsa_pub}));
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().message().find("'PS384' is not supported") != std::string::npos);

  report(
      fmt::format("jose-cookbook jws: {}/{} passed (4_1 RS256, 4_3 ES512, 4_4 HS256); "
                  "4_2 PS384 unsupported (refused)",
                  passed, total));
  CHECK(passed == total);
  CHECK(total == 3);
}

// ---- Wycheproof ----

struct Tally {
  int valid_total = 0, valid_passed = 0;
  int invalid_total = 0, invalid_passed = 0;
  int acceptable = 0, acceptable_accepted = 0;
  int not_applicable = 0, not_applicable_refused = 0;
  std::vector<std::string> failures;

  void record(const Json& test, bool verified, std::string_view where) {
    const std::string result = test.get_string("result");
    if (result == "acceptable") {
      ++acceptable;
      acceptable_accepted += verified ? 1 : 0;
      return;
    }
    const bool expected = result == "valid";
    (expected ? valid_total : invalid_total)++;
    if (verified == expected) {
      (expected ? valid_passed : invalid_passed)++;
    } else {
      failures.push_back(fmt::format("{} tcId {} ({}): expected {}, got {}", where,
                                     test.get_int("tcId"), test.get_string("comment"), result,
                                     verified ? "valid" : "invalid"));
    }
  }

  void print(std::string_view file) const {
    std::string line = fmt::format(
        "wycheproof {}: {}/{} passed (valid {}/{}, invalid {}/{}); acceptable {} ({} accepted)",
        file, valid_passed + invalid_passed, valid_total + invalid_total, valid_passed, valid_total,
        invalid_passed, invalid_total, acceptable, acceptable_accepted);
    if (not_applicable > 0) {
      line += fmt::format("; outside JWS HS256 rules {} ({} refused)", not_applicable,
                          not_applicable_refused);
    }
    report(line);
    for (const std::string& f : failures) std::printf("  not passing: %s\n", f.c_str());
  }
};

std::string hex(std::string_view text) {
  auto bytes = crypto::from_hex(text);
  REQUIRE_MESSAGE(bytes.ok(), bytes.status().to_string());
  return std::move(bytes).value();
}

// A big-endian integer from Wycheproof's hex (which may carry a sign byte) as exactly `size`
// bytes, the JWK encoding of an EC coordinate.
std::string fixed_size(std::string bytes, std::size_t size) {
  while (bytes.size() > size && bytes.front() == '\0') bytes.erase(0, 1);
  if (bytes.size() < size) bytes.insert(0, size - bytes.size(), '\0');
  return bytes;
}

// Runs every test of every group with the group's key; a key our loader refuses verifies
// nothing (fail closed), which the tally then compares with the expectations.
template <typename KeyOf>
Tally run_signature_file(const std::string& file, KeyOf key_of) {
  const Json doc = load(kWycheproof / file);
  Tally tally;
  int group_index = 0;
  for (const Json& group : doc.find("testGroups")->as_array()) {
    const std::string where = fmt::format("group {}", group_index++);
    const Result<Jwk> key = key_of(group);
    if (!key.ok())
      std::printf("  %s: key refused: %s\n", where.c_str(), key.status().to_string().c_str());
    for (const Json& test : group.find("tests")->as_array()) {
      const std::string msg = hex(test.get_string("msg"));
      const std::string sig = hex(test.get_string("sig"));
      const bool verified = key.ok() && key->verify(msg, sig).ok();
      tally.record(test, verified, where);
    }
  }
  return tally;
}

TEST_CASE("wycheproof: ecdsa_secp256r1_sha256_p1363 (ES256 raw r||s signatures)") {
  const std::string file = "ecdsa_secp256r1_sha256_p1363_test.json";
  Tally tally = run_signature_file(file, [](const Json& group) -> Result<Jwk> {
    if (const Json* jwk = group.find("publicKeyJwk"); jwk != nullptr) return Jwk::parse(*jwk);
    // Some groups carry only the hex coordinates; give them the same JWK form.
    const Json* pub = group.find("publicKey");
    return Jwk::parse(Json::object(
        {{"kty", "EC"},
         {"crv", "P-256"},
         {"x", crypto::base64url_encode(fixed_size(hex(pub->get_string("wx")), 32))},
         {"y", crypto::base64url_encode(fixed_size(hex(pub->get_string("wy")), 32))}}));
  });
  tally.print(file);
  CHECK(tally.valid_total + tally.invalid_total + tally.acceptable == 262);
  CHECK(tally.failures.empty());
}

TEST_CASE("wycheproof: rsa_signature_2048_sha256 (RS256, PKCS#1 v1.5)") {
  const std::string file = "rsa_signature_2048_sha256_test.json";
  Tally tally = run_signature_file(file, [](const Json& group) -> Result<Jwk> {
    if (const Json* jwk = group.find("keyJwk"); jwk != nullptr) return Jwk::parse(*jwk);
    const Json* pub = group.find("publicKey");
    return Jwk::parse(
        Json::object({{"kty", "RSA"},
                      {"n", crypto::base64url_encode(hex(pub->get_string("modulus")))},
                      {"e", crypto::base64url_encode(hex(pub->get_string("publicExponent")))}}));
  });
  tally.print(file);
  CHECK(tally.valid_total + tally.invalid_total + tally.acceptable == 259);
  CHECK(tally.failures.empty());
}

TEST_CASE("wycheproof: hmac_sha256 (HS256)") {
  const std::string file = "hmac_sha256_test.json";
  const Json doc = load(kWycheproof / file);
  Tally tally;
  int group_index = 0;
  for (const Json& group : doc.find("testGroups")->as_array()) {
    const std::string where = fmt::format("group {} (key {} bits, tag {} bits)", group_index++,
                                          group.get_int("keySize"), group.get_int("tagSize"));
    // JWS HS256 needs a key of at least 256 bits (RFC 7518 §3.2) and the full 256-bit tag;
    // groups outside that still run, and every one of their tests must be refused.
    const bool applicable = group.get_int("keySize") >= 256 && group.get_int("tagSize") == 256;
    for (const Json& test : group.find("tests")->as_array()) {
      const Result<Jwk> key = Jwk::from_secret(hex(test.get_string("key")), "");
      const std::string msg = hex(test.get_string("msg"));
      const std::string tag = hex(test.get_string("tag"));
      const bool verified = key.ok() && key->verify(msg, tag).ok();
      if (applicable) {
        tally.record(test, verified, where);
      } else {
        ++tally.not_applicable;
        tally.not_applicable_refused += verified ? 0 : 1;
      }
    }
  }
  tally.print(file);
  CHECK(tally.valid_total + tally.invalid_total + tally.acceptable + tally.not_applicable == 174);
  CHECK(tally.failures.empty());
  CHECK(tally.not_applicable_refused == tally.not_applicable);
}

}  // namespace
}  // namespace civicbus::gateway
