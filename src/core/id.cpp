#include "civicbus/core/id.hpp"

#include <cstdint>
#include <cstring>

#include "civicbus/core/crypto.hpp"

namespace civicbus {
namespace {

constexpr std::uint64_t kMaxUnixMs = (std::uint64_t{1} << 48) - 1;  // unix_ts_ms is 48 bits
constexpr std::uint32_t kMaxCounter = 0xFFF;                        // rand_a is 12 bits
// A new millisecond starts the counter at a random value with its top bit clear (RFC 9562
// §6.2, "counter rollover guards"), leaving at least 2048 ids before it spills into the
// next millisecond.
constexpr std::uint32_t kCounterSeedMask = 0x7FF;

constexpr bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

std::string IdGenerator::next() {
  std::string out(36, '-');
  next(std::span<char, 36>(out.data(), 36));
  return out;
}

void IdGenerator::next(std::span<char, 36> out) {
  const std::int64_t now_us = to_unix_micros(clock_.now());
  std::uint64_t now_ms = now_us <= 0 ? 0 : static_cast<std::uint64_t>(now_us / 1000);
  if (now_ms > kMaxUnixMs) now_ms = kMaxUnixMs;

  unsigned char rnd[10];
  std::uint64_t ms;
  std::uint32_t counter;
  {
    // The random source is read under the lock too: SeededRandom is not thread-safe, and a
    // generator must be safe whatever source it was given.
    std::lock_guard lock(mu_);
    random_.fill(rnd, sizeof rnd);
    const std::uint32_t seed = ((std::uint32_t{rnd[8]} << 8) | rnd[9]) & kCounterSeedMask;
    if (now_ms > last_ms_) {
      last_ms_ = now_ms;
      counter_ = seed;
    } else if (counter_ < kMaxCounter) {
      // The clock stood still or stepped back: stay on the last millisecond and count up.
      ++counter_;
    } else {
      // 4096 ids in one millisecond: borrow the next one; the clock catches up later.
      ++last_ms_;
      counter_ = seed;
    }
    ms = last_ms_;
    counter = counter_;
  }

  unsigned char b[16];
  for (int i = 0; i < 6; ++i) b[i] = static_cast<unsigned char>(ms >> (8 * (5 - i)));
  b[6] = static_cast<unsigned char>(0x70 | (counter >> 8));  // version 7
  b[7] = static_cast<unsigned char>(counter);
  b[8] = static_cast<unsigned char>(0x80 | (rnd[0] & 0x3F));  // variant 10
  for (int i = 9; i < 16; ++i) b[i] = rnd[i - 8];

  // 8-4-4-4-12: the 32 hex digits written at once, then moved apart for the dashes.
  char hex[32];
  crypto::to_hex(std::string_view(reinterpret_cast<const char*>(b), sizeof b), hex);
  char* o = out.data();
  std::memcpy(o, hex, 8);
  o[8] = '-';
  std::memcpy(o + 9, hex + 8, 4);
  o[13] = '-';
  std::memcpy(o + 14, hex + 12, 4);
  o[18] = '-';
  std::memcpy(o + 19, hex + 16, 4);
  o[23] = '-';
  std::memcpy(o + 24, hex + 20, 12);
}

bool is_uuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool dash_here = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash_here ? text[i] != '-' : !is_hex(text[i])) return false;
  }
  return true;
}

}  // namespace civicbus
