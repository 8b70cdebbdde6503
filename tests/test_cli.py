"""``python -m bobosync`` and the operators' runbook, run as subprocesses.

The simulator serves on loopback from the test process; each bobosync
process reads an env file written to tmp_path and gets a clean environment
(no bobosync setting, USERNAME or proxy variable inherited).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bobosync.database import BOBODatabase
from bobosync.settings import SETTING_NAMES
from tests.conftest import DUTY, REPO_ROOT, copy_case, folder_names

CASE_CLOCK = "2025-03-14T23:00:00"
POSIX_ONLY = pytest.mark.skipif(
    sys.platform == "win32", reason="POSIX signals; Windows has no SIGTERM delivery"
)
NOT_INHERITED = {name.upper() for name in SETTING_NAMES} | {
    "USERNAME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
}
WAIT_SECONDS = 10.0


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.upper() not in NOT_INHERITED}


def write_env(
    path: Path, root: Path, server_url: str, simulator, **extra: object
) -> Path:
    """An env file for ``simulator`` with every folder absolute under ``root``."""
    values: dict[str, object] = {
        "ATHOC_SERVER_URL": server_url,
        "CLIENT_ID": simulator.client_id,
        "CLIENT_SECRET": simulator.client_secret,
        "APIUSER": simulator.username,
        "PASSWORD": simulator.password,
        "ORG_CODE": simulator.org_code,
        "CSV_DIRECTORY": root / "csv_input",
        "PROCESSED_DIRECTORY": root / "processed_files",
        "FAILED_FILES_DIRECTORY": root / "failed_files",
        "LOG_DIRECTORY": root / "logs",
        "DB_PATH": root / "bobo_sync.db",
        "FILE_SETTLE_SECONDS": 0,
        "AUTO_CLEANUP_HOURS": 24,
        "REQUEST_TIMEOUT_SECONDS": 5,
        "POLL_INTERVAL_SECONDS": 0.2,
    }
    values.update(extra)
    (root / "csv_input").mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


class Site:
    """One bobosync installation's folders and env file under tmp_path."""

    def __init__(self, root: Path, env_file: Path) -> None:
        self.root = root
        self.env_file = env_file
        self.inbox = root / "csv_input"
        self.processed = root / "processed_files"
        self.failed = root / "failed_files"
        self.log_file = root / "logs" / "bobo_processor.log"
        self.db_path = root / "bobo_sync.db"

    def log_text(self) -> str:
        if not self.log_file.exists():
            return ""
        return self.log_file.read_text(encoding="utf-8")


@pytest.fixture
def site(tmp_path: Path, simulator) -> Site:
    root = tmp_path / "site"
    env_file = write_env(tmp_path / "bobosync.env", root, simulator.url, simulator)
    return Site(root, env_file)


def run_bobosync(
    site: Site, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "bobosync",
        "--env-file",
        str(site.env_file),
        *args,
    ]
    return subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=clean_environment(),
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
    )


def start(command: list[str], cwd: Path, output: Path) -> subprocess.Popen:
    """Start a long-running process with its console output in a file."""
    with output.open("wb") as sink:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=clean_environment(),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def start_daemon(site: Site, output: Path, *args: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "bobosync",
        "--env-file",
        str(site.env_file),
        "--clock-start",
        CASE_CLOCK,
        *args,
    ]
    return start(command, REPO_ROOT, output)


def wait_for(condition: Callable[[], bool], what: str, process=None) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(
                f"the process ended (status {process.returncode}) before {what}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def drop_file(folder: Path, name: str, text: str) -> Path:
    """Write under a name BOBO's readers ignore, then rename: no half file."""
    partial = folder / (name + ".tmp")
    partial.write_text(text, encoding="utf-8")
    return partial.replace(folder / name)


def stop(process: subprocess.Popen, signal_number: int = signal.SIGTERM) -> int:
    process.send_signal(signal_number)
    try:
        return process.wait(timeout=WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail("the daemon did not stop on the signal")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def csv_names(folder: Path) -> list[str]:
    """The BOBO files in a folder (the instance lock keeps its files there)."""
    return [name for name in folder_names(folder) if name.lower().endswith(".csv")]


def bobo_line(kind: str, collar: str, when: datetime) -> str:
    return (
        f"{kind},{collar},7{collar},{when:%Y%m%d},{when:%H%M%S},"
        f"{when:%Y%m%d%H%M%S},1,,,\r\n"
    )


# -- python -m bobosync --once -------------------------------------------------


def test_once_syncs_a_folder_and_exits_0(site, simulator):
    copy_case("N04_with_header.csv", site.inbox)
    copy_case("N11_unknown_employee.csv", site.inbox)

    result = run_bobosync(site, "--clock-start", CASE_CLOCK, "--once")

    assert result.returncode == 0, result.stderr
    assert simulator.attribute("t.ashby", DUTY) == "14/03/2025 07:15:02"
    assert simulator.attribute("r.okafor", DUTY) == "14/03/2025 07:20:10"
    assert folder_names(site.processed) == [
        "N04_with_header.csv",
        "N11_unknown_employee.csv",
    ]
    assert csv_names(site.inbox) == []
    log = site.log_text()
    assert "Authentication successful" in log
    assert "Batch processing completed" in log


def test_once_exits_1_when_athoc_is_unreachable_and_the_file_stays(tmp_path, simulator):
    root = tmp_path / "site"
    url = f"http://127.0.0.1:{closed_port()}"
    site = Site(root, write_env(tmp_path / "down.env", root, url, simulator))
    copy_case("N04_with_header.csv", site.inbox)

    result = run_bobosync(site, "--clock-start", CASE_CLOCK, "--once")

    assert result.returncode == 1, result.stderr
    assert csv_names(site.inbox) == ["N04_with_header.csv"]
    assert folder_names(site.failed) == []
    assert "ERROR" in site.log_text() and url in site.log_text()


def test_configuration_error_exits_2_with_one_line_per_problem(tmp_path, simulator):
    root = tmp_path / "site"
    env_file = write_env(
        tmp_path / "bad.env",
        root,
        simulator.url,
        simulator,
        POLL_INTERVAL_SECONDS="ten",
        SYNC_HOUR=25,
        ORG_CODE="",
    )

    result = run_bobosync(Site(root, env_file), "--once")

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "bobosync: configuration error:"
    problems = {line.split()[0]: line for line in lines[1:]}
    assert len(lines) == 4
    assert sorted(problems) == ["ORG_CODE", "POLL_INTERVAL_SECONDS", "SYNC_HOUR"]
    assert "missing" in problems["ORG_CODE"]
    assert problems["POLL_INTERVAL_SECONDS"].endswith("got 'ten'")
    assert problems["SYNC_HOUR"].endswith("got '25'")
    assert simulator.password not in result.stderr
    assert not (root / "bobo_sync.db").exists()


# -- the loop ------------------------------------------------------------------


@POSIX_ONLY
@pytest.mark.parametrize(
    "signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"]
)
def test_loop_processes_a_dropped_file_and_stops_cleanly_on_a_signal(
    signal_number, site, simulator, tmp_path
):
    daemon = start_daemon(site, tmp_path / "daemon.out")
    wait_for(lambda: "daemon running" in site.log_text(), "the loop to start", daemon)

    drop_file(
        site.inbox,
        "BOBO_20250314_2200.csv",
        bobo_line("BOF", "00009", datetime(2025, 3, 14, 22, 0)),
    )
    wait_for(
        lambda: folder_names(site.processed) == ["BOBO_20250314_2200.csv"],
        "the dropped file to be processed",
        daemon,
    )

    assert stop(daemon, signal_number) == 0
    name = signal.Signals(signal_number).name
    assert f"bobosync stopped: reason={name}" in site.log_text()
    assert simulator.sent_updates() == {"m.lindqvist": ""}


@POSIX_ONLY
def test_second_daemon_on_the_same_database_exits_3_naming_the_lock(
    site, simulator, tmp_path
):
    first = start_daemon(site, tmp_path / "first.out")
    try:
        wait_for(lambda: "daemon running" in site.log_text(), "the first daemon", first)
        started = time.monotonic()

        second = run_bobosync(site, "--once", timeout=10)

        assert second.returncode == 3
        assert time.monotonic() - started < 5
        assert f"{site.db_path}.lock" in second.stderr
        assert f"pid {first.pid}" in second.stderr
    finally:
        assert stop(first) == 0


# -- the other commands ----------------------------------------------------------


def test_sync_users_command_refreshes_the_map(site, simulator):
    result = run_bobosync(site, "sync-users")

    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip()
        == "mapped 6 of 6 AtHoc users (added 6, changed 0, removed 0)"
    )
    with BOBODatabase(site.db_path) as database:
        assert database.mapping_count() == 6


def test_cleanup_command_clears_values_older_than_the_hours_given(site, simulator):
    simulator.set_attribute("t.ashby", DUTY, "13/03/2025 10:00:00")
    simulator.set_attribute("k.moreau", DUTY, "13/03/2025 22:59:00")
    simulator.set_attribute("p.nandi", DUTY, "14/03/2025 20:00:00")

    result = run_bobosync(site, "--clock-start", CASE_CLOCK, "cleanup", "--hours", "24")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cleared 2 users"
    assert simulator.sent_updates() == {"k.moreau": "", "t.ashby": ""}
    assert simulator.attribute("p.nandi", DUTY) == "14/03/2025 20:00:00"


def test_demo_runs_with_no_setup_and_reports_ok(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bobosync", "demo", "--folder", str(tmp_path / "demo")],
        cwd=REPO_ROOT,
        env=clean_environment(),
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo result: OK" in result.stdout
    assert len(folder_names(tmp_path / "demo" / "processed_files")) == 2


# -- the operators' runbook, from inside bobosync/ --------------------------------
#
# The runbook's constructors read the .env beside the package, so each test
# installs a copy of the package with its own .env instead of touching the
# repository's.


@pytest.fixture
def installed(tmp_path, simulator) -> Site:
    install = tmp_path / "install"
    shutil.copytree(
        REPO_ROOT / "bobosync",
        install / "bobosync",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    root = tmp_path / "site"
    return Site(root, write_env(install / ".env", root, simulator.url, simulator))


def run_runbook(installed: Site, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=installed.env_file.parent / "bobosync",
        env=clean_environment(),
        capture_output=True,
        check=False,
        text=True,
        timeout=30,
    )


def test_runbook_sync_worker_mappings_line_refreshes_the_map(installed):
    result = run_runbook(
        installed,
        "-c",
        "from bobo_processor import BOBOProcessor; p = BOBOProcessor(); "
        "p.sync_worker_mappings()",
    )

    assert result.returncode == 0, result.stderr
    with BOBODatabase(installed.db_path) as database:
        assert database.get_mapping()["417"] == "t.ashby"
        assert database.mapping_count() == 6


def test_runbook_clear_old_duty_status_line_prints_the_count(installed, simulator):
    simulator.set_attribute("t.ashby", DUTY, "13/03/2025 10:00:00")
    simulator.set_attribute("s.varga", DUTY, "01/01/2024 08:00:00")

    result = run_runbook(
        installed,
        "-c",
        "from athoc_client import AtHocClient; c = AtHocClient(); "
        "print(c.clear_old_duty_status('On-Duty-DTG', 24))",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
    assert simulator.sent_updates() == {"s.varga": "", "t.ashby": ""}


@POSIX_ONLY
def test_runbook_python_bobo_processor_runs_the_daemon(installed, simulator, tmp_path):
    daemon = start(
        [sys.executable, "bobo_processor.py"],
        installed.env_file.parent / "bobosync",
        tmp_path / "runbook.out",
    )
    wait_for(
        lambda: "daemon running" in installed.log_text(), "the loop to start", daemon
    )
    booked_on = datetime.now().replace(microsecond=0) - timedelta(minutes=5)

    drop_file(installed.inbox, "BOBO_now.csv", bobo_line("BON", "00422", booked_on))
    wait_for(
        lambda: folder_names(installed.processed) == ["BOBO_now.csv"],
        "the dropped file to be processed",
        daemon,
    )

    assert stop(daemon) == 0
    assert simulator.attribute("s.varga", DUTY) == booked_on.strftime(
        "%d/%m/%Y %H:%M:%S"
    )
    assert "bobosync stopped: reason=SIGTERM" in installed.log_text()
