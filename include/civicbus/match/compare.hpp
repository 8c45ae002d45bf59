// String comparators of the match engine, on UTF-8 text compared by code point. Each returns a
// similarity in [0, 1] (1: equal) so that comparators can be mixed in one score.
#pragma once

#include <string>
#include <string_view>

namespace civicbus::match {

// Jaro similarity (Jaro 1989): matching characters within half the longer length, less half
// the transpositions.
double jaro(std::string_view a, std::string_view b);
// Jaro-Winkler (Winkler 1990): Jaro boosted by the common prefix (at most 4 code points,
// scale `prefix_scale`, 0.1 as Winkler and Splink use).
double jaro_winkler(std::string_view a, std::string_view b, double prefix_scale = 0.1);

// A comparison key for names: upper case, accents removed (É → E), punctuation and repeated
// blanks dropped, tokens sorted ("Smith, John" and "JOHN SMITH" give "JOHN SMITH"), so
// records that differ only in order, case or punctuation compare equal.
std::string name_key(std::string_view name);

// Similarity of two names word by word: words are paired one to one, best pairs first (by
// Jaro-Winkler), and the scores averaged over the longer name's words, an unpaired word
// counting 0. "JOHN SMITH TREMBLAY" and "JOHN SMITH WONG" score 0.84 where plain
// Jaro-Winkler, lifted by the shared prefix, gives 0.86; "MARC MACDONALD" and "MARC
// MACDONALD MARTIN" score 0.67 (MARTIN may not pair with MARC twice). Words are split on
// blanks (name_key output is the intended input).
double name_similarity(std::string_view a, std::string_view b);

}  // namespace civicbus::match
