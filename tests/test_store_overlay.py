import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import RednessBackend, make_photo, write_jpeg

from ulcerseg.config import PipelineConfig
from ulcerseg.imageio import read_mask, read_rgb
from ulcerseg.pipeline import measure_study
from ulcerseg.store import CSV_COLUMNS, Study


def test_outputs_follow_the_contract(tmp_path: Path) -> None:
    root = tmp_path / "trial"
    photo = make_photo(px_per_mm=14, size=(800, 600))
    write_jpeg(root / "S1" / "D0" / "U1.jpg", photo.rgb)
    out = tmp_path / "out"
    measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    with (out / "measurements.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == CSV_COLUMNS
        row = next(reader)
    for col in ("area_mm2", "area_low_mm2", "area_high_mm2"):
        assert len(row[col].partition(".")[2]) <= 2, (col, row[col])  # 0.01 mm² in the CSV
    # operator-side files are named <subject>_<ulcer>_<visit>_<hash8>.png
    stem = f"S1_U1_D0_{row['photo_sha256'][:8]}"
    assert (row["mask_file"], row["rectified_file"], row["overlay_file"]) == (
        f"masks/{stem}.png",
        f"rectified/{stem}.png",
        f"overlays/{stem}.png",
    )
    # the saved mask and rectified image share one frame; area = count / px_per_mm²
    mask = read_mask(out / row["mask_file"])
    rectified = read_rgb(out / row["rectified_file"])
    assert mask.shape == rectified.shape[:2]
    area = np.count_nonzero(mask) / float(row["rectified_px_per_mm"]) ** 2
    assert area == pytest.approx(float(row["area_mm2"]), abs=0.005)  # the CSV rounds to 0.01 mm²
    # the mask covers the red ulcer in the rectified image
    red = rectified[..., 0].astype(int) - rectified[..., 1] > 70
    assert (mask > 0)[red].mean() > 0.95
    # overlay: a green contour was drawn
    overlay = read_rgb(out / row["overlay_file"])
    green = (overlay[..., 1] > 180) & (overlay[..., 0] < 90) & (overlay[..., 2] < 90)
    assert green.sum() > 20
    with Study.open(out) as study:
        runs = study.conn.execute("SELECT finished_at, n_measured FROM runs").fetchall()
        assert len(runs) == 1 and runs[0]["finished_at"] and runs[0]["n_measured"] == 1
        assert study.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_photo_file_names_are_readable_and_safe() -> None:
    from ulcerseg.naming import photo_file_stem, safe_component

    sha = "05A3FBDE129B707A" + "0" * 48
    assert photo_file_stem("SUBJ-1002", "U1", "W4", sha) == "SUBJ-1002_U1_W4_05a3fbde"
    # odd characters, separators, path parts and hidden-file dots never reach the file system
    # (an ID that had to change gets 6 hex digits of its SHA-256, so that no two IDs share a name)
    assert photo_file_stem("S 01/../x", "U_1", "W4", sha) == "S-01-..-x-h093b8b_U-1-h98de45_W4_05a3fbde"
    # before: S_001 and S-001, or Zoé and Zo, or two long IDs alike in their first 40 characters
    # got one name (one photo's files overwrote the other's when their bytes were the same)
    long_a, long_b = (
        "SSC-TRIAL-2025-SITE-NORTH-0001-PATIENT-00001",
        "SSC-TRIAL-2025-SITE-NORTH-0001-PATIENT-00002",
    )
    for a, b in (("S_001", "S-001"), ("Zoé", "Zo"), (long_a, long_b)):
        assert photo_file_stem(a, "U1", "D0", sha) != photo_file_stem(b, "U1", "D0", sha), (a, b)
    assert safe_component("../etc") == "etc"
    assert safe_component("") == safe_component("///") == "x"
    assert safe_component("Ülcer #3") == "lcer-3"
    assert len(safe_component("a" * 300)) == 40
    # two photos of one ulcer at one visit keep apart by their hash
    assert photo_file_stem("S1", "U1", "D0", "a" * 64) != photo_file_stem("S1", "U1", "D0", "b" * 64)


def test_overlay_header_has_backing_flags_in_words_and_scale_bar() -> None:
    from ulcerseg.calibration.marker import calibrate
    from ulcerseg.overlay import flag_lines, render_overlay

    photo = make_photo(px_per_mm=12, size=(640, 480))
    m = PipelineConfig().marker
    cal = calibrate(photo.rgb, m.dictionary, m.ids, m.side_mm)
    white = np.full_like(photo.rgb, 255)  # white text without a backing would vanish here
    out = render_overlay(white, cal, [], 12.345, "S1 D0 U1", flags=["overexposed", "blurred"])
    header = out[:20, :200]
    assert (header.max(axis=2) < 100).mean() > 0.4  # dark backing box behind the header text
    assert (header.min(axis=2) > 200).any()  # white text on it
    assert flag_lines(["overexposed", "blurred"]) == ["check: overexposed (too bright), blurred"]
    assert flag_lines([]) == ["quality: no flags"]
    assert flag_lines(["some_new_code"]) == ["check: some new code"]
    assert flag_lines(["dark_bed"]) == ["check: dark bed (eschar?): outline may be small"]


def test_the_scale_bar_is_5_mm_in_the_frame_of_the_copy_drawn_on() -> None:
    """A 10 mm marker at 10 px/mm, photo px (100, 100)..(200, 200), drawn on a half-size copy
    (image_scale 0.5): the bar runs from the marker's (0, 13) mm to (5, 13) mm, photo px
    (100, 230)..(150, 230), so copy px (50, 115)..(75, 115): 25 px, not the photo's 50."""
    from ulcerseg.overlay import render_overlay
    from ulcerseg.records import Calibration

    h = (0.1, 0.0, -10.0, 0.0, 0.1, -10.0, 0.0, 0.0, 1.0)
    corners = ((100.0, 100.0), (200.0, 100.0), (200.0, 200.0), (100.0, 200.0))
    cal = Calibration(0, corners, h, mm_per_px=0.1, tilt_deg=0.0, residual_px=0.0, side_mm=10.0)
    half = np.zeros((200, 200, 3), np.uint8)  # the 400 x 400 px photo at half size
    out = render_overlay(half, cal, [], None, "x", image_scale=0.5)
    # the crop starts at the copy's origin (marker 50..100 px less a 75 px margin) and is not reduced
    assert out.shape[:2] == (175, 175)
    band = out[105:126, :80].min(axis=2) > 200  # white; the bar's "5 mm" label lies right of x 80
    ys, xs = np.nonzero(band)
    assert abs(xs.min() - 50) <= 2 and abs(xs.max() - 75) <= 2 and abs(ys.mean() + 105 - 115) <= 1
