// gateway_bench: the civicbus Gateway against nginx as a reverse proxy, both in front of the
// same upstream (an nginx instance answering a small JSON body), on loopback.
//
//  1. Throughput: wrk with the same threads and connections against the upstream directly,
//     nginx's proxy (forwarding the client's address, scheme and host and a request id, as the
//     gateway does and reverse-proxy configurations do), the same nginx adding nothing
//     ("nginx_bare"), the gateway (API-key auth and a rate limit on) and the gateway with a
//     plain route (no auth, no rate limit). They take turns in short rounds (in order in odd
//     rounds, in reverse in even ones) and each figure is the mean over its rounds: the
//     machine's speed drifts by tens of percent within a minute, and back-to-back single runs
//     measured that drift as much as the proxies. Beside each proxy's own CPU per request the
//     bench prints the upstream's, wrk's and the machine's idle time per request: together
//     they are the machine's time per request, which sets the throughput.
//  2. Added latency: an open-loop client sends at a fixed rate (5,000 requests/s by default)
//     on keep-alive connections and measures each request from its scheduled send time (so a
//     stall counts for every request it delays). Added latency = p99 through the proxy minus
//     p99 direct to the upstream. The three targets take turns in rounds as in 1 (each window
//     after 1 s of warm-up), and each target's samples are pooled over its rounds.
//  3. TLS: full handshakes per second (openssl s_time -new, one client, one fixed suite) and
//     wrk over kept-alive TLS connections, the gateway and nginx with the same certificate.
//
// Flags: --seconds S (wrk time per target, default 6), --rounds N (throughput rounds the time
// is split into, default 3), --rate R (default 5000), --latency-seconds S (measured time per
// target, default 6), --latency-rounds N (default 3),
// --connections N (wrk, default 64), --threads N (gateway workers = nginx workers, default 2),
// --skip-nginx, --skip-plain (no plain-route gateway), --throughput-only (no latency or TLS
// parts), --latency-only (no throughput or TLS parts).
#include <unistd.h>

#include <algorithm>
#include <asio.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>
#include <thread>

#include "bench_common.hpp"
#include "civicbus/gateway/gateway.hpp"

namespace {

using namespace civicbus::bench;
using asio::ip::tcp;
using civicbus::gateway::Gateway;
using civicbus::gateway::GatewayOptions;

constexpr std::string_view kApiKey = "bench-key-0123456789abcdef";

struct Flags {
  double seconds = 6;
  int rounds = 3;
  double rate = 5000;
  double latency_seconds = 6;
  int latency_rounds = 3;
  int connections = 64;
  int threads = 2;
  bool skip_nginx = false;
  bool skip_plain = false;       // no civicbus_plain target
  bool throughput_only = false;  // skip the latency and TLS parts
  bool latency_only = false;     // skip the throughput and TLS parts
};

Flags parse_flags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--seconds") {
      f.seconds = std::stod(next());
    } else if (a == "--rounds") {
      f.rounds = std::max(1, std::stoi(next()));
    } else if (a == "--rate") {
      f.rate = std::stod(next());
    } else if (a == "--latency-seconds") {
      f.latency_seconds = std::stod(next());
    } else if (a == "--latency-rounds") {
      f.latency_rounds = std::max(1, std::stoi(next()));
    } else if (a == "--connections") {
      f.connections = std::stoi(next());
    } else if (a == "--threads") {
      f.threads = std::stoi(next());
    } else if (a == "--skip-nginx") {
      f.skip_nginx = true;
    } else if (a == "--skip-plain") {
      f.skip_plain = true;
    } else if (a == "--throughput-only") {
      f.throughput_only = true;
    } else if (a == "--latency-only") {
      f.latency_only = true;
    } else if (a == "--help") {
      std::cout
          << "gateway_bench [--seconds S] [--rounds N] [--rate R] [--latency-seconds S] "
             "[--latency-rounds N] "
             "[--connections N] [--threads N] [--skip-nginx] [--skip-plain] [--throughput-only] "
             "[--latency-only]\n";
      std::exit(0);
    } else {
      throw std::runtime_error("unknown flag " + a);
    }
  }
  return f;
}

std::string nginx_common(const std::filesystem::path& dir, std::string_view name) {
  const std::string d = dir.string();
  std::string user = geteuid() == 0 ? "user root;\n" : "";
  return user + "daemon off;\nmaster_process on;\npid " + d + "/" + std::string(name) +
         ".pid;\nerror_log " + d + "/" + std::string(name) + ".err warn;\n";
}

std::string nginx_http_common(const std::filesystem::path& dir) {
  const std::string d = dir.string();
  return "  access_log off;\n  client_body_temp_path " + d + "/body;\n  proxy_temp_path " + d +
         "/proxy;\n  fastcgi_temp_path " + d + "/fcgi;\n  uwsgi_temp_path " + d +
         "/uwsgi;\n  scgi_temp_path " + d + "/scgi;\n  keepalive_requests 1000000;\n";
}

// The upstream: nginx answering every request with a small JSON body.
void start_upstream(ServerProcess& p, const TempDir& dir, std::uint16_t port) {
  const auto conf = dir.path() / "upstream.conf";
  std::ofstream(conf) << nginx_common(dir.path(), "upstream") << "worker_processes 1;\n"
                      << "events { worker_connections 4096; }\nhttp {\n"
                      << nginx_http_common(dir.path())
                      << "  server {\n    listen 127.0.0.1:" << port
                      << ";\n    location / { default_type application/json; return 200 "
                         "'{\"permit\":\"B-2026-0001\",\"status\":\"issued\"}'; }\n  }\n}\n";
  p.start({"nginx",
           {"-c", conf.string(), "-e", (dir.path() / "upstream.stderr").string()},
           dir.path() / "upstream.log",
           port});
}

// nginx as a reverse proxy, in three server blocks of one process (the same workers):
//  - `port`: forwarding what the gateway forwards and nginx can make by itself, as reverse-proxy
//    configurations do: the client's address (X-Forwarded-For), scheme, host and a request id;
//  - `tls_port`: the same behind TLS;
//  - `bare_port`: nothing added (the upstream parses four fewer fields per request).
// The gateway also sends traceparent, Via (RFC 9110 asks a gateway for it) and, on an
// authenticated route, X-Consumer-Id: fields nginx has no variable for.
void start_nginx_proxy(ServerProcess& p, const TempDir& dir, std::uint16_t port,
                       std::uint16_t tls_port, std::uint16_t bare_port, std::uint16_t upstream,
                       int workers) {
  const std::string cert = (dir.path() / "cert.pem").string();
  const std::string key = (dir.path() / "key.pem").string();
  const std::string bare_location =
      "    location / { proxy_pass http://backend; proxy_http_version 1.1; "
      "proxy_set_header Connection \"\"; }\n";
  const std::string forwarding_location =
      "    location / { proxy_pass http://backend; proxy_http_version 1.1;\n"
      "      proxy_set_header Connection \"\";\n"
      "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
      "      proxy_set_header X-Forwarded-Proto $scheme;\n"
      "      proxy_set_header X-Forwarded-Host $host;\n"
      "      proxy_set_header X-Request-Id $request_id; }\n";
  const auto conf = dir.path() / "proxy.conf";
  std::ofstream(conf) << nginx_common(dir.path(), "proxy") << "worker_processes " << workers
                      << ";\nevents { worker_connections 4096; }\nhttp {\n"
                      << nginx_http_common(dir.path())
                      << "  upstream backend { server 127.0.0.1:" << upstream
                      << "; keepalive 128; }\n"
                      << "  server {\n    listen 127.0.0.1:" << port << ";\n"
                      << forwarding_location << "  }\n"
                      << "  server {\n    listen 127.0.0.1:" << bare_port << ";\n"
                      << bare_location << "  }\n"
                      << "  server {\n    listen 127.0.0.1:" << tls_port << " ssl;\n"
                      << "    ssl_certificate " << cert << ";\n    ssl_certificate_key " << key
                      << ";\n    ssl_protocols TLSv1.2;\n    ssl_session_cache off;\n"
                      << "    ssl_session_tickets off;\n"
                      << forwarding_location << "  }\n}\n";
  p.start({"nginx",
           {"-c", conf.string(), "-e", (dir.path() / "proxy.stderr").string()},
           dir.path() / "proxy.log",
           port});
}

struct WrkResult {
  double requests_per_s = 0;
  long long requests = 0;  // completed in the run
  double p99_us = 0;
  long long non_2xx = 0;
  std::string error;
};

// The fields of /proc/<pid>/stat after the command name (which may hold spaces, so it is
// skipped by its closing parenthesis): [0] is the state, [1] the parent pid, [11] and [12] the
// user and system CPU time in clock ticks. Empty when the process is gone.
std::vector<std::string> stat_fields(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> f;
  const std::size_t close = text.rfind(')');
  if (close == std::string::npos) return f;
  std::istringstream fields(text.substr(close + 2));
  for (std::string x; fields >> x;) f.push_back(x);
  return f;
}

// CPU seconds (user + system) a process has used: its own threads, not its children's.
double process_cpu_seconds(pid_t pid) {
  const std::vector<std::string> f = stat_fields(pid);
  if (f.size() < 13) return 0;
  return (std::stod(f[11]) + std::stod(f[12])) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// The CPU seconds of an nginx master's workers (its child processes).
double children_cpu_seconds(pid_t parent) {
  double total = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stoll(name));
    const std::vector<std::string> f = stat_fields(pid);
    if (f.size() > 1 && std::stoll(f[1]) == parent) total += process_cpu_seconds(pid);
  }
  return total;
}

// The machine's idle time in seconds, summed over its CPUs (/proc/stat: idle and iowait).
double machine_idle_seconds() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait;
  return (idle + iowait) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double to_us(const std::string& value, const std::string& unit) {
  const double v = std::stod(value);
  if (unit == "us") return v;
  if (unit == "ms") return v * 1e3;
  if (unit == "s") return v * 1e6;
  return v;
}

WrkResult run_wrk(const TempDir& dir, std::uint16_t port, const Flags& f, std::string_view name,
                  bool tls = false, double seconds = 0) {
  WrkResult r;
  if (seconds <= 0) seconds = f.seconds;
  const auto log = dir.path() / ("wrk-" + std::string(name) + ".txt");
  const int code =
      run_program("wrk",
                  {"-t2", "-c" + std::to_string(f.connections),
                   "-d" + std::to_string(std::max(1, static_cast<int>(seconds))) + "s", "--latency",
                   "-H", "apikey: " + std::string(kApiKey),
                   std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port) +
                       "/permits/B-2026-0001"},
                  log, std::chrono::milliseconds(int(seconds * 1000) + 20'000));
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (code != 0) {
    r.error = "wrk exited with " + std::to_string(code) + ": " + text;
    return r;
  }
  // Compiled once, in the first (direct) round: the gateway's figures under
  // gateway_instructions.sh then count the gateway, not regex compilation.
  static const std::regex requests_re(R"(([0-9]+) requests in)");
  static const std::regex rate_re(R"(Requests/sec:\s+([0-9.]+))");
  static const std::regex p99_re(R"(99%\s+([0-9.]+)(us|ms|s))");
  static const std::regex non_2xx_re(R"(Non-2xx or 3xx responses:\s+([0-9]+))");
  std::smatch m;
  if (std::regex_search(text, m, requests_re)) r.requests = std::stoll(m[1]);
  if (std::regex_search(text, m, rate_re)) {
    r.requests_per_s = std::stod(m[1]);
  } else {
    r.error = "no Requests/sec in wrk output: " + text;
  }
  if (std::regex_search(text, m, p99_re)) r.p99_us = to_us(m[1], m[2]);
  if (std::regex_search(text, m, non_2xx_re)) r.non_2xx = std::stoll(m[1]);
  return r;
}

// Full TLS handshakes per second, one client doing them back to back (openssl s_time -new:
// no session reuse), with one fixed cipher suite so both servers do the same work.
struct HandshakeResult {
  double per_second = 0;
  std::string error;
};

HandshakeResult run_s_time(const TempDir& dir, std::uint16_t port, int seconds,
                           std::string_view name) {
  HandshakeResult r;
  const auto log = dir.path() / ("s_time-" + std::string(name) + ".txt");
  const int code =
      run_program("openssl",
                  {"s_time", "-connect", "127.0.0.1:" + std::to_string(port), "-new", "-time",
                   std::to_string(seconds), "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"},
                  log, std::chrono::milliseconds(seconds * 1000 + 20'000));
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::smatch m;
  if (code == 0 &&
      std::regex_search(text, m, std::regex(R"(([0-9]+) connections in ([0-9.]+) real seconds)"))) {
    const double n = std::stod(m[1]);
    const double t = std::stod(m[2]);
    if (t > 0) r.per_second = n / t;
  } else {
    r.error = "openssl s_time failed (" + std::to_string(code) + "): " + text;
  }
  return r;
}

// Which of `count` targets runs k-th in `round` (from 1): odd rounds in order, even ones in
// reverse, so that each target runs first, and last, as often.
std::size_t in_turn(int round, std::size_t k, std::size_t count) {
  return round % 2 == 1 ? k : count - 1 - k;
}

// A wrk result as one BENCH line, or its error on stderr.
void print_wrk(std::string_view metric, std::string_view target, const WrkResult& r) {
  if (!r.error.empty()) {
    std::cerr << "# " << metric << " " << target << ": " << r.error << "\n";
    return;
  }
  print_bench(metric, {{"target", target},
                       {"requests_per_s", r.requests_per_s},
                       {"p99_us", r.p99_us},
                       {"non_2xx", r.non_2xx}});
}

// ---- the open-loop latency client --------------------------------------------------------------

struct OpenLoopResult {
  std::vector<std::int64_t> latencies_ns;
  std::size_t errors = 0;
  std::size_t non_2xx = 0;
};

asio::awaitable<void> open_loop_connection(tcp::endpoint endpoint, std::size_t first,
                                           std::size_t stride, std::size_t total, std::int64_t t0,
                                           double period_ns, std::int64_t warmup_end,
                                           OpenLoopResult& out) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket socket(ex);
  asio::error_code ec;
  co_await socket.async_connect(endpoint, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    out.errors += (total - first + stride - 1) / stride;
    co_return;
  }
  socket.set_option(tcp::no_delay(true));
  asio::steady_timer timer(ex);
  const std::string request =
      "GET /permits/B-2026-0001 HTTP/1.1\r\nHost: 127.0.0.1\r\napikey: " + std::string(kApiKey) +
      "\r\n\r\n";
  std::string buffer;
  std::array<char, 8192> chunk{};
  for (std::size_t i = first; i < total; i += stride) {
    const std::int64_t scheduled = t0 + static_cast<std::int64_t>(double(i) * period_ns);
    timer.expires_at(std::chrono::steady_clock::time_point(std::chrono::nanoseconds(scheduled)));
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    co_await asio::async_write(socket, asio::buffer(request),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      ++out.errors;
      co_return;
    }
    // Read one response: the header, then Content-Length bytes.
    std::size_t header_end = std::string::npos;
    std::size_t need = 0;
    while (true) {
      if (header_end == std::string::npos) {
        header_end = buffer.find("\r\n\r\n");
        if (header_end != std::string::npos) {
          std::string head = buffer.substr(0, header_end);
          for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          const std::size_t cl = head.find("content-length:");
          const std::size_t length = cl == std::string::npos ? 0 : std::stoul(head.substr(cl + 15));
          need = header_end + 4 + length;
        }
      }
      if (header_end != std::string::npos && buffer.size() >= need) break;
      const std::size_t n = co_await socket.async_read_some(
          asio::buffer(chunk), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        ++out.errors;
        co_return;
      }
      buffer.append(chunk.data(), n);
    }
    const bool ok = buffer.compare(0, 12, "HTTP/1.1 200") == 0;
    buffer.erase(0, need);
    if (scheduled < warmup_end) continue;
    if (!ok) ++out.non_2xx;
    out.latencies_ns.push_back(steady_now_ns() - scheduled);
  }
}

OpenLoopResult open_loop(std::uint16_t port, double rate, double seconds, int connections) {
  asio::io_context io(1);
  OpenLoopResult out;
  const double warmup = 1.0;
  const auto total = static_cast<std::size_t>(rate * (seconds + warmup));
  const std::int64_t t0 = steady_now_ns() + 50'000'000;
  const double period = 1e9 / rate;
  const std::int64_t warmup_end = t0 + static_cast<std::int64_t>(warmup * 1e9);
  const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
  for (int c = 0; c < connections; ++c) {
    asio::co_spawn(io,
                   open_loop_connection(endpoint, static_cast<std::size_t>(c),
                                        static_cast<std::size_t>(connections), total, t0, period,
                                        warmup_end, out),
                   asio::detached);
  }
  reduce_timer_slack();
  io.run();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  try {
    flags = parse_flags(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "gateway_bench: " << e.what() << "\n";
    return 2;
  }
  if (!find_program("nginx") || !find_program("wrk")) {
    std::cerr << "gateway_bench: needs nginx and wrk (apt install nginx wrk)\n";
    return 1;
  }
  TempDir dir("civicbus-gateway-bench");
  // One ECDSA P-256 certificate for both TLS listeners.
  const std::string cert = (dir.path() / "cert.pem").string();
  const std::string key = (dir.path() / "key.pem").string();
  if (run_program("openssl",
                  {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                   "-keyout", key, "-out", cert, "-subj", "/CN=localhost", "-days", "2"},
                  dir.path() / "openssl.log") != 0) {
    std::cerr << "gateway_bench: openssl could not make a certificate\n";
    return 1;
  }
  ServerProcess upstream;
  ServerProcess nginx;
  const std::uint16_t upstream_port = free_port();
  start_upstream(upstream, dir, upstream_port);
  std::uint16_t nginx_port = 0;
  std::uint16_t nginx_tls_port = 0;
  std::uint16_t nginx_bare_port = 0;
  if (!flags.skip_nginx) {
    nginx_port = free_port();
    nginx_tls_port = free_port();
    nginx_bare_port = free_port();
    start_nginx_proxy(nginx, dir, nginx_port, nginx_tls_port, nginx_bare_port, upstream_port,
                      flags.threads);
  }

  // The gateway: one upstream, a prefix route with API-key auth, a consumer with a rate limit
  // that is checked on every request but never reached.
  GatewayOptions o;
  o.listener.threads = static_cast<std::size_t>(flags.threads);
  o.listener.max_pipelined_requests = 16;
  o.access_log.enabled = false;
  civicbus::gateway::UpstreamOptions u;
  u.name = "permits";
  u.targets = {"127.0.0.1:" + std::to_string(upstream_port)};
  o.upstreams.push_back(u);
  civicbus::gateway::RouteOptions route;
  route.id = "permits";
  route.path = "/permits";
  route.upstream = "permits";
  route.auth = {civicbus::gateway::AuthMethod::kApiKey};
  o.routes.push_back(route);
  civicbus::gateway::ConsumerOptions c;
  c.id = "bench";
  c.api_keys = {std::string(kApiKey)};
  c.rate_limit.requests_per_minute = 100'000'000;
  o.consumers.push_back(c);
  // A gateway made and started, with its port; null (and the reason printed) when either
  // step fails.
  auto start_gateway = [](const GatewayOptions& options, std::uint16_t& port_out) {
    auto created = Gateway::create(options);
    if (!created.ok()) {
      std::cerr << "gateway_bench: " << created.status().to_string() << "\n";
      return std::unique_ptr<Gateway>();
    }
    auto started = (*created)->start();
    if (!started.ok()) {
      std::cerr << "gateway_bench: " << started.status().to_string() << "\n";
      return std::unique_ptr<Gateway>();
    }
    port_out = *started;
    return std::move(created).value();
  };
  std::uint16_t gateway_port = 0;
  const std::unique_ptr<Gateway> gateway = start_gateway(o, gateway_port);
  if (!gateway) return 1;
  // The like-for-like gateway: the same route without authentication or a rate limit.
  GatewayOptions plain_options = o;
  plain_options.routes.back().auth.clear();
  plain_options.consumers.clear();
  std::uint16_t plain_port = 0;
  const std::unique_ptr<Gateway> plain_gateway = start_gateway(plain_options, plain_port);
  if (!plain_gateway) return 1;
  // The same gateway configuration behind a TLS listener.
  GatewayOptions tls_options = o;
  civicbus::http::TlsServerOptions tls;
  tls.default_certificate = {cert, key};
  tls_options.listener.tls = tls;
  std::uint16_t tls_port = 0;
  const std::unique_ptr<Gateway> tls_gateway = start_gateway(tls_options, tls_port);
  if (!tls_gateway) return 1;

  print_bench("gateway_workload",
              {{"wrk_seconds", flags.seconds},
               {"wrk_connections", flags.connections},
               {"workers", flags.threads},
               {"rate", flags.rate},
               {"latency_seconds", flags.latency_seconds},
               {"cores", static_cast<long long>(std::thread::hardware_concurrency())}});

  if (!flags.latency_only) {
    // ---- throughput ----
    const WrkResult direct = run_wrk(dir, upstream_port, flags, "direct");
    // The targets take turns in alternating rounds; a target's figure is the mean of its rounds
    // (p99: the worst round). Beside the gateway as configured above, "civicbus_plain" is the
    // same gateway with a route that does only what nginx does here (no authentication, no rate
    // limit): the like-for-like figure.
    // CPU per proxied request, from the processes' own CPU time over their rounds: less moved
    // by the machine's drift than requests/s, since a slower machine slows both sides alike.
    // Ours is the whole bench process (the gateways; the bench's own thread only waits on wrk);
    // nginx's is its workers'.
    struct Target {
      std::string name;
      std::uint16_t port = 0;
      bool is_nginx = false;
      WrkResult total;
      double cpu_seconds = 0;
      double upstream_seconds = 0;  // the upstream nginx's worker
      double wrk_seconds = 0;       // wrk itself
      double idle_seconds = 0;      // the machine's idle time, over all CPUs
      double wall_seconds = 0;
      long long requests = 0;
    };
    auto target = [](std::string name, std::uint16_t port, bool is_nginx) {
      Target t;
      t.name = std::move(name);
      t.port = port;
      t.is_nginx = is_nginx;
      return t;
    };
    std::vector<Target> targets = {target("civicbus", gateway_port, false)};
    if (!flags.skip_plain) targets.push_back(target("civicbus_plain", plain_port, false));
    if (!flags.skip_nginx) {
      targets.push_back(target("nginx", nginx_port, true));
      targets.push_back(target("nginx_bare", nginx_bare_port, true));
    }
    const double round_seconds = std::max(1.0, flags.seconds / flags.rounds);
    for (int round = 1; round <= flags.rounds; ++round) {
      for (std::size_t k = 0; k < targets.size(); ++k) {
        Target& t = targets[in_turn(round, k, targets.size())];
        auto cpu = [&] {
          return t.is_nginx ? children_cpu_seconds(nginx.pid()) : process_cpu_seconds(getpid());
        };
        const double before = cpu();
        const double upstream_before = children_cpu_seconds(upstream.pid());
        const double wrk_before = waited_children_cpu_seconds();
        const double idle_before = machine_idle_seconds();
        const std::int64_t wall_before = steady_now_ns();
        const WrkResult r = run_wrk(dir, t.port, flags, t.name, false, round_seconds);
        t.cpu_seconds += cpu() - before;
        t.upstream_seconds += children_cpu_seconds(upstream.pid()) - upstream_before;
        t.wrk_seconds += waited_children_cpu_seconds() - wrk_before;
        t.idle_seconds += machine_idle_seconds() - idle_before;
        t.wall_seconds += double(steady_now_ns() - wall_before) / 1e9;
        t.requests += r.requests;
        if (!r.error.empty()) t.total.error = r.error;
        t.total.requests_per_s += r.requests_per_s / flags.rounds;
        t.total.p99_us = std::max(t.total.p99_us, r.p99_us);
        t.total.non_2xx += r.non_2xx;
        print_bench("gateway_throughput_round", {{"round", static_cast<long long>(round)},
                                                 {"target", t.name},
                                                 {"requests_per_s", r.requests_per_s}});
      }
    }
    std::vector<std::pair<std::string, const WrkResult*>> results = {{"direct", &direct}};
    for (const Target& t : targets) results.emplace_back(t.name, &t.total);
    for (const auto& [name, r] : results) print_wrk("gateway_throughput", name, *r);
    // Microseconds per request of `seconds` spent in a target's rounds.
    auto per_request = [](const Target& t, double seconds) {
      return t.requests > 0 ? seconds * 1e6 / static_cast<double>(t.requests) : 0.0;
    };
    auto cpu_us = [&](const Target& t) { return per_request(t, t.cpu_seconds); };
    for (const Target& t : targets) {
      // Where the rest of the machine's time went per request: the upstream, wrk and idle
      // (the windows also hold wrk's start and exit, the same for every target).
      print_bench("gateway_cpu_per_request",
                  {{"target", t.name},
                   {"cpu_us", cpu_us(t)},
                   {"upstream_cpu_us", per_request(t, t.upstream_seconds)},
                   {"wrk_cpu_us", per_request(t, t.wrk_seconds)},
                   {"idle_us", per_request(t, t.idle_seconds)},
                   {"wall_us", per_request(t, t.wall_seconds)}});
    }
    // Each gateway against each nginx: "gateway_throughput" against nginx forwarding the
    // client's information, "..._vs_bare" against nginx adding nothing.
    for (const Target& ours : targets) {
      if (ours.is_nginx) continue;
      for (const Target& peer : targets) {
        if (!peer.is_nginx) continue;
        const std::string suffix = std::string(ours.name == "civicbus" ? "" : "_plain") +
                                   (peer.name == "nginx" ? "" : "_vs_bare");
        const std::string peer_name = peer.name == "nginx" ? "nginx_proxy" : "nginx_proxy_bare";
        if (ours.total.error.empty() && peer.total.error.empty()) {
          print_vs("gateway_throughput" + suffix, ours.total.requests_per_s,
                   peer.total.requests_per_s, peer_name, "requests/s", true);
        }
        if (cpu_us(ours) > 0 && cpu_us(peer) > 0) {
          print_vs("gateway_cpu_per_request" + suffix, cpu_us(ours), cpu_us(peer), peer_name,
                   "us_cpu_per_request", false);
        }
      }
    }
  }
  plain_gateway->stop();
  // The gateways still running, stopped before the bench returns (its exit status, 0).
  auto stop_gateways = [&] {
    tls_gateway->stop();
    gateway->stop();
    return 0;
  };
  if (flags.throughput_only) return stop_gateways();

  // ---- added latency at a fixed rate ----
  // Like the throughput, in alternating rounds (direct, the gateway, nginx; reversed in even
  // rounds), each target's samples pooled over its rounds: one window per target measured the
  // machine's drift between windows as much as the proxies.
  struct LatencyTarget {
    std::string name;
    std::uint16_t port = 0;
    OpenLoopResult pooled;
  };
  std::vector<LatencyTarget> lat = {{"direct", upstream_port, {}}, {"civicbus", gateway_port, {}}};
  if (!flags.skip_nginx) lat.push_back({"nginx", nginx_port, {}});
  const double latency_round_seconds = std::max(1.0, flags.latency_seconds / flags.latency_rounds);
  for (int round = 1; round <= flags.latency_rounds; ++round) {
    for (std::size_t k = 0; k < lat.size(); ++k) {
      LatencyTarget& t = lat[in_turn(round, k, lat.size())];
      OpenLoopResult r = open_loop(t.port, flags.rate, latency_round_seconds, 32);
      print_bench("gateway_latency_round",
                  {{"round", static_cast<long long>(round)},
                   {"target", t.name},
                   {"p99_us", summarize_latencies(r.latencies_ns).p99_us}});
      t.pooled.latencies_ns.insert(t.pooled.latencies_ns.end(), r.latencies_ns.begin(),
                                   r.latencies_ns.end());
      t.pooled.errors += r.errors;
      t.pooled.non_2xx += r.non_2xx;
    }
  }
  const OpenLoopResult& base = lat[0].pooled;
  const LatencySummary base_s = summarize_latencies(base.latencies_ns);
  const OpenLoopResult& via_ours = lat[1].pooled;
  const LatencySummary ours_s = summarize_latencies(via_ours.latencies_ns);
  print_bench("gateway_latency", {{"target", "direct"},
                                  {"rate", flags.rate},
                                  {"count", static_cast<long long>(base_s.count)},
                                  {"errors", static_cast<long long>(base.errors)},
                                  {"p50_us", base_s.p50_us},
                                  {"p99_us", base_s.p99_us},
                                  {"p999_us", base_s.p999_us}});
  print_bench("gateway_latency", {{"target", "civicbus"},
                                  {"rate", flags.rate},
                                  {"count", static_cast<long long>(ours_s.count)},
                                  {"errors", static_cast<long long>(via_ours.errors)},
                                  {"non_2xx", static_cast<long long>(via_ours.non_2xx)},
                                  {"p50_us", ours_s.p50_us},
                                  {"p99_us", ours_s.p99_us},
                                  {"p999_us", ours_s.p999_us},
                                  {"added_p50_us", ours_s.p50_us - base_s.p50_us},
                                  {"added_p99_us", ours_s.p99_us - base_s.p99_us}});
  if (!flags.skip_nginx) {
    const OpenLoopResult& via_nginx = lat[2].pooled;
    const LatencySummary nginx_s = summarize_latencies(via_nginx.latencies_ns);
    print_bench("gateway_latency", {{"target", "nginx"},
                                    {"rate", flags.rate},
                                    {"count", static_cast<long long>(nginx_s.count)},
                                    {"errors", static_cast<long long>(via_nginx.errors)},
                                    {"p50_us", nginx_s.p50_us},
                                    {"p99_us", nginx_s.p99_us},
                                    {"p999_us", nginx_s.p999_us},
                                    {"added_p50_us", nginx_s.p50_us - base_s.p50_us},
                                    {"added_p99_us", nginx_s.p99_us - base_s.p99_us}});
    // The p99s through each proxy at the same rate. (Added latency is the difference of two
    // p99s, too noisy to divide: it can come out negative for either proxy.)
    print_vs("gateway_latency_p99", ours_s.p99_us, nginx_s.p99_us, "nginx_proxy", "us_p99", false);
    print_vs("gateway_latency_p50", ours_s.p50_us, nginx_s.p50_us, "nginx_proxy", "us_p50", false);
  }
  if (flags.latency_only) return stop_gateways();
  // ---- TLS: full handshakes, and requests over kept-alive TLS connections ----
  const int handshake_seconds = 4;
  const HandshakeResult ours_hs = run_s_time(dir, tls_port, handshake_seconds, "civicbus");
  HandshakeResult nginx_hs;
  if (!flags.skip_nginx) nginx_hs = run_s_time(dir, nginx_tls_port, handshake_seconds, "nginx");
  for (const auto& [name, r] :
       {std::pair<const char*, const HandshakeResult*>{"civicbus", &ours_hs},
        {"nginx", &nginx_hs}}) {
    if (std::string(name) == "nginx" && flags.skip_nginx) continue;
    if (!r->error.empty()) {
      std::cerr << "# gateway_tls_handshakes " << name << ": " << r->error << "\n";
      continue;
    }
    print_bench("gateway_tls_handshakes", {{"target", name},
                                           {"suite", "ECDHE-ECDSA-AES128-GCM-SHA256"},
                                           {"clients", 1},
                                           {"handshakes_per_s", r->per_second}});
  }
  if (!flags.skip_nginx && ours_hs.error.empty() && nginx_hs.error.empty()) {
    print_vs("gateway_tls_handshakes", ours_hs.per_second, nginx_hs.per_second, "nginx_proxy",
             "handshakes/s", true);
  }
  const WrkResult ours_tls = run_wrk(dir, tls_port, flags, "civicbus-tls", true);
  WrkResult nginx_tls;
  if (!flags.skip_nginx) nginx_tls = run_wrk(dir, nginx_tls_port, flags, "nginx-tls", true);
  for (const auto& [name, r] :
       {std::pair<const char*, const WrkResult*>{"civicbus", &ours_tls}, {"nginx", &nginx_tls}}) {
    if (std::string(name) == "nginx" && flags.skip_nginx) continue;
    print_wrk("gateway_tls_throughput", name, *r);
  }
  if (!flags.skip_nginx && ours_tls.error.empty() && nginx_tls.error.empty()) {
    print_vs("gateway_tls_throughput", ours_tls.requests_per_s, nginx_tls.requests_per_s,
             "nginx_proxy", "requests/s", true);
  }
  return stop_gateways();
}
