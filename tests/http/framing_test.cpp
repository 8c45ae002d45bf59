#include "http/framing.hpp"

#include <doctest/doctest.h>

#include <cctype>
#include <random>
#include <string>
#include <vector>

namespace civicbus::http::detail {
namespace {

bool any_start_line(std::string_view line) {
  return !line.empty() && line.find(' ') != std::string_view::npos;
}

// What a HeadScanner found in `input` fed in pieces of `piece` bytes: where it stopped (as an
// offset into the whole input), whether the head is complete, and the finding.
struct Scan {
  std::size_t end = 0;
  bool done = false;
  FramingError error = FramingError::kNone;
  std::string reason;
  bool operator==(const Scan&) const = default;
};

Scan scan(std::string_view input, std::size_t piece, Peer peer = Peer::kRequest,
          std::size_t max_count = 8, std::size_t max_bytes = 64) {
  HeadScanner scanner(peer, max_count, max_bytes, any_start_line);
  Scan out;
  std::size_t pos = 0;
  while (pos < input.size()) {
    const std::string_view part = input.substr(pos, piece);
    const std::size_t n = scanner.scan(part);
    pos += n;
    if (scanner.error() != FramingError::kNone || scanner.done() || n < part.size()) break;
  }
  out.end = pos;
  out.done = scanner.done();
  out.error = scanner.error();
  out.reason = scanner.reason();
  return out;
}

TEST_CASE("http framing: the head scanner stops at the byte at fault") {
  struct Case {
    std::string input;
    std::size_t end;
    FramingError error;
    std::string_view reason_part;
  };
  const std::vector<Case> cases = {
      {"GET / HTTP/1.1\r\nHost: h\r\n\r\nbody", 27, FramingError::kNone, ""},
      {"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 22, FramingError::kNone, ""},
      {"GET / HTTP/1.1\rX", 15, FramingError::kMalformed, "bare CR"},
      {"GET / HTTP/1.1\nHost: h", 14, FramingError::kMalformed, "bare LF"},
      {"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n", 25, FramingError::kMalformed,
       "obsolete line folding"},
      {"GET / HTTP/1.1\r\nHost : h\r\n", 20, FramingError::kMalformed, "whitespace between"},
      {"GET / HTTP/1.1\r\nHost: a b\tc\r\n\r\n", 31, FramingError::kNone, ""},
      {"GETX\r\n", 5, FramingError::kMalformed, "malformed request line"},
      // 64 bytes are allowed: the 65th is the one at fault, inside a run or at a line end.
      {"GET / HTTP/1.1\r\nA: " + std::string(45, 'a') + "\r\n\r\n", 64,
       FramingError::kLimitExceeded, "larger than the limit of 64"},
      {"GET / HTTP/1.1\r\nA: " + std::string(44, 'a') + "\r\n\r\n", 64,
       FramingError::kLimitExceeded, "larger than the limit of 64"},
      {"GET / HTTP/1.1\r\nA: " + std::string(41, 'a') + "\r\n\r\n", 64, FramingError::kNone, ""},
      // A fault inside the limit is reported before the limit.
      {"GET / HTTP/1.1\r\nA : " + std::string(80, 'a'), 17, FramingError::kMalformed,
       "whitespace between"},
      {"GET / HTTP/1.1\r\nA:1\r\nB:2\r\nC:3\r\nD:4\r\nE:5\r\nF:6\r\nG:7\r\nH:8\r\nI:9\r\n", 60,
       FramingError::kLimitExceeded, "more than 8 header fields"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.input);
    for (std::size_t piece : {std::size_t{1}, std::size_t{3}, c.input.size()}) {
      CAPTURE(piece);
      const Scan s = scan(c.input, piece);
      CHECK(s.end == c.end);
      CHECK(s.error == c.error);
      CHECK(s.reason.find(c.reason_part) != std::string::npos);
      CHECK(s.done == (c.error == FramingError::kNone));
    }
  }
  CHECK(scan("\r\nHTTP/1.1 200 OK\r\n", 100, Peer::kResponse).reason.find("empty line") !=
        std::string::npos);
}

TEST_CASE("http framing: the head scanner finds a line's end at every offset") {
  // A bare CR after values of every length up to three blocks, with a second line after it:
  // the scan of the whole input (which reads blocks that overlap bytes already looked at)
  // must stop exactly at that CR, as the byte-by-byte scan does.
  for (std::size_t length = 0; length <= 50; ++length) {
    const std::string head = "GET / HTTP/1.1\r\nA: " + std::string(length, 'v');
    const std::string input = head + "\rX\r\nB: " + std::string(length, 'w') + "\r\n\r\n";
    CAPTURE(length);
    const Scan whole = scan(input, input.size(), Peer::kRequest, 8, 1024);
    CHECK(whole.end == head.size() + 1);
    CHECK(whole.error == FramingError::kMalformed);
    CHECK(whole == scan(input, 1, Peer::kRequest, 8, 1024));
    // Without the bare CR the head is complete.
    const std::string good = head + "\r\nB: " + std::string(length, 'w') + "\r\n\r\nrest";
    const Scan ok = scan(good, good.size(), Peer::kRequest, 8, 1024);
    CHECK(ok.done);
    CHECK(ok.end == good.size() - 4);
  }
}

TEST_CASE("http framing: the head scanner finds the same thing however its input is split") {
  // Random heads from the bytes that matter to the scanner; each split must agree with the
  // unsplit scan on where it stopped and what it found.
  // A whole line is passed in one step when it arrives in one piece, byte by byte otherwise:
  // both ways must agree, for requests and responses, good and bad start lines.
  std::mt19937 rng(20261202);
  const std::string alphabet = "ab:  \t\r\n\r\n";
  struct Start {
    Peer peer;
    const char* line;
  };
  const Start starts[] = {
      {Peer::kRequest, "GET / HTTP/1.1\r\n"},    {Peer::kRequest, "\r\nGET / HTTP/1.1\r\n"},
      {Peer::kRequest, "GET  / HTTP/1.1\r\n"},   {Peer::kResponse, "HTTP/1.1 200 OK\r\n"},
      {Peer::kResponse, "HTTP/1.1 2000 OK\r\n"}, {Peer::kResponse, ""},
      {Peer::kRequest, "GARBAGE\r\n"},  // no space: refused by the start-line check
      {Peer::kResponse, "HTTP/1.1\r\n"}};
  for (int round = 0; round < 6000; ++round) {
    const Start& start = starts[rng() % std::size(starts)];
    std::string input = start.line;
    const std::size_t length = rng() % 80;
    for (std::size_t i = 0; i < length; ++i) input += alphabet[rng() % alphabet.size()];
    CAPTURE(input);
    const std::size_t max_bytes = 20 + rng() % 80;
    const Scan whole = scan(input, input.size(), start.peer, 4, max_bytes);
    for (std::size_t piece : {std::size_t{1}, std::size_t{2}, std::size_t{5}}) {
      CAPTURE(piece);
      CHECK(scan(input, piece, start.peer, 4, max_bytes) == whole);
    }
  }
}

TEST_CASE("http framing: the head scanner agrees with itself on heads of long and short lines") {
  // Heads of field lines from 2 to about 130 bytes (so that lines end, and have their colon,
  // in any 16-byte block the whole-line step reads, and across 64-byte pieces), with now and
  // then one line at fault: the whole head scanned at once (whole lines passed in one step)
  // must stop where the scans of split input (byte by byte, or lines cut across pieces) stop,
  // with the same finding.
  std::mt19937 rng(20261203);
  const char* faults[] = {"Name : v",  " folded", "Name: v\rX", "Name: v\nNext: w", "NoColonHere",
                          "Name\t: v", ""};
  for (int round = 0; round < 3000; ++round) {
    const bool request = rng() % 2 == 0;
    std::string input =
        request ? "GET /" + std::string(rng() % 70, 'p') + " HTTP/1.1\r\n" : "HTTP/1.1 200 OK\r\n";
    const std::size_t lines = rng() % 9;
    for (std::size_t l = 0; l < lines; ++l) {
      if (rng() % 12 == 0) {
        input += faults[rng() % std::size(faults)];
      } else {
        input += std::string(1 + rng() % 20, 'n') + ":" + std::string(rng() % 3, ' ') +
                 std::string(rng() % 110, 'v');
      }
      input += "\r\n";
    }
    input += "\r\nbody";
    CAPTURE(input);
    const Peer peer = request ? Peer::kRequest : Peer::kResponse;
    const std::size_t max_count = 2 + rng() % 8;
    const std::size_t max_bytes = 64 + rng() % 600;
    const Scan whole = scan(input, input.size(), peer, max_count, max_bytes);
    CHECK(whole == scan(input, 1, peer, max_count, max_bytes));
    CHECK(whole == scan(input, 7, peer, max_count, max_bytes));
    CHECK(whole == scan(input, 64, peer, max_count, max_bytes));
  }
}

TEST_CASE("http framing: field text is unsafe exactly when it holds a CR, LF or NUL") {
  // Every length up to three blocks, with each forbidden byte at every position (the check
  // reads sixteen or eight bytes at a time, then the rest).
  for (std::size_t length = 0; length <= 50; ++length) {
    const std::string clean(length, 'x');
    CHECK(is_safe_field_text(clean));
    for (std::size_t at = 0; at < length; ++at) {
      for (char bad : {'\r', '\n', '\0'}) {
        std::string text = clean;
        text[at] = bad;
        CAPTURE(length);
        CAPTURE(at);
        CAPTURE(int(bad));
        CHECK_FALSE(is_safe_field_text(text));
      }
    }
  }
  // Bytes next to the forbidden ones, and high bytes, are allowed.
  std::string others;
  for (int c = 1; c < 256; ++c) {
    if (c != '\r' && c != '\n') others += static_cast<char>(c);
  }
  CHECK(is_safe_field_text(others));
}

TEST_CASE("http framing: count_breaks counts every CR, LF and NUL") {
  std::mt19937 rng(20261202);
  const std::string alphabet = std::string("ab:\r\n \t\x80\xff", 9) + std::string(1, '\0');
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    const std::size_t length = rng() % 70;
    for (std::size_t i = 0; i < length; ++i) text += alphabet[rng() % alphabet.size()];
    std::size_t expected = 0;
    for (char c : text) expected += (c == '\r' || c == '\n' || c == '\0') ? 1 : 0;
    CAPTURE(text);
    CHECK(count_breaks(text) == expected);
  }
  // Long runs: the per-lane counts are summed before they could overflow.
  for (std::size_t length : {std::size_t{4080}, std::size_t{4096}, std::size_t{10000}}) {
    CHECK(count_breaks(std::string(length, '\n')) == length);
    CHECK(count_breaks(std::string(length, 'x')) == 0);
  }
}

TEST_CASE("http framing: tokens are the RFC 9110 tchar set") {
  const std::string_view specials = "!#$%&'*+-.^_`|~";
  for (int c = 0; c < 256; ++c) {
    const bool expected =
        std::isalnum(c) != 0 || specials.find(static_cast<char>(c)) != std::string_view::npos;
    CAPTURE(c);
    CHECK(is_tchar(static_cast<char>(c)) == (expected && c < 128));
  }
  CHECK(is_token("X-Request-Id"));
  CHECK_FALSE(is_token(""));
  CHECK_FALSE(is_token("X Request"));
  CHECK_FALSE(is_token("Host:"));
}

TEST_CASE("http framing: the field writer writes what appends would, at every length") {
  // Names and values of every length around the short-copy cases (0-3, 4-7, 8-16, longer) and
  // around the buffer's size, mixed with raw text: the result is what plain appends give.
  std::string expected;
  std::string out = "kept ";
  expected = out;
  {
    FieldWriter w(out);
    for (std::size_t n = 0; n <= 40; ++n) {
      std::string name(n, 'N');
      std::string value;
      for (std::size_t i = 0; i < n; ++i) value += static_cast<char>('a' + i % 26);
      w.field(name, value);
      expected.append(name).append(": ").append(value).append("\r\n");
      w.text(value);
      expected.append(value);
    }
    for (std::size_t n : {2040u, 2044u, 2048u, 2049u, 5000u}) {
      const std::string big(n, 'x');
      w.field("Big", big);
      expected.append("Big: ").append(big).append("\r\n");
      w.text(big);
      expected.append(big);
    }
    CHECK(w.size() == expected.size());
  }
  CHECK(out == expected);
}

TEST_CASE("http framing: the field writer takes back what it wrote after a mark") {
  std::string out;
  FieldWriter w(out);
  w.text("HTTP/1.1 200 OK\r\n");
  const std::size_t mark = w.size();
  w.field("X-One", "1");
  w.field("X-Two", "2");
  CHECK(w.view_from(mark) == "X-One: 1\r\nX-Two: 2\r\n");
  w.truncate(mark);
  CHECK(w.size() == mark);
  w.field("X-Three", "3");
  w.flush();
  CHECK(out == "HTTP/1.1 200 OK\r\nX-Three: 3\r\n");
}

}  // namespace
}  // namespace civicbus::http::detail
