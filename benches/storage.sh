#!/usr/bin/env bash
# Figure 6, storage (SPEC §10): records per second
#  a. into SQLite, and out of it through the CSV and Rally JSON exporters, in-process
#     (`cargo bench --bench storage`, benches/storage.rs: 5,000,000 records shaped like
#     Dummy.dummy's). Target: >= 2,000,000 records/s into storage.
#  b. through the command line: `rally-tui task export last --type csv|json --to FILE` over a
#     stored task of 1,000,000 no-op iterations, timed as whole processes (start-up, reading
#     SQLite, writing the file, exit).
#
#   benches/storage.sh            # full run (about half a minute)
#   QUICK=1 benches/storage.sh    # 20,000 records (CI)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

times=1000000
if [[ $quick == 1 ]]; then times=20000; fi
need_time
build
# Build the bench binary with cargo, then run it without cargo (no build lock held while timing).
storage_bench=$(bench_exe storage)

machine
echo
"$storage_bench" | tee "$tmp/bench.out"
write=$(awk -F'|' '/into SQLite/ { gsub(/[ ,]/, "", $3); print $3 }' "$tmp/bench.out")
echo

"$bin" --db "$tmp/tasks.db" run benches/tasks/noop.yaml --no-tui --task-args "{times: $times}" >/dev/null
echo "| \`rally-tui task export\` of a stored $(fmt "$times")-iteration task (whole process) | seconds | records/s | file size |"
echo "|---|---:|---:|---:|"
for kind in csv json; do
    timed "$tmp/export-$kind.time" "$bin" --db "$tmp/tasks.db" task export last --type "$kind" --to "$tmp/export.$kind"
    w=$(wall_of "$tmp/export-$kind.time")
    rate=$(awk -v n="$times" -v w="$w" 'BEGIN { printf "%.1f", n / w }')
    size=$(stat -c %s "$tmp/export.$kind" | awk '{ printf "%.0f", $1 / 1e6 }')
    echo "| --type $kind | $w | $(fmt "$rate") | $size MB |"
    eval "${kind}_rate=\$rate"
    rm -f "$tmp/export.$kind"
done
summary "6. storage: records/s into SQLite (in process)" "$(fmt "$write")" "-" "-" ">= 2,000,000" "$(met "$write" 2000000)"
# shellcheck disable=SC2154 # set by the eval above
summary "6. export of $(fmt "$times") stored iterations, records/s (CSV; JSON)" "$(fmt "$csv_rate"); $(fmt "$json_rate")" "-" "-" "-" "-"
