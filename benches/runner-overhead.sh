#!/usr/bin/env bash
# Iterations per second of a no-op workload through the whole path — runner, chunks,
# statistics, SLA, SQLite storage — (SPEC §10: >= 1,000,000/s), with the default SLA and with
# every criterion configured. Prints a markdown table.
#
#   benches/runner-overhead.sh            # 1,000,000 iterations, best of 3 runs
#   QUICK=1 benches/runner-overhead.sh    # 20,000 iterations, one run (CI keeps it working)
set -euo pipefail
cd "$(dirname "$0")/.."

times=1000000; runs=3
if [[ "${QUICK:-}" == 1 ]]; then times=20000; runs=1; fi

cargo build --release --quiet
bin=target/release/rally-tui
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rate() {
    # The best "iterations/s" of the runs, from the summary line "Load duration: X s (Y iterations/s)".
    local best=0
    for _ in $(seq "$runs"); do
        local r
        r=$("$bin" --db "$tmp/bench.db" run "$1" --no-tui --task-args "{times: $times}" | sed -n 's/^Load duration: .*(\([0-9.]*\) iterations\/s)$/\1/p' | head -1)
        best=$(awk -v a="$best" -v b="$r" 'BEGIN { print (b > a) ? b : a }')
    done
    printf '%.0f' "$best"
}

default_sla=$(rate benches/tasks/noop.yaml)
all_sla=$(rate benches/tasks/noop-all-sla.yaml)

echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d)"
echo
echo "| workload ($times iterations, constant, concurrency 8) | iterations/s |"
echo "|---|---:|"
echo "| Dummy.dummy sleep 0, default SLA | $default_sla |"
echo "| Dummy.dummy sleep 0, all six criteria + max_percentile | $all_sla |"
