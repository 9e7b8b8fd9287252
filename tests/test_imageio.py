import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ulcerseg.errors import ImageReadError
from ulcerseg.imageio import decode_rgb, inspect_photo


def _jpeg_with_exif(orientation: int, date: str | None) -> bytes:
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :50] = 255  # left quarter white
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = orientation
    if date:
        exif.get_ifd(0x8769)[36867] = date
    buf = io.BytesIO()
    pil.save(buf, "JPEG", exif=exif, quality=95)
    return buf.getvalue()


def test_exif_orientation_and_date_are_honoured() -> None:
    data = _jpeg_with_exif(6, "2026:03:04 09:15:00")  # 6 = rotate 90° clockwise
    info = inspect_photo(Path("p.jpg"), data)
    assert (info.width, info.height) == (100, 200)
    assert info.photo_date == "2026-03-04"
    rgb = decode_rgb(Path("p.jpg"), data)
    assert rgb.shape == (200, 100, 3)
    assert rgb[:40, :, 0].mean() > 200  # the white quarter is now on top
    assert rgb[-40:, :, 0].mean() < 50


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"this is a text file, not a photo\n" * 10, "not a readable image"),
    ],
)
def test_bad_bytes_are_rejected_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageReadError, match=reason) as info:
        inspect_photo(Path("S1/D0/x.jpg"), data)
    assert "S1/D0/x.jpg" in str(info.value)


def test_truncated_jpeg_is_detected() -> None:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    with pytest.raises(ImageReadError, match="truncated"):
        inspect_photo(Path("t.jpg"), data[: len(data) // 2])


def test_grayscale_png_is_reported() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(buf, "PNG")
    assert inspect_photo(Path("g.png"), buf.getvalue()).is_grayscale
    buf = io.BytesIO()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(buf, "PNG")
    assert not inspect_photo(Path("c.png"), buf.getvalue()).is_grayscale
