"""Names of the operator-side files of a photo (``overlays/``, ``masks/``, ``rectified/``).

``<subject>_<ulcer>_<visit>_<hash8>.png``: the study team finds a subject's photos by name, and
the first 8 hex digits of the photo's SHA-256 keep two photos of one visit apart. Each field is
made filesystem-safe (letters, digits, ``-`` and ``.`` only; ``_`` separates the fields). These
names carry subject IDs: the blinded package and the review server never show them (they use
pseudonyms and photo keys).
"""

from __future__ import annotations

import re

__all__ = ["photo_file_stem", "safe_component"]

_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
_MAX_COMPONENT = 40


def safe_component(text: str) -> str:
    """``text`` as one filesystem-safe name field: runs of other characters become ``-``.

    Leading dots and dashes are dropped (no hidden files, no option-like names); an empty
    result is ``x``. At most 40 characters.
    """
    out = _UNSAFE.sub("-", str(text).strip()).lstrip(".-")[:_MAX_COMPONENT].rstrip(".-")
    return out or "x"


def photo_file_stem(subject_id: str, ulcer_id: str, visit: str, photo_sha256: str) -> str:
    """``<subject>_<ulcer>_<visit>_<hash8>`` for a photo's operator-side files (no extension)."""
    parts = (subject_id, ulcer_id, visit)
    return "_".join([*(safe_component(p) for p in parts), safe_component(photo_sha256[:8].lower())])
