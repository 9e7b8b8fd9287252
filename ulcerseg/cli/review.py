"""``ulcerseg review``: blinded assessor review (serve, disagreements, decisions, exports)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ulcerseg.cli.options import healing_config_option, study_dir_argument

if TYPE_CHECKING:
    from ulcerseg.healing import HealingConfig

__all__ = ["review"]

_out_arg = study_dir_argument()
_config_opt = healing_config_option()


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
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
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
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def export_final_cmd(out_dir: Path, config_path: Path | None, output: Path | None) -> None:
    """Final per-visit CSV (automated, reviewed, final value, status, flags, reviewer)."""
    from ulcerseg.review.final import export_final

    click.echo(str(export_final(out_dir, _config(config_path), output)))


@review.command("report")
@_out_arg
@_config_opt
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def report_cmd(out_dir: Path, config_path: Path | None, output: Path | None) -> None:
    """HTML report per subject/ulcer with photo series, contours and area plot (not blinded)."""
    from ulcerseg.review.report import write_report

    click.echo(str(write_report(out_dir, _config(config_path), output)))


@review.command("export-blinded")
@_out_arg
@_config_opt
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("--key-file", type=click.Path(dir_okay=False, path_type=Path), default=None)
def export_blinded_cmd(out_dir: Path, config_path: Path | None, output: Path, key_file: Path | None) -> None:
    """Blinded package (pseudonyms, no metadata) plus a separate key file."""
    from ulcerseg.review.blinded import export_blinded

    pkg, key = export_blinded(out_dir, output, _config(config_path), key_file)
    click.echo(f"package {pkg}\nkey file {key} (keep it away from assessors)")


@review.command("export-training")
@_out_arg
@_config_opt
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("--corrected-only", is_flag=True, help="Leave out accepted automated masks.")
def export_training_cmd(out_dir: Path, config_path: Path | None, output: Path, corrected_only: bool) -> None:
    """Reviewed photos and final masks as a training dataset (images/, masks/, dataset.yaml)."""
    from ulcerseg.review.training_export import export_training

    cfg = _config(config_path)
    click.echo(str(export_training(out_dir, output, include_accepted=not corrected_only, config=cfg)))


@review.command("decisions")
@_out_arg
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
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
