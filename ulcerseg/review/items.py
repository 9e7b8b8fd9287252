"""Review items: the photos to review, blinded, in a reproducible random order."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ulcerseg.healing.config import ReviewSettings
from ulcerseg.imageio import read_mask
from ulcerseg.records import Flag
from ulcerseg.review.blinding import subject_pseudonym, ulcer_pseudonym

__all__ = [
    "KEY_RE",
    "ManualItem",
    "ReviewItem",
    "build_items",
    "build_manual_items",
    "inside_out_dir",
    "reader_order",
]

log = logging.getLogger(__name__)

KEY_RE = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class ItemIdentity:
    """Who and what a review item is: real IDs (server side only) and the pseudonyms shown.

    ``key`` is the first 16 hex chars of the photo's sha256.
    """

    key: str
    photo_sha256: str
    subject_id: str
    ulcer_id: str
    visit: str
    subject_pseudonym: str
    ulcer_pseudonym: str


@dataclass(frozen=True)
class ReviewItem(ItemIdentity):
    """One measured photo to review."""

    area_mm2: float | None
    px_per_mm: float
    rectified_path: Path
    mask_path: Path | None
    flags: tuple[str, ...]
    needs_review: bool
    #: the rectified frame's top-left on the marker plane (mm); None for rows without it
    origin_mm: tuple[float, float] | None = None

    def frame(self) -> dict[str, Any]:
        """The rectified frame a reader's outline is drawn in (:func:`frame_record`)."""
        return frame_record(self.origin_mm, self.px_per_mm, self.rectified_path)

    def proposed_mask(self) -> np.ndarray | None:
        """The automated mask (bool, rectified frame), None when the photo has none."""
        if self.mask_path is None:
            return None
        return read_mask(self.mask_path)

    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the rectified frame in px, read from the PNG header."""
        with Image.open(self.rectified_path) as im:
            return int(im.size[0]), int(im.size[1])

    def public(self, settings: ReviewSettings, proposed_status: str | None) -> dict[str, Any]:
        """Blinded JSON view: pseudonyms, area and flags; no real IDs, dates or file paths."""
        out: dict[str, Any] = {
            "key": self.key,
            "subject": self.subject_pseudonym,
            "ulcer": self.ulcer_pseudonym,
            "area_mm2": self.area_mm2,
            "px_per_mm": self.px_per_mm,
            "flags": list(self.flags),
            "has_mask": self.mask_path is not None,
            "manual_scale": False,  # see ManualItem
            # only healed / not healed: the full trend (improving, worsening) could bias
            "proposed_status": None
            if proposed_status is None
            else ("healed" if proposed_status == "healed" else "not healed"),
        }
        if settings.show_visit_label:
            out["visit"] = self.visit
        return out


def inside_out_dir(root: Path, rel: Any) -> Path | None:
    """Resolved ``root / rel`` if it is an existing file inside ``root``, else None."""
    if not rel:
        return None
    path = (root / str(rel)).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        return None
    return path


def row_origin_mm(row: Mapping[str, Any]) -> tuple[float, float] | None:
    """A measurement row's rectified origin on the marker plane (mm), None when not recorded."""
    x, y = row.get("rectified_origin_x_mm"), row.get("rectified_origin_y_mm")
    if x in (None, "") or y in (None, ""):
        return None
    return float(x), float(y)


def frame_record(origin_mm: tuple[float, float] | None, px_per_mm: float, rectified: Path) -> dict[str, Any]:
    """A rectified frame as a correction records it (origin mm, px per mm, size px of the
    rectified PNG, from its header): a corrected mask means nothing in another frame. JSON
    round-trips it exactly, so frames compare with ``==``."""
    with Image.open(rectified) as im:
        size = [int(im.size[0]), int(im.size[1])]
    origin = None if origin_mm is None else [float(origin_mm[0]), float(origin_mm[1])]
    return {"origin_mm": origin, "px_per_mm": float(px_per_mm), "size_px": size}


def build_items(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    salt: str,
    settings: ReviewSettings,
    include: frozenset[str] | set[str] = frozenset(),
) -> list[ReviewItem]:
    """Review items in a randomised order reproducible from ``settings.seed``.

    Photos need a rectified image and a calibration and must still be at their path; only
    ``needs_review`` ones and those whose SHA-256 is in ``include`` (e.g. photos of a visit
    whose photos disagree on healed), unless ``settings.review_all``. Paths come from the
    study database only, checked to lie in OUT.
    """
    root = Path(out_dir)
    items: list[ReviewItem] = []
    seen: set[str] = set()
    for row in rows:
        sha = str(row.get("photo_sha256") or "")
        needs = bool(int(row.get("needs_review") or 0))
        if row.get("status") == "missing":
            continue  # no longer in the study: no decision on it would count (rules.MISSING_PHOTO)
        if not (needs or settings.review_all or sha in include) or len(sha) < 16 or sha in seen:
            continue  # decisions are per bytes: copies at several paths (duplicate_photo) are one item
        seen.add(sha)
        rect = inside_out_dir(root, row.get("rectified_file"))
        ppm = row.get("rectified_px_per_mm")
        if rect is None or not ppm:
            log.info("photo %s has no rectified image: not reviewable in the browser", sha[:16])
            continue
        flags = tuple(f for f in str(row.get("flags") or "").split(";") if f)
        area = row.get("area_mm2")
        items.append(
            ReviewItem(
                key=sha[:16].lower(),
                photo_sha256=sha,
                subject_id=str(row.get("subject_id")),
                ulcer_id=str(row.get("ulcer_id")),
                visit=str(row.get("visit") or ""),
                subject_pseudonym=subject_pseudonym(salt, str(row.get("subject_id"))),
                ulcer_pseudonym=ulcer_pseudonym(salt, str(row.get("subject_id")), str(row.get("ulcer_id"))),
                area_mm2=None if area in (None, "") else float(area),
                px_per_mm=float(ppm),
                rectified_path=rect,
                mask_path=inside_out_dir(root, row.get("mask_file")),
                flags=flags,
                needs_review=needs,
                origin_mm=row_origin_mm(row),
            )
        )
    items.sort(key=lambda it: it.photo_sha256)
    random.Random(settings.seed).shuffle(items)
    return items


@dataclass(frozen=True)
class ManualItem(ItemIdentity):
    """A flagged photo with no usable marker: measured by hand (two points of a known length
    set the scale, then a traced outline), all in photo px (pixel centres at integers)."""

    photo_path: Path  # the source photo (EXIF-oriented when decoded); never sent as is
    width_px: int
    height_px: int
    flags: tuple[str, ...]
    area_mm2: float | None = None  # no automated value
    needs_review: bool = True

    def public(self, settings: ReviewSettings, proposed_status: str | None = None) -> dict[str, Any]:
        """Blinded JSON view (no IDs, dates or paths)."""
        out: dict[str, Any] = {
            "key": self.key,
            "subject": self.subject_pseudonym,
            "ulcer": self.ulcer_pseudonym,
            "area_mm2": None,
            "flags": list(self.flags),
            "manual_scale": True,
            "photo_width_px": self.width_px,
            "photo_height_px": self.height_px,
            "proposed_status": None,
        }
        if settings.show_visit_label:
            out["visit"] = self.visit
        return out


def build_manual_items(
    rows: Sequence[Mapping[str, Any]], input_roots: Mapping[str, str], salt: str
) -> list[ManualItem]:
    """Manual-scale items: flagged photos without a rectified image (no usable marker) whose
    source photo is still at ``<run input_root>/<file>`` and whose size is known; not the
    photos whose outputs could not be written (``write_error``: the next run measures them).

    As in :func:`build_items`: one item per photo bytes (copies at several paths share one key
    and its decisions), and none for a photo no longer at its path (no decision on it counts).
    """
    out = []
    seen: set[str] = set()
    for row in rows:
        sha = str(row.get("photo_sha256") or "")
        if len(sha) < 16 or not int(row.get("needs_review") or 0) or row.get("rectified_file"):
            continue
        if row.get("status") == "missing" or sha in seen:
            continue
        if Flag.WRITE_ERROR in str(row.get("flags") or "").split(";"):
            # its marker may be fine: only its output files failed, and the next `measure`
            # retries it; a hand-set scale would replace a measurement the pipeline can make
            log.info("photo %s: outputs not written (write_error): measure again, no manual scale", sha[:16])
            continue
        root = input_roots.get(str(row.get("run_id")))
        w, h = row.get("image_width_px"), row.get("image_height_px")
        if not root or not w or not h:
            continue
        path = inside_out_dir(Path(root), row.get("file"))
        if path is None:
            log.info("photo %s: source file not found, no manual-scale review", sha[:16])
            continue
        seen.add(sha)
        subject, ulcer = str(row.get("subject_id")), str(row.get("ulcer_id"))
        out.append(
            ManualItem(
                key=sha[:16].lower(),
                photo_sha256=sha,
                subject_id=subject,
                ulcer_id=ulcer,
                visit=str(row.get("visit") or ""),
                subject_pseudonym=subject_pseudonym(salt, subject),
                ulcer_pseudonym=ulcer_pseudonym(salt, subject, ulcer),
                photo_path=path,
                width_px=int(w),
                height_px=int(h),
                flags=tuple(f for f in str(row.get("flags") or "").split(";") if f),
            )
        )
    return sorted(out, key=lambda it: it.photo_sha256)


def reader_order(items: Sequence[Any], reader: str, salt: str, seed: int) -> list[Any]:
    """``items`` in the reader's own random order: independent between readers (seeded by the
    configured seed, the study's secret salt and the reader's name), reproducible per reader."""
    out = sorted(items, key=lambda it: it.photo_sha256)
    random.Random(f"{seed}\x1f{salt}\x1f{reader}").shuffle(out)
    return out
