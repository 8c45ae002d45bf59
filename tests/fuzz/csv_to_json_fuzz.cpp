// Fuzz target: gateway::csv_to_json and json_to_csv (src/gateway/transform.hpp), the CSV side
// of the gateway's body transforms.
//
// The input is a CSV body. Whatever it is, reading must not crash; errors carry a message.
// When it reads (strictly or leniently), every row has the header's keys, and writing the rows
// as CSV (CRLF and LF) and reading that again gives the same rows.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "civicbus/core/json.hpp"
#include "gateway/transform.hpp"

namespace {

using civicbus::Json;
using civicbus::gateway::TransformOptions;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "csv_to_json fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

void check(std::string_view csv, const TransformOptions& options) {
  civicbus::Result<Json> rows = civicbus::gateway::csv_to_json(csv, options);
  if (!rows.ok()) {
    if (rows.status().message().empty()) fail("an error without a message");
    return;
  }
  if (!rows->is_array()) fail("the JSON is not an array", rows->dump());
  std::size_t columns = 0;
  for (const Json& row : rows->as_array()) {
    if (!row.is_object()) fail("a row is not an object", rows->dump());
    if (columns == 0) columns = row.size();
    if (row.size() != columns || columns == 0) fail("rows differ in their keys", rows->dump());
  }
  for (const bool crlf : {true, false}) {
    TransformOptions write = options;
    write.csv_crlf = crlf;
    civicbus::Result<std::string> written = civicbus::gateway::json_to_csv(*rows, write);
    if (!written.ok()) fail("rows read from CSV do not write back", written.status().to_string());
    civicbus::Result<Json> again = civicbus::gateway::csv_to_json(*written, options);
    if (!again.ok())
      fail("the CSV written is refused", again.status().to_string() + "\n" + *written);
    // A header without data rows writes nothing (no keys are known), so it reads back as [].
    if (*again != *rows)
      fail("csv_to_json(json_to_csv(rows)) != rows", rows->dump() + "\n" + *written);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view csv(reinterpret_cast<const char*>(data), size);
  TransformOptions options;
  options.max_input_bytes = 1 << 24;
  options.max_output_bytes = 1 << 26;
  check(csv, options);
  options.csv_lenient_quotes = true;
  check(csv, options);
  options.infer_types = true;
  check(csv, options);
  return 0;
}
