"""Logging: one file handler with daily rotation, a console handler, purge.

The log is `LOG_DIRECTORY/bobo_processor.log`, rotated at midnight into
`bobo_processor.log.YYYY-MM-DD`. On Windows a viewer holding the file open
makes the rollover's rename fail (WinError 32); the handler then keeps
writing to the current file and tries again later instead of printing a
`--- Logging error ---` traceback for every record.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path

from bobosync.errors import FolderError
from bobosync.settings import Settings

logger = logging.getLogger(__name__)

LOG_FILE_NAME = "bobo_processor.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ROLLOVER_RETRY_SECONDS = 60.0
_PACKAGE_LOGGER = "bobosync"
_BACKUP_NAME = re.compile(re.escape(LOG_FILE_NAME) + r"\.(\d{4}-\d{2}-\d{2})(?:\.\d+)?")


class SafeRotatingFileHandler(TimedRotatingFileHandler):
    """Rotates at local midnight; survives a rename that fails.

    A failed rollover is retried every ``retry_seconds`` while records keep
    going to the current file; one WARNING per failed rollover. A backup
    name already taken (two rollovers on one day, e.g. after a restart) gets
    a ``.1``, ``.2``... suffix instead of being overwritten. ``time_source``
    returns epoch seconds (tests inject one).
    """

    def __init__(
        self,
        filename: Path,
        *,
        time_source: Callable[[], float] = time.time,
        retry_seconds: float = ROLLOVER_RETRY_SECONDS,
    ) -> None:
        self._time = time_source
        self._retry_seconds = retry_seconds
        self._pending_warning: tuple[str, str, str] | None = None
        self._has_warned = False
        # The current file holds records of the day it was last written.
        started = os.stat(filename).st_mtime if filename.exists() else None
        super().__init__(filename, when="midnight", encoding="utf-8")
        if started is None:
            started = time_source()
        self._period_end = self.computeRollover(int(started))
        self.rolloverAt = self._period_end

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        return self._time() >= self.rolloverAt

    def doRollover(self) -> None:
        """Rename the current file to a free dated name and start a new one;
        on failure keep the current file and schedule a retry."""
        now = self._time()
        backup = self.free_backup_name()
        if self.stream:
            self.stream.close()
            self.stream = None
        try:
            self.rotate(self.baseFilename, backup)
        except OSError as err:
            self._postpone_rollover(now, backup, err)
        else:
            self._period_end = self.computeRollover(int(now))
            self.rolloverAt = self._period_end
            self._has_warned = False
        self.stream = self._open()

    def free_backup_name(self) -> str:
        """`bobo_processor.log.<day>`, or `.<day>.N` when that is taken."""
        # The last second of the period names the day its records are from.
        day = datetime.fromtimestamp(self._period_end - 1).strftime("%Y-%m-%d")
        backup = f"{self.baseFilename}.{day}"
        number = 0
        while os.path.exists(backup):
            number += 1
            backup = f"{self.baseFilename}.{day}.{number}"
        return backup

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        # Logged here, after the record is written, because doRollover runs
        # inside this handler's emit and must not log through it itself.
        if self._pending_warning:
            path, backup, reason = self._pending_warning
            self._pending_warning = None
            logger.warning(
                "log rotation postponed: path=%s backup=%s reason=%s;"
                " records stay in the current file, retrying every %.0f s"
                " (close any program holding the log open)",
                path,
                backup,
                reason,
                self._retry_seconds,
            )

    def _postpone_rollover(self, now: float, backup: str, err: OSError) -> None:
        self.rolloverAt = int(now + self._retry_seconds)
        if not self._has_warned:
            self._has_warned = True
            reason = err.strerror or type(err).__name__
            self._pending_warning = (self.baseFilename, backup, reason)


def configure_logging(settings: Settings, *, console: bool = True) -> Path:
    """Set up the `bobosync` logger: rotating file, optional stderr console.

    Calling it again replaces the handlers it added, never adds a second
    one. Records still propagate to the root logger (pytest's caplog).
    Raises FolderError when LOG_DIRECTORY cannot be created or written.
    Returns the log file's path.
    """
    reset_logging()
    log_file = settings.log_directory / LOG_FILE_NAME
    handlers: list[logging.Handler] = [_open_file_handler(log_file)]
    if console:
        handlers.append(logging.StreamHandler(sys.stderr))

    package_logger = logging.getLogger(_PACKAGE_LOGGER)
    formatter = logging.Formatter(LOG_FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.set_name(f"{_PACKAGE_LOGGER}:{type(handler).__name__}")
        package_logger.addHandler(handler)
    package_logger.setLevel(settings.log_level)
    # bobosync says once what failed and what to check; urllib3's WARNING
    # per retry would reach the console through logging's last resort.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    return log_file


def _open_file_handler(log_file: Path) -> SafeRotatingFileHandler:
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        return SafeRotatingFileHandler(log_file)
    except OSError as err:
        raise FolderError(
            f"LOG_DIRECTORY {log_file.parent} is not writable"
            f" ({err.strerror or err}): create it and give this account write"
            " access, or set LOG_DIRECTORY to another folder",
            path=log_file.parent,
        ) from err


def reset_logging() -> None:
    """Remove and close the handlers configure_logging added (tests)."""
    package_logger = logging.getLogger(_PACKAGE_LOGGER)
    for handler in list(package_logger.handlers):
        if (handler.get_name() or "").startswith(f"{_PACKAGE_LOGGER}:"):
            package_logger.removeHandler(handler)
            handler.close()
    package_logger.setLevel(logging.NOTSET)


def purge_old_logs(log_directory: Path, older_than_days: int, now: datetime) -> int:
    """Delete bobosync's rotated logs dated before ``now - older_than_days``.

    Only `bobo_processor.log.YYYY-MM-DD[.N]` files are touched, never the
    live log or other files. A file that cannot be deleted is skipped with a
    WARNING. Returns how many were deleted.
    """
    cutoff = (now - timedelta(days=older_than_days)).date()
    removed = 0
    for path in sorted(log_directory.glob(LOG_FILE_NAME + ".*")):
        day = _backup_day(path.name)
        if day is None or day >= cutoff:
            continue
        try:
            path.unlink()
        except OSError as err:
            logger.warning("log purge skipped: path=%s reason=%s", path, err)
            continue
        logger.debug("log purged: path=%s", path)
        removed += 1
    return removed


def _backup_day(name: str) -> date | None:
    match = _BACKUP_NAME.fullmatch(name)
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None
