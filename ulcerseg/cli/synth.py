"""``ulcerseg synth ...``: synthetic trials, photo sets and training tiles from the command line."""

from __future__ import annotations

import math
from pathlib import Path

import click

from ulcerseg.cli.options import finite, out_dir_option, progress_option
from ulcerseg.tables import require_new_or_empty

__all__ = ["synth"]


def _size(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT (e.g. 4000x3000)") from None
    if w < 64 or h < 64:
        raise click.BadParameter(f"{value!r}: width and height must be at least 64 px")
    return (w, h)


def _range(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not MIN,MAX (e.g. 0.02,0.04)") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise click.BadParameter(f"{value!r}: need finite numbers 0 < MIN <= MAX")
    return (lo, hi)


@click.group("synth")
def synth() -> None:
    """Synthetic calibrated finger photographs with exact ground truth."""


@synth.command("trial")
@out_dir_option("Output trial folder (<subject>/<visit>/<ulcer>.jpg + ground_truth.csv).")
@click.option("--subjects", default=2, show_default=True, type=click.IntRange(1), help="Number of subjects.")
@click.option("--visits", default="D0,W4,W8", show_default=True, help="Comma-separated visit labels.")
@click.option("--ulcers", default="1,2", show_default=True, help="MIN,MAX ulcers per subject.")
@click.option("--size", default="4000x3000", show_default=True, callback=_size, help="Photo size WxH (px).")
@click.option(
    "--render-size",
    default=None,
    callback=_size,
    help="Render at this size WxH and downscale to --size (sharper, slower).",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed (>= 0).")
@progress_option()
def trial_cmd(
    out_dir: Path, subjects: int, visits: str, ulcers: str, size: tuple[int, int],
    render_size: tuple[int, int] | None, seed: int, progress: bool,
) -> None:  # fmt: skip
    """Write a synthetic trial folder with EXIF visit dates and ground truth."""
    from tqdm import tqdm

    from ulcerseg.synth.trial import generate_trial

    visit_list = tuple(v.strip() for v in visits.split(",") if v.strip())
    try:
        lo, hi = (int(v) for v in ulcers.split(","))
    except ValueError:
        raise click.BadParameter(f"{ulcers!r} is not MIN,MAX", param_hint="--ulcers") from None
    from ulcerseg.visits import visit_to_day

    for v in visit_list:
        visit_to_day(v)  # raises a clear error for a bad label
    require_new_or_empty(out_dir)  # a second set would mix with the first
    with tqdm(total=None, desc="photos", unit="photo", disable=not progress) as bar:

        def set_total(n: int) -> None:  # the trial's own photo count, known once it is planned
            bar.total = n
            bar.refresh()

        root = generate_trial(
            out_dir, subjects, visit_list, (lo, hi), size, seed, render_size=render_size,
            progress=bar.update, on_total=set_total,
        )  # fmt: skip
    click.echo(f"wrote {root}")


@synth.command("photos")
@out_dir_option("Output folder (photo_NNNN.jpg + masks/ + ground_truth.csv).")
@click.option("--n", "n", required=True, type=click.IntRange(1), help="Number of photos.")
@click.option(
    "--max-tilt",
    default=45.0,
    show_default=True,
    type=click.FloatRange(0, 80),
    callback=finite,
    help="Maximum tilt of the marker plane (degrees).",
)
@click.option("--size", default="4000x3000", show_default=True, callback=_size, help="Photo size WxH (px).")
@click.option(
    "--mm-per-px",
    default=None,
    callback=_range,
    help="MIN,MAX mm per px at the marker (default: 55-130 mm field of view across the width).",
)
@click.option(
    "--side-mm",
    default=10.0,
    show_default=True,
    type=click.FloatRange(1, min_open=True),
    callback=finite,
    help="Marker side (outer black square), mm.",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed (>= 0).")
@progress_option()
def photos_cmd(
    out_dir: Path, n: int, max_tilt: float, size: tuple[int, int],
    mm_per_px: tuple[float, float] | None, side_mm: float, seed: int, progress: bool,
) -> None:  # fmt: skip
    """Write independent synthetic photos with ground truth (calibration benchmark)."""
    from tqdm import tqdm

    from ulcerseg.synth.render import PhotoConfig
    from ulcerseg.synth.trial import generate_photos

    require_new_or_empty(out_dir)  # a second set would mix with the first
    config = PhotoConfig(size=size, max_tilt_deg=max_tilt, mm_per_px_range=mm_per_px, side_mm=side_mm)
    with tqdm(total=n, desc="photos", unit="photo", disable=not progress) as bar:
        root = generate_photos(out_dir, n, config, seed, progress=bar.update)
    click.echo(f"wrote {root}")


@synth.command("dataset")
@out_dir_option("Output dataset folder (images/ + masks/ + dataset.yaml).")
@click.option("--n", "n", required=True, type=click.IntRange(1), help="Number of tiles.")
@click.option(
    "--px-per-mm",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.5, 100),
    callback=finite,
    help="Physical scale of the tiles (px per mm).",
)
@click.option(
    "--tile", "tile_px", default=256, show_default=True, type=click.IntRange(32, 4096), help="Tile side (px)."
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed (>= 0).")
@progress_option()
def dataset_cmd(out_dir: Path, n: int, px_per_mm: float, tile_px: int, seed: int, progress: bool) -> None:
    """Write rectified synthetic training tiles at a fixed px per mm."""
    from tqdm import tqdm

    from ulcerseg.synth.dataset import generate_training_set

    require_new_or_empty(out_dir)  # a second set would mix with the first
    with tqdm(total=n, desc="tiles", unit="tile", disable=not progress) as bar:
        root = generate_training_set(out_dir, n, px_per_mm, tile_px, seed, progress=bar.update)
    click.echo(f"wrote {root}")
