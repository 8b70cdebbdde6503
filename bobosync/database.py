"""The SQLite store: worker map, applied events, file memory and logs.

One connection per process, WAL journal, bulk writes in one transaction.
The schema is a list of numbered migrations recorded in the database, so a
later release adds a migration instead of editing a table by hand. Times are
stored as ISO text in the site's naive local time.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from bobosync.errors import StoreError

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_SECONDS = 10.0

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema.
    """
    CREATE TABLE IF NOT EXISTS worker_mapping (
        employee_id TEXT PRIMARY KEY,
        login_id TEXT NOT NULL,
        source TEXT NOT NULL,
        attributes TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS sync_tracking (
        name TEXT PRIMARY KEY,
        last_attempt_at TEXT,
        last_success_at TEXT,
        last_status TEXT NOT NULL DEFAULT '',
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE IF NOT EXISTS processing_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        logged_at TEXT NOT NULL,
        file_name TEXT NOT NULL,
        status TEXT NOT NULL,
        data_rows INTEGER NOT NULL DEFAULT 0,
        valid_rows INTEGER NOT NULL DEFAULT 0,
        invalid_rows INTEGER NOT NULL DEFAULT 0,
        unmapped_rows INTEGER NOT NULL DEFAULT 0,
        sent_users INTEGER NOT NULL DEFAULT 0,
        failed_users INTEGER NOT NULL DEFAULT 0,
        message TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE IF NOT EXISTS employee_state (
        employee_id TEXT PRIMARY KEY,
        login_id TEXT NOT NULL,
        last_event_time TEXT NOT NULL,
        last_transaction TEXT NOT NULL,
        duty_value TEXT,
        applied_at TEXT NOT NULL,
        cleared_at TEXT
    );
    CREATE INDEX IF NOT EXISTS employee_state_on_duty
        ON employee_state (last_event_time) WHERE duty_value IS NOT NULL;
    CREATE TABLE IF NOT EXISTS file_attempts (
        file_name TEXT PRIMARY KEY,
        attempts INTEGER NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS processed_files (
        file_name TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        processed_at TEXT NOT NULL,
        destination TEXT NOT NULL DEFAULT '',
        moved INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (file_name, sha256)
    );
    CREATE TABLE IF NOT EXISTS unmapped_ids (
        employee_id TEXT PRIMARY KEY,
        last_lookup_at TEXT,
        last_warned_on TEXT
    );
    """,
)

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class Tracking:
    """The last attempt and success of a periodic job (mapping refresh)."""

    name: str
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_status: str
    consecutive_failures: int


@dataclass(frozen=True)
class AppliedEvent:
    """An event AtHoc confirmed: the base of stale-event protection."""

    employee_id: str
    login_id: str
    event_time: datetime
    transaction_type: str
    duty_value: str | None


@dataclass(frozen=True)
class OnDutyWorker:
    """A worker bobosync booked on and has not cleared since."""

    employee_id: str
    login_id: str
    event_time: datetime


@dataclass(frozen=True)
class ProcessedFile:
    """A file AtHoc confirmed, remembered so it is never sent twice."""

    file_name: str
    size: int
    mtime_ns: int
    sha256: str
    destination: str
    moved: bool


@dataclass(frozen=True)
class MappingChange:
    """What a mapping refresh changed."""

    added: int
    changed: int
    removed: int
    kept_removals: int


@dataclass(frozen=True)
class ProcessingLogEntry:
    """One row of processing_log: the outcome of one file in one tick."""

    file_name: str
    status: str
    data_rows: int = 0
    valid_rows: int = 0
    invalid_rows: int = 0
    unmapped_rows: int = 0
    sent_users: int = 0
    failed_users: int = 0
    message: str = ""


def _text(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat(sep=" ")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _processed_file(row: tuple) -> ProcessedFile:
    name, size, mtime_ns, sha256, destination, moved = row
    return ProcessedFile(name, size, mtime_ns, sha256, destination, bool(moved))


def _is_lock_error(err: sqlite3.Error) -> bool:
    message = str(err).lower()
    return "locked" in message or "busy" in message


def _is_not_a_database(err: BaseException) -> bool:
    """SQLite's "file is not a database": DB_PATH names some other file."""
    if not isinstance(err, sqlite3.DatabaseError):
        return False
    name = getattr(err, "sqlite_errorname", "")
    return name == "SQLITE_NOTADB" or "file is not a database" in str(err)


class BOBODatabase:
    """bobosync's SQLite database; one instance (and connection) a process."""

    def __init__(
        self, path: Path | str, *, busy_timeout_seconds: float = BUSY_TIMEOUT_SECONDS
    ) -> None:
        self.path = Path(path)
        self._in_transaction = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(
                str(self.path), timeout=busy_timeout_seconds, isolation_level=None
            )
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except (sqlite3.Error, OSError) as err:
            raise self._store_error("open", err) from err

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> BOBODatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _store_error(self, action: str, err: BaseException) -> StoreError:
        locked = isinstance(err, sqlite3.Error) and _is_lock_error(err)
        if _is_not_a_database(err):
            message = (
                f"DB_PATH {self.path} is not a SQLite database ({err}); move "
                "that file aside or point DB_PATH at another file"
            )
        elif locked:
            message = (
                f"DB_PATH {self.path} is locked by another program ({err}); "
                "close the program holding it (a SQLite browser with an open "
                "edit?) and bobosync carries on by itself"
            )
        else:
            message = (
                f"DB_PATH {self.path} cannot be used ({action}: {err}); check "
                "the folder exists, is writable and has free space"
            )
        return StoreError(message, db_path=self.path, is_locked=locked)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one write transaction; nested use joins it."""
        if self._in_transaction:
            yield self._connection
            return
        try:
            self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise self._store_error("begin", err) from err
        self._in_transaction = True
        try:
            yield self._connection
            self._connection.execute("COMMIT")
        except BaseException as err:
            self._connection.execute("ROLLBACK")
            if isinstance(err, sqlite3.Error):
                raise self._store_error("write", err) from err
            raise
        finally:
            self._in_transaction = False

    def _query(self, sql: str, parameters: Iterable[object] = ()) -> list[tuple]:
        try:
            return self._connection.execute(sql, tuple(parameters)).fetchall()
        except sqlite3.Error as err:
            raise self._store_error("read", err) from err

    def _migrate(self) -> None:
        self._connection.execute(CREATE_MIGRATIONS_TABLE)
        done = {row[0] for row in self._query("SELECT version FROM schema_migrations")}
        for version, script in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            with self.transaction() as connection:
                for statement in script.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?)",
                    (version, datetime.now().isoformat(sep=" ")),
                )
            logger.debug("database migrated: version=%d path=%s", version, self.path)

    def schema_version(self) -> int:
        rows = self._query("SELECT MAX(version) FROM schema_migrations")
        return rows[0][0] or 0

    def check_writable(self) -> None:
        """Raise StoreError now if another program holds the write lock, or
        if the file was deleted under the open connection (POSIX allows it:
        every write would then go to a file nobody can open again)."""
        if not self.path.exists():
            raise StoreError(
                f"DB_PATH {self.path} was deleted or moved while bobosync ran; "
                "nothing more is recorded until bobosync is restarted (put the "
                "file back first to keep its history)",
                db_path=self.path,
            )
        with self.transaction():
            pass

    # -- worker map -------------------------------------------------------

    def get_mapping(self) -> dict[str, str]:
        """Canonical employee id -> AtHoc LOGIN_ID."""
        rows = self._query("SELECT employee_id, login_id FROM worker_mapping")
        return dict(rows)

    def mapping_count(self) -> int:
        return self._query("SELECT COUNT(*) FROM worker_mapping")[0][0]

    def replace_mapping(
        self, mapping: Mapping[str, str], now: datetime, *, allow_removals: bool
    ) -> MappingChange:
        """Make the table equal ``mapping`` in one transaction.

        With ``allow_removals`` False, ids missing from ``mapping`` are kept
        (the safety valve against a suspicious read).
        """
        current = self.get_mapping()
        added = [key for key in mapping if key not in current]
        changed = [k for k in mapping if k in current and current[k] != mapping[k]]
        gone = [key for key in current if key not in mapping]
        with self.transaction() as connection:
            connection.executemany(
                "INSERT INTO worker_mapping (employee_id, login_id, source, "
                "updated_at) VALUES (?, ?, 'refresh', ?) ON CONFLICT(employee_id) "
                "DO UPDATE SET login_id = excluded.login_id, source = 'refresh', "
                "updated_at = excluded.updated_at",
                [(key, mapping[key], _text(now)) for key in added + changed],
            )
            if allow_removals:
                connection.executemany(
                    "DELETE FROM worker_mapping WHERE employee_id = ?",
                    [(key,) for key in gone],
                )
        removed = len(gone) if allow_removals else 0
        return MappingChange(len(added), len(changed), removed, len(gone) - removed)

    def add_mapping(self, employee_id: str, login_id: str, now: datetime) -> None:
        """Store one mapping found by a direct look-up."""
        with self.transaction() as connection:
            connection.execute(
                "INSERT INTO worker_mapping (employee_id, login_id, source, "
                "updated_at) VALUES (?, ?, 'lookup', ?) ON CONFLICT(employee_id) "
                "DO UPDATE SET login_id = excluded.login_id, "
                "updated_at = excluded.updated_at",
                (employee_id, login_id, _text(now)),
            )

    def remove_mappings(self, employee_ids: Iterable[str]) -> None:
        """Forget mappings AtHoc disowned (its user is not found any more)."""
        with self.transaction() as connection:
            connection.executemany(
                "DELETE FROM worker_mapping WHERE employee_id = ?",
                [(key,) for key in employee_ids],
            )

    # -- periodic jobs ----------------------------------------------------

    def get_tracking(self, name: str) -> Tracking | None:
        rows = self._query(
            "SELECT last_attempt_at, last_success_at, last_status, "
            "consecutive_failures FROM sync_tracking WHERE name = ?",
            (name,),
        )
        if not rows:
            return None
        attempt, success, status, failures = rows[0]
        return Tracking(name, _time(attempt), _time(success), status, failures)

    def record_tracking(
        self, name: str, *, success: bool, at: datetime, detail: str = ""
    ) -> None:
        status = "success" if success else "failed"
        with self.transaction() as connection:
            connection.execute(
                "INSERT INTO sync_tracking (name, last_attempt_at, last_success_at,"
                " last_status, consecutive_failures, detail) VALUES (?, ?, ?, ?, ?,"
                " ?) ON CONFLICT(name) DO UPDATE SET last_attempt_at = "
                "excluded.last_attempt_at, last_success_at = COALESCE("
                "excluded.last_success_at, last_success_at), last_status = "
                "excluded.last_status, consecutive_failures = CASE WHEN ? THEN 0 "
                "ELSE consecutive_failures + 1 END, detail = excluded.detail",
                (
                    name,
                    _text(at),
                    _text(at) if success else None,
                    status,
                    0 if success else 1,
                    detail,
                    success,
                ),
            )

    # -- applied events ---------------------------------------------------

    def get_last_events(self, employee_ids: Iterable[str]) -> dict[str, datetime]:
        """The last applied event time of each given employee that has one."""
        result: dict[str, datetime] = {}
        ids = list(employee_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                "SELECT employee_id, last_event_time FROM employee_state "
                f"WHERE employee_id IN ({marks})",
                chunk,
            )
            result.update((key, datetime.fromisoformat(value)) for key, value in rows)
        return result

    def record_applied(self, events: Iterable[AppliedEvent], now: datetime) -> None:
        rows = [
            (
                event.employee_id,
                event.login_id,
                _text(event.event_time),
                event.transaction_type,
                event.duty_value,
                _text(now),
            )
            for event in events
        ]
        with self.transaction() as connection:
            connection.executemany(
                "INSERT INTO employee_state (employee_id, login_id, last_event_time,"
                " last_transaction, duty_value, applied_at, cleared_at) VALUES "
                "(?, ?, ?, ?, ?, ?, NULL) ON CONFLICT(employee_id) DO UPDATE SET "
                "login_id = excluded.login_id, last_event_time = "
                "excluded.last_event_time, last_transaction = "
                "excluded.last_transaction, duty_value = excluded.duty_value, "
                "applied_at = excluded.applied_at, cleared_at = NULL",
                rows,
            )

    def on_duty_before(self, cutoff: datetime) -> list[OnDutyWorker]:
        """Workers booked on by bobosync before ``cutoff`` and not cleared."""
        rows = self._query(
            "SELECT employee_id, login_id, last_event_time FROM employee_state "
            "WHERE duty_value IS NOT NULL AND last_event_time < ? "
            "ORDER BY last_event_time",
            (_text(cutoff),),
        )
        return [
            OnDutyWorker(key, login, datetime.fromisoformat(when))
            for key, login, when in rows
        ]

    def logins_on_duty_since(self, cutoff: datetime) -> set[str]:
        """Logins (casefolded) bobosync booked on at or after ``cutoff``."""
        rows = self._query(
            "SELECT login_id FROM employee_state WHERE duty_value IS NOT NULL "
            "AND last_event_time >= ?",
            (_text(cutoff),),
        )
        return {login.casefold() for (login,) in rows}

    def mark_employees_cleared(
        self, employee_ids: Iterable[str], now: datetime
    ) -> None:
        """Forget the duty value of these employees without touching AtHoc."""
        with self.transaction() as connection:
            connection.executemany(
                "UPDATE employee_state SET duty_value = NULL, cleared_at = ? "
                "WHERE employee_id = ?",
                [(_text(now), key) for key in employee_ids],
            )

    def mark_cleared(self, login_ids: Iterable[str], now: datetime) -> None:
        """Forget the duty value of these users (cleared in AtHoc)."""
        with self.transaction() as connection:
            connection.executemany(
                "UPDATE employee_state SET duty_value = NULL, cleared_at = ? "
                "WHERE login_id = ? COLLATE NOCASE AND duty_value IS NOT NULL",
                [(_text(now), login) for login in login_ids],
            )

    # -- files ------------------------------------------------------------

    def get_attempts(self, file_name: str) -> int:
        rows = self._query(
            "SELECT attempts FROM file_attempts WHERE file_name = ?", (file_name,)
        )
        return rows[0][0] if rows else 0

    def add_attempt(self, file_name: str, error: str, now: datetime) -> int:
        """Count one more failed attempt for a file; returns the new count."""
        with self.transaction() as connection:
            connection.execute(
                "INSERT INTO file_attempts (file_name, attempts, last_error, "
                "updated_at) VALUES (?, 1, ?, ?) ON CONFLICT(file_name) DO UPDATE "
                "SET attempts = attempts + 1, last_error = excluded.last_error, "
                "updated_at = excluded.updated_at",
                (file_name, error, _text(now)),
            )
        return self.get_attempts(file_name)

    def forget_attempts_except(self, file_names: Iterable[str]) -> None:
        """Drop the attempt counts of files no longer in the inbox, so a new
        file under an old name starts afresh."""
        keep = set(file_names)
        rows = self._query("SELECT file_name FROM file_attempts")
        gone = [(name,) for (name,) in rows if name not in keep]
        if gone:
            with self.transaction() as connection:
                connection.executemany(
                    "DELETE FROM file_attempts WHERE file_name = ?", gone
                )

    def clear_attempts(self, file_name: str) -> None:
        with self.transaction() as connection:
            connection.execute(
                "DELETE FROM file_attempts WHERE file_name = ?", (file_name,)
            )

    def find_processed(
        self, file_name: str, size: int, mtime_ns: int
    ) -> ProcessedFile | None:
        """A remembered file with this name, size and modification time."""
        rows = self._query(
            "SELECT file_name, size, mtime_ns, sha256, destination, moved FROM "
            "processed_files WHERE file_name = ? AND size = ? AND mtime_ns = ?",
            (file_name, size, mtime_ns),
        )
        return _processed_file(rows[0]) if rows else None

    def find_processed_by_hash(
        self, file_name: str, sha256: str
    ) -> ProcessedFile | None:
        rows = self._query(
            "SELECT file_name, size, mtime_ns, sha256, destination, moved FROM "
            "processed_files WHERE file_name = ? AND sha256 = ?",
            (file_name, sha256),
        )
        return _processed_file(rows[0]) if rows else None

    def remember_processed(
        self, file_name: str, size: int, mtime_ns: int, sha256: str, now: datetime
    ) -> None:
        with self.transaction() as connection:
            connection.execute(
                "INSERT INTO processed_files (file_name, size, mtime_ns, sha256, "
                "processed_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT(file_name, sha256)"
                " DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,"
                " processed_at = excluded.processed_at, destination = '', moved = 0",
                (file_name, size, mtime_ns, sha256, _text(now)),
            )

    def record_move(
        self, file_name: str, sha256: str, destination: str, *, moved: bool
    ) -> None:
        """Note where a processed file went (or was copied to)."""
        with self.transaction() as connection:
            connection.execute(
                "UPDATE processed_files SET destination = ?, moved = ? "
                "WHERE file_name = ? AND sha256 = ?",
                (destination, int(moved), file_name, sha256),
            )

    def forget_processed_before(self, cutoff: datetime) -> int:
        """Drop the memory of moved files processed before ``cutoff``."""
        with self.transaction() as connection:
            cursor = connection.execute(
                "DELETE FROM processed_files WHERE moved = 1 AND processed_at < ?",
                (_text(cutoff),),
            )
        return cursor.rowcount

    # -- unmapped ids -----------------------------------------------------

    def lookup_due(self, employee_id: str, now: datetime) -> bool:
        """True when the id was not looked up in AtHoc within the last hour."""
        rows = self._query(
            "SELECT last_lookup_at FROM unmapped_ids WHERE employee_id = ?",
            (employee_id,),
        )
        last = _time(rows[0][0]) if rows else None
        return last is None or now - last >= timedelta(hours=1) or now < last

    def record_lookups(self, employee_ids: Iterable[str], now: datetime) -> None:
        with self.transaction() as connection:
            connection.executemany(
                "INSERT INTO unmapped_ids (employee_id, last_lookup_at) VALUES (?, ?)"
                " ON CONFLICT(employee_id) DO UPDATE SET last_lookup_at = "
                "excluded.last_lookup_at",
                [(key, _text(now)) for key in employee_ids],
            )

    def should_warn_unmapped(self, employee_id: str, today: date) -> bool:
        """True once per id per day; records the warning."""
        rows = self._query(
            "SELECT last_warned_on FROM unmapped_ids WHERE employee_id = ?",
            (employee_id,),
        )
        if rows and rows[0][0] == today.isoformat():
            return False
        with self.transaction() as connection:
            connection.execute(
                "INSERT INTO unmapped_ids (employee_id, last_warned_on) VALUES (?, ?)"
                " ON CONFLICT(employee_id) DO UPDATE SET last_warned_on = "
                "excluded.last_warned_on",
                (employee_id, today.isoformat()),
            )
        return True

    # -- processing log ---------------------------------------------------

    def log_processing(
        self, entries: Iterable[ProcessingLogEntry], now: datetime
    ) -> None:
        rows = [
            (
                _text(now),
                entry.file_name,
                entry.status,
                entry.data_rows,
                entry.valid_rows,
                entry.invalid_rows,
                entry.unmapped_rows,
                entry.sent_users,
                entry.failed_users,
                entry.message,
            )
            for entry in entries
        ]
        with self.transaction() as connection:
            connection.executemany(
                "INSERT INTO processing_log (logged_at, file_name, status, data_rows,"
                " valid_rows, invalid_rows, unmapped_rows, sent_users, failed_users,"
                " message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def processing_log(self, file_name: str | None = None) -> list[ProcessingLogEntry]:
        sql = (
            "SELECT file_name, status, data_rows, valid_rows, invalid_rows, "
            "unmapped_rows, sent_users, failed_users, message FROM processing_log"
        )
        parameters: tuple[str, ...] = ()
        if file_name is not None:
            sql += " WHERE file_name = ?"
            parameters = (file_name,)
        return [
            ProcessingLogEntry(*row)
            for row in self._query(sql + " ORDER BY id", parameters)
        ]
