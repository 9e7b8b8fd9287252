"""The review exports under their historical import path (``ulcerseg.review.export``).

Each export lives in its own module: the final per-visit table in :mod:`ulcerseg.review.final`,
the HTML report in :mod:`ulcerseg.review.report`, the blinded package in
:mod:`ulcerseg.review.blinded` and the training dataset in :mod:`ulcerseg.review.training_export`.
"""

from ulcerseg.review.blinded import export_blinded
from ulcerseg.review.final import FINAL_COLUMNS, apply_decisions, export_final, final_visit_rows
from ulcerseg.review.report import write_report
from ulcerseg.review.training_export import export_training

__all__ = [
    "FINAL_COLUMNS",
    "apply_decisions",
    "export_blinded",
    "export_final",
    "export_training",
    "final_visit_rows",
    "write_report",
]
