"""The tick and the loop: files in, duty status out, nothing lost.

One tick: refresh the worker map when due, process the batch of ready
files, move them, clear stale duty values, purge old files. Every step is
safe to repeat after a kill: an event is recorded as applied only after
AtHoc confirmed it, and a file is remembered as processed before it moves.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run from inside bobosync/ as the operators' runbook does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import logging  # noqa: E402
import threading  # noqa: E402

from bobosync.athoc_client import AtHocClient  # noqa: E402
from bobosync.auto_cleanup import AutoCleanup  # noqa: E402
from bobosync.batch import MAX_ROW_WARNINGS, BatchProcessor, TickReport  # noqa: E402
from bobosync.clock import Clock, SystemClock  # noqa: E402
from bobosync.database import BOBODatabase  # noqa: E402
from bobosync.errors import (  # noqa: E402
    ApiError,
    AuthError,
    BoboSyncError,
    FolderError,
)
from bobosync.file_keeper import FileKeeper  # noqa: E402
from bobosync.logging_setup import configure_logging  # noqa: E402
from bobosync.settings import Settings, load_settings  # noqa: E402
from bobosync.worker_mapping import (  # noqa: E402
    MAPPING_TRACKING,
    MappingRefreshResult,
    WorkerMapping,
    backoff_delay,
)

__all__ = [
    "MAPPING_TRACKING",
    "MAX_ROW_WARNINGS",
    "BOBOProcessor",
    "MappingRefreshResult",
    "TickReport",
]

# Named, not __name__: the runbook imports this file as a top-level
# module, whose records must still reach the bobosync handlers.
logger = logging.getLogger("bobosync.bobo_processor")

# The longest wait between ticks while an outage lasts: short enough that
# pending book-ons reach AtHoc within minutes of its return.
MAX_BACKOFF_SECONDS = 300.0
# An outage is logged once at ERROR, then reminded at most this often.
REMINDER_SECONDS = 900.0


def outage_key(err: BaseException) -> str:
    """Group errors so one outage is logged once, not once per tick."""
    if isinstance(err, ApiError):
        return f"api:{type(err).__name__}:{err.status}:{err.path}"
    return f"{type(err).__name__}:{getattr(err, 'path', '')}"


# -- the processor ----------------------------------------------------------


class BOBOProcessor:
    """Runs ticks against AtHoc; ``BOBOProcessor()`` reads the .env itself."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        client: AtHocClient | None = None,
        database: BOBODatabase | None = None,
        clock: Clock | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        if settings is None:
            # The operators' runbook: read the .env and log like the daemon.
            settings = load_settings()
            configure_logging(settings)
        self.settings = settings
        self.clock = clock if clock is not None else SystemClock()
        self.client = client or AtHocClient(self.settings, clock=self.clock)
        self.database = database or BOBODatabase(self.settings.db_path)
        self.stop_event = stop_event or threading.Event()
        parts = (self.settings, self.client, self.database, self.clock)
        self.mapping = WorkerMapping(*parts)
        self.cleanup = AutoCleanup(*parts)
        self.files = FileKeeper(self.settings, self.database, self.clock)
        self.batch = BatchProcessor(
            *parts,
            mapping=self.mapping,
            files=self.files,
            stop_event=self.stop_event,
            note_outage=self._note_outage,
        )
        self.consecutive_outages = 0
        self._outage_logged: dict[str, float] = {}
        self.files.prepare()

    def close(self) -> None:
        self.database.close()

    # -- the loop -------------------------------------------------------

    def run_forever(self, *, max_ticks: int | None = None) -> None:
        """Tick every POLL_INTERVAL_SECONDS until the stop event is set."""
        ticks = 0
        while not self.stop_event.is_set():
            report = self.run_tick()
            ticks += 1
            if max_ticks is not None and ticks >= max_ticks:
                return
            self.stop_event.wait(self.next_delay_seconds(report))

    def next_delay_seconds(self, report: TickReport) -> float:
        """The poll interval, growing while an outage lasts."""
        poll = self.settings.poll_interval_seconds
        delay = backoff_delay(
            poll, self.consecutive_outages, max(poll, MAX_BACKOFF_SECONDS)
        )
        return max(delay, min(report.retry_after_seconds, MAX_BACKOFF_SECONDS))

    def run_tick(self) -> TickReport:
        """One tick; never raises for an outage or an unexpected error."""
        report = TickReport()
        try:
            # A database locked by another program (B27) stops the tick
            # before AtHoc is called, so nothing is sent and then not recorded.
            self.database.check_writable()
            self._run_steps(report)
        except BoboSyncError as err:
            # An outage, or a fault no file is to blame for (a setting AtHoc
            # refuses): files stay, the loop backs off, the log says it once.
            self._note_outage(err, report)
        except Exception as err:  # the per-cycle boundary: log, keep running
            if self._is_news(f"unexpected:{type(err).__name__}:{err}"):
                logger.exception("tick failed: %s", err)
            else:
                logger.debug("tick failed again: %s", err)
            report.outage = f"tick failed: {err}"
        if report.outage:
            self.consecutive_outages += 1
        else:
            self._outage_over()
        return report

    def _run_steps(self, report: TickReport) -> None:
        """The tick's steps; a failed map refresh or an unreachable inbox
        does not stop the steps that can still work."""
        try:
            self.mapping.refresh_if_due()
        except ApiError as err:
            if isinstance(err, AuthError) or err.status is None:
                raise  # AtHoc unreachable: another login would only add noise
            self._note_outage(err, report)  # the map as it is still serves
        try:
            self.batch.run(report)
        except FolderError as err:
            # An unreachable inbox must not stop the clearing of stale
            # duty values in AtHoc.
            self._note_outage(err, report)
        report.cleared += self.cleanup.run()
        self.files.purge()

    def _is_news(self, key: str) -> bool:
        """True the first time a failure is seen, then once per reminder."""
        now = self.clock.monotonic()
        last = self._outage_logged.get(key)
        if last is not None and now - last < REMINDER_SECONDS:
            return False
        self._outage_logged[key] = now
        return True

    def _note_outage(self, err: BoboSyncError, report: TickReport) -> None:
        if self._is_news(outage_key(err)):
            logger.error("%s; files stay and are retried", err)
        else:
            logger.debug("outage goes on: %s", err)
        report.outage = report.outage or str(err)
        wait = getattr(err, "retry_after_seconds", None) or 0.0
        report.retry_after_seconds = max(report.retry_after_seconds, wait)

    def _outage_over(self) -> None:
        if self.consecutive_outages and self._outage_logged:
            logger.info("outage over: AtHoc, folders and database work again")
        self.consecutive_outages = 0
        self._outage_logged.clear()

    def sync_worker_mappings(self) -> MappingRefreshResult | None:
        """Refresh the employee id -> LOGIN_ID map from AtHoc now.

        Returns None when the read was incomplete (the map is left as it
        was). Raises ApiError when AtHoc cannot be read.
        """
        return self.mapping.refresh()


if __name__ == "__main__":
    from bobosync.cli import main

    sys.exit(main(sys.argv[1:]))
