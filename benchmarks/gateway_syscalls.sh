#!/bin/bash
# System calls per proxied request, for the gateway and for nginx as a reverse proxy, counted
# on the proxies' own threads with perf's syscall tracepoints (perf stat --per-thread).
#
#   benchmarks/gateway_syscalls.sh [path/to/gateway_bench]
#
# Needs perf (apt install linux-perf) and tracepoint access (root). The gateway: gateway_bench
# with --skip-nginx --skip-plain, counted for 2 s inside the gateway's wrk round (its two
# workers). nginx: two workers, as the bench's, in front of an nginx upstream like the bench's,
# the same wrk load, counted for 2 s. A proxied request writes twice (upstream, then the
# client), so the requests counted are half the writes (`sendto`, `writev`, `write`).
set -euo pipefail
# shellcheck source=benchmarks/gateway_common.sh
. "$(dirname "$0")/gateway_common.sh"
gateway_script_setup perf linux-perf "${1:-}"
calls="sendto writev write recvfrom read epoll_wait epoll_pwait epoll_ctl futex"
events=$(for c in $calls; do printf 'syscalls:sys_enter_%s,' "$c"; done)
events=${events%,}

# count PIDS TARGET: perf stat over the threads of PIDS (comma-separated) for 2 s, then one
# BENCH line.
count() {
  perf stat -x, --per-thread -e "$events" -p "$1" -- sleep 2 2>"$work/stat.csv" >/dev/null
  /usr/bin/python3 - "$work/stat.csv" "$2" <<'PY'
import collections, sys
totals = collections.Counter()
for line in open(sys.argv[1]):
    parts = line.strip().split(',')
    if len(parts) < 4 or not parts[1].strip().isdigit():
        continue
    totals[parts[3].split('sys_enter_')[-1]] += int(parts[1])
requests = (totals['sendto'] + totals['writev'] + totals['write']) / 2
if requests < 1000:
    sys.exit(f'{sys.argv[2]}: only {requests:.0f} requests in the window; is the load running?')
names = ['sendto', 'writev', 'write', 'recvfrom', 'read', 'epoll_wait', 'epoll_pwait',
         'epoll_ctl', 'futex']
fields = ' '.join(f'{n}={totals[n] / requests:.3f}' for n in names)
total = sum(totals[n] for n in names) / requests
print(f'BENCH gateway_syscalls target={sys.argv[2]} requests={requests:.0f} {fields} '
      f'per_request={total:.3f}')
PY
}

# ---- the gateway ----
"$bench" --skip-nginx --skip-plain --throughput-only --rounds 1 --seconds 8 \
  >"$work/bench.log" 2>&1 &
bench_pid=$!
# Startup and the 8 s direct run come first; the gateway's 8 s round follows.
sleep 11
line=$(count "$bench_pid" civicbus)
wait "$bench_pid"
echo "$line"
ours=${line##*per_request=}

# ---- nginx, when installed ----
command -v nginx >/dev/null && command -v wrk >/dev/null || exit 0
nginx_pair "$work" 2
sleep 1
wrk -t2 -c64 -d1s "$nginx_target" >/dev/null  # warm-up
wrk -t2 -c64 -d5s "$nginx_target" >/dev/null &
wrk_pid=$!
sleep 2
line=$(count "$(pgrep -d, -P "$nginx_proxy_pid")" nginx)  # its workers
wait "$wrk_pid"
kill -TERM "$nginx_proxy_pid" "$nginx_upstream_pid"
wait "$nginx_proxy_pid" "$nginx_upstream_pid" || true
echo "$line"
print_vs gateway_syscalls "$ours" "${line##*per_request=}" syscalls/request
