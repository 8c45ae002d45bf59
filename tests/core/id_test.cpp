#include "civicbus/core/id.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <thread>
#include <vector>

namespace civicbus {
namespace {

using std::chrono::milliseconds;

std::uint64_t id_millis(const std::string& id) {
  std::string hex = id.substr(0, 8) + id.substr(9, 4);
  return std::stoull(hex, nullptr, 16);
}

unsigned id_counter(const std::string& id) {
  return std::stoul(id.substr(15, 3), nullptr, 16);
}

TEST_CASE("id: UUIDv7 layout") {
  ManualClock clock(from_unix_micros(1'795'359'120'123'456));
  SecureRandom random;
  IdGenerator ids(clock, random);
  for (int i = 0; i < 1000; ++i) {
    const std::string id = ids.next();
    REQUIRE(id.size() == 36);
    CHECK(is_uuid(id));
    CHECK(id[8] == '-');
    CHECK(id[13] == '-');
    CHECK(id[18] == '-');
    CHECK(id[23] == '-');
    CHECK(id[14] == '7');                                                    // version
    CHECK(std::string_view("89ab").find(id[19]) != std::string_view::npos);  // variant 10xx
    CHECK(std::all_of(id.begin(), id.end(),
                      [](char c) { return c == '-' || (std::isxdigit(c) && !std::isupper(c)); }));
    CHECK(id_millis(id) >= 1'795'359'120'123ULL);
  }
  // The first id of a millisecond carries that millisecond and a counter below 2048.
  clock.advance(milliseconds{5});
  const std::string id = ids.next();
  CHECK(id_millis(id) == 1'795'359'120'128ULL);
  CHECK(id_counter(id) < 2048);
  CHECK(id.substr(0, 13) == "01a203be-1b00");
}

TEST_CASE("id: monotonic when the clock stands still, steps back, and overflows") {
  ManualClock clock;
  SeededRandom random(7);
  IdGenerator ids(clock, random);
  std::string prev = ids.next();
  const std::uint64_t start_ms = id_millis(prev);
  for (int i = 0; i < 10000; ++i) {
    const std::string id = ids.next();
    REQUIRE(id > prev);
    prev = id;
  }
  // 10001 ids in one frozen millisecond overflowed the 12-bit counter several times.
  CHECK(id_millis(prev) > start_ms);
  CHECK(id_millis(prev) <= start_ms + 5);

  clock.set(clock.now() - std::chrono::hours{1});  // NTP steps the wall clock back
  for (int i = 0; i < 1000; ++i) {
    const std::string id = ids.next();
    REQUIRE(id > prev);
    prev = id;
  }
  clock.advance(std::chrono::hours{2});
  const std::string later = ids.next();
  CHECK(later > prev);
  CHECK(id_millis(later) == static_cast<std::uint64_t>(to_unix_micros(clock.now()) / 1000));
}

TEST_CASE("id: seeded generators are reproducible") {
  ManualClock c1, c2;
  SeededRandom r1(99), r2(99);
  IdGenerator a(c1, r1), b(c2, r2);
  for (int i = 0; i < 100; ++i) CHECK(a.next() == b.next());
}

TEST_CASE("id: next() into a buffer writes the id next() returns, dashes included") {
  ManualClock c1, c2;
  SeededRandom r1(7), r2(7);
  IdGenerator a(c1, r1), b(c2, r2);
  for (int i = 0; i < 100; ++i) {
    std::array<char, 36> text;
    text.fill('x');
    a.next(text);
    const std::string expected = b.next();
    CHECK(std::string_view(text.data(), text.size()) == expected);
    CHECK(is_uuid(std::string_view(text.data(), text.size())));
    c1.advance(milliseconds{i % 2});
    c2.advance(milliseconds{i % 2});
  }
}

TEST_CASE("id: 100k ids from four threads are unique and ordered per thread") {
  ManualClock clock;
  SecureRandom random;
  IdGenerator ids(clock, random);
  std::atomic<bool> done{false};
  // A fifth thread moves the clock forwards and backwards while ids are made.
  std::thread stepper([&] {
    int i = 0;
    while (!done.load()) {
      clock.advance(milliseconds{(i++ % 3 == 0) ? -2 : 1});
      std::this_thread::yield();
    }
  });
  std::vector<std::vector<std::string>> per_thread(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto& out = per_thread[t];
      out.reserve(25000);
      for (int i = 0; i < 25000; ++i) out.push_back(ids.next());
    });
  }
  for (auto& th : threads) th.join();
  done = true;
  stepper.join();

  std::vector<std::string> all;
  for (auto& v : per_thread) {
    CHECK(std::is_sorted(v.begin(), v.end()));
    CHECK(std::adjacent_find(v.begin(), v.end()) == v.end());
    all.insert(all.end(), v.begin(), v.end());
  }
  std::sort(all.begin(), all.end());
  CHECK(all.size() == 100000);
  CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());
}

TEST_CASE("id: is_uuid") {
  CHECK(is_uuid("0190163d-8694-739b-aea5-966c26f8ad91"));
  CHECK(is_uuid("0190163D-8694-739B-AEA5-966C26F8AD91"));
  CHECK(is_uuid("00000000-0000-0000-0000-000000000000"));
  CHECK(is_uuid("6ba7b810-9dad-11d1-80b4-00c04fd430c8"));  // v1 is a UUID too
  CHECK_FALSE(is_uuid(""));
  CHECK_FALSE(is_uuid("0190163d8694739baea5966c26f8ad91"));
  CHECK_FALSE(is_uuid("{0190163d-8694-739b-aea5-966c26f8ad91}"));
  CHECK_FALSE(is_uuid("0190163d-8694-739b-aea5-966c26f8ad9"));
  CHECK_FALSE(is_uuid("0190163d-8694-739b-aea5-966c26f8ad911"));
  CHECK_FALSE(is_uuid("0190163d-8694-739b-aea5_966c26f8ad91"));
  CHECK_FALSE(is_uuid("0190163g-8694-739b-aea5-966c26f8ad91"));
  CHECK_FALSE(is_uuid("0190163d-8694-739b-aea5-966c26f8ad9 "));
  CHECK_FALSE(is_uuid("0190163-d8694-739b-aea5-966c26f8ad91"));
}

}  // namespace
}  // namespace civicbus
