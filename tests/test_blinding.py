"""What blinds an assessor: pseudonyms (review.blinding) keyed by the study's secret salt, per
subject and ulcer, free of the IDs they stand for; each reader's own order; no visit label
unless configured."""

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


def test_each_reader_has_an_own_order_reproducible_whatever_the_input_order() -> None:
    """Readers' orders are independent (seeded by seed, salt and reader name): two readers do
    not review the same sequence; one reader gets the same order again, from any input order."""
    from types import SimpleNamespace

    from ulcerseg.review.items import reader_order

    items = [SimpleNamespace(photo_sha256=f"{i:x}" * 64) for i in range(10)]
    first = [it.photo_sha256 for it in reader_order(items, "Dr A", "salt", 7)]
    again = [it.photo_sha256 for it in reader_order(items[::-1], "Dr A", "salt", 7)]
    other = [it.photo_sha256 for it in reader_order(items, "Dr B", "salt", 7)]
    assert first == again and sorted(first) == sorted(it.photo_sha256 for it in items)
    assert other != first and sorted(other) == sorted(first)


def test_a_manual_scale_item_shows_its_visit_only_when_configured(tmp_path) -> None:
    from ulcerseg.healing.config import ReviewSettings
    from ulcerseg.review.items import ManualItem

    item = ManualItem("0" * 16, "0" * 64, "S001", "U1", "W4", "P-1", "L-1", tmp_path / "p.png", 64, 48, ())
    hidden = item.public(ReviewSettings(show_visit_label=False))
    assert "visit" not in hidden and "S001" not in str(hidden) and "W4" not in str(hidden)
    assert item.public(ReviewSettings(show_visit_label=True))["visit"] == "W4"
