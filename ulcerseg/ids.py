"""IDs as the study stores them (subject, ulcer and reader names): one text rule for all inputs.

Folder names, manifest cells, config keys and reader names all reach the tables and screens;
two spellings that look alike must be one ID, and nothing invisible may tell two IDs apart.
"""

from __future__ import annotations

import unicodedata

__all__ = ["invisible_character", "nfc"]

# control, format (zero-width space, soft hyphen), line and paragraph separator, surrogate
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


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
