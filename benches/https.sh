#!/usr/bin/env bash
# Figure 2 over TLS (SPEC §10, §12): rally-tui's Http.request against nginx with TLS on loopback,
# side by side in one run with the usual tool for each case:
#   1. HTTPS/1.1 keep-alive, 50 connections: rally-tui (`verify:` the bench's CA) against
#      `wrk -t1 -c50` (and `oha -c 50 --insecure` with OHA=1).
#   2. HTTP/2 over TLS, 4 connections x 50 streams: rally-tui (`http2: true`, `connections: 4`,
#      concurrency 200) against `h2load -c 4 -m 50` (and `oha --http2 -c 4 -p 50` with OHA=1,
#      if that oha has those flags). A rally-tui that does not accept `http2:` yet gets "n/a"
#      with the first line of its error instead of a figure; the rest still runs.
#   3. Handshake-bound, a new TLS connection per request, 50 at a time: nginx closes every
#      connection after one request (keepalive_requests 1) and the clients send
#      `Connection: close`: rally-tui against `wrk -t1 -c50 -H 'Connection: close'`. Printed
#      too: the share of connections that resumed a TLS session, as rally-tui's summary
#      counts them and as nginx logged them (`$ssl_session_reused`) for each generator.
# The certificates are made for the run with the openssl CLI (EC P-256): a CA and a server
# certificate for 127.0.0.1 it signs. rally-tui checks the server against that CA; wrk, h2load
# and oha check nothing (wrk and h2load cannot; oha is told --insecure).
# nginx runs one worker pinned to CPU $SERVER_CPU (0); every generator is pinned to CPU $GEN_CPU
# (1) with taskset. For each generator: requests/s, and requests per CPU-second of the generator
# (user + system time of the whole process from start to exit, from /usr/bin/time; for rally-tui
# that includes recording every iteration into SQLite). "server busy" is nginx's CPU time over
# the wall time of the run: near 100% means nginx, not the generator, was the limit.
# Targets: rally-tui's requests per generator CPU-second >= wrk's (HTTPS/1.1) and >= h2load's
# (HTTP/2).
# Installs what is missing: wrk, nginx, h2load (nghttp2-client) and openssl (apt-get).
#
#   benches/https.sh              # 10 s per generator, median of 3 interleaved rounds (~3 min)
#   OHA=1 benches/https.sh        # the same with oha (cargo install oha the first time)
#   QUICK=1 benches/https.sh      # 2 s each, one round (CI)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

seconds=10; conns=50; h2_conns=4; h2_streams=50; rounds=3
if [[ $quick == 1 ]]; then seconds=2; rounds=1; fi
h2_slots=$((h2_conns * h2_streams))
need_time
need_wrk
need_h2load
oha=$(oha_bin)
oha_h2=0
if [[ -n $oha ]] && "$oha" --help 2>&1 | grep -q -- '--http2' && "$oha" --help 2>&1 | grep -qE '^ *-p[ ,]'; then
    oha_h2=1
fi
build
make_certs "$tmp/certs"
ca=$tmp/certs/ca.pem
start_nginx_tls "$tmp/certs/server.pem" "$tmp/certs/server.key"
server_cpu() { proc_cpu "$nginx_pid"; }

# `task FILE URL CONCURRENCY EXTRA`: a rally-tui task of one Http.request workload; EXTRA goes
# into the scenario's arguments.
task() {
    cat >"$1" <<TASK
version: 2
title: https bench
subtasks:
  - title: Http.request
    scenario: {Http.request: {url: "$2", verify: "$ca"$4}}
    runner: {constant_for_duration: {duration: $seconds, concurrency: $3}}
    sla: {failure_rate: {max: 0}}
TASK
}
task "$tmp/h1.yaml" "$tls_url" "$conns" ""
task "$tmp/h2.yaml" "$h2_url" "$h2_slots" ", http2: true, connections: $h2_conns"
task "$tmp/close.yaml" "$close_url" "$conns" ", headers: {Connection: close}"

cases=(h1 h2 close)
gens_h1=(rally-tui wrk)
gens_h2=(rally-tui h2load)
gens_close=(rally-tui wrk)
if [[ -n $oha ]]; then gens_h1+=(oha); fi
if [[ $oha_h2 == 1 ]]; then gens_h2+=(oha); fi
gens() { local v="gens_$1[@]"; echo "${!v}"; }

# `one CASE GEN ROUND`: appends "requests requests_per_s cpu_s server_busy" to $tmp/CASE.GEN
# (case close: then "opened full resumed" from rally-tui's summary, "0 0 0" for wrk, and
# "connections resumed" from nginx's log).
one() {
    local c=$1 g=$2 k=$3 out=$tmp/$1-$2-$3 s0 n rps url log0=0 extra=""
    case $c in h1) url=$tls_url ;; h2) url=$h2_url ;; close) url=$close_url ;; esac
    if [[ $c == h2 && $g == rally-tui && -f $tmp/rejected ]]; then return 0; fi
    if [[ $c == close ]]; then log0=$(wc -l <"$tls_log"); fi
    s0=$(server_cpu)
    case $g in
    wrk)
        local h=()
        if [[ $c == close ]]; then h=(-H 'Connection: close'); fi
        timed "$out.time" taskset -c "$GEN_CPU" wrk -t1 -c"$conns" -d"${seconds}s" "${h[@]}" "$url" >"$out.out"
        n=$(awk '/requests in/ { print $1 }' "$out.out")
        rps=$(awk '/Requests\/sec/ { print $2 }' "$out.out")
        if grep -q 'Non-2xx' "$out.out"; then echo "wrk got errors:" >&2; cat "$out.out" >&2; exit 1; fi
        if [[ $c == close ]]; then extra=" 0 0 0"; fi
        ;;
    h2load)
        timed "$out.time" taskset -c "$GEN_CPU" h2load -t1 -c"$h2_conns" -m"$h2_streams" -D"$seconds" "$url" >"$out.out"
        if ! grep -q '^Application protocol: h2$' "$out.out"; then echo "h2load did not speak HTTP/2:" >&2; cat "$out.out" >&2; exit 1; fi
        n=$(awk '/^requests:/ { print $8 }' "$out.out")
        rps=$(awk '/^finished in/ { print $4 }' "$out.out")
        ;;
    oha)
        local o=(-c "$conns")
        if [[ $c == h2 ]]; then o=(--http2 -c "$h2_conns" -p "$h2_streams"); fi
        timed "$out.time" taskset -c "$GEN_CPU" "$oha" --no-tui --insecure "${o[@]}" -z "${seconds}s" "$url" >"$out.out"
        rps=$(awk '/Requests\/sec:/ { print $2 }' "$out.out")
        n=$(awk '/\[200\]/ { print $2 }' "$out.out")
        ;;
    rally-tui)
        timed "$out.time" taskset -c "$GEN_CPU" "$bin" --db "$out.db" run "$tmp/$c.yaml" --no-tui >"$out.out" 2>&1 || true
        n=$(iterations "$out.out")
        rps=$(load_rate "$out.out")
        rm -f "$out.db"*
        if [[ -z $n && $c == h2 ]]; then
            # Not accepted (no http2 in this build, say): the first line that says something.
            grep -m1 -v '^[[:space:]]*$' "$out.out" | sed 's/^[[:space:]]*//' >"$tmp/rejected" || true
            [[ -s $tmp/rejected ]] || echo "exit without output" >"$tmp/rejected"
            return 0
        fi
        if [[ -z $n || $(failures "$out.out") != 0 ]]; then echo "rally-tui failed:" >&2; cat "$out.out" >&2; exit 1; fi
        if [[ $c == close ]]; then extra=" $(tls_connections "$out.out")"; fi
        ;;
    esac
    local busy
    busy=$(awk -v a="$s0" -v b="$(server_cpu)" -v w="$(wall_of "$out.time")" 'BEGIN { printf "%.0f", 100 * (b - a) / w }')
    if [[ $c == close ]]; then
        sleep 0.3 # the last connections' log lines
        tail -n +"$((log0 + 1))" "$tls_log" >"$out.log"
        extra+=" $(awk '{ n++; if ($1 == "r") r++ } END { print n + 0, r + 0 }' "$out.log")"
        awk '{ print $4, $5 }' "$out.log" | sort | uniq -c | sort -rn | awk 'NR == 1 { print $2, $3 }' >"$tmp/close.$g.tls"
    fi
    echo "$n $rps $(cpu_of "$out.time") $busy$extra" >>"$tmp/$c.$g"
}

for k in $(seq "$rounds"); do
    for c in "${cases[@]}"; do
        for g in $(gens "$c"); do
            if [[ $quick == 0 ]]; then wait_quiet 30; fi
            one "$c" "$g" "$k"
        done
    done
done

# Medians over the rounds of a case's generator: "rps per_cpu cpu busy".
med() {
    local f=$tmp/$1.$2
    echo "$(awk '{ print $2 }' "$f" | median) $(awk '{ printf "%.1f\n", $1 / $3 }' "$f" | median) $(awk '{ print $3 }' "$f" | median) $(awk '{ print $4 }' "$f" | median | xargs printf '%.0f')"
}
# Resumed share over all rounds: from rally-tui's summary (fields 5-7) or nginx's log (8-9).
# Prints "percent total".
resumed_client() { awk '{ o += $5; r += $7 } END { if (o) printf "%.1f %d\n", 100 * r / o, o; else print "- 0" }' "$tmp/close.$1"; }
resumed_nginx() { awk '{ o += $8; r += $9 } END { if (o) printf "%.1f %d\n", 100 * r / o, o; else print "- 0" }' "$tmp/close.$1"; }
share() { if [[ $1 == - ]]; then echo -; else echo "$1% of $(fmt "$2")"; fi; }

label() { # CASE GEN
    case $1.$2 in
    h1.rally-tui) echo "rally-tui Http.request, concurrency $conns, every iteration stored" ;;
    h1.wrk) echo "wrk -t1 -c$conns" ;;
    h1.oha) echo "oha $("$oha" --version | awk '{ print $2 }') -c $conns --no-tui --insecure" ;;
    h2.rally-tui) echo "rally-tui Http.request, http2: true, connections: $h2_conns, concurrency $h2_slots, every iteration stored" ;;
    h2.h2load) echo "h2load $(h2load --version | awk '{ print $2 }') -t1 -c $h2_conns -m $h2_streams" ;;
    h2.oha) echo "oha $("$oha" --version | awk '{ print $2 }') --http2 -c $h2_conns -p $h2_streams --no-tui --insecure" ;;
    close.rally-tui) echo "rally-tui Http.request, headers: {Connection: close}, concurrency $conns, every iteration stored" ;;
    close.wrk) echo "wrk -t1 -c$conns -H 'Connection: close'" ;;
    esac
}
# `table CASE PEER`: the rows of one case, ratios against PEER.
table() {
    local c=$1 peer=$2 p_rps p_per rps per cpu busy g
    read -r p_rps p_per _ _ < <(med "$c" "$peer")
    local head="| generator | requests/s | vs $peer | requests per generator CPU-second | vs $peer | generator CPU s | server busy |"
    local rule="|---|---:|---:|---:|---:|---:|---:|"
    if [[ $c == close ]]; then
        head+=" TLS resumed (generator's count) | TLS resumed (nginx's log) |"
        rule+="---:|---:|"
    fi
    echo "$head"
    echo "$rule"
    for g in $(gens "$c"); do
        if [[ ! -f $tmp/$c.$g ]]; then
            local why="did not run"
            if [[ $g == rally-tui && -f $tmp/rejected ]]; then why="rally-tui rejected the task: $(<"$tmp/rejected")"; fi
            echo "| $(label "$c" "$g") | n/a ($why) | | | | | |"
            continue
        fi
        read -r rps per cpu busy < <(med "$c" "$g")
        local row="| $(label "$c" "$g") | $(fmt "$rps") | $(ratio "$rps" "$p_rps") | $(fmt "$per") | $(ratio "$per" "$p_per") | $cpu | $busy% |"
        if [[ $c == close ]]; then
            local client="-"
            # shellcheck disable=SC2046 # "percent total": two arguments
            if [[ $g == rally-tui ]]; then client=$(share $(resumed_client "$g")); fi
            if [[ $client == "-" && $g == rally-tui ]]; then client="n/a (no Connections line in its summary)"; fi
            # shellcheck disable=SC2046
            row+=" $client | $(share $(resumed_nginx "$g")) |"
        fi
        echo "$row"
    done
}

machine
echo
echo "HTTPS: GET of a 100-byte file from nginx $("$(nginx_bin)" -v 2>&1 | sed 's/.*nginx\///') (1 worker, TLS with an EC P-256 certificate) on loopback,"
echo "${seconds} s per generator, median of $rounds interleaved round(s); nginx on CPU $SERVER_CPU, each generator on CPU $GEN_CPU (taskset)."
echo "rally-tui checks the certificate against the bench's CA; wrk, h2load and oha check nothing."
echo
echo "HTTPS/1.1, $conns keep-alive connections:"
echo
table h1 wrk
echo
echo "HTTP/2 over TLS, $h2_conns connections x $h2_streams streams:"
echo
table h2 h2load
if [[ -n $oha && $oha_h2 == 0 ]]; then echo "(oha left out of HTTP/2: its --help lists no --http2 and -p)"; fi
echo
echo "HTTPS/1.1, a new connection per request (nginx keepalive_requests 1, clients send Connection: close), $conns at a time:"
echo
table close wrk
echo
for g in $(gens close); do
    if [[ -s $tmp/close.$g.tls ]]; then echo "TLS that nginx logged most for $g: $(<"$tmp/close.$g.tls")"; fi
done

# The rows of benches/all.sh's table.
read -r w_rps w_per _ _ < <(med h1 wrk)
read -r o_rps o_per _ _ < <(med h1 rally-tui)
summary "2. HTTPS/1.1, $conns connections, requests per generator CPU-second" "$(fmt "$o_per")" "wrk: $(fmt "$w_per")" "$(ratio "$o_per" "$w_per")" ">= wrk" "$(met "$o_per" "$w_per")"
summary "2. HTTPS/1.1, $conns connections, requests/s" "$(fmt "$o_rps")" "wrk: $(fmt "$w_rps")" "$(ratio "$o_rps" "$w_rps")" "-" "-"
read -r h_rps h_per _ _ < <(med h2 h2load)
if [[ -f $tmp/h2.rally-tui ]]; then
    read -r o2_rps o2_per _ _ < <(med h2 rally-tui)
    summary "2. HTTP/2, $h2_conns connections x $h2_streams streams, requests per generator CPU-second" "$(fmt "$o2_per")" "h2load: $(fmt "$h_per")" "$(ratio "$o2_per" "$h_per")" ">= h2load" "$(met "$o2_per" "$h_per")"
    summary "2. HTTP/2, $h2_conns connections x $h2_streams streams, requests/s" "$(fmt "$o2_rps")" "h2load: $(fmt "$h_rps")" "$(ratio "$o2_rps" "$h_rps")" "-" "-"
else
    summary "2. HTTP/2, $h2_conns connections x $h2_streams streams, requests per generator CPU-second" "n/a" "h2load: $(fmt "$h_per")" "-" ">= h2load" "n/a"
fi
read -r wc_rps wc_per _ _ < <(med close wrk)
read -r oc_rps oc_per _ _ < <(med close rally-tui)
summary "2. HTTPS, new connection per request: requests/s; per CPU-second" "$(fmt "$oc_rps"); $(fmt "$oc_per")" "wrk: $(fmt "$wc_rps"); $(fmt "$wc_per")" "$(ratio "$oc_rps" "$wc_rps"); $(ratio "$oc_per" "$wc_per")" "-" "-"
summary "2. HTTPS, new connection per request: TLS sessions resumed (nginx's log)" "$(resumed_nginx rally-tui | awk '{ print $1 "%" }')" "wrk: $(resumed_nginx wrk | awk '{ print $1 "%" }')" "-" "-" "-"
if [[ -f $tmp/h1.oha ]]; then
    read -r rps per _ _ < <(med h1 oha)
    summary "2. HTTPS/1.1 vs oha: requests/s; per CPU-second" "$(fmt "$o_rps"); $(fmt "$o_per")" "$(fmt "$rps"); $(fmt "$per")" "$(ratio "$o_rps" "$rps"); $(ratio "$o_per" "$per")" "-" "-"
fi
if [[ -f $tmp/h2.oha && -f $tmp/h2.rally-tui ]]; then
    read -r rps per _ _ < <(med h2 oha)
    summary "2. HTTP/2 vs oha: requests/s; per CPU-second" "$(fmt "$o2_rps"); $(fmt "$o2_per")" "$(fmt "$rps"); $(fmt "$per")" "$(ratio "$o2_rps" "$rps"); $(ratio "$o2_per" "$per")" "-" "-"
fi
