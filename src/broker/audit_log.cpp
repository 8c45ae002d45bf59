#include "broker/audit_log.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <limits>
#include <optional>
#include <unordered_map>
#include <utility>

#include "civicbus/core/crypto.hpp"

namespace civicbus::broker {
namespace {

constexpr storage::Migration kAuditMigrations[] = {
    {1, "hash-chained audit log and its head",
     R"sql(
CREATE TABLE broker_audit (
  seq INTEGER PRIMARY KEY,
  recorded_at INTEGER NOT NULL,      -- microseconds since the Unix epoch
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  subject TEXT NOT NULL,
  detail TEXT NOT NULL,              -- JSON text, hashed byte for byte as stored
  prev_hash TEXT NOT NULL,           -- hex; the previous record's hash (zeros for seq 1)
  hash TEXT NOT NULL                 -- hex HMAC-SHA256 under the chain key
);
CREATE TABLE broker_audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,              -- the last record
  hash TEXT NOT NULL,                -- its hash (hex)
  mac TEXT NOT NULL                  -- hex HMAC over (seq, hash): seals the tail
);
)sql"},
};

// Distinct labels keep the chain key apart from every other key derived from the master key.
constexpr std::string_view kChainKeyLabel = "civicbus audit chain v1";
constexpr std::string_view kHeadLabel = "civicbus audit head v1";
constexpr std::size_t kHashBytes = 32;
constexpr std::size_t kMasterKeyLength = 32;
constexpr std::int64_t kPageSize = 1000;
// How far verify() looks either side of a record to tell "reordered" from "edited".
constexpr std::size_t kReorderWindow = 256;

const std::string& genesis_hash() {
  static const std::string kGenesis(kHashBytes, '\0');
  return kGenesis;
}

const std::string& genesis_hex() {
  static const std::string kGenesisHex = crypto::to_hex(genesis_hash());
  return kGenesisHex;
}

void put_u64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xff));
}

// Length-prefixed, so no two different field tuples encode to the same bytes.
void put_field(std::string& out, std::string_view s) {
  put_u64(out, s.size());
  out.append(s);
}

struct RecordFields {
  std::int64_t seq = 0;
  std::int64_t at_us = 0;
  std::string_view actor;
  std::string_view action;
  std::string_view subject;
  std::string_view detail;  // JSON text as stored
};

// HMAC(chain_key, prev_hash || canonical encoding of the record).
std::string chain_hash(std::string_view chain_key, std::string_view prev_hash,
                       const RecordFields& r) {
  std::string message;
  constexpr std::size_t kFixedBytes = 6 * sizeof(std::uint64_t);  // seq, time, four lengths
  message.reserve(prev_hash.size() + kFixedBytes + r.actor.size() + r.action.size() +
                  r.subject.size() + r.detail.size());
  message.append(prev_hash);
  put_u64(message, static_cast<std::uint64_t>(r.seq));
  put_u64(message, static_cast<std::uint64_t>(r.at_us));
  put_field(message, r.actor);
  put_field(message, r.action);
  put_field(message, r.subject);
  put_field(message, r.detail);
  return crypto::hmac_sha256(chain_key, message);
}

std::string head_mac(std::string_view chain_key, std::int64_t seq, std::string_view hash) {
  std::string message(kHeadLabel);
  put_u64(message, static_cast<std::uint64_t>(seq));
  message.append(hash);
  return crypto::hmac_sha256(chain_key, message);
}

struct Head {
  std::int64_t seq = 0;
  std::string hash_hex;
  std::string mac_hex;
};

Result<std::optional<Head>> read_head(storage::Database& db) {
  std::optional<Head> head;
  CIVICBUS_RETURN_IF_ERROR(db.query(
      "SELECT seq, hash, mac FROM broker_audit_head WHERE id = 1", {},
      [&](const storage::Row& row) {
        head = Head{row.get_int(0), std::string(row.get_text(1)), std::string(row.get_text(2))};
        return false;
      }));
  return head;
}

bool head_is_sealed(std::string_view chain_key, const Head& head) {
  Result<std::string> hash = crypto::from_hex(head.hash_hex);
  if (!hash.ok() || hash->size() != kHashBytes) return false;
  return crypto::constant_time_equal(crypto::to_hex(head_mac(chain_key, head.seq, *hash)),
                                     head.mac_hex);
}

std::string seq_range(std::int64_t first, std::int64_t last) {
  return first == last ? fmt::format("seq {}", first) : fmt::format("seq {}..{}", first, last);
}

// Classifies each record of the chain as it streams by in seq order. A record is checked
// against its own hash (catches edits) and against the record before it (catches deletions
// and moves); a short window either side tells a moved record from an edited one.
class ChainVerifier {
 public:
  explicit ChainVerifier(std::string_view chain_key) : chain_key_(chain_key) {}

  void add(RecordFields fields, std::string_view prev_hex, std::string_view hash_hex) {
    Entry e{fields.seq, std::string(prev_hex), std::string(hash_hex), false};
    Result<std::string> prev = crypto::from_hex(prev_hex);
    if (prev.ok() && prev->size() == kHashBytes) {
      e.content_ok = crypto::constant_time_equal(
          crypto::to_hex(chain_hash(chain_key_, *prev, fields)), hash_hex);
    }
    if (e.content_ok) ++verified_;
    seq_by_hash_.emplace(e.hash, e.seq);
    buffer_.push_back(std::move(e));
    ++records_;
    while (buffer_.size() - next_ > kReorderWindow) classify_next();
    while (next_ > kReorderWindow) {
      auto it = seq_by_hash_.find(buffer_.front().hash);
      if (it != seq_by_hash_.end() && it->second == buffer_.front().seq) seq_by_hash_.erase(it);
      buffer_.pop_front();
      --next_;
    }
  }

  AuditReport finish(const std::optional<Head>& head) {
    while (next_ < buffer_.size()) classify_next();
    check_head(head);
    if (records_ > 0 && verified_ == 0) {
      problems_.push_back(
          "no record matches its hash: the master key is probably not the one this log was "
          "written with");
    }
    AuditReport report;
    report.records = records_;
    report.intact = problems_.empty();
    report.problems = std::move(problems_);
    return report;
  }

 private:
  struct Entry {
    std::int64_t seq;
    std::string prev_hex;
    std::string hash;  // hex, as stored
    bool content_ok;
  };
  struct Classified {
    std::int64_t seq;
    std::string hash;
    bool reported;
  };

  // Where the record whose hash is `hash_hex` now sits, if it is within the window.
  std::optional<std::int64_t> seq_of(const std::string& hash_hex) const {
    auto it = seq_by_hash_.find(hash_hex);
    if (it == seq_by_hash_.end()) return std::nullopt;
    return it->second;
  }

  void classify_next() {
    const Entry& e = buffer_[next_++];
    const std::int64_t expected_seq = prev_ ? prev_->seq + 1 : 1;
    bool gap = false;
    if (e.seq > expected_seq) {
      gap = true;
      problems_.push_back(fmt::format("{}: missing (deleted)", seq_range(expected_seq, e.seq - 1)));
    } else if (e.seq < expected_seq) {
      problems_.push_back(
          fmt::format("seq {}: not a sequence number civicbus writes (inserted)", e.seq));
    }
    const std::string& expected_prev = prev_ ? prev_->hash : genesis_hex();
    const bool link_ok = e.prev_hex == expected_prev;
    const std::optional<std::int64_t> written_after = seq_of(e.prev_hex);
    const bool moved = !link_ok && written_after && *written_after != e.seq &&
                       (!prev_ || *written_after != prev_->seq);
    bool reported = false;
    if (!e.content_ok) {
      if (moved) {
        problems_.push_back(fmt::format(
            "seq {}: out of order (reordered): it was written right after the record now at "
            "seq {}",
            e.seq, *written_after));
      } else {
        problems_.push_back(fmt::format(
            "seq {}: contents do not match its hash (edited, or verified with another master "
            "key)",
            e.seq));
      }
      reported = true;
    } else if (!link_ok && !gap && !(prev_ && prev_->reported)) {
      // The record itself is intact but its predecessor is not the one it was chained to.
      if (moved) {
        problems_.push_back(fmt::format(
            "seq {}: out of order (reordered): it was written right after the record now at "
            "seq {}",
            e.seq, *written_after));
      } else if (prev_) {
        problems_.push_back(
            fmt::format("seq {}: does not follow seq {} (the record at seq {} was replaced)", e.seq,
                        prev_->seq, prev_->seq));
      } else {
        problems_.push_back(fmt::format(
            "seq {}: does not start the chain (records before it were deleted)", e.seq));
      }
      reported = true;
    }
    prev_ = Classified{e.seq, e.hash, reported};
  }

  void check_head(const std::optional<Head>& head) {
    if (!head) {
      if (records_ > 0) {
        problems_.push_back(fmt::format(
            "head: missing while the log has {} records (deleted; the tail may have been "
            "truncated)",
            records_));
      }
      return;
    }
    if (!head_is_sealed(chain_key_, *head)) {
      problems_.push_back(fmt::format(
          "head: does not match its MAC (edited, or verified with another master key); it "
          "records seq {}",
          head->seq));
      return;
    }
    const std::int64_t last = prev_ ? prev_->seq : 0;
    if (head->seq > last) {
      problems_.push_back(
          fmt::format("{}: missing at the tail (truncated); the head records seq {}",
                      seq_range(last + 1, head->seq), head->seq));
    } else if (head->seq < last) {
      problems_.push_back(fmt::format(
          "{}: not sealed by the head, which records seq {} (appended without the master key)",
          seq_range(head->seq + 1, last), head->seq));
    } else if (head->hash_hex != prev_->hash) {
      problems_.push_back(fmt::format(
          "head: records seq {} with a hash other than that record's (head mismatch)", head->seq));
    }
  }

  std::string_view chain_key_;
  std::deque<Entry> buffer_;
  std::size_t next_ = 0;  // index in buffer_ of the next record to classify
  std::unordered_map<std::string, std::int64_t> seq_by_hash_;  // records in buffer_
  std::optional<Classified> prev_;
  std::int64_t records_ = 0;
  std::int64_t verified_ = 0;
  std::vector<std::string> problems_;
};

// Feeds records with seq > `after` to `verifier`, a page at a time, until none is left.
// Returns the last seq fed (or `after`).
Result<std::int64_t> feed_records(storage::Database& db, ChainVerifier& verifier,
                                  std::int64_t after) {
  for (;;) {
    std::int64_t rows = 0;
    CIVICBUS_RETURN_IF_ERROR(
        db.query("SELECT seq, recorded_at, actor, action, subject, detail, prev_hash, hash "
                 "FROM broker_audit WHERE seq > ? ORDER BY seq LIMIT ?",
                 {after, kPageSize}, [&](const storage::Row& row) {
                   RecordFields f{row.get_int(0),  row.get_int(1),  row.get_text(2),
                                  row.get_text(3), row.get_text(4), row.get_text(5)};
                   verifier.add(f, row.get_text(6), row.get_text(7));
                   after = f.seq;
                   ++rows;
                   return true;
                 }));
    if (rows < kPageSize) return after;
  }
}

}  // namespace

AuditLog::AuditLog(storage::Database& db, std::string chain_key, const Clock& clock)
    : db_(db), chain_key_(std::move(chain_key)), clock_(clock), last_hash_(genesis_hash()) {}

AuditLog::~AuditLog() {
  crypto::wipe(chain_key_);
}

Result<std::unique_ptr<AuditLog>> AuditLog::open(storage::Database& db, std::string_view master_key,
                                                 const Clock& clock) {
  if (master_key.size() != kMasterKeyLength) {
    return invalid_argument(fmt::format("the audit log needs a {}-byte master key, got {} bytes",
                                        kMasterKeyLength, master_key.size()));
  }
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(db, "broker_audit", kAuditMigrations));
  std::unique_ptr<AuditLog> log(
      new AuditLog(db, crypto::hmac_sha256(master_key, kChainKeyLabel), clock));
  CIVICBUS_RETURN_IF_ERROR(db.transaction([&]() -> Status {
    std::lock_guard lock(log->mu_);
    return log->reload_tail_locked();
  }));
  return log;
}

std::int64_t AuditLog::last_seq() const {
  std::lock_guard lock(mu_);
  return last_seq_;
}

Status AuditLog::reload_tail_locked() {
  CIVICBUS_ASSIGN_OR_RETURN(std::optional<Head> head, read_head(db_));
  std::optional<std::int64_t> last_row_seq;
  std::string last_row_hash_hex;
  CIVICBUS_RETURN_IF_ERROR(db_.query("SELECT seq, hash FROM broker_audit ORDER BY seq DESC LIMIT 1",
                                     {}, [&](const storage::Row& row) {
                                       last_row_seq = row.get_int(0);
                                       last_row_hash_hex = std::string(row.get_text(1));
                                       return false;
                                     }));
  // A sealed head is the truth about the tail: continuing from it keeps a deleted tail
  // visible as a gap instead of quietly re-sealing the shortened chain.
  if (head && head_is_sealed(chain_key_, *head)) {
    last_seq_ = std::max(head->seq, last_row_seq.value_or(0));
    last_hash_ = *crypto::from_hex(head->hash_hex);
    return {};
  }
  // No usable head (new log, or one verify() will report): chain on from the last record.
  if (last_row_seq) {
    last_seq_ = *last_row_seq;
    Result<std::string> hash = crypto::from_hex(last_row_hash_hex);
    last_hash_ = hash.ok() && hash->size() == kHashBytes ? *hash : genesis_hash();
  } else {
    last_seq_ = 0;
    last_hash_ = genesis_hash();
  }
  return {};
}

Status AuditLog::sync_tail_locked() {
  CIVICBUS_ASSIGN_OR_RETURN(std::optional<Head> head, read_head(db_));
  // The common case: the head is what this instance wrote last.
  if (head && head->seq == last_seq_ && head->hash_hex == crypto::to_hex(last_hash_)) return {};
  // An empty log, a deleted head, a rolled-back transaction (ours or a caller's) or another
  // connection that appended: the stored tail decides.
  return reload_tail_locked();
}

Status AuditLog::append(std::string_view actor, std::string_view action, std::string_view subject,
                        const Json& detail) {
  const std::string detail_text = detail.dump();
  const std::int64_t at_us = to_unix_micros(clock_.now());
  // The lock is taken inside the transaction, never around it: a caller already holding a
  // transaction on `db_` and another thread holding mu_ would otherwise wait on each other.
  return db_.transaction([&]() -> Status {
    std::lock_guard lock(mu_);
    CIVICBUS_RETURN_IF_ERROR(sync_tail_locked());
    const std::int64_t seq = last_seq_ + 1;
    const RecordFields fields{seq, at_us, actor, action, subject, detail_text};
    const std::string hash = chain_hash(chain_key_, last_hash_, fields);
    const std::string hash_hex = crypto::to_hex(hash);
    const std::string prev_hex = crypto::to_hex(last_hash_);
    const std::string mac_hex = crypto::to_hex(head_mac(chain_key_, seq, hash));
    Result<std::int64_t> inserted = db_.execute(
        "INSERT INTO broker_audit (seq, recorded_at, actor, action, subject, detail, prev_hash, "
        "hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        {seq, at_us, actor, action, subject, std::string_view(detail_text),
         std::string_view(prev_hex), std::string_view(hash_hex)});
    if (!inserted.ok()) {
      return inserted.status().with_context(fmt::format("appending audit record seq {}", seq));
    }
    Result<std::int64_t> sealed = db_.execute(
        "INSERT INTO broker_audit_head (id, seq, hash, mac) VALUES (1, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
        "mac = excluded.mac",
        {seq, std::string_view(hash_hex), std::string_view(mac_hex)});
    if (!sealed.ok()) {
      return sealed.status().with_context(fmt::format("sealing audit record seq {}", seq));
    }
    last_seq_ = seq;
    last_hash_ = hash;
    return Status();
  });
}

Result<std::vector<AuditRecord>> AuditLog::records(std::int64_t from_seq, std::size_t limit) {
  std::vector<AuditRecord> out;
  if (limit == 0) return out;
  const auto max_limit = static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max());
  const auto sql_limit = static_cast<std::int64_t>(std::min(limit, max_limit));
  Status parse_error;
  CIVICBUS_RETURN_IF_ERROR(db_.query(
      "SELECT seq, recorded_at, actor, action, subject, detail, hash FROM broker_audit "
      "WHERE seq >= ? ORDER BY seq LIMIT ?",
      {from_seq, sql_limit}, [&](const storage::Row& row) {
        AuditRecord r;
        r.seq = row.get_int(0);
        r.at = from_unix_micros(row.get_int(1));
        r.actor = std::string(row.get_text(2));
        r.action = std::string(row.get_text(3));
        r.subject = std::string(row.get_text(4));
        Result<Json> detail = Json::parse(row.get_text(5));
        if (!detail.ok()) {
          parse_error =
              data_loss(fmt::format("audit record seq {} has a detail that is not JSON: {}", r.seq,
                                    detail.status().message()));
          return false;
        }
        r.detail = std::move(*detail);
        r.hash = std::string(row.get_text(6));
        out.push_back(std::move(r));
        return true;
      }));
  CIVICBUS_RETURN_IF_ERROR(parse_error);
  return out;
}

Result<AuditReport> AuditLog::verify() {
  ChainVerifier verifier(chain_key_);
  // The bulk of the chain is read without blocking appenders; only the tail and the head are
  // read in one transaction, so records appended meanwhile are neither missed nor blamed.
  CIVICBUS_ASSIGN_OR_RETURN(std::int64_t after,
                            feed_records(db_, verifier, std::numeric_limits<std::int64_t>::min()));
  std::optional<AuditReport> report;
  CIVICBUS_RETURN_IF_ERROR(db_.transaction([&]() -> Status {
    CIVICBUS_RETURN_IF_ERROR(feed_records(db_, verifier, after).status());
    CIVICBUS_ASSIGN_OR_RETURN(std::optional<Head> head, read_head(db_));
    report = verifier.finish(head);
    return Status();
  }));
  return std::move(*report);
}

}  // namespace civicbus::broker
