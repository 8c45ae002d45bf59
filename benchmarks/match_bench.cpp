// match_bench: the MatchEngine's accuracy and speed.
//
//   febrl     unsupervised (EM) deduplication of FEBRL datasets 1-3 (../shared/conformance/
//             febrl): pairwise precision, recall and F1 of the pairs scored at match
//             probability >= 0.5, against the files' true pairs. Splink 4 publishes F1 0.993 on
//             dataset3 with unsupervised EM; it cannot run here (no Python packages), so the VS
//             line compares with that published figure, not a measurement of this run.
//   link      the same engine linking two files: dataset1's originals against their
//             duplicates, clusters one-to-one; F1 of the linked pairs.
//   speed     --records N (1,000,000) FEBRL-like person records generated from the datasets'
//             own name, street and suburb values, a third of them duplicated with typos,
//             missing values and transposed digits; deduplicated end to end (prepare, block,
//             train, score, cluster). Prints scored candidate pairs per second (comparison
//             vectors and weights, 2 threads) and the total seconds.
//   address   Canadian addresses normalised per second, 1 and 2 threads, over the inputs of
//             the 514-row hand-checked table (tests/match/data/canadian_addresses.tsv),
//             corrections not described (as the pipeline stage runs it).
//
// Flags: --only febrl|link|speed|address  --records N  --febrl DIR
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "bench_common.hpp"
#include "civicbus/match/address.hpp"
#include "civicbus/match/engine.hpp"

using namespace civicbus;
using namespace civicbus::match;
using namespace civicbus::bench;

namespace {

struct Flags {
  std::string only;
  std::size_t records = 1'000'000;
  std::string febrl = CIVICBUS_FEBRL_DIR;
};

Flags parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--only") {
      f.only = v;
    } else if (k == "--records") {
      f.records = std::stoul(v);
    } else if (k == "--febrl") {
      f.febrl = v;
    } else {
      throw std::runtime_error("unknown flag " + k);
    }
  }
  return f;
}

template <typename T>
T check(Result<T> r, std::string_view what) {
  if (!r.ok()) throw std::runtime_error(fmt::format("{}: {}", what, r.status().to_string()));
  return std::move(r).value();
}

double seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The FEBRL settings: every column compared, names with term-frequency adjustment, blocking
// on the identifiers a clerk would try first.
MatchSettings febrl_settings(LinkType link_type) {
  auto json = check(Json::parse(R"json({
    "unique_id": "rec_id",
    "comparisons": [
      {"field": "given_name", "kind": "name", "term_frequency": true},
      {"field": "surname", "kind": "name", "term_frequency": true},
      {"field": "date_of_birth", "kind": "date"},
      {"field": "soc_sec_id", "kind": "identifier"},
      {"field": "street_number", "kind": "identifier", "levels": ["exact", {"damerau_levenshtein": 1}]},
      {"field": "address_1", "kind": "text", "levels": ["exact", {"jaro_winkler": 0.9}, {"jaro_winkler": 0.75}]},
      {"field": "address_2", "kind": "text", "levels": ["exact", {"jaro_winkler": 0.9}]},
      {"field": "suburb", "kind": "text", "levels": ["exact", {"jaro_winkler": 0.9}]},
      {"field": "postcode", "kind": "postal_code"},
      {"field": "state", "kind": "text", "levels": ["exact"]}
    ],
    "blocking": [
      ["soc_sec_id"],
      ["given_name", "surname"],
      ["date_of_birth"],
      ["postcode", "street_number"],
      ["soundex(surname)", "year(date_of_birth)"],
      ["first(given_name, 3)", "postcode"]
    ],
    "thresholds": {"match": 0.5, "review": 0.2}
  })json"),
                    "settings json");
  auto settings = check(MatchSettings::from_json(json), "settings");
  settings.link_type = link_type;
  return settings;
}

struct PairKey {
  std::string a, b;
  bool operator==(const PairKey&) const = default;
};
struct PairHash {
  std::size_t operator()(const PairKey& p) const {
    return std::hash<std::string>{}(p.a) * 31 + std::hash<std::string>{}(p.b);
  }
};
PairKey ordered(std::string a, std::string b) {
  if (b < a) std::swap(a, b);
  return {std::move(a), std::move(b)};
}

struct Accuracy {
  std::uint64_t tp = 0, fp = 0, fn = 0;
  double precision = 0, recall = 0, f1 = 0;
};

std::unordered_set<PairKey, PairHash> true_pairs(const std::string& path) {
  auto truth = check(Dataset::read_csv(path), path);
  std::unordered_set<PairKey, PairHash> out;
  for (std::size_t r = 0; r < truth.size(); ++r) {
    out.insert(ordered(std::string(truth.value(r, 0)), std::string(truth.value(r, 1))));
  }
  return out;
}

Accuracy accuracy(const std::unordered_set<PairKey, PairHash>& truth,
                  const std::unordered_set<PairKey, PairHash>& predicted) {
  Accuracy a;
  for (const auto& p : predicted) (truth.count(p) ? a.tp : a.fp)++;
  a.fn = truth.size() - a.tp;
  a.precision = a.tp + a.fp > 0 ? static_cast<double>(a.tp) / static_cast<double>(a.tp + a.fp) : 0;
  a.recall = a.tp + a.fn > 0 ? static_cast<double>(a.tp) / static_cast<double>(a.tp + a.fn) : 0;
  a.f1 = a.precision + a.recall > 0 ? 2 * a.precision * a.recall / (a.precision + a.recall) : 0;
  return a;
}

void run_febrl(const Flags& flags) {
  for (int n = 1; n <= 3; ++n) {
    std::string file = fmt::format("{}/dataset{}.csv", flags.febrl, n);
    auto data = check(Dataset::read_csv(file), file);
    auto truth = true_pairs(fmt::format("{}/dataset{}_true_pairs.csv", flags.febrl, n));
    auto engine = check(MatchEngine::create(febrl_settings(LinkType::kDedupe)), "engine");
    auto start = std::chrono::steady_clock::now();
    auto result = check(engine.run(data), "run");
    double total = seconds(start);
    std::unordered_set<PairKey, PairHash> predicted;
    for (const auto& p : result.pairs) {
      if (p.match_probability >= 0.5) {
        predicted.insert(ordered(engine.record_id(data, p.left), engine.record_id(data, p.right)));
      }
    }
    Accuracy a = accuracy(truth, predicted);
    print_bench(fmt::format("match_febrl_dataset{}", n),
                {{"records", data.size()},
                 {"candidate_pairs", result.candidate_pairs},
                 {"true_pairs", truth.size()},
                 {"predicted_pairs", predicted.size()},
                 {"tp", a.tp},
                 {"fp", a.fp},
                 {"fn", a.fn},
                 {"precision", a.precision},
                 {"recall", a.recall},
                 {"f1", a.f1},
                 {"em_iterations", result.training.iterations},
                 {"prior", result.training.prior},
                 {"seconds", total}});
    if (n == 3)
      print_vs("match_febrl_dataset3_f1", a.f1, 0.993, "splink4_published_em", "f1", true);
  }
}

void run_link(const Flags& flags) {
  std::string file = flags.febrl + "/dataset1.csv";
  auto all = check(Dataset::read_csv(file), file);
  Dataset left(all.columns(), "originals"), right(all.columns(), "duplicates");
  std::vector<std::string_view> values(all.columns().size());
  for (std::size_t r = 0; r < all.size(); ++r) {
    for (std::size_t c = 0; c < values.size(); ++c) values[c] = all.value(r, static_cast<int>(c));
    (values[0].find("-org") != std::string_view::npos ? left : right).add(values);
  }
  auto truth = true_pairs(flags.febrl + "/dataset1_true_pairs.csv");
  auto settings = febrl_settings(LinkType::kLink);
  settings.one_to_one = true;
  auto engine = check(MatchEngine::create(settings), "engine");
  auto start = std::chrono::steady_clock::now();
  auto result = check(engine.run(left, &right), "link");
  double total = seconds(start);
  // Linked pairs: a left and a right record in one cluster.
  std::unordered_set<PairKey, PairHash> predicted;
  std::unordered_map<std::uint32_t, std::vector<std::string>> members_left, members_right;
  for (std::uint32_t r = 0; r < left.size(); ++r) {
    members_left[result.cluster[r]].push_back(engine.record_id(left, r));
  }
  for (std::uint32_t r = 0; r < right.size(); ++r) {
    members_right[result.cluster[left.size() + r]].push_back(engine.record_id(right, r));
  }
  for (const auto& [cluster, ls] : members_left) {
    auto it = members_right.find(cluster);
    if (it == members_right.end()) continue;
    for (const auto& a : ls) {
      for (const auto& b : it->second) predicted.insert(ordered(a, b));
    }
  }
  Accuracy a = accuracy(truth, predicted);
  print_bench("match_febrl_link_dataset1", {{"left", left.size()},
                                            {"right", right.size()},
                                            {"candidate_pairs", result.candidate_pairs},
                                            {"linked_pairs", predicted.size()},
                                            {"precision", a.precision},
                                            {"recall", a.recall},
                                            {"f1", a.f1},
                                            {"one_to_one", 1},
                                            {"seconds", total}});
}

// Person records like FEBRL's, from the datasets' own values; duplicates carry the same kinds
// of errors (typos, missing values, transposed digits).
void generate(const Flags& flags, std::size_t records, Dataset& out) {
  auto source = check(Dataset::read_csv(flags.febrl + "/dataset3.csv"), "dataset3");
  std::vector<std::vector<std::string>> vocab(source.columns().size());
  for (std::size_t c = 0; c < vocab.size(); ++c) {
    std::set<std::string> seen;
    for (std::size_t r = 0; r < source.size(); ++r) {
      auto v = source.value(r, static_cast<int>(c));
      if (!v.empty()) seen.emplace(v);
    }
    vocab[c].assign(seen.begin(), seen.end());
  }
  std::mt19937_64 rng(7);
  auto pick = [&](std::size_t c) -> const std::string& {
    return vocab[c][rng() % vocab[c].size()];
  };
  auto digits = [&](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += static_cast<char>('0' + rng() % 10);
    return s;
  };
  auto typo = [&](std::string s) {
    if (s.size() < 2) return s;
    std::size_t i = rng() % (s.size() - 1);
    switch (rng() % 4) {
      case 0:
        s[i] = static_cast<char>('a' + rng() % 26);
        break;
      case 1:
        s.erase(i, 1);
        break;
      case 2:
        s.insert(i, 1, static_cast<char>('a' + rng() % 26));
        break;
      default:
        std::swap(s[i], s[i + 1]);
    }
    return s;
  };
  const std::size_t originals = records * 2 / 3;
  std::vector<std::vector<std::string>> base;
  base.reserve(originals);
  std::vector<std::string_view> view(11);
  for (std::size_t i = 0; i < originals; ++i) {
    int year = 1920 + static_cast<int>(rng() % 85);
    int month = 1 + static_cast<int>(rng() % 12);
    int day = 1 + static_cast<int>(rng() % 28);
    base.push_back({fmt::format("rec-{}-org", i), pick(1), pick(2), std::to_string(1 + rng() % 400),
                    pick(4), rng() % 3 ? pick(5) : "", pick(6), pick(7), pick(8),
                    fmt::format("{}{:02}{:02}", year, month, day), digits(7)});
  }
  for (const auto& row : base) {
    for (std::size_t c = 0; c < 11; ++c) view[c] = row[c];
    out.add(view);
  }
  std::vector<std::string> dup;
  for (std::size_t i = originals; i < records; ++i) {
    std::size_t of = rng() % originals;
    dup = base[of];
    dup[0] = fmt::format("rec-{}-dup-{}", of, i);
    int errors = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < errors; ++e) {
      std::size_t c = 1 + rng() % 10;
      if (rng() % 5 == 0) {
        dup[c].clear();
      } else {
        dup[c] = typo(dup[c]);
      }
    }
    for (std::size_t c = 0; c < 11; ++c) view[c] = dup[c];
    out.add(view);
  }
}

void run_speed(const Flags& flags) {
  Dataset data({"rec_id", "given_name", "surname", "street_number", "address_1", "address_2",
                "suburb", "postcode", "state", "date_of_birth", "soc_sec_id"},
               "generated");
  generate(flags, flags.records, data);
  auto engine = check(MatchEngine::create(febrl_settings(LinkType::kDedupe)), "engine");
  auto start = std::chrono::steady_clock::now();
  auto result = check(engine.run(data), "run");
  double total = seconds(start);
  double prepare = total - result.block_seconds - result.train_seconds - result.score_seconds -
                   result.cluster_seconds;
  print_bench(
      "match_dedupe_speed",
      {{"records", data.size()},
       {"candidate_pairs", result.candidate_pairs},
       {"matches", result.matches},
       {"clusters", result.clusters},
       {"threads", engine.settings().threads},
       {"block_s", result.block_seconds},
       {"train_s", result.train_seconds},
       {"score_s", result.score_seconds},
       {"cluster_s", result.cluster_seconds},
       {"prepare_and_other_s", prepare},
       {"scored_pairs_per_s", static_cast<double>(result.candidate_pairs) / result.score_seconds},
       {"score_cpu_s", result.score_cpu_seconds},
       {"scored_pairs_per_cpu_s",
        static_cast<double>(result.candidate_pairs) / result.score_cpu_seconds},
       {"total_s", total}});
}

// The inputs of the hand-checked table (tests/match/data/canadian_addresses.tsv): one-line
// addresses and field-wise ones ("street | municipality | province | postal code"), about a
// tenth of them refused inputs.
std::vector<std::string> address_inputs() {
  std::ifstream in(CIVICBUS_ADDRESS_TABLE);
  if (!in) throw std::runtime_error("cannot read " CIVICBUS_ADDRESS_TABLE);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto a = line.find('\t');
    auto b = line.find('\t', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    out.push_back(line.substr(a + 1, b - a - 1));
  }
  return out;
}

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

void run_address() {
  const std::vector<std::string> lines = address_inputs();
  // Field-wise rows split once, outside the timed loop.
  struct Input {
    std::string line;
    std::vector<std::string_view> fields;
  };
  std::vector<Input> inputs;
  for (const auto& l : lines) inputs.push_back({l, {}});
  for (auto& in : inputs) {
    if (in.line.find('|') == std::string::npos) continue;
    std::string_view rest = in.line;
    while (true) {
      auto bar = rest.find('|');
      in.fields.push_back(trimmed(rest.substr(0, bar)));
      if (bar == std::string_view::npos) break;
      rest.remove_prefix(bar + 1);
    }
    in.fields.resize(4);
  }
  AddressNormalizerOptions options;
  options.record_corrections = false;  // as the pipeline's normalize_address stage runs it
  auto normalizer = check(AddressNormalizer::create(options), "normalizer");
  for (int threads : {1, 2}) {
    std::atomic<std::uint64_t> done{0}, failed{0};
    auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&] {
        std::uint64_t n = 0, bad = 0;
        for (int round = 0; round < 2'000; ++round) {
          for (const auto& in : inputs) {
            bool ok = in.fields.empty() ? normalizer.normalize(in.line).ok()
                                        : normalizer
                                              .normalize(AddressParts{in.fields[0], in.fields[1],
                                                                      in.fields[2], in.fields[3]})
                                              .ok();
            bad += ok ? 0 : 1;
            ++n;
          }
        }
        done += n;
        failed += bad;
      });
    }
    for (auto& w : workers) w.join();
    double s = seconds(start);
    print_bench("match_address_normalize",
                {{"threads", threads},
                 {"distinct_inputs", inputs.size()},
                 {"addresses", done.load()},
                 {"refused", failed.load()},
                 {"addresses_per_s", static_cast<double>(done.load()) / s}});
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Flags flags = parse(argc, argv);
    if (flags.only.empty() || flags.only == "febrl") run_febrl(flags);
    if (flags.only.empty() || flags.only == "link") run_link(flags);
    if (flags.only.empty() || flags.only == "address") run_address();
    if (flags.only.empty() || flags.only == "speed") run_speed(flags);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "match_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
