"""Agreement of automated and manual measurements (``ulcerseg qa``).

Python API (imported lazily so that the CLI starts fast)::

    from ulcerseg.qa import run_qa, QAReport
    from ulcerseg.qa.stats import bland_altman, bland_altman_ratio, intraclass_correlations,
        lins_ccc, cohens_kappa, confusion_table, agreement_row
    from ulcerseg.metrics import dice_iou  # Dice/IoU of masks (one definition for the package)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ulcerseg.qa.compare import QAReport, run_qa

__all__ = ["QAReport", "run_qa"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ulcerseg.qa import compare

        return getattr(compare, name)
    raise AttributeError(f"module 'ulcerseg.qa' has no attribute {name!r}")
