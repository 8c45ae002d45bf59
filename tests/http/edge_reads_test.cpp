#include "http/edge_reads.hpp"

#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace civicbus::http::detail {
namespace {

using asio::ip::tcp;
using namespace std::chrono_literals;

// A connected pair on loopback: `ours` (on `io`, non-blocking, read through a reader) and
// `peer` (blocking, written to by the test).
struct Pair {
  Pair(asio::io_context& io, tcp::acceptor& acceptor) : ours(io), peer(io) {
    peer.connect(acceptor.local_endpoint());
    acceptor.accept(ours);
    ours.non_blocking(true);
  }
  tcp::socket ours;
  tcp::socket peer;
};

tcp::acceptor loopback_acceptor(asio::io_context& io) {
  return tcp::acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
}

// Reads as the server and client do: what is there, else a wait and again. Appends what came
// to `got` until `want` bytes, EOF or an error (left in `ec`).
asio::awaitable<void> read_until(EdgeReader& reader, std::string& got, std::size_t want,
                                 asio::error_code& ec) {
  std::array<char, 64> buffer{};  // small: a read that fills it leaves more behind
  while (got.size() < want) {
    std::size_t n = reader.read_some(asio::buffer(buffer), ec);
    while (ec == asio::error::would_block) {
      co_await reader.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (!ec) n = reader.read_some(asio::buffer(buffer), ec);
    }
    if (ec) co_return;
    got.append(buffer.data(), n);
  }
}

// One socket read through a reader by one coroutine, which reads until `got` holds each of
// `totals` bytes in turn (or EOF or an error, left in `ec`) and then sets `done`.
struct OneReader {
  explicit OneReader(std::vector<std::size_t> totals)
      : acceptor(loopback_acceptor(io)), pair(io, acceptor) {
    reader.attach(pair.ours, io);
    asio::co_spawn(
        io,
        [this, totals]() -> asio::awaitable<void> {
          for (const std::size_t total : totals) {
            co_await read_until(reader, got, total, ec);
            if (ec) break;
          }
          done = true;
        },
        asio::detached);
  }
  asio::io_context io{1};
  tcp::acceptor acceptor;
  Pair pair;
  EdgeReader reader;
  std::string got;
  asio::error_code ec;
  bool done = false;
};

// Runs `io` for up to 5 s; true when it returned sooner, i.e. nothing was left pending.
bool runs_out(asio::io_context& io) {
  const auto start = std::chrono::steady_clock::now();
  io.run_for(5s);
  return std::chrono::steady_clock::now() - start < 4s;
}

TEST_CASE("edge reads: input that arrives after the socket was drained wakes the reader") {
  OneReader r({5, 5 + 300});  // "hello": drained, then waits
  asio::write(r.pair.peer, asio::buffer(std::string("hello")));
  r.io.run_for(1s);
  // It waits now (nothing more was sent); io.run returned only by its time limit.
  REQUIRE_FALSE(r.done);
  CHECK(r.got == "hello");
  r.io.restart();
  const std::string more(300, 'x');  // more than the reader's buffer: several reads
  asio::write(r.pair.peer, asio::buffer(more));
  r.io.run_for(2s);
  REQUIRE(r.done);
  CHECK_FALSE(r.ec);
  CHECK(r.got == "hello" + more);
}

TEST_CASE("edge reads: data and the peer's FIN arriving together give the data, then EOF") {
  // Waits first, so that the reactor sees the data and the FIN in one edge; then asks for more
  // than comes, so that it ends at EOF.
  OneReader r({1, 1'000});
  r.io.poll();
  asio::write(r.pair.peer, asio::buffer(std::string("a") + std::string(20, 'b')));
  r.pair.peer.shutdown(tcp::socket::shutdown_send);
  r.io.run_for(2s);
  REQUIRE(r.done);  // without the FIN remembered it would wait for an edge that never comes
  CHECK(r.ec == asio::error::eof);
  CHECK(r.got == "a" + std::string(20, 'b'));
}

TEST_CASE("edge reads: cancel ends a wait, and a cancelled reader leaves io_context::run free") {
  OneReader r({1});
  r.io.poll();  // now waiting
  REQUIRE_FALSE(r.done);
  r.reader.cancel();
  CHECK(runs_out(r.io));  // the set's own wait is gone too
  CHECK(r.done);
  CHECK(r.ec == asio::error::operation_aborted);
  CHECK(r.got.empty());
}

TEST_CASE("edge reads: a wait begun and ended in one turn leaves io_context::run free") {
  // Input for two sockets in one turn of the set: the first wakes a coroutine that then waits
  // on the second (not yet seen as readable), and the second's event ends that wait in the
  // same turn. The set's wait armed for it must not be left pending.
  asio::io_context io(1);
  tcp::acceptor acceptor = loopback_acceptor(io);
  Pair a(io, acceptor);
  Pair b(io, acceptor);
  EdgeReader reader_a;
  EdgeReader reader_b;
  reader_a.attach(a.ours, io);
  reader_b.attach(b.ours, io);
  std::array<char, 8> scratch{};
  asio::error_code ec;
  reader_b.read_some(asio::buffer(scratch), ec);  // finds it drained
  REQUIRE(ec == asio::error::would_block);
  std::string got_a;
  std::string got_b;
  asio::error_code ec_a;
  asio::error_code ec_b;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await read_until(reader_a, got_a, 1, ec_a);
        co_await read_until(reader_b, got_b, 1, ec_b);
      },
      asio::detached);
  io.poll();  // waiting on a
  asio::write(a.peer, asio::buffer(std::string("a")));
  asio::write(b.peer, asio::buffer(std::string("b")));
  std::this_thread::sleep_for(20ms);  // both arrive before the loop looks
  CHECK(runs_out(io));
  CHECK(got_a == "a");
  CHECK(got_b == "b");
}

TEST_CASE("edge reads: more sockets than one turn takes all wake, and readers come and go") {
  asio::io_context io(1);
  tcp::acceptor acceptor = loopback_acceptor(io);
  constexpr int kSockets = 150;  // over the reactor's batch of 64
  std::vector<std::unique_ptr<Pair>> pairs;
  std::vector<std::unique_ptr<EdgeReader>> readers;
  std::vector<std::string> got(kSockets);
  std::vector<asio::error_code> errors(kSockets);
  int done = 0;
  // Readers made and dropped first, so that the live ones reuse their slots.
  for (int i = 0; i < 20; ++i) {
    Pair gone(io, acceptor);
    EdgeReader dropped;
    dropped.attach(gone.ours, io);
  }
  for (int i = 0; i < kSockets; ++i) {
    pairs.push_back(std::make_unique<Pair>(io, acceptor));
    readers.push_back(std::make_unique<EdgeReader>());
    readers.back()->attach(pairs.back()->ours, io);
    asio::co_spawn(
        io,
        [&, i]() -> asio::awaitable<void> {
          co_await read_until(*readers[i], got[i], 4, errors[i]);
          ++done;
        },
        asio::detached);
  }
  io.poll();
  REQUIRE(done == 0);
  for (int i = 0; i < kSockets; ++i) {
    asio::write(pairs[i]->peer, asio::buffer(std::to_string(1000 + i)));
  }
  io.run_for(5s);
  CHECK(done == kSockets);
  for (int i = 0; i < kSockets; ++i) {
    CHECK(got[i] == std::to_string(1000 + i));
    CHECK_FALSE(errors[i]);
  }
}

TEST_CASE("edge reads: a reader still waiting when its io_context goes is let go") {
  // The waiting coroutine's frame owns the reader and the socket: destroying the io_context
  // destroys the frame without resuming it (as Asio does with its own operations). Run under
  // ASan, this is the check that nothing is used after it is gone.
  bool resumed = false;
  {
    asio::io_context io(1);
    tcp::acceptor acceptor = loopback_acceptor(io);
    auto pair = std::make_shared<Pair>(io, acceptor);
    asio::co_spawn(
        io,
        [&io, &resumed, pair]() -> asio::awaitable<void> {
          EdgeReader reader;
          reader.attach(pair->ours, io);
          std::string got;
          asio::error_code ec;
          co_await read_until(reader, got, 1, ec);
          resumed = true;
        },
        asio::detached);
    io.poll();
  }
  CHECK_FALSE(resumed);
}

}  // namespace
}  // namespace civicbus::http::detail
