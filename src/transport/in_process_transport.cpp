// The embedded transport: one SQLite file, one writer thread doing group commit.
//
// Producers queue appends; the writer takes everything queued (up to max_batch), stores it in
// one transaction and fsyncs once, then completes every append of the batch. Throughput
// therefore grows with concurrency while each append still waits for its own fsync.
// Idempotency (source + id) is checked by the writer against an in-memory window that is
// rebuilt from the log at start-up, so it survives restarts.
#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "civicbus/core/metrics.hpp"
#include "civicbus/storage/database.hpp"
#include "civicbus/transport/transport.hpp"
#include "transport/dedup_window.hpp"

namespace civicbus::transport {
namespace {

using storage::Blob;
using storage::Value;

constexpr storage::Migration kMigrations[] = {
    {1, "event log",
     R"sql(
CREATE TABLE log_topics (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE
);
CREATE TABLE log_records (
  seq INTEGER PRIMARY KEY,
  topic_id INTEGER NOT NULL,  -- log_topics.id; no FOREIGN KEY: a check per append, and the
                              -- writer inserts the topic first in the same transaction
  source TEXT NOT NULL,
  event_id TEXT NOT NULL,
  partition_key TEXT NOT NULL,
  stored_at INTEGER NOT NULL,
  payload BLOB NOT NULL
);
CREATE INDEX log_records_by_topic ON log_records(topic_id, seq);
CREATE TABLE log_meta (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
INSERT INTO log_meta(name, value) VALUES ('next_seq', 1);
)sql"},
};

// Records are inserted kRowsPerInsert at a time: one statement run per 32 rows instead of
// per row (fewer statement lookups, binds and VM starts on the writer thread).
constexpr std::size_t kColumns = 7;
constexpr std::size_t kRowsPerInsert = 32;
std::string insert_records_sql(std::size_t rows) {
  std::string sql =
      "INSERT INTO log_records(seq, topic_id, source, event_id, partition_key, stored_at, payload) "
      "VALUES ";
  for (std::size_t i = 0; i < rows; ++i)
    sql += i == 0 ? "(?, ?, ?, ?, ?, ?, ?)" : ", (?, ?, ?, ?, ?, ?, ?)";
  return sql;
}
constexpr std::string_view kSelectFrom =
    "SELECT seq, topic_id, source, event_id, partition_key, stored_at, payload FROM log_records "
    "WHERE seq >= ? ORDER BY seq LIMIT ?";

// Topics are stored as small integer ids (log_topics): the per-record index then holds two
// integers instead of the topic's text, which is most of the cost of an append after the
// payload itself.
std::shared_ptr<StoredRecord> record_from_row(const storage::Row& row, std::string topic) {
  auto rec = std::make_shared<StoredRecord>();
  rec->offset = row.get_int(0);
  rec->topic = std::move(topic);
  rec->source = std::string(row.get_text(2));
  rec->event_id = std::string(row.get_text(3));
  rec->partition_key = std::string(row.get_text(4));
  rec->stored_at = from_unix_micros(row.get_int(5));
  rec->payload = std::string(row.get_blob(6));
  return rec;
}

// What a cached record costs: its strings plus the record and its shared_ptr control block.
std::size_t cached_size(const StoredRecord& r) {
  return r.payload.size() + r.topic.size() + r.source.size() + r.event_id.size() +
         r.partition_key.size() + sizeof(StoredRecord) + 32;
}

class InProcessTransport final : public Transport {
 public:
  InProcessTransport(InProcessOptions options, const Clock& clock, MetricsRegistry* metrics,
                     std::unique_ptr<storage::Database> writer_db,
                     std::unique_ptr<storage::Database> reader_db,
                     std::unique_ptr<storage::Database> checkpoint_db)
      : options_(std::move(options)),
        clock_(clock),
        writer_db_(std::move(writer_db)),
        reader_db_(std::move(reader_db)),
        checkpoint_db_(std::move(checkpoint_db)),
        dedup_(options_.dedup_window, options_.dedup_max_entries) {
    if (metrics != nullptr) {
      appended_ = &metrics->counter("civicbus_log_appended_total", "Records stored in the log");
      duplicates_ = &metrics->counter("civicbus_log_duplicates_total",
                                      "Appends acknowledged as duplicates of source+id");
      batch_size_ =
          &metrics->histogram("civicbus_log_commit_batch_records", "Records per group commit", {},
                              {1, 4, 16, 64, 256, 1024, 4096, 16384});
      commit_seconds_ = &metrics->histogram("civicbus_log_commit_seconds",
                                            "Time to store and fsync one group commit");
    }
  }

  ~InProcessTransport() override { close(); }

  Status start() {
    CIVICBUS_RETURN_IF_ERROR(storage::migrate(*writer_db_, "transport", kMigrations));
    CIVICBUS_ASSIGN_OR_RETURN(
        auto next, writer_db_->query_int("SELECT value FROM log_meta WHERE name = 'next_seq'"));
    CIVICBUS_ASSIGN_OR_RETURN(auto max_seq,
                              writer_db_->query_int("SELECT max(seq) FROM log_records"));
    next_offset_ = std::max(next.value_or(1), max_seq.value_or(0) + 1);
    committed_next_ = next_offset_;
    CIVICBUS_ASSIGN_OR_RETURN(auto last_at,
                              writer_db_->query_int("SELECT max(stored_at) FROM log_records"));
    last_stored_us_ = last_at.value_or(0);

    CIVICBUS_RETURN_IF_ERROR(writer_db_->query(
        "SELECT id, name FROM log_topics ORDER BY id", {}, [&](const storage::Row& row) {
          const auto id = static_cast<std::size_t>(row.get_int(0));
          if (topic_names_.size() <= id) topic_names_.resize(id + 1);
          topic_names_[id] = std::string(row.get_text(1));
          topic_ids_.emplace(topic_names_[id], row.get_int(0));
          return true;
        }));
    CIVICBUS_RETURN_IF_ERROR(writer_db_->query(
        "SELECT topic_id, count(*), sum(length(payload)) FROM log_records GROUP BY topic_id", {},
        [&](const storage::Row& row) {
          usage_[topic_name(row.get_int(0))] = {row.get_int(1), row.get_int(2)};
          return true;
        }));
    CIVICBUS_RETURN_IF_ERROR(rebuild_dedup_window());
    if (checkpoint_db_) {
      CIVICBUS_RETURN_IF_ERROR(writer_db_->execute_script("PRAGMA wal_autocheckpoint = 0"));
      checkpointer_ = std::thread([this] { checkpoint_loop(); });
    }
    completer_ = std::thread([this] { completion_loop(); });
    writer_ = std::thread([this] { writer_loop(); });
    return {};
  }

  void append(AppendRequest request, AppendCallback done) override {
    // Hashed here, on the producer's thread: the writer thread is the log's one serial stage.
    const DedupWindow::Key key = DedupWindow::make_key(request.source, request.event_id);
    auto rec = std::make_shared<StoredRecord>();
    rec->topic = std::move(request.topic);
    rec->source = std::move(request.source);
    rec->event_id = std::move(request.event_id);
    rec->partition_key = std::move(request.partition_key);
    rec->payload = std::move(request.payload);
    {
      std::unique_lock lock(queue_mu_);
      if (!closing_ && queue_.size() >= options_.max_queued) {
        bool has_room = space_cv_.wait_for(lock, options_.append_block_timeout, [&] {
          return closing_ || queue_.size() < options_.max_queued;
        });
        if (!has_room) {
          lock.unlock();
          done(resource_exhausted(fmt::format(
              "event log is saturated: {} appends waiting for a commit for {} ms; slow down "
              "publishers or raise max_queued",
              options_.max_queued, options_.append_block_timeout.count())));
          return;
        }
      }
      if (closing_) {
        lock.unlock();
        done(unavailable("event log is closed"));
        return;
      }
      queue_.push_back(Pending{std::move(rec), std::move(done), key});
    }
    queue_cv_.notify_one();
  }

  Result<std::vector<RecordPtr>> read(std::int64_t from, std::size_t max_records) override {
    std::vector<RecordPtr> out;
    if (max_records == 0) return out;
    {
      std::shared_lock lock(cache_mu_);
      if (!cache_.empty() && from >= cache_.front()->offset) {
        auto it =
            std::lower_bound(cache_.begin(), cache_.end(), from,
                             [](const RecordPtr& r, std::int64_t off) { return r->offset < off; });
        for (; it != cache_.end() && out.size() < max_records; ++it) out.push_back(*it);
        return out;
      }
    }
    out.reserve(std::min<std::size_t>(max_records, 1024));
    Status st =
        reader().query(kSelectFrom, {Value{from}, Value{static_cast<std::int64_t>(max_records)}},
                       [&](const storage::Row& row) {
                         out.push_back(record_from_row(row, topic_name(row.get_int(1))));
                         return true;
                       });
    if (!st.ok()) return st.with_context("reading the event log");
    return out;
  }

  Result<RecordPtr> read_one(std::int64_t offset) override {
    CIVICBUS_ASSIGN_OR_RETURN(auto records, read(offset, 1));
    if (records.empty() || records.front()->offset != offset) {
      return not_found(fmt::format("no record at offset {} in the event log", offset));
    }
    return records.front();
  }

  std::int64_t next_offset() const override {
    std::lock_guard lock(state_mu_);
    return committed_next_;
  }

  Result<std::int64_t> offset_at_time(SystemTime t) override {
    const std::int64_t target = to_unix_micros(t);
    // stored_at never decreases with seq, so a binary search over seq finds the first record
    // stored at or after `t` without an index on stored_at.
    std::int64_t lo = 1;
    std::int64_t hi = next_offset();
    while (lo < hi) {
      std::int64_t mid = lo + (hi - lo) / 2;
      std::int64_t found_seq = -1;
      std::int64_t found_at = 0;
      Status st = reader().query(
          "SELECT seq, stored_at FROM log_records WHERE seq >= ? ORDER BY seq LIMIT 1",
          {Value{mid}}, [&](const storage::Row& row) {
            found_seq = row.get_int(0);
            found_at = row.get_int(1);
            return false;
          });
      if (!st.ok()) return st.with_context("searching the event log by time");
      if (found_seq < 0 || found_at >= target) {
        hi = mid;
      } else {
        lo = found_seq + 1;
      }
    }
    // lo is a seq position; return the first existing record at or after it.
    std::int64_t first = next_offset();
    Status st = reader().query("SELECT seq FROM log_records WHERE seq >= ? ORDER BY seq LIMIT 1",
                               {Value{lo}}, [&](const storage::Row& row) {
                                 first = row.get_int(0);
                                 return false;
                               });
    if (!st.ok()) return st;
    return first;
  }

  std::uint64_t add_commit_listener(std::function<void(std::int64_t)> fn) override {
    std::lock_guard lock(listeners_mu_);
    std::uint64_t id = next_listener_id_++;
    listeners_.emplace(id, std::move(fn));
    return id;
  }

  void remove_commit_listener(std::uint64_t id) override {
    std::lock_guard lock(listeners_mu_);
    listeners_.erase(id);
  }

  Result<std::int64_t> expire(const std::string& topic, SystemTime older_than,
                              std::int64_t max_bytes) override {
    const std::optional<std::int64_t> topic_id = known_topic_id(topic);
    if (!topic_id) return std::int64_t{0};  // never stored anything
    CIVICBUS_ASSIGN_OR_RETURN(std::int64_t time_cut, offset_at_time(older_than));
    std::int64_t cut = time_cut;  // delete seq < cut
    if (max_bytes > 0) {
      TopicUsage u = usage(topic);
      if (u.bytes > max_bytes) {
        std::int64_t excess = u.bytes - max_bytes;
        CIVICBUS_RETURN_IF_ERROR(reader().query(
            "SELECT seq, length(payload) FROM log_records WHERE topic_id = ? ORDER BY seq",
            {Value{*topic_id}}, [&](const storage::Row& row) {
              std::int64_t seq = row.get_int(0);
              if (seq >= cut) cut = seq + 1;
              excess -= row.get_int(1);
              return excess > 0;
            }));
      }
    }
    std::int64_t removed = 0;
    std::int64_t removed_bytes = 0;
    Status st = writer_db_->transaction([&]() -> Status {
      CIVICBUS_ASSIGN_OR_RETURN(
          auto bytes,
          writer_db_->query_int(
              "SELECT sum(length(payload)) FROM log_records WHERE topic_id = ? AND seq < ?",
              {Value{*topic_id}, Value{cut}}));
      removed_bytes = bytes.value_or(0);
      CIVICBUS_ASSIGN_OR_RETURN(
          removed, writer_db_->execute("DELETE FROM log_records WHERE topic_id = ? AND seq < ?",
                                       {Value{*topic_id}, Value{cut}}));
      return {};
    });
    if (!st.ok()) return st.with_context(fmt::format("expiring records of topic '{}'", topic));
    if (removed > 0) {
      {
        std::lock_guard lock(state_mu_);
        auto& u = usage_[topic];
        u.records -= removed;
        u.bytes -= removed_bytes;
      }
      std::unique_lock lock(cache_mu_);
      std::deque<RecordPtr> kept;
      for (auto& r : cache_) {
        if (!(r->topic == topic && r->offset < cut)) {
          kept.push_back(std::move(r));
        } else {
          cache_bytes_ -= cached_size(*r);
        }
      }
      cache_.swap(kept);
    }
    return removed;
  }

  Result<std::vector<Backlog>> backlog(std::int64_t after_offset) override {
    // Per topic through the (topic_id, seq) index: counting index entries reads a few bytes
    // per record instead of the records themselves, and the oldest one is a single seek.
    // Lag gauges call this every maintenance pass, also for a group far behind.
    std::vector<std::pair<std::int64_t, std::string>> topics;
    {
      std::shared_lock lock(topics_mu_);
      for (std::size_t id = 1; id < topic_names_.size(); ++id) {
        topics.emplace_back(static_cast<std::int64_t>(id), topic_names_[id]);
      }
    }
    std::vector<Backlog> out;
    for (auto& [id, name] : topics) {
      std::int64_t oldest_at = -1;
      Status st = reader().query(
          "SELECT stored_at FROM log_records WHERE topic_id = ? AND seq > ? ORDER BY topic_id, seq "
          "LIMIT 1",
          {Value{id}, Value{after_offset}}, [&](const storage::Row& row) {
            oldest_at = row.get_int(0);
            return false;
          });
      if (!st.ok()) return st.with_context("measuring the log's backlog");
      if (oldest_at < 0) continue;
      auto count =
          reader().query_int("SELECT count(*) FROM log_records WHERE topic_id = ? AND seq > ?",
                             {Value{id}, Value{after_offset}});
      if (!count.ok()) return count.status().with_context("measuring the log's backlog");
      out.push_back(Backlog{std::move(name), count->value_or(0), from_unix_micros(oldest_at)});
    }
    return out;
  }

  AppendCounts append_counts() const override {
    std::lock_guard lock(state_mu_);
    return AppendCounts{committed_next_, appended_since_open_};
  }

  TopicUsage usage(const std::string& topic) const override {
    std::lock_guard lock(state_mu_);
    auto it = usage_.find(topic);
    return it == usage_.end() ? TopicUsage{} : it->second;
  }

  void close() override {
    {
      std::lock_guard lock(queue_mu_);
      closing_ = true;
    }
    queue_cv_.notify_all();
    space_cv_.notify_all();
    if (writer_.joinable()) writer_.join();
    {
      std::lock_guard lock(completion_mu_);
      completions_done_ = true;
    }
    completion_cv_.notify_all();
    if (completer_.joinable()) completer_.join();
    checkpoint_cv_.notify_all();
    if (checkpointer_.joinable()) checkpointer_.join();
  }

 private:
  struct Pending {
    std::shared_ptr<StoredRecord> record;
    AppendCallback done;
    DedupWindow::Key key;
  };
  // A committed (or failed) batch on its way to the completion thread, which runs the
  // producers' callbacks and frees the records that left the cache: work that need not hold
  // up the next commit.
  struct Completion {
    std::vector<Pending> batch;
    std::vector<Result<AppendResult>> results;
    std::vector<RecordPtr> evicted;
  };

  std::string topic_name(std::int64_t id) const {
    std::shared_lock lock(topics_mu_);
    const auto i = static_cast<std::size_t>(id);
    return i < topic_names_.size() ? topic_names_[i] : std::string();
  }

  std::optional<std::int64_t> known_topic_id(std::string_view topic) const {
    std::shared_lock lock(topics_mu_);
    auto it = topic_ids_.find(topic);
    if (it == topic_ids_.end()) return std::nullopt;
    return it->second;
  }

  // On the writer thread, inside the batch's transaction: the id of `topic`, registering it
  // in log_topics when new. New ids become visible to readers only once the batch commits.
  Result<std::int64_t> topic_id_for_write(
      const std::string& topic, std::vector<std::pair<std::string, std::int64_t>>& added) {
    if (auto it = topic_ids_.find(topic); it != topic_ids_.end())
      return it->second;  // writer owns writes
    for (const auto& [name, id] : added) {
      if (name == topic) return id;
    }
    const auto id =
        static_cast<std::int64_t>(std::max<std::size_t>(topic_names_.size(), 1) + added.size());
    CIVICBUS_RETURN_IF_ERROR(writer_db_
                                 ->execute("INSERT INTO log_topics(id, name) VALUES (?, ?)",
                                           {Value{id}, Value{std::string_view(topic)}})
                                 .status());
    added.emplace_back(topic, id);
    return id;
  }

  // A private ":memory:" database cannot be opened twice, so reads then share the writer's
  // connection (it serialises internally).
  storage::Database& reader() { return reader_db_ ? *reader_db_ : *writer_db_; }

  Status rebuild_dedup_window() {
    SystemTime since = clock_.now() - options_.dedup_window;
    CIVICBUS_ASSIGN_OR_RETURN(std::int64_t from, offset_at_time(since));
    return writer_db_->query(
        "SELECT seq, source, event_id, stored_at FROM log_records WHERE seq >= ? ORDER BY seq",
        {Value{from}}, [&](const storage::Row& row) {
          dedup_.insert(row.get_text(1), row.get_text(2), row.get_int(0), row.get_int(3));
          return true;
        });
  }

  // Copies committed WAL frames into the database file without blocking the writer
  // (PASSIVE never waits for readers or the writer), and once more at close.
  void checkpoint_loop() {
    std::unique_lock lock(queue_mu_);
    for (;;) {
      bool stop =
          checkpoint_cv_.wait_for(lock, options_.checkpoint_interval, [&] { return closing_; });
      lock.unlock();
      Status st = checkpoint_db_->execute_script("PRAGMA wal_checkpoint(PASSIVE)");
      (void)st;  // a busy checkpoint is retried at the next interval
      if (stop) return;
      lock.lock();
    }
  }

  void writer_loop() {
    std::vector<Pending> batch;
    batch.reserve(options_.max_batch);
    for (;;) {
      {
        std::unique_lock lock(queue_mu_);
        queue_cv_.wait(lock, [&] { return closing_ || !queue_.empty(); });
        if (queue_.empty() && closing_) break;
        std::size_t n = std::min(queue_.size(), options_.max_batch);
        for (std::size_t i = 0; i < n; ++i) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      space_cv_.notify_all();
      commit_batch(std::move(batch));
      batch = {};
      batch.reserve(options_.max_batch);
    }
  }

  void commit_batch(std::vector<Pending> batch) {
    const SteadyTime started = clock_.steady_now();
    std::int64_t now_us = std::max(to_unix_micros(clock_.now()), last_stored_us_);
    std::vector<Result<AppendResult>> results;
    results.reserve(batch.size());
    std::vector<DedupWindow::Key> added_keys;
    std::vector<std::pair<std::string, std::int64_t>> added_topics;
    std::int64_t seq = next_offset_;
    std::int64_t last_topic_id = 0;
    const std::string* last_topic = nullptr;

    std::vector<Value> params;
    params.reserve(kColumns * kRowsPerInsert);
    auto flush_rows = [&]() -> Status {
      if (params.empty()) return {};
      const std::size_t rows = params.size() / kColumns;
      const std::string& sql = rows == kRowsPerInsert ? insert_full_sql_ : insert_sql(rows);
      auto inserted = writer_db_->execute(sql, params);
      params.clear();
      return inserted.status();
    };
    Status st = writer_db_->transaction([&]() -> Status {
      for (auto& p : batch) {
        StoredRecord& rec = *p.record;
        const DedupWindow::Key& key = p.key;
        if (auto prior = dedup_.find(key)) {
          results.emplace_back(AppendResult{*prior, true});
          continue;
        }
        if (last_topic == nullptr || *last_topic != rec.topic) {
          CIVICBUS_ASSIGN_OR_RETURN(last_topic_id, topic_id_for_write(rec.topic, added_topics));
          last_topic = &rec.topic;
        }
        rec.offset = seq++;
        rec.stored_at = from_unix_micros(now_us);
        params.insert(
            params.end(),
            {Value{rec.offset}, Value{last_topic_id}, Value{std::string_view(rec.source)},
             Value{std::string_view(rec.event_id)}, Value{std::string_view(rec.partition_key)},
             Value{now_us}, Value{Blob{rec.payload}}});
        if (params.size() == kColumns * kRowsPerInsert) CIVICBUS_RETURN_IF_ERROR(flush_rows());
        // Remembered at once, so a second copy later in this batch is a duplicate too; a
        // failed commit forgets these keys again.
        dedup_.insert_key(key, rec.offset, now_us);
        added_keys.push_back(key);
        results.emplace_back(AppendResult{rec.offset, false});
      }
      CIVICBUS_RETURN_IF_ERROR(flush_rows());
      auto meta = writer_db_->execute("UPDATE log_meta SET value = ? WHERE name = 'next_seq'",
                                      {Value{seq}});
      return meta.status();
    });

    if (!st.ok()) {
      // Nothing of the batch is stored: forget its dedup entries and fail every append.
      for (const auto& key : added_keys) dedup_.erase_key(key);
      Status failed = st.with_context("storing events in the log");
      Completion c;
      c.results.assign(batch.size(), failed);
      c.batch = std::move(batch);
      complete(std::move(c));
      return;
    }

    if (!added_topics.empty()) {
      std::unique_lock lock(topics_mu_);
      for (auto& [name, id] : added_topics) {
        const auto i = static_cast<std::size_t>(id);
        if (topic_names_.size() <= i) topic_names_.resize(i + 1);
        topic_names_[i] = name;
        topic_ids_.emplace(std::move(name), id);
      }
    }
    next_offset_ = seq;
    last_stored_us_ = now_us;
    dedup_.expire(now_us);
    std::int64_t stored = 0;
    std::vector<RecordPtr> evicted;
    {
      std::unique_lock lock(cache_mu_);
      for (std::size_t i = 0; i < batch.size(); ++i) {
        if (results[i]->duplicate) continue;
        cache_bytes_ += cached_size(*batch[i].record);
        cache_.push_back(batch[i].record);
        ++stored;
      }
      while (!cache_.empty() &&
             (cache_.size() > options_.cache_records || cache_bytes_ > options_.cache_bytes)) {
        cache_bytes_ -= cached_size(*cache_.front());
        evicted.push_back(std::move(cache_.front()));
        cache_.pop_front();
      }
    }
    {
      std::lock_guard lock(state_mu_);
      committed_next_ = seq;
      for (std::size_t i = 0; i < batch.size(); ++i) {
        if (results[i]->duplicate) continue;
        auto& u = usage_[batch[i].record->topic];
        ++appended_since_open_[batch[i].record->topic];
        u.records += 1;
        u.bytes += static_cast<std::int64_t>(batch[i].record->payload.size());
      }
    }
    if (appended_ != nullptr) {
      appended_->inc(static_cast<double>(stored));
      duplicates_->inc(static_cast<double>(batch.size() - static_cast<std::size_t>(stored)));
      batch_size_->observe(static_cast<double>(batch.size()));
      commit_seconds_->observe(
          std::chrono::duration<double>(clock_.steady_now() - started).count());
    }
    if (stored > 0) {
      std::lock_guard lock(listeners_mu_);
      for (auto& [id, fn] : listeners_) fn(seq - 1);
    }
    complete(Completion{std::move(batch), std::move(results), std::move(evicted)});
  }

  void complete(Completion c) {
    {
      std::lock_guard lock(completion_mu_);
      completions_.push_back(std::move(c));
    }
    completion_cv_.notify_one();
  }

  void completion_loop() {
    std::deque<Completion> ready;
    for (;;) {
      {
        std::unique_lock lock(completion_mu_);
        completion_cv_.wait(lock, [&] { return completions_done_ || !completions_.empty(); });
        if (completions_.empty()) return;  // done and drained
        ready.swap(completions_);
      }
      for (auto& c : ready) {
        for (std::size_t i = 0; i < c.batch.size(); ++i) c.batch[i].done(std::move(c.results[i]));
      }
      ready.clear();  // frees the batches' callbacks and the evicted records here
    }
  }

  InProcessOptions options_;
  const Clock& clock_;
  std::unique_ptr<storage::Database> writer_db_;
  std::unique_ptr<storage::Database> reader_db_;
  std::unique_ptr<storage::Database> checkpoint_db_;  // null for ":memory:"
  std::thread checkpointer_;
  std::condition_variable checkpoint_cv_;

  // Writer-thread state.
  const std::string& insert_sql(std::size_t rows) {
    std::string& sql = insert_sql_by_rows_[rows];
    if (sql.empty()) sql = insert_records_sql(rows);
    return sql;
  }
  const std::string insert_full_sql_ = insert_records_sql(kRowsPerInsert);
  std::map<std::size_t, std::string> insert_sql_by_rows_;
  DedupWindow dedup_;
  std::int64_t next_offset_ = 1;
  std::int64_t last_stored_us_ = 0;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::condition_variable space_cv_;
  std::deque<Pending> queue_;
  bool closing_ = false;
  std::thread writer_;

  std::mutex completion_mu_;
  std::condition_variable completion_cv_;
  std::deque<Completion> completions_;
  bool completions_done_ = false;  // set once the writer has stopped
  std::thread completer_;

  mutable std::shared_mutex cache_mu_;
  std::deque<RecordPtr> cache_;
  std::size_t cache_bytes_ = 0;

  // Topic ids (log_topics). Written by the writer thread after a commit, read by any thread.
  mutable std::shared_mutex topics_mu_;
  std::map<std::string, std::int64_t, std::less<>> topic_ids_;
  std::vector<std::string> topic_names_;  // by id; [0] unused

  mutable std::mutex state_mu_;
  std::int64_t committed_next_ = 1;
  std::map<std::string, TopicUsage, std::less<>> usage_;
  std::map<std::string, std::int64_t, std::less<>> appended_since_open_;

  std::mutex listeners_mu_;
  std::map<std::uint64_t, std::function<void(std::int64_t)>> listeners_;
  std::uint64_t next_listener_id_ = 1;

  Counter* appended_ = nullptr;
  Counter* duplicates_ = nullptr;
  Histogram* batch_size_ = nullptr;
  Histogram* commit_seconds_ = nullptr;
};

}  // namespace

Result<std::unique_ptr<Transport>> open_in_process(const InProcessOptions& options,
                                                   const Clock& clock, MetricsRegistry* metrics) {
  if (options.path.empty()) return invalid_argument("in-process transport needs a database path");
  if (options.max_batch == 0 || options.max_queued == 0) {
    return invalid_argument("in-process transport: max_batch and max_queued must be positive");
  }
  storage::SqliteOptions writer_options;
  writer_options.path = options.path;
  writer_options.verify_on_open = options.verify_on_open;
  writer_options.cache_size_kib = options.cache_size_kib;
  writer_options.synchronous =
      options.synchronous_full ? storage::Synchronous::kFull : storage::Synchronous::kNormal;
  CIVICBUS_ASSIGN_OR_RETURN(auto writer_db, storage::open_sqlite(writer_options));

  std::unique_ptr<storage::Database> reader_db;
  std::unique_ptr<storage::Database> checkpoint_db;
  if (options.path != ":memory:") {  // else see InProcessTransport::reader()
    storage::SqliteOptions reader_options = writer_options;
    reader_options.verify_on_open = false;
    CIVICBUS_ASSIGN_OR_RETURN(reader_db, storage::open_sqlite(reader_options));
    storage::SqliteOptions checkpoint_options = reader_options;
    checkpoint_options.cache_size_kib = 256;  // it only copies WAL frames
    CIVICBUS_ASSIGN_OR_RETURN(checkpoint_db, storage::open_sqlite(checkpoint_options));
  }
  auto transport =
      std::make_unique<InProcessTransport>(options, clock, metrics, std::move(writer_db),
                                           std::move(reader_db), std::move(checkpoint_db));
  CIVICBUS_RETURN_IF_ERROR(transport->start());
  return std::unique_ptr<Transport>(std::move(transport));
}

}  // namespace civicbus::transport
