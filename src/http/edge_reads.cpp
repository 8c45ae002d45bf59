#include "http/edge_reads.hpp"

#include <vector>

#if defined(__linux__)
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#endif

namespace civicbus::http::detail {

#if defined(__linux__)

// One io_context's epoll set of reader sockets (see edge_reads.hpp). Readers are found by
// slot: an event carries the slot's index and generation, so that an event still queued for a
// socket whose reader is gone (its descriptor kept open elsewhere, e.g. across a fork) is
// recognised and dropped rather than followed to a dead reader. Readers do not remove their
// sockets from the set: closing the socket does (no epoll_ctl per connection), and removing by
// descriptor number after a close could remove a newer socket that reused the number.
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

  bool add(int fd, EdgeReader& reader) {
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
    event.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
    event.data.u64 = key;
    if (::epoll_ctl(notifier_->native_handle(), EPOLL_CTL_ADD, fd, &event) != 0) {
      free_.push_back(index);
      return false;
    }
    slot.reader = &reader;
    reader.key_ = key;
    return true;
  }

  void remove(const EdgeReader& reader) {
    const auto index = static_cast<std::uint32_t>(reader.key_);
    Slot& slot = slots_[index];
    if (slot.reader != &reader) return;
    slot.reader = nullptr;
    ++slot.generation;
    free_.push_back(index);
  }

  void wait_started() {
    ++waiting_;
    settle();
  }
  // A wait ended other than by input (cancel(), a reader gone).
  void wait_cancelled() {
    --waiting_;
    settle();
  }

 private:
  struct Slot {
    EdgeReader* reader = nullptr;
    std::uint32_t generation = 0;
  };
  using Notifier = asio::posix::basic_stream_descriptor<asio::io_context::executor_type>;

  // The set is waited on exactly while readers wait: armed when one does (at the end of the
  // turn, when one starts in it), its wait cancelled when none is left, since a pending wait
  // keeps io_context::run() going.
  void settle() {
    if (waiting_ > 0) {
      arm();
    } else if (armed_) {
      notifier_->cancel();
    }
  }

  // Waits, through the io_context, for the set to report a socket.
  void arm() {
    if (armed_ || shut_down_ || in_turn_) return;
    armed_ = true;
    notifier_->async_wait(asio::posix::descriptor_base::wait_read,
                          [this](const asio::error_code& ec) { on_ready(ec); });
  }

  // Readers that epoll reports get their input flag set and, if waiting, their handler
  // called here and now: a coroutine resumed inside this loop may close, make or wait on any
  // reader, so each event's reader is looked up again by slot and generation, after the
  // handlers before it have run.
  void on_ready(const asio::error_code& ec) {
    armed_ = false;
    if (shut_down_) return;
    if (ec) {
      // Cancelled by settle(); a reader may have started waiting since.
      if (ec == asio::error::operation_aborted) settle();
      return;
    }
    // The set is polled again while readers still wait (input that arrived while the handlers
    // ran is served in the same turn), up to kPasses times; the set's wait is armed once, at
    // the end, not by each reader that starts waiting meanwhile: Asio re-registers the
    // descriptor for every wait (an epoll_ctl), and the turn no longer pays for one it ends.
    constexpr int kBatch = 64;
    constexpr int kPasses = 8;
    epoll_event events[kBatch];
    {
      in_turn_ = true;
      struct EndTurn {
        bool& in_turn;
        ~EndTurn() { in_turn = false; }  // also if a resumed handler throws
      } end_turn{in_turn_};
      for (int pass = 0; pass < kPasses; ++pass) {
        int n;
        do {
          n = ::epoll_wait(notifier_->native_handle(), events, kBatch, 0);
        } while (n < 0 && errno == EINTR);
        if (n <= 0) break;
        for (int i = 0; i < n; ++i) wake(events[i]);
        if (waiting_ == 0) break;
      }
    }
    // What is left is reported again when the set is next armed (the re-arm polls it).
    settle();
  }

  // One event of the set: its reader (if still the same) has input, and a waiting one resumes
  // here and now.
  void wake(const epoll_event& event) {
    const std::uint64_t key = event.data.u64;
    const auto index = static_cast<std::uint32_t>(key);
    if (index >= slots_.size()) return;
    EdgeReader* const reader = slots_[index].reader;
    if (reader == nullptr || slots_[index].generation != static_cast<std::uint32_t>(key >> 32)) {
      return;
    }
    reader->readable_ = true;
    // The peer's FIN (or an error) is reported once: the reads after it must go on to find it,
    // however little they read first.
    if ((event.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) reader->closing_ = true;
    if (reader->wait_ != nullptr) {
      --waiting_;
      std::exchange(reader->wait_, nullptr)->complete({}, true);
    }
  }

  // Before the io_context goes: waiting handlers are destroyed, not called (as Asio does with
  // its own pending operations). They are taken out first, since destroying one may destroy
  // readers (its coroutine's frame owns them).
  void shutdown() override {
    shut_down_ = true;
    std::vector<EdgeReader::Wait*> waits;
    for (Slot& slot : slots_) {
      if (slot.reader != nullptr && slot.reader->wait_ != nullptr) {
        waits.push_back(std::exchange(slot.reader->wait_, nullptr));
      }
    }
    waiting_ = 0;
    if (notifier_) {
      asio::error_code ignored;
      notifier_->close(ignored);
    }
    for (EdgeReader::Wait* wait : waits) wait->destroy();
  }

  std::optional<Notifier> notifier_;  // owns the epoll set's descriptor
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;
  std::size_t waiting_ = 0;
  bool armed_ = false;
  bool in_turn_ = false;
  bool shut_down_ = false;
};

asio::execution_context::id EdgeReactor::id;

void EdgeReader::attach(asio::ip::tcp::socket& socket, asio::io_context& io) {
  socket_ = &socket;
  EdgeReactor* reactor = EdgeReactor::of(io);
  if (reactor != nullptr && reactor->add(socket.native_handle(), *this)) reactor_ = reactor;
}

EdgeReader::~EdgeReader() {
  if (reactor_ == nullptr) return;
  if (wait_ != nullptr) {
    reactor_->wait_cancelled();
    std::exchange(wait_, nullptr)->destroy();
  }
  reactor_->remove(*this);
}

void EdgeReader::wait_started(Wait* wait) {
  if (readable_ || !socket_->is_open()) {
    // Input may already be there (or the socket is closed and a read reports it).
    wait->complete({}, false);
    return;
  }
  wait_ = wait;
  reactor_->wait_started();
}

void EdgeReader::cancel() {
  if (wait_ == nullptr) return;
  reactor_->wait_cancelled();
  std::exchange(wait_, nullptr)->complete(asio::error::operation_aborted, false);
}

#else  // without epoll: Asio's own reads

class EdgeReactor {};

void EdgeReader::attach(asio::ip::tcp::socket& socket, asio::io_context&) {
  socket_ = &socket;
}

EdgeReader::~EdgeReader() = default;

void EdgeReader::wait_started(Wait* wait) {
  wait->complete({}, false);
}

void EdgeReader::cancel() {}

#endif

std::size_t EdgeReader::read_some(asio::mutable_buffer buffer, asio::error_code& ec) {
  if (!readable_) {
    ec = asio::error::would_block;
    return 0;
  }
  const std::size_t n = socket_->read_some(buffer, ec);
  // A read that did not fill the buffer emptied the socket: what arrives later is an edge.
  if (reactor_ != nullptr && !closing_ &&
      ((!ec && n < buffer.size()) || ec == asio::error::would_block ||
       ec == asio::error::try_again)) {
    readable_ = false;
  }
  return n;
}

}  // namespace civicbus::http::detail
