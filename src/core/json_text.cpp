#include "core/json_text.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>

namespace civicbus::detail {
namespace {

// Recursive descent over the raw bytes. Speed does not matter here (simdjson handles every
// valid document of normal size); precise offsets and reasons do.
class TextParser {
 public:
  explicit TextParser(std::string_view text) : text_(text) {}

  Result<Json> parse_document(std::string* error_detail, std::size_t* error_offset) {
    skip_whitespace();
    Json value;
    bool ok = false;
    if (pos_ >= text_.size()) {
      fail("no JSON value (the text is empty or only whitespace)");
    } else {
      ok = parse_value(value, 0);
      if (ok) {
        skip_whitespace();
        if (pos_ < text_.size()) ok = fail("unexpected content after the JSON value");
      }
    }
    if (ok) return value;
    if (error_detail != nullptr) *error_detail = error_;
    if (error_offset != nullptr) *error_offset = error_pos_;
    return invalid_argument(fmt::format("invalid JSON at byte {}: {}", error_pos_, error_));
  }

 private:
  bool fail(std::string reason) {
    error_ = std::move(reason);
    error_pos_ = pos_;
    return false;
  }

  void skip_whitespace() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
      ++pos_;
    }
  }

  bool consume_literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) {
      return fail(fmt::format("expected '{}'", word));
    }
    pos_ += word.size();
    return true;
  }

  bool parse_value(Json& out, std::size_t depth) {
    if (pos_ >= text_.size()) return fail("unexpected end of text, expected a value");
    switch (text_[pos_]) {
      case '{':
        return parse_object(out, depth + 1);
      case '[':
        return parse_array(out, depth + 1);
      case '"': {
        std::string s;
        if (!parse_string(s)) return false;
        out = Json(std::move(s));
        return true;
      }
      case 't':
        out = Json(true);
        return consume_literal("true");
      case 'f':
        out = Json(false);
        return consume_literal("false");
      case 'n':
        out = Json();
        return consume_literal("null");
      default:
        if (text_[pos_] == '-' || (text_[pos_] >= '0' && text_[pos_] <= '9')) {
          return parse_number(out);
        }
        return fail(fmt::format("unexpected character '{}', expected a value", printable(pos_)));
    }
  }

  std::string printable(std::size_t at) const {
    const auto c = static_cast<unsigned char>(text_[at]);
    if (c >= 0x20 && c < 0x7F) return std::string(1, static_cast<char>(c));
    return fmt::format("\\x{:02x}", c);
  }

  bool parse_object(Json& out, std::size_t depth) {
    if (depth > kMaxJsonDepth) return fail("nesting deeper than 1024 levels");
    ++pos_;  // '{'
    Json::Object members;
    skip_whitespace();
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      out = Json(std::move(members));
      return true;
    }
    while (true) {
      skip_whitespace();
      if (pos_ >= text_.size()) return fail("unexpected end of text inside an object");
      if (text_[pos_] != '"') return fail("expected a member name in double quotes");
      std::string key;
      if (!parse_string(key)) return false;
      skip_whitespace();
      if (pos_ >= text_.size() || text_[pos_] != ':') {
        return fail(fmt::format("expected ':' after member name \"{}\"", key));
      }
      ++pos_;
      skip_whitespace();
      Json value;
      if (!parse_value(value, depth)) return false;
      // Duplicate names: last one wins, as in the simdjson path.
      bool replaced = false;
      for (auto& m : members) {
        if (m.first == key) {
          m.second = std::move(value);
          replaced = true;
          break;
        }
      }
      if (!replaced) members.emplace_back(std::move(key), std::move(value));
      skip_whitespace();
      if (pos_ >= text_.size()) return fail("unexpected end of text inside an object");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == '}') {
        ++pos_;
        out = Json(std::move(members));
        return true;
      }
      return fail("expected ',' or '}' after an object member");
    }
  }

  bool parse_array(Json& out, std::size_t depth) {
    if (depth > kMaxJsonDepth) return fail("nesting deeper than 1024 levels");
    ++pos_;  // '['
    Json::Array items;
    skip_whitespace();
    if (pos_ < text_.size() && text_[pos_] == ']') {
      ++pos_;
      out = Json(std::move(items));
      return true;
    }
    while (true) {
      skip_whitespace();
      Json value;
      if (!parse_value(value, depth)) return false;
      items.push_back(std::move(value));
      skip_whitespace();
      if (pos_ >= text_.size()) return fail("unexpected end of text inside an array");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == ']') {
        ++pos_;
        out = Json(std::move(items));
        return true;
      }
      return fail("expected ',' or ']' after an array element");
    }
  }

  bool parse_hex4(char32_t& out) {
    if (text_.size() - pos_ < 4) return fail("truncated \\u escape");
    out = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_ + i];
      out <<= 4;
      if (c >= '0' && c <= '9') {
        out |= static_cast<char32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        out |= static_cast<char32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        out |= static_cast<char32_t>(c - 'A' + 10);
      } else {
        pos_ += static_cast<std::size_t>(i);
        return fail("\\u escape needs four hex digits");
      }
    }
    pos_ += 4;
    return true;
  }

  bool parse_string(std::string& out) {
    ++pos_;  // opening quote
    while (true) {
      if (pos_ >= text_.size()) return fail("unterminated string");
      const auto c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return fail("control character in a string must be escaped");
      if (c >= 0x80) {
        const std::size_t length =
            utf8_sequence_length(text_.data() + pos_, text_.data() + text_.size());
        if (length == 0) return fail("invalid UTF-8 in a string");
        out.append(text_.data() + pos_, length);
        pos_ += length;
        continue;
      }
      if (c != '\\') {
        out += static_cast<char>(c);
        ++pos_;
        continue;
      }
      ++pos_;
      if (pos_ >= text_.size()) return fail("unterminated escape sequence");
      const char e = text_[pos_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          const std::size_t escape_start = pos_ - 2;
          char32_t cp = 0;
          if (!parse_hex4(cp)) return false;
          if (cp >= 0xDC00 && cp <= 0xDFFF) {
            pos_ = escape_start;
            return fail("lone low surrogate in \\u escape");
          }
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            char32_t low = 0;
            if (text_.substr(pos_, 2) != "\\u") {
              pos_ = escape_start;
              return fail("high surrogate in \\u escape is not followed by a low surrogate");
            }
            pos_ += 2;
            if (!parse_hex4(low)) return false;
            if (low < 0xDC00 || low > 0xDFFF) {
              pos_ = escape_start;
              return fail("high surrogate in \\u escape is not followed by a low surrogate");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          pos_ -= 2;
          return fail(fmt::format("invalid escape '\\{}'", printable(pos_ + 1)));
      }
    }
  }

  bool parse_number(Json& out) {
    const std::size_t start = pos_;
    auto digit = [&](std::size_t at) {
      return at < text_.size() && text_[at] >= '0' && text_[at] <= '9';
    };
    if (text_[pos_] == '-') ++pos_;
    if (!digit(pos_)) return fail("expected a digit");
    if (text_[pos_] == '0') {
      ++pos_;
      if (digit(pos_)) return fail("leading zeros are not allowed in numbers");
    } else {
      while (digit(pos_)) ++pos_;
    }
    bool integral = true;
    if (pos_ < text_.size() && text_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (!digit(pos_)) return fail("expected a digit after the decimal point");
      while (digit(pos_)) ++pos_;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (!digit(pos_)) return fail("expected a digit in the exponent");
      while (digit(pos_)) ++pos_;
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    if (integral) {
      std::int64_t i = 0;
      auto [end, ec] = std::from_chars(first, last, i);
      if (ec == std::errc() && end == last) {
        out = Json(static_cast<long long>(i));
        return true;
      }
    }
    double d = 0;
    auto [end, ec] = std::from_chars(first, last, d);
    if (ec == std::errc::result_out_of_range) {
      // Underflow reads as zero; overflow has no JSON-representable value.
      const std::string_view digits(first, static_cast<std::size_t>(last - first));
      const std::size_t e = digits.find_first_of("eE");
      const bool negative_exponent =
          e != std::string_view::npos && e + 1 < digits.size() && digits[e + 1] == '-';
      if (!negative_exponent) {
        pos_ = start;
        return fail("number is too large for a double");
      }
      d = digits.front() == '-' ? -0.0 : 0.0;
    } else if (ec != std::errc() || end != last) {
      pos_ = start;
      return fail("malformed number");
    }
    out = Json(d);
    return true;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  std::string error_;
  std::size_t error_pos_ = 0;
};

}  // namespace

Result<Json> parse_json_text(std::string_view text, std::string* error_detail,
                             std::size_t* error_offset) {
  return TextParser(text).parse_document(error_detail, error_offset);
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

void append_scalar_text(std::string& out, const Json& value) {
  switch (value.type()) {
    case Json::Type::kNull:
      return;
    case Json::Type::kString:
      out += value.as_string();
      return;
    default:
      value.dump_to(out);
      return;
  }
}

std::string scalar_text(const Json& value) {
  std::string out;
  append_scalar_text(out, value);
  return out;
}

}  // namespace civicbus::detail
