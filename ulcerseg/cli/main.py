"""The ``ulcerseg`` click group, its command registration and the one-line-error entry point."""

from __future__ import annotations

import logging
import os
import sqlite3
import sys

import click

from ulcerseg import __version__
from ulcerseg.cli.dataset import dataset_group
from ulcerseg.cli.heal import heal
from ulcerseg.cli.marker import marker_command
from ulcerseg.cli.measure import measure
from ulcerseg.cli.model import evaluate_command, export_command, train_command
from ulcerseg.cli.qa import qa_command
from ulcerseg.cli.review import review
from ulcerseg.cli.synth import synth
from ulcerseg.errors import UlcersegError, missing_extra_message
from ulcerseg.ids import printable

__all__ = ["main", "run"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ulcerseg")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Measure digital ulcers on calibrated finger photographs."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # OpenCV's own log lines name no file ("TIFF_Warning TIFFReadDirectory: Unknown field with
    # tag ...", on valid camera TIFFs too): a photo that fails already has a row and a one-line
    # reason naming it. Read when OpenCV first logs, which is after this (imported lazily);
    # -vv, or OPENCV_LOG_LEVEL set by the user, shows them
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT" if verbose < 2 else "WARNING")


for _command in (
    measure, heal, review, qa_command, train_command, evaluate_command, export_command, dataset_group,
    synth, marker_command,
):  # fmt: skip
    main.add_command(_command)


def run() -> None:
    """Entry point that turns library errors into one-line messages and exit status 2."""
    # numpy's and scipy's OpenBLAS on one thread unless the user says otherwise: ulcerseg runs
    # photos in parallel and never multiplies large matrices, and the pools' idle threads spin at
    # import, ~0.3 s of CPU per run on 2 cores (README, speed). Set before numpy first loads
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        code = main(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except UlcersegError as err:
        click.echo(f"error: {printable(str(err))}", err=True)
        sys.exit(2)
    except ModuleNotFoundError as err:  # torch & co. belong to the [train] extra
        if (message := missing_extra_message(err)) is None:
            raise
        click.echo(f"error: {printable(message)}", err=True)
        sys.exit(2)
    except OSError as err:  # an output folder not writable, a full disk, a port in use
        click.echo(f"error: {printable(_os_error_line(err))}", err=True)
        sys.exit(1)
    except sqlite3.DatabaseError as err:
        if (getattr(err, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            # another process (a measure storing rows, the review server) kept the study busy
            # for longer than the connection's wait: the study is fine, run the command again
            click.echo(
                f"error: study database busy ({err}): another ulcerseg process is writing it; run again",
                err=True,
            )
            sys.exit(1)
        if (getattr(err, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_READONLY:
            # a study opened read-only where it lies (read-only media): this command must write
            click.echo(
                f"error: study database read-only here ({err}): this command writes to it; "
                "copy the study to a writable folder",
                err=True,
            )
            sys.exit(1)
        # a study.sqlite that is not one (or damaged)
        click.echo(f"error: study database unusable ({err}); is it a study folder's study.sqlite?", err=True)
        sys.exit(2)
    except UnicodeError as err:  # a name that is not valid UTF-8 (bytes the file system allows)
        # only the codec errors (decode, encode, translate) carry a reason; a plain UnicodeError
        # (the stdlib's idna and utf-16 codecs raise them) says it in its message
        codec_errors = (UnicodeDecodeError, UnicodeEncodeError, UnicodeTranslateError)
        reason = err.reason if isinstance(err, codec_errors) else str(err)
        click.echo(f"error: a file or folder name is not valid UTF-8 ({reason}); rename it", err=True)
        sys.exit(2)


def _os_error_line(err: OSError) -> str:
    """One line naming the file and the reason: ``path: No space left on device``."""
    name = err.filename if err.filename is not None else ""
    reason = err.strerror or str(err)
    return f"{name}: {reason}" if name else reason
