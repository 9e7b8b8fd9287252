"""Appearance augmentation (training/appearance.py): what each step changes, and what it leaves."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ulcerseg.training import appearance as ap


def _scene(h: int = 96, w: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Skin-coloured tile with a pink-red wound bed (ellipse-like disc) in the middle."""
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((xx - w / 2) / 30) ** 2 + ((yy - h / 2) / 22) ** 2 <= 1.0
    rng = np.random.default_rng(0)
    image = np.empty((h, w, 3), np.uint8)
    image[:] = (205, 160, 140)
    bed = np.array([200.0, 90.0, 90.0]) * rng.uniform(0.9, 1.1, (h, w, 1))  # textured bed
    image[mask] = np.clip(bed[mask], 0, 255).astype(np.uint8)
    return image, mask.astype(np.uint8)


def _luma(image: np.ndarray) -> np.ndarray:
    f = image.astype(np.float64)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def test_smooth_field_spans_zero_to_one() -> None:
    field = ap.smooth_field((40, 50), np.random.default_rng(1), cells=5)
    assert field.shape == (40, 50) and field.dtype == np.float32
    assert field.min() >= 0.0 and field.max() <= 1.0
    assert field.min() < 0.01 and field.max() > 0.99  # stretched to the whole range


@pytest.mark.parametrize(
    ("tissue", "check"),
    [
        ("eschar", lambda rgb: _luma(rgb) < 60),  # black necrosis: the pink bed (luma ~120) turns dark
        ("slough", lambda rgb: rgb[1] - rgb[2] > 40),  # yellow fibrin: green well over blue
        ("pale", lambda rgb: _luma(rgb) > 150),  # pale bed: lighter than the pink one
    ],
)
def test_recolour_wound_turns_the_whole_bed_and_nothing_else(tissue: str, check) -> None:
    image, mask = _scene()
    before = image.copy()
    core = np.zeros_like(mask, bool)
    core[40:56, 54:74] = True  # deep inside the bed: the feathered edge does not reach it
    assert mask[core].all()
    colours = []
    for seed in range(15):  # each draw spreads the tissue's colour; their median is the tissue
        out = ap.recolour_wound(image, mask, np.random.default_rng(seed), tissue=tissue, cover=1.0)
        assert out.shape == image.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out[mask == 0], image[mask == 0])  # skin untouched
        colours.append(out[core].astype(float).mean(axis=0))
    np.testing.assert_array_equal(image, before)  # never in place
    assert check(np.median(np.array(colours), axis=0))


def test_recolour_wound_cover_sets_the_share_of_the_bed_and_a_seed_repeats() -> None:
    image, mask = _scene()
    bed = mask > 0
    shares = []
    for cover in (0.3, 0.6, 1.0):
        out = ap.recolour_wound(image, mask, np.random.default_rng(7), tissue="eschar", cover=cover)
        darker = _luma(out)[bed] < 0.6 * _luma(image)[bed]
        shares.append(float(darker.mean()))
    assert shares[0] < shares[1] < shares[2]
    assert 0.15 < shares[0] < 0.45 and 0.45 < shares[1] < 0.75 and shares[2] > 0.85
    a = ap.recolour_wound(image, mask, np.random.default_rng(11))
    b = ap.recolour_wound(image, mask, np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)


def test_recolour_wound_without_a_wound_or_with_an_unknown_tissue() -> None:
    image, mask = _scene()
    empty = np.zeros_like(mask)
    assert ap.recolour_wound(image, empty, np.random.default_rng(0)) is image
    with pytest.raises(ValueError, match="unknown tissue 'gangrene'"):
        ap.recolour_wound(image, mask, np.random.default_rng(0), tissue="gangrene")


def test_hard_negatives_clear_the_label_where_they_cover_and_spare_the_core() -> None:
    import cv2

    image, mask = _scene()
    core = cv2.erode(mask, np.ones((9, 9), np.uint8)) > 0
    pasted = 0
    for seed in range(12):
        out, label = ap.paste_hard_negatives(image, mask, np.random.default_rng(seed))
        assert out.shape == image.shape and label.shape == mask.shape
        assert np.all(label <= mask)  # never a new positive
        assert np.all(label[core] == 1)  # the wound's core stays labelled
        cleared = (mask > 0) & (label == 0)
        if cleared.any():  # an object over the wound's edge changed the pixels it took the label of
            assert np.mean(np.any(out[cleared] != image[cleared], axis=1)) > 0.9
        pasted += int(np.any(out != image))
    assert pasted == 12  # at least one object each time


def test_fill_padding_replaces_only_the_black_padding() -> None:
    image, _ = _scene()
    padded = image.copy()
    padded[:, :20] = 0  # FUSeg-style zero padding on the left
    padded[:, 20:22] = 5  # just above the padding level: a dark photo pixel, not padding
    out = ap.fill_padding(padded, np.random.default_rng(2))
    np.testing.assert_array_equal(out[:, 20:], padded[:, 20:])
    assert np.all(out[:, :20].max(axis=2) > 0)
    little = image.copy()
    little[0, :5] = 0  # < 1% of the tile: left alone
    assert ap.fill_padding(little, np.random.default_rng(2)) is little


def test_skin_tone_changes_the_skin_more_than_the_wound_bed() -> None:
    image, mask = _scene()
    for seed in range(8):
        out = ap.shift_skin_tone(image, mask, np.random.default_rng(seed))
        skin = (slice(0, 10), slice(0, 10))  # far from the bed
        bed = (slice(42, 54), slice(58, 70))  # deep inside it
        skin_gain = out[skin].astype(float).mean(axis=(0, 1)) / image[skin].astype(float).mean(axis=(0, 1))
        bed_gain = out[bed].astype(float).mean(axis=(0, 1)) / image[bed].astype(float).mean(axis=(0, 1))
        # the bed takes 10-40% of the skin's change (no epidermis), in every channel
        assert np.all(np.abs(bed_gain - 1) <= 0.45 * np.abs(skin_gain - 1) + 0.02)
        # melanin absorbs blue most: blue falls relative to red on skin
        assert skin_gain[2] < skin_gain[0]


def test_skin_tone_edge_and_bed_share_vary_only_what_they_name() -> None:
    """``edge_sigma_px=0``: the change steps at the mask's edge; ``bed_share=0``: the bed keeps
    its colour; the skin far from the edge gets the same gains either way (same draws)."""
    image, mask = _scene()
    bed = mask > 0
    default = ap.shift_skin_tone(image, mask, np.random.default_rng(3), ap.DEEPLY_PIGMENTED)
    own_bed = ap.shift_skin_tone(image, mask, np.random.default_rng(3), ap.DEEPLY_PIGMENTED, 0.0, 0.0)
    np.testing.assert_array_equal(own_bed[bed], image[bed])  # up to the edge's last pixel
    assert np.any(default[bed] != image[bed])
    skin = (slice(0, 10), slice(0, 10))
    np.testing.assert_array_equal(own_bed[skin], default[skin])
    step_edge = ap.shift_skin_tone(image, mask, np.random.default_rng(3), ap.DEEPLY_PIGMENTED, 0.0)
    ring = cv2.dilate(mask, np.ones((3, 3), np.uint8)).astype(bool) & ~bed  # skin touching the bed
    np.testing.assert_array_equal(step_edge[ring], own_bed[ring])  # the full skin change there
    assert np.any(default[ring] != own_bed[ring])  # faded there by default


def test_recolour_centre_keeps_a_rim_of_the_original_bed() -> None:
    image, mask = _scene()  # bed: ellipse with semi-axes 30 and 22 px, equivalent radius ~25.7 px
    out = ap.recolour_centre(image, mask, np.random.default_rng(4), tissue="eschar")
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])
    changed = np.any(out != image, axis=2)
    assert changed[48, 64]  # the centre turned
    # the rim (a quarter of the equivalent radius, 6 px, less the feathering) is the photo's
    ys, xs = np.nonzero(mask)
    rim_row = 48
    left = xs[ys == rim_row].min()
    assert not changed[rim_row, left : left + 3].any()
    assert _luma(out)[44:52, 60:68].mean() < 0.5 * _luma(image)[44:52, 60:68].mean()
    with pytest.raises(ValueError, match="unknown tissue"):
        ap.recolour_centre(image, mask, np.random.default_rng(4), tissue="tar")


def test_mixed_bed_training_step_turns_the_centre_and_keeps_the_whole_bed_labelled() -> None:
    from ulcerseg.training.augment import AugmentConfig, TrainAugment

    image, mask = _scene()
    aug = TrainAugment(AugmentConfig(mixed_bed_prob=1.0), tile_px=64)
    for seed in range(6):
        out, label = aug._appearance(image, mask, np.random.default_rng(seed))
        np.testing.assert_array_equal(label, mask)  # the rim and the centre are the ulcer
        np.testing.assert_array_equal(out[mask == 0], image[mask == 0])
        assert np.any(out[44:52, 60:68] != image[44:52, 60:68])  # the centre turned
    # off (the default): nothing drawn, nothing changed, the random stream left as it was
    rng, fresh = np.random.default_rng(9), np.random.default_rng(9)
    same, _ = TrainAugment(AugmentConfig(), tile_px=64)._appearance(image, mask, rng)
    assert same is image and rng.random() == fresh.random()
