// Applying a source extract to golden records: the MDM step of a sync (MPAC's assessment roll, a
// tax system's export). Each record of the extract finds its entity (one the store already knows it
// by, else the best match among the existing golden records, else a new entity) and is applied to
// it with the store's survivorship rules; pairs the engine is unsure of wait in the clerical review
// queue instead of being applied.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"
#include "civicbus/match/engine.hpp"
#include "civicbus/match/golden.hpp"

namespace civicbus::match {

class ReviewQueue;

// How a column's text becomes a field value of the source record.
enum class ExtractValueType {
  kText,     // as written
  kInteger,  // whole number ("412000"); anything else is an error naming the record
  kNumber,   // decimal number ("0.85", "1e3")
};

struct CIVICBUS_EXPORT ApplyExtractOptions {
  // The source system, as the store records it ("mpac"). Required.
  std::string source;
  // The column of the source's record ids (a roll number). Required; every record needs one, and no
  // id may appear twice in one extract.
  std::string record_id_column;
  // When the source last changed each record: a column of RFC 3339 times or YYYY-MM-DD dates
  // (midnight UTC), such as MPAC's extract_date. Empty: `updated_at` for every record.
  std::string updated_at_column;
  // The whole extract's time, for records without a value in `updated_at_column`. nullopt: such
  // records are undated (older than any dated one for most_recent).
  std::optional<SystemTime> updated_at;
  // The columns that become the source record's fields (same names). Empty: every column. Empty
  // values are left out, so a blank never overwrites what another source knows.
  std::vector<std::string> fields;
  // Columns read as numbers; the others stay text.
  std::map<std::string, ExtractValueType> value_types;
  // New entities are named `entity_prefix` + 16 hex digits of SHA-256(source, record id), so the
  // same record always creates the same entity id, whatever the order of the extract.
  std::string entity_prefix = "E-";
  // An entity holds at most one record of this source (MPAC: one roll number per property), so
  // entities that already have one are not offered to matching.
  bool one_record_per_entity = true;
  // Golden records read per GoldenRecordStore::list() call when building the existing side.
  std::size_t page_size = 1000;

  Status validate() const;
};

// How a record of the extract found its entity.
enum class ExtractLink {
  kKnown,     // the store already held the record: applied to its entity without matching
  kRule,      // linked by a deterministic rule (an equal roll number)
  kScore,     // linked by match probability (at or above the match threshold)
  kReviewed,  // linked because a clerk accepted this pair in the review queue
  kCreated,   // nothing matched: a new entity
  kReview,    // best pair in the review band (or a match a better record took): not applied
};
// "known", "rule", "score", "reviewed", "created", "review".
CIVICBUS_EXPORT std::string_view to_string(ExtractLink link);

struct ExtractRecordOutcome {
  std::size_t row = 0;  // in the extract (0-based)
  std::string record_id;
  ExtractLink link = ExtractLink::kKnown;
  // The entity applied to; for kReview, the candidate entity the pair was queued with.
  std::string entity_id;
  std::string rule;              // kRule: the deterministic rule's name
  double match_probability = 0;  // kRule, kScore, kReviewed, kReview: the pair's
  bool changed = false;          // the golden record changed (always for kCreated)
};

struct ExtractReport {
  std::size_t records = 0;  // in the extract
  std::size_t known = 0;    // already members of an entity
  std::size_t linked_by_rule = 0;
  std::size_t linked_by_score = 0;
  std::size_t linked_by_review = 0;  // pairs a clerk accepted
  std::size_t created = 0;
  // Applied records (known + linked + created) whose golden record changed (values or members;
  // every created one), and those that changed nothing.
  std::size_t changed = 0;
  std::size_t unchanged = 0;
  // Held for a clerk, not applied (enqueued when a ReviewQueue is given).
  std::size_t queued_for_review = 0;
  // The matching run (records the store did not know against the existing golden records).
  std::uint64_t candidate_pairs = 0;
  std::vector<RuleReport> rules;
  TrainingReport training;                     // when this call trained the engine (iterations > 0)
  std::vector<GoldenRecordChange> changes;     // the non-empty ones, in extract order
  std::vector<ExtractRecordOutcome> outcomes;  // one per record, in extract order
};

// Applies `extract` to the golden records of `store`. `engine` links records (its settings have
// link_type link: the extract is the left dataset, the golden records the right one, with the
// extract's column names as attribute names); an untrained engine trains on this run (EM). Records
// the store knows (entity_of) go straight to their entity; the others are matched one-to-one, best
// pairs first: a matched record joins its entity, one whose best pair falls in the review band is
// enqueued in `review` (when given; left_id the record id, right_id the entity id) and not applied,
// and one that matches nothing becomes a new entity. A pair a clerk accepted links; one a clerk
// rejected is never proposed again.
//
// The extract is checked whole before anything is applied (ids, times, numbers); errors name the
// record by row and id. Records are then applied one by one, each in its own transaction: if one
// fails, those before it stay applied, and running the extract again is safe (applying a record
// again changes nothing). Not for two concurrent runs of the same source.
CIVICBUS_EXPORT Result<ExtractReport> apply_extract(MatchEngine& engine, GoldenRecordStore& store,
                                                    const Dataset& extract,
                                                    const ApplyExtractOptions& options,
                                                    ReviewQueue* review = nullptr);

}  // namespace civicbus::match
