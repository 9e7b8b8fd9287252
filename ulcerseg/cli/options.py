"""Click options shared by several commands: one definition, one behaviour, one help style.

Nothing here imports the library: option modules load at ``ulcerseg --help`` time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
BACKENDS = ("auto", "torch", "onnx")


def out_dir_option(help: str, *, required: bool = True, dest: str = "out_dir") -> Callable[[F], F]:
    """``-o/--out DIR``: an output folder (a Path; a file of that name is refused).

    No ``default`` is passed when required: click 8.5 lets an explicit ``default=None``
    satisfy ``required=True`` (the command then got None and failed with a TypeError).
    """
    extra: dict[str, Any] = {} if required else {"default": None}
    return click.option(
        "-o",
        "--out",
        dest,
        required=required,
        type=click.Path(file_okay=False, path_type=Path),
        help=help,
        **extra,
    )


def dataset_dirs_option(
    help: str = "Dataset folder (images/ + masks/ [+ dataset.yaml]); repeatable.",
) -> Callable[[F], F]:
    """``--data DIR`` (repeatable): training/evaluation dataset folders."""
    return click.option(
        "--data", "data", required=True, multiple=True, type=click.Path(path_type=Path), help=help
    )


def model_dir_option(help: str, *, required: bool = False) -> Callable[[F], F]:
    """``-m/--model DIR``: a model folder (model.json + model.pt [+ model.onnx])."""
    return click.option(
        "-m",
        "--model",
        "model",
        required=required,
        default=None,
        type=click.Path(file_okay=False, path_type=Path),
        help=help,
    )


def backend_option(
    default: str | None, help: str = "Inference backend (auto = ONNX Runtime when exported)."
) -> Callable[[F], F]:
    """``--backend auto|torch|onnx``."""
    return click.option(
        "--backend", type=click.Choice(BACKENDS), default=default, show_default=default is not None, help=help
    )


def threads_option() -> Callable[[F], F]:
    """``--threads N``: CPU threads for inference."""
    return click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads for inference.")


def study_dir_argument() -> Callable[[F], F]:
    """``OUT_DIR``: an existing measurement output folder (with study.sqlite)."""
    return click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))


def healing_config_option() -> Callable[[F], F]:
    """``--config FILE``: healing/review rules YAML (default: configs/healing.yaml)."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="Healing/review YAML (default: configs/healing.yaml).",
    )
