// Fuzz target: the match engine's comparators (include/civicbus/match/compare.hpp), which
// score every candidate pair of records.
//
// The input is two values separated by the first newline (each cut to 200 bytes; without a
// newline the second value is empty). Nothing may crash, whatever the bytes. Values are
// compared by code point, a byte that does not start valid UTF-8 standing for itself as
// Latin-1 (compare.cpp), so "equal" below means the same code points:
//   - jaro and jaro_winkler are in [0, 1], symmetric, 1 for equal values;
//   - levenshtein is symmetric, 0 exactly for equal values, between the difference of the
//     lengths and the longer length; levenshtein_within(a, b, k) is min(levenshtein, k + 1);
//     damerau_levenshtein is at most levenshtein; levenshtein_similarity is 1 - d / longer;
//   - token_set and qgram similarities are in [0, 1] and symmetric;
//   - fold is idempotent, upper case, without blanks at the ends or two in a row; the
//     phonetic codes (taken after fold) are the same for fold(x); soundex is empty or 4
//     characters, double_metaphone's codes at most max_length;
//   - a date that parses is 0 days from itself and parses again, written YYYY-MM-DD,
//     YYYY/MM/DD and YYYYMMDD, to the same day; a number that parses is finite and parses
//     again from its shortest text.
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/match/compare.hpp"

namespace {

namespace m = civicbus::match;

[[noreturn]] void fail(const char* what, std::string_view a = {}, std::string_view b = {}) {
  std::fprintf(stderr, "compare fuzz: %s\na: %.*s\nb: %.*s\n", what, static_cast<int>(a.size()),
               a.data(), static_cast<int>(b.size()), b.data());
  std::abort();
}

// The comparators' reading of bytes as code points (decode_one in src/match/compare.cpp):
// well-formed UTF-8 (no overlong form, surrogate or value above U+10FFFF) is decoded; any
// other byte is one code point, its own value.
std::u32string code_points(std::string_view s) {
  std::u32string out;
  for (std::size_t i = 0; i < s.size();) {
    const auto lead = static_cast<unsigned char>(s[i]);
    std::size_t length = 0;
    char32_t cp = 0;
    char32_t smallest = 0;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
      cp = lead & 0x1F;
      smallest = 0x80;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      cp = lead & 0x0F;
      smallest = 0x800;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      cp = lead & 0x07;
      smallest = 0x10000;
    }
    bool valid = length > 0 && i + length <= s.size();
    for (std::size_t k = 1; valid && k < length; ++k) {
      const auto next = static_cast<unsigned char>(s[i + k]);
      if ((next & 0xC0) != 0x80) valid = false;
      cp = (cp << 6) | (next & 0x3F);
    }
    if (valid && (cp < smallest || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) {
      valid = false;
    }
    if (!valid) {
      out.push_back(lead);
      i += 1;
    } else {
      out.push_back(cp);
      i += length;
    }
  }
  return out;
}

// Symmetric scores are computed by the same formula with the operands swapped; a tolerance
// keeps the check from depending on the order of a floating-point sum.
bool close(double x, double y) {
  return std::fabs(x - y) <= 1e-9;
}
bool unit_interval(double x) {
  return x >= 0.0 && x <= 1.0;  // false for NaN
}

// Days since 1970-01-01 back to a civil date (Howard Hinnant's civil_from_days).
void civil_from_days(std::int32_t z, int& y, int& mo, int& d) {
  z += 719468;
  const int era = (z >= 0 ? z : z - 146096) / 146097;
  const int doe = z - era * 146097;
  const int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  mo = mp < 10 ? mp + 3 : mp - 9;
  y = yoe + era * 400 + (mo <= 2 ? 1 : 0);
}

void check_pair(std::string_view a, std::string_view b) {
  const std::u32string ca = code_points(a);
  const std::u32string cb = code_points(b);
  const bool equal = ca == cb;

  const double j = m::jaro(a, b);
  if (!unit_interval(j)) fail("jaro outside [0, 1]", a, b);
  if (!close(j, m::jaro(b, a))) fail("jaro is not symmetric", a, b);
  if (equal && j != 1.0) fail("jaro of equal values is not 1", a, b);
  const double jw = m::jaro_winkler(a, b);
  if (!unit_interval(jw)) fail("jaro_winkler outside [0, 1]", a, b);
  if (!close(jw, m::jaro_winkler(b, a))) fail("jaro_winkler is not symmetric", a, b);
  if (equal && jw != 1.0) fail("jaro_winkler of equal values is not 1", a, b);
  if (jw + 1e-9 < j) fail("jaro_winkler below jaro", a, b);

  const int d = m::levenshtein(a, b);
  if (d != m::levenshtein(b, a)) fail("levenshtein is not symmetric", a, b);
  if ((d == 0) != equal) fail("levenshtein is 0 for different values, or not for equal ones", a, b);
  const std::size_t longer = std::max(ca.size(), cb.size());
  const std::size_t shorter = std::min(ca.size(), cb.size());
  if (d < 0 || static_cast<std::size_t>(d) > longer)
    fail("levenshtein above the longer length", a, b);
  if (static_cast<std::size_t>(d) < longer - shorter) {
    fail("levenshtein below the difference of the lengths", a, b);
  }
  for (int k : {0, 1, 2, 5}) {
    if (m::levenshtein_within(a, b, k) != std::min(d, k + 1)) {
      fail("levenshtein_within(a, b, k) is not min(levenshtein, k + 1)", a, b);
    }
  }
  const int dl = m::damerau_levenshtein(a, b);
  if (dl > d) fail("damerau_levenshtein above levenshtein", a, b);
  if (dl != m::damerau_levenshtein(b, a)) fail("damerau_levenshtein is not symmetric", a, b);
  if ((dl == 0) != equal) fail("damerau_levenshtein is 0 for different values", a, b);
  // A transposition replaces at most two edits.
  if (2 * dl < d) fail("damerau_levenshtein below half of levenshtein", a, b);
  const double ls = m::levenshtein_similarity(a, b);
  const double expected_ls =
      longer == 0 ? 1.0 : 1.0 - static_cast<double>(d) / static_cast<double>(longer);
  if (!close(ls, expected_ls)) fail("levenshtein_similarity is not 1 - d / longer", a, b);

  const double ts = m::token_set_similarity(a, b);
  if (!unit_interval(ts)) fail("token_set_similarity outside [0, 1]", a, b);
  if (!close(ts, m::token_set_similarity(b, a)))
    fail("token_set_similarity is not symmetric", a, b);
  if (m::fold(a) == m::fold(b) && ts != 1.0) {
    fail("token_set_similarity of values that fold alike is not 1", a, b);
  }
  for (int q : {1, 2, 3}) {
    const double qs = m::qgram_similarity(a, b, q);
    if (!unit_interval(qs)) fail("qgram_similarity outside [0, 1]", a, b);
    if (!close(qs, m::qgram_similarity(b, a, q))) fail("qgram_similarity is not symmetric", a, b);
    if (equal && qs != 1.0) fail("qgram_similarity of equal values is not 1", a, b);
  }

  const double ns = m::name_similarity(a, b);
  if (!unit_interval(ns)) fail("name_similarity outside [0, 1]", a, b);

  if (const auto dist = m::date_distance_days(a, b)) {
    if (*dist < 0) fail("a negative date distance", a, b);
    if (m::date_distance_days(b, a) != dist) fail("date_distance_days is not symmetric", a, b);
  }
}

void check_value(std::string_view x) {
  const std::string f = m::fold(x);
  if (m::fold(f) != f) fail("fold is not idempotent", x, f);
  if (!f.empty() && (f.front() == ' ' || f.back() == ' '))
    fail("fold left a blank at an end", x, f);
  if (f.find("  ") != std::string::npos) fail("fold left two blanks in a row", x, f);
  for (char c : f) {
    if (c >= 'a' && c <= 'z') fail("fold left a lower-case letter", x, f);
  }

  const std::string sx = m::soundex(x);
  if (!sx.empty() && sx.size() != 4) fail("soundex is neither empty nor 4 characters", x, sx);
  if (m::soundex(f) != sx) fail("soundex differs for the folded value", x, f);
  if (m::nysiis(f) != m::nysiis(x)) fail("nysiis differs for the folded value", x, f);
  const m::PhoneticPair dm = m::double_metaphone(x);
  if (dm.primary.size() > 4 || dm.alternate.size() > 4) {
    fail("a double_metaphone code longer than 4", x, dm.primary + " " + dm.alternate);
  }
  const m::PhoneticPair dm_folded = m::double_metaphone(f);
  if (dm_folded.primary != dm.primary || dm_folded.alternate != dm.alternate) {
    fail("double_metaphone differs for the folded value", x, f);
  }
  for (int max_length : {1, 6}) {
    const m::PhoneticPair p = m::double_metaphone(x, max_length);
    if (p.primary.size() > static_cast<std::size_t>(max_length) ||
        p.alternate.size() > static_cast<std::size_t>(max_length)) {
      fail("a double_metaphone code longer than max_length", x, p.primary + " " + p.alternate);
    }
  }
  const std::string key = m::name_key(x);
  if (m::name_key(key) != key) fail("name_key is not idempotent", x, key);

  if (const std::optional<std::int32_t> days = m::days_since_epoch(x)) {
    if (m::date_distance_days(x, x) != 0) fail("a date is not 0 days from itself", x);
    int y = 0, mo = 0, d = 0;
    civil_from_days(*days, y, mo, d);
    char text[3][16];
    std::snprintf(text[0], sizeof text[0], "%04d-%02d-%02d", y, mo, d);
    std::snprintf(text[1], sizeof text[1], "%04d/%02d/%02d", y, mo, d);
    std::snprintf(text[2], sizeof text[2], "%04d%02d%02d", y, mo, d);
    for (const char* t : text) {
      if (m::days_since_epoch(t) != days) fail("a date written again reads another day", x, t);
    }
  }

  if (const std::optional<double> n = m::parse_number(x)) {
    if (!std::isfinite(*n)) fail("parse_number gave a number that is not finite", x);
    char text[64];
    const auto [end, error] = std::to_chars(text, text + sizeof text, *n);
    if (error != std::errc()) fail("a parsed number does not print", x);
    const std::string_view printed(text, static_cast<std::size_t>(end - text));
    if (m::parse_number(printed) != n)
      fail("a number printed again reads another value", x, printed);
    if (m::relative_difference(*n, *n) != 0.0)
      fail("relative_difference of a number and itself", x);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = text.find('\n');
  std::string_view a = text.substr(0, newline);
  std::string_view b =
      newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
  // Long values take the heap paths already past 64 code points; 200 bytes keeps the
  // quadratic comparators fast.
  a = a.substr(0, 200);
  b = b.substr(0, 200);

  check_value(a);
  check_value(b);
  check_pair(a, b);
  check_pair(a, a);
  check_pair(a, std::string_view());
  return 0;
}
