#!/bin/bash
# Instructions run per proxied request in user space, counted by callgrind, for the gateway and
# for nginx as a reverse proxy: figures that do not drift with the machine's speed, unlike
# requests/s and CPU time (the kernel's share, about half of either proxy's CPU, is not in them).
#
#   benchmarks/gateway_instructions.sh [path/to/gateway_bench]
#
# The gateway: gateway_bench under valgrind (apt install valgrind) with --skip-nginx and
# --skip-plain; the counts are zeroed once the gateway's wrk round has begun, and what the
# process ran from there to its exit is divided by the requests the gateway routed (calls of
# Gateway::Impl::route_request).
# The end of the run (stopping the gateways) is in, which adds well under 1 %.
# nginx: one worker (master_process off) under valgrind in front of an nginx upstream like the
# bench's, the same wrk load for 4 s after the counts are zeroed, divided by wrk's requests.
set -euo pipefail
# shellcheck source=benchmarks/gateway_common.sh
. "$(dirname "$0")/gateway_common.sh"
gateway_script_setup valgrind valgrind "${1:-}"

# count FILE TARGET [REQUESTS]: the BENCH line of a callgrind output; REQUESTS defaults to the
# calls of Gateway::Impl::route_request it recorded.
count() {
  /usr/bin/python3 - "$@" <<'PY'
import re, sys
names, callee, calls, total = {}, None, 0, None
for line in open(sys.argv[1]):
    m = re.match(r'c?fn=\((\d+)\)(?: (.*))?$', line)
    if m:
        if m.group(2):
            names[m.group(1)] = m.group(2)
        if line.startswith('cfn='):
            callee = names.get(m.group(1), '')
        continue
    m = re.match(r'calls=(\d+)', line)
    if m and callee and 'Gateway::Impl::route_request' in callee:
        calls += int(m.group(1))
    if line.startswith(('summary:', 'totals:')):
        total = int(line.split()[1])
if len(sys.argv) > 3:
    calls = int(sys.argv[3])
if not calls or total is None:
    sys.exit('no request was counted; is the bench slower to start here? (sleep 7.5)')
print(f"BENCH gateway_instructions target={sys.argv[2]} requests={calls} "
      f"instructions={total} per_request={total // calls}")
PY
}

# ---- the gateway ----
valgrind --tool=callgrind --callgrind-out-file="$work/gateway.out" "$bench" --skip-nginx --skip-plain \
  --throughput-only --rounds 1 --seconds 4 >"$work/bench.log" 2>&1 &
bench_pid=$!
# Startup and the 4 s direct run take about 6 s under valgrind; the gateway's round follows.
sleep 7.5
callgrind_control -z "$bench_pid" >/dev/null 2>&1
wait "$bench_pid"
line=$(count "$work/gateway.out" civicbus)
echo "$line"
ours=${line##*per_request=}

# ---- nginx, when installed ----
command -v nginx >/dev/null && command -v wrk >/dev/null || exit 0
nginx_pair "$work" 1 valgrind --tool=callgrind --callgrind-out-file="$work/nginx.out"
sleep 3
key="apikey: bench-key-0123456789abcdef"
wrk -t2 -c64 -d1s -H "$key" "$nginx_target" >/dev/null  # warm-up
callgrind_control -z "$nginx_proxy_pid" >/dev/null 2>&1
requests=$(wrk -t2 -c64 -d4s -H "$key" "$nginx_target" |
  sed -n 's/^ *\([0-9]*\) requests in.*/\1/p')
kill -TERM "$nginx_proxy_pid" "$nginx_upstream_pid"
wait "$nginx_proxy_pid" "$nginx_upstream_pid" || true
line=$(count "$work/nginx.out" nginx "$requests")
echo "$line"
print_vs gateway_instructions "$ours" "${line##*per_request=}" instructions/request
