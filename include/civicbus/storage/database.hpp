// Database: the one SQL port of civicbus. Components write portable SQL with `?` placeholders;
// an adapter (SQLite or PostgreSQL) hides the dialect. A Database is one connection,
// internally serialised, so it may be shared between threads; components that need to read
// while another thread writes open a second connection to the same file.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus::storage {

// A bound parameter or column value. Blob wraps bytes to tell them apart from text.
struct Blob {
  std::string_view bytes;
};
using Value = std::variant<std::nullptr_t, std::int64_t, double, std::string_view, Blob>;

// A row during query(): text and blob views are valid only inside the callback.
class CIVICBUS_EXPORT Row {
 public:
  virtual ~Row() = default;
  virtual int column_count() const = 0;
  virtual bool is_null(int column) const = 0;
  virtual std::int64_t get_int(int column) const = 0;
  virtual double get_double(int column) const = 0;
  virtual std::string_view get_text(int column) const = 0;
  virtual std::string_view get_blob(int column) const = 0;
  // The column's name as the statement gives it ("" when the adapter cannot tell).
  virtual std::string_view column_name(int /*column*/) const { return {}; }
  // The stored value's kind. SQLite types values, not columns: a column may hold any kind.
  enum class Kind { kNull, kInteger, kReal, kText, kBlob };
  virtual Kind kind(int column) const { return is_null(column) ? Kind::kNull : Kind::kText; }
  std::optional<std::int64_t> get_optional_int(int column) const {
    return is_null(column) ? std::nullopt : std::optional<std::int64_t>(get_int(column));
  }
};

enum class Dialect { kSqlite, kPostgres };

class CIVICBUS_EXPORT Database {
 public:
  virtual ~Database() = default;

  virtual Dialect dialect() const = 0;
  // Where the data lives (file path or connection string with the password removed).
  virtual std::string describe() const = 0;

  // Runs one or more statements without parameters (DDL, pragmas).
  virtual Status execute_script(std::string_view sql) = 0;

  // Runs one statement with `?` parameters; returns the number of rows changed. Statements
  // are prepared once and cached by their text.
  virtual Result<std::int64_t> execute(std::string_view sql,
                                       std::span<const Value> params = {}) = 0;
  Result<std::int64_t> execute(std::string_view sql, std::initializer_list<Value> params) {
    return execute(sql, std::span<const Value>(params.begin(), params.size()));
  }

  // Runs a query and calls `on_row` for each row until it returns false.
  virtual Status query(std::string_view sql, std::span<const Value> params,
                       const std::function<bool(const Row&)>& on_row) = 0;
  Status query(std::string_view sql, std::initializer_list<Value> params,
               const std::function<bool(const Row&)>& on_row) {
    return query(sql, std::span<const Value>(params.begin(), params.size()), on_row);
  }

  // The rowid / serial of the last INSERT on this connection. PostgreSQL: the first column of
  // the last row an `INSERT ... RETURNING` gave to execute(), else `SELECT lastval()` (asked
  // lazily, once per INSERT), that is the last value a sequence (serial / identity column)
  // handed out in this session; 0 when none has.
  virtual std::int64_t last_insert_id() const = 0;

  // Runs `body` in one transaction (SQLite: BEGIN IMMEDIATE): committed when it returns ok,
  // rolled back otherwise (and when the commit fails). Calls on this Database from `body`
  // are part of the transaction; other threads wait. Nested calls join the outer
  // transaction.
  virtual Status transaction(const std::function<Status()>& body) = 0;

  // Convenience: the first column of the first row as an integer, or nullopt when no row.
  Result<std::optional<std::int64_t>> query_int(std::string_view sql,
                                                std::initializer_list<Value> params = {});
};

enum class Synchronous { kOff, kNormal, kFull };

struct SqliteOptions {
  std::string path;  // file path; ":memory:" for a private in-memory database
  bool create_if_missing = true;
  bool read_only = false;
  bool wal = true;  // journal_mode=WAL (ignored for :memory:)
  Synchronous synchronous = Synchronous::kFull;
  int busy_timeout_ms = 5000;
  std::size_t statement_cache_size = 128;
  std::int64_t cache_size_kib = 16 * 1024;  // page cache per connection
  // Page size of a new database file (512..65536, a power of two); an existing file keeps
  // its own. (Measured on the event log: 16 and 64 KiB pages cost more CPU per append than
  // 4 KiB, as inserts move more bytes within a page.)
  int page_size = 4096;
  // Checks the file with `PRAGMA quick_check` on open; a corrupt file is refused with
  // kDataLoss naming the file.
  bool verify_on_open = true;
};

CIVICBUS_EXPORT Result<std::unique_ptr<Database>> open_sqlite(const SqliteOptions& options);

// A PostgreSQL connection. The adapter rewrites `?` to `$1..$n` (a `?` inside a string,
// quoted identifier or comment stays as it is, so jsonb's `?` operators need jsonb_exists()
// and friends), binds int64 as bigint, double as double precision, Blob as bytea (binary)
// and text untyped (the server infers it from the column), and reads results in text format.
// A query's rows are fetched whole before the first callback, so callbacks may run further
// statements. Transactions are plain BEGIN (READ COMMITTED); a failed statement aborts the
// enclosing transaction, so a body must return on the first error.
struct PostgresOptions {
  // libpq connection string or URI ("postgresql://user:secret@db.example:5432/civicbus",
  // "host=/run/postgresql dbname=civicbus"); "postgresql://" takes everything from the PG*
  // environment variables. Required.
  std::string connection;
  // Shown in pg_stat_activity; a value in `connection` wins.
  std::string application_name = "civicbus";
  // Seconds to wait for the server while connecting; 0 waits forever (libpq raises 1 to 2).
  // A value in `connection` wins.
  int connect_timeout_seconds = 10;
  // Server-side prepared statements kept per connection, least recently used deallocated
  // first; 0 prepares nothing and sends every statement with its parameters (one round trip).
  std::size_t statement_cache_size = 128;
};

// Connects and checks the server answers; fails with kUnavailable when it cannot be reached
// (kUnauthenticated for a rejected login, kNotFound for a missing database).
CIVICBUS_EXPORT Result<std::unique_ptr<Database>> open_postgres(const PostgresOptions& options);

// A versioned migration. Versions of one component start at 1 and increase by 1.
struct Migration {
  int version;
  std::string_view description;
  std::string_view sql;  // one or more statements
};

// Brings `component`'s tables up to the newest migration, each step in its own transaction,
// recording applied versions in `civicbus_migrations`. Idempotent: already applied versions
// are skipped. Fails (kFailedPrecondition) if the database has a newer version than this code
// knows, naming both versions.
CIVICBUS_EXPORT Status migrate(Database& db, std::string_view component,
                               std::span<const Migration> migrations);

// Components write their DDL in SQLite's spelling; this gives `dialect`'s. On PostgreSQL, BLOB
// becomes BYTEA and INTEGER PRIMARY KEY AUTOINCREMENT an identity column.
CIVICBUS_EXPORT std::string ddl_for(Dialect dialect, std::string_view sqlite_ddl);

// The highest applied version of `component` (0 when none).
CIVICBUS_EXPORT Result<int> schema_version(Database& db, std::string_view component);

}  // namespace civicbus::storage
