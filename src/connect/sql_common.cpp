#include "sql_common.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "civicbus/core/crypto.hpp"

namespace civicbus::connect::detail {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// Binds JSON values as SQL parameters. Text views point into the batch or into `scratch_`,
// which is reserved up front so that views stay valid while a statement runs.
class ParamBinder {
 public:
  // PostgreSQL does not cast a bigint parameter to boolean, so booleans go as untyped text
  // there ("true" reads into a boolean or a text column alike).
  explicit ParamBinder(storage::Dialect dialect)
      : bools_as_text_(dialect == storage::Dialect::kPostgres) {}
  void reset(std::size_t n) {
    params_.clear();
    scratch_.clear();
    scratch_.reserve(n);
  }
  void add(const Json& v) {
    switch (v.type()) {
      case Json::Type::kNull:
        params_.emplace_back(nullptr);
        break;
      case Json::Type::kBool:
        if (bools_as_text_) {
          params_.emplace_back(std::string_view(v.as_bool() ? "true" : "false"));
        } else {
          params_.emplace_back(static_cast<std::int64_t>(v.as_bool() ? 1 : 0));
        }
        break;
      case Json::Type::kInt:
        params_.emplace_back(v.as_int());
        break;
      case Json::Type::kDouble:
        params_.emplace_back(v.as_double());
        break;
      case Json::Type::kString:
        params_.emplace_back(std::string_view(v.as_string()));
        break;
      case Json::Type::kArray:
      case Json::Type::kObject:
        scratch_.push_back(v.dump());
        params_.emplace_back(std::string_view(scratch_.back()));
        break;
    }
  }
  std::span<const storage::Value> params() const { return params_; }

 private:
  bool bools_as_text_;
  std::vector<storage::Value> params_;
  std::vector<std::string> scratch_;
};

// A refusal that concerns the row (a duplicate key, NOT NULL, CHECK, a type a STRICT table
// refuses), not the database (I/O, a read-only file, a missing table).
bool is_row_error(const Status& s) {
  if (s.code() == ErrorCode::kAlreadyExists || s.code() == ErrorCode::kInvalidArgument) return true;
  if (s.code() != ErrorCode::kFailedPrecondition) return false;
  std::string m = lower(s.message());
  return contains(m, "constraint") || contains(m, "violates");
}

std::string sql_type_of(const Json& v, storage::Dialect dialect) {
  bool pg = dialect == storage::Dialect::kPostgres;
  switch (v.type()) {
    case Json::Type::kBool:
      return pg ? "BOOLEAN" : "INTEGER";
    case Json::Type::kInt:
      return pg ? "BIGINT" : "INTEGER";
    case Json::Type::kDouble:
      return pg ? "DOUBLE PRECISION" : "REAL";
    case Json::Type::kArray:
    case Json::Type::kObject:
      return pg ? "JSONB" : "TEXT";
    default:
      return "TEXT";
  }
}

bool less_json(const Json& a, const Json& b) {
  if (a.is_number() && b.is_number()) return a.as_double() < b.as_double();
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
  return false;
}

}  // namespace

std::string quote_identifier(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

FieldType field_type_of_declared(std::string_view declared) {
  std::string t = lower(declared);
  if (contains(t, "bool")) return FieldType::kBoolean;
  if (contains(t, "timestamp") || contains(t, "datetime")) return FieldType::kTimestamp;
  if (t == "date") return FieldType::kDate;
  if (contains(t, "json")) return FieldType::kJson;
  if (contains(t, "int") || contains(t, "serial")) return FieldType::kInteger;
  if (contains(t, "real") || contains(t, "floa") || contains(t, "doub") || contains(t, "numeric") ||
      contains(t, "decimal")) {
    return FieldType::kNumber;
  }
  return FieldType::kString;
}

std::string qualified_name(std::string_view schema, std::string_view table) {
  if (schema.empty()) return quote_identifier(table);
  return quote_identifier(schema) + "." + quote_identifier(table);
}

namespace {
// A libpq keyword value in single quotes, with quotes and backslashes escaped.
void append_conninfo(std::string& out, std::string_view keyword, std::string_view value) {
  if (value.empty()) return;
  if (!out.empty()) out += ' ';
  out.append(keyword);
  out += "='";
  for (char c : value) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  out += '\'';
}
}  // namespace

Result<std::string> postgres_connection_string(const Json& config) {
  if (std::string uri = config.get_string("uri"); !uri.empty()) return uri;
  if (config.get_string("dbname").empty()) {
    return invalid_argument(
        "PostgreSQL connection: set 'uri' (postgresql://user@host:5432/dbname) or at least "
        "'dbname' (with 'host', 'port', 'user', 'password' as needed)");
  }
  std::string out;
  append_conninfo(out, "host", config.get_string("host"));
  if (const Json* port = config.find("port"); port != nullptr && !port->is_null()) {
    append_conninfo(out, "port", port->is_int() ? std::to_string(port->as_int()) : port->dump());
  }
  append_conninfo(out, "dbname", config.get_string("dbname"));
  append_conninfo(out, "user", config.get_string("user"));
  append_conninfo(out, "password", config.get_string("password"));
  append_conninfo(out, "sslmode", config.get_string("sslmode"));
  return out;
}

Result<std::unique_ptr<storage::Database>> open_postgres_for(const Json& config,
                                                             std::string_view connector) {
  CIVICBUS_ASSIGN_OR_RETURN(std::string connection, postgres_connection_string(config));
  storage::PostgresOptions options;
  options.connection = std::move(connection);
  options.application_name = "civicbus-" + std::string(connector);
  auto db = storage::open_postgres(options);
  if (!db.ok()) return db.status().with_context(fmt::format("{} connector", connector));
  return std::move(db).value();
}

FieldType field_type_of_postgres(std::string_view udt) {
  if (udt == "int2" || udt == "int4" || udt == "int8" || udt == "oid") return FieldType::kInteger;
  if (udt == "float4" || udt == "float8" || udt == "numeric") return FieldType::kNumber;
  if (udt == "bool") return FieldType::kBoolean;
  if (udt == "date") return FieldType::kDate;
  if (udt == "timestamp" || udt == "timestamptz") return FieldType::kTimestamp;
  if (udt == "json" || udt == "jsonb") return FieldType::kJson;
  return FieldType::kString;
}

Result<std::vector<std::string>> postgres_tables(storage::Database& db, std::string_view schema) {
  std::vector<std::string> tables;
  CIVICBUS_RETURN_IF_ERROR(db.query(
      "SELECT table_name FROM information_schema.tables WHERE CAST(table_schema AS TEXT) = ? "
      "AND table_type IN ('BASE TABLE', 'VIEW') AND table_name NOT LIKE '\\_civicbus%' "
      "ORDER BY table_name",
      {schema}, [&](const storage::Row& row) {
        tables.emplace_back(row.get_text(0));
        return true;
      }));
  return tables;
}

Result<StreamSpec> describe_postgres_table(storage::Database& db, std::string_view schema,
                                           std::string_view table) {
  StreamSpec stream;
  stream.name = std::string(table);
  CIVICBUS_RETURN_IF_ERROR(
      db.query("SELECT column_name, udt_name, is_nullable FROM information_schema.columns "
               "WHERE CAST(table_schema AS TEXT) = ? AND CAST(table_name AS TEXT) = ? "
               "ORDER BY ordinal_position",
               {schema, table}, [&](const storage::Row& row) {
                 FieldSpec f;
                 f.name = std::string(row.get_text(0));
                 f.type = field_type_of_postgres(row.get_text(1));
                 f.nullable = row.get_text(2) != "NO";
                 stream.fields.push_back(std::move(f));
                 return true;
               }));
  if (stream.fields.empty()) {
    return not_found(fmt::format("database '{}' has no table '{}' in schema '{}'", db.describe(),
                                 table, schema));
  }
  // indkey lists the key's columns in key order; array_position keeps that order.
  const std::string name = qualified_name(schema, table);
  CIVICBUS_RETURN_IF_ERROR(db.query(
      "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND "
      "a.attnum = ANY(i.indkey) WHERE i.indrelid = CAST(? AS regclass) AND i.indisprimary "
      "ORDER BY array_position(CAST(i.indkey AS int2[]), a.attnum)",
      {std::string_view(name)}, [&](const storage::Row& row) {
        stream.primary_key.emplace_back(row.get_text(0));
        return true;
      }));
  return stream;
}

Result<std::vector<std::string>> sqlite_tables(storage::Database& db) {
  std::vector<std::string> tables;
  CIVICBUS_RETURN_IF_ERROR(
      db.query("SELECT name FROM sqlite_master WHERE type IN ('table','view') AND name NOT LIKE "
               "'sqlite_%' AND name NOT LIKE '\\_civicbus%' ESCAPE '\\' ORDER BY name",
               {}, [&](const storage::Row& row) {
                 tables.emplace_back(row.get_text(0));
                 return true;
               }));
  return tables;
}

Result<StreamSpec> describe_sqlite_table(storage::Database& db, std::string_view table) {
  StreamSpec stream;
  stream.name = std::string(table);
  std::vector<std::pair<int, std::string>> key;
  CIVICBUS_RETURN_IF_ERROR(db.query("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?)",
                                    {std::string_view(table)}, [&](const storage::Row& row) {
                                      FieldSpec f;
                                      f.name = std::string(row.get_text(0));
                                      f.type = field_type_of_declared(row.get_text(1));
                                      f.nullable = row.get_int(2) == 0;
                                      if (row.get_int(3) > 0)
                                        key.emplace_back(static_cast<int>(row.get_int(3)), f.name);
                                      stream.fields.push_back(std::move(f));
                                      return true;
                                    }));
  if (stream.fields.empty()) {
    return not_found(fmt::format("database '{}' has no table '{}'", db.describe(), table));
  }
  std::sort(key.begin(), key.end());
  for (auto& [_, name] : key) stream.primary_key.push_back(std::move(name));
  return stream;
}

Result<StreamSpec> describe_query(storage::Database& db, std::string_view stream_name,
                                  std::string_view query) {
  StreamSpec stream;
  stream.name = std::string(stream_name);
  std::string sql = fmt::format("SELECT * FROM ({}) AS src LIMIT 1", query);
  bool seen = false;
  CIVICBUS_RETURN_IF_ERROR(db.query(sql, {}, [&](const storage::Row& row) {
    seen = true;
    for (int i = 0; i < row.column_count(); ++i) {
      FieldSpec f;
      f.name = std::string(row.column_name(i));
      switch (row.kind(i)) {
        case storage::Row::Kind::kInteger:
          f.type = FieldType::kInteger;
          break;
        case storage::Row::Kind::kReal:
          f.type = FieldType::kNumber;
          break;
        default:
          f.type = FieldType::kString;
      }
      stream.fields.push_back(std::move(f));
    }
    return false;
  }));
  if (!seen) {
    return failed_precondition(fmt::format(
        "query of stream '{}' returned no row, so its columns cannot be discovered", stream_name));
  }
  return stream;
}

Json json_of(const storage::Row& row, int column, FieldType type) {
  switch (row.kind(column)) {
    case storage::Row::Kind::kNull:
      return Json();
    case storage::Row::Kind::kInteger:
      if (type == FieldType::kBoolean) return Json(row.get_int(column) != 0);
      return Json(row.get_int(column));
    case storage::Row::Kind::kReal:
      return Json(row.get_double(column));
    case storage::Row::Kind::kBlob:
      return Json(crypto::base64_encode(row.get_blob(column)));
    case storage::Row::Kind::kText:
      break;
  }
  std::string_view text = row.get_text(column);
  switch (type) {
    case FieldType::kJson:
      if (auto parsed = Json::parse(text); parsed.ok()) return std::move(parsed).value();
      return Json(text);
    case FieldType::kBoolean:
      if (text == "t" || text == "true") return Json(true);
      if (text == "f" || text == "false") return Json(false);
      return Json(text);
    default:
      return Json(text);
  }
}

Status read_sql_stream(storage::Database& db, const SqlReadPlan& plan, const ReadRequest& request,
                       RecordEmitter& out, std::int64_t& budget) {
  const StreamSpec& stream = plan.stream;
  std::vector<std::string> columns;
  for (const auto& f : stream.fields) columns.push_back(f.name);
  std::string sql = fmt::format("SELECT * FROM {} AS src", plan.from);
  std::vector<storage::Value> params;
  Json start_cursor;
  if (stream.supports_incremental()) {
    if (const Json* state = request.stream_state(stream.name)) {
      if (const Json* c = state->find("cursor"); c != nullptr && !c->is_null()) start_cursor = *c;
    }
    if (!start_cursor.is_null()) {
      sql += fmt::format(" WHERE {} > ?", quote_identifier(stream.cursor_field));
      if (start_cursor.is_int()) {
        params.emplace_back(start_cursor.as_int());
      } else if (start_cursor.is_double()) {
        params.emplace_back(start_cursor.as_double());
      } else {
        params.emplace_back(std::string_view(start_cursor.as_string()));
      }
    }
    sql += fmt::format(" ORDER BY {}", quote_identifier(stream.cursor_field));
  }
  const int cursor_index =
      stream.supports_incremental()
          ? static_cast<int>(std::find(columns.begin(), columns.end(), stream.cursor_field) -
                             columns.begin())
          : -1;
  const std::size_t batch_size = std::max<std::size_t>(1, request.batch_size);
  RecordBatch batch(stream.name, columns);
  batch.records.reserve(std::min<std::size_t>(batch_size, 65536));
  Json last_cursor = start_cursor;  // the cursor of the last row read
  Json safe_cursor = start_cursor;  // every row at or below it has been read
  std::int64_t position = 0;
  Status emit_status;

  auto flush = [&](bool final) -> Status {
    if (!batch.empty()) {
      RecordBatch full(stream.name, columns);
      std::swap(full.records, batch.records);
      CIVICBUS_RETURN_IF_ERROR(out.emit(std::move(full)));
    }
    if (cursor_index >= 0) {
      const Json& c = final ? last_cursor : safe_cursor;
      if (!c.is_null())
        CIVICBUS_RETURN_IF_ERROR(out.checkpoint(stream.name, Json::object({{"cursor", c}})));
    }
    return Status();
  };

  Status query_status = db.query(sql, params, [&](const storage::Row& row) {
    Record record;
    record.position = ++position;
    record.values.reserve(columns.size());
    for (int i = 0; i < static_cast<int>(columns.size()); ++i) {
      record.values.push_back(json_of(row, i, stream.fields[static_cast<std::size_t>(i)].type));
    }
    if (cursor_index >= 0) {
      const Json& c = record.values[static_cast<std::size_t>(cursor_index)];
      if (!last_cursor.is_null() && less_json(last_cursor, c)) safe_cursor = last_cursor;
      last_cursor = c;
    }
    batch.records.push_back(std::move(record));
    if (budget > 0 && --budget == 0) return false;
    if (batch.size() >= batch_size) {
      emit_status = flush(false);
      if (!emit_status.ok()) return false;
      if (out.cancelled()) {
        emit_status = cancelled("read of stream '" + stream.name + "' cancelled");
        return false;
      }
    }
    return true;
  });
  CIVICBUS_RETURN_IF_ERROR(emit_status);
  if (!query_status.ok()) {
    return query_status.with_context(
        fmt::format("reading stream '{}' from '{}'", stream.name, db.describe()));
  }
  // A sample that stopped early has not read every row of the last cursor value.
  return flush(budget != 0);
}

Status SqlWriter::prepare(storage::Database& db, const SqlWriteOptions& options,
                          const RecordBatch& batch) {
  const std::string target = qualified_name(options.schema, options.table);
  std::string signature = target + '\n' + std::to_string(static_cast<int>(options.mode));
  for (const auto& k : options.key) signature += "\nk" + k;
  for (const auto& c : batch.columns) signature += "\nc" + c;
  if (signature == signature_) return Status();

  if (options.mode == WriteMode::kUpsert) {
    if (options.key.empty()) {
      return invalid_argument(fmt::format("upsert into '{}' needs a key", options.table));
    }
    for (const auto& k : options.key) {
      if (batch.column_index(k) < 0) {
        return invalid_argument(fmt::format(
            "upsert key column '{}' is not in the records written to '{}'", k, options.table));
      }
    }
  }
  if (options.create_table) {
    std::string ddl = fmt::format("CREATE TABLE IF NOT EXISTS {} (", target);
    for (std::size_t i = 0; i < batch.columns.size(); ++i) {
      // The type of the first non-null value; TEXT when the batch has none.
      Json sample;
      for (const auto& r : batch.records) {
        const Json& v = RecordBatch::value(r, static_cast<int>(i));
        if (!v.is_null()) {
          sample = v;
          break;
        }
      }
      ddl += fmt::format("{}{} {}", i ? ", " : "", quote_identifier(batch.columns[i]),
                         sql_type_of(sample, db.dialect()));
    }
    if (!options.key.empty()) {
      ddl += ", PRIMARY KEY (";
      for (std::size_t i = 0; i < options.key.size(); ++i) {
        ddl += (i ? ", " : "") + quote_identifier(options.key[i]);
      }
      ddl += ")";
    }
    ddl += ")";
    CIVICBUS_RETURN_IF_ERROR(db.execute_script(ddl));
  }
  std::string cols;
  std::string marks;
  for (std::size_t i = 0; i < batch.columns.size(); ++i) {
    cols += (i ? ", " : "") + quote_identifier(batch.columns[i]);
    marks += i ? ", ?" : "?";
  }
  std::string sql = fmt::format("INSERT INTO {} ({}) VALUES ({})", target, cols, marks);
  if (options.mode == WriteMode::kUpsert) {
    std::string key;
    for (std::size_t i = 0; i < options.key.size(); ++i) {
      key += (i ? ", " : "") + quote_identifier(options.key[i]);
    }
    std::string updates;
    for (const auto& c : batch.columns) {
      if (std::find(options.key.begin(), options.key.end(), c) != options.key.end()) continue;
      updates +=
          (updates.empty() ? "" : ", ") + fmt::format("{0} = excluded.{0}", quote_identifier(c));
    }
    sql += updates.empty() ? fmt::format(" ON CONFLICT ({}) DO NOTHING", key)
                           : fmt::format(" ON CONFLICT ({}) DO UPDATE SET {}", key, updates);
  }
  insert_sql_ = std::move(sql);
  signature_ = std::move(signature);
  return Status();
}

Result<WriteResult> SqlWriter::write(storage::Database& db, const SqlWriteOptions& options,
                                     const RecordBatch& batch) {
  WriteResult result;
  if (batch.columns.empty()) return result;
  CIVICBUS_RETURN_IF_ERROR(prepare(db, options, batch));
  if (!options.batch_id.empty() && !batches_table_ready_) {
    CIVICBUS_RETURN_IF_ERROR(db.execute_script(
        "CREATE TABLE IF NOT EXISTS _civicbus_batches (batch_id TEXT PRIMARY KEY, "
        "table_name TEXT NOT NULL, written BIGINT NOT NULL, rejected BIGINT NOT NULL)"));
    batches_table_ready_ = true;
  }
  ParamBinder binder(db.dialect());
  const bool postgres = db.dialect() == storage::Dialect::kPostgres;
  // Inserts every record. SQLite undoes just the failed statement, so a refused row is noted
  // and the rest go on. PostgreSQL aborts the whole transaction on any error, so there the
  // batch first runs unfenced (one savepoint around it, the common case costs nothing more);
  // at the first refused row it is rolled back and run again with a savepoint per row.
  auto insert_rows = [&](bool fenced, bool* refused) -> Status {
    const std::size_t width = batch.columns.size();
    for (const Record& record : batch.records) {
      binder.reset(width);
      for (std::size_t i = 0; i < width; ++i) {
        binder.add(RecordBatch::value(record, static_cast<int>(i)));
      }
      if (fenced) CIVICBUS_RETURN_IF_ERROR(db.execute_script("SAVEPOINT civicbus_row"));
      auto changed = db.execute(insert_sql_, binder.params());
      if (changed.ok()) {
        if (fenced) CIVICBUS_RETURN_IF_ERROR(db.execute_script("RELEASE SAVEPOINT civicbus_row"));
        ++result.written;
        continue;
      }
      if (!is_row_error(changed.status())) return changed.status();
      if (refused != nullptr) {
        *refused = true;
        return Status();
      }
      if (fenced) {
        CIVICBUS_RETURN_IF_ERROR(db.execute_script(
            "ROLLBACK TO SAVEPOINT civicbus_row; RELEASE SAVEPOINT civicbus_row"));
      }
      RowError e;
      e.position = record.position;
      e.reason = changed.status().message();
      if (!options.key.empty()) {
        e.field = options.key.front();
        e.value = RecordBatch::value(record, batch.column_index(options.key.front())).dump();
      }
      result.rejected.push_back(std::move(e));
    }
    return Status();
  };
  Status body_status = db.transaction([&]() -> Status {
    if (!options.batch_id.empty()) {
      std::optional<std::int64_t> done;
      CIVICBUS_RETURN_IF_ERROR(db.query("SELECT written FROM _civicbus_batches WHERE batch_id = ?",
                                        {std::string_view(options.batch_id)},
                                        [&](const storage::Row& row) {
                                          done = row.get_int(0);
                                          return false;
                                        }));
      if (done) {  // already loaded before a crash or a retry: acknowledge, write nothing
        result.written = *done;
        return Status();
      }
    }
    if (postgres) {
      bool refused = false;
      CIVICBUS_RETURN_IF_ERROR(db.execute_script("SAVEPOINT civicbus_batch"));
      CIVICBUS_RETURN_IF_ERROR(insert_rows(false, &refused));
      if (refused) {
        CIVICBUS_RETURN_IF_ERROR(db.execute_script("ROLLBACK TO SAVEPOINT civicbus_batch"));
        result = WriteResult();
        CIVICBUS_RETURN_IF_ERROR(insert_rows(true, nullptr));
      }
      CIVICBUS_RETURN_IF_ERROR(db.execute_script("RELEASE SAVEPOINT civicbus_batch"));
    } else {
      CIVICBUS_RETURN_IF_ERROR(insert_rows(false, nullptr));
    }
    if (!options.batch_id.empty()) {
      CIVICBUS_RETURN_IF_ERROR(
          db.execute("INSERT INTO _civicbus_batches (batch_id, table_name, written, rejected) "
                     "VALUES (?, ?, ?, ?)",
                     {std::string_view(options.batch_id), std::string_view(options.table),
                      result.written, static_cast<std::int64_t>(result.rejected.size())})
              .status());
    }
    return Status();
  });
  if (!body_status.ok()) {
    return body_status.with_context(
        fmt::format("writing {} records into '{}'", batch.size(), options.table));
  }
  return result;
}

Status SqlTableConnector::check(const ConnectorContext& context) {
  CIVICBUS_ASSIGN_OR_RETURN(storage::Database * db, database(context.config, false));
  CIVICBUS_ASSIGN_OR_RETURN(auto names, tables(*db, context.config));
  std::string table = context.config.get_string("table");
  if (!table.empty() && context.config.get_string("query").empty() &&
      !context.config.get_bool("create_table", true) &&
      std::find(names.begin(), names.end(), table) == names.end()) {
    return not_found(fmt::format("database '{}' has no table '{}'", db->describe(), table));
  }
  return Status();
}

Result<std::vector<StreamSpec>> SqlTableConnector::discover(const ConnectorContext& context) {
  CIVICBUS_ASSIGN_OR_RETURN(storage::Database * db, database(context.config, false));
  std::vector<StreamSpec> streams;
  const std::string cursor = context.config.get_string("cursor_field");
  if (std::string query = context.config.get_string("query"); !query.empty()) {
    CIVICBUS_ASSIGN_OR_RETURN(StreamSpec s, describe_query(*db, "query", query));
    s.cursor_field = cursor;
    streams.push_back(std::move(s));
    return streams;
  }
  std::vector<std::string> names;
  if (std::string table = context.config.get_string("table"); !table.empty()) {
    names.push_back(table);
  } else {
    CIVICBUS_ASSIGN_OR_RETURN(names, tables(*db, context.config));
  }
  for (const auto& name : names) {
    CIVICBUS_ASSIGN_OR_RETURN(StreamSpec s, describe_table(*db, context.config, name));
    if (!cursor.empty()) {
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

Status SqlTableConnector::read(const ConnectorContext& context, const ReadRequest& request,
                               RecordEmitter& out) {
  CIVICBUS_ASSIGN_OR_RETURN(auto streams, discover(context));
  CIVICBUS_ASSIGN_OR_RETURN(storage::Database * db, database(context.config, false));
  std::int64_t budget = request.max_records;
  const std::string query = context.config.get_string("query");
  for (const auto& stream : streams) {
    if (!request.streams.empty() && std::find(request.streams.begin(), request.streams.end(),
                                              stream.name) == request.streams.end()) {
      continue;
    }
    SqlReadPlan plan;
    plan.stream = stream;
    plan.from = query.empty() ? table_reference(context.config, stream.name) : "(" + query + ")";
    CIVICBUS_RETURN_IF_ERROR(read_sql_stream(*db, plan, request, out, budget));
    if (budget == 0) break;
  }
  return Status();
}

Result<WriteResult> SqlTableConnector::write(const ConnectorContext& context,
                                             const WriteRequest& request,
                                             const RecordBatch& batch) {
  CIVICBUS_ASSIGN_OR_RETURN(storage::Database * db, database(context.config, true));
  SqlWriteOptions options;
  options.table = request.stream.empty() ? context.config.get_string("table") : request.stream;
  if (options.table.empty()) {
    return invalid_argument(
        fmt::format("{} sink needs a table: set 'table' in the config or the stream", spec_.name));
  }
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
  std::lock_guard lock(write_mutex_);
  return writer_.write(*db, options, batch);
}

}  // namespace civicbus::connect::detail
