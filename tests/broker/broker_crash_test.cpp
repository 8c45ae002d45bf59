// Kills a publishing process with SIGKILL in the middle of a publish storm and checks that
// every event it was told was durable is in the log exactly once after a restart.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <sstream>
#include <thread>

#include "broker/broker_fixture.hpp"

namespace civicbus::broker {
namespace {

struct Stack {
  SystemClock clock;
  SecureRandom random;
  MetricsRegistry metrics;
  std::unique_ptr<Executor> executor = make_thread_pool(2);
  std::unique_ptr<storage::Database> db;
  std::unique_ptr<transport::Transport> transport;
  std::unique_ptr<Broker> broker;

  Status open(const std::string& path) {
    storage::SqliteOptions so;
    so.path = path;
    CIVICBUS_ASSIGN_OR_RETURN(db, storage::open_sqlite(so));
    transport::InProcessOptions lo;
    lo.path = path + ".log";
    CIVICBUS_ASSIGN_OR_RETURN(transport, transport::open_in_process(lo, clock, &metrics));
    BrokerOptions bo;
    bo.maintenance_interval = std::chrono::milliseconds(50);
    Logger logger(LogOptions{LogLevel::kOff, LogFormat::kText, {}}, clock);
    CIVICBUS_ASSIGN_OR_RETURN(
        broker, Broker::open(
                    bo, BrokerContext{*db, *transport, *executor, clock, metrics, random, logger}));
    TopicOptions t;
    t.name = "payment.completed";
    t.owner = "finance";
    return broker->create_topic(t);
  }
};

[[noreturn]] void publishing_child(const std::string& path, int out_fd) {
  Stack s;
  Status st = s.open(path);
  if (!st.ok()) {
    std::fprintf(stderr, "child: %s\n", st.to_string().c_str());
    ::_exit(3);
  }
  // A consumer group committing offsets while the storm runs.
  ConsumerGroupOptions g;
  g.group = "erp";
  g.topics = {"payment.*"};
  g.start_from = StartFrom::kEarliest;
  auto sub = s.broker->subscribe(g, [](const DeliveredEvent&) { return Status(); });
  std::mutex out_mu;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0;; ++i) {
        std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        auto r = s.broker->publish(
            testing_support::event("payment.completed", Json::object({{"amount", i}}), id));
        if (r.ok()) {
          std::string line = id + " " + std::to_string(r->offset) + "\n";
          std::lock_guard lock(out_mu);
          if (::write(out_fd, line.data(), line.size()) < 0) ::_exit(4);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ::_exit(0);
}

TEST_CASE("every acknowledged event survives SIGKILL exactly once, offsets stay consistent") {
  civicbus::testing::TempDir dir;
  const std::string path = dir.file("civicbus.db");
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    publishing_child(path, fds[1]);
  }
  ::close(fds[1]);
  // Read acknowledgements until enough arrived, then kill mid-storm.
  std::string acked_text;
  char buf[65536];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::size_t lines = 0;
  while (lines < 3000 && std::chrono::steady_clock::now() < deadline) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    acked_text.append(buf, static_cast<std::size_t>(n));
    lines = static_cast<std::size_t>(std::count(acked_text.begin(), acked_text.end(), '\n'));
  }
  ::kill(pid, SIGKILL);
  // Whatever the child wrote before dying was acknowledged too.
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0)
    acked_text.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(lines >= 3000);

  std::map<std::string, std::int64_t> acked;
  std::istringstream in(acked_text);
  std::string id;
  std::int64_t offset;
  while (in >> id >> offset) acked[id] = offset;
  MESSAGE("acknowledged before SIGKILL: " << acked.size());

  Stack s;
  Status st = s.open(path);
  REQUIRE_MESSAGE(st.ok(), st.to_string());
  std::map<std::string, int> copies;
  std::map<std::string, std::int64_t> stored_offset;
  std::int64_t from = 1;
  for (;;) {
    auto records = s.transport->read(from, 4096);
    REQUIRE(records.ok());
    if (records->empty()) break;
    for (const auto& r : *records) {
      ++copies[r->event_id];
      stored_offset[r->event_id] = r->offset;
      from = r->offset + 1;
    }
  }
  std::size_t missing = 0;
  std::size_t moved = 0;
  for (const auto& [eid, off] : acked) {
    if (copies[eid] != 1) ++missing;
    if (stored_offset[eid] != off) ++moved;
  }
  CHECK(missing == 0);
  CHECK(moved == 0);
  for (const auto& [eid, count] : copies) CHECK_MESSAGE(count == 1, eid);

  // Publishing an acknowledged event again after the restart is recognised as a duplicate.
  const auto& [some_id, some_offset] = *acked.begin();
  auto again = s.broker->publish(
      testing_support::event("payment.completed", Json::object({{"amount", 0}}), some_id));
  REQUIRE(again.ok());
  CHECK(again->duplicate);
  CHECK(again->offset == some_offset);

  // The group's committed offset is within the log, and it resumes from there.
  auto groups = s.broker->groups();
  REQUIRE(groups.ok());
  REQUIRE(groups->size() == 1);
  const auto committed = groups->front().committed_offset;
  CHECK(committed >= 0);
  CHECK(committed < s.transport->next_offset());
  testing_support::Collector got;
  ConsumerGroupOptions g;
  g.group = "erp";
  g.topics = {"payment.*"};
  auto sub = s.broker->subscribe(g, [&](const DeliveredEvent& e) {
    got.add(e);
    return Status();
  });
  REQUIRE(sub.ok());
  const auto expected = static_cast<std::size_t>(s.transport->next_offset() - 1 - committed);
  REQUIRE(got.wait_for(expected, std::chrono::seconds(30)));
  auto events = got.events();
  CHECK(events.front().offset == committed + 1);
}

}  // namespace
}  // namespace civicbus::broker
