// Fuzz target: JsonSchema::compile and validation (draft 2020-12).
//
// The input is one JSON document:
//
//   {"schema": <schema>, "instance": <value>,               required: schema
//    "documents": {"<uri>": <schema>, ...},                 served by the resolver
//    "base_uri": "<uri>", "format_assertion": true}
//
// Text that is not such a document is used as the schema itself (and as its own instance),
// so that plain schemas make useful seeds too. Compiling must not crash, hang or recurse
// without bound on any schema; a compiled schema is applied to the instance and to the schema
// document (schemas are JSON too), and its three ways of validating (is_valid, errors,
// validate) must agree. The schema is also checked against the draft 2020-12 meta-schema,
// which exercises $dynamicRef and the vocabularies on every input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/core/json_schema.hpp"

namespace {

using civicbus::Json;
using civicbus::JsonSchema;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "json_schema fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

const JsonSchema& metaschema() {
  static const JsonSchema schema = [] {
    civicbus::Result<JsonSchema> compiled = JsonSchema::compile(
        Json::object({{"$ref", "https://json-schema.org/draft/2020-12/schema"}}));
    if (!compiled.ok())
      fail("the built-in meta-schema does not compile", compiled.status().message());
    return *std::move(compiled);
  }();
  return schema;
}

// The three entry points must tell the same story about one instance.
void check_consistent(const JsonSchema& schema, const Json& instance) {
  const bool valid = schema.is_valid(instance);
  const std::vector<civicbus::SchemaError> errors = schema.errors(instance);
  const civicbus::Status status = schema.validate(instance);
  if (valid != errors.empty()) {
    fail(valid ? "is_valid() is true but errors() lists errors"
               : "is_valid() is false but errors() is empty",
         instance.dump());
  }
  if (valid != status.ok()) fail("is_valid() and validate() disagree", status.message());
  if (!valid && status.message().empty()) fail("validate() failed without a message");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  civicbus::Result<Json> parsed = Json::parse(text);
  if (!parsed.ok()) return 0;
  const Json& input = *parsed;

  const Json* schema = &input;
  const Json* instance = &input;
  const Json* documents = nullptr;
  JsonSchema::Options options;
  if (const Json* s = input.find("schema"); s != nullptr && input.size() <= 5) {
    schema = s;
    static const Json kNull;
    instance = input.find("instance") != nullptr ? input.find("instance") : &kNull;
    documents = input.find("documents");
    options.base_uri = input.get_string("base_uri");
    options.format_assertion = input.get_bool("format_assertion");
  }
  if (documents != nullptr) {
    // Called only while compiling, so the pointer into `input` stays valid.
    options.resolver = [documents](std::string_view uri) -> civicbus::Result<Json> {
      if (const Json* document = documents->find(uri)) return *document;
      return civicbus::not_found("no such document in the fuzz input");
    };
  }
  options.max_errors = 3;

  // Every schema document is itself an instance of the meta-schema.
  check_consistent(metaschema(), *schema);

  civicbus::Result<JsonSchema> compiled = JsonSchema::compile(*schema, options);
  if (!compiled.ok()) {
    if (compiled.status().message().empty()) fail("compile error without a message");
    return 0;
  }
  if (compiled->document() != *schema) fail("document() is not the schema given to compile()");
  check_consistent(*compiled, *instance);
  if (instance != schema) check_consistent(*compiled, *schema);
  return 0;
}
