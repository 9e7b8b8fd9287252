"""``ulcerseg review``: blinded assessor review (serve, disagreements, decisions, exports)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ulcerseg.cli.options import (
    healing_config_option,
    out_dir_option,
    out_file_option,
    progress_option,
    study_dir_argument,
)

if TYPE_CHECKING:
    from ulcerseg.healing import HealingConfig

__all__ = ["review"]

_out_arg = study_dir_argument()
_config_opt = healing_config_option()


def _default_dest(output: Path | None, default: Path) -> Path:
    """The file written when -o/--out is left out (deprecated: give it)."""
    if output is not None:
        return output
    click.echo(f"warning: writing {default} without -o/--out is deprecated; give -o/--out FILE", err=True)
    return default


def _bar(progress: bool, unit: str):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    def bar(items, total):  # type: ignore[no-untyped-def]
        return tqdm(items, total=total, unit=unit, disable=not progress, file=sys.stderr, leave=False)

    return bar


def _config(path: Path | None) -> HealingConfig:
    from ulcerseg.healing import load_healing_config

    return load_healing_config(path)


@click.group("review")
def review() -> None:
    """Blinded assessor review: web app, disagreements and exports."""


@review.command("serve")
@_out_arg
@_config_opt
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port.")
@click.option("--all", "review_all", is_flag=True, help="Review every photo, not only flagged.")
@click.option(
    "--adjudicate",
    is_flag=True,
    help="Adjudication: only photos where readers disagree, with their readings shown; "
    "decisions are recorded as the adjudicator's and override the readers'.",
)
def serve_cmd(out_dir: Path, config_path: Path | None, port: int, review_all: bool, adjudicate: bool) -> None:
    """Serve the review web app on 127.0.0.1 (prints the URL with its access token)."""
    from dataclasses import replace

    from ulcerseg.review.server import serve

    cfg = _config(config_path)
    if review_all:
        cfg = replace(cfg, review=replace(cfg.review, review_all=True))
    serve(out_dir, cfg, port=port, adjudicate=adjudicate)


@review.command("disagreements")
@_out_arg
@_config_opt
@out_file_option("CSV file (default: standard output).", required=False)
def disagreements_cmd(out_dir: Path, config_path: Path | None, output: Path | None) -> None:
    """List photos where two readers' latest decisions differ (CSV to stdout or -o).

    The ``adjudicated`` column says whether an adjudicator has settled it (`review serve
    --adjudicate`); until then the photo has no final value in `review export-final`.
    """
    from ulcerseg.review.decisions import disagreements, open_study
    from ulcerseg.rounding import round_rows

    cfg = _config(config_path)
    with open_study(out_dir) as (conn, _rows):
        rows = disagreements(conn, cfg.review)
    cols = [
        "photo_sha256",
        "assessor_a",
        "action_a",
        "area_a_mm2",
        "assessor_b",
        "action_b",
        "area_b_mm2",
        "reason",
        "adjudicated",
    ]
    fh = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
    try:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(round_rows(rows))
    finally:
        if output:
            fh.close()
    click.echo(f"{len(rows)} disagreements", err=True)


@review.command("export-final")
@_out_arg
@_config_opt
@out_file_option("CSV file to write (without it: OUT_DIR/final_visits.csv, deprecated).", required=False)
def export_final_cmd(out_dir: Path, config_path: Path | None, output: Path | None) -> None:
    """Final per-visit CSV (automated, reviewed, final value, status, flags, reviewer)."""
    from ulcerseg.review.final import export_final

    dest = _default_dest(output, out_dir / "final_visits.csv")
    click.echo(str(export_final(out_dir, _config(config_path), dest)))


@review.command("report")
@_out_arg
@_config_opt
@out_file_option("HTML file to write (without it: OUT_DIR/report/report.html, deprecated).", required=False)
@progress_option()
def report_cmd(out_dir: Path, config_path: Path | None, output: Path | None, progress: bool) -> None:
    """HTML report per subject/ulcer with photo series, contours and area plot (not blinded)."""
    from ulcerseg.review.report import write_report

    dest = _default_dest(output, out_dir / "report" / "report.html")
    click.echo(str(write_report(out_dir, _config(config_path), dest, progress=_bar(progress, "ulcer"))))


@review.command("export-blinded")
@_out_arg
@_config_opt
@out_dir_option("Blinded package folder (new or empty).", dest="output", legacy_output=True)
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None)
@progress_option()
def export_blinded_cmd(
    out_dir: Path, config_path: Path | None, output: Path, key_file: Path | None, progress: bool
) -> None:
    """Blinded package (pseudonyms, no metadata) plus a separate key file."""
    from ulcerseg.review.blinded import export_blinded

    bar = _bar(progress, "photo")
    pkg, key = export_blinded(out_dir, output, _config(config_path), key_file, progress=bar)
    click.echo(f"package {pkg}\nkey file {key} (keep it away from assessors)")


@review.command("export-training")
@_out_arg
@_config_opt
@out_dir_option("Dataset folder to create (new or empty).", dest="output", legacy_output=True)
@click.option("--corrected-only", is_flag=True, help="Leave out accepted automated masks.")
@progress_option()
def export_training_cmd(
    out_dir: Path, config_path: Path | None, output: Path, corrected_only: bool, progress: bool
) -> None:
    """Reviewed photos and final masks as a training dataset (images/, masks/, dataset.yaml)."""
    from ulcerseg.review.training_export import export_training

    cfg = _config(config_path)
    dest = export_training(
        out_dir, output, include_accepted=not corrected_only, config=cfg, progress=_bar(progress, "photo")
    )
    click.echo(str(dest))


@review.command("decisions")
@_out_arg
@out_file_option("CSV file (default: standard output).", required=False)
def decisions_cmd(out_dir: Path, output: Path | None) -> None:
    """The audit trail: every decision in order (CSV to stdout or -o)."""
    from ulcerseg.review.decisions import list_decisions, open_study
    from ulcerseg.rounding import round_rows

    with open_study(out_dir) as (conn, _rows):
        rows = list_decisions(conn)
    cols = [
        "seq",
        "decision_id",
        "photo_sha256",
        "assessor",
        "decided_at",
        "action",
        "reason",
        "area_before_mm2",
        "area_after_mm2",
        "corrected_mask_file",
        "session_id",
    ]
    fh = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
    try:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(round_rows(rows))
    finally:
        if output:
            fh.close()
