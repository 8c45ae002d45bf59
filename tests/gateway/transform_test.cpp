#include "gateway/transform.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "civicbus/core/json.hpp"
#include "support/test_support.hpp"

namespace civicbus::gateway {
namespace {

namespace fs = std::filesystem;

Json json(std::string_view text) {
  auto parsed = Json::parse(text);
  REQUIRE_MESSAGE(parsed.ok(), parsed.status().to_string());
  return std::move(parsed).value();
}

Json from_xml(std::string_view xml, const TransformOptions& options = {}) {
  auto result = xml_to_json(xml, options);
  REQUIRE_MESSAGE(result.ok(), result.status().to_string());
  return std::move(result).value();
}

std::string to_xml(const Json& document, const TransformOptions& options = {}) {
  auto result = json_to_xml(document, options);
  REQUIRE_MESSAGE(result.ok(), result.status().to_string());
  return std::move(result).value();
}

Json from_csv(std::string_view csv, const TransformOptions& options = {}) {
  auto result = csv_to_json(csv, options);
  REQUIRE_MESSAGE(result.ok(), result.status().to_string());
  return std::move(result).value();
}

std::string to_csv(const Json& rows, const TransformOptions& options = {}) {
  auto result = json_to_csv(rows, options);
  REQUIRE_MESSAGE(result.ok(), result.status().to_string());
  return std::move(result).value();
}

TransformOptions no_declaration() {
  TransformOptions o;
  o.xml_declaration = false;
  return o;
}

// The message of a failed result, which must be kInvalidArgument unless `code` says otherwise.
template <typename T>
std::string error_of(const Result<T>& result, ErrorCode code = ErrorCode::kInvalidArgument) {
  REQUIRE_FALSE(result.ok());
  CHECK_MESSAGE(result.status().code() == code, result.status().to_string());
  return result.status().message();
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// ---- Media types ------------------------------------------------------------------------

BodyFormat format_of(std::string_view value) {
  auto f = body_format_from_media_type(value);
  REQUIRE_MESSAGE(f.ok(), value, ": ", f.status().to_string());
  return *f;
}

TEST_CASE("transform: Content-Type values name a body format") {
  CHECK(format_of("application/json") == BodyFormat::kJson);
  CHECK(format_of("application/json; charset=utf-8") == BodyFormat::kJson);
  CHECK(format_of("Application/JSON") == BodyFormat::kJson);
  CHECK(format_of("application/problem+json") == BodyFormat::kJson);
  CHECK(format_of("application/cloudevents+json; charset=UTF-8") == BodyFormat::kJson);
  CHECK(format_of("application/xml") == BodyFormat::kXml);
  CHECK(format_of("text/xml; charset=\"iso-8859-1\"") == BodyFormat::kXml);
  CHECK(format_of("application/soap+xml; action=\"urn:a,b\"") == BodyFormat::kXml);
  CHECK(format_of("application/atom+xml") == BodyFormat::kXml);
  CHECK(format_of("text/csv") == BodyFormat::kCsv);
  CHECK(format_of("text/csv; header=present; charset=utf-8") == BodyFormat::kCsv);
  CHECK(media_type_of(BodyFormat::kJson) == "application/json");
  CHECK(media_type_of(BodyFormat::kXml) == "application/xml");
  CHECK(media_type_of(BodyFormat::kCsv) == "text/csv");
  CHECK(body_format_name(BodyFormat::kCsv) == "csv");
}

TEST_CASE("transform: Accept lists pick the best supported format by q") {
  CHECK(format_of("application/xml;q=0.9, application/json") == BodyFormat::kJson);
  CHECK(format_of("text/csv, application/json;q=0.5") == BodyFormat::kCsv);
  CHECK(format_of("text/html, application/xml;q=0.9, */*;q=0.8") == BodyFormat::kXml);
  // A browser's Accept: xhtml is an +xml type.
  CHECK(format_of("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8") ==
        BodyFormat::kXml);
  // Equal q: the range listed first.
  CHECK(format_of("application/xml, application/json") == BodyFormat::kXml);
  CHECK(format_of("text/csv;q=0.5, application/xml;q=0.5") == BodyFormat::kCsv);
  // Wildcards prefer JSON, then XML, then CSV.
  CHECK(format_of("*/*") == BodyFormat::kJson);
  CHECK(format_of("*") == BodyFormat::kJson);
  CHECK(format_of("application/*") == BodyFormat::kJson);
  CHECK(format_of("text/*") == BodyFormat::kXml);
  // q=0 excludes, and the most specific range decides a format's q.
  CHECK(format_of("application/json;q=0, */*") == BodyFormat::kXml);
  CHECK(format_of("application/json;q=0, application/xml;q=0, */*") == BodyFormat::kCsv);
  CHECK(format_of("*/*;q=0.1, text/csv;q=0.2") == BodyFormat::kCsv);
  CHECK(format_of("text/*;q=0.3, text/csv;q=0.1, application/json;q=0.2") == BodyFormat::kXml);
  CHECK(format_of("image/png, , text/csv ;q=1.000") == BodyFormat::kCsv);
  CHECK(format_of("application/json;q=.5, text/csv;q=0.4") == BodyFormat::kJson);
}

TEST_CASE("transform: unsupported or malformed media types are refused with the reason") {
  CHECK(contains(error_of(body_format_from_media_type("text/html")), "text/html"));
  CHECK(contains(error_of(body_format_from_media_type("image/png, text/plain;q=0.5")),
                 "is supported"));
  CHECK(contains(error_of(body_format_from_media_type("application/json;q=0")), "supported"));
  CHECK(contains(error_of(body_format_from_media_type("")), "no media type"));
  CHECK(contains(error_of(body_format_from_media_type("json")), "'json' is not a media type"));
  CHECK(contains(error_of(body_format_from_media_type("application/json;q=2")), "q value '2'"));
  CHECK(contains(error_of(body_format_from_media_type("text/csv;q=high")), "q value"));
}

// ---- XML -> JSON ------------------------------------------------------------------------

TEST_CASE("transform: XML maps to JSON by the documented convention") {
  // The root name is the single top-level key; an element with only text is a string.
  CHECK(from_xml("<permit>P-1</permit>") == json(R"({"permit":"P-1"})"));
  // Attributes are "@name"; text beside attributes or children is "#text".
  CHECK(from_xml(R"(<permit id="7" kind="road">open</permit>)") ==
        json(R"({"permit":{"@id":"7","@kind":"road","#text":"open"}})"));
  // Repeated siblings are an array; single children are plain values; empty elements null.
  const Json permits = from_xml(R"(<?xml version="1.0"?>
<permits count="2">
  <permit><id>1</id><tag>a</tag><tag>b</tag><note/></permit>
  <permit><id>2</id><tag>c</tag><note></note></permit>
</permits>)");
  CHECK(permits == json(R"({"permits":{"@count":"2","permit":[
      {"id":"1","tag":["a","b"],"note":null},
      {"id":"2","tag":"c","note":null}]}})"));
  // Members are written in document order: attributes, "#text", then children as first seen.
  CHECK(permits.dump() ==
        R"({"permits":{"@count":"2","permit":[{"id":"1","tag":["a","b"],"note":null},)"
        R"({"id":"2","tag":"c","note":null}]}})");
  // Siblings that are not adjacent still join one array (their interleaving is not kept).
  CHECK(from_xml("<r><a>1</a><b>x</b><a>2</a></r>") == json(R"({"r":{"a":["1","2"],"b":"x"}})"));
  // An element with only attributes is an object without "#text"; whitespace between
  // elements is layout, not text.
  CHECK(from_xml("<r>\n  <a x=\"1\">  </a>\n</r>") == json(R"({"r":{"a":{"@x":"1"}}})"));
  // An element with only text keeps its whitespace.
  CHECK(from_xml("<r>  padded  </r>") == json(R"({"r":"  padded  "})"));
  CHECK(from_xml("<r/>") == json(R"({"r":null})"));
}

TEST_CASE("transform: XML text is a string by default and typed on request") {
  const std::string xml = R"(<m n="12" ok="true"><i>12</i><d>1.5</d><z>08123</z><e>1e3</e>)"
                          R"(<f>1.50</f><b>false</b><neg>-4</neg><big>99999999999999999999</big>)"
                          R"(<t>True</t></m>)";
  CHECK(from_xml(xml) == json(R"({"m":{"@n":"12","@ok":"true","i":"12","d":"1.5","z":"08123",
      "e":"1e3","f":"1.50","b":"false","neg":"-4","big":"99999999999999999999","t":"True"}})"));
  TransformOptions typed;
  typed.infer_types = true;
  const Json value = from_xml(xml, typed);
  CHECK(value == json(R"({"m":{"@n":12,"@ok":true,"i":12,"d":1.5,"z":"08123","e":"1e3",
      "f":"1.50","b":false,"neg":-4,"big":"99999999999999999999","t":"True"}})"));
  CHECK(value.at_pointer("/m/i")->is_int());
  CHECK(value.at_pointer("/m/d")->is_double());
}

TEST_CASE("transform: xml_array_elements make single elements arrays") {
  TransformOptions o;
  o.xml_array_elements = {"permit"};
  CHECK(from_xml("<permits><permit>a</permit></permits>", o) ==
        json(R"({"permits":{"permit":["a"]}})"));
  CHECK(from_xml("<permits><permit>a</permit><permit>b</permit></permits>", o) ==
        json(R"({"permits":{"permit":["a","b"]}})"));
}

TEST_CASE("transform: namespaces keep their prefixes and xmlns attributes") {
  const Json value =
      from_xml(R"(<gml:Point xmlns:gml="http://www.opengis.net/gml" srsName="EPSG:4326">)"
               R"(<gml:pos>45.42 -75.69</gml:pos></gml:Point>)");
  CHECK(value == json(R"({"gml:Point":{"@xmlns:gml":"http://www.opengis.net/gml",
      "@srsName":"EPSG:4326","gml:pos":"45.42 -75.69"}})"));
  CHECK(from_xml(to_xml(value)) == value);
  // A default namespace is an ordinary attribute too.
  CHECK(from_xml(R"(<a xmlns="urn:x"><b/></a>)") == json(R"({"a":{"@xmlns":"urn:x","b":null}})"));
}

TEST_CASE("transform: CDATA, references, comments and mixed content") {
  CHECK(from_xml("<s><![CDATA[a < b && c]]></s>") == json(R"({"s":"a < b && c"})"));
  CHECK(from_xml("<s>x<![CDATA[<y>]]>z</s>") == json(R"({"s":"x<y>z"})"));
  CHECK(from_xml("<s>&lt;&amp;&gt;&quot;&apos;&#65;&#x42;&#x1F600;</s>") ==
        json(R"({"s":"<&>\"'AB\ud83d\ude00"})"));
  CHECK(from_xml("<!-- c --><s><!-- inner -->t<?pi data?></s><!-- after -->") ==
        json(R"({"s":"t"})"));
  // Mixed content: the text segments join, in order, as "#text"; where they stood is lost.
  CHECK(from_xml("<p>Hello <b>world</b>, again</p>") ==
        json(R"({"p":{"#text":"Hello , again","b":"world"}})"));
  // Line ends in text are normalised to LF by XML itself.
  CHECK(from_xml("<s>a\r\nb</s>") == json(R"({"s":"a\nb"})"));
  // Other encodings are converted to UTF-8.
  CHECK(from_xml("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><s>caf\xE9</s>") ==
        json(R"({"s":"café"})"));
}

TEST_CASE("transform: malformed XML is refused with line and column") {
  const std::string unclosed = error_of(xml_to_json("<a>\n  <b>text</a>"));
  CHECK(contains(unclosed, "line 2, column"));
  CHECK(contains(unclosed, "mismatched tag"));
  CHECK(contains(error_of(xml_to_json("")), "line 1"));
  CHECK(contains(error_of(xml_to_json("<a/><b/>")), "junk after document element"));
  CHECK(contains(error_of(xml_to_json("<a x='1' x='2'/>")), "duplicate attribute"));
  CHECK(contains(error_of(xml_to_json("<a>&nbsp;</a>")), "undefined entity"));
  CHECK(contains(error_of(xml_to_json("not xml")), "not well-formed"));
}

// ---- Security -----------------------------------------------------------------------------

TEST_CASE("transform: billion laughs is refused before any entity is expanded") {
  std::string xml = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n";
  for (int i = 1; i <= 9; ++i) {
    xml += " <!ENTITY lol" + std::to_string(i) + " \"";
    for (int k = 0; k < 10; ++k) xml += i == 1 ? "&lol;" : "&lol" + std::to_string(i - 1) + ";";
    xml += "\">\n";
  }
  xml += "]>\n<lolz>&lol9;</lolz>";
  const auto start = std::chrono::steady_clock::now();
  const auto result = xml_to_json(xml);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  const std::string message = error_of(result);
  CHECK(contains(message, "DOCTYPE"));
  CHECK(contains(message, "line 2, column 1"));
  CHECK(elapsed < std::chrono::milliseconds(100));
  CHECK_FALSE(transform_body(xml, BodyFormat::kXml, BodyFormat::kJson, {}).ok());
}

TEST_CASE("transform: external entities and every DOCTYPE are refused") {
  const char* cases[] = {
      "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>"
      "<r>&xxe;</r>",
      "<!DOCTYPE r SYSTEM \"file:///etc/passwd\"><r/>",
      "<!DOCTYPE r PUBLIC \"-//x//y\" \"http://127.0.0.1:9/evil.dtd\"><r/>",
      "<!DOCTYPE r [<!ENTITY % p SYSTEM \"file:///etc/passwd\"> %p;]><r/>",
      "<!DOCTYPE r [<!ATTLIST r a CDATA \"injected\">]><r/>",
      "<!DOCTYPE r><r/>",
  };
  for (const char* xml : cases) {
    CAPTURE(xml);
    const std::string message = error_of(xml_to_json(xml));
    CHECK(contains(message, "DOCTYPE"));
    CHECK_FALSE(contains(message, "root:"));  // nothing of /etc/passwd leaks into the error
  }
}

TEST_CASE("transform: the depth limit holds for XML in and XML out") {
  TransformOptions o;
  o.max_depth = 8;
  std::string ok_xml, deep_xml;
  for (int i = 0; i < 8; ++i) ok_xml += "<e>";
  for (int i = 0; i < 8; ++i) ok_xml += "</e>";
  CHECK(xml_to_json(ok_xml, o).ok());
  for (int i = 0; i < 9; ++i) deep_xml += "<e>";
  const std::string message = error_of(xml_to_json(deep_xml, o));
  CHECK(contains(message, "deeper than 8"));
  CHECK(contains(message, "line 1, column 25"));
  // A very deep document under the default limit fails fast, without recursion.
  std::string hostile;
  for (int i = 0; i < 200000; ++i) hostile += "<a>";
  CHECK(contains(error_of(xml_to_json(hostile)), "deeper than 64"));

  Json deep = "x";
  for (int i = 0; i < 9; ++i) deep = Json::object({{"e", std::move(deep)}});
  CHECK(contains(error_of(json_to_xml(deep, o)), "deeper than 8"));
  Json fits = "x";
  for (int i = 0; i < 8; ++i) fits = Json::object({{"e", std::move(fits)}});
  CHECK(from_xml(to_xml(fits, o), o) == fits);
}

TEST_CASE("transform: size limits refuse large bodies and large outputs") {
  TransformOptions o;
  o.max_input_bytes = 16;
  CHECK(contains(error_of(xml_to_json("<a>0123456789abcdef</a>", o), ErrorCode::kResourceExhausted),
                 "max_input_bytes"));
  CHECK(contains(error_of(csv_to_json("a\n0123456789abcdef\n", o), ErrorCode::kResourceExhausted),
                 "max_input_bytes"));
  CHECK(error_of(
            transform_body(R"({"a":"0123456789abcdef"})", BodyFormat::kJson, BodyFormat::kXml, o),
            ErrorCode::kResourceExhausted)
            .size() > 0);
  CHECK(transform_body("<a>01234567</a>", BodyFormat::kXml, BodyFormat::kJson, o).ok());

  // CSV -> JSON repeats the header in every row; the output limit stops the growth.
  TransformOptions out_limit;
  out_limit.max_output_bytes = 4096;
  std::string csv = std::string(1000, 'h') + "\n";
  for (int i = 0; i < 100; ++i) csv += "1\n";
  CHECK(contains(error_of(csv_to_json(csv, out_limit), ErrorCode::kResourceExhausted),
                 "max_output_bytes"));
  // JSON -> XML repeats a key for every array item.
  Json many = Json::array();
  for (int i = 0; i < 1000; ++i) many.push_back(1);
  const Json doc = Json::object({{"r", Json::object({{std::string(200, 'k'), many}})}});
  CHECK(contains(error_of(json_to_xml(doc, out_limit), ErrorCode::kResourceExhausted),
                 "max_output_bytes"));
  // JSON -> CSV: sparse rows make a wide table.
  Json sparse = Json::array();
  for (int i = 0; i < 200; ++i) sparse.push_back(Json::object({{"k" + std::to_string(i), 1}}));
  CHECK(contains(error_of(json_to_csv(sparse, out_limit), ErrorCode::kResourceExhausted),
                 "max_output_bytes"));
}

// ---- JSON -> XML ------------------------------------------------------------------------

TEST_CASE("transform: JSON maps to XML as the inverse of the convention") {
  const auto o = no_declaration();
  CHECK(to_xml(json(R"({"permit":"P-1"})"), o) == "<permit>P-1</permit>");
  CHECK(to_xml(json(R"({"permit":{"@id":7,"@kind":"road","#text":"open"}})"), o) ==
        R"(<permit id="7" kind="road">open</permit>)");
  CHECK(to_xml(json(R"({"r":{"tag":["a","b"],"n":null,"x":1.5,"y":true,"z":-3}})"), o) ==
        "<r><tag>a</tag><tag>b</tag><n/><x>1.5</x><y>true</y><z>-3</z></r>");
  CHECK(to_xml(json(R"({"r":{"@a":"1"}})"), o) == R"(<r a="1"/>)");
  CHECK(to_xml(json(R"({"r":{"@a":null,"#text":null}})"), o) == "<r/>");  // null = absent
  CHECK(to_xml(json(R"({"r":{"e":[]}})"), o) == "<r/>");                  // no items
  CHECK(to_xml(json(R"({"r":""})"), o) == "<r></r>");
  CHECK(to_xml(json(R"({"r":{"e":2.0}})"), o) == "<r><e>2.0</e></r>");
  CHECK(to_xml(json(R"({"r":1})")) == R"(<?xml version="1.0" encoding="UTF-8"?><r>1</r>)");
}

TEST_CASE("transform: JSON documents without a single root are wrapped") {
  const auto o = no_declaration();
  CHECK(to_xml(json(R"([{"a":1},{"a":2}])"), o) ==
        "<root><item><a>1</a></item><item><a>2</a></item></root>");
  CHECK(to_xml(json(R"({"a":1,"b":2})"), o) == "<root><a>1</a><b>2</b></root>");
  CHECK(to_xml(json(R"({"a":[1,2]})"), o) == "<root><a>1</a><a>2</a></root>");
  CHECK(to_xml(json("\"text\""), o) == "<root>text</root>");
  CHECK(to_xml(json("null"), o) == "<root/>");
  CHECK(to_xml(json("[]"), o) == "<root></root>");
  TransformOptions named = o;
  named.xml_root_name = "permits";
  named.xml_item_name = "permit";
  CHECK(to_xml(json(R"([1])"), named) == "<permits><permit>1</permit></permits>");
  named.xml_root_name = "1bad";
  CHECK(contains(error_of(json_to_xml(json("[1]"), named)), "xml_root_name '1bad'"));
}

TEST_CASE("transform: text and attribute values are escaped") {
  const auto o = no_declaration();
  const Json value =
      json(R"({"r":{"@q":"a\"b'c<d>&e\tf\ng\rh","#text":"x < y && z > w ]]> \" ' \r\n end"}})");
  const std::string xml = to_xml(value, o);
  CHECK(
      xml ==
      R"(<r q="a&quot;b'c&lt;d&gt;&amp;e&#9;f&#10;g&#13;h">x &lt; y &amp;&amp; z &gt; w ]]&gt; " ' &#13;)"
      "\n end</r>");
  CHECK(from_xml(xml) == value);
  CHECK(from_xml(to_xml(json(R"({"r":"<script>alert(1)</script>"})"))) ==
        json(R"({"r":"<script>alert(1)</script>"})"));
  CHECK(from_xml(to_xml(json(R"({"r":"emoji \ud83d\ude00 é"})"))) ==
        json(R"({"r":"emoji \ud83d\ude00 é"})"));
}

TEST_CASE("transform: JSON that XML cannot carry is refused with its JSON path") {
  CHECK(contains(error_of(json_to_xml(json(R"({"r":{"a b":1}})"))), "'a b' at /r/a b"));
  CHECK(contains(error_of(json_to_xml(json(R"({"r":{"items":[{"1st":1}]}})"))),
                 "'1st' at /r/items/0/1st"));
  CHECK(contains(error_of(json_to_xml(json(R"({"r":{"":1}})"))), "'' at /r/"));
  CHECK(contains(error_of(json_to_xml(json(R"({"r":{"#comment":1}})"))), "#comment"));
  CHECK(contains(error_of(json_to_xml(json(R"({"r":{"a/b":1}})"))), "/r/a~1b"));
  CHECK(contains(error_of(json_to_xml(json(R"({"<x>":1})"))), "'<x>' at /<x>"));
  CHECK(contains(error_of(json_to_xml(json(R"({"r":{"@1":1}})"))), "/r/@1"));
  CHECK(contains(error_of(json_to_xml(json(R"({"r":{"@a":{"b":1}}})"))),
                 "attribute at /r/@a is an object"));
  CHECK(contains(error_of(json_to_xml(json(R"({"r":{"@a":[1]}})"))), "is an array"));
  CHECK(contains(error_of(json_to_xml(json(R"({"r":{"#text":{"b":1}}})"))), "/r/#text"));
  CHECK(contains(error_of(json_to_xml(json(R"({"r":{"m":[[1,2]]}})"))),
                 "/r/m/0 is an array inside an array"));
  CHECK(
      contains(error_of(json_to_xml(json(R"({"r":{"c":"bell\u0007"}})"))), "/r/c contains U+0007"));
  CHECK(contains(error_of(json_to_xml(json(R"({"r":{"@c":"nul\u0000"}})"))),
                 "/r/@c contains U+0000"));
  CHECK(contains(error_of(json_to_xml(json(R"({"r":"\uffff"})"))), "U+FFFF"));
  // Unicode names are XML names.
  CHECK(to_xml(json(R"({"café":{"@é":"1"}})"), no_declaration()) == R"(<café é="1"/>)");
}

TEST_CASE("transform: JSON -> XML -> JSON round trips") {
  const char* documents[] = {
      R"({"permit":"P-1"})",
      R"({"permit":null})",
      R"({"permits":{"@count":"2","permit":[{"@id":"1","name":"A & B","tags":{"tag":["x","y"]}},
          {"@id":"2","name":"<C>","tags":null}]}})",
      R"({"p":{"@lang":"fr","#text":"Bonjour","b":"monde"}})",
      R"({"ns:doc":{"@xmlns:ns":"urn:civic","ns:item":["1","2","3"],"ns:empty":null}})",
      R"({"r":{"text":"line1\nline2\r\nline3\ttab","@attr":"  spaced\nnew\tline  "}})",
      R"({"r":{"deep":{"a":{"b":{"c":{"d":"e"}}}}}})",
      R"({"r":{"ws":"   "}})",
  };
  for (const char* text : documents) {
    CAPTURE(text);
    const Json value = json(text);
    CHECK(from_xml(to_xml(value)) == value);
  }
  // With inferred types, numbers and booleans survive the trip too.
  TransformOptions typed;
  typed.infer_types = true;
  const Json numbers = json(R"({"m":{"@n":1,"i":[1,-2,3],"d":2.5,"w":2.0,"b":[true,false],
      "s":"08123","e":"1e3","x":1e300}})");
  CHECK(from_xml(to_xml(numbers, typed), typed) == numbers);
  // What the convention cannot carry: one-item arrays become single values, "" becomes null
  // (unless xml_array_elements says so).
  CHECK(from_xml(to_xml(json(R"({"r":{"a":["x"],"e":""}})"))) ==
        json(R"({"r":{"a":"x","e":null}})"));
  TransformOptions arrays;
  arrays.xml_array_elements = {"a"};
  CHECK(from_xml(to_xml(json(R"({"r":{"a":["x"]}})")), arrays) == json(R"({"r":{"a":["x"]}})"));
}

// ---- CSV ------------------------------------------------------------------------------------

TEST_CASE("transform: JSON -> CSV writes a header in first-seen key order and quotes RFC 4180") {
  CHECK(to_csv(json(R"([{"a":1,"b":"x"},{"b":"y","c":true},{"a":2.5,"c":null}])")) ==
        "a,b,c\r\n1,x,\r\n,y,true\r\n2.5,,\r\n");
  CHECK(to_csv(json(
            R"([{"t":"has,comma","q":"say \"hi\"","n":"two\nlines","r":"cr\r","s":" sp "}])")) ==
        "t,q,n,r,s\r\n\"has,comma\",\"say \"\"hi\"\"\",\"two\nlines\",\"cr\r\", sp \r\n");
  CHECK(to_csv(json(R"([{"a,b":1}])")) == "\"a,b\"\r\n1\r\n");
  // One column: an empty cell is written as "" so that the row is not an empty line.
  CHECK(to_csv(json(R"([{"a":""},{"a":null},{"a":"x"}])")) == "a\r\n\"\"\r\n\"\"\r\nx\r\n");
  CHECK(to_csv(json("[]")).empty());
  CHECK(to_csv(json("[{}]")).empty());
  CHECK(to_csv(json(R"({"a":1})")) == "a\r\n1\r\n");  // one object is one row
  TransformOptions lf;
  lf.csv_crlf = false;
  CHECK(to_csv(json(R"([{"a":1},{"a":2}])"), lf) == "a\n1\n2\n");
}

TEST_CASE("transform: JSON -> CSV refuses nested values naming the row and key") {
  const std::string message =
      error_of(json_to_csv(json(R"([{"a":1},{"a":2,"addr":{"city":"Ottawa"}}])")));
  CHECK(contains(message, "row 2, key 'addr'"));
  CHECK(contains(message, "/1/addr"));
  CHECK(contains(message, "is an object"));
  CHECK(contains(error_of(json_to_csv(json(R"([{"tags":["a"]}])"))), "row 1, key 'tags'"));
  CHECK(contains(error_of(json_to_csv(json(R"([{"a":1},"x"])"))), "row 2 (JSON /1) is a string"));
  CHECK(contains(error_of(json_to_csv(json("42"))), "is a number"));
  TransformOptions as_json;
  as_json.csv_nested_as_json = true;
  CHECK(to_csv(json(R"([{"a":1,"addr":{"city":"Ottawa","n":[1,2]}}])"), as_json) ==
        "a,addr\r\n1,\"{\"\"city\"\":\"\"Ottawa\"\",\"\"n\"\":[1,2]}\"\r\n");
}

TEST_CASE("transform: CSV -> JSON reads a header, quotes, line ends and a BOM") {
  CHECK(from_csv("a,b\n1,2\n") == json(R"([{"a":"1","b":"2"}])"));
  CHECK(from_csv("a,b\r\n1,2\r\n3,4") == json(R"([{"a":"1","b":"2"},{"a":"3","b":"4"}])"));
  CHECK(from_csv("a,b\r1,2\r") == json(R"([{"a":"1","b":"2"}])"));  // old Mac line ends
  CHECK(from_csv("\xEF\xBB\xBFid,name\n1,Zoë\n") == json(R"([{"id":"1","name":"Zoë"}])"));
  CHECK(from_csv("a,b\n\"x,y\",\"say \"\"hi\"\"\"\n") == json(R"([{"a":"x,y","b":"say \"hi\""}])"));
  CHECK(from_csv("a,b\n\"multi\r\nline\",\"\"\n") == json(R"([{"a":"multi\r\nline","b":""}])"));
  CHECK(from_csv("a,b,c\n,,\n") == json(R"([{"a":"","b":"","c":""}])"));
  CHECK(from_csv("a\n\"\"\n\nx\n\n") == json(R"([{"a":""},{"a":"x"}])"));  // blank lines skipped
  CHECK(from_csv(" a , b \n 1 , 2 \n") == json(R"([{" a ":" 1 "," b ":" 2 "}])"));  // spaces kept
  CHECK(from_csv("") == json("[]"));
  CHECK(from_csv("a,b\n") == json("[]"));
  CHECK(from_csv("\xEF\xBB\xBF") == json("[]"));
}

TEST_CASE("transform: CSV -> JSON errors name the line") {
  CHECK(contains(error_of(csv_to_json("a,b\n1,2\n3\n")),
                 "CSV line 3 has 1 field, but the header (line 1) has 2"));
  CHECK(contains(error_of(csv_to_json("a,b\n\"x\ny\",2\n1,2,3\n")), "CSV line 4 has 3 fields"));
  CHECK(contains(error_of(csv_to_json("a,b\n1,\"open\n\n")),
                 "CSV line 2, field 2: the quoted field is not closed"));
  CHECK(contains(error_of(csv_to_json("a\n\"x\"y\n")),
                 "CSV line 2, field 1: 'y' follows the closing quote"));
  CHECK(contains(error_of(csv_to_json("a,b\n1,37.8\"N\n")),
                 "CSV line 2, field 2: a '\"' inside an unquoted field"));
  CHECK(contains(error_of(csv_to_json("a,b,a\n")), "column 'a' twice (fields 1 and 3)"));
  CHECK(contains(error_of(csv_to_json("a\nok\n\xC3\x28\n")), "CSV line 3: byte"));
  TransformOptions lenient;
  lenient.csv_lenient_quotes = true;
  CHECK(from_csv("a,b\n1,37.8\"N\n", lenient) == json(R"([{"a":"1","b":"37.8\"N"}])"));
  CHECK(from_csv("a\n\"x\"y\n", lenient) == json(R"([{"a":"xy"}])"));
}

TEST_CASE("transform: CSV cells are strings unless types are inferred") {
  const std::string csv = "zip,n,d,b,e,neg,empty\n08123,12,1.5,true,1e3,-7,\n";
  CHECK(from_csv(csv) ==
        json(R"([{"zip":"08123","n":"12","d":"1.5","b":"true","e":"1e3","neg":"-7","empty":""}])"));
  TransformOptions typed;
  typed.infer_types = true;
  CHECK(from_csv(csv, typed) ==
        json(R"([{"zip":"08123","n":12,"d":1.5,"b":true,"e":"1e3","neg":-7,"empty":""}])"));
}

TEST_CASE("transform: JSON -> CSV -> JSON round trips") {
  const Json rows = json(R"([{"id":"1","name":"A, \"B\"","note":"two\r\nlines"},
      {"id":"2","name":"","note":"x\ny"},{"id":"3","name":" sp ","note":"é ✓"}])");
  CHECK(from_csv(to_csv(rows)) == rows);
  TransformOptions lf;
  lf.csv_crlf = false;
  CHECK(from_csv(to_csv(rows, lf)) == rows);
  // A key that starts with U+FEFF is quoted, so it is not read as a byte order mark.
  const Json bom_key = json(R"([{"\ufeffx":"1"}])");
  CHECK(to_csv(bom_key) == "\"\xEF\xBB\xBFx\"\r\n1\r\n");
  CHECK(from_csv(to_csv(bom_key)) == bom_key);
  const Json single = json(R"([{"a":""},{"a":"x"},{"a":""}])");
  CHECK(from_csv(to_csv(single)) == single);
  TransformOptions typed;
  typed.infer_types = true;
  const Json numbers = json(R"([{"n":1,"d":2.5,"b":false,"s":"08123"}])");
  CHECK(from_csv(to_csv(numbers), typed) == numbers);
}

// csv-spectrum (github.com/max-mapper/csv-spectrum, BSD-2-Clause), read from the shared
// conformance folder and never edited. location_coordinates is inconsistent upstream (its
// expected JSON is an object, not an array, and has another phone number than the CSV; see its
// README), and has a bare '"' in an unquoted field: it is read with csv_lenient_quotes and
// checked field by field, the phone number against the CSV.
TEST_CASE("transform: csv-spectrum conformance cases") {
  const fs::path dir = fs::path(CIVICBUS_SHARED_DIR) / "conformance" / "csv-spectrum";
  REQUIRE_MESSAGE(fs::exists(dir / "csvs"), "missing ", dir.string());
  std::vector<fs::path> cases;
  for (const auto& entry : fs::directory_iterator(dir / "csvs")) cases.push_back(entry.path());
  std::sort(cases.begin(), cases.end());
  int passed = 0;
  int exact = 0;
  for (const fs::path& csv_path : cases) {
    const std::string name = csv_path.stem().string();
    CAPTURE(name);
    const std::string csv = testing::read_file(csv_path.string());
    const Json expected = json(testing::read_file((dir / "json" / (name + ".json")).string()));
    if (name == "location_coordinates") {
      CHECK_FALSE(csv_to_json(csv).ok());  // strict RFC 4180 refuses 37.8"N
      TransformOptions lenient;
      lenient.csv_lenient_quotes = true;
      const Json got = from_csv(csv, lenient);
      REQUIRE(got.is_array());
      REQUIRE(got.size() == 1);
      Json want = expected;
      want.set("Contact Phone Number", "2095257564");  // the CSV's value; see the README
      const bool ok = got.as_array()[0] == want;
      CHECK_MESSAGE(ok, got.dump());
      if (ok) ++passed;
      continue;
    }
    auto got = csv_to_json(csv);
    CHECK_MESSAGE(got.ok(), got.status().to_string());
    if (!got.ok()) continue;
    const bool ok = *got == expected;
    CHECK_MESSAGE(ok, got->dump(), " != ", expected.dump());
    if (ok) ++passed, ++exact;
    // And back: writing the rows and reading them again gives the same rows.
    CHECK(from_csv(to_csv(*got)) == *got);
  }
  const std::string line =
      "csv-spectrum: " + std::to_string(passed) + "/" + std::to_string(cases.size()) +
      " cases pass (" + std::to_string(exact) +
      " exactly as upstream expects; location_coordinates with csv_lenient_quotes and the "
      "CSV's own phone number)";
  MESSAGE(line);
  std::printf("%s\n", line.c_str());
  CHECK(cases.size() == 12);
  CHECK(passed == static_cast<int>(cases.size()));
}

// ---- transform_body -------------------------------------------------------------------------

std::string transform(std::string_view body, BodyFormat from, BodyFormat to,
                      const TransformOptions& options = {}) {
  auto result = transform_body(body, from, to, options);
  REQUIRE_MESSAGE(result.ok(), result.status().to_string());
  return std::move(result).value();
}

TEST_CASE("transform: transform_body converts between every pair of formats") {
  const auto o = no_declaration();
  const std::string json_text = R"([{"id":"1","name":"Anne"},{"id":"2","name":"Bo, Jr."}])";
  const std::string xml = transform(json_text, BodyFormat::kJson, BodyFormat::kXml, o);
  CHECK(xml ==
        "<root><item><id>1</id><name>Anne</name></item><item><id>2</id><name>Bo, Jr.</name>"
        "</item></root>");
  CHECK(json(transform(xml, BodyFormat::kXml, BodyFormat::kJson)) ==
        json(R"({"root":{"item":[{"id":"1","name":"Anne"},{"id":"2","name":"Bo, Jr."}]}})"));
  const std::string csv = transform(xml, BodyFormat::kXml, BodyFormat::kCsv);
  CHECK(csv == "id,name\r\n1,Anne\r\n2,\"Bo, Jr.\"\r\n");
  CHECK(json(transform(csv, BodyFormat::kCsv, BodyFormat::kJson)) == json(json_text));
  CHECK(transform(csv, BodyFormat::kCsv, BodyFormat::kXml, o) == xml);
  CHECK(transform(json_text, BodyFormat::kJson, BodyFormat::kCsv) == csv);
  // One row survives CSV -> XML -> CSV (a single <item> is an object, not an array).
  CHECK(transform(transform("a,b\n1,2\n", BodyFormat::kCsv, BodyFormat::kXml), BodyFormat::kXml,
                  BodyFormat::kCsv) == "a,b\r\n1,2\r\n");
  CHECK(transform("<rows/>", BodyFormat::kXml, BodyFormat::kCsv).empty());
  CHECK(transform(R"(<rows n="1"><row a="1"><b>2</b></row></rows>)", BodyFormat::kXml,
                  BodyFormat::kCsv) == "@a,b\r\n1,2\r\n");
  // The same format on both sides passes the body through untouched.
  CHECK(transform("not json", BodyFormat::kJson, BodyFormat::kJson) == "not json");
}

TEST_CASE("transform: transform_body errors say what is wrong") {
  CHECK(contains(error_of(transform_body("{\"a\":", BodyFormat::kJson, BodyFormat::kXml, {})),
                 "the JSON body is not valid JSON"));
  CHECK(contains(
      error_of(transform_body("<r><a>1</a><b>2</b></r>", BodyFormat::kXml, BodyFormat::kCsv, {})),
      "child elements of one name, but <r> has <a>, <b>"));
  CHECK(contains(error_of(transform_body("<r>text</r>", BodyFormat::kXml, BodyFormat::kCsv, {})),
                 "only text"));
  CHECK(contains(error_of(transform_body("<r><row><a><b>1</b></a></row></r>", BodyFormat::kXml,
                                         BodyFormat::kCsv, {})),
                 "row 1, key 'a'"));
  CHECK(contains(error_of(transform_body("a,b\n1\n", BodyFormat::kCsv, BodyFormat::kXml, {})),
                 "CSV line 2"));
}

}  // namespace
}  // namespace civicbus::gateway
