#include "civicbus/match/compare.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace civicbus::match {
namespace {

// Decodes UTF-8 into code points; an invalid byte stands for itself (Latin-1), so that any
// input compares.
std::vector<char32_t> code_points(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    if (extra == 0 || i + static_cast<std::size_t>(extra) >= s.size()) {
      out.push_back(c);
      ++i;
      continue;
    }
    char32_t cp = c & (0x3F >> extra);
    bool ok = true;
    for (int k = 1; k <= extra; ++k) {
      auto cc = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
      if ((cc & 0xC0) != 0x80) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (!ok) {
      out.push_back(c);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += static_cast<std::size_t>(extra) + 1;
  }
  return out;
}

// Latin-1 supplement and Latin Extended-A letters French and English names use, without
// their accents.
char fold(char32_t c) {
  if (c < 0x80) {
    char a = static_cast<char>(c);
    if (a >= 'a' && a <= 'z') return static_cast<char>(a - 'a' + 'A');
    return a;
  }
  switch (c) {
    case U'À':
    case U'Á':
    case U'Â':
    case U'Ã':
    case U'Ä':
    case U'Å':
    case U'à':
    case U'á':
    case U'â':
    case U'ã':
    case U'ä':
    case U'å':
      return 'A';
    case U'Ç':
    case U'ç':
      return 'C';
    case U'È':
    case U'É':
    case U'Ê':
    case U'Ë':
    case U'è':
    case U'é':
    case U'ê':
    case U'ë':
      return 'E';
    case U'Ì':
    case U'Í':
    case U'Î':
    case U'Ï':
    case U'ì':
    case U'í':
    case U'î':
    case U'ï':
      return 'I';
    case U'Ñ':
    case U'ñ':
      return 'N';
    case U'Ò':
    case U'Ó':
    case U'Ô':
    case U'Õ':
    case U'Ö':
    case U'ò':
    case U'ó':
    case U'ô':
    case U'õ':
    case U'ö':
    case U'Ø':
    case U'ø':
      return 'O';
    case U'Ù':
    case U'Ú':
    case U'Û':
    case U'Ü':
    case U'ù':
    case U'ú':
    case U'û':
    case U'ü':
      return 'U';
    case U'Ý':
    case U'ý':
    case U'ÿ':
      return 'Y';
    default:
      return '?';
  }
}

double jaro_points(const std::vector<char32_t>& a, const std::vector<char32_t>& b) {
  if (a.empty() && b.empty()) return 1.0;
  if (a.empty() || b.empty()) return 0.0;
  const std::size_t window = std::max<std::size_t>(a.size(), b.size()) / 2;
  const std::size_t reach = window > 0 ? window - 1 : 0;
  std::vector<bool> a_hit(a.size()), b_hit(b.size());
  std::size_t matches = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const std::size_t lo = i > reach ? i - reach : 0;
    const std::size_t hi = std::min(b.size(), i + reach + 1);
    for (std::size_t j = lo; j < hi; ++j) {
      if (b_hit[j] || a[i] != b[j]) continue;
      a_hit[i] = b_hit[j] = true;
      ++matches;
      break;
    }
  }
  if (matches == 0) return 0.0;
  std::size_t transpositions = 0;
  for (std::size_t i = 0, j = 0; i < a.size(); ++i) {
    if (!a_hit[i]) continue;
    while (!b_hit[j]) ++j;
    if (a[i] != b[j]) ++transpositions;
    ++j;
  }
  const double m = static_cast<double>(matches);
  return (m / static_cast<double>(a.size()) + m / static_cast<double>(b.size()) +
          (m - static_cast<double>(transpositions) / 2.0) / m) /
         3.0;
}

}  // namespace

double jaro(std::string_view a, std::string_view b) {
  return jaro_points(code_points(a), code_points(b));
}

double jaro_winkler(std::string_view a, std::string_view b, double prefix_scale) {
  auto pa = code_points(a);
  auto pb = code_points(b);
  double j = jaro_points(pa, pb);
  std::size_t prefix = 0;
  while (prefix < 4 && prefix < pa.size() && prefix < pb.size() && pa[prefix] == pb[prefix]) {
    ++prefix;
  }
  return j + static_cast<double>(prefix) * prefix_scale * (1.0 - j);
}

std::string name_key(std::string_view name) {
  std::vector<std::string> tokens;
  std::string token;
  for (char32_t c : code_points(name)) {
    char f = fold(c);
    if ((f >= 'A' && f <= 'Z') || (f >= '0' && f <= '9')) {
      token += f;
    } else if (f == '\'' || f == '.') {
      continue;  // O'Neil, J.P.
    } else if (!token.empty()) {
      tokens.push_back(std::move(token));
      token.clear();
    }
  }
  if (!token.empty()) tokens.push_back(std::move(token));
  std::sort(tokens.begin(), tokens.end());
  std::string out;
  for (const auto& t : tokens) {
    if (!out.empty()) out += ' ';
    out += t;
  }
  return out;
}

namespace {

std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    std::size_t j = i;
    while (j < s.size() && s[j] != ' ') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

// Pairs words one to one, best pairs first; a word left without a partner scores 0.
double assigned(const std::vector<std::string_view>& a, const std::vector<std::string_view>& b) {
  struct Pair {
    double score;
    std::size_t i, j;
  };
  std::vector<Pair> pairs;
  pairs.reserve(a.size() * b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    for (std::size_t j = 0; j < b.size(); ++j) {
      pairs.push_back({a[i] == b[j] ? 1.0 : jaro_winkler(a[i], b[j]), i, j});
    }
  }
  std::sort(pairs.begin(), pairs.end(),
            [](const Pair& x, const Pair& y) { return x.score > y.score; });
  std::vector<bool> used_a(a.size()), used_b(b.size());
  double sum = 0;
  for (const auto& p : pairs) {
    if (used_a[p.i] || used_b[p.j]) continue;
    used_a[p.i] = used_b[p.j] = true;
    sum += p.score;
  }
  return sum / static_cast<double>(std::max(a.size(), b.size()));
}

}  // namespace

double name_similarity(std::string_view a, std::string_view b) {
  if (a == b) return 1.0;
  auto wa = words(a);
  auto wb = words(b);
  if (wa.empty() || wb.empty()) return 0.0;
  return assigned(wa, wb);
}

}  // namespace civicbus::match
