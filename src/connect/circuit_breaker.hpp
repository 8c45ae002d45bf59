// CircuitBreaker and RetryPolicy: how the connector hub stops hammering a connection that is down
// and how it spaces the retries of one call. Both read time and randomness only through the
// injected Clock and RandomSource, so their behaviour is tested without sleeping.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/core/status.hpp"

namespace civicbus::connect {

enum class BreakerState {
  kClosed,    // calls flow; failures are counted
  kOpen,      // calls are refused until the cool-down ends
  kHalfOpen,  // a few probe calls test whether the connection is back
};
std::string_view breaker_state_name(BreakerState state);  // "closed", "open", "half_open"

struct CircuitBreakerOptions {
  // Names the breaker in messages (the connection's name). Default: "connection".
  std::string name = "connection";
  // Consecutive failures that open a closed breaker. Default 5; must be >= 1.
  int failure_threshold = 5;
  // Optional second rule: open when, over the last `rate_window`, at least `rate_min_calls` calls
  // finished and the share of failures reached `failure_rate` (0 < rate <= 1). Default 0: off.
  double failure_rate = 0.0;
  std::chrono::milliseconds rate_window{60'000};
  int rate_min_calls = 20;
  // How long the breaker stays open the first time. Default 30 s.
  std::chrono::milliseconds open_duration{30'000};
  // Each failed probe multiplies the cool-down by this (>= 1), up to `max_open_duration`. Default 2
  // up to 10 min; a successful close resets it to `open_duration`.
  double backoff_multiplier = 2.0;
  std::chrono::milliseconds max_open_duration{600'000};
  // Probe calls admitted at once while half-open. Default 1.
  int half_open_probes = 1;
  // Successful probes that close the breaker (<= half_open_probes is not required: probes admitted
  // one after another count too). Default 1.
  int half_open_successes = 1;

  Status validate() const;
};

// One state change, as handed to the state-change callback.
struct BreakerTransition {
  std::string name;
  BreakerState from = BreakerState::kClosed;
  BreakerState to = BreakerState::kClosed;
  int consecutive_failures = 0;
  // The cool-down that starts now (when `to` is kOpen), else zero.
  std::chrono::milliseconds open_for{0};
  std::string reason;  // "5 consecutive failures", "probe failed", "probe
                       // succeeded", "reset"
};

// A circuit breaker for one connection: closed → open after too many failures, open → half-open
// when the cool-down has passed (noticed lazily on the next call), half-open → closed after enough
// successful probes, or back to open (with a longer cool-down) when a probe fails. Thread-safe. It
// owns no thread and no timer; the Clock must outlive it.
class CircuitBreaker {
 public:
  // Called on every state change, under the breaker's lock so that changes arrive in order: it must
  // not call back into this breaker and should be short (queue an event, don't send it). Valid for
  // the breaker's lifetime.
  using StateChangeCallback = std::function<void(const BreakerTransition&)>;

  // `options` must be valid (see create()).
  CircuitBreaker(CircuitBreakerOptions options, const Clock& clock,
                 StateChangeCallback on_change = nullptr);
  // Validates the options first (kInvalidArgument naming the bad one).
  static Result<std::unique_ptr<CircuitBreaker>> create(CircuitBreakerOptions options,
                                                        const Clock& clock,
                                                        StateChangeCallback on_change = nullptr);

  // Asks to make one call. Ok: go ahead, then report the outcome with record_success() /
  // record_failure() / record(). kUnavailable while open (or while all half-open probe slots are
  // taken), with the time left in the message.
  Status acquire();
  void record_success();
  void record_failure();
  // Success when `outcome` is ok; kCancelled frees a probe slot without counting; any other error
  // is a failure.
  void record(const Status& outcome);

  // The current state; an open breaker whose cool-down has passed reports (and becomes) half-open.
  BreakerState state();
  // Time until an open breaker lets a probe through; zero otherwise.
  std::chrono::milliseconds retry_after();
  int consecutive_failures() const;
  // Back to closed with clean counters (an operator's "retry now").
  void reset();

 private:
  void transition_locked(BreakerState to, std::string reason);
  void maybe_half_open_locked();
  void note_outcome_locked(bool failed);
  bool rate_tripped_locked();

  const CircuitBreakerOptions options_;
  const Clock& clock_;
  const StateChangeCallback on_change_;

  mutable std::mutex mu_;
  BreakerState state_ = BreakerState::kClosed;
  int consecutive_failures_ = 0;
  int probes_in_flight_ = 0;
  int probe_successes_ = 0;
  std::chrono::milliseconds current_open_{0};
  SteadyTime open_until_{};
  std::deque<std::pair<SteadyTime, bool>> window_;  // (finished at, failed) for the rate rule
};

struct RetryPolicyOptions {
  // Attempts in all, the first included. Default 5; must be >= 1.
  int max_attempts = 5;
  // Delay before the second attempt. Default 200 ms.
  std::chrono::milliseconds initial_backoff{200};
  // Growth per attempt (>= 1). Default 2.
  double multiplier = 2.0;
  // Cap on one delay, jitter included. Default 30 s.
  std::chrono::milliseconds max_backoff{30'000};
  // Each delay is scaled by a random factor in [1 - jitter, 1 + jitter] so that callers that failed
  // together do not retry together. 0..1; default 0.2.
  double jitter = 0.2;
  // Codes worth retrying: the ones that say "later may work". The rest fail at once.
  std::vector<ErrorCode> retryable = {ErrorCode::kUnavailable, ErrorCode::kDeadlineExceeded,
                                      ErrorCode::kResourceExhausted, ErrorCode::kAborted};

  Status validate() const;
};

// When and how often to retry one call. The RandomSource (used for jitter) must outlive the policy;
// next_delay() is thread-safe when the RandomSource is (SecureRandom is).
class RetryPolicy {
 public:
  // `options` must be valid (see create()). `random` may be null when jitter is 0.
  RetryPolicy(RetryPolicyOptions options, RandomSource* random);
  static Result<RetryPolicy> create(RetryPolicyOptions options, RandomSource* random);

  bool is_retryable(const Status& status) const;
  // After `attempt` attempts (1 = the first call) failed with `status`: try again?
  bool should_retry(const Status& status, int attempt) const;
  // The delay before attempt `attempt + 1`, after `attempt` (>= 1) failed attempts.
  std::chrono::milliseconds next_delay(int attempt) const;
  const RetryPolicyOptions& options() const { return options_; }

 private:
  RetryPolicyOptions options_;
  RandomSource* random_;
};

}  // namespace civicbus::connect
