// Plain TCP sockets that remember whether they can be read or written, as nginx's are, and
// that only the server's and client's own epoll set watches.
//
// Why: Asio's epoll reactor starts every read with a recv() and waits only when that finds
// nothing. Right after a request is sent upstream, or a response to the client, it always
// finds nothing (EAGAIN), and waiting through Asio instead (async_wait) re-arms the
// descriptor with an epoll_ctl each time: either way one system call per wait, two per
// proxied request, about 1 µs each on the machines we measure on (benchmarks/README.md).
// And a socket that Asio opens is in Asio's epoll set for good: each of its events is also
// delivered there (the kernel's wake-up and the reactor's turn) with no operation waiting.
//
// How: each io_context gets one EdgeReactor (an Asio service), an epoll set of its own in
// which sockets register once, edge-triggered, for input and output; the set's descriptor is
// itself waited on through the io_context, so one epoll_wait on the set and one re-arm serve
// every socket that became ready in a turn of the event loop. An EdgeSocket owns one such
// socket's descriptor (taken from Asio with release(), or from accept): read_some() reads
// when input may be there and reports would_block otherwise, write_some() writes,
// async_wait() completes when epoll reports the socket ready (or after cancel()). TLS
// connections keep Asio's sockets (mbedTLS drives their reads and writes).
//
// Everything runs on the io_context's one thread (the server's workers and the client's loop
// each run one). Where epoll is missing (not Linux) or fails, the socket's waits go through
// an Asio descriptor instead and every read is tried.
#pragma once

#include <asio.hpp>
#include <cstddef>
#include <cstdint>
#include <new>
#include <optional>
#include <utility>

namespace civicbus::http::detail {

class EdgeReactor;

class EdgeSocket {
 public:
  enum class Wait { kRead, kWrite };

  // Closed until assign(). Must not outlive `io`, and runs on its thread.
  explicit EdgeSocket(asio::io_context& io) : io_(io) {}
  ~EdgeSocket();  // close()
  EdgeSocket(const EdgeSocket&) = delete;
  EdgeSocket& operator=(const EdgeSocket&) = delete;

  // Takes `fd`, a connected stream socket, whether or not this succeeds: the socket is made
  // non-blocking and registered; on an error it is closed. Once, on a closed EdgeSocket.
  asio::error_code assign(int fd);
  bool is_open() const { return fd_ >= 0; }
  int native_handle() const { return fd_; }

  // What can be read now without waiting: the bytes read, or `ec` = would_block (then
  // async_wait(kRead)), eof, or the socket's error.
  std::size_t read_some(asio::mutable_buffer buffer, asio::error_code& ec);
  // Input left unread, not taken: as read_some, for a look at an idle socket.
  std::size_t peek(asio::mutable_buffer buffer, asio::error_code& ec);
  // What the kernel takes now: the bytes written, or `ec` = would_block (then
  // async_wait(kWrite)) or the socket's error. A peer that is gone raises no SIGPIPE.
  std::size_t write_some(asio::const_buffer buffer, asio::error_code& ec);
  void shutdown_send(asio::error_code& ec);

  // Completes (with no error) once the socket may be ready for `what`, or with
  // operation_aborted after cancel() or close(). At most one wait of each kind at a time.
  template <typename Token>
  auto async_wait(Wait what, Token&& token) {
    return asio::async_initiate<Token, void(asio::error_code)>(
        [this, what](auto handler) { start_wait(what, std::move(handler)); }, token);
  }

  // Pending waits complete with operation_aborted (posted, never inside this call).
  void cancel();
  // cancel(), then the descriptor is closed: later calls report bad_descriptor.
  void close();

 private:
  friend class EdgeReactor;

  // A pending async_wait's handler, type-erased; kept in the socket's own storage when it
  // fits (a coroutine's handler does), so that a wait allocates nothing.
  struct Waiter {
    // Calls the handler: at once (`now`, from the reactor's event loop turn, where nothing
    // else is on the stack) or posted. Either way `this` is gone first.
    virtual void complete(asio::error_code ec, bool now) = 0;
    virtual void destroy() = 0;  // gone without calling the handler
   protected:
    ~Waiter() = default;
  };
  template <typename Handler>
  struct WaiterFor final : Waiter {
    WaiterFor(Handler&& h, bool heap) : handler(std::move(h)), on_heap(heap) {}
    void complete(asio::error_code ec, bool now) override {
      Handler h = std::move(handler);
      release();
      if (now) {
        std::move(h)(ec);
      } else {
        const auto executor = asio::get_associated_executor(h);
        asio::post(executor, [h = std::move(h), ec]() mutable { std::move(h)(ec); });
      }
    }
    // The handler goes last, after this object: destroying it may destroy the coroutine
    // frame that holds the socket whose storage this is.
    void destroy() override {
      Handler h = std::move(handler);
      release();
    }
    void release() {
      if (on_heap) {
        delete this;
      } else {
        this->~WaiterFor();
      }
    }
    Handler handler;
    bool on_heap;
  };
  // One direction's pending wait and the storage it is made in.
  struct Pending {
    Waiter* waiter = nullptr;
    alignas(std::max_align_t) unsigned char storage[64];
  };

  template <typename Handler>
  void start_wait(Wait what, Handler handler) {
    if (reactor_ == nullptr) {
      fallback_wait(what, std::move(handler));
      return;
    }
    Pending& pending = what == Wait::kRead ? read_ : write_;
    using Op = WaiterFor<Handler>;
    if constexpr (sizeof(Op) <= sizeof(pending.storage) &&
                  alignof(Op) <= alignof(std::max_align_t)) {
      wait_started(what, new (pending.storage) Op(std::move(handler), false));
    } else {
      wait_started(what, new Op(std::move(handler), true));
    }
  }
  template <typename Handler>
  void fallback_wait(Wait what, Handler handler) {
    if (!fallback_) {
      const auto executor = asio::get_associated_executor(handler);
      asio::post(executor, [h = std::move(handler)]() mutable {
        std::move(h)(asio::error_code(asio::error::bad_descriptor));
      });
      return;
    }
    fallback_->async_wait(what == Wait::kRead ? asio::posix::descriptor_base::wait_read
                                              : asio::posix::descriptor_base::wait_write,
                          std::move(handler));
  }
  void wait_started(Wait what, Waiter* waiter);
  // Ends each pending wait: completed with `ec` (posted), or destroyed when `ec` is empty.
  void end_waits(asio::error_code ec);

  asio::io_context& io_;
  int fd_ = -1;
  EdgeReactor* reactor_ = nullptr;  // null: waits through fallback_
  // Without the reactor: the descriptor, owned by Asio, whose waits stand in.
  std::optional<asio::posix::stream_descriptor> fallback_;
  std::uint64_t key_ = 0;  // the reactor's slot and generation
  bool readable_ = true;   // false once a read found the socket drained
  bool writable_ = true;   // false once a write found no room
  bool closing_ = false;   // epoll reported the peer's FIN or an error
  Pending read_;
  Pending write_;
};

// Writes all of `buffer` to `socket`: what the kernel takes now, then the rest as room comes.
// The bytes written; `ec` as write_some() reports it (never would_block), or
// operation_aborted after cancel() or close().
asio::awaitable<std::size_t> write_all(EdgeSocket& socket, asio::const_buffer buffer,
                                       asio::error_code& ec);

}  // namespace civicbus::http::detail
