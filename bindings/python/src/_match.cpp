// The match area's address normaliser, comparators, datasets and MatchEngine. Training,
// matching and explaining release the GIL (the engine runs on its own threads).
#include <fmt/format.h>

#include "civicbus/match/address.hpp"
#include "civicbus/match/compare.hpp"
#include "civicbus/match/engine.hpp"
#include "civicbus/match/review.hpp"
#include "civicbus/node/node.hpp"
#include "common.hpp"

namespace civicbus::python {
namespace {

using namespace civicbus::match;

std::string decision_name(ScoredPair::Decision d) {
  switch (d) {
    case ScoredPair::Decision::kMatch:
      return "match";
    case ScoredPair::Decision::kReview:
      return "review";
    case ScoredPair::Decision::kNonMatch:
      break;
  }
  return "non_match";
}

// Values held while a call takes string_views of them.
std::vector<std::string_view> views(const std::vector<std::string>& values) {
  return {values.begin(), values.end()};
}

std::vector<std::string> text_values(const py::handle& values) {
  std::vector<std::string> out;
  for (auto v : values) out.push_back(v.is_none() ? std::string() : py::str(v).cast<std::string>());
  return out;
}

const AddressNormalizer& default_normalizer() {
  // Immutable and thread-safe; built once (the rules are parsed from the embedded JSON).
  static const AddressNormalizer normalizer = [] {
    auto n = AddressNormalizer::create();
    if (!n.ok()) throw StatusError(n.status());
    return std::move(n).value();
  }();
  return normalizer;
}

AddressNormalizerOptions normalizer_options(bool require_civic_number,
                                            bool infer_province_from_postal_code,
                                            bool record_corrections) {
  AddressNormalizerOptions o;
  o.require_civic_number = require_civic_number;
  o.infer_province_from_postal_code = infer_province_from_postal_code;
  o.record_corrections = record_corrections;
  return o;
}

const Dataset* optional_dataset(const py::object& right) {
  return right.is_none() ? nullptr : right.cast<const Dataset*>();
}

void bind_address(py::module_& m) {
  py::class_<Address>(m, "Address",
                      "A normalised Canadian address: upper case, Canada Post's symbols, empty "
                      "fields when absent.")
      .def_readonly("unit", &Address::unit, "\"104\".")
      .def_readonly("unit_designator", &Address::unit_designator, "\"APT\", \"BUREAU\"...")
      .def_readonly("civic_number", &Address::civic_number, "\"2701\".")
      .def_readonly("civic_suffix", &Address::civic_suffix, "\"A\" or \"1/2\".")
      .def_readonly("street_name", &Address::street_name, "\"23RD\", \"PRINCIPALE\".")
      .def_readonly("street_type", &Address::street_type, "\"AVE\", \"RUE\".")
      .def_readonly("street_type_before_name", &Address::street_type_before_name,
                    "True for French types (\"RUE PRINCIPALE\").")
      .def_readonly("street_direction", &Address::street_direction, "\"SW\", \"O\".")
      .def_readonly("delivery", &Address::delivery, "\"PO BOX 6001\", \"RR 6\"...")
      .def_readonly("municipality", &Address::municipality, "The municipality.")
      .def_readonly("province", &Address::province, "Two-letter code.")
      .def_readonly("postal_code", &Address::postal_code, "\"H3L 1T8\".")
      .def_property_readonly(
          "language",
          [](const Address& a) { return std::string(address_language_code(a.language)); },
          "\"en\", \"fr\" or \"\" (unknown).")
      .def_readonly("corrections", &Address::corrections,
                    "What normalisation changed, one sentence each.")
      .def("street_line", &Address::street_line, "\"104-2701 23RD AVE SW\".")
      .def("last_line", &Address::last_line, "\"REGINA SK  S4S 1E5\".")
      .def("one_line", &Address::one_line, "Both lines joined by one space.")
      .def("__str__", &Address::one_line, "The one-line form.")
      .def(
          "__eq__",
          [](const Address& a, const py::object& b) {
            return py::isinstance<Address>(b) && a == b.cast<const Address&>();
          },
          py::arg("other"), "Field-by-field equality.")
      .def("__repr__",
           [](const Address& a) { return fmt::format("<civicbus.Address '{}'>", a.one_line()); });

  py::class_<AddressNormalizer>(m, "AddressNormalizer",
                                "Parses and normalises Canadian addresses (English and French) "
                                "with the built-in rules or a rules document. Immutable; may be "
                                "shared by threads.")
      .def(py::init([](const py::object& rules, bool require_civic_number,
                       bool infer_province_from_postal_code, bool record_corrections) {
             AddressNormalizerOptions o = normalizer_options(
                 require_civic_number, infer_province_from_postal_code, record_corrections);
             if (rules.is_none()) return unwrap(AddressNormalizer::create(o));
             return unwrap(AddressNormalizer::from_rules(json_from_python(rules), o));
           }),
           py::kw_only(), py::arg("rules") = py::none(), py::arg("require_civic_number") = true,
           py::arg("infer_province_from_postal_code") = true, py::arg("record_corrections") = true,
           "A normaliser; `rules` is a document shaped like data/match/address_rules.json "
           "(default: the built-in rules).")
      .def(
          "normalize",
          [](const AddressNormalizer& n, std::string_view text) {
            return unwrap(n.normalize(text));
          },
          py::arg("text"),
          "One address on one line (\"104-2701 23rd Avenue S.W., Regina, Sask. S4S1E5\"); "
          "raises InvalidArgument naming what is wrong.")
      .def(
          "normalize_parts",
          [](const AddressNormalizer& n, std::string_view street_line,
             std::string_view municipality, std::string_view province,
             std::string_view postal_code) {
            return unwrap(
                n.normalize(AddressParts{street_line, municipality, province, postal_code}));
          },
          py::arg("street_line"), py::arg("municipality") = "", py::arg("province") = "",
          py::arg("postal_code") = "", "An address already split into columns.");

  m.def(
      "normalize_address",
      [](std::string_view text) { return unwrap(default_normalizer().normalize(text)); },
      py::arg("text"),
      "Normalises one address line with the built-in rules (see AddressNormalizer).");
}

void bind_compare(py::module_& m) {
  m.def("fold", &fold, py::arg("text"),
        "Text as comparators want it: upper case, accents and punctuation removed, blanks "
        "collapsed (\"  Marie-Ève  O'Neil \" → \"MARIE EVE ONEIL\").");
  m.def("jaro", &jaro, py::arg("a"), py::arg("b"), "Jaro similarity in [0, 1].");
  m.def("jaro_winkler", &jaro_winkler, py::arg("a"), py::arg("b"), py::arg("prefix_scale") = 0.1,
        "Jaro-Winkler similarity in [0, 1].");
  m.def("levenshtein", &levenshtein, py::arg("a"), py::arg("b"), "Levenshtein distance.");
  m.def("levenshtein_within", &levenshtein_within, py::arg("a"), py::arg("b"), py::arg("limit"),
        "The Levenshtein distance when at most `limit`, else limit + 1 (cheap on long values).");
  m.def("damerau_levenshtein", &damerau_levenshtein, py::arg("a"), py::arg("b"),
        "Damerau-Levenshtein distance (adjacent transpositions count 1).");
  m.def("levenshtein_similarity", &levenshtein_similarity, py::arg("a"), py::arg("b"),
        "1 - distance / longer length.");
  m.def("token_set_similarity", &token_set_similarity, py::arg("a"), py::arg("b"),
        "Jaccard similarity of the words (after fold).");
  m.def("qgram_similarity", &qgram_similarity, py::arg("a"), py::arg("b"), py::arg("q") = 2,
        "Dice coefficient of padded q-grams.");
  m.def("relative_difference", &relative_difference, py::arg("a"), py::arg("b"),
        "|a - b| / max(|a|, |b|).");
  m.def("parse_number", &parse_number, py::arg("text"),
        "A number written in a field (\"1,234.50\"), or None.");
  m.def("days_since_epoch", &days_since_epoch, py::arg("date"),
        "Days since 1970-01-01 of YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD, or None.");
  m.def("date_distance_days", &date_distance_days, py::arg("a"), py::arg("b"),
        "|days between two dates|, or None when either is not a date.");
  m.def("soundex", &soundex, py::arg("name"), "American Soundex (\"ROBERT\" → \"R163\").");
  m.def("nysiis", &nysiis, py::arg("name"), "NYSIIS code (\"KNIGHT\" → \"NAGT\").");
  m.def(
      "double_metaphone",
      [](std::string_view name, int max_length) {
        PhoneticPair p = double_metaphone(name, max_length);
        return std::make_pair(p.primary, p.alternate);
      },
      py::arg("name"), py::arg("max_length") = 4,
      "Double Metaphone: (primary, alternate) (\"SMITH\" → (\"SM0\", \"XMT\")).");
  m.def("name_key", &name_key, py::arg("name"),
        "fold() with the words sorted (\"Smith, John\" → \"JOHN SMITH\").");
  m.def("name_similarity", &name_similarity, py::arg("a"), py::arg("b"),
        "Word-by-word name similarity (best pairs first, unpaired words count 0).");
}

void bind_dataset(py::module_& m) {
  py::class_<Dataset>(m, "Dataset",
                      "A table of text records (from a CSV file or added row by row); empty "
                      "values are missing values.")
      .def(py::init([](std::vector<std::string> columns, std::string source) {
             return Dataset(std::move(columns), std::move(source));
           }),
           py::arg("columns"), py::kw_only(), py::arg("source") = "",
           "An empty dataset with these columns; `source` names it (\"mpac\", \"tax\").")
      .def_static(
          "read_csv",
          [](const std::string& path, std::string source) {
            py::gil_scoped_release nogil;
            return unwrap(Dataset::read_csv(path, std::move(source)));
          },
          py::arg("path"), py::kw_only(), py::arg("source") = "",
          "Reads a CSV file with a header row; errors name the file, line and column.")
      .def_static(
          "parse_csv",
          [](std::string_view text, std::string source) {
            return unwrap(Dataset::parse_csv(text, std::move(source)));
          },
          py::arg("text"), py::kw_only(), py::arg("source") = "", "Reads CSV text.")
      .def_static(
          "from_records",
          [](const py::list& records, std::optional<std::vector<std::string>> columns,
             std::string source) {
            std::vector<std::string> cols;
            if (columns) {
              cols = *columns;
            } else if (!records.empty()) {
              for (auto key : records[0].cast<py::dict>()) cols.push_back(py::str(key.first));
            }
            Dataset d(cols, std::move(source));
            for (auto r : records) {
              py::dict record = r.cast<py::dict>();
              std::vector<std::string> values;
              for (const auto& c : cols) {
                py::str key(c);
                values.push_back(record.contains(key) && !record[key].is_none()
                                     ? py::str(record[key]).cast<std::string>()
                                     : std::string());
              }
              d.add(views(values));
            }
            return d;
          },
          py::arg("records"), py::kw_only(), py::arg("columns") = py::none(),
          py::arg("source") = "",
          "A dataset from dicts (columns: the first record's keys unless given; values as "
          "str).")
      .def(
          "add", [](Dataset& d, const py::iterable& values) { d.add(views(text_values(values))); },
          py::arg("values"), "Appends a record (values in column order; may be shorter).")
      .def("__len__", &Dataset::size, "The number of records.")
      .def_property_readonly("columns", &Dataset::columns, "The column names.")
      .def_property_readonly("source", &Dataset::source, "The source name.")
      .def("column", &Dataset::column, py::arg("name"), "The column's index, or -1.")
      .def(
          "value",
          [](const Dataset& d, std::size_t row, const py::object& column) {
            int c = py::isinstance<py::str>(column) ? d.column(column.cast<std::string>())
                                                    : column.cast<int>();
            if (row >= d.size() || c < 0 || c >= static_cast<int>(d.columns().size())) {
              throw StatusError(out_of_range(fmt::format(
                  "no value at row {}, column {} (the dataset has {} rows and {} columns)", row,
                  py::str(column).cast<std::string>(), d.size(), d.columns().size())));
            }
            return std::string(d.value(row, c));
          },
          py::arg("row"), py::arg("column"), "A value by row and column (index or name).")
      .def(
          "record",
          [](const Dataset& d, std::size_t row) {
            if (row >= d.size()) {
              throw StatusError(
                  out_of_range(fmt::format("no row {} (the dataset has {} rows)", row, d.size())));
            }
            py::dict out;
            for (std::size_t c = 0; c < d.columns().size(); ++c) {
              out[py::str(d.columns()[c])] = std::string(d.value(row, static_cast<int>(c)));
            }
            return out;
          },
          py::arg("row"), "A record as a dict.");
}

void bind_settings(py::module_& m) {
  py::class_<MatchSettings>(m, "MatchSettings",
                            "Match configuration (docs/match.md): link type, comparisons, "
                            "blocking and deterministic rules, thresholds, training.")
      .def(py::init([](const Json& settings) {
             MatchSettings s = unwrap(MatchSettings::from_json(settings));
             check(s.validate());
             return s;
           }),
           py::arg("settings"), "Settings from a dict of the documented shape.")
      .def_static(
          "from_dict",
          [](const Json& settings) {
            MatchSettings s = unwrap(MatchSettings::from_json(settings));
            check(s.validate());
            return s;
          },
          py::arg("settings"), "The same as MatchSettings(settings).")
      .def_static(
          "from_json",
          [](std::string_view text) {
            MatchSettings s = unwrap(MatchSettings::from_json(unwrap(Json::parse(text))));
            check(s.validate());
            return s;
          },
          py::arg("text"), "Settings from JSON text.")
      .def_static(
          "from_file", [](std::string_view path) { return unwrap(load_match_file(path)); },
          py::arg("path"), "Settings from a YAML (or JSON) rules file; errors name the file.")
      .def_property_readonly(
          "link_type",
          [](const MatchSettings& s) {
            return std::string(s.link_type == LinkType::kLink ? "link" : "dedupe");
          },
          "\"dedupe\" (one source) or \"link\" (two).")
      .def_readonly("unique_id", &MatchSettings::unique_id, "The record id column (\"\": row).")
      .def_property_readonly(
          "match_threshold", [](const MatchSettings& s) { return s.thresholds.match; },
          "Match probability at or above which a pair is a match.")
      .def_property_readonly(
          "review_threshold", [](const MatchSettings& s) { return s.thresholds.review; },
          "Match probability at or above which a pair goes to review.")
      .def_readonly("threads", &MatchSettings::threads, "Scoring threads.")
      .def_property_readonly(
          "comparisons",
          [](const MatchSettings& s) {
            std::vector<std::string> names;
            for (const auto& c : s.comparisons) names.push_back(c.name.empty() ? c.field : c.name);
            return names;
          },
          "The comparisons' names.")
      .def("fields", &MatchSettings::fields, "Every column the settings read.")
      .def(
          "validate", [](const MatchSettings& s) { check(s.validate()); },
          "Raises InvalidArgument when the settings are inconsistent.");
}

void bind_results(py::module_& m) {
  py::class_<ScoredPair>(m, "ScoredPair", "A candidate pair by row index (left, right).")
      .def_readonly("left", &ScoredPair::left, "Row in the left dataset.")
      .def_readonly("right", &ScoredPair::right, "Row in the right dataset (the same for dedupe).")
      .def_readonly("match_weight", &ScoredPair::match_weight, "log2 Bayes factor plus prior.")
      .def_readonly("match_probability", &ScoredPair::match_probability, "In [0, 1].")
      .def_readonly("pattern", &ScoredPair::pattern, "Comparison levels, 4 bits each.")
      .def_readonly("deterministic_rule", &ScoredPair::deterministic_rule,
                    "The rule that matched outright, or -1.")
      .def_property_readonly(
          "decision", [](const ScoredPair& p) { return decision_name(p.decision); },
          "\"match\", \"review\" or \"non_match\".")
      .def("__repr__", [](const ScoredPair& p) {
        return fmt::format("<civicbus.ScoredPair {}-{} p={:.3f} {}>", p.left, p.right,
                           p.match_probability, decision_name(p.decision));
      });

  py::class_<RuleReport>(m, "RuleReport", "What one blocking rule contributed.")
      .def_readonly("rule", &RuleReport::rule, "The rule's name.")
      .def_readonly("candidate_pairs", &RuleReport::candidate_pairs, "New pairs it adds.")
      .def_readonly("blocks", &RuleReport::blocks, "Blocks.")
      .def_readonly("skipped_blocks", &RuleReport::skipped_blocks, "Blocks over max_block_size.")
      .def_readonly("skipped_pairs", &RuleReport::skipped_pairs, "Pairs in skipped blocks.");

  py::class_<TrainingReport>(m, "TrainingReport", "What unsupervised training did.")
      .def_readonly("iterations", &TrainingReport::iterations, "EM iterations.")
      .def_readonly("converged", &TrainingReport::converged, "True when EM converged.")
      .def_readonly("prior", &TrainingReport::prior, "Probability two random records match.")
      .def_readonly("u_sample_pairs", &TrainingReport::u_sample_pairs, "Random pairs for u.")
      .def_readonly("em_pairs", &TrainingReport::em_pairs, "Pairs EM learned from.")
      .def_readonly("candidate_pairs", &TrainingReport::candidate_pairs, "Candidate pairs.")
      .def_readonly("expected_matches", &TrainingReport::expected_matches, "Expected matches.");

  py::class_<MatchResult>(m, "MatchResult", "The pairs, decisions and clusters of a run.")
      .def_readonly("rules", &MatchResult::rules, "Per blocking rule.")
      .def_readonly("pairs", &MatchResult::pairs,
                    "Scored pairs at or above review (all with keep_below_review).")
      .def_readonly("candidate_pairs", &MatchResult::candidate_pairs, "Pairs compared.")
      .def_readonly("matches", &MatchResult::matches, "Pairs decided match.")
      .def_readonly("reviews", &MatchResult::reviews, "Pairs for clerical review.")
      .def_readonly("cluster", &MatchResult::cluster,
                    "Entity per record (left rows, then right rows): the cluster's lowest row.")
      .def_readonly("clusters", &MatchResult::clusters, "Number of entities.")
      .def_readonly("training", &MatchResult::training, "The training report.")
      .def_readonly("block_seconds", &MatchResult::block_seconds, "Time spent blocking.")
      .def_readonly("train_seconds", &MatchResult::train_seconds, "Time spent training.")
      .def_readonly("score_seconds", &MatchResult::score_seconds, "Time spent scoring.")
      .def_readonly("cluster_seconds", &MatchResult::cluster_seconds, "Time spent clustering.");

  py::class_<FieldExplanation>(m, "FieldExplanation", "One comparison's share of a pair's weight.")
      .def_readonly("comparison", &FieldExplanation::comparison, "The comparison.")
      .def_readonly("left_value", &FieldExplanation::left_value, "Cleaned left value.")
      .def_readonly("right_value", &FieldExplanation::right_value, "Cleaned right value.")
      .def_readonly("level", &FieldExplanation::level, "\"exact\", \"null\", \"else\"...")
      .def_readonly("m", &FieldExplanation::m, "m probability of the level.")
      .def_readonly("u", &FieldExplanation::u, "u probability of the level.")
      .def_readonly("weight", &FieldExplanation::weight, "log2(m / u).")
      .def_readonly("tf_adjustment", &FieldExplanation::tf_adjustment,
                    "Term-frequency adjustment.");

  py::class_<PairExplanation>(m, "PairExplanation", "A pair's weight explained field by field.")
      .def_readonly("left_id", &PairExplanation::left_id, "The left record's id.")
      .def_readonly("right_id", &PairExplanation::right_id, "The right record's id.")
      .def_readonly("prior_weight", &PairExplanation::prior_weight, "The prior's weight.")
      .def_readonly("fields", &PairExplanation::fields, "Per comparison.")
      .def_readonly("match_weight", &PairExplanation::match_weight, "Total weight.")
      .def_readonly("match_probability", &PairExplanation::match_probability, "In [0, 1].")
      .def_readonly("deterministic_rule", &PairExplanation::deterministic_rule,
                    "The rule that decided, or \"\".")
      .def("to_dict", &PairExplanation::to_json, "The explanation as a dict.")
      .def("to_text", &PairExplanation::to_text, "A waterfall, one line per field.")
      .def("__str__", &PairExplanation::to_text, "The waterfall text.");

  py::class_<LevelParameters>(m, "LevelParameters", "m and u of one comparison level.")
      .def_readonly("label", &LevelParameters::label, "The level's label.")
      .def_readonly("m", &LevelParameters::m, "P(level | match).")
      .def_readonly("u", &LevelParameters::u, "P(level | non-match).");
  py::class_<ComparisonParameters>(m, "ComparisonParameters", "A comparison's levels.")
      .def_readonly("name", &ComparisonParameters::name, "The comparison.")
      .def_readonly("levels", &ComparisonParameters::levels, "Its levels, \"else\" last.");

  py::class_<LabelledPair>(m, "LabelledPair", "A decided pair of record ids.")
      .def(py::init([](std::string left_id, std::string right_id, bool match) {
             return LabelledPair{std::move(left_id), std::move(right_id), match};
           }),
           py::arg("left_id"), py::arg("right_id"), py::arg("match"),
           "A pair decided as the same entity (match=True) or not.")
      .def_readonly("left_id", &LabelledPair::left_id, "Left record id.")
      .def_readonly("right_id", &LabelledPair::right_id, "Right record id.")
      .def_readonly("match", &LabelledPair::match, "True: same entity.");

  py::class_<MatchIndex::Match>(m, "IndexMatch", "The earlier record a new one matches best.")
      .def_readonly("row", &MatchIndex::Match::row, "The earlier record (0 for the first added).")
      .def_readonly("match_weight", &MatchIndex::Match::match_weight, "Weight.")
      .def_readonly("match_probability", &MatchIndex::Match::match_probability, "Probability.")
      .def_property_readonly(
          "decision", [](const MatchIndex::Match& x) { return decision_name(x.decision); },
          "\"match\" or \"review\".")
      .def_readonly("deterministic_rule", &MatchIndex::Match::deterministic_rule,
                    "The deterministic rule that decided, or \"\".");
}

void bind_engine(py::module_& m) {
  py::class_<MatchEngine>(m, "MatchEngine", R"doc(
Record linkage and deduplication by the Fellegi-Sunter model (as Splink does): blocking,
comparison levels, m/u training by EM, match weights explained field by field, thresholds
and clusters. Training and matching run on the engine's threads without the GIL.
)doc")
      .def(py::init([](const py::object& settings) {
             MatchSettings s = py::isinstance<MatchSettings>(settings)
                                   ? settings.cast<MatchSettings>()
                                   : unwrap(MatchSettings::from_json(json_from_python(settings)));
             return unwrap(MatchEngine::create(std::move(s)));
           }),
           py::arg("settings"), "An engine from MatchSettings or a settings dict.")
      .def_property_readonly("settings", &MatchEngine::settings, "The engine's settings.")
      .def(
          "train",
          [](MatchEngine& e, const Dataset& left, const py::object& right) {
            const Dataset* r = optional_dataset(right);
            py::gil_scoped_release nogil;
            return unwrap(e.train(left, r));
          },
          py::arg("left"), py::arg("right") = py::none(),
          "Unsupervised training: u from random pairs, m and the prior by EM (right=None for "
          "deduplication).")
      .def(
          "train_from_labels",
          [](MatchEngine& e, const Dataset& left, const py::object& right,
             const std::vector<LabelledPair>& labels) {
            const Dataset* r = optional_dataset(right);
            py::gil_scoped_release nogil;
            check(e.train_from_labels(left, r, labels));
          },
          py::arg("left"), py::arg("right"), py::arg("labels"),
          "Supervised training from decided pairs (the review queue's labelled()).")
      .def(
          "run",
          [](MatchEngine& e, const Dataset& left, const py::object& right, bool keep_below_review) {
            const Dataset* r = optional_dataset(right);
            py::gil_scoped_release nogil;
            return unwrap(e.run(left, r, keep_below_review));
          },
          py::arg("left"), py::arg("right") = py::none(), py::kw_only(),
          py::arg("keep_below_review") = false,
          "Blocks, compares, scores and clusters (training first when untrained).")
      .def(
          "explain",
          [](const MatchEngine& e, const Dataset& left, const py::object& right,
             const std::vector<std::pair<std::uint32_t, std::uint32_t>>& pairs) {
            const Dataset* r = optional_dataset(right);
            py::gil_scoped_release nogil;
            return unwrap(e.explain(left, r, pairs));
          },
          py::arg("left"), py::arg("right"), py::arg("pairs"),
          "Explains pairs of rows [(left, right), ...] field by field (needs a trained engine).")
      .def("record_id", &MatchEngine::record_id, py::arg("data"), py::arg("row"),
           "The record id of a row (the unique_id column, or the row number).")
      .def("parameters", &MatchEngine::parameters, "The model: m/u per comparison level.")
      .def_property_readonly("prior", &MatchEngine::prior, "Probability two random records match.")
      .def_property_readonly("trained", &MatchEngine::trained, "True once trained or loaded.")
      .def("model", &MatchEngine::model_json, "The model as a dict (save it; load_model() it).")
      .def(
          "load_model", [](MatchEngine& e, const Json& model) { check(e.load_model(model)); },
          py::arg("model"), "Loads a model saved with model().");

  py::class_<MatchIndex>(m, "MatchIndex",
                         "Incremental deduplication for streams: each record added is compared "
                         "with earlier ones sharing a blocking key (train the engine first).")
      .def(py::init([](const MatchEngine& engine, std::vector<std::string> columns) {
             return unwrap(MatchIndex::create(engine, std::move(columns)));
           }),
           py::arg("engine"), py::arg("columns"), py::keep_alive<1, 2>(),
           "An index scoring with `engine`'s model; `columns` name add()'s values.")
      .def(
          "add",
          [](MatchIndex& index, const py::iterable& values) {
            std::vector<std::string> v = text_values(values);
            return index.add(views(v));
          },
          py::arg("values"),
          "Adds a record; returns the earlier record it matches best (IndexMatch) or None.")
      .def("__len__", &MatchIndex::size, "Records added.")
      .def_property_readonly("compared_pairs", &MatchIndex::compared_pairs, "Pairs compared.")
      .def_property_readonly("skipped_blocks", &MatchIndex::skipped_blocks,
                             "Blocks too large to compare.");
}

}  // namespace

void init_match(py::module_& m) {
  bind_address(m);
  bind_compare(m);
  bind_dataset(m);
  bind_settings(m);
  bind_results(m);
  bind_engine(m);
}

}  // namespace civicbus::python
