"""Guards of the tick against files and rows that would lose or block events.

Found by trying to break the daemon: a mistyped future date, rows appended
while the send is in flight, a file that vanishes, a report that cannot be
written, a file full of garbage rows.
"""

from __future__ import annotations

import errno
import logging

import pytest

from bobosync import file_keeper
from bobosync.bobo_processor import MAX_ROW_WARNINGS
from tests.conftest import copy_case, folder_names, sent_in

N04 = "N04_with_header.csv"
N04_SENT = {"t.ashby": "14/03/2025 07:15:02", "r.okafor": "14/03/2025 07:20:10"}


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def send_then(monkeypatch, processor, action):
    """Make the processor's next sync call (only) run ``action`` after it."""
    original = processor.client.batch_update_duty_status
    pending = [action]

    def sync_and_act(updates, field_name):
        results = original(updates, field_name)
        while pending:
            pending.pop()()
        return results

    monkeypatch.setattr(processor.client, "batch_update_duty_status", sync_and_act)


def test_row_dated_far_ahead_is_not_sent_and_does_not_block_later_events(
    make_processor, simulator, caplog
):
    processor = make_processor()
    inbox = processor.settings.csv_directory
    (inbox / "typo.csv").write_bytes(
        b"BON,00088,700088,20250413,071500,20250314071501,1,,,\r\n"
        b"BON,00417,700417,20250314,071502,20250314071505,1,,,\r\n"
    )

    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        assert processor.run_tick().is_success

    assert sent_in(simulator) == {"t.ashby": "14/03/2025 07:15:02"}
    (warning,) = warnings_of(caplog)
    assert "typo.csv:1" in warning and "2025-04-13" in warning
    (entry,) = processor.database.processing_log("typo.csv")
    assert entry.invalid_rows == 1

    simulator.reset_records()
    (inbox / "later.csv").write_bytes(
        b"BON,00088,700088,20250314,170000,20250314170001,1,,,\r\n"
    )
    assert processor.run_tick().is_success
    assert sent_in(simulator) == {"p.nandi": "14/03/2025 17:00:00"}


def test_rows_appended_during_the_send_are_sent_next_tick_not_lost(
    make_processor, simulator, caplog, monkeypatch
):
    processor = make_processor()
    path = copy_case(N04, processor.settings.csv_directory)
    appended = b"BON,00088,700088,20250314,220000,20250314220001,1,,,\r\n"
    send_then(monkeypatch, processor, lambda: path.open("ab").write(appended))

    with caplog.at_level(logging.WARNING, logger="bobosync"):
        first = processor.run_tick()

    assert first.is_success
    assert sent_in(simulator) == N04_SENT
    assert any("changed while it was processed" in w for w in warnings_of(caplog))
    assert folder_names(processor.settings.csv_directory) == [N04]

    simulator.reset_records()
    assert processor.run_tick().is_success
    assert sent_in(simulator) == {"p.nandi": "14/03/2025 22:00:00"}
    assert folder_names(processor.settings.processed_directory) == [N04]
    assert processor.database.get_attempts(N04) == 0


def test_file_that_vanishes_during_the_send_keeps_what_athoc_confirmed(
    make_processor, simulator, caplog, monkeypatch
):
    processor = make_processor()
    inbox = processor.settings.csv_directory
    path = copy_case(N04, inbox)
    send_then(monkeypatch, processor, path.unlink)

    with caplog.at_level(logging.WARNING, logger="bobosync"):
        report = processor.run_tick()

    assert report.is_success
    assert any("vanished after it was read" in w for w in warnings_of(caplog))
    copy_case(N04, inbox, as_name="again.csv")
    simulator.reset_records()
    assert processor.run_tick().is_success
    assert sent_in(simulator) == {}  # recorded as applied: nothing sent twice


def test_report_that_cannot_be_written_does_not_resend_the_batch(
    make_processor, simulator, caplog, monkeypatch
):
    def refuse(*_args, **_kwargs):
        raise OSError(errno.ENAMETOOLONG, "File name too long")

    monkeypatch.setattr(file_keeper, "write_new_file", refuse)
    processor = make_processor()
    copy_case("N06_unknown_type.csv", processor.settings.csv_directory)
    copy_case(N04, processor.settings.csv_directory)

    with caplog.at_level(logging.ERROR, logger="bobosync"):
        assert processor.run_tick().is_success
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "rejected-rows report" in errors[0]
    assert folder_names(processor.settings.processed_directory) == [
        N04,
        "N06_unknown_type.csv",
    ]

    simulator.reset_records()
    assert processor.run_tick().is_success
    assert simulator.sync_calls == []


@pytest.mark.parametrize("bad_rows", [MAX_ROW_WARNINGS + 25])
def test_row_warnings_are_capped_per_file_with_one_summary(
    bad_rows, make_processor, simulator, caplog
):
    processor = make_processor()
    good = b"BON,00417,700417,20250314,071502,20250314071505,1,,,\r\n"
    bad = b"BRK,00417,700417,20250314,071502,20250314071505,1,,,\r\n"
    (processor.settings.csv_directory / "noisy.csv").write_bytes(good + bad * bad_rows)

    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        assert processor.run_tick().is_success

    warnings = warnings_of(caplog)
    assert len(warnings) == MAX_ROW_WARNINGS + 1
    assert warnings[-1].startswith(f"{bad_rows - MAX_ROW_WARNINGS} more unusable rows")
    report = processor.settings.failed_files_directory / "noisy.csv.rejected.csv"
    assert len(report.read_text(encoding="utf-8").splitlines()) == bad_rows
