"""One set of CLI conventions: every command's --help is walked by click introspection."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ulcerseg.cli import main, run

# commands that write files or folders: -o/--out names where (required unless noted)
WRITES = {
    "measure", "qa", "train", "dataset import", "synth trial", "synth photos", "synth dataset", "marker",
    "review export-blinded", "review export-training", "review export-final", "review report",
}  # fmt: skip
# -o/--out optional, and why
OPTIONAL_OUT = {
    "evaluate": "without -o it only prints the summary",
    "review disagreements": "standard output by default",
    "review decisions": "standard output by default",
    "review export-final": "old form OUT_DIR/final_visits.csv kept with a deprecation warning",
    "review report": "old form OUT_DIR/report/report.html kept with a deprecation warning",
}
# no -o at all: they update (or only read, like verify and readers list) the folder they are given
IN_PLACE = {
    "heal", "review serve", "export",
    "review readers add", "review readers list", "review readers revoke", "review verify",
}  # fmt: skip
# long-running commands: --progress/--no-progress
LONG = {
    "measure", "evaluate", "train", "qa", "dataset import", "synth trial", "synth photos", "synth dataset",
    "review export-training", "review export-blinded", "review report",
}  # fmt: skip


def _commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            out.update(_commands(cmd, full + " "))
        else:
            out[full] = cmd
    return out


COMMANDS = _commands(main)


def _option(cmd: click.Command, flag: str) -> click.Option | None:
    return next(
        (p for p in cmd.params if isinstance(p, click.Option) and flag in p.opts + p.secondary_opts), None
    )


def test_every_command_is_classified() -> None:
    assert set(COMMANDS) == WRITES | set(OPTIONAL_OUT) | IN_PLACE


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_the_conventions(name: str) -> None:
    cmd = COMMANDS[name]
    result = CliRunner().invoke(main, [*name.split(), "--help"])
    assert result.exit_code == 0, result.output
    out = _option(cmd, "-o")
    if name in IN_PLACE:
        assert out is None
    else:
        assert out is not None and out.opts == ["-o", "--out"], f"{name}: -o/--out"
        assert "-o, --out" in result.output
        if name not in OPTIONAL_OUT:
            # required: by click, or by the option's own check (old --output spelling kept)
            assert out.required or "[required]" in (out.help or ""), f"{name}: -o/--out required"
            assert "required" in result.output
    for p in cmd.params:  # click 8.5 does not enforce required=True with an explicit default=None
        assert not p.required or p.default is not None, f"{name}: {p.name} required but default=None"
    # README: `ulcerseg COMMAND --help` documents every option (export-blinded's --key-file and
    # dataset import's --stem-column / --group-column were listed without a word)
    undocumented = [p.opts for p in cmd.params if isinstance(p, click.Option) and not p.hidden and not p.help]
    assert not undocumented, f"{name}: options without help text {undocumented}"
    progress = _option(cmd, "--progress")
    if name in LONG:
        assert progress is not None and progress.secondary_opts == ["--no-progress"], name
        assert progress.default is True
        assert "--progress / --no-progress" in result.output
    else:
        assert progress is None, f"{name}: not a long command"


def test_help_names_every_reason_for_exit_1() -> None:
    """README: measure exits 1 for every failing skip reason, and export-final and report while a
    visit is pending review, disputed or a duplicate; the help named only some of them."""
    from ulcerseg.records import FAILING_SKIP_REASONS
    from ulcerseg.review.final import PENDING_SOURCES

    measure_help = " ".join(CliRunner().invoke(main, ["measure", "--help"]).output.split())
    assert [r.value for r in FAILING_SKIP_REASONS if r.value not in measure_help] == []
    for name in ("review export-final", "review report"):
        text = " ".join(CliRunner().invoke(main, [*name.split(), "--help"]).output.split())
        assert sorted(s for s in PENDING_SOURCES if s not in text) == [], name


def test_missing_out_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["synth", "dataset", "--n", "1"])
    assert result.exit_code == 2 and "-o" in result.output


def test_old_output_spelling_still_works(tmp_path: Path) -> None:
    from ulcerseg.cli.options import out_dir_option

    @click.command()
    @out_dir_option("x", dest="output", legacy_output=True)
    def cmd(output: Path) -> None:
        click.echo(f"got {output}")

    res = CliRunner().invoke(cmd, ["--output", str(tmp_path / "a")])
    assert res.exit_code == 0 and f"got {tmp_path / 'a'}" in res.output
    assert "--output is deprecated; use -o/--out" in res.output
    res = CliRunner().invoke(cmd, ["-o", str(tmp_path / "b")])
    assert res.exit_code == 0 and "deprecated" not in res.output
    res = CliRunner().invoke(cmd, [])
    assert res.exit_code == 2 and "Missing option '-o'" in res.output


def test_measure_without_photos_names_the_layout_and_exits_2(tmp_path: Path, monkeypatch, capsys) -> None:
    root = tmp_path / "trial"
    (root / "S001").mkdir(parents=True)
    (root / "S001" / "U1.jpg").write_bytes(b"x")  # no visit folder
    monkeypatch.setattr(sys, "argv", ["ulcerseg", "measure", str(root), "-o", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exc:
        run()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no photos found; expected the layout <subject>/<visit>/<ulcer>." in err
    assert "S001/U1.jpg: unexpected_layout: not in a <subject>/<visit>/ folder" in err
    lines = err.strip().splitlines()  # every skipped file listed, then the one-line error
    assert len(lines) == 2 and lines[0].startswith("skipped: ") and lines[0].endswith("(1 folder levels)")
    assert lines[1].startswith("error: ") and "no photos found" in lines[1]
    assert not (tmp_path / "out" / "study.sqlite").exists()


def test_synth_trial_progress_ends_at_its_own_total(tmp_path: Path) -> None:
    from ulcerseg.synth.trial import generate_trial

    totals: list[int] = []
    steps: list[int] = []
    generate_trial(
        tmp_path / "t",
        3,
        ("D0", "W4"),
        (1, 3),
        (160, 120),
        seed=5,
        on_total=totals.append,
        progress=steps.append,
    )
    n_photos = len(list((tmp_path / "t").glob("S*/*/*.jpg")))
    assert totals == [n_photos] and sum(steps) == n_photos


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["ulcerseg", *args])
    with pytest.raises(SystemExit) as exc:
        run()
    return int(exc.value.code or 0), capsys.readouterr().err


def test_environment_and_database_errors_are_one_line_errors(tmp_path: Path, monkeypatch, capsys) -> None:
    """Not only measure: an output path under a regular file, a study.sqlite that is not a
    database, and a table written over the study database are one-line errors, no traceback."""
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code, err = _run(monkeypatch, capsys, "marker", "-o", str(blocker / "sheet.pdf"))
    assert code == 1 and err.startswith("error: ") and "afile" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.sqlite").write_text("not a database\n")
    code, err = _run(monkeypatch, capsys, "heal", str(study))
    # the file named (before: "study database unusable (...); is it a study folder's study.sqlite?")
    assert code == 2 and f"{study / 'study.sqlite'}: not a study database" in err and "Traceback" not in err


def test_a_table_is_never_written_over_the_study_database(tmp_path: Path, monkeypatch, capsys) -> None:
    from ulcerseg.store import Study

    out = tmp_path / "out"
    out.mkdir()
    with Study.open(out):
        pass
    before = (out / "study.sqlite").read_bytes()
    code, err = _run(monkeypatch, capsys, "review", "export-final", str(out), "-o", str(out / "study.sqlite"))
    assert code == 2 and "is a study database" in err and "Traceback" not in err
    assert (out / "study.sqlite").read_bytes() == before


@pytest.mark.parametrize(
    "option", [("--threshold", "5"), ("--threshold", "nan"), ("--scale", "0"), ("--scale", "nan")]
)
def test_evaluate_refuses_meaningless_thresholds_and_scales(tmp_path: Path, option: tuple[str, str]) -> None:
    """--threshold 5 or nan, --scale 0 gave exit 0 with meaningless scores: now usage errors."""
    res = CliRunner().invoke(
        main, ["evaluate", "--model", "models/default", "--data", str(tmp_path), *option]
    )
    assert res.exit_code == 2 and f"Invalid value for '{option[0]}'" in res.output


def test_readme_screenshot_script_runs_past_the_pending_report() -> None:
    # scripts/readme_screenshots.sh runs under `set -e` on sample_images/, whose study has a
    # flagged photo waiting for review: `review report` then exits 1 (the report written all the
    # same), which stopped the script before any screenshot unless --allow-pending is passed
    script = Path(__file__).resolve().parents[1] / "scripts" / "readme_screenshots.sh"
    lines = [line for line in script.read_text().splitlines() if "ulcerseg review report" in line]
    assert lines and all("--allow-pending" in line for line in lines), lines


def test_a_study_kept_busy_by_another_process_is_a_busy_error_not_an_unusable_one(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    # before: "database is locked" (another process writing longer than the 30 s wait) read
    # "study database unusable (...); is it a study folder's study.sqlite?", exit 2
    import sqlite3

    from ulcerseg.store import Study

    with Study.open(tmp_path / "study"):
        pass
    holder = sqlite3.connect(tmp_path / "study" / "study.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        real_connect = sqlite3.connect
        monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real_connect(*a, **{**k, "timeout": 0.05}))
        code, err = _run(monkeypatch, capsys, "heal", str(tmp_path / "study"))
    finally:
        holder.rollback()
        holder.close()
    assert code == 1 and "study database busy" in err and "run again" in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "invalid start byte"),
        (UnicodeError("label empty or too long"), "label empty or too long"),
    ],
)
def test_a_unicode_error_is_a_one_line_error(
    tmp_path: Path, monkeypatch, capsys, error: UnicodeError, reason: str
) -> None:
    """A plain UnicodeError (the base class the handler catches; only its codec subclasses have
    ``.reason``) ended in an AttributeError traceback instead of the one-line error."""

    def fail(**_kwargs: object) -> None:
        raise error

    monkeypatch.setattr(main.commands["marker"], "callback", fail)
    code, err = _run(monkeypatch, capsys, "marker", "-o", str(tmp_path / "sheet.pdf"))
    assert code == 2 and "Traceback" not in err
    assert err == f"error: a file or folder name is not valid UTF-8 ({reason}); rename it\n"


def _fake_measure(tmp_path: Path, monkeypatch, effect) -> None:
    """``measure`` with measure_study replaced by ``effect(kwargs)`` (no model needed)."""
    import ulcerseg.pipeline as pipeline

    (tmp_path / "photos").mkdir()

    def fake(source, out_dir, cfg, **kwargs):
        return effect(out_dir, kwargs)

    monkeypatch.setattr(pipeline, "measure_study", fake)


def test_retry_failed_reaches_the_measurement(tmp_path: Path, monkeypatch, capsys) -> None:
    from ulcerseg.pipeline import MeasureSummary

    seen: list[bool] = []

    def effect(out_dir, kwargs):
        seen.append(kwargs["retry_failed"])
        return MeasureSummary(out_dir=out_dir, run_id="r")

    _fake_measure(tmp_path, monkeypatch, effect)
    args = ("measure", str(tmp_path / "photos"), "-o", str(tmp_path / "out"), "--no-heal")
    assert _run(monkeypatch, capsys, *args)[0] == 0
    assert _run(monkeypatch, capsys, *args, "--retry-failed")[0] == 0
    assert seen == [False, True]


def test_ctrl_c_during_a_measure_exits_130(tmp_path: Path, monkeypatch, capsys) -> None:
    def effect(out_dir, kwargs):
        raise KeyboardInterrupt

    _fake_measure(tmp_path, monkeypatch, effect)
    code, err = _run(monkeypatch, capsys, "measure", str(tmp_path / "photos"), "-o", str(tmp_path / "out"))
    assert code == 130 and "Aborted." in err and "Traceback" not in err


def test_a_file_name_with_a_line_break_stays_on_its_own_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """Before: ``skipped: .../U1<newline>x.jpg: bad_file_name ...`` split over two stderr lines,
    the second looking like a line of its own to a script that reads them. Control and
    invisible characters of a name are now written as escapes, wherever a name is quoted."""
    from ulcerseg.ids import printable

    assert printable("S00\n2\u202e\x00 é") == "S00\\n2\\u202e\\x00 é"
    assert printable("plain é") == "plain é"
    root = tmp_path / "trial"
    (root / "S00\n1" / "D0").mkdir(parents=True)
    (root / "S00\n1" / "D0" / "U1.jpg").write_bytes(b"x")
    (root / "S002" / "D0").mkdir(parents=True)
    (root / "S002" / "D0" / "U1\r.jpg").write_bytes(b"x")
    monkeypatch.setattr(sys, "argv", ["ulcerseg", "measure", str(root), "-o", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exc:
        run()
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().split("\n")
    assert len(lines) == 3, lines
    assert (
        lines[0] == f"skipped: {root}/S00\\n1/D0/U1.jpg: bad_file_name: name holds an invisible or control "
        "character (U+000A); rename it"
    )
    assert lines[1].startswith(f"skipped: {root}/S002/D0/U1\\r.jpg: bad_file_name")
    assert lines[2].startswith("error: ") and "no photos found" in lines[2]
