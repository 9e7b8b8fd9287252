"""docs/python-api.md names the Python function behind every ``ulcerseg`` command.

A new command without a row in the doc's table fails here, and so does a row naming a function
that does not import or has no docstring.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import click
import pytest

from ulcerseg.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"
# a fully qualified name in backticks: `ulcerseg.module.function`
QUALIFIED = re.compile(r"`(ulcerseg(?:\.\w+)+)`")


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> set[str]:
    """Every runnable command under ``group`` as ``"review readers add"``, hidden ones included
    (``group.commands`` lists them all; groups themselves run nothing)."""
    paths: set[str] = set()
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            paths |= command_paths(cmd, (*prefix, name))
        else:
            paths.add(" ".join((*prefix, name)))
    return paths


def doc_rows(text: str) -> list[tuple[str, list[str]]]:
    """(command path, fully qualified functions) of each row of the doc's command table: the
    first backticked ``ulcerseg ...`` of the first cell, the backticked ``ulcerseg.`` names of
    the second."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("| `ulcerseg"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        command = re.match(r"`ulcerseg ([^`]+)`", cells[0])
        assert command is not None, f"no `ulcerseg COMMAND` in the first cell: {line}"
        rows.append((command.group(1).strip(), QUALIFIED.findall(cells[1])))
    return rows


ROWS = doc_rows(DOC.read_text(encoding="utf-8"))


def test_every_command_has_a_row() -> None:
    documented = {command for command, _ in ROWS}
    missing = sorted(command_paths(main) - documented)
    assert not missing, f"commands without a Python function in {DOC.name}: {missing}"


def test_every_row_is_a_command() -> None:
    stale = sorted({command for command, _ in ROWS} - command_paths(main))
    assert not stale, f"rows of {DOC.name} naming no command: {stale}"


def test_missing_row_is_caught() -> None:
    """The check above fails when a command's row is left out (here: `heal`'s)."""
    text = DOC.read_text(encoding="utf-8")
    without = "\n".join(line for line in text.splitlines() if not line.startswith("| `ulcerseg heal`"))
    assert "heal" in command_paths(main) - {command for command, _ in doc_rows(without)}


@pytest.mark.parametrize(("command", "names"), ROWS, ids=[f"{c} ({i})" for i, (c, _) in enumerate(ROWS)])
def test_row_functions_import(command: str, names: list[str]) -> None:
    assert names, f"`ulcerseg {command}`: no `ulcerseg.module.function` in the Python column"
    for name in names:
        module_name, _, attr = name.rpartition(".")
        obj = getattr(importlib.import_module(module_name), attr, None)
        assert callable(obj), f"`ulcerseg {command}`: {name} is not a callable"
        assert (obj.__doc__ or "").strip(), f"`ulcerseg {command}`: {name} has no docstring"
