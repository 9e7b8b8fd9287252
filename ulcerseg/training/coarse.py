"""A light network for the coarse pass, distilled from a model folder's own network.

The coarse pass only proposes candidate regions (probability >= ``coarse_threshold``); the
fine pass that gives the area always runs the full network. The light network reuses parts
of the full network unchanged (frozen) and adds a small head at 1/4 of the input resolution,
trained to reproduce the full network's coarse probability (the teacher) on training tiles at
the coarse pass's scale. Two kinds of head (``DistillSettings.head``):

- ``decoder``: on the encoder and the first decoder blocks (down to 1/4 resolution); it skips
  the two high-resolution decoder blocks, about half of the network's cost on a CPU;
- ``encoder``: on the encoder's features alone (1/32 to 1/4, merged top-down by 1x1 lateral
  convolutions as in a feature pyramid); it skips the whole decoder, whose 3x3 convolutions on
  wide concatenations cost ~4x the MobileNetV2 encoder: ~1/4.5 of the network's cost.

Files in the model folder: ``model.coarse-head.pt`` (the head's weights) and
``model.coarse-light.onnx`` (trunk + head, normalisation and sigmoid inside, the same
input/output convention as ``model.onnx``). The card records both SHA-256s, the model.pt they
were made from, and the distillation's data, seed and agreement with the teacher.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ulcerseg.errors import ModelError, first_line
from ulcerseg.segmentation.model import (
    COARSE_HEAD_FILE,
    COARSE_LIGHT_ONNX_FILE,
    WEIGHTS_FILE,
    ModelCard,
    file_sha256,
    load_card,
    load_network,
    save_card,
)

log = logging.getLogger(__name__)

_DOWN = 4  # the head works at 1/4 of the input resolution
HEAD_KINDS = ("decoder", "encoder")


@dataclass(frozen=True)
class DistillSettings:
    """How the light coarse network is distilled. ``coarse_scale``: the coarse pass's px per mm
    as a fraction of the model's (``segmentation.coarse_factor``); ``tiles``: training tiles
    (a tenth more are held out for the agreement figures); ``positive_weight``: extra loss
    weight where the teacher sees ulcer (missing a candidate costs more than a false one);
    ``head``: one of :data:`HEAD_KINDS` (module doc)."""

    tiles: int = 3000
    tile_px: int = 320
    epochs: int = 12
    batch_size: int = 32
    lr: float = 3e-3
    coarse_scale: float = 0.75
    positive_weight: float = 4.0
    head_channels: int = 32
    head: str = "encoder"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_head(self.head)
        # export --coarse-tiles and --coarse-scale's bounds: 0 tiles raised a raw ValueError
        # (torch.cat of nothing), a scale of 5 distilled on tiles 25 times the coarse pass's
        if not self.tiles >= 16:
            raise ModelError(f"coarse tiles: need at least 16, not {self.tiles!r}")
        if not 0.1 <= self.coarse_scale <= 1.0:
            raise ModelError(
                f"coarse scale: must be 0.1-1.0 (of the model's px per mm), not {self.coarse_scale!r}"
            )


def _check_head(kind: str) -> None:
    """ModelError unless ``kind`` is one of :data:`HEAD_KINDS`."""
    if kind not in HEAD_KINDS:
        raise ModelError(f"coarse head must be one of {', '.join(HEAD_KINDS)}, not {kind!r}")


@dataclass(frozen=True)
class DistillResult:
    """The light coarse network's files, SHA-256s and agreement with the teacher on held-out
    tiles: ``recall`` = share of the teacher's candidate regions (>= ``threshold``) that the
    light network also marks; ``iou`` of the two candidate masks."""

    onnx_path: Path
    onnx_sha256: str
    head_sha256: str
    recall: float
    iou: float
    n_tiles: int
    seconds: float


def build_light(net: Any, card: ModelCard, head_channels: int = 32, head: str = "encoder") -> Any:
    """The light coarse network over ``net`` (an smp Unet) with a ``head`` of :data:`HEAD_KINDS`:
    float RGB 0-1 (N×3×H×W, H and W multiples of 32) -> probability (N×1×H×W); normalisation
    and sigmoid inside. ``trunk(x)`` gives the frozen features the head reads (a tensor after
    the decoder blocks, or the encoder's pyramid deepest first), the encoder features and the
    spatial shapes (the teacher continues from them, :func:`_teacher_logits`)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    _check_head(head)  # a kind read from a head file, not only from DistillSettings
    if card.architecture != "Unet" or len(card.decoder_channels) < 3:
        raise ModelError(f"{card.name}: a light coarse network needs a Unet with >= 3 decoder blocks")
    levels = len(card.decoder_channels) - 1  # encoder features from the deepest down to 1/4
    if head == "decoder":
        depth = len(card.decoder_channels) - 2  # the blocks at 1/2 and full resolution are skipped
        layers: nn.Module = _conv_head(card.decoder_channels[depth - 1], head_channels)
    else:
        depth = 0
        layers = _pyramid_head(list(net.encoder.out_channels[::-1][:levels]), head_channels)

    class Light(nn.Module):
        mean: torch.Tensor  # buffers (register_buffer), typed for nn.Module's __getattr__
        std: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.encoder = net.encoder
            self.blocks = net.decoder.blocks[:depth]
            self.head = layers
            self.register_buffer("mean", torch.tensor(card.mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(card.std, dtype=torch.float32).view(1, 3, 1, 1))

        def trunk(self, x: torch.Tensor) -> tuple[Any, list[torch.Tensor], list[Any]]:
            features = self.encoder((x - self.mean) / self.std)
            shapes = [f.shape[2:] for f in features][::-1]
            deep = features[1:][::-1]
            if depth == 0:
                return tuple(deep[:levels]), deep, shapes
            h = deep[0]
            for i, block in enumerate(self.blocks):
                h = block(h, shapes[i + 1][0], shapes[i + 1][1], deep[i + 1])
            return h, deep, shapes

        def logits(self, h: Any, size: tuple[int, int]) -> torch.Tensor:
            return F.interpolate(self.head(h), size=size, mode="bilinear", align_corners=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, _, _ = self.trunk(x)
            return torch.sigmoid(self.logits(h, (x.shape[2], x.shape[3])))

    light = Light()
    light.depth = depth  # type: ignore[assignment]
    light.kind = head  # type: ignore[assignment]
    return light.eval()


def _conv_head(channels: int, head_channels: int) -> Any:
    """Two 3x3 convolutions and a 1x1 on the decoder's 1/4-resolution features."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(channels, head_channels, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(head_channels, head_channels // 2, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(head_channels // 2, 1, 1),
    )  # fmt: skip


def _pyramid_head(pyramid: list[int], head_channels: int) -> Any:
    """Top-down merge of encoder features (deepest first: 1x1 lateral convolutions added after
    bilinear upsampling), then the :func:`_conv_head` layers at the shallowest level's 1/4."""
    from torch import nn
    from torch.nn import functional as F

    class Pyramid(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lateral = nn.ModuleList(nn.Conv2d(c, head_channels, 1) for c in pyramid)
            self.out = _conv_head(head_channels, head_channels)

        def forward(self, features: tuple[Any, ...]) -> Any:
            h = self.lateral[0](features[0])
            for lateral, f in zip(self.lateral[1:], features[1:], strict=True):
                up = F.interpolate(F.relu(h), size=f.shape[2:], mode="bilinear", align_corners=False)
                h = up + lateral(f)
            return self.out(F.relu(h))

    return Pyramid()


def _teacher_logits(net: Any, light: Any, h: Any, deep: list[Any], shapes: list[Any]) -> Any:
    """The full network's logits, continued from the light network's trunk."""
    if light.depth == 0:  # the trunk is the encoder alone: the whole decoder runs
        h = deep[0]
    for i in range(light.depth, len(net.decoder.blocks)):
        skip = deep[i + 1] if i + 1 < len(deep) else None
        h = net.decoder.blocks[i](h, shapes[i + 1][0], shapes[i + 1][1], skip)
    return net.segmentation_head(h)


def _tiles(model_dir: Path, card: ModelCard, data_dirs: list[Path], settings: DistillSettings):
    """Augmented training tiles (uint8 RGB), never from the card's validation stems, at the
    coarse pass's scale, with the augmentation the model was trained with."""
    from ulcerseg.training.augment import AugmentConfig, TrainAugment
    from ulcerseg.training.dataset import load_dataset, read_image, read_mask
    from ulcerseg.training.provenance import HeldOut

    aug = dict(card.training.get("config", {}).get("augment", {}))
    aug = {k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()}
    augment = TrainAugment(AugmentConfig(**aug), settings.tile_px)
    held_out = HeldOut.from_training(card.training)
    items: list[tuple[Any, float, bool]] = []
    for root in data_dirs:
        ds = load_dataset(root)
        base = card.px_per_mm / ds.px_per_mm if ds.px_per_mm else 1.0
        skip = held_out.stems(ds)
        items += [(s, base * settings.coarse_scale, ds.px_per_mm is not None) for s in ds.samples
                  if s.stem not in skip]  # fmt: skip
    if not items:
        raise ModelError(f"{model_dir}: no distillation images (every image is held out)")
    rng = np.random.default_rng(settings.seed)
    for i in range(settings.tiles + settings.tiles // 10):
        sample, scale, known = items[int(rng.integers(len(items)))]
        tile_rng = np.random.default_rng([settings.seed, i])
        image, _ = augment(read_image(sample.image_path), read_mask(sample.mask_path), scale, known, tile_rng)
        yield image


def distill_coarse(
    model_dir: str | Path,
    data_dirs: Sequence[str | Path] | str | Path,
    settings: DistillSettings | None = None,
) -> DistillResult:
    """Distil, save and export the light coarse network of ``model_dir`` (see module doc)."""
    import torch
    from torch.nn import functional as F

    from ulcerseg.training.dataset import dataset_dirs

    settings = settings or DistillSettings()
    dirs = dataset_dirs(data_dirs)
    t_start = time.perf_counter()
    model_dir = Path(model_dir)
    card = load_card(model_dir)
    torch.manual_seed(settings.seed)
    net = load_network(model_dir, card).eval()
    light = build_light(net, card, settings.head_channels, settings.head)
    for p in net.parameters():
        p.requires_grad_(False)
    # 1. features of the frozen trunk and the teacher's probability at 1/4 resolution
    feats: list[tuple[torch.Tensor, ...]] = []
    targets: list[torch.Tensor] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        x = torch.from_numpy(np.stack(batch).transpose(0, 3, 1, 2).copy()).float().div_(255.0)
        with torch.inference_mode():
            h, deep, shapes = light.trunk(x)
            teacher = torch.sigmoid(_teacher_logits(net, light, h, deep, shapes))
        feats.append(tuple(f.half() for f in h) if isinstance(h, tuple) else (h.half(),))
        targets.append(F.avg_pool2d(teacher, _DOWN).half())
        batch.clear()

    for image in _tiles(model_dir, card, dirs, settings):
        batch.append(image)
        if len(batch) == 16:
            flush()
    if batch:
        flush()
    features = [torch.cat(level) for level in zip(*feats, strict=True)]  # per pyramid level
    target = torch.cat(targets)
    n_train = settings.tiles
    log.info("distillation: %d tiles encoded in %.0f s", len(target), time.perf_counter() - t_start)
    # 2. the head, trained on the cached features
    head = light.head.train()
    for p in head.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=1e-4)
    steps = settings.epochs * -(-n_train // settings.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(settings.seed)
    for epoch in range(settings.epochs):
        order = torch.randperm(n_train, generator=gen)
        total = 0.0
        for start in range(0, n_train, settings.batch_size):
            idx = order[start : start + settings.batch_size]
            y = target[idx].float()
            logits = head(_select(features, idx, light.kind))
            weight = 1.0 + settings.positive_weight * (y > 0.1).float()
            loss = F.binary_cross_entropy_with_logits(logits, y, weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log.info("distillation epoch %d/%d: loss %.4f", epoch + 1, settings.epochs, total / n_train)
    head.eval()
    held_out = _select(features, slice(n_train, None), light.kind)
    recall, iou = _agreement(head, held_out, target[n_train:], 0.25)
    log.info("held-out tiles: candidate recall %.3f, IoU %.3f", recall, iou)
    return _save(model_dir, card, light, settings, dirs, recall, iou, time.perf_counter() - t_start)


def _select(features: list[Any], idx: Any, kind: str) -> Any:
    """The head's float input for tiles ``idx`` of the cached (half) features."""
    chosen = tuple(level[idx].float() for level in features)
    return chosen if kind == "encoder" else chosen[0]


def _agreement(head: Any, features: Any, target: Any, threshold: float) -> tuple[float, float]:
    """Candidate-region recall and candidate-mask IoU of the head against the teacher."""
    import cv2
    import torch

    if len(target) == 0:
        return float("nan"), float("nan")
    with torch.inference_mode():
        prob = torch.sigmoid(head(features))[:, 0].numpy()
    ref = target.float()[:, 0].numpy()
    found = regions = 0
    inter = union = 0
    for p, t in zip(prob >= threshold, ref >= threshold, strict=True):
        n, labels = cv2.connectedComponents(t.astype(np.uint8))
        regions += n - 1
        found += len(set(np.unique(labels[p & t])) - {0})
        inter += int((p & t).sum())
        union += int((p | t).sum())
    return (found / regions if regions else 1.0), (inter / union if union else 1.0)


def _save(
    model_dir: Path, card: ModelCard, light: Any, settings: DistillSettings, data_dirs: list[Path],
    recall: float, iou: float, seconds: float,
) -> DistillResult:  # fmt: skip
    import dataclasses

    import torch

    head_path = model_dir / COARSE_HEAD_FILE
    tmp = model_dir / (COARSE_HEAD_FILE + ".tmp")
    state = {"head": light.head.state_dict(), "head_channels": settings.head_channels, "kind": settings.head}
    torch.save(state, tmp)
    tmp.replace(head_path)
    onnx_path, onnx_sha = export_light(model_dir, card, light)
    head_sha = file_sha256(head_path)
    record = {
        "datasets": [Path(d).name for d in data_dirs],
        "settings": dataclasses.asdict(settings),
        "held_out_tiles": settings.tiles // 10,
        "candidate_recall": round(recall, 4),
        "candidate_iou": round(iou, 4),
        "seconds": round(seconds, 1),
    }
    save_card(
        card.replace(
            coarse_light_sha256=onnx_sha, coarse_light_head_sha256=head_sha,
            coarse_light_source_sha256=file_sha256(model_dir / WEIGHTS_FILE), coarse_light_training=record,
        ),
        model_dir,
    )  # fmt: skip
    return DistillResult(onnx_path, onnx_sha, head_sha, recall, iou, settings.tiles, seconds)


def load_light(model_dir: str | Path, card: ModelCard | None = None) -> Any:
    """The light coarse network of a model folder, from model.pt and model.coarse-head.pt."""
    import torch

    model_dir = Path(model_dir)
    card = card or load_card(model_dir)
    path = model_dir / COARSE_HEAD_FILE
    if not path.is_file():
        raise ModelError(f"{path}: no light coarse network (run `ulcerseg export --coarse-light DATASET`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        # heads saved before the encoder kind existed are decoder heads
        kind = str(state.get("kind", "decoder"))
        light = build_light(load_network(model_dir, card), card, int(state["head_channels"]), kind)
        light.head.load_state_dict(state["head"])
    except ModelError:
        raise
    except Exception as err:  # not a head file of this network: one line
        raise ModelError(f"{path}: cannot load the light coarse head ({first_line(err)})") from None
    return light.eval()


def export_light(model_dir: Path, card: ModelCard, light: Any) -> tuple[Path, str]:
    """Export the light coarse network to ``model.coarse-light.onnx``, checked against torch
    (:func:`ulcerseg.training.export.export_checked`)."""
    from ulcerseg.training.export import export_checked

    path = model_dir / COARSE_LIGHT_ONNX_FILE
    export_checked(light.eval(), path, card.tile_px, ((card.tile_px, card.tile_px + 64),))
    return path, file_sha256(path)
