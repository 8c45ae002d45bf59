// Fuzz target: the structured header fields the gateway reads, apart from the HTTP framing
// itself: HTTP-dates (RFC 9110 §5.6.7, core/clock.hpp) and RFC 9421 signature fields
// (src/gateway/http_signature.hpp).
//
// The input is up to three lines. Checks: a parsed HTTP-date formats to an IMF-fixdate that
// parses back to the same second; parsed signature params serialize canonically (serializing
// what that text parses to gives the same text); and verifying a request that carries the
// lines as Signature-Input, Signature and Content-Digest never crashes and never succeeds
// (the key is a fixed secret the input cannot know).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "civicbus/core/clock.hpp"
#include "civicbus/http/message.hpp"
#include "gateway/http_signature.hpp"

namespace {

using namespace civicbus;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "http_fields fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

std::string_view line(std::string_view& rest) {
  const std::size_t nl = rest.find('\n');
  std::string_view out = rest.substr(0, nl);
  rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
  return out;
}

void check_date(std::string_view text) {
  auto parsed = parse_http_date(text);
  if (!parsed.ok()) return;
  const std::string printed = format_http_date(*parsed);
  auto again = parse_http_date(printed);
  if (!again.ok()) fail("a formatted HTTP-date does not parse", printed);
  if (format_http_date(*again) != printed) fail("HTTP-date round trip changed the text", printed);
}

void check_params(std::string_view text) {
  auto params = gateway::parse_signature_params(text);
  if (!params.ok()) return;
  const std::string canonical = gateway::serialize_signature_params(*params);
  auto again = gateway::parse_signature_params(canonical);
  if (!again.ok()) fail("canonical signature params do not parse", canonical);
  if (gateway::serialize_signature_params(*again) != canonical) {
    fail("signature params serialization is not canonical", canonical);
  }
}

void check_verify(std::string_view input, std::string_view first, std::string_view second,
                  std::string_view third) {
  static ManualClock clock(SystemTime{std::chrono::seconds{1'618'884'473}});
  static const gateway::HttpSignatureVerifier verifier(
      [](std::string_view) {
        return std::optional<std::string>("fuzz-secret-the-input-cannot-know");
      },
      clock);
  http::HttpRequest request;
  request.method = "POST";
  request.target = "/foo?param=Value&Pet=dog";
  request.path = "/foo";
  request.query = "param=Value&Pet=dog";
  request.headers.add("Host", "example.com");
  request.headers.add("Signature-Input", std::string(first));
  request.headers.add("Signature", std::string(second));
  if (!third.empty()) request.headers.add("Content-Digest", std::string(third));
  request.body = std::string(input.substr(0, 64));
  auto verified = verifier.verify(request);
  if (verified.ok()) fail("a signature verified without the key", input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view rest = input;
  const std::string_view first = line(rest);
  const std::string_view second = line(rest);
  const std::string_view third = line(rest);
  check_date(first);
  check_params(first);
  // The Signature-Input member is "label=<inner list>": try the part after '=' as params too.
  if (const auto eq = first.find('='); eq != std::string_view::npos)
    check_params(first.substr(eq + 1));
  check_verify(input, first, second, third);
  return 0;
}
