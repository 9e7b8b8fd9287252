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
        ("segmentation:\n  tta: rotate\n", "segmentation.tta must be none, hflip or flips"),
        ("discovery:\n  ulcer_pattern: '(?P<x>.+)'\n", "ulcer_id"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("output: {write_overlays: 3}\n", "expected true/false"),
        ("marker: [\n", "invalid YAML"),
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


def test_lists_become_tuples_and_ints_become_floats(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("marker:\n  ids: [0, 3]\n  side_mm: 12\n")
    cfg = load_config(path)
    assert cfg.marker.ids == (0, 3)
    assert isinstance(cfg.marker.side_mm, float)
