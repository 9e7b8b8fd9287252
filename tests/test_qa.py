"""QA statistics against published/independent values, and the `ulcerseg qa` comparison."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from ulcerseg.annotations import (
    rasterize_polygons,
    write_annotation,
    write_imagej_roi,
    write_labelme,
)
from ulcerseg.cli.qa import qa_command
from ulcerseg.errors import ConfigError, InputError
from ulcerseg.geometry import apply_homography
from ulcerseg.metrics import dice_iou
from ulcerseg.qa import stats
from ulcerseg.qa.compare import run_qa

# --------------------------------------------------------------------------- statistics

# Bland & Altman (1986) Lancet 1:307, Table 1: PEFR (l/min) of 17 subjects, first reading
# with the large Wright peak flow meter and with the mini Wright meter.
WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]


def test_bland_altman_reproduces_the_1986_pefr_example() -> None:
    # Published: mean difference -2.1 l/min, SD 38.8, limits (d ± 2s) -79.7 and 75.5
    # (the paper rounds d and s before adding, hence 0.1 tolerance on the limits).
    ba = stats.bland_altman(WRIGHT, MINI, k=2.0)
    assert ba.n == 17
    assert round(ba.bias, 1) == -2.1
    assert round(ba.sd, 1) == 38.8
    assert ba.loa_low == pytest.approx(-79.7, abs=0.1)
    assert ba.loa_high == pytest.approx(75.5, abs=0.1)
    assert ba.bias_ci_low < ba.bias < ba.bias_ci_high
    assert ba.loa_low_ci[0] < ba.loa_low < ba.loa_low_ci[1]


# Shrout & Fleiss (1979) Psychol Bull 86:420, Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
    dtype=float,
)


def test_icc_reproduces_shrout_fleiss_table_4() -> None:
    # Published (Table 4): ICC(1,1) = .17, ICC(2,1) = .29, ICC(3,1) = .71.
    icc = stats.intraclass_correlations(SHROUT_FLEISS)
    assert icc["ICC1"].icc == pytest.approx(0.17, abs=0.005)
    assert icc["ICC2"].icc == pytest.approx(0.29, abs=0.005)
    assert icc["ICC3"].icc == pytest.approx(0.71, abs=0.005)
    for value in icc.values():
        assert value.ci_low < value.icc < value.ci_high
    # The CI is not rounded to 2 digits (pingouin's display default).
    assert icc["ICC2"].ci_low != round(icc["ICC2"].ci_low, 2)


def test_cohens_kappa_textbook_example() -> None:
    # Worked example (Wikipedia "Cohen's kappa", 50 proposals read by two readers):
    # both yes 20, A yes/B no 5, A no/B yes 10, both no 15 -> po 0.70, pe 0.50, kappa 0.40.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    table = stats.confusion_table(a, b, ["yes", "no"])
    assert table.to_numpy().tolist() == [[20, 5], [10, 15]]
    row = stats.kappa_row(a, b)
    assert row["observed_agreement"] == pytest.approx(0.70)
    assert row["kappa"] == pytest.approx(0.40)


def test_weighted_kappa_against_independent_computations() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, 60)
    y = np.clip(x + rng.integers(-1, 2, 60), 0, 3)
    table = stats.confusion_table(list(x), list(y), [0, 1, 2, 3]).to_numpy()
    # Quadratic-weighted kappa equals the concordance formula with 1/n moments on the scores
    # (Fleiss & Cohen 1973): 2 s_xy / (s_x² + s_y² + (mean_x - mean_y)²).
    sxy = np.mean((x - x.mean()) * (y - y.mean()))
    expected_q = 2 * sxy / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    assert stats.cohens_kappa(table, "quadratic") == pytest.approx(expected_q, abs=1e-12)
    # Linear weights against the reference implementation in statsmodels.
    from statsmodels.stats import inter_rater  # installed with pingouin: an independent reference

    ref = inter_rater.cohens_kappa(table, wt="linear").kappa
    assert stats.cohens_kappa(table, "linear") == pytest.approx(ref, abs=1e-12)
    assert stats.cohens_kappa(table) == pytest.approx(inter_rater.cohens_kappa(table).kappa)


def test_lins_ccc_against_hand_computation() -> None:
    rng = np.random.default_rng(7)
    x = rng.uniform(2, 50, 40)
    y = 1.1 * x + rng.normal(0, 3, 40)
    # Lin (1989): rho_c = 2 s_xy / (s_x² + s_y² + (mean_x - mean_y)²), moments with 1/n.
    sxy = ((x - x.mean()) * (y - y.mean())).sum() / len(x)
    sx2 = ((x - x.mean()) ** 2).sum() / len(x)
    sy2 = ((y - y.mean()) ** 2).sum() / len(x)
    expected = 2 * sxy / (sx2 + sy2 + (x.mean() - y.mean()) ** 2)
    ccc = stats.lins_ccc(x, y)
    assert ccc.ccc == pytest.approx(expected, rel=1e-12)
    assert ccc.ci_low < ccc.ccc < ccc.ci_high < 1
    assert ccc.ccc < np.corrcoef(x, y)[0, 1]  # bias always lowers CCC below Pearson r
    assert stats.lins_ccc(x, x).ccc == pytest.approx(1.0)


def test_ratio_limits_and_zero_areas() -> None:
    manual = np.array([2.0, 5.0, 10.0, 20.0, 40.0, 0.0])
    auto = np.array([2.4, 5.5, 13.0, 23.0, 44.0, 1.0])
    r = stats.bland_altman_ratio(auto, manual)
    logs = np.log(auto[:5] / manual[:5])
    assert r.n == 5 and r.n_dropped_zero == 1
    assert r.bias_pct == pytest.approx(100 * (np.exp(logs.mean()) - 1))
    sd = logs.std(ddof=1)
    assert r.loa_low_pct == pytest.approx(100 * (np.exp(logs.mean() - 1.959964 * sd) - 1))
    assert r.loa_high_pct == pytest.approx(100 * (np.exp(logs.mean() + 1.959964 * sd) - 1))
    # Exactly proportional areas: +20% with zero spread.
    r = stats.bland_altman_ratio(1.2 * manual[:5], manual[:5])
    assert r.bias_pct == pytest.approx(20.0)
    assert r.loa_low_pct == pytest.approx(20.0) and r.loa_high_pct == pytest.approx(20.0)


def test_errors_correlations_and_dice() -> None:
    auto = [3.0, 6.0, 9.0, 12.0]
    manual = [2.0, 6.0, 10.0, 10.0]
    err = stats.error_summary(auto, manual)
    assert err["mae"] == pytest.approx((1 + 0 + 1 + 2) / 4)
    assert err["mean_rel_error"] == pytest.approx((0.5 + 0 - 0.1 + 0.2) / 4)
    assert err["mean_abs_rel_error"] == pytest.approx((0.5 + 0 + 0.1 + 0.2) / 4)
    corr = stats.correlations(auto, manual)
    assert corr["pearson_r"] == pytest.approx(np.corrcoef(auto, manual)[0, 1])
    # Spearman = Pearson of mid-ranks (manual has a tie at 10).
    ranks = np.corrcoef([1, 2, 3, 4], [1, 2, 3.5, 3.5])[0, 1]
    assert corr["spearman_rho"] == pytest.approx(ranks)
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:5] = True  # 20 px
    b[2:6, 0:5] = True  # 20 px, overlap 10 px
    dice, iou = dice_iou(a, b)
    assert dice == pytest.approx(2 * 10 / 40) and iou == pytest.approx(10 / 30)


def test_area_range_labels() -> None:
    test, reference = [4.0, 12.0, 60.0, 1.0], [6.0, 10.0, 80.0, 4.0]
    assert stats.area_range_labels(test, reference) == ["5-10", "10-25", ">=50", "0-5"]
    mean = stats.area_range_labels(test, reference, basis="mean")
    assert mean == ["5-10", "10-25", ">=50", "0-5"]
    assert stats.area_range_labels([30.0], [4.0], basis="mean") == ["10-25"]
    assert stats.area_range_labels([30.0], [4.0]) == ["0-5"]


# --------------------------------------------------------------------------- fixtures

SHAPE = (200, 260)  # photo (h, w) px
PPM = 20.0  # rectified px per mm
AUTO_SCALE = 1.05  # automated outline = manual outline with semi-axes x 1.05


def _homography(i: int) -> np.ndarray:
    return np.array([[0.05, 0.002 * i, -1.0], [0.001, 0.05, -0.5], [2e-5 * i, 3e-5, 1.0]])


def _ellipse_mm(i: int, scale: float = 1.0, n: int = 720) -> np.ndarray:
    a, b = (0.9 + 0.35 * i) * scale, (0.7 + 0.25 * i) * scale
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.c_[4.5 + a * np.cos(t), 3.5 + b * np.sin(t)]


def _true_area(i: int) -> float:
    return float(np.pi * (0.9 + 0.35 * i) * (0.7 + 0.25 * i))


def make_measure_output(root: Path, n: int = 8, failed: tuple[int, ...] = (7,)) -> Path:
    """A measure output folder written by hand following docs/outputs.md."""
    out = root / "OUT"
    (out / "masks").mkdir(parents=True)
    (out / "rectified").mkdir()
    rows = []
    for i in range(n):
        sha = hashlib.sha256(f"photo{i}".encode()).hexdigest()
        key = sha[:16]
        h = _homography(i)
        origin = (4.5 - 5.0, 3.5 - 5.0)
        rect_shape = (200, 200)  # 10 x 10 mm at 20 px/mm
        ok = i not in failed
        row = {
            "photo_sha256": sha,
            "file": f"S{i % 3:02d}/D0/photo{i}.jpg",
            "subject_id": f"S{i % 3:02d}",
            "ulcer_id": f"U{i}",
            "visit": "D0",
            "study_day": 0,
            "photo_date": "",
            "status": "measured" if ok else "failed",
            "needs_review": 0 if ok else 1,
            "flags": "" if ok else "no_marker",
            "image_width_px": SHAPE[1],
            "image_height_px": SHAPE[0],
            "homography": json.dumps(h.ravel().tolist()) if ok else "",
            "rectified_px_per_mm": PPM if ok else "",
            "rectified_origin_x_mm": origin[0] if ok else "",
            "rectified_origin_y_mm": origin[1] if ok else "",
            "site": "A" if i < 4 else "B",
        }
        if ok:
            pts = (_ellipse_mm(i, AUTO_SCALE) - origin) * PPM
            mask = rasterize_polygons([pts], rect_shape)
            Image.fromarray(mask).save(out / "masks" / f"{key}.png")
            Image.fromarray(np.zeros((*rect_shape, 3), np.uint8)).save(out / "rectified" / f"{key}.png")
            row |= {
                "area_mm2": np.count_nonzero(mask) / PPM**2,
                "mask_file": f"masks/{key}.png",
                "rectified_file": f"rectified/{key}.png",
                "error": "",
            }
        else:
            row |= {"area_mm2": "", "mask_file": "", "rectified_file": "", "error": "no marker"}
        rows.append(row)
    pd.DataFrame(rows).to_csv(out / "measurements.csv", index=False)
    return out


def photo_polygon(i: int, scale: float = 1.0) -> np.ndarray:
    """The manual outline of photo i in the photo frame (px)."""
    return apply_homography(np.linalg.inv(_homography(i)), _ellipse_mm(i, scale))


def make_annotation_folder(root: Path, n: int = 8) -> Path:
    """One reader's annotations, cycling through the four formats, named by photo stem."""
    folder = root / "reader_a"
    for i in range(n):
        poly = photo_polygon(i)
        kind = i % 4
        if kind == 0:
            write_annotation(folder / f"photo{i}.png", rasterize_polygons([poly], SHAPE))
        elif kind == 1:
            write_imagej_roi(folder / f"photo{i}.roi", [poly])
        elif kind == 2:
            write_imagej_roi(folder / f"photo{i}.zip", [poly])
        else:
            write_labelme(folder / f"photo{i}.json", [poly], SHAPE)
    return folder


# --------------------------------------------------------------------------- comparison


def test_run_qa_with_annotation_folder_measures_known_bias_and_dice(tmp_path: Path) -> None:
    out = make_measure_output(tmp_path)
    folder = make_annotation_folder(tmp_path)
    report = run_qa(out, [folder], tmp_path / "qa", by=["site", "area_range"])

    pairs = report.pairs.set_index("photo_sha256")
    assert len(pairs) == 8 and set(pairs["manual_kind"]) == {"mask", "roi", "labelme"}
    # Manual areas in mm² come from each photo's own homography: the known ellipse areas.
    shas = [hashlib.sha256(f"photo{i}".encode()).hexdigest() for i in range(8)]
    for i in range(7):
        assert pairs.loc[shas[i], "manual_area_mm2"] == pytest.approx(_true_area(i), rel=0.02)
    # Photo 7 failed in the automated run: no homography, so its outline has no mm² area.
    assert np.isnan(pairs.loc[shas[7], "manual_area_mm2"])
    assert any("photo7" in i.item and "no calibration" in i.message for i in report.issues)

    row = report.agreement.set_index("comparison").loc["auto vs reader_a"]
    assert row["n"] == 7 and row["n_test_missing"] == 1  # photo 7: automated run failed
    # Semi-axes x 1.05 -> area ratio 1.1025 and Dice 2 / (1 + 1.1025) = 0.951.
    assert row["bias_pct"] == pytest.approx(10.25, abs=1.5)
    assert row["loa_low_pct"] > 5 and row["loa_high_pct"] < 16
    assert row["dice_mean"] == pytest.approx(2 / (1 + AUTO_SCALE**2), abs=0.015)
    assert row["n_dice"] == 7
    manual = pairs["manual_area_mm2"].to_numpy()
    auto = pairs["auto_area_mm2"].to_numpy()
    keep = np.isfinite(auto)
    assert row["bias_mm2"] == pytest.approx(np.mean(auto[keep] - manual[keep]))
    assert row["icc2"] > 0.9 and row["icc3"] > row["icc2"]  # a bias lowers absolute agreement

    site = report.subgroups["site"]
    assert sorted(site["site"]) == ["A", "B"] and site["n"].sum() == 7
    assert report.subgroups["area_range"]["n"].sum() == 7

    files = {p.name for p in report.files}
    for name in (
        "pairs.csv",
        "agreement.csv",
        "agreement_by_site.csv",
        "agreement_by_area_range.csv",
        "unmatched.csv",
        "issues.csv",
        "summary.md",
        "summary.html",
        "qa.json",
        "bland_altman_auto_vs_reader_a.png",
        "scatter_auto_vs_reader_a.png",
    ):
        assert name in files and (tmp_path / "qa" / name).is_file(), name
    # what the folder was made from and by (before: only summary.md said it, with a timestamp)
    import json

    from ulcerseg import __version__

    record = json.loads((tmp_path / "qa" / "qa.json").read_text())
    assert record["package_version"] == __version__ and record["readers"] == ["reader_a"]
    assert record["auto"]["model_sha256"] == {}  # this hand-made table records no model
    ((manual,),) = [record["manual"]]
    assert manual["source"] == str(folder) and len(manual["sha256"]) == 64
    report_again = run_qa(out, [folder], tmp_path / "qa2", by=["site", "area_range"])
    assert (tmp_path / "qa2" / "qa.json").read_text() == (tmp_path / "qa" / "qa.json").read_text().replace(
        str(tmp_path / "qa"), str(tmp_path / "qa2")
    ) and report_again.readers == ["reader_a"]
    # the same inputs give the same QA folder, byte for byte (summary.md had a minute timestamp)
    for name in (
        "summary.md",
        "summary.html",
        "agreement.csv",
        "pairs.csv",
        "bland_altman_auto_vs_reader_a.png",
    ):
        again = (
            (tmp_path / "qa2" / name)
            .read_bytes()
            .replace(str(tmp_path / "qa2").encode(), str(tmp_path / "qa").encode())
        )
        assert again == (tmp_path / "qa" / name).read_bytes(), name
    assert not re.search(r"\d\d:\d\d", (tmp_path / "qa" / "summary.md").read_text())  # within a minute, too
    (folder / next(p.name for p in folder.iterdir() if p.is_file())).write_bytes(b"changed")
    run_qa(out, [folder], tmp_path / "qa3", plots=False)
    changed = json.loads((tmp_path / "qa3" / "qa.json").read_text())["manual"][0]["sha256"]
    assert changed != manual["sha256"]  # the manual source's bytes are what it records
    auto_rows = pd.read_csv(out / "measurements.csv", dtype=str, keep_default_na=False)
    auto_rows["model_sha256"] = ["a" * 64] * 5 + ["b" * 64] * 3
    auto_rows.to_csv(out / "measurements.csv", index=False)
    run_qa(out, [folder], tmp_path / "qa_models", plots=False)
    record_models = json.loads((tmp_path / "qa_models" / "qa.json").read_text())["auto"]["model_sha256"]
    assert record_models == {"a" * 64: 5, "b" * 64: 3}
    unmatched = pd.read_csv(tmp_path / "qa" / "unmatched.csv")
    assert unmatched.empty  # every photo was annotated
    summary = (tmp_path / "qa" / "summary.md").read_text()
    assert "auto vs reader_a" in summary and "ICC(2,1)" in summary and "with no auto area" in summary
    # photos of one subject are not independent: the summary says how many subjects and ulcers
    # the photos come from (before, 12 photos of 2 subjects read like 12 independent pairs)
    assert "The 7 measured photos come from 3 subject(s) and 7 ulcer(s)." in summary


def test_bad_inputs_are_reported_and_the_rest_still_runs(tmp_path: Path) -> None:
    out = make_measure_output(tmp_path)
    folder = make_annotation_folder(tmp_path, n=6)
    # An ROI drawn on a bigger image (coordinates beyond 260 x 200 px) for photo 6.
    write_imagej_roi(folder / "photo6.roi", [photo_polygon(6) * 3.0])
    # A non-binary mask and an annotation for a photo that does not exist.
    grey = np.zeros(SHAPE, np.uint8)
    grey[10:20, 10:20] = 128
    grey[30:40, 30:40] = 255
    Image.fromarray(grey).save(folder / "photo5.png")  # photo5.roi is read after it
    write_labelme(folder / "photo0.json", [photo_polygon(0)], SHAPE)  # second file, photo0
    write_imagej_roi(folder / "stranger.roi", [photo_polygon(1)])
    (folder / "notes.json").write_text('{"reader": "A"}')  # not LabelMe: ignored, no issue
    shas = [hashlib.sha256(f"photo{i}".encode()).hexdigest() for i in range(8)]
    csv = tmp_path / "reader_b.csv"
    pd.DataFrame(
        {
            "photo_sha256": [shas[0], shas[1], shas[2], "f" * 64, shas[4]],
            "area_mm2": [_true_area(0), "-3", "abc", "5", _true_area(4)],
        }
    ).to_csv(csv, index=False)
    report = run_qa(out, [folder, csv], tmp_path / "qa", plots=False)

    messages = [i.line() for i in report.issues]
    text = "\n".join(messages)
    assert "photo6.roi" in text and "outside the 260x200 px image" in text
    assert "stranger.roi" in text and "no photo 'stranger'" in text
    assert "not >= 0" in text and "'abc' is not a number" in text
    assert "f" * 64 in text
    assert "notes" not in text
    assert all("\n" not in m for m in messages)
    issues_csv = pd.read_csv(tmp_path / "qa" / "issues.csv")
    assert len(issues_csv) == len(report.issues)
    assert "photo5.png" in text and "not binary" in text
    # Two files for photo0: the first in name order (photo0.json) is kept, the other reported.
    assert "[photo0.png]: photo already annotated by photo0.json" in text
    # The remaining pairs still produce statistics for both readers.
    ag = report.agreement.set_index("comparison")
    assert ag.loc["auto vs reader_a", "n"] == 6  # photos 0-5
    assert ag.loc["auto vs reader_b", "n"] == 2  # photos 0 and 4
    assert "reader_a vs reader_b" in ag.index
    unmatched = pd.read_csv(tmp_path / "qa" / "unmatched.csv")
    reasons = set(unmatched["reason"])
    assert any("no manual measurement by reader_b" in r for r in reasons)
    assert (unmatched["item"] == "stranger.roi").any()
    summary = (tmp_path / "qa" / "summary.md").read_text()
    assert "photo6.roi" in summary and "Photos not compared" in summary


def test_csv_readers_statuses_and_kappa(tmp_path: Path) -> None:
    out = make_measure_output(tmp_path, failed=())
    files = [f"S{i % 3:02d}/D0/photo{i}.jpg" for i in range(8)]
    a_status = ["healed", "open", "open", "healed", "open", "open", "healed", "open"]
    b_status = ["healed", "open", "healed", "healed", "open", "open", "open", "open"]
    rows = []
    for i, f in enumerate(files):
        rows.append({"file": f, "area_mm2": _true_area(i), "reader": "r1", "status": a_status[i]})
        rows.append(
            {"file": f"photo{i}", "area_mm2": 1.1 * _true_area(i), "reader": "r2",
             "status": b_status[i]}
        )  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "manual.csv", index=False)
    report = run_qa(
        out, tmp_path / "manual.csv", tmp_path / "qa", status_order=["healed", "open"], plots=False
    )
    ag = report.agreement.set_index("comparison")
    assert {"auto vs r1", "auto vs r2", "auto vs readers_mean", "r1 vs r2"} <= set(ag.index)
    # r1/r2 = 1/1.1 exactly for every photo.
    assert ag.loc["r1 vs r2", "bias_pct"] == pytest.approx(100 * (1 / 1.1 - 1))
    assert ag.loc["r1 vs r2", "sd_diff_mm2"] > 0
    k = report.kappa.set_index("comparison").loc["r1 vs r2"]
    # Hand count: agree 6/8; r1 healed 3/8, r2 healed 3/8 -> pe = (3*3 + 5*5)/64.
    pe = (9 + 25) / 64
    assert k["observed_agreement"] == pytest.approx(6 / 8)
    assert k["kappa"] == pytest.approx((6 / 8 - pe) / (1 - pe))
    conf = pd.read_csv(tmp_path / "qa" / "confusion_r1_vs_r2.csv", index_col=0)
    assert conf.to_numpy().sum() == 8


def test_qa_is_registered_in_cli() -> None:
    from ulcerseg.cli import main

    assert main.get_command(None, "qa") is qa_command  # type: ignore[arg-type]


def test_cli_qa_writes_folder(tmp_path: Path) -> None:
    out = make_measure_output(tmp_path, n=6, failed=())
    folder = make_annotation_folder(tmp_path, n=6)
    result = CliRunner().invoke(
        qa_command,
        ["--auto", str(out / "measurements.csv"), "--manual", f"gt={folder}",
         "--by", "subject_id", "-o", str(tmp_path / "qa")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "auto vs gt: n=6" in result.output
    assert (tmp_path / "qa" / "agreement_by_subject_id.csv").is_file()
    html = (tmp_path / "qa" / "summary.html").read_text()
    assert "<table>" in html and "auto vs gt" in html


def test_cli_qa_out_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    # before: `-o FILE` ran the whole comparison, then failed with "File exists", exit 1 (an
    # environment failure) instead of the usage error (exit 2) of every other -o/--out folder
    out = make_measure_output(tmp_path, n=2, failed=())
    folder = make_annotation_folder(tmp_path, n=2)
    (tmp_path / "a_file").write_text("x")
    args = ["--auto", str(out / "measurements.csv"), "--manual", str(folder), "-o", str(tmp_path / "a_file")]
    result = CliRunner().invoke(qa_command, args)
    assert result.exit_code == 2 and "is a file" in result.output, result.output


def test_sample_trial_script_against_ground_truth(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    out = make_measure_output(tmp_path, n=6, failed=())
    trial = tmp_path / "trial"
    (trial / "ground_truth_masks").mkdir(parents=True)
    rows = []
    for i in range(6):
        subject = f"S{i % 3:02d}"
        mask_name = f"{subject}_D0_U{i}.png"  # <subject>_<visit>_<ulcer>, as the synth trial
        write_annotation(
            trial / "ground_truth_masks" / mask_name, rasterize_polygons([photo_polygon(i)], SHAPE)
        )
        rows.append(
            {
                "subject_id": subject,
                "file": f"{subject}/D0/photo{i}.jpg",
                "mask_file": f"ground_truth_masks/{mask_name}",
                "true_area_mm2": _true_area(i),
            }
        )
    pd.DataFrame(rows).to_csv(trial / "ground_truth.csv", index=False)
    script = Path(__file__).resolve().parent.parent / "scripts" / "qa_sample_trial.py"
    spec = importlib.util.spec_from_file_location("qa_sample_trial", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--auto", str(out), "--trial", str(trial), "-o", str(tmp_path / "q")]) == 0
    printed = capsys.readouterr().out
    assert "auto vs ground_truth_area: n=6" in printed and "ICC(2,1)" in printed
    assert "auto vs ground_truth_masks: n=6" in printed and "Dice mean 0.95" in printed
    ag = pd.read_csv(tmp_path / "q" / "agreement.csv").set_index("comparison")
    assert ag.loc["auto vs ground_truth_area", "bias_pct"] == pytest.approx(10.25, abs=1.5)
    # Masks converted with the (here exact) homography agree with the true areas.
    assert abs(ag.loc["ground_truth_area vs ground_truth_masks", "bias_pct"]) < 1.5
    assert pd.read_csv(tmp_path / "q" / "unmatched.csv").empty


def _write_healing_statuses(out: Path, statuses: list[str]) -> None:
    """A healing.csv beside the measurements of :func:`make_measure_output`: one D0 row per
    photo, subjects S00-S02, ulcers U0.., with these statuses."""
    pd.DataFrame(
        {
            "subject_id": [f"S{i % 3:02d}" for i in range(len(statuses))],
            "ulcer_id": [f"U{i}" for i in range(len(statuses))],
            "visit": "D0",
            "status": statuses,
        }
    ).to_csv(out / "healing.csv", index=False)


def test_wide_manual_csv_and_auto_healing_status(tmp_path: Path) -> None:
    from ulcerseg.qa import run_qa as lazy_run_qa

    out = make_measure_output(tmp_path, n=6, failed=())
    auto_status = ["healed", "open", "open", "open", "healed", "open"]
    _write_healing_statuses(out, auto_status)
    # One column per reader; r2 did not measure photo 5.
    pd.DataFrame(
        {
            "file": [f"photo{i}" for i in range(6)],
            "r1_area_mm2": [_true_area(i) for i in range(6)],
            "r2_area_mm2": [f"{_true_area(i):.3f}" for i in range(5)] + [""],
            "r1_status": ["healed", "open", "open", "healed", "healed", "open"],
        }
    ).to_csv(tmp_path / "wide.csv", index=False)
    report = lazy_run_qa(
        out, tmp_path / "wide.csv", tmp_path / "qa", status_order=["healed", "open"], plots=False
    )
    ag = report.agreement.set_index("comparison")
    assert ag.loc["auto vs r1", "n"] == 6 and ag.loc["auto vs r2", "n"] == 5
    assert abs(ag.loc["r1 vs r2", "bias_mm2"]) < 1e-3
    k = report.kappa.set_index("comparison").loc["auto vs r1"]
    # Hand count: agree 5/6; auto healed 2/6, r1 healed 3/6 -> pe = (2*3 + 4*3)/36.
    assert k["observed_agreement"] == pytest.approx(5 / 6)
    pe = (2 * 3 + 4 * 3) / 36
    assert k["kappa"] == pytest.approx((5 / 6 - pe) / (1 - pe))
    assert any("no manual measurement by r2" in r for r in report.unmatched["reason"])


def test_photo_matcher_by_sha_path_name_stem_and_ulcer_key(tmp_path: Path) -> None:
    from ulcerseg.qa.inputs import PhotoMatcher, read_auto

    out = make_measure_output(tmp_path, n=4, failed=())
    matcher = PhotoMatcher(read_auto(out))
    sha = [hashlib.sha256(f"photo{i}".encode()).hexdigest() for i in range(4)]
    assert matcher.match(sha[2].upper())[0] == sha[2]
    assert matcher.match(sha[2][:16])[0] == sha[2]  # the <key> of masks/<key>.png
    assert matcher.match("S00/D0/photo0.jpg")[0] == sha[0]
    assert matcher.match("other_root/S00/D0/photo3.jpg")[0] == sha[3]
    assert matcher.match(".\\S01\\D0\\photo1.jpg")[0] == sha[1]
    assert matcher.match("photo1.png")[0] == sha[1]  # stem of an annotation file
    assert matcher.match("S00_D0_U3")[0] == sha[3]  # <subject>_<visit>_<ulcer>
    missing, why = matcher.match("photo9.jpg")
    assert missing is None and "no photo 'photo9.jpg'" in why
    assert matcher.match("D0/photo2.jpg")[0] == sha[2]  # the end of a path, unambiguous
    assert matcher.match("S02/D0/photo2")[0] == sha[2]  # a mask tree mirroring the study's
    # another subject's photo of the same name is not this one: the reference's folders are
    # never dropped where they would fall inside a photo's path (S07 was paired with S00's)
    for other in ("S07/D0/photo0.jpg", "S07/D0/photo0", "root/S07/D0/photo0.jpg", "W4/photo0.jpg"):
        assert matcher.match(other)[0] is None, other


def test_ids_with_leading_zeros_stay_text(tmp_path: Path) -> None:
    from ulcerseg.qa.inputs import PhotoMatcher, read_auto

    out = make_measure_output(tmp_path, n=2, failed=())
    table = pd.read_csv(out / "measurements.csv", dtype=str)
    table["subject_id"], table["ulcer_id"] = ["001", "1"], ["01", "01"]
    table.to_csv(out / "measurements.csv", index=False)
    auto = read_auto(out)
    assert auto.table["subject_id"].tolist() == ["001", "1"]  # two subjects, not both 1
    sha = [hashlib.sha256(f"photo{i}".encode()).hexdigest() for i in range(2)]
    # <subject>_<visit>_<ulcer>, as the IDs are written (001 read as a number became 1)
    assert PhotoMatcher(auto).match("001_D0_01.png")[0] == sha[0]
    assert PhotoMatcher(auto).match("1_D0_01")[0] == sha[1]


@pytest.mark.filterwarnings("ignore:The inplace keyword")  # pingouin's own pandas deprecation
def test_icc_matches_pingouin_reference() -> None:
    # the core install computes ICCs itself; pingouin (a test tool) is the independent reference
    pingouin = pytest.importorskip("pingouin")
    import pandas as pd

    rng = np.random.default_rng(11)
    truth = rng.uniform(2, 60, 25)
    arr = np.column_stack([truth + rng.normal(b, 3, 25) for b in (0.0, 1.5, -2.0)])
    ours = stats.intraclass_correlations(arr)
    n, k = arr.shape
    long = pd.DataFrame({"t": np.repeat(np.arange(n), k), "r": np.tile(np.arange(k), n), "y": arr.ravel()})
    saved = dict(pingouin.options)
    pingouin.options["round.column.CI95"] = None  # pingouin rounds the CI to 2 digits
    try:
        table = pingouin.intraclass_corr(long, targets="t", raters="r", ratings="y")
    finally:
        pingouin.options.clear()
        pingouin.options.update(saved)
    ci_col = "CI95" if "CI95" in table.columns else "CI95%"
    names = {"ICC1": ("ICC1", "ICC(1,1)"), "ICC2": ("ICC2", "ICC(A,1)"), "ICC3": ("ICC3", "ICC(C,1)")}
    for key, aliases in names.items():
        row = table[table["Type"].isin(aliases)].iloc[0]
        assert ours[key].icc == pytest.approx(float(row["ICC"]), abs=1e-9)
        assert [ours[key].ci_low, ours[key].ci_high] == pytest.approx(list(row[ci_col]), abs=1e-6)


def test_icc_of_identical_or_constantly_offset_areas_is_not_a_traceback() -> None:
    # mse = 0 (every pair equal, or test = reference + 1 mm²): pingouin gives ICC 1 and NaN
    # limits there; a Python ZeroDivisionError stopped `qa` (e.g. a reference that copies the
    # automated areas)
    ref = [2.0, 5.5, 9.0, 14.25]
    same = stats.intraclass_correlations(np.c_[ref, ref])
    assert [same[k].icc for k in ("ICC1", "ICC2", "ICC3")] == [1.0, 1.0, 1.0]
    assert all(np.isnan([same[k].ci_low, same[k].ci_high]).all() for k in same)
    shifted = stats.intraclass_correlations(np.c_[np.add(ref, 1.0), ref])
    assert shifted["ICC3"].icc == 1.0 and np.isnan(shifted["ICC2"].ci_low)
    assert 0.0 < shifted["ICC2"].icc < 1.0 and np.isfinite(shifted["ICC1"].ci_low)
    row = stats.agreement_row(ref, ref)
    assert row["icc2"] == 1.0 and row["bias_mm2"] == 0.0 and row["n"] == 4


def test_a_unitless_area_column_is_read_as_mm2_with_an_issue(tmp_path: Path) -> None:
    """ImageJ's Results "Area" is in the unit set in ImageJ (px², cm², mm²): a column named just
    ``area`` is still read as mm², and issues.csv says so instead of nothing."""
    from ulcerseg.qa.inputs import read_auto, read_manual

    out = make_measure_output(tmp_path, n=3, failed=())
    files = [f"S{i % 3:02d}/D0/photo{i}.jpg" for i in range(3)]
    pd.DataFrame({"file": files, "area": [_true_area(i) for i in range(3)]}).to_csv(
        tmp_path / "m.csv", index=False
    )
    readers, issues, _ = read_manual(tmp_path / "m.csv", read_auto(out))
    assert sum(len(r.entries) for r in readers) == 3
    assert [i.item for i in issues] == ["column area"] and "no unit" in issues[0].message


def test_a_manual_csv_without_rows_is_an_input_error(tmp_path: Path) -> None:
    """A header-only manual CSV ran to exit 0 with a summary saying every automated photo had
    a manual measurement from every reader."""
    from ulcerseg.errors import InputError
    from ulcerseg.qa.inputs import read_auto, read_manual

    out = make_measure_output(tmp_path, n=3, failed=())
    (tmp_path / "m.csv").write_text("file,area_mm2\n")
    with pytest.raises(InputError, match="no manual measurement"):
        read_manual(tmp_path / "m.csv", read_auto(out))


def test_the_same_photo_bytes_at_two_files_are_two_rows(tmp_path: Path) -> None:
    """Bytes copied into another visit's folder: read_auto kept one row per sha256, so a
    reference by file for the dropped copy matched no photo and one by sha256 went to
    whichever visit was kept. Every automated row is kept; a file picks its copy, a sha256
    alone is an ambiguous_photo issue, not paired."""
    out = make_measure_output(tmp_path, n=6, failed=())
    table = pd.read_csv(out / "measurements.csv", dtype=str)
    shared = table.at[4, "photo_sha256"]
    table.loc[5, "photo_sha256"] = shared  # photo5.jpg holds photo4.jpg's bytes
    pd.concat([table, table.iloc[[0]]]).to_csv(out / "measurements.csv", index=False)  # row 0 again
    auto_areas = table["area_mm2"].astype(float)
    files = [f"S{i % 3:02d}/D0/photo{i}.jpg" for i in range(6)]
    pd.DataFrame({"file": files[4:], "area_mm2": [1.0, 2.0]}).to_csv(tmp_path / "by_file.csv", index=False)
    pd.DataFrame({"photo_sha256": [shared], "area_mm2": [3.0]}).to_csv(tmp_path / "by_sha.csv", index=False)
    pd.DataFrame({"photo_sha256": [shared], "file": [files[5]], "area_mm2": [4.0]}).to_csv(
        tmp_path / "both.csv", index=False
    )
    folder = make_annotation_folder(tmp_path, n=6)
    manuals = [tmp_path / "by_file.csv", tmp_path / "by_sha.csv", tmp_path / "both.csv", folder]
    report = run_qa(out, manuals, tmp_path / "qa", plots=False)

    assert report.n_auto_photos == 6
    assert "6 photos, 6 measured, 2 photo files hold bytes also at another file" in report.summary_md
    repeat = [i for i in report.issues if "last row kept" in i.message]
    assert len(repeat) == 1 and repeat[0].item == f"row 2 {files[0]}"
    pairs = report.pairs.set_index(["reader", "file"])
    assert pairs.loc[("by_file", files[4]), "manual_area_mm2"] == 1.0
    assert pairs.loc[("by_file", files[5]), "manual_area_mm2"] == 2.0
    assert pairs.loc[("by_file", files[5]), "photo_sha256"] == shared
    assert pairs.loc[("both", files[5]), "manual_area_mm2"] == 4.0
    assert pairs.loc[("both", files[5]), "auto_area_mm2"] == pytest.approx(auto_areas[5])
    assert "by_sha" not in set(report.pairs["reader"])
    # each copy's outline is measured with its own file's homography
    for i in (4, 5):
        assert pairs.loc[("reader_a", files[i]), "manual_area_mm2"] == pytest.approx(_true_area(i), rel=0.02)
    text = "\n".join(i.line() for i in report.issues)
    assert f"ambiguous_photo: '{shared}' is the same photo bytes at 2 files ({files[4]}, {files[5]})" in text
    unmatched = report.unmatched
    assert unmatched[unmatched["reader"] == "by_sha"]["reason"].str.startswith("ambiguous_photo").any()
    written = pd.read_csv(tmp_path / "qa" / "pairs.csv")
    assert len(written) == len(report.pairs) and "photo_key" not in written.columns


def test_a_row_with_more_fields_than_the_header_is_an_issue_row(tmp_path: Path) -> None:
    """A decimal comma (``file,area_mm2`` then ``photo0.jpg,25,1``) made pandas take the first
    column as the index: a traceback. Such a row is an issue row; the others are read."""
    from ulcerseg.qa.inputs import read_auto, read_manual

    out = make_measure_output(tmp_path, n=3, failed=())
    text = "file,area_mm2\nS00/D0/photo0.jpg,25,1\n\nS01/D0/photo1.jpg,3.5\nS02/D0/photo2.jpg,4,5,6\n"
    (tmp_path / "m.csv").write_text(text)
    readers, issues, _ = read_manual(tmp_path / "m.csv", read_auto(out))
    assert [e.area_mm2 for r in readers for e in r.entries.values()] == [3.5]
    assert [(i.item, i.message) for i in issues] == [
        ("row 2 S00/D0/photo0.jpg", "one field more than the header: area '25,1'?; row skipped"),
        ("row 5 S02/D0/photo2.jpg", "2 field(s) more than the header (file, area_mm2); row skipped"),
    ]


@pytest.mark.filterwarnings("ignore:overflow encountered")  # numpy's, on the squares of 1e300
def test_plots_without_a_positive_pair_or_with_huge_areas(tmp_path: Path) -> None:
    """A healed-only reference (every manual area 0) stopped qa with "Data cannot be
    log-scaled"; a ratio of 1e300 overflowed the percent tick labels and limits. The ratio
    panel is left empty without a positive pair; labels stay finite, an overflowing limit is inf."""
    from ulcerseg.qa.report import plot_bland_altman, plot_scatter

    zero = pd.DataFrame({"test": [5.0, 8.0, 0.0], "reference": [0.0, 0.0, 0.0]})
    huge = pd.DataFrame({"test": [1e300, 16.0, 9.0], "reference": [1.0, 16.5, 8.0]})
    for name, frame in (("zero", zero), ("huge", huge)):
        for plot in (plot_bland_altman, plot_scatter):
            path = plot(frame, "auto vs r", tmp_path / f"{plot.__name__}_{name}.png")
            assert Image.open(path).size[0] > 100
    assert stats.bland_altman_ratio(huge["test"], huge["reference"]).loa_high_pct == np.inf


def test_an_absurd_manual_area_is_an_issue_row(tmp_path: Path) -> None:
    from ulcerseg.qa.inputs import read_auto, read_manual

    out = make_measure_output(tmp_path, n=2, failed=())
    files = [f"S{i % 3:02d}/D0/photo{i}.jpg" for i in range(2)]
    pd.DataFrame({"file": files, "area_mm2": ["1e300", "12"]}).to_csv(tmp_path / "m.csv", index=False)
    readers, issues, _ = read_manual(tmp_path / "m.csv", read_auto(out))
    assert [e.area_mm2 for e in readers[0].entries.values()] == [12.0]
    assert [i.message for i in issues] == ["area 1e300 mm² is more than 1000000 mm² (1 m²); row skipped"]


@pytest.mark.parametrize(
    ("order", "reason"), [("open,healed,open", "repeats open"), (",open,,healed", "has an empty status")]
)
def test_cli_refuses_a_status_order_with_repeats_or_empties(tmp_path: Path, order: str, reason: str) -> None:
    """A repeated status (open,healed,open) counted photos twice in the weighted kappa (n=33
    from 12 photos); empty entries were accepted."""
    out = make_measure_output(tmp_path, n=2, failed=())
    (tmp_path / "m.csv").write_text("file,status\nphoto0,open\nphoto1,healed\n")
    result = CliRunner().invoke(
        qa_command,
        ["--auto", str(out), "--manual", str(tmp_path / "m.csv"), "--status-order", order,
         "-o", str(tmp_path / "qa")],
    )  # fmt: skip
    assert result.exit_code == 2 and reason in result.output and "--status-order" in result.output
    assert not (tmp_path / "qa").exists()


@pytest.mark.parametrize("value", ["inf", "nan", "1e9"])
def test_cli_refuses_a_px_per_mm_that_is_not_finite_or_too_large(tmp_path: Path, value: str) -> None:
    """--px-per-mm inf or nan reached OpenCV's warp: a cv2 traceback."""
    out = make_measure_output(tmp_path, n=2, failed=())
    folder = make_annotation_folder(tmp_path, n=2)
    args = ["--auto", str(out), "--manual", str(folder), "--px-per-mm", value, "-o", str(tmp_path / "q")]
    result = CliRunner().invoke(qa_command, args)
    assert result.exit_code == 2 and "--px-per-mm" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("value", [-20.0, 0.0, 0.5, 1000.5, float("nan"), 1e9, "20"])
def test_run_qa_refuses_a_px_per_mm_the_command_would_refuse(tmp_path: Path, value: object) -> None:
    """run_qa took any px_per_mm: -20 measured every mask annotation at a wrong area (no error),
    0 raised ZeroDivisionError, nan and 1e9 a multi-line cv2.error, "20" a ValueError."""
    out = make_measure_output(tmp_path, n=2, failed=())
    folder = make_annotation_folder(tmp_path, n=2)
    with pytest.raises(ConfigError, match="px_per_mm must be a finite number 1-1000"):
        run_qa(out, [folder], tmp_path / "q", px_per_mm=value, plots=False)  # type: ignore[arg-type]
    assert not (tmp_path / "q").exists()


def test_run_qa_refuses_what_the_command_validates(tmp_path: Path) -> None:
    """No manual reference gave an empty QA folder (None: a TypeError), a status order with a
    repeat a raw ValueError, and names="truth" a reader named "t" (one name per character)."""
    out = make_measure_output(tmp_path, n=2, failed=())
    manual = tmp_path / "m.csv"
    manual.write_text("file,area_mm2,status\nphoto0,3,open\nphoto1,4,healed\n")
    for manuals in ([], None):
        with pytest.raises(InputError, match="no manual reference given"):
            run_qa(out, manuals, tmp_path / "q")  # type: ignore[arg-type]
    for order in (["open", "open"], "healed,open"):
        with pytest.raises(ConfigError, match="status order"):
            run_qa(out, [manual], tmp_path / "q", status_order=order, plots=False)  # type: ignore[arg-type]
    assert not (tmp_path / "q").exists()
    report = run_qa(out, manual, tmp_path / "q", names="truth", plots=False)  # type: ignore[arg-type]
    assert report.readers == ["truth"]


def test_an_auto_table_without_its_columns_or_rows_is_a_one_line_error(tmp_path: Path) -> None:
    """A measurements CSV without a status column (or with only a header) stopped qa with an
    AttributeError in the summary."""
    out = make_measure_output(tmp_path, n=2, failed=())
    table = pd.read_csv(out / "measurements.csv")
    table.drop(columns=["status", "area_mm2"]).to_csv(tmp_path / "nostatus.csv", index=False)
    table.iloc[:0].to_csv(tmp_path / "header.csv", index=False)
    manual = tmp_path / "m.csv"
    manual.write_text("file,area_mm2\nphoto0,3\n")
    for name, reason in (
        ("nostatus.csv", "nostatus.csv: no status, area_mm2 column(s) (not a measurements.csv)"),
        ("header.csv", "header.csv: no photo in the automated results"),
    ):
        args = ["--auto", str(tmp_path / name), "--manual", str(manual), "-o", str(tmp_path / "q")]
        result = CliRunner().invoke(qa_command, args)
        assert isinstance(result.exception, InputError) and reason in str(result.exception), name


def test_a_manual_csv_with_a_repeated_column_is_an_input_error(tmp_path: Path) -> None:
    """``file,area_mm2, area_mm2`` (equal once stripped and lower-cased) raised an AttributeError."""
    from ulcerseg.qa.inputs import read_auto, read_manual

    out = make_measure_output(tmp_path, n=2, failed=())
    (tmp_path / "m.csv").write_text("file,area_mm2, Area_mm2\nphoto0,3,4\n")
    with pytest.raises(InputError, match=r"m\.csv: column 'area_mm2' appears more than once"):
        read_manual(tmp_path / "m.csv", read_auto(out))


def test_a_labelme_file_with_malformed_shapes_is_an_issue_row(tmp_path: Path) -> None:
    """``"shapes": {"0": {}}`` was taken for a JSON file of another tool: dropped at INFO
    level, in no output. JSON without ``shapes`` named as no photo is not ours and ignored;
    named as a photo's tracing, it is an issue row (before: dropped at INFO level too)."""
    out = make_measure_output(tmp_path, n=3, failed=())
    folder = make_annotation_folder(tmp_path, n=1)
    (folder / "photo1.json").write_text('{"shapes": {"0": {}}}')
    (folder / "photo2.json").write_text("[1, 2, 3]")
    (folder / "notes.json").write_text('{"reader": "A"}')
    report = run_qa(out, [folder], tmp_path / "qa", plots=False)
    assert sorted((i.item, i.message) for i in report.issues) == [
        ("photo1.json", "LabelMe 'shapes' must be a list of shape objects"),
        ("photo2.json", "not a LabelMe file (no 'shapes'): not read"),
    ]


def test_reader_names_giving_the_same_file_names_are_refused(tmp_path: Path) -> None:
    """``--manual r-1=a.csv --manual r_1=b.csv`` both slug to r_1: each overwrote the other's
    plots and confusion tables."""
    out = make_measure_output(tmp_path, n=2, failed=())
    (tmp_path / "m.csv").write_text("file,area_mm2\nphoto0,3\nphoto1,4\n")
    (tmp_path / "b.csv").write_text("file,area_mm2\nphoto0,3.5\nphoto1,4.5\n")
    for second in ("r_1", "R 1"):
        args = ["--auto", str(out), "--manual", f"r-1={tmp_path / 'm.csv'}", "--manual",
                f"{second}={tmp_path / 'b.csv'}", "-o", str(tmp_path / "q")]  # fmt: skip
        result = CliRunner().invoke(qa_command, args)
        assert isinstance(result.exception, InputError), result.output
        assert f"reader names 'r-1' and '{second}' give the same output file names" in str(result.exception)
    args = ["--auto", str(out), "--manual", f"readers-mean={tmp_path / 'm.csv'}", "-o", str(tmp_path / "q")]
    assert "'readers_mean' and 'readers-mean'" in str(CliRunner().invoke(qa_command, args).exception)


def test_only_plain_ascii_decimal_areas_are_read(tmp_path: Path) -> None:
    """float() read "1_2" and full-width "１２" as 12 mm²: such a cell is an issue row."""
    from ulcerseg.qa.inputs import read_auto, read_manual

    out = make_measure_output(tmp_path, n=6, failed=())
    cells = ["1_2", "\uff11\uff12", " 12 ", "1.5e1", ".5", "nan"]  # full-width 1 and 2
    text = "file,area_mm2\n" + "".join(f"photo{i},{c}\n" for i, c in enumerate(cells))
    (tmp_path / "m.csv").write_text(text, encoding="utf-8")
    readers, issues, _ = read_manual(tmp_path / "m.csv", read_auto(out))
    assert sorted(e.area_mm2 for e in readers[0].entries.values()) == [0.5, 12.0, 15.0]
    assert [i.message for i in issues] == [
        f"area {c!r} is not a number; row skipped" for c in ("1_2", "\uff11\uff12", "nan")
    ]


def test_summary_records_the_automated_runs_model_config_and_px_per_mm(tmp_path: Path) -> None:
    """QA outputs did not say which model and config made the automated areas, nor at which
    --px-per-mm masks were measured; a table mixing two models lists both with counts."""
    out = make_measure_output(tmp_path, n=3, failed=())
    table = pd.read_csv(out / "measurements.csv")
    table["model_sha256"] = ["a" * 64, "a" * 64, "b" * 64]
    table["config_sha256"] = "c" * 64
    table.to_csv(out / "measurements.csv", index=False)
    folder = make_annotation_folder(tmp_path, n=3)
    report = run_qa(out, [folder], tmp_path / "qa", px_per_mm=25.0, plots=False)
    summary = (tmp_path / "qa" / "summary.md").read_text()
    assert f"model SHA-256 `{'a' * 64}` (2 photos), `{'b' * 64}` (1 photo)" in summary
    assert f"config SHA-256 `{'c' * 64}`; ulcerseg not recorded." in summary
    assert "at 25 px/mm (--px-per-mm)" in summary and report.px_per_mm == 25.0


def test_a_full_disk_leaves_no_truncated_plot_and_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk while saving a plot gave "error: No space left on device" without the file
    and left a truncated PNG behind."""
    import errno

    from matplotlib.figure import Figure

    from ulcerseg.cli.main import _os_error_line

    def full_disk(self: Figure, fname: object, **kwargs: object) -> None:
        Path(str(fname)).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        raise OSError(errno.ENOSPC, "No space left on device")

    out = make_measure_output(tmp_path, n=3, failed=())
    folder = make_annotation_folder(tmp_path, n=3)
    monkeypatch.setattr(Figure, "savefig", full_disk)
    with pytest.raises(OSError) as caught:
        run_qa(out, [folder], tmp_path / "qa")
    plot = tmp_path / "qa" / "bland_altman_auto_vs_reader_a.png"
    assert _os_error_line(caught.value) == f"{plot}: No space left on device"
    assert not [p.name for p in (tmp_path / "qa").iterdir() if p.suffix in (".png", ".tmp")]


def test_bland_altman_confidence_intervals_by_hand() -> None:
    # differences 1, 2, 3, 4, 6: mean 3.2, squared deviations sum 14.8, SD sqrt(14.8 / 4)
    reference = np.full(5, 10.0)
    ba = stats.bland_altman(reference + np.array([1, 2, 3, 4, 6]), reference, k=2.0)
    sd = np.sqrt(3.7)
    t4 = 2.776445  # t distribution, 4 degrees of freedom, 97.5% (tables: 2.776)
    assert (ba.bias, ba.sd) == pytest.approx((3.2, sd))
    assert (ba.loa_low, ba.loa_high) == pytest.approx((3.2 - 2 * sd, 3.2 + 2 * sd))
    half_bias = t4 * sd / np.sqrt(5)
    assert (ba.bias_ci_low, ba.bias_ci_high) == pytest.approx((3.2 - half_bias, 3.2 + half_bias), abs=1e-5)
    half_loa = t4 * sd * np.sqrt(1 / 5 + 2.0**2 / (2 * 4))  # Bland & Altman 1999: SE of a limit
    assert ba.loa_high_ci == pytest.approx((3.2 + 2 * sd - half_loa, 3.2 + 2 * sd + half_loa), abs=1e-5)
    assert ba.loa_low_ci == pytest.approx((3.2 - 2 * sd - half_loa, 3.2 - 2 * sd + half_loa), abs=1e-5)


def test_agreement_row_summarises_dice_by_mean_median_and_min() -> None:
    row = stats.agreement_row([1.0, 2.0, 3.0], [1.0, 2.5, 3.5], dice=[0.2, 0.9, float("nan"), 0.8])
    assert row["n_dice"] == 3  # NaN (no overlap defined) left out
    assert row["dice_median"] == pytest.approx(0.8)
    assert row["dice_mean"] == pytest.approx((0.2 + 0.9 + 0.8) / 3)
    assert row["dice_min"] == pytest.approx(0.2)


def _files(n: int) -> list[str]:
    """The photo files of :func:`make_measure_output`."""
    return [f"S{i % 3:02d}/D0/photo{i}.jpg" for i in range(n)]


def test_an_annotation_tree_mirroring_the_study_tells_same_named_photos_apart(tmp_path: Path) -> None:
    """S01/D0/U1.jpg and S02/D0/U1.jpg: two subjects' photos of one name. A reader's folder
    mirroring the study's tree (S01/D0/U1.roi, S02/D0/U1.roi) pairs each outline with its own
    subject's photo by the whole path; the bare name U1 would be ambiguous."""
    out = make_measure_output(tmp_path, n=4, failed=())
    table = pd.read_csv(out / "measurements.csv", dtype=str)
    table.loc[1, "file"], table.loc[2, "file"] = "S01/D0/U1.jpg", "S02/D0/U1.jpg"
    table.to_csv(out / "measurements.csv", index=False)
    folder = tmp_path / "reader_t"
    write_imagej_roi(folder / "S01" / "D0" / "U1.roi", [photo_polygon(1)])
    write_imagej_roi(folder / "S02" / "D0" / "U1.roi", [photo_polygon(2)])
    report = run_qa(out, [folder], tmp_path / "qa", plots=False)
    pairs = report.pairs.set_index("file")
    assert len(pairs) == 2 and not [i for i in report.issues if i.source == str(folder)]
    assert pairs.loc["S01/D0/U1.jpg", "manual_area_mm2"] == pytest.approx(_true_area(1), rel=0.02)
    assert pairs.loc["S02/D0/U1.jpg", "manual_area_mm2"] == pytest.approx(_true_area(2), rel=0.02)


def test_a_failed_automated_photo_has_no_automated_area_even_if_its_row_holds_one(tmp_path: Path) -> None:
    """A photo whose outputs could not be written is status failed, and its row may still hold
    the area measured before: that is no automated measurement, so its pair has no auto area
    and the agreement counts it among the missing."""
    out = make_measure_output(tmp_path, n=4, failed=())
    table = pd.read_csv(out / "measurements.csv", dtype=str)
    table.loc[3, "status"] = "failed"
    table.to_csv(out / "measurements.csv", index=False)
    files = _files(4)
    pd.DataFrame({"file": files, "area_mm2": [_true_area(i) for i in range(4)]}).to_csv(
        tmp_path / "manual.csv", index=False
    )
    report = run_qa(out, tmp_path / "manual.csv", tmp_path / "qa", plots=False)
    pairs = report.pairs.set_index("file")
    assert np.isnan(pairs.loc[files[3], "auto_area_mm2"])
    assert pairs.loc[files[0], "auto_area_mm2"] == pytest.approx(float(table.loc[0, "area_mm2"]))
    row = report.agreement.set_index("comparison").loc["auto vs manual"]
    assert row["n"] == 3 and row["n_test_missing"] == 1


def test_a_second_row_for_one_photo_by_one_reader_keeps_the_first(tmp_path: Path) -> None:
    out = make_measure_output(tmp_path, n=3, failed=())
    files = _files(3)
    pd.DataFrame({"file": [files[0], files[1], files[0]], "area_mm2": [2.0, 3.0, 5.0]}).to_csv(
        tmp_path / "manual.csv", index=False
    )
    report = run_qa(out, tmp_path / "manual.csv", tmp_path / "qa", plots=False)
    pairs = report.pairs.set_index("file")
    assert len(pairs) == 2 and pairs.loc[files[0], "manual_area_mm2"] == 2.0
    # the repeat is line 4 of the file (header, then rows 2 and 3)
    assert any(i.item == f"row 4 {files[0]}" and "kept first" in i.message for i in report.issues)


def test_auto_vs_readers_mean_uses_only_photos_every_reader_measured(tmp_path: Path) -> None:
    """r2 did not measure photo 3: the readers' mean exists for photos 0-2 only, (10+12)/2 = 11,
    21 and 31 mm², not r1's 40 mm² alone for photo 3."""
    out = make_measure_output(tmp_path, n=4, failed=())
    pd.DataFrame(
        {
            "file": [f"photo{i}" for i in range(4)],
            "r1_area_mm2": [10.0, 20.0, 30.0, 40.0],
            "r2_area_mm2": ["12", "22", "32", ""],
        }
    ).to_csv(tmp_path / "wide.csv", index=False)
    report = run_qa(out, tmp_path / "wide.csv", tmp_path / "qa", plots=False)
    auto = pd.read_csv(out / "measurements.csv")["area_mm2"].to_numpy()
    row = report.agreement.set_index("comparison").loc["auto vs readers_mean"]
    assert row["n"] == 3
    assert row["bias_mm2"] == pytest.approx(np.mean(auto[:3] - np.array([11.0, 21.0, 31.0])))


def test_each_copy_of_shared_photo_bytes_takes_its_own_visits_healing_status(tmp_path: Path) -> None:
    """photo5.jpg holds photo4.jpg's bytes (another ulcer's folder): the healing table has one
    status per visit, healed for photo4's, open for photo5's; each file keeps its own, not the
    last row's of that sha256."""
    from ulcerseg.qa.inputs import read_auto

    out = make_measure_output(tmp_path, n=6, failed=())
    table = pd.read_csv(out / "measurements.csv", dtype=str)
    table.loc[5, "photo_sha256"] = table.at[4, "photo_sha256"]
    table.to_csv(out / "measurements.csv", index=False)
    heal = table[["subject_id", "ulcer_id", "visit", "photo_sha256"]].assign(
        status=["open", "open", "open", "open", "healed", "open"]
    )
    heal.to_csv(out / "healing.csv", index=False)
    auto = read_auto(out)
    status = dict(zip(auto.table["file"], auto.table["healing_status"], strict=True))
    files = _files(6)
    assert status[files[4]] == "healed" and status[files[5]] == "open" and status[files[0]] == "open"


def test_a_row_whose_sha256_and_file_name_different_photos_is_not_used(tmp_path: Path) -> None:
    """A manual row with photo0's sha256 but photo1's file was paired by the sha256 alone:
    photo1's manual area was compared with photo0's automated area, exit 0 and no issue row.
    Such a row (and one whose file is no photo of the run) is an issue row naming both, not
    paired; a row whose file agrees with its sha256, or has no file, is still used."""
    out = make_measure_output(tmp_path, n=4, failed=())
    shas = [hashlib.sha256(f"photo{i}".encode()).hexdigest() for i in range(4)]
    files = _files(4)
    pd.DataFrame(
        {
            "photo_sha256": shas,
            "file": [files[1], files[1], "S09/D0/nothing.jpg", ""],
            "area_mm2": [9.0, _true_area(1), 5.0, _true_area(3)],
        }
    ).to_csv(tmp_path / "m.csv", index=False)
    report = run_qa(out, tmp_path / "m.csv", tmp_path / "qa", plots=False)

    assert sorted(report.pairs["file"]) == sorted([files[1], files[3]])
    messages = {i.item: i.message for i in report.issues}
    assert messages[f"row 2 {shas[0]}"] == (
        f"photo_sha256 names {files[0]} but file names '{files[1]}' (another photo); row not used"
    )
    assert messages[f"row 4 {shas[2]}"] == (
        f"photo_sha256 names {files[2]} but file names 'S09/D0/nothing.jpg' (no photo of the "
        "automated results); row not used"
    )
    assert report.agreement.set_index("comparison").loc["auto vs m", "n"] == 2


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("inf", "area 'inf' is not a number"),
        ("-5", "area -5 mm² is not >= 0"),
        ("abc", "area 'abc' is not a number"),
        ("1e308", "area 1e308 mm² is more than 1000000 mm² (1 m²)"),
        ("", "no area"),
    ],
)
def test_an_automated_area_is_checked_as_a_manual_one(tmp_path: Path, value: str, why: str) -> None:
    """The --auto CSV's areas were read with to_numeric(errors="coerce") and no check: inf
    stopped qa in plot_scatter with a traceback and a half-written folder, -5 entered the
    statistics, 1e308 gave a 300-digit bias, and abc was left out as if the automated run had
    failed (its status was measured). Each is now an issue row, and the photo is left out."""
    out = make_measure_output(tmp_path, n=4, failed=())
    table = pd.read_csv(out / "measurements.csv", dtype=str, keep_default_na=False)
    table.loc[2, "area_mm2"] = value
    table.to_csv(out / "measurements.csv", index=False)
    files = _files(4)
    pd.DataFrame({"file": files, "area_mm2": [_true_area(i) for i in range(4)]}).to_csv(
        tmp_path / "m.csv", index=False
    )
    report = run_qa(out, tmp_path / "m.csv", tmp_path / "qa")

    assert [(i.item, i.message) for i in report.issues] == [
        (f"row 4 {files[2]}", f"measured, but {why}; left out of the statistics")
    ]
    assert np.isnan(report.pairs.set_index("file").at[files[2], "auto_area_mm2"])
    row = report.agreement.set_index("comparison").loc["auto vs m"]
    assert row["n"] == 3 and row["n_test_missing"] == 1
    auto = table["area_mm2"].drop(2).astype(float).to_numpy()
    manual = np.array([_true_area(i) for i in (0, 1, 3)])
    assert row["bias_mm2"] == pytest.approx(np.mean(auto - manual))
    assert (tmp_path / "qa" / "scatter_auto_vs_m.png").is_file() and (
        tmp_path / "qa" / "summary.html"
    ).is_file()
    assert "automated run failed" not in report.summary_md


def test_an_annotation_larger_than_a_finger_is_an_issue_row(tmp_path: Path) -> None:
    """An inverted mask (background and finger traced, not the ulcer) gave a manual area of
    5,536 mm² for a 3 mm² ulcer and entered the statistics (bias -1845 mm²). An annotation
    over the review server's limit for a manual outline (MAX_MANUAL_AREA_MM2, 2,500 mm²) is an
    issue row and left out; the other annotations are compared as before."""
    from ulcerseg.annotations import MAX_MANUAL_AREA_MM2

    out = make_measure_output(tmp_path, n=4, failed=())
    # photos 0 and 3 seen from farther away: 0.25 mm per px, the whole photo ~3,250 mm²
    table = pd.read_csv(out / "measurements.csv", dtype=str, keep_default_na=False)
    for i in (0, 3):
        table.loc[i, "homography"] = json.dumps((np.diag([5.0, 5.0, 1.0]) @ _homography(i)).ravel().tolist())
    table.to_csv(out / "measurements.csv", index=False)
    folder = make_annotation_folder(tmp_path, n=4)
    inverted = rasterize_polygons([photo_polygon(0)], SHAPE) == 0
    write_annotation(folder / "photo0.png", inverted.astype(np.uint8) * 255)
    h, w = SHAPE
    write_labelme(
        folder / "photo3.json", [np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float)], SHAPE
    )
    report = run_qa(out, [folder], tmp_path / "qa", plots=False)

    too_big = {i.item: i.message for i in report.issues if "more than" in i.message}
    assert set(too_big) == {"photo0.png", "photo3.json"}
    assert all(
        f"mm² is more than {MAX_MANUAL_AREA_MM2:g} mm²" in m and m.endswith("not used")
        for m in too_big.values()
    )
    assert sorted(report.pairs["file"]) == sorted(_files(4)[1:3])
    row = report.agreement.set_index("comparison").loc["auto vs reader_a"]
    assert row["n"] == 2 and abs(row["bias_mm2"]) < 2


def test_one_manual_file_given_twice_is_refused(tmp_path: Path) -> None:
    """``--manual truth.csv --manual truth.csv`` was read as two readers, truth and truth_2,
    whose agreement was perfect: a fake inter-reader ICC of 1.000, exit 0. The same file
    twice (by another spelling of its path too) is a one-line error, no QA folder."""
    out = make_measure_output(tmp_path, n=3, failed=())
    csv = tmp_path / "truth.csv"
    pd.DataFrame({"file": _files(3), "area_mm2": [1.0, 2.0, 3.0]}).to_csv(csv, index=False)
    (tmp_path / "sub").mkdir()
    other_spelling = tmp_path / "sub" / ".." / "truth.csv"
    for manuals, error in (
        ([str(csv), str(csv)], f"{csv}: given twice (--manual)"),
        ([f"a={csv}", f"b={other_spelling}"], f"{other_spelling}: the same file as {csv} (--manual)"),
    ):
        args = (
            ["--auto", str(out)]
            + [a for m in manuals for a in ("--manual", m)]
            + ["-o", str(tmp_path / "qa")]
        )
        result = CliRunner().invoke(qa_command, args)
        assert isinstance(result.exception, InputError), result.output
        assert str(result.exception).startswith(error) and "\n" not in str(result.exception)
        assert not (tmp_path / "qa").exists()


def test_kappa_between_two_status_vocabularies_is_an_issue_row(tmp_path: Path) -> None:
    """Manual healed/open against the automated healing statuses (baseline, improving, stable,
    healed, not_assessable) gave a kappa of 0.000 as if it were a measured agreement. Two sets
    of statuses sharing at most one, or under half of the categories, are not compared: an
    issue row suggests --status-order. A reader who used fewer of the same statuses (only
    open) is still compared, and --status-order naming them all compares them."""
    out = make_measure_output(tmp_path, n=6, failed=())
    auto_status = ["baseline", "improving", "stable", "healed", "not_assessable", "baseline"]
    _write_healing_statuses(out, auto_status)
    rows = [
        {"file": f, "reader": "r1", "status": s}
        for f, s in zip(_files(6), ["open"] * 3 + ["healed"] * 3, strict=True)
    ]
    rows += [{"file": f, "reader": "r2", "status": "open"} for f in _files(6)]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    report = run_qa(out, tmp_path / "m.csv", tmp_path / "qa", plots=False)

    assert list(report.kappa["comparison"]) == ["r1 vs r2"]
    skipped = {i.item: i.message for i in report.issues if i.source == "--status-order"}
    assert set(skipped) == {"auto vs r1", "auto vs r2"}
    assert skipped["auto vs r1"] == (
        "auto statuses ['baseline', 'healed', 'improving', 'not_assessable', 'stable'] and r1 statuses "
        "['healed', 'open'] share only ['healed']: not one set of statuses; no kappa (if they are "
        "one scale, give it with --status-order)"
    )
    assert "share no status" in skipped["auto vs r2"]
    assert not (tmp_path / "qa" / "confusion_auto_vs_r1.csv").exists()
    order = ["baseline", "improving", "stable", "not_assessable", "open", "healed"]
    report = run_qa(out, tmp_path / "m.csv", tmp_path / "qa2", status_order=order, plots=False)
    assert set(report.kappa["comparison"]) == {"auto vs r1", "auto vs r2", "r1 vs r2"}


def test_an_area_of_zero_is_a_valid_area_and_failed_rows_without_one_raise_no_issue(tmp_path: Path) -> None:
    """Guards ``parse_area``'s ``area < 0`` (0 mm², a healed ulcer traced as nothing, is an area)
    and ``_auto_areas``' restriction to measured rows (a failed photo has no area by design:
    no issue row for it)."""
    from ulcerseg.qa.inputs import parse_area, read_auto

    assert parse_area("0") == (0.0, "") and parse_area("0.0") == (0.0, "")
    assert parse_area("-0.5")[1] == "area -0.5 mm² is not >= 0"
    csv = tmp_path / "measurements.csv"
    csv.write_text(
        "photo_sha256,file,status,area_mm2\n"
        f"{'a' * 64},S1/D0/U1.jpg,measured,0\n"
        f"{'b' * 64},S1/W4/U1.jpg,failed,\n"
        f"{'c' * 64},S1/W8/U1.jpg,measured,\n",
        encoding="utf-8",
    )
    auto = read_auto(csv)
    assert [(i.item, i.message) for i in auto.issues] == [
        ("row 4 S1/W8/U1.jpg", "measured, but no area; left out of the statistics")
    ]
    areas = dict(zip(auto.table["file"], auto.table["area_mm2"], strict=True))
    assert areas["S1/D0/U1.jpg"] == 0.0


def test_a_hard_link_to_a_manual_file_is_the_same_file(tmp_path: Path) -> None:
    """Guards the (device, inode) key of the repeated-manual check: a hard link has its own
    path, and one reader's tracings given under two names still agree perfectly with
    themselves."""
    import os

    from ulcerseg.qa.compare import _refuse_repeated_manuals

    csv = tmp_path / "truth.csv"
    csv.write_text("file,area_mm2\nS1/D0/U1.jpg,1.0\n", encoding="utf-8")
    linked = tmp_path / "reader_b.csv"
    os.link(csv, linked)
    with pytest.raises(InputError, match=r"reader_b\.csv: the same file as .*truth\.csv \(--manual\)"):
        _refuse_repeated_manuals([csv, linked])
    copied = tmp_path / "copy.csv"  # a copy is another file (another reader may agree exactly)
    copied.write_bytes(csv.read_bytes())
    _refuse_repeated_manuals([csv, copied])


def test_status_vocabularies_rule_at_its_edges() -> None:
    """Guards both sides of ``_vocabulary_mismatch``: a rater whose statuses are a subset of the
    other's is compared whichever of the two comes first, and so are two raters who share
    exactly half of all the categories used (fewer than half is two vocabularies)."""
    from ulcerseg.qa.compare import _vocabulary_mismatch

    full, few = {"healed", "improving", "open", "stable"}, {"open"}
    assert _vocabulary_mismatch({"auto": full, "reader": few}) is None
    assert _vocabulary_mismatch({"reader": few, "auto": full}) is None
    half = ({"healed", "open", "stable"}, {"healed", "open", "worse"})  # 2 shared of 4
    assert _vocabulary_mismatch({"a": half[0], "b": half[1]}) is None
    under = ({"healed", "open", "stable"}, {"healed", "worse", "better"})  # 1 shared of 5
    why = _vocabulary_mismatch({"a": under[0], "b": under[1]})
    assert why is not None and why.startswith("a statuses ['healed', 'open', 'stable'] and b statuses")
    assert "share only ['healed']" in why


def test_plots_leave_the_callers_matplotlib_backend_as_it_is(tmp_path: Path) -> None:
    """run_qa (and the review report, the training curve) called matplotlib.use("Agg"): a
    notebook's inline backend was switched to Agg and its own figures no longer showed."""
    import subprocess
    import sys

    out = make_measure_output(tmp_path, n=2, failed=())
    (tmp_path / "m.csv").write_text("file,area_mm2\nphoto0,3\nphoto1,4\n")
    code = (
        "import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot as plt;"
        "from ulcerseg.qa import run_qa;"
        f"run_qa({str(out)!r}, [{str(tmp_path / 'm.csv')!r}], {str(tmp_path / 'q')!r});"
        "print(matplotlib.get_backend(), len(plt.get_fignums()))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["svg", "0"], done.stderr
    assert (tmp_path / "q" / "scatter_auto_vs_m.png").stat().st_size > 0
