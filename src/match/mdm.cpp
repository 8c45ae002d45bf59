// apply_extract: an extract's records find their entities (known member, match, review, new) and
// are applied to the golden records.
#include "civicbus/match/mdm.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <unordered_map>
#include <utility>

#include "civicbus/core/crypto.hpp"
#include "civicbus/match/review.hpp"

namespace civicbus::match {
namespace {

// One record of the extract, checked and converted before anything is applied.
struct Prepared {
  SourceRecord record;
  std::optional<std::string> entity_id;  // when the store already knows the record
  ExtractRecordOutcome outcome;
};

std::string describe(const ApplyExtractOptions& options, std::size_t row, std::string_view id) {
  if (id.empty()) return fmt::format("{} extract row {}", options.source, row + 1);
  return fmt::format("{} record '{}' (extract row {})", options.source, id, row + 1);
}

Result<Json> typed_value(ExtractValueType type, std::string_view text) {
  switch (type) {
    case ExtractValueType::kText:
      return Json(text);
    case ExtractValueType::kInteger: {
      std::int64_t v = 0;
      const char* end = text.data() + text.size();
      auto [ptr, ec] = std::from_chars(text.data(), end, v);
      if (ec != std::errc() || ptr != end) return invalid_argument("is not a whole number");
      return Json(static_cast<long long>(v));
    }
    case ExtractValueType::kNumber: {
      std::string copy(text);
      char* end = nullptr;
      double v = std::strtod(copy.c_str(), &end);
      if (end != copy.c_str() + copy.size() || !std::isfinite(v) ||
          copy.find_first_of("xXnN") != std::string::npos) {
        return invalid_argument("is not a number");
      }
      return Json(v);
    }
  }
  return Json(text);
}

// RFC 3339, or a date alone (midnight UTC).
Result<SystemTime> parse_time(std::string_view text) {
  if (text.size() == 10) return parse_rfc3339(std::string(text) + "T00:00:00Z");
  return parse_rfc3339(text);
}

// How an attribute value reads as the text a Dataset holds.
std::string as_text(const Json& v) {
  if (v.is_null()) return {};
  if (v.is_string()) return v.as_string();
  if (v.is_bool()) return v.as_bool() ? "true" : "false";
  return v.dump();
}

std::string rule_name(const RuleSpec& rule) {
  if (!rule.name.empty()) return rule.name;
  std::string out;
  for (const auto& k : rule.keys) out += (out.empty() ? "" : " & ") + k;
  return out;
}

std::string new_entity_id(const ApplyExtractOptions& options, std::string_view record_id) {
  std::string key = options.source;
  key.push_back('\0');
  key.append(record_id);
  return options.entity_prefix + crypto::to_hex(crypto::sha256(key)).substr(0, 16);
}

// The golden records offered to matching, one row per entity, under the extract's columns.
struct Existing {
  Dataset data;
  std::vector<std::string> entity_ids;  // by row
};

Result<Existing> existing_records(const GoldenRecordStore& store, const MatchEngine& engine,
                                  const Dataset& extract, const ApplyExtractOptions& options) {
  std::vector<std::string> columns = extract.columns();
  for (const auto& c : engine.settings().comparisons) {
    if (!c.right_field.empty() &&
        std::find(columns.begin(), columns.end(), c.right_field) == columns.end()) {
      columns.push_back(c.right_field);
    }
  }
  Existing existing{Dataset(columns, "golden:" + store.options().kind), {}};
  std::vector<std::string> texts(columns.size());
  std::vector<std::string_view> views(columns.size());
  std::string after;
  while (true) {
    CIVICBUS_ASSIGN_OR_RETURN(std::vector<GoldenRecord> page, store.list(options.page_size, after));
    for (const GoldenRecord& g : page) {
      if (options.one_record_per_entity &&
          std::any_of(g.members.begin(), g.members.end(),
                      [&](const MemberRef& m) { return m.source == options.source; })) {
        continue;
      }
      for (std::size_t c = 0; c < columns.size(); ++c) {
        auto it = g.attributes.find(columns[c]);
        texts[c] = it == g.attributes.end() ? std::string() : as_text(it->second.value);
        views[c] = texts[c];
      }
      existing.data.add(views);
      existing.entity_ids.push_back(g.entity_id);
    }
    if (page.size() < options.page_size) break;
    after = page.back().entity_id;
  }
  return existing;
}

}  // namespace

std::string_view to_string(ExtractLink link) {
  switch (link) {
    case ExtractLink::kKnown:
      return "known";
    case ExtractLink::kRule:
      return "rule";
    case ExtractLink::kScore:
      return "score";
    case ExtractLink::kReviewed:
      return "reviewed";
    case ExtractLink::kCreated:
      return "created";
    case ExtractLink::kReview:
      return "review";
  }
  return "?";
}

Status ApplyExtractOptions::validate() const {
  if (source.empty()) {
    return invalid_argument("apply_extract: 'source' (the source system) is empty");
  }
  if (record_id_column.empty()) {
    return invalid_argument("apply_extract: 'record_id_column' (the column of " + source +
                            "'s record ids) is empty");
  }
  if (page_size == 0) return invalid_argument("apply_extract: 'page_size' must be at least 1");
  return Status();
}

Result<ExtractReport> apply_extract(MatchEngine& engine, GoldenRecordStore& store,
                                    const Dataset& extract, const ApplyExtractOptions& options,
                                    ReviewQueue* review) {
  CIVICBUS_RETURN_IF_ERROR(options.validate());
  const MatchSettings& settings = engine.settings();
  if (settings.link_type != LinkType::kLink) {
    return invalid_argument(
        "apply_extract: the match settings must have link_type link (the extract is linked to "
        "the golden records); these deduplicate");
  }
  auto need_column = [&](std::string_view column, std::string_view what) -> Status {
    if (extract.column(column) >= 0) return Status();
    return invalid_argument(fmt::format("apply_extract: {} column '{}' is not in the {} extract",
                                        what, column, options.source));
  };
  CIVICBUS_RETURN_IF_ERROR(need_column(options.record_id_column, "the record id"));
  if (!options.updated_at_column.empty()) {
    CIVICBUS_RETURN_IF_ERROR(need_column(options.updated_at_column, "the updated_at"));
  }
  std::vector<std::pair<int, std::string>> field_columns;  // column index, name
  if (options.fields.empty()) {
    for (const auto& c : extract.columns()) field_columns.emplace_back(extract.column(c), c);
  } else {
    for (const auto& f : options.fields) {
      CIVICBUS_RETURN_IF_ERROR(need_column(f, "the field"));
      field_columns.emplace_back(extract.column(f), f);
    }
  }
  for (const auto& [column, type] : options.value_types) {
    CIVICBUS_RETURN_IF_ERROR(need_column(column, "the value_types"));
  }

  // 1. Check and convert every record before anything is applied.
  ExtractReport report;
  report.records = extract.size();
  const int id_column = extract.column(options.record_id_column);
  const int time_column =
      options.updated_at_column.empty() ? -1 : extract.column(options.updated_at_column);
  std::vector<Prepared> records(extract.size());
  std::unordered_map<std::string_view, std::size_t> rows_by_id;
  for (std::size_t row = 0; row < extract.size(); ++row) {
    Prepared& p = records[row];
    const std::string_view id = extract.value(row, id_column);
    if (id.empty()) {
      return invalid_argument(fmt::format("{}: the record id column '{}' is empty",
                                          describe(options, row, {}), options.record_id_column));
    }
    if (auto [it, fresh] = rows_by_id.emplace(id, row); !fresh) {
      return invalid_argument(fmt::format("{}: the id appears twice in the extract (also row {})",
                                          describe(options, row, id), it->second + 1));
    }
    p.record.source = options.source;
    p.record.record_id = std::string(id);
    p.record.updated_at = options.updated_at;
    if (time_column >= 0 && !extract.value(row, time_column).empty()) {
      auto t = parse_time(extract.value(row, time_column));
      if (!t.ok()) {
        return invalid_argument(
            fmt::format("{}: '{}' ('{}') is not an RFC 3339 time or a YYYY-MM-DD date",
                        describe(options, row, id), options.updated_at_column,
                        extract.value(row, time_column)));
      }
      p.record.updated_at = *t;
    }
    p.record.fields = Json::object();
    for (const auto& [column, name] : field_columns) {
      const std::string_view text = extract.value(row, column);
      if (text.empty()) continue;
      auto type = options.value_types.find(name);
      auto value = typed_value(
          type == options.value_types.end() ? ExtractValueType::kText : type->second, text);
      if (!value.ok()) {
        return invalid_argument(fmt::format("{}: field '{}' ('{}') {}", describe(options, row, id),
                                            name, text, value.status().message()));
      }
      p.record.fields.set(name, std::move(*value));
    }
    p.outcome.row = row;
    p.outcome.record_id = p.record.record_id;
    CIVICBUS_ASSIGN_OR_RETURN(p.entity_id, store.entity_of(options.source, id));
  }

  // 2. Match the records the store does not know against the golden records.
  std::vector<std::size_t> unknown;  // left row -> extract row
  for (std::size_t row = 0; row < records.size(); ++row) {
    if (!records[row].entity_id) unknown.push_back(row);
  }
  std::vector<std::optional<std::size_t>> linked(unknown.size());  // existing row
  std::vector<const ScoredPair*> link_pair(unknown.size(), nullptr);
  std::vector<ExtractLink> link_kind(unknown.size(), ExtractLink::kCreated);
  std::vector<ReviewItem> review_items;
  MatchResult result;
  std::optional<Existing> existing;
  Dataset left(extract.columns(), extract.source());
  if (!unknown.empty()) {
    CIVICBUS_ASSIGN_OR_RETURN(existing, existing_records(store, engine, extract, options));
  }
  if (existing && existing->data.size() > 0) {
    std::vector<std::string_view> values(extract.columns().size());
    for (std::size_t row : unknown) {
      for (std::size_t c = 0; c < values.size(); ++c) {
        values[c] = extract.value(row, static_cast<int>(c));
      }
      left.add(values);
    }
    // A clerk's decisions: rejected pairs are never proposed again, accepted ones link.
    std::map<std::pair<std::string, std::string>, bool> decided;
    bool any_accepted = false;
    if (review != nullptr) {
      CIVICBUS_ASSIGN_OR_RETURN(std::vector<LabelledPair> labels, review->labelled());
      for (auto& l : labels) {
        any_accepted = any_accepted || l.match;
        decided[{l.right_id, l.left_id}] = l.match;  // a pair is unordered
        decided[{std::move(l.left_id), std::move(l.right_id)}] = l.match;
      }
    }
    auto run = engine.run(left, &existing->data, any_accepted);
    if (!run.ok()) {
      return run.status().with_context(
          fmt::format("matching {} {} records against {} golden records", unknown.size(),
                      options.source, existing->data.size()));
    }
    result = std::move(*run);
    report.candidate_pairs = result.candidate_pairs;
    report.rules = result.rules;
    report.training = result.training;

    auto decision_of = [&](const ScoredPair& s) -> std::optional<bool> {
      if (decided.empty()) return std::nullopt;
      auto it =
          decided.find({records[unknown[s.left]].record.record_id, existing->entity_ids[s.right]});
      return it == decided.end() ? std::nullopt : std::optional(it->second);
    };
    // One-to-one, best pairs first: a clerk's acceptance, then a deterministic rule, then by
    // probability and weight; rows break ties, so the outcome does not depend on threads.
    struct Candidate {
      const ScoredPair* pair;
      int tier;
      ExtractLink kind;
    };
    std::vector<Candidate> candidates;
    std::vector<const ScoredPair*> reviewable;
    for (const ScoredPair& s : result.pairs) {
      std::optional<bool> decision = decision_of(s);
      if (decision && !*decision) continue;
      if (decision && *decision) {
        candidates.push_back({&s, 2, ExtractLink::kReviewed});
      } else if (s.decision == ScoredPair::Decision::kMatch) {
        candidates.push_back(
            {&s, s.deterministic_rule >= 0 ? 1 : 0,
             s.deterministic_rule >= 0 ? ExtractLink::kRule : ExtractLink::kScore});
      }
      if (s.decision != ScoredPair::Decision::kNonMatch) reviewable.push_back(&s);
    }
    std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
      if (a.tier != b.tier) return a.tier > b.tier;
      if (a.pair->match_probability != b.pair->match_probability) {
        return a.pair->match_probability > b.pair->match_probability;
      }
      if (a.pair->match_weight != b.pair->match_weight) {
        return a.pair->match_weight > b.pair->match_weight;
      }
      return std::pair(a.pair->left, a.pair->right) < std::pair(b.pair->left, b.pair->right);
    });
    std::vector<char> right_used(existing->data.size(), 0);
    for (const Candidate& c : candidates) {
      if (linked[c.pair->left] || right_used[c.pair->right]) continue;
      linked[c.pair->left] = c.pair->right;
      link_pair[c.pair->left] = c.pair;
      link_kind[c.pair->left] = c.kind;
      right_used[c.pair->right] = 1;
    }
    // A record left without a link whose best pair is at least in the review band (or a match a
    // better record took) waits for a clerk.
    std::vector<const ScoredPair*> best(unknown.size(), nullptr);
    for (const ScoredPair* s : reviewable) {
      if (linked[s->left]) continue;
      const ScoredPair*& b = best[s->left];
      if (b == nullptr || s->match_probability > b->match_probability ||
          (s->match_probability == b->match_probability && s->match_weight > b->match_weight)) {
        b = s;
      }
    }
    std::vector<std::pair<std::uint32_t, std::uint32_t>> to_explain;
    for (std::size_t l = 0; l < unknown.size(); ++l) {
      if (best[l] == nullptr) continue;
      link_kind[l] = ExtractLink::kReview;
      link_pair[l] = best[l];
      if (review != nullptr) to_explain.emplace_back(best[l]->left, best[l]->right);
    }
    if (!to_explain.empty()) {
      auto explanations = engine.explain(left, &existing->data, to_explain);
      if (!explanations.ok()) {
        return explanations.status().with_context("explaining the pairs held for review");
      }
      for (std::size_t i = 0; i < to_explain.size(); ++i) {
        const ScoredPair& s = *best[to_explain[i].first];
        ReviewItem item;
        item.left_id = records[unknown[s.left]].record.record_id;
        item.right_id = existing->entity_ids[s.right];
        item.match_probability = std::clamp(s.match_probability, 0.0, 1.0);
        item.match_weight = s.match_weight;
        // The explanation names the records as the queue does (the engine's unique_id of a golden
        // record may be missing: that is why it is being matched).
        PairExplanation& why = (*explanations)[i];
        why.left_id = item.left_id;
        why.right_id = item.right_id;
        item.explanation = why.to_json();
        review_items.push_back(std::move(item));
      }
    }
  }
  if (review != nullptr && !review_items.empty()) {
    auto queued = review->enqueue(review_items);
    if (!queued.ok()) {
      return queued.status().with_context(
          fmt::format("queuing {} {} records for review", review_items.size(), options.source));
    }
  }

  // 3. Apply, in extract order.
  for (std::size_t l = 0; l < unknown.size(); ++l) {
    Prepared& p = records[unknown[l]];
    p.outcome.link = link_kind[l];
    if (const ScoredPair* s = link_pair[l]) {
      p.outcome.match_probability = s->match_probability;
      p.outcome.entity_id = existing->entity_ids[s->right];
      if (s->deterministic_rule >= 0 && p.outcome.link == ExtractLink::kRule) {
        p.outcome.rule =
            rule_name(settings.deterministic[static_cast<std::size_t>(s->deterministic_rule)]);
      }
    } else {
      p.outcome.entity_id = new_entity_id(options, p.record.record_id);
    }
  }
  for (Prepared& p : records) {
    if (p.entity_id) {
      p.outcome.link = ExtractLink::kKnown;
      p.outcome.entity_id = *p.entity_id;
    }
    switch (p.outcome.link) {
      case ExtractLink::kKnown:
        ++report.known;
        break;
      case ExtractLink::kRule:
        ++report.linked_by_rule;
        break;
      case ExtractLink::kScore:
        ++report.linked_by_score;
        break;
      case ExtractLink::kReviewed:
        ++report.linked_by_review;
        break;
      case ExtractLink::kCreated:
        ++report.created;
        break;
      case ExtractLink::kReview:
        ++report.queued_for_review;
        report.outcomes.push_back(p.outcome);
        continue;
    }
    if (p.outcome.link == ExtractLink::kCreated) {
      // The id is derived from the record: an entity of that id that does not hold the record is
      // someone else's, and merging into it would be wrong.
      auto clash = store.get(p.outcome.entity_id);
      if (clash.ok()) {
        return already_exists(
            fmt::format("{}: the new entity id '{}' is already taken by a {} "
                        "that does not hold the record",
                        describe(options, p.outcome.row, p.record.record_id), p.outcome.entity_id,
                        store.options().kind));
      }
      if (clash.status().code() != ErrorCode::kNotFound) return clash.status();
    }
    auto change = store.apply(p.outcome.entity_id, {p.record});
    if (!change.ok()) {
      return change.status().with_context(fmt::format(
          "applying {} to {} '{}'", describe(options, p.outcome.row, p.record.record_id),
          store.options().kind, p.outcome.entity_id));
    }
    p.outcome.changed = !change->empty();
    if (p.outcome.changed) {
      ++report.changed;
      report.changes.push_back(std::move(*change));
    } else {
      ++report.unchanged;
    }
    report.outcomes.push_back(p.outcome);
  }
  return report;
}

}  // namespace civicbus::match
