#include "gateway/versioning.hpp"

#include <doctest/doctest.h>

namespace civicbus::gateway {
namespace {

using std::chrono::seconds;

SystemTime at(std::int64_t unix_seconds) {
  return SystemTime{seconds{unix_seconds}};
}

std::vector<std::string> values(const http::HttpHeaders& h, std::string_view name) {
  std::vector<std::string> out;
  for (auto v : h.get_all(name)) out.emplace_back(v);
  return out;
}

TEST_CASE("versioning: HTTP-date formats and parses RFC 9110's examples") {
  const SystemTime example = at(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
  CHECK(format_http_date(example) == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(format_http_date(example + std::chrono::milliseconds{999}) ==
        "Sun, 06 Nov 1994 08:49:37 GMT");  // rounded down
  CHECK(*parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == example);
  CHECK(*parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == example);  // obsolete RFC 850
  CHECK(*parse_http_date("Sun Nov  6 08:49:37 1994") == example);        // asctime
  CHECK(format_http_date(at(0)) == "Thu, 01 Jan 1970 00:00:00 GMT");
  CHECK(format_http_date(at(951782400)) == "Tue, 29 Feb 2000 00:00:00 GMT");
  CHECK(*parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT") == at(951782400));
  // RFC 8594's example names the wrong day (31 Dec 2018 was a Monday): the name is only syntax.
  CHECK(format_http_date(*parse_http_date("Sat, 31 Dec 2018 23:59:59 GMT")) ==
        "Mon, 31 Dec 2018 23:59:59 GMT");
  // A round trip through a range of times.
  for (std::int64_t t = -86400LL * 365 * 20; t < 86400LL * 365 * 80; t += 86400LL * 37 + 3671) {
    CAPTURE(t);
    CHECK(*parse_http_date(format_http_date(at(t))) == at(t));
  }
  CHECK(*parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT") == at(0));
  CHECK(*parse_http_date("Monday, 01-Jan-24 00:00:00 GMT") == at(1704067200));
}

TEST_CASE("versioning: malformed HTTP-dates are refused") {
  for (std::string_view bad :
       {"", "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 1994 08:49:37 UTC",
        "sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT", "Sun,  06 Nov 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT", "Sunday, 06 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sat, 29 Feb 9020 23:59:60 GMT", "Mon, 01 Jan 1600 00:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT", "Sun, 06 Nov 1994 08:49:37 GMT ",
        "Sun Nov 6 08:49:37 1994", "Sun, 06-Nov-94 08:49:37 GMT", "1994-11-06T08:49:37Z"}) {
    CAPTURE(bad);
    CHECK(parse_http_date(bad).status().code() == ErrorCode::kInvalidArgument);
  }
}

TEST_CASE("versioning: Deprecation is an RFC 9745 structured date") {
  CHECK(format_structured_date(at(1688169599)) == "@1688169599");  // RFC 9745's example
  CHECK(format_structured_date(at(1688169599) + std::chrono::milliseconds{500}) == "@1688169599");
  CHECK(format_structured_date(at(0)) == "@0");
}

TEST_CASE("versioning: options are validated at create") {
  ManualClock clock;
  CHECK(ApiVersionPolicy::create(clock, {}).status().code() == ErrorCode::kInvalidArgument);
  ApiVersionOptions backwards{"v1", at(2000), at(1000), "", ""};
  CHECK(ApiVersionPolicy::create(clock, backwards).status().code() == ErrorCode::kInvalidArgument);
  ApiVersionOptions bad_link{"v1", at(1000), at(2000), "https://x/v2>; rel=evil", ""};
  CHECK_FALSE(ApiVersionPolicy::create(clock, bad_link).ok());
  ApiVersionOptions bad_doc{"v1", at(1000), at(2000), "", "https://x/a doc"};
  CHECK_FALSE(ApiVersionPolicy::create(clock, bad_doc).ok());
  ApiVersionOptions same_instant{"v1", at(1000), at(1000), "", ""};
  CHECK(ApiVersionPolicy::create(clock, same_instant).ok());
}

struct Lifecycle {
  // Deprecated on 2027-01-01, sunset on 2027-07-01.
  static constexpr std::int64_t kDeprecated = 1798761600;
  static constexpr std::int64_t kSunset = 1814400000;
  ManualClock clock{at(kDeprecated - 86400)};
  ApiVersionPolicy policy = [this] {
    auto p = ApiVersionPolicy::create(
        clock, ApiVersionOptions{"v1", at(kDeprecated), at(kSunset), "https://api.example.ca/v2/",
                                 "https://developer.example.ca/deprecations/v1"});
    REQUIRE_MESSAGE(p.ok(), p.status().to_string());
    return std::move(p).value();
  }();
};

void check_lifecycle_headers(const http::HttpHeaders& h) {
  CHECK(values(h, "Deprecation") == std::vector<std::string>{"@1798761600"});
  CHECK(values(h, "Sunset") == std::vector<std::string>{"Thu, 01 Jul 2027 00:00:00 GMT"});
  CHECK(values(h, "Link") ==
        std::vector<std::string>{
            "<https://api.example.ca/v2/>; rel=\"successor-version\"",
            "<https://developer.example.ca/deprecations/v1>; rel=\"deprecation\"; "
            "type=\"text/html\""});
}

TEST_CASE_FIXTURE(Lifecycle, "versioning: before deprecation the version is active and announced") {
  const auto d = policy.decide();
  CHECK(d.phase == VersionPhase::kActive);
  CHECK_FALSE(d.gone.has_value());
  check_lifecycle_headers(d.headers);  // future dates announce the schedule
  CHECK(format_http_date(at(kDeprecated)) == "Fri, 01 Jan 2027 00:00:00 GMT");
}

TEST_CASE_FIXTURE(Lifecycle,
                  "versioning: between deprecation and sunset the version is deprecated") {
  clock.set(at(kDeprecated));  // the deprecation instant itself
  CHECK(policy.decide().phase == VersionPhase::kDeprecated);
  clock.advance(std::chrono::hours{24 * 90});
  const auto d = policy.decide();
  CHECK(d.phase == VersionPhase::kDeprecated);
  CHECK_FALSE(d.gone.has_value());
  check_lifecycle_headers(d.headers);
  clock.set(at(kSunset) - std::chrono::microseconds{1});
  CHECK(policy.decide().phase == VersionPhase::kDeprecated);
}

TEST_CASE_FIXTURE(Lifecycle, "versioning: from the sunset on the gateway answers 410 Gone") {
  clock.set(at(kSunset));
  const auto d = policy.decide();
  CHECK(d.phase == VersionPhase::kSunset);
  REQUIRE(d.gone.has_value());
  CHECK(d.gone->status == 410);
  CHECK(d.gone->body ==
        "API version v1 was retired on Thu, 01 Jul 2027 00:00:00 GMT. Use "
        "https://api.example.ca/v2/ instead. See https://developer.example.ca/deprecations/v1.\n");
  check_lifecycle_headers(d.gone->headers);
  CHECK(d.gone->headers.get("Content-Type").has_value());
  clock.advance(std::chrono::hours{24 * 365});
  CHECK(policy.decide().phase == VersionPhase::kSunset);
}

TEST_CASE("versioning: a version without dates is active and adds nothing but its links") {
  ManualClock clock;
  auto plain = ApiVersionPolicy::create(clock, ApiVersionOptions{"v2", {}, {}, "", ""});
  REQUIRE(plain.ok());
  const auto d = plain->decide();
  CHECK(d.phase == VersionPhase::kActive);
  CHECK(d.headers.empty());

  // Sunset without a deprecation date: active until the sunset, then gone (no successor named).
  auto sunset_only = ApiVersionPolicy::create(
      clock, ApiVersionOptions{"beta", {}, clock.now() + seconds{60}, "", ""});
  REQUIRE(sunset_only.ok());
  CHECK(sunset_only->decide().phase == VersionPhase::kActive);
  CHECK_FALSE(sunset_only->decide().headers.contains("Deprecation"));
  clock.advance(seconds{60});
  const auto gone = sunset_only->decide();
  REQUIRE(gone.gone.has_value());
  CHECK(gone.gone->body.find("API version beta was retired on") == 0);
  CHECK(gone.gone->body.find("Use") == std::string::npos);
}

}  // namespace
}  // namespace civicbus::gateway
