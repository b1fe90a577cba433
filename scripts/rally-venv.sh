#!/usr/bin/env bash
# Install real OpenStack Rally 5.1.1 into target/rally-venv (once), for the interoperability
# tests and the benchmark against Rally. Prints nothing when it is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x target/rally-venv/bin/rally ]; then
    echo "installing OpenStack Rally 5.1.1 into target/rally-venv (pip, about a minute)" >&2
    if ! python3 -c "import ensurepip" 2>/dev/null; then
        echo "installing python3-venv (apt-get)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq python3-venv >/dev/null
    fi
    rm -rf target/rally-venv
    python3 -m venv target/rally-venv
    target/rally-venv/bin/pip install -q --disable-pip-version-check rally==5.1.1
fi
