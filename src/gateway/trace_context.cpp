#include "gateway/trace_context.hpp"

#include <algorithm>

#include "civicbus/core/crypto.hpp"

namespace civicbus::gateway {

namespace {

bool lower_hex(std::string_view s, std::size_t n) {
  return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool all_zero(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}

// `bytes` (8 or 16) random bytes in lowercase hex, not all zero (W3C Trace Context forbids an
// all-zero id). On every proxied request: the bytes are drawn into a buffer, not a string.
std::string random_hex(RandomSource& random, std::size_t bytes) {
  char raw[16];
  bytes = std::min(bytes, sizeof raw);
  std::string out;
  do {
    random.fill(raw, bytes);
    out = crypto::to_hex(std::string_view(raw, bytes));
  } while (all_zero(out));
  return out;
}

}  // namespace

std::string TraceParent::to_string() const {
  std::string out;
  out.reserve(5 + trace_id.size() + parent_id.size() + flags.size());
  out.append("00-").append(trace_id).append("-").append(parent_id).append("-").append(flags);
  return out;
}

std::optional<TraceParent> parse_traceparent(std::string_view v) {
  // version "-" trace-id "-" parent-id "-" flags; a future version may append "-..." fields.
  if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
  const std::string_view version = v.substr(0, 2);
  if (!lower_hex(version, 2) || version == "ff") return std::nullopt;
  if (version == "00" && v.size() != 55) return std::nullopt;
  if (v.size() > 55 && v[55] != '-') return std::nullopt;
  TraceParent out{std::string(v.substr(3, 32)), std::string(v.substr(36, 16)),
                  std::string(v.substr(53, 2))};
  if (!lower_hex(out.trace_id, 32) || all_zero(out.trace_id)) return std::nullopt;
  if (!lower_hex(out.parent_id, 16) || all_zero(out.parent_id)) return std::nullopt;
  if (!lower_hex(out.flags, 2)) return std::nullopt;
  if (version != "00") {
    // Only the sampled bit is known; other flags of an unknown version are not passed on.
    const int bits = std::stoi(out.flags, nullptr, 16) & 1;
    out.flags = bits ? "01" : "00";
  }
  return out;
}

TraceParent next_traceparent(const std::optional<TraceParent>& incoming, RandomSource& random) {
  if (incoming) return TraceParent{incoming->trace_id, random_hex(random, 8), incoming->flags};
  return TraceParent{random_hex(random, 16), random_hex(random, 8), "01"};
}

bool acceptable_request_id(std::string_view id) {
  return !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
    return c > 0x20 && c < 0x7f && c != '"' && c != '\\';
  });
}

}  // namespace civicbus::gateway
