#include "storage/postgres.hpp"

#include <fmt/format.h>

#include <array>
#include <cctype>
#include <charconv>
#include <cstring>
#include <limits>
#include <list>
#include <utility>

#include "storage/sql_text.hpp"

namespace civicbus::storage {
namespace detail {
namespace {

// Type OIDs from the server's catalog/pg_type.h (stable since forever; libpq
// does not ship them in its client headers).
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kFloat4Oid = 700;
constexpr Oid kFloat8Oid = 701;
constexpr Oid kNumericOid = 1700;

// libpq's messages end in a newline and continue on tab-indented lines; one
// line reads better inside a Status.
std::string one_line(std::string_view text) {
  std::string out;
  bool pending_break = false;
  for (char c : text) {
    if (c == '\n' || c == '\r') {
      pending_break = !out.empty();
      continue;
    }
    if (pending_break) {
      out += "; ";
      pending_break = false;
      if (c == '\t') continue;
    }
    out += c;
  }
  return out;
}

bool is_ident_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' ||
         (static_cast<unsigned char>(c) & 0x80);
}

// The tag of a dollar quote starting at sql[i] ("$$" or "$tag$"), or empty when
// sql[i] starts something else ($1, or a `$` inside an identifier).
std::string_view dollar_tag(std::string_view sql, std::size_t i) {
  if (i > 0 && is_ident_char(sql[i - 1])) return {};
  std::size_t j = i + 1;
  if (j < sql.size() && std::isdigit(static_cast<unsigned char>(sql[j]))) return {};
  while (j < sql.size() && is_ident_char(sql[j])) ++j;
  if (j >= sql.size() || sql[j] != '$') return {};
  return sql.substr(i, j - i + 1);
}

void ignore_notice(void*, const char*) {
  // NOTICEs ("relation already exists, skipping") would go to stderr; the
  // caller asked for the statement and gets its result, nothing in them needs
  // acting on.
}

// A row of a fully fetched result. Text views point into the PGresult, which
// lives until the query() call returns; bytea values are decoded once per
// column into `decoded_`.
class PostgresRow final : public Row {
 public:
  PostgresRow(const PGresult* result, int row)
      : result_(result), row_(row), count_(PQnfields(result)) {}

  void move_to(int row) {
    row_ = row;
    decoded_.clear();
  }

  int column_count() const override { return count_; }
  bool is_null(int column) const override {
    return !in_range(column) || PQgetisnull(result_, row_, column);
  }
  std::int64_t get_int(int column) const override {
    if (is_null(column)) return 0;
    std::string_view text = raw(column);
    if (PQftype(result_, column) == kBoolOid) return text == "t" ? 1 : 0;
    std::int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc() && end == text.data() + text.size()) return value;
    // numeric "2.50", float8 "1e3": truncated, as sqlite3_column_int64 does.
    double d = get_double(column);
    return d != d ? 0 : static_cast<std::int64_t>(d);
  }
  double get_double(int column) const override {
    if (is_null(column)) return 0.0;
    std::string_view text = raw(column);
    double value = 0.0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc()) return value;
    if (text == "Infinity") return std::numeric_limits<double>::infinity();
    if (text == "-Infinity") return -std::numeric_limits<double>::infinity();
    return 0.0;
  }
  std::string_view get_text(int column) const override {
    if (is_null(column)) return {};
    // bytea read as text gives its bytes, as SQLite does for a blob.
    if (PQftype(result_, column) == kByteaOid) return decoded(column);
    return raw(column);
  }
  std::string_view get_blob(int column) const override {
    if (is_null(column)) return {};
    if (PQftype(result_, column) == kByteaOid) return decoded(column);
    return raw(column);
  }
  std::string_view column_name(int column) const override {
    if (!in_range(column)) return {};
    const char* name = PQfname(result_, column);
    return name ? std::string_view(name) : std::string_view();
  }
  // PostgreSQL types columns, not values: the kind follows the column's type. numeric reads as
  // a real (as SQLite's NUMERIC affinity stores 2.50), so exact decimals need get_text().
  Kind kind(int column) const override {
    if (is_null(column)) return Kind::kNull;
    switch (PQftype(result_, column)) {
      case kInt2Oid:
      case kInt4Oid:
      case kInt8Oid:
        return Kind::kInteger;
      case kFloat4Oid:
      case kFloat8Oid:
      case kNumericOid:
        return Kind::kReal;
      case kByteaOid:
        return Kind::kBlob;
      default:
        return Kind::kText;
    }
  }

 private:
  bool in_range(int column) const { return column >= 0 && column < count_; }
  std::string_view raw(int column) const {
    return std::string_view(PQgetvalue(result_, row_, column),
                            static_cast<std::size_t>(PQgetlength(result_, row_, column)));
  }
  std::string_view decoded(int column) const {
    for (const auto& [c, bytes] : decoded_) {
      if (c == column) return bytes;
    }
    std::size_t size = 0;
    unsigned char* bytes = PQunescapeBytea(
        reinterpret_cast<const unsigned char*>(PQgetvalue(result_, row_, column)), &size);
    if (bytes == nullptr) return {};
    decoded_.emplace_back(column, std::string(reinterpret_cast<const char*>(bytes), size));
    PQfreemem(bytes);
    return decoded_.back().second;
  }

  const PGresult* result_;
  int row_;
  int count_;
  // A deque-like list would do; rows rarely hold more than one or two blobs.
  // std::list keeps earlier views valid while later columns are decoded.
  mutable std::list<std::pair<int, std::string>> decoded_;
};

bool starts_with(const char* text, std::string_view prefix) {
  return text != nullptr && std::string_view(text).starts_with(prefix);
}

std::string_view sqlstate_of(const PGresult* result) {
  const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  return state ? std::string_view(state) : std::string_view();
}

// "postgresql://user@host:port/db" from what libpq resolved (environment and
// defaults included); it never shows the password.
std::string describe_target(const PGconn* conn) {
  auto text = [](const char* s) { return std::string_view(s ? s : ""); };
  std::string_view host = text(PQhost(conn));
  std::string_view port = text(PQport(conn));
  std::string_view user = text(PQuser(conn));
  std::string_view db = text(PQdb(conn));
  if (host.empty() && db.empty() && user.empty()) return "postgresql (unparsed connection string)";
  std::string out = "postgresql://";
  if (!user.empty()) fmt::format_to(std::back_inserter(out), "{}@", user);
  if (host.starts_with('/')) {
    // A unix socket directory cannot be the authority of a URI; libpq takes it
    // as ?host=.
    fmt::format_to(std::back_inserter(out), "/{}?host={}", db, host);
    if (!port.empty()) fmt::format_to(std::back_inserter(out), "&port={}", port);
    return out;
  }
  out += host;
  if (!port.empty()) fmt::format_to(std::back_inserter(out), ":{}", port);
  fmt::format_to(std::back_inserter(out), "/{}", db);
  return out;
}

// libpq reports connection failures as text only (no SQLSTATE reaches the
// client).
ErrorCode error_code_for_connect_failure(std::string_view message) {
  auto has = [&](std::string_view needle) { return message.find(needle) != message.npos; };
  if (has("password authentication failed") || has("no password supplied") ||
      has("authentication failed") || has("no pg_hba.conf entry"))
    return ErrorCode::kUnauthenticated;
  if (has("database \"") && has("does not exist")) return ErrorCode::kNotFound;
  if (has("invalid URI") || has("invalid connection option") || has("missing \"=\"") ||
      has("invalid integer value") || has("unterminated quoted string"))
    return ErrorCode::kInvalidArgument;
  return ErrorCode::kUnavailable;
}

}  // namespace

RewrittenSql rewrite_placeholders(std::string_view sql) {
  RewrittenSql out;
  out.sql.reserve(sql.size() + 16);
  std::size_t i = 0;
  const std::size_t n = sql.size();
  // Copies sql[i] up to and including the first `close` (honouring doubled
  // quotes and, in E'' strings, backslash escapes).
  auto copy_quoted = [&](char close, bool backslash_escapes) {
    out.sql += sql[i++];  // the opening quote
    while (i < n) {
      char c = sql[i];
      out.sql += c;
      ++i;
      if (backslash_escapes && c == '\\' && i < n) {
        out.sql += sql[i++];
      } else if (c == close) {
        if (i < n && sql[i] == close) {  // '' or "" inside the quotes
          out.sql += sql[i++];
        } else {
          return;
        }
      }
    }
  };
  while (i < n) {
    char c = sql[i];
    if (c == '\'') {
      bool escapes = i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e') &&
                     (i < 2 || !is_ident_char(sql[i - 2]));
      copy_quoted('\'', escapes);
    } else if (c == '"') {
      copy_quoted('"', false);
    } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      std::size_t end = sql.find('\n', i);
      end = end == sql.npos ? n : end;
      out.sql.append(sql.substr(i, end - i));
      i = end;
    } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      // Block comments nest in PostgreSQL.
      std::size_t start = i;
      int depth = 0;
      while (i < n) {
        if (sql[i] == '/' && i + 1 < n && sql[i + 1] == '*') {
          ++depth;
          i += 2;
        } else if (sql[i] == '*' && i + 1 < n && sql[i + 1] == '/') {
          i += 2;
          if (--depth == 0) break;
        } else {
          ++i;
        }
      }
      out.sql.append(sql.substr(start, i - start));
    } else if (c == '$' && !dollar_tag(sql, i).empty()) {
      std::string_view tag = dollar_tag(sql, i);
      std::size_t close = sql.find(tag, i + tag.size());
      std::size_t end = close == sql.npos ? n : close + tag.size();
      out.sql.append(sql.substr(i, end - i));
      i = end;
    } else if (c == '?') {
      fmt::format_to(std::back_inserter(out.sql), "${}", ++out.count);
      ++i;
    } else {
      out.sql += c;
      ++i;
    }
  }
  return out;
}

ErrorCode error_code_for_sqlstate(std::string_view state) {
  if (state.size() != 5) return ErrorCode::kInternal;
  if (state == "00000") return ErrorCode::kOk;
  if (state == "23505") return ErrorCode::kAlreadyExists;
  // NOT NULL, CHECK, foreign keys, exclusion: the data the statement needs is
  // not there or not valid (as the SQLite adapter maps its constraint errors).
  if (state.starts_with("23")) return ErrorCode::kFailedPrecondition;
  // Serialization failure, deadlock: a concurrent transaction won; retrying may
  // succeed.
  if (state.starts_with("40")) return ErrorCode::kAborted;
  if (state.starts_with("08")) return ErrorCode::kUnavailable;
  // admin / crash shutdown, cannot connect now, lock not available, object in
  // use.
  if (state == "57P01" || state == "57P02" || state == "57P03" || state == "55P03" ||
      state == "55006")
    return ErrorCode::kUnavailable;
  if (state == "57014") return ErrorCode::kCancelled;  // query_canceled, statement_timeout
  if (state == "42501") return ErrorCode::kPermissionDenied;
  if (state.starts_with("28")) return ErrorCode::kUnauthenticated;
  if (state == "42601") return ErrorCode::kInvalidArgument;
  // Bad values: out of range, invalid text representation, division by zero,
  // ...
  if (state.starts_with("22")) return ErrorCode::kInvalidArgument;
  // A read-only transaction or a standby refusing a write; a transaction
  // already aborted by an earlier error in it.
  if (state == "25006" || state == "25P02") return ErrorCode::kFailedPrecondition;
  if (state == "53100") return ErrorCode::kIoError;  // disk_full, as SQLITE_FULL
  if (state.starts_with("53") || state.starts_with("54")) return ErrorCode::kResourceExhausted;
  if (state.starts_with("58")) return ErrorCode::kIoError;
  if (state == "XX001" || state == "XX002") return ErrorCode::kDataLoss;
  // Undefined tables and columns, ambiguous names, wrong types: the SQL does
  // not match the schema, a bug in the code that wrote it (SQLite reports these
  // as SQLITE_ERROR).
  return ErrorCode::kInternal;
}

// ---- PostgresDatabase
// ----------------------------------------------------------------------

PostgresDatabase::PostgresDatabase(PGconn* conn, PostgresOptions options, std::string target)
    : conn_(conn), options_(std::move(options)), target_(std::move(target)) {}

PostgresDatabase::~PostgresDatabase() {
  // Closing the session frees its prepared statements and rolls back anything
  // still open.
  PQfinish(conn_);
}

Status PostgresDatabase::error_status(const PGresult* result, std::string_view sql) const {
  std::string_view state = sqlstate_of(result);
  std::string message;
  if (state.empty()) {
    // No server error: libpq itself failed (connection lost, out of memory,
    // protocol).
    const char* text = result ? PQresultErrorMessage(result) : nullptr;
    if (text == nullptr || *text == '\0') text = PQerrorMessage(conn_);
    const bool down = PQstatus(conn_) == CONNECTION_BAD;
    message = fmt::format("database '{}': {}{}", target_, down ? "connection lost: " : "",
                          one_line(text ? text : "unknown libpq error"));
    if (!sql.empty()) message += fmt::format(" in SQL \"{}\"", sql_snippet(sql));
    return Status(down ? ErrorCode::kUnavailable : ErrorCode::kInternal, std::move(message));
  }
  const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  const char* detail = PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL);
  message =
      fmt::format("database '{}': {} (SQLSTATE {})", target_, primary ? primary : "error", state);
  if (detail != nullptr) message += fmt::format(": {}", one_line(detail));
  if (!sql.empty()) message += fmt::format(" in SQL \"{}\"", sql_snippet(sql));
  return Status(error_code_for_sqlstate(state), std::move(message));
}

Status PostgresDatabase::ensure_connected() {
  if (PQstatus(conn_) == CONNECTION_OK) return {};
  if (transactions_.active()) {
    return unavailable(
        fmt::format("database '{}': connection lost inside a "
                    "transaction, which the server rolled back; "
                    "retry the transaction",
                    target_));
  }
  // The server restarted or the network dropped: one reconnect, with a fresh
  // session, so the statements prepared in the old one are gone.
  PQreset(conn_);
  prepared_.clear();
  index_.clear();
  stats_.size = 0;
  if (PQstatus(conn_) != CONNECTION_OK) {
    return unavailable(fmt::format("database '{}': connection lost and reconnecting failed: {}",
                                   target_, one_line(PQerrorMessage(conn_))));
  }
  return {};
}

void PostgresDatabase::forget_prepared(const std::string& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return;
  PreparedList::iterator entry = it->second;
  index_.erase(it);
  // A failed DEALLOCATE (inside an aborted transaction) leaves an unused
  // statement in the session; it goes when the connection closes.
  ResultPtr r(PQexec(conn_, ("DEALLOCATE " + entry->name).c_str()));
  prepared_.erase(entry);
}

void PostgresDatabase::evict_idle() {
  while (prepared_.size() > options_.statement_cache_size) {
    std::string key = prepared_.back().key;
    forget_prepared(key);
    ++stats_.evictions;
  }
}

Result<PostgresDatabase::ResultPtr> PostgresDatabase::run(std::string_view sql,
                                                          std::span<const Value> params) {
  CIVICBUS_RETURN_IF_ERROR(ensure_connected());

  // Parameters in text format, except bytea in binary so bytes (NULs included)
  // pass as they are. The buffers live on the stack of this call: libpq has
  // sent them when it returns.
  const std::size_t count = params.size();
  std::vector<const char*> values(count, nullptr);
  std::vector<int> lengths(count, 0);
  std::vector<int> formats(count, 0);
  std::vector<Oid> types(count, 0);
  std::vector<std::array<char, 32>> numbers(count);
  std::size_t text_bytes = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const Value& v = params[i];
    if (const auto* number = std::get_if<std::int64_t>(&v)) {
      auto end = std::to_chars(numbers[i].data(), numbers[i].data() + 31, *number).ptr;
      *end = '\0';
      values[i] = numbers[i].data();
      types[i] = kInt8Oid;
    } else if (const auto* real = std::get_if<double>(&v)) {
      auto end = std::to_chars(numbers[i].data(), numbers[i].data() + 31, *real).ptr;
      *end = '\0';
      values[i] = numbers[i].data();
      types[i] = kFloat8Oid;
    } else if (const auto* text = std::get_if<std::string_view>(&v)) {
      // Untyped text goes in text format (binary would be read with the receive
      // function of whatever type the server infers), which libpq wants
      // NUL-terminated: copied below.
      text_bytes += text->size() + 1;
    } else if (const auto* blob = std::get_if<Blob>(&v)) {
      values[i] = blob->bytes.data() ? blob->bytes.data() : "";
      lengths[i] = static_cast<int>(blob->bytes.size());
      formats[i] = 1;
      types[i] = kByteaOid;
    }
  }

  std::string texts;  // the text parameters, each NUL-terminated; never grows after this
  texts.reserve(text_bytes);
  for (std::size_t i = 0; i < count; ++i) {
    if (const auto* text = std::get_if<std::string_view>(&params[i])) {
      values[i] = texts.data() + texts.size();
      texts.append(*text);
      texts += '\0';
    }
  }

  auto check = [&](PGresult* raw) -> Result<ResultPtr> {
    ResultPtr result(raw);
    ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY)
      return result;
    return error_status(result.get(), sql);
  };

  if (options_.statement_cache_size == 0) {
    RewrittenSql rewritten = rewrite_placeholders(sql);
    if (rewritten.count != static_cast<int>(count)) {
      return invalid_argument(
          fmt::format("database '{}': SQL has {} placeholder(s) but {} "
                      "parameter(s) were given "
                      "in SQL \"{}\"",
                      target_, rewritten.count, count, sql_snippet(sql)));
    }
    return check(PQexecParams(conn_, rewritten.sql.c_str(), static_cast<int>(count), types.data(),
                              values.data(), lengths.data(), formats.data(), 0));
  }

  // The key: the text plus the types the statement was prepared for, since the
  // server fixes a parameter's type at PREPARE ('?' bound to an int64 once and
  // a blob later are two statements).
  key_.assign(sql);
  key_ += '\x1f';
  for (Oid t : types)
    key_ += t == kInt8Oid ? 'i' : t == kFloat8Oid ? 'd' : t == kByteaOid ? 'b' : 't';

  for (int attempt = 0;; ++attempt) {
    PreparedList::iterator entry;
    auto found = index_.find(key_);
    if (found != index_.end()) {
      ++stats_.hits;
      entry = found->second;
      prepared_.splice(prepared_.begin(), prepared_, entry);
    } else {
      ++stats_.misses;
      RewrittenSql rewritten = rewrite_placeholders(sql);
      if (rewritten.count != static_cast<int>(count)) {
        return invalid_argument(
            fmt::format("database '{}': SQL has {} placeholder(s) but {} parameter(s) were "
                        "given in SQL \"{}\"",
                        target_, rewritten.count, count, sql_snippet(sql)));
      }
      std::string name = fmt::format("civicbus_{}", ++next_statement_);
      CIVICBUS_ASSIGN_OR_RETURN(ResultPtr prepared,
                                check(PQprepare(conn_, name.c_str(), rewritten.sql.c_str(),
                                                static_cast<int>(count), types.data())));
      prepared_.push_front(Prepared{key_, std::move(name), rewritten.count});
      entry = prepared_.begin();
      index_.emplace(std::string_view(entry->key), entry);
      evict_idle();
    }
    ResultPtr result(PQexecPrepared(conn_, entry->name.c_str(), static_cast<int>(count),
                                    values.data(), lengths.data(), formats.data(), 0));
    std::string_view state = sqlstate_of(result.get());
    // A cached plan whose result columns changed under DDL ("cached plan must
    // not change result type"), or a statement someone DEALLOCATEd: prepare it
    // again, once, unless a transaction is open (the error aborted it).
    bool stale = state == "0A000" || state == "26000";
    if (stale) forget_prepared(key_);
    if (stale && attempt == 0 && PQtransactionStatus(conn_) == PQTRANS_IDLE) continue;
    return check(result.release());
  }
}

Result<std::int64_t> PostgresDatabase::execute(std::string_view sql,
                                               std::span<const Value> params) {
  std::lock_guard lock(mutex_);
  CIVICBUS_ASSIGN_OR_RETURN(ResultPtr result, run(sql, params));
  const char* command = PQcmdStatus(result.get());
  if (starts_with(command, "INSERT")) {
    // INSERT ... RETURNING id names the new key itself; otherwise lastval() is
    // asked only if last_insert_id() is called.
    // A RETURNING column that is not an integer (a name, a uuid) is no id.
    const int rows = PQntuples(result.get());
    std::int64_t id = 0;
    bool returned_id = false;
    if (rows > 0 && PQnfields(result.get()) > 0 && !PQgetisnull(result.get(), rows - 1, 0)) {
      const char* text = PQgetvalue(result.get(), rows - 1, 0);
      const char* end = text + PQgetlength(result.get(), rows - 1, 0);
      auto [stop, ec] = std::from_chars(text, end, id);
      returned_id = ec == std::errc() && stop == end;
    }
    if (returned_id) last_insert_id_ = id;
    lastval_pending_ = !returned_id;
  }
  // A read reports 0 changed rows, as the SQLite adapter does (PostgreSQL
  // counts rows read).
  if (starts_with(command, "SELECT")) return std::int64_t{0};
  const char* tuples = PQcmdTuples(result.get());
  std::int64_t changed = 0;
  if (tuples != nullptr) std::from_chars(tuples, tuples + std::strlen(tuples), changed);
  return changed;
}

Status PostgresDatabase::query(std::string_view sql, std::span<const Value> params,
                               const std::function<bool(const Row&)>& on_row) {
  std::lock_guard lock(mutex_);
  CIVICBUS_ASSIGN_OR_RETURN(ResultPtr result, run(sql, params));
  if (starts_with(PQcmdStatus(result.get()), "INSERT")) lastval_pending_ = true;
  const int rows = PQntuples(result.get());
  PostgresRow row(result.get(), 0);
  for (int r = 0; r < rows; ++r) {
    row.move_to(r);
    if (!on_row(row)) return {};
  }
  return {};
}

Status PostgresDatabase::execute_script(std::string_view sql) {
  std::lock_guard lock(mutex_);
  CIVICBUS_RETURN_IF_ERROR(ensure_connected());
  // The simple query protocol runs every statement of the script in one round
  // trip (in one implicit transaction when no transaction is open); it needs a
  // NUL-terminated copy.
  std::string text(sql);
  ResultPtr result(PQexec(conn_, text.c_str()));
  ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY)
    return error_status(result.get(), sql);
  lastval_pending_ = true;  // the script may have inserted; ask lastval() if anyone wants it
  return {};
}

std::int64_t PostgresDatabase::last_insert_id() const {
  std::lock_guard lock(mutex_);
  if (!lastval_pending_) return last_insert_id_;
  const PGTransactionStatusType tx = PQtransactionStatus(conn_);
  if (tx != PQTRANS_IDLE && tx != PQTRANS_INTRANS) return last_insert_id_;
  // lastval() fails when no sequence was used in this session yet; inside a
  // transaction that failure would abort the caller's transaction, so a
  // savepoint fences it off.
  const bool in_transaction = tx == PQTRANS_INTRANS;
  if (in_transaction) ResultPtr(PQexec(conn_, "SAVEPOINT civicbus_lastval"));
  ResultPtr result(PQexec(conn_, "SELECT lastval()"));
  const bool ok =
      result && PQresultStatus(result.get()) == PGRES_TUPLES_OK && PQntuples(result.get()) == 1;
  if (in_transaction) {
    ResultPtr(PQexec(conn_, ok ? "RELEASE SAVEPOINT civicbus_lastval"
                               : "ROLLBACK TO SAVEPOINT civicbus_lastval; "
                                 "RELEASE SAVEPOINT civicbus_lastval"));
  }
  if (ok) {
    PostgresRow row(result.get(), 0);
    last_insert_id_ = row.get_int(0);
  }
  lastval_pending_ = false;
  return last_insert_id_;
}

Status PostgresDatabase::run_control(const char* sql) {
  ResultPtr result(PQexec(conn_, sql));
  if (result && PQresultStatus(result.get()) == PGRES_COMMAND_OK) return {};
  return error_status(result.get(), sql);
}

Status PostgresDatabase::rollback_if_open() {
  // Nothing to roll back after a lost connection (the server did) or a body
  // that ran ROLLBACK.
  PGTransactionStatusType tx = PQtransactionStatus(conn_);
  if (tx != PQTRANS_INTRANS && tx != PQTRANS_INERROR) return {};
  return run_control("ROLLBACK");
}

Status PostgresDatabase::transaction(const std::function<Status()>& body) {
  std::lock_guard lock(mutex_);  // held for the whole body: other threads wait, we re-enter
  auto begin = [this]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(ensure_connected());
    return run_control("BEGIN");
  };
  auto check = [this]() -> Status {
    if (PQtransactionStatus(conn_) != PQTRANS_INERROR) return {};
    // The body went on after a failed statement; PostgreSQL has already given up on the
    // transaction and COMMIT would silently roll it back.
    return failed_precondition(fmt::format(
        "database '{}': a statement inside the transaction failed and the body returned ok "
        "anyway; PostgreSQL aborts the whole transaction on any error, so return the error "
        "from the body",
        target_));
  };
  auto commit = [this]() -> Status {
    ResultPtr committed(PQexec(conn_, "COMMIT"));
    if (!committed || PQresultStatus(committed.get()) != PGRES_COMMAND_OK) {
      return error_status(committed.get(), "COMMIT");
    }
    if (!starts_with(PQcmdStatus(committed.get()), "COMMIT")) {
      return failed_precondition(fmt::format("database '{}': COMMIT answered '{}'", target_,
                                             PQcmdStatus(committed.get())));
    }
    return {};
  };
  return transactions_.run(
      body, {.begin = begin, .check = check, .commit = commit, .rollback_if_open = [this] {
               return rollback_if_open();
             }});
}

PostgresCacheStats PostgresDatabase::statement_cache_stats() const {
  std::lock_guard lock(mutex_);
  PostgresCacheStats s = stats_;
  s.size = prepared_.size();
  return s;
}

}  // namespace detail

Result<std::unique_ptr<Database>> open_postgres(const PostgresOptions& options) {
  using detail::PostgresDatabase;
  if (options.connection.empty()) {
    return invalid_argument(
        "PostgresOptions.connection is empty; give a libpq "
        "connection string or URI "
        "(postgresql://user@host:5432/dbname), or "
        "\"postgresql://\" to use the PG* environment");
  }
  if (options.connect_timeout_seconds < 0) {
    return invalid_argument(
        fmt::format("PostgresOptions.connect_timeout_seconds is {}; it must be >= 0",
                    options.connect_timeout_seconds));
  }
  // Later entries override earlier ones, and `dbname` expands the connection
  // string, so the options are defaults the string may override.
  const std::string timeout = std::to_string(options.connect_timeout_seconds);
  const char* keywords[] = {"application_name", "connect_timeout", "client_encoding", "dbname",
                            nullptr};
  const char* values[] = {options.application_name.c_str(), timeout.c_str(), "UTF8",
                          options.connection.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (conn == nullptr) {
    return resource_exhausted("cannot allocate a PostgreSQL connection (libpq: out of memory)");
  }
  std::string target = detail::describe_target(conn);
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string why = detail::one_line(PQerrorMessage(conn));
    PQfinish(conn);
    return Status(detail::error_code_for_connect_failure(why),
                  fmt::format("cannot connect to PostgreSQL at '{}': {}", target, why));
  }
  PQsetNoticeProcessor(conn, detail::ignore_notice, nullptr);
  return std::unique_ptr<Database>(
      std::make_unique<PostgresDatabase>(conn, options, std::move(target)));
}

}  // namespace civicbus::storage
