#include "storage/postgres.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "civicbus/storage/database.hpp"
#include "support/postgres.hpp"
#include "support/test_support.hpp"

namespace civicbus::storage {
namespace {

// One server for the whole binary (initdb costs a second or two); each test
// gets a database of its own. A server that fails to start fails every test
// that asks for it.
testing::Postgres& server() {
  static testing::Postgres postgres;
  return postgres;
}

std::string fresh_database() {
  static std::atomic<int> next{0};
  return server().create_database("pgtest_" + std::to_string(++next));
}

std::unique_ptr<Database> open_or_fail(const std::string& uri, std::size_t cache_size = 128) {
  auto db = open_postgres(PostgresOptions{.connection = uri, .statement_cache_size = cache_size});
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

detail::PostgresCacheStats cache_stats(Database& db) {
  auto* pg = dynamic_cast<detail::PostgresDatabase*>(&db);
  REQUIRE(pg != nullptr);
  return pg->statement_cache_stats();
}

void require_ok(const Status& status) {
  REQUIRE_MESSAGE(status.ok(), status.to_string());
}

TEST_CASE(
    "postgres: DDL and parameters of every type round-trip, blobs with "
    "NUL bytes too") {
  auto db = open_or_fail(fresh_database());
  CHECK(db->dialect() == Dialect::kPostgres);
  require_ok(
      db->execute_script("CREATE TABLE permit (id BIGSERIAL PRIMARY KEY, "
                         "roll_number TEXT, fee DOUBLE PRECISION, "
                         "units INTEGER, big BIGINT, scan BYTEA);\n"
                         "CREATE INDEX permit_roll ON permit (roll_number);"));

  const std::string blob("\0\x01\xff\0tail\0", 9);
  const std::string unicode = "Zürich — 許可";
  auto inserted = db->execute(
      "INSERT INTO permit (roll_number, fee, units, big, scan) "
      "VALUES (?, ?, ?, ?, ?)",
      {std::string_view(unicode), 12.5, std::int64_t{7}, std::numeric_limits<std::int64_t>::max(),
       Blob{blob}});
  REQUIRE_MESSAGE(inserted.ok(), inserted.status().to_string());
  CHECK(*inserted == 1);
  REQUIRE(db->execute("INSERT INTO permit (roll_number, fee, units, big, scan) VALUES "
                      "(?, ?, ?, ?, ?)",
                      {nullptr, nullptr, nullptr, std::numeric_limits<std::int64_t>::min(),
                       Blob{std::string_view()}})
              .ok());

  std::vector<std::string> seen;
  require_ok(db->query(
      "SELECT roll_number, fee, units, big, scan FROM permit ORDER BY id", {}, [&](const Row& row) {
        CHECK(row.column_count() == 5);
        if (seen.empty()) {
          CHECK(row.get_text(0) == unicode);
          CHECK(row.get_double(1) == 12.5);
          CHECK(row.get_int(2) == 7);
          CHECK(row.get_int(3) == std::numeric_limits<std::int64_t>::max());
          CHECK(row.get_blob(4) == blob);
          CHECK(row.get_blob(4).size() == 9);
          CHECK_FALSE(row.is_null(4));
        } else {
          CHECK(row.is_null(0));
          CHECK(row.is_null(1));
          CHECK(row.get_optional_int(2) == std::nullopt);
          CHECK(row.get_int(3) == std::numeric_limits<std::int64_t>::min());
          CHECK_FALSE(row.is_null(4));  // an empty blob is not NULL
          CHECK(row.get_blob(4).empty());
        }
        CHECK(row.is_null(99));  // out of range reads as NULL, as in the SQLite adapter
        seen.emplace_back(row.get_text(0));
        return true;
      }));
  CHECK(seen.size() == 2);

  // Blob parameters compare as bytea in WHERE clauses too.
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM permit WHERE scan = ?", {Blob{blob}}) == 1);
  // Untyped parameters take the type of their context; bigint against an
  // integer column works.
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM permit WHERE units = ? AND roll_number = ?",
                   {std::int64_t{7}, std::string_view(unicode)}) == 1);
  // Booleans and numerics from the server read as ints and doubles.
  CHECK(count_rows(*db, "SELECT 1 = 1") == 1);
  require_ok(
      db->query("SELECT CAST(2.75 AS NUMERIC), CAST('Infinity' AS FLOAT8)", {}, [](const Row& row) {
        CHECK(row.get_double(0) == 2.75);
        CHECK(row.get_int(0) == 2);
        CHECK(row.get_double(1) == std::numeric_limits<double>::infinity());
        return false;
      }));
}

TEST_CASE(
    "postgres: execute counts changed rows and a query stops when its "
    "callback says so") {
  auto db = open_or_fail(fresh_database());
  require_ok(db->execute_script("CREATE TABLE n (v INTEGER)"));
  auto inserted = db->execute("INSERT INTO n SELECT generate_series(1, 10)", {});
  REQUIRE(inserted.ok());
  CHECK(*inserted == 10);
  auto updated = db->execute("UPDATE n SET v = v + 100 WHERE v > ?", {std::int64_t{6}});
  REQUIRE(updated.ok());
  CHECK(*updated == 4);
  auto read = db->execute("SELECT * FROM n", {});
  REQUIRE(read.ok());
  CHECK(*read == 0);  // reads change nothing, as in the SQLite adapter

  int calls = 0;
  require_ok(db->query("SELECT v FROM n ORDER BY v", {}, [&](const Row& row) {
    ++calls;
    CHECK(row.get_int(0) == calls);
    return calls < 3;
  }));
  CHECK(calls == 3);

  // A callback may run statements of its own on the same connection.
  require_ok(db->query("SELECT v FROM n WHERE v <= 2", {}, [&](const Row& row) {
    REQUIRE(db->execute("INSERT INTO n VALUES (?)", {row.get_int(0) + 1000}).ok());
    return true;
  }));
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM n WHERE v > 1000") == 2);
}

TEST_CASE("postgres: transactions commit, roll back on error and nested calls join") {
  auto db = open_or_fail(fresh_database());
  require_ok(db->execute_script("CREATE TABLE t (k TEXT PRIMARY KEY)"));

  require_ok(db->transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(db->execute("INSERT INTO t VALUES (?)", {"a"}).status());
    return db->execute("INSERT INTO t VALUES (?)", {"b"}).status();
  }));
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM t") == 2);

  Status failed = db->transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(db->execute("INSERT INTO t VALUES (?)", {"c"}).status());
    return db->execute("INSERT INTO t VALUES (?)", {"a"}).status();  // duplicate
  });
  CHECK(failed.code() == ErrorCode::kAlreadyExists);
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM t WHERE k = 'c'") == 0);

  Status by_body = db->transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(db->execute("INSERT INTO t VALUES (?)", {"d"}).status());
    return aborted("changed my mind");
  });
  CHECK(by_body.code() == ErrorCode::kAborted);
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM t WHERE k = 'd'") == 0);

  // Nested: the inner body commits with the outer one.
  require_ok(db->transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(db->execute("INSERT INTO t VALUES (?)", {"e"}).status());
    return db->transaction(
        [&]() -> Status { return db->execute("INSERT INTO t VALUES (?)", {"f"}).status(); });
  }));
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM t WHERE k IN ('e', 'f')") == 2);

  // A failing nested body rolls the outer transaction back even if the outer
  // body ignores it.
  Status nested = db->transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(db->execute("INSERT INTO t VALUES (?)", {"g"}).status());
    db->transaction([] { return invalid_argument("inner refuses"); }).ignore_error();
    return {};
  });
  CHECK(nested.code() == ErrorCode::kInvalidArgument);
  CHECK(nested.message().find("nested transaction failed") != std::string::npos);
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM t WHERE k = 'g'") == 0);

  // A body that swallows a failed statement cannot commit: PostgreSQL aborted
  // the transaction.
  Status swallowed = db->transaction([&]() -> Status {
    db->execute("INSERT INTO t VALUES (?)", {"a"}).status().ignore_error();
    return {};
  });
  CHECK(swallowed.code() == ErrorCode::kFailedPrecondition);
  CHECK(swallowed.message().find("return the error") != std::string::npos);

  // The connection is usable again after every one of these.
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM t") == 4);
}

TEST_CASE(
    "postgres: errors carry the SQLSTATE, the server's message and a "
    "mapped code") {
  auto db = open_or_fail(fresh_database());
  require_ok(db->execute_script("CREATE TABLE u (k TEXT PRIMARY KEY, n INTEGER NOT NULL)"));
  REQUIRE(db->execute("INSERT INTO u VALUES (?, ?)", {"x", std::int64_t{1}}).ok());

  Status dup = db->execute("INSERT INTO u VALUES (?, ?)", {"x", std::int64_t{2}}).status();
  CHECK(dup.code() == ErrorCode::kAlreadyExists);
  CHECK(dup.message().find("SQLSTATE 23505") != std::string::npos);
  CHECK(dup.message().find("duplicate key") != std::string::npos);
  CHECK(dup.message().find("INSERT INTO u") != std::string::npos);

  Status not_null = db->execute("INSERT INTO u VALUES (?, ?)", {"y", nullptr}).status();
  CHECK(not_null.code() == ErrorCode::kFailedPrecondition);
  CHECK(not_null.message().find("23502") != std::string::npos);

  Status syntax = db->execute_script("SELEC 1");
  CHECK(syntax.code() == ErrorCode::kInvalidArgument);
  CHECK(syntax.message().find("SQLSTATE 42601") != std::string::npos);

  Status missing = db->execute("SELECT * FROM nowhere", {}).status();
  CHECK(missing.code() == ErrorCode::kInternal);
  CHECK(missing.message().find("42P01") != std::string::npos);

  Status arity = db->execute("SELECT ? + ?", {std::int64_t{1}}).status();
  CHECK(arity.code() == ErrorCode::kInvalidArgument);
  CHECK(arity.message().find("2 placeholder(s) but 1 parameter(s)") != std::string::npos);

  using detail::error_code_for_sqlstate;
  CHECK(error_code_for_sqlstate("40001") == ErrorCode::kAborted);
  CHECK(error_code_for_sqlstate("40P01") == ErrorCode::kAborted);
  CHECK(error_code_for_sqlstate("08006") == ErrorCode::kUnavailable);
  CHECK(error_code_for_sqlstate("57P01") == ErrorCode::kUnavailable);
  CHECK(error_code_for_sqlstate("53100") == ErrorCode::kIoError);
  CHECK(error_code_for_sqlstate("28P01") == ErrorCode::kUnauthenticated);
  CHECK(error_code_for_sqlstate("") == ErrorCode::kInternal);
}

TEST_CASE(
    "postgres: ? inside strings, identifiers and comments is not a "
    "placeholder") {
  using detail::rewrite_placeholders;
  CHECK(rewrite_placeholders("SELECT ?, '?', \"a?\" FROM t WHERE x = ?").sql ==
        "SELECT $1, '?', \"a?\" FROM t WHERE x = $2");
  CHECK(rewrite_placeholders("SELECT 'it''s ?', ? -- why?\n, ?").sql ==
        "SELECT 'it''s ?', $1 -- why?\n, $2");
  CHECK(rewrite_placeholders("SELECT /* a /* nested ? */ ? */ ?").sql ==
        "SELECT /* a /* nested ? */ ? */ $1");
  CHECK(rewrite_placeholders("SELECT E'\\'?', $$ ? $$, $q$ '?' $q$, ?").sql ==
        "SELECT E'\\'?', $$ ? $$, $q$ '?' $q$, $1");
  CHECK(rewrite_placeholders("SELECT ?").count == 1);
  CHECK(rewrite_placeholders("SELECT 'unterminated ?").count == 0);

  auto db = open_or_fail(fresh_database());
  std::string a, b, c;
  require_ok(db->query("SELECT 'why?', ? /* or ? */, \"what?\" FROM (SELECT ? AS \"what?\") s",
                       {"first", "second"}, [&](const Row& row) {
                         a = row.get_text(0);
                         b = row.get_text(1);
                         c = row.get_text(2);
                         return false;
                       }));
  CHECK(a == "why?");
  CHECK(b == "first");
  CHECK(c == "second");
}

TEST_CASE(
    "postgres: statements are prepared once, reused, evicted and "
    "re-prepared after DDL") {
  const std::string uri = fresh_database();
  auto db = open_or_fail(uri, /*cache_size=*/3);
  require_ok(db->execute_script("CREATE TABLE c (v INTEGER)"));
  for (int i = 0; i < 5; ++i) {
    REQUIRE(db->execute("INSERT INTO c VALUES (?)", {std::int64_t{i}}).ok());
  }
  auto stats = cache_stats(*db);
  CHECK(stats.misses == 1);
  CHECK(stats.hits == 4);
  // The server holds exactly one prepared statement for it.
  CHECK(count_rows(*db,
                   "SELECT COUNT(*) FROM pg_prepared_statements WHERE statement LIKE "
                   "'INSERT INTO c%'") == 1);

  // Other parameter types make another statement (the server fixes types at
  // PREPARE).
  REQUIRE(db->execute("INSERT INTO c VALUES (?)", {nullptr}).ok());
  CHECK(cache_stats(*db).misses == 3);  // + the pg_prepared_statements query

  for (int i = 0; i < 4; ++i) {
    REQUIRE(db->query_int("SELECT " + std::to_string(i)).ok());
  }
  stats = cache_stats(*db);
  CHECK(stats.size == 3);
  CHECK(stats.evictions >= 4);
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM pg_prepared_statements") <= 3);

  // SELECT * changes its result columns under ALTER TABLE: the stale plan is
  // prepared again.
  auto columns = [&] {
    int n = 0;
    require_ok(db->query("SELECT * FROM c LIMIT 1", {}, [&](const Row& row) {
      n = row.column_count();
      return false;
    }));
    return n;
  };
  CHECK(columns() == 1);
  auto other = open_or_fail(uri);
  require_ok(other->execute_script("ALTER TABLE c ADD COLUMN w TEXT"));
  CHECK(columns() == 2);

  // With the cache off every statement goes with its text.
  auto uncached = open_or_fail(uri, /*cache_size=*/0);
  CHECK(count_rows(*uncached, "SELECT COUNT(*) FROM c WHERE v >= ?", {std::int64_t{0}}) == 5);
  CHECK(cache_stats(*uncached).size == 0);
  CHECK(count_rows(*uncached, "SELECT COUNT(*) FROM pg_prepared_statements") == 0);
}

TEST_CASE("postgres: last_insert_id after serial, identity and RETURNING inserts") {
  const std::string uri = fresh_database();
  auto db = open_or_fail(uri);
  CHECK(db->last_insert_id() == 0);  // no sequence used yet: lastval() fails, we say 0
  require_ok(
      db->execute_script("CREATE TABLE s (id SERIAL PRIMARY KEY, name TEXT);"
                         "CREATE TABLE i (id BIGINT GENERATED ALWAYS AS "
                         "IDENTITY PRIMARY KEY, name TEXT);"
                         "CREATE TABLE plain (name TEXT)"));
  REQUIRE(db->execute("INSERT INTO s (name) VALUES (?)", {"one"}).ok());
  REQUIRE(db->execute("INSERT INTO s (name) VALUES (?)", {"two"}).ok());
  CHECK(db->last_insert_id() == 2);
  CHECK(db->last_insert_id() == 2);  // asked once, remembered

  REQUIRE(db->execute("INSERT INTO i (name) VALUES (?), (?), (?)", {"a", "b", "c"}).ok());
  CHECK(db->last_insert_id() == 3);

  REQUIRE(db->execute("INSERT INTO s (name) VALUES (?) RETURNING id", {"three"}).ok());
  CHECK(db->last_insert_id() == 3);

  // Inside a transaction, on a fresh connection where lastval() is not yet
  // defined, asking must not abort the caller's transaction.
  auto fresh = open_or_fail(uri);
  require_ok(fresh->transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(fresh->execute("INSERT INTO plain VALUES (?)", {"x"}).status());
    CHECK(fresh->last_insert_id() == 0);
    CIVICBUS_RETURN_IF_ERROR(fresh->execute("INSERT INTO s (name) VALUES (?)", {"four"}).status());
    CHECK(fresh->last_insert_id() == 4);
    return {};
  }));
  CHECK(count_rows(*fresh, "SELECT COUNT(*) FROM plain") == 1);
}

const std::vector<Migration> kMigrations = {
    {1, "permits table",
     "CREATE TABLE permit (id BIGSERIAL PRIMARY KEY, roll_number TEXT NOT "
     "NULL);"},
    {2, "fee column and index",
     "ALTER TABLE permit ADD COLUMN fee DOUBLE PRECISION;\n"
     "CREATE INDEX permit_roll ON permit (roll_number);"},
    {3, "seed", "INSERT INTO permit (roll_number, fee) VALUES ('R-0', 0);"},
};

TEST_CASE("postgres: migrate applies once and is idempotent") {
  auto db = open_or_fail(fresh_database());
  auto before = schema_version(*db, "permits");
  REQUIRE(before.ok());
  CHECK(*before == 0);
  require_ok(migrate(*db, "permits", kMigrations));
  require_ok(migrate(*db, "permits", kMigrations));
  auto after = schema_version(*db, "permits");
  REQUIRE(after.ok());
  CHECK(*after == 3);
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM permit") == 1);
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM civicbus_migrations WHERE component = ?",
                   {"permits"}) == 3);
  // applied_at holds microseconds since the epoch, beyond 32 bits.
  CHECK(count_rows(*db, "SELECT MIN(applied_at) FROM civicbus_migrations") > (1LL << 40));

  // A failing step rolls back, leaving the earlier version.
  std::vector<Migration> broken = kMigrations;
  broken.push_back({4, "bad", "ALTER TABLE permit ADD COLUMN x INTEGER; SELEC oops;"});
  Status failed = migrate(*db, "permits", broken);
  CHECK_FALSE(failed.ok());
  CHECK(failed.message().find("migration 4") != std::string::npos);
  CHECK(*schema_version(*db, "permits") == 3);
  CHECK(count_rows(*db,
                   "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = "
                   "'permit' AND column_name = 'x'") == 0);

  // A database newer than the code is refused.
  std::vector<Migration> older(kMigrations.begin(), kMigrations.begin() + 2);
  CHECK(migrate(*db, "permits", older).code() == ErrorCode::kFailedPrecondition);
}

TEST_CASE("postgres: two connections see each other's committed data only") {
  const std::string uri = fresh_database();
  auto writer = open_or_fail(uri);
  auto reader = open_or_fail(uri);
  require_ok(writer->execute_script("CREATE TABLE shared (v INTEGER)"));
  REQUIRE(writer->execute("INSERT INTO shared VALUES (?)", {std::int64_t{1}}).ok());
  CHECK(count_rows(*reader, "SELECT COUNT(*) FROM shared") == 1);

  require_ok(writer->transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(
        writer->execute("INSERT INTO shared VALUES (?)", {std::int64_t{2}}).status());
    CHECK(count_rows(*reader, "SELECT COUNT(*) FROM shared") == 1);  // not yet committed
    return {};
  }));
  CHECK(count_rows(*reader, "SELECT COUNT(*) FROM shared") == 2);
  REQUIRE(reader->execute("INSERT INTO shared VALUES (?)", {std::int64_t{3}}).ok());
  CHECK(count_rows(*writer, "SELECT SUM(v) FROM shared") == 6);
}

TEST_CASE("postgres: describe hides the password and bad targets fail clearly") {
  const std::string uri = fresh_database();  // trust auth: the password is ignored
  const std::string with_password = "postgresql://" + server().user() +
                                    ":s3cret@127.0.0.1:" + std::to_string(server().port()) +
                                    uri.substr(uri.rfind('/'));
  auto db = open_or_fail(with_password);
  CHECK(db->describe().find("s3cret") == std::string::npos);
  CHECK(db->describe().find("127.0.0.1:" + std::to_string(server().port())) != std::string::npos);
  auto failed = db->execute("SELEC", {});
  CHECK(failed.status().message().find("s3cret") == std::string::npos);

  // Nothing listens on a port that was free a moment ago.
  const int closed = testing::free_loopback_port();
  auto refused = open_postgres(PostgresOptions{
      .connection = "postgresql://civicbus:pw@127.0.0.1:" + std::to_string(closed) + "/x"});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == ErrorCode::kUnavailable);
  CHECK(refused.status().message().find("cannot connect to PostgreSQL at "
                                        "'postgresql://civicbus@127.0.0.1:" +
                                        std::to_string(closed) + "/x'") != std::string::npos);
  CHECK(refused.status().message().find("Connection refused") != std::string::npos);
  CHECK(refused.status().message().find("pw@") == std::string::npos);

  auto missing_db = open_postgres(PostgresOptions{.connection = server().uri("no_such_db")});
  CHECK(missing_db.status().code() == ErrorCode::kNotFound);

  CHECK(open_postgres(PostgresOptions{}).status().code() == ErrorCode::kInvalidArgument);
  CHECK(
      open_postgres(PostgresOptions{.connection = "postgresql://x", .connect_timeout_seconds = -1})
          .status()
          .code() == ErrorCode::kInvalidArgument);
  CHECK(open_postgres(PostgresOptions{.connection = "bogus_option=1"}).status().code() ==
        ErrorCode::kInvalidArgument);
}

TEST_CASE(
    "postgres: a connection dropped by the server is re-established "
    "between calls") {
  auto db = open_or_fail(fresh_database());
  REQUIRE(db->execute("SELECT ?", {std::int64_t{1}}).ok());
  auto pid = db->query_int("SELECT pg_backend_pid()");
  REQUIRE(pid.ok());
  auto other = open_or_fail(server().uri());
  // bigint parameters do not convert to integer implicitly in function calls:
  // cast.
  CHECK(count_rows(*other,
                   "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(CAST(? "
                   "AS INTEGER))) t",
                   {**pid}) == 1);
  // The first call after the drop fails with kUnavailable; the next one
  // reconnects.
  Status lost = db->execute("SELECT ?", {std::int64_t{2}}).status();
  CHECK(lost.code() == ErrorCode::kUnavailable);
  auto again = db->query_int("SELECT ? + 1", {std::int64_t{41}});
  REQUIRE_MESSAGE(again.ok(), again.status().to_string());
  CHECK(**again == 42);
}

TEST_CASE("postgres: rows report column names and a kind from each column's type") {
  auto db = open_or_fail(fresh_database());
  require_ok(db->execute_script(
      "CREATE TABLE kinds (s SMALLINT, i INTEGER, b BIGINT, r REAL, d DOUBLE PRECISION, "
      "n NUMERIC(8,2), t TEXT, blob BYTEA, flag BOOLEAN, day DATE);"
      "INSERT INTO kinds VALUES (1, 2, 3, 1.5, 2.25, 12.50, 'x', '\\x00ff', true, "
      "'2026-12-01');"
      "INSERT INTO kinds (t) VALUES (NULL);"));
  std::vector<std::vector<Row::Kind>> kinds;
  std::vector<std::string> names;
  require_ok(
      db->query("SELECT s, i, b, r, d, n, t, blob, flag, day AS issued FROM kinds ORDER BY s", {},
                [&](const Row& row) {
                  if (names.empty()) {
                    for (int c = 0; c < row.column_count(); ++c)
                      names.emplace_back(row.column_name(c));
                  }
                  std::vector<Row::Kind> k;
                  for (int c = 0; c < row.column_count(); ++c) k.push_back(row.kind(c));
                  kinds.push_back(std::move(k));
                  return true;
                }));
  CHECK(names ==
        std::vector<std::string>{"s", "i", "b", "r", "d", "n", "t", "blob", "flag", "issued"});
  REQUIRE(kinds.size() == 2);
  using K = Row::Kind;
  CHECK(kinds[0] == std::vector<K>{K::kInteger, K::kInteger, K::kInteger, K::kReal, K::kReal,
                                   K::kReal, K::kText, K::kBlob, K::kText, K::kText});
  // NULL is a kind of its own whatever the column's type.
  CHECK(kinds[1] == std::vector<K>(10, K::kNull));
}

}  // namespace
}  // namespace civicbus::storage
