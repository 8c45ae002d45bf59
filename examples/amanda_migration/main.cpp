// amanda_migration: the spec's "Legacy System Migration (AMANDA -> Permits)" scenario on a small
// export: twelve permit folders from 2011-2025 and their applicants, in an SQLite file laid out
// as the built-in `amanda` connector expects (data/connect/amanda_schema.sql, given as the first
// argument). Two pipelines migrate them. Permits: extract -> map to the permits model -> convert
// dates -> normalise addresses -> map status codes -> validate -> load. Applicants: extract ->
// map -> deduplicate (people typed again for each permit get one applicant id) -> load. Five
// folders carry the faults such exports have (an impossible date, text in a date, a retired
// status code, a postal code Canada Post never issues, no civic number): they land in the error
// report with line, field and reason, and the clean ones load. Exits non-zero when an outcome
// differs from the scenario's.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "civicbus/pipeline/pipeline.hpp"
#include "civicbus/storage/database.hpp"

using namespace civicbus;
namespace fs = std::filesystem;

namespace {

// The legacy data: codes, properties, folders (permits), people and who applied for what.
constexpr const char* kExport = R"sql(
INSERT INTO ValidStatus VALUES (1,'Application Received'),(2,'Issued'),(3,'Closed'),(5,'Expired');
INSERT INTO ValidPeople VALUES (1,'Applicant');
INSERT INTO ValidSub VALUES (10,'New Construction'),(20,'Renovation');
INSERT INTO Property (PropertyRSN,PropHouse,PropStreet,PropStreetType,PropStreetDirection,PropUnit,
  PropCity,PropProvince,PropPostal,PropertyRoll,StampDate) VALUES
 (1,'10','Bank','Street',NULL,NULL,'Ottawa','ON','K1S 3W7','061410020010001','2011-03-02 09:00:00'),
 (2,'1200','Carling','Ave','W',NULL,'Ottawa','Ont.','k1z7k4','061410020010002','2012-05-10 10:00:00'),
 (3,'55','Principale','Rue',NULL,'4','Ottawa','Ontario','K1N 6N5','061410020010003','2013-07-01 11:00:00'),
 (4,'88','Riverside','Drive',NULL,NULL,'Ottawa','ON','K1H 8M2','061410020010004','2014-08-15 09:30:00'),
 (5,'14','Heron','Road','E',NULL,'Ottawa','ON','K1G 0Z1','061410020010005','2015-02-20 14:00:00'),
 (6,'600','Bronson','Av.',NULL,NULL,'Ottawa','ON','D1A 1A1','061410020010006','2016-06-06 08:00:00'),
 (7,'','Elgin','St',NULL,NULL,'Ottawa','ON','K2P 1L5','061410020010007','2022-04-05 10:00:00'),
 (8,'31','Main','St.',NULL,'2','Ottawa','ON','K1S 1B2','061410020010008','2018-10-10 10:10:00');
INSERT INTO Folder (FolderRSN,CustomFolderNumber,FolderType,SubCode,StatusCode,PropertyRSN,
  FolderName,InDate,IssueDate,StampDate) VALUES
 (101,'11-000101-BP','BP',10,3,1,'house','2011-03-01 09:00:00','2011-04-12','2011-03-02 09:00:00'),
 (102,'12-000102-BP','BP',20,3,2,'deck','2012-05-09 10:00:00','2012-06-01','2012-05-10 10:00:00'),
 (103,'13-000103-BP','BP',20,5,3,'porch','2013-06-30 11:00:00','2013-07-20','2013-07-01 11:00:00'),
 (104,'14-000104-BP','BP',10,2,4,'garage','2014-08-14 09:30:00','2014-09-02','2014-08-15 09:30:00'),
 (105,'15-000105-BP','BP',20,3,5,'roof','2015-02-19 14:00:00','2015-02-30','2015-02-20 14:00:00'),
 (106,'16-000106-BP','BP',10,3,6,'addition','2016-06-05 08:00:00','2016-07-01','2016-06-06 08:00:00'),
 (107,'17-000107-BP','BP',20,9,2,'shed','2017-09-08 09:09:00','2017-10-01','2017-09-09 09:09:00'),
 (108,'18-000108-BP','BP',20,3,8,'kitchen','2018-10-09 10:10:00','N/A','2018-10-10 10:10:00'),
 (109,'20-000109-BP','BP',20,3,1,'basement','2020-01-14 09:00:00','2020-02-03','2020-01-15 09:00:00'),
 (110,'22-000110-BP','BP',20,2,7,'pool','2022-04-04 10:00:00','2022-05-01','2022-04-05 10:00:00'),
 (111,'24-000111-BP','BP',10,1,4,'duplex','2024-11-01 09:30:00',NULL,'2024-11-02 09:30:00'),
 (112,'25-000112-BP','BP',20,1,8,'bath','2025-03-03 10:10:00',NULL,'2025-03-04 10:10:00');
INSERT INTO People (PeopleRSN,NameFirst,NameLast,AddrPostal,Phone1,StampDate) VALUES
 (1,'Marie','Tremblay','K1S 3W7','613-555-0101','2011-03-02 09:00:00'),
 (2,'Liam','O''Brien','K1Z 7K4','613-555-0102','2012-05-10 10:00:00'),
 (3,'Hélène','Côté','K1N 6N5','613-555-0103','2013-07-01 11:00:00'),
 (4,'Jean','Gagnon','K1H 8M2','613-555-0104','2014-08-15 09:30:00'),
 (5,'Wei','Chen','K1G 0Z1','613-555-0105','2015-02-20 14:00:00'),
 (6,'Sofia','Rossi','K1R 6J3','613-555-0106','2016-06-06 08:00:00'),
 (7,'Noah','Martin','K2P 1L5','613-555-0107','2017-09-09 09:09:00'),
 (8,'Aisha','Khan','K1S 1B2','613-555-0108','2018-10-10 10:10:00'),
 (9,'Marie','TREMBLAY','K1S 3W7','613-555-0101','2020-01-15 09:00:00'),
 (10,'Liam','OBrien','K1Z 7K4',NULL,'2022-04-05 10:00:00'),
 (11,'Jean','Gagnon','K1H 8M2','613-555-0104','2024-11-02 09:30:00'),
 (12,'Aisha','Khan','K1S 1B2',NULL,'2025-03-04 10:10:00');
INSERT INTO FolderPeople (FolderRSN,PeopleRSN,PeopleCode,StampDate)
  SELECT 100 + PeopleRSN, PeopleRSN, 1, StampDate FROM People;
)sql";

int fail(const std::string& what) {
  std::fprintf(stderr, "amanda_migration: %s\n", what.c_str());
  return 1;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2)
    return fail("usage: example_amanda_migration path/to/data/connect/amanda_schema.sql");
  const fs::path dir =
      fs::temp_directory_path() / ("civicbus-amanda-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string export_db = (dir / "amanda-export.db").string();
  const std::string target_db = (dir / "permits.db").string();
  {
    storage::SqliteOptions so;
    so.path = export_db;
    auto db = storage::open_sqlite(so);
    if (!db.ok()) return fail(db.status().to_string());
    if (Status s = (*db)->execute_script(read_file(argv[1]) + kExport); !s.ok()) {
      return fail("writing the export: " + s.to_string());
    }
  }

  auto run = [&](const char* name, const std::string& text) -> Result<pipeline::RunReport> {
    CIVICBUS_ASSIGN_OR_RETURN(Json json, Json::parse(text));
    CIVICBUS_ASSIGN_OR_RETURN(auto options, pipeline::PipelineOptions::from_json(json));
    pipeline::PipelineEnv env;  // progress after each committed batch of 5 rows
    env.on_progress = [name](const pipeline::Progress& p) {
      std::printf("  %s: batch %lld, %lld read, %lld loaded, %lld failed\n", name,
                  static_cast<long long>(p.batches), static_cast<long long>(p.rows_read),
                  static_cast<long long>(p.rows_loaded), static_cast<long long>(p.rows_failed));
    };
    CIVICBUS_ASSIGN_OR_RETURN(auto pipe, pipeline::Pipeline::create(options, env));
    return pipe->run();
  };
  auto in_dir = [&](std::string text) {
    for (auto at = text.find("$DIR"); at != std::string::npos; at = text.find("$DIR"))
      text.replace(at, 4, dir.string());
    return text;
  };

  // 2, 4-6. Permits: map, convert types, normalise addresses, map status codes, validate, load.
  auto permits = run("permits", in_dir(R"json({"name": "amanda-permits",
    "source": {"connector": "amanda", "config": {"dialect": "sqlite", "path": "$DIR/amanda-export.db"},
               "stream": "permits"},
    "stages": [
      {"type": "map_fields", "fields": {
        "folder_rsn": {"from": "folder_rsn", "type": "integer", "required": true},
        "folder_number": {"from": "folder_number"}, "status_code": {"from": "status_code"},
        "in_date": {"from": "in_date"}, "issue_date": {"from": "issue_date"},
        "street_line": {"expr": "trim(concat(if(unit != null, concat(unit, '-'), ''), house, ' ', if(upper(street_type) == 'RUE', concat(street_type, ' ', street), concat(street, ' ', coalesce(street_type, ''))), ' ', coalesce(street_direction, '')))"},
        "city": {"from": "city"}, "province": {"from": "province"}, "postal_code": {"from": "postal_code"}}},
      {"type": "types", "time_zone": "America/Toronto", "fields": {
        "in_date": {"type": "timestamp", "formats": ["%Y-%m-%d %H:%M:%S"], "required": true},
        "issue_date": {"type": "date", "formats": ["%Y-%m-%d"]}}},
      {"type": "normalize_address", "street": "street_line", "municipality": "city",
       "province": "province", "postal_code": "postal_code"},
      {"type": "map_codes", "fields": {"status_code": {"target": "status",
        "table": {"1": "applied", "2": "issued", "3": "closed", "5": "expired"}}}},
      {"type": "validate", "schema": {"type": "object", "required": ["folder_number"],
        "properties": {"folder_number": {"type": "string", "pattern": "^[0-9]{2}-[0-9]{6}-BP$"}}}}],
    "sink": {"connector": "sqlite", "config": {"path": "$DIR/permits.db"}, "stream": "permits",
             "mode": "upsert", "key": ["folder_rsn"]},
    "batch_size": 5, "error_report_dir": "$DIR/permits-report"})json"));
  if (!permits.ok()) return fail("permits pipeline: " + permits.status().to_string());
  std::printf("permits: %lld read, %lld loaded, %lld in the error report (%.1f%% automatic)\n",
              static_cast<long long>(permits->rows_read),
              static_cast<long long>(permits->rows_loaded),
              static_cast<long long>(permits->rows_failed), permits->success_rate() * 100);
  std::set<long long> failed_lines;
  std::vector<pipeline::ErrorEntry> errors = permits->errors;
  std::sort(errors.begin(), errors.end(),
            [](const auto& a, const auto& b) { return a.error.position < b.error.position; });
  for (const auto& e : errors) {
    std::printf("  row %lld, %s, field '%s' = '%s': %s\n", static_cast<long long>(e.error.position),
                e.stage.c_str(), e.error.field.c_str(), e.error.value.c_str(),
                e.error.reason.c_str());
    failed_lines.insert(e.error.position);
  }
  std::printf("  (report files: %s)\n", permits->error_csv_path.c_str());
  if (permits->rows_loaded != 7 || permits->rows_failed != 5 || failed_lines.size() != 5 ||
      !fs::exists(permits->error_csv_path)) {
    return fail("expected 7 permits loaded and 5 in the error report");
  }

  // 2-3. Applicants: map, then deduplicate people typed again for later permits.
  auto applicants = run("applicants", in_dir(R"json({"name": "amanda-applicants",
    "source": {"connector": "amanda", "config": {"dialect": "sqlite", "path": "$DIR/amanda-export.db"},
               "stream": "applicants"},
    "stages": [
      {"type": "map_fields", "fields": {
        "people_rsn": {"from": "people_rsn", "type": "integer", "required": true},
        "folder_rsn": {"from": "folder_rsn", "type": "integer"},
        "full_name": {"expr": "concat(first_name, ' ', last_name)"},
        "phone": {"from": "phone"}, "postal_code": {"from": "postal_code"}}},
      {"type": "dedupe", "id_field": "applicant_id", "id_prefix": "A",
       "comparisons": [{"field": "full_name", "kind": "name"}, {"field": "phone", "kind": "phone"},
                       {"field": "postal_code", "kind": "postal_code"}],
       "blocking": [["postal_code"], ["phone"]],
       "deterministic": [["phone"], ["full_name", "postal_code"]],
       "thresholds": {"match": 0.9, "review": 0.5}}],
    "sink": {"connector": "sqlite", "config": {"path": "$DIR/permits.db"}, "stream": "applicants",
             "mode": "upsert", "key": ["people_rsn"]},
    "batch_size": 100, "error_report_dir": "$DIR/applicants-report"})json"));
  if (!applicants.ok()) return fail("applicants pipeline: " + applicants.status().to_string());

  storage::SqliteOptions so;
  so.path = target_db;
  auto db = storage::open_sqlite(so);
  if (!db.ok()) return fail(db.status().to_string());
  const auto people = (*db)->query_int("SELECT COUNT(DISTINCT applicant_id) FROM applicants");
  const auto marie = (*db)->query_int(
      "SELECT COUNT(DISTINCT applicant_id) FROM applicants WHERE people_rsn IN (1, 9)");
  const auto statuses = (*db)->query_int(
      "SELECT COUNT(*) FROM permits WHERE status IN ('applied','issued','closed','expired')");
  std::printf("applicants: %lld People rows loaded as %lld applicants\n",
              static_cast<long long>(applicants->rows_loaded),
              static_cast<long long>(people.ok() ? people->value_or(-1) : -1));
  if (applicants->rows_loaded != 12 || !people.ok() || people->value_or(-1) != 8 ||
      marie->value_or(-1) != 1 || statuses->value_or(-1) != 7) {
    return fail("expected 12 applicant rows for 8 people and every permit's status mapped");
  }
  fs::remove_all(dir);
  std::printf("ok: clean permits and applicants migrated, faulty rows flagged for review\n");
  return 0;
}
