"""One BOBO CSV row as a typed record, and which event wins per employee.

Pure: cells in, records out; no file, clock or logging. The column rules are
in ../shared/bobo-format.md ("The CSV file", "Employee ids", "Which event
wins").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from bobosync.errors import CsvFormatError

COLUMN_NAMES = (
    "Transaction_Type",
    "Employee_ID",
    "Payroll_ID",
    "Clocking_Date",
    "Clocking_Time",
    "DateTime_Created",
    "Geo_Status",
    "Geo_Latitude",
    "Geo_Longitude",
    "Geo_Accuracy",
)
COLUMN_COUNT = len(COLUMN_NAMES)
# No BOBO field comes near this; a longer cell is a wrong file or garbage.
MAX_CELL_CHARS = 1000
# The column name used when a whole row is at fault (cell count, quotes).
ROW_COLUMN = "row"
BOOK_ON = "BON"
BOOK_OFF = "BOF"

# ASCII only: \w lets Arabic-Indic or superscript digits through, and an
# id like "٠٤١٧" would then be neither canonicalised nor ever mapped.
_EMPLOYEE_ID = re.compile(r"[A-Za-z0-9_-]+")
_DATE = re.compile(r"[0-9]{8}")
# Excel drops leading zeros of a time: 91502 is 09:15:02, 512 is 00:05:12.
_TIME = re.compile(r"[0-9]{1,6}")
_CREATED = re.compile(r"[0-9]{14}")
# Values shown in messages are cut so a huge cell cannot flood a log line.
_SHOWN_VALUE_CHARS = 40


def canonical_employee_id(raw: str) -> str:
    """Return the id in the form ids are compared in: trimmed, and without
    leading zeros when it is all digits (Excel strips them: 00417 is 417)."""
    trimmed = raw.strip()
    if trimmed.isascii() and trimmed.isdigit():
        return trimmed.lstrip("0") or "0"
    return trimmed


def shorten_value(value: str) -> str:
    """Cut a cell's text to a length fit for a log line or message."""
    if len(value) <= _SHOWN_VALUE_CHARS:
        return value
    return value[:_SHOWN_VALUE_CHARS] + "..."


class RowRejected(CsvFormatError):
    """A row is invalid; ``column``, ``value`` (shortened) and ``reason``
    say why. ``path`` and ``line`` are set when the row's place is known."""

    def __init__(
        self,
        column: str,
        value: str,
        reason: str,
        *,
        path: str = "",
        line: int = 0,
    ) -> None:
        shown = shorten_value(value)
        self.reason = reason
        super().__init__(
            f"{column} {shown!r}: {reason}",
            path=path,
            line=line,
            column=column,
            value=shown,
        )


@dataclass(frozen=True, slots=True)
class BOBOEntry:
    """A valid book-on or book-off event read from one line of a file."""

    transaction_type: str
    employee_id: str
    raw_employee_id: str
    event_time: datetime
    created_time: datetime | None
    source_file: str = ""
    line_number: int = 0

    @property
    def is_book_on(self) -> bool:
        return self.transaction_type == BOOK_ON

    @classmethod
    def from_csv_row(
        cls,
        cells: Sequence[str],
        *,
        source_file: str = "",
        line_number: int = 0,
    ) -> BOBOEntry:
        """Build an entry from a row's cells; raises RowRejected.

        Cells are trimmed here. The geo columns are not read.
        """
        try:
            return cls._from_trimmed_cells(
                [cell.strip() for cell in cells], source_file, line_number
            )
        except RowRejected as rejected:
            rejected.path = source_file
            rejected.line = line_number
            raise

    @classmethod
    def _from_trimmed_cells(
        cls, cells: list[str], source_file: str, line_number: int
    ) -> BOBOEntry:
        check_cell_count(cells)
        check_cell_lengths(cells)
        return cls(
            transaction_type=parse_transaction_type(cells[0]),
            employee_id=parse_employee_id(cells[1]),
            raw_employee_id=cells[1],
            event_time=parse_event_time(cells[3], cells[4]),
            created_time=parse_created_time(cells[5]),
            source_file=source_file,
            line_number=line_number,
        )

    def winner_key(self, file_order: int) -> tuple:
        """Sort key of "which event wins": the greatest key is the winner.

        Event time, then DateTime_Created (a missing one loses the tie),
        then the later file of the batch, then the later line.
        """
        has_created = self.created_time is not None
        return (
            self.event_time,
            has_created,
            self.created_time or datetime.min,
            file_order,
            self.line_number,
        )


def check_cell_count(cells: Sequence[str]) -> None:
    """Reject a row of other than 10 cells, unless the extras are empty
    (a trailing separator)."""
    count = len(cells)
    extras_empty = not any(cell.strip() for cell in cells[COLUMN_COUNT:])
    if count == COLUMN_COUNT or (count > COLUMN_COUNT and extras_empty):
        return
    shown = f"{count} cell" if count == 1 else f"{count} cells"
    reason = f"expected {COLUMN_COUNT} cells"
    if count > COLUMN_COUNT:
        reason += " (extra cells must be empty)"
    raise RowRejected(ROW_COLUMN, shown, reason)


def check_cell_lengths(cells: Sequence[str]) -> None:
    for index, cell in enumerate(cells):
        if len(cell) > MAX_CELL_CHARS:
            raise RowRejected(
                _column_name(index),
                cell,
                f"field longer than {MAX_CELL_CHARS} characters",
            )


def parse_transaction_type(cell: str) -> str:
    """Return BON or BOF from a cell in any case; raises RowRejected."""
    value = cell.strip()
    if not value:
        raise RowRejected(
            COLUMN_NAMES[0], value, "empty transaction type, expected BON or BOF"
        )
    if value.upper() not in (BOOK_ON, BOOK_OFF):
        raise RowRejected(
            COLUMN_NAMES[0], value, "unknown transaction type, expected BON or BOF"
        )
    return value.upper()


def parse_employee_id(cell: str) -> str:
    """Return the canonical id; raises RowRejected when empty or malformed."""
    value = cell.strip()
    if not value:
        raise RowRejected(COLUMN_NAMES[1], value, "empty employee id")
    if not _EMPLOYEE_ID.fullmatch(value):
        raise RowRejected(
            COLUMN_NAMES[1],
            value,
            "malformed employee id, expected ASCII letters, digits, - and _ only",
        )
    return canonical_employee_id(value)


def parse_event_time(date_cell: str, time_cell: str) -> datetime:
    """Combine Clocking_Date (YYYYMMDD) and Clocking_Time (HHMMSS, short
    values left-padded) into a naive site-local time; raises RowRejected."""
    date_value, time_value = date_cell.strip(), time_cell.strip()
    _require_pattern(COLUMN_NAMES[3], date_value, _DATE, "YYYYMMDD", "date")
    _require_pattern(COLUMN_NAMES[4], time_value, _TIME, "HHMMSS", "time")
    padded = time_value.zfill(6)
    try:
        day = datetime(int(date_value[:4]), int(date_value[4:6]), int(date_value[6:]))
    except ValueError:
        raise RowRejected(
            COLUMN_NAMES[3], date_value, "impossible date, expected YYYYMMDD"
        ) from None
    try:
        return day.replace(
            hour=int(padded[:2]), minute=int(padded[2:4]), second=int(padded[4:])
        )
    except ValueError:
        raise RowRejected(
            COLUMN_NAMES[4], time_value, "impossible time, expected HHMMSS"
        ) from None


def parse_created_time(cell: str) -> datetime | None:
    """Read DateTime_Created (YYYYMMDDHHMMSS); None when empty or malformed.

    It only breaks ties, so a bad value must not cost the row its event.
    """
    value = cell.strip()
    if not _CREATED.fullmatch(value):
        return None
    # Slicing beats strptime several times over on a million-row backlog.
    try:
        return datetime(
            int(value[:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[8:10]),
            int(value[10:12]),
            int(value[12:14]),
        )
    except ValueError:
        return None


def latest_per_employee(
    entries: Iterable[tuple[int, BOBOEntry]],
) -> dict[str, BOBOEntry]:
    """Keep the winning entry per canonical employee id.

    ``entries`` pairs each entry with its file's order in the batch; it is
    consumed once, holding only the current winners.
    """
    winners: dict[str, tuple[tuple, BOBOEntry]] = {}
    for file_order, entry in entries:
        key = entry.winner_key(file_order)
        current = winners.get(entry.employee_id)
        if current is None or key > current[0]:
            winners[entry.employee_id] = (key, entry)
    return {employee_id: entry for employee_id, (_, entry) in winners.items()}


def _require_pattern(
    column: str, value: str, pattern: re.Pattern[str], layout: str, noun: str
) -> None:
    if not value:
        raise RowRejected(column, value, f"empty {noun}, expected {layout}")
    if not pattern.fullmatch(value):
        raise RowRejected(column, value, f"malformed {noun}, expected {layout}")


def _column_name(index: int) -> str:
    if index < COLUMN_COUNT:
        return COLUMN_NAMES[index]
    return f"cell {index + 1}"
