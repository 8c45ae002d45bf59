#include "connect/file_formats.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <fnmatch.h>
#include <simdjson.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>

namespace civicbus::connect::detail {

namespace fs = std::filesystem;

// ---- MappedFile
// -------------------------------------------------------------------------

Result<MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    std::string message = fmt::format("cannot open '{}': {}", path, std::strerror(err));
    return err == ENOENT ? not_found(std::move(message)) : io_error(std::move(message));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return io_error(fmt::format("cannot stat '{}': {}", path, std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return invalid_argument(fmt::format("'{}' is not a regular file", path));
  }
  MappedFile file;
  if (st.st_size > 0) {
    void* p = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return io_error(fmt::format("cannot map '{}': {}", path, std::strerror(err)));
    }
    // Files are read front to back once.
    ::madvise(p, static_cast<std::size_t>(st.st_size), MADV_SEQUENTIAL);
    file.data_ = static_cast<const char*>(p);
    file.size_ = static_cast<std::size_t>(st.st_size);
  }
  ::close(fd);  // the mapping keeps the file
  return file;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
}

// ---- Encodings
// --------------------------------------------------------------------------

namespace {

// Windows-1252's 0x80-0x9F; the five bytes it leaves undefined map to the C1
// control of the same value, as the WHATWG Encoding Standard does.
constexpr std::array<char32_t, 32> kWindows1252High{
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string transcode_single_byte(std::string_view bytes, TextEncoding encoding) {
  std::string out;
  out.reserve(bytes.size() + bytes.size() / 8);
  for (char ch : bytes) {
    const auto b = static_cast<unsigned char>(ch);
    if (b < 0x80) {
      out.push_back(ch);
    } else if (b < 0xA0 && encoding == TextEncoding::kWindows1252) {
      append_utf8(out, kWindows1252High[b - 0x80]);
    } else {
      append_utf8(out, b);  // ISO-8859-1 is the first 256 code points
    }
  }
  return out;
}

}  // namespace

Result<TextEncoding> parse_text_encoding(std::string_view name) {
  std::string n;
  for (char c : name) n.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (n.empty() || n == "auto") return TextEncoding::kAuto;
  if (n == "utf-8" || n == "utf8") return TextEncoding::kUtf8;
  if (n == "latin-1" || n == "latin1" || n == "iso-8859-1") return TextEncoding::kLatin1;
  if (n == "windows-1252" || n == "cp1252") return TextEncoding::kWindows1252;
  return invalid_argument(
      fmt::format("unknown encoding '{}' (expected auto, utf-8, latin-1 or windows-1252)", name));
}

std::string_view text_encoding_name(TextEncoding encoding) {
  switch (encoding) {
    case TextEncoding::kAuto:
      return "auto";
    case TextEncoding::kUtf8:
      return "utf-8";
    case TextEncoding::kLatin1:
      return "iso-8859-1";
    case TextEncoding::kWindows1252:
      return "windows-1252";
  }
  return "utf-8";
}

std::optional<std::size_t> find_invalid_utf8(std::string_view bytes) {
  // simdjson's validator is the fast path; the byte walk below only runs to
  // locate the fault.
  if (simdjson::validate_utf8(bytes.data(), bytes.size())) return std::nullopt;
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char b = s[i];
    if (b < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) lo = 0xA0;  // overlong
      if (b == 0xED) hi = 0x9F;  // surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) lo = 0x90;  // overlong
      if (b == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (s[i + 1] < lo || s[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
    }
    i += len;
  }
  return std::nullopt;
}

std::int64_t line_of_offset(std::string_view text, std::size_t offset) {
  offset = std::min(offset, text.size());
  return 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n');
}

Result<DecodedText> decode_text(const std::string& path, std::string_view bytes,
                                TextEncoding encoding) {
  DecodedText out;
  std::size_t skipped = 0;
  if (encoding != TextEncoding::kLatin1 && encoding != TextEncoding::kWindows1252 &&
      bytes.starts_with("\xEF\xBB\xBF")) {
    bytes.remove_prefix(3);
    skipped = 3;
  }
  if (encoding == TextEncoding::kLatin1 || encoding == TextEncoding::kWindows1252) {
    out.owned = transcode_single_byte(bytes, encoding);
    out.transcoded = true;
    out.encoding = encoding;
    return out;
  }
  const std::optional<std::size_t> bad = find_invalid_utf8(bytes);
  if (!bad) {
    out.view = bytes;
    out.encoding = TextEncoding::kUtf8;
    return out;
  }
  const std::int64_t line = line_of_offset(bytes, *bad);
  if (encoding == TextEncoding::kUtf8) {
    return invalid_argument(
        fmt::format("file '{}' is declared utf-8 but has an invalid UTF-8 sequence (byte "
                    "0x{:02X}) at line {}, "
                    "byte offset {}; fix the file or set \"encoding\" to \"auto\", "
                    "\"latin-1\" or "
                    "\"windows-1252\"",
                    path, static_cast<unsigned char>(bytes[*bad]), line, *bad + skipped));
  }
  out.owned = transcode_single_byte(bytes, TextEncoding::kWindows1252);
  out.transcoded = true;
  out.encoding = TextEncoding::kWindows1252;
  out.detection_note = fmt::format(
      "read as windows-1252: invalid UTF-8 (byte "
      "0x{:02X}) at line {}, byte offset {}",
      static_cast<unsigned char>(bytes[*bad]), line, *bad + skipped);
  return out;
}

// ---- Type inference
// ---------------------------------------------------------------------

namespace {

enum : unsigned {
  kIntBit = 1,
  kNumberBit = 2,
  kBoolBit = 4,
  kDateBit = 8,
  kTimestampBit = 16,
  kJsonBit = 32,
};

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? : the JSON number grammar.
// Sets `integral` when there is neither fraction nor exponent.
bool is_json_number(std::string_view s, bool& integral) {
  std::size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  if (i >= s.size()) return false;
  if (s[i] == '0') {
    ++i;
  } else if (s[i] >= '1' && s[i] <= '9') {
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  } else {
    return false;
  }
  integral = true;
  if (i < s.size() && s[i] == '.') {
    integral = false;
    const std::size_t start = ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == start) return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    integral = false;
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    const std::size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == start) return false;
  }
  return i == s.size();
}

int to_int(std::string_view s) {
  int v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

bool is_date(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
  if (!all_digits(s.substr(0, 4)) || !all_digits(s.substr(5, 2)) || !all_digits(s.substr(8, 2)))
    return false;
  const int y = to_int(s.substr(0, 4)), m = to_int(s.substr(5, 2)), d = to_int(s.substr(8, 2));
  if (m < 1 || m > 12 || d < 1) return false;
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return d <= kDays[m - 1] + (m == 2 && leap ? 1 : 0);
}

// RFC 3339 date-time, also with a space for 'T' and without an offset (local
// time), which is how spreadsheets and databases export timestamps.
bool is_timestamp(std::string_view s) {
  if (s.size() < 19 || !is_date(s.substr(0, 10))) return false;
  if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') return false;
  const std::string_view t = s.substr(11);
  if (t[2] != ':' || t[5] != ':' || !all_digits(t.substr(0, 2)) || !all_digits(t.substr(3, 2)) ||
      !all_digits(t.substr(6, 2)))
    return false;
  if (to_int(t.substr(0, 2)) > 23 || to_int(t.substr(3, 2)) > 59 || to_int(t.substr(6, 2)) > 60)
    return false;
  std::string_view rest = t.substr(8);
  if (!rest.empty() && rest[0] == '.') {
    std::size_t i = 1;
    while (i < rest.size() && rest[i] >= '0' && rest[i] <= '9') ++i;
    if (i == 1) return false;
    rest.remove_prefix(i);
  }
  if (rest.empty() || rest == "Z" || rest == "z") return true;
  return rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':' &&
         all_digits(rest.substr(1, 2)) && all_digits(rest.substr(4, 2));
}

unsigned text_bits(std::string_view v) {
  bool integral = false;
  if (is_json_number(v, integral)) {
    if (integral) {
      std::int64_t i = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), i);
      if (ec == std::errc() && p == v.data() + v.size()) return kIntBit | kNumberBit;
    }
    return kNumberBit;
  }
  if (v.size() == 4 || v.size() == 5) {
    std::string lower;
    for (char c : v)
      lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    if (lower == "true" || lower == "false") return kBoolBit;
  }
  if (is_date(v)) return kDateBit;
  if (is_timestamp(v)) return kTimestampBit;
  return 0;
}

FieldType type_of_bits(unsigned bits) {
  if (bits & kIntBit) return FieldType::kInteger;
  if (bits & kNumberBit) return FieldType::kNumber;
  if (bits & kBoolBit) return FieldType::kBoolean;
  if (bits & kDateBit) return FieldType::kDate;
  if (bits & kTimestampBit) return FieldType::kTimestamp;
  if (bits & kJsonBit) return FieldType::kJson;
  return FieldType::kString;
}

bool parse_number(std::string_view s, double& out) {
  bool integral = false;
  if (!is_json_number(s, integral)) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

FieldType classify_text(std::string_view value) {
  return type_of_bits(text_bits(value));
}

void TypeInference::add_text(std::string_view value) {
  if (value.empty()) {
    nullable_ = true;
    return;
  }
  seen_ = true;
  candidates_ &= text_bits(value);
}

void TypeInference::add(const Json& value) {
  switch (value.type()) {
    case Json::Type::kNull:
      nullable_ = true;
      return;
    case Json::Type::kBool:
      candidates_ &= kBoolBit;
      break;
    case Json::Type::kInt:
      candidates_ &= kIntBit | kNumberBit;
      break;
    case Json::Type::kDouble:
      candidates_ &= kNumberBit;
      break;
    case Json::Type::kString:
      // A JSON string that looks like a number was written as a string on
      // purpose; only its date or time form is taken as a type.
      candidates_ &= text_bits(value.as_string()) & (kDateBit | kTimestampBit);
      break;
    case Json::Type::kArray:
    case Json::Type::kObject:
      candidates_ &= kJsonBit;
      break;
  }
  seen_ = true;
}

FieldSpec TypeInference::field(std::string name) const {
  FieldSpec spec;
  spec.name = std::move(name);
  spec.type = seen_ ? type_of_bits(candidates_) : FieldType::kString;
  spec.nullable = nullable_ || !seen_;
  return spec;
}

int compare_cursor(const Json& a, const Json& b) {
  auto number = [](const Json& v, double& out) {
    if (v.is_number()) {
      out = v.as_double();
      return true;
    }
    return v.is_string() && parse_number(v.as_string(), out);
  };
  double x = 0, y = 0;
  if (number(a, x) && number(b, y)) return x < y ? -1 : (x > y ? 1 : 0);
  auto text = [](const Json& v) { return v.is_string() ? v.as_string() : v.dump(); };
  const int c = text(a).compare(text(b));
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

// ---- Folders
// ----------------------------------------------------------------------------

Result<FolderEntry> stat_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    std::string message = fmt::format("cannot stat '{}': {}", path, std::strerror(err));
    return err == ENOENT ? not_found(std::move(message)) : io_error(std::move(message));
  }
  FolderEntry entry;
  entry.path = path;
  entry.name = fs::path(path).filename().string();
  entry.size = static_cast<std::int64_t>(st.st_size);
  entry.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 +
                   static_cast<std::int64_t>(st.st_mtim.tv_nsec);
  return entry;
}

Result<std::vector<FolderEntry>> list_folder(const std::string& folder,
                                             const std::string& pattern) {
  std::error_code ec;
  fs::directory_iterator it(folder, ec);
  if (ec) return io_error(fmt::format("cannot list folder '{}': {}", folder, ec.message()));
  std::vector<FolderEntry> out;
  for (const fs::directory_entry& entry : it) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with(".")) continue;
    if (::fnmatch(pattern.c_str(), name.c_str(), 0) != 0) continue;
    std::error_code type_ec;
    if (!entry.is_regular_file(type_ec)) continue;
    auto st = stat_file(entry.path().string());
    if (!st.ok()) continue;  // removed while listing
    out.push_back(std::move(*st));
  }
  std::sort(out.begin(), out.end(),
            [](const FolderEntry& a, const FolderEntry& b) { return a.name < b.name; });
  return out;
}

}  // namespace civicbus::connect::detail
