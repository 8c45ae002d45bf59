// The match engine: preparation (cleaning and interning each compared value once), blocking,
// comparison vectors, EM training, scoring and clustering. Hot loops work on interned ids and
// per-value precomputed features, never on the records' text.
#include "civicbus/match/engine.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <deque>
#include <limits>
#include <mutex>
#include <numeric>
#include <thread>
#include <unordered_map>

#include "civicbus/match/address.hpp"
#include "civicbus/match/compare.hpp"
#include "civicbus/match/review.hpp"
#include "match/engine_internal.hpp"

namespace civicbus::match {
namespace {

using Clock = std::chrono::steady_clock;
// CPU seconds of the whole process: during a run's phases only the run's threads work.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

enum class Test : std::uint8_t {
  kExact,
  kLevenshtein,
  kDamerau,
  kJaroWinkler,
  kJaro,
  kName,
  kTokenSet,
  kQgram,
  kSoundex,
  kNysiis,
  kMetaphone,
  kNumberAbs,
  kNumberRel,
  kDateDays,
  kAddressStreet,
  kAddressName,
  kAddressStreetOnly,
};

Test test_of(std::string_view name) {
  static constexpr std::pair<std::string_view, Test> kMap[] = {
      {"exact", Test::kExact},
      {"levenshtein", Test::kLevenshtein},
      {"damerau_levenshtein", Test::kDamerau},
      {"jaro_winkler", Test::kJaroWinkler},
      {"jaro", Test::kJaro},
      {"name", Test::kName},
      {"token_set", Test::kTokenSet},
      {"qgram", Test::kQgram},
      {"soundex", Test::kSoundex},
      {"nysiis", Test::kNysiis},
      {"metaphone", Test::kMetaphone},
      {"number_abs", Test::kNumberAbs},
      {"number_rel", Test::kNumberRel},
      {"date_days", Test::kDateDays},
      {"address_street", Test::kAddressStreet},
      {"address_name", Test::kAddressName},
      {"address_street_only", Test::kAddressStreetOnly},
  };
  for (const auto& [n, t] : kMap) {
    if (n == name) return t;
  }
  return Test::kExact;
}

struct Level {
  Test test = Test::kExact;
  double threshold = 0;
  int edits = 0;
  std::string label;
};

// Interns strings: equal strings get equal ids; 0 stands for "no value".
class Interner {
 public:
  std::uint32_t id(std::string_view s) {
    if (s.empty()) return 0;
    auto it = ids_.find(s);
    if (it != ids_.end()) return it->second;
    strings_.emplace_back(s);
    auto id = static_cast<std::uint32_t>(strings_.size());
    ids_.emplace(strings_.back(), id);
    return id;
  }
  std::string_view text(std::uint32_t id) const {
    return id == 0 ? std::string_view() : std::string_view(strings_[id - 1]);
  }

 private:
  std::deque<std::string> strings_;  // stable addresses for the map's keys
  std::unordered_map<std::string_view, std::uint32_t> ids_;
};

// What one distinct cleaned value offers to the tests.
// One cache line: comparisons of pairs spread over a large run miss the cache on every value.
struct alignas(64) Value {
  std::string text;
  double number = std::numeric_limits<double>::quiet_NaN();  // number, or days for a date
  // letters[k]: the characters (letter_bit) occurring more than k times, for the Jaro bound.
  std::array<std::uint32_t, 4> letters{};
  bool ascii = true;
};

// A bit per letter and digit class, so that two values' common characters can be bounded.
inline std::uint32_t letter_bit(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return 1u << (c - 'A');
  if (c >= 'a' && c <= 'z') return 1u << (c - 'a');
  if (c >= '0' && c <= '9') return 1u << (26 + (c - '0') % 5);
  return 1u << 31;
}

// An upper bound of Jaro-Winkler (prefix scale 0.1) from which characters occur: Jaro's
// matched characters are characters of `a` whose letter occurs in `b`, at most the shorter
// length, and transpositions only lower it. ASCII values only.
double jaro_winkler_bound(const Value& a, const Value& b) {
  const std::size_t la = a.text.size(), lb = b.text.size();
  if (la == 0 || lb == 0) return 0;
  // Σ over characters of min(count in a, count in b) = Σ over k of |{c: both count > k}|; a
  // character more than 4 times in both leaves the bound at the shorter length.
  std::size_t common = 0;
  for (std::size_t k = 0; k < 4; ++k) {
    common += static_cast<std::size_t>(std::popcount(a.letters[k] & b.letters[k]));
  }
  if ((a.letters[3] & b.letters[3]) != 0) common = std::min(la, lb);
  const double m = static_cast<double>(std::min({common, la, lb}));
  if (m == 0) return 0;
  const double jaro = (m / static_cast<double>(la) + m / static_cast<double>(lb) + 1.0) / 3.0;
  std::size_t prefix = 0;
  while (prefix < 4 && prefix < la && prefix < lb && a.text[prefix] == b.text[prefix]) ++prefix;
  return jaro + static_cast<double>(prefix) * 0.1 * (1.0 - jaro);
}

// Codes of a value, for the columns whose levels use them (interned).
struct ValueCodes {
  std::uint32_t soundex = 0, nysiis = 0, metaphone1 = 0, metaphone2 = 0;
  // Address: civic number (with unit and suffix), street (name, type, direction), street name.
  std::uint32_t civic = 0, street = 0, street_name = 0;
};

// Cleans a raw value the way its kind wants compared.
std::string clean(FieldKind kind, std::string_view raw) {
  switch (kind) {
    case FieldKind::kName:
    case FieldKind::kText:
      return fold(raw);
    case FieldKind::kAddress:
      return fold(raw);  // replaced by the normalised line when it parses
    case FieldKind::kDate: {
      auto days = days_since_epoch(raw);
      if (!days) return fold(raw);
      std::string out;
      for (char c : raw.substr(0, std::min<std::size_t>(raw.size(), 10))) {
        if (c >= '0' && c <= '9') out += c;
      }
      return out;  // YYYYMMDD
    }
    case FieldKind::kIdentifier:
    case FieldKind::kPostalCode: {
      std::string out;
      for (char c : raw) {
        if (c >= 'a' && c <= 'z') out += static_cast<char>(c - 'a' + 'A');
        if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) out += c;
      }
      return out;
    }
    case FieldKind::kPhone: {
      std::string out;
      for (char c : raw) {
        if (c >= '0' && c <= '9') out += c;
      }
      if (out.size() == 11 && out[0] == '1') out.erase(0, 1);
      return out;
    }
    case FieldKind::kEmail: {
      std::string out;
      for (char c : raw) {
        if (c == ' ' || c == '\t') continue;
        out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      }
      return out;
    }
    case FieldKind::kNumber: {
      auto n = parse_number(raw);
      if (!n) return fold(raw);
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.12g", *n);
      return buf;
    }
  }
  return std::string(raw);
}

// One compared field, prepared for a run: every distinct value cleaned once.
struct Column {
  const ComparisonSpec* spec = nullptr;
  std::string name;
  std::vector<Level> levels;
  int left_column = -1, right_column = -1;
  std::vector<Value> values;          // index 0: missing
  std::vector<ValueCodes> codes_of;   // per value, when phonetic or an address
  std::vector<std::uint64_t> counts;  // per value: records holding it (TF)
  std::vector<double> log2_tf;        // per value: log2 of its share of the records, when fixed
  std::vector<std::uint32_t> left_ids, right_ids;  // while preparing; then Prepared's rows
  std::uint64_t non_null = 0;
  bool term_frequency = false;
  bool phonetic = false;           // a level compares phonetic codes
  double lowest_jaro_winkler = 2;  // the ladder's lowest Jaro-Winkler threshold
  bool cached = false;             // a level costs more than a lookup: its results are cached
  // Interning state, kept so that an incremental index adds values consistently.
  std::unordered_map<std::string, std::uint32_t> by_clean;
  std::shared_ptr<Interner> codes = std::make_shared<Interner>();
};

std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  h *= 0xff51afd7ed558ccdULL;
  return h ^ (h >> 33);
}

std::uint64_t splitmix(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A key of a rule: a function applied to one field.
struct Key {
  enum class Fn { kValue, kSoundex, kNysiis, kMetaphone, kFirst, kYear, kDigits, kStreet, kCivic };
  Fn fn = Fn::kValue;
  std::string field;
  std::size_t length = 0;  // first(f, n)
};

Result<Key> parse_key(std::string_view text) {
  Key key;
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  auto open = text.find('(');
  if (open == std::string_view::npos) {
    key.field = std::string(text);
    return key;
  }
  if (text.back() != ')') return invalid_argument("rule key '" + std::string(text) + "' lacks ')'");
  std::string_view fn = text.substr(0, open);
  std::string_view args = text.substr(open + 1, text.size() - open - 2);
  auto comma = args.find(',');
  std::string_view field = args.substr(0, comma);
  while (!field.empty() && field.front() == ' ') field.remove_prefix(1);
  while (!field.empty() && field.back() == ' ') field.remove_suffix(1);
  key.field = std::string(field);
  if (fn == "soundex") {
    key.fn = Key::Fn::kSoundex;
  } else if (fn == "nysiis") {
    key.fn = Key::Fn::kNysiis;
  } else if (fn == "metaphone") {
    key.fn = Key::Fn::kMetaphone;
  } else if (fn == "first") {
    key.fn = Key::Fn::kFirst;
    if (comma == std::string_view::npos) {
      return invalid_argument("rule key '" + std::string(text) + "': first(field, n) needs n");
    }
    key.length = static_cast<std::size_t>(std::atoi(std::string(args.substr(comma + 1)).c_str()));
    if (key.length == 0) {
      return invalid_argument("rule key '" + std::string(text) + "': n must be at least 1");
    }
  } else if (fn == "year") {
    key.fn = Key::Fn::kYear;
  } else if (fn == "digits") {
    key.fn = Key::Fn::kDigits;
  } else if (fn == "street") {
    key.fn = Key::Fn::kStreet;
  } else if (fn == "civic") {
    key.fn = Key::Fn::kCivic;
  } else {
    return invalid_argument("rule key '" + std::string(text) + "': '" + std::string(fn) +
                            "' is not one of soundex, nysiis, metaphone, first, year, digits, "
                            "street, civic");
  }
  if (key.field.empty())
    return invalid_argument("rule key '" + std::string(text) + "' names no field");
  return key;
}

struct Rule {
  std::string name;
  std::vector<Key> keys;
};

constexpr std::uint64_t kKeySeed = 0x51ed270b27c5a1d3ULL;
// Folds one key part into a rule's key; a missing part leaves the record out of the rule.
std::uint64_t combine_key(std::uint64_t key, std::size_t k, std::uint64_t part) {
  if (part == 0 || key == 0) return 0;
  std::uint64_t out = mix(key + k, part);
  return out == 0 ? 1 : out;
}

}  // namespace

namespace {

// Remembers the level of recently compared value pairs, per thread: names, streets and towns
// repeat, so most fuzzy comparisons of a large run have been made before. Direct-mapped: a slot
// holds (comparison, smaller id, larger id) and the level.
class PairCache {
 public:
  static constexpr int kBits = 14;
  PairCache() : slots_(std::size_t{1} << kBits, 0) {}
  static std::uint64_t key(std::size_t c, std::uint32_t a, std::uint32_t b) {
    if (a > b) std::swap(a, b);
    return (static_cast<std::uint64_t>(c) << 56) | (static_cast<std::uint64_t>(a) << 28) | b;
  }
  // The level, or -1.
  int find(std::uint64_t key) const {
    std::uint64_t slot = slots_[index(key)];
    return (slot >> 4) == key ? static_cast<int>(slot & 0xF) : -1;
  }
  void prefetch(std::uint64_t key) const { __builtin_prefetch(&slots_[index(key)]); }
  void put(std::uint64_t key, int level) {
    slots_[index(key)] = (key << 4) | static_cast<std::uint64_t>(level);
  }

 private:
  static std::size_t index(std::uint64_t key) {
    return static_cast<std::size_t>((key * 0x9e3779b97f4a7c15ULL) >> (64 - kBits));
  }
  std::vector<std::uint64_t> slots_;
};

bool ascii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// Damerau-Levenshtein distance <= 1 of ASCII text without the matrix: equal but for one
// substitution, one adjacent transposition, or one inserted or deleted character.
bool within_one_edit(std::string_view a, std::string_view b) {
  if (a.size() > b.size()) std::swap(a, b);
  if (b.size() - a.size() > 1) return false;
  std::size_t i = 0;
  while (i < a.size() && a[i] == b[i]) ++i;
  if (i == a.size()) return true;
  if (a.size() == b.size()) {
    if (a.substr(i + 1) == b.substr(i + 1)) return true;
    return i + 1 < a.size() && a[i] == b[i + 1] && a[i + 1] == b[i] &&
           a.substr(i + 2) == b.substr(i + 2);
  }
  return a.substr(i) == b.substr(i + 1);
}

const ValueCodes kNoCodes;

// Candidate pairs a scoring thread takes at a time.
constexpr std::size_t kScoreChunk = 1 << 16;

// How many of a pair's comparisons (in scoring order) the scoring pass prefetches for.
constexpr std::size_t kPrefetchComparisons = 4;

// Value ids above this do not fit the cache's key; such columns are not cached.
constexpr std::uint32_t kMaxCachedId = (1u << 28) - 1;

}  // namespace

struct MatchEngine::Impl {
  MatchSettings settings;
  std::vector<Rule> blocking;       // deterministic rules first, then blocking rules
  std::vector<Rule> deterministic;  // also blocking rules, so their pairs are candidates
  std::vector<std::vector<Level>> levels;
  std::vector<std::string> names;
  std::optional<AddressNormalizer> normalizer;

  // The model.
  bool trained = false;
  double prior = 0;
  std::vector<std::vector<double>> m, u;  // [comparison][level], level 0 unused
  double prior_weight = 0;
  std::vector<double> log2_u_exact;                          // per comparison: log2 of u at level 1
  std::vector<std::array<double, kMaxLevels>> level_weight;  // log2(m / u)

  // A run's data, prepared.
  struct Prepared {
    const Dataset* left = nullptr;
    const Dataset* right = nullptr;  // == left for dedupe
    std::size_t left_rows = 0, right_rows = 0;
    std::vector<Column> columns;
    // Value ids row by row (rows x columns), so one pair reads two short runs of memory.
    std::vector<std::uint32_t> left_ids, right_ids;
    const std::uint32_t* left_row(std::uint32_t r) const { return &left_ids[r * columns.size()]; }
    const std::uint32_t* right_row(std::uint32_t r) const {
      return right != left ? &right_ids[r * columns.size()] : left_row(r);
    }
    std::vector<std::vector<std::uint64_t>> left_keys, right_keys;  // [rule][row]
    int left_id = -1, right_id = -1;
  };

  bool dedupe() const { return settings.link_type == LinkType::kDedupe; }

  Result<std::unique_ptr<Prepared>> prepare(const Dataset& left, const Dataset* right) const;
  Status prepare_column(Prepared& p, std::size_t c) const;
  std::vector<std::uint64_t> rule_keys(const Prepared& p, const Rule& rule, bool right) const;
  std::uint64_t key_part(const Key& key, FieldKind kind, std::string_view raw) const;
  FieldKind key_kind(const Key& key, bool right) const;
  Status init_column(Column& col, std::size_t c) const;
  std::uint32_t intern(Column& col, std::string_view raw) const;

  int compare(const Column& column, std::uint32_t a, std::uint32_t b) const;
  // The levels of a pair of records (their value ids); `cache` (may be null) remembers
  // costly comparisons of value pairs.
  std::uint64_t pattern(const std::vector<Column>& columns, const std::uint32_t* a,
                        const std::uint32_t* b, PairCache* cache) const;
  std::uint64_t pattern(const Prepared& p, std::uint32_t l, std::uint32_t r,
                        PairCache* cache = nullptr) const {
    return pattern(p.columns, p.left_row(l), p.right_row(r), cache);
  }
  double tf_adjustment(const Column& column, std::size_t c, std::uint32_t id) const;
  // The match weight of a pattern; TF adjustments look up the left record's values.
  double weight(const std::vector<Column>& columns, std::uint64_t pattern,
                const std::uint32_t* left) const;
  // Derives the weights from m, u and the prior; marks the engine trained.
  void finalize_model();
  int deterministic_rule(const Prepared& p, std::uint32_t l, std::uint32_t r) const;

  struct Candidates {
    std::vector<std::pair<std::uint32_t, std::uint32_t>> pairs;
    std::vector<RuleReport> reports;
  };
  Candidates block(const Prepared& p) const;
  Result<TrainingReport> train(const Prepared& p, const Candidates& candidates,
                               const std::vector<std::uint64_t>& patterns);
  // The patterns of every `stride`-th candidate pair (all of them with stride 1).
  std::vector<std::uint64_t> compare_all(const Prepared& p, const Candidates& candidates,
                                         std::size_t stride = 1) const;
  // The level of comparison c for two value ids, through the cache when the column is cached.
  int level(const Column& col, std::size_t c, std::uint32_t x, std::uint32_t y,
            PairCache* cache) const;
  std::string record_id(const Dataset& data, int column, std::uint32_t row) const;
};

namespace {

template <typename Fn>
void parallel_for(std::size_t n, int threads, Fn fn) {
  threads = std::max(1, std::min<int>(threads, static_cast<int>(n / 4096) + 1));
  if (threads == 1) {
    fn(0, std::size_t{0}, n);
    return;
  }
  std::vector<std::thread> workers;
  std::size_t chunk =
      (n + static_cast<std::size_t>(threads) - 1) / static_cast<std::size_t>(threads);
  for (int t = 0; t < threads; ++t) {
    std::size_t begin = std::min(n, static_cast<std::size_t>(t) * chunk);
    std::size_t end = std::min(n, begin + chunk);
    workers.emplace_back([&fn, t, begin, end] { fn(t, begin, end); });
  }
  for (auto& w : workers) w.join();
}

// Runs fn(thread, chunk) for every chunk in [0, chunks), handing chunks out as threads free up.
template <typename Fn>
void parallel_chunks(std::size_t chunks, int threads, Fn fn) {
  std::atomic<std::size_t> next{0};
  auto work = [&](int t) {
    for (std::size_t c = next++; c < chunks; c = next++) fn(t, c);
  };
  std::vector<std::thread> workers;
  const int n = std::max(1, std::min<int>(threads, static_cast<int>(chunks)));
  for (int t = 1; t < n; ++t) workers.emplace_back(work, t);
  work(0);
  for (auto& w : workers) w.join();
}

// Runs task(i) for i in [0, n) on up to `threads` threads.
template <typename Fn>
void parallel_tasks(std::size_t n, int threads, Fn task) {
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i = next++; i < n; i = next++) task(i);
  };
  std::vector<std::thread> workers;
  for (int t = 1; t < std::min<int>(threads, static_cast<int>(n)); ++t) workers.emplace_back(work);
  work();
  for (auto& w : workers) w.join();
}

}  // namespace

Status MatchEngine::Impl::init_column(Column& col, std::size_t c) const {
  const ComparisonSpec& spec = settings.comparisons[c];
  col.spec = &spec;
  col.name = names[c];
  col.levels = levels[c];
  col.term_frequency = spec.term_frequency;
  for (const auto& l : col.levels) {
    if (l.test == Test::kSoundex || l.test == Test::kNysiis || l.test == Test::kMetaphone) {
      col.phonetic = true;
    }
    if (l.test == Test::kJaroWinkler) {
      col.lowest_jaro_winkler = std::min(col.lowest_jaro_winkler, l.threshold);
    }
    switch (l.test) {
      case Test::kDamerau:
        col.cached = col.cached || l.edits > 1;  // within one edit is a linear scan
        break;
      case Test::kJaroWinkler:
      case Test::kJaro:
      case Test::kName:
      case Test::kTokenSet:
      case Test::kQgram:
      case Test::kAddressName:
        col.cached = true;
        break;
      default:
        break;
    }
  }
  col.values.assign(1, Value{});
  if (col.phonetic || spec.kind == FieldKind::kAddress) col.codes_of.assign(1, ValueCodes{});
  return Status();
}

std::uint32_t MatchEngine::Impl::intern(Column& col, std::string_view raw) const {
  if (raw.empty()) return 0;
  const ComparisonSpec& spec = *col.spec;
  Interner& codes = *col.codes;
  Value v;
  ValueCodes k;
  std::string cleaned = clean(spec.kind, raw);
  if (spec.kind == FieldKind::kAddress) {
    Result<Address> a = raw.find(',') != std::string_view::npos
                            ? normalizer->normalize(raw)
                            : normalizer->normalize(AddressParts{raw, {}, {}, {}});
    if (a.ok()) {
      cleaned = a->street_line();
      if (!a->municipality.empty()) cleaned += " " + a->last_line();
      std::string civic = a->civic_number + a->civic_suffix;
      if (!a->unit.empty()) civic = a->unit + "-" + civic;
      k.civic = codes.id(civic);
      k.street_name = codes.id(a->street_name);
      std::string street = a->street_name;
      if (!a->street_type.empty()) street += " " + a->street_type;
      if (!a->street_direction.empty()) street += " " + a->street_direction;
      k.street = codes.id(street);
    }
  }
  if (cleaned.empty()) return 0;
  auto [it, inserted] = col.by_clean.emplace(cleaned, 0);
  if (!inserted) return it->second;
  it->second = static_cast<std::uint32_t>(col.values.size());
  v.text = std::move(cleaned);
  for (unsigned char ch : v.text) {
    const std::uint32_t bit = letter_bit(ch);
    // Moves the character's count up one mask: the first mask lacking it gets it.
    for (auto& mask : v.letters) {
      if ((mask & bit) == 0) {
        mask |= bit;
        break;
      }
    }
    v.ascii = v.ascii && ch < 0x80;
  }
  if (spec.kind == FieldKind::kDate) {
    if (auto d = days_since_epoch(raw)) v.number = *d;
  } else if (spec.kind == FieldKind::kNumber) {
    if (auto n = parse_number(raw)) v.number = *n;
  }
  if (col.phonetic) {
    k.soundex = codes.id(soundex(v.text));
    k.nysiis = codes.id(nysiis(v.text));
    auto meta = double_metaphone(v.text);
    k.metaphone1 = codes.id(meta.primary);
    k.metaphone2 = codes.id(meta.alternate);
  }
  col.values.push_back(std::move(v));
  if (!col.codes_of.empty()) col.codes_of.push_back(k);
  return it->second;
}

Status MatchEngine::Impl::prepare_column(Prepared& p, std::size_t c) const {
  Column& col = p.columns[c];
  CIVICBUS_RETURN_IF_ERROR(init_column(col, c));
  const ComparisonSpec& spec = settings.comparisons[c];
  col.left_column = p.left->column(spec.field);
  if (col.left_column < 0) {
    return invalid_argument(
        "comparison '" + col.name + "': column '" + spec.field + "' is not in " +
        (p.left->source().empty() ? "the left records" : "'" + p.left->source() + "'"));
  }
  const std::string& right_field = spec.right_field.empty() ? spec.field : spec.right_field;
  col.right_column = p.right->column(right_field);
  if (col.right_column < 0) {
    return invalid_argument(
        "comparison '" + col.name + "': column '" + right_field + "' is not in " +
        (p.right->source().empty() ? "the right records" : "'" + p.right->source() + "'"));
  }
  // Raw text → value id, so each distinct raw value is cleaned once.
  std::unordered_map<std::string_view, std::uint32_t> by_raw;
  auto lookup = [&](std::string_view raw) {
    auto it = by_raw.find(raw);
    if (it != by_raw.end()) return it->second;
    std::uint32_t id = intern(col, raw);
    by_raw.emplace(raw, id);
    return id;
  };
  col.left_ids.resize(p.left_rows);
  for (std::size_t r = 0; r < p.left_rows; ++r) {
    col.left_ids[r] = lookup(p.left->value(r, col.left_column));
  }
  if (p.right != p.left) {
    col.right_ids.resize(p.right_rows);
    for (std::size_t r = 0; r < p.right_rows; ++r) {
      col.right_ids[r] = lookup(p.right->value(r, col.right_column));
    }
  }
  col.counts.assign(col.values.size(), 0);
  for (auto id : col.left_ids) ++col.counts[id];
  for (auto id : col.right_ids) ++col.counts[id];
  col.non_null = p.left_rows + (p.right != p.left ? p.right_rows : 0) - col.counts[0];
  if (col.term_frequency && col.non_null > 0) {
    col.log2_tf.resize(col.values.size());
    for (std::size_t id = 1; id < col.values.size(); ++id) {
      col.log2_tf[id] =
          std::log2(static_cast<double>(col.counts[id]) / static_cast<double>(col.non_null));
    }
  }
  return Status();
}

std::uint64_t MatchEngine::Impl::key_part(const Key& key, FieldKind kind,
                                          std::string_view raw) const {
  if (raw.empty()) return 0;
  std::string cleaned = clean(kind, raw);
  std::string text;
  switch (key.fn) {
    case Key::Fn::kValue:
      text = std::move(cleaned);
      break;
    case Key::Fn::kSoundex:
      text = soundex(cleaned);
      break;
    case Key::Fn::kNysiis:
      text = nysiis(cleaned);
      break;
    case Key::Fn::kMetaphone:
      text = double_metaphone(cleaned).primary;
      break;
    case Key::Fn::kFirst:
      text = cleaned.substr(0, std::min(cleaned.size(), key.length));
      break;
    case Key::Fn::kYear:
      if (days_since_epoch(raw)) text = cleaned.substr(0, 4);
      break;
    case Key::Fn::kDigits:
      for (char c : cleaned) {
        if (c >= '0' && c <= '9') text += c;
      }
      break;
    case Key::Fn::kStreet:
    case Key::Fn::kCivic: {
      Result<Address> a = raw.find(',') != std::string_view::npos
                              ? normalizer->normalize(raw)
                              : normalizer->normalize(AddressParts{raw, {}, {}, {}});
      if (!a.ok()) break;
      if (key.fn == Key::Fn::kCivic) {
        text = a->civic_number + a->civic_suffix;
      } else {
        text = a->street_name;
        if (!a->street_type.empty()) text += " " + a->street_type;
        if (!a->street_direction.empty()) text += " " + a->street_direction;
      }
      break;
    }
  }
  return text.empty() ? 0 : std::hash<std::string>{}(text) | 1;
}

FieldKind MatchEngine::Impl::key_kind(const Key& key, bool right) const {
  // The field's kind, when a comparison cleans it; plain folding otherwise.
  FieldKind kind = FieldKind::kText;
  for (const auto& c : settings.comparisons) {
    const std::string& f = right && !c.right_field.empty() ? c.right_field : c.field;
    if (f == key.field) kind = c.kind;
  }
  return kind;
}

std::vector<std::uint64_t> MatchEngine::Impl::rule_keys(const Prepared& p, const Rule& rule,
                                                        bool right) const {
  const Dataset& data = right ? *p.right : *p.left;
  std::size_t rows = right ? p.right_rows : p.left_rows;
  std::vector<std::uint64_t> keys(rows, kKeySeed);
  for (std::size_t k = 0; k < rule.keys.size(); ++k) {
    const Key& key = rule.keys[k];
    const FieldKind kind = key_kind(key, right);
    const int column = data.column(key.field);
    std::unordered_map<std::string_view, std::uint64_t> memo;
    for (std::size_t r = 0; r < rows; ++r) {
      if (keys[r] == 0) continue;
      std::string_view raw = data.value(r, column);
      auto it = memo.find(raw);
      if (it == memo.end()) it = memo.emplace(raw, key_part(key, kind, raw)).first;
      keys[r] = combine_key(keys[r], k, it->second);
    }
  }
  return keys;
}

Result<std::unique_ptr<MatchEngine::Impl::Prepared>> MatchEngine::Impl::prepare(
    const Dataset& left, const Dataset* right) const {
  if (right == &left) {
    if (settings.link_type == LinkType::kLink) {
      return invalid_argument(
          "link_type is link, but the left and right datasets are the same object: link two "
          "datasets, or deduplicate this one with link_type dedupe");
    }
    right = nullptr;  // deduplicating one dataset
  }
  const Dataset& r = right != nullptr ? *right : left;
  if (settings.link_type == LinkType::kLink && right == nullptr) {
    return invalid_argument("link_type is link: give a right dataset to link the left one to");
  }
  if (left.size() >= std::numeric_limits<std::uint32_t>::max() / 2 ||
      r.size() >= std::numeric_limits<std::uint32_t>::max() / 2) {
    return invalid_argument("a dataset holds more than 2 billion records");
  }
  auto p = std::make_unique<Prepared>();
  p->left = &left;
  p->right = &r;
  p->left_rows = left.size();
  p->right_rows = r.size();
  if (!settings.unique_id.empty()) {
    p->left_id = left.column(settings.unique_id);
    p->right_id = r.column(settings.unique_id);
    if (p->left_id < 0 || p->right_id < 0) {
      return invalid_argument("unique_id column '" + settings.unique_id + "' is not in " +
                              (p->left_id < 0 ? "the left" : "the right") + " records");
    }
  }
  for (const auto& rule : blocking) {
    for (const auto& key : rule.keys) {
      if (left.column(key.field) < 0 || r.column(key.field) < 0) {
        return invalid_argument("rule '" + rule.name + "': column '" + key.field +
                                "' is not in the " +
                                (left.column(key.field) < 0 ? "left" : "right") + " records");
      }
    }
  }
  p->columns.resize(settings.comparisons.size());
  std::vector<Status> statuses(p->columns.size());
  p->left_keys.resize(blocking.size());
  p->right_keys.resize(blocking.size());
  // Columns and rule keys are independent: one task each.
  const std::size_t columns = p->columns.size();
  parallel_tasks(columns + blocking.size() * (right != nullptr ? 2 : 1), settings.threads,
                 [&](std::size_t task) {
                   if (task < columns) {
                     statuses[task] = prepare_column(*p, task);
                     return;
                   }
                   std::size_t k = task - columns;
                   std::size_t rule = k % blocking.size();
                   if (k < blocking.size()) {
                     p->left_keys[rule] = rule_keys(*p, blocking[rule], false);
                   } else {
                     p->right_keys[rule] = rule_keys(*p, blocking[rule], true);
                   }
                 });
  for (const auto& st : statuses) CIVICBUS_RETURN_IF_ERROR(st);
  const std::size_t n = p->columns.size();
  p->left_ids.resize(p->left_rows * n);
  for (std::size_t c = 0; c < n; ++c) {
    auto& col = p->columns[c];
    for (std::size_t r = 0; r < p->left_rows; ++r) p->left_ids[r * n + c] = col.left_ids[r];
    std::vector<std::uint32_t>().swap(col.left_ids);
    if (right != nullptr) {
      p->right_ids.resize(p->right_rows * n);
      for (std::size_t r = 0; r < p->right_rows; ++r) p->right_ids[r * n + c] = col.right_ids[r];
      std::vector<std::uint32_t>().swap(col.right_ids);
    }
    // A column of mostly distinct values (an identifier) is not cached: its pairs would only
    // evict the other columns' (measured: 15% faster scoring over 1M records without).
    const std::size_t rows = p->left_rows + (right != nullptr ? p->right_rows : 0);
    if (col.values.size() > kMaxCachedId || col.values.size() > rows / 4) col.cached = false;
  }
  return p;
}

int MatchEngine::Impl::compare(const Column& column, std::uint32_t a, std::uint32_t b) const {
  if (a == 0 || b == 0) return 0;
  if (a == b) return 1;  // equal values pass the first level, whatever its test
  const Value& x = column.values[a];
  const Value& y = column.values[b];
  const ValueCodes& ka = column.codes_of.empty() ? kNoCodes : column.codes_of[a];
  const ValueCodes& kb = column.codes_of.empty() ? kNoCodes : column.codes_of[b];
  // A ladder often repeats one measure with falling thresholds (Jaro-Winkler 0.92, 0.88,
  // 0.7): each measure is computed at most once per pair.
  double jw = -1, j = -1, name = -1, tokens = -1, qgram = -1;
  int damerau = -1, lev = -1, lev_limit = -1;
  const std::size_t lx = x.text.size(), ly = y.text.size();
  const std::size_t length_gap = lx > ly ? lx - ly : ly - lx;
  for (std::size_t i = 0; i < column.levels.size(); ++i) {
    const Level& l = column.levels[i];
    bool pass = false;
    switch (l.test) {
      case Test::kExact:
        break;
      case Test::kLevenshtein:
        if (length_gap > static_cast<std::size_t>(l.edits)) break;
        if (lev < 0 || (lev > lev_limit && l.edits > lev_limit)) {
          // The largest limit of the ladder, so later levels reuse the distance.
          int limit = l.edits;
          for (std::size_t k = i + 1; k < column.levels.size(); ++k) {
            if (column.levels[k].test == Test::kLevenshtein) {
              limit = std::max(limit, column.levels[k].edits);
            }
          }
          lev = levenshtein_within(x.text, y.text, limit);
          lev_limit = limit;
        }
        pass = lev <= l.edits;
        break;
      case Test::kDamerau:
        if (length_gap > static_cast<std::size_t>(l.edits)) break;
        if (l.edits == 1 && damerau < 0 && ascii(x.text) && ascii(y.text)) {
          pass = within_one_edit(x.text, y.text);
          break;
        }
        if (damerau < 0) damerau = damerau_levenshtein(x.text, y.text);
        pass = damerau <= l.edits;
        break;
      case Test::kJaroWinkler:
        if (jw < 0) {
          // Most pairs of a block are strangers: a bound from their letters settles them
          // without the full measure.
          jw = x.ascii && y.ascii && jaro_winkler_bound(x, y) < column.lowest_jaro_winkler
                   ? 0.0
                   : jaro_winkler(x.text, y.text);
        }
        pass = jw >= l.threshold;
        break;
      case Test::kJaro:
        if (j < 0) j = jaro(x.text, y.text);
        pass = j >= l.threshold;
        break;
      case Test::kName:
        if (name < 0) name = name_similarity(x.text, y.text);
        pass = name >= l.threshold;
        break;
      case Test::kTokenSet:
        if (tokens < 0) tokens = token_set_similarity(x.text, y.text);
        pass = tokens >= l.threshold;
        break;
      case Test::kQgram:
        if (qgram < 0) qgram = qgram_similarity(x.text, y.text);
        pass = qgram >= l.threshold;
        break;
      case Test::kSoundex:
        pass = ka.soundex != 0 && ka.soundex == kb.soundex;
        break;
      case Test::kNysiis:
        pass = ka.nysiis != 0 && ka.nysiis == kb.nysiis;
        break;
      case Test::kMetaphone:
        pass = ka.metaphone1 != 0 &&
               (ka.metaphone1 == kb.metaphone1 || ka.metaphone1 == kb.metaphone2 ||
                ka.metaphone2 == kb.metaphone1 || ka.metaphone2 == kb.metaphone2);
        break;
      case Test::kNumberAbs:
      case Test::kDateDays:
        pass = std::fabs(x.number - y.number) <= l.threshold;  // false when either is NaN
        break;
      case Test::kNumberRel:
        pass = !std::isnan(x.number) && !std::isnan(y.number) &&
               relative_difference(x.number, y.number) <= l.threshold;
        break;
      case Test::kAddressStreet:
        pass = ka.civic != 0 && ka.civic == kb.civic && ka.street != 0 && ka.street == kb.street;
        break;
      case Test::kAddressName:
        pass = ka.civic != 0 && ka.civic == kb.civic && ka.street_name != 0 &&
               kb.street_name != 0 &&
               jaro_winkler(column.codes->text(ka.street_name),
                            column.codes->text(kb.street_name)) >= l.threshold;
        break;
      case Test::kAddressStreetOnly:
        pass = ka.street != 0 && ka.street == kb.street;
        break;
    }
    if (pass) return static_cast<int>(i) + 1;
  }
  return static_cast<int>(column.levels.size()) + 1;
}

int MatchEngine::Impl::level(const Column& col, std::size_t c, std::uint32_t x, std::uint32_t y,
                             PairCache* cache) const {
  if (x == 0 || y == 0) return 0;
  if (x == y) return 1;
  if (cache == nullptr || !col.cached) return compare(col, x, y);
  const std::uint64_t key = PairCache::key(c, x, y);
  int found = cache->find(key);
  if (found < 0) {
    found = compare(col, x, y);
    cache->put(key, found);
  }
  return found;
}

std::uint64_t MatchEngine::Impl::pattern(const std::vector<Column>& columns, const std::uint32_t* a,
                                         const std::uint32_t* b, PairCache* cache) const {
  std::uint64_t out = 0;
  for (std::size_t c = 0; c < columns.size(); ++c) {
    out |= static_cast<std::uint64_t>(level(columns[c], c, a[c], b[c], cache)) << (4 * c);
  }
  return out;
}

double MatchEngine::Impl::tf_adjustment(const Column& column, std::size_t c,
                                        std::uint32_t id) const {
  if (!column.term_frequency || id == 0 || column.non_null == 0) return 0;
  if (column.levels.empty() || column.levels[0].test != Test::kExact) return 0;
  if (id < column.log2_tf.size()) return log2_u_exact[c] - column.log2_tf[id];
  double tf = static_cast<double>(column.counts[id]) / static_cast<double>(column.non_null);
  double u_exact = u[c][1];
  if (tf <= 0 || u_exact <= 0) return 0;
  return std::log2(u_exact / tf);
}

double MatchEngine::Impl::weight(const std::vector<Column>& columns, std::uint64_t pat,
                                 const std::uint32_t* left) const {
  double w = prior_weight;
  for (std::size_t c = 0; c < columns.size(); ++c) {
    const int level = level_of(pat, c);
    if (level == 0) continue;
    w += level_weight[c][static_cast<std::size_t>(level)];
    if (level == 1 && columns[c].term_frequency) {
      w += tf_adjustment(columns[c], c, left[c]);
    }
  }
  return w;
}

void MatchEngine::Impl::finalize_model() {
  prior_weight = std::log2(prior / (1 - prior));
  log2_u_exact.assign(u.size(), 0);
  for (std::size_t c = 0; c < u.size(); ++c) {
    if (u[c].size() > 1 && u[c][1] > 0) log2_u_exact[c] = std::log2(u[c][1]);
  }
  level_weight.assign(m.size(), {});
  for (std::size_t c = 0; c < m.size(); ++c) {
    for (std::size_t l = 1; l < m[c].size() && l < kMaxLevels; ++l) {
      level_weight[c][l] = std::log2(m[c][l] / u[c][l]);
    }
  }
  trained = true;
}

int MatchEngine::Impl::deterministic_rule(const Prepared& p, std::uint32_t l,
                                          std::uint32_t r) const {
  for (std::size_t d = 0; d < deterministic.size(); ++d) {
    std::uint64_t a = p.left_keys[d][l];
    std::uint64_t b = p.right != p.left ? p.right_keys[d][r] : p.left_keys[d][r];
    if (a != 0 && a == b) return static_cast<int>(d);
  }
  return -1;
}

MatchEngine::Impl::Candidates MatchEngine::Impl::block(const Prepared& p) const {
  Candidates out;
  const bool two = p.right != p.left;
  std::vector<std::vector<std::uint64_t>> skipped(blocking.size());  // oversize blocks' keys
  for (std::size_t rule = 0; rule < blocking.size(); ++rule) {
    RuleReport report;
    report.rule = blocking[rule].name;
    // (key, row), right rows tagged with the top bit.
    constexpr std::uint32_t kRight = 0x80000000u;
    std::vector<std::pair<std::uint64_t, std::uint32_t>> entries;
    entries.reserve(p.left_rows + (two ? p.right_rows : 0));
    for (std::uint32_t r = 0; r < p.left_rows; ++r) {
      if (p.left_keys[rule][r] != 0) entries.emplace_back(p.left_keys[rule][r], r);
    }
    if (two) {
      for (std::uint32_t r = 0; r < p.right_rows; ++r) {
        if (p.right_keys[rule][r] != 0) entries.emplace_back(p.right_keys[rule][r], r | kRight);
      }
    }
    std::sort(entries.begin(), entries.end());
    auto covered = [&](std::uint32_t a, std::uint32_t b) {
      for (std::size_t e = 0; e < rule; ++e) {
        std::uint64_t ka = p.left_keys[e][a];
        std::uint64_t kb = two ? p.right_keys[e][b] : p.left_keys[e][b];
        if (ka != 0 && ka == kb && !std::binary_search(skipped[e].begin(), skipped[e].end(), ka)) {
          return true;
        }
      }
      return false;
    };
    for (std::size_t i = 0; i < entries.size();) {
      std::size_t j = i;
      while (j < entries.size() && entries[j].first == entries[i].first) ++j;
      std::size_t size = j - i;
      ++report.blocks;
      if (size > settings.max_block_size) {
        ++report.skipped_blocks;
        report.skipped_pairs += size * (size - 1) / 2;
        skipped[rule].push_back(entries[i].first);
        i = j;
        continue;
      }
      if (!two) {
        for (std::size_t a = i; a < j; ++a) {
          for (std::size_t b = a + 1; b < j; ++b) {
            std::uint32_t x = entries[a].second, y = entries[b].second;
            if (x > y) std::swap(x, y);
            if (covered(x, y)) continue;
            out.pairs.emplace_back(x, y);
            ++report.candidate_pairs;
          }
        }
      } else {
        // Left rows sort before right rows within a key (the tag bit).
        std::size_t split = i;
        while (split < j && (entries[split].second & kRight) == 0) ++split;
        for (std::size_t a = i; a < split; ++a) {
          for (std::size_t b = split; b < j; ++b) {
            std::uint32_t x = entries[a].second, y = entries[b].second & ~kRight;
            if (covered(x, y)) continue;
            out.pairs.emplace_back(x, y);
            ++report.candidate_pairs;
          }
        }
      }
      i = j;
    }
    std::sort(skipped[rule].begin(), skipped[rule].end());
    out.reports.push_back(std::move(report));
  }
  return out;
}

std::vector<std::uint64_t> MatchEngine::Impl::compare_all(const Prepared& p,
                                                          const Candidates& candidates,
                                                          std::size_t stride) const {
  const std::size_t count = (candidates.pairs.size() + stride - 1) / stride;
  std::vector<std::uint64_t> patterns(count);
  parallel_for(count, settings.threads, [&](int, std::size_t begin, std::size_t end) {
    PairCache cache;
    for (std::size_t i = begin; i < end; ++i) {
      const auto [l, r] = candidates.pairs[i * stride];
      patterns[i] = pattern(p, l, r, &cache);
    }
  });
  return patterns;
}

Result<TrainingReport> MatchEngine::Impl::train(const Prepared& p, const Candidates& candidates,
                                                const std::vector<std::uint64_t>& patterns) {
  TrainingReport report;
  const std::size_t n = p.columns.size();
  const bool two = p.right != p.left;
  // u: level frequencies among random pairs, nearly all non-matches.
  const double total_pairs =
      two ? static_cast<double>(p.left_rows) * static_cast<double>(p.right_rows)
          : static_cast<double>(p.left_rows) * static_cast<double>(p.left_rows - 1) / 2;
  if (total_pairs < 1) return failed_precondition("too few records to train on");
  std::size_t samples = std::min<std::size_t>(settings.training.u_sample_pairs,
                                              static_cast<std::size_t>(total_pairs));
  std::vector<std::vector<std::vector<std::uint64_t>>> counts(
      static_cast<std::size_t>(settings.threads),
      std::vector<std::vector<std::uint64_t>>(n, std::vector<std::uint64_t>(kMaxLevels, 0)));
  parallel_for(samples, settings.threads, [&](int t, std::size_t begin, std::size_t end) {
    std::uint64_t state = settings.training.seed + static_cast<std::uint64_t>(t) * 7919 + begin;
    auto& mine = counts[static_cast<std::size_t>(t)];
    PairCache cache;
    for (std::size_t i = begin; i < end; ++i) {
      std::uint32_t a = static_cast<std::uint32_t>(splitmix(state) % p.left_rows);
      std::uint32_t b = static_cast<std::uint32_t>(splitmix(state) % p.right_rows);
      if (!two && a == b) b = (b + 1) % static_cast<std::uint32_t>(p.left_rows);
      std::uint64_t pat = pattern(p, a, b, &cache);
      for (std::size_t c = 0; c < n; ++c) ++mine[c][static_cast<std::size_t>(level_of(pat, c))];
    }
  });
  report.u_sample_pairs = samples;
  u.assign(n, {});
  m.assign(n, {});
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t levels_count = levels[c].size() + 2;
    std::vector<double> level_counts(levels_count, 0);
    double non_null = 0;
    for (const auto& per_thread : counts) {
      for (std::size_t l = 1; l < levels_count; ++l) {
        level_counts[l] += static_cast<double>(per_thread[c][l]);
        non_null += static_cast<double>(per_thread[c][l]);
      }
    }
    u[c].assign(levels_count, 0);
    m[c].assign(levels_count, 0);
    for (std::size_t l = 1; l < levels_count; ++l) {
      // A level no random pair reached is rare, not impossible: half a pair.
      u[c][l] = (level_counts[l] > 0 ? level_counts[l] : 0.5) / std::max(1.0, non_null);
      // Starting m: agreement likely, decreasing down the ladder.
      m[c][l] = l == levels_count - 1 ? 0.05 : 0.95 * std::pow(0.3, static_cast<double>(l - 1));
    }
    double sum = std::accumulate(m[c].begin() + 1, m[c].end(), 0.0);
    for (std::size_t l = 1; l < levels_count; ++l) m[c][l] /= sum;
  }

  // EM over the candidate pairs' patterns, u held fixed.
  std::unordered_map<std::uint64_t, std::uint64_t> pattern_counts;
  for (auto pat : patterns) ++pattern_counts[pat];
  std::vector<std::pair<std::uint64_t, double>> distinct(pattern_counts.begin(),
                                                         pattern_counts.end());
  double lambda = 0.1;
  report.em_pairs = patterns.size();
  report.candidate_pairs = candidates.pairs.size();
  for (int it = 0; it < settings.training.max_iterations && !distinct.empty(); ++it) {
    std::vector<std::vector<double>> m_sum(n), m_total(n, std::vector<double>(1, 0));
    for (std::size_t c = 0; c < n; ++c) m_sum[c].assign(m[c].size(), 0);
    double expected = 0, all = 0;
    for (const auto& [pat, count] : distinct) {
      double log_m = std::log(lambda), log_u = std::log(1 - lambda);
      for (std::size_t c = 0; c < n; ++c) {
        int level = level_of(pat, c);
        if (level == 0) continue;
        log_m += std::log(m[c][static_cast<std::size_t>(level)]);
        log_u += std::log(u[c][static_cast<std::size_t>(level)]);
      }
      double w = 1.0 / (1.0 + std::exp(log_u - log_m));
      expected += w * count;
      all += count;
      for (std::size_t c = 0; c < n; ++c) {
        int level = level_of(pat, c);
        if (level == 0) continue;
        m_sum[c][static_cast<std::size_t>(level)] += w * count;
        m_total[c][0] += w * count;
      }
    }
    double change = std::fabs(expected / all - lambda);
    lambda = std::clamp(expected / all, 1e-9, 1 - 1e-9);
    for (std::size_t c = 0; c < n; ++c) {
      for (std::size_t l = 1; l < m[c].size(); ++l) {
        double next = m_total[c][0] > 0 ? m_sum[c][l] / m_total[c][0] : m[c][l];
        next = std::max(next, 1e-6);
        change = std::max(change, std::fabs(next - m[c][l]));
        m[c][l] = next;
      }
    }
    report.iterations = it + 1;
    report.expected_matches = expected;
    if (change < settings.training.convergence) {
      report.converged = true;
      break;
    }
  }
  prior = settings.training.prior > 0
              ? settings.training.prior
              : std::clamp(report.expected_matches / total_pairs, 1e-12, 0.5);
  report.prior = prior;
  finalize_model();
  return report;
}

std::string MatchEngine::Impl::record_id(const Dataset& data, int column, std::uint32_t row) const {
  if (column < 0) return std::to_string(row);
  return std::string(data.value(row, column));
}

MatchEngine::MatchEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MatchEngine::~MatchEngine() = default;
MatchEngine::MatchEngine(MatchEngine&&) noexcept = default;
MatchEngine& MatchEngine::operator=(MatchEngine&&) noexcept = default;

Result<MatchEngine> MatchEngine::create(MatchSettings settings) {
  for (auto& c : settings.comparisons) {
    if (c.levels.empty()) c.levels = default_levels(c.kind);
  }
  CIVICBUS_RETURN_IF_ERROR(settings.validate());
  auto impl = std::make_unique<Impl>();
  bool needs_address = false;
  for (const auto& c : settings.comparisons) {
    impl->names.push_back(c.name.empty() ? c.field : c.name);
    std::vector<Level> levels;
    for (const auto& l : c.levels) {
      Level level;
      level.test = test_of(l.test);
      level.threshold = l.threshold;
      level.edits = static_cast<int>(std::lround(l.threshold));
      level.label = level_label(l);
      levels.push_back(std::move(level));
    }
    impl->levels.push_back(std::move(levels));
    needs_address = needs_address || c.kind == FieldKind::kAddress;
  }
  auto make_rule = [&](const RuleSpec& spec) -> Result<Rule> {
    Rule rule;
    for (const auto& k : spec.keys) {
      CIVICBUS_ASSIGN_OR_RETURN(Key key, parse_key(k));
      needs_address = needs_address || key.fn == Key::Fn::kStreet || key.fn == Key::Fn::kCivic;
      rule.keys.push_back(std::move(key));
    }
    if (spec.name.empty()) {
      for (const auto& k : spec.keys) rule.name += (rule.name.empty() ? "" : " & ") + k;
    } else {
      rule.name = spec.name;
    }
    return rule;
  };
  for (const auto& d : settings.deterministic) {
    CIVICBUS_ASSIGN_OR_RETURN(Rule rule, make_rule(d));
    impl->deterministic.push_back(rule);
    impl->blocking.push_back(std::move(rule));
  }
  for (const auto& b : settings.blocking) {
    CIVICBUS_ASSIGN_OR_RETURN(Rule rule, make_rule(b));
    bool duplicate = std::any_of(impl->blocking.begin(), impl->blocking.end(),
                                 [&](const Rule& r) { return r.name == rule.name; });
    if (!duplicate) impl->blocking.push_back(std::move(rule));
  }
  if (needs_address) {
    AddressNormalizerOptions options;
    options.record_corrections = false;
    options.require_civic_number = false;
    CIVICBUS_ASSIGN_OR_RETURN(AddressNormalizer normalizer, AddressNormalizer::create(options));
    impl->normalizer.emplace(std::move(normalizer));
  }
  impl->settings = std::move(settings);
  return MatchEngine(std::move(impl));
}

const MatchSettings& MatchEngine::settings() const {
  return impl_->settings;
}
double MatchEngine::prior() const {
  return impl_->prior;
}
bool MatchEngine::trained() const {
  return impl_->trained;
}

Result<TrainingReport> MatchEngine::train(const Dataset& left, const Dataset* right) {
  CIVICBUS_ASSIGN_OR_RETURN(auto p, impl_->prepare(left, right));
  auto candidates = impl_->block(*p);
  auto patterns = impl_->compare_all(*p, candidates);
  return impl_->train(*p, candidates, patterns);
}

Result<MatchResult> MatchEngine::run(const Dataset& left, const Dataset* right,
                                     bool keep_below_review) {
  MatchResult result;
  auto start = Clock::now();
  CIVICBUS_ASSIGN_OR_RETURN(auto p, impl_->prepare(left, right));
  auto candidates = impl_->block(*p);
  result.rules = candidates.reports;
  result.candidate_pairs = candidates.pairs.size();
  result.block_seconds = seconds_since(start);

  if (!impl_->trained) {
    // EM learns from a sample of the candidate pairs when there are many (every stride-th
    // pair, so every kind of block is in it); the estimates of a few million pairs are as
    // good as those of all, as Splink's training on one blocking rule's pairs shows.
    start = Clock::now();
    const std::size_t sample = std::max<std::size_t>(1, impl_->settings.training.em_sample_pairs);
    const std::size_t stride =
        std::max<std::size_t>(1, (candidates.pairs.size() + sample - 1) / sample);
    auto patterns = impl_->compare_all(*p, candidates, stride);
    CIVICBUS_ASSIGN_OR_RETURN(result.training, impl_->train(*p, candidates, patterns));
    result.train_seconds = seconds_since(start);
  } else {
    result.training.prior = impl_->prior;
  }

  // Every candidate pair is compared and scored in one pass. Comparisons go in the order that
  // sinks a stranger's weight fastest; once a pair's weight plus the most the remaining
  // comparisons could add stays below the review threshold, it is a non-match and the rest
  // of its comparisons are skipped (unless every pair is kept).
  start = Clock::now();
  const double score_cpu_start = cpu_seconds();
  const auto& th = impl_->settings.thresholds;
  const double review_weight = std::log2(th.review / (1 - th.review));
  const std::size_t n = p->columns.size();
  std::vector<std::size_t> comparison_order(n);
  std::iota(comparison_order.begin(), comparison_order.end(), std::size_t{0});
  std::vector<double> gain(n, 0),
      expected(n, 0);  // most a comparison adds; its mean for non-matches
  for (std::size_t c = 0; c < n; ++c) {
    const Column& col = p->columns[c];
    double tf_max = 0;
    if (col.term_frequency && !col.log2_tf.empty()) {
      double rarest = 0;
      for (std::size_t id = 1; id < col.log2_tf.size(); ++id)
        rarest = std::min(rarest, col.log2_tf[id]);
      tf_max = std::max(0.0, impl_->log2_u_exact[c] - rarest);
    }
    for (std::size_t l = 1; l < impl_->m[c].size(); ++l) {
      const double w = impl_->level_weight[c][l] + (l == 1 ? tf_max : 0.0);
      gain[c] = std::max(gain[c], w);
      expected[c] += impl_->u[c][l] * impl_->level_weight[c][l];
    }
  }
  std::sort(comparison_order.begin(), comparison_order.end(),
            [&](std::size_t x, std::size_t y) { return expected[x] < expected[y]; });
  std::vector<double> remaining(n, 0);  // after the k-th comparison in comparison_order
  for (std::size_t k = n; k-- > 1;) remaining[k - 1] = remaining[k] + gain[comparison_order[k]];
  const int threads = std::max(1, impl_->settings.threads);
  // Chunks of pairs are handed out as threads free up (blocks differ in cost); each chunk
  // keeps its pairs (all, or those at or above review) and the chunks are joined in order, so
  // the result does not depend on the scheduling.
  const std::size_t chunks = (candidates.pairs.size() + kScoreChunk - 1) / kScoreChunk;
  std::vector<std::vector<ScoredPair>> kept(chunks);
  std::vector<std::uint64_t> chunk_matches(chunks), chunk_reviews(chunks);
  std::vector<PairCache> caches(static_cast<std::size_t>(threads));
  const Impl& e = *impl_;
  parallel_chunks(chunks, threads, [&](int t, std::size_t chunk) {
    const std::size_t begin = chunk * kScoreChunk;
    const std::size_t end = std::min(candidates.pairs.size(), begin + kScoreChunk);
    auto& mine = kept[chunk];
    if (keep_below_review) mine.reserve(end - begin);
    PairCache& cache = caches[static_cast<std::size_t>(t)];
    std::uint64_t mine_matches = 0, mine_reviews = 0;
    for (std::size_t i = begin; i < end; ++i) {
      // Memory is the cost: ask early for the rows of a pair some way ahead, and for the
      // values and cache slots of a nearer one, whose rows have arrived by then.
      if (i + 16 < end) {
        const auto [l, r] = candidates.pairs[i + 16];
        __builtin_prefetch(p->left_row(l));
        __builtin_prefetch(p->right_row(r));
      }
      if (i + 8 < end) {
        const auto [l, r] = candidates.pairs[i + 8];
        const std::uint32_t* a = p->left_row(l);
        const std::uint32_t* b = p->right_row(r);
        // The comparisons a stranger needs before it is dropped: the first few in order.
        for (std::size_t k = 0; k < std::min<std::size_t>(n, kPrefetchComparisons); ++k) {
          const std::size_t c = comparison_order[k];
          if (a[c] == b[c] || a[c] == 0 || b[c] == 0) continue;
          const Column& col = p->columns[c];
          if (col.cached) cache.prefetch(PairCache::key(c, a[c], b[c]));
          __builtin_prefetch(&col.values[a[c]]);
          __builtin_prefetch(&col.values[b[c]]);
        }
      }
      const auto [l, r] = candidates.pairs[i];
      const int d = e.deterministic_rule(*p, l, r);
      const bool may_stop = !keep_below_review && d < 0;
      const std::uint32_t* a = p->left_row(l);
      const std::uint32_t* b = p->right_row(r);
      double w = e.prior_weight;
      std::uint64_t pat = 0;
      bool stopped = false;
      for (std::size_t k = 0; k < n; ++k) {
        const std::size_t c = comparison_order[k];
        const Column& col = p->columns[c];
        const int lv = e.level(col, c, a[c], b[c], &cache);
        pat |= static_cast<std::uint64_t>(lv) << (4 * c);
        if (lv > 0) {
          w += e.level_weight[c][static_cast<std::size_t>(lv)];
          if (lv == 1 && col.term_frequency) w += e.tf_adjustment(col, c, a[c]);
        }
        if (may_stop && w + remaining[k] < review_weight) {
          stopped = true;
          break;
        }
      }
      if (stopped) continue;
      ScoredPair s;
      s.left = l;
      s.right = r;
      s.pattern = pat;
      s.match_weight = w;
      s.match_probability = d >= 0 ? 1.0 : 1.0 / (1.0 + std::exp2(-w));
      s.deterministic_rule = static_cast<std::int16_t>(d);
      if (s.match_probability >= th.match) {
        s.decision = ScoredPair::Decision::kMatch;
        ++mine_matches;
      } else if (s.match_probability >= th.review) {
        s.decision = ScoredPair::Decision::kReview;
        ++mine_reviews;
      } else if (!keep_below_review) {
        continue;
      }
      mine.push_back(s);
    }
    chunk_matches[chunk] = mine_matches;
    chunk_reviews[chunk] = mine_reviews;
  });
  std::vector<ScoredPair> scored;
  std::size_t total = 0;
  for (const auto& k : kept) total += k.size();
  scored.reserve(total);
  for (auto& k : kept) {
    scored.insert(scored.end(), k.begin(), k.end());
    std::vector<ScoredPair>().swap(k);
  }
  const std::uint64_t matches =
      std::accumulate(chunk_matches.begin(), chunk_matches.end(), std::uint64_t{0});
  const std::uint64_t reviews =
      std::accumulate(chunk_reviews.begin(), chunk_reviews.end(), std::uint64_t{0});
  result.score_seconds = seconds_since(start);
  result.score_cpu_seconds = cpu_seconds() - score_cpu_start;
  result.matches = matches;
  result.reviews = reviews;

  // Clusters: connected components of the matches (one-to-one: best pairs first, each record
  // of a linkage at most once).
  start = Clock::now();
  const bool two = p->right != p->left;
  const std::size_t nodes = p->left_rows + (two ? p->right_rows : 0);
  std::vector<std::uint32_t> parent(nodes);
  std::iota(parent.begin(), parent.end(), 0u);
  auto find = [&](std::uint32_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < scored.size(); ++i) {
    if (scored[i].decision == ScoredPair::Decision::kMatch) order.push_back(i);
  }
  std::vector<char> used;
  if (impl_->settings.one_to_one) {
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return scored[a].match_probability != scored[b].match_probability
                 ? scored[a].match_probability > scored[b].match_probability
                 : scored[a].match_weight > scored[b].match_weight;
    });
    used.assign(nodes, 0);
  }
  const auto offset = static_cast<std::uint32_t>(two ? p->left_rows : 0);
  for (std::size_t i : order) {
    std::uint32_t a = scored[i].left, b = scored[i].right + offset;
    if (!used.empty()) {
      if (used[a] || used[b]) continue;
      used[a] = used[b] = 1;
    }
    std::uint32_t ra = find(a), rb = find(b);
    if (ra != rb) parent[std::max(ra, rb)] = std::min(ra, rb);
  }
  result.cluster.resize(nodes);
  for (std::uint32_t x = 0; x < nodes; ++x) {
    result.cluster[x] = find(x);
    if (result.cluster[x] == x) ++result.clusters;
  }
  result.cluster_seconds = seconds_since(start);

  result.pairs = std::move(scored);
  return result;
}

std::string MatchEngine::record_id(const Dataset& data, std::uint32_t row) const {
  int column = impl_->settings.unique_id.empty() ? -1 : data.column(impl_->settings.unique_id);
  return impl_->record_id(data, column, row);
}

Result<std::vector<PairExplanation>> MatchEngine::explain(
    const Dataset& left, const Dataset* right,
    const std::vector<std::pair<std::uint32_t, std::uint32_t>>& pairs) const {
  if (!impl_->trained)
    return failed_precondition("the engine is not trained: run or train it first");
  CIVICBUS_ASSIGN_OR_RETURN(auto prepared, impl_->prepare(left, right));
  const auto& p = *prepared;
  std::vector<PairExplanation> out;
  for (auto [left_row, right_row] : pairs) {
    if (left_row >= p.left_rows || right_row >= p.right_rows) {
      return out_of_range("pair (" + std::to_string(left_row) + ", " + std::to_string(right_row) +
                          ") is outside the datasets");
    }
    PairExplanation e;
    e.left_id = impl_->record_id(left, p.left_id, left_row);
    e.right_id = impl_->record_id(*p.right, p.right_id, right_row);
    std::uint64_t pat = impl_->pattern(p, left_row, right_row);
    e.prior_weight = std::log2(impl_->prior / (1 - impl_->prior));
    e.match_weight = e.prior_weight;
    for (std::size_t c = 0; c < p.columns.size(); ++c) {
      const Column& col = p.columns[c];
      FieldExplanation f;
      f.comparison = col.name;
      std::uint32_t a = p.left_row(left_row)[c];
      std::uint32_t b = p.right_row(right_row)[c];
      f.left_value = col.values[a].text;
      f.right_value = col.values[b].text;
      const int level = level_of(pat, c);
      const int last = static_cast<int>(col.levels.size()) + 1;
      f.level = level == 0      ? "null"
                : level == last ? "else"
                                : col.levels[static_cast<std::size_t>(level - 1)].label;
      if (level > 0) {
        f.m = impl_->m[c][static_cast<std::size_t>(level)];
        f.u = impl_->u[c][static_cast<std::size_t>(level)];
        f.weight = std::log2(f.m / f.u);
        if (level == 1) f.tf_adjustment = impl_->tf_adjustment(col, c, a);
      }
      e.match_weight += f.weight + f.tf_adjustment;
      e.fields.push_back(std::move(f));
    }
    e.match_probability = 1.0 / (1.0 + std::exp2(-e.match_weight));
    int d = impl_->deterministic_rule(p, left_row, right_row);
    if (d >= 0) {
      e.deterministic_rule = impl_->deterministic[static_cast<std::size_t>(d)].name;
      e.match_probability = 1.0;
    }
    out.push_back(std::move(e));
  }
  return out;
}

Json PairExplanation::to_json() const {
  Json fields_json = Json::array();
  for (const auto& f : fields) {
    fields_json.push_back(Json::object({{"comparison", f.comparison},
                                        {"left", f.left_value},
                                        {"right", f.right_value},
                                        {"level", f.level},
                                        {"m", f.m},
                                        {"u", f.u},
                                        {"weight", f.weight},
                                        {"tf_adjustment", f.tf_adjustment}}));
  }
  Json out = Json::object({{"left_id", left_id},
                           {"right_id", right_id},
                           {"prior_weight", prior_weight},
                           {"fields", std::move(fields_json)},
                           {"match_weight", match_weight},
                           {"match_probability", match_probability}});
  if (!deterministic_rule.empty()) out.set("deterministic_rule", deterministic_rule);
  return out;
}

std::string PairExplanation::to_text() const {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%s ~ %s\n  %-18s %+8.2f\n", left_id.c_str(), right_id.c_str(),
                "prior", prior_weight);
  out += line;
  for (const auto& f : fields) {
    std::string values = f.left_value + " | " + f.right_value;
    if (values.size() > 40) values = values.substr(0, 37) + "...";
    std::snprintf(line, sizeof line, "  %-18s %+8.2f  %-26s %s%s\n", f.comparison.c_str(),
                  f.weight + f.tf_adjustment, f.level.c_str(), values.c_str(),
                  f.tf_adjustment != 0 ? "  (term frequency adjusted)" : "");
    out += line;
  }
  std::snprintf(
      line, sizeof line, "  %-18s %+8.2f  probability %.6f%s\n", "match weight", match_weight,
      match_probability,
      deterministic_rule.empty() ? "" : ("  (deterministic: " + deterministic_rule + ")").c_str());
  out += line;
  return out;
}

std::vector<ComparisonParameters> MatchEngine::parameters() const {
  std::vector<ComparisonParameters> out;
  for (std::size_t c = 0; c < impl_->levels.size(); ++c) {
    ComparisonParameters cp;
    cp.name = impl_->names[c];
    for (std::size_t l = 0; l <= impl_->levels[c].size(); ++l) {
      LevelParameters lp;
      lp.label = l < impl_->levels[c].size() ? impl_->levels[c][l].label : "else";
      if (impl_->trained) {
        lp.m = impl_->m[c][l + 1];
        lp.u = impl_->u[c][l + 1];
      }
      cp.levels.push_back(std::move(lp));
    }
    out.push_back(std::move(cp));
  }
  return out;
}

Json MatchEngine::model_json() const {
  Json comparisons = Json::array();
  for (const auto& c : parameters()) {
    Json levels = Json::array();
    for (const auto& l : c.levels) {
      levels.push_back(Json::object({{"level", l.label}, {"m", l.m}, {"u", l.u}}));
    }
    comparisons.push_back(Json::object({{"name", c.name}, {"levels", std::move(levels)}}));
  }
  return Json::object({{"prior", impl_->prior},
                       {"trained", impl_->trained},
                       {"comparisons", std::move(comparisons)}});
}

Status MatchEngine::load_model(const Json& model) {
  const Json* comparisons = model.find("comparisons");
  const Json* prior = model.find("prior");
  if (comparisons == nullptr || !comparisons->is_array() || prior == nullptr ||
      !prior->is_number()) {
    return invalid_argument("a model has 'prior' and 'comparisons' (MatchEngine::model_json)");
  }
  if (comparisons->size() != impl_->levels.size()) {
    return invalid_argument("the model has " + std::to_string(comparisons->size()) +
                            " comparisons; the settings have " +
                            std::to_string(impl_->levels.size()));
  }
  std::vector<std::vector<double>> m, u;
  for (std::size_t c = 0; c < impl_->levels.size(); ++c) {
    const Json& jc = comparisons->as_array()[c];
    if (jc.get_string("name") != impl_->names[c]) {
      return invalid_argument("model comparison " + std::to_string(c) + " is '" +
                              jc.get_string("name") + "'; the settings have '" + impl_->names[c] +
                              "'");
    }
    const Json* levels = jc.find("levels");
    if (levels == nullptr || !levels->is_array() || levels->size() != impl_->levels[c].size() + 1) {
      return invalid_argument("model comparison '" + impl_->names[c] +
                              "' does not have the settings' levels");
    }
    m.emplace_back(1, 0);
    u.emplace_back(1, 0);
    for (const auto& l : levels->as_array()) {
      const Json* jm = l.find("m");
      const Json* ju = l.find("u");
      if (jm == nullptr || ju == nullptr || !jm->is_number() || !ju->is_number() ||
          jm->as_double() <= 0 || ju->as_double() <= 0) {
        return invalid_argument("model comparison '" + impl_->names[c] +
                                "': each level has m and u in (0, 1]");
      }
      m.back().push_back(jm->as_double());
      u.back().push_back(ju->as_double());
    }
  }
  double p = prior->as_double();
  if (!(p > 0 && p < 1)) return invalid_argument("model prior is a probability in (0, 1)");
  impl_->m = std::move(m);
  impl_->u = std::move(u);
  impl_->prior = p;
  impl_->finalize_model();
  return Status();
}

Status MatchEngine::train_from_labels(const Dataset& left, const Dataset* right,
                                      const std::vector<LabelledPair>& labels) {
  CIVICBUS_ASSIGN_OR_RETURN(auto prepared, impl_->prepare(left, right));
  const auto& p = *prepared;
  // Record id → row.
  std::unordered_map<std::string, std::uint32_t> left_rows, right_rows;
  for (std::uint32_t r = 0; r < p.left_rows; ++r) {
    left_rows.emplace(impl_->record_id(left, p.left_id, r), r);
  }
  if (p.right != p.left) {
    for (std::uint32_t r = 0; r < p.right_rows; ++r) {
      right_rows.emplace(impl_->record_id(*p.right, p.right_id, r), r);
    }
  }
  const auto& rights = p.right != p.left ? right_rows : left_rows;
  const std::size_t n = p.columns.size();
  std::vector<std::vector<double>> match_counts(n), non_counts(n);
  for (std::size_t c = 0; c < n; ++c) {
    match_counts[c].assign(impl_->levels[c].size() + 2, 0);
    non_counts[c].assign(impl_->levels[c].size() + 2, 0);
  }
  std::size_t matches = 0, non_matches = 0;
  for (const auto& label : labels) {
    auto a = left_rows.find(label.left_id);
    auto b = rights.find(label.right_id);
    if (a == left_rows.end() || b == rights.end()) {
      return not_found("labelled pair (" + label.left_id + ", " + label.right_id +
                       "): no record has id '" +
                       (a == left_rows.end() ? label.left_id : label.right_id) + "'");
    }
    std::uint64_t pat = impl_->pattern(p, a->second, b->second);
    auto& counts = label.match ? match_counts : non_counts;
    (label.match ? matches : non_matches)++;
    for (std::size_t c = 0; c < n; ++c) {
      int level = level_of(pat, c);
      if (level > 0) counts[c][static_cast<std::size_t>(level)] += 1;
    }
  }
  if (matches == 0) return invalid_argument("the labels hold no match to learn m from");
  const bool keep_u = non_matches < 100 && impl_->trained;
  if (!impl_->trained && non_matches == 0) {
    return invalid_argument("an untrained engine needs non-matches among the labels to learn u");
  }
  impl_->m.assign(n, {});
  if (!keep_u) impl_->u.assign(n, {});
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t levels_count = impl_->levels[c].size() + 2;
    // Laplace smoothing: a level no labelled pair reached keeps a small probability.
    double mt = 0, nt = 0;
    for (std::size_t l = 1; l < levels_count; ++l) {
      mt += match_counts[c][l];
      nt += non_counts[c][l];
    }
    impl_->m[c].assign(levels_count, 0);
    if (!keep_u) impl_->u[c].assign(levels_count, 0);
    for (std::size_t l = 1; l < levels_count; ++l) {
      impl_->m[c][l] =
          (match_counts[c][l] + 0.5) / (mt + 0.5 * static_cast<double>(levels_count - 1));
      if (!keep_u) {
        impl_->u[c][l] =
            (non_counts[c][l] + 0.5) / (nt + 0.5 * static_cast<double>(levels_count - 1));
      }
    }
  }
  if (!impl_->trained || impl_->prior <= 0) {
    double total =
        p.right != p.left
            ? static_cast<double>(p.left_rows) * static_cast<double>(p.right_rows)
            : static_cast<double>(p.left_rows) * static_cast<double>(p.left_rows - 1) / 2;
    impl_->prior =
        impl_->settings.training.prior > 0
            ? impl_->settings.training.prior
            : std::clamp(static_cast<double>(matches) / std::max(1.0, total), 1e-12, 0.5);
  }
  impl_->finalize_model();
  return Status();
}

}  // namespace civicbus::match

namespace civicbus::match {

struct MatchIndex::Impl {
  const MatchEngine::Impl* engine = nullptr;
  std::vector<Column> columns;
  std::vector<std::uint32_t> ids;  // rows x columns
  std::vector<int> value_index;    // per comparison: its position in add()'s values
  struct RuleState {
    std::vector<std::pair<int, FieldKind>> parts;  // per key: position in values, kind
    std::unordered_map<std::uint64_t, std::vector<std::uint32_t>> blocks;
    std::vector<std::uint64_t> keys;  // per row
  };
  std::vector<RuleState> rules;
  std::size_t rows = 0;
  std::uint64_t compared = 0, skipped = 0;
};

MatchIndex::MatchIndex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MatchIndex::~MatchIndex() = default;
MatchIndex::MatchIndex(MatchIndex&&) noexcept = default;
MatchIndex& MatchIndex::operator=(MatchIndex&&) noexcept = default;

Result<MatchIndex> MatchIndex::create(const MatchEngine& engine, std::vector<std::string> columns) {
  const MatchEngine::Impl& e = *engine.impl_;
  if (!e.trained) {
    return failed_precondition(
        "a match index scores with a trained model: train the engine on a sample or load a "
        "model first");
  }
  if (e.settings.link_type != LinkType::kDedupe) {
    return invalid_argument("a match index deduplicates one stream; link_type must be dedupe");
  }
  auto position = [&](const std::string& field) {
    auto it = std::find(columns.begin(), columns.end(), field);
    return it == columns.end() ? -1 : static_cast<int>(it - columns.begin());
  };
  auto impl = std::make_unique<Impl>();
  impl->engine = &e;
  impl->columns.resize(e.settings.comparisons.size());
  for (std::size_t c = 0; c < impl->columns.size(); ++c) {
    CIVICBUS_RETURN_IF_ERROR(e.init_column(impl->columns[c], c));
    int at = position(e.settings.comparisons[c].field);
    if (at < 0) {
      return invalid_argument("comparison '" + e.names[c] + "': column '" +
                              e.settings.comparisons[c].field +
                              "' is not among the records' columns");
    }
    impl->value_index.push_back(at);
  }
  for (const auto& rule : e.blocking) {
    Impl::RuleState state;
    for (const auto& key : rule.keys) {
      int at = position(key.field);
      if (at < 0) {
        return invalid_argument("rule '" + rule.name + "': column '" + key.field +
                                "' is not among the records' columns");
      }
      state.parts.emplace_back(at, e.key_kind(key, false));
    }
    impl->rules.push_back(std::move(state));
  }
  return MatchIndex(std::move(impl));
}

std::optional<MatchIndex::Match> MatchIndex::add(const std::vector<std::string_view>& values) {
  Impl& x = *impl_;
  const MatchEngine::Impl& e = *x.engine;
  auto value = [&](int at) {
    return static_cast<std::size_t>(at) < values.size() ? values[static_cast<std::size_t>(at)]
                                                        : std::string_view();
  };
  const auto row = static_cast<std::uint32_t>(x.rows);
  for (std::size_t c = 0; c < x.columns.size(); ++c) {
    Column& col = x.columns[c];
    std::uint32_t id = e.intern(col, value(x.value_index[c]));
    x.ids.push_back(id);
    if (col.counts.size() < col.values.size()) col.counts.resize(col.values.size(), 0);
    ++col.counts[id];
    if (id != 0) ++col.non_null;
  }
  // Candidates: earlier rows sharing any rule's key (each once).
  std::vector<std::uint32_t> candidates;
  for (std::size_t r = 0; r < x.rules.size(); ++r) {
    auto& rule = x.rules[r];
    std::uint64_t key = kKeySeed;
    for (std::size_t k = 0; k < rule.parts.size(); ++k) {
      key = combine_key(
          key, k,
          e.key_part(e.blocking[r].keys[k], rule.parts[k].second, value(rule.parts[k].first)));
    }
    rule.keys.push_back(key);
    if (key == 0) continue;
    auto& block = rule.blocks[key];
    if (block.size() >= e.settings.max_block_size) {
      ++x.skipped;
      continue;
    }
    candidates.insert(candidates.end(), block.begin(), block.end());
    block.push_back(row);
  }
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  x.rows++;

  std::optional<Match> best;
  for (std::uint32_t other : candidates) {
    const std::uint32_t* mine = &x.ids[row * x.columns.size()];
    std::uint64_t pat = e.pattern(x.columns, mine, &x.ids[other * x.columns.size()], nullptr);
    ++x.compared;
    Match m;
    m.row = other;
    m.match_weight = e.weight(x.columns, pat, mine);
    m.match_probability = 1.0 / (1.0 + std::exp2(-m.match_weight));
    for (std::size_t d = 0; d < e.deterministic.size(); ++d) {
      if (x.rules[d].keys[row] != 0 && x.rules[d].keys[row] == x.rules[d].keys[other]) {
        m.deterministic_rule = e.deterministic[d].name;
        m.match_probability = 1.0;
        break;
      }
    }
    const auto& th = e.settings.thresholds;
    m.decision = m.match_probability >= th.match    ? ScoredPair::Decision::kMatch
                 : m.match_probability >= th.review ? ScoredPair::Decision::kReview
                                                    : ScoredPair::Decision::kNonMatch;
    if (m.decision == ScoredPair::Decision::kNonMatch) continue;
    if (!best || m.match_probability > best->match_probability ||
        (m.match_probability == best->match_probability && m.match_weight > best->match_weight)) {
      best = std::move(m);
    }
  }
  return best;
}

std::size_t MatchIndex::size() const {
  return impl_->rows;
}
std::uint64_t MatchIndex::compared_pairs() const {
  return impl_->compared;
}
std::uint64_t MatchIndex::skipped_blocks() const {
  return impl_->skipped;
}

}  // namespace civicbus::match
