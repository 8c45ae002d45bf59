// Payload codecs for binary uplinks (LoRaWAN FRMPayload, Sigfox data): a codec is data, a list
// of fixed-offset fields, so a new device type needs a JSON entry, not code. The built-in
// codecs live in data/fleet/codecs.json and are embedded into the library at build time.
//
// A field reads `type` at byte `offset`, and yields value = raw * scale + add under `metric`
// (with `unit`, "" meaning the device type's unit). A field with an `fport` applies only to
// uplinks on that LoRaWAN port; a field without one applies to every uplink (Sigfox has no
// port, so only port-less fields apply there).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"

namespace civicbus::fleet {

enum class FieldType {
  kU8,
  kI8,
  kU16Be,
  kI16Be,
  kU16Le,
  kI16Le,
  kU32Be,
  kI32Be,
  kU32Le,
  kI32Le,
  kF32Be,
  kF32Le,
};
std::string_view field_type_name(FieldType t);  // "u8", "i16be", "f32le", …
Result<FieldType> parse_field_type(std::string_view text);
std::size_t field_type_size(FieldType t);  // bytes read: 1, 2 or 4

struct CodecField {
  std::string metric;
  std::size_t offset = 0;
  FieldType type = FieldType::kU8;
  double scale = 1;
  double add = 0;
  std::optional<int> fport;  // applies only to this LoRaWAN port when set
  std::string unit;          // "" means the device type's unit
};

// One decoded value, before it becomes a Reading (device and time come from the envelope).
struct CodecValue {
  std::string metric;
  double value = 0;
  std::string unit;
};

struct Codec {
  std::string name;
  std::string description;
  std::vector<CodecField> fields;

  // {"name": …, "description": …, "fields": [{"metric", "offset", "type", "scale", "add",
  // "fport", "unit"}]}; errors name the codec and the field.
  static Result<Codec> from_json(const Json& j);
  Json to_json() const;

  // Decodes raw bytes. `fport` is the LoRaWAN port (nullopt for Sigfox). A payload too short
  // for a field is an error naming the codec, the field and the byte offset.
  Result<std::vector<CodecValue>> decode(std::string_view bytes,
                                         std::optional<int> fport = std::nullopt) const;
  Result<std::vector<CodecValue>> decode_hex(std::string_view hex,
                                             std::optional<int> fport = std::nullopt) const;
  Result<std::vector<CodecValue>> decode_base64(std::string_view base64,
                                                std::optional<int> fport = std::nullopt) const;
};

// Codecs by name. A plain value: copy it, share it read-only between threads.
class CodecCatalog {
 public:
  CodecCatalog() = default;
  // The codecs of data/fleet/codecs.json, embedded at build time.
  static CodecCatalog builtin();
  // {"codecs": [Codec, …]} or a bare array of codecs.
  static Result<CodecCatalog> from_json(const Json& j);
  static Result<CodecCatalog> parse(std::string_view json_text);

  // Adds or replaces (a node may override a built-in codec).
  Status add(Codec codec);
  const Codec* find(std::string_view name) const;
  std::vector<std::string> names() const;
  std::size_t size() const { return codecs_.size(); }

 private:
  std::map<std::string, Codec, std::less<>> codecs_;
};

// The text of data/fleet/codecs.json (generated .cpp, see the top-level CMakeLists.txt).
std::string_view builtin_codecs_json();

}  // namespace civicbus::fleet
