#include "storage/sqlite_database.hpp"

#include <fmt/format.h>

#include <cctype>
#include <filesystem>
#include <utility>
#include <vector>

#include "storage/sql_text.hpp"

namespace civicbus::storage {
namespace detail {
namespace {

constexpr std::size_t kMaxIntegrityProblemsReported = 3;

std::string_view primary_code_name(int rc) {
  switch (rc & 0xff) {
    case SQLITE_ERROR:
      return "SQLITE_ERROR";
    case SQLITE_INTERNAL:
      return "SQLITE_INTERNAL";
    case SQLITE_PERM:
      return "SQLITE_PERM";
    case SQLITE_ABORT:
      return "SQLITE_ABORT";
    case SQLITE_BUSY:
      return "SQLITE_BUSY";
    case SQLITE_LOCKED:
      return "SQLITE_LOCKED";
    case SQLITE_NOMEM:
      return "SQLITE_NOMEM";
    case SQLITE_READONLY:
      return "SQLITE_READONLY";
    case SQLITE_INTERRUPT:
      return "SQLITE_INTERRUPT";
    case SQLITE_IOERR:
      return "SQLITE_IOERR";
    case SQLITE_CORRUPT:
      return "SQLITE_CORRUPT";
    case SQLITE_NOTFOUND:
      return "SQLITE_NOTFOUND";
    case SQLITE_FULL:
      return "SQLITE_FULL";
    case SQLITE_CANTOPEN:
      return "SQLITE_CANTOPEN";
    case SQLITE_PROTOCOL:
      return "SQLITE_PROTOCOL";
    case SQLITE_SCHEMA:
      return "SQLITE_SCHEMA";
    case SQLITE_TOOBIG:
      return "SQLITE_TOOBIG";
    case SQLITE_CONSTRAINT:
      return "SQLITE_CONSTRAINT";
    case SQLITE_MISMATCH:
      return "SQLITE_MISMATCH";
    case SQLITE_MISUSE:
      return "SQLITE_MISUSE";
    case SQLITE_AUTH:
      return "SQLITE_AUTH";
    case SQLITE_RANGE:
      return "SQLITE_RANGE";
    case SQLITE_NOTADB:
      return "SQLITE_NOTADB";
    default:
      return "SQLITE_UNKNOWN";
  }
}

// Views into the current row; valid until the statement steps again or is reset, which is
// exactly the on_row callback's lifetime promised by Row.
class SqliteRow final : public Row {
 public:
  explicit SqliteRow(sqlite3_stmt* stmt) : stmt_(stmt), count_(sqlite3_column_count(stmt)) {}

  int column_count() const override { return count_; }
  bool is_null(int column) const override {
    return !in_range(column) || sqlite3_column_type(stmt_, column) == SQLITE_NULL;
  }
  std::int64_t get_int(int column) const override {
    return in_range(column) ? sqlite3_column_int64(stmt_, column) : 0;
  }
  double get_double(int column) const override {
    return in_range(column) ? sqlite3_column_double(stmt_, column) : 0.0;
  }
  std::string_view get_text(int column) const override {
    if (!in_range(column)) return {};
    // column_text before column_bytes: the byte count must describe the converted value.
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    int size = sqlite3_column_bytes(stmt_, column);
    return text ? std::string_view(reinterpret_cast<const char*>(text), size) : std::string_view();
  }
  std::string_view column_name(int column) const override {
    const char* name = in_range(column) ? sqlite3_column_name(stmt_, column) : nullptr;
    return name ? std::string_view(name) : std::string_view();
  }
  Kind kind(int column) const override {
    if (!in_range(column)) return Kind::kNull;
    switch (sqlite3_column_type(stmt_, column)) {
      case SQLITE_INTEGER:
        return Kind::kInteger;
      case SQLITE_FLOAT:
        return Kind::kReal;
      case SQLITE_BLOB:
        return Kind::kBlob;
      case SQLITE_NULL:
        return Kind::kNull;
      default:
        return Kind::kText;
    }
  }
  std::string_view get_blob(int column) const override {
    if (!in_range(column)) return {};
    const void* bytes = sqlite3_column_blob(stmt_, column);
    int size = sqlite3_column_bytes(stmt_, column);
    return bytes ? std::string_view(static_cast<const char*>(bytes), size) : std::string_view();
  }

 private:
  bool in_range(int column) const { return column >= 0 && column < count_; }
  sqlite3_stmt* stmt_;
  int count_;
};

// True when `tail` holds only whitespace and comments (what sqlite leaves after the last
// statement). Preparing the tail is the one reliable test; it runs only on a cache miss.
bool tail_is_empty(sqlite3* db, const char* tail, const char* end) {
  while (tail < end && (std::isspace(static_cast<unsigned char>(*tail)) || *tail == ';')) ++tail;
  if (tail >= end) return true;
  sqlite3_stmt* next = nullptr;
  int rc = sqlite3_prepare_v2(db, tail, static_cast<int>(end - tail), &next, nullptr);
  bool empty = rc == SQLITE_OK && next == nullptr;
  sqlite3_finalize(next);
  return empty;
}

}  // namespace

ErrorCode error_code_for_sqlite(int extended_rc) {
  switch (extended_rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
      return ErrorCode::kOk;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return ErrorCode::kUnavailable;
    case SQLITE_CONSTRAINT:
      // A duplicate key means "it exists already"; NOT NULL, CHECK and foreign keys mean the
      // data the statement needs is not there or not valid.
      return (extended_rc == SQLITE_CONSTRAINT_PRIMARYKEY ||
              extended_rc == SQLITE_CONSTRAINT_UNIQUE || extended_rc == SQLITE_CONSTRAINT_ROWID)
                 ? ErrorCode::kAlreadyExists
                 : ErrorCode::kFailedPrecondition;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return ErrorCode::kDataLoss;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
      return ErrorCode::kIoError;
    // Writing through a read-only connection is a state the caller chose, not a bug here.
    case SQLITE_READONLY:
      return ErrorCode::kFailedPrecondition;
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return ErrorCode::kPermissionDenied;
    case SQLITE_TOOBIG:
    case SQLITE_NOMEM:
      return ErrorCode::kResourceExhausted;
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
      return ErrorCode::kInvalidArgument;
    case SQLITE_INTERRUPT:
      return ErrorCode::kCancelled;
    default:
      return ErrorCode::kInternal;
  }
}

// ---- StatementCache ------------------------------------------------------------------------

StatementCache::Entry* StatementCache::acquire(std::string_view sql) {
  auto it = index_.find(sql);
  if (it == index_.end() || it->second->leased) return nullptr;
  ++stats_.hits;
  entries_.splice(entries_.begin(), entries_, it->second);  // relinks, no allocation
  it->second->leased = true;
  return &*it->second;
}

StatementCache::Entry* StatementCache::insert(std::string_view sql, sqlite3_stmt* stmt) {
  ++stats_.misses;
  if (capacity_ == 0 || index_.contains(sql)) return nullptr;
  entries_.push_front(Entry{std::string(sql), stmt, true});
  index_.emplace(std::string_view(entries_.front().sql), entries_.begin());
  evict_idle();
  return &entries_.front();
}

void StatementCache::evict_idle() {
  // Leased statements are running in an outer frame; they are skipped, so the cache may hold
  // more than its capacity for as long as calls are nested.
  auto it = entries_.end();
  while (entries_.size() > capacity_ && it != entries_.begin()) {
    --it;
    if (it->leased) continue;
    index_.erase(std::string_view(it->sql));
    sqlite3_finalize(it->stmt);
    it = entries_.erase(it);
    ++stats_.evictions;
  }
}

void StatementCache::clear() {
  index_.clear();
  for (Entry& e : entries_) sqlite3_finalize(e.stmt);
  entries_.clear();
}

// ---- SqliteDatabase ------------------------------------------------------------------------

// One running statement. On destruction it resets the statement and clears its bindings, so
// the SQLITE_STATIC pointers to the caller's bytes never outlive the call, and hands the
// statement back to the cache (or finalizes a one-off).
class SqliteDatabase::Lease {
 public:
  explicit Lease(StatementCache& cache) : cache_(cache) {}
  ~Lease() {
    if (stmt_ == nullptr) return;
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    if (entry_ != nullptr) {
      cache_.release(entry_);
    } else {
      sqlite3_finalize(stmt_);
    }
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  void hold_cached(StatementCache::Entry* entry) {
    entry_ = entry;
    stmt_ = entry->stmt;
  }
  void hold_owned(sqlite3_stmt* stmt) { stmt_ = stmt; }
  sqlite3_stmt* stmt() const { return stmt_; }

 private:
  StatementCache& cache_;
  StatementCache::Entry* entry_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

SqliteDatabase::SqliteDatabase(sqlite3* db, SqliteOptions options)
    : db_(db), options_(std::move(options)), cache_(options_.statement_cache_size) {}

SqliteDatabase::~SqliteDatabase() {
  cache_.clear();
  // close_v2 rolls back anything still open; nothing is left open unless a body threw past us.
  sqlite3_close_v2(db_);
}

Status SqliteDatabase::error_status(int rc, std::string_view sql) const {
  int extended = rc;
  if ((rc & 0xff) == rc) {
    // A primary code from an API that does not report extended ones: ask the handle, but only
    // if it is describing the same error.
    int from_handle = sqlite3_extended_errcode(db_);
    if ((from_handle & 0xff) == rc) extended = from_handle;
  }
  const char* sqlite_message = sqlite3_errmsg(db_);
  std::string message = fmt::format("database '{}': {} ({}, code {})", options_.path,
                                    sqlite_message ? sqlite_message : sqlite3_errstr(rc),
                                    primary_code_name(extended), extended);
  if (!sql.empty()) {
    message += " in SQL \"";
    message += sql_snippet(sql);
    message += '"';
  }
  return Status(error_code_for_sqlite(extended), std::move(message));
}

Status SqliteDatabase::prepare_and_bind(std::string_view sql, std::span<const Value> params,
                                        Lease& lease) {
  if (StatementCache::Entry* entry = cache_.acquire(sql)) {
    lease.hold_cached(entry);
  } else {
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(stmt);
      return error_status(rc, sql);
    }
    if (stmt == nullptr) {
      return invalid_argument(fmt::format("database '{}': SQL \"{}\" contains no statement",
                                          options_.path, sql_snippet(sql)));
    }
    if (!tail_is_empty(db_, tail, sql.data() + sql.size())) {
      sqlite3_finalize(stmt);
      return invalid_argument(fmt::format(
          "database '{}': SQL \"{}\" holds more than one statement; execute() and query() run "
          "one, use execute_script() for several",
          options_.path, sql_snippet(sql)));
    }
    if (StatementCache::Entry* cached = cache_.insert(sql, stmt)) {
      lease.hold_cached(cached);
    } else {
      cache_.note_uncached();
      lease.hold_owned(stmt);
    }
  }

  sqlite3_stmt* stmt = lease.stmt();
  const int expected = sqlite3_bind_parameter_count(stmt);
  if (expected != static_cast<int>(params.size())) {
    return invalid_argument(
        fmt::format("database '{}': SQL \"{}\" takes {} parameter(s) but {} "
                    "were given",
                    options_.path, sql_snippet(sql), expected, params.size()));
  }
  for (int i = 0; i < expected; ++i) {
    const Value& value = params[static_cast<std::size_t>(i)];
    const int slot = i + 1;
    int rc = SQLITE_OK;
    // SQLITE_STATIC: the bytes belong to the caller and outlive the step; the Lease clears
    // the bindings before we return, so sqlite never keeps a pointer to them.
    switch (value.index()) {
      case 0:
        rc = sqlite3_bind_null(stmt, slot);
        break;
      case 1:
        rc = sqlite3_bind_int64(stmt, slot, std::get<std::int64_t>(value));
        break;
      case 2:
        rc = sqlite3_bind_double(stmt, slot, std::get<double>(value));
        break;
      case 3: {
        std::string_view text = std::get<std::string_view>(value);
        // A null data pointer would bind SQL NULL; an empty string_view means ''.
        rc = sqlite3_bind_text64(stmt, slot, text.data() ? text.data() : "", text.size(),
                                 SQLITE_STATIC, SQLITE_UTF8);
        break;
      }
      case 4: {
        std::string_view bytes = std::get<Blob>(value).bytes;
        // Same trap as text: an empty blob must stay a zero-length blob, not NULL.
        rc = bytes.empty()
                 ? sqlite3_bind_zeroblob(stmt, slot, 0)
                 : sqlite3_bind_blob64(stmt, slot, bytes.data(), bytes.size(), SQLITE_STATIC);
        break;
      }
    }
    if (rc != SQLITE_OK)
      return error_status(rc, sql).with_context(fmt::format("parameter {}", slot));
  }
  return {};
}

Result<std::int64_t> SqliteDatabase::execute(std::string_view sql, std::span<const Value> params) {
  std::lock_guard lock(mutex_);
  Lease lease(cache_);
  CIVICBUS_RETURN_IF_ERROR(prepare_and_bind(sql, params, lease));
  sqlite3_stmt* stmt = lease.stmt();
  int rc;
  // Rows of a statement run for its effect (INSERT ... RETURNING, a pragma) are drained so
  // the statement completes.
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
  }
  if (rc != SQLITE_DONE) return error_status(rc, sql);
  // changes() keeps the count of the last INSERT/UPDATE/DELETE, so a read reports 0 itself.
  return sqlite3_stmt_readonly(stmt) ? std::int64_t{0} : sqlite3_changes64(db_);
}

Status SqliteDatabase::query(std::string_view sql, std::span<const Value> params,
                             const std::function<bool(const Row&)>& on_row) {
  std::lock_guard lock(mutex_);
  Lease lease(cache_);
  CIVICBUS_RETURN_IF_ERROR(prepare_and_bind(sql, params, lease));
  sqlite3_stmt* stmt = lease.stmt();
  SqliteRow row(stmt);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (!on_row(row)) return {};
  }
  if (rc != SQLITE_DONE) return error_status(rc, sql);
  return {};
}

Status SqliteDatabase::execute_script(std::string_view sql) {
  std::lock_guard lock(mutex_);
  const char* next = sql.data();
  const char* end = sql.data() + sql.size();
  while (next < end) {
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v2(db_, next, static_cast<int>(end - next), &stmt, &tail);
    // Name the statement that failed, not the start of the script.
    std::string_view current(next, static_cast<std::size_t>((tail ? tail : end) - next));
    if (rc != SQLITE_OK) {
      sqlite3_finalize(stmt);
      return error_status(rc, current);
    }
    next = tail;
    if (stmt == nullptr) continue;  // whitespace or a comment
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE) {
      Status status = error_status(rc, current);
      sqlite3_finalize(stmt);
      return status;
    }
    sqlite3_finalize(stmt);
  }
  return {};
}

std::int64_t SqliteDatabase::last_insert_id() const {
  std::lock_guard lock(mutex_);
  return sqlite3_last_insert_rowid(db_);
}

Status SqliteDatabase::run_control(std::string_view sql) {
  return execute(sql, {}).status();
}

Status SqliteDatabase::rollback_if_open() {
  // sqlite may already have rolled back by itself (after SQLITE_FULL, IOERR, a failed
  // COMMIT, or a body that ran ROLLBACK); a second ROLLBACK would only add a confusing error.
  if (sqlite3_get_autocommit(db_)) return {};
  return run_control("ROLLBACK");
}

Status SqliteDatabase::transaction(const std::function<Status()>& body) {
  std::lock_guard lock(mutex_);  // held for the whole body: other threads wait, we re-enter
  return transactions_.run(
      body, {.begin =
                 [this] {
                   // A read-only connection cannot take the write lock; a deferred
                   // transaction still gives its body one consistent snapshot.
                   return run_control(options_.read_only ? "BEGIN DEFERRED" : "BEGIN IMMEDIATE");
                 },
             .check = {},
             .commit = [this] { return run_control("COMMIT"); },
             .rollback_if_open = [this] { return rollback_if_open(); }});
}

StatementCacheStats SqliteDatabase::statement_cache_stats() const {
  std::lock_guard lock(mutex_);
  return cache_.stats();
}

namespace {

// Refuses a file that is not a SQLite database or whose pages do not hold together.
Status verify_database(SqliteDatabase& db, const std::string& path) {
  std::vector<std::string> problems;
  Status status = db.query("PRAGMA quick_check", {}, [&](const Row& row) {
    std::string_view line = row.get_text(0);
    if (line == "ok") return false;
    problems.emplace_back(line);
    return problems.size() < kMaxIntegrityProblemsReported;
  });
  if (!status.ok()) {
    if (status.code() != ErrorCode::kDataLoss) return status;
    return data_loss(fmt::format(
        "database file '{}' is corrupt or not a SQLite database; restore it from a backup or "
        "move it aside ({})",
        path, status.message()));
  }
  if (problems.empty()) return {};
  std::string joined;
  for (const std::string& p : problems) {
    if (!joined.empty()) joined += "; ";
    joined += p;
  }
  return data_loss(fmt::format(
      "database file '{}' is corrupt (PRAGMA quick_check: {}); restore it from a backup or move "
      "it aside",
      path, joined));
}

std::string_view synchronous_pragma(Synchronous s) {
  switch (s) {
    case Synchronous::kOff:
      return "OFF";
    case Synchronous::kNormal:
      return "NORMAL";
    case Synchronous::kFull:
      return "FULL";
  }
  return "FULL";
}

}  // namespace
}  // namespace detail

Result<std::unique_ptr<Database>> open_sqlite(const SqliteOptions& options) {
  using detail::SqliteDatabase;
  if (options.path.empty()) {
    return invalid_argument("SqliteOptions.path is empty; give a file path or \":memory:\"");
  }
  if (options.busy_timeout_ms < 0) {
    return invalid_argument(fmt::format("SqliteOptions.busy_timeout_ms is {}; it must be >= 0",
                                        options.busy_timeout_ms));
  }
  if (options.cache_size_kib < 0) {
    return invalid_argument(
        fmt::format("SqliteOptions.cache_size_kib is {}; it must be >= 0", options.cache_size_kib));
  }
  if (options.page_size < 512 || options.page_size > 65536 ||
      (options.page_size & (options.page_size - 1)) != 0) {
    return invalid_argument(
        fmt::format("SqliteOptions.page_size is {}; it must be a power of two from 512 to 65536",
                    options.page_size));
  }
  const bool in_memory = options.path == ":memory:";
  if (!in_memory && (options.read_only || !options.create_if_missing)) {
    std::error_code ec;
    if (!std::filesystem::exists(options.path, ec)) {
      return not_found(fmt::format(
          "database file '{}' does not exist and {} is set; create it first or allow creation",
          options.path, options.read_only ? "read_only" : "create_if_missing=false"));
    }
  }

  int flags = SQLITE_OPEN_NOMUTEX;  // SqliteDatabase serialises all use of the handle itself
  if (options.read_only) {
    flags |= SQLITE_OPEN_READONLY;
  } else {
    flags |= SQLITE_OPEN_READWRITE;
    if (options.create_if_missing) flags |= SQLITE_OPEN_CREATE;
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(options.path.c_str(), &raw, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = fmt::format("cannot open database file '{}': {}", options.path,
                                      raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc));
    sqlite3_close_v2(raw);
    return Status(detail::error_code_for_sqlite(rc), std::move(message));
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);
  auto db = std::make_unique<SqliteDatabase>(raw, options);

  if (!in_memory) {
    if (options.verify_on_open) {
      CIVICBUS_RETURN_IF_ERROR(detail::verify_database(*db, options.path));
    } else {
      // Still read the header, so a file that is not a database fails here and not on first use.
      Status header = db->execute_script("PRAGMA schema_version");
      if (header.code() == ErrorCode::kDataLoss) {
        return data_loss(fmt::format(
            "database file '{}' is corrupt or not a SQLite database; restore it from a backup or "
            "move it aside ({})",
            options.path, header.message()));
      }
      CIVICBUS_RETURN_IF_ERROR(header);
    }
  }

  if (!options.read_only) {
    // Takes effect only while the file has no tables yet, that is before the first write.
    CIVICBUS_RETURN_IF_ERROR(
        db->execute_script(fmt::format("PRAGMA page_size={};", options.page_size)));
  }
  if (options.wal && !in_memory && !options.read_only) {
    std::string mode;
    CIVICBUS_RETURN_IF_ERROR(db->query("PRAGMA journal_mode=WAL", {}, [&](const Row& row) {
      mode = row.get_text(0);
      return false;
    }));
    if (mode != "wal") {
      return failed_precondition(fmt::format(
          "database '{}' could not switch to WAL (journal_mode stays '{}'); WAL needs a local "
          "file system with shared memory, or set SqliteOptions.wal=false",
          options.path, mode));
    }
  }
  CIVICBUS_RETURN_IF_ERROR(db->execute_script(
      fmt::format("PRAGMA synchronous={}; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY; "
                  "PRAGMA cache_size=-{};",
                  detail::synchronous_pragma(options.synchronous), options.cache_size_kib)));
  return std::unique_ptr<Database>(std::move(db));
}

}  // namespace civicbus::storage
