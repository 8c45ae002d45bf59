#include "civicbus/connect/field_mapping.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>

namespace civicbus::connect {
namespace {

Json parse(std::string_view text) {
  auto json = Json::parse(text);
  REQUIRE_MESSAGE(json.ok(), json.status().to_string());
  return *json;
}

StreamSpec assessments() {
  StreamSpec spec;
  spec.name = "assessments";
  spec.fields = {{"ROLL_NUM", FieldType::kString, false}, {"VALUE", FieldType::kString, true},
                 {"SALE_DT", FieldType::kString, true},   {"CLASS", FieldType::kString, true},
                 {"ACTIVE", FieldType::kString, true},    {"OWNER", FieldType::kJson, true},
                 {"STREET", FieldType::kString, true},    {"UNIT", FieldType::kString, true},
                 {"FLAGGED", FieldType::kBoolean, true}};
  return spec;
}

FieldMapping must_compile(const Json& mapping, const std::vector<StreamSpec>& streams) {
  auto compiled = FieldMapping::compile(mapping, streams);
  REQUIRE_MESSAGE(compiled.ok(), compiled.status().to_string());
  return *compiled;
}

// Evaluates one expression over a one-record batch.
Json eval(std::string_view expr, Json record = Json::object()) {
  Json mapping =
      Json::object({{"fields", Json::object({{"out", Json::object({{"expr", expr}})}})}});
  FieldMapping m = must_compile(mapping, {});
  RecordBatch in("s", {});
  in.append_object(record, 1);
  MappedBatch out = m.apply(in);
  REQUIRE_MESSAGE(out.errors.empty(), (out.errors.empty() ? "" : out.errors[0].reason));
  REQUIRE(out.batch.size() == 1);
  return out.batch.records[0].values[0];
}

std::string eval_error(std::string_view expr, Json record = Json::object()) {
  Json mapping =
      Json::object({{"fields", Json::object({{"out", Json::object({{"expr", expr}})}})}});
  FieldMapping m = must_compile(mapping, {});
  RecordBatch in("s", {});
  in.append_object(record, 7);
  MappedBatch out = m.apply(in);
  REQUIRE(out.errors.size() == 1);
  CHECK(out.errors[0].position == 7);
  CHECK(out.errors[0].field == "out");
  CHECK(out.batch.empty());
  return out.errors[0].reason;
}

std::string problems_text(const Json& mapping, const std::vector<StreamSpec>& streams) {
  std::string all;
  for (const MappingProblem& p : FieldMapping::check(mapping, streams)) all += p.message + "\n";
  return all;
}

TEST_CASE(
    "field mapping: renames and converts, rows that fail are reported "
    "with position") {
  const Json mapping = parse(R"js({
    "source": "assessments", "target": "property_assessment",
    "lookups": {"property_class": {"values": {"201": "residential", "340": "commercial"},
                                   "default": "other"}},
    "fields": {
      "roll_number": {"from": "ROLL_NUM", "type": "string", "required": true},
      "assessed_value": {"from": "VALUE", "type": "integer"},
      "sale_date": {"from": "SALE_DT", "type": "date", "formats": ["%d/%m/%Y", "%Y%m%d"]},
      "class": {"from": "CLASS", "lookup": "property_class"},
      "active": {"from": "ACTIVE", "type": "boolean", "default": true},
      "owner_city": {"from": "/OWNER/address/city"}
    }})js");
  FieldMapping m = must_compile(mapping, {assessments()});
  CHECK(m.source_stream() == "assessments");
  CHECK(m.target_stream() == "property_assessment");
  StreamSpec out_spec = m.target_spec();
  REQUIRE(out_spec.fields.size() == 6);
  CHECK(out_spec.fields[0] == FieldSpec{"roll_number", FieldType::kString, false});
  CHECK(out_spec.fields[2] == FieldSpec{"sale_date", FieldType::kDate, true});

  // Columns in another order than the schema's, and a short record.
  RecordBatch in("assessments", {"VALUE", "ROLL_NUM", "SALE_DT", "CLASS", "ACTIVE", "OWNER"});
  auto owner = Json::object({{"address", Json::object({{"city", "Ottawa"}})}});
  in.records.push_back({{" 450000 ", "0614-001", "30/11/2026", "201", "no", owner}, 2});
  in.records.push_back({{"12x", "0614-002", "20261130", "340", "", Json()}, 3});
  in.records.push_back({{"1", Json(), "2026-11-30", "999", "yes"}, 4});
  in.records.push_back({{Json(), "0614-004", "20260230"}, 5});
  in.records.push_back({{"77", "0614-005", "", "", Json()}, 6});

  MappedBatch out = m.apply(in);
  CHECK(out.batch.stream == "property_assessment");
  CHECK(out.batch.columns == std::vector<std::string>{"roll_number", "assessed_value", "sale_date",
                                                      "class", "active", "owner_city"});
  REQUIRE(out.batch.size() == 2);
  const Record& first = out.batch.records[0];
  CHECK(first.position == 2);
  CHECK(first.values[0] == Json("0614-001"));
  CHECK(first.values[1].is_int());
  CHECK(first.values[1] == Json(450000));
  CHECK(first.values[2] == Json("2026-11-30"));
  CHECK(first.values[3] == Json("residential"));
  CHECK(first.values[4] == Json(false));
  CHECK(first.values[5] == Json("Ottawa"));
  const Record& last = out.batch.records[1];
  CHECK(last.position == 6);
  CHECK(last.values[2].is_null());         // empty date: missing, no default
  CHECK(last.values[3] == Json("other"));  // untyped: an empty code is a value, not in the table
  CHECK(last.values[4] == Json(true));     // default
  CHECK(last.values[5].is_null());

  REQUIRE(out.errors.size() == 4);
  CHECK(out.errors[0].position == 3);
  CHECK(out.errors[0].field == "assessed_value");
  CHECK(out.errors[0].value == "12x");
  CHECK(out.errors[0].reason == "'12x' cannot be a integer: not an integer");
  CHECK(out.errors[1].position == 4);  // row 4: the required roll number is missing…
  CHECK(out.errors[1].field == "roll_number");
  CHECK(out.errors[1].reason == "required field is missing");
  CHECK(out.errors[2].position == 4);  // …and its date matches no format
  CHECK(out.errors[2].field == "sale_date");
  CHECK(out.errors[2].reason.find("matches none of the formats '%d/%m/%Y', '%Y%m%d'") !=
        std::string::npos);
  CHECK(out.errors[3].position == 5);  // 30 February
  CHECK(out.errors[3].field == "sale_date");
  // 999 is not in the table, but the table has a default: row 4 failed only on the above.
}

TEST_CASE("field mapping: every problem is reported before a run") {
  const Json mapping = parse(R"js({
    "source": "assessments",
    "lookups": {"class_codes": {"201": "residential"}},
    "fields": {
      "roll_number": {"from": "ROLL_NO", "type": "string"},
      "sale_date": {"from": "SALE_DT", "type": "date", "formats": ["%d/%q/%Y"]},
      "class": {"from": "CLASS", "lookup": "classes"},
      "flag": {"from": "FLAGGED", "type": "date"},
      "label": {"expr": "upper(STREET) + + "},
      "label2": {"expr": "uper(STREET)"},
      "label3": {"expr": "concat(STREET, UNITT)"},
      "count": {"form": "VALUE", "type": "integer"},
      "n": {"from": "VALUE", "type": "integr"},
      "d": {"from": "VALUE", "type": "integer", "default": "many"},
      "tz": {"from": "SALE_DT", "type": "timestamp", "time_zone": "Mars/Olympus_Mons"}
    }})js");
  const std::string text = problems_text(mapping, {assessments()});
  INFO(text);
  CHECK(text.find("target 'roll_number' maps from 'ROLL_NO', which stream "
                  "'assessments' does "
                  "not have (did you mean 'ROLL_NUM'?)") != std::string::npos);
  CHECK(text.find("target 'sale_date': format '%d/%q/%Y' has an unknown "
                  "directive '%q'") != std::string::npos);
  CHECK(text.find("target 'class' uses lookup table 'classes', which the "
                  "mapping does not define "
                  "(did you mean 'class_codes'?)") != std::string::npos);
  CHECK(text.find("target 'flag' maps from 'FLAGGED' (boolean), which cannot "
                  "be converted to "
                  "date") != std::string::npos);
  CHECK(text.find("target 'label': expression column 19: the expression ends "
                  "where a value was "
                  "expected") != std::string::npos);
  CHECK(text.find("target 'label2': expression column 1: unknown function "
                  "'uper' (did you mean "
                  "'upper'?)") != std::string::npos);
  CHECK(text.find("target 'label3': expression column 16: stream 'assessments' "
                  "has no field "
                  "'UNITT' (did you mean 'UNIT'?)") != std::string::npos);
  CHECK(text.find("target 'count' has an unknown key 'form' (did you mean 'from'?)") !=
        std::string::npos);
  CHECK(text.find("target 'count' has no 'from', 'expr' or 'default'") != std::string::npos);
  CHECK(text.find("target 'n': unknown field type 'integr'") != std::string::npos);
  CHECK(text.find("target 'd': the default 'many' cannot be a integer") != std::string::npos);
  CHECK(text.find("target 'tz':") != std::string::npos);
  CHECK(text.find("Mars/Olympus_Mons") != std::string::npos);

  auto compiled = FieldMapping::compile(mapping, {assessments()});
  REQUIRE_FALSE(compiled.ok());
  CHECK(compiled.status().code() == ErrorCode::kInvalidArgument);
  const auto problems = FieldMapping::check(mapping, {assessments()});
  CHECK(compiled.status().message().find(fmt::format("has {} problem(s)", problems.size())) !=
        std::string::npos);
  CHECK(problems.size() >= 12);
}

TEST_CASE("field mapping: stream selection and lookup values are checked") {
  StreamSpec other;
  other.name = "sales";
  const Json no_source = parse(R"js({"fields": {"a": {"from": "ROLL_NUM"}}})js");
  CHECK(problems_text(no_source, {assessments(), other}).find("name the one to map in 'source'") !=
        std::string::npos);
  CHECK(FieldMapping::check(no_source, {assessments()}).empty());  // one stream: taken
  const Json wrong = parse(R"js({"source": "assesments", "fields": {"a": {"from": "X"}}})js");
  CHECK(problems_text(wrong, {assessments(), other})
            .find("the mapping reads stream 'assesments', which the source "
                  "does not offer (did "
                  "you mean 'assessments'?)") != std::string::npos);
  const Json bad_table = parse(R"js({"lookups": {"t": {"a": "1", "b": "two"}},
                                   "fields": {"n": {"from": "x", "lookup": "t", "type": "integer"}}})js");
  CHECK(problems_text(bad_table, {})
            .find("lookup table 't' maps 'b' to 'two', which cannot be a "
                  "integer") != std::string::npos);
  CHECK(FieldMapping::check(parse("[1]"), {}).size() == 1);
  CHECK(FieldMapping::check(parse(R"js({"fields": {}})js"), {}).size() == 1);
}

TEST_CASE("field mapping: lookups with error, default and keep on a miss") {
  const Json mapping = parse(R"js({
    "lookups": {
      "strict": {"A": "alpha", "B": "beta"},
      "keep": {"values": {"A": "alpha"}, "on_miss": "keep"},
      "codes": {"values": {"1": true, "0": false}, "default": false}
    },
    "fields": {
      "s": {"from": "code", "lookup": "strict"},
      "k": {"from": "code", "lookup": "keep"},
      "b": {"from": "num", "lookup": "codes", "type": "boolean"}
    }})js");
  FieldMapping m = must_compile(mapping, {});
  RecordBatch in("x", {"code", "num"});
  in.records.push_back({{"A", 1}, 10});
  in.records.push_back({{"C", 7}, 11});
  MappedBatch out = m.apply(in);
  REQUIRE(out.batch.size() == 1);
  CHECK(out.batch.records[0].values == std::vector<Json>{"alpha", "alpha", true});
  REQUIRE(out.errors.size() == 1);
  CHECK(out.errors[0].position == 11);
  CHECK(out.errors[0].field == "s");
  CHECK(out.errors[0].reason == "'C' is not in lookup table 'strict'");
}

TEST_CASE("field mapping: timestamps with zones, offsets and Unix seconds") {
  const Json mapping = parse(R"js({
    "fields": {
      "local": {"from": "a", "type": "timestamp", "formats": ["%Y-%m-%d %H:%M"],
                "time_zone": "America/Toronto"},
      "offset": {"from": "b", "type": "timestamp", "formats": ["%d %b %Y %T%z", "%s"]},
      "rfc": {"from": "c", "type": "timestamp"},
      "day": {"from": "c", "type": "date", "formats": ["rfc3339", "%F"]},
      "frac": {"from": "d", "type": "timestamp", "formats": "%Y%m%dT%H%M%S.%f"}
    }})js");
  FieldMapping m = must_compile(mapping, {});
  RecordBatch in("x", {"a", "b", "c", "d"});
  in.records.push_back({{"2026-07-01 09:30", "01 Dec 2026 08:00:00-05:00",
                         "2026-11-30T23:30:00-05:00", "20261130T120000.25"},
                        1});
  in.records.push_back({{"2026-01-15  09:30", 1'700'000'000, "2026-11-30", "x"}, 2});
  MappedBatch out = m.apply(in);
  REQUIRE(out.batch.size() == 1);
  const auto& v = out.batch.records[0].values;
  CHECK(v[0] == Json("2026-07-01T13:30:00.000000Z"));  // EDT: UTC-4
  CHECK(v[1] == Json("2026-12-01T13:00:00.000000Z"));
  CHECK(v[2] == Json("2026-12-01T04:30:00.000000Z"));
  CHECK(v[3] == Json("2026-12-01"));  // the UTC day of that instant
  CHECK(v[4] == Json("2026-11-30T12:00:00.250000Z"));
  // Row 2: the Unix seconds and the double space parse, the bare date is not RFC 3339 for `rfc`
  // (but is for `day` through %F), and 'x' matches nothing.
  REQUIRE(out.errors.size() == 2);
  CHECK(out.errors[0].field == "rfc");
  CHECK(out.errors[1].field == "frac");
}

TEST_CASE("field mapping: conversions between scalar types") {
  const Json mapping = parse(R"js({
    "fields": {
      "i": {"from": "a", "type": "integer"},
      "n": {"from": "b", "type": "number"},
      "s": {"from": "c", "type": "string"},
      "b": {"from": "d", "type": "boolean"},
      "j": {"from": "e", "type": "json"},
      "raw": {"from": "e"}
    }})js");
  FieldMapping m = must_compile(mapping, {});
  RecordBatch in("x", {"a", "b", "c", "d", "e"});
  in.records.push_back({{"+42", "3.5", 12, "Y", Json::array({1, 2})}, 1});
  in.records.push_back({{7.0, 8, 2.5, 1, "x"}, 2});
  in.records.push_back({{"4.5", "1e3", true, "maybe", Json()}, 3});
  MappedBatch out = m.apply(in);
  REQUIRE(out.batch.size() == 2);
  CHECK(out.batch.records[0].values ==
        std::vector<Json>{42, 3.5, "12", true, Json::array({1, 2}), Json::array({1, 2})});
  CHECK(out.batch.records[1].values == std::vector<Json>{7, 8, "2.5", true, "x", "x"});
  CHECK(out.batch.records[1].values[0].is_int());
  REQUIRE(out.errors.size() == 2);
  CHECK(out.errors[0].field == "i");
  CHECK(out.errors[0].value == "4.5");
  CHECK(out.errors[1].field == "b");
  CHECK(out.errors[1].reason.find("not a boolean") != std::string::npos);
}

TEST_CASE("field mapping: expression precedence and associativity") {
  CHECK(eval("1 + 2 * 3") == Json(7));
  CHECK(eval("(1 + 2) * 3") == Json(9));
  CHECK(eval("10 - 4 - 3") == Json(3));
  CHECK(eval("24 / 4 / 2") == Json(3));
  CHECK(eval("7 / 2") == Json(3.5));
  CHECK(eval("7 % 4 * 2") == Json(6));
  CHECK(eval("-2 * -3") == Json(6));
  CHECK(eval("2 - -3") == Json(5));
  CHECK(eval("1 + 2 == 3") == Json(true));
  CHECK(eval("1 < 2 and 3 > 4 or 5 >= 5") == Json(true));
  CHECK(eval("true or false and false") == Json(true));  // and binds tighter
  CHECK(eval("(true or false) and false") == Json(false));
  CHECK(eval("not 1 == 2") == Json(true));  // not binds looser than ==
  CHECK(eval("not true and false") == Json(false));
  CHECK(eval("not (true and false)") == Json(true));
  CHECK(eval("!false && 1 <> 2 || false") == Json(true));
  CHECK(eval("1.5e2 + .5") == Json(150.5));
}

TEST_CASE("field mapping: expression values, strings and functions") {
  const Json r = Json::object({{"first", "  ada "},
                               {"last", "Lovelace"},
                               {"price", "12.50"},
                               {"qty", 3},
                               {"empty", Json()},
                               {"Roll No", "0614"},
                               {"city", "Montréal"}});
  CHECK(eval("upper(trim(first)) + ' ' + last", r) == Json("ADA Lovelace"));
  CHECK(eval("price * qty", r) == Json(37.5));  // numeric strings count as numbers
  CHECK(eval("qty + '1'", r) == Json("31"));    // + joins when a side is a string
  CHECK(eval("`Roll No` + \"-\" + 'it''s'", r) == Json("0614-it's"));
  CHECK(eval("concat(last, empty, '!')", r) == Json("Lovelace!"));
  CHECK(eval("last + empty", r).is_null());
  CHECK(eval("coalesce(empty, qty, 0)", r) == Json(3));
  CHECK(eval("substr(last, 2, 3)", r) == Json("ove"));
  CHECK(eval("substr(last, 5)", r) == Json("lace"));
  CHECK(eval("substr(city, 6, 2)", r) == Json("éa"));
  CHECK(eval("len(city)", r) == Json(8));
  CHECK(eval("lower(last)", r) == Json("lovelace"));
  CHECK(eval("replace(last, 'l', 'L')", r) == Json("LoveLace"));
  CHECK(eval("round(2.345, 2)", r) == Json(2.35));
  CHECK(eval("round(price)", r) == Json(13));
  CHECK(eval("round(1234, -2)", r) == Json(1200));
  CHECK(eval("if(qty > 2, 'bulk', 'single')", r) == Json("bulk"));
  CHECK(eval("if(empty, 1 / 0, 'lazy')", r) == Json("lazy"));  // the other branch never runs
  CHECK(eval("empty == null", r) == Json(true));
  CHECK(eval("empty > 1", r).is_null());
  CHECK(eval("'abc' < 'abd'", r) == Json(true));
  CHECK(eval("price == 12.5", r) == Json(true));
  CHECK(eval("missing_column", r).is_null());

  CHECK(eval_error("qty / 0", r) == "expression: division by zero");
  CHECK(eval_error("last * 2", r) == "expression: 'Lovelace' is not a number");
  CHECK(eval_error("substr(last, 'x')", r).find("whole number") != std::string::npos);
}

TEST_CASE("field mapping: expression syntax errors name the column") {
  auto message = [](std::string_view expr) {
    Json mapping =
        Json::object({{"fields", Json::object({{"t", Json::object({{"expr", expr}})}})}});
    auto problems = FieldMapping::check(mapping, {});
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].target == "t");
    return problems[0].message;
  };
  CHECK(message("(a + b") ==
        "target 't': expression column 7: expected ')' to "
        "close the '(' at column 1, found 'end "
        "of expression'");
  CHECK(message("a + 'open") == "target 't': expression column 5: unterminated string literal");
  CHECK(message("a b") ==
        "target 't': expression column 3: unexpected 'b' after a complete "
        "expression");
  CHECK(message("if(a, b)") == "target 't': expression column 1: if() takes 3 argument(s), got 2");
  CHECK(message("1 < 2 < 3") ==
        "target 't': expression column 7: comparisons "
        "do not chain; join them with 'and' or use "
        "parentheses");
  CHECK(message("a # b") == "target 't': expression column 3: unexpected character '#'");
  CHECK(message("") == "target 't': expression column 1: the expression is empty");
  CHECK(message("concat(a,)").find("column 10: expected a value") != std::string::npos);
}

TEST_CASE("field mapping: batches with different column lists, moves and constants") {
  const Json mapping = parse(R"js({"fields": {
      "id": {"from": "ID", "type": "integer"},
      "copy": {"from": "ID"},
      "name": {"from": "NAME"},
      "source": {"default": "mpac"},
      "len": {"expr": "len(NAME)"}}})js");
  FieldMapping m = must_compile(mapping, {});
  RecordBatch a("x", {"ID", "NAME"});
  a.records.push_back({{"1", "one"}, 1});
  RecordBatch b("x", {"NAME", "EXTRA", "ID"});
  b.records.push_back({{"two", true, "2"}, 2});
  MappedBatch out_a = m.apply(std::move(a));
  MappedBatch out_b = m.apply(b);
  REQUIRE(out_a.batch.size() == 1);
  REQUIRE(out_b.batch.size() == 1);
  CHECK(out_a.batch.records[0].values == std::vector<Json>{1, "1", "one", "mpac", 3});
  CHECK(out_b.batch.records[0].values == std::vector<Json>{2, "2", "two", "mpac", 3});
  // apply(const&) leaves its input as it was.
  CHECK(b.records[0].values[0] == Json("two"));
}

TEST_CASE("field mapping: ten thousand records of ten fields are renamed and converted") {
  // The speed of this mapping is a figure of pipeline_bench (--only mapping), not of a test.
  StreamSpec spec;
  spec.name = "readings";
  std::string fields;
  for (int i = 0; i < 10; ++i) {
    const std::string type = i % 3 == 0 ? "integer" : i % 3 == 1 ? "number" : "string";
    spec.fields.push_back({fmt::format("SRC_{}", i), FieldType::kString, true});
    if (!fields.empty()) fields += ",";
    fields += fmt::format(R"js("field_{}": {{"from": "SRC_{}", "type": "{}"}})js", i, i, type);
  }
  FieldMapping m = must_compile(parse("{\"fields\": {" + fields + "}}"), {spec});
  RecordBatch batch("readings", {});
  for (const FieldSpec& f : spec.fields) batch.columns.push_back(f.name);
  constexpr int kRecords = 10'000;
  for (int r = 0; r < kRecords; ++r) {
    Record record;
    record.position = r + 1;
    for (int i = 0; i < 10; ++i) {
      if (i % 3 == 0) {
        record.values.emplace_back(std::to_string(r * 10 + i));
      } else if (i % 3 == 1) {
        record.values.emplace_back(fmt::format("{}.5", r));
      } else {
        record.values.emplace_back(fmt::format("v{}", r));
      }
    }
    batch.records.push_back(std::move(record));
  }
  const MappedBatch out = m.apply(batch);
  CHECK(out.errors.empty());
  REQUIRE(out.batch.size() == static_cast<std::size_t>(kRecords));
  // Spot checks: the converted values of the first and the last record.
  const Record& first = out.batch.records.front();
  const Record& last = out.batch.records.back();
  REQUIRE(first.values.size() == 10);
  CHECK(first.values[0] == Json(0));
  CHECK(first.values[1] == Json(0.5));
  CHECK(first.values[2] == Json("v0"));
  CHECK(last.values[9] == Json((kRecords - 1) * 10 + 9));
  CHECK(last.values[1] == Json((kRecords - 1) + 0.5));
  CHECK(last.position == kRecords);
}

TEST_CASE("field mapping: the expression parser survives cut and garbled input") {
  const std::string full =
      "if(not (a >= 1.5e3 or `b c` <> 'x''y') and len(concat(a, \"q\\\"\")) % 2 == 0, "
      "round(-a / 3, 2), coalesce(substr(upper(trim(b)), 1, 2), replace(c, ',', ';')))";
  REQUIRE(FieldMapping::check(
              Json::object({{"fields", Json::object({{"t", Json::object({{"expr", full}})}})}}), {})
              .empty());
  auto check_expr = [](const std::string& expr) {
    Json mapping =
        Json::object({{"fields", Json::object({{"t", Json::object({{"expr", expr}})}})}});
    for (const MappingProblem& p : FieldMapping::check(mapping, {})) {
      CHECK_MESSAGE(p.message.find("expression column ") != std::string::npos, p.message);
    }
  };
  for (std::size_t n = 0; n < full.size(); ++n) check_expr(full.substr(0, n));
  for (std::size_t n = 0; n < full.size(); ++n) {
    std::string garbled = full;
    garbled[n] = "()',`\"%!<"[n % 10];
    check_expr(garbled);
  }
  const std::string deep = std::string(1000, '(') + "1" + std::string(1000, ')');
  auto problems = FieldMapping::check(
      Json::object({{"fields", Json::object({{"t", Json::object({{"expr", deep}})}})}}), {});
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].message.find("nests too deeply") != std::string::npos);
  std::string chain = "a";
  for (int i = 0; i < 3000; ++i) chain += "+a";
  problems = FieldMapping::check(
      Json::object({{"fields", Json::object({{"t", Json::object({{"expr", chain}})}})}}), {});
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].message ==
        "target 't': expression column 1: the expression nests deeper than 100 levels of "
        "operators and calls; split it");
  std::string long_ok = "a";
  for (int i = 0; i < 90; ++i) long_ok += "+a";
  CHECK(eval(long_ok, Json::object({{"a", 1}})) == Json(91));
}

TEST_CASE("field mapping: closest_name") {
  CHECK(closest_name("ROLL_NO", {"ROLL_NUM", "VALUE"}) == "ROLL_NUM");
  CHECK(closest_name("roll_num", {"ROLL_NUM"}) == "ROLL_NUM");
  CHECK(closest_name("completely_else", {"ROLL_NUM"}).empty());
}

}  // namespace
}  // namespace civicbus::connect
