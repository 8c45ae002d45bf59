# shellcheck shell=bash disable=SC2034  # sets variables for the scripts that source it
# Sourced by the benchmarks/gateway_*.sh scripts: their set-up, their VS line, and nginx as a
# reverse proxy in front of an nginx upstream as gateway_bench sets them up.

# gateway_script_setup TOOL PACKAGE [BENCH]: exits unless TOOL is installed (naming PACKAGE)
# and BENCH (default build/benchmarks/gateway_bench) is built; sets bench, and work (a temp dir
# removed on exit).
gateway_script_setup() {
  command -v "$1" >/dev/null || { echo "needs $1 (apt install $2)" >&2; exit 1; }
  bench=${3:-build/benchmarks/gateway_bench}
  [ -x "$bench" ] || { echo "no $bench: build the gateway_bench target first" >&2; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
}

# print_vs NAME OURS PEER UNIT: the VS line of a figure where less is better (ratio peer/ours).
print_vs() {
  echo "VS $1 ours=$2 peer=$3 peer_name=nginx_proxy unit=$4" \
    "ratio=$(/usr/bin/python3 -c "print(round($3 / $2, 3))")"
}

# nginx_pair WORK WORKERS [LAUNCHER...]: nginx as a reverse proxy in front of an nginx upstream
# (which answers every request with the bench's small JSON body; the proxy keeps its upstream
# connections alive), on free loopback ports.
#
# Writes both configurations into WORK and starts both servers in the background: the upstream
# with one worker, the proxy with WORKERS workers (one: a single process, master_process off,
# which is what a profiler wants) under LAUNCHER when one is given (e.g. valgrind ...). Sets
# nginx_target (a URL on the proxy), nginx_upstream_pid and nginx_proxy_pid (the proxy's
# master, or its only process).
nginx_pair() {
  local work=$1 workers=$2
  shift 2
  local up px user="" processes
  up=$(nginx_free_port)
  px=$(nginx_free_port)
  [ "$(id -u)" = 0 ] && user="user root;"
  local common="$user daemon off; error_log $work/err warn; events { worker_connections 4096; }"
  local paths="client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work;"
  paths="$paths uwsgi_temp_path $work; scgi_temp_path $work;"
  processes="worker_processes $workers;"
  [ "$workers" = 1 ] && processes="master_process off; worker_processes 1;"
  cat >"$work/up.conf" <<CONF
$common pid $work/up.pid; worker_processes 1;
http { access_log off; $paths keepalive_requests 1000000;
  server { listen 127.0.0.1:$up; location / { default_type application/json;
    return 200 '{"permit":"B-2026-0001","status":"issued"}'; } } }
CONF
  cat >"$work/px.conf" <<CONF
$common pid $work/px.pid; $processes
http { access_log off; $paths keepalive_requests 1000000;
  upstream backend { server 127.0.0.1:$up; keepalive 128; }
  server { listen 127.0.0.1:$px; location / { proxy_pass http://backend;
    proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
  nginx -c "$work/up.conf" -e "$work/err" &
  nginx_upstream_pid=$!
  "$@" nginx -c "$work/px.conf" -e "$work/err" >"$work/nginx.log" 2>&1 &
  nginx_proxy_pid=$!
  nginx_target="http://127.0.0.1:$px/permits/B-2026-0001"
}

nginx_free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
