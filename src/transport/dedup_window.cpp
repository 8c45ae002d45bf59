#include "transport/dedup_window.hpp"

#include <cstring>
#include <utility>

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

// Both 64-bit halves of the key in one pass over the bytes: two lanes with different seeds
// and multipliers, so their collisions are independent for practical purposes.
struct Lanes {
  std::uint64_t a;
  std::uint64_t b;
  void absorb_word(std::uint64_t w) {
    a = mix(a ^ w) + 0x9e3779b97f4a7c15ULL;
    b = mix(b ^ (w * 0xc2b2ae3d27d4eb4fULL)) + 0x165667b19e3779f9ULL;
  }
  void absorb(std::string_view s) {
    std::size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
      std::uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      absorb_word(w);
    }
    std::uint64_t tail = 0;
    std::memcpy(&tail, s.data() + i, s.size() - i);
    absorb_word(tail ^ (static_cast<std::uint64_t>(s.size() - i) << 56));
  }
};

}  // namespace

DedupWindow::Key DedupWindow::make_key(std::string_view source, std::string_view id) {
  const std::uint64_t lengths = (source.size() * 0x9e3779b97f4a7c15ULL) ^ (id.size() << 32);
  Lanes h{mix(0x243f6a8885a308d3ULL ^ lengths), mix(0x13198a2e03707344ULL ^ lengths)};
  h.absorb(source);
  h.absorb_word(0xff);  // separator so ("ab","c") and ("a","bc") differ
  h.absorb(id);
  return Key{mix(h.a), mix(h.b)};
}

DedupWindow::Entry* DedupWindow::entry_of(std::uint64_t slot_value) {
  return const_cast<Entry*>(std::as_const(*this).entry_of(slot_value));
}

const DedupWindow::Entry* DedupWindow::entry_of(std::uint64_t slot_value) const {
  // The low half holds the entry's sequence number modulo 2^32; the ring never holds 2^32
  // entries, so the distance from the head tells whether it is still in the ring.
  const auto distance = static_cast<std::uint32_t>(static_cast<std::uint32_t>(slot_value) -
                                                   static_cast<std::uint32_t>(head_seq_));
  if (distance >= ring_.size()) return nullptr;  // expired
  const Entry& e = ring_[distance];
  return e.offset == kDead ? nullptr : &e;
}

std::uint64_t DedupWindow::slot_value(const Key& key, std::uint64_t seq) {
  // Never 0 (the empty slot): the fingerprint's lowest bit is set.
  return ((key.hi | 1) << 32) | static_cast<std::uint32_t>(seq);
}

std::size_t DedupWindow::find_slot(const Key& key) const {
  if (table_.empty()) return npos;
  const std::size_t mask = table_.size() - 1;
  const std::uint64_t fingerprint = (key.hi | 1) & 0xffffffffULL;
  for (std::size_t i = static_cast<std::size_t>(key.lo) & mask;; i = (i + 1) & mask) {
    const std::uint64_t v = table_[i];
    if (v == 0) return npos;
    // Only a slot with the key's fingerprint is worth the trip to the ring (a cache miss).
    if ((v >> 32) != fingerprint) continue;
    const Entry* e = entry_of(v);
    if (e != nullptr && e->key == key) return i;
  }
}

std::optional<std::int64_t> DedupWindow::find(const Key& key) const {
  const std::size_t slot = find_slot(key);
  if (slot == npos) return std::nullopt;
  return entry_of(table_[slot])->offset;
}

void DedupWindow::insert_key(const Key& key, std::int64_t offset, std::int64_t stored_at_us) {
  const std::uint64_t seq = head_seq_ + ring_.size();
  ring_.push_back(Entry{key, stored_at_us, offset});
  if (const std::size_t slot = find_slot(key); slot != npos) {
    entry_of(table_[slot])->offset = kDead;  // superseded; the slot moves to the new entry
    table_[slot] = slot_value(key, seq);
    return;
  }
  ++live_;
  // Keep the table at most 3/4 full, tombstones included, so probes stay short. A rehash
  // places every live entry of the ring, the new one included.
  if ((used_slots_ + 1) * 4 > table_.size() * 3) {
    rehash(live_);
    return;
  }
  const std::size_t mask = table_.size() - 1;
  for (std::size_t i = static_cast<std::size_t>(key.lo) & mask;; i = (i + 1) & mask) {
    const std::uint64_t v = table_[i];
    if (v == 0) ++used_slots_;
    // Empty, or pointing before the ring's head (expired): take it. Checking that needs no
    // trip to the ring; dead entries' slots are left for the next rehash to sweep.
    if (v == 0 ||
        static_cast<std::uint32_t>(static_cast<std::uint32_t>(v) -
                                   static_cast<std::uint32_t>(head_seq_)) >= ring_.size()) {
      table_[i] = slot_value(key, seq);
      return;
    }
  }
}

void DedupWindow::erase_key(const Key& key) {
  const std::size_t slot = find_slot(key);
  if (slot == npos) return;
  entry_of(table_[slot])->offset = kDead;  // the slot is now a tombstone
  --live_;
}

void DedupWindow::rehash(std::size_t min_live) {
  std::size_t capacity = 1024;
  while (capacity < min_live * 2) capacity *= 2;
  table_.assign(capacity, 0);
  used_slots_ = 0;
  const std::size_t mask = capacity - 1;
  for (std::size_t r = 0; r < ring_.size(); ++r) {
    const Entry& e = ring_[r];
    if (e.offset == kDead) continue;
    std::size_t i = static_cast<std::size_t>(e.key.lo) & mask;
    while (table_[i] != 0) i = (i + 1) & mask;
    table_[i] = slot_value(e.key, head_seq_ + r);
    ++used_slots_;
  }
}

void DedupWindow::expire(std::int64_t now_us) {
  const std::int64_t cutoff = now_us - window_us_;
  while (!ring_.empty() && (ring_.front().stored_at_us < cutoff || live_ > max_entries_)) {
    if (ring_.front().offset != kDead) --live_;
    ring_.pop_front();
    ++head_seq_;
  }
  // Dead entries at the front hold no key; drop them so the ring does not grow with them.
  while (!ring_.empty() && ring_.front().offset == kDead) {
    ring_.pop_front();
    ++head_seq_;
  }
}

std::size_t DedupWindow::memory_bytes() const {
  return ring_.size() * sizeof(Entry) + table_.capacity() * sizeof(std::uint64_t);
}

}  // namespace civicbus::transport
