"""Pseudonyms (review.blinding): keyed by the study's secret salt, per subject and ulcer, and
free of the IDs they stand for."""

from __future__ import annotations

import re

from ulcerseg.review.blinding import item_pseudonym, subject_pseudonym, ulcer_pseudonym

SHA = "3f" * 32


def test_pseudonyms_depend_on_the_salt_so_public_ids_do_not_give_them() -> None:
    """Without the study's salt nobody can recompute a pseudonym from a subject ID: another
    salt (or none) gives another pseudonym of the same subject, ulcer and photo."""
    for make in (
        lambda salt: subject_pseudonym(salt, "S001"),
        lambda salt: ulcer_pseudonym(salt, "S001", "U1"),
        lambda salt: item_pseudonym(salt, SHA),
    ):
        assert make("salt-a") == make("salt-a")  # stable within a study
        assert len({make("salt-a"), make("salt-b"), make("")}) == 3


def test_an_ulcer_pseudonym_is_per_subject_and_names_neither_id() -> None:
    """U1 of two subjects are two ulcers: they get two pseudonyms, and neither shows the
    subject's or the ulcer's ID (an ulcer ID may embed the subject ID or the finger)."""
    a = ulcer_pseudonym("salt", "S001", "S001-R2-U1")
    b = ulcer_pseudonym("salt", "S002", "S001-R2-U1")
    assert a != b
    for pseudonym in (a, b):
        assert re.fullmatch(r"L-[0-9A-F]{6}", pseudonym)
    assert re.fullmatch(r"P-[0-9A-F]{8}", subject_pseudonym("salt", "S001"))
    assert re.fullmatch(r"I-[0-9A-F]{12}", item_pseudonym("salt", SHA))
