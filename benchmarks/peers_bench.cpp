// peers_bench: the broker workload against the peers alone (NATS JetStream, Redis Streams),
// without civicbus. broker_bench runs the same functions beside civicbus and prints the VS
// lines; this binary is for checking the peers and their figures on a machine.
//
//   peers_bench [workload flags] [--only nats|redis] [--nats-shared-connection]
//               [--redis-aof-rewrite]
//
// Each phase starts its own server on 127.0.0.1 in a temp dir and stops it afterwards.
#include <cstdio>
#include <string>
#include <string_view>

#include "bench_common.hpp"
#include "peers/nats_peer.hpp"
#include "peers/redis_peer.hpp"

namespace {

using namespace civicbus::bench;

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: peers_bench [flags]\n%s"
               "  --only nats|redis           run one peer only\n"
               "  --nats-shared-connection    also run the NATS throughput phase with one\n"
               "                              connection shared by all publishers\n"
               "  --redis-aof-rewrite         let Redis rewrite its AOF at 64 MB (stock Redis)\n",
               workload_flags_help().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  WorkloadFlags flags = parse_workload_flags(argc, argv);
  if (!flags.error.empty()) {
    std::fprintf(stderr, "peers_bench: %s\n", flags.error.c_str());
    usage(stderr);
    return 2;
  }
  std::string only;
  bool nats_shared = false;
  bool redis_rewrite = false;
  for (std::size_t i = 0; i < flags.rest.size(); ++i) {
    const std::string& a = flags.rest[i];
    if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else if (a == "--only" && i + 1 < flags.rest.size()) {
      only = flags.rest[++i];
    } else if (a.starts_with("--only=")) {
      only = a.substr(7);
    } else if (a == "--nats-shared-connection") {
      nats_shared = true;
    } else if (a == "--redis-aof-rewrite") {
      redis_rewrite = true;
    } else {
      std::fprintf(stderr, "peers_bench: unknown argument '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (!only.empty() && only != "nats" && only != "redis") {
    std::fprintf(stderr, "peers_bench: --only takes 'nats' or 'redis'\n");
    return 2;
  }
  const WorkloadOptions& w = flags.options;
  print_workload("broker_workload", w);

  int failures = 0;
  auto tally = [&](const auto& r) {
    if (!r.ok() || r.errors != 0) ++failures;
  };

  if (only.empty() || only == "nats") {
    NatsPeerOptions nats;
    auto tp = nats_jetstream_throughput(w, nats);
    print_throughput("broker_throughput", tp);
    tally(tp);
    if (nats_shared) {
      NatsPeerOptions shared = nats;
      shared.shared_connection = true;
      auto tps = nats_jetstream_throughput(w, shared);
      print_throughput("broker_throughput", tps);
      tally(tps);
    }
    auto lat = nats_jetstream_latency(w, nats);
    print_latency("broker_latency", lat);
    tally(lat);

    // The per-message fsync variant, where the server has it.
    const NatsFeatureSupport always = nats_sync_always_support(nats);
    if (always.supported && nats_peer_built()) {
      NatsPeerOptions synced = nats;
      synced.fsync = "always";
      auto tp2 = nats_jetstream_throughput(w, synced);
      print_throughput("broker_throughput", tp2);
      tally(tp2);
      auto lat2 = nats_jetstream_latency(w, synced);
      print_latency("broker_latency", lat2);
      tally(lat2);
    } else if (!always.supported) {
      std::fprintf(stderr, "# nats_jetstream fsync=always skipped: %s\n", always.reason.c_str());
    }
  }

  if (only.empty() || only == "redis") {
    RedisPeerOptions redis;  // appendfsync always
    redis.aof_auto_rewrite = redis_rewrite;
    auto tp = redis_streams_throughput(w, redis);
    print_throughput("broker_throughput", tp);
    tally(tp);
    auto lat = redis_streams_latency(w, redis);
    print_latency("broker_latency", lat);
    tally(lat);
  }
  return failures == 0 ? 0 : 1;
}
