// HttpClient: an HTTP/1.1 client (no TLS yet) with a connection pool per upstream
// (host:port), keep-alive reuse, timeouts and retries with exponential backoff.
//
// Responses are parsed as strictly as the server parses requests (RFC 9112): a response whose
// framing could be read two ways (Content-Length with Transfer-Encoding, two Content-Lengths,
// a chunk without its CRLF, bare LF, obs-fold, ...) is refused with kDataLoss and its
// connection closed.
//
// Retries. A request is sent at most 1 + max_retries times:
//  - a connect failure is retried for every method (nothing was sent);
//  - a reused pooled connection that the server had closed (EOF or reset before any response
//    byte) is retried at once on a fresh connection, for idempotent methods only (GET, HEAD,
//    PUT, DELETE, OPTIONS, TRACE); a POST or PATCH may have reached the server, so it fails
//    with kUnavailable instead. Pooled connections are also checked for a pending close
//    before a request is written, which needs no retry;
//  - 502, 503 and 504 answers are retried for idempotent methods; after the last attempt the
//    response itself is returned.
// The n-th retry waits min(retry_max_backoff, retry_initial_backoff * 2^(n-1)) (no jitter
// yet). Timeouts, malformed responses and limits are not retried.
//
// Threads: for now the client owns an Asio io_context and one thread that runs every
// exchange (the Node's executor will drive it later). Callbacks of send_async run on that
// thread; they must not call the blocking send() nor destroy the client.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "civicbus/core/status.hpp"
#include "civicbus/export.hpp"
#include "civicbus/http/message.hpp"
#include "civicbus/http/tls.hpp"

namespace civicbus::http {

// Where requests go: a host name or IP address and a TCP port. Connections are pooled per
// upstream (per "host:port" text, so "localhost:80" and "127.0.0.1:80" are two pools).
struct CIVICBUS_EXPORT Upstream {
  std::string host;
  std::uint16_t port = 0;

  // "host:port" or "[v6-address]:port". kInvalidArgument when malformed.
  static Result<Upstream> parse(std::string_view host_port);
  // "host:port" ("[::1]:8080" for IPv6 addresses), as errors and the Host field name it.
  std::string to_string() const;
};

struct CIVICBUS_EXPORT HttpClientOptions {
  // Resolving and connecting one TCP connection.
  std::chrono::milliseconds connect_timeout{5'000};
  // The whole call: waiting for a pooled connection, connecting, writing the request, reading
  // the response, and every retry and backoff wait. Then kDeadlineExceeded.
  std::chrono::milliseconds request_timeout{30'000};
  // Open connections per upstream (in use + idle); further requests wait for one.
  std::size_t max_connections_per_upstream = 8;
  // An idle pooled connection older than this is closed instead of reused.
  std::chrono::milliseconds idle_connection_lifetime{30'000};
  // Retries after the first attempt (see the header comment for which failures).
  std::size_t max_retries = 2;
  std::chrono::milliseconds retry_initial_backoff{50};
  std::chrono::milliseconds retry_max_backoff{1'000};
  std::size_t max_response_header_count = 100;
  std::size_t max_response_header_bytes = 16 * 1024;  // status line + fields: kResourceExhausted
  std::size_t max_response_body_bytes = 8 * 1024 * 1024;  // decoded body: kResourceExhausted
  // TLS to every upstream of this client (https); nullopt: plain HTTP. The handshake runs
  // under connect_timeout; a failed certificate check is kUnauthenticated and not retried.
  std::optional<TlsClientOptions> tls;

  Status validate() const;
};

namespace detail {
struct ClientAccess;
}

// Called once per send_async, on the client's thread.
using HttpResponseCallback = std::function<void(Result<HttpResponse>)>;

class CIVICBUS_EXPORT HttpClient {
 public:
  // Starts the client's thread. Options are validated by create().
  static Result<std::unique_ptr<HttpClient>> create(HttpClientOptions options = {});
  // Closes every connection and joins the thread; send_async calls still in flight get
  // kCancelled. Must not be called from a callback.
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends `request` (method, target, headers, body; path/query/version_minor are ignored)
  // and waits for the response. Host (when absent), Content-Length (when there is a body or
  // the method is POST, PUT or PATCH) and "Connection: keep-alive" are added;
  // Transfer-Encoding, Content-Length and Connection set by the caller are replaced.
  // Errors name the upstream: kInvalidArgument (bad request or target), kUnavailable
  // (connect refused, connection lost), kDeadlineExceeded (request_timeout or
  // connect_timeout), kDataLoss (malformed response), kResourceExhausted (response limits),
  // kCancelled (the client is being destroyed), kFailedPrecondition (called from a
  // send_async callback, where it would deadlock). Any status code is a successful result.
  Result<HttpResponse> send(const Upstream& upstream, HttpRequest request);
  Result<HttpResponse> send(std::string_view host_port, HttpRequest request);

  // The same, asynchronously: `done` is called exactly once, on the client's thread.
  void send_async(const Upstream& upstream, HttpRequest request, HttpResponseCallback done);
  void send_async(std::string_view host_port, HttpRequest request, HttpResponseCallback done);

 private:
  friend struct detail::ClientAccess;  // src/http/client_access.hpp
  struct Impl;
  explicit HttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// True for GET, HEAD, PUT, DELETE, OPTIONS and TRACE (RFC 9110 9.2.2).
CIVICBUS_EXPORT bool is_idempotent_method(std::string_view method);

}  // namespace civicbus::http
