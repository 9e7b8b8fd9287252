"""The end-to-end benchmark on real wound photos: placement, truth, statistics and fitting."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import RednessBackend

from ulcerseg.config import PipelineConfig
from ulcerseg.geometry import RectifiedGrid
from ulcerseg.segmentation.model import ModelCard, save_card
from ulcerseg.synth import woundpatch
from ulcerseg.synth.render import PhotoConfig
from ulcerseg.synth.woundpatch import PlaneBackground, crop_wound, padding_mask, render_wound_photo

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_endtoend.py"


@functools.cache
def _bench():
    spec = importlib.util.spec_from_file_location("bench_endtoend", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


def _wound_photo(size: int = 128, radius: int = 18, pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A wound photo like FUSeg's: skin, a red wound disk, optional black zero-padding rows."""
    rgb = np.zeros((size, size, 3), np.uint8)
    rgb[pad:, :] = (205, 160, 140)
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2 + pad // 2), radius, 1, -1)
    rgb[mask > 0] = (250, 15, 15)  # red enough for the redness test double at any exposure
    return rgb, mask


def test_crop_keeps_the_wound_opaque_and_drops_padding() -> None:
    rgb, mask = _wound_photo(pad=20)
    pad = padding_mask(rgb)
    assert pad[:20].all() and not pad[20:].any()
    crop, crop_mask, alpha, box = crop_wound(rgb, mask, np.random.default_rng(0))
    x0, y0, x1, y1 = box
    assert crop.shape[:2] == crop_mask.shape == alpha.shape == (y1 - y0, x1 - x0)
    assert crop_mask.sum() == mask.sum()  # the whole wound is inside the crop
    assert (alpha[crop_mask] == 1).all()
    assert alpha[0, 0] == 0  # feathered out at the crop's corner
    with pytest.raises(ValueError, match="empty"):
        crop_wound(rgb, np.zeros_like(mask), np.random.default_rng(0))


def test_placed_wound_has_the_chosen_area_and_its_mask_on_any_grid() -> None:
    rgb, mask = _wound_photo()
    config = PhotoConfig(size=(800, 600), max_tilt_deg=40.0, jpeg_quality_range=(80, 95))
    photo = render_wound_photo(rgb, mask, np.random.default_rng(3), config, area_mm2=12.0)
    assert photo.image.shape == (600, 800, 3)
    assert photo.true_area_mm2 == pytest.approx(12.0)
    assert photo.marker_distance_mm >= 5.0
    assert photo.tilt_deg <= 40.0 and 80 <= photo.jpeg_quality <= 95
    x0, y0, x1, y1 = photo.patch.bbox_mm("wound", margin_mm=1.0)
    grid = RectifiedGrid.covering(x0, y0, x1, y1, 40.0)
    sampled = photo.patch.mask_on_grid(grid).sum() / 40.0**2
    assert sampled == pytest.approx(12.0, rel=0.03)
    # the wound centre is red in the photo (where the camera put it)
    from ulcerseg.geometry import apply_homography

    centre_px = apply_homography(photo.homography, np.array([photo.scene.ulcer_centre_mm]))[0]
    u, v = np.round(centre_px).astype(int)
    r, g, b = photo.image[v, u].astype(int)
    assert r > g + 60 and r > b + 60


@pytest.mark.parametrize("kind", list(woundpatch.BACKGROUND_KINDS))
def test_every_background_kind_renders(kind: str) -> None:
    bg = PlaneBackground.random(np.random.default_rng(1), kind)
    img = bg.render(RectifiedGrid((0.0, 0.0), 5.0, 40, 30), (0.0, 0.0))
    assert img.shape == (30, 40, 3) and img.dtype == np.float32
    assert img.min() >= 0.0 and img.max() <= 1.6


def _dataset_and_card(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "tinywounds"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    for i, stem in enumerate(["a1", "b2", "c3", "d4"]):
        rgb, mask = _wound_photo(radius=14 + 3 * i)
        cv2.imwrite(str(data / "images" / f"{stem}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(data / "masks" / f"{stem}.png"), mask * 255)
    model = tmp_path / "model"
    record = {"name": "tinywounds", "val_stems": ["a1", "b2"], "n_train": 2, "n_val": 2}
    save_card(ModelCard(name="t", px_per_mm=10.0, tile_px=64, training={"data": [record]}), model)
    return data, model


def test_benchmark_end_to_end_on_two_small_photos(tmp_path: Path, monkeypatch, capsys) -> None:
    bench = _bench()
    data, model = _dataset_and_card(tmp_path)
    # the redness test double would take red cloth for a wound: lay the wounds on gauze
    monkeypatch.setattr(woundpatch, "BACKGROUND_KINDS", {"gauze": 1.0})
    out = tmp_path / "bench"
    kwargs = {"backend": RednessBackend(), "size": (1200, 900)}
    df = bench.run_benchmark(data, str(model), out, 2, 0, PipelineConfig(), **kwargs)
    assert len(df) == 2
    assert set(df["stem"]) == {"a1", "b2"}  # only the card's held-out photos, never c3/d4
    assert set(df["part"]) <= {"calib", "test"}
    assert df["found"].all()
    assert (df["error_pct"].abs() < 15).all()
    assert (df["dice"] > 0.8).all()
    assert (df["truth_recall"] > 0.8).all() and (df["measured_precision"] > 0.8).all()
    assert (out / "truth.csv").is_file() and (out / "per_photo.csv").is_file()
    assert sorted(p.relative_to(out / "study").as_posix() for p in (out / "study").rglob("*.jpg")) == [
        "E000/D0/U1.jpg",
        "E001/D0/U1.jpg",
    ]
    # a second run reuses the photos and the measurement
    bench.run_benchmark(data, str(model), out, 2, 0, PipelineConfig(), **kwargs)
    printed = capsys.readouterr().out
    assert "0 generated, 2 reused" in printed and "measure: reused" in printed
    # another ulcerseg version (the same config and model): its figures are not this one's
    import ulcerseg.pipeline

    for module in (bench.ulcerseg, ulcerseg.pipeline):
        monkeypatch.setattr(module, "__version__", "0.0.0-other")
    again = bench.run_benchmark(data, str(model), out, 2, 0, PipelineConfig(), **kwargs)
    printed = capsys.readouterr().out
    assert "measuring again" in printed and "measure: 2 measured" in printed
    assert set(again["package_version"]) == {"0.0.0-other"}
    summary = bench.summarize(df)
    assert summary.n == 2 and summary.found_rate == 1.0 and summary.n_wrong == 0
    median, low, high = bench.scale_error_pct(df)  # the marker's scale against the camera's
    assert -0.5 < low <= median <= high < 0.5


def test_several_seeds_render_the_same_wounds_anew_and_pool_them(tmp_path: Path, monkeypatch) -> None:
    bench = _bench()
    data, model = _dataset_and_card(tmp_path)
    monkeypatch.setattr(woundpatch, "BACKGROUND_KINDS", {"gauze": 1.0})
    out = tmp_path / "bench"
    kwargs = {"backend": RednessBackend(), "size": (1200, 900), "dice": False}
    df = bench.run_seeds(data, str(model), out, 2, [0, 1], PipelineConfig(), **kwargs)
    assert list(df["bench_seed"]) == [0, 0, 1, 1]
    assert df["file"].is_unique and set(df["file"].str.split("/").str[0]) == {"seed0", "seed1"}
    # the same held-out wounds, each in the same part under both seeds, photographed anew
    by_seed = [df[df["bench_seed"] == k].set_index("stem") for k in (0, 1)]
    assert set(by_seed[0].index) == set(by_seed[1].index) == {"a1", "b2"}
    assert (by_seed[0]["part"] == by_seed[1].loc[by_seed[0].index, "part"]).all()
    assert not np.allclose(by_seed[0]["true_area_mm2"], by_seed[1].loc[by_seed[0].index, "true_area_mm2"])
    pooled = pd.read_csv(out / "per_photo.csv")
    assert len(pooled) == 4 and all((out / f"seed{k}" / "truth.csv").is_file() for k in (0, 1))
    # one seed keeps the single-run layout
    single = bench.run_seeds(data, str(model), tmp_path / "one", 2, [0], PipelineConfig(), **kwargs)
    assert "bench_seed" not in single and (tmp_path / "one" / "truth.csv").is_file()


def test_a_wound_centre_condition_renders_the_same_photos_with_a_dark_centre(tmp_path: Path) -> None:
    """``--wound-centre eschar``: the same camera, light, background and truth as the default
    photos (paired comparison), each wound's centre black, its rim its own; never mixed up with
    the default photos in one folder."""
    bench = _bench()
    data, _model = _dataset_and_card(tmp_path)
    out = tmp_path / "bench"
    default = bench.generate(data, ["a1", "b2"], {"a1", "b2"}, out, 0, (1200, 900))
    plain = {f: cv2.imread(str(out / "study" / f)) for f in default["file"]}
    dark = bench.generate(data, ["a1", "b2"], {"a1", "b2"}, out, 0, (1200, 900), wound_centre="eschar")
    assert list(dark["wound_centre"]) == ["eschar"] * 2 and list(default["wound_centre"]) == ["none"] * 2
    same = ["true_area_mm2", "tilt_deg", "mm_per_px", "background", "centre_x_mm", "centre_y_mm"]
    pd.testing.assert_frame_equal(dark[same], default[same])  # regenerated, not reused, same scene
    for f in dark["file"]:
        after = cv2.imread(str(out / "study" / f))
        changed = np.abs(after.astype(int) - plain[f].astype(int)).max(axis=2) > 40
        assert 50 < changed.sum() < 0.05 * changed.size  # the wound's centre only
        red = 2  # BGR
        assert after[changed][:, red].mean() < 0.8 * plain[f][changed][:, red].mean()  # turned dark


def test_a_dark_skin_condition_renders_the_same_photos_with_pigmented_skin(tmp_path: Path) -> None:
    """``--skin-tone dark``: the same scene and truth, the skin around each wound darker, and
    switching back to the photo's own tone renders the default photos again (never reused)."""
    bench = _bench()
    data, _model = _dataset_and_card(tmp_path)
    out = tmp_path / "bench"
    default = bench.generate(data, ["a1", "b2"], {"a1", "b2"}, out, 0, (1200, 900))
    plain = {f: cv2.imread(str(out / "study" / f)) for f in default["file"]}
    dark = bench.generate(data, ["a1", "b2"], {"a1", "b2"}, out, 0, (1200, 900), skin_tone="dark")
    assert list(dark["skin_tone"]) == ["dark"] * 2 and list(default["skin_tone"]) == ["own"] * 2
    same = ["true_area_mm2", "tilt_deg", "mm_per_px", "background", "centre_x_mm", "centre_y_mm"]
    pd.testing.assert_frame_equal(dark[same], default[same])
    for f in dark["file"]:
        after = cv2.imread(str(out / "study" / f)).astype(int)
        changed = np.abs(after - plain[f].astype(int)).max(axis=2) > 20
        assert changed.sum() > 500  # the skin of the wound's crop
        assert after[changed].sum() < 0.75 * plain[f][changed].astype(int).sum()  # darker
    dark_photos = {f: cv2.imread(str(out / "study" / f)) for f in dark["file"]}
    variant = bench.generate(data, ["a1", "b2"], {"a1", "b2"}, out, 0, (1200, 900),
                             skin_tone="dark-sharp-edge-bed-own")  # fmt: skip
    assert list(variant["skin_tone"]) == ["dark-sharp-edge-bed-own"] * 2  # its own cache key
    pd.testing.assert_frame_equal(variant[same], default[same])
    for f in variant["file"]:  # rendered anew, not the "dark" photos reused
        assert not np.array_equal(cv2.imread(str(out / "study" / f)), dark_photos[f])
    again = bench.generate(data, ["a1", "b2"], {"a1", "b2"}, out, 0, (1200, 900))
    assert list(again["skin_tone"]) == ["own"] * 2
    assert all(np.array_equal(cv2.imread(str(out / "study" / f)), plain[f]) for f in again["file"])


def test_benchmark_refuses_without_data_or_held_out_split(tmp_path: Path, capsys) -> None:
    bench = _bench()
    data, model = _dataset_and_card(tmp_path)
    assert bench.main(["--data", str(tmp_path / "nowhere"), "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench_endtoend:") and "nowhere" in err and "\n" not in err
    save_card(ModelCard(name="t", px_per_mm=10.0, tile_px=64), model)  # no training records
    with pytest.raises(bench.BenchError, match="refusing"):
        bench.heldout_stems(model, data)


def test_error_anatomy_tells_edge_disagreements_from_other_errors() -> None:
    bench = _bench()
    rows = [  # (error %, found, truth recall, measured precision)
        (+80.0, True, 0.98, 0.55),  # drew the edge outside the true wound: nested
        (+60.0, True, 0.40, 0.30),  # took part of something else: not nested
        (-40.0, True, 0.60, 0.97),  # stayed inside the true wound: nested
        (-30.0, True, 0.50, 0.70),  # shifted: not nested
        (-100.0, False, 0.0, 0.0),  # not found
        (+10.0, True, 0.95, 0.90),  # right
    ]
    df = pd.DataFrame(rows, columns=["error_pct", "found", "truth_recall", "measured_precision"])
    df["wrong"] = ~df["found"] | (df["error_pct"].abs() > 25)
    a = bench.error_anatomy(df)
    assert (a.n_wrong, a.not_found, a.over, a.over_nested, a.under, a.under_nested) == (5, 1, 2, 1, 2, 1)


def test_edge_shift_reads_area_errors_as_a_shift_of_the_outline() -> None:
    bench = _bench()
    r = np.array([2.0, 4.0, 8.0])  # true discs of radius r mm, outlines 0.1 mm too wide
    df = pd.DataFrame({
        "found": [True, True, True, False],
        "area_mm2": [*np.pi * (r + 0.1) ** 2, 0.0],
        "true_area_mm2": [*np.pi * r**2, 5.0],
        "perimeter_mm": [*2 * np.pi * (r + 0.1), 0.0],
        "src_px_per_mm": [10.0, 10.0, 10.0, 10.0],
    })  # fmt: skip
    e = bench.edge_shift(df)
    assert e.median_abs_mm == pytest.approx(0.1, abs=0.003)  # the unfound photo left out
    assert e.median_abs_src_px == pytest.approx(1.0, abs=0.03)
    # one source px (0.1 mm) on a disc of radius 4 mm: ~5% of its area
    assert e.median_pct_per_src_px == pytest.approx(100 * 2 * 4.1 * 0.1 / 4.0**2, rel=1e-9)


def test_per_wound_share_separates_the_wound_from_its_renders() -> None:
    b = _bench()
    # wound A is always measured 20% large, wound B 20% small; the renders add +-5%
    rows = []
    for stem, bias in (("A", 1.2), ("B", 0.8)):
        for noise in (0.95, 1.05):
            rows.append({"stem": stem, "found": True, "true_area_mm2": 10.0, "area_mm2": 10.0 * bias * noise})
    rows.append({"stem": "C", "found": False, "true_area_mm2": 10.0, "area_mm2": 0.0})
    w = b.per_wound(pd.DataFrame(rows))
    assert w is not None and w.n_wounds == 2
    assert 0.9 < w.wound_share < 1.0
    assert w.median_abs_wound_mean_pct == pytest.approx(20.0, abs=0.5)
    # the change between a wound's two renders: its bias cancels, the renders' +-5% stay
    assert w.n_pairs == 2 and w.median_abs_change_pct == pytest.approx((1.05 / 0.95 - 1) * 100)
    # flags: a pair counts as unflagged only when neither of its photos is flagged
    flagged = pd.DataFrame(rows).assign(flagged=[True, False, False, False, False])
    flagged.loc[3, "area_mm2"] = 10.0 * 0.8 * 1.5  # B's second render 50% off, its pair unflagged
    w = b.per_wound(flagged)
    assert w.n_unflagged_pairs == 1
    assert w.median_abs_change_unflagged_pct == pytest.approx((1.5 / 0.95 - 1) * 100)
    # the same errors, but each render's sign swapped: the renders, not the wound, are wrong
    swapped = pd.DataFrame(rows)
    swapped.loc[[1, 3], "area_mm2"] = [10.0 / 1.2, 10.0 / 0.8]
    assert b.per_wound(swapped).wound_share < 0.1
    # one render per wound: nothing to split
    assert b.per_wound(pd.DataFrame(rows[::2])) is None


def test_median_interval_resamples_wounds_not_photos() -> None:
    b = _bench()
    # ten wounds, each rendered four times with the same error: the interval is that of ten
    # values, wider than four times as many independent photos would give
    errors = np.linspace(2.0, 40.0, 10)
    df = pd.DataFrame({"stem": np.repeat([f"w{i}" for i in range(10)], 4), "error_pct": np.repeat(errors, 4)})
    low, high = b.median_interval_by_wound(df)
    assert low < float(np.median(errors)) < high
    assert b.median_interval_by_wound(df) == (low, high)  # seeded
    photos = df.assign(stem=[f"p{i}" for i in range(len(df))])
    p_low, p_high = b.median_interval_by_wound(photos)
    assert high - low > 1.3 * (p_high - p_low)
    # every wound alike: nothing to resample
    same = df.assign(error_pct=-12.0)
    assert b.median_interval_by_wound(same) == (12.0, 12.0)


def test_split_is_deterministic_and_balanced() -> None:
    bench = _bench()
    stems = [f"{i:04d}" for i in range(400)]
    parts = [bench.part_of(s) for s in stems]
    assert parts == [bench.part_of(s) for s in stems]
    assert 0.4 < parts.count("test") / len(parts) < 0.6
    assert bench.choose_stems(stems[:5], 7, 0) == bench.choose_stems(stems[:5], 7, 0)
    assert sorted(bench.choose_stems(stems[:5], 5, 0)) == stems[:5]


def _frame(n: int, seed: int) -> pd.DataFrame:
    """Photos whose log area error grows with the band ratio; a few ambiguous ones are far off."""
    rng = np.random.default_rng(seed)
    band = rng.uniform(0.05, 0.6, n)
    true = rng.uniform(3, 80, n)
    ambiguous = rng.random(n) < 0.15
    log_err = rng.normal(-0.05, 0.5 * band) + np.where(ambiguous, 1.0, 0.0)
    area = true * np.exp(log_err)
    df = pd.DataFrame(
        {"true_area_mm2": true, "area_mm2": area, "band_ratio": band,
         "ambiguity": np.where(ambiguous, 0.9, 0.1), "on_body": 1.0, "mean_probability": 0.9,
         "boundary_margin": 0.4, "sharpness": 100.0, "clipped_high": 0.0, "clipped_low": 0.0,
         "mean_luma": 120.0,
         "status": "measured", "flags": "", "found": True}
    )  # fmt: skip
    df["error_pct"] = 100 * (df["area_mm2"] / df["true_area_mm2"] - 1)
    df["wrong"] = df["error_pct"].abs() > 25
    return df


def test_fitted_flags_catch_the_predictable_errors() -> None:
    bench = _bench()
    calib, test = _frame(300, 0), _frame(300, 1)
    thresholds = bench.fit_flag_thresholds(calib, max_flagged=0.5)
    assert 0.1 < thresholds["max_candidate_ambiguity"] < 0.9
    assert thresholds["max_clipped_fraction"] == 0.5  # exposure keeps its base threshold
    flagged = bench.apply_flag_thresholds(test, thresholds)
    caught = (flagged["flagged"] & flagged["wrong"]).sum() / flagged["wrong"].sum()
    assert caught > 0.6 and flagged["flagged"].mean() <= 0.55
    # nothing to gain: every threshold stays at its base (the new checks never fire; the
    # rival-candidate rule keeps its policy threshold)
    quiet = calib.assign(wrong=False)
    never = bench.fit_flag_thresholds(quiet)
    assert never["min_boundary_margin"] == 0.0 and never["max_tta_disagreement"] == 1.0
    assert never["max_candidate_ambiguity"] == bench.FIT_BASE.max_candidate_ambiguity == 0.45


def test_recall_ceiling_of_a_perfect_flag_within_the_budget() -> None:
    bench = _bench()
    summary = bench.Summary(n=100, found_rate=1.0, median_abs_error_pct=10.0, p90_abs_error_pct=40.0,
                            bias_pct=0.0, loa_low_pct=-50.0, loa_high_pct=50.0, mean_dice=0.8,
                            n_wrong=36, n_flagged=25, n_wrong_flagged=20, coverage=0.9)  # fmt: skip
    assert summary.recall_ceiling(0.30) == pytest.approx(30 / 36)  # 36 wrong, 30 may be flagged
    assert summary.recall_ceiling(0.50) == 1.0
    assert np.isnan(bench.Summary(**{**summary.__dict__, "n_wrong": 0}).recall_ceiling())


def test_conformal_interval_covers_90_percent_of_new_photos() -> None:
    bench = _bench()
    from ulcerseg.measure import area_interval

    calib, test = _frame(400, 2), _frame(2000, 3)
    fit = bench.fit_interval(calib)
    covered = []
    for _, r in test.iterrows():
        band = r["band_ratio"] * r["area_mm2"]
        q = (fit["interval_floor"], fit["interval_q_low"], fit["interval_q_high"])
        lo, hi = area_interval(r["area_mm2"], r["area_mm2"] - band / 2, r["area_mm2"] + band / 2, *q)
        covered.append(lo <= r["true_area_mm2"] <= hi)
    assert 0.86 <= np.mean(covered) <= 0.94


def test_paired_comparison_separates_a_real_change_from_noise(tmp_path: Path, capsys) -> None:
    bench = _bench()
    rng = np.random.default_rng(0)
    n = 120
    error = rng.normal(0, 20, n)
    before = pd.DataFrame({"file": [f"E{i:03d}" for i in range(n)], "error_pct": error, "found": True,
                           "dice": 0.8})  # fmt: skip
    # every error shrunk by a third, one ulcer lost: a real improvement, and a lost photo counts 100%
    better = before.assign(error_pct=error * 2 / 3, dice=0.85)
    better.loc[0, "found"] = False
    c = bench.compare(before, better)
    assert c.n == n and c.median_after < c.median_before
    assert c.median_change_ci[1] < 0 and c.wilcoxon_p < 0.01
    assert c.n_worse == (1 if abs(error[0]) < 99.5 else 0) and c.dice_after == pytest.approx(0.85)
    # the same photos measured again with noise of a point: no change can be claimed
    noisy = before.assign(error_pct=error + rng.normal(0, 1, n))
    c = bench.compare(before, noisy)
    assert c.median_change_ci[0] < 0 < c.median_change_ci[1] and c.wilcoxon_p > 0.01
    # only shared photos are paired; two unrelated tables are an error
    assert bench.compare(before, better.iloc[:50]).n == 50
    with pytest.raises(bench.BenchError, match="share no photo"):
        bench.compare(before, better.assign(file="other"))
    # the command: two tables in, figures out, nothing measured; a wrong file is one line
    before.to_csv(tmp_path / "a.csv", index=False)
    better.to_csv(tmp_path / "b.csv", index=False)
    assert bench.main(["--compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]) == 0
    assert "paired comparison: 120 photos" in capsys.readouterr().out
    (tmp_path / "c.csv").write_text("x,y\n1,2\n")
    assert bench.main(["--compare", str(tmp_path / "a.csv"), str(tmp_path / "c.csv")]) == 2
    err = capsys.readouterr().err
    assert "c.csv: not a per_photo.csv" in err and len(err.strip().splitlines()) == 1


def test_change_between_pairs_other_renders_of_the_same_wound() -> None:
    b = _bench()

    def row(stem: str, seed: int, true: float, measured: float, flagged: bool = False) -> dict:
        return {"stem": stem, "seed": seed, "found": measured > 0, "true_area_mm2": true,
                "area_mm2": measured, "flagged": flagged}  # fmt: skip

    # this run: wound A rendered with an eschar centre, measured 30% small
    this = pd.DataFrame([row("A", 1, 10.0, 7.0), row("B", 1, 10.0, 0.0)])
    others = pd.DataFrame([
        row("A", 1, 10.0, 10.0),  # the same render (seed): not another photo
        row("A", 2, 20.0, 20.0),  # another render, twice the size, measured right
        row("A", 3, 5.0, 5.5, flagged=True),
        row("B", 2, 10.0, 10.0),  # B was not found in this run: no pair
    ])  # fmt: skip
    c = b.change_between(this, others)
    assert c.n_pairs == 2
    # A grows 2x (and 0.5x) in truth; measured from 7 to 20 (and to 5.5): 1/0.7 and 1.1/0.7
    assert c.median_signed_pct == pytest.approx((np.sqrt(1 / 0.7 * 1.1 / 0.7) - 1) * 100)
    assert c.median_abs_pct == pytest.approx(((1 / 0.7 + 1.1 / 0.7) / 2 - 1) * 100)
    assert c.n_unflagged == 1 and c.median_abs_unflagged_pct == pytest.approx((1 / 0.7 - 1) * 100)
    with pytest.raises(b.BenchError, match="no wound has a found photo in both tables"):
        b.change_between(this, others[others["stem"] == "B"])


def test_the_sweeps_edge_snap_picks_the_outline_on_the_wounds_edge() -> None:
    """``sweep_endtoend.py --edge-snap``: of the candidate outlines, the one on the colour edge."""
    _bench()  # the sweep imports bench_endtoend by name
    spec = importlib.util.spec_from_file_location("sweep_endtoend", SCRIPT.parent / "sweep_endtoend.py")
    assert spec is not None and spec.loader is not None
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    image, wound = _wound_photo(radius=18)
    yy, xx = np.mgrid[: wound.shape[0], : wound.shape[1]]
    r = np.hypot(yy - (wound.shape[0] - 1) / 2, xx - (wound.shape[1] - 1) / 2)
    candidates = [r <= 10, r <= 18, r <= 26]
    assert candidates[1].sum() == pytest.approx(wound.sum(), rel=0.1)
    chosen = sweep.on_strongest_edge(candidates, sweep.edge_strength(image))
    assert chosen is candidates[1]
    assert sweep.on_strongest_edge([np.zeros_like(wound), r <= 26], sweep.edge_strength(image)) is not None
