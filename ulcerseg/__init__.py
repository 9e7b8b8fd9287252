"""ulcerseg: calibrated measurement of digital ulcers on finger photographs."""

from importlib.metadata import PackageNotFoundError, version

# pyproject.toml's version (a test keeps them equal): what a source tree without install reports
_SOURCE_VERSION = "0.3.6"

try:
    __version__ = version("ulcerseg")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = _SOURCE_VERSION

__all__ = ["__version__"]
