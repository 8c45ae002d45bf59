#include "civicbus/core/random.hpp"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <set>
#include <thread>
#include <vector>

namespace civicbus {
namespace {

TEST_CASE("random: SeededRandom is the splitmix64 stream") {
  SeededRandom r(0);
  CHECK(r.next_u64() == 0xe220a8397b1dcdafULL);
  CHECK(r.next_u64() == 0x6e789e6aa1b965f4ULL);
  CHECK(r.next_u64() == 0x06c45d188009454fULL);

  // Bytes come little-endian from each 64-bit output; a partial word's rest is dropped.
  SeededRandom a(0);
  const std::string b = a.bytes(3);
  REQUIRE(b.size() == 3);
  CHECK(static_cast<unsigned char>(b[0]) == 0xaf);
  CHECK(static_cast<unsigned char>(b[1]) == 0xcd);
  CHECK(static_cast<unsigned char>(b[2]) == 0x1d);
  CHECK(a.next_u64() == 0x6e789e6aa1b965f4ULL);

  SeededRandom x(12345), y(12345), z(12346);
  const std::string xs = x.bytes(1000);
  CHECK(xs == y.bytes(1000));
  CHECK(xs != z.bytes(1000));
}

TEST_CASE("random: SecureRandom output looks uniform") {
  SecureRandom r;
  CHECK(r.bytes(0).empty());
  const std::string a = r.bytes(32), b = r.bytes(32);
  CHECK(a != b);
  CHECK(a != std::string(32, '\0'));

  // Chi-square over byte values of 1 MiB, mixing small (buffered) and large requests.
  std::array<std::uint64_t, 256> hist{};
  std::size_t total = 0;
  for (std::size_t size : {1u, 7u, 12u, 16u, 100u, 127u, 128u, 255u, 4096u, 70000u}) {
    for (int rep = 0; rep < 8; ++rep) {
      for (unsigned char c : r.bytes(size)) ++hist[c];
      total += size;
    }
  }
  while (total < (1u << 20)) {
    for (unsigned char c : r.bytes(1000)) ++hist[c];
    total += 1000;
  }
  const double expected = static_cast<double>(total) / 256.0;
  double chi2 = 0;
  for (auto n : hist) chi2 += (n - expected) * (n - expected) / expected;
  // 255 degrees of freedom: the 99.999th percentile is about 370.
  CHECK(chi2 < 370.0);

  // Bit balance of next_u64.
  int ones = 0;
  for (int i = 0; i < 1000; ++i) ones += std::popcount(r.next_u64());
  CHECK(std::abs(ones - 32000) < 1000);
}

TEST_CASE("random: SecureRandom instances and threads do not repeat each other") {
  SecureRandom r1, r2;
  CHECK(r1.bytes(16) != r2.bytes(16));

  std::vector<std::vector<std::string>> per_thread(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20000; ++i) per_thread[t].push_back(r1.bytes(16));
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> seen;
  for (auto& v : per_thread) seen.insert(v.begin(), v.end());
  CHECK(seen.size() == 80000);
}

TEST_CASE("random: a forked child does not repeat the parent's bytes") {
  SecureRandom r;
  (void)r.bytes(8);  // leaves buffered output that a naive child would hand out again
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const std::string child = r.bytes(16);
    const ssize_t n = write(fds[1], child.data(), child.size());
    _exit(n == 16 ? 0 : 1);
  }
  close(fds[1]);
  std::string child(16, '\0');
  std::size_t got = 0;
  while (got < 16) {
    const ssize_t n = read(fds[0], child.data() + got, 16 - got);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(got == 16);
  CHECK(WIFEXITED(status));
  const std::string parent = r.bytes(16);
  CHECK(parent != child);
}

TEST_CASE("random: a seeded generator gives the same bytes however they are asked for") {
  SeededRandom whole(42);
  SeededRandom pieces(42);
  std::string a(40, '\0');
  whole.fill(a.data(), a.size());
  std::string b(40, '\0');
  pieces.fill(b.data(), 8);
  pieces.fill(b.data() + 8, 8);
  pieces.fill(b.data() + 16, 8);
  pieces.fill(b.data() + 24, 16);
  CHECK(a == b);
  // Little-endian words: the first eight bytes are next_u64() of a fresh generator.
  SeededRandom fresh(42);
  const std::uint64_t word = fresh.next_u64();
  for (int i = 0; i < 8; ++i) {
    CHECK(static_cast<unsigned char>(a[static_cast<std::size_t>(i)]) ==
          static_cast<unsigned char>(word >> (8 * i)));
  }
}

}  // namespace
}  // namespace civicbus
