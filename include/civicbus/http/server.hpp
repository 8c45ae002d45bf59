// HttpServer: an HTTP/1.1 server (no TLS yet) that hands every well-framed request to one
// handler. Framing is strict (RFC 9112): anything a proxy in front could read differently
// (Content-Length with Transfer-Encoding, duplicate Content-Length, obfuscated
// Transfer-Encoding, obs-fold, bare CR or LF, ...) is answered 400 and the connection closed,
// without calling the handler.
//
// Threads: for now the server owns its own Asio io_context and `threads` worker threads (the
// Node's executor will drive it later). The handler runs on those threads, one request at a
// time per connection, possibly concurrently across connections.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "civicbus/core/status.hpp"
#include "civicbus/http/message.hpp"

namespace civicbus::http {

struct HttpServerOptions {
  std::string bind_address = "127.0.0.1";
  std::uint16_t port = 0;  // 0: an ephemeral port, see HttpServer::port()
  std::size_t threads = 1;

  std::size_t max_header_count = 100;        // more fields: 431
  std::size_t max_header_bytes = 16 * 1024;  // request line + fields, with CRLFs: 431
  std::size_t max_body_bytes = 1024 * 1024;  // decoded body: 413
  // From the first byte of a request (or the accept) until its header section is complete.
  // A client that trickles bytes does not extend it. Then 408 and close.
  std::chrono::milliseconds header_timeout{10'000};
  // From the end of the header section until the body is complete. Then 408 and close.
  std::chrono::milliseconds body_timeout{30'000};
  // A kept-alive connection with no request started is closed (silently) after this.
  std::chrono::milliseconds idle_timeout{60'000};
  // Requests parsed ahead of the responses written: a pipelining client gets its answers in
  // batches of at most this many, and nothing more is read meanwhile.
  std::size_t max_pipelined_requests = 16;

  Status validate() const;
};

// Called once per request, on a server thread. May throw; the client then gets 500. The
// request reference is valid only during the call.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, HttpHandler handler);
  ~HttpServer();  // stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens and starts the threads; returns the bound port. Fails with
  // kInvalidArgument for bad options, kUnavailable when the address cannot be bound and
  // kFailedPrecondition when already started.
  Result<std::uint16_t> start();
  // The bound port (after a successful start()), else 0.
  std::uint16_t port() const;
  // Closes the listener and every connection and joins the threads; waits for handlers that
  // are running. Idempotent. Must not be called from the handler (it would join itself).
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace civicbus::http
