// Fuzz target: the CPA 005 parser and writer (src/connect/municipal_formats.hpp), behind the
// `cpa005` connector.
//
// Whatever the input, parsing must not crash and an error must name a cpa005 record or line.
// When a file parses and the writer accepts its transactions, the file written parses again
// to the same transactions (type, code, amount, due date, institution, transit, account,
// payee, cross reference) and the same header.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "connect/municipal_formats.hpp"

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "cpa005 fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace civicbus::connect::detail;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = parse_cpa005(text);
  if (!parsed.ok()) {
    if (parsed.status().message().find("cpa005") == std::string::npos) {
      fail("an error that names no record", parsed.status().message());
    }
    return 0;
  }
  if (parsed->record_count < 2) fail("a file without header and trailer parsed");
  auto written = write_cpa005(parsed->header, parsed->transactions);
  if (!written.ok()) return 0;  // e.g. a zero amount the writer refuses to originate
  auto again = parse_cpa005(*written);
  if (!again.ok()) fail("the file written is refused", again.status().message());
  if (again->transactions.size() != parsed->transactions.size()) fail("transactions lost");
  if (again->header.originator_id != parsed->header.originator_id ||
      again->header.file_creation_number != parsed->header.file_creation_number ||
      again->header.creation_date != parsed->header.creation_date) {
    fail("header differs after the round trip");
  }
  for (std::size_t i = 0; i < parsed->transactions.size(); ++i) {
    const auto& a = parsed->transactions[i];
    const auto& b = again->transactions[i];
    if (a.record_type != b.record_type || a.transaction_type != b.transaction_type ||
        a.amount_cents != b.amount_cents || a.due_date != b.due_date ||
        a.institution != b.institution || a.transit != b.transit || a.account != b.account ||
        a.payee_name != b.payee_name || a.cross_reference != b.cross_reference) {
      fail("a transaction differs after the round trip", *written);
    }
  }
  return 0;
}
