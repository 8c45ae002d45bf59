#include "storage/sqlite_database.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <stdexcept>
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

std::unique_ptr<Database> open_file(const std::string& path) {
  return open_or_fail(SqliteOptions{.path = path});
}

std::int64_t count_rows(Database& db, std::string_view sql,
                        std::initializer_list<Value> params = {}) {
  auto count = db.query_int(sql, params);
  REQUIRE_MESSAGE(count.ok(), count.status().to_string());
  REQUIRE(count->has_value());
  return **count;
}

std::string pragma_text(Database& db, std::string_view pragma) {
  std::string out;
  REQUIRE(db.query(pragma, {}, [&](const Row& row) {
              out = row.get_text(0);
              return false;
            }).ok());
  return out;
}

detail::StatementCacheStats cache_stats(Database& db) {
  auto* sqlite = dynamic_cast<detail::SqliteDatabase*>(&db);
  REQUIRE(sqlite != nullptr);
  return sqlite->statement_cache_stats();
}

void write_bytes(const std::string& path, std::size_t offset, const std::string& bytes) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  REQUIRE(f.good());
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

TEST_CASE("open applies the configured pragmas") {
  TempDir dir;
  const std::string path = dir.file("pragmas.db");
  auto db = open_or_fail(SqliteOptions{.path = path, .cache_size_kib = 4096});
  CHECK(db->dialect() == Dialect::kSqlite);
  CHECK(db->describe() == path);
  CHECK(pragma_text(*db, "PRAGMA journal_mode") == "wal");
  CHECK(count_rows(*db, "PRAGMA synchronous") == 2);  // FULL
  CHECK(count_rows(*db, "PRAGMA foreign_keys") == 1);
  CHECK(count_rows(*db, "PRAGMA temp_store") == 2);  // MEMORY
  CHECK(count_rows(*db, "PRAGMA cache_size") == -4096);
  CHECK(count_rows(*db, "PRAGMA busy_timeout") == 5000);

  auto normal = open_or_fail(
      SqliteOptions{.path = dir.file("normal.db"), .synchronous = Synchronous::kNormal});
  CHECK(count_rows(*normal, "PRAGMA synchronous") == 1);
}

TEST_CASE("in-memory database works and ignores wal") {
  auto db = open_or_fail(SqliteOptions{.path = ":memory:"});
  CHECK(pragma_text(*db, "PRAGMA journal_mode") == "memory");
  REQUIRE(db->execute_script("CREATE TABLE t(x)").ok());
  CHECK(db->execute("INSERT INTO t VALUES (?)", {std::int64_t{1}}).value_or(-1) == 1);
}

TEST_CASE("invalid options are refused") {
  CHECK(open_sqlite(SqliteOptions{}).status().code() == ErrorCode::kInvalidArgument);
  CHECK(open_sqlite(SqliteOptions{.path = ":memory:", .busy_timeout_ms = -1}).status().code() ==
        ErrorCode::kInvalidArgument);
  TempDir dir;
  auto missing =
      open_sqlite(SqliteOptions{.path = dir.file("nope.db"), .create_if_missing = false});
  CHECK(missing.status().code() == ErrorCode::kNotFound);
  CHECK(missing.status().message().find(dir.file("nope.db")) != std::string::npos);
  auto no_dir = open_sqlite(SqliteOptions{.path = dir.file("no/such/dir.db")});
  CHECK(no_dir.status().code() == ErrorCode::kIoError);
  CHECK(no_dir.status().message().find("no/such/dir.db") != std::string::npos);
}

TEST_CASE("create, read, update and delete") {
  TempDir dir;
  auto db = open_file(dir.file("crud.db"));
  REQUIRE(db->execute_script(R"(
      CREATE TABLE permit (id INTEGER PRIMARY KEY, roll_number TEXT NOT NULL, fee REAL);
      -- a comment between statements
      CREATE INDEX permit_roll ON permit (roll_number);)")
              .ok());

  CHECK(db->execute("INSERT INTO permit (roll_number, fee) VALUES (?, ?)",
                    {std::string_view("R-1"), 12.5})
            .value_or(-1) == 1);
  const std::int64_t first = db->last_insert_id();
  CHECK(db->execute("INSERT INTO permit (roll_number, fee) VALUES (?, ?)",
                    {std::string_view("R-2"), nullptr})
            .value_or(-1) == 1);
  CHECK(db->last_insert_id() == first + 1);

  std::vector<std::string> rolls;
  REQUIRE(db->query("SELECT roll_number, fee FROM permit ORDER BY id", {}, [&](const Row& row) {
              CHECK(row.column_count() == 2);
              rolls.emplace_back(row.get_text(0));
              return true;
            }).ok());
  CHECK(rolls == std::vector<std::string>{"R-1", "R-2"});

  CHECK(db->execute("UPDATE permit SET fee = ? WHERE fee IS NULL", {7.0}).value_or(-1) == 1);
  CHECK(db->execute("UPDATE permit SET fee = fee + 1", {}).value_or(-1) == 2);
  // A read through execute() reports no changes even right after a write.
  CHECK(db->execute("SELECT * FROM permit", {}).value_or(-1) == 0);
  CHECK(db->execute("DELETE FROM permit WHERE roll_number = ?", {std::string_view("R-1")})
            .value_or(-1) == 1);
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM permit") == 1);
  CHECK(db->execute("DELETE FROM permit WHERE id = ?", {std::int64_t{999}}).value_or(-1) == 0);
}

TEST_CASE("values round-trip with their types") {
  auto db = open_or_fail(SqliteOptions{.path = ":memory:"});
  REQUIRE(db->execute_script("CREATE TABLE v (id INTEGER PRIMARY KEY, x)").ok());

  const std::string blob_bytes("\0a\0\xff\x01\0", 6);
  const std::string text_with_nul("ab\0cd", 5);
  const std::vector<Value> values = {
      nullptr,
      std::int64_t{0},
      std::numeric_limits<std::int64_t>::min(),
      std::numeric_limits<std::int64_t>::max(),
      -1.25,
      1e300,
      std::string_view("grüße, 東京"),
      std::string_view(""),
      std::string_view(),  // a null data pointer is still the empty string, not NULL
      std::string_view(text_with_nul),
      Blob{blob_bytes},
      Blob{std::string_view()},
  };
  for (std::size_t i = 0; i < values.size(); ++i) {
    REQUIRE(db->execute("INSERT INTO v (id, x) VALUES (?, ?)", {std::int64_t(i), values[i]}).ok());
  }
  std::vector<std::string> types;
  REQUIRE(db->query("SELECT typeof(x) FROM v ORDER BY id", {}, [&](const Row& row) {
              types.emplace_back(row.get_text(0));
              return true;
            }).ok());
  CHECK(types == std::vector<std::string>{"null", "integer", "integer", "integer", "real", "real",
                                          "text", "text", "text", "text", "blob", "blob"});

  auto read = [&](std::int64_t id, const std::function<void(const Row&)>& check) {
    bool seen = false;
    REQUIRE(db->query("SELECT x FROM v WHERE id = ?", {id}, [&](const Row& row) {
                check(row);
                seen = true;
                return true;
              }).ok());
    CHECK(seen);
  };
  read(0, [](const Row& r) {
    CHECK(r.is_null(0));
    CHECK_FALSE(r.get_optional_int(0).has_value());
  });
  read(1, [](const Row& r) {
    CHECK_FALSE(r.is_null(0));
    CHECK(r.get_optional_int(0) == std::optional<std::int64_t>(0));
  });
  read(2, [](const Row& r) { CHECK(r.get_int(0) == std::numeric_limits<std::int64_t>::min()); });
  read(3, [](const Row& r) { CHECK(r.get_int(0) == std::numeric_limits<std::int64_t>::max()); });
  read(4, [](const Row& r) { CHECK(r.get_double(0) == -1.25); });
  read(5, [](const Row& r) { CHECK(r.get_double(0) == 1e300); });
  read(6, [](const Row& r) { CHECK(r.get_text(0) == "grüße, 東京"); });
  read(7, [](const Row& r) {
    CHECK_FALSE(r.is_null(0));
    CHECK(r.get_text(0).empty());
  });
  read(8, [](const Row& r) { CHECK_FALSE(r.is_null(0)); });
  read(9, [&](const Row& r) { CHECK(r.get_text(0) == text_with_nul); });
  read(10, [&](const Row& r) {
    CHECK(r.get_blob(0).size() == 6);
    CHECK(r.get_blob(0) == blob_bytes);
  });
  read(11, [](const Row& r) {
    CHECK_FALSE(r.is_null(0));
    CHECK(r.get_blob(0).empty());
  });
  // Out-of-range columns read as NULL instead of undefined behaviour.
  read(1, [](const Row& r) {
    CHECK(r.is_null(5));
    CHECK(r.get_int(-1) == 0);
    CHECK(r.get_text(3).empty());
  });

  // A blob parameter matches a stored blob byte for byte, embedded NULs included.
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM v WHERE x = ?", {Blob{blob_bytes}}) == 1);
  CHECK(count_rows(*db, "SELECT length(x) FROM v WHERE id = 10") == 6);
}

TEST_CASE("query stops when the callback says so and the statement is reusable") {
  auto db = open_or_fail(SqliteOptions{.path = ":memory:"});
  REQUIRE(
      db->execute_script("CREATE TABLE n (x INTEGER); INSERT INTO n VALUES (1), (2), (3);").ok());
  for (int round = 0; round < 3; ++round) {
    std::vector<std::int64_t> seen;
    REQUIRE(db->query("SELECT x FROM n ORDER BY x", {}, [&](const Row& row) {
                seen.push_back(row.get_int(0));
                return seen.size() < 2;
              }).ok());
    CHECK(seen == std::vector<std::int64_t>{1, 2});
  }
  auto none = db->query_int("SELECT x FROM n WHERE x > ?", {std::int64_t{10}});
  REQUIRE(none.ok());
  CHECK_FALSE(none->has_value());
  auto null_max = db->query_int("SELECT MAX(x) FROM n WHERE x > 10");
  REQUIRE(null_max.ok());
  CHECK_FALSE(null_max->has_value());
  CHECK(count_rows(*db, "SELECT MAX(x) FROM n") == 3);
}

TEST_CASE("misuse is reported as invalid_argument naming the SQL") {
  auto db = open_or_fail(SqliteOptions{.path = ":memory:"});
  REQUIRE(db->execute_script("CREATE TABLE t (a, b)").ok());

  auto too_few = db->execute("INSERT INTO t VALUES (?, ?)", {std::int64_t{1}});
  CHECK(too_few.status().code() == ErrorCode::kInvalidArgument);
  CHECK(too_few.status().message().find("takes 2 parameter(s) but 1") != std::string::npos);
  CHECK(too_few.status().message().find("INSERT INTO t VALUES (?, ?)") != std::string::npos);

  auto two = db->execute("INSERT INTO t VALUES (1, 2); DELETE FROM t", {});
  CHECK(two.status().code() == ErrorCode::kInvalidArgument);
  CHECK(two.status().message().find("more than one statement") != std::string::npos);
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM t") == 0);  // nothing ran

  // Trailing separators and comments are fine.
  CHECK(db->execute("INSERT INTO t VALUES (1, 2); -- done\n", {}).value_or(-1) == 1);
  CHECK(db->execute("  ", {}).status().code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("sqlite errors map to codes and messages naming file and SQL") {
  TempDir dir;
  const std::string path = dir.file("errors.db");
  auto db = open_file(path);
  REQUIRE(db->execute_script(R"(
      CREATE TABLE parent (id INTEGER PRIMARY KEY);
      CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent(id),
                          code TEXT UNIQUE, qty INTEGER CHECK (qty >= 0));
      INSERT INTO parent VALUES (1);)")
              .ok());

  SUBCASE("syntax error") {
    auto r = db->execute("SELEC id FROM parent", {});
    CHECK(r.status().code() == ErrorCode::kInternal);
    const std::string& m = r.status().message();
    CHECK(m.find(path) != std::string::npos);
    CHECK(m.find("syntax error") != std::string::npos);
    CHECK(m.find("SELEC id FROM parent") != std::string::npos);
  }
  SUBCASE("long SQL is cut to one short line") {
    std::string sql = "SELECT\n   id,\n";
    for (int i = 0; i < 40; ++i) sql += " id AS c" + std::to_string(i) + ",";
    sql += " nonsense_column FROM parent";
    auto r = db->execute(sql, {});
    CHECK(r.status().code() == ErrorCode::kInternal);
    const std::string& m = r.status().message();
    CHECK(m.find("no such column: nonsense_column") != std::string::npos);
    CHECK(m.find("\"SELECT id, id AS c0,") != std::string::npos);
    CHECK(m.find("...\"") != std::string::npos);
    CHECK(m.find('\n') == std::string::npos);
  }
  SUBCASE("missing table") {
    auto r = db->execute("INSERT INTO nowhere VALUES (1)", {});
    CHECK(r.status().code() == ErrorCode::kInternal);
    CHECK(r.status().message().find("no such table: nowhere") != std::string::npos);
  }
  SUBCASE("duplicate primary key and unique value") {
    auto pk = db->execute("INSERT INTO parent VALUES (?)", {std::int64_t{1}});
    CHECK(pk.status().code() == ErrorCode::kAlreadyExists);
    CHECK(pk.status().message().find("UNIQUE constraint failed: parent.id") != std::string::npos);
    CHECK(pk.status().message().find("INSERT INTO parent VALUES (?)") != std::string::npos);
    REQUIRE(db->execute("INSERT INTO child VALUES (1, 1, 'a', 0)", {}).ok());
    auto unique = db->execute("INSERT INTO child VALUES (2, 1, 'a', 0)", {});
    CHECK(unique.status().code() == ErrorCode::kAlreadyExists);
  }
  SUBCASE("not null, foreign key and check") {
    auto not_null = db->execute("INSERT INTO child (id, code) VALUES (3, 'b')", {});
    CHECK(not_null.status().code() == ErrorCode::kFailedPrecondition);
    CHECK(not_null.status().message().find("NOT NULL") != std::string::npos);
    auto fk = db->execute("INSERT INTO child VALUES (4, 42, 'c', 0)", {});
    CHECK(fk.status().code() == ErrorCode::kFailedPrecondition);
    CHECK(fk.status().message().find("FOREIGN KEY") != std::string::npos);
    auto check = db->execute("INSERT INTO child VALUES (5, 1, 'd', -1)", {});
    CHECK(check.status().code() == ErrorCode::kFailedPrecondition);
    CHECK(check.status().message().find("CHECK") != std::string::npos);
  }
  SUBCASE("a failing script names the statement that failed") {
    Status s = db->execute_script(
        "INSERT INTO parent VALUES (2);\nINSERT INTO parent VALUES (1);\nINSERT INTO parent "
        "VALUES (3);");
    CHECK(s.code() == ErrorCode::kAlreadyExists);
    CHECK(s.message().find("\"INSERT INTO parent VALUES (1);\"") != std::string::npos);
    CHECK(count_rows(*db, "SELECT COUNT(*) FROM parent") == 2);  // 1 and 2; 3 never ran
  }
  SUBCASE("errors inside query") {
    Status s = db->query("SELECT id FROM parent WHERE id = ?", {std::string_view("x"), nullptr},
                         [](const Row&) { return true; });
    CHECK(s.code() == ErrorCode::kInvalidArgument);
  }
  // The connection is healthy after every error.
  CHECK(db->execute("INSERT INTO parent VALUES (?)", {std::int64_t{100}}).ok());
}

TEST_CASE("error_code_for_sqlite covers the families") {
  using detail::error_code_for_sqlite;
  CHECK(error_code_for_sqlite(SQLITE_BUSY) == ErrorCode::kUnavailable);
  CHECK(error_code_for_sqlite(SQLITE_BUSY_SNAPSHOT) == ErrorCode::kUnavailable);
  CHECK(error_code_for_sqlite(SQLITE_LOCKED) == ErrorCode::kUnavailable);
  CHECK(error_code_for_sqlite(SQLITE_CONSTRAINT_PRIMARYKEY) == ErrorCode::kAlreadyExists);
  CHECK(error_code_for_sqlite(SQLITE_CONSTRAINT_UNIQUE) == ErrorCode::kAlreadyExists);
  CHECK(error_code_for_sqlite(SQLITE_CONSTRAINT_NOTNULL) == ErrorCode::kFailedPrecondition);
  CHECK(error_code_for_sqlite(SQLITE_CONSTRAINT) == ErrorCode::kFailedPrecondition);
  CHECK(error_code_for_sqlite(SQLITE_CORRUPT) == ErrorCode::kDataLoss);
  CHECK(error_code_for_sqlite(SQLITE_NOTADB) == ErrorCode::kDataLoss);
  CHECK(error_code_for_sqlite(SQLITE_IOERR_FSYNC) == ErrorCode::kIoError);
  CHECK(error_code_for_sqlite(SQLITE_FULL) == ErrorCode::kIoError);
  CHECK(error_code_for_sqlite(SQLITE_ERROR) == ErrorCode::kInternal);
  CHECK(error_code_for_sqlite(SQLITE_MISUSE) == ErrorCode::kInternal);
}

TEST_CASE("transactions commit, roll back and nest") {
  TempDir dir;
  auto db = open_file(dir.file("tx.db"));
  REQUIRE(db->execute_script("CREATE TABLE t (x INTEGER PRIMARY KEY)").ok());
  auto insert = [&](std::int64_t x) {
    return db->execute("INSERT INTO t VALUES (?)", {x}).status();
  };
  auto count = [&] { return count_rows(*db, "SELECT COUNT(*) FROM t"); };

  SUBCASE("commit on ok") {
    CHECK(db->transaction([&] {
              CIVICBUS_RETURN_IF_ERROR(insert(1));
              return insert(2);
            }).ok());
    CHECK(count() == 2);
  }
  SUBCASE("rollback on error, the body's status is returned") {
    Status s = db->transaction([&] {
      CIVICBUS_RETURN_IF_ERROR(insert(1));
      return aborted("changed my mind");
    });
    CHECK(s == aborted("changed my mind"));
    CHECK(count() == 0);
  }
  SUBCASE("a failing statement rolls back the earlier ones") {
    Status s = db->transaction([&] {
      CIVICBUS_RETURN_IF_ERROR(insert(1));
      return insert(1);
    });
    CHECK(s.code() == ErrorCode::kAlreadyExists);
    CHECK(count() == 0);
  }
  SUBCASE("nested calls join the outer transaction") {
    Status s = db->transaction([&] {
      CIVICBUS_RETURN_IF_ERROR(insert(1));
      CIVICBUS_RETURN_IF_ERROR(db->transaction([&] { return insert(2); }));
      return aborted("outer fails");
    });
    CHECK(s.code() == ErrorCode::kAborted);
    CHECK(count() == 0);  // the inner commit was only the outer's

    CHECK(db->transaction([&] {
              CIVICBUS_RETURN_IF_ERROR(insert(1));
              return db->transaction([&] { return db->transaction([&] { return insert(2); }); });
            }).ok());
    CHECK(count() == 2);
  }
  SUBCASE("a failed nested call dooms the outer one even if the outer body ignores it") {
    Status s = db->transaction([&] {
      CIVICBUS_RETURN_IF_ERROR(insert(1));
      db->transaction([&] {
          CIVICBUS_RETURN_IF_ERROR(insert(2));
          return invalid_argument("inner says no");
        }).ignore_error();
      return insert(3);
    });
    CHECK(s.code() == ErrorCode::kInvalidArgument);
    CHECK(s.message().find("nested transaction failed") != std::string::npos);
    CHECK(s.message().find("inner says no") != std::string::npos);
    CHECK(count() == 0);
    // The doom does not leak into the next transaction.
    CHECK(db->transaction([&] { return insert(4); }).ok());
    CHECK(count() == 1);
  }
  SUBCASE("a failed COMMIT rolls back and returns the error") {
    REQUIRE(db->execute_script("CREATE TABLE parent (id INTEGER PRIMARY KEY);"
                               "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER "
                               "REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);")
                .ok());
    Status s = db->transaction([&] {
      CIVICBUS_RETURN_IF_ERROR(insert(1));
      // Deferred: accepted now, refused by COMMIT.
      return db->execute("INSERT INTO child VALUES (1, 77)", {}).status();
    });
    CHECK(s.code() == ErrorCode::kFailedPrecondition);
    CHECK(s.message().find("commit failed") != std::string::npos);
    CHECK(s.message().find("FOREIGN KEY") != std::string::npos);
    CHECK(count() == 0);
    CHECK(count_rows(*db, "SELECT COUNT(*) FROM child") == 0);
    CHECK(db->transaction([&] { return insert(5); }).ok());
    CHECK(count() == 1);
  }
  SUBCASE("a body that throws is rolled back and the database stays usable") {
    CHECK_THROWS_AS(db->transaction([&]() -> Status {
      insert(1).ignore_error();
      throw std::runtime_error("boom");
    }),
                    std::runtime_error);
    CHECK(count() == 0);
    CHECK(db->transaction([&] { return insert(2); }).ok());
    CHECK(count() == 1);
  }
}

TEST_CASE("one Database shared by 4 threads") {
  TempDir dir;
  auto db = open_file(dir.file("threads.db"));
  REQUIRE(
      db->execute_script("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL);"
                         "INSERT INTO counter VALUES (1, 0);"
                         "CREATE TABLE log (thread INTEGER, seq INTEGER, payload BLOB, "
                         "PRIMARY KEY (thread, seq));")
          .ok());
  constexpr int kThreads = 4;
  constexpr int kRounds = 200;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string payload(100, static_cast<char>('a' + t));
      for (int i = 0; i < kRounds; ++i) {
        // Read-modify-write: a lost update would show if transactions interleaved.
        Status s = db->transaction([&]() -> Status {
          CIVICBUS_ASSIGN_OR_RETURN(auto value, db->query_int("SELECT value FROM counter"));
          CIVICBUS_RETURN_IF_ERROR(
              db->execute("UPDATE counter SET value = ?", {value.value_or(0) + 1}).status());
          return db
              ->execute("INSERT INTO log VALUES (?, ?, ?)",
                        {std::int64_t{t}, std::int64_t{i}, Blob{payload}})
              .status();
        });
        if (!s.ok()) ++failures;
        // Plain calls outside transactions interleave freely.
        if (!db->query_int("SELECT COUNT(*) FROM log WHERE thread = ?", {std::int64_t{t}}).ok()) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  CHECK(count_rows(*db, "SELECT value FROM counter") == kThreads * kRounds);
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM log") == kThreads * kRounds);
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM log WHERE length(payload) = 100") ==
        kThreads * kRounds);
}

TEST_CASE("two connections to one WAL file") {
  TempDir dir;
  const std::string path = dir.file("shared.db");
  auto writer = open_file(path);
  REQUIRE(writer->execute_script("CREATE TABLE t (x INTEGER)").ok());
  auto reader = open_or_fail(SqliteOptions{.path = path, .busy_timeout_ms = 50});

  REQUIRE(writer->execute("INSERT INTO t VALUES (1)", {}).ok());
  CHECK(count_rows(*reader, "SELECT COUNT(*) FROM t") == 1);

  Status s = writer->transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(writer->execute("INSERT INTO t VALUES (2)", {}).status());
    // WAL: the reader is not blocked and does not see uncommitted rows.
    CHECK(count_rows(*reader, "SELECT COUNT(*) FROM t") == 1);
    // A second writer waits busy_timeout_ms, then gives up with kUnavailable.
    auto blocked = reader->execute("INSERT INTO t VALUES (3)", {});
    CHECK(blocked.status().code() == ErrorCode::kUnavailable);
    CHECK(blocked.status().message().find(path) != std::string::npos);
    CHECK(blocked.status().message().find("database is locked") != std::string::npos);
    Status tx = reader->transaction([] { return Status(); });
    CHECK(tx.code() == ErrorCode::kUnavailable);
    return Status();
  });
  CHECK(s.ok());
  CHECK(count_rows(*reader, "SELECT COUNT(*) FROM t") == 2);
  CHECK(reader->execute("INSERT INTO t VALUES (3)", {}).ok());
  CHECK(count_rows(*writer, "SELECT COUNT(*) FROM t") == 3);
}

TEST_CASE("read_only connections read and refuse writes") {
  TempDir dir;
  const std::string path = dir.file("ro.db");
  {
    auto db = open_file(path);
    REQUIRE(db->execute_script("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);").ok());
  }
  auto ro = open_or_fail(SqliteOptions{.path = path, .read_only = true});
  CHECK(count_rows(*ro, "SELECT COUNT(*) FROM t") == 2);
  auto write = ro->execute("INSERT INTO t VALUES (3)", {});
  CHECK(write.status().code() == ErrorCode::kFailedPrecondition);
  CHECK(write.status().message().find("readonly") != std::string::npos);
  CHECK(write.status().message().find(path) != std::string::npos);
  // Transactions on a read-only connection give a consistent snapshot for reads.
  CHECK(ro->transaction([&] {
            CHECK(count_rows(*ro, "SELECT COUNT(*) FROM t") == 2);
            return Status();
          }).ok());
  CHECK(open_sqlite(SqliteOptions{.path = dir.file("absent.db"), .read_only = true})
            .status()
            .code() == ErrorCode::kNotFound);
}

TEST_CASE("statement cache reuses, evicts least recently used, survives nesting") {
  auto db = open_or_fail(SqliteOptions{.path = ":memory:", .statement_cache_size = 2});
  REQUIRE(
      db->execute_script("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3);").ok());
  const auto base = cache_stats(*db);  // the open sequence used no cached statements
  CHECK(base.size == 0);

  const std::string a = "SELECT COUNT(*) FROM t";
  const std::string b = "SELECT MAX(x) FROM t";
  const std::string c = "SELECT MIN(x) FROM t";
  CHECK(count_rows(*db, a) == 3);
  CHECK(count_rows(*db, a) == 3);
  auto s = cache_stats(*db);
  CHECK(s.misses == 1);
  CHECK(s.hits == 1);
  CHECK(s.size == 1);

  CHECK(count_rows(*db, b) == 3);
  CHECK(count_rows(*db, a) == 3);  // a is now most recent
  CHECK(count_rows(*db, c) == 1);  // evicts b
  s = cache_stats(*db);
  CHECK(s.size == 2);
  CHECK(s.evictions == 1);
  CHECK(count_rows(*db, a) == 3);
  CHECK(cache_stats(*db).misses == 3);  // a stayed cached
  CHECK(count_rows(*db, b) == 3);
  CHECK(cache_stats(*db).misses == 4);  // b had been evicted

  // The same key built in a different buffer hits the cache: lookup is by text.
  std::string copy(a.begin(), a.end());
  const auto before = cache_stats(*db);
  CHECK(count_rows(*db, copy) == 3);
  CHECK(cache_stats(*db).hits == before.hits + 1);

  // A running statement is neither evicted nor reused by a nested call.
  const std::string outer = "SELECT x FROM t ORDER BY x";
  std::vector<std::int64_t> seen;
  REQUIRE(db->query(outer, {}, [&](const Row& row) {
              seen.push_back(row.get_int(0));
              CHECK(count_rows(*db, a) == 3);
              CHECK(count_rows(*db, b) == 3);
              CHECK(count_rows(*db, c) == 1);
              std::int64_t inner_rows = 0;
              CHECK(db->query(outer, {}, [&](const Row&) { return ++inner_rows < 100; }).ok());
              CHECK(inner_rows == 3);
              return true;
            }).ok());
  CHECK(seen == std::vector<std::int64_t>{1, 2, 3});
  s = cache_stats(*db);
  CHECK(s.uncached == 3);  // the nested run of `outer`, once per outer row
  CHECK(s.size <= 3);      // over capacity only while `outer` was leased

  // With caching off everything still works.
  auto uncached = open_or_fail(SqliteOptions{.path = ":memory:", .statement_cache_size = 0});
  REQUIRE(uncached->execute_script("CREATE TABLE t (x)").ok());
  for (int i = 0; i < 3; ++i) CHECK(uncached->execute("INSERT INTO t VALUES (?)", {1.5}).ok());
  CHECK(count_rows(*uncached, "SELECT COUNT(*) FROM t") == 3);
  CHECK(cache_stats(*uncached).size == 0);
}

TEST_CASE("a file of random bytes is refused with data_loss naming the file") {
  TempDir dir;
  const std::string path = dir.file("garbage.db");
  civicbus::testing::write_file(path, random_bytes(64 * 1024, 7));
  for (bool verify : {true, false}) {
    CAPTURE(verify);
    auto db = open_sqlite(SqliteOptions{.path = path, .verify_on_open = verify});
    REQUIRE_FALSE(db.ok());
    CHECK(db.status().code() == ErrorCode::kDataLoss);
    CHECK(db.status().message().find(path) != std::string::npos);
    CHECK(db.status().message().find("not a database") != std::string::npos);
  }
}

TEST_CASE("a database with overwritten pages is refused with data_loss naming the file") {
  TempDir dir;
  const std::string path = dir.file("damaged.db");
  std::int64_t page_size = 0;
  std::int64_t page_count = 0;
  {
    auto db = open_file(path);
    REQUIRE(db->execute_script(
                  "CREATE TABLE permit (id INTEGER PRIMARY KEY, roll_number TEXT, body BLOB);"
                  "CREATE INDEX permit_roll ON permit (roll_number);")
                .ok());
    const std::string body(300, 'p');
    REQUIRE(db->transaction([&]() -> Status {
                for (std::int64_t i = 0; i < 2000; ++i) {
                  std::string roll = "R-" + std::to_string(i * 7919 % 2000);
                  CIVICBUS_RETURN_IF_ERROR(db->execute("INSERT INTO permit VALUES (?, ?, ?)",
                                                       {i, std::string_view(roll), Blob{body}})
                                               .status());
                }
                return Status();
              }).ok());
    page_size = count_rows(*db, "PRAGMA page_size");
    page_count = count_rows(*db, "PRAGMA page_count");
  }  // closing the last connection checkpoints the WAL into the main file
  REQUIRE(page_count > 20);
  {
    // A healthy file opens.
    auto ok = open_sqlite(SqliteOptions{.path = path});
    REQUIRE_MESSAGE(ok.ok(), ok.status().to_string());
  }
  // Overwrite three pages in the middle; page 1 (the header and schema) stays intact.
  const std::size_t offset = static_cast<std::size_t>(page_count / 2 * page_size);
  write_bytes(path, offset, random_bytes(static_cast<std::size_t>(3 * page_size), 11));

  auto db = open_sqlite(SqliteOptions{.path = path});
  REQUIRE_FALSE(db.ok());
  CHECK(db.status().code() == ErrorCode::kDataLoss);
  CHECK(db.status().message().find(path) != std::string::npos);
  CHECK(db.status().message().find("corrupt") != std::string::npos);
  MESSAGE(db.status().message());
}

// Runs in a forked child: commits (id in a, id in b) pairs and reports each id on `fd` only
// after its COMMIT returned. Never returns.
[[noreturn]] void commit_forever(const std::string& path, int fd) {
  auto opened = open_sqlite(SqliteOptions{.path = path, .synchronous = Synchronous::kFull});
  if (!opened.ok()) ::_exit(2);
  Database& db = **opened;
  const std::string payload(600, 'e');
  for (std::int64_t id = 1;; ++id) {
    Status s = db.transaction([&]() -> Status {
      CIVICBUS_RETURN_IF_ERROR(
          db.execute("INSERT INTO a VALUES (?, ?)", {id, Blob{payload}}).status());
      return db.execute("INSERT INTO b VALUES (?)", {id}).status();
    });
    if (!s.ok()) ::_exit(3);
    char line[32];
    int n = std::snprintf(line, sizeof line, "%lld\n", static_cast<long long>(id));
    // Writes of < PIPE_BUF bytes are atomic, so the parent never sees half an id.
    if (::write(fd, line, static_cast<std::size_t>(n)) != n) ::_exit(4);
  }
}

TEST_CASE("every transaction reported committed survives SIGKILL") {
  TempDir dir;
  const std::string path = dir.file("crash.db");
  {
    auto db = open_file(path);
    REQUIRE(db->execute_script("CREATE TABLE a (id INTEGER PRIMARY KEY, payload BLOB NOT NULL);"
                               "CREATE TABLE b (id INTEGER PRIMARY KEY);")
                .ok());
  }  // no connection may be open across fork()

  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    commit_forever(path, fds[1]);
  }
  ::close(fds[1]);

  std::set<std::int64_t> reported;
  std::string pending;
  bool killed = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    if (!killed && (reported.size() >= 300 || std::chrono::steady_clock::now() > deadline)) {
      ::kill(pid, SIGKILL);  // mid-stream: the child is inside its next transaction or fsync
      killed = true;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;  // EOF: the child is gone and everything it wrote has been read
    pending.append(buf, static_cast<std::size_t>(n));
    for (std::size_t nl; (nl = pending.find('\n')) != std::string::npos; pending.erase(0, nl + 1)) {
      reported.insert(std::stoll(pending.substr(0, nl)));
    }
  }
  ::close(fds[0]);
  int wstatus = 0;
  REQUIRE(::waitpid(pid, &wstatus, 0) == pid);
  CHECK(WIFSIGNALED(wstatus));
  if (WIFSIGNALED(wstatus)) CHECK(WTERMSIG(wstatus) == SIGKILL);
  REQUIRE(reported.size() >= 300);
  MESSAGE("child reported " << reported.size() << " commits before SIGKILL");

  auto db = open_file(path);  // verify_on_open: recovery leaves a consistent file
  std::int64_t missing = 0;
  for (std::int64_t id : reported) {
    if (count_rows(*db, "SELECT COUNT(*) FROM a WHERE id = ?", {id}) != 1) ++missing;
  }
  CHECK(missing == 0);
  // Atomicity: no transaction is half there.
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM a") == count_rows(*db, "SELECT COUNT(*) FROM b"));
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM a LEFT JOIN b USING (id) WHERE b.id IS NULL") == 0);
  // At most the one transaction whose report was cut off by the kill is extra.
  const std::int64_t stored = count_rows(*db, "SELECT COUNT(*) FROM a");
  CHECK(stored >= static_cast<std::int64_t>(reported.size()));
  CHECK(stored <= static_cast<std::int64_t>(reported.size()) + 1);
  CHECK(count_rows(*db, "SELECT COUNT(*) FROM a WHERE length(payload) = 600") == stored);
}

}  // namespace
}  // namespace civicbus::storage
