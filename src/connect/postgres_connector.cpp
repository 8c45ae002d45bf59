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

ConnectorSpec postgres_spec() {
  ConnectorSpec spec;
  spec.name = "postgres";
  spec.title = "PostgreSQL table";
  spec.description =
      "Reads a table or query of a PostgreSQL database (incremental by a cursor column) and "
      "writes batches into a table (append or upsert by key, exactly once per batch id).";
  spec.format_source = "PostgreSQL frontend/backend protocol through libpq";
  spec.is_source = true;
  spec.is_sink = true;
  spec.config_schema = config_schema();
  return spec;
}

class PostgresConnector final : public detail::SqlTableConnector {
 public:
  PostgresConnector() : SqlTableConnector(postgres_spec()) {}

 private:
  std::string schema(const Json& config) override { return config.get_string("schema", "public"); }

  // One connection per connector instance, opened on first use; a call with another
  // connection string reconnects.
  Result<storage::Database*> database(const Json& config, bool) override {
    std::lock_guard lock(mutex_);
    CIVICBUS_ASSIGN_OR_RETURN(std::string connection, detail::postgres_connection_string(config));
    if (db_ != nullptr && connection == connection_) return db_.get();
    CIVICBUS_ASSIGN_OR_RETURN(db_, detail::open_postgres_for(config, "postgres"));
    connection_ = std::move(connection);
    reset_writer();
    return db_.get();
  }
  Result<std::vector<std::string>> tables(storage::Database& db, const Json& config) override {
    return detail::postgres_tables(db, schema(config));
  }
  Result<StreamSpec> describe_table(storage::Database& db, const Json& config,
                                    std::string_view table) override {
    return detail::describe_postgres_table(db, schema(config), table);
  }
  std::string table_reference(const Json& config, std::string_view table) override {
    return detail::qualified_name(schema(config), table);
  }

  std::mutex mutex_;
  std::unique_ptr<storage::Database> db_;
  std::string connection_;  // holds the password: never logged nor returned
};

}  // namespace

namespace detail {
Status add_database_connectors(ConnectorCatalog& catalog) {
  CIVICBUS_RETURN_IF_ERROR(catalog.add([] { return std::make_unique<PostgresConnector>(); }));
  return add_amanda_connector(catalog);
}
}  // namespace detail

}  // namespace civicbus::connect
