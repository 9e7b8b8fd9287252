"""Exceptions with one-line, user-facing messages that name the file or key at fault."""

from __future__ import annotations

from pathlib import Path


class UlcersegError(Exception):
    """Base class: ``str(err)`` is a complete one-line message for the user."""


class ConfigError(UlcersegError):
    """A configuration file or value is invalid."""


class InputError(UlcersegError):
    """An input file or folder cannot be used."""


class NoPhotosError(InputError):
    """A folder or manifest without any photo; ``skipped``: the (path, reason) of every file that
    looked like a photo but could not be placed, for the CLI to list before the one-line error."""

    def __init__(self, message: str, skipped: list[tuple[Path, str]] | None = None) -> None:
        super().__init__(message)
        self.skipped = list(skipped or [])


class ImageReadError(InputError):
    """A photo cannot be read or decoded."""


class CalibrationError(UlcersegError):
    """No usable calibration marker in a photo."""


class ModelError(UlcersegError):
    """A model folder, model card or weights file is invalid."""


class DatasetError(InputError):
    """A training/evaluation dataset folder is invalid."""


class DecisionError(UlcersegError):
    """A submitted review decision is invalid (unknown item/action, missing reason, bad mask)."""


class NeedsConfirmation(DecisionError):
    """An endpoint-changing decision must be confirmed (resubmit with ``confirm: true``).

    ``changes`` says what the decision would change (action, areas in mm², change in %).
    """

    def __init__(self, message: str, changes: dict[str, object]) -> None:
        super().__init__(message)
        self.changes = changes


class StudyVersionError(UlcersegError):
    """A study database was written by a newer ulcerseg (schema version above this one's)."""


class ImageAccessError(ImageReadError):
    """A photo exists but cannot be read now (permission, I/O error): the environment's fault,
    so the failure is retried by the next run instead of being cached as final."""


class PhotoChangedError(ImageAccessError):
    """A photo's bytes are not those discovery hashed (replaced, or still being copied, while the
    run went on): measuring them would attribute them to the other bytes' SHA-256, so the photo
    fails for now and the next run finds and measures it as it is then."""


class OutputError(UlcersegError):
    """The output folder cannot be written (read-only, disk full, permission) or is locked."""


class OutputLockedError(OutputError):
    """Another ``measure`` holds the output folder's lock."""


class PendingReviewError(UlcersegError):
    """Flagged photos still wait for a review decision: the endpoint is not final yet."""


# modules of the [train] extra: the core install (measure, heal, review, qa) runs without them
TRAIN_EXTRA_MODULES = ("torch", "torchvision", "segmentation_models_pytorch", "albumentations", "onnx")


def first_line(err: BaseException) -> str:
    """The first non-empty line of a third-party exception's message (its type name when it
    has none): what a one-line error quotes of a library's multi-line report."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def one_line(err: BaseException) -> str:
    """A library's whole message on one line (OpenCV's and libheif's span several lines)."""
    return " ".join(str(err).split())


def missing_extra_message(err: ModuleNotFoundError) -> str | None:
    """One-line advice when ``err`` is a missing [train] module, else None."""
    root = (err.name or "").split(".")[0]
    if root not in TRAIN_EXTRA_MODULES:
        return None
    return f"{root} is not installed: this needs the training tier (pip install 'ulcerseg[train]')"
