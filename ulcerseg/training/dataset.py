"""Segmentation dataset convention: ``images/`` + ``masks/`` (same stem) + optional dataset.yaml.

``dataset.yaml`` (all keys optional)::

    name: fuseg            # defaults to the folder name
    px_per_mm: 10.0        # physical scale of the images, if known
    groups:                # grouped splits (e.g. one group per subject)
      csv: groups.csv      # relative to the dataset folder
      stem_column: stem
      group_column: subject_id

Masks are single-channel PNGs, 0 = background and 255 (or 1) = ulcer.
"""

from __future__ import annotations

import csv
import difflib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from ulcerseg import imageio
from ulcerseg.config import MAX_SCALE, MIN_SCALE, Check, build_dataclass, read_yaml_mapping
from ulcerseg.errors import ConfigError, DatasetError, ImageReadError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".heic", ".heif", ".avif")
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")
DATASET_FILE = "dataset.yaml"

# px_per_mm of a dataset's photos (their own resolution, not the measuring grid's 2-50 px/mm):
# below 1 px/mm a digital ulcer of a few mm is a few pixels, nothing to annotate; 1000 is
# `dataset import --px-per-mm`'s limit (a 48 MP phone sensor filling 8 mm, closer than any
# phone focuses). 0.001 made evaluate ask for a 1.2 TB image
MIN_PHOTO_PX_PER_MM, MAX_PHOTO_PX_PER_MM = 1.0, 1000.0


@dataclass(frozen=True)
class GroupsCsv:
    """``groups: {csv: ..., stem_column: ..., group_column: ...}`` in dataset.yaml."""

    csv: str
    stem_column: str = "stem"
    group_column: str = "group"


@dataclass(frozen=True)
class DatasetMeta:
    """``dataset.yaml``, validated by :func:`ulcerseg.config.build_dataclass` (all keys optional).

    ``groups`` is either a :class:`GroupsCsv` mapping or a mapping stem -> group. The other
    keys are provenance written by the importers (kept as they are); unknown keys are logged.
    """

    name: str | None = None
    px_per_mm: Annotated[float, Check(ge=MIN_PHOTO_PX_PER_MM, le=MAX_PHOTO_PX_PER_MM)] | None = None
    groups: dict[str, str] | None = None
    source: str | None = None
    description: str | None = None
    frame: str | None = None
    seed: int | None = None
    n: int | None = None
    n_images: int | None = None
    images: list[Any] = field(default_factory=list)
    package_version: str | None = None  # of the ulcerseg that wrote it (review export-training)
    healing_config_sha256: str | None = None  # the review rules that chose its photos


@dataclass(frozen=True)
class Sample:
    """One image/mask pair of a dataset."""

    stem: str
    image_path: Path
    mask_path: Path
    group: str


@dataclass(frozen=True)
class SegDataset:
    """A validated dataset folder. ``px_per_mm`` is None when the physical scale is unknown."""

    root: Path
    name: str
    px_per_mm: float | None
    samples: tuple[Sample, ...]
    has_groups: bool = False
    meta: DatasetMeta = field(default_factory=DatasetMeta)

    def __len__(self) -> int:
        return len(self.samples)

    def by_stem(self) -> dict[str, Sample]:
        return {s.stem: s for s in self.samples}

    def scale_to(self, px_per_mm: float) -> float:
        """Resize factor that brings the images to ``px_per_mm`` (a model's); 1 when the
        dataset's scale is unknown. DatasetError naming dataset.yaml and both scales when the
        factor is outside ``evaluate --scale``'s limits."""
        if self.px_per_mm is None:
            return 1.0
        factor = px_per_mm / self.px_per_mm
        if not MIN_SCALE <= factor <= MAX_SCALE:
            raise DatasetError(
                f"{self.root / DATASET_FILE}: px_per_mm {self.px_per_mm:g} against the model's "
                f"{px_per_mm:g} px/mm is a resize factor of {factor:g}, outside "
                f"{MIN_SCALE:g}-{MAX_SCALE:g} (check px_per_mm, or give --scale)"
            )
        return factor


def read_image(path: Path) -> np.ndarray:
    """Read an RGB uint8 H×W×3 image (:func:`ulcerseg.imageio.read_rgb`); DatasetError names the file."""
    try:
        return imageio.read_rgb(path)
    except ImageReadError as err:
        raise DatasetError(str(err)) from None


def read_mask(path: Path) -> np.ndarray:
    """Read a binary mask as uint8 H×W in {0, 1} (:func:`ulcerseg.imageio.read_mask`); DatasetError."""
    try:
        return imageio.read_mask(path).astype(np.uint8)
    except ImageReadError as err:
        raise DatasetError(str(err)) from None


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, from the file header (pixels not decoded)."""
    try:
        return imageio.image_size(path)
    except ImageReadError as err:
        raise DatasetError(str(err)) from None


def _refuse_misspelt_keys(raw: Mapping[str, Any], yaml_path: Path) -> None:
    """Other tools' keys are kept (logged), but one that is nearly a known key is a typo whose
    value would be lost: ``px_per_nm: 10`` left the scale unknown with only a warning."""
    known = [f.name for f in fields(DatasetMeta)]
    for key in raw:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.8)
        if close:
            raise DatasetError(f"{yaml_path}: unknown key {key!r}; did you mean {close[0]!r}?")


def read_dataset_meta(yaml_path: Path) -> tuple[DatasetMeta, GroupsCsv | None]:
    """Validated ``dataset.yaml`` and its groups CSV spec (None for an inline mapping or none)."""
    try:
        raw = read_yaml_mapping(yaml_path)
        _refuse_misspelt_keys(raw, yaml_path)
        meta = build_dataclass(DatasetMeta, raw, str(yaml_path), unknown_keys="warn")
        spec = meta.groups or {}
        if "csv" not in spec:
            return meta, None
        return meta, build_dataclass(GroupsCsv, dict(spec), str(yaml_path), prefix="groups.")
    except ConfigError as err:
        raise DatasetError(str(err)) from None


def read_groups_csv(
    path: str | Path, stem_column: str = "stem", group_column: str = "group"
) -> dict[str, str]:
    """Image stem -> group (e.g. subject) from a CSV; DatasetError naming the file for a file
    that is missing, not UTF-8, without the columns, without rows, with an empty group or with
    a stem given two groups (each would quietly weaken the grouped split)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: groups CSV not found")
    groups: dict[str, str] = {}
    try:
        # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark, which would
        # otherwise become part of the first column's name ("missing column 'stem'")
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            for col in (stem_column, group_column):
                if col not in fields:
                    raise DatasetError(f"{path}: missing column {col!r}")
            for row in reader:
                stem, group = (row.get(stem_column) or "").strip(), (row.get(group_column) or "").strip()
                if not stem:
                    continue  # a blank line
                if not group:
                    raise DatasetError(f"{path}: line {reader.line_num}: no group for image stem {stem!r}")
                if groups.setdefault(stem, group) != group:
                    raise DatasetError(f"{path}: image stem {stem!r} given two groups "
                                       f"({groups[stem]!r} and {group!r})")  # fmt: skip
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not UTF-8 text (save it as CSV UTF-8)") from None
    except csv.Error as err:
        raise DatasetError(f"{path}: not a readable CSV ({err})") from None
    if not groups:
        raise DatasetError(f"{path}: no rows (one group per image stem expected)")
    return groups


def _read_groups(root: Path, meta: DatasetMeta, spec: GroupsCsv | None, yaml_path: Path) -> dict[str, str]:
    if spec is None:
        return dict(meta.groups or {})
    csv_path = root / spec.csv
    if not csv_path.is_file():
        raise DatasetError(f"{yaml_path}: key 'groups.csv': file {csv_path} not found")
    return read_groups_csv(csv_path, spec.stem_column, spec.group_column)


def _left_out_reason(path: Path, suffixes: tuple[str, ...]) -> str:
    if path.is_dir():
        return "a folder: subfolders are not read"
    return f"not of a known format ({', '.join(suffixes)})"


def _log_left_out(img_dir: Path, mask_dir: Path, images: list[Path], masks: dict[str, Path]) -> None:
    """Warn (one line each) about what the dataset leaves out of images/ and masks/: a .gif or
    .jfif photo and a mask whose image is missing or unreadable vanished without a word, as
    ``dataset import`` names what it leaves out. Which files are used does not change."""
    used = set(images)
    for p in sorted(img_dir.iterdir()):
        if p not in used:
            log.warning("ignored: %s: %s", p, _left_out_reason(p, IMAGE_SUFFIXES))
    stems = {p.stem for p in images}
    for p in sorted(mask_dir.iterdir()):
        if p.suffix.lower() not in MASK_SUFFIXES:
            log.warning("ignored: %s: %s", p, _left_out_reason(p, MASK_SUFFIXES))
        elif p.stem not in stems:
            log.warning("ignored: %s: a mask of no image (no images/%s.*)", p, p.stem)


def dataset_dirs(data_dirs: Sequence[str | Path] | str | Path) -> list[Path]:
    """The dataset folders of a ``data_dirs`` argument: one folder (a str or Path, which was
    iterated: a str letter by letter, a Path a TypeError) or a sequence of them (``--data``)."""
    return [Path(data_dirs)] if isinstance(data_dirs, str | Path) else [Path(d) for d in data_dirs]


def load_dataset(root: str | Path, check_masks: bool = True) -> SegDataset:
    """Scan and validate a dataset folder.

    Raises DatasetError (naming the file) for: missing folder, no images, a missing mask, several
    masks of one image (``a.png`` and ``a.tif``), an image/mask size mismatch and (with
    ``check_masks``) a non-binary mask.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    img_dir, mask_dir = root / "images", root / "masks"
    if not img_dir.is_dir():
        raise DatasetError(f"{img_dir}: missing images/ folder (expected images/ and masks/)")
    if not mask_dir.is_dir():
        raise DatasetError(f"{mask_dir}: missing masks/ folder (expected images/ and masks/)")
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise DatasetError(f"{img_dir}: no images found (empty dataset)")
    masks: dict[str, Path] = {}
    doubled: dict[str, list[Path]] = {}
    for p in sorted(mask_dir.iterdir()):
        if p.suffix.lower() in MASK_SUFFIXES:
            if p.stem in masks:
                doubled.setdefault(p.stem, [masks[p.stem]]).append(p)
            masks[p.stem] = p
    _log_left_out(img_dir, mask_dir, images, masks)

    meta, groups_spec = DatasetMeta(), None
    yaml_path = root / DATASET_FILE
    if yaml_path.is_file():
        meta, groups_spec = read_dataset_meta(yaml_path)
    name = meta.name or root.resolve().name
    px_per_mm = meta.px_per_mm
    groups = _read_groups(root, meta, groups_spec, yaml_path)

    samples = []
    seen: set[str] = set()
    for img in images:
        if img.stem in seen:
            raise DatasetError(f"{img}: duplicate image stem {img.stem!r}")
        seen.add(img.stem)
        mask = masks.get(img.stem)
        if img.stem in doubled:  # which one was taken followed the folder's listing order
            names = ", ".join(m.name for m in doubled[img.stem])
            raise DatasetError(f"{img}: several masks {names} in {mask_dir}; keep one")
        if mask is None:
            raise DatasetError(f"{img}: missing mask {mask_dir / (img.stem + '.png')}")
        isize, msize = _image_size(img), _image_size(mask)
        if isize != msize:
            raise DatasetError(
                f"{mask}: mask size {msize[0]}×{msize[1]} does not match image "
                f"{img.name} size {isize[0]}×{isize[1]}"
            )
        if check_masks:
            read_mask(mask)
        if groups and img.stem not in groups:
            raise DatasetError(f"{yaml_path}: groups: no group for image stem {img.stem!r}")
        samples.append(Sample(img.stem, img, mask, groups.get(img.stem, img.stem)))
    log.info("dataset %s: %d samples (px_per_mm=%s)", name, len(samples), px_per_mm)
    return SegDataset(root, name, px_per_mm, tuple(samples), bool(groups), meta)


def split_dataset(
    ds: SegDataset, val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Seeded train/validation split; by group when the dataset has groups.

    Samples sharing a group (e.g. a subject) never land on both sides.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"val_fraction: must be in [0, 1), got {val_fraction}")
    keys = sorted({s.group for s in ds.samples})
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(keys))
    n_val = round(len(keys) * val_fraction)
    if val_fraction > 0 and n_val == 0 and len(keys) > 1:
        n_val = 1
    val_groups = {keys[i] for i in order[:n_val]}
    train = [s for s in ds.samples if s.group not in val_groups]
    val = [s for s in ds.samples if s.group in val_groups]
    return train, val
