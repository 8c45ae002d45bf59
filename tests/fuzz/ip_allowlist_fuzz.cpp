// Fuzz target: the gateway's IP address and CIDR parsing and the allowlist
// (src/gateway/ip_allowlist.hpp).
//
// The input is lines: each is tried as an address and as a network, and all of them together
// make an allowlist (a line starting with '!' is a deny rule, the rest allow rules). Checks:
// a parsed address prints text that parses to the same address and prints the same again; a
// parsed network has its host bits clear, contains its base and prints text that parses to
// the same network; check() never crashes and agrees with a plain longest-prefix search over
// the rules, and an address check by text agrees with the parsed one.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/ip_allowlist.hpp"

namespace {

using namespace civicbus::gateway;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "ip_allowlist fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

bool host_bits_clear(const IpNetwork& network) {
  for (int bit = network.prefix_length; bit < 128; ++bit) {
    if (network.base.bytes[bit / 8] & (0x80 >> (bit % 8))) return false;
  }
  return true;
}

void check_address(std::string_view text) {
  auto address = parse_ip_address(text);
  if (!address.ok()) return;
  const std::string printed = address->to_string();
  auto again = parse_ip_address(printed);
  if (!again.ok()) fail("printed address does not parse", std::string(text) + " -> " + printed);
  if (*again != *address)
    fail("printed address parses to another", std::string(text) + " -> " + printed);
  if (again->to_string() != printed) fail("address prints differently the second time", printed);
  if (address->is_v4() != (printed.find(':') == std::string::npos)) {
    fail("is_v4 does not match the printed form", printed);
  }
}

void check_network(std::string_view text) {
  auto network = parse_ip_network(text);
  if (!network.ok()) return;
  if (network->prefix_length < 0 || network->prefix_length > 128) fail("prefix out of range");
  if (!host_bits_clear(*network)) fail("host bits not cleared", text);
  if (!network->contains(network->base)) fail("network does not contain its base", text);
  const std::string printed = network->to_string();
  auto again = parse_ip_network(printed);
  if (!again.ok()) fail("printed network does not parse", std::string(text) + " -> " + printed);
  if (again->base != network->base || again->prefix_length != network->prefix_length) {
    fail("printed network parses to another", std::string(text) + " -> " + printed);
  }
  // The address part of a network, parsed alone, is inside it.
  auto address = parse_ip_address(text.substr(0, text.find('/')));
  if (!address.ok()) fail("network parsed but its address does not", text);
  if (!network->contains(*address)) fail("network does not contain its own address", text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> lines;
  for (std::size_t start = 0; start <= input.size();) {
    const std::size_t nl = input.find('\n', start);
    const std::size_t end = nl == std::string_view::npos ? input.size() : nl;
    lines.push_back(input.substr(start, end - start));
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  IpAllowlistOptions options;
  std::vector<std::pair<IpNetwork, bool>> rules;  // in order, deny flag
  bool all_parse = true;
  for (std::string_view line : lines) {
    check_address(line);
    check_network(line);
    const bool deny = line.starts_with('!');
    const std::string_view entry = deny ? line.substr(1) : line;
    check_address(entry);
    check_network(entry);
    (deny ? options.deny : options.allow).emplace_back(entry);
    auto network = parse_ip_network(entry);
    if (network.ok()) {
      rules.emplace_back(*network, deny);
    } else {
      all_parse = false;
    }
  }
  auto list = IpAllowlist::create(options);
  if (list.ok() != all_parse) fail("create() and parse_ip_network disagree");
  if (!list.ok()) return 0;

  for (std::string_view line : lines) {
    const std::string_view text = line.starts_with('!') ? line.substr(1) : line;
    const IpDecision by_text = list->check(text.substr(0, text.find('/')));
    auto address = parse_ip_address(text.substr(0, text.find('/')));
    if (!address.ok()) {
      if (by_text.allowed()) fail("an unparsable address is allowed", text);
      continue;
    }
    const IpDecision decision = list->check(*address);
    if (decision.verdict != by_text.verdict) fail("check by text and by address disagree", text);
    // Reference: longest matching prefix decides, deny wins a tie; no match: denied iff there
    // is an allow rule.
    int best = -1;
    bool best_deny = false;
    for (const auto& [network, deny] : rules) {
      if (!network.contains(*address)) continue;
      if (network.prefix_length > best || (network.prefix_length == best && deny)) {
        best = network.prefix_length;
        best_deny = deny;
      }
    }
    const bool expect_allowed = best >= 0 ? !best_deny : options.allow.empty();
    if (decision.allowed() != expect_allowed) fail("verdict differs from longest prefix", text);
  }
  return 0;
}
