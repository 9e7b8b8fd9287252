"""``ulcerseg qa``: agreement of automated and manual measurements."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from ulcerseg.cli.options import finite, out_dir_option, progress_option

__all__ = ["qa_command"]


def _split_manual(value: str) -> tuple[str | None, str]:
    """``NAME=PATH`` gives a reader name; a plain path is named after the file/folder."""
    if "=" in value and not Path(value).exists():
        name, path = value.split("=", 1)
        return name.strip() or None, path
    return None, value


def _status_order(value: str) -> list[str]:
    """The categories of ``--status-order``, each once and none empty (a repeat would count
    its photos twice in the weighted kappa)."""
    order = [s.strip() for s in value.split(",")]
    if "" in order:
        raise click.BadParameter(f"{value!r} has an empty status", param_hint="--status-order")
    repeated = sorted({s for s in order if order.count(s) > 1})
    if repeated:
        raise click.BadParameter(f"{value!r} repeats {', '.join(repeated)}", param_hint="--status-order")
    return order


def _num(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "n/a"


@click.command("qa")
@click.option(
    "--auto",
    "auto",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="measure output folder (with measurements.csv) or a measurements CSV.",
)
@click.option(
    "--manual",
    "manuals",
    required=True,
    multiple=True,
    help="Manual reference: CSV of areas (photo_sha256 or file, area_mm2[, reader, status]) or "
    "folder of PNG masks / ImageJ ROI / RoiSet zip / LabelMe JSON named after the photo stem. "
    "Repeat for more readers; NAME=PATH names the reader.",
)
@click.option(
    "--by",
    "by",
    multiple=True,
    help="Sub-group tables by this column (e.g. subject_id, site, needs_review) or area_range.",
)
@click.option(
    "--status-order",
    default=None,
    help="Comma-separated ordered healing statuses for weighted kappa (e.g. healed,open).",
)
@click.option(
    "--px-per-mm",
    default=20.0,
    show_default=True,
    # finite and bounded: NaN passes a FloatRange, and inf (or 1e9) reached OpenCV's warp
    type=click.FloatRange(min=1.0, max=1000.0),
    callback=finite,
    help="Marker-plane resolution used to measure mask annotations (px per mm, 1-1000).",
)
@out_dir_option("QA folder.", dest="out")
@progress_option()
def qa_command(
    auto: Path,
    manuals: tuple[str, ...],
    by: tuple[str, ...],
    status_order: str | None,
    px_per_mm: float,
    out: Path,
    progress: bool,
) -> None:
    """Compare automated ulcer areas with manual references (Bland-Altman, ICC, CCC, Dice)."""
    from ulcerseg.qa.compare import run_qa

    parsed = [_split_manual(m) for m in manuals]
    for _, path in parsed:
        if not Path(path).exists():
            raise click.BadParameter(f"{path}: no such file or folder", param_hint="--manual")
    order = _status_order(status_order) if status_order else None

    def bar(items, total):  # type: ignore[no-untyped-def]
        from tqdm import tqdm

        return tqdm(items, total=total, unit="annotation", file=sys.stderr, leave=False, disable=not progress)

    report = run_qa(
        auto,
        [p for _, p in parsed],
        out,
        by=list(by),
        names=[n for n, _ in parsed],
        status_order=order,
        px_per_mm=px_per_mm,
        progress=bar,
    )
    for _, r in report.agreement.iterrows():
        click.echo(
            f"{r['comparison']}: n={int(r['n'])} bias {_num(r['bias_mm2'], '.2f')} mm² "
            f"(LoA {_num(r['loa_low_mm2'], '.2f')} to {_num(r['loa_high_mm2'], '.2f')}; "
            f"{_num(r['bias_pct'], '+.1f')}%, {_num(r['loa_low_pct'], '+.1f')}% to "
            f"{_num(r['loa_high_pct'], '+.1f')}%) ICC(2,1) {_num(r['icc2'], '.3f')} "
            f"Dice {_num(r['dice_mean'], '.3f')}"
        )
    if report.issues:
        click.echo(f"{len(report.issues)} input problem(s), see {out / 'issues.csv'}", err=True)
    n_unmatched = len(report.unmatched)
    if n_unmatched:
        click.echo(f"{n_unmatched} unmatched item(s), see {out / 'unmatched.csv'}", err=True)
    click.echo(f"wrote {out / 'summary.md'}")
