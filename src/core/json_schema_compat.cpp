#include "civicbus/core/json_schema_compat.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>
#include <string>

#include "core/uri_reference.hpp"

namespace civicbus {
namespace {

constexpr int kMaxDepth = 64;

// Keywords that only annotate: they never change which instances are valid.
const std::set<std::string_view> kAnnotations = {"$schema",         "$id",
                                                 "$comment",        "$defs",
                                                 "definitions",     "title",
                                                 "description",     "default",
                                                 "examples",        "deprecated",
                                                 "readOnly",        "writeOnly",
                                                 "$anchor",         "contentMediaType",
                                                 "contentEncoding", "contentSchema"};

// Keywords this checker reasons about structurally.
const std::set<std::string_view> kUnderstood = {"type",
                                                "enum",
                                                "const",
                                                "minimum",
                                                "maximum",
                                                "exclusiveMinimum",
                                                "exclusiveMaximum",
                                                "multipleOf",
                                                "minLength",
                                                "maxLength",
                                                "pattern",
                                                "format",
                                                "properties",
                                                "required",
                                                "additionalProperties",
                                                "patternProperties",
                                                "minProperties",
                                                "maxProperties",
                                                "items",
                                                "prefixItems",
                                                "minItems",
                                                "maxItems",
                                                "uniqueItems",
                                                "$ref",
                                                "anyOf",
                                                "oneOf",
                                                "allOf"};

std::string escape_token(std::string_view s) {
  std::string out;
  detail::append_pointer_token(out, s);
  return out;
}

class Checker {
 public:
  Checker(const Json& root_a, const Json& root_b) : root_a_(root_a), root_b_(root_b) {}

  // Every instance of a (at path) is an instance of b.
  bool accepts(const Json& a_in, const Json& b_in, const std::string& path, int depth) {
    if (depth > kMaxDepth) return fail(path, "schemas nest too deeply (or recurse) to compare");
    const Json* a = resolve(a_in, root_a_);
    const Json* b = resolve(b_in, root_b_);
    if (a == nullptr || b == nullptr)
      return fail(path, "a $ref could not be resolved inside the document");
    if (is_true(*b)) return true;
    if (is_false(*a)) return true;
    if (*a == *b) return true;
    if (is_false(*b)) return fail(path, "the schema now rejects every value");
    if (!a->is_object() || !b->is_object()) return fail(path, "boolean schema changed");

    // Combinators on the narrower side: each alternative must be accepted.
    for (std::string_view k : {"anyOf", "oneOf"}) {
      if (const Json* alts = a->find(k); alts && alts->is_array() && !b->contains(k)) {
        Json rest = without(*a, k);
        for (std::size_t i = 0; i < alts->size(); ++i) {
          Json branch = merge(rest, alts->as_array()[i]);
          if (!accepts(branch, *b, fmt::format("{}/{}/{}", path, k, i), depth + 1)) return false;
        }
        return true;
      }
    }
    if (const Json* all = b->find("allOf"); all && all->is_array() && !a->contains("allOf")) {
      Json rest = without(*b, "allOf");
      if (!accepts(*a, rest, path, depth + 1)) return false;
      for (std::size_t i = 0; i < all->size(); ++i) {
        if (!accepts(*a, all->as_array()[i], fmt::format("{}/allOf/{}", path, i), depth + 1))
          return false;
      }
      return true;
    }
    if (const Json* any = b->find("anyOf"); any && any->is_array() && !a->contains("anyOf")) {
      Json rest = without(*b, "anyOf");
      if (!accepts(*a, rest, path, depth + 1)) return false;
      for (const auto& alt : any->as_array()) {
        Checker probe(root_a_, root_b_);
        if (probe.accepts(*a, alt, path, depth + 1)) return true;
      }
      return fail(path + "/anyOf",
                  "no alternative of the new anyOf accepts what the old schema allowed");
    }

    // Keywords neither side may change without proof.
    for (const auto& [key, value] : b->as_object()) {
      if (kAnnotations.count(key) || kUnderstood.count(key)) continue;
      const Json* other = a->find(key);
      if (other == nullptr || *other != value) {
        return fail(
            path + "/" + escape_token(key),
            fmt::format(
                "keyword '{}' was added or changed and its effect cannot be proven compatible",
                key));
      }
    }
    for (std::string_view k : {"allOf", "oneOf", "anyOf"}) {
      const Json* x = a->find(k);
      const Json* y = b->find(k);
      if (y != nullptr && (x == nullptr || *x != *y)) {
        return fail(path + "/" + std::string(k),
                    fmt::format("'{}' changed and cannot be proven compatible", k));
      }
    }
    return types(*a, *b, path) && enums(*a, *b, path, depth) && numbers(*a, *b, path) &&
           strings(*a, *b, path) && objects(*a, *b, path, depth) && arrays(*a, *b, path, depth);
  }

  const std::string& reason() const { return reason_; }

 private:
  static bool is_true(const Json& s) {
    return (s.is_bool() && s.as_bool()) || (s.is_object() && s.size() == 0);
  }
  static bool is_false(const Json& s) { return s.is_bool() && !s.as_bool(); }

  static Json without(const Json& s, std::string_view key) {
    Json copy = s;
    copy.erase(key);
    return copy;
  }
  static Json merge(const Json& base, const Json& extra) {
    if (!extra.is_object()) return extra;
    Json out = base;
    for (const auto& [k, v] : extra.as_object()) out.set(k, v);
    return out;
  }

  // Follows local "$ref": "#/..." chains (only when $ref is the schema's only constraint or
  // alongside annotations).
  const Json* resolve(const Json& s, const Json& root) {
    const Json* cur = &s;
    for (int i = 0; i < 16 && cur->is_object(); ++i) {
      const Json* ref = cur->find("$ref");
      if (ref == nullptr) return cur;
      if (!ref->is_string() || ref->as_string().rfind("#", 0) != 0) return nullptr;
      const Json* target = root.at_pointer(std::string_view(ref->as_string()).substr(1));
      if (target == nullptr) return nullptr;
      cur = target;
    }
    return cur;
  }

  bool fail(const std::string& path, std::string why) {
    if (reason_.empty()) reason_ = fmt::format("{} at {}", why, path.empty() ? "/" : path);
    return false;
  }

  static std::set<std::string> type_set(const Json& s) {
    std::set<std::string> out;
    const Json* t = s.find("type");
    if (t == nullptr) return out;
    if (t->is_string()) out.insert(t->as_string());
    if (t->is_array()) {
      for (const auto& v : t->as_array()) {
        if (v.is_string()) out.insert(v.as_string());
      }
    }
    return out;
  }

  static std::string json_type_of(const Json& v) {
    switch (v.type()) {
      case Json::Type::kNull:
        return "null";
      case Json::Type::kBool:
        return "boolean";
      case Json::Type::kInt:
        return "integer";
      case Json::Type::kDouble:
        return v.is_integral() ? "integer" : "number";
      case Json::Type::kString:
        return "string";
      case Json::Type::kArray:
        return "array";
      case Json::Type::kObject:
        return "object";
    }
    return "null";
  }

  static bool type_allows(const std::set<std::string>& types, const std::string& t) {
    if (types.empty() || types.count(t)) return true;
    return t == "integer" && types.count("number");
  }

  bool types(const Json& a, const Json& b, const std::string& path) {
    auto tb = type_set(b);
    if (tb.empty()) return true;
    auto ta = type_set(a);
    if (ta.empty()) {
      if (const Json* e = a.find("enum"); e && e->is_array()) return true;  // checked by enums()
      if (a.contains("const")) return true;
      return fail(path + "/type",
                  fmt::format("the old schema allowed any type, the new one only {}",
                              Json(b.find("type")->dump()).as_string()));
    }
    for (const auto& t : ta) {
      if (!type_allows(tb, t)) {
        return fail(path + "/type", fmt::format("type '{}' is no longer allowed", t));
      }
    }
    return true;
  }

  bool enums(const Json& a, const Json& b, const std::string& path, int depth) {
    (void)depth;
    std::vector<Json> values_a;
    bool a_finite = false;
    if (const Json* e = a.find("enum"); e && e->is_array()) {
      values_a = e->as_array();
      a_finite = true;
    }
    if (const Json* c = a.find("const")) {
      values_a = {*c};
      a_finite = true;
    }
    std::vector<Json> values_b;
    bool b_finite = false;
    if (const Json* e = b.find("enum"); e && e->is_array()) {
      values_b = e->as_array();
      b_finite = true;
    }
    if (const Json* c = b.find("const")) {
      values_b = {*c};
      b_finite = true;
    }
    if (a_finite) {
      auto tb = type_set(b);
      for (const auto& v : values_a) {
        if (b_finite && std::find(values_b.begin(), values_b.end(), v) == values_b.end()) {
          return fail(path + "/enum", fmt::format("value {} is no longer allowed", v.dump()));
        }
        if (!type_allows(tb, json_type_of(v))) {
          return fail(path + "/type",
                      fmt::format("value {} no longer has an allowed type", v.dump()));
        }
      }
      return true;
    }
    if (b_finite)
      return fail(path + "/enum",
                  "the new schema restricts values to an enumeration the old one did not have");
    return true;
  }

  // For a bound where B's limit must be no tighter than A's: A must state a bound at least as
  // strict. `lower` says whether the bound is a minimum.
  bool bound(const Json& a, const Json& b, std::string_view key, bool lower,
             const std::string& path) {
    const Json* kb = b.find(key);
    if (kb == nullptr || !kb->is_number()) return true;
    const Json* ka = a.find(key);
    if (ka == nullptr || !ka->is_number()) {
      return fail(path + "/" + std::string(key), fmt::format("'{}' {} was added", key, kb->dump()));
    }
    double va = ka->as_double();
    double vb = kb->as_double();
    if (lower ? va < vb : va > vb) {
      return fail(path + "/" + std::string(key),
                  fmt::format("'{}' tightened from {} to {}", key, ka->dump(), kb->dump()));
    }
    return true;
  }

  bool numbers(const Json& a, const Json& b, const std::string& path) {
    if (!bound(a, b, "minimum", true, path) || !bound(a, b, "exclusiveMinimum", true, path) ||
        !bound(a, b, "maximum", false, path) || !bound(a, b, "exclusiveMaximum", false, path)) {
      return false;
    }
    if (const Json* mb = b.find("multipleOf"); mb && mb->is_number()) {
      const Json* ma = a.find("multipleOf");
      if (ma == nullptr || !ma->is_number())
        return fail(path + "/multipleOf", "'multipleOf' was added");
      double q = ma->as_double() / mb->as_double();
      if (std::fabs(q - std::round(q)) > 1e-9) {
        return fail(path + "/multipleOf",
                    fmt::format("'multipleOf' changed from {} to {}", ma->dump(), mb->dump()));
      }
    }
    return true;
  }

  bool same_if_present(const Json& a, const Json& b, std::string_view key,
                       const std::string& path) {
    const Json* kb = b.find(key);
    if (kb == nullptr) return true;
    const Json* ka = a.find(key);
    if (ka == nullptr || *ka != *kb) {
      return fail(path + "/" + std::string(key),
                  fmt::format("'{}' was added or changed to {}", key, kb->dump()));
    }
    return true;
  }

  bool strings(const Json& a, const Json& b, const std::string& path) {
    return bound(a, b, "minLength", true, path) && bound(a, b, "maxLength", false, path) &&
           same_if_present(a, b, "pattern", path) && same_if_present(a, b, "format", path);
  }

  static std::vector<std::string> required_of(const Json& s) {
    std::vector<std::string> out;
    if (const Json* r = s.find("required"); r && r->is_array()) {
      for (const auto& v : r->as_array()) {
        if (v.is_string()) out.push_back(v.as_string());
      }
    }
    return out;
  }

  bool objects(const Json& a, const Json& b, const std::string& path, int depth) {
    if (!bound(a, b, "minProperties", true, path) || !bound(a, b, "maxProperties", false, path))
      return false;
    auto req_a = required_of(a);
    for (const auto& r : required_of(b)) {
      if (std::find(req_a.begin(), req_a.end(), r) == req_a.end()) {
        return fail(path + "/required", fmt::format("property '{}' became required", r));
      }
    }
    static const Json kEmpty = Json::object();
    const Json* props_a = a.find("properties");
    const Json* props_b = b.find("properties");
    if (props_a == nullptr) props_a = &kEmpty;
    if (props_b == nullptr) props_b = &kEmpty;
    const Json* addl_a = a.find("additionalProperties");
    const Json* addl_b = b.find("additionalProperties");
    // Properties the new schema constrains.
    for (const auto& [name, schema_b] : props_b->as_object()) {
      const std::string p = path + "/properties/" + escape_token(name);
      if (const Json* schema_a = props_a->find(name)) {
        if (!accepts(*schema_a, schema_b, p, depth + 1)) return false;
      } else if (addl_a != nullptr && addl_a->is_object()) {
        // The old schema let this property through under its additionalProperties schema.
        if (!accepts(*addl_a, schema_b, p, depth + 1)) return false;
      } else if (a.contains("patternProperties")) {
        return fail(
            p,
            fmt::format("property '{}' may have been sent under the old patternProperties", name));
      }
      // Otherwise the old schema did not declare it: producers did not send it.
    }
    // Properties the old schema had and the new one does not declare.
    for (const auto& [name, schema_a] : props_a->as_object()) {
      if (props_b->contains(name)) continue;
      const std::string p = path + "/properties/" + escape_token(name);
      if (addl_b != nullptr && is_false(*addl_b)) {
        if (!is_false(schema_a)) {
          return fail(
              p,
              fmt::format("property '{}' was removed and the new schema forbids unknown properties",
                          name));
        }
      } else if (addl_b != nullptr && addl_b->is_object()) {
        if (!accepts(schema_a, *addl_b, p, depth + 1)) return false;
      }
    }
    if (addl_b != nullptr && !is_true(*addl_b)) {
      const std::string p = path + "/additionalProperties";
      if (addl_a == nullptr || is_true(*addl_a)) {
        return fail(p, "unknown properties were allowed and are now restricted");
      }
      if (!accepts(*addl_a, *addl_b, p, depth + 1)) return false;
    }
    if (const Json* pb = b.find("patternProperties")) {
      const Json* pa = a.find("patternProperties");
      if (pa == nullptr || *pa != *pb)
        return fail(path + "/patternProperties", "'patternProperties' was added or changed");
    }
    return true;
  }

  bool arrays(const Json& a, const Json& b, const std::string& path, int depth) {
    if (!bound(a, b, "minItems", true, path) || !bound(a, b, "maxItems", false, path)) return false;
    if (const Json* ub = b.find("uniqueItems"); ub && ub->is_bool() && ub->as_bool()) {
      if (!a.get_bool("uniqueItems"))
        return fail(path + "/uniqueItems", "items must now be unique");
    }
    static const Json kTrue(true);
    const Json* pre_a = a.find("prefixItems");
    const Json* pre_b = b.find("prefixItems");
    const Json* items_a = a.find("items");
    const Json* items_b = b.find("items");
    std::size_t n = std::max(pre_a ? pre_a->size() : 0, pre_b ? pre_b->size() : 0);
    auto schema_at = [&](const Json* pre, const Json* items, std::size_t i) -> const Json& {
      if (pre && pre->is_array() && i < pre->size()) return pre->as_array()[i];
      return items ? *items : kTrue;
    };
    for (std::size_t i = 0; i <= n; ++i) {
      const Json& sa = schema_at(pre_a, items_a, i);
      const Json& sb = schema_at(pre_b, items_b, i);
      std::string p = i < n ? fmt::format("{}/prefixItems/{}", path, i) : path + "/items";
      if (!accepts(sa, sb, p, depth + 1)) return false;
    }
    for (std::string_view k : {"contains", "minContains", "maxContains"}) {
      if (!same_if_present(a, b, k, path)) return false;
    }
    return true;
  }

  const Json& root_a_;
  const Json& root_b_;
  std::string reason_;
};

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

Result<SchemaCompatibility> parse_schema_compatibility(std::string_view text) {
  const std::string t = upper(text);
  if (t == "NONE") return SchemaCompatibility::kNone;
  if (t == "BACKWARD") return SchemaCompatibility::kBackward;
  if (t == "FORWARD") return SchemaCompatibility::kForward;
  if (t == "FULL") return SchemaCompatibility::kFull;
  if (t == "BACKWARD_TRANSITIVE") return SchemaCompatibility::kBackwardTransitive;
  if (t == "FORWARD_TRANSITIVE") return SchemaCompatibility::kForwardTransitive;
  if (t == "FULL_TRANSITIVE") return SchemaCompatibility::kFullTransitive;
  return invalid_argument(fmt::format(
      "compatibility must be one of NONE, BACKWARD, FORWARD, FULL, BACKWARD_TRANSITIVE, "
      "FORWARD_TRANSITIVE, FULL_TRANSITIVE; got '{}'",
      text));
}

std::string_view to_string(SchemaCompatibility mode) {
  switch (mode) {
    case SchemaCompatibility::kNone:
      return "NONE";
    case SchemaCompatibility::kBackward:
      return "BACKWARD";
    case SchemaCompatibility::kForward:
      return "FORWARD";
    case SchemaCompatibility::kFull:
      return "FULL";
    case SchemaCompatibility::kBackwardTransitive:
      return "BACKWARD_TRANSITIVE";
    case SchemaCompatibility::kForwardTransitive:
      return "FORWARD_TRANSITIVE";
    case SchemaCompatibility::kFullTransitive:
      return "FULL_TRANSITIVE";
  }
  return "NONE";
}

bool schema_accepts_all(const Json& narrower, const Json& wider, std::string* reason) {
  Checker c(narrower, wider);
  bool ok = c.accepts(narrower, wider, "", 0);
  if (!ok && reason != nullptr) *reason = c.reason();
  return ok;
}

Status check_compatibility(SchemaCompatibility mode, const std::vector<Json>& earlier,
                           const Json& next) {
  if (mode == SchemaCompatibility::kNone || earlier.empty()) return {};
  const bool transitive = mode == SchemaCompatibility::kBackwardTransitive ||
                          mode == SchemaCompatibility::kForwardTransitive ||
                          mode == SchemaCompatibility::kFullTransitive;
  const bool backward =
      mode != SchemaCompatibility::kForward && mode != SchemaCompatibility::kForwardTransitive;
  const bool forward =
      mode != SchemaCompatibility::kBackward && mode != SchemaCompatibility::kBackwardTransitive;
  const std::size_t first = transitive ? 0 : earlier.size() - 1;
  // Newest first, so the message names the closest version that breaks.
  for (std::size_t i = earlier.size(); i-- > first;) {
    std::string why;
    if (backward && !schema_accepts_all(earlier[i], next, &why)) {
      return failed_precondition(
          fmt::format("BACKWARD incompatible with version {}: {}", i + 1, why));
    }
    if (forward && !schema_accepts_all(next, earlier[i], &why)) {
      return failed_precondition(
          fmt::format("FORWARD incompatible with version {}: {}", i + 1, why));
    }
  }
  return {};
}

}  // namespace civicbus
