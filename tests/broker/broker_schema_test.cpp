#include <doctest/doctest.h>

#include "broker/broker_fixture.hpp"

namespace civicbus::broker {
namespace {

using testing_support::BrokerFixture;
using testing_support::event;

Json assessment_v1() {
  return *Json::parse(R"({
    "type": "object",
    "required": ["roll_number", "assessed_value"],
    "properties": {
      "roll_number": {"type": "string", "pattern": "^[0-9]{19}$"},
      "assessed_value": {"type": "integer", "minimum": 0},
      "owner_name": {"type": "string"}
    }
  })");
}

// Adds an optional field: backward compatible.
Json assessment_v2() {
  Json s = assessment_v1();
  s.at_pointer("/properties")->set("ward", Json::object({{"type", "integer"}}));
  return s;
}

// Makes a new field required: old data fails it, so not backward compatible.
Json assessment_incompatible() {
  Json s = assessment_v2();
  s.at_pointer("/required")->push_back("ward");
  return s;
}

Json valid_assessment() {
  return Json::object({{"roll_number", "1901234567890123456"}, {"assessed_value", 415000}});
}

TEST_CASE("publishing to a topic with a schema validates the data and stores nothing on failure") {
  BrokerFixture f;
  f.topic("property.assessment.updated", {}, "property.assessment");
  auto no_schema = f.broker().publish(event("property.assessment.updated", valid_assessment()));
  CHECK(no_schema.status().code() == ErrorCode::kFailedPrecondition);
  CHECK(no_schema.status().message().find("no active version") != std::string::npos);

  auto v1 = f.broker().register_schema("property.assessment", assessment_v1());
  REQUIRE_MESSAGE(v1.ok(), v1.status().to_string());
  CHECK(v1->version == 1);
  CHECK(v1->state == SchemaState::kActive);

  CHECK(f.broker().publish(event("property.assessment.updated", valid_assessment())).ok());
  const auto before = f.transport().next_offset();
  Json bad = valid_assessment();
  bad.set("roll_number", "19-01-234");
  auto r = f.broker().publish(event("property.assessment.updated", bad));
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::kInvalidArgument);
  CHECK(r.status().message().find("property.assessment@1") != std::string::npos);
  CHECK(r.status().message().find("/roll_number") != std::string::npos);
  Json missing = Json::object({{"roll_number", "1901234567890123456"}});
  CHECK_FALSE(f.broker().publish(event("property.assessment.updated", missing)).ok());
  CHECK(f.transport().next_offset() == before);
}

TEST_CASE("a new version waits for every consumer group, or for the owner") {
  BrokerFixture f;
  f.topic("property.assessment.updated", {}, "property.assessment");
  REQUIRE(f.broker().register_schema("property.assessment", assessment_v1()).ok());
  auto noop = [](const DeliveredEvent&) { return Status(); };
  ConsumerGroupOptions tax;
  tax.group = "tax";
  tax.topics = {"property.>"};
  ConsumerGroupOptions gis;
  gis.group = "gis";
  gis.topics = {"property.assessment.updated"};
  auto s1 = f.broker().subscribe(tax, noop);
  auto s2 = f.broker().subscribe(gis, noop);
  REQUIRE(s1.ok());
  REQUIRE(s2.ok());

  auto incompatible = f.broker().register_schema("property.assessment", assessment_incompatible());
  REQUIRE_FALSE(incompatible.ok());
  CHECK(incompatible.status().code() == ErrorCode::kFailedPrecondition);
  CHECK(incompatible.status().message().find("ward") != std::string::npos);

  auto v2 = f.broker().register_schema("property.assessment", assessment_v2());
  REQUIRE_MESSAGE(v2.ok(), v2.status().to_string());
  CHECK(v2->version == 2);
  CHECK(v2->state == SchemaState::kProposed);
  CHECK(v2->waiting_for == std::vector<std::string>{"gis", "tax"});
  // Registering the same document again returns the same version.
  CHECK(f.broker().register_schema("property.assessment", assessment_v2())->version == 2);

  // Still validated against v1 while v2 is proposed.
  Json with_ward = valid_assessment();
  with_ward.set("ward", "five");  // a string: v1 allows it (no 'ward' property), v2 would not
  CHECK(f.broker().publish(event("property.assessment.updated", with_ward)).ok());

  auto acked = f.broker().acknowledge_schema("property.assessment", 2, "tax");
  REQUIRE(acked.ok());
  CHECK(acked->state == SchemaState::kProposed);
  CHECK(acked->waiting_for == std::vector<std::string>{"gis"});
  CHECK(f.broker().acknowledge_schema("property.assessment", 2, "billing").status().code() ==
        ErrorCode::kFailedPrecondition);
  acked = f.broker().acknowledge_schema("property.assessment", 2, "gis");
  REQUIRE(acked.ok());
  CHECK(acked->state == SchemaState::kActive);
  CHECK_FALSE(f.broker().publish(event("property.assessment.updated", with_ward)).ok());

  auto versions = f.broker().schema_versions("property.assessment");
  REQUIRE(versions.ok());
  REQUIRE(versions->size() == 2);
  CHECK(versions->at(0).state == SchemaState::kSuperseded);

  // Owner override for v3.
  Json v3 = assessment_v2();
  v3.at_pointer("/properties")->set("zoning", Json::object({{"type", "string"}}));
  auto proposed = f.broker().register_schema("property.assessment", v3);
  REQUIRE(proposed.ok());
  CHECK(proposed->state == SchemaState::kProposed);
  auto denied = f.broker().activate_schema("property.assessment", 3, "intruder");
  CHECK(denied.status().code() == ErrorCode::kPermissionDenied);
  auto forced = f.broker().activate_schema("property.assessment", 3, "test-team");
  REQUIRE(forced.ok());
  CHECK(forced->state == SchemaState::kActive);

  // The state survives a restart.
  s1->reset();
  s2->reset();
  f.reopen();
  auto after = f.broker().schema_versions("property.assessment");
  REQUIRE(after.ok());
  CHECK(after->back().state == SchemaState::kActive);
  CHECK_FALSE(f.broker().publish(event("property.assessment.updated", with_ward)).ok());
}

TEST_CASE("an invalid schema document is refused") {
  BrokerFixture f;
  auto r = f.broker().register_schema("x", Json::object({{"type", 12}}));
  CHECK_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace civicbus::broker
