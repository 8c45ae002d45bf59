#include "gateway/jwt.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/md.h>
#include <mbedtls/rsa.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <mutex>

#include "civicbus/core/crypto.hpp"
#include "core/mbedtls_compat.hpp"

namespace civicbus::gateway {
namespace {

// The mbedTLS 2.x / 3.x differences live in core/mbedtls_compat.hpp. The ECP, ECDSA, bignum
// and md calls used below have the same signatures in 2.28 and 3.6.
using mbedtls_compat::rsa_init_pkcs1_v15;
using mbedtls_compat::rsa_sign_pkcs1_v15;
using mbedtls_compat::rsa_verify_pkcs1_v15;

constexpr std::size_t kMaxTokenSize = 64 * 1024;
constexpr std::size_t kMinRsaBits = 2048;  // RFC 7518 §3.3
constexpr std::size_t kMaxRsaBits = 8192;
constexpr std::size_t kMinHmacKeySize = 32;  // RFC 7518 §3.2: at least the hash size

struct AlgInfo {
  JwsAlgorithm alg;
  std::string_view name;
  Jwk::Type type;
  mbedtls_md_type_t md;
  mbedtls_ecp_group_id group;  // EC only
  std::string_view crv;        // EC only
  std::size_t coord_size;      // EC only: bytes of x, y, d, r and s
};

constexpr std::array<AlgInfo, 5> kAlgorithms{{
    {JwsAlgorithm::kEs256, "ES256", Jwk::Type::kEc, MBEDTLS_MD_SHA256, MBEDTLS_ECP_DP_SECP256R1,
     "P-256", 32},
    {JwsAlgorithm::kEs384, "ES384", Jwk::Type::kEc, MBEDTLS_MD_SHA384, MBEDTLS_ECP_DP_SECP384R1,
     "P-384", 48},
    {JwsAlgorithm::kEs512, "ES512", Jwk::Type::kEc, MBEDTLS_MD_SHA512, MBEDTLS_ECP_DP_SECP521R1,
     "P-521", 66},
    {JwsAlgorithm::kRs256, "RS256", Jwk::Type::kRsa, MBEDTLS_MD_SHA256, MBEDTLS_ECP_DP_NONE, "", 0},
    {JwsAlgorithm::kHs256, "HS256", Jwk::Type::kOct, MBEDTLS_MD_SHA256, MBEDTLS_ECP_DP_NONE, "", 0},
}};

const AlgInfo& info_of(JwsAlgorithm alg) {
  for (const AlgInfo& i : kAlgorithms) {
    if (i.alg == alg) return i;
  }
  return kAlgorithms[0];  // unreachable: every enumerator is in the table
}

const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
unsigned char* bytes_of(std::string& s) {
  return reinterpret_cast<unsigned char*>(s.data());
}

int random_callback(void* state, unsigned char* out, std::size_t n) {
  static_cast<RandomSource*>(state)->fill(out, n);
  return 0;
}

std::string mbedtls_error(int rc) {
  return fmt::format("mbedTLS error -0x{:04x}", -rc);
}

Result<std::string> digest(mbedtls_md_type_t md, std::string_view data) {
  const mbedtls_md_info_t* info = mbedtls_md_info_from_type(md);
  if (info == nullptr) return internal_error("hash algorithm not available in mbedTLS");
  std::string out(mbedtls_md_get_size(info), '\0');
  int rc = mbedtls_md(info, bytes_of(data), data.size(), bytes_of(out));
  if (rc != 0) return internal_error("hashing failed: " + mbedtls_error(rc));
  return out;
}

// RAII for an mbedtls_mpi.
struct Mpi {
  Mpi() { mbedtls_mpi_init(&v); }
  ~Mpi() { mbedtls_mpi_free(&v); }
  Mpi(const Mpi&) = delete;
  Mpi& operator=(const Mpi&) = delete;
  mbedtls_mpi v;
};

std::string mpi_bytes(const mbedtls_mpi& m, std::size_t size = 0) {
  if (size == 0) size = mbedtls_mpi_size(&m);
  std::string out(size, '\0');
  if (mbedtls_mpi_write_binary(&m, bytes_of(out), out.size()) != 0) return {};
  return out;
}

std::string strip_leading_zeros(std::string s) {
  std::size_t i = 0;
  while (i + 1 < s.size() && s[i] == '\0') ++i;
  return s.substr(i);
}

std::string b64u(std::string_view bytes) {
  return crypto::base64url_encode(bytes);
}

constexpr std::string_view kDefaultLabel = "JWK key";

// How errors name a loaded key.
std::string key_name(std::string_view kid) {
  return kid.empty() ? std::string("the key without kid") : fmt::format("key '{}'", kid);
}

}  // namespace

std::string_view jws_algorithm_name(JwsAlgorithm alg) {
  return info_of(alg).name;
}

Result<JwsAlgorithm> parse_jws_algorithm(std::string_view name) {
  for (const AlgInfo& i : kAlgorithms) {
    if (i.name == name) return i.alg;
  }
  if (name == "none") {
    return unauthenticated("alg 'none' is refused: unsigned tokens are never accepted");
  }
  return unauthenticated(fmt::format(
      "alg '{}' is not supported (supported: ES256, ES384, ES512, RS256, HS256)", name));
}

Result<std::string> jose_base64url_decode(std::string_view text) {
  static constexpr auto kTable = [] {
    std::array<std::int8_t, 256> t{};
    t.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int i = 0; i < 64; ++i)
      t[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
    return t;
  }();
  if (text.size() % 4 == 1) {
    return invalid_argument(
        fmt::format("base64url text of {} characters is truncated", text.size()));
  }
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const std::int8_t v = kTable[static_cast<unsigned char>(text[i])];
    if (v < 0) {
      if (text[i] == '=') return invalid_argument("base64url must not be padded with '='");
      return invalid_argument(fmt::format("invalid base64url character 0x{:02x} at {}",
                                          static_cast<unsigned char>(text[i]), i));
    }
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    return invalid_argument("base64url text is not canonical (unused bits are set)");
  }
  return out;
}

// ---- Jwk ----

struct Jwk::Impl {
  Impl() {
    mbedtls_ecp_group_init(&group);
    mbedtls_ecp_point_init(&q);
    mbedtls_mpi_init(&d);
    rsa_init_pkcs1_v15(&rsa);
  }
  ~Impl() {
    mbedtls_ecp_group_free(&group);
    mbedtls_ecp_point_free(&q);
    mbedtls_mpi_free(&d);
    mbedtls_rsa_free(&rsa);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  Type type = Type::kOct;
  std::string kid;
  std::string use;
  JwsAlgorithm alg = JwsAlgorithm::kHs256;
  bool has_private = false;
  std::string secret;  // oct

  // mbedTLS writes into these even for public operations (cached precomputations, RSA
  // blinding), so they are mutable and every operation holds `mu`.
  mutable std::mutex mu;
  mutable mbedtls_ecp_group group;
  mutable mbedtls_ecp_point q;
  mutable mbedtls_mpi d;
  mutable mbedtls_rsa_context rsa;
};

namespace {

// Reads a member that must be a string, if present.
Result<std::optional<std::string>> string_member(const Json& jwk, std::string_view field,
                                                 std::string_view who) {
  const Json* v = jwk.find(field);
  if (v == nullptr) return std::optional<std::string>();
  if (!v->is_string()) {
    return invalid_argument(fmt::format("{}: field '{}' must be a string", who, field));
  }
  return std::optional<std::string>(v->as_string());
}

// Reads and decodes a base64url member; absent gives nullopt.
Result<std::optional<std::string>> bytes_member(const Json& jwk, std::string_view field,
                                                std::string_view who) {
  CIVICBUS_ASSIGN_OR_RETURN(auto text, string_member(jwk, field, who));
  if (!text) return std::optional<std::string>();
  auto bytes = jose_base64url_decode(*text);
  if (!bytes.ok()) {
    return invalid_argument(
        fmt::format("{}: field '{}': {}", who, field, bytes.status().message()));
  }
  if (bytes->empty()) return invalid_argument(fmt::format("{}: field '{}' is empty", who, field));
  return std::optional<std::string>(std::move(bytes).value());
}

Result<std::string> required_bytes(const Json& jwk, std::string_view field, std::string_view who) {
  CIVICBUS_ASSIGN_OR_RETURN(auto bytes, bytes_member(jwk, field, who));
  if (!bytes) return invalid_argument(fmt::format("{}: field '{}' is missing", who, field));
  return std::move(*bytes);
}

Status check_ec_private(Jwk::Impl& k, std::string_view who) {
  int rc = mbedtls_ecp_check_privkey(&k.group, &k.d);
  if (rc != 0)
    return invalid_argument(fmt::format("{}: field 'd' is not a valid private key", who));
  // d·G must be the public point; blinding randomness for the multiplication.
  SecureRandom random;
  mbedtls_ecp_point p;
  mbedtls_ecp_point_init(&p);
  rc = mbedtls_ecp_mul(&k.group, &p, &k.d, &k.group.G, random_callback, &random);
  const bool match = rc == 0 && mbedtls_ecp_point_cmp(&p, &k.q) == 0;
  mbedtls_ecp_point_free(&p);
  if (!match) {
    return invalid_argument(fmt::format("{}: field 'd' does not match the public key (x, y)", who));
  }
  return {};
}

Status load_ec(Jwk::Impl& k, const Json& jwk, std::string_view who,
               std::optional<JwsAlgorithm> alg) {
  CIVICBUS_ASSIGN_OR_RETURN(auto crv, string_member(jwk, "crv", who));
  if (!crv) return invalid_argument(fmt::format("{}: field 'crv' is missing", who));
  const AlgInfo* info = nullptr;
  for (const AlgInfo& i : kAlgorithms) {
    if (i.type == Jwk::Type::kEc && i.crv == *crv) info = &i;
  }
  if (info == nullptr) {
    return invalid_argument(fmt::format(
        "{}: field 'crv': curve '{}' is not supported (P-256, P-384, P-521)", who, *crv));
  }
  if (alg && *alg != info->alg) {
    return invalid_argument(fmt::format("{}: field 'alg': {} does not fit curve {}", who,
                                        jws_algorithm_name(*alg), *crv));
  }
  k.alg = info->alg;
  CIVICBUS_ASSIGN_OR_RETURN(std::string x, required_bytes(jwk, "x", who));
  CIVICBUS_ASSIGN_OR_RETURN(std::string y, required_bytes(jwk, "y", who));
  for (auto [name, value] : {std::pair<std::string_view, const std::string*>{"x", &x}, {"y", &y}}) {
    if (value->size() != info->coord_size) {
      return invalid_argument(fmt::format("{}: field '{}' must be {} bytes for {}, not {}", who,
                                          name, info->coord_size, *crv, value->size()));
    }
  }
  if (mbedtls_ecp_group_load(&k.group, info->group) != 0) {
    return internal_error(fmt::format("curve {} is not enabled in mbedTLS", *crv));
  }
  std::string point = "\x04" + x + y;
  if (mbedtls_ecp_point_read_binary(&k.group, &k.q, bytes_of(point), point.size()) != 0 ||
      mbedtls_ecp_check_pubkey(&k.group, &k.q) != 0) {
    return invalid_argument(fmt::format("{}: fields 'x', 'y' are not a point on {}", who, *crv));
  }
  CIVICBUS_ASSIGN_OR_RETURN(auto d, bytes_member(jwk, "d", who));
  if (d) {
    if (d->size() != info->coord_size) {
      return invalid_argument(fmt::format("{}: field 'd' must be {} bytes for {}, not {}", who,
                                          info->coord_size, *crv, d->size()));
    }
    if (mbedtls_mpi_read_binary(&k.d, bytes_of(*d), d->size()) != 0) {
      return internal_error("out of memory reading 'd'");
    }
    CIVICBUS_RETURN_IF_ERROR(check_ec_private(k, who));
    k.has_private = true;
  }
  return {};
}

Status load_rsa(Jwk::Impl& k, const Json& jwk, std::string_view who,
                std::optional<JwsAlgorithm> alg) {
  if (alg && *alg != JwsAlgorithm::kRs256) {
    return invalid_argument(
        fmt::format("{}: field 'alg': {} does not fit an RSA key", who, jws_algorithm_name(*alg)));
  }
  k.alg = JwsAlgorithm::kRs256;
  CIVICBUS_ASSIGN_OR_RETURN(std::string n, required_bytes(jwk, "n", who));
  CIVICBUS_ASSIGN_OR_RETURN(std::string e, required_bytes(jwk, "e", who));
  n = strip_leading_zeros(std::move(n));
  const std::size_t bits = n.size() * 8;
  if (bits < kMinRsaBits || bits > kMaxRsaBits) {
    return invalid_argument(
        fmt::format("{}: field 'n': a {}-bit modulus is outside the accepted {}..{} bits", who,
                    bits, kMinRsaBits, kMaxRsaBits));
  }
  CIVICBUS_ASSIGN_OR_RETURN(auto d, bytes_member(jwk, "d", who));
  CIVICBUS_ASSIGN_OR_RETURN(auto p, bytes_member(jwk, "p", who));
  CIVICBUS_ASSIGN_OR_RETURN(auto q, bytes_member(jwk, "q", who));
  if (!d && (p || q)) return invalid_argument(fmt::format("{}: field 'd' is missing", who));
  const bool use_pq = d && p && q;
  auto ptr = [](const std::optional<std::string>& s, bool on) {
    return on && s ? bytes_of(*s) : nullptr;
  };
  auto len = [](const std::optional<std::string>& s, bool on) {
    return on && s ? s->size() : std::size_t{0};
  };
  int rc = mbedtls_rsa_import_raw(&k.rsa, bytes_of(n), n.size(), ptr(p, use_pq), len(p, use_pq),
                                  ptr(q, use_pq), len(q, use_pq), ptr(d, true), len(d, true),
                                  bytes_of(e), e.size());
  if (rc == 0) rc = mbedtls_rsa_complete(&k.rsa);
  if (rc != 0 || mbedtls_rsa_check_pubkey(&k.rsa) != 0) {
    return invalid_argument(fmt::format("{}: fields 'n', 'e' are not a valid RSA public key", who));
  }
  if (d) {
    if (mbedtls_rsa_check_privkey(&k.rsa) != 0) {
      return invalid_argument(
          fmt::format("{}: fields 'd', 'p', 'q' are not a valid RSA private key for 'n'", who));
    }
    k.has_private = true;
  }
  return {};
}

Status load_oct(Jwk::Impl& k, const Json& jwk, std::string_view who,
                std::optional<JwsAlgorithm> alg) {
  if (alg && *alg != JwsAlgorithm::kHs256) {
    return invalid_argument(
        fmt::format("{}: field 'alg': {} does not fit an oct key", who, jws_algorithm_name(*alg)));
  }
  k.alg = JwsAlgorithm::kHs256;
  CIVICBUS_ASSIGN_OR_RETURN(k.secret, required_bytes(jwk, "k", who));
  if (k.secret.size() < kMinHmacKeySize) {
    return invalid_argument(
        fmt::format("{}: field 'k': an HS256 secret needs at least {} bytes, this one has {}", who,
                    kMinHmacKeySize, k.secret.size()));
  }
  k.has_private = true;
  return {};
}

// How errors name a key being parsed: "JWK key 'k1'", "JWKS key 2 (kid 'k1')", "JWKS key 2".
std::string who_of(std::string_view kid, std::string_view label) {
  if (kid.empty()) return std::string(label);
  if (label == kDefaultLabel) return fmt::format("JWK key '{}'", kid);
  return fmt::format("{} (kid '{}')", label, kid);
}

}  // namespace

Result<Jwk> Jwk::parse(const Json& jwk, std::string_view label) {
  if (!jwk.is_object()) return invalid_argument(fmt::format("{} is not a JSON object", label));
  auto impl = std::make_shared<Impl>();
  {
    CIVICBUS_ASSIGN_OR_RETURN(auto kid, string_member(jwk, "kid", label));
    impl->kid = kid.value_or("");
  }
  const std::string who = who_of(impl->kid, label);
  CIVICBUS_ASSIGN_OR_RETURN(auto use, string_member(jwk, "use", who));
  impl->use = use.value_or("");
  CIVICBUS_ASSIGN_OR_RETURN(auto kty, string_member(jwk, "kty", who));
  if (!kty) return invalid_argument(fmt::format("{}: field 'kty' is missing", who));
  CIVICBUS_ASSIGN_OR_RETURN(auto alg_name, string_member(jwk, "alg", who));
  std::optional<JwsAlgorithm> alg;
  if (alg_name) {
    auto parsed = parse_jws_algorithm(*alg_name);
    if (!parsed.ok()) {
      return invalid_argument(fmt::format("{}: field 'alg': {}", who, parsed.status().message()));
    }
    alg = *parsed;
  }
  if (*kty == "EC") {
    impl->type = Type::kEc;
    CIVICBUS_RETURN_IF_ERROR(load_ec(*impl, jwk, who, alg));
  } else if (*kty == "RSA") {
    impl->type = Type::kRsa;
    CIVICBUS_RETURN_IF_ERROR(load_rsa(*impl, jwk, who, alg));
  } else if (*kty == "oct") {
    impl->type = Type::kOct;
    CIVICBUS_RETURN_IF_ERROR(load_oct(*impl, jwk, who, alg));
  } else {
    return invalid_argument(
        fmt::format("{}: field 'kty': '{}' is not supported (EC, RSA, oct)", who, *kty));
  }
  return Jwk(std::move(impl));
}

Result<Jwk> Jwk::parse_text(std::string_view text) {
  auto json = Json::parse(text);
  if (!json.ok()) return invalid_argument("JWK is not JSON: " + json.status().message());
  return parse(*json);
}

Result<Jwk> Jwk::generate_ec(RandomSource& random, std::string kid, JwsAlgorithm alg) {
  const AlgInfo& info = info_of(alg);
  if (info.type != Type::kEc) {
    return invalid_argument(fmt::format("{} is not an ECDSA algorithm", info.name));
  }
  auto impl = std::make_shared<Impl>();
  impl->type = Type::kEc;
  impl->alg = alg;
  impl->kid = std::move(kid);
  impl->use = "sig";
  int rc = mbedtls_ecp_group_load(&impl->group, info.group);
  if (rc == 0)
    rc = mbedtls_ecp_gen_keypair(&impl->group, &impl->d, &impl->q, random_callback, &random);
  if (rc != 0) return internal_error("EC key generation failed: " + mbedtls_error(rc));
  impl->has_private = true;
  return Jwk(std::move(impl));
}

Result<Jwk> Jwk::generate_rsa(RandomSource& random, std::string kid, unsigned bits) {
  if (bits < kMinRsaBits || bits > kMaxRsaBits || bits % 8 != 0) {
    return invalid_argument(fmt::format("RSA key size {} is outside {}..{} bits (multiple of 8)",
                                        bits, kMinRsaBits, kMaxRsaBits));
  }
  auto impl = std::make_shared<Impl>();
  impl->type = Type::kRsa;
  impl->alg = JwsAlgorithm::kRs256;
  impl->kid = std::move(kid);
  impl->use = "sig";
  int rc = mbedtls_rsa_gen_key(&impl->rsa, random_callback, &random, bits, 65537);
  if (rc != 0) return internal_error("RSA key generation failed: " + mbedtls_error(rc));
  impl->has_private = true;
  return Jwk(std::move(impl));
}

Result<Jwk> Jwk::from_secret(std::string_view secret, std::string kid) {
  Json jwk = Json::object({{"kty", "oct"}, {"k", b64u(secret)}});
  if (!kid.empty()) jwk.set("kid", kid);
  return parse(jwk);
}

Jwk::Type Jwk::type() const {
  return impl_->type;
}
const std::string& Jwk::kid() const {
  return impl_->kid;
}
const std::string& Jwk::use() const {
  return impl_->use;
}
JwsAlgorithm Jwk::algorithm() const {
  return impl_->alg;
}
bool Jwk::can_sign() const {
  return impl_->has_private;
}

Result<Json> Jwk::public_jwk() const {
  const Impl& k = *impl_;
  Json out = Json::object();
  std::lock_guard lock(k.mu);
  switch (k.type) {
    case Type::kOct:
      return failed_precondition(
          fmt::format("{} is a shared secret (oct) and has no public JWK", key_name(k.kid)));
    case Type::kEc: {
      const AlgInfo& info = info_of(k.alg);
      std::string point(1 + 2 * info.coord_size, '\0');
      std::size_t olen = 0;
      int rc = mbedtls_ecp_point_write_binary(&k.group, &k.q, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen,
                                              bytes_of(point), point.size());
      if (rc != 0 || olen != point.size()) return internal_error("cannot write the EC point");
      out.set("kty", "EC");
      out.set("crv", info.crv);
      out.set("x", b64u(std::string_view(point).substr(1, info.coord_size)));
      out.set("y", b64u(std::string_view(point).substr(1 + info.coord_size)));
      break;
    }
    case Type::kRsa: {
      Mpi n, e;
      int rc = mbedtls_rsa_export(&k.rsa, &n.v, nullptr, nullptr, nullptr, &e.v);
      if (rc != 0) return internal_error("cannot export the RSA key: " + mbedtls_error(rc));
      out.set("kty", "RSA");
      out.set("n", b64u(mpi_bytes(n.v)));
      out.set("e", b64u(mpi_bytes(e.v)));
      break;
    }
  }
  if (!k.kid.empty()) out.set("kid", k.kid);
  if (!k.use.empty()) out.set("use", k.use);
  out.set("alg", jws_algorithm_name(k.alg));
  return out;
}

Json Jwk::private_jwk() const {
  const Impl& k = *impl_;
  Json out;
  if (k.type == Type::kOct) {
    out = Json::object({{"kty", "oct"}, {"k", b64u(k.secret)}});
    if (!k.kid.empty()) out.set("kid", k.kid);
    if (!k.use.empty()) out.set("use", k.use);
    out.set("alg", jws_algorithm_name(k.alg));
    return out;
  }
  auto pub = public_jwk();
  if (!pub.ok()) return Json();
  out = std::move(pub).value();
  if (!k.has_private) return out;
  std::lock_guard lock(k.mu);
  if (k.type == Type::kEc) {
    out.set("d", b64u(mpi_bytes(k.d, info_of(k.alg).coord_size)));
  } else {
    Mpi p, q, d, dp, dq, qi;
    if (mbedtls_rsa_export(&k.rsa, nullptr, &p.v, &q.v, &d.v, nullptr) == 0 &&
        mbedtls_rsa_export_crt(&k.rsa, &dp.v, &dq.v, &qi.v) == 0) {
      out.set("d", b64u(mpi_bytes(d.v)));
      out.set("p", b64u(mpi_bytes(p.v)));
      out.set("q", b64u(mpi_bytes(q.v)));
      out.set("dp", b64u(mpi_bytes(dp.v)));
      out.set("dq", b64u(mpi_bytes(dq.v)));
      out.set("qi", b64u(mpi_bytes(qi.v)));
    }
  }
  return out;
}

Status Jwk::verify(std::string_view signing_input, std::string_view signature) const {
  const Impl& k = *impl_;
  const AlgInfo& info = info_of(k.alg);
  const std::string who = key_name(k.kid);
  auto bad_length = [&](std::size_t want) {
    return unauthenticated(
        fmt::format("{} signature must be {} bytes, not {}", info.name, want, signature.size()));
  };
  const Status bad_signature =
      unauthenticated(fmt::format("{} signature does not verify with {}", info.name, who));
  switch (k.type) {
    case Type::kOct: {
      if (signature.size() != 32) return bad_length(32);
      const std::string mac = crypto::hmac_sha256(k.secret, signing_input);
      return crypto::constant_time_equal(mac, signature) ? Status() : bad_signature;
    }
    case Type::kEc: {
      if (signature.size() != 2 * info.coord_size) return bad_length(2 * info.coord_size);
      CIVICBUS_ASSIGN_OR_RETURN(std::string hash, digest(info.md, signing_input));
      // JOSE carries r || s as two fixed-size big-endian integers (RFC 7518 §3.4), which
      // mbedTLS takes directly as numbers: no DER on this path.
      Mpi r, s;
      if (mbedtls_mpi_read_binary(&r.v, bytes_of(signature), info.coord_size) != 0 ||
          mbedtls_mpi_read_binary(&s.v, bytes_of(signature) + info.coord_size, info.coord_size) !=
              0) {
        return internal_error("out of memory reading an ECDSA signature");
      }
      std::lock_guard lock(k.mu);
      int rc = mbedtls_ecdsa_verify(&k.group, bytes_of(hash), hash.size(), &k.q, &r.v, &s.v);
      return rc == 0 ? Status() : bad_signature;
    }
    case Type::kRsa: {
      std::lock_guard lock(k.mu);
      const std::size_t n_len = mbedtls_rsa_get_len(&k.rsa);
      if (signature.size() != n_len) return bad_length(n_len);
      CIVICBUS_ASSIGN_OR_RETURN(std::string hash, digest(info.md, signing_input));
      int rc = rsa_verify_pkcs1_v15(&k.rsa, info.md, bytes_of(hash),
                                    static_cast<unsigned>(hash.size()), bytes_of(signature));
      return rc == 0 ? Status() : bad_signature;
    }
  }
  return bad_signature;
}

Result<std::string> Jwk::sign(std::string_view signing_input, RandomSource& random) const {
  const Impl& k = *impl_;
  const AlgInfo& info = info_of(k.alg);
  if (!k.has_private) {
    return failed_precondition(
        fmt::format("{} has no private part and cannot sign", key_name(k.kid)));
  }
  switch (k.type) {
    case Type::kOct:
      return crypto::hmac_sha256(k.secret, signing_input);
    case Type::kEc: {
      CIVICBUS_ASSIGN_OR_RETURN(std::string hash, digest(info.md, signing_input));
      Mpi r, s;
      std::lock_guard lock(k.mu);
      int rc = mbedtls_ecdsa_sign(&k.group, &r.v, &s.v, &k.d, bytes_of(hash), hash.size(),
                                  random_callback, &random);
      if (rc != 0) return internal_error("ECDSA signing failed: " + mbedtls_error(rc));
      return mpi_bytes(r.v, info.coord_size) + mpi_bytes(s.v, info.coord_size);
    }
    case Type::kRsa: {
      CIVICBUS_ASSIGN_OR_RETURN(std::string hash, digest(info.md, signing_input));
      std::lock_guard lock(k.mu);
      std::string sig(mbedtls_rsa_get_len(&k.rsa), '\0');
      int rc = rsa_sign_pkcs1_v15(&k.rsa, random_callback, &random, info.md, bytes_of(hash),
                                  static_cast<unsigned>(hash.size()), bytes_of(sig));
      if (rc != 0) return internal_error("RSA signing failed: " + mbedtls_error(rc));
      return sig;
    }
  }
  return internal_error("unknown key type");
}

// ---- JwkSet ----

Result<JwkSet> JwkSet::parse(const Json& jwks) {
  const Json* keys = jwks.find("keys");
  if (keys == nullptr || !keys->is_array()) {
    return invalid_argument("JWKS must be an object with a 'keys' array");
  }
  JwkSet set;
  for (std::size_t i = 0; i < keys->size(); ++i) {
    CIVICBUS_ASSIGN_OR_RETURN(Jwk key,
                              Jwk::parse(keys->as_array()[i], fmt::format("JWKS key {}", i)));
    Status added = set.add(std::move(key));
    if (!added.ok()) return invalid_argument(fmt::format("JWKS key {}: {}", i, added.message()));
  }
  return set;
}

Result<JwkSet> JwkSet::from_keys(std::vector<Jwk> keys) {
  JwkSet set;
  for (Jwk& key : keys) CIVICBUS_RETURN_IF_ERROR(set.add(std::move(key)));
  return set;
}

Result<JwkSet> JwkSet::parse_text(std::string_view text) {
  auto json = Json::parse(text);
  if (!json.ok()) return invalid_argument("JWKS is not JSON: " + json.status().message());
  return parse(*json);
}

namespace {

// True when an HMAC secret is made of a public key's material: the modulus or a coordinate
// (raw or as the JWK's base64url), the public JWK text, or any PEM block. Whoever holds the
// public key could then forge HS256 tokens, so such a set is refused at configuration time.
bool secret_is_public(std::string_view secret, const Jwk& key) {
  if (secret.find("-----BEGIN") != std::string_view::npos) return true;
  auto pub = key.public_jwk();
  if (!pub.ok()) return false;
  if (secret.find(pub->dump()) != std::string_view::npos) return true;
  for (const char* member : {"n", "x", "y"}) {
    const std::string text = pub->get_string(member);
    if (text.empty()) continue;
    if (secret.find(text) != std::string_view::npos) return true;
    auto raw = jose_base64url_decode(text);
    if (raw.ok() && raw->size() >= 16 && secret.find(*raw) != std::string_view::npos) return true;
  }
  return false;
}

}  // namespace

Status JwkSet::add(Jwk key) {
  if (!key.kid().empty() && find(key.kid()) != nullptr) {
    return already_exists(fmt::format("kid '{}' is used by two keys", key.kid()));
  }
  for (const Jwk& other : keys_) {
    const Jwk* oct = key.type() == Jwk::Type::kOct ? &key : &other;
    const Jwk* asym = key.type() == Jwk::Type::kOct ? &other : &key;
    if (oct->type() != Jwk::Type::kOct || asym->type() == Jwk::Type::kOct) continue;
    if (secret_is_public(oct->impl_->secret, *asym)) {
      return invalid_argument(
          fmt::format("the HMAC secret of {} is public key material ({}); use a random secret",
                      key_name(oct->kid()), key_name(asym->kid())));
    }
  }
  keys_.push_back(std::move(key));
  return {};
}

const Jwk* JwkSet::find(std::string_view kid) const {
  for (const Jwk& k : keys_) {
    if (k.kid() == kid) return &k;
  }
  return nullptr;
}

Json JwkSet::public_jwks() const {
  Json keys = Json::array();
  for (const Jwk& k : keys_) {
    auto pub = k.public_jwk();
    if (pub.ok()) keys.push_back(std::move(pub).value());
  }
  return Json::object({{"keys", std::move(keys)}});
}

// ---- JWS ----

Result<JwsParts> parse_jws_compact(std::string_view token) {
  if (token.size() > kMaxTokenSize) {
    return unauthenticated(
        fmt::format("token of {} bytes exceeds the {}-byte limit", token.size(), kMaxTokenSize));
  }
  const std::size_t dot1 = token.find('.');
  const std::size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return unauthenticated("token is not a compact JWS (header.payload.signature)");
  }
  auto decode = [&](std::string_view part, std::string_view name) -> Result<std::string> {
    auto bytes = jose_base64url_decode(part);
    if (!bytes.ok()) {
      return unauthenticated(fmt::format("token {}: {}", name, bytes.status().message()));
    }
    return bytes;
  };
  JwsParts parts;
  CIVICBUS_ASSIGN_OR_RETURN(std::string header_text, decode(token.substr(0, dot1), "header"));
  CIVICBUS_ASSIGN_OR_RETURN(parts.payload,
                            decode(token.substr(dot1 + 1, dot2 - dot1 - 1), "payload"));
  CIVICBUS_ASSIGN_OR_RETURN(parts.signature, decode(token.substr(dot2 + 1), "signature"));
  auto header = Json::parse(header_text);
  if (!header.ok() || !header->is_object()) {
    return unauthenticated("token header is not a JSON object");
  }
  parts.header = std::move(header).value();
  const Json* alg = parts.header.find("alg");
  if (alg == nullptr || !alg->is_string()) {
    return unauthenticated("token header has no 'alg' string");
  }
  CIVICBUS_ASSIGN_OR_RETURN(parts.algorithm, parse_jws_algorithm(alg->as_string()));
  if (const Json* kid = parts.header.find("kid"); kid != nullptr) {
    if (!kid->is_string()) return unauthenticated("token header 'kid' is not a string");
    parts.kid = kid->as_string();
  }
  // RFC 7515 §4.1.11: a recipient must refuse extensions it does not understand; this one
  // understands none (b64=false and the like included).
  if (const Json* crit = parts.header.find("crit"); crit != nullptr) {
    std::string names = crit->is_array() && crit->size() > 0 ? crit->dump() : "(malformed)";
    return unauthenticated(
        fmt::format("token header 'crit' {} names extensions not supported", names));
  }
  parts.signing_input = std::string(token.substr(0, dot2));
  return parts;
}

Result<JwsParts> verify_jws_compact(std::string_view token, const JwkSet& keys) {
  CIVICBUS_ASSIGN_OR_RETURN(JwsParts parts, parse_jws_compact(token));
  const std::string_view alg = jws_algorithm_name(parts.algorithm);
  if (!parts.kid.empty()) {
    const Jwk* key = keys.find(parts.kid);
    if (key == nullptr) return unauthenticated(fmt::format("no key with kid '{}'", parts.kid));
    if (key->use() == "enc") {
      return unauthenticated(fmt::format("key '{}' is for encryption (use 'enc')", parts.kid));
    }
    if (key->algorithm() != parts.algorithm) {
      return unauthenticated(fmt::format("token alg {} does not match key '{}', pinned to {}", alg,
                                         parts.kid, jws_algorithm_name(key->algorithm())));
    }
    CIVICBUS_RETURN_IF_ERROR(key->verify(parts.signing_input, parts.signature));
    return parts;
  }
  Status last = unauthenticated(fmt::format("token has no kid and no key is pinned to {}", alg));
  for (const Jwk& key : keys.keys()) {
    if (key.algorithm() != parts.algorithm || key.use() == "enc") continue;
    last = key.verify(parts.signing_input, parts.signature);
    if (last.ok()) return parts;
  }
  return last;
}

Result<std::string> sign_jws_compact(std::string_view payload, const Jwk& key, RandomSource& random,
                                     const Json& extra_header) {
  Json header = Json::object({{"alg", jws_algorithm_name(key.algorithm())}});
  if (!key.kid().empty()) header.set("kid", key.kid());
  if (extra_header.is_object()) {
    for (const auto& [name, value] : extra_header.as_object()) {
      if (name != "alg" && name != "kid" && name != "crit") header.set(name, value);
    }
  }
  std::string input = b64u(header.dump()) + "." + b64u(payload);
  CIVICBUS_ASSIGN_OR_RETURN(std::string sig, key.sign(input, random));
  return input + "." + b64u(sig);
}

// ---- JWT ----

namespace {

Result<std::optional<double>> numeric_date(const Json& claims, std::string_view name) {
  const Json* v = claims.find(name);
  if (v == nullptr) return std::optional<double>();
  if (!v->is_number()) {
    return unauthenticated(fmt::format("claim '{}' is not a NumericDate", name));
  }
  return std::optional<double>(v->as_double());
}

std::string format_date(double seconds) {
  if (!(std::fabs(seconds) < 1e13)) return fmt::format("{}", seconds);
  return format_rfc3339(SystemTime{std::chrono::seconds{static_cast<std::int64_t>(seconds)}});
}

}  // namespace

Result<Jwt> JwtVerifier::verify(std::string_view token) const {
  CIVICBUS_ASSIGN_OR_RETURN(JwsParts parts, verify_jws_compact(token, keys_));
  auto claims = Json::parse(parts.payload);
  if (!claims.ok() || !claims->is_object()) {
    return unauthenticated("token payload is not a JSON object of claims");
  }
  const double now = static_cast<double>(to_unix_micros(clock_->now())) / 1e6;
  const double leeway = static_cast<double>(options_.leeway.count());
  CIVICBUS_ASSIGN_OR_RETURN(auto exp, numeric_date(*claims, "exp"));
  CIVICBUS_ASSIGN_OR_RETURN(auto nbf, numeric_date(*claims, "nbf"));
  CIVICBUS_ASSIGN_OR_RETURN(auto iat, numeric_date(*claims, "iat"));
  if (exp) {
    if (now >= *exp + leeway) {
      return unauthenticated(fmt::format("token expired at {} (leeway {} s)", format_date(*exp),
                                         options_.leeway.count()));
    }
  } else if (options_.require_exp) {
    return unauthenticated("token has no 'exp' claim");
  }
  if (nbf && now + leeway < *nbf) {
    return unauthenticated(fmt::format("token not yet valid: not before {} (leeway {} s)",
                                       format_date(*nbf), options_.leeway.count()));
  }
  if (iat && now + leeway < *iat) {
    return unauthenticated(fmt::format("token issued in the future, at {}", format_date(*iat)));
  }
  if (!options_.issuer.empty()) {
    const Json* iss = claims->find("iss");
    if (iss == nullptr || !iss->is_string()) return unauthenticated("token has no 'iss' claim");
    if (iss->as_string() != options_.issuer) {
      return unauthenticated(
          fmt::format("wrong issuer '{}', expected '{}'", iss->as_string(), options_.issuer));
    }
  }
  if (!options_.audiences.empty()) {
    const Json* aud = claims->find("aud");
    if (aud == nullptr) return unauthenticated("token has no 'aud' claim");
    std::vector<std::string_view> values;
    if (aud->is_string()) {
      values.push_back(aud->as_string());
    } else if (aud->is_array()) {
      for (const Json& a : aud->as_array()) {
        if (!a.is_string())
          return unauthenticated("claim 'aud' holds a value that is not a string");
        values.push_back(a.as_string());
      }
    } else {
      return unauthenticated("claim 'aud' is neither a string nor an array of strings");
    }
    bool match = false;
    for (std::string_view v : values) {
      for (const std::string& want : options_.audiences) match = match || v == want;
    }
    if (!match) {
      return unauthenticated(fmt::format("wrong audience {}, expected one of '{}'", aud->dump(),
                                         fmt::join(options_.audiences, "', '")));
    }
  }
  return Jwt{std::move(parts.header), std::move(claims).value()};
}

Result<std::string> sign_jwt(const Json& claims, const Jwk& key, RandomSource& random) {
  if (!claims.is_object()) return invalid_argument("JWT claims must be a JSON object");
  return sign_jws_compact(claims.dump(), key, random, Json::object({{"typ", "JWT"}}));
}

}  // namespace civicbus::gateway
