from pathlib import Path

import pytest

from ulcerseg.config import DiscoveryConfig
from ulcerseg.discover import discover
from ulcerseg.errors import InputError
from ulcerseg.imageio import sha256_bytes
from ulcerseg.visits import visit_to_day


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folder_layout_gives_subject_visit_ulcer_and_day(tmp_path: Path) -> None:
    _touch(tmp_path / "S001" / "D0" / "R2_ulcer1.jpg", b"a")
    _touch(tmp_path / "S001" / "W4" / "R2_ulcer1.JPG", b"b")
    _touch(tmp_path / "S002" / "w12" / "L3_ulcer2.png", b"c")
    _touch(tmp_path / "S002" / "W12" / "notes.txt")
    _touch(tmp_path / "ground_truth.csv")
    _touch(tmp_path / "ground_truth_masks" / "S001_D0_R2_ulcer1.png")
    _touch(tmp_path / ".thumbnails" / "S001" / "D0" / "R2_ulcer1.jpg")
    cfg = DiscoveryConfig(ulcer_pattern=r"^(?P<finger>[LR]\d)_(?P<ulcer_id>ulcer\d+)$")
    found = discover(tmp_path, cfg)
    got = [(p.subject_id, p.visit, p.ulcer_id, p.study_day) for p in found.photos]
    assert got == [("S001", "D0", "ulcer1", 0), ("S001", "W4", "ulcer1", 28), ("S002", "W12", "ulcer2", 84)]
    assert found.photos[0].sha256 == sha256_bytes(b"a")
    assert found.problems == []


def test_misplaced_files_are_reported_not_guessed(tmp_path: Path) -> None:
    _touch(tmp_path / "S001" / "baseline" / "u1.jpg")
    _touch(tmp_path / "S001" / "u1.jpg")
    found = discover(tmp_path, DiscoveryConfig())
    assert found.photos == []
    reasons = " ".join(r for _, r in found.problems)
    assert "not a visit label" in reasons and "not in a <subject>/<visit>/ folder" in reasons


def test_manifest(tmp_path: Path) -> None:
    _touch(tmp_path / "photos" / "a.jpg", b"a")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "subject,ulcer,visit,path,date\nS9,U1,W2,photos/a.jpg,2026-01-15\nS9,U1,X1,photos/a.jpg,\n"
    )
    found = discover(manifest, DiscoveryConfig())
    assert [(p.subject_id, p.ulcer_id, p.study_day, p.photo_date) for p in found.photos] == [
        ("S9", "U1", 14, "2026-01-15")
    ]
    assert found.relative(found.photos[0].path) == "photos/a.jpg"
    assert "bad visit label" in found.problems[0][1]


def test_manifest_header_names_ignore_case_and_spaces_and_take_the_table_names(tmp_path: Path) -> None:
    # a manifest saved from a spreadsheet ("Subject", " Visit ") or built from measurements.csv's
    # own column names (subject_id, ulcer_id, file, photo_date) is read as the documented columns
    _touch(tmp_path / "photos" / "a.jpg", b"a")
    for header in ("Subject, Ulcer , VISIT,Path,Date", "subject_id,ulcer_id,visit,file,photo_date"):
        manifest = tmp_path / "m.csv"
        manifest.write_text(f"{header}\nS9,U1,W2,photos/a.jpg,2026-01-15\n")
        found = discover(manifest, DiscoveryConfig())
        assert [(p.subject_id, p.ulcer_id, p.visit, p.photo_date) for p in found.photos] == [
            ("S9", "U1", "W2", "2026-01-15")
        ], header
    manifest.write_text("subject,subject_id,ulcer,visit,path\nS9,S9,U1,W2,photos/a.jpg\n")
    with pytest.raises(InputError, match=r"m\.csv: column\(s\) subject appear twice in the header"):
        discover(manifest, DiscoveryConfig())


def test_manifest_missing_columns(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("subject,path\n")
    with pytest.raises(InputError, match=r"m\.csv: manifest lacks column\(s\) ulcer, visit"):
        discover(manifest, DiscoveryConfig())


def test_non_utf8_manifest_is_one_line_error(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("subject,ulcer,visit,path\nMüller,U1,D0,a.jpg\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"m\.csv: not a UTF-8 text file"):
        discover(manifest, DiscoveryConfig())


def test_missing_folder_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope: no such photo folder or manifest"):
        discover(tmp_path / "nope", DiscoveryConfig())


@pytest.mark.parametrize(("label", "day"), [("D0", 0), ("D3", 3), ("W2", 14), ("w16", 112)])
def test_visit_to_day(label: str, day: int) -> None:
    assert visit_to_day(label) == day


def test_bad_visit_label() -> None:
    with pytest.raises(InputError, match="'Week4'"):
        visit_to_day("Week4")


def test_manifest_cardinal_column_marks_every_photo_of_the_designated_ulcer(tmp_path: Path) -> None:
    for name in "abcd":
        _touch(tmp_path / f"{name}.jpg", name.encode())
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "subject,ulcer,visit,path,Cardinal\n"
        "S1,U1,D0,a.jpg,\n"
        "S1,U2,D0,b.jpg,Yes\n"  # marked on its baseline row only
        "S1,U2,W4,c.jpg,no\n"
        "S2,U1,D0,d.jpg,0\n"
    )
    found = discover(manifest, DiscoveryConfig())
    got = {(p.subject_id, p.ulcer_id, p.visit): p.cardinal for p in found.photos}
    assert got == {("S1", "U1", "D0"): False, ("S1", "U2", "D0"): True, ("S1", "U2", "W4"): True,
                   ("S2", "U1", "D0"): False}  # fmt: skip
    # the tables' own name for the column (healing.csv's is_cardinal) is read as cardinal too
    table_named = _touch(
        tmp_path / "tables.csv", b"subject_id,ulcer_id,visit,file,is_cardinal\nS1,U2,D0,b.jpg,1\n"
    )
    assert [p.cardinal for p in discover(table_named, DiscoveryConfig()).photos] == [True]
    # a folder layout (or a manifest without the column) designates nothing
    plain = _touch(tmp_path / "plain.csv", b"subject,ulcer,visit,path\nS1,U2,D0,b.jpg\n")
    assert [p.cardinal for p in discover(plain, DiscoveryConfig()).photos] == [False]


def test_a_cardinal_mark_on_a_skipped_row_still_designates_and_one_with_no_photo_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The designation is the trial's, not the photo's: a mark on a row skipped for its empty
    path marks the ulcer's other photos (mutation round 7, D6); a designated ulcer none of whose
    rows gave a photo is said, though its subject has photos of another ulcer (D8)."""
    _touch(tmp_path / "a.jpg", b"a")
    _touch(tmp_path / "b.jpg", b"b")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "subject,ulcer,visit,path,cardinal\nS1,U1,D0,,yes\nS1,U1,W4,a.jpg,\nS1,U2,W4,b.jpg,\n"
    )
    found = discover(manifest, DiscoveryConfig())
    assert {p.ulcer_id: p.cardinal for p in found.photos} == {"U1": True, "U2": False}
    manifest.write_text("subject,ulcer,visit,path,cardinal\nS1,U1,D0,,yes\nS1,U2,W4,b.jpg,\n")
    with caplog.at_level("WARNING"):
        found = discover(manifest, DiscoveryConfig())
    assert [p.cardinal for p in found.photos] == [False]
    assert "cardinal ulcer U1 of subject S1 has no photo here" in caplog.text


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("S1,U1,D0,a.jpg,yes\nS1,U2,W4,b.jpg,x\n", "subject S1 has two cardinal ulcers, U1 (line 2) and U2"),
        ("S1,U1,D0,a.jpg,maybe\n", "manifest.csv:2: cardinal 'maybe' is neither yes"),
        ("S1,,D0,a.jpg,1\n", "cardinal is marked on a row without subject or ulcer"),
    ],
)
def test_manifest_cardinal_marks_that_cannot_be_trusted_are_one_line_errors(
    tmp_path: Path, rows: str, message: str
) -> None:
    # the designation picks the ulcer of the trial's primary endpoint: never guessed
    _touch(tmp_path / "a.jpg", b"a")
    _touch(tmp_path / "b.jpg", b"b")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("subject,ulcer,visit,path,cardinal\n" + rows)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        discover(manifest, DiscoveryConfig())
