// ApiVersionPolicy: the lifecycle headers of one API version — Deprecation (RFC 9745), Sunset
// (RFC 8594) and Link rel="successor-version" / rel="deprecation" — and, once the sunset date
// has passed, the 410 Gone the gateway answers instead of forwarding. Pure: reads time only
// from the injected Clock (which must outlive the policy); immutable after create(), so any
// number of threads may share one policy.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "civicbus/core/clock.hpp"
#include "civicbus/core/status.hpp"
#include "civicbus/gateway/options.hpp"
#include "civicbus/http/message.hpp"

namespace civicbus::gateway {

// HTTP-dates: civicbus::format_http_date and parse_http_date (civicbus/core/clock.hpp).
using civicbus::format_http_date;
using civicbus::parse_http_date;
// An RFC 9651 structured-field Date as RFC 9745 uses it: "@1688169599" (seconds, rounded down).
std::string format_structured_date(SystemTime t);

enum class VersionPhase {
  kActive,      // before deprecated_at (or none set)
  kDeprecated,  // from deprecated_at until sunset_at
  kSunset,      // from sunset_at on: answer `gone`
};

struct VersionDecision {
  VersionPhase phase = VersionPhase::kActive;
  // To add to the response in every phase: dates in the future announce what is coming.
  http::HttpHeaders headers;
  // Set in kSunset only: the 410 to answer instead of forwarding (already carries `headers`).
  std::optional<http::HttpResponse> gone;
};

class ApiVersionPolicy {
 public:
  static Result<ApiVersionPolicy> create(const Clock& clock, ApiVersionOptions options);

  // The decision at clock.now().
  VersionDecision decide() const { return decide_at(clock_->now()); }
  VersionDecision decide_at(SystemTime now) const;

  const ApiVersionOptions& options() const { return options_; }

 private:
  ApiVersionPolicy(const Clock& clock, ApiVersionOptions options)
      : clock_(&clock), options_(std::move(options)) {}

  const Clock* clock_;  // not owned
  ApiVersionOptions options_;
};

}  // namespace civicbus::gateway
