"""Build hook: copy the shipped model and configs into the wheel as package data.

The repository keeps ``models/`` and ``configs/`` at the top level (documented, used by the
tests); a wheel needs them inside the package so that ``importlib.resources`` finds them
(``ulcerseg/_bundled/{models,configs}``, read by ``ulcerseg.resources``). The whole default
model is bundled: card, ONNX file and light coarse network (what the core install measures
with), ``model.pt`` and the coarse head (fine-tuning, the torch backend and re-exporting with
the [train] extra).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = {
    "models/default": ["model.json", "model.onnx", "model.pt", "model.coarse-*"],
    "configs": ["*.yaml", "train/*.yaml"],
}


class BuildWithData(build_py):
    """``build_py`` that also copies the shipped model and configs (not in editable mode: an
    editable install reads them from the checkout)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest_root = Path(self.build_lib) / "ulcerseg" / "_bundled"
        for folder, patterns in BUNDLED.items():
            for pattern in patterns:
                for src in sorted((ROOT / folder).glob(pattern)):
                    dest = dest_root / folder / src.relative_to(ROOT / folder)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dest)


setup(cmdclass={"build_py": BuildWithData})
