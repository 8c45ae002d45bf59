// What the SQL connectors (sqlite, postgres, amanda) share: describing tables as streams,
// reading a table or query in cursor order with safe checkpoints, and writing batches with
// append or upsert, exactly once per batch id, rows the database refuses reported one by one.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/connect/connector.hpp"
#include "civicbus/storage/database.hpp"

namespace civicbus::connect::detail {

// "name" with embedded quotes doubled (valid in SQLite and PostgreSQL).
std::string quote_identifier(std::string_view name);

// A declared SQL column type ("INTEGER", "varchar(20)", "timestamp with time zone") as a
// field type, by the affinity rules of SQLite extended with date and time names.
FieldType field_type_of_declared(std::string_view declared);

// `schema`.`table` quoted, or just the table when `schema` is empty.
std::string qualified_name(std::string_view schema, std::string_view table);

Result<std::vector<std::string>> sqlite_tables(storage::Database& db);

// The libpq connection string of a connector's config: `uri` as given, else `host`, `port`,
// `dbname`, `user`, `password` and `sslmode` as quoted keyword=value pairs.
// kInvalidArgument when the config has neither a uri nor a dbname.
Result<std::string> postgres_connection_string(const Json& config);
// Opens the connection of a connector's config; errors name `connector` and the target,
// never the password.
Result<std::unique_ptr<storage::Database>> open_postgres_for(const Json& config,
                                                             std::string_view connector);

// A PostgreSQL column type by its catalog name (information_schema.columns.udt_name: "int4",
// "timestamptz", "jsonb"); types without a JSON counterpart (interval, point, arrays) are
// strings in their text form.
FieldType field_type_of_postgres(std::string_view udt_name);
// Tables and views of `schema` (information_schema), civicbus' own `_civicbus*` tables left out.
Result<std::vector<std::string>> postgres_tables(storage::Database& db, std::string_view schema);
// Columns (information_schema.columns: types and nullability) and the primary key (pg_index,
// in key order) of `schema`.`table`.
Result<StreamSpec> describe_postgres_table(storage::Database& db, std::string_view schema,
                                           std::string_view table);
Result<StreamSpec> describe_sqlite_table(storage::Database& db, std::string_view table);
// The columns a query returns (types from the values of its first row; string when none).
Result<StreamSpec> describe_query(storage::Database& db, std::string_view stream,
                                  std::string_view query);

// The value of a result column as JSON: integers, reals and text as they are, blobs as
// base64, text of `json` fields parsed.
Json json_of(const storage::Row& row, int column, FieldType type);

struct SqlReadPlan {
  StreamSpec stream;
  std::string from;  // a quoted table name or "(SELECT …)"
};

// Reads `plan` in cursor order (resuming after the request's state for the stream) and
// emits batches. A checkpoint names only cursor values whose rows were all emitted, so rows
// sharing the cursor value of a batch's last row are read again after a restart. `budget`
// counts down records when non-negative (a sample); reading stops at zero.
Status read_sql_stream(storage::Database& db, const SqlReadPlan& plan, const ReadRequest& request,
                       RecordEmitter& out, std::int64_t& budget);

struct SqlWriteOptions {
  std::string table;
  std::string schema;  // PostgreSQL: the table's schema; empty: the search path decides
  bool create_table = true;
  WriteMode mode = WriteMode::kAppend;
  std::vector<std::string> key;
  std::string batch_id;
};

// Writes batches into tables of one database. Keeps the statement texts it built per table
// and column list, so a run of batches with one shape formats its SQL once.
class SqlWriter {
 public:
  Result<WriteResult> write(storage::Database& db, const SqlWriteOptions& options,
                            const RecordBatch& batch);

 private:
  Status prepare(storage::Database& db, const SqlWriteOptions& options, const RecordBatch& batch);

  std::string signature_;  // table, mode, key and columns the statement below was built for
  std::string insert_sql_;
  bool batches_table_ready_ = false;
};

// A database's tables (or a query) as streams and as a sink: what the `sqlite` and
// `postgres` connectors share. Config keys: table, query, cursor_field, primary_key,
// create_table. A subclass says how to connect, which tables exist, how a table is
// described and named in SQL.
class SqlTableConnector : public Connector {
 public:
  const ConnectorSpec& spec() const override { return spec_; }
  Status check(const ConnectorContext& context) override;
  Result<std::vector<StreamSpec>> discover(const ConnectorContext& context) override;
  Status read(const ConnectorContext& context, const ReadRequest& request,
              RecordEmitter& out) override;
  Result<WriteResult> write(const ConnectorContext& context, const WriteRequest& request,
                            const RecordBatch& batch) override;

 protected:
  explicit SqlTableConnector(ConnectorSpec spec) : spec_(std::move(spec)) {}

  // The connection for `config`: one per connector instance, opened on first use and opened
  // again when the config names another database. `for_write`: a sink may create it.
  virtual Result<storage::Database*> database(const Json& config, bool for_write) = 0;
  virtual Result<std::vector<std::string>> tables(storage::Database& db, const Json& config) = 0;
  virtual Result<StreamSpec> describe_table(storage::Database& db, const Json& config,
                                            std::string_view table) = 0;
  // The table as SQL names it (quoted; schema-qualified where the dialect has schemas).
  virtual std::string table_reference(const Json& config, std::string_view table) = 0;
  // The schema a sink writes into; empty: none.
  virtual std::string schema(const Json&) { return {}; }

  // A new connection invalidates the writer's prepared statement texts.
  void reset_writer() { writer_ = SqlWriter(); }

 private:
  ConnectorSpec spec_;
  std::mutex write_mutex_;
  SqlWriter writer_;
};

}  // namespace civicbus::connect::detail
