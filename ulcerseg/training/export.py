"""ONNX export of a model folder, checked against the PyTorch output."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ulcerseg.errors import ConfigError, ModelError, first_line
from ulcerseg.segmentation.model import (
    COARSE_ONNX_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    file_sha256,
    load_card,
    load_network,
    save_card,
    wrap_probability,
)
from ulcerseg.training.provenance import HeldOut

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """Where the ONNX file went, its SHA-256, and the largest |torch - onnx| probability gap."""

    onnx_path: Path
    onnx_sha256: str
    max_abs_diff: float
    check_shapes: tuple[tuple[int, int], ...]


def export_onnx(
    model_dir: str | Path, opset: int = 17, tolerance: float = 1e-3, seed: int = 0
) -> ExportResult:
    """Export ``model_dir/model.pt`` to ``model_dir/model.onnx`` and record it in the card.

    The graph maps float32 RGB 0-1 (N×3×H×W, dynamic N/H/W) to probabilities (N×1×H×W);
    normalisation and sigmoid are inside. The export is checked with ONNX Runtime on random
    tiles of two sizes; a gap above ``tolerance`` raises ModelError.
    """
    model_dir = Path(model_dir)
    card = load_card(model_dir)
    net = wrap_probability(load_network(model_dir, card), card)
    path = model_dir / ONNX_FILE
    shapes = ((card.tile_px, card.tile_px), (card.tile_px // 2 + 32, card.tile_px + 64))
    worst = export_checked(net, path, card.tile_px, shapes, opset, tolerance, seed)
    sha = file_sha256(path)
    save_card(
        card.replace(onnx_sha256=sha, onnx_source_sha256=file_sha256(model_dir / WEIGHTS_FILE)),
        model_dir,
    )
    log.info("exported %s (max |torch - onnx| = %.2e)", path, worst)
    return ExportResult(path, sha, worst, shapes)


# ONNX opsets the export writes (first, last)
OPSETS = (11, 20)


@contextmanager
def _export_errors(tmp: Path, opset: int) -> Iterator[None]:
    """The exporter's failures (an opset it cannot write, an operator it lacks) as one-line
    ModelErrors; no partial file is left."""
    try:
        yield
    except ModelError:
        raise
    except Exception as err:  # torch raises RuntimeError, SymbolicValueError, ...
        tmp.unlink(missing_ok=True)
        reason = first_line(err)
        raise ModelError(f"{tmp.with_suffix('')}: ONNX export at opset {opset} failed ({reason})") from None


def export_checked(
    net: Any,
    path: Path,
    tile_px: int,
    check_shapes: tuple[tuple[int, int], ...],
    opset: int = 17,
    tolerance: float = 1e-3,
    seed: int = 0,
) -> float:
    """Export a probability network (float RGB 0-1 N×3×H×W -> N×1×H×W, dynamic N/H/W) to
    ``path`` via a temporary file, checked with ONNX Runtime against torch on random inputs of
    ``check_shapes`` (rounded down to multiples of 32; batch 2, then 1); a gap above
    ``tolerance`` raises ModelError and leaves ``path`` as it was. Returns the largest gap."""
    import onnxruntime as ort
    import torch

    if not OPSETS[0] <= opset <= OPSETS[1]:
        raise ModelError(f"{path}: ONNX opset {opset} is outside {OPSETS[0]}-{OPSETS[1]} (the Unet's "
                         "resizes need 11; torch's TorchScript exporter writes at most 20)")  # fmt: skip
    tmp = path.with_name(path.name + ".tmp")
    with torch.inference_mode(), warnings.catch_warnings(), _export_errors(tmp, opset):
        # the TorchScript exporter is deprecated but needs no extra package (onnxscript)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            (torch.rand(1, 3, tile_px, tile_px),),
            str(tmp),
            input_names=["image"],
            output_names=["probability"],
            dynamic_axes={
                "image": {0: "batch", 2: "height", 3: "width"},
                "probability": {0: "batch", 2: "height", 3: "width"},
            },
            opset_version=opset,
            dynamo=False,  # the TorchScript exporter needs no onnxscript
        )
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 0.0
    for i, (h, w) in enumerate(check_shapes):
        n, h, w = (2 if i == 0 else 1), h - h % 32, w - w % 32
        x = rng.random((n, 3, h, w), dtype=np.float32)
        with torch.inference_mode():
            ref = net(torch.from_numpy(x)).numpy()
        (got,) = session.run(None, {"image": x})
        if got.shape != ref.shape:
            tmp.unlink(missing_ok=True)
            raise ModelError(f"{tmp}: ONNX output shape {got.shape} != torch {ref.shape}")
        worst = max(worst, float(np.max(np.abs(got - ref))))
    if worst > tolerance:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"{path}: ONNX output differs from torch by {worst:.2e} (> {tolerance})")
    tmp.replace(path)
    return worst


@contextmanager
def _working_directory_in_temporary_folder() -> Iterator[None]:
    """Run the block in a new temporary working directory, removed afterwards with anything
    written there (the CLI's export runs on one thread: the working directory is the process's)."""
    import os
    import tempfile

    before = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="ulcerseg-quant-") as folder:
        os.chdir(folder)
        try:
            yield
        finally:
            os.chdir(before)


@dataclass(frozen=True)
class QuantizeResult:
    """The int8 coarse network, its SHA-256 and how many calibration images set its ranges."""

    path: Path
    sha256: str
    n_images: int


def calibration_images(
    data_dirs: list[Path], held_out: dict[str, set[str]] | HeldOut, n_images: int, seed: int = 0
) -> list[Path]:
    """Up to ``n_images`` image paths (seeded) from ``data_dirs``, never a held-out stem.

    ``held_out`` maps a dataset name to the stems a model card keeps for validation, or is a
    card's :class:`~ulcerseg.training.provenance.HeldOut` (by name, else by content hash).
    """
    from ulcerseg.training.dataset import load_dataset

    if not isinstance(held_out, HeldOut):
        held_out = HeldOut(by_name=dict(held_out))
    paths: list[Path] = []
    for root in data_dirs:
        ds = load_dataset(root, check_masks=False)
        skip = held_out.stems(ds)
        paths += [s.image_path for s in ds.samples if s.stem not in skip]
    if not paths:
        raise ModelError("quantisation: no calibration images (every image is held out)")
    order = np.random.default_rng(seed).permutation(len(paths))[:n_images]
    return [paths[i] for i in sorted(order)]


def quantize_coarse(
    model_dir: str | Path,
    data_dirs: Sequence[str | Path] | str | Path,
    coarse_scale: float = 0.75,
    n_images: int = 96,
    seed: int = 0,
) -> QuantizeResult:
    """Quantise ``model.onnx`` to int8 (``model.coarse-int8.onnx``) for the coarse pass.

    Static QDQ quantisation (int8 weights per channel, uint8 activations) whose activation
    ranges come from training images of ``data_dirs`` (never the card's validation stems,
    which the benchmarks use) at ``coarse_scale`` of their size, as the coarse pass sees
    them. Areas always come from the float network: the int8 one only proposes candidates.
    The card records the file's SHA-256, its source model.pt and the calibration images.
    """
    import cv2
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ulcerseg.training.dataset import dataset_dirs, read_image

    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise ConfigError(f"n_images: must be a whole number >= 1, not {n_images!r}")
    model_dir = Path(model_dir)
    card = load_card(model_dir)
    source = model_dir / ONNX_FILE
    if not source.is_file() or card.onnx_source_sha256 != file_sha256(model_dir / WEIGHTS_FILE):
        raise ModelError(f"{source}: missing or stale; export it first (ulcerseg export --onnx)")
    data_dirs = dataset_dirs(data_dirs)
    images = calibration_images(data_dirs, HeldOut.from_training(card.training), n_images, seed)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.queue = list(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            if not self.queue:
                return None
            rgb = read_image(self.queue.pop())
            rgb = cv2.resize(rgb, None, fx=coarse_scale, fy=coarse_scale, interpolation=cv2.INTER_AREA)
            h, w = rgb.shape[0] - rgb.shape[0] % 32, rgb.shape[1] - rgb.shape[1] % 32
            x = rgb[:h, :w].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
            return {"image": np.ascontiguousarray(x)}

    path = model_dir / COARSE_ONNX_FILE
    pre = model_dir / (COARSE_ONNX_FILE + ".pre.tmp")
    tmp = model_dir / (COARSE_ONNX_FILE + ".tmp")
    try:
        try:
            # where it fails, ONNX Runtime's symbolic shape inference saves its partial graph
            # (sym_shape_infer_temp.onnx + <uuid>.data) in the working directory: run it elsewhere
            with _working_directory_in_temporary_folder():
                quant_pre_process(str(source.resolve()), str(pre.resolve()), skip_symbolic_shape=False)
        except Exception as err:  # it misses some graphs (timm encoders such as the tiny
            # recipe's): ONNX's own shape inference then
            log.info("symbolic shape inference failed (%s); quantising with ONNX shape inference",
                     first_line(err))  # fmt: skip
            quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
        tmp.replace(path)
    except (ModelError, OSError):
        raise
    except Exception as err:  # onnxruntime raises bare Exceptions: one line, not a traceback
        raise ModelError(f"{path}: int8 quantisation failed ({first_line(err)})") from None
    finally:
        pre.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    sha = file_sha256(path)
    calibration = {
        "datasets": [str(Path(d).name) for d in data_dirs],
        "n_images": len(images),
        "image_stems": [p.stem for p in images],
        "coarse_scale": coarse_scale,
        "seed": seed,
    }
    save_card(
        card.replace(coarse_onnx_sha256=sha, coarse_onnx_source_sha256=card.onnx_sha256,
                     coarse_calibration=calibration),
        model_dir,
    )  # fmt: skip
    log.info("quantised %s from %d calibration images", path, len(images))
    return QuantizeResult(path, sha, len(images))
