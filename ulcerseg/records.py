"""Typed records passed between pipeline stages.

Coordinate frames used throughout ulcerseg:

- *photo frame*: pixel coordinates (x right, y down) of the decoded photo after EXIF
  orientation has been applied; pixel centres at integer coordinates.
- *marker plane*: millimetres in the plane of the printed calibration marker; origin at the
  marker's top-left corner (ArUco corner 0), x towards corner 1, y towards corner 3.
- *rectified frame*: pixels of an image resampled onto the marker plane at a fixed
  ``px_per_mm``; pixel (u, v) is the marker-plane point
  ``(origin_mm[0] + u / px_per_mm, origin_mm[1] + v / px_per_mm)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path


class Flag(StrEnum):
    """Stable quality reason codes. Any flag puts a photo in ``needs_review``."""

    UNREADABLE_FILE = "unreadable_file"
    NO_MARKER = "no_marker"
    AMBIGUOUS_MARKER = "ambiguous_marker"
    MARKER_TOO_OBLIQUE = "marker_too_oblique"
    MARKER_DISTORTED = "marker_distorted"  # marker edges not straight: bent sticker or blur
    LOW_RESOLUTION = "low_resolution"
    GRAYSCALE = "grayscale"
    # the file holds more than one full-size image (a multi-page TIFF, a HEIC burst): the first
    # is measured, and whether it is the visit's photo is for the assessor to see
    SEVERAL_IMAGES = "several_images"
    MARKER_FAR_FROM_ULCER = "marker_far_from_ulcer"
    BLURRED = "blurred"
    OVEREXPOSED = "overexposed"
    UNDEREXPOSED = "underexposed"
    LOW_CONFIDENCE = "low_confidence"
    MASK_AT_BORDER = "mask_at_border"
    NO_ULCER_FOUND = "no_ulcer_found"
    # nothing found, but much of where the ulcer can be (near the marker) is outside the photo:
    # "no ulcer" is then no evidence of healing
    SEARCH_INCOMPLETE = "search_incomplete"
    AMBIGUOUS_ULCER = "ambiguous_ulcer"  # a second candidate region scores close to the chosen one
    # much of the measured outline is far darker than the skin around it (black eschar, dry
    # crust): the network outlines such beds too small, and a change from or to such a visit
    # can be one that is not there (README, mixed beds)
    DARK_BED = "dark_bed"
    PROCESSING_ERROR = "processing_error"
    WRITE_ERROR = "write_error"  # the output files could not be written: retried by the next run
    DUPLICATE_PHOTO = "duplicate_photo"  # the same bytes are also at another path of the study
    MISSING_FILE = "missing_file"  # the photo's path no longer exists under the study root
    # the file's bytes changed between discovery and measuring (replaced or still being copied):
    # not measured, retried by the next run
    FILE_CHANGED = "file_changed"
    # found by a run that stopped (killed, disk full) before measuring it: status unmeasured,
    # no values; the next run measures it
    NOT_MEASURED = "not_measured"


class SkipReason(StrEnum):
    """Why a file under the study root (or a manifest row) did not become a photo row.

    ``FAILING`` reasons are files that look like trial photos but could not be placed: they are
    listed on stderr and in ``run.json``, counted in the summary and make ``measure`` exit 1.
    The others (hidden, not a photo, the output folder) are only listed in ``run.json``.
    """

    UNSUPPORTED_FORMAT = "unsupported_format"  # an image format ulcerseg does not read (.bmp, .dng)
    UNEXPECTED_LAYOUT = "unexpected_layout"  # not at <subject>/<visit>/<photo>
    UNKNOWN_VISIT = "unknown_visit"  # visit folder/label neither D<n>/W<n> nor a configured alias
    BAD_FILE_NAME = "bad_file_name"  # file stem does not match discovery.ulcer_pattern
    MANIFEST_ROW = "manifest_row"  # a manifest row that cannot be used (empty path or ID, a folder)
    DUPLICATE_ROW = "duplicate_row"  # a manifest row repeating an earlier one (same path, same IDs)
    HIDDEN = "hidden"  # matches discovery.ignore (.*, _*, ...)
    NOT_A_PHOTO = "not_a_photo"  # not an image file (notes, spreadsheets...)
    OUTPUT_FOLDER = "output_folder"  # the output folder itself, inside the input folder


FAILING_SKIP_REASONS = frozenset(
    {
        SkipReason.UNSUPPORTED_FORMAT,
        SkipReason.UNEXPECTED_LAYOUT,
        SkipReason.UNKNOWN_VISIT,
        SkipReason.BAD_FILE_NAME,
        SkipReason.MANIFEST_ROW,
    }
)


@dataclass(frozen=True)
class PhotoRecord:
    """One photo of one ulcer at one visit, as found by discovery."""

    path: Path
    subject_id: str
    ulcer_id: str
    visit: str
    study_day: int | None
    sha256: str
    photo_date: str | None = None  # ISO 8601 date from EXIF DateTimeOriginal or manifest
    # the manifest's ``cardinal`` column marks this photo's ulcer as the subject's cardinal one
    # (on every photo of that ulcer); a folder layout designates nothing
    cardinal: bool = False


@dataclass(frozen=True)
class Calibration:
    """Marker-based calibration of one photo.

    ``homography`` maps photo-frame px to marker-plane mm (row-major 3x3).
    ``mm_per_px`` is the local scale at the marker centre (geometric mean of both axes).
    ``tilt_deg`` is the angle between the marker plane and the image plane.
    ``residual_px`` is the RMS distance (photo px) of the marker's edge points from the straight
    lines fitted to its four sides (:func:`ulcerseg.calibration.marker.refine_corners`): a bent,
    blurred or lens-distorted marker; NaN when the edges could not be fitted (four corners fit a
    homography exactly, so a corner reprojection error would always be 0).
    ``bend`` is how far the marker is from flat, from where the edges between its cells lie
    (:func:`ulcerseg.calibration.marker.cell_bend`): about the relative scale error at the marker
    of a sticker bent over a rounded finger, which straight outer edges do not show; NaN when
    not measured (cells too small). It decides ``marker_distorted`` and is stored with a measured
    photo's quality signals (``QualitySignals.marker_bend``).
    """

    marker_id: int
    corners_px: tuple[tuple[float, float], ...]
    homography: tuple[float, ...]
    mm_per_px: float
    tilt_deg: float
    residual_px: float
    side_mm: float
    n_markers_found: int = 1
    bend: float = 0.0


@dataclass(frozen=True)
class Measurement:
    """Geometry of the ulcer mask in the marker plane (mm, mm²)."""

    area_mm2: float
    perimeter_mm: float
    length_mm: float
    width_mm: float
    n_components: int
    mean_probability: float
    area_low_mm2: float  # area at threshold + delta (tighter mask)
    area_high_mm2: float  # area at threshold - delta (looser mask)
    marker_distance_mm: float | None  # marker centre to ulcer centroid


@dataclass(frozen=True)
class QualitySignals:
    """Per-photo numbers that predict area error; the quality flags are decided on them
    (``ulcerseg.quality``). Stored with each measurement as JSON (``Study.quality_signals``).

    Exposure and sharpness are measured in the ulcer's neighbourhood (rectified frame, 0-255
    luma; ``clipped_high`` the fraction blown out to white, every channel >= 250, since 0.3.2);
    ``band_ratio`` is (area at threshold - delta minus at + delta) / area (NaN without an ulcer);
    ``boundary_margin`` the mean |probability - threshold| on the mask's boundary;
    ``ambiguity`` the second candidate's score over the best's; ``on_body`` the fraction of the
    mask on the skin mask; ``tta_disagreement`` 1 - Dice of the crop's and its mirror image's
    masks; ``search_coverage`` the fraction of the ulcer's site (a disc around the marker) in
    the photo; ``area_mm2`` the measured area; ``unconfirmed_candidate_mm2``, when no ulcer
    was found, the area (mm²) of the largest candidate region (probability at or above
    ``coarse_threshold``) of the search-region passes that no full-resolution pass confirmed;
    ``dark_bed_fraction`` the fraction of the mask far darker than the skin around it
    (:func:`ulcerseg.quality.dark_bed_fraction`); ``marker_white_luma`` the median luma of the
    marker's white paper (0-255; NaN where it is not in the photo), the exposure reference;
    ``marker_bend`` the calibration's :attr:`Calibration.bend` (NaN: not measured).
    """

    sharpness: float
    clipped_high: float
    clipped_low: float
    mean_luma: float
    mean_probability: float
    band_ratio: float
    boundary_margin: float
    ambiguity: float
    on_body: float
    tta_disagreement: float
    area_mm2: float
    search_coverage: float = 1.0
    unconfirmed_candidate_mm2: float = 0.0
    dark_bed_fraction: float = 0.0
    marker_white_luma: float = float("nan")
    marker_bend: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class PhotoResult:
    """Everything the pipeline learned about one photo; the unit written to the store."""

    photo: PhotoRecord
    status: str  # "measured" | "failed"
    calibration: Calibration | None = None
    measurement: Measurement | None = None
    flags: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    image_size: tuple[int, int] | None = None  # (width, height) px, photo frame
    stage_seconds: dict[str, float] = field(default_factory=dict)
    overlay_path: Path | None = None
    rectified_path: Path | None = None  # photo resampled onto the rectified frame (PNG)
    mask_path: Path | None = None  # ulcer mask in the rectified frame (PNG)
    rectified_origin_mm: tuple[float, float] | None = None
    rectified_px_per_mm: float | None = None
    retryable: bool = False  # failed for a reason of the environment (I/O, permission): retry next run
    signals: QualitySignals | None = None  # quality.quality_signals (stored as JSON)

    @property
    def needs_review(self) -> bool:
        return bool(self.flags) or self.status != "measured"
