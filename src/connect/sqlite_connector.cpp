// The `sqlite` connector: a table (or a query) of an SQLite file as a source, incremental by
// a cursor column; and a table as a sink, appending or upserting by key in one transaction
// per batch, with the batch's id recorded in the same transaction so that a batch replayed
// after a crash is acknowledged without being written twice.
#include <fmt/format.h>

#include <algorithm>
#include <mutex>

#include "builtin_connectors.hpp"
#include "civicbus/storage/database.hpp"
#include "sql_common.hpp"

namespace civicbus::connect {
namespace {

Json config_schema() {
  return Json::parse(R"json({
    "type": "object",
    "required": ["path"],
    "properties": {
      "path": {"type": "string", "minLength": 1, "description": "SQLite database file"},
      "table": {"type": "string", "description": "table to read or write; sources without it offer every table"},
      "query": {"type": "string", "description": "source only: a SELECT to read instead of a table (stream name: 'query')"},
      "cursor_field": {"type": "string", "description": "column incremental reads order by and resume after"},
      "primary_key": {"type": "array", "items": {"type": "string"}},
      "create_table": {"type": "boolean", "default": true, "description": "sink: create the table from the first batch when missing"},
      "synchronous": {"enum": ["full", "normal", "off"], "default": "full"}
    },
    "additionalProperties": false
  })json")
      .value();
}

storage::Synchronous synchronous_of(const Json& config) {
  std::string mode = config.get_string("synchronous", "full");
  if (mode == "off") return storage::Synchronous::kOff;
  if (mode == "normal") return storage::Synchronous::kNormal;
  return storage::Synchronous::kFull;
}

ConnectorSpec sqlite_spec() {
  ConnectorSpec spec;
  spec.name = "sqlite";
  spec.title = "SQLite table";
  spec.description =
      "Reads a table or query of an SQLite file (incremental by a cursor column) and writes "
      "batches into a table (append or upsert by key, exactly once per batch id).";
  spec.format_source = "SQLite 3 file format (sqlite.org/fileformat.html)";
  spec.is_source = true;
  spec.is_sink = true;
  spec.config_schema = config_schema();
  return spec;
}

class SqliteConnector final : public detail::SqlTableConnector {
 public:
  SqliteConnector() : SqlTableConnector(sqlite_spec()) {}

 private:
  // One connection per connector instance; a call naming another file reopens. A source
  // never creates the file (a mistyped path is an error, not an empty database).
  Result<storage::Database*> database(const Json& config, bool for_write) override {
    std::lock_guard lock(mutex_);
    std::string path = config.get_string("path");
    if (path.empty()) return invalid_argument("sqlite connector: 'path' is required");
    if (db_ != nullptr && path == path_) return db_.get();
    storage::SqliteOptions options;
    options.path = path;
    options.create_if_missing = for_write;
    options.synchronous = synchronous_of(config);
    options.verify_on_open = false;  // the user's file; quick_check of a large table is slow
    auto db = storage::open_sqlite(options);
    if (!db.ok()) return db.status().with_context(fmt::format("sqlite connector '{}'", path));
    db_ = std::move(db).value();
    path_ = path;
    reset_writer();
    return db_.get();
  }
  Result<std::vector<std::string>> tables(storage::Database& db, const Json&) override {
    return detail::sqlite_tables(db);
  }
  Result<StreamSpec> describe_table(storage::Database& db, const Json&,
                                    std::string_view table) override {
    return detail::describe_sqlite_table(db, table);
  }
  std::string table_reference(const Json&, std::string_view table) override {
    return detail::quote_identifier(table);
  }

  std::mutex mutex_;
  std::unique_ptr<storage::Database> db_;
  std::string path_;
};

}  // namespace

namespace detail {
Status add_sql_connectors(ConnectorCatalog& catalog) {
  return catalog.add([] { return std::make_unique<SqliteConnector>(); });
}
}  // namespace detail

}  // namespace civicbus::connect
