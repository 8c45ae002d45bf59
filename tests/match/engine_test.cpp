#include "civicbus/match/engine.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <set>
#include <string>

#include "civicbus/match/review.hpp"
#include "civicbus/storage/database.hpp"
#include "support/test_support.hpp"

using namespace civicbus;
using namespace civicbus::match;

namespace {

MatchSettings settings_from(std::string_view json) {
  auto doc = Json::parse(json);
  REQUIRE(doc.ok());
  auto settings = MatchSettings::from_json(*doc);
  REQUIRE_MESSAGE(settings.ok(), settings.status().to_string());
  return *settings;
}

MatchEngine engine_from(std::string_view json) {
  auto engine = MatchEngine::create(settings_from(json));
  REQUIRE_MESSAGE(engine.ok(), engine.status().to_string());
  return std::move(engine).value();
}

Dataset febrl(int n) {
  auto data = Dataset::read_csv(std::string(CIVICBUS_SHARED_DIR) + "/conformance/febrl/dataset" +
                                std::to_string(n) + ".csv");
  REQUIRE_MESSAGE(data.ok(), data.status().to_string());
  return std::move(data).value();
}

constexpr std::string_view kFebrlSettings = R"json({
  "unique_id": "rec_id",
  "comparisons": [
    {"field": "given_name", "kind": "name", "term_frequency": true},
    {"field": "surname", "kind": "name", "term_frequency": true},
    {"field": "date_of_birth", "kind": "date"},
    {"field": "soc_sec_id", "kind": "identifier"},
    {"field": "street_number", "kind": "identifier", "levels": ["exact", {"damerau_levenshtein": 1}]},
    {"field": "address_1", "kind": "text", "levels": ["exact", {"jaro_winkler": 0.9}, {"jaro_winkler": 0.75}]},
    {"field": "suburb", "kind": "text", "levels": ["exact", {"jaro_winkler": 0.9}]},
    {"field": "postcode", "kind": "postal_code"},
    {"field": "state", "kind": "text", "levels": ["exact"]}
  ],
  "blocking": [["soc_sec_id"], ["given_name", "surname"], ["date_of_birth"],
               ["postcode", "street_number"]],
  "thresholds": {"match": 0.5, "review": 0.2},
  "training": {"u_sample_pairs": 200000}
})json";

// "rec-12-dup-0" -> "12": FEBRL's records of one person share the number.
std::string entity_of(std::string_view id) {
  auto a = id.find('-');
  auto b = id.find('-', a + 1);
  return std::string(id.substr(a + 1, b - a - 1));
}

}  // namespace

TEST_CASE("match engine: settings name what is wrong") {
  auto parse = [](std::string_view json) {
    auto doc = Json::parse(json);
    REQUIRE(doc.ok());
    return MatchSettings::from_json(*doc).status();
  };
  CHECK(parse(R"json({"blocking": [["a"]]})json").message().find("comparisons") !=
        std::string::npos);
  CHECK(parse(R"json({"comparisons": [{"field": "a", "kind": "colour"}], "blocking": [["a"]]})json")
            .message()
            .find("kind 'colour'") != std::string::npos);
  CHECK(
      parse(
          R"json({"comparisons": [{"field": "a", "levels": [{"cosine": 0.5}]}], "blocking": [["a"]]})json")
          .message()
          .find("level test 'cosine'") != std::string::npos);
  CHECK(parse(R"json({"comparisons": ["a"]})json").message().find("blocking") != std::string::npos);
  CHECK(
      parse(
          R"json({"comparisons": ["a"], "blocking": [["a"]], "thresholds": {"match": 0.4, "review": 0.6}})json")
          .message()
          .find("review <= match") != std::string::npos);
  CHECK(parse(R"json({"comparisons": ["a", "a"], "blocking": [["a"]]})json")
            .message()
            .find("twice") != std::string::npos);
  CHECK(
      parse(
          R"json({"comparisons": [{"field": "a", "levels": ["address_street"]}], "blocking": [["a"]]})json")
          .message()
          .find("kind: address") != std::string::npos);

  auto engine = MatchEngine::create(
      settings_from(R"json({"comparisons": ["a"], "blocking": [["wobble(a)"]]})json"));
  REQUIRE_FALSE(engine.ok());
  CHECK(engine.status().message().find("'wobble' is not one of") != std::string::npos);

  auto e = engine_from(R"json({"comparisons": ["name"], "blocking": [["postal"]]})json");
  Dataset data({"name"});
  data.add({"x"});
  auto run = e.run(data);
  REQUIRE_FALSE(run.ok());
  CHECK(run.status().message().find("column 'postal'") != std::string::npos);
}

TEST_CASE("match engine: datasets from CSV trim values and name bad lines") {
  auto data = Dataset::parse_csv("id, name\n1, Ann \n2,Bob\n");
  REQUIRE(data.ok());
  CHECK(data->columns() == std::vector<std::string>{"id", "name"});
  CHECK(data->value(0, 1) == "Ann");
  CHECK(data->size() == 2);
  auto bad = Dataset::parse_csv("id,name\n1,Ann\n2,Bob,extra\n");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("line 3") != std::string::npos);
  auto missing = Dataset::read_csv("/nonexistent/people.csv");
  CHECK(missing.status().message().find("/nonexistent/people.csv") != std::string::npos);
}

TEST_CASE("match engine: FEBRL dataset 1 deduplicated unsupervised") {
  Dataset data = febrl(1);
  auto engine = engine_from(kFebrlSettings);
  auto result = engine.run(data);
  REQUIRE_MESSAGE(result.ok(), result.status().to_string());
  CHECK(engine.trained());
  CHECK(result->training.iterations > 0);
  CHECK(result->training.prior > 0);
  CHECK(result->training.prior < 0.01);
  // Every rule reports its pairs; pairs found by an earlier rule are not counted again.
  REQUIRE(result->rules.size() == 4);
  std::uint64_t sum = 0;
  for (const auto& r : result->rules) sum += r.candidate_pairs;
  CHECK(sum == result->candidate_pairs);
  std::set<std::pair<std::uint32_t, std::uint32_t>> seen;
  for (const auto& p : result->pairs) {
    CHECK(p.left < p.right);
    CHECK(seen.emplace(p.left, p.right).second);
  }
  std::uint64_t tp = 0, fp = 0;
  for (const auto& p : result->pairs) {
    if (p.match_probability < 0.5) continue;
    bool same =
        entity_of(engine.record_id(data, p.left)) == entity_of(engine.record_id(data, p.right));
    (same ? tp : fp)++;
  }
  const double precision = static_cast<double>(tp) / static_cast<double>(tp + fp);
  const double recall = static_cast<double>(tp) / 500.0;  // dataset1 has 500 true pairs
  MESSAGE("FEBRL dataset1: precision " << precision << " recall " << recall);
  CHECK(precision > 0.98);
  CHECK(recall > 0.98);
  // Clusters: 500 duplicates joined to their originals leave about 500 entities.
  CHECK(result->clusters >= 500);
  CHECK(result->clusters <= 510);
}

TEST_CASE("match engine: a pair's weight is explained field by field") {
  Dataset data = febrl(1);
  auto engine = engine_from(kFebrlSettings);
  auto result = engine.run(data);
  REQUIRE(result.ok());
  REQUIRE_FALSE(result->pairs.empty());
  const ScoredPair& pair = result->pairs.front();
  auto explained = engine.explain(data, nullptr, {{pair.left, pair.right}});
  REQUIRE(explained.ok());
  REQUIRE(explained->size() == 1);
  const PairExplanation& e = explained->front();
  double sum = e.prior_weight;
  for (const auto& f : e.fields) {
    sum += f.weight + f.tf_adjustment;
    if (f.level == "null") CHECK(f.weight == 0);
    if (f.level != "null") {
      CHECK(f.m > 0);
      CHECK(f.u > 0);
      CHECK(f.weight == doctest::Approx(std::log2(f.m / f.u)));
    }
  }
  CHECK(sum == doctest::Approx(e.match_weight));
  CHECK(e.match_weight == doctest::Approx(pair.match_weight));
  CHECK(e.match_probability == doctest::Approx(pair.match_probability));
  CHECK(e.fields.size() == 9);
  CHECK(e.to_text().find("match weight") != std::string::npos);
  CHECK(e.to_json().find("fields")->size() == 9);
}

TEST_CASE("match engine: term frequencies make a rare agreeing name weigh more") {
  // 200 people: many SMITHs, one ZYWICKI; pairs block on the birth date.
  Dataset data({"id", "surname", "dob"});
  std::vector<std::string> rows;
  for (int i = 0; i < 200; ++i) {
    std::string surname = i < 2 ? "ZYWICKI" : (i % 2 ? "SMITH" : "NGUYEN" + std::to_string(i));
    std::string dob = "19" + std::to_string(50 + i % 40) + "-0" + std::to_string(1 + i % 9) + "-1" +
                      std::to_string(i % 10);
    if (i == 3) dob = "1950-01-10";  // a SMITH sharing the ZYWICKIs' date
    if (i == 1) dob = "1950-01-10";
    data.add({std::to_string(i), surname, dob});
  }
  data.add({"200", "SMITH", "1950-01-10"});
  auto engine = engine_from(R"json({"unique_id": "id",
    "comparisons": [{"field": "surname", "kind": "name", "term_frequency": true},
                    {"field": "dob", "kind": "date"}],
    "blocking": [["dob"]], "training": {"prior": 0.01}})json");
  auto result = engine.run(data, nullptr, true);
  REQUIRE_MESSAGE(result.ok(), result.status().to_string());
  // ZYWICKI rows 0 and 1 (dates differ), SMITH rows 3 and 200 (same date).
  auto explained = engine.explain(data, nullptr, {{0, 1}, {3, 200}});
  REQUIRE(explained.ok());
  const auto& rare = (*explained)[0].fields[0];
  const auto& common = (*explained)[1].fields[0];
  CHECK(rare.level == "exact");
  CHECK(common.level == "exact");
  CHECK(rare.tf_adjustment > 0);
  CHECK(common.tf_adjustment < 0);
  CHECK(rare.weight + rare.tf_adjustment > common.weight + common.tf_adjustment + 3);
}

TEST_CASE("match engine: a deterministic rule matches outright") {
  Dataset data({"roll", "owner", "address"});
  data.add({"1901-010-002-00100", "Jean Tremblay", "12 Main St"});
  data.add({"1901-010-002-00100", "Numbered Co 123 Ltd", "12 Main Street"});
  data.add({"1901-010-002-00200", "Jean Tremblay", "14 Main St"});
  data.add({"", "Ann Lee", "9 Elm Ave"});
  auto engine = engine_from(R"json({
    "comparisons": [{"field": "owner", "kind": "name"}, {"field": "address", "kind": "address"}],
    "deterministic": [["roll"]],
    "blocking": [["street(address)"]],
    "training": {"prior": 0.001}})json");
  auto result = engine.run(data, nullptr, true);
  REQUIRE_MESSAGE(result.ok(), result.status().to_string());
  REQUIRE(result->rules.size() == 2);
  CHECK(result->rules[0].rule == "roll");
  CHECK(result->rules[0].candidate_pairs == 1);
  CHECK(result->rules[1].rule == "street(address)");
  CHECK(result->rules[1].candidate_pairs == 2);  // (0,2) and (1,2); (0,1) came from roll
  bool found = false;
  for (const auto& p : result->pairs) {
    if (p.left == 0 && p.right == 1) {
      found = true;
      CHECK(p.deterministic_rule == 0);
      CHECK(p.match_probability == 1.0);
      CHECK(p.decision == ScoredPair::Decision::kMatch);
    }
  }
  CHECK(found);
  CHECK(result->cluster[0] == result->cluster[1]);
  auto explained = engine.explain(data, nullptr, {{0, 1}});
  REQUIRE(explained.ok());
  CHECK((*explained)[0].deterministic_rule == "roll");
  // The address comparison works on normalised components: ST and Street are one street.
  CHECK((*explained)[0].fields[1].level == "exact");
}

TEST_CASE("match engine: an oversized block is skipped and reported") {
  Dataset data({"id", "city", "name"});
  for (int i = 0; i < 50; ++i) data.add({std::to_string(i), "OTTAWA", "NAME" + std::to_string(i)});
  auto settings = settings_from(R"json({"comparisons": ["name"], "blocking": [["city"]],
                                    "training": {"prior": 0.01}})json");
  settings.max_block_size = 20;
  auto engine = MatchEngine::create(settings);
  REQUIRE(engine.ok());
  auto result = engine->run(data);
  REQUIRE(result.ok());
  CHECK(result->candidate_pairs == 0);
  CHECK(result->rules[0].skipped_blocks == 1);
  CHECK(result->rules[0].skipped_pairs == 50 * 49 / 2);
}

TEST_CASE("match engine: two files linked one to one") {
  Dataset all = febrl(1);
  Dataset left(all.columns(), "originals"), right(all.columns(), "duplicates");
  std::vector<std::string_view> values(all.columns().size());
  for (std::size_t r = 0; r < all.size(); ++r) {
    for (std::size_t c = 0; c < values.size(); ++c) values[c] = all.value(r, static_cast<int>(c));
    (values[0].find("-org") != std::string_view::npos ? left : right).add(values);
  }
  auto settings = settings_from(kFebrlSettings);
  settings.link_type = LinkType::kLink;
  settings.one_to_one = true;
  auto engine = MatchEngine::create(settings);
  REQUIRE(engine.ok());
  CHECK_FALSE(engine->run(left).ok());  // a linkage needs two datasets
  CHECK(engine->run(left, &left).status().message().find("same object") != std::string::npos);
  auto result = engine->run(left, &right);
  REQUIRE_MESSAGE(result.ok(), result.status().to_string());
  REQUIRE(result->cluster.size() == left.size() + right.size());
  // One to one: no cluster holds two records of one side.
  std::map<std::uint32_t, int> left_count, right_count;
  for (std::size_t r = 0; r < left.size(); ++r) ++left_count[result->cluster[r]];
  for (std::size_t r = 0; r < right.size(); ++r) ++right_count[result->cluster[left.size() + r]];
  for (const auto& [c, n] : left_count) CHECK(n == 1);
  for (const auto& [c, n] : right_count) CHECK(n == 1);
  int linked = 0, correct = 0;
  for (std::size_t r = 0; r < right.size(); ++r) {
    std::uint32_t c = result->cluster[left.size() + r];
    if (c >= left.size()) continue;  // not linked to a left record
    ++linked;
    if (entity_of(engine->record_id(left, c)) ==
        entity_of(engine->record_id(right, static_cast<std::uint32_t>(r)))) {
      ++correct;
    }
  }
  MESSAGE("linked " << linked << " of 500, " << correct << " correct");
  CHECK(linked >= 490);
  CHECK(correct == linked);
}

TEST_CASE("match engine: a saved model scores the same") {
  Dataset data = febrl(1);
  auto first = engine_from(kFebrlSettings);
  auto a = first.run(data);
  REQUIRE(a.ok());
  Json model = first.model_json();
  auto second = engine_from(kFebrlSettings);
  REQUIRE(second.load_model(Json::parse(model.dump()).value()).ok());
  auto b = second.run(data);
  REQUIRE(b.ok());
  CHECK(b->training.iterations == 0);  // not retrained
  REQUIRE(a->pairs.size() == b->pairs.size());
  for (std::size_t i = 0; i < a->pairs.size(); ++i) {
    CHECK(a->pairs[i].match_weight == doctest::Approx(b->pairs[i].match_weight));
  }
  auto other = engine_from(R"json({"comparisons": ["x"], "blocking": [["x"]]})json");
  CHECK(other.load_model(model).message().find("comparisons") != std::string::npos);
}

TEST_CASE("match engine: labelled pairs train m and u") {
  Dataset data = febrl(1);
  std::vector<LabelledPair> labels;
  for (int i = 0; i < 60; ++i) {
    labels.push_back(
        {"rec-" + std::to_string(i) + "-org", "rec-" + std::to_string(i) + "-dup-0", true});
  }
  for (int i = 0; i < 150; ++i) {
    labels.push_back(
        {"rec-" + std::to_string(i) + "-org", "rec-" + std::to_string(i + 1) + "-org", false});
  }
  auto engine = engine_from(kFebrlSettings);
  Status trained = engine.train_from_labels(data, nullptr, labels);
  REQUIRE_MESSAGE(trained.ok(), trained.to_string());
  CHECK(engine.trained());
  for (const auto& c : engine.parameters()) {
    // Agreement is likelier between matches than between non-matches.
    CHECK(c.levels.front().m > c.levels.front().u);
  }
  auto result = engine.run(data);
  REQUIRE(result.ok());
  CHECK(result->matches > 450);
  labels.push_back({"rec-nobody", "rec-0-org", true});
  Status unknown = engine.train_from_labels(data, nullptr, labels);
  CHECK(unknown.message().find("rec-nobody") != std::string::npos);
}

TEST_CASE("match engine: an index deduplicates a stream record by record") {
  Dataset data = febrl(1);
  auto engine = engine_from(kFebrlSettings);
  CHECK(MatchIndex::create(engine, data.columns()).status().code() ==
        ErrorCode::kFailedPrecondition);  // not trained yet
  REQUIRE(engine.train(data).ok());
  CHECK(MatchIndex::create(engine, {"rec_id", "surname"}).status().message().find("given_name") !=
        std::string::npos);
  auto index = MatchIndex::create(engine, data.columns());
  REQUIRE_MESSAGE(index.ok(), index.status().to_string());
  std::map<std::string, int> seen;  // entity -> records added so far
  int expected = 0, found = 0, wrong = 0;
  std::vector<std::string_view> values(data.columns().size());
  for (std::size_t r = 0; r < data.size(); ++r) {
    for (std::size_t c = 0; c < values.size(); ++c) values[c] = data.value(r, static_cast<int>(c));
    std::string entity = entity_of(values[0]);
    auto match = index->add(values);
    if (seen[entity]++ > 0) ++expected;
    if (match && match->decision == ScoredPair::Decision::kMatch) {
      if (entity_of(data.value(match->row, 0)) == entity) {
        ++found;
      } else {
        ++wrong;
      }
    }
  }
  MESSAGE("index: " << found << " of " << expected << " duplicates found, " << wrong << " wrong");
  CHECK(index->size() == data.size());
  CHECK(index->compared_pairs() > 0);
  CHECK(found >= expected * 98 / 100);
  CHECK(wrong <= 2);
}

TEST_CASE("match engine: clerical review decisions feed training") {
  // A run with a wide review band queues its doubtful pairs; a clerk decides them from the
  // truth; the decisions retrain the engine, which then needs no review for those pairs.
  testing::TempDir dir;
  auto db = storage::open_sqlite(storage::SqliteOptions{.path = dir.file("civicbus.db")});
  REQUIRE(db.ok());
  auto queue = ReviewQueue::open(**db);
  REQUIRE(queue.ok());
  Dataset data = febrl(2);
  auto settings = settings_from(kFebrlSettings);
  settings.thresholds = {0.999, 0.001};
  auto engine = MatchEngine::create(settings);
  REQUIRE(engine.ok());
  auto result = engine->run(data);
  REQUIRE(result.ok());
  std::vector<ReviewItem> items;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> review_pairs;
  for (const auto& p : result->pairs) {
    if (p.decision != ScoredPair::Decision::kReview) continue;
    ReviewItem item;
    item.left_id = engine->record_id(data, p.left);
    item.right_id = engine->record_id(data, p.right);
    item.match_probability = p.match_probability;
    item.match_weight = p.match_weight;
    items.push_back(item);
    review_pairs.emplace_back(p.left, p.right);
  }
  REQUIRE(items.size() >= 5);
  REQUIRE((*queue)->enqueue(items).ok());
  auto pending = (*queue)->pending(10'000);
  REQUIRE(pending.ok());
  CHECK(pending->size() == items.size());
  for (const auto& item : *pending) {
    bool same = entity_of(item.left_id) == entity_of(item.right_id);
    REQUIRE((*queue)->decide(item.id, same, "clerk@example.ca", "checked the file").ok());
  }
  auto labels = (*queue)->labelled();
  REQUIRE(labels.ok());
  CHECK(labels->size() == items.size());
  // A labelled sample of clear cases as well: the decided pairs alone are all borderline.
  auto all_labels = *labels;
  for (const auto& p : result->pairs) {
    if (p.decision != ScoredPair::Decision::kMatch || all_labels.size() > items.size() + 300)
      continue;
    all_labels.push_back({engine->record_id(data, p.left), engine->record_id(data, p.right),
                          entity_of(engine->record_id(data, p.left)) ==
                              entity_of(engine->record_id(data, p.right))});
  }
  Status trained = engine->train_from_labels(data, nullptr, all_labels);
  REQUIRE_MESSAGE(trained.ok(), trained.to_string());
  auto explained = engine->explain(data, nullptr, review_pairs);
  REQUIRE(explained.ok());
  int right = 0;
  for (const auto& e : *explained) {
    bool same = entity_of(e.left_id) == entity_of(e.right_id);
    right += (e.match_probability >= 0.5) == same;
  }
  MESSAGE("after training on the clerk's decisions, " << right << " of " << explained->size()
                                                      << " reviewed pairs score on the right side");
  CHECK(right >= static_cast<int>(explained->size()) * 8 / 10);
}
