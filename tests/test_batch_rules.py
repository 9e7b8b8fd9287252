"""The batch rules of ``measure``: which failures the next run retries, the decode reductions
actually used and the run summary's counts."""

import csv
from pathlib import Path

import pytest
from conftest import RednessBackend, make_photo, write_jpeg

from ulcerseg import pipeline
from ulcerseg.config import PipelineConfig
from ulcerseg.imageio import sha256_bytes
from ulcerseg.pipeline import measure_study


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
