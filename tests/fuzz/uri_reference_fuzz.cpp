// Fuzz target: the URI-reference helpers JSON Schema uses for "$id", "$ref" and "$schema"
// (src/core/uri_reference.hpp).
//
// The input is a base URI, a newline, and a reference:
//
//   https://schemas.city.example/permits/permit.json
//   ../common/address.json#/$defs/postal_code
//
// (no newline: the input is the reference, resolved against an empty base). Nothing may crash
// or read out of bounds; the checks are properties RFC 3986 §5 guarantees: the result carries
// exactly the reference's fragment; a reference with a scheme does not depend on the base;
// split_fragment() splits at the first '#' and loses nothing. A fragment that is a JSON
// pointer token, escaped by append_pointer_token, must find the member it names.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "civicbus/core/json.hpp"
#include "core/uri_reference.hpp"

namespace {

namespace detail = civicbus::detail;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "uri_reference fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

void check_split(std::string_view uri) {
  const detail::UriAndFragment parts = detail::split_fragment(uri);
  std::string joined(parts.uri);
  if (parts.has_fragment) {
    joined += '#';
    joined += parts.fragment;
  }
  if (joined != uri) fail("split_fragment lost or changed text", uri);
  if (parts.uri.find('#') != std::string_view::npos)
    fail("split_fragment did not split at the first '#'", uri);
  if (!parts.has_fragment && !parts.fragment.empty()) fail("a fragment without '#'", uri);
}

bool has_scheme(std::string_view uri) {
  const std::size_t colon = uri.find_first_of(":/?#");
  if (colon == std::string_view::npos || colon == 0 || uri[colon] != ':') return false;
  for (std::size_t i = 0; i < colon; ++i) {
    const char c = uri[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!(alpha || (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.')))) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = input.find('\n');
  const std::string_view base =
      newline == std::string_view::npos ? std::string_view() : input.substr(0, newline);
  const std::string_view reference =
      newline == std::string_view::npos ? input : input.substr(newline + 1);

  check_split(base);
  check_split(reference);

  const std::string resolved = detail::resolve_uri(base, reference);
  check_split(resolved);
  const detail::UriAndFragment ref_parts = detail::split_fragment(reference);
  const detail::UriAndFragment out_parts = detail::split_fragment(resolved);
  if (out_parts.has_fragment != ref_parts.has_fragment ||
      out_parts.fragment != ref_parts.fragment) {
    fail("the resolved URI does not carry the reference's fragment", resolved);
  }
  if (has_scheme(reference) && detail::resolve_uri("", reference) != resolved) {
    fail("a reference with a scheme depends on the base", resolved);
  }

  const std::string decoded = detail::percent_decode(ref_parts.fragment);
  if (decoded.size() > ref_parts.fragment.size()) fail("percent_decode made the text longer");
  if (ref_parts.fragment.find('%') == std::string_view::npos && decoded != ref_parts.fragment) {
    fail("percent_decode changed text without escapes", decoded);
  }

  // A member named by any text is found through the pointer built from it.
  civicbus::Json object = civicbus::Json::object({{decoded, 1}, {"other", 2}});
  std::string pointer = "/";
  detail::append_pointer_token(pointer, decoded);
  const civicbus::Json* found = object.at_pointer(pointer);
  if (found == nullptr || *found != civicbus::Json(1)) {
    if (decoded != "other")
      fail("a pointer built by append_pointer_token misses its member", pointer);
  }
  return 0;
}
