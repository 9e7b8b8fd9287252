"""``ulcerseg marker``: a printable A4 sheet of calibration marker stickers."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["marker_command"]


@click.command("marker")
@click.option(
    "--side-mm",
    default=10.0,
    show_default=True,
    type=float,
    help="Side of the marker's outer black square, mm (must match marker.side_mm).",
)
@click.option("--ids", default="0", show_default=True, help="Comma-separated marker IDs to print.")
@click.option(
    "--dict", "dictionary", default="DICT_4X4_50", show_default=True, help="OpenCV ArUco dictionary."
)
@click.option(
    "-o",
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file: .pdf (vector) or .png (raster with DPI metadata).",
)
@click.option("--dpi", default=600.0, show_default=True, type=float, help="PNG resolution (dots per inch).")
def marker_command(side_mm: float, ids: str, dictionary: str, out_path: Path, dpi: float) -> None:
    """Write a printable A4 sheet of marker stickers at true scale, with a 50 mm check ruler."""
    try:
        id_list = tuple(int(v) for v in ids.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(
            f"{ids!r} is not a comma-separated list of integers", param_hint="--ids"
        ) from None
    from ulcerseg.calibration.sheet import write_marker_sheet

    path = write_marker_sheet(out_path, side_mm, id_list, dictionary, dpi)
    click.echo(f"wrote {path}: print at 100% (actual size) and check the 50 mm ruler")
