"""Images and outlines for the review screen: the review frame at the photo's native resolution.

Frames (see ``docs/architecture.md``):

- **model frame**: the stored rectified image and mask (``RectifiedGrid`` at the model's px/mm).
- **review frame**: the same region of the marker plane, same origin, at
  ``review_px_per_mm = clip(photo px/mm at the region's centre, model px/mm, 40)``. A point maps
  from model px to review px by the scale factor ``f = review / model px/mm`` only (pixel
  centres at integers in both), so outlines map exactly.
- **photo view**: the whole original photo (EXIF orientation applied), downscaled to at most
  :data:`PHOTO_MAX_SIDE_PX`; ``review_to_photo`` (3x3) maps review px to its px.

The review image is re-rectified from the original photo with
:func:`ulcerseg.calibration.rectify.rectify`; the photo is located through the study store,
checked to lie inside the run's input folder and to still hash to its sha256, and never
modified. Without it (moved, changed) the stored rectified image is shown at ``f = 1``.
Every image is re-encoded from raw pixels (:func:`encode_png_clean`): no metadata leaves.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ulcerseg.annotations import mask_to_polygons
from ulcerseg.calibration.marker import local_scale_and_tilt
from ulcerseg.calibration.rectify import rectify
from ulcerseg.errors import UlcersegError
from ulcerseg.geometry import RectifiedGrid
from ulcerseg.imageio import decode_rgb, make_preview, read_mask, read_rgb, sha256_bytes
from ulcerseg.review.blinding import encode_png_clean
from ulcerseg.review.decisions import FRAME_KEY, accepted_outline_changed, outline_file, outline_file_problem
from ulcerseg.review.items import ManualItem, ReviewItem, inside_out_dir
from ulcerseg.review.rules import Action
from ulcerseg.store import DB_NAME, connect
from ulcerseg.store.review import decision_details
from ulcerseg.store.study import PhotoSource, photo_source

__all__ = [
    "MAX_REVIEW_PX_PER_MM",
    "PHOTO_MAX_SIDE_PX",
    "ReviewFrame",
    "ReviewViews",
    "native_px_per_mm",
    "review_grid",
    "route",
]

log = logging.getLogger(__name__)

MAX_REVIEW_PX_PER_MM = 40.0
"""Cap of the review frame's resolution (px/mm)."""
MAX_REVIEW_PIXELS = 16_000_000
"""Cap of the review image's size; the resolution is lowered (never below the model's) to fit."""
PHOTO_MAX_SIDE_PX = 2000
"""Longer side of the whole-photo context view (px)."""


def native_px_per_mm(h_px_to_mm: np.ndarray, centre_mm: tuple[float, float]) -> float:
    """The photo's own resolution (photo px per mm, geometric mean of both axes) at a plane point."""
    ppm, _ = local_scale_and_tilt(np.linalg.inv(h_px_to_mm), np.asarray(centre_mm, float))
    return ppm


def review_grid(model: RectifiedGrid, native_ppm: float | None) -> RectifiedGrid:
    """The review frame for a model frame: same origin, px/mm = native clipped to [model, 40].

    Model px (u, v) is review px (f u, f v) with f = review / model px/mm.
    """
    ppm = model.px_per_mm
    if native_ppm is not None and np.isfinite(native_ppm):
        ppm = max(model.px_per_mm, min(float(native_ppm), MAX_REVIEW_PX_PER_MM))
    limit = float(np.sqrt(MAX_REVIEW_PIXELS / max(1, model.width * model.height))) * model.px_per_mm
    ppm = max(model.px_per_mm, min(ppm, limit))
    f = ppm / model.px_per_mm
    width, height = max(1, round(model.width * f)), max(1, round(model.height * f))
    return RectifiedGrid(model.origin_mm, ppm, width, height)


@dataclass(frozen=True)
class ReviewFrame:
    """Geometry of one item's review screen (see the module docstring for the frames)."""

    model: RectifiedGrid
    grid: RectifiedGrid
    homography: np.ndarray | None  # photo px -> mm
    photo_path: Path | None  # original photo, verified; None when unavailable

    @property
    def factor(self) -> float:
        """Review px per model px."""
        return self.grid.px_per_mm / self.model.px_per_mm

    def review_to_photo(self, photo_scale: float) -> np.ndarray | None:
        """3x3 map from review px to px of the photo view (photo px x ``photo_scale``)."""
        if self.homography is None:
            return None
        down = np.diag([photo_scale, photo_scale, 1.0])
        return down @ np.linalg.inv(self.homography) @ np.linalg.inv(self.grid.mm_to_px())


def _verified_photo(source: PhotoSource | None, sha256: str) -> tuple[Path, bytes] | None:
    if source is None:
        return None
    root = source.input_root.resolve()
    path = (root / source.file).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    data = path.read_bytes()
    if sha256_bytes(data) != sha256:
        log.warning("photo %s changed since it was measured: review shows the stored image", sha256[:16])
        return None
    return path, data


def _contours(mask: np.ndarray | None, factor: float) -> list[list[list[float]]]:
    """Outlines of a model-frame mask in review px (0.5 iso-line, area = pixel count)."""
    if mask is None or not mask.any():
        return []
    return [np.round(p * factor, 3).tolist() for p in mask_to_polygons(mask)]


def _read_mask(path: Path | None) -> np.ndarray | None:
    return None if path is None else read_mask(path)


def reading_outline(
    out_dir: Path, decision: dict[str, Any], item: ReviewItem, proposed: np.ndarray | None
) -> tuple[np.ndarray | None, str | None]:
    """(model-frame mask, None) of the outline a reader's decision stands for, or (None, why
    it is not shown) when it cannot be drawn on ``item``'s current frame.

    A correction draws its mask, an accept the copy it kept (0.3.1+), both only where the
    decision's recorded frame is the item's frame (another frame: the photo was measured again
    since, and the pixels lie elsewhere) and the file still has its recorded SHA-256. An accept
    without a kept copy (before 0.3.1) is the current proposal only while the photo's area is
    the accepted one; a healed rejection is the proposal. Other actions have no outline.
    ``proposed``: the item's automated mask (:meth:`ReviewItem.proposed_mask`, read once).
    """
    action = decision.get("action")
    if action == Action.REJECT_HEALED:
        return proposed, None
    if action not in (Action.ACCEPT, Action.CORRECT):
        return None, None
    if action == Action.ACCEPT and outline_file(decision) is None:
        if accepted_outline_changed(decision, {"area_mm2": item.area_mm2}):
            return None, "outline not kept (accepted before 0.3.1) and the photo was measured again since"
        return proposed, None
    recorded = decision_details(decision).get(FRAME_KEY)
    if recorded is not None and recorded != item.frame():
        return None, "outline drawn on another rectified frame (the photo was measured again since)"
    problem = outline_file_problem(out_dir, decision)
    if problem is not None:
        log.warning("adjudication view: %s", problem)
        return None, "outline file missing or changed since the decision (run `ulcerseg review verify`)"
    return _read_mask(inside_out_dir(out_dir, outline_file(decision))), None


class ReviewViews:
    """Renders (and keeps a few of) each item's review image, photo view and outlines."""

    def __init__(self, out_dir: Path, keep: int = 6) -> None:
        self.out_dir = Path(out_dir)
        self.keep = keep
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def _cached(self, key: tuple[str, str], make: Any) -> Any:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = make()
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
        return value

    def _source(self, item: ReviewItem) -> PhotoSource | None:
        conn = connect(self.out_dir / DB_NAME)
        try:
            return photo_source(conn, item.photo_sha256)
        finally:
            conn.close()

    def frame(self, item: ReviewItem) -> ReviewFrame:
        """The item's :class:`ReviewFrame` (reads the store and checks the original photo)."""
        return self._cached((item.key, "frame"), lambda: self._frame(item))

    def photo_path(self, item: ReviewItem | ManualItem) -> Path | None:
        """The item's original photo, verified (inside the run's input folder, same sha256)."""
        if isinstance(item, ManualItem):
            return item.photo_path  # found inside the run's input folder; the hash is checked on read

        def make() -> Path | None:
            found = _verified_photo(self._source(item), item.photo_sha256)
            return None if found is None else found[0]

        return self._cached((item.key, "photo_path"), make)

    def _frame(self, item: ReviewItem) -> ReviewFrame:
        if item.rectified_path is None:
            raise UlcersegError(f"photo {item.key} has no rectified frame (manual scale only)")
        src = self._source(item)
        h, w = read_rgb(item.rectified_path).shape[:2]
        origin = src.origin_mm if src is not None and src.origin_mm is not None else (0.0, 0.0)
        model = RectifiedGrid(origin, item.px_per_mm, w, h)
        hom = None if src is None or src.homography is None else np.asarray(src.homography).reshape(3, 3)
        found = _verified_photo(src, item.photo_sha256) if hom is not None else None
        if hom is None or found is None or src is None or src.origin_mm is None:
            return ReviewFrame(model, model, hom, found[0] if found else None)
        centre = (origin[0] + (w - 1) / 2 / item.px_per_mm, origin[1] + (h - 1) / 2 / item.px_per_mm)
        return ReviewFrame(model, review_grid(model, native_px_per_mm(hom, centre)), hom, found[0])

    def _photo_rgb(self, item: ReviewItem | ManualItem, path: Path | None) -> np.ndarray | None:
        if path is None:
            return None
        data = path.read_bytes()
        if sha256_bytes(data) != item.photo_sha256:
            return None
        return decode_rgb(path, data)

    def review_png(self, item: ReviewItem) -> bytes:
        """The review frame's image (PNG without metadata)."""

        def make() -> bytes:
            frame = self.frame(item)
            rgb = self._photo_rgb(item, frame.photo_path) if frame.grid != frame.model else None
            if rgb is None or frame.homography is None:
                return encode_png_clean(read_rgb(item.rectified_path))
            return encode_png_clean(rectify(rgb, frame.homography, frame.grid), compress_level=1)

        return self._cached((item.key, "review.png"), make)

    def photo_view(self, item: ReviewItem | ManualItem) -> tuple[bytes, float] | None:
        """(PNG of the whole photo downscaled, photo-view px per photo px), None without a photo."""

        def make() -> tuple[bytes, float] | None:
            path = self.photo_path(item) if isinstance(item, ManualItem) else self.frame(item).photo_path
            rgb = self._photo_rgb(item, path)
            if rgb is None:
                return None
            preview = make_preview(rgb, PHOTO_MAX_SIDE_PX)
            return encode_png_clean(preview.image, compress_level=1), preview.scale

        return self._cached((item.key, "photo.png"), make)

    def view_json(
        self, item: ReviewItem | ManualItem, readings: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Geometry and outlines (review px) of an item; ``readings`` adds each reader's outline.

        ``readings``: the readers' latest decisions (adjudication only), each with
        ``assessor``, ``action``, ``area_after_mm2`` and ``corrected_mask_file``. A manual-scale
        item (no marker) has only the photo view: ``manual_scale`` true, no outline, no frame.
        """
        if isinstance(item, ManualItem):
            photo = self.photo_view(item)
            return {
                "key": item.key,
                "manual_scale": True,
                "native": False,
                "contours": [],
                "photo": None if photo is None else {"scale": photo[1], "review_to_photo": None},
            }
        frame = self.frame(item)
        f = frame.factor
        proposed = item.proposed_mask()
        proposal = _contours(proposed, f)
        photo = self.photo_view(item) if frame.photo_path is not None else None
        out: dict[str, Any] = {
            "key": item.key,
            "width": frame.grid.width,
            "height": frame.grid.height,
            "px_per_mm": frame.grid.px_per_mm,
            "model_px_per_mm": frame.model.px_per_mm,
            "factor": f,
            "native": frame.grid != frame.model,
            "manual_scale": False,
            "contours": proposal,
            "photo": None,
        }
        if photo is not None:
            m = frame.review_to_photo(photo[1])
            out["photo"] = {"scale": photo[1], "review_to_photo": None if m is None else m.ravel().tolist()}
        if readings is not None:
            shown = []
            for r in readings:
                mask, note = reading_outline(self.out_dir, r, item, proposed)
                shown.append({k: r.get(k) for k in ("assessor", "action", "area_after_mm2")})
                shown[-1]["contours"] = _contours(mask, f)
                shown[-1]["outline_note"] = note
            out["readings"] = shown
        return out


def app_views(app: Any) -> ReviewViews:
    """The server's one :class:`ReviewViews` (made on first use)."""
    views: ReviewViews | None = getattr(app, "_views", None)
    if views is None:
        views = ReviewViews(app.out_dir)
        app._views = views
    return views


def route(app: Any, path: str) -> tuple[int, bytes, str] | None:
    """Answer the review-view GETs, or None when ``path`` is not one of them.

    ``/view/<key>.json`` (outlines and geometry), ``/view/<key>/review.png`` (review frame),
    ``/view/<key>/photo.png`` (whole photo, downscaled). ``app`` is the server's ``ReviewApp``.
    """
    import json

    if not path.startswith("/view/"):
        return None
    rest = path.removeprefix("/view/")
    views = app_views(app)
    key, _, kind = rest.partition("/")
    if kind == "" and key.endswith(".json"):
        key, kind = key.removesuffix(".json"), "json"
    item = app.by_key.get(key) or getattr(app, "manual_by_key", {}).get(key)
    if item is None or kind not in ("json", "review.png", "photo.png"):
        return 404, b'{"error": "not found"}', "application/json"
    try:
        if kind == "review.png":
            if isinstance(item, ManualItem):
                return 404, b'{"error": "no marker-plane frame: use the whole photo"}', "application/json"
            return 200, views.review_png(item), "image/png"
        if kind == "photo.png":
            photo = views.photo_view(item)
            if photo is None:
                return 404, b'{"error": "the original photo is not available"}', "application/json"
            return 200, photo[0], "image/png"
        readings = _adjudication_readings(app, item) if getattr(app, "adjudicate", False) else None
        return 200, json.dumps(views.view_json(item, readings)).encode(), "application/json"
    except (UlcersegError, OSError) as err:
        # the details name files of the input folder (subject IDs, visits): the log has them,
        # the assessor's browser never does
        log.warning("review view %s failed: %s", key, err)
        return 500, b'{"error": "image unavailable (see the server log)"}', "application/json"


def _adjudication_readings(app: Any, item: ReviewItem | ManualItem) -> list[dict[str, Any]]:
    from ulcerseg.review.decisions import list_decisions
    from ulcerseg.review.rules import latest_reads

    conn = connect(Path(app.out_dir) / DB_NAME)
    try:
        decisions = list_decisions(conn)
    finally:
        conn.close()
    reads = latest_reads(decisions)
    return [dict(d) for (sha, _), d in sorted(reads.items()) if sha == item.photo_sha256]
