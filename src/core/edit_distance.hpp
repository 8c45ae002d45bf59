// Edit distance for "did you mean" hints (the YAML loader, the command line).
#pragma once

#include <cstddef>
#include <string_view>

namespace civicbus::detail {

// Optimal string alignment distance: edits plus transpositions of neighbours ("tpye").
std::size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace civicbus::detail
