from pathlib import Path

import pytest

from ulcerseg.config import PipelineConfig, load_config, with_overrides
from ulcerseg.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_shipped_default_config_equals_builtin_defaults() -> None:
    assert load_config(REPO / "configs" / "default.yaml") == PipelineConfig()


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("segmentation:\n  treshold: 0.4\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'segmentation\.treshold'"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("marker:\n  side_mm: ten\n", "key 'marker.side_mm': expected a number"),
        ("marker:\n  side_mm: -1\n", "marker.side_mm must be > 0"),
        ("marker:\n  dictionary: DICT_9X9_1\n", "not an OpenCV ArUco dictionary"),
        ("segmentation:\n  backend: tpu\n", "segmentation.backend"),
        ("segmentation:\n  model: ''\n", "segmentation.model must name a model folder"),
        ("segmentation:\n  tta: rotate\n", "segmentation.tta must be none, hflip or flips"),
        ("discovery:\n  ulcer_pattern: '(?P<x>.+)'\n", "ulcer_id"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("output: {write_overlays: 3}\n", "expected true/false"),
        ("marker: [\n", "invalid YAML"),
        # 100,000 threads made measure hang creating them
        ("segmentation:\n  threads: 100000\n", "segmentation.threads must be 1-256"),
        ("segmentation:\n  parallel_photos: 5000\n", "segmentation.parallel_photos must be 1-256"),
        # 1000 px/mm asked OpenCV for 13 GB per photo (a traceback per photo); 1 px/mm found nothing
        ("segmentation:\n  px_per_mm: 1000\n", "segmentation.px_per_mm must be 2-50 (or unset"),
        ("segmentation:\n  px_per_mm: 1\n", "segmentation.px_per_mm must be 2-50 (or unset"),
    ],
)
def test_invalid_values_give_one_line_errors(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_hash_is_stable_and_changes_with_any_value() -> None:
    a, b = PipelineConfig(), load_config(None)
    assert a.sha256() == b.sha256()
    c = with_overrides(a, segmentation={"min_area_mm2": 0.31})
    assert c.sha256() != a.sha256()
    assert c.segmentation.min_area_mm2 == 0.31


def test_hash_leaves_out_how_the_model_folder_is_named_and_how_many_threads_run() -> None:
    """Before 0.3.3, ``-m models/default`` and ``-m /abs/models/default`` (the same model bytes)
    were two configurations, so the whole study was measured again; the model is identified by
    its own checksum, recorded and compared beside the config's."""
    a = PipelineConfig()
    elsewhere = with_overrides(a, segmentation={"model": "/somewhere/else/models/default", "threads": 2})
    assert elsewhere.sha256() == a.sha256()
    assert with_overrides(a, segmentation={"backend": "torch"}).sha256() != a.sha256()


def test_lists_become_tuples_and_ints_become_floats(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("marker:\n  ids: [0, 3]\n  side_mm: 12\n")
    cfg = load_config(path)
    assert cfg.marker.ids == (0, 3)
    assert isinstance(cfg.marker.side_mm, float)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("marker:\n  side_mm: .inf\n", "key 'marker.side_mm': expected a finite number, got inf"),
        ("marker:\n  side_mm: .nan\n", "key 'marker.side_mm': expected a finite number"),
        ("marker:\n  detect_max_side_px: 0\n", "key 'marker.detect_max_side_px': must be >= 64, got 0"),
        ("marker:\n  ids: [0, -2]\n", "key 'marker.ids[1]': must be >= 0, got -2"),
        ("segmentation:\n  coarse_threshold: 1.5\n", "key 'segmentation.coarse_threshold': must be < 1"),
        ("segmentation:\n  min_area_mm2: -0.1\n", "key 'segmentation.min_area_mm2': must be >= 0"),
        ("quality:\n  max_tilt_deg: 120\n", "key 'quality.max_tilt_deg': must be <= 90"),
        # these loaded: every photo flagged underexposed; the calibrated interval silently off
        # or upside down; negative scores or distances for the ulcer choice
        ("quality:\n  min_mean_luma: 230\n  max_mean_luma: 200\n", "quality.min_mean_luma must be below"),
        ("segmentation:\n  interval_q_low: null\n", "interval_q_high must both be numbers or both null"),
        ("segmentation:\n  interval_q_low: 3\n  interval_q_high: -3\n", "interval_q_low must be <="),
        ("segmentation:\n  interval_floor: -1\n", "key 'segmentation.interval_floor': must be >= 0"),
        ("segmentation:\n  candidate_off_body_weight: 2\n", "key 'segmentation.candidate_off_body_weight'"),
        ("segmentation:\n  candidate_max_distance_mm: -5\n", "key 'segmentation.candidate_max_distance_mm'"),
    ],
)
def test_values_must_be_finite_and_in_range(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and fragment in msg and "\n" not in msg


def test_non_utf8_config_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("# Größe\nmarker:\n  side_mm: 10\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: not a UTF-8 text file") and "\n" not in str(info.value)


def test_training_config_goes_through_the_same_checks(tmp_path: Path) -> None:
    from ulcerseg.training.config import config_from_dict

    with pytest.raises(ConfigError, match=r"t\.yaml: key 'train\.lr': expected a finite number, got inf"):
        config_from_dict({"train": {"lr": float("inf")}}, "t.yaml")


def test_training_config_checks_its_name_and_the_decoder_depth() -> None:
    """A list as the name became the card name "[1, 2]"; five decoder channels for an encoder of
    depth 3 loaded and stopped training only at building the network, after reading the data."""
    from ulcerseg.training.config import config_from_dict

    with pytest.raises(ConfigError, match=r"^t\.yaml: key 'name': expected a string, got \[1, 2\]$"):
        config_from_dict({"name": [1, 2]}, "t.yaml")
    with pytest.raises(ConfigError, match=r"^t\.yaml: model\.decoder_channels: needs 3 values"):
        config_from_dict({"model": {"encoder_depth": 3}}, "t.yaml")
    ok = config_from_dict(
        {"name": 7, "model": {"encoder_depth": 3, "decoder_channels": [32, 16, 8]}}, "t.yaml"
    )
    assert ok.name == "7" and ok.card().decoder_channels == (32, 16, 8)


def test_model_card_uses_the_config_validator(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import json

    from ulcerseg.errors import ModelError
    from ulcerseg.segmentation.model import card_from_dict, load_card

    base = {"name": "m", "encoder": "resnet18", "decoder_channels": [16, 8, 8, 8, 8]}
    card = card_from_dict({**base, "px_per_mm": 12, "future_key": 1}, "m.json")
    assert card.px_per_mm == 12.0 and isinstance(card.px_per_mm, float)
    assert "future_key" in caplog.text  # unknown keys of newer cards: logged, not fatal
    for change, fragment in [
        ({"px_per_mm": float("inf")}, "key 'px_per_mm': expected a finite number"),
        ({"px_per_mm": 0}, "key 'px_per_mm': must be >= 2"),
        ({"px_per_mm": 1e6}, "key 'px_per_mm': must be <= 50"),
        ({"std": [0.2, 0.0, 0.2]}, "key 'std[1]': must be > 0"),
        ({"mean": [0.5, 0.5]}, "key 'mean': expected a list of 3 values"),
        ({"tile_px": "256"}, "key 'tile_px': expected an integer"),
        ({"name": None, "x": 1}, "key 'name': expected a string"),
    ]:
        with pytest.raises(ModelError) as info:
            card_from_dict({**base, **change}, "m.json")
        assert str(info.value).startswith("m.json: ") and fragment in str(info.value), change
    with pytest.raises(ModelError, match=r"m\.json: missing key 'name'"):
        card_from_dict({"encoder": "resnet18"}, "m.json")
    (tmp_path / "model.json").write_bytes(json.dumps(base).encode("utf-16"))
    with pytest.raises(ModelError, match="cannot read model card"):
        load_card(tmp_path)


def test_dataset_yaml_uses_the_config_validator(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import numpy as np
    from PIL import Image

    from ulcerseg.errors import DatasetError
    from ulcerseg.training.dataset import load_dataset

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / sub / "a.png")
    yaml_path = tmp_path / "dataset.yaml"
    yaml_path.write_text("name: d\npx_per_mm: 12\nsource: here\nlicence: cc-by\ngroups: {a: S1}\n")
    ds = load_dataset(tmp_path)
    assert (ds.name, ds.px_per_mm, ds.has_groups, ds.meta.source) == ("d", 12.0, True, "here")
    assert "licence" in caplog.text
    for text, fragment in [
        ("px_per_mm: ten\n", "key 'px_per_mm': expected a number, got 'ten'"),
        ("px_per_mm: .inf\n", "key 'px_per_mm': expected a finite number"),
        ("px_per_mm: -3\n", "key 'px_per_mm': must be >= 1, got -3.0"),
        ("groups: {csv: g.csv, stem_col: x}\n", "unknown key 'groups.stem_col'"),
        ("groups: {csv: g.csv}\n", "key 'groups.csv': file"),
        ("- a list\n", "top level must be a mapping"),
    ]:
        yaml_path.write_text(text)
        with pytest.raises(DatasetError) as info:
            load_dataset(tmp_path)
        msg = str(info.value)
        assert msg.startswith(str(yaml_path)) and fragment in msg and "\n" not in msg, text
    yaml_path.write_bytes("name: Größe\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="not a UTF-8 text file"):
        load_dataset(tmp_path)


def test_command_line_thread_bounds_are_the_configs() -> None:
    from click.testing import CliRunner

    from ulcerseg.cli import main
    from ulcerseg.cli.options import MAX_THREADS as CLI_MAX
    from ulcerseg.config import MAX_THREADS

    assert CLI_MAX == MAX_THREADS
    for option in ("--threads", "--parallel-photos"):
        result = CliRunner().invoke(main, ["measure", ".", "-o", "o", option, str(MAX_THREADS + 1)])
        assert result.exit_code == 2 and f"is not in the range 1<=x<={MAX_THREADS}" in result.output


def test_numbers_beyond_float_range_and_unbuildable_values_are_one_line_errors(tmp_path: Path) -> None:
    """Integers too large for a float, 5,000-digit integers and impossible dates reached
    OverflowError/ValueError tracebacks in every config reader (pipeline, healing, training)."""
    from ulcerseg.healing import load_healing_config
    from ulcerseg.training.config import load_config as load_training_config

    huge = str(10**400)
    cases = [
        (load_config, f"segmentation:\n  search_radius_mm: {huge}\n", "key 'segmentation.search_radius_mm'"),
        (load_config, f"segmentation:\n  threads: {'9' * 5000}\n", "invalid YAML value"),
        (load_healing_config, f"healed_max_area_mm2: {huge}\n", "key 'healed_max_area_mm2'"),
        (load_healing_config, "baseline_visit: 2024-13-01\n", "invalid YAML value (month must be in 1..12)"),
        (load_training_config, f"train:\n  lr: {huge}\n", "key 'train.lr'"),
    ]
    for load, text, fragment in cases:
        path = tmp_path / "cfg.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load(path)
        msg = str(info.value)
        assert msg.startswith(f"{path}: ") and fragment in msg and "\n" not in msg, (text[:40], msg)
    # a huge integer where an integer is expected is no traceback either (an integer is finite)
    path = tmp_path / "h.yaml"
    path.write_text(f"date_window_days: {huge}\nreview:\n  seed: {huge}\n")
    assert load_healing_config(path).date_window_days == 10**400


def test_a_key_given_twice_is_an_error(tmp_path: Path) -> None:
    """PyYAML keeps the last of two equal keys without a word: the first value was ignored."""
    from ulcerseg.healing import load_healing_config

    path = tmp_path / "cfg.yaml"
    for load, text, fragment in [
        (
            load_config,
            "segmentation:\n  threshold: 0.5\n  threshold: 0.8\n",
            "key 'threshold' given twice (lines 2 and 3)",
        ),
        (
            load_config,
            "marker: {side_mm: 10}\nmarker: {side_mm: 12}\n",
            "key 'marker' given twice (lines 1 and 2)",
        ),
        (
            load_healing_config,
            "healed_max_area_mm2: 0.5\nhealed_max_area_mm2: 5\n",
            "key 'healed_max_area_mm2'",
        ),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load(path)
        msg = str(info.value)
        assert msg.startswith(f"{path}: ") and fragment in msg and "\n" not in msg, msg
    # a key brought in by a merge may still be overridden
    from ulcerseg.config import read_yaml_mapping

    path.write_text("a: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n")
    assert read_yaml_mapping(path)["c"] == {"x": 3, "y": 2}


def test_a_visit_alias_to_no_visit_label_names_the_config_file(tmp_path: Path) -> None:
    """Before: the error came from discovery, after the config was loaded, and named no file."""
    from ulcerseg.config import load_config

    path = tmp_path / "my.yaml"
    path.write_text("discovery:\n  visit_aliases: {baseline: X9}\n")
    with pytest.raises(
        ConfigError, match=r"my\.yaml: key 'discovery\.visit_aliases\.baseline': 'X9' is not a visit"
    ):
        load_config(path)


def test_a_number_in_exponent_form_without_a_point_says_how_to_write_it(tmp_path: Path) -> None:
    """YAML 1.1 reads ``1e-3`` as text; before, the error only said "expected a number, got
    '1e-3'", which looks like one."""
    from ulcerseg.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("segmentation:\n  threshold: 8e-1\n")
    with pytest.raises(ConfigError, match=r"got '8e-1'; YAML reads it as text: write 8\.0e-1"):
        load_config(path)
    path.write_text("segmentation:\n  threshold: 8.0e-1\n")
    assert load_config(path).segmentation.threshold == pytest.approx(0.8)


def test_with_overrides_names_an_unknown_or_malformed_section_and_takes_a_path() -> None:
    """An unknown section raised KeyError, a section that is not a mapping AttributeError, and
    a model folder given as a Path (what the command gives as text) was refused."""
    cfg = load_config(None)
    with pytest.raises(ConfigError, match=r"<overrides>: unknown key 'segmentaton' \(allowed: discovery"):
        with_overrides(cfg, segmentaton={"threads": 2})
    for bad in (None, ["threads", 2]):
        with pytest.raises(ConfigError, match="<overrides>: key 'segmentation': expected a mapping"):
            with_overrides(cfg, segmentation=bad)  # type: ignore[arg-type]
    moved = with_overrides(cfg, segmentation={"model": Path("/elsewhere/models/default")})
    assert moved.segmentation.model == "/elsewhere/models/default"
