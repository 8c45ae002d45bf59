#include "civicbus/core/json_schema.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>

#include "core/ecma_regex.hpp"
#include "core/json_schema_formats.hpp"
#include "core/json_schema_metaschemas.hpp"
#include "core/json_text.hpp"
#include "core/uri_reference.hpp"

namespace civicbus {
namespace {

constexpr std::uint32_t kNoNode = std::numeric_limits<std::uint32_t>::max();
// Evaluation recurses once per schema applied; legitimate schemas stay far below this even on
// deeply nested instances, while a "$ref" loop that never consumes input hits it quickly.
constexpr int kMaxEvaluationDepth = 2048;
// A bound on work for schemas whose branches multiply: 30 levels of {"anyOf": [{"$ref": next},
// {"$ref": next}]} is 2^30 evaluations from a 2 KB schema. The first kEvaluationsBeforeBudget
// evaluations are free; past them a validation may evaluate each (schema node, instance
// value) pair kEvaluationsPerPair times on average, which only a schema that reaches the
// same subschemas along very many paths needs.
constexpr std::uint64_t kEvaluationsBeforeBudget = 100'000;
constexpr std::uint64_t kEvaluationsPerPair = 8;
// Properties lists longer than this get a hash index; shorter ones are scanned.
constexpr std::size_t kLinearPropertyLimit = 8;
constexpr std::size_t kMaxQuotedLength = 60;

// ---- Vocabularies -----------------------------------------------------------------------

enum Vocabulary : std::uint32_t {
  kVocabCore = 1u << 0,
  kVocabApplicator = 1u << 1,
  kVocabUnevaluated = 1u << 2,
  kVocabValidation = 1u << 3,
  kVocabMetaData = 1u << 4,
  kVocabFormatAnnotation = 1u << 5,
  kVocabFormatAssertion = 1u << 6,
  kVocabContent = 1u << 7,
};
constexpr std::uint32_t kDefaultVocabularies = kVocabCore | kVocabApplicator | kVocabUnevaluated |
                                               kVocabValidation | kVocabMetaData |
                                               kVocabFormatAnnotation | kVocabContent;

constexpr std::string_view kDialect202012 = "https://json-schema.org/draft/2020-12/schema";

std::uint32_t vocabulary_bit(std::string_view uri) {
  static constexpr std::pair<std::string_view, std::uint32_t> kKnown[] = {
      {"https://json-schema.org/draft/2020-12/vocab/core", kVocabCore},
      {"https://json-schema.org/draft/2020-12/vocab/applicator", kVocabApplicator},
      {"https://json-schema.org/draft/2020-12/vocab/unevaluated", kVocabUnevaluated},
      {"https://json-schema.org/draft/2020-12/vocab/validation", kVocabValidation},
      {"https://json-schema.org/draft/2020-12/vocab/meta-data", kVocabMetaData},
      {"https://json-schema.org/draft/2020-12/vocab/format-annotation", kVocabFormatAnnotation},
      {"https://json-schema.org/draft/2020-12/vocab/format-assertion", kVocabFormatAssertion},
      {"https://json-schema.org/draft/2020-12/vocab/content", kVocabContent},
  };
  for (const auto& [known, bit] : kKnown) {
    if (uri == known) return bit;
  }
  return 0;
}

// Dialects of earlier drafts: their keywords mean different things ("items" as an array,
// "$ref" overriding its siblings), so validating them with 2020-12 rules would be wrong.
std::string_view older_draft_name(std::string_view uri) {
  if (!uri.empty() && uri.back() == '#') uri.remove_suffix(1);
  if (uri == "http://json-schema.org/draft-07/schema") return "draft-07";
  if (uri == "http://json-schema.org/draft-06/schema") return "draft-06";
  if (uri == "http://json-schema.org/draft-04/schema") return "draft-04";
  if (uri == "http://json-schema.org/draft-03/schema") return "draft-03";
  if (uri == "https://json-schema.org/draft/2019-09/schema") return "draft 2019-09";
  return {};
}

// ---- Types ------------------------------------------------------------------------------

enum TypeBit : std::uint8_t {
  kTypeNull = 1,
  kTypeBoolean = 2,
  kTypeObject = 4,
  kTypeArray = 8,
  kTypeNumber = 16,
  kTypeString = 32,
  kTypeInteger = 64,
};

std::uint8_t type_bit(std::string_view name) {
  if (name == "null") return kTypeNull;
  if (name == "boolean") return kTypeBoolean;
  if (name == "object") return kTypeObject;
  if (name == "array") return kTypeArray;
  if (name == "number") return kTypeNumber;
  if (name == "string") return kTypeString;
  if (name == "integer") return kTypeInteger;
  return 0;
}

bool type_matches(std::uint8_t mask, const Json& v) {
  switch (v.type()) {
    case Json::Type::kNull:
      return mask & kTypeNull;
    case Json::Type::kBool:
      return mask & kTypeBoolean;
    case Json::Type::kObject:
      return mask & kTypeObject;
    case Json::Type::kArray:
      return mask & kTypeArray;
    case Json::Type::kString:
      return mask & kTypeString;
    case Json::Type::kInt:
      return mask & (kTypeNumber | kTypeInteger);
    case Json::Type::kDouble:
      return (mask & kTypeNumber) || ((mask & kTypeInteger) && v.is_integral());
  }
  return false;
}

std::string_view type_name(const Json& v) {
  switch (v.type()) {
    case Json::Type::kNull:
      return "null";
    case Json::Type::kBool:
      return "boolean";
    case Json::Type::kObject:
      return "object";
    case Json::Type::kArray:
      return "array";
    case Json::Type::kString:
      return "string";
    case Json::Type::kInt:
      return "integer";
    case Json::Type::kDouble:
      return v.is_integral() ? "integer" : "number";
  }
  return "value";
}

std::string type_list(std::uint8_t mask) {
  static constexpr std::pair<std::uint8_t, std::string_view> kNames[] = {
      {kTypeNull, "null"},      {kTypeBoolean, "boolean"}, {kTypeObject, "object"},
      {kTypeArray, "array"},    {kTypeNumber, "number"},   {kTypeString, "string"},
      {kTypeInteger, "integer"}};
  std::string out;
  for (const auto& [bit, name] : kNames) {
    if (!(mask & bit)) continue;
    if (!out.empty()) out += " or ";
    out += name;
  }
  return out;
}

// ---- Small helpers ----------------------------------------------------------------------

std::string quoted(const Json& value) {
  std::string text = value.dump();
  if (text.size() > kMaxQuotedLength) {
    text.resize(kMaxQuotedLength);
    text += "...";
  }
  return text;
}

// Compares two numbers exactly, ints and doubles mixed: <0, 0, >0.
int compare_numbers(const Json& a, const Json& b) {
  if (a.is_int() && b.is_int()) return a.as_int() < b.as_int() ? -1 : (a.as_int() > b.as_int());
  // long double holds every int64 exactly on the platforms civicbus builds for (x86-64's
  // 80-bit format; aarch64's 128-bit one).
  const long double x = a.is_int() ? static_cast<long double>(a.as_int()) : a.as_double();
  const long double y = b.is_int() ? static_cast<long double>(b.as_int()) : b.as_double();
  return x < y ? -1 : (x > y);
}

bool is_multiple_of(const Json& value, const Json& divisor) {
  if (value.is_int() && divisor.is_int()) return value.as_int() % divisor.as_int() == 0;
  const double v = value.as_double();
  const double d = divisor.as_double();
  const double q = v / d;
  if (!std::isfinite(q)) return false;
  // Decimal divisors (0.01) are not exact in binary, so allow for rounding in the quotient.
  const double nearest = std::round(q);
  // ...but the only multiple of d smaller than d / 2 (in size) is 0: without this, the
  // tolerance made 1e-10 a multiple of 1 and 0.5 a multiple of 1e300.
  if (nearest == 0) return v == 0;
  return std::fabs(q - nearest) <= 1e-9 * std::max(1.0, std::fabs(q));
}

std::size_t hash_combine(std::size_t seed, std::size_t v) {
  return seed ^ (v + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2));
}

// A hash consistent with Json equality (1 and 1.0 hash alike; member order is ignored).
std::size_t json_hash(const Json& v) {
  switch (v.type()) {
    case Json::Type::kNull:
      return 0x6e756c6c;
    case Json::Type::kBool:
      return v.as_bool() ? 0x74727565 : 0x66616c73;
    case Json::Type::kInt:
      return std::hash<std::int64_t>()(v.as_int());
    case Json::Type::kDouble: {
      const double d = v.as_double();
      if (v.is_integral() && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
        return std::hash<std::int64_t>()(static_cast<std::int64_t>(d));
      }
      return std::hash<double>()(d);
    }
    case Json::Type::kString:
      return std::hash<std::string_view>()(v.as_string());
    case Json::Type::kArray: {
      std::size_t h = 0x5b5d;
      for (const Json& item : v.as_array()) h = hash_combine(h, json_hash(item));
      return h;
    }
    case Json::Type::kObject: {
      std::size_t h = 0x7b7d;
      for (const auto& [key, value] : v.as_object()) {
        h += hash_combine(std::hash<std::string_view>()(key), json_hash(value));
      }
      return h;
    }
  }
  return 0;
}

// First pair of equal items, or {npos, npos}.
std::pair<std::size_t, std::size_t> find_duplicate(const Json::Array& items) {
  constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();
  if (items.size() <= 16) {
    for (std::size_t i = 0; i < items.size(); ++i) {
      for (std::size_t j = i + 1; j < items.size(); ++j) {
        if (items[i] == items[j]) return {i, j};
      }
    }
    return {npos, npos};
  }
  std::vector<std::pair<std::size_t, std::size_t>> hashed;  // (hash, index)
  hashed.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) hashed.emplace_back(json_hash(items[i]), i);
  std::sort(hashed.begin(), hashed.end());
  std::pair<std::size_t, std::size_t> best{npos, npos};
  for (std::size_t i = 0; i < hashed.size(); ++i) {
    for (std::size_t j = i + 1; j < hashed.size() && hashed[j].first == hashed[i].first; ++j) {
      if (items[hashed[i].second] == items[hashed[j].second]) {
        auto pair = std::minmax(hashed[i].second, hashed[j].second);
        if (pair.second < best.second || best.first == npos) best = {pair.first, pair.second};
      }
    }
  }
  return best;
}

bool valid_anchor_name(std::string_view name) {
  if (name.empty()) return false;
  const auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (!letter(name[0]) && name[0] != '_') return false;
  for (char c : name) {
    if (!letter(c) && !(c >= '0' && c <= '9') && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

// Non-negative integer keyword values (2.0 counts as 2).
bool read_count(const Json& v, std::size_t& out) {
  if (!v.is_number() || !v.is_integral() || v.as_double() < 0) return false;
  if (v.is_int()) {
    out = static_cast<std::size_t>(v.as_int());
  } else {
    const double d = v.as_double();
    out = d >= 1.8e19 ? std::numeric_limits<std::size_t>::max() : static_cast<std::size_t>(d);
  }
  return true;
}

// ---- Compiled form ----------------------------------------------------------------------

struct TypeKw {
  std::uint8_t mask;
};
struct ConstKw {
  const Json* value;
};
struct EnumKw {
  const Json::Array* values;
  std::unordered_set<std::string_view> strings;
};
struct MultipleOfKw {
  Json divisor;
};
struct BoundKw {
  enum class Kind { kMinimum, kMaximum, kExclusiveMinimum, kExclusiveMaximum };
  Kind kind;
  Json limit;
};
struct LengthKw {
  std::size_t limit;
  bool is_max;
};
struct PatternKw {
  detail::EcmaRegex regex;
};
struct FormatKw {
  std::string_view format;
};
struct ArrayItemsKw {
  std::vector<std::uint32_t> prefix;
  std::uint32_t items = kNoNode;
  std::string items_location;
};
struct ContainsKw {
  std::uint32_t node;
  std::size_t min = 1;
  std::size_t max = std::numeric_limits<std::size_t>::max();
  std::string min_location;
  std::string max_location;
};
struct ItemCountKw {
  std::size_t limit;
  bool is_max;
};
struct UniqueItemsKw {};
struct ObjectMembersKw {
  std::vector<std::pair<std::string_view, std::uint32_t>> properties;
  std::unordered_map<std::string_view, std::uint32_t> property_index;  // when many
  std::vector<std::pair<detail::EcmaRegex, std::uint32_t>> patterns;
  std::uint32_t additional = kNoNode;
  std::string additional_location;

  std::uint32_t find_property(std::string_view name) const {
    if (!property_index.empty()) {
      auto it = property_index.find(name);
      return it == property_index.end() ? kNoNode : it->second;
    }
    for (const auto& [key, node] : properties) {
      if (key == name) return node;
    }
    return kNoNode;
  }
};
struct PropertyNamesKw {
  std::uint32_t node;
};
struct PropertyCountKw {
  std::size_t limit;
  bool is_max;
};
struct RequiredKw {
  std::vector<std::string_view> names;
};
struct DependentRequiredKw {
  std::vector<std::pair<std::string_view, std::vector<std::string_view>>> dependencies;
};
struct DependentSchemasKw {
  std::vector<std::pair<std::string_view, std::uint32_t>> dependencies;
};
struct AllOfKw {
  std::vector<std::uint32_t> nodes;
};
struct AnyOfKw {
  std::vector<std::uint32_t> nodes;
};
struct OneOfKw {
  std::vector<std::uint32_t> nodes;
};
struct NotKw {
  std::uint32_t node;
};
struct IfKw {
  std::uint32_t condition;
  std::uint32_t then_node = kNoNode;
  std::uint32_t else_node = kNoNode;
};
struct RefKw {
  std::uint32_t node;
};
struct DynamicRefKw {
  std::uint32_t initial;
  std::string anchor;
};
struct UnevaluatedPropertiesKw {
  std::uint32_t node;
};
struct UnevaluatedItemsKw {
  std::uint32_t node;
};

using KeywordData =
    std::variant<TypeKw, ConstKw, EnumKw, MultipleOfKw, BoundKw, LengthKw, PatternKw, FormatKw,
                 ArrayItemsKw, ContainsKw, ItemCountKw, UniqueItemsKw, ObjectMembersKw,
                 PropertyNamesKw, PropertyCountKw, RequiredKw, DependentRequiredKw,
                 DependentSchemasKw, AllOfKw, AnyOfKw, OneOfKw, NotKw, IfKw, RefKw, DynamicRefKw,
                 UnevaluatedPropertiesKw, UnevaluatedItemsKw>;

struct Keyword {
  KeywordData data;
  std::string location;  // keyword location, for errors
};

struct SchemaNode {
  enum class Kind : std::uint8_t { kTrue, kFalse, kObject };
  Kind kind = Kind::kTrue;
  bool has_unevaluated = false;
  std::uint32_t resource = 0;
  std::string location;
  std::vector<Keyword> keywords;
};

struct CompiledResource {
  std::vector<std::pair<std::string, std::uint32_t>> dynamic_anchors;
};

}  // namespace

struct JsonSchema::Compiled {
  std::deque<Json> documents;  // [0] is the schema given to compile(); addresses are stable
  std::vector<SchemaNode> nodes;
  std::vector<CompiledResource> resources;
  std::uint32_t root = 0;
  std::size_t max_errors = 10;
};

namespace {

// ---- Compiling --------------------------------------------------------------------------

class Compiler {
 public:
  Compiler(JsonSchema::Compiled& out, const JsonSchema::Options& options)
      : out_(out), options_(options) {}

  Status compile(const Json& schema) {
    out_.documents.push_back(schema);
    const Json* root = &out_.documents.back();
    CIVICBUS_RETURN_IF_ERROR(scan_document(root, options_.base_uri, ""));
    if (!options_.base_uri.empty()) loaded_.emplace(options_.base_uri, root);
    out_.root = ensure_node(root);
    while (!worklist_.empty()) {
      auto [index, node] = worklist_.back();
      worklist_.pop_back();
      CIVICBUS_RETURN_IF_ERROR(compile_node(index, node));
    }
    out_.resources.resize(resources_.size());
    for (std::size_t r = 0; r < resources_.size(); ++r) {
      out_.resources[r].dynamic_anchors = std::move(resources_[r].compiled_dynamic_anchors);
    }
    out_.max_errors = std::max<std::size_t>(1, options_.max_errors);
    return {};
  }

 private:
  struct ResourceInfo {
    std::string uri;
    const Json* root = nullptr;
    std::string location;  // of the root, for locations of nodes reached by pointer
    std::unordered_map<std::string, const Json*> anchors;
    std::unordered_map<std::string, const Json*> dynamic_anchors;
    bool dynamic_anchors_enqueued = false;
    std::vector<std::pair<std::string, std::uint32_t>> compiled_dynamic_anchors;
  };
  struct NodeInfo {
    std::uint32_t resource;
    std::uint32_t vocabularies;
    std::string location;
  };

  static Status schema_error(std::string_view location, std::string_view message) {
    return invalid_argument(
        fmt::format("invalid schema at {}: {}", location.empty() ? "the root" : location, message));
  }

  static std::string child_location(std::string_view parent, std::string_view token) {
    std::string out(parent);
    out += '/';
    detail::append_pointer_token(out, token);
    return out;
  }

  // -- Documents and resources --

  Status register_resource(const std::string& uri, std::uint32_t index) {
    auto [it, inserted] = resource_by_uri_.emplace(uri, index);
    if (!inserted && it->second != index) {
      // Two schemas claiming one URI would make "$ref" ambiguous.
      return schema_error(resources_[index].location,
                          fmt::format("duplicate schema resource URI '{}'", uri));
    }
    return {};
  }

  // Records ids, anchors, locations and dialects of every subschema of a document.
  Status scan_document(const Json* root, const std::string& retrieval_uri,
                       const std::string& location_prefix) {
    struct Item {
      const Json* node;
      std::string base;
      std::uint32_t resource;
      std::uint32_t vocabularies;
      std::string location;
    };
    std::uint32_t root_vocabularies = kDefaultVocabularies;
    std::vector<Item> stack;
    stack.push_back({root, retrieval_uri, kNoNode, root_vocabularies, location_prefix});
    while (!stack.empty()) {
      Item item = std::move(stack.back());
      stack.pop_back();
      const Json* node = item.node;
      if (node_info_.contains(node)) continue;
      std::uint32_t resource = item.resource;
      std::string base = item.base;
      std::uint32_t vocabularies = item.vocabularies;
      const bool document_root = resource == kNoNode;
      if (node->is_object()) {
        const Json* id = node->find("$id");
        if (id != nullptr && !id->is_string()) {
          return schema_error(child_location(item.location, "$id"), "must be a string");
        }
        if (id != nullptr || document_root) {
          if (id != nullptr) {
            const auto [uri, fragment, has_fragment] = detail::split_fragment(id->as_string());
            if (!fragment.empty()) {
              return schema_error(child_location(item.location, "$id"),
                                  "must not contain a fragment (use $anchor to name a subschema)");
            }
            base = detail::resolve_uri(base, uri);
          }
          resources_.push_back(ResourceInfo{base, node, item.location, {}, {}, false, {}});
          const auto index = static_cast<std::uint32_t>(resources_.size() - 1);
          CIVICBUS_RETURN_IF_ERROR(register_resource(base, index));
          if (document_root && !retrieval_uri.empty() && retrieval_uri != base) {
            CIVICBUS_RETURN_IF_ERROR(register_resource(retrieval_uri, index));
          }
          resource = index;
          if (const Json* dialect = node->find("$schema")) {
            if (!dialect->is_string()) {
              return schema_error(child_location(item.location, "$schema"), "must be a string");
            }
            CIVICBUS_ASSIGN_OR_RETURN(
                vocabularies, dialect_vocabularies(dialect->as_string(),
                                                   child_location(item.location, "$schema")));
          }
        }
        for (std::string_view keyword : {"$anchor", "$dynamicAnchor"}) {
          const Json* anchor = node->find(keyword);
          if (anchor == nullptr) continue;
          if (!anchor->is_string() || !valid_anchor_name(anchor->as_string())) {
            return schema_error(child_location(item.location, keyword),
                                "must be a name such as \"address\" (a letter or '_', then "
                                "letters, digits, '-', '_' or '.')");
          }
          auto& anchors = keyword == "$anchor" ? resources_[resource].anchors
                                               : resources_[resource].dynamic_anchors;
          auto [it, inserted] = anchors.emplace(anchor->as_string(), node);
          if (!inserted && it->second != node) {
            return schema_error(child_location(item.location, keyword),
                                fmt::format("anchor '{}' is defined twice in resource '{}'",
                                            anchor->as_string(), resources_[resource].uri));
          }
        }
      }
      node_info_.emplace(node, NodeInfo{resource, vocabularies, item.location});
      if (!node->is_object()) continue;
      for (const auto& [key, value] : node->as_object()) {
        const std::string location = child_location(item.location, key);
        if (key == "additionalProperties" || key == "propertyNames" || key == "items" ||
            key == "contains" || key == "not" || key == "if" || key == "then" || key == "else" ||
            key == "unevaluatedItems" || key == "unevaluatedProperties" || key == "contentSchema") {
          stack.push_back({&value, base, resource, vocabularies, location});
        } else if (key == "allOf" || key == "anyOf" || key == "oneOf" || key == "prefixItems") {
          if (!value.is_array()) continue;
          for (std::size_t i = 0; i < value.as_array().size(); ++i) {
            stack.push_back({&value.as_array()[i], base, resource, vocabularies,
                             child_location(location, std::to_string(i))});
          }
        } else if (key == "$defs" || key == "properties" || key == "patternProperties" ||
                   key == "dependentSchemas") {
          if (!value.is_object()) continue;
          for (const auto& [name, sub] : value.as_object()) {
            stack.push_back({&sub, base, resource, vocabularies, child_location(location, name)});
          }
        }
      }
    }
    return {};
  }

  // The document with this absolute URI (no fragment): built in, or from the resolver.
  Result<const Json*> load_document(const std::string& uri) {
    if (auto it = loaded_.find(uri); it != loaded_.end()) return it->second;
    Json document;
    if (const std::string_view text = detail::builtin_metaschema_text(uri); !text.empty()) {
      CIVICBUS_ASSIGN_OR_RETURN(document, Json::parse(text));
    } else if (options_.resolver) {
      Result<Json> resolved = options_.resolver(uri);
      if (!resolved.ok()) {
        return Status(resolved.status().code(),
                      fmt::format("cannot load schema '{}': {}", uri, resolved.status().message()));
      }
      document = std::move(resolved).value();
    } else {
      return not_found(fmt::format(
          "schema '{}' is not known and no resolver was given to JsonSchema::compile", uri));
    }
    out_.documents.push_back(std::move(document));
    const Json* root = &out_.documents.back();
    loaded_.emplace(uri, root);
    CIVICBUS_RETURN_IF_ERROR(scan_document(root, uri, uri + "#"));
    return root;
  }

  Result<std::uint32_t> dialect_vocabularies(std::string_view dialect, std::string_view location) {
    std::string_view uri = dialect;
    if (uri.ends_with('#')) uri.remove_suffix(1);
    if (uri == kDialect202012) return kDefaultVocabularies;
    if (const std::string_view draft = older_draft_name(uri); !draft.empty()) {
      return schema_error(location, fmt::format("the schema declares {} ($schema '{}'); civicbus "
                                                "validates draft 2020-12 only, so update the "
                                                "schema and its $schema",
                                                draft, dialect));
    }
    CIVICBUS_ASSIGN_OR_RETURN(const Json* meta, load_document(std::string(uri)));
    const Json* vocabulary = meta->find("$vocabulary");
    if (vocabulary == nullptr) return kDefaultVocabularies;
    if (!vocabulary->is_object()) {
      return schema_error(location,
                          fmt::format("meta-schema '{}' has a malformed $vocabulary", uri));
    }
    std::uint32_t bits = kVocabCore;
    for (const auto& [vocab_uri, required] : vocabulary->as_object()) {
      const std::uint32_t bit = vocabulary_bit(vocab_uri);
      if (bit == 0 && required.is_bool() && required.as_bool()) {
        return schema_error(location, fmt::format("meta-schema '{}' requires vocabulary '{}', "
                                                  "which civicbus does not implement",
                                                  uri, vocab_uri));
      }
      bits |= bit;
    }
    return bits;
  }

  // -- References --

  struct Target {
    const Json* node = nullptr;
    std::uint32_t resource = 0;
    std::string anchor;  // set when the fragment is a plain name
    bool dynamic_anchor = false;
  };

  Result<Target> resolve_reference(std::string_view reference, const std::string& base,
                                   std::string_view location) {
    const std::string full = detail::resolve_uri(base, reference);
    const auto [uri_view, fragment_raw, has_fragment] = detail::split_fragment(full);
    const std::string uri(uri_view);
    auto it = resource_by_uri_.find(uri);
    if (it == resource_by_uri_.end()) {
      Result<const Json*> loaded = load_document(uri);
      if (!loaded.ok()) {
        return Status(
            loaded.status().code(),
            fmt::format("cannot resolve reference '{}' at {}: {}", reference,
                        location.empty() ? "the root" : location, loaded.status().message()));
      }
      it = resource_by_uri_.find(uri);
      if (it == resource_by_uri_.end()) return internal_error("loaded schema was not registered");
    }
    Target target;
    target.resource = it->second;
    const ResourceInfo& resource = resources_[target.resource];
    const std::string fragment = detail::percent_decode(fragment_raw);
    if (fragment.empty()) {
      target.node = resource.root;
    } else if (fragment.front() == '/') {
      target.node = resource.root->at_pointer(fragment);
      if (target.node == nullptr) {
        return schema_error(location, fmt::format("reference '{}' points at nothing: '{}' has "
                                                  "no '{}'",
                                                  reference, resource.uri, fragment));
      }
      if (!node_info_.contains(target.node)) {
        // Not at a place where a schema is expected (e.g. inside an unknown keyword): treat
        // it as a schema of the resource it sits in.
        scan_subschema(target.node,
                       NodeInfo{target.resource, node_info_.at(resource.root).vocabularies,
                                resource.location + fragment});
      }
    } else {
      target.anchor = fragment;
      if (auto a = resource.anchors.find(fragment); a != resource.anchors.end()) {
        target.node = a->second;
      } else if (auto d = resource.dynamic_anchors.find(fragment);
                 d != resource.dynamic_anchors.end()) {
        target.node = d->second;
        target.dynamic_anchor = true;
      } else {
        return schema_error(location, fmt::format("reference '{}' names anchor '{}', which "
                                                  "schema '{}' does not define",
                                                  reference, fragment, resource.uri));
      }
    }
    return target;
  }

  // Records a subschema found by pointer outside the usual keyword positions, and what is
  // below it, as belonging to `info.resource`.
  void scan_subschema(const Json* node, const NodeInfo& info) {
    std::vector<std::pair<const Json*, std::string>> stack{{node, info.location}};
    while (!stack.empty()) {
      auto [n, location] = std::move(stack.back());
      stack.pop_back();
      if (node_info_.contains(n)) continue;
      node_info_.emplace(n, NodeInfo{info.resource, info.vocabularies, location});
      if (!n->is_object()) continue;
      for (const auto& [key, value] : n->as_object()) {
        if (value.is_object() || value.is_bool()) {
          stack.emplace_back(&value, child_location(location, key));
        }
      }
    }
  }

  // -- Nodes --

  std::uint32_t ensure_node(const Json* node) {
    if (auto it = compiled_.find(node); it != compiled_.end()) return it->second;
    const auto index = static_cast<std::uint32_t>(out_.nodes.size());
    out_.nodes.emplace_back();
    compiled_.emplace(node, index);
    worklist_.emplace_back(index, node);
    return index;
  }

  Result<std::uint32_t> subschema(const Json& value, std::string_view location) {
    if (!value.is_object() && !value.is_bool()) {
      return schema_error(location, "must be a schema (an object or a boolean)");
    }
    return ensure_node(&value);
  }

  Result<std::vector<std::uint32_t>> schema_array(const Json& value, std::string_view location) {
    if (!value.is_array() || value.as_array().empty()) {
      return schema_error(location, "must be a non-empty array of schemas");
    }
    std::vector<std::uint32_t> nodes;
    for (std::size_t i = 0; i < value.as_array().size(); ++i) {
      CIVICBUS_ASSIGN_OR_RETURN(
          std::uint32_t n,
          subschema(value.as_array()[i], child_location(location, std::to_string(i))));
      nodes.push_back(n);
    }
    return nodes;
  }

  Result<std::vector<std::string_view>> string_set(const Json& value, std::string_view location) {
    if (!value.is_array()) return schema_error(location, "must be an array of strings");
    std::vector<std::string_view> names;
    for (const Json& item : value.as_array()) {
      if (!item.is_string()) return schema_error(location, "must be an array of strings");
      if (std::find(names.begin(), names.end(), item.as_string()) != names.end()) {
        return schema_error(location, fmt::format("lists '{}' twice", item.as_string()));
      }
      names.push_back(item.as_string());
    }
    return names;
  }

  Result<detail::EcmaRegex> regex(const std::string& pattern, std::string_view location) {
    Result<detail::EcmaRegex> re = detail::EcmaRegex::compile(pattern);
    if (!re.ok()) {
      return schema_error(location,
                          fmt::format("pattern '{}': {}", pattern, re.status().message()));
    }
    return re;
  }

  Status compile_node(std::uint32_t index, const Json* node) {
    auto info_it = node_info_.find(node);
    if (info_it == node_info_.end()) return internal_error("schema node was not scanned");
    const NodeInfo info = info_it->second;
    SchemaNode result;
    result.resource = info.resource;
    result.location = info.location;
    if (node->is_bool()) {
      result.kind = node->as_bool() ? SchemaNode::Kind::kTrue : SchemaNode::Kind::kFalse;
      out_.nodes[index] = std::move(result);
      return {};
    }
    if (!node->is_object()) return schema_error(info.location, "must be an object or a boolean");
    result.kind = SchemaNode::Kind::kObject;

    ResourceInfo& resource = resources_[info.resource];
    if (!resource.dynamic_anchors_enqueued) {
      // Any resource whose schemas run can be in the dynamic scope of a $dynamicRef.
      resource.dynamic_anchors_enqueued = true;
      std::vector<std::pair<std::string, const Json*>> anchors(resource.dynamic_anchors.begin(),
                                                               resource.dynamic_anchors.end());
      std::sort(anchors.begin(), anchors.end());
      for (const auto& [name, anchor_node] : anchors) {
        const std::uint32_t n = ensure_node(anchor_node);
        resources_[info.resource].compiled_dynamic_anchors.emplace_back(name, n);
      }
    }
    const std::string base = resources_[info.resource].uri;
    const std::uint32_t vocab = info.vocabularies;
    const bool applicator = vocab & kVocabApplicator;
    const bool validation = vocab & kVocabValidation;
    const bool unevaluated = vocab & kVocabUnevaluated;
    const bool assert_format = options_.format_assertion || (vocab & kVocabFormatAssertion);

    std::vector<Keyword> keywords;
    std::vector<Keyword> last;  // unevaluated*: after everything they depend on
    auto add = [&](KeywordData data, std::string location) {
      keywords.push_back(Keyword{std::move(data), std::move(location)});
    };
    bool object_members_added = false;
    bool array_items_added = false;
    bool contains_added = false;
    bool if_added = false;

    for (const auto& [key, value] : node->as_object()) {
      const std::string loc = child_location(info.location, key);
      // Core.
      if (key == "$ref" || key == "$dynamicRef") {
        if (!value.is_string()) return schema_error(loc, "must be a URI reference string");
        CIVICBUS_ASSIGN_OR_RETURN(Target target, resolve_reference(value.as_string(), base, loc));
        const std::uint32_t n = ensure_node(target.node);
        // A $dynamicRef is dynamic only when its initial target is a $dynamicAnchor of the
        // same name (the "bookend"); otherwise it is an ordinary $ref.
        if (key == "$dynamicRef" && !target.anchor.empty() &&
            resources_[target.resource].dynamic_anchors.contains(target.anchor)) {
          add(DynamicRefKw{n, target.anchor}, loc);
        } else {
          add(RefKw{n}, loc);
        }
      } else if (key == "$defs") {
        if (!value.is_object()) return schema_error(loc, "must be an object of schemas");
        for (const auto& [name, def] : value.as_object()) {
          CIVICBUS_RETURN_IF_ERROR(subschema(def, child_location(loc, name)).status());
        }
      } else if (key == "$vocabulary") {
        if (!value.is_object()) return schema_error(loc, "must be an object");
      } else if (applicator && (key == "properties" || key == "patternProperties" ||
                                key == "additionalProperties")) {
        if (object_members_added) continue;
        object_members_added = true;
        ObjectMembersKw kw;
        if (const Json* properties = node->find("properties")) {
          const std::string ploc = child_location(info.location, "properties");
          if (!properties->is_object()) return schema_error(ploc, "must be an object of schemas");
          for (const auto& [name, sub] : properties->as_object()) {
            CIVICBUS_ASSIGN_OR_RETURN(std::uint32_t n, subschema(sub, child_location(ploc, name)));
            kw.properties.emplace_back(name, n);
          }
          if (kw.properties.size() > kLinearPropertyLimit) {
            for (const auto& [name, n] : kw.properties) kw.property_index.emplace(name, n);
          }
        }
        if (const Json* patterns = node->find("patternProperties")) {
          const std::string ploc = child_location(info.location, "patternProperties");
          if (!patterns->is_object()) return schema_error(ploc, "must be an object of schemas");
          for (const auto& [pattern, sub] : patterns->as_object()) {
            const std::string sloc = child_location(ploc, pattern);
            CIVICBUS_ASSIGN_OR_RETURN(detail::EcmaRegex re, regex(pattern, sloc));
            CIVICBUS_ASSIGN_OR_RETURN(std::uint32_t n, subschema(sub, sloc));
            kw.patterns.emplace_back(std::move(re), n);
          }
        }
        if (const Json* additional = node->find("additionalProperties")) {
          kw.additional_location = child_location(info.location, "additionalProperties");
          CIVICBUS_ASSIGN_OR_RETURN(kw.additional, subschema(*additional, kw.additional_location));
        }
        add(std::move(kw), loc);
      } else if (applicator && (key == "prefixItems" || key == "items")) {
        if (array_items_added) continue;
        array_items_added = true;
        ArrayItemsKw kw;
        if (const Json* prefix = node->find("prefixItems")) {
          CIVICBUS_ASSIGN_OR_RETURN(
              kw.prefix, schema_array(*prefix, child_location(info.location, "prefixItems")));
        }
        if (const Json* items = node->find("items")) {
          kw.items_location = child_location(info.location, "items");
          if (items->is_array()) {
            return schema_error(kw.items_location,
                                "must be a schema; an array of schemas is 'prefixItems' in draft "
                                "2020-12");
          }
          CIVICBUS_ASSIGN_OR_RETURN(kw.items, subschema(*items, kw.items_location));
        }
        add(std::move(kw), loc);
      } else if (key == "contains" || key == "minContains" || key == "maxContains") {
        if (contains_added) continue;
        const Json* contains = node->find("contains");
        if (!applicator || contains == nullptr) {
          // minContains/maxContains without contains do nothing, but must still be counts.
          std::size_t ignored = 0;
          if (validation && key != "contains" && !read_count(value, ignored)) {
            return schema_error(loc, "must be a non-negative integer");
          }
          continue;
        }
        contains_added = true;
        ContainsKw kw;
        const std::string cloc = child_location(info.location, "contains");
        CIVICBUS_ASSIGN_OR_RETURN(kw.node, subschema(*contains, cloc));
        if (validation) {
          if (const Json* min = node->find("minContains")) {
            kw.min_location = child_location(info.location, "minContains");
            if (!read_count(*min, kw.min)) {
              return schema_error(kw.min_location, "must be a non-negative integer");
            }
          }
          if (const Json* max = node->find("maxContains")) {
            kw.max_location = child_location(info.location, "maxContains");
            if (!read_count(*max, kw.max)) {
              return schema_error(kw.max_location, "must be a non-negative integer");
            }
          }
        }
        add(std::move(kw), cloc);
      } else if (applicator && key == "propertyNames") {
        CIVICBUS_ASSIGN_OR_RETURN(std::uint32_t n, subschema(value, loc));
        add(PropertyNamesKw{n}, loc);
      } else if (applicator && key == "dependentSchemas") {
        if (!value.is_object()) return schema_error(loc, "must be an object of schemas");
        DependentSchemasKw kw;
        for (const auto& [name, sub] : value.as_object()) {
          CIVICBUS_ASSIGN_OR_RETURN(std::uint32_t n, subschema(sub, child_location(loc, name)));
          kw.dependencies.emplace_back(name, n);
        }
        add(std::move(kw), loc);
      } else if (applicator && (key == "allOf" || key == "anyOf" || key == "oneOf")) {
        CIVICBUS_ASSIGN_OR_RETURN(std::vector<std::uint32_t> nodes, schema_array(value, loc));
        if (key == "allOf") {
          add(AllOfKw{std::move(nodes)}, loc);
        } else if (key == "anyOf") {
          add(AnyOfKw{std::move(nodes)}, loc);
        } else {
          add(OneOfKw{std::move(nodes)}, loc);
        }
      } else if (applicator && key == "not") {
        CIVICBUS_ASSIGN_OR_RETURN(std::uint32_t n, subschema(value, loc));
        add(NotKw{n}, loc);
      } else if (applicator && (key == "if" || key == "then" || key == "else")) {
        // then/else are compiled (and checked) even without if, but only if applies them.
        CIVICBUS_ASSIGN_OR_RETURN(std::uint32_t n, subschema(value, loc));
        if (if_added || node->find("if") == nullptr) continue;
        if_added = true;
        IfKw kw{kNoNode};
        const Json* condition = node->find("if");
        const std::string if_loc = child_location(info.location, "if");
        CIVICBUS_ASSIGN_OR_RETURN(kw.condition, subschema(*condition, if_loc));
        if (const Json* then_schema = node->find("then")) {
          CIVICBUS_ASSIGN_OR_RETURN(kw.then_node,
                                    subschema(*then_schema, child_location(info.location, "then")));
        }
        if (const Json* else_schema = node->find("else")) {
          CIVICBUS_ASSIGN_OR_RETURN(kw.else_node,
                                    subschema(*else_schema, child_location(info.location, "else")));
        }
        (void)n;
        add(std::move(kw), if_loc);
      } else if (unevaluated && key == "unevaluatedProperties") {
        CIVICBUS_ASSIGN_OR_RETURN(std::uint32_t n, subschema(value, loc));
        last.push_back(Keyword{UnevaluatedPropertiesKw{n}, loc});
      } else if (unevaluated && key == "unevaluatedItems") {
        CIVICBUS_ASSIGN_OR_RETURN(std::uint32_t n, subschema(value, loc));
        last.push_back(Keyword{UnevaluatedItemsKw{n}, loc});
      } else if (validation && key == "type") {
        std::uint8_t mask = 0;
        auto add_type = [&](const Json& name) {
          const std::uint8_t bit = name.is_string() ? type_bit(name.as_string()) : 0;
          if (bit == 0 || (mask & bit)) return false;
          mask |= bit;
          return true;
        };
        bool ok = value.is_string() ? add_type(value) : value.is_array();
        if (value.is_array()) {
          for (const Json& name : value.as_array()) ok = ok && add_type(name);
        }
        if (!ok) {
          return schema_error(loc,
                              "must be a type name (null, boolean, object, array, number, "
                              "string, integer) or an array of distinct type names");
        }
        // "type" goes first: it is the cheapest check and the clearest error.
        keywords.insert(keywords.begin(), Keyword{TypeKw{mask}, loc});
      } else if (validation && key == "const") {
        add(ConstKw{&value}, loc);
      } else if (validation && key == "enum") {
        if (!value.is_array()) return schema_error(loc, "must be an array");
        EnumKw kw{&value.as_array(), {}};
        for (const Json& option : value.as_array()) {
          if (option.is_string()) kw.strings.insert(option.as_string());
        }
        add(std::move(kw), loc);
      } else if (validation && key == "multipleOf") {
        if (!value.is_number() || value.as_double() <= 0) {
          return schema_error(loc, "must be a number greater than 0");
        }
        add(MultipleOfKw{value}, loc);
      } else if (validation && (key == "minimum" || key == "maximum" || key == "exclusiveMinimum" ||
                                key == "exclusiveMaximum")) {
        if (!value.is_number()) return schema_error(loc, "must be a number");
        const BoundKw::Kind kind = key == "minimum"            ? BoundKw::Kind::kMinimum
                                   : key == "maximum"          ? BoundKw::Kind::kMaximum
                                   : key == "exclusiveMinimum" ? BoundKw::Kind::kExclusiveMinimum
                                                               : BoundKw::Kind::kExclusiveMaximum;
        add(BoundKw{kind, value}, loc);
      } else if (validation && (key == "minLength" || key == "maxLength")) {
        std::size_t limit = 0;
        if (!read_count(value, limit)) return schema_error(loc, "must be a non-negative integer");
        add(LengthKw{limit, key == "maxLength"}, loc);
      } else if (validation && key == "pattern") {
        if (!value.is_string()) return schema_error(loc, "must be a regular expression string");
        CIVICBUS_ASSIGN_OR_RETURN(detail::EcmaRegex re, regex(value.as_string(), loc));
        add(PatternKw{std::move(re)}, loc);
      } else if (validation && (key == "minItems" || key == "maxItems")) {
        std::size_t limit = 0;
        if (!read_count(value, limit)) return schema_error(loc, "must be a non-negative integer");
        add(ItemCountKw{limit, key == "maxItems"}, loc);
      } else if (validation && key == "uniqueItems") {
        if (!value.is_bool()) return schema_error(loc, "must be a boolean");
        if (value.as_bool()) add(UniqueItemsKw{}, loc);
      } else if (validation && (key == "minProperties" || key == "maxProperties")) {
        std::size_t limit = 0;
        if (!read_count(value, limit)) return schema_error(loc, "must be a non-negative integer");
        add(PropertyCountKw{limit, key == "maxProperties"}, loc);
      } else if (validation && key == "required") {
        CIVICBUS_ASSIGN_OR_RETURN(std::vector<std::string_view> names, string_set(value, loc));
        if (!names.empty()) add(RequiredKw{std::move(names)}, loc);
      } else if (validation && key == "dependentRequired") {
        if (!value.is_object()) return schema_error(loc, "must be an object of string arrays");
        DependentRequiredKw kw;
        for (const auto& [name, list] : value.as_object()) {
          CIVICBUS_ASSIGN_OR_RETURN(std::vector<std::string_view> names,
                                    string_set(list, child_location(loc, name)));
          kw.dependencies.emplace_back(name, std::move(names));
        }
        add(std::move(kw), loc);
      } else if (key == "format") {
        if (!value.is_string()) return schema_error(loc, "must be a string");
        if (assert_format && detail::is_known_format(value.as_string())) {
          add(FormatKw{value.as_string()}, loc);
        }
      } else if (key == "contentSchema") {
        // Annotation only (draft 2020-12 §8.5), but it must still be a schema.
        CIVICBUS_RETURN_IF_ERROR(subschema(value, loc).status());
      }
      // Anything else is an annotation or an unknown keyword: ignored, as the spec requires.
    }
    result.has_unevaluated = !last.empty();
    for (Keyword& kw : last) keywords.push_back(std::move(kw));
    result.keywords = std::move(keywords);
    out_.nodes[index] = std::move(result);
    return {};
  }

  JsonSchema::Compiled& out_;
  const JsonSchema::Options& options_;
  std::vector<ResourceInfo> resources_;
  std::unordered_map<std::string, std::uint32_t> resource_by_uri_;
  std::unordered_map<std::string, const Json*> loaded_;
  std::unordered_map<const Json*, NodeInfo> node_info_;
  std::unordered_map<const Json*, std::uint32_t> compiled_;
  std::vector<std::pair<std::uint32_t, const Json*>> worklist_;
};

// ---- Evaluating -------------------------------------------------------------------------

// Which members (by index) and items an in-place group of schemas evaluated, for
// unevaluatedProperties and unevaluatedItems.
struct Annotations {
  std::vector<bool> members;
  std::vector<bool> items;

  void mark_member(std::size_t i, std::size_t count) {
    if (members.size() < count) members.resize(count);
    members[i] = true;
  }
  void mark_item(std::size_t i, std::size_t count) {
    if (items.size() < count) items.resize(count);
    items[i] = true;
  }
  bool member(std::size_t i) const { return i < members.size() && members[i]; }
  bool item(std::size_t i) const { return i < items.size() && items[i]; }
  void merge(const Annotations& other) {
    if (members.size() < other.members.size()) members.resize(other.members.size());
    for (std::size_t i = 0; i < other.members.size(); ++i) {
      if (other.members[i]) members[i] = true;
    }
    if (items.size() < other.items.size()) items.resize(other.items.size());
    for (std::size_t i = 0; i < other.items.size(); ++i) {
      if (other.items[i]) items[i] = true;
    }
  }
};

class Evaluator {
 public:
  // `root` is the instance the validation started from (sizes the work budget).
  Evaluator(const JsonSchema::Compiled& compiled, std::vector<SchemaError>* errors,
            const Json& root)
      : c_(compiled), errors_(errors), root_(root) {}

  bool evaluate(std::uint32_t index, const Json& instance, Annotations* annotations) {
    // Once a limit is hit the whole validation fails: every later call returns at once, so
    // that anyOf/oneOf branches do not retry the same runaway $ref (exponential time with two
    // branches) and "not" cannot turn the abandoned branch into a success.
    if (abandoned_) return false;
    const SchemaNode& node = c_.nodes[index];
    if (node.kind == SchemaNode::Kind::kTrue) return true;
    if (node.kind == SchemaNode::Kind::kFalse) {
      report(node.location, "no value is allowed here (the schema is false)");
      return false;
    }
    if (depth_ >= kMaxEvaluationDepth) {
      abandoned_ = SchemaError{
          "", node.location,
          fmt::format("validation nested deeper than {} schemas (a $ref cycle that never moves "
                      "into the instance?)",
                      kMaxEvaluationDepth)};
      return false;
    }
    if (++evaluations_ > budget_ && !raise_budget()) {
      abandoned_ = SchemaError{
          "", node.location,
          fmt::format("validation gave up after {} schema evaluations on an instance of size {} "
                      "(does the schema reach the same subschemas along very many paths, e.g. "
                      "nested anyOf/oneOf/allOf of $refs?)",
                      evaluations_ - 1, count_values(root_))};
      return false;
    }
    ++depth_;
    const bool new_scope = scope_.empty() || scope_.back() != node.resource;
    if (new_scope) scope_.push_back(node.resource);
    // A schema with unevaluated* sees only its own and its in-place subschemas' annotations.
    std::optional<Annotations> local;
    Annotations* target = annotations;
    if (node.has_unevaluated) target = &local.emplace();
    bool valid = true;
    for (const Keyword& keyword : node.keywords) {
      const bool ok = std::visit(
          [&](const auto& kw) { return apply(kw, keyword, instance, target); }, keyword.data);
      if (!ok) {
        valid = false;
        if (!collecting() || full()) break;
      }
      if (abandoned_) break;
    }
    valid = valid && !abandoned_;
    if (valid && node.has_unevaluated && annotations != nullptr) annotations->merge(*local);
    if (new_scope) scope_.pop_back();
    --depth_;
    return valid;
  }

  // Set when evaluation was abandoned at the depth limit or the work budget; the result is
  // then "invalid" and this is the one error worth reporting (the others are artefacts of the
  // abandonment).
  const std::optional<SchemaError>& abandoned() const { return abandoned_; }

 private:
  // Values in `root`, object member names included (propertyNames evaluates those).
  static std::uint64_t count_values(const Json& root) {
    std::uint64_t count = 0;
    std::vector<const Json*> stack{&root};
    while (!stack.empty()) {
      const Json* v = stack.back();
      stack.pop_back();
      ++count;
      if (v->is_array()) {
        for (const Json& item : v->as_array()) stack.push_back(&item);
      } else if (v->is_object()) {
        for (const auto& member : v->as_object()) {
          ++count;
          stack.push_back(&member.second);
        }
      }
    }
    return count;
  }

  // Called when the free evaluations are used up: sizes the budget from the schema and the
  // instance (once) and says whether any of it is left.
  bool raise_budget() {
    if (budget_raised_) return false;
    budget_raised_ = true;
    constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
    const std::uint64_t values = count_values(root_);
    const std::uint64_t nodes = std::max<std::uint64_t>(1, c_.nodes.size());
    const std::uint64_t pairs = values > kMax / nodes ? kMax : values * nodes;
    budget_ = std::max(kEvaluationsBeforeBudget,
                       pairs > kMax / kEvaluationsPerPair ? kMax : pairs * kEvaluationsPerPair);
    return evaluations_ <= budget_;
  }

  bool collecting() const { return errors_ != nullptr && speculative_ == 0; }
  bool full() const { return errors_->size() >= c_.max_errors; }

  void report(const std::string& keyword_location, std::string message) {
    if (!collecting() || full()) return;
    std::string instance_location;
    for (const auto& segment : path_) {
      instance_location += '/';
      if (segment.key != nullptr) {
        detail::append_pointer_token(instance_location, *segment.key);
      } else {
        instance_location += std::to_string(segment.index);
      }
    }
    errors_->push_back(
        SchemaError{std::move(instance_location), keyword_location, std::move(message)});
  }

  struct Segment {
    const std::string* key;
    std::size_t index;
  };
  // Extends the instance location while a child is evaluated (only when building errors).
  class PathScope {
   public:
    PathScope(Evaluator& e, const std::string* key, std::size_t index) : e_(e) {
      active_ = e.collecting();
      if (active_) e.path_.push_back(Segment{key, index});
    }
    ~PathScope() {
      if (active_) e_.path_.pop_back();
    }
    PathScope(const PathScope&) = delete;
    PathScope& operator=(const PathScope&) = delete;

   private:
    Evaluator& e_;
    bool active_;
  };

  bool child(std::uint32_t node, const Json& value, const std::string& key) {
    PathScope scope(*this, &key, 0);
    return evaluate(node, value, nullptr);
  }
  bool child(std::uint32_t node, const Json& value, std::size_t index) {
    PathScope scope(*this, nullptr, index);
    return evaluate(node, value, nullptr);
  }
  // Evaluates a subschema whose failure is not itself an error (anyOf branches, not, if,
  // contains): no errors are recorded and it stops at the first failure.
  bool probe(std::uint32_t node, const Json& value, Annotations* annotations) {
    ++speculative_;
    const bool ok = evaluate(node, value, annotations);
    --speculative_;
    return ok;
  }
  bool keep_going() const { return collecting() && !full(); }

  bool apply(const TypeKw& kw, const Keyword& k, const Json& v, Annotations*) {
    if (type_matches(kw.mask, v)) return true;
    report(k.location, fmt::format("expected {}, got {}", type_list(kw.mask), type_name(v)));
    return false;
  }

  bool apply(const ConstKw& kw, const Keyword& k, const Json& v, Annotations*) {
    if (v == *kw.value) return true;
    report(k.location, fmt::format("value must be {}", quoted(*kw.value)));
    return false;
  }

  bool apply(const EnumKw& kw, const Keyword& k, const Json& v, Annotations*) {
    if (v.is_string()) {
      if (kw.strings.contains(v.as_string())) return true;
    } else {
      for (const Json& option : *kw.values) {
        if (!option.is_string() && v == option) return true;
      }
    }
    report(k.location, fmt::format("{} is not one of {}", quoted(v), quoted(Json(*kw.values))));
    return false;
  }

  bool apply(const MultipleOfKw& kw, const Keyword& k, const Json& v, Annotations*) {
    if (!v.is_number() || is_multiple_of(v, kw.divisor)) return true;
    report(k.location, fmt::format("{} is not a multiple of {}", v.dump(), kw.divisor.dump()));
    return false;
  }

  bool apply(const BoundKw& kw, const Keyword& k, const Json& v, Annotations*) {
    if (!v.is_number()) return true;
    const int cmp = compare_numbers(v, kw.limit);
    std::string_view problem;
    switch (kw.kind) {
      case BoundKw::Kind::kMinimum:
        if (cmp >= 0) return true;
        problem = "is less than the minimum";
        break;
      case BoundKw::Kind::kMaximum:
        if (cmp <= 0) return true;
        problem = "is greater than the maximum";
        break;
      case BoundKw::Kind::kExclusiveMinimum:
        if (cmp > 0) return true;
        problem = "must be greater than";
        break;
      case BoundKw::Kind::kExclusiveMaximum:
        if (cmp < 0) return true;
        problem = "must be less than";
        break;
    }
    report(k.location, fmt::format("{} {} {}", v.dump(), problem, kw.limit.dump()));
    return false;
  }

  bool apply(const LengthKw& kw, const Keyword& k, const Json& v, Annotations*) {
    if (!v.is_string()) return true;
    const std::size_t length = detail::count_code_points(v.as_string());
    if (kw.is_max ? length <= kw.limit : length >= kw.limit) return true;
    report(k.location,
           fmt::format("string has {} characters, {} than the {} {}", length,
                       kw.is_max ? "more" : "fewer", kw.is_max ? "maximum" : "minimum", kw.limit));
    return false;
  }

  bool apply(const PatternKw& kw, const Keyword& k, const Json& v, Annotations*) {
    if (!v.is_string() || kw.regex.search(v.as_string())) return true;
    report(k.location, fmt::format("string does not match pattern '{}'", kw.regex.pattern()));
    return false;
  }

  bool apply(const FormatKw& kw, const Keyword& k, const Json& v, Annotations*) {
    if (!v.is_string() || detail::format_matches(kw.format, v.as_string())) return true;
    report(k.location, fmt::format("{} is not a valid {}", quoted(v), kw.format));
    return false;
  }

  bool apply(const ArrayItemsKw& kw, const Keyword& k, const Json& v, Annotations* ann) {
    if (!v.is_array()) return true;
    const Json::Array& items = v.as_array();
    bool valid = true;
    const std::size_t prefix = std::min(kw.prefix.size(), items.size());
    for (std::size_t i = 0; i < prefix; ++i) {
      if (!child(kw.prefix[i], items[i], i)) {
        valid = false;
        if (!keep_going()) return false;
      }
      if (ann != nullptr) ann->mark_item(i, items.size());
    }
    if (kw.items == kNoNode) return valid;
    const bool none_allowed = c_.nodes[kw.items].kind == SchemaNode::Kind::kFalse;
    for (std::size_t i = kw.prefix.size(); i < items.size(); ++i) {
      if (none_allowed) {
        PathScope scope(*this, nullptr, i);
        report(kw.items_location,
               kw.prefix.empty()
                   ? std::string("the array must be empty (items is false)")
                   : fmt::format("the array may have at most {} items (items is false after "
                                 "prefixItems)",
                                 kw.prefix.size()));
        (void)k;
        return false;
      }
      if (!child(kw.items, items[i], i)) {
        valid = false;
        if (!keep_going()) return false;
      }
      if (ann != nullptr) ann->mark_item(i, items.size());
    }
    return valid;
  }

  bool apply(const ContainsKw& kw, const Keyword& k, const Json& v, Annotations* ann) {
    if (!v.is_array()) return true;
    const Json::Array& items = v.as_array();
    const bool need_all = ann != nullptr || kw.max != std::numeric_limits<std::size_t>::max();
    std::size_t count = 0;
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (!probe(kw.node, items[i], nullptr)) continue;
      ++count;
      if (ann != nullptr) ann->mark_item(i, items.size());
      if (!need_all && count >= kw.min) break;
    }
    if (count < kw.min) {
      if (kw.min == 1 && kw.min_location.empty()) {
        report(k.location, "the array has no item that matches 'contains'");
      } else {
        report(kw.min_location, fmt::format("the array has {} items that match 'contains', fewer "
                                            "than minContains {}",
                                            count, kw.min));
      }
      return false;
    }
    if (count > kw.max) {
      report(kw.max_location, fmt::format("the array has {} items that match 'contains', more "
                                          "than maxContains {}",
                                          count, kw.max));
      return false;
    }
    return true;
  }

  bool apply(const ItemCountKw& kw, const Keyword& k, const Json& v, Annotations*) {
    if (!v.is_array()) return true;
    const std::size_t n = v.as_array().size();
    if (kw.is_max ? n <= kw.limit : n >= kw.limit) return true;
    report(k.location,
           fmt::format("the array has {} items, {} than the {} {}", n, kw.is_max ? "more" : "fewer",
                       kw.is_max ? "maximum" : "minimum", kw.limit));
    return false;
  }

  bool apply(const UniqueItemsKw&, const Keyword& k, const Json& v, Annotations*) {
    if (!v.is_array()) return true;
    const auto [first, second] = find_duplicate(v.as_array());
    if (first == std::numeric_limits<std::size_t>::max()) return true;
    report(k.location,
           fmt::format("items {} and {} are equal, but items must be unique", first, second));
    return false;
  }

  bool apply(const ObjectMembersKw& kw, const Keyword&, const Json& v, Annotations* ann) {
    if (!v.is_object()) return true;
    const Json::Object& members = v.as_object();
    bool valid = true;
    for (std::size_t i = 0; i < members.size(); ++i) {
      const auto& [key, value] = members[i];
      bool matched = false;
      if (const std::uint32_t p = kw.find_property(key); p != kNoNode) {
        matched = true;
        if (!child(p, value, key)) {
          valid = false;
          if (!keep_going()) return false;
        }
      }
      for (const auto& [re, node] : kw.patterns) {
        if (!re.search(key)) continue;
        matched = true;
        if (!child(node, value, key)) {
          valid = false;
          if (!keep_going()) return false;
        }
      }
      if (!matched && kw.additional != kNoNode) {
        matched = true;
        if (c_.nodes[kw.additional].kind == SchemaNode::Kind::kFalse) {
          PathScope scope(*this, &key, 0);
          report(kw.additional_location,
                 fmt::format("property '{}' is not allowed (additionalProperties is false)", key));
          valid = false;
          if (!keep_going()) return false;
        } else if (!child(kw.additional, value, key)) {
          valid = false;
          if (!keep_going()) return false;
        }
      }
      if (matched && ann != nullptr) ann->mark_member(i, members.size());
    }
    return valid;
  }

  bool apply(const PropertyNamesKw& kw, const Keyword& k, const Json& v, Annotations*) {
    if (!v.is_object()) return true;
    bool valid = true;
    for (const auto& [key, value] : v.as_object()) {
      if (probe(kw.node, Json(key), nullptr)) continue;
      PathScope scope(*this, &key, 0);
      report(k.location, fmt::format("property name '{}' does not match propertyNames", key));
      valid = false;
      if (!keep_going()) return false;
    }
    return valid;
  }

  bool apply(const PropertyCountKw& kw, const Keyword& k, const Json& v, Annotations*) {
    if (!v.is_object()) return true;
    const std::size_t n = v.as_object().size();
    if (kw.is_max ? n <= kw.limit : n >= kw.limit) return true;
    report(k.location,
           fmt::format("the object has {} properties, {} than the {} {}", n,
                       kw.is_max ? "more" : "fewer", kw.is_max ? "maximum" : "minimum", kw.limit));
    return false;
  }

  bool apply(const RequiredKw& kw, const Keyword& k, const Json& v, Annotations*) {
    if (!v.is_object()) return true;
    bool valid = true;
    for (std::string_view name : kw.names) {
      if (v.find(name) != nullptr) continue;
      report(k.location, fmt::format("required property '{}' is missing", name));
      valid = false;
      if (!keep_going()) return false;
    }
    return valid;
  }

  bool apply(const DependentRequiredKw& kw, const Keyword& k, const Json& v, Annotations*) {
    if (!v.is_object()) return true;
    bool valid = true;
    for (const auto& [trigger, names] : kw.dependencies) {
      if (v.find(trigger) == nullptr) continue;
      for (std::string_view name : names) {
        if (v.find(name) != nullptr) continue;
        report(k.location, fmt::format("property '{}' requires property '{}'", trigger, name));
        valid = false;
        if (!keep_going()) return false;
      }
    }
    return valid;
  }

  bool apply(const DependentSchemasKw& kw, const Keyword&, const Json& v, Annotations* ann) {
    if (!v.is_object()) return true;
    bool valid = true;
    for (const auto& [trigger, node] : kw.dependencies) {
      if (v.find(trigger) == nullptr) continue;
      if (!evaluate(node, v, ann)) {
        valid = false;
        if (!keep_going()) return false;
      }
    }
    return valid;
  }

  bool apply(const AllOfKw& kw, const Keyword&, const Json& v, Annotations* ann) {
    bool valid = true;
    for (std::uint32_t node : kw.nodes) {
      if (!evaluate(node, v, ann)) {
        valid = false;
        if (!keep_going()) return false;
      }
    }
    return valid;
  }

  bool apply(const AnyOfKw& kw, const Keyword& k, const Json& v, Annotations* ann) {
    bool any = false;
    for (std::uint32_t node : kw.nodes) {
      if (ann == nullptr) {
        if (probe(node, v, nullptr)) return true;
        continue;
      }
      // Every valid branch contributes annotations, so all branches run.
      Annotations branch;
      if (probe(node, v, &branch)) {
        any = true;
        ann->merge(branch);
      }
    }
    if (any) return true;
    report(k.location,
           fmt::format("value does not match any of the {} schemas in anyOf", kw.nodes.size()));
    return false;
  }

  bool apply(const OneOfKw& kw, const Keyword& k, const Json& v, Annotations* ann) {
    std::vector<std::size_t> matches;
    Annotations matched;
    for (std::size_t i = 0; i < kw.nodes.size(); ++i) {
      Annotations branch;
      if (!probe(kw.nodes[i], v, ann != nullptr ? &branch : nullptr)) continue;
      matches.push_back(i);
      if (matches.size() > 1) break;
      if (ann != nullptr) matched = std::move(branch);
    }
    if (matches.size() == 1) {
      if (ann != nullptr) ann->merge(matched);
      return true;
    }
    if (matches.empty()) {
      report(k.location,
             fmt::format("value does not match any of the {} schemas in oneOf", kw.nodes.size()));
    } else {
      report(k.location, fmt::format("value matches more than one schema in oneOf (at least "
                                     "{} and {})",
                                     matches[0], matches[1]));
    }
    return false;
  }

  bool apply(const NotKw& kw, const Keyword& k, const Json& v, Annotations*) {
    if (!probe(kw.node, v, nullptr)) return true;
    report(k.location, "value must not match the schema in 'not'");
    return false;
  }

  bool apply(const IfKw& kw, const Keyword&, const Json& v, Annotations* ann) {
    Annotations condition;
    if (probe(kw.condition, v, ann != nullptr ? &condition : nullptr)) {
      if (ann != nullptr) ann->merge(condition);
      return kw.then_node == kNoNode || evaluate(kw.then_node, v, ann);
    }
    return kw.else_node == kNoNode || evaluate(kw.else_node, v, ann);
  }

  bool apply(const RefKw& kw, const Keyword&, const Json& v, Annotations* ann) {
    return evaluate(kw.node, v, ann);
  }

  bool apply(const DynamicRefKw& kw, const Keyword&, const Json& v, Annotations* ann) {
    // The outermost resource in the dynamic scope that has a $dynamicAnchor of this name.
    for (std::uint32_t resource : scope_) {
      for (const auto& [name, node] : c_.resources[resource].dynamic_anchors) {
        if (name == kw.anchor) return evaluate(node, v, ann);
      }
    }
    return evaluate(kw.initial, v, ann);
  }

  bool apply(const UnevaluatedPropertiesKw& kw, const Keyword& k, const Json& v, Annotations* ann) {
    if (!v.is_object()) return true;
    const Json::Object& members = v.as_object();
    const bool none_allowed = c_.nodes[kw.node].kind == SchemaNode::Kind::kFalse;
    bool valid = true;
    for (std::size_t i = 0; i < members.size(); ++i) {
      if (ann->member(i)) continue;
      const auto& [key, value] = members[i];
      if (none_allowed) {
        PathScope scope(*this, &key, 0);
        report(k.location, fmt::format("property '{}' is not allowed (unevaluatedProperties is "
                                       "false and no other keyword covers it)",
                                       key));
        valid = false;
        if (!keep_going()) return false;
        continue;
      }
      if (!child(kw.node, value, key)) {
        valid = false;
        if (!keep_going()) return false;
      }
      ann->mark_member(i, members.size());
    }
    return valid;
  }

  bool apply(const UnevaluatedItemsKw& kw, const Keyword& k, const Json& v, Annotations* ann) {
    if (!v.is_array()) return true;
    const Json::Array& items = v.as_array();
    const bool none_allowed = c_.nodes[kw.node].kind == SchemaNode::Kind::kFalse;
    bool valid = true;
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (ann->item(i)) continue;
      if (none_allowed) {
        PathScope scope(*this, nullptr, i);
        report(k.location, fmt::format("item {} is not allowed (unevaluatedItems is false and no "
                                       "other keyword covers it)",
                                       i));
        valid = false;
        if (!keep_going()) return false;
        continue;
      }
      if (!child(kw.node, items[i], i)) {
        valid = false;
        if (!keep_going()) return false;
      }
      ann->mark_item(i, items.size());
    }
    return valid;
  }

  const JsonSchema::Compiled& c_;
  std::vector<SchemaError>* errors_;
  std::vector<std::uint32_t> scope_;  // dynamic scope: resources entered, outermost first
  std::vector<Segment> path_;
  int depth_ = 0;
  int speculative_ = 0;
  const Json& root_;
  std::uint64_t evaluations_ = 0;
  std::uint64_t budget_ = kEvaluationsBeforeBudget;
  bool budget_raised_ = false;
  std::optional<SchemaError> abandoned_;
};

}  // namespace

Result<JsonSchema> JsonSchema::compile(const Json& schema, Options options) {
  auto compiled = std::make_shared<Compiled>();
  Compiler compiler(*compiled, options);
  CIVICBUS_RETURN_IF_ERROR(compiler.compile(schema));
  return JsonSchema(std::move(compiled));
}

bool JsonSchema::is_valid(const Json& instance) const {
  Evaluator evaluator(*compiled_, nullptr, instance);
  return evaluator.evaluate(compiled_->root, instance, nullptr);
}

std::vector<SchemaError> JsonSchema::errors(const Json& instance) const {
  std::vector<SchemaError> errors;
  Evaluator evaluator(*compiled_, &errors, instance);
  const bool valid = evaluator.evaluate(compiled_->root, instance, nullptr);
  if (evaluator.abandoned()) return {*evaluator.abandoned()};
  if (!valid && errors.empty()) {
    // Cannot happen (every failing keyword reports), but an invalid instance must never come
    // back with an empty list.
    errors.push_back(SchemaError{"", "", "the value does not match the schema"});
  }
  return errors;
}

Status JsonSchema::validate(const Json& instance) const {
  if (is_valid(instance)) return {};
  const std::vector<SchemaError> list = errors(instance);
  std::string message;
  for (const SchemaError& e : list) {
    if (!message.empty()) message += "; ";
    message += fmt::format("at {}: {} (schema {})",
                           e.instance_location.empty() ? "the root" : e.instance_location,
                           e.message, e.keyword_location.empty() ? "root" : e.keyword_location);
  }
  return invalid_argument(std::move(message));
}

const Json& JsonSchema::document() const {
  return compiled_->documents.front();
}

}  // namespace civicbus
