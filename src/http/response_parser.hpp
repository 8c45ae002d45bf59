// ResponseParser: the client's HTTP/1.1 response parser, llhttp in HTTP_RESPONSE mode (no
// lenient flags) plus our own byte scanners where llhttp is lenient, as strict as the
// server's RequestParser:
//
//  - the header section: status line shape, bare CR, bare LF, obs-fold, whitespace before a
//    colon, field count and byte limits;
//  - at the end of the header section: one Content-Length at most, digits only; never with
//    Transfer-Encoding; Transfer-Encoding only "chunked", last and once; 101 refused (the
//    client never asks for an upgrade);
//  - chunked bodies: hex sizes without overflow, the CRLF after chunk data (llhttp 8.1 skips
//    those two bytes unchecked), extensions and trailer lines;
//  - no body for HEAD responses, 1xx, 204 and 304 (a Content-Length there is not a body);
//    without Content-Length or chunked the body runs to the connection's close (finish());
//  - 1xx interim responses (100 Continue) are skipped.
//
// It reads no socket: the client feeds it bytes. Not thread-safe; one per exchange.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "civicbus/core/status.hpp"
#include "civicbus/http/message.hpp"

namespace civicbus::http::detail {

struct ResponseLimits {
  std::size_t max_header_count = 100;
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 8 * 1024 * 1024;
};

class ResponseParser {
 public:
  enum class Event {
    kNeedMore,         // all bytes consumed; feed more (or finish() at EOF)
    kMessageComplete,  // take_response() is ready
    kError,            // error() says why; the connection must close
  };
  struct Step {
    Event event;
    std::size_t consumed;  // bytes of the input used
  };

  // `head_request`: the response answers a HEAD request, so it has no body.
  ResponseParser(ResponseLimits limits, bool head_request);
  ~ResponseParser();
  ResponseParser(const ResponseParser&) = delete;
  ResponseParser& operator=(const ResponseParser&) = delete;

  Step feed(std::string_view data);
  // The peer closed the connection: completes a body delimited by the close, else kError.
  Step finish();

  // True once any byte of a response (an interim one included) has been fed.
  bool started() const { return started_; }

  // After kMessageComplete.
  HttpResponse take_response() { return std::move(response_); }
  // Whether the connection may carry another request (not "Connection: close", not a
  // close-delimited body, HTTP/1.1 or 1.0 keep-alive).
  bool keep_alive() const { return keep_alive_; }

  // After kError: kDataLoss (malformed) or kResourceExhausted (a limit), with the reason.
  const Status& error() const { return error_; }

 private:
  struct Llhttp;
  friend struct ResponseCallbacks;

  Step feed_one(std::string_view data);
  Step fail(Status status, std::size_t consumed);
  std::size_t scan_head(std::string_view data);
  std::size_t scan_chunked(std::string_view data);
  int on_headers_complete();
  void reset_head();

  ResponseLimits limits_;
  bool head_request_;
  std::unique_ptr<Llhttp> llhttp_;
  bool started_ = false;
  bool in_body_ = false;
  bool closed_ = false;

  // Head scanner (restarted after every interim response).
  std::size_t head_bytes_ = 0;
  std::size_t field_count_ = 0;
  std::size_t line_index_ = 0;  // 0: the status line
  bool line_empty_ = true;
  bool in_name_ = false;
  bool prev_cr_ = false;
  bool head_done_ = false;
  std::string status_line_;
  Status scan_error_;

  // Chunked-body scanner (mirrors RequestParser's).
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

  HttpResponse response_;
  std::string field_;
  std::string value_;
  bool headers_done_ = false;
  bool message_done_ = false;
  bool interim_ = false;
  bool keep_alive_ = false;
  Status error_;
};

}  // namespace civicbus::http::detail
