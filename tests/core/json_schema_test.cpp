#include "civicbus/core/json_schema.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "civicbus/core/json.hpp"

namespace civicbus {
namespace {

Json json(std::string_view text) {
  auto parsed = Json::parse(text);
  REQUIRE_MESSAGE(parsed.ok(), parsed.status().to_string());
  return std::move(parsed).value();
}

JsonSchema schema_of(std::string_view text, JsonSchema::Options options = {}) {
  auto compiled = JsonSchema::compile(json(text), std::move(options));
  REQUIRE_MESSAGE(compiled.ok(), compiled.status().to_string());
  return std::move(compiled).value();
}

std::string compile_error(std::string_view text, JsonSchema::Options options = {}) {
  auto compiled = JsonSchema::compile(json(text), std::move(options));
  REQUIRE_FALSE(compiled.ok());
  return compiled.status().message();
}

constexpr std::string_view kPermitSchema = R"({
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "https://schemas.city.example/permit.json",
  "type": "object",
  "required": ["permit_id", "ward", "address"],
  "additionalProperties": false,
  "properties": {
    "permit_id": {"type": "string", "pattern": "^P-[0-9]{6}$"},
    "ward": {"type": "integer", "minimum": 1, "maximum": 25},
    "kind": {"enum": ["building", "demolition"]},
    "address": {"$ref": "#/$defs/address"},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}}
  },
  "$defs": {
    "address": {
      "type": "object",
      "required": ["street"],
      "properties": {
        "street": {"type": "string", "minLength": 1},
        "postal_code": {"type": "string", "pattern": "^[A-Z][0-9][A-Z] ?[0-9][A-Z][0-9]$"}
      }
    }
  }
})";

TEST_CASE("json schema: valid and invalid permits") {
  JsonSchema schema = schema_of(kPermitSchema);
  Json good = json(R"({"permit_id":"P-123456","ward":7,"address":{"street":"100 Queen St W",
                       "postal_code":"M5H 2N2"},"tags":["new"]})");
  CHECK(schema.is_valid(good));
  CHECK(schema.validate(good).ok());
  CHECK(schema.errors(good).empty());

  Json bad = json(R"({"permit_id":"P-12","ward":30,"address":{"postal_code":"12345"},
                      "colour":"red","tags":["residential-infill"]})");
  CHECK_FALSE(schema.is_valid(bad));
  std::vector<SchemaError> errors = schema.errors(bad);
  REQUIRE(errors.size() == 6);
  CHECK(errors[0].instance_location == "/permit_id");
  CHECK(errors[0].keyword_location == "/properties/permit_id/pattern");
  CHECK(errors[0].message == "string does not match pattern '^P-[0-9]{6}$'");
  CHECK(errors[1].instance_location == "/ward");
  CHECK(errors[1].keyword_location == "/properties/ward/maximum");
  CHECK(errors[1].message == "30 is greater than the maximum 25");
  CHECK(errors[2].instance_location == "/address");
  CHECK(errors[2].keyword_location == "/$defs/address/required");
  CHECK(errors[2].message == "required property 'street' is missing");
  CHECK(errors[3].instance_location == "/address/postal_code");
  CHECK(errors[3].keyword_location == "/$defs/address/properties/postal_code/pattern");
  CHECK(errors[4].instance_location == "/colour");
  CHECK(errors[4].keyword_location == "/additionalProperties");
  CHECK(errors[4].message == "property 'colour' is not allowed (additionalProperties is false)");
  CHECK(errors[5].instance_location == "/tags/0");
  CHECK(errors[5].message == "string has 18 characters, more than the maximum 10");

  Status status = schema.validate(bad);
  CHECK(status.code() == ErrorCode::kInvalidArgument);
  CHECK(status.message().find("at /address/postal_code: string does not match pattern "
                              "'^[A-Z][0-9][A-Z] ?[0-9][A-Z][0-9]$' (schema "
                              "/$defs/address/properties/postal_code/pattern)") !=
        std::string::npos);
}

TEST_CASE("json schema: messages for common keywords") {
  auto first_error = [](std::string_view schema_text, std::string_view instance) {
    std::vector<SchemaError> errors = schema_of(schema_text).errors(json(instance));
    REQUIRE_FALSE(errors.empty());
    return errors.front().message;
  };
  CHECK(first_error(R"({"type":["string","null"]})", "5") ==
        "expected null or string, got integer");
  CHECK(first_error(R"({"type":"integer"})", "5.5") == "expected integer, got number");
  CHECK(first_error(R"({"const":"ok"})", R"("no")") == R"(value must be "ok")");
  CHECK(first_error(R"({"enum":[1,"a",null]})", "2") == R"(2 is not one of [1,"a",null])");
  CHECK(first_error(R"({"multipleOf":0.5})", "1.3") == "1.3 is not a multiple of 0.5");
  CHECK(first_error(R"({"exclusiveMinimum":0})", "0") == "0 must be greater than 0");
  CHECK(first_error(R"({"minLength":3})", R"("\u00e9\u00e9")") ==
        "string has 2 characters, fewer than the minimum 3");
  CHECK(first_error(R"({"minItems":2})", "[1]") ==
        "the array has 1 items, fewer than the minimum 2");
  CHECK(first_error(R"({"uniqueItems":true})", "[1,2,1.0]") ==
        "items 0 and 2 are equal, but items must be unique");
  CHECK(first_error(R"({"contains":{"type":"string"}})", "[1]") ==
        "the array has no item that matches 'contains'");
  CHECK(first_error(R"({"maxProperties":1})", R"({"a":1,"b":2})") ==
        "the object has 2 properties, more than the maximum 1");
  CHECK(first_error(R"({"dependentRequired":{"a":["b"]}})", R"({"a":1})") ==
        "property 'a' requires property 'b'");
  CHECK(first_error(R"({"anyOf":[{"type":"string"},{"type":"null"}]})", "1") ==
        "value does not match any of the 2 schemas in anyOf");
  CHECK(first_error(R"({"oneOf":[{"type":"integer"},{"minimum":0}]})", "1") ==
        "value matches more than one schema in oneOf (at least 0 and 1)");
  CHECK(first_error(R"({"not":{"type":"null"}})", "null") ==
        "value must not match the schema in 'not'");
  CHECK(first_error("false", "1") == "no value is allowed here (the schema is false)");
  CHECK(first_error(R"({"propertyNames":{"maxLength":3}})", R"({"long_name":1})") ==
        "property name 'long_name' does not match propertyNames");
  CHECK(first_error(R"({"unevaluatedProperties":false,"allOf":[{"properties":{"a":true}}]})",
                    R"({"a":1,"b":2})")
            .find("property 'b' is not allowed") == 0);
  CHECK(first_error(R"({"prefixItems":[true],"items":false})", "[1,2]") ==
        "the array may have at most 1 items (items is false after prefixItems)");
}

TEST_CASE("json schema: max_errors bounds the list") {
  JsonSchema::Options options;
  options.max_errors = 2;
  JsonSchema schema = schema_of(R"({"items":{"type":"string"}})", options);
  CHECK(schema.errors(json("[1,2,3,4]")).size() == 2);
  CHECK(schema.errors(json(R"(["a"])")).empty());
}

TEST_CASE("json schema: if/then/else, dependentSchemas and unevaluated") {
  JsonSchema schema = schema_of(R"({
    "type": "object",
    "properties": {"kind": {"type": "string"}},
    "if": {"properties": {"kind": {"const": "demolition"}}},
    "then": {"required": ["asbestos_survey"], "properties": {"asbestos_survey": {"type": "boolean"}}},
    "else": {"properties": {"storeys": {"type": "integer"}}},
    "dependentSchemas": {"contractor": {"properties": {"contractor": true, "licence": {"type": "string"}}}},
    "unevaluatedProperties": false
  })");
  CHECK(schema.is_valid(json(R"({"kind":"demolition","asbestos_survey":true})")));
  CHECK_FALSE(schema.is_valid(json(R"({"kind":"demolition"})")));
  CHECK(schema.is_valid(json(R"({"kind":"building","storeys":3})")));
  CHECK_FALSE(schema.is_valid(json(R"({"kind":"building","asbestos_survey":true})")));
  CHECK(schema.is_valid(json(R"({"kind":"building","contractor":"x","licence":"L-1"})")));
  CHECK_FALSE(schema.is_valid(json(R"({"kind":"building","licence":"L-1"})")));
}

TEST_CASE("json schema: references to other documents go through the resolver") {
  std::vector<std::string> asked;
  JsonSchema::Options options;
  options.resolver = [&](std::string_view uri) -> Result<Json> {
    asked.emplace_back(uri);
    if (uri == "https://schemas.city.example/common/ward.json") {
      return Json::parse(R"({"type":"integer","minimum":1,"maximum":25,
                             "$defs":{"name":{"type":"string"}}})");
    }
    return not_found("no such schema");
  };
  JsonSchema schema = schema_of(R"({
    "$id": "https://schemas.city.example/permit.json",
    "properties": {
      "ward": {"$ref": "common/ward.json"},
      "ward_name": {"$ref": "common/ward.json#/$defs/name"}
    }
  })",
                                options);
  CHECK(asked == std::vector<std::string>{"https://schemas.city.example/common/ward.json"});
  CHECK(schema.is_valid(json(R"({"ward":3,"ward_name":"Downtown"})")));
  std::vector<SchemaError> errors = schema.errors(json(R"({"ward":40})"));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].keyword_location == "https://schemas.city.example/common/ward.json#/maximum");

  // Without a resolver the reference is an error that names it.
  std::string message = compile_error(R"({"$ref":"https://elsewhere.example/x.json"})");
  CHECK(message.find("https://elsewhere.example/x.json") != std::string::npos);
  CHECK(message.find("no resolver") != std::string::npos);
  auto failed = JsonSchema::compile(json(R"({"$ref":"common/missing.json"})"), options);
  CHECK(failed.status().code() == ErrorCode::kNotFound);
  CHECK(failed.status().message().find("no such schema") != std::string::npos);
}

TEST_CASE("json schema: base_uri lets relative references reach the resolver") {
  JsonSchema::Options options;
  options.base_uri = "https://schemas.city.example/permits/issued.json";
  options.resolver = [](std::string_view uri) -> Result<Json> {
    if (uri == "https://schemas.city.example/common/id.json") {
      return Json::parse(R"({"type":"string"})");
    }
    return not_found(std::string(uri));
  };
  JsonSchema schema = schema_of(R"({"properties":{"id":{"$ref":"../common/id.json"}}})", options);
  CHECK(schema.is_valid(json(R"({"id":"x"})")));
  CHECK_FALSE(schema.is_valid(json(R"({"id":1})")));
}

TEST_CASE("json schema: the draft 2020-12 meta-schema is built in") {
  JsonSchema meta = schema_of(R"({"$ref":"https://json-schema.org/draft/2020-12/schema"})");
  CHECK(meta.is_valid(json(kPermitSchema)));
  CHECK_FALSE(meta.is_valid(json(R"({"type":"strin"})")));
  CHECK_FALSE(meta.is_valid(json(R"({"properties":{"a":{"minimum":"3"}}})")));
  std::vector<SchemaError> errors = meta.errors(json(R"({"minLength":-1})"));
  REQUIRE_FALSE(errors.empty());
  CHECK(errors[0].instance_location == "/minLength");
}

TEST_CASE("json schema: invalid schemas name the keyword location") {
  CHECK(compile_error(R"({"properties":{"ward":{"minimum":"1"}}})") ==
        "invalid schema at /properties/ward/minimum: must be a number");
  CHECK(compile_error(R"({"type":"text"})").find("invalid schema at /type:") == 0);
  CHECK(compile_error(R"({"type":["string","string"]})").find("/type") != std::string::npos);
  CHECK(compile_error(R"({"minLength":-1})") ==
        "invalid schema at /minLength: must be a non-negative integer");
  CHECK(compile_error(R"({"pattern":"(unclosed"})")
            .find("invalid schema at /pattern: pattern "
                  "'(unclosed'") == 0);
  CHECK(compile_error(R"({"patternProperties":{"[":{}}})").find("/patternProperties/[") !=
        std::string::npos);
  CHECK(compile_error(R"({"required":["a","a"]})").find("twice") != std::string::npos);
  CHECK(compile_error(R"({"allOf":[]})").find("non-empty array") != std::string::npos);
  CHECK(compile_error(R"({"items":[{"type":"string"}]})").find("prefixItems") != std::string::npos);
  CHECK(compile_error(R"({"properties":{"a":3}})").find("/properties/a") != std::string::npos);
  CHECK(compile_error(R"({"$ref":"#/$defs/missing"})").find("points at nothing") !=
        std::string::npos);
  CHECK(compile_error(R"({"$ref":"#nowhere"})").find("anchor 'nowhere'") != std::string::npos);
  CHECK(compile_error(R"({"$anchor":"1bad"})").find("/$anchor") != std::string::npos);
  CHECK(compile_error(R"({"$id":"http://x.example/a#frag"})").find("fragment") !=
        std::string::npos);
  CHECK(
      compile_error(R"({"$schema":"http://json-schema.org/draft-07/schema#"})").find("draft-07") !=
      std::string::npos);
  CHECK(compile_error(R"({"multipleOf":0})").find("greater than 0") != std::string::npos);
  CHECK(compile_error("3").find("object or a boolean") != std::string::npos);
  // Unused definitions are still checked.
  CHECK(compile_error(R"({"$defs":{"unused":{"maxItems":1.5}}})").find("/$defs/unused/maxItems") !=
        std::string::npos);
}

TEST_CASE("json schema: custom meta-schemas and vocabularies") {
  JsonSchema::Options options;
  options.resolver = [](std::string_view uri) -> Result<Json> {
    if (uri == "https://schemas.city.example/meta/strict.json") {
      return Json::parse(R"({
        "$id": "https://schemas.city.example/meta/strict.json",
        "$vocabulary": {"https://json-schema.org/draft/2020-12/vocab/core": true,
                        "https://schemas.city.example/vocab/pii": true}})");
    }
    if (uri == "https://schemas.city.example/meta/optional.json") {
      return Json::parse(R"({
        "$vocabulary": {"https://json-schema.org/draft/2020-12/vocab/core": true,
                        "https://json-schema.org/draft/2020-12/vocab/applicator": true,
                        "https://json-schema.org/draft/2020-12/vocab/format-assertion": true,
                        "https://schemas.city.example/vocab/pii": false}})");
    }
    return not_found(std::string(uri));
  };
  std::string message =
      compile_error(R"({"$schema":"https://schemas.city.example/meta/strict.json"})", options);
  CHECK(message.find("https://schemas.city.example/vocab/pii") != std::string::npos);
  // Without the validation vocabulary, "minimum" is only an annotation.
  JsonSchema schema = schema_of(R"({"$schema":"https://schemas.city.example/meta/optional.json",
                                    "properties":{"n":{"minimum":10}}})",
                                options);
  CHECK(schema.is_valid(json(R"({"n":1})")));
}

TEST_CASE("json schema: recursion and dynamic references") {
  JsonSchema tree = schema_of(R"({
    "$defs": {"node": {"type":"object","properties":{"children":{"type":"array",
              "items":{"$ref":"#/$defs/node"}}},"required":["name"]}},
    "$ref": "#/$defs/node"})");
  CHECK(tree.is_valid(json(R"({"name":"a","children":[{"name":"b","children":[{"name":"c"}]}]})")));
  CHECK_FALSE(tree.is_valid(json(R"({"name":"a","children":[{"children":[]}]})")));

  // A loop that never descends into the instance fails cleanly instead of crashing.
  JsonSchema loop = schema_of(R"({"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}},
                                  "$ref":"#/$defs/a"})");
  CHECK_FALSE(loop.is_valid(json("1")));
  std::vector<SchemaError> errors = loop.errors(json("1"));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].message.find("nested deeper") != std::string::npos);

  // Deep instances against a recursive schema.
  std::string deep;
  for (int i = 0; i < 900; ++i) deep += "[";
  for (int i = 0; i < 900; ++i) deep += "]";
  JsonSchema nested = schema_of(R"({"type":"array","items":{"$ref":"#"}})");
  CHECK(nested.is_valid(json(deep)));
}

TEST_CASE("json schema: format is an annotation unless assertion is on") {
  constexpr std::string_view kText = R"({"type":"string","format":"date"})";
  CHECK(schema_of(kText).is_valid(json(R"("not a date")")));
  JsonSchema::Options options;
  options.format_assertion = true;
  JsonSchema asserting = schema_of(kText, options);
  CHECK(asserting.is_valid(json(R"("2024-02-29")")));
  CHECK_FALSE(asserting.is_valid(json(R"("2023-02-29")")));
  CHECK(asserting.errors(json(R"("not a date")"))[0].message ==
        R"("not a date" is not a valid date)");
  // Unknown formats pass.
  CHECK(schema_of(R"({"format":"permit-number"})", options).is_valid(json(R"("x")")));
}

TEST_CASE("json schema: compiled schemas are shared safely across threads") {
  const JsonSchema schema = schema_of(kPermitSchema);
  const JsonSchema copy = schema;  // cheap: shares the compiled form
  CHECK(&copy.document() == &schema.document());
  Json good = json(R"({"permit_id":"P-000001","ward":1,"address":{"street":"x"}})");
  Json bad = json(R"({"permit_id":"X","ward":1,"address":{"street":"x"}})");
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        if (!copy.is_valid(good) || copy.is_valid(bad) || copy.errors(bad).size() != 1) {
          ++mismatches;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(mismatches.load() == 0);
}

}  // namespace
}  // namespace civicbus
