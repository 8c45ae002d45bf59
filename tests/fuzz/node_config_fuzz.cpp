// Fuzz target: the node's YAML configuration loader (NodeOptions::from_yaml) and the duration
// and size syntax it shares with the command line (parse_duration, parse_size).
//
// The input is the text of a node.yaml. Loading must not crash or let a yaml-cpp exception
// escape, whatever the text; options that load must pass NodeOptions::validate(), and the
// durations and sizes in them must survive format_* then parse_*. The whole input is also
// read as one duration and as one size, which must round-trip the same way when they parse.
//
// Schema files named in the input are only looked up (stat), never read or written.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "civicbus/node/node.hpp"

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "node_config fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

void check_duration(std::chrono::milliseconds d) {
  const std::string text = civicbus::format_duration(d);
  civicbus::Result<std::chrono::milliseconds> back = civicbus::parse_duration(text);
  if (!back.ok()) fail("format_duration wrote a duration parse_duration refuses", text);
  if (*back != d) fail("a duration changed on a round trip", text);
}

void check_size(std::int64_t bytes) {
  const std::string text = civicbus::format_size(bytes);
  civicbus::Result<std::int64_t> back = civicbus::parse_size(text);
  if (!back.ok()) fail("format_size wrote a size parse_size refuses", text);
  if (*back != bytes) fail("a size changed on a round trip", text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  civicbus::Result<civicbus::NodeOptions> options =
      civicbus::NodeOptions::from_yaml(text, "fuzz.yaml");
  if (!options.ok()) {
    if (options.status().message().empty()) fail("load error without a message");
  } else {
    if (!options->validate().ok())
      fail("loaded options do not validate", options->validate().message());
    check_duration(options->log.append_block_timeout);
    check_duration(options->broker.maintenance_interval);
    for (const civicbus::broker::TopicOptions& topic : options->topics) {
      check_duration(topic.retention);
      check_size(topic.retention_bytes);
    }
    check_size(static_cast<std::int64_t>(options->broker.max_event_bytes));
  }

  if (size <= 64) {
    if (civicbus::Result<std::chrono::milliseconds> d = civicbus::parse_duration(text); d.ok()) {
      check_duration(*d);
    }
    if (civicbus::Result<std::int64_t> s = civicbus::parse_size(text); s.ok()) check_size(*s);
  }
  return 0;
}
