"""Visit labels of the trial schedule and their study day."""

from __future__ import annotations

import re

from ulcerseg.errors import InputError

_VISIT_RE = re.compile(r"^(?P<unit>[DdWw])(?P<n>\d{1,3})$")


def visit_to_day(label: str) -> int:
    """Study day of a visit label: ``D<n>`` is day n, ``W<n>`` is day 7n (``W4`` -> 28)."""
    match = _VISIT_RE.match(label.strip())
    if match is None:
        raise InputError(f"visit label {label!r} is not of the form D<n> or W<n> (e.g. D0, W4)")
    n = int(match["n"])
    return n if match["unit"] in "Dd" else 7 * n


def is_visit_label(label: str) -> bool:
    """True when ``label`` is a valid visit label."""
    return _VISIT_RE.match(label.strip()) is not None
