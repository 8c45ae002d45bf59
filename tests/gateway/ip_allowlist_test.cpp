#include "gateway/ip_allowlist.hpp"

#include <doctest/doctest.h>

namespace civicbus::gateway {
namespace {

IpAllowlist make(std::vector<std::string> allow, std::vector<std::string> deny = {}) {
  auto list = IpAllowlist::create(IpAllowlistOptions{std::move(allow), std::move(deny)});
  REQUIRE_MESSAGE(list.ok(), list.status().to_string());
  return std::move(list).value();
}

bool allowed(const IpAllowlist& list, std::string_view ip) {
  return list.check(ip).allowed();
}

TEST_CASE("ip_allowlist: addresses parse strictly") {
  CHECK(parse_ip_address("10.0.0.1").ok());
  CHECK(parse_ip_address("0.0.0.0").ok());
  CHECK(parse_ip_address("255.255.255.255").ok());
  CHECK(parse_ip_address("::").ok());
  CHECK(parse_ip_address("2001:db8::1").ok());
  CHECK(parse_ip_address("::ffff:10.0.0.1").ok());
  for (std::string_view bad :
       {"", "10.0.0", "10.0.0.1.2", "256.0.0.1", "010.0.0.1", "10.00.0.1", "1e.0.0.1", "10..0.1",
        " 10.0.0.1", "10.0.0.1 ", "-1.0.0.0", "2001:db8:::1", "fe80::1%eth0", "::ffff:010.0.0.1",
        "12345::", "1:2:3:4:5:6:7:8:9", "gggg::", "localhost"}) {
    CAPTURE(bad);
    CHECK(parse_ip_address(bad).status().code() == ErrorCode::kInvalidArgument);
  }
  CHECK(*parse_ip_address("::ffff:10.0.0.1") == *parse_ip_address("10.0.0.1"));
  CHECK(parse_ip_address("::ffff:10.0.0.1")->to_string() == "10.0.0.1");
  CHECK(parse_ip_address("2001:DB8:0:0::1")->to_string() == "2001:db8::1");
  CHECK(parse_ip_address("10.0.0.1")->is_v4());
  CHECK_FALSE(parse_ip_address("::1")->is_v4());
}

TEST_CASE("ip_allowlist: networks parse, mask host bits and reject bad prefixes") {
  CHECK(parse_ip_network("10.1.2.3/8")->to_string() == "10.0.0.0/8");
  CHECK(parse_ip_network("10.1.2.3")->to_string() == "10.1.2.3/32");
  CHECK(parse_ip_network("2001:db8::1/32")->to_string() == "2001:db8::/32");
  CHECK(parse_ip_network("::1")->to_string() == "::1/128");
  CHECK(parse_ip_network("0.0.0.0/0")->to_string() == "0.0.0.0/0");
  for (std::string_view bad : {"10.0.0.0/33", "10.0.0.0/", "10.0.0.0/08", "10.0.0.0/-1", "::/129",
                               "::/1000", "10.0.0.0/8/8", "/8", "10.0.0.0/x"}) {
    CAPTURE(bad);
    CHECK(parse_ip_network(bad).status().code() == ErrorCode::kInvalidArgument);
  }
}

TEST_CASE("ip_allowlist: a parse error names the list, index and entry") {
  auto list = IpAllowlist::create({{"10.0.0.0/8", "192.168.1.300/24"}, {}});
  REQUIRE_FALSE(list.ok());
  CHECK(list.status().code() == ErrorCode::kInvalidArgument);
  CHECK(list.status().message().find("allow entry 1 ('192.168.1.300/24')") == 0);
  auto deny = IpAllowlist::create({{}, {"::/200"}});
  REQUIRE_FALSE(deny.ok());
  CHECK(deny.status().message().find("deny entry 0 ('::/200')") == 0);
}

TEST_CASE("ip_allowlist: empty lists allow everything, an allow list denies the rest") {
  const IpAllowlist open = make({});
  CHECK(open.empty());
  CHECK(allowed(open, "203.0.113.9"));
  CHECK(allowed(open, "2001:db8::1"));
  const IpAllowlist list = make({"10.0.0.0/8", "2001:db8::/32"});
  CHECK(allowed(list, "10.255.0.1"));
  CHECK(allowed(list, "2001:db8:ffff::1"));
  CHECK_FALSE(allowed(list, "11.0.0.1"));
  CHECK_FALSE(allowed(list, "2001:db9::1"));
  CHECK(list.check("11.0.0.1").reason == "no allow rule matches");
  CHECK_FALSE(allowed(list, "not an ip"));
}

TEST_CASE("ip_allowlist: IPv4-mapped IPv6 matches IPv4 rules and vice versa") {
  const IpAllowlist list = make({"10.0.0.0/8"});
  CHECK(allowed(list, "::ffff:10.0.0.1"));
  CHECK(allowed(list, "::FFFF:10.1.2.3"));
  CHECK_FALSE(allowed(list, "::ffff:11.0.0.1"));
  CHECK_FALSE(allowed(list, "::10.0.0.1"));  // IPv4-compatible (deprecated), not mapped
  const IpAllowlist mapped = make({"::ffff:10.0.0.0/104"});
  CHECK(allowed(mapped, "10.9.9.9"));
  CHECK_FALSE(allowed(mapped, "11.9.9.9"));
}

TEST_CASE("ip_allowlist: /0, /32 and /128 edges") {
  const IpAllowlist all_v4 = make({"0.0.0.0/0"});
  CHECK(allowed(all_v4, "1.2.3.4"));
  CHECK(allowed(all_v4, "255.255.255.255"));
  CHECK_FALSE(allowed(all_v4, "2001:db8::1"));  // an IPv4 /0 covers IPv4 only
  const IpAllowlist all_v6 = make({"::/0"});
  CHECK(allowed(all_v6, "2001:db8::1"));
  CHECK(allowed(all_v6, "1.2.3.4"));  // mapped addresses are IPv6 addresses too
  const IpAllowlist host = make({"192.0.2.7/32", "2001:db8::7/128"});
  CHECK(allowed(host, "192.0.2.7"));
  CHECK_FALSE(allowed(host, "192.0.2.6"));
  CHECK_FALSE(allowed(host, "192.0.2.8"));
  CHECK(allowed(host, "2001:db8::7"));
  CHECK_FALSE(allowed(host, "2001:db8::6"));
  const IpAllowlist odd = make({"192.0.2.128/25"});
  CHECK(allowed(odd, "192.0.2.128"));
  CHECK(allowed(odd, "192.0.2.255"));
  CHECK_FALSE(allowed(odd, "192.0.2.127"));
}

TEST_CASE("ip_allowlist: longest prefix decides, deny wins a tie") {
  const IpAllowlist list = make({"10.0.0.0/8", "10.1.2.3/32"}, {"10.1.0.0/16"});
  CHECK(allowed(list, "10.2.0.1"));
  CHECK_FALSE(allowed(list, "10.1.0.1"));
  CHECK(list.check("10.1.0.1").reason == "deny 10.1.0.0/16");
  CHECK(allowed(list, "10.1.2.3"));
  CHECK(list.check("10.1.2.3").reason == "allow 10.1.2.3/32");
  const IpAllowlist tie = make({"10.0.0.0/8"}, {"10.0.0.0/8"});
  CHECK_FALSE(allowed(tie, "10.0.0.1"));
  const IpAllowlist deny_only = make({}, {"198.51.100.0/24", "2001:db8:bad::/48"});
  CHECK_FALSE(allowed(deny_only, "198.51.100.1"));
  CHECK_FALSE(allowed(deny_only, "::ffff:198.51.100.1"));
  CHECK_FALSE(allowed(deny_only, "2001:db8:bad::1"));
  CHECK(allowed(deny_only, "198.51.101.1"));
  CHECK(allowed(deny_only, "2001:db8:bae::1"));
  CHECK_FALSE(allowed(deny_only, "2001:db8:bad:1::1"));
}

}  // namespace
}  // namespace civicbus::gateway
