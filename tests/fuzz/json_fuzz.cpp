// Fuzz target: Json::parse and Json::dump.
//
// The input is JSON text. Whatever it is, parsing must not crash; when it parses, writing the
// value (compact and indented) and parsing that again must give an equal value, and writing
// must be stable (dump(parse(dump(v))) == dump(v)). The careful byte-by-byte parser that
// Json::parse falls back on must agree with the fast path: it accepts what simdjson accepts,
// with an equal value. RFC 6901 pointers to the members of a top-level object must find them.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "civicbus/core/json.hpp"
#include "core/json_text.hpp"
#include "core/uri_reference.hpp"

namespace {

using civicbus::Json;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "json fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

void check_round_trip(const Json& value, int indent) {
  const std::string text = value.dump(indent);
  civicbus::Result<Json> again = Json::parse(text);
  if (!again.ok()) fail("the writer produced text the parser refuses", again.status().message());
  if (*again != value) fail("parse(dump(v)) != v", text);
  if (again->dump(indent) != text) fail("dump(parse(dump(v))) != dump(v)", text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  civicbus::Result<Json> parsed = Json::parse(text);
  civicbus::Result<Json> careful = civicbus::detail::parse_json_text(text);
  if (!parsed.ok()) {
    if (parsed.status().message().empty()) fail("parse error without a message");
    return 0;
  }
  if (!careful.ok()) {
    fail("Json::parse accepts a text the careful parser refuses", careful.status().message());
  }
  const Json& value = *parsed;
  if (!(value == value)) fail("v != v");
  if (*careful != value) fail("the careful parser reads another value", text);

  check_round_trip(value, 0);
  check_round_trip(value, 2);

  if (value.at_pointer("") != &value) fail("at_pointer(\"\") is not the document");
  if (value.is_object()) {
    for (const auto& [key, member] : value.as_object()) {
      std::string pointer = "/";
      civicbus::detail::append_pointer_token(pointer, key);
      if (value.at_pointer(pointer) != &member) fail("pointer to a member does not find it", key);
      if (value.find(key) != &member) fail("find() does not find a member", key);
    }
  }
  return 0;
}
