import csv
import io
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import RednessBackend, make_photo, write_jpeg
from PIL import Image

from ulcerseg import pipeline
from ulcerseg.config import PipelineConfig
from ulcerseg.imageio import sha256_bytes
from ulcerseg.pipeline import LoadedPhoto, effective_config, measure_study
from ulcerseg.records import PhotoRecord, PhotoResult


@pytest.fixture
def mixed_folder(tmp_path: Path) -> tuple[Path, dict[str, float]]:
    """A trial folder with good photos and every kind of bad file."""
    root = tmp_path / "trial"
    truth = {}
    for i, (tilt, radius) in enumerate([(0, (2.5, 1.8)), (30, (1.5, 1.2)), (45, (3.0, 2.0))]):
        photo = make_photo(tilt_deg=tilt, ulcer_radius_mm=radius, px_per_mm=14, size=(800, 600))
        rel = f"S001/W{4 * i}/U1.jpg" if i else "S001/D0/U1.jpg"
        write_jpeg(root / rel, photo.rgb)
        truth[rel] = photo.true_area_mm2
    (root / "S002" / "D0").mkdir(parents=True)
    (root / "S002" / "D0" / "U1_empty.jpg").write_bytes(b"")
    (root / "S002" / "D0" / "U2_text.jpg").write_text("not a photo at all\n")
    good = (root / "S001" / "D0" / "U1.jpg").read_bytes()
    (root / "S002" / "D0" / "U3_truncated.jpg").write_bytes(good[: len(good) // 2])
    write_jpeg(root / "S002" / "D0" / "U4_nomarker.jpg", make_photo(with_marker=False).rgb)
    gray = make_photo(px_per_mm=14, size=(800, 600)).rgb.mean(axis=2).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, "PNG")
    (root / "S002" / "D0" / "U5_gray.png").write_bytes(buf.getvalue())
    return root, truth


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "measurements.csv").open() as fh:
        return {r["file"]: r for r in csv.DictReader(fh)}


def test_batch_with_bad_files(mixed_folder, tmp_path: Path) -> None:
    root, truth = mixed_folder
    before = {p: sha256_bytes(p.read_bytes()) for p in root.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    backend = RednessBackend()
    summary = measure_study(root, out, PipelineConfig(), backend=backend)
    rows = _rows(out)
    assert summary.n_photos == 8 and len(rows) == 8
    for rel, true_area in truth.items():
        row = rows[rel]
        assert row["status"] == "measured"
        # geometry end to end: marker scale, perspective, rectification and measurement
        assert float(row["area_mm2"]) == pytest.approx(true_area, rel=0.08)
        assert row["model_sha256"] == backend.sha256
        assert row["config_sha256"] == effective_config(PipelineConfig(), backend.card, "full").sha256()
        assert row["package_version"]
        assert (out / row["overlay_file"]).is_file() and (out / row["mask_file"]).is_file()
    expected = {
        "S002/D0/U1_empty.jpg": "unreadable_file",
        "S002/D0/U2_text.jpg": "unreadable_file",
        "S002/D0/U3_truncated.jpg": "unreadable_file",
        "S002/D0/U4_nomarker.jpg": "no_marker",
    }
    for rel, code in expected.items():
        assert rows[rel]["status"] == "failed"
        assert code in rows[rel]["flags"].split(";")
        assert rel.split("/")[-1] in rows[rel]["error"]
        assert rows[rel]["needs_review"] == "1"
    assert "grayscale" in rows["S002/D0/U5_gray.png"]["flags"]
    assert summary.n_failed == 4
    assert not (out / "healing.csv").exists()  # the library does not heal: the CLI composes it
    after = {p: sha256_bytes(p.read_bytes()) for p in root.rglob("*") if p.is_file()}
    assert after == before  # originals never modified


def test_rerun_measures_nothing_new_and_resume_does_not_duplicate(mixed_folder, tmp_path: Path) -> None:
    root, _ = mixed_folder
    out = tmp_path / "out"
    first = measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    assert first.n_skipped == 0
    backend = RednessBackend()
    second = measure_study(root, out, PipelineConfig(), backend=backend)
    assert second.n_skipped == 8 and second.n_measured == 0 and backend.calls == 0
    # simulate a run killed after the first rows: drop later rows, then resume
    con = sqlite3.connect(out / "study.sqlite")
    with con:
        con.execute("DELETE FROM flags WHERE measurement_id > 3")
        con.execute("DELETE FROM measurements WHERE measurement_id > 3")
    con.close()
    third = measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    assert third.n_skipped == 3 and third.n_measured + third.n_failed == 5
    con = sqlite3.connect(out / "study.sqlite")
    n_rows, n_photos = con.execute("SELECT COUNT(*), COUNT(DISTINCT file) FROM measurements").fetchone()
    assert n_rows == n_photos == 8


def test_measure_study_takes_no_config_or_a_yaml_path_as_heal_study_does(tmp_path: Path) -> None:
    """config=None and a YAML path raised AttributeError ('NoneType' object has no attribute
    'discovery'); heal_study takes both, and the doc's config arguments do."""
    from ulcerseg.errors import ConfigError

    root = tmp_path / "trial"
    write_jpeg(root / "S001" / "D0" / "U1.jpg", make_photo(px_per_mm=14, size=(800, 600)).rgb)
    (tmp_path / "c.yaml").write_text("segmentation: {min_area_mm2: 0.5}\n")
    summary = measure_study(str(root), str(tmp_path / "a"), None, backend=RednessBackend())
    assert summary.n_measured == 1
    measure_study(root, tmp_path / "b", str(tmp_path / "c.yaml"), backend=RednessBackend())
    a, b = (_rows(tmp_path / name)["S001/D0/U1.jpg"] for name in ("a", "b"))
    assert a["area_mm2"] == b["area_mm2"] and a["config_sha256"] != b["config_sha256"]
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read config"):
        measure_study(root, tmp_path / "c", tmp_path / "nope.yaml", backend=RednessBackend())


def test_same_inputs_give_identical_numbers(mixed_folder, tmp_path: Path) -> None:
    root, _ = mixed_folder
    cols = ["area_mm2", "length_mm", "width_mm", "perimeter_mm", "mm_per_px", "flags"]
    results = []
    for name in ("a", "b"):
        measure_study(root, tmp_path / name, PipelineConfig(), backend=RednessBackend())
        results.append({f: [r[c] for c in cols] for f, r in _rows(tmp_path / name).items()})
    assert results[0] == results[1]


def test_changed_config_measures_again(mixed_folder, tmp_path: Path) -> None:
    from ulcerseg.config import with_overrides

    root, _ = mixed_folder
    out = tmp_path / "out"
    measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    cfg = with_overrides(PipelineConfig(), segmentation={"min_area_mm2": 0.5})
    again = measure_study(root, out, cfg, backend=RednessBackend())
    assert again.n_skipped == 0
    effective = effective_config(cfg, RednessBackend().card, "full")  # a test double: full
    assert {r["config_sha256"] for r in _rows(out).values()} == {effective.sha256()}
    assert effective.segmentation.min_area_mm2 == 0.5


def test_another_package_version_measures_again(mixed_folder, tmp_path: Path, monkeypatch) -> None:
    """Other code may measure another number: a new version's run does not keep the old rows."""
    import ulcerseg.pipeline

    root, _ = mixed_folder
    out = tmp_path / "out"
    measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    assert measure_study(root, out, PipelineConfig(), backend=RednessBackend()).n_skipped == 8
    monkeypatch.setattr(ulcerseg.pipeline, "__version__", "9.9.9")
    backend = RednessBackend()
    again = measure_study(root, out, PipelineConfig(), backend=backend)
    assert again.n_skipped == 0 and backend.calls > 0
    assert {r["package_version"] for r in _rows(out).values()} == {"9.9.9"}
    assert measure_study(root, out, PipelineConfig(), backend=RednessBackend()).n_skipped == 8


def test_recorded_config_is_what_ran_so_a_card_threshold_edit_measures_again(
    mixed_folder, tmp_path: Path
) -> None:
    """Same weights (same model checksum) but another card threshold: not 'already measured'."""
    import json
    from dataclasses import replace

    root, _ = mixed_folder
    out = tmp_path / "out"
    first = RednessBackend()
    measure_study(root, out, PipelineConfig(), backend=first)
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["segmentation"]["threshold"] == first.card.threshold  # resolved, not null
    assert run["config"]["segmentation"]["px_per_mm"] == first.card.px_per_mm
    assert measure_study(root, out, PipelineConfig(), backend=first).n_skipped == 8
    edited = RednessBackend()
    edited.card = replace(edited.card, threshold=0.7)
    again = measure_study(root, out, PipelineConfig(), backend=edited)
    assert again.n_skipped == 0
    assert json.loads((out / "run.json").read_text())["config"]["segmentation"]["threshold"] == 0.7


def test_coarse_to_fine_segments_only_the_candidate_crop(tmp_path: Path) -> None:
    """Fine-pass cost follows the ulcer, not the photo: the measured grid is a small crop."""
    from ulcerseg.calibration.marker import calibrate, homography_matrix
    from ulcerseg.config import SegmentationConfig
    from ulcerseg.segmentation.inference import segment_photo

    photo = make_photo(px_per_mm=14, size=(1600, 1200))
    cal = calibrate(photo.rgb, "DICT_4X4_50", (0,), 10.0)
    seg = segment_photo(RednessBackend(), photo.rgb, homography_matrix(cal), 10.0, SegmentationConfig())
    assert seg.found_candidates
    assert seg.grid.px_per_mm == 10.0
    area_searched_mm2 = (1600 / 14) * (1200 / 14)
    assert seg.grid.width * seg.grid.height / 100 < 0.25 * area_searched_mm2


def test_a_coarse_pass_from_the_preview_is_where_the_photo_is() -> None:
    """Preview px c is photo px (c + 0.5) / s - 0.5: mapped as c / s, the coarse pass from a 1/3
    preview lay 1 photo px up and left of the same pass from the photo itself."""
    from ulcerseg.config import SegmentationConfig
    from ulcerseg.imageio import Preview, make_preview
    from ulcerseg.segmentation.inference import segment_photo

    photo = make_photo(px_per_mm=30, size=(2400, 1800), ulcer_offset_mm=(16, 6), ulcer_radius_mm=(3, 2))
    h = np.linalg.inv(photo.h_mm_to_px)
    config = SegmentationConfig(coarse_factor=1.0, search_radius_mm=25)  # the coarse pass is returned

    def ulcer_centre_mm(preview: Preview | None) -> np.ndarray:
        seg = segment_photo(RednessBackend(), photo.rgb, h, 10.0, config, preview)
        p = np.clip(seg.probability.astype(np.float64) - 0.05, 0, None)  # the ulcer, not the skin
        ys, xs = np.mgrid[: p.shape[0], : p.shape[1]]
        centre_px = np.array([(p * xs).sum(), (p * ys).sum()]) / p.sum()
        return np.asarray(seg.grid.origin_mm) + centre_px / seg.grid.px_per_mm

    shift_photo_px = (ulcer_centre_mm(make_preview(photo.rgb, 800)) - ulcer_centre_mm(None)) * 30
    assert np.abs(shift_photo_px).max() < 0.3


def test_far_apart_candidates_get_separate_small_crops_and_the_ulcer_wins() -> None:
    import cv2

    from ulcerseg.calibration.marker import calibrate, homography_matrix
    from ulcerseg.config import SegmentationConfig
    from ulcerseg.geometry import apply_homography
    from ulcerseg.segmentation.inference import segment_photo
    from ulcerseg.segmentation.postprocess import ulcer_mask

    photo = make_photo(px_per_mm=14, size=(1600, 1200), ulcer_radius_mm=(3.0, 2.2), ulcer_offset_mm=(20, 6))
    rgb = photo.rgb.copy()
    # a small red speck 35 mm away on the other side of the marker: a distractor
    speck = apply_homography(photo.h_mm_to_px, np.array([[-15.0, 30.0]]))[0]
    cv2.circle(rgb, (int(speck[0]), int(speck[1])), 9, (170, 30, 35), -1)
    cal = calibrate(rgb, "DICT_4X4_50", (0,), 10.0)
    backend = RednessBackend(tile_px=256)  # each pass fits one window: calls count passes
    # coarse pass at 5 px/mm: the 90 mm search disc fits one window
    seg = segment_photo(backend, rgb, homography_matrix(cal), 10.0, SegmentationConfig(coarse_factor=0.5))
    assert backend.calls == 4  # coarse pass + one fine pass per candidate region + the mirror check
    assert max(seg.grid.width, seg.grid.height) < 300  # a crop, not the span of both regions
    mask = ulcer_mask(seg.probability, 0.5, 10.0, 0.3, 3.0, seg.exclude)
    assert mask.sum() / 100 == pytest.approx(photo.true_area_mm2, rel=0.05)


def test_fine_grid_on_a_lattice_is_the_same_for_nearby_boxes() -> None:
    from ulcerseg.geometry import RectifiedGrid
    from ulcerseg.segmentation.inference import _fine_grid

    region = RectifiedGrid((-40.3, -35.7), 7.5, 675, 640)
    box = (np.array([13.0, 2.0]), np.array([28.0, 15.0]))  # 20 mm crop from 10.5, -1.5 mm
    # boxes whose crops start within one lattice cell (10-12 mm, -2-0 mm) give one grid
    grids = [_fine_grid((box[0] + d, box[1] + d), region, 10.0, 2.0) for d in (0.0, 0.3, -0.4)]
    assert grids[0] == grids[1] == grids[2]
    grid = grids[0]
    assert all(v / 2.0 == round(v / 2.0) for v in grid.origin_mm)  # pixel centres on the lattice
    assert grid.origin_mm == (10.0, -2.0) and (grid.width, grid.height) == (220, 220)
    far = np.asarray(grid.origin_mm) + np.array([grid.width, grid.height]) / 10.0
    assert np.all(np.asarray(grid.origin_mm) <= box[0] + 0.3) and np.all(far >= box[1] - 0.4)
    # without the lattice a shifted box moves the grid
    assert _fine_grid(box, region, 10.0) != _fine_grid((box[0] + 0.3, box[1] + 0.3), region, 10.0)
    # near the searched region's edge the grid stays inside it, still on the lattice
    edge = _fine_grid((np.array([-45.0, -40.0]), np.array([-30.0, -28.0])), region, 10.0, 2.0)
    assert edge.origin_mm == (-40.0, -34.0)


def test_recentred_crop_makes_the_area_independent_of_the_coarse_pass() -> None:
    """The measured crop is placed around the fine pass's own mask: coarse settings that move
    the candidate box give the very same grid and probability."""
    from ulcerseg.calibration.marker import calibrate, homography_matrix
    from ulcerseg.config import SegmentationConfig
    from ulcerseg.segmentation.inference import segment_photo
    from ulcerseg.segmentation.postprocess import ulcer_mask

    photo = make_photo(px_per_mm=14, size=(1600, 1200), ulcer_radius_mm=(3.0, 2.2), ulcer_offset_mm=(20, 6))
    h = homography_matrix(calibrate(photo.rgb, "DICT_4X4_50", (0,), 10.0))

    def run(**settings: object) -> object:
        return segment_photo(RednessBackend(), photo.rgb, h, 10.0, SegmentationConfig(**settings))

    placed = [run(coarse_factor=f, recentre_crop=True) for f in (0.5, 0.75)]
    assert placed[0].grid == placed[1].grid
    # the first crop already lies on the lattice: where the candidate's box and the fine mask's
    # box snap to the same grid, no recentring pass runs (coarse, fine, mirror)
    counting = RednessBackend()
    once = segment_photo(counting, photo.rgb, h, 10.0, SegmentationConfig(recentre_crop=True))
    assert counting.calls == 3 and once.grid == placed[1].grid
    assert np.array_equal(placed[0].probability, placed[1].probability)
    unplaced = [run(coarse_factor=f, recentre_crop=False) for f in (0.5, 0.75)]
    assert unplaced[0].grid != unplaced[1].grid  # what recentring removes
    # the ulcer (centred 20, 6 mm from the marker corner) lies in the middle of its crop
    grid = placed[0].grid
    centre = np.asarray(grid.origin_mm) + np.array([grid.width, grid.height]) / 20.0
    assert np.abs(centre - [20.0, 6.0]).max() <= 1.0 + 1e-9
    mask = ulcer_mask(placed[0].probability, 0.5, 10.0, 0.3, 3.0, placed[0].exclude)
    assert mask.sum() / 100 == pytest.approx(photo.true_area_mm2, rel=0.05)


def test_a_crop_with_only_specks_above_threshold_does_not_confirm_the_ulcer() -> None:
    """A fine pass whose mass above threshold is smaller than min_area_mm2 measures nothing: it
    must not count as confirmed (which would skip the full-resolution recheck and report
    no_ulcer_found, a healing finding, for a photo whose region pass shows the ulcer)."""
    from ulcerseg.calibration.marker import calibrate, homography_matrix
    from ulcerseg.config import SegmentationConfig
    from ulcerseg.segmentation.inference import segment_photo
    from ulcerseg.segmentation.postprocess import ulcer_mask

    class SpecksInCropsBackend(RednessBackend):
        """Sees the ulcer over whole regions, only a 2 x 2 px speck of it in 20 mm crops."""

        def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
            prob = super().predict_proba(tiles)
            if tiles.shape[1] > 224:  # a search-region pass
                return prob
            specks = np.zeros_like(prob)
            for out, p in zip(specks, prob, strict=True):
                y, x = np.unravel_index(np.argmax(p), p.shape)
                out[y : y + 2, x : x + 2] = 0.95
            return specks

    photo = make_photo(px_per_mm=14, size=(1600, 1200))
    h = homography_matrix(calibrate(photo.rgb, "DICT_4X4_50", (0,), 10.0))
    seg = segment_photo(
        SpecksInCropsBackend(tile_px=256), photo.rgb, h, 10.0, SegmentationConfig(coarse_factor=0.5)
    )
    # nothing confirmed even at full resolution: the region pass at 10 px/mm is what is measured
    assert seg.grid.px_per_mm == 10.0 and seg.grid.width > 400
    mask = ulcer_mask(seg.probability, 0.5, 10.0, 0.3, 3.0, seg.exclude)
    assert mask.sum() / 100 == pytest.approx(photo.true_area_mm2, rel=0.05)


def test_when_the_fine_pass_finds_nothing_the_whole_search_region_is_kept() -> None:
    from ulcerseg.calibration.marker import calibrate, homography_matrix
    from ulcerseg.config import SegmentationConfig
    from ulcerseg.segmentation.inference import segment_photo

    class CoarseOnlyBackend(RednessBackend):
        """Sees 'ulcer' at coarse scale only (like a weak model's false candidate)."""

        def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
            prob = super().predict_proba(tiles)
            return prob if self.calls == 1 else np.zeros_like(prob)

    photo = make_photo(px_per_mm=14, size=(1600, 1200))
    cal = calibrate(photo.rgb, "DICT_4X4_50", (0,), 10.0)
    # coarse pass at 5 px/mm: the search disc fits one window, so call 1 is the coarse pass
    coarse_in_one_call = SegmentationConfig(coarse_factor=0.5)
    h = homography_matrix(cal)
    no_recheck = SegmentationConfig(coarse_factor=0.5, recheck_full_resolution=False)
    seg = segment_photo(CoarseOnlyBackend(tile_px=256), photo.rgb, h, 10.0, no_recheck)
    assert seg.grid.px_per_mm == 5.0  # the coarse search grid
    assert seg.grid.width * seg.grid.height / 25 > 0.5 * (1600 / 14) * (1200 / 14)
    assert seg.found_candidates and len(seg.candidate_scores) == 1
    # by default "nothing here" is decided at full resolution: the region searched once more at
    # the model's px/mm is what the assessor sees
    backend = CoarseOnlyBackend(tile_px=256)
    seg = segment_photo(backend, photo.rgb, h, 10.0, coarse_in_one_call)
    assert seg.grid.px_per_mm == 10.0
    assert seg.grid.width * seg.grid.height / 100 > 0.5 * (1600 / 14) * (1200 / 14)
    assert not (seg.probability > 0).any() and not seg.found_candidates
    # what the coarse pass saw and nothing confirmed is kept: "no ulcer" is not conclusive
    assert seg.unconfirmed_candidate_mm2 == pytest.approx(photo.true_area_mm2, rel=0.2)


def test_large_photo_uses_a_downscaled_preview_without_losing_accuracy(tmp_path: Path) -> None:
    from ulcerseg.pipeline import PhotoMeasurer, load_photo
    from ulcerseg.records import PhotoRecord

    photo = make_photo(px_per_mm=30, size=(3200, 2400), ulcer_radius_mm=(2.0, 1.5))
    path = write_jpeg(tmp_path / "S1" / "D0" / "U1.jpg", photo.rgb)
    record = PhotoRecord(path, "S1", "U1", "D0", 0, sha256_bytes(path.read_bytes()))
    loaded = load_photo(record, preview_max_side_px=1600)
    assert loaded.preview is not None and loaded.preview.scale == pytest.approx(0.5)
    result = PhotoMeasurer(PipelineConfig(), RednessBackend()).measure(record, tmp_path / "out", loaded)
    assert result.status == "measured", result.messages
    assert result.measurement is not None
    assert result.measurement.area_mm2 == pytest.approx(photo.true_area_mm2, rel=0.05)
    assert result.calibration is not None and result.calibration.mm_per_px == pytest.approx(1 / 30, rel=0.01)
    assert result.overlay_path is not None and result.overlay_path.is_file()


def test_marker_white_border_neutralises_a_colour_cast() -> None:
    from ulcerseg.calibration.rectify import rectify
    from ulcerseg.geometry import RectifiedGrid
    from ulcerseg.segmentation.inference import apply_gains, marker_white_gains

    photo = make_photo(px_per_mm=14, size=(800, 600))
    # a warm cast that clips nothing (clipped channels carry no colour information)
    cast = (photo.rgb.astype(np.float32) * [0.92, 0.8, 0.62]).astype(np.uint8)
    grid = RectifiedGrid((-5.0, -5.0), 5.0, 150, 100)
    image = rectify(cast, np.linalg.inv(photo.h_mm_to_px), grid)
    gains = marker_white_gains(image, grid, 10.0)
    assert gains is not None
    assert gains[0] < 1.0 < gains[2]
    corrected = apply_gains(image, gains).astype(float)
    white = corrected[20, 30:70]  # y = -1 mm (row 20 at 5 px/mm from -5 mm): the white border
    assert np.ptp(white.mean(axis=0)) < 0.03 * white.mean()


def test_the_marker_paper_is_the_exposure_reference_so_dark_skin_is_not_underexposed(
    tmp_path: Path,
) -> None:
    """The ulcer's neighbourhood alone said `underexposed` for every well-exposed photo of deeply
    pigmented skin (the end-to-end benchmark with dark skin: 17% of photos, none underexposed)."""
    from ulcerseg.calibration.rectify import rectify
    from ulcerseg.geometry import RectifiedGrid
    from ulcerseg.pipeline import PhotoMeasurer, load_photo
    from ulcerseg.records import Flag, PhotoRecord
    from ulcerseg.segmentation.inference import marker_white_luma

    photo = make_photo(px_per_mm=14, size=(800, 600), skin_rgb=(38, 22, 16))
    grid = RectifiedGrid((-5.0, -5.0), 5.0, 150, 100)
    image = rectify(photo.rgb, np.linalg.inv(photo.h_mm_to_px), grid)
    assert marker_white_luma(image, grid, 10.0) == pytest.approx(255, abs=3)  # the printed paper
    assert marker_white_luma(image, RectifiedGrid((40.0, 40.0), 5.0, 150, 100), 10.0) is None
    # the marker at the photo's edge: the fill outside the photo is not paper
    half = np.zeros(image.shape[:2], bool)
    half[:, :35] = True  # x < 2 mm: the ring's left side only
    edge = image.copy()
    edge[~half] = 0
    assert marker_white_luma(edge, grid, 10.0) < 100  # mostly fill
    assert marker_white_luma(edge, grid, 10.0, half) == pytest.approx(255, abs=3)

    def measured(rgb: np.ndarray, name: str):
        path = write_jpeg(tmp_path / name / "D0" / "U1.jpg", rgb)
        record = PhotoRecord(path, name, "U1", "D0", 0, sha256_bytes(path.read_bytes()))
        measurer = PhotoMeasurer(PipelineConfig(), RednessBackend())
        result = measurer.measure(record, tmp_path / "out", load_photo(record))
        assert result.status == "measured" and result.signals is not None, result.messages
        return result

    well_exposed = measured(photo.rgb, "S1")
    assert well_exposed.signals.mean_luma < PipelineConfig().quality.min_mean_luma  # dark skin
    assert well_exposed.signals.marker_white_luma > 200
    assert Flag.UNDEREXPOSED not in well_exposed.flags
    # the bend marker_distorted is decided on is recorded with the signals (a flat marker: ~0)
    assert well_exposed.signals.marker_bend == well_exposed.calibration.bend < 0.02
    # the same scene with a third of the light: the paper is dark too
    dim = measured((photo.rgb.astype(np.float32) * 0.35).astype(np.uint8), "S2")
    assert dim.signals.marker_white_luma < PipelineConfig().quality.min_marker_white_luma
    assert Flag.UNDEREXPOSED in dim.flags


class _DarkBackend(RednessBackend):
    """Sees dark pixels (luma below 28) as the ulcer: a network that outlines black eschar."""

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        luma = tiles.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return (1.0 / (1.0 + np.exp(np.clip((luma - 28.0) / 2.0, -50, 50)))).astype(np.float32)


def test_eschar_on_deeply_pigmented_skin_is_a_dark_bed_by_the_marker_paper(tmp_path: Path) -> None:
    """Black eschar (L* ~8) on dark skin (L* ~14) is not "far darker" than the skin; it is far
    darker than the marker's white paper, which the pipeline passes to the dark-bed rule."""
    from dataclasses import replace

    from ulcerseg.pipeline import PhotoMeasurer, load_photo
    from ulcerseg.records import Flag, PhotoRecord

    photo = make_photo(px_per_mm=14, size=(800, 600), skin_rgb=(50, 32, 25), ulcer_rgb=(25, 20, 18),
                       ulcer_radius_mm=(3.0, 2.5))  # fmt: skip
    path = write_jpeg(tmp_path / "S1" / "D0" / "U1.jpg", photo.rgb)
    record = PhotoRecord(path, "S1", "U1", "D0", 0, sha256_bytes(path.read_bytes()))
    config = PipelineConfig()

    def measured(cfg: PipelineConfig):
        result = PhotoMeasurer(cfg, _DarkBackend(tile_px=256)).measure(
            record, tmp_path / "out", load_photo(record)
        )
        assert result.status == "measured" and result.signals is not None, result.messages
        assert result.measurement is not None
        assert result.measurement.area_mm2 == pytest.approx(photo.true_area_mm2, rel=0.15)
        return result

    with_paper = measured(config)
    assert with_paper.signals.dark_bed_fraction > 0.9 and Flag.DARK_BED in with_paper.flags
    skin_only = measured(replace(config, quality=replace(config.quality, dark_bed_paper_ratio=0.0)))
    assert skin_only.signals.dark_bed_fraction < 0.5 and Flag.DARK_BED not in skin_only.flags


class _BlindToSmallBackend(RednessBackend):
    """Sees red blobs only from ``min_px`` pixels up, as the real network misses a small ulcer
    at the coarse scale that it sees at its own px/mm."""

    def __init__(self, min_px: int) -> None:
        super().__init__(tile_px=256)
        self.min_px = min_px

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        import cv2

        prob = super().predict_proba(tiles)
        for p in prob:
            _n, labels, stats, _c = cv2.connectedComponentsWithStats((p >= 0.1).astype(np.uint8))
            small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < self.min_px)
            p[np.isin(labels, small[small > 0])] = 0.0
        return prob


def test_a_small_ulcer_missed_at_the_coarse_scale_is_found_at_full_resolution() -> None:
    """no_ulcer_found (the finding of a healed ulcer) is decided at the model's px/mm: with no
    coarse candidate the region is searched again at full resolution."""
    from ulcerseg.calibration.marker import calibrate, homography_matrix
    from ulcerseg.config import SegmentationConfig
    from ulcerseg.segmentation.inference import segment_photo
    from ulcerseg.segmentation.postprocess import ulcer_mask

    # 3.8 mm²: 225 px at the coarse 7.5 px/mm (unseen below 300 px), 395 px at 10 px/mm
    photo = make_photo(px_per_mm=14, size=(1600, 1200), ulcer_radius_mm=(1.2, 1.0))
    h = homography_matrix(calibrate(photo.rgb, "DICT_4X4_50", (0,), 10.0))
    backend = _BlindToSmallBackend(min_px=300)
    seg = segment_photo(backend, photo.rgb, h, 10.0, SegmentationConfig())
    assert seg.found_candidates and seg.grid.px_per_mm == 10.0
    mask = ulcer_mask(seg.probability, 0.5, 10.0, 0.3, 3.0, seg.exclude)
    assert mask.sum() / 100 == pytest.approx(photo.true_area_mm2, rel=0.15)
    assert max(seg.grid.width, seg.grid.height) < 300  # measured on a fine crop, as usual
    no_recheck = SegmentationConfig(recheck_full_resolution=False)
    assert not segment_photo(backend, photo.rgb, h, 10.0, no_recheck).found_candidates


def test_flip_tta_mirrors_predictions_back() -> None:
    from ulcerseg.segmentation.inference import with_flip_tta

    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)

    def pixelwise(t: np.ndarray) -> np.ndarray:  # equivariant to flips: TTA changes nothing
        return t[..., 0].astype(np.float32) / 255.0

    for mode in ("none", "hflip", "flips"):
        np.testing.assert_allclose(with_flip_tta(pixelwise, mode)(tiles), pixelwise(tiles), atol=1e-6)

    def x_ramp(t: np.ndarray) -> np.ndarray:  # sees only position: mirrored passes average it out
        return np.broadcast_to(np.linspace(0.0, 1.0, t.shape[2], dtype=np.float32), t.shape[:3]).copy()

    np.testing.assert_allclose(with_flip_tta(x_ramp, "hflip")(tiles), 0.5, atol=1e-6)
    np.testing.assert_allclose(with_flip_tta(x_ramp, "none")(tiles), x_ramp(tiles))
    with pytest.raises(ValueError, match="unknown test-time augmentation 'rot'"):
        with_flip_tta(x_ramp, "rot")


def test_tta_in_the_config_multiplies_network_passes() -> None:
    from ulcerseg.calibration.marker import calibrate, homography_matrix
    from ulcerseg.config import SegmentationConfig
    from ulcerseg.segmentation.inference import segment_photo
    from ulcerseg.segmentation.postprocess import ulcer_mask

    photo = make_photo(px_per_mm=14, size=(1600, 1200))
    cal = calibrate(photo.rgb, "DICT_4X4_50", (0,), 10.0)
    counts = {}
    for mode in ("none", "flips"):
        backend = RednessBackend(tile_px=256)
        config = SegmentationConfig(tta=mode, mirror_check=False)  # the check is one pass, not tta
        seg = segment_photo(backend, photo.rgb, homography_matrix(cal), 10.0, config)
        counts[mode] = backend.calls
        mask = ulcer_mask(seg.probability, 0.5, 10.0, 0.3, 3.0, seg.exclude)
        assert mask.sum() / 100 == pytest.approx(photo.true_area_mm2, rel=0.05)
    assert counts["flips"] == 4 * counts["none"]


def _measure_with(config: PipelineConfig, record: PhotoRecord, out: Path) -> tuple[LoadedPhoto, PhotoResult]:
    from ulcerseg.pipeline import PhotoMeasurer

    measurer = PhotoMeasurer(config, RednessBackend())
    loaded = measurer.load(record)
    return loaded, measurer.measure(record, out, loaded)


def test_reduced_decode_measures_like_a_full_decode(tmp_path: Path) -> None:
    """A 50 px/mm photo is decoded at half size (25 px/mm >= 2 x 10 px/mm): same numbers, and
    the calibration is recorded in the photo's own px."""
    from ulcerseg.config import with_overrides
    from ulcerseg.records import PhotoRecord

    photo = make_photo(px_per_mm=50, size=(3200, 2400), ulcer_radius_mm=(2.0, 1.5))
    path = write_jpeg(tmp_path / "S1" / "D0" / "U1.jpg", photo.rgb)
    record = PhotoRecord(path, "S1", "U1", "D0", 0, sha256_bytes(path.read_bytes()))
    full_cfg = with_overrides(PipelineConfig(), segmentation={"min_decode_oversampling": 0.0})
    full_loaded, full = _measure_with(full_cfg, record, tmp_path / "full")
    half_loaded, half = _measure_with(PipelineConfig(), record, tmp_path / "half")
    assert full_loaded.reduction == 1 and half_loaded.reduction == 2
    assert half_loaded.rgb is not None and half_loaded.rgb.shape[:2] == (1200, 1600)
    assert full.status == half.status == "measured", (full.messages, half.messages)
    assert full.measurement is not None and half.measurement is not None
    # the two decodes differ by JPEG/resampling noise on the boundary of a 950 px ulcer (9.50 vs
    # 9.65 mm², true 9.55, with the recentred crop; 9.53 vs 9.62 without)
    assert half.measurement.area_mm2 == pytest.approx(full.measurement.area_mm2, rel=0.02)
    assert half.measurement.area_mm2 == pytest.approx(photo.true_area_mm2, rel=0.05)
    assert full.calibration is not None and half.calibration is not None
    assert half.calibration.mm_per_px == pytest.approx(1 / 50, rel=0.003)
    assert np.abs(np.subtract(half.calibration.corners_px, full.calibration.corners_px)).max() < 1.0
    assert half.image_size == full.image_size == (3200, 2400)
    assert half.overlay_path is not None and half.overlay_path.is_file()


def test_reduced_decode_too_coarse_for_the_fine_pass_is_decoded_again(tmp_path: Path) -> None:
    """At 30 px/mm a half-size decode keeps 15 px/mm < 2 x 10: the photo is decoded in full
    (from the same bytes) and measures exactly as a full decode does."""
    from ulcerseg.config import with_overrides
    from ulcerseg.records import PhotoRecord

    photo = make_photo(px_per_mm=30, size=(3200, 2400), ulcer_radius_mm=(2.0, 1.5))
    path = write_jpeg(tmp_path / "S1" / "D0" / "U1.jpg", photo.rgb)
    record = PhotoRecord(path, "S1", "U1", "D0", 0, sha256_bytes(path.read_bytes()))
    first, adaptive = _measure_with(PipelineConfig(), record, tmp_path / "a")
    assert first.reduction == 2  # tried first, from the size alone
    full_cfg = with_overrides(PipelineConfig(), segmentation={"min_decode_oversampling": 0.0})
    _, full = _measure_with(full_cfg, record, tmp_path / "b")
    assert adaptive.calibration == full.calibration
    assert adaptive.measurement == full.measurement


def test_decode_reductions_follow_size_and_marker_scale() -> None:
    from ulcerseg.pipeline import first_reduction, needed_reduction

    assert first_reduction(4000, 3000, 2.0) == 2
    assert first_reduction(8000, 6000, 2.0) == 4
    assert first_reduction(1600, 1200, 2.0) == 1
    assert first_reduction(4000, 3000, 0.0) == 1  # switched off
    assert needed_reduction(60.0, 10.0, 2.0) == 2  # 30 px/mm decoded
    assert needed_reduction(85.0, 10.0, 2.0) == 4
    assert needed_reduction(19.0, 10.0, 2.0) == 1
    assert needed_reduction(200.0, 10.0, 0.0) == 1


def test_input_errors_come_before_model_errors_and_a_bad_model_is_one_line(tmp_path: Path) -> None:
    """The model loads beside discovery: a folder without photos is still reported as such
    (not as the missing model), and with photos the missing model is the error."""
    from ulcerseg.config import with_overrides
    from ulcerseg.errors import ModelError, NoPhotosError

    cfg = with_overrides(PipelineConfig(), segmentation={"model": str(tmp_path / "no-such-model")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoPhotosError):
        measure_study(tmp_path / "empty", tmp_path / "out", cfg)
    write_jpeg(tmp_path / "in" / "S1" / "D0" / "U1.jpg", make_photo().rgb)
    with pytest.raises(ModelError, match="no-such-model"):
        measure_study(tmp_path / "in", tmp_path / "out", cfg)
    assert not (tmp_path / "out" / "study.sqlite").exists()


def test_a_photo_replaced_during_the_run_is_not_measured_under_the_old_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discovery hashes the photos first; a file whose bytes change before it is measured (a
    photo replaced, or still being copied) fails as file_changed, retryable, instead of storing
    the new bytes' areas under the old bytes' SHA-256; the next run measures the new bytes."""
    import ulcerseg.pipeline as pipeline
    from ulcerseg.discover import discover

    root = tmp_path / "trial"
    for rel, radius in (("S1/D0/U1.jpg", (2.5, 1.8)), ("S1/W4/U1.jpg", (2.0, 1.5))):
        write_jpeg(root / rel, make_photo(ulcer_radius_mm=radius, px_per_mm=14, size=(800, 600)).rgb)
    stale = discover(root, PipelineConfig().discovery)
    replacement = make_photo(ulcer_radius_mm=(1.5, 1.2), px_per_mm=14, size=(800, 600))
    write_jpeg(root / "S1" / "W4" / "U1.jpg", replacement.rgb)  # after discovery, before measuring
    with monkeypatch.context() as m:
        m.setattr(pipeline, "discover", lambda *a, **k: stale)
        first = measure_study(root, tmp_path / "out", PipelineConfig(), backend=RednessBackend())
    rows = _rows(tmp_path / "out")
    assert rows["S1/D0/U1.jpg"]["status"] == "measured"
    changed = rows["S1/W4/U1.jpg"]
    assert changed["status"] == "failed" and changed["flags"] == "file_changed"
    assert changed["area_mm2"] == "" and "changed after it was found" in changed["error"]
    assert first.n_failed == 1
    again = measure_study(root, tmp_path / "out", PipelineConfig(), backend=RednessBackend())
    row = _rows(tmp_path / "out")["S1/W4/U1.jpg"]
    assert again.n_measured == 1 and row["status"] == "measured"
    assert row["photo_sha256"] == sha256_bytes((root / "S1" / "W4" / "U1.jpg").read_bytes())
    assert float(row["area_mm2"]) == pytest.approx(replacement.true_area_mm2, rel=0.1)


def test_going_back_to_an_earlier_config_measures_again_and_the_tables_show_it(tmp_path: Path) -> None:
    """Config A, then B, then A again: the third run measures again, so measurements.csv shows
    A's numbers under A's run (the skip looked for any row of A, while the tables show the newest)."""
    from ulcerseg.config import with_overrides

    root = tmp_path / "trial"
    write_jpeg(root / "S1" / "D0" / "U1.jpg", make_photo(px_per_mm=14, size=(800, 600)).rgb)
    a = PipelineConfig()
    b = with_overrides(a, segmentation={"min_area_mm2": 0.5})
    out = tmp_path / "out"
    runs = [measure_study(root, out, cfg, backend=RednessBackend()) for cfg in (a, b, a)]
    assert [r.n_measured for r in runs] == [1, 1, 1]
    sha_a = effective_config(a, RednessBackend().card, "full").sha256()
    (row,) = _rows(out).values()
    assert row["config_sha256"] == sha_a and row["run_id"] == str(runs[2].run_id)
    again = measure_study(root, out, a, backend=RednessBackend())  # now it is current: skipped
    assert again.n_measured == 0 and again.n_skipped == 1


def test_an_interrupted_run_still_exports_the_rows_it_stored(tmp_path: Path) -> None:
    """Ctrl-C after the first photo is stored: measurements.csv holds that photo's row, as
    study.sqlite does, instead of nothing (or the previous run's rows)."""
    root = tmp_path / "trial"
    for visit in ("D0", "W4", "W8"):
        write_jpeg(root / "S1" / visit / "U1.jpg", make_photo(px_per_mm=14, size=(800, 600)).rgb)
    out = tmp_path / "out"

    def stop(result: PhotoResult) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        measure_study(root, out, PipelineConfig(), backend=RednessBackend(), on_result=stop)
    rows = _rows(out)
    with sqlite3.connect(out / "study.sqlite") as con:
        stored = con.execute("SELECT file, status FROM latest_measurements").fetchall()
    assert len(stored) == 1 and len(rows) == 3
    ((file, status),) = stored
    assert rows[file]["status"] == status == "measured"
    # the photos found but not reached are listed, not left out
    others = [r for f, r in rows.items() if f != file]
    assert all(r["status"] == "unmeasured" and r["flags"] == "not_measured" for r in others)


def test_a_failure_while_writing_one_photos_files_does_not_stop_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only OS errors: whatever goes wrong drawing one photo's overlay makes that photo a
    failed row (processing_error) and the batch goes on."""
    import ulcerseg.pipeline as pipeline

    root = tmp_path / "trial"
    for visit, radius in (("D0", (2.5, 1.8)), ("W4", (2.0, 1.5)), ("W8", (1.5, 1.2))):
        photo = make_photo(ulcer_radius_mm=radius, px_per_mm=14, size=(800, 600))
        write_jpeg(root / "S1" / visit / "U1.jpg", photo.rgb)
    real = pipeline.render_overlay
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("odd geometry")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "render_overlay", flaky)
    summary = measure_study(root, tmp_path / "out", PipelineConfig(), backend=RednessBackend())
    rows = _rows(tmp_path / "out")
    statuses = sorted(r["status"] for r in rows.values())
    assert statuses == ["failed", "measured", "measured"] and summary.n_failed == 1
    (bad,) = [r for r in rows.values() if r["status"] == "failed"]
    assert bad["flags"] == "processing_error" and "ValueError: odd geometry" in bad["error"]


def test_a_photo_relabelled_in_the_manifest_is_measured_again_under_its_new_labels(tmp_path: Path) -> None:
    """The same bytes, moved to another subject and visit by a manifest edit: the photos table
    followed, but the photo was skipped, so its mask and overlay kept the old subject's name
    (and the overlay's header said S1 D0)."""
    write_jpeg(tmp_path / "p1.jpg", make_photo(px_per_mm=14, size=(800, 600)).rgb)
    manifest = tmp_path / "manifest.csv"
    out = tmp_path / "out"
    manifest.write_text("subject,ulcer,visit,path\nS1,U1,D0,p1.jpg\n")
    measure_study(manifest, out, PipelineConfig(), backend=RednessBackend())
    manifest.write_text("subject,ulcer,visit,path\nS7,U3,W8,p1.jpg\n")
    again = measure_study(manifest, out, PipelineConfig(), backend=RednessBackend())
    (row,) = _rows(out).values()
    assert again.n_measured == 1 and (row["subject_id"], row["visit"]) == ("S7", "W8")
    assert row["mask_file"].startswith("masks/S7_U3_W8_")
    assert row["overlay_file"].startswith("overlays/S7_U3_W8_")
    third = measure_study(manifest, out, PipelineConfig(), backend=RednessBackend())
    assert third.n_measured == 0 and third.n_skipped == 1  # labels unchanged: skipped as before
    # before: the S1_U1_D0_ images stayed beside the S7 ones, one photo filed under two subjects
    # for anyone finding a subject's photos by name; they are moved aside with their rows
    for folder in ("overlays", "masks", "rectified"):
        assert [p.name[:9] for p in (out / folder).iterdir()] == ["S7_U3_W8_"], folder
        assert [p.name[:9] for p in (out / "superseded" / folder).iterdir()] == ["S1_U1_D0_"]
    assert sorted(again.set_aside) == sorted(
        f"{folder}/{(out / 'superseded' / folder).iterdir().__next__().name}"
        for folder in ("overlays", "masks", "rectified")
    )


def test_first_photos_decode_while_the_model_opens_and_measure_the_same(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch
) -> None:
    import threading

    from ulcerseg import pipeline
    from ulcerseg.config import with_overrides

    root = tmp_path / "trial"
    for visit in ("D0", "W4", "W8"):
        write_jpeg(root / "S001" / visit / "U1.jpg", make_photo(px_per_mm=12, size=(640, 480)).rgb)
    cfg = with_overrides(PipelineConfig(), segmentation={"model": str(tiny_model_dir)})
    real_load, real_open = pipeline.load_as_configured, pipeline.open_model
    decoded: list[str] = []
    decoding = threading.Event()

    def load(config, photo, *args, **kwargs):  # type: ignore[no-untyped-def]
        decoded.append(photo.path.parent.name)
        decoding.set()
        return real_load(config, photo, *args, **kwargs)

    def open_model(config):  # type: ignore[no-untyped-def]
        # before: the first decode began only once the model was open (this waited in vain)
        assert decoding.wait(10), "no photo decoded while the model was opening"
        return real_open(config)

    monkeypatch.setattr(pipeline, "load_as_configured", load)
    monkeypatch.setattr(pipeline, "open_model", open_model)
    summary = measure_study(root, tmp_path / "out", cfg)
    assert (summary.n_measured, summary.n_failed) == (3, 0)
    assert sorted(decoded) == ["D0", "W4", "W8"]  # each photo decoded once, early or not
    # the same numbers as a run whose model was open before it started (no early decode)
    reference = measure_study(root, tmp_path / "ref", effective_config(cfg, real_open(cfg).card),
                              backend=real_open(cfg))  # fmt: skip
    assert reference.n_measured == 3
    cols = ("area_mm2", "perimeter_mm", "mm_per_px", "flags", "config_sha256")
    ours, theirs = _rows(tmp_path / "out"), _rows(tmp_path / "ref")
    assert {f: [r[c] for c in cols] for f, r in ours.items()} == {
        f: [r[c] for c in cols] for f, r in theirs.items()
    }
    # a photo measured already is decoded early, then dropped: only the new one is measured
    write_jpeg(root / "S001" / "W12" / "U1.jpg", make_photo(px_per_mm=12, size=(640, 480)).rgb)
    decoded.clear()
    again = measure_study(root, tmp_path / "out", cfg)
    assert (again.n_measured, again.n_skipped) == (1, 3)
    assert decoded.count("W12") == 1 and len(decoded) <= 3


def test_output_folder_may_not_be_the_photo_folder_itself(tmp_path: Path, monkeypatch) -> None:
    # before: accepted; the next run listed its own tables, masks and overlays as stray files
    # (36 unexpected_layout rows on the sample trial, exit 1)
    from ulcerseg.errors import InputError

    root = tmp_path / "trial"
    write_jpeg(root / "S001" / "D0" / "U1.jpg", make_photo(px_per_mm=12, size=(640, 480)).rgb)
    with pytest.raises(InputError, match="the output folder is the photo folder itself"):
        measure_study(root, root, PipelineConfig(), backend=RednessBackend())
    monkeypatch.chdir(root)
    with pytest.raises(InputError, match="photo folder itself"):
        measure_study(Path("."), Path(str(root) + "/"), PipelineConfig(), backend=RednessBackend())
    assert sorted(p.name for p in root.iterdir()) == ["S001"]  # nothing written among the photos
    summary = measure_study(root, root / "out", PipelineConfig(), backend=RednessBackend())
    assert summary.n_measured == 1  # a folder inside the photo folder is fine
    # a manifest's folder is its photo folder (before: accepted, outputs among the photos)
    (root / "m.csv").write_text("subject,ulcer,visit,path\nS001,U1,D0,S001/D0/U1.jpg\n")
    with pytest.raises(InputError, match="the output folder is the photo folder itself"):
        measure_study(root / "m.csv", root, PipelineConfig(), backend=RednessBackend())


def test_a_manifest_run_records_the_manifests_folder_as_the_root_of_its_files(tmp_path: Path) -> None:
    """Rows' ``file`` is relative to the manifest's folder, but the run recorded the manifest
    itself as ``input_root``: ``<input_root>/<file>`` (manifest.csv/p/a.jpg) never existed, so
    the review could not find a manifest study's photos (no manual-scale items, no native view)."""
    from ulcerseg.store.db import connect
    from ulcerseg.store.study import photo_source

    write_jpeg(tmp_path / "p" / "a.jpg", make_photo(px_per_mm=14, size=(800, 600)).rgb)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("subject,ulcer,visit,path\nS1,U1,D0,p/a.jpg\n")
    measure_study(manifest, tmp_path / "out", PipelineConfig(), backend=RednessBackend())
    (row,) = _rows(tmp_path / "out").values()
    conn = connect(tmp_path / "out" / "study.sqlite")
    try:
        source = photo_source(conn, row["photo_sha256"])
    finally:
        conn.close()
    assert source is not None and source.input_root == tmp_path.resolve()
    assert (source.input_root / source.file).is_file()


@pytest.mark.parametrize("blocked", ["measurements.csv", "run.json", "study.sqlite"])
def test_an_output_file_that_cannot_be_written_is_named_in_the_one_line_error(
    tmp_path: Path, blocked: str
) -> None:
    """A folder where measurements.csv (run.json, study.sqlite) goes, like a full disk, said
    only "OUT: cannot write the output folder (Is a directory)": the file was not named."""
    from ulcerseg.errors import OutputError

    write_jpeg(tmp_path / "in" / "S1" / "D0" / "U1.jpg", make_photo(px_per_mm=14, size=(800, 600)).rgb)
    out = tmp_path / "out"
    (out / blocked).mkdir(parents=True)
    with pytest.raises(OutputError) as err:
        measure_study(tmp_path / "in", out, PipelineConfig(), backend=RednessBackend())
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{out / blocked}: cannot write (")


def test_threads_and_parallel_photos_change_neither_the_csv_nor_what_a_resume_skips(tmp_path: Path) -> None:
    """The config hash covered --threads and --parallel-photos, which change no number: the same
    photos gave another config_sha256 in measurements.csv, and a run resumed with another
    setting measured every photo again."""
    from ulcerseg.config import with_overrides

    root = tmp_path / "in"
    for i, visit in enumerate(("D0", "W4", "W8")):
        write_jpeg(root / "S1" / visit / "U1.jpg", make_photo(px_per_mm=14, size=(640, 480)).rgb, 90 - i)
    slow = with_overrides(PipelineConfig(), segmentation={"threads": 1, "parallel_photos": 1})
    fast = with_overrides(PipelineConfig(), segmentation={"threads": 2, "parallel_photos": 3})
    tables = []
    for name, cfg in (("a", slow), ("b", fast)):
        measure_study(root, tmp_path / name, cfg, backend=RednessBackend())
        rows = _rows(tmp_path / name)
        tables.append(
            {f: {k: v for k, v in r.items() if k not in ("run_id", "measured_at")} for f, r in rows.items()}
        )
    assert tables[0] == tables[1]
    again = measure_study(root, tmp_path / "a", fast, backend=RednessBackend())
    assert again.n_skipped == 3 and again.n_measured == 0
    changed = with_overrides(fast, segmentation={"min_area_mm2": 0.5})
    assert measure_study(root, tmp_path / "a", changed, backend=RednessBackend()).n_skipped == 0


def test_start_up_cleanup_keeps_another_commands_write_in_progress(tmp_path: Path) -> None:
    """measure removed every *.tmp in the output folder at start-up, including the temporary of
    a table that a running heal or review server was writing (its rename then failed)."""
    (tmp_path / "masks").mkdir()
    live = tmp_path / f".final_visits.csv.{os.getpid()}.0a1b2c3d4e5f.tmp"  # this process runs
    dead = tmp_path / ".healing.csv.999999999.0a1b2c3d4e5f.tmp"  # no such process
    killed_png = tmp_path / "masks" / "S001_U1_D0_05a3fbde.tmp"  # write_png's, measure's own
    for path in (live, dead, killed_png):
        path.write_bytes(b"partial")
    pipeline._clean_stale_temporaries(tmp_path)
    assert live.exists() and not dead.exists() and not killed_png.exists()


def test_another_studys_photos_are_refused_instead_of_marking_this_one_missing(tmp_path: Path) -> None:
    """Measuring another photo folder into an existing output folder marked every photo of the
    study there missing_file, without a word; it is now a one-line input error, nothing changed."""
    from ulcerseg.errors import InputError

    rgb = make_photo().rgb
    study_a, out = tmp_path / "a", tmp_path / "out"
    write_jpeg(study_a / "S001" / "D0" / "U1.jpg", rgb)
    write_jpeg(study_a / "S001" / "W4" / "U1.jpg", rgb, quality=90)
    measure_study(study_a, out, PipelineConfig(), backend=RednessBackend())
    before = (out / "measurements.csv").read_bytes()
    other = tmp_path / "b"  # another study: other bytes, one path in common (S001/D0/U1.jpg)
    write_jpeg(other / "S001" / "D0" / "U1.jpg", rgb, quality=80)
    write_jpeg(other / "P900" / "W4" / "U7.jpg", rgb, quality=70)
    with pytest.raises(InputError) as info:
        measure_study(other, out, PipelineConfig(), backend=RednessBackend())
    msg = str(info.value)
    assert "holds a study of 2 photo(s) measured from" in msg and str(study_a.resolve()) in msg
    assert "\n" not in msg
    assert (out / "measurements.csv").read_bytes() == before
    # one photo of the study filed in the other folder too: before, one shared photo let the
    # other folder in, and the study's other photo became missing_file
    shutil.copyfile(study_a / "S001" / "W4" / "U1.jpg", other / "P900" / "W4" / "U8.jpg")
    with pytest.raises(InputError, match=r"only 1 of which are under .* would mark 1 of them missing_file"):
        measure_study(other, out, PipelineConfig(), backend=RednessBackend())
    assert (out / "measurements.csv").read_bytes() == before
    # the same study moved to another folder (same bytes), then reorganised (same bytes, new
    # paths), then its photos rewritten in place (new bytes, same folder and paths) is fine
    study_a.rename(tmp_path / "moved")
    moved = tmp_path / "moved"
    assert measure_study(moved, out, PipelineConfig(), backend=RednessBackend()).n_skipped == 2
    (moved / "S001" / "W4" / "U1.jpg").rename(moved / "S001" / "W4" / "U2.jpg")
    renamed = measure_study(moved, out, PipelineConfig(), backend=RednessBackend())
    assert list(renamed.reconciled.moved) == [("S001/W4/U1.jpg", "S001/W4/U2.jpg")]
    write_jpeg(moved / "S001" / "D0" / "U1.jpg", rgb, quality=60)
    write_jpeg(moved / "S001" / "W4" / "U2.jpg", rgb, quality=50)
    rewritten = measure_study(moved, out, PipelineConfig(), backend=RednessBackend())
    assert sorted(rewritten.reconciled.replaced) == ["S001/D0/U1.jpg", "S001/W4/U2.jpg"]


def test_a_damaged_exif_orientation_read_only_by_the_decoder_gives_the_decoded_size(tmp_path: Path) -> None:
    """An orientation entry of an unknown type: Pillow drops it, OpenCV turns the pixels by
    it. The row reported the stored size (width and height swapped) and the search coverage
    was computed on that frame, while the turned pixels were measured."""
    import struct

    from ulcerseg.pipeline import load_photo

    buf = io.BytesIO()
    Image.fromarray(np.zeros((90, 60, 3), np.uint8)).save(buf, "JPEG")  # stored 60 x 90 px
    jpeg = buf.getvalue()
    entry = struct.pack(">HHI", 0x0112, 0x4703, 1) + struct.pack(">H", 6) + b"\0\0"  # type 0x4703
    payload = b"Exif\0\0MM\0*" + struct.pack(">IH", 8, 1) + entry + struct.pack(">I", 0)
    data = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]
    path = tmp_path / "U1.jpg"
    path.write_bytes(data)
    loaded = load_photo(PhotoRecord(path, "S1", "U1", "D0", 0, sha256_bytes(data)))
    assert loaded.error is None and loaded.rgb is not None and loaded.info is not None
    height, width = loaded.rgb.shape[:2]
    assert (loaded.info.width, loaded.info.height) == (width, height)


def test_images_of_a_missing_photo_stay_and_those_of_replaced_bytes_are_set_aside(tmp_path: Path) -> None:
    """A missing photo's newest row (status missing) still names its images: they stay. A photo
    replaced by new bytes gets new images (another hash in the name); the old ones move to
    OUT/superseded/, not deleted: they are the superseded row's."""
    root, out = tmp_path / "trial", tmp_path / "out"
    rgb = make_photo(px_per_mm=12, size=(640, 480)).rgb
    write_jpeg(root / "S001" / "D0" / "U1.jpg", rgb)
    write_jpeg(root / "S001" / "W4" / "U1.jpg", rgb, quality=90)
    measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    before = {folder: sorted(p.name for p in (out / folder).iterdir()) for folder in ("overlays", "masks")}
    (root / "S001" / "D0" / "U1.jpg").unlink()
    write_jpeg(root / "S001" / "W4" / "U1.jpg", rgb, quality=80)
    summary = measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    for folder in ("overlays", "masks"):
        now = sorted(p.name for p in (out / folder).iterdir())
        assert now[0] == before[folder][0] and now[0].startswith("S001_U1_D0_")  # the missing photo's
        assert now[1].startswith("S001_U1_W4_") and now[1] != before[folder][1]  # the new bytes'
        assert [p.name for p in (out / "superseded" / folder).iterdir()] == [before[folder][1]]
        assert f"{folder}/{before[folder][1]}" in summary.set_aside


def test_photos_renamed_in_place_in_the_same_folder_are_the_same_study(tmp_path: Path) -> None:
    """Guards ``n_found`` in the same-folder rule of ``unrelated_to``: every photo of the study
    renamed in its own folder (no path shared, all bytes found) is this study reorganised, not
    another study (before the rule, the run was refused as if every photo would turn
    missing_file)."""
    rgb = make_photo().rgb
    root, out = tmp_path / "study", tmp_path / "out"
    write_jpeg(root / "S001" / "D0" / "U1.jpg", rgb)
    measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    (root / "S001" / "D0" / "U1.jpg").rename(root / "S001" / "D0" / "U2.jpg")
    renamed = measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    assert list(renamed.reconciled.moved) == [("S001/D0/U1.jpg", "S001/D0/U2.jpg")]


def test_the_manifests_cardinal_column_designates_the_cardinal_ulcer_for_healing(tmp_path: Path) -> None:
    """The README promised a manifest `cardinal` column; discovery dropped it, so the larger
    ulcer became the cardinal one (`largest_baseline`) and the primary endpoint followed it."""
    from ulcerseg.healing import heal_study
    from ulcerseg.store import Study
    from ulcerseg.store.schema import LATEST_MEASUREMENTS_V2

    small = make_photo(px_per_mm=14, size=(800, 600), ulcer_radius_mm=(1.5, 1.2)).rgb
    large = make_photo(px_per_mm=14, size=(800, 600), ulcer_radius_mm=(3.0, 2.4)).rgb
    for name, rgb in (("small", small), ("large", large)):
        write_jpeg(tmp_path / f"{name}.jpg", rgb)
    manifest, out = tmp_path / "manifest.csv", tmp_path / "out"
    manifest.write_text("subject,ulcer,visit,path,cardinal\nS1,U1,D0,small.jpg,yes\nS1,U2,D0,large.jpg,\n")
    measure_study(manifest, out, PipelineConfig(), backend=RednessBackend())

    def cardinal() -> list[tuple[str, str]]:
        return sorted({(u.ulcer_id, u.cardinal_source) for u in heal_study(out) if u.is_cardinal})

    assert cardinal() == [("U1", "manifest")]  # before: [("U2", "largest_baseline")]
    # the designation follows the manifest of each run (labels are rewritten, nothing re-measured)
    manifest.write_text("subject,ulcer,visit,path\nS1,U1,D0,small.jpg\nS1,U2,D0,large.jpg\n")
    assert measure_study(manifest, out, PipelineConfig(), backend=RednessBackend()).n_measured == 0
    assert cardinal() == [("U2", "largest_baseline")]
    # a study of schema version 4 (no photos.cardinal) is migrated when opened
    manifest.write_text("subject,ulcer,visit,path,cardinal\nS1,U1,D0,small.jpg,1\nS1,U2,D0,large.jpg,0\n")
    conn = sqlite3.connect(out / "study.sqlite")
    conn.executescript(
        "DROP VIEW latest_measurements; ALTER TABLE photos DROP COLUMN cardinal; "
        f"{LATEST_MEASUREMENTS_V2}; PRAGMA user_version = 4;"
    )
    conn.close()
    with Study.open(out) as study:
        assert {r["ulcer_id"]: r["cardinal"] for r in study.latest_measurements()} == {"U1": None, "U2": None}
    measure_study(manifest, out, PipelineConfig(), backend=RednessBackend())
    assert cardinal() == [("U1", "manifest")]
