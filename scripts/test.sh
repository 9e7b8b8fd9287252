#!/usr/bin/env bash
# Install ulcerseg with its test tools, then run the whole test suite (CPU only).
# The browser test of the review app needs Chromium from the distribution's packages
# (test tools must not download browsers of their own).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
fi
python3 -m pip install -q -e ".[dev]"
ruff check ulcerseg tests scripts
exec python3 -m pytest "$@"
