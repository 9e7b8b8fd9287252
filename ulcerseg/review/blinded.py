"""Blinded review package: images and masks named by pseudonym, no metadata, key file apart."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ulcerseg import tables
from ulcerseg.errors import InputError
from ulcerseg.healing.config import HealingConfig
from ulcerseg.imageio import read_rgb
from ulcerseg.review.blinding import (
    encode_png_clean,
    item_pseudonym,
    subject_pseudonym,
    ulcer_pseudonym,
)
from ulcerseg.review.decisions import open_study, salt_for
from ulcerseg.review.items import inside_out_dir
from ulcerseg.review.outputs import check_dest, healing_config, load_mask, write_csv
from ulcerseg.rounding import round_rows

__all__ = ["export_blinded"]

log = logging.getLogger(__name__)


def export_blinded(
    out_dir: str | Path,
    dest: str | Path,
    config: HealingConfig | str | Path | None = None,
    key_file: str | Path | None = None,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
) -> tuple[Path, Path]:
    """Blinded review package: images/masks named by item pseudonym, items.csv, no metadata.

    The key file mapping pseudonyms back to photo/subject/ulcer/visit/date is written OUTSIDE
    the package (default ``<dest>_key.csv`` next to it). Returns (package dir, key file).
    """
    cfg = healing_config(config)
    out_dir, dest = Path(out_dir), Path(dest)
    key_path = Path(key_file) if key_file else dest.parent / f"{dest.name}_key.csv"
    if key_path.resolve().is_relative_to(dest.resolve()):
        raise InputError(f"{key_path}: the key file must not be inside the blinded package")
    tables.refuse_database(key_path)  # before the package is written (it was refused after it)
    check_dest(dest, out_dir)
    with open_study(out_dir, for_reading=True) as (conn, rows):
        salt = salt_for(conn)
    items, keys = [], []
    # one item per photo bytes: a photo no longer at its path is not in the study any more, and
    # bytes at several paths (duplicate_photo) give no final value whatever is read on them
    # (their item would also map back to several visits)
    present = [r for r in rows if r.get("status") != "missing"]
    copies = Counter(str(r["photo_sha256"]) for r in present)
    ordered = sorted((r for r in present if copies[str(r["photo_sha256"])] == 1),
                     key=lambda r: str(r["photo_sha256"]))  # fmt: skip
    left_out = len(rows) - len(ordered)
    if left_out:
        log.warning(
            "blinded package: %d photo row(s) left out (%d no longer at their path, %d sharing "
            "their bytes with another path)",
            left_out, len(rows) - len(present), len(present) - len(ordered),
        )  # fmt: skip
    for row in progress(ordered, len(ordered)) if progress else ordered:
        rect = inside_out_dir(out_dir, row.get("rectified_file"))
        if rect is None:
            continue
        sha = str(row["photo_sha256"])
        pid = item_pseudonym(salt, sha)
        subject, ulcer = str(row["subject_id"]), str(row["ulcer_id"])
        (dest / "images").mkdir(parents=True, exist_ok=True)
        (dest / "images" / f"{pid}.png").write_bytes(encode_png_clean(read_rgb(rect)))
        mask = load_mask(inside_out_dir(out_dir, row.get("mask_file")))
        if mask is not None:
            (dest / "masks").mkdir(parents=True, exist_ok=True)
            (dest / "masks" / f"{pid}.png").write_bytes(encode_png_clean(mask))
        item = {
            "item": pid,
            "subject": subject_pseudonym(salt, subject),
            "ulcer": ulcer_pseudonym(salt, subject, ulcer),
            "area_mm2": row.get("area_mm2"),
            "px_per_mm": row.get("rectified_px_per_mm"),
            "image": f"images/{pid}.png",
            "mask": f"masks/{pid}.png" if mask is not None else "",
        }
        if cfg.review.show_visit_label:
            item["visit"] = row.get("visit")
        items.append(item)
        keys.append(
            {
                "item": pid,
                "subject": item["subject"],
                "ulcer": item["ulcer"],
                "photo_sha256": sha,
                "subject_id": subject,
                "ulcer_id": ulcer,
                "visit": row.get("visit"),
                "study_day": row.get("study_day"),
                "photo_date": row.get("photo_date"),
            }
        )
    random.Random(cfg.review.seed).shuffle(items)
    dest.mkdir(parents=True, exist_ok=True)
    cols = ["item", "subject", "ulcer", *(["visit"] if cfg.review.show_visit_label else [])]
    cols += ["area_mm2", "px_per_mm", "image", "mask"]
    write_csv(round_rows(items), cols, dest / "items.csv")
    write_csv(keys, list(keys[0]) if keys else ["item"], key_path)
    log.info("blinded package: %d items -> %s (key %s)", len(items), dest, key_path)
    return dest, key_path
