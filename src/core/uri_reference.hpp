// URI references as JSON Schema uses them for "$id", "$ref" and "$schema" (RFC 3986 §5).
#pragma once

#include <string>
#include <string_view>

namespace civicbus::detail {

// Resolves `reference` against `base` (RFC 3986 §5.2.2, with dot-segment removal). `base` may
// itself be relative or empty; the result then stays relative.
std::string resolve_uri(std::string_view base, std::string_view reference);

// Splits "uri#fragment" into the part before '#' and the fragment (without '#'); `has_fragment`
// tells "x#" from "x".
struct UriAndFragment {
  std::string_view uri;
  std::string_view fragment;
  bool has_fragment = false;
};
UriAndFragment split_fragment(std::string_view uri);

// Decodes %XX escapes (JSON pointers in fragments arrive percent-encoded). Malformed escapes
// are kept as they are.
std::string percent_decode(std::string_view text);

// Escapes one JSON pointer token (~ -> ~0, / -> ~1) onto `out`.
void append_pointer_token(std::string& out, std::string_view token);

}  // namespace civicbus::detail
