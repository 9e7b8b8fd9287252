"""Manual ulcer annotations: read/write PNG masks, ImageJ ROIs / RoiSets and LabelMe JSON.

Everything here is in the *photo frame* (see :mod:`ulcerseg.records`): pixel centres at
integer coordinates, x right, y down. Polygons are ``(n, 2)`` float arrays of ``(x, y)`` px.
Masks are ``uint8`` arrays of the photo's shape with values 0/255.

Pixel conventions of the external formats (converted on read, restored on write):

- ImageJ area ROIs use pixel *corners* (pixel ``i`` spans ``[i, i+1)``; documented in
  ``ij/gui/Roi.java`` since ImageJ 1.52t, integer and sub-pixel coordinates alike), so all
  area-ROI coordinates are shifted by -0.5 px.
- LabelMe rasterises with PIL (vertices at pixel centres): no shift.

Areas: :func:`polygon_area_mm2` maps polygon vertices through the photo -> marker-plane
homography (a perspective map sends a polygon to a polygon) and takes the shoelace area,
which is exact; :func:`mask_area_mm2` resamples a mask onto the marker plane and counts.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from skimage.measure import find_contours

from ulcerseg import imageio
from ulcerseg.errors import ImageReadError, InputError
from ulcerseg.geometry import RectifiedGrid, apply_homography, as_homography, fill_polygons, polygon_area

log = logging.getLogger(__name__)

MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")
ROI_SUFFIXES = (".roi", ".zip")
LABELME_SUFFIXES = (".json",)
ANNOTATION_SUFFIXES = MASK_SUFFIXES + ROI_SUFFIXES + LABELME_SUFFIXES

MAX_MANUAL_AREA_MM2 = 2500.0
"""A manual outline larger than this (mm², 25 cm²) is not one digital ulcer: more than the skin
of a whole finger. The review server refuses such an outline; ``qa`` leaves such an annotation
out (an inverted mask, or an outline of another photo)."""

# Vertices may lie on the outer pixel edge (-0.5 .. size-0.5); allow rounding noise beyond it.
_EDGE_TOLERANCE_PX = 0.51
# Vertices used to approximate an ImageJ oval ROI (relative area error ~ (2 pi / n)^2 / 6).
_OVAL_VERTICES = 720


class AnnotationError(InputError):
    """A manual annotation file cannot be read or does not fit its photo."""


@dataclass
class Annotation:
    """One manual annotation of one photo (photo frame).

    ``polygons`` is set for vector formats (ROI, LabelMe) and ``None`` for masks; each
    polygon is an ``(n, 2)`` array of ``(x, y)`` px. ``groups`` lists, per drawn object, the
    indices of its polygons, combined even-odd (holes); objects are combined by union.
    """

    path: Path
    kind: str  # "mask" | "roi" | "labelme"
    mask: np.ndarray  # uint8 0/255, photo frame, shape (height, width)
    polygons: list[np.ndarray] | None = None
    groups: list[list[int]] = field(default_factory=list)

    def area_mm2(self, homography: Sequence[float] | np.ndarray, px_per_mm: float = 20.0) -> float:
        """Area in mm² on the marker plane: exact for polygons, resampled for masks."""
        if self.polygons is None:
            return mask_area_mm2(self.mask, homography, px_per_mm)
        if not self.polygons:
            return 0.0
        areas = [_even_odd_area_mm2([self.polygons[i] for i in group], homography) for group in self.groups]
        total = float(sum(areas))
        if len(self.groups) > 1:
            # Objects are united; if they overlap, the sum double counts, so fall back to
            # counting the union raster (rare: readers normally draw disjoint outlines).
            polys, shape = self.polygons, self.mask.shape
            counted = sum(
                int(np.count_nonzero(rasterize_polygons([polys[i] for i in g], shape))) for g in self.groups
            )
            if counted > np.count_nonzero(self.mask) + 0.001 * counted:
                log.info("%s: overlapping objects, area from the union mask", self.path)
                return mask_area_mm2(self.mask, homography, px_per_mm)
        return total


# --------------------------------------------------------------------------- geometry


def polygon_area_mm2(polygon_px: np.ndarray, homography: Sequence[float] | np.ndarray) -> float:
    """Exact marker-plane area (mm²) of a photo-frame polygon (px) under a homography."""
    return polygon_area(apply_homography(homography, polygon_px, check_horizon=True))


def _even_odd_area_mm2(polygons: list[np.ndarray], homography: Sequence[float] | np.ndarray) -> float:
    """Area of non-crossing polygons combined even-odd: nesting depth decides add/subtract."""
    if len(polygons) == 1:
        return polygon_area_mm2(polygons[0], homography)
    total = 0.0
    for i, poly in enumerate(polygons):
        depth = sum(_point_in_polygon(poly[0], other) for j, other in enumerate(polygons) if j != i)
        sign = 1.0 if depth % 2 == 0 else -1.0
        total += sign * polygon_area_mm2(poly, homography)
    return max(total, 0.0)


def _point_in_polygon(point: np.ndarray, polygon: np.ndarray) -> bool:
    contour = np.asarray(polygon, dtype=np.float32).reshape(-1, 1, 2)
    return cv2.pointPolygonTest(contour, (float(point[0]), float(point[1])), False) > 0


def self_crossing(polygon: np.ndarray, max_pairs: int = 2_000_000) -> np.ndarray | None:
    """A point (px) where a closed polygon's outline crosses itself, or None.

    A crossing is two edges whose ends lie strictly on both sides of each other, or the
    outline passing one point twice (a repeated vertex, or a vertex on another edge) with the
    second pass going from one side of the first to the other. Passes that merely touch, as
    a wand-traced outline does at a diagonal pixel, keep the shoelace area right and are no
    crossing. Vertices are snapped to a 1/1024 px grid so that every test is exact integer
    arithmetic (a hand-drawn loop through a vertex is then a repeated vertex, not rounding
    noise). Edges are paired by overlapping x ranges (sorted sweep): an outline of thousands
    of vertices costs milliseconds; ``max_pairs`` bounds one batch's memory.
    """
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if len(poly) < 4 or not np.isfinite(poly).all():
        return None
    # products of two coordinate differences stay below 2**62: exact in int64
    scale = 1024.0 if np.abs(poly).max() < 2**19 else 2**29 / np.abs(poly).max()
    a = np.round(poly * scale).astype(np.int64)
    a = a[np.any(a != np.roll(a, 1, axis=0), axis=1)]  # zero-length edges (a repeated click)
    if len(a) < 4:
        return None
    b = np.roll(a, -1, axis=0)  # edge k runs a[k] -> b[k]
    splits: list[tuple[int, float, int]] = []  # (edge, position along it, vertex inside it)
    for i, j in _edge_pairs(a, b, max_pairs):
        o1, o2 = np.sign(_orientation(a[i], b[i], a[j])), np.sign(_orientation(a[i], b[i], b[j]))
        o3, o4 = np.sign(_orientation(a[j], b[j], a[i])), np.sign(_orientation(a[j], b[j], b[i]))
        proper = (o1 * o2 < 0) & (o3 * o4 < 0)
        if proper.any():
            k = int(np.argmax(proper))
            # where edge i meets edge j's line
            d3, d4 = (float(_orientation(a[j], b[j], q)[k]) for q in (a[i], b[i]))
            return (a[i[k]] + d3 / (d3 - d4) * (b[i[k]] - a[i[k]])) / scale
        # a vertex inside another edge: split the edge there, so that every point the outline
        # passes twice is a repeated vertex
        for edge, vertex, o in ((i, j, o1), (j, i, o3)):
            d = b[edge] - a[edge]
            dot = np.einsum("ij,ij->i", a[vertex] - a[edge], d)
            on = (o == 0) & (dot > 0) & (dot < np.einsum("ij,ij->i", d, d))
            t = dot[on] / np.einsum("ij,ij->i", d[on], d[on]).astype(np.float64)
            splits += zip(edge[on].tolist(), t.tolist(), vertex[on].tolist(), strict=True)
    if splits:
        keys = [(k, 0.0) for k in range(len(a))] + [(e, t) for e, t, _ in splits]
        points = np.concatenate([a, a[[v for _, _, v in splits]]])
        a = points[sorted(range(len(keys)), key=keys.__getitem__)]
        a = a[np.any(a != np.roll(a, 1, axis=0), axis=1)]  # two vertices split one edge at one point
    point = _crossing_at_repeated_vertex(a)
    return None if point is None else point / scale


def _edge_pairs(a: np.ndarray, b: np.ndarray, max_pairs: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of index pairs (i, j) of non-adjacent edges whose bounding boxes overlap."""
    n = len(a)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    order = np.argsort(lo[:, 0], kind="stable")
    # edges after position k in x order that start before edge k ends in x
    ends = np.searchsorted(lo[order, 0], hi[order, 0], side="right")
    counts = np.maximum(ends - np.arange(n) - 1, 0)
    start = 0
    while start < n:
        stop = min(n, start + 1 + int(np.searchsorted(np.cumsum(counts[start:]), max_pairs)))
        c = counts[start:stop]
        pos = np.repeat(np.arange(start, stop), c)
        pos2 = pos + 1 + np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
        i, j = order[pos], order[pos2]
        gap = np.abs(i - j)
        keep = (gap != 1) & (gap != n - 1) & (lo[i, 1] <= hi[j, 1]) & (lo[j, 1] <= hi[i, 1])
        yield i[keep], j[keep]
        start = stop


def _crossing_at_repeated_vertex(a: np.ndarray) -> np.ndarray | None:
    """A vertex of integer polygon ``a`` that the outline passes twice, the second pass going
    from one side of the first to the other (the neighbours interleave around it), or None."""
    _, inverse, counts = np.unique(a, axis=0, return_inverse=True, return_counts=True)
    n = len(a)
    for group in np.flatnonzero(counts > 1):
        visits = np.flatnonzero(inverse.ravel() == group)
        p = a[visits[0]]
        # each pass as the directions (from p) to its previous and next vertex
        passes = [(_offset(a[(k - 1) % n], p), _offset(a[(k + 1) % n], p)) for k in visits]
        for (u, v), (w, x) in itertools.combinations(passes, 2):
            if _parallel(u, w) or _parallel(u, x) or _parallel(v, w) or _parallel(v, x):
                continue  # the passes run along each other a while: touching, or decided further on
            if _parallel(u, v) or _parallel(w, x):
                continue  # a pass that turns back on itself (a spike) divides nothing
            if _in_sweep(u, v, w) != _in_sweep(u, v, x):
                return p
    return None


def _cross(u: tuple[int, int], v: tuple[int, int]) -> int:
    return u[0] * v[1] - u[1] * v[0]


def _offset(q: np.ndarray, p: np.ndarray) -> tuple[int, int]:
    """The integer direction from vertex ``p`` to vertex ``q``."""
    d = q - p
    return (int(d[0]), int(d[1]))


def _parallel(u: tuple[int, int], v: tuple[int, int]) -> bool:
    """``u`` and ``v`` point the same way (exactly)."""
    return _cross(u, v) == 0 and u[0] * v[0] + u[1] * v[1] > 0


def _in_sweep(u: tuple[int, int], v: tuple[int, int], w: tuple[int, int]) -> bool:
    """``w`` lies strictly inside the counter-clockwise (y up) turn from ``u`` to ``v``."""
    if _cross(u, v) > 0:
        return _cross(u, w) > 0 and _cross(w, v) > 0
    if _cross(u, v) < 0:  # a turn of more than 180°: not in the closed turn from v to u
        return not (_cross(v, w) >= 0 and _cross(w, u) >= 0)
    return _cross(u, w) > 0  # u and v opposite: the half-plane left of u


def _orientation(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Twice the signed area of triangles (p, q, r), row-wise: > 0 when r lies left of p -> q."""
    return (q[:, 0] - p[:, 0]) * (r[:, 1] - p[:, 1]) - (q[:, 1] - p[:, 1]) * (r[:, 0] - p[:, 0])


def _check_simple(polygon: np.ndarray, path: Path, what: str) -> None:
    """AnnotationError when ``polygon`` crosses itself: its shoelace area would subtract one
    loop from the other (a bowtie measures ~0 mm²), and which loop is the ulcer is a guess."""
    point = self_crossing(polygon)
    if point is not None:
        raise AnnotationError(
            f"{path}: {what} crosses itself at ({point[0]:.1f}, {point[1]:.1f}) px "
            "(self_intersecting_outline); retrace it without crossing"
        )


def rectifying_matrix(homography: Sequence[float] | np.ndarray, grid: RectifiedGrid) -> np.ndarray:
    """Photo px -> rectified px of ``grid``: marker-plane mm (homography), then the grid's mm -> px."""
    return grid.mm_to_px() @ as_homography(homography)


def warp_mask_to_rectified(
    mask: np.ndarray, homography: Sequence[float] | np.ndarray, grid: RectifiedGrid
) -> np.ndarray:
    """Resample a photo-frame mask (nearest) onto ``grid`` (uint8 0/255, shape (height, width))."""
    m = rectifying_matrix(homography, grid)
    out = cv2.warpPerspective(
        (np.asarray(mask) > 0).astype(np.uint8) * 255,
        m,
        (grid.width, grid.height),
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return out


def mask_area_mm2(
    mask: np.ndarray, homography: Sequence[float] | np.ndarray, px_per_mm: float = 20.0
) -> float:
    """Marker-plane area (mm²) of a photo-frame mask: warp to the plane at ``px_per_mm``, count.

    Only the mask's bounding box is resampled (nearest neighbour), so photo size is no cost.
    """
    mask = np.asarray(mask)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0.0
    x0, x1, y0, y1 = xs.min() - 1, xs.max() + 2, ys.min() - 1, ys.max() + 2
    x0, y0 = max(int(x0), 0), max(int(y0), 0)
    crop = (mask[y0:y1, x0:x1] > 0).astype(np.uint8) * 255
    h = as_homography(homography) @ np.array([[1.0, 0, x0], [0, 1.0, y0], [0, 0, 1.0]])
    ch, cw = crop.shape
    corners = np.array([[-0.5, -0.5], [cw - 0.5, -0.5], [cw - 0.5, ch - 0.5], [-0.5, ch - 0.5]])
    mm = apply_homography(h, corners, check_horizon=True)
    lo = np.floor(mm.min(axis=0) * px_per_mm) / px_per_mm - 1.0 / px_per_mm
    hi = np.ceil(mm.max(axis=0) * px_per_mm) / px_per_mm + 1.0 / px_per_mm
    size = np.ceil((hi - lo) * px_per_mm).astype(int) + 1
    if size.prod() > 200_000_000:
        raise ValueError(f"mask spans {size[0]}x{size[1]} px on the marker plane; check homography")
    grid = RectifiedGrid((float(lo[0]), float(lo[1])), px_per_mm, int(size[0]), int(size[1]))
    warped = cv2.warpPerspective(
        crop, rectifying_matrix(h, grid), (grid.width, grid.height), flags=cv2.INTER_NEAREST, borderValue=0
    )
    return float(np.count_nonzero(warped)) / px_per_mm**2


def rasterize_polygons(polygons: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Mask (uint8 0/255) of pixels whose centres lie inside the polygons, combined even-odd."""
    return fill_polygons(shape[:2], polygons).astype(np.uint8) * 255


def mask_to_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """Outlines (photo px) of a mask at the 0.5 iso-line, closed; holes wind the other way.

    The iso-line runs half-way between inside and outside pixel centres, so the polygon area
    matches the pixel count (unlike pixel-centre contours, which lose half a pixel per edge).
    """
    padded = np.pad((np.asarray(mask) > 0).astype(np.float64), 1)
    contours = find_contours(padded, 0.5, positive_orientation="high")
    return [np.ascontiguousarray(c[:-1, ::-1] - 1.0) for c in contours if len(c) > 3]


# --------------------------------------------------------------------------- readers


def _check_inside(polygons: list[np.ndarray], image_shape: tuple[int, int], path: Path) -> None:
    h, w = image_shape[:2]
    for poly in polygons:
        if len(poly) == 0:
            continue
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        if (
            lo[0] < -_EDGE_TOLERANCE_PX
            or lo[1] < -_EDGE_TOLERANCE_PX
            or hi[0] > w - 1 + _EDGE_TOLERANCE_PX
            or hi[1] > h - 1 + _EDGE_TOLERANCE_PX
        ):
            raise AnnotationError(
                f"{path}: coordinates x {lo[0]:.1f}..{hi[0]:.1f}, y {lo[1]:.1f}..{hi[1]:.1f} px "
                f"lie outside the {w}x{h} px image (annotation drawn on an image of another size?)"
            )


def read_mask(path: str | Path, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a binary mask image (0/255, 0/1 or bool; gray or identical RGB channels) -> 0/255."""
    path = Path(path)
    try:
        binary = imageio.read_mask(path)
    except ImageReadError as err:
        raise AnnotationError(str(err)) from None
    if image_shape is not None and binary.shape != tuple(image_shape[:2]):
        raise AnnotationError(
            f"{path}: mask is {binary.shape[1]}x{binary.shape[0]} px but the photo is "
            f"{image_shape[1]}x{image_shape[0]} px"
        )
    return binary.astype(np.uint8) * 255


def _roi_polygons(roi: Any, path: Path, label: str = "#1") -> list[np.ndarray]:
    """Photo-frame polygons of one ImageJ ROI (several for composite shapes); ``label`` names
    the ROI in errors."""
    import roifile

    rt = roifile.ROI_TYPE
    roitype = roi.roitype
    subtype = getattr(roi, "subtype", None)
    if subtype in (roifile.ROI_SUBTYPE.TEXT, roifile.ROI_SUBTYPE.IMAGE):
        # ImageJ stores text labels and image overlays as RECT ROIs: their box is not ulcer
        # area, and a label beside an outline is a tracing error the reader must remove
        what = "a text label" if subtype == roifile.ROI_SUBTYPE.TEXT else "an image overlay"
        raise AnnotationError(f"{path}: ImageJ ROI {label} is {what}, not an area; remove it")
    if getattr(roi, "composite", False) and roi.multi_coordinates is not None:
        # Shape ROI paths are in ImageJ (corner) coordinates.
        return [_open_ring(c) - 0.5 for c in roi.coordinates(multi=True)]
    if roitype == rt.RECT:
        left, top, right, bottom = (float(v) for v in (roi.left, roi.top, roi.right, roi.bottom))
        if roi.subpixel_coordinates is None and roi.widthd > 0:
            left, top = float(roi.xd), float(roi.yd)
            right, bottom = left + float(roi.widthd), top + float(roi.heightd)
        arc = float(getattr(roi, "rounded_rect_arc_size", 0) or 0)
        if arc > 0:  # ImageJ's rounded rectangle: corners are quarter circles of diameter arc
            return [_rounded_rect(left, top, right, bottom, arc) - 0.5]
        rect = np.array([[left, top], [right, top], [right, bottom], [left, bottom]])
        return [rect - 0.5]
    if roitype == rt.OVAL:
        left, top, right, bottom = (float(v) for v in (roi.left, roi.top, roi.right, roi.bottom))
        if roi.widthd > 0:
            left, top = float(roi.xd), float(roi.yd)
            right, bottom = left + float(roi.widthd), top + float(roi.heightd)
        t = np.linspace(0.0, 2.0 * np.pi, _OVAL_VERTICES, endpoint=False)
        cx, cy = (left + right) / 2, (top + bottom) / 2
        rx, ry = (right - left) / 2, (bottom - top) / 2
        return [np.c_[cx + rx * np.cos(t), cy + ry * np.sin(t)] - 0.5]
    if roitype in (rt.POLYGON, rt.FREEHAND, rt.TRACED):
        if roi.subpixel_coordinates is not None:
            return [np.asarray(roi.subpixel_coordinates, dtype=np.float64) - 0.5]
        return [np.asarray(roi.coordinates(), dtype=np.float64) - 0.5]
    name = getattr(roitype, "name", str(roitype))
    raise AnnotationError(
        f"{path}: ImageJ ROI {label} of type {name} is not an area (use polygon, freehand or oval)"
    )


def _roi_label(roi: Any, index: int) -> str:
    """How a message names one ROI of a RoiSet: its position (1-based) and its name."""
    name = str(getattr(roi, "name", "") or "").strip()
    return f"#{index} {name!r}" if name else f"#{index}"


def _rounded_rect(left: float, top: float, right: float, bottom: float, diameter: float) -> np.ndarray:
    """Outline (ImageJ corner coordinates) of a rectangle whose corners are quarter circles of
    ``diameter`` (at most the shorter side): area w x h - (4 - pi) r²."""
    r = min(diameter, right - left, bottom - top) / 2
    n = _OVAL_VERTICES // 4
    corners = ((right - r, top + r, -0.5), (right - r, bottom - r, 0.0), (left + r, bottom - r, 0.5),
               (left + r, top + r, 1.0))  # fmt: skip
    arcs = []
    for cx, cy, start in corners:  # clockwise on screen (y down), from the top-right corner
        t = np.pi * (start + np.linspace(0.0, 0.5, n + 1))
        arcs.append(np.c_[cx + r * np.cos(t), cy + r * np.sin(t)])
    return np.vstack(arcs)


def _open_ring(coords: np.ndarray) -> np.ndarray:
    """Drop the repeated closing vertex of a path, if present."""
    c = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    return c[:-1] if len(c) > 1 and np.allclose(c[0], c[-1]) else c


def read_imagej_rois(path: str | Path, image_shape: tuple[int, int]) -> Annotation:
    """Read an ImageJ ``.roi`` file or RoiSet ``.zip``; the ulcer is the union of all ROIs."""
    import roifile

    path = Path(path)
    try:
        rois = roifile.ImagejRoi.fromfile(path)
    except Exception as err:
        raise AnnotationError(f"{path}: cannot read ImageJ ROI ({err})") from None
    if not isinstance(rois, list):
        rois = [rois]
    if not rois:
        raise AnnotationError(f"{path}: RoiSet contains no ROI")
    polygons: list[np.ndarray] = []
    groups: list[list[int]] = []
    for index, roi in enumerate(rois, 1):
        label = _roi_label(roi, index)
        try:
            shapes = _roi_polygons(roi, path, label)
        except AnnotationError:
            raise
        except Exception as err:  # e.g. roifile's NotImplementedError on a composite's curves
            raise AnnotationError(
                f"{path}: cannot read an ImageJ ROI's outline ({type(err).__name__}: {err}); "
                "convert it to a polygon in ImageJ (Edit > Selection > Interpolate)"
            ) from None
        # a composite's stray sub-paths (a lone moveto) are no outline; a ROI with no outline
        # of 3 points (a 2-point polygon) encloses nothing and is a tracing error, not 0 mm²
        polys = [p for p in shapes if len(p) >= 3]
        if not polys:
            points = max((len(p) for p in shapes), default=0)
            raise AnnotationError(
                f"{path}: ImageJ ROI {label} has {points} point(s), no area (an outline needs at least 3)"
            )
        for poly in polys:
            _check_simple(poly, path, f"ImageJ ROI {label}")
        groups.append(list(range(len(polygons), len(polygons) + len(polys))))
        polygons.extend(polys)
    return _vector_annotation(path, "roi", polygons, groups, image_shape)


def _vector_annotation(
    path: Path,
    kind: str,
    polygons: list[np.ndarray],
    groups: list[list[int]],
    image_shape: tuple[int, int],
) -> Annotation:
    _check_inside(polygons, image_shape, path)
    mask = np.zeros(image_shape[:2], dtype=np.uint8)
    for group in groups:
        mask |= rasterize_polygons([polygons[i] for i in group], image_shape[:2])
    return Annotation(path=path, kind=kind, mask=mask, polygons=polygons, groups=groups)


def read_labelme(path: str | Path, image_shape: tuple[int, int]) -> Annotation:
    """Read a LabelMe JSON file (polygon, rectangle and circle shapes; union of all shapes).

    No shapes at all is an empty annotation (0 mm², healed); shapes of which none is an area
    (only lines or points, a polygon of 2 points) are an error, not 0 mm².
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        shapes = doc["shapes"]
    except Exception as err:
        raise AnnotationError(f"{path}: not a LabelMe JSON file ({err})") from None
    h, w = image_shape[:2]
    try:
        ih, iw = doc.get("imageHeight"), doc.get("imageWidth")
        if ih is not None and iw is not None and (int(ih), int(iw)) != (h, w):
            size = f"{iw}x{ih} px differs from the photo ({w}x{h} px)"
            raise AnnotationError(f"{path}: LabelMe image size {size}")
        if not isinstance(shapes, list) or not all(isinstance(sh, dict) for sh in shapes):
            raise AnnotationError(f"{path}: LabelMe 'shapes' must be a list of shape objects")
        parsed = [
            (sh.get("shape_type") or "polygon", np.asarray(sh.get("points", []), np.float64).reshape(-1, 2))
            for sh in shapes
        ]
    except AnnotationError:
        raise
    except (TypeError, ValueError, AttributeError) as err:  # points that are not [x, y] numbers
        raise AnnotationError(f"{path}: malformed LabelMe shape ({err})") from None
    if any(not np.isfinite(pts).all() for _, pts in parsed):
        raise AnnotationError(f"{path}: LabelMe points must be finite numbers")
    polygons: list[np.ndarray] = []
    skipped: list[str] = []
    for number, (stype, pts) in enumerate(parsed, 1):
        if stype == "polygon":
            poly = pts
        elif stype == "rectangle" and len(pts) == 2:
            (x0, y0), (x1, y1) = pts
            poly = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        elif stype == "circle" and len(pts) == 2:
            r = float(np.hypot(*(pts[1] - pts[0])))
            t = np.linspace(0.0, 2.0 * np.pi, _OVAL_VERTICES, endpoint=False)
            poly = np.c_[pts[0, 0] + r * np.cos(t), pts[0, 1] + r * np.sin(t)]
        else:
            log.warning("%s: skipping LabelMe shape of type %r (not an area)", path, stype)
            skipped.append(f"{stype} of {len(pts)} point(s)")
            continue
        if len(poly) >= 3:
            _check_simple(poly, path, f"LabelMe shape #{number} ({stype})")
            polygons.append(poly)
        else:
            log.warning("%s: skipping LabelMe %s of %d point(s) (no area)", path, stype, len(poly))
            skipped.append(f"{stype} of {len(poly)} point(s)")
    if skipped and not polygons:
        raise AnnotationError(
            f"{path}: no LabelMe shape is an area ({', '.join(skipped[:5])}"
            f"{', ...' if len(skipped) > 5 else ''}); draw the ulcer as a "
            "polygon, rectangle or circle"
        )
    groups = [[i] for i in range(len(polygons))]
    return _vector_annotation(path, "labelme", polygons, groups, image_shape)


def read_annotation(path: str | Path, image_shape: tuple[int, int]) -> Annotation:
    """Read any supported annotation file (by suffix) for a photo of ``image_shape`` (h, w)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found")
    if suffix in MASK_SUFFIXES:
        return Annotation(path=path, kind="mask", mask=read_mask(path, image_shape))
    if suffix in ROI_SUFFIXES:
        return read_imagej_rois(path, image_shape)
    if suffix in LABELME_SUFFIXES:
        return read_labelme(path, image_shape)
    raise AnnotationError(
        f"{path}: unknown annotation type {suffix!r} (use {', '.join(ANNOTATION_SUFFIXES)})"
    )


def load_annotation(path: str | Path, image_shape: tuple[int, int]) -> np.ndarray:
    """Binary mask (uint8 0/255, photo frame, ``image_shape``) of any annotation file."""
    return read_annotation(path, image_shape).mask


# --------------------------------------------------------------------------- writers


def write_mask(path: str | Path, mask: np.ndarray) -> Path:
    """Write a mask as an 8-bit 0/255 PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255).save(path)
    return path


def write_imagej_roi(path: str | Path, polygons: Sequence[np.ndarray], name: str = "ulcer") -> Path:
    """Write photo-frame polygons as sub-pixel ImageJ ROIs.

    ``.roi``: one ROI (a composite shape, even-odd, when there are several polygons);
    ``.zip``: a RoiSet with one freehand ROI per polygon, or a single composite ROI when a
    polygon lies inside another (a hole), since RoiSet members are united on reading.
    """
    import roifile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    polys = [np.asarray(p, dtype=np.float64) + 0.5 for p in polygons if len(p) >= 3]
    if not polys:
        raise ValueError(f"{path}: no polygon to write")
    if path.suffix.lower() == ".zip":
        if path.exists():
            path.unlink()
        nested = any(
            _point_in_polygon(p[0], q) for i, p in enumerate(polys) for j, q in enumerate(polys) if i != j
        )
        if nested:
            _composite_roi(polys, name).tofile(path, name=name)
            return path
        for i, p in enumerate(polys):
            roifile.ImagejRoi.frompoints(p, name=f"{name}-{i + 1}").tofile(path)
        return path
    if len(polys) == 1:
        roi = roifile.ImagejRoi.frompoints(polys[0], name=name)
    else:
        roi = _composite_roi(polys, name)
    roi.tofile(path, mode="w")
    return path


def _composite_roi(polys: list[np.ndarray], name: str) -> Any:
    import roifile

    path_ops: list[float] = []
    for p in polys:
        path_ops += [0.0, float(p[0, 0]), float(p[0, 1])]
        for x, y in p[1:]:
            path_ops += [1.0, float(x), float(y)]
        path_ops.append(4.0)
    allpts = np.concatenate(polys)
    lo = np.floor(allpts.min(axis=0)).astype(int)
    hi = np.ceil(allpts.max(axis=0)).astype(int)
    roi = roifile.ImagejRoi(
        roitype=roifile.ROI_TYPE.RECT,
        name=name,
        left=int(lo[0]),
        top=int(lo[1]),
        right=int(hi[0]),
        bottom=int(hi[1]),
        multi_coordinates=np.asarray(path_ops, dtype=np.float32),
        shape_roi_size=len(path_ops),
    )
    return roi


def write_labelme(
    path: str | Path,
    polygons: Sequence[np.ndarray],
    image_shape: tuple[int, int],
    image_path: str = "",
    label: str = "ulcer",
) -> Path:
    """Write photo-frame polygons as a LabelMe JSON file (one polygon shape each)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "version": "5.4.1",
        "flags": {},
        "shapes": [
            {
                "label": label,
                "points": np.asarray(p, dtype=np.float64).round(3).tolist(),
                "group_id": None,
                "description": "",
                "shape_type": "polygon",
                "flags": {},
                "mask": None,
            }
            for p in polygons
            if len(p) >= 3
        ],
        "imagePath": image_path,
        "imageData": None,
        "imageHeight": int(image_shape[0]),
        "imageWidth": int(image_shape[1]),
    }
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def write_annotation(path: str | Path, mask: np.ndarray, image_path: str = "", name: str = "ulcer") -> Path:
    """Write a photo-frame mask in the format given by the suffix (.png/.roi/.zip/.json)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in MASK_SUFFIXES:
        return write_mask(path, mask)
    polygons = mask_to_polygons(mask)
    if suffix in ROI_SUFFIXES:
        return write_imagej_roi(path, polygons, name=name)
    if suffix in LABELME_SUFFIXES:
        return write_labelme(path, polygons, np.asarray(mask).shape, image_path=image_path)
    raise ValueError(f"{path}: unknown annotation type {suffix!r}")
