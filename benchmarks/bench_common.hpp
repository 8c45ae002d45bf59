// Shared workload definition and plumbing for the benchmarks under benchmarks/.
//
// Everything here depends only on the standard library, POSIX and fmt, never on the civicbus
// library, so the peers (nats-server, redis-server) can be built and measured while src/ is in
// flux, and broker_bench can run civicbus and its peers on exactly the same workload.
//
// The utilities (TempDir, ServerProcess, connect_loopback, ...) throw std::runtime_error on
// set-up failures: in a benchmark those are fatal for the run at hand, and RAII then stops the
// servers and removes the temp dirs on the way out. The peer entry points (peers/*.hpp) catch
// them and report an error string instead.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace civicbus::bench {

// ---------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------

// One definition of the broker workload, used by civicbus and by every peer in the same run.
struct WorkloadOptions {
  // Throughput phase: `events` payloads published by `publishers` threads as fast as the
  // durable acknowledgements allow, each publisher keeping at most `window` events in flight.
  std::size_t events = 200'000;
  int publishers = 4;
  std::size_t window = 256;

  // Size of every event body (CloudEvents JSON padded to this size). At least 384 bytes.
  std::size_t payload_bytes = 512;

  // Latency phase: one publisher on an absolute schedule of `latency_rate` events/s for
  // `latency_warmup_seconds + latency_seconds`; only events scheduled after the warm-up count.
  double latency_rate = 10'000.0;
  double latency_seconds = 5.0;
  double latency_warmup_seconds = 0.5;

  // How long to wait for stragglers after the last publish before declaring events lost.
  std::chrono::milliseconds drain_timeout{10'000};

  // How long a peer server may take to accept connections after it is started.
  std::chrono::milliseconds server_start_timeout{10'000};
};

// Parses the workload flags shared by every broker benchmark binary:
//   --events N  --publishers N  --window N  --payload-bytes N
//   --rate EV_PER_S  --latency-seconds S  --warmup-seconds S
// Arguments it does not know are returned in `rest` (in order) for the binary to handle.
struct WorkloadFlags {
  WorkloadOptions options;
  std::vector<std::string> rest;
  std::string error;  // non-empty when a known flag had a missing or invalid value
};
WorkloadFlags parse_workload_flags(int argc, char** argv);
std::string workload_flags_help();

// The event body: a realistic CloudEvents-JSON "permit issued" event padded to a fixed size,
// with two fixed-width fields rewritten in place per event (no allocation per event):
//   "id":"<20 digits>"              the event sequence number
//   "civicbussentns":"<20 digits>"  the scheduled send time, steady_clock nanoseconds
class EventPayload {
 public:
  explicit EventPayload(std::size_t size = 512);

  // Rewrites the id and send-time fields; the view stays valid until the next call.
  std::string_view stamp(std::uint64_t id, std::int64_t send_ns);
  std::string_view view() const { return body_; }

  // Reads the fields back from a received body; nullopt if the body is not one of ours.
  static std::optional<std::int64_t> read_send_ns(std::string_view body);
  static std::optional<std::uint64_t> read_id(std::string_view body);

 private:
  std::string body_;
  std::size_t id_offset_ = 0;
  std::size_t send_ns_offset_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

// Latency percentiles in microseconds (nearest-rank).
struct LatencySummary {
  std::size_t count = 0;
  double p50_us = 0;
  double p99_us = 0;
  double p999_us = 0;
  double max_us = 0;
  double mean_us = 0;
};

// Sorts `samples_ns` (taken by value) and summarises it. Empty input gives all zeroes.
LatencySummary summarize_latencies(std::vector<std::int64_t> samples_ns);

// Nearest-rank percentile (q in [0,1]) of an already sorted vector.
std::int64_t percentile_sorted(const std::vector<std::int64_t>& sorted, double q);

// Outcome of a throughput run. `error` is non-empty when the run could not be made at all
// (server missing, failed to start, ...); then the figures are meaningless.
struct PeerThroughput {
  std::string peer;         // e.g. "nats_jetstream", "redis_streams"
  std::string fsync;        // durability setting the peer ran with, e.g. "always", "interval"
  std::string variant;      // free-form, no spaces (e.g. "conn=per_thread")
  std::size_t events = 0;   // events attempted
  std::size_t acked = 0;    // events positively acknowledged
  std::size_t errors = 0;   // publish calls or acks that failed (must be 0 for a valid figure)
  double seconds = 0;       // first publish to last ack
  double events_per_s = 0;  // events / seconds
  std::string first_error;  // text of the first publish/ack error, if any
  std::string error;

  bool ok() const { return error.empty(); }
};

// Outcome of a latency run; latencies are publish (scheduled time) to receive.
struct PeerLatency {
  std::string peer;
  std::string fsync;
  std::string variant;
  std::size_t sent = 0;      // events published, warm-up included
  std::size_t measured = 0;  // events scheduled after the warm-up and received
  std::size_t lost = 0;      // events not received within the drain timeout
  std::size_t errors = 0;    // publish/ack errors
  double rate = 0;           // target events/s
  LatencySummary latency;
  // How late the publisher itself sent (actual - scheduled send time), over the measured
  // events. A large value means the client was starved of CPU (a busy machine), which the
  // latency figures then include by design; it is printed as send_lag_* when count > 0.
  LatencySummary send_lag;
  std::string first_error;
  std::string error;

  bool ok() const { return error.empty(); }
};

// ---------------------------------------------------------------------------------------------
// Output (see BENCHMARKS.md)
// ---------------------------------------------------------------------------------------------

// One `<key>=<value>` pair of a BENCH line. Numbers are formatted here; strings have blanks
// replaced by '_' so that a line always splits on spaces.
struct Metric {
  template <typename T>
  requires std::is_arithmetic_v<T> Metric(std::string_view k, T v)
      : key(k), value(format_number(v)) {}
  Metric(std::string_view k, std::string_view v);
  Metric(std::string_view k, const char* v) : Metric(k, std::string_view(v)) {}
  Metric(std::string_view k, const std::string& v) : Metric(k, std::string_view(v)) {}

  std::string key;
  std::string value;

  static std::string format_number(double v);
  static std::string format_number(long long v);
  static std::string format_number(unsigned long long v);
  template <typename T>
  requires std::is_arithmetic_v<T>
  static std::string format_number(T v) {
    if constexpr (std::is_floating_point_v<T>) {
      return format_number(static_cast<double>(v));
    } else if constexpr (std::is_signed_v<T>) {
      return format_number(static_cast<long long>(v));
    } else {
      return format_number(static_cast<unsigned long long>(v));
    }
  }
};

// Prints `BENCH <name> <metric>=<value> ...` to stdout and flushes.
void print_bench(std::string_view name, std::initializer_list<Metric> metrics);
void print_bench(std::string_view name, const std::vector<Metric>& metrics);

// Prints `VS <name> ours=<v> peer=<v> peer_name=<what> unit=<unit> ratio=<r>` and flushes.
// ratio = ours/peer when higher_is_better (throughput), peer/ours otherwise (latency), so a
// ratio above 1.0 always means civicbus is ahead.
void print_vs(std::string_view name, double ours, double peer, std::string_view peer_name,
              std::string_view unit, bool higher_is_better);

// The standard BENCH lines for peer results, e.g.
//   BENCH broker_throughput peer=redis_streams fsync=always events=200000 ... events_per_s=...
// A result with an error prints a `# <name> <peer>: <error>` note on stderr instead.
void print_throughput(std::string_view name, const PeerThroughput& r);
void print_latency(std::string_view name, const PeerLatency& r);

// `BENCH <name> events=... publishers=... window=... payload_bytes=... rate=...
//  latency_seconds=... warmup_seconds=... cores=... load1=...`: what the figures that follow
// measured, and how busy the machine was when they started (1-minute load average).
void print_workload(std::string_view name, const WorkloadOptions& w);

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

// steady_clock (CLOCK_MONOTONIC on Linux) in nanoseconds.
std::int64_t steady_now_ns();

// Sleeps until the absolute steady_clock time `t_ns` (returns at once if it has passed).
void sleep_until_ns(std::int64_t t_ns);

// CPU seconds (user + system) from getrusage(2): this process's, all threads
// (`self_cpu_seconds`), or its children's that have exited and been waited for
// (`waited_children_cpu_seconds`: wrk, openssl, ... after run_program returns).
double self_cpu_seconds();
double waited_children_cpu_seconds();

// Writes all dirty pages back (sync(2)). Call it right before each measured phase: a previous
// phase leaves ~100 MB of unwritten pages behind, and their writeback would otherwise land in
// the next phase's fsyncs and latencies. The peers call it themselves.
void sync_disks();

// Lowers the calling thread's timer slack to 1 us so that absolute sleeps wake close to their
// deadline (the default 50 us slack would show up in every paced latency figure).
void reduce_timer_slack();

// ---------------------------------------------------------------------------------------------
// Processes, ports, files
// ---------------------------------------------------------------------------------------------

// A fresh directory under the system temp dir, removed recursively by the destructor.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "civicbus-bench");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close).
std::uint16_t free_port();

// Absolute path of `program` (searched on PATH unless it contains a '/'), if executable.
std::optional<std::filesystem::path> find_program(std::string_view program);

// Filesystem type of `dir` ("ext4", "tmpfs", "xfs", "overlay", ... or "fs_0x<magic>"), so a
// BENCH line can say what an fsync was worth.
std::string filesystem_type(const std::filesystem::path& dir);

// A connected TCP socket to 127.0.0.1:port with TCP_NODELAY, owned; closed by the destructor.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket();
  Socket(Socket&& other) noexcept : fd_(other.release()) {}
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  int fd() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

  // Writes all of `data` (blocking). Throws on error.
  void write_all(std::string_view data) const;
  // Reads at most `cap` bytes (blocking); returns 0 on orderly close. Throws on error.
  std::size_t read_some(char* buf, std::size_t cap) const;
  // Half-closes / wakes any reader blocked in read_some.
  void shutdown() const;

 private:
  int fd_ = -1;
};

// Connects to 127.0.0.1:port; throws on failure. Reads on the socket fail (throw) after
// `read_timeout` without data, so a hung server cannot hang a benchmark.
Socket connect_loopback(std::uint16_t port,
                        std::chrono::milliseconds read_timeout = std::chrono::seconds(30));

// Runs `program args...` to completion with stdout/stderr to `log_path` and returns its exit
// status (0-255), or -1 if it was killed after `timeout`. Throws if it cannot be started.
int run_program(std::string_view program, const std::vector<std::string>& args,
                const std::filesystem::path& log_path,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(10'000));

// A server program run as a child process for the duration of a benchmark.
//
// The child's stdout and stderr go to `log_path`. start() returns once 127.0.0.1:`port`
// accepts a TCP connection, or throws (with the log tail) if the program is missing, exits
// early or is not ready within the timeout. stop() sends SIGTERM, waits up to `stop_timeout`,
// then SIGKILLs; the destructor calls stop(). The child also gets PR_SET_PDEATHSIG=SIGKILL so
// that it does not outlive a crashed benchmark; note that Linux ties this to the *thread*
// that called start(), so start and stop servers from a thread that lives as long as they do.
class ServerProcess {
 public:
  struct Options {
    std::string program;  // name on PATH or path
    std::vector<std::string> args;
    std::filesystem::path log_path;
    std::uint16_t port = 0;
    std::chrono::milliseconds ready_timeout{10'000};
    std::chrono::milliseconds stop_timeout{5'000};
  };

  ServerProcess() = default;
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  void start(Options options);
  void stop();

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  std::uint16_t port() const { return options_.port; }
  // The last `max_bytes` of the log, for error messages.
  std::string log_tail(std::size_t max_bytes = 2'000) const;

 private:
  Options options_;
  pid_t pid_ = -1;
};

}  // namespace civicbus::bench
