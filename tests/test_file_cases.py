"""What happens to files: settling, locked files, taken names, encodings,
unusable files, retries, ordering and the batch limit.

End to end: the real processor, real files and SQLite, the simulator on
loopback and the ManualClock at 14/03/2025 23:00:00 (EXPECTED.md's
conventions). File times are set with os.utime relative to the clock, so
nothing sleeps.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bobosync.athoc_client import AtHocClient
from bobosync.bobo_processor import BOBOProcessor
from bobosync.database import BOBODatabase
from tests.conftest import DUTY, copy_case, folder_names, run_tick

N04_SENT = {"t.ashby": "14/03/2025 07:15:02", "r.okafor": "14/03/2025 07:20:10"}
B22_NAME = "BOBO_20250314_0800.csv"
B22_ROWS = [
    "BON,00417,700417,20250314,080000,20250314080001,1,,,",
    "BON,04170,704170,20250314,080100,20250314080101,1,,,",
    "BON,00009,700009,20250314,080200,20250314080201,1,,,",
    "BON,00422,700422,20250314,080300,20250314080301,1,,,",
    "BON,01234,701234,20250314,080400,20250314080401,1,,,",
    "BON,00088,700088,20250314,080500,20250314080501,1,,,",
    "BOF,00417,700417,20250314,080600,20250314080601,0,,,",
    "BOF,04170,704170,20250314,080700,20250314080701,0,,,",
    "BOF,00009,700009,20250314,080800,20250314080801,0,,,",
    "BOF,00422,700422,20250314,080900,20250314080901,0,,,",
]
B22_SENT = {
    "t.ashby": "",
    "r.okafor": "",
    "m.lindqvist": "",
    "s.varga": "",
    "k.moreau": "14/03/2025 08:04:00",
    "p.nandi": "14/03/2025 08:05:00",
}
NOT_BOBO = b"drop BOBO exports here\r\n"


def write_rows(path: Path, rows: list[str], mtime: float) -> Path:
    path.write_bytes("".join(row + "\r\n" for row in rows).encode("utf-8"))
    os.utime(path, (mtime, mtime))
    return path


def append_row(path: Path, row: str, mtime: float) -> None:
    with path.open("ab") as stream:
        stream.write(row.encode("utf-8") + b"\r\n")
    os.utime(path, (mtime, mtime))


def records_at(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


# -- B22: a file still being written -----------------------------------------


def test_b22_growing_file_is_not_read_until_it_has_settled(
    make_processor, simulator, caplog, clock
):
    processor = make_processor(file_settle_seconds=5, poll_interval_seconds=5)
    path = processor.settings.csv_directory / B22_NAME

    # A row every 2 s for 20 s, a tick every 5 s (POLL_INTERVAL_SECONDS).
    for second in range(21):
        if second % 2 == 0 and second // 2 < len(B22_ROWS):
            append_row(path, B22_ROWS[second // 2], clock.timestamp())
        if second % 5 == 0:
            sent, warnings = run_tick(processor, simulator, caplog)
            assert sent == {} and simulator.sync_calls == []
            assert warnings == []
            assert any(B22_NAME in text for text in records_at(caplog, logging.DEBUG))
            assert folder_names(processor.settings.csv_directory) == [B22_NAME]
        clock.advance(1)

    clock.advance(4)  # 25 s: the last write (18 s) is 7 s old
    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == B22_SENT
    assert warnings == []
    assert folder_names(processor.settings.processed_directory) == [B22_NAME]
    assert folder_names(processor.settings.csv_directory) == []


def hold_open_without_sharing(monkeypatch, name: str) -> dict[str, bool]:
    """Make every open of ``name`` fail as Windows does while a writer holds
    it without read sharing (WinError 32); set ["held"] False to release."""
    state = {"held": True}
    real_open = Path.open

    def guarded_open(self, *args, **kwargs):
        if self.name == name and state["held"]:
            raise PermissionError(
                13,
                "The process cannot access the file because it is being used "
                "by another process",
                str(self),
            )
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", guarded_open)
    return state


@pytest.mark.parametrize("locked_at", ["open_check", "read"])
def test_b22_file_held_open_is_skipped_at_debug_then_read_when_released(
    locked_at, make_processor, simulator, caplog, clock, monkeypatch
):
    processor = make_processor(file_settle_seconds=5)
    settings = processor.settings
    path = write_rows(
        settings.csv_directory / B22_NAME, B22_ROWS, clock.timestamp() - 60
    )
    lock = hold_open_without_sharing(monkeypatch, B22_NAME)
    if locked_at == "read":
        # The writer grabs the file between the open check and the read.
        monkeypatch.setattr("bobosync.inbox._can_open", lambda _path: True)

    for _ in range(4):  # 20 s of ticks
        sent, warnings = run_tick(processor, simulator, caplog)
        assert sent == {} and simulator.sync_calls == []
        assert warnings == [] and records_at(caplog, logging.ERROR) == []
        assert any(B22_NAME in text for text in records_at(caplog, logging.DEBUG))
        assert path.exists()
        assert processor.database.get_attempts(B22_NAME) == 0
        clock.advance(5)

    lock["held"] = False
    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == B22_SENT
    assert warnings == []
    assert folder_names(settings.processed_directory) == [B22_NAME]
    assert folder_names(settings.failed_files_directory) == []


def test_b22_part_file_is_ignored_and_the_renamed_file_processed(
    make_processor, simulator, caplog, clock
):
    processor = make_processor(file_settle_seconds=5)
    settings = processor.settings
    part = settings.csv_directory / (B22_NAME + ".part")

    for index, row in enumerate(B22_ROWS):
        append_row(part, row, clock.timestamp())
        if index % 3 == 0:
            sent, warnings = run_tick(processor, simulator, caplog)
            assert sent == {} and simulator.sync_calls == [] and warnings == []
        clock.advance(2)
    sent, _ = run_tick(processor, simulator, caplog)
    assert sent == {}
    assert folder_names(settings.csv_directory) == [B22_NAME + ".part"]

    os.replace(part, settings.csv_directory / B22_NAME)
    clock.advance(5)
    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == B22_SENT
    assert warnings == []
    assert folder_names(settings.processed_directory) == [B22_NAME]
    assert folder_names(settings.csv_directory) == []


# -- B23: the name is already taken ------------------------------------------


def test_b23_taken_name_in_processed_gets_a_timestamp_suffix(
    make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    old = settings.processed_directory / "BOBO_daily.csv"
    old.write_bytes(b"yesterday's file\r\n")
    new = copy_case(
        "N04_with_header.csv", settings.csv_directory, as_name="BOBO_daily.csv"
    )
    new_bytes = new.read_bytes()

    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == N04_SENT
    assert warnings == []
    names = folder_names(settings.processed_directory)
    assert len(names) == 2 and "BOBO_daily.csv" in names
    (moved,) = [name for name in names if name != "BOBO_daily.csv"]
    assert re.fullmatch(r"BOBO_daily_\d{8}_\d{6}\.csv", moved)
    assert (settings.processed_directory / moved).read_bytes() == new_bytes
    assert old.read_bytes() == b"yesterday's file\r\n"
    assert folder_names(settings.csv_directory) == []

    sent, _ = run_tick(processor, simulator, caplog)
    assert sent == {} and simulator.sync_calls == []
    assert len(folder_names(settings.processed_directory)) == 2


def test_b23_taken_name_in_failed_gets_a_timestamp_suffix(
    make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    old = settings.failed_files_directory / "BOBO_daily.csv"
    old.write_bytes(b"an older failed file\r\n")
    (settings.csv_directory / "BOBO_daily.csv").write_bytes(NOT_BOBO)

    sent, _ = run_tick(processor, simulator, caplog)

    assert sent == {} and simulator.sync_calls == []
    assert old.read_bytes() == b"an older failed file\r\n"
    suffixed = [
        name
        for name in folder_names(settings.failed_files_directory)
        if re.fullmatch(r"BOBO_daily_\d{8}_\d{6}\.csv", name)
    ]
    assert len(suffixed) == 1
    assert (settings.failed_files_directory / suffixed[0]).read_bytes() == NOT_BOBO
    assert folder_names(settings.csv_directory) == []
    assert folder_names(settings.processed_directory) == []


def test_b23_without_moving_a_file_is_sent_once_and_again_when_it_changes(
    make_processor, simulator, caplog, clock
):
    processor = make_processor(move_processed_files=False)
    settings = processor.settings
    path = copy_case(
        "N04_with_header.csv", settings.csv_directory, as_name="BOBO_daily.csv"
    )

    sent, _ = run_tick(processor, simulator, caplog)
    assert sent == N04_SENT
    assert folder_names(settings.csv_directory) == ["BOBO_daily.csv"]

    clock.advance(60)
    sent, _ = run_tick(processor, simulator, caplog)
    assert sent == {} and simulator.sync_calls == []

    write_rows(
        path,
        [
            "BOF,00417,700417,20250314,120000,20250314120001,0,,,",
            "BON,00088,700088,20250314,120500,20250314120501,1,,,",
        ],
        clock.timestamp() - 10,
    )
    sent, _ = run_tick(processor, simulator, caplog)
    assert sent == {"t.ashby": "", "p.nandi": "14/03/2025 12:05:00"}

    clock.advance(60)
    sent, _ = run_tick(processor, simulator, caplog)
    assert sent == {} and simulator.sync_calls == []
    assert folder_names(settings.csv_directory) == ["BOBO_daily.csv"]
    assert folder_names(settings.processed_directory) == []


# -- B05 and B08 extras ---------------------------------------------------


def test_b05_blank_and_empty_rows_are_skipped_at_debug_by_line(
    make_processor, simulator, caplog
):
    processor = make_processor()
    copy_case("B05_trailing_blank_lines.csv", processor.settings.csv_directory)

    _, warnings = run_tick(processor, simulator, caplog)

    skipped = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.DEBUG and "blank row skipped" in r.getMessage()
    ]
    assert [int(text.rsplit("line=", 1)[1]) for text in skipped] == [4, 5, 6, 7]
    assert warnings == []
    (entry,) = processor.database.processing_log("B05_trailing_blank_lines.csv")
    assert (entry.status, entry.data_rows, entry.invalid_rows) == ("processed", 3, 0)


def test_b08_empty_file_is_logged_as_processed_with_nothing_sent(
    make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    copy_case("B08_empty.csv", settings.csv_directory)

    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == {} and warnings == []
    assert folder_names(settings.processed_directory) == ["B08_empty.csv"]
    assert (settings.processed_directory / "B08_empty.csv").read_bytes() == b""
    assert folder_names(settings.failed_files_directory) == []
    (entry,) = processor.database.processing_log("B08_empty.csv")
    assert (entry.status, entry.data_rows) == ("processed", 0)


# -- R5: a file that is not UTF-8 --------------------------------------------


def test_r5_windows_1252_file_is_read_with_one_warning(
    make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    path = settings.csv_directory / "BOBO_cp1252.csv"
    path.write_bytes(
        "BON,00417,Müller,20250314,071502,20250314071503,1,,,\r\n"
        "BOF,00009,Renée,20250314,073000,20250314073001,0,,,\r\n".encode("cp1252")
    )

    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == {"t.ashby": "14/03/2025 07:15:02", "m.lindqvist": ""}
    assert len(warnings) == 1
    assert "BOBO_cp1252.csv" in warnings[0]
    assert "Windows-1252" in warnings[0] or "cp1252" in warnings[0]
    assert folder_names(settings.processed_directory) == ["BOBO_cp1252.csv"]


# -- R3: files with no valid row, rejected rows --------------------------------


def test_r3_file_without_a_valid_row_goes_to_failed_at_once(
    make_processor, simulator, caplog
):
    processor = make_processor(max_retry_attempts=3)
    settings = processor.settings
    (settings.csv_directory / "notes.csv").write_bytes(NOT_BOBO + b"a,b,c\r\n")

    sent, _ = run_tick(processor, simulator, caplog)

    assert sent == {} and simulator.sync_calls == []
    assert "notes.csv" in folder_names(settings.failed_files_directory)
    assert folder_names(settings.csv_directory) == []
    assert processor.database.get_attempts("notes.csv") == 0
    (entry,) = processor.database.processing_log("notes.csv")
    assert (entry.status, entry.data_rows, entry.valid_rows) == ("failed", 2, 0)


def rejected_reports(settings) -> list[str]:
    return [
        name
        for name in folder_names(settings.failed_files_directory)
        if ".rejected" in name
    ]


def test_r3_rejected_rows_report_is_written_once_across_retries(
    make_processor, simulator, caplog, clock
):
    processor = make_processor(max_retry_attempts=3)
    settings = processor.settings
    write_rows(
        settings.csv_directory / "BOBO_mixed.csv",
        [
            "BON,00417,700417,20250314,071502,20250314071503,1,,,",
            "BRK,00009,700009,20250314,072000,20250314072001,1,,,",
            "BON,04170,704170,20250314,072010,20250314072011,1,,,",
        ],
        clock.timestamp() - 10,
    )
    simulator.sync_error_for("r.okafor", "Invalid value for On-Duty-DTG")

    for _ in range(2):
        run_tick(processor, simulator, caplog)
        assert folder_names(settings.csv_directory) == ["BOBO_mixed.csv"]
        assert len(rejected_reports(settings)) <= 1
    simulator.clear_faults()
    sent, _ = run_tick(processor, simulator, caplog)

    assert sent == {"r.okafor": "14/03/2025 07:20:10"}
    assert folder_names(settings.processed_directory) == ["BOBO_mixed.csv"]
    assert rejected_reports(settings) == ["BOBO_mixed.csv.rejected.csv"]
    report = settings.failed_files_directory / "BOBO_mixed.csv.rejected.csv"
    lines = report.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("BRK,00009,700009,20250314,072000")


def test_file_whose_employees_are_all_unmapped_succeeds(
    make_processor, simulator, caplog, clock
):
    processor = make_processor()
    settings = processor.settings
    write_rows(
        settings.csv_directory / "BOBO_strangers.csv",
        [
            "BON,99999,799999,20250314,071502,20250314071503,1,,,",
            "BOF,123456,7123456,20250314,072000,20250314072001,0,,,",
        ],
        clock.timestamp() - 10,
    )

    sent, warnings = run_tick(processor, simulator, caplog)

    assert sent == {} and simulator.sync_calls == []
    assert len(warnings) == 2
    assert "99999" in warnings[0] and "BOBO_strangers.csv:1" in warnings[0]
    assert "123456" in warnings[1] and "BOBO_strangers.csv:2" in warnings[1]
    assert folder_names(settings.processed_directory) == ["BOBO_strangers.csv"]
    assert rejected_reports(settings) == []
    (entry,) = processor.database.processing_log("BOBO_strangers.csv")
    assert (entry.status, entry.unmapped_rows) == ("processed", 2)


# -- R6: which event wins, across files and ticks -------------------------------


@pytest.mark.parametrize("book_off_file_is_older", [True, False])
def test_r6_datetime_created_breaks_a_tie_before_file_order(
    book_off_file_is_older, make_processor, simulator, caplog, clock
):
    processor = make_processor()
    folder = processor.settings.csv_directory
    # Same Clocking time; the book-off was created later, so it wins
    # whichever file is taken first.
    book_off = ["BOF,00417,700417,20250314,080000,20250314080005,0,,,"]
    book_on = ["BON,417,700417,20250314,080000,20250314080001,1,,,"]
    older, newer = clock.timestamp() - 60, clock.timestamp() - 30
    if book_off_file_is_older:
        older, newer = newer, older
    write_rows(folder / "BOBO_a.csv", book_on, older)
    write_rows(folder / "BOBO_b.csv", book_off, newer)

    sent, _ = run_tick(processor, simulator, caplog)

    assert sent == {"t.ashby": ""}


def test_r6_equal_datetime_created_is_won_by_the_later_file(
    make_processor, simulator, caplog, clock
):
    processor = make_processor()
    folder = processor.settings.csv_directory
    write_rows(
        folder / "BOBO_z.csv",
        ["BOF,00417,700417,20250314,080000,20250314080001,0,,,"],
        clock.timestamp() - 60,
    )
    write_rows(
        folder / "BOBO_a.csv",
        ["BON,00417,700417,20250314,080000,20250314080001,1,,,"],
        clock.timestamp() - 30,
    )

    sent, _ = run_tick(processor, simulator, caplog)

    assert sent == {"t.ashby": "14/03/2025 08:00:00"}


def test_r6_replaying_an_old_file_never_flips_the_status(
    make_processor, simulator, caplog, clock
):
    processor = make_processor()
    settings = processor.settings
    first = copy_case(
        "N04_with_header.csv", settings.csv_directory, as_name="BOBO_0715.csv"
    )
    first_bytes = first.read_bytes()
    run_tick(processor, simulator, caplog)
    write_rows(
        settings.csv_directory / "BOBO_0900.csv",
        ["BOF,00417,700417,20250314,090000,20250314090001,0,,,"],
        clock.timestamp() - 10,
    )
    sent, _ = run_tick(processor, simulator, caplog)
    assert sent == {"t.ashby": ""}

    clock.advance(3600)
    replay = settings.csv_directory / "BOBO_0715.csv"
    replay.write_bytes(first_bytes)
    sent, _ = run_tick(processor, simulator, caplog)

    assert sent == {} and simulator.sync_calls == []
    assert simulator.attribute("t.ashby", DUTY) is None
    assert simulator.attribute("r.okafor", DUTY) == "14/03/2025 07:20:10"
    assert folder_names(settings.csv_directory) == []
    assert len(folder_names(settings.processed_directory)) == 3


# -- PROCESSED_FILES_PURGE_DAYS ---------------------------------------------


def test_redropped_old_file_stays_in_processed_for_the_purge_days(
    make_processor, simulator, caplog, clock
):
    processor = make_processor(processed_files_purge_days=30)
    settings = processor.settings
    # An archived export copied back with its time stamp: 60 days old.
    copy_case(
        "N04_with_header.csv",
        settings.csv_directory,
        as_name="BOBO_archive.csv",
        mtime=clock.timestamp() - 60 * 86400,
    )

    sent, _ = run_tick(processor, simulator, caplog)
    assert sent == N04_SENT
    assert folder_names(settings.processed_directory) == ["BOBO_archive.csv"]

    clock.advance(29 * 86400)
    run_tick(processor, simulator, caplog)
    assert folder_names(settings.processed_directory) == ["BOBO_archive.csv"]

    clock.advance(2 * 86400)
    run_tick(processor, simulator, caplog)
    assert folder_names(settings.processed_directory) == []


# -- BATCH_SIZE --------------------------------------------------------------


def test_batch_size_limits_files_per_tick_oldest_first(
    make_processor, simulator, caplog, clock
):
    processor = make_processor(batch_size=2)
    folder = processor.settings.csv_directory
    now = clock.timestamp()
    # Names sort the other way round from the times: the time decides.
    write_rows(folder / "BOBO_c.csv", ["BON,00009,,20250314,070000,,1,,,"], now - 300)
    write_rows(folder / "BOBO_b.csv", ["BON,00422,,20250314,070000,,1,,,"], now - 200)
    write_rows(folder / "BOBO_a.csv", ["BON,00088,,20250314,070000,,1,,,"], now - 100)

    sent, _ = run_tick(processor, simulator, caplog)
    assert sent == {
        "m.lindqvist": "14/03/2025 07:00:00",
        "s.varga": "14/03/2025 07:00:00",
    }
    assert folder_names(folder) == ["BOBO_a.csv"]

    sent, _ = run_tick(processor, simulator, caplog)
    assert sent == {"p.nandi": "14/03/2025 07:00:00"}
    assert folder_names(folder) == []
    assert len(folder_names(processor.settings.processed_directory)) == 3


def test_r3_rejected_rows_report_is_not_written_again_after_a_locked_database(
    make_settings, simulator, caplog, clock
):
    settings = make_settings()
    processor = BOBOProcessor(
        settings,
        client=AtHocClient(settings, clock=clock, retry_backoff_seconds=0.0),
        database=BOBODatabase(settings.db_path, busy_timeout_seconds=0.2),
        clock=clock,
    )
    try:
        run_tick(processor, simulator, caplog)  # the mapping refresh
        write_rows(
            settings.csv_directory / "BOBO_mixed.csv",
            [
                "BON,00417,700417,20250314,071502,20250314071503,1,,,",
                "BRK,00009,700009,20250314,072000,20250314072001,1,,,",
            ],
            clock.timestamp() - 10,
        )
        with lock_during_sync_calls(processor, settings.db_path):
            assert not processor.run_tick().is_success
        assert folder_names(settings.csv_directory) == ["BOBO_mixed.csv"]

        clock.advance(60)
        run_tick(processor, simulator, caplog)
    finally:
        processor.close()

    assert folder_names(settings.processed_directory) == ["BOBO_mixed.csv"]
    assert rejected_reports(settings) == ["BOBO_mixed.csv.rejected.csv"]


@contextmanager
def lock_during_sync_calls(processor, db_path: Path) -> Iterator[None]:
    """Another program takes a write lock on DB_PATH (B27) while AtHoc is
    answering, after the tick's start-up check passed."""
    other = sqlite3.connect(str(db_path), isolation_level=None)
    send = processor.client.batch_update_duty_status

    def send_then_lock(*args, **kwargs):
        results = send(*args, **kwargs)
        if not other.in_transaction:
            other.execute("BEGIN IMMEDIATE")
        return results

    processor.client.batch_update_duty_status = send_then_lock
    try:
        yield
    finally:
        processor.client.batch_update_duty_status = send
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()


def test_batch_size_takes_files_of_equal_time_by_name(
    make_processor, simulator, caplog, clock
):
    processor = make_processor(batch_size=1)
    folder = processor.settings.csv_directory
    same_time = clock.timestamp() - 100
    write_rows(folder / "BOBO_2.csv", ["BON,00422,,20250314,070000,,1,,,"], same_time)
    write_rows(folder / "BOBO_1.csv", ["BON,00009,,20250314,070000,,1,,,"], same_time)

    sent, _ = run_tick(processor, simulator, caplog)

    assert sent == {"m.lindqvist": "14/03/2025 07:00:00"}
    assert folder_names(folder) == ["BOBO_2.csv"]
