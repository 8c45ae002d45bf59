// ResponseParser: the client's HTTP/1.1 response parser, llhttp in HTTP_RESPONSE mode (no
// lenient flags) plus our own byte scanners where llhttp is lenient, as strict as the
// server's RequestParser (the scanners are the same ones, framing.hpp):
//
//  - the header section (HeadScanner): bare CR, bare LF, obs-fold, whitespace before a
//    colon, field count and byte limits; the status line shape is checked here, and an empty
//    line before it is refused;
//  - at the end of the header section: one Content-Length at most, digits only; never with
//    Transfer-Encoding; Transfer-Encoding only "chunked", last and once; 101 refused (the
//    client never asks for an upgrade);
//  - chunked bodies (ChunkScanner): hex sizes without overflow, the CRLF after chunk data
//    (llhttp 8.1 skips those two bytes unchecked), extensions and trailer lines;
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
#include <utility>

#include "civicbus/core/status.hpp"
#include "civicbus/http/message.hpp"
#include "http/framing.hpp"

namespace civicbus::http::detail {

struct ResponseLimits {
  std::size_t max_header_count = 100;
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 8 * 1024 * 1024;
};

// Takes a response's header fields instead of the parser's HttpResponse (a proxy writes them
// on as lines, without making HttpHeaders entries of them).
class FieldSink {
 public:
  virtual ~FieldSink() = default;
  // A head starts: forget the fields given so far (those of a 1xx interim response, or of an
  // earlier attempt's).
  virtual void restart() = 0;
  // One field in arrival order, the value without surrounding whitespace; the views are valid
  // during the call. The parser has checked both (a token; no CR, LF or other control byte
  // but HTAB), and checks the framing fields itself.
  virtual void field(std::string_view name, std::string_view value) = 0;
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

  // Makes the parser ready for the next response on the same connection, as if new (a pooled
  // connection keeps one parser instead of allocating one per exchange).
  void reset(bool head_request);

  // The fields of the response to come go to `sink` (null: to the response's headers), which
  // must outlive the parse. Call after reset(), before feeding; restarts the sink.
  void set_sink(FieldSink* sink);

  Step feed(std::string_view data);
  // The peer closed the connection: completes a body delimited by the close, else kError.
  Step finish();

  // True once any byte of a response (an interim one included) has been fed.
  bool started() const { return started_; }

  // After kMessageComplete.
  HttpResponse take_response() { return std::move(response_); }
  // The same into `into`, swapped with it: the parser clears what `into` held and parses the
  // next response into that room, so a connection's responses reuse their buffers.
  void take_response(HttpResponse& into) { std::swap(into, response_); }
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
  // Records the finding of a scanner (framing.hpp) that scanned `n` bytes as scan_error_;
  // returns `n`.
  std::size_t scanned(const FramingFindings& scanner, std::size_t n);
  int on_headers_complete();
  void reset_head();

  ResponseLimits limits_;
  bool head_request_;
  std::unique_ptr<Llhttp> llhttp_;
  bool started_ = false;
  bool in_body_ = false;
  bool closed_ = false;

  // Head scanner (restarted after every interim response) and chunked-body scanner
  // (framing.hpp); their findings, as a Status.
  HeadScanner head_;
  Status scan_error_;

  bool chunked_ = false;
  ChunkScanner chunks_;

  HttpResponse response_;
  FieldSink* sink_ = nullptr;
  FieldSpans field_;  // the field being parsed
  // The framing fields, counted as they arrive (the fields may go to a sink).
  std::size_t content_lengths_ = 0;
  std::string content_length_;     // the last Content-Length value
  bool encoded_ = false;           // a Transfer-Encoding field came
  std::string transfer_encoding_;  // their values joined with ", "
  bool headers_done_ = false;
  bool message_done_ = false;
  bool interim_ = false;
  bool keep_alive_ = false;
  Status error_;
};

}  // namespace civicbus::http::detail
