"""HTML report per subject and ulcer (not blinded: real IDs and dates, for the study team).

Rendered from ``templates/report.html.j2`` by Jinja2 with autoescaping, so no subject ID,
reason or file name can inject markup.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ulcerseg import __version__
from ulcerseg.healing import healing_config_sha256
from ulcerseg.healing.config import HealingConfig
from ulcerseg.imageio import read_rgb
from ulcerseg.review.blinding import encode_png_clean
from ulcerseg.review.decisions import frame_problem, list_decisions, open_study, outline_file
from ulcerseg.review.final import final_visit_rows, pending_count
from ulcerseg.review.items import inside_out_dir
from ulcerseg.review.outputs import healing_config, load_mask
from ulcerseg.review.rules import final_decisions
from ulcerseg.rounding import csv_decimals
from ulcerseg.tables import atomic_open

__all__ = ["REPORT_COLUMNS", "area_figure", "render_report", "write_report"]

REPORT_COLUMNS: tuple[str, ...] = (
    "visit",
    "study_day",
    "photo_date",
    "automated_area_mm2",
    "reviewed_area_mm2",
    "final_area_mm2",
    "final_source",
    "scale_source",
    "status",
    "change_from_baseline_pct",
    "reviewer",
    "photo_flags",
    "healing_flags",
)


def figure_mask_path(
    out_dir: Path, decision: Mapping[str, Any] | None, row: Mapping[str, Any], rectified: Path
) -> Path | None:
    """The outline a photo's figure shows: the one its counting ``decision`` stands for (a
    correction, an accept's kept copy) where it lies on the ``rectified`` image, else the
    row's automated mask (None when neither file is there)."""
    outline = outline_file(decision) if decision else None
    if decision and outline and frame_problem(decision, row, rectified) is None:
        kept = inside_out_dir(out_dir, outline)
        if kept is not None:
            return kept
    return inside_out_dir(out_dir, row.get("mask_file"))


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


def area_figure(
    visits: Sequence[Mapping[str, Any]], title: str, healed_limit_mm2: float | None = None
) -> Any:
    """Matplotlib figure of area (mm²) over study day: automated and final values, healed visits.

    The y-axis starts at 0 mm², so a change of 1 mm² on a 18 mm² ulcer looks like one; the
    healed limit is drawn as a dotted line when given.
    """
    from matplotlib.figure import Figure  # not pyplot: a caller's backend stays as it is
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(5, 3), dpi=100)
    ax = fig.subplots()
    top = 0.0
    series: tuple[tuple[str, str, dict[str, Any]], ...] = (
        ("automated_area_mm2", "automated", dict(marker="o", ls="--", color="tab:blue", ms=7, mfc="none")),
        ("final_area_mm2", "final (after review)", dict(marker="s", ls="-", color="tab:orange", ms=4)),
    )
    for key, label, style in series:
        pts = [(v["study_day"], float(v[key])) for v in visits if v.get(key) is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, **style)
            top = max(top, *(p[1] for p in pts))
    healed = [v for v in visits if v.get("status") == "healed"]
    if healed:
        ys = [
            float(v["final_area_mm2"] or 0.0) if v.get("final_area_mm2") is not None else 0.0 for v in healed
        ]
        ax.scatter(
            [v["study_day"] for v in healed],
            ys,
            marker="*",
            s=160,
            color="tab:green",
            zorder=5,
            label="healed",
            clip_on=False,  # a star at 0 mm² shows whole
        )
    if healed_limit_mm2 is not None:
        ax.axhline(healed_limit_mm2, color="tab:green", ls=":", lw=1, label="healed limit")
        top = max(top, healed_limit_mm2)
    ax.set_ylim(0.0, max(1.0, top * 1.1))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("study day")
    ax.set_ylabel("area (mm²)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _plot_png(
    visits: Sequence[Mapping[str, Any]], title: str, healed_limit_mm2: float | None = None
) -> bytes:
    fig = area_figure(visits, title, healed_limit_mm2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _cell(column: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.{csv_decimals(column) or 2}f}"
    return "" if value is None else str(value)


def render_report(ulcers: Sequence[Mapping[str, Any]], pending: int = 0, provenance: str = "") -> str:
    """The report's HTML from per-ulcer context dicts (``subject_id``, ``ulcer_id``,
    ``is_cardinal``, ``plot_uri``, ``rows`` of cell strings, ``figures`` with ``uri``,
    ``visit``, ``status``) and a provenance line (:func:`provenance_line`); every value is
    escaped by the template engine."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ulcerseg.review", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template("report.html.j2").render(
        columns=REPORT_COLUMNS, ulcers=ulcers, pending=pending, provenance=provenance
    )


def provenance_line(rows: Sequence[Mapping[str, Any]], healing_rules: str) -> str:
    """What made the numbers: this package's version, the measurements' package versions,
    model and config SHA-256 (each value with its number of photos when several), the healing
    rules' SHA-256."""

    def distinct(column: str) -> str:
        counts: dict[str, int] = {}
        for r in rows:
            value = str(r.get(column) or "").strip()
            if value:
                counts[value] = counts.get(value, 0) + 1
        if not counts:
            return "not recorded"
        if len(counts) == 1:
            return next(iter(counts))
        return ", ".join(f"{v} ({n} photos)" for v, n in sorted(counts.items()))

    return (
        f"ulcerseg {__version__}. Measurements: ulcerseg {distinct('package_version')}; model SHA-256 "
        f"{distinct('model_sha256')}; config SHA-256 {distinct('config_sha256')}. Healing rules "
        f"SHA-256 {healing_rules}."
    )


def write_report(
    out_dir: str | Path,
    config: HealingConfig | str | Path | None = None,
    path: str | Path | None = None,
    return_pending: bool = False,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
) -> Any:
    """HTML report per subject/ulcer: visit table, photo series with contours, area plot.

    The report is self-contained (images embedded) and NOT blinded (real IDs and dates). It
    shows the final values (:func:`ulcerseg.review.final.final_visit_rows`); visits pending
    review are listed as such. Returns the path, or (path, number of visits pending review)
    with ``return_pending``.
    """
    cfg = healing_config(config)
    out_dir = Path(out_dir)
    with open_study(out_dir, for_reading=True) as (conn, rows):
        decisions = list_decisions(conn)
    final, _ = final_visit_rows(rows, decisions, cfg)
    by_sha = {str(r["photo_sha256"]): r for r in rows}
    counting = final_decisions(decisions, cfg)
    latest = {sha: f.decision for sha, f in counting.items() if f.decision is not None}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in final:
        groups.setdefault((r["subject_id"], r["ulcer_id"]), []).append(r)
    ulcers = []
    ordered = sorted(groups.items())
    for (subject, ulcer), visits in progress(ordered, len(ordered)) if progress else ordered:
        figures = []
        for v in visits:
            src = by_sha.get(v["photo_sha256"] or "")
            if not src:
                continue
            rect = inside_out_dir(out_dir, src.get("rectified_file"))
            if rect is None:
                continue
            mask_path = figure_mask_path(out_dir, latest.get(v["photo_sha256"]), src, rect)
            png = _contour_png(read_rgb(rect), load_mask(mask_path))
            figures.append({"uri": _data_uri(png), "visit": v["visit"], "status": str(v["status"])})
        ulcers.append(
            {
                "subject_id": subject,
                "ulcer_id": ulcer,
                "is_cardinal": bool(visits[0]["is_cardinal"]),
                "plot_uri": _data_uri(_plot_png(visits, f"{subject} / {ulcer}", cfg.healed_max_area_mm2)),
                "rows": [[_cell(c, v.get(c)) for c in REPORT_COLUMNS] for v in visits],
                "figures": figures,
            }
        )
    dest = Path(path) if path else out_dir / "report" / "report.html"
    n_pending = pending_count(final)
    # atomic, and never over a study database (`-o OUT/study.sqlite` overwrote it before)
    with atomic_open(dest) as fh:
        fh.write(render_report(ulcers, n_pending, provenance_line(rows, healing_config_sha256(cfg))))
    return (dest, n_pending) if return_pending else dest
