#!/usr/bin/env bash
# Regenerate the README screenshots (docs/img/) with the tool itself on sample_images/:
# one overlay and the top of the HTML report (headless Chromium for the report).
# Usage: bash scripts/readme_screenshots.sh [WORK_DIR]   (needs chromium on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-$(mktemp -d)}"
[ -f "$work/out/study.sqlite" ] || ulcerseg measure sample_images -o "$work/out" --no-progress || [ $? -eq 1 ]
ulcerseg review report "$work/out" -o "$work/report.html" --no-progress --allow-pending
mkdir -p docs/img
python - "$work" <<'PY'
import sys
from pathlib import Path

from PIL import Image

work = Path(sys.argv[1])
overlay = sorted((work / "out" / "overlays").glob("S001_U1_D0_*.png"))[0]
img = Image.open(overlay).convert("RGB")  # full size: the header stays readable
img = img.quantize(colors=256, method=Image.Quantize.FASTOCTREE)  # < 300 KB
img.save("docs/img/overlay.png", optimize=True)
PY
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,3200 \
  --screenshot="$work/report_full.png" "file://$work/report.html" >/dev/null 2>&1
python - "$work" <<'PY'
import sys
from pathlib import Path

from PIL import Image

# the title, then the section of S002/U1 (the third ulcer: it heals at W8)
full = Image.open(Path(sys.argv[1]) / "report_full.png").convert("RGB")
title, section = full.crop((0, 0, 1000, 62)), full.crop((0, 1500, 1000, 2218))
img = Image.new("RGB", (1000, title.height + section.height), "white")
img.paste(title, (0, 0))
img.paste(section, (0, title.height))
img = img.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
img.save("docs/img/report.png", optimize=True)
PY
ls -l docs/img/
