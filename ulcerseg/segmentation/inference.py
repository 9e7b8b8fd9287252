"""Segmentation of a calibrated photo on the marker plane, coarse to fine.

A coarse pass over the whole search region (at ``coarse_factor`` x the model's px per mm)
finds candidate regions; only crops around those are rectified and segmented at the model's
full physical resolution, so the cost follows the region that matters, not the megapixels.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from ulcerseg.calibration.rectify import rectify, search_grid, valid_region
from ulcerseg.config import TTA_MODES, SegmentationConfig
from ulcerseg.geometry import RectifiedGrid, apply_homography, reduced_to_photo
from ulcerseg.imageio import Preview
from ulcerseg.segmentation.backends import SegmentationBackend
from ulcerseg.segmentation.candidates import Candidate, rank_candidates
from ulcerseg.segmentation.postprocess import ulcer_mask

log = logging.getLogger(__name__)

_STRIDE = 32  # encoder output stride: inputs must be multiples of it
# regions up to this many px a side go through the network in one pass (no overlapping
# windows: a 675 px coarse region costs one 704 px pass instead of four 512 px windows)
SINGLE_PASS_MAX_PX = 1024


def _pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    pad = ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0))
    return np.pad(image, pad, mode="reflect" if min(image.shape[:2]) > 1 else "edge")


def predict_image(
    predict: Callable[[np.ndarray], np.ndarray], rgb: np.ndarray, window: int, pad_multiple: int = _STRIDE
) -> np.ndarray:
    """Foreground probability (float32 H x W) of an RGB image of any size.

    ``predict`` maps uint8 tiles (N x H x W x 3, sides multiples of 32) to probabilities, e.g.
    a backend's ``predict_proba``. Images up to ``window`` px a side go through the network in
    one pass (it is fully convolutional), reflect-padded to multiples of ``pad_multiple`` px
    (32; a batching backend asks for more, so that regions share shapes); larger ones by
    sliding windows with 50% overlap, blended with a smooth weight so that tile borders leave
    no seams.
    """
    h, w = rgb.shape[:2]
    window -= window % _STRIDE
    if h <= window and w <= window:
        ph, pw = -(-h // pad_multiple) * pad_multiple, -(-w // pad_multiple) * pad_multiple
        return predict(_pad_to(rgb, ph, pw)[None])[0, :h, :w]
    ph, pw = max(h, window), max(w, window)
    padded = _pad_to(rgb, ph, pw)
    step = window // 2
    ys = sorted({*range(0, ph - window + 1, step), ph - window})
    xs = sorted({*range(0, pw - window + 1, step), pw - window})
    ramp = np.minimum(np.arange(window) + 1, window - np.arange(window)).astype(np.float32)
    weight = np.outer(ramp, ramp)
    acc = np.zeros((ph, pw), np.float32)
    norm = np.zeros((ph, pw), np.float32)
    for y in ys:
        tiles = np.stack([padded[y : y + window, x : x + window] for x in xs])
        probs = predict(tiles)
        for x, prob in zip(xs, probs, strict=True):
            acc[y : y + window, x : x + window] += prob * weight
            norm[y : y + window, x : x + window] += weight
    return (acc / np.maximum(norm, 1e-6))[:h, :w]


def with_flip_tta(
    predict: Callable[[np.ndarray], np.ndarray], mode: str
) -> Callable[[np.ndarray], np.ndarray]:
    """``predict`` averaged over mirrored copies of the tiles (test-time augmentation).

    ``mode``: ``none`` (one pass), ``hflip`` (identity + left-right mirror, 2 passes) or
    ``flips`` (identity, left-right, up-down and both, 4 passes). Each prediction is mirrored
    back before averaging, so the result stays in the tiles' pixel frame (N x H x W).
    """
    if mode not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {mode!r} (expected {', '.join(TTA_MODES)})")
    if mode == "none":
        return predict
    # axes of N x H x W x 3 tiles to mirror; the same axes of the N x H x W output
    flips = [mirrored(predict, axes) for axes in ([(2,)] if mode == "hflip" else [(2,), (1,), (1, 2)])]

    def averaged(tiles: np.ndarray) -> np.ndarray:
        acc = predict(tiles).astype(np.float32)
        for flipped in flips:
            acc += flipped(tiles)
        return acc / (1 + len(flips))

    return averaged


def mirrored(
    predict: Callable[[np.ndarray], np.ndarray], axes: tuple[int, ...] = (2,)
) -> Callable[[np.ndarray], np.ndarray]:
    """``predict`` run on tiles mirrored along ``axes`` (of N x H x W x 3; default (2,):
    left-right), its output mirrored back into the tiles' pixel frame (N x H x W)."""

    def run(tiles: np.ndarray) -> np.ndarray:
        return np.flip(predict(np.ascontiguousarray(np.flip(tiles, axis=axes))), axis=axes)

    return run


@dataclass(frozen=True)
class SegmentationOutput:
    """The rectified image, validity and probability on one grid (the grid that is measured)."""

    grid: RectifiedGrid
    image: np.ndarray  # RGB uint8, rectified frame
    valid: np.ndarray  # bool, inside the photo
    exclude: np.ndarray  # bool, marker + quiet zone or outside the photo
    probability: np.ndarray  # float32 in [0, 1]
    found_candidates: bool
    seconds: dict[str, float] = field(default_factory=dict)  # time in "rectify" and "segment"
    candidate_scores: tuple[float, ...] = ()  # coarse candidate groups' scores, best first
    # the crop's own probability and that of its left-right mirror image, mirrored back
    # (SegmentationConfig.mirror_check): their masks' disagreement is the tta_disagreement
    # signal; with mirror_average, ``probability`` is their mean
    mirror_pair: tuple[np.ndarray, np.ndarray] | None = None
    # nothing confirmed: the largest candidate region's area (mm²) in the search-region passes;
    # a no_ulcer_found where the network saw a candidate at some scale is not conclusive
    unconfirmed_candidate_mm2: float = 0.0
    # the marker's white paper (:func:`marker_white_luma`): the exposure reference; None unseen
    marker_white_luma: float | None = None


def marker_exclusion(grid: RectifiedGrid, side_mm: float, quiet_zone_mm: float = 2.5) -> np.ndarray:
    """Grid pixels covered by the marker and its white quiet zone (bool)."""
    q = quiet_zone_mm
    square = np.array([[-q, -q], [side_mm + q, -q], [side_mm + q, side_mm + q], [-q, side_mm + q]])
    poly = apply_homography(grid.mm_to_px(), square)
    mask = np.zeros((grid.height, grid.width), np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return mask.astype(bool)


def quiet_zone_ring(image: np.ndarray, grid: RectifiedGrid, side_mm: float) -> np.ndarray:
    """The pixels (bool, ``image``'s shape) of the marker's printed white quiet zone in a ring
    0.4-1.4 mm outside its black square (marker plane mm, ``grid``'s rectified frame)."""
    lo = -1.4
    ring_outer = np.array([[lo, lo], [side_mm - lo, lo], [side_mm - lo, side_mm - lo], [lo, side_mm - lo]])
    hi = -0.4
    ring_inner = np.array([[hi, hi], [side_mm - hi, hi], [side_mm - hi, side_mm - hi], [hi, side_mm - hi]])
    to_px = grid.mm_to_px()
    ring = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(ring, [np.round(apply_homography(to_px, ring_outer)).astype(np.int32)], 1)
    cv2.fillPoly(ring, [np.round(apply_homography(to_px, ring_inner)).astype(np.int32)], 0)
    return ring.astype(bool)


def marker_white_gains(image: np.ndarray, grid: RectifiedGrid, side_mm: float) -> np.ndarray | None:
    """Per-channel gains (RGB) that make the marker's white border neutral grey.

    The printed quiet zone is white paper in the marker plane: its median colour in a ring
    0.4-1.4 mm outside the black square measures the colour cast of the photo. Gains keep the
    mean brightness. None when too little of the ring is visible.
    """
    pixels = image[quiet_zone_ring(image, grid, side_mm)]
    pixels = pixels[pixels.max(axis=1) < 250]  # clipped pixels carry no colour information
    if len(pixels) < 20:
        return None
    white = np.median(pixels.astype(np.float32), axis=0)
    if white.min() < 20:
        return None
    return (white.mean() / white).astype(np.float32)


def marker_white_luma(
    image: np.ndarray, grid: RectifiedGrid, side_mm: float, valid: np.ndarray | None = None
) -> float | None:
    """Median luma (0-255, clipped pixels included) of the marker's white quiet zone: the photo's
    exposure on a surface of known reflectance, whatever the skin's tone. ``valid``: the pixels
    of ``image`` inside the photo (the rest is fill, never paper). None when fewer than 20 of
    its pixels are seen."""
    ring = quiet_zone_ring(image, grid, side_mm)
    if valid is not None:
        ring &= valid
    if int(ring.sum()) < 20:
        return None
    return float(np.median(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[ring]))


def apply_gains(image: np.ndarray, gains: np.ndarray | None) -> np.ndarray:
    """Multiply RGB channels by ``gains`` (uint8 in, uint8 out, clipped)."""
    if gains is None:
        return image
    return np.clip(image.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def _run_on_grid(
    backend: SegmentationBackend,
    predict_proba: Callable[[np.ndarray], np.ndarray],
    photo_rgb: np.ndarray,
    h_px_to_mm: np.ndarray,
    grid: RectifiedGrid,
    side_mm: float,
    gains: np.ndarray | None = None,
    tta: str = "none",
    rectified: np.ndarray | None = None,
) -> SegmentationOutput:
    """One pass of ``predict_proba`` over ``grid``; ``rectified``: the photo already rectified
    to ``grid`` (not done again)."""
    size = (photo_rgb.shape[1], photo_rgb.shape[0])
    t0 = time.perf_counter()
    image = rectify(photo_rgb, h_px_to_mm, grid) if rectified is None else rectified
    valid = valid_region(h_px_to_mm, size, grid)
    exclude = marker_exclusion(grid, side_mm) | ~valid
    t1 = time.perf_counter()
    prob = _probability(backend, with_flip_tta(predict_proba, tta), apply_gains(image, gains), exclude)
    seconds = {"rectify": t1 - t0, "segment": time.perf_counter() - t1}
    return SegmentationOutput(grid, image, valid, exclude, prob, True, seconds)


def _probability(
    backend: SegmentationBackend,
    predict: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    exclude: np.ndarray,
) -> np.ndarray:
    """Probability (float32) of a rectified ``image``, 0 on ``exclude``: one pass when the
    region is small enough, else windows of at least 2 tiles a side (context around small
    ulcers), padded as the backend asks (:func:`pad_multiple`)."""
    window = max(2 * backend.card.tile_px, SINGLE_PASS_MAX_PX)
    prob = predict_image(predict, image, window, pad_multiple(backend))
    prob[exclude] = 0.0
    return prob


def segment_photo(
    backend: SegmentationBackend,
    photo_rgb: np.ndarray,
    h_px_to_mm: np.ndarray,
    side_mm: float,
    config: SegmentationConfig,
    preview: Preview | None = None,
) -> SegmentationOutput:
    """Coarse-to-fine segmentation of a calibrated photo around its marker.

    The coarse pass is resampled from ``preview`` (a downscaled copy of the photo) when given.
    """
    card = backend.card
    px_per_mm = config.px_per_mm or card.px_per_mm
    size = (photo_rgb.shape[1], photo_rgb.shape[0])
    centre = (side_mm / 2, side_mm / 2)
    coarse_grid = search_grid(
        h_px_to_mm, size, centre, config.search_radius_mm, px_per_mm * config.coarse_factor
    )
    source, h_source = photo_rgb, h_px_to_mm
    if preview is not None:
        source = preview.image
        # preview px -> photo px, pixel centres aligned as OpenCV resizes them
        h_source = h_px_to_mm @ reduced_to_photo(1.0 / preview.scale)
    # the marker's neighbourhood on the search grid: its white paper gives the colour cast (white
    # balance) and the exposure on a known reflectance (the underexposed flag)
    t0 = time.perf_counter()
    around_marker = rectify(source, h_source, coarse_grid)
    rectify_seconds = time.perf_counter() - t0
    gains = None
    if config.white_balance == "marker":
        gains = marker_white_gains(around_marker, coarse_grid, side_mm)
    # a backend may run a cheaper (e.g. int8) network for the coarse pass: it only proposes
    # candidates, the fine pass that gives the area always runs predict_proba
    coarse_proba = getattr(backend, "predict_coarse_proba", backend.predict_proba)
    coarse = _run_on_grid(backend, coarse_proba, source, h_source, coarse_grid, side_mm, gains, config.tta,
                          around_marker)  # fmt: skip
    coarse.seconds["rectify"] += rectify_seconds
    white_luma = marker_white_luma(around_marker, coarse_grid, side_mm, coarse.valid)
    if config.coarse_factor >= 1.0:  # one pass at full resolution: nothing to refine
        found = bool((coarse.probability >= config.coarse_threshold).any())
        return replace(coarse, found_candidates=found, marker_white_luma=white_luma)
    threshold = config.threshold or card.threshold

    def confirm(
        region: SegmentationOutput,
    ) -> tuple[SegmentationOutput | None, np.ndarray | None, list[Candidate], dict]:
        """Fine passes over ``region``'s best candidates: the most confident one and its
        measured mask (None when no fine pass has a measurable mask), the candidates, the time
        spent."""
        seconds = dict(region.seconds)
        candidates = region.probability >= config.coarse_threshold
        ranked = rank_candidates(region.probability, candidates, region.grid, config, region.image, centre)
        best: SegmentationOutput | None = None
        best_mask: np.ndarray | None = None
        best_score = 0.0
        # with recentred crops, the first crops lie on the recentring lattice too: where the fine
        # mask's box snaps to the same grid as the candidate's, the recentring pass is skipped
        lattice = config.crop_lattice_mm if config.recentre_crop else 0.0
        for cand in ranked[: config.max_candidates]:
            fine_grid = _fine_grid((cand.lo_mm, cand.hi_mm), region.grid, px_per_mm, lattice)
            fine = _run_on_grid(backend, backend.predict_proba, photo_rgb, h_px_to_mm, fine_grid, side_mm,
                                gains, config.tta)  # fmt: skip
            for stage, sec in fine.seconds.items():
                seconds[stage] += sec
            # the ulcer is where the fine pass is most confident: probability mass above threshold
            score = float(fine.probability[fine.probability >= threshold].sum()) * cand.weight
            # confirmed only by what the measurement keeps: a few specks above threshold (smaller
            # than min_area_mm2) would otherwise confirm a crop that measures nothing, and skip
            # the full-resolution recheck that a no_ulcer_found must rest on
            if score > best_score:
                mask = measured_mask(fine, threshold, config)
                if mask.any():
                    best, best_mask, best_score = fine, mask, score
        return best, best_mask, ranked, seconds

    best, best_mask, ranked, seconds = confirm(coarse)
    searched = [coarse]
    if best is None and config.recheck_full_resolution:
        # no_ulcer_found is the finding of a healed ulcer: it must not rest on the coarse scale,
        # where a small ulcer can vanish (on the end-to-end benchmark a 4.8 mm² ulcer had coarse
        # probability 0.01, 0.99 at the model's px/mm). Search once more at full resolution.
        full_grid = search_grid(h_px_to_mm, size, centre, config.search_radius_mm, px_per_mm)
        full = _run_on_grid(backend, backend.predict_proba, photo_rgb, h_px_to_mm, full_grid, side_mm,
                            gains, config.tta)  # fmt: skip
        coarse = replace(full, seconds={k: v + full.seconds[k] for k, v in seconds.items()})
        searched.append(coarse)
        best, best_mask, ranked, seconds = confirm(coarse)
    if best is None or best_mask is None:
        # nothing confirmed at full resolution: keep the whole searched region, so the
        # assessor reviewing "no ulcer found" sees everywhere the ulcer could have been
        found = bool(ranked)
        scores = tuple(c.score for c in ranked)
        unconfirmed = max(measured_mask(r, config.coarse_threshold, config).sum() / r.grid.px_per_mm**2
                          for r in searched)  # fmt: skip
        return replace(coarse, found_candidates=found, seconds=seconds, candidate_scores=scores,
                       unconfirmed_candidate_mm2=float(unconfirmed),
                       marker_white_luma=white_luma)  # fmt: skip
    if config.recentre_crop:
        best = _recentred(backend, best, best_mask, coarse.grid, photo_rgb, h_px_to_mm, side_mm, gains,
                          config, threshold, px_per_mm)  # fmt: skip
        for stage in seconds:
            seconds[stage] += best.seconds.get(stage, 0.0)
    probability, pair = best.probability, None
    if config.mirror_check:
        # the crop once more through the network, mirrored: where the two disagree the answer
        # hangs on details a mirror should not change (the tta_disagreement signal)
        t0 = time.perf_counter()
        mirror = _probability(
            backend, mirrored(backend.predict_proba), apply_gains(best.image, gains), best.exclude
        )
        seconds["segment"] += time.perf_counter() - t0
        pair = (best.probability, mirror)
        if config.mirror_average:
            # the mean of the two is a fine-pass-only flip TTA at no extra cost. Where only one
            # orientation sees the ulcer, the mean can stay below threshold everywhere: a photo
            # that shows an ulcer must not become no_ulcer_found (a healing finding) for that, so
            # the crop's own probability is measured then (the disagreement flags the photo)
            mean = (best.probability + mirror) / 2
            if _has_ulcer(replace(best, probability=mean), threshold, config):
                probability = mean
            else:
                log.debug("mirror average below threshold everywhere: the crop's own probability is measured")
    return SegmentationOutput(
        best.grid, best.image, best.valid, best.exclude, probability, True, seconds,
        tuple(c.score for c in ranked), pair, marker_white_luma=white_luma,
    )  # fmt: skip


def _has_ulcer(seg: SegmentationOutput, threshold: float, config: SegmentationConfig) -> bool:
    """True when ``seg``'s probability gives a non-empty ulcer mask (what is measured)."""
    return bool(measured_mask(seg, threshold, config).any())


def measured_mask(
    seg: SegmentationOutput,
    threshold: float,
    config: SegmentationConfig,
    probability: np.ndarray | None = None,
) -> np.ndarray:
    """The ulcer mask (bool, ``seg``'s grid) that is measured: :func:`ulcer_mask` of ``seg``'s
    probability (or ``probability`` on the same grid) at ``threshold``, with the config's
    minimum area and merge distance, never on ``seg.exclude``. One rule for the measurement
    and for confirming candidates."""
    prob = seg.probability if probability is None else probability
    return ulcer_mask(prob, threshold, seg.grid.px_per_mm, config.min_area_mm2, config.merge_distance_mm,
                      seg.exclude)  # fmt: skip


def pad_multiple(backend: SegmentationBackend) -> int:
    """Side multiple (px) the backend wants inputs padded to (32 unless it batches)."""
    return int(getattr(backend, "pad_multiple", _STRIDE))


def candidate_boxes(
    probability: np.ndarray, candidates: np.ndarray, grid: RectifiedGrid, config: SegmentationConfig
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Marker-plane boxes (lo, hi in mm, with margin) of the best ``max_candidates`` coarse
    candidates (ranked by :func:`ulcerseg.segmentation.candidates.rank_candidates`)."""
    ranked = rank_candidates(probability, candidates, grid, config)
    return [(c.lo_mm, c.hi_mm) for c in ranked[: config.max_candidates]]


def _recentred(
    backend: SegmentationBackend,
    best: SegmentationOutput,
    mask: np.ndarray,
    region: RectifiedGrid,
    photo_rgb: np.ndarray,
    h_px_to_mm: np.ndarray,
    side_mm: float,
    gains: np.ndarray | None,
    config: SegmentationConfig,
    threshold: float,
    px_per_mm: float,
) -> SegmentationOutput:
    """The chosen ulcer segmented once more on a crop placed around ``best``'s own mask (its
    box plus ``crop_margin_mm``, at least 20 mm, on the ``crop_lattice_mm`` lattice of the marker
    plane, inside the searched ``region``). ``best`` itself when the crop would not move, or
    when the new pass has no ulcer mask. ``mask``: ``best``'s measured mask (non-empty, from
    the confirmation). ``seconds`` holds only the new pass's time."""
    ys, xs = np.nonzero(mask)
    origin = np.asarray(best.grid.origin_mm)
    lo = np.array([xs.min(), ys.min()]) / best.grid.px_per_mm + origin - config.crop_margin_mm
    hi = np.array([xs.max() + 1, ys.max() + 1]) / best.grid.px_per_mm + origin + config.crop_margin_mm
    grid = _fine_grid((lo, hi), region, px_per_mm, config.crop_lattice_mm)
    if grid == best.grid:
        return replace(best, seconds={})
    fine = _run_on_grid(backend, backend.predict_proba, photo_rgb, h_px_to_mm, grid, side_mm,
                        gains, config.tta)  # fmt: skip
    if not _has_ulcer(fine, threshold, config):  # moving the crop must not lose the ulcer
        return replace(best, seconds=fine.seconds)
    return fine


def _fine_grid(
    box: tuple[np.ndarray, np.ndarray], coarse: RectifiedGrid, px_per_mm: float, lattice_mm: float = 0.0
) -> RectifiedGrid:
    """Full-resolution grid over a candidate box: at least 20 mm square (context for review),
    clipped to the searched region. ``lattice_mm`` > 0: the box's edges are moved outward onto
    multiples of it (mm of the marker plane) and the region's inward, so that nearby boxes give
    the very same grid (same pixel centres, same resampling)."""
    lo, hi = box
    mid, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, 10.0)
    origin = np.asarray(coarse.origin_mm)
    far = origin + np.array([coarse.width, coarse.height]) / coarse.px_per_mm
    lo, hi = mid - half, mid + half
    if lattice_mm > 0:
        lo, hi = np.floor(lo / lattice_mm) * lattice_mm, np.ceil(hi / lattice_mm) * lattice_mm
        inner_lo = np.ceil(origin / lattice_mm) * lattice_mm
        inner_hi = np.floor(far / lattice_mm) * lattice_mm
        if np.all(inner_hi > inner_lo):
            origin, far = inner_lo, inner_hi
    lo, hi = np.maximum(lo, origin), np.minimum(hi, far)
    extent_px = (hi - lo) * px_per_mm
    if lattice_mm > 0:  # whole lattice steps: exact px counts, not one more from rounding error
        extent_px = np.round(extent_px, 6)
    size = np.maximum(np.ceil(extent_px).astype(int), 1)
    return RectifiedGrid((float(lo[0]), float(lo[1])), px_per_mm, int(size[0]), int(size[1]))
