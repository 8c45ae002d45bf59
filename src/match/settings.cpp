// MatchSettings from the module's configuration, and the default comparison levels of each
// field kind.
#include <algorithm>
#include <set>

#include "civicbus/match/engine.hpp"
#include "match/engine_internal.hpp"

namespace civicbus::match {
namespace {

struct KindName {
  FieldKind kind;
  std::string_view name;
};
constexpr KindName kKinds[] = {
    {FieldKind::kName, "name"},
    {FieldKind::kAddress, "address"},
    {FieldKind::kDate, "date"},
    {FieldKind::kIdentifier, "identifier"},
    {FieldKind::kPostalCode, "postal_code"},
    {FieldKind::kPhone, "phone"},
    {FieldKind::kEmail, "email"},
    {FieldKind::kText, "text"},
    {FieldKind::kNumber, "number"},
};

constexpr std::string_view kTests[] = {"exact",
                                       "levenshtein",
                                       "damerau_levenshtein",
                                       "jaro_winkler",
                                       "jaro",
                                       "name",
                                       "token_set",
                                       "qgram",
                                       "soundex",
                                       "nysiis",
                                       "metaphone",
                                       "number_abs",
                                       "number_rel",
                                       "date_days",
                                       "address_street",
                                       "address_name",
                                       "address_street_only"};

Result<RuleSpec> parse_rule(const Json& rule, std::string_view where) {
  RuleSpec out;
  if (rule.is_string()) {
    out.keys.push_back(rule.as_string());
  } else if (rule.is_array()) {
    for (const auto& k : rule.as_array()) {
      if (!k.is_string()) return invalid_argument(std::string(where) + ": keys are strings");
      out.keys.push_back(k.as_string());
    }
  } else if (rule.is_object()) {
    out.name = rule.get_string("name");
    const Json* keys = rule.find("keys");
    if (keys == nullptr) return invalid_argument(std::string(where) + ": a rule needs 'keys'");
    CIVICBUS_ASSIGN_OR_RETURN(RuleSpec inner, parse_rule(*keys, where));
    out.keys = std::move(inner.keys);
  } else {
    return invalid_argument(
        std::string(where) +
        ": a rule is a list of keys, such as [postal_code, \"civic(address)\"]");
  }
  if (out.keys.empty()) return invalid_argument(std::string(where) + ": a rule has no keys");
  return out;
}

Result<std::vector<RuleSpec>> parse_rules(const Json* rules, std::string_view what) {
  std::vector<RuleSpec> out;
  if (rules == nullptr) return out;
  if (!rules->is_array()) return invalid_argument(std::string(what) + " is a list of rules");
  for (std::size_t i = 0; i < rules->size(); ++i) {
    CIVICBUS_ASSIGN_OR_RETURN(
        RuleSpec rule,
        parse_rule(rules->as_array()[i], std::string(what) + "[" + std::to_string(i) + "]"));
    out.push_back(std::move(rule));
  }
  return out;
}

Result<LevelSpec> parse_level(const Json& level, std::string_view where) {
  LevelSpec out;
  if (level.is_string()) {
    out.test = level.as_string();
  } else if (level.is_object() && level.size() == 1 && !level.contains("test")) {
    // {jaro_winkler: 0.92}
    const auto& [test, threshold] = level.as_object().front();
    out.test = test;
    if (!threshold.is_number()) {
      return invalid_argument(std::string(where) + ": the threshold of '" + test + "' is a number");
    }
    out.threshold = threshold.as_double();
  } else if (level.is_object()) {
    out.test = level.get_string("test");
    if (const Json* t = level.find("threshold"); t && t->is_number()) {
      out.threshold = t->as_double();
    }
    out.label = level.get_string("label");
  } else {
    return invalid_argument(std::string(where) +
                            ": a level is a test name or {test: threshold}, e.g. "
                            "{jaro_winkler: 0.92}");
  }
  return out;
}

}  // namespace

std::string_view field_kind_name(FieldKind kind) {
  for (const auto& k : kKinds) {
    if (k.kind == kind) return k.name;
  }
  return "text";
}

std::optional<FieldKind> parse_field_kind(std::string_view name) {
  for (const auto& k : kKinds) {
    if (k.name == name) return k.kind;
  }
  return std::nullopt;
}

bool known_level_test(std::string_view test) {
  for (auto t : kTests) {
    if (t == test) return true;
  }
  return false;
}

std::vector<LevelSpec> default_levels(FieldKind kind) {
  switch (kind) {
    case FieldKind::kName:
      return {{"exact", 0, {}},
              {"jaro_winkler", 0.92, {}},
              {"jaro_winkler", 0.88, {}},
              {"jaro_winkler", 0.70, {}}};
    case FieldKind::kAddress:
      return {{"exact", 0, {}},
              {"address_street", 0, {}},
              {"address_name", 0.88, {}},
              {"address_street_only", 0, {}}};
    case FieldKind::kDate:
      return {{"exact", 0, {}},
              {"damerau_levenshtein", 1, {}},
              {"date_days", 31, {}},
              {"date_days", 366, {}}};
    case FieldKind::kIdentifier:
      return {{"exact", 0, {}}, {"damerau_levenshtein", 1, {}}, {"levenshtein", 2, {}}};
    case FieldKind::kPostalCode:
      return {{"exact", 0, {}}, {"damerau_levenshtein", 1, {}}};
    case FieldKind::kPhone:
      return {{"exact", 0, {}}, {"damerau_levenshtein", 1, {}}};
    case FieldKind::kEmail:
      return {{"exact", 0, {}}, {"levenshtein", 2, {}}};
    case FieldKind::kText:
      return {{"exact", 0, {}}, {"token_set", 0.8, {}}, {"qgram", 0.6, {}}};
    case FieldKind::kNumber:
      return {{"exact", 0, {}}, {"number_rel", 0.01, {}}, {"number_rel", 0.10, {}}};
  }
  return {{"exact", 0, {}}};
}

std::string level_label(const LevelSpec& level) {
  if (!level.label.empty()) return level.label;
  const std::string& t = level.test;
  auto number = [](double v) {
    std::string s = std::to_string(v);
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  };
  if (t == "exact" || t == "soundex" || t == "nysiis" || t == "metaphone" ||
      t == "address_street" || t == "address_street_only") {
    return t;
  }
  if (t == "levenshtein" || t == "damerau_levenshtein" || t == "number_abs" || t == "number_rel" ||
      t == "date_days") {
    return t + " <= " + number(level.threshold);
  }
  return t + " >= " + number(level.threshold);
}

Result<MatchSettings> MatchSettings::from_json(const Json& config) {
  if (!config.is_object()) return invalid_argument("match settings are an object");
  MatchSettings s;
  std::string link = config.get_string("link_type", "dedupe");
  if (link == "dedupe") {
    s.link_type = LinkType::kDedupe;
  } else if (link == "link" || link == "link_only") {
    s.link_type = LinkType::kLink;
  } else {
    return invalid_argument("link_type '" + link + "' is not one of dedupe, link");
  }
  s.unique_id = config.get_string("unique_id");
  const Json* comparisons = config.find("comparisons");
  if (comparisons == nullptr || !comparisons->is_array()) {
    return invalid_argument(
        "match settings need 'comparisons': a list such as [{field: surname, kind: name}]");
  }
  for (std::size_t i = 0; i < comparisons->size(); ++i) {
    const Json& c = comparisons->as_array()[i];
    std::string where = "comparisons[" + std::to_string(i) + "]";
    ComparisonSpec spec;
    if (c.is_string()) {
      spec.field = c.as_string();
    } else if (c.is_object()) {
      spec.field = c.get_string("field");
      spec.right_field = c.get_string("right_field");
      spec.name = c.get_string("name");
      std::string kind = c.get_string("kind", "text");
      auto k = parse_field_kind(kind);
      if (!k) {
        return invalid_argument(where + ": kind '" + kind +
                                "' is not one of name, address, date, identifier, postal_code, "
                                "phone, email, text, number");
      }
      spec.kind = *k;
      spec.term_frequency = c.get_bool("term_frequency", false);
      if (const Json* levels = c.find("levels")) {
        if (!levels->is_array()) return invalid_argument(where + ": levels is a list");
        for (std::size_t l = 0; l < levels->size(); ++l) {
          CIVICBUS_ASSIGN_OR_RETURN(
              LevelSpec level,
              parse_level(levels->as_array()[l], where + ".levels[" + std::to_string(l) + "]"));
          spec.levels.push_back(std::move(level));
        }
      }
    } else {
      return invalid_argument(where + ": a comparison is a field name or an object");
    }
    if (spec.field.empty()) return invalid_argument(where + ": 'field' is missing");
    s.comparisons.push_back(std::move(spec));
  }
  CIVICBUS_ASSIGN_OR_RETURN(s.blocking, parse_rules(config.find("blocking"), "blocking"));
  CIVICBUS_ASSIGN_OR_RETURN(s.deterministic,
                            parse_rules(config.find("deterministic"), "deterministic"));
  if (const Json* t = config.find("thresholds"); t && t->is_object()) {
    if (const Json* m = t->find("match"); m && m->is_number()) s.thresholds.match = m->as_double();
    if (const Json* r = t->find("review"); r && r->is_number()) {
      s.thresholds.review = r->as_double();
    }
  }
  if (const Json* t = config.find("training"); t && t->is_object()) {
    s.training.u_sample_pairs = static_cast<std::size_t>(
        t->get_int("u_sample_pairs", static_cast<std::int64_t>(s.training.u_sample_pairs)));
    s.training.em_sample_pairs = static_cast<std::size_t>(
        t->get_int("em_sample_pairs", static_cast<std::int64_t>(s.training.em_sample_pairs)));
    s.training.max_iterations = static_cast<int>(std::clamp<std::int64_t>(
        t->get_int("max_iterations", s.training.max_iterations), -1, 1'000'000));
    s.training.seed =
        static_cast<std::uint64_t>(t->get_int("seed", static_cast<std::int64_t>(s.training.seed)));
    if (const Json* p = t->find("prior"); p && p->is_number()) s.training.prior = p->as_double();
    if (const Json* p = t->find("convergence"); p && p->is_number()) {
      s.training.convergence = p->as_double();
    }
  }
  s.max_block_size = static_cast<std::size_t>(
      config.get_int("max_block_size", static_cast<std::int64_t>(s.max_block_size)));
  s.one_to_one = config.get_bool("one_to_one", s.one_to_one);
  const std::int64_t threads = config.get_int("threads", s.threads);
  s.threads = static_cast<int>(std::clamp<std::int64_t>(threads, -1, 1'000'000));
  CIVICBUS_RETURN_IF_ERROR(s.validate());
  return s;
}

std::vector<std::string> MatchSettings::fields() const {
  std::vector<std::string> out;
  auto add = [&](std::string_view f) {
    while (!f.empty() && f.front() == ' ') f.remove_prefix(1);
    while (!f.empty() && f.back() == ' ') f.remove_suffix(1);
    if (!f.empty() && std::find(out.begin(), out.end(), f) == out.end()) out.emplace_back(f);
  };
  if (!unique_id.empty()) add(unique_id);
  for (const auto& c : comparisons) add(c.field);
  for (const auto* rules : {&deterministic, &blocking}) {
    for (const auto& rule : *rules) {
      for (std::string_view key : rule.keys) {
        // "soundex(surname)", "first(given_name, 3)" or a plain field.
        auto open = key.find('(');
        if (open == std::string_view::npos) {
          add(key);
          continue;
        }
        std::string_view args = key.substr(open + 1);
        add(args.substr(0, args.find_first_of(",)")));
      }
    }
  }
  return out;
}

Status MatchSettings::validate() const {
  if (comparisons.empty()) return invalid_argument("match settings have no comparisons");
  if (comparisons.size() > kMaxComparisons) {
    return invalid_argument("match settings have " + std::to_string(comparisons.size()) +
                            " comparisons; at most " + std::to_string(kMaxComparisons));
  }
  std::set<std::string> names;
  for (std::size_t i = 0; i < comparisons.size(); ++i) {
    const auto& c = comparisons[i];
    std::string name = c.name.empty() ? c.field : c.name;
    if (!names.insert(name).second) {
      return invalid_argument("comparison '" + name + "' appears twice; give one a 'name'");
    }
    if (c.levels.size() + 2 > kMaxLevels) {
      return invalid_argument("comparison '" + name + "' has " + std::to_string(c.levels.size()) +
                              " levels; at most " + std::to_string(kMaxLevels - 2));
    }
    for (const auto& l : c.levels) {
      if (!known_level_test(l.test)) {
        return invalid_argument("comparison '" + name + "': level test '" + l.test +
                                "' is not one of exact, levenshtein, damerau_levenshtein, "
                                "jaro_winkler, jaro, name, token_set, qgram, soundex, nysiis, "
                                "metaphone, number_abs, number_rel, date_days, address_street, "
                                "address_name, address_street_only");
      }
      if (l.test.rfind("address_", 0) == 0 && c.kind != FieldKind::kAddress) {
        return invalid_argument("comparison '" + name + "': level '" + l.test +
                                "' needs kind: address");
      }
    }
  }
  if (blocking.empty() && deterministic.empty()) {
    return invalid_argument(
        "match settings need 'blocking' rules such as [[postal_code], [surname, dob]]: "
        "comparing every pair is quadratic");
  }
  if (!(thresholds.review > 0 && thresholds.review <= thresholds.match && thresholds.match <= 1)) {
    return invalid_argument("thresholds must satisfy 0 < review <= match <= 1 (got review " +
                            std::to_string(thresholds.review) + ", match " +
                            std::to_string(thresholds.match) + ")");
  }
  if (training.prior < 0 || training.prior >= 1) {
    return invalid_argument("training.prior is a probability in [0, 1)");
  }
  if (training.max_iterations < 1 || training.max_iterations > 10'000) {
    return invalid_argument("training.max_iterations must be between 1 and 10000");
  }
  if (threads < 1 || threads > 256) {
    return invalid_argument("threads must be between 1 and 256 (got " + std::to_string(threads) +
                            ")");
  }
  if (max_block_size < 2) return invalid_argument("max_block_size must be at least 2");
  return Status();
}

}  // namespace civicbus::match
