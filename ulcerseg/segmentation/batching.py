"""Tiles of several photos in one network batch (the GPU path).

A GPU is fast only on large batches, while one photo gives the network one coarse region
and one or two small crops at a time. :class:`BatchingBackend` wraps a backend: photo
workers (``segmentation.parallel_photos`` of them) call ``predict_proba`` concurrently, one
server thread gathers the calls for a few milliseconds, runs the tiles of equal size as one
batch and hands each caller its own probabilities.

A batch holds a fixed number of tiles for each tile shape (zero tiles fill the rest), so the
network sees the same tensor shapes whichever photos happen to share a batch: each tile's
probabilities do not depend on its neighbours in the batch. That number is ``batch_size`` for
tiles up to ``tile_px`` x ``tile_px`` and proportionally fewer for larger inputs (a coarse
region of 768 x 768 px runs alone): on an H200, padding every coarse region of 16 photos in
flight to a full batch of 16 spent most of the GPU's time on zero tiles. Inputs are padded to multiples of
``pad_multiple`` px (:func:`ulcerseg.segmentation.inference.predict_image`) so that regions
of nearby sizes share a shape.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from ulcerseg.segmentation.backends import SegmentationBackend

log = logging.getLogger(__name__)


@dataclass
class _Request:
    tiles: np.ndarray  # N x H x W x 3 uint8
    future: Future[np.ndarray] = field(default_factory=Future)


class BatchingBackend:
    """A backend whose concurrent ``predict_proba`` calls run as shared, fixed-size batches.

    ``batch_size``: tiles per network call for tiles up to ``tile_px`` x ``tile_px`` px (fewer,
    in proportion to their pixels, for larger ones: :meth:`batch_for`); ``wait_s``: how long
    the server waits for more calls once one arrived; ``pad_multiple``: side multiple (px) that
    inputs are padded to.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        inner: SegmentationBackend,
        batch_size: int = 16,
        wait_s: float = 0.003,
        pad_multiple: int = 128,
        tile_px: int = 256,
    ) -> None:
        if batch_size < 1 or tile_px < 1 or pad_multiple % 32:
            raise ValueError("batch_size and tile_px must be >= 1 and pad_multiple a multiple of 32")
        self.inner = inner
        self.card = inner.card
        self.sha256 = inner.sha256
        self.batch_size = batch_size
        self.wait_s = wait_s
        self.pad_multiple = pad_multiple
        self.tile_px = tile_px
        self.network_calls = 0  # batches run (for tests and benchmarks)
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._server = threading.Thread(target=self._serve, name="ulcerseg-batch", daemon=True)
        self._server.start()

    def batch_for(self, height: int, width: int) -> int:
        """Tiles per network call for inputs of ``height`` x ``width`` px (fixed per shape)."""
        budget = self.batch_size * self.tile_px * self.tile_px  # px per call
        return max(1, min(self.batch_size, budget // (height * width)))

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 N×H×W×3 RGB -> float32 N×H×W probabilities, computed in a shared batch."""
        if tiles.ndim == 3:
            tiles = tiles[None]
        if not self._server.is_alive():
            raise RuntimeError("the batching backend is closed")
        request = _Request(np.ascontiguousarray(tiles))
        self._queue.put(request)
        return request.future.result()

    def close(self) -> None:
        """Stop the server thread (calls after this raise)."""
        if self._server.is_alive():
            self._queue.put(None)
            self._server.join()

    def __enter__(self) -> BatchingBackend:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """``first`` and the calls that arrive within ``wait_s`` (up to a batch of tiles)."""
        requests, n_tiles = [first], len(first.tiles)
        deadline = time.monotonic() + self.wait_s
        while n_tiles < self.batch_size:
            remaining = deadline - time.monotonic()
            try:
                request = (
                    self._queue.get(timeout=max(remaining, 0.0))
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if request is None:
                return requests, True
            requests.append(request)
            n_tiles += len(request.tiles)
        return requests, False

    def _serve(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            requests, stop = self._gather(first)
            by_shape: dict[tuple[int, ...], list[_Request]] = {}
            for request in requests:
                by_shape.setdefault(request.tiles.shape[1:], []).append(request)
            for group in by_shape.values():
                try:
                    self._run(group)
                except Exception as err:  # never leave a photo worker waiting for an answer
                    log.exception("batching server: a batch failed unexpectedly")
                    _fail(group, err)
        # calls that raced with close(): answered, not left waiting
        while True:
            try:
                late = self._queue.get_nowait()
            except queue.Empty:
                break
            if late is not None:
                _fail([late], RuntimeError("the batching backend is closed"))

    def _run(self, group: list[_Request]) -> None:
        try:
            tiles = np.concatenate([r.tiles for r in group])
            size = self.batch_for(tiles.shape[1], tiles.shape[2])
            out = np.concatenate(
                [self._run_batch(tiles[i : i + size], size) for i in range(0, len(tiles), size)]
            )
            if out.shape != tiles.shape[:3]:  # a short answer would hand a caller too few tiles
                raise RuntimeError(f"the network returned {out.shape} for tiles of shape {tiles.shape[:3]}")
        except Exception as err:  # every caller gets the error of its batch
            _fail(group, err)
            return
        start = 0
        for request in group:
            request.future.set_result(out[start : start + len(request.tiles)])
            start += len(request.tiles)

    def _run_batch(self, tiles: np.ndarray, size: int) -> np.ndarray:
        n = len(tiles)
        if n < size:  # fixed shapes: a tile's result never depends on the batch
            tiles = np.concatenate([tiles, np.zeros((size - n, *tiles.shape[1:]), tiles.dtype)])
        self.network_calls += 1
        return self.inner.predict_proba(tiles)[:n]


def _fail(requests: list[_Request], err: BaseException) -> None:
    """Hand ``err`` to each request not answered yet."""
    for request in requests:
        if not request.future.done():
            request.future.set_exception(err)
