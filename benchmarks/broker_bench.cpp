// broker_bench: civicbus's durable event log against NATS JetStream and Redis Streams on the
// same workload in the same run (see bench_common.hpp for the workload).
//
//   throughput  N CloudEvents of 512 bytes parsed from JSON text and published by 4 threads with
//               publish_async (each keeping `window` in flight); an event counts when it is
//               durable: SQLite WAL, synchronous=FULL, group commit.
//   latency     one publisher on an absolute 10,000 events/s schedule, one consumer group;
//               publish (scheduled time) to handler start; broker_latency_parts splits it
//               (publisher lateness, durable ack, one group commit).
//   memory      resident set size with 1,000,000 events in the log (--memory-events), measured
//               in a fresh child process so earlier phases do not count.
//
// Flags: the shared workload flags, plus --memory-events N (0 skips), --skip-peers,
// --maintenance-ms MS (broker maintenance period, default 1000 as on a node; 0 turns it off).
#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "civicbus/broker/broker.hpp"
#include "civicbus/core/executor.hpp"
#include "civicbus/core/metrics.hpp"
#include "civicbus/core/random.hpp"
#include "civicbus/storage/database.hpp"
#include "civicbus/transport/transport.hpp"
#include "peers/nats_peer.hpp"
#include "peers/redis_peer.hpp"

namespace civicbus::bench {
namespace {

constexpr std::string_view kTopic = "city.permit.issued";
// Broker maintenance period (retention, publish audit, offsets, lag gauges); a node's default.
std::chrono::milliseconds g_maintenance{1000};

// A node's broker stack on a fresh SQLite file, as the Node composes it.
struct Stack {
  SystemClock clock;
  SecureRandom random;
  MetricsRegistry metrics;
  std::unique_ptr<Executor> executor;
  std::unique_ptr<storage::Database> db;
  std::unique_ptr<transport::Transport> transport;
  std::unique_ptr<broker::Broker> broker;

  explicit Stack(const std::filesystem::path& dir) {
    executor = make_thread_pool(2);
    const std::string path = (dir / "civicbus.db").string();
    storage::SqliteOptions so;
    so.path = path;
    db = check(storage::open_sqlite(so));
    transport::InProcessOptions lo;
    lo.path = (dir / "log.db").string();  // as a Node lays out its data directory
    lo.synchronous_full = true;
    transport = check(transport::open_in_process(lo, clock, &metrics));
    broker::BrokerOptions bo;
    // Maintenance (retention, publish audit, lag gauges) runs every second as on a node.
    bo.maintenance_interval = g_maintenance;
    Logger logger(LogOptions{LogLevel::kWarn, LogFormat::kText, {}}, clock);
    broker = check(broker::Broker::open(
        bo, broker::BrokerContext{*db, *transport, *executor, clock, metrics, random, logger}));
    broker::TopicOptions t;
    t.name = std::string(kTopic);
    t.owner = "permits";
    t.retention = std::chrono::seconds(0);
    Status st = broker->create_topic(t);
    if (!st.ok()) throw std::runtime_error(st.to_string());
  }

  ~Stack() {
    if (broker) broker->close();
    broker.reset();
    if (transport) transport->close();
  }

  template <typename T>
  static T check(Result<T> r) {
    if (!r.ok()) throw std::runtime_error(r.status().to_string());
    return std::move(r).value();
  }
};

double rss_mb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

// Publishes `count` events from `publishers` threads, each with at most `window` in flight.
// Returns seconds from the first publish to the last acknowledgement.
struct PublishRun {
  double seconds = 0;
  std::size_t acked = 0;
  std::size_t errors = 0;
  std::string first_error;
};

PublishRun publish_storm(broker::Broker& b, const WorkloadOptions& w, std::size_t count,
                         std::uint64_t id_base) {
  PublishRun run;
  std::atomic<std::size_t> acked{0};
  std::atomic<std::size_t> errors{0};
  std::mutex err_mu;
  const std::int64_t start = steady_now_ns();
  std::vector<std::thread> threads;
  for (int p = 0; p < w.publishers; ++p) {
    threads.emplace_back([&, p] {
      EventPayload payload(w.payload_bytes);
      std::mutex mu;
      std::condition_variable cv;
      std::size_t in_flight = 0;
      const std::size_t mine =
          count / static_cast<std::size_t>(w.publishers) +
          (static_cast<std::size_t>(p) < count % static_cast<std::size_t>(w.publishers));
      // Flow control as a producer of an asynchronous API does it: keep up to `window` events
      // in flight and, once full, refill when half of them are acknowledged (waking the
      // thread for every single ack would measure the scheduler, not the broker).
      const std::size_t refill_at = w.window / 2;
      for (std::size_t i = 0; i < mine; ++i) {
        {
          std::unique_lock lock(mu);
          if (in_flight >= w.window) cv.wait(lock, [&] { return in_flight <= refill_at; });
          ++in_flight;
        }
        const std::uint64_t id = id_base + static_cast<std::uint64_t>(p) * 1'000'000'000ULL + i;
        auto event = broker::CloudEvent::parse(payload.stamp(id, steady_now_ns()));
        if (!event.ok()) {
          ++errors;
          std::lock_guard lock(mu);
          --in_flight;
          continue;
        }
        b.publish_async(std::move(event).value(), [&](Result<broker::PublishAck> r) {
          if (r.ok()) {
            acked.fetch_add(1, std::memory_order_relaxed);
          } else {
            if (errors.fetch_add(1) == 0) {
              std::lock_guard lock(err_mu);
              run.first_error = r.status().to_string();
            }
          }
          std::lock_guard lock(mu);
          if (--in_flight == refill_at || in_flight == 0) cv.notify_one();
        });
      }
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return in_flight == 0; });
    });
  }
  for (auto& t : threads) t.join();
  run.seconds = static_cast<double>(steady_now_ns() - start) / 1e9;
  run.acked = acked;
  run.errors = errors;
  return run;
}

PeerThroughput civicbus_throughput(const WorkloadOptions& w) {
  PeerThroughput r;
  r.peer = "civicbus";
  r.fsync = "always";
  r.variant = "sqlite_wal_synchronous_full_group_commit";
  r.events = w.events;
  try {
    TempDir dir("civicbus-bench-tp");
    Stack s(dir.path());
    r.variant += "_fs=" + filesystem_type(dir.path());
    sync_disks();
    PublishRun run = publish_storm(*s.broker, w, w.events, 0);
    r.acked = run.acked;
    r.errors = run.errors;
    r.first_error = run.first_error;
    r.seconds = run.seconds;
    r.events_per_s = static_cast<double>(w.events) / run.seconds;
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

PeerLatency civicbus_latency(const WorkloadOptions& w) {
  PeerLatency r;
  r.peer = "civicbus";
  r.fsync = "always";
  r.variant = "consumer_group";
  r.rate = w.latency_rate;
  try {
    TempDir dir("civicbus-bench-lat");
    Stack s(dir.path());
    std::mutex mu;
    std::vector<std::int64_t> samples;
    // Where the time goes: the publisher's own lateness (the machine's scheduling), and the
    // durable acknowledgement (queueing for and doing the group commit).
    std::vector<std::int64_t> send_lag, acked;
    const std::size_t total =
        static_cast<std::size_t>(w.latency_rate * (w.latency_seconds + w.latency_warmup_seconds));
    const std::int64_t period_ns = static_cast<std::int64_t>(1e9 / w.latency_rate);
    samples.reserve(total);
    std::atomic<std::size_t> received{0};
    std::int64_t measure_from_ns = 0;
    broker::ConsumerGroupOptions g;
    g.group = "latency";
    g.topics = {std::string(kTopic)};
    g.parallelism = 1;
    auto sub = s.broker->subscribe(g, [&](const broker::DeliveredEvent& e) {
      const std::int64_t now = steady_now_ns();
      const std::string sent = e.event.document().get_string("civicbussentns");
      const std::int64_t sent_ns = std::stoll(sent);
      ++received;
      if (sent_ns >= measure_from_ns) {
        std::lock_guard lock(mu);
        samples.push_back(now - sent_ns);
      }
      return Status();
    });
    if (!sub.ok()) throw std::runtime_error(sub.status().to_string());
    sync_disks();
    reduce_timer_slack();
    EventPayload payload(w.payload_bytes);
    const std::int64_t start = steady_now_ns() + 1'000'000;
    measure_from_ns = start + static_cast<std::int64_t>(w.latency_warmup_seconds * 1e9);
    std::atomic<std::size_t> errors{0};
    for (std::size_t i = 0; i < total; ++i) {
      const std::int64_t at = start + static_cast<std::int64_t>(i) * period_ns;
      sleep_until_ns(at);
      auto event = broker::CloudEvent::parse(payload.stamp(i, at));
      if (!event.ok()) {
        ++errors;
        continue;
      }
      if (at >= measure_from_ns) {
        std::lock_guard lock(mu);
        send_lag.push_back(steady_now_ns() - at);
      }
      s.broker->publish_async(std::move(event).value(), [&, at](Result<broker::PublishAck> a) {
        if (!a.ok()) ++errors;
        if (at >= measure_from_ns) {
          std::lock_guard lock(mu);
          acked.push_back(steady_now_ns() - at);
        }
      });
    }
    r.sent = total;
    const std::int64_t drain_until = steady_now_ns() + w.drain_timeout.count() * 1'000'000;
    while (received < total && steady_now_ns() < drain_until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    (*sub)->stop();
    r.errors = errors;
    r.lost = total - std::min(total, received.load());
    std::lock_guard lock(mu);
    r.measured = samples.size();
    r.latency = summarize_latencies(samples);
    const LatencySummary lag = summarize_latencies(std::move(send_lag));
    const LatencySummary ack = summarize_latencies(std::move(acked));
    // The log's own histograms (bucketed, so approximate): one group commit, insert + fsync.
    Histogram& commit = s.metrics.histogram("civicbus_log_commit_seconds", "");
    Histogram& batch = s.metrics.histogram("civicbus_log_commit_batch_records", "");
    print_bench("broker_latency_parts", {{"peer", "civicbus"},
                                         {"send_lag_p99_us", lag.p99_us},
                                         {"send_lag_p999_us", lag.p999_us},
                                         {"ack_p50_us", ack.p50_us},
                                         {"ack_p99_us", ack.p99_us},
                                         {"commits", static_cast<std::size_t>(commit.count())},
                                         {"commit_p50_us", commit.quantile(0.5) * 1e6},
                                         {"commit_p99_us", commit.quantile(0.99) * 1e6},
                                         {"commit_p999_us", commit.quantile(0.999) * 1e6},
                                         {"batch_p50", batch.quantile(0.5)}});
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

void civicbus_memory(const WorkloadOptions& w, std::size_t events) {
  TempDir dir("civicbus-bench-mem");
  double before = rss_mb();
  Stack s(dir.path());
  PublishRun run = publish_storm(*s.broker, w, events, 5'000'000'000ULL);
  double after = rss_mb();
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  auto usage = s.transport->usage(std::string(kTopic));
  print_bench("broker_memory", {{"peer", "civicbus"},
                                {"events", usage.records},
                                {"acked", run.acked},
                                {"errors", run.errors},
                                {"log_mb", static_cast<double>(usage.bytes) / (1 << 20)},
                                {"rss_mb", after},
                                {"rss_before_mb", before},
                                {"max_rss_mb", static_cast<double>(ru.ru_maxrss) / 1024.0},
                                {"events_per_s", static_cast<double>(events) / run.seconds}});
}

}  // namespace
}  // namespace civicbus::bench

int main(int argc, char** argv) {
  using namespace civicbus::bench;
  WorkloadFlags flags = parse_workload_flags(argc, argv);
  if (!flags.error.empty()) {
    std::fprintf(stderr, "%s\n%s", flags.error.c_str(), workload_flags_help().c_str());
    return 2;
  }
  std::size_t memory_events = 1'000'000;
  bool skip_peers = false;
  for (std::size_t i = 0; i < flags.rest.size(); ++i) {
    if (flags.rest[i] == "--memory-events" && i + 1 < flags.rest.size()) {
      memory_events = std::stoull(flags.rest[++i]);
    } else if (flags.rest[i] == "--maintenance-ms" && i + 1 < flags.rest.size()) {
      g_maintenance = std::chrono::milliseconds(std::stoll(flags.rest[++i]));
    } else if (flags.rest[i] == "--help" || flags.rest[i] == "-h") {
      std::printf(
          "usage: broker_bench [flags]\n%s  --memory-events N  --skip-peers  --maintenance-ms MS "
          "(0: off)\n",
          workload_flags_help().c_str());
      return 0;
    } else if (flags.rest[i] == "--skip-peers") {
      skip_peers = true;
    } else {
      std::fprintf(
          stderr,
          "unknown flag %s\n%s  --memory-events N  --skip-peers  --maintenance-ms MS (0: off)\n",
          flags.rest[i].c_str(), workload_flags_help().c_str());
      return 2;
    }
  }
  const WorkloadOptions& w = flags.options;
  print_workload("broker_workload", w);
  std::fflush(stdout);

  // The memory figure is the resident set of a process that holds a node with N events in
  // its log, so it runs first, in a child of its own: the other phases' allocations (the
  // peers' clients, latency samples) would otherwise count against it.
  if (memory_events > 0) {
    pid_t child = ::fork();
    if (child == 0) {
      int rc = 0;
      try {
        civicbus_memory(w, memory_events);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "broker_memory: %s\n", e.what());
        rc = 1;
      }
      std::fflush(stdout);
      ::_exit(rc);
    }
    int wstatus = 0;
    if (child < 0 || ::waitpid(child, &wstatus, 0) < 0 || !WIFEXITED(wstatus) ||
        WEXITSTATUS(wstatus) != 0) {
      std::fprintf(stderr, "broker_memory: the memory run failed\n");
    }
  }

  PeerThroughput ours = civicbus_throughput(w);
  print_throughput("broker_throughput", ours);
  PeerThroughput nats, redis;
  if (!skip_peers) {
    nats = nats_jetstream_throughput(w);
    print_throughput("broker_throughput", nats);
    redis = redis_streams_throughput(w);
    print_throughput("broker_throughput", redis);
  }

  PeerLatency ours_lat = civicbus_latency(w);
  print_latency("broker_latency", ours_lat);
  PeerLatency nats_lat, redis_lat;
  if (!skip_peers) {
    nats_lat = nats_jetstream_latency(w);
    print_latency("broker_latency", nats_lat);
    redis_lat = redis_streams_latency(w);
    print_latency("broker_latency", redis_lat);
  }

  if (ours.ok() && nats.ok() && !skip_peers) {
    print_vs("broker_throughput", ours.events_per_s, nats.events_per_s,
             "nats_jetstream_fsync_" + nats.fsync, "events/s", true);
  }
  if (ours.ok() && redis.ok() && !skip_peers) {
    print_vs("broker_throughput", ours.events_per_s, redis.events_per_s,
             "redis_streams_appendfsync_" + redis.fsync, "events/s", true);
  }
  if (ours_lat.ok() && nats_lat.ok() && !skip_peers) {
    print_vs("broker_latency_p99", ours_lat.latency.p99_us, nats_lat.latency.p99_us,
             "nats_jetstream_fsync_" + nats_lat.fsync, "us_p99", false);
  }
  if (ours_lat.ok() && redis_lat.ok() && !skip_peers) {
    print_vs("broker_latency_p99", ours_lat.latency.p99_us, redis_lat.latency.p99_us,
             "redis_streams_appendfsync_" + redis_lat.fsync, "us_p99", false);
  }
  return 0;
}
