#include "civicbus/core/csv.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "civicbus/core/json.hpp"
#include "support/test_support.hpp"

namespace civicbus {
namespace {

namespace fs = std::filesystem;

std::vector<CsvRecord> all(std::string_view text, CsvOptions options = {}) {
  CsvReader reader(text, options);
  std::vector<CsvRecord> out;
  for (;;) {
    auto r = reader.next_record();
    REQUIRE_MESSAGE(r.ok(), r.status().to_string());
    if (!*r) break;
    out.push_back(std::move(**r));
  }
  return out;
}

using Fields = std::vector<std::string>;

TEST_CASE("csv: simple records, LF and CRLF, line numbers") {
  auto lf = all("a,b,c\n1,2,3\n4,5,6\n");
  REQUIRE(lf.size() == 3);
  CHECK(lf[0].fields == Fields{"a", "b", "c"});
  CHECK(lf[2].fields == Fields{"4", "5", "6"});
  CHECK(lf[2].line == 3);
  auto crlf = all("a,b\r\n1,2\r\n\r\n3,4");  // blank line skipped, no final line end
  REQUIRE(crlf.size() == 3);
  CHECK(crlf[1].fields == Fields{"1", "2"});
  CHECK(crlf[2].fields == Fields{"3", "4"});
  CHECK(crlf[2].line == 4);
}

TEST_CASE("csv: quoted fields with commas, doubled quotes and newlines keep line numbers") {
  auto r = all("id,note\n1,\"a, b\"\n2,\"say \"\"hi\"\"\"\n3,\"two\nlines\r\nthree\"\n4,x\n");
  REQUIRE(r.size() == 5);
  CHECK(r[1].fields == Fields{"1", "a, b"});
  CHECK(r[2].fields == Fields{"2", "say \"hi\""});
  CHECK(r[3].fields == Fields{"3", "two\nlines\r\nthree"});
  CHECK(r[3].line == 4);
  CHECK(r[4].line == 7);  // the record after a 3-line record
  CHECK(r[4].fields == Fields{"4", "x"});
}

TEST_CASE("csv: empty fields, trailing delimiter, BOM, other delimiter") {
  auto r =
      all("\xEF\xBB\xBF"
          "a;b;c\n;\"\";\n",
          CsvOptions{.delimiter = ';'});
  REQUIRE(r.size() == 2);
  CHECK(r[0].fields == Fields{"a", "b", "c"});
  CHECK(r[1].fields == Fields{"", "", ""});
  auto tabs = all("x\ty\n1\t2,3\n", CsvOptions{.delimiter = '\t'});
  CHECK(tabs[1].fields == Fields{"1", "2,3"});
  CHECK(all("").empty());
  CHECK(all("\n\n").empty());
}

TEST_CASE("csv: errors name the line and the column") {
  {
    CsvReader reader("a,b\n1,2\n3,\"open\nstill open\n");
    CHECK(reader.next_record().ok());
    CHECK(reader.next_record().ok());
    auto r = reader.next_record();
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK(r.status().message().find("line 3, column 3") != std::string::npos);
    CHECK(r.status().message().find("never closed") != std::string::npos);
    CHECK_FALSE(reader.next_record().ok());  // stays failed
  }
  {
    auto r = parse_csv("a,b\n1,2\n3,ab\"c\n");
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find("line 3, column 5") != std::string::npos);
  }
  {
    auto r = parse_csv("a,b\n\"x\"y,2\n");
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find("line 2, column 4") != std::string::npos);
  }
  auto lenient = parse_csv("a,b\n3,ab\"c\n", CsvOptions{.allow_bare_quotes = true});
  REQUIRE(lenient.ok());
  CHECK(lenient->records[0].fields == Fields{"3", "ab\"c"});
}

TEST_CASE("csv: parse_csv splits the header") {
  auto t = parse_csv("serial,type\r\nS1,water_meter\r\n");
  REQUIRE(t.ok());
  CHECK(t->header == Fields{"serial", "type"});
  REQUIRE(t->records.size() == 1);
  CHECK(t->records[0].line == 2);
  auto no_header = parse_csv("S1,water_meter\n", CsvOptions{.has_header = false});
  REQUIRE(no_header.ok());
  CHECK(no_header->header.empty());
  CHECK(no_header->records.size() == 1);
}

TEST_CASE("csv: writer quotes only what needs it and round-trips") {
  CHECK(csv_quote("plain") == "plain");
  CHECK(csv_quote("a,b") == "\"a,b\"");
  CHECK(csv_quote("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(csv_quote("two\nlines") == "\"two\nlines\"");
  CHECK(csv_quote("a;b", ';') == "\"a;b\"");
  CHECK(csv_quote("a;b") == "a;b");
  const Fields fields{"line 3", "unknown type 'x', \"quoted\"", "", "multi\r\nline"};
  const std::string text = csv_format_record(fields);
  CHECK(text.ends_with("\r\n"));
  auto back = all(text);
  REQUIRE(back.size() == 1);
  CHECK(back[0].fields == fields);
}

// The csv-spectrum suite (github.com/max-mapper/csv-spectrum): each csvs/NAME.csv with a
// header row must read as the array of objects in json/NAME.json.
int run_spectrum(bool allow_bare_quotes, std::vector<std::string>& failures) {
  const fs::path dir = fs::path(CIVICBUS_SHARED_DIR) / "conformance" / "csv-spectrum";
  int passed = 0;
  for (const auto& entry : fs::directory_iterator(dir / "csvs")) {
    const std::string name = entry.path().stem().string();
    const std::string csv = testing::read_file(entry.path().string());
    auto expected = Json::parse(testing::read_file((dir / "json" / (name + ".json")).string()));
    REQUIRE_MESSAGE(expected.ok(), name);
    auto table = parse_csv(csv, CsvOptions{.allow_bare_quotes = allow_bare_quotes});
    if (!table.ok()) {
      failures.push_back(name + ": " + table.status().message());
      continue;
    }
    Json got = Json::array();
    for (const CsvRecord& rec : table->records) {
      Json obj = Json::object();
      for (std::size_t i = 0; i < table->header.size() && i < rec.fields.size(); ++i) {
        obj.set(table->header[i], rec.fields[i]);
      }
      got.push_back(std::move(obj));
    }
    if (got == *expected) {
      ++passed;
    } else {
      failures.push_back(name + ": got " + got.dump());
    }
  }
  return passed;
}

TEST_CASE("csv: csv-spectrum conformance suite") {
  std::vector<std::string> strict_failures, lenient_failures;
  const int strict = run_spectrum(false, strict_failures);
  const int lenient = run_spectrum(true, lenient_failures);
  MESSAGE("csv-spectrum: strict " << strict << "/12, allow_bare_quotes " << lenient << "/12");
  for (const auto& f : strict_failures) MESSAGE("strict: " << f);
  for (const auto& f : lenient_failures) MESSAGE("lenient: " << f);
  // Strict mode refuses location_coordinates.csv on purpose (a bare '"' in 37°36'37.8"N).
  CHECK(strict == 11);
  REQUIRE(strict_failures.size() == 1);
  CHECK(strict_failures[0].starts_with("location_coordinates"));
  // With allow_bare_quotes it reads, but the suite's expected json/location_coordinates.json
  // cannot match any reader: it is a bare object (not an array) and its phone number
  // (1234567890) is not the one in the CSV (2095257564). The cell that matters is checked
  // below instead; the case itself counts as failed.
  CHECK(lenient == 11);
  REQUIRE(lenient_failures.size() == 1);
  CHECK(lenient_failures[0].starts_with("location_coordinates"));
  const fs::path dir = fs::path(CIVICBUS_SHARED_DIR) / "conformance" / "csv-spectrum";
  auto expected =
      Json::parse(testing::read_file((dir / "json" / "location_coordinates.json").string()));
  REQUIRE(expected.ok());
  auto table = parse_csv(testing::read_file((dir / "csvs" / "location_coordinates.csv").string()),
                         CsvOptions{.allow_bare_quotes = true});
  REQUIRE(table.ok());
  REQUIRE(table->records.size() == 1);
  REQUIRE(table->records[0].fields.size() == 4);
  CHECK(table->records[0].fields[1] == expected->get_string("Location Coordinates"));
  CHECK(table->records[0].fields[2] == expected->get_string("Cities"));
}

TEST_CASE("csv: 10,000 records read quickly") {
  std::string text = "serial,type,lat,lon,note\n";
  for (int i = 0; i < 10000; ++i) {
    text += "S" + std::to_string(i) + ",water_meter,45.5,-73.5,\"a, quoted note\"\n";
  }
  auto t = parse_csv(text);
  REQUIRE(t.ok());
  CHECK(t->records.size() == 10000);
  CHECK(t->records.back().line == 10001);
}

}  // namespace
}  // namespace civicbus
