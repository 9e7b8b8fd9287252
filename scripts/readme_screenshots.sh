#!/usr/bin/env bash
# Regenerate the README screenshots (docs/img/) with the tool itself on sample_images/:
# one overlay and the top of the HTML report (headless Chromium for the report).
# Usage: bash scripts/readme_screenshots.sh [WORK_DIR]   (needs chromium on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d)}"
ulcerseg measure sample_images -o "$work/out" --no-progress || [ $? -eq 1 ]
ulcerseg review report "$work/out" -o "$work/report.html" --no-progress
mkdir -p docs/img
python - "$work" <<'PY'
import sys
from pathlib import Path

from PIL import Image

work = Path(sys.argv[1])
overlay = sorted((work / "out" / "overlays").glob("S001_U1_D0_*.png"))[0]
img = Image.open(overlay).convert("RGB")
img.thumbnail((520, 520))
img.save("docs/img/overlay.png", optimize=True)
PY
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,1100 \
  --screenshot="$work/report_full.png" "file://$work/report.html" >/dev/null 2>&1
python - "$work" <<'PY'
import sys
from pathlib import Path

from PIL import Image

img = Image.open(Path(sys.argv[1]) / "report_full.png").convert("RGB")
img = img.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
img.save("docs/img/report.png", optimize=True)
PY
ls -l docs/img/
