// The client: every call is one coroutine (`exchange`) on the client's single io thread, so
// the pools need no lock. An exchange has one timer, used in turn to wait for a pooled
// connection, as the deadline of a connect or a request/response round trip (the timer closes
// the socket when it fires) and for backoff between retries. The destructor cancels every
// exchange through the same timer and socket, so each ends with kCancelled.
#include "civicbus/http/client.hpp"

#include <algorithm>
#include <array>
#include <asio.hpp>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "http/client_access.hpp"
#include "http/edge_reads.hpp"
#include "http/framing.hpp"
#include "http/response_parser.hpp"
#include "http/tls.hpp"

namespace civicbus::http {

using namespace std::string_view_literals;

namespace {

using asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

// http/framing.hpp
using detail::is_framing_field;
using detail::is_safe_field_text;
using detail::is_token;

// A pooled TCP connection.
struct Connection {
  explicit Connection(asio::io_context& io) : socket(io) {}
  // Closes the socket; a read waiting on it ends (operation_aborted).
  void close() {
    reader.cancel();
    asio::error_code ignored;
    socket.close(ignored);
  }
  tcp::socket socket;
  detail::EdgeReader reader;  // socket's reads, without TLS (attached once connected)
  // The read buffer, kept with the connection: a 16 KiB array in each round trip's coroutine
  // frame would be a large allocation per request (and makes glibc consolidate its bins).
  std::array<char, 16 * 1024> buffer;
  std::unique_ptr<detail::TlsStream> tls;          // over `socket`, for an https client
  std::unique_ptr<detail::ResponseParser> parser;  // reset for each exchange
  SteadyClock::time_point idle_since{};
  bool reused = false;  // it carried an earlier exchange
};

struct Exchange;

struct Pool {
  std::string name;                               // "host:port", its key in Impl::pools
  std::vector<std::unique_ptr<Connection>> idle;  // most recently used last
  std::size_t open = 0;                           // idle + in use + connecting
  std::deque<Exchange*> waiters;
};

// One send: its timer and the socket of its current operation, so that the destructor can
// cancel it.
struct Exchange {
  explicit Exchange(asio::io_context& io) : io(io) {}
  // Made when first needed (a connect, a wait for the pool, a backoff): most exchanges take a
  // pooled connection and never wait on it.
  asio::steady_timer& timer() {
    if (!timer_) timer_ = std::make_unique<asio::steady_timer>(io);
    return *timer_;
  }
  void cancel_timer() {
    if (timer_) timer_->cancel();
  }
  asio::io_context& io;
  // On the heap: the exchange lives in run_exchange's coroutine frame, which Asio recycles
  // only up to 1,020 bytes (see run_exchange).
  std::unique_ptr<asio::steady_timer> timer_;
  Connection* conn = nullptr;  // whose socket the current operation uses
  bool woken = false;
  bool cancelled = false;
  Exchange* prev = nullptr;  // in Impl::active
  Exchange* next = nullptr;
};

// Arms `timer` for `deadline`; when it passes while the Watch lives, `on_fire` runs (it
// closes the socket of the operation in progress, which then fails).
class Watch {
 public:
  Watch(asio::steady_timer& timer, SteadyClock::time_point deadline, std::function<void()> on_fire)
      : timer_(timer), state_(std::make_shared<State>()) {
    timer_.expires_at(deadline);
    timer_.async_wait([state = state_, on_fire = std::move(on_fire)](const asio::error_code& ec) {
      if (ec || !state->armed) return;
      state->fired = true;
      on_fire();
    });
  }
  ~Watch() {
    state_->armed = false;
    timer_.cancel();
  }
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;
  bool fired() const { return state_->fired; }

 private:
  struct State {
    bool armed = true;
    bool fired = false;
  };
  asio::steady_timer& timer_;
  std::shared_ptr<State> state_;
};

// A pending close, or bytes nobody asked for, on an idle connection: not reusable. The socket
// is in non-blocking mode since its connect (connect()).
bool is_stale(tcp::socket& socket) {
  asio::error_code ec;
  char byte;
  socket.receive(asio::buffer(&byte, 1), tcp::socket::message_peek, ec);
  return ec != asio::error::would_block;
}

// How often overdue round trips are looked for (Impl::Deadline): the resolution of timeouts.
constexpr std::chrono::milliseconds kSweepInterval{10};

// See acquire(): idle time after which even an idempotent request's connection is peeked at.
constexpr std::chrono::milliseconds kPeekAfter{1'000};

std::string ms_text(std::chrono::milliseconds ms) {
  return std::to_string(ms.count()) + " ms";
}

// How one attempt ended (the response itself goes to run_exchange's `out`).
struct Attempt {
  Status result;               // OK: a whole response is in `out`
  bool reusable = false;       // the connection may go back to the pool
  bool bytes_sent = false;     // some of the request was written
  bool response_seen = false;  // some of a response was read
  bool lost = false;           // EOF or a socket error (not a timeout, not a parse error)
};

}  // namespace

// ---- Upstream, options ----------------------------------------------------------------------

Result<Upstream> Upstream::parse(std::string_view host_port) {
  auto bad = [&] {
    return invalid_argument("upstream '" + std::string(host_port) +
                            "' is not host:port (e.g. 'permits.internal:8080' or '[::1]:80')");
  };
  std::string_view host;
  std::string_view port;
  if (!host_port.empty() && host_port.front() == '[') {
    const std::size_t close = host_port.find(']');
    if (close == std::string_view::npos || close + 1 >= host_port.size() ||
        host_port[close + 1] != ':') {
      return bad();
    }
    host = host_port.substr(1, close - 1);
    port = host_port.substr(close + 2);
  } else {
    const std::size_t colon = host_port.rfind(':');
    if (colon == std::string_view::npos) return bad();
    host = host_port.substr(0, colon);
    port = host_port.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad();
  }
  if (host.empty() || port.empty() || port.size() > 5) return bad();
  unsigned value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return bad();
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) return bad();
  for (char c : host) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == '/' || c == '@' || c == 0x7f) return bad();
  }
  return Upstream{std::string(host), static_cast<std::uint16_t>(value)};
}

std::string Upstream::to_string() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Status HttpClientOptions::validate() const {
  if (tls) CIVICBUS_RETURN_IF_ERROR(tls->validate().with_context("HttpClientOptions.tls"));
  if (connect_timeout.count() <= 0 || request_timeout.count() <= 0) {
    return invalid_argument("HttpClientOptions timeouts must be positive");
  }
  if (max_connections_per_upstream == 0) {
    return invalid_argument("HttpClientOptions.max_connections_per_upstream must be at least 1");
  }
  if (idle_connection_lifetime.count() < 0 || retry_initial_backoff.count() < 0 ||
      retry_max_backoff < retry_initial_backoff) {
    return invalid_argument(
        "HttpClientOptions: idle_connection_lifetime and retry_initial_backoff must not be "
        "negative, and retry_max_backoff must be at least retry_initial_backoff");
  }
  if (max_response_header_count == 0 || max_response_header_bytes == 0) {
    return invalid_argument("HttpClientOptions response header limits must be positive");
  }
  return Status();
}

bool is_idempotent_method(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" ||
         method == "OPTIONS" || method == "TRACE";
}

// ---- the client -------------------------------------------------------------------------------

struct HttpClient::Impl {
  HttpClientOptions options;
  std::shared_ptr<const detail::TlsClientContext> tls;  // with options.tls
  // The event loop: the client's own, run by `thread`, or one lent by create_on().
  std::unique_ptr<asio::io_context> own_io;
  asio::io_context* io = nullptr;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  std::thread thread;

  std::mutex mu;  // guards stopping
  bool stopping = false;

  // On the io thread only.
  std::unordered_map<std::string, Pool> pools;
  Exchange* active = nullptr;  // the exchanges in progress: an intrusive list, newest first
  bool shut_down = false;

  asio::awaitable<void> exchange(Upstream upstream, HttpRequest request, HttpResponseCallback done);
  // One send on the io thread, from the first attempt to the outcome (kCancelled when the
  // client shuts down meanwhile): what exchange() and ClientAccess::send_wire await.
  // `wire`: the whole request as sent (wire_of(), or a caller's own, see ClientAccess).
  // Its frame owns `wire`, so that ClientAccess::send_wire needs no frame of its own;
  // `upstream` must outlive it (exchange()'s frame owns its copy).
  // The response is written into `out` (OK) rather than returned: it is then moved once, from
  // the parser, instead of once more at each coroutine it passes through.
  // Its retries and each attempt's reads and writes run in its own frame (no coroutine per
  // attempt). That frame must stay within 1,020 bytes, the largest block Asio's recycling
  // allocator keeps: a larger one goes to malloc and back every request, evicting a kept block
  // on the way (measured: 1,136 bytes cost about 900 instructions per proxied request). Rare
  // state (the retry timer, a retried 5xx) is on the heap for that.
  asio::awaitable<Status> run_exchange(const Upstream& upstream, std::string wire,
                                       HttpResponse& out, detail::FieldSink* sink = nullptr);
  // The pool of `upstream`; the last one found is remembered, so that a run of requests to one
  // upstream neither formats its name nor hashes it again. Pools are never erased.
  Pool& pool_for(const Upstream& upstream);
  Pool* last_pool = nullptr;
  Upstream last_upstream;
  asio::awaitable<Result<std::unique_ptr<Connection>>> acquire(Exchange& ex,
                                                               const Upstream& upstream, Pool& pool,
                                                               SteadyClock::time_point deadline,
                                                               bool fresh, bool idempotent);
  // What acquire() does without waiting: the pool's upkeep, then its most recently used idle
  // connection that is still usable, or null.
  // `now`: the time, when the caller has just read it.
  std::unique_ptr<Connection> take_idle(Pool& pool, bool fresh, bool idempotent,
                                        std::optional<SteadyClock::time_point> now = {});
  asio::awaitable<Result<std::unique_ptr<Connection>>> connect(Exchange& ex,
                                                               const Upstream& upstream,
                                                               SteadyClock::time_point deadline);
  class RoundTrip;
  void release(Pool& pool, std::unique_ptr<Connection> conn, bool reusable);
  void wake_one(Pool& pool);
  void shutdown();  // on the io thread

  // Round-trip deadlines. A timer per request (armed, then cancelled, its handler run) costs
  // more than the rest of an exchange's bookkeeping, so round trips register here instead and
  // one sweep timer, running only while some are registered, closes the socket of any that
  // is overdue. Timeouts fire up to kSweepInterval late.
  struct Deadline {
    SteadyClock::time_point at;
    Connection* conn = nullptr;
    bool fired = false;
    Deadline* prev = nullptr;
    Deadline* next = nullptr;
  };
  Deadline* deadlines = nullptr;  // an intrusive list, newest first
  std::unique_ptr<asio::steady_timer> sweep_timer;
  bool sweep_armed = false;
  // False once the Impl is gone: a sweep handler still queued on a lent event loop then does
  // nothing.
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
  ~Impl() { *alive = false; }
  void add_deadline(Deadline& d);
  void remove_deadline(Deadline& d);
  void arm_sweep();
};

void HttpClient::Impl::wake_one(Pool& pool) {
  if (pool.waiters.empty()) return;
  Exchange* ex = pool.waiters.front();
  pool.waiters.pop_front();
  ex->woken = true;
  ex->cancel_timer();
}

Pool& HttpClient::Impl::pool_for(const Upstream& upstream) {
  if (last_pool != nullptr && last_upstream.port == upstream.port &&
      last_upstream.host == upstream.host) {
    return *last_pool;
  }
  std::string name = upstream.to_string();
  Pool& pool = pools[name];
  if (pool.name.empty()) pool.name = std::move(name);
  last_pool = &pool;
  last_upstream = upstream;
  return pool;
}

void HttpClient::Impl::release(Pool& pool, std::unique_ptr<Connection> conn, bool reusable) {
  if (reusable && !shut_down) {
    conn->idle_since = SteadyClock::now();
    conn->reused = true;
    pool.idle.push_back(std::move(conn));
  } else {
    conn->close();
    --pool.open;
  }
  wake_one(pool);
}

void HttpClient::Impl::add_deadline(Deadline& d) {
  d.next = deadlines;
  if (deadlines != nullptr) deadlines->prev = &d;
  deadlines = &d;
  if (!sweep_armed) arm_sweep();
}

void HttpClient::Impl::remove_deadline(Deadline& d) {
  if (d.prev != nullptr) d.prev->next = d.next;
  if (d.next != nullptr) d.next->prev = d.prev;
  if (deadlines == &d) deadlines = d.next;
  d.prev = d.next = nullptr;
}

void HttpClient::Impl::arm_sweep() {
  if (!sweep_timer) sweep_timer = std::make_unique<asio::steady_timer>(*io);
  sweep_armed = true;
  sweep_timer->expires_after(kSweepInterval);
  sweep_timer->async_wait([this, alive = alive](const asio::error_code& ec) {
    if (!*alive) return;
    sweep_armed = false;
    if (ec || shut_down) return;
    const SteadyClock::time_point now = SteadyClock::now();
    for (Deadline* d = deadlines; d != nullptr; d = d->next) {
      if (!d->fired && now >= d->at) {
        d->fired = true;
        d->conn->close();
      }
    }
    if (deadlines != nullptr) arm_sweep();
  });
}

void HttpClient::Impl::shutdown() {
  shut_down = true;
  if (sweep_timer) sweep_timer->cancel();
  for (auto& [key, pool] : pools) {
    for (auto& conn : pool.idle) {
      conn->close();
    }
    pool.open -= pool.idle.size();
    pool.idle.clear();
  }
  for (Exchange* ex = active; ex != nullptr; ex = ex->next) {
    ex->cancelled = true;
    if (ex->conn != nullptr) ex->conn->close();
    ex->cancel_timer();
  }
}

asio::awaitable<Result<std::unique_ptr<Connection>>> HttpClient::Impl::connect(
    Exchange& ex, const Upstream& upstream, SteadyClock::time_point deadline) {
  const std::string name = upstream.to_string();
  const SteadyClock::time_point connect_deadline =
      std::min(deadline, SteadyClock::now() + options.connect_timeout);
  auto conn = std::make_unique<Connection>(*io);
  asio::error_code ec;
  std::vector<tcp::endpoint> endpoints;
  const asio::ip::address address = asio::ip::make_address(upstream.host, ec);
  bool fired = false;
  if (!ec) {
    endpoints.emplace_back(address, upstream.port);
  } else {
    tcp::resolver resolver(*io);
    Watch watch(ex.timer(), connect_deadline, [&resolver] { resolver.cancel(); });
    const auto results =
        co_await resolver.async_resolve(upstream.host, std::to_string(upstream.port),
                                        asio::redirect_error(asio::use_awaitable, ec));
    fired = watch.fired();
    if (ex.cancelled) co_return cancelled("request to upstream " + name + " cancelled");
    if (ec && !fired) {
      co_return unavailable("cannot resolve upstream " + name + ": " + ec.message());
    }
    for (const auto& entry : results) endpoints.push_back(entry.endpoint());
  }
  if (!fired) {
    Watch watch(ex.timer(), connect_deadline, [&conn] { conn->close(); });
    ex.conn = conn.get();
    co_await asio::async_connect(conn->socket, endpoints,
                                 asio::redirect_error(asio::use_awaitable, ec));
    ex.conn = nullptr;
    fired = watch.fired();
  }
  if (ex.cancelled) co_return cancelled("request to upstream " + name + " cancelled");
  if (fired) {
    co_return deadline_exceeded(
        "connecting to upstream " + name + " took longer than " +
        ms_text(connect_deadline == deadline ? options.request_timeout : options.connect_timeout));
  }
  if (ec) co_return unavailable("cannot connect to upstream " + name + ": " + ec.message());
  conn->socket.set_option(tcp::no_delay(true), ec);
  // Non-blocking for is_stale's peek, the direct write and the reader (Asio's own I/O is
  // unaffected).
  conn->socket.non_blocking(true, ec);
  if (!tls) conn->reader.attach(conn->socket, *io);
  if (tls) {
    auto stream = detail::TlsStream::client(conn->socket, tls, upstream.host);
    if (!stream.ok()) co_return stream.status().with_context("upstream " + name);
    conn->tls = std::move(stream).value();
    Watch watch(ex.timer(), connect_deadline, [&conn] { conn->close(); });
    ex.conn = conn.get();
    Status handshake = co_await conn->tls->handshake();
    ex.conn = nullptr;
    if (ex.cancelled) co_return cancelled("request to upstream " + name + " cancelled");
    if (watch.fired()) {
      co_return deadline_exceeded("the TLS handshake with upstream " + name + " took longer than " +
                                  ms_text(options.connect_timeout));
    }
    if (!handshake.ok()) co_return handshake;
  }
  co_return std::move(conn);
}

std::unique_ptr<Connection> HttpClient::Impl::take_idle(
    Pool& pool, bool fresh, bool idempotent, std::optional<SteadyClock::time_point> read) {
  const SteadyClock::time_point now = read ? *read : SteadyClock::now();
  auto drop = [&](std::unique_ptr<Connection>& conn) {
    conn->close();
    --pool.open;
  };
  // The oldest idle connection, when past its lifetime, is dropped (one per call keeps this
  // O(1); the LIFO reuse below leaves the old ones at the front).
  if (!pool.idle.empty() &&
      now - pool.idle.front()->idle_since >= options.idle_connection_lifetime) {
    drop(pool.idle.front());
    pool.idle.erase(pool.idle.begin());
  }
  if (fresh && !pool.idle.empty() && pool.open >= options.max_connections_per_upstream) {
    drop(pool.idle.front());
    pool.idle.erase(pool.idle.begin());
  }
  // The most recently used idle connection, unless it is past its lifetime or the server
  // closed it meanwhile. The check (a non-blocking peek, one system call) is skipped for an
  // idempotent request on a connection idle for less than kPeekAfter: a server closing so
  // soon is rare, and that request is then retried at once on a fresh connection anyway
  // (run_exchange). A POST or PATCH is always checked, since it cannot be resent.
  while (!fresh && !pool.idle.empty()) {
    std::unique_ptr<Connection> conn = std::move(pool.idle.back());
    pool.idle.pop_back();
    const auto idle = now - conn->idle_since;
    const bool check = !idempotent || idle >= kPeekAfter;
    if (idle >= options.idle_connection_lifetime || (check && is_stale(conn->socket))) {
      drop(conn);
      continue;
    }
    return conn;
  }
  return nullptr;
}

asio::awaitable<Result<std::unique_ptr<Connection>>> HttpClient::Impl::acquire(
    Exchange& ex, const Upstream& upstream, Pool& pool, SteadyClock::time_point deadline,
    bool fresh, bool idempotent) {
  const std::string& key = pool.name;
  // The caller has just tried take_idle(); it is tried again after each wait.
  for (bool waited = false;; waited = true) {
    if (ex.cancelled) co_return cancelled("request to upstream " + key + " cancelled");
    if (waited) {
      if (auto conn = take_idle(pool, fresh, idempotent)) co_return std::move(conn);
    }
    if (pool.open < options.max_connections_per_upstream) {
      ++pool.open;
      auto conn = co_await connect(ex, upstream, deadline);
      if (!conn.ok()) {
        --pool.open;
        wake_one(pool);
      }
      co_return conn;
    }
    // Every connection is busy: wait for one to be released (or closed).
    ex.woken = false;
    ex.timer().expires_at(deadline);
    pool.waiters.push_back(&ex);
    asio::error_code ec;
    co_await ex.timer().async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!ex.woken) {
      std::erase(pool.waiters, &ex);
      if (ex.cancelled) co_return cancelled("request to upstream " + key + " cancelled");
      co_return deadline_exceeded("no connection to upstream " + key + " became free within " +
                                  ms_text(options.request_timeout) + " (" +
                                  std::to_string(options.max_connections_per_upstream) +
                                  " connections busy)");
    }
  }
}

// One attempt on one connection, awaited in run_exchange's own frame (a coroutine of its own
// would cost a frame and a resumption per request): what must hold while it runs, and what it
// has found. While it lives, the attempt is registered for the sweep (see Impl::Deadline), the
// exchange names the connection (for shutdown()) and the connection's parser holds `sink`.
class HttpClient::Impl::RoundTrip {
 public:
  RoundTrip(Impl& impl, Exchange& ex, Connection& conn, SteadyClock::time_point deadline,
            bool head_request, detail::FieldSink* sink)
      : impl_(impl), ex_(ex), conn_(conn) {
    deadline_.at = deadline;
    deadline_.conn = &conn;
    impl.add_deadline(deadline_);
    ex.conn = &conn;
    if (!conn.parser) {
      const HttpClientOptions& o = impl.options;
      conn.parser = std::make_unique<detail::ResponseParser>(
          detail::ResponseLimits{o.max_response_header_count, o.max_response_header_bytes,
                                 o.max_response_body_bytes},
          head_request);
    } else {
      conn.parser->reset(head_request);
    }
    conn.parser->set_sink(sink);
  }
  ~RoundTrip() {
    conn_.parser->set_sink(nullptr);  // the connection outlives the exchange, whose sink it is
    ex_.conn = nullptr;
    impl_.remove_deadline(deadline_);
  }
  RoundTrip(const RoundTrip&) = delete;
  RoundTrip& operator=(const RoundTrip&) = delete;

  // What one read brought: `n` bytes of the connection's buffer, or `ec`. True once the
  // attempt is over (`attempt` then says how; a whole response is in `response`).
  bool take(std::size_t n, asio::error_code ec, HttpResponse& response) {
    detail::ResponseParser& parser = *conn_.parser;
    detail::ResponseParser::Step step{detail::ResponseParser::Event::kNeedMore, 0};
    if (ec == asio::error::eof && !deadline_.fired && !ex_.cancelled) {
      attempt.response_seen = parser.started();
      step = parser.finish();
      if (step.event == detail::ResponseParser::Event::kError && !attempt.response_seen) {
        return fail(ec);
      }
    } else if (ec) {
      return fail(ec);
    } else {
      step = parser.feed(std::string_view(conn_.buffer.data(), n));
    }
    attempt.response_seen = parser.started();
    if (step.event == detail::ResponseParser::Event::kMessageComplete) {
      // Bytes after the response (nothing was asked for) make the connection unusable.
      attempt.reusable = !ec && parser.keep_alive() && step.consumed == n;
      parser.take_response(response);
      return true;
    }
    if (step.event == detail::ResponseParser::Event::kError) {
      attempt.result = parser.error().with_context("malformed response from upstream");
      return true;
    }
    return ec ? fail(ec) : false;
  }

  // The attempt ends on `ec` (a write's or a read's): the connection is lost, unless the
  // deadline or a cancellation closed it. True.
  bool fail(asio::error_code ec) {
    attempt.response_seen = conn_.parser->started();
    attempt.lost = !deadline_.fired && !ex_.cancelled;
    attempt.result =
        unavailable(ec == asio::error::eof ? std::string("connection closed") : ec.message());
    if (deadline_.fired) attempt.result = deadline_exceeded("timed out");
    if (ex_.cancelled) attempt.result = cancelled("cancelled");
    return true;
  }

  Attempt attempt;

 private:
  Impl& impl_;
  Exchange& ex_;
  Connection& conn_;
  Deadline deadline_;
};

namespace {

// The request on the wire: checked, since a caller's fields could split it, and built in one
// buffer sized up front.
Result<std::string> wire_of(const HttpRequest& request, std::string_view host_port) {
  if (!is_token(request.method)) {
    return invalid_argument("request method '" + request.method + "' is not a token");
  }
  const std::string_view target =
      request.target.empty() ? std::string_view("/") : std::string_view(request.target);
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return invalid_argument("request target '" + std::string(target) +
                              "' contains a space or control character");
    }
  }
  std::size_t size =
      request.method.size() + target.size() + host_port.size() + 64 + request.body.size();
  for (const auto& [field, value] : request.headers) size += field.size() + value.size() + 4;
  std::string wire;
  wire.reserve(size);
  detail::FieldWriter w(wire);
  w.text(request.method);
  w.text(" "sv);
  w.text(target);
  w.text(" HTTP/1.1\r\n"sv);
  if (!request.headers.contains("Host")) w.field("Host", host_port);
  for (const auto& [field, value] : request.headers) {
    if (!is_token(field) || !is_safe_field_text(value)) {
      return invalid_argument("request header '" + field +
                              "' has an invalid name or a CR, LF or NUL in its value");
    }
    if (is_framing_field(field)) continue;
    w.field(field, value);
  }
  w.flush();
  detail::ClientAccess::end_wire(wire, request.method, request.body);
  return wire;
}

}  // namespace

asio::awaitable<Status> HttpClient::Impl::run_exchange(const Upstream& upstream, std::string wire,
                                                       HttpResponse& out, detail::FieldSink* sink) {
  Exchange ex(*io);
  // In `active` while it runs, so that shutdown() reaches it.
  struct Registration {
    Exchange*& active;
    Exchange& ex;
    Registration(Exchange*& list, Exchange& e) : active(list), ex(e) {
      ex.next = active;
      if (active != nullptr) active->prev = &ex;
      active = &ex;
    }
    ~Registration() {
      if (ex.prev != nullptr) ex.prev->next = ex.next;
      if (ex.next != nullptr) ex.next->prev = ex.prev;
      if (active == &ex) active = ex.next;
    }
  } registration(active, ex);
  if (shut_down) co_return cancelled("HttpClient is shutting down");
  // An answer that came as the client shut down is not passed on.
  auto answered = [&ex] {
    return ex.cancelled ? cancelled("HttpClient is shutting down") : Status();
  };
  try {
    Pool& pool = pool_for(upstream);
    const std::string& name = pool.name;
    const SteadyClock::time_point start = SteadyClock::now();
    const SteadyClock::time_point deadline = start + options.request_timeout;
    // The request line's method and target, for the retry rules and the messages.
    const std::string_view line = std::string_view(wire).substr(0, wire.find('\r'));
    const std::size_t space = line.find(' ');
    const std::string_view method = line.substr(0, space);
    const std::string_view target =
        line.substr(space + 1, line.rfind(' ') == space ? 0 : line.rfind(' ') - space - 1);
    const bool idempotent = is_idempotent_method(method);

    Status last;
    std::size_t retries = 0;
    bool fresh = false;  // the next attempt must not reuse a pooled connection
    std::chrono::milliseconds backoff = options.retry_initial_backoff;
    std::optional<SteadyClock::time_point> start_time = start;
    while (true) {
      // A pooled connection is taken without the coroutine acquire() is (a frame per request).
      // (No co_await inside a conditional expression: GCC 12 miscompiles that.)
      std::unique_ptr<Connection> idle;
      // The first take uses the time read at the start; later ones read the clock again.
      if (!ex.cancelled) idle = take_idle(pool, fresh, idempotent, std::exchange(start_time, {}));
      std::optional<Result<std::unique_ptr<Connection>>> taken;
      if (idle) {
        taken.emplace(std::move(idle));
      } else {
        taken.emplace(co_await acquire(ex, upstream, pool, deadline, fresh, idempotent));
      }
      Result<std::unique_ptr<Connection>>& conn = *taken;
      fresh = false;
      bool retry = false;
      bool immediate = false;
      std::unique_ptr<HttpResponse> retry_response;  // made only for a retried 5xx
      if (!conn.ok()) {
        last = conn.status();
        // A connect failure sent nothing: every method may retry it.
        retry = last.code() == ErrorCode::kUnavailable ||
                (last.code() == ErrorCode::kDeadlineExceeded && SteadyClock::now() < deadline);
        if (!retry) co_return last;
      } else {
        const bool reused = (*conn)->reused;
        Attempt attempt;
        {
          Connection& c = **conn;
          RoundTrip trip(*this, ex, c, deadline, method == "HEAD", sink);
          // The socket is non-blocking (connect()): what the kernel takes at once is written
          // without suspending; only a remainder is awaited.
          asio::error_code ec;
          std::size_t written = 0;
          if (c.tls) {
            co_await c.tls->write_all(asio::buffer(wire), ec);
            written = ec ? 0 : wire.size();
          } else {
            written = c.socket.write_some(asio::buffer(wire), ec);
            if (ec == asio::error::would_block || ec == asio::error::try_again) {
              ec = {};
              written = 0;
            }
          }
          if (!ec && written < wire.size()) {
            written += co_await asio::async_write(
                c.socket, asio::buffer(wire.data() + written, wire.size() - written),
                asio::redirect_error(asio::use_awaitable, ec));
          }
          trip.attempt.bytes_sent = written > 0;
          bool over = false;
          if (ec) over = trip.fail(ec);
          while (!over) {
            std::size_t n = 0;
            if (c.tls) {
              n = co_await c.tls->read_some(asio::buffer(c.buffer), ec);
              // A close without close_notify ends the response like an EOF would: a framed
              // response is then complete or reported truncated by the parser.
              if (ec == detail::make_error_code(detail::TlsErrc::kStreamTruncated)) {
                ec = asio::error::eof;
              }
            } else {
              // Right after the request the reader knows the socket is drained and waits for
              // input without a system call (http/edge_reads.hpp).
              n = c.reader.read_some(asio::buffer(c.buffer), ec);
              while (ec == asio::error::would_block) {
                co_await c.reader.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                if (!ec) n = c.reader.read_some(asio::buffer(c.buffer), ec);
              }
            }
            over = trip.take(n, ec, out);
          }
          attempt = std::move(trip.attempt);
        }
        release(pool, std::move(*conn), attempt.reusable);
        if (attempt.result.ok()) {
          const int status = out.status;
          // With a sink, the response's fields are the sink's: it is passed on as it is.
          if (sink != nullptr ||
              !(idempotent && (status == 502 || status == 503 || status == 504))) {
            co_return answered();
          }
          retry = true;
          retry_response = std::make_unique<HttpResponse>(std::move(out));
          last = unavailable("upstream " + name + " answered " + std::to_string(status));
        } else {
          const Status& error = attempt.result;
          if (!attempt.lost) {
            if (error.code() == ErrorCode::kDeadlineExceeded) {
              co_return deadline_exceeded("request " + std::string(method) + " " +
                                          std::string(target) + " to upstream " + name +
                                          " took longer than " + ms_text(options.request_timeout));
            }
            if (error.code() == ErrorCode::kCancelled) {
              co_return cancelled("request to upstream " + name + " cancelled");
            }
            co_return error.with_context("upstream " + name);
          }
          last = unavailable(
              "upstream " + name + " closed the connection " +
              (attempt.response_seen ? "in the middle of the response" : "without a response") +
              " to " + std::string(method) + " " + std::string(target) + " (" + error.message() +
              ")");
          if (!attempt.bytes_sent || idempotent) {
            retry = true;
            // A kept-alive connection the server closed meanwhile: try a new one at once.
            if (reused && !attempt.response_seen) {
              immediate = true;
              fresh = true;
            }
          } else {
            co_return last.with_context("not retried: a " + std::string(method) +
                                        " may have reached the server");
          }
        }
      }
      if (!retry) co_return last;
      if (immediate) {
        // Does not count as a retry, but only once in a row: the new connection is fresh.
        continue;
      }
      if (retries >= options.max_retries) {
        if (retry_response) {
          out = std::move(*retry_response);
          co_return answered();
        }
        co_return last.with_context("after " + std::to_string(retries + 1) + " attempts");
      }
      ++retries;
      const SteadyClock::time_point wake = SteadyClock::now() + backoff;
      if (wake >= deadline) {
        if (retry_response) {
          out = std::move(*retry_response);
          co_return answered();
        }
        co_return deadline_exceeded(last.message() + "; no time left within " +
                                    ms_text(options.request_timeout) + " to retry");
      }
      ex.timer().expires_at(wake);
      asio::error_code ec;
      co_await ex.timer().async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (ex.cancelled) co_return cancelled("request to upstream " + name + " cancelled");
      backoff = std::min(options.retry_max_backoff, backoff * 2);
    }
  } catch (const std::exception& e) {
    co_return internal_error("HTTP client failed: " + std::string(e.what()));
  }
}

asio::awaitable<void> HttpClient::Impl::exchange(Upstream upstream, HttpRequest request,
                                                 HttpResponseCallback done) {
  Result<std::string> wire = wire_of(request, upstream.to_string());
  HttpResponse response;
  Status status = wire.status();
  if (wire.ok()) status = co_await run_exchange(upstream, std::move(*wire), response);
  try {
    if (status.ok()) {
      done(std::move(response));
    } else {
      done(std::move(status));
    }
  } catch (...) {
    // A callback must not throw; the exchange is over either way.
  }
}

Result<std::unique_ptr<HttpClient>> HttpClient::create(HttpClientOptions options) {
  CIVICBUS_RETURN_IF_ERROR(options.validate());
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  if (impl->options.tls) {
    auto tls = detail::TlsClientContext::create(*impl->options.tls);
    if (!tls.ok()) return tls.status().with_context("HttpClient TLS");
    impl->tls = std::move(tls).value();
  }
  impl->own_io = std::make_unique<asio::io_context>(1);
  impl->io = impl->own_io.get();
  impl->guard.emplace(asio::make_work_guard(*impl->io));
  impl->thread = std::thread([io = impl->io] { io->run(); });
  return std::unique_ptr<HttpClient>(new HttpClient(std::move(impl)));
}

Result<std::unique_ptr<HttpClient>> detail::ClientAccess::create_on(asio::io_context& io,
                                                                    HttpClientOptions options) {
  CIVICBUS_RETURN_IF_ERROR(options.validate());
  auto impl = std::make_unique<HttpClient::Impl>();
  impl->options = std::move(options);
  if (impl->options.tls) {
    auto tls = detail::TlsClientContext::create(*impl->options.tls);
    if (!tls.ok()) return tls.status().with_context("HttpClient TLS");
    impl->tls = std::move(tls).value();
  }
  impl->io = &io;
  return std::unique_ptr<HttpClient>(new HttpClient(std::move(impl)));
}

void detail::ClientAccess::shut_down(HttpClient& client) {
  {
    std::lock_guard lock(client.impl_->mu);
    client.impl_->stopping = true;
  }
  asio::post(*client.impl_->io, [impl = client.impl_.get()] { impl->shutdown(); });
}

void detail::ClientAccess::end_wire(std::string& wire, std::string_view method,
                                    std::string_view body) {
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    wire.append("Content-Length: "sv).append(std::to_string(body.size())).append("\r\n"sv);
  }
  wire.append("Connection: keep-alive\r\n\r\n"sv).append(body);
}

asio::awaitable<Status> detail::ClientAccess::send_wire(HttpClient& client,
                                                        const Upstream& upstream, std::string wire,
                                                        HttpResponse& out, FieldSink* sink) {
  // On the io thread, so the exchange sees the shutdown (shut_down() posts it there) without
  // the lock send_async takes.
  return client.impl_->run_exchange(upstream, std::move(wire), out, sink);
}

HttpClient::HttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpClient::~HttpClient() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  if (impl_->own_io) {
    asio::post(*impl_->io, [impl = impl_.get()] { impl->shutdown(); });
    impl_->guard.reset();
    impl_->thread.join();
  } else if (impl_->io->stopped()) {
    // A lent event loop that no longer runs (see ClientAccess): what is left is idle sockets.
    impl_->shutdown();
  }
}

void HttpClient::send_async(const Upstream& upstream, HttpRequest request,
                            HttpResponseCallback done) {
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->stopping) {
      asio::co_spawn(*impl_->io, impl_->exchange(upstream, std::move(request), std::move(done)),
                     asio::detached);
      return;
    }
  }
  done(cancelled("HttpClient is shutting down"));
}

void HttpClient::send_async(std::string_view host_port, HttpRequest request,
                            HttpResponseCallback done) {
  auto upstream = Upstream::parse(host_port);
  if (!upstream.ok()) return done(upstream.status());
  send_async(*upstream, std::move(request), std::move(done));
}

Result<HttpResponse> HttpClient::send(const Upstream& upstream, HttpRequest request) {
  if (impl_->io->get_executor().running_in_this_thread()) {
    // It would wait for the thread it blocks.
    return failed_precondition(
        "HttpClient::send called from a send_async callback; use "
        "send_async there");
  }
  std::promise<Result<HttpResponse>> promise;
  auto future = promise.get_future();
  send_async(upstream, std::move(request),
             [&promise](Result<HttpResponse> result) { promise.set_value(std::move(result)); });
  return future.get();
}

Result<HttpResponse> HttpClient::send(std::string_view host_port, HttpRequest request) {
  CIVICBUS_ASSIGN_OR_RETURN(Upstream upstream, Upstream::parse(host_port));
  return send(upstream, std::move(request));
}

}  // namespace civicbus::http
