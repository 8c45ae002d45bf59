#include "broker/pii.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <cstring>

#include "civicbus/core/crypto.hpp"

namespace civicbus::broker {
namespace {

constexpr std::string_view kAadLabel = "civicbus pii v1";

// Length-prefixed so that no (topic, pointer) pair shares its AAD with another.
std::string pii_aad(std::string_view topic, std::string_view pointer) {
  return crypto::bound_aad(kAadLabel, {topic, pointer});
}

using crypto::wipe;

// Reveals one encrypted value in place. Messages name the field and the key id, never the
// value.
Status decrypt_value(Json& value, std::string_view pointer, std::string_view topic,
                     KeyStore& keys) {
  const std::string_view text = std::string_view(value.as_string()).substr(kEncryptedPrefix.size());
  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return data_loss(fmt::format(
        "PII field '{}' of topic '{}' is not a well-formed encrypted value", pointer, topic));
  }
  const std::string_view key_id = text.substr(0, colon);
  Result<std::shared_ptr<const DataKey>> key = keys.key_by_id(key_id);
  if (!key.ok()) {
    if (key.status().code() == ErrorCode::kNotFound) {
      return data_loss(
          fmt::format("PII field '{}' of topic '{}' names key {}, which does not exist", pointer,
                      topic, key_id));
    }
    return key.status().with_context(
        fmt::format("revealing PII field '{}' of topic '{}'", pointer, topic));
  }
  if (*key == nullptr) {
    value = Json(kShredded);
    return {};
  }
  Result<std::string> sealed = crypto::base64_decode(text.substr(colon + 1));
  if (!sealed.ok()) {
    return data_loss(fmt::format(
        "PII field '{}' of topic '{}' is not a well-formed encrypted value (bad base64)", pointer,
        topic));
  }
  Result<std::string> plain = (*key)->cipher.open(*sealed, pii_aad(topic, pointer));
  if (!plain.ok()) {
    return data_loss(fmt::format(
        "PII field '{}' of topic '{}' does not decrypt (tampered, or copied from another field "
        "or topic)",
        pointer, topic));
  }
  Result<Json> parsed = Json::parse(*plain);
  wipe(*plain);
  if (!parsed.ok()) {
    return data_loss(fmt::format("PII field '{}' of topic '{}' decrypts to text that is not JSON",
                                 pointer, topic));
  }
  value = std::move(*parsed);
  return {};
}

}  // namespace

Status validate_pii_pointer(std::string_view pointer) {
  if (pointer.empty()) {
    return invalid_argument(
        "a PII field must be a JSON pointer to a field of the event data (\"/citizen/name\"), "
        "not \"\" (the whole data)");
  }
  if (pointer.front() != '/') {
    return invalid_argument(fmt::format(
        "PII field '{}' is not a JSON pointer (RFC 6901): it must start with '/'", pointer));
  }
  for (std::size_t i = 0; i < pointer.size(); ++i) {
    if (pointer[i] != '~') continue;
    if (i + 1 >= pointer.size() || (pointer[i + 1] != '0' && pointer[i + 1] != '1')) {
      return invalid_argument(fmt::format(
          "PII field '{}' has a '~' not followed by 0 or 1 (write '~0' for '~', '~1' for '/')",
          pointer));
    }
  }
  return {};
}

bool is_encrypted_pii(const Json& value) {
  return value.is_string() && value.as_string().starts_with(kEncryptedPrefix);
}

Status encrypt_pii(Json& data, const std::vector<std::string>& pointers, std::string_view topic,
                   const DataKey& key, RandomSource& random) {
  if (key.key_id.empty() || key.key_id.find(':') != std::string::npos) {
    return internal_error(
        fmt::format("PII key id '{}' cannot be written in the enc:v1 form", key.key_id));
  }
  for (const std::string& pointer : pointers) {
    Json* value = data.at_pointer(pointer);
    if (value == nullptr) continue;
    std::string plain = value->dump();
    const std::string sealed = key.cipher.seal(random, plain, pii_aad(topic, pointer));
    wipe(plain);
    std::string encrypted;
    encrypted.reserve(kEncryptedPrefix.size() + key.key_id.size() + 1 +
                      (sealed.size() + 2) / 3 * 4);
    encrypted.append(kEncryptedPrefix).append(key.key_id).append(1, ':');
    encrypted.append(crypto::base64_encode(sealed));
    *value = Json(std::move(encrypted));
  }
  return {};
}

Status reveal_pii(Json& data, const std::vector<std::string>& pointers, std::string_view topic,
                  KeyStore& keys, bool granted) {
  // In reverse order of encryption: when one PII field lies inside another, the outer one
  // was encrypted last, so it is decrypted first and the inner one is then reachable.
  for (auto it = pointers.rbegin(); it != pointers.rend(); ++it) {
    Json* value = data.at_pointer(*it);
    if (value == nullptr) continue;
    if (!granted) {
      *value = Json(kRedacted);
      continue;
    }
    if (!is_encrypted_pii(*value)) continue;
    CIVICBUS_RETURN_IF_ERROR(decrypt_value(*value, *it, topic, keys));
  }
  return {};
}

}  // namespace civicbus::broker
