"""Blinding helpers: stable pseudonyms from a secret salt, metadata-free image encoding.

The salt lives in the study database (table ``review_secrets``, see
:func:`ulcerseg.store.review.get_or_create_salt`), so pseudonyms are stable for a
study but cannot be recomputed from public IDs without the database.
"""

from __future__ import annotations

import hashlib
import hmac
import io

import numpy as np
from PIL import Image

__all__ = [
    "encode_png_clean",
    "item_pseudonym",
    "subject_pseudonym",
    "ulcer_pseudonym",
]


def _digest(salt: str, *parts: str) -> str:
    msg = "\x1f".join(parts).encode("utf-8")
    return hmac.new(salt.encode("ascii"), msg, hashlib.sha256).hexdigest()


def subject_pseudonym(salt: str, subject_id: str) -> str:
    """Stable pseudonym of a subject, e.g. ``P-3F9A1C2B``."""
    return "P-" + _digest(salt, "subject", subject_id)[:8].upper()


def ulcer_pseudonym(salt: str, subject_id: str, ulcer_id: str) -> str:
    """Stable pseudonym of one ulcer of one subject, e.g. ``L-7C21D0``.

    Ulcer IDs may embed the subject ID or the finger, so they are pseudonymised too.
    """
    return "L-" + _digest(salt, "ulcer", subject_id, ulcer_id)[:6].upper()


def item_pseudonym(salt: str, photo_sha256: str) -> str:
    """Stable pseudonym of one photo, used as file name in blinded packages."""
    return "I-" + _digest(salt, "photo", photo_sha256)[:12].upper()


def encode_png_clean(pixels: np.ndarray, compress_level: int = 6) -> bytes:
    """PNG bytes built from raw pixels only: no EXIF, text chunks, ICC profile or dates.

    ``compress_level`` 0-9 (zlib): 1 is several times faster on large photos, pixels identical.
    """
    arr = np.ascontiguousarray(pixels)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    im = Image.fromarray(arr.astype(np.uint8))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False, compress_level=compress_level)
    return buf.getvalue()
