"""Convert a folder of photos + annotations (PNG masks, ImageJ ROI / RoiSet zip, LabelMe JSON)
to the dataset convention (``images/`` + ``masks/`` + ``dataset.yaml``)."""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ulcerseg.errors import DatasetError, UlcersegError
from ulcerseg.tables import require_new_or_empty
from ulcerseg.training.dataset import (
    DATASET_FILE,
    IMAGE_SUFFIXES,
    MAX_PHOTO_PX_PER_MM,
    MIN_PHOTO_PX_PER_MM,
    read_groups_csv,
)

log = logging.getLogger(__name__)

#: Annotation suffixes tried for each photo stem, in this order.
ANNOTATION_ORDER = (".png", ".tif", ".tiff", ".bmp", ".roi", ".zip", ".json")
MISSING_POLICIES = ("error", "skip", "empty")


@dataclass
class ImportResult:
    """What :func:`import_dataset` wrote."""

    out_dir: Path
    n_images: int
    kinds: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    #: (path, why) of every entry of the image and annotation folders that is neither an
    #: imported photo nor its annotation: nothing is left out without a word
    ignored: list[tuple[Path, str]] = field(default_factory=list)


def find_annotation(
    stem: str, folder: Path, exclude: Path | None = None, entries: list[Path] | None = None
) -> Path | None:
    """The annotation file ``folder/<stem><suffix>`` (also ``<stem>_mask.png``), or None.

    The suffix matches in any case (``a.PNG``, ``a.Roi``: before, such an annotation was left
    out and, with ``--missing empty``, its photo imported with an empty mask); the stem as
    written. Two of them for one photo (``a.png`` and ``a.roi`` with other outlines) is a
    DatasetError naming both, never a pick (before, the first in ``ANNOTATION_ORDER`` won
    without a word). ``entries``: the folder's listing, when the caller has it (one listing
    for a whole import instead of one per photo).
    """
    tried = [f"{stem}{suffix}" for suffix in ANNOTATION_ORDER]
    tried.insert(1, f"{stem}_mask.png")  # the names tried, in this order
    listing = entries if entries is not None else list(folder.iterdir())
    # the suffix in any case, the stem as written
    ranked = [(tried.index(key), p) for p in listing if (key := p.stem + p.suffix.lower()) in tried]
    found = [
        p for _rank, p in sorted(ranked)
        if p.is_file() and (exclude is None or p.resolve() != exclude.resolve())
    ]  # fmt: skip
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DatasetError(f"{folder}: {names} all annotate {stem!r}; keep one")
    return found[0] if found else None


def _photos_beside_their_masks(files: list[Path]) -> list[Path]:
    """The photos among image files that share a folder with their masks: of ``g.jpg`` and
    ``g.png``, the PNG is the JPEG's annotation (a PNG photo's mask must be ``g_mask.png``).

    Several files of one stem of which not exactly one can be the photo is a DatasetError,
    never a guess: a mask read as a photo would be imported with an empty mask.
    """
    by_stem: dict[str, list[Path]] = {}
    for path in files:
        by_stem.setdefault(path.stem, []).append(path)
    photos = []
    for stem, same in by_stem.items():
        if len(same) == 1:
            photos.append(same[0])
            continue
        not_masks = [p for p in same if p.suffix.lower() not in ANNOTATION_ORDER]
        if len(not_masks) != 1:
            names = ", ".join(p.name for p in same)
            raise DatasetError(
                f"{same[0].parent}: {names} share the stem {stem!r} and none is clearly the photo; "
                "name masks <stem>_mask.png or give them their own folder (--annotations)"
            )
        photos.append(not_masks[0])
    return sorted(photos)


def _refuse_shared_stems(photos: list[Path]) -> None:
    """Photos are stored and matched with their masks by stem: two photos of one stem
    (``g.jpg`` and ``g.png``) would share one annotation and one mask file, and the second
    written would silently replace the first (a rotated JPEG is written as ``g.png``)."""
    by_stem: dict[str, list[Path]] = {}
    for photo in photos:
        by_stem.setdefault(photo.stem, []).append(photo)
    for stem, same in by_stem.items():
        if len(same) > 1:
            names = ", ".join(p.name for p in same)
            raise DatasetError(f"{same[0].parent}: photos {names} share the stem {stem!r} (one mask "
                               "per stem); rename one")  # fmt: skip


def import_dataset(
    images_dir: str | Path,
    out_dir: str | Path,
    annotations_dir: str | Path | None = None,
    name: str | None = None,
    px_per_mm: float | None = None,
    missing: str = "error",
    groups_csv: str | Path | None = None,
    stem_column: str = "stem",
    group_column: str = "group",
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Write ``out_dir/images``, ``out_dir/masks`` (0/255 PNG) and ``dataset.yaml``.

    Each photo ``<stem>.<ext>`` in ``images_dir`` is matched with ``<stem>.png|.tif|.roi|.zip|
    .json`` (or ``<stem>_mask.png``) in ``annotations_dir`` (default: ``images_dir``).
    Annotations are read in the photo frame (EXIF orientation applied) by
    :mod:`ulcerseg.annotations`. ``missing`` = ``error`` | ``skip`` | ``empty`` (empty mask:
    a photo with no ulcer). Photos whose EXIF orientation is not upright, and HEIC/AVIF photos
    (slow to decode at every epoch), are written as PNG in the photo frame; others are copied
    byte for byte. A photo or annotation that fails half-way
    removes what the call wrote (no partial dataset is left).
    """
    from ulcerseg.annotations import load_annotation
    from ulcerseg.imageio import decode_rgb, decoded_by_pillow, write_png

    images_dir = Path(images_dir)
    ann_dir = Path(annotations_dir) if annotations_dir is not None else images_dir
    out = Path(out_dir)
    if missing not in MISSING_POLICIES:
        raise DatasetError(f"missing: unknown policy {missing!r} (use {', '.join(MISSING_POLICIES)})")
    if not images_dir.is_dir():
        raise DatasetError(f"{images_dir}: image folder does not exist")
    if not ann_dir.is_dir():
        raise DatasetError(f"{ann_dir}: annotation folder does not exist")
    photos = sorted(
        p
        for p in images_dir.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_mask")
    )
    if ann_dir.resolve() == images_dir.resolve():
        photos = _photos_beside_their_masks(photos)
    if not photos:
        raise DatasetError(f"{images_dir}: no images found (empty folder)")
    _refuse_shared_stems(photos)
    # match every photo first, so a missing annotation fails before anything is written
    pairs: list[tuple[Path, Path | None]] = []
    skipped: list[str] = []
    ann_entries = list(ann_dir.iterdir())
    for photo in photos:
        ann = find_annotation(photo.stem, ann_dir, exclude=photo, entries=ann_entries)
        if ann is None and missing == "error":
            raise DatasetError(
                f"{photo}: no annotation {ann_dir / photo.stem}"
                "{.png,_mask.png,.roi,.zip,.json} (use --missing skip|empty)"
            )
        if ann is None and missing == "skip":
            skipped.append(photo.stem)
        else:
            pairs.append((photo, ann))
    # the range load_dataset accepts: else the import wrote a dataset no command could read
    if px_per_mm is not None and not (
        math.isfinite(px_per_mm) and MIN_PHOTO_PX_PER_MM <= px_per_mm <= MAX_PHOTO_PX_PER_MM
    ):
        raise DatasetError(
            f"px_per_mm: must be a finite number {MIN_PHOTO_PX_PER_MM:g}-{MAX_PHOTO_PX_PER_MM:g} "
            f"(the photos' px per mm), got {px_per_mm}"
        )
    if groups_csv is not None:  # every imported image needs its group, checked before writing
        groups = read_groups_csv(groups_csv, stem_column, group_column)
        lacking = [photo.stem for photo, _ann in pairs if photo.stem not in groups]
        if lacking:
            raise DatasetError(f"{groups_csv}: no group for {len(lacking)} of {len(pairs)} images "
                               f"(e.g. {lacking[0]!r})")  # fmt: skip
    # before, only out/images was checked: a measured study's folder (its masks/ beside the
    # imported ones), the photo folder itself or a dataset half-written were written into
    require_new_or_empty(out, DatasetError)
    made = [d for d in (out, out / "images", out / "masks") if not d.exists()]
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)

    result = ImportResult(
        out, 0, skipped=skipped, ignored=_ignored_entries(images_dir, ann_dir, photos, pairs)
    )
    for path, why in result.ignored:
        log.info("%s: ignored (%s)", path, why)
    written: list[Path] = []
    try:
        for photo, ann in pairs:
            data = photo.read_bytes()
            rgb = decode_rgb(photo, data)
            shape = rgb.shape[:2]
            mask = load_annotation(ann, shape) if ann is not None else np.zeros(shape, np.uint8)
            kind = ann.suffix.lower().lstrip(".") if ann is not None else "empty"
            result.kinds[kind] = result.kinds.get(kind, 0) + 1
            if _upright(photo) and not decoded_by_pillow(data):  # HEIC/AVIF: slow to decode
                written.append(out / "images" / photo.name)
                shutil.copyfile(photo, written[-1])
            else:
                written.append(out / "images" / f"{photo.stem}.png")
                write_png(written[-1], rgb)
            written.append(out / "masks" / f"{photo.stem}.png")
            write_png(written[-1], ((mask > 0) * 255).astype(np.uint8))
            result.n_images += 1
            if progress:
                progress(1)
    except BaseException:
        # a bad photo or annotation half-way leaves no partial dataset (which `train` would
        # take without the photos after it, and which made a new import refuse the folder)
        for path in written:
            path.unlink(missing_ok=True)
        for folder in reversed(made):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    meta: dict[str, object] = {"name": name or out.resolve().name, "source": str(images_dir)}
    if px_per_mm is not None:
        meta["px_per_mm"] = float(px_per_mm)
    if groups_csv is not None:
        shutil.copyfile(groups_csv, out / "groups.csv")
        meta["groups"] = {"csv": "groups.csv", "stem_column": stem_column, "group_column": group_column}
    (out / DATASET_FILE).write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    log.info("imported %d images into %s (%s)", result.n_images, out, result.kinds)
    return result


def _ignored_entries(
    images_dir: Path, ann_dir: Path, photos: list[Path], pairs: list[tuple[Path, Path | None]]
) -> list[tuple[Path, str]]:
    """(path, why) of the entries of the image and annotation folders that the import does not
    use: subfolders (not walked), files of no known format, annotations of no photo."""
    used = {p.resolve() for p in photos} | {a.resolve() for _p, a in pairs if a is not None}
    one_folder = ann_dir.resolve() == images_dir.resolve()
    ignored: list[tuple[Path, str]] = []
    for folder, holds_photos, holds_annotations in (
        [(images_dir, True, True)] if one_folder else [(images_dir, True, False), (ann_dir, False, True)]
    ):
        for entry in sorted(folder.iterdir()):
            if entry.resolve() in used:
                continue
            suffix = entry.suffix.lower()
            if entry.is_dir():
                why = "a folder: subfolders are not read"
            elif holds_annotations and (suffix in ANNOTATION_ORDER or entry.stem.endswith("_mask")):
                why = "an annotation of no photo"
            elif holds_photos and suffix in IMAGE_SUFFIXES:
                why = "an image named as a mask (<stem>_mask), not read as a photo"
            else:
                why = "not a photo or annotation of a known format"
            ignored.append((entry, why))
    return ignored


def _upright(path: Path) -> bool:
    from ulcerseg.imageio import exif_orientation

    try:
        return exif_orientation(path) == 1
    except UlcersegError:  # unreadable header: decode_rgb already succeeded, re-encode to be safe
        return False
