#include <doctest/doctest.h>

#include "broker/broker_fixture.hpp"

namespace civicbus::broker {
namespace {

using testing_support::BrokerFixture;
using testing_support::Collector;
using testing_support::event;

Json resident() {
  return Json::object({{"roll_number", "1901234567890123456"},
                       {"owner_name", "Marie Tremblay"},
                       {"owner_email", "marie@example.ca"},
                       {"assessed_value", 415000}});
}

TEST_CASE("PII fields are encrypted in the log and shown only to granted groups") {
  BrokerFixture f;
  f.topic("property.assessment.updated", {"/owner_name", "/owner_email"});
  auto ack = f.broker().publish(event("property.assessment.updated", resident()));
  REQUIRE_MESSAGE(ack.ok(), ack.status().to_string());

  auto stored = f.transport().read_one(ack->offset);
  REQUIRE(stored.ok());
  const std::string& raw = (*stored)->payload;
  CHECK(raw.find("Marie") == std::string::npos);
  CHECK(raw.find("marie@example.ca") == std::string::npos);
  CHECK(raw.find("enc:v1:") != std::string::npos);
  CHECK(raw.find("1901234567890123456") != std::string::npos);  // not a PII field

  // tail/read shows redacted values.
  auto read = f.broker().read("property.>", 1, 10);
  REQUIRE(read.ok());
  REQUIRE(read->size() == 1);
  CHECK(read->front().event.data().get_string("owner_name") == "[redacted]");

  REQUIRE(f.broker().grant_pii("property.assessment.updated", "tax", "privacy-office").ok());
  auto run_group = [&](const std::string& name) {
    Collector got;
    ConsumerGroupOptions g;
    g.group = name;
    g.topics = {"property.>"};
    g.start_from = StartFrom::kEarliest;
    auto sub = f.broker().subscribe(g, [&](const DeliveredEvent& e) {
      got.add(e);
      return Status();
    });
    REQUIRE(sub.ok());
    REQUIRE(got.wait_for(1));
    return got.events().front().event.data();
  };
  Json granted = run_group("tax");
  CHECK(granted.get_string("owner_name") == "Marie Tremblay");
  CHECK(granted.get_string("owner_email") == "marie@example.ca");
  Json other = run_group("gis");
  CHECK(other.get_string("owner_name") == "[redacted]");
  CHECK(other.get_int("assessed_value") == 415000);

  // Crypto-shredding: old values are gone for everyone, new events still work.
  REQUIRE(f.broker().shred_pii("property.assessment.updated", "privacy-office").ok());
  REQUIRE(f.broker().seek_group("tax", 1).ok());
  Json after = run_group("tax");
  CHECK(after.get_string("owner_name") == "[shredded]");
  REQUIRE(f.broker().publish(event("property.assessment.updated", resident())).ok());

  CHECK(f.broker().grant_pii("no.such.topic", "tax", "x").code() == ErrorCode::kNotFound);
}

TEST_CASE("a PII topic needs a master key") {
  BrokerFixture::Config config;
  config.with_master_key = false;
  BrokerFixture f(config);
  TopicOptions t;
  t.name = "citizen.registered";
  t.owner = "identity";
  t.pii_fields = {"/name"};
  Status st = f.broker().create_topic(t);
  CHECK(st.code() == ErrorCode::kFailedPrecondition);
  CHECK(st.message().find("master key") != std::string::npos);
}

TEST_CASE("the audit log records admin actions and publishes, and detects tampering") {
  BrokerFixture f;
  f.topic("permit.issued");
  REQUIRE(
      f.broker().register_schema("permit", Json::object({{"type", "object"}}), "architect").ok());
  for (int i = 0; i < 5; ++i)
    REQUIRE(f.broker().publish(event("permit.issued", Json::object({{"n", i}}))).ok());
  REQUIRE(f.broker().run_maintenance().ok());
  auto records = f.broker().audit_records(1, 100);
  REQUIRE(records.ok());
  std::vector<std::string> actions;
  for (const auto& r : *records) actions.push_back(r.action);
  CHECK(std::find(actions.begin(), actions.end(), "topic.created") != actions.end());
  CHECK(std::find(actions.begin(), actions.end(), "schema.registered") != actions.end());
  auto published = std::find_if(records->begin(), records->end(), [](const AuditRecord& r) {
    return r.action == "events.published";
  });
  REQUIRE(published != records->end());
  CHECK(published->detail.get_int("events") == 5);
  CHECK(published->detail.at_pointer("/topics/permit.issued")->as_int() == 5);

  auto report = f.broker().verify_audit();
  REQUIRE(report.ok());
  CHECK(report->intact);

  // Someone with the database file edits history.
  REQUIRE(f.db().execute("UPDATE broker_audit SET actor = 'nobody' WHERE seq = 2").ok());
  report = f.broker().verify_audit();
  REQUIRE(report.ok());
  CHECK_FALSE(report->intact);
  REQUIRE_FALSE(report->problems.empty());
}

TEST_CASE("retention removes old events by time and by size") {
  ManualClock clock;
  BrokerFixture::Config config;
  config.clock = &clock;
  BrokerFixture f(config);
  TopicOptions t;
  t.name = "iot.reading";
  t.owner = "fleet";
  t.retention = std::chrono::hours(24);
  REQUIRE(f.broker().create_topic(t).ok());
  TopicOptions capped;
  capped.name = "iot.snapshot";
  capped.owner = "fleet";
  capped.retention = std::chrono::seconds(0);
  capped.retention_bytes = 4000;
  REQUIRE(f.broker().create_topic(capped).ok());

  for (int i = 0; i < 10; ++i)
    REQUIRE(f.broker().publish(event("iot.reading", Json::object({{"n", i}}))).ok());
  clock.advance(std::chrono::hours(25));
  for (int i = 10; i < 13; ++i)
    REQUIRE(f.broker().publish(event("iot.reading", Json::object({{"n", i}}))).ok());
  for (int i = 0; i < 40; ++i) {
    REQUIRE(f.broker()
                .publish(event("iot.snapshot", Json::object({{"pad", std::string(100, 'x')}})))
                .ok());
  }
  REQUIRE(f.broker().run_maintenance().ok());
  CHECK(f.broker().topic("iot.reading")->records == 3);
  auto snap = f.broker().topic("iot.snapshot");
  CHECK(snap->bytes <= 4000);
  CHECK(snap->records > 0);
  auto left = f.broker().read("iot.reading", 1, 100);
  REQUIRE(left.ok());
  REQUIRE(left->size() == 3);
  CHECK(left->front().event.data().get_int("n") == 10);
}

TEST_CASE("dead letters older than the DLQ retention are purged") {
  ManualClock clock;
  BrokerFixture::Config config;
  config.clock = &clock;
  BrokerFixture f(config);
  f.topic("payment.completed");
  ConsumerGroupOptions g;
  g.group = "erp";
  g.topics = {"payment.completed"};
  g.max_deliveries = 1;
  auto sub = f.broker().subscribe(g, [](const DeliveredEvent&) { return internal_error("down"); });
  REQUIRE(sub.ok());
  REQUIRE(f.broker().publish(event("payment.completed", Json::object())).ok());
  REQUIRE(civicbus::testing::wait_until([&] { return f.broker().dead_letters({})->size() == 1; }));
  clock.advance(std::chrono::hours(24 * 29));
  REQUIRE(f.broker().run_maintenance().ok());
  CHECK(f.broker().dead_letters({})->size() == 1);
  clock.advance(std::chrono::hours(24 * 2));
  REQUIRE(f.broker().run_maintenance().ok());
  CHECK(f.broker().dead_letters({})->empty());
}

TEST_CASE("the publish audit counts from the log's counters, and reads only what a crash left") {
  BrokerFixture f;
  f.topic("permit.issued");
  f.topic("permit.revoked");
  for (int i = 0; i < 5; ++i)
    REQUIRE(f.broker().publish(event("permit.issued", Json::object({{"n", i}}))).ok());
  REQUIRE(f.broker().run_maintenance().ok());
  f.reopen();
  // As if the node had died after storing offsets 4 and 5 but before auditing them.
  REQUIRE(f.db().execute("UPDATE broker_state SET value = 3 WHERE name = 'audited_through'").ok());
  for (int i = 0; i < 2; ++i)
    REQUIRE(f.broker().publish(event("permit.revoked", Json::object({{"n", i}}))).ok());
  REQUIRE(f.broker().run_maintenance().ok());
  auto records = f.broker().audit_records(1, 1000);
  REQUIRE(records.ok());
  const AuditRecord* last = nullptr;
  for (const auto& r : *records) {
    if (r.action == "events.published") last = &r;
  }
  REQUIRE(last != nullptr);
  CHECK(last->detail.get_int("first_offset") == 4);
  CHECK(last->detail.get_int("last_offset") == 7);
  CHECK(last->detail.get_int("events") == 4);
  CHECK(last->detail.at_pointer("/topics/permit.issued")->as_int() == 2);   // read back
  CHECK(last->detail.at_pointer("/topics/permit.revoked")->as_int() == 2);  // from the counters
}

}  // namespace
}  // namespace civicbus::broker
