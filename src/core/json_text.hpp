// Private helpers for JSON text and UTF-8, shared by json.cpp and the JSON Schema validator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "civicbus/core/json.hpp"

namespace civicbus::detail {

// Nesting deeper than this is rejected by both parsers (simdjson's default is the same).
inline constexpr std::size_t kMaxJsonDepth = 1024;

// A strict RFC 8259 parser that reads byte by byte. Json::parse uses it only when simdjson
// refuses a text: it locates the error (byte offset and reason in `error_detail` and
// `error_offset`, when given) and accepts integers too large for 64 bits (as doubles).
Result<Json> parse_json_text(std::string_view text, std::string* error_detail = nullptr,
                             std::size_t* error_offset = nullptr);

// Length of the well-formed UTF-8 sequence starting at `p` (1-4), or 0 if it is malformed
// (overlong, surrogate, beyond U+10FFFF or truncated).
inline std::size_t utf8_sequence_length(const char* p, const char* end) {
  const auto b0 = static_cast<unsigned char>(p[0]);
  if (b0 < 0x80) return 1;
  const auto at = [&](std::size_t i) { return static_cast<unsigned char>(p[i]); };
  const auto cont = [&](std::size_t i) { return (at(i) & 0xC0) == 0x80; };
  const std::size_t avail = static_cast<std::size_t>(end - p);
  if (b0 >= 0xC2 && b0 <= 0xDF) return avail >= 2 && cont(1) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (avail < 3 || !cont(1) || !cont(2)) return 0;
    if (b0 == 0xE0 && at(1) < 0xA0) return 0;   // overlong
    if (b0 == 0xED && at(1) >= 0xA0) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (avail < 4 || !cont(1) || !cont(2) || !cont(3)) return 0;
    if (b0 == 0xF0 && at(1) < 0x90) return 0;   // overlong
    if (b0 == 0xF4 && at(1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

// Decodes the code point at `p` and advances it; a malformed byte decodes as U+FFFD and
// advances by one, so any byte string can be walked.
inline char32_t next_code_point(const char*& p, const char* end) {
  const std::size_t length = utf8_sequence_length(p, end);
  const auto b = [&](std::size_t i) {
    return static_cast<char32_t>(static_cast<unsigned char>(p[i]));
  };
  char32_t cp = 0xFFFD;
  switch (length) {
    case 1:
      cp = b(0);
      break;
    case 2:
      cp = ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
      break;
    case 3:
      cp = ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
      break;
    case 4:
      cp = ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
      break;
    default:
      break;
  }
  p += length == 0 ? 1 : length;
  return cp;
}

// Number of code points in valid UTF-8 (what minLength and maxLength count).
inline std::size_t count_code_points(std::string_view s) {
  std::size_t count = 0;
  for (unsigned char c : s) count += (c & 0xC0) != 0x80;
  return count;
}

void append_utf8(std::string& out, char32_t cp);

// A JSON value as the plain text that CSV cells, XML text, query strings and form fields
// carry: a string as it is, null as nothing, anything else (numbers, booleans, arrays,
// objects) as its JSON.
void append_scalar_text(std::string& out, const Json& value);
std::string scalar_text(const Json& value);

}  // namespace civicbus::detail
