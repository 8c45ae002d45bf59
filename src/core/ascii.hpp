// ASCII case folding for protocol text (header names, schemes, media types, host names,
// configuration keywords): only A-Z change, whatever the C locale says.
#pragma once

#include <string>
#include <string_view>

namespace civicbus {

inline std::string ascii_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace civicbus
