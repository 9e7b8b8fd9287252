"""CPU inference time of one tile (default 512 × 512) with PyTorch and ONNX Runtime.

Usage: python scripts/bench_inference.py [--model models/default] [--tile 512] [--threads 2]

If the model has no current model.onnx, it is exported into a temporary copy of the model
folder (the model folder itself is not modified). Prints median and best ms per tile.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def bench(predict, tile: np.ndarray, repeats: int, warmup: int) -> list[float]:
    """Milliseconds per call of ``predict(tile)`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        predict(tile)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict(tile)
        times.append(1000.0 * (time.perf_counter() - t0))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/default", help="model folder")
    parser.add_argument("--tile", type=int, default=512, help="tile side in px (multiple of 32)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both backends")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    import torch

    from ulcerseg.segmentation.backends import OnnxBackend, TorchBackend, onnx_is_current
    from ulcerseg.training.export import export_onnx
    from ulcerseg.training.loop import hardware_description

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 256, (1, args.tile, args.tile, 3), dtype=np.uint8)
    model = Path(args.model)
    print(f"model {model} | tile {args.tile}x{args.tile} | threads {args.threads}")
    print(f"hardware: {hardware_description()}")

    results = {}
    torch_be = TorchBackend(model, num_threads=args.threads)
    results["torch"] = bench(torch_be.predict_proba, tile, args.repeats, args.warmup)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = model
        if not onnx_is_current(model):
            onnx_dir = Path(tmp) / "model"
            shutil.copytree(model, onnx_dir)
            diff = export_onnx(onnx_dir).max_abs_diff
            print(f"(exported a temporary ONNX copy; max |torch - onnx| = {diff:.2e})")
        onnx_be = OnnxBackend(onnx_dir, num_threads=args.threads)
        results["onnxruntime"] = bench(onnx_be.predict_proba, tile, args.repeats, args.warmup)
    for name, times in results.items():
        print(
            f"{name:12s} {statistics.median(times):8.1f} ms/tile median  "
            f"{min(times):8.1f} ms best  ({args.repeats} runs)"
        )


if __name__ == "__main__":
    main()
