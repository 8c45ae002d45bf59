#include "gateway/upstream_pool.hpp"

#include <fmt/format.h>

#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_set>
#include <utility>

#include "civicbus/http/client.hpp"

namespace civicbus::gateway {
namespace {

// Whether a target's breaker lets the next request through, and as what.
enum class Admission { kRefused, kRequest, kProbe };

const std::string& empty_string() {
  static const std::string kEmpty;
  return kEmpty;
}

}  // namespace

// ---- Options --------------------------------------------------------------------------------

Status UpstreamPoolOptions::validate() const {
  if (name.empty()) return invalid_argument("upstream pool: 'name' must not be empty");
  auto bad = [&](std::string_view field, std::string_view what) {
    return invalid_argument(fmt::format("upstream '{}': {} {}", name, field, what));
  };
  if (targets.empty()) return bad("targets", "must list at least one \"host:port\"");
  std::unordered_set<std::string_view> seen;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    auto parsed = http::Upstream::parse(targets[i]);
    if (!parsed.ok()) {
      return parsed.status().with_context(fmt::format("upstream '{}': targets[{}]", name, i));
    }
    // Two entries for one target would split its health and breaker state in two.
    if (!seen.insert(targets[i]).second) {
      return bad(fmt::format("targets[{}]", i), fmt::format("'{}' is listed twice", targets[i]));
    }
  }
  if (!active.path.empty()) {
    if (active.path.front() != '/') {
      return bad("active.path", fmt::format("'{}' must start with '/'", active.path));
    }
    if (active.interval.count() <= 0) return bad("active.interval", "must be positive");
    if (active.timeout.count() <= 0) return bad("active.timeout", "must be positive");
    if (active.healthy_threshold == 0) return bad("active.healthy_threshold", "must be at least 1");
    if (active.unhealthy_threshold == 0) {
      return bad("active.unhealthy_threshold", "must be at least 1");
    }
  }
  if (passive.consecutive_failures != 0 && passive.open_duration.count() <= 0) {
    return bad("passive.open_duration",
               "must be positive when passive.consecutive_failures is set");
  }
  return Status::ok_status();
}

// ---- State ----------------------------------------------------------------------------------

struct UpstreamPool::Target {
  // Active health.
  bool healthy = true;
  std::uint32_t probe_successes = 0;  // in a row
  std::uint32_t probe_failures = 0;   // in a row
  // Passive health: the breaker.
  BreakerState breaker = BreakerState::kClosed;
  std::uint32_t consecutive_failures = 0;
  SteadyTime reopen_at{};        // while open: when a probe may go through
  bool probe_in_flight = false;  // half-open: the one trial request is out
  // Counters.
  std::uint32_t in_flight = 0;
  std::uint64_t requests = 0;
  std::uint64_t failures = 0;

  // `now` is called only for an open breaker (the clock is a virtual call and a system call's
  // worth of time on some virtual machines; most breakers are closed).
  template <class Now>
  Admission admits(Now now) const {
    switch (breaker) {
      case BreakerState::kClosed:
        return Admission::kRequest;
      case BreakerState::kOpen:
        return now() >= reopen_at ? Admission::kProbe : Admission::kRefused;
      case BreakerState::kHalfOpen:
        return probe_in_flight ? Admission::kRefused : Admission::kProbe;
    }
    return Admission::kRefused;
  }
};

struct UpstreamPool::State {
  explicit State(std::size_t n) : targets(n) {}
  mutable std::mutex mutex;
  std::vector<Target> targets;  // fixed size: indices match options_.targets
  std::size_t next = 0;         // where the round robin (and least-request ties) start
  std::uint32_t in_flight = 0;
};

// ---- Lease ----------------------------------------------------------------------------------

UpstreamPool::Lease::Lease(Lease&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)), target_(other.target_), probe_(other.probe_) {}

UpstreamPool::Lease& UpstreamPool::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    report(UpstreamOutcome::kNotConsidered);
    pool_ = std::exchange(other.pool_, nullptr);
    target_ = other.target_;
    probe_ = other.probe_;
  }
  return *this;
}

UpstreamPool::Lease::~Lease() {
  report(UpstreamOutcome::kNotConsidered);
}

const std::string& UpstreamPool::Lease::host_port() const {
  return pool_ != nullptr ? pool_->options_.targets[target_] : empty_string();
}

void UpstreamPool::Lease::report(UpstreamOutcome outcome) {
  if (pool_ == nullptr) return;
  std::exchange(pool_, nullptr)->finish(target_, probe_, outcome);
}

// ---- Pool -----------------------------------------------------------------------------------

Result<std::unique_ptr<UpstreamPool>> UpstreamPool::create(UpstreamPoolOptions options,
                                                           const Clock& clock) {
  CIVICBUS_RETURN_IF_ERROR(options.validate());
  return std::unique_ptr<UpstreamPool>(new UpstreamPool(std::move(options), clock));
}

UpstreamPool::UpstreamPool(UpstreamPoolOptions options, const Clock& clock)
    : options_(std::move(options)),
      clock_(clock),
      state_(std::make_unique<State>(options_.targets.size())) {}

UpstreamPool::~UpstreamPool() = default;

Result<UpstreamPool::Lease> UpstreamPool::acquire(std::size_t exclude) {
  std::optional<SteadyTime> read;
  auto now = [&] {
    if (!read) read = clock_.steady_now();
    return *read;
  };
  std::lock_guard lock(state_->mutex);
  State& s = *state_;
  if (options_.max_concurrent_requests != 0 && s.in_flight >= options_.max_concurrent_requests) {
    return resource_exhausted(fmt::format(
        "upstream '{}': {} requests in flight, the max_concurrent_requests limit; retry later",
        options_.name, s.in_flight));
  }

  const std::size_t n = s.targets.size();
  const bool active_checks = !options_.active.path.empty();
  std::size_t chosen = SIZE_MAX;
  Admission chosen_admission = Admission::kRefused;
  std::size_t excluded_fallback = SIZE_MAX;  // `exclude`, when it qualifies
  Admission excluded_admission = Admission::kRefused;
  // One pass from the round-robin cursor: round robin takes the first qualifying target,
  // least request the one with the fewest in flight (the first of equals, so ties rotate).
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = (s.next + k) % n;
    const Target& t = s.targets[i];
    if (active_checks && !t.healthy) continue;
    const Admission admission = t.admits(now);
    if (admission == Admission::kRefused) continue;
    if (i == exclude) {
      excluded_fallback = i;
      excluded_admission = admission;
      continue;
    }
    if (chosen == SIZE_MAX || t.in_flight < s.targets[chosen].in_flight) {
      chosen = i;
      chosen_admission = admission;
      if (options_.balancing == Balancing::kRoundRobin) break;
    }
  }
  if (chosen == SIZE_MAX) {
    chosen = excluded_fallback;
    chosen_admission = excluded_admission;
  }

  if (chosen == SIZE_MAX) {
    std::size_t unhealthy = 0;
    std::size_t open = 0;
    for (const Target& t : s.targets) {
      if (active_checks && !t.healthy) {
        ++unhealthy;
      } else {
        ++open;
      }
    }
    std::string why;
    if (unhealthy != 0) why = fmt::format("{} unhealthy", unhealthy);
    if (open != 0) {
      if (!why.empty()) why += ", ";
      why += fmt::format("{} open breaker{}", open, open == 1 ? "" : "s");
    }
    return unavailable(fmt::format("upstream '{}': no healthy target ({})", options_.name, why));
  }

  Target& t = s.targets[chosen];
  const bool probe = chosen_admission == Admission::kProbe;
  if (probe) {
    t.breaker = BreakerState::kHalfOpen;
    t.probe_in_flight = true;
  }
  ++t.in_flight;
  ++t.requests;
  ++s.in_flight;
  s.next = (chosen + 1) % n;
  return Lease(this, chosen, probe);
}

void UpstreamPool::finish(std::size_t target, bool probe, UpstreamOutcome outcome) {
  const bool failed = outcome == UpstreamOutcome::kFailure || outcome == UpstreamOutcome::kTimeout;
  // Read the clock only when a breaker may open (it is a virtual call).
  const SteadyTime now = failed ? clock_.steady_now() : SteadyTime{};
  std::lock_guard lock(state_->mutex);
  State& s = *state_;
  Target& t = s.targets[target];
  --t.in_flight;
  --s.in_flight;
  if (probe) t.probe_in_flight = false;
  switch (outcome) {
    case UpstreamOutcome::kNotConsidered:
      // An abandoned probe proved nothing: the breaker stays half-open for the next request.
      return;
    case UpstreamOutcome::kSuccess:
      t.consecutive_failures = 0;
      // Only the probe closes the breaker: a success from a request sent before it opened
      // says little about the target now.
      if (probe) t.breaker = BreakerState::kClosed;
      return;
    case UpstreamOutcome::kFailure:
    case UpstreamOutcome::kTimeout:
      ++t.failures;
      ++t.consecutive_failures;
      const std::uint32_t threshold = options_.passive.consecutive_failures;
      const bool trips = probe || (t.breaker == BreakerState::kClosed && threshold != 0 &&
                                   t.consecutive_failures >= threshold);
      if (trips) {
        t.breaker = BreakerState::kOpen;
        t.reopen_at = now + options_.passive.open_duration;
      }
      return;
  }
}

void UpstreamPool::report_probe(std::size_t target, bool success) {
  // Without active checks every target counts as healthy, whatever is reported.
  if (options_.active.path.empty()) return;
  std::lock_guard lock(state_->mutex);
  if (target >= state_->targets.size()) return;
  Target& t = state_->targets[target];
  if (success) {
    t.probe_failures = 0;
    ++t.probe_successes;
    if (!t.healthy && t.probe_successes >= options_.active.healthy_threshold) t.healthy = true;
  } else {
    t.probe_successes = 0;
    ++t.probe_failures;
    if (t.healthy && t.probe_failures >= options_.active.unhealthy_threshold) t.healthy = false;
  }
}

std::vector<UpstreamTargetStatus> UpstreamPool::status() const {
  const SteadyTime now = clock_.steady_now();
  std::vector<UpstreamTargetStatus> out;
  out.reserve(options_.targets.size());
  std::lock_guard lock(state_->mutex);
  for (std::size_t i = 0; i < state_->targets.size(); ++i) {
    const Target& t = state_->targets[i];
    UpstreamTargetStatus& st = out.emplace_back();
    st.target = options_.targets[i];
    st.healthy = t.healthy;
    // An open breaker whose wait is over lets the next request through: it is half-open,
    // even though no request has come to move it there yet.
    st.breaker = t.breaker == BreakerState::kOpen && now >= t.reopen_at ? BreakerState::kHalfOpen
                                                                        : t.breaker;
    st.in_flight = t.in_flight;
    st.requests = t.requests;
    st.failures = t.failures;
  }
  return out;
}

std::uint32_t UpstreamPool::in_flight() const {
  std::lock_guard lock(state_->mutex);
  return state_->in_flight;
}

}  // namespace civicbus::gateway
