// UUIDv7 ids (RFC 9562): time-ordered, so they index well and sort by creation.
#pragma once

#include <cstddef>
#include <mutex>
#include <span>
#include <string>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/export.hpp"

namespace civicbus {

// Generates UUIDv7 strings ("0190163d-8694-739b-aea5-966c26f8ad91"), monotonic within one
// generator even when the clock stands still or steps back (RFC 9562 §6.2, method 1: a
// 12-bit counter in rand_a). Thread-safe. Keeps references to `clock` and `random`, which
// must outlive it.
class CIVICBUS_EXPORT IdGenerator {
 public:
  IdGenerator(const Clock& clock, RandomSource& random) : clock_(clock), random_(random) {}
  std::string next();
  // The same id written into `out` (36 characters, no allocation).
  void next(std::span<char, 36> out);

 private:
  const Clock& clock_;
  RandomSource& random_;
  std::mutex mu_;
  std::uint64_t last_ms_ = 0;
  std::uint32_t counter_ = 0;
};

// True for a canonical lower- or upper-case 8-4-4-4-12 hex UUID of any version.
CIVICBUS_EXPORT bool is_uuid(std::string_view text);

}  // namespace civicbus
