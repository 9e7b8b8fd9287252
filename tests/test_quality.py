import cv2
import numpy as np
import pytest
from conftest import make_photo

from ulcerseg.calibration.marker import calibrate
from ulcerseg.config import QualityConfig
from ulcerseg.quality import calibration_flags, image_flags, mask_flags, search_coverage, sharpness
from ulcerseg.records import Calibration, Flag, Measurement

CFG = QualityConfig()


def _textured(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, (200, 200, 3), dtype=np.uint8)
    return cv2.GaussianBlur(base, (3, 3), 0)


def _cal(**changes: float) -> Calibration:
    values = dict(
        marker_id=0, corners_px=((0, 0), (1, 0), (1, 1), (0, 1)), homography=tuple(np.eye(3).ravel()),
        mm_per_px=0.05, tilt_deg=10.0, residual_px=0.2, side_mm=10.0, n_markers_found=1,
    )  # fmt: skip
    values.update(changes)
    return Calibration(**values)  # type: ignore[arg-type]


def _meas(area: float = 10.0, prob: float = 0.99, low: float = 9.5, high: float = 10.5) -> Measurement:
    return Measurement(area, 12.0, 4.0, 3.0, 1, prob, low, high, 15.0)


def test_good_photo_has_no_flags() -> None:
    valid = np.ones((200, 200), bool)
    assert image_flags(_textured(), valid, CFG) == []
    assert calibration_flags(_cal(), CFG) == []


def test_blur_is_flagged() -> None:
    valid = np.ones((200, 200), bool)
    blurred = cv2.GaussianBlur(_textured(), (0, 0), 6)
    assert sharpness(cv2.cvtColor(blurred, cv2.COLOR_RGB2GRAY), valid) < CFG.min_sharpness
    assert Flag.BLURRED in image_flags(blurred, valid, CFG)


@pytest.mark.parametrize(("shift", "flag"), [(120, Flag.OVEREXPOSED), (-140, Flag.UNDEREXPOSED)])
def test_exposure_is_flagged(shift: int, flag: Flag) -> None:
    img = np.clip(_textured().astype(int) + shift, 0, 255).astype(np.uint8)
    assert flag in image_flags(img, np.ones((200, 200), bool), CFG)


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"tilt_deg": 60.0}, Flag.MARKER_TOO_OBLIQUE),
        ({"mm_per_px": 0.2}, Flag.LOW_RESOLUTION),  # 5 px per mm
        ({"residual_px": 3.0}, Flag.MARKER_DISTORTED),
        ({"residual_px": float("nan")}, Flag.MARKER_DISTORTED),
        ({"bend": 0.05}, Flag.MARKER_DISTORTED),  # a sticker bent over a finger
        ({"n_markers_found": 2}, Flag.AMBIGUOUS_MARKER),
    ],
)
def test_calibration_flags(changes: dict, flag: Flag) -> None:
    assert calibration_flags(_cal(**changes), CFG) == [flag]


def test_tilt_of_a_real_oblique_photo_is_flagged() -> None:
    photo = make_photo(tilt_deg=58, px_per_mm=20, size=(1280, 960))
    cal = calibrate(photo.rgb, "DICT_4X4_50", (0,), 10.0)
    assert Flag.MARKER_TOO_OBLIQUE in calibration_flags(cal, CFG)


def test_mask_flags() -> None:
    valid = np.ones((100, 100), bool)
    inside = np.zeros((100, 100), bool)
    inside[40:60, 40:60] = True
    assert mask_flags(_meas(), inside, valid, CFG) == []
    assert mask_flags(_meas(area=0.0), inside, valid, CFG) == [Flag.NO_ULCER_FOUND]
    assert Flag.LOW_CONFIDENCE in mask_flags(_meas(prob=0.4), inside, valid, CFG)
    assert Flag.LOW_CONFIDENCE in mask_flags(_meas(low=4.0, high=12.0), inside, valid, CFG)
    edge = inside.copy()
    edge[40:60, 0:5] = True
    assert Flag.MASK_AT_BORDER in mask_flags(_meas(), edge, valid, CFG)
    # the edge of the photo inside the grid counts as a border too
    partly_valid = valid.copy()
    partly_valid[:, 70:] = False
    touching = np.zeros_like(inside)
    touching[40:60, 55:70] = True
    assert Flag.MASK_AT_BORDER in mask_flags(_meas(), touching, partly_valid, CFG)
    far = Measurement(10.0, 12.0, 4.0, 3.0, 1, 0.9, 9.5, 10.5, 55.0)
    assert Flag.MARKER_FAR_FROM_ULCER in mask_flags(far, inside, valid, CFG)


def test_mask_disagreement_is_one_minus_dice() -> None:
    from ulcerseg.quality import mask_disagreement

    a = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True  # 16 px
    b = np.zeros_like(a)
    b[2:6, 4:8] = True  # 16 px, 8 shared
    assert mask_disagreement(a, a) == 0.0
    assert mask_disagreement(a, b) == pytest.approx(1 - 2 * 8 / 32)
    assert mask_disagreement(a, ~a & False) == 1.0
    assert mask_disagreement(a & False, a & False) == 0.0
    assert mask_disagreement(a, None) == 0.0


class _LeftHalfBackend:
    """A 'network' that sees red only in the left half of what it is shown: its answer
    changes when the image is mirrored, as an unstable network's does."""

    def __init__(self) -> None:
        from conftest import RednessBackend

        self.inner = RednessBackend()
        self.card = self.inner.card
        self.sha256 = self.inner.sha256

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        prob = self.inner.predict_proba(tiles)
        prob[:, :, tiles.shape[2] // 2 :] *= 0.4  # above the coarse threshold, below the fine one
        return prob


@pytest.mark.parametrize("unstable", [False, True])
def test_mirror_disagreement_flags_an_unstable_segmentation(tmp_path, unstable: bool) -> None:
    from conftest import RednessBackend, write_jpeg

    from ulcerseg.config import PipelineConfig, with_overrides
    from ulcerseg.imageio import sha256_bytes
    from ulcerseg.pipeline import PhotoMeasurer
    from ulcerseg.records import PhotoRecord

    photo = make_photo(px_per_mm=14, size=(1000, 750), ulcer_radius_mm=(4.0, 3.0))
    path = write_jpeg(tmp_path / "S1" / "D0" / "U1.jpg", photo.rgb)
    record = PhotoRecord(path, "S1", "U1", "D0", 0, sha256_bytes(path.read_bytes()))
    config = with_overrides(PipelineConfig(), quality={"max_tta_disagreement": 0.2})
    backend = _LeftHalfBackend() if unstable else RednessBackend()
    result = PhotoMeasurer(config, backend).measure(record)
    assert result.status == "measured", result.messages
    disagreement = result.signals.tta_disagreement
    if unstable:
        assert disagreement > 0.2 and Flag.LOW_CONFIDENCE in result.flags
    else:
        assert disagreement < 0.05 and Flag.LOW_CONFIDENCE not in result.flags
    off = with_overrides(config, segmentation={"mirror_check": False})
    assert PhotoMeasurer(off, backend).measure(record).signals.tta_disagreement == 0.0


def test_mirror_average_measures_the_mean_and_keeps_the_disagreement_signal(tmp_path) -> None:
    """segmentation.mirror_average: the crop's and its mirror's probability are averaged before
    thresholding (the left-half network then sees the whole ulcer), while tta_disagreement
    still compares the two passes' own masks."""
    from conftest import write_jpeg

    from ulcerseg.config import PipelineConfig, with_overrides
    from ulcerseg.imageio import sha256_bytes
    from ulcerseg.pipeline import PhotoMeasurer
    from ulcerseg.records import PhotoRecord

    photo = make_photo(px_per_mm=14, size=(1000, 750), ulcer_radius_mm=(4.0, 3.0))
    path = write_jpeg(tmp_path / "S1" / "D0" / "U1.jpg", photo.rgb)
    record = PhotoRecord(path, "S1", "U1", "D0", 0, sha256_bytes(path.read_bytes()))
    backend = _LeftHalfBackend()
    plain_config = with_overrides(PipelineConfig(), segmentation={"mirror_average": False})
    plain = PhotoMeasurer(plain_config, backend).measure(record)
    averaged_config = with_overrides(PipelineConfig(), segmentation={"mirror_average": True})
    averaged = PhotoMeasurer(averaged_config, backend).measure(record)
    assert plain.measurement is not None and averaged.measurement is not None
    # one pass: only the crop's left part clears the threshold; the mean (0.7) clears it all
    assert plain.measurement.area_mm2 < 0.8 * photo.true_area_mm2
    assert averaged.measurement.area_mm2 == pytest.approx(photo.true_area_mm2, rel=0.1)
    assert averaged.signals.tta_disagreement == pytest.approx(plain.signals.tta_disagreement)
    assert averaged.signals.tta_disagreement > 0.2
    # without the mirror pass there is nothing to average
    no_check = with_overrides(averaged_config, segmentation={"mirror_check": False})
    assert PhotoMeasurer(no_check, backend).measure(record).measurement.area_mm2 == pytest.approx(
        plain.measurement.area_mm2
    )


class _BlindToMirrorBackend:
    """A network that sees the ulcer in the orientation it first met and nothing in its mirror
    image (a tile equal to a mirrored earlier tile gives 0 everywhere)."""

    def __init__(self) -> None:
        from conftest import RednessBackend

        self.redness = RednessBackend()
        self.card, self.sha256 = self.redness.card, self.redness.sha256
        self.seen: list[np.ndarray] = []

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        if any(t.shape == tiles.shape and np.array_equal(t[:, :, ::-1], tiles) for t in self.seen):
            return np.zeros(tiles.shape[:3], np.float32)
        self.seen.append(tiles.copy())
        return self.redness.predict_proba(tiles)


def test_mirror_average_never_turns_a_seen_ulcer_into_no_ulcer_found(tmp_path) -> None:
    """Where only one orientation sees the ulcer, the mean stays below threshold everywhere: the
    crop's own probability is measured (no_ulcer_found would read as healed), and the mirror's
    disagreement flags the photo for review."""
    from conftest import write_jpeg

    from ulcerseg.config import PipelineConfig, with_overrides
    from ulcerseg.imageio import sha256_bytes
    from ulcerseg.pipeline import PhotoMeasurer
    from ulcerseg.records import PhotoRecord

    photo = make_photo(px_per_mm=14, size=(1000, 750), ulcer_radius_mm=(4.0, 3.0))
    path = write_jpeg(tmp_path / "S1" / "D0" / "U1.jpg", photo.rgb)
    record = PhotoRecord(path, "S1", "U1", "D0", 0, sha256_bytes(path.read_bytes()))
    config = with_overrides(PipelineConfig(), segmentation={"mirror_average": True})
    result = PhotoMeasurer(config, _BlindToMirrorBackend()).measure(record)
    assert result.status == "measured" and result.measurement is not None, result.messages
    assert Flag.NO_ULCER_FOUND not in result.flags
    assert result.measurement.area_mm2 == pytest.approx(photo.true_area_mm2, rel=0.1)
    assert result.signals.tta_disagreement == 1.0 and Flag.LOW_CONFIDENCE in result.flags


def test_search_coverage_is_the_share_of_the_ulcer_site_in_the_photo() -> None:
    # photo px = 10 x mm + 500: a 1000 x 800 px photo shows -50..50 mm x -50..30 mm
    h_mm_to_px = np.array([[10.0, 0, 500], [0, 10.0, 500], [0, 0, 1]])
    h = np.linalg.inv(h_mm_to_px)
    size = (1000, 800)
    assert search_coverage(h, size, (0.0, 0.0), 20.0) == 1.0
    assert search_coverage(h, size, (-50.0, 0.0), 20.0) == pytest.approx(0.5, abs=0.03)  # at an edge
    assert search_coverage(h, size, (-50.0, -50.0), 20.0) == pytest.approx(0.25, abs=0.03)  # a corner
    assert search_coverage(h, size, (-80.0, 0.0), 20.0) == 0.0
    assert search_coverage(h, size, (-80.0, 0.0), 0.0) == 1.0  # no site: nothing to miss
    # points beyond the plane's horizon (w = 0.04 x + 1 < 0 for x < -25 mm) are not shown, though
    # the projective division puts those with y < 0 at positive photo px
    beyond = np.array([[10.0, 0, -100], [0, 10.0, 0], [0.04, 0, 1]])
    assert search_coverage(np.linalg.inv(beyond), (10**4, 10**4), (-20.0, -20.0), 20.0) == 0.0


@pytest.mark.parametrize("at_corner", [False, True])
def test_no_ulcer_found_with_the_site_out_of_view_is_search_incomplete(tmp_path, at_corner: bool) -> None:
    """A photo whose marker sits in a corner shows under half the ulcer's site: "no ulcer found"
    there is no evidence of healing (search_incomplete blocks "healed")."""
    from conftest import RednessBackend, write_jpeg

    from ulcerseg.config import PipelineConfig
    from ulcerseg.healing import HealingConfig, compute_healing
    from ulcerseg.imageio import sha256_bytes
    from ulcerseg.pipeline import PhotoMeasurer
    from ulcerseg.records import PhotoRecord

    # the ulcer is drawn on the plane, but outside the camera's view: nothing to find
    view = (31.0, 23.0) if at_corner else (5.0, 5.0)
    photo = make_photo(px_per_mm=14, size=(1000, 750), ulcer_offset_mm=(-22.0, 45.0), view_centre_mm=view)
    path = write_jpeg(tmp_path / "S1" / "W8" / "U1.jpg", photo.rgb)
    record = PhotoRecord(path, "S1", "U1", "W8", 56, sha256_bytes(path.read_bytes()))
    result = PhotoMeasurer(PipelineConfig(), RednessBackend()).measure(record)
    assert result.status == "measured", result.messages
    assert result.measurement is not None and result.measurement.area_mm2 == 0.0
    assert result.signals is not None
    coverage = result.signals.search_coverage
    assert Flag.NO_ULCER_FOUND in result.flags
    assert (coverage < 0.7) if at_corner else (coverage == 1.0)
    assert (Flag.SEARCH_INCOMPLETE in result.flags) is at_corner

    def row(visit: str, day: int, area: float, flags: list[str]) -> dict:
        return {"photo_sha256": visit, "subject_id": "S1", "ulcer_id": "U1", "visit": visit,
                "study_day": day, "status": "measured", "area_mm2": area, "area_low_mm2": area,
                "area_high_mm2": area, "flags": ";".join(flags), "photo_date": None}  # fmt: skip

    ulcer = compute_healing([row("D0", 0, 10.0, []), row("W8", 56, 0.0, result.flags)], HealingConfig())[0]
    assert ulcer.visits[-1].status == ("not_assessable" if at_corner else "healed")


def test_no_ulcer_found_where_the_coarse_pass_saw_one_is_not_evidence_of_healing(tmp_path) -> None:
    """A candidate that the search-region pass saw and no full-resolution pass confirmed makes
    "no ulcer found" inconclusive: low_confidence, so the visit is not_assessable, not healed."""
    from conftest import RednessBackend, write_jpeg

    from ulcerseg.config import PipelineConfig
    from ulcerseg.healing import HealingConfig, compute_healing
    from ulcerseg.imageio import sha256_bytes
    from ulcerseg.pipeline import PhotoMeasurer
    from ulcerseg.records import PhotoRecord

    class CoarseOnlyBackend(RednessBackend):
        def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
            prob = super().predict_proba(tiles)
            return prob if self.calls == 1 else np.zeros_like(prob)  # call 1: the coarse pass

    photo = make_photo(px_per_mm=14, size=(1600, 1200))
    path = write_jpeg(tmp_path / "S1" / "W8" / "U1.jpg", photo.rgb)
    record = PhotoRecord(path, "S1", "U1", "W8", 56, sha256_bytes(path.read_bytes()))
    result = PhotoMeasurer(PipelineConfig(), CoarseOnlyBackend(tile_px=256)).measure(record)
    assert result.measurement is not None and result.measurement.area_mm2 == 0.0
    assert result.signals is not None
    assert result.signals.unconfirmed_candidate_mm2 == pytest.approx(photo.true_area_mm2, rel=0.2)
    assert result.flags == [Flag.LOW_CONFIDENCE, Flag.NO_ULCER_FOUND]
    row = {"photo_sha256": "w8", "subject_id": "S1", "ulcer_id": "U1", "visit": "W8", "study_day": 56,
           "status": "measured", "area_mm2": 0.0, "area_low_mm2": 0.0, "area_high_mm2": 0.0,
           "flags": ";".join(result.flags), "photo_date": None}  # fmt: skip
    baseline = {**row, "photo_sha256": "d0", "visit": "D0", "study_day": 0, "area_mm2": 10.0, "flags": ""}
    ulcer = compute_healing([baseline, row], HealingConfig())[0]
    assert ulcer.visits[-1].status == "not_assessable"
    # the same photo measured by a network that sees nothing anywhere: a conclusive "no ulcer"
    blind = RednessBackend(tile_px=256)
    blind.predict_proba = lambda tiles: np.zeros(tiles.shape[:3], np.float32)  # type: ignore[method-assign]
    clean = PhotoMeasurer(PipelineConfig(), blind).measure(record)
    assert clean.flags == [Flag.NO_ULCER_FOUND] and clean.signals.unconfirmed_candidate_mm2 == 0.0


def test_desaturated_means_the_99th_percentile_of_chroma_is_below_the_limit() -> None:
    from ulcerseg.quality import is_desaturated

    rng = np.random.default_rng(3)
    grey = np.repeat(rng.integers(0, 256, (400, 400, 1), dtype=np.uint8), 3, axis=2)
    noisy = np.clip(grey.astype(int) + rng.integers(-4, 5, grey.shape), 0, 255).astype(np.uint8)
    assert is_desaturated(noisy)  # JPEG-like noise: chroma of a few levels
    sampled = noisy[::4, ::4]  # every 4th px of each axis is what is looked at
    few, many = noisy.copy(), noisy.copy()
    few[::4, ::4][:, :1] = (200, 40, 40)  # 1% of the sampled px coloured: still below the 99th
    many[::4, ::4][:, :3] = (200, 40, 40)  # 3%: a colour photo
    assert sampled.shape[1] == 100 and is_desaturated(few) and not is_desaturated(many)
    assert not is_desaturated(np.full((40, 40, 3), (205, 160, 140), np.uint8))  # skin
    assert is_desaturated(np.zeros((40, 40), np.uint8))  # one channel: no colour at all


def test_a_mask_touching_the_top_or_bottom_row_of_the_grid_is_at_the_border() -> None:
    valid = np.ones((100, 100), bool)  # the whole grid shows the photo
    for rows in (slice(0, 20), slice(80, 100)):
        mask = np.zeros((100, 100), bool)
        mask[rows, 40:60] = True
        assert mask_flags(_meas(), mask, valid, CFG) == [Flag.MASK_AT_BORDER]


def test_a_value_at_a_flag_limit_passes() -> None:
    # a value at a limit passes (max_tilt_deg 50, min_photo_px_per_mm 8, max_marker_residual_px 2,
    # max_marker_bend 0.03)
    assert calibration_flags(_cal(tilt_deg=50.0, mm_per_px=0.125, residual_px=2.0, bend=0.03), CFG) == []
    assert calibration_flags(_cal(bend=float("nan")), CFG) == []  # not measured (cells too small)
    assert calibration_flags(_cal(tilt_deg=50.5), CFG) == [Flag.MARKER_TOO_OBLIQUE]
    valid = np.ones((50, 50), bool)
    for luma, flag in ((225, None), (226, Flag.OVEREXPOSED), (40, None), (39, Flag.UNDEREXPOSED)):
        flags = image_flags(np.full((50, 50, 3), luma, np.uint8), valid, CFG)
        assert [f for f in flags if f != Flag.BLURRED] == ([flag] if flag else [])


def test_a_dark_neighbourhood_is_underexposed_only_where_the_marker_paper_is_dark_too() -> None:
    """Deeply pigmented skin is dark in a well-exposed photo; the marker's white paper is not."""
    valid = np.ones((50, 50), bool)
    skin = np.full((50, 50, 3), 30, np.uint8)  # below min_mean_luma (40)

    def exposure(rgb: np.ndarray, paper: float | None) -> list[str]:
        return [f for f in image_flags(rgb, valid, CFG, paper) if f != Flag.BLURRED]

    assert exposure(skin, 210.0) == []
    assert exposure(skin, CFG.min_marker_white_luma) == []  # at the limit: the paper is bright
    assert exposure(skin, CFG.min_marker_white_luma - 1) == [Flag.UNDEREXPOSED]
    assert exposure(skin, None) == [Flag.UNDEREXPOSED]  # no paper in view: the neighbourhood decides
    assert exposure(skin, float("nan")) == [Flag.UNDEREXPOSED]
    crushed = skin.copy()
    crushed[:30] = 0  # 60% of the neighbourhood at 0: detail lost whatever the paper shows
    assert exposure(crushed, 210.0) == [Flag.UNDEREXPOSED]


def test_overexposed_is_the_neighbourhood_blown_to_white_not_one_saturated_channel() -> None:
    """A vivid red bed on light skin saturates the red channel in a well-exposed photo; green
    and blue still draw the edge. "Any channel >= 250" flagged such photos, measured better
    than the rest on the end-to-end benchmark."""
    valid = np.ones((50, 50), bool)
    vivid = np.full((50, 50, 3), (255, 120, 100), np.uint8)  # luma ~160: red clipped only
    assert Flag.OVEREXPOSED not in image_flags(vivid, valid, CFG)
    blown = vivid.copy()
    blown[:30] = (252, 251, 250)  # 60% white
    assert Flag.OVEREXPOSED in image_flags(blown, valid, CFG)
    blown[:30] = (255, 255, 240)  # one channel short of white: not blown out
    assert Flag.OVEREXPOSED not in image_flags(blown, valid, CFG)
