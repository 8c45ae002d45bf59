// For the library's own components: an HttpClient that runs on an event loop it is lent (an
// HttpServer worker's), so that a proxied exchange stays on the connection's thread.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "civicbus/http/client.hpp"

namespace civicbus::http::detail {

class FieldSink;  // response_parser.hpp

struct ClientAccess {
  // A client without a thread of its own: its exchanges and callbacks run on `io`, which must
  // be run by exactly one thread (pools are not locked) and outlive the client. Shut it down
  // with shut_down() while `io` still runs; destroy it once `io` has stopped, or from `io`'s
  // thread when no exchange is in flight.
  static Result<std::unique_ptr<HttpClient>> create_on(asio::io_context& io,
                                                       HttpClientOptions options);
  // Cancels every exchange in flight (their callbacks get kCancelled, on `io`) and closes the
  // pooled connections; later sends fail with kCancelled.
  static void shut_down(HttpClient& client);
  // What send_async does, awaited by a coroutine that already runs on the client's event loop
  // (a gateway connection's), for a request the caller has put on the wire itself: a request
  // line, then header fields with Host, Content-Length when there is a body (or the method is
  // POST, PUT or PATCH) and no Transfer-Encoding, "Connection: keep-alive", the empty line and
  // the body. Nothing in it is checked: its fields must be tokens and values without CR, LF or
  // NUL. kCancelled once the client is shut down. The response is written into `out`, which
  // must outlive the exchange (it is moved once, from the parser, however many coroutines the
  // exchange passes through). `upstream` must outlive the exchange too. With a `sink`
  // (response_parser.hpp), which must outlive the exchange too, the response's header fields go
  // there instead of out.headers, and a 502, 503 or 504 is passed on without a retry (the sink has
  // its fields).
  static asio::awaitable<Status> send_wire(HttpClient& client, const Upstream& upstream,
                                           std::string wire, HttpResponse& out,
                                           FieldSink* sink = nullptr);
  // Ends a wire request after its fields as send_wire wants it (and as the client's own are):
  // Content-Length when there is a body or the method is POST, PUT or PATCH, "Connection:
  // keep-alive", the empty line, the body.
  static void end_wire(std::string& wire, std::string_view method, std::string_view body);
};

}  // namespace civicbus::http::detail
