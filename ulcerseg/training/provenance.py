"""What a model card records about its training data: dataset names and content hashes.

No machine paths: a card must describe the same data wherever the dataset folder lives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ulcerseg.segmentation.model import file_sha256
from ulcerseg.training.dataset import DATASET_FILE, SegDataset

__all__ = ["HeldOut", "dataset_sha256"]


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


@dataclass(frozen=True)
class HeldOut:
    """The validation stems a model card keeps out, per dataset name and per content hash."""

    by_name: dict[str, set[str]] = field(default_factory=dict)
    by_sha256: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def from_training(cls, training: Mapping[str, Any]) -> HeldOut:
        """From a card's ``training`` record (its ``data`` list)."""
        records = [r for r in training.get("data", []) or [] if isinstance(r, Mapping)]
        return cls(
            {str(r.get("name")): set(r.get("val_stems") or []) for r in records},
            {str(r["sha256"]): set(r.get("val_stems") or []) for r in records if r.get("sha256")},
        )

    def stems(self, ds: SegDataset) -> set[str]:
        """Held-out stems of ``ds``: by its name, else by its content (a dataset named after
        its folder, whose folder was renamed, is the same data under another name)."""
        if ds.name in self.by_name:
            return self.by_name[ds.name]
        if self.by_sha256:
            return self.by_sha256.get(dataset_sha256(ds), set())
        return set()
