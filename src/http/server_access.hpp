// For the library's own components: the event loops of an HttpServer's workers, so that work
// done for a connection (an upstream exchange of the gateway) runs on the connection's thread
// without locks or thread hops.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "civicbus/http/server.hpp"

namespace civicbus::http::detail {

// What an awaitable handler adds to its response: header lines of its own, "Name: value\r\n"
// each, which the server writes after the response's fields as they are, without making
// HttpHeaders entries of them (the gateway's request id, RateLimit fields and Via, and a
// proxied response's fields). The handler vouches for them: no CR, LF or NUL but the line ends,
// and no Content-Length, Transfer-Encoding or Connection; when they carry a Date or a Server
// field it says so, and the server adds none of its own.
struct OwnFields {
  std::string lines;
  bool has_date = false;
  bool has_server = false;
  void clear() {
    lines.clear();
    has_date = has_server = false;
  }
};

// A handler that runs inside the connection's own coroutine, on its worker (given by index):
// what it awaits (the gateway's upstream exchange) needs no responder, no wake-up of the
// connection and no coroutine of its own. A throw answers 500.
// The request and the response are the connection's own, valid until the handler returns:
// it may take the request apart, and it writes the response in place (set `response` whole,
// or let an HttpClient write into it), so neither is moved from coroutine to coroutine.
// `own` is empty when the handler starts, and left out when it throws.
using AwaitableHandler = std::function<asio::awaitable<void>(
    HttpRequest& request, HttpResponse& response, OwnFields& own, std::size_t worker)>;

struct ServerAccess {
  static std::unique_ptr<HttpServer> create_awaitable(HttpServerOptions options,
                                                      AwaitableHandler handler);
  // Valid from the server's construction until its destruction; worker < options.threads.
  static asio::io_context& worker_io(HttpServer& server, std::size_t worker);
  static std::size_t worker_count(const HttpServer& server);
};

}  // namespace civicbus::http::detail
