"""An exclusive lock on an output folder, so two ``measure`` runs never write one study.

The lock is ``fcntl.flock`` on ``OUT/.lock`` (released by the kernel when the process ends,
even on kill -9); the file names the holder (pid, host, start time) for the error message.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ulcerseg.errors import OutputError, OutputLockedError

__all__ = ["HEAL_LOCK_NAME", "LOCK_NAME", "heal_lock", "output_lock"]

LOCK_NAME = ".lock"
HEAL_LOCK_NAME = ".heal.lock"


@contextmanager
def _lock_file(path: Path, name: Path) -> Iterator[int | None]:
    """The lock file ``path`` opened (created if need be), closed on exit, which releases any
    ``flock`` on it; None where there is no ``flock`` (not POSIX: no locking). ``name`` is what
    an error names."""
    try:
        import fcntl  # noqa: F401 - only whether flock exists
    except ImportError:  # pragma: no cover - not POSIX
        yield None
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise OutputError(f"{name}: cannot create the lock file ({err.strerror or err})") from err
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold the output folder's lock; a second holder gets :class:`OutputLockedError` (one line)."""
    with _lock_file(Path(out_dir) / LOCK_NAME, out_dir) as fd:
        if fd is None:  # pragma: no cover - not POSIX
            yield
            return
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise OutputLockedError(
                f"{out_dir}: another ulcerseg measure is writing this folder ({holder}); "
                "wait for it to finish or use another -o folder"
            ) from None
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        text = f"pid {os.getpid()} on {socket.gethostname()} since {stamp}".encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, text, 0)
        except OSError:
            pass  # the lock holds without its label (e.g. disk full)
        yield


@contextmanager
def heal_lock(out_dir: Path) -> Iterator[None]:
    """Wait for, then hold, the output folder's healing lock (``OUT/.heal.lock``, ``flock``).

    A ``heal`` reads the study and writes table ``healing``, healing.csv and healing.json in
    three steps: two at once (``measure``'s own heal and a ``heal`` by hand, or two configs)
    interleaved them, so the table could hold one run's statuses and healing.csv and
    healing.json another's. Waiting (not refusing, as :func:`output_lock` does) keeps ``heal``
    usable beside a ``measure`` run; a heal takes well under a second.
    """
    path = Path(out_dir) / HEAL_LOCK_NAME
    with _lock_file(path, path) as fd:
        if fd is not None:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
