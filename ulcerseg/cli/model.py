"""``ulcerseg train``, ``ulcerseg evaluate``, ``ulcerseg export``: models (training, scoring, ONNX)."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path

import click

from ulcerseg.cli.options import (
    backend_option,
    dataset_dirs_option,
    finite,
    model_dir_option,
    out_dir_option,
    progress_option,
    threads_option,
)
from ulcerseg.config import MAX_SCALE, MIN_SCALE, TTA_MODES

__all__ = ["evaluate_command", "export_command", "train_command"]

log = logging.getLogger(__name__)


def _model_to_read(spec: str | Path) -> Path:
    """A model folder that a command only reads (``evaluate --model``/``--split-from``,
    ``train --init``), found as ``measure -m`` finds one: ``models/<name>`` in
    ``$ULCERSEG_MODELS``, as given, in the checkout, in the installed wheel (README: the installed
    command works from any directory). Not found: as given, for the command's own message.
    ``export --model`` writes into its folder, so it takes the folder as given."""
    from ulcerseg.errors import ModelError
    from ulcerseg.resources import resolve_model_dir

    try:
        return resolve_model_dir(spec)
    except ModelError:
        return Path(spec)


@click.command("train")
@click.option(
    "--config",
    "config",
    required=True,
    type=click.Path(dir_okay=False),
    help="Training config YAML (configs/train/<name>.yaml).",
)
@dataset_dirs_option()
@out_dir_option("Run folder for checkpoints, metrics and the trained model.", dest="out")
@click.option(
    "--init",
    "init",
    type=click.Path(file_okay=False),
    default=None,
    help="Fine-tune from this model folder (its card defines the network).",
)
@click.option("--resume", is_flag=True, help="Continue from the run folder's last checkpoint.")
@progress_option()
def train_command(
    config: str, data: tuple[Path, ...], out: Path, init: str | None, resume: bool, progress: bool
) -> None:
    """Train a segmentation model; writes model.pt + model.json (card) into OUT.

    \b
    Multi-GPU (DistributedDataParallel, batch_size is per process):
      torchrun --nproc_per_node=N -m ulcerseg.training train --config ... --data ... -o ...
    """
    from ulcerseg.training.loop import train

    command = shlex.join(["ulcerseg", *sys.argv[1:]])
    init_dir = _model_to_read(init) if init is not None else None
    result = train(config, data, out, init=init_dir, resume=resume, progress=progress, command=command)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun only rank 0 validates and reports
    best = result.best
    click.echo(
        f"{result.out_dir}: {result.epochs} epochs, stopped: {result.stopped}; best val Dice "
        f"{best.get('val_dice', float('nan')):.4f} (dataset), "
        f"{best.get('val_dice_mean', float('nan')):.4f} (mean per image)"
    )


@click.command("evaluate")
@model_dir_option("Model folder (model.json + model.pt).", required=True)
@dataset_dirs_option("Dataset folder (images/ + masks/); repeatable.")
@click.option(
    "--split-from",
    "split_from",
    type=click.Path(file_okay=False),
    default=None,
    help="Evaluate only the validation stems recorded in this model's card.",
)
@out_dir_option("Folder for per_image.csv, summary.json and worst_cases.png.", required=False, dest="out")
@backend_option("auto")
@click.option(
    "--scale",
    type=click.FloatRange(MIN_SCALE, MAX_SCALE),
    default=None,
    callback=finite,
    help="Resize factor for every image (default: card px/mm ÷ dataset px/mm, else 1).",
)
@threads_option()
@click.option(
    "--threshold",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=None,
    callback=finite,
    help="Probability threshold (default: the card's).",
)
@click.option(
    "--tta",
    type=click.Choice(TTA_MODES),
    default="none",
    show_default=True,
    help="Test-time mirroring: average 2 (hflip) or 4 (flips) passes.",
)
@progress_option()
def evaluate_command(
    model: Path,
    data: tuple[Path, ...],
    split_from: str | None,
    out: Path | None,
    backend: str,
    scale: float | None,
    threads: int | None,
    threshold: float | None,
    tta: str,
    progress: bool,
) -> None:
    """Score a model against ground-truth masks (Dice, IoU, precision, recall, area error)."""
    from ulcerseg.segmentation.backends import open_backend
    from ulcerseg.training.evaluate import evaluate, format_summary

    be = open_backend(_model_to_read(model), backend, num_threads=threads)
    split_dir = _model_to_read(split_from) if split_from is not None else None
    result = evaluate(
        be, data, out, split_from=split_dir, scale=scale, progress=progress, threshold=threshold, tta=tta
    )
    click.echo(format_summary(result.summary))
    if result.out_dir is not None:
        click.echo(f"wrote {', '.join(result.files.values())}")


def _warn_pending(final_csv: Path) -> None:
    """The deprecated `export --final` keeps exiting 0 while visits are pending (old scripts rely
    on it), but says so: `review export-final` exits 1 there."""
    from ulcerseg.review.final import pending_in_table

    n = len(pending_in_table(final_csv))
    if n:
        click.echo(
            f"warning: {n} flagged visit(s) pending review (no final value): the table is not final; "
            "`ulcerseg review export-final` lists them and exits 1",
            err=True,
        )


@click.command("export")
@click.argument("study", required=False, type=click.Path(file_okay=False, exists=True))
@click.option(
    "--final", is_flag=True, help="Deprecated (use `review export-final`): write STUDY's final_visits.csv."
)
@click.option("--report", is_flag=True, help="Deprecated (use `review report`): write STUDY's HTML report.")
@model_dir_option("Model folder (model.json + model.pt) to export.")
@click.option("--onnx", "onnx", is_flag=True, help="With --model: export model.onnx, checked against torch.")
@click.option(
    "--opset",
    type=click.IntRange(11, 20),
    default=17,
    show_default=True,
    help="ONNX opset of --onnx (11-20: the Unet's resizes need 11; torch's exporter stops at 20).",
)
@click.option(
    "--coarse-int8",
    "coarse_data",
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="With --model: quantise model.onnx to int8 for the coarse pass, activation ranges from "
    "this dataset's training images (repeatable; never the card's validation stems).",
)
@click.option(
    "--coarse-light",
    "light_data",
    multiple=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="With --model: distil the light coarse-pass network (the network's trunk + a small head "
    "trained to reproduce its coarse probability) on this dataset's training images "
    "(repeatable; never the card's validation stems).",
)
@click.option(
    "--coarse-tiles",
    type=click.IntRange(min=16),
    default=3000,
    show_default=True,
    help="Training tiles of --coarse-light (a tenth more are held out for its agreement figures).",
)
@click.option(
    "--coarse-scale",
    type=click.FloatRange(min=0.1, max=1.0),
    default=0.75,
    show_default=True,
    help="Scale of --coarse-light's training tiles as a fraction of the model's px per mm: the "
    "segmentation.coarse_factor the network will run at.",
)
@click.option(
    "--coarse-head",
    type=click.Choice(["encoder", "decoder"]),
    default="encoder",
    show_default=True,
    help="Head of --coarse-light: on the encoder's features alone (about a quarter of the "
    "network's cost; the default model's) or on the first decoder blocks (about half).",
)
def export_command(
    study: str | None,
    final: bool,
    report: bool,
    model: Path | None,
    onnx: bool,
    opset: int,
    coarse_data: tuple[Path, ...],
    light_data: tuple[Path, ...],
    coarse_tiles: int,
    coarse_scale: float,
    coarse_head: str,
) -> None:
    """Export a model (`export --model M --onnx [--coarse-int8 DATASET] [--coarse-light DATASET]`).

    `export OUT --final [--report]` is deprecated: use `review export-final OUT -o FILE` and
    `review report OUT -o FILE` (same files).
    """
    if study is not None:
        from ulcerseg.review.final import export_final
        from ulcerseg.review.report import write_report

        if not (final or report):
            raise click.UsageError("nothing to export for STUDY: pass --final and/or --report")
        if final:
            click.echo(
                "warning: `ulcerseg export OUT --final` is deprecated; "
                "use `ulcerseg review export-final OUT -o FILE`",
                err=True,
            )
            written = export_final(study)
            click.echo(f"wrote {written}")
            _warn_pending(written)
        if report:
            click.echo(
                "warning: `ulcerseg export OUT --report` is deprecated; "
                "use `ulcerseg review report OUT -o FILE`",
                err=True,
            )
            click.echo(f"wrote {write_report(study)}")
        return
    if model is None:
        raise click.UsageError("give a model to export (--model M --onnx)")
    from ulcerseg.training.export import export_onnx

    if not (onnx or coarse_data or light_data):
        raise click.UsageError(
            "nothing to export: pass --onnx, --coarse-int8 DATASET and/or --coarse-light DATASET"
        )
    if onnx:
        result = export_onnx(model, opset=opset)
        click.echo(
            f"wrote {result.onnx_path} (sha256 {result.onnx_sha256[:16]}…); "
            f"max |torch - onnx| = {result.max_abs_diff:.2e}"
        )
    if coarse_data:
        from ulcerseg.training.export import quantize_coarse

        quantized = quantize_coarse(model, list(coarse_data))
        click.echo(
            f"wrote {quantized.path} (sha256 {quantized.sha256[:16]}…) from {quantized.n_images} "
            "calibration images"
        )
    if light_data:
        from ulcerseg.training.coarse import DistillSettings, distill_coarse

        light = distill_coarse(
            model,
            list(light_data),
            DistillSettings(tiles=coarse_tiles, coarse_scale=coarse_scale, head=coarse_head),
        )
        click.echo(
            f"wrote {light.onnx_path} (sha256 {light.onnx_sha256[:16]}…) from {light.n_tiles} tiles; "
            f"held-out candidate recall {light.recall:.3f}, IoU {light.iou:.3f}"
        )
