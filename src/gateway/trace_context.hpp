// W3C Trace Context (traceparent) and request ids as the gateway propagates them: the
// gateway is one hop of the trace, so it keeps the caller's trace id and sampled flag and
// forwards its own span id as the parent.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "civicbus/core/random.hpp"

namespace civicbus::gateway {

// Held as the one value it is forwarded as, "00-<trace>-<parent>-<flags>": one string per
// request instead of three, and nothing to join when it is forwarded.
struct TraceParent {
  // "00-" trace id "-" parent id "-" flags, always version 00 and 55 characters: kept in
  // place rather than in a string, which would allocate for every request.
  std::array<char, 55> text{};

  std::string_view to_string() const { return std::string_view(text.data(), text.size()); }
  std::string_view trace_id() const { return to_string().substr(3, 32); }
  std::string_view parent_id() const { return to_string().substr(36, 16); }
  std::string_view flags() const { return to_string().substr(53, 2); }
};

// Parses a traceparent value (version 00, or a later version's first four fields as the
// spec asks). nullopt for anything malformed: the gateway then starts a new trace.
std::optional<TraceParent> parse_traceparent(std::string_view value);

// The traceparent to forward: the incoming one with a new parent id (this hop's span), or a
// new trace (sampled flag 01) when there was none or it was malformed.
TraceParent next_traceparent(const std::optional<TraceParent>& incoming, RandomSource& random);

// A client's X-Request-Id is kept when it is 1..128 visible ASCII characters without quotes
// or backslashes (it goes into logs and headers unchanged); else the gateway makes one.
bool acceptable_request_id(std::string_view id);

}  // namespace civicbus::gateway
