// `civicbus match`: deduplicates one CSV file or links two with the MatchEngine, writes the
// scored pairs and the clusters, and prints what blocking, training and scoring did. Opens no
// node.
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "civicbus/core/csv.hpp"
#include "civicbus/match/engine.hpp"
#include "cli/commands.hpp"
#include "core/read_file.hpp"

namespace civicbus::cli {
namespace {

std::string_view decision_name(match::ScoredPair::Decision d) {
  switch (d) {
    case match::ScoredPair::Decision::kMatch:
      return "match";
    case match::ScoredPair::Decision::kReview:
      return "review";
    case match::ScoredPair::Decision::kNonMatch:
      break;
  }
  return "non_match";
}

Status write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return io_error(fmt::format("cannot write '{}'", path));
  out << text;
  out.close();
  if (!out) return io_error(fmt::format("writing '{}' failed", path));
  return Status();
}

// "pairs.csv" -> "pairs_clusters.csv".
std::string clusters_path_for(const std::string& out) {
  std::filesystem::path p(out);
  return (p.parent_path() / (p.stem().string() + "_clusters" + p.extension().string())).string();
}

}  // namespace

int run_match(const Args& args) {
  const auto& files = args.positionals();
  if (files.empty() || files.size() > 2) {
    return usage_error("match", "give one CSV file to deduplicate or two to link");
  }
  auto rules = args.value("config");
  if (!rules) return usage_error("match", "--config FILE (the match rules, YAML) is required");
  auto settings = load_match_file(*rules);
  if (!settings.ok()) return fail(settings.status());
  if (files.size() == 2) settings->link_type = match::LinkType::kLink;
  if (files.size() == 1 && settings->link_type == match::LinkType::kLink) {
    return usage_error("match", "the rules say link_type: link; give two CSV files");
  }
  if (args.has("one-to-one")) settings->one_to_one = true;

  auto left = match::Dataset::read_csv(files[0]);
  if (!left.ok()) return fail(left.status());
  std::optional<match::Dataset> right;
  if (files.size() == 2) {
    auto r = match::Dataset::read_csv(files[1]);
    if (!r.ok()) return fail(r.status());
    right = std::move(r).value();
  }
  const match::Dataset* right_ptr = right ? &*right : nullptr;

  auto engine = match::MatchEngine::create(*settings);
  if (!engine.ok()) return fail(engine.status().with_context(*rules));
  if (auto model = args.value("model")) {
    auto text = read_text_file(*model);
    if (!text.ok()) return fail(text.status().with_context("model file"));
    auto doc = Json::parse(*text);
    if (!doc.ok()) return fail(doc.status().with_context(*model));
    if (Status s = engine->load_model(*doc); !s.ok()) return fail(s.with_context(*model));
  }

  auto result = engine->run(*left, right_ptr, args.has("all"));
  if (!result.ok()) return fail(result.status());

  std::printf("%zu records%s; %llu candidate pairs\n", left->size() + (right ? right->size() : 0),
              right ? fmt::format(" ({} + {})", left->size(), right->size()).c_str() : "",
              static_cast<unsigned long long>(result->candidate_pairs));
  Table rule_table({"blocking rule", "pairs", "blocks", "skipped blocks"});
  for (const auto& r : result->rules) {
    rule_table.add({r.rule, std::to_string(r.candidate_pairs), std::to_string(r.blocks),
                    r.skipped_blocks == 0
                        ? "0"
                        : fmt::format("{} ({} pairs)", r.skipped_blocks, r.skipped_pairs)});
  }
  std::printf("%s", rule_table.render().c_str());
  if (result->training.iterations > 0) {
    std::printf(
        "trained: EM %d iterations%s over %llu pairs, u from %llu random pairs; prior %.3g\n",
        result->training.iterations, result->training.converged ? " (converged)" : "",
        static_cast<unsigned long long>(result->training.em_pairs),
        static_cast<unsigned long long>(result->training.u_sample_pairs), result->training.prior);
  }
  if (args.has("verbose")) {
    Table params({"comparison", "level", "m", "u", "weight"});
    for (const auto& c : engine->parameters()) {
      for (const auto& l : c.levels) {
        params.add({c.name, l.label, fmt::format("{:.4f}", l.m), fmt::format("{:.6f}", l.u),
                    fmt::format("{:+.2f}", std::log2(l.m / l.u))});
      }
    }
    std::printf("%s", params.render().c_str());
  }

  // pairs.csv: one row per pair at or above the review threshold (every pair with --all).
  const std::string out = args.value_or("out", "pairs.csv");
  std::string text = "left_id,right_id,match_weight,match_probability,decision,rule,cluster\r\n";
  const auto offset = static_cast<std::uint32_t>(right ? left->size() : 0);
  const match::Dataset& rdata = right ? *right : *left;
  auto cluster_id = [&](std::uint32_t node) {
    return node < left->size() ? engine->record_id(*left, node)
                               : engine->record_id(*right, node - offset);
  };
  for (const auto& p : result->pairs) {
    std::string rule;
    if (p.deterministic_rule >= 0) {
      const auto& spec = settings->deterministic[static_cast<std::size_t>(p.deterministic_rule)];
      rule = spec.name;
      if (rule.empty()) {
        for (std::size_t k = 0; k < spec.keys.size(); ++k) {
          rule += (k == 0 ? "" : " & ") + spec.keys[k];
        }
      }
    }
    std::vector<std::string> row{engine->record_id(*left, p.left),
                                 engine->record_id(rdata, p.right),
                                 fmt::format("{:.4f}", p.match_weight),
                                 fmt::format("{:.6f}", p.match_probability),
                                 std::string(decision_name(p.decision)),
                                 rule,
                                 p.decision == match::ScoredPair::Decision::kMatch
                                     ? cluster_id(result->cluster[p.left])
                                     : ""};
    text += csv_format_record(row);
  }
  if (Status s = write_text(out, text); !s.ok()) return fail(s);

  // The clusters: every record with its entity (the id of the cluster's first record).
  const std::string clusters_out = args.value_or("clusters", clusters_path_for(out));
  std::string ctext = "cluster,source,record_id\r\n";
  for (std::uint32_t r = 0; r < left->size(); ++r) {
    std::vector<std::string> row{cluster_id(result->cluster[r]), left->source(),
                                 engine->record_id(*left, r)};
    ctext += csv_format_record(row);
  }
  if (right) {
    for (std::uint32_t r = 0; r < right->size(); ++r) {
      std::vector<std::string> row{cluster_id(result->cluster[offset + r]), right->source(),
                                   engine->record_id(*right, r)};
      ctext += csv_format_record(row);
    }
  }
  if (Status s = write_text(clusters_out, ctext); !s.ok()) return fail(s);

  if (auto save = args.value("save-model")) {
    if (Status s = write_text(*save, engine->model_json().dump(2) + "\n"); !s.ok()) return fail(s);
  }

  std::printf("%llu matches, %llu for clerical review; %zu entities\n",
              static_cast<unsigned long long>(result->matches),
              static_cast<unsigned long long>(result->reviews), result->clusters);
  std::printf("block %.2fs, train %.2fs, score %.2fs (%.0f pairs/s), cluster %.2fs\n",
              result->block_seconds, result->train_seconds, result->score_seconds,
              result->score_seconds > 0
                  ? static_cast<double>(result->candidate_pairs) / result->score_seconds
                  : 0.0,
              result->cluster_seconds);
  std::printf("pairs: %s\nclusters: %s\n", out.c_str(), clusters_out.c_str());

  // The best pairs explained, so a reader sees why they matched.
  if (auto n = args.value("explain")) {
    std::size_t count = static_cast<std::size_t>(std::max(0, std::atoi(n->c_str())));
    std::vector<std::pair<std::uint32_t, std::uint32_t>> pairs;
    for (std::size_t i = 0; i < result->pairs.size() && pairs.size() < count; ++i) {
      pairs.emplace_back(result->pairs[i].left, result->pairs[i].right);
    }
    auto explained = engine->explain(*left, right_ptr, pairs);
    if (!explained.ok()) return fail(explained.status());
    for (const auto& e : *explained) std::printf("\n%s", e.to_text().c_str());
  }
  return kExitOk;
}

}  // namespace civicbus::cli
