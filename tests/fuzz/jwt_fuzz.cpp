// Fuzz target: the gateway's JWS/JWT parser and verifier (src/gateway/jwt.hpp) and its JWK/JWKS
// loader.
//
// The input is a compact token, optionally followed by a newline and a JWKS. The token is
// parsed and verified against a fixed key set (HS256 and ES256) and, when the JWKS loads,
// against it too. Nothing may crash, and:
//  - a parsed token's three parts re-encode to exactly the input (base64url is canonical, so
//    a token has one spelling), and its signing input is the token up to the second dot;
//  - verification succeeds only for tokens that parse, with the same payload, and never for
//    alg "none" (it does not parse);
//  - no token verifies against the fixed keys unless it was signed with them (the fuzzer
//    cannot forge one, so a success there is a bug);
//  - the payload re-signed with the fixed keys verifies and gives the payload back;
//  - every key of a loaded JWKS survives public_jwk()/private_jwk() → parse with the same
//    algorithm, and the public copy verifies what the key signs.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "civicbus/core/crypto.hpp"
#include "gateway/jwt.hpp"

namespace {

using namespace civicbus;
using namespace civicbus::gateway;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "jwt fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

const JwkSet& fixed_keys() {
  static const JwkSet keys = [] {
    SeededRandom random(1);
    JwkSet set;
    auto hs = Jwk::from_secret("fuzz-secret-fuzz-secret-fuzz-sec", "hs");
    auto ec = Jwk::generate_ec(random, "ec");
    if (!hs.ok() || !ec.ok() || !set.add(*hs).ok() || !set.add(*ec).ok()) fail("fixed keys");
    return set;
  }();
  return keys;
}

void check_parts(std::string_view token, const JwsParts& parts) {
  const std::size_t dot1 = token.find('.');
  const std::size_t dot2 = token.find('.', dot1 + 1);
  if (parts.signing_input != token.substr(0, dot2)) fail("signing input", token);
  if (crypto::base64url_encode(parts.payload) != token.substr(dot1 + 1, dot2 - dot1 - 1) ||
      crypto::base64url_encode(parts.signature) != token.substr(dot2 + 1)) {
    fail("a part does not re-encode to its text", token);
  }
  if (parts.header.get_string("alg") != jws_algorithm_name(parts.algorithm)) fail("alg", token);
}

void check_verify(std::string_view token, const Result<JwsParts>& parsed, const JwkSet& keys,
                  bool forgery_is_bug) {
  auto verified = verify_jws_compact(token, keys);
  if (!verified.ok()) return;
  if (!parsed.ok()) fail("verified a token that does not parse", token);
  if (verified->payload != parsed->payload) fail("verified payload differs", token);
  if (forgery_is_bug) fail("forged a signature for the fixed keys", token);
  civicbus::ManualClock clock;
  JwtVerifierOptions lax;
  lax.require_exp = false;
  auto jwt = JwtVerifier(keys, lax, clock).verify(token);
  if (jwt.ok() && !jwt->claims.is_object()) fail("JWT claims not an object", token);
}

void check_jwks(const JwkSet& set) {
  SeededRandom random(2);
  for (const Jwk& key : set.keys()) {
    auto pub = key.public_jwk();
    if (pub.ok()) {
      auto again = Jwk::parse(*pub);
      if (!again.ok() || again->algorithm() != key.algorithm()) fail("public JWK", pub->dump());
      if (key.can_sign()) {
        auto token = sign_jws_compact("x", key, random);
        auto alone = JwkSet::from_keys({*again});
        if (!token.ok() || !alone.ok() || !verify_jws_compact(*token, *alone).ok()) {
          fail("a loaded key's signature does not verify with its public JWK", pub->dump());
        }
      }
    } else if (key.type() != Jwk::Type::kOct) {
      fail("public_jwk failed", pub.status().to_string());
    }
    if (key.can_sign()) {
      auto again = Jwk::parse(key.private_jwk());
      if (!again.ok() || again->algorithm() != key.algorithm() || !again->can_sign()) {
        fail("private JWK", again.status().to_string());
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = input.find('\n');
  const std::string_view token = input.substr(0, newline);
  const std::string_view jwks_text =
      newline == std::string_view::npos ? std::string_view() : input.substr(newline + 1);

  // Strict base64url: whatever decodes re-encodes to the same text.
  if (auto bytes = jose_base64url_decode(token); bytes.ok()) {
    if (crypto::base64url_encode(*bytes) != token) fail("base64url is not canonical", token);
  }

  const Result<JwsParts> parsed = parse_jws_compact(token);
  if (parsed.ok()) {
    check_parts(token, *parsed);
    // The payload, signed with a fixed key, verifies and comes back.
    SeededRandom random(3);
    for (const Jwk& key : fixed_keys().keys()) {
      auto resigned = sign_jws_compact(parsed->payload, key, random, parsed->header);
      if (!resigned.ok()) fail("sign", resigned.status().to_string());
      auto back = verify_jws_compact(*resigned, fixed_keys());
      if (!back.ok() || back->payload != parsed->payload) fail("re-signed token", *resigned);
    }
  } else if (parsed.status().code() != civicbus::ErrorCode::kUnauthenticated) {
    fail("parse error code", parsed.status().to_string());
  }
  check_verify(token, parsed, fixed_keys(), true);

  if (!jwks_text.empty()) {
    auto set = JwkSet::parse_text(jwks_text);
    if (set.ok()) {
      check_jwks(*set);
      check_verify(token, parsed, *set, false);
    } else if (set.status().code() != civicbus::ErrorCode::kInvalidArgument) {
      fail("JWKS error code", set.status().to_string());
    }
  }
  return 0;
}
