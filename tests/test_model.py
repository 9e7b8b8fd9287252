"""Model cards, network building, inference backends and ONNX export (tiny networks, CPU)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ulcerseg.errors import ConfigError, ModelError
from ulcerseg.segmentation.backends import (
    OnnxBackend,
    SegmentationBackend,
    TorchBackend,
    open_backend,
)
from ulcerseg.segmentation.model import (
    ModelCard,
    build_network,
    file_sha256,
    load_card,
    save_card,
)
from ulcerseg.training.export import export_onnx

TINY = {
    "architecture": "Unet",
    "encoder": "resnet18",
    "encoder_depth": 3,
    "decoder_channels": (16, 8, 8),
    "tile_px": 64,
}


def make_model(folder: Path, seed: int = 0) -> ModelCard:
    """A randomly initialised tiny model folder with a valid card."""
    torch.manual_seed(seed)
    card = ModelCard(name="tiny", **TINY)
    net = build_network(card)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "model.pt")
    card = card.replace(weights_sha256=file_sha256(folder / "model.pt"))
    save_card(card, folder)
    return card


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_card_roundtrip_and_sha(tmp_path: Path) -> None:
    card = make_model(tmp_path / "m")
    loaded = load_card(tmp_path / "m")
    assert loaded == card
    assert loaded.decoder_channels == (16, 8, 8)
    data = (tmp_path / "m" / "model.pt").read_bytes()
    assert file_sha256(tmp_path / "m" / "model.pt") == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"encoder": "no_such_encoder"}, "encoder"),
        ({"architecture": "NoSuchNet"}, "architecture"),
        ({"tile_px": 100}, "tile_px"),
        ({"threshold": 1.5}, "threshold"),
        ({"decoder_channels": [16, 8]}, "decoder_channels"),
    ],
)
def test_bad_card_names_file_and_key(tmp_path: Path, change: dict, needle: str) -> None:
    make_model(tmp_path / "m")
    path = tmp_path / "m" / "model.json"
    data = json.loads(path.read_text())
    data.update(change)
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError) as err:
        load_card(tmp_path / "m")
    msg = str(err.value)
    assert str(path) in msg and needle in msg and "\n" not in msg


def test_missing_and_broken_card(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="model card not found"):
        load_card(tmp_path / "empty")
    (tmp_path / "empty" / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read model card"):
        load_card(tmp_path / "empty")


def test_torch_backend_predicts_probabilities(tmp_path: Path) -> None:
    make_model(tmp_path / "m")
    backend = open_backend(tmp_path / "m")
    assert isinstance(backend, TorchBackend)
    assert isinstance(backend, SegmentationBackend)
    assert backend.sha256 == file_sha256(tmp_path / "m" / "model.pt")
    tiles = np.random.default_rng(0).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    prob = backend.predict_proba(tiles)
    assert prob.shape == (2, 64, 96) and prob.dtype == np.float32
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    np.testing.assert_array_equal(prob, backend.predict_proba(tiles))  # deterministic
    with pytest.raises(ValueError, match="multiples of 32"):
        backend.predict_proba(tiles[:, :50])


def test_weights_not_matching_card_are_refused(tmp_path: Path) -> None:
    make_model(tmp_path / "m")
    torch.manual_seed(1)
    torch.save(build_network(load_card(tmp_path / "m")).state_dict(), tmp_path / "m" / "model.pt")
    with pytest.raises(ModelError, match="does not match weights_sha256"):
        open_backend(tmp_path / "m", "torch")


def test_onnx_export_matches_torch_and_auto_picks_it(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    make_model(folder)
    result = export_onnx(folder)
    assert result.max_abs_diff < 1e-4
    card = load_card(folder)
    assert card.onnx_sha256 == file_sha256(folder / "model.onnx") == result.onnx_sha256
    auto = open_backend(folder)
    assert isinstance(auto, OnnxBackend)
    tiles = np.random.default_rng(1).integers(0, 256, (1, 64, 128, 3), dtype=np.uint8)
    torch_prob = open_backend(folder, "torch").predict_proba(tiles)
    np.testing.assert_allclose(auto.predict_proba(tiles), torch_prob, atol=1e-4)
    assert auto.sha256 == card.weights_sha256

    # new weights make the ONNX file stale: auto falls back to torch; asked for by name, the
    # ONNX backend refuses to run a network other than the one whose SHA-256 it would record
    torch.manual_seed(5)
    torch.save(build_network(card).state_dict(), folder / "model.pt")
    save_card(card.replace(weights_sha256=file_sha256(folder / "model.pt")), folder)
    assert isinstance(open_backend(folder), TorchBackend)
    with pytest.raises(ModelError, match=r"model\.onnx: exported from another model\.pt"):
        open_backend(folder, "onnx")
    # an ONNX file whose bytes are not the card's is refused too (and auto runs torch)
    export_onnx(folder)
    with open(folder / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelError, match=r"model\.onnx: SHA-256 .* does not match onnx_sha256"):
        open_backend(folder, "onnx")
    assert isinstance(open_backend(folder), TorchBackend)


def test_unknown_backend_name(tmp_path: Path) -> None:
    make_model(tmp_path / "m")
    with pytest.raises(ModelError, match="backend"):
        open_backend(tmp_path / "m", "tensorrt")


def _tiny_dataset(root: Path, n: int = 6, size: int = 96) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(np.zeros((size, size), np.uint8)).save(root / "masks" / f"{i:02d}.png")
    return root


def test_int8_coarse_network_is_quantised_recorded_and_used_only_when_current(tmp_path: Path) -> None:
    from ulcerseg.segmentation.backends import coarse_int8_is_current
    from ulcerseg.training.export import calibration_images, quantize_coarse

    folder = tmp_path / "m"
    make_model(folder)
    data = _tiny_dataset(tmp_path / "data")
    with pytest.raises(ModelError, match="export it first"):
        quantize_coarse(folder, [data])
    export_onnx(folder)
    with pytest.raises(ConfigError, match="n_images: must be a whole number >= 1, not -1"):
        quantize_coarse(folder, [data], n_images=-1)  # quietly used 95 images
    result = quantize_coarse(folder, [data], n_images=4)
    card = load_card(folder)
    assert result.n_images == 4 and card.coarse_onnx_sha256 == file_sha256(result.path) == result.sha256
    assert card.coarse_onnx_source_sha256 == card.onnx_sha256
    assert card.coarse_calibration["n_images"] == 4 and len(card.coarse_calibration["image_stems"]) == 4
    backend = open_backend(folder, "onnx", coarse_int8=True)
    assert isinstance(backend, OnnxBackend) and backend.coarse_session is not None
    tiles = np.random.default_rng(2).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    coarse, fine = backend.predict_coarse_proba(tiles), backend.predict_proba(tiles)
    assert coarse.shape == fine.shape and coarse.dtype == np.float32
    assert 0 < np.abs(coarse - fine).mean() < 0.1  # int8: close, not identical
    float_only = open_backend(folder, "onnx")
    assert isinstance(float_only, OnnxBackend) and float_only.coarse_session is None
    np.testing.assert_array_equal(float_only.predict_coarse_proba(tiles), fine)
    # a re-exported model.onnx makes the int8 copy stale: the coarse pass falls back to float
    save_card(card.replace(onnx_sha256="0" * 64), folder)
    assert not coarse_int8_is_current(folder, load_card(folder))
    # calibration never uses the stems a card holds out for validation
    chosen = calibration_images([data], {"data": {"00", "01", "02"}}, n_images=10)
    assert sorted(p.stem for p in chosen) == ["03", "04", "05"]


def test_onnx_export_failures_are_one_line_errors(tmp_path: Path, monkeypatch) -> None:
    # before: --opset 3 ended in torch's traceback after a dump of the whole TorchScript graph
    from click.testing import CliRunner

    from ulcerseg.cli import main

    folder = tmp_path / "m"
    make_model(folder)
    with pytest.raises(ModelError, match=r"model\.onnx: ONNX opset 3 is outside 11-20"):
        export_onnx(folder, opset=3)
    result = CliRunner().invoke(main, ["export", "--model", str(folder), "--onnx", "--opset", "3"])
    assert result.exit_code == 2 and "3 is not in the range 11<=x<=20" in result.output

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("Exporting the operator 'aten::foo' to ONNX is not supported\nand more")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(ModelError, match=r"model\.onnx: ONNX export at opset 17 failed \(Exporting the"):
        export_onnx(folder)
    assert not (folder / "model.onnx").exists() and not list(folder.glob("*.tmp"))


def test_changed_weights_are_neither_exported_nor_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from ulcerseg.segmentation.model import WEIGHTS_FILE, file_sha256, load_card, save_card

    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    export_onnx(model)  # the card's network, exported and recorded
    state = torch.load(model / WEIGHTS_FILE, weights_only=True)
    first = next(iter(state))
    state[first] = state[first] + 1.0  # the weights are swapped after training
    torch.save(state, model / WEIGHTS_FILE)
    with pytest.raises(ModelError, match="does not match weights_sha256"):
        export_onnx(model)  # was: exported, and recorded as the ONNX file's source
    # a card whose ONNX entries were brought in line with the swapped weights by hand
    card = load_card(model)
    save_card(card.replace(onnx_source_sha256=file_sha256(model / WEIGHTS_FILE)), model)
    with pytest.raises(ModelError, match="does not match weights_sha256"):
        OnnxBackend(model)  # was: ran them
    with pytest.raises(ModelError, match="does not match weights_sha256"):
        TorchBackend(model)


def test_int8_coarse_network_of_the_tiny_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # before: the tiny recipe's timm encoder (tu-resnet10t) ended `export --coarse-int8` in ONNX
    # Runtime's traceback "Incomplete symbolic shape inference" (after saving its partial graph,
    # 1.5 MB, in the working directory)
    from ulcerseg.training.export import quantize_coarse

    folder = tmp_path / "m"
    torch.manual_seed(0)
    card = ModelCard(name="tiny", **{**TINY, "encoder": "tu-resnet10t"})
    folder.mkdir()
    torch.save(build_network(card).state_dict(), folder / "model.pt")
    save_card(card.replace(weights_sha256=file_sha256(folder / "model.pt")), folder)
    export_onnx(folder)
    data = _tiny_dataset(tmp_path / "data", n=2, size=64)
    monkeypatch.chdir(tmp_path / "data")
    result = quantize_coarse(folder, [data], n_images=2)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["images", "masks"]  # no debris
    assert load_card(folder).coarse_onnx_sha256 == file_sha256(result.path)
    backend = open_backend(folder, "onnx", coarse_int8=True)
    assert isinstance(backend, OnnxBackend) and backend.coarse_session is not None
    tiles = np.zeros((1, 64, 64, 3), np.uint8)
    assert backend.predict_coarse_proba(tiles).shape == (1, 64, 64)


def test_int8_calibration_leaves_out_held_out_stems_of_a_renamed_dataset_folder(tmp_path: Path) -> None:
    # before: held-out stems were looked up by dataset name only; a dataset without a name in
    # dataset.yaml is named after its folder, so after moving it to another folder every
    # validation image calibrated the int8 network (and trained the light coarse head)
    from ulcerseg.training.dataset import load_dataset
    from ulcerseg.training.export import quantize_coarse
    from ulcerseg.training.provenance import dataset_sha256

    folder = tmp_path / "m"
    card = make_model(folder)
    data = _tiny_dataset(tmp_path / "renamed", n=4, size=64)
    record = {"name": "fuseg", "sha256": dataset_sha256(load_dataset(data)), "val_stems": ["00", "02"]}
    save_card(card.replace(training={"data": [record]}), folder)
    export_onnx(folder)
    quantize_coarse(folder, [data], n_images=4)
    assert sorted(load_card(folder).coarse_calibration["image_stems"]) == ["01", "03"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_threads": -1}, "num_threads: must be 1-256"),
        ({"num_threads": 100_000}, "num_threads: must be 1-256"),
        ({"device": "gpu"}, "device 'gpu': must be cpu, cuda or cuda:N"),
    ],
)
def test_open_backend_refuses_threads_and_devices_the_command_refuses(
    tiny_model_dir: Path, kwargs: dict, message: str
) -> None:
    """num_threads=-1 and device='gpu' reached torch: a raw RuntimeError (set_num_threads
    expects a positive integer; 'Expected one of cpu, cuda, ...')."""
    with pytest.raises(ModelError, match=message):
        open_backend(tiny_model_dir, "torch", **kwargs)


def test_open_backend_takes_up_to_max_threads_and_zero_for_the_default(
    tiny_model_dir: Path, monkeypatch
) -> None:
    """num_threads 1-MAX_THREADS is used, 0 leaves torch's default (mutation round 7, A5: a
    bound of MAX_THREADS itself refused what ``--threads`` accepts)."""
    from ulcerseg.config import MAX_THREADS

    set_to: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    open_backend(tiny_model_dir, "torch", num_threads=MAX_THREADS)
    open_backend(tiny_model_dir, "torch", num_threads=0)
    assert set_to == [MAX_THREADS]
