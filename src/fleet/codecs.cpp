#include "fleet/codecs.hpp"

#include <fmt/format.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <utility>

#include "civicbus/core/crypto.hpp"

namespace civicbus::fleet {
namespace {

struct TypeInfo {
  FieldType type;
  std::string_view name;
  std::size_t size;
};
constexpr std::array<TypeInfo, 12> kTypes{{
    {FieldType::kU8, "u8", 1},
    {FieldType::kI8, "i8", 1},
    {FieldType::kU16Be, "u16be", 2},
    {FieldType::kI16Be, "i16be", 2},
    {FieldType::kU16Le, "u16le", 2},
    {FieldType::kI16Le, "i16le", 2},
    {FieldType::kU32Be, "u32be", 4},
    {FieldType::kI32Be, "i32be", 4},
    {FieldType::kU32Le, "u32le", 4},
    {FieldType::kI32Le, "i32le", 4},
    {FieldType::kF32Be, "f32be", 4},
    {FieldType::kF32Le, "f32le", 4},
}};

std::uint32_t read_be(const unsigned char* p, std::size_t n) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}
std::uint32_t read_le(const unsigned char* p, std::size_t n) {
  std::uint32_t v = 0;
  for (std::size_t i = n; i > 0; --i) v = (v << 8) | p[i - 1];
  return v;
}

double raw_value(FieldType t, const unsigned char* p) {
  switch (t) {
    case FieldType::kU8:
      return p[0];
    case FieldType::kI8:
      return static_cast<std::int8_t>(p[0]);
    case FieldType::kU16Be:
      return read_be(p, 2);
    case FieldType::kI16Be:
      return static_cast<std::int16_t>(read_be(p, 2));
    case FieldType::kU16Le:
      return read_le(p, 2);
    case FieldType::kI16Le:
      return static_cast<std::int16_t>(read_le(p, 2));
    case FieldType::kU32Be:
      return read_be(p, 4);
    case FieldType::kI32Be:
      return static_cast<std::int32_t>(read_be(p, 4));
    case FieldType::kU32Le:
      return read_le(p, 4);
    case FieldType::kI32Le:
      return static_cast<std::int32_t>(read_le(p, 4));
    case FieldType::kF32Be:
      return std::bit_cast<float>(read_be(p, 4));
    case FieldType::kF32Le:
      return std::bit_cast<float>(read_le(p, 4));
  }
  return 0;
}

Result<double> number_member(const Json& j, std::string_view key, double fallback,
                             std::string_view where) {
  const Json* v = j.find(key);
  if (v == nullptr) return fallback;
  if (!v->is_number())
    return invalid_argument(fmt::format("{}: '{}' must be a number", where, key));
  return v->as_double();
}

}  // namespace

std::string_view field_type_name(FieldType t) {
  for (const auto& info : kTypes) {
    if (info.type == t) return info.name;
  }
  return "?";
}

Result<FieldType> parse_field_type(std::string_view text) {
  for (const auto& info : kTypes) {
    if (info.name == text) return info.type;
  }
  return invalid_argument(fmt::format(
      "field type '{}' is not one of u8, i8, u16be, i16be, u16le, i16le, u32be, i32be, u32le, "
      "i32le, f32be, f32le",
      text));
}

std::size_t field_type_size(FieldType t) {
  for (const auto& info : kTypes) {
    if (info.type == t) return info.size;
  }
  return 1;
}

Result<Codec> Codec::from_json(const Json& j) {
  if (!j.is_object()) return invalid_argument("a codec must be a JSON object");
  Codec codec;
  codec.name = j.get_string("name");
  if (codec.name.empty()) return invalid_argument("a codec needs a non-empty 'name'");
  codec.description = j.get_string("description");
  const Json* fields = j.find("fields");
  if (fields == nullptr || !fields->is_array() || fields->size() == 0) {
    return invalid_argument(fmt::format("codec '{}' needs a non-empty 'fields' array", codec.name));
  }
  std::size_t index = 0;
  for (const Json& f : fields->as_array()) {
    const std::string where = fmt::format("codec '{}' field {}", codec.name, index++);
    if (!f.is_object()) return invalid_argument(where + " must be an object");
    CodecField field;
    field.metric = f.get_string("metric");
    if (field.metric.empty()) return invalid_argument(where + " needs a non-empty 'metric'");
    const std::string named = fmt::format("codec '{}' field '{}'", codec.name, field.metric);
    const Json* offset = f.find("offset");
    if (offset == nullptr || !offset->is_int() || offset->as_int() < 0 || offset->as_int() > 255) {
      return invalid_argument(named + ": 'offset' must be an integer byte offset 0..255");
    }
    field.offset = static_cast<std::size_t>(offset->as_int());
    auto type = parse_field_type(f.get_string("type"));
    if (!type.ok()) return type.status().with_context(named);
    field.type = *type;
    CIVICBUS_ASSIGN_OR_RETURN(field.scale, number_member(f, "scale", 1, named));
    CIVICBUS_ASSIGN_OR_RETURN(field.add, number_member(f, "add", 0, named));
    if (const Json* port = f.find("fport"); port != nullptr && !port->is_null()) {
      if (!port->is_int() || port->as_int() < 1 || port->as_int() > 255) {
        return invalid_argument(named + ": 'fport' must be an integer 1..255");
      }
      field.fport = static_cast<int>(port->as_int());
    }
    field.unit = f.get_string("unit");
    codec.fields.push_back(std::move(field));
  }
  return codec;
}

Json Codec::to_json() const {
  Json out = Json::object({{"name", name}, {"description", description}});
  Json list = Json::array();
  for (const CodecField& f : fields) {
    Json field = Json::object({{"metric", f.metric},
                               {"offset", static_cast<std::int64_t>(f.offset)},
                               {"type", field_type_name(f.type)},
                               {"scale", f.scale},
                               {"add", f.add}});
    if (f.fport) field.set("fport", *f.fport);
    if (!f.unit.empty()) field.set("unit", f.unit);
    list.push_back(std::move(field));
  }
  out.set("fields", std::move(list));
  return out;
}

Result<std::vector<CodecValue>> Codec::decode(std::string_view bytes,
                                              std::optional<int> fport) const {
  std::vector<CodecValue> values;
  values.reserve(fields.size());
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  for (const CodecField& f : fields) {
    if (f.fport && f.fport != fport) continue;
    const std::size_t size = field_type_size(f.type);
    if (f.offset + size > bytes.size()) {
      return invalid_argument(fmt::format(
          "codec '{}' field '{}' ({} at byte offset {}) needs {} bytes but the payload has {}",
          name, f.metric, field_type_name(f.type), f.offset, f.offset + size, bytes.size()));
    }
    const double raw = raw_value(f.type, data + f.offset);
    if (!std::isfinite(raw)) {
      return invalid_argument(
          fmt::format("codec '{}' field '{}' at byte offset {} is not a finite "
                      "number",
                      name, f.metric, f.offset));
    }
    values.push_back({f.metric, raw * f.scale + f.add, f.unit});
  }
  if (values.empty()) {
    return invalid_argument(
        fport ? fmt::format("codec '{}' has no field for fPort {}", name, *fport)
              : fmt::format("codec '{}' has no field for uplinks without a port", name));
  }
  return values;
}

Result<std::vector<CodecValue>> Codec::decode_hex(std::string_view hex,
                                                  std::optional<int> fport) const {
  auto bytes = crypto::from_hex(hex);
  if (!bytes.ok()) {
    return invalid_argument(
        fmt::format("codec '{}': payload is not valid hex: {}", name, bytes.status().message()));
  }
  return decode(*bytes, fport);
}

Result<std::vector<CodecValue>> Codec::decode_base64(std::string_view base64,
                                                     std::optional<int> fport) const {
  auto bytes = crypto::base64_decode(base64);
  if (!bytes.ok()) {
    return invalid_argument(
        fmt::format("codec '{}': payload is not valid base64: {}", name, bytes.status().message()));
  }
  return decode(*bytes, fport);
}

CodecCatalog CodecCatalog::builtin() {
  auto catalog = parse(builtin_codecs_json());
  // The embedded file is checked by the tests; a broken one yields an empty catalogue rather
  // than a crash.
  return catalog.ok() ? std::move(catalog).value() : CodecCatalog();
}

Result<CodecCatalog> CodecCatalog::from_json(const Json& j) {
  const Json* list = j.is_array() ? &j : j.find("codecs");
  if (list == nullptr || !list->is_array()) {
    return invalid_argument("a codec catalogue must be an array of codecs or {\"codecs\": [...]}");
  }
  CodecCatalog catalog;
  for (const Json& item : list->as_array()) {
    CIVICBUS_ASSIGN_OR_RETURN(Codec codec, Codec::from_json(item));
    if (catalog.find(codec.name) != nullptr) {
      return invalid_argument(fmt::format("codec '{}' is defined twice", codec.name));
    }
    CIVICBUS_RETURN_IF_ERROR(catalog.add(std::move(codec)));
  }
  return catalog;
}

Result<CodecCatalog> CodecCatalog::parse(std::string_view json_text) {
  auto j = Json::parse(json_text);
  if (!j.ok()) return j.status().with_context("codec catalogue");
  return from_json(*j);
}

Status CodecCatalog::add(Codec codec) {
  if (codec.name.empty()) return invalid_argument("a codec needs a non-empty name");
  if (codec.fields.empty()) {
    return invalid_argument(fmt::format("codec '{}' has no fields", codec.name));
  }
  std::string key = codec.name;
  codecs_.insert_or_assign(std::move(key), std::move(codec));
  return Status();
}

const Codec* CodecCatalog::find(std::string_view name) const {
  auto it = codecs_.find(name);
  return it == codecs_.end() ? nullptr : &it->second;
}

std::vector<std::string> CodecCatalog::names() const {
  std::vector<std::string> out;
  out.reserve(codecs_.size());
  for (const auto& [name, codec] : codecs_) out.push_back(name);
  return out;
}

}  // namespace civicbus::fleet
