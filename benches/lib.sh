# shellcheck shell=bash disable=SC2034 # variables used by the scripts that source this file
# Shared by the scripts in benches/ (sourced, not run): QUICK mode, the release build, installs
# of missing tools (Debian packages with apt-get, Locust with pip into target/locust-venv, oha
# with `cargo install` into target/oha only when OHA=1), a temp dir removed on exit, every child
# process killed on exit, nginx pinned to one core, CPU-time measurement, number formatting and
# the summary rows that benches/all.sh gathers into one table.
#
# Environment:
#   QUICK=1          seconds instead of minutes (CI keeps the scripts working with it)
#   CARGO="..."      how to call cargo (default `cargo`; e.g. "flock -o /tmp/cargo.lock cargo")
#   SERVER_CPU=0     core for the server under load (nginx)
#   GEN_CPU=1        core for the load generator (rally-tui, wrk, oha, Locust)
#   OHA=1            install oha (cargo install) and include it in the HTTP figures
#   BENCH_SUMMARY    file to which summary rows are appended (set by benches/all.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
quick=0
if [[ "${QUICK:-}" == 1 ]]; then quick=1; fi
# QUICK runs (CI) only keep the scripts working: they use the debug build the tests already
# made instead of spending minutes on a release build whose figures would mean nothing anyway.
if [[ $quick == 1 ]]; then
    profile=dev
    bin=$root/target/debug/rally-tui
else
    profile=release
    bin=$root/target/release/rally-tui
fi
SERVER_CPU=${SERVER_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
LOCUST_VERSION=2.47.0
OHA_VERSION=1.16.0

# --- processes and temp files ------------------------------------------------------------

tmp=$(mktemp -d)
# Kill a process and everything below it, children first.
kill_tree() {
    local c
    for c in $(pgrep -P "$1" 2>/dev/null || true); do kill_tree "$c"; done
    kill "$1" 2>/dev/null || true
}
bench_cleanup() {
    local c
    for c in $(pgrep -P $$ 2>/dev/null || true); do kill_tree "$c"; done
    rm -rf "$tmp"
}
trap bench_cleanup EXIT

# --- tools -------------------------------------------------------------------------------

cargo_() {
    local c
    read -ra c <<<"${CARGO:-cargo}"
    "${c[@]}" "$@"
}

# `bench_exe NAME`: build the `cargo bench` target NAME (in $profile) and print its
# executable, so that it runs without cargo (no build lock held while timing).
bench_exe() {
    cargo_ bench --profile "$profile" --bench "$1" --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1"
}
# Build the binary once per benches/all.sh run (release; the debug one in QUICK mode).
build() {
    if [[ "${BENCH_BUILT:-}" != 1 ]]; then
        cargo_ build --profile "$profile" --quiet
        export BENCH_BUILT=1
    fi
}
apt_updated=0
apt_install() {
    echo "installing $* (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    if [[ $apt_updated == 0 ]]; then apt-get update -qq; apt_updated=1; fi
    apt-get install -y -qq "$@" >/dev/null
}
need_time() { [[ -x /usr/bin/time ]] || apt_install time; }
need_wrk() { command -v wrk >/dev/null || apt_install wrk; }
nginx_bin() { command -v nginx || echo /usr/sbin/nginx; }
need_nginx() { command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || apt_install nginx-light; }
need_venv() { python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv; }
need_rally() { need_venv; scripts/rally-venv.sh; }
locust=$root/target/locust-venv/bin/locust
need_locust() {
    if [[ ! -x $locust ]]; then
        need_venv
        echo "installing Locust $LOCUST_VERSION into target/locust-venv (pip)" >&2
        rm -rf target/locust-venv
        python3 -m venv target/locust-venv
        target/locust-venv/bin/pip install -q --disable-pip-version-check "locust==$LOCUST_VERSION"
    fi
}
# Prints oha's path, installing it when OHA=1; prints nothing when oha is not wanted.
oha_bin() {
    [[ "${OHA:-}" == 1 ]] || return 0
    if command -v oha >/dev/null; then command -v oha; return; fi
    if [[ ! -x $root/target/oha/bin/oha ]]; then
        echo "installing oha $OHA_VERSION into target/oha (cargo install, a few minutes)" >&2
        # TLS through the system's OpenSSL: much quicker to build than oha's default rustls with
        # aws-lc (loopback HTTP needs no TLS, but oha does not build without one).
        dpkg -s libssl-dev pkg-config >/dev/null 2>&1 || apt_install libssl-dev pkg-config
        cargo_ install oha --version "$OHA_VERSION" --locked --no-default-features --features native-tls \
            --root "$root/target/oha" --quiet >&2
    fi
    echo "$root/target/oha/bin/oha"
}

# Every script uses pgrep (killing its children) and taskset.
command -v pgrep >/dev/null || apt_install procps
command -v taskset >/dev/null || apt_install util-linux

# --- measuring ---------------------------------------------------------------------------

# `timed FILE CMD...`: run CMD under /usr/bin/time; FILE gets "wall user sys maxrss_kib" of CMD
# and of every child it waited for. CMD's exit status is kept.
timed() {
    local out=$1
    shift
    local rc=0 start=$EPOCHREALTIME
    /usr/bin/time -f '%U %S %M' -o "$out.raw" "$@" || rc=$?
    awk -v s="$start" -v e="$EPOCHREALTIME" 'END { printf "%.3f %s\n", e - s, $0 }' "$out.raw" >"$out"
    return $rc
}
# The process that `timed CMD &` started (the job's subshell -> /usr/bin/time -> CMD).
timed_pid() {
    local p=$1 c _
    for _ in 1 2 3; do
        c=$(pgrep -P "$p" 2>/dev/null | head -1) || true
        [[ -n $c ]] || break
        p=$c
    done
    echo "$p"
}
# CPU seconds (user + system) a running process has used so far.
proc_cpu() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# CPU seconds (user + system) from a `timed` file.
cpu_of() { awk '{ printf "%.3f", $2 + $3 }' "$1"; }
wall_of() { awk '{ print $1 }' "$1"; }
rss_mib_of() { awk '{ printf "%.1f", $4 / 1024 }' "$1"; }

# From rally-tui's summary: the first workload's "iterations/s" (over its load duration), and its
# iteration count.
load_rate() { sed -n 's/^Load duration: .*(\([0-9.]*\) iterations\/s)$/\1/p' "$1" | head -1; }
iterations() { sed -n 's/^.*: \([0-9]*\) iterations, [0-9]* failed$/\1/p' "$1" | head -1; }
failures() { sed -n 's/^.*: [0-9]* iterations, \([0-9]*\) failed$/\1/p' "$1" | head -1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Start nginx on $SERVER_CPU: one worker, no access log, keep-alive connections that last the
# whole run, serving a 100-byte file. Sets $url and $nginx_pid.
start_nginx() {
    need_nginx
    local port dir=$tmp/nginx
    port=$(free_port)
    mkdir -p "$dir/html"
    head -c 100 /dev/zero | tr '\0' x >"$dir/html/small"
    cat >"$dir/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $dir/nginx.pid; error_log $dir/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  client_body_temp_path $dir/b; proxy_temp_path $dir/p; fastcgi_temp_path $dir/f;
  uwsgi_temp_path $dir/u; scgi_temp_path $dir/s;
  server { listen 127.0.0.1:$port backlog=4096; root $dir/html; } }
CONF
    taskset -c "$SERVER_CPU" "$(nginx_bin)" -c "$dir/nginx.conf" -p "$dir" &
    nginx_pid=$!
    url=http://127.0.0.1:$port/small
    local _
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nginx did not start:" >&2
    cat "$dir/error.log" >&2
    return 1
}

# The machine may be shared: wait (at most $1 seconds, default 60) until all cores have been at
# least 90% idle for 2 seconds in a row, so that a figure is not taken during someone's build.
wait_quiet() {
    local max=${1:-60} quiet=0 waited=0 t0 i0 t1 i1
    while ((waited < max)); do
        read -r t0 i0 < <(awk '/^cpu / { print $2 + $3 + $4 + $5 + $6 + $7 + $8, $5 + $6 }' /proc/stat)
        sleep 1
        read -r t1 i1 < <(awk '/^cpu / { print $2 + $3 + $4 + $5 + $6 + $7 + $8, $5 + $6 }' /proc/stat)
        waited=$((waited + 1))
        if awk -v t="$((t1 - t0))" -v i="$((i1 - i0))" 'BEGIN { exit !(t > 0 && i / t >= 0.9) }'; then
            quiet=$((quiet + 1))
            ((quiet < 2)) || return 0
        else
            quiet=0
        fi
    done
    echo "(the machine was still busy after ${max} s; measuring anyway)" >&2
}

# --- printing ----------------------------------------------------------------------------

machine() {
    local os
    os=$(. /etc/os-release && echo "$PRETTY_NAME")
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo) GiB, $os; rally-tui $(git describe --always --dirty 2>/dev/null || echo '?'); $(date -u '+%Y-%m-%d %H:%M UTC'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
}
# 1234567.8 -> 1,234,568
fmt() {
    awk -v n="$1" 'BEGIN {
        if (n !~ /^[0-9.]+([eE][-+]?[0-9]+)?$/) { print n; exit }
        n = sprintf("%.0f", n + 0); s = ""
        while (length(n) > 3) { s = "," substr(n, length(n) - 2) s; n = substr(n, 1, length(n) - 3) }
        print n s }'
}
# x / y: two decimals below 10, none from 100 up
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (b == 0) { print "-"; exit }
        r = a / b; printf (r >= 100 ? "%.0f" : (r >= 10 ? "%.1f" : "%.2f")), r }'
}
# `summary FIGURE RALLY_TUI PEER RATIO TARGET MET`: one row of benches/all.sh's table.
summary() {
    if [[ -n "${BENCH_SUMMARY:-}" ]]; then
        printf '| %s | %s | %s | %s | %s | %s |\n' "$@" >>"$BENCH_SUMMARY"
    fi
}
# yes/no: is A >= B (or A <= B with `le`)? A quick run is too short to judge.
met() {
    if [[ $quick == 1 ]]; then echo "(quick run)"; return; fi
    awk -v a="$1" -v b="$2" -v op="${3:-ge}" 'BEGIN {
        ok = (op == "ge") ? (a >= b) : (a <= b); print ok ? "yes" : "**no**" }'
}
# Median of numbers on stdin.
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else printf "%.3f\n", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# --- HTTPS (benches/https.sh) ----------------------------------------------------------------

need_h2load() { command -v h2load >/dev/null || apt_install nghttp2-client; }
need_openssl() { command -v openssl >/dev/null || apt_install openssl; }

# `make_certs DIR`: with the openssl CLI, EC P-256 keys, a CA (DIR/ca.pem) and a server
# certificate it signs for DNS:localhost and IP:127.0.0.1 (DIR/server.pem, DIR/server.key).
make_certs() {
    local d=$1 ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    need_openssl
    mkdir -p "$d"
    (
        cd "$d"
        openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 30 -subj "/CN=rally-tui bench CA"
        openssl req "${ec[@]}" -keyout server.key -out server.csr -subj /CN=localhost
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
            -days 30 -extfile ext.cnf
    ) >/dev/null 2>"$d/openssl.log" || { echo "openssl failed:" >&2; cat "$d/openssl.log" >&2; return 1; }
}

# Wait (5 s at most) until something listens on 127.0.0.1:$1.
wait_port() {
    local _
    for _ in $(seq 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# `start_nginx_tls CERT KEY`: nginx as start_nginx runs it (one worker on $SERVER_CPU, the
# 100-byte file) but over TLS: TLS 1.2 and 1.3 (nginx 1.22 leaves 1.3 off unless told), a shared
# session cache, session tickets on (nginx's default), on three ports:
#   $tls_url    HTTPS/1.1, keep-alive connections that last the whole run, no access log
#   $h2_url     HTTP/2 over TLS (`listen ... ssl http2`, ALPN h2), no access log
#   $close_url  HTTPS/1.1, one request per connection (keepalive_requests 1), every request
#               logged to $tls_log as "$ssl_session_reused $connection $connection_requests
#               $ssl_protocol $ssl_cipher $status" (`r` in the first field: a resumed session)
# Sets $nginx_pid too.
start_nginx_tls() {
    need_nginx
    local cert=$1 key=$2 dir=$tmp/nginx-tls p1 p2 p3
    p1=$(free_port)
    p2=$p1
    while [[ $p2 == "$p1" ]]; do p2=$(free_port); done
    p3=$p1
    while [[ $p3 == "$p1" || $p3 == "$p2" ]]; do p3=$(free_port); done
    mkdir -p "$dir/html"
    head -c 100 /dev/zero | tr '\0' x >"$dir/html/small"
    tls_log=$dir/access.log
    cat >"$dir/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $dir/nginx.pid; error_log $dir/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  client_body_temp_path $dir/b; proxy_temp_path $dir/p; fastcgi_temp_path $dir/f;
  uwsgi_temp_path $dir/u; scgi_temp_path $dir/s;
  ssl_certificate $cert; ssl_certificate_key $key;
  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:bench:10m; ssl_session_timeout 1h;
  log_format tls '\$ssl_session_reused \$connection \$connection_requests \$ssl_protocol \$ssl_cipher \$status';
  server { listen 127.0.0.1:$p1 ssl backlog=4096; root $dir/html; }
  server { listen 127.0.0.1:$p2 ssl http2 backlog=4096; root $dir/html; }
  server { listen 127.0.0.1:$p3 ssl backlog=4096; root $dir/html; keepalive_requests 1;
    access_log $tls_log tls; } }
CONF
    taskset -c "$SERVER_CPU" "$(nginx_bin)" -c "$dir/nginx.conf" -p "$dir" &
    nginx_pid=$!
    tls_url=https://127.0.0.1:$p1/small
    h2_url=https://127.0.0.1:$p2/small
    close_url=https://127.0.0.1:$p3/small
    if wait_port "$p1" && wait_port "$p2" && wait_port "$p3"; then return 0; fi
    echo "nginx (TLS) did not start:" >&2
    cat "$dir/error.log" >&2
    return 1
}

# From rally-tui's summary line `Connections: N opened (X TLS full handshakes, Y TLS resumed);
# ...`: "N X Y" (0 for a kind it does not name; "0 0 0" without the line).
tls_connections() {
    awk '/^Connections: [0-9]+ opened/ {
            n = $2; f = 0; r = 0
            if (match($0, /[0-9]+ TLS full handshakes/)) f = substr($0, RSTART, RLENGTH) + 0
            if (match($0, /[0-9]+ TLS resumed/)) r = substr($0, RSTART, RLENGTH) + 0
            print n, f, r; found = 1; exit }
        END { if (!found) print 0, 0, 0 }' "$1"
}
