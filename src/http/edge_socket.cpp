#include "http/edge_socket.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#if defined(__linux__)
#include <sys/epoll.h>
#endif

namespace civicbus::http::detail {

namespace {

asio::error_code last_error() {
  const int e = errno;
  if (e == EAGAIN || e == EWOULDBLOCK) return asio::error::would_block;
  return {e, asio::error::get_system_category()};
}

#if defined(MSG_NOSIGNAL)
constexpr int kSendFlags = MSG_NOSIGNAL;
#else
constexpr int kSendFlags = 0;  // SO_NOSIGPIPE is set instead (assign)
#endif

}  // namespace

#if defined(__linux__)

// One io_context's epoll set of sockets (see edge_socket.hpp). Sockets are found by slot: an
// event carries the slot's index and generation, so that an event still queued for a socket
// that is gone (its descriptor kept open elsewhere, e.g. across a fork) is recognised and
// dropped rather than followed to a dead socket. Sockets do not remove their descriptors from
// the set: closing them does (no epoll_ctl per connection), and removing by descriptor number
// after a close could remove a newer socket that reused the number.
class EdgeReactor final : public asio::execution_context::service {
 public:
  using key_type = EdgeReactor;
  static asio::execution_context::id id;

  // Made only through of(), so `context` is an io_context. The set's descriptor is opened
  // here, so that the service it registers with is made (and destroyed) around this one.
  explicit EdgeReactor(asio::execution_context& context)
      : asio::execution_context::service(context) {
    const int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) return;
    asio::error_code ec;
    notifier_.emplace(static_cast<asio::io_context&>(context).get_executor());
    notifier_->assign(fd, ec);  // registers the set with the io_context's own reactor
    if (ec) {
      ::close(fd);
      notifier_.reset();
    }
  }
  ~EdgeReactor() override = default;

  // The io_context's reactor, made on first use; null when epoll cannot be used.
  static EdgeReactor* of(asio::io_context& io) {
    EdgeReactor& reactor =
        asio::use_service<EdgeReactor>(static_cast<asio::execution_context&>(io));
    return reactor.notifier_ ? &reactor : nullptr;
  }

  bool add(int fd, EdgeSocket& socket) {
    std::uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      index = static_cast<std::uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    Slot& slot = slots_[index];
    const std::uint64_t key = (static_cast<std::uint64_t>(slot.generation) << 32) | index;
    epoll_event event{};
    // Output too, as nginx registers: an edge-triggered EPOLLOUT is reported when a full send
    // buffer drains, and otherwise only alongside input.
    event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    event.data.u64 = key;
    if (::epoll_ctl(notifier_->native_handle(), EPOLL_CTL_ADD, fd, &event) != 0) {
      free_.push_back(index);
      return false;
    }
    slot.socket = &socket;
    socket.key_ = key;
    return true;
  }

  void remove(const EdgeSocket& socket) {
    const auto index = static_cast<std::uint32_t>(socket.key_);
    Slot& slot = slots_[index];
    if (slot.socket != &socket) return;
    slot.socket = nullptr;
    ++slot.generation;
    free_.push_back(index);
  }

  void wait_started() {
    ++waiting_;
    settle();
  }
  // A wait ended other than by readiness (cancel(), a socket gone).
  void wait_cancelled() {
    --waiting_;
    settle();
  }

 private:
  struct Slot {
    EdgeSocket* socket = nullptr;
    std::uint32_t generation = 0;
  };
  using Notifier = asio::posix::basic_stream_descriptor<asio::io_context::executor_type>;

  EdgeSocket* find(std::uint64_t key) const {
    const auto index = static_cast<std::uint32_t>(key);
    if (index >= slots_.size()) return nullptr;
    const Slot& slot = slots_[index];
    return slot.generation == static_cast<std::uint32_t>(key >> 32) ? slot.socket : nullptr;
  }

  // The set is waited on exactly while sockets wait: armed when one does, its wait cancelled
  // when none is left, since a pending wait keeps io_context::run() going.
  void settle() {
    if (waiting_ > 0) {
      arm();
    } else if (armed_) {
      notifier_->cancel();
    }
  }

  // Waits, through the io_context, for the set to report a socket.
  void arm() {
    if (armed_ || shut_down_) return;
    armed_ = true;
    notifier_->async_wait(asio::posix::descriptor_base::wait_read,
                          [this](const asio::error_code& ec) { on_ready(ec); });
  }

  // Wakes `socket`'s wait of `pending`, if any: its handler runs here and now.
  void wake(EdgeSocket::Pending& pending) {
    if (pending.waiter == nullptr) return;
    --waiting_;
    std::exchange(pending.waiter, nullptr)->complete({}, true);
  }

  // Sockets that epoll reports get their readiness set and, if waiting, their handlers
  // called here and now: a coroutine resumed inside this loop may close, make or wait on any
  // socket, so each event's socket is looked up again by slot and generation before each
  // handler, after the handlers before it have run.
  void on_ready(const asio::error_code& ec) {
    armed_ = false;
    if (shut_down_) return;
    if (ec) {
      // Cancelled by settle(); a socket may have started waiting since.
      if (ec == asio::error::operation_aborted) settle();
      return;
    }
    constexpr int kBatch = 64;
    epoll_event events[kBatch];
    int n;
    do {
      n = ::epoll_wait(notifier_->native_handle(), events, kBatch, 0);
    } while (n < 0 && errno == EINTR);
    for (int i = 0; i < n; ++i) {
      const std::uint64_t key = events[i].data.u64;
      const std::uint32_t what = events[i].events;
      constexpr std::uint32_t kEnd = EPOLLRDHUP | EPOLLHUP | EPOLLERR;
      if ((what & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) {
        if (EdgeSocket* socket = find(key)) {
          socket->writable_ = true;
          wake(socket->write_);
        }
      }
      if ((what & (EPOLLIN | kEnd)) != 0) {
        if (EdgeSocket* socket = find(key)) {
          socket->readable_ = true;
          // The peer's FIN (or an error) is reported once: the reads after it must go on to
          // find it, however little they read first.
          if ((what & kEnd) != 0) socket->closing_ = true;
          wake(socket->read_);
        }
      }
    }
    // What a full batch leaves is reported again when the set is next armed (the re-arm polls
    // it). A socket resumed above may have armed the set for a wait that a later event in the
    // batch then ended: settle() cancels it.
    settle();
  }

  // Before the io_context goes: waiting handlers are destroyed, not called (as Asio does with
  // its own pending operations). They are taken out first, since destroying one may destroy
  // sockets (its coroutine's frame owns them).
  void shutdown() override {
    shut_down_ = true;
    std::vector<EdgeSocket::Waiter*> waiters;
    for (Slot& slot : slots_) {
      if (slot.socket == nullptr) continue;
      for (EdgeSocket::Pending* pending : {&slot.socket->read_, &slot.socket->write_}) {
        if (pending->waiter != nullptr) waiters.push_back(std::exchange(pending->waiter, nullptr));
      }
    }
    waiting_ = 0;
    if (notifier_) {
      asio::error_code ignored;
      notifier_->close(ignored);
    }
    for (EdgeSocket::Waiter* waiter : waiters) waiter->destroy();
  }

  std::optional<Notifier> notifier_;  // owns the epoll set's descriptor
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;
  std::size_t waiting_ = 0;
  bool armed_ = false;
  bool shut_down_ = false;
};

asio::execution_context::id EdgeReactor::id;

namespace {
EdgeReactor* reactor_of(asio::io_context& io) {
  return EdgeReactor::of(io);
}
}  // namespace

#else  // without epoll: every socket waits through Asio

class EdgeReactor {
 public:
  bool add(int, EdgeSocket&) { return false; }
  void remove(const EdgeSocket&) {}
  void wait_started() {}
  void wait_cancelled() {}
};

namespace {
EdgeReactor* reactor_of(asio::io_context&) {
  return nullptr;
}
}  // namespace

#endif

asio::error_code EdgeSocket::assign(int fd) {
  fd_ = fd;
  asio::error_code ec;
  const int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) ec = last_error();
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
  const int one = 1;
  if (!ec && ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one) != 0) ec = last_error();
#endif
  if (!ec) {
    EdgeReactor* reactor = reactor_of(io_);
    if (reactor != nullptr && reactor->add(fd, *this)) {
      reactor_ = reactor;
    } else {
      fallback_.emplace(io_);
      fallback_->assign(fd, ec);
      if (ec) fallback_.reset();
    }
  }
  if (ec) {
    ::close(std::exchange(fd_, -1));
  }
  return ec;
}

EdgeSocket::~EdgeSocket() {
  if (reactor_ != nullptr) {
    // Only at the io_context's end can a wait still be pending (its coroutine holds what owns
    // this socket): the handler is destroyed, as Asio's are.
    end_waits({});
  }
  close();
}

void EdgeSocket::wait_started(Wait what, Waiter* waiter) {
  const bool ready = what == Wait::kRead ? readable_ : writable_;
  if (ready || fd_ < 0) {
    // Already ready (or closed, which the next call reports).
    waiter->complete({}, false);
    return;
  }
  (what == Wait::kRead ? read_ : write_).waiter = waiter;
  reactor_->wait_started();
}

void EdgeSocket::end_waits(asio::error_code ec) {
  for (Pending* pending : {&read_, &write_}) {
    if (pending->waiter == nullptr) continue;
    reactor_->wait_cancelled();
    Waiter* waiter = std::exchange(pending->waiter, nullptr);
    if (ec) {
      waiter->complete(ec, false);
    } else {
      waiter->destroy();
    }
  }
}

void EdgeSocket::cancel() {
  if (reactor_ != nullptr) {
    end_waits(asio::error::operation_aborted);
  } else if (fallback_) {
    asio::error_code ignored;
    fallback_->cancel(ignored);
  }
}

void EdgeSocket::close() {
  if (fd_ < 0) return;
  cancel();
  if (reactor_ != nullptr) {
    reactor_->remove(*this);
    reactor_ = nullptr;
    ::close(fd_);
  } else if (fallback_) {
    asio::error_code ignored;
    fallback_->close(ignored);  // owns the descriptor
    fallback_.reset();
  }
  fd_ = -1;
}

std::size_t EdgeSocket::read_some(asio::mutable_buffer buffer, asio::error_code& ec) {
  ec = {};
  if (fd_ < 0) {
    ec = asio::error::bad_descriptor;
    return 0;
  }
  if (!readable_) {
    ec = asio::error::would_block;
    return 0;
  }
  ssize_t n;
  do {
    n = ::recv(fd_, buffer.data(), buffer.size(), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    ec = last_error();
  } else if (n == 0 && buffer.size() > 0) {
    ec = asio::error::eof;
  }
  // A read that did not fill the buffer emptied the socket: what arrives later is an edge.
  if (reactor_ != nullptr && !closing_ &&
      ((!ec && static_cast<std::size_t>(n) < buffer.size()) || ec == asio::error::would_block)) {
    readable_ = false;
  }
  return ec ? 0 : static_cast<std::size_t>(n);
}

std::size_t EdgeSocket::peek(asio::mutable_buffer buffer, asio::error_code& ec) {
  ec = {};
  if (fd_ < 0) {
    ec = asio::error::bad_descriptor;
    return 0;
  }
  ssize_t n;
  do {
    n = ::recv(fd_, buffer.data(), buffer.size(), MSG_PEEK);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    ec = last_error();
    return 0;
  }
  if (n == 0 && buffer.size() > 0) ec = asio::error::eof;
  return static_cast<std::size_t>(n);
}

std::size_t EdgeSocket::write_some(asio::const_buffer buffer, asio::error_code& ec) {
  ec = {};
  if (fd_ < 0) {
    ec = asio::error::bad_descriptor;
    return 0;
  }
  ssize_t n;
  do {
    n = ::send(fd_, buffer.data(), buffer.size(), kSendFlags);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    ec = last_error();
    if (ec == asio::error::would_block && reactor_ != nullptr) writable_ = false;
    return 0;
  }
  return static_cast<std::size_t>(n);
}

void EdgeSocket::shutdown_send(asio::error_code& ec) {
  ec = {};
  if (fd_ < 0) {
    ec = asio::error::bad_descriptor;
  } else if (::shutdown(fd_, SHUT_WR) != 0) {
    ec = last_error();
  }
}

asio::awaitable<std::size_t> write_all(EdgeSocket& socket, asio::const_buffer buffer,
                                       asio::error_code& ec) {
  std::size_t written = 0;
  ec = {};
  while (written < buffer.size()) {
    written += socket.write_some(buffer + written, ec);
    if (ec == asio::error::would_block) {
      co_await socket.async_wait(EdgeSocket::Wait::kWrite,
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) break;
  }
  co_return written;
}

}  // namespace civicbus::http::detail
