"""ulcerseg: calibrated measurement of digital ulcers on finger photographs."""

# pyproject.toml's version (a test keeps them equal). It is what every output records, taken
# from the code that runs, never from the installed package's metadata: an editable install
# keeps the metadata of the version it was installed at, so a checkout updated since (git pull
# without pip install) recorded an older version on outputs of newer code, and `measure`
# would not measure a study again after a change of version.
_SOURCE_VERSION = "0.3.6"

__version__ = _SOURCE_VERSION

__all__ = ["__version__"]
