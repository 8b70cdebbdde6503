"""The inputs of ../shared/cases/ through the whole daemon.

Each test names its case id. The AtHoc side is the simulator over HTTP on
loopback, the files are real, the database is a real SQLite file, and the
clock reads 14/03/2025 23:00:00 as EXPECTED.md's conventions say.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime

import pytest

from bobosync.database import BOBODatabase
from tests.conftest import (
    CASES,
    DUTY,
    case_file,
    copy_case,
    folder_names,
    run_tick,
)


def rejected_lines(settings, name):
    path = settings.failed_files_directory / f"{name}.rejected.csv"
    if not path.exists():
        return None
    return path.read_text(encoding="utf-8").splitlines()


def backdate(seconds_ago: float) -> float:
    return time.time() - seconds_ago


B01_SENT = {
    "t.ashby": "14/03/2025 07:15:02",
    "r.okafor": "14/03/2025 07:20:10",
    "m.lindqvist": "",
}


@pytest.mark.parametrize(
    "case",
    [
        "B01_bom_utf8.csv",
        "B01b_bom_utf8_with_header.csv",
        "B05_trailing_blank_lines.csv",
        "N07a_quoted_commas.csv",
        "N08a_no_final_newline.csv",
    ],
    ids=["B01", "B01b", "B05", "N07a", "N08a"],
)
def test_b01_b01b_b05_n07a_n08a_three_rows_sent_file_processed(
    case, make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    copy_case(case, settings.csv_directory)

    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == B01_SENT
    assert warnings == []
    assert folder_names(settings.processed_directory) == [case]
    assert (settings.processed_directory / case).read_bytes() == case_file(
        case
    ).read_bytes()
    assert folder_names(settings.failed_files_directory) == []
    assert folder_names(settings.csv_directory) == []


def test_b03_short_ids_and_times_match_their_workers(make_processor, simulator, caplog):
    processor = make_processor()
    settings = processor.settings
    copy_case("B03_leading_zeros.csv", settings.csv_directory)

    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == {
        "t.ashby": "",
        "m.lindqvist": "14/03/2025 00:05:12",
        "r.okafor": "",
    }
    assert len(warnings) == 1
    assert "123456" in warnings[0] and "B03_leading_zeros.csv:5" in warnings[0]
    lookups = [
        q for q in simulator.search_queries if "123456" in (q.get("Criteria") or "")
    ]
    assert len(lookups) == 1
    assert folder_names(settings.processed_directory) == ["B03_leading_zeros.csv"]
    assert rejected_lines(settings, "B03_leading_zeros.csv") is None


def test_b04_semicolon_file_is_read_with_one_warning(make_processor, simulator, caplog):
    processor = make_processor()
    settings = processor.settings
    copy_case("B04_semicolon.csv", settings.csv_directory)

    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == B01_SENT
    assert len(warnings) == 1
    assert "B04_semicolon.csv" in warnings[0] and ";" in warnings[0]
    assert folder_names(settings.processed_directory) == ["B04_semicolon.csv"]
    assert rejected_lines(settings, "B04_semicolon.csv") is None


def test_b08_empty_file_waits_to_settle_then_is_processed(
    make_processor, simulator, caplog, clock
):
    processor = make_processor(file_settle_seconds=5)
    settings = processor.settings
    path = copy_case("B08_empty.csv", settings.csv_directory, mtime=clock.timestamp())

    sent, warnings = run_tick(processor, simulator, caplog)
    assert sent == {}
    assert path.exists()

    clock.advance(6)
    sent, warnings = run_tick(processor, simulator, caplog)
    assert sent == {}
    assert simulator.sync_calls == []
    assert warnings == []
    assert folder_names(settings.processed_directory) == ["B08_empty.csv"]


def test_n01_duplicates_sent_once_then_stale_in_next_file(
    make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    copy_case("N01a_duplicates.csv", settings.csv_directory)

    sent, warnings = run_tick(processor, simulator, caplog)
    assert sent == {"t.ashby": "14/03/2025 07:15:02", "r.okafor": "14/03/2025 07:20:10"}
    assert warnings == []

    copy_case("N01b_duplicates_next_file.csv", settings.csv_directory)
    sent, warnings = run_tick(processor, simulator, caplog)
    assert sent == {"m.lindqvist": ""}
    assert warnings == []
    assert folder_names(settings.processed_directory) == [
        "N01a_duplicates.csv",
        "N01b_duplicates_next_file.csv",
    ]


def test_n01_both_files_in_one_tick_send_each_user_once(
    make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    copy_case("N01a_duplicates.csv", settings.csv_directory, mtime=backdate(60))
    copy_case(
        "N01b_duplicates_next_file.csv", settings.csv_directory, mtime=backdate(30)
    )

    sent, _ = run_tick(processor, simulator, caplog)

    assert sent == {
        "t.ashby": "14/03/2025 07:15:02",
        "r.okafor": "14/03/2025 07:20:10",
        "m.lindqvist": "",
    }


def test_n03_late_older_event_is_stale_in_a_later_tick(
    make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    copy_case("N03a_BOBO_20250314_0930.csv", settings.csv_directory)
    sent, warnings = run_tick(processor, simulator, caplog)
    assert sent == {"t.ashby": ""}

    copy_case("N03b_BOBO_20250314_0900_late.csv", settings.csv_directory)
    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == {"p.nandi": "14/03/2025 08:57:00"}
    assert warnings == []
    assert simulator.attribute("t.ashby", DUTY) in (None, "")
    assert simulator.attribute("p.nandi", DUTY) == "14/03/2025 08:57:00"
    assert len(folder_names(settings.processed_directory)) == 2


def test_n03_second_tick_in_a_new_process_remembers_the_applied_event(
    make_processor, make_settings, simulator, caplog
):
    settings = make_settings()
    first = make_processor(settings)
    copy_case("N03a_BOBO_20250314_0930.csv", settings.csv_directory)
    run_tick(first, simulator, caplog)
    first.close()

    second = make_processor(settings)
    copy_case("N03b_BOBO_20250314_0900_late.csv", settings.csv_directory)
    sent, _ = run_tick(second, simulator, caplog)

    assert sent == {"p.nandi": "14/03/2025 08:57:00"}


@pytest.mark.parametrize("first_older", ["N03a", "N03b"])
def test_n03_both_files_in_one_tick_in_either_order(
    first_older, make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    names = ["N03a_BOBO_20250314_0930.csv", "N03b_BOBO_20250314_0900_late.csv"]
    if first_older == "N03b":
        names.reverse()
    copy_case(names[0], settings.csv_directory, mtime=backdate(60))
    copy_case(names[1], settings.csv_directory, mtime=backdate(30))

    sent, _ = run_tick(processor, simulator, caplog)

    assert sent == {"t.ashby": "", "p.nandi": "14/03/2025 08:57:00"}


def test_n03_clock_variant_expired_book_ons_are_not_sent(
    make_processor, simulator, caplog, clock
):
    processor = make_processor()
    settings = processor.settings
    copy_case("N03a_BOBO_20250314_0930.csv", settings.csv_directory)
    run_tick(processor, simulator, caplog)

    clock.set(datetime(2025, 3, 15, 12, 0, 0))
    copy_case("N03b_BOBO_20250314_0900_late.csv", settings.csv_directory)
    sent, _ = run_tick(processor, simulator, caplog)

    assert sent == {}
    stale_lines = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.INFO and "stale book-on" in r.getMessage()
    ]
    assert len(stale_lines) == 2
    assert any("id=417" in line for line in stale_lines)
    assert any("id=88" in line for line in stale_lines)
    assert "N03b_BOBO_20250314_0900_late.csv" in folder_names(
        settings.processed_directory
    )


def test_n04_header_is_skipped_without_warning(make_processor, simulator, caplog):
    processor = make_processor()
    settings = processor.settings
    copy_case("N04_with_header.csv", settings.csv_directory)

    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == {"t.ashby": "14/03/2025 07:15:02", "r.okafor": "14/03/2025 07:20:10"}
    assert warnings == []
    assert folder_names(settings.processed_directory) == ["N04_with_header.csv"]
    assert rejected_lines(settings, "N04_with_header.csv") is None


def test_n05_header_only_file_is_processed_with_nothing_sent(
    make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    copy_case("N05_header_only.csv", settings.csv_directory)

    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == {} and simulator.sync_calls == []
    assert warnings == []
    assert folder_names(settings.processed_directory) == ["N05_header_only.csv"]
    assert folder_names(settings.failed_files_directory) == []


def test_n06_unknown_type_is_rejected_rest_sent(make_processor, simulator, caplog):
    processor = make_processor()
    settings = processor.settings
    copy_case("N06_unknown_type.csv", settings.csv_directory)

    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == {"t.ashby": "14/03/2025 07:15:02", "m.lindqvist": "", "s.varga": ""}
    assert len(warnings) == 2
    assert "N06_unknown_type.csv:2" in warnings[0] and "Transaction_Type" in warnings[0]
    assert "BRK" in warnings[0]
    assert "N06_unknown_type.csv:5" in warnings[1] and "Transaction_Type" in warnings[1]
    lines = rejected_lines(settings, "N06_unknown_type.csv")
    assert lines is not None and len(lines) == 2
    assert lines[0].startswith("BRK,04170,704170,20250314,120000")
    assert lines[1].startswith(",01234,701234,20250314,162000")
    assert folder_names(settings.processed_directory) == ["N06_unknown_type.csv"]
    with BOBODatabase(settings.db_path) as database:
        (entry,) = database.processing_log("N06_unknown_type.csv")
    assert entry.invalid_rows == 2 and entry.status == "processed"


def test_n09_only_bobo_files_are_taken_from_a_mixed_folder(
    make_processor, simulator, caplog, tmp_path
):
    processor = make_processor()
    settings = processor.settings
    source = CASES / "N09_inbox"
    if not source.exists():
        pytest.skip("N09_inbox is not available")
    for entry in source.rglob("*"):
        target = settings.csv_directory / entry.relative_to(source)
        if entry.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(entry.read_bytes())
            os.chmod(target, 0o644)

    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == {"t.ashby": "14/03/2025 07:15:02", "r.okafor": "14/03/2025 07:20:10"}
    assert warnings == []
    assert folder_names(settings.processed_directory) == [
        "BOBO_20250314_0800.csv",
        "BOBO_20250314_0815.CSV",
    ]
    assert folder_names(settings.failed_files_directory) == []
    assert folder_names(settings.csv_directory) == [
        "BOBO_20250314_0830.csv.part",
        "BOBO_20250314_0845.tmp",
        "Thumbs.db",
        "desktop.ini",
        "readme.txt",
        "~$BOBO_20250314_0800.csv",
    ]
    assert (settings.csv_directory / "archive" / "BOBO_20250313_2300.csv").exists()

    ignored_logs = [r for r in caplog.records if "ignored" in r.getMessage()]
    run_tick(processor, simulator, caplog)
    again = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert ignored_logs and again == []


def test_n11_unknown_employee_is_warned_once_a_day(
    make_processor, simulator, caplog, clock
):
    processor = make_processor()
    settings = processor.settings
    copy_case("N11_unknown_employee.csv", settings.csv_directory)

    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == {"t.ashby": "14/03/2025 07:15:02", "m.lindqvist": ""}
    assert len(warnings) == 1
    assert "99999" in warnings[0] and "N11_unknown_employee.csv:2" in warnings[0]
    assert rejected_lines(settings, "N11_unknown_employee.csv") is None
    assert folder_names(settings.processed_directory) == ["N11_unknown_employee.csv"]
    with BOBODatabase(settings.db_path) as database:
        (entry,) = database.processing_log("N11_unknown_employee.csv")
    assert entry.unmapped_rows == 1

    clock.advance(60)
    copy_case(
        "N11_unknown_employee.csv", settings.csv_directory, as_name="N11_again.csv"
    )
    _, warnings = run_tick(processor, simulator, caplog)
    assert warnings == []

    clock.set(datetime(2025, 3, 15, 1, 0, 0))
    copy_case(
        "N11_unknown_employee.csv", settings.csv_directory, as_name="N11_next_day.csv"
    )
    _, warnings = run_tick(processor, simulator, caplog)
    assert len(warnings) == 1 and "99999" in warnings[0]
