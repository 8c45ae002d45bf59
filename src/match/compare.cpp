#include "civicbus/match/compare.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

namespace civicbus::match {
namespace {

// Values of up to this many code points are compared in stack buffers; 64 also lets Jaro keep
// its matched flags, and Myers' algorithm its pattern, in one machine word.
constexpr std::size_t kShort = 64;

// N elements on the stack, moved to the heap for longer values: the usual short value costs no
// allocation while a long one still compares. Elements are left uninitialised.
template <typename T, std::size_t N>
class SmallBuffer {
 public:
  SmallBuffer() = default;
  SmallBuffer(const SmallBuffer&) = delete;
  SmallBuffer& operator=(const SmallBuffer&) = delete;

  T* resize(std::size_t n) {
    size_ = n;
    if (n <= N) {
      data_ = stack_;
    } else {
      heap_.resize(n);
      data_ = heap_.data();
    }
    return data_;
  }
  // Keeps the first n elements (n <= size()).
  void shrink(std::size_t n) { size_ = n; }
  void push_back(const T& value) {
    if (data_ == stack_ && size_ < N) {
      stack_[size_++] = value;
      return;
    }
    if (data_ == stack_) {
      heap_.assign(stack_, stack_ + size_);
    } else {
      heap_.resize(size_);
    }
    heap_.push_back(value);
    data_ = heap_.data();
    ++size_;
  }

  T* data() { return data_; }
  std::size_t size() const { return size_; }
  T& operator[](std::size_t i) { return data_[i]; }
  const T& operator[](std::size_t i) const { return data_[i]; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  std::span<const T> view() const { return {data_, size_}; }

 private:
  T stack_[N];
  std::vector<T> heap_;
  T* data_ = stack_;
  std::size_t size_ = 0;
};

using Bytes = std::span<const unsigned char>;

struct Decoded {
  char32_t code_point;
  std::size_t length;
};

// Decodes the code point at s[i]. A byte that does not start valid UTF-8 (overlong, surrogate,
// truncated) stands for itself as Latin-1, so that any input compares and a Latin-1 'é' still
// folds to E.
Decoded decode_one(std::string_view s, std::size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  if (lead < 0x80) return {lead, 1};
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
  } else {
    return {lead, 1};
  }
  if (i + length > s.size()) return {lead, 1};
  for (std::size_t k = 1; k < length; ++k) {
    const auto next = static_cast<unsigned char>(s[i + k]);
    if ((next & 0xC0) != 0x80) return {lead, 1};
    cp = (cp << 6) | (next & 0x3F);
  }
  if (cp < smallest || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {lead, 1};
  return {cp, length};
}

bool is_ascii(std::string_view s) {
  unsigned char any = 0;
  for (char c : s) any |= static_cast<unsigned char>(c);
  return any < 0x80;
}

Bytes bytes_of(std::string_view s) {
  return {reinterpret_cast<const unsigned char*>(s.data()), s.size()};
}

void decode(std::string_view s, SmallBuffer<char32_t, kShort>& out) {
  char32_t* p = out.resize(s.size());  // never more code points than bytes
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size();) {
    const Decoded d = decode_one(s, i);
    p[n++] = d.code_point;
    i += d.length;
  }
  out.shrink(n);
}

// Calls f with the two values as spans of one character type: the bytes themselves when both
// are ASCII (the fast path), else their code points. Every comparator is a template over that
// type, so both paths run the same algorithm and agree on ASCII input.
template <typename F>
decltype(auto) with_code_points(std::string_view a, std::string_view b, F&& f) {
  if (is_ascii(a) && is_ascii(b)) return f(bytes_of(a), bytes_of(b));
  SmallBuffer<char32_t, kShort> pa;
  SmallBuffer<char32_t, kShort> pb;
  decode(a, pa);
  decode(b, pb);
  return f(pa.view(), pb.view());
}

template <typename C>
constexpr bool kIsByte = std::is_same_v<C, unsigned char>;

constexpr std::uint64_t low_bits(std::size_t n) {
  return n >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << n) - 1;
}

// ---------------------------------------------------------------------------------------------
// Jaro

struct JaroCounts {
  std::size_t matches = 0;
  std::size_t half_transpositions = 0;  // matched characters out of order
};

// Characters match when at most this far apart: half the longer length, less one.
std::size_t jaro_reach(std::size_t na, std::size_t nb) {
  const std::size_t window = std::max(na, nb) / 2;
  return window > 0 ? window - 1 : 0;
}

// Both values ASCII and at most 64 bytes: `where[c]` has a bit for each position of c in b, so
// finding the first unmatched equal character in the window is two ANDs and a lowest-bit
// isolation, and the matched flags are two words.
JaroCounts jaro_counts_short(Bytes a, Bytes b) {
  std::uint64_t where[256];  // only the entries of characters in a or b are initialised
  for (unsigned char c : a) where[c] = 0;
  for (unsigned char c : b) where[c] = 0;
  for (std::size_t j = 0; j < b.size(); ++j) where[b[j]] |= std::uint64_t{1} << j;
  const std::size_t reach = jaro_reach(a.size(), b.size());  // at most 31
  // The window of positions [i - reach, i + reach], moved one position on per character of a.
  std::uint64_t window = low_bits(reach + 1);
  std::uint64_t a_hit = 0;
  std::uint64_t b_hit = 0;
  JaroCounts counts;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const std::uint64_t candidates = where[a[i]] & ~b_hit & window;
    window = (window << 1) | (i < reach ? 1 : 0);
    if (candidates == 0) continue;
    b_hit |= candidates & (~candidates + 1);
    a_hit |= std::uint64_t{1} << i;
    ++counts.matches;
  }
  while (a_hit != 0) {
    if (a[static_cast<std::size_t>(std::countr_zero(a_hit))] !=
        b[static_cast<std::size_t>(std::countr_zero(b_hit))]) {
      ++counts.half_transpositions;
    }
    a_hit &= a_hit - 1;
    b_hit &= b_hit - 1;
  }
  return counts;
}

// Any length, any character type: the textbook scan with one flag per character.
template <typename C>
JaroCounts jaro_counts_any(std::span<const C> a, std::span<const C> b) {
  SmallBuffer<std::uint8_t, kShort> a_hit;
  SmallBuffer<std::uint8_t, kShort> b_hit;
  std::fill_n(a_hit.resize(a.size()), a.size(), std::uint8_t{0});
  std::fill_n(b_hit.resize(b.size()), b.size(), std::uint8_t{0});
  const std::size_t reach = jaro_reach(a.size(), b.size());
  JaroCounts counts;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const std::size_t lo = i > reach ? i - reach : 0;
    const std::size_t hi = std::min(b.size(), i + reach + 1);
    for (std::size_t j = lo; j < hi; ++j) {
      if (b_hit[j] != 0 || a[i] != b[j]) continue;
      a_hit[i] = b_hit[j] = 1;
      ++counts.matches;
      break;
    }
  }
  for (std::size_t i = 0, j = 0; i < a.size(); ++i) {
    if (a_hit[i] == 0) continue;
    while (b_hit[j] == 0) ++j;
    if (a[i] != b[j]) ++counts.half_transpositions;
    ++j;
  }
  return counts;
}

template <typename C>
double jaro_of(std::span<const C> a, std::span<const C> b) {
  if (a.empty() && b.empty()) return 1.0;
  if (a.empty() || b.empty()) return 0.0;
  JaroCounts counts;
  if constexpr (kIsByte<C>) {
    counts =
        a.size() <= kShort && b.size() <= kShort ? jaro_counts_short(a, b) : jaro_counts_any(a, b);
  } else {
    counts = jaro_counts_any(a, b);
  }
  if (counts.matches == 0) return 0.0;
  const double m = static_cast<double>(counts.matches);
  return (m / static_cast<double>(a.size()) + m / static_cast<double>(b.size()) +
          (m - static_cast<double>(counts.half_transpositions) / 2.0) / m) /
         3.0;
}

// ---------------------------------------------------------------------------------------------
// Levenshtein

// Drops the common prefix and suffix, which never change a Levenshtein distance.
template <typename C>
void trim_common(std::span<const C>& a, std::span<const C>& b) {
  std::size_t p = 0;
  while (p < a.size() && p < b.size() && a[p] == b[p]) ++p;
  a = a.subspan(p);
  b = b.subspan(p);
  std::size_t s = 0;
  while (s < a.size() && s < b.size() && a[a.size() - 1 - s] == b[b.size() - 1 - s]) ++s;
  a = a.first(a.size() - s);
  b = b.first(b.size() - s);
}

// Myers' bit-parallel edit distance (Myers 1999, as formulated by Hyyrö 2001) for a pattern of
// 1 to 64 bytes: the DP column is two bit vectors, updated with a few word operations per text
// character.
int myers_distance(Bytes pattern, Bytes text) {
  std::uint64_t peq[256];  // only the entries of characters in the pattern or text are set
  for (unsigned char c : text) peq[c] = 0;
  for (unsigned char c : pattern) peq[c] = 0;
  for (std::size_t i = 0; i < pattern.size(); ++i) peq[pattern[i]] |= std::uint64_t{1} << i;
  const std::uint64_t last = std::uint64_t{1} << (pattern.size() - 1);
  std::uint64_t pv = ~std::uint64_t{0};
  std::uint64_t mv = 0;
  int score = static_cast<int>(pattern.size());
  for (unsigned char c : text) {
    const std::uint64_t eq = peq[c];
    const std::uint64_t xv = eq | mv;
    const std::uint64_t xh = (((eq & pv) + pv) ^ pv) | eq;
    std::uint64_t ph = mv | ~(xh | pv);
    std::uint64_t mh = pv & xh;
    if ((ph & last) != 0) {
      ++score;
    } else if ((mh & last) != 0) {
      --score;
    }
    ph = (ph << 1) | 1;  // row 0 grows by one per text character: a global distance
    mh <<= 1;
    pv = mh | ~(xv | ph);
    mv = ph & xv;
  }
  return score;
}

// The two-row DP; `a` is the shorter value.
template <typename C>
int levenshtein_rows(std::span<const C> a, std::span<const C> b) {
  SmallBuffer<int, kShort + 1> row;
  int* r = row.resize(a.size() + 1);
  for (std::size_t i = 0; i <= a.size(); ++i) r[i] = static_cast<int>(i);
  for (std::size_t j = 1; j <= b.size(); ++j) {
    int diagonal = r[0];
    r[0] = static_cast<int>(j);
    for (std::size_t i = 1; i <= a.size(); ++i) {
      const int up = r[i];
      r[i] = std::min({up + 1, r[i - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = up;
    }
  }
  return r[a.size()];
}

// The DP restricted to the diagonal band |i - j| <= limit (Ukkonen 1985): a cell outside it is
// more than `limit` edits away. Stops as soon as a whole row exceeds the limit. `a` is the
// shorter value and the lengths differ by at most `limit`.
template <typename C>
int levenshtein_band(std::span<const C> a, std::span<const C> b, int limit) {
  const int over = limit + 1;
  const std::size_t n = a.size();
  const std::size_t m = b.size();
  const auto reach = static_cast<std::size_t>(limit);
  SmallBuffer<int, kShort + 1> previous_row;
  SmallBuffer<int, kShort + 1> current_row;
  int* prev = previous_row.resize(m + 1);
  int* cur = current_row.resize(m + 1);
  for (std::size_t j = 0; j <= m; ++j) prev[j] = j <= reach ? static_cast<int>(j) : over;
  for (std::size_t i = 1; i <= n; ++i) {
    const std::size_t lo = i > reach ? i - reach : 1;
    const std::size_t hi = std::min(m, i + reach);
    cur[lo - 1] = lo == 1 && i <= reach ? static_cast<int>(i) : over;
    int row_min = cur[lo - 1];
    for (std::size_t j = lo; j <= hi; ++j) {
      const int v = std::min(
          {prev[j - 1] + (a[i - 1] != b[j - 1] ? 1 : 0), prev[j] + 1, cur[j - 1] + 1, over});
      cur[j] = v;
      row_min = std::min(row_min, v);
    }
    if (hi < m) cur[hi + 1] = over;  // read as "up" by the next row's last band cell
    if (row_min >= over) return over;
    std::swap(prev, cur);
  }
  return std::min(prev[m], over);
}

template <typename C>
int levenshtein_of(std::span<const C> a, std::span<const C> b) {
  trim_common(a, b);
  if (a.size() > b.size()) std::swap(a, b);
  if (a.empty()) return static_cast<int>(b.size());
  if constexpr (kIsByte<C>) {
    if (a.size() <= kShort) return myers_distance(a, b);
  }
  return levenshtein_rows(a, b);
}

template <typename C>
int levenshtein_within_of(std::span<const C> a, std::span<const C> b, int limit) {
  const int over = limit + 1;
  if (a.size() > b.size()) std::swap(a, b);
  if (b.size() - a.size() > static_cast<std::size_t>(limit)) return over;
  trim_common(a, b);
  if (a.empty()) return static_cast<int>(b.size());  // at most limit: the lengths differ by it
  if constexpr (kIsByte<C>) {
    if (a.size() <= kShort) return std::min(myers_distance(a, b), over);
  }
  return levenshtein_band(a, b, limit);
}

// ---------------------------------------------------------------------------------------------
// Damerau-Levenshtein

// Lowrance and Wagner (1975): the DP of Levenshtein plus, at each cell, the transposition of
// the last occurrence of b[j] in a (row k) with the last occurrence of a[i] in b (column l),
// paying for the characters between them. `d` is (n+2)×(m+2) with a border of "infinity";
// `last_row[s]` is the last row of a holding symbol s (0: none) and must start at zero for the
// symbols of b. Cell is uint8_t on the short path: no value exceeds n + m <= 128.
template <typename Cell, typename S>
int lowrance_wagner(std::span<const S> a, std::span<const S> b, int* last_row, Cell* d) {
  const std::size_t n = a.size();
  const std::size_t m = b.size();
  const std::size_t width = m + 2;
  const int infinity = static_cast<int>(n + m);
  auto cell = [&](std::size_t i, std::size_t j) -> Cell& { return d[i * width + j]; };
  cell(0, 0) = static_cast<Cell>(infinity);
  for (std::size_t i = 0; i <= n; ++i) {
    cell(i + 1, 0) = static_cast<Cell>(infinity);
    cell(i + 1, 1) = static_cast<Cell>(i);
  }
  for (std::size_t j = 0; j <= m; ++j) {
    cell(0, j + 1) = static_cast<Cell>(infinity);
    cell(1, j + 1) = static_cast<Cell>(j);
  }
  for (std::size_t i = 1; i <= n; ++i) {
    std::size_t last_col = 0;
    int left = static_cast<int>(i);  // the row's previous cell, kept out of memory
    for (std::size_t j = 1; j <= m; ++j) {
      const auto k = static_cast<std::size_t>(last_row[b[j - 1]]);
      const std::size_t l = last_col;
      int best = std::min(static_cast<int>(cell(i, j + 1)), left) + 1;
      if (a[i - 1] == b[j - 1]) {
        best = std::min(best, static_cast<int>(cell(i, j)));
        last_col = j;
      } else {
        best = std::min(best, static_cast<int>(cell(i, j)) + 1);
      }
      if (k != 0 && l != 0) {
        best = std::min(
            best, static_cast<int>(cell(k, l)) + static_cast<int>((i - k - 1) + 1 + (j - l - 1)));
      }
      cell(i + 1, j + 1) = static_cast<Cell>(best);
      left = best;
    }
    last_row[a[i - 1]] = static_cast<int>(i);
  }
  return static_cast<int>(cell(n + 1, m + 1));
}

template <typename C>
int damerau_of(std::span<const C> a, std::span<const C> b) {
  if (a.empty() || b.empty()) return static_cast<int>(a.size() + b.size());
  if constexpr (kIsByte<C>) {
    if (a.size() <= kShort && b.size() <= kShort) {
      int last_row[256];  // read only at characters of b
      for (unsigned char c : b) last_row[c] = 0;
      std::uint8_t d[(kShort + 2) * (kShort + 2)];
      return lowrance_wagner(a, b, last_row, d);
    }
    std::vector<int> last_row(256, 0);
    std::vector<int> d((a.size() + 2) * (b.size() + 2));
    return lowrance_wagner(a, b, last_row.data(), d.data());
  } else {
    // Code points are renumbered densely so that the last-row table has one entry per
    // distinct character rather than one per Unicode code point.
    std::vector<char32_t> alphabet(a.begin(), a.end());
    alphabet.insert(alphabet.end(), b.begin(), b.end());
    std::sort(alphabet.begin(), alphabet.end());
    alphabet.erase(std::unique(alphabet.begin(), alphabet.end()), alphabet.end());
    auto ids = [&](std::span<const C> s) {
      std::vector<std::uint32_t> out(s.size());
      for (std::size_t i = 0; i < s.size(); ++i) {
        out[i] = static_cast<std::uint32_t>(
            std::lower_bound(alphabet.begin(), alphabet.end(), s[i]) - alphabet.begin());
      }
      return out;
    };
    const std::vector<std::uint32_t> ia = ids(a);
    const std::vector<std::uint32_t> ib = ids(b);
    std::vector<int> last_row(alphabet.size(), 0);
    std::vector<int> d((a.size() + 2) * (b.size() + 2));
    return lowrance_wagner(std::span<const std::uint32_t>(ia), std::span<const std::uint32_t>(ib),
                           last_row.data(), d.data());
  }
}

// ---------------------------------------------------------------------------------------------
// fold

// What fold() turns U+00C0..U+017F into: one or two letters, or a blank (× and ÷).
struct LatinFold {
  char first;
  char second;  // '\0' for one letter
};

constexpr char32_t kLatinFirst = 0xC0;
constexpr char32_t kLatinEnd = 0x180;

constexpr std::array<LatinFold, kLatinEnd - kLatinFirst> kLatinFolds = [] {
  struct Range {
    char32_t first;
    char32_t last;
    const char* letters;
  };
  constexpr Range kRanges[] = {
      // Latin-1 supplement
      {0xC0, 0xC5, "A"},
      {0xC6, 0xC6, "AE"},
      {0xC7, 0xC7, "C"},
      {0xC8, 0xCB, "E"},
      {0xCC, 0xCF, "I"},
      {0xD0, 0xD0, "D"},
      {0xD1, 0xD1, "N"},
      {0xD2, 0xD6, "O"},
      {0xD7, 0xD7, " "},
      {0xD8, 0xD8, "O"},
      {0xD9, 0xDC, "U"},
      {0xDD, 0xDD, "Y"},
      {0xDE, 0xDE, "TH"},
      {0xDF, 0xDF, "SS"},
      {0xE0, 0xE5, "A"},
      {0xE6, 0xE6, "AE"},
      {0xE7, 0xE7, "C"},
      {0xE8, 0xEB, "E"},
      {0xEC, 0xEF, "I"},
      {0xF0, 0xF0, "D"},
      {0xF1, 0xF1, "N"},
      {0xF2, 0xF6, "O"},
      {0xF7, 0xF7, " "},
      {0xF8, 0xF8, "O"},
      {0xF9, 0xFC, "U"},
      {0xFD, 0xFD, "Y"},
      {0xFE, 0xFE, "TH"},
      {0xFF, 0xFF, "Y"},
      // Latin Extended-A
      {0x100, 0x105, "A"},
      {0x106, 0x10D, "C"},
      {0x10E, 0x111, "D"},
      {0x112, 0x11B, "E"},
      {0x11C, 0x123, "G"},
      {0x124, 0x127, "H"},
      {0x128, 0x131, "I"},
      {0x132, 0x133, "IJ"},
      {0x134, 0x135, "J"},
      {0x136, 0x138, "K"},
      {0x139, 0x142, "L"},
      {0x143, 0x14B, "N"},
      {0x14C, 0x151, "O"},
      {0x152, 0x153, "OE"},
      {0x154, 0x159, "R"},
      {0x15A, 0x161, "S"},
      {0x162, 0x167, "T"},
      {0x168, 0x173, "U"},
      {0x174, 0x175, "W"},
      {0x176, 0x178, "Y"},
      {0x179, 0x17E, "Z"},
      {0x17F, 0x17F, "S"},
  };
  std::array<LatinFold, kLatinEnd - kLatinFirst> table{};
  for (const Range& r : kRanges) {
    for (char32_t c = r.first; c <= r.last; ++c) {
      table[c - kLatinFirst] = {r.letters[0], r.letters[1]};
    }
  }
  return table;
}();
static_assert(std::all_of(kLatinFolds.begin(), kLatinFolds.end(),
                          [](LatinFold f) { return f.first != '\0'; }),
              "every code point of U+00C0..U+017F needs a fold");

enum class FoldAction { kLetters, kDrop, kBlank, kKeep };

struct FoldResult {
  FoldAction action;
  LatinFold letters;  // for kLetters
};

// fold() of one non-ASCII code point.
FoldResult fold_code_point(char32_t c) {
  if (c >= kLatinFirst && c < kLatinEnd) {
    const LatinFold f = kLatinFolds[c - kLatinFirst];
    if (f.first == ' ') return {FoldAction::kBlank, {}};
    return {FoldAction::kLetters, f};
  }
  switch (c) {
    case 0xAD:    // soft hyphen: invisible, inside a word
    case 0xB4:    // acute accent, typed for an apostrophe
    case 0x2BC:   // modifier letter apostrophe
    case 0x2018:  // quotation marks used as apostrophes
    case 0x2019:
    case 0x201B:
    case 0x2032:  // prime
    case 0x200B:  // zero-width space, non-joiner, joiner
    case 0x200C:
    case 0x200D:
    case 0xFEFF:  // byte order mark
    case 0xFF07:  // fullwidth apostrophe
      return {FoldAction::kDrop, {}};
    case 0x218:  // Romanian Ș ș Ț ț (comma below)
    case 0x219:
      return {FoldAction::kLetters, {'S', '\0'}};
    case 0x21A:
    case 0x21B:
      return {FoldAction::kLetters, {'T', '\0'}};
    default:
      break;
  }
  if (c < kLatinFirst) return {FoldAction::kBlank, {}};          // C1 controls, Latin-1 punctuation
  if (c >= 0x300 && c <= 0x36F) return {FoldAction::kDrop, {}};  // combining accents (NFD text)
  if ((c >= 0x2000 && c <= 0x206F) || c == 0x3000) return {FoldAction::kBlank, {}};
  // Other scripts have no ASCII form; their letters are kept as written.
  return {FoldAction::kKeep, {}};
}

// Splits blank-separated words (fold() output) into views of `text`.
template <std::size_t N>
void split_words(std::string_view text, SmallBuffer<std::string_view, N>& out) {
  out.shrink(0);
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && text[i] == ' ') ++i;
    std::size_t j = i;
    while (j < text.size() && text[j] != ' ') ++j;
    if (j > i) out.push_back(text.substr(i, j - i));
    i = j;
  }
}

// Sorted distinct words.
template <std::size_t N>
void word_set(std::string_view text, SmallBuffer<std::string_view, N>& out) {
  split_words(text, out);
  std::sort(out.begin(), out.end());
  out.shrink(static_cast<std::size_t>(std::unique(out.begin(), out.end()) - out.begin()));
}

// ---------------------------------------------------------------------------------------------
// q-grams

// Marks padding the ends, outside the code point range so they equal no character.
constexpr char32_t kStartMark = 0x110000;
constexpr char32_t kEndMark = 0x110001;

template <typename C>
void pad(std::span<const C> s, std::size_t marks, std::vector<char32_t>& out) {
  out.assign(marks, kStartMark);
  out.insert(out.end(), s.begin(), s.end());
  out.insert(out.end(), marks, kEndMark);
}

// ---------------------------------------------------------------------------------------------
// numbers and dates

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Reads `count` digits at s[pos]; -1 when they are not all digits.
int read_digits(std::string_view s, std::size_t pos, std::size_t count) {
  if (pos + count > s.size()) return -1;
  int value = 0;
  for (std::size_t i = pos; i < pos + count; ++i) {
    if (!is_digit(s[i])) return -1;
    value = value * 10 + (s[i] - '0');
  }
  return value;
}

bool is_leap_year(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int days_in_month(int y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap_year(y) ? 29 : kDays[m - 1];
}

// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's days_from_civil).
std::int32_t days_from_civil(int y, int m, int d) {
  y -= m <= 2 ? 1 : 0;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const int yoe = y - era * 400;
  const int doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

}  // namespace

std::string fold(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool blank = false;  // a separator was seen since the last character written
  auto start_char = [&] {
    if (blank && !out.empty()) out += ' ';
    blank = false;
  };
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      if (c >= 'a' && c <= 'z') {
        start_char();
        out += static_cast<char>(c - 'a' + 'A');
      } else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        start_char();
        out += static_cast<char>(c);
      } else if (c == '\'' || c == '`' || c == '.') {
        // O'Neil is ONEIL and J.P. is JP: dropped without splitting the word.
      } else {
        blank = true;
      }
      continue;
    }
    const Decoded d = decode_one(text, i);
    const FoldResult r = fold_code_point(d.code_point);
    switch (r.action) {
      case FoldAction::kLetters:
        start_char();
        out += r.letters.first;
        if (r.letters.second != '\0') out += r.letters.second;
        break;
      case FoldAction::kKeep:
        start_char();
        out.append(text.substr(i, d.length));  // valid UTF-8: only code points >= U+0100 land here
        break;
      case FoldAction::kBlank:
        blank = true;
        break;
      case FoldAction::kDrop:
        break;
    }
    i += d.length;
  }
  return out;
}

double jaro(std::string_view a, std::string_view b) {
  if (a == b) return 1.0;
  return with_code_points(a, b, [](auto pa, auto pb) { return jaro_of(pa, pb); });
}

double jaro_winkler(std::string_view a, std::string_view b, double prefix_scale) {
  if (a == b) return 1.0;
  return with_code_points(a, b, [prefix_scale](auto pa, auto pb) {
    const double j = jaro_of(pa, pb);
    std::size_t prefix = 0;
    while (prefix < 4 && prefix < pa.size() && prefix < pb.size() && pa[prefix] == pb[prefix]) {
      ++prefix;
    }
    return j + static_cast<double>(prefix) * prefix_scale * (1.0 - j);
  });
}

int levenshtein(std::string_view a, std::string_view b) {
  if (a == b) return 0;
  return with_code_points(a, b, [](auto pa, auto pb) { return levenshtein_of(pa, pb); });
}

int levenshtein_within(std::string_view a, std::string_view b, int limit) {
  limit = std::max(limit, 0);  // a negative limit would make "limit + 1" a distance of 0
  if (a == b) return 0;
  return with_code_points(
      a, b, [limit](auto pa, auto pb) { return levenshtein_within_of(pa, pb, limit); });
}

int damerau_levenshtein(std::string_view a, std::string_view b) {
  if (a == b) return 0;
  return with_code_points(a, b, [](auto pa, auto pb) { return damerau_of(pa, pb); });
}

double levenshtein_similarity(std::string_view a, std::string_view b) {
  if (a == b) return 1.0;
  return with_code_points(a, b, [](auto pa, auto pb) {
    const std::size_t longer = std::max(pa.size(), pb.size());
    if (longer == 0) return 1.0;
    return 1.0 - static_cast<double>(levenshtein_of(pa, pb)) / static_cast<double>(longer);
  });
}

double token_set_similarity(std::string_view a, std::string_view b) {
  const std::string fa = fold(a);
  const std::string fb = fold(b);
  SmallBuffer<std::string_view, 16> wa;
  SmallBuffer<std::string_view, 16> wb;
  word_set(fa, wa);
  word_set(fb, wb);
  if (wa.size() == 0 && wb.size() == 0) return 1.0;
  std::size_t common = 0;
  for (std::size_t i = 0, j = 0; i < wa.size() && j < wb.size();) {
    if (wa[i] < wb[j]) {
      ++i;
    } else if (wb[j] < wa[i]) {
      ++j;
    } else {
      ++common;
      ++i;
      ++j;
    }
  }
  return static_cast<double>(common) / static_cast<double>(wa.size() + wb.size() - common);
}

double qgram_similarity(std::string_view a, std::string_view b, int q) {
  if (a == b) return 1.0;
  const auto gram = static_cast<std::size_t>(std::max(q, 1));
  return with_code_points(a, b, [gram](auto pa, auto pb) {
    if (pa.empty() || pb.empty()) return pa.size() == pb.size() ? 1.0 : 0.0;
    std::vector<char32_t> sa;
    std::vector<char32_t> sb;
    pad(pa, gram - 1, sa);
    pad(pb, gram - 1, sb);
    // Each q-gram is named by its offset; sorting the offsets by the q-grams' text turns the
    // multiset intersection into a merge.
    auto sorted_grams = [gram](const std::vector<char32_t>& s) {
      std::vector<std::size_t> offsets(s.size() - gram + 1);
      for (std::size_t i = 0; i < offsets.size(); ++i) offsets[i] = i;
      std::sort(offsets.begin(), offsets.end(), [&](std::size_t x, std::size_t y) {
        return std::lexicographical_compare(s.begin() + x, s.begin() + x + gram, s.begin() + y,
                                            s.begin() + y + gram);
      });
      return offsets;
    };
    const std::vector<std::size_t> ga = sorted_grams(sa);
    const std::vector<std::size_t> gb = sorted_grams(sb);
    std::size_t common = 0;
    for (std::size_t i = 0, j = 0; i < ga.size() && j < gb.size();) {
      const auto x = sa.begin() + ga[i];
      const auto y = sb.begin() + gb[j];
      if (std::lexicographical_compare(x, x + gram, y, y + gram)) {
        ++i;
      } else if (std::lexicographical_compare(y, y + gram, x, x + gram)) {
        ++j;
      } else {
        ++common;
        ++i;
        ++j;
      }
    }
    return 2.0 * static_cast<double>(common) / static_cast<double>(ga.size() + gb.size());
  });
}

double relative_difference(double a, double b) {
  if (a == b) return 0.0;
  return std::fabs(a - b) / std::max(std::fabs(a), std::fabs(b));
}

std::optional<double> parse_number(std::string_view text) {
  const std::string_view s = trim_blanks(text);
  // The number is copied without its '+' and thousands separators, then read by from_chars.
  SmallBuffer<char, kShort> clean;
  clean.resize(s.size());
  std::size_t n = 0;
  std::size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    if (s[i] == '-') clean[n++] = '-';
    ++i;
  }
  // Integer part: digits, or groups "1,234,567" (1 to 3 digits, then groups of exactly 3).
  std::size_t digits = 0;
  std::size_t group = 0;  // digits since the last separator
  bool grouped = false;
  for (; i < s.size(); ++i) {
    if (is_digit(s[i])) {
      clean[n++] = s[i];
      ++digits;
      ++group;
    } else if (s[i] == ',') {
      if (group == 0 || (grouped ? group != 3 : group > 3)) return std::nullopt;
      grouped = true;
      group = 0;
    } else {
      break;
    }
  }
  if (grouped && group != 3) return std::nullopt;
  if (i < s.size() && s[i] == '.') {
    clean[n++] = '.';
    for (++i; i < s.size() && is_digit(s[i]); ++i) {
      clean[n++] = s[i];
      ++digits;
    }
  }
  if (digits == 0) return std::nullopt;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    clean[n++] = 'e';
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) clean[n++] = s[i++];
    std::size_t exponent_digits = 0;
    for (; i < s.size() && is_digit(s[i]); ++i) {
      clean[n++] = s[i];
      ++exponent_digits;
    }
    if (exponent_digits == 0) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;  // trailing garbage: "12abc", "1.2.3", "12 34"
  double value = 0;
  const auto [end, error] = std::from_chars(clean.data(), clean.data() + n, value);
  if (error != std::errc() || end != clean.data() + n || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

std::optional<std::int32_t> days_since_epoch(std::string_view date) {
  const std::string_view s = trim_blanks(date);
  const int year = read_digits(s, 0, 4);
  if (year < 0) return std::nullopt;
  int month = 0;
  int day = 0;
  std::size_t end = 0;
  if (s.size() > 4 && (s[4] == '-' || s[4] == '/')) {
    if (s.size() < 10 || s[7] != s[4]) return std::nullopt;
    month = read_digits(s, 5, 2);
    day = read_digits(s, 8, 2);
    end = 10;
  } else {
    month = read_digits(s, 4, 2);
    day = read_digits(s, 6, 2);
    end = 8;
  }
  if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month)) return std::nullopt;
  // A time may follow ("2024-05-01T10:00:00Z", "2024-05-01 10:00"); anything else may not.
  if (end < s.size() && s[end] != 'T' && s[end] != 't' && s[end] != ' ') return std::nullopt;
  return days_from_civil(year, month, day);
}

std::optional<std::int32_t> date_distance_days(std::string_view a, std::string_view b) {
  const auto da = days_since_epoch(a);
  const auto db = days_since_epoch(b);
  if (!da || !db) return std::nullopt;
  return *da > *db ? *da - *db : *db - *da;
}

std::string name_key(std::string_view name) {
  const std::string folded = fold(name);
  SmallBuffer<std::string_view, 16> words;
  split_words(folded, words);
  if (words.size() <= 1) return folded;
  std::sort(words.begin(), words.end());
  std::string out;
  out.reserve(folded.size());
  for (std::string_view w : words) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

double name_similarity(std::string_view a, std::string_view b) {
  if (a == b) return 1.0;
  SmallBuffer<std::string_view, 16> wa;
  SmallBuffer<std::string_view, 16> wb;
  split_words(a, wa);
  split_words(b, wb);
  if (wa.size() == 0 || wb.size() == 0) return 0.0;
  // Words are paired one to one, best pairs first; a word left without a partner scores 0.
  struct Pair {
    double score;
    std::size_t i;
    std::size_t j;
  };
  SmallBuffer<Pair, 64> pairs;
  for (std::size_t i = 0; i < wa.size(); ++i) {
    for (std::size_t j = 0; j < wb.size(); ++j) {
      pairs.push_back({jaro_winkler(wa[i], wb[j]), i, j});
    }
  }
  // Equal scores pair in reading order, so the result does not depend on the sort.
  std::sort(pairs.begin(), pairs.end(), [](const Pair& x, const Pair& y) {
    if (x.score != y.score) return x.score > y.score;
    return x.i != y.i ? x.i < y.i : x.j < y.j;
  });
  SmallBuffer<std::uint8_t, 16> used_a;
  SmallBuffer<std::uint8_t, 16> used_b;
  std::fill_n(used_a.resize(wa.size()), wa.size(), std::uint8_t{0});
  std::fill_n(used_b.resize(wb.size()), wb.size(), std::uint8_t{0});
  double sum = 0;
  for (const Pair& p : pairs) {
    if (used_a[p.i] != 0 || used_b[p.j] != 0) continue;
    used_a[p.i] = used_b[p.j] = 1;
    sum += p.score;
  }
  return sum / static_cast<double>(std::max(wa.size(), wb.size()));
}

}  // namespace civicbus::match
