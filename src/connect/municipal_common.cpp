// Helpers shared by the municipal connectors (see municipal_formats.hpp).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "municipal_formats.hpp"

namespace civicbus::connect::detail {

Result<std::string> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error("cannot open '" + path + "': " + std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return io_error("cannot read '" + path + "'");
  return buffer.str();
}

Status write_file_atomically(const std::string& path, std::string_view content) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return io_error("cannot create '" + tmp + "': " + std::strerror(errno));
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.flush();
    if (!out) return io_error("cannot write '" + tmp + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return io_error("cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(errno));
  }
  return Status();
}

bool wants_stream(const ReadRequest& request, std::string_view stream) {
  return request.streams.empty() ||
         std::find(request.streams.begin(), request.streams.end(), stream) != request.streams.end();
}

Status emit_records(RecordEmitter& out, const ReadRequest& request, const std::string& stream,
                    const std::vector<std::string>& columns, std::vector<Record> records,
                    std::int64_t& budget, Json state) {
  std::size_t batch_size = std::max<std::size_t>(1, request.batch_size);
  std::size_t i = 0;
  while (i < records.size() && budget != 0) {
    if (out.cancelled()) return cancelled("read of stream '" + stream + "' was cancelled");
    RecordBatch batch(stream, columns);
    while (i < records.size() && batch.size() < batch_size && budget != 0) {
      batch.records.push_back(std::move(records[i++]));
      if (budget > 0) --budget;
    }
    CIVICBUS_RETURN_IF_ERROR(out.emit(std::move(batch)));
  }
  // A read cut short by max_records is a sample, not progress: no checkpoint then.
  if (i < records.size()) return Status();
  if (!state.is_null()) CIVICBUS_RETURN_IF_ERROR(out.checkpoint(stream, std::move(state)));
  return Status();
}

std::string format_date(int year, unsigned month, unsigned day) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", year, month, day);
  return buf;
}

std::optional<std::int64_t> parse_iso_date_days(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  int y = 0;
  unsigned m = 0, d = 0;
  for (std::size_t i = 0; i < 10; ++i) {
    if (i == 4 || i == 7) continue;
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
  }
  y = std::stoi(std::string(text.substr(0, 4)));
  m = static_cast<unsigned>(std::stoi(std::string(text.substr(5, 2))));
  d = static_cast<unsigned>(std::stoi(std::string(text.substr(8, 2))));
  std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{m}, std::chrono::day{d}};
  if (!ymd.ok()) return std::nullopt;
  return std::chrono::sys_days(ymd).time_since_epoch().count();
}

std::optional<std::int64_t> parse_decimal_cents(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  if (text.empty()) return std::nullopt;
  bool negative = false;
  if (text.front() == '-' || text.front() == '+') {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  std::int64_t whole = 0;
  std::size_t i = 0;
  std::size_t digits = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, ++digits) {
    if (whole > 9'000'000'000'000'000 / 10 / 100) return std::nullopt;
    whole = whole * 10 + (text[i] - '0');
  }
  std::int64_t fraction = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    std::size_t places = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, ++places) {
      if (places >= 2) return std::nullopt;  // sub-cent amounts would be rounded silently
      fraction = fraction * 10 + (text[i] - '0');
      ++digits;
    }
    if (places == 1) fraction *= 10;
  }
  if (i != text.size() || digits == 0) return std::nullopt;
  std::int64_t cents = whole * 100 + fraction;
  return negative ? -cents : cents;
}

std::string format_cents(std::int64_t cents) {
  std::string sign = cents < 0 ? "-" : "";
  std::uint64_t abs =
      cents < 0 ? static_cast<std::uint64_t>(-(cents + 1)) + 1 : static_cast<std::uint64_t>(cents);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%s%llu.%02llu", sign.c_str(),
                static_cast<unsigned long long>(abs / 100),
                static_cast<unsigned long long>(abs % 100));
  return buf;
}

std::optional<std::int64_t> json_cents(const Json& value) {
  if (value.is_int()) return value.as_int() * 100;
  if (value.is_double()) return parse_decimal_cents(Json(value).dump());
  if (value.is_string()) return parse_decimal_cents(value.as_string());
  return std::nullopt;
}

std::string json_text(const Json& value) {
  if (value.is_null()) return "";
  if (value.is_string()) return value.as_string();
  return value.dump();
}

std::string expand_sequence(std::string path, std::int64_t n, int width) {
  auto at = path.find("{n}");
  if (at == std::string::npos) return path;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*lld", width, static_cast<long long>(n));
  path.replace(at, 3, buf);
  return path;
}

}  // namespace civicbus::connect::detail
