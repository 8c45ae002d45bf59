// Helpers of the file connectors (file_connectors.cpp) that know nothing of a
// connector: a read-only mapping of a file, text encodings (UTF-8 check,
// Latin-1 / Windows-1252 to UTF-8), field type inference from samples and the
// listing of a watched folder.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/connect/connector.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"

namespace civicbus::connect::detail {

// A whole file mapped read-only (mmap), so a file of millions of rows is paged
// in by the kernel instead of copied onto the heap. Empty files map to an empty
// view.
class MappedFile {
 public:
  MappedFile() = default;  // maps nothing
  static Result<MappedFile> open(const std::string& path);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::string_view bytes() const { return {data_, size_}; }

 private:
  const char* data_ = nullptr;
  std::size_t size_ = 0;
};

// The text encodings a file source accepts ("encoding" in the config).
enum class TextEncoding { kAuto, kUtf8, kLatin1, kWindows1252 };
Result<TextEncoding> parse_text_encoding(std::string_view name);
std::string_view text_encoding_name(TextEncoding encoding);  // "utf-8", "iso-8859-1", …

// A file's text as UTF-8: a view of the mapped bytes when they are UTF-8
// already, or the transcoded copy. The BOM (EF BB BF) is not part of `text`.
struct DecodedText {
  std::string_view text() const { return transcoded ? std::string_view(owned) : view; }

  std::string_view view;  // the mapped bytes after the BOM, when not transcoded
  std::string owned;      // the transcoded text
  bool transcoded = false;
  TextEncoding encoding = TextEncoding::kUtf8;  // what the bytes were read as
  // With kAuto: why the file was taken for Windows-1252 ("invalid UTF-8 at byte
  // 17, line 2").
  std::string detection_note;
};

// Decodes `bytes` (the content of `path`, named in errors). kUtf8 with an
// invalid sequence fails (kInvalidArgument) naming the file, line and byte
// offset; kAuto falls back to Windows-1252 at the first invalid sequence. A
// UTF-8 BOM is skipped.
Result<DecodedText> decode_text(const std::string& path, std::string_view bytes,
                                TextEncoding encoding);

// The offset of the first byte of an invalid UTF-8 sequence, or nullopt when
// `bytes` is valid UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
// above U+10FFFF).
std::optional<std::size_t> find_invalid_utf8(std::string_view bytes);

// The 1-based line of `offset` in `text` (counting LF).
std::int64_t line_of_offset(std::string_view text, std::size_t offset);

// Infers a field's type from sample values. Text values ("12", "2026-11-30")
// are classified by their form; JSON values by their JSON type. Integers with a
// leading zero ("08123") stay strings: a postcode or a roll number is not a
// number.
class TypeInference {
 public:
  void add_text(std::string_view value);
  void add(const Json& value);
  FieldSpec field(std::string name) const;

 private:
  // Bit per candidate type that every non-empty sample so far allows.
  unsigned candidates_ = ~0u;
  bool seen_ = false;
  bool nullable_ = false;
};

// The type a text value has by its form (kString when none fits).
FieldType classify_text(std::string_view value);

// Compares two cursor values: numerically when both are numbers (or numeric
// text), as text otherwise (RFC 3339 dates and times order correctly as text).
// <0, 0, >0.
int compare_cursor(const Json& a, const Json& b);

// One file of a watched folder.
struct FolderEntry {
  std::string name;  // file name inside the folder
  std::string path;  // full path
  std::int64_t size = 0;
  std::int64_t mtime_ns = 0;  // modification time, ns since the epoch
};

// The regular files of `folder` whose name matches the glob `pattern`
// (fnmatch), sorted by name. Dot files and subfolders are not listed.
Result<std::vector<FolderEntry>> list_folder(const std::string& folder, const std::string& pattern);

// Size and modification time of one file.
Result<FolderEntry> stat_file(const std::string& path);

}  // namespace civicbus::connect::detail
