#include <doctest/doctest.h>

#include <string>

#include "core/ecma_regex.hpp"

namespace civicbus::detail {
namespace {

bool matches(std::string_view pattern, std::string_view text) {
  auto re = EcmaRegex::compile(pattern);
  REQUIRE_MESSAGE(re.ok(), pattern, ": ", re.status().message());
  return re->search(text);
}

std::string compile_error(std::string_view pattern) {
  auto re = EcmaRegex::compile(pattern);
  REQUIRE_FALSE_MESSAGE(re.ok(), pattern);
  return re.status().message();
}

TEST_CASE("ecma regex: search is unanchored unless the pattern anchors it") {
  CHECK(matches("a+", "xxaay"));
  CHECK_FALSE(matches("a+", "xyz"));
  CHECK(matches("^a*$", ""));
  CHECK(matches("^a*$", "aaaa"));
  CHECK_FALSE(matches("^a*$", "aaba"));
  CHECK(matches("", "anything"));
  CHECK(matches("b$", "ab"));
  CHECK_FALSE(matches("^b", "ab"));
  CHECK(matches("^a|b$", "xb"));
  CHECK(matches("^(a|b)$", "b"));
  CHECK_FALSE(matches("^(a|b)$", "ab"));
}

TEST_CASE("ecma regex: quantifiers") {
  CHECK(matches("^a{3}$", "aaa"));
  CHECK_FALSE(matches("^a{3}$", "aa"));
  CHECK(matches("^a{2,}$", "aaaaa"));
  CHECK_FALSE(matches("^a{2,}$", "a"));
  CHECK(matches("^a{1,3}$", "aaa"));
  CHECK_FALSE(matches("^a{1,3}$", "aaaa"));
  CHECK(matches("^(ab)+?c$", "ababc"));
  CHECK(matches("^x?y$", "y"));
  CHECK(matches("a{,2}", "a{,2}"));  // not a quantifier: literal braces
  CHECK(matches("^(a*)*$", "aaa"));   // empty loops terminate
  CHECK(matches("^(a|)+b$", "aab"));
}

TEST_CASE("ecma regex: classes and escapes") {
  CHECK(matches("^[A-Z][0-9][A-Z] ?[0-9][A-Z][0-9]$", "K1A 0B1"));
  CHECK_FALSE(matches("^[A-Z][0-9][A-Z] ?[0-9][A-Z][0-9]$", "K1A-0B1"));
  CHECK(matches("^[^abc]+$", "xyz"));
  CHECK_FALSE(matches("^[^abc]+$", "xaz"));
  CHECK(matches("^[\\w.-]+@[\\w-]+\\.[a-z]{2,}$", "clerk.office@city-hall.ca"));
  CHECK(matches("^\\d+$", "0123"));
  CHECK_FALSE(matches("^\\d+$", "\xD9\xA1"));  // ARABIC-INDIC DIGIT ONE: \d is ASCII only
  CHECK(matches("^\\s$", "\xE3\x80\x80"));    // IDEOGRAPHIC SPACE is \s
  CHECK(matches("^\\S+$", "abc"));
  CHECK(matches("^\\W$", "\xC3\xA9"));
  CHECK(matches("^[-a]+$", "-a-"));
  CHECK(matches("^[a-]+$", "-a-"));
  CHECK(matches("^[\\-\\]]+$", "-]"));
  CHECK(matches("^\\x41\\u0042\\u{43}$", "ABC"));
  CHECK(matches("^\\uD83D\\uDE00$", "\xF0\x9F\x98\x80"));
  CHECK(matches("^\\t\\n$", "\t\n"));
  CHECK(matches("^\\cJ$", "\n"));
  CHECK(matches("^[\\b]$", "\b"));
  CHECK(matches("^\\.\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|\\/\\\\\\^\\$$", ".*+?()[]{}|/\\^$"));
  CHECK_FALSE(matches("[]", "a"));
  CHECK(matches("^[^]$", "\n"));
}

TEST_CASE("ecma regex: unicode") {
  CHECK(matches("^.$", "\xC3\xA9"));              // one code point, two bytes
  CHECK(matches("^.$", "\xF0\x9F\x98\x80"));      // astral code point
  CHECK_FALSE(matches("^.$", "\n"));
  CHECK(matches("^\\p{Letter}+$", "Hello"));
  CHECK(matches("^\\p{Letter}+$", "\xCF\x80"));  // pi
  CHECK_FALSE(matches("^\\p{Letter}+$", "123"));
  CHECK(matches("^\\p{L}\\p{Nd}$", "x5"));
  CHECK(matches("^\\p{Lu}+$", "ABC"));
  CHECK_FALSE(matches("^\\p{Lu}+$", "AbC"));
  CHECK(matches("^\\P{L}+$", "123"));
  CHECK(matches("^[\\p{L}\\d ]+$", "R\xC3\xA9sum\xC3\xA9 2"));
  CHECK(matches("^\\p{gc=Nd}$", "\xD9\xA1"));
  CHECK(matches("^\\p{General_Category=Decimal_Number}$", "7"));
  CHECK(matches("^\\p{Any}$", "\xE2\x82\xAC"));
  CHECK(matches("^[\xC3\xA0-\xC3\xBF]$", "\xC3\xA9"));  // range of non-ASCII letters
  CHECK(matches("^\xC3\xA1", "\xC3\xA1rm\xC3\xA1nyos"));
  CHECK_FALSE(matches("^\xC3\xA1", "\xC3\xA9lm\xC3\xA9ny"));
}

TEST_CASE("ecma regex: assertions and lookahead") {
  CHECK(matches("\\bward\\b", "city ward 7"));
  CHECK_FALSE(matches("\\bward\\b", "cityward7"));
  CHECK(matches("\\Bity", "city"));
  CHECK(matches("^(?=.*[A-Z])(?=.*\\d).{8,}$", "Permit2024x"));
  CHECK_FALSE(matches("^(?=.*[A-Z])(?=.*\\d).{8,}$", "permit2024x"));
  CHECK(matches("^(?!admin$).+$", "clerk"));
  CHECK_FALSE(matches("^(?!admin$).+$", "admin"));
  CHECK(matches("foo(?=bar)", "foobar"));
  CHECK_FALSE(matches("foo(?=bar)", "foobaz"));
  CHECK(matches("^(?<year>\\d{4})-(?:\\d{2})$", "2024-05"));
}

TEST_CASE("ecma regex: linear time on hostile input") {
  const std::string text(100000, 'a');
  CHECK_FALSE(matches("^(a+)+$", text + "!"));
  CHECK(matches("^(a|aa)*$", text));
  CHECK(matches("(a*)*b|a", text));
}

TEST_CASE("ecma regex: errors") {
  CHECK(compile_error("(a").find("missing ')'") != std::string::npos);
  CHECK(compile_error("a)").find("unmatched") != std::string::npos);
  CHECK(compile_error("[a").find("']'") != std::string::npos);
  CHECK(compile_error("*a").find("nothing to repeat") != std::string::npos);
  CHECK(compile_error("a**").find("nothing to repeat") != std::string::npos);
  CHECK(compile_error("a{3,1}").find("out of order") != std::string::npos);
  CHECK(compile_error("[z-a]").find("out of order") != std::string::npos);
  CHECK(compile_error("(a)\\1").find("backreferences") != std::string::npos);
  CHECK(compile_error("(?<=a)b").find("lookbehind") != std::string::npos);
  CHECK(compile_error("\\p{Script=Greek}").find("not supported") != std::string::npos);
  CHECK(compile_error("\\p{Nope}").find("Nope") != std::string::npos);
  CHECK(compile_error("\\q").find("escape") != std::string::npos);
  CHECK(compile_error("a\\").find("backslash") != std::string::npos);
  CHECK(compile_error("((a{1000}){1000}){1000}").find("too large") != std::string::npos);
  CHECK(compile_error(std::string(300, '(') + std::string(300, ')')).find("nested") !=
        std::string::npos);
  CHECK(compile_error("^*").find("repeat") != std::string::npos);
}

}  // namespace
}  // namespace civicbus::detail
