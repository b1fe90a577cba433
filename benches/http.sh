#!/usr/bin/env bash
# Figure 2, HTTP load (SPEC §10): rally-tui's Http.request against nginx on loopback versus wrk
# (`wrk -t1 -c50`), Locust (FastHttpUser, headless, one process) and oha (`oha -c 50`, only with
# OHA=1, which installs it with cargo), side by side in one run, 50 connections each.
# nginx runs one worker (keepalive_requests raised, a 100-byte file) pinned to CPU $SERVER_CPU
# (0); every generator is pinned to CPU $GEN_CPU (1) with taskset.
# For each generator: requests/s, and requests per CPU-second of the generator (user + system
# time of the whole process from start to exit, from /usr/bin/time; for rally-tui that includes
# recording every iteration into SQLite). "server busy" is nginx's CPU time over the wall time
# of the run: near 100% means nginx, not the generator, was the limit.
# Target: rally-tui's requests per generator CPU-second >= wrk's, and requests/s >= wrk's.
# Installs what is missing: wrk and nginx (apt-get), Locust (pip, target/locust-venv).
#
#   benches/http.sh               # 10 s per generator, median of 3 interleaved rounds (~2.5 min)
#   OHA=1 benches/http.sh         # the same with oha (cargo install oha the first time)
#   QUICK=1 benches/http.sh       # 2 s each, one round (CI)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

seconds=10; conns=50; rounds=3
if [[ $quick == 1 ]]; then seconds=2; rounds=1; fi
need_time
need_wrk
need_locust
oha=$(oha_bin)
build
start_nginx
host=${url%/small}
server_cpu() { proc_cpu "$nginx_pid"; }

cat >"$tmp/locustfile.py" <<'PY'
from locust import FastHttpUser, constant, task


class Small(FastHttpUser):
    wait_time = constant(0)

    @task
    def small(self):
        self.client.get("/small")
PY

cat >"$tmp/task.yaml" <<TASK
version: 2
title: http bench
subtasks:
  - title: Http.request
    scenario: {Http.request: {url: "$url"}}
    runner: {constant_for_duration: {duration: $seconds, concurrency: $conns}}
    sla: {failure_rate: {max: 0}}
TASK

gens=(rally-tui wrk locust)
if [[ -n $oha ]]; then gens+=(oha); fi

# `one GEN ROUND`: appends "requests requests_per_s cpu_s server_busy" to $tmp/GEN.
one() {
    local g=$1 k=$2 out=$tmp/$1-$2 s0 n rps
    s0=$(server_cpu)
    case $g in
    wrk)
        timed "$out.time" taskset -c "$GEN_CPU" wrk -t1 -c"$conns" -d"${seconds}s" "$url" >"$out.out"
        n=$(awk '/requests in/ { print $1 }' "$out.out")
        rps=$(awk '/Requests\/sec/ { print $2 }' "$out.out")
        ;;
    oha)
        timed "$out.time" taskset -c "$GEN_CPU" "$oha" --no-tui -c "$conns" -z "${seconds}s" "$url" >"$out.out"
        rps=$(awk '/Requests\/sec:/ { print $2 }' "$out.out")
        n=$(awk '/\[200\]/ { print $2 }' "$out.out")
        ;;
    locust)
        timed "$out.time" taskset -c "$GEN_CPU" "$locust" -f "$tmp/locustfile.py" --headless --only-summary \
            -u "$conns" -r "$conns" -t "${seconds}s" --host "$host" --csv "$out" --loglevel WARNING \
            >"$out.out" 2>&1 || true
        [[ -s ${out}_stats.csv ]] || { echo "Locust failed:" >&2; cat "$out.out" >&2; exit 1; }
        read -r n rps < <(python3 -c "
import csv
for r in csv.DictReader(open('$out' + '_stats.csv')):
    if r['Name'] == 'Aggregated':
        print(r['Request Count'], r['Requests/s'])")
        ;;
    rally-tui)
        timed "$out.time" taskset -c "$GEN_CPU" "$bin" --db "$out.db" run "$tmp/task.yaml" --no-tui >"$out.out" 2>&1 || true
        n=$(iterations "$out.out")
        rps=$(load_rate "$out.out")
        if [[ -z $n || $(failures "$out.out") != 0 ]]; then echo "rally-tui failed:" >&2; cat "$out.out" >&2; exit 1; fi
        rm -f "$out.db"*
        ;;
    esac
    local busy
    busy=$(awk -v a="$s0" -v b="$(server_cpu)" -v w="$(wall_of "$out.time")" 'BEGIN { printf "%.0f", 100 * (b - a) / w }')
    echo "$n $rps $(cpu_of "$out.time") $busy" >>"$tmp/$g"
}

for k in $(seq "$rounds"); do
    for g in "${gens[@]}"; do
        if [[ $quick == 0 ]]; then wait_quiet 30; fi
        one "$g" "$k"
    done
done

# Medians over the rounds: requests/s, requests per CPU-second, CPU seconds, server busy.
med() { # GEN -> "rps per_cpu cpu busy"
    local f=$tmp/$1
    echo "$(awk '{ print $2 }' "$f" | median) $(awk '{ printf "%.1f\n", $1 / $3 }' "$f" | median) $(awk '{ print $3 }' "$f" | median) $(awk '{ print $4 }' "$f" | median)"
}
read -r w_rps w_per _ _ < <(med wrk)
read -r o_rps o_per _ _ < <(med rally-tui)

machine
echo
echo "HTTP: GET of a 100-byte file from nginx (1 worker) on loopback, $conns connections, ${seconds} s per generator,"
echo "median of $rounds interleaved round(s); nginx on CPU $SERVER_CPU, each generator on CPU $GEN_CPU (taskset)."
echo
echo "| generator | requests/s | vs wrk | requests per generator CPU-second | vs wrk | generator CPU s | server busy |"
echo "|---|---:|---:|---:|---:|---:|---:|"
label() {
    case $1 in
    wrk) echo "wrk -t1 -c$conns" ;;
    oha) echo "oha $("$oha" --version | awk '{ print $2 }') -c $conns --no-tui" ;;
    locust) echo "Locust $LOCUST_VERSION FastHttpUser, 1 process, $conns users" ;;
    rally-tui) echo "rally-tui Http.request, concurrency $conns, every iteration stored" ;;
    esac
}
for g in "${gens[@]}"; do
    read -r rps per cpu busy < <(med "$g")
    echo "| $(label "$g") | $(fmt "$rps") | $(ratio "$rps" "$w_rps") | $(fmt "$per") | $(ratio "$per" "$w_per") | $cpu | $busy% |"
done

summary "2. HTTP, $conns connections, requests/s" "$(fmt "$o_rps")" "wrk: $(fmt "$w_rps")" "$(ratio "$o_rps" "$w_rps")" ">= wrk" "$(met "$o_rps" "$w_rps")"
summary "2. HTTP, requests per generator CPU-second" "$(fmt "$o_per")" "wrk: $(fmt "$w_per")" "$(ratio "$o_per" "$w_per")" ">= wrk" "$(met "$o_per" "$w_per")"
for g in locust oha; do
    if [[ -f $tmp/$g ]]; then
        read -r rps per _ _ < <(med "$g")
        summary "2. HTTP vs $g: requests/s; per CPU-second" "$(fmt "$o_rps"); $(fmt "$o_per")" "$(fmt "$rps"); $(fmt "$per")" "$(ratio "$o_rps" "$rps"); $(ratio "$o_per" "$per")" "-" "-"
    fi
done
