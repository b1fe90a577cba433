#!/usr/bin/env bash
# Figure 7, the terminal UI with many agents (SPEC §7, §10; issue #17): the time to fold one
# interval's events (agents, progress, SLA, statistics) into the UI's state, to draw one frame
# and from a key (PgDn: the agent table scrolls) to its frame, with 100 and 1,000 agents at
# 200×60 and 240×70 cells (`cargo bench --bench tui`, benches/tui.rs; drawn into ratatui's
# TestBackend). Targets: input within 100 ms, at least 10 frames a second.
#
#   benches/tui.sh            # 300 intervals of history, 50 frames each (seconds)
#   QUICK=1 benches/tui.sh    # 20 intervals, 5 frames (CI)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

tui_bench=$(bench_exe tui)

machine
echo
QUICK=$quick "$tui_bench" | tee "$tmp/tui.out"
row=$(grep '^| 1000 | 240×70 ' "$tmp/tui.out")
fps=$(echo "$row" | awk -F'|' '{ gsub(/ /, "", $6); print $6 }')
key=$(echo "$row" | awk -F'|' '{ gsub(/ /, "", $7); print $7 }')
summary "7. TUI with 1,000 agents at 240×70: frames/s; worst key to frame" "$fps; $key ms" "-" "-" ">= 10 frames/s; <= 100 ms" "$(met "$fps" 10)"
