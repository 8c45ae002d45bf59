#include "civicbus/core/json.hpp"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <tuple>
#include <unordered_map>

#include "core/json_text.hpp"

namespace civicbus {
namespace {

// A parser that grew for an unusually large document is dropped afterwards, so one big
// request does not pin its buffers on every worker thread for the life of the process.
constexpr std::size_t kMaxRetainedParserCapacity = std::size_t{1} << 20;

// Objects up to this many members are checked for duplicate names by a linear scan; larger
// ones use a hash index so that hostile inputs cannot make parsing quadratic.
constexpr std::size_t kLinearDuplicateScanLimit = 16;

constexpr double kTwoPow63 = 9223372036854775808.0;

bool double_fits_int64(double d) {
  return d >= -kTwoPow63 && d < kTwoPow63;
}

void fill(simdjson::dom::element element, Json& out);

bool same_key(const std::string& a, std::string_view b) {
  // Most keys differ in length or first byte; skip the memcmp call for those.
  return a.size() == b.size() && (b.empty() || (a[0] == b[0] && a.compare(b) == 0));
}

// Values are built in place (members and items are appended first, then filled), so that a
// parsed event costs one allocation per container and per long string, and no moves of
// subtrees.
void fill_object(simdjson::dom::object object, Json& out) {
  out = Json(Json::Object());
  Json::Object& members = out.as_object();
  members.reserve(object.size());
  // Keys of the simdjson document stay valid while we convert, so the index can point at them
  // rather than at our std::strings, which move when `members` grows.
  std::unordered_map<std::string_view, std::size_t> index;
  for (simdjson::dom::key_value_pair field : object) {
    const std::string_view key = field.key;
    std::size_t existing = members.size();
    if (members.size() <= kLinearDuplicateScanLimit && index.empty()) {
      for (std::size_t i = 0; i < members.size(); ++i) {
        if (same_key(members[i].first, key)) {
          existing = i;
          break;
        }
      }
    } else {
      if (index.empty()) {
        index.reserve(members.size() * 2);
        // Rebuild from the document: member i of `members` is the i-th distinct key so far.
        std::size_t i = 0;
        for (simdjson::dom::key_value_pair earlier : object) {
          if (i == members.size()) break;
          if (index.emplace(earlier.key, i).second) ++i;
        }
      }
      auto [it, inserted] = index.emplace(key, members.size());
      if (!inserted) existing = it->second;
    }
    // Duplicate names: the last value wins, as in JavaScript, Python and Go, so that what a
    // schema validates here is what those consumers read from the same text.
    if (existing < members.size()) {
      fill(field.value, members[existing].second);
    } else {
      members.emplace_back(std::piecewise_construct, std::forward_as_tuple(key),
                           std::forward_as_tuple());
      fill(field.value, members.back().second);
    }
  }
}

void fill(simdjson::dom::element element, Json& out) {
  using simdjson::dom::element_type;
  switch (element.type()) {
    case element_type::ARRAY: {
      simdjson::dom::array array = element.get_array().value_unsafe();
      out = Json(Json::Array());
      Json::Array& items = out.as_array();
      items.reserve(array.size());
      for (simdjson::dom::element child : array) fill(child, items.emplace_back());
      return;
    }
    case element_type::OBJECT:
      fill_object(element.get_object().value_unsafe(), out);
      return;
    case element_type::INT64:
      out = Json(static_cast<long long>(element.get_int64().value_unsafe()));
      return;
    case element_type::UINT64:
      // simdjson only reports UINT64 for values above INT64_MAX.
      out = Json(static_cast<double>(element.get_uint64().value_unsafe()));
      return;
    case element_type::DOUBLE:
      out = Json(element.get_double().value_unsafe());
      return;
    case element_type::STRING:
      out = Json(element.get_string().value_unsafe());
      return;
    case element_type::BOOL:
      out = Json(element.get_bool().value_unsafe());
      return;
    case element_type::NULL_VALUE:
      return;
  }
}

simdjson::dom::parser& thread_parser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

// ---- Writing ----------------------------------------------------------------------------

void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out.append(buf, end);
}

void append_double(std::string& out, double d) {
  if (!std::isfinite(d)) {
    // JSON has no NaN or infinity; null is what JSON.stringify writes for them.
    out += "null";
    return;
  }
  const std::size_t start = out.size();
  fmt::format_to(std::back_inserter(out), "{}", d);  // shortest text that round-trips
  // An integral double keeps a ".0" so that it parses back as a double, not an int.
  if (out.find_first_of(".eE", start) == std::string::npos) out += ".0";
}

void append_newline(std::string& out, int indent, int level) {
  out += '\n';
  out.append(static_cast<std::size_t>(indent) * static_cast<std::size_t>(level), ' ');
}

void dump_value(const Json& value, std::string& out, int indent, int level) {
  switch (value.type()) {
    case Json::Type::kNull:
      out += "null";
      return;
    case Json::Type::kBool:
      out += value.as_bool() ? "true" : "false";
      return;
    case Json::Type::kInt:
      append_int(out, value.as_int());
      return;
    case Json::Type::kDouble:
      append_double(out, value.as_double());
      return;
    case Json::Type::kString:
      out += '"';
      append_json_escaped(out, value.as_string());
      out += '"';
      return;
    case Json::Type::kArray: {
      const Json::Array& items = value.as_array();
      out += '[';
      bool first = true;
      for (const Json& item : items) {
        if (!first) out += ',';
        first = false;
        if (indent > 0) append_newline(out, indent, level + 1);
        dump_value(item, out, indent, level + 1);
      }
      if (indent > 0 && !items.empty()) append_newline(out, indent, level);
      out += ']';
      return;
    }
    case Json::Type::kObject: {
      const Json::Object& members = value.as_object();
      out += '{';
      bool first = true;
      for (const auto& [key, member] : members) {
        if (!first) out += ',';
        first = false;
        if (indent > 0) append_newline(out, indent, level + 1);
        out += '"';
        append_json_escaped(out, key);
        out += indent > 0 ? "\": " : "\":";
        dump_value(member, out, indent, level + 1);
      }
      if (indent > 0 && !members.empty()) append_newline(out, indent, level);
      out += '}';
      return;
    }
  }
}

// ---- Equality ---------------------------------------------------------------------------

bool numbers_equal(const Json& a, const Json& b) {
  if (a.is_int() && b.is_int()) return a.as_int() == b.as_int();
  if (a.is_double() && b.is_double()) return a.as_double() == b.as_double();
  // Mixed: compare exactly, not through a lossy conversion of the int to double.
  const std::int64_t i = a.is_int() ? a.as_int() : b.as_int();
  const double d = a.is_double() ? a.as_double() : b.as_double();
  if (!double_fits_int64(d) || std::trunc(d) != d) return false;
  return static_cast<std::int64_t>(d) == i;
}

bool objects_equal(const Json::Object& a, const Json::Object& b) {
  if (a.size() != b.size()) return false;
  for (const Json::Member& member : a) {
    // Not a structured binding: clang before 16 cannot capture one in a lambda (P1091).
    const std::string& key = member.first;
    auto it =
        std::find_if(b.begin(), b.end(), [&](const Json::Member& m) { return m.first == key; });
    if (it == b.end() || !(member.second == it->second)) return false;
  }
  return true;
}

// ---- Pointers ---------------------------------------------------------------------------

// Decodes one reference token (~1 -> /, ~0 -> ~). False for a malformed escape.
bool unescape_token(std::string_view token, std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < token.size(); ++i) {
    if (token[i] != '~') {
      out += token[i];
      continue;
    }
    if (i + 1 >= token.size()) return false;
    const char next = token[++i];
    if (next == '0') {
      out += '~';
    } else if (next == '1') {
      out += '/';
    } else {
      return false;
    }
  }
  return true;
}

// RFC 6901 array index: "0" or digits without a leading zero. "-" (past the end) never exists.
bool parse_array_index(std::string_view token, std::size_t& index) {
  if (token.empty() || (token.size() > 1 && token[0] == '0')) return false;
  auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), index);
  return ec == std::errc() && end == token.data() + token.size();
}

template <typename JsonT>
JsonT* walk_pointer(JsonT* node, std::string_view pointer) {
  if (pointer.empty()) return node;
  if (pointer.front() != '/') return nullptr;
  std::string token;
  std::size_t pos = 1;
  while (node != nullptr) {
    const std::size_t slash = pointer.find('/', pos);
    const std::string_view raw =
        pointer.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos);
    if (!unescape_token(raw, token)) return nullptr;
    if (node->is_object()) {
      node = node->find(token);
    } else if (node->is_array()) {
      std::size_t index = 0;
      if (!parse_array_index(token, index) || index >= node->as_array().size()) return nullptr;
      node = &node->as_array()[index];
    } else {
      return nullptr;
    }
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  return node;
}

}  // namespace

// ---- Json members -----------------------------------------------------------------------

Json::Json(unsigned long i) {
  if (i <= static_cast<unsigned long>(std::numeric_limits<std::int64_t>::max())) {
    v_ = static_cast<std::int64_t>(i);
  } else {
    v_ = static_cast<double>(i);
  }
}

Json::Json(unsigned long long i) {
  if (i <= static_cast<unsigned long long>(std::numeric_limits<std::int64_t>::max())) {
    v_ = static_cast<std::int64_t>(i);
  } else {
    v_ = static_cast<double>(i);
  }
}

Result<Json> Json::parse(std::string_view text) {
  simdjson::dom::parser& parser = thread_parser();
  // The parser copies `text` into its own padded buffer (reused across calls): a string_view
  // promises nothing about the bytes after its end, and simdjson reads up to 64 bytes past it.
  simdjson::dom::element root;
  const simdjson::error_code error = parser.parse(text.data(), text.size(), true).get(root);
  if (error != simdjson::SUCCESS) {
    // The cold path: a careful byte-by-byte parser finds where the text goes wrong, and reads
    // integers beyond 64 bits (as doubles), which simdjson's DOM refuses.
    std::string detail;
    std::size_t offset = 0;
    Result<Json> fallback = detail::parse_json_text(text, &detail, &offset);
    if (fallback.ok() && error == simdjson::NUMBER_ERROR) return fallback;
    std::string message = fmt::format("invalid JSON: {}", simdjson::error_message(error));
    if (!fallback.ok()) message += fmt::format(" (at byte {}: {})", offset, detail);
    return invalid_argument(std::move(message));
  }
  Json out;
  fill(root, out);
  if (parser.capacity() > kMaxRetainedParserCapacity) parser = simdjson::dom::parser();
  return out;
}

bool Json::is_integral() const {
  if (is_int()) return true;
  if (!is_double()) return false;
  const double d = std::get<double>(v_);
  return std::isfinite(d) && std::trunc(d) == d;
}

double Json::as_double() const {
  if (is_int()) return static_cast<double>(std::get<std::int64_t>(v_));
  return std::get<double>(v_);
}

const Json* Json::find(std::string_view key) const {
  if (!is_object()) return nullptr;
  for (const Member& m : std::get<Object>(v_)) {
    if (m.first == key) return &m.second;
  }
  return nullptr;
}

Json* Json::find(std::string_view key) {
  return const_cast<Json*>(static_cast<const Json*>(this)->find(key));
}

Json& Json::set(std::string_view key, Json value) {
  assert(is_null() || is_object());
  if (!is_object()) v_ = Object{};
  if (Json* existing = find(key)) {
    *existing = std::move(value);
    return *existing;
  }
  Object& members = std::get<Object>(v_);
  members.emplace_back(std::string(key), std::move(value));
  return members.back().second;
}

Json& Json::operator[](std::string_view key) {
  assert(is_null() || is_object());
  if (!is_object()) v_ = Object{};
  if (Json* existing = find(key)) return *existing;
  Object& members = std::get<Object>(v_);
  members.emplace_back(std::string(key), Json());
  return members.back().second;
}

bool Json::erase(std::string_view key) {
  if (!is_object()) return false;
  Object& members = std::get<Object>(v_);
  auto it =
      std::find_if(members.begin(), members.end(), [&](const Member& m) { return m.first == key; });
  if (it == members.end()) return false;
  members.erase(it);
  return true;
}

Json& Json::push_back(Json value) {
  assert(is_null() || is_array());
  if (!is_array()) v_ = Array{};
  Array& items = std::get<Array>(v_);
  items.push_back(std::move(value));
  return items.back();
}

std::size_t Json::size() const {
  if (is_array()) return std::get<Array>(v_).size();
  if (is_object()) return std::get<Object>(v_).size();
  return 0;
}

std::string Json::get_string(std::string_view key, std::string_view fallback) const {
  const Json* member = find(key);
  if (member == nullptr || !member->is_string()) return std::string(fallback);
  return member->as_string();
}

std::int64_t Json::get_int(std::string_view key, std::int64_t fallback) const {
  const Json* member = find(key);
  if (member == nullptr) return fallback;
  if (member->is_int()) return member->as_int();
  // 3.0 is the integer 3 in JSON's number model (see operator==).
  if (member->is_integral() && double_fits_int64(member->as_double())) {
    return static_cast<std::int64_t>(member->as_double());
  }
  return fallback;
}

bool Json::get_bool(std::string_view key, bool fallback) const {
  const Json* member = find(key);
  if (member == nullptr || !member->is_bool()) return fallback;
  return member->as_bool();
}

const Json* Json::at_pointer(std::string_view pointer) const {
  return walk_pointer(this, pointer);
}

Json* Json::at_pointer(std::string_view pointer) {
  return walk_pointer(this, pointer);
}

std::string Json::dump(int indent) const {
  std::string out;
  dump_value(*this, out, indent, 0);
  return out;
}

void Json::dump_to(std::string& out) const {
  dump_value(*this, out, 0, 0);
}

bool operator==(const Json& a, const Json& b) {
  if (a.is_number() && b.is_number()) return numbers_equal(a, b);
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case Json::Type::kNull:
      return true;
    case Json::Type::kBool:
      return a.as_bool() == b.as_bool();
    case Json::Type::kString:
      return a.as_string() == b.as_string();
    case Json::Type::kArray:
      return a.as_array() == b.as_array();
    case Json::Type::kObject:
      return objects_equal(a.as_object(), b.as_object());
    case Json::Type::kInt:
    case Json::Type::kDouble:
      break;  // handled above
  }
  return false;
}

// ---- Escaping ---------------------------------------------------------------------------

void append_json_escaped(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  const char* p = s.data();
  const char* const end = p + s.size();
  const char* run = p;  // start of bytes that can be copied as they are
  auto flush = [&](const char* upto) { out.append(run, static_cast<std::size_t>(upto - run)); };
  // Eight bytes at a time while none of them needs attention (a control character, a quote,
  // a backslash or a non-ASCII byte): most strings are plain ASCII, and this is the hot loop
  // of every event written.
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHighs = 0x8080808080808080ULL;
  auto has_zero_byte = [](std::uint64_t v) { return (v - kOnes) & ~v & kHighs; };
  while (p < end) {
    if (end - p >= 8) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      const std::uint64_t special = ((w - kOnes * 0x20) & ~w & kHighs) |
                                    has_zero_byte(w ^ (kOnes * '"')) |
                                    has_zero_byte(w ^ (kOnes * '\\')) | (w & kHighs);
      if (special == 0) {
        p += 8;
        continue;
      }
    }
    const auto c = static_cast<unsigned char>(*p);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      ++p;
      continue;
    }
    if (c >= 0x80) {
      // Valid UTF-8 passes through; a stray byte becomes U+FFFD so the output stays valid JSON
      // even for strings that were built from arbitrary bytes.
      const std::size_t length = detail::utf8_sequence_length(p, end);
      if (length > 0) {
        p += length;
        continue;
      }
      flush(p);
      out += "\\ufffd";
      run = ++p;
      continue;
    }
    flush(p);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        const char escaped[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
        out.append(escaped, sizeof escaped);
      }
    }
    run = ++p;
  }
  flush(p);
}

}  // namespace civicbus
