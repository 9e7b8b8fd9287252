"""Exports after review: final per-visit table, HTML report, blinded package, training data.

Final values: the counting assessor decision per photo wins over the automated value (accept
keeps it, correct replaces it, not assessable removes it, confirm/reject healed overrides the
status); healing status and flags are then recomputed on the final values. With double reading
the counting decision is the latest reading when the readers agree, the latest adjudication when
they disagreed, and none (no value, ``final_source = unresolved_disagreement``) while a
disagreement waits for adjudication (:func:`ulcerseg.review.decisions.final_decisions`).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from ulcerseg.errors import InputError
from ulcerseg.healing import (
    PROVENANCE_COLUMNS,
    HealingConfig,
    UlcerHealing,
    compute_healing,
    load_healing_config,
)
from ulcerseg.review.blinding import (
    encode_png_clean,
    item_pseudonym,
    load_rgb,
    subject_pseudonym,
    ulcer_pseudonym,
)
from ulcerseg.review.decisions import (
    Action,
    final_decisions,
    inside_out_dir,
    list_decisions,
    open_study,
    salt_for,
)

__all__ = [
    "FINAL_COLUMNS",
    "export_blinded",
    "export_final",
    "export_training",
    "final_visit_rows",
    "write_report",
]

log = logging.getLogger(__name__)

FINAL_COLUMNS: tuple[str, ...] = (
    "subject_id",
    "ulcer_id",
    "is_cardinal",
    "cardinal_source",
    "visit",
    "study_day",
    "photo_date",
    "photo_sha256",
    "n_photos",
    "automated_area_mm2",
    "reviewed_area_mm2",
    "final_area_mm2",
    "final_source",
    "review_action",
    "review_reason",
    "reviewer",
    "reviewed_at",
    "n_assessors",
    "status",
    "change_from_baseline_mm2",
    "change_from_baseline_pct",
    "change_from_previous_mm2",
    "change_from_previous_pct",
    "photo_flags",
    "healing_flags",
    "time_to_healing_days",
    "time_to_confirmed_healing_days",
    "healing_rate_mm2_per_week",
    "package_version",
    "model_sha256",
    "config_sha256",
)


def apply_decisions(
    rows: Sequence[Mapping[str, Any]],
    latest: Mapping[str, Mapping[str, Any]],
    unresolved: frozenset[str] | set[str] = frozenset(),
) -> list[dict[str, Any]]:
    """Per-photo rows with the counting decision applied (pure; see module docstring).

    Photos in ``unresolved`` (readers disagree, not adjudicated) have no area: a disputed value
    must not enter the analysis silently.
    """
    out = []
    for row in rows:
        r = dict(row)
        sha = str(row.get("photo_sha256"))
        d = latest.get(sha)
        if sha in unresolved:
            r["area_mm2"] = None
            r["area_low_mm2"] = r["area_high_mm2"] = None
        elif d is not None:
            action = d["action"]
            if action == Action.NOT_ASSESSABLE:
                r["area_mm2"] = None
            elif action in (Action.ACCEPT, Action.CORRECT):
                r["area_mm2"] = d["area_after_mm2"]
                r["reviewed"] = True
                r["area_low_mm2"] = r["area_high_mm2"] = None  # the band was for the model
            elif action == Action.CONFIRM_HEALED:
                r["healed_override"] = True
                r["reviewed"] = True
            elif action == Action.REJECT_HEALED:
                r["healed_override"] = False
        out.append(r)
    return out


def final_visit_rows(
    rows: Sequence[Mapping[str, Any]],
    decisions: Sequence[Mapping[str, Any]],
    config: HealingConfig,
) -> tuple[list[dict[str, Any]], list[UlcerHealing]]:
    """Final per-visit rows (columns :data:`FINAL_COLUMNS`) and the recomputed healing."""
    final = final_decisions(decisions, config.review)
    latest = {sha: f.decision for sha, f in final.items() if f.decision is not None}
    unresolved = {sha for sha, f in final.items() if f.decision is None}
    by_sha = {str(r.get("photo_sha256")): r for r in rows}
    results = compute_healing(apply_decisions(rows, latest, unresolved), config)
    out: list[dict[str, Any]] = []
    for ulcer in results:
        for v in ulcer.visits:
            auto = by_sha.get(v.photo_sha256 or "")
            f = final.get(v.photo_sha256 or "")
            d = f.decision if f is not None else None
            flat = asdict(v)
            reviewed_area = None
            if d is not None and d["action"] in (Action.ACCEPT, Action.CORRECT):
                reviewed_area = d["area_after_mm2"]
            if f is not None:
                source = f.source  # review | adjudication | unresolved_disagreement
            elif v.area_mm2 is not None:
                source = "automated"
            else:
                source = "none"
            out.append(
                {
                    **{k: flat[k] for k in FINAL_COLUMNS if k in flat},
                    "is_cardinal": int(v.is_cardinal),
                    "automated_area_mm2": auto.get("area_mm2") if auto else None,
                    **{k: auto.get(k) if auto else None for k in PROVENANCE_COLUMNS},
                    "reviewed_area_mm2": reviewed_area,
                    "final_area_mm2": v.area_mm2,
                    "final_source": source,
                    "review_action": d["action"] if d else None,
                    "review_reason": d["reason"] if d else None,
                    "reviewer": d["assessor"] if d else None,
                    "reviewed_at": d["decided_at"] if d else None,
                    "n_assessors": f.n_readers if f is not None else 0,
                    "photo_flags": ";".join(v.photo_flags),
                    "healing_flags": ";".join(v.healing_flags),
                }
            )
    return out, results


def _write_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r.get(k) for k in columns})
    tmp.replace(path)
    return path


def _cfg(config: HealingConfig | str | Path | None) -> HealingConfig:
    return config if isinstance(config, HealingConfig) else load_healing_config(config)


def export_final(
    out_dir: str | Path,
    config: HealingConfig | str | Path | None = None,
    path: str | Path | None = None,
) -> Path:
    """Write the final per-visit CSV for statisticians (default OUT/final_visits.csv)."""
    cfg = _cfg(config)
    with open_study(out_dir) as (conn, rows):
        decisions = list_decisions(conn)
    final, _ = final_visit_rows(rows, decisions, cfg)
    dest = Path(path) if path else Path(out_dir) / "final_visits.csv"
    log.info("final table: %d visit rows -> %s", len(final), dest)
    return _write_csv(final, FINAL_COLUMNS, dest)


# --------------------------------------------------------------------------------------------
# HTML report (not blinded: real IDs and dates, for the study team)
# --------------------------------------------------------------------------------------------


def _contour_png(rect: np.ndarray, mask: np.ndarray | None, max_side: int = 240) -> bytes:
    import cv2

    img = rect.copy()
    if mask is not None and mask.shape[:2] == img.shape[:2]:
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(img, contours, -1, (255, 212, 0), max(1, img.shape[1] // 200))
    scale = min(1.0, max_side / max(img.shape[:2]))
    if scale < 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return encode_png_clean(img)


def _plot_png(visits: Sequence[Mapping[str, Any]], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    for key, label, style in (
        ("automated_area_mm2", "automated", "o--"),
        ("final_area_mm2", "final", "s-"),
    ):
        pts = [(v["study_day"], v[key]) for v in visits if v.get(key) is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
    ax.set_xlabel("study day")
    ax.set_ylabel("area (mm²)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _load_mask(path: Path | None) -> np.ndarray | None:
    if path is None:
        return None
    return load_rgb(path).max(axis=2) >= 128


def write_report(
    out_dir: str | Path,
    config: HealingConfig | str | Path | None = None,
    path: str | Path | None = None,
) -> Path:
    """HTML report per subject/ulcer: visit table, photo series with contours, area plot.

    The report is self-contained (images embedded) and NOT blinded (real IDs and dates).
    """
    cfg = _cfg(config)
    out_dir = Path(out_dir)
    with open_study(out_dir) as (conn, rows):
        decisions = list_decisions(conn)
    final, _ = final_visit_rows(rows, decisions, cfg)
    by_sha = {str(r["photo_sha256"]): r for r in rows}
    latest = {d["photo_sha256"]: d for d in decisions}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in final:
        groups.setdefault((r["subject_id"], r["ulcer_id"]), []).append(r)
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>ulcerseg report</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}"
        ".series{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}</style></head><body>",
        "<h1>Ulcer healing report</h1>",
    ]
    cols = (
        "visit",
        "study_day",
        "photo_date",
        "automated_area_mm2",
        "reviewed_area_mm2",
        "final_area_mm2",
        "final_source",
        "status",
        "change_from_baseline_pct",
        "reviewer",
        "photo_flags",
        "healing_flags",
    )
    for (subject, ulcer), visits in sorted(groups.items()):
        card = " (cardinal)" if visits[0]["is_cardinal"] else ""
        parts.append(f"<h2>{esc(subject)} / {esc(ulcer)}{card}</h2>")
        parts.append(f"<img alt='area over time' src='{_data_uri(_plot_png(visits, subject))}'>")
        parts.append("<table><tr>" + "".join(f"<th>{esc(c)}</th>" for c in cols) + "</tr>")
        for v in visits:
            cells = []
            for c in cols:
                val = v.get(c)
                if isinstance(val, float):
                    val = f"{val:.2f}"
                cells.append(f"<td>{esc('' if val is None else str(val))}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table><div class='series'>")
        for v in visits:
            src = by_sha.get(v["photo_sha256"] or "")
            rect = inside_out_dir(out_dir, src.get("rectified_file")) if src else None
            if rect is None:
                continue
            d = latest.get(v["photo_sha256"])
            mask_path = inside_out_dir(out_dir, d["corrected_mask_file"]) if d else None
            mask_path = mask_path or inside_out_dir(out_dir, src.get("mask_file"))
            png = _contour_png(load_rgb(rect), _load_mask(mask_path))
            parts.append(
                f"<figure><img src='{_data_uri(png)}'><figcaption>{esc(v['visit'])}: "
                f"{esc(str(v['status']))}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("</body></html>")
    dest = Path(path) if path else out_dir / "report" / "report.html"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(parts), encoding="utf-8")
    return dest


# --------------------------------------------------------------------------------------------
# blinded package and training data
# --------------------------------------------------------------------------------------------


def _check_dest(dest: Path, out_dir: Path) -> None:
    if dest.exists() and any(dest.iterdir()):
        raise InputError(f"{dest}: output folder exists and is not empty")
    if dest.resolve().is_relative_to(out_dir.resolve()) and dest.resolve() == out_dir.resolve():
        raise InputError(f"{dest}: must not be the study folder itself")


def export_blinded(
    out_dir: str | Path,
    dest: str | Path,
    config: HealingConfig | str | Path | None = None,
    key_file: str | Path | None = None,
) -> tuple[Path, Path]:
    """Blinded review package: images/masks named by item pseudonym, items.csv, no metadata.

    The key file mapping pseudonyms back to photo/subject/ulcer/visit/date is written OUTSIDE
    the package (default ``<dest>_key.csv`` next to it). Returns (package dir, key file).
    """
    cfg = _cfg(config)
    out_dir, dest = Path(out_dir), Path(dest)
    key_path = Path(key_file) if key_file else dest.parent / f"{dest.name}_key.csv"
    if key_path.resolve().is_relative_to(dest.resolve()):
        raise InputError(f"{key_path}: the key file must not be inside the blinded package")
    _check_dest(dest, out_dir)
    with open_study(out_dir) as (conn, rows):
        salt = salt_for(conn)
    items, keys = [], []
    for row in sorted(rows, key=lambda r: str(r["photo_sha256"])):
        rect = inside_out_dir(out_dir, row.get("rectified_file"))
        if rect is None:
            continue
        sha = str(row["photo_sha256"])
        pid = item_pseudonym(salt, sha)
        subject, ulcer = str(row["subject_id"]), str(row["ulcer_id"])
        (dest / "images").mkdir(parents=True, exist_ok=True)
        (dest / "images" / f"{pid}.png").write_bytes(encode_png_clean(load_rgb(rect)))
        mask = _load_mask(inside_out_dir(out_dir, row.get("mask_file")))
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
    _write_csv(items, cols, dest / "items.csv")
    _write_csv(keys, list(keys[0]) if keys else ["item"], key_path)
    log.info("blinded package: %d items -> %s (key %s)", len(items), dest, key_path)
    return dest, key_path


def export_training(
    out_dir: str | Path,
    dest: str | Path,
    include_accepted: bool = True,
    config: HealingConfig | str | Path | None = None,
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
    _check_dest(dest, out_dir)
    cfg = _cfg(config)
    with open_study(out_dir) as (conn, rows):
        final = final_decisions(list_decisions(conn), cfg.review)
        salt = salt_for(conn)
    by_sha = {str(r["photo_sha256"]): r for r in rows}
    entries = []
    for sha, f in sorted(final.items()):
        row = by_sha.get(sha)
        d = f.decision
        if row is None or d is None:
            continue
        if d["action"] == Action.CORRECT:
            mask_path = inside_out_dir(out_dir, d["corrected_mask_file"])
        elif d["action"] == Action.ACCEPT and include_accepted:
            mask_path = inside_out_dir(out_dir, row.get("mask_file"))
        else:
            continue
        rect = inside_out_dir(out_dir, row.get("rectified_file"))
        mask = _load_mask(mask_path)
        if rect is None or mask is None:
            log.warning("photo %s: rectified image or mask missing, skipped", sha[:16])
            continue
        key = sha[:16]
        (dest / "images").mkdir(parents=True, exist_ok=True)
        (dest / "masks").mkdir(parents=True, exist_ok=True)
        (dest / "images" / f"{key}.png").write_bytes(encode_png_clean(load_rgb(rect)))
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
            }
        )
    ppms = {e["px_per_mm"] for e in entries}
    meta = {
        "name": f"review-{out_dir.name}",
        "description": "assessor-reviewed ulcer masks in the rectified marker-plane frame",
        "frame": "rectified",
        "px_per_mm": ppms.pop() if len(ppms) == 1 else None,
        "n_images": len(entries),
        "groups": {"csv": "groups.csv", "stem_column": "stem", "group_column": "group"},
        "images": entries,
    }
    dest.mkdir(parents=True, exist_ok=True)
    groups = [{"stem": Path(e["image"]).stem, "group": e["group"]} for e in entries]
    _write_csv(groups, ["stem", "group"], dest / "groups.csv")
    (dest / "dataset.yaml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    return dest
