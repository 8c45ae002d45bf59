// RateLimiter: per-key request limits for the gateway — a token bucket per minute (with a
// burst allowance) and a per-day quota counted over a sliding window. Owns the per-key state
// (sharded, each shard under its own mutex); reads time only from the injected Clock, which
// must outlive the limiter. Thread-safe: any number of request threads may call check().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/gateway/options.hpp"

namespace civicbus::gateway {

struct RateLimiterOptions {
  std::size_t shards = 16;         // lock stripes; rounded up to at least 1
  std::size_t max_keys = 100'000;  // memory bound over all shards (about 100 B per key)
};

// Which window a decision's header values describe.
enum class RateLimitWindow { kNone, kMinute, kDay };

// Everything a 429 or a successful response needs to tell the client. Header values follow
// draft-ietf-httpapi-ratelimit-headers-06 (the last draft with the separate RateLimit-Limit,
// RateLimit-Remaining and RateLimit-Reset fields); see docs/gateway.md.
struct RateLimitDecision {
  bool allowed = true;
  RateLimitWindow window = RateLimitWindow::kNone;  // kNone: the policy limits nothing
  std::uint64_t limit = 0;                          // RateLimit-Limit
  std::uint64_t remaining = 0;                      // RateLimit-Remaining (after this request)
  std::int64_t reset_seconds = 0;                   // RateLimit-Reset (delta seconds)
  std::int64_t retry_after_seconds = 0;             // Retry-After when denied, else 0
  std::string policy;  // RateLimit-Policy, e.g. "10;w=60;burst=10, 1000;w=86400"
};

class RateLimiter {
 public:
  RateLimiter(const Clock& clock, RateLimiterOptions options = {});
  ~RateLimiter();
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Takes `cost` requests from `key` if both windows allow it; a denied request takes
  // nothing. kInvalidArgument for cost 0 or a cost above the bucket capacity or the day limit
  // (it could never pass).
  Result<RateLimitDecision> check(std::string_view key, const RateLimitPolicy& policy,
                                  std::uint32_t cost = 1);

  // Forgets keys whose state is the same as a fresh key's (bucket full again, no requests in
  // the current or previous day window). Returns how many were removed. check() also does
  // this in a shard that is full, and when that frees nothing it drops the key seen least
  // recently (that key's client gets a fresh allowance: the price of bounded memory).
  std::size_t evict_idle();
  std::size_t key_count() const;

 private:
  struct KeyState;
  struct Shard;
  Shard& shard_for(std::string_view key);

  const Clock& clock_;
  RateLimiterOptions options_;
  std::size_t max_keys_per_shard_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

// The limiter key for a consumer, optionally per route: "consumer" or "consumer\x1froute"
// (a separator that cannot appear in either id).
std::string rate_limit_key(std::string_view consumer_id, std::string_view route_id = {});

}  // namespace civicbus::gateway
