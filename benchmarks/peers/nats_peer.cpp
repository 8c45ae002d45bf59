#include "peers/nats_peer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <fstream>
#include <latch>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#if CIVICBUS_BENCH_HAVE_CNATS
#include <nats/nats.h>
#endif

namespace civicbus::bench {
namespace {

constexpr const char* kStream = "BENCH";

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

void write_sync_always_config(const std::filesystem::path& conf, const std::filesystem::path& store,
                              std::uint16_t port) {
  std::ofstream out(conf);
  out << "listen: 127.0.0.1:" << port << "\n"
      << "jetstream {\n  store_dir: \"" << store.string() << "\"\n  sync_interval: always\n}\n";
  if (!out) throw std::runtime_error("cannot write " + conf.string());
}

}  // namespace

NatsFeatureSupport nats_sync_always_support(const NatsPeerOptions& options) {
  NatsFeatureSupport s;
  try {
    TempDir dir("civicbus-bench-natscheck");
    const auto conf = dir.path() / "sync_always.conf";
    write_sync_always_config(conf, dir.path() / "js", 4222);
    const auto log = dir.path() / "check.log";
    const int rc = run_program(options.server, {"-t", "-c", conf.string()}, log);
    if (rc == 0) {
      s.supported = true;
    } else {
      s.reason = fmt::format(
          "{} rejects `jetstream {{ sync_interval: always }}` ({}); it needs "
          "nats-server >= 2.10",
          options.server, trim(read_file(log)));
    }
  } catch (const std::exception& e) {
    s.reason = e.what();
  }
  return s;
}

#if !CIVICBUS_BENCH_HAVE_CNATS

bool nats_peer_built() {
  return false;
}

PeerThroughput nats_jetstream_throughput(const WorkloadOptions& workload,
                                         const NatsPeerOptions& options) {
  PeerThroughput r;
  r.peer = "nats_jetstream";
  r.fsync = options.fsync;
  r.events = workload.events;
  r.error =
      "benchmarks built without libnats (CMake found no cnats package; apt install "
      "libnats-dev and reconfigure)";
  return r;
}

PeerLatency nats_jetstream_latency(const WorkloadOptions& workload,
                                   const NatsPeerOptions& options) {
  PeerLatency r;
  r.peer = "nats_jetstream";
  r.fsync = options.fsync;
  r.rate = workload.latency_rate;
  r.error =
      "benchmarks built without libnats (CMake found no cnats package; apt install "
      "libnats-dev and reconfigure)";
  return r;
}

#else  // CIVICBUS_BENCH_HAVE_CNATS

bool nats_peer_built() {
  return true;
}

namespace {

// ---------------------------------------------------------------------------------------------
// cnats handles
// ---------------------------------------------------------------------------------------------

struct ConnDeleter {
  void operator()(natsConnection* c) const { natsConnection_Destroy(c); }
};
struct JsDeleter {
  void operator()(jsCtx* js) const { jsCtx_Destroy(js); }
};
struct SubDeleter {
  void operator()(natsSubscription* s) const {
    natsSubscription_Unsubscribe(s);
    natsSubscription_Destroy(s);
  }
};
struct OptsDeleter {
  void operator()(natsOptions* o) const { natsOptions_Destroy(o); }
};
using ConnPtr = std::unique_ptr<natsConnection, ConnDeleter>;
using JsPtr = std::unique_ptr<jsCtx, JsDeleter>;
using SubPtr = std::unique_ptr<natsSubscription, SubDeleter>;

std::string nats_error(std::string_view what, natsStatus s) {
  natsStatus last = NATS_OK;
  const char* text = nats_GetLastError(&last);
  return fmt::format("{}: {} ({})", what, natsStatus_GetText(s),
                     text != nullptr && *text != '\0' ? text : "no details");
}

void check(natsStatus s, std::string_view what) {
  if (s != NATS_OK) throw std::runtime_error(nats_error(what, s));
}

ConnPtr connect(std::uint16_t port, bool send_asap) {
  natsOptions* raw = nullptr;
  check(natsOptions_Create(&raw), "natsOptions_Create");
  std::unique_ptr<natsOptions, OptsDeleter> opts(raw);
  const std::string url = fmt::format("nats://127.0.0.1:{}", port);
  check(natsOptions_SetURL(opts.get(), url.c_str()), "natsOptions_SetURL");
  // A benchmark must fail, not silently wait out a reconnect.
  check(natsOptions_SetAllowReconnect(opts.get(), false), "natsOptions_SetAllowReconnect");
  check(natsOptions_SetSendAsap(opts.get(), send_asap), "natsOptions_SetSendAsap");
  natsConnection* nc = nullptr;
  check(natsConnection_Connect(&nc, opts.get()), fmt::format("connect to {}", url));
  return ConnPtr(nc);
}

// Counts PubAcks; shared by the publishers of one JetStream context.
struct AckCounters {
  std::atomic<std::size_t> acked{0};
  std::atomic<std::size_t> errors{0};
  std::mutex mu;
  std::string first_error;

  void error(std::string_view what) {
    errors.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(mu);
    if (first_error.empty()) first_error.assign(what);
  }
};

void on_pub_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
  auto* c = static_cast<AckCounters*>(closure);
  if (pae != nullptr) {
    c->error(fmt::format("PubAck error {} ({}): {}", static_cast<int>(pae->ErrCode),
                         natsStatus_GetText(pae->Err),
                         pae->ErrText != nullptr ? pae->ErrText : ""));
  } else if (pa != nullptr && pa->Duplicate) {
    c->error("PubAck flagged a unique Nats-Msg-Id as duplicate");
  } else if (pa != nullptr) {
    c->acked.fetch_add(1, std::memory_order_relaxed);
  }
  natsMsg_Destroy(msg);
}

JsPtr jetstream(natsConnection* nc, std::size_t max_pending, AckCounters* acks) {
  jsOptions o;
  check(jsOptions_Init(&o), "jsOptions_Init");
  o.Wait = 30'000;
  o.PublishAsync.MaxPending = static_cast<int64_t>(max_pending);
  // A full window waits for acks; never turn a slow ack into a failed publish.
  o.PublishAsync.StallWait = 60'000;
  o.PublishAsync.AckHandler = on_pub_ack;
  o.PublishAsync.AckHandlerClosure = acks;
  jsCtx* js = nullptr;
  check(natsConnection_JetStream(&js, nc, &o), "natsConnection_JetStream");
  return JsPtr(js);
}

// A nats-server with JetStream and the BENCH stream, in its own temp dir.
struct NatsServer {
  TempDir dir{"civicbus-bench-nats"};
  ServerProcess process;

  NatsServer(const WorkloadOptions& workload, const NatsPeerOptions& options) {
    const std::uint16_t port = free_port();
    ServerProcess::Options o;
    o.program = options.server;
    const auto store = dir.path() / "js";
    if (options.fsync == "interval") {
      o.args = {"-js", "-a", "127.0.0.1", "-p", std::to_string(port), "-sd", store.string()};
    } else if (options.fsync == "always") {
      const auto conf = dir.path() / "nats-server.conf";
      write_sync_always_config(conf, store, port);
      o.args = {"-c", conf.string()};
    } else {
      throw std::invalid_argument("NatsPeerOptions::fsync must be 'interval' or 'always', not '" +
                                  options.fsync + "'");
    }
    o.log_path = dir.path() / "nats-server.log";
    o.port = port;
    o.ready_timeout = workload.server_start_timeout;
    process.start(std::move(o));
  }

  std::uint16_t port() const { return process.port(); }

  // Creates the stream; retried while JetStream is still coming up after the port opened.
  void create_stream(jsCtx* js, std::chrono::milliseconds timeout) const {
    jsStreamConfig cfg;
    check(jsStreamConfig_Init(&cfg), "jsStreamConfig_Init");
    const char* subjects[] = {"bench.>"};
    cfg.Name = kStream;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      jsStreamInfo* si = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      const natsStatus s = js_AddStream(&si, js, &cfg, nullptr, &jerr);
      if (s == NATS_OK) {
        jsStreamInfo_Destroy(si);
        return;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error(fmt::format("{} (JetStream error {}); server log:\n{}",
                                             nats_error("js_AddStream BENCH", s),
                                             static_cast<int>(jerr), process.log_tail()));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
};

std::uint64_t stream_messages(jsCtx* js) {
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  check(js_GetStreamInfo(&si, js, kStream, nullptr, &jerr), "js_GetStreamInfo");
  const std::uint64_t n = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  return n;
}

// ---------------------------------------------------------------------------------------------
// Throughput
// ---------------------------------------------------------------------------------------------

struct Publisher {
  ConnPtr conn;         // null when sharing
  JsPtr own_js;         // null when sharing
  jsCtx* js = nullptr;  // the context this publisher uses
  std::size_t first_id = 0;
  std::size_t count = 0;
  std::int64_t end_ns = 0;
  std::size_t publish_errors = 0;
  std::string first_error;
};

void run_publisher(Publisher& p, int index, std::size_t payload_bytes, std::latch& go) {
  EventPayload payload(payload_bytes);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  char msg_id[48];
  go.wait();
  for (std::size_t i = 0; i < p.count; ++i) {
    const std::size_t id = p.first_id + i;
    auto [end, size] = fmt::format_to_n(msg_id, sizeof msg_id - 1, "p{}-{}", index, id);
    *end = '\0';
    po.MsgId = msg_id;
    const std::string_view body = payload.stamp(id, 0);
    const natsStatus s =
        js_PublishAsync(p.js, "bench.tp", body.data(), static_cast<int>(body.size()), &po);
    if (s != NATS_OK) {
      if (p.publish_errors++ == 0) p.first_error = nats_error("js_PublishAsync", s);
    }
  }
  jsPubOptions done;
  jsPubOptions_Init(&done);
  done.MaxWait = 120'000;
  const natsStatus s = js_PublishAsyncComplete(p.js, &done);
  if (s != NATS_OK && p.publish_errors++ == 0) {
    p.first_error = nats_error("js_PublishAsyncComplete", s);
  }
  p.end_ns = steady_now_ns();
}

}  // namespace

PeerThroughput nats_jetstream_throughput(const WorkloadOptions& workload,
                                         const NatsPeerOptions& options) {
  PeerThroughput result;
  result.peer = "nats_jetstream";
  result.fsync = options.fsync;
  result.events = workload.events;
  result.variant =
      fmt::format("conn={},max_pending={},msg_id=unique",
                  options.shared_connection ? "shared" : "per_thread", workload.window);
  try {
    NatsServer server(workload, options);
    result.variant += ",fs=" + filesystem_type(server.dir.path());

    // Declared before the connections so that it outlives every ack callback.
    AckCounters acks;
    ConnPtr admin_conn = connect(server.port(), false);
    JsPtr admin_js = jetstream(admin_conn.get(), 1, &acks);
    server.create_stream(admin_js.get(), workload.server_start_timeout);

    const int n = workload.publishers;
    std::vector<Publisher> pubs(static_cast<std::size_t>(n));
    ConnPtr shared_conn;
    JsPtr shared_js;
    if (options.shared_connection) {
      shared_conn = connect(server.port(), false);
      shared_js =
          jetstream(shared_conn.get(), workload.window * static_cast<std::size_t>(n), &acks);
    }
    std::size_t first = 0;
    for (int i = 0; i < n; ++i) {
      Publisher& p = pubs[static_cast<std::size_t>(i)];
      if (options.shared_connection) {
        p.js = shared_js.get();
      } else {
        p.conn = connect(server.port(), false);
        p.own_js = jetstream(p.conn.get(), workload.window, &acks);
        p.js = p.own_js.get();
      }
      p.first_id = first;
      p.count = workload.events / n + (static_cast<std::size_t>(i) < workload.events % n ? 1 : 0);
      first += p.count;
    }

    std::latch go(1);
    std::int64_t t0 = 0;
    {
      std::vector<std::jthread> threads;
      try {
        for (int i = 0; i < n; ++i) {
          threads.emplace_back(run_publisher, std::ref(pubs[static_cast<std::size_t>(i)]), i,
                               workload.payload_bytes, std::ref(go));
        }
      } catch (...) {
        go.count_down();  // let the threads already started finish before they are joined
        throw;
      }
      sync_disks();
      t0 = steady_now_ns();
      go.count_down();
    }  // joins

    std::int64_t t_end = t0;
    std::size_t publish_errors = 0;
    std::string first_error;
    for (const auto& p : pubs) {
      t_end = std::max(t_end, p.end_ns);
      publish_errors += p.publish_errors;
      if (first_error.empty()) first_error = p.first_error;
    }
    // js_PublishAsyncComplete can return just before the last ack callback has counted.
    const auto settle = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (acks.acked.load() + acks.errors.load() + publish_errors < workload.events &&
           std::chrono::steady_clock::now() < settle) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }

    result.acked = acks.acked.load();
    result.errors = acks.errors.load() + publish_errors;
    {
      std::lock_guard lock(acks.mu);
      result.first_error = first_error.empty() ? acks.first_error : first_error;
    }
    result.seconds = static_cast<double>(t_end - t0) / 1e9;
    result.events_per_s =
        result.seconds > 0 ? static_cast<double>(workload.events) / result.seconds : 0;

    const std::uint64_t stored = stream_messages(admin_js.get());
    if (stored != result.acked) {
      ++result.errors;
      if (result.first_error.empty()) {
        result.first_error =
            fmt::format("stream BENCH holds {} messages but {} were acked", stored, result.acked);
      }
    }
    // Connections close before the server stops (members destroy in reverse order).
    pubs.clear();
    shared_js.reset();
    shared_conn.reset();
  } catch (const std::exception& e) {
    result.error = e.what();
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Latency
// ---------------------------------------------------------------------------------------------

namespace {

struct LatencyRecorder {
  std::vector<std::int64_t> latency_ns;  // by event id; -1 = not received
  std::atomic<std::size_t> received{0};
  std::atomic<std::size_t> foreign{0};
};

void on_latency_msg(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  const std::int64_t now = steady_now_ns();
  auto* rec = static_cast<LatencyRecorder*>(closure);
  const std::string_view body(natsMsg_GetData(msg),
                              static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
  const auto id = EventPayload::read_id(body);
  const auto sent = EventPayload::read_send_ns(body);
  if (id && sent && *id < rec->latency_ns.size() && rec->latency_ns[*id] < 0) {
    rec->latency_ns[*id] = now - *sent;
    rec->received.fetch_add(1, std::memory_order_release);
  } else {
    rec->foreign.fetch_add(1, std::memory_order_relaxed);
  }
  natsMsg_Destroy(msg);
}

}  // namespace

PeerLatency nats_jetstream_latency(const WorkloadOptions& workload,
                                   const NatsPeerOptions& options) {
  PeerLatency result;
  result.peer = "nats_jetstream";
  result.fsync = options.fsync;
  result.rate = workload.latency_rate;
  result.variant = "sub=ordered_push,pub=async";
  try {
    NatsServer server(workload, options);
    result.variant += ",fs=" + filesystem_type(server.dir.path());

    const auto total = static_cast<std::size_t>(std::llround(
        workload.latency_rate * (workload.latency_warmup_seconds + workload.latency_seconds)));
    const auto warmup = static_cast<std::size_t>(
        std::llround(workload.latency_rate * workload.latency_warmup_seconds));
    const double period_ns = 1e9 / workload.latency_rate;

    // Outlive the connections whose callbacks use them.
    AckCounters acks;
    LatencyRecorder rec;
    rec.latency_ns.assign(total, -1);

    // The publisher writes from its own thread (SendAsap) rather than waking the library's
    // flusher thread, as a latency-minded client would; the subscriber has its own connection.
    ConnPtr pub_conn = connect(server.port(), true);
    JsPtr pub_js = jetstream(pub_conn.get(), std::max<std::size_t>(workload.window, 4096), &acks);
    server.create_stream(pub_js.get(), workload.server_start_timeout);

    ConnPtr sub_conn = connect(server.port(), false);
    JsPtr sub_js = jetstream(sub_conn.get(), 1, &acks);
    jsSubOptions so;
    check(jsSubOptions_Init(&so), "jsSubOptions_Init");
    so.Ordered = true;
    natsSubscription* raw_sub = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    check(js_Subscribe(&raw_sub, sub_js.get(), "bench.lat", on_latency_msg, &rec, nullptr, &so,
                       &jerr),
          "js_Subscribe (ordered consumer)");
    SubPtr sub(raw_sub);

    std::size_t publish_errors = 0;
    std::string first_error;
    std::vector<std::int64_t> send_lag_ns;
    send_lag_ns.reserve(total - warmup);
    {
      reduce_timer_slack();
      EventPayload payload(workload.payload_bytes);
      jsPubOptions po;
      jsPubOptions_Init(&po);
      char msg_id[48];
      sync_disks();
      const std::int64_t start = steady_now_ns() + 2'000'000;
      for (std::size_t i = 0; i < total; ++i) {
        const std::int64_t scheduled =
            start + static_cast<std::int64_t>(static_cast<double>(i) * period_ns);
        sleep_until_ns(scheduled);
        if (i >= warmup) send_lag_ns.push_back(steady_now_ns() - scheduled);
        auto [end, size] = fmt::format_to_n(msg_id, sizeof msg_id - 1, "lat-{}", i);
        *end = '\0';
        po.MsgId = msg_id;
        const std::string_view body = payload.stamp(i, scheduled);
        const natsStatus s = js_PublishAsync(pub_js.get(), "bench.lat", body.data(),
                                             static_cast<int>(body.size()), &po);
        if (s != NATS_OK && publish_errors++ == 0) {
          first_error = nats_error("js_PublishAsync", s);
        }
      }
      result.sent = total;
      jsPubOptions done;
      jsPubOptions_Init(&done);
      done.MaxWait = static_cast<int64_t>(workload.drain_timeout.count());
      const natsStatus s = js_PublishAsyncComplete(pub_js.get(), &done);
      if (s != NATS_OK && publish_errors++ == 0) {
        first_error = nats_error("js_PublishAsyncComplete", s);
      }
    }

    const auto deadline = std::chrono::steady_clock::now() + workload.drain_timeout;
    while (rec.received.load(std::memory_order_acquire) < total &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    // No callback may run while the samples are read: drain, wait, then destroy.
    if (natsSubscription_Drain(sub.get()) == NATS_OK) {
      natsSubscription_WaitForDrainCompletion(sub.get(), 5'000);
    }
    sub.reset();
    sub_js.reset();
    sub_conn.reset();

    std::vector<std::int64_t> samples;
    samples.reserve(total - warmup);
    std::size_t lost = 0;
    for (std::size_t i = 0; i < total; ++i) {
      if (rec.latency_ns[i] < 0) {
        ++lost;
      } else if (i >= warmup) {
        samples.push_back(rec.latency_ns[i]);
      }
    }
    result.measured = samples.size();
    result.lost = lost;
    result.latency = summarize_latencies(std::move(samples));
    result.send_lag = summarize_latencies(std::move(send_lag_ns));
    result.errors = acks.errors.load() + publish_errors + rec.foreign.load();
    {
      std::lock_guard lock(acks.mu);
      result.first_error = first_error.empty() ? acks.first_error : first_error;
    }
    if (result.first_error.empty() && rec.foreign.load() != 0) {
      result.first_error = "subscriber received messages that are not events of this run";
    }
  } catch (const std::exception& e) {
    result.error = e.what();
  }
  return result;
}

#endif  // CIVICBUS_BENCH_HAVE_CNATS

}  // namespace civicbus::bench
