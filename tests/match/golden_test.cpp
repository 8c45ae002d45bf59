#include "civicbus/match/golden.hpp"

#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "broker/broker_fixture.hpp"
#include "civicbus/broker/broker.hpp"
#include "civicbus/storage/database.hpp"
#include "support/postgres.hpp"
#include "support/test_support.hpp"

namespace civicbus::match {
namespace {

using broker::testing_support::BrokerFixture;

SystemTime at(std::string_view rfc3339) {
  auto t = parse_rfc3339(rfc3339);
  REQUIRE_MESSAGE(t.ok(), t.status().to_string());
  return *t;
}

SourceRecord rec(std::string source, std::string id, std::optional<SystemTime> updated,
                 Json fields) {
  return SourceRecord{std::move(source), std::move(id), updated, std::move(fields)};
}

Json parse(std::string_view text) {
  auto j = Json::parse(text);
  REQUIRE_MESSAGE(j.ok(), j.status().to_string());
  return *j;
}

// A store on a real SQLite file, without a broker.
class StoreFixture {
 public:
  StoreFixture() { reopen_db(); }

  void reopen_db() {
    store_.reset();
    db_.reset();
    auto db = storage::open_sqlite(storage::SqliteOptions{.path = dir_.file("civicbus.db")});
    REQUIRE_MESSAGE(db.ok(), db.status().to_string());
    db_ = std::move(*db);
  }

  GoldenRecordStore& open(GoldenRecordOptions options) {
    auto store = GoldenRecordStore::open(*db_, nullptr, std::move(options), &clock_);
    REQUIRE_MESSAGE(store.ok(), store.status().to_string());
    store_ = std::move(*store);
    return *store_;
  }

  GoldenRecordChange apply(std::string_view entity, std::vector<SourceRecord> records) {
    auto change = store_->apply(entity, std::move(records));
    REQUIRE_MESSAGE(change.ok(), change.status().to_string());
    return *change;
  }

  GoldenRecord get(std::string_view entity) {
    auto g = store_->get(entity);
    REQUIRE_MESSAGE(g.ok(), g.status().to_string());
    return *g;
  }

  testing::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<GoldenRecordStore> store_;
};

AttributeRule priority(std::vector<std::string> sources) {
  AttributeRule r;
  r.rule = SurvivorshipRule::kSourcePriority;
  r.sources = std::move(sources);
  return r;
}

AttributeRule custom_rule(std::string name, CustomSurvivorship function) {
  AttributeRule r;
  r.rule = SurvivorshipRule::kCustom;
  r.function = std::move(name);
  r.custom = std::move(function);
  return r;
}

GoldenRecordOptions options_with(std::string kind, SurvivorshipRule default_rule) {
  GoldenRecordOptions o;
  o.kind = std::move(kind);
  o.default_rule.rule = default_rule;
  return o;
}

// The property configuration: MPAC is the source of truth for assessment values, anything else
// goes to the most recent source.
constexpr std::string_view kPropertyConfig = R"({
  "kind": "property",
  "default": "most_recent",
  "attributes": {
    "assessed_value": {"rule": "source_priority", "sources": ["mpac"]},
    "assessment_year": {"rule": "source_priority", "sources": ["mpac"]},
    "property_class": {"rule": "source_priority", "sources": ["mpac"]},
    "legal_description": "most_complete"
  },
  "domain_events": [{"type": "property.assessment.updated",
                     "attributes": ["assessed_value", "assessment_year", "property_class"]}]
})";

GoldenRecordOptions property_options() {
  auto o = GoldenRecordOptions::from_json(parse(kPropertyConfig));
  REQUIRE_MESSAGE(o.ok(), o.status().to_string());
  return *o;
}

std::vector<broker::DeliveredEvent> events(BrokerFixture& f, const std::string& topic) {
  auto e = f.broker().read(topic, 0, 1000);
  REQUIRE_MESSAGE(e.ok(), e.status().to_string());
  return *e;
}

SourceRecord mpac_2024() {
  return rec("mpac", "0614-000-123", at("2025-01-15T00:00:00Z"),
             Json::object({{"assessed_value", 412000},
                           {"assessment_year", 2024},
                           {"property_class", "R"},
                           {"mailing_address", "12 ELM ST OTTAWA ON  K1A 0B1"},
                           {"legal_description", "LOT 4 PLAN 123"}}));
}

SourceRecord tax_2025() {
  return rec("tax", "ACC-77", at("2025-05-01T00:00:00Z"),
             Json::object({{"assessed_value", 398000},  // last year's copy
                           {"mailing_address", "PO BOX 55 STN A OTTAWA ON  K1N 5A1"},
                           {"owner_name", "J SMITH"},
                           {"legal_description", "LOT 4"}}));
}

SourceRecord mpac_2024_other() {
  return rec("mpac", "0614-000-999", at("2025-01-15T00:00:00Z"),
             Json::object({{"assessed_value", 250000}, {"assessment_year", 2024}}));
}

TEST_CASE("golden: most_recent takes the latest dated value, a blank never wins") {
  StoreFixture f;
  f.open(options_with("person", SurvivorshipRule::kMostRecent));
  auto change =
      f.apply("E1", {rec("crm", "c1", at("2025-01-01T00:00:00Z"),
                         Json::object({{"phone", "613-555-0101"}, {"email", "ana@example.ca"}})),
                     rec("permits", "p9", at("2025-06-01T00:00:00Z"),
                         Json::object({{"phone", "613-555-0199"}, {"email", "   "}})),
                     rec("legacy", "L1", std::nullopt,
                         Json::object({{"phone", "613-555-0000"}, {"fax", "613-555-1111"}}))});
  CHECK(change.created);
  CHECK(change.version == 1);
  CHECK(change.changed.size() == 3);
  CHECK(change.members_added.size() == 3);
  CHECK(change.events.empty());  // no broker

  GoldenRecord g = f.get("E1");
  CHECK(g.version == 1);
  CHECK(g.kind == "person");
  CHECK(g.updated_at == f.clock_.now());
  // Provenance per attribute: the record and its time.
  CHECK(g.attributes.at("phone").value == Json("613-555-0199"));
  CHECK(g.attributes.at("phone").source == "permits");
  CHECK(g.attributes.at("phone").record_id == "p9");
  CHECK(g.attributes.at("phone").updated_at == at("2025-06-01T00:00:00Z"));
  CHECK(g.attributes.at("email").value == Json("ana@example.ca"));
  CHECK(g.attributes.at("email").source == "crm");
  // An undated record is older than any dated one, but still the only fax there is.
  CHECK(g.attributes.at("fax").source == "legacy");
  CHECK_FALSE(g.attributes.at("fax").updated_at.has_value());
  CHECK(g.members == std::vector<MemberRef>{{"crm", "c1"}, {"legacy", "L1"}, {"permits", "p9"}});
  CHECK(g.values() ==
        Json::object(
            {{"email", "ana@example.ca"}, {"fax", "613-555-1111"}, {"phone", "613-555-0199"}}));
}

TEST_CASE("golden: source_priority takes the first listed source with a value") {
  StoreFixture f;
  auto o = options_with("property", SurvivorshipRule::kMostRecent);
  o.attributes["assessed_value"] = priority({"mpac", "tax"});
  o.attributes["zoning"] = priority({"gis"});
  f.open(o);
  f.apply("P1", {rec("mpac", "m1", at("2024-01-01T00:00:00Z"),
                     Json::object({{"assessed_value", 400000}})),
                 rec("tax", "t1", at("2025-01-01T00:00:00Z"),
                     Json::object({{"assessed_value", 410000}, {"zoning", "R1"}})),
                 rec("permits", "p1", at("2025-06-01T00:00:00Z"),
                     Json::object({{"assessed_value", 999}, {"zoning", "R2"}}))});
  GoldenRecord g = f.get("P1");
  // MPAC wins although it is the oldest.
  CHECK(g.attributes.at("assessed_value").value == Json(400000));
  CHECK(g.attributes.at("assessed_value").source == "mpac");
  // No listed source has a zoning: the unlisted ones follow, most recent first.
  CHECK(g.attributes.at("zoning").value == Json("R2"));
  CHECK(g.attributes.at("zoning").source == "permits");

  // MPAC blanks its value: the next listed source (tax) comes before the unlisted permits.
  auto change = f.apply("P1", {rec("mpac", "m1", at("2025-07-01T00:00:00Z"),
                                   Json::object({{"assessed_value", ""}}))});
  REQUIRE(change.changed.size() == 1);
  CHECK(change.changed[0].attribute == "assessed_value");
  CHECK(change.changed[0].old_value == Json(400000));
  CHECK(change.changed[0].new_value == Json(410000));
  CHECK(change.changed[0].source == "tax");
  CHECK(change.version == 2);
  CHECK_FALSE(change.created);
}

TEST_CASE("golden: most_complete takes the most informative value") {
  StoreFixture f;
  auto o = options_with("property", SurvivorshipRule::kMostComplete);
  f.open(o);
  f.apply("P1",
          {rec("mpac", "m1", at("2024-01-01T00:00:00Z"),
               Json::object({{"legal", "LOT 12 PLAN 4567 CON 3"},
                             {"mailing", Json::object({{"street", "1 MAIN ST"}, {"unit", "4"}})},
                             {"name", "ELM          "}})),
           rec("tax", "t1", at("2025-01-01T00:00:00Z"),
               Json::object({{"legal", "LOT 12"},
                             {"mailing", Json::object({{"street", "1 MAIN STREET"}})},
                             {"name", "ELMS"}})),
           rec("gis", "g1", at("2025-03-01T00:00:00Z"), Json::object({{"name", "OAKS"}}))});
  GoldenRecord g = f.get("P1");
  // The longer text, although older.
  CHECK(g.attributes.at("legal").value == Json("LOT 12 PLAN 4567 CON 3"));
  // More non-empty fields beat longer text.
  CHECK(g.attributes.at("mailing").source == "mpac");
  // Trailing blanks add nothing; "ELMS" and "OAKS" tie on length and the more recent wins.
  CHECK(g.attributes.at("name").value == Json("OAKS"));
  CHECK(g.attributes.at("name").source == "gis");
}

TEST_CASE("golden: most_frequent takes the value most records agree on, ties to the most recent") {
  StoreFixture f;
  f.open(options_with("person", SurvivorshipRule::kMostFrequent));
  f.apply("E1", {rec("crm", "c1", at("2024-01-01T00:00:00Z"),
                     Json::object({{"phone", "613-555-0101"}, {"city", "OTTAWA"}})),
                 rec("tax", "t1", at("2023-01-01T00:00:00Z"),
                     Json::object({{"phone", "613-555-0101"}, {"city", "GATINEAU"}})),
                 rec("permits", "p1", at("2025-01-01T00:00:00Z"),
                     Json::object({{"phone", "613-555-0199"}}))});
  GoldenRecord g = f.get("E1");
  CHECK(g.attributes.at("phone").value == Json("613-555-0101"));
  // The provenance is the most recent record holding the winning value.
  CHECK(g.attributes.at("phone").source == "crm");
  // One vote each: the most recent wins.
  CHECK(g.attributes.at("city").value == Json("OTTAWA"));
}

TEST_CASE("golden: a custom rule chooses among candidates with their provenance") {
  StoreFixture f;
  auto o = options_with("property", SurvivorshipRule::kMostRecent);
  std::vector<std::string> seen_sources;
  AttributeRule highest = custom_rule(
      "highest",
      [&](std::string_view attribute,
          std::span<const SurvivorCandidate> candidates) -> Result<std::optional<std::size_t>> {
        CHECK(attribute == "frontage_m");
        seen_sources.clear();
        std::size_t best = 0;
        for (std::size_t i = 0; i < candidates.size(); ++i) {
          seen_sources.push_back(candidates[i].source);
          if (candidates[i].value.as_double() > candidates[best].value.as_double()) best = i;
        }
        return std::optional<std::size_t>(best);
      });
  o.attributes["frontage_m"] = highest;
  AttributeRule never =
      custom_rule("never",
                  [](std::string_view,
                     std::span<const SurvivorCandidate>) -> Result<std::optional<std::size_t>> {
                    return std::optional<std::size_t>();
                  });
  o.attributes["internal_note"] = never;
  f.open(o);
  f.apply("P1",
          {rec("gis", "g1", at("2025-01-01T00:00:00Z"),
               Json::object({{"frontage_m", 15.2}, {"internal_note", "x"}})),
           rec("survey", "s1", at("2024-01-01T00:00:00Z"), Json::object({{"frontage_m", 15.8}})),
           rec("tax", "t1", at("2025-06-01T00:00:00Z"), Json::object({{"frontage_m", ""}}))});
  GoldenRecord g = f.get("P1");
  CHECK(g.attributes.at("frontage_m").value == Json(15.8));
  CHECK(g.attributes.at("frontage_m").source == "survey");
  // Only non-empty values, most recent first.
  CHECK(seen_sources == std::vector<std::string>{"gis", "survey"});
  CHECK_FALSE(g.attributes.contains("internal_note"));
}

TEST_CASE(
    "golden: MPAC is the truth for assessment values, the tax system's newer mailing "
    "address wins, and each change is announced once") {
  BrokerFixture bf;
  ManualClock clock;
  auto opened = GoldenRecordStore::open(bf.db(), &bf.broker(), property_options(), &clock);
  REQUIRE_MESSAGE(opened.ok(), opened.status().to_string());
  GoldenRecordStore& store = **opened;
  auto topic = bf.broker().topic("mdm.golden_record.updated");
  REQUIRE(topic.ok());
  CHECK(topic->options.owner == "match");
  CHECK(bf.broker().topic("property.assessment.updated").ok());

  auto first = store.apply("P-0614", {mpac_2024(), tax_2025()});
  REQUIRE_MESSAGE(first.ok(), first.status().to_string());
  CHECK(first->version == 1);
  CHECK(first->events ==
        std::vector<std::string>{"mdm.golden_record.updated", "property.assessment.updated"});
  auto g = store.get("P-0614");
  REQUIRE(g.ok());
  CHECK(g->attributes.at("assessed_value").value == Json(412000));
  CHECK(g->attributes.at("assessed_value").source == "mpac");
  CHECK(g->attributes.at("mailing_address").value == Json("PO BOX 55 STN A OTTAWA ON  K1N 5A1"));
  CHECK(g->attributes.at("mailing_address").source == "tax");
  CHECK(g->attributes.at("legal_description").value == Json("LOT 4 PLAN 123"));
  CHECK(g->attributes.at("owner_name").source == "tax");

  auto golden_events = events(bf, "mdm.golden_record.updated");
  REQUIRE(golden_events.size() == 1);
  const broker::CloudEvent& e = golden_events[0].event;
  CHECK(e.id() == "P-0614@1");
  CHECK(e.subject() == "P-0614");
  CHECK(e.source() == "civicbus/match/golden/property");
  CHECK(e.data().get_string("entity_id") == "P-0614");
  CHECK(e.data().get_string("kind") == "property");
  CHECK(e.data().get_int("version") == 1);
  CHECK(e.data().get_bool("created"));
  CHECK(e.data().find("changed")->size() == 6);
  CHECK(
      *e.data().at_pointer("/changed/assessed_value") ==
      Json::object(
          {{"old", nullptr}, {"new", 412000}, {"source", "mpac"}, {"record_id", "0614-000-123"}}));
  CHECK(e.data().find("members_added")->size() == 2);
  auto assessment = events(bf, "property.assessment.updated");
  REQUIRE(assessment.size() == 1);
  CHECK(assessment[0].event.id() == "P-0614@1/property.assessment.updated");
  CHECK(assessment[0].event.data().find("changed")->size() == 3);
  CHECK(*assessment[0].event.data().at_pointer("/changed/assessed_value/new") == Json(412000));

  // The same extract again: nothing changed, nothing published.
  auto again = store.apply("P-0614", {tax_2025(), mpac_2024()});
  REQUIRE_MESSAGE(again.ok(), again.status().to_string());
  CHECK(again->empty());
  CHECK(again->version == 1);
  CHECK(again->events.empty());
  CHECK(events(bf, "mdm.golden_record.updated").size() == 1);
  CHECK(events(bf, "property.assessment.updated").size() == 1);

  // The MPAC sync finds the property by its roll number and applies the new roll.
  auto entity = store.entity_of("mpac", "0614-000-123");
  REQUIRE(entity.ok());
  CHECK(*entity == std::optional<std::string>("P-0614"));
  CHECK(*store.entity_of("mpac", "no-such-roll") == std::nullopt);
  // The new roll's record is older than the tax system's, so its (unchanged) mailing address
  // does not take over.
  SourceRecord roll_2025 = mpac_2024();
  roll_2025.updated_at = at("2025-03-31T00:00:00Z");
  roll_2025.fields.set("assessed_value", 425000);
  roll_2025.fields.set("assessment_year", 2025);
  clock.advance(std::chrono::hours(24));
  auto second = store.apply(**entity, {roll_2025});
  REQUIRE_MESSAGE(second.ok(), second.status().to_string());
  CHECK(second->version == 2);
  REQUIRE(second->changed.size() == 2);
  CHECK(second->changed[0].attribute == "assessed_value");
  CHECK(second->changed[1].attribute == "assessment_year");
  CHECK(store.get("P-0614")->attributes.at("mailing_address").source == "tax");
  golden_events = events(bf, "mdm.golden_record.updated");
  REQUIRE(golden_events.size() == 2);
  const Json& data2 = golden_events[1].event.data();
  CHECK(golden_events[1].event.id() == "P-0614@2");
  CHECK(golden_events[1].event.time() == format_rfc3339(clock.now()));
  CHECK(data2.get_bool("created") == false);
  CHECK(data2.find("members_added")->size() == 0);
  CHECK(*data2.at_pointer("/changed/assessed_value") ==
        Json::object(
            {{"old", 412000}, {"new", 425000}, {"source", "mpac"}, {"record_id", "0614-000-123"}}));
  CHECK(data2.find("changed")->size() == 2);
  assessment = events(bf, "property.assessment.updated");
  REQUIRE(assessment.size() == 2);
  const Json& a2 = assessment[1].event.data();
  CHECK(a2.get_int("version") == 2);
  CHECK(a2.find("changed")->size() == 2);
  CHECK(*a2.at_pointer("/changed/assessment_year/old") == Json(2024));
  CHECK(*a2.at_pointer("/changed/assessment_year/new") == Json(2025));
  // The watched attributes' current values ride along.
  CHECK(*a2.at_pointer("/attributes/property_class") == Json("R"));

  // A new mailing address from the tax system: a golden record change, not an assessment one.
  SourceRecord moved = tax_2025();
  moved.updated_at = at("2026-02-01T00:00:00Z");
  moved.fields.set("mailing_address", "44 OAK AVE OTTAWA ON  K2P 1B2");
  auto third = store.apply("P-0614", {moved});
  REQUIRE_MESSAGE(third.ok(), third.status().to_string());
  CHECK(third->version == 3);
  CHECK(third->events == std::vector<std::string>{"mdm.golden_record.updated"});
  CHECK(events(bf, "mdm.golden_record.updated").size() == 3);
  CHECK(events(bf, "property.assessment.updated").size() == 2);
  CHECK(*store.pending_events() == 0);
}

TEST_CASE("golden: a failing apply leaves nothing half-written") {
  BrokerFixture bf;
  auto o = property_options();
  AttributeRule zoning = custom_rule(
      "zoning_by_bylaw",
      [](std::string_view,
         std::span<const SurvivorCandidate> candidates) -> Result<std::optional<std::size_t>> {
        for (const auto& c : candidates) {
          if (c.value == Json("XX")) {
            return invalid_argument("zoning 'XX' from " + c.source + " is not a bylaw zone");
          }
        }
        return std::optional<std::size_t>(0);
      });
  o.attributes["zoning"] = zoning;
  auto opened = GoldenRecordStore::open(bf.db(), &bf.broker(), o);
  REQUIRE_MESSAGE(opened.ok(), opened.status().to_string());
  GoldenRecordStore& store = **opened;
  REQUIRE(store.apply("P-1", {mpac_2024()}).ok());

  SourceRecord new_roll = mpac_2024();
  new_roll.updated_at = at("2026-01-15T00:00:00Z");
  new_roll.fields.set("assessed_value", 999999);
  SourceRecord gis = rec("gis", "G-5", at("2026-01-01T00:00:00Z"),
                         Json::object({{"zoning", "XX"}, {"frontage_m", 12.0}}));
  auto failed = store.apply("P-1", {new_roll, gis});
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.status().code() == ErrorCode::kInvalidArgument);
  CHECK(failed.status().message().find("zoning_by_bylaw") != std::string::npos);
  CHECK(failed.status().message().find("not a bylaw zone") != std::string::npos);

  // Neither the member records (written first in the transaction) nor a version.
  auto g = store.get("P-1");
  REQUIRE(g.ok());
  CHECK(g->version == 1);
  CHECK(g->attributes.at("assessed_value").value == Json(412000));
  CHECK(g->members == std::vector<MemberRef>{{"mpac", "0614-000-123"}});
  CHECK(*store.entity_of("gis", "G-5") == std::nullopt);
  auto members = store.members("P-1");
  REQUIRE(members.ok());
  REQUIRE(members->size() == 1);
  CHECK((*members)[0].fields.get_int("assessed_value") == 412000);
  CHECK(*store.pending_events() == 0);
  CHECK(events(bf, "mdm.golden_record.updated").size() == 1);
  CHECK(events(bf, "property.assessment.updated").size() == 1);

  // Invalid input fails before the transaction, naming the record.
  auto bad = store.apply("P-1", {rec("tax", "", std::nullopt, Json::object())});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == ErrorCode::kInvalidArgument);
  CHECK(bad.status().message().find("record 0") != std::string::npos);
  bad = store.apply("P-1", {rec("tax", "T1", std::nullopt, Json::array({1}))});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("'tax'/'T1'") != std::string::npos);
  CHECK_FALSE(store.apply("", {mpac_2024()}).ok());
  CHECK_FALSE(store.apply("P-1", {}).ok());
}

TEST_CASE("golden: a record belongs to one entity, and a stale extract does not roll it back") {
  StoreFixture f;
  f.open(options_with("property", SurvivorshipRule::kMostRecent));
  f.apply("P1", {rec("tax", "T1", at("2025-05-01T00:00:00Z"), Json::object({{"owner", "NEW"}}))});

  auto stolen =
      f.store_->apply("P2", {rec("tax", "T1", std::nullopt, Json::object({{"owner", "X"}}))});
  REQUIRE_FALSE(stolen.ok());
  CHECK(stolen.status().code() == ErrorCode::kFailedPrecondition);
  CHECK(stolen.status().message().find("'tax'/'T1' belongs to property 'P1', not 'P2'") !=
        std::string::npos);
  CHECK(f.store_->get("P2").status().code() == ErrorCode::kNotFound);

  auto stale = f.apply(
      "P1", {rec("tax", "T1", at("2025-01-01T00:00:00Z"), Json::object({{"owner", "OLD"}}))});
  CHECK(stale.empty());
  CHECK(f.get("P1").attributes.at("owner").value == Json("NEW"));

  // Two copies of one record in a batch: the newer is kept, whatever the order.
  auto batch = f.apply(
      "P1", {rec("tax", "T1", at("2025-09-01T00:00:00Z"), Json::object({{"owner", "NEWEST"}})),
             rec("tax", "T1", at("2025-08-01T00:00:00Z"), Json::object({{"owner", "NEWER"}}))});
  REQUIRE(batch.changed.size() == 1);
  CHECK(batch.changed[0].new_value == Json("NEWEST"));

  // The same value from a newer record refreshes the provenance without a new version.
  auto refresh = f.apply(
      "P1", {rec("tax", "T1", at("2025-10-01T00:00:00Z"), Json::object({{"owner", "NEWEST"}}))});
  CHECK(refresh.empty());
  GoldenRecord g = f.get("P1");
  CHECK(g.version == 2);
  CHECK(g.attributes.at("owner").updated_at == at("2025-10-01T00:00:00Z"));

  // A new member with nothing new to say is still a new version: the entity's members changed.
  auto joined = f.apply("P1", {rec("permits", "B-7", std::nullopt, Json::object())});
  CHECK(joined.changed.empty());
  CHECK(joined.members_added == std::vector<MemberRef>{{"permits", "B-7"}});
  CHECK(joined.version == 3);
}

TEST_CASE("golden: records, members and provenance read back after a restart") {
  BrokerFixture bf;
  ManualClock clock;
  {
    auto store = GoldenRecordStore::open(bf.db(), &bf.broker(), property_options(), &clock);
    REQUIRE_MESSAGE(store.ok(), store.status().to_string());
    REQUIRE((*store)->apply("P-2", {mpac_2024()}).ok());
    REQUIRE((*store)->apply("P-1", {mpac_2024_other(), tax_2025()}).ok());
  }
  bf.reopen();
  // Opening again migrates nothing and finds its topics.
  auto store = GoldenRecordStore::open(bf.db(), &bf.broker(), property_options(), &clock);
  REQUIRE_MESSAGE(store.ok(), store.status().to_string());
  auto version = storage::schema_version(bf.db(), "match_golden");
  REQUIRE(version.ok());
  CHECK(*version == 1);

  auto g = (*store)->get("P-1");
  REQUIRE_MESSAGE(g.ok(), g.status().to_string());
  CHECK(g->version == 1);
  CHECK(g->updated_at == clock.now());
  CHECK(g->attributes.at("assessed_value").value == Json(250000));
  CHECK(g->attributes.at("assessed_value").record_id == "0614-000-999");
  CHECK(g->attributes.at("assessed_value").updated_at == at("2025-01-15T00:00:00Z"));
  CHECK(g->attributes.at("mailing_address").source == "tax");
  CHECK(g->members == std::vector<MemberRef>{{"mpac", "0614-000-999"}, {"tax", "ACC-77"}});
  auto members = (*store)->members("P-1");
  REQUIRE(members.ok());
  REQUIRE(members->size() == 2);
  CHECK((*members)[1].fields == tax_2025().fields);
  CHECK((*members)[1].updated_at == tax_2025().updated_at);
  CHECK(*(*store)->entity_of("tax", "ACC-77") == std::optional<std::string>("P-1"));

  auto page = (*store)->list(1);
  REQUIRE(page.ok());
  REQUIRE(page->size() == 1);
  CHECK((*page)[0].entity_id == "P-1");
  page = (*store)->list(10, "P-1");
  REQUIRE(page.ok());
  REQUIRE(page->size() == 1);
  CHECK((*page)[0].entity_id == "P-2");
  CHECK((*page)[0].members == std::vector<MemberRef>{{"mpac", "0614-000-123"}});

  // Still silent for the same extract after the restart.
  auto again = (*store)->apply("P-1", {tax_2025(), mpac_2024_other()});
  REQUIRE(again.ok());
  CHECK(again->empty());
  CHECK(events(bf, "mdm.golden_record.updated").size() == 2);
}

TEST_CASE("golden: an event the broker refuses stays queued and goes out on the next apply") {
  BrokerFixture bf;
  // The assessment topic exists with a schema subject that has no active version: the broker
  // refuses its events until the topic is fixed.
  broker::TopicOptions t;
  t.name = "property.assessment.updated";
  t.owner = "assessment-team";
  t.description = "assessment values";
  t.schema_subject = "property-assessment";
  REQUIRE(bf.broker().create_topic(t).ok());
  auto opened = GoldenRecordStore::open(bf.db(), &bf.broker(), property_options());
  REQUIRE_MESSAGE(opened.ok(), opened.status().to_string());
  GoldenRecordStore& store = **opened;

  auto first = store.apply("P-1", {mpac_2024()});
  REQUIRE_FALSE(first.ok());
  CHECK(first.status().code() == ErrorCode::kFailedPrecondition);
  CHECK(first.status().message().find("property 'P-1' version 1 is stored") != std::string::npos);
  CHECK(first.status().message().find("no active version") != std::string::npos);
  // Stored, with its announcement queued: the store does not hold a change it will not announce.
  CHECK(store.get("P-1")->version == 1);
  CHECK(*store.pending_events() == 1);
  CHECK(events(bf, "mdm.golden_record.updated").size() == 1);
  CHECK(events(bf, "property.assessment.updated").empty());

  // Still refused: the retry fails again and keeps the event.
  auto retry = store.apply("P-1", {mpac_2024()});
  CHECK_FALSE(retry.ok());
  CHECK(*store.pending_events() == 1);

  t.schema_subject.clear();
  REQUIRE(bf.broker().update_topic(t).ok());
  retry = store.apply("P-1", {mpac_2024()});
  REQUIRE_MESSAGE(retry.ok(), retry.status().to_string());
  CHECK(retry->empty());
  CHECK(*store.pending_events() == 0);
  auto assessment = events(bf, "property.assessment.updated");
  REQUIRE(assessment.size() == 1);
  CHECK(assessment[0].event.id() == "P-1@1/property.assessment.updated");
  CHECK(events(bf, "mdm.golden_record.updated").size() == 1);
}

TEST_CASE(
    "golden: events published again after a crash before the outbox delete are not "
    "stored twice") {
  BrokerFixture bf;
  auto opened = GoldenRecordStore::open(bf.db(), &bf.broker(), property_options());
  REQUIRE_MESSAGE(opened.ok(), opened.status().to_string());
  GoldenRecordStore& store = **opened;
  REQUIRE(store.apply("P-1", {mpac_2024()}).ok());

  // The broker takes the events but the outbox rows cannot be removed (as if the process had
  // died between the two).
  REQUIRE(bf.db()
              .execute_script("CREATE TRIGGER keep_outbox BEFORE DELETE ON match_golden_outbox "
                              "BEGIN SELECT RAISE(ABORT, 'simulated crash'); END;")
              .ok());
  SourceRecord roll = mpac_2024();
  roll.updated_at = at("2026-01-15T00:00:00Z");
  roll.fields.set("assessed_value", 430000);
  auto second = store.apply("P-1", {roll});
  REQUIRE_FALSE(second.ok());
  CHECK(events(bf, "mdm.golden_record.updated").size() == 2);
  // The golden event went out; the assessment event waits behind it (one entity, in order).
  CHECK(events(bf, "property.assessment.updated").size() == 1);
  CHECK(*store.pending_events() == 2);

  REQUIRE(bf.db().execute_script("DROP TRIGGER keep_outbox").ok());
  auto published = store.publish_pending();
  REQUIRE_MESSAGE(published.ok(), published.status().to_string());
  CHECK(*published == 2);
  CHECK(*store.pending_events() == 0);
  auto golden = events(bf, "mdm.golden_record.updated");
  REQUIRE(golden.size() == 2);  // the broker recognised P-1@2 and did not store it again
  CHECK(golden[1].event.id() == "P-1@2");
  auto assessment = events(bf, "property.assessment.updated");
  REQUIRE(assessment.size() == 2);
  CHECK(assessment[1].event.id() == "P-1@2/property.assessment.updated");
  CHECK(*assessment[1].event.data().at_pointer("/changed/assessed_value/new") == Json(430000));
}

TEST_CASE("golden: PII attributes are PII fields of the shared topic") {
  BrokerFixture bf;
  auto property = GoldenRecordStore::open(bf.db(), &bf.broker(), property_options());
  REQUIRE_MESSAGE(property.ok(), property.status().to_string());
  auto topic = bf.broker().topic("mdm.golden_record.updated");
  REQUIRE(topic.ok());
  CHECK(topic->options.pii_fields.empty());
  CHECK(topic->options.sensitivity == broker::Sensitivity::kInternal);
  CHECK(topic->options.retention == std::chrono::hours(24 * 30));

  GoldenRecordOptions person = options_with("person", SurvivorshipRule::kMostRecent);
  person.pii_attributes = {"full_name", "birth/date"};
  person.sensitivity = broker::Sensitivity::kConfidential;
  auto people = GoldenRecordStore::open(bf.db(), &bf.broker(), person);
  REQUIRE_MESSAGE(people.ok(), people.status().to_string());
  topic = bf.broker().topic("mdm.golden_record.updated");
  REQUIRE(topic.ok());
  CHECK(topic->options.pii_fields ==
        std::vector<std::string>{"/changed/full_name/old", "/changed/full_name/new",
                                 "/changed/birth~1date/old", "/changed/birth~1date/new"});
  CHECK(topic->options.sensitivity == broker::Sensitivity::kConfidential);
  CHECK(topic->options.owner == "match");

  REQUIRE((*people)
              ->apply("E-1", {rec("crm", "c1", std::nullopt,
                                  Json::object({{"full_name", "ANA LIMA"},
                                                {"birth/date", "1990-04-01"},
                                                {"ward", "7"}}))})
              .ok());
  auto e = events(bf, "mdm.golden_record.updated");
  REQUIRE(e.size() == 1);
  // A reader without a grant sees the names redacted, the rest in clear.
  CHECK(*e[0].event.data().at_pointer("/changed/full_name/new") == Json("[redacted]"));
  CHECK(*e[0].event.data().at_pointer("/changed/birth~1date/new") == Json("[redacted]"));
  CHECK(*e[0].event.data().at_pointer("/changed/ward/new") == Json("7"));
  // The person store reads its own records, not the property store's.
  CHECK((*people)->get("E-1").ok());
  CHECK((*property)->get("E-1").status().code() == ErrorCode::kNotFound);
}

TEST_CASE("golden: options are validated once, with errors naming what is wrong") {
  auto fails = [](std::string_view config, std::string_view expected,
                  const std::map<std::string, CustomSurvivorship>& functions = {}) {
    auto o = GoldenRecordOptions::from_json(parse(config), functions);
    INFO("config: ", std::string(config));
    REQUIRE_FALSE(o.ok());
    CHECK(o.status().code() == ErrorCode::kInvalidArgument);
    INFO("message: ", o.status().message());
    CHECK(o.status().message().find(expected) != std::string::npos);
  };
  fails(R"({"default": "most_recent"})", "kind ''");
  fails(R"({"kind": "Property"})", "kind 'Property'");
  fails(R"({"kind": "property", "default": "newest"})", "survivorship rule 'newest'");
  fails(R"({"kind": "property", "attributes": {"assessed_value": {"rule": "source_priority"}}})",
        "attribute 'assessed_value' uses source_priority but lists no sources");
  fails(R"({"kind": "property",
            "attributes": {"a": {"rule": "source_priority", "sources": ["mpac", "mpac"]}}})",
        "lists source 'mpac' twice");
  fails(R"({"kind": "property", "attributes": {"a": {"rule": "most_recent", "sources": ["x"]}}})",
        "sources are only read by source_priority");
  fails(R"({"kind": "property", "attributes": {"zoning": {"rule": "custom", "function": "z"}}})",
        "custom function 'z', which is not registered (none is)");
  fails(R"({"kind": "property", "attributes": {"zoning": {"rule": "custom"}}})",
        "without a 'function' name");
  fails(R"({"kind": "property", "attributes": {"zoning": {"rule": "most_recent", "weight": 2}}})",
        "unknown member 'weight'");
  fails(R"({"kind": "property", "survivorship": {}})", "unknown member 'survivorship'");
  fails(R"({"kind": "property", "domain_events": [{"type": "Property Updated",
                                                   "attributes": ["a"]}]})",
        "domain event");
  fails(R"({"kind": "property", "domain_events": [{"type": "property.x", "attributes": []}]})",
        "domain event 'property.x' lists no attributes");
  fails(R"({"kind": "property", "domain_events": [{"type": "mdm.golden_record.updated",
                                                   "attributes": ["a"]}]})",
        "is the golden record topic itself");
  fails(R"({"kind": "property", "sensitivity": "secret"})", "secret");
  fails(R"({"kind": "property", "retention_days": -1})", "retention_days");

  std::map<std::string, CustomSurvivorship> functions;
  functions["zoning_by_bylaw"] = [](std::string_view, std::span<const SurvivorCandidate>)
      -> Result<std::optional<std::size_t>> { return std::optional<std::size_t>(0); };
  auto o = GoldenRecordOptions::from_json(
      parse(R"({"kind": "property", "default": {"rule": "most_frequent"},
                "attributes": {"zoning": {"rule": "custom", "function": "zoning_by_bylaw"}},
                "pii_attributes": ["owner_name"], "sensitivity": "confidential",
                "retention_days": 90})"),
      functions);
  REQUIRE_MESSAGE(o.ok(), o.status().to_string());
  CHECK(o->default_rule.rule == SurvivorshipRule::kMostFrequent);
  CHECK(o->attributes.at("zoning").rule == SurvivorshipRule::kCustom);
  CHECK(o->attributes.at("zoning").function == "zoning_by_bylaw");
  CHECK(static_cast<bool>(o->attributes.at("zoning").custom));
  CHECK(o->pii_attributes == std::vector<std::string>{"owner_name"});
  CHECK(o->sensitivity == broker::Sensitivity::kConfidential);
  CHECK(o->retention == std::chrono::hours(24 * 90));
  fails(R"({"kind": "property", "attributes": {"zoning": {"rule": "custom", "function": "z"}}})",
        "registered: zoning_by_bylaw", functions);

  // open() validates too: a custom rule built in code without its function.
  StoreFixture f;
  GoldenRecordOptions bad = options_with("property", SurvivorshipRule::kMostRecent);
  bad.attributes["zoning"] = custom_rule("", nullptr);
  auto store = GoldenRecordStore::open(*f.db_, nullptr, bad);
  REQUIRE_FALSE(store.ok());
  CHECK(store.status().message().find(
            "attribute 'zoning' uses a custom rule but has no function") != std::string::npos);
  for (auto rule : {SurvivorshipRule::kSourcePriority, SurvivorshipRule::kMostRecent,
                    SurvivorshipRule::kMostComplete, SurvivorshipRule::kMostFrequent,
                    SurvivorshipRule::kCustom}) {
    CHECK(*parse_survivorship_rule(to_string(rule)) == rule);
  }
}

TEST_CASE("golden: the same behaviour on PostgreSQL") {
  testing::Postgres server;
  ManualClock clock;
  auto db = storage::open_postgres(storage::PostgresOptions{.connection = server.uri()});
  REQUIRE_MESSAGE(db.ok(), db.status().to_string());
  auto store = GoldenRecordStore::open(**db, nullptr, property_options(), &clock);
  REQUIRE_MESSAGE(store.ok(), store.status().to_string());
  auto first = (*store)->apply("P-1", {mpac_2024(), tax_2025()});
  REQUIRE_MESSAGE(first.ok(), first.status().to_string());
  CHECK(first->version == 1);
  auto again = (*store)->apply("P-1", {tax_2025(), mpac_2024()});
  REQUIRE_MESSAGE(again.ok(), again.status().to_string());
  CHECK(again->empty());
  auto g = (*store)->get("P-1");
  REQUIRE_MESSAGE(g.ok(), g.status().to_string());
  CHECK(g->attributes.at("assessed_value").source == "mpac");
  CHECK(g->attributes.at("mailing_address").source == "tax");
  CHECK(g->attributes.at("mailing_address").updated_at == at("2025-05-01T00:00:00Z"));
  CHECK(g->updated_at == clock.now());
  CHECK(*(*store)->entity_of("tax", "ACC-77") == std::optional<std::string>("P-1"));
  auto stolen = (*store)->apply("P-2", {tax_2025()});
  CHECK(stolen.status().code() == ErrorCode::kFailedPrecondition);
  auto page = (*store)->list(10);
  REQUIRE(page.ok());
  CHECK(page->size() == 1);
}

}  // namespace
}  // namespace civicbus::match
