#!/usr/bin/env bash
# The README's test command: install what the tests need and a fresh Debian machine with Rust
# lacks, say what is installed, then run `cargo test` (arguments are passed on to it).
#
#   scripts/test.sh                    # everything
#   scripts/test.sh --test e2e tui     # any cargo test arguments
#   NO_INSTALL=1 scripts/test.sh       # install nothing; tests that need a missing tool fail
#                                      # with the command that installs it
#
# What the tests run for real, and where it comes from:
#   nginx          HTTP scenarios against a real server         Debian: nginx-light
#   tmux           the terminal UI in a real terminal           Debian: tmux
#   sshd, ssh      SSH clusters against a real sshd on loopback Debian: openssh-server
#   ip             network partitions (namespaces, veth)      Debian: iproute2
#   prlimit        a controller under a small descriptor limit Debian: util-linux
#   mount          an agent's cache on a small tmpfs that fills  Debian: mount
#   openssl        certificates for the HTTPS tests             Debian: openssl
#   tinyproxy      `proxies` through a real HTTP proxy          Debian: tinyproxy-bin
#   prometheus     scraping a real run's --metrics-listen       Debian: prometheus
#   prometheus_client  parsing /metrics as Prometheus's own     Debian: python3-prometheus-client
#                  Python client does (for /usr/bin/python3)
#   rally          interoperability with OpenStack Rally 5.1.1  pip: target/rally-venv
#
# When everything is there it installs nothing and prints nothing before cargo's own output.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each entry: a file or command that must exist, and the Debian package that brings it.
# Paths are checked as files because sbin is not on every user's PATH.
needs=(
    "/usr/sbin/nginx nginx-light"
    "tmux tmux"
    "/usr/sbin/sshd openssh-server"
    "ssh openssh-client"
    "ssh-keygen openssh-client"
    "ip iproute2"
    "prlimit util-linux"
    "mount mount"
    "openssl openssl"
    "tinyproxy tinyproxy-bin"
    "/usr/bin/prometheus prometheus"
    # A directory: present when searchable (-x), i.e. installed.
    "/usr/lib/python3/dist-packages/prometheus_client python3-prometheus-client"
)

present() {
    case "$1" in
    /*) [ -x "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
    esac
}

missing=()
for entry in "${needs[@]}"; do
    read -r what package <<<"$entry"
    if ! present "$what"; then
        case " ${missing[*]-} " in
        *" $package "*) ;;
        *) missing+=("$package") ;;
        esac
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "${NO_INSTALL:-}" = 1 ]; then
        echo "scripts/test.sh: missing ${missing[*]} (NO_INSTALL=1: not installing)" >&2
    else
        echo "scripts/test.sh: installing ${missing[*]} (apt-get)" >&2
        sudo=()
        if [ "$(id -u)" != 0 ]; then
            if command -v sudo >/dev/null; then
                sudo=(sudo)
            else
                echo "scripts/test.sh: not root and no sudo: run as root, or" \
                    "apt-get install ${missing[*]}" >&2
                exit 1
            fi
        fi
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

# Real OpenStack Rally, for the interoperability tests (RALLY_VENV may point elsewhere).
if [ -z "${RALLY_VENV:-}" ]; then
    if [ "${NO_INSTALL:-}" != 1 ]; then
        scripts/rally-venv.sh
    fi
    export RALLY_VENV="$PWD/target/rally-venv"
fi

exec cargo test "$@"
