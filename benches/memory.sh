#!/usr/bin/env bash
# Figure 5, memory (SPEC §10): peak RSS (VmHWM, from /usr/bin/time -f %M per process) of an
# agent and of the controller for 1,000,000 and 10,000,000 no-op iterations (Dummy.dummy sleep 0,
# constant, concurrency 8). The controller waits with --listen and one agent is started by
# hand, so each process is measured on its own; one local process (no agents) is shown too.
# Targets: the agent stays under 64 MiB; the controller's peak does not grow with the number of
# iterations (10M within 25% of 1M). Every iteration is stored (about 1 GB of SQLite for 10M,
# in a temp dir that is removed).
#
#   benches/memory.sh            # 1M and 10M iterations (about a minute)
#   QUICK=1 benches/memory.sh    # 20,000 and 200,000 iterations (CI)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

sizes="1000000 10000000"
if [[ $quick == 1 ]]; then sizes="20000 200000"; fi
need_time
build
token=$tmp/token
(umask 077; head -c 32 /dev/urandom | base64 >"$token")

machine
echo
echo "| no-op iterations | one process | controller (\`--listen\`, 1 agent) | agent | iterations/s (distributed run) |"
echo "|---:|---:|---:|---:|---:|"
for n in $sizes; do
    timed "$tmp/local-$n.time" "$bin" --db "$tmp/local.db" run benches/tasks/noop.yaml --no-tui \
        --task-args "{times: $n}" >"$tmp/local-$n.out"
    rm -f "$tmp/local.db"*

    port=$(free_port)
    timed "$tmp/ctl-$n.time" "$bin" --db "$tmp/ctl.db" run benches/tasks/noop.yaml --no-tui \
        --agents 1 --listen "tcp://127.0.0.1:$port" --token-file "$token" \
        --task-args "{times: $n}" >"$tmp/ctl-$n.out" 2>&1 &
    controller=$!
    timed "$tmp/agent-$n.time" "$bin" agent --connect "tcp://127.0.0.1:$port" --name mem \
        --cache-dir "$tmp/cache" --token-file "$token" --give-up-after 2 >/dev/null 2>&1 &
    agent=$!
    wait "$controller" || { echo "the controller failed:" >&2; cat "$tmp/ctl-$n.out" >&2; exit 1; }
    # The agent leaves when the controller has gone (--give-up-after); end it if it lingers.
    for _ in $(seq 100); do kill -0 "$agent" 2>/dev/null || break; sleep 0.1; done
    kill_tree "$agent"
    wait "$agent" 2>/dev/null || true
    [[ $(iterations "$tmp/ctl-$n.out") == "$n" ]] || { echo "the distributed run did not finish:" >&2; cat "$tmp/ctl-$n.out" >&2; exit 1; }
    rm -rf "$tmp/ctl.db"* "$tmp/cache"
    echo "| $(fmt "$n") | $(rss_mib_of "$tmp/local-$n.time") MiB | $(rss_mib_of "$tmp/ctl-$n.time") MiB | $(rss_mib_of "$tmp/agent-$n.time") MiB | $(fmt "$(load_rate "$tmp/ctl-$n.out")") |"
    last=$n
done
first=${sizes%% *}
agent_peak=$(for n in $sizes; do rss_mib_of "$tmp/agent-$n.time"; echo; done | sort -g | tail -1)
growth=$(ratio "$(rss_mib_of "$tmp/ctl-$last.time")" "$(rss_mib_of "$tmp/ctl-$first.time")")
echo
echo "Controller peak at $(fmt "$last") / at $(fmt "$first") iterations: ${growth}×."
summary "5. agent peak RSS, $(fmt "$last") iterations" "$agent_peak MiB" "-" "-" "< 64 MiB" "$(met "$agent_peak" 64 le)"
summary "5. controller peak RSS, $(fmt "$first") -> $(fmt "$last") iterations" \
    "$(rss_mib_of "$tmp/ctl-$first.time") -> $(rss_mib_of "$tmp/ctl-$last.time") MiB" "-" "${growth}×" "flat (<= 1.25×)" "$(met "$growth" 1.25 le)"
