"""The GPU path's batching of tiles across photos, exercised on the CPU."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import RednessBackend, make_photo, write_jpeg

from ulcerseg.config import PipelineConfig, with_overrides
from ulcerseg.errors import ModelError
from ulcerseg.pipeline import measure_study
from ulcerseg.segmentation.batching import BatchingBackend


class Recording(RednessBackend):
    """Redness test double that records the batch shapes it was given."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []
        self.fail = fail

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        self.shapes.append(tiles.shape)
        if self.fail:
            raise RuntimeError("CUDA out of memory")
        return super().predict_proba(tiles)


def _call_concurrently(backend: BatchingBackend, batches: list[np.ndarray]) -> list[object]:
    results: list[object] = [None] * len(batches)
    start = threading.Barrier(len(batches))

    def call(i: int) -> None:
        start.wait()
        try:
            results[i] = backend.predict_proba(batches[i])
        except Exception as err:  # the test looks at what each caller got
            results[i] = err

    threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(len(batches))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30.0
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a caller never got its result"
    return results


def test_concurrent_calls_share_fixed_size_batches_and_get_their_own_results() -> None:
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (1, 64, 96, 3), dtype=np.uint8) for _ in range(6)]
    batches += [rng.integers(0, 256, (2, 128, 64, 3), dtype=np.uint8) for _ in range(2)]
    inner = Recording()
    with BatchingBackend(inner, batch_size=4, wait_s=0.2, tile_px=128) as batched:
        results = _call_concurrently(batched, batches)
    direct = RednessBackend()
    for tiles, got in zip(batches, results, strict=True):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, direct.predict_proba(tiles))
    assert all(shape[0] == 4 for shape in inner.shapes)  # always full batches (zero tiles fill)
    assert {shape[1:3] for shape in inner.shapes} == {(64, 96), (128, 64)}  # one shape per batch
    assert batched.network_calls == len(inner.shapes) < len(batches)  # 10 tiles in fewer calls


def test_larger_inputs_run_in_proportionally_smaller_fixed_batches() -> None:
    rng = np.random.default_rng(1)
    big = [rng.integers(0, 256, (1, 128, 128, 3), dtype=np.uint8) for _ in range(3)]  # 4 tiles' px
    mid = [rng.integers(0, 256, (1, 64, 128, 3), dtype=np.uint8) for _ in range(3)]  # 2 tiles' px
    inner = Recording()
    with BatchingBackend(inner, batch_size=4, wait_s=0.2, tile_px=64) as batched:
        shapes = ((64, 64), (32, 32), (64, 128), (128, 128), (512, 512))
        assert [batched.batch_for(h, w) for h, w in shapes] == [4, 4, 2, 1, 1]
        results = _call_concurrently(batched, big + mid)
    direct = RednessBackend()
    for tiles, got in zip(big + mid, results, strict=True):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, direct.predict_proba(tiles))
    sizes = {shape[1:3]: shape[0] for shape in inner.shapes}
    assert sizes == {(128, 128): 1, (64, 128): 2}  # no zero tiles beside a large input
    assert sum(1 for shape in inner.shapes if shape[1:3] == (128, 128)) == 3


def test_a_failing_batch_fails_each_of_its_callers_and_a_closed_backend_refuses() -> None:
    tiles = np.zeros((1, 64, 64, 3), np.uint8)
    with BatchingBackend(Recording(fail=True), batch_size=8, wait_s=0.1) as batched:
        results = _call_concurrently(batched, [tiles, tiles, tiles])
    assert all(isinstance(r, RuntimeError) and "out of memory" in str(r) for r in results)
    with pytest.raises(RuntimeError, match="closed"):
        batched.predict_proba(tiles)


class ShortAnswer(RednessBackend):
    """A backend that answers one tile short (a broken export, a wrong output head)."""

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        return super().predict_proba(tiles)[:-1]


def test_a_short_answer_from_the_network_is_an_error_not_a_short_result() -> None:
    tiles = np.zeros((2, 64, 64, 3), np.uint8)
    with BatchingBackend(ShortAnswer(), batch_size=2, wait_s=0.1) as batched:
        results = _call_concurrently(batched, [tiles, tiles])
    assert all(isinstance(r, RuntimeError) and "returned (" in str(r) for r in results)


def test_an_unexpected_failure_outside_the_network_answers_its_callers_and_serving_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tiles = np.zeros((1, 64, 64, 3), np.uint8)
    with BatchingBackend(RednessBackend(), batch_size=8, wait_s=0.1) as batched:
        real_run, calls = batched._run, []

        def run_once_broken(group):  # e.g. a MemoryError while joining the callers' tiles
            calls.append(len(group))
            if len(calls) == 1:
                raise ValueError("joining the tiles failed")
            real_run(group)

        monkeypatch.setattr(batched, "_run", run_once_broken)
        first = _call_concurrently(batched, [tiles, tiles])
        assert all(isinstance(r, ValueError) for r in first)  # answered, not left waiting
        (later,) = _call_concurrently(batched, [tiles])  # the server still serves
        assert isinstance(later, np.ndarray) and later.shape == (1, 64, 64)


def test_batched_measurement_matches_one_photo_at_a_time(tmp_path: Path) -> None:
    for i in range(4):
        photo = make_photo(px_per_mm=14, size=(900, 700), ulcer_radius_mm=(2.0 + 0.5 * i, 1.5))
        write_jpeg(tmp_path / "in" / f"S{i}" / "D0" / "U1.jpg", photo.rgb)
    plain = measure_study(tmp_path / "in", tmp_path / "a", PipelineConfig(), backend=RednessBackend())
    parallel = with_overrides(PipelineConfig(), segmentation={"parallel_photos": 4})
    # a wait long enough for the photos' passes to meet on a loaded 2-core runner (with the
    # default 3 ms, each pass there ran alone: 12 calls, and the sharing check failed)
    with BatchingBackend(RednessBackend(), batch_size=4, wait_s=0.25) as batched:
        shared = measure_study(tmp_path / "in", tmp_path / "b", parallel, backend=batched)
        calls = batched.network_calls
    assert plain.n_measured == shared.n_measured == 4
    a = (tmp_path / "a" / "measurements.csv").read_text().splitlines()
    b = (tmp_path / "b" / "measurements.csv").read_text().splitlines()
    header = a[0].split(",")
    area = header.index("area_mm2")
    assert [r.split(",")[area] for r in a[1:]] == [r.split(",")[area] for r in b[1:]]
    assert calls < 4 * 3  # coarse, fine and mirror passes of 4 photos, partly shared


def test_cuda_without_a_gpu_is_a_one_line_model_error(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from ulcerseg.segmentation.backends import open_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelError, match="no CUDA device"):
        open_backend(tiny_model_dir, "auto", device="cuda")
    with pytest.raises(ModelError, match="CPU only"):
        open_backend(tiny_model_dir, "onnx", device="cuda:0")


def test_calls_of_equal_height_and_different_width_run_apart_and_get_their_own_results() -> None:
    rng = np.random.default_rng(2)
    batches = [rng.integers(0, 256, (1, 64, w, 3), dtype=np.uint8) for w in (96, 128, 96, 128)]
    inner = Recording()
    with BatchingBackend(inner, batch_size=4, wait_s=0.2, tile_px=128) as batched:
        results = _call_concurrently(batched, batches)
    direct = RednessBackend()
    for tiles, got in zip(batches, results, strict=True):
        assert isinstance(got, np.ndarray), got
        np.testing.assert_array_equal(got, direct.predict_proba(tiles))
    assert {shape[1:3] for shape in inner.shapes} == {(64, 96), (64, 128)}
