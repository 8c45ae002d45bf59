// Comparators of the match engine, on UTF-8 text compared by code point. Similarities are in
// [0, 1] (1: equal) so that comparators can be mixed in one score; distances count edits or
// units. ASCII strings of up to 64 bytes, the usual case for names and identifiers, are
// compared without allocating.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "civicbus/export.hpp"

namespace civicbus::match {

// Text as comparators want it: upper case, accents removed (É → E, ß → SS), punctuation
// other than the apostrophe dropped to a blank, apostrophes removed (O'NEIL → ONEIL), blanks
// collapsed and trimmed. "  Marie-Ève  O'Neil " → "MARIE EVE ONEIL".
CIVICBUS_EXPORT std::string fold(std::string_view text);

// Jaro similarity (Jaro 1989): matching characters within half the longer length, less half
// the transpositions.
CIVICBUS_EXPORT double jaro(std::string_view a, std::string_view b);
// Jaro-Winkler (Winkler 1990): Jaro boosted by the common prefix (at most 4 code points,
// scale `prefix_scale`, 0.1 as Winkler and Splink use).
CIVICBUS_EXPORT double jaro_winkler(std::string_view a, std::string_view b,
                                    double prefix_scale = 0.1);

// Levenshtein distance: insertions, deletions and substitutions, each costing 1.
CIVICBUS_EXPORT int levenshtein(std::string_view a, std::string_view b);
// The same distance when it is at most `limit`, else `limit + 1`; costs O(limit · length), so
// a thresholded comparison ("within 2 edits") stays cheap on long values.
CIVICBUS_EXPORT int levenshtein_within(std::string_view a, std::string_view b, int limit);
// Damerau-Levenshtein distance (unrestricted: adjacent transpositions count 1 even when other
// edits touch the same characters, as in Damerau 1964 and Lowrance-Wagner), "CA" → "ABC" is 2.
CIVICBUS_EXPORT int damerau_levenshtein(std::string_view a, std::string_view b);
// 1 - distance / longer length (1 when both are empty).
CIVICBUS_EXPORT double levenshtein_similarity(std::string_view a, std::string_view b);

// Jaccard similarity of the two values' sets of words (after fold): word order and repeats do
// not matter, "MAIN ST" vs "ST MAIN" is 1, "JOHN SMITH" vs "JOHN PAUL SMITH" is 2/3.
CIVICBUS_EXPORT double token_set_similarity(std::string_view a, std::string_view b);
// Dice coefficient of the q-gram multisets of the two values, each padded with q-1 marks at
// both ends (so the first and last characters weigh as much as the middle ones), as in Febrl.
CIVICBUS_EXPORT double qgram_similarity(std::string_view a, std::string_view b, int q = 2);

// |a - b| / max(|a|, |b|) (0 when both are 0): the relative difference of two amounts.
CIVICBUS_EXPORT double relative_difference(double a, double b);
// A number written in a field ("1,234.50", " 42 ", "-3e2"); nullopt when it is not one.
CIVICBUS_EXPORT std::optional<double> parse_number(std::string_view text);

// Days since 1970-01-01 of a date written YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD (a time after
// the date is ignored); nullopt when it is not a valid calendar date.
CIVICBUS_EXPORT std::optional<std::int32_t> days_since_epoch(std::string_view date);
// |days between two dates|, nullopt when either is not a date.
CIVICBUS_EXPORT std::optional<std::int32_t> date_distance_days(std::string_view a,
                                                               std::string_view b);

// Phonetic codes of a name (after fold; non-letters are ignored).
// American Soundex (National Archives rules: H and W do not separate equal codes), 4
// characters: "ROBERT" → "R163", "TYMCZAK" → "T522"; "" for a value without letters.
CIVICBUS_EXPORT std::string soundex(std::string_view name);
// NYSIIS (Taft 1970) without the six-character truncation: "KNIGHT" → "NAGT".
CIVICBUS_EXPORT std::string nysiis(std::string_view name);
// Double Metaphone (Philips 2000): a primary and an alternate code (equal when the name has
// one reading), at most `max_length` characters each. "SMITH" → {"SM0", "XMT"}.
struct PhoneticPair {
  std::string primary;
  std::string alternate;
};
CIVICBUS_EXPORT PhoneticPair double_metaphone(std::string_view name, int max_length = 4);

// A comparison key for names: fold(), then tokens sorted ("Smith, John" and "JOHN SMITH" give
// "JOHN SMITH"), so records that differ only in order, case or punctuation compare equal.
CIVICBUS_EXPORT std::string name_key(std::string_view name);

// Similarity of two names word by word: words are paired one to one, best pairs first (by
// Jaro-Winkler), and the scores averaged over the longer name's words, an unpaired word
// counting 0. "JOHN SMITH TREMBLAY" and "JOHN SMITH WONG" score 0.67 where plain
// Jaro-Winkler, lifted by the shared prefix, gives 0.86; "MARC MACDONALD" and "MARC
// MACDONALD MARTIN" score 0.67 (MARTIN may not pair with MARC twice). Words are split on
// blanks (name_key output is the intended input).
CIVICBUS_EXPORT double name_similarity(std::string_view a, std::string_view b);

}  // namespace civicbus::match
