// HttpServer: an HTTP/1.1 server (no TLS yet) that hands every well-framed request to one
// handler. Framing is strict (RFC 9112): anything a proxy in front could read differently
// (Content-Length with Transfer-Encoding, duplicate Content-Length, obfuscated
// Transfer-Encoding, obs-fold, bare CR or LF, ...) is answered 400 and the connection closed,
// without calling the handler.
//
// Threads: the server owns `threads` workers, each one thread running its own event loop (as
// nginx runs worker processes); an accepted connection stays on one worker for its life. The
// handler runs on the connection's worker, one request at a time per connection, possibly
// concurrently across connections on different workers.
//
// Handlers come in two forms. A blocking HttpHandler returns the response; it holds its
// worker (and every connection on it) until it returns, so it suits quick in-process work.
// An HttpAsyncHandler gets the request and an HttpResponder and returns at once; the response
// is sent when the responder is called, from any thread. A proxy waits for its upstream this
// way without holding the worker.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"
#include "civicbus/http/message.hpp"
#include "civicbus/http/tls.hpp"

namespace civicbus::http {

struct CIVICBUS_EXPORT HttpServerOptions {
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
  // TLS on the listener (certificate chains, SNI, mutual TLS); nullopt: plain HTTP. The TLS
  // handshake runs under header_timeout.
  std::optional<TlsServerOptions> tls;

  Status validate() const;
};

// Called once per request, on a server thread. May throw; the client then gets 500. The
// request reference is valid only during the call.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

namespace detail {
struct ResponseSlot;
struct ServerAccess;
}  // namespace detail

// The way back to the client for one request of an HttpAsyncHandler. Move-only. send() may be
// called once, from any thread; a responder destroyed unsent answers 500. It must be sent or
// destroyed before the HttpServer is destroyed. When the connection is gone meanwhile (the
// client left, the server stopped), send() drops the response.
class CIVICBUS_EXPORT HttpResponder {
 public:
  HttpResponder() = default;
  explicit HttpResponder(std::shared_ptr<detail::ResponseSlot> slot);
  HttpResponder(HttpResponder&&) noexcept = default;
  HttpResponder& operator=(HttpResponder&& other) noexcept;
  ~HttpResponder();

  void send(HttpResponse response);
  // Which worker of the server runs the connection: 0 .. threads-1. Work that keeps
  // per-worker state (connection pools) picks its share with it.
  std::size_t worker() const;
  explicit operator bool() const { return slot_ != nullptr; }

 private:
  std::shared_ptr<detail::ResponseSlot> slot_;
};

// Called once per request on the connection's worker; takes the request by value (it may be
// moved on) and must eventually send() the responder. May throw before it moved the responder
// away; the client then gets 500.
using HttpAsyncHandler = std::function<void(HttpRequest, HttpResponder)>;

class CIVICBUS_EXPORT HttpServer {
 public:
  HttpServer(HttpServerOptions options, HttpHandler handler);
  HttpServer(HttpServerOptions options, HttpAsyncHandler handler);
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

  // Re-reads the TLS certificate and key files (or switches to `options`): new connections
  // get the new certificates, open ones keep theirs. Fails, keeping the old ones, when a file
  // does not load; kFailedPrecondition without TLS.
  Status reload_tls();
  Status reload_tls(const TlsServerOptions& options);

 private:
  friend struct detail::ServerAccess;  // src/http/server_access.hpp: the workers' event loops

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace civicbus::http
