"""Issue 13's fault corpus: every bad input gives its row, reason code or one-line error.

The cases and their expected outcomes live in ``tests/fault_corpus.py`` (shared with
``scripts/bench_faults.py``, which prints them as a table). No case may end in a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fault_corpus import BATCH_NAMES, FILE_CASES, SINGLE_CASES, SKIP_CASES, Outcome, run_batch, run_single


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    return {o.case: o for o in run_batch(tmp_path_factory.mktemp("faults"))}


def test_corpus_is_large_enough() -> None:
    assert len(FILE_CASES) + len(SKIP_CASES) + len(SINGLE_CASES) >= 40


@pytest.mark.parametrize("name", BATCH_NAMES)
def test_file_in_a_bad_folder(batch: dict[str, Outcome], name: str) -> None:
    outcome = batch[name]
    assert not outcome.traceback, outcome.got
    assert outcome.got == outcome.expected


@pytest.mark.parametrize("name", list(SINGLE_CASES))
def test_single_fault(tmp_path: Path, name: str) -> None:
    outcome = run_single(name, tmp_path)
    assert not outcome.traceback, outcome.got
    assert outcome.got == outcome.expected
