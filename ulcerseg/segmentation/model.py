"""Model cards and network construction for the ulcer segmentation model.

A *model* is a folder holding ``model.json`` (the :class:`ModelCard`), ``model.pt`` (a torch
``state_dict`` of the smp network) and optionally ``model.onnx``. The card says everything the
measurement pipeline needs: how to build the network, how to normalise its input, the physical
scale (px per mm) of the rectified images it expects, the tile size and the threshold.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from ulcerseg.config import (
    MAX_GRID_PX_PER_MM,
    MIN_GRID_PX_PER_MM,
    Check,
    Positive,
    PositiveInt,
    build_dataclass,
)
from ulcerseg.errors import ConfigError, ModelError, first_line

log = logging.getLogger(__name__)

CARD_FILE = "model.json"
WEIGHTS_FILE = "model.pt"
ONNX_FILE = "model.onnx"
# int8 copy of model.onnx for the coarse pass (finds candidates; areas come from model.onnx)
COARSE_ONNX_FILE = "model.coarse-int8.onnx"
# light coarse-pass network: model.pt's trunk + a head distilled from it (training/coarse.py)
COARSE_HEAD_FILE = "model.coarse-head.pt"
COARSE_LIGHT_ONNX_FILE = "model.coarse-light.onnx"

#: smp architectures whose constructor takes ``decoder_channels`` as a list (one per stage).
_LIST_DECODER_ARCHS = frozenset({"Unet", "UnetPlusPlus", "MAnet"})

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to build, run and trace a trained segmentation model.

    ``mean``/``std`` are per RGB channel on the 0-1 scale. ``px_per_mm`` is the physical
    resolution of the rectified marker-plane images the model expects; ``tile_px`` the tile side
    (px) used for sliding-window inference; ``threshold`` the probability above which a pixel is
    ulcer. ``weights_sha256`` is the SHA-256 of ``model.pt`` (the model's identity).
    """

    name: str
    architecture: str = "Unet"
    encoder: str = "resnet18"
    encoder_depth: PositiveInt = 5
    decoder_channels: tuple[PositiveInt, ...] = (256, 128, 64, 32, 16)
    in_channels: PositiveInt = 3
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[Positive, Positive, Positive] = IMAGENET_STD
    px_per_mm: Annotated[float, Check(ge=MIN_GRID_PX_PER_MM, le=MAX_GRID_PX_PER_MM)] = 10.0
    tile_px: PositiveInt = 256
    threshold: Annotated[float, Check(gt=0, lt=1)] = 0.5
    weights_sha256: str = ""
    onnx_sha256: str | None = None
    #: SHA-256 of the model.pt the ONNX file was exported from (stale-export detection).
    onnx_source_sha256: str | None = None
    #: SHA-256 of the int8 coarse-pass network (``model.coarse-int8.onnx``) and of the model.pt
    #: it was quantised from; the images its activation ranges were calibrated on.
    coarse_onnx_sha256: str | None = None
    coarse_onnx_source_sha256: str | None = None
    coarse_calibration: dict[str, Any] = field(default_factory=dict)
    #: The light coarse-pass network (``model.coarse-light.onnx``, head ``model.coarse-head.pt``):
    #: SHA-256s, the model.pt it was distilled from, and how (data, settings, agreement).
    coarse_light_sha256: str | None = None
    coarse_light_head_sha256: str | None = None
    coarse_light_source_sha256: str | None = None
    coarse_light_training: dict[str, Any] = field(default_factory=dict)
    #: Range of scale factors (relative to ``px_per_mm``) seen in training, per data kind.
    scale_range: dict[str, list[float]] = field(default_factory=dict)
    #: Training provenance: data paths, config, command line, seed, split (validation stems).
    training: dict[str, Any] = field(default_factory=dict)
    #: Validation metrics of the saved weights (dataset-level Dice etc.).
    metrics: dict[str, Any] = field(default_factory=dict)
    package_version: str = ""
    hardware: str = ""
    training_seconds: Annotated[float, Check(ge=0)] = 0.0
    created_utc: str = ""
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key in ("decoder_channels", "mean", "std"):
            out[key] = list(out[key])
        return out

    def replace(self, **changes: Any) -> ModelCard:
        """Copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checked_weights_sha256(model_dir: str | Path, card: ModelCard) -> str:
    """SHA-256 of ``model_dir/model.pt``, checked against the card's ``weights_sha256``.

    Every way weights are used (torch, ONNX Runtime, export, quantisation, distillation) goes
    through this check, so a changed model.pt is never run, nor exported under the card of the
    network it replaced. A card without a hash (hand-made) is run with a warning.
    """
    path = Path(model_dir) / WEIGHTS_FILE
    sha = file_sha256(path)
    if not card.weights_sha256:
        log.warning("%s: the model card records no weights_sha256; its weights cannot be checked", path)
    elif card.weights_sha256 != sha:
        raise ModelError(
            f"{path}: SHA-256 {sha[:12]}… does not match weights_sha256 {card.weights_sha256[:12]}… "
            "in the model card (changed or replaced weights)"
        )
    return sha


def known_architectures() -> list[str]:
    """Names of smp architectures usable in a card (e.g. ``Unet``, ``FPN``)."""
    import segmentation_models_pytorch as smp

    return sorted(getattr(smp, "_MODEL_ARCHITECTURES_REGISTRY", {}).keys()) or [
        "Unet",
        "UnetPlusPlus",
        "MAnet",
        "Linknet",
        "FPN",
        "PSPNet",
        "PAN",
        "DeepLabV3",
        "DeepLabV3Plus",
        "UPerNet",
        "Segformer",
    ]


def known_encoders() -> list[str]:
    """Names of smp encoders (e.g. ``resnet18``, ``mobilenet_v2``); see also :func:`is_known_encoder`."""
    import segmentation_models_pytorch as smp

    return list(smp.encoders.get_encoder_names())


def is_known_encoder(encoder: str) -> bool:
    """An smp encoder name, or ``tu-<timm model>`` (timm's features-only encoder: only the
    stages up to ``encoder_depth`` are built, so a shallow network stays small)."""
    if encoder.startswith("tu-"):
        import timm

        return bool(timm.is_model(encoder[3:]))
    return encoder in known_encoders()


def check_architecture(architecture: str, encoder: str, where: str) -> None:
    """Raise ModelError naming ``where`` (file and key) if arch/encoder are not smp names.

    Without segmentation-models-pytorch (the core install, which runs ``model.onnx``) the names
    are not checked here: only building the network needs them, and that needs smp.
    """
    try:
        has_smp = importlib.util.find_spec("segmentation_models_pytorch") is not None
    except (ImportError, ValueError):
        has_smp = False
    if not has_smp:
        return
    if architecture not in known_architectures():
        raise ModelError(
            f"{where}: architecture: unknown architecture {architecture!r} "
            f"(known: {', '.join(known_architectures())})"
        )
    if not is_known_encoder(encoder):
        raise ModelError(
            f"{where}: encoder: unknown encoder {encoder!r} "
            "(see segmentation_models_pytorch.encoders.get_encoder_names(), or tu-<timm model>)"
        )


def card_from_dict(data: dict[str, Any], source: str = "<dict>", check_names: bool = True) -> ModelCard:
    """Validate a card dictionary and build the :class:`ModelCard`; errors name ``source``.

    Types, finiteness and ranges are checked by :func:`ulcerseg.config.build_dataclass` (the
    validator of every configuration file); unknown keys (cards of newer versions) are logged
    and ignored. Errors are one-line ModelErrors ``FILE: key 'name': problem``.
    ``check_names=False`` skips checking architecture and encoder against smp's names, which
    imports segmentation-models-pytorch and torch (seconds, ~800 MB): the ONNX backend runs
    ``model.onnx`` and never builds the network (:func:`build_network` checks them then).
    """
    if not isinstance(data, dict):
        raise ModelError(f"{source}: model card must be a JSON object")
    try:
        card = build_dataclass(ModelCard, data, source, unknown_keys="warn")
    except ConfigError as err:
        raise ModelError(str(err)) from None
    if check_names:
        check_architecture(card.architecture, card.encoder, source)
    if card.tile_px % 32:
        raise ModelError(f"{source}: key 'tile_px': must be a positive multiple of 32, got {card.tile_px}")
    if card.architecture in _LIST_DECODER_ARCHS and len(card.decoder_channels) != card.encoder_depth:
        raise ModelError(
            f"{source}: key 'decoder_channels': needs {card.encoder_depth} values "
            f"(encoder_depth), got {len(card.decoder_channels)}"
        )
    return card


def load_card(model_dir: str | Path, check_names: bool = True) -> ModelCard:
    """Read and validate ``model_dir/model.json``; raise ModelError naming the file/key.

    ``check_names``: see :func:`card_from_dict` (False for ONNX inference: no torch import).
    """
    path = Path(model_dir) / CARD_FILE
    if not Path(model_dir).is_dir():
        raise ModelError(f"{model_dir}: model folder does not exist")
    if not path.is_file():
        raise ModelError(f"{path}: model card not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # ValueError: invalid JSON or not UTF-8
        raise ModelError(f"{path}: cannot read model card ({err})") from None
    return card_from_dict(data, str(path), check_names)


def card_json(card: ModelCard) -> str:
    """The text of ``model.json`` for ``card`` (pretty JSON)."""
    return json.dumps(card.to_dict(), indent=2, sort_keys=False) + "\n"


def save_card(card: ModelCard, model_dir: str | Path) -> Path:
    """Write ``model_dir/model.json`` (pretty JSON); return its path."""
    path = Path(model_dir) / CARD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(card_json(card), encoding="utf-8")
    tmp.replace(path)
    return path


def build_network(card: ModelCard) -> Any:
    """Build the (untrained) smp network the card describes: 1 output channel of logits.

    Weights are never downloaded (``encoder_weights=None``).
    """
    import segmentation_models_pytorch as smp

    check_architecture(card.architecture, card.encoder, f"model card {card.name!r}")
    kwargs: dict[str, Any] = {
        "encoder_name": card.encoder,
        "encoder_weights": None,
        "in_channels": card.in_channels,
        "classes": 1,
        "encoder_depth": card.encoder_depth,
    }
    if card.architecture in _LIST_DECODER_ARCHS:
        kwargs["decoder_channels"] = list(card.decoder_channels)
    try:
        return smp.create_model(card.architecture, **kwargs)
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise ModelError(
            f"model card {card.name!r}: cannot build {card.architecture}/{card.encoder} ({err})"
        ) from None


def load_network(model_dir: str | Path, card: ModelCard | None = None) -> Any:
    """Build the network of ``model_dir`` and load ``model.pt`` into it (CPU, eval mode)."""

    card = card or load_card(model_dir)
    path = Path(model_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found")
    checked_weights_sha256(model_dir, card)
    net = build_network(card)
    load_weights(net, path)
    net.eval()
    return net


def load_weights(net: Any, path: str | Path) -> None:
    """Load the state dict saved at ``path`` (tensors only, never pickled code) into ``net``;
    a file that is not such weights, or not of this network, is a one-line ModelError."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types (its message advises unsafe loading)
        raise ModelError(f"{path}: not a weights file of tensors ({type(err).__name__})") from None
    try:
        net.load_state_dict(state)
    except Exception as err:
        reason = first_line(err)
        raise ModelError(f"{path}: weights of another network than the model card's ({reason})") from None


def wrap_logits(net: Any, card: ModelCard) -> Any:
    """Wrap ``net`` so it maps float RGB in 0-1 (N×3×H×W) to logits (N×1×H×W).

    The card's mean/std normalisation lives inside the wrapper; training and every inference
    path go through it, so they always see identically scaled inputs.
    """
    import torch

    class _Normalized(torch.nn.Module):
        mean: torch.Tensor  # buffers (register_buffer), typed for nn.Module's __getattr__
        std: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.net = net
            mean = torch.tensor(card.mean, dtype=torch.float32).view(1, 3, 1, 1)
            std = torch.tensor(card.std, dtype=torch.float32).view(1, 3, 1, 1)
            self.register_buffer("mean", mean, persistent=False)
            self.register_buffer("std", std, persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net((x - self.mean) / self.std)

    return _Normalized()


def wrap_probability(net: Any, card: ModelCard) -> Any:
    """Wrap ``net`` so it maps float RGB in 0-1 (N×3×H×W) to probabilities (N×1×H×W).

    Normalisation (:func:`wrap_logits`) and the sigmoid are inside, so torch and ONNX agree.
    """
    import torch

    class _Prob(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.logits = wrap_logits(net, card)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.logits(x))

    return _Prob().eval()
