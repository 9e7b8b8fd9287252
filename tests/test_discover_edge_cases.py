"""Discovery edge cases: symbolic links, names with junk after the extension, visit label
spellings and manifest rows with Unicode line separators. Every file is a photo or a listed
reason; none is dropped or placed at another visit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ulcerseg.config import DiscoveryConfig
from ulcerseg.discover import Discovery, discover
from ulcerseg.errors import ConfigError, InputError
from ulcerseg.visits import canonical_visit, is_visit_label, visit_to_day


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _problems(found: Discovery) -> dict[str, str]:
    return {found.relative(p): r for p, r in found.problems}


# --- 1. symbolic links ---------------------------------------------------------------------------
def test_symlinked_subject_and_visit_folders_are_failing_skips_not_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "study", tmp_path / "elsewhere"
    _touch(root / "S1" / "D0" / "U1.jpg", b"a")
    _touch(outside / "S9" / "W4" / "U1.jpg", b"b")
    (root / "S2").symlink_to(outside / "S9", target_is_directory=True)  # a subject folder
    (root / "S1" / "W4").symlink_to(outside / "S9" / "W4", target_is_directory=True)  # a visit folder
    (root / "S3").symlink_to(tmp_path / "gone")  # dangling: may have been a subject folder
    found = discover(root, DiscoveryConfig())
    assert [found.relative(p.path) for p in found.photos] == ["S1/D0/U1.jpg"]
    problems = _problems(found)
    assert set(problems) == {"S1/W4", "S2", "S3"}
    for rel in ("S1/W4", "S2"):
        assert (
            problems[rel] == "unexpected_layout: symbolic link: not followed; copy the folder into the study"
        )
    assert problems["S3"].startswith("unexpected_layout: symbolic link to a missing target")
    assert all(item.failing for item in found.problems)


def test_hidden_symlinked_folder_stays_hidden_and_linked_photo_file_is_measured(tmp_path: Path) -> None:
    root = tmp_path / "study"
    _touch(tmp_path / "elsewhere" / "x.jpg")
    _touch(root / "S1" / "D0" / "U1.jpg")
    (root / ".cache").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (root / "S1" / "D0" / "U2.jpg").symlink_to(tmp_path / "elsewhere" / "x.jpg")  # unchanged behaviour
    found = discover(root, DiscoveryConfig())
    assert [p.ulcer_id for p in found.photos] == ["U1", "U2"]
    assert found.problems == []
    assert [found.relative(p) for p, _ in found.ignored] == [".cache"]


# --- 2. spaces or dots after the extension -------------------------------------------------------
@pytest.mark.parametrize("name", ["U1.jpg ", "U1.jpg.", "U1.JPG . ", "U1.png\u00a0", "U1.heic "])
def test_junk_after_an_image_extension_is_a_failing_bad_file_name(tmp_path: Path, name: str) -> None:
    _touch(tmp_path / "S1" / "W4" / name)
    found = discover(tmp_path, DiscoveryConfig())
    assert found.photos == [] and found.ignored == []
    [item] = found.problems
    assert item.path.name == name
    assert item.code == "bad_file_name" and item.failing
    assert "after the extension" in item.reason and repr(name.rstrip(" .\u00a0")) in item.reason


def test_junk_after_another_extension_is_still_not_a_photo(tmp_path: Path) -> None:
    _touch(tmp_path / "S1" / "W4" / "notes.txt ")
    _touch(tmp_path / "S1" / "W4" / "README.")
    found = discover(tmp_path, DiscoveryConfig())
    assert found.problems == []
    assert [i.code for i in found.ignored] == ["not_a_photo", "not_a_photo"]


# --- 3. visit labels -----------------------------------------------------------------------------
def test_visit_labels_are_canonical_one_visit_per_day(tmp_path: Path) -> None:
    _touch(tmp_path / "S1" / "W04" / "U1.jpg", b"a")
    _touch(tmp_path / "S2" / "w4" / "U1.jpg", b"b")
    _touch(tmp_path / "S3" / "d0" / "U1.jpg", b"c")
    _touch(tmp_path / "S4" / "D000" / "U1.jpg", b"d")
    _touch(tmp_path / "S5" / "W012" / "U1.jpg", b"e")
    found = discover(tmp_path, DiscoveryConfig())
    got = [(p.subject_id, p.visit, p.study_day) for p in found.photos]
    assert got == [("S1", "W4", 28), ("S2", "W4", 28), ("S3", "D0", 0), ("S4", "D0", 0), ("S5", "W12", 84)]
    assert found.problems == []


@pytest.mark.parametrize("label", ["W\uff14", "D\u0664", "W\u0e54", "W\U0001d7dc", "W1234"])
def test_non_ascii_digits_are_not_a_visit(tmp_path: Path, label: str) -> None:
    assert not is_visit_label(label)
    for fn in (canonical_visit, visit_to_day):
        with pytest.raises(InputError, match="not of the form D<n> or W<n>"):
            fn(label)
    _touch(tmp_path / "S1" / label / "U1.jpg")
    found = discover(tmp_path, DiscoveryConfig())
    assert found.photos == []
    assert [i.code for i in found.problems] == ["unknown_visit"]


def test_canonical_visit() -> None:
    assert [canonical_visit(v) for v in ("D0", "d0", "d00", " W04 ", "w4", "W100")] == [
        "D0", "D0", "D0", "W4", "W4", "W100"
    ]  # fmt: skip


def test_visit_aliases_apply_to_every_spelling_and_give_canonical_labels(tmp_path: Path) -> None:
    _touch(tmp_path / "S1" / "Baseline" / "U1.jpg", b"a")
    _touch(tmp_path / "S1" / "W04" / "U1.jpg", b"b")
    _touch(tmp_path / "S2" / "w4" / "U1.jpg", b"c")
    _touch(tmp_path / "S2" / "W2" / "U1.jpg", b"d")
    cfg = DiscoveryConfig(visit_aliases={"baseline": "d00", "W4": "D30", "week2": "W02"})
    found = discover(tmp_path, cfg)
    got = [(p.subject_id, p.visit, p.study_day) for p in found.photos]
    assert got == [("S1", "D0", 0), ("S1", "D30", 30), ("S2", "W2", 14), ("S2", "D30", 30)]


def test_visit_aliases_naming_one_label_twice_differently_are_a_config_error(tmp_path: Path) -> None:
    _touch(tmp_path / "S1" / "W4" / "U1.jpg")
    with pytest.raises(ConfigError, match=r"visit_aliases\.W04.*'D28'.*'D30'"):
        discover(tmp_path, DiscoveryConfig(visit_aliases={"w4": "D28", "W04": "D30"}))


def test_manifest_visit_labels_are_canonical(tmp_path: Path) -> None:
    _touch(tmp_path / "a.jpg", b"a")
    _touch(tmp_path / "b.jpg", b"b")
    _touch(tmp_path / "c.jpg", b"c")
    manifest = tmp_path / "m.csv"
    manifest.write_text("subject,ulcer,visit,path\nS1,U1,W04,a.jpg\nS1,U1,w4,b.jpg\nS1,U1,W\uff14,c.jpg\n")
    found = discover(manifest, DiscoveryConfig())
    assert [(p.visit, p.study_day) for p in found.photos] == [("W4", 28), ("W4", 28)]
    assert [i.code for i in found.problems] == ["unknown_visit"]


# --- 4. manifest rows ----------------------------------------------------------------------------
@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"])
def test_unicode_line_separators_inside_cells_do_not_split_rows(tmp_path: Path, sep: str) -> None:
    _touch(tmp_path / "p" / "a.jpg", b"a")
    _touch(tmp_path / "p" / "b.jpg", b"b")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        f'subject,ulcer,visit,note,path\nS1,U1,D0,crust{sep}edge,p/a.jpg\nS1,U1,W4,"crust{sep}edge",p/b.jpg\n',
        encoding="utf-8",
        newline="",
    )
    found = discover(manifest, DiscoveryConfig())
    assert [(p.visit, found.relative(p.path)) for p in found.photos] == [("D0", "p/a.jpg"), ("W4", "p/b.jpg")]
    assert found.problems == [] and found.ignored == []


def test_manifest_errors_name_the_physical_line(tmp_path: Path) -> None:
    _touch(tmp_path / "a.jpg", b"a")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        'subject,ulcer,visit,path,date,note\nS1,U1,D0,a.jpg,,"two\nlines"\n\nS1,U2,D0,a.jpg,2025-13-45,\n',
        newline="",
    )
    with pytest.raises(InputError, match=r"m\.csv:5: date '2025-13-45'"):
        discover(manifest, DiscoveryConfig())


def test_manifest_skip_and_repeat_lines_are_physical_lines(tmp_path: Path) -> None:
    _touch(tmp_path / "a.jpg", b"a")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "subject,ulcer,visit,path\r\n\r\nS1,U1,D0,a.jpg\r\nS1,U1,X9,a.jpg\r\nS1,U1,D0,a.jpg\r\n", newline=""
    )
    found = discover(manifest, DiscoveryConfig())
    assert len(found.photos) == 1
    assert [r for _, r in found.problems] == [f"unknown_visit: {manifest}:4: bad visit label 'X9'"]
    assert [r for _, r in found.ignored] == [f"duplicate_row: {manifest}:5: repeats line 3"]


def test_healing_schedule_labels_are_canonical_as_discovery_reports_them() -> None:
    """Discovery reports folder W04 as W4: a healing schedule written W04 (or w4) names the
    same visit instead of a visit that never appears (missing_visit)."""
    from ulcerseg.healing.config import healing_config_from_dict

    cfg = healing_config_from_dict({"schedule": ["d0", "W02", "w4"], "baseline_visit": "D00"})
    assert cfg.schedule == ("D0", "W2", "W4") and cfg.baseline_visit == "D0"
    with pytest.raises(ConfigError, match="twice"):
        healing_config_from_dict({"schedule": ["W4", "W04"]})


def test_a_name_that_is_not_utf8_is_a_failing_skip_not_a_crash(tmp_path: Path) -> None:
    """A photo named with bytes of another encoding (``U\\xff.jpg``) stopped the whole measure run
    with a UnicodeEncodeError when its IDs were stored; it is now listed as a bad file name."""
    import os

    visit = tmp_path / "S1" / "D0"
    visit.mkdir(parents=True)
    (visit / "U1.jpg").write_bytes(b"x")
    with open(os.path.join(os.fsencode(visit), b"U\xff.jpg"), "wb") as fh:
        fh.write(b"y")
    found = discover(tmp_path, DiscoveryConfig())
    assert [p.ulcer_id for p in found.photos] == ["U1"]
    (problem,) = found.problems
    assert problem[1].startswith("bad_file_name: name is not valid UTF-8")


def test_photos_inside_the_output_folder_are_listed_not_silently_left_out(tmp_path: Path) -> None:
    """`measure T -o T/S1/W4`: the output folder is not read, but the visit's photos in it are
    failing skips (the run exits 1 naming them), also once study.sqlite exists there."""
    for visit in ("D0", "W4"):
        (tmp_path / "S1" / visit).mkdir(parents=True)
        (tmp_path / "S1" / visit / "U1.jpg").write_bytes(visit.encode())
    out = tmp_path / "S1" / "W4"
    (out / "masks").mkdir()
    (out / "masks" / "S1_U1_D0_0123.png").write_bytes(b"m")  # ours: not listed
    (out / "study.sqlite").write_bytes(b"")
    found = discover(tmp_path, DiscoveryConfig(), exclude=out)
    assert [p.visit for p in found.photos] == ["D0"]
    (problem,) = found.problems
    assert problem[0] == out / "U1.jpg" and "inside the output folder" in problem[1]
    assert problem[1].startswith("unexpected_layout")


def test_an_earlier_output_folder_inside_the_photo_folder_is_not_read(tmp_path: Path) -> None:
    """`measure T -o T/out_v1`, later `-o T/out_v2`: out_v1's overlays and masks were read as
    photos (dozens of unknown_visit lines, exit 1). A folder holding a study.sqlite is listed as
    an output folder and not read; a visit's photos left in it are still failing skips."""
    (tmp_path / "S1" / "D0").mkdir(parents=True)
    (tmp_path / "S1" / "D0" / "U1.jpg").write_bytes(b"a")
    old = tmp_path / "out_v1"
    (old / "overlays").mkdir(parents=True)
    (old / "superseded" / "masks").mkdir(parents=True)
    (old / "overlays" / "S1_U1_D0_0123.png").write_bytes(b"o")
    (old / "superseded" / "masks" / "S1_U1_D0_0123.png").write_bytes(b"m")
    (old / "study.sqlite").write_bytes(b"")
    (old / "W4").mkdir()
    (old / "W4" / "U1.jpg").write_bytes(b"w")  # a photo someone saved there: never dropped silently
    found = discover(tmp_path, DiscoveryConfig(), exclude=tmp_path / "out_v2")
    assert [p.visit for p in found.photos] == ["D0"]
    assert [(path.name, reason.split(":")[0]) for path, reason in found.problems] == [
        ("U1.jpg", "unexpected_layout")
    ]
    assert any(
        path == old and "output folder (holds study.sqlite)" in reason for path, reason in found.ignored
    )


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("marker", {"ids": [99999]}, "marker.ids [99999] are not in DICT_4X4_50"),
        ("discovery", {"extensions": ["jpg"]}, "discovery.extensions must list extensions"),
        ("discovery", {"extensions": []}, "discovery.extensions must list extensions"),
    ],
)
def test_config_refuses_marker_ids_outside_the_dictionary_and_odd_extensions(
    section: str, values: dict, message: str
) -> None:
    """Marker ID 99999 made every photo fail as no_marker (exit 1), extensions without a dot a
    misleading "no photos found": both are one config error now."""
    from ulcerseg.config import config_from_dict

    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_dict({section: values})


def test_a_blank_subject_folder_is_a_failing_skip_not_the_subject_id_empty(tmp_path: Path) -> None:
    """A subject folder named " " gave photos the subject ID "" (two such folders: one subject);
    the manifest refuses an empty ID, and the folder layout now lists it as a failing skip."""
    _touch(tmp_path / " " / "W4" / "U1.jpg", b"a")
    _touch(tmp_path / "\u3000" / "W4" / "U1.jpg", b"b")
    _touch(tmp_path / "S1" / "W4" / "U1.jpg", b"c")
    found = discover(tmp_path, DiscoveryConfig())
    assert [p.subject_id for p in found.photos] == ["S1"]
    problems = _problems(found)
    assert sorted(problems) == [" /W4/U1.jpg", "\u3000/W4/U1.jpg"]
    assert all(r.startswith("unexpected_layout: subject folder name") for r in problems.values())


def test_a_named_pipe_with_a_photo_name_is_a_failing_skip_not_a_hang(tmp_path: Path) -> None:
    """Discovery hashed a FIFO called ``U1.jpg`` by reading it, which waits for a writer
    forever (``measure`` hung); folder and manifest list it without opening it."""
    import os
    import threading

    _touch(tmp_path / "S1" / "W4" / "U1.jpg", b"a")
    fifo = tmp_path / "S1" / "W4" / "U2.jpg"
    os.mkfifo(fifo)
    manifest = tmp_path / "m.csv"
    manifest.write_text("subject,ulcer,visit,path\nS1,U1,W4,S1/W4/U1.jpg\nS1,U2,W4,S1/W4/U2.jpg\n")
    for source in (tmp_path, manifest):
        got: list[Discovery] = []
        worker = threading.Thread(
            target=lambda s=source, out=got: out.append(discover(s, DiscoveryConfig())), daemon=True
        )
        worker.start()
        worker.join(10)
        if worker.is_alive():  # unblock the reader so the thread ends, then fail
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        assert got, f"discover({source.name}) blocked on the named pipe"
        (found,) = got
        assert [p.ulcer_id for p in found.photos] == ["U1"]
        (problem,) = found.problems
        assert problem[0] == fifo and "not a regular file" in problem[1]


@pytest.mark.parametrize("char", ["\u200b", "\u00ad", "\n", "\t", "\x7f", "\u2028"])
def test_an_invisible_or_control_character_in_an_id_is_a_failing_skip(tmp_path: Path, char: str) -> None:
    """A subject folder "S0<zero-width space>01" became a subject ID that every screen and table
    shows as S001 but that is another subject; a newline split the lines listing the photo."""
    _touch(tmp_path / "S001" / "W4" / "U1.jpg", b"a")
    _touch(tmp_path / f"S0{char}01" / "W4" / "U1.jpg", b"b")
    _touch(tmp_path / "S002" / "W4" / f"U{char}1.jpg", b"c")
    found = discover(tmp_path, DiscoveryConfig())
    assert [p.subject_id for p in found.photos] == ["S001"]
    problems = _problems(found)
    assert len(problems) == 2
    code = f"U+{ord(char):04X}"
    assert all(r == f"bad_file_name: name holds an invisible or control character ({code}); rename it"
               for r in problems.values())  # fmt: skip
    manifest = tmp_path / "m.csv"
    manifest.write_text(f'subject,ulcer,visit,path\nS001,U1,W4,S001/W4/U1.jpg\n"S0{char}01",U1,W4,x.jpg\n')
    _touch(tmp_path / "x.jpg", b"d")
    found = discover(manifest, DiscoveryConfig())
    assert [p.subject_id for p in found.photos] == ["S001"]
    assert [r.code for r in found.problems] == ["manifest_row"]
    assert code in found.problems[0].reason


# --- 5. identity of a photo (mutation check round 2) --------------------------------------------
@pytest.mark.parametrize(("label", "day"), [("d3", 3), ("D3", 3), ("w2", 14), ("d14", 14)])
def test_a_lower_case_unit_is_the_same_unit(label: str, day: int) -> None:
    """``d3`` is day 3 and ``w2`` day 14 (7 x 2), as their upper-case spellings."""
    assert visit_to_day(label) == day


def test_a_manifest_listing_one_path_at_two_visits_or_subjects_is_refused(tmp_path: Path) -> None:
    """One photo is one subject, ulcer and visit: a path listed again under another visit (or
    another subject) is a one-line error naming both lines, never a silent duplicate_row."""
    _touch(tmp_path / "a.jpg", b"a")
    manifest = tmp_path / "m.csv"
    manifest.write_text("subject,ulcer,visit,path\nS1,U1,D0,a.jpg\nS1,U1,W4,a.jpg\n")
    with pytest.raises(
        InputError, match=r"m\.csv:3: 'a\.jpg' is also listed at line 2 as S1/U1/D0, here as S1/U1/W4"
    ):
        discover(manifest, DiscoveryConfig())
    manifest.write_text("subject,ulcer,visit,path\nS1,U1,D0,a.jpg\nS2,U1,D0,a.jpg\n")
    with pytest.raises(InputError, match=r"m\.csv:3: .* as S1/U1/D0, here as S2/U1/D0"):
        discover(manifest, DiscoveryConfig())


def test_an_invisible_character_in_a_manifest_ulcer_cell_is_a_skipped_row(tmp_path: Path) -> None:
    """An ulcer cell "U\\u200b1" would be another ulcer that every table shows as U1."""
    _touch(tmp_path / "a.jpg", b"a")
    _touch(tmp_path / "b.jpg", b"b")
    manifest = tmp_path / "m.csv"
    manifest.write_text("subject,ulcer,visit,path\nS1,U1,D0,a.jpg\nS1,U\u200b1,W4,b.jpg\n")
    found = discover(manifest, DiscoveryConfig())
    assert [(p.ulcer_id, p.visit) for p in found.photos] == [("U1", "D0")]
    assert [r.code for r in found.problems] == ["manifest_row"]
    assert "U+200B" in found.problems[0].reason


def test_an_ulcer_id_from_a_file_name_is_nfc_and_stripped(tmp_path: Path) -> None:
    """The ulcer ID taken from a file stem is stored as the study stores every ID (``ids.nfc``:
    NFC, stripped): "U1 .jpg", with a space before the extension, is ulcer U1, not "U1 "."""
    _touch(tmp_path / "S1" / "D0" / "U1 .jpg", b"a")
    _touch(tmp_path / "S1" / "W4" / "U1.jpg", b"b")
    found = discover(tmp_path, DiscoveryConfig())
    assert [(p.ulcer_id, p.visit) for p in found.photos] == [("U1", "D0"), ("U1", "W4")]


def test_a_blank_file_stem_is_a_failing_skip_not_the_extension_as_ulcer_id(tmp_path: Path) -> None:
    """A photo named " .jpg" (a blank stem) was the ulcer ".jpg": the name was stripped before
    its stem was taken, leaving the dotfile ".jpg" (" .jpg" and "\u3000.jpg": one ulcer). As a
    blank subject folder, it is a failing skip; "U1 .jpg" is still ulcer U1."""
    _touch(tmp_path / "S1" / "W4" / " .jpg", b"a")
    _touch(tmp_path / "S1" / "W4" / "\u3000.JPG", b"b")
    _touch(tmp_path / "S1" / "W4" / "U1 .jpg", b"c")
    found = discover(tmp_path, DiscoveryConfig())
    assert [(p.subject_id, p.ulcer_id, p.visit) for p in found.photos] == [("S1", "U1", "W4")]
    problems = _problems(found)
    assert sorted(problems) == ["S1/W4/ .jpg", "S1/W4/\u3000.JPG"]
    assert all(r.startswith("bad_file_name: ulcer ID") for r in problems.values())


def test_a_manifest_row_naming_a_folder_is_a_failing_manifest_row_not_a_photo(tmp_path: Path) -> None:
    """A row whose path is a folder ("sub", or "." the manifest's own folder) was a photo
    record: measured, it failed as a file that could not be read, retried by every run as if
    the disk were at fault. It is a row that cannot be used, as an empty path is."""
    _touch(tmp_path / "sub" / "a.jpg", b"a")
    (tmp_path / "photos.csv").write_text(
        "subject,ulcer,visit,path\nS1,U1,W4,sub\nS1,U2,W4,.\nS1,U3,W4,sub/a.jpg\n", encoding="utf-8"
    )
    found = discover(tmp_path / "photos.csv", DiscoveryConfig())
    assert [(p.ulcer_id, found.relative(p.path)) for p in found.photos] == [("U3", "sub/a.jpg")]
    assert sorted(r.split(": ", 1)[0] + " " + r.rsplit(": ", 1)[-1] for _, r in found.problems) == [
        "manifest_row '.' is a folder, not a photo; name the photo's file",
        "manifest_row 'sub' is a folder, not a photo; name the photo's file",
    ]


def test_a_manifest_path_that_links_outside_its_folder_is_refused(tmp_path: Path) -> None:
    """Before: a symbolic link in the manifest's folder (``lnk.jpg -> /elsewhere/x.jpg``, or a
    linked folder) was measured as a photo of the study without ``--allow-outside-root``; only
    the path as written was checked."""
    elsewhere = tmp_path / "elsewhere"
    _touch(elsewhere / "x.jpg", b"a")
    root = tmp_path / "trial"
    root.mkdir()
    (root / "lnk.jpg").symlink_to(elsewhere / "x.jpg")
    (root / "lnkdir").symlink_to(elsewhere, target_is_directory=True)
    for path in ("lnk.jpg", "lnkdir/x.jpg"):
        manifest = root / "m.csv"
        manifest.write_text(f"subject,ulcer,visit,path\nS1,U1,D0,{path}\n")
        with pytest.raises(
            InputError, match=r"m\.csv:2: path .* outside the manifest's folder .*symbolic link to"
        ):
            discover(manifest, DiscoveryConfig())
        found = discover(manifest, DiscoveryConfig(), allow_outside_root=True)
        assert [p.path.resolve() for p in found.photos] == [elsewhere / "x.jpg"]
    _touch(root / "in.jpg", b"b")
    (root / "lnk_in.jpg").symlink_to(root / "in.jpg")  # a link that stays inside is fine
    (root / "m.csv").write_text("subject,ulcer,visit,path\nS1,U1,D0,lnk_in.jpg\n")
    assert len(discover(root / "m.csv", DiscoveryConfig()).photos) == 1


def test_a_manifest_row_repeated_with_another_date_is_a_conflict(tmp_path: Path) -> None:
    """Before: the second row was skipped as an exact repeat (``duplicate_row``) and its date
    was dropped without a word."""
    _touch(tmp_path / "a.jpg")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "subject,ulcer,visit,path,date\nS1,U1,D0,a.jpg,2025-03-03\nS1,U1,D0,a.jpg,2025-09-09\n"
    )
    conflict = r"m\.csv:3: 'a\.jpg' .* line 2 with date 2025-03-03, here with 2025-09-09 \(conflict"
    with pytest.raises(InputError, match=conflict):
        discover(manifest, DiscoveryConfig())
    manifest.write_text("subject,ulcer,visit,path,date\nS1,U1,D0,a.jpg,2025-03-03\nS1,U1,D0,a.jpg,\n")
    with pytest.raises(InputError, match="with date 2025-03-03, here with \\(none\\)"):
        discover(manifest, DiscoveryConfig())
    manifest.write_text(
        "subject,ulcer,visit,path,date\nS1,U1,D0,a.jpg,2025-03-03\nS1,U1,D0,a.jpg,2025-03-03\n"
    )
    found = discover(manifest, DiscoveryConfig())
    assert len(found.photos) == 1 and "repeats line 2" in found.ignored[0][1]


def test_a_manifest_row_in_the_output_folder_is_skipped(tmp_path: Path) -> None:
    """Before: a manifest could list the tool's own overlay (``out/overlays/S001_...png``) and
    it was measured as a photo of another subject, unflagged."""
    _touch(tmp_path / "a.jpg", b"a")
    _touch(tmp_path / "out" / "overlays" / "S1_U1_D0_0a1b2c3d.png", b"b")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "subject,ulcer,visit,path\nS1,U1,D0,a.jpg\nS9,U1,D0,out/overlays/S1_U1_D0_0a1b2c3d.png\n"
    )
    found = discover(manifest, DiscoveryConfig(), exclude=tmp_path / "out")
    assert [p.subject_id for p in found.photos] == ["S1"]
    ((path, reason),) = found.problems
    assert path.name == "S1_U1_D0_0a1b2c3d.png"
    assert reason.startswith("manifest_row: ") and "is in the output folder" in reason


def test_ids_that_look_like_other_ids_are_skipped_with_their_reason(tmp_path: Path) -> None:
    """Before: ``Ѕ001`` (Cyrillic Ѕ) and ``S0０1`` (a full-width digit) were measured as two more
    subjects that look exactly like S001 on every screen, and S001 lost those photos. Accented
    Latin letters are fine."""
    from ulcerseg.ids import lookalike_character

    assert lookalike_character("S001") is None and lookalike_character("Zoé-2") is None
    assert lookalike_character("\u0405001") == "U+0405 CYRILLIC CAPITAL LETTER DZE, not a Latin letter"
    assert lookalike_character("S0\uff101") == "U+FF10 FULLWIDTH DIGIT ZERO, a compatibility form of '0'"
    assert lookalike_character("U\u0663") == "U+0663 ARABIC-INDIC DIGIT THREE, not a digit 0-9"
    _touch(tmp_path / "S001" / "D0" / "U1.jpg", b"a")
    _touch(tmp_path / "\u0405001" / "W4" / "U1.jpg", b"b")
    _touch(tmp_path / "Zoé" / "W4" / "U1.jpg", b"c")
    _touch(tmp_path / "S001" / "W4" / "U\u00b2.jpg", b"d")  # superscript two
    found = discover(tmp_path, DiscoveryConfig())
    assert sorted((p.subject_id, p.ulcer_id) for p in found.photos) == [("S001", "U1"), ("Zoé", "U1")]
    reasons = sorted(reason for _path, reason in found.problems)
    assert reasons == [
        "bad_file_name: subject or ulcer ID holds a character that looks like another "
        "(U+00B2 SUPERSCRIPT TWO, a compatibility form of '2'); rename it",
        "bad_file_name: subject or ulcer ID holds a character that looks like another "
        "(U+0405 CYRILLIC CAPITAL LETTER DZE, not a Latin letter); rename it",
    ]
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "subject,ulcer,visit,path\nS001,U1,D0,S001/D0/U1.jpg\n\u0405001,U1,W4,S001/D0/U1.jpg\n",
        encoding="utf-8",
    )
    found = discover(manifest, DiscoveryConfig())
    assert [p.subject_id for p in found.photos] == ["S001"]
    ((_path, reason),) = found.problems
    assert reason.startswith("manifest_row: ") and "CYRILLIC CAPITAL LETTER DZE, not a Latin letter" in reason


def test_a_source_that_is_neither_a_folder_nor_a_manifest_is_named_as_such(tmp_path: Path) -> None:
    """Before: ``measure nope.csv`` said "folder does not exist" and ``measure man.txt`` "not a
    folder", as if only folders were read."""
    with pytest.raises(InputError, match=r"nope\.csv: no such photo folder or manifest \(\.csv\)"):
        discover(tmp_path / "nope.csv", DiscoveryConfig())
    _touch(tmp_path / "man.txt", b"subject,ulcer,visit,path\n")
    with pytest.raises(InputError, match=r"man\.txt: not a photo folder, nor a manifest \(a \.csv file\)"):
        discover(tmp_path / "man.txt", DiscoveryConfig())


def test_lowercase_letters_of_other_scripts_are_lookalikes_too() -> None:
    """Guards the letter test (every category ``L*``, not only capitals): ``S0о1`` with a
    Cyrillic small o, or ``Uο1`` with a Greek small omicron, reads as S001 / Uo1 on a CRF."""
    from ulcerseg.ids import lookalike_character

    assert lookalike_character("S0\u043e1") == "U+043E CYRILLIC SMALL LETTER O, not a Latin letter"
    assert lookalike_character("U\u03bf1") == "U+03BF GREEK SMALL LETTER OMICRON, not a Latin letter"
    assert lookalike_character("ulcère-b") is None  # accented Latin, lowercase: fine


def test_a_manifest_row_first_listed_without_a_date_then_with_one_is_a_conflict(tmp_path: Path) -> None:
    """Guards the date comparison of a repeated row in both orders: a date that appears only
    on the second listing would otherwise be dropped as an exact repeat (``duplicate_row``)."""
    _touch(tmp_path / "a.jpg")
    manifest = tmp_path / "m.csv"
    manifest.write_text("subject,ulcer,visit,path,date\nS1,U1,D0,a.jpg,\nS1,U1,D0,a.jpg,2025-03-03\n")
    with pytest.raises(InputError, match=r"line 2 with date \(none\), here with 2025-03-03 \(conflict"):
        discover(manifest, DiscoveryConfig())


def test_images_set_aside_in_the_output_folders_superseded_folder_are_ours(tmp_path: Path) -> None:
    """Guards ``superseded`` among the output folder's own image folders: ``measure`` moves the
    images of superseded rows to ``OUT/superseded/<folder>/``; with ``-o`` inside the study
    they are not photos of the study left out (no unexpected_layout skip)."""
    _touch(tmp_path / "S1" / "D0" / "U1.jpg", b"a")
    out = tmp_path / "S1" / "W4"
    _touch(out / "superseded" / "overlays" / "S1_U1_D0_0123abcd.png", b"o")
    _touch(out / "superseded" / "masks" / "S1_U1_D0_0123abcd.png", b"m")
    found = discover(tmp_path, DiscoveryConfig(), exclude=out)
    assert [p.visit for p in found.photos] == ["D0"]
    assert found.problems == []
