#include "civicbus/match/address.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "match/address_rules.hpp"

namespace civicbus::match {

using detail::AddressRules;
using detail::Lang;
using detail::RuleEntry;
using detail::Spelling;
using detail::TypeSpellings;

namespace {

// Bounds that keep normalize() on the stack: a real address line is well under both.
constexpr std::size_t kMaxInputBytes = 512;
constexpr std::size_t kMaxTokens = 64;
constexpr std::size_t kMaxKeyBytes = 96;

struct Token {
  std::string_view text;  // upper case, periods dropped: what the output prints
  std::string_view key;   // folded for lookups (see fold_key); empty if none
  std::string_view raw;   // as written, quoted in corrections
  bool comma_after = false;
};

// Everything one call needs, on the stack: no allocation until the result's strings.
struct Scratch {
  char upper[kMaxInputBytes * 2];
  char keys[kMaxInputBytes * 2];
  Token tokens[kMaxTokens];
  std::size_t count = 0;
};

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_upper(char c) {
  return c >= 'A' && c <= 'Z';
}
bool is_alnum(char c) {
  return is_digit(c) || is_upper(c);
}

bool is_ascii_alnum_byte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_digit);
}

// A highway or concession number: "7", "401", "11A".
bool is_route_number(std::string_view s) {
  std::size_t d = 0;
  while (d < s.size() && is_digit(s[d])) ++d;
  return d > 0 && d <= 4 && (d == s.size() || (d + 1 == s.size() && is_upper(s[d])));
}

// Splits `text` into tokens. Commas, semicolons and line breaks end a token and are remembered
// (they delimit the street line from the municipality); '#' is a token of its own; periods
// vanish ("P.O." -> PO) unless they glue two words ("ST.CLAIR" -> ST CLAIR); ½ ¼ ¾ become
// fractions; typographic apostrophes and dashes become ASCII.
Status tokenize(std::string_view text, Scratch& s) {
  if (text.size() > kMaxInputBytes) {
    return invalid_argument(fmt::format("address is {} bytes long; at most {} are accepted",
                                        text.size(), kMaxInputBytes));
  }
  s.count = 0;
  std::size_t up = 0;
  std::size_t tok_up = 0;
  std::size_t tok_raw = 0;
  bool in_token = false;
  int run = 0;  // letters and digits since the last period or separator
  Status overflow;

  auto finish = [&](std::size_t raw_end) {
    if (!in_token) return;
    in_token = false;
    std::string_view t(s.upper + tok_up, up - tok_up);
    if (t.empty() || t == "-") return;  // "SUITE 200 - 123 MAIN ST"
    if (s.count == kMaxTokens) {
      overflow = invalid_argument(
          fmt::format("address has more than {} words; is it one address?", kMaxTokens));
      return;
    }
    detail::upper_utf8(t, s.upper + tok_up);
    s.tokens[s.count++] = Token{t, {}, text.substr(tok_raw, raw_end - tok_raw), false};
  };
  auto begin = [&](std::size_t raw_begin) {
    if (in_token) return;
    in_token = true;
    tok_up = up;
    tok_raw = raw_begin;
    run = 0;
  };
  auto whole_token = [&](std::string_view value, std::size_t raw_begin, std::size_t raw_end) {
    finish(raw_begin);
    begin(raw_begin);
    std::memcpy(s.upper + up, value.data(), value.size());
    up += value.size();
    finish(raw_end);
  };

  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const unsigned char next = i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0;
    const unsigned char next2 = i + 2 < text.size() ? static_cast<unsigned char>(text[i + 2]) : 0;
    if (c == ' ' || c == '\t' || c == '(' || c == ')' || c == '"') {
      finish(i);
    } else if (c == ',' || c == ';' || c == '\n' || c == '\r') {
      finish(i);
      if (s.count > 0) s.tokens[s.count - 1].comma_after = true;
    } else if (c == '#') {
      whole_token("#", i, i + 1);
    } else if (c == '.') {
      const bool glues = in_token && run > 1 && next < 0x80 && is_ascii_alnum_byte(next);
      if (glues) finish(i);
      run = 0;
    } else if (c == 0xC2 && next == 0xA0) {  // no-break space
      finish(i);
      ++i;
    } else if (c == 0xC2 && (next == 0xBC || next == 0xBD || next == 0xBE)) {
      whole_token(next == 0xBC ? "1/4" : next == 0xBD ? "1/2" : "3/4", i, i + 2);
      ++i;
    } else if (c == 0xE2 && next == 0x80 && (next2 == 0x98 || next2 == 0x99)) {
      begin(i);
      s.upper[up++] = '\'';
      i += 2;
    } else if (c == 0xE2 && next == 0x80 && (next2 == 0x93 || next2 == 0x94)) {
      begin(i);
      s.upper[up++] = '-';
      i += 2;
    } else {
      begin(i);
      s.upper[up++] = static_cast<char>(c);
      run = (c < 0x80 && is_ascii_alnum_byte(c)) ? run + 1 : (c >= 0x80 ? run : 0);
    }
    if (!overflow.ok()) return overflow;
  }
  finish(text.size());
  if (!overflow.ok()) return overflow;

  std::size_t k = 0;
  for (std::size_t t = 0; t < s.count; ++t) {
    Token& tok = s.tokens[t];
    std::size_t n =
        detail::fold_key(tok.text, s.keys + k, std::min(kMaxKeyBytes, sizeof s.keys - k));
    tok.key = std::string_view(s.keys + k, n);
    k += n;
  }
  return Status();
}

std::string join_text(const Scratch& s, std::size_t b, std::size_t e) {
  std::string out;
  for (std::size_t i = b; i < e; ++i) {
    if (!out.empty()) out += ' ';
    out += s.tokens[i].text;
  }
  return out;
}

std::string_view raw_span(const Scratch& s, std::size_t b, std::size_t e) {
  const char* first = s.tokens[b].raw.data();
  const char* last = s.tokens[e - 1].raw.data() + s.tokens[e - 1].raw.size();
  return std::string_view(first, static_cast<std::size_t>(last - first));
}

// An ordinal street name ("23RD", "1RE", "2E"): its number, and its suffix as Canada Post
// writes it for that number, in the language the suffix shows.
struct Ordinal {
  bool is_ordinal = false;
  Lang lang = Lang::kBoth;
  std::string_view digits;
  std::string_view suffix_key;  // folded suffix as written
};

Ordinal ordinal_of(std::string_view key) {
  Ordinal o;
  std::size_t d = 0;
  while (d < key.size() && is_digit(key[d])) ++d;
  if (d == 0 || d == key.size() || d > 4) return o;
  std::string_view suffix = key.substr(d);
  static constexpr std::string_view kEnglish[] = {"ST", "ND", "RD", "TH"};
  static constexpr std::string_view kFrench[] = {"E", "ER", "RE", "ERE", "EME", "IEME", "IERE"};
  for (auto e : kEnglish) {
    if (suffix == e) o = Ordinal{true, Lang::kEnglish, key.substr(0, d), suffix};
  }
  for (auto f : kFrench) {
    if (suffix == f) o = Ordinal{true, Lang::kFrench, key.substr(0, d), suffix};
  }
  return o;
}

std::string canonical_ordinal(const Ordinal& o) {
  std::string out(o.digits);
  // The last two digits, without std::stoi: ordinal_of() guarantees 1-4 digits.
  int last_two = 0;
  for (char c : o.digits.substr(o.digits.size() > 2 ? o.digits.size() - 2 : 0)) {
    last_two = last_two * 10 + (c - '0');
  }
  if (o.lang == Lang::kFrench) {
    // Premier/première: 1ER (masculine) as written, else 1RE; every other number takes E.
    if (o.digits == "1") {
      out += o.suffix_key == "ER" ? "ER" : "RE";
    } else {
      out += "E";
    }
    return out;
  }
  const int last = last_two % 10;
  if (last_two >= 11 && last_two <= 13) {
    out += "TH";
  } else {
    out += last == 1 ? "ST" : last == 2 ? "ND" : last == 3 ? "RD" : "TH";
  }
  return out;
}

// A suffix written apart from its number ("23 rd"); ST is left out: "23 ST" is a street type.
bool is_detached_ordinal_suffix(std::string_view key) {
  return key == "ND" || key == "RD" || key == "TH" || key == "ER" || key == "RE" || key == "EME" ||
         key == "IEME" || key == "ERE";
}

// "104-2701", "1A-250", "A-12", "5-123B": a unit, a hyphen and a civic number (with an optional
// letter suffix), as Canada Post writes them. A unit is a number with letters (PH1, 1A) or one
// or two letters alone, like the unit numbers after a designator.
struct UnitCivic {
  bool ok = false;
  std::size_t hyphen = 0;        // index of the hyphen
  std::size_t civic_digits = 0;  // digits of the civic number after it
};

UnitCivic unit_civic_of(std::string_view t) {
  UnitCivic uc;
  const std::size_t hy = t.find('-');
  if (hy == std::string_view::npos || hy == 0 || hy + 1 >= t.size()) return uc;
  std::string_view left = t.substr(0, hy);
  std::string_view right = t.substr(hy + 1);
  std::size_t rd = 0;
  while (rd < right.size() && is_digit(right[rd])) ++rd;
  const bool left_alnum = left.size() <= 8 && std::all_of(left.begin(), left.end(), is_alnum);
  const bool left_unit =
      left_alnum && (std::any_of(left.begin(), left.end(), is_digit) || left.size() <= 2);
  if (rd > 0 && rd + 1 >= right.size() && left_unit &&
      (rd == right.size() || is_upper(right[rd]))) {
    uc = UnitCivic{true, hy, rd};
  }
  return uc;
}

struct LangScore {
  int english = 0;
  int french = 0;
  void add(Lang lang, int weight = 1) {
    if (lang == Lang::kEnglish) english += weight;
    if (lang == Lang::kFrench) french += weight;
  }
};

class Parser {
 public:
  Parser(const AddressRules& rules, const AddressNormalizerOptions& options, const Scratch& s,
         Address& out)
      : rules_(rules), options_(options), s_(s), out_(out) {}

  // Parses tokens [b, e) as a street line. `delimited`: the range is the street line and
  // nothing else; otherwise the municipality may follow and the index where the street line
  // stopped is returned.
  Result<std::size_t> parse_street(std::size_t b, std::size_t e, bool delimited) {
    CIVICBUS_ASSIGN_OR_RETURN(std::size_t stop, parse_street_body(b, e, delimited));
    if (has_unit_ && !unit_hyphen_ && !unit_spaced_ && !out_.civic_number.empty()) {
      if (options_.record_corrections)
        out_.corrections.push_back(fmt::format("moved unit '{}' before the civic number as '{}-{}'",
                                               raw_span(s_, unit_tokens_[0], unit_tokens_[1] + 1),
                                               out_.unit, out_.civic_number));
    }
    return stop;
  }

  LangScore score;

 private:
  Result<std::size_t> parse_street_body(std::size_t b, std::size_t e, bool delimited);
  const Token& tok(std::size_t i) const { return s_.tokens[i]; }

  const Spelling* unit_at(std::size_t i) const { return rules_.unit_keys.find(tok(i).key); }
  const TypeSpellings* type_at(std::size_t i) const {
    return rules_.street_type_keys.find(tok(i).key);
  }
  bool is_particle(std::size_t i) const { return rules_.particle_keys.find(tok(i).key) != nullptr; }
  // A word that never ends a street name: a particle, or SAINT/STE before the saint's name.
  bool is_joiner(std::size_t i) const {
    return is_particle(i) || rules_.joiner_keys.find(tok(i).key) != nullptr;
  }
  // A multi-word lookup of tokens [i, i+w) for the largest w <= max_words that fits before
  // `limit`. Sets `words`.
  const Spelling* multi_at(const detail::KeyTable<Spelling>& table, int max_words, std::size_t i,
                           std::size_t limit, int& words) const;

  bool is_unit_number(std::size_t i) const {
    std::string_view t = tok(i).text;
    if (t.empty() || t.size() > 8) return false;
    bool digit = false;
    for (char c : t) {
      if (!is_alnum(c) && c != '-') return false;
      digit |= is_digit(c);
    }
    return digit || t.size() <= 2;
  }
  // A unit designator (or '#') at i followed by a unit number, with a '#' between them allowed
  // ("UNIT #5"): the number of words it spans, 0 when there is none.
  std::size_t unit_span_at(std::size_t i, std::size_t limit) const {
    if (i + 1 >= limit) return 0;
    const bool hash = tok(i).text == "#";
    if (!hash && unit_at(i) == nullptr) return 0;
    if (is_unit_number(i + 1)) return 2;
    if (!hash && tok(i + 1).text == "#" && i + 2 < limit && is_unit_number(i + 2)) return 3;
    return 0;
  }
  bool unit_pair_at(std::size_t i, std::size_t limit) const { return unit_span_at(i, limit) != 0; }
  // A delivery designator of `words` words at i, then its number ("RR 6", "RR #6"): the number
  // of words it spans with the number, 0 when there is none.
  std::size_t delivery_span_at(std::size_t i, std::size_t limit, int& words) const {
    const Spelling* d = multi_at(rules_.delivery_keys, rules_.max_delivery_words, i, limit, words);
    if (d == nullptr) return 0;
    std::size_t n = i + words;
    if (n + 1 < limit && tok(n).text == "#") ++n;
    return n < limit && is_unit_number(n) ? n + 1 - i : 0;
  }
  bool delivery_at(std::size_t i, std::size_t limit, int& words) const {
    return delivery_span_at(i, limit, words) != 0;
  }
  // The error for a second unit number in one street line.
  Status two_units(std::string_view first, std::string_view second) const {
    return invalid_argument(
        fmt::format("street line has two unit numbers ('{}' and '{}')", first, second));
  }

  Status set_unit(std::size_t designator, std::size_t number);
  // Sets the delivery that starts at i; returns the index after its number.
  std::size_t set_delivery(std::size_t i, int words, std::size_t limit, bool rest_too);
  Status parse_civic(std::size_t& i, std::size_t e);
  void set_direction(std::size_t i, int words, bool moved);
  // `numbered`: an English type before a route number ("HWY 7"), kept before it.
  void set_type(std::size_t i, bool before, bool ordinal_name, bool numbered = false);
  void set_name(std::size_t b, std::size_t e);
  // An English street type at k written as its abbreviation (RD, PTWAY), not a saint's ST.
  bool abbreviated_type_at(std::size_t k) const {
    const TypeSpellings* t = type_at(k);
    return t != nullptr && t->english.entry >= 0 && !t->english.is_long && !is_joiner(k);
  }
  // The street type spelled at k may follow the name [name_b, k).
  bool after_type_fits(std::size_t k, std::size_t name_b) const;
  // Where a street name without a delimiter ends: at `name_e`, or at a direction a few words on
  // ("RUE NOTRE DAME O MONTRÉAL": the name is NOTRE DAME).
  std::size_t name_end_at_direction(std::size_t name_e, std::size_t e) const;
  bool single_french_ordinal(std::size_t b, std::size_t e) const;
  // Direction, unit and delivery after the street in free text; returns where they stop.
  Result<std::size_t> parse_trailing(std::size_t p, std::size_t e);

  const AddressRules& rules_;
  const AddressNormalizerOptions& options_;
  const Scratch& s_;
  Address& out_;
  std::size_t unit_tokens_[2] = {0, 0};  // designator (or SIZE_MAX), number
  bool has_unit_ = false;
  bool unit_hyphen_ = false;
  bool unit_spaced_ = false;
};

const Spelling* Parser::multi_at(const detail::KeyTable<Spelling>& table, int max_words,
                                 std::size_t i, std::size_t limit, int& words) const {
  char buf[kMaxKeyBytes];
  for (int w = std::min<int>(max_words, static_cast<int>(limit - i)); w >= 1; --w) {
    std::size_t n = 0;
    bool fits = true;
    for (int k = 0; k < w && fits; ++k) {
      std::string_view key = tok(i + k).key;
      if (key.empty() || n + key.size() + 1 > sizeof buf) {
        fits = false;
        break;
      }
      if (k > 0) buf[n++] = ' ';
      std::memcpy(buf + n, key.data(), key.size());
      n += key.size();
    }
    if (!fits) continue;
    if (const Spelling* sp = table.find(std::string_view(buf, n))) {
      words = w;
      return sp;
    }
  }
  return nullptr;
}

Status Parser::set_unit(std::size_t designator, std::size_t number) {
  if (has_unit_) return two_units(out_.unit, tok(number).text);
  has_unit_ = true;
  out_.unit = std::string(tok(number).text);
  if (tok(designator).text != "#") {
    const Spelling* sp = unit_at(designator);
    out_.unit_designator = rules_.unit_designators[sp->entry].code;
    score.add(rules_.unit_designators[sp->entry].lang == Lang::kBoth
                  ? sp->lang
                  : rules_.unit_designators[sp->entry].lang);
  }
  unit_tokens_[0] = designator;
  unit_tokens_[1] = number;
  return Status();
}

std::size_t Parser::set_delivery(std::size_t i, int words, std::size_t limit, bool rest_too) {
  int w = 0;
  const Spelling* d = multi_at(rules_.delivery_keys, rules_.max_delivery_words, i, limit, w);
  const RuleEntry& entry = rules_.delivery_designators[d->entry];
  score.add(entry.lang);
  std::size_t number = i + words;
  if (tok(number).text == "#") ++number;  // "RR #6": Canada Post never prints '#'
  out_.delivery = entry.code;
  out_.delivery += ' ';
  out_.delivery += tok(number).text;
  std::string_view written = raw_span(s_, i, number + 1);
  std::string canonical = entry.code + " " + std::string(tok(number).text);
  char buf[kMaxKeyBytes];
  std::size_t n = detail::fold_key(written, buf, sizeof buf);
  if (std::string_view(buf, n) != canonical) {
    if (options_.record_corrections)
      out_.corrections.push_back(fmt::format("wrote delivery '{}' as '{}'", written, canonical));
  }
  std::size_t k = number + 1;
  // "PO BOX 6001 STN A": the postal installation that serves the box or route, and its name.
  int iw = 0;
  if (const Spelling* sp = k + 1 < limit ? multi_at(rules_.installation_keys,
                                                    rules_.max_installation_words, k, limit, iw)
                                         : nullptr;
      sp != nullptr && k + iw < limit) {
    const std::string& code = rules_.installation_designators[sp->entry].code;
    out_.delivery += ' ';
    out_.delivery += code;
    out_.delivery += ' ';
    out_.delivery += tok(k + iw).text;
    if (options_.record_corrections && (iw != 1 || tok(k).text != code)) {
      out_.corrections.push_back(fmt::format("wrote postal installation '{}' as '{} {}'",
                                             raw_span(s_, k, k + iw + 1), code, tok(k + iw).text));
    }
    k += iw + 1;
  }
  for (; rest_too && k < limit; ++k) {
    out_.delivery += ' ';
    out_.delivery += tok(k).text;
  }
  return k;
}

Status Parser::parse_civic(std::size_t& i, std::size_t e) {
  std::string_view t = tok(i).text;
  std::size_t d = 0;
  while (d < t.size() && is_digit(t[d])) ++d;

  // "104-2701": unit, hyphen, civic number (Canada Post's own form); "123-A": a suffix.
  if (UnitCivic uc = unit_civic_of(t); uc.ok) {
    std::string_view left = t.substr(0, uc.hyphen);
    std::string_view right = t.substr(uc.hyphen + 1);
    if (has_unit_) return two_units(out_.unit, left);
    has_unit_ = true;
    unit_hyphen_ = true;
    out_.unit = std::string(left);
    out_.civic_number = std::string(right.substr(0, uc.civic_digits));
    out_.civic_suffix = std::string(right.substr(uc.civic_digits));
    ++i;
    return Status();
  }
  if (std::size_t hy = t.find('-'); hy != std::string_view::npos && hy > 0 && hy + 1 < t.size()) {
    std::string_view left = t.substr(0, hy);
    std::string_view right = t.substr(hy + 1);
    if (all_digits(left) && right.size() == 1 && is_upper(right[0])) {
      out_.civic_number = std::string(left);
      out_.civic_suffix = std::string(right);
      if (options_.record_corrections)
        out_.corrections.push_back(
            fmt::format("joined civic suffix '{}' to the civic number as '{}'", tok(i).raw,
                        out_.civic_number + out_.civic_suffix));
      ++i;
      return Status();
    }
  }
  if (d == 0) return Status();                // no civic number here
  if (d + 1 == t.size() && is_upper(t[d])) {  // "123A"
    out_.civic_number = std::string(t.substr(0, d));
    out_.civic_suffix = std::string(t.substr(d));
    ++i;
    return Status();
  }
  if (d != t.size()) return Status();  // "23RD" is a street name, not a civic number
  out_.civic_number = std::string(t);
  ++i;
  if (i >= e) return Status();
  std::string_view n = tok(i).text;
  // "123 1/2": a fraction suffix, printed after one space.
  if (n.size() == 3 && is_digit(n[0]) && n[1] == '/' && is_digit(n[2])) {
    out_.civic_suffix = std::string(n);
    ++i;
    return Status();
  }
  // "123 A MAIN ST": a letter suffix written apart (not a direction such as "123 E MAIN ST").
  if (n.size() == 1 && is_upper(n[0]) && i + 2 < e) {
    int w = 0;
    if (multi_at(rules_.direction_keys, 1, i, e, w) == nullptr && type_at(i) == nullptr) {
      out_.civic_suffix = std::string(n);
      if (options_.record_corrections)
        out_.corrections.push_back(
            fmt::format("joined civic suffix '{}' to the civic number as '{}'", tok(i).raw,
                        out_.civic_number + out_.civic_suffix));
      ++i;
      return Status();
    }
  }
  // "304 1234 MAIN ST": unit and civic number written with a space. "123 16 AVE" is not: 16
  // is the street name when a street type follows it; nor is "10 2 ND AVE", an ordinal.
  if (!has_unit_ && all_digits(n) && i + 1 < e && type_at(i + 1) == nullptr &&
      !is_detached_ordinal_suffix(tok(i + 1).key)) {
    int w = 0;
    if (multi_at(rules_.direction_keys, rules_.max_direction_words, i + 1, e, w) == nullptr) {
      has_unit_ = true;
      unit_spaced_ = true;
      out_.unit = std::move(out_.civic_number);
      out_.civic_number = std::string(n);
      if (options_.record_corrections)
        out_.corrections.push_back(fmt::format("joined unit '{}' to the civic number as '{}-{}'",
                                               out_.unit, out_.unit, out_.civic_number));
      ++i;
    }
  }
  return Status();
}

void Parser::set_direction(std::size_t i, int words, bool moved) {
  int w = 0;
  const Spelling* sp = multi_at(rules_.direction_keys, words, i, i + words, w);
  const RuleEntry& entry = rules_.directions[sp->entry];
  out_.street_direction = entry.code;
  score.add(entry.lang == Lang::kBoth ? sp->lang : entry.lang);
  std::string_view written = raw_span(s_, i, i + words);
  if (moved) {
    if (options_.record_corrections)
      out_.corrections.push_back(
          fmt::format("moved direction '{}' to the end of the street line", written));
  } else if (words != 1 || tok(i).text != entry.code) {
    if (options_.record_corrections)
      out_.corrections.push_back(fmt::format("{} direction '{}' {} '{}'",
                                             sp->is_long ? "abbreviated" : "replaced", written,
                                             sp->is_long ? "to" : "with", entry.code));
  }
}

bool Parser::single_french_ordinal(std::size_t b, std::size_t e) const {
  if (e == b + 1) return ordinal_of(tok(b).key).lang == Lang::kFrench;
  if (e == b + 2 && all_digits(tok(b).key) && is_detached_ordinal_suffix(tok(b + 1).key)) {
    std::string joined = std::string(tok(b).key) + std::string(tok(b + 1).key);
    return ordinal_of(joined).lang == Lang::kFrench;
  }
  return false;
}

std::size_t Parser::name_end_at_direction(std::size_t name_e, std::size_t e) const {
  for (std::size_t k = name_e; k < e && k < name_e + 3; ++k) {
    int w = 0;
    const Spelling* sp = multi_at(rules_.direction_keys, 1, k, k + 1, w);
    // An abbreviation, or a French word (no municipality starts with a bare EST or OUEST).
    if (sp != nullptr && ((!sp->is_long && tok(k).text == rules_.directions[sp->entry].code) ||
                          sp->lang == Lang::kFrench)) {
      return k;
    }
    if (is_digit(tok(k).text[0]) || unit_pair_at(k, e) || type_at(k) != nullptr) break;
  }
  return name_e;
}

bool Parser::after_type_fits(std::size_t k, std::size_t name_b) const {
  if (k <= name_b) return false;
  // "THE PARKWAY": the type word is the name itself (Canada Post's own example).
  if (k == name_b + 1 && tok(name_b).key == "THE") return false;
  const TypeSpellings* t = type_at(k);
  if (t == nullptr) return false;
  if (t->english.entry >= 0) return true;
  return t->french.entry >= 0 && single_french_ordinal(name_b, k);
}

void Parser::set_type(std::size_t i, bool before, bool ordinal_name, bool numbered) {
  const TypeSpellings* t = type_at(i);
  // By position: a type before the name is French; after it, English unless the name is a
  // French ordinal ("1RE AV") or only a French type is spelled so.
  const bool french = (before && !numbered) || ordinal_name || t->english.entry < 0;
  const Spelling& sp = french && t->french.entry >= 0 ? t->french : t->english;
  const RuleEntry& entry = rules_.street_types[sp.entry];
  out_.street_type = entry.code;
  out_.street_type_before_name = numbered || (entry.before_name && !ordinal_name);
  score.add(entry.lang, 2);
  if (tok(i).text != entry.code) {
    // Only accents differ ("MONTEE"): the code is written back with them.
    char code_key[kMaxKeyBytes];
    const std::size_t n = detail::fold_key(entry.code, code_key, sizeof code_key);
    if (std::string_view(code_key, n) == tok(i).key) {
      if (options_.record_corrections)
        out_.corrections.push_back(
            fmt::format("wrote street type '{}' as '{}'", tok(i).raw, entry.code));
    } else {
      if (options_.record_corrections)
        out_.corrections.push_back(fmt::format("{} street type '{}' {} '{}'",
                                               sp.is_long ? "abbreviated" : "replaced", tok(i).raw,
                                               sp.is_long ? "to" : "with", entry.code));
    }
  }
  if (before && ordinal_name) {
    if (options_.record_corrections)
      out_.corrections.push_back(fmt::format(
          "moved street type '{}' after the ordinal street name, as Canada Post writes it",
          entry.code));
  }
}

void Parser::set_name(std::size_t b, std::size_t e) {
  std::string& name = out_.street_name;
  for (std::size_t i = b; i < e; ++i) {
    if (!name.empty()) name += ' ';
    const Token& t = tok(i);
    if (is_particle(i) || t.key.rfind("L'", 0) == 0 || t.key.rfind("D'", 0) == 0) {
      score.add(Lang::kFrench);
    }
    // "23 rd" -> 23RD
    // (an ordinal has at most 4 digits: "23444 RD" is a number and a street type).
    if (i + 1 < e && all_digits(t.key) && is_detached_ordinal_suffix(tok(i + 1).key) &&
        ordinal_of(std::string(t.key) + std::string(tok(i + 1).key)).is_ordinal) {
      std::string joined = std::string(t.key) + std::string(tok(i + 1).key);
      Ordinal o = ordinal_of(joined);
      std::string canonical = canonical_ordinal(o);
      score.add(o.lang);
      if (options_.record_corrections)
        out_.corrections.push_back(
            fmt::format("joined ordinal '{}' as '{}'", raw_span(s_, i, i + 2), canonical));
      name += canonical;
      ++i;
      continue;
    }
    Ordinal o = ordinal_of(t.key);
    if (o.is_ordinal) {
      score.add(o.lang);
      std::string canonical = canonical_ordinal(o);
      if (canonical != t.text) {
        if (options_.record_corrections)
          out_.corrections.push_back(
              fmt::format("corrected ordinal '{}' to '{}'", t.raw, canonical));
      }
      name += canonical;
      continue;
    }
    name += t.text;
  }
}

Result<std::size_t> Parser::parse_trailing(std::size_t p, std::size_t e) {
  bool dir = false;
  bool unit = false;
  bool delivery = false;
  for (int round = 0; round < 3 && p < e; ++round) {
    int w = 0;
    if (!dir) {
      if (const Spelling* sp =
              multi_at(rules_.direction_keys, rules_.max_direction_words, p, e, w)) {
        // A spelled-out direction followed by more words is likely the municipality's
        // ("NORTH BAY", "WEST KELOWNA"); an abbreviation is always the street's.
        int dw = 0;
        const bool last = p + w == e;
        const bool before_unit = !last && (unit_pair_at(p + w, e) || delivery_at(p + w, e, dw));
        // French munis do not start with a bare EST or OUEST, so French words are taken too.
        if (!sp->is_long || sp->lang == Lang::kFrench || last || before_unit) {
          set_direction(p, w, false);
          p += w;
          dir = true;
          continue;
        }
      }
    }
    if (const std::size_t span = unit_span_at(p, e); !unit && span != 0) {
      CIVICBUS_RETURN_IF_ERROR(set_unit(p, p + span - 1));
      p += span;
      unit = true;
      continue;
    }
    if (!delivery && delivery_at(p, e, w)) {
      p = set_delivery(p, w, e, false);
      delivery = true;
      continue;
    }
    break;
  }
  // "... UNIT 3 UNIT 4": a second unit is an error, not the start of the municipality.
  if (const std::size_t span = p < e ? unit_span_at(p, e) : 0; span != 0 && has_unit_) {
    return two_units(out_.unit, tok(p + span - 1).text);
  }
  return p;
}

Result<std::size_t> Parser::parse_street_body(std::size_t b, std::size_t e, bool delimited) {
  std::size_t i = b;
  int w = 0;
  // A unit written first ("APT 5, 123 MAIN ST", "#5 123 MAIN ST", "UNIT #5 123 MAIN ST").
  if (const std::size_t span = unit_span_at(i, e);
      span != 0 && i + span < e && is_digit(tok(i + span).text[0])) {
    CIVICBUS_RETURN_IF_ERROR(set_unit(i, i + span - 1));
    i += span;
  } else if (i + 1 < e && (tok(i).text == "#" || unit_at(i) != nullptr) &&
             unit_civic_of(tok(i + 1).text).ok) {
    // "#5-123 MAIN ST": a designator before Canada Post's own unit-civic form is dropped.
    if (const Spelling* sp = unit_at(i)) {
      out_.unit_designator = rules_.unit_designators[sp->entry].code;
    }
    if (options_.record_corrections) {
      out_.corrections.push_back(
          fmt::format("removed unit designator '{}' before '{}'", tok(i).raw, tok(i + 1).raw));
    }
    ++i;
  }
  // A PO BOX / RR line with no civic number.
  if (i < e && !is_digit(tok(i).text[0]) && delivery_at(i, e, w)) {
    const std::size_t after = set_delivery(i, w, e, delimited);
    return delimited ? e : after;
  }
  if (i < e) CIVICBUS_RETURN_IF_ERROR(parse_civic(i, e));
  if (out_.civic_number.empty() && options_.require_civic_number) {
    return invalid_argument(fmt::format(
        "street line '{}' has no civic number; Canada Post expects it before the street name "
        "(or a PO BOX / RR line)",
        e > b ? raw_span(s_, b, e) : std::string_view()));
  }
  const std::size_t j = i;
  if (j >= e) {
    return invalid_argument(
        fmt::format("street line '{}' has a civic number but no street name", raw_span(s_, b, e)));
  }

  // Where the street name and type end: in a delimited line, after what trails it.
  std::size_t body_end = e;
  std::size_t trailing_from = e;
  if (delimited) {
    bool dir = false;
    bool unit = false;
    bool delivery = false;
    std::size_t unit_number = e;  // the stripped unit's number, for the two-units error
    // A unit at the end of [j, end) ("APT 5", "# 5", "UNIT # 5"): its length, or 0.
    auto unit_ending_at = [&](std::size_t end) -> std::size_t {
      for (std::size_t span = 3; span >= 2; --span) {
        if (end >= j + 1 + span && unit_span_at(end - span, end) == span) return span;
      }
      return 0;
    };
    for (int round = 0; round < 3; ++round) {
      if (const std::size_t span = unit_ending_at(body_end); !unit && span != 0) {
        unit_number = body_end - 1;
        body_end -= span;
        unit = true;
        continue;
      }
      bool found = false;
      for (int dw = rules_.max_delivery_words; dw >= 1 && !delivery; --dw) {
        // The number follows the designator, or a '#' does ("RR #6").
        const auto words = static_cast<std::size_t>(dw);
        for (const std::size_t span : {words + 2, words + 1}) {
          if (delivery || body_end < j + 1 + span) continue;
          int got = 0;
          if (delivery_span_at(body_end - span, body_end, got) == span && got == dw) {
            body_end -= span;
            delivery = found = true;
          }
        }
      }
      if (found) continue;
      for (int dw = rules_.max_direction_words; dw >= 1 && !dir; --dw) {
        if (body_end < j + 1 + dw) continue;
        int got = 0;
        const Spelling* sp = multi_at(rules_.direction_keys, dw, body_end - dw, body_end, got);
        if (sp == nullptr || got != dw) continue;
        const std::size_t rest = body_end - dw - j;
        // "123 RUE EST": EST is the name, not a direction, when a lone type would remain.
        if (rest == 1 && type_at(j) != nullptr) continue;
        // "RDPT DU NORD": after a particle the word is the name's.
        if (is_particle(body_end - dw - 1)) continue;
        body_end -= dw;
        dir = found = true;
      }
      if (!found) break;
    }
    if (const std::size_t span = unit_ending_at(body_end); unit && span != 0) {
      return two_units(tok(body_end - 1).text, tok(unit_number).text);
    }
    trailing_from = body_end;
  }

  // Street type: an English one after the name, or a French one before it. A token that is
  // only a French type ("RUE", "CH") is the type when it comes first; one that is both
  // ("AVENUE") is tried after the name first, so "123 AVENUE RD" is Avenue Road.
  const TypeSpellings* first = type_at(j);
  const bool first_french_only =
      first != nullptr && first->french.entry >= 0 && first->english.entry < 0;
  // "1234 HWY 7": an English type before a route number stays before it, and the number is the
  // name.
  const bool numbered = first != nullptr && first->english.entry >= 0 && first->french.entry < 0 &&
                        j + 1 < body_end && is_route_number(tok(j + 1).text) &&
                        (delimited ? j + 2 == body_end : (j + 2 >= e || type_at(j + 2) == nullptr));
  std::size_t after_k = e;  // index of an after-name type, e when none
  std::size_t name_b = j;
  bool leading_dir = false;
  if (!first_french_only && !numbered) {
    if (delimited) {
      const std::size_t k = body_end - 1;
      if (after_type_fits(k, j)) after_k = k;
    } else {
      for (std::size_t k = j + 1; k < e; ++k) {
        if (after_type_fits(k, j)) {
          after_k = k;
          break;
        }
      }
      // "MOUNT ROYAL HILL RD": a type word followed by an abbreviated type is part of the name,
      // since no municipality starts with RD or PTWAY (ST and STE are saints: ST CATHARINES).
      while (after_k != e && after_k + 1 < e && abbreviated_type_at(after_k + 1)) ++after_k;
    }
    // "123 N MAIN ST": an abbreviated direction first moves to the end.
    if (after_k != e && after_k >= j + 2) {
      int dw = 0;
      const Spelling* sp = multi_at(rules_.direction_keys, 1, j, j + 1, dw);
      if (sp != nullptr && !sp->is_long && tok(j).text == rules_.directions[sp->entry].code) {
        leading_dir = true;
        name_b = j + 1;
      }
    }
  }
  const bool before_fits =
      first != nullptr && first->french.entry >= 0 && j + 1 < body_end && after_k == e;

  std::size_t p = e;  // where the street line's own words end
  if (numbered) {
    set_name(j + 1, j + 2);
    set_type(j, true, false, true);
    p = j + 2;
  } else if (after_k != e) {
    const bool french_ordinal = single_french_ordinal(name_b, after_k);
    set_name(name_b, after_k);
    set_type(after_k, false, french_ordinal);
    if (leading_dir) set_direction(j, 1, true);
    p = after_k + 1;
  } else if (before_fits) {
    std::size_t name_e = body_end;
    if (!delimited) {
      // Without a delimiter the name is its particles and one word: "CH DU LAC",
      // "RUE DE LA MONTAGNE". Longer names need a comma or the field-wise form.
      name_e = j + 1;
      while (name_e + 1 < e && is_joiner(name_e)) ++name_e;
      name_e = name_end_at_direction(std::min(name_e + 1, e), e);
    }
    const bool ordinal_name = single_french_ordinal(j + 1, name_e);
    set_name(j + 1, name_e);
    set_type(j, true, ordinal_name);
    p = name_e;
  } else {
    std::size_t name_e = body_end;
    if (!delimited) {
      name_e = j;
      while (name_e + 1 < e && is_joiner(name_e)) ++name_e;
      name_e = name_end_at_direction(std::min(name_e + 1, e), e);
    }
    set_name(j, name_e);
    p = name_e;
  }

  if (delimited) {
    // What the delimited line has after its name and type (stripped above), parsed in order.
    CIVICBUS_ASSIGN_OR_RETURN(std::size_t q, parse_trailing(trailing_from, e));
    if (q != e) {
      return invalid_argument(fmt::format("street line '{}': could not read '{}' after the street",
                                          raw_span(s_, b, e), raw_span(s_, q, e)));
    }
    return e;
  }
  if (leading_dir) {
    // The direction was taken from the front; the free-text tail may still hold a unit.
    int dw = 0;
    std::size_t q = p;
    for (int round = 0; round < 2 && q < e; ++round) {
      if (const std::size_t span = unit_span_at(q, e); !has_unit_ && span != 0) {
        CIVICBUS_RETURN_IF_ERROR(set_unit(q, q + span - 1));
        q += span;
      } else if (out_.delivery.empty() && delivery_at(q, e, dw)) {
        q = set_delivery(q, dw, e, false);
      }
    }
    return q;
  }
  return parse_trailing(p, e);
}

// Reads a postal code from `chars` (6 significant characters), or returns false.
bool postal_shape(std::string_view t, char out[6]) {
  std::size_t n = 0;
  for (char c : t) {
    if (c == ' ' || c == '-') continue;
    if (n == 6) return false;
    out[n++] = c;
  }
  if (n != 6) return false;
  for (std::size_t k = 0; k < 6; ++k) {
    if (k % 2 == 0 ? !is_upper(out[k]) : !is_digit(out[k])) return false;
  }
  return true;
}

Status not_a_postal_code(std::string_view raw) {
  return invalid_argument(fmt::format(
      "postal code '{}' is not of the form A1A 1A1 (letter, digit, letter, space, digit, letter, "
      "digit)",
      raw));
}

// A line that ends like a postal code but is not one ("K1A 0B", "K1A0B1X") is refused rather
// than read as part of the municipality: no municipality name ends in a letter-digit-letter
// word followed by digits.
Status check_postal_tail(const Scratch& s, std::size_t n) {
  auto fsa = [](std::string_view t) {
    return t.size() >= 3 && is_upper(t[0]) && is_digit(t[1]) && is_upper(t[2]);
  };
  auto has_digit = [](std::string_view t) { return std::any_of(t.begin(), t.end(), is_digit); };
  const std::string_view last = s.tokens[n - 1].text;
  if (n > 1 && fsa(last) && last.size() >= 4 && last.size() <= 8 && has_digit(last.substr(3))) {
    return not_a_postal_code(s.tokens[n - 1].raw);
  }
  if (n > 2 && s.tokens[n - 2].text.size() == 3 && fsa(s.tokens[n - 2].text) && last.size() <= 4 &&
      has_digit(last) && std::all_of(last.begin(), last.end(), is_alnum)) {
    return not_a_postal_code(raw_span(s, n - 2, n));
  }
  return Status();
}

struct PostalFound {
  bool found = false;
  char code[6] = {};
  std::string_view raw;
};

// The province that owns a postal code's first letter, for messages: "Ontario" or
// "Northwest Territories or Nunavut".
std::string provinces_of_letter(const AddressRules& rules, char letter) {
  std::string out;
  for (const auto& p : rules.provinces) {
    if (p.letters.find(letter) == std::string::npos) continue;
    if (!out.empty()) out += " or ";
    out += p.display_name;
  }
  return out;
}

Status apply_postal(const AddressRules& rules, const AddressNormalizerOptions& options,
                    const PostalFound& postal, Address& out) {
  std::string code;
  code.reserve(7);
  code.append(postal.code, 3);
  code += ' ';
  code.append(postal.code + 3, 3);
  for (int k = 0; k < 6; k += 2) {
    const char c = postal.code[k];
    if (rules.unused_letter[c - 'A']) {
      return invalid_argument(
          fmt::format("postal code '{}' uses letter {}, which Canada Post never uses", code, c));
    }
  }
  const char first = postal.code[0];
  if (rules.unused_first_letter[first - 'A']) {
    return invalid_argument(fmt::format(
        "postal code '{}' starts with {}, which Canada Post never uses as a first letter", code,
        first));
  }
  const std::int8_t owner = rules.province_by_letter[first - 'A'];
  if (owner == -1) {
    return invalid_argument(fmt::format(
        "postal code '{}' starts with {}, which no province or territory uses", code, first));
  }
  if (!out.province.empty()) {
    bool matches = false;
    for (const auto& p : rules.provinces) {
      if (p.code == out.province) matches = p.letters.find(first) != std::string::npos;
    }
    if (!matches) {
      return invalid_argument(
          fmt::format("postal code '{}' starts with {}, which belongs to {}, not {}", code, first,
                      provinces_of_letter(rules, first), out.province));
    }
  } else if (owner >= 0 && options.infer_province_from_postal_code) {
    out.province = rules.provinces[owner].code;
    if (options.record_corrections)
      out.corrections.push_back(
          fmt::format("added province '{}' from postal code '{}'", out.province, code));
  }
  if (postal.raw != code) {
    if (options.record_corrections)
      out.corrections.push_back(
          fmt::format("postal code '{}' formatted as '{}'", postal.raw, code));
  }
  out.postal_code = std::move(code);
  return Status();
}

void set_province(const AddressRules& rules, const Spelling& sp, std::string_view written,
                  Address& out, LangScore& score, bool record_corrections) {
  out.province = rules.provinces[sp.entry].code;
  score.add(sp.lang);
  if (record_corrections && written != out.province) {
    out.corrections.push_back(fmt::format("wrote province '{}' as '{}'", written, out.province));
  }
}

void finish_language(const LangScore& score, Address& out) {
  if (score.french > score.english) {
    out.language = AddressLanguage::kFrench;
  } else if (score.english > score.french) {
    out.language = AddressLanguage::kEnglish;
  } else if (out.province == "QC") {
    out.language = AddressLanguage::kFrench;
  } else if (score.english > 0 || !out.province.empty()) {
    out.language = AddressLanguage::kEnglish;
  }
}

}  // namespace

std::string_view address_language_code(AddressLanguage language) {
  switch (language) {
    case AddressLanguage::kEnglish:
      return "en";
    case AddressLanguage::kFrench:
      return "fr";
    case AddressLanguage::kUnknown:
      break;
  }
  return "";
}

std::string Address::street_line() const {
  std::string out;
  out.reserve(48);
  auto word = [&out](std::string_view w) {
    if (w.empty()) return;
    if (!out.empty()) out += ' ';
    out += w;
  };
  if (!civic_number.empty()) {
    if (!unit.empty()) {
      out += unit;
      out += '-';
    }
    out += civic_number;
    if (!civic_suffix.empty()) {
      // A letter is attached (123A), a fraction follows a space (123 1/2).
      if (civic_suffix.find('/') != std::string::npos) out += ' ';
      out += civic_suffix;
    }
  } else if (!unit.empty()) {
    word(unit_designator.empty() ? std::string_view("UNIT") : std::string_view(unit_designator));
    word(unit);
  }
  if (street_type_before_name) {
    word(street_type);
    word(street_name);
  } else {
    word(street_name);
    word(street_type);
  }
  word(street_direction);
  word(delivery);
  return out;
}

std::string Address::last_line() const {
  std::string out = municipality;
  if (!province.empty()) {
    if (!out.empty()) out += ' ';
    out += province;
  }
  if (!postal_code.empty()) {
    if (!out.empty()) out += "  ";
    out += postal_code;
  }
  return out;
}

std::string Address::one_line() const {
  std::string street = street_line();
  std::string last = last_line();
  if (street.empty()) return last;
  if (last.empty()) return street;
  return street + " " + last;
}

Result<AddressNormalizer> AddressNormalizer::create(AddressNormalizerOptions options) {
  auto json = Json::parse(builtin_address_rules_json());
  if (!json.ok()) return json.status().with_context("built-in address rules");
  return from_rules(*json, options);
}

Result<AddressNormalizer> AddressNormalizer::from_rules(const Json& rules,
                                                        AddressNormalizerOptions options) {
  CIVICBUS_ASSIGN_OR_RETURN(AddressRules built, detail::build_address_rules(rules));
  return AddressNormalizer(std::make_shared<const AddressRules>(std::move(built)), options);
}

Result<Address> AddressNormalizer::normalize(std::string_view text) const {
  const AddressRules& rules = *rules_;
  Scratch s;
  CIVICBUS_RETURN_IF_ERROR(tokenize(text, s));
  if (s.count == 0) return invalid_argument("address is empty");

  Address out;
  Parser parser(rules, options_, s, out);
  std::size_t n = s.count;
  auto drop_country = [&] {
    if (n > 1 && s.tokens[n - 1].key == "CANADA") {
      if (options_.record_corrections) {
        out.corrections.push_back("removed 'Canada', which domestic addresses leave out");
      }
      --n;
    }
  };
  drop_country();

  PostalFound postal;
  if (n > 1 && postal_shape(s.tokens[n - 1].text, postal.code)) {
    postal.found = true;
    postal.raw = s.tokens[n - 1].raw;
    n -= 1;
  } else if (n > 2 && s.tokens[n - 1].text.size() == 3 && s.tokens[n - 2].text.size() == 3) {
    char joined[6];
    std::memcpy(joined, s.tokens[n - 2].text.data(), 3);
    std::memcpy(joined + 3, s.tokens[n - 1].text.data(), 3);
    if (postal_shape(std::string_view(joined, 6), postal.code)) {
      postal.found = true;
      postal.raw = raw_span(s, n - 2, n);
      n -= 2;
    }
  }
  if (postal.found) {
    drop_country();
  } else {
    CIVICBUS_RETURN_IF_ERROR(check_postal_tail(s, n));
  }

  // The province: the longest name or code that ends the remaining text, after at least a
  // street line's worth of words.
  for (int w = std::min<int>(rules.max_province_words, static_cast<int>(n) - 2); w >= 1; --w) {
    char buf[kMaxKeyBytes];
    std::size_t len = 0;
    bool fits = true;
    for (std::size_t k = n - w; k < n; ++k) {
      std::string_view key = s.tokens[k].key;
      if (key.empty() || len + key.size() + 1 > sizeof buf) {
        fits = false;
        break;
      }
      if (k > n - w) buf[len++] = ' ';
      std::memcpy(buf + len, key.data(), key.size());
      len += key.size();
    }
    if (!fits) continue;
    if (const Spelling* sp = rules.province_keys.find(std::string_view(buf, len))) {
      set_province(rules, *sp, raw_span(s, n - w, n), out, parser.score,
                   options_.record_corrections);
      n -= w;
      break;
    }
  }

  // The street line ends at the last comma, unless what follows it is itself a street line
  // ("APT 5, 123 MAIN ST OTTAWA").
  std::size_t street_end = n;
  bool delimited = false;
  for (std::size_t k = n - 1; k-- > 0;) {
    if (s.tokens[k].comma_after) {
      if (!is_digit(s.tokens[k + 1].text[0])) {
        street_end = k + 1;
        delimited = true;
      }
      break;
    }
  }
  CIVICBUS_ASSIGN_OR_RETURN(std::size_t stop, parser.parse_street(0, street_end, delimited));
  const std::size_t muni_b = delimited ? street_end : stop;
  out.municipality = join_text(s, muni_b, n);

  if (postal.found) CIVICBUS_RETURN_IF_ERROR(apply_postal(rules, options_, postal, out));
  finish_language(parser.score, out);
  return out;
}

Result<Address> AddressNormalizer::normalize(const AddressParts& parts) const {
  const AddressRules& rules = *rules_;
  Scratch s;
  Address out;
  Parser parser(rules, options_, s, out);

  CIVICBUS_RETURN_IF_ERROR(tokenize(parts.street_line, s));
  if (s.count == 0) {
    if (options_.require_civic_number) return invalid_argument("street line is empty");
  } else {
    CIVICBUS_ASSIGN_OR_RETURN(std::size_t stop, parser.parse_street(0, s.count, true));
    (void)stop;
  }

  CIVICBUS_RETURN_IF_ERROR(tokenize(parts.municipality, s));
  out.municipality = join_text(s, 0, s.count);

  CIVICBUS_RETURN_IF_ERROR(tokenize(parts.province, s));
  if (s.count > 0) {
    char buf[kMaxKeyBytes];
    std::size_t n = detail::fold_key(parts.province, buf, sizeof buf);
    const Spelling* sp = n > 0 ? rules.province_keys.find(std::string_view(buf, n)) : nullptr;
    if (sp == nullptr) {
      return invalid_argument(fmt::format(
          "province '{}' is not a Canadian province or territory; use its two-letter code "
          "(ON, QC, BC...) or its English or French name",
          parts.province));
    }
    std::string_view trimmed = parts.province;
    while (!trimmed.empty() && trimmed.front() == ' ') trimmed.remove_prefix(1);
    while (!trimmed.empty() && trimmed.back() == ' ') trimmed.remove_suffix(1);
    set_province(rules, *sp, trimmed, out, parser.score, options_.record_corrections);
  }

  CIVICBUS_RETURN_IF_ERROR(tokenize(parts.postal_code, s));
  if (s.count > 0) {
    PostalFound postal;
    char upper[kMaxInputBytes];
    std::size_t n = std::min(parts.postal_code.size(), sizeof upper);
    detail::upper_utf8(parts.postal_code.substr(0, n), upper);
    if (!postal_shape(std::string_view(upper, n), postal.code)) {
      return not_a_postal_code(parts.postal_code);
    }
    postal.found = true;
    postal.raw = parts.postal_code;
    while (!postal.raw.empty() && postal.raw.front() == ' ') postal.raw.remove_prefix(1);
    while (!postal.raw.empty() && postal.raw.back() == ' ') postal.raw.remove_suffix(1);
    CIVICBUS_RETURN_IF_ERROR(apply_postal(rules, options_, postal, out));
  }
  finish_language(parser.score, out);
  return out;
}

}  // namespace civicbus::match
