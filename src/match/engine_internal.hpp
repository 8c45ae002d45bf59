// Private pieces of the match engine shared by its source files.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/match/engine.hpp"

namespace civicbus::match {

// A pair's levels are packed 4 bits per comparison into 64 bits: level 0 is "null" (a value
// missing), 1..n the configured levels, n + 1 "else".
constexpr std::size_t kMaxComparisons = 16;
constexpr std::size_t kMaxLevels = 16;  // null and else included

std::string_view field_kind_name(FieldKind kind);
std::optional<FieldKind> parse_field_kind(std::string_view name);
bool known_level_test(std::string_view test);
std::vector<LevelSpec> default_levels(FieldKind kind);
// "jaro_winkler >= 0.92", "levenshtein <= 2", "exact", or the level's own label.
std::string level_label(const LevelSpec& level);

}  // namespace civicbus::match
