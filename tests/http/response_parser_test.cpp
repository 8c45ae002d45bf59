#include "http/response_parser.hpp"

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

namespace civicbus::http::detail {
namespace {

struct Parsed {
  std::optional<HttpResponse> response;
  bool keep_alive = false;
  std::size_t left_over = 0;  // input bytes after the response
  ErrorCode error = ErrorCode::kOk;
};

// A FieldSink that keeps what it is given.
struct RecordingSink : FieldSink {
  void restart() override {
    fields.clear();
    ++restarts;
  }
  void field(std::string_view name, std::string_view value) override {
    fields.emplace_back(std::string(name), std::string(value));
  }
  std::vector<HttpHeaders::Field> fields;
  int restarts = 0;
};

// Feeds `input` in pieces of `piece` bytes; `eof`: the connection closes after it. With a
// `sink`, the fields go there.
Parsed parse(std::string_view input, std::size_t piece, bool head = false, bool eof = false,
             ResponseLimits limits = {}, FieldSink* sink = nullptr) {
  ResponseParser parser(limits, head);
  parser.set_sink(sink);
  Parsed out;
  std::size_t pos = 0;
  while (pos < input.size()) {
    // Fed from a buffer of its own that is overwritten afterwards, as a connection's read
    // buffer is: the parser keeps nothing that views it.
    std::string rest(input.substr(pos, piece));
    const auto step = parser.feed(rest);
    rest.assign(rest.size(), '#');
    pos += step.consumed;
    if (step.event == ResponseParser::Event::kMessageComplete) {
      out.response = parser.take_response();
      out.keep_alive = parser.keep_alive();
      out.left_over = input.size() - pos;
      return out;
    }
    if (step.event == ResponseParser::Event::kError) {
      out.error = parser.error().code();
      return out;
    }
    REQUIRE(step.consumed == rest.size());
  }
  if (eof) {
    const auto step = parser.finish();
    if (step.event == ResponseParser::Event::kMessageComplete) {
      out.response = parser.take_response();
      out.keep_alive = parser.keep_alive();
    } else {
      out.error = parser.error().code();
    }
  }
  return out;
}

// The same result whether the input comes whole or byte by byte, and with a FieldSink (which
// gets the fields the response would have had, the framing checks being the same).
Parsed parse_both(std::string_view input, bool head = false, bool eof = false,
                  ResponseLimits limits = {}) {
  const Parsed whole = parse(input, input.size(), head, eof, limits);
  const Parsed bytes = parse(input, 1, head, eof, limits);
  for (const std::size_t piece : {input.size(), std::size_t{1}}) {
    RecordingSink sink;
    const Parsed sunk = parse(input, piece, head, eof, limits, &sink);
    CHECK(sunk.error == whole.error);
    CHECK(sunk.response.has_value() == whole.response.has_value());
    CHECK(sink.restarts >= 1);
    if (sunk.response && whole.response) {
      CHECK(sunk.response->headers.empty());
      CHECK(sink.fields == std::vector<HttpHeaders::Field>(whole.response->headers.begin(),
                                                           whole.response->headers.end()));
      CHECK(sunk.response->status == whole.response->status);
      CHECK(sunk.response->body == whole.response->body);
      CHECK(sunk.keep_alive == whole.keep_alive);
    }
  }
  CHECK(whole.error == bytes.error);
  CHECK(whole.response.has_value() == bytes.response.has_value());
  if (whole.response && bytes.response) {
    CHECK(whole.response->status == bytes.response->status);
    CHECK(whole.response->body == bytes.response->body);
    CHECK(std::vector<HttpHeaders::Field>(whole.response->headers.begin(),
                                          whole.response->headers.end()) ==
          std::vector<HttpHeaders::Field>(bytes.response->headers.begin(),
                                          bytes.response->headers.end()));
    CHECK(whole.keep_alive == bytes.keep_alive);
  }
  return whole;
}

TEST_CASE("http response parser: Content-Length, reason and headers") {
  const auto p = parse_both("HTTP/1.1 404 Not Found\r\nX-A:  one \r\nContent-Length: 3\r\n\r\nabc");
  REQUIRE(p.response);
  CHECK(p.response->status == 404);
  CHECK(p.response->reason == "Not Found");
  CHECK(p.response->headers.get("x-a") == "one");
  CHECK(p.response->body == "abc");
  CHECK(p.keep_alive);
}

TEST_CASE("http response parser: chunked body with extension and trailer") {
  const auto p = parse_both(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3;a=b\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\n");
  REQUIRE(p.response);
  CHECK(p.response->body == "abc0123456789");
  CHECK_FALSE(p.response->headers.contains("T"));
  CHECK(p.keep_alive);
}

TEST_CASE("http response parser: 1xx skipped, no body for HEAD, 204, 304") {
  auto p = parse_both("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx");
  REQUIRE(p.response);
  CHECK(p.response->status == 200);
  CHECK(p.response->body == "x");
  // The interim response's fields are not the final one's (with a sink: it restarts).
  p = parse_both(
      "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nX: 1\r\n"
      "Content-Length: 0\r\n\r\n");
  REQUIRE(p.response);
  CHECK_FALSE(p.response->headers.contains("Link"));
  RecordingSink sink;
  p = parse(
      "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nX: 1\r\n"
      "Content-Length: 0\r\n\r\n",
      1, false, false, {}, &sink);
  REQUIRE(p.response);
  CHECK(sink.fields == std::vector<HttpHeaders::Field>{{"X", "1"}, {"Content-Length", "0"}});
  p = parse_both("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1", /*head=*/true);
  REQUIRE(p.response);
  CHECK(p.response->body.empty());
  CHECK(p.left_over == 8);
  p = parse_both("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n");
  REQUIRE(p.response);
  CHECK(p.response->status == 304);
  p = parse_both("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n");
  REQUIRE(p.response);
  CHECK(p.response->body.empty());
}

TEST_CASE("http response parser: body delimited by the close") {
  const auto p = parse_both("HTTP/1.1 200 OK\r\nX: y\r\n\r\nall of it", false, /*eof=*/true);
  REQUIRE(p.response);
  CHECK(p.response->body == "all of it");
  CHECK_FALSE(p.keep_alive);
  CHECK(parse_both("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", false, true).error ==
        ErrorCode::kDataLoss);
  CHECK(
      parse_both("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive ==
      false);
  CHECK(parse_both("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive == false);
}

TEST_CASE("http response parser: framing errors are kDataLoss") {
  const char* bad[] = {
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\nx",
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      "HTTP/1.1 200 OK\rX: 1\r\n\r\n",
      "HTTP/2 200 OK\r\n\r\n",
      "HTTP/1.1 2000 OK\r\n\r\n",
      "\r\nHTTP/1.1 200 OK\r\n\r\n",
  };
  for (const char* input : bad) {
    CAPTURE(input);
    CHECK(parse_both(input).error == ErrorCode::kDataLoss);
  }
  // A control byte in a field value (what a FieldSink relies on: no byte that could split a
  // line written on reaches it).
  for (const char c : std::string_view("\0\x01\x08\x0b\x0c\x1f\x7f", 7)) {
    std::string input = "HTTP/1.1 200 OK\r\nX-Bad: a";
    input += c;
    input += "b\r\nContent-Length: 0\r\n\r\n";
    CAPTURE(static_cast<int>(c));
    CHECK(parse_both(input).error == ErrorCode::kDataLoss);
  }
}

TEST_CASE("http response parser: limits are kResourceExhausted") {
  ResponseLimits limits;
  limits.max_header_count = 2;
  limits.max_header_bytes = 64;
  limits.max_body_bytes = 4;
  CHECK(parse_both("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", false, false, limits).error ==
        ErrorCode::kResourceExhausted);
  CHECK(
      parse_both("HTTP/1.1 200 OK\r\nA: " + std::string(64, 'x') + "\r\n\r\n", false, false, limits)
          .error == ErrorCode::kResourceExhausted);
  CHECK(
      parse_both("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n12345", false, false, limits).error ==
      ErrorCode::kResourceExhausted);
  CHECK(parse_both("HTTP/1.1 200 OK\r\n\r\n12345", false, true, limits).error ==
        ErrorCode::kResourceExhausted);
}

}  // namespace
}  // namespace civicbus::http::detail

namespace civicbus::http::detail {
namespace {

TEST_CASE("http response parser: reset() parses the next response as a new parser would") {
  ResponseParser parser({}, false);
  auto one = [&](std::string_view wire) {
    const auto step = parser.feed(wire);
    return step.event;
  };
  REQUIRE(one("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok") ==
          ResponseParser::Event::kMessageComplete);
  HttpResponse first = parser.take_response();
  CHECK(first.body == "ok");
  // A HEAD response next: no body although Content-Length says 5.
  parser.reset(true);
  REQUIRE(one("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n") ==
          ResponseParser::Event::kMessageComplete);
  HttpResponse head = parser.take_response();
  CHECK(head.body.empty());
  CHECK_FALSE(head.headers.contains("X-A"));
  // After an error, reset() gives a working parser again.
  parser.reset(false);
  REQUIRE(one("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx") ==
          ResponseParser::Event::kError);
  parser.reset(false);
  CHECK_FALSE(parser.started());
  REQUIRE(one("HTTP/1.1 204 No Content\r\n\r\n") == ResponseParser::Event::kMessageComplete);
  CHECK(parser.take_response().status == 204);
  CHECK(parser.keep_alive());
  // Chunked after chunked.
  for (int i = 0; i < 2; ++i) {
    parser.reset(false);
    REQUIRE(one("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n") ==
            ResponseParser::Event::kMessageComplete);
    CHECK(parser.take_response().body == "abc");
  }
}

TEST_CASE("http response parser: responses taken into one object leave nothing of the last") {
  ResponseParser parser({}, false);
  HttpResponse into;
  into.headers.add("Stale", "from before");
  into.body = "stale body";
  REQUIRE(parser.feed("HTTP/1.1 201 Created\r\nContent-Length: 3\r\nX-A: 1\r\n\r\none").event ==
          ResponseParser::Event::kMessageComplete);
  parser.take_response(into);
  CHECK(into.status == 201);
  CHECK(into.reason == "Created");
  CHECK(into.body == "one");
  CHECK(into.headers.get("X-A") == "1");
  CHECK_FALSE(into.headers.contains("Stale"));
  // The next response is parsed into the room the object gave back, emptied first.
  parser.reset(false);
  REQUIRE(parser.feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").event ==
          ResponseParser::Event::kMessageComplete);
  parser.take_response(into);
  CHECK(into.status == 200);
  CHECK(into.reason == "OK");
  CHECK(into.body.empty());
  CHECK_FALSE(into.headers.contains("X-A"));
  CHECK_FALSE(into.headers.contains("Stale"));
  // A body over 64 KiB does not stay as room for the next one.
  HttpResponse big;
  big.body.assign(100 * 1024, 'x');
  clear_for_reuse(big);
  CHECK(big.body.empty());
  CHECK(big.body.capacity() < 64 * 1024);
}

}  // namespace
}  // namespace civicbus::http::detail
