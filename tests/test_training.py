"""Dataset convention, training, evaluation and the train/evaluate/export CLI on tiny data."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from ulcerseg.cli import main
from ulcerseg.errors import ConfigError, DatasetError
from ulcerseg.segmentation.backends import open_backend
from ulcerseg.segmentation.model import file_sha256, load_card
from ulcerseg.training.augment import AugmentConfig, TrainAugment
from ulcerseg.training.config import config_from_dict, load_config
from ulcerseg.training.dataset import load_dataset, split_dataset
from ulcerseg.training.evaluate import evaluate
from ulcerseg.training.loop import train, use_bf16
from ulcerseg.training.provenance import dataset_sha256

TINY_CONFIG = {
    "name": "tiny",
    "model": {
        "architecture": "Unet",
        "encoder": "tu-resnet10t",  # as configs/train/tiny.yaml: a ~1.5 MB model.pt
        "encoder_depth": 3,
        "decoder_channels": [16, 8, 8],
        "tile_px": 64,
    },
    "train": {
        "seed": 0,
        "val_fraction": 0.25,
        "batch_size": 4,
        "epochs": 2,
        "lr": 0.003,
        "warmup_steps": 1,
        "num_threads": 1,
    },
    "augment": {"scale_range": [0.8, 1.25]},
}


def make_dataset(root: Path, n: int = 8, size: int = 64, seed: int = 0) -> Path:
    """n skin-coloured images with one dark-red disc each, and their 0/255 masks."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        img = np.full((size, size, 3), (200, 160, 140), np.uint8)
        img = (img + rng.integers(0, 20, img.shape)).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        centre = (int(rng.integers(16, size - 16)), int(rng.integers(16, size - 16)))
        cv2.circle(mask, centre, int(rng.integers(5, 12)), 255, -1)
        img[mask > 0] = (120, 30, 30)
        cv2.imwrite(str(root / "images" / f"{i:02d}.png"), img[..., ::-1])
        cv2.imwrite(str(root / "masks" / f"{i:02d}.png"), mask)
    return root


def write_config(path: Path, **train_changes: object) -> Path:
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["train"].update(train_changes)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset, run folder) of one tiny training run shared by several tests."""
    base = tmp_path_factory.mktemp("trained")
    data = make_dataset(base / "data")
    run = base / "run"
    result = train(write_config(base / "tiny.yaml"), [data], run, command="test")
    assert result.epochs == 2
    return data, run


def test_train_writes_model_card_and_logs(trained: tuple[Path, Path]) -> None:
    _, run = trained
    for name in ("model.pt", "model.json", "metrics.csv", "learning_curve.png", "last.pt"):
        assert (run / name).is_file(), name
    card = load_card(run)
    assert card.weights_sha256 == file_sha256(run / "model.pt")
    assert card.encoder == "tu-resnet10t" and card.tile_px == 64
    assert (run / "model.pt").stat().st_size < 2_000_000  # a tiny recipe saves a tiny model
    assert card.training["command"] == "test" and card.training["seed"] == 0
    assert card.hardware and card.package_version and card.training_seconds > 0
    assert 0.0 <= card.metrics["val_dice"] <= 1.0
    with open(run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    val_stems = json.loads((run / "val_stems.json").read_text())["data"]
    assert len(val_stems) == 2  # 25% of 8
    assert card.training["data"][0]["val_stems"] == val_stems
    # datasets are recorded by name and content hash, never by a path of the training machine
    (record,) = card.training["data"]
    assert "path" not in record and str(run.parent) not in json.dumps(card.training["data"])
    assert record["sha256"] == dataset_sha256(load_dataset(trained[0]))

    backend = open_backend(run)
    prob = backend.predict_proba(np.zeros((1, 64, 64, 3), np.uint8))
    assert prob.shape == (1, 64, 64)


def test_training_is_reproducible(tmp_path: Path, trained: tuple[Path, Path]) -> None:
    data, run = trained
    again = tmp_path / "again"
    train(write_config(tmp_path / "tiny.yaml"), [data], again, command="test")
    assert file_sha256(again / "model.pt") == file_sha256(run / "model.pt")


def test_resume_continues_from_checkpoint(tmp_path: Path, trained: tuple[Path, Path]) -> None:
    data, run = trained
    out = tmp_path / "resumed"
    cfg = write_config(tmp_path / "tiny.yaml")
    first = train(cfg, [data], out, stop_after=1)
    assert first.epochs == 1 and first.stopped.startswith("interrupted")
    result = train(cfg, [data], out, resume=True)
    assert result.epochs == 2
    with open(out / "metrics.csv") as fh:
        assert [int(r["epoch"]) for r in csv.DictReader(fh)] == [1, 2]
    # the interrupted-and-resumed run ends with the same weights as the uninterrupted one
    assert file_sha256(out / "model.pt") == file_sha256(run / "model.pt")
    with pytest.raises(ConfigError, match="already holds a model"):
        train(cfg, [data], out)


def test_evaluate_cli_prints_metrics_on_recorded_split(tmp_path: Path, trained: tuple[Path, Path]) -> None:
    data, run = trained
    out = tmp_path / "eval"
    res = CliRunner().invoke(
        main, ["evaluate", "--model", str(run), "--data", str(data), "--split-from", str(run), "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "dataset-level  Dice" in res.output and "per-image mean Dice" in res.output
    with open(out / "per_image.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["stem"] for r in rows) == load_card(run).training["data"][0]["val_stems"]
    assert (out / "worst_cases.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_images"] == 2 and summary["tta"] == "none"
    flipped = tmp_path / "eval_tta"
    args = ["evaluate", "--model", str(run), "--data", str(data), "--split-from", str(run), "--tta", "flips"]
    res = CliRunner().invoke(main, [*args, "-o", str(flipped)])
    assert res.exit_code == 0, res.output
    assert json.loads((flipped / "summary.json").read_text())["tta"] == "flips"


def test_evaluate_scores_perfect_model() -> None:
    """A backend returning the ground truth scores Dice 1 and zero area error."""
    from ulcerseg.segmentation.model import ModelCard

    class Oracle:
        card = ModelCard(name="oracle", tile_px=64)
        sha256 = "0" * 64

        def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
            red = (tiles[..., 0] < 150) & (tiles[..., 1] < 60)
            return red.astype(np.float32)

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = make_dataset(Path(tmp) / "d", n=3)
        result = evaluate(Oracle(), [data])
    assert result.summary["dataset_dice"] == pytest.approx(1.0)
    assert all(r["area_error_px"] == 0 for r in result.rows)
    with tempfile.TemporaryDirectory() as tmp:  # one dataset twice: its images counted twice
        data = make_dataset(Path(tmp) / "d", n=2)
        with pytest.raises(DatasetError, match="given twice"):
            evaluate(Oracle(), [data, data])


def test_train_and_export_cli(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data")
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "tiny.yaml", epochs=1)
    res = CliRunner().invoke(main, ["train", "--config", str(cfg), "--data", str(data), "-o", str(run)])
    assert res.exit_code == 0, res.output
    assert "best val Dice" in res.output
    res = CliRunner().invoke(main, ["export", "--model", str(run), "--onnx"])
    assert res.exit_code == 0, res.output
    assert "max |torch - onnx|" in res.output
    assert load_card(run).onnx_sha256 == file_sha256(run / "model.onnx")


# --- bad inputs: one-line errors naming the file or key ---


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_wrong_size_mask(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d", n=2)
    cv2.imwrite(str(data / "masks" / "01.png"), np.zeros((32, 64), np.uint8))
    with pytest.raises(DatasetError) as err:
        load_dataset(data)
    assert "01.png" in _one_line(err) and "does not match" in str(err.value)


def test_missing_mask(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d", n=2)
    (data / "masks" / "00.png").unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset(data)
    assert "00.png" in _one_line(err) and "missing mask" in str(err.value)


def test_non_binary_mask(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d", n=2)
    cv2.imwrite(str(data / "masks" / "01.png"), np.full((64, 64), 128, np.uint8))
    with pytest.raises(DatasetError) as err:
        load_dataset(data)
    assert "01.png" in _one_line(err) and "not binary" in str(err.value)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "masks").mkdir()
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path / "d")
    assert str(tmp_path / "d" / "images") in _one_line(err) and "no images" in str(err.value)


def test_unknown_encoder_in_config(tmp_path: Path) -> None:
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["model"]["encoder"] = "resnet9000"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = _one_line(err)
    assert str(path) in msg and "model.encoder" in msg and "resnet9000" in msg


def test_unknown_config_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"x\.yaml: unknown key 'train\.lr_max'"):
        config_from_dict({"train": {"lr_max": 1}}, "x.yaml")


def test_cli_reports_one_line_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        main,
        [
            "train",
            "--config",
            str(tmp_path / "nope.yaml"),
            "--data",
            str(tmp_path),
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code != 0
    assert isinstance(res.exception, ConfigError)
    assert "nope.yaml" in str(res.exception)


def test_unknown_precision_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"x\.yaml: train\.precision: expected one of auto, fp32, bf16"):
        config_from_dict({"train": {"precision": "fp16"}}, "x.yaml")


def test_precision_choice() -> None:
    cpu = torch.device("cpu")
    assert use_bf16("fp32", cpu) is False
    assert use_bf16("bf16", cpu) is True
    # auto follows the CPU's native bf16 support (oneDNN), whatever this machine has
    assert use_bf16("auto", cpu) is bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_two_datasets_report_their_own_validation_dice(tmp_path: Path) -> None:
    a = make_dataset(tmp_path / "a", n=8, seed=1)
    b = make_dataset(tmp_path / "b", n=8, seed=2)
    (b / "dataset.yaml").write_text("name: other\npx_per_mm: 10\n")
    cfg = write_config(tmp_path / "tiny.yaml", epochs=1, precision="fp32", channels_last=False)
    result = train(cfg, [a, b], tmp_path / "run")
    card = load_card(tmp_path / "run")
    assert card.training["precision"] == "fp32"
    assert set(result.best) >= {"val_dice", "val_dice_a", "val_dice_other"}
    with open(tmp_path / "run" / "metrics.csv") as fh:
        row = next(csv.DictReader(fh))
    assert 0.0 <= float(row["val_dice_a"]) <= 1.0 and 0.0 <= float(row["val_dice_other"]) <= 1.0
    # the pooled figure lies between the two sources' figures
    lo, hi = sorted([float(row["val_dice_a"]), float(row["val_dice_other"])])
    assert lo - 1e-9 <= float(row["val_dice"]) <= hi + 1e-9


def test_shipped_configs_are_valid() -> None:
    configs = sorted((Path(__file__).parents[1] / "configs" / "train").glob("*.yaml"))
    assert configs
    for path in configs:
        cfg = load_config(path)
        assert cfg.model.tile_px % 32 == 0


# --- splits and augmentation ---


def test_grouped_split_keeps_groups_apart(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d", n=8)
    with open(data / "groups.csv", "w") as fh:
        fh.write("stem,subject\n" + "".join(f"{i:02d},S{i // 2}\n" for i in range(8)))
    (data / "dataset.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "g",
                "px_per_mm": 10,
                "groups": {"csv": "groups.csv", "stem_column": "stem", "group_column": "subject"},
            }
        )
    )
    ds = load_dataset(data)
    assert ds.name == "g" and ds.px_per_mm == 10.0 and ds.has_groups
    tr, va = split_dataset(ds, 0.25, seed=0)
    assert len(va) == 2 and len(tr) == 6
    assert {s.group for s in tr}.isdisjoint({s.group for s in va})
    assert split_dataset(ds, 0.25, seed=0) == (tr, va)  # seeded


def test_augment_returns_tiles_that_keep_ulcers() -> None:
    aug = TrainAugment(AugmentConfig(fg_crop_prob=1.0), tile_px=64)
    image = np.full((300, 300, 3), 180, np.uint8)
    mask = np.zeros((300, 300), np.uint8)
    mask[240:250, 30:40] = 1  # small ulcer near a corner
    hits = 0
    for i in range(20):
        img, msk = aug(image, mask, 1.0, False, np.random.default_rng(i))
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and msk.shape == (64, 64)
        assert set(np.unique(msk).tolist()) <= {0, 1}
        hits += bool(msk.any())
    assert hits >= 18


# --- importing annotated photos ---


def test_dataset_import_refuses_bad_groups_and_scale_before_writing(tmp_path: Path) -> None:
    # before: a header-only groups CSV silently gave an ungrouped (random) split, a groups CSV
    # lacking stems or not UTF-8 was copied as it was and failed only in training, and a
    # negative, infinite or NaN px per mm was written into dataset.yaml
    from ulcerseg.training.importer import import_dataset

    photos = tmp_path / "photos"
    photos.mkdir()
    for stem in ("a", "b"):
        cv2.imwrite(str(photos / f"{stem}.jpg"), np.full((32, 32, 3), 190, np.uint8))
    cases = {
        "header.csv": ("stem,group\n", "no rows"),
        "partial.csv": ("stem,group\na,S1\n", "no group for 1 of 2 images (e.g. 'b')"),
        "blank.csv": ("stem,group\na,S1\nb,\n", "line 3: no group for image stem 'b'"),
        "twice.csv": ("stem,group\na,S1\nb,S1\na,S2\n", "image stem 'a' given two groups"),
        "columns.csv": ("name,subject\na,S1\n", "missing column 'stem'"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DatasetError, match=re.escape(f"{name}: {message}")):
            import_dataset(photos, tmp_path / "out", missing="empty", groups_csv=tmp_path / name)
    (tmp_path / "latin1.csv").write_bytes("stem,group\na,Sé\nb,S2\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin1\.csv: not UTF-8 text"):
        import_dataset(photos, tmp_path / "out", missing="empty", groups_csv=tmp_path / "latin1.csv")
    for bad in (-5.0, float("inf"), float("nan"), 0.001, 1e6):  # the range load_dataset reads
        with pytest.raises(DatasetError, match="px_per_mm: must be a finite number 1-1000"):
            import_dataset(photos, tmp_path / "out", missing="empty", px_per_mm=bad)
    assert not (tmp_path / "out").exists()  # nothing written by any refused import
    (tmp_path / "good.csv").write_text("stem,group\na,S1\nb,S2\n")
    import_dataset(photos, tmp_path / "out", missing="empty", groups_csv=tmp_path / "good.csv")
    assert {s.stem: s.group for s in load_dataset(tmp_path / "out").samples} == {"a": "S1", "b": "S2"}


def test_dataset_import_cli_reads_roi_labelme_and_png(tmp_path: Path) -> None:
    from ulcerseg.annotations import write_annotation

    photos, anns = tmp_path / "photos", tmp_path / "anns"
    photos.mkdir()
    anns.mkdir()
    masks = {}
    for i, suffix in enumerate((".roi", ".json", ".png")):
        img = np.full((64, 96, 3), 190, np.uint8)
        cv2.imwrite(str(photos / f"p{i}.jpg"), img)
        mask = np.zeros((64, 96), np.uint8)
        cv2.rectangle(mask, (10 + 20 * i, 12), (30 + 20 * i, 40), 255, -1)
        masks[f"p{i}"] = mask
        write_annotation(anns / f"p{i}{suffix}", mask, image_path=f"p{i}.jpg")
    cv2.imwrite(str(photos / "p3.jpg"), np.zeros((64, 96, 3), np.uint8))  # no annotation

    out = tmp_path / "ds"
    args = ["dataset", "import", str(photos), "-a", str(anns), "-o", str(out), "--px-per-mm", "12"]
    res = CliRunner().invoke(main, args)
    assert isinstance(res.exception, DatasetError) and "p3.jpg" in str(res.exception)

    res = CliRunner().invoke(main, [*args[:-2], "--missing", "skip", "--px-per-mm", "12"])
    assert res.exit_code == 0, res.output
    assert "3 images" in res.output and "skipped 1" in res.output
    ds = load_dataset(out)
    assert ds.px_per_mm == 12.0 and [s.stem for s in ds.samples] == ["p0", "p1", "p2"]
    for s in ds.samples:
        got = cv2.imread(str(s.mask_path), cv2.IMREAD_GRAYSCALE) > 0
        want = masks[s.stem] > 0
        # vector outlines may differ from the drawn raster by about one pixel along the edge
        assert np.count_nonzero(got ^ want) <= 2 * (20 + 28) + 8, s.stem


def test_dataset_import_refuses_two_annotations_of_one_photo(tmp_path: Path) -> None:
    """Before: of ``a.png`` and ``a.roi`` with other outlines, the PNG was imported without a
    word. Now a DatasetError naming both, before anything is written."""
    from ulcerseg.annotations import write_annotation
    from ulcerseg.training.importer import import_dataset

    photos, anns = tmp_path / "photos", tmp_path / "anns"
    photos.mkdir()
    anns.mkdir()
    cv2.imwrite(str(photos / "a.jpg"), np.full((32, 48, 3), 190, np.uint8))
    for suffix, x in ((".png", 5), (".roi", 20)):
        mask = np.zeros((32, 48), np.uint8)
        cv2.rectangle(mask, (x, 5), (x + 10, 20), 255, -1)
        write_annotation(anns / f"a{suffix}", mask, image_path="a.jpg")
    with pytest.raises(DatasetError, match=r"a\.png, a\.roi all annotate 'a'; keep one"):
        import_dataset(photos, tmp_path / "out", annotations_dir=anns)
    assert not (tmp_path / "out").exists()
    (anns / "a.roi").unlink()
    import_dataset(photos, tmp_path / "out", annotations_dir=anns)
    assert [s.stem for s in load_dataset(tmp_path / "out").samples] == ["a"]


def test_training_feeds_the_network_card_normalised_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network must see (rgb/255 - mean)/std in training, exactly as in inference."""
    import ulcerseg.training.loop as loop

    seen: list[torch.Tensor] = []
    build = loop.build_network

    def recording_build(card):  # type: ignore[no-untyped-def]
        net = build(card)
        net.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
        return net

    monkeypatch.setattr(loop, "build_network", recording_build)
    data = make_dataset(tmp_path / "data", n=4)
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["train"].update(epochs=1, val_fraction=0.0)
    off = {"color_prob": 0, "white_balance_prob": 0, "blur_prob": 0, "jpeg_prob": 0, "noise_prob": 0}
    off["rotate_limit"] = 0
    cfg["augment"] = {"scale_range": [1.0, 1.0], **off}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    train(tmp_path / "c.yaml", [data], tmp_path / "run")
    assert seen
    pixels = np.stack([cv2.imread(str(p))[..., ::-1] for p in sorted((data / "images").iterdir())])
    card = load_card(tmp_path / "run")
    expected = (pixels.reshape(-1, 3).mean(0) / 255.0 - np.array(card.mean)) / np.array(card.std)
    got = seen[0].mean(dim=(0, 2, 3)).numpy()  # whole 64 px images, flips only
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_weight_average_is_what_is_validated_saved_and_resumed(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data")
    # no validation split: every epoch's weights are kept, so model.pt is the last average
    cfg = write_config(tmp_path / "ema.yaml", ema_decay=0.5, val_fraction=0.0)
    full = tmp_path / "full"
    train(cfg, [data], full)
    ck = torch.load(full / "last.pt", map_location="cpu", weights_only=False)
    saved = torch.load(full / "model.pt", map_location="cpu", weights_only=True)
    averaged = {k.removeprefix("module."): v for k, v in ck["ema"].items() if k.startswith("module.")}
    assert saved.keys() == averaged.keys() == ck["model"].keys()
    assert all(torch.equal(saved[k], averaged[k]) for k in saved)
    assert not all(torch.equal(saved[k], ck["model"][k]) for k in saved)  # not the raw weights
    # interrupted and resumed: the average is restored too, ending bit-identical
    part = tmp_path / "part"
    train(cfg, [data], part, stop_after=1)
    train(cfg, [data], part, resume=True)
    assert file_sha256(part / "model.pt") == file_sha256(full / "model.pt")


def test_ema_decay_out_of_range_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"x\.yaml: train\.ema_decay: must be in \[0, 1\)"):
        config_from_dict({"train": {"ema_decay": 1.0}}, "x.yaml")


def test_fine_tuning_records_the_initial_model(tmp_path: Path, trained: tuple[Path, Path]) -> None:
    data, run = trained
    cfg = write_config(tmp_path / "tune.yaml", epochs=1, ema_decay=0.9)
    train(cfg, [data], tmp_path / "tuned", init=run)
    card = load_card(tmp_path / "tuned")
    assert card.training["init"] == run.name  # the folder's name, not a path of this machine
    first = load_card(run)
    assert card.training["init_model"]["weights_sha256"] == first.weights_sha256
    assert card.training["init_model"]["command"] == "test" == first.training["command"]
    assert card.training["init_model"]["training_seconds"] == first.training_seconds
    assert "fine-tuned from tiny" in card.description
    before = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    after = torch.load(tmp_path / "tuned" / "model.pt", map_location="cpu", weights_only=True)
    assert before.keys() == after.keys() and not all(torch.equal(before[k], after[k]) for k in before)


def test_config_base_merges_sections_key_by_key(tmp_path: Path) -> None:
    write_config(tmp_path / "first.yaml")
    (tmp_path / "second.yaml").write_text("base: first.yaml\ntrain:\n  lr: 0.0001\n  ema_decay: 0.9\n")
    first, second = load_config(tmp_path / "first.yaml"), load_config(tmp_path / "second.yaml")
    assert (second.train.lr, second.train.ema_decay) == (0.0001, 0.9)
    assert second.train.batch_size == first.train.batch_size == 4  # kept from the base
    assert second.model == first.model and second.augment == first.augment
    # the shipped second stage is the first stage with its own schedule keys only
    configs = Path(__file__).parents[1] / "configs" / "train"
    stage1, stage2 = load_config(configs / "default.yaml"), load_config(configs / "default_finetune.yaml")
    assert stage2.model == stage1.model and stage2.augment == stage1.augment
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match=r"loop\.yaml: key 'base': loop\.yaml includes itself"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml: training config not found"):
        load_config(tmp_path / "orphan.yaml")


def test_dataset_hash_follows_content_not_location(tmp_path: Path) -> None:
    import shutil

    data = make_dataset(tmp_path / "a")
    first = dataset_sha256(load_dataset(data))
    moved = tmp_path / "elsewhere" / "b"
    shutil.copytree(data, moved)
    assert dataset_sha256(load_dataset(moved)) == first  # same files, another folder
    mask = cv2.imread(str(moved / "masks" / "00.png"), cv2.IMREAD_GRAYSCALE)
    mask[0, 0] = 255 - mask[0, 0]
    cv2.imwrite(str(moved / "masks" / "00.png"), mask)
    assert dataset_sha256(load_dataset(moved)) != first  # one edited mask pixel
    (moved / "images" / "00.png").rename(moved / "images" / "zz.png")
    (moved / "masks" / "00.png").rename(moved / "masks" / "zz.png")
    assert dataset_sha256(load_dataset(moved)) != first


def test_shipped_tiny_recipe_builds_a_tiny_network() -> None:
    from ulcerseg.segmentation.model import ModelCard, build_network
    from ulcerseg.training.config import load_config

    cfg = load_config(Path(__file__).parent.parent / "configs" / "train" / "tiny.yaml")
    m = cfg.model
    card = ModelCard(
        name="t", architecture=m.architecture, encoder=m.encoder, encoder_depth=m.encoder_depth,
        decoder_channels=tuple(m.decoder_channels), tile_px=m.tile_px,
    )  # fmt: skip
    n_params = sum(p.numel() for p in build_network(card).parameters())
    assert n_params * 4 < 2_000_000  # float32 weights: model.pt under 2 MB


def test_worst_cases_sheet_has_a_colour_legend() -> None:
    from ulcerseg.training.evaluate import PREDICTION_RGB, TRUTH_RGB, render_contact_sheet

    image = np.full((64, 64, 3), 200, np.uint8)
    gt = np.zeros((64, 64), bool)
    gt[20:40, 20:40] = True
    pred = np.roll(gt, 5, axis=1)
    sheet = render_contact_sheet([(image, gt, pred, "a  Dice 0.75")])
    legend = sheet[:28]
    assert (legend == TRUTH_RGB).all(axis=2).sum() > 100  # a green swatch ...
    assert (legend == PREDICTION_RGB).all(axis=2).sum() > 100  # ... and a red one, labelled
    body = sheet[28:]
    assert (body == TRUTH_RGB).all(axis=2).any() and (body == PREDICTION_RGB).all(axis=2).any()


def test_unreadable_init_weights_and_checkpoints_are_one_line_errors(
    tmp_path: Path, trained: tuple[Path, Path]
) -> None:
    # before: torch's UnpicklingError traceback (advising unsafe loading), KeyError, AttributeError
    from ulcerseg.errors import ModelError

    data, run = trained
    cfg = write_config(tmp_path / "tiny.yaml")
    bad_init = tmp_path / "bad_init"
    bad_init.mkdir()
    (bad_init / "model.json").write_text((run / "model.json").read_text())
    (bad_init / "model.pt").write_text("garbage")
    with pytest.raises(ModelError, match=r"bad_init/model\.pt: not a weights file of tensors \(Unpickling"):
        train(cfg, [data], tmp_path / "a", init=bad_init)
    torch.save({"unrelated": torch.zeros(3)}, bad_init / "model.pt")
    with pytest.raises(ModelError, match=r"model\.pt: weights of another network than the model card's"):
        train(cfg, [data], tmp_path / "b", init=bad_init)
    out = tmp_path / "c"
    out.mkdir()
    for content, message in (
        (b"junk", "not a readable checkpoint"),
        ([1, 2], "not a readable checkpoint"),
        ({"config": {}}, "config differs from the checkpoint's"),
    ):
        if isinstance(content, bytes):
            (out / "last.pt").write_bytes(content)
        else:
            torch.save(content, out / "last.pt")
        with pytest.raises((ModelError, ConfigError), match=rf"last\.pt: {message}"):
            train(cfg, [data], out, resume=True)
    # a checkpoint of this very config that lacks its state
    first = train(cfg, [data], tmp_path / "d", stop_after=1)
    assert first.epochs == 1
    ck = torch.load(tmp_path / "d" / "last.pt", map_location="cpu", weights_only=False)
    del ck["optimizer"]
    torch.save(ck, tmp_path / "d" / "last.pt")
    with pytest.raises(ModelError, match=r"last\.pt: incomplete or foreign checkpoint \('optimizer'\)"):
        train(cfg, [data], tmp_path / "d", resume=True)
    # through the command line: one line, exit 2
    args = ["train", "--config", str(cfg), "--data", str(data), "-o", str(tmp_path / "e"),
            "--init", str(bad_init), "--no-progress"]  # fmt: skip
    proc = CliRunner().invoke(main, args)
    assert proc.exit_code != 0 and isinstance(proc.exception, ModelError)


def test_dataset_import_takes_png_masks_beside_jpeg_photos_as_their_annotations(tmp_path: Path) -> None:
    from ulcerseg.training.importer import import_dataset

    folder = tmp_path / "photos"
    folder.mkdir()
    for stem, box in (("g", (10, 30)), ("h", (20, 40))):
        cv2.imwrite(str(folder / f"{stem}.jpg"), np.full((48, 64, 3), 120, np.uint8))
        mask = np.zeros((48, 64), np.uint8)
        mask[box[0] : box[1], 5:25] = 255
        cv2.imwrite(str(folder / f"{stem}.png"), mask)
    import_dataset(folder, tmp_path / "ds", missing="empty")  # was: 4 images, masks emptied
    assert sorted(p.name for p in (tmp_path / "ds" / "images").iterdir()) == ["g.jpg", "h.jpg"]
    written = cv2.imread(str(tmp_path / "ds" / "masks" / "g.png"), cv2.IMREAD_GRAYSCALE)
    assert int((written > 0).sum()) == 20 * 20  # the source mask, not an empty one
    (folder / "g.tif").write_bytes((folder / "g.png").read_bytes())  # g.png or g.tif: which mask?
    (folder / "g.bmp").write_bytes((folder / "g.png").read_bytes())
    (folder / "g.jpg").unlink()
    with pytest.raises(DatasetError, match="share the stem 'g' and none is clearly the photo"):
        import_dataset(folder, tmp_path / "ds2", missing="empty")


def test_dataset_import_writes_heic_photos_as_png_in_the_photo_frame(tmp_path: Path) -> None:
    """A researcher's iPhone photos (HEIC) import; stored as PNG, upright, so that training does
    not decode HEVC at every epoch."""
    from ulcerseg.imageio import read_rgb
    from ulcerseg.training.importer import import_dataset

    data = Path(__file__).resolve().parent / "data"
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "turned.heic").write_bytes((data / "photo_rot90.heic").read_bytes())
    mask = np.zeros((600, 800), np.uint8)
    mask[100:200, 500:700] = 255  # drawn on the upright photo (800 x 600)
    cv2.imwrite(str(folder / "turned_mask.png"), mask)
    import_dataset(folder, tmp_path / "ds", missing="error")
    assert [p.name for p in (tmp_path / "ds" / "images").iterdir()] == ["turned.png"]
    image = read_rgb(tmp_path / "ds" / "images" / "turned.png")
    assert image.shape == (600, 800, 3)
    assert np.abs(image.astype(int) - read_rgb(folder / "turned.heic").astype(int)).max() == 0
    ds = load_dataset(tmp_path / "ds")
    assert [s.stem for s in ds.samples] == ["turned"]


def test_a_misspelt_dataset_key_is_an_error_other_tools_keys_are_kept(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "d", n=2)
    (data / "dataset.yaml").write_text("name: d\npx_per_nm: 10\n")  # was: a warning, scale unknown
    with pytest.raises(DatasetError, match=r"unknown key 'px_per_nm'; did you mean 'px_per_mm'\?"):
        load_dataset(data)
    (data / "dataset.yaml").write_text("name: d\npx_per_mm: 10\nauthor: another tool\n")
    assert load_dataset(data).px_per_mm == 10


def test_resume_refuses_a_checkpoint_of_other_data_or_another_initial_model(
    tmp_path: Path, trained: tuple[Path, Path]
) -> None:
    # before: the checkpoint was checked against the config only; resumed on another dataset
    # (or without the --init it was fine-tuned from) the card recorded data and an origin
    # that did not make the weights
    import shutil

    data, run = trained
    cfg = write_config(tmp_path / "tiny.yaml")
    out = tmp_path / "run"
    out.mkdir()
    for name in ("last.pt", "model.pt", "model.json"):
        shutil.copy(run / name, out / name)
    other = tmp_path / "data"
    shutil.copytree(data, other)
    mask = cv2.imread(str(other / "masks" / "00.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(other / "masks" / "00.png"), 255 - mask)
    with pytest.raises(ConfigError, match=r"last\.pt: the checkpoint was trained on dataset 'data', whose"):
        train(cfg, [other], out, resume=True)
    with pytest.raises(ConfigError, match=r"last\.pt: the checkpoint was trained from scratch"):
        train(cfg, [data], out, resume=True, init=run)
    ck = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    ck["init"] = "ab" * 32
    torch.save(ck, out / "last.pt")
    fine_tuned = r"fine-tuned from a model with weights abababababab… \(give its --init\)"
    with pytest.raises(ConfigError, match=fine_tuned):
        train(cfg, [data], out, resume=True)


def test_dataset_import_refuses_two_photos_of_one_stem(tmp_path: Path) -> None:
    # before: with annotations in their own folder, g.jpg and g.png took one annotation and one
    # mask file; a rotated g.jpg (written as g.png) silently replaced the g.png photo, so the
    # dataset held one image where the import reported two
    from PIL import Image

    from ulcerseg.training.importer import import_dataset

    photos, annotations = tmp_path / "photos", tmp_path / "annotations"
    photos.mkdir()
    annotations.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: stored 48 x 32, upright 32 x 48
    Image.fromarray(np.full((48, 32, 3), 50, np.uint8)).save(photos / "g.jpg", exif=exif)
    Image.fromarray(np.full((32, 48, 3), 200, np.uint8)).save(photos / "g.png")
    cv2.imwrite(str(annotations / "g.png"), np.zeros((32, 48), np.uint8))
    with pytest.raises(DatasetError, match=r"photos g\.jpg, g\.png share the stem 'g'"):
        import_dataset(photos, tmp_path / "out", annotations)
    assert not (tmp_path / "out").exists()


def test_dataset_import_failing_half_way_leaves_no_partial_dataset(tmp_path: Path) -> None:
    # before: a mask of another size on the second photo left images/a.jpg and masks/a.png,
    # a dataset `train` took with one of the two photos, and the corrected import was refused
    # ("output folder is not empty")
    from ulcerseg.annotations import AnnotationError
    from ulcerseg.training.importer import import_dataset

    photos, annotations = tmp_path / "photos", tmp_path / "annotations"
    photos.mkdir()
    annotations.mkdir()
    for stem in ("a", "b"):
        cv2.imwrite(str(photos / f"{stem}.jpg"), np.full((32, 48, 3), 150, np.uint8))
        cv2.imwrite(str(annotations / f"{stem}.png"), np.zeros((32, 48), np.uint8))
    cv2.imwrite(str(annotations / "b.png"), np.zeros((30, 30), np.uint8))
    with pytest.raises(AnnotationError, match=r"b\.png: mask is 30x30 px but the photo is 48x32 px"):
        import_dataset(photos, tmp_path / "out", annotations)
    assert not (tmp_path / "out").exists()
    existing = tmp_path / "existing"  # a folder the user made is kept, emptied of what was written
    existing.mkdir()
    with pytest.raises(AnnotationError):
        import_dataset(photos, existing, annotations)
    assert existing.is_dir() and not any(existing.iterdir())
    cv2.imwrite(str(annotations / "b.png"), np.zeros((32, 48), np.uint8))
    assert import_dataset(photos, tmp_path / "out", annotations).n_images == 2
    assert len(load_dataset(tmp_path / "out")) == 2


def test_two_masks_of_one_image_are_an_error(tmp_path: Path) -> None:
    # before: masks/00.png and masks/00.tif: the one listed last by the file system was taken
    data = make_dataset(tmp_path / "d", n=2)
    cv2.imwrite(str(data / "masks" / "00.tif"), np.zeros((64, 64), np.uint8))
    with pytest.raises(DatasetError, match=r"00\.png: several masks 00\.png, 00\.tif in .*masks; keep one"):
        load_dataset(data)
    cv2.imwrite(str(data / "masks" / "stray.tif"), np.zeros((64, 64), np.uint8))
    (data / "masks" / "00.tif").unlink()
    assert len(load_dataset(data)) == 2  # a mask without an image is not in the way


def test_dataset_import_lists_what_it_leaves_out(tmp_path: Path) -> None:
    """Before: files of no known format, subfolders and annotations whose photo is missing were
    left out of the dataset without a word (a researcher's ``h.roi`` of a photo saved as
    ``h.jpeg.bak`` simply vanished)."""
    from ulcerseg.annotations import write_annotation
    from ulcerseg.cli import main
    from ulcerseg.training.importer import import_dataset

    photos, anns = tmp_path / "photos", tmp_path / "anns"
    for folder in (photos, anns):
        (folder / "more").mkdir(parents=True)
    mask = np.zeros((32, 48), np.uint8)
    cv2.rectangle(mask, (5, 5), (20, 20), 255, -1)
    for stem in ("a", "b"):
        cv2.imwrite(str(photos / f"{stem}.jpg"), np.full((32, 48, 3), 190, np.uint8))
    for stem in ("a", "b", "h"):
        write_annotation(anns / f"{stem}.roi", mask, image_path=f"{stem}.jpg")
    (photos / "notes.txt").write_text("visit notes")
    (photos / "h.jpeg.bak").write_bytes(b"x")
    cv2.imwrite(str(photos / "c_mask.png"), mask)
    (anns / "readme.md").write_text("x")

    result = import_dataset(photos, tmp_path / "ds", annotations_dir=anns)
    assert result.n_images == 2
    assert [(p.relative_to(tmp_path).as_posix(), why) for p, why in result.ignored] == [
        ("photos/c_mask.png", "an image named as a mask (<stem>_mask), not read as a photo"),
        ("photos/h.jpeg.bak", "not a photo or annotation of a known format"),
        ("photos/more", "a folder: subfolders are not read"),
        ("photos/notes.txt", "not a photo or annotation of a known format"),
        ("anns/h.roi", "an annotation of no photo"),
        ("anns/more", "a folder: subfolders are not read"),
        ("anns/readme.md", "not a photo or annotation of a known format"),
    ]
    res = CliRunner().invoke(
        main, ["dataset", "import", str(photos), "-a", str(anns), "-o", str(tmp_path / "ds2")]
    )
    assert res.exit_code == 0, res.output
    assert f"ignored: {anns / 'h.roi'}: an annotation of no photo" in res.output
    assert res.output.strip().splitlines()[-1].endswith("; ignored 7 other entries (listed above)")

    # one folder for photos and masks: a mask of no photo is named as such
    both = tmp_path / "both"
    both.mkdir()
    cv2.imwrite(str(both / "a.jpg"), np.full((32, 48, 3), 190, np.uint8))
    cv2.imwrite(str(both / "a_mask.png"), mask)
    cv2.imwrite(str(both / "z_mask.png"), mask)
    (both / ".DS_Store").write_bytes(b"\0")
    result = import_dataset(both, tmp_path / "ds3")
    assert result.n_images == 1
    assert [(p.name, why) for p, why in result.ignored] == [
        (".DS_Store", "not a photo or annotation of a known format"),
        ("z_mask.png", "an annotation of no photo"),
    ]


def test_dataset_import_reads_annotation_suffixes_in_any_case_and_refuses_a_folder_in_use(
    tmp_path: Path,
) -> None:
    """Before: ``p1.PNG`` beside ``p1.jpg``'s annotations was "an annotation of no photo", and
    with ``--missing empty`` the annotated ulcer was imported as an all-background mask; an
    output folder was refused only when its ``images/`` held files, so a measured study's
    folder (its ``masks/`` beside the imported ones) or the photo folder itself was written into."""
    from ulcerseg.training.importer import import_dataset

    photos, anns = tmp_path / "photos", tmp_path / "anns"
    photos.mkdir()
    anns.mkdir()
    mask = np.zeros((32, 48), np.uint8)
    cv2.rectangle(mask, (5, 5), (20, 20), 255, -1)
    for stem, name in (("p0", "p0.png"), ("p1", "p1.PNG"), ("p2", "p2_mask.PNG")):
        cv2.imwrite(str(photos / f"{stem}.jpg"), np.full((32, 48, 3), 190, np.uint8))
        cv2.imwrite(str(anns / name), mask)
    result = import_dataset(photos, tmp_path / "ds", annotations_dir=anns, missing="empty")
    assert result.kinds == {"png": 3} and result.ignored == []
    for stem in ("p0", "p1", "p2"):
        assert np.count_nonzero(cv2.imread(str(tmp_path / "ds" / "masks" / f"{stem}.png"), 0)) == 16 * 16
    (tmp_path / "study" / "masks").mkdir(parents=True)
    for out in (tmp_path / "study", photos, tmp_path / "ds"):
        with pytest.raises(DatasetError, match="output folder is not empty"):
            import_dataset(photos, out, annotations_dir=anns)


# --- audit fixes of the training and evaluation tools ---


def _interrupting(fn, nth: int, when: str):  # type: ignore[no-untyped-def]
    """``fn`` that raises KeyboardInterrupt before (or after) its ``nth`` call does its work."""
    calls = [0]

    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == nth and when == "before":
            raise KeyboardInterrupt
        out = fn(*args, **kwargs)
        if calls[0] == nth:
            raise KeyboardInterrupt
        return out

    return wrapper


def test_saving_the_model_interrupted_at_any_step_leaves_a_matching_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: model.pt was written in place and model.json rewritten only after the learning
    curve was drawn, so a Ctrl-C in between left new weights under the previous card (whose
    weights_sha256 no longer matched: the run folder's model refused to load)."""
    import os

    from ulcerseg.training import loop

    card = config_from_dict(TINY_CONFIG, "tiny.yaml").card()

    def make_card(sha: str):  # type: ignore[no-untyped-def]
        return card.replace(weights_sha256=sha)

    def files(folder: Path) -> list[str]:
        return sorted(p.name for p in folder.iterdir())

    out = tmp_path / "run"
    out.mkdir()
    loop._save_model(out, {"w": torch.zeros(4)}, make_card)
    steps = [
        (torch, "save", 1),
        (loop, "card_json", 1),
        (os, "link", 1),
        (os, "replace", 1),
        (os, "replace", 2),
    ]
    for i, (module, name, nth) in enumerate(steps):
        for when in ("before", "after"):
            old = file_sha256(out / "model.pt")
            weights = {"w": torch.full((4,), float(i + 1) + (when == "after") / 2)}
            with monkeypatch.context() as m:
                m.setattr(module, name, _interrupting(getattr(module, name), nth, when))
                with pytest.raises(KeyboardInterrupt):
                    loop._save_model(out, weights, make_card)
            sha = file_sha256(out / "model.pt")
            assert load_card(out).weights_sha256 == sha, (name, nth, when)
            # the old pair, or the new one once the card is in place
            assert sha == old or (name, nth, when) == ("replace", 2, "after"), (name, nth, when)
            assert files(out) == ["model.json", "model.pt"], (name, nth, when)  # no temporary files
    # the first best epoch interrupted between the two moves: no weights without their card
    first = tmp_path / "first"
    first.mkdir()
    with monkeypatch.context() as m:
        m.setattr(os, "replace", _interrupting(os.replace, 1, "after"))
        with pytest.raises(KeyboardInterrupt):
            loop._save_model(first, {"w": torch.zeros(4)}, make_card)
    assert files(first) == []


def test_train_interrupted_while_drawing_the_curve_keeps_weights_and_card_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the audit's case. The second epoch's better weights were already in model.pt
    when Ctrl-C hit plot_curve; model.json still described the first epoch's weights."""
    from ulcerseg.training import loop

    dice = iter([0.2, 0.4])
    monkeypatch.setattr(loop, "validate", lambda *a, **k: {"val_dice": next(dice), "val_iou": 0.1,
                                                          "val_dice_mean": 0.1})  # fmt: skip
    monkeypatch.setattr(loop, "plot_curve", _interrupting(loop.plot_curve, 2, "before"))
    data = make_dataset(tmp_path / "data", n=4)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(write_config(tmp_path / "tiny.yaml"), [data], run)
    card = load_card(run)
    assert card.weights_sha256 == file_sha256(run / "model.pt")
    assert card.training["best_epoch"] == 2  # saved before the curve was drawn


@pytest.mark.parametrize(
    ("section", "key", "value", "problem"),
    [
        ("train", "seed", -1, "must be >= 0, got -1"),
        ("train", "seed", 2**32, "must be <= 4294967295"),
        ("augment", "fg_crop_prob", 5, "must be <= 1"),
        ("augment", "color_prob", -2, "must be >= 0"),
        ("augment", "mixed_bed_prob", 1.5, "must be <= 1"),
        ("augment", "rotate_limit", -400, "must be >= 0"),
        ("augment", "rotate_limit", 400, "must be <= 180"),
        ("model", "mean", [500, 0, 0], "must be <= 1"),
        ("model", "std", [0.2, 0.0, 0.2], "must be > 0"),
        ("model", "std", [0.2, 0.2, 3], "must be <= 1"),
        ("model", "px_per_mm", 1000, "must be <= 50"),
        ("train", "num_threads", 100_000, "must be <= 256"),
        ("train", "num_workers", 100_000, "must be <= 256"),
    ],
)
def test_out_of_range_training_config_values_name_file_and_key(
    tmp_path: Path, section: str, key: str, value: object, problem: str
) -> None:
    """Before: these were accepted (fg_crop_prob 5, color_prob -2, rotate_limit -400, mean
    [500, 0, 0] trained without a word), and seed -1 ended in numpy's traceback "Seed must be
    between 0 and 2**32 - 1" once the data was loaded."""
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg.setdefault(section, {})[key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = _one_line(err)
    assert msg.startswith(f"{path}: key '{section}.{key}") and problem in msg


def test_seed_limits_and_augment_scale_range() -> None:
    """Before: seed 2**32 - 1 plus the rank overflowed numpy's range under torchrun; a scale
    range of [0.001, 1] or up to 1000 was accepted."""
    assert config_from_dict({"train": {"seed": 2**32 - 1}}, "x.yaml").train.seed == 2**32 - 1
    for bad in ([0.001, 1.0], [1.0, 1000.0]):
        with pytest.raises(
            ConfigError, match=r"x\.yaml: augment\.scale_range: expected \[low, high\] with 0\.01"
        ):
            config_from_dict({"augment": {"scale_range": bad}}, "x.yaml")


def test_dataset_px_per_mm_and_the_scale_it_gives_are_bounded(tmp_path: Path) -> None:
    """Before: px_per_mm 0.001 made evaluate and train ask OpenCV for a ~1.2 TB image (a
    cv2.error traceback); px_per_mm 1000000 evaluated silently at a 1e-5 scale."""
    from ulcerseg.segmentation.model import ModelCard
    from ulcerseg.training.loop import collect_items

    data = make_dataset(tmp_path / "d", n=2)
    for bad in (0.001, 1e6):
        (data / "dataset.yaml").write_text(f"px_per_mm: {bad}\n")
        with pytest.raises(DatasetError) as err:
            load_dataset(data)
        assert _one_line(err).startswith(f"{data / 'dataset.yaml'}: key 'px_per_mm'")
    # within the photos' range, but 500x the model's resolution: a factor of 0.004
    (data / "dataset.yaml").write_text("px_per_mm: 1000\n")

    class Blank:
        card = ModelCard(name="blank", tile_px=64, px_per_mm=2.0)
        sha256 = "0" * 64

        def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
            return np.zeros(tiles.shape[:3], np.float32)

    with pytest.raises(DatasetError) as err:
        evaluate(Blank(), [data])
    msg = _one_line(err)
    assert msg.startswith(f"{data / 'dataset.yaml'}: px_per_mm 1000 against the model's 2 px/mm")
    assert "resize factor of 0.002, outside 0.01-100" in msg
    assert evaluate(Blank(), [data], scale=1.0).summary["n_images"] == 2  # --scale: the user's
    cfg = config_from_dict({**TINY_CONFIG, "model": {**TINY_CONFIG["model"], "px_per_mm": 2.0}}, "t.yaml")
    with pytest.raises(DatasetError, match=r"resize factor of 0\.002"):
        collect_items([data], cfg)


def test_train_with_no_epoch_inside_the_time_budget_is_an_error(tmp_path: Path) -> None:
    """Before: exit 0 and "best val Dice nan" with no model written (only config.yaml and
    val_stems.json in the run folder)."""
    data = make_dataset(tmp_path / "data", n=4)
    cfg = write_config(tmp_path / "tiny.yaml", max_minutes=0.00001)
    res = CliRunner().invoke(
        main, ["train", "--config", str(cfg), "--data", str(data), "-o", str(tmp_path / "r")]
    )
    assert res.exit_code != 0 and isinstance(res.exception, ConfigError)
    msg = str(res.exception)
    assert "\n" not in msg and msg.startswith(f"{cfg}: no epoch finished within train.max_minutes")
    assert not (tmp_path / "r" / "model.pt").exists()


def test_evaluate_split_from_warns_on_other_content_and_summary_records_provenance(
    tmp_path: Path, trained: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Before: a different dataset of the same name was scored on the recorded validation stems
    without a word, and summary.json recorded neither the package version, nor the datasets'
    SHA-256, nor the resize factor used."""
    import shutil

    from ulcerseg import __version__

    data, run = trained
    other = tmp_path / "data"  # same folder name, so the same dataset name
    shutil.copytree(data, other)
    stem = load_card(run).training["data"][0]["val_stems"][0]
    cv2.imwrite(str(other / "images" / f"{stem}.png"), np.full((64, 64, 3), 90, np.uint8))
    recorded, now = dataset_sha256(load_dataset(data)), dataset_sha256(load_dataset(other))
    with caplog.at_level("WARNING"):
        result = evaluate(run, [other], tmp_path / "eval", split_from=run)
    warned = [r.getMessage() for r in caplog.records if "recorded in the model card" in r.getMessage()]
    assert len(warned) == 1 and now[:12] in warned[0] and recorded[:12] in warned[0]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    assert summary["package_version"] == __version__
    assert summary["datasets"] == [
        {"name": "data", "sha256": now, "px_per_mm": None, "scale": 1.0, "n_images": 2}
    ]
    assert summary["weights_sha256"] == file_sha256(run / "model.pt")  # kept as it was
    caplog.clear()
    with caplog.at_level("WARNING"):
        evaluate(run, [data], split_from=run)  # the data the model was split on: no warning
    assert not [r for r in caplog.records if "recorded in the model card" in r.getMessage()]


def test_evaluate_refuses_an_output_folder_inside_a_dataset(tmp_path: Path) -> None:
    """Before: ``evaluate -o DATASET/images`` wrote per_image.csv, summary.json and
    worst_cases.png among the dataset's images."""
    from ulcerseg.errors import OutputError

    data = make_dataset(tmp_path / "d", n=2)
    before = sorted(p.name for p in data.rglob("*"))
    for out in (data / "images", data, data / "eval"):
        with pytest.raises(OutputError) as err:
            evaluate(tmp_path / "no-model", [data], out)  # refused before the model is opened
        assert _one_line(err).startswith(f"{out}: output folder inside dataset folder {data}")
    assert sorted(p.name for p in data.rglob("*")) == before


def test_load_dataset_names_the_files_it_leaves_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before: a .gif or .jfif photo in images/ and a mask without its image were left out
    of the dataset without a word."""
    data = make_dataset(tmp_path / "d", n=2)
    (data / "images" / "c.gif").write_bytes(b"GIF89a")
    (data / "images" / "d.jfif").write_bytes(b"\xff\xd8")
    (data / "images" / "extra").mkdir()
    cv2.imwrite(str(data / "masks" / "c.png"), np.zeros((8, 8), np.uint8))
    cv2.imwrite(str(data / "masks" / "z.png"), np.zeros((8, 8), np.uint8))
    (data / "masks" / "notes.txt").write_text("x")
    with caplog.at_level("WARNING", logger="ulcerseg.training.dataset"):
        ds = load_dataset(data)
    assert [s.stem for s in ds.samples] == ["00", "01"]  # the same files used as before
    lines = [r.getMessage() for r in caplog.records]
    assert all("\n" not in line for line in lines)
    assert [line.split(": ")[1] for line in lines] == [
        str(data / "images" / n) for n in ("c.gif", "d.jfif", "extra")
    ] + [str(data / "masks" / n) for n in ("c.png", "notes.txt", "z.png")]
    assert lines[0].endswith("c.gif: not of a known format (.jpg, .jpeg, .png, .tif, .tiff, .bmp, .webp, "
                             ".heic, .heif, .avif)")  # fmt: skip
    assert lines[2].endswith("extra: a folder: subfolders are not read")
    assert lines[3].endswith("c.png: a mask of no image (no images/c.*)")


def test_model_pt_keeps_the_best_epochs_weights_when_later_epochs_score_lower(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """model.pt must hold the weights of the epoch with the best validation Dice, which the card
    reports: a slip that saved every epoch's weights (mutation round 6, T6) gave the last epoch's
    weights under the best epoch's figures, with a checksum that matched."""
    from ulcerseg.training import loop

    dice = iter([0.4, 0.2, 0.1])
    monkeypatch.setattr(loop, "validate", lambda *a, **k: {"val_dice": next(dice), "val_iou": 0.1,
                                                          "val_dice_mean": 0.1})  # fmt: skip
    after_each_epoch: list[str] = []
    write_history = loop._write_history

    def recording(run_state, progress_state):  # type: ignore[no-untyped-def]
        after_each_epoch.append(file_sha256(tmp_path / "run" / "model.pt"))
        return write_history(run_state, progress_state)

    monkeypatch.setattr(loop, "_write_history", recording)
    data = make_dataset(tmp_path / "data", n=4)
    train(write_config(tmp_path / "tiny.yaml", epochs=3, patience=10), [data], tmp_path / "run")
    assert len(after_each_epoch) == 3 and len(set(after_each_epoch)) == 1  # epoch 1's, kept
    card = load_card(tmp_path / "run")
    assert card.training["best_epoch"] == 1 and card.weights_sha256 == after_each_epoch[0]


def test_fine_tuning_refuses_a_config_at_another_scale_than_the_initial_model(
    tmp_path: Path, trained: tuple[Path, Path]
) -> None:
    """Before: with --init, the data was scaled to the config's model.px_per_mm while the new
    card kept the initial model's, so inference rectified photos to a scale the fine-tuned
    network had not been trained at, without a word."""
    data, run = trained
    assert load_card(run).px_per_mm == 10.0
    cfg_path = tmp_path / "tune.yaml"
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["model"]["px_per_mm"] = 15.0
    cfg_path.write_text(yaml.safe_dump(cfg))
    refused = r"tune\.yaml: model\.px_per_mm is 15, but --init .* works at 10 px/mm: set model\.px_per_mm: 10"
    with pytest.raises(ConfigError, match=refused):
        train(cfg_path, [data], tmp_path / "tuned", init=run)
    assert not (tmp_path / "tuned").exists()  # refused before anything was written


class _Oracle:
    """A backend that returns the ground truth of make_dataset's images."""

    from ulcerseg.segmentation.model import ModelCard

    card = ModelCard(name="oracle", tile_px=64)
    sha256 = "0" * 64

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        return ((tiles[..., 0] < 150) & (tiles[..., 1] < 60)).astype(np.float32)


def test_one_dataset_folder_may_be_given_alone_as_a_str_or_path(tmp_path: Path) -> None:
    """data_dirs=Path(d) raised TypeError ('PosixPath' object is not iterable) and
    data_dirs='d' read each letter as a folder ('/images: missing images/ folder')."""
    data = make_dataset(tmp_path / "d", n=4)
    for one in (data, str(data)):
        result = evaluate(_Oracle(), one)
        assert result.summary["n_images"] == 4 and result.summary["dataset_dice"] == pytest.approx(1.0)
    run = train(write_config(tmp_path / "tiny.yaml"), data, tmp_path / "run", stop_after=1)
    assert run.epochs == 1 and (tmp_path / "run" / "last.pt").is_file()
    # stop_after -1 or 0 ran the whole training (no epoch count reaches them): refused
    for bad in (-1, 0, 1.5):
        with pytest.raises(ConfigError, match="stop_after: must be a whole number of epochs >= 1"):
            train(write_config(tmp_path / "tiny.yaml"), data, tmp_path / "run2", stop_after=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "run2").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 0.0}, "scale: must be a finite number 0.01-100"),
        ({"scale": -1.0}, "scale: must be a finite number 0.01-100"),
        ({"scale": float("nan")}, "scale: must be a finite number 0.01-100"),
        ({"scale": 1e6}, "scale: must be a finite number 0.01-100"),
        ({"threshold": 2.0}, r"threshold: must be between 0 and 1"),
        ({"threshold": 0.0}, r"threshold: must be between 0 and 1"),  # round 7, A6
        ({"threshold": 1.0}, r"threshold: must be between 0 and 1"),
        ({"threshold": float("nan")}, r"threshold: must be between 0 and 1"),
        ({"tta": "rot"}, "tta: unknown test-time augmentation 'rot'"),
        ({"window": 0}, r"window: must be a whole number of px >= 32, not 0"),  # was a raw ValueError
        ({"window": 31.5}, r"window: must be a whole number of px >= 32"),
    ],
)
def test_evaluate_refuses_options_the_command_refuses(tmp_path: Path, kwargs: dict, message: str) -> None:
    """evaluate() took any scale, threshold and tta: scale 0 or -1 and threshold 2 or nan gave
    numbers without an error (threshold 2: an empty prediction on every image), scale nan a raw
    ValueError, 1e6 a cv2.error (12 PB), tta 'rot' a raw ValueError."""
    data = make_dataset(tmp_path / "d", n=2)
    with pytest.raises(ConfigError, match=message):
        evaluate(_Oracle(), [data], **kwargs)
