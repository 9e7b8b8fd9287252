"""Write the HEIC test photos in ``tests/data/`` (run once; the files are committed).

ulcerseg decodes HEIC with ``pi-heif`` (decoding only); encoding needs ``pillow-heif``, which
the tests do not install. Run with a Python that has pillow-heif, numpy, OpenCV, PyYAML,
pytest and ulcerseg's other imports:

    PYTHONPATH=.:tests python scripts/make_heic_fixtures.py

The photo is ``make_photo(tilt_deg=30, ulcer_radius_mm=(2.5, 1.8), px_per_mm=14,
size=(800, 600))`` from ``tests/conftest.py``; ``tests/test_heic.py`` renders it again and
compares. ``photo_rot90.heic`` stores it turned a quarter to the left with EXIF orientation 6,
which pillow-heif writes as the HEIF rotation box (``irot``), as phones do, and the EXIF date
2026-03-04.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pillow_heif
from conftest import make_photo
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "tests" / "data"


def main() -> None:
    pillow_heif.register_heif_opener()
    OUT.mkdir(parents=True, exist_ok=True)
    upright = make_photo(tilt_deg=30, ulcer_radius_mm=(2.5, 1.8), px_per_mm=14, size=(800, 600)).rgb
    Image.fromarray(upright).save(OUT / "photo.heic", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90° clockwise: the stored pixels are turned anticlockwise
    exif.get_ifd(0x8769)[36867] = "2026:03:04 09:15:00"  # DateTimeOriginal
    stored = np.ascontiguousarray(np.rot90(upright, k=1))
    Image.fromarray(stored).save(OUT / "photo_rot90.heic", quality=90, exif=exif.tobytes())
    for name in ("photo.heic", "photo_rot90.heic"):
        print(name, (OUT / name).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
