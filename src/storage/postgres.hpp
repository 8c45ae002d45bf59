// PostgresDatabase: the PostgreSQL (libpq) adapter behind storage::Database.
// Private to src/ so the public headers never show libpq types; tests include
// it to look at the statement cache and the placeholder rewriting.
#pragma once

#include <libpq-fe.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "civicbus/storage/database.hpp"
#include "storage/sql_text.hpp"

namespace civicbus::storage::detail {

struct PostgresCacheStats {
  std::size_t size = 0;  // prepared statements held now
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;     // prepared because the text (and parameter types) were new
  std::uint64_t evictions = 0;  // deallocated to stay within statement_cache_size
};

// `sql` with each `?` outside string literals, quoted identifiers, dollar
// quotes and comments replaced by $1, $2, ...; `count` is the number of
// placeholders.
struct RewrittenSql {
  std::string sql;
  int count = 0;
};
RewrittenSql rewrite_placeholders(std::string_view sql);

// Maps a five-character SQLSTATE to the civicbus code (kInternal when empty or
// unknown).
ErrorCode error_code_for_sqlstate(std::string_view sqlstate);

class PostgresDatabase final : public Database {
 public:
  // Use open_postgres(); the constructor takes an established connection and
  // owns it.
  PostgresDatabase(PGconn* conn, PostgresOptions options, std::string target);
  ~PostgresDatabase() override;
  PostgresDatabase(const PostgresDatabase&) = delete;
  PostgresDatabase& operator=(const PostgresDatabase&) = delete;

  Dialect dialect() const override { return Dialect::kPostgres; }
  std::string describe() const override { return target_; }
  Status execute_script(std::string_view sql) override;
  Result<std::int64_t> execute(std::string_view sql, std::span<const Value> params) override;
  using Database::execute;
  Status query(std::string_view sql, std::span<const Value> params,
               const std::function<bool(const Row&)>& on_row) override;
  using Database::query;
  std::int64_t last_insert_id() const override;
  Status transaction(const std::function<Status()>& body) override;

  PostgresCacheStats statement_cache_stats() const;

 private:
  struct Prepared {
    std::string key;   // the SQL text plus the parameter types it was prepared for
    std::string name;  // server-side statement name
    int param_count = 0;
  };
  using PreparedList = std::list<Prepared>;
  struct PGresultDeleter {
    void operator()(PGresult* r) const { PQclear(r); }
  };
  using ResultPtr = std::unique_ptr<PGresult, PGresultDeleter>;

  // Runs one statement with `params`: from the cache, freshly prepared, or
  // (cache off) sent with its text. Returns the result, or the error naming
  // `sql`.
  Result<ResultPtr> run(std::string_view sql, std::span<const Value> params);
  Result<ResultPtr> run_once(std::string_view sql, std::span<const Value> params, bool* stale);
  Status ensure_connected();
  void forget_prepared(const std::string& key);
  void evict_idle();
  Status run_control(const char* sql);  // BEGIN / COMMIT / ROLLBACK, simple protocol
  Status rollback_if_open();
  // The error of `result` (or, when null, of the connection) naming the target
  // and `sql`.
  Status error_status(const PGresult* result, std::string_view sql) const;

  PGconn* conn_;
  const PostgresOptions options_;
  const std::string target_;  // connection target without the password
  mutable std::recursive_mutex mutex_;

  PreparedList prepared_;  // most recently used first
  std::unordered_map<std::string_view, PreparedList::iterator> index_;
  PostgresCacheStats stats_;
  std::uint64_t next_statement_ = 0;
  std::string key_;  // reused buffer for the cache key

  detail::TransactionNesting transactions_;

  // last_insert_id(): known from INSERT ... RETURNING, or to be asked with
  // lastval().
  mutable std::int64_t last_insert_id_ = 0;
  mutable bool lastval_pending_ = false;
};

}  // namespace civicbus::storage::detail
