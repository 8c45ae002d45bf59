// SqliteDatabase: the SQLite adapter behind storage::Database. Private to src/ so the public
// headers never show sqlite3 types; tests include it to look at the statement cache.
#pragma once

#include <sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "civicbus/storage/database.hpp"
#include "storage/sql_text.hpp"

namespace civicbus::storage::detail {

struct StatementCacheStats {
  std::size_t size = 0;  // statements held now
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;     // prepared because the text was not cached
  std::uint64_t evictions = 0;  // finalized to stay within statement_cache_size
  std::uint64_t uncached = 0;   // prepared for one use because the cached one was busy
};

// Prepared statements keyed by SQL text, least recently used evicted first. A statement is
// leased while it runs; a leased statement is never evicted, and asking for the same text
// again meanwhile (a query callback that re-runs its own SQL) gets a one-off statement.
// Not thread-safe: the owning SqliteDatabase serialises access.
class StatementCache {
 public:
  struct Entry {
    std::string sql;  // owns the text the index's string_view key points into
    sqlite3_stmt* stmt = nullptr;
    bool leased = false;
  };
  using EntryList = std::list<Entry>;

  explicit StatementCache(std::size_t capacity) : capacity_(capacity) {}
  ~StatementCache() { clear(); }
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

  // The cached entry for `sql`, marked leased and made most recent, or nullptr when it is
  // absent or already leased. Allocation-free: the index is keyed by views into the entries.
  Entry* acquire(std::string_view sql);
  // Adopts a freshly prepared statement as a leased entry, evicting idle entries beyond the
  // capacity. Returns nullptr (and leaves `stmt` to the caller) when caching is off or `sql`
  // is already present (leased by an outer caller).
  Entry* insert(std::string_view sql, sqlite3_stmt* stmt);
  void release(Entry* entry) { entry->leased = false; }
  void note_uncached() { ++stats_.uncached; }
  void clear();

  StatementCacheStats stats() const {
    StatementCacheStats s = stats_;
    s.size = entries_.size();
    return s;
  }

 private:
  void evict_idle();

  std::size_t capacity_;
  EntryList entries_;  // most recently used first
  std::unordered_map<std::string_view, EntryList::iterator> index_;
  StatementCacheStats stats_;
};

class SqliteDatabase final : public Database {
 public:
  // Use open_sqlite(); the constructor takes an already opened handle and owns it.
  SqliteDatabase(sqlite3* db, SqliteOptions options);
  ~SqliteDatabase() override;
  SqliteDatabase(const SqliteDatabase&) = delete;
  SqliteDatabase& operator=(const SqliteDatabase&) = delete;

  Dialect dialect() const override { return Dialect::kSqlite; }
  std::string describe() const override { return options_.path; }
  Status execute_script(std::string_view sql) override;
  Result<std::int64_t> execute(std::string_view sql, std::span<const Value> params) override;
  using Database::execute;
  Status query(std::string_view sql, std::span<const Value> params,
               const std::function<bool(const Row&)>& on_row) override;
  using Database::query;
  std::int64_t last_insert_id() const override;
  Status transaction(const std::function<Status()>& body) override;

  StatementCacheStats statement_cache_stats() const;

  // Turns the connection's current error (`rc` from the failing call) into a Status naming
  // the file, the SQL and sqlite's message. Call before anything else touches the handle.
  Status error_status(int rc, std::string_view sql) const;

 private:
  class Lease;
  // Prepares or fetches `sql` and binds `params`; on success `lease` holds the statement.
  Status prepare_and_bind(std::string_view sql, std::span<const Value> params, Lease& lease);
  Status run_control(std::string_view sql);  // BEGIN / COMMIT / ROLLBACK
  Status rollback_if_open();

  sqlite3* db_;
  const SqliteOptions options_;
  mutable std::recursive_mutex mutex_;
  StatementCache cache_;
  detail::TransactionNesting transactions_;
};

// Maps a sqlite result code (primary or extended) to the civicbus code.
ErrorCode error_code_for_sqlite(int extended_rc);

}  // namespace civicbus::storage::detail
