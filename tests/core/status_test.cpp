#include "civicbus/core/status.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace civicbus {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return invalid_argument("value must be positive");
  return v;
}

Result<int> doubled(int v) {
  CIVICBUS_ASSIGN_OR_RETURN(int x, parse_positive(v));
  return x * 2;
}

Status check(int v) {
  CIVICBUS_RETURN_IF_ERROR(parse_positive(v).status());
  return {};
}

TEST_CASE("status carries code and message") {
  Status ok;
  CHECK(ok.ok());
  CHECK(ok.to_string() == "ok");
  Status s = not_found("topic 'permit.issued' does not exist");
  CHECK_FALSE(s.ok());
  CHECK(s.code() == ErrorCode::kNotFound);
  CHECK(s.to_string() == "not_found: topic 'permit.issued' does not exist");
  CHECK(s.with_context("publish").message() == "publish: topic 'permit.issued' does not exist");
}

TEST_CASE("result propagates values and errors") {
  CHECK(*doubled(4) == 8);
  auto bad = doubled(-1);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == ErrorCode::kInvalidArgument);
  CHECK(check(3).ok());
  CHECK(check(0).code() == ErrorCode::kInvalidArgument);
  CHECK(bad.value_or(7) == 7);
}

Result<std::vector<std::string>> names() {
  return std::vector<std::string>{"permits", "parking", "water-billing-long-enough-for-the-heap"};
}

TEST_CASE("a result's value taken from a temporary outlives the temporary") {
  // value() && returns the value itself, so a range-for over it does not iterate a destroyed
  // Result (ASan would report the use after free in the sanitizer build).
  std::vector<std::string> seen;
  for (const std::string& n : names().value()) seen.push_back(n);
  CHECK(seen == *names());
  std::string first = std::move(*names()).front();
  CHECK(first == "permits");
}

}  // namespace
}  // namespace civicbus
