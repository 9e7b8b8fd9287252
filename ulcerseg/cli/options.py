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


class NonEmptyPath(click.Path):
    """:class:`click.Path` that refuses an empty value: ``Path("")`` is the working directory,
    so ``-o "$OUT"`` with ``OUT`` unset wrote a study into wherever the command ran."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("empty path (an unset shell variable?); give a folder, '.' for this one", param, ctx)
        return super().convert(value, param, ctx)


def out_dir_option(
    help: str, *, required: bool = True, dest: str = "out_dir", legacy_output: bool = False
) -> Callable[[F], F]:
    """``-o/--out DIR``: an output folder (a Path; a file of that name is refused).

    ``legacy_output``: the command used to spell it ``--output``, which still works (deprecated).
    """
    if legacy_output:
        return _out_option(help, required, dest, NonEmptyPath(file_okay=False, path_type=Path), True)
    # no explicit default=None: with it, click 8.5 no longer enforces required=True
    return click.option(
        "-o", "--out", dest, required=required, type=NonEmptyPath(file_okay=False, path_type=Path), help=help
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


# = ulcerseg.config.MAX_THREADS (not imported: the CLI imports no library module at start-up)
MAX_THREADS = 256


def threads_option() -> Callable[[F], F]:
    """``--threads N``: CPU threads of each network pass."""
    return click.option(
        "--threads",
        type=click.IntRange(1, MAX_THREADS),
        default=None,
        help="CPU threads of each network pass (intra-op).",
    )


def study_dir_argument() -> Callable[[F], F]:
    """``OUT_DIR``: an existing measurement output folder (with study.sqlite)."""
    return click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))


def healing_config_option() -> Callable[[F], F]:
    """``--config FILE``: healing/review rules YAML (default: configs/healing.yaml); a path that
    does not exist names a shipped file (``load_healing_config``), as ``measure -c`` does."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Healing/review YAML (default: configs/healing.yaml).",
    )


def progress_option() -> Callable[[F], F]:
    """``--progress/--no-progress``: a progress bar on stderr (on by default) for long commands."""
    return click.option(
        "--progress/--no-progress", "progress", default=True, show_default=True, help="Progress bar (stderr)."
    )


def out_file_option(
    help: str, *, required: bool = True, dest: str = "output", legacy_output: bool = True
) -> Callable[[F], F]:
    """``-o/--out FILE``: an output file; with ``legacy_output`` the old ``--output`` still works."""
    return _out_option(help, required, dest, click.Path(dir_okay=False, path_type=Path), legacy_output)


def _out_option(
    help: str, required: bool, dest: str, path_type: click.Path, legacy_output: bool
) -> Callable[[F], F]:
    """``-o/--out`` (shown as required when it is) plus a hidden, deprecated ``--output``."""
    meta_key = f"ulcerseg.legacy_output.{dest}"

    def legacy(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
        if value is not None:
            click.echo("warning: --output is deprecated; use -o/--out", err=True)
            ctx.meta[meta_key] = value

    def resolve(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
        value = value if value is not None else ctx.meta.get(meta_key)
        if value is None and required:
            raise click.MissingParameter(ctx=ctx, param=param)
        return value

    def decorator(f: F) -> F:
        if legacy_output:
            f = click.option(
                "--output",
                f"legacy_output_{dest}",
                type=path_type,
                default=None,
                hidden=True,
                expose_value=False,
                is_eager=True,
                callback=legacy,
            )(f)
        opt = click.option(
            "-o",
            "--out",
            dest,
            default=None,
            type=path_type,
            callback=resolve,
            help=help + (" [required]" if required else ""),
        )(f)
        return opt

    return decorator


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Option callback: refuse NaN (click's FloatRange lets it through: NaN compares False) and
    infinities (a FloatRange without an upper bound lets ``inf`` through)."""
    if value is not None and value != value:
        raise click.BadParameter("must be a number, not nan", ctx=ctx, param=param)
    if value is not None and value in (float("inf"), float("-inf")):
        raise click.BadParameter(f"must be a finite number, not {value}", ctx=ctx, param=param)
    return value
