"""HEIC/HEIF (what iPhones save) and AVIF photos: decoded upright, measured like a JPEG.

``tests/data/photo.heic`` and ``photo_rot90.heic`` hold ``make_photo(tilt_deg=30,
ulcer_radius_mm=(2.5, 1.8), px_per_mm=14, size=(800, 600))``; the second stored turned a
quarter to the left with the HEIF rotation box and an EXIF date (``scripts/make_heic_fixtures.py``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from conftest import RednessBackend, make_photo, write_jpeg
from PIL import Image

from ulcerseg import imageio
from ulcerseg.config import DiscoveryConfig, PipelineConfig
from ulcerseg.discover import discover
from ulcerseg.errors import ImageReadError
from ulcerseg.imageio import decode_rgb, image_size, inspect_photo
from ulcerseg.pipeline import measure_study

DATA = Path(__file__).resolve().parent / "data"
FIXTURES = ("photo.heic", "photo_rot90.heic")


def _reference():
    return make_photo(tilt_deg=30, ulcer_radius_mm=(2.5, 1.8), px_per_mm=14, size=(800, 600))


@pytest.mark.parametrize("name", FIXTURES)
def test_heic_decodes_upright_to_the_photo_it_holds(name: str) -> None:
    data = (DATA / name).read_bytes()
    assert data[4:12] == b"ftypheic"  # a real HEIC file, not a JPEG under another name
    info = inspect_photo(DATA / name, data)
    assert (info.width, info.height) == (800, 600) and not info.is_grayscale
    rgb = decode_rgb(DATA / name, data)
    assert rgb.shape == (600, 800, 3) and rgb.dtype == np.uint8
    ref = _reference().rgb.astype(np.int16)
    # lossy HEVC: small differences everywhere, none that turns the picture
    assert np.abs(rgb.astype(np.int16) - ref).mean() < 1.0
    turned = np.rot90(ref, 2)  # the same photo upside down differs grossly
    assert np.abs(rgb.astype(np.int16) - turned).mean() > 10
    assert image_size(DATA / name) == (800, 600)  # the header path (manual tracings) agrees


def test_heic_exif_date_is_the_photo_date() -> None:
    data = (DATA / "photo_rot90.heic").read_bytes()
    assert inspect_photo(DATA / "photo_rot90.heic", data).photo_date == "2026-03-04"
    assert inspect_photo(DATA / "photo.heic", (DATA / "photo.heic").read_bytes()).photo_date is None


@pytest.mark.parametrize("reduction", [2, 4])
def test_reduced_heic_decode_is_the_block_mean(reduction: int) -> None:
    """A reduced decode of a HEIC photo matches what JPEG's DCT scaling gives: each px the mean
    of an r x r block of photo px (the map geometry.reduced_to_photo assumes)."""
    data = (DATA / "photo.heic").read_bytes()
    full = decode_rgb(DATA / "photo.heic", data).astype(np.float64)
    small = decode_rgb(DATA / "photo.heic", data, reduction)
    assert small.shape == (600 // reduction, 800 // reduction, 3)
    r = reduction
    block = full[:r, :r].mean(axis=(0, 1)), full[5 * r : 6 * r, 7 * r : 8 * r].mean(axis=(0, 1))
    assert np.abs(small[0, 0] - block[0]).max() <= 1.0
    assert np.abs(small[5, 7] - block[1]).max() <= 1.0


@pytest.mark.parametrize("orientation", [1, 6, 3])
def test_avif_photo_decodes_upright(orientation: int) -> None:
    """Pillow's AVIF reader reports the container's rotation as the EXIF orientation and leaves
    the pixels as stored: turned upright here, as OpenCV turns a JPEG."""
    ref = make_photo().rgb
    stored = np.ascontiguousarray(np.rot90(ref, {1: 0, 6: 1, 3: 2}[orientation]))  # as a camera stores it
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, "AVIF", quality=95, exif=exif.tobytes())
    info = inspect_photo(Path("p.avif"), buf.getvalue())
    assert (info.width, info.height) == (640, 480)
    rgb = decode_rgb(Path("p.avif"), buf.getvalue())
    assert rgb.shape == ref.shape and np.abs(rgb.astype(np.int16) - ref).mean() < 2.0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (lambda d: d[: len(d) // 2], "corrupt"),  # cut short, as a copy interrupted
        (lambda d: d[:12] + b"\x00" * 200, "corrupt"),  # the brand of a HEIC, nothing after it
    ],
)
def test_damaged_heic_is_a_one_line_error_naming_the_file(data, reason: str) -> None:
    bad = data((DATA / "photo.heic").read_bytes())
    with pytest.raises(ImageReadError) as err:
        inspect_photo(Path("S1/D0/U1.heic"), bad)
        decode_rgb(Path("S1/D0/U1.heic"), bad)
    assert str(err.value).startswith("S1/D0/U1.heic: ") and "\n" not in str(err.value)


def test_heic_without_the_decoder_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imageio, "heif_available", lambda: False)
    data = (DATA / "photo.heic").read_bytes()
    for read in (inspect_photo, decode_rgb):
        with pytest.raises(ImageReadError, match=r"^p\.heic: HEIC/HEIF photo, .*pi-heif"):
            read(Path("p.heic"), data)


def test_heic_photos_are_measured_like_jpegs(tmp_path: Path) -> None:
    """End to end: the same scene as HEIC (plain and rotated) and as JPEG gives the true area."""
    root = tmp_path / "trial"
    (root / "S001" / "D0").mkdir(parents=True)
    (root / "S001" / "W4").mkdir(parents=True)
    (root / "S001" / "D0" / "U1.heic").write_bytes((DATA / "photo.heic").read_bytes())
    (root / "S001" / "W4" / "U1.HEIC").write_bytes((DATA / "photo_rot90.heic").read_bytes())
    photo = _reference()
    write_jpeg(root / "S002" / "D0" / "U1.jpg", photo.rgb)
    summary = measure_study(root, tmp_path / "out", PipelineConfig(), backend=RednessBackend())
    assert summary.n_measured == 3 and summary.n_failed == 0
    with (tmp_path / "out" / "measurements.csv").open(encoding="utf-8") as fh:
        rows = {r["file"]: r for r in csv.DictReader(fh)}
    jpeg_area = float(rows["S002/D0/U1.jpg"]["area_mm2"])
    for rel in ("S001/D0/U1.heic", "S001/W4/U1.HEIC"):
        assert rows[rel]["status"] == "measured"
        area = float(rows[rel]["area_mm2"])
        assert area == pytest.approx(photo.true_area_mm2, rel=0.08)
        assert area == pytest.approx(jpeg_area, rel=0.03)
        assert (rows[rel]["image_width_px"], rows[rel]["image_height_px"]) == ("800", "600")
    assert rows["S001/W4/U1.HEIC"]["photo_date"] == "2026-03-04"


def test_heic_left_out_of_the_extensions_is_an_unsupported_format_row(tmp_path: Path) -> None:
    (tmp_path / "S1" / "D0").mkdir(parents=True)
    (tmp_path / "S1" / "D0" / "U1.heic").write_bytes((DATA / "photo.heic").read_bytes())
    write_jpeg(tmp_path / "S1" / "D0" / "U2.jpg", np.zeros((8, 8, 3), np.uint8))
    found = discover(tmp_path, DiscoveryConfig(extensions=(".jpg",)))
    assert [p.ulcer_id for p in found.photos] == ["U2"]
    (skip,) = found.problems
    assert skip.code == "unsupported_format" and "discovery.extensions" in skip.reason
    default = discover(tmp_path, DiscoveryConfig())
    assert sorted(p.ulcer_id for p in default.photos) == ["U1", "U2"] and not default.problems


def test_heic_is_decoded_once_at_full_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reduced decode of HEIC costs a full one (decoded whole, then shrunk) and could be
    followed by a second at full size: HEIC is decoded at full size at once; JPEG reduced."""
    from ulcerseg import pipeline
    from ulcerseg.records import PhotoRecord

    monkeypatch.setattr(pipeline, "_MIN_REDUCED_SIDE_PX", 300)  # 800 x 600 px would decode at 1/2
    jpeg = write_jpeg(tmp_path / "U1.jpg", _reference().rgb)
    for path, expected in ((DATA / "photo.heic", 1), (jpeg, 2)):
        data = path.read_bytes()
        photo = PhotoRecord(path, "S1", "U1", "D0", 0, imageio.sha256_bytes(data))
        loaded = pipeline.load_photo(photo, min_oversampling=2.0, data=data)
        assert loaded.error is None and loaded.reduction == expected
        assert loaded.rgb is not None and loaded.rgb.shape[0] == 600 // expected
