"""IDs as the study stores them (subject, ulcer and reader names): one text rule for all inputs.

Folder names, manifest cells, config keys and reader names all reach the tables and screens;
two spellings that look alike must be one ID, and nothing invisible may tell two IDs apart.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["id_order_key", "invisible_character", "nfc", "printable"]

# control, format (zero-width space, soft hyphen), line and paragraph separator, surrogate
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_DIGITS = re.compile(r"(\d+)")


def nfc(text: str) -> str:
    """An ID as the study stores it: Unicode NFC (composed accents), stripped."""
    return unicodedata.normalize("NFC", text).strip()


def invisible_character(text: str) -> str | None:
    """The first control or invisible character of ``text`` as ``'U+200B'``, else None.

    ``S0\\u200b01`` looks exactly like ``S001`` on every screen and table but would be another
    subject (or reader); a newline or tab splits the lines that list it.
    """
    for char in text:
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None


def printable(text: str) -> str:
    """``text`` with its control and invisible characters written as escapes (``\\n``,
    ``\\u202e``): a file name quoted in a one-line message stays on one line and shows what
    it holds (a name may hold any character but ``/`` and NUL)."""
    if invisible_character(text) is None:
        return text
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES
        else char
        for char in text
    )


def id_order_key(text: str) -> tuple[tuple[tuple[int, int, str], ...], str]:
    """Sort key of an ID in the order a person reads it: runs of digits compare as numbers
    (``U2`` before ``U10``), the rest as text; two spellings of one number (``U01``, ``U1``)
    are then told apart by the text itself, so the order is total and stable across runs."""
    parts = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in _DIGITS.split(text) if part
    )
    return parts, text
