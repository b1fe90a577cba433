#!/usr/bin/env bash
# Figures 3 and 4, distributed runs (SPEC §10) on this machine's loopback:
#  3a. The same HTTP workload (Http.request against nginx, 50 connections, as benches/http.sh)
#      from one local process and from `--agents 2` (two local agent processes and the
#      controller): requests/s and requests per CPU-second of all of them together. nginx is
#      pinned to CPU $SERVER_CPU (0), the generator processes to CPU $GEN_CPU (1).
#  3b. The same for 1,000,000 no-op iterations (distribution overhead without a server).
#  3c. The controller's CPU per agent-second and RSS per agent at the default 1 s SLA interval,
#      with 50, 1,000 and 5,000 agents simulated in 1-2 other processes on the other core
#      (benches/sim_agents.rs),
#      each running light load (one iteration every 1 s: one harness core runs them all). Targets: 5,000 agents per core
#      (500 is the floor), i.e. at most 0.2 ms of controller CPU per agent-second; at most
#      200 KiB of controller RSS per agent.
#  4b. SLA abort latency with 1,000 simulated agents (target <= 1.2 s).
#  4.  SLA abort latency with 4 agents: from the end of the first failing iteration to the last
#      iteration start on any agent, p50 and max over 10 runs (target <= 1.2 s at the default
#      interval).
# Prints markdown tables.
#
#   benches/distributed.sh           # full run (about 6 minutes)
#   QUICK=1 benches/distributed.sh   # seconds (50 simulated agents): keeps the script working in CI
#   SCALE_ONLY=1 SCALE_SLEEP=1 AGENT_COUNTS="50 1000 5000" benches/distributed.sh   # only 3c and 4b (README "3 at scale")
#   Knobs of 3c/4b: SCALE_SLEEP (s between an agent's iterations), SCALE_PACE (registrations/s),
#   SCALE_PER_PROC (agents per harness process), SCALE_THREADS (0: current-thread runtime),
#   SCALE_CACHE (a directory for the agents' chunk caches; default tmpfs), ABORT_RUNS (4b runs),
#   RALLY_BIN (another controller binary, for an A/B with the same harness).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

runs=10; agent_counts=${AGENT_COUNTS:-"50 1000 5000"}; noop=1000000; http_seconds=10; conns=50
scale_duration=${SCALE_DURATION:-25}; settle=5; window=10; abort_agents=1000; abort_runs=${ABORT_RUNS:-3}
# Per simulated agent: one iteration every $scale_sleep s; silence before an agent is lost.
scale_sleep=${SCALE_SLEEP:-1}; scale_liveness=${SCALE_LIVENESS:-10}
if [[ $quick == 1 ]]; then
    runs=2; agent_counts=50; noop=50000; http_seconds=2
    scale_duration=4; settle=1; window=1; abort_agents=50; abort_runs=1
fi
need_time
build
# RALLY_BIN=PATH: measure another build of the controller (an A/B of a change) with the same harness.
bin=${RALLY_BIN:-$bin}
machine
echo

if [[ -z ${SCALE_ONLY:-} ]]; then
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

fi

# 3c. Controller CPU and memory per agent at scale: the real controller (`run --listen`) and
# N real agents simulated in other processes, all on the other core (benches/sim_agents.rs: the library's agent,
# its own sockets, sealed session and chunk cache each), each running one iteration every
# $scale_sleep s (1), at the default 1 s SLA interval. Only the controller is measured: its CPU over a
# steady window in the middle of the load (utime + stime from /proc/<pid>/stat) per
# agent-second, and its RSS (VmRSS) at the end of that window per agent. Registration is paced
# (sim_agents --pace, 200 agents/s, 100/s above 2,000 agents) so that the controller's cap on
# unauthenticated connections (32 per address, all of these come from 127.0.0.1) does not evict
# them (it still may at 5,000 when other work shares the machine: the agents register again).
# Each simulated agent holds 4 descriptors (2 sockets, its cache's lock and directory), the
# controller 2 per agent: 5,000 agents in one process would need more than a usual hard limit
# of 20,000, hence several harness processes (scale_run); root may raise the limit too.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
sim=$(bench_exe sim_agents)
token="$tmp/token"
(umask 077; head -c 32 /dev/urandom | base64 >"$token")
# `free_port_pair`: a port P with P+1 (the results channel) free too, below the ephemeral range
# (thousands of simulated agents' own connections take ephemeral ports, P+1 among them).
free_port_pair() {
    python3 -c '
import random, socket
for _ in range(1000):
    p = random.randrange(20000, 32000)
    try:
        a = socket.socket(); a.bind(("127.0.0.1", p)); b = socket.socket(); b.bind(("127.0.0.1", p + 1))
    except OSError:
        continue
    print(p); break'
}
# `scale_run N TASK TASK_ARGS EXTRA...`: controller + N simulated agents in $sim_procs processes
# (at most $per_proc agents each: 4 descriptors per simulated agent against a usual hard limit
# of 20,000 open files per process); sets $ctl_pid, $sim_pids, $ctl_out (the controller's
# output). Returns once all are started.
per_proc=${SCALE_PER_PROC:-2500}
# The simulated agents' chunk caches (a file per chunk, removed once the controller has
# stored it) on tmpfs when there is one: on one machine, thousands of agents creating and
# deleting files in one ext4 directory cost the harness core a fifth of its time in the
# filesystem, which real agents spread over their own disks. SCALE_CACHE=DIR to choose.
if [[ -n ${SCALE_CACHE:-} ]]; then
    sim_cache=$SCALE_CACHE/sim-cache
elif [[ -d /dev/shm && -w /dev/shm ]]; then
    sim_cache=$(mktemp -d /dev/shm/sim-cache.XXXXXX)
    trap 'rm -rf "$sim_cache"; bench_cleanup' EXIT
else
    sim_cache=$tmp/sim-cache
fi
scale_run() {
    local n=$1 task=$2 targs=$3 port k i first share
    shift 3
    port=$(free_port_pair)
    ctl_out=$tmp/scale-$n.out
    rm -rf "$sim_cache"
    # Registration pace, agents per second over all harness processes: 200/s up to 2,000
    # agents; 100/s above (at 200/s the controller's handshakes fall behind by ~4,000
    # registered agents and the 32-per-address cap evicts some).
    pace=${SCALE_PACE:-$((n > 2000 ? 100 : 200))}
    sim_procs=$(((n + per_proc - 1) / per_proc))
    # The controller on CPU $SERVER_CPU, every harness process on CPU $GEN_CPU (one runtime
    # thread each): the controller's CPU is its own process's, and the harness cannot starve it.
    taskset -c "$SERVER_CPU" "$bin" --db "$tmp/scale-$n.db" run "$task" --no-tui --agents "$n" --listen "tcp://127.0.0.1:$port" \
        --token-file "$token" --agent-wait 180 --task-args "$targs" "$@" >"$ctl_out" 2>&1 &
    ctl_pid=$!
    sim_pids=()
    first=1
    for ((i = 0; i < sim_procs; i++)); do
        share=$(((n - first + 1) / (sim_procs - i)))
        taskset -c "$GEN_CPU" "$sim" --connect "tcp://127.0.0.1:$port" --token-file "$token" --agents "$share" --first "$first" \
            --pace "$(awk -v p="$pace" -v k="$sim_procs" 'BEGIN { print p / k }')" \
            --cache-dir "$sim_cache" --give-up-after 90 --threads "${SCALE_THREADS:-0}" >"$tmp/sim-$n-$i.out" 2>&1 &
        sim_pids+=($!)
        first=$((first + share))
    done
}
# CPU seconds of every harness process so far.
sim_cpu() {
    local p total=0
    for p in "${sim_pids[@]}"; do total=$(awk -v a="$total" -v b="$(proc_cpu "$p")" 'BEGIN { print a + b }'); done
    echo "$total"
}
# `end_sim`: once the controller has ended, give the simulated agents 5 s to leave; the few that
# missed the shutdown would otherwise wait out --give-up-after.
end_sim() {
    local _ p alive
    for _ in $(seq 50); do
        alive=0
        for p in "${sim_pids[@]}"; do if kill -0 "$p" 2>/dev/null; then alive=1; fi; done
        ((alive)) || break
        sleep 0.1
    done
    for p in "${sim_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" || true; done
}
# `wait_registered N`: until the controller has said "agent ... registered" N times (the load
# starts then), 3 minutes at most.
wait_registered() {
    local _
    for _ in $(seq 1800); do
        local c
        c=$(grep -c ' registered from ' "$ctl_out" 2>/dev/null || true)
        if ((${c:-0} >= $1)); then return 0; fi
        sleep 0.1
    done
    return 1
}
echo "| agents (real controller, simulated agents, 1 iteration / $scale_sleep s each, 1 s SLA interval, --liveness $scale_liveness) | steady window | controller CPU per agent-second | agents per core | controller RSS | RSS per agent | iterations/s: achieved / intended | harness core busy |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $agent_counts; do
    # --liveness (bench only): one core of simulated agents falls behind on heartbeats at
    # thousands of agents before the controller does; heartbeats stay at 1 s either way.
    scale_run "$n" benches/tasks/sim-agents.yaml "{agents: $n, duration: $scale_duration, sleep: $scale_sleep}" \
        --liveness "$scale_liveness"
    if ! wait_registered "$n"; then echo "controller with $n agents never started:" >&2; tail "$ctl_out" "$tmp/sim-$n.out" >&2; exit 1; fi
    sleep "$settle"
    c0=$(proc_cpu "$ctl_pid"); h0=$(sim_cpu); t0=$EPOCHREALTIME
    sleep "$window"
    c1=$(proc_cpu "$ctl_pid"); h1=$(sim_cpu); t1=$EPOCHREALTIME
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$ctl_pid/status")
    wait "$ctl_pid" || true
    end_sim
    if [[ $(iterations "$ctl_out") == "" ]]; then echo "run with $n agents failed:" >&2; tail "$ctl_out" "$tmp/sim-$n.out" >&2; exit 1; fi
    read -r per per_core < <(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" -v n="$n" 'BEGIN {
        per = (b - a) / ((e - s) * n); printf "%.3f %.0f\n", per * 1000, (per > 0 ? 1 / per : 0) }')
    rss_agent=$(awk -v r="$rss" -v n="$n" 'BEGIN { printf "%.0f", r / n }')
    # Whether the harness kept up: the load's iteration rate against what N agents at one
    # iteration per $scale_sleep s would run, and how busy the harness core was in the window.
    achieved=$(load_rate "$ctl_out")
    intended=$(awk -v n="$n" -v s="$scale_sleep" 'BEGIN { printf "%.0f", n / s }')
    busy=$(awk -v a="$h0" -v b="$h1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.0f", 100 * (b - a) / (e - s) }')
    echo "| $(fmt "$n") | ${window} s | $per ms | $(fmt "$per_core") | $(awk -v r="$rss" 'BEGIN { printf "%.1f", r / 1024 }') MiB | $rss_agent KiB | $(fmt "${achieved%.*}") / $(fmt "$intended") | $busy% |"
    last_n=$n; last_per=$per; last_core=$per_core; last_rss=$rss_agent
    rm -f "$tmp/scale-$n.db"*
done
echo
summary "3. controller CPU per agent-second, $(fmt "$last_n") agents, 1 s interval" "$last_per ms ($(fmt "$last_core") agents/core)" "-" "-" ">= 5,000 agents/core (floor 500)" "$(met "$last_core" 5000)"
summary "3. controller RSS per agent, $(fmt "$last_n") agents" "$last_rss KiB" "-" "-" "<= 200 KiB" "$(met "$last_rss" 200 le)"

# `abort_latency CSV`: from the end of the first failing iteration to the last iteration start
# anywhere, seconds.
abort_latency() {
    python3 - "$1" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
fail_end = min(float(r["timestamp"]) + float(r["duration"]) for r in rows if r["error_type"])
last_start = max(float(r["timestamp"]) for r in rows)
print(f"{last_start - fail_end:.3f}")
PY
}

# 4b. SLA abort latency with $abort_agents simulated agents (one iteration every 0.1 s each,
# iteration 30 x agents fails, about 3 s into the load).
many=()
for ((i = 1; i <= abort_runs; i++)); do
    scale_run "$abort_agents" benches/tasks/sla-abort.yaml \
        "{concurrency: $abort_agents, sleep: 0.1, fail_at: $((abort_agents * 30))}" --abort-on-sla-failure
    wait "$ctl_pid" || true
    end_sim
    "$bin" --db "$tmp/scale-$abort_agents.db" task export last --type csv --to "$tmp/abort-many-$i.csv"
    many+=("$(abort_latency "$tmp/abort-many-$i.csv")")
    rm -f "$tmp/scale-$abort_agents.db"* "$tmp/abort-many-$i.csv"
done
if ((abort_runs > 0)); then
read -r mp50 mmax < <(printf '%s\n' "${many[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)], a[NR] }')
echo "| SLA abort latency, $(fmt "$abort_agents") simulated agents, default interval ($abort_runs runs) | p50 | max | target |"
echo "|---|---:|---:|---:|"
echo "| end of the failing iteration -> last iteration start anywhere | ${mp50} s | ${mmax} s | <= 1.2 s |"
echo
summary "4. SLA abort latency, $(fmt "$abort_agents") agents, p50 / max of $abort_runs" "$mp50 s / $mmax s" "-" "-" "<= 1.2 s" "$(met "$mmax" 1.2 le)"
fi

if [[ -z ${SCALE_ONLY:-} ]]; then
# 4. SLA abort latency.
latencies=()
for i in $(seq "$runs"); do
    db="$tmp/abort-$i.db"
    "$bin" --db "$db" run benches/tasks/sla-abort.yaml --no-tui --agents 4 --abort-on-sla-failure >/dev/null 2>&1 || true
    "$bin" --db "$db" task export last --type csv --to "$tmp/abort-$i.csv"
    l=$(abort_latency "$tmp/abort-$i.csv")
    latencies+=("$l")
    rm -f "$db"* "$tmp/abort-$i.csv"
done
read -r p50 max < <(printf '%s\n' "${latencies[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)], a[NR] }')
echo "| SLA abort latency, 4 agents, default interval ($runs runs) | p50 | max | target |"
echo "|---|---:|---:|---:|"
echo "| end of the failing iteration -> last iteration start anywhere | ${p50} s | ${max} s | <= 1.2 s |"
summary "4. SLA abort latency, 4 agents, p50 / max of $runs" "$p50 s / $max s" "-" "-" "<= 1.2 s" "$(met "$max" 1.2 le)"
fi
