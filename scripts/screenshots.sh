#!/usr/bin/env bash
# Make the PNGs in screenshots/ from real runs.
#
#   scripts/screenshots.sh [report|tui|all]      (default: all)
#
# report: the HTML report of the bundled sample, rendered by headless Chromium (Debian's
#         `chromium` package; installed when missing).
# tui:    the terminal UI of a real distributed run: 4 local agent processes put an HTTP
#         service stand-in under load (a small Python server whose latency and error rate
#         worsen on SIGUSR1). rally-tui runs in a detached 160x48 tmux session; each picture
#         is `tmux capture-pane -e -p` (the screen with its colours), turned into SVG by the
#         converter below and into PNG by rsvg-convert (Debian's `librsvg2-bin`). Pictures:
#         tui-running.png, tui-light.png (the same moment after `t`), tui-sla-failing.png
#         (after the service degraded), tui-lost-agent.png (one agent killed with SIGKILL).
#
# RALLY_TUI_BIN=path uses that binary instead of building target/release/rally-tui.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
case $what in report | tui | all) ;; *)
    echo "usage: $0 [report|tui|all]" >&2
    exit 64
    ;;
esac

# Installs Debian package $2 when command $1 is missing.
need() {
    command -v "$1" >/dev/null && return
    apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
}

if [ -n "${RALLY_TUI_BIN:-}" ]; then
    bin=$(realpath "$RALLY_TUI_BIN")
else
    cargo build --release --quiet
    bin=$PWD/target/release/rally-tui
fi
tmp=$(mktemp -d)
sessions=()
service_pid=
cleanup() {
    for s in "${sessions[@]}"; do tmux kill-session -t "$s" 2>/dev/null || true; done
    if [ -n "$service_pid" ]; then kill "$service_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

report() {
    need chromium chromium
    "$bin" --db "$tmp/report.db" run samples/quickstart.yaml --no-tui --task-args '{times: 100000}' >/dev/null || true
    "$bin" --db "$tmp/report.db" task report last --out "$tmp/report.html"
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$tmp/profile" --hide-scrollbars \
        --window-size=1400,2400 --screenshot=screenshots/report.png "file://$tmp/report.html" 2>/dev/null
    echo "wrote screenshots/report.png"
}

# --- the TUI -------------------------------------------------------------------------------

COLS=160
ROWS=48

write_helpers() {
    # The service under test: keep-alive HTTP/1.1, log-normal latency, random 500s; SIGUSR1
    # makes it slower and more error-prone, as a service past its capacity. It writes the
    # port it got to $1.
    cat >"$tmp/service.py" <<'PY'
import math, random, signal, socketserver, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

state = {"median": 0.018, "errors": 0.004}

def degrade(*_):
    state.update(median=0.075, errors=0.06)

signal.signal(signal.SIGUSR1, degrade)

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        time.sleep(min(2.0, state["median"] * math.exp(random.gauss(0, 0.45))))
        ok = random.random() >= state["errors"]
        body = b"ok\n" if ok else b"overloaded\n"
        self.send_response(200 if ok else 500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass

class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, *_):
        pass  # a client that went away (a stopped or killed agent) is no news

server = Server(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
PY

    # ANSI screen to SVG, one cell per character. Box drawing, block elements and Braille
    # are drawn as shapes, so borders join and graphs look as in a terminal whatever the font.
    cat >"$tmp/ansi2svg.py" <<'PY'
import html, re, sys

COLS, ROWS, BACKGROUND, TITLE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
CW, CH, FS, PAD, BAR = 8.4, 18.0, 14.0, 14.0, 30.0
SCHEMES = {
    "dark": {"bg": "#14161b", "fg": "#d4d4d4", "frame": "#2b2f38", "bar": "#23262e", "title": "#9aa0ab"},
    "light": {"bg": "#ffffff", "fg": "#1e1e1e", "frame": "#c9ccd3", "bar": "#e8eaee", "title": "#555b66"},
}
SCHEME = SCHEMES[BACKGROUND]
# The 16 ANSI colours (the names themes use), as a modern terminal shows them.
PALETTE = ["#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
           "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff"]

def xterm256(n):
    if n < 16:
        return PALETTE[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return "#%02x%02x%02x" % (steps[n // 36], steps[n // 6 % 6], steps[n % 6])
    v = 8 + 10 * (n - 232)
    return "#%02x%02x%02x" % (v, v, v)

class Pen:
    def __init__(self):
        self.reset()

    def reset(self):
        self.fg = self.bg = None
        self.bold = self.reverse = False

    def sgr(self, params):
        codes = [int(p) if p else 0 for p in params.split(";")] if params else [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0: self.reset()
            elif c == 1: self.bold = True
            elif c == 22: self.bold = False
            elif c == 7: self.reverse = True
            elif c == 27: self.reverse = False
            elif 30 <= c <= 37: self.fg = PALETTE[c - 30]
            elif 90 <= c <= 97: self.fg = PALETTE[c - 82]
            elif 40 <= c <= 47: self.bg = PALETTE[c - 40]
            elif 100 <= c <= 107: self.bg = PALETTE[c - 92]
            elif c == 39: self.fg = None
            elif c == 49: self.bg = None
            elif c in (38, 48) and i + 1 < len(codes):
                colour = None
                if codes[i + 1] == 5 and i + 2 < len(codes):
                    colour = xterm256(codes[i + 2]); i += 2
                elif codes[i + 1] == 2 and i + 4 < len(codes):
                    colour = "#%02x%02x%02x" % tuple(codes[i + 2:i + 5]); i += 4
                if c == 38: self.fg = colour
                else: self.bg = colour
            i += 1

    def colours(self):
        fg, bg = self.fg or SCHEME["fg"], self.bg or SCHEME["bg"]
        return (bg, fg) if self.reverse else (fg, bg)

def parse(text):
    pen, rows = Pen(), []
    for line in text.split("\n")[:ROWS]:
        cells = []
        for token in re.split(r"(\x1b\[[0-9;]*m)", line):
            if token.startswith("\x1b["):
                pen.sgr(token[2:-1])
                continue
            for ch in token:
                fg, bg = pen.colours()
                cells.append((ch, fg, bg, pen.bold))
        rows.append(cells[:COLS])
    return rows + [[]] * (ROWS - len(rows))

# Box drawing: the arms going out from the cell's centre (up, right, down, left).
BOX = {"─": "0101", "│": "1010", "┌": "0110", "┐": "0011", "└": "1100", "┘": "1001",
       "├": "1110", "┤": "1011", "┬": "0111", "┴": "1101", "┼": "1111"}
BRAILLE = [(0, 0, 0x01), (0, 1, 0x02), (0, 2, 0x04), (1, 0, 0x08),
           (1, 1, 0x10), (1, 2, 0x20), (0, 3, 0x40), (1, 3, 0x80)]

def shape(ch, x, y, fg, out):
    o, cx, cy = ord(ch), x + CW / 2, y + CH / 2
    if ch in BOX:
        up, right, down, left = (a == "1" for a in BOX[ch])
        for on, (a, b, c, d) in [(up, (cx, y, cx, cy)), (down, (cx, cy, cx, y + CH)),
                                 (left, (x, cy, cx, cy)), (right, (cx, cy, x + CW, cy))]:
            if on:
                out.append(f'<line x1="{a:.2f}" y1="{b:.2f}" x2="{c:.2f}" y2="{d:.2f}" stroke="{fg}" stroke-width="1.1" stroke-linecap="square"/>')
    elif ch == "━":
        out.append(f'<rect x="{x:.2f}" y="{cy - 1.2:.2f}" width="{CW:.2f}" height="2.4" fill="{fg}"/>')
    elif ch == "┄":
        for k in range(3):
            out.append(f'<rect x="{x + k * CW / 3 + 0.6:.2f}" y="{cy - 0.6:.2f}" width="{CW / 3 - 1.2:.2f}" height="1.2" fill="{fg}"/>')
    elif 0x2581 <= o <= 0x2588:  # lower eighths (sparklines)
        h = CH * (o - 0x2580) / 8
        out.append(f'<rect x="{x:.2f}" y="{y + CH - h:.2f}" width="{CW + 0.05:.2f}" height="{h + 0.05:.2f}" fill="{fg}"/>')
    elif 0x2589 <= o <= 0x258F:  # left eighths (the gauge's edge)
        out.append(f'<rect x="{x:.2f}" y="{y:.2f}" width="{CW * (0x2590 - o) / 8:.2f}" height="{CH + 0.05:.2f}" fill="{fg}"/>')
    elif 0x2800 <= o <= 0x28FF:  # Braille: 2 x 4 dots (the charts)
        for col, row, bit in BRAILLE:
            if (o - 0x2800) & bit:
                out.append(f'<circle cx="{x + CW * (0.28 + 0.44 * col):.2f}" cy="{y + CH * (0.14 + 0.24 * row):.2f}" r="1.3" fill="{fg}"/>')
    else:
        return False
    return True

def svg(rows):
    w, h = COLS * CW + 2 * PAD, ROWS * CH + 2 * PAD + BAR
    ox, oy = PAD, BAR + PAD / 2
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" viewBox="0 0 {w:.2f} {h:.2f}">',
           f'<rect width="100%" height="100%" rx="9" fill="{SCHEME["frame"]}"/>',
           f'<rect x="1" y="1" width="{w - 2:.2f}" height="{BAR:.2f}" rx="8" fill="{SCHEME["bar"]}"/>']
    for k, colour in enumerate(["#ff5f57", "#febc2e", "#28c840"]):
        out.append(f'<circle cx="{18 + 20 * k}" cy="{BAR / 2 + 1:.1f}" r="6" fill="{colour}"/>')
    out.append(f'<text x="{w / 2:.1f}" y="{BAR / 2 + 5:.1f}" text-anchor="middle" font-family="DejaVu Sans" '
               f'font-size="13" fill="{SCHEME["title"]}">{html.escape(TITLE)}</text>')
    out.append(f'<rect x="{ox - 4:.2f}" y="{oy - 4:.2f}" width="{COLS * CW + 8:.2f}" height="{ROWS * CH + 8:.2f}" fill="{SCHEME["bg"]}"/>')
    out.append(f'<g font-family="DejaVu Sans Mono" font-size="{FS}">')
    for r, cells in enumerate(rows):
        y, c = oy + r * CH, 0
        while c < len(cells):  # runs of one background
            bg, start = cells[c][2], c
            while c < len(cells) and cells[c][2] == bg:
                c += 1
            if bg != SCHEME["bg"]:
                out.append(f'<rect x="{ox + start * CW:.2f}" y="{y:.2f}" width="{(c - start) * CW + 0.05:.2f}" height="{CH + 0.05:.2f}" fill="{bg}"/>')
        for c, (ch, fg, _, bold) in enumerate(cells):
            x = ox + c * CW
            if ch == " " or shape(ch, x, y, fg, out):
                continue
            weight = ' font-weight="bold"' if bold else ""
            out.append(f'<text x="{x:.2f}" y="{y + CH * 0.74:.2f}" fill="{fg}"{weight}>{html.escape(ch)}</text>')
    out.append("</g></svg>")
    return "\n".join(out)

print(svg(parse(sys.stdin.read())))
PY

    cat >"$tmp/checkout.yaml" <<'YAML'
---
version: 2
title: "checkout API under load"
subtasks:
  - title: "checkout"
    scenario:
      Http.request:
        url: "{{ url }}"
        timeout: 5
    runner:
      rps:
        times: 200000
        rps: {start: 40, end: 240, step: 40, duration: 4}
    sla:
      failure_rate: {max: 2}
      max_percentile: {p95: 0.1}
      max_avg_duration: 0.06
YAML
}

# Starts rally-tui in a new detached session $1 (named after this script's pid, so no
# session of the user's is touched).
start_run() {
    local cmd="$bin --db $tmp/$1.db run $tmp/checkout.yaml --log-file $tmp/$1.log"
    cmd+=" --agents 4 --task-args '{url: \"http://127.0.0.1:$port/checkout\"}'; sleep 600"
    tmux new-session -d -s "$1" -x "$COLS" -y "$ROWS" "$cmd"
    sessions+=("$1")
}

# Waits up to $3 seconds for text $2 on session $1's screen.
wait_for() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        tmux capture-pane -p -t "$1" | grep -qF -- "$2" && return
        sleep 0.1
    done
    echo "timed out waiting for '$2' on $1:" >&2
    tmux capture-pane -p -t "$1" >&2
    exit 1
}

# Session $1's screen as screenshots/$2.png, on a $3 (dark|light) terminal background.
shoot() {
    tmux capture-pane -e -p -t "$1" >"$tmp/$2.ans"
    python3 "$tmp/ansi2svg.py" "$COLS" "$ROWS" "$3" \
        "rally-tui run checkout.yaml --agents 4 — ${COLS}×${ROWS}" <"$tmp/$2.ans" >"$tmp/$2.svg"
    rsvg-convert -z 1.25 "$tmp/$2.svg" -o "screenshots/$2.png"
    echo "wrote screenshots/$2.png"
}

# Stops session $1's run with s, y and leaves with q once it is over.
stop_run() {
    tmux send-keys -t "$1" s
    wait_for "$1" "Stop the run" 5
    tmux send-keys -t "$1" y
    wait_for "$1" "ABORTED" 30
    tmux send-keys -t "$1" q
}

tui() {
    need tmux tmux
    need rsvg-convert librsvg2-bin
    write_helpers
    python3 "$tmp/service.py" "$tmp/port" &
    service_pid=$!
    for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
    port=$(cat "$tmp/port")

    # A healthy run: the ramp, then steady load; the same moment in the light theme; then
    # the service degrades and the SLA fails live.
    local healthy=rally-tui-shots-$$-healthy lossy=rally-tui-shots-$$-lossy
    start_run "$healthy"
    wait_for "$healthy" "agents 4/4" 30
    sleep 32
    shoot "$healthy" tui-running dark
    tmux send-keys -t "$healthy" t
    sleep 0.5
    shoot "$healthy" tui-light light
    tmux send-keys -t "$healthy" t t
    kill -USR1 "$service_pid"
    wait_for "$healthy" "SLA 3 FAIL" 90
    sleep 6
    shoot "$healthy" tui-sla-failing dark
    stop_run "$healthy"

    # A fresh service, and a run that loses one agent: SIGKILL to the process of local-3
    # (found by its arguments, which name this run's directory), selected in the table.
    kill "$service_pid"
    python3 "$tmp/service.py" "$tmp/port2" &
    service_pid=$!
    for _ in $(seq 50); do [ -s "$tmp/port2" ] && break; sleep 0.1; done
    port=$(cat "$tmp/port2")
    start_run "$lossy"
    wait_for "$lossy" "agents 4/4" 30
    sleep 16
    local victim
    victim=$(pgrep -f -- "agent .*--name local-3 --cache-dir $tmp/" | head -1)
    kill -9 "$victim"
    tmux send-keys -t "$lossy" Down Down
    wait_for "$lossy" "agents 3/4" 15
    sleep 8
    shoot "$lossy" tui-lost-agent dark
    stop_run "$lossy"
}

case $what in
report) report ;;
tui) tui ;;
all)
    report
    tui
    ;;
esac
