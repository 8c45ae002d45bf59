#include "transport/dedup_window.hpp"

#include <cstring>

namespace civicbus::transport {
namespace {

// 64-bit mixing as in splitmix64's finaliser; two different seeds give two hashes whose
// collisions are independent for practical purposes.
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

std::uint64_t hash_bytes(std::uint64_t seed, std::string_view a, std::string_view b) {
  std::uint64_t h = mix(seed ^ (a.size() * 0x9e3779b97f4a7c15ULL) ^ (b.size() << 32));
  auto absorb = [&h](std::string_view s) {
    std::size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
      std::uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      h = mix(h ^ w) + 0x9e3779b97f4a7c15ULL;
    }
    std::uint64_t tail = 0;
    std::memcpy(&tail, s.data() + i, s.size() - i);
    h = mix(h ^ tail ^ (static_cast<std::uint64_t>(s.size() - i) << 56));
  };
  absorb(a);
  h = mix(h ^ 0xff);  // separator so ("ab","c") and ("a","bc") differ
  absorb(b);
  return h;
}

}  // namespace

DedupWindow::Key DedupWindow::make_key(std::string_view source, std::string_view id) {
  return Key{hash_bytes(0x243f6a8885a308d3ULL, source, id), hash_bytes(0x13198a2e03707344ULL, source, id)};
}

void DedupWindow::insert_key(const Key& key, std::int64_t offset, std::int64_t stored_at_us) {
  map_[key] = offset;
  order_.push_back(Entry{key, stored_at_us, offset});
}

void DedupWindow::expire(std::int64_t now_us) {
  const std::int64_t cutoff = now_us - window_us_;
  while (!order_.empty() && (order_.front().stored_at_us < cutoff || order_.size() > max_entries_)) {
    const Entry& e = order_.front();
    auto it = map_.find(e.key);
    // Only forget the key if the map still points at this entry (not a re-insert).
    if (it != map_.end() && it->second == e.offset) map_.erase(it);
    order_.pop_front();
  }
}

}  // namespace civicbus::transport
