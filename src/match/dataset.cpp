#include "civicbus/core/csv.hpp"
#include "civicbus/match/engine.hpp"
#include "core/read_file.hpp"

namespace civicbus::match {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

Dataset::Dataset(std::vector<std::string> columns, std::string source)
    : columns_(std::move(columns)), source_(std::move(source)) {
  text_.resize(columns_.size());
  offset_.assign(columns_.size(), std::vector<std::uint64_t>{0});
}

Result<Dataset> Dataset::read_csv(const std::string& path, std::string source) {
  CIVICBUS_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  if (source.empty()) {
    auto slash = path.find_last_of('/');
    source = slash == std::string::npos ? path : path.substr(slash + 1);
  }
  auto data = parse_csv(text, std::move(source));
  if (!data.ok()) return data.status().with_context(path);
  return data;
}

Result<Dataset> Dataset::parse_csv(std::string_view text, std::string source) {
  CsvReader reader(text);
  CIVICBUS_ASSIGN_OR_RETURN(std::optional<CsvRecord> header, reader.next_record());
  if (!header || header->fields.empty()) return invalid_argument("no header row of column names");
  std::vector<std::string> columns;
  for (const auto& name : header->fields) {
    std::string column(trim(name));
    if (column.empty()) {
      return invalid_argument("line " + std::to_string(header->line) + ": column " +
                              std::to_string(columns.size() + 1) + " has no name");
    }
    columns.push_back(std::move(column));
  }
  Dataset data(std::move(columns), std::move(source));
  std::vector<std::string_view> values;
  while (true) {
    CIVICBUS_ASSIGN_OR_RETURN(std::optional<CsvRecord> record, reader.next_record());
    if (!record) break;
    if (record->fields.size() > data.columns_.size()) {
      return invalid_argument("line " + std::to_string(record->line) + ": " +
                              std::to_string(record->fields.size()) + " values for " +
                              std::to_string(data.columns_.size()) + " columns");
    }
    values.clear();
    for (const auto& f : record->fields) values.push_back(trim(f));
    data.add(values);
  }
  return data;
}

void Dataset::add(const std::vector<std::string_view>& values) {
  for (std::size_t c = 0; c < columns_.size(); ++c) {
    if (c < values.size()) text_[c].append(values[c]);
    offset_[c].push_back(text_[c].size());
  }
  ++rows_;
}

int Dataset::column(std::string_view name) const {
  for (std::size_t c = 0; c < columns_.size(); ++c) {
    if (columns_[c] == name) return static_cast<int>(c);
  }
  return -1;
}

std::string_view Dataset::value(std::size_t row, int column) const {
  if (column < 0 || static_cast<std::size_t>(column) >= columns_.size() || row >= rows_) return {};
  const auto& off = offset_[static_cast<std::size_t>(column)];
  return std::string_view(text_[static_cast<std::size_t>(column)])
      .substr(off[row], off[row + 1] - off[row]);
}

}  // namespace civicbus::match
