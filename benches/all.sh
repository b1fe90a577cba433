#!/usr/bin/env bash
# Every benchmark of SPEC §10 in one go, each figure measured side by side with its peer in the
# same run, then one markdown table of the headline figures (with ratios, targets, the machine
# and the date). The scripts install what is missing on a Debian machine: nginx and wrk
# (apt-get), Rally 5.1.1 and Locust (pip, into target/rally-venv and target/locust-venv), and
# oha (cargo install into target/oha) only when OHA=1.
#   1. benches/runner-overhead.sh   no-op iterations/s, against Rally 5.1.1
#   2. benches/http.sh              Http.request against nginx, against wrk, Locust (and oha)
#   2b. benches/https.sh            Http.request over HTTPS and HTTP/2, against wrk and h2load (and oha)
#   3. benches/distributed.sh       2 agents against one process, controller CPU and RSS per agent
#                                   with 50, 1,000 and 5,000 simulated agents (benches/sim_agents.rs),
#   4.                              SLA abort latency with 4 and 1,000 agents
#   5. benches/memory.sh            peak RSS of agent and controller at 1M and 10M iterations
#   6. benches/storage.sh           records/s into SQLite and out through the exporters
#   7. benches/tui.sh               the terminal UI with 100 and 1,000 agents: frames/s, key latency
# Everything printed is also written to target/bench-results.md.
#
#   benches/all.sh                  # full run, a few minutes (about 10 on 2 cores)
#   OHA=1 benches/all.sh            # with oha in the HTTP figures
#   QUICK=1 benches/all.sh          # seconds per script: CI runs this to keep them working
#   CARGO="flock -o /tmp/cargo.lock cargo" benches/all.sh   # share a build lock
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export QUICK=${QUICK:-}

build
export BENCH_SUMMARY=$tmp/summary.md
out=$root/target/bench-results.md
{
    for s in runner-overhead http https distributed memory storage tui; do
        echo
        echo "## benches/$s.sh"
        echo
        if [[ $quick == 0 ]]; then wait_quiet 120; fi
        benches/$s.sh || echo "$s" >>"$tmp/failed"
    done
    echo
    echo "## Summary"
    echo
    machine
    echo "HTTP: nginx pinned to CPU $SERVER_CPU, each generator to CPU $GEN_CPU (taskset); other figures unpinned."
    if [[ $quick == 1 ]]; then echo "QUICK=1: short runs that only keep the scripts working; the figures mean nothing."; fi
    echo
    echo "| figure | rally-tui | peer | ratio | target | met |"
    echo "|---|---:|---:|---:|---|---|"
    cat "$BENCH_SUMMARY"
    if [[ -s $tmp/failed ]]; then
        echo
        echo "FAILED: $(xargs <"$tmp/failed")"
    fi
} 2>&1 | tee "$out"
[[ ! -s $tmp/failed ]]
