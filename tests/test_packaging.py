"""Install tiers and package data: measuring imports no torch; shipped files resolve from anywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ulcerseg import resources
from ulcerseg.errors import TRAIN_EXTRA_MODULES as TRAIN_MODULES
from ulcerseg.errors import ConfigError, ModelError, missing_extra_message

REPO = Path(__file__).resolve().parents[1]


def test_measuring_imports_no_training_tier() -> None:
    # the core install has no torch: the measuring path must not import it (nor its friends),
    # not even where torch is installed (importing it costs seconds and ~800 MB of RSS)
    code = (
        "import sys, ulcerseg.pipeline, ulcerseg.segmentation.backends, ulcerseg.healing;"
        "from ulcerseg.config import PipelineConfig;"
        "be = ulcerseg.pipeline.open_model(PipelineConfig());"
        "assert type(be).__name__ == 'OnnxBackend', be;"
        # the shipped model's light coarse network is current (hashes match the card): it runs
        "assert be.coarse_network == 'light', be.coarse_network;"
        "print(sorted(m for m in ('torch', 'torchvision', 'segmentation_models_pytorch',"
        " 'albumentations', 'onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_measuring_a_photo_imports_neither_scipy_nor_scikit_image(tmp_path: Path) -> None:
    # their import costs ~0.6 s of CPU per run (a one-photo run's third); the perimeter is
    # OpenCV's boundary length
    from conftest import make_photo, write_jpeg

    write_jpeg(tmp_path / "in" / "S001" / "D0" / "U1.jpg", make_photo(px_per_mm=12, size=(640, 480)).rgb)
    code = (
        "import sys; from pathlib import Path; from ulcerseg.config import PipelineConfig;"
        "from ulcerseg.pipeline import measure_study;"
        f"s = measure_study(Path({str(tmp_path / 'in')!r}), Path({str(tmp_path / 'out')!r}),"
        " PipelineConfig());"
        "assert s.n_measured == 1, s;"
        "print(sorted(m for m in ('scipy', 'skimage') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_default_model_resolves_from_another_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(resources.MODELS_ENV, raising=False)
    found = resources.resolve_model_dir("models/default")
    assert found.resolve() == (REPO / "models" / "default").resolve()
    assert resources.resolve_model_dir("default").resolve() == found.resolve()


def test_explicit_model_paths_win(tmp_path: Path, monkeypatch) -> None:
    own = tmp_path / "mine" / "default"
    own.mkdir(parents=True)
    (own / "model.json").write_text("{}")
    # a folder given as is
    assert resources.resolve_model_dir(own) == own
    # the environment variable overrides the shipped models of that name
    monkeypatch.setenv(resources.MODELS_ENV, str(tmp_path / "mine"))
    assert resources.resolve_model_dir("models/default") == own
    with pytest.raises(ModelError, match="no model folder"):
        resources.resolve_model_dir(tmp_path / "nowhere")


def test_shipped_configs_resolve(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resources.config_path("healing.yaml") == REPO / "configs" / "healing.yaml"
    assert resources.find_config("configs/train/tiny.yaml") == REPO / "configs" / "train" / "tiny.yaml"
    assert resources.find_config("train/default.yaml") == REPO / "configs" / "train" / "default.yaml"
    # a user's own file of the same name wins
    (tmp_path / "configs" / "train").mkdir(parents=True)
    (tmp_path / "configs" / "train" / "tiny.yaml").write_text("train: {}\n")
    assert resources.find_config("configs/train/tiny.yaml") == Path("configs/train/tiny.yaml")
    with pytest.raises(ConfigError):
        resources.config_path("nope.yaml")


def test_measure_and_heal_configs_resolve_from_another_directory(tmp_path: Path, monkeypatch) -> None:
    # README: the installed command works from any directory, an existing -c FILE used as given;
    # `measure -c configs/default.yaml` and `heal --config configs/healing.yaml` failed outside
    # the checkout ("cannot read config", "does not exist") while `train --config` resolved
    from click.testing import CliRunner

    from ulcerseg.cli import main
    from ulcerseg.config import PipelineConfig, load_config
    from ulcerseg.healing import HealingConfig, load_healing_config

    monkeypatch.chdir(tmp_path)
    assert load_config(Path("configs/default.yaml")) == PipelineConfig()
    assert load_healing_config("configs/healing.yaml") == HealingConfig()
    result = CliRunner().invoke(main, ["heal", str(tmp_path), "--config", "configs/healing.yaml"])
    assert "does not exist" not in result.output and "no study.sqlite" in str(result.exception), result.output
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "healing.yaml").write_text("healed_max_area_mm2: 1.5\n")
    assert load_healing_config("configs/healing.yaml").healed_max_area_mm2 == 1.5  # as given wins


def test_evaluate_and_train_init_models_resolve_from_another_directory(tmp_path: Path, monkeypatch) -> None:
    # README: the installed command works from any directory, models/<name> looked up as for
    # `measure -m`; `evaluate --model models/default` (the README's own command), its
    # --split-from and `train --init models/default` stopped outside the checkout with
    # "models/default: model folder does not exist", and ignored $ULCERSEG_MODELS inside it
    from click.testing import CliRunner

    import ulcerseg.segmentation.backends as backends
    import ulcerseg.training.evaluate as evaluate
    import ulcerseg.training.loop as loop
    from ulcerseg.cli import main

    seen: dict[str, object] = {}

    def stop(name: str):  # records the model folder the command reads, then stops it
        def record(*args, **kwargs):
            seen[name] = kwargs.get("init", kwargs.get("split_from", args[0] if args else None))
            raise RuntimeError("stop")

        return record

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(resources.MODELS_ENV, raising=False)
    shipped = (REPO / "models" / "default").resolve()
    monkeypatch.setattr(backends, "open_backend", stop("model"))
    CliRunner().invoke(main, ["evaluate", "--model", "models/default", "--data", "d"])
    monkeypatch.setattr(backends, "open_backend", lambda *a, **k: None)
    monkeypatch.setattr(evaluate, "evaluate", stop("split_from"))
    CliRunner().invoke(
        main, ["evaluate", "-m", "models/default", "--data", "d", "--split-from", "models/default"]
    )
    monkeypatch.setattr(loop, "train", stop("init"))
    args = [
        "train",
        "--config",
        "configs/train/tiny.yaml",
        "--data",
        "d",
        "-o",
        "run",
        "--init",
        "models/default",
    ]
    CliRunner().invoke(main, args)
    assert {k: Path(str(v)).resolve() for k, v in seen.items()} == dict.fromkeys(
        ("model", "split_from", "init"), shipped
    )
    # $ULCERSEG_MODELS wins for models/<name>, as for measure; a folder that is nowhere stays as given
    own = tmp_path / "mine" / "default"
    own.mkdir(parents=True)
    (own / "model.json").write_text("{}")
    monkeypatch.setenv(resources.MODELS_ENV, str(tmp_path / "mine"))
    monkeypatch.setattr(backends, "open_backend", stop("model"))
    CliRunner().invoke(main, ["evaluate", "--model", "models/default", "--data", "d"])
    assert seen["model"] == own
    CliRunner().invoke(main, ["evaluate", "--model", "nowhere", "--data", "d"])
    assert seen["model"] == Path("nowhere")


def test_bundled_copy_is_used_when_no_checkout(tmp_path: Path, monkeypatch) -> None:
    # an installed wheel: no checkout folders beside the package, the bundled copy instead
    bundled = tmp_path / "_bundled"
    (bundled / "models" / "default").mkdir(parents=True)
    (bundled / "models" / "default" / "model.json").write_text("{}")
    (bundled / "configs").mkdir()
    (bundled / "configs" / "healing.yaml").write_text("{}\n")
    monkeypatch.setattr(resources, "_CHECKOUT_ROOT", tmp_path / "site-packages")
    monkeypatch.setattr(resources, "_bundled_root", lambda: bundled)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(resources.MODELS_ENV, raising=False)
    assert resources.resolve_model_dir("models/default") == bundled / "models" / "default"
    assert resources.config_path("healing.yaml") == bundled / "configs" / "healing.yaml"


def test_missing_training_tier_is_one_line_advice() -> None:
    assert "ulcerseg[train]" in (missing_extra_message(ModuleNotFoundError(name="torch.nn")) or "")
    assert missing_extra_message(ModuleNotFoundError(name="yaml")) is None


def test_onnx_backend_measures_without_training_tier() -> None:
    # the core install: torch, smp & co. cannot be imported at all; the ONNX model still runs
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {TRAIN_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
import numpy as np
from ulcerseg.segmentation.backends import open_backend
be = open_backend({str(REPO / "models" / "default")!r}, "auto", num_threads=1)
prob = be.predict_proba(np.zeros((1, 64, 64, 3), np.uint8))
print(type(be).__name__, prob.shape, bool(be.sha256))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "OnnxBackend (1, 64, 64) True"


def test_source_tree_version_is_the_project_version() -> None:
    import tomllib

    import ulcerseg

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert project["version"] == ulcerseg._SOURCE_VERSION  # outputs record it: it must not drift


def test_outputs_record_the_running_codes_version_not_stale_install_metadata() -> None:
    """An editable install keeps the metadata of the version it was installed at: a checkout
    updated since recorded that older version on its outputs (and measure would not measure a
    study again). The version is the source's, whatever the metadata says."""
    code = """
import importlib.metadata
importlib.metadata.version = lambda name: "0.0.1"
import ulcerseg
print(ulcerseg.__version__ == ulcerseg._SOURCE_VERSION != "0.0.1")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True"


def test_the_library_leaves_printing_to_the_command_line() -> None:
    """Outside ulcerseg/cli/ the package logs: no print(), click.echo or writes to sys.stdout /
    sys.stderr (review serve's login lines were click.echo calls in ulcerseg.review.server)."""
    import re

    pattern = re.compile(r"\bprint\(|click\.(echo|secho)|sys\.(stdout|stderr)\.write")
    found = [
        f"{path.relative_to(REPO)}:{n}"
        for path in sorted((REPO / "ulcerseg").rglob("*.py"))
        if "cli" not in path.relative_to(REPO / "ulcerseg").parts[:1]
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line.split("#")[0])
    ]
    assert not found, found
