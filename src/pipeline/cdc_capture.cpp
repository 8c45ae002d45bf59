// ChangeCapture: reads a ChangeSource, publishes each change as a CloudEvent in commit order
// and acknowledges to the source only what the broker acknowledged.
#include <fmt/format.h>

#include <cctype>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "civicbus/broker/broker.hpp"
#include "civicbus/pipeline/cdc.hpp"
#include "civicbus/storage/database.hpp"
#include "pipeline/cdc_source.hpp"

namespace civicbus::pipeline {
namespace {

// "Folder" -> "folder", "My Table" -> "my_table"; dots stay (schema-qualified names become
// two tokens).
std::string topic_token(std::string_view table) {
  std::string out;
  for (char c : table) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) {
      out += static_cast<char>(std::tolower(u));
    } else if (c == '.' || c == '-' || c == '_') {
      out += c;
    } else {
      out += '_';
    }
  }
  return out;
}

}  // namespace

class ChangeCapture::Impl {
 public:
  Impl(broker::Broker& broker, ChangeCaptureOptions options,
       std::unique_ptr<detail::ChangeSource> source)
      : broker_(broker), options_(std::move(options)), source_(std::move(source)) {}

  ~Impl() { stop(); }

  std::string type_of(std::string_view table) const {
    return fmt::format("{}.{}.changed", options_.prefix, topic_token(table));
  }

  Status create_topics() {
    for (const auto& table : options_.tables) {
      broker::TopicOptions topic;
      topic.name = type_of(table);
      topic.owner = options_.topic_owner;
      topic.description = fmt::format(
          "Row changes of table '{}' captured in commit order (op, before, after)", table);
      Status s = broker_.create_topic(topic);
      // A topic someone created with other options (retention, schema) is theirs to keep.
      if (!s.ok() && s.code() != ErrorCode::kAlreadyExists) {
        return s.with_context(fmt::format("creating topic '{}' for change capture", topic.name));
      }
    }
    return Status();
  }

  broker::CloudEvent event_of(const detail::RowChange& c) const {
    Json data =
        Json::object({{"op", c.op},
                      {"table", c.table},
                      {"before", c.before},
                      {"after", c.after},
                      {"commit_seq", c.commit_seq},
                      {"committed_at", c.committed_at.empty() ? Json() : Json(c.committed_at)}});
    if (!c.lsn.empty()) {
      data.set("lsn", c.lsn);
      data.set("xid", c.xid);
    }
    broker::CloudEvent event(type_of(c.table), options_.source, std::move(data));
    event.set_id(c.event_id);
    // One partition key per table: consumers see a table's changes in commit order.
    event.set_subject(c.table);
    if (!c.committed_at.empty()) event.set_time(c.committed_at);
    return event;
  }

  Result<PollResult> poll() {
    std::lock_guard lock(poll_mutex_);
    PollResult result;
    for (;;) {
      CIVICBUS_ASSIGN_OR_RETURN(detail::PendingChanges batch,
                                source_->pending(std::max<std::size_t>(1, options_.batch_size)));
      Status failure;
      std::string ack_token;
      std::int64_t published = 0;  // published since the last ackable change
      std::int64_t duplicates = 0;
      for (const auto& change : batch.changes) {
        auto ack = broker_.publish(event_of(change));
        if (!ack.ok()) {
          failure = ack.status().with_context(
              fmt::format("publishing change {} of table '{}' ({}); it stays pending",
                          change.event_id, change.table, change.op));
          break;
        }
        ++published;
        if (ack->duplicate) ++duplicates;
        if (change.ackable) {
          ack_token = change.ack_token;
          result.published += published;
          result.duplicates += duplicates;
          published = duplicates = 0;
        }
      }
      // Everything read was published: skip past what was read and not captured as well.
      if (failure.ok() && !batch.end_token.empty()) ack_token = batch.end_token;
      if (!ack_token.empty()) {
        Status acked = source_->acknowledge(ack_token);
        if (!acked.ok()) {
          // Published but still pending: the next poll publishes them again, and the broker
          // recognises them by their ids.
          return acked.with_context("removing published changes from the source");
        }
      }
      CIVICBUS_RETURN_IF_ERROR(failure);
      if (batch.exhausted) return result;
    }
  }

  Status start(std::chrono::milliseconds interval) {
    std::lock_guard lock(thread_mutex_);
    if (thread_.joinable()) return failed_precondition("change capture is already running");
    stopping_ = false;
    thread_ = std::thread([this, interval] {
      std::unique_lock wait_lock(wait_mutex_);
      while (!stopping_) {
        wait_lock.unlock();
        auto polled = poll();
        wait_lock.lock();
        last_error_ = polled.ok() ? Status() : polled.status();
        wake_.wait_for(wait_lock, interval, [&] { return stopping_; });
      }
    });
    return Status();
  }

  void stop() {
    std::lock_guard lock(thread_mutex_);
    if (!thread_.joinable()) return;
    {
      std::lock_guard wait_lock(wait_mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  bool running() const {
    std::lock_guard lock(thread_mutex_);
    return thread_.joinable();
  }

  Status last_error() const {
    std::lock_guard lock(wait_mutex_);
    return last_error_;
  }

  Status uninstall() {
    stop();
    std::lock_guard lock(poll_mutex_);
    return source_->uninstall();
  }

  detail::ChangeSource& source() { return *source_; }

 private:
  broker::Broker& broker_;
  const ChangeCaptureOptions options_;
  std::unique_ptr<detail::ChangeSource> source_;

  std::mutex poll_mutex_;  // one poll at a time: publishing out of order would break order
  mutable std::mutex thread_mutex_;
  std::thread thread_;
  mutable std::mutex wait_mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  Status last_error_;
};

Result<std::unique_ptr<ChangeCapture>> ChangeCapture::open(storage::Database& db,
                                                           broker::Broker& broker,
                                                           ChangeCaptureOptions options) {
  if (options.tables.empty()) {
    return invalid_argument("ChangeCaptureOptions.tables is empty; name the tables to capture");
  }
  if (options.prefix.empty()) return invalid_argument("ChangeCaptureOptions.prefix is empty");
  for (const auto& table : options.tables) {
    if (table.empty()) return invalid_argument("ChangeCaptureOptions.tables has an empty name");
    std::string topic = fmt::format("{}.{}.changed", options.prefix, topic_token(table));
    Status valid = broker::validate_topic_name(topic);
    if (!valid.ok()) {
      return invalid_argument(fmt::format(
          "table '{}' with prefix '{}' gives topic '{}', which is not a valid topic name: {}",
          table, options.prefix, topic, valid.message()));
    }
  }
  static const SystemClock system_clock;
  const Clock& clock = options.clock != nullptr ? *options.clock : system_clock;
  std::unique_ptr<detail::ChangeSource> source;
  if (db.dialect() == storage::Dialect::kPostgres) {
    source = detail::make_postgres_change_source(db, options.tables, options.slot);
  } else {
    source = detail::make_sqlite_change_source(db, options.tables, clock);
  }
  CIVICBUS_RETURN_IF_ERROR(source->install());
  auto impl = std::make_unique<Impl>(broker, std::move(options), std::move(source));
  CIVICBUS_RETURN_IF_ERROR(impl->create_topics());
  return std::unique_ptr<ChangeCapture>(new ChangeCapture(std::move(impl)));
}

ChangeCapture::ChangeCapture(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChangeCapture::~ChangeCapture() = default;

Result<PollResult> ChangeCapture::poll() {
  return impl_->poll();
}
Status ChangeCapture::start(std::chrono::milliseconds interval) {
  return impl_->start(interval);
}
void ChangeCapture::stop() {
  impl_->stop();
}
bool ChangeCapture::running() const {
  return impl_->running();
}
Status ChangeCapture::last_error() const {
  return impl_->last_error();
}
Status ChangeCapture::uninstall() {
  return impl_->uninstall();
}

}  // namespace civicbus::pipeline
