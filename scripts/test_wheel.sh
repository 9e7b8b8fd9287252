#!/usr/bin/env bash
# The wheel works anywhere: build it, install it (core tier only: no torch) into a fresh venv in
# a temporary folder, and measure two sample photos from another directory with the model and
# configs the wheel carries as package data. Usage: bash scripts/test_wheel.sh [PYTHON]
set -euo pipefail
export PIP_NO_CACHE_DIR=1  # nothing to keep: the venv is thrown away
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${1:-python3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$python" -m pip wheel --no-deps -q -w "$tmp/dist" "$repo"
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q "$tmp"/dist/ulcerseg-*.whl
if "$tmp/venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "test_wheel: the core install pulled in torch" >&2
    exit 1
fi

mkdir -p "$tmp/photos/S001/D0"
cp "$repo/sample_images/S001/D0/U1.jpg" "$repo/sample_images/S001/D0/U2.jpg" "$tmp/photos/S001/D0/"
cd "$tmp"  # nowhere near the checkout
"$tmp/venv/bin/ulcerseg" measure photos -o out
"$tmp/venv/bin/python" - <<'PY'
import csv

rows = list(csv.DictReader(open("out/measurements.csv", newline="")))
measured = [r for r in rows if r["status"] == "measured"]
assert len(measured) == 2, f"expected 2 measured photos, got {[(r['file'], r['status']) for r in rows]}"
# the bundled light coarse network was found and is current (else the run records "full")
import json

ran = json.load(open("out/run.json"))["config"]["segmentation"]
assert ran["coarse_network"] == "light" and ran["coarse_network_sha256"], ran
print(f"test_wheel: OK, wheel installed without torch measured {len(measured)} photos from {__import__('os').getcwd()}")
PY
