// The official JSON Schema draft 2020-12 meta-schemas, built in so that "$schema" and "$ref"
// to them work offline. Generated from json-schema-org/json-schema-spec (branch 2020-12, commit
// 601a66c8b0f25246bf0e1fb488c5b5f030a79b72); do not edit by hand. Copyright (c) 2022 JSON Schema
// Specification Authors, BSD-3-Clause (see the LICENSE of json-schema-spec).
#include "core/json_schema_metaschemas.hpp"

namespace civicbus::detail {
namespace {

constexpr std::string_view kSchemaDialect =
    R"json({"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"https://json-sc)json"
    R"json(hema.org/draft/2020-12/schema","$vocabulary":{"https://json-schema.org/draft/202)json"
    R"json(0-12/vocab/core":true,"https://json-schema.org/draft/2020-12/vocab/applicator":t)json"
    R"json(rue,"https://json-schema.org/draft/2020-12/vocab/unevaluated":true,"https://json)json"
    R"json(-schema.org/draft/2020-12/vocab/validation":true,"https://json-schema.org/draft/)json"
    R"json(2020-12/vocab/meta-data":true,"https://json-schema.org/draft/2020-12/vocab/forma)json"
    R"json(t-annotation":true,"https://json-schema.org/draft/2020-12/vocab/content":true},")json"
    R"json($dynamicAnchor":"meta","title":"Core and Validation specifications meta-schema",)json"
    R"json("allOf":[{"$ref":"meta/core"},{"$ref":"meta/applicator"},{"$ref":"meta/unevaluat)json"
    R"json(ed"},{"$ref":"meta/validation"},{"$ref":"meta/meta-data"},{"$ref":"meta/format-a)json"
    R"json(nnotation"},{"$ref":"meta/content"}],"type":["object","boolean"],"$comment":"Thi)json"
    R"json(s meta-schema also defines keywords that have appeared in previous drafts in ord)json"
    R"json(er to prevent incompatible extensions as they remain in common use.","properties)json"
    R"json(":{"definitions":{"$comment":"\"definitions\" has been replaced by \"$defs\".",")json"
    R"json(type":"object","additionalProperties":{"$dynamicRef":"#meta"},"deprecated":true,)json"
    R"json("default":{}},"dependencies":{"$comment":"\"dependencies\" has been split and re)json"
    R"json(placed by \"dependentSchemas\" and \"dependentRequired\" in order to serve their)json"
    R"json( differing semantics.","type":"object","additionalProperties":{"anyOf":[{"$dynam)json"
    R"json(icRef":"#meta"},{"$ref":"meta/validation#/$defs/stringArray"}]},"deprecated":tru)json"
    R"json(e,"default":{}},"$recursiveAnchor":{"$comment":"\"$recursiveAnchor\" has been re)json"
    R"json(placed by \"$dynamicAnchor\".","$ref":"meta/core#/$defs/anchorString","deprecate)json"
    R"json(d":true},"$recursiveRef":{"$comment":"\"$recursiveRef\" has been replaced by \"$)json"
    R"json(dynamicRef\".","$ref":"meta/core#/$defs/uriReferenceString","deprecated":true}}})json";

constexpr std::string_view kApplicatorMeta =
    R"json({"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"https://json-sc)json"
    R"json(hema.org/draft/2020-12/meta/applicator","$dynamicAnchor":"meta","title":"Applica)json"
    R"json(tor vocabulary meta-schema","type":["object","boolean"],"properties":{"prefixIte)json"
    R"json(ms":{"$ref":"#/$defs/schemaArray"},"items":{"$dynamicRef":"#meta"},"contains":{")json"
    R"json($dynamicRef":"#meta"},"additionalProperties":{"$dynamicRef":"#meta"},"properties)json"
    R"json(":{"type":"object","additionalProperties":{"$dynamicRef":"#meta"},"default":{}},)json"
    R"json("patternProperties":{"type":"object","additionalProperties":{"$dynamicRef":"#met)json"
    R"json(a"},"propertyNames":{"format":"regex"},"default":{}},"dependentSchemas":{"type":)json"
    R"json("object","additionalProperties":{"$dynamicRef":"#meta"},"default":{}},"propertyN)json"
    R"json(ames":{"$dynamicRef":"#meta"},"if":{"$dynamicRef":"#meta"},"then":{"$dynamicRef")json"
    R"json(:"#meta"},"else":{"$dynamicRef":"#meta"},"allOf":{"$ref":"#/$defs/schemaArray"},)json"
    R"json("anyOf":{"$ref":"#/$defs/schemaArray"},"oneOf":{"$ref":"#/$defs/schemaArray"},"n)json"
    R"json(ot":{"$dynamicRef":"#meta"}},"$defs":{"schemaArray":{"type":"array","minItems":1)json"
    R"json(,"items":{"$dynamicRef":"#meta"}}}})json";

constexpr std::string_view kContentMeta =
    R"json({"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"https://json-sc)json"
    R"json(hema.org/draft/2020-12/meta/content","$dynamicAnchor":"meta","title":"Content vo)json"
    R"json(cabulary meta-schema","type":["object","boolean"],"properties":{"contentEncoding)json"
    R"json(":{"type":"string"},"contentMediaType":{"type":"string"},"contentSchema":{"$dyna)json"
    R"json(micRef":"#meta"}}})json";

constexpr std::string_view kCoreMeta =
    R"json({"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"https://json-sc)json"
    R"json(hema.org/draft/2020-12/meta/core","$dynamicAnchor":"meta","title":"Core vocabula)json"
    R"json(ry meta-schema","type":["object","boolean"],"properties":{"$id":{"$ref":"#/$defs)json"
    R"json(/uriReferenceString","$comment":"Non-empty fragments not allowed.","pattern":"^[)json"
    R"json(^#]*#?$"},"$schema":{"$ref":"#/$defs/uriString"},"$ref":{"$ref":"#/$defs/uriRefe)json"
    R"json(renceString"},"$anchor":{"$ref":"#/$defs/anchorString"},"$dynamicRef":{"$ref":"#)json"
    R"json(/$defs/uriReferenceString"},"$dynamicAnchor":{"$ref":"#/$defs/anchorString"},"$v)json"
    R"json(ocabulary":{"type":"object","propertyNames":{"$ref":"#/$defs/uriString"},"additi)json"
    R"json(onalProperties":{"type":"boolean"}},"$comment":{"type":"string"},"$defs":{"type")json"
    R"json(:"object","additionalProperties":{"$dynamicRef":"#meta"}}},"$defs":{"anchorStrin)json"
    R"json(g":{"type":"string","pattern":"^[A-Za-z_][-A-Za-z0-9._]*$"},"uriString":{"type":)json"
    R"json("string","format":"uri"},"uriReferenceString":{"type":"string","format":"uri-ref)json"
    R"json(erence"}}})json";

constexpr std::string_view kFormatAnnotationMeta =
    R"json({"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"https://json-sc)json"
    R"json(hema.org/draft/2020-12/meta/format-annotation","$dynamicAnchor":"meta","title":")json"
    R"json(Format vocabulary meta-schema for annotation results","type":["object","boolean")json"
    R"json(],"properties":{"format":{"type":"string"}}})json";

constexpr std::string_view kFormatAssertionMeta =
    R"json({"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"https://json-sc)json"
    R"json(hema.org/draft/2020-12/meta/format-assertion","$dynamicAnchor":"meta","title":"F)json"
    R"json(ormat vocabulary meta-schema for assertion results","type":["object","boolean"],)json"
    R"json("properties":{"format":{"type":"string"}}})json";

constexpr std::string_view kMetaDataMeta =
    R"json({"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"https://json-sc)json"
    R"json(hema.org/draft/2020-12/meta/meta-data","$dynamicAnchor":"meta","title":"Meta-dat)json"
    R"json(a vocabulary meta-schema","type":["object","boolean"],"properties":{"title":{"ty)json"
    R"json(pe":"string"},"description":{"type":"string"},"default":true,"deprecated":{"type)json"
    R"json(":"boolean","default":false},"readOnly":{"type":"boolean","default":false},"writ)json"
    R"json(eOnly":{"type":"boolean","default":false},"examples":{"type":"array","items":tru)json"
    R"json(e}}})json";

constexpr std::string_view kUnevaluatedMeta =
    R"json({"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"https://json-sc)json"
    R"json(hema.org/draft/2020-12/meta/unevaluated","$dynamicAnchor":"meta","title":"Uneval)json"
    R"json(uated applicator vocabulary meta-schema","type":["object","boolean"],"properties)json"
    R"json(":{"unevaluatedItems":{"$dynamicRef":"#meta"},"unevaluatedProperties":{"$dynamic)json"
    R"json(Ref":"#meta"}}})json";

constexpr std::string_view kValidationMeta =
    R"json({"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"https://json-sc)json"
    R"json(hema.org/draft/2020-12/meta/validation","$dynamicAnchor":"meta","title":"Validat)json"
    R"json(ion vocabulary meta-schema","type":["object","boolean"],"properties":{"type":{"a)json"
    R"json(nyOf":[{"$ref":"#/$defs/simpleTypes"},{"type":"array","items":{"$ref":"#/$defs/s)json"
    R"json(impleTypes"},"minItems":1,"uniqueItems":true}]},"const":true,"enum":{"type":"arr)json"
    R"json(ay","items":true},"multipleOf":{"type":"number","exclusiveMinimum":0},"maximum":)json"
    R"json({"type":"number"},"exclusiveMaximum":{"type":"number"},"minimum":{"type":"number)json"
    R"json("},"exclusiveMinimum":{"type":"number"},"maxLength":{"$ref":"#/$defs/nonNegative)json"
    R"json(Integer"},"minLength":{"$ref":"#/$defs/nonNegativeIntegerDefault0"},"pattern":{")json"
    R"json(type":"string","format":"regex"},"maxItems":{"$ref":"#/$defs/nonNegativeInteger")json"
    R"json(},"minItems":{"$ref":"#/$defs/nonNegativeIntegerDefault0"},"uniqueItems":{"type")json"
    R"json(:"boolean","default":false},"maxContains":{"$ref":"#/$defs/nonNegativeInteger"},)json"
    R"json("minContains":{"$ref":"#/$defs/nonNegativeInteger","default":1},"maxProperties":)json"
    R"json({"$ref":"#/$defs/nonNegativeInteger"},"minProperties":{"$ref":"#/$defs/nonNegati)json"
    R"json(veIntegerDefault0"},"required":{"$ref":"#/$defs/stringArray"},"dependentRequired)json"
    R"json(":{"type":"object","additionalProperties":{"$ref":"#/$defs/stringArray"}}},"$def)json"
    R"json(s":{"nonNegativeInteger":{"type":"integer","minimum":0},"nonNegativeIntegerDefau)json"
    R"json(lt0":{"$ref":"#/$defs/nonNegativeInteger","default":0},"simpleTypes":{"enum":["a)json"
    R"json(rray","boolean","integer","null","number","object","string"]},"stringArray":{"ty)json"
    R"json(pe":"array","items":{"type":"string"},"uniqueItems":true,"default":[]}}})json";

}  // namespace

std::string_view builtin_metaschema_text(std::string_view uri) {
  static constexpr std::pair<std::string_view, std::string_view> kByUri[] = {
      {"https://json-schema.org/draft/2020-12/schema", kSchemaDialect},
      {"https://json-schema.org/draft/2020-12/meta/applicator", kApplicatorMeta},
      {"https://json-schema.org/draft/2020-12/meta/content", kContentMeta},
      {"https://json-schema.org/draft/2020-12/meta/core", kCoreMeta},
      {"https://json-schema.org/draft/2020-12/meta/format-annotation", kFormatAnnotationMeta},
      {"https://json-schema.org/draft/2020-12/meta/format-assertion", kFormatAssertionMeta},
      {"https://json-schema.org/draft/2020-12/meta/meta-data", kMetaDataMeta},
      {"https://json-schema.org/draft/2020-12/meta/unevaluated", kUnevaluatedMeta},
      {"https://json-schema.org/draft/2020-12/meta/validation", kValidationMeta},
  };
  if (!uri.empty() && uri.back() == '#') uri.remove_suffix(1);  // "...schema#" is common
  for (const auto& [id, text] : kByUri) {
    if (uri == id) return text;
  }
  return {};
}

}  // namespace civicbus::detail

/* Generator (python3), run with the meta-schemas of the JSON Schema test suite:
# Generates src/core/json_schema_metaschemas.cpp from the official draft 2020-12 meta-schemas.
import json, glob, os
root = "/work/shared/conformance/json-schema-test-suite/metaschemas/draft2020-12"
files = [os.path.join(root, "schema.json")] + sorted(glob.glob(os.path.join(root, "meta", "*.json")))
out = []
out.append("// The official JSON Schema draft 2020-12 meta-schemas, built in so that \"$schema\" and \"$ref\"")
out.append("// to them work offline. Generated from json-schema-org/json-schema-spec (branch 2020-12, commit")
out.append("// 601a66c8b0f25246bf0e1fb488c5b5f030a79b72); do not edit by hand. Copyright (c) 2022 JSON Schema")
out.append("// Specification Authors, BSD-3-Clause (see the LICENSE of json-schema-spec).")
out.append('#include "core/json_schema_metaschemas.hpp"')
out.append("")
out.append("namespace civicbus::detail {")
out.append("namespace {")
out.append("")
names = []
for i, f in enumerate(files):
    doc = json.load(open(f))
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    assert ")json\"" not in text
    var = "k" + "".join(p.capitalize() for p in os.path.basename(f)[:-5].replace("-", "_").split("_")) + ("Meta" if "meta" in f.split(os.sep)[-2] else "Dialect")
    names.append((doc["$id"], var))
    out.append("constexpr std::string_view %s =" % var)
    # adjacent literals keep lines under 100 columns
    chunks = [text[j:j+80] for j in range(0, len(text), 80)]
    for c in chunks:
        out.append("    R\"json(" + c + ")json\"")
    out[-1] += ";"
    out.append("")
out.append("}  // namespace")
out.append("")
out.append("std::string_view builtin_metaschema_text(std::string_view uri) {")
out.append("  static constexpr std::pair<std::string_view, std::string_view> kByUri[] = {")
for uri, var in names:
    out.append("      {\"%s\", %s}," % (uri, var))
out.append("  };")
out.append("  if (!uri.empty() && uri.back() == '#') uri.remove_suffix(1);  // \"...schema#\" is common")
out.append("  for (const auto& [id, text] : kByUri) {")
out.append("    if (uri == id) return text;")
out.append("  }")
out.append("  return {};")
out.append("}")
out.append("")
out.append("}  // namespace civicbus::detail")
open("/work/main/src/core/json_schema_metaschemas.cpp", "w").write("\n".join(out) + "\n")
with open("/work/main/src/core/json_schema_metaschemas.cpp", "a") as f:
    f.write("\n/ * Generator (python3), run with the meta-schemas of the JSON Schema test suite:\n")
    f.write(open(__file__).read().replace("* /", "* /").replace("/ *", "/ *"))
    f.write("* /\n")
*/
