"""What a model card records about its training data: dataset names and content hashes.

No machine paths: a card must describe the same data wherever the dataset folder lives.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ulcerseg.segmentation.model import file_sha256
from ulcerseg.training.dataset import DATASET_FILE, SegDataset

__all__ = ["dataset_sha256"]


def dataset_sha256(ds: SegDataset) -> str:
    """SHA-256 of a dataset's content, independent of where its folder lives.

    The hash runs over the sorted lines ``<relative path>\\t<file SHA-256>\\n`` of every image
    and mask of the dataset and its ``dataset.yaml`` (when present), paths relative to the
    dataset folder in POSIX form. Renaming, editing, adding or removing a file changes it.
    """
    root = Path(ds.root)
    files = [p for s in ds.samples for p in (s.image_path, s.mask_path)]
    if (root / DATASET_FILE).is_file():
        files.append(root / DATASET_FILE)
    lines = sorted(f"{Path(p).relative_to(root).as_posix()}\t{file_sha256(p)}\n" for p in files)
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
