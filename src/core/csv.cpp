#include "civicbus/core/csv.hpp"

#include <fmt/format.h>

namespace civicbus {

CsvReader::CsvReader(std::string_view text, CsvOptions options) : text_(text), options_(options) {
  if (text_.starts_with("\xEF\xBB\xBF")) pos_ = line_start_ = 3;  // UTF-8 byte-order mark
}

Status CsvReader::error_at(std::size_t line, std::size_t offset, std::string what) const {
  return invalid_argument(fmt::format("CSV line {}, column {}: {}", line, offset, what));
}

Result<std::optional<CsvRecord>> CsvReader::next_record() {
  if (!failed_.ok()) return failed_;
  const std::string_view t = text_;
  const std::size_t n = t.size();
  const char delim = options_.delimiter;

  // A line end at `p`: returns its length (1 or 2), 0 when none. A lone CR counts too.
  auto eol_len = [&](std::size_t p) -> std::size_t {
    if (p >= n) return 0;
    if (t[p] == '\n') return 1;
    if (t[p] == '\r') return (p + 1 < n && t[p + 1] == '\n') ? 2 : 1;
    return 0;
  };
  auto new_line = [&](std::size_t after) {
    ++line_;
    line_start_ = after;
  };

  if (options_.skip_empty_lines) {
    while (std::size_t e = eol_len(pos_)) {
      pos_ += e;
      new_line(pos_);
    }
  }
  if (pos_ >= n) return std::optional<CsvRecord>();

  CsvRecord record;
  record.line = line_;
  std::size_t p = pos_;
  std::string field;
  for (;;) {
    field.clear();
    if (p < n && t[p] == '"') {
      const std::size_t open_line = line_;
      const std::size_t open_col = p - line_start_ + 1;
      ++p;
      for (;;) {
        const std::size_t q = t.find('"', p);
        if (q == std::string_view::npos) {
          failed_ =
              error_at(open_line, open_col, "quoted field is never closed (unterminated '\"')");
          return failed_;
        }
        // Count the line ends inside the quoted part, so later lines keep their numbers.
        for (std::size_t i = p; i < q; ++i) {
          if (t[i] == '\n' || (t[i] == '\r' && (i + 1 >= n || t[i + 1] != '\n'))) new_line(i + 1);
        }
        field.append(t.substr(p, q - p));
        if (q + 1 < n && t[q + 1] == '"') {
          field.push_back('"');
          p = q + 2;
          continue;
        }
        p = q + 1;
        break;
      }
      if (p < n && t[p] != delim && eol_len(p) == 0) {
        if (!options_.allow_bare_quotes) {
          failed_ = error_at(line_, p - line_start_ + 1,
                             fmt::format("unexpected '{}' after the closing quote of a field "
                                         "(a quote inside a field must be doubled: \"\")",
                                         t[p]));
          return failed_;
        }
        // Tolerated: the rest up to the delimiter is part of the field.
        field.insert(field.begin(), '"');
        field.push_back('"');
        while (p < n && t[p] != delim && eol_len(p) == 0) field.push_back(t[p++]);
      }
    } else {
      std::size_t q = p;
      while (q < n && t[q] != delim && t[q] != '\n' && t[q] != '\r') {
        if (t[q] == '"' && !options_.allow_bare_quotes) {
          failed_ = error_at(line_, q - line_start_ + 1,
                             "'\"' inside an unquoted field (quote the whole field and double "
                             "the quote: \"\")");
          return failed_;
        }
        ++q;
      }
      field.assign(t.substr(p, q - p));
      p = q;
    }
    record.fields.push_back(std::move(field));
    if (p >= n) break;
    if (t[p] == delim) {
      ++p;
      continue;
    }
    const std::size_t e = eol_len(p);
    p += e;
    new_line(p);
    break;
  }
  pos_ = p;
  return std::optional<CsvRecord>(std::move(record));
}

Result<CsvTable> parse_csv(std::string_view text, CsvOptions options) {
  CsvReader reader(text, options);
  CsvTable table;
  bool first = true;
  for (;;) {
    CIVICBUS_ASSIGN_OR_RETURN(std::optional<CsvRecord> record, reader.next_record());
    if (!record) break;
    if (first && options.has_header) {
      table.header = std::move(record->fields);
    } else {
      table.records.push_back(std::move(*record));
    }
    first = false;
  }
  return table;
}

std::string csv_quote(std::string_view field, char delimiter) {
  // A leading byte-order mark is quoted too: at the start of a file the reader would take
  // it for the file's BOM and drop it.
  bool needs = !field.empty() &&
               (field.front() == ' ' || field.back() == ' ' || field.starts_with("\xEF\xBB\xBF"));
  for (char c : field) {
    if (c == delimiter || c == '"' || c == '\n' || c == '\r') {
      needs = true;
      break;
    }
  }
  if (!needs) return std::string(field);
  std::string out;
  out.reserve(field.size() + 2);
  out.push_back('"');
  for (char c : field) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string csv_format_record(std::span<const std::string> fields, char delimiter) {
  std::string out;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out.push_back(delimiter);
    out += csv_quote(fields[i], delimiter);
  }
  out += "\r\n";
  return out;
}

}  // namespace civicbus
