#include "civicbus/broker/broker.hpp"

#include <doctest/doctest.h>

#include <map>
#include <set>
#include <thread>

#include "broker/broker_fixture.hpp"
#include "civicbus/core/id.hpp"

namespace civicbus::broker {
namespace {

using testing_support::BrokerFixture;
using testing_support::Collector;
using testing_support::event;

TEST_CASE("topic patterns match NATS-style") {
  CHECK(topic_matches("permit.issued", "permit.issued"));
  CHECK_FALSE(topic_matches("permit.issued", "permit.issued.v2"));
  CHECK(topic_matches("permit.*", "permit.issued"));
  CHECK_FALSE(topic_matches("permit.*", "permit.issued.late"));
  CHECK(topic_matches("property.>", "property.assessment.updated"));
  CHECK_FALSE(topic_matches("property.>", "property"));
  CHECK(topic_matches("*.assessment.*", "property.assessment.updated"));
  CHECK(topic_matches(">", "anything.at.all"));
  CHECK_FALSE(topic_matches("a.*.c", "a.b.d"));
}

TEST_CASE("topic names are validated") {
  CHECK(validate_topic_name("property.assessment.updated").ok());
  CHECK(validate_topic_name("iot.alert_raised-v2").ok());
  CHECK_FALSE(validate_topic_name("").ok());
  CHECK_FALSE(validate_topic_name("Permit.Issued").ok());
  CHECK_FALSE(validate_topic_name("permit..issued").ok());
  CHECK(validate_topic_name("permit issued").message().find("position 6") != std::string::npos);
}

TEST_CASE("topics are created once, conflicts and missing owners are refused") {
  BrokerFixture f;
  TopicOptions t;
  t.name = "permit.issued";
  t.owner = "permits-team";
  t.description = "A building permit was issued";
  REQUIRE(f.broker().create_topic(t).ok());
  CHECK(f.broker().create_topic(t).ok());  // same settings: idempotent
  TopicOptions other = t;
  other.owner = "someone-else";
  CHECK(f.broker().create_topic(other).code() == ErrorCode::kAlreadyExists);
  REQUIRE(f.broker().update_topic(other).ok());
  CHECK(f.broker().topic("permit.issued")->options.owner == "someone-else");

  TopicOptions no_owner;
  no_owner.name = "payment.completed";
  Status st = f.broker().create_topic(no_owner);
  CHECK(st.code() == ErrorCode::kInvalidArgument);
  CHECK(st.message().find("no owner") != std::string::npos);

  f.reopen();
  auto loaded = f.broker().topic("permit.issued");
  REQUIRE(loaded.ok());
  CHECK(loaded->options.owner == "someone-else");
  CHECK(loaded->options.description == "A building permit was issued");
}

TEST_CASE("publish stores a valid event and delivers it to a group") {
  BrokerFixture f;
  f.topic("permit.issued");
  Collector got;
  ConsumerGroupOptions g;
  g.group = "gis";
  g.topics = {"permit.*"};
  auto sub = f.broker().subscribe(g, [&](const DeliveredEvent& e) {
    got.add(e);
    return Status();
  });
  REQUIRE(sub.ok());
  auto ack = f.broker().publish(event("permit.issued", Json::object({{"permit", "BP-2026-0001"}})));
  REQUIRE_MESSAGE(ack.ok(), ack.status().to_string());
  CHECK(ack->offset == 1);
  CHECK_FALSE(ack->duplicate);
  CHECK(is_uuid(ack->id));
  REQUIRE(got.wait_for(1));
  auto e = got.events().front();
  CHECK(e.topic == "permit.issued");
  CHECK(e.event.data().get_string("permit") == "BP-2026-0001");
  CHECK(e.event.id() == ack->id);
  CHECK_FALSE(e.event.time().empty());
  CHECK(e.attempt == 1);
}

TEST_CASE("invalid events are refused and nothing is stored") {
  BrokerFixture f;
  f.topic("permit.issued");
  const auto before = f.transport().next_offset();

  SUBCASE("unknown topic") {
    auto r = f.broker().publish(event("permit.revoked", Json::object()));
    CHECK(r.status().code() == ErrorCode::kNotFound);
    CHECK(r.status().message().find("'permit.revoked' does not exist") != std::string::npos);
  }
  SUBCASE("bad specversion") {
    auto parsed =
        CloudEvent::parse(R"({"specversion":"0.3","id":"1","source":"x","type":"permit.issued"})");
    CHECK(parsed.status().message().find("specversion") != std::string::npos);
  }
  SUBCASE("missing source") {
    auto parsed = CloudEvent::parse(R"({"specversion":"1.0","id":"1","type":"permit.issued"})");
    CHECK(parsed.status().message().find("'source'") != std::string::npos);
  }
  SUBCASE("bad time") {
    auto e = event("permit.issued", Json::object());
    e.set_time("yesterday");
    auto r = f.broker().publish(e);
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK(r.status().message().find("'time'") != std::string::npos);
  }
  SUBCASE("bad extension name") {
    auto e = event("permit.issued", Json::object());
    e.set_attribute("Ward", "10");
    auto r = f.broker().publish(e);
    CHECK(r.status().message().find("'Ward'") != std::string::npos);
  }
  SUBCASE("over the size limit") {
    auto r = f.broker().publish(
        event("permit.issued", Json::object({{"blob", std::string(2 << 20, 'x')}})));
    CHECK(r.status().code() == ErrorCode::kInvalidArgument);
    CHECK(r.status().message().find("the limit is 1.0 MiB") != std::string::npos);
  }
  CHECK(f.transport().next_offset() == before);
}

TEST_CASE("a repeated source+id is acknowledged but not stored again, also after a restart") {
  BrokerFixture f;
  f.topic("payment.completed");
  auto first =
      f.broker().publish(event("payment.completed", Json::object({{"amount", 12}}), "pay-1"));
  REQUIRE(first.ok());
  auto again =
      f.broker().publish(event("payment.completed", Json::object({{"amount", 12}}), "pay-1"));
  REQUIRE(again.ok());
  CHECK(again->duplicate);
  CHECK(again->offset == first->offset);
  f.reopen();
  auto after_restart =
      f.broker().publish(event("payment.completed", Json::object({{"amount", 12}}), "pay-1"));
  REQUIRE(after_restart.ok());
  CHECK(after_restart->duplicate);
  CHECK(f.broker().topic("payment.completed")->records == 1);
  // Another source with the same id is another event.
  CloudEvent other("payment.completed", "urn:bank", Json::object());
  other.set_id("pay-1");
  auto r = f.broker().publish(other);
  REQUIRE(r.ok());
  CHECK_FALSE(r->duplicate);
}

TEST_CASE("concurrent asynchronous publishes all get unique offsets") {
  BrokerFixture f;
  f.topic("iot.reading");
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2500;
  std::mutex mu;
  std::set<std::int64_t> offsets;
  std::atomic<int> failures{0};
  std::atomic<int> acked{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        f.broker().publish_async(event("iot.reading", Json::object({{"t", t}, {"i", i}})),
                                 [&](Result<PublishAck> r) {
                                   if (!r.ok()) {
                                     ++failures;
                                   } else {
                                     std::lock_guard lock(mu);
                                     offsets.insert(r->offset);
                                   }
                                   ++acked;
                                 });
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(civicbus::testing::wait_until([&] { return acked == kThreads * kPerThread; }));
  CHECK(failures == 0);
  CHECK(offsets.size() == kThreads * kPerThread);
  CHECK(*offsets.rbegin() == kThreads * kPerThread);
}

TEST_CASE("a group resumes after its committed offset when restarted") {
  BrokerFixture f;
  f.topic("permit.issued");
  ConsumerGroupOptions g;
  g.group = "tax";
  g.topics = {"permit.issued"};
  g.start_from = StartFrom::kEarliest;
  for (int i = 0; i < 5; ++i)
    REQUIRE(f.broker().publish(event("permit.issued", Json::object({{"n", i}}))).ok());
  {
    Collector got;
    auto sub = f.broker().subscribe(g, [&](const DeliveredEvent& e) {
      got.add(e);
      return Status();
    });
    REQUIRE(sub.ok());
    REQUIRE(got.wait_for(5));
  }  // stopping commits the offset
  for (int i = 5; i < 8; ++i)
    REQUIRE(f.broker().publish(event("permit.issued", Json::object({{"n", i}}))).ok());
  f.reopen();
  Collector got;
  auto sub = f.broker().subscribe(g, [&](const DeliveredEvent& e) {
    got.add(e);
    return Status();
  });
  REQUIRE(sub.ok());
  REQUIRE(got.wait_for(3));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto events = got.events();
  REQUIRE(events.size() == 3);
  CHECK(events[0].event.data().get_int("n") == 5);
  CHECK(events[2].event.data().get_int("n") == 7);

  auto infos = f.broker().groups();
  REQUIRE(infos.ok());
  REQUIRE(infos->size() == 1);
  CHECK(infos->front().active);
}

TEST_CASE("a new group starting at latest sees only new events; seek replays from an offset") {
  BrokerFixture f;
  f.topic("permit.issued");
  for (int i = 0; i < 3; ++i)
    REQUIRE(f.broker().publish(event("permit.issued", Json::object({{"n", i}}))).ok());
  ConsumerGroupOptions g;
  g.group = "planning";
  g.topics = {"permit.issued"};
  {
    Collector got;
    auto sub = f.broker().subscribe(g, [&](const DeliveredEvent& e) {
      got.add(e);
      return Status();
    });
    REQUIRE(sub.ok());
    REQUIRE(f.broker().publish(event("permit.issued", Json::object({{"n", 3}}))).ok());
    REQUIRE(got.wait_for(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(got.size() == 1);
    CHECK(got.events()[0].event.data().get_int("n") == 3);
    CHECK(f.broker().seek_group("planning", 1).code() == ErrorCode::kFailedPrecondition);
  }
  REQUIRE(f.broker().seek_group("planning", 2).ok());
  Collector got;
  auto sub = f.broker().subscribe(g, [&](const DeliveredEvent& e) {
    got.add(e);
    return Status();
  });
  REQUIRE(got.wait_for(3));
  CHECK(got.events()[0].offset == 2);
  CHECK(f.broker().seek_group("nobody", 1).code() == ErrorCode::kNotFound);
}

TEST_CASE("failing events are retried with backoff, then dead-lettered, and can be replayed") {
  BrokerFixture f;
  f.topic("payment.completed");
  std::atomic<bool> healthy{false};
  std::atomic<int> attempts{0};
  Collector ok;
  ConsumerGroupOptions g;
  g.group = "erp";
  g.topics = {"payment.*"};
  g.max_deliveries = 3;
  g.initial_backoff = std::chrono::milliseconds(5);
  auto sub = f.broker().subscribe(g, [&](const DeliveredEvent& e) {
    if (e.event.data().get_bool("poison") && !healthy) {
      ++attempts;
      return unavailable("ERP rejected GL posting: account 4100 is closed");
    }
    ok.add(e);
    return Status();
  });
  REQUIRE(sub.ok());
  REQUIRE(f.broker()
              .publish(event("payment.completed", Json::object({{"poison", true}}), "bad-1"))
              .ok());
  REQUIRE(f.broker().publish(event("payment.completed", Json::object({{"n", 2}}))).ok());
  REQUIRE(ok.wait_for(1));
  REQUIRE(civicbus::testing::wait_until([&] {
    auto d = f.broker().dead_letters({});
    return d.ok() && d->size() == 1;
  }));
  CHECK(attempts == 3);
  auto letters = f.broker().dead_letters({});
  REQUIRE(letters.ok());
  const DeadLetter& d = letters->front();
  CHECK(d.group == "erp");
  CHECK(d.topic == "payment.completed");
  CHECK(d.event_id == "bad-1");
  CHECK(d.attempts == 3);
  CHECK(d.error.find("account 4100 is closed") != std::string::npos);
  CHECK(d.payload.find("\"poison\":true") != std::string::npos);

  DlqFilter by_error;
  by_error.error_contains = "4100";
  CHECK(f.broker().dead_letters(by_error)->size() == 1);
  by_error.error_contains = "timeout";
  CHECK(f.broker().dead_letters(by_error)->empty());

  // The group moved past the dead letter.
  REQUIRE(civicbus::testing::wait_until([&] {
    auto gi = f.broker().groups();
    return gi.ok() && gi->front().committed_offset == 2;
  }));

  healthy = true;
  auto replayed = f.broker().replay_dead_letters({});
  REQUIRE(replayed.ok());
  CHECK(*replayed == 1);
  REQUIRE(ok.wait_for(2));
  auto events = ok.events();
  CHECK(events.back().replay);
  CHECK(events.back().event.id() == "bad-1");
  REQUIRE(civicbus::testing::wait_until([&] { return f.broker().dead_letters({})->empty(); }));
  DlqFilter all;
  all.include_replayed = true;
  auto with_replayed = f.broker().dead_letters(all);
  REQUIRE(with_replayed->size() == 1);
  CHECK(with_replayed->front().replayed_at.has_value());
}

TEST_CASE("events of one partition key are handled in order while keys run in parallel") {
  BrokerFixture f;
  f.topic("iot.reading");
  constexpr int kKeys = 8;
  constexpr int kPerKey = 50;
  std::mutex mu;
  std::map<std::string, std::vector<std::int64_t>> seen;
  std::map<std::string, int> in_handler;
  std::atomic<int> concurrent{0};
  std::atomic<int> max_concurrent{0};
  std::atomic<bool> overlap_same_key{false};
  ConsumerGroupOptions g;
  g.group = "analytics";
  g.topics = {"iot.>"};
  g.parallelism = 4;
  g.start_from = StartFrom::kEarliest;
  auto sub = f.broker().subscribe(g, [&](const DeliveredEvent& e) {
    std::string key = e.event.partition_key();
    {
      std::lock_guard lock(mu);
      if (in_handler[key]++ > 0) overlap_same_key = true;
    }
    int now = ++concurrent;
    int prev = max_concurrent.load();
    while (now > prev && !max_concurrent.compare_exchange_weak(prev, now)) {
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    --concurrent;
    std::lock_guard lock(mu);
    --in_handler[key];
    seen[key].push_back(e.event.data().get_int("seq"));
    return Status();
  });
  REQUIRE(sub.ok());
  for (int i = 0; i < kPerKey; ++i) {
    for (int k = 0; k < kKeys; ++k) {
      auto e = event("iot.reading", Json::object({{"seq", i}}));
      e.set_partition_key("meter-" + std::to_string(k));
      f.broker().publish_async(e, [](Result<PublishAck>) {});
    }
  }
  REQUIRE(civicbus::testing::wait_until(
      [&] {
        std::lock_guard lock(mu);
        std::size_t n = 0;
        for (auto& [k, v] : seen) n += v.size();
        return n == kKeys * kPerKey;
      },
      std::chrono::seconds(20)));
  CHECK_FALSE(overlap_same_key);
  CHECK(max_concurrent > 1);
  for (auto& [key, seqs] : seen) {
    for (std::size_t i = 0; i < seqs.size(); ++i) {
      CHECK_MESSAGE(seqs[i] == static_cast<std::int64_t>(i), key);
    }
  }
}

TEST_CASE("asynchronous handlers acknowledge from another thread") {
  BrokerFixture f;
  f.topic("permit.issued");
  Collector got;
  ConsumerGroupOptions g;
  g.group = "async";
  g.topics = {"permit.issued"};
  std::vector<std::thread> threads;
  std::mutex mu;
  auto sub =
      f.broker().subscribe_async(g, [&](const DeliveredEvent& e, std::function<void(Status)> done) {
        std::lock_guard lock(mu);
        threads.emplace_back([&got, e, done] {
          got.add(e);
          done(Status());
        });
      });
  REQUIRE(sub.ok());
  for (int i = 0; i < 10; ++i)
    REQUIRE(f.broker().publish(event("permit.issued", Json::object({{"n", i}}))).ok());
  REQUIRE(got.wait_for(10));
  sub->reset();
  std::lock_guard lock(mu);
  for (auto& t : threads) t.join();
}

TEST_CASE("metrics and lag per topic and group") {
  BrokerFixture f;
  f.topic("permit.issued");
  ConsumerGroupOptions g;
  g.group = "slow";
  g.topics = {"permit.issued"};
  g.start_from = StartFrom::kEarliest;
  // Register the group, then stop it so events pile up.
  {
    auto sub = f.broker().subscribe(g, [](const DeliveredEvent&) { return Status(); });
    REQUIRE(sub.ok());
  }
  for (int i = 0; i < 4; ++i)
    REQUIRE(f.broker().publish(event("permit.issued", Json::object({{"n", i}}))).ok());
  auto infos = f.broker().groups();
  REQUIRE(infos.ok());
  CHECK(infos->front().lag_events == 4);
  CHECK(infos->front().oldest_unacked_age.count() >= 0);
  REQUIRE(f.broker().run_maintenance().ok());
  std::string text = f.metrics().prometheus_text();
  CHECK(text.find("civicbus_broker_published_total{topic=\"permit.issued\"} 4") !=
        std::string::npos);
  CHECK(text.find("civicbus_broker_lag_events{group=\"slow\"} 4") != std::string::npos);
  CHECK(text.find("civicbus_broker_dlq_events{group=\"slow\"} 0") != std::string::npos);
}

TEST_CASE("the AsyncAPI document lists every topic with owner and schema") {
  BrokerFixture f;
  f.topic("permit.issued");
  REQUIRE(f.broker().register_schema("permit", Json::object({{"type", "object"}})).ok());
  f.topic("permit.approved", {}, "permit");
  Json doc = f.broker().asyncapi();
  CHECK(doc.get_string("asyncapi") == "3.0.0");
  const Json* ch = doc.at_pointer("/channels/permit_approved");
  REQUIRE(ch != nullptr);
  CHECK(ch->get_string("address") == "permit.approved");
  CHECK(ch->get_string("x-civicbus-owner") == "test-team");
  const Json* data =
      doc.at_pointer("/components/messages/permit_approved/payload/schema/properties/data");
  REQUIRE(data != nullptr);
  CHECK(data->get_string("type") == "object");
}

}  // namespace
}  // namespace civicbus::broker
