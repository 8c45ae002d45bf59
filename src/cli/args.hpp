// A small command-line parser for the civicbus binary: `--name value`, `--name=value`, flags,
// positionals and `--` to end options. Each command declares the options it takes, so a typo
// is an error with a suggestion rather than silently ignored.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace civicbus::cli {

struct OptionSpec {
  std::string_view name;  // without the leading dashes: "config"
  bool takes_value = true;
  std::string_view value_name;  // for usage text: "FILE"
  std::string_view help;
};

// A usage error: the message names what is wrong ("unknown option '--tpye' (did you mean
// '--type'?)"). Commands turn it into exit code 2.
struct UsageError {
  std::string message;
};

class Args {
 public:
  // Parses `argv` (the words after the command) against `specs`. `max_positionals` bounds
  // the words that are not options.
  static std::optional<Args> parse(std::span<const std::string> argv,
                                   std::span<const OptionSpec> specs, std::size_t max_positionals,
                                   UsageError& error);

  bool has(std::string_view name) const;
  std::optional<std::string> value(std::string_view name) const;
  std::string value_or(std::string_view name, std::string_view fallback) const;
  const std::vector<std::string>& positionals() const { return positionals_; }

 private:
  std::vector<std::pair<std::string, std::string>> options_;
  std::vector<std::string> positionals_;
};

// The closest of `candidates` to `word` when it is close enough, for "did you mean" hints.
std::optional<std::string_view> closest(std::string_view word,
                                        std::span<const std::string_view> candidates);

// Usage text of the options in `specs`, one per line.
std::string options_help(std::span<const OptionSpec> specs);

}  // namespace civicbus::cli
