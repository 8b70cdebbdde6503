"""Kill harness: run the real daemon, SIGKILL it at random moments, check
that nothing was lost.

The AtHoc simulator runs in this process, so it outlives every daemon it
serves and its final state can be read directly. Each round drops a few new
BOBO files (written to ``.part``, then renamed), starts ``python -m
bobosync`` and SIGKILLs it at one of KILL_POINTS: after a random delay, or
just after its log shows it entered a given step. At the end the daemon
drains the inbox and stops; the simulator, the folders and the database
are then checked against a model computed from the files alone: the
latest event per employee wins, every file ends up in processed_files
exactly once.

Used by tests/test_crash_safety.py (short form) and
benchmarks/kill_stress.py (the stress run). Not collected by pytest.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Self

from bobosync.bobo_entry import canonical_employee_id
from bobosync.demo import HEADER, bobo_row
from bobosync.inbox import TEMPORARY_SUFFIX
from bobosync.settings import SETTING_NAMES
from bobosync.simulator import AtHocSimulator, demo_users

REPO_ROOT = Path(__file__).resolve().parent.parent
DUTY = "On-Duty-DTG"
COLLAR = "Collar-Number"
DATETIME_FORMAT = "%d/%m/%Y %H:%M:%S"
LOG_FILE_NAME = "bobo_processor.log"
# Book-ons older than this are cleared; the files' events are far younger,
# the pre-set values of the "forgotten" users far older.
AUTO_CLEANUP_HOURS = 24 * 365
FORGOTTEN_VALUE_AGE = timedelta(days=800)
DRAIN_TIMEOUT_SECONDS = 90.0

MARKER_TIMEOUT_SECONDS = 3.0
MARKER_POLL_SECONDS = 0.002
MAX_DELAY_AFTER_MARKER_SECONDS = 0.02

# Kill points: the daemon is killed just after its log shows the marker, so
# it dies in the step that follows. "random" kills after a random delay.
KILL_POINTS: dict[str, str | None] = {
    "random delay": None,
    "while parsing": "header row skipped",
    "during the mapping refresh": '"Collar-Number": "',
    "between the AtHoc call and the move": "sync confirmed",
    "between two moves": "file moved:",
    "during auto-cleanup": "Batch processing completed",
}


@dataclass(frozen=True)
class WrittenFile:
    """A BOBO file the harness dropped into the inbox."""

    name: str
    sha256: str
    events: tuple[tuple[str, str, datetime], ...]  # (collar, BON/BOF, time)


@dataclass
class KillReport:
    """What a run did and what it found wrong (every list empty when sound)."""

    kills: int = 0
    files_written: int = 0
    events_written: int = 0
    employees: int = 0
    kill_points: Counter[str] = field(default_factory=Counter)
    early_exits: list[str] = field(default_factory=list)
    lost_events: list[str] = field(default_factory=list)
    lost_files: list[str] = field(default_factory=list)
    duplicated_files: list[str] = field(default_factory=list)
    stray_files: list[str] = field(default_factory=list)
    uncleared_users: list[str] = field(default_factory=list)
    integrity: str = ""
    drain_exit_code: int | None = None
    elapsed_seconds: float = 0.0

    @property
    def problems(self) -> list[str]:
        found = [f"daemon exited by itself: {text}" for text in self.early_exits]
        found += [f"lost event: {text}" for text in self.lost_events]
        found += [f"lost file: {name}" for name in self.lost_files]
        found += [f"duplicated file: {name}" for name in self.duplicated_files]
        found += [f"stray file: {name}" for name in self.stray_files]
        found += [f"not cleared: {login}" for login in self.uncleared_users]
        if self.integrity != "ok":
            found.append(f"database integrity_check: {self.integrity}")
        return found

    def summary_lines(self) -> list[str]:
        lines = [f"kills survived:        {self.kills}"]
        lines += [
            f"  {point}: {count}" for point, count in sorted(self.kill_points.items())
        ]
        return lines + [
            f"files written:         {self.files_written}",
            f"events written:        {self.events_written}",
            f"employees in files:    {self.employees}",
            f"lost events:           {len(self.lost_events)}",
            f"lost files:            {len(self.lost_files)}",
            f"duplicated files:      {len(self.duplicated_files)}",
            f"stray files:           {len(self.stray_files)}",
            f"daemon early exits:    {len(self.early_exits)}",
            f"database integrity:    {self.integrity}",
            f"elapsed:               {self.elapsed_seconds:.1f} s",
        ]


class KillHarness:
    """Drops files, starts and kills daemons, then checks the outcome.

    ``moved_to`` puts processed_files and failed_files elsewhere, e.g. on
    another volume so that moves copy instead of renaming.
    """

    def __init__(
        self,
        root: Path,
        *,
        seed: int,
        user_count: int = 300,
        max_kill_delay_seconds: float = 1.5,
        sync_delay_seconds: float = 0.0,
        moved_to: Path | None = None,
    ) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.max_kill_delay_seconds = max_kill_delay_seconds
        self.sync_delay_seconds = sync_delay_seconds
        self.inbox = root / "inbox"
        moved_root = moved_to or root
        self.processed = moved_root / "processed_files"
        self.failed = moved_root / "failed_files"
        self.db_path = root / "bobo_sync.db"
        self.log_file = root / "logs" / LOG_FILE_NAME
        self.env_file = root / "kill.env"
        self.output_file = root / "daemon-output.txt"
        users = demo_users(user_count)
        self.forgotten = users[-10:]
        self.collars = [str(user[COLLAR]) for user in users[:-10]]
        self.login_of = {
            canonical_employee_id(str(user[COLLAR])): str(user["LOGIN_ID"])
            for user in users
        }
        self.written: list[WrittenFile] = []
        self.next_event_time = datetime.now().replace(microsecond=0) - timedelta(days=3)
        self.report = KillReport()
        self.simulator = AtHocSimulator(self._users_with_old_values(users))

    def __enter__(self) -> Self:
        self.simulator.start()
        if self.sync_delay_seconds:
            self.simulator.delay("sync", self.sync_delay_seconds)
        for folder in (self.inbox, self.processed, self.failed):
            folder.mkdir(parents=True, exist_ok=True)
        self._write_env_file()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.simulator.stop()

    # -- the run ------------------------------------------------------------

    def run(self, kills: int) -> KillReport:
        """Kill the daemon ``kills`` times with files flowing, drain, check."""
        started = time.monotonic()
        points = list(KILL_POINTS)
        for _ in range(kills):
            self.drop_files(self.rng.randint(1, 4))
            point = self.rng.choice(points)
            if point == "during the mapping refresh" or self.rng.random() < 0.1:
                self.force_mapping_refresh()
            self.start_and_kill(point)
        self.drain()
        self.check()
        self.report.elapsed_seconds = time.monotonic() - started
        return self.report

    def drop_files(self, count: int) -> None:
        for _ in range(count):
            self._drop_file()

    def force_mapping_refresh(self) -> None:
        """Make the next daemon refresh the map at once (it is not running)."""
        if not self.db_path.exists():
            return
        connection = sqlite3.connect(self.db_path)
        try:
            with connection:
                connection.execute(
                    "DELETE FROM sync_tracking WHERE name = 'mapping_refresh'"
                )
        finally:
            connection.close()

    def start_and_kill(self, point: str) -> None:
        """Start a daemon and SIGKILL it at ``point`` (a KILL_POINTS key)."""
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        process = self.start_daemon()
        marker = KILL_POINTS[point]
        if marker is None:
            time.sleep(self.rng.uniform(0, self.max_kill_delay_seconds))
        elif self.wait_for_log(marker, process, log_offset):
            time.sleep(self.rng.uniform(0, MAX_DELAY_AFTER_MARKER_SECONDS))
        else:
            point = "marker not seen, killed after 3 s"
        if process.poll() is not None:
            self.report.early_exits.append(
                f"exit code {process.returncode} (see {self.output_file})"
            )
            return
        process.kill()  # SIGKILL; TerminateProcess on Windows
        process.wait()
        self.report.kills += 1
        self.report.kill_points[point] += 1

    def start_daemon(self) -> subprocess.Popen[bytes]:
        """Start ``python -m bobosync`` (the loop); output goes to a file."""
        with self.output_file.open("ab") as output:
            return subprocess.Popen(
                self.daemon_command(),
                cwd=REPO_ROOT,
                env=self.daemon_environment(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def run_once(self, timeout_seconds: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``python -m bobosync --once`` to the end; output captured."""
        return subprocess.run(
            self.daemon_command("--once"),
            cwd=REPO_ROOT,
            env=self.daemon_environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
            check=False,
        )

    def daemon_command(self, *arguments: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bobosync",
            "--env-file",
            str(self.env_file),
            *arguments,
        ]

    def daemon_environment(self) -> dict[str, str]:
        """This process's environment without any bobosync setting."""
        names = set(SETTING_NAMES)
        return {
            key: value for key, value in os.environ.items() if key.upper() not in names
        }

    def drain(self) -> None:
        """Let one daemon run until the inbox is empty and the forgotten users
        are cleared, then stop it the way an operator does."""
        process = self.start_daemon()
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            if not self._inbox_files() and not self._uncleared_users():
                break
            time.sleep(0.1)
        time.sleep(0.3)  # one more tick: the moves and clears are recorded
        if process.poll() is None:
            process.terminate()  # SIGTERM: the daemon stops cleanly
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.report.drain_exit_code = process.returncode

    # -- the check ------------------------------------------------------------

    def check(self) -> KillReport:
        report = self.report
        report.files_written = len(self.written)
        report.events_written = sum(len(item.events) for item in self.written)
        expected = self.expected_duty_values()
        report.employees = len(expected)
        for login, value in sorted(expected.items()):
            actual = self.simulator.attribute(login, DUTY) or ""
            if actual != value:
                report.lost_events.append(
                    f"{login}: expected {value!r}, AtHoc has {actual!r}"
                )
        self._check_files()
        report.uncleared_users = self._uncleared_users()
        report.integrity = self._integrity()
        return report

    def expected_duty_values(self) -> dict[str, str]:
        """LOGIN_ID -> the duty value the latest event of the files gives."""
        latest: dict[str, tuple[datetime, str]] = {}
        for item in self.written:
            for collar, kind, when in item.events:
                key = canonical_employee_id(collar)
                if key in latest and latest[key][0] >= when:
                    continue
                latest[key] = (when, kind)
        return {
            self.login_of[key]: when.strftime(DATETIME_FORMAT) if kind == "BON" else ""
            for key, (when, kind) in latest.items()
        }

    def _check_files(self) -> None:
        report = self.report
        processed = Counter(_sha256(path) for path in _files_in(self.processed))
        for item in self.written:
            count = processed[item.sha256]
            if count == 0:
                report.lost_files.append(item.name)
            elif count > 1:
                report.duplicated_files.append(f"{item.name} x{count}")
        strays = self._inbox_files() + _files_in(self.failed)
        strays += [
            path
            for folder in (self.processed, self.failed)
            for path in folder.glob(f"*{TEMPORARY_SUFFIX}")
        ]
        report.stray_files = sorted(str(path) for path in set(strays))

    def _uncleared_users(self) -> list[str]:
        return [
            str(user["LOGIN_ID"])
            for user in self.forgotten
            if self.simulator.attribute(str(user["LOGIN_ID"]), DUTY)
        ]

    def _integrity(self) -> str:
        connection = sqlite3.connect(self.db_path)
        try:
            return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
        finally:
            connection.close()

    # -- helpers ------------------------------------------------------------

    def _users_with_old_values(
        self, users: list[dict[str, str | None]]
    ) -> list[dict[str, str | None]]:
        """Users as given; the forgotten ones booked on long ago, in no file."""
        old_value = (datetime.now() - FORGOTTEN_VALUE_AGE).strftime(DATETIME_FORMAT)
        forgotten = {str(user["LOGIN_ID"]) for user in users[-10:]}
        return [
            {**user, DUTY: old_value} if user["LOGIN_ID"] in forgotten else user
            for user in users
        ]

    def _write_env_file(self) -> None:
        simulator = self.simulator
        lines = [
            f"ATHOC_SERVER_URL={simulator.url}",
            f"ORG_CODE={simulator.org_code}",
            f"CLIENT_ID={simulator.client_id}",
            f"CLIENT_SECRET={simulator.client_secret}",
            f"APIUSER={simulator.username}",
            f"PASSWORD={simulator.password}",
            "LOG_LEVEL=DEBUG",
            f"LOG_DIRECTORY={self.log_file.parent}",
            f"CSV_DIRECTORY={self.inbox}",
            f"PROCESSED_DIRECTORY={self.processed}",
            f"FAILED_FILES_DIRECTORY={self.failed}",
            f"DB_PATH={self.db_path}",
            "POLL_INTERVAL_SECONDS=0.05",
            "FILE_SETTLE_SECONDS=0",
            "BATCH_SIZE=4",
            "SYNC_CHUNK_SIZE=7",
            "SEARCH_PAGE_SIZE=40",
            "CLEANUP_SWEEP_MINUTES=0",
            f"AUTO_CLEANUP_HOURS={AUTO_CLEANUP_HOURS}",
            "REQUEST_TIMEOUT_SECONDS=10",
        ]
        self.env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _drop_file(self) -> None:
        """Write a file of book-ons and book-offs, some workers repeated."""
        rng = self.rng
        hot = self.collars[:30]
        events = []
        for _ in range(rng.randint(3, 30)):
            collar = rng.choice(hot if rng.random() < 0.5 else self.collars)
            self.next_event_time += timedelta(seconds=rng.randint(1, 20))
            events.append((collar, rng.choice(("BON", "BOF")), self.next_event_time))
        lines = [HEADER] if rng.random() < 0.5 else []
        for collar, kind, when in events:
            written_id = collar.lstrip("0") if rng.random() < 0.2 else collar
            lines.append(bobo_row(kind, written_id, when))
        content = ("\r\n".join(lines) + "\r\n").encode("utf-8")
        name = f"BOBO_{len(self.written) + 1:05d}.csv"
        partial = self.inbox / (name + ".part")
        partial.write_bytes(content)
        os.replace(partial, self.inbox / name)
        digest = hashlib.sha256(content).hexdigest()
        self.written.append(WrittenFile(name, digest, tuple(events)))

    def _inbox_files(self) -> list[Path]:
        return [path for path in _files_in(self.inbox) if not path.name.startswith(".")]

    def wait_for_log(
        self, marker: str, process: subprocess.Popen[bytes], offset: int = 0
    ) -> bool:
        """Wait up to 3 s until the log, from byte ``offset`` on, holds
        ``marker``; False at once when the process has ended."""
        seen = b""
        wanted = marker.encode("utf-8")
        deadline = time.monotonic() + MARKER_TIMEOUT_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            if self.log_file.exists():
                with self.log_file.open("rb") as stream:
                    stream.seek(offset + len(seen))
                    seen += stream.read()
                if wanted in seen:
                    return True
            time.sleep(MARKER_POLL_SECONDS)
        return False


def _files_in(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
