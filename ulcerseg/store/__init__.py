"""The study store: the one owner of ``study.sqlite``.

- :mod:`ulcerseg.store.schema`: every table, view and trigger, the schema version and migrations.
- :mod:`ulcerseg.store.db`: connections (pragmas, version check, migration on open; read-only
  where a study cannot be written and the command only reads).
- :mod:`ulcerseg.store.study`: runs, photos, measurements and ``measurements.csv``.
- :mod:`ulcerseg.store.healing`: the derived ``healing`` table.
- :mod:`ulcerseg.store.review`: decisions (append-only), sessions and the pseudonym salt.
"""

from ulcerseg.store.db import (
    DB_NAME,
    StudyVersionError,
    connect,
    connect_for_reading,
    ensure_schema,
    require_study_db,
)
from ulcerseg.store.schema import SCHEMA_VERSION
from ulcerseg.store.study import CSV_COLUMNS, CSV_NAME, RunInfo, Study

__all__ = [
    "CSV_COLUMNS",
    "CSV_NAME",
    "DB_NAME",
    "SCHEMA_VERSION",
    "RunInfo",
    "Study",
    "StudyVersionError",
    "connect",
    "connect_for_reading",
    "ensure_schema",
    "require_study_db",
]
