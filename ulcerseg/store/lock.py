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
def output_lock(out_dir: Path) -> Iterator[None]:
    """Hold the output folder's lock; a second holder gets :class:`OutputLockedError` (one line)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield
        return
    path = Path(out_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise OutputError(f"{out_dir}: cannot create the lock file ({err.strerror or err})") from err
    try:
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
    finally:
        os.close(fd)  # releases the flock


@contextmanager
def heal_lock(out_dir: Path) -> Iterator[None]:
    """Wait for, then hold, the output folder's healing lock (``OUT/.heal.lock``, ``flock``).

    A ``heal`` reads the study and writes table ``healing``, healing.csv and healing.json in
    three steps: two at once (``measure``'s own heal and a ``heal`` by hand, or two configs)
    interleaved them, so the table could hold one run's statuses and healing.csv and
    healing.json another's. Waiting (not refusing, as :func:`output_lock` does) keeps ``heal``
    usable beside a ``measure`` run; a heal takes well under a second.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield
        return
    path = Path(out_dir) / HEAL_LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise OutputError(f"{path}: cannot create the lock file ({err.strerror or err})") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock
