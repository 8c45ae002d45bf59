#include "cli/args.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

#include "core/edit_distance.hpp"

namespace civicbus::cli {

using civicbus::detail::edit_distance;

std::optional<std::string_view> closest(std::string_view word,
                                        std::span<const std::string_view> candidates) {
  std::optional<std::string_view> best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  for (std::string_view c : candidates) {
    std::size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  if (!best) return std::nullopt;
  // Short words tolerate one slip, longer ones two or three.
  std::size_t limit = best->size() <= 4 ? 1 : best->size() <= 8 ? 2 : 3;
  if (best_distance > limit) return std::nullopt;
  return best;
}

std::optional<Args> Args::parse(std::span<const std::string> argv,
                                std::span<const OptionSpec> specs, std::size_t max_positionals,
                                UsageError& error) {
  Args out;
  bool options_done = false;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& word = argv[i];
    if (options_done || word.size() < 2 || word[0] != '-' || word == "-") {
      if (out.positionals_.size() >= max_positionals) {
        error.message = max_positionals == 0 ? fmt::format("unexpected argument '{}'", word)
                                             : fmt::format("too many arguments at '{}'", word);
        return std::nullopt;
      }
      out.positionals_.push_back(word);
      continue;
    }
    if (word == "--") {
      options_done = true;
      continue;
    }
    std::string_view body = word;
    body.remove_prefix(body.starts_with("--") ? 2 : 1);
    std::optional<std::string> inline_value;
    if (auto eq = body.find('='); eq != std::string_view::npos) {
      inline_value = std::string(body.substr(eq + 1));
      body = body.substr(0, eq);
    }
    const OptionSpec* spec = nullptr;
    for (const OptionSpec& s : specs) {
      if (s.name == body) spec = &s;
    }
    if (spec == nullptr) {
      std::vector<std::string_view> names;
      for (const OptionSpec& s : specs) names.push_back(s.name);
      auto hint = closest(body, names);
      error.message = fmt::format("unknown option '--{}'{}", body,
                                  hint ? fmt::format(" (did you mean '--{}'?)", *hint) : "");
      return std::nullopt;
    }
    if (out.has(spec->name)) {
      error.message = fmt::format("option '--{}' given twice", spec->name);
      return std::nullopt;
    }
    std::string value;
    if (spec->takes_value) {
      if (inline_value) {
        value = *inline_value;
      } else if (i + 1 < argv.size()) {
        value = argv[++i];
      } else {
        error.message = fmt::format("option '--{}' needs a value ({})", spec->name,
                                    spec->value_name.empty() ? "VALUE" : spec->value_name);
        return std::nullopt;
      }
    } else if (inline_value) {
      error.message = fmt::format("option '--{}' takes no value", spec->name);
      return std::nullopt;
    }
    out.options_.emplace_back(std::string(spec->name), std::move(value));
  }
  return out;
}

bool Args::has(std::string_view name) const {
  return std::any_of(options_.begin(), options_.end(),
                     [&](const auto& o) { return o.first == name; });
}

std::optional<std::string> Args::value(std::string_view name) const {
  for (const auto& [n, v] : options_) {
    if (n == name) return v;
  }
  return std::nullopt;
}

std::string Args::value_or(std::string_view name, std::string_view fallback) const {
  auto v = value(name);
  return v ? *v : std::string(fallback);
}

std::string options_help(std::span<const OptionSpec> specs) {
  std::string out;
  std::size_t width = 0;
  std::vector<std::string> heads;
  for (const OptionSpec& s : specs) {
    std::string head = fmt::format("--{}", s.name);
    if (s.takes_value) head += fmt::format(" {}", s.value_name.empty() ? "VALUE" : s.value_name);
    width = std::max(width, head.size());
    heads.push_back(std::move(head));
  }
  for (std::size_t i = 0; i < specs.size(); ++i) {
    out += fmt::format("  {:<{}}  {}\n", heads[i], width, specs[i].help);
  }
  return out;
}

}  // namespace civicbus::cli
