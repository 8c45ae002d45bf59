// Reads on plain TCP sockets that remember whether there is anything to read, as nginx does:
// a socket that a read found drained is not read again until epoll reports new input on it.
//
// Why: Asio's epoll reactor starts every read with a recv() and waits only when that finds
// nothing. Right after a request is sent upstream, or a response to the client, it always
// finds nothing (EAGAIN), and waiting through Asio instead (async_wait) re-arms the
// descriptor with an epoll_ctl each time: either way one system call per wait, two per
// proxied request, about 1 µs each on the machines we measure on (benchmarks/README.md).
//
// How: each io_context gets one EdgeReactor (an Asio service), an epoll set of its own in
// which readers register their sockets once, edge-triggered; the set's descriptor is itself
// waited on through the io_context, so one epoll_wait on the set and one re-arm serve every
// socket that became readable in a turn of the event loop. An EdgeReader is one socket's
// entry: read_some() reads when input may be there and reports would_block otherwise;
// async_wait() completes when epoll reports input (or after cancel()).
//
// Everything runs on the io_context's one thread (the server's workers and the client's loop
// each run one). Where epoll is missing (not Linux) or fails, a reader falls back to Asio:
// read_some() is a non-blocking read and async_wait() the socket's own wait.
#pragma once

#include <asio.hpp>
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

namespace civicbus::http::detail {

class EdgeReactor;

class EdgeReader {
 public:
  EdgeReader() = default;
  ~EdgeReader();
  EdgeReader(const EdgeReader&) = delete;
  EdgeReader& operator=(const EdgeReader&) = delete;

  // Registers `socket` (open, connected, in non-blocking mode; its io_context is `io`). Call
  // once, on the io_context's thread; the reader must not outlive the socket's io_context,
  // and is declared after the socket it reads so that it goes first.
  void attach(asio::ip::tcp::socket& socket, asio::io_context& io);

  // What can be read now without waiting: the bytes read, or `ec` = would_block (then
  // async_wait), eof, or the socket's error.
  std::size_t read_some(asio::mutable_buffer buffer, asio::error_code& ec);

  // Completes (with no error) once more input may be there, or with operation_aborted after
  // cancel(). One at a time.
  template <typename Token>
  auto async_wait(Token&& token) {
    return asio::async_initiate<Token, void(asio::error_code)>(
        [this](auto handler) { start_wait(std::move(handler)); }, token);
  }

  // A pending async_wait completes with operation_aborted (posted, never inside this call).
  // Call it beside the socket's own cancel() or close().
  void cancel();

 private:
  friend class EdgeReactor;

  // A waiting async_wait's handler, type-erased; kept in the reader's own storage when it
  // fits (a coroutine's handler does), so that a wait allocates nothing.
  struct Wait {
    // Calls the handler: at once (`now`, from the reactor's event loop turn, where nothing
    // else is on the stack) or posted. Either way `this` is gone first.
    virtual void complete(asio::error_code ec, bool now) = 0;
    virtual void destroy() = 0;  // gone without calling the handler
   protected:
    ~Wait() = default;
  };
  template <typename Handler>
  struct WaitFor final : Wait {
    WaitFor(Handler&& h, bool heap) : handler(std::move(h)), on_heap(heap) {}
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
    // frame that holds the reader whose storage this is.
    void destroy() override {
      Handler h = std::move(handler);
      release();
    }
    void release() {
      if (on_heap) {
        delete this;
      } else {
        this->~WaitFor();
      }
    }
    Handler handler;
    bool on_heap;
  };

  template <typename Handler>
  void start_wait(Handler handler) {
    if (reactor_ == nullptr) {
      socket_->async_wait(asio::ip::tcp::socket::wait_read, std::move(handler));
      return;
    }
    using Op = WaitFor<Handler>;
    if constexpr (sizeof(Op) <= sizeof(storage_) && alignof(Op) <= alignof(std::max_align_t)) {
      wait_started(new (storage_) Op(std::move(handler), false));
    } else {
      wait_started(new Op(std::move(handler), true));
    }
  }
  void wait_started(Wait* wait);

  asio::ip::tcp::socket* socket_ = nullptr;
  EdgeReactor* reactor_ = nullptr;  // null: Asio's own reads
  std::uint64_t key_ = 0;           // the reactor's slot and generation
  bool readable_ = true;            // false once a read found the socket drained
  bool closing_ = false;            // epoll reported the peer's FIN or an error
  Wait* wait_ = nullptr;            // in storage_, or on the heap
  alignas(std::max_align_t) unsigned char storage_[64];
};

}  // namespace civicbus::http::detail
