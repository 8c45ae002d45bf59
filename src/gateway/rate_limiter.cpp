#include "gateway/rate_limiter.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <limits>

#include "core/string_map.hpp"

namespace civicbus::gateway {
namespace {

constexpr std::int64_t kMicrosPerSecond = 1'000'000;
// Bucket tokens are counted in 1/kMinute units so that refilling `rpm` tokens a minute adds
// exactly `rpm` units a microsecond: integer arithmetic, no drift.
constexpr std::int64_t kMinute = 60 * kMicrosPerSecond;
constexpr std::int64_t kDay = 86'400 * kMicrosPerSecond;

std::int64_t micros(SteadyTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0);
}

// Products of day counts and microseconds exceed 64 bits.
__extension__ typedef __int128 Wide;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return a <= 0 ? 0 : (a + b - 1) / b;
}

// Whole seconds for a wait, rounded up: a client that waits that long will pass.
std::int64_t ceil_seconds(std::int64_t us) {
  return ceil_div(us, kMicrosPerSecond);
}

std::int64_t capacity_of(const RateLimitPolicy& p) {
  return p.burst != 0 ? p.burst : p.requests_per_minute;
}

struct WindowResult {
  bool allowed = true;
  std::uint64_t limit = 0;
  std::uint64_t remaining = 0;
  std::int64_t reset_seconds = 0;
  std::int64_t retry_after_seconds = 0;
};

}  // namespace

struct RateLimiter::KeyState {
  // Token bucket (steady clock).
  std::int64_t tokens = 0;  // in 1/kMinute units
  std::int64_t bucket_at = 0;
  std::int64_t rate = 0;      // units added per microsecond = requests per minute
  std::int64_t capacity = 0;  // in units
  // Day windows (wall clock, fixed UTC days; the sliding estimate weighs the previous one).
  std::int64_t day_window = std::numeric_limits<std::int64_t>::min();
  std::uint64_t day_current = 0;
  std::uint64_t day_previous = 0;
  std::int64_t last_seen = 0;  // steady micros

  void refill(std::int64_t now) {
    const std::int64_t elapsed = std::max<std::int64_t>(0, now - bucket_at);
    bucket_at = std::max(bucket_at, now);
    if (rate == 0 || tokens >= capacity) {
      tokens = std::min(tokens, capacity);
      return;
    }
    // Cap the elapsed time at what fills the bucket so the product cannot overflow.
    const std::int64_t to_full = ceil_div(capacity - tokens, rate);
    tokens = std::min(capacity, tokens + std::min(elapsed, to_full) * rate);
  }

  void roll_day(std::int64_t wall_now) {
    const std::int64_t window = floor_div(wall_now, kDay);
    if (window <= day_window) return;  // same window, or the wall clock stepped back
    day_previous = window == day_window + 1 ? day_current : 0;
    day_current = 0;
    day_window = window;
  }

  // Fresh-equivalent: forgetting this key changes no future decision.
  bool idle(std::int64_t now, std::int64_t wall_now) const {
    KeyState copy = *this;
    copy.refill(now);
    copy.roll_day(wall_now);
    const bool bucket_full = copy.rate == 0 || copy.tokens >= copy.capacity;
    return bucket_full && copy.day_current == 0 && copy.day_previous == 0;
  }
};

struct RateLimiter::Shard {
  std::mutex mutex;
  // Found by string_view: a request's key is not copied to look up its state.
  civicbus::detail::StringMap<KeyState> keys;
};

RateLimiter::RateLimiter(const Clock& clock, RateLimiterOptions options)
    : clock_(clock), options_(options) {
  const std::size_t shards = std::max<std::size_t>(1, options_.shards);
  max_keys_per_shard_ = std::max<std::size_t>(1, (options_.max_keys + shards - 1) / shards);
  shards_.reserve(shards);
  for (std::size_t i = 0; i < shards; ++i) shards_.push_back(std::make_unique<Shard>());
}

RateLimiter::~RateLimiter() = default;

RateLimiter::Shard& RateLimiter::shard_for(std::string_view key) {
  return *shards_[std::hash<std::string_view>{}(key) % shards_.size()];
}

Result<RateLimitDecision> RateLimiter::check(std::string_view key, const RateLimitPolicy& policy,
                                             std::uint32_t cost) {
  const std::int64_t capacity = capacity_of(policy);
  const bool minute_on = policy.requests_per_minute != 0;
  const bool day_on = policy.requests_per_day != 0;
  if (cost == 0) return invalid_argument("rate limit cost must be at least 1");
  if (minute_on && cost > capacity) {
    return invalid_argument(fmt::format(
        "rate limit cost {} exceeds the burst capacity {} of key '{}'; it could never pass", cost,
        capacity, key));
  }
  if (day_on && cost > policy.requests_per_day) {
    return invalid_argument(fmt::format(
        "rate limit cost {} exceeds the daily limit {} of key '{}'; it could never pass", cost,
        policy.requests_per_day, key));
  }

  RateLimitDecision decision;
  if (!minute_on && !day_on) return decision;
  // Put together on the stack and assigned once: this runs on every request that has a
  // policy. At most three 20-digit numbers and 30 bytes of text.
  char text[96];
  char* at = text;
  auto put = [&at](std::string_view s) { at = std::copy(s.begin(), s.end(), at); };
  auto number = [&at](std::uint64_t n) { at = std::to_chars(at, at + 20, n).ptr; };
  if (minute_on) {
    number(policy.requests_per_minute);
    put(";w=60");
    if (capacity != policy.requests_per_minute) {
      put(";burst=");
      number(static_cast<std::uint64_t>(capacity));
    }
  }
  if (day_on) {
    if (at != text) put(", ");
    number(policy.requests_per_day);
    put(";w=86400");
  }
  decision.policy.assign(text, static_cast<std::size_t>(at - text));

  const std::int64_t now = micros(clock_.steady_now());
  // The wall clock only counts for the daily window (without one it is read only to forget
  // idle keys, below).
  const std::int64_t wall_now = day_on ? to_unix_micros(clock_.now()) : 0;

  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  auto it = shard.keys.find(key);
  if (it == shard.keys.end()) {
    if (shard.keys.size() >= max_keys_per_shard_) {
      std::erase_if(shard.keys, [&, wall = day_on ? wall_now : to_unix_micros(clock_.now())](
                                    const auto& entry) { return entry.second.idle(now, wall); });
    }
    if (shard.keys.size() >= max_keys_per_shard_) {
      auto oldest = std::min_element(
          shard.keys.begin(), shard.keys.end(),
          [](const auto& a, const auto& b) { return a.second.last_seen < b.second.last_seen; });
      shard.keys.erase(oldest);
    }
    KeyState fresh;
    fresh.rate = policy.requests_per_minute;
    fresh.capacity = capacity * kMinute;
    fresh.tokens = fresh.capacity;
    fresh.bucket_at = now;
    it = shard.keys.emplace(std::string(key), fresh).first;
  }
  KeyState& state = it->second;
  state.last_seen = now;
  // The policy may change between calls (a consumer moved to another plan): refill at the old
  // rate up to now, then apply the new one.
  state.refill(now);
  state.rate = policy.requests_per_minute;
  state.capacity = capacity * kMinute;
  state.tokens = std::min(state.tokens, state.capacity);
  state.roll_day(wall_now);

  WindowResult minute;
  if (minute_on) {
    const std::int64_t need = static_cast<std::int64_t>(cost) * kMinute;
    minute.allowed = state.tokens >= need;
    minute.limit = static_cast<std::uint64_t>(capacity);
    if (!minute.allowed) {
      minute.retry_after_seconds =
          std::max<std::int64_t>(1, ceil_seconds(ceil_div(need - state.tokens, state.rate)));
    }
  }

  WindowResult day;
  const std::int64_t elapsed =
      std::clamp<std::int64_t>(wall_now - state.day_window * kDay, 0, kDay - 1);
  if (day_on) {
    const Wide limit = policy.requests_per_day;
    // estimate = previous * (kDay - elapsed) / kDay + current, compared without division.
    const Wide weighted_previous = Wide(state.day_previous) * (kDay - elapsed);
    day.allowed = weighted_previous + Wide(state.day_current + cost) * kDay <= limit * kDay;
    day.limit = policy.requests_per_day;
    day.reset_seconds = ceil_seconds(kDay - elapsed);
    if (!day.allowed) {
      // When does the weighted previous window fade enough? Within this window if the
      // current count plus cost fits at all, else in the next one (previous := current).
      std::int64_t wait = 0;
      const Wide room = limit - Wide(state.day_current) - cost;
      if (room >= 0 && state.day_previous > 0) {
        const Wide needed_elapsed = kDay - (room * kDay) / Wide(state.day_previous);
        wait = static_cast<std::int64_t>(needed_elapsed) - elapsed;
      } else {
        const Wide next_room = limit - cost;
        std::int64_t into_next = 0;
        if (state.day_current > 0) {
          into_next =
              static_cast<std::int64_t>(kDay - (next_room * kDay) / Wide(state.day_current));
        }
        wait = (kDay - elapsed) + std::max<std::int64_t>(0, into_next);
      }
      day.retry_after_seconds = std::max<std::int64_t>(1, ceil_seconds(wait));
    }
  }

  decision.allowed = minute.allowed && day.allowed;
  if (decision.allowed) {
    state.tokens -= minute_on ? static_cast<std::int64_t>(cost) * kMinute : 0;
    if (day_on) state.day_current += cost;
  }
  if (minute_on) {
    minute.remaining = static_cast<std::uint64_t>(state.tokens / kMinute);
    minute.reset_seconds =
        state.rate == 0 ? 0 : ceil_seconds(ceil_div(state.capacity - state.tokens, state.rate));
  }
  if (day_on) {
    const Wide estimate_units =
        Wide(state.day_previous) * (kDay - elapsed) + Wide(state.day_current) * kDay;
    const Wide used = (estimate_units + kDay - 1) / kDay;
    const Wide left = Wide(policy.requests_per_day) - used;
    day.remaining = left > 0 ? static_cast<std::uint64_t>(left) : 0;
  }

  // Report the window that binds: the denying one with the longer wait, else the one with
  // fewer requests left (the minute window on a tie).
  bool use_minute;
  if (!minute_on || !day_on) {
    use_minute = minute_on;
  } else if (!decision.allowed) {
    use_minute = !day.allowed
                     ? (!minute.allowed && minute.retry_after_seconds > day.retry_after_seconds)
                     : true;
  } else {
    use_minute = minute.remaining <= day.remaining;
  }
  const WindowResult& chosen = use_minute ? minute : day;
  decision.window = use_minute ? RateLimitWindow::kMinute : RateLimitWindow::kDay;
  decision.limit = chosen.limit;
  decision.remaining = chosen.remaining;
  decision.reset_seconds = chosen.reset_seconds;
  decision.retry_after_seconds =
      decision.allowed ? 0 : std::max(minute.retry_after_seconds, day.retry_after_seconds);
  return decision;
}

std::size_t RateLimiter::evict_idle() {
  const std::int64_t now = micros(clock_.steady_now());
  const std::int64_t wall_now = to_unix_micros(clock_.now());
  std::size_t removed = 0;
  for (auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    removed += std::erase_if(shard->keys,
                             [&](const auto& entry) { return entry.second.idle(now, wall_now); });
  }
  return removed;
}

std::size_t RateLimiter::key_count() const {
  std::size_t count = 0;
  for (const auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    count += shard->keys.size();
  }
  return count;
}

std::string rate_limit_key(std::string_view consumer_id, std::string_view route_id) {
  std::string key(consumer_id);
  if (!route_id.empty()) key.append(1, '\x1f').append(route_id);
  return key;
}

}  // namespace civicbus::gateway
