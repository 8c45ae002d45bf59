#include "civicbus/core/random.hpp"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/platform_util.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

namespace civicbus {

std::string RandomSource::bytes(std::size_t n) {
  std::string out(n, '\0');
  fill(out.data(), n);
  return out;
}

std::uint64_t RandomSource::next_u64() {
  unsigned char b[8];
  fill(b, sizeof b);
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];  // little-endian on every host
  return v;
}

namespace {

// A forked child inherits the DRBG state and would repeat the parent's output (nonces!).
// The child handler bumps this generation and every shard reseeds when it sees a new one.
// Process-wide because fork is process-wide.
std::atomic<std::uint64_t> g_fork_generation{0};
std::once_flag g_atfork_once;

void note_fork_in_child() {
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
}

// Threads are spread over the shards round-robin in the order they first ask for bytes.
std::atomic<std::size_t> g_next_thread_slot{0};

std::size_t this_thread_slot() {
  thread_local const std::size_t slot = g_next_thread_slot.fetch_add(1, std::memory_order_relaxed);
  return slot;
}

[[noreturn]] void die(const char* what, int code) {
  std::fprintf(stderr, "civicbus: SecureRandom: %s failed (mbedTLS error -0x%04x); aborting\n",
               what, static_cast<unsigned>(-code));
  std::abort();
}

}  // namespace

// One CTR_DRBG per shard, each behind its own mutex, so threads rarely meet. Small requests
// (ids, nonces) are served from a buffer of DRBG output: a CTR_DRBG call re-keys AES after
// every request, which would cost more than the request itself. Bytes handed out are wiped
// from the buffer, so a later memory disclosure does not reveal earlier output.
struct SecureRandom::Impl {
  static constexpr std::size_t kBufferSize = 256;
  static constexpr std::size_t kMaxShards = 32;

  struct alignas(64) Shard {
    std::mutex mu;
    bool initialized = false;
    std::uint64_t fork_generation = 0;
    mbedtls_ctr_drbg_context drbg;
    unsigned char buffer[kBufferSize];
    std::size_t available = 0;  // unread bytes are buffer[kBufferSize - available, kBufferSize)
  };

  std::mutex entropy_mu;  // the entropy pool is shared; it is only read at (re)seed time
  mbedtls_entropy_context entropy;
  std::size_t shard_count;
  std::unique_ptr<Shard[]> shards;

  Impl() {
    std::call_once(g_atfork_once, [] { pthread_atfork(nullptr, nullptr, note_fork_in_child); });
    mbedtls_entropy_init(&entropy);
    const unsigned hw = std::thread::hardware_concurrency();
    shard_count = std::clamp<std::size_t>(hw == 0 ? 4 : hw, 1, kMaxShards);
    shards = std::make_unique<Shard[]>(shard_count);
  }

  ~Impl() {
    for (std::size_t i = 0; i < shard_count; ++i) {
      Shard& s = shards[i];
      if (s.initialized) mbedtls_ctr_drbg_free(&s.drbg);
      mbedtls_platform_zeroize(s.buffer, sizeof s.buffer);
    }
    mbedtls_entropy_free(&entropy);
  }

  static int locked_entropy(void* self, unsigned char* out, std::size_t len) {
    auto* impl = static_cast<Impl*>(self);
    std::lock_guard lock(impl->entropy_mu);
    return mbedtls_entropy_func(&impl->entropy, out, len);
  }

  // Called with s.mu held.
  void ensure_seeded(Shard& s, std::size_t index) {
    const std::uint64_t generation = g_fork_generation.load(std::memory_order_relaxed);
    if (s.initialized && s.fork_generation == generation) return;
    // Personalization keeps shards (and processes) apart even before entropy is mixed in.
    unsigned char personal[32] = {};
    const void* self = this;
    const pid_t pid = getpid();
    std::memcpy(personal, &self, sizeof self);
    std::memcpy(personal + 8, &index, sizeof index);
    std::memcpy(personal + 16, &pid, sizeof pid);
    std::memcpy(personal + 24, &generation, sizeof generation);
    if (!s.initialized) {
      mbedtls_ctr_drbg_init(&s.drbg);
      const int rc =
          mbedtls_ctr_drbg_seed(&s.drbg, &Impl::locked_entropy, this, personal, sizeof personal);
      if (rc != 0) die("seeding CTR_DRBG", rc);
      s.initialized = true;
    } else {
      const int rc = mbedtls_ctr_drbg_reseed(&s.drbg, personal, sizeof personal);
      if (rc != 0) die("reseeding CTR_DRBG after fork", rc);
      mbedtls_platform_zeroize(s.buffer, sizeof s.buffer);
      s.available = 0;
    }
    s.fork_generation = generation;
  }

  static void generate(Shard& s, unsigned char* out, std::size_t n) {
    while (n > 0) {
      const std::size_t chunk = std::min<std::size_t>(n, MBEDTLS_CTR_DRBG_MAX_REQUEST);
      const int rc = mbedtls_ctr_drbg_random(&s.drbg, out, chunk);
      if (rc != 0) die("CTR_DRBG generate", rc);
      out += chunk;
      n -= chunk;
    }
  }

  void fill(unsigned char* out, std::size_t n) {
    const std::size_t index = this_thread_slot() % shard_count;
    Shard& s = shards[index];
    std::lock_guard lock(s.mu);
    ensure_seeded(s, index);
    if (n >= kBufferSize / 2) {
      generate(s, out, n);
      return;
    }
    while (n > 0) {
      if (s.available == 0) {
        generate(s, s.buffer, kBufferSize);
        s.available = kBufferSize;
      }
      const std::size_t take = std::min(n, s.available);
      unsigned char* from = s.buffer + (kBufferSize - s.available);
      std::memcpy(out, from, take);
      mbedtls_platform_zeroize(from, take);
      s.available -= take;
      out += take;
      n -= take;
    }
  }
};

SecureRandom::SecureRandom() : impl_(std::make_unique<Impl>()) {}
SecureRandom::~SecureRandom() = default;

void SecureRandom::fill(void* out, std::size_t n) {
  if (n == 0) return;
  impl_->fill(static_cast<unsigned char*>(out), n);
}

void SeededRandom::fill(void* out, std::size_t n) {
  auto* p = static_cast<unsigned char*>(out);
  while (n > 0) {
    // splitmix64 (Steele, Lea, Flood 2014), as in java.util.SplittableRandom.
    state_ += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    const std::size_t take = std::min<std::size_t>(n, 8);
    if (take == 8 && std::endian::native == std::endian::little) {
      std::memcpy(p, &z, 8);  // the same bytes as the loop below, at once
    } else {
      for (std::size_t i = 0; i < take; ++i) p[i] = static_cast<unsigned char>(z >> (8 * i));
    }
    p += take;
    n -= take;
  }
}

}  // namespace civicbus
