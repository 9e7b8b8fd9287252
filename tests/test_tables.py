"""The one CSV writer: atomic replace, formula-injection escaping of text cells only."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from ulcerseg.tables import escape_cell, write_csv, write_frame_csv


def _read(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_text_cells_that_start_a_formula_are_quoted_numbers_are_not() -> None:
    for text in ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", '=HYPERLINK("http://x")']:
        assert escape_cell(text) == "'" + text
    for value in [-1.5, -3, 0, 2.5e-3, True, "-1.5", "+3", "1e-3", "subject-01", "a=b", ""]:
        assert escape_cell(value) == value
    assert escape_cell(None) == ""


def test_write_csv_escapes_keeps_numbers_and_fills_missing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "t.csv"
    rows = [{"id": "=cmd|' /C calc'!A0", "area_mm2": -1.5, "note": None, "extra": "ignored"}, {"id": "S01"}]
    assert write_csv(path, rows, ["id", "area_mm2", "note"]) == path
    assert _read(path) == [["id", "area_mm2", "note"], ["'=cmd|' /C calc'!A0", "-1.5", ""], ["S01", "", ""]]
    assert pd.read_csv(path)["area_mm2"].iloc[0] == -1.5  # still a number
    assert [p.name for p in path.parent.iterdir()] == ["t.csv"]  # no temporary file left


def test_write_is_atomic_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_csv(path, [{"a": 1}], ["a"])

    def rows():
        yield {"a": 2}
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        write_csv(path, rows(), ["a"])
    assert _read(path) == [["a"], ["1"]]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_write_frame_csv_escapes_text_columns_and_index(tmp_path: Path) -> None:
    df = pd.DataFrame({"who": ["@evil", "ok"], "d": [-0.25, float("nan")]}, index=["-x+1", "b"])
    path = write_frame_csv(tmp_path / "f.csv", df, index=True, float_format="%.3f")
    assert _read(path) == [["", "who", "d"], ["'-x+1", "'@evil", "-0.250"], ["b", "ok", ""]]


def test_written_tables_follow_the_umask_like_any_other_file(tmp_path: Path) -> None:
    # before: tempfile.mkstemp made measurements.csv, healing.csv and every table mode 0600,
    # unreadable to the study's other users on a shared drive
    import os

    for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        old = os.umask(mask)
        try:
            write_csv(tmp_path / f"t{mask:o}.csv", [{"a": 1}], ["a"])
        finally:
            os.umask(old)
        assert (tmp_path / f"t{mask:o}.csv").stat().st_mode & 0o777 == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t2.csv", "t22.csv", "t77.csv"]  # no temporaries


def test_a_full_disk_names_the_table_and_keeps_the_old_file(tmp_path: Path) -> None:
    """A write error carries no file name ("No space left on device"): it names the table."""
    import errno

    path = tmp_path / "t.csv"
    write_csv(path, [{"a": 1}], ["a"])

    def rows():
        yield {"a": 2}
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as caught:
        write_csv(path, rows(), ["a"])
    assert caught.value.filename == str(path) and caught.value.errno == errno.ENOSPC
    assert _read(path) == [["a"], ["1"]]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_a_failed_replace_names_the_target_not_the_temporary_file(tmp_path: Path) -> None:
    """``os.replace`` onto a folder names its source, the temporary file (removed at once): the
    error said ``.t.csv.123.ab12.tmp: Is a directory`` instead of naming t.csv."""
    (tmp_path / "t.csv").mkdir()
    with pytest.raises(OSError) as err:
        write_csv(tmp_path / "t.csv", [{"a": 1}], ["a"])
    assert err.value.filename == str(tmp_path / "t.csv") and err.value.strerror
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]
