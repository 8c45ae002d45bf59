// Fuzz target: the HTTP/1.1 response parser of the client (src/http/response_parser.hpp),
// llhttp plus our framing checks, without sockets.
//
// The input is the bytes a server sends on one connection. It is parsed in one piece, one byte
// at a time and in pieces whose sizes come from the input itself, each as the answer to a GET
// and to a HEAD request, and the end of the input is the peer closing the connection
// (finish()). Nothing may crash; no step may consume more than it was given, nor stop short
// without an event that says why; limits hold; and the three runs must see the same response
// (status, reason, fields, body, keep-alive, bytes consumed) or the same error code, because
// TCP may split a response anywhere.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "http/response_parser.hpp"

namespace {

using civicbus::http::detail::ResponseLimits;
using civicbus::http::detail::ResponseParser;

constexpr std::size_t kMaxFields = 20;
constexpr std::size_t kMaxHeaderBytes = 2048;
constexpr std::size_t kMaxBody = 4096;

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "http_response fuzz: %s\n%.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

std::string describe(ResponseParser& parser, bool head, std::size_t consumed) {
  const civicbus::http::HttpResponse response = parser.take_response();
  if (response.status < 200 || response.status > 599) fail("final status out of range");
  if (response.body.size() > kMaxBody) fail("body over the limit");
  if (response.headers.size() > kMaxFields) fail("more fields than the limit");
  if ((head || response.status == 204 || response.status == 304) && !response.body.empty()) {
    fail("body on a response that has none");
  }
  std::string line = "response " + std::to_string(response.status) + " [" + response.reason + "] " +
                     std::to_string(response.headers.size()) + " fields, body " +
                     std::to_string(response.body.size()) + " [" + response.body + "] keep-alive " +
                     (parser.keep_alive() ? "yes" : "no") + " at " + std::to_string(consumed);
  return line;
}

// Feeds `input` in pieces of the sizes `piece(i)`, then finish() if no event ended the
// exchange; returns the log of what happened.
template <typename PieceSize>
std::string parse(std::string_view input, bool head, PieceSize piece) {
  ResponseParser parser(ResponseLimits{kMaxFields, kMaxHeaderBytes, kMaxBody}, head);
  std::size_t pos = 0;       // bytes handed out
  std::size_t consumed = 0;  // bytes the parser took
  std::size_t pieces = 0;
  std::string_view rest;
  while (true) {
    if (rest.empty()) {
      if (pos >= input.size()) break;
      const std::size_t n = std::min(input.size() - pos, std::max<std::size_t>(1, piece(pieces++)));
      rest = input.substr(pos, n);
      pos += n;
    }
    const ResponseParser::Step step = parser.feed(rest);
    if (step.consumed > rest.size()) fail("consumed more than it was given");
    consumed += step.consumed;
    rest.remove_prefix(step.consumed);
    switch (step.event) {
      case ResponseParser::Event::kNeedMore:
        if (!rest.empty()) fail("kNeedMore with bytes left");
        break;
      case ResponseParser::Event::kMessageComplete:
        return describe(parser, head, consumed);
      case ResponseParser::Event::kError:
        if (parser.error().ok()) fail("kError without an error");
        return "error " + std::to_string(static_cast<int>(parser.error().code()));
    }
  }
  if (parser.started() != !input.empty()) fail("started() does not match the input");
  const ResponseParser::Step step = parser.finish();
  if (step.consumed != 0) fail("finish() consumed bytes");
  switch (step.event) {
    case ResponseParser::Event::kMessageComplete: {
      if (parser.keep_alive()) fail("keep-alive after a close-delimited body");
      return "eof " + describe(parser, head, consumed);
    }
    case ResponseParser::Event::kError:
      if (parser.error().ok()) fail("kError without an error");
      return "eof error " + std::to_string(static_cast<int>(parser.error().code()));
    case ResponseParser::Event::kNeedMore:
      fail("finish() asked for more");
  }
  return "unreachable";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  for (const bool head : {false, true}) {
    const std::string whole = parse(input, head, [&](std::size_t) { return input.size(); });
    const std::string bytes = parse(input, head, [](std::size_t) { return std::size_t{1}; });
    const std::string pieces = parse(input, head, [&](std::size_t i) {
      return size == 0 ? std::size_t{1} : static_cast<std::size_t>(data[(i * 7) % size] % 23 + 1);
    });
    if (whole != bytes) fail("one piece and byte by byte differ", whole + "\n---\n" + bytes);
    if (whole != pieces) fail("one piece and pieces differ", whole + "\n---\n" + pieces);
  }
  return 0;
}
