#!/usr/bin/env bash
# Runner overhead against OpenStack Rally 5.1.1, side by side in one run: the same task file
# (Dummy.dummy, sleep 0, constant, concurrency 4) run by `rally task start` and by rally-tui.
#
#   benches/vs-rally.sh             # 20,000 iterations
#   QUICK=1 benches/vs-rally.sh     # 1,000 iterations (CI keeps it working)
set -euo pipefail
cd "$(dirname "$0")/.."

times=20000
if [[ "${QUICK:-}" == 1 ]]; then times=1000; fi
scripts/rally-venv.sh
cargo build --release --quiet
rally=$PWD/target/rally-venv/bin/rally
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/task.yaml" <<TASK
---
version: 2
title: runner overhead
subtasks:
  - title: no-op
    scenario: {Dummy.dummy: {sleep: 0}}
    runner: {constant: {times: $times, concurrency: 4}}
TASK
printf '[database]\nconnection = sqlite:///%s/rally.sqlite\n' "$tmp" > "$tmp/rally.conf"
echo '{}' > "$tmp/spec.json"
export HOME=$tmp
r() { "$rally" --config-file "$tmp/rally.conf" "$@"; }
r db create >/dev/null 2>&1
r env create --name local --spec "$tmp/spec.json" --no-use >/dev/null 2>&1
r task start --env local "$tmp/task.yaml" >/dev/null 2>&1 || true
r task export --type json --to "$tmp/rally.json" >/dev/null 2>&1 || r task export --uuid "$(r task list --uuids-only | tail -1)" --type json --to "$tmp/rally.json" >/dev/null
rally_rate=$(python3 -c "
import json,sys
w=json.load(open('$tmp/rally.json'))['tasks'][0]['subtasks'][0]['workloads'][0]
print(w['total_iteration_count'] / w['load_duration'])")

ours=$(target/release/rally-tui --db "$tmp/tasks.db" run "$tmp/task.yaml" --no-tui \
    | sed -n 's/^Load duration: .*(\([0-9.]*\) iterations\/s)$/\1/p' | head -1)

echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d)"
echo
echo "| runner overhead ($times iterations, Dummy.dummy sleep 0, constant, concurrency 4) | iterations/s | ratio |"
echo "|---|---:|---:|"
awk -v r="$rally_rate" -v o="$ours" 'BEGIN {
    printf "| Rally 5.1.1 | %.0f | 1 |\n", r
    printf "| rally-tui (storage included) | %.0f | %.0f× |\n", o, o / r }'
