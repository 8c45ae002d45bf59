// Golden records: one best view of an entity (a property, a person) built from the records the
// source systems hold about it, attribute by attribute, by survivorship rules (Informatica /
// Reltio MDM style; the entities are the MatchEngine's clusters). Each attribute keeps its
// provenance: which source record gave the surviving value, and when that record changed.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus::storage {
class Database;
}
namespace civicbus::broker {
class Broker;
enum class Sensitivity;
}  // namespace civicbus::broker

namespace civicbus::match {

// One record of one source system, belonging to an entity.
struct SourceRecord {
  std::string source;     // the system: "mpac", "tax", "permits"
  std::string record_id;  // the record's id in that system (a roll number, an account)
  // When the source last changed the record; nullopt when the source does not say (such a
  // record is older than any dated one for most_recent).
  std::optional<SystemTime> updated_at;
  Json fields;  // an object: attribute name → value (null is treated as {})
};

// How an attribute's surviving value is chosen among the member records that have a
// non-empty value for it (null, "", blanks only, [] and {} are empty: a blank never overwrites
// a known value). Every rule breaks its ties by recency, then by source and record id, so the
// result does not depend on the order records arrive.
enum class SurvivorshipRule {
  kSourcePriority,  // the first listed source with a value; unlisted sources after, by recency
  kMostRecent,      // the value of the latest updated_at
  kMostComplete,    // the most informative value: most non-empty leaves, then longest text
  kMostFrequent,    // the value most records agree on (JSON equality); ties → most recent
  kCustom,          // a function the module supplies
};

// "source_priority", "most_recent", "most_complete", "most_frequent", "custom".
CIVICBUS_EXPORT std::string_view to_string(SurvivorshipRule rule);
CIVICBUS_EXPORT Result<SurvivorshipRule> parse_survivorship_rule(std::string_view text);

// A candidate value of an attribute with its provenance.
struct SurvivorCandidate {
  Json value;
  std::string source;
  std::string record_id;
  std::optional<SystemTime> updated_at;
};

// A custom rule: given an attribute and its candidates (non-empty values only, most recent
// first), returns the index of the surviving candidate, nullopt to leave the attribute
// without a value, or an error, which fails the whole apply() (nothing is stored). Called
// inside apply()'s database transaction: it must be quick and must not call the store.
using CustomSurvivorship = std::function<Result<std::optional<std::size_t>>(
    std::string_view attribute, std::span<const SurvivorCandidate> candidates)>;

struct AttributeRule {
  SurvivorshipRule rule = SurvivorshipRule::kMostRecent;
  std::vector<std::string> sources;  // kSourcePriority: the most trusted source first
  CustomSurvivorship custom;         // kCustom
  std::string function;              // kCustom: its name in configuration (for errors)
};

// A domain event derived from golden-record changes: when any of `attributes` changes, the
// store publishes `type` with the changed fields ("property.assessment.updated" for the
// assessment attributes of a property).
struct DomainEventOptions {
  std::string type;
  std::vector<std::string> attributes;
};

// The topic every store publishes each new golden-record version to.
inline constexpr std::string_view kGoldenRecordTopic = "mdm.golden_record.updated";

struct CIVICBUS_EXPORT GoldenRecordOptions {
  // The entity kind ("property", "person"): [a-z0-9_-], required. Stores of different kinds
  // share the tables and the golden-record topic.
  std::string kind;
  AttributeRule default_rule;                       // attributes without their own rule
  std::map<std::string, AttributeRule> attributes;  // attribute name → rule
  std::vector<DomainEventOptions> domain_events;
  // Attributes holding personal information (a person's name, birth date): their values are
  // PII fields of the topics this store publishes to (encrypted by the broker, which then
  // needs a master key).
  std::vector<std::string> pii_attributes;
  // The lowest sensitivity of the topics the store creates (an existing lower one is raised).
  // Default (nullopt): internal.
  std::optional<broker::Sensitivity> sensitivity;
  // How long the broker keeps the events of the topics the store creates: long enough for a
  // consumer that rebuilds a search index or a report to replay them.
  std::chrono::seconds retention{std::chrono::hours(24 * 30)};
  // The CloudEvent source of the store's events; empty: "civicbus/match/golden/<kind>".
  std::string event_source;

  // Configuration as data:
  //   {"kind": "property",
  //    "default": "most_recent",
  //    "attributes": {"assessed_value": {"rule": "source_priority", "sources": ["mpac"]},
  //                   "legal_description": "most_complete",
  //                   "zoning": {"rule": "custom", "function": "zoning_by_bylaw"}},
  //    "domain_events": [{"type": "property.assessment.updated",
  //                       "attributes": ["assessed_value", "assessment_year"]}],
  //    "pii_attributes": [], "sensitivity": "internal", "retention_days": 30}
  // A rule is a name or an object {"rule", "sources", "function"}; "function" names one of
  // `functions`. Unknown members are errors naming them. The result is validated.
  static Result<GoldenRecordOptions> from_json(
      const Json& config, const std::map<std::string, CustomSurvivorship>& functions = {});
};

// Checks options once, at creation: names, rules and their sources or functions, event types.
CIVICBUS_EXPORT Status validate(const GoldenRecordOptions& options);

// A surviving attribute value and where it came from.
struct AttributeValue {
  Json value;
  std::string source;
  std::string record_id;
  std::optional<SystemTime> updated_at;  // of the source record
};

struct MemberRef {
  std::string source;
  std::string record_id;
  friend bool operator==(const MemberRef&, const MemberRef&) = default;
  friend auto operator<=>(const MemberRef&, const MemberRef&) = default;
};

struct CIVICBUS_EXPORT GoldenRecord {
  std::string entity_id;
  std::string kind;
  // 1 for the first version; bumped by each apply() that changed a value or added a member
  // (a provenance-only refresh, same values from a newer record, keeps the version).
  std::int64_t version = 0;
  SystemTime updated_at;                             // when this version was stored
  std::map<std::string, AttributeValue> attributes;  // only attributes with a value
  std::vector<MemberRef> members;                    // ordered by source, record id

  // The values alone: {"assessed_value": 412000, ...}.
  Json values() const;
};

struct AttributeChange {
  std::string attribute;
  Json old_value;      // null when the attribute had no value
  Json new_value;      // null when no member has a value any more
  std::string source;  // provenance of the new value ("" when none)
  std::string record_id;
};

// What one apply() changed. Empty when the records changed nothing the store announces.
struct GoldenRecordChange {
  std::string entity_id;
  std::int64_t version = 0;              // the record's version after apply()
  bool created = false;                  // this apply() created the record
  std::vector<AttributeChange> changed;  // ordered by attribute
  std::vector<MemberRef> members_added;  // records that joined the entity
  std::vector<std::string> events;       // the event types published for this change
  bool empty() const { return changed.empty() && members_added.empty(); }
};

// Keeps golden records and their member records in the tables `match_golden_records`,
// `match_golden_members` and `match_golden_outbox` of a Database, and announces changes on a
// Broker. It owns neither: both must outlive the store. Thread-safe; stores of several kinds
// may share one database.
//
// Publishing: apply() persists the new version and its events (in the outbox table) in one
// transaction, then publishes them and clears them from the outbox. Events carry a
// deterministic id ("<entity>@<version>", "<entity>@<version>/<type>"), so a publish retried
// after a failure or a crash is recognised by the broker's dedup window (24 h by default) and
// not stored twice. If publishing fails, apply() reports the error while the change stays
// stored and its events stay queued: the next apply() of the entity, or publish_pending(),
// publishes them. The store thus never holds a change it will not announce.
class CIVICBUS_EXPORT GoldenRecordStore {
 public:
  // Creates or migrates the tables and, with a broker, the topics (golden record and domain
  // events; owner "match"). `broker` may be null: nothing is published. `clock` (default: the
  // system clock) stamps versions and events.
  static Result<std::unique_ptr<GoldenRecordStore>> open(storage::Database& db,
                                                         broker::Broker* broker,
                                                         GoldenRecordOptions options,
                                                         const Clock* clock = nullptr);
  ~GoldenRecordStore();
  GoldenRecordStore(const GoldenRecordStore&) = delete;
  GoldenRecordStore& operator=(const GoldenRecordStore&) = delete;

  const GoldenRecordOptions& options() const;

  // Merges `records` into the entity's member records (a record with the same source and
  // record id replaces the stored one, unless the stored one is dated and newer: a stale
  // extract does not roll a record back), recomputes every attribute and persists it all in
  // one transaction, then publishes the change. A record that belongs to another entity is
  // refused (kFailedPrecondition naming both); nothing is stored on any error before the
  // publish step.
  Result<GoldenRecordChange> apply(std::string_view entity_id, std::vector<SourceRecord> records);

  // The golden record, or kNotFound.
  Result<GoldenRecord> get(std::string_view entity_id) const;
  // The entity a source record belongs to, or nullopt.
  Result<std::optional<std::string>> entity_of(std::string_view source,
                                               std::string_view record_id) const;
  // Golden records by entity id, starting after `after` ("" from the first).
  Result<std::vector<GoldenRecord>> list(std::size_t limit, std::string_view after = {}) const;
  // The member records of an entity as stored, ordered by source and record id.
  Result<std::vector<SourceRecord>> members(std::string_view entity_id) const;

  // Publishes events still queued from earlier applies (a broker that was down, a crash
  // between commit and publish); returns how many were published. Call after open() when
  // the node starts.
  Result<std::int64_t> publish_pending();
  // Events queued and not yet published.
  Result<std::int64_t> pending_events() const;

 private:
  struct Impl;
  explicit GoldenRecordStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace civicbus::match
