// RequestParser: the server's HTTP/1.1 request parser, llhttp (strict: no lenient flags) plus
// our own checks where llhttp is lenient or where RFC 9112 asks more of a server:
//
//  - a scanner over the header section (HeadScanner, framing.hpp, shared with the client's
//    ResponseParser) that refuses bare CR, bare LF, obs-fold and whitespace between a field
//    name and its colon, and counts fields and bytes (431); the request line is checked here
//    (single spaces, an HTTP-version), and empty lines before it are ignored;
//  - at the end of the header section: one Content-Length at most, digits only, no overflow;
//    never with Transfer-Encoding; Transfer-Encoding only as "chunked" last and once; one Host
//    at most; Expect only "100-continue" (417); a declared body over the limit (413);
//  - chunked bodies through ChunkScanner (framing.hpp): hex sizes without overflow, the CRLF
//    after chunk data (llhttp 8.1 skips those two bytes unchecked), extensions and trailer
//    lines.
//
// It reads no socket: the connection feeds it bytes and acts on the events it returns. Not
// thread-safe; one per connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "civicbus/http/message.hpp"
#include "http/framing.hpp"

namespace civicbus::http::detail {

struct RequestLimits {
  std::size_t max_header_count = 100;
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 1024 * 1024;
};

class RequestParser {
 public:
  enum class Event {
    kNeedMore,         // all bytes consumed; feed more
    kHeadersComplete,  // the header section is complete and a body follows
    kMessageComplete,  // take_request() is ready
    kError,            // error_status() says what to answer; the connection must close
  };
  struct Step {
    Event event;
    std::size_t consumed;  // bytes of the input used; feed the rest again
  };

  explicit RequestParser(RequestLimits limits);
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Parses up to the next event.
  Step feed(std::string_view data);

  // True once a byte of the next request has arrived (the header timeout runs, not the idle
  // one), until its header section is complete.
  bool in_header() const;
  bool in_body() const;
  // After kHeadersComplete: the client sent "Expect: 100-continue" on HTTP/1.1.
  bool expects_continue() const { return expect_continue_; }

  // After kMessageComplete: the request, and whether the connection stays open after it.
  HttpRequest take_request();
  // The same request in place, for a caller that is done with it before the next feed()
  // (which empties it, keeping the room its strings and fields took).
  HttpRequest& request() { return request_; }
  bool keep_alive() const { return keep_alive_; }

  // After kError: 400, 413, 417, 431, 501 or 505, and why (for logs and the response body).
  int error_status() const { return error_status_; }
  const std::string& error_reason() const { return error_reason_; }

 private:
  struct Llhttp;
  enum class Phase { kHead, kBody, kClosed };

  Step fail(int status, std::string reason, std::size_t consumed);
  // Records the finding of a scanner (framing.hpp) that scanned `n` bytes as
  // scan_error_status_; returns `n`.
  std::size_t scanned(const FramingFindings& scanner, std::size_t n);
  int on_headers_complete();
  void reset_message();

  friend struct LlhttpCallbacks;

  RequestLimits limits_;
  std::unique_ptr<Llhttp> llhttp_;
  Phase phase_ = Phase::kHead;

  // Head and chunked-body scanners (framing.hpp); their findings, as the status to answer.
  HeadScanner head_;
  int scan_error_status_ = 0;
  std::string scan_error_reason_;

  bool chunked_ = false;
  ChunkScanner chunks_;

  // The message being parsed.
  HttpRequest request_;
  FieldSpans field_;  // the field being parsed
  bool headers_done_ = false;
  bool message_done_ = false;
  bool expect_continue_ = false;
  bool keep_alive_ = true;

  int error_status_ = 0;
  std::string error_reason_;
};

}  // namespace civicbus::http::detail
