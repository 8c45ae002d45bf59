// The master key's file format, beyond load_master_key() (declared in the public broker.hpp):
// parsing the text form and creating a fresh key file (`security.master_key: generate`, `civicbus
// demo`).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "civicbus/core/random.hpp"
#include "civicbus/core/status.hpp"

namespace civicbus::broker {

inline constexpr std::size_t kMasterKeyBytes = 32;

// Parses 64 hex digits or the base64 of 32 bytes, ignoring surrounding whitespace. Errors
// never quote the text (it may be a mistyped key); `source` names where it came from
// ("environment variable CIVICBUS_MASTER_KEY", "master key file /etc/civicbus/master.key").
Result<std::string> parse_master_key(std::string_view text, std::string_view source);

// Creates `file` with mode 0600 holding a fresh key as 64 hex digits and a newline. Refuses
// (kAlreadyExists) to replace an existing file: data encrypted under the old key would
// become unreadable.
Status write_new_master_key(std::string_view file, RandomSource& random);

}  // namespace civicbus::broker
