// PII field encryption: the values at a topic's PII pointers are replaced in the event data
// by "enc:v1:<key_id>:<base64(nonce | ciphertext | tag)>" before the event is stored, and
// restored (or redacted) per consumer group on delivery. The plaintext is the value's JSON
// text, so strings, numbers, objects and arrays all round-trip; the AAD binds the topic and
// the pointer, so a value copied to another field or topic does not decrypt.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "broker/key_store.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/core/status.hpp"

namespace civicbus::broker {

inline constexpr std::string_view kEncryptedPrefix = "enc:v1:";
inline constexpr std::string_view kRedacted = "[redacted]";
inline constexpr std::string_view kShredded = "[shredded]";

// Checks that `pointer` is a usable PII field: an RFC 6901 pointer into the event data other
// than "" (the whole data), with well-formed escapes. For topic creation.
Status validate_pii_pointer(std::string_view pointer);

// True when `value` is a string in the enc:v1 form (not checked further).
bool is_encrypted_pii(const Json& value);

// Encrypts the values at `pointers` (RFC 6901, into the event's data) in place. Absent
// pointers are skipped. Every present value is encrypted, strings that already look
// encrypted included (a publisher must not be able to plant a value that fails consumers).
Status encrypt_pii(Json& data, const std::vector<std::string>& pointers, std::string_view topic,
                   const DataKey& key, RandomSource& random);

// For a consumer: when `granted`, decrypts each encrypted value (a value whose key was
// shredded becomes "[shredded]") and leaves other values alone. When not granted, every
// present value at a PII pointer becomes "[redacted]", plaintext ones included: those were
// stored before the field was declared PII and are no less personal. Fails with kDataLoss
// when a value does not decrypt (tampered, another topic or field, unknown key); `data` may
// then be partly revealed and must be discarded.
Status reveal_pii(Json& data, const std::vector<std::string>& pointers, std::string_view topic,
                  KeyStore& keys, bool granted);

}  // namespace civicbus::broker
