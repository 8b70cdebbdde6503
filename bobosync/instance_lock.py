"""The single-instance lock: one daemon per DB_PATH and CSV_DIRECTORY.

Built on ``filelock``: the operating system releases the lock when the
process dies, so a crash never leaves a stale lock behind. A small owner
file beside the lock names the process holding it, for the message the
second daemon prints.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout

from bobosync.errors import InstanceLockedError

logger = logging.getLogger(__name__)


def lock_path_for(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


def _owner_path(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ".owner")


def describe_owner(lock_path: Path) -> str:
    """What the owner file says about the process holding the lock."""
    try:
        return _owner_path(lock_path).read_text(encoding="utf-8").strip()
    except OSError:
        return "an unknown process"


class InstanceLock:
    """Hold the lock for DB_PATH (and CSV_DIRECTORY where it is writable)."""

    def __init__(self, db_path: Path, csv_directory: Path | None = None) -> None:
        self.lock_paths = [lock_path_for(db_path)]
        if csv_directory is not None:
            self.lock_paths.append(csv_directory / ".bobosync.lock")
        self._locks: list[FileLock] = []

    def acquire(self) -> None:
        """Take every lock or raise InstanceLockedError naming the holder."""
        for index, path in enumerate(self.lock_paths):
            if index > 0 and not path.parent.is_dir():
                # Never create BOBO's folder (a missing share is an outage).
                continue
            try:
                if index == 0:
                    path.parent.mkdir(parents=True, exist_ok=True)
                self._acquire_one(path)
            except OSError as err:
                if index == 0:
                    raise
                # The CSV share may be read-only for us: the DB lock still holds.
                logger.debug("no lock in the CSV folder: path=%s (%s)", path, err)

    def _acquire_one(self, path: Path) -> None:
        lock = FileLock(str(path), timeout=0)
        try:
            lock.acquire()
        except Timeout as err:
            self.release()
            raise InstanceLockedError(
                f"another bobosync is already running: lock {path} is held by "
                f"{describe_owner(path)}; stop it first, or give this one its "
                "own DB_PATH and CSV_DIRECTORY",
                lock_path=path,
            ) from err
        self._locks.append(lock)
        owner = (
            f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{datetime.now().isoformat(timespec='seconds')}"
        )
        _owner_path(path).write_text(owner, encoding="utf-8")

    def release(self) -> None:
        for lock in reversed(self._locks):
            lock.release()
        self._locks.clear()

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
