"""Training configuration (YAML in configs/train/), validated with errors naming file and key."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

from ulcerseg.config import (
    MAX_GRID_PX_PER_MM,
    MAX_SCALE,
    MAX_THREADS,
    MIN_GRID_PX_PER_MM,
    MIN_SCALE,
    Check,
    NonNegative,
    Positive,
    PositiveInt,
    build_dataclass,
    read_yaml_mapping,
)
from ulcerseg.errors import ConfigError, ModelError
from ulcerseg.resources import find_config
from ulcerseg.segmentation.model import (
    _LIST_DECODER_ARCHS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelCard,
    check_architecture,
)
from ulcerseg.training.augment import AugmentConfig

T = TypeVar("T")

PRECISIONS = ("auto", "fp32", "bf16")

# the network sees RGB scaled to [0, 1]: a channel's mean lies in it and its standard deviation
# cannot exceed 1 (mean: [500, 0, 0] trained on inputs all near -500, without a word)
UnitMean = Annotated[float, Check(ge=0, le=1)]
UnitStd = Annotated[float, Check(gt=0, le=1)]
# numpy's and torch's seed range (seed: -1 ended training in a traceback)
Seed = Annotated[int, Check(ge=0, le=2**32 - 1)]
# threads and loader processes: more than a machine has cores only costs memory
Workers = Annotated[int, Check(ge=0, le=MAX_THREADS)]


@dataclass(frozen=True)
class ModelSection:
    """Network and input conventions; becomes the model card."""

    architecture: str = "Unet"
    encoder: str = "mobilenet_v2"
    encoder_depth: PositiveInt = 5
    decoder_channels: tuple[PositiveInt, ...] = (128, 64, 48, 32, 16)
    mean: tuple[UnitMean, UnitMean, UnitMean] = IMAGENET_MEAN
    std: tuple[UnitStd, UnitStd, UnitStd] = IMAGENET_STD
    # the model card's range (the resolution of the grid measuring segments)
    px_per_mm: Annotated[float, Check(ge=MIN_GRID_PX_PER_MM, le=MAX_GRID_PX_PER_MM)] = 10.0
    tile_px: int = 256
    threshold: Annotated[float, Check(gt=0, lt=1)] = 0.5


@dataclass(frozen=True)
class TrainSection:
    """Optimisation settings. ``max_minutes`` bounds total wall time (including resumes)."""

    seed: Seed = 0
    val_fraction: float = 0.2
    batch_size: int = 8
    epochs: PositiveInt = 100
    samples_per_epoch: Annotated[int, Check(ge=0)] = 0  # 0 = number of training images
    lr: Positive = 2e-3
    weight_decay: NonNegative = 1e-4
    warmup_steps: Annotated[int, Check(ge=0)] = 50
    patience: PositiveInt = 15
    max_minutes: NonNegative = 0.0  # 0 = no time budget
    num_workers: Workers = 0
    num_threads: Workers = 0  # torch intra-op threads on CPU, 0 = torch default
    bce_weight: NonNegative = 1.0
    dice_weight: NonNegative = 1.0
    area_weight: NonNegative = 0.0  # per-tile relative area error (losses.tile_area_loss); 0 = off
    val_max_side: Annotated[int, Check(ge=32)] = 1024  # validation images larger than this are tiled
    # auto: bf16 autocast where the device computes bf16 natively (CUDA, or a CPU with
    # AVX512-BF16/AMX through oneDNN, where it is about 2x faster), else fp32
    precision: str = "auto"
    channels_last: bool = True  # NHWC activations: about 1.5x faster convolutions on CPU
    # exponential moving average of the weights (and BatchNorm statistics), per optimiser step;
    # 0 = off. Validation, the best checkpoint and the shipped weights are the averaged ones:
    # with small batches the raw weights' validation Dice swings by several points per epoch.
    ema_decay: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    name: str
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    source: str = "<config>"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("source")
        return out

    def card(self, name: str | None = None) -> ModelCard:
        m = self.model
        return ModelCard(
            name=name or self.name,
            architecture=m.architecture,
            encoder=m.encoder,
            encoder_depth=m.encoder_depth,
            decoder_channels=tuple(m.decoder_channels),
            mean=tuple(m.mean),  # type: ignore[arg-type]
            std=tuple(m.std),  # type: ignore[arg-type]
            px_per_mm=m.px_per_mm,
            tile_px=m.tile_px,
            threshold=m.threshold,
        )


def _section(cls: type[T], data: dict[str, Any], key: str, source: str) -> T:
    section = data.get(key)
    if section is None:
        return cls()
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: key {key!r}: expected a mapping")
    return build_dataclass(cls, section, source, prefix=f"{key}.")


def config_from_dict(data: dict[str, Any], source: str = "<config>") -> TrainConfig:
    """Validate a config mapping; errors name ``source`` and the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a YAML mapping")
    known = {"name", "model", "train", "augment"}
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(known))})")
    name = data.get("name")
    if name is not None and (isinstance(name, bool) or not isinstance(name, str | int)):
        raise ConfigError(f"{source}: key 'name': expected a string, got {name!r}")
    model = _section(ModelSection, data, "model", source)
    train = _section(TrainSection, data, "train", source)
    augment = _section(AugmentConfig, data, "augment", source)
    try:
        check_architecture(model.architecture, model.encoder, f"{source}: model")
    except ModelError as err:
        raise ConfigError(
            str(err)
            .replace("model: architecture:", "model.architecture:")
            .replace("model: encoder:", "model.encoder:")
        ) from None
    if model.tile_px % 32 or model.tile_px <= 0:
        raise ConfigError(f"{source}: model.tile_px: must be a positive multiple of 32")
    if model.architecture in _LIST_DECODER_ARCHS and len(model.decoder_channels) != model.encoder_depth:
        # the model card's rule: else training stopped at building the network, after the data
        raise ConfigError(
            f"{source}: model.decoder_channels: needs {model.encoder_depth} values "
            f"(model.encoder_depth), got {len(model.decoder_channels)}"
        )
    if train.batch_size < 1:
        raise ConfigError(f"{source}: train.batch_size: must be >= 1")
    if train.precision not in PRECISIONS:
        raise ConfigError(f"{source}: train.precision: expected one of {', '.join(PRECISIONS)}")
    if not 0.0 <= train.ema_decay < 1.0:
        raise ConfigError(f"{source}: train.ema_decay: must be in [0, 1) (0 = off)")
    if not 0.0 <= train.val_fraction < 1.0:
        raise ConfigError(f"{source}: train.val_fraction: must be in [0, 1)")
    for key in ("scale_range", "scale_range_known"):
        lo_hi = getattr(augment, key)
        # within evaluate --scale's limits: a factor of 1000 resized a tile's window to a giant
        if len(lo_hi) != 2 or not MIN_SCALE <= lo_hi[0] <= lo_hi[1] <= MAX_SCALE:
            raise ConfigError(
                f"{source}: augment.{key}: expected [low, high] with "
                f"{MIN_SCALE:g} <= low <= high <= {MAX_SCALE:g}"
            )
    return TrainConfig(str(data.get("name") or Path(source).stem), model, train, augment, source)


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a training config YAML file (a shipped recipe by name from anywhere)."""
    path = find_config(path)
    return config_from_dict(_read_with_base(path, ()), str(path))


def _read_with_base(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """The YAML mapping of ``path``, laid over the file its ``base`` key names (relative path).

    A recipe that differs from another in a few keys says only those: sections merge key by
    key, so a second training stage cannot silently drift from the first.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: training config not found")
    data = read_yaml_mapping(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: key 'base': expected a file name")
    base_path = (path.parent / base).resolve()
    if base_path in seen or base_path == path.resolve():
        raise ConfigError(f"{path}: key 'base': {base} includes itself")
    merged = _read_with_base(base_path, (*seen, path.resolve()))
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged
