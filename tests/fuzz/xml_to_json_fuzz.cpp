// Fuzz target: gateway::xml_to_json and json_to_xml (src/gateway/transform.hpp), the XML side
// of the gateway's body transforms.
//
// The input is an XML body. Whatever it is, reading must not crash, hang or expand entities;
// errors carry a message. When it reads, the JSON must write back as XML (every name and text
// that came from XML can go back), and reading that XML must give the same JSON: the mapping
// is stable after one trip, both with strings only and with inferred types. XML -> CSV must
// not crash either.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "civicbus/core/json.hpp"
#include "gateway/transform.hpp"

namespace {

using civicbus::ErrorCode;
using civicbus::Json;
using civicbus::gateway::TransformOptions;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "xml_to_json fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

void check_round_trip(std::string_view xml, const TransformOptions& options) {
  civicbus::Result<Json> first = civicbus::gateway::xml_to_json(xml, options);
  if (!first.ok()) {
    const auto code = first.status().code();
    if (first.status().message().empty()) fail("an error without a message");
    if (code != ErrorCode::kInvalidArgument && code != ErrorCode::kResourceExhausted) {
      fail("an error with an unexpected code", first.status().to_string());
    }
    return;
  }
  const Json& value = *first;
  if (!value.is_object() || value.size() != 1) fail("the JSON is not {root: value}", value.dump());
  civicbus::Result<std::string> written = civicbus::gateway::json_to_xml(value, options);
  if (!written.ok()) fail("JSON read from XML does not write back", written.status().to_string());
  civicbus::Result<Json> again = civicbus::gateway::xml_to_json(*written, options);
  if (!again.ok()) fail("the XML written is refused", again.status().to_string() + "\n" + *written);
  if (*again != value) fail("xml_to_json(json_to_xml(v)) != v", value.dump() + "\n" + *written);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view xml(reinterpret_cast<const char*>(data), size);
  TransformOptions options;
  options.max_depth = 32;
  // The XML written back may be longer than the input (escapes), so the limits are loose.
  options.max_input_bytes = 1 << 24;
  options.max_output_bytes = 1 << 26;
  check_round_trip(xml, options);
  options.infer_types = true;
  check_round_trip(xml, options);

  civicbus::Result<std::string> csv = civicbus::gateway::transform_body(
      xml, civicbus::gateway::BodyFormat::kXml, civicbus::gateway::BodyFormat::kCsv, options);
  if (!csv.ok() && csv.status().message().empty()) fail("XML -> CSV error without a message");
  return 0;
}
