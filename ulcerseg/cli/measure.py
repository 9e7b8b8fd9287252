"""``ulcerseg measure``: measure a photo folder, then compute healing (unless ``--no-heal``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ulcerseg.cli.options import (
    MAX_THREADS,
    NonEmptyPath,
    backend_option,
    model_dir_option,
    out_dir_option,
    progress_option,
    threads_option,
)

__all__ = ["measure"]


@click.command("measure")
@click.argument("source", type=NonEmptyPath(path_type=Path))
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
@click.option(
    "--parallel-photos",
    type=click.IntRange(1, MAX_THREADS),
    default=None,
    help="Photos measured at the same time (default from config: 2; with --device cuda e.g. 16).",
)
@click.option(
    "--device",
    default=None,
    help="cpu (default) or cuda / cuda:N: the torch backend on a GPU, tiles of the photos in "
    "flight batched together.",
)
@click.option("--no-overlays", is_flag=True, help="Do not write overlay PNGs.")
@click.option("--no-heal", is_flag=True, help="Do not compute healing status after measuring.")
@progress_option()
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Measure again photos that failed because of their bytes (unreadable, no marker); "
    "failures of the environment (write error, permission) are always retried.",
)
@click.option(
    "--allow-outside-root",
    is_flag=True,
    help="Accept manifest paths outside the manifest's folder (refused by default).",
)
def measure(
    source: Path,
    out_dir: Path,
    config_path: Path | None,
    model: Path | None,
    backend: str | None,
    threads: int | None,
    parallel_photos: int | None,
    device: str | None,
    no_overlays: bool,
    no_heal: bool,
    progress: bool,
    retry_failed: bool,
    allow_outside_root: bool,
) -> int:
    """Measure ulcers in SOURCE: a folder <subject>/<visit>/<photo> or a manifest CSV.

    Every file under SOURCE becomes a row of measurements.csv or a listed reason (run.json).
    Exit status: 0 every photo of the study measured; 1 some photo of the study failed or is
    missing, or some file could not be placed (unsupported_format, unexpected_layout,
    unknown_visit, bad_file_name, manifest_row), or healing could not be computed (e.g. no photo
    of the baseline visit);
    2 usage or input error (one line; also: no photos found, with the layout expected).
    """
    from tqdm import tqdm

    from ulcerseg.config import load_config, with_overrides
    from ulcerseg.errors import InputError, NoPhotosError
    from ulcerseg.healing import heal_study
    from ulcerseg.ids import printable
    from ulcerseg.pipeline import measure_study

    cfg = load_config(config_path)
    cfg = with_overrides(
        cfg,
        segmentation={
            "model": str(model) if model else None,
            "backend": backend,
            "threads": threads,
            "parallel_photos": parallel_photos,
            "device": device,
        },
        output={"write_overlays": False if no_overlays else None},
    )

    def bar(items, total):  # type: ignore[no-untyped-def]
        return tqdm(items, total=total, unit="photo", disable=not progress, file=sys.stderr)

    try:
        summary = measure_study(
            source,
            out_dir,
            cfg,
            progress=bar,
            retry_failed=retry_failed,
            allow_outside_root=allow_outside_root,
        )
    except NoPhotosError as err:  # list every file that could not be placed, then the one-line error
        for path, reason in err.skipped:
            click.echo(f"skipped: {printable(str(path))}: {printable(reason)}", err=True)
        raise
    healing_error = None
    if not no_heal:
        try:
            heal_study(out_dir)
        except InputError as err:  # the measurements are stored: say why healing is not
            healing_error = str(err)
    for path, reason in summary.problems:
        click.echo(f"skipped: {printable(str(path))}: {printable(reason)}", err=True)
    for file, reason in summary.failures:
        click.echo(f"failed: {printable(file)}: {printable(reason)}", err=True)
    for file in summary.reconciled.missing:
        click.echo(f"missing: {printable(file)}: no longer under the study root (missing_file)", err=True)
    click.echo(
        f"{summary.n_photos} photos: {summary.n_measured} measured, {summary.n_failed} failed, "
        f"{summary.n_skipped} unchanged (skipped), {summary.n_needs_review} need review -> {out_dir}"
    )
    if summary.skipped_counts:
        counts = ", ".join(f"{code} {n}" for code, n in summary.skipped_counts.items())
        click.echo(f"files not measured (see run.json): {counts}")
    if summary.set_aside:
        click.echo(
            f"{len(summary.set_aside)} image(s) of relabelled or replaced photos' earlier rows moved to "
            f"{out_dir / 'superseded'}"
        )
    if summary.unresolved:
        click.echo(f"{len(summary.unresolved)} photo(s) of the study unresolved (failed or missing)")
    if healing_error is not None:
        click.echo(f"healing not computed: {printable(healing_error)}", err=True)
    return 0 if summary.ok and healing_error is None else 1
