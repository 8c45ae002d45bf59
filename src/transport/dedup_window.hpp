// DedupWindow: the idempotency memory of the log. Remembers source+id of stored events for a
// time window and up to a number of entries, whichever is smaller; the oldest go first.
//
// Keys are 128-bit hashes of source and id (two independent 64-bit hashes); a false
// duplicate needs a 128-bit collision. Memory is what bounds the broker's footprint with
// millions of events in the window, so the layout is flat: entries live in insertion (= time)
// order in a ring of 32-byte records, and an open-addressing table of 8-byte slots maps a key
// to its entry's sequence number. Expiring from the front only advances the ring's head:
// table slots that point before the head are stale and are swept by the next rehash. That
// comes to about 48 bytes an entry, against ~100 for a node-based map plus an order queue.
//
// Not thread-safe: the log's writer thread owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string_view>
#include <vector>

namespace civicbus::transport {

class DedupWindow {
 public:
  struct Key {
    std::uint64_t hi;
    std::uint64_t lo;
    friend bool operator==(const Key& a, const Key& b) { return a.hi == b.hi && a.lo == b.lo; }
  };

  DedupWindow(std::chrono::microseconds window, std::size_t max_entries)
      : window_us_(window.count()), max_entries_(max_entries) {}

  static Key make_key(std::string_view source, std::string_view id);

  // The offset stored for the key, if it is inside the window.
  std::optional<std::int64_t> find(const Key& key) const;
  void insert(std::string_view source, std::string_view id, std::int64_t offset,
              std::int64_t stored_at_us) {
    insert_key(make_key(source, id), offset, stored_at_us);
  }
  // Remembers `key` (a key already present now maps to the new offset).
  void insert_key(const Key& key, std::int64_t offset, std::int64_t stored_at_us);
  // Forgets `key` (used when the commit that inserted it failed).
  void erase_key(const Key& key);
  // Forgets entries older than the window (relative to now_us) and beyond max_entries.
  void expire(std::int64_t now_us);
  // Keys currently remembered.
  std::size_t size() const { return live_; }
  // Bytes held by the ring and the table (for metrics and the memory budget).
  std::size_t memory_bytes() const;

 private:
  static constexpr std::int64_t kDead = -1;  // offset of an erased or superseded entry
  struct Entry {
    Key key;
    std::int64_t stored_at_us;
    std::int64_t offset;  // kDead once erased or superseded
  };

  // The table slot holding `key`'s live entry, or npos.
  std::size_t find_slot(const Key& key) const;
  void rehash(std::size_t min_live);
  static std::uint64_t slot_value(const Key& key, std::uint64_t seq);
  Entry* entry_of(std::uint64_t slot_value);
  const Entry* entry_of(std::uint64_t slot_value) const;

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  std::int64_t window_us_;
  std::size_t max_entries_;
  std::deque<Entry> ring_;  // ring_[i] has sequence number head_seq_ + i
  std::uint64_t head_seq_ = 0;
  // Each slot is 0 (empty) or a 32-bit fingerprint of the key (high half) and the entry's
  // sequence number modulo 2^32 (low half); lookups compare fingerprints before touching the
  // ring. A slot whose entry is before the head or dead is a tombstone: lookups probe past it.
  std::vector<std::uint64_t> table_;
  std::size_t used_slots_ = 0;  // non-empty slots, tombstones included
  std::size_t live_ = 0;
};

}  // namespace civicbus::transport
