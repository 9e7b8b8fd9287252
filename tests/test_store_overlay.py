import csv
from pathlib import Path

import numpy as np
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
    # the saved mask and rectified image share one frame; area = count / px_per_mm²
    mask = read_mask(out / row["mask_file"])
    rectified = read_rgb(out / row["rectified_file"])
    assert mask.shape == rectified.shape[:2]
    area = np.count_nonzero(mask) / float(row["rectified_px_per_mm"]) ** 2
    assert area == float(row["area_mm2"])
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
