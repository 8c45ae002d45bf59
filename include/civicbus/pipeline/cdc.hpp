// Change data capture: row changes of chosen tables become broker events, in commit order,
// with before and after images. Each change is a CloudEvent of type
// `<prefix>.<table>.changed` (topic created if missing) whose data is
//   {"op": "insert" | "update" | "delete", "table": "permits",
//    "before": {...} | null, "after": {...} | null,
//    "commit_seq": 42, "committed_at": "2026-12-01T21:00:00.123Z"}
// plus, from PostgreSQL, "lsn" (the commit's LSN, "0/16B3748") and "xid".
//
// Delivery is at least once: changes are read, published one by one in order, and only
// removed from the source (the SQLite change log, the PostgreSQL replication slot) once the
// broker acknowledged them. Each event's id is derived from the change's position, so a
// change published again after a failure or crash is recognised by the broker's
// source+id deduplication and stored once.
//
//   SQLite      AFTER INSERT/UPDATE/DELETE triggers on each table write to the change log
//               `_civicbus_changes` (before/after via json_object()) in the writer's own
//               transaction; SQLite has one writer, so log order is commit order.
//   PostgreSQL  logical decoding through SQL functions (no replication connection): a slot
//               with the built-in test_decoding plugin, REPLICA IDENTITY FULL on the tables
//               for full before images, pg_logical_slot_peek_changes() to read and
//               pg_logical_slot_get_changes(upto_lsn) to advance once acknowledged. The
//               database needs wal_level=logical and a free replication slot.
//
// A ChangeCapture owns its background thread; it does not own the database or the broker,
// which must outlive it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus::storage {
class Database;
}
namespace civicbus::broker {
class Broker;
}

namespace civicbus::pipeline {

struct ChangeCaptureOptions {
  // Tables whose changes are captured (required). PostgreSQL: "table" (in the public schema)
  // or "schema.table".
  std::vector<std::string> tables;
  // Event types are `<prefix>.<table>.changed`, the table lower-cased with characters a topic
  // name cannot hold replaced by '_' ("Folder" -> "cdc.folder.changed").
  std::string prefix = "cdc";
  // The events' CloudEvent source; with the event ids it is the broker's deduplication key,
  // so two captures of different databases need different sources.
  std::string source = "civicbus://cdc";
  // Owner of the topics created for the tables.
  std::string topic_owner = "cdc";
  // PostgreSQL: the logical replication slot (created when missing, kept across restarts so
  // that no change is missed while the capture is stopped).
  std::string slot = "civicbus_cdc";
  // Changes read per round trip to the source; a PostgreSQL transaction is never split, so a
  // poll may publish more.
  std::size_t batch_size = 500;
  const Clock* clock = nullptr;  // null: the system clock
};

struct PollResult {
  std::int64_t published = 0;   // changes acknowledged by the broker and removed from the source
  std::int64_t duplicates = 0;  // of those, changes the broker already had (a replay)
};

class CIVICBUS_EXPORT ChangeCapture {
 public:
  // Installs what the capture needs: the change log and triggers (SQLite; triggers are
  // re-created, so a table's new columns are picked up) or the slot and replica identity
  // (PostgreSQL). Topics are created when missing. Fails with kInvalidArgument for an empty
  // table list or a table that does not exist, naming it.
  static Result<std::unique_ptr<ChangeCapture>> open(storage::Database& db, broker::Broker& broker,
                                                     ChangeCaptureOptions options);
  ~ChangeCapture();  // stops the background thread; the installed capture stays
  ChangeCapture(const ChangeCapture&) = delete;
  ChangeCapture& operator=(const ChangeCapture&) = delete;

  // Publishes every pending change in commit order. Stops at the first change the broker
  // refuses and returns that error; the changes before it were published and removed, it
  // and the ones after stay pending for the next poll.
  Result<PollResult> poll();

  // Polls every `interval` on a thread of its own until stop(). Errors are kept in
  // last_error() and the next poll tries again. kFailedPrecondition when already running.
  Status start(std::chrono::milliseconds interval);
  void stop();  // idempotent; waits for a poll in progress
  bool running() const;
  Status last_error() const;  // of the last background poll (ok when it succeeded)

  // Removes what open() installed: triggers and change log (SQLite, pending changes
  // included), the slot (PostgreSQL; replica identity goes back to DEFAULT). Stops first.
  Status uninstall();

  class Impl;

 private:
  explicit ChangeCapture(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace civicbus::pipeline
