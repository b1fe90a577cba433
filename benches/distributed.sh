#!/usr/bin/env bash
# Figures 3 and 4, distributed runs (SPEC §10) on this machine's loopback:
#  3a. The same HTTP workload (Http.request against nginx, 50 connections, as benches/http.sh)
#      from one local process and from `--agents 2` (two local agent processes and the
#      controller): requests/s and requests per CPU-second of all of them together. nginx is
#      pinned to CPU $SERVER_CPU (0), the generator processes to CPU $GEN_CPU (1).
#  3b. The same for 1,000,000 no-op iterations (distribution overhead without a server).
#  3c. The controller's CPU per agent at the default 1 s SLA interval, with 1, 10 and 50 agents
#      started by hand (so only the controller is timed), each running light load (one
#      iteration every 10 ms). Target: 5,000 agents per core (500 is the floor), i.e. at most
#      0.2 ms (2 ms) of controller CPU per agent-second.
#  4.  SLA abort latency with 4 agents: from the end of the first failing iteration to the last
#      iteration start on any agent, p50 and max over 10 runs (target <= 1.2 s at the default
#      interval).
# Prints markdown tables.
#
#   benches/distributed.sh           # full run (about 3 minutes)
#   QUICK=1 benches/distributed.sh   # seconds: keeps the script working in CI
set -euo pipefail
source "$(dirname "$0")/lib.sh"

runs=10; agent_counts="1 10 50"; duration=10; noop=1000000; http_seconds=10; conns=50
if [[ $quick == 1 ]]; then runs=2; agent_counts="1 4"; duration=2; noop=50000; http_seconds=2; fi
need_time
build
machine
echo

# 3a. HTTP from one process and from 2 local agents.
start_nginx
cat >"$tmp/http.yaml" <<TASK
version: 2
title: http bench
subtasks:
  - title: Http.request
    scenario: {Http.request: {url: "$url"}}
    runner: {constant_for_duration: {duration: $http_seconds, concurrency: $conns}}
    sla: {failure_rate: {max: 0}}
TASK
# `http_run NAME ARGS...`: writes "requests/s requests_per_cpu_second cpu_seconds" to $tmp/NAME.
http_run() {
    local out=$tmp/http-$1
    shift
    timed "$out.time" taskset -c "$GEN_CPU" "$bin" --db "$out.db" run "$tmp/http.yaml" --no-tui "$@" >"$out.out" 2>"$out.err" || true
    local n
    n=$(iterations "$out.out")
    if [[ -z $n || $(failures "$out.out") != 0 ]]; then
        echo "HTTP run $* failed:" >&2; cat "$out.out" "$out.err" >&2; exit 1
    fi
    echo "$(load_rate "$out.out") $(awk -v n="$n" -v c="$(cpu_of "$out.time")" 'BEGIN { printf "%.1f", n / c }') $(cpu_of "$out.time")" >"$out"
}
http_run local
http_run agents --agents 2
read -r h1_rps h1_per h1_cpu <"$tmp/http-local"
read -r h2_rps h2_per h2_cpu <"$tmp/http-agents"
echo "| HTTP, $conns connections, ${http_seconds} s, generator on CPU $GEN_CPU, nginx on CPU $SERVER_CPU | requests/s | ratio | requests per CPU-second | ratio | CPU s |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| one process | $(fmt "$h1_rps") | 1 | $(fmt "$h1_per") | 1 | $h1_cpu |"
echo "| controller + 2 local agents (\`--agents 2\`) | $(fmt "$h2_rps") | $(ratio "$h2_rps" "$h1_rps") | $(fmt "$h2_per") | $(ratio "$h2_per" "$h1_per") | $h2_cpu |"
echo
summary "3. HTTP from 2 agents vs one process: requests/s" "$(fmt "$h2_rps")" "one process: $(fmt "$h1_rps")" "$(ratio "$h2_rps" "$h1_rps")" "-" "-"
kill_tree "$nginx_pid"

# 3b. No-op throughput: one process and 2 local agents (both unpinned, on this machine's 2
# cores, so this measures the distribution overhead, not a gain).
noop_run() {
    local out=$tmp/noop-$1
    shift
    timed "$out.time" "$bin" --db "$out.db" run benches/tasks/noop.yaml --no-tui --task-args "{times: $noop}" "$@" >"$out.out" 2>"$out.err"
    echo "$(load_rate "$out.out") $(wall_of "$out.time") $(cpu_of "$out.time")" >"$out"
}
noop_run local
noop_run agents --agents 2
read -r n1_rate n1_wall n1_cpu <"$tmp/noop-local"
read -r n2_rate n2_wall n2_cpu <"$tmp/noop-agents"
echo "| $(fmt "$noop") no-op iterations (constant, concurrency 8, unpinned) | iterations/s (load) | wall time incl. start and storage | CPU s |"
echo "|---|---:|---:|---:|"
echo "| one process | $(fmt "$n1_rate") | $n1_wall s | $n1_cpu |"
echo "| controller + 2 local agents | $(fmt "$n2_rate") | $n2_wall s | $n2_cpu |"
echo
summary "3. $(fmt "$noop") no-op iterations, 2 agents vs one process (it/s)" "$(fmt "$n2_rate")" "one process: $(fmt "$n1_rate")" "$(ratio "$n2_rate" "$n1_rate")" "-" "-"

# 3c. Controller CPU per agent: the controller alone is timed (agents are started by hand, so
# their CPU is not counted). "whole run" includes start-up, waiting for the agents, storing the
# results and exit; "steady" is the controller's CPU over a window in the middle of the load
# (from /proc/<pid>/stat), which is what grows with the number of agents.
echo "| agents (light load, ${duration} s, default 1 s SLA interval) | controller CPU s, whole run | per agent-second | steady, per agent-second | agents per core (steady) |"
echo "|---:|---:|---:|---:|---:|"
token="$tmp/token"
(umask 077; head -c 32 /dev/urandom | base64 >"$token")
for n in $agent_counts; do
    port=$(free_port)
    timed "$tmp/ctl-$n.time" "$bin" --db "$tmp/cpu-$n.db" run benches/tasks/idle-agents.yaml \
        --no-tui --agents "$n" --listen "tcp://127.0.0.1:$port" --token-file "$token" \
        --task-args "{agents: $n, duration: $duration}" >"$tmp/ctl-$n.out" 2>&1 &
    controller=$!
    agents=()
    for a in $(seq "$n"); do
        "$bin" agent --connect "tcp://127.0.0.1:$port" --name "a$a" --cache-dir "$tmp/cache-$n-$a" \
            --token-file "$token" --give-up-after 5 >/dev/null 2>&1 &
        agents+=($!)
    done
    steady=-; per_core=-
    if [[ $duration -ge 8 ]]; then
        # The load starts once every agent has registered (within a second or two here).
        sleep 3
        pid=$(timed_pid "$controller")
        c0=$(proc_cpu "$pid"); t0=$EPOCHREALTIME
        sleep $((duration - 5))
        c1=$(proc_cpu "$pid"); t1=$EPOCHREALTIME
        read -r steady per_core < <(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" -v n="$n" 'BEGIN {
            per = (b - a) / ((e - s) * n); printf "%.3f %.0f\n", per * 1000, (per > 0 ? 1 / per : 0) }')
    fi
    wait "$controller" || true
    for a in "${agents[@]}"; do wait "$a" 2>/dev/null || true; done
    whole=$(awk -v c="$(cpu_of "$tmp/ctl-$n.time")" -v n="$n" -v d="$duration" 'BEGIN { printf "%.3f", 1000 * c / (n * d) }')
    echo "| $n | $(cpu_of "$tmp/ctl-$n.time") | $whole ms | $steady ms | $(fmt "$per_core") |"
    last_n=$n; last_per=$steady; last_core=$per_core
    if [[ $steady == - ]]; then
        last_per=$whole
        last_core=$(awk -v p="$whole" 'BEGIN { printf "%.0f", 1000 / p }')
    fi
done
echo
summary "3. controller CPU per agent-second, $last_n agents, 1 s interval" "$last_per ms ($(fmt "$last_core") agents/core)" "-" "-" ">= 5,000 agents/core (floor 500)" "$(met "$last_core" 5000)"

# 4. SLA abort latency.
latencies=()
for i in $(seq "$runs"); do
    db="$tmp/abort-$i.db"
    "$bin" --db "$db" run benches/tasks/sla-abort.yaml --no-tui --agents 4 --abort-on-sla-failure >/dev/null 2>&1 || true
    "$bin" --db "$db" task export last --type csv --to "$tmp/abort-$i.csv"
    l=$(python3 - "$tmp/abort-$i.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
fail_end = min(float(r["timestamp"]) + float(r["duration"]) for r in rows if r["error_type"])
last_start = max(float(r["timestamp"]) for r in rows)
print(f"{last_start - fail_end:.3f}")
PY
)
    latencies+=("$l")
    rm -f "$db"* "$tmp/abort-$i.csv"
done
read -r p50 max < <(printf '%s\n' "${latencies[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)], a[NR] }')
echo "| SLA abort latency, 4 agents, default interval ($runs runs) | p50 | max | target |"
echo "|---|---:|---:|---:|"
echo "| end of the failing iteration -> last iteration start anywhere | ${p50} s | ${max} s | <= 1.2 s |"
summary "4. SLA abort latency, 4 agents, p50 / max of $runs" "$p50 s / $max s" "-" "-" "<= 1.2 s" "$(met "$max" 1.2 le)"
