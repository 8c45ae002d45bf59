// IpAllowlist: allow and deny rules over CIDR blocks (IPv4 and IPv6), decided by the longest
// matching prefix. Owns its parsed rules; does no I/O. Immutable after create(), so one
// instance may be shared by any number of request threads.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "civicbus/core/status.hpp"
#include "civicbus/gateway/options.hpp"

namespace civicbus::gateway {

// An IPv4 or IPv6 address. IPv4 addresses are held as IPv4-mapped IPv6 (::ffff:a.b.c.d), so
// "10.0.0.1" and "::ffff:10.0.0.1" are the same address and match the same rules.
struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};
  bool is_v4() const;  // true for IPv4 and IPv4-mapped IPv6
  std::string to_string() const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// Strict parse: dotted-quad IPv4 (four decimal parts 0-255, no leading zeros, which some
// parsers read as octal) or RFC 4291 IPv6 text. Zone ids ("fe80::1%eth0") are refused.
Result<IpAddress> parse_ip_address(std::string_view text);

// A CIDR block; `prefix_length` counts bits of the 128-bit (mapped) form.
struct IpNetwork {
  IpAddress base;  // host bits cleared
  int prefix_length = 128;
  bool contains(const IpAddress& address) const;
  // "10.0.0.0/8", "2001:db8::/32".
  std::string to_string() const;
};

// "10.0.0.0/8", "10.1.2.3" (= /32), "2001:db8::/32", "::1" (= /128). Host bits below the
// prefix are cleared ("10.1.2.3/8" is 10.0.0.0/8), as Kong and Go's netip do.
Result<IpNetwork> parse_ip_network(std::string_view text);

enum class IpVerdict { kAllowed, kDenied };

struct IpDecision {
  IpVerdict verdict = IpVerdict::kAllowed;
  // The rule that decided ("deny 10.0.0.0/8"), or why none did ("no allow rule matches").
  std::string reason;
  bool allowed() const { return verdict == IpVerdict::kAllowed; }
};

class IpAllowlist {
 public:
  // Parses every entry; the first bad one fails the whole call with kInvalidArgument naming
  // the list, its index and its text.
  static Result<IpAllowlist> create(const IpAllowlistOptions& options);

  // The longest prefix among all allow and deny rules that contains the address decides; at
  // equal length deny wins. No rule matches: denied when there is at least one allow rule,
  // allowed otherwise (a pure deny list).
  IpDecision check(const IpAddress& address) const;
  // Parses then checks; an unparsable address is denied (reason names the text).
  IpDecision check(std::string_view address) const;

  bool empty() const { return rules_.empty(); }

 private:
  struct Rule {
    IpNetwork network;
    bool deny;
  };
  std::vector<Rule> rules_;  // longest prefix first; deny before allow at equal length
  bool has_allow_ = false;
};

}  // namespace civicbus::gateway
