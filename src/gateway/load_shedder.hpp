// LoadShedder: progressive throttling under load. An adaptive concurrency limit (the gradient
// algorithm of Netflix's concurrency-limits, as Envoy's adaptive_concurrency filter uses it)
// bounds the requests the gateway works on at once; priority tiers decide who is refused
// first when the limit is near: tier 0 (critical: emergency management, internal modules) may
// use the whole limit, lower tiers a decreasing share of it, so low-priority consumers are
// shed first and critical traffic last. Owns its counters; no I/O; thread-safe; reads time
// only from the injected Clock (which must outlive it).
//
// The limit adapts once per sample window from the latencies reported by released tickets:
//   gradient = clamp(min_latency * tolerance / sample_latency, 0.5, 1.0)
//   new_limit = clamp(limit * gradient + headroom, min_limit, max_limit)
// where min_latency is the lowest window latency seen (re-measured every
// min_latency_refresh windows), sample_latency the window's p90 (or mean when few samples)
// and headroom = sqrt(limit). Latency near the no-load latency grows the limit; queueing
// (latency rising above min_latency * tolerance) shrinks it.
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

struct LoadShedderStatus {
  std::uint32_t limit = 0;
  std::uint32_t in_flight = 0;
  double min_latency_ms = 0;     // 0 until measured
  double sample_latency_ms = 0;  // the last window's
  std::vector<std::uint64_t> shed_per_tier;
  // Tiers currently refused (in_flight at or above their share): "shedding state".
  std::vector<bool> shedding_per_tier;
};

class LoadShedder {
 public:
  // One admitted request. Releasing it reports its latency (from acquire to release) to the
  // limit; release without a latency sample (dropped, error before work) with cancel().
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept;
    Ticket& operator=(Ticket&& other) noexcept;
    ~Ticket();  // = release()
    void release();
    // The same with the time the request ended, which the caller has read (no clock read here).
    void release(SteadyTime end);
    void cancel();  // releases without a latency sample
    explicit operator bool() const { return shedder_ != nullptr; }

   private:
    friend class LoadShedder;
    Ticket(LoadShedder* shedder, SteadyTime start) : shedder_(shedder), start_(start) {}
    LoadShedder* shedder_ = nullptr;
    SteadyTime start_{};
  };

  LoadShedder(LoadShedderOptions options, const Clock& clock);  // options validated by caller
  ~LoadShedder();

  // Admits a request of `tier` (clamped to the last tier) or refuses it with
  // kResourceExhausted ("shedding tier 2 (low): 700 of 1000 in flight"); the caller answers
  // 503 with Retry-After: options().retry_after.
  Result<Ticket> acquire(std::size_t tier);
  // The same for a request that arrived at `now`, which the caller has read.
  Result<Ticket> acquire(std::size_t tier, SteadyTime now);

  LoadShedderStatus status() const;
  const LoadShedderOptions& options() const { return options_; }

 private:
  void finish(SteadyTime start, SteadyTime now, bool sample);
  void close_window(SteadyTime now);  // under State::mutex
  struct State;
  LoadShedderOptions options_;
  const Clock& clock_;
  std::unique_ptr<State> state_;
};

}  // namespace civicbus::gateway
