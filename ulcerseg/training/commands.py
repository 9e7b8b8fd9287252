"""Click commands: ``ulcerseg train``, ``ulcerseg evaluate``, ``ulcerseg export``."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path

import click

from ulcerseg.cli_options import (
    backend_option,
    dataset_dirs_option,
    model_dir_option,
    out_dir_option,
    threads_option,
)
from ulcerseg.config import TTA_MODES

log = logging.getLogger(__name__)


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
def train_command(config: str, data: tuple[Path, ...], out: Path, init: str | None, resume: bool) -> None:
    """Train a segmentation model; writes model.pt + model.json (card) into OUT.

    \b
    Multi-GPU (DistributedDataParallel, batch_size is per process):
      torchrun --nproc_per_node=N -m ulcerseg.training train --config ... --data ... -o ...
    """
    from ulcerseg.training.loop import train

    command = shlex.join(["ulcerseg", *sys.argv[1:]])
    result = train(config, data, out, init=init, resume=resume, progress=True, command=command)
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
    type=float,
    default=None,
    help="Resize factor for every image (default: card px/mm ÷ dataset px/mm, else 1).",
)
@threads_option()
@click.option("--threshold", type=float, default=None, help="Probability threshold (default: the card's).")
@click.option(
    "--tta",
    type=click.Choice(TTA_MODES),
    default="none",
    show_default=True,
    help="Test-time mirroring: average 2 (hflip) or 4 (flips) passes.",
)
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
) -> None:
    """Score a model against ground-truth masks (Dice, IoU, precision, recall, area error)."""
    from ulcerseg.segmentation.backends import open_backend
    from ulcerseg.training.evaluate import evaluate, format_summary

    be = open_backend(model, backend, num_threads=threads)
    result = evaluate(
        be, data, out, split_from=split_from, scale=scale, progress=True, threshold=threshold, tta=tta
    )
    click.echo(format_summary(result.summary))
    if result.out_dir is not None:
        click.echo(f"wrote {', '.join(result.files.values())}")


@click.command("export")
@click.argument("study", required=False, type=click.Path(file_okay=False, exists=True))
@click.option("--final", is_flag=True, help="With STUDY: write the final per-visit CSV (final_visits.csv).")
@click.option("--report", is_flag=True, help="With STUDY: write the HTML report per subject and ulcer.")
@model_dir_option("Model folder (model.json + model.pt) to export.")
@click.option("--onnx", "onnx", is_flag=True, help="With --model: export model.onnx, checked against torch.")
@click.option("--opset", type=int, default=17, show_default=True)
def export_command(
    study: str | None, final: bool, report: bool, model: Path | None, onnx: bool, opset: int
) -> None:
    """Export study results (`export OUT --final [--report]`) or a model (`export --model M --onnx`)."""
    if study is not None:
        from ulcerseg.review.export import export_final, write_report

        if not (final or report):
            raise click.UsageError("nothing to export for STUDY: pass --final and/or --report")
        if final:
            click.echo(f"wrote {export_final(study)}")
        if report:
            click.echo(f"wrote {write_report(study)}")
        return
    if model is None:
        raise click.UsageError("give a study folder (export OUT --final) or a model (--model M --onnx)")
    from ulcerseg.training.export import export_onnx

    if not onnx:
        raise click.UsageError("nothing to export: pass --onnx")
    result = export_onnx(model, opset=opset)
    click.echo(
        f"wrote {result.onnx_path} (sha256 {result.onnx_sha256[:16]}…); "
        f"max |torch - onnx| = {result.max_abs_diff:.2e}"
    )


@click.group("dataset")
def dataset_group() -> None:
    """Training datasets: import annotated photos into the dataset convention."""


@dataset_group.command("import")
@click.argument("images", type=click.Path(file_okay=False))
@click.option(
    "-a",
    "--annotations",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder of <stem>.png/.roi/.zip/.json annotations (default: IMAGES).",
)
@out_dir_option("New dataset folder (images/, masks/, dataset.yaml).", dest="out")
@click.option("--name", default=None, help="Dataset name (default: the output folder name).")
@click.option("--px-per-mm", type=float, default=None, help="Physical scale, if known.")
@click.option(
    "--missing",
    type=click.Choice(["error", "skip", "empty"]),
    default="error",
    show_default=True,
    help="What to do with a photo without annotation.",
)
@click.option(
    "--groups",
    "groups",
    type=click.Path(dir_okay=False),
    default=None,
    help="CSV mapping image stem -> group (e.g. subject) for grouped splits.",
)
@click.option("--stem-column", default="stem", show_default=True)
@click.option("--group-column", default="group", show_default=True)
def dataset_import_command(
    images: str,
    annotations: str | None,
    out: Path,
    name: str | None,
    px_per_mm: float | None,
    missing: str,
    groups: str | None,
    stem_column: str,
    group_column: str,
) -> None:
    """Convert photos + PNG / ImageJ ROI / LabelMe annotations to a training dataset."""
    from tqdm import tqdm

    from ulcerseg.training.importer import import_dataset

    with tqdm(desc="import", unit="img") as bar:
        result = import_dataset(
            images,
            out,
            annotations,
            name=name,
            px_per_mm=px_per_mm,
            missing=missing,
            groups_csv=groups,
            stem_column=stem_column,
            group_column=group_column,
            progress=bar.update,
        )
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(result.kinds.items()))
    skipped = f"; skipped {len(result.skipped)} without annotation" if result.skipped else ""
    click.echo(f"{result.out_dir}: {result.n_images} images ({kinds}){skipped}")
