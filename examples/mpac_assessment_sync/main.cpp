// mpac_assessment_sync: the spec's "MPAC Property Assessment Sync" scenario on eight Ottawa
// properties. The tax system's records are the first golden records; MPAC's annual extract
// arrives as a file read by the built-in `mpac` connector, goes through a pipeline (mapped to the
// property model, addresses normalised to Canada Post's form, validated; a bad row lands in the
// error report), and MDM links each record to its property by roll number, or by fuzzy address
// where the tax system lacks the roll number, or creates a new property. MPAC is the authority
// for assessment values; property.assessment.updated is published once per changed property and
// consumed by the tax, planning and GIS modules. Exits non-zero when an outcome differs.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "civicbus/match/engine.hpp"
#include "civicbus/match/golden.hpp"
#include "civicbus/match/mdm.hpp"
#include "civicbus/node/node.hpp"
#include "civicbus/pipeline/pipeline.hpp"

using namespace civicbus;
namespace fs = std::filesystem;

namespace {

// The tax system's records, as its export has them (roll number missing for 14 Heron Road).
constexpr const char* kTaxRecords =
    R"(account,roll_number,address,municipality,province,postal_code,owner_name,assessed_value,assessment_year,property_class,updated_at
TX-1001,0614100200100010000,10 Bank Street,Ottawa,ON,K1S 3W7,Marie Tremblay,412000,2026,301,2025-06-01
TX-1002,0614100200100020000,200 Elgin Street Apt 1204,Ottawa,ON,K2P 1L5,Jean Gagnon,389000,2026,370,2025-06-01
TX-1003,0614100200100030000,55 King Edward Avenue,Ottawa,ON,K1N 6N5,Aisha Khan,655000,2026,301,2025-06-01
TX-1004,0614100200100040000,1200 Carling Avenue,Ottawa,ON,K1Z 7K4,Liam O'Brien,520000,2026,301,2025-06-01
TX-1005,0614100200100050000,88 Riverside Drive,Ottawa,ON,K1H 8M2,Sofia Rossi,298000,2026,301,2025-06-01
TX-1006,,14 Heron Road,Ottawa,ON,K1G 0Z1,Wei Chen,350000,2026,301,2025-06-01
TX-1007,0614100200100070000,31 Main Street,Ottawa,ON,K1S 1B2,Noah Martin,275000,2026,301,2025-06-01
)";

// MPAC's extract (the civicbus CSV layout of the `mpac` connector, docs/connectors.md). 31 Main
// St's postal code uses a letter Canada Post never uses; 600 Bronson Ave is a new property.
constexpr const char* kMpacExtract =
    R"(roll_number,extract_date,property_code,tax_class,unit_number,street_number,street_name,municipality,postal_code,current_value_assessment,prior_value_assessment,tax_year,owner_name
0614-100-200-10001-0000,2026-01-15,301,RT,,10,BANK ST,OTTAWA,K1S 3W7,431000,412000,2026,MARIE TREMBLAY
0614100200100020000,2026-01-15,370,RT,1204,200,ELGIN ST,OTTAWA,K2P 1L5,401000,389000,2026,JEAN GAGNON
0614100200100030000,2026-01-15,301,RT,,55,KING EDWARD AVE,OTTAWA,K1N 6N5,655000,655000,2026,AISHA KHAN
0614100200100040000,2026-01-15,301,RT,,1200,CARLING AVE,OTTAWA,K1Z 7K4,547000,520000,2026,LIAM O'BRIEN
0614100200100050000,2026-01-15,301,RT,,88,RIVERSIDE DR,OTTAWA,K1H 8M2,310000,298000,2026,SOFIA ROSSI
0614100200100060000,2026-01-15,301,RT,,14,HERON RD,OTTAWA,K1G 0Z1,362000,350000,2026,WEI CHEN
0614100200100070000,2026-01-15,301,RT,,31,MAIN ST,OTTAWA,D1A 1A1,281000,275000,2026,NOAH MARTIN
0614100200100080000,2026-01-15,340,CT,,600,BRONSON AVE,OTTAWA,K1R 6J3,1250000,,2026,BRONSON HOLDINGS INC
)";

int fail(const std::string& what) {
  std::fprintf(stderr, "mpac_assessment_sync: %s\n", what.c_str());
  return 1;
}

Json parse(const char* text) {
  return Json::parse(text).value();
}

match::ApplyExtractOptions extract_options(std::string source, std::string id, std::string time) {
  match::ApplyExtractOptions o;
  o.source = std::move(source);
  o.record_id_column = std::move(id);
  o.updated_at_column = std::move(time);
  o.fields = {"roll_number", "address",        "municipality",    "province",      "postal_code",
              "owner_name",  "assessed_value", "assessment_year", "property_class"};
  o.value_types = {{"assessed_value", match::ExtractValueType::kInteger},
                   {"assessment_year", match::ExtractValueType::kInteger}};
  o.entity_prefix = "P-";
  return o;
}

}  // namespace

int main() {
  const fs::path dir = fs::temp_directory_path() / ("civicbus-mpac-" + std::to_string(::getpid()));
  NodeOptions node_options;
  node_options.data_dir = dir.string();
  node_options.worker_threads = 2;
  node_options.generate_master_key = true;
  node_options.logging.level = LogLevel::kWarn;
  auto node = Node::create(node_options);
  if (!node.ok()) return fail("creating the node: " + node.status().to_string());
  broker::Broker& bus = (*node)->broker();

  // Property golden records: MPAC wins for assessment values, the newest value elsewhere.
  auto options = match::GoldenRecordOptions::from_json(parse(R"({"kind": "property",
    "default": "most_recent",
    "attributes": {"assessed_value": {"rule": "source_priority", "sources": ["mpac"]},
                   "assessment_year": {"rule": "source_priority", "sources": ["mpac"]},
                   "property_class": {"rule": "source_priority", "sources": ["mpac"]},
                   "roll_number": {"rule": "source_priority", "sources": ["mpac", "tax"]}},
    "domain_events": [{"type": "property.assessment.updated",
                       "attributes": ["assessed_value", "assessment_year", "property_class"]}]})"));
  if (!options.ok()) return fail(options.status().to_string());
  auto store = match::GoldenRecordStore::open((*node)->database(), &bus, *options);
  if (!store.ok()) return fail("opening the golden records: " + store.status().to_string());
  // MDM: roll number first (deterministic), then address, owner and postal code by score.
  auto settings = match::MatchSettings::from_json(parse(R"json({"link_type": "link",
    "unique_id": "roll_number",
    "comparisons": [{"field": "address", "kind": "address"}, {"field": "owner_name", "kind": "name"},
                    {"field": "postal_code", "kind": "postal_code"}],
    "deterministic": [["roll_number"]],
    "blocking": [["roll_number"], ["postal_code", "civic(address)"],
                 ["street(address)", "civic(address)"]],
    "thresholds": {"match": 0.95, "review": 0.2}, "one_to_one": true})json"));
  if (!settings.ok()) return fail(settings.status().to_string());

  // The tax system's records become the first golden records.
  auto tax = match::Dataset::parse_csv(kTaxRecords, "tax");
  auto tax_engine = match::MatchEngine::create(*settings);
  if (!tax.ok() || !tax_engine.ok()) return fail("reading the tax records");
  auto loaded = match::apply_extract(*tax_engine, **store, *tax,
                                     extract_options("tax", "account", "updated_at"));
  if (!loaded.ok() || loaded->created != 7) return fail("loading the tax records");
  std::printf("tax system: %zu golden records created\n", loaded->created);

  // 6. The tax, planning and GIS modules consume the assessment updates from now on.
  std::atomic<int> consumed[3] = {0, 0, 0};
  std::vector<std::unique_ptr<broker::Subscription>> modules;
  const char* names[3] = {"property-tax", "planning", "gis"};
  for (int m = 0; m < 3; ++m) {
    broker::ConsumerGroupOptions group;
    group.group = names[m];
    group.topics = {"property.assessment.updated"};
    auto sub = bus.subscribe(group, [&consumed, m](const broker::DeliveredEvent&) {
      ++consumed[m];
      return Status();
    });
    if (!sub.ok()) return fail(sub.status().to_string());
    modules.push_back(std::move(*sub));
  }

  // 1-2. The extract through the mpac connector and the pipeline.
  const std::string extract = (dir / "mpac-2026.csv").string();
  std::ofstream(extract) << kMpacExtract;
  pipeline::PipelineOptions p;
  p.name = "mpac-assessment-sync";
  p.source = {"mpac", Json::object({{"path", extract}}), "assessments"};
  p.stages = {
      {"map_fields", "property model", parse(R"json({"fields": {
          "roll_number": {"from": "roll_number", "required": true},
          "address": {"expr": "concat(if(len(coalesce(unit_number, '')) > 0, unit_number + '-', ''), street_number, ' ', street_name)"},
          "municipality": {"from": "municipality"}, "province": {"default": "ON"},
          "postal_code": {"from": "postal_code"}, "owner_name": {"from": "owner_name"},
          "assessed_value": {"from": "current_value_assessment", "type": "integer", "required": true},
          "assessment_year": {"from": "tax_year", "type": "integer"},
          "property_class": {"from": "property_code", "type": "string"},
          "extract_date": {"from": "extract_date", "type": "date", "required": true}}})json")},
      {"normalize_address", "addresses",
       parse(R"({"street": "address", "municipality": "municipality", "province": "province",
                 "postal_code": "postal_code"})")},
      {"validate", "property schema", parse(R"({"schema": {"type": "object",
          "required": ["roll_number", "address", "assessed_value"],
          "properties": {"roll_number": {"type": "string", "pattern": "^[0-9]{19}$"},
                         "assessed_value": {"type": "integer", "minimum": 1}}}})")}};
  const std::string clean = (dir / "mpac-2026-clean.csv").string();
  p.sink = {"csv", Json::object({{"path", clean}}), "assessments"};
  p.error_report_dir = (dir / "report").string();
  pipeline::PipelineEnv env;  // checkpoints in the node's database, pipeline.run.* events
  env.state = &(*node)->database();
  env.broker = &bus;
  auto pipe = pipeline::Pipeline::create(p, env);
  if (!pipe.ok()) return fail("creating the pipeline: " + pipe.status().to_string());
  auto run = (*pipe)->run();
  if (!run.ok()) return fail("running the pipeline: " + run.status().to_string());
  std::printf("pipeline: read %lld, clean %lld, in the error report %lld\n",
              static_cast<long long>(run->rows_read), static_cast<long long>(run->rows_loaded),
              static_cast<long long>(run->rows_failed));
  for (const auto& e : run->errors) {
    std::printf("  line %lld (%s): %s\n", static_cast<long long>(e.error.position), e.stage.c_str(),
                e.error.reason.c_str());
  }
  if (run->rows_loaded != 7 || run->rows_failed != 1) return fail("expected 7 clean rows, 1 error");

  // 3-5. MDM links each record and applies it; the store publishes the assessment updates.
  auto mpac = match::Dataset::read_csv(clean, "mpac");
  auto engine = match::MatchEngine::create(*settings);
  if (!mpac.ok() || !engine.ok()) return fail("reading the clean extract");
  // The model (EM, unsupervised) learns from the extract against the tax records: with seven
  // golden records, training on apply_extract's own few candidate pairs would be too weak.
  auto trained = engine->train(*mpac, &*tax);
  if (!trained.ok()) return fail("training the match model: " + trained.status().to_string());
  auto applied = match::apply_extract(*engine, **store, *mpac,
                                      extract_options("mpac", "roll_number", "extract_date"));
  if (!applied.ok()) return fail("applying the extract: " + applied.status().to_string());
  for (const auto& o : applied->outcomes) {
    std::printf("  %s -> %s (%s, p=%.3f)%s\n", o.record_id.c_str(), o.entity_id.c_str(),
                std::string(match::to_string(o.link)).c_str(), o.match_probability,
                o.changed ? "" : " unchanged");
  }
  std::printf("mdm: %zu by roll number, %zu by address, %zu new; %zu golden records changed\n",
              applied->linked_by_rule, applied->linked_by_score, applied->created,
              applied->changed);
  if (applied->linked_by_rule != 5 || applied->linked_by_score != 1 || applied->created != 1) {
    return fail("expected 5 links by roll number, 1 by address and 1 new property");
  }
  // Heron Road's golden record now has MPAC's roll number and assessment.
  std::string heron;
  for (const auto& o : applied->outcomes) {
    if (o.record_id == "0614100200100060000") heron = o.entity_id;
  }
  auto golden = (**store).get(heron);
  if (!golden.ok() || golden->attributes.at("assessed_value").value != Json(362000) ||
      golden->attributes.at("roll_number").value != Json("0614100200100060000")) {
    return fail("14 Heron Road did not get MPAC's roll number and value");
  }

  // Six properties changed their assessment (four by roll, Heron Road, the new one): each of the
  // three modules gets six events.
  for (int i = 0; i < 500 && (consumed[0] < 6 || consumed[1] < 6 || consumed[2] < 6); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a seventh would show up here
  for (auto& m : modules) m->stop();
  std::printf("property.assessment.updated: tax %d, planning %d, gis %d\n", consumed[0].load(),
              consumed[1].load(), consumed[2].load());
  if (consumed[0] != 6 || consumed[1] != 6 || consumed[2] != 6) {
    return fail("each module should consume 6 assessment updates");
  }
  store->reset();
  node->reset();
  fs::remove_all(dir);
  std::printf("ok: one extract updated every module's property records\n");
  return 0;
}
