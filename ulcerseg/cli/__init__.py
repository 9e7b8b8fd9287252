"""Command line interface ``ulcerseg``: one module per command group.

``main`` is the click group, ``run`` the console entry point (``ulcerseg = "ulcerseg.cli:run"``).
Command modules import the library lazily inside each command, so ``ulcerseg --help`` loads
neither torch nor OpenCV.
"""

from ulcerseg.cli.main import main, run

__all__ = ["main", "run"]
