"""Inference backends: run a model folder on batches of RGB tiles (torch or ONNX Runtime).

Every backend takes uint8 RGB tiles (N×H×W×3, H and W multiples of 32) and returns float32
foreground probabilities (N×H×W, 0-1). ``sha256`` is the SHA-256 of ``model.pt``, the model
identity recorded with every measurement, whichever backend ran.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ulcerseg.config import MAX_THREADS
from ulcerseg.errors import ModelError, first_line
from ulcerseg.segmentation.model import (
    COARSE_LIGHT_ONNX_FILE,
    COARSE_ONNX_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    ModelCard,
    checked_weights_sha256,
    file_sha256,
    load_card,
    load_network,
    wrap_probability,
)

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
COARSE_NETWORKS = ("full", "light", "int8")


class StaleOnnxError(ModelError):
    """A model folder's ONNX file is not the network its card and model.pt describe."""


@runtime_checkable
class SegmentationBackend(Protocol):
    """A loaded model that maps RGB tiles to ulcer probabilities."""

    card: ModelCard
    sha256: str

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 N×H×W×3 RGB (H, W multiples of 32) -> float32 N×H×W probabilities in [0, 1]."""
        ...


def _check_tiles(tiles: np.ndarray) -> np.ndarray:
    """Validate the tile batch and convert it to float32 N×3×H×W on the 0-1 scale."""
    if tiles.ndim == 3:
        tiles = tiles[None]
    if tiles.ndim != 4 or tiles.shape[-1] != 3:
        raise ValueError(f"tiles must be N×H×W×3 RGB, got shape {tiles.shape}")
    if tiles.dtype != np.uint8:
        raise ValueError(f"tiles must be uint8, got {tiles.dtype}")
    h, w = tiles.shape[1:3]
    if h % 32 or w % 32:
        raise ValueError(f"tile height/width must be multiples of 32, got {h}×{w}")
    x = np.ascontiguousarray(tiles.transpose(0, 3, 1, 2), dtype=np.float32)
    x *= 1.0 / 255.0
    return x


class TorchBackend:
    """Eager PyTorch on CPU (eval mode, ``torch.inference_mode``), deterministic.

    ``num_threads`` sets torch's intra-op threads (``None`` leaves torch's default).
    """

    def __init__(self, model_dir: str | Path, num_threads: int | None = None, device: str = "cpu") -> None:
        import torch

        self.model_dir = Path(model_dir)
        self.card = load_card(self.model_dir)
        if num_threads:
            torch.set_num_threads(int(num_threads))
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {device}: no CUDA device available to torch")
        self.device = torch.device(device)
        # load_network checks model.pt against the card's weights_sha256 (hashing it once)
        self.net = wrap_probability(load_network(self.model_dir, self.card), self.card)
        self.net.to(self.device).eval()
        self.sha256 = self.card.weights_sha256 or file_sha256(self.model_dir / WEIGHTS_FILE)

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(_check_tiles(tiles)).to(self.device)
        with torch.inference_mode():
            prob = self.net(x)[:, 0]
        return prob.float().cpu().numpy().astype(np.float32, copy=False)


class OnnxBackend:
    """ONNX Runtime on CPU, running ``model.onnx`` made by ``ulcerseg export --onnx``.

    ``coarse_network`` picks what :meth:`predict_coarse_proba` runs: ``full`` (model.onnx),
    ``light`` (``model.coarse-light.onnx``, ``ulcerseg export --coarse-light``: the network's
    trunk and a distilled head, about half the cost) or ``int8`` (``model.coarse-int8.onnx``,
    ``ulcerseg export --coarse-int8``, about 1.2x faster on a 2-core AVX2 CPU), each only when
    the folder's file is current, else model.onnx. The coarse pass only proposes candidate
    regions; areas always come from model.onnx. ``coarse_int8=True`` is the older spelling of
    ``coarse_network="int8"``.
    """

    def __init__(
        self,
        model_dir: str | Path,
        num_threads: int | None = None,
        coarse_int8: bool = False,
        coarse_network: str = "full",
    ) -> None:
        self.model_dir = Path(model_dir)
        self.card = load_card(self.model_dir, check_names=False)  # no torch import
        path = self.model_dir / ONNX_FILE
        if not path.is_file():
            raise ModelError(f"{path}: ONNX file not found (run `ulcerseg export --onnx`)")
        if coarse_network not in COARSE_NETWORKS:
            choices = ", ".join(COARSE_NETWORKS)
            raise ModelError(f"coarse network: unknown {coarse_network!r} (choose from {choices})")
        coarse_network = "int8" if coarse_int8 else coarse_network
        weights = self.model_dir / WEIGHTS_FILE
        self.sha256 = (
            checked_weights_sha256(self.model_dir, self.card)
            if weights.is_file()
            else self.card.weights_sha256
        )
        # the network that runs is the one hashed: its bytes are read once, checked against the
        # card (and model.pt, whose SHA-256 every measurement records), then loaded
        data = _read_model_file(path)
        if problem := onnx_mismatch(self.card, hashlib.sha256(data).hexdigest(), self.sha256):
            raise StaleOnnxError(f"{path}: {problem}")
        self.session = _onnx_session(data, path, num_threads)
        self.input_name = self.session.get_inputs()[0].name
        self.coarse_session = None
        self.coarse_network = "full"
        if coarse_network != "full":
            current = coarse_network_bytes(self.model_dir, self.card, coarse_network, self.sha256)
            if current is not None:
                self.coarse_session = _onnx_session(current[1], current[0], num_threads)
                self.coarse_network = coarse_network
            else:
                log.info("%s: no current %s coarse network; the coarse pass runs model.onnx",
                         self.model_dir, coarse_network)  # fmt: skip

    def predict_proba(self, tiles: np.ndarray) -> np.ndarray:
        (prob,) = self.session.run(None, {self.input_name: _check_tiles(tiles)})
        return np.asarray(prob[:, 0], dtype=np.float32)

    def predict_coarse_proba(self, tiles: np.ndarray) -> np.ndarray:
        """Like :meth:`predict_proba`, with the coarse network when one is loaded."""
        if self.coarse_session is None:
            return self.predict_proba(tiles)
        (prob,) = self.coarse_session.run(None, {self.input_name: _check_tiles(tiles)})
        return np.asarray(prob[:, 0], dtype=np.float32)


def coarse_network_bytes(
    model_dir: Path, card: ModelCard, kind: str, weights_sha256: str
) -> tuple[Path, bytes] | None:
    """The folder's ``kind`` (``light`` or ``int8``) coarse network (path, bytes) if it is
    current: its SHA-256 matches the card and it was made from the current model.pt (light) or
    model.onnx (int8); else None."""
    if kind == "int8":
        path, sha = model_dir / COARSE_ONNX_FILE, card.coarse_onnx_sha256
        source_ok = card.coarse_onnx_source_sha256 == card.onnx_sha256
    else:
        path, sha = model_dir / COARSE_LIGHT_ONNX_FILE, card.coarse_light_sha256
        source_ok = card.coarse_light_source_sha256 == weights_sha256
    if not path.is_file() or not sha:
        return None
    data = _read_model_file(path)
    if hashlib.sha256(data).hexdigest() != sha:
        log.warning("%s: SHA-256 differs from the model card; not used", path)
        return None
    return (path, data) if source_ok else None


def coarse_network_file(model_dir: Path, card: ModelCard, kind: str, weights_sha256: str) -> Path | None:
    """Path of the folder's current ``kind`` coarse network (:func:`coarse_network_bytes`), or None."""
    current = coarse_network_bytes(model_dir, card, kind, weights_sha256)
    return None if current is None else current[0]


def coarse_int8_is_current(model_dir: Path, card: ModelCard) -> bool:
    """True if ``model.coarse-int8.onnx`` matches its card SHA-256 and the current model.onnx."""
    return coarse_network_file(model_dir, card, "int8", card.weights_sha256) is not None


def _read_model_file(path: Path) -> bytes:
    """A model file's bytes; an unreadable file is a one-line ModelError."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise ModelError(f"{path}: cannot read ({err.strerror or err})") from None


def _onnx_session(model: bytes, path: Path, num_threads: int | None) -> Any:
    """An ONNX Runtime CPU session of the serialised network ``model`` (read from ``path``),
    tuned for a pipeline of varying tile sizes on few cores.

    - full graph optimisation, sequential execution (one operator at a time, each operator
      using ``num_threads`` intra-op threads);
    - no spin-waiting of idle worker threads: on 2 cores spinning threads starve the photo
      decode and PNG writer threads that run beside inference;
    - the CPU memory arena on (buffers reused from pass to pass: faster, and RSS stays flat over
      a 1,000-photo run, README), but no memory-pattern planning: every region has its own size,
      so a plan made for one shape does not serve the next.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if num_threads:
        options.intra_op_num_threads = int(num_threads)
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types
        raise ModelError(f"{path}: cannot load ONNX model ({first_line(err)})") from None


def onnx_mismatch(card: ModelCard, onnx_sha256: str, weights_sha256: str | None) -> str | None:
    """Why an ONNX file of SHA-256 ``onnx_sha256`` is not the card's network made from the
    weights of SHA-256 ``weights_sha256`` (None: it is)."""
    if not card.onnx_sha256:
        return "no onnx_sha256 in the model card to check it against (export it: ulcerseg export --onnx)"
    if onnx_sha256 != card.onnx_sha256:
        return (f"SHA-256 {onnx_sha256[:12]}… does not match onnx_sha256 {card.onnx_sha256[:12]}… in the "
                "model card (export it again: ulcerseg export --onnx)")  # fmt: skip
    if card.onnx_source_sha256 and weights_sha256 and card.onnx_source_sha256 != weights_sha256:
        return "exported from another model.pt than the folder's (export it again: ulcerseg export --onnx)"
    return None


def onnx_is_current(model_dir: str | Path, card: ModelCard | None = None) -> bool:
    """True if ``model.onnx`` exists, matches the card's onnx_sha256 and was made from model.pt."""
    model_dir = Path(model_dir)
    card = card or load_card(model_dir, check_names=False)
    onnx_path = model_dir / ONNX_FILE
    if not onnx_path.is_file():
        return False
    weights = model_dir / WEIGHTS_FILE
    weights_sha = file_sha256(weights) if weights.is_file() else None
    return onnx_mismatch(card, file_sha256(onnx_path), weights_sha) is None


def open_backend(
    model_dir: str | Path,
    backend: str = "auto",
    num_threads: int | None = None,
    coarse_int8: bool = False,
    device: str = "cpu",
    coarse_network: str = "full",
) -> SegmentationBackend:
    """Open a model folder with ``backend`` = ``auto`` | ``torch`` | ``onnx``.

    ``auto`` uses ONNX Runtime when ``model.onnx`` exists and its recorded SHA-256 matches
    (and it was exported from the current ``model.pt``), else PyTorch (with a warning when the
    file is stale); ``onnx`` refuses such a file (:class:`StaleOnnxError`): measurements record
    model.pt's SHA-256, so the network that runs must be the one made from it. ``coarse_network``
    (``full``, ``light``, ``int8``; ``coarse_int8=True`` = ``int8``): the network of the ONNX
    backend's coarse pass when the folder has a current one (:class:`OnnxBackend`); the torch
    backend always runs the full network.
    """
    if backend not in BACKENDS:
        raise ModelError(f"backend: unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if num_threads is not None and not (isinstance(num_threads, int) and 0 <= num_threads <= MAX_THREADS):
        raise ModelError(
            f"num_threads: must be 1-{MAX_THREADS} (0 or None: the default), not {num_threads!r}"
        )
    if not isinstance(device, str) or re.fullmatch(r"cpu|cuda(:\d+)?", device) is None:
        raise ModelError(f"device {device!r}: must be cpu, cuda or cuda:N")
    if device != "cpu":
        if backend == "onnx":
            raise ModelError(f"device {device}: the ONNX backend runs on the CPU only (use --backend torch)")
        backend = "torch"
    if backend == "onnx" or (backend == "auto" and (Path(model_dir) / ONNX_FILE).is_file()):
        log.info("opening %s with the onnx backend", model_dir)
        try:
            return OnnxBackend(model_dir, num_threads=num_threads, coarse_int8=coarse_int8,
                               coarse_network=coarse_network)  # fmt: skip
        except StaleOnnxError as err:
            if backend == "onnx":
                raise
            log.warning("%s; using torch", err)
    log.info("opening %s with the torch backend", model_dir)
    return TorchBackend(model_dir, num_threads=num_threads, device=device)
