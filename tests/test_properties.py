"""Properties of parsing, of "which event wins" and of the whole daemon.

Hypothesis builds the inputs; every check compares against a small model
written here from ../shared/bobo-format.md. The examples are derandomized
(the same on every run and in CI) and few enough for the file to run in
seconds.
"""

from __future__ import annotations

import codecs
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bobosync.athoc_client import AtHocClient
from bobosync.bobo_entry import BOBOEntry, latest_per_employee
from bobosync.bobo_processor import BOBOProcessor
from bobosync.clock import ManualClock
from bobosync.csv_reader import parse_bobo_text, read_bobo_file
from bobosync.simulator import AtHocSimulator
from tests.conftest import CASE_TIME, CASE_USERS, DUTY, settings_for

PURE = settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
END_TO_END = settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

HEADER = (
    "Transaction_Type,Employee_ID,Payroll_ID,Clocking_Date,Clocking_Time,"
    "DateTime_Created,Geo_Status,Geo_Latitude,Geo_Longitude,Geo_Accuracy"
)
LINE_ENDS = ["\r\n", "\n", "\r"]
# Cell text that holds no separator, quote, line break or NUL (binary).
PLAIN_TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=["Cs"], blacklist_characters=',;"\r\n\x00'
    ),
    max_size=12,
)
ASCII_ID = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,9}", fullmatch=True)
WHITESPACE = st.sampled_from(["", " ", "  ", "\t", " \t "])


# -- (a) parsing: every line is an entry, a rejected row or blank ---------


@dataclass(frozen=True)
class Line:
    """One generated physical line and what the parser must make of it."""

    text: str
    kind: str  # "valid", "invalid", "blank" or "header"
    transaction_type: str = ""
    employee_id: str = ""
    event_time: datetime | None = None
    column: str = ""


def model_canonical_id(raw: str) -> str:
    """R1: trimmed, and without leading zeros when all digits."""
    raw = raw.strip()
    if raw.isascii() and raw.isdigit():
        return raw.lstrip("0") or "0"
    return raw


@st.composite
def mixed_case(draw: st.DrawFn, word: str) -> str:
    flags = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(
        c.upper() if up else c.lower() for c, up in zip(word, flags, strict=False)
    )


@st.composite
def padded(draw: st.DrawFn, cell: str) -> str:
    """The cell with white space around it, or in quotes."""
    if draw(st.booleans()):
        return '"' + cell.replace('"', '""') + '"'
    return draw(WHITESPACE) + cell + draw(WHITESPACE)


@st.composite
def employee_ids(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(ASCII_ID)
    number = draw(st.integers(min_value=0, max_value=999_999))
    return "0" * draw(st.integers(min_value=0, max_value=4)) + str(number)


@st.composite
def clocking_times(draw: st.DrawFn) -> tuple[str, time]:
    """HHMMSS, or with its leading zeros dropped as Excel does (R2)."""
    moment = draw(st.times()).replace(microsecond=0)
    text = moment.strftime("%H%M%S")
    if draw(st.booleans()):
        text = str(int(text))
    return text, moment


@st.composite
def valid_lines(draw: st.DrawFn) -> Line:
    kind = draw(st.sampled_from(["BON", "BOF"]))
    raw_id = draw(employee_ids())
    day = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))
    time_text, moment = draw(clocking_times())
    created = draw(st.sampled_from(["", "20250314080001", "2025031408", "x"]))
    geo = draw(st.lists(PLAIN_TEXT, min_size=4, max_size=4))
    cells = [
        draw(padded(draw(mixed_case(kind)))),
        draw(padded(raw_id)),
        draw(padded(draw(PLAIN_TEXT).strip())),
        draw(padded(day.strftime("%Y%m%d"))),
        draw(padded(time_text)),
        created,
        *geo,
    ] + [""] * draw(st.integers(min_value=0, max_value=2))
    return Line(
        ",".join(cells),
        "valid",
        transaction_type=kind,
        employee_id=model_canonical_id(raw_id),
        event_time=datetime.combine(day, moment),
    )


GOOD_ROW = ["BON", "00417", "700417", "20250314", "071502", "", "1", "", "", ""]
# (column index or None for the whole row, bad value, column reported)
BAD_CELLS = [
    (0, "BRK", "Transaction_Type"),
    (0, "", "Transaction_Type"),
    (0, "BONX", "Transaction_Type"),
    (1, "", "Employee_ID"),
    (1, "12 34", "Employee_ID"),
    (1, "a.b", "Employee_ID"),
    (3, "20250230", "Clocking_Date"),
    (3, "2025031", "Clocking_Date"),
    (3, "", "Clocking_Date"),
    (4, "246100", "Clocking_Time"),
    (4, "1234567", "Clocking_Time"),
    (4, "12:00", "Clocking_Time"),
    (2, "P" * 1001, "Payroll_ID"),
]


@st.composite
def invalid_lines(draw: st.DrawFn) -> Line:
    shape = draw(st.sampled_from(["cell", "short", "long", "quote"]))
    cells = list(GOOD_ROW)
    column = "row"
    if shape == "cell":
        index, value, column = draw(st.sampled_from(BAD_CELLS))
        cells[index] = draw(WHITESPACE) + value if value.strip() else value
    elif shape == "short":
        cells = cells[: draw(st.integers(min_value=2, max_value=9))]
    elif shape == "long":
        cells += ["", "surplus"]
    else:
        cells[2] = '"' + cells[2]
    return Line(",".join(cells), "invalid", column=column)


BLANK_LINES = st.sampled_from(["", " ", "\t", ",,,,,,,,,", " , ,\t,", '"",""'])
HEADER_LINES = st.builds(lambda h, pad: pad + h, mixed_case(HEADER), WHITESPACE)


@st.composite
def files_of_lines(draw: st.DrawFn) -> tuple[str, list[Line]]:
    lines = draw(
        st.lists(
            st.one_of(
                valid_lines(),
                invalid_lines(),
                BLANK_LINES.map(lambda text: Line(text, "blank")),
                HEADER_LINES.map(lambda text: Line(text, "header")),
            ),
            max_size=25,
        )
    )
    end = draw(st.sampled_from(LINE_ENDS))
    text = end.join(line.text for line in lines)
    # A last line that is empty exists only when a line end follows it.
    if lines and (lines[-1].text == "" or draw(st.booleans())):
        text += end
    if lines and draw(st.booleans()):
        text = "\ufeff" + text
    return text, lines


@PURE
@given(files_of_lines())
def test_every_generated_line_is_an_entry_a_rejected_row_or_skipped(file):
    text, lines = file

    parsed = parse_bobo_text(text, "random.csv")

    entries = {entry.line_number: entry for entry in parsed.entries}
    rejected = {row.line_number: row for row in parsed.rejected}
    for number, line in enumerate(lines, start=1):
        if line.kind == "valid":
            entry = entries.pop(number)
            assert entry.transaction_type == line.transaction_type
            assert entry.employee_id == line.employee_id
            assert entry.event_time == line.event_time
        elif line.kind == "invalid":
            assert rejected.pop(number).column == line.column
            assert number not in entries
    assert entries == {} and rejected == {}
    assert parsed.blank_rows == sum(1 for line in lines if line.kind == "blank")
    assert parsed.delimiter == ","
    assert len(parsed.warnings) <= 1  # bad geo values: once per file


def can_be_blank(line: str) -> bool:
    """Only white space, separators and quotes: the parser may skip it."""
    return all(c.isspace() or c in ',;"\ufeff' for c in line)


# Not a header, nor Excel's "sep=;" line: both are skipped without a count.
JUNK_LINES = st.text(
    alphabet=st.characters(
        blacklist_categories=["Cs"], blacklist_characters="\r\n\x00"
    ),
    max_size=40,
).filter(lambda text: not re.search("transaction_type|sep=", text, re.IGNORECASE))


@PURE
@given(
    st.lists(
        st.one_of(JUNK_LINES, valid_lines().map(lambda line: line.text)),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from(LINE_ENDS),
)
def test_no_physical_line_with_content_is_lost(lines, end):
    parsed = parse_bobo_text(end.join(lines) + end, "junk.csv")

    taken = [entry.line_number for entry in parsed.entries]
    taken += [row.line_number for row in parsed.rejected]
    assert len(taken) == len(set(taken)) == parsed.data_rows
    for number, line in enumerate(lines, start=1):
        if number not in taken:
            assert can_be_blank(line), f"line {number} {line!r} vanished"
    assert parsed.data_rows + parsed.blank_rows == len(lines)


@PURE
@given(st.text(max_size=300))
def test_any_text_parses_without_raising(text):
    parsed = parse_bobo_text(text, "any.csv")

    assert parsed.data_rows == len(parsed.entries) + len(parsed.rejected)
    assert parsed.valid_rows == len(parsed.entries)


FILE_BYTES = st.one_of(
    st.binary(max_size=400),
    files_of_lines().map(lambda file: file[0].encode("utf-8")),
    files_of_lines().map(lambda file: file[0].encode("cp1252", errors="replace")),
)


def summary(parsed) -> tuple:
    return (
        [(e.line_number, e.employee_id, e.event_time) for e in parsed.entries],
        [(r.line_number, r.column) for r in parsed.rejected],
        parsed.blank_rows,
        parsed.delimiter,
    )


@PURE
@given(FILE_BYTES)
def test_reading_a_file_equals_parsing_its_decoded_text(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "random.csv"
        path.write_bytes(content)
        from_file = read_bobo_file(path)

    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        assert from_file.not_bobo_reason == "not a text CSV file (UTF-16)"
        return
    text = content.removeprefix(codecs.BOM_UTF8)
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        decoded = text.decode("cp1252", errors="replace")
        assert from_file.encoding == "cp1252"
    assert summary(from_file) == summary(parse_bobo_text(decoded, "random.csv"))


# -- (b) which event wins ------------------------------------------------

EVENT_DAY = datetime(2025, 3, 14)


@dataclass(frozen=True)
class Event:
    file_index: int
    employee_id: str
    transaction_type: str
    minute: int
    created_second: int | None


events_strategy = st.lists(
    st.builds(
        Event,
        file_index=st.integers(min_value=0, max_value=3),
        employee_id=st.sampled_from(["417", "4170", "9", "AB-1"]),
        transaction_type=st.sampled_from(["BON", "BOF"]),
        # Few distinct values, so ties on time and on created are common.
        minute=st.integers(min_value=0, max_value=3),
        created_second=st.one_of(st.none(), st.integers(min_value=0, max_value=2)),
    ),
    max_size=30,
)


def as_entries(events: list[Event]) -> list[tuple[int, BOBOEntry]]:
    """(file order, entry) pairs; lines count from 1 in each file."""
    next_line: dict[int, int] = {}
    pairs = []
    for event in events:
        line = next_line.get(event.file_index, 0) + 1
        next_line[event.file_index] = line
        created = None
        if event.created_second is not None:
            created = EVENT_DAY + timedelta(hours=12, seconds=event.created_second)
        entry = BOBOEntry(
            transaction_type=event.transaction_type,
            employee_id=event.employee_id,
            raw_employee_id=event.employee_id,
            event_time=EVENT_DAY + timedelta(minutes=event.minute),
            created_time=created,
            source_file=f"file{event.file_index}.csv",
            line_number=line,
        )
        pairs.append((event.file_index, entry))
    return pairs


def model_winners(pairs: list[tuple[int, BOBOEntry]]) -> dict[str, BOBOEntry]:
    """R6 written out: latest time, then DateTime_Created (a missing one
    loses), then the later file, then the later line."""

    def rank(pair: tuple[int, BOBOEntry]) -> tuple:
        order, entry = pair
        created = entry.created_time
        return (
            entry.event_time,
            created is not None,
            created or datetime.min,
            order,
            entry.line_number,
        )

    winners: dict[str, BOBOEntry] = {}
    for employee_id in {entry.employee_id for _, entry in pairs}:
        own = [pair for pair in pairs if pair[1].employee_id == employee_id]
        winners[employee_id] = max(own, key=rank)[1]
    return winners


@PURE
@given(events_strategy, st.randoms(use_true_random=False))
def test_latest_per_employee_matches_the_model_in_any_order(events, rng):
    pairs = as_entries(events)
    shuffled = list(pairs)
    rng.shuffle(shuffled)

    assert latest_per_employee(shuffled) == model_winners(pairs)


@PURE
@given(events_strategy)
def test_winners_per_file_then_per_batch_equal_the_model(events):
    pairs = as_entries(events)
    orders = sorted({order for order, _ in pairs})
    per_file = {
        order: latest_per_employee(pair for pair in pairs if pair[0] == order)
        for order in orders
    }
    batch = latest_per_employee(
        (order, entry) for order in orders for entry in per_file[order].values()
    )

    assert batch == model_winners(pairs)


# -- (c) the whole daemon against the simulator ---------------------------

# Collar-Number of each case user, as the canonical id.
USER_IDS = {user["LOGIN_ID"]: str(int(user["Collar-Number"])) for user in CASE_USERS}
AUTO_CLEANUP_HOURS = 24
WINDOW_START = CASE_TIME - timedelta(hours=36)
WINDOW_SECONDS = int((CASE_TIME - WINDOW_START).total_seconds()) - 1


@pytest.fixture(scope="module")
def shared_simulator() -> Iterator[AtHocSimulator]:
    """One simulator for all examples; each example resets the values."""
    with AtHocSimulator(CASE_USERS) as running:
        yield running


@dataclass(frozen=True)
class Booking:
    login: str
    transaction_type: str
    event_time: datetime
    id_zeros: int
    file_index: int


@st.composite
def bookings(draw: st.DrawFn) -> list[Booking]:
    """Events of the case users, with distinct times per user: a tie
    across ticks is settled by R6's "not newer" rule, not by the model."""
    result = []
    for login in USER_IDS:
        offsets = draw(
            st.lists(
                st.integers(min_value=0, max_value=WINDOW_SECONDS),
                max_size=4,
                unique=True,
            )
        )
        for offset in offsets:
            result.append(
                Booking(
                    login,
                    draw(st.sampled_from(["BON", "BOF"])),
                    WINDOW_START + timedelta(seconds=offset),
                    draw(st.integers(min_value=0, max_value=3)),
                    draw(st.integers(min_value=0, max_value=4)),
                )
            )
    return draw(st.permutations(result))


def expected_duty(bookings_made: list[Booking]) -> dict[str, str | None]:
    """The latest event per user; a book-on older than AUTO_CLEANUP_HOURS
    is never sent, and then everything before it is older still, so the
    field stays empty (None in the simulator)."""
    cutoff = CASE_TIME - timedelta(hours=AUTO_CLEANUP_HOURS)
    expected: dict[str, str | None] = {login: None for login in USER_IDS}
    for login in USER_IDS:
        own = [b for b in bookings_made if b.login == login]
        if not own:
            continue
        latest = max(own, key=lambda b: b.event_time)
        if latest.transaction_type == "BON" and latest.event_time >= cutoff:
            expected[login] = latest.event_time.strftime("%d/%m/%Y %H:%M:%S")
    return expected


def csv_row(booking: Booking) -> str:
    employee_id = "0" * booking.id_zeros + USER_IDS[booking.login]
    stamp = booking.event_time
    return ",".join(
        [
            booking.transaction_type,
            employee_id,
            "7" + employee_id,
            stamp.strftime("%Y%m%d"),
            stamp.strftime("%H%M%S"),
            (stamp + timedelta(seconds=1)).strftime("%Y%m%d%H%M%S"),
            "1",
            "",
            "",
            "",
        ]
    )


def write_tick_files(
    folder: Path, bookings_made: list[Booking], file_indexes: list[int], clock
) -> None:
    """Write this tick's files, oldest first in the given order."""
    for position, index in enumerate(file_indexes):
        rows = [csv_row(b) for b in bookings_made if b.file_index == index]
        if not rows:
            continue
        path = folder / f"BOBO_{index}.csv"
        path.write_bytes(("\r\n".join(rows) + "\r\n").encode("utf-8"))
        stamp = clock.timestamp() - 100 + position
        os.utime(path, (stamp, stamp))


def run_ticks(
    processor: BOBOProcessor, bookings_made: list[Booking], tick_of_file: list[int]
) -> None:
    """Drop each file in the tick it is given, then run that tick."""
    folder = processor.settings.csv_directory
    for tick in range(max(tick_of_file) + 1):
        files = [i for i, t in enumerate(tick_of_file) if t == tick]
        write_tick_files(folder, bookings_made, files, processor.clock)
        report = processor.run_tick()
        assert report.is_success, report.outage
    assert list(folder.iterdir()) == []


def reset_duty_values(simulator: AtHocSimulator) -> None:
    for login in USER_IDS:
        simulator.set_attribute(login, DUTY, None)
    simulator.reset_records()


@END_TO_END
@given(
    bookings(),
    st.integers(min_value=1, max_value=7),
    st.lists(st.integers(min_value=0, max_value=2), min_size=5, max_size=5),
)
def test_final_duty_values_are_the_latest_event_per_user(
    shared_simulator, bookings_made, chunk_size, tick_of_file
):
    reset_duty_values(shared_simulator)
    clock = ManualClock(CASE_TIME)
    with tempfile.TemporaryDirectory() as folder:
        config = settings_for(
            Path(folder), shared_simulator, sync_chunk_size=chunk_size
        )
        config.csv_directory.mkdir()
        client = AtHocClient(config, clock=clock, retry_backoff_seconds=0.0)
        processor = BOBOProcessor(config, client=client, clock=clock)
        try:
            run_ticks(processor, bookings_made, tick_of_file)
        finally:
            processor.close()

    cutoff = CASE_TIME - timedelta(hours=AUTO_CLEANUP_HOURS)
    for call in shared_simulator.sync_calls:
        assert len(call) <= chunk_size
        for update in call:
            if update[DUTY]:
                sent_time = datetime.strptime(update[DUTY], "%d/%m/%Y %H:%M:%S")
                assert sent_time >= cutoff, f"expired book-on sent: {update}"
    actual = {login: shared_simulator.attribute(login, DUTY) for login in USER_IDS}
    assert actual == expected_duty(bookings_made)
