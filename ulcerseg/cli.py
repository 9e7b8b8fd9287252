"""Command line interface: ``ulcerseg <command>``."""

from __future__ import annotations

import logging
import sys

import click

from ulcerseg import __version__
from ulcerseg.errors import UlcersegError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ulcerseg")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Measure digital ulcers on calibrated finger photographs."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def run() -> None:
    """Entry point that turns library errors into one-line messages and exit status 2."""
    try:
        main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except UlcersegError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)


# --- command registration (one line per command) ---
