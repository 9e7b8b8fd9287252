"""Synthetic calibrated photos: determinism, exact ground truth, detectability, trial layout."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from ulcerseg.calibration.aruco import aruco_dictionary
from ulcerseg.cli import main
from ulcerseg.errors import InputError
from ulcerseg.geometry import fill_polygon, polygon_area
from ulcerseg.synth import (
    PhotoConfig,
    encode_jpeg,
    generate_photos,
    generate_training_set,
    generate_trial,
    render_photo,
    render_tile,
    resize_photo,
)
from ulcerseg.synth.camera import make_camera, mm_per_px_at
from ulcerseg.synth.trial import CSV_COLUMNS

SMALL = PhotoConfig(size=(640, 480))


def _mask_area_mm2(mask: np.ndarray, h_mm_to_px: np.ndarray) -> float:
    """Area (mm²) of a photo-frame mask mapped to the marker plane (sum of pixel Jacobians)."""
    hi = np.linalg.inv(h_mm_to_px)
    ys, xs = np.nonzero(mask)
    w = np.c_[xs, ys, np.ones(len(xs))] @ hi[2]
    return float(np.sum(abs(np.linalg.det(hi)) / np.abs(w) ** 3))


def _detector() -> cv2.aruco.ArucoDetector:
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    return cv2.aruco.ArucoDetector(aruco_dictionary("DICT_4X4_50"), params)


def test_render_is_deterministic_by_seed() -> None:
    a, b, c = render_photo(11, SMALL), render_photo(11, SMALL), render_photo(12, SMALL)
    assert a.image.shape == (480, 640, 3) and a.image.dtype == np.uint8
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.truth.mask, b.truth.mask)
    assert np.array_equal(a.truth.homography, b.truth.homography)
    assert a.truth.true_area_mm2 == b.truth.true_area_mm2
    assert not np.array_equal(a.image, c.image)
    assert a.truth.true_area_mm2 != c.truth.true_area_mm2


def test_true_area_is_the_polygon_area_within_range() -> None:
    areas = []
    for seed in range(6):
        t = render_photo(seed, SMALL).truth
        assert t.polygon_mm.shape == (256, 2)
        assert t.true_area_mm2 == pytest.approx(polygon_area(t.polygon_mm), rel=1e-12)
        assert 2.0 * 0.999 <= t.true_area_mm2 <= 50.0 * 1.001
        areas.append(t.true_area_mm2)
    assert len(set(areas)) == len(areas)


def test_photo_mask_maps_back_to_true_area() -> None:
    config = PhotoConfig(size=(640, 480), area_range_mm2=(10.0, 50.0))
    for seed in range(4):
        t = render_photo(seed, config).truth
        assert set(np.unique(t.mask)) <= {0, 255}
        assert _mask_area_mm2(t.mask, t.homography) == pytest.approx(t.true_area_mm2, rel=0.02)


def test_ground_truth_geometry_is_consistent() -> None:
    config = PhotoConfig(size=(640, 480), max_tilt_deg=30.0)
    for seed in range(4):
        t = render_photo(seed, config).truth
        s = t.side_mm
        corners = np.c_[np.array([[0, 0], [s, 0], [s, s], [0, s]]), np.ones(4)] @ t.homography.T
        assert np.allclose(corners[:, :2] / corners[:, 2:], t.marker_corners_px)
        lo, hi = config.mm_per_px_bounds()
        assert lo * 0.999 <= t.mm_per_px <= hi * 1.001
        # Local scale checked independently by finite differences around the marker centre.
        d = 0.01
        pts = np.array([[s / 2, s / 2], [s / 2 + d, s / 2], [s / 2, s / 2 + d], [s / 2, s / 2]])
        q = np.c_[pts, np.ones(4)] @ t.homography.T
        q = q[:, :2] / q[:, 2:]
        jac = np.c_[q[1] - q[0], q[2] - q[0]] / d
        assert 1 / np.sqrt(abs(np.linalg.det(jac))) == pytest.approx(t.mm_per_px, rel=1e-3)
        assert 0 <= t.tilt_deg <= 30.0 + 1e-6
        assert 5.0 <= t.marker_distance_mm <= 35.0
    flat = render_photo(3, PhotoConfig(size=(640, 480), max_tilt_deg=0.0)).truth
    assert flat.tilt_deg == pytest.approx(0.0, abs=1e-6)


def test_camera_tilt_and_scale_are_exact() -> None:
    cam = make_camera((800, 600), (20, 5), (5, 5), 0.1, 40.0, 0.7, 1.1, 700.0, (400, 300))
    assert cam.tilt_deg == pytest.approx(40.0, abs=1e-9)
    assert mm_per_px_at(cam.homography, (5, 5)) == pytest.approx(0.1, rel=1e-6)
    # Under tilt the square marker images with unequal sides.
    q = np.c_[np.array([[0, 0], [10, 0], [10, 10], [0, 10]]), np.ones(4)] @ cam.homography.T
    q = q[:, :2] / q[:, 2:]
    sides = np.linalg.norm(q - np.roll(q, -1, axis=0), axis=1)
    assert sides.max() / sides.min() > 1.1


def test_marker_is_detected_at_ground_truth_corners() -> None:
    detector = _detector()
    errors = []
    for seed in range(5):
        photo = render_photo(seed, SMALL)
        jpeg = encode_jpeg(photo.image, photo.truth.jpeg_quality)
        gray = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
        corners, ids, _ = detector.detectMarkers(gray)
        assert ids is not None and list(ids.ravel()) == [0], f"seed {seed}: marker not found"
        err = np.linalg.norm(corners[0].reshape(4, 2) - photo.truth.marker_corners_px, axis=1)
        errors.extend(err)
    assert np.median(errors) < 0.7
    assert np.max(errors) < 1.5


def test_healed_photo_has_empty_mask() -> None:
    t = render_photo(4, SMALL, area_mm2=0.0).truth
    assert t.true_area_mm2 == 0.0 and len(t.polygon_mm) == 0
    assert not t.mask.any()


def test_fill_polygon_counts_pixel_centres() -> None:
    th = np.linspace(0, 2 * np.pi, 256, endpoint=False)
    poly = np.c_[100.3 + 60 * np.cos(th), 80.7 + 35 * np.sin(th)]
    mask = fill_polygon((200, 220), poly)
    assert mask.sum() == pytest.approx(polygon_area(poly), rel=2e-3)
    square = np.array([[1.5, 1.5], [4.5, 1.5], [4.5, 3.5], [1.5, 3.5]])  # centres x 2..4, y 2..3
    assert (fill_polygon((6, 6), square) > 0).sum() == 6


def test_resize_photo_keeps_geometry() -> None:
    photo = render_photo(2, PhotoConfig(size=(800, 600), area_range_mm2=(20.0, 50.0)))
    small = resize_photo(photo, (400, 300))
    assert small.image.shape == (300, 400, 3)
    assert small.truth.mm_per_px == pytest.approx(2 * photo.truth.mm_per_px)
    expected = (photo.truth.marker_corners_px + 0.5) / 2 - 0.5
    assert np.allclose(small.truth.marker_corners_px, expected)
    assert _mask_area_mm2(small.truth.mask, small.truth.homography) == pytest.approx(
        photo.truth.true_area_mm2, rel=0.03
    )


def test_training_tiles(tmp_path: Path) -> None:
    root = generate_training_set(tmp_path / "tiles", 8, px_per_mm=10.0, tile_px=64, seed=3)
    images = sorted((root / "images").glob("*.png"))
    masks = sorted((root / "masks").glob("*.png"))
    assert [p.name for p in images] == [p.name for p in masks] == [f"{i:04d}.png" for i in range(8)]
    meta = yaml.safe_load((root / "dataset.yaml").read_text())
    assert meta["px_per_mm"] == 10.0 and meta["source"] == "synthetic"
    m = cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED)
    assert m.shape == (64, 64) and set(np.unique(m)) <= {0, 255}
    tile = render_tile(17, px_per_mm=10.0, tile_px=128)
    assert tile.image.shape == (128, 128, 3)
    if tile.true_area_mm2 > 0 and tile.mask.any():
        # The tile mask is the polygon at 10 px/mm: pixel count ~ area * 100 when fully inside.
        assert tile.mask.sum() / 255 <= tile.true_area_mm2 * 100 * 1.05


def test_trial_layout_csv_and_exif(tmp_path: Path) -> None:
    root = generate_trial(
        tmp_path / "trial",
        n_subjects=2,
        visits=("D0", "W4"),
        ulcers_per_subject=(1, 1),
        photo_size=(320, 240),
        seed=5,
    )
    with (root / "ground_truth.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == 4
    assert {(r["subject_id"], r["visit"], r["ulcer_id"]) for r in rows} == {
        (s, v, "U1") for s in ("S001", "S002") for v in ("D0", "W4")
    }
    for r in rows:
        photo = root / r["file"]
        assert photo.parent.parent.parent == root and photo.name == "U1.jpg"
        with Image.open(photo) as im:
            assert im.size == (320, 240)
            stamp = im.getexif().get_ifd(0x8769)[0x9003]
        day = int(r["study_day"])
        assert stamp.startswith((date(2025, 3, 3) + timedelta(days=day)).strftime("%Y:%m:%d"))
        mask = cv2.imread(str(root / r["mask_file"]), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (240, 320)
        assert (float(r["true_area_mm2"]) == 0) == (not mask.any())
    # Ground truth stays out of the visit folders.
    assert not any("ground_truth" in p.name for p in (root / "S001").rglob("*"))
    # Same ulcer across visits: baseline then follow-up (areas may shrink, stay or heal).
    assert float(rows[0]["true_area_mm2"]) > 0


def test_photo_set(tmp_path: Path) -> None:
    root = generate_photos(tmp_path / "set", 2, PhotoConfig(size=(320, 240)), seed=1)
    with (root / "ground_truth.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["file"] for r in rows] == ["photo_0000.jpg", "photo_0001.jpg"]
    assert all((root / r["mask_file"]).is_file() for r in rows)
    again = render_photo(1 * 1_000_003 + 1, PhotoConfig(size=(320, 240))).truth
    assert float(rows[1]["true_area_mm2"]) == pytest.approx(again.true_area_mm2, abs=1e-4)


def test_cli_synth_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["synth", "dataset", "-o", str(tmp_path / "ds"), "--n", "2", "--tile", "48"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "ds" / "images").glob("*.png"))) == 2
    # before: a second set into the same folder mixed with the first (dataset.yaml said seed 9,
    # n 1 over the first set's 2 tiles, one of them seed 0's)
    for args in (
        ["dataset", "--n", "1", "--seed", "9"],
        ["photos", "--n", "1"],
        ["trial", "--subjects", "1"],
    ):
        res = runner.invoke(main, ["synth", *args, "-o", str(tmp_path / "ds")])
        assert isinstance(res.exception, InputError), (args, res.output)
        assert "output folder is not empty" in str(res.exception)
    assert len(list((tmp_path / "ds" / "images").glob("*.png"))) == 2
    res = runner.invoke(
        main,
        [
            "synth",
            "trial",
            "-o",
            str(tmp_path / "tr"),
            "--subjects",
            "1",
            "--visits",
            "D0",
            "--size",
            "200x150",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "tr" / "S001" / "D0" / "U1.jpg").is_file()
    res = runner.invoke(
        main, ["synth", "photos", "-o", str(tmp_path / "ph"), "--n", "1", "--size", "200x150"]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ph" / "photo_0000.jpg").is_file()
    res = runner.invoke(main, ["synth", "photos", "-o", str(tmp_path / "x"), "--n", "1", "--size", "big"])
    assert res.exit_code != 0 and "WIDTHxHEIGHT" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ulcers", "5,1"], "ulcers per subject 5,1; need 1 <= MIN <= MAX"),
        (["--ulcers", "0,0"], "ulcers per subject 0,0"),
        (["--visits", ""], "no visit labels given"),
        (["--visits", " , "], "no visit labels given"),
        (["--visits", "D0,W4,d0"], "visit 'd0' given twice (as 'D0')"),
        (["--size", "100000x100000"], "photo size 100000x100000 px; need sides >= 64 px and at most 100 MP"),
        (["--render-size", "20000x20000"], "render size 20000x20000 px"),
    ],
)
def test_synth_trial_refuses_what_it_cannot_write_in_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    # before: tracebacks (low >= high, out of memory) or exit 0 with an empty trial
    import subprocess
    import sys

    out = tmp_path / "t"
    cmd = [sys.executable, "-c", "from ulcerseg.cli import run; run()", "synth", "trial", "-o", str(out),
           "--size", "320x240", "--no-progress", *args]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"error: synthetic trial: {message}" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["photos", "--max-tilt", "nan"], "Invalid value for '--max-tilt': must be a number, not nan"),
        (["photos", "--side-mm", "nan"], "Invalid value for '--side-mm': must be a number, not nan"),
        (["photos", "--side-mm", "inf"], "Invalid value for '--side-mm': must be a finite number, not inf"),
        (["photos", "--mm-per-px", "inf,inf"], "need finite numbers 0 < MIN <= MAX"),
        (["dataset", "--px-per-mm", "nan"], "Invalid value for '--px-per-mm': must be a number, not nan"),
        (["photos", "--side-mm", "1000"], "error: no camera frames the scene at 0.08594-0.2031 mm/px"),
    ],
)
def test_synth_photos_and_dataset_refuse_bad_numbers_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str],
    message: str,
) -> None:  # fmt: skip
    # before: tracebacks (OverflowError from NaN tilt, ValueError from a NaN scale or from a
    # marker no camera of the range can frame) with exit status 1
    import sys

    from ulcerseg.cli import run

    out = tmp_path / "o"
    size = ["--size", "640x480"] if args[0] == "photos" else []
    argv = ["ulcerseg", "synth", args[0], "-o", str(out), "--n", "1", *size, "--no-progress"]
    monkeypatch.setattr(sys, "argv", [*argv, *args[1:]])
    with pytest.raises(SystemExit) as exc:
        run()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize("command", ["trial", "photos", "dataset"])
def test_synth_negative_seed_is_a_usage_error(tmp_path: Path, command: str) -> None:
    # before: numpy's "ValueError: expected non-negative integer" traceback, exit 1
    out = tmp_path / "o"
    n = [] if command == "trial" else ["--n", "1"]
    result = CliRunner().invoke(main, ["synth", command, "-o", str(out), *n, "--seed", "-1", "--no-progress"])
    assert result.exit_code == 2 and "Invalid value for '--seed'" in result.output, result.output
    assert not out.exists()


def test_synth_writes_masks_to_any_path_and_checks_the_write(tmp_path: Path, monkeypatch) -> None:
    # masks went through cv2.imwrite, which fails silently (returns False) where it cannot write
    # and cannot open a non-ASCII path on every platform; now the checked, atomic write_png
    root = generate_photos(tmp_path / "ünïcode ✓", 1, SMALL, seed=3)
    mask = cv2.imdecode(np.fromfile(root / "masks" / "photo_0000.png", np.uint8), cv2.IMREAD_UNCHANGED)
    assert mask is not None and mask.dtype == np.uint8 and mask.max() == 255
    monkeypatch.setattr(cv2, "imencode", lambda *a, **k: (False, None))
    with pytest.raises(OSError, match="PNG encoding failed"):
        generate_photos(tmp_path / "fails", 1, SMALL, seed=3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda out: generate_trial(out, 1, ("D0",), (1, 1), (160, 120), seed=-1),
            "seed -1; need an integer >= 0",
        ),
        (lambda out: generate_photos(out, 1, SMALL, seed=-1), "seed -1; need an integer >= 0"),
        (lambda out: generate_photos(out, 0, SMALL), "0 photos; need at least 1"),
        (
            lambda out: generate_photos(out, 1, PhotoConfig(size=(640, 480), max_tilt_deg=90)),
            "max_tilt_deg 90",
        ),
        (lambda out: generate_photos(out, 1, PhotoConfig(size=(640, 480), side_mm=0)), "side_mm 0"),
        (
            lambda out: generate_photos(out, 1, PhotoConfig(size=(640, 480), mm_per_px_range=(0.5, 0.1))),
            "mm_per_px_range 0.5,0.1",
        ),
        (lambda out: generate_training_set(out, 1, seed=-1), "seed -1; need an integer >= 0"),
        (lambda out: generate_training_set(out, -3), "-3 tiles; need at least 1"),
        (lambda out: generate_training_set(out, 1, px_per_mm=0), "px_per_mm 0; need a finite number 0.5-100"),
        (lambda out: generate_training_set(out, 1, px_per_mm=-1), "px_per_mm -1"),
        (lambda out: generate_training_set(out, 1, px_per_mm=float("nan")), "px_per_mm nan"),
        (lambda out: generate_training_set(out, 1, tile_px=0), "tile_px 0; need an integer 32-4096"),
    ],
)
def test_synth_functions_refuse_what_the_commands_refuse(tmp_path: Path, call, message: str) -> None:
    """The synth commands bound seed, counts, scale, tile and photo settings at their options;
    the functions took them: a negative seed raised numpy's ValueError, px_per_mm 0
    ZeroDivisionError, nan and tile_px 0 a ValueError, and n=0, px_per_mm -1, tilt 90°, a 0 mm
    marker or a reversed mm-per-px range wrote a set without an error."""
    with pytest.raises(InputError, match=message):
        call(tmp_path / "out")
    assert not (tmp_path / "out").exists()
