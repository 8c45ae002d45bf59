#include "gateway/upstream_pool.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace civicbus::gateway {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

UpstreamPoolOptions three_targets(Balancing balancing = Balancing::kRoundRobin) {
  UpstreamPoolOptions options;
  options.name = "permits";
  options.targets = {"a.internal:8080", "b.internal:8080", "c.internal:8080"};
  options.balancing = balancing;
  return options;
}

std::unique_ptr<UpstreamPool> make_pool(UpstreamPoolOptions options, const Clock& clock) {
  auto pool = UpstreamPool::create(std::move(options), clock);
  REQUIRE_MESSAGE(pool.ok(), pool.status().to_string());
  return std::move(pool).value();
}

UpstreamPool::Lease take(UpstreamPool& pool, std::size_t exclude = SIZE_MAX) {
  auto lease = pool.acquire(exclude);
  REQUIRE_MESSAGE(lease.ok(), lease.status().to_string());
  return std::move(lease).value();
}

// Acquires and reports one request; returns the target it went to.
std::size_t send(UpstreamPool& pool, UpstreamOutcome outcome) {
  UpstreamPool::Lease lease = take(pool);
  const std::size_t target = lease.target();
  lease.report(outcome);
  return target;
}

// Sends requests until one goes to `target`, which ends with `outcome`; the others succeed.
void report_to(UpstreamPool& pool, std::size_t target, UpstreamOutcome outcome) {
  for (;;) {
    UpstreamPool::Lease lease = take(pool);
    if (lease.target() == target) {
      lease.report(outcome);
      return;
    }
    lease.report(UpstreamOutcome::kSuccess);
  }
}

void fail_target(UpstreamPool& pool, std::size_t target, std::uint32_t failures) {
  for (std::uint32_t i = 0; i < failures; ++i) report_to(pool, target, UpstreamOutcome::kFailure);
}

TEST_CASE("upstream pool: round robin visits the targets in order") {
  ManualClock clock;
  auto pool = make_pool(three_targets(), clock);
  std::vector<std::size_t> order;
  for (int i = 0; i < 7; ++i) order.push_back(send(*pool, UpstreamOutcome::kSuccess));
  CHECK(order == std::vector<std::size_t>{0, 1, 2, 0, 1, 2, 0});
  // In-flight requests do not change the rotation.
  UpstreamPool::Lease a = take(*pool);
  UpstreamPool::Lease b = take(*pool);
  CHECK(a.target() == 1);
  CHECK(b.target() == 2);
  CHECK(a.host_port() == "b.internal:8080");
  CHECK(pool->in_flight() == 2);
}

TEST_CASE("upstream pool: least request picks the idle target") {
  ManualClock clock;
  auto pool = make_pool(three_targets(Balancing::kLeastRequest), clock);
  UpstreamPool::Lease first = take(*pool);
  UpstreamPool::Lease second = take(*pool);
  UpstreamPool::Lease third = take(*pool);
  // With nothing in flight, ties rotate: each target got one.
  CHECK(first.target() == 0);
  CHECK(second.target() == 1);
  CHECK(third.target() == 2);
  UpstreamPool::Lease fourth = take(*pool);  // all at one: the rotation continues
  CHECK(fourth.target() == 0);
  second.report(UpstreamOutcome::kSuccess);  // target 1 is now the only idle one
  for (int i = 0; i < 3; ++i) {
    UpstreamPool::Lease next = take(*pool);
    CHECK(next.target() == 1);
    next.report(UpstreamOutcome::kSuccess);
  }
  // A busy target is avoided while it stays busy.
  std::vector<UpstreamPool::Lease> held;
  for (int i = 0; i < 4; ++i) held.push_back(take(*pool));
  // Held: 0 has 2, 1 has 0, 2 has 1. The four go to 1, 2 (first of the tied), 1, then 2.
  const auto status = pool->status();
  CHECK(status[0].in_flight == 2);
  CHECK(status[1].in_flight == 2);
  CHECK(status[2].in_flight == 3);
  CHECK(pool->in_flight() == 7);
}

TEST_CASE("upstream pool: exclude sends a retry elsewhere, unless nothing else qualifies") {
  ManualClock clock;
  for (Balancing balancing : {Balancing::kRoundRobin, Balancing::kLeastRequest}) {
    auto pool = make_pool(three_targets(balancing), clock);
    for (int i = 0; i < 6; ++i) {
      UpstreamPool::Lease lease = take(*pool, 1);
      CHECK(lease.target() != 1);
    }
    // Targets 0 and 2 open their breakers: the excluded target is the only one left.
    UpstreamPoolOptions one_left = three_targets(balancing);
    one_left.passive.consecutive_failures = 1;
    auto small = make_pool(one_left, clock);
    UpstreamPool::Lease l0 = take(*small);
    UpstreamPool::Lease l1 = take(*small);
    UpstreamPool::Lease l2 = take(*small);
    l0.report(UpstreamOutcome::kFailure);
    l2.report(UpstreamOutcome::kTimeout);
    l1.report(UpstreamOutcome::kSuccess);
    UpstreamPool::Lease retry = take(*small, 1);
    CHECK(retry.target() == 1);
  }
}

TEST_CASE("upstream pool: the breaker opens after consecutive failures") {
  ManualClock clock;
  UpstreamPoolOptions options = three_targets();
  options.passive.consecutive_failures = 3;
  auto pool = make_pool(options, clock);
  // Two failures, a success, two failures: never three in a row.
  for (UpstreamOutcome outcome :
       {UpstreamOutcome::kFailure, UpstreamOutcome::kFailure, UpstreamOutcome::kSuccess,
        UpstreamOutcome::kFailure, UpstreamOutcome::kTimeout}) {
    report_to(*pool, 0, outcome);
  }
  CHECK(pool->status()[0].breaker == BreakerState::kClosed);
  fail_target(*pool, 0, 1);  // third in a row (timeouts count as failures)
  auto status = pool->status();
  CHECK(status[0].breaker == BreakerState::kOpen);
  CHECK(status[0].failures == 5);
  CHECK(status[1].breaker == BreakerState::kClosed);
  // Target 0 gets nothing while open.
  for (int i = 0; i < 10; ++i) CHECK(send(*pool, UpstreamOutcome::kSuccess) != 0);
  // consecutive_failures = 0 never opens it.
  UpstreamPoolOptions never = three_targets();
  never.passive.consecutive_failures = 0;
  auto tolerant = make_pool(never, clock);
  fail_target(*tolerant, 2, 50);
  CHECK(tolerant->status()[2].breaker == BreakerState::kClosed);
  CHECK(tolerant->status()[2].failures == 50);
}

TEST_CASE("upstream pool: half-open lets exactly one probe through, success closes") {
  ManualClock clock;
  UpstreamPoolOptions options = three_targets();
  options.targets = {"a.internal:8080", "b.internal:8080"};
  options.passive.consecutive_failures = 2;
  options.passive.open_duration = seconds{30};
  auto pool = make_pool(options, clock);
  fail_target(*pool, 0, 2);
  CHECK(pool->status()[0].breaker == BreakerState::kOpen);
  clock.advance(seconds{29});
  for (int i = 0; i < 4; ++i) CHECK(send(*pool, UpstreamOutcome::kSuccess) == 1);
  clock.advance(seconds{1});
  CHECK(pool->status()[0].breaker == BreakerState::kHalfOpen);
  // The next requests: one probe to target 0, the rest to target 1 while it is out.
  std::vector<UpstreamPool::Lease> held;
  for (int i = 0; i < 6; ++i) held.push_back(take(*pool));
  int to_zero = 0;
  UpstreamPool::Lease* probe = nullptr;
  for (auto& lease : held) {
    if (lease.target() == 0) {
      ++to_zero;
      probe = &lease;
    }
  }
  REQUIRE(to_zero == 1);
  CHECK(pool->status()[0].breaker == BreakerState::kHalfOpen);
  probe->report(UpstreamOutcome::kSuccess);
  held.clear();
  CHECK(pool->status()[0].breaker == BreakerState::kClosed);
  // Closed again: round robin includes target 0, and it takes two new failures to reopen.
  std::vector<std::size_t> order;
  for (int i = 0; i < 4; ++i) order.push_back(send(*pool, UpstreamOutcome::kSuccess));
  CHECK(std::count(order.begin(), order.end(), 0) == 2);
  fail_target(*pool, 0, 1);
  CHECK(pool->status()[0].breaker == BreakerState::kClosed);
}

TEST_CASE("upstream pool: a failed probe reopens the breaker, an abandoned one does not count") {
  ManualClock clock;
  UpstreamPoolOptions options;
  options.name = "permits";
  options.targets = {"only.internal:80"};
  options.passive.consecutive_failures = 1;
  options.passive.open_duration = seconds{10};
  auto pool = make_pool(options, clock);
  send(*pool, UpstreamOutcome::kFailure);
  CHECK(pool->acquire().status().code() == ErrorCode::kUnavailable);
  clock.advance(seconds{10});
  {
    UpstreamPool::Lease probe = take(*pool);
    // The probe is out: nothing else goes through.
    auto second = pool->acquire();
    CHECK(second.status().code() == ErrorCode::kUnavailable);
    CHECK(second.status().message() == "upstream 'permits': no healthy target (1 open breaker)");
    // Dropped without report(): kNotConsidered, still half-open, the next request probes.
  }
  CHECK(pool->status()[0].breaker == BreakerState::kHalfOpen);
  {
    UpstreamPool::Lease probe = take(*pool);
    probe.report(UpstreamOutcome::kNotConsidered);
  }
  UpstreamPool::Lease probe = take(*pool);
  probe.report(UpstreamOutcome::kFailure);
  auto status = pool->status();
  CHECK(status[0].breaker == BreakerState::kOpen);
  CHECK(status[0].failures == 2);
  CHECK(status[0].requests == 4);
  CHECK(pool->acquire().status().code() == ErrorCode::kUnavailable);
  // A fresh open_duration from the failed probe.
  clock.advance(seconds{9});
  CHECK(pool->acquire().status().code() == ErrorCode::kUnavailable);
  clock.advance(seconds{1});
  send(*pool, UpstreamOutcome::kSuccess);
  CHECK(pool->status()[0].breaker == BreakerState::kClosed);
}

TEST_CASE("upstream pool: 4xx counts as success and abandoned requests count for nothing") {
  ManualClock clock;
  UpstreamPoolOptions options = three_targets();
  options.targets = {"only.internal:80"};
  options.passive.consecutive_failures = 2;
  auto pool = make_pool(options, clock);
  // failure, (4xx) success, failure: no two in a row.
  send(*pool, UpstreamOutcome::kFailure);
  send(*pool, UpstreamOutcome::kSuccess);
  send(*pool, UpstreamOutcome::kFailure);
  CHECK(pool->status()[0].breaker == BreakerState::kClosed);
  // kNotConsidered between two failures neither resets nor adds to the run.
  send(*pool, UpstreamOutcome::kNotConsidered);
  CHECK(pool->status()[0].breaker == BreakerState::kClosed);
  CHECK(pool->status()[0].failures == 2);
  send(*pool, UpstreamOutcome::kFailure);
  CHECK(pool->status()[0].breaker == BreakerState::kOpen);
}

TEST_CASE("upstream pool: active probes move targets after the thresholds") {
  ManualClock clock;
  UpstreamPoolOptions options = three_targets();
  options.active.path = "/healthz";
  options.active.healthy_threshold = 2;
  options.active.unhealthy_threshold = 3;
  auto pool = make_pool(options, clock);
  CHECK(pool->status()[1].healthy);
  pool->report_probe(1, false);
  pool->report_probe(1, false);
  pool->report_probe(1, true);  // the run is broken
  pool->report_probe(1, false);
  pool->report_probe(1, false);
  CHECK(pool->status()[1].healthy);
  pool->report_probe(1, false);
  CHECK_FALSE(pool->status()[1].healthy);
  for (int i = 0; i < 6; ++i) CHECK(send(*pool, UpstreamOutcome::kSuccess) != 1);
  // Excluding target 0 leaves target 2, never the unhealthy one.
  CHECK(take(*pool, 0).target() == 2);
  pool->report_probe(1, true);
  CHECK_FALSE(pool->status()[1].healthy);
  pool->report_probe(1, true);
  CHECK(pool->status()[1].healthy);
  std::vector<std::size_t> order;
  for (int i = 0; i < 3; ++i) order.push_back(send(*pool, UpstreamOutcome::kSuccess));
  CHECK(std::count(order.begin(), order.end(), 1) == 1);
  pool->report_probe(99, false);  // out of range: ignored

  // Without active checks, probe results change nothing.
  auto passive_only = make_pool(three_targets(), clock);
  for (int i = 0; i < 10; ++i) passive_only->report_probe(0, false);
  CHECK(passive_only->status()[0].healthy);
}

TEST_CASE("upstream pool: all targets down is kUnavailable naming the upstream") {
  ManualClock clock;
  UpstreamPoolOptions options = three_targets();
  options.active.path = "/healthz";
  options.active.unhealthy_threshold = 1;
  options.passive.consecutive_failures = 1;
  auto pool = make_pool(options, clock);
  pool->report_probe(0, false);
  pool->report_probe(1, false);
  send(*pool, UpstreamOutcome::kFailure);  // target 2, the only healthy one
  auto lease = pool->acquire();
  CHECK(lease.status().code() == ErrorCode::kUnavailable);
  CHECK(lease.status().message() ==
        "upstream 'permits': no healthy target (2 unhealthy, 1 open breaker)");
  pool->report_probe(2, false);
  CHECK(pool->acquire().status().message() ==
        "upstream 'permits': no healthy target (3 unhealthy)");
}

TEST_CASE("upstream pool: max_concurrent_requests caps the requests in flight") {
  ManualClock clock;
  UpstreamPoolOptions options = three_targets();
  options.max_concurrent_requests = 2;
  auto pool = make_pool(options, clock);
  UpstreamPool::Lease a = take(*pool);
  UpstreamPool::Lease b = take(*pool);
  auto refused = pool->acquire();
  CHECK(refused.status().code() == ErrorCode::kResourceExhausted);
  CHECK(refused.status().message().find("'permits'") != std::string::npos);
  CHECK(pool->in_flight() == 2);
  a.report(UpstreamOutcome::kSuccess);
  a.report(UpstreamOutcome::kFailure);  // a second report does nothing
  CHECK(pool->in_flight() == 1);
  CHECK(pool->status()[0].failures == 0);
  UpstreamPool::Lease c = take(*pool);
  CHECK(pool->acquire().status().code() == ErrorCode::kResourceExhausted);
  { UpstreamPool::Lease gone = std::move(b); }  // released by destruction
  CHECK(pool->in_flight() == 1);
  CHECK(pool->acquire().ok());  // and released again at once (a temporary)
  CHECK(pool->in_flight() == 1);
}

TEST_CASE("upstream pool: leases are move-only handles") {
  ManualClock clock;
  auto pool = make_pool(three_targets(), clock);
  UpstreamPool::Lease empty;
  CHECK_FALSE(empty);
  CHECK(empty.host_port().empty());
  empty.report(UpstreamOutcome::kFailure);  // nothing to do
  UpstreamPool::Lease a = take(*pool);
  UpstreamPool::Lease moved(std::move(a));
  CHECK_FALSE(a);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  CHECK(moved);
  a.report(UpstreamOutcome::kFailure);  // NOLINT(bugprone-use-after-move)
  CHECK(pool->in_flight() == 1);
  UpstreamPool::Lease b = take(*pool);
  b = std::move(moved);  // b's own request ends, kNotConsidered
  CHECK(pool->in_flight() == 1);
  CHECK(b.target() == 0);
  b.report(UpstreamOutcome::kFailure);
  CHECK(pool->in_flight() == 0);
  const auto status = pool->status();
  CHECK(status[0].failures == 1);
  CHECK(status[1].failures == 0);
}

TEST_CASE("upstream pool: status reports every target") {
  ManualClock clock;
  UpstreamPoolOptions options = three_targets();
  options.passive.consecutive_failures = 1;
  options.active.path = "/healthz";
  options.active.unhealthy_threshold = 1;
  auto pool = make_pool(options, clock);
  send(*pool, UpstreamOutcome::kFailure);  // 0: open
  UpstreamPool::Lease held = take(*pool);  // 1: in flight
  send(*pool, UpstreamOutcome::kSuccess);  // 2
  pool->report_probe(2, false);            // 2: unhealthy
  const auto status = pool->status();
  REQUIRE(status.size() == 3);
  CHECK(status[0].target == "a.internal:8080");
  CHECK(status[0].breaker == BreakerState::kOpen);
  CHECK(status[0].healthy);
  CHECK(status[0].requests == 1);
  CHECK(status[0].failures == 1);
  CHECK(status[0].in_flight == 0);
  CHECK(status[1].target == "b.internal:8080");
  CHECK(status[1].in_flight == 1);
  CHECK(status[1].requests == 1);
  CHECK(status[1].breaker == BreakerState::kClosed);
  CHECK(status[2].target == "c.internal:8080");
  CHECK_FALSE(status[2].healthy);
  CHECK(status[2].requests == 1);
  CHECK(status[2].failures == 0);
  CHECK(pool->options().name == "permits");
}

TEST_CASE("upstream pool: concurrent acquire and report keep the counters consistent") {
  ManualClock clock;
  UpstreamPoolOptions options = three_targets(Balancing::kLeastRequest);
  options.passive.consecutive_failures = 3;
  options.passive.open_duration = milliseconds{5};
  options.max_concurrent_requests = 8;
  auto pool = make_pool(options, clock);
  constexpr int kThreads = 4;
  constexpr int kIterations = 5000;
  std::atomic<std::uint64_t> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<UpstreamPool::Lease> held;
      for (int i = 0; i < kIterations; ++i) {
        auto lease = pool->acquire(static_cast<std::size_t>(i % 4));
        if (lease.ok()) {
          ++admitted;
          held.push_back(std::move(lease).value());
        }
        clock.advance(std::chrono::microseconds{100});
        if (held.size() > 2 || i % 5 == 0) {
          for (std::size_t k = 0; k < held.size(); ++k) {
            held[k].report((t + i + static_cast<int>(k)) % 4 == 0 ? UpstreamOutcome::kFailure
                                                                  : UpstreamOutcome::kSuccess);
          }
          held.clear();
        }
        if (i % 97 == 0) pool->report_probe(static_cast<std::size_t>(i % 3), i % 2 == 0);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(pool->in_flight() == 0);
  std::uint64_t requests = 0;
  for (const auto& target : pool->status()) {
    CHECK(target.in_flight == 0);
    requests += target.requests;
  }
  CHECK(requests == admitted);
}

TEST_CASE("upstream pool: validate names the upstream and the bad field") {
  auto message = [](const UpstreamPoolOptions& options) {
    const Status status = options.validate();
    CHECK(status.code() == ErrorCode::kInvalidArgument);
    return status.message();
  };
  CHECK(three_targets().validate().ok());
  UpstreamPoolOptions o = three_targets();
  o.name = "";
  CHECK(message(o).find("name") != std::string::npos);
  o = three_targets();
  o.targets.clear();
  CHECK(message(o) == "upstream 'permits': targets must list at least one \"host:port\"");
  o = three_targets();
  o.targets[1] = "no-port";
  CHECK(message(o).find("upstream 'permits': targets[1]: upstream 'no-port' is not host:port") ==
        0);
  o.targets[1] = "b.internal:0";
  CHECK(message(o).find("targets[1]") != std::string::npos);
  o.targets[1] = "[::1]:8080";
  CHECK(o.validate().ok());
  o.targets[2] = "[::1]:8080";
  CHECK(message(o).find("listed twice") != std::string::npos);
  o = three_targets();
  o.active.path = "healthz";
  CHECK(message(o).find("active.path") != std::string::npos);
  o.active.path = "/healthz";
  o.active.healthy_threshold = 0;
  CHECK(message(o).find("active.healthy_threshold") != std::string::npos);
  o.active.healthy_threshold = 1;
  o.active.unhealthy_threshold = 0;
  CHECK(message(o).find("active.unhealthy_threshold") != std::string::npos);
  o.active.unhealthy_threshold = 1;
  o.active.interval = milliseconds{0};
  CHECK(message(o).find("active.interval") != std::string::npos);
  o.active.interval = milliseconds{1000};
  o.active.timeout = milliseconds{-1};
  CHECK(message(o).find("active.timeout") != std::string::npos);
  o = three_targets();
  o.passive.open_duration = milliseconds{0};
  CHECK(message(o).find("passive.open_duration") != std::string::npos);
  o.passive.consecutive_failures = 0;  // the breaker never opens: no duration needed
  CHECK(o.validate().ok());

  ManualClock clock;
  o = three_targets();
  o.targets = {"bad"};
  auto pool = UpstreamPool::create(o, clock);
  CHECK(pool.status().code() == ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace civicbus::gateway
