"""The measurement pipeline: photo folder -> calibrated ulcer measurements in the study store.

One bad photo never stops a batch: every failure becomes a ``failed`` row with a reason code,
and each photo's row is committed before the next photo starts.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ulcerseg import __version__
from ulcerseg.calibration.marker import calibrate, homography_matrix, in_photo_frame
from ulcerseg.config import PipelineConfig, load_config, with_overrides
from ulcerseg.discover import Discovery, discover, no_photos_error
from ulcerseg.errors import (
    CalibrationError,
    ConfigError,
    ImageAccessError,
    ImageReadError,
    InputError,
    OutputError,
    PhotoChangedError,
    one_line,
)
from ulcerseg.geometry import reduced_to_photo
from ulcerseg.imageio import (
    REDUCTIONS,
    PhotoInfo,
    Preview,
    decode_rgb,
    decoded_by_pillow,
    inspect_photo,
    make_preview,
    read_bytes,
    write_png,
)
from ulcerseg.measure import area_interval, measure_ulcer
from ulcerseg.naming import photo_file_stem
from ulcerseg.overlay import mask_contours_photo, render_overlay
from ulcerseg.quality import (
    calibration_flags,
    dark_bed_fraction,
    image_flags,
    is_desaturated,
    mask_flags,
    quality_signals,
    search_coverage,
    signal_flags,
    ulcer_neighbourhood,
)
from ulcerseg.records import Calibration, Flag, PhotoRecord, PhotoResult
from ulcerseg.resources import resolve_model_dir
from ulcerseg.segmentation.backends import SegmentationBackend, open_backend
from ulcerseg.segmentation.batching import BatchingBackend
from ulcerseg.segmentation.body import body_mask
from ulcerseg.segmentation.inference import measured_mask, segment_photo
from ulcerseg.segmentation.model import ModelCard
from ulcerseg.store import RunInfo, Study
from ulcerseg.store.db import DB_NAME
from ulcerseg.store.lock import output_lock
from ulcerseg.store.study import Reconciled
from ulcerseg.tables import temporary_pid, write_json

log = logging.getLogger(__name__)


@dataclass
class MeasureSummary:
    """What a ``measure`` run did."""

    out_dir: Path
    run_id: str
    n_photos: int = 0
    n_measured: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    n_needs_review: int = 0
    problems: list[tuple[Path, str]] = field(default_factory=list)  # failing skips (Skipped)
    ignored: list[tuple[Path, str]] = field(default_factory=list)  # hidden, not a photo, output folder
    skipped_counts: dict[str, int] = field(default_factory=dict)  # skip reason code -> files
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, one-line reason)
    unresolved: list[tuple[str, str]] = field(default_factory=list)  # study-wide (file, status: flags)
    reconciled: Reconciled = field(default_factory=Reconciled)
    # per-photo images no current row names, moved to OUT/superseded/ (paths relative to OUT)
    set_aside: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing of the study is left unresolved (the ``measure`` exit status 0)."""
        return not (self.n_failed or self.unresolved or self.problems)


@dataclass(frozen=True)
class LoadedPhoto:
    """A photo's decoded pixels, or the reason it could not be read.

    ``rgb`` is the photo decoded at 1/``reduction`` of its size (RGB, EXIF orientation
    applied; :func:`ulcerseg.geometry.reduced_to_photo` maps its px to photo px); ``data``
    keeps the bytes that were hashed, so a finer decode reads exactly the same photo.
    """

    photo: PhotoRecord
    rgb: np.ndarray | None
    preview: Preview | None  # downscaled copy of ``rgb`` for marker search, coarse pass and overlay
    info: PhotoInfo | None
    error: Exception | None
    seconds: float
    reduction: int = 1
    data: bytes | None = None


# a first decode is reduced only while its shorter side keeps at least this many px (the marker
# must stay detectable); the marker's scale then decides whether a finer decode is needed
_MIN_REDUCED_SIDE_PX = 1200


# photos decoded while the model is still opening (measure_study): two keep both cores busy
_EARLY_DECODES = 2


def first_reduction(width: int, height: int, min_oversampling: float) -> int:
    """The decode reduction tried first for a photo of ``width`` x ``height`` px (1: full size)."""
    if min_oversampling <= 0:
        return 1
    return max(r for r in REDUCTIONS if min(width, height) / r >= _MIN_REDUCED_SIDE_PX or r == 1)


def needed_reduction(photo_px_per_mm: float, grid_px_per_mm: float, min_oversampling: float) -> int:
    """The largest decode reduction that keeps ``min_oversampling`` decoded px per grid px."""
    if min_oversampling <= 0:
        return 1
    fits = [r for r in REDUCTIONS if photo_px_per_mm / r >= min_oversampling * grid_px_per_mm]
    return max(fits, default=1)


def load_photo(
    photo: PhotoRecord,
    preview_max_side_px: int = 1600,
    min_oversampling: float = 0.0,
    data: bytes | None = None,
    reduction: int | None = None,
) -> LoadedPhoto:
    """Read, validate and decode one photo; read errors are returned, not raised.

    The decode is reduced per :func:`first_reduction` (``min_oversampling`` 0: full size)
    unless ``reduction`` is given; ``data`` (bytes already read) skips reading the file.
    """
    t0 = time.perf_counter()
    try:
        data = read_bytes(photo.path) if data is None else data
        info = inspect_photo(photo.path, data)
        if info.sha256 != photo.sha256:  # the row would name bytes that were not measured
            raise PhotoChangedError(
                f"{photo.path}: the file changed after it was found (SHA-256 {photo.sha256[:12]}… "
                f"-> {info.sha256[:12]}…); the next run measures it"
            )
        if reduction is None:
            # HEIC/AVIF: a reduced decode costs a full one, and a second decode may follow
            whole = decoded_by_pillow(data)
            reduction = 1 if whole else first_reduction(info.width, info.height, min_oversampling)
        rgb = decode_rgb(photo.path, data, reduction)
        info = _as_decoded(photo, info, rgb, reduction)
    except Exception as err:  # MemoryError included: classified by PhotoMeasurer.compute
        return LoadedPhoto(photo, None, None, None, err, time.perf_counter() - t0)
    preview = make_preview(rgb, preview_max_side_px)
    return LoadedPhoto(photo, rgb, preview, info, None, time.perf_counter() - t0, reduction, data)


def _as_decoded(photo: PhotoRecord, info: PhotoInfo, rgb: np.ndarray, reduction: int) -> PhotoInfo:
    """``info`` with width and height swapped when the decoder turned the pixels by 90° and the
    header reader did not, or the reverse: a damaged EXIF block (an orientation entry of an
    unknown type) that the two read differently. The row's size and the search coverage then
    describe the pixels measured. A reduced decode is within ``reduction`` px of size / r."""
    h, w = rgb.shape[:2]

    def fits(width: int, height: int) -> bool:
        return abs(w * reduction - width) < reduction and abs(h * reduction - height) < reduction

    if fits(info.width, info.height) or not fits(info.height, info.width):
        return info
    log.info("%s: EXIF orientation read differently by the decoder; the decoded frame counts", photo.path)
    return replace(info, width=info.height, height=info.width)


def load_as_configured(
    config: PipelineConfig, photo: PhotoRecord, data: bytes | None = None, reduction: int | None = None
) -> LoadedPhoto:
    """:func:`load_photo` with the preview size and decode reduction ``config`` asks for."""
    return load_photo(photo, config.marker.detect_max_side_px, config.segmentation.min_decode_oversampling,
                      data, reduction)  # fmt: skip


def _decode_settings(config: PipelineConfig) -> tuple[int, float]:
    """What :func:`load_as_configured` takes from ``config``."""
    return (config.marker.detect_max_side_px, config.segmentation.min_decode_oversampling)


OutputWriter = Callable[[Path], None]  # writes a measured photo's files into an output folder


class PhotoMeasurer:
    """Measures single photos with one model and configuration (no global state)."""

    def __init__(self, config: PipelineConfig, backend: SegmentationBackend) -> None:
        self.config = config
        self.backend = backend
        self.threshold = config.segmentation.threshold or backend.card.threshold

    def measure(
        self, photo: PhotoRecord, out_dir: Path | None = None, loaded: LoadedPhoto | None = None
    ) -> PhotoResult:
        """Measure one photo and write its files; never raises for a bad photo.

        ``loaded`` may carry the photo already decoded (by a read-ahead thread).
        """
        result, writer = self.compute(photo, loaded)
        if out_dir is not None:
            write_outputs(result, writer, out_dir)
        return result

    def compute(
        self, photo: PhotoRecord, loaded: LoadedPhoto | None = None
    ) -> tuple[PhotoResult, OutputWriter | None]:
        """Measure one photo without writing; returns the result and a writer of its files.

        A bad photo gives a ``failed`` result with reason codes and messages, and no writer.
        """
        result = PhotoResult(photo=photo, status="failed")
        writer: OutputWriter | None = None
        try:
            loaded = loaded or self.load(photo)
            writer = self._measure(loaded, result)
            result.status = "measured"
        except PhotoChangedError as err:
            result.flags.append(Flag.FILE_CHANGED)
            result.messages.append(str(err))
            result.retryable = True
        except ImageReadError as err:
            result.flags.append(Flag.UNREADABLE_FILE)
            result.messages.append(str(err))
            result.retryable = isinstance(err, ImageAccessError)  # permission, I/O: not the bytes
        except MemoryError:
            log.error("out of memory on %s", photo.path)
            result.flags.append(Flag.PROCESSING_ERROR)
            result.messages.append(f"{photo.path}: out of memory")
            result.retryable = True
        except CalibrationError as err:
            result.flags.append(Flag.NO_MARKER)
            result.messages.append(f"{photo.path}: {err}")
        except Exception as err:  # one bad photo must never stop a batch
            # one line for the user (an OpenCV message spans several); the traceback with -vv
            log.debug("unexpected error on %s", photo.path, exc_info=True)
            result.flags.append(Flag.PROCESSING_ERROR)
            result.messages.append(f"{photo.path}: {type(err).__name__}: {one_line(err)}")
        result.flags = sorted(set(map(str, result.flags)))
        return result, writer

    def load(
        self, photo: PhotoRecord, data: bytes | None = None, reduction: int | None = None
    ) -> LoadedPhoto:
        """Read and decode ``photo`` the way this measurer's configuration asks."""
        return load_as_configured(self.config, photo, data, reduction)

    def _calibrate(self, loaded: LoadedPhoto) -> tuple[LoadedPhoto, Calibration, Calibration]:
        """The marker found on ``loaded``, decoded again finer when the reduced decode lacks
        the resolution (or the marker): (loaded, calibration in its px, in photo px)."""
        cfg = self.config
        assert loaded.rgb is not None

        def on(image: LoadedPhoto) -> Calibration:
            assert image.rgb is not None  # loaded (asserted above) or finer (error None: decoded)
            return calibrate(image.rgb, cfg.marker.dictionary, cfg.marker.ids, cfg.marker.side_mm,
                             cfg.marker.detect_max_side_px, image.preview)  # fmt: skip

        def finer(reduction: int) -> LoadedPhoto:
            finer = self.load(loaded.photo, loaded.data, reduction)
            if finer.error is not None:
                raise finer.error
            return replace(finer, seconds=loaded.seconds + finer.seconds)

        try:
            cal = on(loaded)
        except CalibrationError:
            if loaded.reduction == 1:
                raise
            loaded = finer(1)  # a marker too small for the reduced decode
            cal = on(loaded)
        photo_px_per_mm = loaded.reduction / cal.mm_per_px
        grid_px_per_mm = cfg.segmentation.px_per_mm or self.backend.card.px_per_mm
        needed = needed_reduction(photo_px_per_mm, grid_px_per_mm, cfg.segmentation.min_decode_oversampling)
        if needed < loaded.reduction:
            log.debug("%s: decoding at 1/%d for the resolution", loaded.photo.path, needed)
            loaded = finer(needed)
            cal = on(loaded)
        return loaded, cal, in_photo_frame(cal, reduced_to_photo(loaded.reduction))

    def _measure(self, loaded: LoadedPhoto, result: PhotoResult) -> OutputWriter:
        cfg = self.config
        photo = loaded.photo
        if loaded.error is not None:
            raise loaded.error
        assert loaded.rgb is not None and loaded.info is not None and loaded.preview is not None
        info = loaded.info
        result.image_size = (info.width, info.height)
        if info.is_grayscale or is_desaturated(loaded.preview.image):
            result.flags.append(Flag.GRAYSCALE)  # from the mode, or an RGB photo without colour
        if info.n_images > 1:
            result.flags.append(Flag.SEVERAL_IMAGES)  # only the first image is measured
        if photo.photo_date is None and info.photo_date is not None:
            result.photo = photo = _with_date(photo, info.photo_date)
        t_decode = time.perf_counter()
        # the decoded copy may be reduced: the record keeps the calibration in photo px, the
        # segmentation works in the decoded copy's px
        loaded, decoded_cal, cal = self._calibrate(loaded)
        assert loaded.rgb is not None and loaded.preview is not None
        rgb, preview = loaded.rgb, loaded.preview
        result.calibration = cal
        result.flags += calibration_flags(cal, cfg.quality)
        t_marker = time.perf_counter()
        h = homography_matrix(cal)
        seg = segment_photo(self.backend, rgb, homography_matrix(decoded_cal), cal.side_mm,
                            cfg.segmentation, preview)  # fmt: skip
        t_seg = time.perf_counter()
        sc = cfg.segmentation
        grid = seg.grid

        def mask_at(threshold: float, probability: np.ndarray = seg.probability) -> np.ndarray:
            return measured_mask(seg, threshold, sc, probability)

        mask = mask_at(self.threshold)
        tight = mask_at(min(0.99, self.threshold + sc.uncertainty_delta)) & mask
        loose = mask_at(max(0.01, self.threshold - sc.uncertainty_delta)) | mask
        centre = (cal.side_mm / 2, cal.side_mm / 2)
        measurement = measure_ulcer(seg.probability, mask, (tight, loose), grid.px_per_mm,
                                    grid.origin_mm, centre)  # fmt: skip
        result.measurement = measurement
        # blur and exposure where they matter: the ulcer and a few mm around it, never the
        # marker (its white paper and black squares are clipped by design)
        region = ulcer_neighbourhood(mask, seg.valid, seg.exclude, grid.px_per_mm)
        result.flags += image_flags(seg.image, region, cfg.quality, seg.marker_white_luma)
        result.flags += mask_flags(measurement, mask, seg.valid, cfg.quality)
        # the disagreement of the crop's own mask and its mirror image's (not of the mean)
        mirrored = None if seg.mirror_pair is None else mask_at(self.threshold, seg.mirror_pair[1])
        own = None if seg.mirror_pair is None else seg.mirror_pair[0]
        crop_mask = mask if own is None or own is seg.probability else mask_at(self.threshold, own)
        coverage = search_coverage(h, (info.width, info.height), centre, cfg.quality.search_site_radius_mm)
        # the skin around the ulcer is the reference for a dark bed: never the marker
        dark = dark_bed_fraction(seg.image, mask, seg.valid & ~seg.exclude, grid.px_per_mm,
                                 cfg.quality.dark_bed_luma_ratio, seg.marker_white_luma,
                                 cfg.quality.dark_bed_paper_ratio)  # fmt: skip
        signals = quality_signals(seg.image, seg.probability, mask, region, self.threshold,
                                  measurement, seg.candidate_scores, body_mask(seg.image, grid.px_per_mm),
                                  mirrored, crop_mask, coverage, seg.unconfirmed_candidate_mm2,
                                  dark, seg.marker_white_luma)  # fmt: skip
        # recorded with the others: the number marker_distorted's bend check was decided on
        result.signals = signals = replace(signals, marker_bend=cal.bend)
        result.flags += signal_flags(signals, cfg.quality)
        if sc.interval_q_low is not None and sc.interval_q_high is not None:
            low, high = area_interval(measurement.area_mm2, measurement.area_low_mm2,
                                      measurement.area_high_mm2, sc.interval_floor, sc.interval_q_low,
                                      sc.interval_q_high)  # fmt: skip
            measurement = replace(measurement, area_low_mm2=low, area_high_mm2=high)
            result.measurement = measurement
        result.rectified_origin_mm = grid.origin_mm
        result.rectified_px_per_mm = grid.px_per_mm
        t_measure = time.perf_counter()
        result.stage_seconds = {
            "decode": loaded.seconds,
            "marker": t_marker - t_decode,
            "rectify": seg.seconds.get("rectify", 0.0),
            "segment": seg.seconds.get("segment", 0.0),
            "measure": t_measure - t_seg,
        }
        output = cfg.output
        label = f"{photo.subject_id} {photo.visit} {photo.ulcer_id}"

        def write(out_dir: Path) -> None:
            key = photo_file_stem(photo.subject_id, photo.ulcer_id, photo.visit, photo.sha256)
            result.mask_path = out_dir / "masks" / f"{key}.png"
            write_png(result.mask_path, mask.astype(np.uint8) * 255)
            if output.write_rectified:
                result.rectified_path = out_dir / "rectified" / f"{key}.png"
                write_png(result.rectified_path, seg.image, fast=True)
            if output.write_overlays:
                contours = mask_contours_photo(mask, grid, h)
                overlay = render_overlay(
                    preview.image,
                    cal,
                    contours,
                    measurement.area_mm2,
                    label,
                    image_scale=preview.scale / loaded.reduction,
                    flags=result.flags,
                )
                result.overlay_path = out_dir / "overlays" / f"{key}.png"
                write_png(result.overlay_path, overlay, fast=True)

        return write


def write_outputs(result: PhotoResult, writer: OutputWriter | None, out_dir: Path) -> PhotoResult:
    """Write a measured photo's mask, rectified image and overlay; failures go into the result."""
    if writer is None:
        return result
    t0 = time.perf_counter()
    try:
        writer(out_dir)
    except OSError as err:
        # the environment's fault (disk full, permission, blocked folder): retried next run
        result.status = "failed"
        result.retryable = True
        result.flags = sorted({*result.flags, Flag.WRITE_ERROR})
        result.messages.append(f"{result.photo.path}: cannot write outputs ({err.strerror or err})")
    except Exception as err:  # e.g. the overlay on an odd geometry: one photo, never the batch
        log.debug("writing the outputs of %s failed", result.photo.path, exc_info=True)
        result.status = "failed"
        result.retryable = isinstance(err, MemoryError)
        result.flags = sorted({*result.flags, Flag.PROCESSING_ERROR})
        detail = f"{type(err).__name__}: {one_line(err)}"
        result.messages.append(f"{result.photo.path}: cannot write outputs ({detail})")
    result.stage_seconds["write"] = time.perf_counter() - t0
    return result


def _read_ahead(
    photos: list[PhotoRecord],
    load: Callable[[PhotoRecord], LoadedPhoto],
    started: dict[PhotoRecord, Future[LoadedPhoto]] | None = None,
) -> Iterator[tuple[PhotoRecord, LoadedPhoto]]:
    """Yield photos with their pixels, decoding the next photo while the current is measured.

    ``started``: decodes already under way (made with ``load``'s settings), used for their photos.
    """
    started = dict(started or {})
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ulcerseg-read") as pool:

        def submit(photo: PhotoRecord) -> Future[LoadedPhoto]:
            early = started.pop(photo, None)
            return early if early is not None else pool.submit(load, photo)

        pending = submit(photos[0]) if photos else None
        for i, photo in enumerate(photos):
            assert pending is not None
            loaded = pending.result()
            more = i + 1 < len(photos)
            pending = submit(photos[i + 1]) if more else None
            yield photo, loaded


def _with_date(photo: PhotoRecord, date: str) -> PhotoRecord:
    return replace(photo, photo_date=date)


def open_model(config: PipelineConfig) -> SegmentationBackend:
    """The segmentation backend named by the configuration."""
    model_dir = resolve_model_dir(config.segmentation.model)
    cv2.setNumThreads(config.segmentation.threads)
    seg = config.segmentation
    coarse = "int8" if seg.coarse_precision == "int8" else seg.coarse_network
    backend = open_backend(model_dir, seg.backend, num_threads=seg.threads, device=seg.device,
                           coarse_network=coarse)  # fmt: skip
    if seg.device != "cpu":  # the GPU path: tiles of the photos in flight share batches
        return BatchingBackend(backend, batch_size=seg.gpu_batch_size, tile_px=backend.card.tile_px)
    return backend


def effective_config(
    config: PipelineConfig, card: ModelCard, coarse_network: str | None = None
) -> PipelineConfig:
    """``config`` with the settings it leaves to the model card (threshold, px per mm) filled in,
    and the coarse network that actually runs (``coarse_network``: a backend's ``full``,
    ``light`` or ``int8``; None: as asked) with its SHA-256 from the card.

    The recorded config and its hash are then what actually ran: editing a card's threshold
    (same weights, same model checksum) changes the config hash, so photos are measured again;
    asking for a light coarse network the model folder lacks records ``full``; a re-distilled
    light network has another SHA-256, hence another config hash. Raises ConfigError when the
    config names a coarse network SHA-256 other than the one that runs.
    """
    seg = config.segmentation
    if coarse_network is None:
        coarse_network = "int8" if seg.coarse_precision == "int8" else seg.coarse_network
    sha = {"light": card.coarse_light_sha256, "int8": card.coarse_onnx_sha256}.get(coarse_network)
    if seg.coarse_network_sha256 is not None and seg.coarse_network_sha256 != sha:
        raise ConfigError(
            f"segmentation.coarse_network_sha256 is {seg.coarse_network_sha256[:16]}…, but the "
            f"coarse network of model {card.name!r} that runs ({coarse_network}) has "
            f"{(sha or 'none')[:16]}"
        )
    changes: dict[str, object] = {
        "threshold": seg.threshold or card.threshold,
        "px_per_mm": seg.px_per_mm or card.px_per_mm,
        "coarse_network": "light" if coarse_network == "light" else "full",
        "coarse_precision": "int8" if coarse_network == "int8" else "float",
        "coarse_network_sha256": sha,
    }
    return with_overrides(config, segmentation=changes)


#: the per-photo image folders of the output folder, named ``<subject>_<ulcer>_<visit>_<hash8>``
PHOTO_IMAGE_FOLDERS = ("overlays", "masks", "rectified")
#: where images of superseded rows go (``OUT/superseded/<folder>/``)
SUPERSEDED_FOLDER = "superseded"


def _set_aside_superseded_images(out_dir: Path, latest: list[dict[str, Any]]) -> list[str]:
    """Move the per-photo images that no current row names to ``OUT/superseded/<folder>/``;
    returns their old paths relative to ``out_dir``.

    A photo relabelled (another subject or visit in the manifest, or moved between folders) or
    replaced by new bytes is measured under a new name; its old images kept the old subject or
    visit in their names beside the new ones, so a person finding a subject's photos by name
    found one filed under the wrong subject. They are the rows' history, so they are kept, out
    of the folders that show the study as it is. Rows of missing photos still name theirs.
    """
    named = {
        str(r[column])
        for r in latest
        for column in ("overlay_file", "mask_file", "rectified_file")
        if r.get(column)
    }
    moved: list[str] = []
    for folder in PHOTO_IMAGE_FOLDERS:
        if not (out_dir / folder).is_dir():
            continue
        for image in sorted((out_dir / folder).glob("*.png")):
            rel = str(image.relative_to(out_dir))
            if rel in named:
                continue
            dest = out_dir / SUPERSEDED_FOLDER / folder / image.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(image, dest)
            moved.append(rel)
    if moved:
        log.info("%d image(s) of superseded rows moved to %s", len(moved), out_dir / SUPERSEDED_FOLDER)
    return moved


def _clean_stale_temporaries(out_dir: Path) -> None:
    """Remove ``*.tmp`` files left by a killed run (atomic writes rename them when complete).

    A table's temporary (``tables.atomic_path``: ``.NAME.PID.TOKEN.tmp``) whose process still
    runs is another command's write in progress (``heal``, the review server), and is kept.
    """
    for folder in (out_dir, out_dir / "masks", out_dir / "overlays", out_dir / "rectified"):
        if folder.is_dir():
            for tmp in folder.glob("*.tmp"):
                if not _written_by_a_live_process(tmp):
                    tmp.unlink(missing_ok=True)


def _written_by_a_live_process(tmp: Path) -> bool:
    """True if ``tmp`` is a temporary of ``tables.atomic_path`` whose process runs on this host."""
    pid = temporary_pid(tmp)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # another user's process
    except (OSError, OverflowError, ValueError):
        return False
    return True


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.exists() and a.resolve() == b.resolve()
    except OSError:
        return False


def measure_study(
    source: str | Path,
    out_dir: str | Path,
    config: PipelineConfig | str | Path | None,
    backend: SegmentationBackend | None = None,
    progress: Callable[[Iterator, int], Iterator] | None = None,
    retry_failed: bool = False,
    allow_outside_root: bool = False,
    on_result: Callable[[PhotoResult], None] | None = None,
) -> MeasureSummary:
    """Measure every photo under ``source`` (folder or manifest) into ``out_dir``.

    Photos whose newest row is of the same path, bytes, model, config and package version are
    skipped, so a killed run resumes where it stopped; failures caused by the environment are retried,
    failures caused by the bytes only with ``retry_failed``. ``progress`` may wrap the photo
    iterator (e.g. tqdm). Healing is not computed here: call
    :func:`ulcerseg.healing.heal_study` next (the ``ulcerseg measure`` command does).
    The recorded config is :func:`effective_config` (card defaults resolved).
    ``on_result`` is called with each newly measured photo's result once it is stored (e.g. to
    follow a run live; the store keeps the rows and their ``signals``,
    :meth:`ulcerseg.store.study.Study.quality_signals`).

    Raises :class:`OutputError` (one line) when the output folder is locked by another run,
    read-only or full; every photo row already committed stays valid. Raises
    :class:`InputError` (:func:`~ulcerseg.discover.no_photos_error`, the layout expected) when
    ``source`` holds no photo at all (a :class:`~ulcerseg.errors.NoPhotosError` listing the
    files skipped). ``config``: a :class:`PipelineConfig`, a YAML path or None (the built-in
    defaults), as :func:`~ulcerseg.config.load_config` reads them (``measure -c``).
    """
    if not isinstance(config, PipelineConfig):
        config = load_config(None if config is None else Path(config))
    source, out_dir = Path(source), Path(out_dir)
    # a manifest's photos are found relative to its folder, which is the study's root
    photo_root = Path(source) if Path(source).is_dir() else Path(source).parent
    if photo_root.is_dir() and _same_folder(out_dir, photo_root):
        # its tables, masks and overlays would lie among the photos, listed as stray files by
        # every later run; an output folder inside the photo folder is fine (it is not read)
        raise InputError(f"{out_dir}: the output folder is the photo folder itself; "
                         f"choose another, e.g. {photo_root / 'ulcerseg-out'}")  # fmt: skip
    owned = backend is None
    # start-up runs side by side (mostly outside the GIL): the model loads (file hashes, ONNX
    # Runtime sessions) while the photos are found and hashed, then the first photos decode
    # while it is still loading (a core would idle otherwise; ~0.1-0.2 s less per run). Input
    # errors still come first. A photo decoded early that the study has measured already is
    # dropped; the decodes read the photos only (no output is touched before the lock)
    start = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ulcerseg-start")
    early: dict[PhotoRecord, Future[LoadedPhoto]] = {}
    try:
        opening = start.submit(open_model, config) if backend is None else None
        found: Discovery = discover(
            source, config.discovery, exclude=out_dir, allow_outside_root=allow_outside_root
        )
        if not found.photos:  # the skipped files travel in NoPhotosError.skipped (the CLI lists them)
            raise no_photos_error(Path(source), found, config.discovery)  # exit 2, layout hint
        if opening is not None:
            for photo in found.photos[:_EARLY_DECODES]:
                early[photo] = start.submit(load_as_configured, config, photo)
            backend = opening.result()
    finally:
        start.shutdown(wait=False)
    assert backend is not None  # given, or opened above (no photos raised before)
    for path, reason in found.problems:  # the CLI prints them; summary.problems lists them
        log.info("%s: %s", path, reason)
    decoded_with = _decode_settings(config)
    config = effective_config(config, backend.card, getattr(backend, "coarse_network", "full"))
    if _decode_settings(config) != decoded_with:  # kept only if the effective config decodes alike
        early = {}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with output_lock(out_dir):
            return _measure_locked(found, source, out_dir, config, backend, progress, retry_failed, on_result,
                                   early)  # fmt: skip
    except (OSError, sqlite3.OperationalError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        # name the file that failed (measurements.csv, run.json, study.sqlite), not only the folder
        where = out_dir / DB_NAME if isinstance(err, sqlite3.Error) else getattr(err, "filename", None)
        if where is not None and Path(where) != out_dir:
            raise OutputError(f"{where}: cannot write ({reason})") from err
        raise OutputError(f"{out_dir}: cannot write the output folder ({reason})") from err
    except sqlite3.DatabaseError as err:
        raise OutputError(f"{out_dir}/study.sqlite: unusable study database ({err})") from err
    finally:
        if owned and isinstance(backend, BatchingBackend):
            backend.close()


def _measure_locked(
    found: Discovery,
    source: Path,
    out_dir: Path,
    config: PipelineConfig,
    backend: SegmentationBackend,
    progress: Callable[[Iterator, int], Iterator] | None,
    retry_failed: bool,
    on_result: Callable[[PhotoResult], None] | None,
    early: dict[PhotoRecord, Future[LoadedPhoto]] | None = None,
) -> MeasureSummary:
    _clean_stale_temporaries(out_dir)
    with Study.open(out_dir) as study:
        files = [(found.relative(p.path), p) for p in found.photos]
        unrelated = study.unrelated_to(files, Path(found.root).resolve())
        if unrelated is not None:  # another study: the photos of this one would turn missing_file
            n, n_found, root = unrelated
            which = "none of which is" if n_found == 0 else f"only {n_found} of which are"
            raise InputError(
                f"{out_dir}: holds a study of {n} photo(s) measured from {root}, {which} "
                f"under {source}; measuring it here would mark {n - n_found} of them "
                "missing_file: choose another output folder"
            )
        # the study root that `file` is relative to (a manifest's folder, not the manifest): the
        # review finds a photo at <input_root>/<file>
        run: RunInfo = study.start_run(__version__, backend.sha256, config.sha256(), config.to_dict(),
                                       Path(found.root).resolve())  # fmt: skip
        reconciled = study.reconcile(files)
        for old, new in reconciled.moved:
            log.info("%s moved to %s", old, new)
        for file in reconciled.missing:
            log.warning("%s: no longer under the study root (missing_file)", file)
        summary = MeasureSummary(
            out_dir=out_dir,
            run_id=run.run_id,
            problems=list(found.problems),
            ignored=list(found.ignored),
            skipped_counts=found.counts(),
            reconciled=reconciled,
        )
        summary.n_photos = len(found.photos)
        write_json(
            out_dir / "run.json",
            {"run_id": run.run_id, "package_version": __version__, "model_sha256": backend.sha256,
             "model_name": backend.card.name, "config_sha256": run.config_sha256,
             "config": config.to_dict(), "n_photos": len(found.photos),
             "skipped_counts": summary.skipped_counts,
             "skipped": [{"path": found.relative(p), "reason": r} for p, r in found.problems],
             "ignored": [{"path": found.relative(p), "reason": r} for p, r in found.ignored],
             "replaced": list(reconciled.replaced), "moved": [list(m) for m in reconciled.moved],
             "missing": list(reconciled.missing)},
        )  # fmt: skip
        measurer = PhotoMeasurer(config, backend)
        model_sha, config_sha, version = run.model_sha256, run.config_sha256, run.package_version

        def done(file: str, p: PhotoRecord) -> bool:
            stem = photo_file_stem(p.subject_id, p.ulcer_id, p.visit, p.sha256)  # labels: relabelled?
            return study.already_measured(p.sha256, file, model_sha, config_sha, version, retry_failed, stem)

        todo = [p for file, p in files if not done(file, p)]
        summary.n_skipped = len(found.photos) - len(todo)
        wanted = set(todo)
        for photo, decoding in (early or {}).items():
            if photo not in wanted:
                decoding.cancel()  # measured already: a decode not yet begun is not needed
        photos: Iterator[tuple[PhotoRecord, LoadedPhoto]] = _read_ahead(todo, measurer.load, early)
        if progress is not None:
            photos = progress(photos, len(todo))

        def store(result: PhotoResult) -> None:
            file = found.relative(result.photo.path)
            study.add_result(run, result, file)
            if on_result is not None:
                on_result(result)
            if result.status == "measured":
                summary.n_measured += 1
            else:
                summary.n_failed += 1
                summary.failures.append((file, "; ".join(result.messages) or ",".join(result.flags)))

        # photos are measured `parallel_photos` at a time (ONNX Runtime and OpenCV release the
        # GIL; results do not depend on it) and their files written by one writer thread; rows
        # are stored in photo order, each only once its files exist, so an interrupted run
        # never records a row without its files
        workers = config.segmentation.parallel_photos
        try:
            _measure_in_order(photos, measurer, workers, out_dir, store)
        except BaseException:
            # interrupted (Ctrl-C, disk full...): the rows stored so far reach measurements.csv
            # too, so the CSV never disagrees with study.sqlite and run.json
            try:
                study.export_csv()
            except Exception as err:  # the original error is the one to report
                log.warning("%s: measurements.csv not updated after the interruption (%s)", out_dir, err)
            raise
        study.finish_run(run, summary.n_measured, summary.n_failed, summary.n_skipped)
        study.export_csv()
        latest = study.latest_measurements()
        summary.set_aside = _set_aside_superseded_images(out_dir, latest)
        summary.n_needs_review = sum(int(r["needs_review"]) for r in latest)
        summary.unresolved = [
            (r["file"], f"{r['status']}: {r['flags']}") for r in latest if r["status"] != "measured"
        ]
    return summary


def _measure_in_order(
    photos: Iterator[tuple[PhotoRecord, LoadedPhoto]],
    measurer: PhotoMeasurer,
    workers: int,
    out_dir: Path,
    store: Callable[[PhotoResult], None],
) -> None:
    """Measure ``photos`` ``workers`` at a time, write their files on one writer thread and
    ``store`` each result in photo order once its files exist."""
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ulcerseg-measure") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="ulcerseg-write") as write_pool,
    ):
        measuring: deque[Future[tuple[PhotoResult, OutputWriter | None]]] = deque()
        writing: deque[Future[PhotoResult]] = deque()

        def hand_on(computed: Future[tuple[PhotoResult, OutputWriter | None]]) -> None:
            result, writer = computed.result()
            writing.append(write_pool.submit(write_outputs, result, writer, out_dir))
            while len(writing) > 1 or (writing and writing[0].done()):
                store(writing.popleft().result())

        for photo, loaded in photos:
            measuring.append(pool.submit(measurer.compute, photo, loaded))
            if len(measuring) >= workers:
                hand_on(measuring.popleft())
        while measuring:
            hand_on(measuring.popleft())
        while writing:
            store(writing.popleft().result())
