// What ChangeCapture (cdc_capture.cpp) reads changes from: a source per database kind
// (cdc_sqlite.cpp, cdc_postgres.cpp), and the parser of PostgreSQL's test_decoding output.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/storage/database.hpp"

namespace civicbus::pipeline::detail {

struct RowChange {
  std::string table;  // as the options name it
  std::string op;     // insert, update, delete
  Json before;        // object, or null for an insert
  Json after;         // object, or null for a delete
  std::int64_t commit_seq = 0;
  std::string lsn;           // PostgreSQL: the commit's LSN ("0/16B3748"); empty for SQLite
  std::string xid;           // PostgreSQL: the transaction id
  std::string committed_at;  // RFC 3339; empty when unknown
  std::string event_id;      // the same every time this change is read
  // Removing the changes up to here (acknowledge(ack_token)) is allowed only at the end of a
  // transaction: a PostgreSQL slot advances by whole transactions.
  bool ackable = false;
  std::string ack_token;
};

struct PendingChanges {
  std::vector<RowChange> changes;  // in commit order
  // Acknowledging this after every change above was published also skips what was read and
  // not captured (other tables' transactions); empty when nothing was read.
  std::string end_token;
  bool exhausted = true;  // false: the read stopped at the limit, more may be pending
};

class ChangeSource {
 public:
  virtual ~ChangeSource() = default;
  virtual Status install() = 0;
  virtual Result<PendingChanges> pending(std::size_t limit) = 0;
  // Removes the changes up to and including the one `token` came from.
  virtual Status acknowledge(const std::string& token) = 0;
  virtual Status uninstall() = 0;
};

std::unique_ptr<ChangeSource> make_sqlite_change_source(storage::Database& db,
                                                        std::vector<std::string> tables,
                                                        const Clock& clock);
std::unique_ptr<ChangeSource> make_postgres_change_source(storage::Database& db,
                                                          std::vector<std::string> tables,
                                                          std::string slot);

// One line of test_decoding output (include-xids and include-timestamp on).
struct DecodedLine {
  enum class Kind { kBegin, kCommit, kChange, kOther };
  Kind kind = Kind::kOther;
  std::string xid;           // BEGIN / COMMIT
  std::string committed_at;  // COMMIT: RFC 3339 from "(at 2026-12-01 21:00:00.12+00)"
  std::string schema;        // change
  std::string table;
  std::string op;  // insert, update, delete, truncate
  // Column values in output order. The old tuple leaves NULL columns out (test_decoding
  // skips them); `unchanged_toast` lists new-tuple columns whose value was not logged.
  Json before;
  Json after;
  std::vector<std::string> unchanged_toast;
};

// Parses a line of test_decoding: quoted identifiers ("My Table"), types in brackets (which
// may themselves hold brackets: integer[]), strings in single quotes with '' inside, null,
// unquoted numbers and booleans. kInvalidArgument names what is wrong and where.
Result<DecodedLine> parse_test_decoding(std::string_view line);

// "2026-12-01 21:00:00.123456+00" (timestamptz text) as RFC 3339
// ("2026-12-01T21:00:00.123456+00:00").
std::string timestamptz_to_rfc3339(std::string_view text);

}  // namespace civicbus::pipeline::detail
