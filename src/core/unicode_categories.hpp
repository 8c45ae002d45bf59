// Unicode General_Category data for the regular expressions of JSON Schema's "pattern"
// (\p{Letter}, \p{Nd}, ...). The table is generated; see unicode_categories.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace civicbus::detail {

// Two-letter General_Category values in the order the generated table numbers them.
inline constexpr std::string_view kGeneralCategoryNames[] = {
    "Cc", "Cf", "Cn", "Co", "Cs", "Ll", "Lm", "Lo", "Lt", "Lu", "Mc", "Me", "Mn", "Nd", "Nl",
    "No", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "Sc", "Sk", "Sm", "So", "Zl", "Zp", "Zs"};

// Runs covering U+0000..U+10FFFF: entry i is (first code point << 5) | category index, and the
// run lasts until the first code point of entry i + 1 (or U+10FFFF for the last entry).
extern const std::uint32_t kGeneralCategoryRuns[];
extern const std::size_t kGeneralCategoryRunCount;

}  // namespace civicbus::detail
