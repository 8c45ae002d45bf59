// Fuzz target: the HTTP/1.1 request parser of the server (src/http/request_parser.hpp), llhttp
// plus our framing checks, without sockets.
//
// The input is the bytes a client sends on one connection (pipelined requests included). It
// is parsed three times: in one piece, one byte at a time, and in pieces whose sizes come
// from the input itself. Nothing may crash; each event must consume what it says; and the
// three runs must see the same requests and the same final error, because TCP may split a
// request anywhere and the answer must not depend on where (a parser that did would be a
// request-smuggling hazard).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "http/request_parser.hpp"

namespace {

using civicbus::http::detail::RequestLimits;
using civicbus::http::detail::RequestParser;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "http_request fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

// Feeds `input` in pieces of the sizes `piece(i)` and logs every event.
template <typename PieceSize>
std::vector<std::string> parse(std::string_view input, PieceSize piece) {
  RequestParser parser(RequestLimits{20, 2048, 4096});
  std::vector<std::string> log;
  std::size_t pos = 0;
  std::size_t pieces = 0;
  std::string_view rest;
  int idle_events = 0;
  while (true) {
    if (rest.empty()) {
      if (pos >= input.size()) break;
      const std::size_t n = std::min(input.size() - pos, std::max<std::size_t>(1, piece(pieces++)));
      rest = input.substr(pos, n);
      pos += n;
    }
    const RequestParser::Step step = parser.feed(rest);
    if (step.consumed > rest.size()) fail("consumed more than it was given");
    idle_events = step.consumed == 0 ? idle_events + 1 : 0;
    if (idle_events > 2) fail("no progress");
    rest.remove_prefix(step.consumed);
    switch (step.event) {
      case RequestParser::Event::kNeedMore:
        if (!rest.empty()) fail("kNeedMore with bytes left");
        break;
      case RequestParser::Event::kHeadersComplete:
        if (!parser.in_body()) fail("headers complete but not in the body");
        break;
      case RequestParser::Event::kMessageComplete: {
        const civicbus::http::HttpRequest request = parser.take_request();
        if (request.body.size() > 4096) fail("body over the limit");
        if (request.headers.size() > 20) fail("more fields than the limit");
        if (request.path +
                (request.target.find('?') != std::string::npos ? "?" + request.query : "") !=
            request.target) {
          fail("path and query do not make the target", request.target);
        }
        log.push_back(request.method + " " + request.target + " " +
                      std::to_string(request.headers.size()) + " " + request.body);
        if (!parser.keep_alive()) {
          log.push_back("close");
          return log;
        }
        break;
      }
      case RequestParser::Event::kError: {
        const int status = parser.error_status();
        if (status != 400 && status != 413 && status != 417 && status != 431 && status != 501 &&
            status != 505) {
          fail("unexpected error status", parser.error_reason());
        }
        log.push_back("error " + std::to_string(status));
        return log;
      }
    }
  }
  log.push_back("incomplete");
  return log;
}

std::string join(const std::vector<std::string>& log) {
  std::string out;
  for (const std::string& line : log) out += line + "\n";
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::vector<std::string> whole = parse(input, [&](std::size_t) { return input.size(); });
  const std::vector<std::string> bytes = parse(input, [](std::size_t) { return std::size_t{1}; });
  const std::vector<std::string> pieces = parse(input, [&](std::size_t i) {
    return size == 0 ? std::size_t{1} : static_cast<std::size_t>(data[(i * 7) % size] % 23 + 1);
  });
  if (whole != bytes)
    fail("one piece and byte by byte differ", join(whole) + "---\n" + join(bytes));
  if (whole != pieces) fail("one piece and pieces differ", join(whole) + "---\n" + join(pieces));
  return 0;
}
