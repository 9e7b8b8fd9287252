#!/usr/bin/env bash
# Prepare, on this (CPU) machine, what scripts/device_train.sh carries to a lent GPU machine:
#   .whl/      wheels for the device's Python 3.12 of the training packages its image lacks
#              (segmentation-models-pytorch, albumentations and their needs), at the versions
#              this checkout's venv runs, so that the GPU run trains what the CPU tests test;
#   .devdata/  the training data: FUSeg re-encoded as WebP q85 (same stems, masks unchanged),
#              so that it travels under the device's 64 MiB limit.
# Both are git-ignored. Usage: bash scripts/device_prepare.sh [FUSEG_DIR] (default
# ../shared/datasets/fuseg-train); needs .venv (scripts/test.sh makes it) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
fuseg="${1:-../shared/datasets/fuseg-train}"
py=.venv/bin/python
[ -x "$py" ] || { echo "device_prepare: no .venv here (run scripts/test.sh first)" >&2; exit 2; }
[ -d "$fuseg/images" ] || { echo "device_prepare: $fuseg: no images/ folder" >&2; exit 2; }

# the device image (device README, KINDS.md) has torch, timm, opencv, scipy, pyyaml, ...:
# these are what it lacks, pinned to the versions installed here
packages=(segmentation-models-pytorch albumentations albucore pydantic pydantic-core annotated-types
    typing-inspection stringzilla simsimd roifile)
pins=$("$py" - "${packages[@]}" <<'PY'
import sys
from importlib.metadata import version

print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))
PY
)
rm -rf .whl && mkdir -p .whl
for pin in $pins; do
    "$py" -m pip download -q --no-deps --no-cache-dir --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$pin"
done

rm -rf .devdata/fuseg-train && mkdir -p .devdata/fuseg-train/images
cp -r "$fuseg/masks" .devdata/fuseg-train/masks
"$py" - "$fuseg/images" .devdata/fuseg-train/images <<'PY'
import sys
from pathlib import Path

import cv2

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
n = 0
for path in sorted(src.iterdir()):
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        sys.exit(f"device_prepare: {path}: not a readable image")
    cv2.imwrite(str(dst / f"{path.stem}.webp"), image, [cv2.IMWRITE_WEBP_QUALITY, 85])
    n += 1
print(f"device_prepare: {n} images re-encoded as WebP q85")
PY
ls .whl
du -sh .whl .devdata
echo "device_prepare: carry .whl and .devdata in the first device call (scripts/device_train.sh start)"
