// Broker: the hub every civicbus component publishes through. It owns topics (with owner,
// retention, sensitivity, PII fields and schema subject), the schema registry, consumer
// groups with committed offsets, retries and the dead-letter queue, PII field encryption,
// the audit log and per-topic metrics. It does not own durability or transport of records:
// that is the Transport underneath (the embedded SQLite log by default).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "civicbus/broker/cloud_event.hpp"
#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/json_schema_compat.hpp"
#include "civicbus/core/log.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus {
class Executor;
class MetricsRegistry;
class RandomSource;
namespace storage {
class Database;
}
namespace transport {
class Transport;
}
}  // namespace civicbus

namespace civicbus::broker {

enum class Sensitivity { kPublic, kInternal, kConfidential, kRestricted };
CIVICBUS_EXPORT std::string_view to_string(Sensitivity s);
CIVICBUS_EXPORT Result<Sensitivity> parse_sensitivity(
    std::string_view text);  // "public", "internal", …

struct TopicOptions {
  std::string name;   // dotted event type: "property.assessment.updated"
  std::string owner;  // who answers for the topic (required)
  std::string description;
  std::chrono::seconds retention{std::chrono::hours(24 * 7)};  // 0: keep forever
  std::int64_t retention_bytes = 0;                            // 0: no size bound
  Sensitivity sensitivity = Sensitivity::kInternal;
  // JSON pointers into the event's `data` whose values are encrypted at rest and in transit.
  std::vector<std::string> pii_fields;
  // Schema subject the event data must satisfy (its active version); empty: no schema.
  std::string schema_subject;
};

struct TopicInfo {
  TopicOptions options;
  SystemTime created_at;
  std::int64_t records = 0;  // currently stored
  std::int64_t bytes = 0;
};

struct PublishAck {
  std::int64_t offset = 0;
  bool duplicate = false;  // the same source+id was published inside the dedup window
  std::string id;          // the event id (generated when the event had none)
};

// An event as a consumer sees it. PII fields are decrypted when the group holds a grant
// for the topic and replaced by "[redacted]" otherwise.
struct DeliveredEvent {
  std::int64_t offset = 0;
  std::string topic;
  CloudEvent event{"", ""};
  int attempt = 1;  // 1 on first delivery
  SystemTime stored_at;
  bool replay = false;  // delivered again from the DLQ
};

// Returning ok acknowledges the event; an error fails this attempt (retried with backoff,
// dead-lettered after max_deliveries). Called on the node's worker threads; events of one
// partition key are never handled concurrently and arrive in offset order.
using Handler = std::function<Status(const DeliveredEvent&)>;
// The asynchronous form: call `done` exactly once, from any thread.
using AsyncHandler = std::function<void(const DeliveredEvent&, std::function<void(Status)> done)>;

enum class StartFrom { kEarliest, kLatest };

struct ConsumerGroupOptions {
  std::string group;                // durable name: offsets, DLQ and grants are kept under it
  std::vector<std::string> topics;  // patterns: "permit.*", "property.>", exact names
  int max_deliveries = 5;           // attempts before an event moves to the DLQ
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{60'000};
  double backoff_multiplier = 2.0;
  int parallelism = 1;                        // handlers running at once (different partition keys)
  std::size_t max_in_flight = 1024;           // events fetched and not yet acknowledged
  StartFrom start_from = StartFrom::kLatest;  // where a new group starts
};

// A running consumer group member. Destroying it (or stop()) stops fetching, waits for
// handlers already running and commits the group's offset. Must not be destroyed from
// inside its own handler.
class CIVICBUS_EXPORT Subscription {
 public:
  virtual ~Subscription() = default;
  virtual const std::string& group() const = 0;
  virtual void stop() = 0;
};

enum class SchemaState { kProposed, kActive, kSuperseded };
CIVICBUS_EXPORT std::string_view to_string(SchemaState s);

struct SchemaVersion {
  std::string subject;
  int version = 0;
  Json schema;
  SchemaState state = SchemaState::kProposed;
  SystemTime created_at;
  std::optional<SystemTime> activated_at;
  std::vector<std::string> acknowledged_by;  // consumer groups
  std::vector<std::string> waiting_for;      // groups of the subject's topics yet to ack
};

struct GroupInfo {
  std::string group;
  std::vector<std::string> topics;
  std::int64_t committed_offset = 0;  // every matching event at or below is done
  std::int64_t lag_events = 0;        // matching events above the committed offset
  std::chrono::microseconds oldest_unacked_age{0};
  std::int64_t dlq_events = 0;
  bool active = false;
};

struct DeadLetter {
  std::int64_t id = 0;
  std::string group;
  std::string topic;
  std::int64_t offset = 0;
  std::string event_id;
  std::string source;
  std::string payload;  // the stored event (PII still encrypted)
  std::string error;    // the last handler error
  int attempts = 0;
  SystemTime first_failed_at;
  SystemTime dead_at;
  std::optional<SystemTime> replay_requested_at;
  std::optional<SystemTime> replayed_at;
};

struct DlqFilter {
  std::optional<std::int64_t> id;
  std::string group;  // empty: all groups
  std::string topic;  // a pattern; empty: all topics
  std::optional<SystemTime> dead_after;
  std::optional<SystemTime> dead_before;
  std::string error_contains;
  bool include_replayed = false;
  std::size_t limit = 1000;
};

struct AuditRecord {
  std::int64_t seq = 0;
  SystemTime at;
  std::string actor;
  std::string action;   // "topic.created", "event.published", "dlq.moved", …
  std::string subject;  // what it acted on (topic, group, subject@version)
  Json detail;
  std::string hash;  // hex
};

struct AuditReport {
  std::int64_t records = 0;
  bool intact = true;
  std::vector<std::string> problems;  // each names the record and what is wrong
};

struct BrokerOptions {
  std::size_t max_event_bytes = 1 << 20;                 // larger events are refused
  std::chrono::hours dlq_retention{24 * 30};             // dead letters are kept this long
  std::chrono::milliseconds maintenance_interval{1000};  // retention, DLQ purge, lag gauges
  // 32 bytes. Wraps the per-topic PII keys and keys the audit chain. Required when a topic
  // has PII fields. See load_master_key().
  std::string master_key;
  std::string node_source = "civicbus://node";  // source of the broker's own events
};

// Everything the broker runs on. All references must outlive the Broker.
struct BrokerContext {
  storage::Database& db;            // broker_* tables
  transport::Transport& transport;  // the event log
  Executor& executor;               // handlers, retries, maintenance
  const Clock& clock;
  MetricsRegistry& metrics;
  RandomSource& random;
  Logger logger;
};

// Reads a 32-byte master key given as 64 hex digits or base64, from the environment
// variable `env_var` when set, else from `file` (which must not be readable by group or
// others). Errors say which source was tried and what is wrong.
CIVICBUS_EXPORT Result<std::string> load_master_key(std::string_view env_var,
                                                    std::string_view file);

class CIVICBUS_EXPORT Broker {
 public:
  static Result<std::unique_ptr<Broker>> open(BrokerOptions options, BrokerContext context);
  virtual ~Broker() = default;

  // Topics. Creating a topic that exists with the same options is ok; with other options,
  // kAlreadyExists (use update_topic). `actor` is recorded in the audit log.
  virtual Status create_topic(const TopicOptions& options, std::string_view actor = "system") = 0;
  virtual Status update_topic(const TopicOptions& options, std::string_view actor = "system") = 0;
  virtual Result<TopicInfo> topic(std::string_view name) const = 0;
  virtual std::vector<TopicInfo> topics() const = 0;

  // Publishing. The topic is the event's `type`. Returns once the event is durable, or
  // refuses it with nothing stored: unknown topic, invalid CloudEvent, over the size limit,
  // data failing the topic's active schema.
  virtual Result<PublishAck> publish(CloudEvent event) = 0;
  // The asynchronous form: `done` runs once, on the log's completion thread or (for an
  // immediate refusal) on the calling thread. It must not block.
  virtual void publish_async(CloudEvent event, std::function<void(Result<PublishAck>)> done) = 0;

  // Consumer groups.
  virtual Result<std::unique_ptr<Subscription>> subscribe(ConsumerGroupOptions options,
                                                          Handler handler) = 0;
  virtual Result<std::unique_ptr<Subscription>> subscribe_async(ConsumerGroupOptions options,
                                                                AsyncHandler handler) = 0;
  virtual Result<std::vector<GroupInfo>> groups() = 0;
  // Moves an inactive group so that its next delivery is the first matching event at or
  // after `offset` (or stored at or after `time`).
  virtual Status seek_group(std::string_view group, std::int64_t offset) = 0;
  virtual Status seek_group_to_time(std::string_view group, SystemTime time) = 0;

  // Reads stored events of topics matching `pattern` from `from_offset`, PII redacted.
  virtual Result<std::vector<DeliveredEvent>> read(std::string_view pattern,
                                                   std::int64_t from_offset, std::size_t limit) = 0;

  // Schema registry (JSON Schema 2020-12). A subject's first version is active at once; a
  // later one must pass the subject's compatibility check and stays proposed until every
  // consumer group of the subject's topics acknowledged it, or a topic owner activates it.
  virtual Status set_compatibility(std::string_view subject, SchemaCompatibility mode,
                                   std::string_view actor = "system") = 0;
  virtual Result<SchemaVersion> register_schema(std::string_view subject, const Json& schema,
                                                std::string_view actor = "system") = 0;
  virtual Result<SchemaVersion> acknowledge_schema(std::string_view subject, int version,
                                                   std::string_view group) = 0;
  // Owner override: `actor` must be the owner of a topic that uses the subject.
  virtual Result<SchemaVersion> activate_schema(std::string_view subject, int version,
                                                std::string_view actor) = 0;
  virtual Result<std::vector<SchemaVersion>> schema_versions(std::string_view subject) = 0;

  // Dead-letter queue.
  virtual Result<std::vector<DeadLetter>> dead_letters(const DlqFilter& filter) = 0;
  // Queues the matching dead letters for redelivery to their group; returns how many.
  virtual Result<std::int64_t> replay_dead_letters(const DlqFilter& filter,
                                                   std::string_view actor = "system") = 0;

  // PII. A group granted a topic sees its PII fields in clear. Shredding deletes the topic's
  // key: every PII value stored so far becomes unrecoverable; new events get a new key.
  virtual Status grant_pii(std::string_view topic, std::string_view group,
                           std::string_view actor) = 0;
  virtual Status revoke_pii(std::string_view topic, std::string_view group,
                            std::string_view actor) = 0;
  virtual Status shred_pii(std::string_view topic, std::string_view actor) = 0;

  // Audit log (append-only, hash-chained and keyed by the master key).
  virtual Result<std::vector<AuditRecord>> audit_records(std::int64_t from_seq,
                                                         std::size_t limit) = 0;
  virtual Result<AuditReport> verify_audit() = 0;

  // AsyncAPI 3.0 document describing every topic (channels, operations, message schemas).
  virtual Json asyncapi() const = 0;

  // Runs retention, DLQ expiry and refreshes lag gauges now (also done periodically).
  virtual Status run_maintenance() = 0;

  // Stops all subscriptions and maintenance. Idempotent; also done by the destructor.
  virtual void close() = 0;
};

// True when dotted `topic` matches NATS-style `pattern` ("*" one token, ">" the rest).
CIVICBUS_EXPORT bool topic_matches(std::string_view pattern, std::string_view topic);
// Topic names: tokens of [a-z0-9_-] separated by dots, 1..249 characters.
CIVICBUS_EXPORT Status validate_topic_name(std::string_view name);

}  // namespace civicbus::broker
