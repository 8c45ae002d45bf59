// JsonSchema: a JSON Schema draft 2020-12 validator over civicbus::Json.
//
// A schema is compiled once (references resolved, patterns compiled, keywords checked) into
// an immutable form; validating an instance then does no parsing or lookups by URI. A
// compiled JsonSchema is cheap to copy and safe to use from many threads at once.
//
// It implements the core, applicator, unevaluated, validation, meta-data, format-annotation
// and content vocabularies, honours "$vocabulary" in custom meta-schemas, and knows the draft
// 2020-12 meta-schemas without a resolver. Other dialects ("$schema" of draft-07 or older)
// are refused rather than validated with the wrong rules. It does not fetch anything from the
// network: documents other than the one given are obtained through Options::resolver.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"

namespace civicbus {

// One reason an instance is invalid.
struct SchemaError {
  std::string instance_location;  // JSON pointer into the instance ("" is the whole instance)
  // JSON pointer to the failing keyword in the schema; for a keyword in another document
  // (reached through "$ref") the document's URI followed by '#' and the pointer.
  std::string keyword_location;
  std::string message;  // "string does not match pattern '^[A-Z]'"
};

// Returns the schema document for an absolute URI without fragment, e.g. the text of
// "https://schemas.city.example/address.json" parsed, or an error (usually kNotFound). Called
// only while compiling, from the compiling thread, and not kept afterwards.
using SchemaResolver = std::function<Result<Json>(std::string_view uri)>;

// How JsonSchema::compile finds other documents and what it checks. (A namespace-scope
// struct, so that `Options options = {}` works as a default argument inside JsonSchema.)
struct JsonSchemaOptions {
  // Supplies documents that "$ref", "$dynamicRef" and "$schema" name and that are neither
  // in the schema itself nor the built-in draft 2020-12 meta-schemas. Empty: such
  // references are a compile error.
  SchemaResolver resolver;
  // The URI the schema was retrieved from; relative "$id" and "$ref" values resolve against
  // it. Empty: references stay relative and reach the resolver as written.
  std::string base_uri;
  // Validate "format" (date-time, email, ipv4, uuid, ...) instead of only annotating it, as
  // draft 2020-12 does by default. A meta-schema with the format-assertion vocabulary turns
  // this on for its schemas.
  bool format_assertion = false;
  // errors() and validate() stop after this many errors (at least 1).
  std::size_t max_errors = 10;
};

class CIVICBUS_EXPORT JsonSchema {
 public:
  using Options = JsonSchemaOptions;

  // Compiles `schema`. An invalid schema is kInvalidArgument naming the keyword location
  // ("invalid schema at /properties/ward/minimum: must be a number"); a reference that cannot
  // be resolved is kNotFound.
  static Result<JsonSchema> compile(const Json& schema, Options options = {});

  // The fast check: stops at the first failure and builds no messages.
  bool is_valid(const Json& instance) const;
  // Ok, or kInvalidArgument whose message lists the errors ("at /address/postal_code: string
  // does not match pattern '^[A-Z]' (schema /properties/address/properties/postal_code/
  // pattern)"), at most Options::max_errors of them.
  Status validate(const Json& instance) const;
  // The errors, at most Options::max_errors; empty when `instance` is valid.
  std::vector<SchemaError> errors(const Json& instance) const;

  // The schema document as given to compile().
  const Json& document() const;

  struct Compiled;  // defined in src/core/json_schema.cpp

 private:
  explicit JsonSchema(std::shared_ptr<const Compiled> compiled) : compiled_(std::move(compiled)) {}
  std::shared_ptr<const Compiled> compiled_;
};

}  // namespace civicbus
