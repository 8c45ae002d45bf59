// The AMANDA migration scenario of the spec (../shared/spec/000_*.txt): fifteen years of
// permits from a legacy AMANDA export, with the faults such exports have, go through
// extract -> transform types -> normalise addresses -> map status codes -> load, and the
// applicants through normalise -> dedupe -> load. The clean rows must load automatically (at
// least 99.5% of them); the faulty ones land in the error report with their line, field,
// value and reason.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <fstream>
#include <map>
#include <random>
#include <set>

#include "civicbus/pipeline/pipeline.hpp"
#include "civicbus/storage/database.hpp"
#include "support/test_support.hpp"

using namespace civicbus;
using namespace civicbus::pipeline;

namespace {

struct Street {
  const char* name;
  const char* type;  // as the legacy system kept it: mixed spellings
  const char* direction;
};

// Ottawa-area streets in the spellings clerks typed over 15 years.
constexpr Street kStreets[] = {
    {"Bank", "Street", ""},    {"Bank", "St.", ""},        {"Carling", "Ave", "W"},
    {"Carling", "Avenue", ""}, {"Merivale", "Rd", ""},     {"Riverside", "Drive", ""},
    {"Baseline", "Road", "E"}, {"Woodroffe", "Av", "N"},   {"Greenbank", "Rd.", "S"},
    {"Principale", "Rue", ""}, {"du Lac", "Ch", ""},       {"Elgin", "St", ""},
    {"Heron", "Road", ""},     {"Meadowlands", "Dr", "W"}, {"Prince of Wales", "Dr", ""},
};
constexpr const char* kPostal[] = {"K1S 3W7", "k2a1b3",  "K1Z 7K4", "K2E 6Z7", "K1G 0Z1",
                                   "K2C 3H1", "K1H 8M2", "K2G 4H5", "K1N 5T1", "K2B8J9"};
constexpr const char* kFirst[] = {"John",   "Marie",  "Ahmed",  "Li",      "Sophie",
                                  "Daniel", "Hélène", "Rajesh", "Olivia",  "François",
                                  "Chen",   "Aisha",  "Marc",   "Jessica", "Pierre"};
constexpr const char* kLast[] = {"Smith",  "Tremblay",  "Khan",     "Wong",   "Gagnon",
                                 "Roy",    "Côté",      "Patel",    "Martin", "Bouchard",
                                 "Nguyen", "MacDonald", "Lefebvre", "O'Neil", "Singh"};
// Second surnames of double-barrelled names (kept apart from kLast so that no two people are
// "Roy-Patel" and "Patel-Roy").
constexpr const char* kSecond[] = {"Lavoie",    "Fortin",   "Morin",    "Gauthier", "Ouellet",
                                   "Pelletier", "Bélanger", "Lévesque", "Bergeron", "Leblanc",
                                   "Paquette",  "Girard",   "Simard",   "Boucher",  "Caron"};

struct Generated {
  int folders = 0;
  std::set<int> faulty_folders;  // rows a migration must not load as they are
  int people = 0;
  std::map<int, int> person_of_record;  // PeopleRSN -> true person
};

Generated generate_export(const std::string& path, int folders) {
  storage::SqliteOptions so;
  so.path = path;
  auto db = storage::open_sqlite(so).value();
  std::string ddl =
      testing::read_file(std::string(CIVICBUS_SOURCE_DIR) + "/data/connect/amanda_schema.sql");
  REQUIRE(db->execute_script(ddl).ok());
  REQUIRE(db->execute_script(
                "INSERT INTO ValidStatus VALUES (1,'Application Received'),(2,'Issued'),"
                "(3,'Closed'),(4,'Cancelled'),(5,'Expired');"
                "INSERT INTO ValidPeople VALUES (1,'Applicant'),(2,'Owner'),(3,'Contractor');"
                "INSERT INTO ValidSub VALUES (10,'New Construction'),(20,'Renovation');")
              .ok());
  std::mt19937 rng(20261201);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  Generated g;
  g.folders = folders;

  // People: 70% of applicants come back for more permits, some typed again with variations.
  struct Person {
    std::string first, last, postal, phone;
  };
  std::vector<Person> persons;
  // Distinct people have distinct names here (two people with the same full name in the same
  // postal code are rare): single and double-barrelled surnames.
  for (int i = 0; i < folders / 3; ++i) {
    std::string last = kLast[(i / 15) % 15];
    if (i >= 225) last += std::string("-") + kSecond[(i / 225) % 15];
    persons.push_back({kFirst[i % 15], last, kPostal[pick(10)], fmt::format("613-555-{:04}", i)});
  }
  REQUIRE(db->transaction([&]() -> Status {
              for (int f = 1; f <= folders; ++f) {
                const int year = 2011 + (f - 1) * 15 / folders;  // 15 years, in order
                const Street& s = kStreets[pick(15)];
                std::string house = std::to_string(10 + pick(2900));
                std::string unit = pick(8) == 0 ? std::to_string(100 + pick(20)) : "";
                std::string postal = kPostal[pick(10)];
                std::string province = pick(3) == 0 ? "Ont." : (pick(2) ? "ON" : "Ontario");
                int status = 1 + pick(5);
                std::string in_date = fmt::format("{}-{:02}-{:02} 09:{:02}:00", year, 1 + pick(12),
                                                  1 + pick(28), pick(60));
                std::string issue_date =
                    fmt::format("{}-{:02}-{:02}", year, 1 + pick(12), 1 + pick(28));
                // Faults, about 5% of the folders, each of a kind such exports have:
                bool faulty = true;
                switch (pick(100)) {
                  case 0:
                    issue_date = fmt::format("{}-02-30", year);  // an impossible date
                    break;
                  case 1:
                    issue_date = "N/A";  // text where a date belongs
                    break;
                  case 2:
                    status = 9;  // a retired status code missing from ValidStatus
                    break;
                  case 3:
                    postal = "D1A 1A1";  // a postal code Canada Post never issues
                    break;
                  case 4:
                    house = "";  // no civic number
                    break;
                  default:
                    faulty = false;
                }
                if (faulty) g.faulty_folders.insert(f);
                const std::string stamp = in_date;
                CIVICBUS_RETURN_IF_ERROR(
                    db->execute(
                          "INSERT INTO Property (PropertyRSN, PropHouse, PropStreet, "
                          "PropStreetType, PropStreetDirection, PropUnit, PropCity, "
                          "PropProvince, PropPostal, PropertyRoll, StampDate) VALUES "
                          "(?,?,?,?,?,?,?,?,?,?,?)",
                          {std::int64_t{f}, std::string_view(house), s.name, s.type,
                           s.direction[0] ? storage::Value(s.direction) : storage::Value(nullptr),
                           unit.empty() ? storage::Value(nullptr)
                                        : storage::Value(std::string_view(unit)),
                           "Ottawa", std::string_view(province), std::string_view(postal),
                           std::string_view(fmt::format("0614{:015}", f)), std::string_view(stamp)})
                        .status());
                CIVICBUS_RETURN_IF_ERROR(
                    db->execute("INSERT INTO Folder (FolderRSN, CustomFolderNumber, FolderType, "
                                "SubCode, StatusCode, PropertyRSN, FolderName, InDate, IssueDate, "
                                "StampDate) VALUES (?,?,?,?,?,?,?,?,?,?)",
                                {std::int64_t{f},
                                 std::string_view(fmt::format("{}-{:06}-BP", year % 100, f)), "BP",
                                 std::int64_t{pick(2) ? 10 : 20}, std::int64_t{status},
                                 std::int64_t{f}, "permit", std::string_view(in_date),
                                 std::string_view(issue_date), std::string_view(stamp)})
                        .status());
                // The applicant: a returning person is often typed again as a new People row.
                int who = pick(static_cast<int>(persons.size()));
                const Person& p = persons[static_cast<std::size_t>(who)];
                int variant = pick(4);
                std::string first = p.first, last = p.last;
                if (variant == 1) {
                  for (auto& c : last)
                    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
                } else if (variant == 2 && last.size() > 4) {
                  last.erase(last.size() - 1);  // a typo: the last letter dropped
                }
                std::string phone = variant == 3 ? std::string() : p.phone;  // not asked again
                const int people_rsn = ++g.people;
                g.person_of_record[people_rsn] = who;
                CIVICBUS_RETURN_IF_ERROR(
                    db->execute("INSERT INTO People (PeopleRSN, NameFirst, NameLast, AddressLine1, "
                                "AddrCity, AddrPostal, Phone1, StampDate) VALUES (?,?,?,?,?,?,?,?)",
                                {std::int64_t{people_rsn}, std::string_view(first),
                                 std::string_view(last), "1 Main St", "Ottawa",
                                 std::string_view(p.postal),
                                 phone.empty() ? storage::Value(nullptr)
                                               : storage::Value(std::string_view(phone)),
                                 std::string_view(stamp)})
                        .status());
                CIVICBUS_RETURN_IF_ERROR(
                    db->execute(
                          "INSERT INTO FolderPeople (FolderRSN, PeopleRSN, PeopleCode, StampDate) "
                          "VALUES (?,?,1,?)",
                          {std::int64_t{f}, std::int64_t{people_rsn}, std::string_view(stamp)})
                        .status());
              }
              return Status();
            }).ok());
  return g;
}

std::int64_t count(storage::Database& db, const std::string& sql) {
  return db.query_int(sql)->value_or(-1);
}

}  // namespace

TEST_CASE("scenario: AMANDA migration - 15 years of permits and their applicants") {
  testing::TempDir dir;
  const int kFolders = 6000;
  Generated g = generate_export(dir.file("amanda-export.db"), kFolders);
  REQUIRE(g.faulty_folders.size() > 50);

  auto permits = PipelineOptions::from_json(
      Json::parse(fmt::format(R"json({{
    "name": "amanda-permits",
    "source": {{"connector": "amanda", "config": {{"dialect": "sqlite", "path": "{export}"}},
               "stream": "permits"}},
    "stages": [
      {{"type": "map_fields", "fields": {{
        "folder_rsn": {{"from": "folder_rsn", "type": "integer", "required": true}},
        "folder_number": {{"from": "folder_number"}},
        "status_code": {{"from": "status_code"}},
        "in_date": {{"from": "in_date"}},
        "issue_date": {{"from": "issue_date"}},
        "roll_number": {{"from": "roll_number"}},
        "street_line": {{"expr": "trim(concat(if(unit != null, concat(unit, '-'), ''), house, ' ', if(upper(street_type) == 'RUE' or upper(street_type) == 'CH', concat(street_type, ' ', street), concat(street, ' ', coalesce(street_type, ''))), ' ', coalesce(street_direction, '')))"}},
        "city": {{"from": "city"}}, "province": {{"from": "province"}},
        "postal_code": {{"from": "postal_code"}}}}}},
      {{"type": "types", "fields": {{
        "in_date": {{"type": "timestamp", "formats": ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d"], "required": true}},
        "issue_date": {{"type": "date", "formats": ["%Y-%m-%d", "%Y-%m-%d %H:%M:%S"]}}}},
        "time_zone": "America/Toronto"}},
      {{"type": "normalize_address", "street": "street_line", "municipality": "city",
        "province": "province", "postal_code": "postal_code"}},
      {{"type": "map_codes", "fields": {{"status_code": {{"target": "status",
        "table": {{"1": "applied", "2": "issued", "3": "closed", "4": "cancelled", "5": "expired"}}}}}}}}
    ],
    "sink": {{"connector": "sqlite", "config": {{"path": "{target}"}}, "stream": "permits",
             "mode": "upsert", "key": ["folder_rsn"]}},
    "batch_size": 1000,
    "error_report_dir": "{report}"
  }})json",
                              fmt::arg("export", dir.file("amanda-export.db")),
                              fmt::arg("target", dir.file("civic.db")),
                              fmt::arg("report", dir.file("permits-report"))))
          .value());
  REQUIRE_MESSAGE(permits.ok(), permits.status().to_string());
  auto run = Pipeline::create(*permits);
  REQUIRE_MESSAGE(run.ok(), run.status().to_string());
  auto report = (*run)->run();
  REQUIRE_MESSAGE(report.ok(), report.status().to_string());

  const std::int64_t clean = kFolders - static_cast<std::int64_t>(g.faulty_folders.size());
  storage::SqliteOptions so;
  so.path = dir.file("civic.db");
  auto civic = storage::open_sqlite(so).value();
  const std::int64_t loaded = count(*civic, "SELECT COUNT(*) FROM permits");
  // Faulty rows are not loaded as they are; clean rows load automatically.
  std::string faulty_list;
  for (int f : g.faulty_folders)
    faulty_list += (faulty_list.empty() ? "" : ",") + std::to_string(f);
  const std::int64_t faulty_loaded =
      count(*civic, "SELECT COUNT(*) FROM permits WHERE folder_rsn IN (" + faulty_list + ")");
  const double clean_rate =
      static_cast<double>(loaded - faulty_loaded) / static_cast<double>(clean);
  MESSAGE(
      fmt::format("AMANDA permits: {} folders, {} clean, {} faulty; loaded {} ({} faulty), "
                  "failed {}; clean rows loaded automatically: {:.3f}%",
                  kFolders, clean, g.faulty_folders.size(), loaded, faulty_loaded,
                  report->rows_failed, clean_rate * 100));
  CHECK(clean_rate >= 0.995);
  CHECK(faulty_loaded == 0);
  CHECK(report->rows_read == kFolders);
  CHECK(report->rows_loaded + report->rows_failed == kFolders);
  // What was loaded is normalised.
  CHECK(count(*civic,
              "SELECT COUNT(*) FROM permits WHERE postal_code NOT GLOB '[A-Z][0-9][A-Z] "
              "[0-9][A-Z][0-9]'") == 0);
  CHECK(count(*civic, "SELECT COUNT(*) FROM permits WHERE province <> 'ON'") == 0);
  CHECK(count(*civic,
              "SELECT COUNT(*) FROM permits WHERE status NOT IN "
              "('applied','issued','closed','cancelled','expired')") == 0);
  std::string types;
  REQUIRE(civic
              ->query("SELECT DISTINCT address_street_type FROM permits ORDER BY 1", {},
                      [&](const storage::Row& row) {
                        types +=
                            std::string(types.empty() ? "" : ",") + std::string(row.get_text(0));
                        return true;
                      })
              .ok());
  CHECK(types == "AVE,CH,DR,RD,RUE,ST");
  // Every faulty folder is in the error report, with its reason.
  auto errors = Json::parse(testing::read_file(report->error_json_path));
  REQUIRE(errors.ok());
  CHECK(static_cast<std::int64_t>(errors->size()) == report->rows_failed);
  std::set<std::string> reasons;
  for (const auto& e : errors->as_array()) reasons.insert(e.get_string("stage"));
  CHECK(reasons.count("types") == 1);
  CHECK(reasons.count("normalize_address") == 1);
  CHECK(reasons.count("map_codes") == 1);

  // Applicants: one row per People record, linked to one applicant id per real person.
  auto applicants = PipelineOptions::from_json(
      Json::parse(fmt::format(R"json({{
    "name": "amanda-applicants",
    "source": {{"connector": "amanda", "config": {{"dialect": "sqlite", "path": "{export}"}},
               "stream": "applicants"}},
    "stages": [
      {{"type": "map_fields", "fields": {{
        "people_rsn": {{"from": "people_rsn", "type": "integer", "required": true}},
        "folder_rsn": {{"from": "folder_rsn", "type": "integer"}},
        "full_name": {{"expr": "coalesce(organization, concat(first_name, ' ', last_name))"}},
        "phone": {{"from": "phone"}}, "postal_code": {{"from": "postal_code"}}}}}},
      {{"type": "dedupe",
        "comparisons": [
          {{"field": "full_name", "kind": "name",
            "levels": ["exact", {{"name": 0.95}}, {{"name": 0.85}}, {{"name": 0.7}}]}},
          {{"field": "phone", "kind": "phone"}},
          {{"field": "postal_code", "kind": "postal_code"}}],
        "blocking": [["postal_code"], ["phone"]],
        "thresholds": {{"match": 0.9, "review": 0.5}},
        "id_field": "applicant_id", "id_prefix": "A"}}
    ],
    "sink": {{"connector": "sqlite", "config": {{"path": "{target}"}}, "stream": "applicants",
             "mode": "upsert", "key": ["people_rsn"]}},
    "batch_size": 1000,
    "error_report_dir": "{report}"
  }})json",
                              fmt::arg("export", dir.file("amanda-export.db")),
                              fmt::arg("target", dir.file("civic.db")),
                              fmt::arg("report", dir.file("applicants-report"))))
          .value());
  REQUIRE_MESSAGE(applicants.ok(), applicants.status().to_string());
  auto arun = Pipeline::create(*applicants);
  REQUIRE_MESSAGE(arun.ok(), arun.status().to_string());
  auto areport = (*arun)->run();
  REQUIRE_MESSAGE(areport.ok(), areport.status().to_string());
  CHECK(areport->rows_loaded == g.people);

  // Pairwise quality of the links against the generator's truth.
  std::map<int, std::string> applicant_of;
  REQUIRE(civic
              ->query("SELECT people_rsn, applicant_id FROM applicants", {},
                      [&](const storage::Row& row) {
                        applicant_of[static_cast<int>(row.get_int(0))] =
                            std::string(row.get_text(1));
                        return true;
                      })
              .ok());
  std::map<int, std::vector<int>> by_person;
  for (const auto& [rsn, person] : g.person_of_record) by_person[person].push_back(rsn);
  std::int64_t true_pairs = 0, found_pairs = 0;
  for (const auto& [person, rsns] : by_person) {
    for (std::size_t i = 0; i < rsns.size(); ++i) {
      for (std::size_t j = i + 1; j < rsns.size(); ++j) {
        ++true_pairs;
        found_pairs += applicant_of[rsns[i]] == applicant_of[rsns[j]];
      }
    }
  }
  std::map<std::string, std::set<int>> people_of_applicant;
  for (const auto& [rsn, id] : applicant_of)
    people_of_applicant[id].insert(g.person_of_record[rsn]);
  std::int64_t mixed = 0;
  for (const auto& [id, persons] : people_of_applicant) {
    mixed += persons.size() > 1;
    if (persons.size() > 1 && mixed <= 3) {  // shown, to see what fooled the links
      std::string names;
      REQUIRE(
          civic
              ->query("SELECT full_name, phone, postal_code FROM applicants WHERE applicant_id = ?",
                      {std::string_view(id)},
                      [&](const storage::Row& row) {
                        names += fmt::format("[{} {} {}] ", row.get_text(0), row.get_text(1),
                                             row.get_text(2));
                        return true;
                      })
              .ok());
      MESSAGE("mixed: " << names);
    }
  }
  const double recall = static_cast<double>(found_pairs) / static_cast<double>(true_pairs);
  MESSAGE(
      fmt::format("AMANDA applicants: {} People rows, {} real persons, {} applicant ids; "
                  "pair recall {:.3f}; ids mixing two persons: {}",
                  g.people, by_person.size(), people_of_applicant.size(), recall, mixed));
  CHECK(recall >= 0.9);
  CHECK(mixed <= static_cast<std::int64_t>(people_of_applicant.size() / 100));
}
