// The Canadian address table (tests/match/data/canadian_addresses.tsv): several hundred
// addresses checked by hand against Canada Post's addressing guidelines, each normalised and
// compared with the canonical line, the components and the errors the table expects.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "civicbus/match/address.hpp"

namespace civicbus::match {
namespace {

constexpr std::string_view kErrorPrefix = "ERROR: ";

struct Row {
  int line = 0;
  std::string id;
  std::string input;
  std::string expected;  // one_line(), or "ERROR: " and part of the message
  std::vector<std::pair<std::string, std::string>> checks;

  bool fields() const { return input.find('|') != std::string::npos; }
  bool error() const { return expected.rfind(kErrorPrefix, 0) == 0; }
  const std::string* check(std::string_view key) const {
    for (const auto& [k, v] : checks) {
      if (k == key) return &v;
    }
    return nullptr;
  }
};

std::string trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return std::string(s);
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == sep) {
      out.emplace_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

const std::vector<Row>& table() {
  static const std::vector<Row> rows = [] {
    const std::string path = CIVICBUS_SOURCE_DIR "/tests/match/data/canadian_addresses.tsv";
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), "cannot read ", path);
    std::vector<Row> out;
    std::string text;
    int line = 0;
    while (std::getline(in, text)) {
      ++line;
      if (text.empty() || text[0] == '#') continue;
      const auto cols = split(text, '\t');
      INFO(path, ":", line);
      REQUIRE_MESSAGE((cols.size() == 3 || cols.size() == 4), "expected 3 or 4 columns");
      Row row{line, cols[0], cols[1], cols[2], {}};
      if (cols.size() == 4) {
        for (const auto& pair : split(cols[3], ';')) {
          const auto eq = pair.find('=');
          REQUIRE_MESSAGE(eq != std::string::npos, "check '", pair, "' is not key=value");
          row.checks.emplace_back(pair.substr(0, eq), pair.substr(eq + 1));
        }
      }
      if (row.fields()) REQUIRE_MESSAGE(split(row.input, '|').size() == 4, "expected 4 fields");
      out.push_back(std::move(row));
    }
    return out;
  }();
  return rows;
}

AddressParts parts_of(const std::vector<std::string>& f) {
  return AddressParts{f[0], f[1], f[2], f[3]};
}

Result<Address> normalize_row(const AddressNormalizer& n, const Row& row) {
  if (!row.fields()) return n.normalize(row.input);
  std::vector<std::string> f;
  for (const auto& field : split(row.input, '|')) f.push_back(trim(field));
  return n.normalize(parts_of(f));
}

// The value a check key names, in the table's spelling.
std::string component(const Address& a, std::string_view key) {
  if (key == "unit") return a.unit;
  if (key == "designator") return a.unit_designator;
  if (key == "civic") return a.civic_number;
  if (key == "suffix") return a.civic_suffix;
  if (key == "name") return a.street_name;
  if (key == "type") return a.street_type;
  if (key == "before") return a.street_type_before_name ? "yes" : "no";
  if (key == "dir") return a.street_direction;
  if (key == "delivery") return a.delivery;
  if (key == "muni") return a.municipality;
  if (key == "prov") return a.province;
  if (key == "postal") return a.postal_code;
  if (key == "lang") {
    const std::string_view code = address_language_code(a.language);
    return code.empty() ? "-" : std::string(code);
  }
  if (key == "corrections") return std::to_string(a.corrections.size());
  return fmt::format("<no component '{}'>", key);
}

// What is wrong with a row's result, one line each; empty when the row is correct.
std::vector<std::string> row_problems(const Row& row, const Result<Address>& r) {
  std::vector<std::string> problems;
  if (row.error()) {
    const std::string_view want = std::string_view(row.expected).substr(kErrorPrefix.size());
    if (r.ok()) {
      problems.push_back(
          fmt::format("expected an error containing \"{}\", got \"{}\"", want, r->one_line()));
    } else if (r.status().code() != ErrorCode::kInvalidArgument ||
               r.status().message().find(want) == std::string::npos) {
      problems.push_back(
          fmt::format("expected an error containing \"{}\", got {}", want, r.status().to_string()));
    }
    return problems;
  }
  if (!r.ok()) {
    problems.push_back(
        fmt::format("expected \"{}\", got {}", row.expected, r.status().to_string()));
    return problems;
  }
  if (r->one_line() != row.expected) {
    problems.push_back(
        fmt::format("one_line \"{}\", expected \"{}\"", r->one_line(), row.expected));
  }
  for (const auto& [key, want] : row.checks) {
    if (key == "idem") continue;
    if (key == "correction") {
      if (std::find(r->corrections.begin(), r->corrections.end(), want) == r->corrections.end()) {
        problems.push_back(fmt::format("no correction \"{}\" (got: \"{}\")", want,
                                       fmt::join(r->corrections, "\", \"")));
      }
      continue;
    }
    const std::string got = component(*r, key);
    if (got != want) problems.push_back(fmt::format("{} \"{}\", expected \"{}\"", key, got, want));
  }
  return problems;
}

const AddressNormalizer& normalizer() {
  static const AddressNormalizer n = [] {
    auto created = AddressNormalizer::create();
    REQUIRE_MESSAGE(created.ok(), created.status().to_string());
    return *created;
  }();
  return n;
}

TEST_CASE("address table: every row normalises to what Canada Post's rules give") {
  const auto& rows = table();
  // The issue asks for at least 300 hand-checked addresses.
  CHECK(rows.size() >= 300);
  std::size_t correct = 0;
  std::size_t errors = 0;
  for (const Row& row : rows) {
    const auto problems = row_problems(row, normalize_row(normalizer(), row));
    if (problems.empty()) {
      ++correct;
    } else {
      FAIL_CHECK(fmt::format("{} (line {}): {}\n  {}", row.id, row.line, row.input,
                             fmt::join(problems, "\n  ")));
    }
    errors += row.error() ? 1 : 0;
  }
  MESSAGE(fmt::format("address table: {}/{} rows correct ({} of them refused inputs)", correct,
                      rows.size(), errors));
  CHECK(correct == rows.size());
  // Both kinds of row are there in numbers: addresses that normalise, and inputs to refuse.
  CHECK(errors >= 30);
  CHECK(rows.size() - errors >= 300);
}

TEST_CASE("address table: normalising one_line() again gives the same line, uncorrected") {
  std::size_t checked = 0;
  for (const Row& row : table()) {
    if (row.error()) continue;
    auto first = normalize_row(normalizer(), row);
    if (!first.ok()) continue;  // reported by the test above
    const std::string line = first->one_line();
    // Rows marked idem=fields have a canonical line no one-line reader can split (a multi-word
    // name without type or direction before the municipality, docs/match.md "Not handled"):
    // their fields are normalised again instead.
    const std::string* idem = row.check("idem");
    const bool by_fields = idem != nullptr && *idem == "fields";
    auto again =
        by_fields ? normalizer().normalize(AddressParts{first->street_line(), first->municipality,
                                                        first->province, first->postal_code})
                  : normalizer().normalize(line);
    INFO(row.id, " (line ", row.line, "): ", row.input, " -> ", line);
    REQUIRE_MESSAGE(again.ok(), again.status().to_string());
    CHECK(again->one_line() == line);
    CHECK(again->unit == first->unit);
    CHECK(again->civic_number == first->civic_number);
    CHECK(again->civic_suffix == first->civic_suffix);
    CHECK(again->street_name == first->street_name);
    CHECK(again->street_type == first->street_type);
    CHECK(again->street_type_before_name == first->street_type_before_name);
    CHECK(again->street_direction == first->street_direction);
    CHECK(again->delivery == first->delivery);
    CHECK(again->municipality == first->municipality);
    CHECK(again->province == first->province);
    CHECK(again->postal_code == first->postal_code);
    CHECK_MESSAGE(again->corrections.empty(),
                  fmt::format("{}", fmt::join(again->corrections, "; ")));
    ++checked;
  }
  MESSAGE(fmt::format("address table: {} canonical lines normalise to themselves", checked));
  CHECK(checked >= 300);
}

TEST_CASE("address table: without corrections recorded the addresses are the same") {
  AddressNormalizerOptions options;
  options.record_corrections = false;
  auto bulk = AddressNormalizer::create(options);
  REQUIRE(bulk.ok());
  for (const Row& row : table()) {
    INFO(row.id, " (line ", row.line, "): ", row.input);
    auto with = normalize_row(normalizer(), row);
    auto without = normalize_row(*bulk, row);
    REQUIRE(with.ok() == without.ok());
    if (!with.ok()) {
      CHECK(with.status().message() == without.status().message());
      continue;
    }
    CHECK(without->corrections.empty());
    without->corrections = with->corrections;
    CHECK(*without == *with);
  }
}

// Throughput over the table's one-line rows, one thread and two (the issue asks for 500,000
// addresses a second on the machine's two cores). Timing is printed, not asserted tightly:
// debug and sanitizer builds are many times slower, and other work shares the machine.
TEST_CASE("address table: throughput") {
  std::vector<std::string> lines;
  for (const Row& row : table()) {
    if (!row.fields()) lines.push_back(row.input);
  }
  REQUIRE(lines.size() >= 300);
  AddressNormalizerOptions options;
  options.record_corrections = false;  // as the pipeline's normalize_address stage runs it
  auto bulk = AddressNormalizer::create(options);
  REQUIRE(bulk.ok());
  constexpr std::size_t kPerThread = 100'000;
  for (int threads : {1, 2}) {
    std::atomic<std::size_t> ok{0};
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        std::size_t n = 0;
        for (std::size_t i = 0; i < kPerThread; ++i) {
          n += bulk->normalize(lines[(i + static_cast<std::size_t>(t) * 7) % lines.size()]).ok();
        }
        ok += n;
      });
    }
    for (auto& w : workers) w.join();
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double rate = static_cast<double>(kPerThread * threads) / s;
    MESSAGE(fmt::format("address table: {:.0f} addresses/s on {} thread(s) (this build)", rate,
                        threads));
    CHECK(ok.load() > 0);
    CHECK(rate > 1'000.0);
  }
}

}  // namespace
}  // namespace civicbus::match
