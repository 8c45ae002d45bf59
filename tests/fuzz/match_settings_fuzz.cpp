// Fuzz target: the match engine's settings (MatchSettings::from_json, include/civicbus/match/
// engine.hpp), the engine they create, and Dataset::parse_csv.
//
// The input is a settings document in JSON (docs/match.md, "Rules"). Nothing may crash. Errors
// are invalid_argument or failed_precondition, with a message. Settings that load create an
// engine (or an invalid_argument error) and run on six records whose columns are the
// settings' fields() and whose values come from a small pool (names, dates, addresses,
// postal codes, phones, numbers, a piece of the input) picked by a hash of the input, so
// that blocks form. A run that succeeds returns each candidate pair once, within the rows
// (left < right when deduplicating), with a probability in [0, 1] and the decision its
// probability and the thresholds give; counts agree with the pairs; every record has a
// cluster, whose root is the lowest row and holds both records of every match. Running again
// with keep_below_review returns every candidate pair, and the same pairs at or above review
// as the first run (stopping early never drops one); a new engine loaded with the model
// (model_json → load_model) scores the same; explain() gives the same probabilities. A
// linkage runs against a copy of the records, and against the same Dataset object too (which
// must run alike or be refused).
// The raw input is also read as a CSV dataset: errors name a line, values are trimmed.
//
// Training is bounded so that one input stays cheap: the prior is fixed (0.01) and EM stops
// after 20 iterations (a document may ask for billions). The thread count is the document's:
// with six records the engine runs on one thread anyway, and a count it cannot honour must
// not cost more than that.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/match/engine.hpp"

namespace {

using civicbus::ErrorCode;
using civicbus::Json;
using civicbus::Status;
using civicbus::match::Dataset;
using civicbus::match::LinkType;
using civicbus::match::MatchEngine;
using civicbus::match::MatchResult;
using civicbus::match::MatchSettings;
using civicbus::match::ScoredPair;

constexpr std::size_t kRows = 6;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "match_settings fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

void check_error(const Status& status, const char* where) {
  if (status.code() != ErrorCode::kInvalidArgument &&
      status.code() != ErrorCode::kFailedPrecondition) {
    fail(where, "not invalid_argument or failed_precondition: " + status.to_string());
  }
  if (status.message().empty()) fail(where, "an error without a message");
}

std::uint64_t splitmix(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Values for every kind of field, near-duplicates side by side, so that blocking keys,
// comparison levels and term frequencies all see agreement and disagreement.
constexpr std::string_view kPool[] = {
    "",
    "SMITH",
    "Smyth",
    "smith",
    "Jöhn O'Neil",
    "Tremblay",
    "1980-01-02",
    "19800103",
    "1981-02-30",
    "123 Main St, Ottawa ON K1A 0B1",
    "123 Main Street Ottawa ON K1A0B1",
    "125 rue Principale, Granby QC J2G 2V5",
    "K1A 0B1",
    "k1a0b1",
    "613-555-0101",
    "1 613 555 0101",
    "a@b.ca",
    " A@B.CA",
    "42",
    "1,234.50",
    "-3e2",
    "\xff\xfe\xc3",
};
constexpr std::size_t kPoolSize = sizeof kPool / sizeof kPool[0];

// Six rows over `columns`: each column draws its rows' values from three candidates, picked
// (like the rows' choices) by a hash of the input; one candidate may be a piece of the input.
Dataset make_dataset(const std::vector<std::string>& columns, std::string_view input,
                     std::vector<std::string>& storage) {
  std::uint64_t state = 1469598103934665603ULL;
  for (unsigned char c : input) state = (state ^ c) * 1099511628211ULL;
  storage.clear();
  storage.reserve(columns.size() * kRows);
  Dataset data(columns, "fuzz");
  std::vector<std::vector<std::string_view>> rows(kRows);
  for (std::size_t c = 0; c < columns.size(); ++c) {
    std::string_view candidates[3];
    for (auto& candidate : candidates) {
      const std::uint64_t pick = splitmix(state) % (kPoolSize + 1);
      if (pick < kPoolSize) {
        candidate = kPool[pick];
      } else {
        const std::size_t at = input.empty() ? 0 : splitmix(state) % input.size();
        storage.emplace_back(input.substr(at, 24));
        candidate = storage.back();
      }
    }
    for (auto& row : rows) row.push_back(candidates[splitmix(state) % 3]);
  }
  for (const auto& row : rows) data.add(row);
  return data;
}

using PairKey = std::tuple<std::uint32_t, std::uint32_t, ScoredPair::Decision>;

// What run() promises about its result on the six records (linked to their copy when `two`).
std::set<PairKey> check_result(const MatchResult& r, const MatchSettings& s, bool two,
                               bool keep_below_review) {
  const std::size_t right_rows = kRows;
  std::set<std::pair<std::uint32_t, std::uint32_t>> seen;
  std::set<PairKey> at_or_above_review;
  std::uint64_t matches = 0, reviews = 0;
  for (const ScoredPair& p : r.pairs) {
    if (p.left >= kRows || p.right >= right_rows) fail("a pair outside the records");
    if (!two && p.left >= p.right) fail("a deduplication pair with left >= right");
    if (!seen.emplace(p.left, p.right).second) fail("a pair returned twice");
    if (!(p.match_probability >= 0 && p.match_probability <= 1)) {
      fail("a match probability outside [0, 1]", std::to_string(p.match_probability));
    }
    ScoredPair::Decision want = ScoredPair::Decision::kNonMatch;
    if (p.match_probability >= s.thresholds.match) {
      want = ScoredPair::Decision::kMatch;
    } else if (p.match_probability >= s.thresholds.review) {
      want = ScoredPair::Decision::kReview;
    }
    if (p.decision != want) fail("a decision that its probability and the thresholds do not give");
    if (p.deterministic_rule >= 0 && p.match_probability != 1.0) {
      fail("a deterministic match with a probability below 1");
    }
    if (p.decision == ScoredPair::Decision::kMatch) ++matches;
    if (p.decision == ScoredPair::Decision::kReview) ++reviews;
    if (!keep_below_review && p.decision == ScoredPair::Decision::kNonMatch) {
      fail("a non-match kept without keep_below_review");
    }
    if (p.decision != ScoredPair::Decision::kNonMatch) {
      at_or_above_review.emplace(p.left, p.right, p.decision);
    }
  }
  if (matches != r.matches || reviews != r.reviews) fail("match or review counts disagree");
  if (keep_below_review && r.pairs.size() != r.candidate_pairs) {
    fail("keep_below_review does not return every candidate pair");
  }
  std::uint64_t by_rule = 0;
  for (const auto& rule : r.rules) by_rule += rule.candidate_pairs;
  if (by_rule != r.candidate_pairs) fail("the rules' candidate pairs do not add up");
  const std::size_t most = two ? kRows * right_rows : kRows * (kRows - 1) / 2;
  if (r.candidate_pairs > most) fail("more candidate pairs than pairs of records");

  const std::size_t nodes = kRows + (two ? right_rows : 0);
  if (r.cluster.size() != nodes) {
    fail("cluster does not have one entry per record", std::to_string(r.cluster.size()));
  }
  std::size_t roots = 0;
  for (std::size_t x = 0; x < nodes; ++x) {
    const std::uint32_t root = r.cluster[x];
    if (root > x) fail("a record's cluster is not named by its lowest record");
    if (r.cluster[root] != root) fail("a cluster's root is in another cluster");
    if (root == x) ++roots;
  }
  if (roots != r.clusters) fail("clusters is not the number of cluster roots");
  if (!s.one_to_one) {
    const std::uint32_t offset = two ? kRows : 0;
    for (const ScoredPair& p : r.pairs) {
      if (p.decision == ScoredPair::Decision::kMatch &&
          r.cluster[p.left] != r.cluster[p.right + offset]) {
        fail("a match whose records are in different clusters");
      }
    }
  }
  return at_or_above_review;
}

void check_engine(const MatchSettings& settings, std::string_view input) {
  auto created = MatchEngine::create(settings);
  if (!created.ok()) {
    if (created.status().code() != ErrorCode::kInvalidArgument) {
      fail("create() failed with another code than invalid_argument", created.status().to_string());
    }
    check_error(created.status(), "create()");
    return;
  }
  MatchEngine& engine = *created;
  std::vector<std::string> storage;
  const Dataset data = make_dataset(settings.fields(), input, storage);
  const bool two = settings.link_type == LinkType::kLink;
  // A linkage links the records to a copy of themselves (another Dataset object).
  const Dataset copy = data;
  const Dataset* right = two ? &copy : nullptr;
  if (two) {
    // Linking needs a second source; asked to link one dataset alone, run() refuses.
    auto alone = engine.run(data);
    if (alone.ok()) fail("a linkage ran without a right dataset");
    check_error(alone.status(), "run() of a linkage without a right dataset");
  }

  auto first = engine.run(data, right);
  if (!first.ok()) {
    check_error(first.status(), "run()");
    return;
  }
  if (!engine.trained()) fail("an engine that ran is not trained");
  if (engine.prior() != settings.training.prior) fail("the fixed prior was not used");
  const std::set<PairKey> kept = check_result(*first, settings, two, false);

  auto all = engine.run(data, right, true);
  if (!all.ok()) fail("a trained engine fails to run again", all.status().to_string());
  if (check_result(*all, settings, two, true) != kept) {
    fail("keep_below_review changes the pairs at or above review (a pair stopped early?)");
  }
  if (all->candidate_pairs != first->candidate_pairs) fail("a second run blocks differently");

  // The model is the whole trained state.
  auto fresh = MatchEngine::create(settings);
  if (!fresh.ok()) fail("the same settings fail to create a second engine");
  const Status loaded = fresh->load_model(engine.model_json());
  if (!loaded.ok()) fail("an engine's own model does not load", loaded.to_string());
  auto again = fresh->run(data, right, true);
  if (!again.ok()) fail("an engine with a loaded model fails to run", again.status().to_string());
  if (again->pairs.size() != all->pairs.size()) fail("a loaded model scores other pairs");
  std::vector<std::pair<std::uint32_t, std::uint32_t>> asked;
  for (std::size_t i = 0; i < all->pairs.size(); ++i) {
    const ScoredPair& x = all->pairs[i];
    const ScoredPair& y = again->pairs[i];
    if (x.left != y.left || x.right != y.right || x.decision != y.decision ||
        x.pattern != y.pattern || std::fabs(x.match_probability - y.match_probability) > 1e-9) {
      fail("a loaded model scores a pair differently");
    }
    asked.emplace_back(x.left, x.right);
  }

  auto explained = engine.explain(data, right, asked);
  if (!explained.ok()) fail("explain() refuses the run's pairs", explained.status().to_string());
  if (explained->size() != asked.size()) fail("explain() does not explain every pair");
  for (std::size_t i = 0; i < asked.size(); ++i) {
    const auto& e = (*explained)[i];
    if (e.fields.size() != settings.comparisons.size()) fail("an explanation misses fields");
    if (std::fabs(e.match_probability - all->pairs[i].match_probability) > 1e-9) {
      fail("explain() gives another probability than run()", e.to_text());
    }
    (void)e.to_json().dump();
  }

  if (two) {
    // The same Dataset object on both sides is one source linked to itself: it either runs as
    // a copy does or is refused, never reads past its columns.
    auto self = fresh->run(data, &data, true);
    if (!self.ok()) {
      if (self.status().code() != ErrorCode::kInvalidArgument) {
        fail("linking a dataset to itself fails with another code than invalid_argument",
             self.status().to_string());
      }
      check_error(self.status(), "run() of a dataset linked to itself");
    } else if (self->pairs.size() != again->pairs.size() ||
               self->cluster.size() != again->cluster.size()) {
      fail("linking a dataset to itself differs from linking it to a copy");
    }
  }
}

void check_csv(std::string_view text) {
  auto parsed = Dataset::parse_csv(text, "fuzz.csv");
  if (!parsed.ok()) {
    check_error(parsed.status(), "parse_csv()");
    // Only a text without any record has no line to name.
    const std::string& message = parsed.status().message();
    if (message.find("line") == std::string::npos &&
        message.find("no header row") == std::string::npos) {
      fail("a CSV error that names no line", message);
    }
    return;
  }
  const Dataset& data = *parsed;
  if (data.columns().empty()) fail("a dataset without columns");
  auto blank = [](char c) { return c == ' ' || c == '\t'; };
  for (std::size_t c = 0; c < data.columns().size(); ++c) {
    const std::string& name = data.columns()[c];
    if (name.empty() || blank(name.front()) || blank(name.back())) {
      fail("a column name that is empty or not trimmed", name);
    }
    if (data.column(name) < 0 || static_cast<std::size_t>(data.column(name)) > c) {
      fail("column() does not find a column", name);
    }
  }
  for (std::size_t r = 0; r < data.size(); ++r) {
    for (std::size_t c = 0; c < data.columns().size(); ++c) {
      const std::string_view v = data.value(r, static_cast<int>(c));
      if (!v.empty() && (blank(v.front()) || blank(v.back()) || v.back() == '\r')) {
        fail("a value that is not trimmed", v);
      }
    }
  }
  if (!data.value(data.size(), 0).empty() || !data.value(0, -1).empty() ||
      !data.value(0, static_cast<int>(data.columns().size())).empty()) {
    fail("a value outside the dataset is not empty");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 16 * 1024) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_csv(text);

  auto json = Json::parse(text);
  if (!json.ok()) return 0;
  auto settings = MatchSettings::from_json(*json);
  if (!settings.ok()) {
    check_error(settings.status(), "from_json()");
    return 0;
  }
  if (!settings->validate().ok()) fail("settings that load do not validate");
  MatchSettings s = std::move(*settings);
  s.training.prior = 0.01;
  s.training.max_iterations = std::min(s.training.max_iterations, 20);
  check_engine(s, text);
  return 0;
}
