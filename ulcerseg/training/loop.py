"""Training loop: seeded, resumable, time-budgeted, validated every epoch, DDP-aware.

Run folder layout (``-o runs/X``): ``last.pt`` (resume checkpoint), ``model.pt`` + ``model.json``
(best weights and their card, rewritten on every improvement), ``metrics.csv``,
``learning_curve.png``, ``val_stems.json``, ``config.yaml`` (the resolved config).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import platform
import random
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ulcerseg import __version__
from ulcerseg.errors import ConfigError, ModelError, first_line
from ulcerseg.metrics import Counts, counts, scores
from ulcerseg.segmentation.model import (
    CARD_FILE,
    WEIGHTS_FILE,
    ModelCard,
    build_network,
    card_json,
    file_sha256,
    load_card,
    load_weights,
    save_card,
    wrap_logits,
    wrap_probability,
)
from ulcerseg.tables import write_csv
from ulcerseg.training.augment import TrainAugment
from ulcerseg.training.config import TrainConfig, load_config
from ulcerseg.training.dataset import Sample, dataset_dirs, load_dataset, read_image, read_mask, split_dataset
from ulcerseg.training.predict import predict_image
from ulcerseg.training.provenance import dataset_sha256

log = logging.getLogger(__name__)

CKPT_FILE = "last.pt"
METRICS_FILE = "metrics.csv"
CURVE_FILE = "learning_curve.png"
SPLIT_FILE = "val_stems.json"


@dataclass(frozen=True)
class Item:
    """A training/validation sample with the scale that brings it to the model's px per mm."""

    sample: Sample
    dataset: str
    base_scale: float
    known_scale: bool


@dataclass
class TrainResult:
    """Outcome of :func:`train`: the run folder and its best validation metrics."""

    out_dir: Path
    card: ModelCard | None
    epochs: int
    stopped: str
    best: dict[str, float] = field(default_factory=dict)


def hardware_description() -> str:
    """CPU model and thread count, plus the CUDA device when used."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    desc = f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} ({threads} threads)"
    if torch.cuda.is_available():
        desc += f"; GPU {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return desc


def use_bf16(precision: str, device: Any) -> bool:
    """Whether to train under bf16 autocast: ``precision`` from the config, on ``device``.

    ``auto`` picks bf16 only where the hardware computes it natively; ``bf16`` forces it
    (emulated and slow on other CPUs, but numerically the same).
    """
    import torch

    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TileDataset:
    """Map-style torch dataset: index -> augmented (image 3×T×T float 0-1, mask 1×T×T) tile.

    Randomness comes from (seed, epoch, index) only, so results do not depend on worker count.
    """

    def __init__(self, items: Sequence[Item], augment: TrainAugment, length: int, seed: int):
        self.items, self.augment, self.length, self.seed = list(items), augment, length, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        import torch

        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.items))
        item = self.items[int(order[index % len(self.items)])]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image = read_image(item.sample.image_path)
        mask = read_mask(item.sample.mask_path)
        img, msk = self.augment(image, mask, item.base_scale, item.known_scale, rng)
        x = torch.from_numpy(img.transpose(2, 0, 1).copy()).float().div_(255.0)
        y = torch.from_numpy(msk[None].astype(np.float32))
        return x, y


def collect_items(
    data_dirs: Sequence[str | Path], cfg: TrainConfig
) -> tuple[list[Item], list[Item], list[dict[str, Any]]]:
    """Load and split every dataset; return train items, validation items and data records."""
    train_items: list[Item] = []
    val_items: list[Item] = []
    records: list[dict[str, Any]] = []
    names: set[str] = set()
    for d in data_dirs:
        ds = load_dataset(d)
        if ds.name in names:
            raise ConfigError(f"{d}: dataset name {ds.name!r} given twice (set name in dataset.yaml)")
        names.add(ds.name)
        known = ds.px_per_mm is not None
        base = ds.scale_to(cfg.model.px_per_mm)
        tr, va = split_dataset(ds, cfg.train.val_fraction, cfg.train.seed)
        train_items += [Item(s, ds.name, base, known) for s in tr]
        val_items += [Item(s, ds.name, base, known) for s in va]
        records.append(
            {
                "name": ds.name,
                "sha256": dataset_sha256(ds),  # content hash, not a machine path
                "px_per_mm": ds.px_per_mm,
                "n_images": len(ds),
                "n_train": len(tr),
                "n_val": len(va),
                "split": "group" if ds.has_groups else "random",
                "val_stems": sorted(s.stem for s in va),
            }
        )
    if not train_items:
        raise ConfigError("no training images after the split (check --data and val_fraction)")
    return train_items, val_items, records


def validate(
    net: Any, card: ModelCard, items: Sequence[Item], window: int, bf16: bool = False
) -> dict[str, float]:
    """Dataset-level Dice/IoU (pixels pooled over images) and mean per-image Dice.

    With more than one dataset, ``val_dice_<name>`` gives each dataset's pooled Dice too (the
    combined figure mixes sources of very different difficulty). ``bf16`` runs the forward pass
    under bf16 autocast (as in training); ``ulcerseg evaluate`` stays the fp32 reference.
    """
    import torch

    device = next(net.parameters()).device
    prob_net = wrap_probability(net, card).to(device)
    prob_net.eval()
    tp = fp = fn = 0
    per_image = []
    per_dataset: dict[str, list[int]] = {}

    def predict(tiles: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(tiles.transpose(0, 3, 1, 2).astype(np.float32) / 255.0).to(device)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return prob_net(x)[:, 0].float().cpu().numpy()

    for it in items:
        image = read_image(it.sample.image_path)
        gt = read_mask(it.sample.mask_path)
        prob = predict_image(predict, image, it.base_scale, window)
        c = counts(prob >= card.threshold, gt)
        tp, fp, fn = tp + c.tp, fp + c.fp, fn + c.fn
        per_image.append(scores(c)["dice"])
        acc = per_dataset.setdefault(it.dataset, [0, 0, 0])
        acc[0], acc[1], acc[2] = acc[0] + c.tp, acc[1] + c.fp, acc[2] + c.fn
    net.train()
    pooled = scores(Counts(tp, fp, fn))
    out = {
        "val_dice": pooled["dice"],
        "val_iou": pooled["iou"],
        "val_dice_mean": float(np.mean(per_image)) if per_image else float("nan"),
    }
    if len(per_dataset) > 1:
        for name, (dtp, dfp, dfn) in sorted(per_dataset.items()):
            out[f"val_dice_{name}"] = scores(Counts(dtp, dfp, dfn))["dice"]
    return out


def plot_curve(rows: list[dict[str, Any]], path: Path) -> None:
    """Learning curve: training loss and validation Dice per epoch (PNG)."""
    from matplotlib.figure import Figure  # not pyplot: a caller's backend stays as it is
    from matplotlib.ticker import MaxNLocator

    if not rows:
        return
    ep = [r["epoch"] for r in rows]
    fig = Figure(figsize=(6, 4), dpi=100)
    ax1 = fig.subplots()
    ax1.plot(ep, [r["train_loss"] for r in rows], "C0-", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax1.set_ylabel("train loss (BCE + Dice)", color="C0")
    ax2 = ax1.twinx()
    ax2.plot(ep, [r["val_dice"] for r in rows], "C1-o", ms=3, label="val Dice (dataset)")
    ax2.plot(ep, [r["val_dice_mean"] for r in rows], "C2--", label="val Dice (mean per image)")
    per_dataset = [k for k in rows[0] if k.startswith("val_dice_") and k != "val_dice_mean"]
    for i, key in enumerate(per_dataset):
        ax2.plot(ep, [r[key] for r in rows], f"C{3 + i}:", label=f"val Dice {key[len('val_dice_') :]}")
    ax2.set_ylabel("validation Dice")
    ax2.set_ylim(0, 1)
    h1, l1 = ax1.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def _lr_at(cfg: TrainConfig, step: int, total_steps: int, elapsed: float) -> float:
    """Linear warm-up, then cosine decay over progress = max(step fraction, time fraction)."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = step / max(total_steps, 1)
    if t.max_minutes > 0:
        progress = max(progress, elapsed / (t.max_minutes * 60.0))
    progress = min(progress, 1.0)
    return t.lr * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def averaged_network(net: Any, decay: float) -> Any:
    """Exponential moving average of ``net``'s weights and buffers (None when ``decay`` is 0).

    ``torch.optim.swa_utils.AveragedModel``: call ``update_parameters(net)`` after each
    optimiser step; its ``.module`` is a plain copy of the network with the averaged state.
    """
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    # use_buffers: BatchNorm running statistics are averaged too, so the module is usable as is
    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _resume_key(config: dict[str, Any]) -> dict[str, Any]:
    """Config without the budget keys that may be raised when resuming (epochs, time, patience)."""
    key = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    for name in ("epochs", "max_minutes", "patience"):
        key.get("train", {}).pop(name, None)
    return key


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


@dataclass
class _Run:
    """Everything one training call set up (device, data, network, optimiser, loader)."""

    cfg: TrainConfig
    out: Path
    world: int
    rank: int
    local_rank: int
    device: Any
    train_items: list[Item]
    val_items: list[Item]
    data_records: list[dict[str, Any]]
    card: ModelCard
    init: str | Path | None
    init_card: ModelCard | None
    net: Any  # the bare network (its state is checkpointed)
    model: Any  # normalising wrapper, DDP-wrapped under torchrun
    opt: Any
    ema: Any  # weight average or None
    dataset: TileDataset | None = None
    sampler: Any = None
    loader: Any = None
    loss_fn: Any = None
    total_steps: int = 0
    bf16: bool = False
    command: str = ""

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def scored(self) -> Any:
        """The network that is validated and saved: the weight average when there is one."""
        return self.ema.module if self.ema is not None else self.net

    @property
    def ckpt_path(self) -> Path:
        return self.out / CKPT_FILE


@dataclass
class _Progress:
    """Training state carried across epochs and saved in the resume checkpoint."""

    start_epoch: int = 0
    step: int = 0
    elapsed_before: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=lambda: {"val_dice": -1.0})
    best_epoch: int = -1
    since_best: int = 0


def _setup(
    cfg: TrainConfig, data_dirs: Sequence[str | Path], out: Path, init: str | Path | None, resume: bool
) -> _Run:
    """Device, seeds, output checks, datasets and the network with its optimiser."""
    import torch
    import torch.distributed as tdist

    t = cfg.train
    world, rank, local_rank = _dist_info()
    if world > 1 and not tdist.is_initialized():
        tdist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        if t.num_threads > 0:
            torch.set_num_threads(t.num_threads)
    seed_everything((t.seed + rank) % 2**32)  # numpy takes seeds up to 2**32 - 1

    ckpt_path = out / CKPT_FILE
    if resume and not ckpt_path.is_file():
        raise ConfigError(f"{ckpt_path}: nothing to resume (no checkpoint)")
    if not resume and rank == 0 and (out / WEIGHTS_FILE).exists():
        raise ConfigError(f"{out}: output folder already holds a model (use --resume or a new -o)")
    # network: from the init model's card, else from the config
    init_card = load_card(init) if init is not None else None
    if init_card is not None and not math.isclose(init_card.px_per_mm, cfg.model.px_per_mm):
        # the data is scaled to the config's px/mm, while the new card (the init model's)
        # tells inference to rectify photos to the init model's: the model would measure every
        # photo at a scale it was not trained on
        raise ConfigError(
            f"{cfg.source}: model.px_per_mm is {cfg.model.px_per_mm:g}, but --init {init} works at "
            f"{init_card.px_per_mm:g} px/mm: set model.px_per_mm: {init_card.px_per_mm:g}"
        )
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    train_items, val_items, data_records = collect_items(data_dirs, cfg)

    if init_card is not None:
        card = init_card.replace(
            name=cfg.name,
            weights_sha256="",
            onnx_sha256=None,
            onnx_source_sha256=None,
            coarse_onnx_sha256=None,
            coarse_onnx_source_sha256=None,
            coarse_calibration={},
            metrics={},
            training={},
        )
        if (init_card.architecture, init_card.encoder) != (cfg.model.architecture, cfg.model.encoder):
            log.warning(
                "--init %s: using its network %s/%s instead of the config's %s/%s",
                init,
                init_card.architecture,
                init_card.encoder,
                cfg.model.architecture,
                cfg.model.encoder,
            )
    else:
        card = cfg.card()
    net = build_network(card)
    if init is not None:
        load_weights(net, Path(init) / WEIGHTS_FILE)
    # the card's input normalisation is part of the trained module (as in inference)
    model = wrap_logits(net, card).to(device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    ema = averaged_network(net, t.ema_decay)
    return _Run(cfg, out, world, rank, local_rank, device, train_items, val_items, data_records,
                card, init, init_card, net, model, opt, ema)  # fmt: skip


def _restore(run: _Run) -> _Progress:
    """State of an interrupted run from its checkpoint (same config up to the budget keys)."""
    import torch

    ckpt_path = run.ckpt_path
    try:  # the run folder's own checkpoint (optimizer state, history): a full pickle
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        config = ck.get("config", {})
    except Exception as err:  # truncated, overwritten, not a checkpoint: one line, not a traceback
        raise ModelError(f"{ckpt_path}: not a readable checkpoint ({first_line(err)}); "
                         "start the run afresh without --resume") from None  # fmt: skip
    if _resume_key(config) != _resume_key(run.cfg.to_dict()):
        raise ConfigError(f"{ckpt_path}: config differs from the checkpoint's; cannot resume")
    _check_resumed_inputs(ck, run)
    try:
        run.net.load_state_dict(ck["model"])
        run.opt.load_state_dict(ck["optimizer"])
        if run.ema is not None:
            if ck.get("ema") is None:
                raise ConfigError(f"{ckpt_path}: checkpoint has no weight average to resume")
            run.ema.load_state_dict(ck["ema"])
        state = _Progress(
            start_epoch=ck["epoch"] + 1,
            step=ck["step"],
            elapsed_before=ck["elapsed"],
            history=ck["history"],
            best=ck["best"],
            best_epoch=ck["best_epoch"],
            since_best=ck["since_best"],
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ModelError(f"{ckpt_path}: incomplete or foreign checkpoint ({first_line(err)}); "
                         "start the run afresh without --resume") from None  # fmt: skip
    log.info("resuming %s at epoch %d (%.1f min done)", run.out, state.start_epoch, state.elapsed_before / 60)
    return state


def _data_identity(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a checkpoint must share with a resumed run's data: each dataset's name, content
    hash and split (the split also follows a groups CSV, which the content hash leaves out)."""
    keys = ("name", "sha256", "px_per_mm", "split", "val_stems")
    return [{k: r.get(k) for k in keys} for r in records]


def _init_identity(init_card: ModelCard | None) -> str | None:
    """The initial model of a fine-tuning run by its weights' SHA-256 (None: from scratch)."""
    return init_card.weights_sha256 if init_card is not None else None


def _check_resumed_inputs(ck: dict[str, Any], run: _Run) -> None:
    """A checkpoint continues only on the data and from the initial model it was made with:
    other data would mix two datasets (and splits) in one model under one card, and another
    (or no) ``--init`` would record a wrong origin in the card."""
    ckpt_path = run.ckpt_path
    if "data" not in ck or "init" not in ck:  # checkpoints of 0.2.0 and earlier
        log.warning("%s: the checkpoint records no data or initial model; they cannot be checked", ckpt_path)
        return
    have, want = ck["data"], _data_identity(run.data_records)
    if have != want:
        names = [r.get("name") for r in have]
        if names != [r["name"] for r in want]:
            what = f"datasets {', '.join(map(repr, names))}"
        else:
            name = next(w["name"] for h, w in zip(have, want, strict=True) if h != w)
            what = f"dataset {name!r}, whose content or split has changed since"
        raise ConfigError(f"{ckpt_path}: the checkpoint was trained on {what}; cannot resume "
                          "on other data (give the same --data)")  # fmt: skip
    init_sha = _init_identity(run.init_card)
    if ck["init"] != init_sha:
        origin = (f"fine-tuned from a model with weights {ck['init'][:12]}… (give its --init)"
                  if ck["init"] is not None else "trained from scratch (resume without --init)")  # fmt: skip
        raise ConfigError(f"{ckpt_path}: the checkpoint was {origin}; cannot resume")


def _prepare_loader(run: _Run) -> None:
    """DDP wrapper, the seeded tile dataset, its loader, the loss and the precision."""
    import torch

    t = run.cfg.train
    if run.distributed:
        run.model = torch.nn.parallel.DistributedDataParallel(
            run.model,
            device_ids=[run.local_rank] if run.device.type == "cuda" else None,
            # smp encoders cut to encoder_depth < 5 keep their deeper (unused) stages
            find_unused_parameters=run.card.encoder_depth < 5,
        )

    length = t.samples_per_epoch or len(run.train_items)
    run.dataset = TileDataset(
        run.train_items, TrainAugment(run.cfg.augment, run.card.tile_px), length, t.seed
    )
    # TileDataset is a map-style dataset (len, getitem) but no subclass of torch's Dataset, which
    # torch's annotations ask for (the samplers and the loader only use len and getitem)
    run.sampler = (
        torch.utils.data.distributed.DistributedSampler(
            run.dataset,  # type: ignore[arg-type]
            num_replicas=run.world,
            rank=run.rank,
            shuffle=False,
        )
        if run.distributed
        else None
    )
    run.loader = torch.utils.data.DataLoader(
        run.dataset,  # type: ignore[arg-type]
        batch_size=t.batch_size,
        shuffle=False,  # the dataset permutes per epoch itself (seeded)
        sampler=run.sampler,
        num_workers=t.num_workers,
        drop_last=len(run.dataset) >= t.batch_size * run.world,
        persistent_workers=False,
    )
    from ulcerseg.training.losses import DiceBCELoss

    run.loss_fn = DiceBCELoss(t.bce_weight, t.dice_weight, t.area_weight)
    run.total_steps = t.epochs * max(len(run.loader), 1)
    run.bf16 = use_bf16(t.precision, run.device)
    log.info(
        "training on %s, %s%s",
        run.device,
        "bf16 autocast" if run.bf16 else "fp32",
        ", channels-last" if t.channels_last else "",
    )


def _train_epoch(
    run: _Run, state: _Progress, epoch: int, clock: Callable[[], float], budget: float, progress: bool
) -> tuple[list[float], bool]:
    """One pass over the loader; returns the batch losses and whether the time budget ran out.

    ``clock()`` is the training time so far (s) including earlier calls, ``budget`` the limit
    for training plus the last validation's duration.
    """
    import torch
    from tqdm import tqdm

    t = run.cfg.train
    assert run.dataset is not None
    run.dataset.set_epoch(epoch)
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
    run.model.train()
    losses: list[float] = []
    bar = tqdm(
        run.loader,
        desc=f"epoch {epoch + 1}/{t.epochs}",
        disable=not (progress and run.is_main),
        leave=False,
        dynamic_ncols=True,
    )
    out_of_time = False
    for x, y in bar:
        elapsed = clock()
        if elapsed >= budget:
            out_of_time = True
            break
        for g in run.opt.param_groups:
            g["lr"] = _lr_at(run.cfg, state.step, run.total_steps, elapsed)
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        if t.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.bf16):
            logits = run.model(x)
        loss = run.loss_fn(logits.float(), y)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        if run.ema is not None:
            run.ema.update_parameters(run.net)
        state.step += 1
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    return losses, out_of_time


def _validate_epoch(run: _Run) -> dict[str, float]:
    """Validation metrics of the scored network (NaN without validation images)."""
    if not run.val_items:
        return {"val_dice": float("nan"), "val_iou": float("nan"), "val_dice_mean": float("nan")}
    return validate(run.scored, run.card, run.val_items, run.cfg.train.val_max_side, run.bf16)


def _log_epoch(
    run: _Run,
    state: _Progress,
    epoch: int,
    losses: list[float],
    metrics: dict[str, float],
    epoch_seconds: float,
    elapsed: float,
) -> None:
    """Append the epoch's row (loss, metrics, duration incl. validation, elapsed) to the history."""
    row = {
        "epoch": epoch + 1,
        "step": state.step,
        "lr": run.opt.param_groups[0]["lr"],
        "train_loss": float(np.mean(losses)),
        **metrics,
        "epoch_seconds": round(epoch_seconds, 1),
        "elapsed_minutes": round(elapsed / 60, 2),
    }
    state.history.append(row)
    log.info("epoch %d: %s", epoch + 1, row)


def _keep_best(run: _Run, state: _Progress, epoch: int, metrics: dict[str, Any]) -> bool:
    """Whether validation Dice improved (the scored weights are then the new best, saved with
    their card by :func:`_save_model`); counts epochs since the best."""
    if not run.val_items or metrics["val_dice"] > state.best["val_dice"]:
        state.best = {k: float(v) for k, v in metrics.items()}
        state.best_epoch, state.since_best = epoch + 1, 0
        return True
    state.since_best += 1
    return False


def _save_model(
    out: Path, weights: dict[str, Any] | None, make_card: Callable[[str], ModelCard]
) -> ModelCard:
    """Write ``model.pt`` (``weights``, a state dict; None: keep the file's) and ``model.json``,
    the card ``make_card(weights SHA-256)``, so that a kill at any point leaves the old pair or
    the new one: a reader checks model.pt against the card's weights_sha256.

    Both files are written to temporary files first; then the weights and the card are moved
    into place, and an interruption (Ctrl-C) between the two moves puts the old weights back
    (a hard link kept for the purpose). Only a hard kill (SIGKILL, power loss) between two
    consecutive renames can still part them.
    """
    import torch

    path, card_path = out / WEIGHTS_FILE, out / CARD_FILE
    if weights is None:  # same weights, new figures: one atomic card write
        if not path.is_file():
            raise ModelError(f"{path}: best weights missing")
        card = make_card(file_sha256(path))
        save_card(card, out)
        return card
    tmp, card_tmp, old = (out / f".{name}.tmp" for name in (WEIGHTS_FILE, CARD_FILE, WEIGHTS_FILE + ".old"))
    try:
        torch.save(weights, tmp)
        card = make_card(file_sha256(tmp))
        card_tmp.write_text(card_json(card), encoding="utf-8")
        old.unlink(missing_ok=True)  # left by a hard kill
        if path.is_file():
            _keep_copy(path, old)
        os.replace(tmp, path)
        os.replace(card_tmp, card_path)
    except BaseException:
        # decided by the files, not by a step counter: an interruption can land right after a
        # rename returned. New weights beside the old card: the old weights go back
        if not tmp.exists() and card_tmp.exists():
            if old.exists():
                os.replace(old, path)
            else:  # the first best epoch: there were no weights
                path.unlink(missing_ok=True)
        raise
    finally:
        for leftover in (tmp, card_tmp, old):
            leftover.unlink(missing_ok=True)
    return card


def _keep_copy(path: Path, copy: Path) -> None:
    """``copy``: the bytes of ``path`` (a hard link; a copy where the file system has none)."""
    try:
        os.link(path, copy)
    except OSError:
        shutil.copyfile(path, copy)


def _write_history(run: _Run, state: _Progress) -> None:
    """``metrics.csv`` and the learning curve of the epochs so far."""
    write_csv(run.out / METRICS_FILE, state.history, list(state.history[0]))
    plot_curve(state.history, run.out / CURVE_FILE)


def _save_checkpoint(run: _Run, state: _Progress, epoch: int, elapsed: float) -> None:
    """``last.pt``: everything :func:`_restore` needs, written atomically."""
    import torch

    tmp = run.out / (CKPT_FILE + ".tmp")
    torch.save(
        {
            "model": run.net.state_dict(),
            "optimizer": run.opt.state_dict(),
            "ema": run.ema.state_dict() if run.ema is not None else None,
            "epoch": epoch,
            "step": state.step,
            "elapsed": elapsed,
            "history": state.history,
            "best": state.best,
            "best_epoch": state.best_epoch,
            "since_best": state.since_best,
            "config": run.cfg.to_dict(),
            "data": _data_identity(run.data_records),
            "init": _init_identity(run.init_card),
        },
        tmp,
    )
    tmp.replace(run.ckpt_path)


def train(
    config: str | Path | TrainConfig,
    data_dirs: Sequence[str | Path] | str | Path,
    out_dir: str | Path,
    init: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    command: str | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a model from ``config`` on ``data_dirs`` into ``out_dir``.

    ``init`` starts from an existing model folder (its card defines the network); ``resume``
    continues from ``out_dir/last.pt``. ``stop_after`` ends this call after that many epochs
    (an interruption that ``resume`` can continue). Under ``torchrun`` (WORLD_SIZE > 1) training runs with
    DistributedDataParallel; rank 0 validates and writes files.
    """
    import torch
    import torch.distributed as tdist

    if stop_after is not None and (
        isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1
    ):
        raise ConfigError(f"stop_after: must be a whole number of epochs >= 1 or None, not {stop_after!r}")
    cfg = config if isinstance(config, TrainConfig) else load_config(config)
    t = cfg.train
    out = Path(out_dir)
    run = _setup(cfg, dataset_dirs(data_dirs), out, init, resume)
    state = _restore(run) if resume else _Progress()
    _prepare_loader(run)
    budget = t.max_minutes * 60.0 if t.max_minutes > 0 else math.inf
    t0 = time.monotonic()
    run.command = command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    if run.is_main:
        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        (out / SPLIT_FILE).write_text(
            json.dumps({r["name"]: r["val_stems"] for r in run.data_records}, indent=1) + "\n"
        )
    stopped = "epochs"
    last_epoch_seconds = 0.0
    val_seconds = 0.0
    epoch = state.start_epoch - 1
    card_out: ModelCard | None = None

    def clock() -> float:
        return state.elapsed_before + time.monotonic() - t0

    for epoch in range(state.start_epoch, t.epochs):
        ep_start = time.monotonic()
        # the budget leaves room for this epoch's validation (as long as the last one)
        losses, out_of_time = _train_epoch(run, state, epoch, clock, budget - val_seconds, progress)
        if not losses:
            stopped = "time budget"
            break

        # validation and bookkeeping on rank 0 only
        stop_flag = torch.zeros(1, device=run.device)
        if run.is_main:
            v0 = time.monotonic()
            metrics = _validate_epoch(run)
            val_seconds = time.monotonic() - v0
            last_epoch_seconds = time.monotonic() - ep_start
            elapsed = clock()
            _log_epoch(run, state, epoch, losses, metrics, last_epoch_seconds, elapsed)
            improved = _keep_best(run, state, epoch, metrics)
            if run.val_items and state.since_best >= t.patience:
                stopped = f"early stopping (no improvement for {t.patience} epochs)"
                stop_flag += 1
            elif out_of_time or elapsed + last_epoch_seconds * 0.25 >= budget:
                stopped = "time budget"
                stop_flag += 1
            elif stop_after is not None and epoch + 1 - state.start_epoch >= stop_after:
                stopped = "interrupted (stop_after)"
                stop_flag += 1
            inputs = CardInputs(
                card=run.card,
                cfg=cfg,
                data_records=run.data_records,
                command=run.command,
                best=state.best,
                best_epoch=state.best_epoch,
                epochs_done=epoch + 1,
                elapsed=elapsed,
                stopped=stopped if stop_flag.item() or epoch == t.epochs - 1 else "running",
                init=init,
                init_card=run.init_card,
                precision="bf16 autocast" if run.bf16 else "fp32",
            )
            # the weights and their card before anything else, as one pair (see _save_model)
            card_out = _save_model(out, run.scored.state_dict() if improved else None, partial(_card, inputs))
            _write_history(run, state)
            _save_checkpoint(run, state, epoch, elapsed)
        if run.distributed:
            tdist.broadcast(stop_flag, src=0)
        if stop_flag.item():
            break
    if run.distributed:
        tdist.barrier()
        tdist.destroy_process_group()
    if run.is_main and not state.history:
        # the time budget ran out inside the first epoch: no model; exit 0 read as success
        raise ConfigError(
            f"{cfg.source}: no epoch finished within train.max_minutes ({t.max_minutes:g} min); "
            "no model written (raise train.max_minutes)"
        )
    if run.is_main and card_out is None and (out / WEIGHTS_FILE).is_file():
        card_out = load_card(out)
    return TrainResult(out, card_out, epoch + 1, stopped, state.best if state.best_epoch > 0 else {})


def init_record(card: ModelCard) -> dict[str, Any]:
    """How the model a fine-tuning run started from was made (its own chain included)."""
    t = card.training or {}
    return {
        "name": card.name,
        "weights_sha256": card.weights_sha256,
        "command": t.get("command"),
        "config_path": t.get("config_path"),
        "precision": t.get("precision"),
        "best_epoch": t.get("best_epoch"),
        "hardware": card.hardware,
        "training_seconds": card.training_seconds,
        "package_version": card.package_version,
        "init_model": t.get("init_model"),
    }


@dataclass(frozen=True)
class CardInputs:
    """What the model card of a run records (see :func:`_card`); times in s."""

    card: ModelCard
    cfg: TrainConfig
    data_records: list[dict[str, Any]]
    command: str
    best: dict[str, float]
    best_epoch: int
    epochs_done: int
    elapsed: float
    stopped: str
    init: str | Path | None
    init_card: ModelCard | None
    precision: str


def _card(inputs: CardInputs, weights_sha256: str) -> ModelCard:
    """The model card of the best weights so far (SHA-256 ``weights_sha256``), written after
    every epoch by :func:`_save_model`.

    Datasets are recorded by name and content hash (``sha256``, see
    :func:`ulcerseg.training.provenance.dataset_sha256`), the initial model by its folder name
    and card record: no machine paths.
    """
    card, cfg, data_records = inputs.card, inputs.cfg, inputs.data_records
    init_card = inputs.init_card
    a = cfg.augment
    return card.replace(
        weights_sha256=weights_sha256,
        scale_range={
            "unknown_scale_datasets": [float(a.scale_range[0]), float(a.scale_range[1])],
            "known_scale_datasets": [float(a.scale_range_known[0]), float(a.scale_range_known[1])],
        },
        training={
            "data": data_records,
            "config": cfg.to_dict(),
            "config_path": cfg.source,
            "command": inputs.command,
            "seed": cfg.train.seed,
            "val_fraction": cfg.train.val_fraction,
            "init": Path(inputs.init).name if inputs.init else None,
            "init_model": init_record(init_card) if init_card else None,
            "precision": inputs.precision,
            "best_epoch": inputs.best_epoch,
            "epochs_done": inputs.epochs_done,
            "stopped": inputs.stopped,
        },
        metrics={
            **inputs.best,
            "split_seed": cfg.train.seed,
            "n_val_images": sum(r["n_val"] for r in data_records),
        },
        package_version=__version__,
        hardware=hardware_description(),
        training_seconds=round(inputs.elapsed, 1),
        created_utc=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        description=(
            f"{card.architecture}/{card.encoder} ulcer segmentation "
            + (f"fine-tuned from {init_card.name} " if init_card else "trained from scratch ")
            + f"by `ulcerseg train` on {', '.join(r['name'] for r in data_records)}"
        ),
    )
