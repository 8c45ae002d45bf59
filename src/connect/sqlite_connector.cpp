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

class SqliteConnector final : public Connector {
 public:
  SqliteConnector() {
    spec_.name = "sqlite";
    spec_.title = "SQLite table";
    spec_.description =
        "Reads a table or query of an SQLite file (incremental by a cursor column) and writes "
        "batches into a table (append or upsert by key, exactly once per batch id).";
    spec_.format_source = "SQLite 3 file format (sqlite.org/fileformat.html)";
    spec_.is_source = true;
    spec_.is_sink = true;
    spec_.config_schema = config_schema();
  }

  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(storage::Database * db, database(context.config, true));
    auto tables = detail::sqlite_tables(*db);
    if (!tables.ok()) return tables.status();
    std::string table = context.config.get_string("table");
    if (!table.empty() && context.config.get_string("query").empty() &&
        std::find(tables->begin(), tables->end(), table) == tables->end() &&
        !context.config.get_bool("create_table", true)) {
      return not_found(fmt::format("SQLite file '{}' has no table '{}'",
                                   context.config.get_string("path"), table));
    }
    return Status();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(storage::Database * db, database(context.config, true));
    std::vector<StreamSpec> streams;
    std::string query = context.config.get_string("query");
    if (!query.empty()) {
      CIVICBUS_ASSIGN_OR_RETURN(StreamSpec s, detail::describe_query(*db, "query", query));
      s.cursor_field = context.config.get_string("cursor_field");
      streams.push_back(std::move(s));
      return streams;
    }
    std::vector<std::string> names;
    if (std::string table = context.config.get_string("table"); !table.empty()) {
      names.push_back(table);
    } else {
      CIVICBUS_ASSIGN_OR_RETURN(names, detail::sqlite_tables(*db));
    }
    for (const auto& name : names) {
      CIVICBUS_ASSIGN_OR_RETURN(StreamSpec s, detail::describe_sqlite_table(*db, name));
      if (std::string cursor = context.config.get_string("cursor_field"); !cursor.empty()) {
        if (s.field(cursor) == nullptr) {
          return invalid_argument(
              fmt::format("cursor_field '{}' is not a column of table '{}'", cursor, name));
        }
        s.cursor_field = cursor;
      }
      streams.push_back(std::move(s));
    }
    return streams;
  }

  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override {
    CIVICBUS_ASSIGN_OR_RETURN(auto streams, discover(context));
    CIVICBUS_ASSIGN_OR_RETURN(storage::Database * db, database(context.config, true));
    std::int64_t budget = request.max_records;
    for (const auto& stream : streams) {
      if (!request.streams.empty() && std::find(request.streams.begin(), request.streams.end(),
                                                stream.name) == request.streams.end()) {
        continue;
      }
      std::string query = context.config.get_string("query");
      detail::SqlReadPlan plan;
      plan.stream = stream;
      plan.from = query.empty() ? detail::quote_identifier(stream.name) : "(" + query + ")";
      CIVICBUS_RETURN_IF_ERROR(detail::read_sql_stream(*db, plan, request, out, budget));
      if (budget == 0) break;
    }
    return Status();
  }

  Result<WriteResult> write(const ConnectorContext& context, const WriteRequest& request,
                            const RecordBatch& batch) override {
    CIVICBUS_ASSIGN_OR_RETURN(storage::Database * db, database(context.config, false));
    std::string table =
        request.stream.empty() ? context.config.get_string("table") : request.stream;
    if (table.empty()) {
      return invalid_argument("sqlite sink needs a table: set 'table' in the config or the stream");
    }
    detail::SqlWriteOptions options;
    options.table = table;
    options.create_table = context.config.get_bool("create_table", true);
    options.mode = request.mode;
    options.key = request.key;
    if (options.key.empty()) {
      if (const Json* pk = context.config.find("primary_key"); pk != nullptr && pk->is_array()) {
        for (const auto& k : pk->as_array()) options.key.push_back(k.as_string());
      }
    }
    options.batch_id = request.batch_id;
    return writer_.write(*db, options, batch);
  }

 private:
  // One connection per connector instance, opened on first use with the first config seen;
  // a call with another path reopens.
  Result<storage::Database*> database(const Json& config, bool read_only) {
    std::lock_guard lock(mutex_);
    std::string path = config.get_string("path");
    if (path.empty()) return invalid_argument("sqlite connector: 'path' is required");
    if (db_ != nullptr && path == path_) return db_.get();
    storage::SqliteOptions options;
    options.path = path;
    options.create_if_missing = !read_only;  // a source must not create an empty file
    options.synchronous = synchronous_of(config);
    options.verify_on_open = false;  // the user's file; quick_check of a large table is slow
    auto db = storage::open_sqlite(options);
    if (!db.ok()) return db.status().with_context(fmt::format("sqlite connector '{}'", path));
    db_ = std::move(db).value();
    path_ = path;
    writer_ = detail::SqlWriter();
    return db_.get();
  }

  ConnectorSpec spec_;
  std::mutex mutex_;
  std::unique_ptr<storage::Database> db_;
  std::string path_;
  detail::SqlWriter writer_;
};

}  // namespace

namespace detail {
Status add_sql_connectors(ConnectorCatalog& catalog) {
  return catalog.add([] { return std::make_unique<SqliteConnector>(); });
}
}  // namespace detail

}  // namespace civicbus::connect
