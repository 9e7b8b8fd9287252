"""ONNX export of a model folder, checked against the PyTorch output."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ulcerseg.errors import ModelError
from ulcerseg.segmentation.model import (
    ONNX_FILE,
    WEIGHTS_FILE,
    file_sha256,
    load_card,
    load_network,
    save_card,
    wrap_probability,
)

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
    import onnxruntime as ort
    import torch

    model_dir = Path(model_dir)
    card = load_card(model_dir)
    net = wrap_probability(load_network(model_dir, card), card)
    path = model_dir / ONNX_FILE
    tmp = model_dir / (ONNX_FILE + ".tmp")
    example = torch.rand(1, 3, card.tile_px, card.tile_px)
    with torch.inference_mode(), warnings.catch_warnings():
        # the TorchScript exporter is deprecated but needs no extra package (onnxscript)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            (example,),
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
    shapes = ((card.tile_px, card.tile_px), (card.tile_px // 2 + 32, card.tile_px + 64))
    worst = 0.0
    for n, (h, w) in zip((2, 1), shapes, strict=True):
        h, w = h - h % 32, w - w % 32
        x = rng.random((n, 3, h, w), dtype=np.float32)
        with torch.inference_mode():
            ref = net(torch.from_numpy(x)).numpy()
        (got,) = session.run(None, {"image": x})
        if got.shape != ref.shape:
            raise ModelError(f"{tmp}: ONNX output shape {got.shape} != torch {ref.shape}")
        worst = max(worst, float(np.max(np.abs(got - ref))))
    if worst > tolerance:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"{path}: ONNX output differs from torch by {worst:.2e} (> {tolerance})")
    tmp.replace(path)
    sha = file_sha256(path)
    save_card(
        card.replace(onnx_sha256=sha, onnx_source_sha256=file_sha256(model_dir / WEIGHTS_FILE)),
        model_dir,
    )
    log.info("exported %s (max |torch - onnx| = %.2e)", path, worst)
    return ExportResult(path, sha, worst, shapes)
