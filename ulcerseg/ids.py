"""IDs as the study stores them (subject, ulcer and reader names): one text rule for all inputs.

Folder names, manifest cells, config keys and reader names all reach the tables and screens;
two spellings that look alike must be one ID, and nothing invisible may tell two IDs apart.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["id_order_key", "invisible_character", "lookalike_character", "nfc", "printable"]

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


def lookalike_character(text: str) -> str | None:
    """The first character of a subject or ulcer ID that can pass for another, described
    (``"U+0405 CYRILLIC CAPITAL LETTER DZE, not a Latin letter"``), else None.

    Trial IDs are read on screens, printouts and CRFs: ``Ѕ001`` (Cyrillic Ѕ) or ``S0０1``
    (a full-width digit) look exactly like ``S001`` but would be other subjects. Refused: a
    compatibility form (full-width, superscript, ligature: what NFKC would change), a letter of
    another script than Latin (accented Latin letters are fine), a digit other than 0-9.
    """
    for char in text:
        code = f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed')}"
        if unicodedata.normalize("NFKC", char) != char:
            return f"{code}, a compatibility form of {unicodedata.normalize('NFKC', char)!r}"
        category = unicodedata.category(char)
        if category.startswith("L") and not unicodedata.name(char, "").startswith("LATIN "):
            return f"{code}, not a Latin letter"
        if category == "Nd" and not char.isascii():
            return f"{code}, not a digit 0-9"
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
