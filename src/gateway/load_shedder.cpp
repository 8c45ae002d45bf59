#include "gateway/load_shedder.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <utility>

namespace civicbus::gateway {
namespace {

// Below this many samples a p90 is one or two outliers: the window's mean is used instead.
constexpr std::size_t kMinSamplesForPercentile = 10;
// Latencies kept per window for the p90 (a later sample only adds to the mean): bounds the
// memory and the sort; about 260 000 requests a second at the default 250 ms window.
constexpr std::size_t kMaxWindowSamples = 65'536;
// The clock's resolution as a latency floor, so that a zero latency cannot make the gradient
// 0/0.
constexpr double kMinLatencyMs = 0.001;

std::string_view tier_name(std::size_t tier, std::size_t tiers) {
  if (tier == 0) return "critical";
  return tier + 1 == tiers ? "low" : "normal";
}

}  // namespace

// ---- Options --------------------------------------------------------------------------------

Status LoadShedderOptions::validate() const {
  auto bad = [](std::string_view field, const std::string& what) {
    return invalid_argument(fmt::format("load shedder: {} {}", field, what));
  };
  if (min_limit == 0) return bad("min_limit", "must be at least 1");
  if (max_limit < min_limit) {
    return bad("max_limit", fmt::format("{} is below min_limit {}", max_limit, min_limit));
  }
  if (initial_limit < min_limit || initial_limit > max_limit) {
    return bad("initial_limit", fmt::format("{} is outside [min_limit {}, max_limit {}]",
                                            initial_limit, min_limit, max_limit));
  }
  if (!(tolerance >= 1.0) || !std::isfinite(tolerance)) {
    return bad("tolerance", fmt::format("{} must be a finite number of at least 1.0", tolerance));
  }
  if (sample_window.count() <= 0) return bad("sample_window", "must be positive");
  if (min_samples == 0) return bad("min_samples", "must be at least 1");
  if (min_latency_refresh == 0) return bad("min_latency_refresh", "must be at least 1");
  if (tier_shares.empty()) return bad("tier_shares", "must list at least the critical tier's 1.0");
  if (tier_shares.front() != 1.0) {
    return bad("tier_shares", fmt::format("[0] is {}; the critical tier's share must be 1.0",
                                          tier_shares.front()));
  }
  for (std::size_t i = 1; i < tier_shares.size(); ++i) {
    const double share = tier_shares[i];
    if (!(share > 0.0 && share <= 1.0)) {
      return bad("tier_shares", fmt::format("[{}] is {}; a share is in (0, 1]", i, share));
    }
    if (share > tier_shares[i - 1]) {
      return bad("tier_shares", fmt::format("[{}] is {}, above [{}] {}; shares must not increase",
                                            i, share, i - 1, tier_shares[i - 1]));
    }
  }
  if (retry_after.count() < 0) return bad("retry_after", "must not be negative");
  return Status::ok_status();
}

// ---- State ----------------------------------------------------------------------------------

struct LoadShedder::State {
  std::mutex mutex;
  // The limit is kept fractional so that small gradients still move it; the tiers use its
  // whole part.
  double limit = 0;
  std::uint32_t whole_limit = 0;
  std::vector<double> shares;
  std::vector<std::uint32_t> tier_capacity;  // requests each tier may have in flight
  std::vector<std::uint64_t> shed;
  std::uint32_t in_flight = 0;
  // The current sample window.
  SteadyTime window_end{};
  std::vector<double> samples;  // latencies in ms (at most kMaxWindowSamples)
  std::size_t sample_count = 0;
  double sample_sum = 0;
  // Results of the windows that counted.
  double min_latency = 0;  // ms; 0 until measured
  double sample_latency = 0;
  std::uint32_t windows_since_min = 0;

  void set_limit(double value) {
    limit = value;
    whole_limit = static_cast<std::uint32_t>(limit);
    for (std::size_t i = 0; i < shares.size(); ++i) {
      // The epsilon keeps 0.7 * 1000 at 700 despite binary rounding; every tier keeps room for
      // at least one request.
      const auto capacity = static_cast<std::uint32_t>(std::floor(shares[i] * whole_limit + 1e-9));
      tier_capacity[i] = std::max<std::uint32_t>(1, capacity);
    }
  }
};

// ---- Ticket ---------------------------------------------------------------------------------

LoadShedder::Ticket::Ticket(Ticket&& other) noexcept
    : shedder_(std::exchange(other.shedder_, nullptr)), start_(other.start_) {}

LoadShedder::Ticket& LoadShedder::Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    release();
    shedder_ = std::exchange(other.shedder_, nullptr);
    start_ = other.start_;
  }
  return *this;
}

LoadShedder::Ticket::~Ticket() {
  release();
}

void LoadShedder::Ticket::release() {
  if (shedder_ == nullptr) return;
  LoadShedder* shedder = std::exchange(shedder_, nullptr);
  shedder->finish(start_, shedder->clock_.steady_now(), true);
}

void LoadShedder::Ticket::release(SteadyTime end) {
  if (shedder_ == nullptr) return;
  std::exchange(shedder_, nullptr)->finish(start_, end, true);
}

void LoadShedder::Ticket::cancel() {
  if (shedder_ == nullptr) return;
  LoadShedder* shedder = std::exchange(shedder_, nullptr);
  shedder->finish(start_, shedder->clock_.steady_now(), false);
}

// ---- Shedder --------------------------------------------------------------------------------

LoadShedder::LoadShedder(LoadShedderOptions options, const Clock& clock)
    : options_(std::move(options)), clock_(clock), state_(std::make_unique<State>()) {
  State& s = *state_;
  // The caller validated the options; an empty tier list still must not index out of range.
  s.shares = options_.tier_shares.empty() ? std::vector<double>{1.0} : options_.tier_shares;
  s.tier_capacity.resize(s.shares.size());
  s.shed.resize(s.shares.size());
  s.samples.reserve(1024);
  s.set_limit(options_.initial_limit);
  s.window_end = clock_.steady_now() + options_.sample_window;
}

LoadShedder::~LoadShedder() = default;

Result<LoadShedder::Ticket> LoadShedder::acquire(std::size_t tier) {
  return acquire(tier, clock_.steady_now());
}

Result<LoadShedder::Ticket> LoadShedder::acquire(std::size_t tier, SteadyTime now) {
  std::lock_guard lock(state_->mutex);
  State& s = *state_;
  if (options_.enabled) {
    if (now >= s.window_end) close_window(now);
    tier = std::min(tier, s.shares.size() - 1);
    if (s.in_flight >= s.tier_capacity[tier]) {
      ++s.shed[tier];
      return resource_exhausted(fmt::format("shedding tier {} ({}): {} of {} in flight", tier,
                                            tier_name(tier, s.shares.size()), s.in_flight,
                                            s.whole_limit));
    }
  }
  ++s.in_flight;
  return Ticket(this, now);
}

void LoadShedder::finish(SteadyTime start, SteadyTime now, bool sample) {
  std::lock_guard lock(state_->mutex);
  State& s = *state_;
  --s.in_flight;
  if (!options_.enabled) return;
  // A window that ended before this request did is closed first: the sample starts the next.
  if (now >= s.window_end) close_window(now);
  if (!sample) return;
  const double latency_ms = std::chrono::duration<double, std::milli>(now - start).count();
  ++s.sample_count;
  s.sample_sum += latency_ms;
  if (s.samples.size() < kMaxWindowSamples) s.samples.push_back(latency_ms);
}

// Called under the mutex once a window is over: adapts the limit and starts the next window.
void LoadShedder::close_window(SteadyTime now) {
  State& s = *state_;
  s.window_end = now + options_.sample_window;
  const std::size_t count = s.sample_count;
  const double sum = s.sample_sum;
  s.sample_count = 0;
  s.sample_sum = 0;
  if (count < std::max<std::size_t>(1, options_.min_samples)) {
    s.samples.clear();
    return;
  }
  double latency;
  if (s.samples.size() < kMinSamplesForPercentile) {
    latency = sum / static_cast<double>(count);
  } else {
    // The p90 by nearest rank.
    const std::size_t rank =
        static_cast<std::size_t>(std::ceil(0.9 * static_cast<double>(s.samples.size()))) - 1;
    std::nth_element(s.samples.begin(), s.samples.begin() + static_cast<std::ptrdiff_t>(rank),
                     s.samples.end());
    latency = s.samples[rank];
  }
  s.samples.clear();
  latency = std::max(latency, kMinLatencyMs);
  s.sample_latency = latency;

  // min_latency drifts up only when re-measured: every min_latency_refresh windows the
  // window's own latency replaces it (the service may have become slower for good).
  if (s.min_latency == 0 || latency < s.min_latency ||
      s.windows_since_min >= options_.min_latency_refresh) {
    s.min_latency = latency;
    s.windows_since_min = 0;
  }
  ++s.windows_since_min;

  const double gradient = std::clamp(s.min_latency * options_.tolerance / latency, 0.5, 1.0);
  const double headroom = std::sqrt(s.limit);
  const double next =
      std::clamp(s.limit * gradient + headroom, static_cast<double>(options_.min_limit),
                 static_cast<double>(options_.max_limit));
  s.set_limit(next);
}

LoadShedderStatus LoadShedder::status() const {
  std::lock_guard lock(state_->mutex);
  const State& s = *state_;
  LoadShedderStatus out;
  out.limit = s.whole_limit;
  out.in_flight = s.in_flight;
  out.min_latency_ms = s.min_latency;
  out.sample_latency_ms = s.sample_latency;
  out.shed_per_tier = s.shed;
  out.shedding_per_tier.resize(s.shares.size());
  for (std::size_t i = 0; i < s.shares.size(); ++i) {
    out.shedding_per_tier[i] = options_.enabled && s.in_flight >= s.tier_capacity[i];
  }
  return out;
}

}  // namespace civicbus::gateway
