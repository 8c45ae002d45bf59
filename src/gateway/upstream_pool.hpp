// UpstreamPool: the targets of one upstream service and the decisions about them — which
// target gets the next request (round robin or least request), which targets are healthy
// (active probes and passive outcomes), and when to stop sending at all (circuit breaking).
// Owns per-target counters; does no I/O: the gateway sends the requests and the health probes
// and reports what happened. Thread-safe; reads time only from the injected Clock (which must
// outlive the pool).
//
// Per target, a circuit breaker (Envoy's outlier detection, Kong's passive health checks):
//   closed --(passive.consecutive_failures failures in a row)--> open
//   open --(passive.open_duration passes)--> half-open: one request (a probe) is let through
//   half-open --(it succeeds)--> closed;  --(it fails)--> open again
// Active health checks move a target between healthy and unhealthy after
// active.healthy_threshold / active.unhealthy_threshold probe results in a row. A target is
// picked only when it is healthy (or has no active check) and its breaker lets the request
// through. When no target qualifies, acquire() fails: the gateway answers 503.
// Upstream-wide, max_concurrent_requests caps the requests in flight (Envoy's circuit
// breaker threshold): above it acquire() fails at once instead of queueing.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/gateway/options.hpp"

namespace civicbus::gateway {

// How a request to a target ended, as the gateway saw it.
enum class UpstreamOutcome {
  kSuccess,        // any response below 500 (4xx is the client's problem, not the target's)
  kFailure,        // 5xx answer, connection refused or lost, malformed response
  kTimeout,        // counted as a failure
  kNotConsidered,  // the request was abandoned (client left): no effect on health
};

enum class BreakerState { kClosed, kOpen, kHalfOpen };

struct UpstreamTargetStatus {
  std::string target;   // "host:port"
  bool healthy = true;  // active health (true when there are no active checks)
  BreakerState breaker = BreakerState::kClosed;
  std::uint32_t in_flight = 0;
  std::uint64_t requests = 0;  // picked so far
  std::uint64_t failures = 0;  // kFailure + kTimeout so far
};

class UpstreamPool {
 public:
  // Held by the gateway for the duration of one request to one target. Releasing it without
  // report() counts as kNotConsidered. Must not outlive the pool.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();
    std::size_t target() const { return target_; }  // index into options().targets
    const std::string& host_port() const;
    explicit operator bool() const { return pool_ != nullptr; }
    // Ends the lease with its outcome (at most once; later calls do nothing).
    void report(UpstreamOutcome outcome);

   private:
    friend class UpstreamPool;
    Lease(UpstreamPool* pool, std::size_t target, bool probe)
        : pool_(pool), target_(target), probe_(probe) {}
    UpstreamPool* pool_ = nullptr;
    std::size_t target_ = 0;
    bool probe_ = false;  // the half-open breaker's one trial request
  };

  static Result<std::unique_ptr<UpstreamPool>> create(UpstreamPoolOptions options,
                                                      const Clock& clock);
  ~UpstreamPool();

  // Picks a target for one request. kUnavailable when no target is healthy with its breaker
  // letting requests through ("upstream 'permits': no healthy target (2 unhealthy, 1 open
  // breaker)"), kResourceExhausted at max_concurrent_requests. `exclude` (a target index, or
  // SIZE_MAX for none) is skipped when another target qualifies: a retry goes elsewhere.
  Result<Lease> acquire(std::size_t exclude = SIZE_MAX);

  // The result of an active health probe of target `target`.
  void report_probe(std::size_t target, bool success);

  std::vector<UpstreamTargetStatus> status() const;
  const UpstreamPoolOptions& options() const { return options_; }
  // Requests in flight over all targets.
  std::uint32_t in_flight() const;

 private:
  struct Target;
  UpstreamPool(UpstreamPoolOptions options, const Clock& clock);
  void finish(std::size_t target, bool probe, UpstreamOutcome outcome);

  UpstreamPoolOptions options_;
  const Clock& clock_;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace civicbus::gateway
