#!/usr/bin/env bash
# Make the PNGs in screenshots/ from a real run of the bundled sample: the HTML report,
# rendered by headless Chromium (Debian's `chromium` package; installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
cargo build --release --quiet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

bin=target/release/rally-tui
"$bin" --db "$tmp/tasks.db" run samples/quickstart.yaml --no-tui --task-args '{times: 100000}' >/dev/null || true
"$bin" --db "$tmp/tasks.db" task report last --out "$tmp/report.html"

shot() {
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$tmp/profile" --hide-scrollbars \
        --window-size="$2" --screenshot="$1" "file://$tmp/report.html" 2>/dev/null
}
shot screenshots/report.png 1400,2400
echo "wrote screenshots/report.png"
