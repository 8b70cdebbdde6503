"""What months of running meet: stuck inboxes, moved ids, renamed users,
clocks that go back, a database deleted underneath, half-working AtHoc."""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timedelta

import pytest

from bobosync.database import Tracking
from bobosync.worker_mapping import mapping_refresh_due
from tests.conftest import COLLAR, DUTY, copy_case, folder_names, sent_in

N04 = "N04_with_header.csv"
N04_SENT = {"t.ashby": "14/03/2025 07:15:02", "r.okafor": "14/03/2025 07:20:10"}


def bobo_line(kind: str, employee_id: str, when: datetime) -> bytes:
    return (
        f"{kind},{employee_id},7{employee_id},{when:%Y%m%d},{when:%H%M%S},"
        f"{when:%Y%m%d%H%M%S},1,,,\r\n"
    ).encode()


def drop(folder, name: str, *lines: bytes, age_seconds: float = 0) -> None:
    path = folder / name
    path.write_bytes(b"".join(lines))
    if age_seconds:
        stamp = path.stat().st_mtime - age_seconds
        os.utime(path, (stamp, stamp))


def test_files_kept_in_place_do_not_starve_new_files_of_the_batch(
    make_processor, simulator
):
    processor = make_processor(move_processed_files=False, batch_size=2)
    inbox = processor.settings.csv_directory
    when = datetime(2025, 3, 14, 8, 0)
    for index in range(3):
        employee = ["00417", "04170", "00009"][index]
        drop(inbox, f"old{index}.csv", bobo_line("BON", employee, when), age_seconds=60)
    for _ in range(2):
        assert processor.run_tick().is_success

    simulator.reset_records()
    drop(inbox, "zz_new.csv", bobo_line("BOF", "00417", when + timedelta(hours=1)))
    assert processor.run_tick().is_success

    assert sent_in(simulator) == {"t.ashby": ""}


def test_user_missing_from_the_answer_holds_only_its_own_file(
    make_processor, simulator, caplog
):
    processor = make_processor()
    inbox = processor.settings.csv_directory
    when = datetime(2025, 3, 14, 8, 0)
    drop(inbox, "a.csv", bobo_line("BON", "00417", when), age_seconds=60)
    drop(inbox, "b.csv", bobo_line("BON", "00422", when))
    simulator.omit_from_sync_answer(["s.varga"])

    report = processor.run_tick()

    assert not report.is_success  # AtHoc's fault: logged and backed off
    assert folder_names(processor.settings.processed_directory) == ["a.csv"]
    assert folder_names(inbox) == ["b.csv"]
    assert processor.database.get_attempts("b.csv") == 0

    simulator.clear_faults()
    simulator.omit_from_sync_answer([])
    simulator.reset_records()
    assert processor.run_tick().is_success
    assert sent_in(simulator) == {"s.varga": "14/03/2025 08:00:00"}
    assert folder_names(inbox) == []


def test_cleanup_leaves_a_user_another_employee_booked_on_since(
    make_processor, simulator, clock
):
    processor = make_processor()
    inbox = processor.settings.csv_directory
    drop(inbox, "a.csv", bobo_line("BON", "00417", datetime(2025, 3, 14, 8, 0)))
    assert processor.run_tick().is_success

    # t.ashby and r.okafor swap Collar-Numbers; next day's refresh sees it.
    simulator.set_attribute("t.ashby", COLLAR, "04170")
    simulator.set_attribute("r.okafor", COLLAR, "00417")
    clock.set(datetime(2025, 3, 15, 6, 30))
    processor.sync_worker_mappings()
    drop(inbox, "b.csv", bobo_line("BON", "04170", datetime(2025, 3, 15, 7, 0)))
    assert processor.run_tick().is_success

    clock.set(datetime(2025, 3, 15, 8, 1))
    simulator.reset_records()
    assert processor.run_tick().is_success

    assert "t.ashby" not in sent_in(simulator)
    assert simulator.attribute("t.ashby", DUTY) == "15/03/2025 07:00:00"


def test_user_not_found_is_not_applied_and_its_id_is_looked_up_again(
    make_processor, simulator, clock
):
    processor = make_processor()
    inbox = processor.settings.csv_directory
    processor.sync_worker_mappings()
    simulator.remove_user("t.ashby")  # renamed in AtHoc: same collar, new login
    simulator.add_user("tom.ashby", **{COLLAR: "00417", DUTY: None})
    line = bobo_line("BON", "00417", datetime(2025, 3, 14, 9, 0))
    drop(inbox, "a.csv", line)
    assert processor.run_tick().is_success  # "not found" is expected
    assert processor.database.get_last_events(["417"]) == {}

    clock.advance(3600)
    drop(inbox, "again.csv", line)
    simulator.reset_records()
    assert processor.run_tick().is_success

    assert sent_in(simulator) == {"tom.ashby": "14/03/2025 09:00:00"}


@pytest.mark.parametrize(
    "last_success, now, due",
    [
        (datetime(2025, 6, 1, 3, 0), datetime(2025, 3, 14, 23, 0), True),
        (datetime(2025, 3, 14, 3, 0), datetime(2025, 3, 14, 23, 0), False),
    ],
    ids=["clock went back", "done today"],
)
def test_map_refresh_is_due_when_the_last_success_is_in_the_future(
    last_success, now, due
):
    tracking = Tracking("mapping_refresh", last_success, last_success, "success", 0)
    assert mapping_refresh_due(tracking, now, 2, 1) is due


@pytest.mark.skipif(sys.platform == "win32", reason="Windows refuses the delete")
def test_database_deleted_while_running_is_an_outage_naming_db_path(
    make_processor, simulator, caplog
):
    processor = make_processor()
    copy_case(N04, processor.settings.csv_directory)
    processor.settings.db_path.unlink()

    with caplog.at_level(logging.ERROR, logger="bobosync"):
        report = processor.run_tick()

    assert not report.is_success
    assert f"DB_PATH {processor.settings.db_path} was deleted" in caplog.text
    assert simulator.sync_calls == []
    assert folder_names(processor.settings.csv_directory) == [N04]


def test_failing_user_search_does_not_stop_the_sending(make_processor, simulator):
    processor = make_processor()
    processor.sync_worker_mappings()
    processor.database.record_tracking(
        "mapping_refresh", success=False, at=datetime(2025, 3, 14, 22, 0)
    )
    simulator.fail_always("search", 500)
    copy_case(N04, processor.settings.csv_directory)

    report = processor.run_tick()

    assert not report.is_success  # the refresh and the sweep failed
    assert sent_in(simulator) == N04_SENT
    assert folder_names(processor.settings.processed_directory) == [N04]


def test_failed_sweep_waits_its_interval_instead_of_failing_every_tick(
    make_processor, simulator, clock
):
    processor = make_processor()
    processor.sync_worker_mappings()
    simulator.fail_always("search", 500)
    assert not processor.run_tick().is_success

    clock.advance(60)
    simulator.reset_records()
    assert processor.run_tick().is_success
    assert simulator.search_queries == []


def test_new_file_under_an_old_name_starts_with_no_attempts(make_processor, simulator):
    processor = make_processor(max_retry_attempts=3)
    inbox = processor.settings.csv_directory
    simulator.sync_error_for("t.ashby", "invalid value")
    copy_case(N04, inbox, as_name="BOBO_daily.csv")
    processor.run_tick()
    processor.run_tick()
    assert processor.database.get_attempts("BOBO_daily.csv") == 2

    (inbox / "BOBO_daily.csv").unlink()  # an operator removed it
    processor.run_tick()
    copy_case(N04, inbox, as_name="BOBO_daily.csv")
    processor.run_tick()

    assert processor.database.get_attempts("BOBO_daily.csv") == 1
    assert folder_names(inbox) == ["BOBO_daily.csv"]
