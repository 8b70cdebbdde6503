"""Outages and faults: AtHoc down, slow, refusing or confused; disks and the
database in the way (issue 3, "Outages and faults"; EXPECTED.md R7, B15,
B16, B21, B23, B24, B27).

Each test drives the real processor against the simulator on loopback, with
real files and a real SQLite database. The rule under test is always R7: an
outage is not the file's fault. The file stays in CSV_DIRECTORY with attempt
count 0, the tick reports the outage, the ERROR is logged once (not once per
tick), the next tick backs off, and once the fault is gone the next tick
sends everything pending.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from bobosync import inbox
from bobosync.athoc_client import AtHocClient
from bobosync.bobo_processor import MAX_BACKOFF_SECONDS, BOBOProcessor, TickReport
from bobosync.cli import EXIT_CONFIG, main
from bobosync.clock import ManualClock
from bobosync.database import BOBODatabase
from bobosync.errors import FolderError
from bobosync.logging_setup import configure_logging, reset_logging
from bobosync.settings import Settings
from bobosync.simulator import AtHocSimulator
from tests.conftest import (
    CASE_USERS,
    clean_environment,
    copy_case,
    folder_names,
    sent_in,
    settings_for,
)

N04 = "N04_with_header.csv"
N04_SENT = {"t.ashby": "14/03/2025 07:15:02", "r.okafor": "14/03/2025 07:20:10"}
POLL_SECONDS = 60.0
# With a 60 s poll the back-off runs 120, 240, then the 300 s cap: the
# first outage ticks fall within one 15-minute reminder period.
GROWING_DELAYS = [120.0, 240.0, MAX_BACKOFF_SECONDS]
SYNC_PATH = "/api/v2/orgs/BOBO/users/SyncByCommonNames"
TOKEN_PATH = "/AuthServices/Auth/connect/token"


@pytest.fixture
def build_processor(
    clock: ManualClock, make_settings: Callable[..., Settings]
) -> Iterator[Callable[..., BOBOProcessor]]:
    """A processor whose client and database the test may tune."""
    made: list[BOBOProcessor] = []

    def build(
        settings: Settings | None = None,
        *,
        max_retries: int = 3,
        busy_timeout_seconds: float | None = None,
        **overrides: object,
    ) -> BOBOProcessor:
        overrides.setdefault("poll_interval_seconds", POLL_SECONDS)
        settings = settings or make_settings(**overrides)
        client = AtHocClient(
            settings, clock=clock, retry_backoff_seconds=0.0, max_retries=max_retries
        )
        database = None
        if busy_timeout_seconds is not None:
            database = BOBODatabase(
                settings.db_path, busy_timeout_seconds=busy_timeout_seconds
            )
        processor = BOBOProcessor(
            settings, client=client, database=database, clock=clock
        )
        made.append(processor)
        return processor

    yield build
    for processor in made:
        processor.close()


def error_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def run_ticks(
    processor: BOBOProcessor,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    count: int,
) -> tuple[list[TickReport], list[float]]:
    """Run ``count`` ticks as the loop would, the clock moving by each
    tick's back-off; returns the reports and the delays."""
    reports, delays = [], []
    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        for _ in range(count):
            report = processor.run_tick()
            delay = processor.next_delay_seconds(report)
            clock.advance(delay)
            reports.append(report)
            delays.append(delay)
    return reports, delays


def run_tick(processor: BOBOProcessor, caplog: pytest.LogCaptureFixture) -> TickReport:
    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        return processor.run_tick()


def assert_file_waits(processor: BOBOProcessor, name: str) -> None:
    """R7: the file stays in CSV_DIRECTORY, no attempt counted, not failed."""
    settings = processor.settings
    assert folder_names(settings.csv_directory) == [name]
    assert folder_names(settings.processed_directory) == []
    assert folder_names(settings.failed_files_directory) == []
    assert processor.database.get_attempts(name) == 0


def assert_outage_ticks(
    processor: BOBOProcessor,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    *fragments: str,
) -> str:
    """Four outage ticks: each fails, the back-off grows to its cap, and
    one ERROR holding every fragment is logged; returns that ERROR."""
    reports, delays = run_ticks(processor, clock, caplog, len(GROWING_DELAYS))

    assert [report.is_success for report in reports] == [False] * len(reports)
    assert delays == GROWING_DELAYS
    errors = error_messages(caplog)
    assert len(errors) == 1, errors
    for fragment in fragments:
        assert fragment in errors[0]
    return errors[0]


def assert_recovers(
    processor: BOBOProcessor,
    simulator: AtHocSimulator,
    caplog: pytest.LogCaptureFixture,
    name: str = N04,
) -> None:
    """The fault is gone: the next tick sends N04 and processes the file."""
    simulator.clear_faults()
    simulator.reset_records()

    report = run_tick(processor, caplog)

    assert report.is_success, report.outage
    assert sent_in(simulator) == N04_SENT
    settings = processor.settings
    assert folder_names(settings.processed_directory) == [name]
    assert folder_names(settings.csv_directory) == []
    assert processor.next_delay_seconds(report) == POLL_SECONDS


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- AtHoc down ---------------------------------------------------------------


def test_athoc_down_connection_refused_keeps_the_file_and_backs_off(
    tmp_path, clock, simulator, build_processor, caplog
):
    port = free_loopback_port()
    settings = settings_for(
        tmp_path,
        simulator,
        athoc_server_url=f"http://127.0.0.1:{port}",
        poll_interval_seconds=POLL_SECONDS,
    )
    settings.csv_directory.mkdir(parents=True)
    processor = build_processor(settings)
    copy_case(N04, settings.csv_directory)

    assert_outage_ticks(
        processor, clock, caplog, "could not connect", "ATHOC_SERVER_URL", TOKEN_PATH
    )

    assert_file_waits(processor, N04)
    with AtHocSimulator(CASE_USERS, clock=clock, port=port) as back:
        assert_recovers(processor, back, caplog)


# -- AtHoc answers with an error ----------------------------------------------


@pytest.mark.parametrize(
    "endpoint, status",
    [("sync", 500), ("sync", 502), ("sync", 503), ("search", 503), ("any", 502)],
)
def test_server_error_on_every_call_is_an_outage_not_the_files_fault(
    endpoint, status, clock, simulator, build_processor, caplog
):
    processor = build_processor(max_retries=1)
    copy_case(N04, processor.settings.csv_directory)
    simulator.fail_always(endpoint, status)

    assert_outage_ticks(
        processor, clock, caplog, f"HTTP {status}", "check that the AtHoc server"
    )

    assert_file_waits(processor, N04)
    assert_recovers(processor, simulator, caplog)


def test_backoff_is_capped_and_the_error_is_repeated_at_most_every_15_minutes(
    clock, simulator, build_processor, caplog
):
    processor = build_processor(max_retries=1)
    copy_case(N04, processor.settings.csv_directory)
    simulator.fail_always("sync", 503)

    _, delays = run_ticks(processor, clock, caplog, 8)

    assert delays == GROWING_DELAYS + [MAX_BACKOFF_SECONDS] * 5
    # Ticks at 0, 120, 360, 660, 960, 1260, 1560, 1860 s: a reminder when
    # 900 s have passed since the last ERROR (at 960 and 1860 s).
    assert len(error_messages(caplog)) == 3
    assert_file_waits(processor, N04)


# -- slow answers and requests that never return (B21) -------------------------


TIMEOUT_SECONDS = 0.4


@pytest.mark.parametrize(
    "fault, endpoint, fragments",
    [
        ("no_answer", "sync", ["POST", SYNC_PATH]),
        ("stall_body", "sync", ["POST", SYNC_PATH]),
        ("no_answer", "token", ["POST", TOKEN_PATH]),
        ("delay", "sync", ["POST", SYNC_PATH]),
    ],
    ids=["b21a_no_answer", "b21b_stalled_body", "b21c_token_hangs", "slow_answer"],
)
def test_b21_request_that_never_returns_ends_within_the_timeout(
    fault, endpoint, fragments, clock, simulator, build_processor, caplog
):
    processor = build_processor(max_retries=1, request_timeout_seconds=TIMEOUT_SECONDS)
    copy_case(N04, processor.settings.csv_directory)
    if fault == "delay":
        simulator.delay(endpoint, TIMEOUT_SECONDS * 10)
    else:
        simulator.hang(endpoint, fault)

    started = time.monotonic()
    report = run_tick(processor, caplog)
    elapsed = time.monotonic() - started

    # Two attempts (max_retries=1), each ending at the timeout.
    assert elapsed < 2 * TIMEOUT_SECONDS + 1.5
    assert not report.is_success
    errors = error_messages(caplog)
    assert len(errors) == 1, errors
    for fragment in fragments + ["REQUEST_TIMEOUT_SECONDS=0.4"]:
        assert fragment in errors[0]
    assert_file_waits(processor, N04)
    assert processor.next_delay_seconds(report) == GROWING_DELAYS[0]
    assert_recovers(processor, simulator, caplog)


# -- 429 and Retry-After (B16) --------------------------------------------------


def http_date_seconds_ahead(seconds: int) -> str:
    when = datetime.now(UTC) + timedelta(seconds=seconds)
    return format_datetime(when, usegmt=True)


@pytest.mark.parametrize(
    "status, headers, least_wait_seconds",
    [
        (429, {"Retry-After": "1"}, 1.0),
        (429, lambda: {"Retry-After": http_date_seconds_ahead(2)}, 0.5),
        (503, {"Retry-After": "1"}, 1.0),
        (429, {}, 0.0),
    ],
    ids=["seconds", "http_date", "503_seconds", "no_retry_after"],
)
def test_b16_retry_after_is_honoured_then_the_same_body_is_sent_again(
    status, headers, least_wait_seconds, simulator, build_processor, caplog
):
    processor = build_processor()
    copy_case(N04, processor.settings.csv_directory, as_name="BOBO_0800.csv")
    if callable(headers):
        headers = headers()
    simulator.fail_next("sync", status, headers=headers)

    started = time.monotonic()
    report = run_tick(processor, caplog)
    elapsed = time.monotonic() - started

    assert report.is_success, report.outage
    first, second = simulator.sync_calls
    assert first == second
    assert {user["LOGIN_ID"]: user["On-Duty-DTG"] for user in second} == N04_SENT
    assert elapsed >= least_wait_seconds
    assert folder_names(processor.settings.processed_directory) == ["BOBO_0800.csv"]
    assert processor.database.get_attempts("BOBO_0800.csv") == 0
    assert error_messages(caplog) == []


def test_b16_retry_after_a_day_does_not_hold_the_tick(
    clock, simulator, build_processor, caplog
):
    processor = build_processor()
    copy_case(N04, processor.settings.csv_directory, as_name="BOBO_0800.csv")
    simulator.fail_always("sync", 429, headers={"Retry-After": "86400"})

    started = time.monotonic()
    reports, delays = run_ticks(processor, clock, caplog, 3)

    assert time.monotonic() - started < 5
    assert [report.is_success for report in reports] == [False, False, False]
    assert len(simulator.sync_calls) == 3  # one call a tick: no retry, no wait
    mentions = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.levelno >= logging.INFO and "86400" in r.getMessage()
    ]
    # One WARNING that the server asked for a day and one ERROR: the
    # back-off is at its 300 s cap at once, within one reminder period.
    assert [level for level, _ in mentions] == ["WARNING", "ERROR"]
    assert "AtHoc asked to wait 86400 s" in mentions[0][1]
    assert mentions[1][1].startswith(
        f"POST {SYNC_PATH} failed: AtHoc answered HTTP 429, asked to wait 86400 s"
    )
    assert processor.database.get_attempts("BOBO_0800.csv") == 0
    assert folder_names(processor.settings.csv_directory) == ["BOBO_0800.csv"]
    # The server's wish backs off as far as the cap allows, never a day.
    assert delays == [MAX_BACKOFF_SECONDS] * 3
    assert_recovers(processor, simulator, caplog, "BOBO_0800.csv")


def test_b16_429_on_every_call_keeps_the_file_with_no_attempt(
    clock, simulator, build_processor, caplog
):
    processor = build_processor(max_retries=1)
    copy_case(N04, processor.settings.csv_directory)
    simulator.fail_always("sync", 429)

    assert_outage_ticks(
        processor, clock, caplog, "HTTP 429", "check that the AtHoc server"
    )

    assert_file_waits(processor, N04)
    assert_recovers(processor, simulator, caplog)


# -- answers that cannot be used ------------------------------------------------


@pytest.mark.parametrize(
    "endpoint, fragments",
    [
        ("sync", ["POST", SYNC_PATH, "not JSON"]),
        ("search", ["GET", "/users/search/basic", "not JSON"]),
    ],
)
def test_malformed_json_answer_is_an_outage(
    endpoint, fragments, clock, simulator, build_processor, caplog
):
    processor = build_processor()
    copy_case(N04, processor.settings.csv_directory)
    simulator.malformed_json_next(endpoint, count=1000)

    assert_outage_ticks(processor, clock, caplog, *fragments)

    assert_file_waits(processor, N04)
    assert_recovers(processor, simulator, caplog)


def test_sync_answer_missing_a_user_keeps_the_file_without_an_attempt(
    clock, simulator, build_processor, caplog
):
    processor = build_processor()
    copy_case(N04, processor.settings.csv_directory)
    simulator.omit_from_sync_answer(["r.okafor"], apply=False)

    assert_outage_ticks(processor, clock, caplog, "r.okafor", "SyncByCommonNames")

    assert_file_waits(processor, N04)
    # t.ashby was confirmed: recorded as applied, so only r.okafor is resent.
    simulator.clear_faults()
    simulator.reset_records()
    report = run_tick(processor, caplog)
    assert report.is_success, report.outage
    assert sent_in(simulator) == {"r.okafor": N04_SENT["r.okafor"]}
    assert simulator.attribute("t.ashby", "On-Duty-DTG") == N04_SENT["t.ashby"]
    assert folder_names(processor.settings.processed_directory) == [N04]


# -- paging -----------------------------------------------------------------------


def test_empty_page_in_the_middle_of_paging_keeps_the_map(
    clock, simulator, build_processor, caplog
):
    processor = build_processor(search_page_size=2)
    run_tick(processor, caplog)
    assert len(processor.database.get_mapping()) == 6
    simulator.empty_page_at(1)
    caplog.clear()

    result = processor.sync_worker_mappings()

    assert result is None
    assert len(processor.database.get_mapping()) == 6
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("mapping refresh incomplete: received=2 total=6" in w for w in warnings)
    copy_case(N04, processor.settings.csv_directory)
    simulator.reset_records()
    assert run_tick(processor, caplog).is_success
    assert sent_in(simulator) == N04_SENT
    assert folder_names(processor.settings.processed_directory) == [N04]


# -- the access token (B15) -----------------------------------------------------


def copy_three_files(processor: BOBOProcessor) -> list[str]:
    names = [f"BOBO_{number}.csv" for number in (1, 2, 3)]
    for name in names:
        copy_case(N04, processor.settings.csv_directory, as_name=name)
    return names


def assert_three_files_processed(processor: BOBOProcessor, names: list[str]) -> None:
    settings = processor.settings
    assert folder_names(settings.processed_directory) == names
    assert folder_names(settings.csv_directory) == []
    for name in names:
        assert processor.database.get_attempts(name) == 0


def test_b15_token_is_renewed_before_it_expires(
    clock, simulator, build_processor, caplog
):
    processor = build_processor()
    run_tick(processor, caplog)  # t=0: the first token and the map
    clock.advance(3590)
    names = copy_three_files(processor)

    report = run_tick(processor, caplog)

    assert report.is_success, report.outage
    assert simulator.token_grants == ["password", "refresh_token"]
    assert simulator.unauthorized_count == 0
    assert sent_in(simulator) == N04_SENT
    assert_three_files_processed(processor, names)


def test_b15a_revoked_token_is_replaced_once_and_the_call_repeated(
    clock, simulator, build_processor, caplog
):
    processor = build_processor()
    run_tick(processor, caplog)
    clock.advance(1800)
    simulator.revoke_tokens()
    names = copy_three_files(processor)
    simulator.reset_records()

    report = run_tick(processor, caplog)

    assert report.is_success, report.outage
    assert simulator.token_grants == ["password"]
    assert simulator.unauthorized_count == 1
    refused, repeated = simulator.sync_calls
    assert refused == repeated
    assert {user["LOGIN_ID"]: user["On-Duty-DTG"] for user in repeated} == N04_SENT
    assert_three_files_processed(processor, names)
    assert error_messages(caplog) == []


def change_password_by_switch(simulator: AtHocSimulator) -> None:
    simulator.set_password("changed-by-the-admin")
    simulator.reject_refresh_tokens()


def refuse_every_token_request(simulator: AtHocSimulator) -> None:
    simulator.fail_always("token", 400, body={"error": "invalid_grant"})


@pytest.mark.parametrize(
    "change_password", [change_password_by_switch, refuse_every_token_request]
)
def test_b15b_changed_password_logs_one_error_and_backs_off_token_requests(
    change_password, clock, simulator, build_processor, caplog
):
    processor = build_processor()
    run_tick(processor, caplog)
    change_password(simulator)
    clock.advance(3600)
    names = copy_three_files(processor)
    caplog.clear()

    grants_per_tick, delays = [], []
    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        for _ in GROWING_DELAYS:
            simulator.reset_records()
            report = processor.run_tick()
            assert not report.is_success
            grants_per_tick.append(simulator.token_grants)
            delays.append(processor.next_delay_seconds(report))
            clock.advance(delays[-1])

    assert delays == GROWING_DELAYS
    # The refused refresh token falls back to the password once; from then
    # on one password request a tick, never one per file or row.
    assert grants_per_tick == [["refresh_token", "password"]] + [["password"]] * (
        len(GROWING_DELAYS) - 1
    )
    errors = error_messages(caplog)
    assert len(errors) == 1, errors
    for fragment in ("invalid_grant", "APIUSER", "PASSWORD", "ORG_CODE", "locked"):
        assert fragment in errors[0]
    assert simulator.sync_calls == []
    for name in names:
        assert processor.database.get_attempts(name) == 0
    assert folder_names(processor.settings.csv_directory) == names
    assert folder_names(processor.settings.failed_files_directory) == []

    simulator.set_password(processor.settings.password)
    simulator.clear_faults()
    simulator.reset_records()
    assert run_tick(processor, caplog).is_success
    assert sent_in(simulator) == N04_SENT
    assert_three_files_processed(processor, names)


# -- moves that fail (B23, B24a, disk full) -------------------------------------


def fail_renames_out_of(
    monkeypatch: pytest.MonkeyPatch, folder: Path, error: OSError
) -> None:
    """os.rename raises ``error`` for files leaving ``folder``."""
    real_rename = os.rename

    def rename(source, target, *args, **kwargs):
        if Path(source).parent == folder:
            raise error
        return real_rename(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)


def fail_removes_in(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    real_remove = os.remove

    def remove(path, *args, **kwargs):
        if Path(path).parent == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_remove(path, *args, **kwargs)

    monkeypatch.setattr(os, "remove", remove)


def run_later_ticks(
    processor: BOBOProcessor,
    simulator: AtHocSimulator,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    count: int = 3,
) -> None:
    """Ticks after the send: none of them may send anything again."""
    simulator.reset_records()
    run_ticks(processor, clock, caplog, count)
    assert simulator.sync_calls == []


def test_b23_move_fails_after_the_send_retries_only_the_move(
    monkeypatch, clock, simulator, build_processor, caplog
):
    processor = build_processor()
    settings = processor.settings
    copy_case(N04, settings.csv_directory, as_name="BOBO_daily.csv")
    denied = PermissionError(errno.EACCES, "Permission denied")
    fail_renames_out_of(monkeypatch, settings.csv_directory, denied)

    run_tick(processor, caplog)
    assert sent_in(simulator) == N04_SENT
    run_later_ticks(processor, simulator, clock, caplog)

    errors = error_messages(caplog)
    assert len(errors) == 1, errors
    assert errors[0].startswith("sent, but could not move the file: file=")
    assert str(settings.processed_directory) in errors[0]
    assert "may write there" in errors[0]
    assert folder_names(settings.csv_directory) == ["BOBO_daily.csv"]
    assert processor.database.get_attempts("BOBO_daily.csv") == 0
    monkeypatch.undo()
    run_later_ticks(processor, simulator, clock, caplog, count=1)
    assert folder_names(settings.processed_directory) == ["BOBO_daily.csv"]
    assert folder_names(settings.csv_directory) == []


def test_processed_directory_that_is_a_file_keeps_the_sent_file_in_place(
    tmp_path, clock, simulator, build_processor, caplog
):
    blocked = tmp_path / "processed_files"
    blocked.write_text("not a folder")
    processor = build_processor(processed_directory=blocked)
    settings = processor.settings
    copy_case(N04, settings.csv_directory)
    caplog.clear()

    run_tick(processor, caplog)
    assert sent_in(simulator) == N04_SENT
    run_later_ticks(processor, simulator, clock, caplog)

    errors = error_messages(caplog)
    assert len(errors) == 1, errors
    assert f"folder {blocked} does not exist or is not a folder" in errors[0]
    assert "create it or correct the setting" in errors[0]
    assert folder_names(settings.csv_directory) == [N04]
    blocked.unlink()
    blocked.mkdir()
    run_later_ticks(processor, simulator, clock, caplog, count=1)
    assert folder_names(blocked) == [N04]


def test_failed_directory_that_is_a_file_keeps_the_bad_file_in_place(
    tmp_path, clock, simulator, build_processor, caplog
):
    blocked = tmp_path / "failed_files"
    blocked.write_text("not a folder")
    processor = build_processor(failed_files_directory=blocked)
    source = processor.settings.csv_directory / "BOBO_daily.csv"
    source.write_text("drop BOBO exports here\r\n")
    caplog.clear()

    run_ticks(processor, clock, caplog, 3)

    errors = error_messages(caplog)
    assert len(errors) == 1, errors
    assert f"folder {blocked} does not exist or is not a folder" in errors[0]
    assert source.exists()
    blocked.unlink()
    blocked.mkdir()
    run_tick(processor, caplog)
    assert folder_names(blocked) == ["BOBO_daily.csv"]
    assert not source.exists()


def test_disk_full_while_copying_across_volumes_keeps_the_source(
    monkeypatch, clock, simulator, build_processor, caplog
):
    processor = build_processor()
    settings = processor.settings
    copy_case(N04, settings.csv_directory)
    fail_renames_out_of(
        monkeypatch, settings.csv_directory, OSError(errno.EXDEV, "Cross-device link")
    )

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(inbox.shutil, "copyfileobj", disk_full)

    run_tick(processor, caplog)
    assert sent_in(simulator) == N04_SENT
    run_later_ticks(processor, simulator, clock, caplog)

    errors = error_messages(caplog)
    assert len(errors) == 1, errors
    assert "No space left on device" in errors[0]
    assert f"free space on {settings.processed_directory}" in errors[0]
    assert folder_names(settings.csv_directory) == [N04]
    assert folder_names(settings.processed_directory) == []
    monkeypatch.undo()
    run_later_ticks(processor, simulator, clock, caplog, count=1)
    assert folder_names(settings.processed_directory) == [N04]
    assert folder_names(settings.csv_directory) == []


def test_b24a_share_that_refuses_deletes_keeps_one_copy_and_sends_once(
    monkeypatch, clock, simulator, build_processor, caplog
):
    processor = build_processor()
    settings = processor.settings
    copy_case(N04, settings.csv_directory)
    fail_renames_out_of(
        monkeypatch, settings.csv_directory, OSError(errno.EXDEV, "Cross-device link")
    )
    fail_removes_in(monkeypatch, settings.csv_directory)

    run_tick(processor, caplog)
    assert sent_in(simulator) == N04_SENT
    run_later_ticks(processor, simulator, clock, caplog)

    errors = error_messages(caplog)
    assert len(errors) == 1, errors
    assert errors[0].startswith("sent, but could not remove the source: file=")
    assert str(settings.csv_directory / N04) in errors[0]
    assert "delete rights" in errors[0]
    assert folder_names(settings.processed_directory) == [N04]
    assert folder_names(settings.csv_directory) == [N04]
    monkeypatch.undo()
    run_later_ticks(processor, simulator, clock, caplog, count=1)
    assert folder_names(settings.processed_directory) == [N04]
    assert folder_names(settings.csv_directory) == []


# -- CSV_DIRECTORY missing or unreachable (B24b, B24c) ---------------------------


def test_b24b_missing_csv_directory_is_reported_every_15_minutes_never_created(
    tmp_path, clock, simulator, build_processor, caplog
):
    missing = tmp_path / "share" / "in"
    settings = settings_for(
        tmp_path, simulator, csv_directory=missing, poll_interval_seconds=POLL_SECONDS
    )
    processor = build_processor(settings)

    reports = []
    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        for _ in range(20):  # ticks at 0, 60, ... 1140 s
            reports.append(processor.run_tick())
            clock.advance(POLL_SECONDS)

    assert [report.is_success for report in reports] == [False] * 20
    errors = error_messages(caplog)
    assert len(errors) == 2, errors  # at 0 s and the reminder at 900 s
    assert errors[0].startswith(f"CSV_DIRECTORY {missing} is not accessible (")
    assert not missing.exists()
    copy_case(N04, missing)
    assert_recovers(processor, simulator, caplog)


def test_b24c_csv_directory_that_goes_away_is_picked_up_again(
    tmp_path, clock, simulator, build_processor, caplog
):
    processor = build_processor()
    folder = processor.settings.csv_directory
    run_tick(processor, caplog)
    folder.rename(tmp_path / "share_down")
    caplog.clear()

    assert_outage_ticks(processor, clock, caplog, f"CSV_DIRECTORY {folder}")

    assert not folder.exists()
    (tmp_path / "share_down").rename(folder)
    copy_case(N04, folder)
    assert_recovers(processor, simulator, caplog)


# -- the database locked by another program (B27) --------------------------------


@pytest.mark.parametrize("begin", ["BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"])
def test_b27_locked_database_is_an_outage_then_the_file_is_processed(
    begin, clock, simulator, build_processor, caplog
):
    processor = build_processor(busy_timeout_seconds=0.1)
    settings = processor.settings
    run_tick(processor, caplog)  # the map, before the lock
    caplog.clear()
    other_program = sqlite3.connect(settings.db_path, isolation_level=None)
    other_program.execute(begin)
    copy_case(N04, settings.csv_directory)
    simulator.reset_records()

    try:
        assert_outage_ticks(
            processor, clock, caplog, f"DB_PATH {settings.db_path}", "locked"
        )
        assert_file_waits(processor, N04)
        assert simulator.sync_calls == []  # nothing sent that cannot be recorded
    finally:
        other_program.execute("ROLLBACK")
        other_program.close()

    assert_recovers(processor, simulator, caplog)


def test_b27_long_read_only_query_blocks_nothing(simulator, build_processor, caplog):
    processor = build_processor(busy_timeout_seconds=0.1)
    settings = processor.settings
    run_tick(processor, caplog)
    other_program = sqlite3.connect(settings.db_path, isolation_level=None)
    other_program.execute("BEGIN")
    other_program.execute("SELECT COUNT(*) FROM worker_mapping").fetchall()
    copy_case(N04, settings.csv_directory)
    simulator.reset_records()

    try:
        report = run_tick(processor, caplog)
    finally:
        other_program.execute("ROLLBACK")
        other_program.close()

    assert report.is_success, report.outage
    assert sent_in(simulator) == N04_SENT
    assert folder_names(settings.processed_directory) == [N04]


# -- the log folder ----------------------------------------------------------------


def test_log_directory_not_writable_names_the_path_and_the_fix(tmp_path, simulator):
    blocker = tmp_path / "logs_is_a_file"
    blocker.write_text("")
    settings = settings_for(tmp_path, simulator, log_directory=blocker / "logs")

    try:
        with pytest.raises(FolderError) as caught:
            configure_logging(settings, console=False)
    finally:
        reset_logging()

    message = str(caught.value)
    assert message.startswith(f"LOG_DIRECTORY {blocker / 'logs'} is not writable")
    assert "give this account write access" in message
    assert caught.value.path == blocker / "logs"


def test_once_with_an_unwritable_log_directory_stops_and_leaves_the_files(
    tmp_path, monkeypatch, simulator, capsys
):
    clean_environment(monkeypatch)
    blocker = tmp_path / "logs_is_a_file"
    blocker.write_text("")
    inbox_folder = tmp_path / "in"
    copy_case(N04, inbox_folder)
    env_file = tmp_path / ".env"
    env_file.write_text(
        "\n".join(
            [
                f"ATHOC_SERVER_URL={simulator.url}",
                f"ORG_CODE={simulator.org_code}",
                f"CLIENT_ID={simulator.client_id}",
                f"CLIENT_SECRET={simulator.client_secret}",
                f"APIUSER={simulator.username}",
                f"PASSWORD={simulator.password}",
                f"CSV_DIRECTORY={inbox_folder}",
                f"LOG_DIRECTORY={blocker / 'logs'}",
            ]
        ),
        encoding="utf-8",
    )

    try:
        exit_code = main(["--once", "--env-file", str(env_file)])
    finally:
        reset_logging()

    assert exit_code == EXIT_CONFIG
    assert (
        f"LOG_DIRECTORY {blocker / 'logs'} is not writable" in capsys.readouterr().err
    )
    assert folder_names(inbox_folder) == [N04]
    assert simulator.sync_calls == []
