// Schema migrations per component, recorded in civicbus_migrations. Written in portable SQL
// (plus one dialect switch to find the table) so the PostgreSQL adapter reuses it unchanged.
#include <fmt/format.h>

#include <chrono>

#include "civicbus/storage/database.hpp"

namespace civicbus::storage {
namespace {

constexpr std::string_view kCreateMigrationsTable =
    "CREATE TABLE IF NOT EXISTS civicbus_migrations ("
    " component TEXT NOT NULL,"
    " version INTEGER NOT NULL,"
    " description TEXT NOT NULL,"
    // Microseconds since the Unix epoch, like all civicbus times: BIGINT, since PostgreSQL's
    // INTEGER has 32 bits (SQLite gives BIGINT the same INTEGER affinity as before).
    " applied_at BIGINT NOT NULL,"
    " PRIMARY KEY (component, version))";

// schema_version() must answer on a database nobody has migrated yet, read-only included,
// so it looks for the table instead of creating it.
Result<bool> migrations_table_exists(Database& db) {
  std::string_view sql =
      db.dialect() == Dialect::kSqlite
          ? "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = "
            "'civicbus_migrations'"
          : "SELECT COUNT(*) FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = 'civicbus_migrations'";
  CIVICBUS_ASSIGN_OR_RETURN(std::optional<std::int64_t> count, db.query_int(sql));
  return count.value_or(0) > 0;
}

Status check_versions(std::string_view component, std::span<const Migration> migrations) {
  if (component.empty()) return invalid_argument("migrate(): the component name is empty");
  for (std::size_t i = 0; i < migrations.size(); ++i) {
    const int expected = static_cast<int>(i) + 1;
    if (migrations[i].version != expected) {
      return invalid_argument(fmt::format(
          "migrations of component '{}' must be numbered 1, 2, 3, ... in order; entry {} has "
          "version {} where {} was expected",
          component, i + 1, migrations[i].version, expected));
    }
  }
  return {};
}

std::int64_t now_unix_micros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Result<int> schema_version(Database& db, std::string_view component) {
  CIVICBUS_ASSIGN_OR_RETURN(bool exists, migrations_table_exists(db));
  if (!exists) return 0;
  CIVICBUS_ASSIGN_OR_RETURN(
      std::optional<std::int64_t> version,
      db.query_int("SELECT MAX(version) FROM civicbus_migrations WHERE component = ?",
                   {component}));
  return static_cast<int>(version.value_or(0));
}

Status migrate(Database& db, std::string_view component, std::span<const Migration> migrations) {
  CIVICBUS_RETURN_IF_ERROR(check_versions(component, migrations));
  CIVICBUS_RETURN_IF_ERROR(db.execute_script(kCreateMigrationsTable));

  const int known = static_cast<int>(migrations.size());
  CIVICBUS_ASSIGN_OR_RETURN(int current, schema_version(db, component));
  if (current > known) {
    return failed_precondition(fmt::format(
        "database '{}' holds schema version {} of component '{}' but this code knows only up to "
        "version {}; run a civicbus release that knows version {}, or restore a backup made by "
        "this release",
        db.describe(), current, component, known, current));
  }

  for (const Migration& m : migrations) {
    if (m.version <= current) continue;
    Status status = db.transaction([&]() -> Status {
      // Another process may have applied this step since we read the version; inside the
      // write transaction the answer is final. PostgreSQL's BEGIN takes no write lock (as
      // SQLite's BEGIN IMMEDIATE does), so migrators of one component queue on an advisory
      // lock held until commit.
      if (db.dialect() == Dialect::kPostgres) {
        CIVICBUS_RETURN_IF_ERROR(
            db.execute("SELECT pg_advisory_xact_lock(hashtext('civicbus_migrations'), "
                       "hashtext(?))",
                       {component})
                .status());
      }
      CIVICBUS_ASSIGN_OR_RETURN(
          std::optional<std::int64_t> done,
          db.query_int("SELECT 1 FROM civicbus_migrations WHERE component = ? AND version = ?",
                       {component, std::int64_t{m.version}}));
      if (done) return {};
      CIVICBUS_RETURN_IF_ERROR(db.execute_script(m.sql));
      CIVICBUS_RETURN_IF_ERROR(
          db.execute("INSERT INTO civicbus_migrations (component, version, description, "
                     "applied_at) VALUES (?, ?, ?, ?)",
                     {component, std::int64_t{m.version}, m.description, now_unix_micros()})
              .status());
      return {};
    });
    if (!status.ok()) {
      return status.with_context(
          fmt::format("migration {} ('{}') of component '{}' failed and was rolled back; the "
                      "database stays at version {}",
                      m.version, m.description, component, m.version - 1));
    }
  }
  return {};
}

}  // namespace civicbus::storage
