"""The daemon's tick end to end: simulator over HTTP, real files, real SQLite.

Each test drives BOBOProcessor.run_tick() against the simulator on loopback
with the injected ManualClock (14/03/2025 23:00:00 at the start), so token
lifetimes, the daily mapping refresh and auto-cleanup move without sleeping.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path

import pytest

from bobosync.bobo_processor import MAPPING_TRACKING
from bobosync.simulator import AtHocSimulator
from tests.conftest import (
    CASE_USERS,
    COLLAR,
    DUTY,
    copy_case,
    folder_names,
    sent_in,
    settings_for,
)

N04 = "N04_with_header.csv"
N04_SENT = {"t.ashby": "14/03/2025 07:15:02", "r.okafor": "14/03/2025 07:20:10"}
CASE_MAPPING = {
    "417": "t.ashby",
    "4170": "r.okafor",
    "9": "m.lindqvist",
    "422": "s.varga",
    "1234": "k.moreau",
    "88": "p.nandi",
}
INVALID_VALUE = "Attribute On-Duty-DTG: invalid value for a Date Time"
OLD_VALUE = "13/03/2025 10:00:00"  # older than 24 h at 14/03/2025 23:00
RECENT_VALUE = "14/03/2025 20:00:00"
REFRESHED_ALL_SIX = (
    "Worker mapping refreshed: users=6 mapped=6 added=6 changed=0 removed=0 ambiguous=0"
)


def write_bobo(folder: Path, name: str, rows: list[tuple[str, str, str]]) -> Path:
    """A BOBO file of (Transaction_Type, Employee_ID, 'YYYYMMDD HHMMSS') rows."""
    lines = []
    for kind, collar, when in rows:
        day, time_of_day = when.split()
        lines.append(
            f"{kind},{collar},7{collar},{day},{time_of_day},{day}{time_of_day},1,,,"
        )
    path = folder / name
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def run_tick(processor, simulator, caplog, *, is_outage=False):
    """One tick from fresh records; returns its log records."""
    simulator.reset_records()
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        report = processor.run_tick()
    assert report.is_success is not is_outage, report.outage
    return list(caplog.records)


def messages(records, level: int) -> list[str]:
    return [r.getMessage() for r in records if r.levelno == level]


def refresh_lines(records) -> list[str]:
    return [
        m for m in messages(records, logging.INFO) if "Worker mapping refreshed" in m
    ]


def sweep_queries(simulator) -> list[dict]:
    return [q for q in simulator.search_queries if DUTY in (q["Criteria"] or "")]


def refresh_offsets(simulator) -> list[str]:
    """The Offset of every page the mapping refresh asked for."""
    return [
        q["Offset"]
        for q in simulator.search_queries
        if q["Criteria"] is None and COLLAR in (q["Fields"] or "")
    ]


# -- retries and per-user results --------------------------------------------


def test_real_user_error_keeps_the_file_and_retries_it_next_tick(
    make_processor, simulator, caplog
):
    processor = make_processor(max_retry_attempts=3)
    settings = processor.settings
    copy_case(N04, settings.csv_directory)
    simulator.sync_error_for("r.okafor", INVALID_VALUE)

    run_tick(processor, simulator, caplog)

    assert sent_in(simulator) == N04_SENT
    assert folder_names(settings.csv_directory) == [N04]
    assert processor.database.get_attempts(N04) == 1
    assert processor.database.processing_log(N04)[-1].status == "retry"
    assert simulator.attribute("t.ashby", DUTY) == "14/03/2025 07:15:02"

    run_tick(processor, simulator, caplog)

    # t.ashby was confirmed in the first tick: only the failed user again.
    assert sent_in(simulator) == {"r.okafor": "14/03/2025 07:20:10"}
    assert processor.database.get_attempts(N04) == 2
    assert folder_names(settings.csv_directory) == [N04]


def test_max_retry_attempts_moves_the_file_to_failed_with_its_reason(
    make_processor, simulator, caplog
):
    processor = make_processor(max_retry_attempts=3)
    settings = processor.settings
    copy_case(N04, settings.csv_directory)
    simulator.sync_error_for("r.okafor", INVALID_VALUE)

    for _ in range(2):
        run_tick(processor, simulator, caplog)
        assert folder_names(settings.csv_directory) == [N04]
    records = run_tick(processor, simulator, caplog)

    assert sent_in(simulator) == {"r.okafor": "14/03/2025 07:20:10"}
    assert folder_names(settings.csv_directory) == []
    assert folder_names(settings.failed_files_directory) == [N04]
    assert folder_names(settings.processed_directory) == []
    statuses = [entry.status for entry in processor.database.processing_log(N04)]
    assert statuses == ["retry", "retry", "failed"]
    final = processor.database.processing_log(N04)[-1]
    assert "r.okafor" in final.message and INVALID_VALUE in final.message
    assert final.failed_users == 1
    errors = messages(records, logging.ERROR)
    assert len(errors) == 1 and N04 in errors[0] and "attempts=3" in errors[0]


def test_user_gone_from_athoc_is_expected_and_the_file_is_processed(
    make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    run_tick(processor, simulator, caplog)  # the mapping refresh maps t.ashby
    simulator.remove_user("t.ashby")
    copy_case(N04, settings.csv_directory)

    records = run_tick(processor, simulator, caplog)

    assert sent_in(simulator) == N04_SENT
    assert (
        "Expected: User t.ashby not found in AtHoc (will be treated as success)"
        in messages(records, logging.INFO)
    )
    assert messages(records, logging.WARNING) == []
    assert folder_names(settings.processed_directory) == [N04]
    assert processor.database.get_attempts(N04) == 0
    assert simulator.created_users == []


def test_permission_denied_is_success_with_a_warning(make_processor, simulator, caplog):
    processor = make_processor()
    settings = processor.settings
    copy_case(N04, settings.csv_directory)
    simulator.permission_denied_for(["r.okafor"])

    records = run_tick(processor, simulator, caplog)

    warnings = messages(records, logging.WARNING)
    assert len(warnings) == 1
    assert "permission denied" in warnings[0] and "r.okafor" in warnings[0]
    assert folder_names(settings.processed_directory) == [N04]
    assert processor.database.get_attempts(N04) == 0


def test_user_missing_from_the_sync_answer_is_not_confirmed_and_sent_again(
    make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    copy_case(N04, settings.csv_directory)
    simulator.omit_from_sync_answer(["r.okafor"])

    records = run_tick(processor, simulator, caplog, is_outage=True)

    # The server's fault, not the file's (R7): no attempt is counted.
    assert any("r.okafor" in m for m in messages(records, logging.ERROR))
    assert folder_names(settings.csv_directory) == [N04]
    assert processor.database.get_attempts(N04) == 0

    simulator.clear_faults()
    run_tick(processor, simulator, caplog)

    assert sent_in(simulator) == {"r.okafor": "14/03/2025 07:20:10"}
    assert folder_names(settings.processed_directory) == [N04]


# -- the access token (EXPECTED.md B15) ----------------------------------------


def drop_three_copies(folder: Path) -> list[str]:
    names = ["BOBO_1.csv", "BOBO_2.csv", "BOBO_3.csv"]
    for index, name in enumerate(names):
        copy_case(N04, folder, as_name=name, mtime=1_700_000_000 + index)
    return names


@pytest.mark.parametrize(
    ("lifetime_seconds", "advance_seconds"),
    [(3600, 3590), (120, 115), (120, 500)],
    ids=["B15", "short-token-near-expiry", "short-token-expired-between-ticks"],
)
def test_b15_token_is_renewed_ahead_of_expiry_without_a_401(
    lifetime_seconds, advance_seconds, make_processor, simulator, caplog, clock
):
    simulator.token_lifetime_seconds = lifetime_seconds
    processor = make_processor()
    settings = processor.settings
    run_tick(processor, simulator, caplog)
    grants = simulator.token_grants
    clock.advance(advance_seconds)
    names = drop_three_copies(settings.csv_directory)

    run_tick(processor, simulator, caplog)

    assert grants + simulator.token_grants == ["password", "refresh_token"]
    assert simulator.unauthorized_count == 0
    assert sent_in(simulator) == N04_SENT
    assert folder_names(settings.processed_directory) == names


def test_b15a_revoked_token_gets_one_new_token_and_one_repeat(
    make_processor, simulator, caplog, clock
):
    processor = make_processor()
    settings = processor.settings
    run_tick(processor, simulator, caplog)
    clock.advance(1800)
    simulator.revoke_tokens()
    names = drop_three_copies(settings.csv_directory)

    run_tick(processor, simulator, caplog)

    assert simulator.unauthorized_count == 1
    assert simulator.token_grants == ["password"]
    first, repeat = simulator.sync_calls
    assert first == repeat
    assert {user["LOGIN_ID"]: user[DUTY] for user in first} == N04_SENT
    assert folder_names(settings.processed_directory) == names
    assert [processor.database.get_attempts(name) for name in names] == [0, 0, 0]


# -- auto-cleanup --------------------------------------------------------------


def test_auto_cleanup_sweep_clears_old_values_across_several_pages(
    make_processor, simulator, caplog
):
    old_logins = ["t.ashby", "r.okafor", "m.lindqvist", "s.varga", "k.moreau"]
    for login in old_logins:
        simulator.set_attribute(login, DUTY, OLD_VALUE)
    simulator.set_attribute("p.nandi", DUTY, RECENT_VALUE)
    processor = make_processor(search_page_size=2, search_offset_mode="record")

    records = run_tick(processor, simulator, caplog)

    assert [q["Offset"] for q in sweep_queries(simulator)] == ["0", "2", "4"]
    assert sent_in(simulator) == {login: "" for login in old_logins}
    assert [simulator.attribute(login, DUTY) for login in old_logins] == [None] * 5
    assert simulator.attribute("p.nandi", DUTY) == RECENT_VALUE
    cleanup_lines = [m for m in messages(records, logging.INFO) if "Auto-cleanup" in m]
    assert len(cleanup_lines) == 1
    assert cleanup_lines[0].startswith("Auto-cleanup: cleared 5 users")


def test_local_cleanup_clears_a_booked_on_worker_without_a_sweep(
    make_processor, simulator, caplog, clock
):
    processor = make_processor(cleanup_sweep_minutes=100_000)
    copy_case(N04, processor.settings.csv_directory)
    run_tick(processor, simulator, caplog)
    assert simulator.attribute("t.ashby", DUTY) == "14/03/2025 07:15:02"

    clock.set(datetime(2025, 3, 15, 7, 16, 0))  # t.ashby's book-on is 24 h old
    records = run_tick(processor, simulator, caplog)

    assert sweep_queries(simulator) == []
    assert simulator.sync_calls == [[{"LOGIN_ID": "t.ashby", DUTY: ""}]]
    assert "Auto-cleanup: cleared 1 users" in " ".join(messages(records, logging.INFO))
    assert simulator.attribute("r.okafor", DUTY) == "14/03/2025 07:20:10"

    clock.set(datetime(2025, 3, 15, 7, 21, 0))
    run_tick(processor, simulator, caplog)

    assert simulator.sync_calls == [[{"LOGIN_ID": "r.okafor", DUTY: ""}]]
    clock.advance(600)
    run_tick(processor, simulator, caplog)
    assert simulator.sync_calls == []


# -- the mapping refresh ---------------------------------------------------------


@pytest.mark.parametrize(
    ("offset_mode", "offsets"),
    [("record", ["0", "2", "4"]), ("page", ["0", "1", "2"])],
)
def test_mapping_refresh_reads_every_page_in_either_offset_mode(
    offset_mode, offsets, make_processor, clock, tmp_path, caplog
):
    with AtHocSimulator(CASE_USERS, clock=clock, offset_mode=offset_mode) as paged:
        settings = settings_for(
            tmp_path / "paged",
            paged,
            search_page_size=2,
            search_offset_mode=offset_mode,
        )
        settings.csv_directory.mkdir(parents=True)
        processor = make_processor(settings)

        records = run_tick(processor, paged, caplog)

        assert refresh_offsets(paged) == offsets
        assert {q["Limit"] for q in paged.search_queries} == {"2"}
    assert processor.database.get_mapping() == CASE_MAPPING
    assert refresh_lines(records) == [REFRESHED_ALL_SIX]


def test_mapping_refresh_with_auto_offset_mode_against_a_page_server(
    make_processor, clock, tmp_path, caplog
):
    with AtHocSimulator(CASE_USERS, clock=clock, offset_mode="page") as paged:
        settings = settings_for(tmp_path / "auto", paged, search_page_size=2)
        settings.csv_directory.mkdir(parents=True)
        processor = make_processor(settings)

        run_tick(processor, paged, caplog)

        assert refresh_offsets(paged) == ["0", "1", "2"]
    assert processor.database.get_mapping() == CASE_MAPPING


def test_mapping_refresh_runs_daily_after_sync_hour_once_a_day(
    make_processor, simulator, caplog, clock
):
    processor = make_processor(sync_hour=2)
    ticks = [
        (datetime(2025, 3, 14, 23, 0), 1),  # never done: at once
        (datetime(2025, 3, 14, 23, 30), 0),
        (datetime(2025, 3, 15, 1, 59), 0),  # before SYNC_HOUR
        (datetime(2025, 3, 15, 2, 1), 1),  # after SYNC_HOUR, first today
        (datetime(2025, 3, 15, 14, 0), 0),  # not again the same day
        (datetime(2025, 3, 16, 2, 0), 1),  # the next day
    ]

    counts = []
    for when, _ in ticks:
        clock.set(when)
        counts.append(len(refresh_lines(run_tick(processor, simulator, caplog))))

    assert counts == [expected for _, expected in ticks]
    tracking = processor.database.get_tracking(MAPPING_TRACKING)
    assert tracking.last_success_at == datetime(2025, 3, 16, 2, 0)


def test_sync_mappings_false_never_refreshes(make_processor, simulator, caplog, clock):
    processor = make_processor(sync_mappings=False, search_offset_mode="record")

    for when in (datetime(2025, 3, 14, 23, 0), datetime(2025, 3, 15, 3, 0)):
        clock.set(when)
        records = run_tick(processor, simulator, caplog)
        assert refresh_lines(records) == []
        assert refresh_offsets(simulator) == []

    assert processor.database.get_tracking(MAPPING_TRACKING) is None
    assert processor.database.get_mapping() == {}


def test_mapping_safety_valve_keeps_mappings_when_half_would_go(
    make_processor, simulator, caplog
):
    processor = make_processor()
    run_tick(processor, simulator, caplog)
    for login in ("t.ashby", "r.okafor", "m.lindqvist", "s.varga"):
        simulator.remove_user(login)

    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        caplog.clear()
        processor.sync_worker_mappings()

    assert processor.database.get_mapping() == CASE_MAPPING
    warnings = messages(caplog.records, logging.WARNING)
    assert len(warnings) == 1
    assert "would remove 4 of 6 mappings; removing none (safety valve)" in warnings[0]


def test_mapping_refresh_removes_a_minority_of_gone_users(
    make_processor, simulator, caplog
):
    processor = make_processor()
    run_tick(processor, simulator, caplog)
    for login in ("t.ashby", "r.okafor", "m.lindqvist"):
        simulator.remove_user(login)

    processor.sync_worker_mappings()

    assert processor.database.get_mapping() == {
        "422": "s.varga",
        "1234": "k.moreau",
        "88": "p.nandi",
    }


def test_ambiguous_id_maps_neither_user_and_warns_naming_both(
    make_processor, simulator, caplog
):
    simulator.add_user("j.doe", **{COLLAR: "417", DUTY: None})
    processor = make_processor()

    records = run_tick(processor, simulator, caplog)

    mapping = processor.database.get_mapping()
    assert "417" not in mapping
    assert mapping == {
        key: login for key, login in CASE_MAPPING.items() if key != "417"
    }
    warnings = messages(records, logging.WARNING)
    assert len(warnings) == 1
    assert "ambiguous" in warnings[0]
    assert "j.doe" in warnings[0] and "t.ashby" in warnings[0]


@pytest.mark.parametrize("fault", ["empty_page", "total_users_too_high"])
def test_incomplete_mapping_read_leaves_the_map_unchanged(
    fault, make_processor, simulator, caplog
):
    processor = make_processor(search_page_size=2, search_offset_mode="record")
    run_tick(processor, simulator, caplog)
    # On the first page: a refresh that ignored completeness would add it.
    simulator.add_user("a.adams", **{COLLAR: "00555", DUTY: None})
    if fault == "empty_page":
        simulator.empty_page_at(1)
    else:
        simulator.set_total_users_override(10)

    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        caplog.clear()
        result = processor.sync_worker_mappings()

    assert result is None
    assert processor.database.get_mapping() == CASE_MAPPING
    warnings = messages(caplog.records, logging.WARNING)
    assert len(warnings) == 1 and "mapping refresh incomplete" in warnings[0]
    assert processor.database.get_tracking(MAPPING_TRACKING).last_status == "failed"


# -- quiet ticks, remembered files, chunks ------------------------------------------


def test_idle_tick_logs_no_info_line_and_calls_athoc_not_at_all(
    make_processor, simulator, caplog, clock
):
    processor = make_processor()
    run_tick(processor, simulator, caplog)  # start-up: refresh and sweep

    clock.advance(60)
    records = run_tick(processor, simulator, caplog)

    assert [r.getMessage() for r in records if r.levelno >= logging.INFO] == []
    assert simulator.token_grants == []
    assert simulator.search_queries == []
    assert simulator.sync_calls == []


def test_move_processed_files_false_remembers_processed_files(
    make_processor, simulator, caplog
):
    processor = make_processor(move_processed_files=False)
    settings = processor.settings
    path = copy_case(N04, settings.csv_directory)
    run_tick(processor, simulator, caplog)
    assert sent_in(simulator) == N04_SENT

    records = run_tick(processor, simulator, caplog)
    assert simulator.sync_calls == []
    assert not any("Batch processing" in m for m in messages(records, logging.INFO))

    write_bobo(settings.csv_directory, N04, [("BOF", "00417", "20250314 080000")])
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 10))
    run_tick(processor, simulator, caplog)

    assert sent_in(simulator) == {"t.ashby": ""}
    assert folder_names(settings.csv_directory) == [N04]
    assert folder_names(settings.processed_directory) == []


@pytest.mark.parametrize(("chunk_size", "calls"), [(2, 3), (1000, 1)])
def test_sync_chunk_size_splits_calls_with_the_same_result(
    chunk_size, calls, make_processor, simulator, caplog
):
    processor = make_processor(sync_chunk_size=chunk_size)
    rows = [
        ("BON", user[COLLAR], f"20250314 2000{i:02d}")
        for i, user in enumerate(CASE_USERS)
    ]
    write_bobo(processor.settings.csv_directory, "BOBO_six.csv", rows)

    run_tick(processor, simulator, caplog)

    assert len(simulator.sync_calls) == calls
    assert all(len(call) <= chunk_size for call in simulator.sync_calls)
    assert sent_in(simulator) == {
        user["LOGIN_ID"]: f"14/03/2025 20:00:{i:02d}"
        for i, user in enumerate(CASE_USERS)
    }
    assert folder_names(processor.settings.processed_directory) == ["BOBO_six.csv"]
