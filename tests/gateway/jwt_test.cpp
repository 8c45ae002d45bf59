#include "gateway/jwt.hpp"

#include <doctest/doctest.h>

#include <string>

#include "civicbus/core/crypto.hpp"

namespace civicbus::gateway {
namespace {

using namespace std::chrono_literals;

constexpr std::int64_t kNow = 1'700'000'000;

JwkSet key_set(std::vector<Jwk> keys) {
  auto set = JwkSet::from_keys(std::move(keys));
  REQUIRE_MESSAGE(set.ok(), set.status().to_string());
  return std::move(set).value();
}

std::string b64u(std::string_view s) {
  return crypto::base64url_encode(s);
}

Jwk ec_key(std::string kid = "ec-1", std::uint64_t seed = 1) {
  SeededRandom random(seed);
  auto key = Jwk::generate_ec(random, std::move(kid));
  REQUIRE_MESSAGE(key.ok(), key.status().to_string());
  return std::move(key).value();
}

Jwk rsa_key(std::string kid = "rsa-1") {
  SeededRandom random(7);
  auto key = Jwk::generate_rsa(random, std::move(kid), 2048);
  REQUIRE_MESSAGE(key.ok(), key.status().to_string());
  return std::move(key).value();
}

Jwk hmac_key(std::string kid = "hs-1") {
  auto key = Jwk::from_secret(std::string(32, 'k'), std::move(kid));
  REQUIRE_MESSAGE(key.ok(), key.status().to_string());
  return std::move(key).value();
}

std::string sign(const Json& claims, const Jwk& key) {
  SeededRandom random(42);
  auto token = sign_jwt(claims, key, random);
  REQUIRE_MESSAGE(token.ok(), token.status().to_string());
  return std::move(token).value();
}

// A token with arbitrary header and signature bytes, for the attacks.
std::string forge(const Json& header, std::string_view payload, std::string_view signature) {
  return b64u(header.dump()) + "." + b64u(payload) + "." + b64u(signature);
}

Json claims_valid_now() {
  return Json::object({{"sub", "alice"},
                       {"iss", "https://auth.example"},
                       {"aud", "gateway"},
                       {"iat", kNow - 10},
                       {"exp", kNow + 300}});
}

JwtVerifierOptions default_options() {
  JwtVerifierOptions o;
  o.issuer = "https://auth.example";
  o.audiences = {"gateway"};
  o.leeway = 30s;
  return o;
}

ManualClock clock_at(std::int64_t seconds) {
  return ManualClock(SystemTime{std::chrono::seconds{seconds}});
}

std::string error_of(const Result<Jwt>& r) {
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::kUnauthenticated);
  return r.status().message();
}

TEST_CASE("jwt: strict base64url") {
  CHECK(*jose_base64url_decode("") == "");
  CHECK(*jose_base64url_decode("Zm9v") == "foo");
  CHECK(*jose_base64url_decode("Zm8") == "fo");
  CHECK(*jose_base64url_decode("-_8") == "\xfb\xff");
  CHECK(jose_base64url_decode("Zm8=").status().message().find("padded") != std::string::npos);
  CHECK_FALSE(jose_base64url_decode("Zm9v+/").ok());  // standard alphabet
  CHECK_FALSE(jose_base64url_decode("Zm 9v").ok());
  CHECK_FALSE(jose_base64url_decode("Z").ok());  // truncated
  CHECK(*jose_base64url_decode("Zm9w") == "fop");
  // Unused bits set: another spelling of "f" / "fo", refused so a token has one encoding.
  CHECK(jose_base64url_decode("Zh").status().message().find("not canonical") != std::string::npos);
  CHECK_FALSE(jose_base64url_decode("Zm9").ok());
  CHECK_FALSE(jose_base64url_decode("Zm-").ok());
}

TEST_CASE("jwt: round trip sign -> verify for ES256, ES384, ES512, RS256 and HS256") {
  std::vector<Jwk> keys{ec_key("es256"), hmac_key("hs256"), rsa_key("rs256")};
  SeededRandom r(3);
  keys.push_back(*Jwk::generate_ec(r, "es384", JwsAlgorithm::kEs384));
  keys.push_back(*Jwk::generate_ec(r, "es512", JwsAlgorithm::kEs512));
  JwkSet set = key_set(keys);
  ManualClock clock = clock_at(kNow);
  JwtVerifier verifier(set, default_options(), clock);
  for (const Jwk& key : keys) {
    CAPTURE(key.kid());
    const std::string token = sign(claims_valid_now(), key);
    auto jwt = verifier.verify(token);
    REQUIRE_MESSAGE(jwt.ok(), jwt.status().to_string());
    CHECK(jwt->claims.get_string("sub") == "alice");
    CHECK(jwt->header.get_string("alg") == jws_algorithm_name(key.algorithm()));
    CHECK(jwt->header.get_string("kid") == key.kid());
    CHECK(jwt->header.get_string("typ") == "JWT");
    auto parts = parse_jws_compact(token);
    REQUIRE(parts.ok());
    if (key.type() == Jwk::Type::kEc) {
      // JOSE raw r||s, not DER.
      const std::size_t coord = key.algorithm() == JwsAlgorithm::kEs256   ? 32
                                : key.algorithm() == JwsAlgorithm::kEs384 ? 48
                                                                          : 66;
      CHECK(parts->signature.size() == 2 * coord);
    }
    // The same key loaded back from its stored private JWK signs tokens the original verifies.
    auto reloaded = Jwk::parse(key.private_jwk());
    REQUIRE_MESSAGE(reloaded.ok(), reloaded.status().to_string());
    CHECK(reloaded->can_sign());
    CHECK(verifier.verify(sign(claims_valid_now(), *reloaded)).ok());
  }
}

TEST_CASE("jwt: alg none is always refused") {
  ManualClock clock = clock_at(kNow);
  JwtVerifier verifier(key_set({hmac_key()}), default_options(), clock);
  const std::string payload = claims_valid_now().dump();
  for (std::string_view none : {"none", "None", "NONE"}) {
    CAPTURE(none);
    for (const Json& header :
         {Json::object({{"alg", none}}), Json::object({{"alg", none}, {"kid", "hs-1"}})}) {
      CHECK_FALSE(verifier.verify(forge(header, payload, "")).ok());
      CHECK_FALSE(verifier.verify(b64u(header.dump()) + "." + b64u(payload) + ".").ok());
    }
  }
  CHECK(
      error_of(verifier.verify(forge(Json::object({{"alg", "none"}}), payload, ""))).find("none") !=
      std::string::npos);
  CHECK(parse_jws_algorithm("none").status().code() == ErrorCode::kUnauthenticated);
}

TEST_CASE("jwt: HS256 signed with the RSA public key as the secret is refused (RS/HS confusion)") {
  const Jwk rsa = rsa_key("rsa-1");
  const Json pub = *rsa.public_jwk();
  const std::string n = *jose_base64url_decode(pub.get_string("n"));
  ManualClock clock = clock_at(kNow);
  JwtVerifier verifier(key_set({rsa}), default_options(), clock);
  const std::string payload = claims_valid_now().dump();
  for (const std::string& secret : {pub.dump(), n, std::string("-----BEGIN PUBLIC KEY-----")}) {
    for (const Json& header :
         {Json::object({{"alg", "HS256"}, {"kid", "rsa-1"}}), Json::object({{"alg", "HS256"}})}) {
      const std::string input = b64u(header.dump()) + "." + b64u(payload);
      const std::string token = input + "." + b64u(crypto::hmac_sha256(secret, input));
      const std::string why = error_of(verifier.verify(token));
      CAPTURE(why);
      CHECK((why.find("pinned to RS256") != std::string::npos ||
             why.find("no key is pinned to HS256") != std::string::npos));
    }
  }
  // A key set refuses an HMAC secret made of a public key.
  for (const std::string& secret :
       {pub.dump(), n, std::string("-----BEGIN PUBLIC KEY-----\nMIIB..."),
        "prefix" + pub.get_string("n")}) {
    JwkSet set = key_set({rsa});
    Status added = set.add(*Jwk::from_secret(secret, "hs"));
    CHECK(added.code() == ErrorCode::kInvalidArgument);
    CHECK(added.message().find("public key material") != std::string::npos);
    JwkSet reversed = key_set({*Jwk::from_secret(secret, "hs")});
    CHECK_FALSE(reversed.add(rsa).ok());
  }
  // A JWK that says RS256 cannot be loaded as an HMAC key either.
  CHECK_FALSE(Jwk::parse(Json::object({{"kty", "oct"}, {"alg", "RS256"}, {"k", b64u(n)}})).ok());
  CHECK_FALSE(Jwk::parse(Json::object({{"kty", "RSA"},
                                       {"alg", "HS256"},
                                       {"n", pub.get_string("n")},
                                       {"e", pub.get_string("e")}}))
                  .ok());
}

TEST_CASE("jwt: exp, nbf and iat with leeway") {
  const Jwk key = hmac_key();
  ManualClock clock = clock_at(kNow);
  JwtVerifier verifier(key_set({key}), default_options(), clock);  // leeway 30 s

  Json c = claims_valid_now();
  c.set("exp", kNow - 20);  // expired 20 s ago: within leeway
  CHECK(verifier.verify(sign(c, key)).ok());
  c.set("exp", kNow - 30);  // exactly at the leeway: expired
  CHECK(error_of(verifier.verify(sign(c, key))).find("expired") != std::string::npos);
  clock.advance(std::chrono::hours(1));
  c.set("exp", kNow + 300);
  CHECK(error_of(verifier.verify(sign(c, key))).find("token expired at 2023-11-14T22:18:20") !=
        std::string::npos);
  clock.set(SystemTime{std::chrono::seconds{kNow}});

  c = claims_valid_now();
  c.set("nbf", kNow + 20);
  CHECK(verifier.verify(sign(c, key)).ok());
  c.set("nbf", kNow + 31);
  CHECK(error_of(verifier.verify(sign(c, key))).find("not yet valid") != std::string::npos);

  c = claims_valid_now();
  c.set("iat", kNow + 120);
  CHECK(error_of(verifier.verify(sign(c, key))).find("issued in the future") != std::string::npos);

  c = claims_valid_now();
  c.erase("exp");
  CHECK(error_of(verifier.verify(sign(c, key))).find("no 'exp'") != std::string::npos);
  JwtVerifierOptions lax = default_options();
  lax.require_exp = false;
  CHECK(JwtVerifier(key_set({key}), lax, clock).verify(sign(c, key)).ok());

  c = claims_valid_now();
  c.set("exp", "tomorrow");
  CHECK(error_of(verifier.verify(sign(c, key))).find("NumericDate") != std::string::npos);
  c.set("exp", static_cast<double>(kNow) + 0.5);
  CHECK(verifier.verify(sign(c, key)).ok());
}

TEST_CASE("jwt: iss and aud") {
  const Jwk key = hmac_key();
  ManualClock clock = clock_at(kNow);
  JwtVerifier verifier(key_set({key}), default_options(), clock);
  Json c = claims_valid_now();
  c.set("iss", "https://evil.example");
  CHECK(error_of(verifier.verify(sign(c, key))).find("wrong issuer") != std::string::npos);
  c.erase("iss");
  CHECK(error_of(verifier.verify(sign(c, key))).find("no 'iss'") != std::string::npos);

  c = claims_valid_now();
  c.set("aud", "billing");
  CHECK(error_of(verifier.verify(sign(c, key))).find("wrong audience") != std::string::npos);
  c.set("aud", Json::array({"billing", "gateway"}));
  CHECK(verifier.verify(sign(c, key)).ok());
  c.set("aud", Json::array({"billing", "other"}));
  CHECK(error_of(verifier.verify(sign(c, key))).find("wrong audience") != std::string::npos);
  c.set("aud", Json::array({"gateway", 5}));
  CHECK_FALSE(verifier.verify(sign(c, key)).ok());
  c.set("aud", 5);
  CHECK_FALSE(verifier.verify(sign(c, key)).ok());
  c.erase("aud");
  CHECK(error_of(verifier.verify(sign(c, key))).find("no 'aud'") != std::string::npos);

  JwtVerifierOptions any;  // nothing configured: iss/aud not checked
  CHECK(JwtVerifier(key_set({key}), any, clock).verify(sign(c, key)).ok());
}

TEST_CASE("jwt: wrong kid, tampered payload, tampered signature, wrong signature length") {
  const Jwk key = ec_key("ec-1");
  const Jwk other = ec_key("ec-2", 99);
  ManualClock clock = clock_at(kNow);
  JwtVerifier verifier(key_set({key}), default_options(), clock);
  const std::string token = sign(claims_valid_now(), key);
  REQUIRE(verifier.verify(token).ok());

  CHECK(error_of(verifier.verify(sign(claims_valid_now(), other))).find("no key with kid 'ec-2'") !=
        std::string::npos);

  auto parts = *parse_jws_compact(token);
  const std::string sig = parts.signature;
  Json evil = claims_valid_now();
  evil.set("sub", "admin");
  const std::string tampered =
      b64u(parts.header.dump()) + "." + b64u(evil.dump()) + "." + b64u(sig);
  CHECK(error_of(verifier.verify(tampered)).find("does not verify") != std::string::npos);

  std::string flipped = sig;
  flipped[10] = static_cast<char>(flipped[10] ^ 1);
  CHECK_FALSE(verifier.verify(parts.signing_input + "." + b64u(flipped)).ok());
  // A DER-looking signature or a truncated one is refused by its length.
  CHECK(error_of(verifier.verify(parts.signing_input + "." + b64u(sig + "\x01")))
            .find("must be 64 bytes") != std::string::npos);
  CHECK_FALSE(verifier.verify(parts.signing_input + "." + b64u(sig.substr(0, 63))).ok());
  // r = 0, s = 0.
  CHECK_FALSE(verifier.verify(parts.signing_input + "." + b64u(std::string(64, '\0'))).ok());
  // Structure.
  CHECK_FALSE(verifier.verify(parts.signing_input).ok());
  CHECK_FALSE(verifier.verify(token + ".x").ok());
  CHECK_FALSE(verifier.verify("").ok());
  CHECK_FALSE(verifier.verify("..").ok());
}

TEST_CASE("jwt: padding and foreign characters in base64url are refused") {
  const Jwk key = hmac_key();
  ManualClock clock = clock_at(kNow);
  JwtVerifier verifier(key_set({key}), default_options(), clock);
  // A header whose encoding needs padding.
  SeededRandom random(1);
  Json c = claims_valid_now();
  auto token = *sign_jwt(c, key, random);
  REQUIRE(verifier.verify(token).ok());
  const std::size_t dot1 = token.find('.');
  const std::size_t dot2 = token.find('.', dot1 + 1);
  CHECK(error_of(verifier.verify(token + "=")).find("padded") != std::string::npos);
  CHECK(
      error_of(verifier.verify(token.substr(0, dot2) + "=" + token.substr(dot2))).find("padded") !=
      std::string::npos);
  std::string std_alphabet = token;
  for (char& ch : std_alphabet) {
    if (ch == '-') ch = '+';
    if (ch == '_') ch = '/';
  }
  if (std_alphabet != token) CHECK_FALSE(verifier.verify(std_alphabet).ok());
  CHECK_FALSE(verifier.verify(token.substr(0, dot1) + " " + token.substr(dot1)).ok());
}

TEST_CASE("jwt: crit headers and malformed headers are refused") {
  const Jwk key = hmac_key();
  SeededRandom random(1);
  JwkSet set = key_set({key});
  auto make = [&](const Json& header) {
    const std::string input = b64u(header.dump()) + "." + b64u("{}");
    return input + "." + b64u(crypto::hmac_sha256(std::string(32, 'k'), input));
  };
  CHECK(verify_jws_compact(make(Json::object({{"alg", "HS256"}, {"kid", "hs-1"}})), set).ok());
  auto crit = verify_jws_compact(
      make(Json::object(
          {{"alg", "HS256"}, {"kid", "hs-1"}, {"b64", false}, {"crit", Json::array({"b64"})}})),
      set);
  REQUIRE_FALSE(crit.ok());
  CHECK(crit.status().message().find("crit") != std::string::npos);
  CHECK_FALSE(
      verify_jws_compact(make(Json::object({{"alg", "HS256"}, {"crit", Json::array()}})), set)
          .ok());
  CHECK_FALSE(verify_jws_compact(make(Json::object({{"kid", "hs-1"}})), set).ok());
  CHECK_FALSE(verify_jws_compact(make(Json::object({{"alg", 1}})), set).ok());
  CHECK_FALSE(verify_jws_compact(make(Json::object({{"alg", "HS256"}, {"kid", 3}})), set).ok());
  CHECK_FALSE(verify_jws_compact(make(Json::array({"HS256"})), set).ok());
  CHECK_FALSE(verify_jws_compact(make(Json::object({{"alg", "PS256"}})), set).ok());
  // Without a kid, the keys pinned to the header's algorithm are tried.
  CHECK(verify_jws_compact(make(Json::object({{"alg", "HS256"}})), set).ok());
  // Keys embedded in the token are never used.
  const Jwk attacker = ec_key("attacker", 5);
  auto embedded =
      sign_jws_compact("{}", attacker, random, Json::object({{"jwk", *attacker.public_jwk()}}));
  CHECK_FALSE(verify_jws_compact(*embedded, set).ok());
  // A JWT payload must be an object.
  ManualClock clock = clock_at(kNow);
  CHECK_FALSE(JwtVerifier(set, {}, clock).verify(*sign_jws_compact("[1]", key, random)).ok());
}

TEST_CASE("jwt: JWKS with several keys") {
  const Jwk ec = ec_key("ec-1");
  const Jwk ec2 = ec_key("ec-2", 2);
  const Jwk hs = hmac_key("hs-1");
  Json jwks = Json::object(
      {{"keys", Json::array({*ec.public_jwk(), *ec2.public_jwk(), hs.private_jwk()})}});
  auto set = JwkSet::parse_text(jwks.dump());
  REQUIRE_MESSAGE(set.ok(), set.status().to_string());
  CHECK(set->keys().size() == 3);
  REQUIRE(set->find("ec-2") != nullptr);
  CHECK(set->find("ec-2")->algorithm() == JwsAlgorithm::kEs256);
  CHECK_FALSE(set->find("ec-2")->can_sign());
  CHECK(set->find("nope") == nullptr);

  ManualClock clock = clock_at(kNow);
  JwtVerifier verifier(*set, default_options(), clock);
  CHECK(verifier.verify(sign(claims_valid_now(), ec)).ok());
  CHECK(verifier.verify(sign(claims_valid_now(), ec2)).ok());
  CHECK(verifier.verify(sign(claims_valid_now(), hs)).ok());
  // A public-only key cannot sign.
  SeededRandom random(1);
  CHECK(sign_jwt(claims_valid_now(), *set->find("ec-1"), random).status().code() ==
        ErrorCode::kFailedPrecondition);

  // The public JWKS of a signing set: asymmetric keys only, no private members.
  const Json pub = key_set({ec, hs, ec2}).public_jwks();
  REQUIRE(pub.find("keys") != nullptr);
  CHECK(pub.find("keys")->size() == 2);
  for (const Json& k : pub.find("keys")->as_array()) {
    CHECK_FALSE(k.contains("d"));
    CHECK(k.get_string("use") == "sig");
    CHECK(k.get_string("alg") == "ES256");
  }

  // Errors name the key and the field.
  Json bad = jwks;
  bad["keys"].as_array()[1].set("x", "AAAA");
  CHECK(JwkSet::parse(bad).status().message() ==
        "JWKS key 1 (kid 'ec-2'): field 'x' must be 32 bytes for P-256, not 3");
  Json no_kid =
      Json::object({{"keys", Json::array({Json::object({{"kty", "RSA"}, {"e", "AQAB"}})})}});
  CHECK(JwkSet::parse(no_kid).status().message() == "JWKS key 0: field 'n' is missing");
  Json dup = Json::object({{"keys", Json::array({*ec.public_jwk(), *ec.public_jwk()})}});
  CHECK(JwkSet::parse(dup).status().message().find("kid 'ec-1' is used by two keys") !=
        std::string::npos);
  CHECK_FALSE(JwkSet::parse(Json::object()).ok());
  CHECK_FALSE(JwkSet::parse_text("{").ok());
}

TEST_CASE("jwt: JWK field errors") {
  const Json ec = ec_key("ec-1").private_jwk();
  auto err = [](Json j) { return Jwk::parse(j).status().message(); };
  Json j = ec;
  j.set("crv", "P-192");
  CHECK(err(j).find("key 'ec-1': field 'crv'") != std::string::npos);
  j = ec;
  j.set("alg", "ES512");
  CHECK(err(j).find("field 'alg': ES512 does not fit curve P-256") != std::string::npos);
  j = ec;
  j.set("y", ec.get_string("x"));
  CHECK(err(j).find("not a point on P-256") != std::string::npos);
  j = ec;
  j.set("d", ec_key("ec-x", 77).private_jwk().get_string("d"));
  CHECK(err(j).find("'d' does not match the public key") != std::string::npos);
  j = ec;
  j.set("x", "AA==");
  CHECK(err(j).find("field 'x': base64url must not be padded") != std::string::npos);
  j = ec;
  j.set("kty", "OKP");
  CHECK(err(j).find("field 'kty'") != std::string::npos);
  j = ec;
  j.erase("kty");
  CHECK(err(j).find("field 'kty' is missing") != std::string::npos);
  j = ec;
  j.set("kid", 5);
  CHECK(err(j).find("field 'kid' must be a string") != std::string::npos);
  CHECK(Jwk::from_secret("short", "s").status().message().find("at least 32 bytes") !=
        std::string::npos);
  CHECK(
      Jwk::parse(Json::object({{"kty", "oct"}, {"k", b64u(std::string(32, 'x'))}, {"alg", "none"}}))
          .status()
          .message()
          .find("field 'alg'") != std::string::npos);
  CHECK_FALSE(Jwk::parse(Json::array()).ok());
  CHECK(hmac_key().public_jwk().status().code() == ErrorCode::kFailedPrecondition);
}

}  // namespace
}  // namespace civicbus::gateway
