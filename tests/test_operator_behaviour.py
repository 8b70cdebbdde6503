"""Behaviours operators rely on that no case file shows: settings typed
wrong, start-up failures in the log, the runbook's logging, the sweep's
schedule, direct look-ups, retries and the documented limits.

In-process tests drive BOBOProcessor against the simulator on loopback with
the ManualClock; the CLI and runbook tests run bobosync as a subprocess
like tests/test_cli.py does.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from urllib3.util.retry import RequestHistory

from bobosync import cli
from bobosync.athoc_client import AtHocClient
from bobosync.bobo_entry import BOBOEntry, latest_per_employee
from bobosync.bobo_processor import BOBOProcessor
from bobosync.http_transport import RETRY_BACKOFF_MAX_SECONDS, build_retry
from bobosync.logging_setup import LOG_FILE_NAME
from bobosync.simulator import AtHocSimulator
from tests.conftest import (
    CASE_USERS,
    COLLAR,
    DUTY,
    clean_environment,
    copy_case,
    folder_names,
    sent_in,
    settings_for,
)
from tests.test_cli import (
    CASE_CLOCK,
    Site,
    closed_port,
    csv_names,
    installed,  # noqa: F401 (the runbook fixture: a copy of the package)
    run_bobosync,
    run_runbook,
    write_env,
)

N04 = "N04_with_header.csv"
N04_SENT = {"t.ashby": "14/03/2025 07:15:02", "r.okafor": "14/03/2025 07:20:10"}
OLD_VALUE = "13/03/2025 10:00:00"  # older than 24 h at 14/03/2025 23:00
RECENT_VALUE = "14/03/2025 20:00:00"
MISSPELLED_DUTY = "On-Duty-DGT"
MISSPELLED_COLLAR = "Collar-Numbr"


def write_bobo(folder: Path, name: str, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def bobo_row(kind: str, collar: str, when: datetime) -> str:
    stamp = f"{when:%Y%m%d},{when:%H%M%S},{when:%Y%m%d%H%M%S}"
    return f"{kind},{collar},7{collar},{stamp},1,,,"


def tick(processor, simulator, caplog):
    """One tick from fresh records; returns (report, its log records)."""
    simulator.reset_records()
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        report = processor.run_tick()
    return report, list(caplog.records)


def at_level(records, level: int) -> list[str]:
    return [r.getMessage() for r in records if r.levelno == level]


def sweep_queries(simulator) -> list[dict]:
    return [q for q in simulator.search_queries if " lt " in (q["Criteria"] or "")]


def lookup_queries(simulator, employee_id: str) -> list[dict]:
    return [q for q in simulator.search_queries if employee_id in (q["Criteria"] or "")]


# -- B1: DUTY_STATUS_FIELD typed wrong -------------------------------------------


def test_misspelled_duty_status_field_is_an_outage_until_the_setting_is_fixed(
    make_processor, make_settings, simulator, caplog, clock
):
    wrong = make_processor(
        make_settings(duty_status_field=MISSPELLED_DUTY, max_retry_attempts=2)
    )
    inbox = wrong.settings.csv_directory
    copy_case(N04, inbox)

    errors = []
    for _ in range(4):
        report, records = tick(wrong, simulator, caplog)
        assert not report.is_success
        errors += at_level(records, logging.ERROR)
        clock.advance(60)

    assert len(errors) == 1
    assert f"DUTY_STATUS_FIELD={MISSPELLED_DUTY}" in errors[0]
    assert wrong.database.get_attempts(N04) == 0
    assert csv_names(inbox) == [N04]
    assert folder_names(wrong.settings.failed_files_directory) == []
    assert simulator.attribute("t.ashby", DUTY) is None
    wrong.close()

    fixed = make_processor(make_settings())
    report, _ = tick(fixed, simulator, caplog)

    assert report.is_success, report.outage
    assert sent_in(simulator) == N04_SENT
    assert folder_names(fixed.settings.processed_directory) == [N04]


# -- B2: COLLAR_ID_FIELD typed wrong ---------------------------------------------


def test_misspelled_collar_id_field_warns_maps_nothing_and_keeps_the_map(
    make_processor, make_settings, caplog
):
    good = make_processor()
    good.sync_worker_mappings()
    good.close()
    wrong = make_processor(make_settings(collar_id_field=MISSPELLED_COLLAR))

    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        result = wrong.sync_worker_mappings()

    assert result is not None and (result.users_read, result.mapped) == (6, 0)
    warnings = at_level(caplog.records, logging.WARNING)
    assert any(
        warning.startswith(
            "no AtHoc user holds a value in "
            f"COLLAR_ID_FIELD={MISSPELLED_COLLAR}: check the setting"
        )
        for warning in warnings
    ), warnings
    assert any("(safety valve)" in warning for warning in warnings), warnings
    assert wrong.database.mapping_count() == 6
    assert wrong.database.get_mapping()["417"] == "t.ashby"


# -- B3: a configuration error reaches the log operators tail ---------------------


def write_broken_env(folder: Path) -> Path:
    env_file = folder / ".env"
    env_file.write_text(
        "ATHOC_SERVER_URL=http://127.0.0.1:9\nPOLL_INTERVAL_SECONDS=ten\n",
        encoding="utf-8",
    )
    return env_file


def test_configuration_error_is_appended_to_the_log_when_its_folder_exists(
    tmp_path, monkeypatch, capsys
):
    clean_environment(monkeypatch)
    env_file = write_broken_env(tmp_path)
    (tmp_path / "logs").mkdir()
    log_file = tmp_path / "logs" / LOG_FILE_NAME
    log_file.write_text("an earlier line\n", encoding="utf-8")

    status = cli.main(["--env-file", str(env_file), "--once"])

    assert status == cli.EXIT_CONFIG
    assert "POLL_INTERVAL_SECONDS" in capsys.readouterr().err
    lines = log_file.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "an earlier line"
    assert " ERROR bobosync.cli: configuration error: " in lines[1]
    assert all(" ERROR bobosync.cli: " in line for line in lines[1:])
    problems = [line for line in lines[1:] if "POLL_INTERVAL_SECONDS" in line]
    assert len(problems) == 1 and problems[0].endswith("got 'ten'")


def test_configuration_error_creates_no_log_folder(tmp_path, monkeypatch, capsys):
    clean_environment(monkeypatch)
    env_file = write_broken_env(tmp_path)

    status = cli.main(["--env-file", str(env_file), "--once"])

    assert status == cli.EXIT_CONFIG
    assert "POLL_INTERVAL_SECONDS" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


# -- B4: the CSV-folder lock never creates CSV_DIRECTORY ---------------------------


def test_b24b_once_with_a_missing_csv_directory_exits_1_and_never_creates_it(
    tmp_path, simulator
):
    root = tmp_path / "site"
    missing = tmp_path / "share" / "in"
    env_file = write_env(
        tmp_path / "share.env", root, simulator.url, simulator, CSV_DIRECTORY=missing
    )

    result = run_bobosync(Site(root, env_file), "--once")

    assert result.returncode == 1, result.stderr
    assert not missing.exists() and not missing.parent.exists()
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert f"CSV_DIRECTORY {missing} is not accessible (" in errors[0]


# -- B5: cleanup --hours N also updates what bobosync remembers --------------------


def duty_values(db_path: Path) -> dict[str, str | None]:
    with sqlite3.connect(db_path) as connection:
        rows = connection.execute("SELECT login_id, duty_value FROM employee_state")
        return dict(rows.fetchall())


@pytest.fixture
def site(tmp_path, simulator) -> Site:
    root = tmp_path / "site"
    return Site(root, write_env(tmp_path / "site.env", root, simulator.url, simulator))


def test_cleanup_command_marks_the_cleared_workers_in_the_database(site, simulator):
    copy_case(N04, site.inbox)
    first = run_bobosync(site, "--clock-start", CASE_CLOCK, "--once")
    assert first.returncode == 0, first.stderr
    assert duty_values(site.db_path) == {
        "t.ashby": N04_SENT["t.ashby"],
        "r.okafor": N04_SENT["r.okafor"],
    }

    result = run_bobosync(site, "--clock-start", CASE_CLOCK, "cleanup", "--hours", "1")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cleared 2 users"
    assert duty_values(site.db_path) == {"t.ashby": None, "r.okafor": None}
    assert simulator.attribute("t.ashby", DUTY) is None
    assert "Auto-cleanup: cleared 2 users" in site.log_text()


# -- B6: rejected rows are reported once, not on every retry -----------------------


def test_rejected_row_warnings_of_a_retried_file_come_on_the_first_attempt_only(
    make_processor, simulator, caplog, clock
):
    processor = make_processor(max_retry_attempts=3)
    simulator.sync_error_for("t.ashby", "Attribute On-Duty-DTG: invalid value")
    write_bobo(
        processor.settings.csv_directory,
        "BOBO_retry.csv",
        [
            bobo_row("BON", "00417", datetime(2025, 3, 14, 22, 0)),
            bobo_row("XXX", "00009", datetime(2025, 3, 14, 22, 1)),
        ],
    )
    rejected = "row rejected: BOBO_retry.csv:2 column=Transaction_Type"

    _, first = tick(processor, simulator, caplog)
    clock.advance(60)
    _, second = tick(processor, simulator, caplog)

    assert processor.database.get_attempts("BOBO_retry.csv") == 2
    assert sum(m.startswith(rejected) for m in at_level(first, logging.WARNING)) == 1
    assert not any(m.startswith(rejected) for m in at_level(second, logging.WARNING))
    assert sum(m.startswith(rejected) for m in at_level(second, logging.DEBUG)) == 1


# -- B7: the runbook's constructors log to the .env's log file ---------------------


def test_runbook_constructors_log_to_the_log_file_of_the_env(
    installed,  # noqa: F811 (the fixture imported from test_cli)
    simulator,
):
    simulator.set_attribute("s.varga", DUTY, "01/01/2024 08:00:00")
    copy_case(N04, installed.inbox)

    mapping = run_runbook(
        installed,
        "-c",
        "from bobo_processor import BOBOProcessor; p = BOBOProcessor(); "
        "p.sync_worker_mappings(); p.run_tick()",
    )
    cleanup = run_runbook(
        installed,
        "-c",
        "from athoc_client import AtHocClient; c = AtHocClient(); "
        "print(c.clear_old_duty_status('On-Duty-DTG', 24))",
    )

    assert mapping.returncode == 0, mapping.stderr
    assert cleanup.returncode == 0, cleanup.stderr
    log = installed.log_text()
    assert "Worker mapping refreshed: users=6 mapped=6" in log
    assert "Batch processing completed: processed=1" in log
    assert "Auto-cleanup: cleared 1 users" in log
    assert "Authentication successful" in log


# -- B8: urllib3's retry chatter stays out of the console and the log --------------


def test_once_against_a_closed_port_prints_one_error_and_no_urllib3_retries(
    tmp_path, simulator
):
    root = tmp_path / "site"
    url = f"http://127.0.0.1:{closed_port()}"
    site = Site(root, write_env(tmp_path / "down.env", root, url, simulator))
    copy_case(N04, site.inbox)

    result = run_bobosync(site, "--clock-start", CASE_CLOCK, "--once")

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert url in errors[0]
    assert "Retrying (" not in result.stderr
    assert "Retrying (" not in site.log_text()
    assert "WARNING urllib3" not in result.stderr + site.log_text()


# -- results, files and retries ------------------------------------------------------


def test_400_rejecting_the_sync_request_counts_an_attempt_and_keeps_the_file(
    make_processor, simulator, caplog, clock
):
    processor = make_processor(max_retry_attempts=3)
    inbox = processor.settings.csv_directory
    copy_case(N04, inbox)
    simulator.fail_next("sync", 400, body={"Message": "The request is invalid."})

    report, _ = tick(processor, simulator, caplog)

    assert (report.outage, report.files_retrying) == ("", 1)
    assert processor.database.get_attempts(N04) == 1
    assert processor.database.processing_log(N04)[-1].status == "retry"
    assert csv_names(inbox) == [N04]

    clock.advance(60)
    report, _ = tick(processor, simulator, caplog)

    assert report.is_success, report.outage
    assert sent_in(simulator) == N04_SENT
    assert folder_names(processor.settings.processed_directory) == [N04]


# -- the mapping refresh ----------------------------------------------------------


def test_mapping_refresh_reads_user_attributes_and_rewrites_a_changed_id(
    make_processor, simulator
):
    processor = make_processor(user_attributes=("Department",))
    processor.sync_worker_mappings()
    simulator.set_attribute("t.ashby", COLLAR, None)
    simulator.add_user("t.ashby2", **{COLLAR: "00417"})
    simulator.reset_records()

    result = processor.sync_worker_mappings()

    fields = {q["Fields"] for q in simulator.search_queries if q["Criteria"] is None}
    assert fields == {f"LOGIN_ID,{COLLAR},Department"}
    assert result is not None
    assert (result.added, result.changed, result.removed) == (0, 1, 0)
    assert processor.database.get_mapping()["417"] == "t.ashby2"
    assert processor.database.mapping_count() == 6


def test_unknown_id_is_looked_up_at_most_once_an_hour_and_synced_when_added(
    make_processor, simulator, caplog, clock
):
    processor = make_processor()
    inbox = processor.settings.csv_directory
    start = datetime(2025, 3, 14, 22, 0)
    write_bobo(inbox, "BOBO_1.csv", [bobo_row("BON", "123456", start)])
    tick(processor, simulator, caplog)
    assert len(lookup_queries(simulator, "123456")) == 1

    clock.advance(30 * 60)
    write_bobo(
        inbox, "BOBO_2.csv", [bobo_row("BON", "123456", start + timedelta(minutes=1))]
    )
    tick(processor, simulator, caplog)
    assert lookup_queries(simulator, "123456") == []

    simulator.add_user("n.newcomer", **{COLLAR: "123456"})
    clock.advance(31 * 60)
    late = start + timedelta(minutes=2)
    write_bobo(inbox, "BOBO_3.csv", [bobo_row("BON", "123456", late)])
    report, _ = tick(processor, simulator, caplog)

    assert report.is_success, report.outage
    assert len(lookup_queries(simulator, "123456")) == 1
    assert simulator.attribute("n.newcomer", DUTY) == "14/03/2025 22:02:00"


# -- auto-cleanup ----------------------------------------------------------------


def test_sweep_runs_at_start_up_then_once_per_cleanup_sweep_minutes(
    make_processor, simulator, caplog, clock
):
    processor = make_processor(cleanup_sweep_minutes=60)
    swept = []
    for _ in range(5):  # ticks at 0, 20, 40, 60 and 80 minutes
        tick(processor, simulator, caplog)
        swept.append(len(sweep_queries(simulator)) > 0)
        clock.advance(20 * 60)

    assert swept == [True, False, False, True, False]


def test_sweep_minutes_zero_sweeps_on_every_tick(
    make_processor, simulator, caplog, clock
):
    processor = make_processor(cleanup_sweep_minutes=0)
    swept = []
    for _ in range(3):
        tick(processor, simulator, caplog)
        swept.append(len(sweep_queries(simulator)) > 0)
        clock.advance(60)

    assert swept == [True, True, True]


def test_sweep_clears_in_chunks_with_the_usual_classification(
    make_processor, simulator, caplog
):
    old_logins = ["k.moreau", "m.lindqvist", "p.nandi", "r.okafor", "t.ashby"]
    for login in old_logins:
        simulator.set_attribute(login, DUTY, OLD_VALUE)
    simulator.permission_denied_for(["p.nandi"])
    processor = make_processor(sync_chunk_size=2)

    report, records = tick(processor, simulator, caplog)

    assert report.is_success, report.outage
    assert [len(call) for call in simulator.sync_calls] == [2, 2, 1]
    assert [user[DUTY] for call in simulator.sync_calls for user in call] == [""] * 5
    assert simulator.attribute("p.nandi", DUTY) == OLD_VALUE
    assert any("p.nandi" in m for m in at_level(records, logging.WARNING))
    cleanup = [m for m in at_level(records, logging.INFO) if "Auto-cleanup" in m]
    assert len(cleanup) == 1 and cleanup[0].startswith("Auto-cleanup: cleared 5 users")


# -- ATHOC_DATETIME_FORMAT ---------------------------------------------------------


def test_athoc_datetime_format_is_used_to_write_search_and_read_values(
    tmp_path, clock, caplog
):
    iso = "%Y-%m-%d %H:%M:%S"
    with AtHocSimulator(CASE_USERS, clock=clock, datetime_format=iso) as simulator:
        simulator.set_attribute("k.moreau", DUTY, "2025-03-13 10:00:00")
        simulator.set_attribute("p.nandi", DUTY, "2025-03-14 20:00:00")
        settings = settings_for(tmp_path, simulator, athoc_datetime_format=iso)
        copy_case(N04, settings.csv_directory)
        client = AtHocClient(settings, clock=clock, retry_backoff_seconds=0.0)
        processor = BOBOProcessor(settings, client=client, clock=clock)
        try:
            report, _ = tick(processor, simulator, caplog)
        finally:
            processor.close()

        assert report.is_success, report.outage
        assert simulator.sent_updates() == {
            "t.ashby": "2025-03-14 07:15:02",
            "r.okafor": "2025-03-14 07:20:10",
            "k.moreau": "",
        }
        (sweep,) = sweep_queries(simulator)
        assert "'2025-03-13 23:00:00'" in sweep["Criteria"]
        assert simulator.attribute("p.nandi", DUTY) == "2025-03-14 20:00:00"


# -- which event wins: the documented limit of naive local times --------------------


def entry_of(line: str) -> BOBOEntry:
    return BOBOEntry.from_csv_row(line.split(","), source_file="x.csv")


def test_events_in_the_repeated_autumn_hour_compare_by_wall_clock_time():
    # 27/10/2024 in Europe: 01:00-02:00 happens twice. The book-off at 01:10
    # of the second pass is later in real time, yet 01:50 wins by wall clock.
    first_pass = entry_of(bobo_row("BON", "00417", datetime(2024, 10, 27, 1, 50)))
    second_pass = entry_of(bobo_row("BOF", "00417", datetime(2024, 10, 27, 1, 10)))

    winners = latest_per_employee([(0, first_pass), (1, second_pass)])

    assert winners["417"] is first_pass


# -- retries: capped exponential back-off with jitter --------------------------------


def backoff_after(failures: int, backoff_seconds: float = 1.0) -> float:
    retry = build_retry(10, backoff_seconds, 120.0)
    history = tuple(
        RequestHistory("POST", "/sync", None, 503, None) for _ in range(failures)
    )
    return retry.new(history=history).get_backoff_time()


@pytest.mark.parametrize(
    ("failures", "lowest", "highest"),
    [
        (2, 2.0, 3.0),
        (3, 4.0, 5.0),
        (4, 8.0, 9.0),
        (12, RETRY_BACKOFF_MAX_SECONDS, RETRY_BACKOFF_MAX_SECONDS),
    ],
)
def test_retry_backoff_doubles_with_jitter_up_to_the_cap(failures, lowest, highest):
    delays = {backoff_after(failures) for _ in range(20)}

    assert all(lowest <= delay <= highest for delay in delays), delays


def test_retry_covers_connection_errors_429_and_5xx_for_post_but_not_4xx():
    retry = build_retry(3, 0.0, 120.0)

    assert (retry.connect, retry.read, retry.status) == (3, 3, 3)
    for status in (429, 500, 502, 503, 504):
        assert retry.is_retry("POST", status)
    for status in (400, 401, 403, 404):
        assert not retry.is_retry("POST", status)


def test_auto_cleanup_runs_while_the_csv_directory_is_unreachable(
    make_processor, simulator, clock, caplog
):
    processor = make_processor()
    copy_case("N04_with_header.csv", processor.settings.csv_directory)
    assert processor.run_tick().is_success
    shutil.rmtree(processor.settings.csv_directory)  # the share goes away

    clock.advance(25 * 3600)
    simulator.reset_records()
    with caplog.at_level(logging.INFO, logger="bobosync"):
        report = processor.run_tick()

    assert not report.is_success
    assert sent_in(simulator) == {"t.ashby": "", "r.okafor": ""}
    assert "Auto-cleanup: cleared 2 users" in caplog.text
    assert "CSV_DIRECTORY" in caplog.text
    assert not processor.settings.csv_directory.exists()


def test_same_refusal_is_warned_once_an_hour_not_every_retry(
    make_processor, simulator, clock, caplog
):
    processor = make_processor(max_retry_attempts=10)
    simulator.sync_error_for("t.ashby", "Attribute On-Duty-DTG: invalid value")
    copy_case("N04_with_header.csv", processor.settings.csv_directory)

    def refusal_warnings() -> int:
        return sum(
            1
            for r in caplog.records
            if r.levelno == logging.WARNING and r.getMessage().startswith("sync failed")
        )

    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        processor.run_tick()
        clock.advance(60)
        processor.run_tick()
        assert refusal_warnings() == 1
        clock.advance(3600)
        processor.run_tick()
        assert refusal_warnings() == 2


def test_start_up_logs_paths_one_per_line_and_the_rest_on_one_line(
    site, simulator, caplog
):
    with caplog.at_level(logging.INFO, logger="bobosync"):
        assert cli.main(["--env-file", str(site.env_file), "--once"]) == 0
    lines = [m for m in caplog.messages if m.startswith("setting: ")]
    assert len(lines) == len(cli.OWN_LINE_SETTINGS) + 1
    assert any(line.startswith("setting: CSV_DIRECTORY=") for line in lines)
    assert "MAX_RETRY_ATTEMPTS=3" in lines[-1] and "PASSWORD=***" in lines[-1]
