"""Command line interface: ``ulcerseg <command>``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from ulcerseg import __version__
from ulcerseg.cli_options import backend_option, model_dir_option, out_dir_option, threads_option
from ulcerseg.errors import UlcersegError, missing_extra_message


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ulcerseg")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Measure digital ulcers on calibrated finger photographs."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def run() -> None:
    """Entry point that turns library errors into one-line messages and exit status 2."""
    try:
        code = main(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except UlcersegError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    except ModuleNotFoundError as err:  # torch & co. belong to the [train] extra
        if (message := missing_extra_message(err)) is None:
            raise
        click.echo(f"error: {message}", err=True)
        sys.exit(2)


@main.command()
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
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
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

    Exit status: 0 all photos measured, 1 some photos failed (see measurements.csv), 2 error.
    """
    from tqdm import tqdm

    from ulcerseg.config import load_config, with_overrides
    from ulcerseg.pipeline import measure_study

    cfg = load_config(config_path)
    cfg = with_overrides(
        cfg,
        segmentation={"model": str(model) if model else None, "backend": backend, "threads": threads},
        output={"write_overlays": False if no_overlays else None},
    )

    def bar(items, total):  # type: ignore[no-untyped-def]
        return tqdm(items, total=total, unit="photo", disable=not progress, file=sys.stderr)

    summary = measure_study(source, out_dir, cfg, progress=bar, heal=not no_heal)
    for path, reason in summary.problems:
        click.echo(f"skipped: {path}: {reason}", err=True)
    for file, reason in summary.failures:
        click.echo(f"failed: {file}: {reason}", err=True)
    click.echo(
        f"{summary.n_photos} photos: {summary.n_measured} measured, {summary.n_failed} failed, "
        f"{summary.n_skipped} unchanged (skipped), {summary.n_needs_review} need review -> {out_dir}"
    )
    return 1 if summary.n_failed else 0


# --- command registration: each stage contributes its own commands ---
from ulcerseg.calibration.sheet import marker_command  # noqa: E402
from ulcerseg.qa.commands import qa_command  # noqa: E402
from ulcerseg.review.commands import heal, review  # noqa: E402
from ulcerseg.synth.commands import synth  # noqa: E402
from ulcerseg.training.commands import (  # noqa: E402
    dataset_group,
    evaluate_command,
    export_command,
    train_command,
)

for _command in (
    heal, review, qa_command, train_command, evaluate_command, export_command, dataset_group, synth,
    marker_command,
):  # fmt: skip
    main.add_command(_command)
