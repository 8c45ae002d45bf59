// `civicbus match`: a file deduplicated, two linked, the pairs and clusters files, a saved model
// scoring a later run, and the errors.
#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>

#include "civicbus/core/csv.hpp"
#include "cli/cli_support.hpp"

namespace civicbus {
namespace {

using cli_testing::cli;
using cli_testing::contains;

const std::string kFebrl = std::string(CIVICBUS_SHARED_DIR) + "/conformance/febrl";

constexpr const char* kRules = R"(unique_id: rec_id
comparisons:
  - {field: given_name, kind: name, term_frequency: true}
  - {field: surname, kind: name, term_frequency: true}
  - {field: date_of_birth, kind: date}
  - {field: soc_sec_id, kind: identifier}
  - {field: street_number, kind: identifier, levels: [exact, {damerau_levenshtein: 1}]}
  - {field: address_1, kind: text, levels: [exact, {jaro_winkler: 0.9}, {jaro_winkler: 0.75}]}
  - {field: suburb, kind: text, levels: [exact, {jaro_winkler: 0.9}]}
  - {field: postcode, kind: postal_code}
blocking:
  - [soc_sec_id]
  - [given_name, surname]
  - [date_of_birth]
  - [postcode, street_number]
thresholds: {match: 0.9, review: 0.5}
training: {u_sample_pairs: 100000}
)";

// "rec-12-dup-0" -> "12".
std::string entity_of(std::string_view id) {
  auto a = id.find('-');
  auto b = id.find('-', a + 1);
  return std::string(id.substr(a + 1, b - a - 1));
}

CsvTable read_csv_file(const std::string& path) {
  auto table = parse_csv(testing::read_file(path));
  REQUIRE_MESSAGE(table.ok(), table.status().to_string());
  return std::move(table).value();
}

TEST_CASE("cli: match deduplicates a file and writes pairs and clusters") {
  testing::TempDir dir;
  testing::write_file(dir.file("rules.yaml"), kRules);
  auto r = cli({"match", "--config", dir.file("rules.yaml"), kFebrl + "/dataset1.csv", "--out",
                dir.file("pairs.csv"), "--explain", "1", "--save-model", dir.file("model.json")});
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(contains(r.output, "1000 records"));
  CHECK(contains(r.output, "given_name & surname"));  // pairs per blocking rule
  CHECK(contains(r.output, "trained: EM"));
  CHECK(contains(r.output, "match weight"));  // the explained pair
  auto pairs = read_csv_file(dir.file("pairs.csv"));
  CHECK(pairs.header == std::vector<std::string>{"left_id", "right_id", "match_weight",
                                                 "match_probability", "decision", "rule",
                                                 "cluster"});
  int matches = 0, correct = 0;
  for (const auto& rec : pairs.records) {
    if (rec.fields[4] != "match") continue;
    ++matches;
    correct += entity_of(rec.fields[0]) == entity_of(rec.fields[1]);
  }
  CHECK(matches >= 490);
  CHECK(correct == matches);
  auto clusters = read_csv_file(dir.file("pairs_clusters.csv"));
  CHECK(clusters.records.size() == 1000);
  std::set<std::string> entities;
  for (const auto& rec : clusters.records) entities.insert(rec.fields[0]);
  CHECK(entities.size() >= 500);
  CHECK(entities.size() <= 510);

  // The saved model scores a later run without training.
  auto again = cli({"match", "--config", dir.file("rules.yaml"), kFebrl + "/dataset1.csv", "--out",
                    dir.file("again.csv"), "--model", dir.file("model.json")});
  INFO(again.output);
  REQUIRE(again.exit_code == 0);
  CHECK_FALSE(contains(again.output, "trained: EM"));
  CHECK(testing::read_file(dir.file("again.csv")) == testing::read_file(dir.file("pairs.csv")));
}

TEST_CASE("cli: match links two files one to one") {
  testing::TempDir dir;
  testing::write_file(dir.file("rules.yaml"), kRules);
  // dataset1's originals and their duplicates in two files.
  auto all = read_csv_file(kFebrl + "/dataset1.csv");
  std::string header = csv_format_record(all.header);
  std::string originals = header, duplicates = header;
  for (const auto& rec : all.records) {
    (rec.fields[0].find("-org") != std::string::npos ? originals : duplicates) +=
        csv_format_record(rec.fields);
  }
  testing::write_file(dir.file("originals.csv"), originals);
  testing::write_file(dir.file("duplicates.csv"), duplicates);
  auto r = cli({"match", "--config", dir.file("rules.yaml"), dir.file("originals.csv"),
                dir.file("duplicates.csv"), "--one-to-one", "--out", dir.file("links.csv")});
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(contains(r.output, "1000 records (500 + 500)"));
  auto clusters = read_csv_file(dir.file("links_clusters.csv"));
  std::map<std::string, std::map<std::string, int>> per_cluster;  // cluster -> source -> count
  for (const auto& rec : clusters.records) ++per_cluster[rec.fields[0]][rec.fields[1]];
  for (const auto& [cluster, sources] : per_cluster) {
    for (const auto& [source, n] : sources) CHECK(n == 1);  // one to one
  }
  auto links = read_csv_file(dir.file("links.csv"));
  int matches = 0, correct = 0;
  for (const auto& rec : links.records) {
    if (rec.fields[4] != "match") continue;
    ++matches;
    correct += entity_of(rec.fields[0]) == entity_of(rec.fields[1]);
  }
  CHECK(matches >= 490);
  CHECK(correct >= matches - 1);
}

TEST_CASE("cli: match names what is wrong") {
  testing::TempDir dir;
  testing::write_file(dir.file("rules.yaml"), kRules);
  testing::write_file(dir.file("bad.yaml"),
                      "comparisons: [{field: surname, kind: colour}]\nblocking: [[surname]]\n");
  auto no_rules = cli({"match", kFebrl + "/dataset1.csv"});
  CHECK(no_rules.exit_code == 2);
  CHECK(contains(no_rules.output, "--config"));
  auto bad = cli({"match", "--config", dir.file("bad.yaml"), kFebrl + "/dataset1.csv"});
  CHECK(bad.exit_code == 1);
  CHECK(contains(bad.output, "bad.yaml"));
  CHECK(contains(bad.output, "kind 'colour'"));
  auto missing = cli({"match", "--config", dir.file("rules.yaml"), dir.file("nope.csv")});
  CHECK(missing.exit_code == 1);
  CHECK(contains(missing.output, "nope.csv"));
  testing::write_file(dir.file("other.csv"), "id,name\n1,Ann\n");
  auto columns = cli({"match", "--config", dir.file("rules.yaml"), dir.file("other.csv")});
  CHECK(columns.exit_code == 1);
  CHECK(contains(columns.output, "rec_id"));
}

}  // namespace
}  // namespace civicbus
