// AuditLog: the broker's append-only record of who did what (topic changes, grants, shreds,
// DLQ moves, one record per group commit of publishes). Records form a hash chain keyed by
// a key derived from the master key, and a head row seals the last record, so an edit, a
// deletion, a reordering or a truncated tail is found by verify() even when whoever changed
// the database file could also write to it: forging the chain needs the master key.
// It owns the tables broker_audit and broker_audit_head (migration component "broker_audit");
// it does not own the Database, the Clock or the master key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/broker/broker.hpp"
#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/storage/database.hpp"

namespace civicbus::broker {

class AuditLog {
 public:
  // Creates or migrates the tables and loads the chain's tail. `master_key` is 32 bytes
  // (only a key derived from it is kept). `db` and `clock` must outlive the AuditLog.
  // A wrong master key is not detected here (the KeyStore does that); verify() then reports
  // every record.
  static Result<std::unique_ptr<AuditLog>> open(storage::Database& db, std::string_view master_key,
                                                const Clock& clock);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends one record. Joins the caller's transaction when one is open on `db` (so the
  // record commits or rolls back with what it describes). Thread-safe.
  Status append(std::string_view actor, std::string_view action, std::string_view subject,
                const Json& detail);

  // Records with seq >= from_seq in order, at most `limit`.
  Result<std::vector<AuditRecord>> records(std::int64_t from_seq, std::size_t limit);

  // Walks the whole chain. Each problem names the seq and what is wrong: edited, deleted,
  // reordered, tail truncated, head mismatch. Appends may go on meanwhile; only the last
  // step holds a transaction.
  Result<AuditReport> verify();

  // The seq of the last record (0 when the log is empty), as this instance knows it.
  std::int64_t last_seq() const;

 private:
  AuditLog(storage::Database& db, std::string chain_key, const Clock& clock);

  // Brings last_seq_/last_hash_ in line with the stored head when another writer or a
  // rolled-back transaction moved it. Called with mu_ held, inside a transaction.
  Status sync_tail_locked();
  Status reload_tail_locked();

  storage::Database& db_;
  std::string chain_key_;  // HMAC key of the chain, derived from the master key
  const Clock& clock_;

  mutable std::mutex mu_;  // guards the cached tail below
  std::int64_t last_seq_ = 0;
  std::string last_hash_;  // raw 32 bytes; the genesis value when the log is empty
};

}  // namespace civicbus::broker
