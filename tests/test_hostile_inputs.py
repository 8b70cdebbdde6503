"""Inputs a tester built to break bobosync: odd file names, links, Excel's
``sep=`` line, UTF-16 and binary files, exotic ids, huge lines, long names,
short secrets, a DB_PATH that is no database and ``#`` in a `.env` value.

End to end through the processor and the AtHoc simulator where the daemon's
behaviour is at stake; the clock reads 14/03/2025 23:00:00.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from pathlib import Path

import pytest

from bobosync.athoc_client import AtHocClient
from bobosync.csv_reader import MAX_LINE_CHARS, RejectedRow, read_bobo_file
from bobosync.database import BOBODatabase
from bobosync.errors import ApiError, StoreError
from bobosync.settings import load_settings
from tests.conftest import DUTY, case_file, copy_case, folder_names, sent_in

B01_SENT = {
    "t.ashby": "14/03/2025 07:15:02",
    "r.okafor": "14/03/2025 07:20:10",
    "m.lindqvist": "",
}
ROW_417 = "BON,00417,700417,20250314,071502,20250314071505,1,,,"
ROW_9 = "BOF,00009,700009,20250314,073000,20250314073003,0,,,"
STAMP = "_20250314_230000"
NOT_UTF8_NAME = b"M\xe4rz.csv"


def run_tick(processor, simulator, caplog):
    """One tick; returns (sent updates, WARNING texts, DEBUG texts)."""
    simulator.reset_records()
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        report = processor.run_tick()
    assert report.is_success, report.outage
    texts = {level: [] for level in (logging.DEBUG, logging.WARNING)}
    for record in caplog.records:
        texts.get(record.levelno, []).append(record.getMessage())
    return sent_in(simulator), texts[logging.WARNING], texts[logging.DEBUG]


def write_lines(path: Path, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{line}\r\n" for line in lines).encode("utf-8"))
    return path


# -- 1. a file name that is not UTF-8 -------------------------------------


@pytest.mark.skipif(
    sys.platform != "linux", reason="only Linux stores names that are not UTF-8"
)
def test_name_not_utf8_is_ignored_with_one_warning_and_others_sync(
    make_processor, simulator, caplog
):
    processor = make_processor()
    inbox = processor.settings.csv_directory
    with open(os.fsencode(inbox) + b"/" + NOT_UTF8_NAME, "wb") as stream:
        stream.write(f"{ROW_417}\r\n".encode())
    copy_case("B01_bom_utf8.csv", inbox)

    sent, warnings, _ = run_tick(processor, simulator, caplog)
    _, warnings_again, _ = run_tick(processor, simulator, caplog)

    shown = repr(os.fsdecode(NOT_UTF8_NAME))
    assert sent == B01_SENT
    assert warnings == [
        f"file ignored, its name cannot be moved safely: name={shown}; rename it"
        " without \\, a drive prefix, control characters or bytes that are not"
        " UTF-8"
    ]
    assert warnings_again == []
    assert os.listdir(os.fsencode(inbox)) == [NOT_UTF8_NAME]


# -- 2. links named *.csv ---------------------------------------------------


def test_symlink_named_csv_is_ignored_and_its_target_left_alone(
    make_processor, simulator, caplog, tmp_path
):
    processor = make_processor()
    inbox = processor.settings.csv_directory
    outside = copy_case("B01_bom_utf8.csv", tmp_path / "elsewhere")
    try:
        (inbox / "link.csv").symlink_to(outside)
    except OSError:
        pytest.skip("this account may not create symbolic links")

    sent, warnings, debug = run_tick(processor, simulator, caplog)
    _, _, debug_again = run_tick(processor, simulator, caplog)

    assert sent == {} and warnings == []
    assert "ignored (not a BOBO file): name=link.csv" in debug
    assert "ignored (not a BOBO file): name=link.csv" not in debug_again
    assert (inbox / "link.csv").is_symlink()
    assert outside.read_bytes() == case_file("B01_bom_utf8.csv").read_bytes()
    assert folder_names(processor.settings.processed_directory) == []


# -- 3. Excel's sep= first line ---------------------------------------------


@pytest.mark.parametrize(
    ("first_line", "case"),
    [
        (b"\xef\xbb\xbfsep=;", "B04_semicolon.csv"),
        (b"  SEP=; ", "B04_semicolon.csv"),
        (b"sep=,", "B01_bom_utf8.csv"),
    ],
    ids=["bom-semicolon", "upper-case-padded", "comma"],
)
def test_excel_sep_line_is_skipped_and_names_the_separator(
    first_line, case, make_processor, simulator, caplog
):
    processor = make_processor()
    rows = case_file(case).read_bytes().removeprefix(b"\xef\xbb\xbf")
    (processor.settings.csv_directory / "sep.csv").write_bytes(
        first_line + b"\r\n" + rows
    )

    sent, warnings, debug = run_tick(processor, simulator, caplog)

    assert sent == B01_SENT
    assert warnings == []
    assert "separator line skipped: file=sep.csv line=1" in debug
    assert folder_names(processor.settings.processed_directory) == ["sep.csv"]


def test_sep_line_after_the_first_line_is_an_invalid_row(tmp_path):
    path = write_lines(tmp_path / "late.csv", ROW_9, "sep=;")

    parsed = read_bobo_file(path)

    assert parsed.valid_rows == 1
    assert parsed.rejected == [
        RejectedRow(2, "sep=;", "row", "1 cell", "expected 10 cells")
    ]


# -- 4. UTF-16 and binary files; a cap on what one file costs ---------------


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"\xff\xfe" + f"{ROW_417}\r\n".encode("utf-16-le"), "UTF-16"),
        (b"\xfe\xff" + f"{ROW_417}\r\n".encode("utf-16-be"), "UTF-16"),
        (random.Random(4).randbytes(2_000_000), "binary"),
        (f"{ROW_417}\r\n".encode() + b"\x00" * 10, "binary"),
    ],
    ids=["utf16-le", "utf16-be", "random-bytes", "nul-after-a-valid-row"],
)
def test_utf16_or_binary_file_fails_whole_with_one_warning(
    content, kind, make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    (settings.csv_directory / "export.csv").write_bytes(content)

    sent, warnings, _ = run_tick(processor, simulator, caplog)

    assert sent == {}
    assert warnings[0] == (
        f"export.csv: not a text CSV file ({kind}); re-save it as CSV UTF-8"
    )
    assert not [text for text in warnings if text.startswith("row rejected")]
    assert folder_names(settings.failed_files_directory) == ["export.csv"]
    assert (settings.failed_files_directory / "export.csv").read_bytes() == content


def test_file_stops_being_read_after_1000_invalid_rows_and_no_valid_one(
    make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    garbage = [f"junk {number}" for number in range(1500)]
    write_lines(settings.csv_directory / "junk.csv", *garbage, ROW_417)

    parsed = read_bobo_file(settings.csv_directory / "junk.csv")
    sent, warnings, _ = run_tick(processor, simulator, caplog)

    assert (parsed.data_rows, len(parsed.rejected), parsed.valid_rows) == (
        1000,
        1000,
        0,
    )
    assert parsed.has_no_valid_rows
    assert sent == {}
    assert warnings[0] == (
        "junk.csv: the first 1000 data rows are all invalid; the rest is not"
        " read, it is not a BOBO file"
    )
    assert folder_names(settings.failed_files_directory) == ["junk.csv"]


def test_invalid_rows_after_a_valid_row_are_all_read(tmp_path):
    garbage = [f"junk {number}" for number in range(1500)]
    path = write_lines(tmp_path / "mixed.csv", ROW_9, *garbage, ROW_417)

    parsed = read_bobo_file(path)

    assert parsed.valid_rows == 2 and len(parsed.rejected) == 1500
    assert parsed.warnings == [] and not parsed.has_no_valid_rows


# -- 5. ids of non-ASCII digits or letters ----------------------------------


@pytest.mark.parametrize("raw_id", ["٤١٧٠", "²", "４１７", "José"])
def test_non_ascii_id_is_an_invalid_row(raw_id, tmp_path):
    path = write_lines(tmp_path / "ids.csv", ROW_417.replace("00417", raw_id))

    parsed = read_bobo_file(path)

    assert parsed.rejected == [
        RejectedRow(
            1,
            ROW_417.replace("00417", raw_id),
            "Employee_ID",
            raw_id,
            "malformed employee id, expected ASCII letters, digits, - and _ only",
        )
    ]


# -- 6. a line far too long -------------------------------------------------


def test_overlong_line_is_rejected_with_its_length(tmp_path):
    huge = "BON," + "7" * (MAX_LINE_CHARS * 64)
    path = write_lines(tmp_path / "huge.csv", huge, ROW_9)

    parsed = read_bobo_file(path)

    assert parsed.valid_rows == 1
    [row] = parsed.rejected
    assert (row.line_number, row.column, row.text) == (1, "row", huge[:MAX_LINE_CHARS])
    assert row.reason == f"line too long ({len(huge)} characters)"


# -- 7. a taken name whose suffixed form exceeds 255 bytes ------------------


@pytest.mark.skipif(sys.platform == "win32", reason="MAX_PATH limits long paths")
def test_taken_long_name_is_shortened_to_fit_255_bytes(
    make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    name = "Schicht_" + "ä" * 118 + ".csv"  # 248 bytes in UTF-8
    copy_case("B01_bom_utf8.csv", settings.csv_directory, as_name=name)
    run_tick(processor, simulator, caplog)
    write_lines(settings.csv_directory / name, ROW_9.replace("073000", "080000"))

    sent, warnings, _ = run_tick(processor, simulator, caplog)

    shortened = "Schicht_" + "ä" * 113 + STAMP + ".csv"
    assert sent == {"m.lindqvist": ""} and warnings == []
    assert folder_names(settings.processed_directory) == sorted([name, shortened])
    assert len(shortened.encode("utf-8")) == 254  # no half "ä" at 255


@pytest.mark.skipif(sys.platform == "win32", reason="MAX_PATH limits long paths")
def test_rejected_report_of_a_long_name_keeps_its_extension(
    make_processor, simulator, caplog
):
    processor = make_processor()
    settings = processor.settings
    name = "a" * 246 + ".csv"
    write_lines(settings.csv_directory / name, ROW_9, "junk")

    sent, _, _ = run_tick(processor, simulator, caplog)

    report = "a" * 238 + ".csv.rejected.csv"
    assert sent == {"m.lindqvist": ""}
    assert folder_names(settings.failed_files_directory) == [report]
    assert len(report.encode("utf-8")) == 255
    assert (settings.failed_files_directory / report).read_bytes() == (
        b"junk,\"REJECTED line 2: row '1 cell': expected 10 cells\"\r\n"
    )


# -- 8. a secret of 1-3 characters ------------------------------------------


@pytest.mark.parametrize(
    ("password", "shown"),
    [
        ("x", "Unable to connect to proxy server"),
        ("roxy", "Unable to connect to p*** server"),
    ],
)
def test_only_secrets_of_four_or_more_characters_are_masked(
    password, shown, make_settings, simulator, clock
):
    simulator.set_password(password)
    settings = make_settings(password=password)
    client = AtHocClient(settings, clock=clock, retry_backoff_seconds=0.0)
    simulator.fail_always("sync", 400, body="Unable to connect to proxy server")

    with pytest.raises(ApiError) as caught:
        client.sync_users_by_common_names([{"LOGIN_ID": "t.ashby", DUTY: ""}])

    assert shown in str(caught.value)


# -- 9. DB_PATH naming a file that is not SQLite ----------------------------


def test_db_path_that_is_not_sqlite_says_so(tmp_path):
    path = tmp_path / "bobo_sync.db"
    path.write_bytes(b"Transaction_Type,Employee_ID\r\n" * 200)

    with pytest.raises(StoreError) as caught:
        BOBODatabase(path)

    assert str(caught.value) == (
        f"DB_PATH {path} is not a SQLite database (file is not a database); "
        "move that file aside or point DB_PATH at another file"
    )


# -- 10. a .env value holding " #" ------------------------------------------


def test_single_quoted_value_keeps_its_hash(tmp_path):
    env_file = write_lines(
        tmp_path / "hash" / ".env",
        "ATHOC_SERVER_URL=https://athoc.example.org",
        "CLIENT_ID=bobo-client",
        "CLIENT_SECRET=cs-Secret-123",
        "APIUSER=svc_bobo_sync",
        "PASSWORD='Sec #r3t'",
        "ORG_CODE=1234",
    )

    settings = load_settings(env_file, environ={})

    assert settings.password == "Sec #r3t"
