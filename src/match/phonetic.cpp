// Phonetic codes of names: Soundex, NYSIIS and Double Metaphone, on the letters of fold().
#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>

#include "civicbus/match/compare.hpp"

namespace civicbus::match {
namespace {

bool is_letter(char c) {
  return c >= 'A' && c <= 'Z';
}

// The letters A-Z of fold(name). With `keep_blanks`, words stay apart by one blank, since
// Double Metaphone reads "VAN ", "SAN " or "MAC C" across them.
std::string letters_of(std::string_view name, bool keep_blanks) {
  const std::string folded = fold(name);
  std::string out;
  out.reserve(folded.size());
  for (char c : folded) {
    if (is_letter(c)) {
      out += c;
    } else if (c == ' ' && keep_blanks && !out.empty() && out.back() != ' ') {
      out += ' ';
    }
  }
  if (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Soundex

// The Soundex digit of a letter; '0' for the vowels (and Y), which separate equal digits, and
// 'h' for H and W, which do not.
char soundex_digit(char c) {
  switch (c) {
    case 'B':
    case 'F':
    case 'P':
    case 'V':
      return '1';
    case 'C':
    case 'G':
    case 'J':
    case 'K':
    case 'Q':
    case 'S':
    case 'X':
    case 'Z':
      return '2';
    case 'D':
    case 'T':
      return '3';
    case 'L':
      return '4';
    case 'M':
    case 'N':
      return '5';
    case 'R':
      return '6';
    case 'H':
    case 'W':
      return 'h';
    default:
      return '0';
  }
}

// ---------------------------------------------------------------------------------------------
// NYSIIS

bool is_nysiis_vowel(char c) {
  return c == 'A' || c == 'E' || c == 'I' || c == 'O' || c == 'U';
}

bool starts_with(const std::string& s, std::string_view prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// ---------------------------------------------------------------------------------------------
// Double Metaphone

// One run of Philips' Double Metaphone over an upper-case word. Each letter has its rule; a rule
// reads the letters around it, appends to the primary and alternate codes and says where the
// next rule starts. Positions past the end read as blanks, as in the published algorithm (which
// pads the word with blanks), so "IER " matches at the end of a word.
class DoubleMetaphoneCoder {
 public:
  DoubleMetaphoneCoder(std::string word, std::size_t max_length)
      : word_(std::move(word)),
        last_(static_cast<std::ptrdiff_t>(word_.size()) - 1),
        max_length_(max_length),
        slavo_germanic_(word_.find_first_of("WK") != std::string::npos ||
                        word_.find("CZ") != std::string::npos) {}

  PhoneticPair run() {
    std::ptrdiff_t i = 0;
    if (is_at(0, {"GN", "KN", "PN", "WR", "PS"})) i = 1;  // silent first letter
    if (at(0) == 'X') {                                   // Xavier: an initial X sounds S
      add("S");
      i = 1;
    }
    const auto length = static_cast<std::ptrdiff_t>(word_.size());
    while (i < length && (primary_.size() < max_length_ || alternate_.size() < max_length_)) {
      i = code_at(i);
    }
    if (primary_.size() > max_length_) primary_.resize(max_length_);
    if (alternate_.size() > max_length_) alternate_.resize(max_length_);
    return {std::move(primary_), std::move(alternate_)};
  }

 private:
  char at(std::ptrdiff_t i) const {
    if (i < 0) return '\0';
    return i < static_cast<std::ptrdiff_t>(word_.size()) ? word_[static_cast<std::size_t>(i)] : ' ';
  }
  bool is_vowel(std::ptrdiff_t i) const {
    const char c = at(i);
    return c == 'A' || c == 'E' || c == 'I' || c == 'O' || c == 'U' || c == 'Y';
  }
  // Whether one of `options` is written at `start` (never before the word's start).
  bool is_at(std::ptrdiff_t start, std::initializer_list<std::string_view> options) const {
    if (start < 0) return false;
    for (std::string_view option : options) {
      bool same = true;
      for (std::size_t k = 0; k < option.size() && same; ++k) {
        same = at(start + static_cast<std::ptrdiff_t>(k)) == option[k];
      }
      if (same) return true;
    }
    return false;
  }
  bool starts_germanic() const { return is_at(0, {"VAN ", "VON ", "SCH"}); }

  void add(std::string_view both) { add(both, both); }
  void add(std::string_view primary, std::string_view alternate) {
    primary_ += primary;
    alternate_ += alternate;
  }
  // The position after `i`, skipping a doubled letter.
  std::ptrdiff_t skip_double(std::ptrdiff_t i) const { return at(i + 1) == at(i) ? i + 2 : i + 1; }

  std::ptrdiff_t code_at(std::ptrdiff_t i) {
    switch (at(i)) {
      case 'A':
      case 'E':
      case 'I':
      case 'O':
      case 'U':
      case 'Y':
        if (i == 0) add("A");  // vowels count only at the start
        return i + 1;
      case 'B':
        add("P");
        return skip_double(i);
      case 'C':
        return code_c(i);
      case 'D':
        return code_d(i);
      case 'F':
        add("F");
        return skip_double(i);
      case 'G':
        return code_g(i);
      case 'H':
        // Sounded only at the start or between vowels, and before a vowel.
        if ((i == 0 || is_vowel(i - 1)) && is_vowel(i + 1)) {
          add("H");
          return i + 2;
        }
        return i + 1;
      case 'J':
        return code_j(i);
      case 'K':
        add("K");
        return skip_double(i);
      case 'L':
        return code_l(i);
      case 'M':
        add("M");
        // "dumb", "thumb": the B is silent.
        if ((is_at(i - 1, {"UMB"}) && (i + 1 == last_ || is_at(i + 2, {"ER"}))) ||
            at(i + 1) == 'M') {
          return i + 2;
        }
        return i + 1;
      case 'N':
        add("N");
        return skip_double(i);
      case 'P':
        if (at(i + 1) == 'H') {
          add("F");
          return i + 2;
        }
        add("P");
        return is_at(i + 1, {"P", "B"}) ? i + 2 : i + 1;  // "campbell", "raspberry"
      case 'Q':
        add("K");
        return skip_double(i);
      case 'R':
        // French final -IER ("Rogier") is silent in one reading, but not "Hochmeier".
        if (i == last_ && !slavo_germanic_ && is_at(i - 2, {"IE"}) && !is_at(i - 4, {"ME", "MA"})) {
          add("", "R");
        } else {
          add("R");
        }
        return skip_double(i);
      case 'S':
        return code_s(i);
      case 'T':
        return code_t(i);
      case 'V':
        add("F");
        return skip_double(i);
      case 'W':
        return code_w(i);
      case 'X':
        // French final -AUX, -EAUX, -OUX ("Breaux") is silent.
        if (!(i == last_ && (is_at(i - 3, {"IAU", "EAU"}) || is_at(i - 2, {"AU", "OU"})))) {
          add("KS");
        }
        return is_at(i + 1, {"C", "X"}) ? i + 2 : i + 1;
      case 'Z':
        return code_z(i);
      default:  // the blank between words
        return i + 1;
    }
  }

  std::ptrdiff_t code_c(std::ptrdiff_t i) {
    // Germanic -ACH- ("Bacher", "Macher", "Wachtler"), but not -ACHI-, -ACHE-.
    if (i > 1 && !is_vowel(i - 2) && is_at(i - 1, {"ACH"}) && at(i + 2) != 'I' &&
        (at(i + 2) != 'E' || is_at(i - 2, {"BACHER", "MACHER"}))) {
      add("K");
      return i + 2;
    }
    if (i == 0 && is_at(i, {"CAESAR"})) {
      add("S");
      return i + 2;
    }
    if (is_at(i, {"CHIA"})) {  // Italian "Chianti"
      add("K");
      return i + 2;
    }
    if (is_at(i, {"CH"})) return code_ch(i);
    if (is_at(i, {"CZ"}) && !is_at(i - 2, {"WICZ"})) {  // "Czerny"
      add("S", "X");
      return i + 2;
    }
    if (is_at(i + 1, {"CIA"})) {  // "Focaccia"
      add("X");
      return i + 3;
    }
    // A double C, but not the C of "McClellan".
    if (is_at(i, {"CC"}) && !(i == 1 && at(0) == 'M')) {
      if (is_at(i + 2, {"I", "E", "H"}) && !is_at(i + 2, {"HU"})) {
        // "Accident", "accede", "succeed" sound KS; "Bacci", "Bertucci" sound X.
        if ((i == 1 && at(i - 1) == 'A') || is_at(i - 1, {"UCCEE", "UCCES"})) {
          add("KS");
        } else {
          add("X");
        }
        return i + 3;
      }
      add("K");  // "Bacchus", "Pierce's rule"
      return i + 2;
    }
    if (is_at(i, {"CK", "CG", "CQ"})) {
      add("K");
      return i + 2;
    }
    if (is_at(i, {"CI", "CE", "CY"})) {
      if (is_at(i, {"CIO", "CIE", "CIA"})) {  // Italian or English
        add("S", "X");
      } else {
        add("S");
      }
      return i + 2;
    }
    add("K");
    if (is_at(i + 1, {" C", " Q", " G"})) return i + 3;  // "Mac Caffrey", "Mac Gregor"
    if (is_at(i + 1, {"C", "K", "Q"}) && !is_at(i + 1, {"CE", "CI"})) return i + 2;
    return i + 1;
  }

  std::ptrdiff_t code_ch(std::ptrdiff_t i) {
    if (i > 0 && is_at(i, {"CHAE"})) {  // "Michael"
      add("K", "X");
      return i + 2;
    }
    // Greek roots at the start ("chemistry", "chorus"), but not "chore".
    if (i == 0 &&
        (is_at(i + 1, {"HARAC", "HARIS"}) || is_at(i + 1, {"HOR", "HYM", "HIA", "HEM"})) &&
        !is_at(0, {"CHORE"})) {
      add("K");
      return i + 2;
    }
    // Germanic or Greek CH sounding KH: "Van Ch...", "Sch...", "orchestra", "architect",
    // "orchid", CHT, CHS, and CH before a consonant after a vowel or at the start ("Wachtler",
    // "Wechsler", but not "Tichner").
    if (starts_germanic() || is_at(i - 2, {"ORCHES", "ARCHIT", "ORCHID"}) ||
        is_at(i + 2, {"T", "S"}) ||
        ((is_at(i - 1, {"A", "O", "U", "E"}) || i == 0) &&
         is_at(i + 2, {"L", "R", "N", "M", "B", "H", "F", "V", "W", " "}))) {
      add("K");
    } else if (i == 0) {
      add("X");
    } else if (is_at(0, {"MC"})) {  // "McHugh"
      add("K");
    } else {
      add("X", "K");
    }
    return i + 2;
  }

  std::ptrdiff_t code_d(std::ptrdiff_t i) {
    if (is_at(i, {"DG"})) {
      if (is_at(i + 2, {"I", "E", "Y"})) {  // "edge"
        add("J");
        return i + 3;
      }
      add("TK");  // "Edgar"
      return i + 2;
    }
    add("T");
    return is_at(i, {"DT", "DD"}) ? i + 2 : i + 1;
  }

  std::ptrdiff_t code_g(std::ptrdiff_t i) {
    if (at(i + 1) == 'H') return code_gh(i);
    if (at(i + 1) == 'N') {
      if (i == 1 && is_vowel(0) && !slavo_germanic_) {
        add("KN", "N");
      } else if (!is_at(i + 2, {"EY"}) && !slavo_germanic_) {  // not "Cagney"
        add("N", "KN");
      } else {
        add("KN");
      }
      return i + 2;
    }
    if (is_at(i + 1, {"LI"}) && !slavo_germanic_) {  // "Tagliaro"
      add("KL", "L");
      return i + 2;
    }
    // GES-, GEP-, GEL-, GIE- ... and GY- at the start.
    if (i == 0 && (at(i + 1) == 'Y' || is_at(i + 1, {"ES", "EP", "EB", "EL", "EY", "IB", "IL", "IN",
                                                     "IE", "EI", "ER"}))) {
      add("K", "J");
      return i + 2;
    }
    // -GER-, -GY-, but not "danger", "ranger", "manger", nor after E or I, nor -RGY-, -OGY-.
    if ((is_at(i + 1, {"ER"}) || at(i + 1) == 'Y') && !is_at(0, {"DANGER", "RANGER", "MANGER"}) &&
        !is_at(i - 1, {"E", "I"}) && !is_at(i - 1, {"RGY", "OGY"})) {
      add("K", "J");
      return i + 2;
    }
    // Soft before E, I, Y, and in Italian -AGGI-, -OGGI- ("Biaggi").
    if (is_at(i + 1, {"E", "I", "Y"}) || is_at(i - 1, {"AGGI", "OGGI"})) {
      if (starts_germanic() || is_at(i + 1, {"ET"})) {
        add("K");
      } else if (is_at(i + 1, {"IER "})) {  // always soft in a French ending
        add("J");
      } else {
        add("J", "K");
      }
      return i + 2;
    }
    add("K");
    return skip_double(i);
  }

  std::ptrdiff_t code_gh(std::ptrdiff_t i) {
    if (i > 0 && !is_vowel(i - 1)) {
      add("K");
      return i + 2;
    }
    if (i == 0) {  // "Ghislane", "Ghiradelli"
      add(at(i + 2) == 'I' ? "J" : "K");
      return i + 2;
    }
    // Parker's rule: silent after B, H, D two or three letters back ("Hugh", "bough") or B, H
    // four back ("Broughton").
    if ((i > 1 && is_at(i - 2, {"B", "H", "D"})) || (i > 2 && is_at(i - 3, {"B", "H", "D"})) ||
        (i > 3 && is_at(i - 4, {"B", "H"}))) {
      return i + 2;
    }
    // F in "laugh", "McLaughlin", "cough", "gough", "rough", "tough".
    if (i > 2 && at(i - 1) == 'U' && is_at(i - 3, {"C", "G", "L", "R", "T"})) {
      add("F");
    } else if (at(i - 1) != 'I') {
      add("K");
    }
    return i + 2;
  }

  std::ptrdiff_t code_j(std::ptrdiff_t i) {
    // Spanish "Jose", "San Jacinto".
    if (is_at(i, {"JOSE"}) || is_at(0, {"SAN "})) {
      if ((i == 0 && at(i + 4) == ' ') || is_at(0, {"SAN "})) {
        add("H");
      } else {
        add("J", "H");
      }
      return i + 1;
    }
    if (i == 0) {
      add("J", "A");  // "Jankelowicz" and "Yankelovich"
    } else if (is_vowel(i - 1) && !slavo_germanic_ && (at(i + 1) == 'A' || at(i + 1) == 'O')) {
      add("J", "H");  // Spanish "bajador"
    } else if (i == last_) {
      add("J", "");
    } else if (!is_at(i + 1, {"L", "T", "K", "S", "N", "M", "B", "Z"}) &&
               !is_at(i - 1, {"S", "K", "L"})) {
      add("J");
    }
    return skip_double(i);
  }

  std::ptrdiff_t code_l(std::ptrdiff_t i) {
    if (at(i + 1) != 'L') {
      add("L");
      return i + 1;
    }
    // Spanish LL sounding Y in one reading: "Cabrillo", "Gallegos".
    if ((i == last_ - 2 && is_at(i - 1, {"ILLO", "ILLA", "ALLE"})) ||
        ((is_at(last_ - 1, {"AS", "OS"}) || is_at(last_, {"A", "O"})) && is_at(i - 1, {"ALLE"}))) {
      add("L", "");
    } else {
      add("L");
    }
    return i + 2;
  }

  std::ptrdiff_t code_s(std::ptrdiff_t i) {
    if (is_at(i - 1, {"ISL", "YSL"})) return i + 1;  // "island", "isle", "Carlisle"
    if (i == 0 && is_at(i, {"SUGAR"})) {
      add("X", "S");
      return i + 1;
    }
    if (is_at(i, {"SH"})) {
      add(is_at(i + 1, {"HEIM", "HOEK", "HOLM", "HOLZ"}) ? "S" : "X");  // Germanic SH sounds S
      return i + 2;
    }
    if (is_at(i, {"SIO", "SIA"}) || is_at(i, {"SIAN"})) {  // Italian and Armenian
      if (slavo_germanic_) {
        add("S");
      } else {
        add("S", "X");
      }
      return i + 3;
    }
    // "Smith" matching "Schmidt", "Snider" matching "Schneider"; Slavic SZ.
    if ((i == 0 && is_at(i + 1, {"M", "N", "L", "W"})) || is_at(i + 1, {"Z"})) {
      add("S", "X");
      return is_at(i + 1, {"Z"}) ? i + 2 : i + 1;
    }
    if (is_at(i, {"SC"})) {
      if (at(i + 2) == 'H') {
        // Schlesinger's rule; Dutch SCH before OO, ER, EN, UY, ED, EM ("school", "schooner").
        if (is_at(i + 3, {"OO", "ER", "EN", "UY", "ED", "EM"})) {
          if (is_at(i + 3, {"ER", "EN"})) {  // "Schermerhorn", "Schenker"
            add("X", "SK");
          } else {
            add("SK");
          }
        } else if (i == 0 && !is_vowel(3) && at(3) != 'W') {
          add("X", "S");
        } else {
          add("X");
        }
        return i + 3;
      }
      add(is_at(i + 2, {"I", "E", "Y"}) ? "S" : "SK");
      return i + 3;
    }
    // French final -AIS, -OIS ("Resnais", "Artois") is silent in one reading.
    if (i == last_ && is_at(i - 2, {"AI", "OI"})) {
      add("", "S");
    } else {
      add("S");
    }
    return is_at(i + 1, {"S", "Z"}) ? i + 2 : i + 1;
  }

  std::ptrdiff_t code_t(std::ptrdiff_t i) {
    if (is_at(i, {"TION"}) || is_at(i, {"TIA", "TCH"})) {
      add("X");
      return i + 3;
    }
    if (is_at(i, {"TH"}) || is_at(i, {"TTH"})) {
      // "Thomas", "Thames" and Germanic names sound T.
      if (is_at(i + 2, {"OM", "AM"}) || starts_germanic()) {
        add("T");
      } else {
        add("0", "T");
      }
      return i + 2;
    }
    add("T");
    return is_at(i + 1, {"T", "D"}) ? i + 2 : i + 1;
  }

  std::ptrdiff_t code_w(std::ptrdiff_t i) {
    if (is_at(i, {"WR"})) {
      add("R");
      return i + 2;
    }
    if (i == 0 && (is_vowel(i + 1) || is_at(i, {"WH"}))) {
      // "Wasserman" also matches "Vasserman"; "Womo" matches "Uomo".
      if (is_vowel(i + 1)) {
        add("A", "F");
      } else {
        add("A");
      }
    }
    // "Arnow" matching "Arnoff"; Polish -EWSKI; Germanic "Sch...".
    if ((i == last_ && is_vowel(i - 1)) || is_at(i - 1, {"EWSKI", "EWSKY", "OWSKI", "OWSKY"}) ||
        is_at(0, {"SCH"})) {
      add("", "F");
      return i + 1;
    }
    if (is_at(i, {"WICZ", "WITZ"})) {  // Polish "Filipowicz"
      add("TS", "FX");
      return i + 4;
    }
    return i + 1;
  }

  std::ptrdiff_t code_z(std::ptrdiff_t i) {
    if (at(i + 1) == 'H') {  // Chinese pinyin "Zhao"
      add("J");
      return i + 2;
    }
    if (is_at(i + 1, {"ZO", "ZI", "ZA"}) || (slavo_germanic_ && i > 0 && at(i - 1) != 'T')) {
      add("S", "TS");
    } else {
      add("S");
    }
    return skip_double(i);
  }

  std::string word_;
  std::ptrdiff_t last_;
  std::size_t max_length_;
  bool slavo_germanic_;  // W, K, CZ or WITZ: Slavic or Germanic spelling
  std::string primary_;
  std::string alternate_;
};

}  // namespace

std::string soundex(std::string_view name) {
  const std::string letters = letters_of(name, false);
  if (letters.empty()) return "";
  std::string code(1, letters[0]);
  char previous = soundex_digit(letters[0]);  // a second letter with the first's digit is skipped
  for (std::size_t i = 1; i < letters.size() && code.size() < 4; ++i) {
    const char digit = soundex_digit(letters[i]);
    if (digit == 'h') continue;  // National Archives rule: H and W do not separate equal digits
    if (digit != '0' && digit != previous) code += digit;
    previous = digit;
  }
  code.resize(4, '0');
  return code;
}

std::string nysiis(std::string_view name) {
  std::string s = letters_of(name, false);
  if (s.empty()) return "";
  // Rule 1: the start of the name.
  if (starts_with(s, "MAC")) {
    s.replace(0, 3, "MCC");
  } else if (starts_with(s, "KN")) {
    s.replace(0, 2, "NN");
  } else if (starts_with(s, "K")) {
    s[0] = 'C';
  } else if (starts_with(s, "PH") || starts_with(s, "PF")) {
    s.replace(0, 2, "FF");
  } else if (starts_with(s, "SCH")) {
    s.replace(0, 3, "SSS");
  }
  // Rule 2: the end of the name.
  if (ends_with(s, "EE") || ends_with(s, "IE")) {
    s.replace(s.size() - 2, 2, "Y");
  } else if (ends_with(s, "DT") || ends_with(s, "RT") || ends_with(s, "RD") || ends_with(s, "NT") ||
             ends_with(s, "ND")) {
    s.replace(s.size() - 2, 2, "D");
  }
  // Rules 3 to 6: the first letter as it is, then each letter rewritten in place (so later
  // rules see the rewritten letters before them) and added unless it repeats the key's last.
  std::string key(1, s[0]);
  for (std::size_t i = 1; i < s.size(); ++i) {
    const char next = i + 1 < s.size() ? s[i + 1] : '\0';
    char& c = s[i];
    if (is_nysiis_vowel(c)) {
      if (c == 'E' && next == 'V') s[i + 1] = 'F';
      c = 'A';
    } else if (c == 'Q') {
      c = 'G';
    } else if (c == 'Z') {
      c = 'S';
    } else if (c == 'M') {
      c = 'N';
    } else if (c == 'K') {
      c = next == 'N' ? 'N' : 'C';
    } else if (c == 'S' && next == 'C' && i + 2 < s.size() && s[i + 2] == 'H') {
      s[i + 1] = 'S';
      s[i + 2] = 'S';
    } else if (c == 'P' && next == 'H') {
      c = 'F';
      s[i + 1] = 'F';
    } else if (c == 'H' && (!is_nysiis_vowel(s[i - 1]) || !is_nysiis_vowel(next))) {
      c = s[i - 1];
    } else if (c == 'W' && is_nysiis_vowel(s[i - 1])) {
      c = s[i - 1];
    }
    if (c != key.back()) key += c;
  }
  // Rules 7 to 9, in order; the first letter always stays.
  if (key.size() > 1 && key.back() == 'S') key.pop_back();
  if (key.size() > 2 && ends_with(key, "AY")) key.erase(key.size() - 2, 1);
  if (key.size() > 1 && key.back() == 'A') key.pop_back();
  return key;
}

PhoneticPair double_metaphone(std::string_view name, int max_length) {
  std::string word = letters_of(name, true);
  if (word.empty() || max_length <= 0) return {};
  return DoubleMetaphoneCoder(std::move(word), static_cast<std::size_t>(max_length)).run();
}

}  // namespace civicbus::match
