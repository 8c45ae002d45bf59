// NATS JetStream as a peer for the broker benchmark.
//
// Each call starts its own nats-server with JetStream (loopback, random port, file store in a
// temp dir), creates the stream BENCH (file storage, subjects `bench.>`) through the cnats
// JetStream API, runs one phase of the shared workload (bench_common.hpp) and stops the server.
//
// What is measured:
//  - throughput: `js_PublishAsync` to `bench.tp` with a unique Nats-Msg-Id per event (so the
//    server's de-duplication is in the path, as for an exactly-once publish), at most `window`
//    publishes in flight per publisher (jsOptions.PublishAsync.MaxPending), then
//    `js_PublishAsyncComplete`; an event counts when its PubAck arrives.
//  - latency: one publisher doing `js_PublishAsync` to `bench.lat` on the absolute schedule,
//    an ordered push consumer (js_Subscribe, Ordered=true) on its own connection.
//
// Durability, honestly: the JetStream file store writes every message to the OS before it
// acknowledges, but fsyncs only every `sync_interval` (2 minutes by default), so the default
// figures are reported with fsync=interval. `sync_interval: always` exists from nats-server
// 2.10; use nats_sync_always_support() to learn whether the installed server has it.
//
// When the benchmarks are built without libnats (cnats not found by CMake) every call returns
// a result with `error` set.
#pragma once

#include <string>

#include "bench_common.hpp"

namespace civicbus::bench {

struct NatsPeerOptions {
  // Program name on PATH or a path.
  std::string server = "nats-server";
  // false: every publisher thread has its own connection and JetStream context (default; it
  // was the faster of the two on a 2-core machine, and it is what civicbus's 4 publishers get).
  // true: the publishers share one connection and context, MaxPending = window * publishers.
  bool shared_connection = false;
  // "interval": the server default (sync_interval 2 min). "always": a config file with
  // `jetstream { sync_interval: always }` (nats-server >= 2.10; otherwise the call fails with
  // an error saying so).
  std::string fsync = "interval";
};

// Whether `options.server` accepts `jetstream { sync_interval: always }`; checked by running
// `nats-server -t -c <file>`. `reason` says why not (missing server, or the server's message).
struct NatsFeatureSupport {
  bool supported = false;
  std::string reason;
};
NatsFeatureSupport nats_sync_always_support(const NatsPeerOptions& options = {});

// True when the benchmarks were built with libnats.
bool nats_peer_built();

PeerThroughput nats_jetstream_throughput(const WorkloadOptions& workload,
                                         const NatsPeerOptions& options = {});
PeerLatency nats_jetstream_latency(const WorkloadOptions& workload,
                                   const NatsPeerOptions& options = {});

}  // namespace civicbus::bench
