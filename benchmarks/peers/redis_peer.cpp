#include "peers/redis_peer.hpp"

#include <fmt/format.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>
#include <latch>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

namespace civicbus::bench {
namespace {

// ---------------------------------------------------------------------------------------------
// Minimal RESP2
// ---------------------------------------------------------------------------------------------

void append_bulk(std::string& out, std::string_view arg) {
  out += '$';
  out += std::to_string(arg.size());
  out += "\r\n";
  out += arg;
  out += "\r\n";
}

void append_command(std::string& out, std::initializer_list<std::string_view> args) {
  out += '*';
  out += std::to_string(args.size());
  out += "\r\n";
  for (auto a : args) append_bulk(out, a);
}

struct RespValue {
  char type = 0;  // '+', '-', ':', '$', '*'
  bool null = false;
  long long integer = 0;
  std::string text;  // simple string, error or bulk string
  std::vector<RespValue> elements;

  bool is_error() const { return type == '-'; }
};

// Buffered reply parser over a socket. Not thread-safe; one reader per connection.
class RespReader {
 public:
  explicit RespReader(const Socket& socket) : socket_(socket), buf_(256 * 1024) {}

  // Reads more bytes; with block=false returns false at once when none are available.
  // Throws when the server closed the connection.
  bool fill(bool block) {
    if (begin_ == end_) {
      begin_ = end_ = 0;
    } else if (begin_ > buf_.size() / 2) {
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (end_ == buf_.size()) buf_.resize(buf_.size() * 2);
    for (;;) {
      const ssize_t n =
          ::recv(socket_.fd(), buf_.data() + end_, buf_.size() - end_, block ? 0 : MSG_DONTWAIT);
      if (n > 0) {
        end_ += static_cast<std::size_t>(n);
        return true;
      }
      if (n == 0) throw std::runtime_error("redis-server closed the connection");
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!block) return false;
        throw std::runtime_error("redis-server sent no reply within the read timeout");
      }
      throw std::system_error(errno, std::generic_category(), "recv from redis-server");
    }
  }

  // One complete reply from the buffered bytes, or nullopt if more bytes are needed.
  std::optional<RespValue> try_parse() {
    // A large reply (XREAD of 1000 entries is ~600 KB) arrives over many reads; checking that
    // it is complete without building it keeps the retries cheap.
    std::size_t pos = begin_;
    if (!parse(pos, nullptr)) return std::nullopt;
    pos = begin_;
    RespValue v;
    parse(pos, &v);
    begin_ = pos;
    return v;
  }

  // Blocks until a complete reply is available.
  RespValue read() {
    for (;;) {
      if (auto v = try_parse()) return std::move(*v);
      fill(true);
    }
  }

 private:
  // Parses one reply at `pos` into `out` (or only checks that it is complete when `out` is
  // null); false when more bytes are needed.
  bool parse(std::size_t& pos, RespValue* out) {
    const char* base = buf_.data();
    const void* cr = pos < end_ ? std::memchr(base + pos, '\r', end_ - pos) : nullptr;
    if (cr == nullptr) return false;
    const std::size_t line_end = static_cast<std::size_t>(static_cast<const char*>(cr) - base);
    if (line_end + 1 >= end_) return false;  // need the '\n' too
    const char type = base[pos];
    if (out != nullptr) out->type = type;
    std::string_view line(base + pos + 1, line_end - pos - 1);
    std::size_t next = line_end + 2;
    auto as_int = [&](std::string_view s) {
      long long v = 0;
      bool neg = false;
      std::size_t i = 0;
      if (!s.empty() && s[0] == '-') {
        neg = true;
        i = 1;
      }
      for (; i < s.size(); ++i) v = v * 10 + (s[i] - '0');
      return neg ? -v : v;
    };
    switch (type) {
      case '+':
      case '-':
        if (out != nullptr) out->text.assign(line);
        break;
      case ':':
        if (out != nullptr) out->integer = as_int(line);
        break;
      case '$': {
        const long long len = as_int(line);
        if (len < 0) {
          if (out != nullptr) out->null = true;
          break;
        }
        if (next + static_cast<std::size_t>(len) + 2 > end_) return false;
        if (out != nullptr) out->text.assign(base + next, static_cast<std::size_t>(len));
        next += static_cast<std::size_t>(len) + 2;
        break;
      }
      case '*': {
        const long long count = as_int(line);
        if (count < 0) {
          if (out != nullptr) out->null = true;
          break;
        }
        if (out != nullptr) out->elements.resize(static_cast<std::size_t>(count));
        for (long long i = 0; i < count; ++i) {
          RespValue* e = out != nullptr ? &out->elements[static_cast<std::size_t>(i)] : nullptr;
          if (!parse(next, e)) return false;
        }
        break;
      }
      default:
        throw std::runtime_error(
            fmt::format("unexpected RESP type byte 0x{:02x}", static_cast<unsigned char>(type)));
    }
    pos = next;
    return true;
  }

  const Socket& socket_;
  std::vector<char> buf_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

// Collects the first error seen by any thread, and how many there were.
class ErrorLog {
 public:
  void add(std::string_view what) {
    count_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(mu_);
    if (first_.empty()) first_.assign(what);
  }
  std::size_t count() const { return count_.load(); }
  std::string first() const {
    std::lock_guard lock(mu_);
    return first_;
  }

 private:
  std::atomic<std::size_t> count_{0};
  mutable std::mutex mu_;
  std::string first_;
};

RespValue command(const Socket& s, RespReader& r, std::initializer_list<std::string_view> args) {
  std::string out;
  append_command(out, args);
  s.write_all(out);
  return r.read();
}

// A redis-server in its own temp dir, ready to take commands once constructed.
struct RedisServer {
  TempDir dir{"civicbus-bench-redis"};
  ServerProcess process;

  RedisServer(const WorkloadOptions& workload, const RedisPeerOptions& options) {
    const std::uint16_t port = free_port();
    ServerProcess::Options o;
    o.program = options.server;
    o.args = {"--port",
              std::to_string(port),
              "--bind",
              "127.0.0.1",
              "--dir",
              dir.path().string(),
              "--appendonly",
              "yes",
              "--appendfsync",
              options.appendfsync,
              "--save",
              "",
              "--daemonize",
              "no",
              "--protected-mode",
              "no",
              "--logfile",
              "",
              "--auto-aof-rewrite-percentage",
              options.aof_auto_rewrite ? "100" : "0"};
    o.log_path = dir.path() / "redis-server.log";
    o.port = port;
    o.ready_timeout = workload.server_start_timeout;
    process.start(std::move(o));

    // Accepting connections is not the same as serving commands (-LOADING while the AOF is
    // read), so wait for a PONG.
    const auto deadline = std::chrono::steady_clock::now() + workload.server_start_timeout;
    for (;;) {
      Socket s = connect_loopback(port);
      RespReader r(s);
      RespValue v = command(s, r, {"PING"});
      if (v.type == '+' && v.text == "PONG") break;
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error(fmt::format("redis-server not ready: PING answered '{}'", v.text));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  std::uint16_t port() const { return process.port(); }
};

long long stream_length(std::uint16_t port, std::string_view key) {
  Socket s = connect_loopback(port);
  RespReader r(s);
  RespValue v = command(s, r, {"XLEN", key});
  if (v.type != ':') throw std::runtime_error("XLEN failed: " + v.text);
  return v.integer;
}

// ---------------------------------------------------------------------------------------------
// Throughput
// ---------------------------------------------------------------------------------------------

struct PublisherTally {
  std::size_t acked = 0;
  std::int64_t end_ns = 0;
};

void publish_pipelined(std::uint16_t port, std::size_t first_id, std::size_t count,
                       const WorkloadOptions& workload, std::latch& ready, std::latch& go,
                       ErrorLog& errors, PublisherTally& tally) {
  std::optional<Socket> socket;
  try {
    socket.emplace(connect_loopback(port));
  } catch (const std::exception& e) {
    errors.add(e.what());
  }
  ready.count_down();
  go.wait();
  if (!socket) return;
  try {
    RespReader reader(*socket);
    EventPayload payload(workload.payload_bytes);
    std::string out;
    out.reserve(workload.window * (workload.payload_bytes + 64));
    std::size_t sent = 0;
    std::size_t done = 0;
    while (done < count) {
      out.clear();
      // Keep the window full: every reply that came back frees a slot for the next XADD.
      while (sent - done < workload.window && sent < count) {
        append_command(out, {"XADD", "bench", "*", "data", payload.stamp(first_id + sent, 0)});
        ++sent;
      }
      if (!out.empty()) socket->write_all(out);
      reader.fill(true);
      while (auto v = reader.try_parse()) {
        ++done;
        if (v->is_error()) {
          errors.add(v->text);
        } else {
          ++tally.acked;
        }
      }
    }
  } catch (const std::exception& e) {
    errors.add(e.what());
  }
  tally.end_ns = steady_now_ns();
}

}  // namespace

PeerThroughput redis_streams_throughput(const WorkloadOptions& workload,
                                        const RedisPeerOptions& options) {
  PeerThroughput result;
  result.peer = "redis_streams";
  result.fsync = options.appendfsync;
  result.events = workload.events;
  result.variant = fmt::format("conn=per_thread,pipeline={},aof_rewrite={}", workload.window,
                               options.aof_auto_rewrite ? "auto" : "off");
  try {
    RedisServer server(workload, options);
    result.variant += ",fs=" + filesystem_type(server.dir.path());

    const int n = workload.publishers;
    std::vector<PublisherTally> tallies(static_cast<std::size_t>(n));
    ErrorLog errors;
    std::latch ready(n);
    std::latch go(1);
    std::vector<std::jthread> threads;
    std::size_t first = 0;
    try {
      for (int i = 0; i < n; ++i) {
        const std::size_t count =
            workload.events / n + (static_cast<std::size_t>(i) < workload.events % n ? 1 : 0);
        threads.emplace_back(publish_pipelined, server.port(), first, count, std::cref(workload),
                             std::ref(ready), std::ref(go), std::ref(errors),
                             std::ref(tallies[static_cast<std::size_t>(i)]));
        first += count;
      }
    } catch (...) {
      go.count_down();  // let the threads already started finish before they are joined
      throw;
    }
    ready.wait();
    sync_disks();
    const std::int64_t t0 = steady_now_ns();
    go.count_down();
    threads.clear();  // joins

    std::int64_t t_end = t0;
    for (const auto& t : tallies) {
      result.acked += t.acked;
      t_end = std::max(t_end, t.end_ns);
    }
    result.errors = errors.count();
    result.first_error = errors.first();
    result.seconds = static_cast<double>(t_end - t0) / 1e9;
    result.events_per_s =
        result.seconds > 0 ? static_cast<double>(workload.events) / result.seconds : 0;

    // The stream must hold exactly what was acknowledged.
    const long long stored = stream_length(server.port(), "bench");
    if (stored != static_cast<long long>(result.acked)) {
      ++result.errors;
      if (result.first_error.empty()) {
        result.first_error =
            fmt::format("XLEN bench = {} but {} XADDs were acknowledged", stored, result.acked);
      }
    }
  } catch (const std::exception& e) {
    result.error = e.what();
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Latency
// ---------------------------------------------------------------------------------------------

PeerLatency redis_streams_latency(const WorkloadOptions& workload,
                                  const RedisPeerOptions& options) {
  PeerLatency result;
  result.peer = "redis_streams";
  result.fsync = options.appendfsync;
  result.rate = workload.latency_rate;
  result.variant =
      fmt::format("sub=xread_block,aof_rewrite={}", options.aof_auto_rewrite ? "auto" : "off");
  try {
    RedisServer server(workload, options);
    result.variant += ",fs=" + filesystem_type(server.dir.path());

    const auto total = static_cast<std::size_t>(std::llround(
        workload.latency_rate * (workload.latency_warmup_seconds + workload.latency_seconds)));
    const auto warmup = static_cast<std::size_t>(
        std::llround(workload.latency_rate * workload.latency_warmup_seconds));
    const double period_ns = 1e9 / workload.latency_rate;

    // Latency per event id; -1 = not received. Written only by the subscriber thread and read
    // after it is joined.
    std::vector<std::int64_t> latency_ns(total, -1);
    std::atomic<std::size_t> received{0};
    std::atomic<bool> stop{false};
    ErrorLog errors;

    Socket sub_socket = connect_loopback(server.port());
    Socket pub_socket = connect_loopback(server.port());

    std::jthread subscriber([&] {
      try {
        RespReader reader(sub_socket);
        std::string cursor = "0-0";  // the stream is new: everything in it is ours
        std::string out;
        while (!stop.load(std::memory_order_relaxed) && received.load() < total) {
          out.clear();
          append_command(out, {"XREAD", "COUNT", "1000", "BLOCK", "200", "STREAMS", "lat", cursor});
          sub_socket.write_all(out);
          RespValue v = reader.read();
          const std::int64_t now = steady_now_ns();
          if (v.is_error()) throw std::runtime_error("XREAD: " + v.text);
          if (v.null) continue;  // BLOCK timed out
          for (const auto& stream : v.elements) {
            if (stream.elements.size() != 2) continue;
            for (const auto& entry : stream.elements[1].elements) {
              if (entry.elements.size() != 2 || entry.elements[1].elements.size() != 2) continue;
              cursor = entry.elements[0].text;
              const std::string& body = entry.elements[1].elements[1].text;
              const auto id = EventPayload::read_id(body);
              const auto sent = EventPayload::read_send_ns(body);
              if (!id || !sent || *id >= total) {
                errors.add("unexpected entry in stream 'lat'");
                continue;
              }
              latency_ns[*id] = now - *sent;
              received.fetch_add(1, std::memory_order_relaxed);
            }
          }
        }
      } catch (const std::exception& e) {
        errors.add(fmt::format("subscriber: {}", e.what()));
      }
    });
    // On any exit from here on (an exception included) the subscriber must stop before the
    // jthread joins it.
    struct StopOnExit {
      std::atomic<bool>& flag;
      ~StopOnExit() { flag = true; }
    } stop_on_exit{stop};

    // Publisher: this thread, on an absolute schedule; replies are drained without blocking
    // between sends so that a slow reply never delays the next scheduled XADD.
    std::size_t replies = 0;
    std::vector<std::int64_t> send_lag_ns;
    send_lag_ns.reserve(total - warmup);
    {
      reduce_timer_slack();
      RespReader reader(pub_socket);
      EventPayload payload(workload.payload_bytes);
      std::string out;
      auto drain = [&](bool block) {
        while (replies < total) {
          if (auto v = reader.try_parse()) {
            ++replies;
            if (v->is_error()) errors.add("XADD: " + v->text);
            continue;
          }
          if (!reader.fill(block)) break;
        }
      };
      sync_disks();
      const std::int64_t start = steady_now_ns() + 2'000'000;
      for (std::size_t i = 0; i < total; ++i) {
        const std::int64_t scheduled =
            start + static_cast<std::int64_t>(static_cast<double>(i) * period_ns);
        sleep_until_ns(scheduled);
        if (i >= warmup) send_lag_ns.push_back(steady_now_ns() - scheduled);
        out.clear();
        append_command(out, {"XADD", "lat", "*", "data", payload.stamp(i, scheduled)});
        pub_socket.write_all(out);
        drain(false);
      }
      result.sent = total;
      drain(true);
    }

    const auto deadline = std::chrono::steady_clock::now() + workload.drain_timeout;
    while (received.load() < total && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    stop = true;
    subscriber.join();

    std::vector<std::int64_t> samples;
    samples.reserve(total - warmup);
    std::size_t lost = 0;
    for (std::size_t i = 0; i < total; ++i) {
      if (latency_ns[i] < 0) {
        ++lost;
      } else if (i >= warmup) {
        samples.push_back(latency_ns[i]);
      }
    }
    result.measured = samples.size();
    result.lost = lost;
    result.latency = summarize_latencies(std::move(samples));
    result.send_lag = summarize_latencies(std::move(send_lag_ns));
    result.errors = errors.count();
    result.first_error = errors.first();
  } catch (const std::exception& e) {
    result.error = e.what();
  }
  return result;
}

}  // namespace civicbus::bench
