#!/usr/bin/env bash
# Install ulcerseg (core + [train] + [dev] tiers) into the repository's own venv (.venv, made
# when missing: a stock Debian/Ubuntu Python refuses system-wide pip installs, PEP 668), then
# lint, type-check, check that the built wheel measures anywhere, then run the whole test suite
# (CPU only).
# The browser test of the review app needs Chromium from the distribution's packages
# (test tools must not download browsers of their own).
set -euo pipefail
cd "$(dirname "$0")/.."
# the [train] tier's CUDA torch brings ~3 GB of wheels: a pip cache would keep a second copy of
# them on a disk that must also hold the venv (6.5 GB) and the wheel check's core venv
export PIP_NO_CACHE_DIR=1
free_kb=$(df -Pk . | awk 'NR == 2 {print $4}')
if [ "${free_kb:-0}" -lt 8000000 ]; then
    echo "scripts/test.sh: warning: $((free_kb / 1024)) MB free here; the venvs need about 8 GB" >&2
fi
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv >/dev/null 2>&1; then
        # Debian/Ubuntu ship venv's pip bootstrap separately (python3-venv)
        rm -rf .venv
        if command -v apt-get >/dev/null 2>&1; then
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv) >/dev/null
        fi
        python3 -m venv .venv
    fi
fi
py=.venv/bin/python
"$py" -m pip install -q -e ".[train,dev]"
"$py" -m ruff check ulcerseg tests scripts
"$py" -m mypy
bash scripts/test_wheel.sh "$py"
# last, so that the test runner's summary line closes the output
"$py" -m pytest "$@"
