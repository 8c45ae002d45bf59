#include "transport/dedup_window.hpp"

#include <doctest/doctest.h>

#include <deque>
#include <string>
#include <unordered_map>

#include "civicbus/core/random.hpp"

namespace civicbus::transport {
namespace {

using std::chrono::hours;
using std::chrono::microseconds;

TEST_CASE("dedup window: remembers keys with their offsets, per source and id") {
  DedupWindow w(hours(24), 1000);
  w.insert("/tax", "a", 1, 100);
  w.insert("/tax", "b", 2, 100);
  w.insert("/permits", "a", 3, 100);
  CHECK(w.find(DedupWindow::make_key("/tax", "a")) == 1);
  CHECK(w.find(DedupWindow::make_key("/tax", "b")) == 2);
  CHECK(w.find(DedupWindow::make_key("/permits", "a")) == 3);
  CHECK_FALSE(w.find(DedupWindow::make_key("/tax", "c")).has_value());
  // The separator keeps ("ab","c") and ("a","bc") apart.
  w.insert("ab", "c", 4, 100);
  CHECK_FALSE(w.find(DedupWindow::make_key("a", "bc")).has_value());
  CHECK(w.size() == 4);
}

TEST_CASE("dedup window: entries leave by age and by count, oldest first") {
  DedupWindow w(microseconds(1000), 3);
  w.insert("s", "1", 1, 0);
  w.insert("s", "2", 2, 500);
  w.insert("s", "3", 3, 900);
  w.expire(1200);  // cutoff 200: "1" is too old
  CHECK_FALSE(w.find(DedupWindow::make_key("s", "1")).has_value());
  CHECK(w.find(DedupWindow::make_key("s", "2")) == 2);
  w.insert("s", "4", 4, 1300);
  w.insert("s", "5", 5, 1300);
  w.expire(1300);  // cutoff 300; four entries left, bound is 3: "2" goes
  CHECK(w.size() == 3);
  CHECK_FALSE(w.find(DedupWindow::make_key("s", "2")).has_value());
  CHECK(w.find(DedupWindow::make_key("s", "5")) == 5);
}

TEST_CASE("dedup window: erase forgets a key and a re-insert moves it") {
  DedupWindow w(hours(1), 100);
  w.insert("s", "x", 7, 10);
  w.erase_key(DedupWindow::make_key("s", "x"));
  CHECK_FALSE(w.find(DedupWindow::make_key("s", "x")).has_value());
  CHECK(w.size() == 0);
  w.insert("s", "y", 8, 10);
  w.insert("s", "y", 9, 20);
  CHECK(w.find(DedupWindow::make_key("s", "y")) == 9);
  CHECK(w.size() == 1);
}

TEST_CASE("dedup window: agrees with a reference map through growth, expiry and rehashes") {
  SeededRandom rng(42);
  DedupWindow w(microseconds(50'000), 20'000);
  std::unordered_map<std::string, std::int64_t> ref;       // id -> offset
  std::deque<std::pair<std::string, std::int64_t>> order;  // id, stored_at
  std::int64_t now = 0;
  for (std::int64_t off = 1; off <= 200'000; ++off) {
    now += static_cast<std::int64_t>(rng.next_u64() % 3);
    std::string id = std::to_string(rng.next_u64() % 300'000);
    auto key = DedupWindow::make_key("src", id);
    auto found = w.find(key);
    auto it = ref.find(id);
    REQUIRE(found.has_value() == (it != ref.end()));
    if (found) {
      REQUIRE(*found == it->second);
      continue;
    }
    w.insert_key(key, off, now);
    ref[id] = off;
    order.emplace_back(id, now);
    w.expire(now);
    while (!order.empty() && (order.front().second < now - 50'000 || ref.size() > 20'000)) {
      ref.erase(order.front().first);
      order.pop_front();
    }
    REQUIRE(w.size() == ref.size());
  }
  // ~48 bytes an entry, not ~100.
  CHECK(w.memory_bytes() < w.size() * 80 + (1u << 20));
}

}  // namespace
}  // namespace civicbus::transport
