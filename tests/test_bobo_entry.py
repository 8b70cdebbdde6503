"""Tests of bobosync.bobo_entry: one row to a record, and which event wins."""

from __future__ import annotations

from datetime import datetime

import pytest

from bobosync.bobo_entry import (
    BOBOEntry,
    RowRejected,
    canonical_employee_id,
    latest_per_employee,
)
from bobosync.errors import CsvFormatError

GOOD_ROW = "BON,00417,700417,20250314,071502,20250314071505,1,51.5,-0.1,12.5"


def cells_of(row: str) -> list[str]:
    return row.split(",")


def entry(
    employee_id: str,
    event_time: str,
    created_time: str | None = None,
    *,
    transaction_type: str = "BON",
    line_number: int = 1,
    source_file: str = "a.csv",
) -> BOBOEntry:
    return BOBOEntry(
        transaction_type=transaction_type,
        employee_id=employee_id,
        raw_employee_id=employee_id,
        event_time=datetime.fromisoformat(event_time),
        created_time=datetime.fromisoformat(created_time) if created_time else None,
        source_file=source_file,
        line_number=line_number,
    )


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("00417", "417"),
        ("0417", "417"),
        ("417", "417"),
        ("04170", "4170"),
        (" 00009 ", "9"),
        ("0", "0"),
        ("000", "0"),
        ("123456", "123456"),
        ("A0417", "A0417"),
        ("007-B", "007-B"),
        ("00_1", "00_1"),
    ],
)
def test_canonical_employee_id_trims_and_drops_leading_zeros_of_digits(
    raw: str, canonical: str
) -> None:
    assert canonical_employee_id(raw) == canonical


def test_valid_row_becomes_entry_with_canonical_id_and_event_time() -> None:
    result = BOBOEntry.from_csv_row(
        cells_of(GOOD_ROW), source_file="x.csv", line_number=7
    )

    assert result == BOBOEntry(
        transaction_type="BON",
        employee_id="417",
        raw_employee_id="00417",
        event_time=datetime(2025, 3, 14, 7, 15, 2),
        created_time=datetime(2025, 3, 14, 7, 15, 5),
        source_file="x.csv",
        line_number=7,
    )
    assert result.is_book_on


@pytest.mark.parametrize(
    ("row", "transaction_type", "employee_id", "event_time"),
    [
        # B03: Excel dropped the zeros of ids and times.
        ("BOF,417,700417,20250314,91502,,1,,,", "BOF", "417", "2025-03-14 09:15:02"),
        ("BON,9,700009,20250314,512,,0,,,", "BON", "9", "2025-03-14 00:05:12"),
        ("BOF,4170,704170,20250314,93000,,1,,,", "BOF", "4170", "2025-03-14 09:30:00"),
        ("BON,123456,1,20250314,094500,,1,,,", "BON", "123456", "2025-03-14 09:45:00"),
        ("BON,1,1,20250314,0,,1,,,", "BON", "1", "2025-03-14 00:00:00"),
        # N06: any case, trimmed.
        ("bof,00009,1,20250314,160000,,1,,,", "BOF", "9", "2025-03-14 16:00:00"),
        (" BOF ,00422,1,20250314,161500,,1,,,", "BOF", "422", "2025-03-14 16:15:00"),
        ("Bon, 00417 ,1,20240229,235959,,1,,,", "BON", "417", "2024-02-29 23:59:59"),
        # More than 10 cells, the extras empty (a trailing comma).
        ("BON,00417,1,20250314,071502,,1,,,,", "BON", "417", "2025-03-14 07:15:02"),
        ("BON,00417,1,20250314,071502,,1,,,,, ,", "BON", "417", "2025-03-14 07:15:02"),
        # Geo columns are not read.
        (
            "BON,X-1_a,1,20250314,071502,,?,north,x,-5",
            "BON",
            "X-1_a",
            "2025-03-14 07:15:02",
        ),
    ],
)
def test_valid_rows_are_read(
    row: str, transaction_type: str, employee_id: str, event_time: str
) -> None:
    result = BOBOEntry.from_csv_row(cells_of(row))

    assert result.transaction_type == transaction_type
    assert result.employee_id == employee_id
    assert result.event_time == datetime.fromisoformat(event_time)
    assert result.is_book_on == (transaction_type == "BON")


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        ("20250314071505", datetime(2025, 3, 14, 7, 15, 5)),
        ("", None),
        ("2025031407150", None),
        ("20250230071505", None),
        ("2025-03-14 07:15", None),
    ],
)
def test_created_time_is_optional_and_a_bad_one_does_not_reject_the_row(
    created: str, expected: datetime | None
) -> None:
    row = f"BON,00417,1,20250314,071502,{created},1,,,"

    assert BOBOEntry.from_csv_row(cells_of(row)).created_time == expected


LONG_PAYROLL = "P" * 1001
LONG_TYPE = "B" * 1001


@pytest.mark.parametrize(
    ("row", "column", "value", "reason"),
    [
        (
            "BRK,04170,1,20250314,120000,,1,,,",
            "Transaction_Type",
            "BRK",
            "unknown transaction type, expected BON or BOF",
        ),
        (
            ",01234,1,20250314,162000,,1,,,",
            "Transaction_Type",
            "",
            "empty transaction type, expected BON or BOF",
        ),
        ("BON, ,1,20250314,071502,,1,,,", "Employee_ID", "", "empty employee id"),
        (
            "BON,004 17,1,20250314,071502,,1,,,",
            "Employee_ID",
            "004 17",
            "malformed employee id, expected ASCII letters, digits, - and _ only",
        ),
        (
            "BON,417.0,1,20250314,071502,,1,,,",
            "Employee_ID",
            "417.0",
            "malformed employee id, expected ASCII letters, digits, - and _ only",
        ),
        (
            "BON,00417,1,20250230,071502,,1,,,",
            "Clocking_Date",
            "20250230",
            "impossible date, expected YYYYMMDD",
        ),
        (
            "BON,00417,1,20251301,071502,,1,,,",
            "Clocking_Date",
            "20251301",
            "impossible date, expected YYYYMMDD",
        ),
        (
            "BON,00417,1,2025-03-14,071502,,1,,,",
            "Clocking_Date",
            "2025-03-14",
            "malformed date, expected YYYYMMDD",
        ),
        (
            "BON,00417,1,,071502,,1,,,",
            "Clocking_Date",
            "",
            "empty date, expected YYYYMMDD",
        ),
        (
            "BON,00417,1,20250314,246100,,1,,,",
            "Clocking_Time",
            "246100",
            "impossible time, expected HHMMSS",
        ),
        (
            "BON,00417,1,20250314,076000,,1,,,",
            "Clocking_Time",
            "076000",
            "impossible time, expected HHMMSS",
        ),
        (
            "BON,00417,1,20250314,7:15,,1,,,",
            "Clocking_Time",
            "7:15",
            "malformed time, expected HHMMSS",
        ),
        (
            "BON,00417,1,20250314,0715020,,1,,,",
            "Clocking_Time",
            "0715020",
            "malformed time, expected HHMMSS",
        ),
        (
            "BON,00417,1,20250314,,,1,,,",
            "Clocking_Time",
            "",
            "empty time, expected HHMMSS",
        ),
        ("BON,00417,1,20250314,071502,,1,,", "row", "9 cells", "expected 10 cells"),
        ("drop BOBO exports here", "row", "1 cell", "expected 10 cells"),
        (
            "BON,00417,1,20250314,071502,,1,,,,x",
            "row",
            "11 cells",
            "expected 10 cells (extra cells must be empty)",
        ),
        (
            f"BON,00417,{LONG_PAYROLL},20250314,071502,,1,,,",
            "Payroll_ID",
            "P" * 40 + "...",
            "field longer than 1000 characters",
        ),
        (
            f"{LONG_TYPE},00417,1,20250314,071502,,1,,,",
            "Transaction_Type",
            "B" * 40 + "...",
            "field longer than 1000 characters",
        ),
    ],
)
def test_invalid_rows_are_rejected_naming_column_value_and_reason(
    row: str, column: str, value: str, reason: str
) -> None:
    with pytest.raises(RowRejected) as caught:
        BOBOEntry.from_csv_row(cells_of(row), source_file="f.csv", line_number=4)

    rejected = caught.value
    assert (rejected.column, rejected.value, rejected.reason) == (column, value, reason)
    assert (rejected.path, rejected.line) == ("f.csv", 4)
    assert str(rejected) == f"{column} {value!r}: {reason}"


def test_a_field_of_exactly_1000_characters_is_accepted() -> None:
    row = f"BON,00417,{'P' * 1000},20250314,071502,,1,,,"

    assert BOBOEntry.from_csv_row(cells_of(row)).employee_id == "417"


def test_row_rejected_is_a_csv_format_error() -> None:
    assert issubclass(RowRejected, CsvFormatError)


def test_n06_message_names_the_unknown_type() -> None:
    with pytest.raises(RowRejected, match=r"^Transaction_Type 'BRK': unknown"):
        BOBOEntry.from_csv_row(cells_of("BRK,04170,1,20250314,120000,,1,,,"))


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        # The event time decides first, whatever the rest says.
        (
            (entry("417", "2025-03-14 07:00:00", "2025-03-14 09:00:00"), 5),
            (entry("417", "2025-03-14 07:00:01", None, line_number=1), 1),
        ),
        # Equal event times: DateTime_Created; a missing one loses.
        (
            (entry("417", "2025-03-14 07:00:00", None, line_number=9), 5),
            (entry("417", "2025-03-14 07:00:00", "2025-03-14 06:00:00"), 1),
        ),
        (
            (entry("417", "2025-03-14 07:00:00", "2025-03-14 07:00:03"), 5),
            (entry("417", "2025-03-14 07:00:00", "2025-03-14 07:00:04"), 1),
        ),
        # Then the later file of the batch, then the later line.
        (
            (entry("417", "2025-03-14 07:00:00", None, line_number=9), 1),
            (entry("417", "2025-03-14 07:00:00", None, line_number=1), 2),
        ),
        (
            (entry("417", "2025-03-14 07:00:00", None, line_number=1), 2),
            (entry("417", "2025-03-14 07:00:00", None, line_number=2), 2),
        ),
    ],
)
def test_which_event_wins_order(
    earlier: tuple[BOBOEntry, int], later: tuple[BOBOEntry, int]
) -> None:
    (loser, loser_file), (winner, winner_file) = earlier, later

    assert loser.winner_key(loser_file) < winner.winner_key(winner_file)
    batch = [(loser_file, loser), (winner_file, winner)]
    for order in (batch, batch[::-1]):
        assert latest_per_employee(iter(order)) == {"417": winner}


def test_latest_per_employee_keeps_one_winner_per_canonical_id() -> None:
    # B03: lines 1 and 2 are one worker; line 2 is later and wins.
    rows = [
        "BON,00417,700417,20250314,071502,20250314071505,1,,,",
        "BOF,417,700417,20250314,91502,20250314091505,1,,,",
        "BON,9,700009,20250314,512,20250314000515,0,,,",
        "BOF,4170,704170,20250314,93000,20250314093004,1,,,",
    ]
    entries = [
        BOBOEntry.from_csv_row(cells_of(row), line_number=number)
        for number, row in enumerate(rows, start=1)
    ]

    winners = latest_per_employee((0, item) for item in entries)

    assert {key: value.line_number for key, value in winners.items()} == {
        "417": 2,
        "9": 3,
        "4170": 4,
    }
    assert not winners["417"].is_book_on


def test_latest_per_employee_of_nothing_is_empty() -> None:
    assert latest_per_employee([]) == {}
