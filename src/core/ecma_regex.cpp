#include "core/ecma_regex.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/json_text.hpp"
#include "core/unicode_categories.hpp"

namespace civicbus::detail {
namespace {

constexpr char32_t kMaxCodePoint = 0x10FFFF;
constexpr char32_t kNoChar = 0xFFFFFFFF;  // "before the start" / "after the end"
// Bounds that keep compiling and matching cheap whatever the pattern: a{1000}{1000} would
// otherwise expand to a million instructions.
constexpr std::size_t kMaxInstructions = 20000;
constexpr int kMaxNesting = 200;
constexpr int kMaxRepeatBound = 100000;
// Lookaheads can make matching quadratic; past this many steps a search gives up (no match).
constexpr std::uint64_t kMaxLookaheadSteps = 50'000'000;

using Ranges = std::vector<std::pair<char32_t, char32_t>>;

void normalize(Ranges& ranges) {
  std::sort(ranges.begin(), ranges.end());
  Ranges merged;
  for (const auto& r : ranges) {
    if (!merged.empty() && r.first <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  ranges = std::move(merged);
}

Ranges complement(const Ranges& ranges) {
  Ranges out;
  char32_t next = 0;
  for (const auto& r : ranges) {
    if (r.first > next) out.emplace_back(next, r.first - 1);
    next = r.second + 1;
  }
  if (next <= kMaxCodePoint) out.emplace_back(next, kMaxCodePoint);
  return out;
}

struct CharClass {
  std::array<std::uint64_t, 2> ascii{};
  Ranges ranges;  // sorted and merged

  void finish() {
    normalize(ranges);
    for (const auto& [lo, hi] : ranges) {
      for (char32_t c = lo; c <= hi && c < 128; ++c) ascii[c >> 6] |= std::uint64_t{1} << (c & 63);
    }
  }
  bool contains(char32_t cp) const {
    if (cp < 128) return (ascii[cp >> 6] >> (cp & 63)) & 1;
    auto it = std::upper_bound(ranges.begin(), ranges.end(), cp,
                               [](char32_t v, const auto& r) { return v < r.first; });
    return it != ranges.begin() && cp <= std::prev(it)->second;
  }
};

bool is_word(char32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool is_line_terminator(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x2028 || c == 0x2029;
}

Ranges digit_ranges() {
  return {{'0', '9'}};
}
Ranges word_ranges() {
  return {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
}
Ranges space_ranges() {
  // ECMA-262 WhiteSpace and LineTerminator.
  return {{0x09, 0x0D},     {0x20, 0x20},     {0xA0, 0xA0},     {0x1680, 0x1680}, {0x2000, 0x200A},
          {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};
}

Ranges category_ranges(std::uint32_t category_mask) {
  Ranges out;
  for (std::size_t i = 0; i < kGeneralCategoryRunCount; ++i) {
    const std::uint32_t entry = kGeneralCategoryRuns[i];
    if (((category_mask >> (entry & 31)) & 1) == 0) continue;
    const char32_t lo = entry >> 5;
    const char32_t hi =
        i + 1 < kGeneralCategoryRunCount ? (kGeneralCategoryRuns[i + 1] >> 5) - 1 : kMaxCodePoint;
    out.emplace_back(lo, hi);
  }
  normalize(out);
  return out;
}

std::uint32_t mask_of(std::string_view prefix_or_name) {
  std::uint32_t mask = 0;
  for (std::size_t i = 0; i < std::size(kGeneralCategoryNames); ++i) {
    const std::string_view name = kGeneralCategoryNames[i];
    if (prefix_or_name.size() == 1 ? name[0] == prefix_or_name[0] : name == prefix_or_name) {
      mask |= std::uint32_t{1} << i;
    }
  }
  return mask;
}

// General_Category values by their long names and aliases (UCD PropertyValueAliases.txt).
std::uint32_t general_category_mask(std::string_view value) {
  static constexpr std::pair<std::string_view, std::string_view> kAliases[] = {
      {"Letter", "L"},
      {"Cased_Letter", "LC"},
      {"Uppercase_Letter", "Lu"},
      {"Lowercase_Letter", "Ll"},
      {"Titlecase_Letter", "Lt"},
      {"Modifier_Letter", "Lm"},
      {"Other_Letter", "Lo"},
      {"Mark", "M"},
      {"Combining_Mark", "M"},
      {"Nonspacing_Mark", "Mn"},
      {"Spacing_Mark", "Mc"},
      {"Enclosing_Mark", "Me"},
      {"Number", "N"},
      {"Decimal_Number", "Nd"},
      {"digit", "Nd"},
      {"Letter_Number", "Nl"},
      {"Other_Number", "No"},
      {"Punctuation", "P"},
      {"punct", "P"},
      {"Connector_Punctuation", "Pc"},
      {"Dash_Punctuation", "Pd"},
      {"Open_Punctuation", "Ps"},
      {"Close_Punctuation", "Pe"},
      {"Initial_Punctuation", "Pi"},
      {"Final_Punctuation", "Pf"},
      {"Other_Punctuation", "Po"},
      {"Symbol", "S"},
      {"Math_Symbol", "Sm"},
      {"Currency_Symbol", "Sc"},
      {"Modifier_Symbol", "Sk"},
      {"Other_Symbol", "So"},
      {"Separator", "Z"},
      {"Space_Separator", "Zs"},
      {"Line_Separator", "Zl"},
      {"Paragraph_Separator", "Zp"},
      {"Other", "C"},
      {"Control", "Cc"},
      {"cntrl", "Cc"},
      {"Format", "Cf"},
      {"Surrogate", "Cs"},
      {"Private_Use", "Co"},
      {"Unassigned", "Cn"}};
  for (const auto& [alias, code] : kAliases) {
    if (value == alias) {
      value = code;
      break;
    }
  }
  if (value == "LC") return mask_of("Lu") | mask_of("Ll") | mask_of("Lt");
  if (value.size() == 1 && std::string_view("LMNPSZC").find(value[0]) != std::string_view::npos) {
    return mask_of(value);
  }
  if (value.size() == 2) return mask_of(value);
  return 0;
}

// ---- Syntax tree ------------------------------------------------------------------------

struct Node {
  enum class Kind {
    kEmpty,
    kChar,
    kClass,
    kAny,
    kBegin,
    kEnd,
    kWordBoundary,
    kNotWordBoundary,
    kConcat,
    kAlternation,
    kRepeat,
    kLookahead
  };
  Kind kind = Kind::kEmpty;
  char32_t c = 0;
  std::uint32_t class_index = 0;
  int min = 0;
  int max = 0;  // -1: unbounded
  bool negate = false;
  std::vector<std::unique_ptr<Node>> children;
};

using NodePtr = std::unique_ptr<Node>;

NodePtr make(Node::Kind kind) {
  auto n = std::make_unique<Node>();
  n->kind = kind;
  return n;
}

enum class Op : std::uint8_t {
  kChar,
  kClass,
  kAny,
  kSplit,
  kJmp,
  kBegin,
  kEnd,
  kWordBoundary,
  kNotWordBoundary,
  kLook,
  kMatch
};

struct Inst {
  Op op;
  bool negate = false;
  std::uint32_t x = 0;  // class index, jump target, first split branch or lookahead program
  std::uint32_t y = 0;  // second split branch
  char32_t c = 0;
};

struct SubProgram {
  std::vector<Inst> code;
  bool anchored = false;  // starts with ^ in every alternative: only try position 0
};

}  // namespace

struct EcmaRegex::Program {
  std::string pattern;
  std::vector<CharClass> classes;
  std::vector<SubProgram> programs;  // [0] is the pattern; lookaheads refer to the others
};

namespace {

class Parser {
 public:
  Parser(std::u32string pattern, EcmaRegex::Program& program)
      : p_(std::move(pattern)), program_(program) {}

  NodePtr parse(std::string& error) {
    NodePtr root = parse_alternation(0);
    if (root && pos_ < p_.size()) fail("unmatched ')'");
    if (!error_.empty()) {
      error = error_;
      return nullptr;
    }
    return root;
  }

 private:
  bool at_end() const { return pos_ >= p_.size(); }
  char32_t peek(std::size_t ahead = 0) const {
    return pos_ + ahead < p_.size() ? p_[pos_ + ahead] : kNoChar;
  }

  NodePtr fail(std::string message) {
    if (error_.empty()) error_ = fmt::format("{} at character {}", message, pos_);
    return nullptr;
  }

  NodePtr parse_alternation(int depth) {
    if (depth > kMaxNesting) return fail("groups nested too deeply");
    NodePtr first = parse_sequence(depth);
    if (!first) return nullptr;
    if (peek() != '|') return first;
    NodePtr alt = make(Node::Kind::kAlternation);
    alt->children.push_back(std::move(first));
    while (peek() == '|') {
      ++pos_;
      NodePtr next = parse_sequence(depth);
      if (!next) return nullptr;
      alt->children.push_back(std::move(next));
    }
    return alt;
  }

  NodePtr parse_sequence(int depth) {
    NodePtr seq = make(Node::Kind::kConcat);
    while (!at_end() && peek() != '|' && peek() != ')') {
      NodePtr atom = parse_atom(depth);
      if (!atom) return nullptr;
      atom = parse_quantifier(std::move(atom));
      if (!atom) return nullptr;
      seq->children.push_back(std::move(atom));
    }
    return seq;
  }

  // Reads {n}, {n,} or {n,m} at pos_; false (pos_ unchanged) if the text is not a quantifier.
  bool read_braces(int& min, int& max) {
    std::size_t i = pos_ + 1;
    auto number = [&](int& out) {
      const std::size_t start = i;
      long long v = 0;
      while (i < p_.size() && p_[i] >= '0' && p_[i] <= '9') {
        v = std::min<long long>(v * 10 + (p_[i] - '0'), kMaxRepeatBound + 1LL);
        ++i;
      }
      out = static_cast<int>(v);
      return i > start;
    };
    if (!number(min)) return false;
    max = min;
    if (i < p_.size() && p_[i] == ',') {
      ++i;
      if (!number(max)) max = -1;
    }
    if (i >= p_.size() || p_[i] != '}') return false;
    pos_ = i + 1;
    return true;
  }

  NodePtr parse_quantifier(NodePtr atom) {
    int min = 0;
    int max = 0;
    const char32_t c = peek();
    if (c == '*') {
      min = 0, max = -1, ++pos_;
    } else if (c == '+') {
      min = 1, max = -1, ++pos_;
    } else if (c == '?') {
      min = 0, max = 1, ++pos_;
    } else if (c == '{' && read_braces(min, max)) {
      if (max != -1 && min > max) return fail("numbers out of order in {} quantifier");
      if (min > kMaxRepeatBound || max > kMaxRepeatBound) return fail("repeat count too large");
    } else {
      return atom;
    }
    if (peek() == '?') ++pos_;  // lazy: the same set of matches for a yes/no search
    switch (atom->kind) {
      case Node::Kind::kBegin:
      case Node::Kind::kEnd:
      case Node::Kind::kWordBoundary:
      case Node::Kind::kNotWordBoundary:
      case Node::Kind::kLookahead:
        return fail("an assertion cannot be repeated");
      default:
        break;
    }
    if (peek() == '*' || peek() == '+' || peek() == '?' || (peek() == '{' && [&] {
          int a = 0, b = 0;
          const std::size_t saved = pos_;
          const bool is_quantifier = read_braces(a, b);
          pos_ = saved;
          return is_quantifier;
        }())) {
      return fail("nothing to repeat");
    }
    NodePtr rep = make(Node::Kind::kRepeat);
    rep->min = min;
    rep->max = max;
    rep->children.push_back(std::move(atom));
    return rep;
  }

  NodePtr literal(char32_t c) {
    NodePtr n = make(Node::Kind::kChar);
    n->c = c;
    return n;
  }

  NodePtr class_node(Ranges ranges, bool negate) {
    if (negate) {
      normalize(ranges);
      ranges = complement(ranges);
    }
    CharClass cls;
    cls.ranges = std::move(ranges);
    cls.finish();
    program_.classes.push_back(std::move(cls));
    NodePtr n = make(Node::Kind::kClass);
    n->class_index = static_cast<std::uint32_t>(program_.classes.size() - 1);
    return n;
  }

  NodePtr parse_atom(int depth) {
    const char32_t c = p_[pos_];
    switch (c) {
      case '^':
        ++pos_;
        return make(Node::Kind::kBegin);
      case '$':
        ++pos_;
        return make(Node::Kind::kEnd);
      case '.':
        ++pos_;
        return make(Node::Kind::kAny);
      case '(':
        return parse_group(depth);
      case '[':
        return parse_class();
      case '\\':
        return parse_atom_escape();
      case '*':
      case '+':
      case '?':
        return fail("nothing to repeat");
      case '{': {
        int a = 0, b = 0;
        const std::size_t saved = pos_;
        if (read_braces(a, b)) {
          pos_ = saved;
          return fail("nothing to repeat");
        }
        ++pos_;
        return literal(c);  // a brace that does not start a quantifier is itself (Annex B)
      }
      default:
        ++pos_;
        return literal(c);
    }
  }

  NodePtr parse_group(int depth) {
    ++pos_;  // '('
    bool lookahead = false;
    bool negate = false;
    if (peek() == '?') {
      const char32_t kind = peek(1);
      if (kind == ':') {
        pos_ += 2;
      } else if (kind == '=' || kind == '!') {
        lookahead = true;
        negate = kind == '!';
        pos_ += 2;
      } else if (kind == '<' && (peek(2) == '=' || peek(2) == '!')) {
        return fail("lookbehind is not supported");
      } else if (kind == '<') {
        pos_ += 2;  // named group: the name is irrelevant without backreferences
        while (!at_end() && peek() != '>') ++pos_;
        if (at_end()) return fail("unterminated group name");
        ++pos_;
      } else {
        return fail("invalid group");
      }
    }
    NodePtr inner = parse_alternation(depth + 1);
    if (!inner) return nullptr;
    if (peek() != ')') return fail("missing ')'");
    ++pos_;
    if (!lookahead) return inner;
    NodePtr look = make(Node::Kind::kLookahead);
    look->negate = negate;
    look->children.push_back(std::move(inner));
    return look;
  }

  bool read_hex(std::size_t digits, char32_t& out) {
    out = 0;
    for (std::size_t i = 0; i < digits; ++i) {
      const char32_t h = peek();
      int v = -1;
      if (h >= '0' && h <= '9') v = static_cast<int>(h - '0');
      if (h >= 'a' && h <= 'f') v = static_cast<int>(h - 'a' + 10);
      if (h >= 'A' && h <= 'F') v = static_cast<int>(h - 'A' + 10);
      if (v < 0) return false;
      out = out * 16 + static_cast<char32_t>(v);
      ++pos_;
    }
    return true;
  }

  // \u escapes: \uHHHH (a surrogate pair written as two escapes is one code point) or \u{H...}.
  bool read_unicode_escape(char32_t& out) {
    if (peek() == '{') {
      ++pos_;
      out = 0;
      std::size_t count = 0;
      while (peek() != '}') {
        char32_t digit = 0;
        if (!read_hex(1, digit)) return false;
        out = out * 16 + digit;
        if (out > kMaxCodePoint) return false;
        ++count;
      }
      ++pos_;
      return count > 0;
    }
    if (!read_hex(4, out)) return false;
    if (out >= 0xD800 && out <= 0xDBFF && peek() == '\\' && peek(1) == 'u') {
      const std::size_t saved = pos_;
      pos_ += 2;
      char32_t low = 0;
      if (read_hex(4, low) && low >= 0xDC00 && low <= 0xDFFF) {
        out = 0x10000 + ((out - 0xD800) << 10) + (low - 0xDC00);
      } else {
        pos_ = saved;
      }
    }
    return true;
  }

  bool read_property(bool negate, Ranges& out) {
    if (peek() != '{') return false;
    ++pos_;
    std::string name;
    while (!at_end() && peek() != '}') {
      if (peek() > 0x7F) return false;
      name += static_cast<char>(peek());
      ++pos_;
    }
    if (at_end()) return false;
    ++pos_;
    std::string_view value = name;
    if (value.starts_with("General_Category=")) {
      value.remove_prefix(17);
    } else if (value.starts_with("gc=")) {
      value.remove_prefix(3);
    } else if (value.find('=') != std::string_view::npos) {
      error_ =
          fmt::format("Unicode property \\p{{{}}} is not supported (only General_Category)", name);
      return false;
    }
    Ranges ranges;
    if (value == "Any") {
      ranges = {{0, kMaxCodePoint}};
    } else if (value == "ASCII") {
      ranges = {{0, 0x7F}};
    } else if (value == "Assigned") {
      ranges = complement(category_ranges(mask_of("Cn")));
    } else {
      const std::uint32_t mask = general_category_mask(value);
      if (mask == 0) {
        error_ = fmt::format("unknown or unsupported Unicode property \\p{{{}}}", name);
        return false;
      }
      ranges = category_ranges(mask);
    }
    if (negate) ranges = complement(ranges);
    out.insert(out.end(), ranges.begin(), ranges.end());
    return true;
  }

  // An escape that means one character (shared by atoms and classes). `in_class` makes \b a
  // backspace and allows \-.
  bool read_character_escape(char32_t e, bool in_class, char32_t& out) {
    switch (e) {
      case 't':
        out = '\t';
        return true;
      case 'n':
        out = '\n';
        return true;
      case 'v':
        out = '\v';
        return true;
      case 'f':
        out = '\f';
        return true;
      case 'r':
        out = '\r';
        return true;
      case 'b':
        if (!in_class) return false;
        out = '\b';
        return true;
      case '0':
        if (peek() >= '0' && peek() <= '9') return false;
        out = 0;
        return true;
      case 'c': {
        const char32_t letter = peek();
        if (!((letter >= 'a' && letter <= 'z') || (letter >= 'A' && letter <= 'Z'))) return false;
        ++pos_;
        out = letter % 32;
        return true;
      }
      case 'x':
        return read_hex(2, out);
      case 'u':
        return read_unicode_escape(out);
      default:
        break;
    }
    // Identity escapes: syntax characters, '/', '-', and (leniently, as most engines in
    // practice) any other ASCII punctuation or a non-ASCII character.
    if (e < 0x80 && ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))) {
      return false;
    }
    if (e < 0x20) return false;
    out = e;
    return true;
  }

  // \d \D \w \W \s \S \p{..} \P{..}; false if `e` is not a class escape.
  bool read_class_escape(char32_t e, Ranges& out, bool& is_class) {
    is_class = true;
    Ranges r;
    switch (e) {
      case 'd':
        r = digit_ranges();
        break;
      case 'D':
        r = complement(digit_ranges());
        break;
      case 'w':
        r = word_ranges();
        break;
      case 'W':
        r = complement(word_ranges());
        break;
      case 's':
        r = space_ranges();
        break;
      case 'S':
        r = complement(space_ranges());
        break;
      case 'p':
      case 'P':
        if (!read_property(e == 'P', out)) {
          if (error_.empty())
            error_ =
                fmt::format("malformed \\{} escape at character {}", static_cast<char>(e), pos_);
          return false;
        }
        return true;
      default:
        is_class = false;
        return true;
    }
    out.insert(out.end(), r.begin(), r.end());
    return true;
  }

  NodePtr parse_atom_escape() {
    ++pos_;  // backslash
    if (at_end()) return fail("pattern ends with a backslash");
    const char32_t e = p_[pos_++];
    if (e == 'b') return make(Node::Kind::kWordBoundary);
    if (e == 'B') return make(Node::Kind::kNotWordBoundary);
    if (e >= '1' && e <= '9') return fail("backreferences are not supported");
    if (e == 'k') return fail("named backreferences are not supported");
    Ranges ranges;
    bool is_class = false;
    if (!read_class_escape(e, ranges, is_class))
      return fail(error_.empty() ? "bad escape" : error_);
    if (is_class) return class_node(std::move(ranges), false);
    char32_t c = 0;
    if (!read_character_escape(e, false, c)) {
      return fail(fmt::format("invalid escape '\\{}'", e < 0x80 ? static_cast<char>(e) : '?'));
    }
    return literal(c);
  }

  // One class atom: a single character (returned in `c`, `single` true) or a set (added to
  // `ranges`).
  bool parse_class_atom(Ranges& ranges, char32_t& c, bool& single) {
    single = false;
    if (at_end()) return false;
    const char32_t first = p_[pos_++];
    if (first != '\\') {
      c = first;
      single = true;
      return true;
    }
    if (at_end()) return false;
    const char32_t e = p_[pos_++];
    if (e >= '1' && e <= '9') {
      error_ = "backreferences are not supported";
      return false;
    }
    bool is_class = false;
    if (!read_class_escape(e, ranges, is_class)) return false;
    if (is_class) return true;
    if (e == '-') {
      c = '-';
      single = true;
      return true;
    }
    if (!read_character_escape(e, true, c)) {
      if (error_.empty()) error_ = fmt::format("invalid escape in class at character {}", pos_);
      return false;
    }
    single = true;
    return true;
  }

  NodePtr parse_class() {
    ++pos_;  // '['
    bool negate = false;
    if (peek() == '^') {
      negate = true;
      ++pos_;
    }
    Ranges ranges;
    while (true) {
      if (at_end()) return fail("missing ']'");
      if (peek() == ']') {
        ++pos_;
        break;
      }
      char32_t lo = 0;
      bool lo_single = false;
      if (!parse_class_atom(ranges, lo, lo_single))
        return fail(error_.empty() ? "bad class" : error_);
      if (peek() == '-' && peek(1) != ']' && peek(1) != kNoChar) {
        ++pos_;
        char32_t hi = 0;
        bool hi_single = false;
        if (!parse_class_atom(ranges, hi, hi_single)) {
          return fail(error_.empty() ? "bad class" : error_);
        }
        if (!lo_single || !hi_single) return fail("a class escape cannot bound a range");
        if (lo > hi) return fail("range out of order in character class");
        ranges.emplace_back(lo, hi);
      } else if (lo_single) {
        ranges.emplace_back(lo, lo);
      }
    }
    return class_node(std::move(ranges), negate);
  }

  std::u32string p_;
  std::size_t pos_ = 0;
  std::string error_;
  EcmaRegex::Program& program_;
};

// ---- Code generation --------------------------------------------------------------------

class Compiler {
 public:
  explicit Compiler(EcmaRegex::Program& program) : program_(program) {}

  bool compile(const Node& root, std::uint32_t program_index) {
    std::vector<Inst> code;
    emit(root, code);
    if (too_big_) return false;
    code.push_back(Inst{Op::kMatch});
    program_.programs[program_index].code = std::move(code);
    program_.programs[program_index].anchored = starts_anchored(root);
    return true;
  }

 private:
  static bool starts_anchored(const Node& n) {
    switch (n.kind) {
      case Node::Kind::kBegin:
        return true;
      case Node::Kind::kConcat:
        return !n.children.empty() && starts_anchored(*n.children.front());
      case Node::Kind::kAlternation:
        return std::all_of(n.children.begin(), n.children.end(),
                           [](const NodePtr& c) { return starts_anchored(*c); });
      default:
        return false;
    }
  }

  // True if `n` compiles to no instructions: it matches only the empty string and asserts
  // nothing ("", "(?:)", "a{0}").
  static bool emits_nothing(const Node& n) {
    switch (n.kind) {
      case Node::Kind::kEmpty:
        return true;
      case Node::Kind::kConcat:
        return std::all_of(n.children.begin(), n.children.end(),
                           [](const NodePtr& c) { return emits_nothing(*c); });
      case Node::Kind::kRepeat:
        return n.max == 0 || emits_nothing(*n.children.front());
      default:
        return false;
    }
  }

  std::uint32_t here(const std::vector<Inst>& code) const {
    return static_cast<std::uint32_t>(code.size());
  }

  void emit(const Node& n, std::vector<Inst>& code) {
    if (other_programs_ + code.size() > kMaxInstructions) {
      too_big_ = true;
      return;
    }
    switch (n.kind) {
      case Node::Kind::kEmpty:
        return;
      case Node::Kind::kChar:
        code.push_back(Inst{Op::kChar, false, 0, 0, n.c});
        return;
      case Node::Kind::kClass:
        code.push_back(Inst{Op::kClass, false, n.class_index});
        return;
      case Node::Kind::kAny:
        code.push_back(Inst{Op::kAny});
        return;
      case Node::Kind::kBegin:
        code.push_back(Inst{Op::kBegin});
        return;
      case Node::Kind::kEnd:
        code.push_back(Inst{Op::kEnd});
        return;
      case Node::Kind::kWordBoundary:
        code.push_back(Inst{Op::kWordBoundary});
        return;
      case Node::Kind::kNotWordBoundary:
        code.push_back(Inst{Op::kNotWordBoundary});
        return;
      case Node::Kind::kConcat:
        for (const NodePtr& child : n.children) emit(*child, code);
        return;
      case Node::Kind::kAlternation: {
        std::vector<std::uint32_t> exits;
        for (std::size_t i = 0; i < n.children.size(); ++i) {
          if (i + 1 < n.children.size()) {
            const std::uint32_t split = here(code);
            code.push_back(Inst{Op::kSplit, false, split + 1, 0});
            emit(*n.children[i], code);
            exits.push_back(here(code));
            code.push_back(Inst{Op::kJmp});
            code[split].y = here(code);
          } else {
            emit(*n.children[i], code);
          }
          if (too_big_) return;
        }
        for (std::uint32_t e : exits) code[e].x = here(code);
        return;
      }
      case Node::Kind::kRepeat: {
        const Node& body = *n.children.front();
        // Repeating what compiles to nothing is nothing. The instruction limit cannot stop
        // such loops (they add no instructions), so without this (?:(?:){99999}){99999}
        // iterated 10^10 times at compile time.
        if (emits_nothing(body)) return;
        for (int i = 0; i < n.min && !too_big_; ++i) emit(body, code);
        if (n.max == -1) {
          const std::uint32_t loop = here(code);
          code.push_back(Inst{Op::kSplit, false, loop + 1, 0});
          emit(body, code);
          code.push_back(Inst{Op::kJmp, false, loop});
          code[loop].y = here(code);
          return;
        }
        std::vector<std::uint32_t> skips;
        for (int i = n.min; i < n.max && !too_big_; ++i) {
          skips.push_back(here(code));
          code.push_back(Inst{Op::kSplit, false, here(code) + 1, 0});
          emit(body, code);
        }
        for (std::uint32_t s : skips) code[s].y = here(code);
        return;
      }
      case Node::Kind::kLookahead: {
        auto it = lookaheads_.find(&n);
        std::uint32_t index = 0;
        if (it != lookaheads_.end()) {
          index = it->second;
        } else {
          index = static_cast<std::uint32_t>(program_.programs.size());
          program_.programs.emplace_back();
          lookaheads_.emplace(&n, index);
          Compiler sub(program_);
          sub.lookaheads_ = lookaheads_;
          sub.other_programs_ = other_programs_ + code.size();
          if (!sub.compile(*n.children.front(), index)) too_big_ = true;
          // What the lookahead (and lookaheads inside it) emitted now counts against ours.
          other_programs_ =
              sub.other_programs_ - code.size() + program_.programs[index].code.size();
          program_.programs[index].anchored = true;
        }
        code.push_back(Inst{Op::kLook, n.negate, index});
        return;
      }
    }
  }

  EcmaRegex::Program& program_;
  std::unordered_map<const Node*, std::uint32_t> lookaheads_;
  bool too_big_ = false;
  // Instructions in the other programs of the pattern (finished lookaheads, and the programs
  // this one is nested in): the limit is on the whole pattern, not on each program, or every
  // lookahead could take kMaxInstructions and a 4 KB pattern of (?=a{19999}) took 100 MB.
  std::size_t other_programs_ = 0;
};

// ---- Matching ---------------------------------------------------------------------------

struct MatchContext {
  const EcmaRegex::Program& program;
  std::string_view text;
  // Lookahead results by (program, byte offset): 0 unknown, 1 false, 2 true.
  std::unordered_map<std::uint64_t, std::uint8_t> look_memo;
  std::uint64_t steps = 0;
  bool gave_up = false;
};

char32_t code_point_at(std::string_view text, std::size_t pos, std::size_t& next) {
  if (pos >= text.size()) {
    next = pos;
    return kNoChar;
  }
  const char* p = text.data() + pos;
  const char32_t cp = next_code_point(p, text.data() + text.size());
  next = static_cast<std::size_t>(p - text.data());
  return cp;
}

bool run(MatchContext& ctx, std::uint32_t program_index, std::size_t start, char32_t prev_cp);

bool lookahead(MatchContext& ctx, std::uint32_t program_index, std::size_t pos, char32_t prev) {
  const std::uint64_t key = (std::uint64_t{program_index} << 40) | pos;
  std::uint8_t& memo = ctx.look_memo[key];
  if (memo != 0) return memo == 2;
  const bool result = run(ctx, program_index, pos, prev);
  ctx.look_memo[key] = result ? 2 : 1;  // `memo` may dangle after a rehash in run()
  return result;
}

// A list of threads (pcs) at one position, deduplicated by generation marks. It works on
// memory owned by run(), so that a search of a small pattern does not allocate.
class ThreadList {
 public:
  ThreadList(std::uint32_t* mark, std::uint32_t* pcs) : mark_(mark), pcs_(pcs) {}
  void begin(std::uint32_t generation) {
    generation_ = generation;
    size_ = 0;
  }
  bool visit(std::uint32_t pc) {
    if (mark_[pc] == generation_) return false;
    mark_[pc] = generation_;
    return true;
  }
  void add(std::uint32_t pc) { pcs_[size_++] = pc; }
  const std::uint32_t* begin() const { return pcs_; }
  const std::uint32_t* end() const { return pcs_ + size_; }
  bool empty() const { return size_ == 0; }

 private:
  std::uint32_t* mark_;
  std::uint32_t* pcs_;
  std::size_t size_ = 0;
  std::uint32_t generation_ = 0;
};

// Patterns up to this many instructions search with scratch memory on the stack.
constexpr std::size_t kInlineProgramSize = 64;

bool run(MatchContext& ctx, std::uint32_t program_index, std::size_t start, char32_t prev_cp) {
  const SubProgram& sub = ctx.program.programs[program_index];
  const std::vector<Inst>& code = sub.code;
  const bool anchored = program_index != 0 || sub.anchored;
  // Two mark arrays and two pc lists of code.size() each, and a stack: every pc is expanded
  // at most once per position and pushes at most two successors.
  const std::size_t n = code.size();
  const std::size_t scratch_size = 6 * n + 2;
  std::array<std::uint32_t, 6 * kInlineProgramSize + 2> inline_scratch;
  std::vector<std::uint32_t> heap_scratch;
  std::uint32_t* scratch = inline_scratch.data();
  if (n > kInlineProgramSize) {
    heap_scratch.resize(scratch_size);
    scratch = heap_scratch.data();
  }
  std::fill(scratch, scratch + 2 * n, 0u);
  ThreadList lists[2] = {ThreadList(scratch, scratch + 2 * n),
                         ThreadList(scratch + n, scratch + 3 * n)};
  std::uint32_t* const stack = scratch + 4 * n;
  std::size_t stack_size = 0;
  std::uint32_t generation = 1;

  std::size_t pos = start;
  std::size_t next = 0;
  char32_t cur = code_point_at(ctx.text, pos, next);
  char32_t prev = prev_cp;

  // Follows the epsilon transitions from `pc` at the current position.
  auto add_thread = [&](ThreadList& list, std::uint32_t pc, std::size_t at, char32_t before,
                        char32_t after) {
    stack[stack_size++] = pc;
    while (stack_size > 0) {
      const std::uint32_t p = stack[--stack_size];
      if (!list.visit(p)) continue;
      const Inst& inst = code[p];
      switch (inst.op) {
        case Op::kJmp:
          stack[stack_size++] = inst.x;
          break;
        case Op::kSplit:
          stack[stack_size++] = inst.y;
          stack[stack_size++] = inst.x;
          break;
        case Op::kBegin:
          if (at == 0) stack[stack_size++] = p + 1;
          break;
        case Op::kEnd:
          if (at == ctx.text.size()) stack[stack_size++] = p + 1;
          break;
        case Op::kWordBoundary:
        case Op::kNotWordBoundary: {
          const bool boundary = is_word(before) != is_word(after);
          if (boundary == (inst.op == Op::kWordBoundary)) stack[stack_size++] = p + 1;
          break;
        }
        case Op::kLook:
          if (lookahead(ctx, inst.x, at, before) != inst.negate) stack[stack_size++] = p + 1;
          break;
        default:
          list.add(p);
      }
    }
  };

  ThreadList* clist = &lists[0];
  ThreadList* nlist = &lists[1];
  clist->begin(generation++);
  add_thread(*clist, 0, pos, prev, cur);
  while (true) {
    // Once a lookahead has given up, its answer ("false") is not the real one, and a negative
    // lookahead would turn it into a pass: (?!.*y)a matched a long "aaa...ay". A search that
    // gave up is therefore "no match" as a whole, at every level of lookahead.
    if (ctx.gave_up) return false;
    for (std::uint32_t pc : *clist) {
      if (code[pc].op == Op::kMatch) return true;
    }
    if (pos >= ctx.text.size()) return false;
    if (clist->empty() && anchored) return false;
    if (program_index != 0 && ++ctx.steps > kMaxLookaheadSteps) {
      ctx.gave_up = true;
      return false;
    }
    std::size_t after_next = 0;
    const char32_t following = code_point_at(ctx.text, next, after_next);
    nlist->begin(generation++);
    for (std::uint32_t pc : *clist) {
      const Inst& inst = code[pc];
      bool step = false;
      switch (inst.op) {
        case Op::kChar:
          step = cur == inst.c;
          break;
        case Op::kClass:
          step = ctx.program.classes[inst.x].contains(cur);
          break;
        case Op::kAny:
          step = !is_line_terminator(cur);
          break;
        default:
          break;
      }
      if (step) add_thread(*nlist, pc + 1, next, cur, following);
    }
    prev = cur;
    cur = following;
    pos = next;
    next = after_next;
    if (!anchored) add_thread(*nlist, 0, pos, prev, cur);
    std::swap(clist, nlist);
  }
}

}  // namespace

Result<EcmaRegex> EcmaRegex::compile(std::string_view pattern) {
  std::u32string code_points;
  code_points.reserve(pattern.size());
  for (const char* p = pattern.data(); p < pattern.data() + pattern.size();) {
    if (utf8_sequence_length(p, pattern.data() + pattern.size()) == 0) {
      return invalid_argument("pattern is not valid UTF-8");
    }
    code_points.push_back(next_code_point(p, pattern.data() + pattern.size()));
  }
  auto program = std::make_shared<Program>();
  program->pattern = std::string(pattern);
  program->programs.emplace_back();
  std::string error;
  NodePtr root = Parser(std::move(code_points), *program).parse(error);
  if (!root) return invalid_argument(fmt::format("invalid regular expression: {}", error));
  if (!Compiler(*program).compile(*root, 0)) {
    return invalid_argument("regular expression is too large (repeat counts expand too far)");
  }
  return EcmaRegex(std::move(program));
}

bool EcmaRegex::search(std::string_view text) const {
  MatchContext ctx{*program_, text, {}, 0, false};
  return run(ctx, 0, 0, kNoChar);
}

const std::string& EcmaRegex::pattern() const {
  return program_->pattern;
}

}  // namespace civicbus::detail
