// The server: one io_context per worker thread, an accept loop on worker 0 that hands each
// new connection to the next worker in turn, and, per connection, two coroutines on its
// worker: `run` reads, feeds the RequestParser, calls the handler and writes; `watchdog` waits
// for the connection's current deadline (header, body, idle, write, linger) and cancels the
// socket's operations when it passes, so `run` sees operation_aborted and answers 408 or
// closes. A worker is one thread, so a connection's state needs no strand or lock.
#include "civicbus/http/server.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <asio.hpp>
#include <atomic>
#include <charconv>
#include <ctime>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "civicbus/core/clock.hpp"
#include "http/edge_reads.hpp"
#include "http/framing.hpp"
#include "http/request_parser.hpp"
#include "http/server_access.hpp"
#include "http/tls.hpp"

namespace civicbus::http {

namespace {

using asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kLingerTime{500};

// http/framing.hpp
using detail::is_framing_field;
using detail::is_safe_field_text;

// The Date value, formatted once per second per thread (as nginx caches its time strings).
const std::string& current_http_date() {
  thread_local std::string text;
  thread_local std::int64_t second = -1;
  const auto now = std::chrono::system_clock::now();
  const std::int64_t s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  if (s != second) {
    text = format_http_date(now);
    second = s;
  }
  return text;
}

// `own`: what an awaitable handler added (server_access.hpp); its lines are written as they are.
void append_response(std::string& out, const HttpResponse& response, bool head_request,
                     bool keep_alive, int request_minor, const detail::OwnFields* own = nullptr) {
  using namespace std::string_view_literals;
  const int status = (response.status >= 100 && response.status <= 999) ? response.status : 500;
  std::string_view reason = response.reason.empty() || !is_safe_field_text(response.reason)
                                ? reason_phrase(status)
                                : std::string_view(response.reason);
  char line[] = "HTTP/1.1 000 ";
  line[9] = static_cast<char>('0' + status / 100);
  line[10] = static_cast<char>('0' + status / 10 % 10);
  line[11] = static_cast<char>('0' + status % 10);
  detail::FieldWriter w(out);
  w.text(std::string_view(line, sizeof line - 1));
  w.text(reason);
  w.text("\r\n"sv);
  // A field that could split the response (a CR, LF or NUL in its name or value), or one the
  // server owns, is dropped. The fields are written first and checked together (the usual
  // case: none is bad); when some are, they are written again, one check per field.
  bool has_date = false;
  bool has_server = false;
  auto write_fields = [&](bool check_each) {
    has_date = has_server = false;
    std::size_t lines = 0;
    for (const auto& [name, value] : response.headers) {
      if (name.empty() || is_framing_field(name)) continue;
      if (check_each && (!is_safe_field_text(name) || !is_safe_field_text(value))) continue;
      has_date = has_date || (name.size() == 4 && equals_ignore_case(name, "Date"));
      has_server = has_server || (name.size() == 6 && equals_ignore_case(name, "Server"));
      w.field(name, value);
      ++lines;
    }
    return lines;
  };
  const std::size_t fields_start = w.size();
  const std::size_t lines = write_fields(false);
  if (detail::count_breaks(w.view_from(fields_start)) != 2 * lines) {
    w.truncate(fields_start);
    write_fields(true);
  }
  if (own != nullptr) {
    w.text(own->lines);
    has_date = has_date || own->has_date;
    has_server = has_server || own->has_server;
  }
  if (!has_date) w.field("Date"sv, current_http_date());
  if (!has_server) w.text("Server: civicbus\r\n"sv);
  const bool no_body = status < 200 || status == 204 || status == 304;
  if (!no_body) {
    char digits[24];
    const char* end = std::to_chars(digits, digits + sizeof digits, response.body.size()).ptr;
    w.field("Content-Length"sv, std::string_view(digits, static_cast<std::size_t>(end - digits)));
  }
  if (!keep_alive) {
    w.text("Connection: close\r\n"sv);
  } else if (request_minor == 0) {
    w.text("Connection: keep-alive\r\n"sv);
  }
  w.text("\r\n"sv);
  if (!no_body && !head_request) w.text(response.body);
}

class Connection;

}  // namespace

namespace detail {

// What the connections share: the HttpServer's state, outside its private Impl.
struct ServerCore {
  HttpServerOptions options;
  HttpHandler handler;  // one of the three is set
  HttpAsyncHandler async_handler;
  detail::AwaitableHandler awaitable_handler;
  std::vector<std::unique_ptr<asio::io_context>> workers;
  std::optional<tcp::acceptor> acceptor;  // on workers[0]
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::thread> threads;
  std::size_t next_worker = 0;                          // the accept loop's round robin
  std::unique_ptr<detail::TlsServerContextHolder> tls;  // with options.tls
  std::atomic<std::uint16_t> port{0};
  bool started = false;

  std::mutex mu;  // guards stopping and connections
  bool stopping = false;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> connections;

  asio::awaitable<void> accept_loop();
  // Makes a connection of an accepted socket and starts it, on the socket's worker.
  void adopt(tcp::socket socket, std::size_t worker);
};

}  // namespace detail

struct HttpServer::Impl : detail::ServerCore {};

// One request's way back (HttpResponder): the connection that waits for it, on its worker.
struct detail::ResponseSlot {
  std::weak_ptr<Connection> connection;
  asio::any_io_executor executor;
  std::size_t worker = 0;
  std::atomic<bool> sent{false};
};

namespace {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(detail::ServerCore& server, tcp::socket socket, std::size_t worker)
      : server_(server),
        socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        wake_(socket_.get_executor()),
        worker_(worker),
        parser_(detail::RequestLimits{server.options.max_header_count,
                                      server.options.max_header_bytes,
                                      server.options.max_body_bytes}) {
    asio::error_code ec;
    socket_.non_blocking(true, ec);  // for write()'s direct attempt
    const tcp::endpoint peer = socket_.remote_endpoint(ec);
    if (!ec) {
      asio::ip::address address = peer.address();
      if (address.is_v6() && address.to_v6().is_v4_mapped()) {
        address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
      }
      remote_address_ = address.to_string();
      remote_port_ = peer.port();
    }
  }

  ~Connection() {
    std::lock_guard lock(server_.mu);
    server_.connections.erase(this);
  }

  auto executor() { return socket_.get_executor(); }

  // On the worker.
  void close() {
    if (closed_) return;
    closed_ = true;
    reader_.cancel();
    asio::error_code ec;
    socket_.close(ec);
    timer_.cancel();
    wake_.cancel();
  }

  // On the worker: an HttpResponder's answer to the request in progress.
  void deliver(HttpResponse response) {
    if (!awaiting_) return;
    pending_ = std::move(response);
    wake_.cancel();
  }

  // `self` keeps the connection alive: a parameter is copied into the coroutine frame when
  // the coroutine is created, before co_spawn first resumes it.
  asio::awaitable<void> watchdog([[maybe_unused]] std::shared_ptr<Connection> self) {
    const HttpServerOptions& o = server_.options;
    const auto shortest = std::min({o.header_timeout, o.body_timeout, o.idle_timeout});
    while (!closed_) {
      // Never later than the shortest phase timeout from now (it wakes, finds nothing due and
      // sleeps again): a deadline that a phase sets is then never before the armed time, and
      // the timer is not cancelled and re-armed request after request, whether the watchdog
      // last ran while the deadline was far or while there was none (an async handler).
      armed_ = std::min(deadline_, SteadyClock::now() + shortest);
      timer_.expires_at(armed_);
      asio::error_code ec;
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (closed_) break;
      if (SteadyClock::now() >= deadline_) {
        fired_ = true;
        deadline_ = SteadyClock::time_point::max();
        asio::error_code ignored;
        socket_.cancel(ignored);
        reader_.cancel();
      }
    }
  }

  asio::awaitable<void> run([[maybe_unused]] std::shared_ptr<Connection> self) {
    const HttpServerOptions& options = server_.options;
    // The first request's header timeout runs from the accept (and covers a TLS handshake).
    Phase phase = Phase::kHeader;
    set_deadline(options.header_timeout);
    if (server_.tls) {
      auto stream = detail::TlsStream::server(socket_, server_.tls->current());
      if (!stream.ok()) co_return close();
      tls_ = std::move(stream).value();
      const Status handshake = co_await tls_->handshake();
      if (!handshake.ok() || closed_) co_return close();
      if (tls_->peer_certificate()) {
        peer_certificate_ = std::make_shared<const PeerCertificate>(*tls_->peer_certificate());
      }
    } else {
      reader_.attach(socket_, *server_.workers[worker_]);
    }
    std::string in;   // received, not yet parsed
    std::string out;  // responses not yet written
    std::size_t queued = 0;

    while (!closed_) {
      if (in.empty()) {
        if (!out.empty()) {
          if (!write_at_once(out) && !co_await write(out)) co_return close();
          queued = 0;
        }
        if (phase == Phase::kIdle) set_deadline(options.idle_timeout);
        asio::error_code ec;
        // Awaited here, not through a helper coroutine: no frame per read.
        std::size_t n = 0;
        if (tls_) {
          n = co_await tls_->read_some(asio::buffer(buffer_), ec);
        } else {
          n = reader_.read_some(asio::buffer(buffer_), ec);
          while (ec == asio::error::would_block) {
            co_await reader_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            if (!ec) n = reader_.read_some(asio::buffer(buffer_), ec);
          }
        }
        if (closed_) co_return;
        if (ec) {
          if (fired_ && (phase == Phase::kHeader || phase == Phase::kBody)) {
            co_await fail(out, 408, "request not received within its time limit");
          }
          co_return close();
        }
        if (phase == Phase::kIdle) {
          phase = Phase::kHeader;
          set_deadline(options.header_timeout);
        }
        in.append(buffer_.data(), n);
      }

      const detail::RequestParser::Step step = parser_.feed(in);
      in.erase(0, step.consumed);
      switch (step.event) {
        case detail::RequestParser::Event::kNeedMore:
          break;
        case detail::RequestParser::Event::kHeadersComplete:
          phase = Phase::kBody;
          set_deadline(options.body_timeout);
          // A client that already sent body bytes is not waiting for the interim response.
          if (parser_.expects_continue() && in.empty()) {
            out += "HTTP/1.1 100 Continue\r\n\r\n";
            if (!co_await write(out)) co_return close();
            queued = 0;
          }
          break;
        case detail::RequestParser::Event::kMessageComplete: {
          // The parser's own request, used in place: it is emptied by the next feed(), once
          // the answer is written.
          HttpRequest& request = parser_.request();
          request.remote_address = remote_address_;
          request.remote_port = remote_port_;
          request.tls = tls_ != nullptr;
          request.peer_certificate = peer_certificate_;
          const bool keep_alive = parser_.keep_alive();
          const bool head_request = request.method == "HEAD";
          const int request_minor = request.version_minor;
          std::optional<HttpResponse> response;
          HttpResponse* answer = nullptr;
          if (server_.awaitable_handler) {
            // Awaited here rather than in a helper coroutine: one frame less per request. No
            // deadline runs meanwhile, as for an asynchronous handler. The response is the
            // connection's own, cleared for each request but keeping its room.
            set_deadline_at(SteadyClock::time_point::max());
            detail::clear_for_reuse(reply_);
            own_fields_.clear();
            try {
              co_await server_.awaitable_handler(request, reply_, own_fields_, worker_);
            } catch (...) {
              reply_ = HttpResponse::text(500, "internal error\n");
              own_fields_.clear();
            }
            if (closed_) co_return;
            answer = &reply_;
          } else if (server_.async_handler) {
            response = co_await call_async_handler(std::move(request));
            if (!response) co_return close();  // closed while the handler worked
          } else {
            response = call_handler(request);
          }
          if (answer == nullptr) answer = &*response;
          append_response(out, *answer, head_request, keep_alive, request_minor,
                          server_.awaitable_handler ? &own_fields_ : nullptr);
          ++queued;
          if (!keep_alive) {
            co_await finish(out);
            co_return;
          }
          phase = Phase::kIdle;
          if (!in.empty()) {
            phase = Phase::kHeader;
            set_deadline(options.header_timeout);
          }
          if (queued >= options.max_pipelined_requests) {
            if (!write_at_once(out) && !co_await write(out)) co_return close();
            queued = 0;
          }
          break;
        }
        case detail::RequestParser::Event::kError:
          co_await fail(out, parser_.error_status(), parser_.error_reason());
          co_return;
      }
    }
  }

 private:
  enum class Phase { kIdle, kHeader, kBody };

  // Deadlines mostly move later (each phase starts a new one), so the watchdog's timer is only
  // re-armed when the new deadline is earlier than the armed one: the watchdog wakes at the
  // armed time, sees the deadline has moved and sleeps again. This keeps timer-queue and
  // timerfd work off the per-request path (see watchdog() for why it stays off).
  void set_deadline(std::chrono::milliseconds after) {
    set_deadline_at(SteadyClock::now() + after);
  }
  void set_deadline_at(SteadyClock::time_point at) {
    fired_ = false;
    deadline_ = at;
    if (deadline_ < armed_) timer_.cancel();
  }

  HttpResponse call_handler(const HttpRequest& request) {
    try {
      return server_.handler(request);
    } catch (...) {
      return HttpResponse::text(500, "internal error\n");
    }
  }

  // Hands the request to the asynchronous handler and waits for its responder; nullopt when
  // the connection closed meanwhile. No deadline runs while the handler works: what it waits
  // for (an upstream) has its own timeouts.
  asio::awaitable<std::optional<HttpResponse>> call_async_handler(HttpRequest request) {
    auto slot = std::make_shared<detail::ResponseSlot>();
    slot->connection = weak_from_this();
    slot->executor = socket_.get_executor();
    slot->worker = worker_;
    pending_.reset();
    awaiting_ = true;
    set_deadline_at(SteadyClock::time_point::max());
    try {
      server_.async_handler(std::move(request), HttpResponder(slot));
    } catch (...) {
      // Unless the responder was already used, the client gets 500 and a late send() is
      // dropped.
      if (!slot->sent.exchange(true)) pending_ = HttpResponse::text(500, "internal error\n");
    }
    while (!pending_ && !closed_) {
      wake_.expires_at(SteadyClock::time_point::max());
      asio::error_code ec;
      co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    awaiting_ = false;
    if (closed_) co_return std::nullopt;
    co_return std::move(pending_);
  }

  // write()'s first step without a coroutine frame: over TCP, what the kernel takes at once.
  // True when all of `out` went (and `out` is cleared); otherwise what went is dropped from
  // `out` and write() does the rest (or finds the error again).
  bool write_at_once(std::string& out) {
    if (tls_) return false;
    asio::error_code ec;
    const std::size_t written = socket_.write_some(asio::buffer(out), ec);
    if (ec) return false;
    if (written == out.size()) {
      out.clear();
      return true;
    }
    out.erase(0, written);
    return false;
  }

  // Writes and clears `out`; false when the peer is gone or too slow to read. The socket is
  // non-blocking: what the kernel takes at once is written without suspending or arming a
  // deadline; only a remainder waits, under body_timeout.
  asio::awaitable<bool> write(std::string& out) {
    asio::error_code ec;
    if (tls_) {
      const SteadyClock::time_point saved = deadline_;
      set_deadline(server_.options.body_timeout);
      co_await tls_->write_all(asio::buffer(out), ec);
      out.clear();
      if (ec || closed_) co_return false;
      set_deadline_at(saved);
      co_return true;
    }
    std::size_t written = socket_.write_some(asio::buffer(out), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      ec = {};
      written = 0;
    }
    if (ec) {
      out.clear();
      co_return false;
    }
    if (written < out.size()) {
      const SteadyClock::time_point saved = deadline_;
      set_deadline(server_.options.body_timeout);
      co_await asio::async_write(socket_, asio::buffer(out.data() + written, out.size() - written),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec || closed_) {
        out.clear();
        co_return false;
      }
      set_deadline_at(saved);
    }
    out.clear();
    co_return true;
  }

  // Answers `status` after what is queued, then closes.
  asio::awaitable<void> fail(std::string& out, int status, const std::string& reason) {
    HttpResponse response = HttpResponse::text(status, reason + "\n");
    append_response(out, response, false, false, 1);
    co_await finish(out);
  }

  // Writes what is queued and closes gracefully: our FIN first, then what the client still
  // sends is read and dropped for a moment, so that closing with unread data does not reset
  // the connection before the client has read the response.
  asio::awaitable<void> finish(std::string& out) {
    if (!out.empty() && !co_await write(out)) co_return close();
    set_deadline(kLingerTime);
    if (tls_) co_await tls_->shutdown();  // close_notify, then our FIN
    asio::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    while (!ec && !closed_) {
      co_await socket_.async_read_some(asio::buffer(buffer_),
                                       asio::redirect_error(asio::use_awaitable, ec));
    }
    close();
  }

  detail::ServerCore& server_;
  tcp::socket socket_;
  detail::EdgeReader reader_;  // socket_'s reads, without TLS
  asio::steady_timer timer_;
  asio::steady_timer wake_;       // wakes call_async_handler when the response arrives
  detail::OwnFields own_fields_;  // what an awaitable handler adds (server_access.hpp)
  HttpResponse reply_;            // an awaitable handler's response, reused request after request
  std::size_t worker_;
  std::string remote_address_;
  std::uint16_t remote_port_ = 0;
  std::optional<HttpResponse> pending_;
  bool awaiting_ = false;
  std::unique_ptr<detail::TlsStream> tls_;  // over socket_, when the server has TLS
  std::shared_ptr<const PeerCertificate> peer_certificate_;
  detail::RequestParser parser_;
  std::array<char, 16 * 1024> buffer_{};
  SteadyClock::time_point deadline_ = SteadyClock::time_point::max();
  SteadyClock::time_point armed_ = SteadyClock::time_point::max();  // the watchdog's expiry
  bool fired_ = false;
  bool closed_ = false;
};

}  // namespace

asio::awaitable<void> detail::ServerCore::accept_loop() {
  while (true) {
    asio::error_code ec;
    tcp::socket accepted =
        co_await acceptor->async_accept(*workers[0], asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
      // E.g. the peer reset before the accept, or EMFILE: keep serving, without spinning.
      asio::steady_timer pause(*workers[0], std::chrono::milliseconds(50));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    accepted.set_option(tcp::no_delay(true), ec);
    const std::size_t worker = next_worker++ % workers.size();
    if (worker == 0) {
      adopt(std::move(accepted), 0);
      continue;
    }
    // The worker registers the socket with its own reactor: a worker's sockets are touched by
    // its thread alone (what ASIO_CONCURRENCY_HINT_UNSAFE_IO asks, see HttpServer::HttpServer).
    // The descriptor is closed if the handoff never runs (the server stops first).
    struct Handoff {
      tcp::socket::native_handle_type fd;
      explicit Handoff(tcp::socket::native_handle_type f) : fd(f) {}
      Handoff(Handoff&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
      Handoff(const Handoff&) = delete;
      Handoff& operator=(const Handoff&) = delete;
      Handoff& operator=(Handoff&&) = delete;
      ~Handoff() {
        if (fd >= 0) ::close(fd);
      }
    };
    const tcp protocol = acceptor->local_endpoint(ec).protocol();
    if (ec) continue;
    Handoff handoff(accepted.release(ec));
    if (ec) continue;  // `accepted` closed it
    asio::post(*workers[worker], [this, protocol, worker, h = std::move(handoff)]() mutable {
      tcp::socket socket(*workers[worker]);
      asio::error_code assign_ec;
      socket.assign(protocol, h.fd, assign_ec);
      if (assign_ec) return;  // h closes the descriptor
      h.fd = -1;
      adopt(std::move(socket), worker);
    });
  }
}

// On the worker's thread: the connection's two coroutines start there.
void detail::ServerCore::adopt(tcp::socket socket, std::size_t worker) {
  auto connection = std::make_shared<Connection>(*this, std::move(socket), worker);
  {
    std::lock_guard lock(mu);
    if (stopping) return;
    connections.emplace(connection.get(), connection);
  }
  asio::co_spawn(connection->executor(), connection->watchdog(connection), asio::detached);
  asio::co_spawn(connection->executor(), connection->run(connection), asio::detached);
}

Status HttpServerOptions::validate() const {
  if (threads == 0) return invalid_argument("HttpServerOptions.threads must be at least 1");
  if (tls) CIVICBUS_RETURN_IF_ERROR(tls->validate().with_context("HttpServerOptions.tls"));
  if (max_header_count == 0 || max_header_bytes == 0) {
    return invalid_argument("HttpServerOptions header limits must be positive");
  }
  if (max_pipelined_requests == 0) {
    return invalid_argument("HttpServerOptions.max_pipelined_requests must be at least 1");
  }
  if (header_timeout.count() <= 0 || body_timeout.count() <= 0 || idle_timeout.count() <= 0) {
    return invalid_argument("HttpServerOptions timeouts must be positive");
  }
  return Status();
}

HttpServer::HttpServer(HttpServerOptions options, HttpHandler handler)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
  for (std::size_t i = 0; i < std::max<std::size_t>(1, impl_->options.threads); ++i) {
    // A worker's sockets and timers are used by its own thread alone (the accept loop hands
    // a new connection's descriptor over rather than registering it in another worker's
    // reactor), so the reactor's per-descriptor locks are left out; posting to a worker from
    // elsewhere stays safe (the scheduler keeps its lock).
    impl_->workers.push_back(std::make_unique<asio::io_context>(ASIO_CONCURRENCY_HINT_UNSAFE_IO));
  }
}

HttpServer::HttpServer(HttpServerOptions options, HttpAsyncHandler handler)
    : HttpServer(std::move(options), HttpHandler()) {
  impl_->async_handler = std::move(handler);
}

std::unique_ptr<HttpServer> detail::ServerAccess::create_awaitable(HttpServerOptions options,
                                                                   AwaitableHandler handler) {
  auto server = std::make_unique<HttpServer>(std::move(options), HttpHandler());
  server->impl_->awaitable_handler = std::move(handler);
  return server;
}

asio::io_context& detail::ServerAccess::worker_io(HttpServer& server, std::size_t worker) {
  return *server.impl_->workers.at(worker);
}

std::size_t detail::ServerAccess::worker_count(const HttpServer& server) {
  return server.impl_->workers.size();
}

HttpResponder::HttpResponder(std::shared_ptr<detail::ResponseSlot> slot) : slot_(std::move(slot)) {}

HttpResponder& HttpResponder::operator=(HttpResponder&& other) noexcept {
  if (this != &other) {
    if (slot_) send(HttpResponse::text(500, "internal error: the request was not answered\n"));
    slot_ = std::move(other.slot_);
  }
  return *this;
}

HttpResponder::~HttpResponder() {
  if (slot_) send(HttpResponse::text(500, "internal error: the request was not answered\n"));
}

void HttpResponder::send(HttpResponse response) {
  std::shared_ptr<detail::ResponseSlot> slot = std::move(slot_);
  if (!slot || slot->sent.exchange(true)) return;
  asio::dispatch(slot->executor,
                 [connection = slot->connection, response = std::move(response)]() mutable {
                   if (auto c = connection.lock()) c->deliver(std::move(response));
                 });
}

std::size_t HttpResponder::worker() const {
  return slot_ ? slot_->worker : 0;
}

HttpServer::~HttpServer() {
  stop();
}

std::uint16_t HttpServer::port() const {
  return impl_->port.load();
}

Result<std::uint16_t> HttpServer::start() {
  Impl& s = *impl_;
  if (s.started) return failed_precondition("HttpServer already started");
  CIVICBUS_RETURN_IF_ERROR(s.options.validate());
  if (!s.handler && !s.async_handler && !s.awaitable_handler)
    return invalid_argument("HttpServer needs a handler");
  if (s.options.tls) {
    auto holder = detail::TlsServerContextHolder::create(*s.options.tls);
    if (!holder.ok()) return holder.status().with_context("HttpServer TLS");
    s.tls = std::move(holder).value();
  }
  asio::error_code ec;
  const asio::ip::address address = asio::ip::make_address(s.options.bind_address, ec);
  if (ec) {
    return invalid_argument("HttpServerOptions.bind_address '" + s.options.bind_address +
                            "' is not an IP address");
  }
  const tcp::endpoint endpoint(address, s.options.port);
  tcp::acceptor acceptor(*s.workers[0]);
  if (acceptor.open(endpoint.protocol(), ec); !ec) {
    acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    acceptor.bind(endpoint, ec);
  }
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return unavailable("cannot listen on " + s.options.bind_address + ":" +
                       std::to_string(s.options.port) + ": " + ec.message());
  }
  s.port = acceptor.local_endpoint().port();
  s.acceptor.emplace(std::move(acceptor));
  for (auto& worker : s.workers) s.guards.push_back(asio::make_work_guard(*worker));
  asio::co_spawn(*s.workers[0], s.accept_loop(), asio::detached);
  for (auto& worker : s.workers) {
    s.threads.emplace_back([&io = *worker] { io.run(); });
  }
  s.started = true;
  return s.port.load();
}

Status HttpServer::reload_tls() {
  if (!impl_->tls) return failed_precondition("the HttpServer has no TLS to reload");
  return impl_->tls->reload();
}

Status HttpServer::reload_tls(const TlsServerOptions& options) {
  if (!impl_->tls) return failed_precondition("the HttpServer has no TLS to reload");
  return impl_->tls->reload(options);
}

void HttpServer::stop() {
  Impl& s = *impl_;
  if (!s.started) return;
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard lock(s.mu);
    if (s.stopping) return;
    s.stopping = true;
    for (auto& [ptr, weak] : s.connections) {
      if (auto c = weak.lock()) open.push_back(std::move(c));
    }
  }
  asio::post(*s.workers[0], [&s] {
    asio::error_code ec;
    s.acceptor->close(ec);
  });
  for (auto& c : open) asio::post(c->executor(), [c] { c->close(); });
  open.clear();
  s.guards.clear();
  for (std::thread& t : s.threads) t.join();
  s.threads.clear();
  s.port = 0;
}

}  // namespace civicbus::http
