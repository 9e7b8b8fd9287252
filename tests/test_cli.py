import csv
import json
from pathlib import Path

from click.testing import CliRunner
from conftest import make_photo, write_jpeg

import ulcerseg
from ulcerseg.cli import main
from ulcerseg.errors import InputError
from ulcerseg.healing import healing_config_sha256, load_healing_config


def test_measure_help_documents_every_option() -> None:
    result = CliRunner().invoke(main, ["measure", "--help"])
    assert result.exit_code == 0
    for option in ("--out", "--config", "--model", "--backend", "--threads", "--no-overlays", "--no-heal"):
        assert option in result.output


def test_measure_with_a_real_network_writes_outputs(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tmp_path / "trial"
    write_jpeg(root / "S001" / "D0" / "U1.jpg", make_photo(px_per_mm=12, size=(640, 480)).rgb)
    (root / "S001" / "W4").mkdir(parents=True)
    (root / "S001" / "W4" / "U1.jpg").write_text("not a photo")
    out = tmp_path / "out"
    args = ["measure", str(root), "-o", str(out), "--model", str(tiny_model_dir), "--no-progress"]
    result = CliRunner().invoke(main, args, standalone_mode=False)
    assert result.exception is None, result.output
    assert result.return_value == 1  # one photo failed
    assert "2 photos: 1 measured, 1 failed" in result.output
    assert "failed: S001/W4/U1.jpg" in result.output
    assert (out / "study.sqlite").is_file() and (out / "measurements.csv").is_file()
    assert len(list((out / "overlays").glob("*.png"))) == 1
    again = CliRunner().invoke(main, args, standalone_mode=False)
    assert "0 measured, 0 failed, 2 unchanged" in again.output
    exported = CliRunner().invoke(main, ["export", str(out), "--final"])
    assert exported.exit_code == 0, exported.output
    assert "deprecated; use `ulcerseg review export-final OUT -o FILE`" in exported.output
    # the old form keeps exit 0 with visits pending, but says the table is not final
    assert "flagged visit(s) pending review (no final value): the table is not final" in exported.output
    final = (out / "final_visits.csv").read_text().splitlines()
    assert len(final) >= 3 and "S001" in final[1]  # header + one row per subject/ulcer/visit
    # the one export command writes the same table
    (out / "final_visits.csv").unlink()
    exported = CliRunner().invoke(
        main, ["review", "export-final", str(out), "-o", str(out / "final_visits.csv")]
    )
    # the flagged photos wait for review: written, but not final (exit 1) unless --allow-pending
    assert exported.exit_code == 1 and "pending review" in exported.output, exported.output
    exported = CliRunner().invoke(
        main, ["review", "export-final", str(out), "-o", str(out / "final_visits.csv"), "--allow-pending"]
    )
    assert exported.exit_code == 0, exported.output
    assert "deprecated" not in exported.output
    assert (out / "final_visits.csv").read_text().splitlines() == final
    # rounded like every CSV: areas 0.01 mm², % 0.1, rates 0.01 mm²/week
    import csv

    with (out / "final_visits.csv").open() as fh:
        for row in csv.DictReader(fh):
            for col, n in (
                ("final_area_mm2", 2),
                ("change_from_baseline_pct", 1),
                ("healing_rate_mm2_per_week", 2),
            ):
                assert len(row[col].partition(".")[2]) <= n, (col, row[col])
    assert (out / "healing.csv").is_file()  # the measure command composes measuring and healing


def test_measure_no_heal_leaves_healing_out(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tmp_path / "trial"
    write_jpeg(root / "S001" / "D0" / "U1.jpg", make_photo(px_per_mm=12, size=(640, 480)).rgb)
    out = tmp_path / "out"
    args = [
        "measure",
        str(root),
        "-o",
        str(out),
        "--model",
        str(tiny_model_dir),
        "--no-progress",
        "--no-heal",
    ]
    result = CliRunner().invoke(main, args, standalone_mode=False)
    assert result.exception is None, result.output
    assert (out / "measurements.csv").is_file() and not (out / "healing.csv").exists()


def test_cli_import_loads_no_heavy_library() -> None:
    """`ulcerseg --help` stays fast: commands import the library lazily."""
    import subprocess
    import sys

    code = (
        "import sys, ulcerseg.cli; "
        "print(','.join(m for m in ('torch', 'cv2', 'skimage', 'numpy', 'pandas') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""


def test_cli_runs_numpy_blas_on_one_thread_unless_told_otherwise() -> None:
    """The entry point defaults OpenBLAS to one thread before numpy loads (photos run in
    parallel; idle BLAS threads spin on 2 cores); a value the user set is kept."""
    import os
    import subprocess
    import sys

    code = (
        "import sys; from ulcerseg.cli import run; sys.argv = ['ulcerseg', '--version']\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\n"
        "import os\n"
        "print(os.environ.get('OPENBLAS_NUM_THREADS'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    for given, expected in ((None, "1"), ("3", "3")):
        if given is not None:
            env["OPENBLAS_NUM_THREADS"] = given
        cmd = [sys.executable, "-c", code]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        assert proc.stdout.strip().splitlines()[-1] == expected


def test_bad_config_is_a_one_line_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text("marker:\n  sidemm: 10\n")
    proc = subprocess.run(
        [sys.executable, "-c", "from ulcerseg.cli import run; run()", "measure", str(tmp_path),
         "-o", str(tmp_path / "o"), "-c", str(cfg)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "c.yaml: unknown key 'marker.sidemm'" in proc.stderr


def test_healing_and_final_tables_record_provenance(tmp_path: Path) -> None:
    from conftest import RednessBackend

    from ulcerseg.config import PipelineConfig
    from ulcerseg.healing import heal_study
    from ulcerseg.pipeline import effective_config, measure_study
    from ulcerseg.review.export import export_final

    root = tmp_path / "trial"
    write_jpeg(root / "S001" / "D0" / "U1.jpg", make_photo(px_per_mm=12, size=(640, 480)).rgb)
    out = tmp_path / "out"
    measure_study(root, out, PipelineConfig(), backend=RednessBackend())
    heal_study(out)
    for name in ("healing.csv", export_final(out).name):
        with (out / name).open() as fh:
            row = next(r for r in csv.DictReader(fh) if r["visit"] == "D0")
        assert row["model_sha256"] == RednessBackend().sha256
        ran = effective_config(PipelineConfig(), RednessBackend().card, "full")  # a test double: full
        assert row["config_sha256"] == ran.sha256()
        assert row["package_version"]
        # the healing rules the statuses come from (final_visits.csv lacked them)
        assert row["healing_config_sha256"] == healing_config_sha256(load_healing_config(None))
    record = json.loads((out / "healing.json").read_text())
    with (out / "healing.csv").open() as fh:
        assert {r["heal_run"] for r in csv.DictReader(fh)} == {record["heal_run"]}
    assert record["package_version"] == ulcerseg.__version__
    assert record["healing_config"]["baseline_visit"] == "D0"
    assert record["healing_config_sha256"] == healing_config_sha256(load_healing_config(None))


def test_measure_without_a_baseline_photo_stores_its_rows_and_says_why_healing_is_not_computed(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root = tmp_path / "trial"
    write_jpeg(root / "S001" / "W4" / "U1.jpg", make_photo(px_per_mm=12, size=(640, 480)).rgb)
    out = tmp_path / "out"
    args = ["measure", str(root), "-o", str(out), "--model", str(tiny_model_dir), "--no-progress"]
    result = CliRunner().invoke(main, args, standalone_mode=False)  # run() exits with the return value
    assert result.return_value == 1, result.output
    why = "healing config: baseline_visit 'D0' is no visit of the study (its visits: W4)"
    assert f"healing not computed: {why}" in result.output
    assert "Traceback" not in result.output
    with (out / "measurements.csv").open() as fh:
        assert [r["visit"] for r in csv.DictReader(fh)] == ["W4"]  # nothing measured is lost
    assert not (out / "healing.csv").exists()  # no table referred to W4 as if it were baseline
    result = CliRunner().invoke(main, ["heal", str(out)], standalone_mode=False)
    assert isinstance(result.exception, InputError)  # run(): one line, exit 2
    assert "baseline_visit 'D0' is no visit of the study" in str(result.exception)


def test_measure_refuses_an_empty_source_or_output_folder(tmp_path: Path, monkeypatch) -> None:
    """``-o ""`` (``-o "$OUT"`` with OUT unset) wrote the study into the working directory, and
    an empty SOURCE measured it: both are usage errors (exit 2) now, and nothing is written."""
    root = tmp_path / "trial"
    write_jpeg(root / "S001" / "D0" / "U1.jpg", make_photo(px_per_mm=12, size=(640, 480)).rgb)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for args in (["measure", str(root), "-o", ""], ["measure", "", "-o", str(tmp_path / "out")]):
        result = CliRunner().invoke(main, [*args, "--no-progress"])
        assert result.exit_code == 2, result.output
        assert "empty path" in result.output
    assert list(work.iterdir()) == [] and not (tmp_path / "out").exists()
