// Fuzz target: EcmaRegex, the engine behind JSON Schema "pattern" and "patternProperties".
//
// The input is a pattern, a newline, and a subject text:
//
//   ^[a-z]+(?:-[a-z]+)*$
//   permit-issued
//
// (no newline: the whole input is the pattern). Compiling must not crash or hang on any
// pattern, and searching must stay linear in the text, as the engine promises. A pattern that
// compiles is searched in the subject and in a few fixed texts; wrapping it in a
// non-capturing group must not change what it matches.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/ecma_regex.hpp"

namespace {

using civicbus::detail::EcmaRegex;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "ecma_regex fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

constexpr std::string_view kFixedTexts[] = {
    "",
    "a",
    "permit.issued",
    "K1A 0B1",
    "2026-11-22T14:52:00Z",
    "\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x9A\x8C",  // été € 🚌
    "\xFF\xFE not UTF-8 \xC0\xAF",
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = input.find('\n');
  const std::string_view pattern = input.substr(0, newline);
  const std::string_view subject =
      newline == std::string_view::npos ? std::string_view() : input.substr(newline + 1);

  civicbus::Result<EcmaRegex> re = EcmaRegex::compile(pattern);
  if (!re.ok()) {
    if (re.status().message().empty()) fail("compile error without a message");
    return 0;
  }
  if (re->pattern() != pattern) fail("pattern() is not the compiled pattern");

  const bool in_subject = re->search(subject);
  civicbus::Result<EcmaRegex> grouped = EcmaRegex::compile("(?:" + std::string(pattern) + ")");
  // The group adds a level of nesting, which may cross the nesting limit; that is fine.
  if (grouped.ok() && grouped->search(subject) != in_subject) {
    fail("wrapping the pattern in (?:...) changed the result", pattern);
  }
  for (std::string_view text : kFixedTexts) (void)re->search(text);
  return 0;
}
