"""One batch: the ready files in, their latest events to AtHoc, each
file's fate recorded.

Files are streamed row by row into the latest event per employee; only
events newer than what AtHoc already confirmed are sent; a file moves on
only when every event it contributed was answered, and a file that changed
while it was processed is read again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from bobosync.athoc_client import (
    SYNC_PATH,
    UNUSABLE_ANSWER_STATUS,
    AtHocClient,
    DutyUpdate,
    SyncResult,
)
from bobosync.bobo_entry import BOBOEntry, latest_per_employee
from bobosync.clock import Clock
from bobosync.csv_reader import ParsedFile, iter_bobo_entries
from bobosync.database import AppliedEvent, BOBODatabase, ProcessingLogEntry
from bobosync.errors import ApiError, BoboSyncError, FolderError
from bobosync.file_keeper import FileKeeper
from bobosync.inbox import (
    FileFingerprint,
    fingerprint_file,
    is_unmovable_name,
    list_inbox,
)
from bobosync.settings import Settings
from bobosync.worker_mapping import WorkerMapping

logger = logging.getLogger("bobosync.batch")

# A row dated further ahead than this is a typo (month and day swapped),
# not an event: sent, it would block the worker's real events as stale.
FUTURE_TOLERANCE = timedelta(days=1)
# Row WARNINGs per file; the rest go to DEBUG (a garbage file has millions).
MAX_ROW_WARNINGS = 50


@dataclass
class TickReport:
    """What one tick did; ``outage`` holds why it stopped early, if it did."""

    files_processed: int = 0
    files_failed: int = 0
    files_retrying: int = 0
    users_sent: int = 0
    unmapped: int = 0
    stale: int = 0
    cleared: int = 0
    outage: str = ""
    retry_after_seconds: float = 0.0
    # Work done but not finished (a move that failed after the send).
    problems: list[str] = field(default_factory=list)

    @property
    def is_success(self) -> bool:
        return not self.outage and not self.problems


@dataclass
class BatchFile:
    """One file of the batch and what became of its events."""

    path: Path
    order: int
    parsed: ParsedFile
    fingerprint: FileFingerprint
    winners: dict[str, BOBOEntry] = field(default_factory=dict)
    future_rows: int = 0
    employees: set[str] = field(default_factory=set)
    unmapped_rows: int = 0
    failed_users: list[str] = field(default_factory=list)
    # Users AtHoc left out of its answer: not the file's fault.
    unconfirmed: list[str] = field(default_factory=list)
    # "login (details)" per failed user: the reason an operator reads.
    failures: list[str] = field(default_factory=list)
    error: str = ""


# -- pure decisions ---------------------------------------------------------


def select_updates(
    winners: Mapping[str, BOBOEntry],
    last_applied: Mapping[str, datetime],
    cutoff: datetime,
) -> tuple[dict[str, BOBOEntry], list[BOBOEntry], list[BOBOEntry]]:
    """Split the winners into (to send, not newer than applied, expired book-ons)."""
    to_send: dict[str, BOBOEntry] = {}
    not_newer: list[BOBOEntry] = []
    expired: list[BOBOEntry] = []
    for employee_id, entry in winners.items():
        applied = last_applied.get(employee_id)
        # An expired book-on is reported at INFO even when it is also older
        # than the applied event (EXPECTED.md N03, clock variant).
        if entry.is_book_on and entry.event_time < cutoff:
            expired.append(entry)
        elif applied is not None and entry.event_time <= applied:
            not_newer.append(entry)
        else:
            to_send[employee_id] = entry
    return to_send, not_newer, expired


def _is_future(
    entry: BOBOEntry, latest_allowed: datetime, future: list[BOBOEntry]
) -> bool:
    """True (and noted in ``future``) for an event after ``latest_allowed``."""
    if entry.event_time <= latest_allowed:
        return False
    future.append(entry)
    return True


def names_field(details: str, field_name: str) -> bool:
    """Whether AtHoc's per-user text says the attribute itself is unknown."""
    text = details.casefold()
    unknown = ("not exist", "unknown", "not found", "invalid attribute")
    return field_name.casefold() in text and any(word in text for word in unknown)


class BatchProcessor:
    """Runs the batch step of a tick; ``note_outage`` reports a failure that
    is AtHoc's, not the files' (the tick logs it once and backs off)."""

    def __init__(
        self,
        settings: Settings,
        client: AtHocClient,
        database: BOBODatabase,
        clock: Clock,
        *,
        mapping: WorkerMapping,
        files: FileKeeper,
        stop_event: threading.Event,
        note_outage: Callable[[BoboSyncError, TickReport], None],
    ) -> None:
        self.settings = settings
        self.client = client
        self.database = database
        self.clock = clock
        self.mapping = mapping
        self.files = files
        self.stop_event = stop_event
        self.note_outage = note_outage
        self._ignored_seen: set[str] = set()

    def run(self, report: TickReport) -> None:
        """Process the ready files of CSV_DIRECTORY; raises FolderError when
        the folder cannot be read, ApiError when AtHoc cannot be used."""
        listing = list_inbox(
            self.settings.csv_directory,
            settle_seconds=self.settings.file_settle_seconds,
            now_timestamp=self.clock.timestamp(),
        )
        self._log_ignored(listing.ignored)
        for path in listing.waiting:
            logger.debug("file not ready yet: file=%s", path.name)
        present = [path.name for path in listing.ready + listing.waiting]
        self.database.forget_attempts_except(present)
        files: list[BatchFile] = []
        for path in listing.ready:
            # Files already done (kept in place, or a move to finish) do not
            # count against BATCH_SIZE: they would starve new files.
            if self.stop_event.is_set() or len(files) >= self.settings.batch_size:
                break
            finished = self.files.finish_remembered(path)
            if finished is not None:
                if not finished:
                    report.problems.append(f"{path.name} not moved")
                continue
            item = self._read(path, len(files))
            if item is not None:
                files.append(item)
        if files:
            self._process_files(files, report)

    def _log_ignored(self, names: list[str]) -> None:
        for name in names:
            if name in self._ignored_seen:
                continue
            self._ignored_seen.add(name)
            if is_unmovable_name(name) and name.lower().endswith(".csv"):
                logger.warning(
                    "file ignored, its name cannot be moved safely: name=%r;"
                    " rename it without \\, a drive prefix, control characters"
                    " or bytes that are not UTF-8",
                    name,
                )
            else:
                logger.debug("ignored (not a BOBO file): name=%s", name)

    def _read(self, path: Path, order: int) -> BatchFile | None:
        """Stream a file's rows into its latest event per employee."""
        parsed = ParsedFile(name=path.name)
        future: list[BOBOEntry] = []
        latest_allowed = self.clock.now() + FUTURE_TOLERANCE
        try:
            # Taken before the rows: rows appended later change the file's
            # size or time, and the file is then read again, not moved.
            fingerprint = fingerprint_file(path)
            entries = iter_bobo_entries(path, parsed)
            winners = latest_per_employee(
                (order, entry)
                for entry in entries
                if not _is_future(entry, latest_allowed, future)
            )
        except FileNotFoundError:
            return None
        except PermissionError:
            logger.debug("file still open in another program: file=%s", path.name)
            return None
        except OSError as err:
            raise FolderError(
                f"CSV_DIRECTORY file {path} could not be read ({err}); check the "
                "share is reachable",
                path=path,
            ) from err
        item = BatchFile(
            path, order, parsed, fingerprint, winners, future_rows=len(future)
        )
        self._report_rows(item, future)
        return item

    def _report_rows(self, item: BatchFile, future: list[BOBOEntry]) -> None:
        """WARNING per unusable row, capped so a garbage file cannot flood."""
        parsed = item.parsed
        # A file kept for retry was reported on its first look already.
        level = logging.WARNING
        if self.database.get_attempts(parsed.name):
            level = logging.DEBUG
        for warning in parsed.warnings:
            logger.log(level, "%s", warning)
        lines = [
            (
                "row rejected: %s:%d column=%s value=%r reason=%s",
                (parsed.name, row.line_number, row.column, row.value, row.reason),
            )
            for row in parsed.rejected
        ] + [
            (
                "row not sent: %s:%d Clocking_Date=%s is more than a day after "
                "the site clock; check the row's date",
                (entry.source_file, entry.line_number, entry.event_time.date()),
            )
            for entry in future
        ]
        for index, (message, args) in enumerate(lines):
            shown = level if index < MAX_ROW_WARNINGS else logging.DEBUG
            logger.log(shown, message, *args)
        if len(lines) > MAX_ROW_WARNINGS and level == logging.WARNING:
            logger.warning(
                "%d more unusable rows in %s (at DEBUG); all of them are in "
                "%s.rejected.csv",
                len(lines) - MAX_ROW_WARNINGS,
                parsed.name,
                parsed.name,
            )

    def _process_files(self, files: list[BatchFile], report: TickReport) -> None:
        usable = [item for item in files if not item.parsed.has_no_valid_rows]
        for item in files:
            if item.parsed.has_no_valid_rows:
                self._fail_unusable_file(item, report)
        winners = latest_per_employee(
            (item.order, entry) for item in usable for entry in item.winners.values()
        )
        now = self.clock.now()
        cutoff = now - timedelta(hours=self.settings.auto_cleanup_hours)
        last_applied = self.database.get_last_events(winners)
        to_send, not_newer, expired = select_updates(winners, last_applied, cutoff)
        self._log_stale(not_newer, expired)
        report.stale += len(not_newer) + len(expired)
        by_name = {item.path.name: item for item in usable}
        logins = self._map_employees(to_send, by_name, report)
        results = self._send(to_send, logins, usable, report)
        self._settle_files(usable, to_send, logins, results, report)
        self._log_batch(report)

    def _log_stale(self, not_newer: list[BOBOEntry], expired: list[BOBOEntry]) -> None:
        for entry in not_newer:
            logger.debug(
                "stale event not sent: id=%s %s:%d event=%s is not newer than "
                "the event already applied",
                entry.employee_id,
                entry.source_file,
                entry.line_number,
                entry.event_time,
            )
        for entry in expired:
            logger.info(
                "stale book-on not sent: id=%s %s:%d event=%s is older than "
                "AUTO_CLEANUP_HOURS=%s",
                entry.employee_id,
                entry.source_file,
                entry.line_number,
                entry.event_time,
                self.settings.auto_cleanup_hours,
            )

    def _map_employees(
        self,
        to_send: dict[str, BOBOEntry],
        by_name: dict[str, BatchFile],
        report: TickReport,
    ) -> dict[str, str]:
        """Employee id -> LOGIN_ID for the events to send; reports the rest."""
        mapping = self.mapping.logins_for(to_send)
        logins: dict[str, str] = {}
        today = self.clock.now().date()
        for employee_id, entry in to_send.items():
            item = by_name[entry.source_file]
            if employee_id in mapping:
                logins[employee_id] = mapping[employee_id]
                item.employees.add(employee_id)
                continue
            item.unmapped_rows += 1
            report.unmapped += 1
            if self.database.should_warn_unmapped(employee_id, today):
                logger.warning(
                    "unmapped employee: id=%s at %s:%d has no AtHoc user with "
                    "this %s; the event is not sent",
                    entry.raw_employee_id,
                    entry.source_file,
                    entry.line_number,
                    self.settings.collar_id_field,
                )
        return logins

    def _send(
        self,
        to_send: dict[str, BOBOEntry],
        logins: dict[str, str],
        files: list[BatchFile],
        report: TickReport,
    ) -> dict[str, SyncResult]:
        """Send the updates; returns the result per LOGIN_ID (casefolded)."""
        updates = self._duty_updates(to_send, logins)
        if not updates:
            return {}
        try:
            results = self.client.batch_update_duty_status(
                updates, self.settings.duty_status_field
            )
        except ApiError as err:
            partial = list(getattr(err, "partial_results", []) or [])
            if err.is_outage:
                self._record_applied(to_send, logins, partial)
                raise
            # A 4xx about the data: every unconfirmed user counts as failed.
            confirmed = {result.login_id.casefold() for result in partial}
            results = partial + [
                SyncResult(update.login_id, "error", str(err))
                for update in updates
                if update.login_id.casefold() not in confirmed
            ]
            for item in files:
                item.error = str(err)
        self._raise_if_field_unknown(results)
        self._note_unanswered(results, report)
        report.users_sent += sum(1 for result in results if result.is_success)
        return {result.login_id.casefold(): result for result in results}

    def _note_unanswered(self, results: list[SyncResult], report: TickReport) -> None:
        """A user left out of AtHoc's answer is the server's fault, not the
        file's (R7): its files stay without an attempt; the others go on."""
        missing = [result.login_id for result in results if result.outcome == "missing"]
        if not missing:
            return
        error = ApiError(
            f"POST {SYNC_PATH}: AtHoc's answer left out {len(missing)} user(s) "
            f"({', '.join(missing[:10])}); their updates are unconfirmed and "
            "are sent again next tick; if this goes on, check AtHoc's server "
            "logs",
            method="POST",
            path=SYNC_PATH,
            status=UNUSABLE_ANSWER_STATUS,
        )
        self.note_outage(error, report)

    def _raise_if_field_unknown(self, results: list[SyncResult]) -> None:
        """AtHoc refusing DUTY_STATUS_FIELD itself is a setting's fault, not
        the files': stop before any attempt is counted against them."""
        field_name = self.settings.duty_status_field
        failed = [result for result in results if not result.is_success]
        if not failed or not all(
            result.outcome == "error" and names_field(result.details, field_name)
            for result in failed
        ):
            return
        raise ApiError(
            f"POST {SYNC_PATH}: AtHoc does not know the attribute "
            f"DUTY_STATUS_FIELD={field_name} ({failed[0].details}); check the "
            "setting against the attribute's common name in AtHoc; no attempt "
            "is counted against the files",
            method="POST",
            path=SYNC_PATH,
            status=UNUSABLE_ANSWER_STATUS,
        )

    def _duty_updates(
        self, to_send: dict[str, BOBOEntry], logins: dict[str, str]
    ) -> list[DutyUpdate]:
        # Two ids mapped to one user would send it twice: the later event wins.
        latest: dict[str, BOBOEntry] = {}
        for employee_id, login in logins.items():
            entry = to_send[employee_id]
            key = login.casefold()
            if key not in latest or entry.event_time >= latest[key].event_time:
                latest[key] = entry
        updates = []
        for employee_id, login in logins.items():
            entry = to_send[employee_id]
            if latest[login.casefold()] is entry:
                updates.append(DutyUpdate(login, self._duty_value(entry)))
        return updates

    def _duty_value(self, entry: BOBOEntry) -> str:
        if not entry.is_book_on:
            return ""
        return entry.event_time.strftime(self.settings.athoc_datetime_format)

    def _record_applied(
        self,
        to_send: dict[str, BOBOEntry],
        logins: dict[str, str],
        results: Iterable[SyncResult],
    ) -> None:
        by_login = {r.login_id.casefold(): r for r in results if r.is_success}
        events = []
        gone: list[str] = []
        for employee_id, login in logins.items():
            result = by_login.get(login.casefold())
            if result is None:
                continue
            if result.outcome == "not_found":
                # Renamed or removed in AtHoc: not applied (a later replay
                # is not stale), and the id is looked up afresh next time.
                gone.append(employee_id)
                continue
            entry = to_send[employee_id]
            value = self._duty_value(entry) if result.outcome == "ok" else ""
            events.append(
                AppliedEvent(
                    employee_id,
                    login,
                    entry.event_time,
                    entry.transaction_type,
                    value or None,
                )
            )
        if events:
            self.database.record_applied(events, self.clock.now())
        if gone:
            self.database.remove_mappings(gone)

    # -- file outcomes ----------------------------------------------------

    def _settle_files(
        self,
        files: list[BatchFile],
        to_send: dict[str, BOBOEntry],
        logins: dict[str, str],
        results: dict[str, SyncResult],
        report: TickReport,
    ) -> None:
        """Decide each file's fate, record it in one transaction, then move it."""
        for item in files:
            self._note_failures(item, logins, results)
        finished = [
            item
            for item in files
            if not item.failed_users
            and not item.unconfirmed
            and not self._changed_since_read(item)
        ]
        retrying = [item for item in files if item.failed_users]
        last_tries = [item for item in retrying if self._is_last_try(item)]
        now = self.clock.now()
        # Reports first: a kill before the commit rewrites the same text.
        for item in finished + last_tries:
            self.files.write_rejected(item.parsed, now)
        with self.database.transaction():
            self._record_applied(to_send, logins, results.values())
            self._record_outcomes(files, finished, retrying, last_tries, now)
        for item in finished:
            if not self.files.move_processed(item.path, item.fingerprint.sha256):
                report.problems.append(f"{item.path.name} not moved")
        for item in last_tries:
            if not self.files.move_failed(item.path, item.error):
                report.problems.append(f"{item.path.name} not moved")
        report.files_processed += len(finished)
        report.files_failed += len(last_tries)
        report.files_retrying += len(retrying) - len(last_tries)

    def _changed_since_read(self, item: BatchFile) -> bool:
        """A file that changed or vanished after it was read is not moved."""
        try:
            stat = item.path.stat()
        except FileNotFoundError:
            logger.warning(
                "file vanished after it was read: file=%s; its events were sent",
                item.path.name,
            )
            return True
        read = item.fingerprint
        if (stat.st_size, stat.st_mtime_ns) == (read.size, read.mtime_ns):
            return False
        logger.warning(
            "file changed while it was processed: file=%s; it stays and is "
            "read again next tick",
            item.path.name,
        )
        return True

    def _note_failures(
        self, item: BatchFile, logins: dict[str, str], results: dict[str, SyncResult]
    ) -> None:
        for employee_id in sorted(item.employees):
            login = logins[employee_id]
            result = results.get(login.casefold())
            if result is not None and result.outcome == "missing":
                item.unconfirmed.append(employee_id)  # AtHoc's fault: no attempt
            elif result is None or not result.is_success:
                item.failed_users.append(employee_id)
                details = result.details if result else "no answer"
                item.failures.append(f"{login} ({details})")

    def _is_last_try(self, item: BatchFile) -> bool:
        attempts = self.database.get_attempts(item.path.name) + 1
        return attempts >= self.settings.max_retry_attempts

    def _record_outcomes(
        self,
        files: list[BatchFile],
        finished: list[BatchFile],
        retrying: list[BatchFile],
        last_tries: list[BatchFile],
        now: datetime,
    ) -> None:
        """Inside the tick's transaction: processed memory, attempts, log."""
        for item in finished:
            fingerprint = item.fingerprint
            self.database.remember_processed(
                fingerprint.name,
                fingerprint.size,
                fingerprint.mtime_ns,
                fingerprint.sha256,
                now,
            )
            self.database.clear_attempts(item.path.name)
        for item in retrying:
            self._count_attempt(item, item in last_tries, now)
        entries = []
        for item in files:
            if item in finished:
                status = "processed"
            elif item.unconfirmed and not item.failed_users:
                status = "unconfirmed"  # sent again next tick, no attempt
            elif not item.failed_users:
                status = "changed"  # read again next tick
            else:
                status = "failed" if item in last_tries else "retry"
            entries.append(self._log_entry(item, status))
        self.database.log_processing(entries, now)

    def _count_attempt(self, item: BatchFile, is_final: bool, now: datetime) -> None:
        reason = item.error or (
            f"AtHoc did not confirm {len(item.failed_users)} user(s): "
            + ", ".join(sorted(item.failures)[:10])
        )
        item.error = reason
        attempts = self.database.add_attempt(item.path.name, reason, now)
        if is_final:
            self.database.clear_attempts(item.path.name)
            logger.error(
                "file failed: file=%s attempts=%d reason=%s; moved to %s",
                item.path.name,
                attempts,
                reason,
                self.settings.failed_files_directory,
            )
        else:
            logger.warning(
                "file kept for retry: file=%s attempt=%d of %d reason=%s",
                item.path.name,
                attempts,
                self.settings.max_retry_attempts,
                reason,
            )

    def _log_entry(self, item: BatchFile, status: str) -> ProcessingLogEntry:
        parsed = item.parsed
        return ProcessingLogEntry(
            file_name=item.path.name,
            status=status,
            data_rows=parsed.data_rows,
            valid_rows=parsed.valid_rows,
            invalid_rows=len(parsed.rejected) + item.future_rows,
            unmapped_rows=item.unmapped_rows,
            sent_users=len(item.employees) - len(item.failed_users),
            failed_users=len(item.failed_users),
            message=item.error,
        )

    def _fail_unusable_file(self, item: BatchFile, report: TickReport) -> None:
        reason = item.parsed.not_bobo_reason or (
            f"no valid BOBO row in {item.parsed.data_rows} data row(s)"
        )
        now = self.clock.now()
        logger.warning(
            "file has no valid BOBO row: file=%s; moved to %s",
            item.path.name,
            self.settings.failed_files_directory,
        )
        self.database.log_processing(
            [
                ProcessingLogEntry(
                    item.path.name,
                    "failed",
                    data_rows=item.parsed.data_rows,
                    invalid_rows=len(item.parsed.rejected),
                    message=reason,
                )
            ],
            now,
        )
        if not self.files.move_failed(item.path, reason):
            report.problems.append(f"{item.path.name} not moved")
        report.files_failed += 1

    def _log_batch(self, report: TickReport) -> None:
        logger.info(
            "Batch processing completed: processed=%d failed=%d retrying=%d "
            "users_sent=%d unmapped=%d stale=%d",
            report.files_processed,
            report.files_failed,
            report.files_retrying,
            report.users_sent,
            report.unmapped,
            report.stale,
        )
