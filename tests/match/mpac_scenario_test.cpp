// The MPAC property assessment sync of the spec (../shared/spec/000_*.txt, "MPAC Property
// Assessment Sync"): MPAC delivers the assessment extract (the `mpac` connector reads it), a
// pipeline maps it to the property model, normalises the addresses and validates the records, MDM
// matches them against the existing property records by roll number and fuzzy address, the new
// assessments are applied to the golden records with MPAC as the authority for assessment values,
// and property.assessment.updated is published once per changed property.
//
// The existing records come from the tax system: a few hundred Ottawa properties with their owners,
// mailing addresses and last assessed values, some with the roll number missing or mistyped and
// every address in the tax system's own spelling ("200 Elgin Street Apt 1204" where MPAC writes
// unit 1204, 200, ELGIN ST). MPAC's connector refuses an extract row without a valid 19-digit roll
// number (the whole read fails), so the records only fuzzy address matching can link are those the
// tax system holds with a missing or mistyped roll number.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <map>
#include <string>
#include <vector>

#include "broker/broker_fixture.hpp"
#include "civicbus/broker/broker.hpp"
#include "civicbus/match/engine.hpp"
#include "civicbus/match/golden.hpp"
#include "civicbus/match/mdm.hpp"
#include "civicbus/match/review.hpp"
#include "civicbus/pipeline/pipeline.hpp"
#include "civicbus/storage/database.hpp"
#include "support/test_support.hpp"

namespace civicbus::match {
namespace {

using broker::testing_support::BrokerFixture;

struct Street {
  const char* tax;   // as the tax system spells it
  const char* mpac;  // as MPAC writes it
  const char* fsa;   // the postal codes' first half
};

constexpr Street kStreets[] = {
    {"Bank Street", "BANK ST", "K1S"},
    {"Elgin Street", "ELGIN ST", "K2P"},
    {"King Edward Avenue", "KING EDWARD AVE", "K1N"},
    {"Carling Avenue", "CARLING AVE", "K1Z"},
    {"Baseline Road", "BASELINE RD", "K2C"},
    {"Riverside Drive", "RIVERSIDE DR", "K1H"},
    {"Somerset Street West", "SOMERSET ST W", "K1R"},
    {"Prince of Wales Drive", "PRINCE OF WALES DR", "K2E"},
    {"Main Street", "MAIN ST", "K1S"},
    {"Wellington Street West", "WELLINGTON ST W", "K1Y"},
    {"Bronson Avenue", "BRONSON AVE", "K1R"},
    {"Heron Road", "HERON RD", "K1G"},
};
constexpr const char* kFirst[] = {"Marie", "Jean",   "Aisha", "Liam",   "Sofia",
                                  "Wei",   "Noah",   "Emma",  "Olivia", "Lucas",
                                  "Priya", "Daniel", "Chloe", "Omar",   "Hélène"};
constexpr const char* kLast[] = {"Tremblay", "Gagnon", "Khan",   "O'Brien", "Rossi",
                                 "Chen",     "Martin", "Roy",    "Singh",   "Bouchard",
                                 "Patel",    "Nguyen", "Lavoie", "Haddad",  "Côté"};
constexpr const char* kLdu = "ABCEGHJKLMNPRSTVWXYZ";  // letters Canada Post uses

constexpr int kProperties = 300;
constexpr int kNewProperties = 6;
// Sold since the tax system's record was made (a new owner), and without a roll number there:
// the address and postal code agree, the owner does not.
constexpr int kSold = 32;
// Without a roll number in the tax system, and MPAC writes the owner's middle initial.
constexpr int kMiddleInitial = 57;

std::string upper(std::string s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return s;
}

// One property as both systems hold it.
struct Property {
  std::string account;   // the tax system's record id
  std::string roll;      // MPAC's 19 digits
  std::string tax_roll;  // the tax system's copy: the same, missing or mistyped
  int street = 0;
  int civic = 0;
  std::string unit;
  std::string postal;
  std::string owner;            // as the tax system has it
  std::string new_owner;        // MPAC's, when the property was sold since
  std::int64_t tax_value = 0;   // the assessed value the tax system has
  std::int64_t mpac_value = 0;  // the new roll
  bool newer_tax_mailing = false;
  std::string tax_mailing;
  std::string mpac_mailing;

  std::string tax_address() const {
    const std::string street_text = fmt::format("{} {}", civic, kStreets[street].tax);
    if (unit.empty()) return street_text;
    // Clerks wrote units every which way.
    return civic % 3 == 0 ? fmt::format("Unit {}, {}", unit, street_text)
                          : fmt::format("{} Apt {}", street_text, unit);
  }
  std::string mpac_address() const {
    return fmt::format("{}{} {}", unit.empty() ? "" : unit + "-", civic, kStreets[street].mpac);
  }
  bool roll_matches() const { return tax_roll == roll; }
  bool assessment_changes() const { return mpac_value != tax_value; }
};

std::vector<Property> generate() {
  std::vector<Property> out;
  for (int i = 0; i < kProperties + kNewProperties; ++i) {
    Property p;
    p.account = fmt::format("TX-{:06}", 100000 + i * 13);
    p.street = i % 12;
    p.civic = i < kProperties ? 10 + 4 * (i / 12) : 400 + 2 * i;
    if (i % 9 == 4) p.unit = std::to_string(100 + (i * 7) % 900);
    const int block = p.civic / 10;
    p.postal = fmt::format("{} {}{}{}", kStreets[p.street].fsa, block % 10, kLdu[(i % 12) + 3],
                           (block / 10) % 10);
    p.roll = fmt::format("0614{:03}{:03}{:05}0000", 100 + p.street, 200 + p.civic % 500,
                         10000 + (i * 3137) % 89999);
    p.tax_roll = p.roll;
    if (i % 25 == 7) p.tax_roll.clear();                          // never entered
    if (i % 25 == 13) std::swap(p.tax_roll[12], p.tax_roll[13]);  // two digits swapped
    if (p.tax_roll == p.roll && i % 25 == 13) p.tax_roll[12] = p.roll[12] == '9' ? '8' : '9';
    p.owner = fmt::format("{} {}", kFirst[i % 15], kLast[(i * 7 / 3) % 15]);
    if (i == kSold) p.new_owner = fmt::format("{} {}", kFirst[(i + 4) % 15], kLast[(i + 9) % 15]);
    if (i == kMiddleInitial)
      p.new_owner = fmt::format("{} L {}", kFirst[i % 15], kLast[(i * 7 / 3) % 15]);
    p.tax_value = 250'000 + (i * 7919) % 600'000 / 1000 * 1000;
    p.mpac_value = i % 10 == 3 ? p.tax_value : p.tax_value + 12'000 + (i % 7) * 1000;
    p.newer_tax_mailing = i % 10 == 5;
    p.mpac_mailing = fmt::format("{} OTTAWA ON  {}", p.mpac_address(), p.postal);
    p.tax_mailing = p.newer_tax_mailing
                        ? fmt::format("PO BOX {} STN A OTTAWA ON  K1N 5A1", 1000 + i)
                        : fmt::format("{}, Ottawa, ON {}", p.tax_address(), p.postal);
    out.push_back(std::move(p));
  }
  return out;
}

SystemTime at(std::string_view rfc3339) {
  auto t = parse_rfc3339(rfc3339);
  REQUIRE_MESSAGE(t.ok(), t.status().to_string());
  return *t;
}

// The tax system's records, as an application reads them from its database.
Dataset tax_records(const std::vector<Property>& properties) {
  Dataset d(
      {"account", "roll_number", "address", "municipality", "province", "postal_code", "owner_name",
       "mailing_address", "assessed_value", "assessment_year", "property_class", "updated_at"},
      "tax");
  for (int i = 0; i < kProperties; ++i) {
    const Property& p = properties[static_cast<std::size_t>(i)];
    const std::string address = p.tax_address();
    const std::string value = std::to_string(p.tax_value);
    d.add({p.account, p.tax_roll, address, "Ottawa", "ON", p.postal, p.owner, p.tax_mailing, value,
           "2026", "301", p.newer_tax_mailing ? "2026-03-01T09:30:00Z" : "2025-06-01T12:00:00Z"});
  }
  return d;
}

// MPAC's extract in its CSV layout (docs/connectors.md, `mpac`); owner names and mailing addresses
// are columns the connector passes through.
std::string mpac_extract(const std::vector<Property>& properties, int bad_row_property) {
  std::string csv =
      "roll_number,extract_date,property_code,tax_class,unit_"
      "number,street_number,street_name,"
      "municipality,postal_code,current_value_assessment,prior_"
      "value_assessment,tax_year,"
      "owner_name,mailing_address\n";
  for (int i = 0; i < kProperties + kNewProperties; ++i) {
    const Property& p = properties[static_cast<std::size_t>(i)];
    // MPAC writes the roll with separators on some rows; the connector reads both.
    std::string roll =
        i % 4 == 1 ? fmt::format("{}-{}-{}-{}-{}", p.roll.substr(0, 4), p.roll.substr(4, 3),
                                 p.roll.substr(7, 3), p.roll.substr(10, 5), p.roll.substr(15, 4))
                   : p.roll;
    std::string postal = i == bad_row_property ? "D1A 1A1" : p.postal;
    csv += fmt::format("{},2026-01-15,301,RT,{},{},{},OTTAWA,{},{}.00,{},2026,{},\"{}\"\n", roll,
                       p.unit, p.civic, kStreets[p.street].mpac, postal, p.mpac_value, p.tax_value,
                       upper(p.new_owner.empty() ? p.owner : p.new_owner), p.mpac_mailing);
  }
  return csv;
}

// The pipeline of the spec's second step: the extract -> map to the property model -> normalise
// addresses -> validate -> a clean file the MDM step reads.
pipeline::PipelineOptions mpac_pipeline(const std::string& extract, const std::string& out,
                                        const std::string& report_dir) {
  auto parse = [](std::string_view text) {
    auto j = Json::parse(text);
    REQUIRE_MESSAGE(j.ok(), j.status().to_string());
    return *j;
  };
  pipeline::PipelineOptions p;
  p.name = "mpac-assessment-sync";
  p.source = {"mpac", Json::object({{"path", extract}}), "assessments"};
  p.stages = {
      {"map_fields", "property model", parse(R"json({"fields": {
          "roll_number": {"from": "roll_number", "required": true},
          "address": {"expr": "concat(if(len(coalesce(unit_number, '')) > 0, unit_number + '-', ''), street_number, ' ', street_name)"},
          "municipality": {"from": "municipality"},
          "province": {"default": "ON"},
          "postal_code": {"from": "postal_code"},
          "owner_name": {"from": "owner_name"},
          "mailing_address": {"from": "mailing_address"},
          "assessed_value": {"from": "current_value_assessment", "type": "integer", "required": true},
          "assessment_year": {"from": "tax_year", "type": "integer"},
          "property_class": {"from": "property_code", "type": "string"},
          "extract_date": {"from": "extract_date", "type": "date", "required": true}}})json")},
      {"normalize_address", "addresses",
       Json::object({{"street", "address"},
                     {"municipality", "municipality"},
                     {"province", "province"},
                     {"postal_code", "postal_code"}})},
      {"validate", "property schema", parse(R"json({"schema": {
          "type": "object",
          "required": ["roll_number", "address", "assessed_value"],
          "properties": {
            "roll_number": {"type": "string", "pattern": "^[0-9]{19}$"},
            "assessed_value": {"type": "integer", "minimum": 1},
            "postal_code": {"type": "string", "pattern": "^[A-Z][0-9][A-Z] [0-9][A-Z][0-9]$"}}}})json")},
  };
  p.sink = {"csv", Json::object({{"path", out}}), "assessments"};
  p.batch_size = 100;
  p.error_report_dir = report_dir;
  return p;
}

// Roll number first (deterministic: an equal roll is the same property), then candidates that share
// a postal code and civic number, or a street and civic number, scored on the address, the owner
// and the postal code. The model is trained unsupervised by the first run (EM over its candidate
// pairs, u from random pairs): the few hundred records are enough because nearly every candidate
// pair is a match and the three comparisons separate them well (EM converges in a few iterations).
// What EM learns from such clean data is that owners nearly always agree among matches, so a
// property sold since (same address and postal code, another owner) scores about 0.3: the review
// threshold is 0.2 so that such a pair reaches a clerk instead of becoming a second property.
MatchSettings property_match_settings() {
  auto s = MatchSettings::from_json(*Json::parse(R"json({
    "link_type": "link",
    "unique_id": "roll_number",
    "comparisons": [{"field": "address", "kind": "address"},
                    {"field": "owner_name", "kind": "name"},
                    {"field": "postal_code", "kind": "postal_code"}],
    "deterministic": [["roll_number"]],
    "blocking": [["roll_number"], ["postal_code", "civic(address)"],
                 ["street(address)", "civic(address)"]],
    "thresholds": {"match": 0.95, "review": 0.2},
    "one_to_one": true
  })json"));
  REQUIRE_MESSAGE(s.ok(), s.status().to_string());
  return *s;
}

GoldenRecordOptions property_options() {
  auto o = GoldenRecordOptions::from_json(*Json::parse(R"({
    "kind": "property",
    "default": "most_recent",
    "attributes": {
      "assessed_value": {"rule": "source_priority", "sources": ["mpac"]},
      "assessment_year": {"rule": "source_priority", "sources": ["mpac"]},
      "property_class": {"rule": "source_priority", "sources": ["mpac"]},
      "roll_number": {"rule": "source_priority", "sources": ["mpac", "tax"]}
    },
    "domain_events": [{"type": "property.assessment.updated",
                       "attributes": ["assessed_value", "assessment_year", "property_class"]}]
  })"));
  REQUIRE_MESSAGE(o.ok(), o.status().to_string());
  return *o;
}

std::vector<broker::DeliveredEvent> read_all(BrokerFixture& bf, const std::string& topic,
                                             std::int64_t after) {
  std::vector<broker::DeliveredEvent> out;
  std::int64_t from = after + 1;
  while (true) {
    auto page = bf.broker().read(topic, from, 500);
    REQUIRE_MESSAGE(page.ok(), page.status().to_string());
    if (page->empty()) break;
    for (auto& e : *page) {
      from = e.offset + 1;
      out.push_back(std::move(e));
    }
  }
  return out;
}

// How each system's records become source records of the property golden records.
ApplyExtractOptions extract_options(std::string source, std::string id_column,
                                    std::string time_column) {
  ApplyExtractOptions o;
  o.source = std::move(source);
  o.record_id_column = std::move(id_column);
  o.updated_at_column = std::move(time_column);
  o.fields = {"roll_number",     "address",       "municipality",    "province",
              "postal_code",     "owner_name",    "mailing_address", "assessed_value",
              "assessment_year", "property_class"};
  o.value_types = {{"assessed_value", ExtractValueType::kInteger},
                   {"assessment_year", ExtractValueType::kInteger}};
  o.entity_prefix = "P-";
  return o;
}

std::map<std::string, std::vector<broker::CloudEvent>> by_subject(
    const std::vector<broker::DeliveredEvent>& events) {
  std::map<std::string, std::vector<broker::CloudEvent>> out;
  for (const auto& e : events) out[e.event.subject()].push_back(e.event);
  return out;
}

TEST_CASE(
    "mpac scenario: an assessment extract updates the property golden "
    "records") {
  testing::TempDir dir;
  BrokerFixture bf;
  const std::vector<Property> properties = generate();
  auto opened = GoldenRecordStore::open(bf.db(), &bf.broker(), property_options());
  REQUIRE_MESSAGE(opened.ok(), opened.status().to_string());
  GoldenRecordStore& store = **opened;
  auto queue_opened = ReviewQueue::open(bf.db());
  REQUIRE_MESSAGE(queue_opened.ok(), queue_opened.status().to_string());
  ReviewQueue& queue = **queue_opened;

  // The tax system's records become the first golden records (nothing to match them against yet, so
  // the engine does not run).
  auto tax_engine = MatchEngine::create(property_match_settings());
  REQUIRE_MESSAGE(tax_engine.ok(), tax_engine.status().to_string());
  const Dataset tax_data = tax_records(properties);
  auto loaded =
      apply_extract(*tax_engine, store, tax_data, extract_options("tax", "account", "updated_at"));
  REQUIRE_MESSAGE(loaded.ok(), loaded.status().to_string());
  CHECK(loaded->records == kProperties);
  CHECK(loaded->created == kProperties);
  CHECK(loaded->changed == kProperties);
  CHECK(loaded->candidate_pairs == 0);
  CHECK_FALSE(tax_engine->trained());
  std::map<std::string, std::string> entity_of;  // tax account -> entity
  for (const auto& o : loaded->outcomes) entity_of[o.record_id] = o.entity_id;
  REQUIRE(entity_of.size() == kProperties);
  const auto tax_events = bf.broker().read("property.assessment.updated", 0, 1000);
  REQUIRE(tax_events.ok());
  REQUIRE(tax_events->size() == kProperties);
  const std::int64_t after_tax_load = tax_events->back().offset;
  const auto golden_before = bf.broker().read(std::string(kGoldenRecordTopic), 0, 1000);
  REQUIRE(golden_before.ok());
  const std::int64_t golden_after_tax_load = golden_before->back().offset;

  // 1-2. The extract through the mpac connector and the pipeline: one row's postal code uses a
  // letter Canada Post never uses, so address normalisation puts it in the error report.
  const int bad_row = 99;
  const std::string extract = dir.file("mpac-2026.csv");
  testing::write_file(extract, mpac_extract(properties, bad_row));
  const std::string clean = dir.file("mpac-2026-clean.csv");
  auto created = pipeline::Pipeline::create(mpac_pipeline(extract, clean, dir.file("report")));
  REQUIRE_MESSAGE(created.ok(), created.status().to_string());
  auto run = (*created)->run();
  REQUIRE_MESSAGE(run.ok(), run.status().to_string());
  CHECK(run->rows_read == kProperties + kNewProperties);
  CHECK(run->rows_loaded == kProperties + kNewProperties - 1);
  REQUIRE(run->rows_failed == 1);
  CHECK(run->errors[0].error.position == bad_row + 2);  // the header is line 1
  CHECK(run->errors[0].error.reason.find("D1A 1A1") != std::string::npos);
  auto mpac_data = Dataset::read_csv(clean, "mpac");
  REQUIRE_MESSAGE(mpac_data.ok(), mpac_data.status().to_string());
  REQUIRE(mpac_data->size() == kProperties + kNewProperties - 1);
  // Addresses come out in Canada Post's form, roll numbers as 19 digits.
  CHECK(mpac_data->value(4, mpac_data->column("address")) == properties[4].mpac_address());
  CHECK(mpac_data->value(1, mpac_data->column("roll_number")) == properties[1].roll);

  // 3-4. MDM: each record finds its property by roll number, else by fuzzy address, and is applied
  // with MPAC as the authority for assessment values.
  auto engine = MatchEngine::create(property_match_settings());
  REQUIRE_MESSAGE(engine.ok(), engine.status().to_string());
  const ApplyExtractOptions mpac = extract_options("mpac", "roll_number", "extract_date");
  auto applied = apply_extract(*engine, store, *mpac_data, mpac, &queue);
  REQUIRE_MESSAGE(applied.ok(), applied.status().to_string());
  const ExtractReport& report = *applied;
  CHECK(engine->trained());
  CHECK(report.training.converged);

  std::map<std::string, const ExtractRecordOutcome*> outcome_of;  // by roll number
  for (const auto& o : report.outcomes) outcome_of[o.record_id] = &o;
  REQUIRE(outcome_of.size() == kProperties + kNewProperties - 1);
  std::size_t by_roll = 0, by_address = 0, assessment_changes = 0;
  for (int i = 0; i < kProperties + kNewProperties; ++i) {
    const Property& p = properties[static_cast<std::size_t>(i)];
    CAPTURE(i);
    auto it = outcome_of.find(p.roll);
    if (i == bad_row) {
      CHECK(it == outcome_of.end());
      continue;
    }
    REQUIRE(it != outcome_of.end());
    const ExtractRecordOutcome& o = *it->second;
    if (i >= kProperties) {
      CHECK(o.link == ExtractLink::kCreated);
      CHECK(o.entity_id.starts_with("P-"));
      CHECK(*store.entity_of("mpac", p.roll) == o.entity_id);
      ++assessment_changes;
    } else if (i == kSold) {
      CHECK(o.link == ExtractLink::kReview);
      CHECK(o.entity_id == entity_of.at(p.account));
      CHECK(o.match_probability >= 0.2);
      CHECK(o.match_probability < 0.95);
      CHECK(*store.entity_of("mpac", p.roll) == std::nullopt);  // not applied
    } else if (p.roll_matches()) {
      CHECK(o.link == ExtractLink::kRule);
      CHECK(o.rule == "roll_number");
      CHECK(o.entity_id == entity_of.at(p.account));
      ++by_roll;
    } else {
      // Missing or mistyped in the tax system: only the address (and owner, postal code) links
      // them.
      CHECK(o.link == ExtractLink::kScore);
      CHECK(o.match_probability >= 0.95);
      CHECK(o.entity_id == entity_of.at(p.account));
      ++by_address;
    }
    if (i < kProperties && i != kSold && p.assessment_changes()) ++assessment_changes;
  }
  CHECK(by_roll == 275);
  CHECK(by_address == 23);
  CHECK(report.records == kProperties + kNewProperties - 1);
  CHECK(report.known == 0);
  CHECK(report.linked_by_rule == by_roll);
  CHECK(report.linked_by_score == by_address);
  CHECK(report.created == kNewProperties);
  CHECK(report.queued_for_review == 1);
  // Every applied record changed its golden record (MPAC joined it, at least).
  CHECK(report.changed == report.records - 1);
  CHECK(report.unchanged == 0);
  CHECK(report.changes.size() == report.changed);
  CHECK(report.candidate_pairs >= report.records - kNewProperties);
  REQUIRE(report.rules.size() == 3);
  CHECK(report.rules[0].rule == "roll_number");
  CHECK(report.rules[0].candidate_pairs == 275);

  // The sold property waits for a clerk, with the pair explained.
  auto pending = queue.pending();
  REQUIRE(pending.ok());
  REQUIRE(pending->size() == 1);
  const ReviewItem& item = pending->front();
  CHECK(item.left_id == properties[kSold].roll);
  CHECK(item.right_id == entity_of.at(properties[kSold].account));
  CHECK(item.explanation.find("fields")->size() == 3);
  CHECK(item.explanation.get_string("right_id") == item.right_id);

  // Golden records: MPAC's assessment (source_priority), the newest mailing address wherever it
  // came from (most_recent), and each attribute's provenance.
  for (int i = 0; i < kProperties; ++i) {
    const Property& p = properties[static_cast<std::size_t>(i)];
    CAPTURE(i);
    auto g = store.get(entity_of.at(p.account));
    REQUIRE_MESSAGE(g.ok(), g.status().to_string());
    const AttributeValue& value = g->attributes.at("assessed_value");
    const AttributeValue& mailing = g->attributes.at("mailing_address");
    if (i == bad_row || i == kSold) {
      CHECK(value.value == Json(p.tax_value));
      CHECK(value.source == "tax");
      CHECK(g->members == std::vector<MemberRef>{{"tax", p.account}});
      continue;
    }
    CHECK(g->members == std::vector<MemberRef>{{"mpac", p.roll}, {"tax", p.account}});
    CHECK(value.value == Json(p.mpac_value));
    CHECK(value.source == "mpac");
    CHECK(value.record_id == p.roll);
    CHECK(value.updated_at == at("2026-01-15T00:00:00Z"));
    CHECK(g->attributes.at("roll_number").value == Json(p.roll));
    CHECK(g->attributes.at("roll_number").source == "mpac");
    if (p.newer_tax_mailing) {
      CHECK(mailing.value == Json(p.tax_mailing));
      CHECK(mailing.source == "tax");
      CHECK(mailing.record_id == p.account);
      CHECK(mailing.updated_at == at("2026-03-01T09:30:00Z"));
    } else {
      CHECK(mailing.value == Json(p.mpac_mailing));
      CHECK(mailing.source == "mpac");
    }
  }

  // 5. Exactly one property.assessment.updated per property whose assessment changed, with the
  // changed fields; none for the unchanged ones.
  auto events = by_subject(read_all(bf, "property.assessment.updated", after_tax_load));
  CHECK(events.size() == assessment_changes);
  for (int i = 0; i < kProperties + kNewProperties; ++i) {
    const Property& p = properties[static_cast<std::size_t>(i)];
    CAPTURE(i);
    if (i >= kProperties) {
      const std::string entity = outcome_of.at(p.roll)->entity_id;
      REQUIRE(events[entity].size() == 1);
      const Json& data = events[entity][0].data();
      CHECK(*data.at_pointer("/changed/assessed_value/old") == Json());
      CHECK(*data.at_pointer("/changed/assessed_value/new") == Json(p.mpac_value));
      CHECK(data.find("changed")->size() == 3);
      continue;
    }
    const std::string entity = entity_of.at(p.account);
    if (i == bad_row || i == kSold || !p.assessment_changes()) {
      CHECK(events.count(entity) == 0);
      continue;
    }
    REQUIRE(events[entity].size() == 1);
    const broker::CloudEvent& e = events[entity][0];
    CHECK(e.id() == entity + "@2/property.assessment.updated");
    CHECK(e.data().find("changed")->size() == 1);  // the year and class were already right
    CHECK(*e.data().at_pointer("/changed/assessed_value") == Json::object({{"old", p.tax_value},
                                                                           {"new", p.mpac_value},
                                                                           {"source", "mpac"},
                                                                           {"record_id", p.roll}}));
    CHECK(*e.data().at_pointer("/attributes/assessment_year") == Json(2026));
  }
  const auto golden_events = read_all(bf, std::string(kGoldenRecordTopic), golden_after_tax_load);
  CHECK(golden_events.size() == report.changed);

  // The same extract again: every record is known, nothing changes, nothing is published; the sold
  // property's pair is scored again and stays one pending item.
  const auto last_assessment = read_all(bf, "property.assessment.updated", after_tax_load);
  const auto last_golden = read_all(bf, std::string(kGoldenRecordTopic), golden_after_tax_load);
  auto again = apply_extract(*engine, store, *mpac_data, mpac, &queue);
  REQUIRE_MESSAGE(again.ok(), again.status().to_string());
  CHECK(again->known == report.records - 1);
  CHECK(again->queued_for_review == 1);
  CHECK(again->changed == 0);
  CHECK(again->unchanged == report.records - 1);
  CHECK(again->changes.empty());
  CHECK(read_all(bf, "property.assessment.updated", last_assessment.back().offset).empty());
  CHECK(read_all(bf, std::string(kGoldenRecordTopic), last_golden.back().offset).empty());
  CHECK(queue.counts()->pending == 1);

  // A clerk accepts the sold property's pair: the next run applies it, and the new owner (the most
  // recent) replaces the old one.
  auto decided = queue.decide(item.id, true, "assessment-clerk", "sold in 2025, same parcel");
  REQUIRE_MESSAGE(decided.ok(), decided.status().to_string());
  auto after_review = apply_extract(*engine, store, *mpac_data, mpac, &queue);
  REQUIRE_MESSAGE(after_review.ok(), after_review.status().to_string());
  CHECK(after_review->linked_by_review == 1);
  CHECK(after_review->queued_for_review == 0);
  CHECK(after_review->changed == 1);
  const std::string sold_entity = entity_of.at(properties[kSold].account);
  auto g = store.get(sold_entity);
  REQUIRE(g.ok());
  CHECK(g->attributes.at("assessed_value").value == Json(properties[kSold].mpac_value));
  CHECK(g->attributes.at("owner_name").value == Json(upper(properties[kSold].new_owner)));
  CHECK(g->attributes.at("owner_name").source == "mpac");
  auto sold_events = read_all(bf, "property.assessment.updated", last_assessment.back().offset);
  REQUIRE(sold_events.size() == 1);
  CHECK(sold_events[0].event.subject() == sold_entity);

  // And once more: nothing left to do.
  auto settled = apply_extract(*engine, store, *mpac_data, mpac, &queue);
  REQUIRE_MESSAGE(settled.ok(), settled.status().to_string());
  CHECK(settled->known == settled->records);
  CHECK(settled->changed == 0);
  CHECK(read_all(bf, "property.assessment.updated", sold_events[0].offset).empty());
}

// A store without a broker, for the error cases.
struct PlainStore {
  PlainStore() {
    auto opened = storage::open_sqlite(storage::SqliteOptions{.path = dir.file("civicbus.db")});
    REQUIRE_MESSAGE(opened.ok(), opened.status().to_string());
    db = std::move(*opened);
    auto s = GoldenRecordStore::open(*db, nullptr, property_options());
    REQUIRE_MESSAGE(s.ok(), s.status().to_string());
    store = std::move(*s);
  }
  testing::TempDir dir;
  std::unique_ptr<storage::Database> db;
  std::unique_ptr<GoldenRecordStore> store;
};

TEST_CASE("mpac scenario: a faulty extract is refused whole, naming the record") {
  PlainStore s;
  auto engine = MatchEngine::create(property_match_settings());
  REQUIRE(engine.ok());
  const ApplyExtractOptions mpac = extract_options("mpac", "roll_number", "extract_date");
  const std::string header =
      "roll_number,extract_date,address,municipality,province,postal_code,"
      "owner_name,"
      "mailing_address,assessed_value,assessment_year,property_class\n";
  const std::string good =
      "0614100200100010000,2026-01-15,10 BANK "
      "ST,OTTAWA,ON,K1S 1A1,A B,,400000,2026,301\n";
  auto refused = [&](std::string rows) {
    auto data = Dataset::parse_csv(header + good + rows, "mpac");
    REQUIRE_MESSAGE(data.ok(), data.status().to_string());
    auto r = apply_extract(*engine, *s.store, *data, mpac);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    // Nothing was applied, not even the good first record.
    CHECK(s.store->list(10)->empty());
    return r.status().message();
  };
  CHECK(refused("0614100200100020000,2026-01-15,12 BANK ST,OTTAWA,ON,K1S 1A1,C "
                "D,,4x0000,"
                "2026,301\n") ==
        "mpac record '0614100200100020000' (extract "
        "row 2): field 'assessed_value' "
        "('4x0000') is not a whole number");
  CHECK(refused(",2026-01-15,12 BANK ST,OTTAWA,ON,K1S 1A1,C D,,410000,2026,301\n") ==
        "mpac extract row 2: the record id column 'roll_number' is empty");
  CHECK(refused(good) ==
        "mpac record '0614100200100010000' (extract row 2): "
        "the id appears twice in the "
        "extract (also row 1)");
  CHECK(refused("0614100200100020000,15/01/2026,12 BANK ST,OTTAWA,ON,K1S 1A1,C "
                "D,,410000,"
                "2026,301\n") ==
        "mpac record '0614100200100020000' (extract "
        "row 2): 'extract_date' ('15/01/2026') is "
        "not an RFC 3339 time or a YYYY-MM-DD date");

  ApplyExtractOptions no_column = mpac;
  no_column.record_id_column = "roll";
  auto data = Dataset::parse_csv(header + good, "mpac");
  REQUIRE(data.ok());
  auto missing = apply_extract(*engine, *s.store, *data, no_column);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message() ==
        "apply_extract: the record id column 'roll' is not in the mpac extract");

  MatchSettings dedupe = property_match_settings();
  dedupe.link_type = LinkType::kDedupe;
  auto dedupe_engine = MatchEngine::create(dedupe);
  REQUIRE(dedupe_engine.ok());
  auto wrong = apply_extract(*dedupe_engine, *s.store, *data, mpac);
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.status().message().find("link_type link") != std::string::npos);

  // The good record alone goes in.
  auto ok = apply_extract(*engine, *s.store, *data, mpac);
  REQUIRE_MESSAGE(ok.ok(), ok.status().to_string());
  CHECK(ok->created == 1);
  CHECK(s.store->list(10)->size() == 1);
}

}  // namespace
}  // namespace civicbus::match
