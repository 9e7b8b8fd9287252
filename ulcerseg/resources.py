"""Where the shipped model and configuration files are found: the one home of that lookup.

In a source checkout they are the top-level ``models/`` and ``configs/`` folders. An installed
wheel carries copies as package data (``ulcerseg/_bundled/models`` and ``.../configs``, put
there by the build hook in ``setup.py``), read through :mod:`importlib.resources`, so
``ulcerseg measure`` works from any directory.

Order of lookup for a model given as configured (e.g. ``models/default``):

1. ``$ULCERSEG_MODELS/<name>`` when the environment variable names a folder of model folders
   and the spec is a bare name or ``models/<name>`` (an explicit override wins);
2. the path as given (absolute, or relative to the working directory);
3. the source checkout's ``models/<name>``;
4. the copy bundled in the installed package.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

from ulcerseg.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

MODELS_ENV = "ULCERSEG_MODELS"
_PACKAGE_ROOT = Path(__file__).resolve().parent
_CHECKOUT_ROOT = _PACKAGE_ROOT.parent  # the repository, when running from a source checkout
_MODEL_CARD = "model.json"


def _bundled_root() -> Path | None:
    """``ulcerseg/_bundled`` of an installed wheel (a real folder), or None in a checkout."""
    root = resources.files("ulcerseg").joinpath("_bundled")
    return Path(str(root)) if root.is_dir() else None


def _search_roots(kind: str) -> list[Path]:
    """Folders that may hold the shipped ``kind`` (``models`` or ``configs``), checkout first."""
    roots = [_CHECKOUT_ROOT / kind]
    bundled = _bundled_root()
    if bundled is not None:
        roots.append(bundled / kind)
    return roots


def _model_name(spec: Path) -> Path | None:
    """The part of a model spec below ``models/`` (``models/default`` -> ``default``)."""
    if spec.is_absolute():
        return None
    parts = spec.parts
    if len(parts) >= 2 and parts[0] == "models":
        return Path(*parts[1:])
    return spec if len(parts) == 1 else None


def resolve_model_dir(model: str | Path) -> Path:
    """The folder (holding ``model.json``) of a model given as configured; see module doc."""
    spec = Path(model).expanduser()
    name = _model_name(spec)
    candidates: list[Path] = []
    env = os.environ.get(MODELS_ENV)
    if env and name is not None:
        candidates.append(Path(env).expanduser() / name)
    candidates.append(spec)
    if name is not None and not spec.is_absolute():
        candidates += [root / name for root in _search_roots("models")]
    for candidate in candidates:
        if (candidate / _MODEL_CARD).is_file():
            return candidate
    raise ModelError(f"{model}: no model folder with model.json found (give --model DIR)")


def config_path(name: str) -> Path:
    """A shipped configuration file by its path under ``configs/`` (e.g. ``healing.yaml``,
    ``train/default.yaml``)."""
    for root in _search_roots("configs"):
        path = root / name
        if path.is_file():
            return path
    raise ConfigError(f"configs/{name}: shipped configuration file not found")


def find_config(path: str | Path) -> Path:
    """A config file given by the user: as is when it exists, else the shipped file of that
    name (``configs/train/default.yaml`` or ``train/default.yaml`` from any directory)."""
    given = Path(path).expanduser()
    if given.is_file() or given.is_absolute():
        return given
    parts = given.parts[1:] if given.parts[:1] == ("configs",) else given.parts
    try:
        shipped = config_path(str(Path(*parts))) if parts else given
    except ConfigError:
        return given
    if shipped != given:  # said, so that a mistyped path to one's own copy does not pass unseen
        log.warning("%s: no such file here; using the shipped %s", path, shipped)
    return shipped
