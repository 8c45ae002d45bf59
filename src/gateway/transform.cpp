#include "gateway/transform.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <climits>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "core/ascii.hpp"
#include "core/json_text.hpp"
#include "core/uri_reference.hpp"
#include "core/xml_tree.hpp"
#include "http/framing.hpp"

namespace civicbus::gateway {
namespace {

// ---- Text helpers -----------------------------------------------------------------------

constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";

using http::detail::trim_ows;  // http/framing.hpp

// Decodes one UTF-8 sequence at s[i] (advancing i); nullopt for ill-formed UTF-8 (overlong
// forms, surrogates, values above U+10FFFF, truncated sequences).
std::optional<char32_t> decode_utf8(std::string_view s, std::size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  int extra = 0;
  char32_t cp = 0;
  char32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    extra = 1, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    extra = 2, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    extra = 3, cp = b0 & 0x07, min = 0x10000;
  } else {
    return std::nullopt;
  }
  if (i + static_cast<std::size_t>(extra) >= s.size()) return std::nullopt;
  for (int k = 1; k <= extra; ++k) {
    const auto b = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
    if ((b & 0xC0) != 0x80) return std::nullopt;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return std::nullopt;
  i += static_cast<std::size_t>(extra) + 1;
  return cp;
}

// Offset of the first byte that is not part of well-formed UTF-8, or npos.
std::size_t find_invalid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    // ASCII runs are the common case.
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const std::size_t at = i;
    if (!decode_utf8(s, i)) return at;
  }
  return std::string_view::npos;
}

std::size_t line_of_offset(std::string_view s, std::size_t offset) {
  return 1 + static_cast<std::size_t>(std::count(s.begin(), s.begin() + offset, '\n'));
}

// XML 1.0 (fifth edition) NameStartChar and NameChar.
bool is_name_start_char(char32_t c) {
  return c == ':' || (c >= 'A' && c <= 'Z') || c == '_' || (c >= 'a' && c <= 'z') ||
         (c >= 0xC0 && c <= 0xD6) || (c >= 0xD8 && c <= 0xF6) || (c >= 0xF8 && c <= 0x2FF) ||
         (c >= 0x370 && c <= 0x37D) || (c >= 0x37F && c <= 0x1FFF) ||
         (c >= 0x200C && c <= 0x200D) || (c >= 0x2070 && c <= 0x218F) ||
         (c >= 0x2C00 && c <= 0x2FEF) || (c >= 0x3001 && c <= 0xD7FF) ||
         (c >= 0xF900 && c <= 0xFDCF) || (c >= 0xFDF0 && c <= 0xFFFD) ||
         (c >= 0x10000 && c <= 0xEFFFF);
}

bool is_name_char(char32_t c) {
  return is_name_start_char(c) || c == '-' || c == '.' || (c >= '0' && c <= '9') || c == 0xB7 ||
         (c >= 0x300 && c <= 0x36F) || (c >= 0x203F && c <= 0x2040);
}

bool is_xml_name(std::string_view name) {
  if (name.empty()) return false;
  std::size_t i = 0;
  bool first = true;
  while (i < name.size()) {
    const auto c = decode_utf8(name, i);
    if (!c || !(first ? is_name_start_char(*c) : is_name_char(*c))) return false;
    first = false;
  }
  return true;
}

// XML 1.0 Char: what a document may carry at all, even as a character reference.
bool is_xml_char(char32_t c) {
  return c == 0x9 || c == 0xA || c == 0xD || (c >= 0x20 && c <= 0xD7FF) ||
         (c >= 0xE000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFF);
}

std::string pointer_append(const std::string& path, std::string_view token) {
  std::string out = path;
  out += '/';
  detail::append_pointer_token(out, token);
  return out;
}

std::string pointer_append(const std::string& path, std::size_t index) {
  return path + "/" + std::to_string(index);
}

std::string_view display_path(const std::string& path) {
  return path.empty() ? std::string_view("/ (the document)") : std::string_view(path);
}

// Shortens a value quoted in an error message.
std::string excerpt(std::string_view s, std::size_t max = 40) {
  if (s.size() <= max) return std::string(s);
  std::size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return std::string(s.substr(0, cut)) + "...";
}

// ---- Typed values -----------------------------------------------------------------------

// True when `s` matches the JSON number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
bool is_json_number_text(std::string_view s, bool& integral) {
  std::size_t i = 0;
  const auto digits = [&] {
    const std::size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i - start;
  };
  if (i < s.size() && s[i] == '-') ++i;
  if (i >= s.size()) return false;
  if (s[i] == '0') {
    ++i;
  } else if (digits() == 0) {
    return false;
  }
  integral = true;
  if (i < s.size() && s[i] == '.') {
    ++i;
    integral = false;
    if (digits() == 0) return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    integral = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (digits() == 0) return false;
  }
  return i == s.size();
}

// The value of an XML text or CSV cell: a string, or with infer_types a number or boolean when
// writing that back as JSON gives exactly the same text (so nothing is lost either way).
Json scalar_value(std::string text, bool infer_types) {
  if (!infer_types) return Json(std::move(text));
  if (text == "true") return Json(true);
  if (text == "false") return Json(false);
  bool integral = false;
  if (!is_json_number_text(text, integral)) return Json(std::move(text));
  const char* first = text.data();
  const char* last = text.data() + text.size();
  if (integral) {
    std::int64_t i = 0;
    auto [end, ec] = std::from_chars(first, last, i);
    if (ec == std::errc() && end == last && std::to_string(i) == text) return Json(i);
  }
  double d = 0;
  auto [end, ec] = std::from_chars(first, last, d);
  if (ec == std::errc() && end == last) {
    Json number(d);
    if (number.dump() == text) return number;
  }
  return Json(std::move(text));
}

using civicbus::detail::append_scalar_text;  // the text of a JSON scalar in XML or CSV

std::string_view json_type_name(const Json& value) {
  switch (value.type()) {
    case Json::Type::kNull:
      return "null";
    case Json::Type::kBool:
      return "a boolean";
    case Json::Type::kInt:
    case Json::Type::kDouble:
      return "a number";
    case Json::Type::kString:
      return "a string";
    case Json::Type::kArray:
      return "an array";
    case Json::Type::kObject:
      return "an object";
  }
  return "a value";
}

Status input_too_large(std::string_view what, std::size_t size, std::size_t limit) {
  return resource_exhausted(
      fmt::format("the {} body is {} bytes, more than the limit of {} bytes (TransformOptions::"
                  "max_input_bytes)",
                  what, size, limit));
}

Status output_too_large(std::string_view what, std::size_t limit) {
  return resource_exhausted(
      fmt::format("the {} written from this body would be larger than the limit of {} bytes "
                  "(TransformOptions::max_output_bytes)",
                  what, limit));
}

// ---- JSON -> XML ------------------------------------------------------------------------

class XmlWriter {
 public:
  explicit XmlWriter(const TransformOptions& options) : options_(options) {}

  Result<std::string> write(const Json& document) {
    if (!is_xml_name(options_.xml_root_name)) {
      return invalid_argument(fmt::format("TransformOptions::xml_root_name '{}' is not an XML name",
                                          options_.xml_root_name));
    }
    if (!is_xml_name(options_.xml_item_name)) {
      return invalid_argument(fmt::format("TransformOptions::xml_item_name '{}' is not an XML name",
                                          options_.xml_item_name));
    }
    if (options_.xml_declaration) out_ += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
    if (document.is_object() && document.size() == 1 &&
        !document.as_object()[0].second.is_array()) {
      const auto& [name, value] = document.as_object()[0];
      CIVICBUS_RETURN_IF_ERROR(check_element_name(name, pointer_append("", name)));
      CIVICBUS_RETURN_IF_ERROR(element(name, value, pointer_append("", name), 1));
    } else if (document.is_array()) {
      // <root><item>...</item>...</root>
      if (options_.max_depth < 2 && !document.as_array().empty()) return too_deep("");
      out_ += '<';
      out_ += options_.xml_root_name;
      out_ += '>';
      const Json::Array& items = document.as_array();
      for (std::size_t i = 0; i < items.size(); ++i) {
        CIVICBUS_RETURN_IF_ERROR(
            element(options_.xml_item_name, items[i], pointer_append("", i), 2));
      }
      out_ += "</";
      out_ += options_.xml_root_name;
      out_ += '>';
    } else {
      CIVICBUS_RETURN_IF_ERROR(element(options_.xml_root_name, document, "", 1));
    }
    if (out_.size() > options_.max_output_bytes)
      return output_too_large("XML", options_.max_output_bytes);
    return std::move(out_);
  }

 private:
  Status too_deep(const std::string& path) const {
    return invalid_argument(
        fmt::format("the JSON value at {} would nest XML elements deeper than {} levels "
                    "(TransformOptions::max_depth)",
                    display_path(path), options_.max_depth));
  }

  static Status check_element_name(std::string_view name, const std::string& path) {
    if (is_xml_name(name)) return Status();
    return invalid_argument(fmt::format(
        "the JSON key '{}' at {} is not an XML element name (names start with a letter, '_' or "
        "':' and hold letters, digits, '-', '.', '_' or ':')",
        excerpt(name), path));
  }

  // Refuses what XML 1.0 cannot carry (most C0 controls, U+FFFE, U+FFFF) and ill-formed UTF-8.
  static Status check_text(std::string_view text, const std::string& path) {
    std::size_t i = 0;
    while (i < text.size()) {
      const std::size_t at = i;
      const auto c = decode_utf8(text, i);
      if (!c) {
        return invalid_argument(
            fmt::format("the string at {} is not valid UTF-8 (byte {})", display_path(path), at));
      }
      if (!is_xml_char(*c)) {
        return invalid_argument(fmt::format(
            "the string at {} contains U+{:04X}, which an XML 1.0 document cannot carry",
            display_path(path), static_cast<std::uint32_t>(*c)));
      }
    }
    return Status();
  }

  // Escapes character data; in an attribute value also '"' and the whitespace that
  // attribute-value normalisation would turn into spaces (references keep it).
  void append_escaped(std::string_view text, bool attribute) {
    for (char c : text) {
      switch (c) {
        case '&':
          out_ += "&amp;";
          break;
        case '<':
          out_ += "&lt;";
          break;
        case '>':
          out_ += "&gt;";  // so "]]>" never appears
          break;
        case '\r':
          out_ += "&#13;";  // parsers turn a literal CR into LF
          break;
        case '"':
          out_ += attribute ? "&quot;" : "\"";
          break;
        case '\t':
          out_ += attribute ? "&#9;" : "\t";
          break;
        case '\n':
          out_ += attribute ? "&#10;" : "\n";
          break;
        default:
          out_ += c;
      }
    }
  }

  Status scalar_text(const Json& value, const std::string& path, std::string& text) {
    text.clear();
    append_scalar_text(text, value);
    if (value.is_string()) CIVICBUS_RETURN_IF_ERROR(check_text(text, path));
    return Status();
  }

  // Writes <name>...</name> for one value (an array's items are written by the caller).
  Status element(std::string_view name, const Json& value, const std::string& path,
                 std::size_t depth) {
    if (depth > options_.max_depth) return too_deep(path);
    if (out_.size() > options_.max_output_bytes)
      return output_too_large("XML", options_.max_output_bytes);
    std::string text;
    switch (value.type()) {
      case Json::Type::kNull:
        out_ += '<';
        out_ += name;
        out_ += "/>";
        return Status();
      case Json::Type::kArray:
        return invalid_argument(fmt::format(
            "the JSON value at {} is an array inside an array; XML has no element for the inner "
            "array (wrap it in an object)",
            display_path(path)));
      case Json::Type::kObject:
        return object_element(name, value.as_object(), path, depth);
      default:
        CIVICBUS_RETURN_IF_ERROR(scalar_text(value, path, text));
        out_ += '<';
        out_ += name;
        out_ += '>';
        append_escaped(text, false);
        out_ += "</";
        out_ += name;
        out_ += '>';
        return Status();
    }
  }

  Status object_element(std::string_view name, const Json::Object& members, const std::string& path,
                        std::size_t depth) {
    out_ += '<';
    out_ += name;
    std::string text;
    const Json* content = nullptr;
    std::unordered_set<std::string_view> attribute_names;
    for (const auto& [key, value] : members) {
      if (key == "#text") {
        content = &value;
        continue;
      }
      if (key.empty() || key[0] != '@') continue;
      const std::string member_path = pointer_append(path, key);
      const std::string_view attribute = std::string_view(key).substr(1);
      if (!is_xml_name(attribute)) {
        return invalid_argument(
            fmt::format("the JSON key '{}' at {} is not '@' followed by an XML attribute name",
                        excerpt(key), member_path));
      }
      if (!attribute_names.insert(attribute).second) {
        return invalid_argument(
            fmt::format("the attribute '{}' appears twice at {}", attribute, member_path));
      }
      if (value.is_null()) continue;  // an absent attribute
      if (value.is_array() || value.is_object()) {
        return invalid_argument(fmt::format(
            "the attribute at {} is {}; attribute values are strings, numbers or booleans",
            member_path, json_type_name(value)));
      }
      CIVICBUS_RETURN_IF_ERROR(scalar_text(value, member_path, text));
      out_ += ' ';
      out_ += attribute;
      out_ += "=\"";
      append_escaped(text, true);
      out_ += '"';
    }
    text.clear();
    if (content != nullptr && !content->is_null()) {
      const std::string member_path = pointer_append(path, "#text");
      if (content->is_array() || content->is_object()) {
        return invalid_argument(
            fmt::format("the \"#text\" at {} is {}; element text is a string, number or boolean",
                        member_path, json_type_name(*content)));
      }
      CIVICBUS_RETURN_IF_ERROR(scalar_text(*content, member_path, text));
    }
    const bool has_children = std::any_of(members.begin(), members.end(), [](const auto& m) {
      return m.first != "#text" && (m.first.empty() || m.first[0] != '@') &&
             !(m.second.is_array() && m.second.as_array().empty());
    });
    if (text.empty() && !has_children) {
      out_ += "/>";
      return Status();
    }
    out_ += '>';
    // Text first: mixed content keeps its text but not where it stood among the children.
    append_escaped(text, false);
    for (const auto& [key, value] : members) {
      if (key == "#text" || (!key.empty() && key[0] == '@')) continue;
      const std::string member_path = pointer_append(path, key);
      CIVICBUS_RETURN_IF_ERROR(check_element_name(key, member_path));
      if (value.is_array()) {
        const Json::Array& items = value.as_array();
        for (std::size_t i = 0; i < items.size(); ++i) {
          CIVICBUS_RETURN_IF_ERROR(
              element(key, items[i], pointer_append(member_path, i), depth + 1));
        }
      } else {
        CIVICBUS_RETURN_IF_ERROR(element(key, value, member_path, depth + 1));
      }
    }
    out_ += "</";
    out_ += name;
    out_ += '>';
    return Status();
  }

  const TransformOptions& options_;
  std::string out_;
};

// ---- CSV --------------------------------------------------------------------------------

class CsvReader {
 public:
  CsvReader(std::string_view text, const TransformOptions& options) : s_(text), options_(options) {}

  Result<Json> read() {
    Json::Array rows;
    std::vector<std::string> header;
    std::vector<std::string> fields;
    std::size_t header_line = 0;
    std::size_t header_bytes = 0;
    std::size_t output_bytes = 2;
    for (;;) {
      std::size_t record_line = 0;
      CIVICBUS_ASSIGN_OR_RETURN(const bool more, next_record(fields, record_line));
      if (!more) break;
      if (header_line == 0) {
        header_line = record_line;
        std::unordered_map<std::string_view, std::size_t> seen;
        header = std::move(fields);
        for (std::size_t i = 0; i < header.size(); ++i) {
          auto [it, inserted] = seen.emplace(header[i], i);
          if (!inserted) {
            return invalid_argument(fmt::format(
                "CSV line {}: the header names the column '{}' twice (fields {} and {}); "
                "column names must differ, they become JSON keys",
                record_line, excerpt(header[i]), it->second + 1, i + 1));
          }
          header_bytes += header[i].size() + 4;  // "name":
        }
        fields = {};
        continue;
      }
      if (fields.size() != header.size()) {
        return invalid_argument(
            fmt::format("CSV line {} has {} field{}, but the header (line {}) has {}", record_line,
                        fields.size(), fields.size() == 1 ? "" : "s", header_line, header.size()));
      }
      Json::Object row;
      row.reserve(header.size());
      output_bytes += header_bytes + 3;
      for (std::size_t i = 0; i < fields.size(); ++i) {
        output_bytes += fields[i].size() + 3;
        row.emplace_back(header[i], scalar_value(std::move(fields[i]), options_.infer_types));
      }
      if (output_bytes > options_.max_output_bytes) {
        return output_too_large("JSON", options_.max_output_bytes);
      }
      rows.emplace_back(std::move(row));
    }
    return Json(std::move(rows));
  }

 private:
  // Reads the next record into `fields`; false at the end of the input. Empty lines are
  // skipped (a record of one empty field is written as "").
  Result<bool> next_record(std::vector<std::string>& fields, std::size_t& record_line) {
    fields.clear();
    while (pos_ < s_.size() && (s_[pos_] == '\n' || s_[pos_] == '\r')) end_line();
    if (pos_ >= s_.size()) return false;
    record_line = line_;
    for (;;) {
      std::string field;
      if (pos_ < s_.size() && s_[pos_] == '"') {
        CIVICBUS_RETURN_IF_ERROR(quoted_field(field, fields.size() + 1));
      } else {
        CIVICBUS_RETURN_IF_ERROR(unquoted_field(field, fields.size() + 1));
      }
      fields.push_back(std::move(field));
      if (pos_ >= s_.size()) return true;
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      end_line();  // CR, LF or CRLF
      return true;
    }
  }

  void end_line() {
    if (s_[pos_] == '\r' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '\n') ++pos_;
    ++pos_;
    ++line_;
  }

  Status quoted_field(std::string& field, std::size_t number) {
    const std::size_t start_line = line_;
    ++pos_;  // opening quote
    for (;;) {
      if (pos_ >= s_.size()) {
        return invalid_argument(fmt::format(
            "CSV line {}, field {}: the quoted field is not closed before the end of the body",
            start_line, number));
      }
      const char c = s_[pos_];
      if (c == '"') {
        if (pos_ + 1 < s_.size() && s_[pos_ + 1] == '"') {
          field += '"';
          pos_ += 2;
          continue;
        }
        ++pos_;
        break;
      }
      // Line breaks inside quotes are data, but still count for the line numbers of errors.
      if (c == '\n' || (c == '\r' && (pos_ + 1 >= s_.size() || s_[pos_ + 1] != '\n'))) ++line_;
      field += c;
      ++pos_;
    }
    if (pos_ >= s_.size() || s_[pos_] == ',' || s_[pos_] == '\n' || s_[pos_] == '\r') {
      return Status();
    }
    if (options_.csv_lenient_quotes) return unquoted_field(field, number);
    return invalid_argument(fmt::format(
        "CSV line {}, field {}: '{}' follows the closing quote; a quoted field ends at a comma "
        "or a line break (write a quote inside it as \"\")",
        line_, number, s_[pos_]));
  }

  Status unquoted_field(std::string& field, std::size_t number) {
    const std::size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != ',' && s_[pos_] != '\n' && s_[pos_] != '\r') {
      if (s_[pos_] == '"' && !options_.csv_lenient_quotes) {
        return invalid_argument(fmt::format(
            "CSV line {}, field {}: a '\"' inside an unquoted field; quote the whole field and "
            "double the quote (RFC 4180), or set TransformOptions::csv_lenient_quotes",
            line_, number));
      }
      ++pos_;
    }
    field.append(s_.substr(start, pos_ - start));
    return Status();
  }

  std::string_view s_;
  const TransformOptions& options_;
  std::size_t pos_ = 0;
  std::size_t line_ = 1;
};

bool csv_needs_quotes(std::string_view cell) {
  // A leading U+FEFF is quoted so that a reader does not take it for a byte order mark.
  return cell.find_first_of(",\"\r\n") != std::string_view::npos ||
         cell.substr(0, kUtf8Bom.size()) == kUtf8Bom;
}

void append_csv_cell(std::string& out, std::string_view cell, bool only_column) {
  if (!csv_needs_quotes(cell) && !(cell.empty() && only_column)) {
    out += cell;
    return;
  }
  out += '"';
  for (char c : cell) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

// XML -> CSV: the rows are the root element's children of one name (<rows><row/>...</rows>).
// The root's attributes and text are not part of any row and are left out.
Result<Json> rows_of_xml_document(Json document) {
  Json& content = document.as_object()[0].second;
  const std::string& root = document.as_object()[0].first;
  if (content.is_null()) return Json::array();
  if (!content.is_object()) {
    return invalid_argument(fmt::format(
        "XML -> CSV takes its rows from the child elements of <{}>, but it has only text", root));
  }
  Json* rows = nullptr;
  std::string names;
  for (auto& [key, value] : content.as_object()) {
    if (key == "#text" || key[0] == '@') continue;
    if (!names.empty()) names += ", ";
    names += "<" + key + ">";
    if (rows != nullptr) {
      return invalid_argument(
          fmt::format("XML -> CSV takes its rows from child elements of one name, but <{}> has {}",
                      root, names + ", ..."));
    }
    rows = &value;
  }
  if (rows == nullptr) return Json::array();
  if (rows->is_array()) return std::move(*rows);
  return Json::array({std::move(*rows)});
}

}  // namespace

// ---- Public API -------------------------------------------------------------------------

std::string_view body_format_name(BodyFormat format) {
  switch (format) {
    case BodyFormat::kJson:
      return "json";
    case BodyFormat::kXml:
      return "xml";
    case BodyFormat::kCsv:
      return "csv";
  }
  return "unknown";
}

std::string_view media_type_of(BodyFormat format) {
  switch (format) {
    case BodyFormat::kJson:
      return "application/json";
    case BodyFormat::kXml:
      return "application/xml";
    case BodyFormat::kCsv:
      return "text/csv";
  }
  return "application/octet-stream";
}

Result<BodyFormat> body_format_from_media_type(std::string_view value) {
  // Splits on commas outside quoted strings (a parameter value may be quoted and hold commas).
  std::vector<std::string_view> ranges;
  {
    bool quoted = false;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= value.size(); ++i) {
      if (i == value.size() || (value[i] == ',' && !quoted)) {
        const std::string_view range = trim_ows(value.substr(start, i - start));
        if (!range.empty()) ranges.push_back(range);
        start = i + 1;
      } else if (value[i] == '"') {
        quoted = !quoted;
      } else if (value[i] == '\\' && quoted) {
        ++i;
      }
    }
  }
  if (ranges.empty()) {
    return invalid_argument(
        "no media type given; use application/json, application/xml or text/csv");
  }

  constexpr std::size_t kFormats = 3;
  struct Best {
    int specificity = 0;  // 0 no range matches, 1 */*, 2 type/*, 3 the type itself
    double q = 0;
    std::size_t position = 0;
  };
  std::array<Best, kFormats> best{};

  for (std::size_t position = 0; position < ranges.size(); ++position) {
    const std::string_view range = ranges[position];
    const std::size_t semicolon = range.find(';');
    std::string type = ascii_lower(trim_ows(range.substr(0, semicolon)));
    if (type == "*") type = "*/*";  // sent by some old clients
    const std::size_t slash = type.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == type.size()) {
      return invalid_argument(
          fmt::format("'{}' is not a media type (type/subtype)", excerpt(range)));
    }
    const std::string_view main = std::string_view(type).substr(0, slash);
    const std::string_view sub = std::string_view(type).substr(slash + 1);
    double q = 1;
    for (std::size_t p = semicolon; p != std::string_view::npos;) {
      const std::size_t next = range.find(';', p + 1);
      const std::string_view param =
          trim_ows(range.substr(p + 1, next == std::string_view::npos ? next : next - p - 1));
      p = next;
      const std::size_t eq = param.find('=');
      if (eq == std::string_view::npos || ascii_lower(trim_ows(param.substr(0, eq))) != "q")
        continue;
      const std::string_view qtext = trim_ows(param.substr(eq + 1));
      // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ); ".5" is accepted too.
      double parsed = -1;
      if (!qtext.empty() && qtext.size() <= 5 &&
          std::all_of(qtext.begin(), qtext.end(),
                      [](char c) { return (c >= '0' && c <= '9') || c == '.'; }) &&
          std::count(qtext.begin(), qtext.end(), '.') <= 1) {
        std::string digits = qtext.front() == '.' ? "0" + std::string(qtext) : std::string(qtext);
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), parsed);
        if (ec != std::errc() || end != digits.data() + digits.size()) parsed = -1;
      }
      if (parsed < 0 || parsed > 1) {
        return invalid_argument(fmt::format("the q value '{}' in '{}' is not a number from 0 to 1",
                                            excerpt(qtext), excerpt(range)));
      }
      q = parsed;
    }
    const auto ends_with = [&](std::string_view suffix) {
      return sub.size() > suffix.size() && sub.substr(sub.size() - suffix.size()) == suffix;
    };
    std::array<int, kFormats> specificity{};
    if (main == "*" && sub == "*") {
      specificity = {1, 1, 1};
    } else if (sub == "*") {
      if (main == "application") specificity = {2, 2, 0};
      if (main == "text") specificity = {0, 2, 2};
    } else {
      if ((main == "application" || main == "text") && sub == "json") specificity[0] = 3;
      if (ends_with("+json")) specificity[0] = 3;
      if ((main == "application" || main == "text") && sub == "xml") specificity[1] = 3;
      if (ends_with("+xml")) specificity[1] = 3;
      if (main == "text" && sub == "csv") specificity[2] = 3;
    }
    for (std::size_t f = 0; f < kFormats; ++f) {
      Best& b = best[f];
      if (specificity[f] == 0) continue;
      // The most specific range decides; among equally specific ones the highest q.
      if (specificity[f] > b.specificity || (specificity[f] == b.specificity && q > b.q)) {
        b = Best{specificity[f], q, position};
      }
    }
  }

  std::optional<std::size_t> chosen;
  for (std::size_t f = 0; f < kFormats; ++f) {
    const Best& b = best[f];
    if (b.specificity == 0 || b.q <= 0) continue;
    if (!chosen || b.q > best[*chosen].q ||
        (b.q == best[*chosen].q && b.position < best[*chosen].position)) {
      chosen = f;
    }
  }
  if (!chosen) {
    return invalid_argument(fmt::format(
        "none of the media types in '{}' is supported; use application/json, application/xml, "
        "text/xml, a +json or +xml type, or text/csv",
        excerpt(value, 120)));
  }
  return static_cast<BodyFormat>(*chosen);
}

Result<Json> xml_to_json(std::string_view xml, const TransformOptions& options) {
  if (xml.size() > options.max_input_bytes) {
    return input_too_large("XML", xml.size(), options.max_input_bytes);
  }
  civicbus::detail::XmlTreeOptions tree;
  tree.max_depth = options.max_depth;
  if (options.infer_types) {
    tree.scalar = [](std::string text) { return scalar_value(std::move(text), true); };
  }
  tree.array_elements.insert(options.xml_array_elements.begin(), options.xml_array_elements.end());
  return civicbus::detail::xml_document_to_json(xml, std::move(tree), "the XML body");
}

Result<std::string> json_to_xml(const Json& document, const TransformOptions& options) {
  XmlWriter writer(options);
  return writer.write(document);
}

Result<Json> csv_to_json(std::string_view csv, const TransformOptions& options) {
  if (csv.size() > options.max_input_bytes) {
    return input_too_large("CSV", csv.size(), options.max_input_bytes);
  }
  if (csv.substr(0, kUtf8Bom.size()) == kUtf8Bom) csv.remove_prefix(kUtf8Bom.size());
  if (const std::size_t bad = find_invalid_utf8(csv); bad != std::string_view::npos) {
    return invalid_argument(
        fmt::format("CSV line {}: byte {} is not valid UTF-8; send the CSV body in UTF-8",
                    line_of_offset(csv, bad), bad));
  }
  CsvReader reader(csv, options);
  return reader.read();
}

Result<std::string> json_to_csv(const Json& document, const TransformOptions& options) {
  // A single object is one row.
  Json::Array single;
  const Json::Array* rows = nullptr;
  if (document.is_array()) {
    rows = &document.as_array();
  } else if (document.is_object()) {
    single.push_back(document);
    rows = &single;
  } else {
    return invalid_argument(
        fmt::format("CSV is written from a JSON array of objects (one per row), but the body is {}",
                    json_type_name(document)));
  }
  // Columns in first-seen order across all rows.
  std::vector<std::string_view> columns;
  std::unordered_map<std::string_view, std::size_t> column_of;
  for (std::size_t r = 0; r < rows->size(); ++r) {
    const Json& row = (*rows)[r];
    if (!row.is_object()) {
      return invalid_argument(
          fmt::format("CSV row {} (JSON /{}) is {}; each row must be an object of scalars", r + 1,
                      r, json_type_name(row)));
    }
    for (const auto& [key, value] : row.as_object()) {
      if (column_of.emplace(key, columns.size()).second) columns.push_back(key);
    }
  }
  const std::string_view eol = options.csv_crlf ? "\r\n" : "\n";
  std::string out;
  if (columns.empty()) {
    // No keys at all: nothing to write, not even a header.
    return out;
  }
  const bool only_column = columns.size() == 1;
  for (std::size_t c = 0; c < columns.size(); ++c) {
    if (c > 0) out += ',';
    append_csv_cell(out, columns[c], only_column);
  }
  out += eol;
  std::vector<const Json*> cells(columns.size());
  std::string text;
  for (std::size_t r = 0; r < rows->size(); ++r) {
    std::fill(cells.begin(), cells.end(), nullptr);
    for (const auto& [key, value] : (*rows)[r].as_object()) cells[column_of[key]] = &value;
    for (std::size_t c = 0; c < columns.size(); ++c) {
      if (c > 0) out += ',';
      text.clear();
      if (const Json* cell = cells[c]; cell != nullptr) {
        if (cell->is_array() || cell->is_object()) {
          if (!options.csv_nested_as_json) {
            std::string pointer = "/" + std::to_string(r) + "/";
            detail::append_pointer_token(pointer, columns[c]);
            return invalid_argument(fmt::format(
                "CSV row {}, key '{}' (JSON {}) is {}; CSV cells hold strings, numbers, "
                "booleans or null (set TransformOptions::csv_nested_as_json to write it as "
                "JSON text)",
                r + 1, excerpt(columns[c]), pointer, json_type_name(*cell)));
          }
          cell->dump_to(text);
        } else {
          append_scalar_text(text, *cell);
        }
      }
      append_csv_cell(out, text, only_column);
    }
    out += eol;
    if (out.size() > options.max_output_bytes)
      return output_too_large("CSV", options.max_output_bytes);
  }
  return out;
}

Result<std::string> transform_body(std::string_view body, BodyFormat from, BodyFormat to,
                                   const TransformOptions& options) {
  if (body.size() > options.max_input_bytes) {
    return input_too_large(body_format_name(from), body.size(), options.max_input_bytes);
  }
  if (from == to) return std::string(body);
  Json document;
  switch (from) {
    case BodyFormat::kJson: {
      Result<Json> parsed = Json::parse(body);
      if (!parsed.ok()) return parsed.status().with_context("the JSON body is not valid JSON");
      document = std::move(parsed).value();
      break;
    }
    case BodyFormat::kXml: {
      CIVICBUS_ASSIGN_OR_RETURN(document, xml_to_json(body, options));
      if (to == BodyFormat::kCsv) {
        CIVICBUS_ASSIGN_OR_RETURN(document, rows_of_xml_document(std::move(document)));
      }
      break;
    }
    case BodyFormat::kCsv: {
      CIVICBUS_ASSIGN_OR_RETURN(document, csv_to_json(body, options));
      break;
    }
  }
  switch (to) {
    case BodyFormat::kJson: {
      std::string out = document.dump();
      if (out.size() > options.max_output_bytes) {
        return output_too_large("JSON", options.max_output_bytes);
      }
      return out;
    }
    case BodyFormat::kXml:
      return json_to_xml(document, options);
    case BodyFormat::kCsv:
      return json_to_csv(document, options);
  }
  return internal_error("unknown body format");
}

}  // namespace civicbus::gateway
