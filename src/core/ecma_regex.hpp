// EcmaRegex: the regular expressions of JSON Schema's "pattern" and "patternProperties".
//
// JSON Schema patterns are ECMA-262 regular expressions matched against Unicode text. This is
// a small engine of our own rather than std::regex because std::regex matches bytes (so "."
// and ranges break on non-ASCII text), has no \p{...}, and backtracks recursively, so a long
// event field can exhaust the stack. Here a pattern compiles to an NFA program run by a Pike
// VM: time is linear in the text, memory is bounded by the pattern, and nothing recurses on
// the text.
//
// Supported: alternation, groups (capturing, non-capturing, named), greedy and lazy
// quantifiers, classes with ranges, \d \w \s (ASCII-only \d and \w, as in ECMA-262), \b \B,
// ^ $, lookahead (?= ) (?! ), escapes \t \n \v \f \r \0 \cX \xHH \uHHHH \u{H...}, and
// \p{...}/\P{...} for General_Category values (L, Letter, Lu, Nd, ...), Any, ASCII and
// Assigned. Not supported, reported at compile time: backreferences, lookbehind, and
// \p{Script=...}.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "civicbus/core/status.hpp"

namespace civicbus::detail {

class EcmaRegex {
 public:
  // Compiles `pattern`. Errors say what is wrong or unsupported and where.
  static Result<EcmaRegex> compile(std::string_view pattern);

  // True if the pattern matches somewhere in `text` (UTF-8; the search is unanchored, as
  // JSON Schema requires). Safe to call from many threads at once.
  bool search(std::string_view text) const;

  const std::string& pattern() const;

  struct Program;

 private:
  explicit EcmaRegex(std::shared_ptr<const Program> program) : program_(std::move(program)) {}
  std::shared_ptr<const Program> program_;  // immutable; shared so copies are cheap
};

}  // namespace civicbus::detail
