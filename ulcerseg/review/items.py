"""Review items: the photos to review, blinded, in a reproducible random order."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ulcerseg.healing.config import ReviewSettings
from ulcerseg.review.blinding import subject_pseudonym, ulcer_pseudonym

__all__ = ["KEY_RE", "ReviewItem", "build_items", "inside_out_dir"]

log = logging.getLogger(__name__)

KEY_RE = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class ReviewItem:
    """One photo to review. ``key`` is the first 16 hex chars of the photo's sha256.

    ``manual_scale``: the photo has no usable marker (no rectified frame: ``rectified_path`` is
    None, ``px_per_mm`` 0); the assessor sets the scale by hand on the whole photo.
    """

    key: str
    photo_sha256: str
    subject_id: str
    ulcer_id: str
    visit: str
    subject_pseudonym: str
    ulcer_pseudonym: str
    area_mm2: float | None
    px_per_mm: float
    rectified_path: Path | None
    mask_path: Path | None
    flags: tuple[str, ...]
    needs_review: bool
    manual_scale: bool = False

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
            "manual_scale": self.manual_scale,
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


def build_items(
    rows: Sequence[Mapping[str, Any]], out_dir: str | Path, salt: str, settings: ReviewSettings
) -> list[ReviewItem]:
    """Review items in a randomised order reproducible from ``settings.seed``.

    Photos need a rectified image and a calibration, except flagged ``no_marker`` photos, which
    become manual-scale items; only ``needs_review`` ones unless ``settings.review_all``. Paths
    come from the study database only, checked to lie in OUT.
    """
    root = Path(out_dir)
    items: list[ReviewItem] = []
    for row in rows:
        sha = str(row.get("photo_sha256") or "")
        needs = bool(int(row.get("needs_review") or 0))
        if not (needs or settings.review_all) or len(sha) < 16:
            continue
        rect = inside_out_dir(root, row.get("rectified_file"))
        ppm = row.get("rectified_px_per_mm")
        flags = tuple(f for f in str(row.get("flags") or "").split(";") if f)
        manual = rect is None or not ppm
        if manual and not (needs and "no_marker" in flags):
            log.info("photo %s has no rectified image: not reviewable in the browser", sha[:16])
            continue
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
                px_per_mm=0.0 if manual else float(ppm),
                rectified_path=None if manual else rect,
                mask_path=None if manual else inside_out_dir(root, row.get("mask_file")),
                flags=flags,
                needs_review=needs,
                manual_scale=manual,
            )
        )
    items.sort(key=lambda it: it.photo_sha256)
    random.Random(settings.seed).shuffle(items)
    return items
