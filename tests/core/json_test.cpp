#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>

#include "civicbus/core/json.hpp"

namespace civicbus {
namespace {

Json parse_ok(std::string_view text) {
  auto parsed = Json::parse(text);
  REQUIRE_MESSAGE(parsed.ok(), parsed.status().to_string());
  return std::move(parsed).value();
}

std::string parse_error(std::string_view text) {
  auto parsed = Json::parse(text);
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.status().code() == ErrorCode::kInvalidArgument);
  return parsed.status().message();
}

TEST_CASE("json: parses every kind of value") {
  Json doc = parse_ok(R"({"id":"evt-1","n":3,"x":2.5,"ok":true,"none":null,"tags":["a","b"],
                          "nested":{"k":-7}})");
  REQUIRE(doc.is_object());
  CHECK(doc.size() == 7);
  CHECK(doc.get_string("id") == "evt-1");
  CHECK(doc.find("n")->is_int());
  CHECK(doc.get_int("n") == 3);
  CHECK(doc.find("x")->is_double());
  CHECK(doc.find("x")->as_double() == 2.5);
  CHECK(doc.get_bool("ok"));
  CHECK(doc.find("none")->is_null());
  CHECK(doc.find("tags")->as_array().size() == 2);
  CHECK(doc.find("nested")->get_int("k") == -7);
  CHECK(doc.find("absent") == nullptr);
  CHECK(doc.get_string("absent", "fallback") == "fallback");
  CHECK(doc.get_int("id", 42) == 42);  // wrong type -> fallback
}

TEST_CASE("json: objects keep insertion order") {
  Json doc = parse_ok(R"({"zeta":1,"alpha":2,"mid":3})");
  CHECK(doc.as_object()[0].first == "zeta");
  CHECK(doc.as_object()[2].first == "mid");
  CHECK(doc.dump() == R"({"zeta":1,"alpha":2,"mid":3})");
}

TEST_CASE("json: duplicate member names keep the last value in the first position") {
  Json doc = parse_ok(R"({"a":1,"b":2,"a":3})");
  CHECK(doc.size() == 2);
  CHECK(doc.dump() == R"({"a":3,"b":2})");

  // Large objects take the hashed path.
  std::string text = "{";
  for (int i = 0; i < 40; ++i) text += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  text += R"("k5":"last","k39":"end"})";
  Json big = parse_ok(text);
  CHECK(big.size() == 40);
  CHECK(big.get_string("k5") == "last");
  CHECK(big.get_string("k39") == "end");
  CHECK(big.as_object()[5].first == "k5");
}

TEST_CASE("json: numbers") {
  CHECK(parse_ok("0").is_int());
  CHECK(parse_ok("-0").is_int());
  CHECK(parse_ok("9223372036854775807").as_int() == std::numeric_limits<std::int64_t>::max());
  CHECK(parse_ok("-9223372036854775808").as_int() == std::numeric_limits<std::int64_t>::min());
  // Beyond int64: a double.
  Json big = parse_ok("9223372036854775808");
  CHECK(big.is_double());
  CHECK(big.as_double() == 9223372036854775808.0);
  Json huge = parse_ok("18446744073709551616");  // beyond uint64 too
  CHECK(huge.is_double());
  CHECK(huge.as_double() == 18446744073709551616.0);
  Json negative_huge = parse_ok("-123456789012345678901234567890");
  CHECK(negative_huge.is_double());
  CHECK(negative_huge.as_double() == doctest::Approx(-1.2345678901234568e29));
  CHECK(parse_ok("1.0").is_double());
  CHECK(parse_ok("1e2").is_double());
  CHECK(parse_ok("1e2").as_double() == 100.0);
  CHECK(parse_ok("1E-2").as_double() == 0.01);
  CHECK(parse_ok("[1.5e308]").as_array()[0].as_double() == 1.5e308);
  CHECK(parse_error("1e400").find("number") != std::string::npos);
  CHECK(parse_error("01").find("leading zeros") != std::string::npos);
  CHECK(parse_error("1.").find("decimal point") != std::string::npos);
  CHECK(parse_error("-").find("digit") != std::string::npos);
  CHECK(parse_error("+1").find("byte 0") != std::string::npos);
}

TEST_CASE("json: integral checks") {
  CHECK(Json(3).is_integral());
  CHECK(Json(3.0).is_integral());
  CHECK_FALSE(Json(3.5).is_integral());
  CHECK_FALSE(Json(std::numeric_limits<double>::infinity()).is_integral());
  CHECK_FALSE(Json("3").is_integral());
  CHECK(Json(5).as_double() == 5.0);
  Json unsigned_big(std::numeric_limits<unsigned long long>::max());
  CHECK(unsigned_big.is_double());
  Json unsigned_small(42ULL);
  CHECK(unsigned_small.is_int());
}

TEST_CASE("json: doubles dump so that they round-trip with their type") {
  CHECK(Json(1.0).dump() == "1.0");
  CHECK(Json(-0.0).dump() == "-0.0");
  CHECK(Json(0.1).dump() == "0.1");
  CHECK(Json(2.5).dump() == "2.5");
  CHECK(Json(1e300).dump() == "1e+300");
  CHECK(Json(std::nan("")).dump() == "null");
  CHECK(Json(std::numeric_limits<double>::infinity()).dump() == "null");
  for (double d : {0.1, 1.0 / 3.0, 123456.789, 1e-310, 5e-324, 1.7976931348623157e308, -2.0,
                   9007199254740993.0, 1e21}) {
    Json back = parse_ok(Json(d).dump());
    CHECK(back.is_double());
    CHECK(back.as_double() == d);
  }
  CHECK(parse_ok("1.0").dump() == "1.0");
  CHECK(parse_ok("100").dump() == "100");
  CHECK(Json(std::numeric_limits<std::int64_t>::min()).dump() == "-9223372036854775808");
}

TEST_CASE("json: round trips compact and pretty") {
  const std::string compact =
      R"({"a":[1,2.5,"x",null,true,false,{}],"b":{"c":[],"d":{"e":"f"}},"g":""})";
  Json doc = parse_ok(compact);
  CHECK(doc.dump() == compact);
  const std::string pretty = doc.dump(2);
  CHECK(pretty ==
        "{\n"
        "  \"a\": [\n"
        "    1,\n"
        "    2.5,\n"
        "    \"x\",\n"
        "    null,\n"
        "    true,\n"
        "    false,\n"
        "    {}\n"
        "  ],\n"
        "  \"b\": {\n"
        "    \"c\": [],\n"
        "    \"d\": {\n"
        "      \"e\": \"f\"\n"
        "    }\n"
        "  },\n"
        "  \"g\": \"\"\n"
        "}");
  CHECK(parse_ok(pretty) == doc);
  std::string appended = "prefix:";
  doc.dump_to(appended);
  CHECK(appended == "prefix:" + compact);
}

TEST_CASE("json: string escapes and unicode") {
  Json s = parse_ok(R"("tab\there \"q\" back\\slash \/ \b\f\n\r \u00e9 \u20AC")");
  CHECK(s.as_string() == "tab\there \"q\" back\\slash / \b\f\n\r \xC3\xA9 \xE2\x82\xAC");
  // Surrogate pair for U+1D11E (musical G clef).
  CHECK(parse_ok(R"("\uD834\uDD1E")").as_string() == "\xF0\x9D\x84\x9E");
  CHECK(parse_ok("\"\xF0\x9D\x84\x9E\"").as_string() == "\xF0\x9D\x84\x9E");
  // Lone or reversed surrogates are not text.
  CHECK(parse_error(R"("\uD834")").find("string") != std::string::npos);
  CHECK(parse_error(R"("\uDD1E")").find("surrogate") != std::string::npos);
  CHECK(parse_error(R"("\uD834\u0041")").find("surrogate") != std::string::npos);
  CHECK(parse_error(R"("\x")").find("escape") != std::string::npos);
  CHECK(parse_error("\"a\x01b\"").find("byte 2") != std::string::npos);
  CHECK(parse_error("\"\xff\"").find("UTF-8") != std::string::npos);
  // Non-ASCII is written as is; control characters are escaped.
  Json text(std::string("caf\xC3\xA9 \x01\x1f\t\"\\ \xF0\x9D\x84\x9E"));
  CHECK(text.dump() == "\"caf\xC3\xA9 \\u0001\\u001f\\t\\\"\\\\ \xF0\x9D\x84\x9E\"");
  CHECK(parse_ok(text.dump()) == text);
}

TEST_CASE("json: append_json_escaped always produces valid JSON") {
  std::string out;
  append_json_escaped(out, std::string_view("a\0b", 3));
  CHECK(out == "a\\u0000b");
  out.clear();
  // A stray continuation byte, a truncated sequence and an encoded surrogate become U+FFFD.
  append_json_escaped(out, "x\x80y\xE2\x82z\xED\xA0\x80");
  CHECK(out == "x\\ufffdy\\ufffd\\ufffdz\\ufffd\\ufffd\\ufffd");
  CHECK(Json::parse("\"" + out + "\"").ok());
}

TEST_CASE("json: pointers") {
  Json doc = parse_ok(R"({"foo":["bar","baz"],"":0,"a/b":1,"c%d":2,"e^f":3,"g|h":4,"i\\j":5,
                          "k\"l":6," ":7,"m~n":8,"nested":{"list":[{"x":true}]}})");
  // The examples of RFC 6901 section 5.
  CHECK(*doc.at_pointer("") == doc);
  CHECK(*doc.at_pointer("/foo") == Json::array({"bar", "baz"}));
  CHECK(*doc.at_pointer("/foo/0") == Json("bar"));
  CHECK(*doc.at_pointer("/") == Json(0));
  CHECK(*doc.at_pointer("/a~1b") == Json(1));
  CHECK(*doc.at_pointer("/c%d") == Json(2));
  CHECK(*doc.at_pointer("/e^f") == Json(3));
  CHECK(*doc.at_pointer("/g|h") == Json(4));
  CHECK(*doc.at_pointer("/i\\j") == Json(5));
  CHECK(*doc.at_pointer("/k\"l") == Json(6));
  CHECK(*doc.at_pointer("/ ") == Json(7));
  CHECK(*doc.at_pointer("/m~0n") == Json(8));
  CHECK(doc.at_pointer("/nested/list/0/x")->as_bool());
  CHECK(doc.at_pointer("/foo/2") == nullptr);
  CHECK(doc.at_pointer("/foo/-") == nullptr);
  CHECK(doc.at_pointer("/foo/01") == nullptr);
  CHECK(doc.at_pointer("/foo/0/x") == nullptr);
  CHECK(doc.at_pointer("/missing") == nullptr);
  CHECK(doc.at_pointer("foo") == nullptr);
  CHECK(doc.at_pointer("/m~2n") == nullptr);
  CHECK(doc.at_pointer("/m~") == nullptr);
  *doc.at_pointer("/nested/list/0/x") = Json("edited");
  CHECK(doc.at_pointer("/nested/list/0/x")->as_string() == "edited");
}

TEST_CASE("json: equality treats numbers by value and ignores member order") {
  CHECK(Json(1) == Json(1.0));
  CHECK(Json(1.0) == Json(1));
  CHECK(Json(1) != Json(1.5));
  CHECK(Json(std::numeric_limits<std::int64_t>::max()) != Json(9223372036854775808.0));
  CHECK(Json(-9223372036854775807LL - 1) == Json(-9223372036854775808.0));
  CHECK(Json(0) == Json(-0.0));
  CHECK(parse_ok(R"({"a":1,"b":[1,{"c":2}]})") == parse_ok(R"({"b":[1.0,{"c":2}],"a":1.0})"));
  CHECK(parse_ok(R"({"a":1})") != parse_ok(R"({"a":1,"b":2})"));
  CHECK(parse_ok(R"([1,2])") != parse_ok(R"([2,1])"));
  CHECK(Json("1") != Json(1));
  CHECK(Json() == Json(nullptr));
  CHECK(Json(false) != Json());
  CHECK(Json::object() != Json::array());
}

TEST_CASE("json: building and editing values") {
  Json doc;
  doc.set("type", "permit.issued");
  doc["data"]["ward"] = 7;
  doc["data"]["tags"].push_back("new");
  doc["data"]["tags"].push_back(Json::object({{"k", 1}}));
  CHECK(doc.dump() == R"({"type":"permit.issued","data":{"ward":7,"tags":["new",{"k":1}]}})");
  doc.set("type", "permit.revoked");  // replaces in place
  CHECK(doc.as_object().front().first == "type");
  CHECK(doc.get_string("type") == "permit.revoked");
  CHECK(doc.erase("type"));
  CHECK_FALSE(doc.erase("type"));
  CHECK(doc.size() == 1);
  CHECK(Json(5).find("x") == nullptr);
  CHECK(Json(5).size() == 0);
  CHECK(Json::object({{"n", 2.0}}).get_int("n") == 2);
}

TEST_CASE("json: errors name the problem and the byte offset") {
  std::string message = parse_error(R"({"a" 1})");
  CHECK(message.find("invalid JSON") == 0);
  CHECK(message.find("byte 5") != std::string::npos);
  CHECK(message.find("':'") != std::string::npos);
  CHECK(parse_error("[1,2").find("end of text") != std::string::npos);
  CHECK(parse_error("[1,]").find("byte 3") != std::string::npos);
  CHECK(parse_error("[1] x").find("after the JSON value") != std::string::npos);
  CHECK(parse_error("").find("empty") != std::string::npos);
  CHECK(parse_error("  ").find("empty") != std::string::npos);
  CHECK(parse_error("nul").find("null") != std::string::npos);
  CHECK(parse_error("{'a':1}").find("byte 1") != std::string::npos);
  CHECK(parse_error("\xff").find("UTF-8") != std::string::npos);
  // Embedded NUL after a value is trailing content.
  CHECK(parse_error(std::string_view("1\0", 2)).find("byte 1") != std::string::npos);
}

TEST_CASE("json: nesting limits") {
  auto nested = [](int depth) {
    return std::string(static_cast<std::size_t>(depth), '[') +
           std::string(static_cast<std::size_t>(depth), ']');
  };
  Json deep = parse_ok(nested(1000));
  const Json* inner = &deep;
  int levels = 0;
  while (inner->is_array() && inner->size() > 0) {
    inner = &inner->as_array()[0];
    ++levels;
  }
  CHECK(levels == 999);
  CHECK(parse_ok(nested(1024)).is_array());
  std::string message = parse_error(nested(1025));
  CHECK(message.find("deep") != std::string::npos);
  CHECK(message.find("1024") != std::string::npos);
  CHECK(parse_error(nested(100000)).find("deep") != std::string::npos);
}

TEST_CASE("json: parser is reused and survives large documents") {
  std::string big = "[";
  for (int i = 0; i < 200000; ++i) big += "\"some text to make the document large\",";
  big += "0]";
  Json doc = parse_ok(big);
  CHECK(doc.size() == 200001);
  // Smaller documents afterwards still parse (the oversized parser was replaced).
  CHECK(parse_ok(R"({"a":1})").get_int("a") == 1);
  for (int i = 0; i < 100; ++i) CHECK(parse_ok("[" + std::to_string(i) + "]").as_array()[0] == Json(i));
}

}  // namespace
}  // namespace civicbus
