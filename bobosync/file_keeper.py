"""Where files go after AtHoc answered, and how long they stay there.

Moves to PROCESSED_DIRECTORY and FAILED_FILES_DIRECTORY (never
overwriting, crash-safe across volumes), the rejected-rows reports, the
finishing of moves a crash or a locked share interrupted, and the purge of
old logs and processed files. A move that fails is reported once and tried
again every tick; nothing is sent twice for it.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from pathlib import Path

from bobosync.clock import Clock
from bobosync.csv_reader import ParsedFile, format_rejected_rows
from bobosync.database import BOBODatabase
from bobosync.errors import FolderError
from bobosync.inbox import (
    SourceNotRemovedError,
    find_copy,
    move_file,
    purge_old_files,
    remove_temporary_files,
    write_new_file,
)
from bobosync.logging_setup import purge_old_logs
from bobosync.settings import Settings

logger = logging.getLogger(__name__)


def holds_text(path: Path, text: str) -> bool:
    """Whether the file exists and holds exactly ``text`` in UTF-8."""
    try:
        return path.read_bytes() == text.encode("utf-8")
    except OSError:
        return False


class FileKeeper:
    """Moves, reports and purges files for the processor."""

    def __init__(
        self, settings: Settings, database: BOBODatabase, clock: Clock
    ) -> None:
        self.settings = settings
        self.database = database
        self.clock = clock
        self._errors_reported: set[str] = set()

    def prepare(self) -> None:
        """Create the output folders; remove copies a crash left unfinished."""
        # CSV_DIRECTORY is BOBO's (maybe a share): never created here.
        for folder in (
            self.settings.processed_directory,
            self.settings.failed_files_directory,
        ):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                removed = remove_temporary_files(folder)
            except OSError as err:
                logger.error("folder not usable: path=%s (%s); check it", folder, err)
                continue
            for path in removed:
                logger.warning(
                    "removed a copy left unfinished by a crash: file=%s", path
                )

    def _report_once(self, key: str, message: str, *args: object) -> None:
        if key in self._errors_reported:
            logger.debug(message, *args)
            return
        self._errors_reported.add(key)
        logger.error(message, *args)

    # -- processed files --------------------------------------------------

    def finish_remembered(self, path: Path) -> bool | None:
        """Finish a file AtHoc already confirmed.

        None when the file is not one; else whether it is now where it
        belongs (moved, or left in place with MOVE_PROCESSED_FILES=false).
        """
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None  # gone since the listing: nothing to finish
        known = self.database.find_processed(path.name, stat.st_size, stat.st_mtime_ns)
        if known is None:
            return None
        if not self.settings.move_processed_files:
            return True
        known_copy = Path(known.destination) if known.destination else None
        if known_copy is None:
            # A kill may have stopped a move across volumes after the copy.
            known_copy = find_copy(path, self.settings.processed_directory)
        return self.move_processed(path, known.sha256, known_copy)

    def move_processed(
        self, path: Path, sha256: str, known_copy: Path | None = None
    ) -> bool:
        """Move a confirmed file to PROCESSED_DIRECTORY; False if it stays."""
        if not self.settings.move_processed_files:
            return True
        try:
            destination = move_file(
                path,
                self.settings.processed_directory,
                now=self.clock.now(),
                known_copy=known_copy,
            )
        except SourceNotRemovedError as err:
            self.database.record_move(
                path.name, sha256, str(err.destination), moved=False
            )
            self._report_once(
                f"source:{path}",
                "sent, but could not remove the source: file=%s copy=%s (%s)",
                path,
                err.destination,
                err,
            )
            return False
        except (FolderError, OSError) as err:
            self._report_once(
                f"move:{path}",
                "sent, but could not move the file: file=%s (%s); the move is "
                "tried again every tick and nothing is sent twice",
                path,
                err,
            )
            return False
        self.database.record_move(path.name, sha256, str(destination), moved=True)
        self._start_keep_period(destination)
        logger.debug("file moved: file=%s to=%s", path.name, destination)
        return True

    def _start_keep_period(self, destination: Path) -> None:
        # PROCESSED_FILES_PURGE_DAYS counts from the move: a re-dropped
        # archive file keeps its old time and would be purged at once.
        stamp = self.clock.timestamp()
        try:
            os.utime(destination, (stamp, stamp))
        except OSError:
            logger.debug("time stamp not set: path=%s", destination)

    # -- failed files -----------------------------------------------------

    def move_failed(self, path: Path, reason: str) -> bool:
        """Move a file to FAILED_FILES_DIRECTORY; False if it stays."""
        folder = self.settings.failed_files_directory
        try:
            # A kill between a cross-volume copy and the delete left a copy.
            known_copy = find_copy(path, folder)
            destination = move_file(
                path, folder, now=self.clock.now(), known_copy=known_copy
            )
        except SourceNotRemovedError as err:
            self._report_once(
                f"source:{path}",
                "could not remove the source after copying it to failed: "
                "file=%s copy=%s (%s)",
                path,
                err.destination,
                err,
            )
            return False
        except (FolderError, OSError) as err:
            self._report_once(
                f"move:{path}", "could not move a failed file: file=%s (%s)", path, err
            )
            return False
        logger.warning(
            "file moved to failed: file=%s to=%s reason=%s",
            path.name,
            destination,
            reason,
        )
        return True

    def write_rejected(self, parsed: ParsedFile, now: datetime) -> None:
        """Write ``<name>.rejected.csv`` with each invalid row and its reason."""
        if not parsed.rejected:
            return
        name = f"{parsed.name}.rejected.csv"
        text = format_rejected_rows(parsed.rejected, parsed.delimiter)
        # Written before the commit, so a tick whose commit failed (a locked
        # database, a kill) wrote it already: once is enough.
        folder = self.settings.failed_files_directory
        if holds_text(folder / name, text):
            return
        try:
            write_new_file(folder, name, text, now=now)
        except (FolderError, OSError) as err:
            # The rows are in the log and processing_log: AtHoc's answer must
            # still be recorded, or the whole batch would be sent again.
            self._report_once(
                f"report:{folder}",
                "could not write the rejected-rows report %s in %s (%s); the "
                "rows are in this log",
                name,
                folder,
                err,
            )

    # -- purge ------------------------------------------------------------

    def purge(self) -> None:
        """Delete rotated logs and processed files past their keep days."""
        settings = self.settings
        now = self.clock.now()
        removed_logs = purge_old_logs(
            settings.log_directory, settings.log_purge_days, now
        )
        removed_files = 0
        if settings.processed_directory.is_dir():
            removed_files = purge_old_files(
                settings.processed_directory,
                settings.processed_files_purge_days,
                self.clock.timestamp(),
            )
        cutoff = now - timedelta(days=settings.processed_files_purge_days)
        self.database.forget_processed_before(cutoff)
        if removed_logs or removed_files:
            logger.info(
                "purged old files: logs=%d processed_files=%d",
                removed_logs,
                removed_files,
            )
