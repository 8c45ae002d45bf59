#include "bench_common.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace civicbus::bench {
namespace {

constexpr std::size_t kDigits = 20;
constexpr std::string_view kIdField = R"("id":")";
constexpr std::string_view kSendNsField = R"("civicbussentns":")";

[[noreturn]] void throw_errno(std::string_view what) {
  throw std::system_error(errno, std::generic_category(), std::string(what));
}

void write_fixed_digits(char* out, std::uint64_t v) {
  for (std::size_t i = kDigits; i-- > 0;) {
    out[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
}

std::optional<std::uint64_t> read_fixed_digits(std::string_view body, std::string_view field) {
  const auto pos = body.find(field);
  if (pos == std::string_view::npos || pos + field.size() + kDigits > body.size()) {
    return std::nullopt;
  }
  std::uint64_t v = 0;
  const char* p = body.data() + pos + field.size();
  auto [end, ec] = std::from_chars(p, p + kDigits, v);
  if (ec != std::errc{} || end != p + kDigits) return std::nullopt;
  return v;
}

template <typename T>
bool parse_number(std::string_view text, T& out) {
  if constexpr (std::is_floating_point_v<T>) {
    // from_chars for double is in libstdc++ 11+, but strtod is simpler to reason about here.
    std::string s(text);
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || errno != 0 || end != s.c_str() + s.size() || !std::isfinite(v) || v < 0) {
      return false;
    }
    out = static_cast<T>(v);
    return true;
  } else {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc{} && end == text.data() + text.size();
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Workload
// ---------------------------------------------------------------------------------------------

WorkloadFlags parse_workload_flags(int argc, char** argv) {
  WorkloadFlags out;
  WorkloadOptions& o = out.options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view name = arg;
    std::optional<std::string_view> value;
    if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    auto take = [&](auto& field) {
      if (!value) {
        if (i + 1 >= argc) {
          out.error = fmt::format("{} needs a value", name);
          return;
        }
        value = argv[++i];
      }
      if (!parse_number(*value, field)) {
        out.error = fmt::format("{}: '{}' is not a valid value", name, *value);
      }
    };
    if (name == "--events") {
      take(o.events);
    } else if (name == "--publishers") {
      take(o.publishers);
    } else if (name == "--window") {
      take(o.window);
    } else if (name == "--payload-bytes") {
      take(o.payload_bytes);
    } else if (name == "--rate") {
      take(o.latency_rate);
    } else if (name == "--latency-seconds") {
      take(o.latency_seconds);
    } else if (name == "--warmup-seconds") {
      take(o.latency_warmup_seconds);
    } else {
      out.rest.emplace_back(arg);
    }
    if (!out.error.empty()) return out;
  }
  if (o.events == 0 || o.publishers <= 0 || o.window == 0 || o.latency_rate <= 0) {
    out.error = "--events, --publishers, --window and --rate must be positive";
  }
  return out;
}

std::string workload_flags_help() {
  const WorkloadOptions d;
  return fmt::format(
      "  --events N            throughput events (default {})\n"
      "  --publishers N        throughput publisher threads (default {})\n"
      "  --window N            in-flight events per publisher (default {})\n"
      "  --payload-bytes N     event body size (default {})\n"
      "  --rate EV_PER_S       latency publish rate (default {})\n"
      "  --latency-seconds S   latency measurement time (default {})\n"
      "  --warmup-seconds S    latency warm-up, not measured (default {})\n",
      d.events, d.publishers, d.window, d.payload_bytes, d.latency_rate, d.latency_seconds,
      d.latency_warmup_seconds);
}

EventPayload::EventPayload(std::size_t size) {
  const std::string zeros(kDigits, '0');
  std::string head;
  head += R"({"specversion":"1.0","type":"city.permit.issued","source":"/civicbus/bench/permits",)";
  head += kIdField;
  id_offset_ = head.size();
  head += zeros;
  head += R"(","time":"2024-05-01T12:00:00Z","datacontenttype":"application/json",)";
  head += kSendNsField;
  send_ns_offset_ = head.size();
  head += zeros;
  head += R"(","data":{"permit_id":"BP-2024-004711","applicant":"Northside Bakery LLC",)"
          R"("parcel":"14-21-302-017","ward":7,"kind":"building","status":"issued","notes":")";
  constexpr std::string_view kTail = R"("}})";
  if (size < head.size() + kTail.size() + 8) {
    throw std::invalid_argument(
        fmt::format("payload of {} bytes is too small; the event needs at least {}", size,
                    head.size() + kTail.size() + 8));
  }
  constexpr std::string_view kFiller =
      "Renovation of ground-floor retail unit, new storefront and signage; final inspection "
      "scheduled with the building department. ";
  body_ = std::move(head);
  const std::size_t pad = size - body_.size() - kTail.size();
  for (std::size_t i = 0; i < pad; ++i) body_ += kFiller[i % kFiller.size()];
  body_ += kTail;
}

std::string_view EventPayload::stamp(std::uint64_t id, std::int64_t send_ns) {
  write_fixed_digits(body_.data() + id_offset_, id);
  write_fixed_digits(body_.data() + send_ns_offset_, static_cast<std::uint64_t>(send_ns));
  return body_;
}

std::optional<std::int64_t> EventPayload::read_send_ns(std::string_view body) {
  auto v = read_fixed_digits(body, kSendNsField);
  if (!v) return std::nullopt;
  return static_cast<std::int64_t>(*v);
}

std::optional<std::uint64_t> EventPayload::read_id(std::string_view body) {
  return read_fixed_digits(body, kIdField);
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

std::int64_t percentile_sorted(const std::vector<std::int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  // Nearest rank: the smallest value with at least q of the samples at or below it.
  const double rank = std::ceil(q * static_cast<double>(sorted.size()));
  const std::size_t idx =
      std::clamp<std::size_t>(static_cast<std::size_t>(rank), 1, sorted.size()) - 1;
  return sorted[idx];
}

LatencySummary summarize_latencies(std::vector<std::int64_t> samples_ns) {
  LatencySummary s;
  if (samples_ns.empty()) return s;
  std::sort(samples_ns.begin(), samples_ns.end());
  auto us = [](std::int64_t ns) { return static_cast<double>(ns) / 1'000.0; };
  s.count = samples_ns.size();
  s.p50_us = us(percentile_sorted(samples_ns, 0.50));
  s.p99_us = us(percentile_sorted(samples_ns, 0.99));
  s.p999_us = us(percentile_sorted(samples_ns, 0.999));
  s.max_us = us(samples_ns.back());
  long double sum = 0;
  for (auto v : samples_ns) sum += v;
  s.mean_us = static_cast<double>(sum / samples_ns.size()) / 1'000.0;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

Metric::Metric(std::string_view k, std::string_view v) : key(k), value(v) {
  std::replace_if(
      value.begin(), value.end(), [](char c) { return c == ' ' || c == '\t' || c == '\n'; }, '_');
  if (value.empty()) value = "-";
}

std::string Metric::format_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (std::fabs(v) >= 100.0) return fmt::format("{:.1f}", v);
  return fmt::format("{:.3f}", v);
}
std::string Metric::format_number(long long v) {
  return fmt::format("{}", v);
}
std::string Metric::format_number(unsigned long long v) {
  return fmt::format("{}", v);
}

void print_bench(std::string_view name, const std::vector<Metric>& metrics) {
  std::string line = fmt::format("BENCH {}", name);
  for (const auto& m : metrics) line += fmt::format(" {}={}", m.key, m.value);
  line += '\n';
  std::fputs(line.c_str(), stdout);
  std::fflush(stdout);
}

void print_bench(std::string_view name, std::initializer_list<Metric> metrics) {
  print_bench(name, std::vector<Metric>(metrics));
}

void print_vs(std::string_view name, double ours, double peer, std::string_view peer_name,
              std::string_view unit, bool higher_is_better) {
  double ratio = std::numeric_limits<double>::quiet_NaN();
  if (higher_is_better && peer != 0) ratio = ours / peer;
  if (!higher_is_better && ours != 0) ratio = peer / ours;
  const std::string line = fmt::format(
      "VS {} ours={} peer={} peer_name={} unit={} ratio={}\n", name, Metric::format_number(ours),
      Metric::format_number(peer), Metric("", peer_name).value, Metric("", unit).value,
      std::isfinite(ratio) ? fmt::format("{:.3f}", ratio) : std::string("nan"));
  std::fputs(line.c_str(), stdout);
  std::fflush(stdout);
}

void print_throughput(std::string_view name, const PeerThroughput& r) {
  if (!r.ok()) {
    std::fprintf(stderr, "# %.*s %s: %s\n", static_cast<int>(name.size()), name.data(),
                 r.peer.c_str(), r.error.c_str());
    return;
  }
  std::vector<Metric> m{{"peer", r.peer}, {"fsync", r.fsync}};
  if (!r.variant.empty()) m.emplace_back("variant", r.variant);
  m.emplace_back("events", r.events);
  m.emplace_back("acked", r.acked);
  m.emplace_back("errors", r.errors);
  m.emplace_back("seconds", r.seconds);
  m.emplace_back("events_per_s", r.events_per_s);
  print_bench(name, m);
  if (r.errors != 0) {
    std::fprintf(stderr, "# %.*s %s: %zu errors, first: %s\n", static_cast<int>(name.size()),
                 name.data(), r.peer.c_str(), r.errors, r.first_error.c_str());
  }
}

void print_latency(std::string_view name, const PeerLatency& r) {
  if (!r.ok()) {
    std::fprintf(stderr, "# %.*s %s: %s\n", static_cast<int>(name.size()), name.data(),
                 r.peer.c_str(), r.error.c_str());
    return;
  }
  std::vector<Metric> m{{"peer", r.peer}, {"fsync", r.fsync}};
  if (!r.variant.empty()) m.emplace_back("variant", r.variant);
  m.emplace_back("rate", r.rate);
  m.emplace_back("sent", r.sent);
  m.emplace_back("measured", r.measured);
  m.emplace_back("lost", r.lost);
  m.emplace_back("errors", r.errors);
  m.emplace_back("p50_us", r.latency.p50_us);
  m.emplace_back("p99_us", r.latency.p99_us);
  m.emplace_back("p999_us", r.latency.p999_us);
  m.emplace_back("max_us", r.latency.max_us);
  m.emplace_back("mean_us", r.latency.mean_us);
  if (r.send_lag.count > 0) {
    m.emplace_back("send_lag_p99_us", r.send_lag.p99_us);
    m.emplace_back("send_lag_max_us", r.send_lag.max_us);
  }
  print_bench(name, m);
  if (r.errors != 0 || r.lost != 0) {
    std::fprintf(stderr, "# %.*s %s: %zu errors, %zu lost, first error: %s\n",
                 static_cast<int>(name.size()), name.data(), r.peer.c_str(), r.errors, r.lost,
                 r.first_error.c_str());
  }
}

void print_workload(std::string_view name, const WorkloadOptions& w) {
  double load1 = -1;
  ::getloadavg(&load1, 1);
  print_bench(name, {{"events", w.events},
                     {"publishers", w.publishers},
                     {"window", w.window},
                     {"payload_bytes", w.payload_bytes},
                     {"rate", w.latency_rate},
                     {"latency_seconds", w.latency_seconds},
                     {"warmup_seconds", w.latency_warmup_seconds},
                     {"cores", std::thread::hardware_concurrency()},
                     {"load1", load1}});
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

std::int64_t steady_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void sleep_until_ns(std::int64_t t_ns) {
  // libstdc++'s steady_clock is CLOCK_MONOTONIC, so an absolute clock_nanosleep matches it.
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(t_ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(t_ns % 1'000'000'000);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

void sync_disks() {
  ::sync();
}

namespace {
double rusage_cpu_seconds(int who) {
  rusage u{};
  ::getrusage(who, &u);
  auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}
}  // namespace

double self_cpu_seconds() {
  return rusage_cpu_seconds(RUSAGE_SELF);
}
double waited_children_cpu_seconds() {
  return rusage_cpu_seconds(RUSAGE_CHILDREN);
}

void reduce_timer_slack() {
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
}

// ---------------------------------------------------------------------------------------------
// Processes, ports, files
// ---------------------------------------------------------------------------------------------

TempDir::TempDir(std::string_view prefix) {
  std::string pattern =
      (std::filesystem::temp_directory_path() / fmt::format("{}-XXXXXX", prefix)).string();
  if (::mkdtemp(pattern.data()) == nullptr) throw_errno("mkdtemp " + pattern);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  if (ec) {
    std::fprintf(stderr, "# could not remove %s: %s\n", path_.c_str(), ec.message().c_str());
  }
}

std::uint16_t free_port() {
  Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) throw_errno("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(s.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw_errno("bind");
  socklen_t len = sizeof addr;
  if (::getsockname(s.fd(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw_errno("getsockname");
  }
  return ntohs(addr.sin_port);
}

std::optional<std::filesystem::path> find_program(std::string_view program) {
  auto executable = [](const std::filesystem::path& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
  };
  if (program.find('/') != std::string_view::npos) {
    std::filesystem::path p(program);
    if (executable(p)) return std::filesystem::absolute(p);
    return std::nullopt;
  }
  const char* env = std::getenv("PATH");
  std::string_view path = env != nullptr ? env : "/usr/local/bin:/usr/bin:/bin";
  while (!path.empty()) {
    const auto colon = path.find(':');
    std::string_view dir = path.substr(0, colon);
    path = colon == std::string_view::npos ? std::string_view{} : path.substr(colon + 1);
    if (dir.empty()) dir = ".";
    auto candidate = std::filesystem::path(dir) / program;
    if (executable(candidate)) return candidate;
  }
  return std::nullopt;
}

std::string filesystem_type(const std::filesystem::path& dir) {
  struct statfs st {};
  if (::statfs(dir.c_str(), &st) != 0) return "unknown";
  switch (static_cast<unsigned long>(st.f_type)) {
    case 0xEF53:
      return "ext4";
    case 0x01021994:
      return "tmpfs";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x794C7630:
      return "overlay";
    case 0x2FC12FC1:
      return "zfs";
    case 0x6969:
      return "nfs";
    case 0xF2F52010:
      return "f2fs";
    default:
      return fmt::format("fs_0x{:x}", static_cast<unsigned long>(st.f_type));
  }
}

Socket::~Socket() {
  if (fd_ >= 0) ::close(fd_);
}

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

void Socket::write_all(std::string_view data) const {
  while (!data.empty()) {
    const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("send");
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

std::size_t Socket::read_some(char* buf, std::size_t cap) const {
  for (;;) {
    const ssize_t n = ::recv(fd_, buf, cap, 0);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      throw std::runtime_error("recv: no data within the socket's read timeout");
    }
    if (errno != EINTR) throw_errno("recv");
  }
}

void Socket::shutdown() const {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

namespace {
// Connects without throwing; returns an invalid Socket on failure (errno set).
Socket try_connect_loopback(std::uint16_t port) {
  Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return s;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  int rc;
  do {
    rc = ::connect(s.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return Socket{};
  int one = 1;
  ::setsockopt(s.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return s;
}
}  // namespace

Socket connect_loopback(std::uint16_t port, std::chrono::milliseconds read_timeout) {
  Socket s = try_connect_loopback(port);
  if (!s) throw_errno(fmt::format("connect 127.0.0.1:{}", port));
  if (read_timeout.count() > 0) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(read_timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((read_timeout.count() % 1000) * 1000);
    ::setsockopt(s.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  return s;
}

ServerProcess::~ServerProcess() {
  stop();
}

namespace {

// fork/exec of `program` (looked up on PATH) with stdin from /dev/null and stdout/stderr to
// `log_path`. The child dies with its parent thread (PR_SET_PDEATHSIG).
pid_t spawn_logged(std::string_view program_name, const std::vector<std::string>& args,
                   const std::filesystem::path& log_path) {
  const auto program = find_program(program_name);
  if (!program) {
    throw std::runtime_error(fmt::format("{} not found on PATH; install it (Debian package '{}')",
                                         program_name, program_name));
  }

  // Everything the child needs is prepared before fork(): after it, in a multi-threaded
  // process, the child may only make async-signal-safe calls.
  std::vector<std::string> arg_storage;
  arg_storage.push_back(program->string());
  for (const auto& a : args) arg_storage.push_back(a);
  std::vector<char*> argv;
  for (auto& a : arg_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) throw_errno("open " + log_path.string());
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) {
    ::close(log_fd);
    throw_errno("open /dev/null");
  }
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    ::close(null_fd);
    throw_errno("fork");
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    // The benchmark's threads may block signals or ignore SIGPIPE; the server must not inherit
    // that (a server that ignores SIGTERM would only ever stop by SIGKILL).
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGPIPE, &dfl, nullptr);
    ::sigaction(SIGTERM, &dfl, nullptr);
    ::sigaction(SIGINT, &dfl, nullptr);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    constexpr char kMsg[] = "exec failed\n";
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
    ::_exit(127);
  }
  ::close(log_fd);
  ::close(null_fd);
  return pid;
}

}  // namespace

int run_program(std::string_view program, const std::vector<std::string>& args,
                const std::filesystem::path& log_path, std::chrono::milliseconds timeout) {
  const pid_t pid = spawn_logged(program, args, log_path);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) throw_errno("waitpid");
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

void ServerProcess::start(Options options) {
  if (running()) throw std::logic_error("ServerProcess::start called twice");
  options_ = std::move(options);
  pid_ = spawn_logged(options_.program, options_.args, options_.log_path);

  const auto deadline = std::chrono::steady_clock::now() + options_.ready_timeout;
  auto exited = [this]() -> std::optional<int> {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    return std::nullopt;
  };
  auto describe = [](int status) {
    if (WIFEXITED(status)) return fmt::format("exit code {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return fmt::format("signal {}", WTERMSIG(status));
    return fmt::format("status {:#x}", status);
  };
  for (;;) {
    if (auto status = exited()) {
      throw std::runtime_error(fmt::format("{} exited during start-up ({}); log {}:\n{}",
                                           options_.program, describe(*status),
                                           options_.log_path.string(), log_tail()));
    }
    if (try_connect_loopback(options_.port)) {
      // Someone else may have taken the port between free_port() and the bind; then our
      // server exits shortly after failing to bind.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (auto status = exited()) {
        throw std::runtime_error(fmt::format("{} exited during start-up ({}); log {}:\n{}",
                                             options_.program, describe(*status),
                                             options_.log_path.string(), log_tail()));
      }
      return;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      const std::string tail = log_tail();
      stop();
      throw std::runtime_error(
          fmt::format("{} did not accept connections on 127.0.0.1:{} within {} ms; log:\n{}",
                      options_.program, options_.port, options_.ready_timeout.count(), tail));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void ServerProcess::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + options_.stop_timeout;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::fprintf(stderr, "# %s (pid %d) ignored SIGTERM for %lld ms; sending SIGKILL\n",
               options_.program.c_str(), static_cast<int>(pid_),
               static_cast<long long>(options_.stop_timeout.count()));
  ::kill(pid_, SIGKILL);
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

std::string ServerProcess::log_tail(std::size_t max_bytes) const {
  std::ifstream in(options_.log_path, std::ios::binary);
  if (!in) return "(no log)";
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  if (s.empty()) return "(empty log)";
  if (s.size() > max_bytes) s = "..." + s.substr(s.size() - max_bytes);
  return s;
}

}  // namespace civicbus::bench
