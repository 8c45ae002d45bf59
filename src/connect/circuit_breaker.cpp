#include "connect/circuit_breaker.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace civicbus::connect {
namespace {

using std::chrono::milliseconds;

milliseconds scale(milliseconds d, double factor, milliseconds cap) {
  const double scaled = static_cast<double>(d.count()) * factor;
  if (!(scaled < static_cast<double>(cap.count()))) return cap;
  return milliseconds(static_cast<std::int64_t>(std::llround(scaled)));
}

}  // namespace

std::string_view breaker_state_name(BreakerState state) {
  switch (state) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half_open";
  }
  return "unknown";
}

Status CircuitBreakerOptions::validate() const {
  if (failure_threshold < 1) {
    return invalid_argument(
        fmt::format("circuit breaker '{}': failure_threshold must be at least 1, got {}", name,
                    failure_threshold));
  }
  if (failure_rate < 0 || failure_rate > 1) {
    return invalid_argument(
        fmt::format("circuit breaker '{}': failure_rate must be within 0..1 (0 "
                    "turns the rule off), got {}",
                    name, failure_rate));
  }
  if (failure_rate > 0 && (rate_window.count() <= 0 || rate_min_calls < 1)) {
    return invalid_argument(
        fmt::format("circuit breaker '{}': the failure-rate rule needs a "
                    "positive rate_window and "
                    "rate_min_calls >= 1",
                    name));
  }
  if (open_duration.count() <= 0 || max_open_duration < open_duration) {
    return invalid_argument(
        fmt::format("circuit breaker '{}': open_duration must be positive and "
                    "at most max_open_duration "
                    "(got {} ms and {} ms)",
                    name, open_duration.count(), max_open_duration.count()));
  }
  if (!(backoff_multiplier >= 1.0)) {
    return invalid_argument(fmt::format(
        "circuit breaker '{}': backoff_multiplier must be >= 1, got {}", name, backoff_multiplier));
  }
  if (half_open_probes < 1 || half_open_successes < 1) {
    return invalid_argument(
        fmt::format("circuit breaker '{}': half_open_probes and "
                    "half_open_successes must be at least 1",
                    name));
  }
  return {};
}

CircuitBreaker::CircuitBreaker(CircuitBreakerOptions options, const Clock& clock,
                               StateChangeCallback on_change)
    : options_(std::move(options)),
      clock_(clock),
      on_change_(std::move(on_change)),
      current_open_(options_.open_duration) {}

Result<std::unique_ptr<CircuitBreaker>> CircuitBreaker::create(CircuitBreakerOptions options,
                                                               const Clock& clock,
                                                               StateChangeCallback on_change) {
  CIVICBUS_RETURN_IF_ERROR(options.validate());
  return std::make_unique<CircuitBreaker>(std::move(options), clock, std::move(on_change));
}

void CircuitBreaker::transition_locked(BreakerState to, std::string reason) {
  const BreakerState from = state_;
  state_ = to;
  probes_in_flight_ = 0;
  probe_successes_ = 0;
  milliseconds open_for{0};
  if (to == BreakerState::kOpen) {
    open_for = current_open_;
    open_until_ = clock_.steady_now() + current_open_;
  }
  if (to == BreakerState::kClosed) {
    consecutive_failures_ = 0;
    current_open_ = options_.open_duration;
    window_.clear();
  }
  if (from != to && on_change_) {
    on_change_(BreakerTransition{options_.name, from, to, consecutive_failures_, open_for,
                                 std::move(reason)});
  }
}

void CircuitBreaker::maybe_half_open_locked() {
  if (state_ == BreakerState::kOpen && clock_.steady_now() >= open_until_) {
    transition_locked(BreakerState::kHalfOpen, "cool-down over");
  }
}

Status CircuitBreaker::acquire() {
  std::lock_guard lock(mu_);
  maybe_half_open_locked();
  switch (state_) {
    case BreakerState::kClosed:
      return {};
    case BreakerState::kOpen: {
      const auto left = std::chrono::ceil<milliseconds>(open_until_ - clock_.steady_now()).count();
      return unavailable(
          fmt::format("circuit breaker for '{}' is open after {} "
                      "consecutive failures; next probe in {} ms",
                      options_.name, consecutive_failures_, left));
    }
    case BreakerState::kHalfOpen:
      if (probes_in_flight_ >= options_.half_open_probes) {
        return unavailable(
            fmt::format("circuit breaker for '{}' is half-open "
                        "and its {} probe call(s) are in flight",
                        options_.name, options_.half_open_probes));
      }
      ++probes_in_flight_;
      return {};
  }
  return internal_error("circuit breaker in an unknown state");
}

bool CircuitBreaker::rate_tripped_locked() {
  if (options_.failure_rate <= 0) return false;
  const SteadyTime horizon = clock_.steady_now() - options_.rate_window;
  while (!window_.empty() && window_.front().first < horizon) window_.pop_front();
  if (static_cast<int>(window_.size()) < options_.rate_min_calls) return false;
  const auto failed =
      std::count_if(window_.begin(), window_.end(), [](const auto& entry) { return entry.second; });
  return static_cast<double>(failed) >= options_.failure_rate * static_cast<double>(window_.size());
}

void CircuitBreaker::note_outcome_locked(bool failed) {
  if (options_.failure_rate > 0) window_.emplace_back(clock_.steady_now(), failed);
}

void CircuitBreaker::record_success() {
  std::lock_guard lock(mu_);
  maybe_half_open_locked();
  consecutive_failures_ = 0;
  if (state_ == BreakerState::kHalfOpen) {
    if (probes_in_flight_ > 0) --probes_in_flight_;
    if (++probe_successes_ >= options_.half_open_successes) {
      transition_locked(BreakerState::kClosed, "probe succeeded");
    }
    return;
  }
  if (state_ == BreakerState::kClosed) note_outcome_locked(false);
  // A success reported while open (a call admitted before the breaker opened) changes nothing: the
  // cool-down still runs.
}

void CircuitBreaker::record_failure() {
  std::lock_guard lock(mu_);
  maybe_half_open_locked();
  ++consecutive_failures_;
  switch (state_) {
    case BreakerState::kClosed:
      note_outcome_locked(true);
      if (consecutive_failures_ >= options_.failure_threshold) {
        transition_locked(BreakerState::kOpen,
                          fmt::format("{} consecutive failures", consecutive_failures_));
      } else if (rate_tripped_locked()) {
        transition_locked(BreakerState::kOpen,
                          fmt::format("failure rate reached {:.0f}% over the last {} ms",
                                      options_.failure_rate * 100, options_.rate_window.count()));
      }
      return;
    case BreakerState::kHalfOpen:
      current_open_ = scale(current_open_, options_.backoff_multiplier, options_.max_open_duration);
      transition_locked(BreakerState::kOpen, "probe failed");
      return;
    case BreakerState::kOpen:
      return;  // a late failure of a call admitted before opening
  }
}

void CircuitBreaker::record(const Status& outcome) {
  if (outcome.ok()) {
    record_success();
  } else if (outcome.code() == ErrorCode::kCancelled) {
    std::lock_guard lock(mu_);
    if (state_ == BreakerState::kHalfOpen && probes_in_flight_ > 0) --probes_in_flight_;
  } else {
    record_failure();
  }
}

BreakerState CircuitBreaker::state() {
  std::lock_guard lock(mu_);
  maybe_half_open_locked();
  return state_;
}

std::chrono::milliseconds CircuitBreaker::retry_after() {
  std::lock_guard lock(mu_);
  maybe_half_open_locked();
  if (state_ != BreakerState::kOpen) return milliseconds(0);
  return std::chrono::ceil<milliseconds>(open_until_ - clock_.steady_now());
}

int CircuitBreaker::consecutive_failures() const {
  std::lock_guard lock(mu_);
  return consecutive_failures_;
}

void CircuitBreaker::reset() {
  std::lock_guard lock(mu_);
  transition_locked(BreakerState::kClosed, "reset");
}

Status RetryPolicyOptions::validate() const {
  if (max_attempts < 1) {
    return invalid_argument(
        fmt::format("retry policy: max_attempts must be at least 1, got {}", max_attempts));
  }
  if (initial_backoff.count() < 0 || max_backoff < initial_backoff) {
    return invalid_argument(
        fmt::format("retry policy: initial_backoff must be >= 0 and at most "
                    "max_backoff (got {} ms and {} ms)",
                    initial_backoff.count(), max_backoff.count()));
  }
  if (!(multiplier >= 1.0)) {
    return invalid_argument(
        fmt::format("retry policy: multiplier must be >= 1, got {}", multiplier));
  }
  if (!(jitter >= 0.0 && jitter <= 1.0)) {
    return invalid_argument(
        fmt::format("retry policy: jitter must be within 0..1, got {}", jitter));
  }
  return {};
}

RetryPolicy::RetryPolicy(RetryPolicyOptions options, RandomSource* random)
    : options_(std::move(options)), random_(random) {}

Result<RetryPolicy> RetryPolicy::create(RetryPolicyOptions options, RandomSource* random) {
  CIVICBUS_RETURN_IF_ERROR(options.validate());
  if (options.jitter > 0 && random == nullptr) {
    return invalid_argument("retry policy: jitter needs a RandomSource");
  }
  return RetryPolicy(std::move(options), random);
}

bool RetryPolicy::is_retryable(const Status& status) const {
  if (status.ok()) return false;
  return std::find(options_.retryable.begin(), options_.retryable.end(), status.code()) !=
         options_.retryable.end();
}

bool RetryPolicy::should_retry(const Status& status, int attempt) const {
  return attempt < options_.max_attempts && is_retryable(status);
}

std::chrono::milliseconds RetryPolicy::next_delay(int attempt) const {
  if (attempt < 1) attempt = 1;
  // initial * multiplier^(attempt-1), computed in double and capped before it can overflow.
  double base = static_cast<double>(options_.initial_backoff.count());
  const double cap = static_cast<double>(options_.max_backoff.count());
  for (int i = 1; i < attempt && base < cap; ++i) base *= options_.multiplier;
  base = std::min(base, cap);
  if (options_.jitter > 0 && random_ != nullptr) {
    // A uniform draw in [0, 1) from the top 53 bits.
    const double u = static_cast<double>(random_->next_u64() >> 11) * 0x1.0p-53;
    base *= 1.0 - options_.jitter + 2.0 * options_.jitter * u;
  }
  base = std::min(base, cap);
  return milliseconds(static_cast<std::int64_t>(std::llround(base)));
}

}  // namespace civicbus::connect
