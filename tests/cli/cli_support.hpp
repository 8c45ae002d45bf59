// What the `civicbus` command tests share: the binary's path and running it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "support/test_support.hpp"

namespace civicbus::cli_testing {

inline const std::string kCli = CIVICBUS_CLI_PATH;

// Runs `civicbus ARGS...` with `stdin_text` on its standard input.
inline testing::RunResult cli(std::vector<std::string> args, const std::string& stdin_text = {}) {
  args.insert(args.begin(), kCli);
  return testing::run_command(args, stdin_text);
}

inline bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

}  // namespace civicbus::cli_testing
