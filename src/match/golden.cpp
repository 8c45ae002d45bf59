#include "civicbus/match/golden.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <utility>

#include "civicbus/broker/broker.hpp"
#include "civicbus/broker/cloud_event.hpp"
#include "civicbus/storage/database.hpp"
#include "core/uri_reference.hpp"

namespace civicbus::match {
namespace {

// The outbox holds each new version's events from the commit that stored the version until
// the broker acknowledged them (see GoldenRecordStore in golden.hpp).
constexpr storage::Migration kMigrations[] = {
    {1, "golden records, their member records and their unpublished events",
     R"sql(
CREATE TABLE match_golden_records (
  kind TEXT NOT NULL,
  entity_id TEXT NOT NULL,
  version BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,    -- Unix microseconds of the current version
  attributes TEXT NOT NULL,      -- JSON: name -> {value, source, record_id, updated_at}
  PRIMARY KEY (kind, entity_id)
);
CREATE TABLE match_golden_members (
  kind TEXT NOT NULL,
  source TEXT NOT NULL,
  record_id TEXT NOT NULL,
  entity_id TEXT NOT NULL,
  updated_at BIGINT,             -- Unix microseconds; null when the source does not say
  fields TEXT NOT NULL,          -- JSON object
  PRIMARY KEY (kind, source, record_id)
);
CREATE INDEX match_golden_members_by_entity ON match_golden_members(kind, entity_id);
CREATE TABLE match_golden_outbox (
  kind TEXT NOT NULL,
  entity_id TEXT NOT NULL,
  version BIGINT NOT NULL,
  seq INTEGER NOT NULL,          -- publish order within the version: golden record first
  event TEXT NOT NULL,           -- the CloudEvent, structured-mode JSON
  PRIMARY KEY (kind, entity_id, version, seq)
);
)sql"},
};

constexpr std::size_t kMaxEntityIdBytes = 256;

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  });
}

// Empty values never survive: a source that leaves a field blank does not erase what another
// source knows.
bool is_empty_value(const Json& v) {
  switch (v.type()) {
    case Json::Type::kNull:
      return true;
    case Json::Type::kString:
      return is_blank(v.as_string());
    case Json::Type::kArray:
    case Json::Type::kObject:
      return v.size() == 0;
    default:
      return false;
  }
}

// How informative a value is: its non-empty leaves first (an address object with a unit beats
// one without), then the length of its text, blanks runs counted once, so "12 Main St" does
// not beat "12 Main St Unit 4" by padding.
struct Completeness {
  std::int64_t leaves = 0;
  std::int64_t length = 0;
  auto operator<=>(const Completeness&) const = default;
};

std::int64_t text_length(std::string_view s) {
  std::int64_t n = 0;
  bool in_blank = true;  // leading blanks are not counted
  bool pending_blank = false;
  for (unsigned char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (!in_blank) pending_blank = true;
      in_blank = true;
      continue;
    }
    if (pending_blank) ++n;
    pending_blank = false;
    in_blank = false;
    if ((c & 0xC0) != 0x80) ++n;  // count code points, not bytes
  }
  return n;
}

void measure(const Json& v, Completeness& c) {
  switch (v.type()) {
    case Json::Type::kNull:
      return;
    case Json::Type::kString:
      if (is_blank(v.as_string())) return;
      ++c.leaves;
      c.length += text_length(v.as_string());
      return;
    case Json::Type::kArray:
      for (const Json& item : v.as_array()) measure(item, c);
      return;
    case Json::Type::kObject:
      for (const auto& [name, item] : v.as_object()) measure(item, c);
      return;
    default:  // numbers and booleans: more digits are more precise
      ++c.leaves;
      c.length += static_cast<std::int64_t>(v.dump().size());
      return;
  }
}

// The order every rule breaks ties by: dated before undated, later before earlier, then by
// source and record id (arbitrary, but the same whatever order the records came in).
bool more_recent(const SurvivorCandidate& a, const SurvivorCandidate& b) {
  if (a.updated_at.has_value() != b.updated_at.has_value()) return a.updated_at.has_value();
  if (a.updated_at && *a.updated_at != *b.updated_at) return *a.updated_at > *b.updated_at;
  if (a.source != b.source) return a.source < b.source;
  return a.record_id < b.record_id;
}

// `candidates` is ordered by more_recent(); returns the surviving index or nullopt.
Result<std::optional<std::size_t>> survive(std::string_view attribute, const AttributeRule& rule,
                                           std::span<const SurvivorCandidate> candidates) {
  if (candidates.empty()) return std::optional<std::size_t>();
  switch (rule.rule) {
    case SurvivorshipRule::kMostRecent:
      return std::optional<std::size_t>(0);
    case SurvivorshipRule::kSourcePriority: {
      auto rank = [&](const std::string& source) {
        auto it = std::find(rule.sources.begin(), rule.sources.end(), source);
        return static_cast<std::size_t>(it - rule.sources.begin());  // unlisted: after all
      };
      std::size_t best = 0;
      for (std::size_t i = 1; i < candidates.size(); ++i) {
        if (rank(candidates[i].source) < rank(candidates[best].source)) best = i;
      }
      return std::optional<std::size_t>(best);
    }
    case SurvivorshipRule::kMostComplete: {
      std::size_t best = 0;
      Completeness best_score;
      measure(candidates[0].value, best_score);
      for (std::size_t i = 1; i < candidates.size(); ++i) {
        Completeness score;
        measure(candidates[i].value, score);
        if (score > best_score) {
          best = i;
          best_score = score;
        }
      }
      return std::optional<std::size_t>(best);
    }
    case SurvivorshipRule::kMostFrequent: {
      // Members of one entity are few (one per source system, a handful of systems), so
      // counting by pairs costs less than hashing JSON values.
      std::size_t best = 0;
      std::size_t best_count = 0;
      for (std::size_t i = 0; i < candidates.size(); ++i) {
        std::size_t count = 0;
        for (const auto& other : candidates) count += other.value == candidates[i].value;
        // Strictly more: on a tie the earlier (more recent) holder stays.
        if (count > best_count) {
          best = i;
          best_count = count;
        }
      }
      return std::optional<std::size_t>(best);
    }
    case SurvivorshipRule::kCustom: {
      auto chosen = rule.custom(attribute, candidates);
      if (!chosen.ok()) {
        return chosen.status().with_context(fmt::format(
            "custom survivorship rule '{}' of attribute '{}'", rule.function, attribute));
      }
      if (*chosen && **chosen >= candidates.size()) {
        return internal_error(
            fmt::format("custom survivorship rule '{}' of attribute '{}' chose candidate {} of {}",
                        rule.function, attribute, **chosen, candidates.size()));
      }
      return *chosen;
    }
  }
  return internal_error("unknown survivorship rule");
}

std::string json_pointer_token(std::string_view name) {
  std::string out;
  civicbus::detail::append_pointer_token(out, name);
  return out;
}

Json encode_time(const std::optional<SystemTime>& t) {
  return t ? Json(to_unix_micros(*t)) : Json();
}

Json encode_attributes(const std::map<std::string, AttributeValue>& attributes) {
  Json out = Json::object();
  for (const auto& [name, a] : attributes) {
    out.set(name, Json::object({{"value", a.value},
                                {"source", a.source},
                                {"record_id", a.record_id},
                                {"updated_at", encode_time(a.updated_at)}}));
  }
  return out;
}

Result<std::map<std::string, AttributeValue>> decode_attributes(std::string_view text,
                                                                std::string_view entity_id) {
  auto doc = Json::parse(text);
  if (!doc.ok() || !doc->is_object()) {
    return data_loss(fmt::format("golden record '{}' has unreadable attributes{}", entity_id,
                                 doc.ok() ? "" : ": " + doc.status().message()));
  }
  std::map<std::string, AttributeValue> out;
  for (auto& [name, a] : doc->as_object()) {
    AttributeValue v;
    if (Json* value = a.find("value")) v.value = std::move(*value);
    v.source = a.get_string("source");
    v.record_id = a.get_string("record_id");
    if (const Json* t = a.find("updated_at"); t && t->is_int()) {
      v.updated_at = from_unix_micros(t->as_int());
    }
    out.emplace(name, std::move(v));
  }
  return out;
}

storage::Value time_value(const std::optional<SystemTime>& t) {
  if (!t) return nullptr;
  return to_unix_micros(*t);
}

Status check_name(std::string_view what, std::string_view name) {
  if (name.empty())
    return invalid_argument(fmt::format("golden record options: {} is empty", what));
  return {};
}

Status validate_rule(std::string_view attribute, const AttributeRule& rule) {
  const std::string where = attribute.empty() ? std::string("the default rule")
                                              : fmt::format("attribute '{}'", attribute);
  if (rule.rule == SurvivorshipRule::kSourcePriority) {
    if (rule.sources.empty()) {
      return invalid_argument(fmt::format(
          "golden record options: {} uses source_priority but lists no sources; list them, the "
          "most trusted first",
          where));
    }
    std::set<std::string_view> seen;
    for (const auto& s : rule.sources) {
      if (s.empty()) {
        return invalid_argument(
            fmt::format("golden record options: {} lists an empty source name", where));
      }
      if (!seen.insert(s).second) {
        return invalid_argument(
            fmt::format("golden record options: {} lists source '{}' twice", where, s));
      }
    }
  } else if (!rule.sources.empty()) {
    return invalid_argument(
        fmt::format("golden record options: {} lists sources but uses {}; sources are only read by "
                    "source_priority",
                    where, to_string(rule.rule)));
  }
  if (rule.rule == SurvivorshipRule::kCustom && !rule.custom) {
    return invalid_argument(
        fmt::format("golden record options: {} uses a custom rule but has no function", where));
  }
  return {};
}

Result<AttributeRule> rule_from_json(const Json& j, std::string_view where,
                                     const std::map<std::string, CustomSurvivorship>& functions) {
  AttributeRule rule;
  const Json* name = &j;
  if (j.is_object()) {
    for (const auto& [key, value] : j.as_object()) {
      if (key != "rule" && key != "sources" && key != "function") {
        return invalid_argument(fmt::format(
            "golden record config: {} has unknown member '{}' (expected rule, sources, function)",
            where, key));
      }
    }
    name = j.find("rule");
    if (name == nullptr) {
      return invalid_argument(fmt::format("golden record config: {} has no 'rule'", where));
    }
    if (const Json* sources = j.find("sources")) {
      if (!sources->is_array()) {
        return invalid_argument(
            fmt::format("golden record config: {}: 'sources' must be an array of names", where));
      }
      for (const Json& s : sources->as_array()) {
        if (!s.is_string()) {
          return invalid_argument(
              fmt::format("golden record config: {}: 'sources' must hold strings", where));
        }
        rule.sources.push_back(s.as_string());
      }
    }
    if (const Json* function = j.find("function")) {
      if (!function->is_string()) {
        return invalid_argument(
            fmt::format("golden record config: {}: 'function' must be a string", where));
      }
      rule.function = function->as_string();
    }
  }
  if (!name->is_string()) {
    return invalid_argument(fmt::format(
        "golden record config: {}: a rule is a name (\"most_recent\") or an object with 'rule'",
        where));
  }
  auto parsed = parse_survivorship_rule(name->as_string());
  if (!parsed.ok())
    return parsed.status().with_context(fmt::format("golden record config: {}", where));
  rule.rule = *parsed;
  if (rule.rule == SurvivorshipRule::kCustom) {
    if (rule.function.empty()) {
      return invalid_argument(fmt::format(
          "golden record config: {} uses the custom rule without a 'function' name", where));
    }
    auto it = functions.find(rule.function);
    if (it == functions.end()) {
      std::string known;
      for (const auto& [n, f] : functions) known += (known.empty() ? "" : ", ") + n;
      return invalid_argument(fmt::format(
          "golden record config: {} names custom function '{}', which is not registered{}", where,
          rule.function, known.empty() ? std::string(" (none is)") : "; registered: " + known));
    }
    rule.custom = it->second;
  } else if (!rule.function.empty()) {
    return invalid_argument(
        fmt::format("golden record config: {} names a function but its rule is {}, not custom",
                    where, to_string(rule.rule)));
  }
  return rule;
}

Result<std::vector<std::string>> string_list(const Json& j, std::string_view where) {
  if (!j.is_array()) {
    return invalid_argument(fmt::format("golden record config: {} must be an array", where));
  }
  std::vector<std::string> out;
  for (const Json& item : j.as_array()) {
    if (!item.is_string()) {
      return invalid_argument(fmt::format("golden record config: {} must hold strings", where));
    }
    out.push_back(item.as_string());
  }
  return out;
}

struct StoredMember {
  std::string entity_id;
  std::optional<SystemTime> updated_at;
};

struct PendingEvent {
  std::string entity_id;
  std::int64_t version = 0;
  std::int64_t seq = 0;
  std::string event;
};

}  // namespace

std::string_view to_string(SurvivorshipRule rule) {
  switch (rule) {
    case SurvivorshipRule::kSourcePriority:
      return "source_priority";
    case SurvivorshipRule::kMostRecent:
      return "most_recent";
    case SurvivorshipRule::kMostComplete:
      return "most_complete";
    case SurvivorshipRule::kMostFrequent:
      return "most_frequent";
    case SurvivorshipRule::kCustom:
      return "custom";
  }
  return "most_recent";
}

Result<SurvivorshipRule> parse_survivorship_rule(std::string_view text) {
  for (auto rule : {SurvivorshipRule::kSourcePriority, SurvivorshipRule::kMostRecent,
                    SurvivorshipRule::kMostComplete, SurvivorshipRule::kMostFrequent,
                    SurvivorshipRule::kCustom}) {
    if (to_string(rule) == text) return rule;
  }
  return invalid_argument(fmt::format(
      "survivorship rule '{}' is not one of source_priority, most_recent, most_complete, "
      "most_frequent, custom",
      text));
}

Json GoldenRecord::values() const {
  Json out = Json::object();
  for (const auto& [name, a] : attributes) out.set(name, a.value);
  return out;
}

Status validate(const GoldenRecordOptions& options) {
  if (options.kind.empty() || options.kind.size() > 64 ||
      !std::all_of(options.kind.begin(), options.kind.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
      })) {
    return invalid_argument(fmt::format(
        "golden record options: kind '{}' must be 1 to 64 characters of a-z, 0-9, '_' and '-' "
        "(\"property\", \"person\")",
        options.kind));
  }
  CIVICBUS_RETURN_IF_ERROR(validate_rule("", options.default_rule));
  for (const auto& [name, rule] : options.attributes) {
    CIVICBUS_RETURN_IF_ERROR(check_name("an attribute name", name));
    CIVICBUS_RETURN_IF_ERROR(validate_rule(name, rule));
  }
  std::set<std::string_view> types;
  for (const auto& e : options.domain_events) {
    Status valid = broker::validate_topic_name(e.type);
    if (!valid.ok()) return valid.with_context("golden record options: domain event");
    if (e.type == kGoldenRecordTopic) {
      return invalid_argument(fmt::format(
          "golden record options: domain event '{}' is the golden record topic itself", e.type));
    }
    if (!types.insert(e.type).second) {
      return invalid_argument(
          fmt::format("golden record options: domain event '{}' is listed twice", e.type));
    }
    if (e.attributes.empty()) {
      return invalid_argument(fmt::format(
          "golden record options: domain event '{}' lists no attributes to watch", e.type));
    }
    for (const auto& a : e.attributes) {
      CIVICBUS_RETURN_IF_ERROR(
          check_name(fmt::format("an attribute of domain event '{}'", e.type), a));
    }
  }
  for (const auto& a : options.pii_attributes) {
    CIVICBUS_RETURN_IF_ERROR(check_name("a PII attribute name", a));
  }
  if (options.retention.count() < 0) {
    return invalid_argument("golden record options: retention must not be negative (0: forever)");
  }
  return {};
}

Result<GoldenRecordOptions> GoldenRecordOptions::from_json(
    const Json& config, const std::map<std::string, CustomSurvivorship>& functions) {
  if (!config.is_object()) {
    return invalid_argument("golden record config must be an object");
  }
  GoldenRecordOptions options;
  for (const auto& [key, value] : config.as_object()) {
    if (key == "kind") {
      if (!value.is_string())
        return invalid_argument("golden record config: 'kind' must be a string");
      options.kind = value.as_string();
    } else if (key == "default") {
      CIVICBUS_ASSIGN_OR_RETURN(options.default_rule,
                                rule_from_json(value, "the default rule", functions));
    } else if (key == "attributes") {
      if (!value.is_object()) {
        return invalid_argument(
            "golden record config: 'attributes' must be an object of attribute name → rule");
      }
      for (const auto& [name, rule] : value.as_object()) {
        CIVICBUS_ASSIGN_OR_RETURN(
            options.attributes[name],
            rule_from_json(rule, fmt::format("attribute '{}'", name), functions));
      }
    } else if (key == "domain_events") {
      if (!value.is_array()) {
        return invalid_argument("golden record config: 'domain_events' must be an array");
      }
      for (std::size_t i = 0; i < value.as_array().size(); ++i) {
        const Json& e = value.as_array()[i];
        const std::string where = fmt::format("domain_events[{}]", i);
        if (!e.is_object()) {
          return invalid_argument(fmt::format(
              "golden record config: {} must be an object with 'type' and 'attributes'", where));
        }
        DomainEventOptions event;
        for (const auto& [member, v] : e.as_object()) {
          if (member == "type") {
            if (!v.is_string()) {
              return invalid_argument(
                  fmt::format("golden record config: {}.type must be a string", where));
            }
            event.type = v.as_string();
          } else if (member == "attributes") {
            CIVICBUS_ASSIGN_OR_RETURN(event.attributes, string_list(v, where + ".attributes"));
          } else {
            return invalid_argument(fmt::format(
                "golden record config: {} has unknown member '{}' (expected type, attributes)",
                where, member));
          }
        }
        options.domain_events.push_back(std::move(event));
      }
    } else if (key == "pii_attributes") {
      CIVICBUS_ASSIGN_OR_RETURN(options.pii_attributes, string_list(value, "'pii_attributes'"));
    } else if (key == "sensitivity") {
      if (!value.is_string()) {
        return invalid_argument("golden record config: 'sensitivity' must be a string");
      }
      auto s = broker::parse_sensitivity(value.as_string());
      if (!s.ok()) return s.status().with_context("golden record config");
      options.sensitivity = *s;
    } else if (key == "retention_days") {
      if (!value.is_int() || value.as_int() < 0) {
        return invalid_argument(
            "golden record config: 'retention_days' must be a whole number of days >= 0 (0: "
            "forever)");
      }
      options.retention = std::chrono::hours(24 * value.as_int());
    } else if (key == "event_source") {
      if (!value.is_string()) {
        return invalid_argument("golden record config: 'event_source' must be a string");
      }
      options.event_source = value.as_string();
    } else {
      return invalid_argument(fmt::format(
          "golden record config: unknown member '{}' (expected kind, default, attributes, "
          "domain_events, pii_attributes, sensitivity, retention_days, event_source)",
          key));
    }
  }
  CIVICBUS_RETURN_IF_ERROR(validate(options));
  return options;
}

// --- the store ------------------------------------------------------------------------------

struct GoldenRecordStore::Impl {
  Impl(storage::Database& db_in, broker::Broker* broker_in, GoldenRecordOptions options_in,
       const Clock& clock_in)
      : db(db_in), broker(broker_in), options(std::move(options_in)), clock(clock_in) {
    source = options.event_source.empty() ? "civicbus/match/golden/" + options.kind
                                          : options.event_source;
  }

  storage::Database& db;
  broker::Broker* broker;  // null: nothing is published
  GoldenRecordOptions options;
  const Clock& clock;
  std::string source;  // CloudEvent source
  // Publishing is serialised so that one entity's versions go out in order even when two
  // threads apply to it at once.
  std::mutex publish_mu;

  const AttributeRule& rule_of(const std::string& attribute) const {
    auto it = options.attributes.find(attribute);
    return it == options.attributes.end() ? options.default_rule : it->second;
  }

  bool is_pii(std::string_view attribute) const {
    return std::find(options.pii_attributes.begin(), options.pii_attributes.end(), attribute) !=
           options.pii_attributes.end();
  }

  // Creates a topic, or adds this store's PII pointers and sensitivity to an existing one (a
  // person store and a property store share the golden record topic).
  Status ensure_topic(const std::string& name, std::string description,
                      std::vector<std::string> pii_fields) {
    const broker::Sensitivity sensitivity =
        options.sensitivity.value_or(broker::Sensitivity::kInternal);
    auto existing = broker->topic(name);
    if (!existing.ok()) {
      if (existing.status().code() != ErrorCode::kNotFound) return existing.status();
      broker::TopicOptions t;
      t.name = name;
      t.owner = "match";
      t.description = std::move(description);
      t.retention = options.retention;
      t.sensitivity = sensitivity;
      t.pii_fields = std::move(pii_fields);
      Status s = broker->create_topic(t, "match");
      if (s.ok() || s.code() != ErrorCode::kAlreadyExists) return s;
      existing = broker->topic(name);  // created meanwhile by another store: merge below
      if (!existing.ok()) return existing.status();
    }
    broker::TopicOptions t = existing->options;
    bool changed = false;
    for (auto& p : pii_fields) {
      if (std::find(t.pii_fields.begin(), t.pii_fields.end(), p) == t.pii_fields.end()) {
        t.pii_fields.push_back(std::move(p));
        changed = true;
      }
    }
    if (sensitivity > t.sensitivity) {
      t.sensitivity = sensitivity;
      changed = true;
    }
    return changed ? broker->update_topic(t, "match") : Status();
  }

  Status create_topics() {
    if (broker == nullptr) return {};
    std::vector<std::string> pii;
    for (const auto& a : options.pii_attributes) {
      const std::string token = json_pointer_token(a);
      pii.push_back("/changed/" + token + "/old");
      pii.push_back("/changed/" + token + "/new");
    }
    CIVICBUS_RETURN_IF_ERROR(ensure_topic(
        std::string(kGoldenRecordTopic),
        "A golden record (the best view of a property, person... built from its source "
        "records) has a new version: the changed attributes with old and new values and "
        "provenance",
        pii));
    for (const auto& e : options.domain_events) {
      std::vector<std::string> event_pii;
      for (const auto& a : e.attributes) {
        if (!is_pii(a)) continue;
        const std::string token = json_pointer_token(a);
        event_pii.push_back("/changed/" + token + "/old");
        event_pii.push_back("/changed/" + token + "/new");
        event_pii.push_back("/attributes/" + token);
      }
      std::string attrs;
      for (const auto& a : e.attributes) attrs += (attrs.empty() ? "" : ", ") + a;
      CIVICBUS_RETURN_IF_ERROR(ensure_topic(
          e.type,
          fmt::format("A {} golden record's {} changed (from golden record survivorship)",
                      options.kind, attrs),
          std::move(event_pii)));
    }
    return {};
  }

  Result<std::optional<StoredMember>> find_member(const std::string& source,
                                                  const std::string& record_id) const {
    std::optional<StoredMember> out;
    CIVICBUS_RETURN_IF_ERROR(
        db.query("SELECT entity_id, updated_at FROM match_golden_members "
                 "WHERE kind = ? AND source = ? AND record_id = ?",
                 {options.kind, source, record_id}, [&](const storage::Row& row) {
                   StoredMember m;
                   m.entity_id = std::string(row.get_text(0));
                   if (!row.is_null(1)) m.updated_at = from_unix_micros(row.get_int(1));
                   out = std::move(m);
                   return false;
                 }));
    return out;
  }

  Result<std::vector<SourceRecord>> load_members(std::string_view entity_id) const {
    std::vector<SourceRecord> out;
    Status read_status;
    CIVICBUS_RETURN_IF_ERROR(
        db.query("SELECT source, record_id, updated_at, fields FROM match_golden_members "
                 "WHERE kind = ? AND entity_id = ? ORDER BY source, record_id",
                 {options.kind, entity_id}, [&](const storage::Row& row) {
                   SourceRecord r;
                   r.source = std::string(row.get_text(0));
                   r.record_id = std::string(row.get_text(1));
                   if (!row.is_null(2)) r.updated_at = from_unix_micros(row.get_int(2));
                   auto fields = Json::parse(row.get_text(3));
                   if (!fields.ok()) {
                     read_status = data_loss(fmt::format(
                         "member record '{}'/'{}' of {} '{}' has unreadable fields: {}", r.source,
                         r.record_id, options.kind, entity_id, fields.status().message()));
                     return false;
                   }
                   r.fields = std::move(*fields);
                   out.push_back(std::move(r));
                   return true;
                 }));
    CIVICBUS_RETURN_IF_ERROR(read_status);
    return out;
  }

  Result<std::vector<MemberRef>> load_member_refs(std::string_view entity_id) const {
    std::vector<MemberRef> out;
    CIVICBUS_RETURN_IF_ERROR(db.query(
        "SELECT source, record_id FROM match_golden_members "
        "WHERE kind = ? AND entity_id = ? ORDER BY source, record_id",
        {options.kind, entity_id}, [&](const storage::Row& row) {
          out.push_back(MemberRef{std::string(row.get_text(0)), std::string(row.get_text(1))});
          return true;
        }));
    return out;
  }

  // The golden record without members, or nullopt.
  Result<std::optional<GoldenRecord>> load_record(std::string_view entity_id) const {
    std::optional<GoldenRecord> out;
    Status read_status;
    CIVICBUS_RETURN_IF_ERROR(
        db.query("SELECT version, updated_at, attributes FROM match_golden_records "
                 "WHERE kind = ? AND entity_id = ?",
                 {options.kind, entity_id}, [&](const storage::Row& row) {
                   GoldenRecord g;
                   g.entity_id = std::string(entity_id);
                   g.kind = options.kind;
                   g.version = row.get_int(0);
                   g.updated_at = from_unix_micros(row.get_int(1));
                   auto attributes = decode_attributes(row.get_text(2), entity_id);
                   if (!attributes.ok()) {
                     read_status = attributes.status();
                   } else {
                     g.attributes = std::move(*attributes);
                     out = std::move(g);
                   }
                   return false;
                 }));
    CIVICBUS_RETURN_IF_ERROR(read_status);
    return out;
  }

  // Every attribute of the members, by its rule.
  Result<std::map<std::string, AttributeValue>> compute(
      const std::vector<SourceRecord>& members) const {
    std::map<std::string, std::vector<SurvivorCandidate>> candidates;
    for (const SourceRecord& r : members) {
      if (!r.fields.is_object()) continue;
      for (const auto& [name, value] : r.fields.as_object()) {
        auto& list = candidates[name];
        if (is_empty_value(value)) continue;
        list.push_back(SurvivorCandidate{value, r.source, r.record_id, r.updated_at});
      }
    }
    std::map<std::string, AttributeValue> out;
    for (auto& [name, list] : candidates) {
      std::sort(list.begin(), list.end(), more_recent);
      CIVICBUS_ASSIGN_OR_RETURN(std::optional<std::size_t> chosen,
                                survive(name, rule_of(name), list));
      if (!chosen) continue;
      SurvivorCandidate& c = list[*chosen];
      out.emplace(name, AttributeValue{std::move(c.value), std::move(c.source),
                                       std::move(c.record_id), c.updated_at});
    }
    return out;
  }

  // The events of a new version, in publish order.
  std::vector<broker::CloudEvent> events_of(const GoldenRecordChange& change,
                                            const std::map<std::string, AttributeValue>& now,
                                            SystemTime at) const {
    auto change_json = [](const AttributeChange& c) {
      return Json::object({{"old", c.old_value},
                           {"new", c.new_value},
                           {"source", c.source},
                           {"record_id", c.record_id}});
    };
    const std::string time = format_rfc3339(at);
    std::vector<broker::CloudEvent> out;

    Json changed = Json::object();
    for (const auto& c : change.changed) changed.set(c.attribute, change_json(c));
    Json added = Json::array();
    for (const auto& m : change.members_added) {
      added.push_back(Json::object({{"source", m.source}, {"record_id", m.record_id}}));
    }
    broker::CloudEvent golden(std::string(kGoldenRecordTopic), source,
                              Json::object({{"entity_id", change.entity_id},
                                            {"kind", options.kind},
                                            {"version", change.version},
                                            {"created", change.created},
                                            {"changed", std::move(changed)},
                                            {"members_added", std::move(added)}}));
    golden.set_id(fmt::format("{}@{}", change.entity_id, change.version));
    golden.set_subject(change.entity_id);
    golden.set_time(time);
    out.push_back(std::move(golden));

    for (const auto& e : options.domain_events) {
      Json fields = Json::object();
      for (const auto& c : change.changed) {
        if (std::find(e.attributes.begin(), e.attributes.end(), c.attribute) !=
            e.attributes.end()) {
          fields.set(c.attribute, change_json(c));
        }
      }
      if (fields.size() == 0) continue;
      // The watched attributes' current values too, so a consumer needs no lookup to see the
      // whole assessment when one of its fields changed.
      Json current = Json::object();
      for (const auto& a : e.attributes) {
        auto it = now.find(a);
        current.set(a, it == now.end() ? Json() : it->second.value);
      }
      broker::CloudEvent event(e.type, source,
                               Json::object({{"entity_id", change.entity_id},
                                             {"kind", options.kind},
                                             {"version", change.version},
                                             {"changed", std::move(fields)},
                                             {"attributes", std::move(current)}}));
      event.set_id(fmt::format("{}@{}/{}", change.entity_id, change.version, e.type));
      event.set_subject(change.entity_id);
      event.set_time(time);
      out.push_back(std::move(event));
    }
    return out;
  }

  // Publishes queued events (of one entity, or all of this kind) in version order, removing
  // each once the broker has it. An entity whose event fails keeps the rest queued, so its
  // consumers never see version n+1 before n.
  Result<std::int64_t> publish_queued(std::optional<std::string_view> entity_id) {
    if (broker == nullptr) return std::int64_t{0};
    std::lock_guard lock(publish_mu);
    std::vector<PendingEvent> queued;
    auto collect = [&](const storage::Row& row) {
      queued.push_back(PendingEvent{std::string(row.get_text(0)), row.get_int(1), row.get_int(2),
                                    std::string(row.get_text(3))});
      return true;
    };
    if (entity_id) {
      CIVICBUS_RETURN_IF_ERROR(
          db.query("SELECT entity_id, version, seq, event FROM match_golden_outbox "
                   "WHERE kind = ? AND entity_id = ? ORDER BY version, seq",
                   {options.kind, *entity_id}, collect));
    } else {
      CIVICBUS_RETURN_IF_ERROR(
          db.query("SELECT entity_id, version, seq, event FROM match_golden_outbox "
                   "WHERE kind = ? ORDER BY entity_id, version, seq",
                   {options.kind}, collect));
    }
    std::int64_t published = 0;
    Status first_error;
    std::set<std::string> blocked;
    for (const PendingEvent& p : queued) {
      if (blocked.count(p.entity_id)) continue;
      Status s = publish_one(p);
      if (!s.ok()) {
        blocked.insert(p.entity_id);
        if (first_error.ok()) first_error = s;
        continue;
      }
      ++published;
    }
    CIVICBUS_RETURN_IF_ERROR(first_error);
    return published;
  }

  Status publish_one(const PendingEvent& p) {
    auto event = broker::CloudEvent::parse(p.event);
    Status s = event.ok() ? broker->publish(std::move(*event)).status() : event.status();
    if (!s.ok()) {
      return Status(s.code(),
                    fmt::format("{} '{}' version {} is stored but its event {} is not published "
                                "yet ({}); it stays queued for the next apply() of the entity "
                                "or publish_pending()",
                                options.kind, p.entity_id, p.version, p.seq, s.message()));
    }
    // Should this delete fail, the event is published again later with the same id, and the
    // broker's dedup window acknowledges it without storing it twice.
    return db
        .execute(
            "DELETE FROM match_golden_outbox "
            "WHERE kind = ? AND entity_id = ? AND version = ? AND seq = ?",
            {options.kind, p.entity_id, p.version, p.seq})
        .status();
  }
};

GoldenRecordStore::GoldenRecordStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GoldenRecordStore::~GoldenRecordStore() = default;

Result<std::unique_ptr<GoldenRecordStore>> GoldenRecordStore::open(storage::Database& db,
                                                                   broker::Broker* broker,
                                                                   GoldenRecordOptions options,
                                                                   const Clock* clock) {
  static const SystemClock kSystemClock;
  CIVICBUS_RETURN_IF_ERROR(validate(options));
  CIVICBUS_RETURN_IF_ERROR(storage::migrate(db, "match_golden", kMigrations));
  auto impl = std::make_unique<Impl>(db, broker, std::move(options), clock ? *clock : kSystemClock);
  CIVICBUS_RETURN_IF_ERROR(impl->create_topics());
  return std::unique_ptr<GoldenRecordStore>(new GoldenRecordStore(std::move(impl)));
}

const GoldenRecordOptions& GoldenRecordStore::options() const {
  return impl_->options;
}

Result<GoldenRecordChange> GoldenRecordStore::apply(std::string_view entity_id,
                                                    std::vector<SourceRecord> records) {
  Impl& s = *impl_;
  const std::string& kind = s.options.kind;
  if (entity_id.empty() || entity_id.size() > kMaxEntityIdBytes) {
    return invalid_argument(fmt::format("golden record: entity id '{}' must be 1 to {} bytes",
                                        entity_id, kMaxEntityIdBytes));
  }
  if (records.empty()) {
    return invalid_argument(fmt::format(
        "golden record: apply() to {} '{}' needs at least one source record", kind, entity_id));
  }
  // Checked first, and one record per source and id kept (the newer when both are dated, else
  // the later in the list), so that a bad record stores nothing.
  std::map<std::pair<std::string, std::string>, std::size_t> latest;
  for (std::size_t i = 0; i < records.size(); ++i) {
    SourceRecord& r = records[i];
    if (r.source.empty() || r.record_id.empty()) {
      return invalid_argument(fmt::format(
          "golden record: record {} for {} '{}' ('{}'/'{}') needs both a source and a record id", i,
          kind, entity_id, r.source, r.record_id));
    }
    if (r.fields.is_null()) r.fields = Json::object();
    if (!r.fields.is_object()) {
      return invalid_argument(fmt::format(
          "golden record: record '{}'/'{}' for {} '{}' has fields that are not a JSON object",
          r.source, r.record_id, kind, entity_id));
    }
    auto [it, inserted] = latest.try_emplace({r.source, r.record_id}, i);
    if (!inserted) {
      const SourceRecord& kept = records[it->second];
      if (!(kept.updated_at && r.updated_at && *kept.updated_at > *r.updated_at)) it->second = i;
    }
  }

  const std::string entity(entity_id);
  const SystemTime now = s.clock.now();
  GoldenRecordChange change;
  change.entity_id = entity;
  Status body_status = s.db.transaction([&]() -> Status {
    // 1. The member records: the entity's stored ones merged with these.
    for (const auto& [key, index] : latest) {
      const SourceRecord& r = records[index];
      CIVICBUS_ASSIGN_OR_RETURN(std::optional<StoredMember> stored,
                                s.find_member(r.source, r.record_id));
      if (stored && stored->entity_id != entity) {
        return failed_precondition(fmt::format(
            "golden record: record '{}'/'{}' belongs to {} '{}', not '{}'; a record belongs to "
            "one entity",
            r.source, r.record_id, kind, stored->entity_id, entity));
      }
      if (stored && stored->updated_at && r.updated_at && *stored->updated_at > *r.updated_at) {
        continue;  // a stale extract: the stored record is newer
      }
      const std::string fields = r.fields.dump();
      CIVICBUS_RETURN_IF_ERROR(
          s.db.execute("INSERT INTO match_golden_members "
                       "(kind, source, record_id, entity_id, updated_at, fields) "
                       "VALUES (?, ?, ?, ?, ?, ?) "
                       "ON CONFLICT (kind, source, record_id) DO UPDATE SET "
                       "updated_at = excluded.updated_at, fields = excluded.fields",
                       {kind, r.source, r.record_id, entity, time_value(r.updated_at), fields})
              .status());
      if (!stored) change.members_added.push_back(MemberRef{r.source, r.record_id});
    }
    std::sort(change.members_added.begin(), change.members_added.end());

    // 2. Every attribute again, from every member.
    CIVICBUS_ASSIGN_OR_RETURN(std::vector<SourceRecord> members, s.load_members(entity));
    CIVICBUS_ASSIGN_OR_RETURN(auto attributes, s.compute(members));

    // 3. What changed since the stored version.
    CIVICBUS_ASSIGN_OR_RETURN(std::optional<GoldenRecord> stored, s.load_record(entity));
    static const std::map<std::string, AttributeValue> kNone;
    const auto& before = stored ? stored->attributes : kNone;
    std::set<std::string> names;
    for (const auto& [name, a] : before) names.insert(name);
    for (const auto& [name, a] : attributes) names.insert(name);
    for (const auto& name : names) {
      auto old_it = before.find(name);
      auto new_it = attributes.find(name);
      const Json old_value = old_it == before.end() ? Json() : old_it->second.value;
      const Json new_value = new_it == attributes.end() ? Json() : new_it->second.value;
      if (old_value == new_value) continue;
      AttributeChange c;
      c.attribute = name;
      c.old_value = old_value;
      c.new_value = new_value;
      if (new_it != attributes.end()) {
        c.source = new_it->second.source;
        c.record_id = new_it->second.record_id;
      }
      change.changed.push_back(std::move(c));
    }
    const std::string encoded = encode_attributes(attributes).dump();

    // 4. Persist: a new version when a value changed or a record joined; otherwise only the
    // provenance (the same value may now come from a newer record).
    if (change.empty()) {
      change.version = stored ? stored->version : 0;
      if (stored && encode_attributes(before).dump() != encoded) {
        CIVICBUS_RETURN_IF_ERROR(s.db.execute("UPDATE match_golden_records SET attributes = ? "
                                              "WHERE kind = ? AND entity_id = ?",
                                              {encoded, kind, entity})
                                     .status());
      }
      return Status();
    }
    change.created = !stored;
    change.version = stored ? stored->version + 1 : 1;
    CIVICBUS_RETURN_IF_ERROR(
        s.db.execute("INSERT INTO match_golden_records "
                     "(kind, entity_id, version, updated_at, attributes) VALUES (?, ?, ?, ?, ?) "
                     "ON CONFLICT (kind, entity_id) DO UPDATE SET version = excluded.version, "
                     "updated_at = excluded.updated_at, attributes = excluded.attributes",
                     {kind, entity, change.version, to_unix_micros(now), encoded})
            .status());
    if (s.broker == nullptr) return Status();
    std::int64_t seq = 0;
    for (const auto& event : s.events_of(change, attributes, now)) {
      change.events.push_back(event.type());
      const std::string text = event.to_json();
      CIVICBUS_RETURN_IF_ERROR(
          s.db.execute("INSERT INTO match_golden_outbox (kind, entity_id, version, seq, event) "
                       "VALUES (?, ?, ?, ?, ?)",
                       {kind, entity, change.version, seq++, text})
              .status());
    }
    return Status();
  });
  if (!body_status.ok()) return body_status;

  // Publishes this version's events and any an earlier apply() of the entity left queued.
  auto published = s.publish_queued(entity_id);
  if (!published.ok()) return published.status();
  return change;
}

Result<GoldenRecord> GoldenRecordStore::get(std::string_view entity_id) const {
  CIVICBUS_ASSIGN_OR_RETURN(std::optional<GoldenRecord> record, impl_->load_record(entity_id));
  if (!record) {
    return not_found(fmt::format("no golden record of {} '{}'", impl_->options.kind, entity_id));
  }
  CIVICBUS_ASSIGN_OR_RETURN(record->members, impl_->load_member_refs(entity_id));
  return std::move(*record);
}

Result<std::optional<std::string>> GoldenRecordStore::entity_of(std::string_view source,
                                                                std::string_view record_id) const {
  CIVICBUS_ASSIGN_OR_RETURN(std::optional<StoredMember> m,
                            impl_->find_member(std::string(source), std::string(record_id)));
  if (!m) return std::optional<std::string>();
  return std::optional<std::string>(std::move(m->entity_id));
}

Result<std::vector<GoldenRecord>> GoldenRecordStore::list(std::size_t limit,
                                                          std::string_view after) const {
  const Impl& s = *impl_;
  std::vector<GoldenRecord> out;
  Status read_status;
  CIVICBUS_RETURN_IF_ERROR(s.db.query(
      "SELECT entity_id, version, updated_at, attributes FROM match_golden_records "
      "WHERE kind = ? AND entity_id > ? ORDER BY entity_id LIMIT ?",
      {s.options.kind, after, static_cast<std::int64_t>(limit)}, [&](const storage::Row& row) {
        GoldenRecord g;
        g.entity_id = std::string(row.get_text(0));
        g.kind = s.options.kind;
        g.version = row.get_int(1);
        g.updated_at = from_unix_micros(row.get_int(2));
        auto attributes = decode_attributes(row.get_text(3), g.entity_id);
        if (!attributes.ok()) {
          read_status = attributes.status();
          return false;
        }
        g.attributes = std::move(*attributes);
        out.push_back(std::move(g));
        return true;
      }));
  CIVICBUS_RETURN_IF_ERROR(read_status);
  for (GoldenRecord& g : out) {
    CIVICBUS_ASSIGN_OR_RETURN(g.members, s.load_member_refs(g.entity_id));
  }
  return out;
}

Result<std::vector<SourceRecord>> GoldenRecordStore::members(std::string_view entity_id) const {
  return impl_->load_members(entity_id);
}

Result<std::int64_t> GoldenRecordStore::publish_pending() {
  return impl_->publish_queued(std::nullopt);
}

Result<std::int64_t> GoldenRecordStore::pending_events() const {
  CIVICBUS_ASSIGN_OR_RETURN(
      std::optional<std::int64_t> n,
      impl_->db.query_int("SELECT COUNT(*) FROM match_golden_outbox WHERE kind = ?",
                          {impl_->options.kind}));
  return n.value_or(0);
}

}  // namespace civicbus::match
