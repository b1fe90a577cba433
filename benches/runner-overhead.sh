#!/usr/bin/env bash
# Figure 1, runner overhead (SPEC §10), no-op iterations through the whole path (runner slots,
# chunks, statistics, SLA, SQLite storage):
#  a. the same task file (Dummy.dummy sleep 0, constant, times 20,000, concurrency 4) run by
#     OpenStack Rally 5.1.1 (`rally task start`; scripts/rally-venv.sh installs it into
#     target/rally-venv) and by rally-tui, side by side: iterations/s and the ratio;
#  b. rally-tui alone on 1,000,000 iterations (constant, concurrency 8), default SLA and every
#     criterion configured. Target: >= 1,000,000/s including storage. "load" is over the
#     workload's load duration (as Rally's figure); "end to end" divides by the wall time of the
#     whole `rally-tui run` process (start-up, every record committed to SQLite, exit).
# Nothing is pinned: both tools may use both cores.
#
#   benches/runner-overhead.sh            # best of 3 rally-tui runs (about a minute)
#   QUICK=1 benches/runner-overhead.sh    # 1,000 and 20,000 iterations, one run (CI)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

rally_times=20000; times=1000000; runs=3
if [[ $quick == 1 ]]; then rally_times=1000; times=20000; runs=1; fi
need_time
need_rally
build

# a. Rally and rally-tui on the same task file.
cat >"$tmp/task.yaml" <<TASK
---
version: 2
title: runner overhead
subtasks:
  - title: no-op
    scenario: {Dummy.dummy: {sleep: 0}}
    runner: {constant: {times: $rally_times, concurrency: 4}}
TASK
rally=$root/target/rally-venv/bin/rally
printf '[database]\nconnection = sqlite:///%s/rally.sqlite\n' "$tmp" >"$tmp/rally.conf"
echo '{}' >"$tmp/spec.json"
r() { HOME=$tmp "$rally" --config-file "$tmp/rally.conf" "$@"; }
r db create >/dev/null 2>&1
r env create --name local --spec "$tmp/spec.json" --no-use >/dev/null 2>&1
r task start --env local "$tmp/task.yaml" >"$tmp/rally.out" 2>&1 || true
r task export --uuid "$(r task list --env local --uuids-only | tail -1)" --type json --to "$tmp/rally.json" >/dev/null 2>&1
rally_rate=$(python3 -c "
import json
w = json.load(open('$tmp/rally.json'))['tasks'][0]['subtasks'][0]['workloads'][0]
print(w['total_iteration_count'] / w['load_duration'])")

best=0
for _ in $(seq "$runs"); do
    "$bin" --db "$tmp/small.db" run "$tmp/task.yaml" --no-tui >"$tmp/small.out"
    best=$(awk -v a="$best" -v b="$(load_rate "$tmp/small.out")" 'BEGIN { print (b > a) ? b : a }')
done
ours_small=$best

# b. rally-tui alone, 1,000,000 iterations: the run with the best end-to-end rate.
# `big TASK OUT`: writes "load_rate end_to_end_rate cpu_seconds peak_rss_mib" to OUT.
big() {
    local best_e2e=0 line=""
    for i in $(seq "$runs"); do
        rm -f "$tmp/big.db"*
        timed "$tmp/big-$i.time" "$bin" --db "$tmp/big.db" run "$1" --no-tui --task-args "{times: $times}" >"$tmp/big-$i.out"
        local n e2e
        n=$(iterations "$tmp/big-$i.out")
        e2e=$(awk -v n="$n" -v w="$(wall_of "$tmp/big-$i.time")" 'BEGIN { printf "%.1f", n / w }')
        if awk -v a="$e2e" -v b="$best_e2e" 'BEGIN { exit !(a > b) }'; then
            best_e2e=$e2e
            line="$(load_rate "$tmp/big-$i.out") $e2e $(cpu_of "$tmp/big-$i.time") $(rss_mib_of "$tmp/big-$i.time")"
        fi
    done
    echo "$line" >"$2"
}
big benches/tasks/noop.yaml "$tmp/default"
big benches/tasks/noop-all-sla.yaml "$tmp/all"
read -r def_load def_e2e def_cpu def_rss <"$tmp/default"
read -r all_load all_e2e all_cpu all_rss <"$tmp/all"

machine
echo
echo "| runner overhead: $(fmt "$rally_times") iterations, Dummy.dummy sleep 0, constant, concurrency 4 | iterations/s (load duration) | ratio |"
echo "|---|---:|---:|"
echo "| Rally 5.1.1 (\`rally task start\`) | $(fmt "$rally_rate") | 1 |"
echo "| rally-tui, every record stored (best of $runs) | $(fmt "$ours_small") | $(ratio "$ours_small" "$rally_rate")× |"
echo
echo "| rally-tui alone: $(fmt "$times") iterations, constant, concurrency 8 (best of $runs) | iterations/s, load | iterations/s, end to end | CPU s | peak RSS |"
echo "|---|---:|---:|---:|---:|"
echo "| Dummy.dummy sleep 0, default SLA | $(fmt "$def_load") | $(fmt "$def_e2e") | $def_cpu | $def_rss MiB |"
echo "| Dummy.dummy sleep 0, all six criteria + max_percentile | $(fmt "$all_load") | $(fmt "$all_e2e") | $all_cpu | $all_rss MiB |"
echo
echo "End to end = iterations / wall time of the whole process (start-up, SQLite commit, exit)."

summary "1. runner overhead, $(fmt "$rally_times") no-op iterations, concurrency 4 (it/s)" \
    "$(fmt "$ours_small")" "Rally 5.1.1: $(fmt "$rally_rate")" "$(ratio "$ours_small" "$rally_rate")×" "-" "-"
summary "1. $(fmt "$times") no-op iterations incl. storage, end to end (it/s)" \
    "$(fmt "$def_e2e")" "-" "-" ">= 1,000,000" "$(met "$def_e2e" 1000000)"
