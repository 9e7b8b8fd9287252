"""Printable marker sheet: true scale in PNG and PDF, A4 page, detectable markers."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ulcerseg.calibration.aruco import aruco_dictionary
from ulcerseg.calibration.sheet import A4_MM, layout_sheet, sheet_figure, write_marker_sheet
from ulcerseg.cli import main
from ulcerseg.errors import UlcersegError
from ulcerseg.geometry import RectifiedGrid


def _detect(gray: np.ndarray) -> tuple[list[int], list[float]]:
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    det = cv2.aruco.ArucoDetector(aruco_dictionary("DICT_4X4_50"), params)
    corners, ids, _ = det.detectMarkers(gray)
    assert ids is not None
    sides = [float(s) for c in corners for s in np.linalg.norm(c[0] - np.roll(c[0], -1, axis=0), axis=1)]
    return [int(i) for i in ids.ravel()], sides


@pytest.mark.parametrize(("side_mm", "dpi"), [(10.0, 300.0), (7.5, 200.0)])
def test_png_sheet_is_true_scale(tmp_path: Path, side_mm: float, dpi: float) -> None:
    path = write_marker_sheet(tmp_path / "sheet.png", side_mm=side_mm, ids=(0, 3), dpi=dpi)
    with Image.open(path) as im:
        assert im.info["dpi"][0] == pytest.approx(dpi, abs=0.01)
        assert im.size == (round(A4_MM[0] * dpi / 25.4), round(A4_MM[1] * dpi / 25.4))
        gray = np.asarray(im.convert("L"))
    ids, sides = _detect(gray)
    assert set(ids) == {0, 3}
    assert len(ids) == len(layout_sheet(side_mm, (0, 3)).stickers)
    assert np.all(np.abs(np.array(sides) - side_mm * dpi / 25.4) < 1.0)


def test_pdf_sheet_is_a4_and_true_scale(tmp_path: Path) -> None:
    path = write_marker_sheet(tmp_path / "sheet.pdf", side_mm=10.0, ids=(1,))
    data = path.read_bytes()
    assert data.startswith(b"%PDF")
    box = re.search(rb"MediaBox\s*\[\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*\]", data)
    assert box is not None
    w_pt, h_pt = float(box.group(3)), float(box.group(4))
    assert w_pt == pytest.approx(210 / 25.4 * 72, abs=0.5) and h_pt == pytest.approx(297 / 25.4 * 72, abs=0.5)
    # The same vector figure rasterised at 300 dpi keeps the printed scale.
    fig = sheet_figure(layout_sheet(10.0, (1,)))
    fig.savefig(tmp_path / "check.png", dpi=300)
    gray = cv2.imread(str(tmp_path / "check.png"), cv2.IMREAD_GRAYSCALE)
    ids, sides = _detect(gray)
    assert set(ids) == {1}
    assert np.all(np.abs(np.array(sides) - 10.0 * 300 / 25.4) < 1.0)


def test_bad_requests_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UlcersegError, match="DICT_NOPE"):
        write_marker_sheet(tmp_path / "a.png", dictionary="DICT_NOPE")
    with pytest.raises(UlcersegError, match="ID 99"):
        write_marker_sheet(tmp_path / "a.png", ids=(99,))
    with pytest.raises(UlcersegError, match=r"\.pdf or \.png"):
        write_marker_sheet(tmp_path / "a.svg")
    with pytest.raises(UlcersegError, match=r"does not fit|outside"):
        write_marker_sheet(tmp_path / "a.png", side_mm=500)
    # was: 25 stickers (IDs 0-24) printed, exit 0
    with pytest.raises(UlcersegError, match=r"30 marker IDs but only 25 stickers of 20 mm fit"):
        write_marker_sheet(tmp_path / "b.png", side_mm=20, ids=tuple(range(30)))
    assert not (tmp_path / "b.png").exists()


def test_marker_cli(tmp_path: Path) -> None:
    out = tmp_path / "m.png"
    res = CliRunner().invoke(
        main, ["marker", "--side-mm", "12", "--ids", "0,2", "--dpi", "150", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    with Image.open(out) as im:
        ids, sides = _detect(np.asarray(im.convert("L")))
    assert set(ids) == {0, 2}
    assert np.median(sides) == pytest.approx(12 * 150 / 25.4, abs=1.0)


def test_one_aruco_module_serves_detector_sheet_and_synth() -> None:
    from ulcerseg.calibration.aruco import marker_cells
    from ulcerseg.synth.sticker import Sticker

    cells = marker_cells("DICT_4X4_50", 3)
    assert cells.shape == (6, 6) and cells[0].all() and cells[:, -1].all()  # black border
    assert not np.array_equal(cells, marker_cells("DICT_4X4_50", 4))
    with pytest.raises(UlcersegError, match="marker ID 50 is not in DICT_4X4_50"):
        marker_cells("DICT_4X4_50", 50)
    with pytest.raises(UlcersegError, match=r"--dict: marker\.dictionary 'DICT_NOPE'"):
        aruco_dictionary("DICT_NOPE", "--dict")
    # the synthetic sticker prints the same cells: sample its colour at the cell centres
    st = Sticker("DICT_4X4_50", 3, side_mm=6.0, quiet_mm=1.0, paper=(1.0, 1.0, 1.0), ink=0.0)
    grid = RectifiedGrid((0.5, 0.5), 1.0, 6, 6)  # pixel centres at the 1 mm cells' centres
    colour, alpha = st.render(grid)
    assert np.array_equal(colour[..., 0] < 0.5, cells) and (alpha == 1).all()


@pytest.mark.parametrize("suffix", [".pdf", ".png"])
def test_a_full_disk_leaves_the_previous_sheet_and_names_the_file(
    tmp_path: Path, monkeypatch, suffix: str
) -> None:
    import errno
    import zlib

    import matplotlib.figure

    def full_disk(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"%PDF-1.4 trunc")  # a partial file, as a full disk leaves it
        raise zlib.error("Error -2") if suffix == ".pdf" else OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full_disk)
    monkeypatch.setattr(Image.Image, "save", full_disk)
    sheet = tmp_path / f"sheet{suffix}"
    sheet.write_bytes(b"previous sheet")
    with pytest.raises(UlcersegError, match=rf"sheet\{suffix}: cannot write the marker sheet"):
        write_marker_sheet(sheet)  # was: a zlib.error traceback (PDF) and a truncated sheet
    assert sheet.read_bytes() == b"previous sheet"
    assert [p.name for p in tmp_path.iterdir()] == [sheet.name]  # no temporary file left
