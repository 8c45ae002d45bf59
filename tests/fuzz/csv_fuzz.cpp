// Fuzz target: the core CSV reader (include/civicbus/core/csv.hpp), which device imports and
// the connectors read files with.
//
// Whatever the input, reading must not crash and an error must carry a message naming a line.
// When the text reads, writing each record with csv_format_record and reading that again gives
// the same fields (records made only of one empty field are skipped as empty lines, as the
// reader does by default, so they are left out of the comparison).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/csv.hpp"

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "csv fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

void check(std::string_view text, civicbus::CsvOptions options) {
  civicbus::CsvReader reader(text, options);
  std::vector<std::vector<std::string>> records;
  for (int guard = 0; guard < 1'000'000; ++guard) {
    auto next = reader.next_record();
    if (!next.ok()) {
      if (next.status().message().find("line") == std::string::npos) {
        fail("an error that names no line", next.status().message());
      }
      return;
    }
    if (!*next) break;
    if ((*next)->line == 0) fail("a record on line 0");
    records.push_back(std::move((*next)->fields));
  }
  std::string written;
  std::vector<std::vector<std::string>> expected;
  for (const auto& r : records) {
    if (r.size() == 1 && r[0].empty()) continue;
    written += civicbus::csv_format_record(r, options.delimiter);
    expected.push_back(r);
  }
  civicbus::CsvOptions strict;
  strict.delimiter = options.delimiter;
  civicbus::CsvReader again(written, strict);
  std::size_t i = 0;
  for (;;) {
    auto next = again.next_record();
    if (!next.ok()) fail("the CSV written is refused", next.status().message());
    if (!*next) break;
    if (i >= expected.size() || (*next)->fields != expected[i]) fail("round trip differs", written);
    ++i;
  }
  if (i != expected.size()) fail("round trip lost records", written);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  civicbus::CsvOptions options;
  check(text, options);
  options.allow_bare_quotes = true;
  check(text, options);
  options.delimiter = ';';
  check(text, options);
  return 0;
}
