"""``ulcerseg measure``: measure a photo folder, then compute healing (unless ``--no-heal``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ulcerseg.cli.options import (
    backend_option,
    model_dir_option,
    out_dir_option,
    progress_option,
    threads_option,
)

__all__ = ["measure"]


@click.command("measure")
@click.argument("source", type=click.Path(path_type=Path))
@out_dir_option("Output folder (study.sqlite, measurements.csv, overlays/, masks/, rectified/).")
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Pipeline config YAML (default: built-in defaults, see configs/default.yaml).",
)
@model_dir_option("Model folder with model.json + model.pt (default: models/default).")
@backend_option(None, "Inference backend (default from config: auto = ONNX Runtime when exported).")
@threads_option()
@click.option("--no-overlays", is_flag=True, help="Do not write overlay PNGs.")
@click.option("--no-heal", is_flag=True, help="Do not compute healing status after measuring.")
@progress_option()
def measure(
    source: Path,
    out_dir: Path,
    config_path: Path | None,
    model: Path | None,
    backend: str | None,
    threads: int | None,
    no_overlays: bool,
    no_heal: bool,
    progress: bool,
) -> int:
    """Measure ulcers in SOURCE: a folder <subject>/<visit>/<photo> or a manifest CSV.

    Exit status: 0 all photos measured, 1 some photos failed (see measurements.csv), 2 usage
    or input error (also: no photos found, with the layout expected).
    """
    from tqdm import tqdm

    from ulcerseg.config import load_config, with_overrides
    from ulcerseg.healing import heal_study
    from ulcerseg.pipeline import measure_study

    cfg = load_config(config_path)
    cfg = with_overrides(
        cfg,
        segmentation={"model": str(model) if model else None, "backend": backend, "threads": threads},
        output={"write_overlays": False if no_overlays else None},
    )

    def bar(items, total):  # type: ignore[no-untyped-def]
        return tqdm(items, total=total, unit="photo", disable=not progress, file=sys.stderr)

    summary = measure_study(source, out_dir, cfg, progress=bar)
    if not no_heal:
        heal_study(out_dir)
    for path, reason in summary.problems:
        click.echo(f"skipped: {path}: {reason}", err=True)
    for file, reason in summary.failures:
        click.echo(f"failed: {file}: {reason}", err=True)
    click.echo(
        f"{summary.n_photos} photos: {summary.n_measured} measured, {summary.n_failed} failed, "
        f"{summary.n_skipped} unchanged (skipped), {summary.n_needs_review} need review -> {out_dir}"
    )
    return 1 if summary.n_failed else 0
