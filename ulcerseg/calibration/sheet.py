"""Printable A4 sheet of calibration-marker stickers at true scale, with a check ruler.

The marker's *side* is the outer edge of its black square (what ``ulcerseg measure`` expects as
``marker.side_mm``); each sticker keeps a white quiet zone of at least 2 mm around it and is
framed by dashed cut lines. A 50 mm ruler lets a site verify that the printer kept the scale.
Page coordinates are mm from the top-left corner of the A4 page.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ulcerseg.calibration.aruco import marker_cells
from ulcerseg.errors import ConfigError, InputError, OutputError, first_line
from ulcerseg.tables import atomic_path

log = logging.getLogger(__name__)

A4_MM = (210.0, 297.0)
MARGIN_MM = 15.0
RULER_MM = 50
LABEL_MM = 5.0  # space under each sticker for its ID
GAP_MM = 4.0


@dataclass(frozen=True)
class StickerSlot:
    """One sticker: marker ID, top-left of its black square (mm), side and quiet zone (mm)."""

    marker_id: int
    x_mm: float
    y_mm: float
    side_mm: float
    quiet_mm: float

    def cut_box(self) -> tuple[float, float, float, float]:
        q = self.quiet_mm
        return (self.x_mm - q, self.y_mm - q, self.x_mm + self.side_mm + q, self.y_mm + self.side_mm + q)


@dataclass(frozen=True)
class SheetLayout:
    """Everything printed on the sheet, in page mm."""

    dictionary: str
    side_mm: float
    stickers: tuple[StickerSlot, ...]
    ruler_xy_mm: tuple[float, float]  # left end of the ruler's baseline
    title: str
    instructions: tuple[str, ...]


def layout_sheet(
    side_mm: float = 10.0, ids: tuple[int, ...] = (0,), dictionary: str = "DICT_4X4_50"
) -> SheetLayout:
    """Place as many stickers as fit (cycling through ``ids``) above a 50 mm check ruler."""
    if not 3.0 <= side_mm <= 120.0:
        raise ConfigError(f"marker side {side_mm} mm is outside 3-120 mm")
    if not ids:
        raise ConfigError("no marker IDs given")
    for i in ids:
        marker_cells(dictionary, i, source="marker sheet")  # validates dictionary and IDs
    quiet = max(3.0, 0.25 * side_mm)
    pitch_x = side_mm + 2 * quiet + GAP_MM
    pitch_y = side_mm + 2 * quiet + GAP_MM + LABEL_MM
    top = MARGIN_MM + 22.0
    bottom = A4_MM[1] - MARGIN_MM - 40.0  # room for the ruler and instructions
    cols = int((A4_MM[0] - 2 * MARGIN_MM + GAP_MM) // pitch_x)
    rows = int((bottom - top + GAP_MM) // pitch_y)
    if cols < 1 or rows < 1:
        raise ConfigError(f"a {side_mm} mm marker does not fit on an A4 sheet")
    rows = min(rows, max(1, int(np.ceil(48 / cols))))  # at most ~48 stickers
    if len(ids) > rows * cols:  # the rest would silently be missing from the sheet
        raise ConfigError(
            f"{len(ids)} marker IDs but only {rows * cols} stickers of {side_mm:g} mm fit on the sheet; "
            "give at most that many IDs (one sheet per group)"
        )
    x_start = (A4_MM[0] - (cols * pitch_x - GAP_MM)) / 2
    slots = []
    for r in range(rows):
        for c in range(cols):
            k = r * cols + c
            slots.append(
                StickerSlot(
                    ids[k % len(ids)],
                    x_start + c * pitch_x + quiet,
                    top + r * pitch_y + quiet,
                    side_mm,
                    quiet,
                )
            )
    ruler_y = top + rows * pitch_y + 12.0
    title = f"ulcerseg calibration markers - {dictionary}, side {side_mm:g} mm (outer black square)"
    instructions = (
        f"Measure this ruler: it must read {RULER_MM} mm. If it does not, print again at 100% /",
        "'actual size' (no 'fit to page') and check again before using the stickers.",
        "Cut along the dashed lines; keep the white border intact. Stick the marker flat beside",
        "the ulcer, in the same plane, and keep it fully visible in every photo.",
    )
    return SheetLayout(dictionary, side_mm, tuple(slots), (MARGIN_MM + 5.0, ruler_y), title, instructions)


def _ruler_ticks() -> list[tuple[float, float]]:
    """(x offset mm, tick length mm) of the check ruler."""
    return [(float(i), 6.0 if i % 10 == 0 else 4.0 if i % 5 == 0 else 2.5) for i in range(RULER_MM + 1)]


def _coverage(lo_mm: np.ndarray, hi_mm: np.ndarray, n_px: int, px_per_mm: float) -> np.ndarray:
    """Fraction of each page pixel column (n_px) inside each interval [lo, hi): n_px x K."""
    left = np.arange(n_px)[:, None] / px_per_mm
    ov = np.minimum(hi_mm[None, :], left + 1 / px_per_mm) - np.maximum(lo_mm[None, :], left)
    return np.clip(ov * px_per_mm, 0, 1)


def render_sheet_png(layout: SheetLayout, dpi: float = 600.0) -> np.ndarray:
    """The sheet as a grayscale image (H x W uint8) at ``dpi``; pixel (0, 0) covers page mm [0, 25.4/dpi)."""
    ppm = dpi / 25.4
    w, h = round(A4_MM[0] * ppm), round(A4_MM[1] * ppm)
    page = np.full((h, w), 255, np.uint8)
    for slot in layout.stickers:
        cells = marker_cells(layout.dictionary, slot.marker_id).astype(np.float64)
        n = cells.shape[0]
        u0, u1 = int(slot.x_mm * ppm) - 1, int((slot.x_mm + slot.side_mm) * ppm) + 2
        v0, v1 = int(slot.y_mm * ppm) - 1, int((slot.y_mm + slot.side_mm) * ppm) + 2
        edges_x = slot.x_mm + np.linspace(0, slot.side_mm, n + 1)
        edges_y = slot.y_mm + np.linspace(0, slot.side_mm, n + 1)
        # Exact area coverage, so the printed square is side_mm wide to a fraction of a pixel.
        ox = _coverage(edges_x[:-1], edges_x[1:], u1, ppm)[u0:]
        oy = _coverage(edges_y[:-1], edges_y[1:], v1, ppm)[v0:]
        black = oy @ cells @ ox.T
        page[v0:v1, u0:u1] = np.clip(255 * (1 - black) + 0.5, 0, 255).astype(np.uint8)
        _dashed_box(page, slot.cut_box(), ppm)
    pil = Image.fromarray(page)
    draw = ImageDraw.Draw(pil)
    font = _font(3.2 * ppm)
    small = _font(2.6 * ppm)
    draw.text((MARGIN_MM * ppm, MARGIN_MM * ppm), layout.title, fill=0, font=font)
    for slot in layout.stickers:
        x0, _, x1, y1 = slot.cut_box()
        draw.text(
            ((x0 + x1) / 2 * ppm, (y1 + 1.0) * ppm), f"ID {slot.marker_id}", fill=90, font=small, anchor="mt"
        )
    rx, ry = layout.ruler_xy_mm
    lw = max(1, round(0.2 * ppm))
    draw.rectangle([rx * ppm, ry * ppm, (rx + RULER_MM) * ppm, ry * ppm + lw - 1], fill=0)
    for x, length in _ruler_ticks():
        px = round((rx + x) * ppm)
        draw.rectangle([px - lw // 2, ry * ppm - length * ppm, px - lw // 2 + lw - 1, ry * ppm], fill=0)
        if x % 10 == 0:
            draw.text((px, (ry - 7.0) * ppm), f"{int(x)}", fill=0, font=small, anchor="mb")
    draw.text(((rx + RULER_MM + 4) * ppm, (ry - 3) * ppm), "mm", fill=0, font=small, anchor="lm")
    for i, line in enumerate(layout.instructions):
        draw.text((MARGIN_MM * ppm, (ry + 6 + 5 * i) * ppm), line, fill=0, font=small)
    return np.asarray(pil)


def _font(size_px: float) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=max(8, round(size_px)))
    except TypeError:  # Pillow < 10.1 has no scalable default font
        return ImageFont.load_default()


def _dashed_box(page: np.ndarray, box: tuple[float, float, float, float], ppm: float) -> None:
    x0, y0, x1, y1 = (v * ppm for v in box)
    dash, gap = 2.0 * ppm, 1.5 * ppm
    thick = max(1, round(0.15 * ppm))
    for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = float(np.hypot(b[0] - a[0], b[1] - a[1]))
        t = 0.0
        while t < length:
            s, e = t / length, min(t + dash, length) / length
            p = (round(a[0] + s * (b[0] - a[0])), round(a[1] + s * (b[1] - a[1])))
            q = (round(a[0] + e * (b[0] - a[0])), round(a[1] + e * (b[1] - a[1])))
            cv2.line(page, p, q, 150, thick)
            t += dash + gap


def write_sheet_pdf(layout: SheetLayout, path: Path) -> None:
    """Vector A4 PDF of the sheet (matplotlib, true scale)."""
    sheet_figure(layout).savefig(path, format="pdf")


def sheet_figure(layout: SheetLayout):  # -> matplotlib.figure.Figure (imported lazily)
    """The sheet as an A4 matplotlib figure whose data coordinates are page mm."""
    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(A4_MM[0] / 25.4, A4_MM[1] / 25.4))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, A4_MM[0])
    ax.set_ylim(A4_MM[1], 0)
    ax.set_axis_off()
    pt = 72 / 25.4  # points per mm, for font sizes
    cells_patches = []
    for slot in layout.stickers:
        cells = marker_cells(layout.dictionary, slot.marker_id)
        n = cells.shape[0]
        c = slot.side_mm / n
        # Slight overlap avoids hairline gaps between adjacent cells in some viewers.
        cells_patches += [
            Rectangle((slot.x_mm + j * c, slot.y_mm + i * c), c + 0.001, c + 0.001)
            for i, j in zip(*np.nonzero(cells), strict=True)
        ]
        x0, y0, x1, y1 = slot.cut_box()
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=0.4, ec="0.6", ls=(0, (4, 3))))
        ax.text(
            (x0 + x1) / 2,
            y1 + 1.0,
            f"ID {slot.marker_id}",
            ha="center",
            va="top",
            fontsize=2.6 * pt,
            color="0.35",
        )
    ax.add_collection(PatchCollection(cells_patches, facecolor="black", edgecolor="none", linewidth=0))
    ax.text(MARGIN_MM, MARGIN_MM, layout.title, ha="left", va="top", fontsize=3.2 * pt)
    rx, ry = layout.ruler_xy_mm
    ax.plot([rx, rx + RULER_MM], [ry, ry], color="black", lw=0.6, solid_capstyle="butt")
    for x, length in _ruler_ticks():
        ax.plot([rx + x, rx + x], [ry, ry - length], color="black", lw=0.5, solid_capstyle="butt")
        if x % 10 == 0:
            ax.text(rx + x, ry - 7.0, f"{int(x)}", ha="center", va="bottom", fontsize=2.6 * pt)
    ax.text(rx + RULER_MM + 4, ry - 3, "mm", ha="left", va="center", fontsize=2.6 * pt)
    for i, line in enumerate(layout.instructions):
        ax.text(MARGIN_MM, ry + 6 + 5 * i, line, ha="left", va="top", fontsize=2.6 * pt)
    return fig


def write_marker_sheet(
    path: str | Path,
    side_mm: float = 10.0,
    ids: tuple[int, ...] = (0,),
    dictionary: str = "DICT_4X4_50",
    dpi: float = 600.0,
) -> Path:
    """Write the A4 sticker sheet as PDF (vector) or PNG (``dpi`` recorded in the file)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".pdf", ".png"):
        raise InputError(f"{path}: marker sheet must be .pdf or .png")
    if not 72 <= dpi <= 2400:
        raise ConfigError(f"dpi {dpi} is outside 72-2400")
    layout = layout_sheet(side_mm, tuple(ids), dictionary)
    # atomic: a full disk leaves the previous sheet, never a truncated one that may still print
    with atomic_path(path) as tmp:
        try:
            if suffix == ".pdf":
                write_sheet_pdf(layout, tmp)
            else:
                Image.fromarray(render_sheet_png(layout, dpi)).save(tmp, format="PNG", dpi=(dpi, dpi))
        except (OSError, zlib.error) as err:  # matplotlib's PDF writer fails as zlib.error on a full disk
            raise OutputError(f"{path}: cannot write the marker sheet ({first_line(err)})") from None
    log.info("wrote marker sheet %s (%d stickers)", path, len(layout.stickers))
    return path
