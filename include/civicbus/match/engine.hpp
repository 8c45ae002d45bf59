// MatchEngine: record linkage and deduplication by the Fellegi-Sunter model, as Splink users
// know it. Records of one source (deduplication) or of two (linkage) are compared only within
// blocks (a union of blocking rules); each candidate pair gets one level per comparison
// (exact, within 1 edit, Jaro-Winkler >= 0.9, ...), the levels' m and u probabilities give the
// pair a match weight explained field by field, and two thresholds split pairs into matches,
// clerical review and non-matches. Matches are clustered into entities.
//
// The engine owns its settings and, once trained, its model (m/u per level, the prior). It
// does not own the data: a Dataset is passed to each call and must outlive it. A trained
// engine is immutable during scoring; one engine may score from several threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus::match {

struct LabelledPair;  // match/review.hpp: a decided pair of record ids

// A table of text records, stored by column (one buffer per column), as read from a CSV file
// or added row by row. Empty values are missing values.
class CIVICBUS_EXPORT Dataset {
 public:
  explicit Dataset(std::vector<std::string> columns, std::string source = {});

  // Reads a CSV file with a header row. Values and column names are trimmed (FEBRL's files
  // separate fields with ", "). Errors name the file, line and column.
  static Result<Dataset> read_csv(const std::string& path, std::string source = {});
  static Result<Dataset> parse_csv(std::string_view text, std::string source = {});

  // Appends a record; `values` follow columns() and may be shorter (missing values).
  void add(const std::vector<std::string_view>& values);

  std::size_t size() const { return rows_; }
  const std::vector<std::string>& columns() const { return columns_; }
  // The column's index, or -1.
  int column(std::string_view name) const;
  std::string_view value(std::size_t row, int column) const;
  // The source name (for golden records and reports): "mpac", "tax", a file name...
  const std::string& source() const { return source_; }

 private:
  std::vector<std::string> columns_;
  std::string source_;
  std::size_t rows_ = 0;
  std::vector<std::string> text_;                   // per column: the values, back to back
  std::vector<std::vector<std::uint64_t>> offset_;  // per column: rows + 1 offsets
};

// What a field holds; it picks the field's cleaning and its default comparison levels.
enum class FieldKind {
  kName,        // fold; exact, Jaro-Winkler >= 0.92 / 0.88 / 0.7
  kAddress,     // Canada Post normalisation; exact, same civic + street, street alike, ...
  kDate,        // YYYY-MM-DD or YYYYMMDD; exact, 1 edit (a typo), within a year
  kIdentifier,  // roll number, SIN, account: letters and digits only; exact, 1 edit, 2 edits
  kPostalCode,  // letters and digits, upper case; exact, 1 edit
  kPhone,       // digits only (a leading 1 dropped); exact, last 7 digits, 1 edit
  kEmail,       // lower case, trimmed; exact, same local part, 2 edits
  kText,        // fold; exact, token-set >= 0.8, q-gram >= 0.6
  kNumber,      // parsed; exact, within 1%, within 10%
};

// One level of a comparison: the first level whose test holds gives the pair its level.
// `test` is one of: exact, levenshtein (<= threshold edits), damerau_levenshtein (<=),
// jaro_winkler (>= threshold), jaro (>=), name (word-by-word name similarity >=), token_set
// (>=), qgram (>=), soundex, nysiis, metaphone (equal phonetic codes; double metaphone's
// primary or alternate), number_abs (|a-b| <= threshold), number_rel (relative difference <=),
// date_days (<= days), address_street (same civic number and street name), address_name
// (same civic number, street names alike by Jaro-Winkler >= threshold), address_street_only
// (same street name, any civic number).
struct LevelSpec {
  std::string test;
  double threshold = 0;
  std::string label;  // for explanations; "jaro_winkler >= 0.92" when empty
};

// How one field of two records is compared. A pair where either value is missing gets the
// "null" level (weight 0) without running any test; a pair no level accepts gets "else".
struct ComparisonSpec {
  std::string field;        // column name; `right_field` when the right source differs
  std::string right_field;  // empty: same as field
  std::string name;         // defaults to field
  FieldKind kind = FieldKind::kText;
  std::vector<LevelSpec> levels;  // empty: the kind's defaults
  // Term-frequency adjustment (Splink): on the exact level, a rare value weighs more than a
  // common one (SMITH agreeing says less than ZYWICKI agreeing).
  bool term_frequency = false;
};

// A blocking or deterministic rule: records agreeing on every key are compared. A key is a
// field name or a function of one: soundex(f), nysiis(f), metaphone(f), first(f,3) (first 3
// characters of the folded value), year(f) (of a date), digits(f), street(f) / civic(f) (of a
// normalised address).
struct RuleSpec {
  std::vector<std::string> keys;
  std::string name;  // defaults to the keys joined by " & "
};

struct MatchThresholds {
  double match = 0.95;   // match probability at or above which a pair is a match
  double review = 0.50;  // at or above (and below `match`): clerical review
};

struct TrainingOptions {
  // Random pairs sampled to estimate u (what agreement looks like between non-matches).
  std::size_t u_sample_pairs = 1'000'000;
  // EM learns from at most this many candidate pairs (an even sample of them).
  std::size_t em_sample_pairs = 2'000'000;
  int max_iterations = 50;
  double convergence = 1e-6;  // stop when no m or u moves more than this
  std::uint64_t seed = 42;
  // Probability that two random records match. 0: estimated by EM (matches expected among the
  // candidate pairs over all possible pairs).
  double prior = 0;
};

enum class LinkType {
  kDedupe,  // one source: every pair of records
  kLink,    // two sources: only left-right pairs
};

// The whole configuration, as a module writes it in YAML (docs/match.md):
//   link_type: dedupe            # or link
//   unique_id: rec_id
//   comparisons:
//     - {field: surname, kind: name, term_frequency: true}
//     - {field: date_of_birth, kind: date}
//     - {field: roll_number, kind: identifier}
//   blocking: [[roll_number], [postal_code, "civic(address)"], ["soundex(surname)", dob]]
//   deterministic: [[roll_number]]
//   thresholds: {match: 0.95, review: 0.5}
struct CIVICBUS_EXPORT MatchSettings {
  LinkType link_type = LinkType::kDedupe;
  std::string unique_id;  // column of record ids; empty: the row number
  std::vector<ComparisonSpec> comparisons;
  std::vector<RuleSpec> blocking;
  std::vector<RuleSpec> deterministic;
  MatchThresholds thresholds;
  TrainingOptions training;
  // A block (records sharing a blocking key) larger than this is skipped and reported: a
  // key that common ("" after cleaning, a default date) says nothing and costs n².
  std::size_t max_block_size = 10'000;
  // Clusters of a linkage keep at most one record per source (the best pairs first).
  bool one_to_one = false;
  int threads = 2;

  static Result<MatchSettings> from_json(const Json& config);
  Status validate() const;
  // Every column the settings read (compared fields, rule keys' fields, the unique id), each
  // once, in order of appearance.
  std::vector<std::string> fields() const;
};

// A candidate pair, by row index into the left and right datasets (the same dataset for
// deduplication, left < right).
struct ScoredPair {
  std::uint32_t left = 0;
  std::uint32_t right = 0;
  double match_weight = 0;  // log2 of the Bayes factor plus the prior, TF adjusted
  double match_probability = 0;
  std::uint64_t pattern = 0;             // the comparison levels, 4 bits each (level_of)
  std::int16_t deterministic_rule = -1;  // the rule that matched outright, or -1
  enum class Decision : std::uint8_t { kNonMatch, kReview, kMatch } decision = Decision::kNonMatch;
};

// One comparison's share of a pair's weight.
struct FieldExplanation {
  std::string comparison;
  std::string left_value, right_value;  // cleaned
  std::string level;                    // "exact", "jaro_winkler >= 0.92", "null", "else"
  double m = 0, u = 0;
  double weight = 0;         // log2(m / u), 0 for null
  double tf_adjustment = 0;  // added to weight on a term-frequency adjusted exact level
};

struct CIVICBUS_EXPORT PairExplanation {
  std::string left_id, right_id;
  double prior_weight = 0;
  std::vector<FieldExplanation> fields;
  double match_weight = 0;
  double match_probability = 0;
  std::string deterministic_rule;  // the rule name when one decided
  Json to_json() const;
  std::string to_text() const;  // a waterfall, one line per field
};

// The level (0 null, 1.. the configured levels, then else) of comparison `c` in a pattern.
inline int level_of(std::uint64_t pattern, std::size_t c) {
  return static_cast<int>((pattern >> (4 * c)) & 0xF);
}

struct RuleReport {
  std::string rule;
  std::uint64_t candidate_pairs = 0;  // new pairs this rule adds (earlier rules' excluded)
  std::uint64_t blocks = 0;
  std::uint64_t skipped_blocks = 0;  // larger than max_block_size
  std::uint64_t skipped_pairs = 0;
};

struct LevelParameters {
  std::string label;
  double m = 0, u = 0;
};
struct ComparisonParameters {
  std::string name;
  std::vector<LevelParameters> levels;  // in order; the last is "else" (null is weight 0)
};

struct TrainingReport {
  int iterations = 0;
  bool converged = false;
  double prior = 0;  // probability two random records match
  std::uint64_t u_sample_pairs = 0;
  std::uint64_t em_pairs = 0;  // the candidate pairs EM learned from (a sample)
  std::uint64_t candidate_pairs = 0;
  double expected_matches = 0;
};

struct MatchResult {
  std::vector<RuleReport> rules;
  std::vector<ScoredPair> pairs;  // every candidate pair (or only those >= review, see run())
  std::uint64_t candidate_pairs = 0;
  std::uint64_t matches = 0, reviews = 0;
  // Entity per record (left rows first, then right rows): the cluster's lowest row index,
  // offset by left.size() for right rows.
  std::vector<std::uint32_t> cluster;
  std::size_t clusters = 0;
  TrainingReport training;
  double block_seconds = 0, train_seconds = 0, score_seconds = 0, cluster_seconds = 0;
  double score_cpu_seconds = 0;  // CPU time of comparing and scoring, all threads
  // block: preparing the data and blocking; train: the sample's comparisons, u sampling, EM;
  // score: comparing and scoring every candidate pair; cluster: clustering.
};

class MatchIndex;

class CIVICBUS_EXPORT MatchEngine {
 public:
  static Result<MatchEngine> create(MatchSettings settings);
  ~MatchEngine();
  MatchEngine(MatchEngine&&) noexcept;
  MatchEngine& operator=(MatchEngine&&) noexcept;

  const MatchSettings& settings() const;

  // Unsupervised training: u from random pairs, then EM over the candidate pairs for m and
  // the prior (u held fixed, as Splink does). `right` is null for deduplication.
  Result<TrainingReport> train(const Dataset& left, const Dataset* right = nullptr);
  // Supervised training from decided pairs (the clerical review queue, or a labelled
  // sample): m from the matches' levels, u from the non-matches' (kept from earlier training
  // when fewer than 100 non-matches are given), both smoothed.
  Status train_from_labels(const Dataset& left, const Dataset* right,
                           const std::vector<LabelledPair>& labels);

  // Blocks, compares and scores; then clusters the matches. Trains first when the engine is
  // not trained yet. `keep_below_review`: keep non-match pairs in the result too.
  Result<MatchResult> run(const Dataset& left, const Dataset* right = nullptr,
                          bool keep_below_review = false);

  // Compares pairs (rows of left and right) and explains their weights field by field; one
  // preparation of the data serves the whole batch. Needs a trained engine.
  Result<std::vector<PairExplanation>> explain(
      const Dataset& left, const Dataset* right,
      const std::vector<std::pair<std::uint32_t, std::uint32_t>>& pairs) const;
  // The record id of a row (the unique_id column, or the row number).
  std::string record_id(const Dataset& data, std::uint32_t row) const;

  // The model: m/u per level and the prior. Saved as JSON and loaded back, so a model trained
  // once scores later runs the same way.
  std::vector<ComparisonParameters> parameters() const;
  double prior() const;
  bool trained() const;
  Json model_json() const;
  Status load_model(const Json& model);

  struct Impl;

 private:
  friend class MatchIndex;
  explicit MatchEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Incremental deduplication for streams (the pipeline's dedupe stage): records arrive one at a
// time, and each is compared with the earlier records that share a blocking key and scored with
// the engine's model (train the engine first, or load a model). Term frequencies follow the
// records added so far. The engine must outlive the index; an index is used by one thread.
class CIVICBUS_EXPORT MatchIndex {
 public:
  // `columns` name the values add() receives; every compared or blocked field must be one.
  static Result<MatchIndex> create(const MatchEngine& engine, std::vector<std::string> columns);
  ~MatchIndex();
  MatchIndex(MatchIndex&&) noexcept;
  MatchIndex& operator=(MatchIndex&&) noexcept;

  struct Match {
    std::size_t row = 0;  // the earlier record (0 for the first added)
    double match_weight = 0;
    double match_probability = 0;
    ScoredPair::Decision decision = ScoredPair::Decision::kNonMatch;
    std::string deterministic_rule;
  };
  // Adds a record (values follow the columns; missing ones are empty) and returns the earlier
  // record it matches best at or above the review threshold, or nullopt.
  std::optional<Match> add(const std::vector<std::string_view>& values);
  std::size_t size() const;
  // Candidate pairs compared so far, and blocks too large to compare (max_block_size).
  std::uint64_t compared_pairs() const;
  std::uint64_t skipped_blocks() const;

  struct Impl;

 private:
  explicit MatchIndex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace civicbus::match
