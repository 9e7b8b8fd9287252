"""The measurement pipeline: photo folder -> calibrated ulcer measurements in the study store.

One bad photo never stops a batch: every failure becomes a ``failed`` row with a reason code,
and each photo's row is committed before the next photo starts.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from ulcerseg import __version__
from ulcerseg.calibration.marker import calibrate, homography_matrix
from ulcerseg.config import PipelineConfig, with_overrides
from ulcerseg.discover import Discovery, discover, no_photos_error
from ulcerseg.errors import CalibrationError, ImageReadError
from ulcerseg.imageio import (
    PhotoInfo,
    Preview,
    decode_rgb,
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
    image_flags,
    mask_flags,
    quality_signals,
    signal_flags,
    ulcer_neighbourhood,
)
from ulcerseg.records import Flag, PhotoRecord, PhotoResult
from ulcerseg.resources import resolve_model_dir
from ulcerseg.segmentation.backends import SegmentationBackend, open_backend
from ulcerseg.segmentation.body import body_mask
from ulcerseg.segmentation.inference import segment_photo
from ulcerseg.segmentation.model import ModelCard
from ulcerseg.segmentation.postprocess import ulcer_mask
from ulcerseg.store import RunInfo, Study

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
    problems: list[tuple[Path, str]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, one-line reason)


@dataclass(frozen=True)
class LoadedPhoto:
    """A photo's decoded pixels (RGB, photo frame), or the reason it could not be read."""

    photo: PhotoRecord
    rgb: np.ndarray | None
    preview: Preview | None  # downscaled copy for marker search, coarse pass and overlay
    info: PhotoInfo | None
    error: ImageReadError | None
    seconds: float


def load_photo(photo: PhotoRecord, preview_max_side_px: int = 1600) -> LoadedPhoto:
    """Read, validate and decode one photo; read errors are returned, not raised."""
    t0 = time.perf_counter()
    try:
        data = read_bytes(photo.path)
        info = inspect_photo(photo.path, data)
        rgb = decode_rgb(photo.path, data)
    except ImageReadError as err:
        return LoadedPhoto(photo, None, None, None, err, time.perf_counter() - t0)
    preview = make_preview(rgb, preview_max_side_px)
    return LoadedPhoto(photo, rgb, preview, info, None, time.perf_counter() - t0)


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
            loaded = loaded or load_photo(photo, self.config.marker.detect_max_side_px)
            writer = self._measure(loaded, result)
            result.status = "measured"
        except ImageReadError as err:
            result.flags.append(Flag.UNREADABLE_FILE)
            result.messages.append(str(err))
        except CalibrationError as err:
            result.flags.append(Flag.NO_MARKER)
            result.messages.append(f"{photo.path}: {err}")
        except Exception as err:  # one bad photo must never stop a batch
            log.exception("unexpected error on %s", photo.path)
            result.flags.append(Flag.PROCESSING_ERROR)
            result.messages.append(f"{photo.path}: {type(err).__name__}: {err}")
        result.flags = sorted(set(map(str, result.flags)))
        return result, writer

    def _measure(self, loaded: LoadedPhoto, result: PhotoResult) -> OutputWriter:
        cfg = self.config
        photo = loaded.photo
        if loaded.error is not None:
            raise loaded.error
        assert loaded.rgb is not None and loaded.info is not None and loaded.preview is not None
        rgb, info, preview = loaded.rgb, loaded.info, loaded.preview
        result.image_size = (rgb.shape[1], rgb.shape[0])
        if info.is_grayscale:
            result.flags.append(Flag.GRAYSCALE)
        if photo.photo_date is None and info.photo_date is not None:
            result.photo = photo = _with_date(photo, info.photo_date)
        t_decode = time.perf_counter()
        cal = calibrate(rgb, cfg.marker.dictionary, cfg.marker.ids, cfg.marker.side_mm,
                        cfg.marker.detect_max_side_px, preview)  # fmt: skip
        result.calibration = cal
        result.flags += calibration_flags(cal, cfg.quality)
        t_marker = time.perf_counter()
        h = homography_matrix(cal)
        seg = segment_photo(self.backend, rgb, h, cal.side_mm, cfg.segmentation, preview)
        t_seg = time.perf_counter()
        sc = cfg.segmentation
        grid = seg.grid

        def mask_at(threshold: float) -> np.ndarray:
            return ulcer_mask(seg.probability, threshold, grid.px_per_mm, sc.min_area_mm2,
                              sc.merge_distance_mm, seg.exclude)  # fmt: skip

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
        result.flags += image_flags(seg.image, region, cfg.quality)
        result.flags += mask_flags(measurement, mask, seg.valid, cfg.quality)
        result.signals = quality_signals(seg.image, seg.probability, mask, region, self.threshold,
                                         measurement, seg.candidate_scores,
                                         body_mask(seg.image, grid.px_per_mm))  # fmt: skip
        result.flags += signal_flags(result.signals, cfg.quality)
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
                write_png(result.rectified_path, seg.image)
            if output.write_overlays:
                contours = mask_contours_photo(mask, grid, h)
                overlay = render_overlay(
                    preview.image,
                    cal,
                    contours,
                    measurement.area_mm2,
                    label,
                    image_scale=preview.scale,
                    flags=result.flags,
                )
                result.overlay_path = out_dir / "overlays" / f"{key}.png"
                write_png(result.overlay_path, overlay, compression=1)

        return write


def write_outputs(result: PhotoResult, writer: OutputWriter | None, out_dir: Path) -> PhotoResult:
    """Write a measured photo's mask, rectified image and overlay; failures go into the result."""
    if writer is None:
        return result
    t0 = time.perf_counter()
    try:
        writer(out_dir)
    except OSError as err:
        result.status = "failed"
        result.flags = sorted({*result.flags, Flag.PROCESSING_ERROR})
        result.messages.append(f"{result.photo.path}: cannot write outputs ({err})")
    result.stage_seconds["write"] = time.perf_counter() - t0
    return result


def _read_ahead(
    photos: list[PhotoRecord], preview_max_side_px: int
) -> Iterator[tuple[PhotoRecord, LoadedPhoto]]:
    """Yield photos with their pixels, decoding the next photo while the current is measured."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ulcerseg-read") as pool:
        pending = pool.submit(load_photo, photos[0], preview_max_side_px) if photos else None
        for i, photo in enumerate(photos):
            assert pending is not None
            loaded = pending.result()
            more = i + 1 < len(photos)
            pending = pool.submit(load_photo, photos[i + 1], preview_max_side_px) if more else None
            yield photo, loaded


def _with_date(photo: PhotoRecord, date: str) -> PhotoRecord:
    return replace(photo, photo_date=date)


def open_model(config: PipelineConfig) -> SegmentationBackend:
    """The segmentation backend named by the configuration."""
    model_dir = resolve_model_dir(config.segmentation.model)
    cv2.setNumThreads(config.segmentation.threads)
    return open_backend(model_dir, config.segmentation.backend, num_threads=config.segmentation.threads)


def effective_config(config: PipelineConfig, card: ModelCard) -> PipelineConfig:
    """``config`` with the settings it leaves to the model card (threshold, px per mm) filled in.

    The recorded config and its hash are then what actually ran: editing a card's threshold
    (same weights, same model checksum) changes the config hash, so photos are measured again.
    """
    seg = config.segmentation
    return with_overrides(
        config,
        segmentation={
            "threshold": seg.threshold or card.threshold,
            "px_per_mm": seg.px_per_mm or card.px_per_mm,
        },
    )


def measure_study(
    source: Path,
    out_dir: Path,
    config: PipelineConfig,
    backend: SegmentationBackend | None = None,
    progress: Callable[[Iterator, int], Iterator] | None = None,
    on_result: Callable[[PhotoResult], None] | None = None,
) -> MeasureSummary:
    """Measure every photo under ``source`` (folder or manifest) into ``out_dir``.

    Photos already measured with the same bytes, model and config are skipped, so a killed
    run resumes where it stopped. ``progress`` may wrap the photo iterator (e.g. tqdm).
    Healing is not computed here: call :func:`ulcerseg.healing.heal_study` next (the
    ``ulcerseg measure`` command does).
    The recorded config is :func:`effective_config` (card defaults resolved).
    ``on_result`` is called with each newly measured photo's result once it is stored (e.g. to
    collect ``PhotoResult.signals``, which the store does not keep).
    """
    out_dir = Path(out_dir)
    found: Discovery = discover(source, config.discovery)
    for path, reason in found.problems:
        log.warning("%s: %s", path, reason)
    if not found.photos:
        raise no_photos_error(Path(source), found, config.discovery)  # exit 2, layout hint
    backend = backend or open_model(config)
    config = effective_config(config, backend.card)
    with Study.open(out_dir) as study:
        run: RunInfo = study.start_run(__version__, backend.sha256, config.sha256(), config.to_dict(),
                                       Path(source).resolve())  # fmt: skip
        (out_dir / "run.json").write_text(
            json.dumps(
                {"run_id": run.run_id, "package_version": __version__, "model_sha256": backend.sha256,
                 "model_name": backend.card.name, "config_sha256": run.config_sha256,
                 "config": config.to_dict()},
                indent=2,
            )
        )  # fmt: skip
        summary = MeasureSummary(out_dir=out_dir, run_id=run.run_id, problems=found.problems)
        summary.n_photos = len(found.photos)
        measurer = PhotoMeasurer(config, backend)
        model_sha, config_sha = run.model_sha256, run.config_sha256
        todo = [
            p
            for p in found.photos
            if not study.already_measured(p.sha256, found.relative(p.path), model_sha, config_sha)
        ]
        summary.n_skipped = len(found.photos) - len(todo)
        photos: Iterator[tuple[PhotoRecord, LoadedPhoto]] = _read_ahead(
            todo, config.marker.detect_max_side_px
        )
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

        # files of photo i are written while photo i+1 is measured; a row is committed only
        # once its files exist, so an interrupted run never records a row without its files
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ulcerseg-write") as pool:
            pending: Future[PhotoResult] | None = None
            for photo, loaded in photos:
                result, writer = measurer.compute(photo, loaded)
                if pending is not None:
                    store(pending.result())
                pending = pool.submit(write_outputs, result, writer, out_dir)
            if pending is not None:
                store(pending.result())
        study.finish_run(run, summary.n_measured, summary.n_failed, summary.n_skipped)
        study.export_csv()
        summary.n_needs_review = sum(int(r["needs_review"]) for r in study.latest_measurements())
    return summary
