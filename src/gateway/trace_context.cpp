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
// all-zero id), written over out[0, 2 * bytes).
void put_random_hex(RandomSource& random, std::size_t bytes, char* out) {
  char raw[16];
  bytes = std::min(bytes, sizeof raw);
  bool zero = true;
  while (zero) {
    random.fill(raw, bytes);
    zero = std::all_of(raw, raw + bytes, [](char b) { return b == 0; });
  }
  crypto::to_hex(std::string_view(raw, bytes), out);
}

}  // namespace

std::optional<TraceParent> parse_traceparent(std::string_view v) {
  // version "-" trace-id "-" parent-id "-" flags; a future version may append "-..." fields.
  if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
  const std::string_view version = v.substr(0, 2);
  if (!lower_hex(version, 2) || version == "ff") return std::nullopt;
  if (version == "00" && v.size() != 55) return std::nullopt;
  if (v.size() > 55 && v[55] != '-') return std::nullopt;
  const std::string_view trace_id = v.substr(3, 32);
  const std::string_view parent_id = v.substr(36, 16);
  std::string_view flags = v.substr(53, 2);
  if (!lower_hex(trace_id, 32) || all_zero(trace_id)) return std::nullopt;
  if (!lower_hex(parent_id, 16) || all_zero(parent_id)) return std::nullopt;
  if (!lower_hex(flags, 2)) return std::nullopt;
  if (version != "00") {
    // Only the sampled bit is known; other flags of an unknown version are not passed on.
    const char low = flags[1];
    const int digit = low <= '9' ? low - '0' : low - 'a' + 10;
    flags = (digit & 1) != 0 ? "01" : "00";
  }
  TraceParent out;
  char* p = out.text.data();
  auto put = [&p](std::string_view s) { p = std::copy(s.begin(), s.end(), p); };
  put("00-");
  put(trace_id);
  put("-");
  put(parent_id);
  put("-");
  put(flags);
  return out;
}

TraceParent next_traceparent(const std::optional<TraceParent>& incoming, RandomSource& random) {
  TraceParent out;
  if (incoming) {
    out = *incoming;  // the trace and its flags kept; this hop's span id below
  } else {
    static constexpr std::string_view kNew =
        "00-00000000000000000000000000000000-0000000000000000-01";
    std::copy(kNew.begin(), kNew.end(), out.text.begin());
    put_random_hex(random, 16, out.text.data() + 3);
  }
  put_random_hex(random, 8, out.text.data() + 36);
  return out;
}

bool acceptable_request_id(std::string_view id) {
  return !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
    return c > 0x20 && c < 0x7f && c != '"' && c != '\\';
  });
}

}  // namespace civicbus::gateway
