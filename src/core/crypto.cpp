#include "civicbus/core/crypto.hpp"

#include <fmt/format.h>
#include <mbedtls/gcm.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/mbedtls_compat.hpp"

namespace civicbus::crypto {
namespace {

// The mbedTLS 2.x / 3.x differences live in core/mbedtls_compat.hpp.
using mbedtls_compat::sha256_finish;
using mbedtls_compat::sha256_starts;
using mbedtls_compat::sha256_update;

constexpr std::size_t kSha256Size = 32;
constexpr std::size_t kSha256BlockSize = 64;
constexpr std::size_t kNonceSize = 12;
constexpr std::size_t kTagSize = 16;
constexpr std::size_t kMinTagSize = 4;

const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
unsigned char* bytes_of(std::string& s) {
  return reinterpret_cast<unsigned char*>(s.data());
}

// SHA-256 on a stack context: no allocation, unlike the generic mbedtls_md API.
class Sha256 {
 public:
  Sha256() {
    mbedtls_sha256_init(&ctx_);
    check(sha256_starts(&ctx_));
  }
  ~Sha256() { mbedtls_sha256_free(&ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const unsigned char* p, std::size_t n) { check(sha256_update(&ctx_, p, n)); }
  void update(std::string_view s) { update(bytes_of(s), s.size()); }
  void finish(unsigned char out[kSha256Size]) { check(sha256_finish(&ctx_, out)); }

 private:
  // Software SHA-256 fails only on a null context or an alternative (hardware) backend
  // error; neither can be reported through a function that returns a digest.
  static void check(int rc) {
    if (rc != 0) {
      std::fprintf(stderr, "civicbus: SHA-256 failed (mbedTLS error -0x%04x); aborting\n",
                   static_cast<unsigned>(-rc));
      std::abort();
    }
  }
  mbedtls_sha256_context ctx_;
};

constexpr std::array<std::int8_t, 256> make_decode_table(const char* alphabet) {
  std::array<std::int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i)
    t[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
  return t;
}

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kBase64UrlAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr auto kBase64Decode = make_decode_table(kBase64Alphabet);
constexpr auto kBase64UrlDecode = make_decode_table(kBase64UrlAlphabet);

std::string base64_encode_with(std::string_view in, const char* alphabet, bool pad) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  const unsigned char* p = bytes_of(in);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t{p[i]} << 16) | (std::uint32_t{p[i + 1]} << 8) | p[i + 2];
    out.push_back(alphabet[v >> 18]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    out.push_back(alphabet[v & 63]);
  }
  const std::size_t rest = in.size() - i;
  if (rest == 1) {
    const std::uint32_t v = std::uint32_t{p[i]} << 16;
    out.push_back(alphabet[v >> 18]);
    out.push_back(alphabet[(v >> 12) & 63]);
    if (pad) out.append("==");
  } else if (rest == 2) {
    const std::uint32_t v = (std::uint32_t{p[i]} << 16) | (std::uint32_t{p[i + 1]} << 8);
    out.push_back(alphabet[v >> 18]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    if (pad) out.push_back('=');
  }
  return out;
}

// Strict decoding: no whitespace, padding exactly as the encoder writes it (required for
// base64, forbidden for base64url), and zero unused bits, so each byte string has exactly one
// accepted encoding (what signature and token checks need).
Result<std::string> base64_decode_with(std::string_view in,
                                       const std::array<std::int8_t, 256>& table, bool padded,
                                       std::string_view what) {
  std::size_t len = in.size();
  if (padded) {
    if (len % 4 != 0) {
      return invalid_argument(fmt::format("{} text has length {}, not a multiple of 4", what, len));
    }
    if (len >= 1 && in[len - 1] == '=') --len;
    if (len >= 1 && in[len - 1] == '=') --len;
  } else if (len % 4 == 1) {
    return invalid_argument(fmt::format("{} text has impossible length {}", what, len));
  }
  std::string out;
  out.reserve(len / 4 * 3 + 2);
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < len; ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    const std::int8_t v = table[c];
    if (v < 0) {
      return invalid_argument(fmt::format("{} text has an invalid character {} at offset {}", what,
                                          c >= 0x20 && c < 0x7f
                                              ? fmt::format("'{}'", static_cast<char>(c))
                                              : fmt::format("0x{:02x}", c),
                                          i));
    }
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if (bits >= 6 || (padded && len % 4 == 1)) {
    return invalid_argument(fmt::format("{} text ends in the middle of a byte", what));
  }
  if ((acc & ((1u << bits) - 1)) != 0) {
    return invalid_argument(
        fmt::format("{} text is not canonical: its unused final bits are not 0", what));
  }
  return out;
}

// Spreads threads over the context slots so that they rarely race for the same one.
std::size_t this_thread_hint() {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t hint = next.fetch_add(1, std::memory_order_relaxed);
  return hint;
}

}  // namespace

std::string sha256(std::string_view data) {
  Sha256 h;
  h.update(data);
  std::string out(kSha256Size, '\0');
  h.finish(bytes_of(out));
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  // RFC 2104 on the stack context above; mbedtls_md_hmac would allocate two contexts.
  unsigned char k[kSha256BlockSize] = {};
  if (key.size() > kSha256BlockSize) {
    Sha256 kh;
    kh.update(key);
    kh.finish(k);
  } else if (!key.empty()) {
    std::memcpy(k, key.data(), key.size());
  }
  unsigned char pad[kSha256BlockSize];
  for (std::size_t i = 0; i < kSha256BlockSize; ++i) pad[i] = k[i] ^ 0x36;
  unsigned char inner[kSha256Size];
  {
    Sha256 h;
    h.update(pad, sizeof pad);
    h.update(data);
    h.finish(inner);
  }
  for (std::size_t i = 0; i < kSha256BlockSize; ++i) pad[i] = k[i] ^ 0x5c;
  std::string out(kSha256Size, '\0');
  {
    Sha256 h;
    h.update(pad, sizeof pad);
    h.update(inner, sizeof inner);
    h.finish(bytes_of(out));
  }
  mbedtls_platform_zeroize(k, sizeof k);
  mbedtls_platform_zeroize(pad, sizeof pad);
  return out;
}

void wipe(std::string& s) {
  if (!s.empty()) mbedtls_platform_zeroize(s.data(), s.size());
  s.clear();
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  // volatile keeps the compiler from turning the loop into an early-exit comparison.
  volatile unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = diff | static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

namespace {

// Each byte's two hex digits, so that a byte is one load and one two-byte store.
constexpr std::array<char, 512> kHexPairs = [] {
  constexpr char digits[] = "0123456789abcdef";
  std::array<char, 512> pairs{};
  for (std::size_t b = 0; b < 256; ++b) {
    pairs[2 * b] = digits[b >> 4];
    pairs[2 * b + 1] = digits[b & 15];
  }
  return pairs;
}();

}  // namespace

void to_hex(std::string_view bytes, char* out) {
  std::size_t i = 0;
#if defined(__SSE2__)
  // Eight bytes at a time (request and trace ids are hexed on every proxied request): each
  // byte's two nibbles side by side, then '0' added, and 'a' - '0' - 10 more where a nibble
  // is past 9.
  const __m128i low4 = _mm_set1_epi8(0x0f);
  const __m128i nine = _mm_set1_epi8(9);
  const __m128i digit0 = _mm_set1_epi8('0');
  const __m128i letter_gap = _mm_set1_epi8('a' - '0' - 10);
  for (; i + 8 <= bytes.size(); i += 8) {
    const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes.data() + i));
    const __m128i high = _mm_and_si128(_mm_srli_epi16(v, 4), low4);
    const __m128i nibbles = _mm_unpacklo_epi8(high, _mm_and_si128(v, low4));
    const __m128i letters = _mm_and_si128(_mm_cmpgt_epi8(nibbles, nine), letter_gap);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i),
                     _mm_add_epi8(_mm_add_epi8(nibbles, digit0), letters));
  }
#endif
  for (; i < bytes.size(); ++i) {
    std::memcpy(out + 2 * i, &kHexPairs[2 * static_cast<unsigned char>(bytes[i])], 2);
  }
}

std::string to_hex(std::string_view bytes) {
  std::string out(bytes.size() * 2, '\0');
  to_hex(bytes, out.data());
  return out;
}

Result<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    return invalid_argument(fmt::format("hex text has odd length {}", hex.size()));
  }
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out(hex.size() / 2, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return invalid_argument(
          fmt::format("hex text has a non-hex character at offset {}", hi < 0 ? 2 * i : 2 * i + 1));
    }
    out[i] = static_cast<char>(hi << 4 | lo);
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  return base64_encode_with(bytes, kBase64Alphabet, true);
}
Result<std::string> base64_decode(std::string_view text) {
  return base64_decode_with(text, kBase64Decode, true, "base64");
}
std::string bound_aad(std::string_view label, std::initializer_list<std::string_view> fields) {
  std::string out(label);
  for (std::string_view field : fields) {
    const auto n = static_cast<std::uint32_t>(field.size());
    for (int shift = 24; shift >= 0; shift -= 8) {
      out.push_back(static_cast<char>((n >> shift) & 0xff));
    }
    out.append(field);
  }
  return out;
}

std::string base64url_encode(std::string_view bytes) {
  return base64_encode_with(bytes, kBase64UrlAlphabet, false);
}
Result<std::string> base64url_decode(std::string_view text) {
  return base64_decode_with(text, kBase64UrlDecode, false, "base64url");
}

// ---- AES-GCM ----

// A few expanded-key contexts per key. A call takes a free slot with one atomic exchange and
// gives it back when done; when every slot is busy it falls back to a context of its own, so
// no call ever waits.
struct AesGcm::Contexts {
  static constexpr std::size_t kSlots = 8;

  struct alignas(64) Slot {
    std::atomic<bool> busy{false};
    bool ready = false;  // written only by the holder of `busy`
    mbedtls_gcm_context gcm;
  };

  // Exclusive use of one context for the duration of a call.
  class Lease {
   public:
    Lease(Contexts* pool, std::string_view key) {
      if (pool != nullptr) {
        const std::size_t start = this_thread_hint();
        for (std::size_t i = 0; i < kSlots; ++i) {
          Slot& s = pool->slots[(start + i) % kSlots];
          if (s.busy.load(std::memory_order_relaxed) ||
              s.busy.exchange(true, std::memory_order_acquire)) {
            continue;
          }
          slot_ = &s;
          if (!s.ready) {
            mbedtls_gcm_init(&s.gcm);
            ok_ = set_key(&s.gcm, key);
            s.ready = ok_;
            if (!ok_) mbedtls_gcm_free(&s.gcm);
          }
          ctx_ = &s.gcm;
          return;
        }
      }
      mbedtls_gcm_init(&local_);
      ok_ = set_key(&local_, key);
      ctx_ = &local_;
    }
    ~Lease() {
      if (slot_ != nullptr) {
        slot_->busy.store(false, std::memory_order_release);
      } else {
        mbedtls_gcm_free(&local_);
      }
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

    bool ok() const { return ok_; }
    mbedtls_gcm_context* get() { return ctx_; }

   private:
    static bool set_key(mbedtls_gcm_context* gcm, std::string_view key) {
      return mbedtls_gcm_setkey(gcm, MBEDTLS_CIPHER_ID_AES, bytes_of(key),
                                static_cast<unsigned>(key.size() * 8)) == 0;
    }
    Slot* slot_ = nullptr;
    mbedtls_gcm_context local_;
    mbedtls_gcm_context* ctx_ = nullptr;
    bool ok_ = true;
  };

  Slot slots[kSlots];

  ~Contexts() {
    for (Slot& s : slots) {
      if (s.ready) mbedtls_gcm_free(&s.gcm);  // zeroizes the expanded key
    }
  }
};

Result<AesGcm> AesGcm::create(std::string_view key) {
  if (key.size() != 16 && key.size() != 24 && key.size() != 32) {
    return invalid_argument(fmt::format(
        "an AES-GCM key must be 16, 24 or 32 bytes (AES-128/192/256), not {} bytes", key.size()));
  }
  AesGcm gcm{std::string(key)};
  gcm.contexts_ = std::make_shared<Contexts>();
  return gcm;
}

Result<std::string> AesGcm::encrypt(std::string_view iv, std::string_view aad,
                                    std::string_view plaintext, std::size_t tag_len) const {
  if (tag_len < kMinTagSize || tag_len > kTagSize) {
    return invalid_argument(
        fmt::format("AES-GCM tag length must be 4 to 16 bytes, not {}", tag_len));
  }
  if (iv.empty()) return invalid_argument("AES-GCM needs a non-empty IV (NIST SP 800-38D)");
  std::string out(plaintext.size() + tag_len, '\0');
  Contexts::Lease lease(contexts_.get(), key_);
  unsigned char* ct = bytes_of(out);
  if (!lease.ok() ||
      mbedtls_gcm_crypt_and_tag(lease.get(), MBEDTLS_GCM_ENCRYPT, plaintext.size(), bytes_of(iv),
                                iv.size(), bytes_of(aad), aad.size(), bytes_of(plaintext), ct,
                                tag_len, ct + plaintext.size()) != 0) {
    return invalid_argument(
        fmt::format("AES-GCM cannot encrypt {} bytes with a {}-byte IV and {}-byte AAD",
                    plaintext.size(), iv.size(), aad.size()));
  }
  return out;
}

Result<std::string> AesGcm::decrypt(std::string_view iv, std::string_view aad,
                                    std::string_view ciphertext_and_tag,
                                    std::size_t tag_len) const {
  if (tag_len < kMinTagSize || tag_len > kTagSize) {
    return invalid_argument(
        fmt::format("AES-GCM tag length must be 4 to 16 bytes, not {}", tag_len));
  }
  if (iv.empty()) return invalid_argument("AES-GCM needs a non-empty IV (NIST SP 800-38D)");
  if (ciphertext_and_tag.size() < tag_len) {
    return data_loss("AES-GCM message could not be authenticated");
  }
  const std::size_t ct_len = ciphertext_and_tag.size() - tag_len;
  std::string out(ct_len, '\0');
  Contexts::Lease lease(contexts_.get(), key_);
  const unsigned char* in = bytes_of(ciphertext_and_tag);
  // mbedtls_gcm_auth_decrypt compares the tag in constant time and wipes `out` on mismatch.
  if (!lease.ok() ||
      mbedtls_gcm_auth_decrypt(lease.get(), ct_len, bytes_of(iv), iv.size(), bytes_of(aad),
                               aad.size(), in + ct_len, tag_len, in, bytes_of(out)) != 0) {
    return data_loss("AES-GCM message could not be authenticated");
  }
  return out;
}

std::string AesGcm::seal(RandomSource& random, std::string_view plaintext,
                         std::string_view aad) const {
  std::string out(kNonceSize + plaintext.size() + kTagSize, '\0');
  unsigned char* p = bytes_of(out);
  random.fill(p, kNonceSize);
  Contexts::Lease lease(contexts_.get(), key_);
  // Cannot fail: the key length was checked by create(), the nonce and tag sizes are fixed,
  // and std::string cannot hold the 64 GiB GCM limit.
  const int rc = lease.ok() ? mbedtls_gcm_crypt_and_tag(
                                  lease.get(), MBEDTLS_GCM_ENCRYPT, plaintext.size(), p, kNonceSize,
                                  bytes_of(aad), aad.size(), bytes_of(plaintext), p + kNonceSize,
                                  kTagSize, p + kNonceSize + plaintext.size())
                            : -1;
  if (rc != 0) {
    std::fprintf(stderr, "civicbus: AES-GCM seal failed (mbedTLS error %d); aborting\n", rc);
    std::abort();
  }
  return out;
}

Result<std::string> AesGcm::open(std::string_view sealed, std::string_view aad) const {
  if (sealed.size() < kNonceSize + kTagSize) {
    return data_loss("AES-GCM message could not be authenticated");
  }
  return decrypt(sealed.substr(0, kNonceSize), aad, sealed.substr(kNonceSize), kTagSize);
}

}  // namespace civicbus::crypto
