// The `postgres` connector: a table (or a query) of a PostgreSQL database as a source,
// incremental by a cursor column, discovered through information_schema (types, nullability)
// and pg_index (the primary key); and a table as a sink, appending or upserting by key in
// one transaction per batch with the batch's id recorded in it, as the sqlite connector does
// (both are sql_common.cpp; only discovery and the connection differ).
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
    "properties": {
      "uri": {"type": "string", "secret": true, "description": "libpq URI or connection string (postgresql://user:password@host:5432/dbname); instead of host, port, dbname, user and password"},
      "host": {"type": "string", "description": "server host name, address or unix socket directory"},
      "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 5432},
      "dbname": {"type": "string", "minLength": 1},
      "user": {"type": "string"},
      "password": {"type": "string", "secret": true},
      "sslmode": {"enum": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]},
      "schema": {"type": "string", "default": "public", "description": "schema of the tables read or written"},
      "table": {"type": "string", "description": "table to read or write; sources without it offer every table of the schema"},
      "query": {"type": "string", "description": "source only: a SELECT to read instead of a table (stream name: 'query')"},
      "cursor_field": {"type": "string", "description": "column incremental reads order by and resume after"},
      "primary_key": {"type": "array", "items": {"type": "string"}},
      "create_table": {"type": "boolean", "default": true, "description": "sink: create the table from the first batch when missing"}
    },
    "anyOf": [{"required": ["uri"]}, {"required": ["dbname"]}],
    "additionalProperties": false
  })json")
      .value();
}

class PostgresConnector final : public Connector {
 public:
  PostgresConnector() {
    spec_.name = "postgres";
    spec_.title = "PostgreSQL table";
    spec_.description =
        "Reads a table or query of a PostgreSQL database (incremental by a cursor column) and "
        "writes batches into a table (append or upsert by key, exactly once per batch id).";
    spec_.format_source = "PostgreSQL frontend/backend protocol through libpq";
    spec_.is_source = true;
    spec_.is_sink = true;
    spec_.config_schema = config_schema();
  }

  const ConnectorSpec& spec() const override { return spec_; }

  Status check(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(storage::Database * db, database(context.config));
    CIVICBUS_RETURN_IF_ERROR(db->query_int("SELECT 1").status());
    std::string table = context.config.get_string("table");
    if (!table.empty() && context.config.get_string("query").empty() &&
        !context.config.get_bool("create_table", true)) {
      CIVICBUS_ASSIGN_OR_RETURN(auto tables, detail::postgres_tables(*db, schema(context.config)));
      if (std::find(tables.begin(), tables.end(), table) == tables.end()) {
        return not_found(fmt::format("PostgreSQL database '{}' has no table '{}' in schema '{}'",
                                     db->describe(), table, schema(context.config)));
      }
    }
    return Status();
  }

  Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) override {
    CIVICBUS_ASSIGN_OR_RETURN(storage::Database * db, database(context.config));
    std::vector<StreamSpec> streams;
    std::string cursor = context.config.get_string("cursor_field");
    if (std::string query = context.config.get_string("query"); !query.empty()) {
      CIVICBUS_ASSIGN_OR_RETURN(StreamSpec s, detail::describe_query(*db, "query", query));
      s.cursor_field = cursor;
      streams.push_back(std::move(s));
      return streams;
    }
    const std::string schema_name = schema(context.config);
    std::vector<std::string> names;
    if (std::string table = context.config.get_string("table"); !table.empty()) {
      names.push_back(table);
    } else {
      CIVICBUS_ASSIGN_OR_RETURN(names, detail::postgres_tables(*db, schema_name));
    }
    for (const auto& name : names) {
      CIVICBUS_ASSIGN_OR_RETURN(StreamSpec s,
                                detail::describe_postgres_table(*db, schema_name, name));
      if (!cursor.empty()) {
        if (s.field(cursor) == nullptr) {
          return invalid_argument(fmt::format("cursor_field '{}' is not a column of table '{}.{}'",
                                              cursor, schema_name, name));
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
    CIVICBUS_ASSIGN_OR_RETURN(storage::Database * db, database(context.config));
    std::int64_t budget = request.max_records;
    const std::string query = context.config.get_string("query");
    for (const auto& stream : streams) {
      if (!request.streams.empty() && std::find(request.streams.begin(), request.streams.end(),
                                                stream.name) == request.streams.end()) {
        continue;
      }
      detail::SqlReadPlan plan;
      plan.stream = stream;
      plan.from = query.empty() ? detail::qualified_name(schema(context.config), stream.name)
                                : "(" + query + ")";
      CIVICBUS_RETURN_IF_ERROR(detail::read_sql_stream(*db, plan, request, out, budget));
      if (budget == 0) break;
    }
    return Status();
  }

  Result<WriteResult> write(const ConnectorContext& context, const WriteRequest& request,
                            const RecordBatch& batch) override {
    CIVICBUS_ASSIGN_OR_RETURN(storage::Database * db, database(context.config));
    std::string table =
        request.stream.empty() ? context.config.get_string("table") : request.stream;
    if (table.empty()) {
      return invalid_argument(
          "postgres sink needs a table: set 'table' in the config or the stream");
    }
    detail::SqlWriteOptions options;
    options.table = table;
    options.schema = schema(context.config);
    options.create_table = context.config.get_bool("create_table", true);
    options.mode = request.mode;
    options.key = request.key;
    if (options.key.empty()) {
      if (const Json* pk = context.config.find("primary_key"); pk != nullptr && pk->is_array()) {
        for (const auto& k : pk->as_array()) options.key.push_back(k.as_string());
      }
    }
    options.batch_id = request.batch_id;
    std::lock_guard lock(mutex_);
    return writer_.write(*db, options, batch);
  }

 private:
  static std::string schema(const Json& config) { return config.get_string("schema", "public"); }

  // One connection per connector instance, opened on first use; a call with another
  // connection string reconnects.
  Result<storage::Database*> database(const Json& config) {
    std::lock_guard lock(mutex_);
    CIVICBUS_ASSIGN_OR_RETURN(std::string connection, detail::postgres_connection_string(config));
    if (db_ != nullptr && connection == connection_) return db_.get();
    CIVICBUS_ASSIGN_OR_RETURN(db_, detail::open_postgres_for(config, "postgres"));
    connection_ = std::move(connection);
    writer_ = detail::SqlWriter();
    return db_.get();
  }

  ConnectorSpec spec_;
  std::mutex mutex_;
  std::unique_ptr<storage::Database> db_;
  std::string connection_;  // holds the password: never logged nor returned
  detail::SqlWriter writer_;
};

}  // namespace

namespace detail {
Status add_database_connectors(ConnectorCatalog& catalog) {
  CIVICBUS_RETURN_IF_ERROR(catalog.add([] { return std::make_unique<PostgresConnector>(); }));
  return add_amanda_connector(catalog);
}
}  // namespace detail

}  // namespace civicbus::connect
