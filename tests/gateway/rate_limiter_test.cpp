#include "gateway/rate_limiter.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace civicbus::gateway {
namespace {

using std::chrono::hours;
using std::chrono::seconds;

// 2023-11-15T00:00:00Z: day windows start at UTC midnight, so tests start on a boundary.
constexpr std::int64_t kMidnightUs = 1'700'006'400'000'000;

RateLimitDecision take(RateLimiter& limiter, std::string_view key, const RateLimitPolicy& policy,
                       std::uint32_t cost = 1) {
  auto decision = limiter.check(key, policy, cost);
  REQUIRE_MESSAGE(decision.ok(), decision.status().to_string());
  return *decision;
}

int take_until_denied(RateLimiter& limiter, std::string_view key, const RateLimitPolicy& policy) {
  int allowed = 0;
  while (take(limiter, key, policy).allowed) ++allowed;
  return allowed;
}

TEST_CASE("rate_limiter: burst, then the steady rate") {
  ManualClock clock(from_unix_micros(kMidnightUs));
  RateLimiter limiter(clock);
  const RateLimitPolicy policy{.requests_per_minute = 60, .burst = 10};
  const RateLimitDecision first = take(limiter, "alice", policy);
  CHECK(first.allowed);
  CHECK(first.window == RateLimitWindow::kMinute);
  CHECK(first.limit == 10);
  CHECK(first.remaining == 9);
  CHECK(first.reset_seconds == 1);  // one token back at 1/s fills the bucket
  CHECK(first.retry_after_seconds == 0);
  CHECK(first.policy == "60;w=60;burst=10");
  CHECK(take_until_denied(limiter, "alice", policy) == 9);
  const RateLimitDecision denied = take(limiter, "alice", policy);
  CHECK_FALSE(denied.allowed);
  CHECK(denied.remaining == 0);
  CHECK(denied.reset_seconds == 10);
  CHECK(denied.retry_after_seconds == 1);
  // Steady state: one request a second passes, a second one in the same second does not.
  for (int i = 0; i < 120; ++i) {
    clock.advance(seconds{1});
    CHECK(take(limiter, "alice", policy).allowed);
    CHECK_FALSE(take(limiter, "alice", policy).allowed);
  }
  // Other keys are independent.
  CHECK(take(limiter, "bob", policy).remaining == 9);
}

TEST_CASE("rate_limiter: tokens refill over time, never above the burst") {
  ManualClock clock(from_unix_micros(kMidnightUs));
  RateLimiter limiter(clock);
  const RateLimitPolicy policy{.requests_per_minute = 30, .burst = 5};  // one token per 2 s
  CHECK(take_until_denied(limiter, "k", policy) == 5);
  CHECK(take(limiter, "k", policy).retry_after_seconds == 2);
  clock.advance(std::chrono::milliseconds{1500});
  const RateLimitDecision partial = take(limiter, "k", policy);
  CHECK_FALSE(partial.allowed);
  CHECK(partial.retry_after_seconds == 1);  // 0.5 s left, rounded up
  clock.advance(std::chrono::milliseconds{500});
  CHECK(take_until_denied(limiter, "k", policy) == 1);
  clock.advance(seconds{7});  // 3.5 tokens
  CHECK(take_until_denied(limiter, "k", policy) == 3);
  clock.advance(hours{5});
  CHECK(take_until_denied(limiter, "k", policy) == 5);
  // burst 0 means a bucket of one minute's worth.
  const RateLimitPolicy plain{.requests_per_minute = 20};
  const RateLimitDecision d = take(limiter, "plain", plain);
  CHECK(d.limit == 20);
  CHECK(d.policy == "20;w=60");
  CHECK(take_until_denied(limiter, "plain", plain) == 19);
}

TEST_CASE("rate_limiter: cost takes several tokens and is validated") {
  ManualClock clock(from_unix_micros(kMidnightUs));
  RateLimiter limiter(clock);
  const RateLimitPolicy policy{.requests_per_minute = 60, .burst = 10, .requests_per_day = 100};
  CHECK(take(limiter, "k", policy, 4).remaining == 6);
  CHECK(take(limiter, "k", policy, 6).remaining == 0);
  const RateLimitDecision denied = take(limiter, "k", policy, 3);
  CHECK_FALSE(denied.allowed);
  CHECK(denied.retry_after_seconds == 3);
  CHECK(limiter.check("k", policy, 0).status().code() == ErrorCode::kInvalidArgument);
  auto too_big = limiter.check("k", policy, 11);
  CHECK(too_big.status().code() == ErrorCode::kInvalidArgument);
  CHECK(too_big.status().message().find("burst capacity 10") != std::string::npos);
  const RateLimitPolicy day_only{.requests_per_day = 5};
  CHECK(limiter.check("k", day_only, 6).status().code() == ErrorCode::kInvalidArgument);
  // No limits at all: always allowed, no headers to send.
  const RateLimitDecision none = take(limiter, "k", RateLimitPolicy{});
  CHECK(none.allowed);
  CHECK(none.window == RateLimitWindow::kNone);
  CHECK(limiter.key_count() == 1);
}

TEST_CASE("rate_limiter: the day limit is a sliding window over two fixed days") {
  ManualClock clock(from_unix_micros(kMidnightUs));
  RateLimiter limiter(clock);
  const RateLimitPolicy policy{.requests_per_day = 100};
  const RateLimitDecision first = take(limiter, "k", policy);
  CHECK(first.window == RateLimitWindow::kDay);
  CHECK(first.limit == 100);
  CHECK(first.remaining == 99);
  CHECK(first.reset_seconds == 86'400);
  CHECK(first.policy == "100;w=86400");
  CHECK(take_until_denied(limiter, "k", policy) == 99);
  clock.advance(hours{6});
  RateLimitDecision denied = take(limiter, "k", policy);
  CHECK_FALSE(denied.allowed);
  CHECK(denied.remaining == 0);
  CHECK(denied.reset_seconds == 18 * 3600);
  // Next day, 1% in: 100 * 0.99 + 0 = 99 counted, so one request fits.
  CHECK(denied.retry_after_seconds == 18 * 3600 + 864);
  // Rollover: 12 h into the next day the previous 100 weigh 50.
  clock.advance(hours{18} + hours{12});
  const RateLimitDecision half = take(limiter, "k", policy);
  CHECK(half.allowed);
  CHECK(half.remaining == 49);
  CHECK(take_until_denied(limiter, "k", policy) == 49);
  denied = take(limiter, "k", policy);
  CHECK_FALSE(denied.allowed);
  // 100 * (1 - f) + 50 + 1 <= 100 when f >= 0.51: 864 s after noon.
  CHECK(denied.retry_after_seconds == 864);
  clock.advance(seconds{863});
  CHECK_FALSE(take(limiter, "k", policy).allowed);
  clock.advance(seconds{1});
  CHECK(take(limiter, "k", policy).allowed);
  CHECK_FALSE(take(limiter, "k", policy).allowed);
  // Two days later nothing of the old windows counts.
  clock.advance(hours{48});
  CHECK(take_until_denied(limiter, "k", policy) == 100);
}

TEST_CASE("rate_limiter: headers describe the binding window") {
  ManualClock clock(from_unix_micros(kMidnightUs + 3'600'000'000));  // 01:00 UTC
  RateLimiter limiter(clock);
  const RateLimitPolicy both{.requests_per_minute = 60, .burst = 10, .requests_per_day = 1000};
  RateLimitDecision d = take(limiter, "minute-binds", both);
  CHECK(d.window == RateLimitWindow::kMinute);
  CHECK(d.limit == 10);
  CHECK(d.remaining == 9);
  CHECK(d.policy == "60;w=60;burst=10, 1000;w=86400");

  const RateLimitPolicy day_binds{.requests_per_minute = 600, .burst = 600, .requests_per_day = 5};
  d = take(limiter, "day-binds", day_binds);
  CHECK(d.window == RateLimitWindow::kDay);
  CHECK(d.limit == 5);
  CHECK(d.remaining == 4);
  CHECK(d.reset_seconds == 23 * 3600);
  CHECK(take_until_denied(limiter, "day-binds", day_binds) == 4);
  d = take(limiter, "day-binds", day_binds);
  CHECK_FALSE(d.allowed);
  CHECK(d.window == RateLimitWindow::kDay);
  CHECK(d.retry_after_seconds > 23 * 3600);

  // Both deny: Retry-After is the longer wait (the day), the headers describe the day.
  const RateLimitPolicy tight{.requests_per_minute = 1, .burst = 1, .requests_per_day = 1};
  CHECK(take(limiter, "tight", tight).allowed);
  d = take(limiter, "tight", tight);
  CHECK_FALSE(d.allowed);
  CHECK(d.window == RateLimitWindow::kDay);
  CHECK(d.retry_after_seconds == 23 * 3600 + 86'400);  // the full previous day must fade
}

TEST_CASE("rate_limiter: threads hammering one key never exceed the limit") {
  ManualClock clock(from_unix_micros(kMidnightUs));
  RateLimiter limiter(clock, RateLimiterOptions{.shards = 4});
  const RateLimitPolicy policy{.requests_per_minute = 60, .burst = 100, .requests_per_day = 1000};
  std::atomic<int> allowed{0};
  std::atomic<bool> advancing_done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000 || !advancing_done.load(); ++i) {
        auto d = limiter.check("shared", policy);
        if (d.ok() && d->allowed) allowed.fetch_add(1);
        if (i % 64 == 0) std::this_thread::yield();
      }
    });
  }
  threads.emplace_back([&] {
    // Time moves only once the first 100 tokens are gone: a full bucket caps its refill, so
    // advancing while it is still full would (rightly) add fewer than 30 tokens.
    while (allowed.load() < 100) std::this_thread::yield();
    for (int s = 0; s < 30; ++s) {
      clock.advance(seconds{1});
      std::this_thread::yield();
    }
    advancing_done = true;
  });
  for (auto& th : threads) th.join();
  const int drained = take_until_denied(limiter, "shared", policy);
  // The bucket started with 100 and gained exactly 30 tokens: all of them were taken, none twice.
  CHECK(allowed.load() + drained == 130);
}

TEST_CASE("rate_limiter: idle keys are evicted and memory stays bounded") {
  ManualClock clock(from_unix_micros(kMidnightUs));
  RateLimiter limiter(clock, RateLimiterOptions{.shards = 1, .max_keys = 4});
  const RateLimitPolicy minute{.requests_per_minute = 60, .burst = 10};
  for (std::string key : {"a", "b", "c", "d"}) CHECK(take(limiter, key, minute).allowed);
  CHECK(limiter.key_count() == 4);
  CHECK(limiter.evict_idle() == 0);  // buckets not full yet
  // A fifth key in a full shard with nothing idle drops the key seen least recently.
  clock.advance(std::chrono::milliseconds{100});
  for (std::string key : {"b", "c", "d"}) CHECK(take(limiter, key, minute).allowed);
  CHECK(take(limiter, "e", minute).allowed);
  CHECK(limiter.key_count() == 4);
  CHECK(take(limiter, "a", minute).remaining == 9);  // "a" was forgotten: a fresh bucket
  // Once the buckets are full again the keys are idle and go.
  clock.advance(seconds{2});
  CHECK(limiter.evict_idle() == 4);
  CHECK(limiter.key_count() == 0);

  // A day count keeps a key until both day windows are empty.
  const RateLimitPolicy day{.requests_per_day = 10};
  CHECK(take(limiter, "x", day).allowed);
  clock.advance(hours{25});
  CHECK(limiter.evict_idle() == 0);
  clock.advance(hours{24});
  CHECK(limiter.evict_idle() == 1);

  // A full shard sweeps idle keys before dropping an active one.
  for (std::string key : {"p", "q", "r", "s"}) CHECK(take(limiter, key, minute).allowed);
  clock.advance(seconds{2});
  CHECK(take(limiter, "t", minute).allowed);
  CHECK(limiter.key_count() == 1);
}

TEST_CASE("rate_limiter: keys per consumer and per consumer and route") {
  CHECK(rate_limit_key("app-42") == "app-42");
  CHECK(rate_limit_key("app-42", "iot.readings") == "app-42\x1fiot.readings");
}

}  // namespace
}  // namespace civicbus::gateway
