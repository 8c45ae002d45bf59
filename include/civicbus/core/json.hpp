// Json: the one JSON value type of civicbus. Parsing goes through simdjson (src/core/json.cpp);
// the value is an ordinary mutable tree so that components can build, edit (PII encryption
// rewrites fields in place) and write documents. Objects keep their members in insertion
// order; numbers are int64 when the text is an integer that fits, double otherwise.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus {

class CIVICBUS_EXPORT Json {
 public:
  enum class Type { kNull, kBool, kInt, kDouble, kString, kArray, kObject };
  using Array = std::vector<Json>;
  using Member = std::pair<std::string, Json>;
  using Object = std::vector<Member>;

  Json() = default;  // null
  Json(std::nullptr_t) {}
  Json(bool b) : v_(b) {}
  Json(int i) : v_(static_cast<std::int64_t>(i)) {}
  Json(long i) : v_(static_cast<std::int64_t>(i)) {}
  Json(long long i) : v_(static_cast<std::int64_t>(i)) {}
  Json(unsigned i) : v_(static_cast<std::int64_t>(i)) {}
  Json(unsigned long i);       // stored as int64 when it fits, else double
  Json(unsigned long long i);  // stored as int64 when it fits, else double
  Json(double d) : v_(d) {}
  Json(std::string s) : v_(std::move(s)) {}
  Json(std::string_view s) : v_(std::string(s)) {}
  Json(const char* s) : v_(std::string(s)) {}
  Json(Array a) : v_(std::move(a)) {}
  Json(Object o) : v_(std::move(o)) {}

  static Json array(std::initializer_list<Json> items = {}) { return Json(Array(items)); }
  static Json object(std::initializer_list<Member> members = {}) { return Json(Object(members)); }

  // Parses one JSON text (RFC 8259). Errors name what is wrong; trailing content is an error.
  static Result<Json> parse(std::string_view text);

  Type type() const { return static_cast<Type>(v_.index()); }
  bool is_null() const { return type() == Type::kNull; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_int() const { return type() == Type::kInt; }
  bool is_double() const { return type() == Type::kDouble; }
  bool is_number() const { return is_int() || is_double(); }
  // True for ints and for doubles with no fractional part (JSON Schema's "integer").
  bool is_integral() const;
  bool is_string() const { return type() == Type::kString; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_object() const { return type() == Type::kObject; }

  // Accessors assert the type in debug builds.
  bool as_bool() const { return std::get<bool>(v_); }
  std::int64_t as_int() const { return std::get<std::int64_t>(v_); }
  double as_double() const;  // ints convert
  const std::string& as_string() const { return std::get<std::string>(v_); }
  std::string& as_string() { return std::get<std::string>(v_); }
  const Array& as_array() const { return std::get<Array>(v_); }
  Array& as_array() { return std::get<Array>(v_); }
  const Object& as_object() const { return std::get<Object>(v_); }
  Object& as_object() { return std::get<Object>(v_); }

  // Object access. find() returns null when absent or when this is not an object.
  const Json* find(std::string_view key) const;
  Json* find(std::string_view key);
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  // Sets (replacing an existing member) and returns the stored value. Turns null into {}.
  Json& set(std::string_view key, Json value);
  // Returns the member, inserting null if absent. Turns null into {}.
  Json& operator[](std::string_view key);
  bool erase(std::string_view key);

  // Array access. Turns null into [].
  Json& push_back(Json value);
  // Elements of an array or members of an object; 0 otherwise.
  std::size_t size() const;

  // Convenience reads with a fallback when absent or of another type.
  std::string get_string(std::string_view key, std::string_view fallback = {}) const;
  std::int64_t get_int(std::string_view key, std::int64_t fallback = 0) const;
  bool get_bool(std::string_view key, bool fallback = false) const;

  // RFC 6901 JSON Pointer ("" is the whole document, "/a/0/b~1c"). Null when absent.
  const Json* at_pointer(std::string_view pointer) const;
  Json* at_pointer(std::string_view pointer);

  // Compact JSON text; with indent > 0, pretty-printed.
  std::string dump(int indent = 0) const;
  void dump_to(std::string& out) const;

  // JSON equality: numbers compare by value (1 == 1.0), objects ignore member order.
  friend bool operator==(const Json& a, const Json& b);
  friend bool operator!=(const Json& a, const Json& b) { return !(a == b); }

 private:
  std::variant<std::nullptr_t, bool, std::int64_t, double, std::string, Array, Object> v_{nullptr};
};

// The friend above, declared again to carry the export (a friend declaration cannot).
CIVICBUS_EXPORT bool operator==(const Json& a, const Json& b);

// Escapes `s` as a JSON string body (without the quotes) onto `out`.
CIVICBUS_EXPORT void append_json_escaped(std::string& out, std::string_view s);

}  // namespace civicbus
