#!/usr/bin/env bash
# Fuzz every target of fuzz/ (cargo-fuzz, libFuzzer, nightly) for a while each.
#
#   fuzz/run.sh                 # 10 s per target (what CI runs)
#   fuzz/run.sh 600             # 10 minutes per target
#   RUNS=10000000 fuzz/run.sh   # a number of executions per target instead of a time
#   fuzz/run.sh 60 task chunk   # some targets only
#   FUZZ_DEV=1 fuzz/run.sh 10   # unoptimized build: builds in half the time, runs slower
#                               # (what CI does for its smoke run)
#
# Bounds every run must respect: no panic, no input over 10 s (-timeout), no more than 512 MB
# (-rss_limit_mb, -malloc_limit_mb). Each target starts from fuzz/seeds/TARGET (taken from
# the tests and samples, committed) and keeps what it learns in fuzz/corpus/TARGET (not
# committed). A crash leaves its input in fuzz/artifacts/TARGET and fails the script.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-10}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(frame handshake chunk task cluster); fi

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (cargo install, about a minute)" >&2
    cargo install cargo-fuzz --locked --quiet
fi

# A small ASan quarantine: the 512 MB limit is for what the targets allocate; with ASan's
# default 256 MB quarantine and a corpus of thousands of inputs, libFuzzer's own bookkeeping
# alone crossed it after 8.6 million runs of `task` (the "failing" input was the empty one).
export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=32:malloc_context_size=4}"
profile=(-O)
if [ "${FUZZ_DEV:-}" = 1 ]; then profile=(--dev); fi
cargo +nightly fuzz build "${profile[@]}"
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    limit=(-max_total_time="$seconds")
    if [ -n "${RUNS:-}" ]; then limit=(-runs="$RUNS"); fi
    echo "fuzz: $t (${RUNS:-${seconds} s})" >&2
    cargo +nightly fuzz run "${profile[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        "${limit[@]}" -rss_limit_mb=512 -malloc_limit_mb=512 -timeout=10 \
        -print_final_stats=1 2>&1 | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|ERROR|panicked|SUMMARY|Test unit written" || true
    if compgen -G "artifacts/$t/*" >/dev/null; then
        echo "fuzz: $t found a failing input: fuzz/artifacts/$t" >&2
        exit 1
    fi
done
