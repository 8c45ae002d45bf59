// Checks for the "format" values of JSON Schema draft 2020-12, used when format assertion is
// on (JsonSchema::Options::format_assertion or the format-assertion vocabulary).
#pragma once

#include <string_view>

namespace civicbus::detail {

// True if `value` is a valid `format` string. Formats this function does not know are valid:
// the specification lets unknown formats pass, and a schema naming a custom format should
// not start rejecting events when assertion is turned on.
bool format_matches(std::string_view format, std::string_view value);

// True if civicbus checks this format (so a test can tell "valid" from "not checked").
bool is_known_format(std::string_view format);

}  // namespace civicbus::detail
