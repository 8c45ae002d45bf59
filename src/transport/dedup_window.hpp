// DedupWindow: the idempotency memory of the log. Remembers source+id of stored events for a
// time window and up to a number of entries, whichever is smaller; the oldest go first.
// Keys are 128-bit hashes of source and id (two independent 64-bit hashes), so memory stays
// at ~40 bytes an entry; a false duplicate needs a 128-bit collision. Not thread-safe: the
// log's writer thread owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string_view>
#include <unordered_map>

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
  std::optional<std::int64_t> find(const Key& key) const {
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }
  void insert(std::string_view source, std::string_view id, std::int64_t offset,
              std::int64_t stored_at_us) {
    insert_key(make_key(source, id), offset, stored_at_us);
  }
  void insert_key(const Key& key, std::int64_t offset, std::int64_t stored_at_us);
  void erase_key(const Key& key) { map_.erase(key); }
  // Forgets entries older than the window (relative to now_us) and beyond max_entries.
  void expire(std::int64_t now_us);
  std::size_t size() const { return map_.size(); }

 private:
  struct KeyHash {
    std::size_t operator()(const Key& k) const { return static_cast<std::size_t>(k.lo); }
  };
  struct Entry {
    Key key;
    std::int64_t stored_at_us;
    std::int64_t offset;
  };

  std::int64_t window_us_;
  std::size_t max_entries_;
  std::unordered_map<Key, std::int64_t, KeyHash> map_;
  std::deque<Entry> order_;  // insertion order = time order
};

}  // namespace civicbus::transport
