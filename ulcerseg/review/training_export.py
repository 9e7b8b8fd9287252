"""Reviewed photos and their final masks as a training dataset (``review export-training``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from ulcerseg import __version__
from ulcerseg.errors import InputError
from ulcerseg.healing import healing_config_sha256
from ulcerseg.healing.config import HealingConfig
from ulcerseg.imageio import read_rgb
from ulcerseg.review.blinding import encode_png_clean, subject_pseudonym
from ulcerseg.review.decisions import (
    accepted_outline_changed,
    frame_problem,
    list_decisions,
    open_study,
    outline_file,
    outline_file_problem,
    salt_for,
)
from ulcerseg.review.items import inside_out_dir
from ulcerseg.review.outputs import check_dest, healing_config, load_mask, write_csv
from ulcerseg.review.rules import Action, final_decisions

__all__ = ["export_training"]

log = logging.getLogger(__name__)


def export_training(
    out_dir: str | Path,
    dest: str | Path,
    include_accepted: bool = True,
    config: HealingConfig | str | Path | None = None,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
) -> Path:
    """Reviewed photos and their final masks as a training dataset.

    DIR/images/<key>.png (rectified RGB), DIR/masks/<key>.png (0/255, same size),
    DIR/dataset.yaml (the ``ulcerseg.training.dataset`` convention: name, px_per_mm, groups by
    subject pseudonym in DIR/groups.csv; plus per-image provenance). Corrected photos use the
    counting corrected mask (the adjudicator's when readers disagreed); accepted ones (if
    ``include_accepted``) the automated mask; not assessable, healed-only and unresolved
    (disputed, not adjudicated) photos are left out.
    """
    out_dir, dest = Path(out_dir), Path(dest)
    check_dest(dest, out_dir)
    cfg = healing_config(config)
    with open_study(out_dir, for_reading=True) as (conn, rows):
        final = final_decisions(list_decisions(conn), cfg)
        salt = salt_for(conn)
    by_sha = {str(r["photo_sha256"]): r for r in rows}
    entries = []
    ordered = sorted(final.items())
    for sha, f in progress(ordered, len(ordered)) if progress else ordered:
        row = by_sha.get(sha)
        d = f.decision
        if row is not None and d is None and f.source == "unresolved_disagreement":
            log.warning("photo %s: readers disagree and no adjudicator has decided; skipped", sha[:16])
            continue
        if row is None or d is None:
            continue
        if d["action"] != Action.CORRECT and not (d["action"] == Action.ACCEPT and include_accepted):
            continue
        outline = outline_file(d)  # a correction's mask, an accept's kept copy
        if outline is not None:
            problem = outline_file_problem(out_dir, d)
            if problem is not None:  # never train on an outline nobody decided
                log.warning("photo %s: %s; skipped (see `ulcerseg review verify`)", sha[:16], problem)
                continue
            mask_path = inside_out_dir(out_dir, outline)
        elif accepted_outline_changed(d, row):  # an accept of 0.3.0 or older, measured again since
            log.warning("photo %s: measured again since it was accepted (the accepted outline was not "
                        "kept); skipped", sha[:16])  # fmt: skip
            continue
        else:
            mask_path = inside_out_dir(out_dir, row.get("mask_file"))
        rect = inside_out_dir(out_dir, row.get("rectified_file"))
        mask = load_mask(mask_path)
        if rect is None or mask is None:
            log.warning("photo %s: rectified image or mask missing, skipped", sha[:16])
            continue
        moved = frame_problem(d, row, rect)
        if moved is not None:  # the outline would be paired with pixels it was not drawn on
            log.warning("photo %s: %s; skipped", sha[:16], moved)
            continue
        key = sha[:16]
        (dest / "images").mkdir(parents=True, exist_ok=True)
        (dest / "masks").mkdir(parents=True, exist_ok=True)
        (dest / "images" / f"{key}.png").write_bytes(encode_png_clean(read_rgb(rect)))
        Image.fromarray(mask.astype(np.uint8) * 255).save(dest / "masks" / f"{key}.png")
        entries.append(
            {
                "image": f"images/{key}.png",
                "mask": f"masks/{key}.png",
                "px_per_mm": float(row["rectified_px_per_mm"]),
                "source": d["action"],
                "decision_id": d["decision_id"],
                # grouped splits keep one subject on one side; pseudonym, not the real ID
                "group": subject_pseudonym(salt, str(row["subject_id"])),
                # what drew the automated outline and the rectified frame
                "model_sha256": row.get("model_sha256"),
                "config_sha256": row.get("config_sha256"),
                "measured_by": row.get("package_version"),
            }
        )
    if not entries:  # an empty dataset would only fail later, in training
        what = "corrected" if not include_accepted else "accepted or corrected"
        raise InputError(f"{out_dir}: no {what} photo with its mask to export yet (review photos with "
                         "`ulcerseg review serve` first); nothing written")  # fmt: skip
    ppms = {e["px_per_mm"] for e in entries}
    meta = {
        "name": f"review-{out_dir.name}",
        "description": "assessor-reviewed ulcer masks in the rectified marker-plane frame",
        "frame": "rectified",
        "package_version": __version__,
        "healing_config_sha256": healing_config_sha256(cfg),
        "px_per_mm": ppms.pop() if len(ppms) == 1 else None,
        "n_images": len(entries),
        "groups": {"csv": "groups.csv", "stem_column": "stem", "group_column": "group"},
        "images": entries,
    }
    dest.mkdir(parents=True, exist_ok=True)
    groups = [{"stem": Path(e["image"]).stem, "group": e["group"]} for e in entries]
    write_csv(groups, ["stem", "group"], dest / "groups.csv")
    (dest / "dataset.yaml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    log.info("%s: %d reviewed photo(s) exported", dest, len(entries))
    return dest
