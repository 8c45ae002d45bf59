// Fuzz target: the BAI2 parser (src/connect/municipal_formats.hpp), behind the `bai2`
// connector.
//
// Whatever the input, parsing must not crash and an error must name a bai2 line. A file that
// parses has a header and a trailer, every transaction and summary sits on a line of the
// input, and the counts agree with what was read.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "connect/municipal_formats.hpp"

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "bai2 fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace civicbus::connect::detail;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = parse_bai2(text);
  if (!parsed.ok()) {
    if (parsed.status().message().find("bai2") == std::string::npos) {
      fail("an error that names no line", parsed.status().message());
    }
    return 0;
  }
  std::int64_t lines = 1;
  for (char c : text) lines += c == '\n';
  if (parsed->physical_records < 2 || parsed->physical_records > lines) {
    fail("record count outside what the input holds");
  }
  if (parsed->accounts > 0 && parsed->groups == 0) fail("accounts outside any group");
  for (const auto& t : parsed->transactions) {
    if (t.line < 1 || t.line > lines) fail("a transaction on a line that does not exist");
    (void)bai2_direction(t.type_code);
  }
  for (const auto& s : parsed->summaries) {
    if (s.line < 1 || s.line > lines) fail("a summary on a line that does not exist");
  }
  return 0;
}
