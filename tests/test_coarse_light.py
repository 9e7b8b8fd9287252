"""The light coarse-pass network: trunk of the full network + a distilled head (tiny networks)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_model import _tiny_dataset, make_model

from ulcerseg.cli import main
from ulcerseg.config import config_from_dict
from ulcerseg.errors import ConfigError, ModelError
from ulcerseg.pipeline import effective_config
from ulcerseg.segmentation.backends import OnnxBackend, open_backend
from ulcerseg.segmentation.model import (
    COARSE_HEAD_FILE,
    build_network,
    file_sha256,
    load_card,
    load_network,
    save_card,
    wrap_logits,
)
from ulcerseg.training.coarse import DistillSettings, _teacher_logits, build_light, distill_coarse, load_light
from ulcerseg.training.export import export_onnx

SMALL = DistillSettings(tiles=16, tile_px=64, epochs=2, batch_size=8)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize("head", ["decoder", "encoder"])
def test_trunk_then_the_remaining_blocks_is_the_full_network(tmp_path: Path, head: str) -> None:
    card = make_model(tmp_path / "m")
    net = load_network(tmp_path / "m", card).eval()
    light = build_light(net, card, head=head)
    x = torch.rand(2, 3, 64, 96)
    with torch.inference_mode():
        h, deep, shapes = light.trunk(x)
        continued = _teacher_logits(net, light, h, deep, shapes)
        full = wrap_logits(net, card)(x)
        prob = light(x)
        head_out = light.head(h)
    if head == "decoder":
        assert h.shape[2:] == (16, 24)  # the head works at 1/4 of the input
        assert len(light.blocks) == 1  # of the tiny network's 3 decoder blocks
    else:  # the encoder's features from the deepest to 1/4, and no decoder block at all
        assert [tuple(f.shape[2:]) for f in h] == [(8, 12), (16, 24)]
        assert len(light.blocks) == 0
    assert head_out.shape == (2, 1, 16, 24)
    torch.testing.assert_close(continued, full, rtol=1e-4, atol=1e-5)
    assert prob.shape == (2, 1, 64, 96) and float(prob.min()) >= 0 and float(prob.max()) <= 1


def test_unknown_head_kind_is_refused() -> None:
    with pytest.raises(ModelError, match="coarse head must be one of decoder, encoder"):
        DistillSettings(head="fpn")


@pytest.mark.parametrize("head", ["decoder", "encoder"])
def test_distilled_network_is_recorded_exported_and_used_only_when_current(
    tmp_path: Path, head: str, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "m"
    make_model(folder)
    export_onnx(folder)
    data = _tiny_dataset(tmp_path / "data")
    with caplog.at_level("INFO", logger="ulcerseg.training.coarse"):
        result = distill_coarse(folder, [data], replace(SMALL, head=head))
    assert "distillation: 17 tiles encoded" in caplog.text  # 16 + a tenth held out
    card = load_card(folder)
    assert card.coarse_light_training["settings"]["head"] == head
    assert torch.load(folder / COARSE_HEAD_FILE, weights_only=True)["kind"] == head
    assert load_light(folder).kind == head
    assert card.coarse_light_sha256 == file_sha256(result.onnx_path) == result.onnx_sha256
    assert card.coarse_light_head_sha256 == file_sha256(folder / COARSE_HEAD_FILE)
    assert card.coarse_light_source_sha256 == card.weights_sha256
    assert card.coarse_light_training["settings"]["tiles"] == 16
    assert 0.0 <= result.iou <= 1.0
    backend = open_backend(folder, "onnx", coarse_network="light")
    assert isinstance(backend, OnnxBackend) and backend.coarse_network == "light"
    tiles = np.random.default_rng(2).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    coarse, fine = backend.predict_coarse_proba(tiles), backend.predict_proba(tiles)
    assert coarse.shape == fine.shape == (1, 64, 96) and coarse.dtype == np.float32
    assert np.abs(coarse - fine).max() > 0  # a different network ran
    with torch.inference_mode():
        ref = load_light(folder)(torch.from_numpy(tiles.transpose(0, 3, 1, 2) / 255.0).float()).numpy()
    np.testing.assert_allclose(coarse, ref[:, 0], atol=1e-4)  # the ONNX file is the saved head
    # the default asks for the full network
    assert open_backend(folder, "onnx").coarse_network == "full"
    # new weights make the light network stale: the coarse pass runs model.onnx (re-exported)
    torch.manual_seed(9)
    torch.save(build_network(card).state_dict(), folder / "model.pt")
    save_card(card.replace(weights_sha256=file_sha256(folder / "model.pt")), folder)
    export_onnx(folder)
    stale = open_backend(folder, "onnx", coarse_network="light")
    assert isinstance(stale, OnnxBackend) and stale.coarse_network == "full"
    np.testing.assert_array_equal(stale.predict_coarse_proba(tiles), stale.predict_proba(tiles))
    if head == "decoder":  # a head file saved before the encoder kind existed has no "kind"
        state = torch.load(folder / COARSE_HEAD_FILE, weights_only=True)
        del state["kind"]
        torch.save(state, folder / COARSE_HEAD_FILE)
        assert load_light(folder).kind == "decoder"


def test_distillation_is_reproducible_and_never_uses_held_out_stems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ulcerseg.training.dataset as dataset

    data = _tiny_dataset(tmp_path / "data")
    read: list[str] = []
    real = dataset.read_image
    monkeypatch.setattr(dataset, "read_image", lambda path: read.append(Path(path).stem) or real(path))
    heads = []
    for name in ("a", "b"):
        folder = tmp_path / name
        card = make_model(folder)
        # the card holds out every stem but one: every tile comes from "05"
        held = {"name": "data", "val_stems": ["00", "01", "02", "03", "04"]}
        save_card(card.replace(training={"data": [held]}), folder)
        export_onnx(folder)
        distill_coarse(folder, [data], SMALL)
        heads.append(torch.load(folder / COARSE_HEAD_FILE, weights_only=True)["head"])
    assert set(read) == {"05"} and len(read) == 2 * (SMALL.tiles + SMALL.tiles // 10)
    for key, value in heads[0].items():
        torch.testing.assert_close(value, heads[1][key], rtol=0, atol=0)


def test_export_command_distils(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    make_model(folder)
    export_onnx(folder)
    data = _tiny_dataset(tmp_path / "data")
    result = CliRunner().invoke(main, ["export", "--model", str(folder), "--coarse-light", str(data),
                                      "--coarse-tiles", "16", "--coarse-scale", "0.5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "model.coarse-light.onnx" in result.output and "candidate recall" in result.output
    settings = load_card(folder).coarse_light_training["settings"]
    assert settings["tiles"] == 16 and settings["head"] == "encoder"  # the default model's kind
    assert settings["coarse_scale"] == 0.5


def test_coarse_network_setting_is_validated_and_recorded_as_run() -> None:
    with pytest.raises(ConfigError, match="coarse_network must be full or light"):
        config_from_dict({"segmentation": {"coarse_network": "tiny"}})
    # the light network is the default; int8 (an opt-in copy of model.onnx) takes precedence
    assert config_from_dict({}).segmentation.coarse_network == "light"
    int8 = config_from_dict({"segmentation": {"coarse_precision": "int8"}})
    assert effective_config(int8, make_card()).segmentation.coarse_network == "full"
    config = config_from_dict({"segmentation": {"coarse_network": "light"}})
    card = make_card().replace(coarse_light_sha256="a" * 64, coarse_onnx_sha256="b" * 64)
    # a model folder without a light network: the run records the full network it ran
    ran_full = effective_config(config, card, "full").segmentation
    assert (ran_full.coarse_network, ran_full.coarse_network_sha256) == ("full", None)
    ran_light = effective_config(config, card, "light").segmentation
    assert (ran_light.coarse_network, ran_light.coarse_network_sha256) == ("light", "a" * 64)
    assert effective_config(config, card).segmentation.coarse_network == "light"
    ran_int8 = effective_config(config, card, "int8").segmentation
    assert (ran_int8.coarse_network, ran_int8.coarse_precision, ran_int8.coarse_network_sha256) == (
        "full", "int8", "b" * 64)  # fmt: skip
    # another light network (re-distilled, same model.pt): another recorded config, so photos
    # are measured again rather than skipped as already measured
    other = card.replace(coarse_light_sha256="c" * 64)
    recorded = [effective_config(config, c, "light").sha256() for c in (card, other)]
    assert recorded[0] != recorded[1]
    # a config that names the coarse network's SHA-256 must get that network
    pinned = config_from_dict({"segmentation": {"coarse_network_sha256": "a" * 64}})
    assert effective_config(pinned, card, "light").segmentation.coarse_network_sha256 == "a" * 64
    wrong = config_from_dict({"segmentation": {"coarse_network_sha256": "c" * 64}})
    with pytest.raises(ConfigError, match=r"coarse_network_sha256 is cccc.*has aaaa"):
        effective_config(wrong, card, "light")
    with pytest.raises(ConfigError, match="has none"):
        effective_config(pinned, card, "full")


def make_card():
    from ulcerseg.segmentation.model import ModelCard

    return ModelCard(name="c", threshold=0.6, px_per_mm=10.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tiles": 0}, "coarse tiles: need at least 16, not 0"),
        ({"tiles": 15}, "coarse tiles: need at least 16, not 15"),  # mutation round 7, A8
        ({"coarse_scale": 5.0}, r"coarse scale: must be 0\.1-1\.0"),
        ({"coarse_scale": float("nan")}, r"coarse scale: must be 0\.1-1\.0"),
    ],
)
def test_distill_settings_refuse_what_the_command_refuses(kwargs: dict, message: str) -> None:
    """DistillSettings(tiles=0) made distill_coarse raise a raw ValueError (torch.cat() of no
    tiles); coarse_scale 5 or nan was taken (the command bounds both at its options)."""
    with pytest.raises(ModelError, match=message):
        DistillSettings(**kwargs)
