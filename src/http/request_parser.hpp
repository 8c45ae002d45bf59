// RequestParser: the server's HTTP/1.1 request parser, llhttp (strict: no lenient flags) plus
// our own checks where llhttp is lenient or where RFC 9112 asks more of a server:
//
//  - a scanner over the header section that refuses bare CR, bare LF, obs-fold and
//    whitespace between a field name and its colon, and counts fields and bytes (431);
//  - at the end of the header section: one Content-Length at most, digits only, no overflow;
//    never with Transfer-Encoding; Transfer-Encoding only as "chunked" last and once; one Host
//    at most; Expect only "100-continue" (417); a declared body over the limit (413).
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
  bool keep_alive() const { return keep_alive_; }

  // After kError: 400, 413, 417, 431, 501 or 505, and why (for logs and the response body).
  int error_status() const { return error_status_; }
  const std::string& error_reason() const { return error_reason_; }

 private:
  struct Llhttp;
  enum class Phase { kHead, kBody, kClosed };

  Step fail(int status, std::string reason, std::size_t consumed);
  // Scans header-section bytes; returns how many belong to the head (up to its end
  // inclusive), or sets scan_error_status_.
  std::size_t scan_head(std::string_view data);
  // The same for a chunked body: checks the framing llhttp 8 does not (the CRLF after chunk
  // data, extensions, trailer lines) and returns how many bytes belong to the message.
  std::size_t scan_chunked(std::string_view data);
  int on_headers_complete();
  void reset_message();

  friend struct LlhttpCallbacks;

  RequestLimits limits_;
  std::unique_ptr<Llhttp> llhttp_;
  Phase phase_ = Phase::kHead;

  // Head scanner.
  std::size_t head_bytes_ = 0;
  std::size_t field_count_ = 0;
  std::size_t line_index_ = 0;  // 0: the request line
  bool line_empty_ = true;
  bool in_name_ = false;
  bool prev_cr_ = false;
  bool head_done_ = false;
  std::string request_line_;
  int scan_error_status_ = 0;
  std::string scan_error_reason_;

  // Chunked-body scanner.
  enum class ChunkState {
    kSize,
    kExt,
    kSizeLf,
    kData,
    kDataCr,
    kDataLf,
    kTrailerLineStart,
    kTrailerLine,
    kTrailerLf,
    kEndLf,
    kDone
  };
  bool chunked_ = false;
  ChunkState chunk_state_ = ChunkState::kSize;
  std::uint64_t chunk_size_ = 0;
  std::size_t chunk_digits_ = 0;
  std::size_t trailer_bytes_ = 0;

  // The message being parsed.
  HttpRequest request_;
  std::string field_;
  std::string value_;
  bool headers_done_ = false;
  bool message_done_ = false;
  bool expect_continue_ = false;
  bool keep_alive_ = true;

  int error_status_ = 0;
  std::string error_reason_;
};

}  // namespace civicbus::http::detail
