#include "gateway/ip_allowlist.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace civicbus::gateway {
namespace {

constexpr std::array<std::uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// Parses a decimal number with no sign, no leading zeros ("0" itself is fine), up to `max`.
bool parse_small_decimal(std::string_view text, int max, int& out) {
  if (text.empty() || text.size() > 3) return false;
  if (text.size() > 1 && text[0] == '0') return false;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  if (value > max) return false;
  out = value;
  return true;
}

bool parse_ipv4(std::string_view text, std::array<std::uint8_t, 4>& out) {
  for (int i = 0; i < 4; ++i) {
    const std::size_t dot = text.find('.');
    const std::string_view part = i < 3 ? text.substr(0, dot) : text;
    if (i < 3 && dot == std::string_view::npos) return false;
    int value = 0;
    if (!parse_small_decimal(part, 255, value)) return false;
    out[i] = static_cast<std::uint8_t>(value);
    if (i < 3) text.remove_prefix(dot + 1);
  }
  return true;
}

}  // namespace

bool IpAddress::is_v4() const {
  return std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), bytes.begin());
}

std::string IpAddress::to_string() const {
  char buffer[INET6_ADDRSTRLEN] = {};
  if (is_v4()) {
    return fmt::format("{}.{}.{}.{}", bytes[12], bytes[13], bytes[14], bytes[15]);
  }
  inet_ntop(AF_INET6, bytes.data(), buffer, sizeof buffer);
  return buffer;
}

Result<IpAddress> parse_ip_address(std::string_view text) {
  IpAddress address;
  if (text.find(':') == std::string_view::npos) {
    std::array<std::uint8_t, 4> v4{};
    if (!parse_ipv4(text, v4)) {
      return invalid_argument(fmt::format(
          "'{}' is not an IPv4 address (four decimal parts 0-255, no leading zeros)", text));
    }
    std::copy(kMappedPrefix.begin(), kMappedPrefix.end(), address.bytes.begin());
    std::copy(v4.begin(), v4.end(), address.bytes.begin() + 12);
    return address;
  }
  if (text.size() >= INET6_ADDRSTRLEN || text.find('%') != std::string_view::npos) {
    return invalid_argument(
        fmt::format("'{}' is not an IPv6 address (zone ids are not accepted)", text));
  }
  // inet_pton accepts an embedded IPv4 tail with leading zeros on some libcs; check it here.
  const std::size_t last_colon = text.rfind(':');
  const std::string_view tail = text.substr(last_colon + 1);
  if (tail.find('.') != std::string_view::npos) {
    std::array<std::uint8_t, 4> v4{};
    if (!parse_ipv4(tail, v4)) {
      return invalid_argument(fmt::format("'{}' is not an IPv6 address (bad IPv4 part)", text));
    }
  }
  const std::string copy(text);
  if (inet_pton(AF_INET6, copy.c_str(), address.bytes.data()) != 1) {
    return invalid_argument(fmt::format("'{}' is not an IPv6 address", text));
  }
  return address;
}

bool IpNetwork::contains(const IpAddress& address) const {
  const int full = prefix_length / 8;
  if (std::memcmp(base.bytes.data(), address.bytes.data(), static_cast<std::size_t>(full)) != 0) {
    return false;
  }
  const int rest = prefix_length % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (base.bytes[full] & mask) == (address.bytes[full] & mask);
}

std::string IpNetwork::to_string() const {
  const int length = base.is_v4() && prefix_length >= 96 ? prefix_length - 96 : prefix_length;
  return fmt::format("{}/{}", base.to_string(), length);
}

Result<IpNetwork> parse_ip_network(std::string_view text) {
  const std::size_t slash = text.find('/');
  const std::string_view address_text = text.substr(0, slash);
  CIVICBUS_ASSIGN_OR_RETURN(IpAddress address, parse_ip_address(address_text));
  // An IPv4 rule is IPv4 text; "::ffff:10.0.0.0/104" is an IPv6 rule that happens to cover
  // mapped addresses, so its prefix counts 128 bits.
  const bool v4_text = address_text.find(':') == std::string_view::npos;
  const int max = v4_text ? 32 : 128;
  int length = max;
  if (slash != std::string_view::npos) {
    if (!parse_small_decimal(text.substr(slash + 1), max, length)) {
      return invalid_argument(
          fmt::format("'{}' has a bad prefix length (expected 0-{})", text, max));
    }
  }
  IpNetwork network;
  network.prefix_length = v4_text ? length + 96 : length;
  network.base = address;
  for (int bit = network.prefix_length; bit < 128; ++bit) {
    network.base.bytes[bit / 8] &= static_cast<std::uint8_t>(~(0x80 >> (bit % 8)));
  }
  return network;
}

Result<IpAllowlist> IpAllowlist::create(const IpAllowlistOptions& options) {
  IpAllowlist list;
  auto add = [&](const std::vector<std::string>& entries, bool deny) -> Status {
    for (std::size_t i = 0; i < entries.size(); ++i) {
      auto network = parse_ip_network(entries[i]);
      if (!network.ok()) {
        return network.status().with_context(
            fmt::format("{} entry {} ('{}')", deny ? "deny" : "allow", i, entries[i]));
      }
      list.rules_.push_back(Rule{*network, deny});
    }
    return {};
  };
  CIVICBUS_RETURN_IF_ERROR(add(options.allow, false));
  CIVICBUS_RETURN_IF_ERROR(add(options.deny, true));
  list.has_allow_ = !options.allow.empty();
  std::stable_sort(list.rules_.begin(), list.rules_.end(), [](const Rule& a, const Rule& b) {
    if (a.network.prefix_length != b.network.prefix_length) {
      return a.network.prefix_length > b.network.prefix_length;
    }
    return a.deny && !b.deny;
  });
  return list;
}

IpDecision IpAllowlist::check(const IpAddress& address) const {
  for (const Rule& rule : rules_) {
    if (rule.network.contains(address)) {
      return IpDecision{
          rule.deny ? IpVerdict::kDenied : IpVerdict::kAllowed,
          fmt::format("{} {}", rule.deny ? "deny" : "allow", rule.network.to_string())};
    }
  }
  if (has_allow_) return IpDecision{IpVerdict::kDenied, "no allow rule matches"};
  return IpDecision{IpVerdict::kAllowed, "no rule matches"};
}

IpDecision IpAllowlist::check(std::string_view address) const {
  auto parsed = parse_ip_address(address);
  if (!parsed.ok()) return IpDecision{IpVerdict::kDenied, parsed.status().message()};
  return check(*parsed);
}

}  // namespace civicbus::gateway
