// CsvReader: RFC 4180 records from text in memory, with the usual tolerance (LF or CRLF line
// ends, a byte-order mark, a configurable delimiter, blank lines skipped). Each record knows
// the physical line it starts on, so callers (device import, connectors) can report problems
// by line; syntax errors name the line and column. CsvWriter helpers quote what needs it.
//
// The reader does not copy the input: the text must outlive the reader. Records own their
// fields.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus {

struct CsvOptions {
  char delimiter = ',';
  // parse_csv only: the first record names the columns (CsvTable::header).
  bool has_header = true;
  // A line with nothing on it is no record (RFC 4180 would read it as one empty field).
  bool skip_empty_lines = true;
  // A '"' inside an unquoted field is an error by RFC 4180 (the usual sign of a broken
  // export); when true it is kept as a literal character instead, as spreadsheets do.
  bool allow_bare_quotes = false;
};

struct CsvRecord {
  std::size_t line = 0;  // 1-based physical line where the record starts
  std::vector<std::string> fields;
};

class CIVICBUS_EXPORT CsvReader {
 public:
  explicit CsvReader(std::string_view text, CsvOptions options = {});

  // The next record, or nullopt at the end of the text. After an error the reader stays
  // at the failing record: every later call returns the same error.
  Result<std::optional<CsvRecord>> next_record();

  // The physical line the reader is on (1-based).
  std::size_t line() const { return line_; }

 private:
  Status error_at(std::size_t line, std::size_t offset, std::string what) const;

  std::string_view text_;
  CsvOptions options_;
  std::size_t pos_ = 0;
  std::size_t line_ = 1;
  std::size_t line_start_ = 0;  // offset of the first byte of the current physical line
  Status failed_;
};

struct CsvTable {
  std::vector<std::string> header;  // empty when !has_header or for an empty text
  std::vector<CsvRecord> records;
};

// Reads the whole text.
CIVICBUS_EXPORT Result<CsvTable> parse_csv(std::string_view text, CsvOptions options = {});

// `field` as it goes in a CSV record: quoted (with '"' doubled) when it holds the delimiter,
// a quote, CR or LF, or leading/trailing spaces; as is otherwise.
CIVICBUS_EXPORT std::string csv_quote(std::string_view field, char delimiter = ',');
// One record, fields joined by the delimiter, ending with "\r\n" (RFC 4180).
CIVICBUS_EXPORT std::string csv_format_record(std::span<const std::string> fields,
                                              char delimiter = ',');

}  // namespace civicbus
