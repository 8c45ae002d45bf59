// Redis Streams as a peer for the broker benchmark.
//
// Each call starts its own redis-server (loopback, random port, AOF in a temp dir), runs one
// phase of the shared workload (bench_common.hpp) against it and stops it. The client side
// speaks RESP over plain sockets (no hiredis), one TCP connection per publisher thread.
//
// What is measured:
//  - throughput: `XADD bench * data <body>` pipelined, `window` commands in flight per
//    connection; an event counts when its reply (the entry id) arrives. With
//    appendfsync=always Redis writes and fsyncs the AOF before it sends the replies of an event
//    loop iteration (group commit), so a reply is a durable acknowledgement.
//  - latency: one XADD per event on the absolute schedule (replies drained without waiting),
//    a second connection looping `XREAD COUNT 1000 BLOCK 200 STREAMS lat <last id>`;
//    latency = receive time - scheduled send time carried in the body.
#pragma once

#include <string>

#include "bench_common.hpp"

namespace civicbus::bench {

struct RedisPeerOptions {
  // Program name on PATH or a path.
  std::string server = "redis-server";
  // AOF fsync policy: "always" (default; fsync before replying, the durable comparison),
  // "everysec" or "no". Reported as the `fsync` of the result.
  std::string appendfsync = "always";
  // Redis rewrites (compacts) the AOF in a forked child once it passes 64 MB, which the
  // 200,000-event throughput phase (~120 MB) crosses once. Off by default so that the figure
  // is the append path, like the other systems' (`auto-aof-rewrite-percentage 0`); on gives
  // stock Redis behaviour. Reported in the result's variant.
  bool aof_auto_rewrite = false;
};

// Both return a result with `error` set (and no figures) when redis-server is missing or does
// not start; publish errors are counted in `errors`, never hidden.
PeerThroughput redis_streams_throughput(const WorkloadOptions& workload,
                                        const RedisPeerOptions& options = {});
PeerLatency redis_streams_latency(const WorkloadOptions& workload,
                                  const RedisPeerOptions& options = {});

}  // namespace civicbus::bench
