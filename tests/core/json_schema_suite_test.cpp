// Runs the official JSON Schema Test Suite (draft 2020-12, required tests) against JsonSchema.
// Remote references (http://localhost:1234/...) are served from the suite's remotes/ folder
// and meta-schemas from metaschemas/, so nothing touches the network.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "civicbus/core/json.hpp"
#include "civicbus/core/json_schema.hpp"
#include "support/test_support.hpp"

namespace civicbus {
namespace {

namespace fs = std::filesystem;

const fs::path kSuiteDir = fs::path(CIVICBUS_SHARED_DIR) / "conformance" / "json-schema-test-suite";

Result<Json> load_json_file(const fs::path& path) {
  if (!fs::exists(path)) return not_found(fmt::format("no file {}", path.string()));
  return Json::parse(testing::read_file(path.string()));
}

Result<Json> suite_resolver(std::string_view uri) {
  constexpr std::string_view kRemotes = "http://localhost:1234/";
  if (uri.starts_with(kRemotes)) {
    return load_json_file(kSuiteDir / "remotes" / std::string(uri.substr(kRemotes.size())));
  }
  constexpr std::string_view kDraft7 = "http://json-schema.org/draft-07/schema";
  if (uri == kDraft7) return load_json_file(kSuiteDir / "metaschemas" / "draft7" / "schema.json");
  constexpr std::string_view kMeta = "https://json-schema.org/draft/2020-12/";
  if (uri.starts_with(kMeta)) {
    return load_json_file(kSuiteDir / "metaschemas" / "draft2020-12" /
                          (std::string(uri.substr(kMeta.size())) + ".json"));
  }
  return not_found(fmt::format("the test resolver has no document '{}'", uri));
}

// Passing optional/format tests when that test case was written; see the test case.
constexpr int kFormatFloor = 685;

struct SuiteCount {
  int passed = 0;
  int total = 0;
};

void run_file(const fs::path& path, SuiteCount& count, bool format_assertion = false,
              std::vector<std::string>* failures = nullptr) {
  Result<Json> file = load_json_file(path);
  REQUIRE_MESSAGE(file.ok(), path.string(), ": ", file.status().to_string());
  const std::string name = path.filename().string();
  for (const Json& group : file->as_array()) {
    const std::string group_description = group.get_string("description");
    JsonSchema::Options options;
    options.resolver = suite_resolver;
    options.format_assertion = format_assertion;
    Result<JsonSchema> schema = JsonSchema::compile(*group.find("schema"), options);
    for (const Json& test : group.find("tests")->as_array()) {
      ++count.total;
      const std::string where =
          fmt::format("{} | {} | {}", name, group_description, test.get_string("description"));
      if (failures != nullptr) {
        // Informational run: count, do not fail.
        const bool passed =
            schema.ok() && schema->is_valid(*test.find("data")) == test.get_bool("valid");
        if (passed) {
          ++count.passed;
        } else {
          failures->push_back(where);
        }
        continue;
      }
      if (!schema.ok()) {
        CHECK_MESSAGE(false, where, ": schema did not compile: ", schema.status().to_string());
        continue;
      }
      const bool expected = test.get_bool("valid");
      const Json& data = *test.find("data");
      const bool valid = schema->is_valid(data);
      // errors() and validate() must agree with is_valid().
      const std::vector<SchemaError> errors = schema->errors(data);
      const bool consistent = errors.empty() == valid && schema->validate(data).ok() == valid;
      CHECK_MESSAGE(valid == expected, where, ": expected ", expected ? "valid" : "invalid",
                    ", got ", valid ? "valid" : "invalid");
      CHECK_MESSAGE(consistent, where, ": errors() disagrees with is_valid()");
      if (valid == expected && consistent) ++count.passed;
    }
  }
}

TEST_CASE("json-schema-test-suite draft2020-12 (required tests)") {
  const fs::path dir = kSuiteDir / "tests" / "draft2020-12";
  REQUIRE_MESSAGE(fs::is_directory(dir), "missing ", dir.string());
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".json") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  CHECK(files.size() >= 46);
  SuiteCount count;
  for (const fs::path& file : files) run_file(file, count);
  const std::string summary =
      fmt::format("json-schema-test-suite draft2020-12: {}/{} passed", count.passed, count.total);
  MESSAGE(summary);
  std::printf("%s\n", summary.c_str());
  CHECK(count.total >= 1299);
  CHECK(count.passed == count.total);
}

// Not required by the specification (format is an annotation by default), but it measures
// the checks behind JsonSchema::Options::format_assertion. It fails only if the pass count
// falls below what was reached when it was written.
TEST_CASE("json-schema-test-suite draft2020-12 optional/format (format assertion)") {
  const fs::path dir = kSuiteDir / "tests" / "draft2020-12" / "optional" / "format";
  REQUIRE(fs::is_directory(dir));
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  SuiteCount count;
  std::vector<std::string> failures;
  for (const fs::path& file : files) run_file(file, count, true, &failures);
  const std::string summary =
      fmt::format("json-schema-test-suite draft2020-12 optional/format: {}/{} passed", count.passed,
                  count.total);
  MESSAGE(summary);
  std::printf("%s\n", summary.c_str());
  for (const std::string& f : failures) std::printf("  not passing: %s\n", f.c_str());
  CHECK(count.passed >= kFormatFloor);
}

}  // namespace
}  // namespace civicbus
