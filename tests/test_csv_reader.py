"""Tests of bobosync.csv_reader: bytes of a file to entries and rejections.

The case fixtures are copied here byte for byte from ../shared/cases/ (see
EXPECTED.md); a test checks the copies against the originals when present.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from bobosync.csv_reader import (
    MAX_LINE_CHARS,
    ParsedFile,
    RejectedRow,
    format_rejected_rows,
    iter_bobo_entries,
    parse_bobo_text,
    read_bobo_file,
)

SHARED_CASES = Path(__file__).resolve().parents[2] / "shared" / "cases"

HEADER = (
    b"Transaction_Type,Employee_ID,Payroll_ID,Clocking_Date,Clocking_Time,"
    b"DateTime_Created,Geo_Status,Geo_Latitude,Geo_Longitude,Geo_Accuracy\r\n"
)
ROW_417 = b"BON,00417,700417,20250314,071502,20250314071505,1,51.507351,-0.127758,12.5"
ROW_4170 = b"BON,04170,704170,20250314,072010,20250314072014,1,,,"
ROW_9 = b"BOF,00009,700009,20250314,073000,20250314073003,0,,,"
B01_ROWS = ROW_417 + b"\r\n" + ROW_4170 + b"\r\n" + ROW_9 + b"\r\n"
BOM = b"\xef\xbb\xbf"

CASE_FILES: dict[str, bytes] = {
    "B01_bom_utf8.csv": BOM + B01_ROWS,
    "B01b_bom_utf8_with_header.csv": BOM + HEADER + B01_ROWS,
    "B03_leading_zeros.csv": (
        ROW_417 + b"\r\n"
        b"BOF,417,700417,20250314,91502,20250314091505,1,51.507351,-0.127758,12.5\r\n"
        b"BON,9,700009,20250314,512,20250314000515,0,,,\r\n"
        b"BOF,4170,704170,20250314,93000,20250314093004,1,,,\r\n"
        b"BON,123456,712345,20250314,094500,20250314094502,1,,,\r\n"
    ),
    "B04_semicolon.csv": (
        b"BON;00417;700417;20250314;071502;20250314071505;1;"
        b"51,507351;-0,127758;12,5\r\n"
        b"BON;04170;704170;20250314;072010;20250314072014;1;;;\r\n"
        b"BOF;00009;700009;20250314;073000;20250314073003;0;;;\r\n"
    ),
    "B05_trailing_blank_lines.csv": B01_ROWS + b"\r\n,,,,,,,,,\r\n,,,,,,,,,\r\n\r\n",
    "B08_empty.csv": b"",
    "N01a_duplicates.csv": (
        ROW_417 + b"\r\n" + ROW_417 + b"\r\n" + ROW_4170 + b"\r\n" + ROW_417 + b"\r\n"
    ),
    "N04_with_header.csv": HEADER + ROW_417 + b"\r\n" + ROW_4170 + b"\r\n",
    "N05_header_only.csv": HEADER,
    "N06_unknown_type.csv": (
        ROW_417 + b"\r\n"
        b"BRK,04170,704170,20250314,120000,20250314120003,1,,,\r\n"
        b"bof,00009,700009,20250314,160000,20250314160002,1,,,\r\n"
        b" BOF ,00422,700422,20250314,161500,20250314161501,1,,,\r\n"
        b",01234,701234,20250314,162000,20250314162001,1,,,\r\n"
    ),
    "N07a_quoted_commas.csv": (
        b'"BON","00417","700417","20250314","071502","20250314071505","1",'
        b'"51.507351","-0.127758","12.5"\r\n'
        b'BON,04170,"70,4170",20250314,072010,20250314072014,1,,,\r\n'
        b'BOF,00009,"PR""0009",20250314,073000,20250314073003,0,,,\r\n'
    ),
    "N08a_no_final_newline.csv": ROW_417 + b"\r\n" + ROW_4170 + b"\r\n" + ROW_9,
}

# (type, canonical id, event time, line) of each valid row.
B01_ENTRIES = [
    ("BON", "417", "2025-03-14 07:15:02", 1),
    ("BON", "4170", "2025-03-14 07:20:10", 2),
    ("BOF", "9", "2025-03-14 07:30:00", 3),
]
B01B_ENTRIES = [(kind, id_, time, line + 1) for kind, id_, time, line in B01_ENTRIES]


def write_case(directory: Path, name: str, content: bytes) -> Path:
    path = directory / name
    path.write_bytes(content)
    return path


def summary_of(parsed: ParsedFile) -> list[tuple[str, str, str, int]]:
    return [
        (
            item.transaction_type,
            item.employee_id,
            item.event_time.isoformat(sep=" "),
            item.line_number,
        )
        for item in parsed.entries
    ]


@pytest.mark.parametrize("name", sorted(CASE_FILES))
def test_fixture_copies_match_the_shared_cases(name: str) -> None:
    original = SHARED_CASES / name
    if not original.exists():
        pytest.skip(f"{original} not present")
    assert CASE_FILES[name] == original.read_bytes()


@pytest.mark.parametrize(
    ("name", "expected_entries", "has_header", "blank_rows"),
    [
        ("B01_bom_utf8.csv", B01_ENTRIES, False, 0),
        ("B01b_bom_utf8_with_header.csv", B01B_ENTRIES, True, 0),
        (
            "B03_leading_zeros.csv",
            [
                ("BON", "417", "2025-03-14 07:15:02", 1),
                ("BOF", "417", "2025-03-14 09:15:02", 2),
                ("BON", "9", "2025-03-14 00:05:12", 3),
                ("BOF", "4170", "2025-03-14 09:30:00", 4),
                ("BON", "123456", "2025-03-14 09:45:00", 5),
            ],
            False,
            0,
        ),
        ("B05_trailing_blank_lines.csv", B01_ENTRIES, False, 4),
        (
            "N01a_duplicates.csv",
            [
                ("BON", "417", "2025-03-14 07:15:02", 1),
                ("BON", "417", "2025-03-14 07:15:02", 2),
                ("BON", "4170", "2025-03-14 07:20:10", 3),
                ("BON", "417", "2025-03-14 07:15:02", 4),
            ],
            False,
            0,
        ),
        ("N04_with_header.csv", B01B_ENTRIES[:2], True, 0),
        ("N07a_quoted_commas.csv", B01_ENTRIES, False, 0),
        ("N08a_no_final_newline.csv", B01_ENTRIES, False, 0),
    ],
)
def test_b01_b01b_b03_b05_n01a_n04_n07a_n08a_cases_read_cleanly(
    tmp_path: Path,
    name: str,
    expected_entries: list[tuple[str, str, str, int]],
    has_header: bool,
    blank_rows: int,
) -> None:
    parsed = read_bobo_file(write_case(tmp_path, name, CASE_FILES[name]))

    assert summary_of(parsed) == expected_entries
    assert parsed.rejected == []
    assert parsed.warnings == []
    assert parsed.has_header is has_header
    assert parsed.blank_rows == blank_rows
    assert parsed.data_rows == parsed.valid_rows == len(expected_entries)
    assert parsed.delimiter == ","
    assert not parsed.is_empty and not parsed.has_no_valid_rows


def test_b01_byte_order_mark_is_not_part_of_the_first_cell(tmp_path: Path) -> None:
    path = write_case(tmp_path, "B01_bom_utf8.csv", CASE_FILES["B01_bom_utf8.csv"])

    parsed = read_bobo_file(path)

    assert parsed.entries[0].transaction_type == "BON"
    assert parsed.entries[0].raw_employee_id == "00417"
    assert parsed.encoding == "utf-8-sig"


def test_b03_keeps_raw_ids_beside_canonical_ones(tmp_path: Path) -> None:
    path = write_case(tmp_path, "B03.csv", CASE_FILES["B03_leading_zeros.csv"])

    parsed = read_bobo_file(path)

    assert [item.raw_employee_id for item in parsed.entries] == [
        "00417",
        "417",
        "9",
        "4170",
        "123456",
    ]
    assert all(item.source_file == "B03.csv" for item in parsed.entries)


def test_b04_semicolon_file_is_read_with_one_warning(tmp_path: Path) -> None:
    path = write_case(tmp_path, "B04_semicolon.csv", CASE_FILES["B04_semicolon.csv"])

    parsed = read_bobo_file(path)

    assert summary_of(parsed) == B01_ENTRIES
    assert parsed.delimiter == ";"
    assert parsed.rejected == []
    assert parsed.warnings == [
        "B04_semicolon.csv: rows split into 10 cells on ';', not on ','; "
        "read with ';' as separator"
    ]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("B08_empty.csv", CASE_FILES["B08_empty.csv"]),
        ("N05_header_only.csv", CASE_FILES["N05_header_only.csv"]),
        ("blank_only.csv", b"\r\n  \r\n,,,,,,,,,\r\n;;;;;;;;;\r\n"),
        ("semicolon_blank.csv", b";;;;;;;;;\r\n;;;;;;;;;\r\n"),
        ("quoted_blank.csv", b'"","","","","","","","","",""\r\n'),
    ],
)
def test_b08_n05_files_without_data_rows_are_empty_not_failed(
    tmp_path: Path, name: str, content: bytes
) -> None:
    parsed = read_bobo_file(write_case(tmp_path, name, content))

    assert parsed.is_empty
    assert not parsed.has_no_valid_rows
    assert parsed.entries == [] and parsed.rejected == [] and parsed.warnings == []


def test_n06_unknown_and_empty_types_are_rejected_rest_read(tmp_path: Path) -> None:
    path = write_case(
        tmp_path, "N06_unknown_type.csv", CASE_FILES["N06_unknown_type.csv"]
    )

    parsed = read_bobo_file(path)

    assert summary_of(parsed) == [
        ("BON", "417", "2025-03-14 07:15:02", 1),
        ("BOF", "9", "2025-03-14 16:00:00", 3),
        ("BOF", "422", "2025-03-14 16:15:00", 4),
    ]
    assert parsed.rejected == [
        RejectedRow(
            line_number=2,
            text="BRK,04170,704170,20250314,120000,20250314120003,1,,,",
            column="Transaction_Type",
            value="BRK",
            reason="unknown transaction type, expected BON or BOF",
        ),
        RejectedRow(
            line_number=5,
            text=",01234,701234,20250314,162000,20250314162001,1,,,",
            column="Transaction_Type",
            value="",
            reason="empty transaction type, expected BON or BOF",
        ),
    ]
    assert parsed.warnings == []
    assert (parsed.data_rows, parsed.valid_rows) == (5, 3)


def test_n06_rejected_report_keeps_original_lines_and_reasons(tmp_path: Path) -> None:
    path = write_case(
        tmp_path, "N06_unknown_type.csv", CASE_FILES["N06_unknown_type.csv"]
    )

    report = format_rejected_rows(read_bobo_file(path).rejected)

    assert report == (
        "BRK,04170,704170,20250314,120000,20250314120003,1,,,,"
        "\"REJECTED line 2: Transaction_Type 'BRK': unknown transaction type, "
        'expected BON or BOF"\r\n'
        ",01234,701234,20250314,162000,20250314162001,1,,,,"
        "\"REJECTED line 5: Transaction_Type '': empty transaction type, "
        'expected BON or BOF"\r\n'
    )


def test_rejected_report_doubles_quotes_in_the_reason_cell() -> None:
    row = RejectedRow(3, 'x,"y', "row", '"y', "unclosed quote")

    assert format_rejected_rows([row], ";") == (
        'x,"y;"REJECTED line 3: row \'""y\': unclosed quote"\r\n'
    )


def test_file_not_valid_utf8_is_read_as_cp1252_with_one_warning(
    tmp_path: Path,
) -> None:
    content = b"BON,Jos\xe9-1,P\x81,20250314,071502,,1,,,\r\n" + ROW_9 + b"\r\n"

    parsed = read_bobo_file(write_case(tmp_path, "latin.csv", content))

    assert [item.employee_id for item in parsed.entries] == ["9"]
    assert [row.value for row in parsed.rejected] == ["José-1"]  # ids are ASCII
    assert parsed.encoding == "cp1252"
    assert parsed.warnings == [
        "latin.csv: not valid UTF-8, read as Windows-1252 (cp1252)"
    ]


def test_cp1252_file_with_byte_order_mark_and_header_skips_both(
    tmp_path: Path,
) -> None:
    content = BOM + HEADER + b"BON,00417,\xe9,20250314,071502,,1,,,\r\n"

    parsed = read_bobo_file(write_case(tmp_path, "bom_latin.csv", content))

    assert parsed.has_header
    assert summary_of(parsed) == [("BON", "417", "2025-03-14 07:15:02", 2)]


@pytest.mark.parametrize(
    ("label", "line_end"), [("crlf", b"\r\n"), ("lf", b"\n"), ("cr", b"\r")]
)
def test_every_line_end_gives_the_same_rows_and_line_numbers(
    tmp_path: Path, label: str, line_end: bytes
) -> None:
    content = line_end.join([HEADER.rstrip(), ROW_417, b"", ROW_4170, ROW_9])

    parsed = read_bobo_file(write_case(tmp_path, f"{label}.csv", content))

    assert [item.line_number for item in parsed.entries] == [2, 4, 5]
    assert parsed.blank_rows == 1
    assert parsed.entries[2].raw_employee_id == "00009"


def test_open_quote_rejects_its_line_only(tmp_path: Path) -> None:
    broken = b'BON,"00417,700417,20250314,071502,20250314071505,1,,,'
    content = broken + b"\r\n" + ROW_4170 + b"\r\n" + ROW_9 + b"\r\n"

    parsed = read_bobo_file(write_case(tmp_path, "quote.csv", content))

    assert [item.line_number for item in parsed.entries] == [2, 3]
    assert parsed.rejected == [
        RejectedRow(
            line_number=1,
            text=broken.decode(),
            column="row",
            value='"00417,700417,20250314,071502,2025031407...',
            reason="unclosed quote",
        )
    ]


@pytest.mark.parametrize(
    ("line", "column", "value", "reason"),
    [
        (
            b"BON,00417,1,20250314,071502,,1,,,,x",
            "row",
            "11 cells",
            "expected 10 cells (extra cells must be empty)",
        ),
        (b"BON,00417,1,20250314,071502,,1", "row", "7 cells", "expected 10 cells"),
        (
            b"BON,00417," + b"P" * 1001 + b",20250314,071502,,1,,,",
            "Payroll_ID",
            "P" * 40 + "...",
            "field longer than 1000 characters",
        ),
        (
            b"BON,00417,1,20250230,071502,,1,,,",
            "Clocking_Date",
            "20250230",
            "impossible date, expected YYYYMMDD",
        ),
        (
            b"BON,00417,1,20250314,246100,,1,,,",
            "Clocking_Time",
            "246100",
            "impossible time, expected HHMMSS",
        ),
        (
            b"BON,00417,1,2025031x,071502,,1,,,",
            "Clocking_Date",
            "2025031x",
            "malformed date, expected YYYYMMDD",
        ),
    ],
)
def test_invalid_rows_are_rejected_and_the_rest_is_read(
    tmp_path: Path, line: bytes, column: str, value: str, reason: str
) -> None:
    content = ROW_417 + b"\r\n" + line + b"\r\n" + ROW_9 + b"\r\n"

    parsed = read_bobo_file(write_case(tmp_path, "mixed.csv", content))

    assert [item.line_number for item in parsed.entries] == [1, 3]
    assert parsed.rejected == [RejectedRow(2, line.decode(), column, value, reason)]


def test_extra_empty_cells_are_accepted(tmp_path: Path) -> None:
    content = b"BON,00417,1,20250314,071502,,1,,,,,\r\n"

    parsed = read_bobo_file(write_case(tmp_path, "trailing.csv", content))

    assert summary_of(parsed) == [("BON", "417", "2025-03-14 07:15:02", 1)]
    assert parsed.rejected == []


def test_file_of_no_valid_rows_is_marked_for_failed(tmp_path: Path) -> None:
    content = b"drop BOBO exports here\r\n"

    parsed = read_bobo_file(write_case(tmp_path, "readme.csv", content))

    assert parsed.has_no_valid_rows and not parsed.is_empty
    assert parsed.rejected == [
        RejectedRow(1, "drop BOBO exports here", "row", "1 cell", "expected 10 cells")
    ]


def test_binary_file_is_rejected_not_raised(tmp_path: Path) -> None:
    content = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 56

    parsed = read_bobo_file(write_case(tmp_path, "thumbs.csv", content))

    assert parsed.has_no_valid_rows
    assert parsed.rejected == []
    assert parsed.warnings == [
        "thumbs.csv: not a text CSV file (binary); re-save it as CSV UTF-8"
    ]


def test_overlong_line_is_cut_and_does_not_shift_line_numbers(
    tmp_path: Path,
) -> None:
    content = b"x" * (MAX_LINE_CHARS * 3 + 5) + b"\r\n" + ROW_9 + b"\r\n"

    parsed = read_bobo_file(write_case(tmp_path, "huge.csv", content))

    assert summary_of(parsed) == [("BOF", "9", "2025-03-14 07:30:00", 2)]
    assert len(parsed.rejected[0].text) == MAX_LINE_CHARS


@pytest.mark.parametrize(
    "bad_geo_rows",
    [
        [b"BON,00417,1,20250314,071502,,x,,,", b"BOF,00009,1,20250314,073000,,1,abc,,"],
        [
            b"BON,00417,1,20250314,071502,,1,91.5,0,5",
            b"BOF,00009,1,20250314,073000,,1,,,-1",
        ],
    ],
)
def test_bad_geo_values_give_one_warning_per_file_and_keep_rows(
    tmp_path: Path, bad_geo_rows: list[bytes]
) -> None:
    content = b"\r\n".join(bad_geo_rows) + b"\r\n"

    parsed = read_bobo_file(write_case(tmp_path, "geo.csv", content))

    assert len(parsed.entries) == 2
    assert len(parsed.warnings) == 1
    assert parsed.warnings[0].startswith("geo.csv:1: ")
    assert parsed.warnings[0].endswith(
        "is not a valid geo value; geo columns are ignored (reported once per file)"
    )


def test_geo_warning_names_column_and_value(tmp_path: Path) -> None:
    content = b"BON,00417,1,20250314,071502,,1,51.5,east,5\r\n"

    parsed = read_bobo_file(write_case(tmp_path, "geo.csv", content))

    assert parsed.warnings == [
        "geo.csv:1: Geo_Longitude 'east' is not a valid geo value; "
        "geo columns are ignored (reported once per file)"
    ]


def test_semicolon_header_is_recognised(tmp_path: Path) -> None:
    content = HEADER.replace(b",", b";") + CASE_FILES["B04_semicolon.csv"]

    parsed = read_bobo_file(write_case(tmp_path, "semi.csv", content))

    assert parsed.has_header and parsed.delimiter == ";"
    assert [item.line_number for item in parsed.entries] == [2, 3, 4]


def test_header_matches_in_any_case_and_with_spaces(tmp_path: Path) -> None:
    content = b"  TRANSACTION_type ,x\r\n" + ROW_9 + b"\r\n"

    parsed = read_bobo_file(write_case(tmp_path, "upper.csv", content))

    assert parsed.has_header and parsed.rejected == []


def test_parse_bobo_text_reads_like_the_file(tmp_path: Path) -> None:
    content = CASE_FILES["N06_unknown_type.csv"]
    from_file = read_bobo_file(write_case(tmp_path, "n06.csv", content))

    from_text = parse_bobo_text(content.decode("utf-8"), "n06.csv")

    assert from_text.entries == from_file.entries
    assert from_text.rejected == from_file.rejected


def test_parse_bobo_text_strips_a_leading_byte_order_mark() -> None:
    text = CASE_FILES["B01b_bom_utf8_with_header.csv"].decode("utf-8")

    parsed = parse_bobo_text(text, "b01b.csv")

    assert parsed.has_header and len(parsed.entries) == 3


def test_iter_bobo_entries_streams_and_fills_the_summary(tmp_path: Path) -> None:
    path = write_case(tmp_path, "n06.csv", CASE_FILES["N06_unknown_type.csv"])
    summary = ParsedFile(name=path.name)

    streamed = list(iter_bobo_entries(path, summary))

    assert [item.line_number for item in streamed] == [1, 3, 4]
    assert summary.entries == []
    assert (summary.data_rows, summary.valid_rows, len(summary.rejected)) == (5, 3, 2)
    assert streamed[0].event_time == datetime(2025, 3, 14, 7, 15, 2)
