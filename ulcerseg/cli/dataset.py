"""``ulcerseg dataset``: import annotated photos into the training dataset convention."""

from __future__ import annotations

from pathlib import Path

import click

from ulcerseg.cli.options import finite, out_dir_option, progress_option

__all__ = ["dataset_group"]


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
@click.option(
    "--px-per-mm",
    type=click.FloatRange(0, 1000, min_open=True),
    default=None,
    callback=finite,
    help="Physical scale (px per mm), if known.",
)
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
@click.option(
    "--stem-column", default="stem", show_default=True, help="Column of --groups naming the image stem."
)
@click.option(
    "--group-column", default="group", show_default=True, help="Column of --groups naming the group."
)
@progress_option()
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
    progress: bool,
) -> None:
    """Convert photos + PNG / ImageJ ROI / LabelMe annotations to a training dataset."""
    from tqdm import tqdm

    from ulcerseg.ids import printable
    from ulcerseg.training.importer import import_dataset

    with tqdm(desc="import", unit="img", disable=not progress) as bar:
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
    ignored = f"; ignored {len(result.ignored)} other entries (listed above)" if result.ignored else ""
    for path, why in result.ignored:
        click.echo(f"ignored: {printable(str(path))}: {why}", err=True)
    click.echo(f"{result.out_dir}: {result.n_images} images ({kinds}){skipped}{ignored}")
