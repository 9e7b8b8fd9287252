"""The batch rules of ``measure``: which failures the next run retries, the decode reductions
actually used and the run summary's counts."""

import csv
from pathlib import Path

import pytest
from conftest import RednessBackend, make_photo, write_jpeg

from ulcerseg import pipeline
from ulcerseg.config import PipelineConfig
from ulcerseg.errors import CalibrationError
from ulcerseg.imageio import sha256_bytes
from ulcerseg.pipeline import measure_study
from ulcerseg.records import PhotoRecord


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "measurements.csv").open() as fh:
        return {r["file"]: r for r in csv.DictReader(fh)}


def _small_trial(root: Path) -> Path:
    path = write_jpeg(root / "S1" / "D0" / "U1.jpg", make_photo(px_per_mm=14, size=(800, 600)).rgb)
    return path


def test_a_photo_that_changed_while_measured_is_measured_once_its_bytes_are_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """file_changed is the environment's fault (a copy in progress, a sync tool): the row says
    the next run measures it, also when the file then holds the bytes discovery hashed."""
    from ulcerseg.discover import discover

    root = tmp_path / "trial"
    path = _small_trial(root)
    original = path.read_bytes()
    stale = discover(root, PipelineConfig().discovery)
    write_jpeg(path, make_photo(ulcer_radius_mm=(1.5, 1.2), px_per_mm=14, size=(800, 600)).rgb)
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(pipeline, "discover", lambda *a, **k: stale)
        first = measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    assert first.n_failed == 1 and _rows(out)["S1/D0/U1.jpg"]["flags"] == "file_changed"
    path.write_bytes(original)  # the bytes discovery saw, the failed row's SHA-256
    again = measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    assert (again.n_measured, again.n_skipped) == (1, 0)
    row = _rows(out)["S1/D0/U1.jpg"]
    assert row["status"] == "measured" and row["photo_sha256"] == sha256_bytes(original)


def test_running_out_of_memory_on_a_photo_is_retried_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "trial"
    _small_trial(root)
    out = tmp_path / "out"

    def no_memory(*args, **kwargs):
        raise MemoryError

    with monkeypatch.context() as m:
        m.setattr(pipeline, "segment_photo", no_memory)
        first = measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    assert first.n_failed == 1 and _rows(out)["S1/D0/U1.jpg"]["flags"] == "processing_error"
    again = measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    assert (again.n_measured, again.n_failed, again.n_skipped) == (1, 0, 0)


def test_an_error_drawing_the_outputs_is_final_unless_retry_failed_but_out_of_memory_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same photo, model and config fail the same way again: only --retry-failed tries;
    running out of memory is the machine's state, tried by every run."""
    root = tmp_path / "trial"
    _small_trial(root)
    out = tmp_path / "out"
    raised: list[type[BaseException]] = [ValueError]

    def broken(*args, **kwargs):
        raise raised[0]("odd geometry")

    monkeypatch.setattr(pipeline, "render_overlay", broken)
    cfg, backend = PipelineConfig(), RednessBackend()
    runs = [measure_study(root, out, cfg, backend=backend) for _ in range(2)]
    assert [(r.n_failed, r.n_skipped) for r in runs] == [(1, 0), (0, 1)]
    retried = measure_study(root, out, cfg, backend=backend, retry_failed=True)
    assert (retried.n_failed, retried.n_skipped) == (1, 0)
    raised[0] = MemoryError
    runs = [measure_study(root, out, cfg, backend=backend, retry_failed=True)]
    runs += [measure_study(root, out, cfg, backend=backend) for _ in range(2)]
    assert [(r.n_failed, r.n_skipped) for r in runs] == [(1, 0), (1, 0), (1, 0)]


def test_needed_reduction_keeps_exactly_the_asked_oversampling() -> None:
    """At least ``min_oversampling`` decoded px per grid px: 40 px/mm at 1/2 is 20 = 2 x 10."""
    from ulcerseg.pipeline import needed_reduction

    assert needed_reduction(40.0, 10.0, 2.0) == 2
    assert needed_reduction(80.0, 10.0, 2.0) == 4
    assert needed_reduction(160.0, 10.0, 2.0) == 8
    assert needed_reduction(39.0, 10.0, 2.0) == 1


def _decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = pipeline.decode_rgb

    def spy(path, data, reduction=1):
        calls.append(reduction)
        return real(path, data, reduction)

    monkeypatch.setattr(pipeline, "decode_rgb", spy)
    monkeypatch.setattr(pipeline, "_MIN_REDUCED_SIDE_PX", 600)  # a 1600 x 1200 photo tries 1/2
    return calls


def _measure_one(tmp_path: Path, px_per_mm: float):
    from ulcerseg.pipeline import PhotoMeasurer

    path = write_jpeg(tmp_path / "U1.jpg", make_photo(px_per_mm=px_per_mm, size=(1600, 1200)).rgb)
    record = PhotoRecord(path, "S1", "U1", "D0", 0, sha256_bytes(path.read_bytes()))
    return PhotoMeasurer(PipelineConfig(), RednessBackend()).measure(record, tmp_path / "out")


def test_the_marker_scale_in_photo_px_decides_whether_a_finer_decode_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 photo px per mm at 1/2 keeps 25 >= 2 x 10 grid px per mm: one decode; 30 keeps 15: full."""
    calls = _decodes(monkeypatch)
    result = _measure_one(tmp_path / "a", 50)
    assert result.status == "measured" and calls == [2]
    assert result.calibration is not None and result.calibration.mm_per_px == pytest.approx(1 / 50, rel=0.01)
    calls.clear()
    assert _measure_one(tmp_path / "b", 30).status == "measured" and calls == [2, 1]


def test_a_marker_not_found_on_the_reduced_decode_is_looked_for_at_full_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _decodes(monkeypatch)
    real = pipeline.calibrate

    def only_full_size(image, *args, **kwargs):
        if image.shape[0] < 1200:
            raise CalibrationError("no marker found")
        return real(image, *args, **kwargs)

    monkeypatch.setattr(pipeline, "calibrate", only_full_size)
    result = _measure_one(tmp_path, 50)
    assert result.status == "measured", result.messages
    assert calls == [2, 1] and result.image_size == (1600, 1200)


def test_the_summary_counts_failing_skips_apart_from_unchanged_photos(tmp_path: Path) -> None:
    """A file that could not be placed is a problem (exit 1), never an unchanged photo."""
    root = tmp_path / "trial"
    _small_trial(root)
    write_jpeg(root / "S1" / "U9.jpg", make_photo(px_per_mm=14, size=(800, 600)).rgb)  # no visit folder
    out = tmp_path / "out"
    first = measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    assert first.problems and not first.ok
    assert (first.n_photos, first.n_measured, first.n_failed, first.n_skipped) == (1, 1, 0, 0)
    again = measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    assert (again.n_measured, again.n_skipped) == (0, 1) and not again.ok


def test_a_photo_gone_missing_is_reported_missing_once_not_by_every_later_run(tmp_path: Path) -> None:
    root = tmp_path / "trial"
    _small_trial(root)
    write_jpeg(root / "S1" / "W4" / "U1.jpg", make_photo(px_per_mm=14, size=(800, 600)).rgb)
    out = tmp_path / "out"
    measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    (root / "S1" / "W4" / "U1.jpg").unlink()
    runs = [measure_study(root, out, PipelineConfig(), backend=RednessBackend()) for _ in range(2)]
    assert [r.reconciled.missing for r in runs] == [("S1/W4/U1.jpg",), ()]
    assert [r.unresolved for r in runs][1] == runs[0].unresolved != []
