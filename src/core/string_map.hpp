// StringMap: an unordered_map keyed by std::string that is searched with a std::string_view
// (or a std::string, or a literal) without building a key string for the lookup.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace civicbus::detail {

// Hashes std::string and std::string_view alike (heterogeneous lookup).
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

}  // namespace civicbus::detail
