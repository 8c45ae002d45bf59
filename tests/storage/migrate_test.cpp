#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "civicbus/storage/database.hpp"
#include "support/test_support.hpp"

namespace civicbus::storage {
namespace {

using civicbus::testing::TempDir;

std::unique_ptr<Database> open_or_fail(const SqliteOptions& options) {
  auto db = open_sqlite(options);
  REQUIRE_MESSAGE(db.ok(), db.status().to_string());
  return std::move(db).value();
}

std::int64_t count_rows(Database& db, std::string_view sql,
                        std::initializer_list<Value> params = {}) {
  auto count = db.query_int(sql, params);
  REQUIRE_MESSAGE(count.ok(), count.status().to_string());
  REQUIRE(count->has_value());
  return **count;
}

bool table_exists(Database& db, std::string_view name) {
  return count_rows(db, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                    {name}) == 1;
}

int version_of(Database& db, std::string_view component) {
  auto v = schema_version(db, component);
  REQUIRE_MESSAGE(v.ok(), v.status().to_string());
  return *v;
}

const std::vector<Migration> kPermitMigrations = {
    {1, "permits table",
     "CREATE TABLE permit (id INTEGER PRIMARY KEY, roll_number TEXT NOT NULL);"},
    {2, "fee column and index",
     "ALTER TABLE permit ADD COLUMN fee REAL;\n"
     "CREATE INDEX permit_roll ON permit (roll_number);"},
    {3, "seed", "INSERT INTO permit (roll_number, fee) VALUES ('R-0', 0);"},
};

TEST_CASE("a fresh database is at version 0 and schema_version creates nothing") {
  TempDir dir;
  auto db = open_or_fail(SqliteOptions{.path = dir.file("m.db")});
  CHECK(version_of(*db, "permits") == 0);
  CHECK_FALSE(table_exists(*db, "civicbus_migrations"));
}

TEST_CASE("migrations are applied once, in order, and recorded") {
  TempDir dir;
  auto db = open_or_fail(SqliteOptions{.path = dir.file("m.db")});
  REQUIRE(migrate(*db, "permits", kPermitMigrations).ok());
  CHECK(version_of(*db, "permits") == 3);
  CHECK(table_exists(*db, "permit"));
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM permit") == 1);

  // Idempotent: running again changes nothing (the seed row would be duplicated otherwise).
  REQUIRE(migrate(*db, "permits", kPermitMigrations).ok());
  REQUIRE(migrate(*db, "permits", kPermitMigrations).ok());
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM permit") == 1);
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM civicbus_migrations") == 3);

  std::vector<std::string> descriptions;
  REQUIRE(db->query("SELECT version, description, applied_at FROM civicbus_migrations "
                    "WHERE component = ? ORDER BY version",
                    {std::string_view("permits")},
                    [&](const Row& row) {
                      CHECK(row.get_int(0) == static_cast<std::int64_t>(descriptions.size()) + 1);
                      descriptions.emplace_back(row.get_text(1));
                      CHECK(row.get_int(2) > 1'600'000'000'000'000);  // microseconds
                      return true;
                    })
              .ok());
  CHECK(descriptions == std::vector<std::string>{"permits table", "fee column and index", "seed"});
}

TEST_CASE("new migrations are applied on top of old ones") {
  TempDir dir;
  const std::string path = dir.file("m.db");
  {
    auto db = open_or_fail(SqliteOptions{.path = path});
    REQUIRE(migrate(*db, "permits", std::span(kPermitMigrations).first(1)).ok());
    CHECK(version_of(*db, "permits") == 1);
  }
  auto db = open_or_fail(SqliteOptions{.path = path});
  REQUIRE(migrate(*db, "permits", kPermitMigrations).ok());
  CHECK(version_of(*db, "permits") == 3);
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM permit WHERE fee = 0") == 1);
}

TEST_CASE("components are versioned independently") {
  auto db = open_or_fail(SqliteOptions{.path = ":memory:"});
  const std::vector<Migration> other = {{1, "queue", "CREATE TABLE queue (x);"}};
  REQUIRE(migrate(*db, "permits", kPermitMigrations).ok());
  REQUIRE(migrate(*db, "queue", other).ok());
  CHECK(version_of(*db, "permits") == 3);
  CHECK(version_of(*db, "queue") == 1);
  CHECK(version_of(*db, "nobody") == 0);
  // An empty list is fine for a component that has nothing yet.
  CHECK(migrate(*db, "nobody", {}).ok());
}

TEST_CASE("a failing step keeps the earlier ones and rolls back its own") {
  TempDir dir;
  const std::string path = dir.file("m.db");
  auto db = open_or_fail(SqliteOptions{.path = path});
  std::vector<Migration> broken = {
      kPermitMigrations[0],
      kPermitMigrations[1],
      {3, "half good", "CREATE TABLE audit (x); INSERT INTO missing_table VALUES (1);"},
  };
  Status s = migrate(*db, "permits", broken);
  CHECK(s.code() == ErrorCode::kInternal);
  CHECK(s.message().find("migration 3 ('half good') of component 'permits'") != std::string::npos);
  CHECK(s.message().find("stays at version 2") != std::string::npos);
  CHECK(s.message().find("no such table: missing_table") != std::string::npos);
  CHECK(s.message().find(path) != std::string::npos);
  CHECK(version_of(*db, "permits") == 2);
  CHECK(table_exists(*db, "permit"));
  CHECK_FALSE(table_exists(*db, "audit"));  // the failing step's DDL was rolled back too
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM civicbus_migrations") == 2);

  // Fixed code resumes from where it stopped.
  broken[2].sql = "CREATE TABLE audit (x);";
  REQUIRE(migrate(*db, "permits", broken).ok());
  CHECK(version_of(*db, "permits") == 3);
  CHECK(table_exists(*db, "audit"));
}

TEST_CASE("a database ahead of the code is refused naming both versions") {
  TempDir dir;
  const std::string path = dir.file("m.db");
  auto db = open_or_fail(SqliteOptions{.path = path});
  REQUIRE(migrate(*db, "permits", kPermitMigrations).ok());
  Status s = migrate(*db, "permits", std::span(kPermitMigrations).first(2));
  CHECK(s.code() == ErrorCode::kFailedPrecondition);
  CHECK(s.message().find("schema version 3 of component 'permits'") != std::string::npos);
  CHECK(s.message().find("only up to version 2") != std::string::npos);
  CHECK(s.message().find(path) != std::string::npos);
  CHECK(version_of(*db, "permits") == 3);
}

TEST_CASE(
    "non-contiguous or misnumbered migration lists are refused before touching the database") {
  auto db = open_or_fail(SqliteOptions{.path = ":memory:"});
  const std::vector<std::vector<Migration>> bad = {
      {{2, "starts at two", "CREATE TABLE a (x);"}},
      {{1, "one", "CREATE TABLE a (x);"}, {3, "gap", "CREATE TABLE b (x);"}},
      {{1, "one", "CREATE TABLE a (x);"}, {1, "again", "CREATE TABLE b (x);"}},
      {{0, "zero", "CREATE TABLE a (x);"}},
  };
  for (const auto& list : bad) {
    Status s = migrate(*db, "permits", list);
    CHECK(s.code() == ErrorCode::kInvalidArgument);
    CHECK(s.message().find("'permits'") != std::string::npos);
  }
  CHECK(migrate(*db, "", kPermitMigrations).code() == ErrorCode::kInvalidArgument);
  CHECK_FALSE(table_exists(*db, "a"));
  CHECK_FALSE(table_exists(*db, "civicbus_migrations"));
}

TEST_CASE("two connections migrating at once apply each step exactly once") {
  TempDir dir;
  const std::string path = dir.file("m.db");
  { auto db = open_or_fail(SqliteOptions{.path = path}); }
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] {
      auto db = open_sqlite(SqliteOptions{.path = path});
      if (!db.ok() || !migrate(**db, "permits", kPermitMigrations).ok()) ++failures;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  auto db = open_or_fail(SqliteOptions{.path = path});
  CHECK(version_of(*db, "permits") == 3);
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM permit") == 1);
}

TEST_CASE("schema_version works on a read-only connection") {
  TempDir dir;
  const std::string path = dir.file("m.db");
  {
    auto db = open_or_fail(SqliteOptions{.path = path});
    REQUIRE(migrate(*db, "permits", kPermitMigrations).ok());
  }
  auto ro = open_or_fail(SqliteOptions{.path = path, .read_only = true});
  CHECK(version_of(*ro, "permits") == 3);
  CHECK(migrate(*ro, "permits", kPermitMigrations).ok());  // nothing to do, nothing written
}

}  // namespace
}  // namespace civicbus::storage
