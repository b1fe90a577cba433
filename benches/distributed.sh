#!/usr/bin/env bash
# Distributed runs (SPEC §10, issue #5/#8 figure 3 and 4), on this machine's loopback:
#  1. SLA abort latency with 4 agents: from the end of the first failing iteration to the last
#     iteration start on any agent (target <= 1.2 s at the default 1 s SLA interval); p50 and
#     max over 10 runs.
#  2. Controller CPU per agent at the default interval, with 1, 10 and 50 agents (target: 500
#     agents on one core, i.e. <= 2 ms of controller CPU per agent-second).
#  3. Throughput of a no-op workload on 2 local agents versus one local process.
# Prints markdown tables.
#
#   benches/distributed.sh           # full run (a few minutes)
#   QUICK=1 benches/distributed.sh   # seconds: keeps the script working in CI
set -euo pipefail
cd "$(dirname "$0")/.."

runs=10; agent_counts="1 10 50"; duration=10; noop=1000000
if [[ "${QUICK:-}" == 1 ]]; then runs=2; agent_counts="1 4"; duration=2; noop=50000; fi

cargo build --release --quiet
bin=$PWD/target/release/rally-tui
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d)"
echo

# 1. SLA abort latency.
latencies=()
for i in $(seq "$runs"); do
    db="$tmp/abort-$i.db"
    "$bin" --db "$db" run benches/tasks/sla-abort.yaml --no-tui --agents 4 --abort-on-sla-failure >/dev/null 2>&1 || true
    "$bin" --db "$db" task export last --type csv --to "$tmp/abort-$i.csv"
    # Columns: ... iteration(6) agent(7) timestamp(8) duration(9) ... error_type(12)
    l=$(python3 - "$tmp/abort-$i.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
fail_end = min(float(r["timestamp"]) + float(r["duration"]) for r in rows if r["error_type"])
last_start = max(float(r["timestamp"]) for r in rows)
print(f"{last_start - fail_end:.3f}")
PY
)
    latencies+=("$l")
done
read -r p50 max < <(printf '%s\n' "${latencies[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)], a[NR]}')
echo "| SLA abort latency, 4 agents, default interval ($runs runs) | p50 | max | target |"
echo "|---|---:|---:|---:|"
echo "| end of the failing iteration -> last iteration start anywhere | ${p50} s | ${max} s | <= 1.2 s |"
echo

# 2. Controller CPU per agent: the controller alone is timed (agents are started by hand, so
# their CPU is not counted).
echo "| agents | controller CPU (s) over ${duration} s | per agent-second | agents per core at this cost |"
echo "|---:|---:|---:|---:|"
token="$tmp/token"; (umask 077; head -c 32 /dev/urandom | base64 > "$token")
for n in $agent_counts; do
    port=$(free_port)
    /usr/bin/time -f '%U %S' -o "$tmp/time-$n" "$bin" --db "$tmp/cpu-$n.db" run benches/tasks/idle-agents.yaml \
        --no-tui --agents "$n" --listen "tcp://127.0.0.1:$port" --token-file "$token" \
        --task-args "{agents: $n, duration: $duration}" >/dev/null 2>&1 &
    controller=$!
    agents=()
    for a in $(seq "$n"); do
        "$bin" agent --connect "tcp://127.0.0.1:$port" --name "a$a" --cache-dir "$tmp/cache-$n-$a" \
            --token-file "$token" --give-up-after 5 >/dev/null 2>&1 &
        agents+=($!); pids+=($!)
    done
    wait "$controller" || true
    for a in "${agents[@]}"; do wait "$a" 2>/dev/null || true; done
    read -r user sys < "$tmp/time-$n"
    awk -v u="$user" -v s="$sys" -v n="$n" -v d="$duration" 'BEGIN {
        cpu = u + s; per = cpu / (n * d);
        printf "| %d | %.2f | %.2f ms | %s |\n", n, cpu, per * 1000, (per > 0 ? sprintf("%.0f", 1 / per) : "inf") }'
done
echo

# 3. Throughput: the same no-op task in one process and on 2 local agents (both on this
# machine's 2 cores, so this measures the distribution overhead, not a gain).
rate() {
    "$bin" --db "$tmp/tp.db" run benches/tasks/noop.yaml --no-tui --task-args "{times: $noop}" "$@" 2>/dev/null \
        | sed -n 's/^Load duration: .*(\([0-9.]*\) iterations\/s)$/\1/p' | head -1
}
wall() { local s e; s=$(date +%s.%N); rate "$@" >/dev/null; e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN { printf "%.2f", e - s }'; }
local_rate=$(rate); local_wall=$(wall)
dist_rate=$(rate --agents 2); dist_wall=$(wall --agents 2)
echo "| $noop no-op iterations (constant, concurrency 8) | iterations/s (load) | wall time incl. start and storage |"
echo "|---|---:|---:|"
printf '| one process | %.0f | %s s |\n' "$local_rate" "$local_wall"
printf '| 2 local agents | %.0f | %s s |\n' "$dist_rate" "$dist_wall"
awk -v a="$dist_rate" -v b="$local_rate" 'BEGIN { printf "\nratio 2 agents / one process: %.2f\n", a / b }'
