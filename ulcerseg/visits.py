"""Visit labels of the trial schedule and their study day.

A label is ``D<n>`` (day n) or ``W<n>`` (week n), case-insensitive, with 1-3 ASCII digits; its
canonical form (:func:`canonical_visit`) is the upper-case unit and the number without leading
zeros, so ``w04`` and ``W4`` are one visit.
"""

from __future__ import annotations

import re

from ulcerseg.errors import InputError

# [0-9], not \d: \d also matches other scripts' digits ("W４"), which would make a second
# spelling of a visit (or one nobody typed on purpose)
_VISIT_RE = re.compile(r"(?P<unit>[DdWw])(?P<n>[0-9]{1,3})")


def _match(label: str) -> re.Match[str]:
    match = _VISIT_RE.fullmatch(label.strip())
    if match is None:
        raise InputError(f"visit label {label!r} is not of the form D<n> or W<n> (e.g. D0, W4)")
    return match


def canonical_visit(label: str) -> str:
    """Canonical form of a visit label: ``w04`` -> ``W4``, ``d0`` -> ``D0``."""
    match = _match(label)
    return f"{match['unit'].upper()}{int(match['n'])}"


def visit_to_day(label: str) -> int:
    """Study day of a visit label: ``D<n>`` is day n, ``W<n>`` is day 7n (``W4`` -> 28)."""
    match = _match(label)
    n = int(match["n"])
    return n if match["unit"] in "Dd" else 7 * n


def is_visit_label(label: str) -> bool:
    """True when ``label`` is a valid visit label."""
    return _VISIT_RE.fullmatch(label.strip()) is not None
