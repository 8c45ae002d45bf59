#include "http/request_parser.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace civicbus::http::detail {
namespace {

struct Parsed {
  std::vector<HttpRequest> requests;
  int error = 0;
};

// Feeds `input` in pieces of `piece` bytes and collects the requests (or the error).
Parsed parse(std::string_view input, std::size_t piece, RequestLimits limits = {}) {
  RequestParser parser(limits);
  Parsed out;
  std::size_t pos = 0;
  std::string_view rest;
  while (true) {
    if (rest.empty()) {
      if (pos >= input.size()) break;
      rest = input.substr(pos, piece);
      pos += rest.size();
    }
    // Fed from a buffer of its own that is overwritten afterwards, as a connection's read
    // buffer is: the parser keeps nothing that views it.
    std::string buffer(rest);
    const auto step = parser.feed(buffer);
    buffer.assign(buffer.size(), '#');
    rest.remove_prefix(step.consumed);
    if (step.event == RequestParser::Event::kMessageComplete) {
      out.requests.push_back(parser.take_request());
      if (!parser.keep_alive()) break;
    } else if (step.event == RequestParser::Event::kError) {
      out.error = parser.error_status();
      break;
    }
  }
  return out;
}

TEST_CASE("http parser: headers are ordered, case-insensitive and keep repeats") {
  const Parsed p =
      parse("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: h\r\nAccept: a\r\naccept: b\r\nX-Pad:  v  \r\n\r\n",
            1000);
  REQUIRE(p.requests.size() == 1);
  const HttpRequest& r = p.requests[0];
  CHECK(r.method == "GET");
  CHECK(r.target == "/a/b?x=1&y=2");
  CHECK(r.path == "/a/b");
  CHECK(r.query == "x=1&y=2");
  CHECK(r.version_minor == 1);
  CHECK(r.headers.get("ACCEPT") == "a");
  CHECK(r.headers.get_all("Accept") == std::vector<std::string_view>{"a", "b"});
  CHECK(r.headers.get("x-pad") == "v");
  CHECK_FALSE(r.headers.get("Missing").has_value());
}

TEST_CASE("http parser: any split of the input gives the same requests") {
  const std::string input =
      "POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
      "POST /2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n"
      "0\r\nT: 1\r\n\r\n"
      "GET /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  for (std::size_t piece : {std::size_t{1}, std::size_t{2}, std::size_t{7}, input.size()}) {
    CAPTURE(piece);
    const Parsed p = parse(input, piece);
    CHECK(p.error == 0);
    REQUIRE(p.requests.size() == 3);
    CHECK(p.requests[0].body == "hello");
    CHECK(p.requests[1].body == "abcde");
    CHECK_FALSE(p.requests[1].headers.contains("T"));  // trailers are dropped
    CHECK(p.requests[2].path == "/3");
    // Fields split at any byte come out whole.
    CHECK(p.requests[0].headers.get("Host") == "h");
    CHECK(p.requests[0].headers.get("Content-Length") == "5");
    CHECK(p.requests[1].headers.get("transfer-encoding") == "chunked");
    CHECK(p.requests[2].headers.get("Connection") == "close");
  }
}

TEST_CASE("http parser: headers complete is reported before a body, with 100-continue") {
  RequestParser parser(RequestLimits{});
  const std::string head =
      "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n";
  auto step = parser.feed(head + "o");
  CHECK(step.event == RequestParser::Event::kHeadersComplete);
  CHECK(step.consumed == head.size());
  CHECK(parser.expects_continue());
  CHECK(parser.in_body());
  step = parser.feed("o");
  CHECK(step.event == RequestParser::Event::kNeedMore);
  step = parser.feed("k");
  CHECK(step.event == RequestParser::Event::kMessageComplete);
  CHECK(parser.take_request().body == "ok");
}

TEST_CASE("http parser: limits give 431 and 413") {
  RequestLimits limits;
  limits.max_header_count = 2;
  limits.max_header_bytes = 64;
  limits.max_body_bytes = 4;
  CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", 100, limits).error == 431);
  CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nA: " + std::string(60, 'a') + "\r\n\r\n", 100, limits)
            .error == 431);
  CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", 100, limits).error == 413);
  CHECK(
      parse(
          "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n0\r\n\r\n",
          100, limits)
          .error == 413);
}

TEST_CASE("http parser: data after a closing request is an error") {
  const Parsed p = parse("GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n", 1000);
  CHECK(p.requests.size() == 1);
}

TEST_CASE("http headers: set replaces every field of the name, remove counts") {
  HttpHeaders h;
  h.add("X-A", "1");
  h.add("x-a", "2");
  h.add("Other", "3");
  CHECK(h.count("X-A") == 2);
  h.set("X-a", "9");
  CHECK(h.get_all("x-A") == std::vector<std::string_view>{"9"});
  CHECK(h.remove("OTHER") == 1);
  CHECK(h.size() == 1);
  CHECK(equals_ignore_case("Content-Length", "content-length"));
  CHECK_FALSE(equals_ignore_case("Content-Length", "content-lengt"));
  CHECK(reason_phrase(431) == "Request Header Fields Too Large");
}

TEST_CASE("http headers: add_copy copies the views it is given, in arrival order") {
  HttpHeaders h;
  std::string name = "X-Long-Field-Name-Over-Sixteen";
  std::string value = "a value longer than the small-string buffer";
  h.add_copy(name, value);
  h.add_copy("x-long-field-name-over-sixteen", "");
  name.assign(name.size(), '?');  // the entries do not view the originals
  value.clear();
  REQUIRE(h.size() == 2);
  CHECK(h.begin()->first == "X-Long-Field-Name-Over-Sixteen");
  CHECK(h.get_all("X-LONG-FIELD-NAME-OVER-SIXTEEN") ==
        std::vector<std::string_view>{"a value longer than the small-string buffer", ""});
}

TEST_CASE("http message: every pair of bytes compares as ASCII case folding says") {
  // At each place of names of 1 to 17 bytes (the one-byte, two-, four- and eight-byte loads),
  // every byte against every other: equal exactly when they are the same letter ignoring
  // ASCII case, or the same byte.
  auto fold = [](unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; };
  std::size_t compared = 0;
  std::size_t equal = 0;
  for (const std::size_t length : {1, 2, 3, 5, 7, 8, 9, 16, 17}) {
    for (const std::size_t at : {std::size_t{0}, length / 2, length - 1}) {
      std::string a(length, 'k');
      std::string b(length, 'K');
      for (int x = 0; x < 256; ++x) {
        for (int y = 0; y < 256; ++y) {
          a[at] = static_cast<char>(x);
          b[at] = static_cast<char>(y);
          const bool expected =
              fold(static_cast<unsigned char>(x)) == fold(static_cast<unsigned char>(y));
          const bool got = equals_ignore_case(a, b);
          if (got != expected) {
            FAIL_CHECK("length " << length << " at " << at << ": " << x << " vs " << y);
          }
          ++compared;
          equal += got ? 1 : 0;
        }
      }
    }
  }
  // 9 lengths with 3 places each (duplicates included), 256 * 256 ordered pairs at each, of
  // which 256 + 2 * 26 equal (every byte with itself, each letter with its other case).
  CHECK(compared == 9 * 3 * 65536);
  CHECK(equal == 9 * 3 * (256 + 2 * 26));
}

TEST_CASE("http message: names compare ignoring case at every position and length") {
  // Names are compared a word at a time with an overlapping last word: each length up to three
  // words, with a case flip, a different letter, or a byte 0x20 away that is not a letter, at
  // every position.
  for (std::size_t length = 0; length <= 24; ++length) {
    std::string name;
    for (std::size_t i = 0; i < length; ++i) name += static_cast<char>('a' + i % 26);
    CHECK(equals_ignore_case(name, name));
    for (std::size_t at = 0; at < length; ++at) {
      CAPTURE(length);
      CAPTURE(at);
      std::string upper = name;
      upper[at] = static_cast<char>(upper[at] - 'a' + 'A');
      CHECK(equals_ignore_case(name, upper));
      CHECK(equals_ignore_case(upper, name));
      std::string other = name;
      other[at] = other[at] == 'z' ? 'y' : static_cast<char>(other[at] + 1);
      CHECK_FALSE(equals_ignore_case(name, other));
      std::string dash = name;
      dash[at] = '-';
      std::string cr = name;
      cr[at] = '\r';  // '-' is 0x2d, CR 0x0d: a case fold must not make them equal
      CHECK_FALSE(equals_ignore_case(dash, cr));
      CHECK(equals_ignore_case(dash, dash));
    }
  }
}

}  // namespace
}  // namespace civicbus::http::detail
