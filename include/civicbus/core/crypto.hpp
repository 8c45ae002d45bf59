// Cryptographic primitives over mbedTLS. Byte strings are std::string (as in LevelDB):
// binary-safe, cheap to move. Nothing here logs key material.
#pragma once

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "civicbus/core/random.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus::crypto {

// 32 raw bytes.
CIVICBUS_EXPORT std::string sha256(std::string_view data);
// 32 raw bytes. Any key length.
CIVICBUS_EXPORT std::string hmac_sha256(std::string_view key, std::string_view data);
// Compares in time that depends only on the lengths.
CIVICBUS_EXPORT bool constant_time_equal(std::string_view a, std::string_view b);
// Zeroes what `s` holds (so key material does not outlive its use in freed memory), then
// empties it. The compiler may not drop the zeroing as a dead store.
CIVICBUS_EXPORT void wipe(std::string& s);

CIVICBUS_EXPORT std::string to_hex(std::string_view bytes);  // lower case
// The same into out[0, 2 * bytes.size()), for a caller that has the place for it already.
CIVICBUS_EXPORT void to_hex(std::string_view bytes, char* out);
CIVICBUS_EXPORT Result<std::string> from_hex(std::string_view hex);
CIVICBUS_EXPORT std::string base64_encode(std::string_view bytes);  // RFC 4648 §4, padded
CIVICBUS_EXPORT Result<std::string> base64_decode(std::string_view text);
CIVICBUS_EXPORT std::string base64url_encode(std::string_view bytes);  // RFC 4648 §5, no padding

// Associated data that binds a sealed value to where it is stored: `label`, then each field
// with a 32-bit big-endian length in front, so that no two field lists give the same bytes.
CIVICBUS_EXPORT std::string bound_aad(std::string_view label,
                                      std::initializer_list<std::string_view> fields);
CIVICBUS_EXPORT Result<std::string> base64url_decode(std::string_view text);

// AES-256-GCM (also AES-128/192 for test vectors: the key length picks the variant).
// seal/open use a fresh 96-bit random nonce and the layout nonce(12) || ciphertext || tag(16).
// Thread-safe: each call uses its own mbedTLS context.
class CIVICBUS_EXPORT AesGcm {
 public:
  static Result<AesGcm> create(std::string_view key);  // 16, 24 or 32 bytes

  std::string seal(RandomSource& random, std::string_view plaintext,
                   std::string_view aad = {}) const;
  // Fails with kDataLoss (tag mismatch, truncated input) without revealing which.
  Result<std::string> open(std::string_view sealed, std::string_view aad = {}) const;

  // Raw primitive with caller-chosen IV and tag length (4..16 bytes): returns ciphertext || tag.
  Result<std::string> encrypt(std::string_view iv, std::string_view aad, std::string_view plaintext,
                              std::size_t tag_len = 16) const;
  // `ciphertext_and_tag` is ciphertext || tag of `tag_len` bytes.
  Result<std::string> decrypt(std::string_view iv, std::string_view aad,
                              std::string_view ciphertext_and_tag, std::size_t tag_len = 16) const;

 private:
  explicit AesGcm(std::string key) : key_(std::move(key)) {}
  std::string key_;
  // Expanded-key mbedTLS contexts, reused across calls (setting a key costs more than
  // sealing a small field); a call borrows one for itself. Shared by copies of this AesGcm.
  struct Contexts;
  std::shared_ptr<Contexts> contexts_;
};

}  // namespace civicbus::crypto
