#!/usr/bin/env bash
# Http.request against nginx on loopback versus wrk, same connection count, side by side in one
# run (SPEC §10: rally-tui's requests/s >= wrk's, while recording every iteration).
# nginx (one worker, keepalive_requests raised, a 100-byte file) is pinned to CPU 0 and the
# load generator to CPU 1.
#
#   benches/http-vs-wrk.sh              # 10 s each, 50 connections
#   QUICK=1 benches/http-vs-wrk.sh      # 2 s each (CI keeps it working)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10; conns=50
if [[ "${QUICK:-}" == 1 ]]; then seconds=2; fi
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }
cargo build --release --quiet

tmp=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$tmp/html"; head -c 100 /dev/zero | tr '\0' x > "$tmp/html/small"
cat > "$tmp/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $tmp/nginx.pid; error_log $tmp/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 10000000; client_body_temp_path $tmp/b; proxy_temp_path $tmp/p;
  fastcgi_temp_path $tmp/f; uwsgi_temp_path $tmp/u; scgi_temp_path $tmp/s;
  server { listen 127.0.0.1:$port; root $tmp/html; } }
CONF
taskset -c 0 nginx -c "$tmp/nginx.conf" -p "$tmp" &
nginx_pid=$!
trap 'kill $nginx_pid 2>/dev/null; rm -rf "$tmp"' EXIT
sleep 0.5
url="http://127.0.0.1:$port/small"

wrk_rps=$(taskset -c 1 wrk -t1 -c"$conns" -d"${seconds}s" "$url" | awk '/Requests\/sec/ {print $2}')

cat > "$tmp/task.yaml" <<TASK
version: 2
title: http vs wrk
subtasks:
  - title: Http.request
    scenario: {Http.request: {url: "$url"}}
    runner: {constant_for_duration: {duration: $seconds, concurrency: $conns}}
    sla: {}
TASK
ours=$(taskset -c 1 target/release/rally-tui --db "$tmp/tasks.db" run "$tmp/task.yaml" --no-tui \
    | sed -n 's/^Load duration: .*(\([0-9.]*\) iterations\/s)$/\1/p' | head -1)

echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d); nginx on CPU 0, generator on CPU 1"
echo
echo "| generator ($conns connections, ${seconds} s, 100-byte file) | requests/s | vs wrk |"
echo "|---|---:|---:|"
echo "| wrk -t1 -c$conns | ${wrk_rps%.*} | 1.00 |"
awk -v a="$ours" -v b="$wrk_rps" 'BEGIN { printf "| rally-tui Http.request (every iteration recorded) | %.0f | %.2f |\n", a, a / b }'
