// The amanda connector against a generated stand-in of an AMANDA export: the DDL of
// data/connect/amanda_schema.sql and a few folders, properties and people, in SQLite and in
// PostgreSQL.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>

#include "civicbus/connect/connector.hpp"
#include "civicbus/storage/database.hpp"
#include "connect/postgres_server.hpp"
#include "support/test_support.hpp"

using namespace civicbus;
using namespace civicbus::connect;

namespace {

std::unique_ptr<Connector> make_amanda() {
  auto c = ConnectorCatalog::builtin().create("amanda");
  REQUIRE_MESSAGE(c.ok(), c.status().to_string());
  return std::move(c).value();
}

void require_ok(const Status& s) {
  REQUIRE_MESSAGE(s.ok(), s.to_string());
}

// The stand-in schema and data, in SQL both dialects run.
void load_stand_in(storage::Database& db) {
  std::string ddl =
      testing::read_file(std::string(CIVICBUS_SOURCE_DIR) + "/data/connect/amanda_schema.sql");
  REQUIRE_FALSE(ddl.empty());
  require_ok(db.execute_script(ddl));
  require_ok(db.execute_script(R"sql(
    INSERT INTO ValidStatus VALUES (1, 'Open'), (2, 'Issued'), (3, 'Closed');
    INSERT INTO ValidSub VALUES (10, 'New Construction'), (11, 'Demolition');
    INSERT INTO ValidPeople VALUES (1, 'Applicant'), (2, 'Owner'), (3, 'Contractor');
    INSERT INTO Property (PropertyRSN, PropHouse, PropStreet, PropStreetType, PropCity,
                          PropProvince, PropPostal, PropertyRoll, StampDate) VALUES
      (100, '12', 'Main', 'St', 'Springfield', 'ON', 'K1A 0B1', '0614000100', '2026-01-01 08:00:00'),
      (101, '7', 'O''Brien', 'Cres', 'Springfield', 'ON', 'K1A 0B2', '0614000200', '2026-01-01 08:00:00');
    INSERT INTO Folder (FolderRSN, FolderYear, FolderSequence, CustomFolderNumber, FolderType,
                        SubCode, StatusCode, PropertyRSN, FolderName, FolderDescription, InDate,
                        IssueDate, FinalDate, StampDate) VALUES
      (1000, '26', '000001', '26-000001-BP', 'BP', 10, 2, 100, '12 MAIN ST', 'Two-storey house',
       '2026-01-02 09:00:00', '2026-01-10 09:00:00', NULL, '2026-01-10 09:00:00'),
      (1001, '26', '000002', '26-000002-DM', 'DM', 11, 1, 101, '7 O''BRIEN CRES', 'Garage',
       '2026-01-05 09:00:00', NULL, NULL, '2026-01-05 09:00:00'),
      (1002, '25', '000900', '25-000900-BP', 'BP', 10, 3, NULL, 'LOT 9', NULL,
       '2025-06-01 09:00:00', '2025-06-20 09:00:00', '2025-11-30 09:00:00', NULL);
    INSERT INTO People (PeopleRSN, NameFirst, NameLast, OrganizationName, Phone1, EmailAddress,
                        StampDate) VALUES
      (500, 'Ada', 'Lovelace', NULL, '613-555-0100', 'ada@example.org', '2026-01-02 09:00:00'),
      (501, NULL, NULL, 'Acme Builders', '613-555-0199', NULL, '2026-01-02 09:00:00');
    INSERT INTO FolderPeople (FolderRSN, PeopleRSN, PeopleCode, StampDate) VALUES
      (1000, 500, 1, '2026-01-02 09:00:00'),
      (1000, 501, 3, '2026-01-02 09:00:00'),
      (1001, 500, 2, '2026-01-05 09:00:00');
  )sql"));
}

// Records of `stream` as objects, in read order.
std::vector<Json> rows_of(const CollectingEmitter& out, std::string_view stream) {
  std::vector<Json> rows;
  for (const auto& b : out.batches) {
    if (b.stream != stream) continue;
    for (const auto& r : b.records) rows.push_back(b.to_object(r));
  }
  return rows;
}

const Json* find_row(const std::vector<Json>& rows, std::string_view key, std::int64_t value) {
  for (const auto& r : rows) {
    if (r.find(key) != nullptr && r.find(key)->is_int() && r.find(key)->as_int() == value)
      return &r;
  }
  return nullptr;
}

// Reads both streams, checks the joins, then changes a person and a property and checks that
// an incremental read returns exactly the rows they touch.
void check_streams(Connector& amanda, const ConnectorContext& ctx, storage::Database& db) {
  require_ok(amanda.check(ctx));
  auto streams = amanda.discover(ctx);
  REQUIRE_MESSAGE(streams.ok(), streams.status().to_string());
  REQUIRE(streams->size() == 2);
  CHECK((*streams)[0].name == "permits");
  CHECK((*streams)[0].primary_key == std::vector<std::string>{"folder_rsn"});
  CHECK((*streams)[0].cursor_field == "changed_at");
  CHECK((*streams)[1].name == "applicants");
  CHECK((*streams)[1].primary_key ==
        std::vector<std::string>{"folder_rsn", "people_rsn", "role_code"});

  CollectingEmitter out;
  require_ok(amanda.read(ctx, ReadRequest{}, out));
  auto permits = rows_of(out, "permits");
  REQUIRE(permits.size() == 3);
  // Cursor order: the folder without stamps first (its changed_at falls back to 1900).
  CHECK(permits[0]["folder_rsn"].as_int() == 1002);
  CHECK(permits[0]["changed_at"].as_string() == "1900-01-01 00:00:00");
  CHECK(permits[0]["street"].is_null());  // no property: a LEFT JOIN keeps the folder
  const Json* bp = find_row(permits, "folder_rsn", 1000);
  REQUIRE(bp != nullptr);
  CHECK(bp->get_string("folder_number") == "26-000001-BP");
  CHECK(bp->get_string("folder_type") == "BP");
  CHECK(bp->get_string("status") == "Issued");
  CHECK(bp->get_string("sub_type") == "New Construction");
  CHECK(bp->get_string("house") == "12");
  CHECK(bp->get_string("street") == "Main");
  CHECK(bp->get_string("street_type") == "St");
  CHECK(bp->get_string("postal_code") == "K1A 0B1");
  CHECK(bp->get_string("roll_number") == "0614000100");
  CHECK(bp->get_string("in_date") == "2026-01-02 09:00:00");
  CHECK(bp->get_string("issue_date") == "2026-01-10 09:00:00");
  CHECK(bp->find("final_date")->is_null());
  CHECK(find_row(permits, "folder_rsn", 1001)->get_string("street") == "O'Brien");

  auto applicants = rows_of(out, "applicants");
  REQUIRE(applicants.size() == 3);
  int ada_roles = 0;
  for (auto a : applicants) {
    if (a["people_rsn"].as_int() == 500) {
      ++ada_roles;
      CHECK(a.get_string("last_name") == "Lovelace");
      CHECK(a.get_string("email") == "ada@example.org");
    } else {
      CHECK(a.get_string("organization") == "Acme Builders");
      CHECK(a.get_string("role") == "Contractor");
    }
  }
  CHECK(ada_roles == 2);
  CHECK(out.states.at_pointer("/permits/cursor")->as_string() == "2026-01-10 09:00:00");

  // A new phone number for Ada and a renamed street: the rows they touch come again.
  require_ok(db.execute_script(
      "UPDATE People SET Phone1 = '613-555-0111', StampDate = '2026-02-01 12:00:00' "
      "WHERE PeopleRSN = 500;"
      "UPDATE Property SET PropStreet = 'OBrien', StampDate = '2026-02-01 12:00:00' "
      "WHERE PropertyRSN = 101;"));
  ReadRequest next;
  next.state = out.states;
  CollectingEmitter changed;
  require_ok(amanda.read(ctx, next, changed));
  auto p2 = rows_of(changed, "permits");
  REQUIRE(p2.size() == 1);
  CHECK(p2[0]["folder_rsn"].as_int() == 1001);
  CHECK(p2[0].get_string("street") == "OBrien");
  auto a2 = rows_of(changed, "applicants");
  REQUIRE(a2.size() == 2);
  for (auto a : a2) {
    CHECK(a["people_rsn"].as_int() == 500);
    CHECK(a.get_string("phone") == "613-555-0111");
  }
}

}  // namespace

TEST_CASE("amanda connector: permits and applicants from an SQLite export, incrementally") {
  testing::TempDir dir;
  storage::SqliteOptions o;
  o.path = dir.file("amanda.db");
  auto db = storage::open_sqlite(o);
  REQUIRE(db.ok());
  load_stand_in(**db);
  auto amanda = make_amanda();
  CHECK(amanda->spec().is_source);
  CHECK_FALSE(amanda->spec().is_sink);
  ConnectorContext ctx;
  ctx.config = Json::object({{"dialect", "sqlite"}, {"path", o.path}});
  REQUIRE(validate_config(amanda->spec(), ctx.config).ok());
  check_streams(*amanda, ctx, **db);

  // Filters, and the folder_rsn cursor for exports without stamps.
  ConnectorContext filtered;
  filtered.config = Json::object({{"dialect", "sqlite"},
                                  {"path", o.path},
                                  {"incremental_by", "folder_rsn"},
                                  {"folder_types", Json::array({"DM"})},
                                  {"people_codes", Json::array({1})}});
  CollectingEmitter out;
  require_ok(amanda->read(filtered, ReadRequest{}, out));
  auto permits = rows_of(out, "permits");
  REQUIRE(permits.size() == 1);
  CHECK(permits[0]["folder_rsn"].as_int() == 1001);
  CHECK(out.states.at_pointer("/permits/cursor")->as_int() == 1001);
  auto applicants = rows_of(out, "applicants");
  REQUIRE(applicants.size() == 1);
  CHECK(applicants[0].get_string("role") == "Applicant");
}

TEST_CASE("amanda connector: a database without the AMANDA tables is refused by name") {
  testing::TempDir dir;
  storage::SqliteOptions o;
  o.path = dir.file("other.db");
  auto db = storage::open_sqlite(o);
  REQUIRE(db.ok());
  require_ok((*db)->execute_script("CREATE TABLE Folder (FolderRSN INTEGER PRIMARY KEY)"));
  auto amanda = make_amanda();
  ConnectorContext ctx;
  ctx.config = Json::object({{"dialect", "sqlite"}, {"path", o.path}});
  Status s = amanda->check(ctx);
  CHECK(s.code() == ErrorCode::kNotFound);
  CHECK(s.message().find("Property") != std::string::npos);

  ConnectorContext no_path;
  no_path.config = Json::object({{"dialect", "sqlite"}});
  CHECK(amanda->check(no_path).code() == ErrorCode::kInvalidArgument);
  CHECK_FALSE(validate_config(amanda->spec(), Json::object({{"dialect", "oracle"}})).ok());
  // A missing file is not created by a source.
  ConnectorContext missing;
  missing.config = Json::object({{"dialect", "sqlite"}, {"path", dir.file("none.db")}});
  CHECK_FALSE(amanda->check(missing).ok());
  CHECK_FALSE(std::filesystem::exists(dir.file("none.db")));
}

TEST_CASE("amanda connector: the same streams from a PostgreSQL export") {
  std::string uri = test::fresh_postgres_database("amanda");
  auto db = storage::open_postgres(storage::PostgresOptions{.connection = uri});
  REQUIRE_MESSAGE(db.ok(), db.status().to_string());
  load_stand_in(**db);
  auto amanda = make_amanda();
  ConnectorContext ctx;
  ctx.config = Json::object({{"dialect", "postgres"}, {"uri", uri}});
  check_streams(*amanda, ctx, **db);
}
