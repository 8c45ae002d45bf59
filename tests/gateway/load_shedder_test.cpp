#include "gateway/load_shedder.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <thread>
#include <utility>
#include <vector>

namespace civicbus::gateway {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

LoadShedderOptions fixed_limit(std::uint32_t limit) {
  LoadShedderOptions options;
  options.initial_limit = limit;
  options.min_limit = limit;
  options.max_limit = limit;
  return options;
}

LoadShedder::Ticket admit(LoadShedder& shedder, std::size_t tier) {
  auto ticket = shedder.acquire(tier);
  REQUIRE_MESSAGE(ticket.ok(), ticket.status().to_string());
  return std::move(ticket).value();
}

// Runs one whole sample window from its start: one critical request per latency, all started
// at once and released as each latency passes; then moves to the window's end and closes it
// (an acquire that is cancelled gives no sample).
void run_window(LoadShedder& shedder, ManualClock& clock, std::vector<milliseconds> latencies) {
  std::sort(latencies.begin(), latencies.end());
  std::vector<LoadShedder::Ticket> tickets;
  for (std::size_t i = 0; i < latencies.size(); ++i) tickets.push_back(admit(shedder, 0));
  milliseconds elapsed{0};
  for (std::size_t i = 0; i < latencies.size(); ++i) {
    clock.advance(latencies[i] - elapsed);
    elapsed = latencies[i];
    tickets[i].release();
  }
  REQUIRE(elapsed < shedder.options().sample_window);
  clock.advance(shedder.options().sample_window - elapsed);
  admit(shedder, 0).cancel();
}

void run_window(LoadShedder& shedder, ManualClock& clock, std::size_t n, milliseconds latency) {
  run_window(shedder, clock, std::vector<milliseconds>(n, latency));
}

TEST_CASE("load shedder: tiers are shed in order, low first and critical last") {
  ManualClock clock;
  LoadShedder shedder(fixed_limit(10), clock);  // tier capacities 10, 9, 7
  std::vector<LoadShedder::Ticket> held;
  for (int i = 0; i < 7; ++i) held.push_back(admit(shedder, 2));
  auto low = shedder.acquire(2);
  CHECK(low.status().code() == ErrorCode::kResourceExhausted);
  CHECK(low.status().message() == "shedding tier 2 (low): 7 of 10 in flight");
  CHECK(shedder.acquire(9).status().code() == ErrorCode::kResourceExhausted);  // clamped to 2
  LoadShedderStatus status = shedder.status();
  CHECK(status.shedding_per_tier == std::vector<bool>{false, false, true});
  held.push_back(admit(shedder, 1));
  held.push_back(admit(shedder, 1));
  auto normal = shedder.acquire(1);
  CHECK(normal.status().message() == "shedding tier 1 (normal): 9 of 10 in flight");
  CHECK(shedder.status().shedding_per_tier == std::vector<bool>{false, true, true});
  held.push_back(admit(shedder, 0));
  auto critical = shedder.acquire(0);
  CHECK(critical.status().message() == "shedding tier 0 (critical): 10 of 10 in flight");
  status = shedder.status();
  CHECK(status.shedding_per_tier == std::vector<bool>{true, true, true});
  CHECK(status.shed_per_tier == std::vector<std::uint64_t>{1, 1, 2});
  CHECK(status.in_flight == 10);
  CHECK(status.limit == 10);
  // Room again: the first release readmits critical only, three releases the low tier too.
  held.pop_back();
  CHECK(shedder.status().shedding_per_tier == std::vector<bool>{false, true, true});
  held.resize(7);
  CHECK(shedder.status().shedding_per_tier == std::vector<bool>{false, false, true});
  held.resize(6);
  CHECK(shedder.status().shedding_per_tier == std::vector<bool>{false, false, false});
  CHECK(shedder.acquire(2).ok());
}

TEST_CASE("load shedder: the limit grows while latency stays at the minimum") {
  ManualClock clock;
  LoadShedderOptions options;
  options.initial_limit = 100;
  options.min_limit = 10;
  options.max_limit = 1000;
  LoadShedder shedder(options, clock);
  CHECK(shedder.status().min_latency_ms == 0);
  run_window(shedder, clock, 20, milliseconds{10});
  LoadShedderStatus status = shedder.status();
  CHECK(status.limit == 110);  // 100 * 1.0 + sqrt(100)
  CHECK(status.min_latency_ms == doctest::Approx(10));
  CHECK(status.sample_latency_ms == doctest::Approx(10));
  run_window(shedder, clock, 20, milliseconds{10});
  CHECK(shedder.status().limit == 120);  // 110 + 10.49
  // Latency up to min_latency * tolerance is no queueing yet: still growing.
  run_window(shedder, clock, 20, milliseconds{20});
  status = shedder.status();
  CHECK(status.limit == 131);
  CHECK(status.min_latency_ms == doctest::Approx(10));
  CHECK(status.sample_latency_ms == doctest::Approx(20));
}

TEST_CASE("load shedder: the limit shrinks when latency rises above the tolerance") {
  ManualClock clock;
  LoadShedderOptions options;
  options.initial_limit = 100;
  options.min_limit = 10;
  options.max_limit = 1000;
  options.tolerance = 2.0;
  LoadShedder shedder(options, clock);
  run_window(shedder, clock, 20, milliseconds{10});
  REQUIRE(shedder.status().limit == 110);
  // gradient = 10 * 2 / 25 = 0.8: 110 * 0.8 + sqrt(110) = 98.5
  run_window(shedder, clock, 20, milliseconds{25});
  CHECK(shedder.status().limit == 98);
  // Far above: the gradient stops at 0.5. 98.49 * 0.5 + 9.92 = 59.2
  run_window(shedder, clock, 20, milliseconds{200});
  CHECK(shedder.status().limit == 59);
  CHECK(shedder.status().min_latency_ms == doctest::Approx(10));
  // The p90 decides: two slow requests in twenty do not shrink it, three do.
  const std::uint32_t before = shedder.status().limit;
  std::vector<milliseconds> mostly_fast(18, milliseconds{10});
  mostly_fast.insert(mostly_fast.end(), 2, milliseconds{100});
  run_window(shedder, clock, mostly_fast);
  CHECK(shedder.status().sample_latency_ms == doctest::Approx(10));
  CHECK(shedder.status().limit > before);
  const std::uint32_t grown = shedder.status().limit;
  std::vector<milliseconds> tail(17, milliseconds{10});
  tail.insert(tail.end(), 3, milliseconds{100});
  run_window(shedder, clock, tail);
  CHECK(shedder.status().sample_latency_ms == doctest::Approx(100));
  CHECK(shedder.status().limit < grown);
}

TEST_CASE("load shedder: the limit stays within min_limit and max_limit") {
  ManualClock clock;
  LoadShedderOptions options;
  options.initial_limit = 25;
  options.min_limit = 20;
  options.max_limit = 40;
  options.min_samples = 5;
  LoadShedder shedder(options, clock);
  for (int i = 0; i < 10; ++i) {
    run_window(shedder, clock, 5, milliseconds{10});
    CHECK(shedder.status().limit <= 40);
  }
  CHECK(shedder.status().limit == 40);
  for (int i = 0; i < 10; ++i) {
    run_window(shedder, clock, 5, milliseconds{200});
    CHECK(shedder.status().limit >= 20);
  }
  // 20 * 0.5 + sqrt(20) = 14.5, held at the floor.
  CHECK(shedder.status().limit == 20);
}

TEST_CASE("load shedder: windows with too few samples are ignored") {
  ManualClock clock;
  LoadShedderOptions options;
  options.initial_limit = 100;
  options.min_limit = 10;
  options.max_limit = 1000;
  options.min_samples = 20;
  LoadShedder shedder(options, clock);
  run_window(shedder, clock, 19, milliseconds{10});
  LoadShedderStatus status = shedder.status();
  CHECK(status.limit == 100);
  CHECK(status.min_latency_ms == 0);
  CHECK(status.sample_latency_ms == 0);
  // An empty window too (nothing happened for a while).
  clock.advance(std::chrono::seconds{5});
  admit(shedder, 0).cancel();
  CHECK(shedder.status().limit == 100);
  // Samples do not carry over into the next window: 19 + 1 is still too few.
  run_window(shedder, clock, 19, milliseconds{10});
  run_window(shedder, clock, 1, milliseconds{10});
  CHECK(shedder.status().limit == 100);
  run_window(shedder, clock, 20, milliseconds{10});
  CHECK(shedder.status().limit == 110);
}

TEST_CASE("load shedder: few samples use the mean, and min_latency is re-measured") {
  ManualClock clock;
  LoadShedderOptions options;
  options.initial_limit = 100;
  options.min_limit = 10;
  options.max_limit = 1000;
  options.min_samples = 3;
  options.min_latency_refresh = 3;
  LoadShedder shedder(options, clock);
  run_window(shedder, clock, {milliseconds{10}, milliseconds{10}, milliseconds{40}});
  CHECK(shedder.status().sample_latency_ms == doctest::Approx(20));
  CHECK(shedder.status().min_latency_ms == doctest::Approx(20));
  run_window(shedder, clock, 3, milliseconds{10});  // a new low
  CHECK(shedder.status().min_latency_ms == doctest::Approx(10));
  run_window(shedder, clock, 3, milliseconds{15});
  run_window(shedder, clock, 3, milliseconds{15});
  CHECK(shedder.status().min_latency_ms == doctest::Approx(10));
  run_window(shedder, clock, 3, milliseconds{15});  // third window since: re-measured
  CHECK(shedder.status().min_latency_ms == doctest::Approx(15));
}

TEST_CASE("load shedder: cancel gives no latency sample") {
  ManualClock clock;
  LoadShedderOptions options;
  options.initial_limit = 100;
  options.min_limit = 10;
  options.max_limit = 1000;
  options.min_samples = 5;
  LoadShedder shedder(options, clock);
  std::vector<LoadShedder::Ticket> tickets;
  for (int i = 0; i < 10; ++i) tickets.push_back(admit(shedder, 1));
  clock.advance(milliseconds{10});
  for (int i = 0; i < 4; ++i) tickets[i].release();
  for (int i = 4; i < 10; ++i) tickets[i].cancel();
  tickets[4].release();  // already cancelled: nothing
  CHECK(shedder.status().in_flight == 0);
  clock.advance(milliseconds{240});
  admit(shedder, 0).cancel();
  LoadShedderStatus status = shedder.status();
  CHECK(status.limit == 100);  // 4 samples < min_samples
  CHECK(status.sample_latency_ms == 0);
  CHECK(status.in_flight == 0);
}

TEST_CASE("load shedder: tickets are move-only and release once") {
  ManualClock clock;
  LoadShedder shedder(fixed_limit(20), clock);
  LoadShedder::Ticket empty;
  CHECK_FALSE(empty);
  empty.release();
  empty.cancel();
  LoadShedder::Ticket a = admit(shedder, 0);
  CHECK(a);
  LoadShedder::Ticket b(std::move(a));
  CHECK_FALSE(a);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  a.release();     // NOLINT(bugprone-use-after-move)
  CHECK(shedder.status().in_flight == 1);
  LoadShedder::Ticket c = admit(shedder, 0);
  c = std::move(b);  // c's own request is released
  CHECK(shedder.status().in_flight == 1);
  { LoadShedder::Ticket gone = std::move(c); }
  CHECK(shedder.status().in_flight == 0);
}

TEST_CASE("load shedder: status fields and a disabled shedder") {
  ManualClock clock;
  LoadShedderOptions options = fixed_limit(20);
  options.tier_shares = {1.0, 0.5};
  LoadShedder shedder(options, clock);
  LoadShedderStatus status = shedder.status();
  CHECK(status.limit == 20);
  CHECK(status.in_flight == 0);
  CHECK(status.min_latency_ms == 0);
  CHECK(status.sample_latency_ms == 0);
  CHECK(status.shed_per_tier == std::vector<std::uint64_t>{0, 0});
  CHECK(status.shedding_per_tier == std::vector<bool>{false, false});
  std::vector<LoadShedder::Ticket> held;
  for (int i = 0; i < 10; ++i) held.push_back(admit(shedder, 1));
  auto refused = shedder.acquire(1);
  CHECK(refused.status().message() == "shedding tier 1 (low): 10 of 20 in flight");
  status = shedder.status();
  CHECK(status.in_flight == 10);
  CHECK(status.shed_per_tier == std::vector<std::uint64_t>{0, 1});
  CHECK(status.shedding_per_tier == std::vector<bool>{false, true});
  CHECK(shedder.options().retry_after == std::chrono::seconds{1});

  options.enabled = false;
  LoadShedder off(options, clock);
  std::vector<LoadShedder::Ticket> many;
  for (int i = 0; i < 50; ++i) many.push_back(admit(off, 1));
  status = off.status();
  CHECK(status.in_flight == 50);
  CHECK(status.shed_per_tier == std::vector<std::uint64_t>{0, 0});
  CHECK(status.shedding_per_tier == std::vector<bool>{false, false});
  many.clear();
  CHECK(off.status().in_flight == 0);
}

TEST_CASE("load shedder: concurrent acquire and release keep in_flight consistent") {
  ManualClock clock;
  LoadShedderOptions options;
  options.initial_limit = 40;
  options.min_limit = 20;
  options.max_limit = 200;
  options.min_samples = 5;
  LoadShedder shedder(options, clock);
  constexpr int kThreads = 4;
  constexpr int kIterations = 5000;
  std::atomic<std::uint64_t> admitted{0};
  std::atomic<std::uint64_t> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<LoadShedder::Ticket> held;
      for (int i = 0; i < kIterations; ++i) {
        auto ticket = shedder.acquire(static_cast<std::size_t>((t + i) % 3));
        if (ticket.ok()) {
          ++admitted;
          held.push_back(std::move(ticket).value());
        } else {
          ++refused;
        }
        clock.advance(microseconds{50});  // windows close now and then
        if (held.size() > 8 || i % 7 == 0) {
          for (std::size_t k = 0; k < held.size(); ++k) {
            if (k % 3 == 0) {
              held[k].cancel();
            } else {
              held[k].release();
            }
          }
          held.clear();
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const LoadShedderStatus status = shedder.status();
  CHECK(status.in_flight == 0);
  CHECK(admitted + refused == kThreads * kIterations);
  std::uint64_t shed = 0;
  for (std::uint64_t n : status.shed_per_tier) shed += n;
  CHECK(shed == refused);
  CHECK(status.limit >= 20);
  CHECK(status.limit <= 200);
}

TEST_CASE("load shedder: validate names the bad field") {
  auto message = [](const LoadShedderOptions& options) {
    const Status status = options.validate();
    CHECK(status.code() == ErrorCode::kInvalidArgument);
    return status.message();
  };
  CHECK(LoadShedderOptions{}.validate().ok());
  LoadShedderOptions o;
  o.min_limit = 0;
  CHECK(message(o).find("min_limit") != std::string::npos);
  o = {};
  o.max_limit = 10;
  CHECK(message(o) == "load shedder: max_limit 10 is below min_limit 100");
  o = {};
  o.initial_limit = 10;
  CHECK(message(o).find("initial_limit 10 is outside") != std::string::npos);
  o = {};
  o.tolerance = 0.9;
  CHECK(message(o).find("tolerance") != std::string::npos);
  o.tolerance = std::numeric_limits<double>::quiet_NaN();
  CHECK(message(o).find("tolerance") != std::string::npos);
  o = {};
  o.sample_window = milliseconds{0};
  CHECK(message(o).find("sample_window") != std::string::npos);
  o = {};
  o.min_samples = 0;
  CHECK(message(o).find("min_samples") != std::string::npos);
  o = {};
  o.min_latency_refresh = 0;
  CHECK(message(o).find("min_latency_refresh") != std::string::npos);
  o = {};
  o.tier_shares = {};
  CHECK(message(o).find("tier_shares") != std::string::npos);
  o.tier_shares = {0.9, 0.5};
  CHECK(message(o).find("critical tier's share must be 1.0") != std::string::npos);
  o.tier_shares = {1.0, 0.5, 0.7};
  CHECK(message(o).find("must not increase") != std::string::npos);
  o.tier_shares = {1.0, 0.0};
  CHECK(message(o).find("(0, 1]") != std::string::npos);
  o.tier_shares = {1.0};
  CHECK(o.validate().ok());
  o = {};
  o.retry_after = std::chrono::seconds{-1};
  CHECK(message(o).find("retry_after") != std::string::npos);
}

}  // namespace
}  // namespace civicbus::gateway
