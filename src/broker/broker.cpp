// The broker: topics, publishing (validation, schema, PII, the log), consumer groups, the
// DLQ, maintenance and the AsyncAPI document. Durability and ordering come from the
// Transport underneath; the broker's own state lives in the broker_* tables.
#include "civicbus/broker/broker.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <unordered_map>

#include "broker/asyncapi.hpp"
#include "broker/audit_log.hpp"
#include "broker/broker_tables.hpp"
#include "broker/consumer_group.hpp"
#include "broker/key_store.hpp"
#include "broker/pii.hpp"
#include "broker/schema_registry.hpp"
#include "civicbus/core/executor.hpp"
#include "civicbus/core/id.hpp"
#include "civicbus/core/metrics.hpp"
#include "civicbus/storage/database.hpp"
#include "civicbus/transport/transport.hpp"

namespace civicbus::broker {

std::string_view to_string(Sensitivity s) {
  switch (s) {
    case Sensitivity::kPublic:
      return "public";
    case Sensitivity::kInternal:
      return "internal";
    case Sensitivity::kConfidential:
      return "confidential";
    case Sensitivity::kRestricted:
      return "restricted";
  }
  return "internal";
}

Result<Sensitivity> parse_sensitivity(std::string_view text) {
  if (text == "public") return Sensitivity::kPublic;
  if (text == "internal") return Sensitivity::kInternal;
  if (text == "confidential") return Sensitivity::kConfidential;
  if (text == "restricted") return Sensitivity::kRestricted;
  return invalid_argument(fmt::format(
      "sensitivity must be one of public, internal, confidential, restricted; got '{}'", text));
}

std::string_view to_string(SchemaState s) {
  switch (s) {
    case SchemaState::kProposed:
      return "proposed";
    case SchemaState::kActive:
      return "active";
    case SchemaState::kSuperseded:
      return "superseded";
  }
  return "proposed";
}

namespace {

using detail::ConsumerGroupRuntime;
using detail::GroupHost;
using storage::Blob;
using storage::Value;

std::string human_bytes(std::size_t n) {
  if (n >= (1u << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(n) / (1 << 20));
  if (n >= (1u << 10)) return fmt::format("{:.1f} KiB", static_cast<double>(n) / (1 << 10));
  return fmt::format("{} bytes", n);
}

Json string_array(const std::vector<std::string>& items) {
  Json a = Json::array();
  for (const auto& s : items) a.push_back(s);
  return a;
}

std::vector<std::string> parse_string_array(std::string_view text) {
  std::vector<std::string> out;
  auto doc = Json::parse(text);
  if (doc.ok() && doc->is_array()) {
    for (const auto& v : doc->as_array()) {
      if (v.is_string()) out.push_back(v.as_string());
    }
  }
  return out;
}

bool same_options(const TopicOptions& a, const TopicOptions& b) {
  return a.name == b.name && a.owner == b.owner && a.description == b.description &&
         a.retention == b.retention && a.retention_bytes == b.retention_bytes &&
         a.sensitivity == b.sensitivity && a.pii_fields == b.pii_fields &&
         a.schema_subject == b.schema_subject;
}

Status validate_topic_options(const TopicOptions& t) {
  CIVICBUS_RETURN_IF_ERROR(validate_topic_name(t.name));
  if (t.owner.empty()) {
    return invalid_argument(fmt::format(
        "topic '{}' has no owner: every topic needs a team or person who answers for it", t.name));
  }
  if (t.retention.count() < 0 || t.retention_bytes < 0) {
    return invalid_argument(fmt::format("topic '{}': retention must not be negative", t.name));
  }
  for (const auto& p : t.pii_fields) {
    if (p.empty() || p.front() != '/') {
      return invalid_argument(
          fmt::format("topic '{}': PII field '{}' must be a JSON pointer into the event data, like "
                      "'/owner_name'",
                      t.name, p));
    }
  }
  return {};
}

// Shared with timers and subscriptions so that they can tell, under `mu`, whether the broker
// is still open. Outlives the broker while anything holds it.
struct Lifeline {
  std::mutex mu;
  bool closed = false;
};

struct TopicState {
  TopicOptions options;
  SystemTime created_at;
  Counter* published = nullptr;
  Counter* published_bytes = nullptr;
  Counter* rejected = nullptr;
};

class SubscriptionImpl;

class BrokerImpl final : public Broker, public GroupHost {
 public:
  BrokerImpl(BrokerOptions options, BrokerContext ctx)
      : options_(std::move(options)), ctx_(std::move(ctx)), ids_(ctx_.clock, ctx_.random) {}

  ~BrokerImpl() override { close(); }

  Status start() {
    CIVICBUS_RETURN_IF_ERROR(storage::migrate(ctx_.db, "broker", detail::kBrokerMigrations));
    // Without a master key the audit chain still detects accidental edits, but anyone with
    // the file could re-forge it; PII topics are refused.
    static const std::string kNoKey(32, '\0');
    CIVICBUS_ASSIGN_OR_RETURN(
        audit_, AuditLog::open(ctx_.db, options_.master_key.empty() ? kNoKey : options_.master_key,
                               ctx_.clock));
    if (options_.master_key.empty()) {
      ctx_.logger.warn("no master key: PII topics are disabled and the audit chain is unkeyed");
    } else {
      CIVICBUS_ASSIGN_OR_RETURN(
          keys_, KeyStore::open(ctx_.db, options_.master_key, ctx_.random, ctx_.clock));
    }
    schemas_ = std::make_unique<detail::SchemaRegistry>(
        ctx_.db, *audit_, ctx_.clock,
        detail::SchemaRegistry::Hooks{
            [this](std::string_view subject) { return groups_of_subject(subject); },
            [this](std::string_view subject) { return owners_of_subject(subject); }});
    CIVICBUS_RETURN_IF_ERROR(schemas_->load());
    CIVICBUS_RETURN_IF_ERROR(load_topics());
    CIVICBUS_RETURN_IF_ERROR(load_groups());
    audit_base_ = ctx_.transport.append_counts();
    listener_id_ =
        ctx_.transport.add_commit_listener([this](std::int64_t last) { on_commit(last); });
    schedule_maintenance();
    return {};
  }

  // --- topics ------------------------------------------------------------------------------

  Status create_topic(const TopicOptions& options, std::string_view actor) override {
    CIVICBUS_RETURN_IF_ERROR(validate_topic_options(options));
    if (!options.pii_fields.empty() && !keys_) {
      return failed_precondition(fmt::format(
          "topic '{}' has PII fields but the node has no master key; set CIVICBUS_MASTER_KEY or "
          "security.master_key_file",
          options.name));
    }
    std::lock_guard write(topics_write_mu_);
    {
      std::shared_lock lock(topics_mu_);
      auto it = topics_.find(options.name);
      if (it != topics_.end()) {
        if (same_options(it->second->options, options)) return {};
        return already_exists(
            fmt::format("topic '{}' exists with other settings; use update_topic to change them",
                        options.name));
      }
    }
    const std::int64_t now = to_unix_micros(ctx_.clock.now());
    CIVICBUS_RETURN_IF_ERROR(ctx_.db.transaction([&]() -> Status {
      CIVICBUS_RETURN_IF_ERROR(store_topic(options, now, true));
      return audit_->append(actor, "topic.created", options.name, topic_json(options));
    }));
    install_topic(options, from_unix_micros(now));
    return {};
  }

  Status update_topic(const TopicOptions& options, std::string_view actor) override {
    CIVICBUS_RETURN_IF_ERROR(validate_topic_options(options));
    if (!options.pii_fields.empty() && !keys_) {
      return failed_precondition(
          fmt::format("topic '{}' has PII fields but the node has no master key", options.name));
    }
    std::lock_guard write(topics_write_mu_);
    SystemTime created;
    {
      std::shared_lock lock(topics_mu_);
      auto it = topics_.find(options.name);
      if (it == topics_.end())
        return not_found(fmt::format("topic '{}' does not exist", options.name));
      if (same_options(it->second->options, options)) return {};
      created = it->second->created_at;
    }
    CIVICBUS_RETURN_IF_ERROR(ctx_.db.transaction([&]() -> Status {
      CIVICBUS_RETURN_IF_ERROR(store_topic(options, to_unix_micros(ctx_.clock.now()), false));
      return audit_->append(actor, "topic.updated", options.name, topic_json(options));
    }));
    install_topic(options, created);
    return {};
  }

  Result<TopicInfo> topic(std::string_view name) const override {
    std::shared_lock lock(topics_mu_);
    auto it = topics_.find(name);
    if (it == topics_.end()) return not_found(fmt::format("topic '{}' does not exist", name));
    return info_of(*it->second);
  }

  std::vector<TopicInfo> topics() const override {
    std::shared_lock lock(topics_mu_);
    std::vector<TopicInfo> out;
    for (const auto& [name, t] : topics_) out.push_back(info_of(*t));
    return out;
  }

  // --- publishing --------------------------------------------------------------------------

  Result<PublishAck> publish(CloudEvent event) override {
    std::promise<Result<PublishAck>> promise;
    auto future = promise.get_future();
    publish_async(std::move(event),
                  [&promise](Result<PublishAck> r) { promise.set_value(std::move(r)); });
    return future.get();
  }

  void publish_async(CloudEvent event, std::function<void(Result<PublishAck>)> done) override {
    auto prepared = prepare(event);
    if (!prepared.ok()) {
      done(prepared.status());
      return;
    }
    auto& [request, state] = *prepared;
    std::string id = request.event_id;
    std::size_t bytes = request.payload.size();
    ctx_.transport.append(std::move(request),
                          [done = std::move(done), id = std::move(id), state = state,
                           bytes](Result<transport::AppendResult> r) mutable {
                            if (!r.ok()) {
                              done(r.status());
                              return;
                            }
                            if (!r->duplicate) {
                              state->published->inc();
                              state->published_bytes->inc(static_cast<double>(bytes));
                            }
                            done(PublishAck{r->offset, r->duplicate, std::move(id)});
                          });
  }

  // --- consumer groups ---------------------------------------------------------------------

  Result<std::unique_ptr<Subscription>> subscribe(ConsumerGroupOptions options,
                                                  Handler handler) override {
    if (!handler) return invalid_argument("subscribe needs a handler");
    AsyncHandler async = [handler = std::move(handler)](const DeliveredEvent& ev,
                                                        std::function<void(Status)> done) {
      done(handler(ev));
    };
    return subscribe_async(std::move(options), std::move(async));
  }

  Result<std::unique_ptr<Subscription>> subscribe_async(ConsumerGroupOptions options,
                                                        AsyncHandler handler) override;

  Result<std::vector<GroupInfo>> groups() override {
    std::vector<GroupInfo> out;
    CIVICBUS_RETURN_IF_ERROR(
        ctx_.db.query("SELECT name, topics, committed_offset FROM broker_groups ORDER BY name", {},
                      [&](const storage::Row& row) {
                        GroupInfo g;
                        g.group = std::string(row.get_text(0));
                        g.topics = parse_string_array(row.get_text(1));
                        g.committed_offset = row.get_int(2);
                        out.push_back(std::move(g));
                        return true;
                      }));
    for (auto& g : out) {
      if (auto rt = runtime(g.group)) {
        g.active = true;
        g.committed_offset = rt->committed_offset();
      }
      CIVICBUS_ASSIGN_OR_RETURN(auto backlog, ctx_.transport.backlog(g.committed_offset));
      SystemTime oldest = SystemTime::max();
      for (const auto& b : backlog) {
        if (!matches_any(g.topics, b.topic)) continue;
        g.lag_events += b.records;
        oldest = std::min(oldest, b.oldest_stored_at);
      }
      if (g.lag_events > 0) {
        g.oldest_unacked_age = std::chrono::duration_cast<std::chrono::microseconds>(
            std::max(SystemTime::duration::zero(), ctx_.clock.now() - oldest));
      }
      CIVICBUS_ASSIGN_OR_RETURN(
          auto dlq,
          ctx_.db.query_int(
              "SELECT count(*) FROM broker_dlq WHERE group_name = ? AND replayed_at IS NULL",
              {Value{std::string_view(g.group)}}));
      g.dlq_events = dlq.value_or(0);
    }
    return out;
  }

  Status seek_group(std::string_view group, std::int64_t offset) override {
    if (runtime(group)) {
      return failed_precondition(fmt::format(
          "group '{}' has an active subscription; stop it before moving its offset", group));
    }
    CIVICBUS_ASSIGN_OR_RETURN(
        std::int64_t changed,
        ctx_.db.execute(
            "UPDATE broker_groups SET committed_offset = ?, updated_at = ? WHERE name = ?",
            {Value{std::max<std::int64_t>(0, offset - 1)}, Value{to_unix_micros(ctx_.clock.now())},
             Value{group}}));
    if (changed == 0) return not_found(fmt::format("consumer group '{}' does not exist", group));
    return audit_->append("system", "group.seek", group, Json::object({{"offset", offset}}));
  }

  Status seek_group_to_time(std::string_view group, SystemTime time) override {
    CIVICBUS_ASSIGN_OR_RETURN(std::int64_t offset, ctx_.transport.offset_at_time(time));
    return seek_group(group, offset);
  }

  Result<std::vector<DeliveredEvent>> read(std::string_view pattern, std::int64_t from_offset,
                                           std::size_t limit) override {
    std::vector<DeliveredEvent> out;
    std::int64_t from = std::max<std::int64_t>(1, from_offset);
    while (out.size() < limit) {
      CIVICBUS_ASSIGN_OR_RETURN(auto records, ctx_.transport.read(from, 1024));
      if (records.empty()) break;
      for (const auto& rec : records) {
        from = rec->offset + 1;
        if (!pattern.empty() && !topic_matches(pattern, rec->topic)) continue;
        CIVICBUS_ASSIGN_OR_RETURN(auto ev, decode(*rec, ""));
        out.push_back(std::move(ev));
        if (out.size() == limit) break;
      }
    }
    return out;
  }

  // --- schemas -----------------------------------------------------------------------------

  Status set_compatibility(std::string_view subject, SchemaCompatibility mode,
                           std::string_view actor) override {
    return schemas_->set_compatibility(subject, mode, actor);
  }
  Result<SchemaVersion> register_schema(std::string_view subject, const Json& schema,
                                        std::string_view actor) override {
    return schemas_->register_version(subject, schema, actor);
  }
  Result<SchemaVersion> acknowledge_schema(std::string_view subject, int version,
                                           std::string_view group) override {
    return schemas_->acknowledge(subject, version, group);
  }
  Result<SchemaVersion> activate_schema(std::string_view subject, int version,
                                        std::string_view actor) override {
    return schemas_->activate(subject, version, actor);
  }
  Result<std::vector<SchemaVersion>> schema_versions(std::string_view subject) override {
    return schemas_->versions(subject);
  }

  // --- DLQ ---------------------------------------------------------------------------------

  Result<std::vector<DeadLetter>> dead_letters(const DlqFilter& filter) override {
    std::string sql =
        "SELECT id, group_name, topic, log_offset, event_id, source, payload, error, attempts, "
        "first_failed_at, dead_at, replay_requested_at, replayed_at FROM broker_dlq WHERE 1 = 1";
    std::vector<Value> params;
    std::int64_t after = 0, before = 0;
    if (filter.id) {
      sql += " AND id = ?";
      params.emplace_back(*filter.id);
    }
    if (!filter.group.empty()) {
      sql += " AND group_name = ?";
      params.emplace_back(std::string_view(filter.group));
    }
    if (filter.dead_after) {
      after = to_unix_micros(*filter.dead_after);
      sql += " AND dead_at >= ?";
      params.emplace_back(after);
    }
    if (filter.dead_before) {
      before = to_unix_micros(*filter.dead_before);
      sql += " AND dead_at < ?";
      params.emplace_back(before);
    }
    if (!filter.include_replayed) sql += " AND replayed_at IS NULL";
    sql += " ORDER BY id";
    std::vector<DeadLetter> out;
    CIVICBUS_RETURN_IF_ERROR(ctx_.db.query(sql, params, [&](const storage::Row& row) {
      DeadLetter d;
      d.id = row.get_int(0);
      d.group = std::string(row.get_text(1));
      d.topic = std::string(row.get_text(2));
      if (!filter.topic.empty() && !topic_matches(filter.topic, d.topic)) return true;
      d.error = std::string(row.get_text(7));
      if (!filter.error_contains.empty() &&
          d.error.find(filter.error_contains) == std::string::npos)
        return true;
      d.offset = row.get_int(3);
      d.event_id = std::string(row.get_text(4));
      d.source = std::string(row.get_text(5));
      d.payload = std::string(row.get_blob(6));
      d.attempts = static_cast<int>(row.get_int(8));
      d.first_failed_at = from_unix_micros(row.get_int(9));
      d.dead_at = from_unix_micros(row.get_int(10));
      if (!row.is_null(11)) d.replay_requested_at = from_unix_micros(row.get_int(11));
      if (!row.is_null(12)) d.replayed_at = from_unix_micros(row.get_int(12));
      out.push_back(std::move(d));
      return out.size() < filter.limit;
    }));
    return out;
  }

  Result<std::int64_t> replay_dead_letters(const DlqFilter& filter,
                                           std::string_view actor) override {
    DlqFilter f = filter;
    f.include_replayed = false;
    f.limit = std::numeric_limits<std::size_t>::max();
    CIVICBUS_ASSIGN_OR_RETURN(auto letters, dead_letters(f));
    const std::int64_t now = to_unix_micros(ctx_.clock.now());
    std::set<std::string> touched_groups;
    CIVICBUS_RETURN_IF_ERROR(ctx_.db.transaction([&]() -> Status {
      for (const auto& d : letters) {
        CIVICBUS_RETURN_IF_ERROR(
            ctx_.db
                .execute("UPDATE broker_dlq SET replay_requested_at = ? WHERE id = ?",
                         {Value{now}, Value{d.id}})
                .status());
        touched_groups.insert(d.group);
      }
      Json ids = Json::array();
      for (const auto& d : letters) ids.push_back(d.id);
      return audit_->append(
          actor, "dlq.replay_requested", filter.group.empty() ? "*" : filter.group,
          Json::object({{"count", static_cast<std::int64_t>(letters.size())}, {"ids", ids}}));
    }));
    for (const auto& g : touched_groups) {
      if (auto rt = runtime(g)) {
        ctx_.executor.post([rt] { rt->poll_replays(); });
      }
    }
    return static_cast<std::int64_t>(letters.size());
  }

  // --- PII ---------------------------------------------------------------------------------

  Status grant_pii(std::string_view topic, std::string_view group,
                   std::string_view actor) override {
    CIVICBUS_RETURN_IF_ERROR(require_pii_topic(topic));
    return ctx_.db.transaction([&]() -> Status {
      CIVICBUS_RETURN_IF_ERROR(keys_->grant(topic, group, actor));
      return audit_->append(actor, "pii.granted", topic,
                            Json::object({{"group", std::string(group)}}));
    });
  }

  Status revoke_pii(std::string_view topic, std::string_view group,
                    std::string_view actor) override {
    CIVICBUS_RETURN_IF_ERROR(require_pii_topic(topic));
    return ctx_.db.transaction([&]() -> Status {
      CIVICBUS_RETURN_IF_ERROR(keys_->revoke(topic, group));
      return audit_->append(actor, "pii.revoked", topic,
                            Json::object({{"group", std::string(group)}}));
    });
  }

  Status shred_pii(std::string_view topic, std::string_view actor) override {
    CIVICBUS_RETURN_IF_ERROR(require_pii_topic(topic));
    return ctx_.db.transaction([&]() -> Status {
      CIVICBUS_RETURN_IF_ERROR(keys_->shred(topic));
      return audit_->append(actor, "pii.shredded", topic, Json::object());
    });
  }

  // --- audit -------------------------------------------------------------------------------

  Result<std::vector<AuditRecord>> audit_records(std::int64_t from_seq,
                                                 std::size_t limit) override {
    return audit_->records(from_seq, limit);
  }
  Result<AuditReport> verify_audit() override { return audit_->verify(); }

  Json asyncapi() const override {
    std::vector<AsyncApiChannel> channels;
    for (auto& t : topics()) {
      AsyncApiChannel c;
      c.topic = t.options;
      if (!t.options.schema_subject.empty()) {
        auto active = schemas_->active(t.options.schema_subject);
        if (active.schema) {
          c.schema_version = active.version;
          c.data_schema = active.schema->document();
        }
      }
      std::lock_guard lock(groups_mu_);
      for (const auto& [group, patterns] : group_topics_) {
        if (matches_any(patterns, t.options.name)) c.consumer_groups.push_back(group);
      }
      channels.push_back(std::move(c));
    }
    return build_asyncapi(channels, options_.node_source);
  }

  // --- maintenance -------------------------------------------------------------------------

  Status run_maintenance() override {
    std::lock_guard lock(maintenance_mu_);
    const SystemTime now = ctx_.clock.now();
    // Retention per topic.
    for (const auto& t : topics()) {
      if (t.options.retention.count() == 0 && t.options.retention_bytes == 0) continue;
      SystemTime older_than = t.options.retention.count() == 0
                                  ? SystemTime::min() + std::chrono::hours(1)
                                  : now - t.options.retention;
      CIVICBUS_ASSIGN_OR_RETURN(
          std::int64_t removed,
          ctx_.transport.expire(t.options.name, older_than, t.options.retention_bytes));
      if (removed > 0) {
        ctx_.logger.info("retention removed events",
                         {{"topic", t.options.name}, {"count", std::to_string(removed)}});
      }
    }
    // Dead letters are kept for dlq_retention.
    CIVICBUS_ASSIGN_OR_RETURN(
        std::int64_t purged,
        ctx_.db.execute("DELETE FROM broker_dlq WHERE dead_at < ?",
                        {Value{to_unix_micros(now - options_.dlq_retention)}}));
    if (purged > 0) {
      CIVICBUS_RETURN_IF_ERROR(
          audit_->append("system", "dlq.expired", "*", Json::object({{"count", purged}})));
    }
    CIVICBUS_RETURN_IF_ERROR(audit_published_ranges());
    // Offsets, replays, proposed schemas and lag gauges.
    for (const auto& rt : runtimes()) {
      Status st = rt->flush_offset();
      if (!st.ok())
        ctx_.logger.error("offset commit failed",
                          {{"group", rt->group()}, {"error", st.to_string()}});
      rt->poll_replays();
    }
    CIVICBUS_RETURN_IF_ERROR(schemas_->reconcile());
    return refresh_lag_gauges();
  }

  void close() override {
    bool expected = false;
    if (!closed_.compare_exchange_strong(expected, true)) return;
    {
      // After this, no maintenance pass starts and no subscription calls back in.
      std::lock_guard life(lifeline_->mu);
      lifeline_->closed = true;
    }
    if (listener_id_ != 0) ctx_.transport.remove_commit_listener(listener_id_);
    for (const auto& rt : runtimes()) rt->stop();
    {
      std::lock_guard lock(runtimes_mu_);
      runtimes_.clear();
    }
    // Wait for a maintenance pass in progress, then record what was published last.
    std::lock_guard lock(maintenance_mu_);
    Status st = audit_ ? audit_published_ranges() : Status();
    if (!st.ok())
      ctx_.logger.error("audit of the last published events failed", {{"error", st.to_string()}});
  }

  // --- GroupHost ---------------------------------------------------------------------------

  transport::Transport& transport() override { return ctx_.transport; }
  Executor& executor() override { return ctx_.executor; }
  const Clock& clock() const override { return ctx_.clock; }
  const Logger& logger() const override { return ctx_.logger; }

  Result<DeliveredEvent> decode(const transport::StoredRecord& record,
                                std::string_view group) override {
    auto doc = Json::parse(record.payload);
    if (!doc.ok()) {
      return data_loss(fmt::format("stored event at offset {} is not valid JSON: {}", record.offset,
                                   doc.status().message()));
    }
    DeliveredEvent ev;
    ev.offset = record.offset;
    ev.topic = record.topic;
    ev.stored_at = record.stored_at;
    auto state = topic_state(record.topic);
    if (state && !state->options.pii_fields.empty() && keys_) {
      Json* data = doc->find("data");
      if (data != nullptr) {
        bool granted = !group.empty() && keys_->is_granted(record.topic, group);
        CIVICBUS_RETURN_IF_ERROR(
            reveal_pii(*data, state->options.pii_fields, record.topic, *keys_, granted));
      }
    }
    auto event = CloudEvent::from_json(std::move(doc).value());
    if (!event.ok())
      return data_loss(fmt::format("stored event at offset {} is not a valid CloudEvent: {}",
                                   record.offset, event.status().message()));
    ev.event = std::move(event).value();
    return ev;
  }

  Status dead_letter(std::string_view group, const transport::StoredRecord& record,
                     std::int64_t replayed_dlq_id, std::string_view error, int attempts,
                     SystemTime first_failed_at) override {
    const std::int64_t now = to_unix_micros(ctx_.clock.now());
    return ctx_.db.transaction([&]() -> Status {
      std::int64_t id = replayed_dlq_id;
      if (replayed_dlq_id > 0) {
        CIVICBUS_RETURN_IF_ERROR(
            ctx_.db
                .execute("UPDATE broker_dlq SET error = ?, attempts = attempts + ?, dead_at = ?, "
                         "replay_requested_at = NULL WHERE id = ?",
                         {Value{error}, Value{static_cast<std::int64_t>(attempts)}, Value{now},
                          Value{replayed_dlq_id}})
                .status());
      } else {
        CIVICBUS_RETURN_IF_ERROR(
            ctx_.db
                .execute("INSERT INTO broker_dlq(group_name, topic, log_offset, event_id, source, "
                         "partition_key, stored_at, "
                         "payload, error, attempts, first_failed_at, dead_at) VALUES (?, ?, ?, ?, "
                         "?, ?, ?, ?, ?, ?, ?, ?)",
                         {Value{group}, Value{std::string_view(record.topic)}, Value{record.offset},
                          Value{std::string_view(record.event_id)},
                          Value{std::string_view(record.source)},
                          Value{std::string_view(record.partition_key)},
                          Value{to_unix_micros(record.stored_at)}, Value{Blob{record.payload}},
                          Value{error}, Value{static_cast<std::int64_t>(attempts)},
                          Value{to_unix_micros(first_failed_at)}, Value{now}})
                .status());
        id = ctx_.db.last_insert_id();
      }
      return audit_->append(group, "dlq.moved", record.topic,
                            Json::object({{"dlq_id", id},
                                          {"offset", record.offset},
                                          {"event_id", record.event_id},
                                          {"attempts", attempts},
                                          {"error", std::string(error)}}));
    });
  }

  Status mark_replayed(std::int64_t dlq_id) override {
    return ctx_.db
        .execute("UPDATE broker_dlq SET replayed_at = ? WHERE id = ?",
                 {Value{to_unix_micros(ctx_.clock.now())}, Value{dlq_id}})
        .status();
  }

  Status commit_offset(std::string_view group, std::int64_t offset) override {
    return ctx_.db
        .execute("UPDATE broker_groups SET committed_offset = ?, updated_at = ? WHERE name = ?",
                 {Value{offset}, Value{to_unix_micros(ctx_.clock.now())}, Value{group}})
        .status();
  }

  Result<std::vector<detail::ReplayItem>> pending_replays(
      std::string_view group, const std::set<std::int64_t>& in_progress) override {
    std::vector<detail::ReplayItem> out;
    CIVICBUS_RETURN_IF_ERROR(
        ctx_.db.query("SELECT id, topic, log_offset, event_id, source, partition_key, stored_at, "
                      "payload FROM broker_dlq "
                      "WHERE group_name = ? AND replay_requested_at IS NOT NULL AND replayed_at IS "
                      "NULL ORDER BY id LIMIT 1000",
                      {Value{group}}, [&](const storage::Row& row) {
                        std::int64_t id = row.get_int(0);
                        if (in_progress.count(id)) return true;
                        auto rec = std::make_shared<transport::StoredRecord>();
                        rec->topic = std::string(row.get_text(1));
                        rec->offset = row.get_int(2);
                        rec->event_id = std::string(row.get_text(3));
                        rec->source = std::string(row.get_text(4));
                        rec->partition_key = std::string(row.get_text(5));
                        rec->stored_at = from_unix_micros(row.get_int(6));
                        rec->payload = std::string(row.get_blob(7));
                        out.push_back(detail::ReplayItem{id, std::move(rec)});
                        return true;
                      }));
    return out;
  }

  Counters counters(std::string_view group, std::string_view topic) override {
    std::string key = fmt::format("{}\n{}", group, topic);
    {
      std::shared_lock lock(counters_mu_);
      auto it = counters_.find(key);
      if (it != counters_.end()) return it->second;
    }
    Labels labels{{"group", std::string(group)}, {"topic", std::string(topic)}};
    Counters c;
    c.delivered =
        &ctx_.metrics.counter("civicbus_broker_delivered_total",
                              "Events acknowledged by a consumer group's handler", labels);
    c.errors = &ctx_.metrics.counter("civicbus_broker_delivery_errors_total",
                                     "Failed handler attempts", labels);
    c.dead_lettered = &ctx_.metrics.counter("civicbus_broker_dead_lettered_total",
                                            "Events moved to the dead-letter queue", labels);
    c.latency = &ctx_.metrics.histogram("civicbus_broker_delivery_latency_seconds",
                                        "Time from an event being stored to its handler starting",
                                        {{"group", std::string(group)}});
    std::unique_lock lock(counters_mu_);
    return counters_.emplace(std::move(key), c).first->second;
  }

 private:
  friend class SubscriptionImpl;

  // Validates, assigns id and time, checks the schema, encrypts PII and serialises.
  Result<std::pair<transport::AppendRequest, std::shared_ptr<TopicState>>> prepare(
      CloudEvent& event) {
    if (closed_) return unavailable("broker is closed");
    const std::string type = event.type();
    auto state = topic_state(type);
    if (!state) {
      return not_found(fmt::format(
          "topic '{}' does not exist: the event's type names its topic; create the topic first",
          type));
    }
    auto reject = [&](Status st) {
      state->rejected->inc();
      return st;
    };
    // An event validated by parse() and changed only by the id and time set here (both valid
    // by construction) is not checked again. One parsed from text that already has its id and
    // time (and no PII to encrypt) is stored as that very text; any change writes it anew.
    const bool validated = event.validated_unchanged();
    const Json* id = event.document().find("id");
    if (id == nullptr || (id->is_string() && id->as_string().empty())) event.set_id(ids_.next());
    if (!event.document().contains("time")) event.set_time(format_rfc3339(ctx_.clock.now()));
    if (!validated) {
      Status valid = event.validate();
      if (!valid.ok()) return reject(valid);
    }
    if (!state->options.schema_subject.empty()) {
      auto active = schemas_->active(state->options.schema_subject);
      if (!active.schema) {
        return reject(
            failed_precondition(fmt::format("topic '{}' has schema subject '{}' with no active "
                                            "version; register one or publish to a "
                                            "topic without schema",
                                            type, state->options.schema_subject)));
      }
      Status ok = active.schema->validate(event.data());
      if (!ok.ok()) {
        return reject(invalid_argument(fmt::format("event data does not match schema {}@{}: {}",
                                                   state->options.schema_subject, active.version,
                                                   ok.message())));
      }
    }
    if (!state->options.pii_fields.empty()) {
      if (!keys_) return reject(failed_precondition("PII topic without a master key"));
      CIVICBUS_ASSIGN_OR_RETURN(auto key, keys_->current_key(type));
      if (event.document().contains("data")) {
        CIVICBUS_RETURN_IF_ERROR(
            encrypt_pii(event.mutable_data(), state->options.pii_fields, type, *key, ctx_.random));
      }
    }
    const Json& doc = event.document();
    transport::AppendRequest request;
    request.topic = type;
    request.source = doc.get_string("source");
    request.event_id = doc.get_string("id");
    request.partition_key = event.partition_key();
    request.payload = std::move(event).to_json();
    if (request.payload.size() > options_.max_event_bytes) {
      return reject(invalid_argument(
          fmt::format("event '{}' is {}; the limit is {}", request.event_id,
                      human_bytes(request.payload.size()), human_bytes(options_.max_event_bytes))));
    }
    return std::make_pair(std::move(request), std::move(state));
  }

  std::shared_ptr<TopicState> topic_state(std::string_view name) const {
    std::shared_lock lock(topics_mu_);
    auto it = topics_.find(name);
    return it == topics_.end() ? nullptr : it->second;
  }

  TopicInfo info_of(const TopicState& t) const {
    TopicInfo info;
    info.options = t.options;
    info.created_at = t.created_at;
    auto usage = ctx_.transport.usage(t.options.name);
    info.records = usage.records;
    info.bytes = usage.bytes;
    return info;
  }

  static Json topic_json(const TopicOptions& t) {
    return Json::object({{"owner", t.owner},
                         {"description", t.description},
                         {"retention_seconds", static_cast<std::int64_t>(t.retention.count())},
                         {"retention_bytes", t.retention_bytes},
                         {"sensitivity", std::string(to_string(t.sensitivity))},
                         {"pii_fields", string_array(t.pii_fields)},
                         {"schema_subject", t.schema_subject}});
  }

  Status store_topic(const TopicOptions& t, std::int64_t now, bool create) {
    const std::string pii = string_array(t.pii_fields).dump();
    if (create) {
      return ctx_.db
          .execute(
              "INSERT INTO broker_topics(name, owner, description, retention_seconds, "
              "retention_bytes, "
              "sensitivity, pii_fields, schema_subject, created_at, updated_at) VALUES "
              "(?,?,?,?,?,?,?,?,?,?)",
              {Value{std::string_view(t.name)}, Value{std::string_view(t.owner)},
               Value{std::string_view(t.description)},
               Value{static_cast<std::int64_t>(t.retention.count())}, Value{t.retention_bytes},
               Value{to_string(t.sensitivity)}, Value{std::string_view(pii)},
               Value{std::string_view(t.schema_subject)}, Value{now}, Value{now}})
          .status();
    }
    return ctx_.db
        .execute(
            "UPDATE broker_topics SET owner = ?, description = ?, retention_seconds = ?, "
            "retention_bytes = ?, "
            "sensitivity = ?, pii_fields = ?, schema_subject = ?, updated_at = ? WHERE name = ?",
            {Value{std::string_view(t.owner)}, Value{std::string_view(t.description)},
             Value{static_cast<std::int64_t>(t.retention.count())}, Value{t.retention_bytes},
             Value{to_string(t.sensitivity)}, Value{std::string_view(pii)},
             Value{std::string_view(t.schema_subject)}, Value{now},
             Value{std::string_view(t.name)}})
        .status();
  }

  void install_topic(const TopicOptions& options, SystemTime created_at) {
    auto state = std::make_shared<TopicState>();
    state->options = options;
    state->created_at = created_at;
    Labels labels{{"topic", options.name}};
    state->published =
        &ctx_.metrics.counter("civicbus_broker_published_total", "Events stored", labels);
    state->published_bytes = &ctx_.metrics.counter("civicbus_broker_published_bytes_total",
                                                   "Bytes of events stored", labels);
    state->rejected = &ctx_.metrics.counter("civicbus_broker_publish_rejected_total",
                                            "Events refused (invalid, schema, size)", labels);
    std::unique_lock lock(topics_mu_);
    topics_[options.name] = std::move(state);
  }

  Status load_topics() {
    std::vector<std::pair<TopicOptions, SystemTime>> loaded;
    Status bad;
    CIVICBUS_RETURN_IF_ERROR(ctx_.db.query(
        "SELECT name, owner, description, retention_seconds, retention_bytes, sensitivity, "
        "pii_fields, "
        "schema_subject, created_at FROM broker_topics ORDER BY name",
        {}, [&](const storage::Row& row) {
          TopicOptions t;
          t.name = std::string(row.get_text(0));
          t.owner = std::string(row.get_text(1));
          t.description = std::string(row.get_text(2));
          t.retention = std::chrono::seconds(row.get_int(3));
          t.retention_bytes = row.get_int(4);
          auto s = parse_sensitivity(row.get_text(5));
          if (!s.ok()) {
            bad = data_loss(fmt::format("stored topic '{}': {}", t.name, s.status().message()));
            return false;
          }
          t.sensitivity = *s;
          t.pii_fields = parse_string_array(row.get_text(6));
          t.schema_subject = std::string(row.get_text(7));
          loaded.emplace_back(std::move(t), from_unix_micros(row.get_int(8)));
          return true;
        }));
    CIVICBUS_RETURN_IF_ERROR(bad);
    for (auto& [t, created] : loaded) install_topic(t, created);
    return {};
  }

  Status load_groups() {
    std::lock_guard lock(groups_mu_);
    return ctx_.db.query(
        "SELECT name, topics FROM broker_groups", {}, [&](const storage::Row& row) {
          group_topics_[std::string(row.get_text(0))] = parse_string_array(row.get_text(1));
          return true;
        });
  }

  static bool matches_any(const std::vector<std::string>& patterns, std::string_view topic) {
    return std::any_of(patterns.begin(), patterns.end(),
                       [&](const std::string& p) { return topic_matches(p, topic); });
  }

  std::vector<std::string> groups_of_subject(std::string_view subject) const {
    std::vector<std::string> topics_of_subject;
    for (const auto& t : topics()) {
      if (t.options.schema_subject == subject) topics_of_subject.push_back(t.options.name);
    }
    std::vector<std::string> out;
    std::lock_guard lock(groups_mu_);
    for (const auto& [group, patterns] : group_topics_) {
      for (const auto& topic : topics_of_subject) {
        if (matches_any(patterns, topic)) {
          out.push_back(group);
          break;
        }
      }
    }
    return out;
  }

  std::vector<std::string> owners_of_subject(std::string_view subject) const {
    std::vector<std::string> owners;
    for (const auto& t : topics()) {
      if (t.options.schema_subject == subject &&
          std::find(owners.begin(), owners.end(), t.options.owner) == owners.end()) {
        owners.push_back(t.options.owner);
      }
    }
    return owners;
  }

  Status require_pii_topic(std::string_view topic) {
    if (!keys_) return failed_precondition("the node has no master key, so it has no PII keys");
    auto state = topic_state(topic);
    if (!state) return not_found(fmt::format("topic '{}' does not exist", topic));
    if (state->options.pii_fields.empty()) {
      return failed_precondition(fmt::format("topic '{}' has no PII fields", topic));
    }
    return {};
  }

  std::shared_ptr<ConsumerGroupRuntime> runtime(std::string_view group) const {
    std::lock_guard lock(runtimes_mu_);
    auto it = runtimes_.find(std::string(group));
    return it == runtimes_.end() ? nullptr : it->second;
  }

  std::vector<std::shared_ptr<ConsumerGroupRuntime>> runtimes() const {
    std::lock_guard lock(runtimes_mu_);
    std::vector<std::shared_ptr<ConsumerGroupRuntime>> out;
    for (const auto& [name, rt] : runtimes_) out.push_back(rt);
    return out;
  }

  void release(const std::string& group, const std::shared_ptr<ConsumerGroupRuntime>& rt) {
    rt->stop();
    std::lock_guard lock(runtimes_mu_);
    auto it = runtimes_.find(group);
    if (it != runtimes_.end() && it->second == rt) runtimes_.erase(it);
  }

  void on_commit(std::int64_t last_offset) {
    for (const auto& rt : runtimes()) rt->notify(last_offset);
  }

  // One audit record per maintenance pass for the events stored since the last one: their
  // offset range and how many went to each topic. The counts come from the log's own
  // per-topic append counters (two snapshots, no re-reading of the events); only records
  // stored before this broker opened (after a crash) are read.
  Status audit_published_ranges() {
    transport::Transport::AppendCounts now = ctx_.transport.append_counts();
    const std::int64_t last = now.next_offset - 1;
    if (audited_through_ < 0) {
      CIVICBUS_ASSIGN_OR_RETURN(
          auto recorded,
          ctx_.db.query_int("SELECT value FROM broker_state WHERE name = 'audited_through'"));
      audited_through_ = recorded.value_or(0);
    }
    if (last <= audited_through_) return {};
    std::map<std::string, std::int64_t> per_topic;
    std::int64_t from = audited_through_ + 1;
    const std::int64_t read_until = audit_base_.next_offset - 1;  // before the base: read
    while (from <= read_until) {
      CIVICBUS_ASSIGN_OR_RETURN(auto records, ctx_.transport.read(from, 4096));
      if (records.empty()) break;
      for (const auto& r : records) {
        if (r->offset > read_until) break;
        ++per_topic[r->topic];
      }
      from = records.back()->offset + 1;
    }
    for (const auto& [topic, n] : now.per_topic) {
      auto base = audit_base_.per_topic.find(topic);
      const std::int64_t since = n - (base == audit_base_.per_topic.end() ? 0 : base->second);
      if (since > 0) per_topic[topic] += since;
    }
    Json counts = Json::object();
    std::int64_t total = 0;
    for (const auto& [topic, n] : per_topic) {
      counts.set(topic, n);
      total += n;
    }
    CIVICBUS_RETURN_IF_ERROR(ctx_.db.transaction([&]() -> Status {
      CIVICBUS_RETURN_IF_ERROR(audit_->append("system", "events.published",
                                              fmt::format("{}-{}", audited_through_ + 1, last),
                                              Json::object({{"first_offset", audited_through_ + 1},
                                                            {"last_offset", last},
                                                            {"events", total},
                                                            {"topics", counts}})));
      return ctx_.db
          .execute(
              "INSERT INTO broker_state(name, value) VALUES ('audited_through', ?) "
              "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
              {Value{last}})
          .status();
    }));
    audited_through_ = last;
    audit_base_ = std::move(now);
    return {};
  }

  Status refresh_lag_gauges() {
    CIVICBUS_ASSIGN_OR_RETURN(auto infos, groups());
    for (const auto& g : infos) {
      Labels labels{{"group", g.group}};
      ctx_.metrics
          .gauge("civicbus_broker_lag_events", "Matching events above the group's committed offset",
                 labels)
          .set(static_cast<double>(g.lag_events));
      ctx_.metrics
          .gauge("civicbus_broker_lag_oldest_seconds", "Age of the oldest unacknowledged event",
                 labels)
          .set(std::chrono::duration<double>(g.oldest_unacked_age).count());
      ctx_.metrics.gauge("civicbus_broker_dlq_events", "Dead letters not yet replayed", labels)
          .set(static_cast<double>(g.dlq_events));
    }
    return {};
  }

  void schedule_maintenance() {
    if (options_.maintenance_interval.count() <= 0) return;
    ctx_.executor.post_after(options_.maintenance_interval, [this, life = lifeline_] {
      std::lock_guard lock(life->mu);
      if (life->closed) return;
      Status st = run_maintenance();
      if (!st.ok()) ctx_.logger.error("maintenance failed", {{"error", st.to_string()}});
      schedule_maintenance();
    });
  }

  BrokerOptions options_;
  BrokerContext ctx_;
  IdGenerator ids_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<KeyStore> keys_;
  std::unique_ptr<detail::SchemaRegistry> schemas_;

  mutable std::shared_mutex topics_mu_;
  std::mutex topics_write_mu_;
  std::map<std::string, std::shared_ptr<TopicState>, std::less<>> topics_;

  mutable std::mutex groups_mu_;
  std::map<std::string, std::vector<std::string>, std::less<>> group_topics_;

  mutable std::mutex runtimes_mu_;
  std::map<std::string, std::shared_ptr<ConsumerGroupRuntime>> runtimes_;

  mutable std::shared_mutex counters_mu_;
  std::unordered_map<std::string, Counters> counters_;

  std::mutex maintenance_mu_;
  std::int64_t audited_through_ = -1;
  // The log's append counters as of the last audit (or of opening): the next audit counts
  // from here.
  transport::Transport::AppendCounts audit_base_;
  std::uint64_t listener_id_ = 0;
  std::atomic<bool> closed_{false};
  std::shared_ptr<Lifeline> lifeline_ = std::make_shared<Lifeline>();
};

class SubscriptionImpl final : public Subscription {
 public:
  SubscriptionImpl(BrokerImpl& broker, std::shared_ptr<ConsumerGroupRuntime> rt)
      : broker_(broker), lifeline_(broker.lifeline_), rt_(std::move(rt)), group_(rt_->group()) {}
  ~SubscriptionImpl() override { stop(); }
  const std::string& group() const override { return group_; }
  void stop() override {
    if (!rt_) return;
    // A closed (or destroyed) broker has stopped every runtime already.
    if (auto life = lifeline_.lock()) {
      std::lock_guard lock(life->mu);
      if (!life->closed) broker_.release(group_, rt_);
    }
    rt_.reset();
  }

 private:
  BrokerImpl& broker_;
  std::weak_ptr<Lifeline> lifeline_;
  std::shared_ptr<ConsumerGroupRuntime> rt_;
  std::string group_;
};

Result<std::unique_ptr<Subscription>> BrokerImpl::subscribe_async(ConsumerGroupOptions options,
                                                                  AsyncHandler handler) {
  if (closed_) return unavailable("broker is closed");
  if (!handler) return invalid_argument("subscribe needs a handler");
  if (options.group.empty()) return invalid_argument("a consumer group needs a name");
  if (options.topics.empty()) {
    return invalid_argument(
        fmt::format("consumer group '{}' subscribes to no topics", options.group));
  }
  for (const auto& p : options.topics) {
    std::string check = p;
    for (char& c : check) {
      if (c == '*' || c == '>') c = 'x';
    }
    if (!validate_topic_name(check).ok()) {
      return invalid_argument(
          fmt::format("consumer group '{}': '{}' is not a topic pattern", options.group, p));
    }
  }
  if (options.max_deliveries < 1 || options.parallelism < 1 || options.max_in_flight < 1 ||
      options.backoff_multiplier < 1.0) {
    return invalid_argument(fmt::format(
        "consumer group '{}': max_deliveries, parallelism and max_in_flight must be at least 1 and "
        "backoff_multiplier at least 1.0",
        options.group));
  }
  {
    std::lock_guard lock(runtimes_mu_);
    if (runtimes_.count(options.group)) {
      return failed_precondition(fmt::format(
          "consumer group '{}' already has an active subscription on this node; raise its "
          "parallelism instead",
          options.group));
    }
  }
  const std::int64_t now = to_unix_micros(ctx_.clock.now());
  const std::string patterns = string_array(options.topics).dump();
  std::optional<std::int64_t> committed;
  CIVICBUS_RETURN_IF_ERROR(ctx_.db.transaction([&]() -> Status {
    CIVICBUS_ASSIGN_OR_RETURN(
        committed, ctx_.db.query_int("SELECT committed_offset FROM broker_groups WHERE name = ?",
                                     {Value{std::string_view(options.group)}}));
    if (!committed) {
      committed = options.start_from == StartFrom::kEarliest ? 0 : ctx_.transport.next_offset() - 1;
      CIVICBUS_RETURN_IF_ERROR(
          ctx_.db
              .execute("INSERT INTO broker_groups(name, topics, committed_offset, created_at, "
                       "updated_at) VALUES (?,?,?,?,?)",
                       {Value{std::string_view(options.group)}, Value{std::string_view(patterns)},
                        Value{*committed}, Value{now}, Value{now}})
              .status());
      return audit_->append(options.group, "group.created", options.group,
                            Json::object({{"topics", string_array(options.topics)},
                                          {"committed_offset", *committed}}));
    }
    return ctx_.db
        .execute(
            "UPDATE broker_groups SET topics = ?, updated_at = ? WHERE name = ?",
            {Value{std::string_view(patterns)}, Value{now}, Value{std::string_view(options.group)}})
        .status();
  }));
  {
    std::lock_guard lock(groups_mu_);
    group_topics_[options.group] = options.topics;
  }
  auto rt = std::make_shared<ConsumerGroupRuntime>(*this, options, std::move(handler), *committed);
  {
    std::lock_guard lock(runtimes_mu_);
    runtimes_[options.group] = rt;
  }
  rt->start();
  return std::unique_ptr<Subscription>(std::make_unique<SubscriptionImpl>(*this, rt));
}

}  // namespace

Result<std::unique_ptr<Broker>> Broker::open(BrokerOptions options, BrokerContext context) {
  if (!options.master_key.empty() && options.master_key.size() != 32) {
    return invalid_argument(
        fmt::format("master key must be 32 bytes, got {}", options.master_key.size()));
  }
  if (options.max_event_bytes < 256)
    return invalid_argument("max_event_bytes must be at least 256");
  auto broker = std::make_unique<BrokerImpl>(std::move(options), std::move(context));
  CIVICBUS_RETURN_IF_ERROR(broker->start());
  return std::unique_ptr<Broker>(std::move(broker));
}

}  // namespace civicbus::broker
