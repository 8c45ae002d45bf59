// RandomSource: where civicbus takes random bytes from. SecureRandom is a CSPRNG (mbedTLS
// CTR_DRBG seeded from the OS) used for keys, nonces and ids; SeededRandom is deterministic,
// for tests only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "civicbus/export.hpp"

namespace civicbus {

class CIVICBUS_EXPORT RandomSource {
 public:
  virtual ~RandomSource() = default;
  virtual void fill(void* out, std::size_t n) = 0;
  std::string bytes(std::size_t n);
  std::uint64_t next_u64();
};

// Thread-safe CSPRNG. Aborts the process if the OS entropy source fails (nothing safe to do).
class CIVICBUS_EXPORT SecureRandom final : public RandomSource {
 public:
  SecureRandom();
  ~SecureRandom() override;
  void fill(void* out, std::size_t n) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Deterministic splitmix64 stream. Not thread-safe. Never for keys.
class CIVICBUS_EXPORT SeededRandom final : public RandomSource {
 public:
  explicit SeededRandom(std::uint64_t seed) : state_(seed) {}
  void fill(void* out, std::size_t n) override;

 private:
  std::uint64_t state_;
};

}  // namespace civicbus
