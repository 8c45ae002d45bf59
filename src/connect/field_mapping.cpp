#include "civicbus/connect/field_mapping.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <unordered_map>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/time_zone.hpp"
#include "core/edit_distance.hpp"

namespace civicbus::connect {
namespace {

// ------------------------------------------------------------------------------------------
// Text helpers

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

std::string_view trim_view(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// The text a value stands for: strings as they are, numbers in their shortest form.
std::string to_text(const Json& v) {
  switch (v.type()) {
    case Json::Type::kNull:
      return {};
    case Json::Type::kBool:
      return v.as_bool() ? "true" : "false";
    case Json::Type::kInt:
      return fmt::format("{}", v.as_int());
    case Json::Type::kDouble:
      return fmt::format("{}", v.as_double());
    case Json::Type::kString:
      return v.as_string();
    default:
      return v.dump();
  }
}

std::string quote_value(const Json& v) {
  std::string text = v.is_string() ? v.as_string() : v.dump();
  if (text.size() > 200) {
    text.resize(200);
    text += "…";
  }
  return text;
}

std::string did_you_mean(std::string_view name, const std::vector<std::string>& candidates) {
  std::string best = closest_name(name, candidates);
  return best.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", best);
}

// ------------------------------------------------------------------------------------------
// Date and time formats

struct FormatItem {
  char directive = 0;  // 0: a literal
  char literal = 0;
  bool space = false;  // matches any run of white space
};

struct DateFormat {
  std::string text;
  bool rfc3339 = false;
  std::vector<FormatItem> items;
};

constexpr std::string_view kDirectives = "YymdeHMSfzbBsTF%";

Result<DateFormat> compile_format(std::string_view text) {
  DateFormat format;
  format.text = std::string(text);
  if (lower_ascii(text) == "rfc3339") {
    format.rfc3339 = true;
    return format;
  }
  if (text.empty()) return invalid_argument("a date format is empty");
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 1 >= text.size()) {
        return invalid_argument(fmt::format("format '{}' ends with a lone '%'", text));
      }
      const char d = text[++i];
      if (kDirectives.find(d) == std::string_view::npos) {
        return invalid_argument(
            fmt::format("format '{}' has an unknown directive '%{}' (known: %Y "
                        "%y %m %d %e %H %M "
                        "%S %f %z %b %B %s %T %F %%)",
                        text, d));
      }
      if (d == 'T') {
        for (char x : std::string_view("H:M:S")) {
          format.items.push_back(x == ':' ? FormatItem{0, ':', false} : FormatItem{x, 0, false});
        }
      } else if (d == 'F') {
        for (char x : std::string_view("Y-m-d")) {
          format.items.push_back(x == '-' ? FormatItem{0, '-', false} : FormatItem{x, 0, false});
        }
      } else if (d == '%') {
        format.items.push_back(FormatItem{0, '%', false});
      } else {
        format.items.push_back(FormatItem{d, 0, false});
      }
    } else if (is_space(c)) {
      if (format.items.empty() || !format.items.back().space) {
        format.items.push_back(FormatItem{0, 0, true});
      }
    } else {
      format.items.push_back(FormatItem{0, c, false});
    }
  }
  return format;
}

struct ParsedTime {
  CivilTime civil;
  std::int64_t micros = 0;
  std::optional<int> offset_seconds;
  std::optional<std::int64_t> unix_seconds;
};

constexpr std::array<std::string_view, 12> kMonthNames = {
    "january", "february", "march",     "april",   "may",      "june",
    "july",    "august",   "september", "october", "november", "december"};

bool is_leap(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int days_in_month(int y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : kDays[m - 1];
}

// Reads min..max digits.
bool read_digits(std::string_view s, std::size_t& pos, int min, int max, std::int64_t& out) {
  std::int64_t value = 0;
  int n = 0;
  while (n < max && pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
    value = value * 10 + (s[pos] - '0');
    ++pos;
    ++n;
  }
  out = value;
  return n >= min;
}

bool parse_time(const DateFormat& format, std::string_view s, ParsedTime& out) {
  out = ParsedTime{};
  out.civil.hour = out.civil.minute = out.civil.second = 0;
  std::size_t pos = 0;
  std::int64_t v = 0;
  for (const FormatItem& item : format.items) {
    if (item.space) {
      while (pos < s.size() && is_space(s[pos])) ++pos;
      continue;
    }
    if (item.directive == 0) {
      if (pos >= s.size() || s[pos] != item.literal) return false;
      ++pos;
      continue;
    }
    switch (item.directive) {
      case 'Y':
        if (!read_digits(s, pos, 4, 4, v)) return false;
        out.civil.year = static_cast<int>(v);
        break;
      case 'y':
        if (!read_digits(s, pos, 2, 2, v)) return false;
        out.civil.year = static_cast<int>(v < 69 ? 2000 + v : 1900 + v);  // POSIX's pivot
        break;
      case 'm':
        if (!read_digits(s, pos, 1, 2, v)) return false;
        out.civil.month = static_cast<int>(v);
        break;
      case 'e':
        if (pos < s.size() && s[pos] == ' ') ++pos;
        [[fallthrough]];
      case 'd':
        if (!read_digits(s, pos, 1, 2, v)) return false;
        out.civil.day = static_cast<int>(v);
        break;
      case 'H':
        if (!read_digits(s, pos, 1, 2, v)) return false;
        out.civil.hour = static_cast<int>(v);
        break;
      case 'M':
        if (!read_digits(s, pos, 1, 2, v)) return false;
        out.civil.minute = static_cast<int>(v);
        break;
      case 'S':
        if (!read_digits(s, pos, 1, 2, v)) return false;
        out.civil.second = static_cast<int>(v);
        break;
      case 'f': {
        const std::size_t start = pos;
        if (!read_digits(s, pos, 1, 9, v)) return false;
        for (std::size_t n = pos - start; n < 6; ++n) v *= 10;
        for (std::size_t n = pos - start; n > 6; --n) v /= 10;
        out.micros = v;
        break;
      }
      case 'z': {
        if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
          ++pos;
          out.offset_seconds = 0;
          break;
        }
        if (pos >= s.size() || (s[pos] != '+' && s[pos] != '-')) return false;
        const int sign = s[pos] == '-' ? -1 : 1;
        ++pos;
        std::int64_t hh = 0, mm = 0;
        if (!read_digits(s, pos, 2, 2, hh)) return false;
        if (pos < s.size() && s[pos] == ':') ++pos;
        if (pos < s.size() && s[pos] >= '0' && s[pos] <= '9' && !read_digits(s, pos, 2, 2, mm)) {
          return false;
        }
        if (hh > 23 || mm > 59) return false;
        out.offset_seconds = sign * static_cast<int>(hh * 3600 + mm * 60);
        break;
      }
      case 'b':
      case 'B': {
        const std::string rest = lower_ascii(s.substr(pos, 9));
        int found = 0;
        std::size_t used = 0;
        for (std::size_t m = 0; m < kMonthNames.size(); ++m) {
          const std::string_view name = kMonthNames[m];
          if (rest.starts_with(name)) {
            found = static_cast<int>(m + 1);
            used = name.size();
            break;
          }
          if (rest.starts_with(name.substr(0, 3))) {
            found = static_cast<int>(m + 1);
            used = 3;
          }
        }
        if (found == 0) return false;
        pos += used;
        out.civil.month = found;
        break;
      }
      case 's': {
        bool negative = false;
        if (pos < s.size() && s[pos] == '-') {
          negative = true;
          ++pos;
        }
        if (!read_digits(s, pos, 1, 12, v)) return false;
        out.unix_seconds = negative ? -v : v;
        out.civil = civil_from_seconds(*out.unix_seconds);
        break;
      }
      default:
        return false;
    }
  }
  if (pos != s.size()) return false;
  const CivilTime& c = out.civil;
  if (c.month < 1 || c.month > 12 || c.day < 1 || c.day > days_in_month(c.year, c.month) ||
      c.hour > 23 || c.minute > 59 || c.second > 59) {
    return false;
  }
  return true;
}

// ------------------------------------------------------------------------------------------
// Expressions

enum class Op : std::uint8_t {
  kLiteral,
  kField,
  kNeg,
  kNot,
  kAdd,
  kSub,
  kMul,
  kDiv,
  kMod,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kAnd,
  kOr,
  kIf,
  kUpper,
  kLower,
  kTrim,
  kSubstr,
  kConcat,
  kCoalesce,
  kRound,
  kLen,
  kReplace,
};

struct FunctionInfo {
  std::string_view name;
  Op op;
  int min_args;
  int max_args;  // -1: any
};

constexpr std::array<FunctionInfo, 10> kFunctions = {{
    {"if", Op::kIf, 3, 3},
    {"upper", Op::kUpper, 1, 1},
    {"lower", Op::kLower, 1, 1},
    {"trim", Op::kTrim, 1, 1},
    {"substr", Op::kSubstr, 2, 3},
    {"concat", Op::kConcat, 1, -1},
    {"coalesce", Op::kCoalesce, 1, -1},
    {"round", Op::kRound, 1, 2},
    {"len", Op::kLen, 1, 1},
    {"replace", Op::kReplace, 3, 3},
}};

struct Node {
  Op op = Op::kLiteral;
  std::vector<int> args;  // child nodes
  Json literal;
  int slot = -1;  // kField: index into the mapping's source columns
};

struct Expr {
  std::vector<Node> nodes;
  int root = -1;
};

struct FieldRef {
  std::string name;
  int column;  // 1-based, in the expression text
  int node;
};

enum class Tok { kEnd, kNumber, kString, kIdent, kField, kOp, kLParen, kRParen, kComma };

struct Token {
  Tok kind = Tok::kEnd;
  std::string text;
  Json number;
  int column = 0;  // 1-based
};

struct SyntaxError {
  int column;
  std::string message;
};

class ExprParser {
 public:
  explicit ExprParser(std::string_view src) : src_(src) {}

  // Parses the whole text into `expr`; field references are collected for the caller.
  std::optional<SyntaxError> parse(Expr& expr, std::vector<FieldRef>& refs) {
    expr_ = &expr;
    refs_ = &refs;
    if (auto e = advance()) return e;
    if (tok_.kind == Tok::kEnd) return SyntaxError{1, "the expression is empty"};
    int root = -1;
    if (auto e = parse_or(root)) return e;
    if (tok_.kind != Tok::kEnd) {
      return SyntaxError{tok_.column,
                         fmt::format("unexpected '{}' after a complete expression", tok_.text)};
    }
    // Evaluation recurses once per level of the tree, so its depth is bounded. Children are added
    // before their parents, so one forward pass computes every node's depth.
    std::vector<int> depth(expr.nodes.size(), 1);
    for (std::size_t i = 0; i < expr.nodes.size(); ++i) {
      for (int child : expr.nodes[i].args) {
        depth[i] = std::max(depth[i], depth[static_cast<std::size_t>(child)] + 1);
      }
      if (depth[i] > kMaxTreeDepth) {
        return SyntaxError{1, fmt::format("the expression nests deeper than {} levels of operators "
                                          "and calls; split it",
                                          kMaxTreeDepth)};
      }
    }
    expr.root = root;
    return std::nullopt;
  }

 private:
  std::optional<SyntaxError> advance() {
    while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
    tok_ = Token{};
    tok_.column = static_cast<int>(pos_) + 1;
    if (pos_ >= src_.size()) {
      tok_.text = "end of expression";
      return std::nullopt;
    }
    const char c = src_[pos_];
    if ((c >= '0' && c <= '9') ||
        (c == '.' && pos_ + 1 < src_.size() && src_[pos_ + 1] >= '0' && src_[pos_ + 1] <= '9')) {
      const std::size_t start = pos_;
      bool is_double = false;
      while (pos_ < src_.size() && ((src_[pos_] >= '0' && src_[pos_] <= '9') || src_[pos_] == '.' ||
                                    src_[pos_] == 'e' || src_[pos_] == 'E' ||
                                    ((src_[pos_] == '+' || src_[pos_] == '-') &&
                                     (src_[pos_ - 1] == 'e' || src_[pos_ - 1] == 'E')))) {
        if (src_[pos_] == '.' || src_[pos_] == 'e' || src_[pos_] == 'E') is_double = true;
        ++pos_;
      }
      tok_.kind = Tok::kNumber;
      tok_.text = std::string(src_.substr(start, pos_ - start));
      const char* first = tok_.text.data();
      const char* last = first + tok_.text.size();
      if (!is_double) {
        std::int64_t i = 0;
        auto [end, ec] = std::from_chars(first, last, i);
        if (ec == std::errc() && end == last) {
          tok_.number = Json(i);
          return std::nullopt;
        }
      }
      double d = 0;
      auto [end, ec] = std::from_chars(first, last, d);
      if (ec != std::errc() || end != last) {
        return SyntaxError{tok_.column, fmt::format("'{}' is not a number", tok_.text)};
      }
      tok_.number = Json(d);
      return std::nullopt;
    }
    if (c == '\'' || c == '"' || c == '`') {
      const char quote = c;
      std::string text;
      ++pos_;
      while (true) {
        if (pos_ >= src_.size()) {
          return SyntaxError{tok_.column, quote == '`' ? "unterminated `quoted` field name"
                                                       : "unterminated string literal"};
        }
        const char x = src_[pos_++];
        if (x == quote) {
          if (pos_ < src_.size() && src_[pos_] == quote) {  // a doubled quote is one quote
            text.push_back(quote);
            ++pos_;
            continue;
          }
          break;
        }
        if (x == '\\' && quote != '`' && pos_ < src_.size()) {
          const char e = src_[pos_++];
          text.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);
          continue;
        }
        text.push_back(x);
      }
      tok_.kind = quote == '`' ? Tok::kField : Tok::kString;
      tok_.text = std::move(text);
      return std::nullopt;
    }
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_') {
      const std::size_t start = pos_;
      while (pos_ < src_.size() &&
             ((src_[pos_] >= 'A' && src_[pos_] <= 'Z') ||
              (src_[pos_] >= 'a' && src_[pos_] <= 'z') ||
              (src_[pos_] >= '0' && src_[pos_] <= '9') || src_[pos_] == '_' || src_[pos_] == '.')) {
        ++pos_;
      }
      tok_.kind = Tok::kIdent;
      tok_.text = std::string(src_.substr(start, pos_ - start));
      return std::nullopt;
    }
    ++pos_;
    switch (c) {
      case '(':
        tok_.kind = Tok::kLParen;
        tok_.text = "(";
        return std::nullopt;
      case ')':
        tok_.kind = Tok::kRParen;
        tok_.text = ")";
        return std::nullopt;
      case ',':
        tok_.kind = Tok::kComma;
        tok_.text = ",";
        return std::nullopt;
      case '+':
      case '-':
      case '*':
      case '/':
      case '%':
        tok_.kind = Tok::kOp;
        tok_.text = std::string(1, c);
        return std::nullopt;
      default:
        break;
    }
    auto two = [&](char next) { return pos_ < src_.size() && src_[pos_] == next; };
    tok_.kind = Tok::kOp;
    if (c == '=') {
      if (two('=')) ++pos_;
      tok_.text = "==";
    } else if (c == '!') {
      if (two('=')) {
        ++pos_;
        tok_.text = "!=";
      } else {
        tok_.text = "not";
      }
    } else if (c == '<') {
      if (two('=')) {
        ++pos_;
        tok_.text = "<=";
      } else if (two('>')) {
        ++pos_;
        tok_.text = "!=";
      } else {
        tok_.text = "<";
      }
    } else if (c == '>') {
      tok_.text = two('=') ? (++pos_, ">=") : ">";
    } else if (c == '&' && two('&')) {
      ++pos_;
      tok_.text = "and";
    } else if (c == '|' && two('|')) {
      ++pos_;
      tok_.text = "or";
    } else {
      return SyntaxError{tok_.column, fmt::format("unexpected character '{}'", c)};
    }
    return std::nullopt;
  }

  bool is_keyword(std::string_view word) const {
    return (tok_.kind == Tok::kIdent && lower_ascii(tok_.text) == word) ||
           (tok_.kind == Tok::kOp && tok_.text == word);
  }

  // Bounds the parser's recursion, so that a hostile expression cannot exhaust the stack.
  class DepthGuard {
   public:
    explicit DepthGuard(int& depth) : depth_(++depth) {}
    ~DepthGuard() { --depth_; }
    bool too_deep() const { return depth_ > kMaxDepth; }

   private:
    int& depth_;
  };

  int add(Node node) {
    expr_->nodes.push_back(std::move(node));
    return static_cast<int>(expr_->nodes.size()) - 1;
  }
  int binary(Op op, int a, int b) {
    Node n;
    n.op = op;
    n.args = {a, b};
    return add(std::move(n));
  }

  std::optional<SyntaxError> parse_or(int& out) {
    DepthGuard guard(depth_);
    if (guard.too_deep()) return SyntaxError{tok_.column, "the expression nests too deeply"};
    if (auto e = parse_and(out)) return e;
    while (is_keyword("or")) {
      if (auto e = advance()) return e;
      int rhs = -1;
      if (auto e = parse_and(rhs)) return e;
      out = binary(Op::kOr, out, rhs);
    }
    return std::nullopt;
  }

  std::optional<SyntaxError> parse_and(int& out) {
    if (auto e = parse_not(out)) return e;
    while (is_keyword("and")) {
      if (auto e = advance()) return e;
      int rhs = -1;
      if (auto e = parse_not(rhs)) return e;
      out = binary(Op::kAnd, out, rhs);
    }
    return std::nullopt;
  }

  std::optional<SyntaxError> parse_not(int& out) {
    DepthGuard guard(depth_);
    if (guard.too_deep()) return SyntaxError{tok_.column, "the expression nests too deeply"};
    if (is_keyword("not")) {
      if (auto e = advance()) return e;
      int operand = -1;
      if (auto e = parse_not(operand)) return e;
      Node n;
      n.op = Op::kNot;
      n.args = {operand};
      out = add(std::move(n));
      return std::nullopt;
    }
    return parse_comparison(out);
  }

  std::optional<SyntaxError> parse_comparison(int& out) {
    if (auto e = parse_additive(out)) return e;
    static constexpr std::array<std::pair<std::string_view, Op>, 6> kOps = {{
        {"==", Op::kEq},
        {"!=", Op::kNe},
        {"<", Op::kLt},
        {"<=", Op::kLe},
        {">", Op::kGt},
        {">=", Op::kGe},
    }};
    if (tok_.kind != Tok::kOp) return std::nullopt;
    for (const auto& [text, op] : kOps) {
      if (tok_.text != text) continue;
      if (auto e = advance()) return e;
      int rhs = -1;
      if (auto e = parse_additive(rhs)) return e;
      out = binary(op, out, rhs);
      if (tok_.kind == Tok::kOp && std::any_of(kOps.begin(), kOps.end(), [&](const auto& o) {
            return o.first == tok_.text;
          })) {
        return SyntaxError{tok_.column,
                           "comparisons do not chain; join them "
                           "with 'and' or use parentheses"};
      }
      break;
    }
    return std::nullopt;
  }

  std::optional<SyntaxError> parse_additive(int& out) {
    if (auto e = parse_multiplicative(out)) return e;
    while (tok_.kind == Tok::kOp && (tok_.text == "+" || tok_.text == "-")) {
      const Op op = tok_.text == "+" ? Op::kAdd : Op::kSub;
      if (auto e = advance()) return e;
      int rhs = -1;
      if (auto e = parse_multiplicative(rhs)) return e;
      out = binary(op, out, rhs);
    }
    return std::nullopt;
  }

  std::optional<SyntaxError> parse_multiplicative(int& out) {
    if (auto e = parse_unary(out)) return e;
    while (tok_.kind == Tok::kOp && (tok_.text == "*" || tok_.text == "/" || tok_.text == "%")) {
      const Op op = tok_.text == "*" ? Op::kMul : tok_.text == "/" ? Op::kDiv : Op::kMod;
      if (auto e = advance()) return e;
      int rhs = -1;
      if (auto e = parse_unary(rhs)) return e;
      out = binary(op, out, rhs);
    }
    return std::nullopt;
  }

  std::optional<SyntaxError> parse_unary(int& out) {
    DepthGuard guard(depth_);
    if (guard.too_deep()) return SyntaxError{tok_.column, "the expression nests too deeply"};
    if (tok_.kind == Tok::kOp && (tok_.text == "-" || tok_.text == "+")) {
      const bool negate = tok_.text == "-";
      if (auto e = advance()) return e;
      int operand = -1;
      if (auto e = parse_unary(operand)) return e;
      if (!negate) {
        out = operand;
        return std::nullopt;
      }
      Node n;
      n.op = Op::kNeg;
      n.args = {operand};
      out = add(std::move(n));
      return std::nullopt;
    }
    return parse_primary(out);
  }

  std::optional<SyntaxError> parse_primary(int& out) {
    const Token t = tok_;
    switch (t.kind) {
      case Tok::kNumber:
      case Tok::kString: {
        Node n;
        n.op = Op::kLiteral;
        n.literal = t.kind == Tok::kNumber ? t.number : Json(t.text);
        out = add(std::move(n));
        return advance();
      }
      case Tok::kField: {
        if (t.text.empty()) return SyntaxError{t.column, "an empty `quoted` field name"};
        Node n;
        n.op = Op::kField;
        out = add(std::move(n));
        refs_->push_back(FieldRef{t.text, t.column, out});
        return advance();
      }
      case Tok::kLParen: {
        if (auto e = advance()) return e;
        if (auto e = parse_or(out)) return e;
        if (tok_.kind != Tok::kRParen) {
          return SyntaxError{tok_.column, fmt::format("expected ')' to close the '(' at column {}, "
                                                      "found '{}'",
                                                      t.column, tok_.text)};
        }
        return advance();
      }
      case Tok::kIdent:
        break;
      case Tok::kEnd:
        return SyntaxError{t.column, "the expression ends where a value was expected"};
      default:
        return SyntaxError{t.column, fmt::format("expected a value, found '{}'", t.text)};
    }
    const std::string word = lower_ascii(t.text);
    if (word == "and" || word == "or" || word == "not") {
      return SyntaxError{t.column, fmt::format("expected a value, found '{}'", t.text)};
    }
    if (auto e = advance()) return e;
    if (tok_.kind == Tok::kLParen) {
      const FunctionInfo* fn = nullptr;
      for (const FunctionInfo& f : kFunctions) {
        if (f.name == word) fn = &f;
      }
      if (fn == nullptr) {
        std::vector<std::string> names;
        for (const FunctionInfo& f : kFunctions) names.emplace_back(f.name);
        return SyntaxError{
            t.column, fmt::format("unknown function '{}'{}", t.text, did_you_mean(word, names))};
      }
      Node n;
      n.op = fn->op;
      if (auto e = advance()) return e;
      if (tok_.kind != Tok::kRParen) {
        while (true) {
          int arg = -1;
          if (auto e = parse_or(arg)) return e;
          n.args.push_back(arg);
          if (tok_.kind == Tok::kComma) {
            if (auto e = advance()) return e;
            continue;
          }
          if (tok_.kind == Tok::kRParen) break;
          return SyntaxError{tok_.column,
                             fmt::format("expected ',' or ')' in the arguments of {}(), found '{}'",
                                         fn->name, tok_.text)};
        }
      }
      const int count = static_cast<int>(n.args.size());
      if (count < fn->min_args || (fn->max_args >= 0 && count > fn->max_args)) {
        const std::string wanted = fn->max_args < 0 ? fmt::format("at least {}", fn->min_args)
                                   : fn->min_args == fn->max_args
                                       ? fmt::format("{}", fn->min_args)
                                       : fmt::format("{} to {}", fn->min_args, fn->max_args);
        return SyntaxError{
            t.column, fmt::format("{}() takes {} argument(s), got {}", fn->name, wanted, count)};
      }
      out = add(std::move(n));
      return advance();
    }
    Node n;
    if (word == "true" || word == "false") {
      n.literal = Json(word == "true");
    } else if (word == "null") {
      n.literal = Json();
    } else {
      n.op = Op::kField;
      out = add(std::move(n));
      refs_->push_back(FieldRef{t.text, t.column, out});
      return std::nullopt;
    }
    out = add(std::move(n));
    return std::nullopt;
  }

  std::string_view src_;
  std::size_t pos_ = 0;
  Token tok_;
  Expr* expr_ = nullptr;
  std::vector<FieldRef>* refs_ = nullptr;
  static constexpr int kMaxDepth = 300;  // parser frames, a few per level
  int depth_ = 0;
  static constexpr int kMaxTreeDepth = 100;
};

// Numbers, and strings that read as numbers.
bool numeric(const Json& v, Json& out) {
  if (v.is_number()) {
    out = v;
    return true;
  }
  if (!v.is_string()) return false;
  const std::string_view s = trim_view(v.as_string());
  if (s.empty()) return false;
  const char* first = s.data();
  const char* last = first + s.size();
  if (*first == '+') ++first;
  std::int64_t i = 0;
  if (auto [end, ec] = std::from_chars(first, last, i); ec == std::errc() && end == last) {
    out = Json(i);
    return true;
  }
  double d = 0;
  if (auto [end, ec] = std::from_chars(first, last, d); ec == std::errc() && end == last) {
    out = Json(d);
    return true;
  }
  return false;
}

bool truthy(const Json& v) {
  switch (v.type()) {
    case Json::Type::kNull:
      return false;
    case Json::Type::kBool:
      return v.as_bool();
    case Json::Type::kInt:
      return v.as_int() != 0;
    case Json::Type::kDouble:
      return v.as_double() != 0;
    case Json::Type::kString:
      return !v.as_string().empty();
    default:
      return v.size() != 0;
  }
}

std::size_t utf8_length(std::string_view s) {
  std::size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

// Byte offset of code point `index` (clamped to the end).
std::size_t utf8_offset(std::string_view s, std::int64_t index) {
  std::size_t pos = 0;
  while (index > 0 && pos < s.size()) {
    ++pos;
    while (pos < s.size() && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80) ++pos;
    --index;
  }
  return pos;
}

class Evaluator {
 public:
  Evaluator(const Expr& expr, const Record& record, const std::vector<int>& slot_columns)
      : expr_(expr), record_(record), slot_columns_(slot_columns) {}

  bool run(Json& out) { return eval(expr_.root, out); }
  const std::string& error() const { return error_; }

 private:
  bool fail(std::string message) {
    error_ = std::move(message);
    return false;
  }

  bool arithmetic(Op op, const Json& l, const Json& r, Json& out) {
    if (l.is_null() || r.is_null()) {
      out = Json();
      return true;
    }
    if (op == Op::kAdd && !(l.is_number() && r.is_number())) {
      if (l.is_string() || r.is_string()) {
        out = Json(to_text(l) + to_text(r));
        return true;
      }
      return fail(fmt::format("cannot add {} and {}", quote_value(l), quote_value(r)));
    }
    Json a, b;
    if (!numeric(l, a)) return fail(fmt::format("'{}' is not a number", quote_value(l)));
    if (!numeric(r, b)) return fail(fmt::format("'{}' is not a number", quote_value(r)));
    if (a.is_int() && b.is_int()) {
      const std::int64_t x = a.as_int(), y = b.as_int();
      std::int64_t z = 0;
      switch (op) {
        case Op::kAdd:
          if (!__builtin_add_overflow(x, y, &z)) return out = Json(z), true;
          break;
        case Op::kSub:
          if (!__builtin_sub_overflow(x, y, &z)) return out = Json(z), true;
          break;
        case Op::kMul:
          if (!__builtin_mul_overflow(x, y, &z)) return out = Json(z), true;
          break;
        case Op::kDiv:
          if (y == 0) return fail("division by zero");
          if (x % y == 0 && !(x == INT64_MIN && y == -1)) return out = Json(x / y), true;
          break;
        case Op::kMod:
          if (y == 0) return fail("division by zero");
          if (y == -1) return out = Json(0), true;
          return out = Json(x % y), true;
        default:
          break;
      }
    }
    const double x = a.as_double(), y = b.as_double();
    switch (op) {
      case Op::kAdd:
        out = Json(x + y);
        return true;
      case Op::kSub:
        out = Json(x - y);
        return true;
      case Op::kMul:
        out = Json(x * y);
        return true;
      case Op::kDiv:
        if (y == 0) return fail("division by zero");
        out = Json(x / y);
        return true;
      case Op::kMod:
        if (y == 0) return fail("division by zero");
        out = Json(std::fmod(x, y));
        return true;
      default:
        return fail("internal: not an arithmetic operator");
    }
  }

  bool compare(Op op, const Json& l, const Json& r, Json& out) {
    if (l.is_null() || r.is_null()) {
      if (op == Op::kEq || op == Op::kNe) {
        out = Json((l.is_null() && r.is_null()) == (op == Op::kEq));
      } else {
        out = Json();
      }
      return true;
    }
    int order = 0;
    bool comparable = true;
    Json a, b;
    if ((l.is_number() || r.is_number()) && numeric(l, a) && numeric(r, b)) {
      if (a.is_int() && b.is_int()) {
        order = a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
      } else {
        const double x = a.as_double(), y = b.as_double();
        order = x < y ? -1 : x > y ? 1 : 0;
      }
    } else if (l.is_string() && r.is_string()) {
      const int c = l.as_string().compare(r.as_string());
      order = c < 0 ? -1 : c > 0 ? 1 : 0;
    } else if (l.is_bool() && r.is_bool()) {
      order = static_cast<int>(l.as_bool()) - static_cast<int>(r.as_bool());
    } else if (l.type() == r.type()) {
      order = l == r ? 0 : 1;
      comparable = op == Op::kEq || op == Op::kNe;
    } else {
      comparable = false;
    }
    if (!comparable) {
      if (op == Op::kEq || op == Op::kNe) {
        out = Json(op == Op::kNe);
        return true;
      }
      return fail(fmt::format("cannot order {} and {}", quote_value(l), quote_value(r)));
    }
    bool result = false;
    switch (op) {
      case Op::kEq:
        result = order == 0;
        break;
      case Op::kNe:
        result = order != 0;
        break;
      case Op::kLt:
        result = order < 0;
        break;
      case Op::kLe:
        result = order <= 0;
        break;
      case Op::kGt:
        result = order > 0;
        break;
      case Op::kGe:
        result = order >= 0;
        break;
      default:
        break;
    }
    out = Json(result);
    return true;
  }

  bool integer_arg(const Json& v, std::string_view what, std::int64_t& out) {
    Json n;
    if (!numeric(v, n) || !n.is_integral()) {
      return fail(fmt::format("{} must be a whole number, got '{}'", what, quote_value(v)));
    }
    out = n.is_int() ? n.as_int() : static_cast<std::int64_t>(n.as_double());
    return true;
  }

  bool eval(int index, Json& out) {
    const Node& node = expr_.nodes[static_cast<std::size_t>(index)];
    const std::vector<int>& args = node.args;
    switch (node.op) {
      case Op::kLiteral:
        out = node.literal;
        return true;
      case Op::kField:
        out = RecordBatch::value(record_, slot_columns_[static_cast<std::size_t>(node.slot)]);
        return true;
      case Op::kNeg: {
        Json v;
        if (!eval(args[0], v)) return false;
        if (v.is_null()) return out = Json(), true;
        Json n;
        if (!numeric(v, n)) return fail(fmt::format("'{}' is not a number", quote_value(v)));
        if (n.is_int() && n.as_int() != INT64_MIN) return out = Json(-n.as_int()), true;
        out = Json(-n.as_double());
        return true;
      }
      case Op::kNot: {
        Json v;
        if (!eval(args[0], v)) return false;
        out = Json(!truthy(v));
        return true;
      }
      case Op::kAnd:
      case Op::kOr: {
        Json v;
        if (!eval(args[0], v)) return false;
        const bool left = truthy(v);
        if (node.op == Op::kAnd ? !left : left) return out = Json(left), true;
        if (!eval(args[1], v)) return false;
        out = Json(truthy(v));
        return true;
      }
      case Op::kAdd:
      case Op::kSub:
      case Op::kMul:
      case Op::kDiv:
      case Op::kMod: {
        Json l, r;
        if (!eval(args[0], l) || !eval(args[1], r)) return false;
        return arithmetic(node.op, l, r, out);
      }
      case Op::kEq:
      case Op::kNe:
      case Op::kLt:
      case Op::kLe:
      case Op::kGt:
      case Op::kGe: {
        Json l, r;
        if (!eval(args[0], l) || !eval(args[1], r)) return false;
        return compare(node.op, l, r, out);
      }
      case Op::kIf: {
        Json c;
        if (!eval(args[0], c)) return false;
        return eval(truthy(c) ? args[1] : args[2], out);
      }
      case Op::kUpper:
      case Op::kLower:
      case Op::kTrim:
      case Op::kLen: {
        Json v;
        if (!eval(args[0], v)) return false;
        if (v.is_null()) return out = Json(), true;
        std::string s = to_text(v);
        if (node.op == Op::kLen) return out = Json(static_cast<std::int64_t>(utf8_length(s))), true;
        if (node.op == Op::kTrim) return out = Json(std::string(trim_view(s))), true;
        for (char& c : s) {
          if (node.op == Op::kUpper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
          if (node.op == Op::kLower && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        }
        out = Json(std::move(s));
        return true;
      }
      case Op::kSubstr: {
        Json v, start, length;
        if (!eval(args[0], v) || !eval(args[1], start)) return false;
        if (args.size() > 2 && !eval(args[2], length)) return false;
        if (v.is_null()) return out = Json(), true;
        const std::string s = to_text(v);
        std::int64_t from = 0, count = -1;
        if (!integer_arg(start, "substr()'s start", from)) return false;
        if (!length.is_null() && !integer_arg(length, "substr()'s length", count)) return false;
        const std::size_t begin = utf8_offset(s, std::max<std::int64_t>(from, 1) - 1);
        const std::size_t end =
            count < 0 ? s.size() : begin + utf8_offset(std::string_view(s).substr(begin), count);
        out = Json(s.substr(begin, end - begin));
        return true;
      }
      case Op::kConcat: {
        std::string s;
        for (int a : args) {
          Json v;
          if (!eval(a, v)) return false;
          s += to_text(v);
        }
        out = Json(std::move(s));
        return true;
      }
      case Op::kCoalesce:
        for (int a : args) {
          if (!eval(a, out)) return false;
          if (!out.is_null()) return true;
        }
        return true;
      case Op::kRound: {
        Json v, digits;
        if (!eval(args[0], v)) return false;
        if (args.size() > 1 && !eval(args[1], digits)) return false;
        if (v.is_null()) return out = Json(), true;
        Json n;
        if (!numeric(v, n)) return fail(fmt::format("'{}' is not a number", quote_value(v)));
        std::int64_t places = 0;
        if (!digits.is_null() && !integer_arg(digits, "round()'s digits", places)) return false;
        if (n.is_int() && places >= 0) return out = n, true;
        if (places <= 0) {
          const double scale = std::pow(10.0, static_cast<double>(-places));
          const double r = std::round(n.as_double() / scale) * scale;
          if (std::fabs(r) < 9.2e18) return out = Json(static_cast<std::int64_t>(r)), true;
          return out = Json(r), true;
        }
        const double scale =
            std::pow(10.0, static_cast<double>(std::min<std::int64_t>(places, 15)));
        out = Json(std::round(n.as_double() * scale) / scale);
        return true;
      }
      case Op::kReplace: {
        Json v, from, to;
        if (!eval(args[0], v) || !eval(args[1], from) || !eval(args[2], to)) return false;
        if (v.is_null()) return out = Json(), true;
        std::string s = to_text(v);
        const std::string needle = to_text(from);
        const std::string with = to_text(to);
        if (!needle.empty()) {
          std::string result;
          std::size_t pos = 0;
          while (true) {
            const std::size_t hit = s.find(needle, pos);
            if (hit == std::string::npos) break;
            result.append(s, pos, hit - pos);
            result += with;
            pos = hit + needle.size();
          }
          result.append(s, pos, std::string::npos);
          s = std::move(result);
        }
        out = Json(std::move(s));
        return true;
      }
    }
    return fail("internal: unknown expression node");
  }

  const Expr& expr_;
  const Record& record_;
  const std::vector<int>& slot_columns_;
  std::string error_;
};

// ------------------------------------------------------------------------------------------
// Lookups and targets

struct Lookup {
  enum class Miss { kError, kDefault, kKeep };
  std::string name;
  std::unordered_map<std::string, Json> values;
  Miss miss = Miss::kError;
  Json default_value;
};

enum class SourceKind { kColumn, kExpr, kNone };

struct TargetField {
  std::string name;
  SourceKind kind = SourceKind::kNone;
  int slot = -1;
  std::string pointer;  // into the column's value; empty: the value itself
  Expr expr;
  std::optional<FieldType> type;
  std::vector<DateFormat> formats;
  TimeZone zone = TimeZone::utc();
  std::optional<Json> default_value;  // already converted to `type`
  int lookup = -1;
  bool required = false;
};

bool is_missing(const TargetField& t, const Json& v) {
  if (v.is_null()) return true;
  if (!v.is_string() || !t.type) return false;
  if (*t.type == FieldType::kString || *t.type == FieldType::kJson) return false;
  return trim_view(v.as_string()).empty();
}

bool parse_integer(std::string_view s, std::int64_t& out) {
  s = trim_view(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  const char* last = s.data() + s.size();
  if (auto [end, ec] = std::from_chars(s.data(), last, out); ec == std::errc() && end == last) {
    return !s.empty();
  }
  double d = 0;
  if (auto [end, ec] = std::from_chars(s.data(), last, d);
      ec == std::errc() && end == last && std::trunc(d) == d && std::fabs(d) < 9.2e18) {
    out = static_cast<std::int64_t>(d);
    return true;
  }
  return false;
}

// Converts `v` (not missing) to the target's type; false with `reason` when it cannot.
bool convert(const TargetField& t, Json& v, std::string& reason) {
  if (!t.type) return true;
  switch (*t.type) {
    case FieldType::kString:
      if (!v.is_string()) v = Json(to_text(v));
      return true;
    case FieldType::kJson:
      return true;
    case FieldType::kInteger: {
      if (v.is_int()) return true;
      std::int64_t i = 0;
      if (v.is_double() && std::trunc(v.as_double()) == v.as_double() &&
          std::fabs(v.as_double()) < 9.2e18) {
        v = Json(static_cast<std::int64_t>(v.as_double()));
        return true;
      }
      if (v.is_string() && parse_integer(v.as_string(), i)) {
        v = Json(i);
        return true;
      }
      reason = "not an integer";
      return false;
    }
    case FieldType::kNumber: {
      if (v.is_number()) return true;
      Json n;
      if (v.is_string() && numeric(v, n)) {
        v = std::move(n);
        return true;
      }
      reason = "not a number";
      return false;
    }
    case FieldType::kBoolean: {
      if (v.is_bool()) return true;
      if (v.is_int() && (v.as_int() == 0 || v.as_int() == 1)) {
        v = Json(v.as_int() == 1);
        return true;
      }
      if (v.is_string()) {
        const std::string s = lower_ascii(trim_view(v.as_string()));
        if (s == "true" || s == "t" || s == "yes" || s == "y" || s == "1")
          return v = Json(true), true;
        if (s == "false" || s == "f" || s == "no" || s == "n" || s == "0") {
          v = Json(false);
          return true;
        }
      }
      reason = "not a boolean (true/false, yes/no, 1/0)";
      return false;
    }
    case FieldType::kDate:
    case FieldType::kTimestamp: {
      if (!v.is_string() && !v.is_int()) {
        reason = *t.type == FieldType::kDate ? "not a date" : "not a timestamp";
        return false;
      }
      const std::string text = v.is_int() ? to_text(v) : std::string(trim_view(v.as_string()));
      for (const DateFormat& format : t.formats) {
        if (format.rfc3339) {
          Result<SystemTime> parsed = parse_rfc3339(text);
          if (!parsed.ok()) continue;
          if (*t.type == FieldType::kTimestamp) {
            v = Json(format_rfc3339(*parsed));
          } else {
            const CivilTime c = civil_from_seconds(
                std::chrono::floor<std::chrono::seconds>(parsed->time_since_epoch()).count());
            v = Json(fmt::format("{:04d}-{:02d}-{:02d}", c.year, c.month, c.day));
          }
          return true;
        }
        ParsedTime p;
        if (!parse_time(format, text, p)) continue;
        if (*t.type == FieldType::kDate) {
          v = Json(fmt::format("{:04d}-{:02d}-{:02d}", p.civil.year, p.civil.month, p.civil.day));
          return true;
        }
        std::int64_t seconds = 0;
        if (p.unix_seconds) {
          seconds = *p.unix_seconds;
        } else if (p.offset_seconds) {
          seconds = seconds_from_civil(p.civil) - *p.offset_seconds;
        } else {
          seconds = t.zone.from_local(seconds_from_civil(p.civil)).utc_seconds;
        }
        v = Json(format_rfc3339(from_unix_micros(seconds * 1'000'000 + p.micros)));
        return true;
      }
      std::string formats;
      for (const DateFormat& f : t.formats) {
        if (!formats.empty()) formats += "', '";
        formats += f.text;
      }
      reason = fmt::format("matches none of the formats '{}'", formats);
      return false;
    }
  }
  return true;
}

// convert() without the intermediate copy: writes the converted `in` to `out`. The hot path of a
// rename-and-convert mapping.
bool convert_from(const TargetField& t, const Json& in, Json& out, std::string& reason) {
  if (!t.type || *t.type == FieldType::kJson) {
    out = in;
    return true;
  }
  switch (*t.type) {
    case FieldType::kString:
      if (in.is_string()) {
        out = in;
      } else {
        out = Json(to_text(in));
      }
      return true;
    case FieldType::kInteger:
      if (in.is_int()) {
        out = in;
        return true;
      }
      if (in.is_string()) {
        std::int64_t i = 0;
        if (parse_integer(in.as_string(), i)) {
          out = Json(i);
          return true;
        }
      }
      break;
    case FieldType::kNumber:
      if (in.is_number()) {
        out = in;
        return true;
      }
      if (in.is_string()) {
        const std::string_view text = trim_view(in.as_string());
        const char* first = text.data() + (!text.empty() && text.front() == '+' ? 1 : 0);
        const char* last = text.data() + text.size();
        std::int64_t i = 0;
        if (auto [end, ec] = std::from_chars(first, last, i);
            ec == std::errc() && end == last && first != last) {
          out = Json(i);
          return true;
        }
        double d = 0;
        if (auto [end, ec] = std::from_chars(first, last, d);
            ec == std::errc() && end == last && first != last) {
          out = Json(d);
          return true;
        }
        reason = "not a number";
        return false;
      }
      break;
    default:
      break;
  }
  out = in;
  return convert(t, out, reason);
}

const Json& cell(const Record& record, int column) {
  static const Json kNull;
  return column >= 0 && static_cast<std::size_t>(column) < record.values.size()
             ? record.values[static_cast<std::size_t>(column)]
             : kNull;
}

bool type_can_convert(FieldType from, FieldType to) {
  switch (to) {
    case FieldType::kString:
    case FieldType::kJson:
      return true;
    case FieldType::kInteger:
    case FieldType::kNumber:
      return from == FieldType::kString || from == FieldType::kInteger ||
             from == FieldType::kNumber || from == FieldType::kJson;
    case FieldType::kBoolean:
      return from == FieldType::kString || from == FieldType::kInteger ||
             from == FieldType::kBoolean || from == FieldType::kJson;
    case FieldType::kDate:
    case FieldType::kTimestamp:
      return from != FieldType::kBoolean && from != FieldType::kNumber;
  }
  return true;
}

}  // namespace

struct FieldMapping::Impl {
  std::string source;
  std::string target;
  std::vector<std::string> slots;  // the source columns the mapping reads
  std::vector<Lookup> lookups;
  std::vector<TargetField> targets;

  template <bool kMove>
  MappedBatch run(std::conditional_t<kMove, RecordBatch&, const RecordBatch&> in) const;
};

std::string closest_name(std::string_view name, const std::vector<std::string>& candidates) {
  const std::string wanted = lower_ascii(name);
  std::string best;
  std::size_t best_distance = SIZE_MAX;
  for (const std::string& c : candidates) {
    if (c == name) return {};  // the name exists: nothing to suggest
    const std::string other = lower_ascii(c);
    std::size_t d = detail::edit_distance(wanted, other);
    const std::size_t limit = std::max<std::size_t>(2, wanted.size() / 3);
    // A long shared prefix ("classes" for "class_codes") is a likely slip too.
    std::size_t prefix = 0;
    while (prefix < wanted.size() && prefix < other.size() && wanted[prefix] == other[prefix]) {
      ++prefix;
    }
    const std::size_t shorter = std::min(wanted.size(), other.size());
    const bool close = d <= limit || (prefix >= 4 && prefix * 3 >= shorter * 2);
    if (close && d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  return best;
}

namespace {

// Builds an Impl, collecting every problem instead of stopping at the first.
class MappingCompiler {
 public:
  MappingCompiler(const Json& mapping, const std::vector<StreamSpec>& discovered)
      : mapping_(mapping), discovered_(discovered) {}

  std::shared_ptr<FieldMapping::Impl> compile() {
    auto impl = std::make_shared<FieldMapping::Impl>();
    impl_ = impl.get();
    if (!mapping_.is_object()) {
      problem("", "a field mapping must be a JSON object with a 'fields' member");
      return nullptr;
    }
    for (const auto& [key, value] : mapping_.as_object()) {
      if (key != "source" && key != "target" && key != "lookups" && key != "fields") {
        problem("", fmt::format("unknown mapping key '{}'{}", key,
                                did_you_mean(key, {"source", "target", "lookups", "fields"})));
      }
    }
    select_stream();
    impl->target = mapping_.get_string("target", impl->source);
    compile_lookups();
    const Json* fields = mapping_.find("fields");
    if (fields == nullptr || (!fields->is_object() && !fields->is_array()) || fields->size() == 0) {
      problem("",
              "the mapping has no 'fields' (an object of target field -> "
              "how to fill it)");
    } else if (fields->is_object()) {
      for (const auto& [name, spec] : fields->as_object()) compile_target(name, spec);
    } else {
      for (const Json& spec : fields->as_array()) {
        const std::string name = spec.get_string("name", spec.get_string("target"));
        if (name.empty()) {
          problem("", "a field in the 'fields' array has no 'name'");
          continue;
        }
        compile_target(name, spec);
      }
    }
    return problems_.empty() ? impl : nullptr;
  }

  std::vector<MappingProblem> problems() && { return std::move(problems_); }

 private:
  void problem(std::string target, std::string message) {
    problems_.push_back(MappingProblem{std::move(target), std::move(message)});
  }

  void select_stream() {
    const Json* source = mapping_.find("source");
    std::vector<std::string> names;
    for (const StreamSpec& s : discovered_) names.push_back(s.name);
    if (source != nullptr && !source->is_string()) {
      problem("", "'source' must be the name of a stream");
      return;
    }
    if (source != nullptr) {
      impl_->source = source->as_string();
      for (const StreamSpec& s : discovered_) {
        if (s.name == impl_->source) stream_ = &s;
      }
      if (stream_ == nullptr && !discovered_.empty()) {
        problem("", fmt::format("the mapping reads stream '{}', which the source "
                                "does not offer{} "
                                "(streams: {})",
                                impl_->source, did_you_mean(impl_->source, names),
                                fmt::format("{}", fmt::join(names, ", "))));
      }
      return;
    }
    if (discovered_.size() == 1) {
      stream_ = &discovered_.front();
      impl_->source = stream_->name;
    } else if (discovered_.size() > 1) {
      problem("", fmt::format("the source offers {} streams ({}); name the one "
                              "to map in 'source'",
                              discovered_.size(), fmt::format("{}", fmt::join(names, ", "))));
    }
  }

  void compile_lookups() {
    const Json* lookups = mapping_.find("lookups");
    if (lookups == nullptr) return;
    if (!lookups->is_object()) {
      problem("", "'lookups' must be an object of named tables");
      return;
    }
    for (const auto& [name, spec] : lookups->as_object()) {
      Lookup lookup;
      lookup.name = name;
      if (!spec.is_object()) {
        problem("", fmt::format("lookup table '{}' must be an object of code -> value", name));
        continue;
      }
      const Json* values = spec.find("values");
      const Json* table = values != nullptr && values->is_object() ? values : &spec;
      for (const auto& [code, value] : table->as_object()) lookup.values.emplace(code, value);
      if (table == values) {
        if (const Json* d = spec.find("default")) {
          lookup.miss = Lookup::Miss::kDefault;
          lookup.default_value = *d;
        }
        const std::string on_miss = spec.get_string("on_miss");
        if (on_miss == "keep") {
          lookup.miss = Lookup::Miss::kKeep;
        } else if (on_miss == "error") {
          lookup.miss = Lookup::Miss::kError;
        } else if (on_miss == "default" && !spec.contains("default")) {
          problem("", fmt::format("lookup table '{}' says on_miss 'default' "
                                  "but has no 'default'",
                                  name));
        } else if (!on_miss.empty() && on_miss != "default") {
          problem("", fmt::format("lookup table '{}': on_miss must be error, default or keep, "
                                  "got '{}'",
                                  name, on_miss));
        }
      }
      impl_->lookups.push_back(std::move(lookup));
    }
  }

  int slot_for(const std::string& column) {
    auto& slots = impl_->slots;
    auto it = std::find(slots.begin(), slots.end(), column);
    if (it != slots.end()) return static_cast<int>(it - slots.begin());
    slots.push_back(column);
    return static_cast<int>(slots.size()) - 1;
  }

  std::vector<std::string> stream_fields() const {
    std::vector<std::string> names;
    if (stream_ != nullptr) {
      for (const FieldSpec& f : stream_->fields) names.push_back(f.name);
    }
    return names;
  }

  // Checks a source column exists; returns its spec when the schema is known.
  const FieldSpec* check_column(const std::string& target, const std::string& column,
                                std::string_view how) {
    if (stream_ == nullptr) return nullptr;
    const FieldSpec* spec = stream_->field(column);
    if (spec == nullptr) {
      problem(target,
              fmt::format("target '{}' {} '{}', which stream '{}' does not have{}", target, how,
                          column, stream_->name, did_you_mean(column, stream_fields())));
    }
    return spec;
  }

  void compile_target(const std::string& name, const Json& spec) {
    TargetField t;
    t.name = name;
    if (!spec.is_object()) {
      problem(name, fmt::format("target '{}' must be an object (with 'from', "
                                "'expr' or 'default')",
                                name));
      return;
    }
    static const std::vector<std::string> kKeys = {"name",    "target",  "from",    "expr",
                                                   "type",    "formats", "format",  "time_zone",
                                                   "default", "lookup",  "required"};
    for (const auto& [key, value] : spec.as_object()) {
      if (std::find(kKeys.begin(), kKeys.end(), key) == kKeys.end()) {
        problem(name, fmt::format("target '{}' has an unknown key '{}'{}", name, key,
                                  did_you_mean(key, kKeys)));
      }
    }
    const Json* from = spec.find("from");
    const Json* expr = spec.find("expr");
    std::optional<FieldType> source_type;
    if (from != nullptr && expr != nullptr) {
      problem(name, fmt::format("target '{}' has both 'from' and 'expr'; keep one", name));
    } else if (from != nullptr) {
      if (!from->is_string() || from->as_string().empty()) {
        problem(name,
                fmt::format("target '{}': 'from' must be a field name or a JSON pointer", name));
      } else {
        std::string column = from->as_string();
        if (column.front() == '/') {
          // A pointer: the first token names the column, the rest points into its value.
          const std::size_t slash = column.find('/', 1);
          t.pointer = slash == std::string::npos ? std::string() : column.substr(slash);
          std::string token =
              column.substr(1, slash == std::string::npos ? std::string::npos : slash - 1);
          std::string unescaped;
          for (std::size_t i = 0; i < token.size(); ++i) {
            if (token[i] == '~' && i + 1 < token.size() &&
                (token[i + 1] == '0' || token[i + 1] == '1')) {
              unescaped.push_back(token[i + 1] == '0' ? '~' : '/');
              ++i;
            } else {
              unescaped.push_back(token[i]);
            }
          }
          column = std::move(unescaped);
        }
        t.kind = SourceKind::kColumn;
        t.slot = slot_for(column);
        if (const FieldSpec* f = check_column(name, column, "maps from")) {
          if (!t.pointer.empty() && f->type != FieldType::kJson) {
            problem(name, fmt::format("target '{}' points into '{}' ({}), but only json fields "
                                      "have members",
                                      name, column, field_type_name(f->type)));
          } else if (t.pointer.empty()) {
            source_type = f->type;
          }
        }
      }
    } else if (expr != nullptr) {
      t.kind = SourceKind::kExpr;
      compile_expr(name, *expr, t);
    }

    if (const Json* type = spec.find("type")) {
      Result<FieldType> parsed =
          type->is_string() ? parse_field_type(type->as_string())
                            : Result<FieldType>(invalid_argument("'type' must be a string"));
      if (!parsed.ok()) {
        problem(name, fmt::format("target '{}': {}", name, parsed.status().message()));
      } else {
        t.type = *parsed;
      }
    }
    compile_formats(name, spec, t);

    if (const Json* lookup = spec.find("lookup")) {
      std::vector<std::string> names;
      for (const Lookup& l : impl_->lookups) names.push_back(l.name);
      const std::string wanted = lookup->is_string() ? lookup->as_string() : lookup->dump();
      auto it = std::find(names.begin(), names.end(), wanted);
      if (it == names.end()) {
        problem(name, fmt::format("target '{}' uses lookup table '{}', which "
                                  "the mapping does not "
                                  "define{}",
                                  name, wanted, did_you_mean(wanted, names)));
      } else {
        t.lookup = static_cast<int>(it - names.begin());
        // Every value the table can give must convert to the target's type.
        const Lookup& table = impl_->lookups[static_cast<std::size_t>(t.lookup)];
        auto check_value = [&](const std::string& code, const Json& value) {
          Json v = value;
          std::string reason;
          if (!is_missing(t, v) && !convert(t, v, reason)) {
            problem(name, fmt::format("target '{}': lookup table '{}' maps '{}' to '{}', which "
                                      "cannot be a {} ({})",
                                      name, table.name, code, quote_value(value),
                                      field_type_name(*t.type), reason));
          }
        };
        for (const auto& [code, value] : table.values) check_value(code, value);
        if (table.miss == Lookup::Miss::kDefault) check_value("(default)", table.default_value);
      }
    }

    if (source_type && t.type && t.lookup < 0 && !type_can_convert(*source_type, *t.type)) {
      problem(name, fmt::format("target '{}' maps from '{}' ({}), which cannot "
                                "be converted to {}",
                                name, from->as_string(), field_type_name(*source_type),
                                field_type_name(*t.type)));
    }

    if (const Json* d = spec.find("default")) {
      Json v = *d;
      std::string reason;
      if (!is_missing(t, v) && !convert(t, v, reason)) {
        problem(name, fmt::format("target '{}': the default '{}' cannot be a {} ({})", name,
                                  quote_value(*d), field_type_name(*t.type), reason));
      }
      t.default_value = is_missing(t, v) ? Json() : std::move(v);
    }
    if (const Json* required = spec.find("required")) {
      if (!required->is_bool()) {
        problem(name, fmt::format("target '{}': 'required' must be true or false", name));
      } else {
        t.required = required->as_bool();
      }
    }
    if (from == nullptr && expr == nullptr && !t.default_value) {
      problem(name, fmt::format("target '{}' has no 'from', 'expr' or 'default'", name));
    }
    impl_->targets.push_back(std::move(t));
  }

  void compile_formats(const std::string& name, const Json& spec, TargetField& t) {
    const Json* formats = spec.find("formats");
    if (formats == nullptr) formats = spec.find("format");
    const Json* zone = spec.find("time_zone");
    const bool temporal =
        t.type && (*t.type == FieldType::kDate || *t.type == FieldType::kTimestamp);
    if ((formats != nullptr || zone != nullptr) && !temporal) {
      problem(name, fmt::format("target '{}': 'formats' and 'time_zone' apply only to the types "
                                "date and timestamp",
                                name));
      return;
    }
    if (!temporal) return;
    std::vector<std::string> texts;
    if (formats == nullptr) {
      texts.push_back(*t.type == FieldType::kDate ? "%Y-%m-%d" : "rfc3339");
    } else if (formats->is_string()) {
      texts.push_back(formats->as_string());
    } else if (formats->is_array()) {
      for (const Json& f : formats->as_array()) {
        if (f.is_string()) {
          texts.push_back(f.as_string());
        } else {
          problem(name, fmt::format("target '{}': each format must be a string", name));
        }
      }
    } else {
      problem(name, fmt::format("target '{}': 'formats' must be a string or a list", name));
    }
    for (const std::string& text : texts) {
      Result<DateFormat> format = compile_format(text);
      if (!format.ok()) {
        problem(name, fmt::format("target '{}': {}", name, format.status().message()));
      } else {
        t.formats.push_back(std::move(*format));
      }
    }
    if (zone != nullptr) {
      Result<TimeZone> tz = zone->is_string()
                                ? TimeZone::load(zone->as_string())
                                : Result<TimeZone>(invalid_argument("'time_zone' must be a name"));
      if (!tz.ok()) {
        problem(name, fmt::format("target '{}': {}", name, tz.status().message()));
      } else {
        t.zone = std::move(*tz);
      }
    }
  }

  void compile_expr(const std::string& name, const Json& text, TargetField& t) {
    if (!text.is_string()) {
      problem(name, fmt::format("target '{}': 'expr' must be a string", name));
      return;
    }
    std::vector<FieldRef> refs;
    ExprParser parser(text.as_string());
    if (std::optional<SyntaxError> error = parser.parse(t.expr, refs)) {
      problem(name, fmt::format("target '{}': expression column {}: {}", name, error->column,
                                error->message));
      return;
    }
    for (const FieldRef& ref : refs) {
      t.expr.nodes[static_cast<std::size_t>(ref.node)].slot = slot_for(ref.name);
      if (stream_ != nullptr && stream_->field(ref.name) == nullptr) {
        problem(name, fmt::format("target '{}': expression column {}: stream '{}' has no field "
                                  "'{}'{}",
                                  name, ref.column, stream_->name, ref.name,
                                  did_you_mean(ref.name, stream_fields())));
      }
    }
  }

  const Json& mapping_;
  const std::vector<StreamSpec>& discovered_;
  const StreamSpec* stream_ = nullptr;
  FieldMapping::Impl* impl_ = nullptr;
  std::vector<MappingProblem> problems_;
};

}  // namespace

std::vector<MappingProblem> FieldMapping::check(const Json& mapping,
                                                const std::vector<StreamSpec>& discovered) {
  MappingCompiler compiler(mapping, discovered);
  compiler.compile();
  return std::move(compiler).problems();
}

Result<FieldMapping> FieldMapping::compile(const Json& mapping,
                                           const std::vector<StreamSpec>& discovered) {
  MappingCompiler compiler(mapping, discovered);
  std::shared_ptr<Impl> impl = compiler.compile();
  if (impl == nullptr) {
    std::vector<MappingProblem> problems = std::move(compiler).problems();
    std::string message = fmt::format("the field mapping has {} problem(s):", problems.size());
    for (const MappingProblem& p : problems) {
      message += "\n  - ";
      message += p.message;
    }
    return invalid_argument(std::move(message));
  }
  return FieldMapping(std::move(impl));
}

template <bool kMove>
MappedBatch FieldMapping::Impl::run(
    std::conditional_t<kMove, RecordBatch&, const RecordBatch&> in) const {
  MappedBatch result;
  result.batch.stream = target.empty() ? in.stream : target;
  result.batch.columns.reserve(targets.size());
  for (const TargetField& t : targets) result.batch.columns.push_back(t.name);
  result.batch.records.reserve(in.records.size());

  // Column indexes are resolved once for the whole batch.
  std::vector<int> slot_columns(slots.size());
  for (std::size_t s = 0; s < slots.size(); ++s) slot_columns[s] = in.column_index(slots[s]);
  // A value may be moved out only when a single plain `from` reads its column.
  std::vector<char> movable(targets.size(), 0);
  if constexpr (kMove) {
    std::vector<int> uses(slots.size(), 0);
    for (const TargetField& t : targets) {
      if (t.kind == SourceKind::kColumn) ++uses[static_cast<std::size_t>(t.slot)];
      for (const Node& n : t.expr.nodes) {
        if (n.op == Op::kField) uses[static_cast<std::size_t>(n.slot)] += 2;
      }
    }
    for (std::size_t i = 0; i < targets.size(); ++i) {
      const TargetField& t = targets[i];
      // Only where the value is kept as it is: a conversion builds a new value anyway.
      const bool kept = !t.type || *t.type == FieldType::kString || *t.type == FieldType::kJson;
      movable[i] = t.kind == SourceKind::kColumn && t.pointer.empty() && t.lookup < 0 && kept &&
                   uses[static_cast<std::size_t>(t.slot)] == 1;
    }
  }

  const std::size_t n_targets = targets.size();
  std::string reason;
  for (std::size_t r = 0; r < in.records.size(); ++r) {
    auto& record = in.records[r];
    const std::int64_t position =
        record.position != 0 ? record.position : static_cast<std::int64_t>(r) + 1;
    Record out;
    out.position = record.position;
    out.values.resize(n_targets);
    bool row_ok = true;
    for (std::size_t i = 0; i < n_targets; ++i) {
      const TargetField& t = targets[i];
      Json& v = out.values[i];
      switch (t.kind) {
        case SourceKind::kColumn: {
          const int column = slot_columns[static_cast<std::size_t>(t.slot)];
          if constexpr (kMove) {
            if (movable[i] && column >= 0 &&
                static_cast<std::size_t>(column) < record.values.size()) {
              v = std::move(record.values[static_cast<std::size_t>(column)]);
              break;
            }
          }
          const Json& value = cell(record, column);
          if (t.pointer.empty() && t.lookup < 0) {
            // Converted straight from the source value, without a copy in between.
            if (is_missing(t, value)) {
              if (t.default_value) v = *t.default_value;
            } else if (!convert_from(t, value, v, reason)) {
              const std::string shown = quote_value(value);
              result.errors.push_back(RowError{
                  position, t.name, shown,
                  fmt::format("'{}' cannot be a {}: {}", shown, field_type_name(*t.type), reason)});
              row_ok = false;
              continue;
            }
            if (t.required && v.is_null()) {
              result.errors.push_back(RowError{position, t.name, "", "required field is missing"});
              row_ok = false;
            }
            continue;
          }
          if (t.pointer.empty()) {
            v = value;
          } else if (const Json* inner = value.at_pointer(t.pointer)) {
            v = *inner;
          }
          break;
        }
        case SourceKind::kExpr: {
          Evaluator evaluator(t.expr, record, slot_columns);
          if (!evaluator.run(v)) {
            result.errors.push_back(
                RowError{position, t.name, "", "expression: " + evaluator.error()});
            row_ok = false;
            continue;
          }
          break;
        }
        case SourceKind::kNone:
          break;
      }
      if (is_missing(t, v)) {
        v = t.default_value ? *t.default_value : Json();
      } else {
        if (t.lookup >= 0) {
          const Lookup& table = lookups[static_cast<std::size_t>(t.lookup)];
          auto hit = table.values.find(to_text(v));
          if (hit != table.values.end()) {
            v = hit->second;
          } else if (table.miss == Lookup::Miss::kDefault) {
            v = table.default_value;
          } else if (table.miss == Lookup::Miss::kError) {
            result.errors.push_back(RowError{
                position, t.name, quote_value(v),
                fmt::format("'{}' is not in lookup table '{}'", quote_value(v), table.name)});
            row_ok = false;
            continue;
          }
        }
        if (!v.is_null() && !convert(t, v, reason)) {
          const std::string shown = quote_value(v);
          result.errors.push_back(RowError{
              position, t.name, shown,
              fmt::format("'{}' cannot be a {}: {}", shown, field_type_name(*t.type), reason)});
          row_ok = false;
          continue;
        }
      }
      if (t.required && v.is_null()) {
        result.errors.push_back(RowError{position, t.name, "", "required field is missing"});
        row_ok = false;
      }
    }
    if (row_ok) result.batch.records.push_back(std::move(out));
  }
  return result;
}

MappedBatch FieldMapping::apply(const RecordBatch& in) const {
  return impl_->run<false>(in);
}

MappedBatch FieldMapping::apply(RecordBatch&& in) const {
  return impl_->run<true>(in);
}

const std::string& FieldMapping::source_stream() const {
  return impl_->source;
}

const std::string& FieldMapping::target_stream() const {
  return impl_->target;
}

StreamSpec FieldMapping::target_spec() const {
  StreamSpec spec;
  spec.name = impl_->target;
  for (const TargetField& t : impl_->targets) {
    spec.fields.push_back(FieldSpec{t.name, t.type.value_or(FieldType::kJson), !t.required});
  }
  return spec;
}

}  // namespace civicbus::connect
