#include "connect/circuit_breaker.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace civicbus::connect {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

struct Recorder {
  std::vector<BreakerTransition> seen;
  CircuitBreaker::StateChangeCallback callback() {
    return [this](const BreakerTransition& t) { seen.push_back(t); };
  }
};

CircuitBreakerOptions small_options() {
  CircuitBreakerOptions options;
  options.name = "mpac";
  options.failure_threshold = 3;
  options.open_duration = seconds(10);
  options.max_open_duration = seconds(35);
  options.backoff_multiplier = 2.0;
  return options;
}

TEST_CASE("circuit breaker: opens after N consecutive failures and refuses calls") {
  ManualClock clock;
  Recorder recorder;
  CircuitBreaker breaker(small_options(), clock, recorder.callback());
  CHECK(breaker.state() == BreakerState::kClosed);

  for (int i = 0; i < 2; ++i) {
    REQUIRE(breaker.acquire().ok());
    breaker.record_failure();
  }
  CHECK(breaker.state() == BreakerState::kClosed);
  CHECK(breaker.consecutive_failures() == 2);
  // A success in between resets the count.
  REQUIRE(breaker.acquire().ok());
  breaker.record_success();
  CHECK(breaker.consecutive_failures() == 0);

  for (int i = 0; i < 3; ++i) {
    REQUIRE(breaker.acquire().ok());
    breaker.record(unavailable("connection refused"));
  }
  CHECK(breaker.state() == BreakerState::kOpen);
  Status refused = breaker.acquire();
  CHECK(refused.code() == ErrorCode::kUnavailable);
  CHECK(refused.message().find("'mpac' is open") != std::string::npos);
  CHECK(refused.message().find("10000 ms") != std::string::npos);
  CHECK(breaker.retry_after() == seconds(10));

  REQUIRE(recorder.seen.size() == 1);
  CHECK(recorder.seen[0].name == "mpac");
  CHECK(recorder.seen[0].from == BreakerState::kClosed);
  CHECK(recorder.seen[0].to == BreakerState::kOpen);
  CHECK(recorder.seen[0].consecutive_failures == 3);
  CHECK(recorder.seen[0].open_for == seconds(10));
  CHECK(recorder.seen[0].reason == "3 consecutive failures");
}

TEST_CASE(
    "circuit breaker: half-open after the cool-down, a probe success "
    "closes it") {
  ManualClock clock;
  Recorder recorder;
  CircuitBreakerOptions options = small_options();
  options.half_open_probes = 2;
  options.half_open_successes = 2;
  CircuitBreaker breaker(options, clock, recorder.callback());
  for (int i = 0; i < 3; ++i) breaker.record_failure();
  REQUIRE(breaker.state() == BreakerState::kOpen);

  clock.advance(seconds(9));
  CHECK(breaker.acquire().code() == ErrorCode::kUnavailable);
  CHECK(breaker.retry_after() == seconds(1));
  clock.advance(seconds(1));
  CHECK(breaker.state() == BreakerState::kHalfOpen);

  // Two probes at once; the third caller waits.
  REQUIRE(breaker.acquire().ok());
  REQUIRE(breaker.acquire().ok());
  Status third = breaker.acquire();
  CHECK(third.code() == ErrorCode::kUnavailable);
  CHECK(third.message().find("half-open") != std::string::npos);

  breaker.record_success();
  CHECK(breaker.state() == BreakerState::kHalfOpen);  // needs two successes
  breaker.record_success();
  CHECK(breaker.state() == BreakerState::kClosed);
  CHECK(breaker.acquire().ok());

  REQUIRE(recorder.seen.size() == 3);
  CHECK(recorder.seen[1].from == BreakerState::kOpen);
  CHECK(recorder.seen[1].to == BreakerState::kHalfOpen);
  CHECK(recorder.seen[2].from == BreakerState::kHalfOpen);
  CHECK(recorder.seen[2].to == BreakerState::kClosed);
  CHECK(recorder.seen[2].reason == "probe succeeded");
}

TEST_CASE(
    "circuit breaker: a failed probe reopens it with a longer cool-down, "
    "capped") {
  ManualClock clock;
  Recorder recorder;
  CircuitBreaker breaker(small_options(), clock, recorder.callback());
  for (int i = 0; i < 3; ++i) breaker.record_failure();
  // Cool-downs: 10 s, then 20 s, then 35 s (40 capped), then 35 s again.
  const milliseconds expected[] = {seconds(20), seconds(35), seconds(35)};
  milliseconds current = seconds(10);
  for (milliseconds next : expected) {
    clock.advance(current);
    REQUIRE(breaker.acquire().ok());
    CHECK(breaker.state() == BreakerState::kHalfOpen);
    breaker.record_failure();
    CHECK(breaker.state() == BreakerState::kOpen);
    CHECK(breaker.retry_after() == next);
    CHECK(recorder.seen.back().reason == "probe failed");
    CHECK(recorder.seen.back().open_for == next);
    current = next;
  }
  // Closing resets the cool-down to the first one.
  clock.advance(current);
  REQUIRE(breaker.acquire().ok());
  breaker.record_success();
  CHECK(breaker.state() == BreakerState::kClosed);
  for (int i = 0; i < 3; ++i) breaker.record_failure();
  CHECK(breaker.retry_after() == seconds(10));
}

TEST_CASE("circuit breaker: a cancelled probe frees its slot without counting") {
  ManualClock clock;
  CircuitBreaker breaker(small_options(), clock);
  for (int i = 0; i < 3; ++i) breaker.record_failure();
  clock.advance(seconds(10));
  REQUIRE(breaker.acquire().ok());
  CHECK_FALSE(breaker.acquire().ok());
  breaker.record(cancelled("shutdown"));
  CHECK(breaker.state() == BreakerState::kHalfOpen);
  CHECK(breaker.acquire().ok());
}

TEST_CASE("circuit breaker: the failure-rate rule opens on a mixed window") {
  ManualClock clock;
  CircuitBreakerOptions options = small_options();
  options.failure_threshold = 100;  // only the rate rule can trip
  options.failure_rate = 0.5;
  options.rate_window = seconds(60);
  options.rate_min_calls = 10;
  CircuitBreaker breaker(options, clock);
  // Alternate success and failure: never two failures in a row, but half of them fail.
  for (int i = 0; i < 8; ++i) {
    if (i % 2 == 0) {
      breaker.record_success();
    } else {
      breaker.record_failure();
    }
  }
  CHECK(breaker.state() == BreakerState::kClosed);  // 8 calls: below rate_min_calls
  breaker.record_success();
  breaker.record_failure();  // 10 calls, 5 failures
  CHECK(breaker.state() == BreakerState::kOpen);

  SUBCASE("old outcomes leave the window") {
    CircuitBreaker fresh(options, clock);
    for (int i = 0; i < 9; ++i) fresh.record_failure();
    fresh.record_success();
    clock.advance(seconds(61));
    for (int i = 0; i < 9; ++i) fresh.record_success();
    fresh.record_failure();  // the window now holds 10 calls with 1 failure
    CHECK(fresh.state() == BreakerState::kClosed);
  }
}

TEST_CASE("circuit breaker: reset closes it and options are validated") {
  ManualClock clock;
  Recorder recorder;
  CircuitBreaker breaker(small_options(), clock, recorder.callback());
  for (int i = 0; i < 3; ++i) breaker.record_failure();
  breaker.reset();
  CHECK(breaker.state() == BreakerState::kClosed);
  CHECK(recorder.seen.back().reason == "reset");
  CHECK(breaker.consecutive_failures() == 0);

  CircuitBreakerOptions bad = small_options();
  bad.failure_threshold = 0;
  auto created = CircuitBreaker::create(bad, clock);
  REQUIRE_FALSE(created.ok());
  CHECK(created.status().code() == ErrorCode::kInvalidArgument);
  CHECK(created.status().message().find("failure_threshold") != std::string::npos);
  bad = small_options();
  bad.max_open_duration = seconds(1);
  CHECK_FALSE(CircuitBreaker::create(bad, clock).ok());
  bad = small_options();
  bad.failure_rate = 1.5;
  CHECK_FALSE(CircuitBreaker::create(bad, clock).ok());
  CHECK(CircuitBreaker::create(small_options(), clock).ok());
  CHECK(breaker_state_name(BreakerState::kHalfOpen) == "half_open");
}

TEST_CASE(
    "circuit breaker: concurrent callers see a consistent chain of "
    "transitions") {
  ManualClock clock;
  std::mutex mu;
  std::vector<BreakerTransition> seen;
  CircuitBreakerOptions options = small_options();
  options.half_open_probes = 3;
  CircuitBreaker breaker(options, clock, [&](const BreakerTransition& t) {
    std::lock_guard lock(mu);
    seen.push_back(t);
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        if (breaker.acquire().ok()) {
          if ((i + t) % 7 == 0) {
            breaker.record_success();
          } else {
            breaker.record_failure();
          }
        }
        if (i % 50 == 0) clock.advance(seconds(40));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  REQUIRE_FALSE(seen.empty());
  // Each transition starts where the previous one ended.
  for (std::size_t i = 1; i < seen.size(); ++i) {
    CHECK(seen[i].from == seen[i - 1].to);
    CHECK(seen[i].from != seen[i].to);
  }
  CHECK(seen.front().from == BreakerState::kClosed);
}

TEST_CASE("retry policy: exponential delays, capped, with seeded jitter") {
  RetryPolicyOptions options;
  options.max_attempts = 4;
  options.initial_backoff = milliseconds(100);
  options.multiplier = 3.0;
  options.max_backoff = milliseconds(2000);
  options.jitter = 0.0;
  auto plain = RetryPolicy::create(options, nullptr);
  REQUIRE(plain.ok());
  CHECK(plain->next_delay(1) == milliseconds(100));
  CHECK(plain->next_delay(2) == milliseconds(300));
  CHECK(plain->next_delay(3) == milliseconds(900));
  CHECK(plain->next_delay(4) == milliseconds(2000));   // 2700 capped
  CHECK(plain->next_delay(60) == milliseconds(2000));  // no overflow on large attempts

  options.jitter = 0.25;
  SeededRandom random_a(42), random_b(42);
  auto a = RetryPolicy::create(options, &random_a);
  auto b = RetryPolicy::create(options, &random_b);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  bool varied = false;
  milliseconds first{-1};
  for (int i = 0; i < 50; ++i) {
    const milliseconds d = a->next_delay(2);
    CHECK(d == b->next_delay(2));  // same seed, same delays
    CHECK(d >= milliseconds(225));
    CHECK(d <= milliseconds(375));
    if (first.count() >= 0 && d != first) varied = true;
    first = d;
  }
  CHECK(varied);
  for (int i = 0; i < 20; ++i) CHECK(a->next_delay(5) <= milliseconds(2000));

  CHECK_FALSE(RetryPolicy::create(options, nullptr).ok());  // jitter needs randomness
  options.multiplier = 0.5;
  CHECK(RetryPolicy::create(options, &random_a).status().code() == ErrorCode::kInvalidArgument);
}

TEST_CASE("retry policy: only transient codes are retried, up to max_attempts") {
  RetryPolicyOptions options;
  options.max_attempts = 3;
  options.jitter = 0;
  RetryPolicy policy(options, nullptr);
  CHECK(policy.is_retryable(unavailable("down")));
  CHECK(policy.is_retryable(deadline_exceeded("slow")));
  CHECK(policy.is_retryable(resource_exhausted("429")));
  CHECK(policy.is_retryable(aborted("conflict")));
  CHECK_FALSE(policy.is_retryable(invalid_argument("bad")));
  CHECK_FALSE(policy.is_retryable(unauthenticated("401")));
  CHECK_FALSE(policy.is_retryable(Status()));
  CHECK(policy.should_retry(unavailable("down"), 1));
  CHECK(policy.should_retry(unavailable("down"), 2));
  CHECK_FALSE(policy.should_retry(unavailable("down"), 3));
  CHECK_FALSE(policy.should_retry(permission_denied("no"), 1));
}

}  // namespace
}  // namespace civicbus::connect
