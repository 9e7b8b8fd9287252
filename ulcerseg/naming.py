"""Names of the operator-side files of a photo (``overlays/``, ``masks/``, ``rectified/``).

``<subject>_<ulcer>_<visit>_<hash8>.png``: the study team finds a subject's photos by name, and
the first 8 hex digits of the photo's SHA-256 keep two photos of one visit apart. Each field is
made filesystem-safe (letters, digits, ``-`` and ``.`` only; ``_`` separates the fields; an ID
that had to change gets a short hash of itself, :func:`id_component`). These
names carry subject IDs: the blinded package and the review server never show them (they use
pseudonyms and photo keys).
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["id_component", "photo_file_stem", "safe_component"]

_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
_MAX_COMPONENT = 40


def safe_component(text: str) -> str:
    """``text`` as one filesystem-safe name field: runs of other characters become ``-``.

    Leading dots and dashes are dropped (no hidden files, no option-like names); an empty
    result is ``x``. At most 40 characters.
    """
    out = _UNSAFE.sub("-", str(text).strip()).lstrip(".-")[:_MAX_COMPONENT].rstrip(".-")
    return out or "x"


def id_component(text: str) -> str:
    """An ID as a name field: :func:`safe_component`, followed by ``-h`` and 6 hex digits of the
    ID's SHA-256 whenever that changed it (a character replaced or dropped, a long ID cut).

    Without them two IDs could share a name: ``S_001`` and ``S-001``, ``Zoé`` and ``Zo``, two
    50-character IDs that differ at the end; one photo's files then overwrote the other's, or a
    person finding a subject's photos by name found another subject's.
    """
    safe = safe_component(text)
    if safe == text:
        return safe
    return f"{safe}-h{hashlib.sha256(str(text).encode('utf-8')).hexdigest()[:6]}"


def photo_file_stem(subject_id: str, ulcer_id: str, visit: str, photo_sha256: str) -> str:
    """``<subject>_<ulcer>_<visit>_<hash8>`` for a photo's operator-side files (no extension)."""
    ids = (id_component(subject_id), id_component(ulcer_id), safe_component(visit))
    return "_".join([*ids, safe_component(photo_sha256[:8].lower())])
