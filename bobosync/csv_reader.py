"""Read one BOBO CSV file: encoding, separator, header, physical lines.

Each physical line is one record (no BOBO field holds a line break), so a
quote left open spoils only its own line. Rows become BOBOEntry records or
RejectedRow reports; file-level problems become WARNING texts in
ParsedFile.warnings for the caller to log. See ../shared/bobo-format.md,
"The CSV file".
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import BinaryIO, TextIO

from bobosync.bobo_entry import (
    COLUMN_COUNT,
    COLUMN_NAMES,
    ROW_COLUMN,
    BOBOEntry,
    RowRejected,
    shorten_value,
)

logger = logging.getLogger(__name__)

HEADER_FIRST_CELL = "transaction_type"
COMMA = ","
SEMICOLON = ";"
UTF8 = "utf-8"
UTF8_WITH_BOM = "utf-8-sig"
WINDOWS_1252 = "cp1252"
BOM = "\ufeff"
# Lines the separator detection looks at: enough for any real export.
SNIFF_LINES = 1000
# A physical line longer than this cannot be a BOBO row (10 cells of at
# most 1,000 characters); the rest of it is not kept in memory.
MAX_LINE_CHARS = 16 * 1024
_READ_CHUNK_BYTES = 1024 * 1024
# The start of a file looked at for a UTF-16 byte order mark or NUL bytes.
TEXT_CHECK_BYTES = 64 * 1024
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# After this many invalid rows and no valid one the rest of a file is not
# read: it is no BOBO file, and each row would cost a WARNING line.
MAX_REJECTED_WITHOUT_VALID = 1000
# Excel's "sep=;" first line names the separator (any case, trimmed).
_EXCEL_SEPARATOR_LINE = re.compile(r"sep=([,;])")
_INTEGER = re.compile(r"[+-]?[0-9]+")
# European exports write decimal commas (B04).
_DECIMAL = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]+)?")
# What an empty row is made of, whichever the separator.
_BLANK_CHARACTERS = " \t,;"
# Stands for "the next line" when checking whether a quote stays open.
_NEXT_LINE = "\x00next-line\x00"


@dataclass
class RejectedRow:
    """An invalid line: its original text and why it was refused."""

    line_number: int
    text: str
    column: str
    value: str
    reason: str


@dataclass
class ParsedFile:
    """What one file held. ``entries`` stays empty when streamed with
    iter_bobo_entries; ``valid_rows`` counts the entries either way."""

    name: str
    entries: list[BOBOEntry] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    data_rows: int = 0
    valid_rows: int = 0
    blank_rows: int = 0
    has_header: bool = False
    encoding: str = UTF8
    delimiter: str = COMMA
    # Set when the file was not (fully) read as CSV: UTF-16, binary, or
    # too many invalid rows; the matching WARNING is in ``warnings``.
    not_bobo_reason: str = ""

    @property
    def is_empty(self) -> bool:
        """No data row at all: empty, header-only or blank-only file."""
        return self.data_rows == 0 and not self.not_bobo_reason

    @property
    def has_no_valid_rows(self) -> bool:
        """Data rows exist but none is valid, or the file is no text CSV:
        not a usable BOBO file."""
        has_rows = self.data_rows > 0 or bool(self.not_bobo_reason)
        return has_rows and self.valid_rows == 0


def parse_bobo_text(text: str, name: str) -> ParsedFile:
    """Parse a whole file's decoded text (pure)."""
    parsed = ParsedFile(name=name)
    if "\x00" in text[:TEXT_CHECK_BYTES]:
        _note_not_text(parsed, "binary")
        return parsed
    _choose_delimiter(_physical_lines(io.StringIO(text, newline="")), parsed)
    lines = _physical_lines(io.StringIO(text, newline=""))
    parsed.entries.extend(_parse_lines(lines, parsed))
    return parsed


def read_bobo_file(path: Path) -> ParsedFile:
    """Read and parse one file; raises OSError when it cannot be read."""
    parsed = ParsedFile(name=path.name)
    parsed.entries.extend(iter_bobo_entries(path, parsed))
    return parsed


def iter_bobo_entries(path: Path, parsed: ParsedFile) -> Iterator[BOBOEntry]:
    """Yield a file's valid entries one by one, filling ``parsed`` with
    everything else (counts, rejected rows, warnings) as it goes.

    Holds one line at a time, so a file of a million rows needs little
    memory. Reads the file up to three times: encoding, separator, rows.
    A UTF-16 or binary file is not parsed (``not_bobo_reason``).
    """
    kind = _not_text_kind(path)
    if kind:
        _note_not_text(parsed, kind)
        return
    has_bom, is_utf8 = _inspect_bytes(path)
    parsed.encoding = _encoding_label(has_bom, is_utf8)
    if not is_utf8:
        parsed.warnings.append(
            f"{parsed.name}: not valid UTF-8, read as Windows-1252 (cp1252)"
        )
    with _open_text(path, has_bom, is_utf8) as stream:
        _choose_delimiter(_physical_lines(stream), parsed)
    with _open_text(path, has_bom, is_utf8) as stream:
        yield from _parse_lines(_physical_lines(stream), parsed)


def excel_separator(line: str) -> str | None:
    """Return the separator a first line like Excel's ``sep=;`` names,
    else None."""
    match = _EXCEL_SEPARATOR_LINE.fullmatch(line.lstrip(BOM).strip().lower())
    return match.group(1) if match else None


def detect_delimiter(lines: Iterable[str]) -> str:
    """Return ";" when more of the first lines split into 10 cells on ";"
    than on ","; otherwise ",".

    Counting whole rows (not characters) keeps decimal commas inside the
    geo cells of a European export from deciding (B04).
    """
    fits = {COMMA: 0, SEMICOLON: 0}
    looked_at = 0
    for line in lines:
        if _is_blank(line):
            continue
        for delimiter in fits:
            if _has_bobo_width(split_line(line, delimiter)[0]):
                fits[delimiter] += 1
        looked_at += 1
        if looked_at >= SNIFF_LINES:
            break
    return SEMICOLON if fits[SEMICOLON] > fits[COMMA] else COMMA


def split_line(line: str, delimiter: str) -> tuple[list[str], bool]:
    """Split one physical line into trimmed cells with CSV quoting.

    Returns the cells and whether a quote was left open at the line's end.
    The csv module would carry an open quote over into the next line, so
    it is given a marker line and caught when it reads it.
    """
    reader = csv.reader([line, _NEXT_LINE], delimiter=delimiter, skipinitialspace=True)
    cells = next(reader, [])
    if reader.line_num > 1:
        opened = cells[-1].replace(_NEXT_LINE, "") if cells else ""
        return [cell.strip() for cell in cells[:-1]] + ['"' + opened], True
    return [cell.strip() for cell in cells], False


def find_bad_geo_value(cells: Sequence[str]) -> tuple[str, str] | None:
    """Return (column, value) of the first unusable geo cell, or None.

    The geo columns are ignored; this only feeds the per-file WARNING.
    """
    geo_cells = list(cells[6:COLUMN_COUNT])
    limits = (None, 90.0, 180.0, None)
    for offset, value in enumerate(geo_cells):
        column = COLUMN_NAMES[6 + offset]
        if value and not _is_geo_value(value, offset == 0, limits[offset]):
            return column, value
    return None


def format_rejected_rows(rows: Iterable[RejectedRow], delimiter: str = COMMA) -> str:
    """Return the text of ``<file>.rejected.csv``: each rejected line as it
    was, plus one cell saying why, in file order, with CRLF line ends."""
    lines = []
    for row in rows:
        note = f"REJECTED line {row.line_number}: {row.column} {row.value!r}: "
        note += row.reason
        quoted = '"' + note.replace('"', '""') + '"'
        lines.append(f"{row.text}{delimiter}{quoted}\r\n")
    return "".join(lines)


def _parse_lines(
    lines: Iterable[tuple[str, int]], parsed: ParsedFile
) -> Iterator[BOBOEntry]:
    has_geo_warning = False
    for line_number, (line, characters) in enumerate(lines, start=1):
        cells, quote_open = split_line(line.lstrip(BOM), parsed.delimiter)
        is_cut = characters > len(line)
        if not is_cut and _is_skipped(line, line_number, cells, quote_open, parsed):
            continue
        parsed.data_rows += 1
        entry = _parse_row(cells, quote_open, (line, characters), line_number, parsed)
        if entry is None:
            if _gives_up(parsed):
                return
            continue
        parsed.valid_rows += 1
        if not has_geo_warning:
            has_geo_warning = _note_bad_geo(cells, line_number, parsed)
        yield entry


def _is_skipped(
    line: str, line_number: int, cells: list[str], quote_open: bool, parsed: ParsedFile
) -> bool:
    """Log and tell whether a line holds no data: Excel's ``sep=`` first
    line, a blank row or a header row."""
    if line_number == 1 and excel_separator(line):
        logger.debug("separator line skipped: file=%s line=1", parsed.name)
        return True
    if _is_blank(line) or not (any(cells) or quote_open):
        parsed.blank_rows += 1
        logger.debug("blank row skipped: file=%s line=%d", parsed.name, line_number)
        return True
    if _is_header(cells) and not quote_open:
        parsed.has_header = True
        logger.debug("header row skipped: file=%s line=%d", parsed.name, line_number)
        return True
    return False


def _gives_up(parsed: ParsedFile) -> bool:
    """Stop reading a file whose first many data rows are all invalid."""
    if parsed.valid_rows or len(parsed.rejected) < MAX_REJECTED_WITHOUT_VALID:
        return False
    parsed.not_bobo_reason = (
        f"the first {len(parsed.rejected)} data rows are all invalid"
    )
    parsed.warnings.append(
        f"{parsed.name}: {parsed.not_bobo_reason}; the rest is not read, "
        "it is not a BOBO file"
    )
    return True


def _parse_row(
    cells: list[str],
    quote_open: bool,
    physical_line: tuple[str, int],
    line_number: int,
    parsed: ParsedFile,
) -> BOBOEntry | None:
    line, characters = physical_line
    try:
        if characters > len(line):
            raise RowRejected(
                ROW_COLUMN, line, f"line too long ({characters} characters)"
            )
        if quote_open:
            raise RowRejected(ROW_COLUMN, cells[-1], "unclosed quote")
        return BOBOEntry.from_csv_row(
            cells, source_file=parsed.name, line_number=line_number
        )
    except RowRejected as rejected:
        parsed.rejected.append(
            RejectedRow(
                line_number=line_number,
                text=line,
                column=rejected.column,
                value=rejected.value,
                reason=rejected.reason,
            )
        )
        return None


def _choose_delimiter(lines: Iterator[tuple[str, int]], parsed: ParsedFile) -> None:
    """Take the separator a ``sep=`` first line names, else detect it."""
    texts = (text for text, _ in lines)
    first = next(texts, "")
    declared = excel_separator(first)
    if declared:
        parsed.delimiter = declared
        return
    parsed.delimiter = detect_delimiter(chain([first], texts))
    _note_delimiter(parsed)


def _note_not_text(parsed: ParsedFile, kind: str) -> None:
    parsed.not_bobo_reason = f"not a text CSV file ({kind})"
    parsed.warnings.append(
        f"{parsed.name}: {parsed.not_bobo_reason}; re-save it as CSV UTF-8"
    )


def _note_delimiter(parsed: ParsedFile) -> None:
    if parsed.delimiter == SEMICOLON:
        parsed.warnings.append(
            f"{parsed.name}: rows split into {COLUMN_COUNT} cells on ';', "
            "not on ','; read with ';' as separator"
        )


def _note_bad_geo(cells: list[str], line_number: int, parsed: ParsedFile) -> bool:
    bad = find_bad_geo_value(cells)
    if bad is None:
        return False
    column, value = bad
    parsed.warnings.append(
        f"{parsed.name}:{line_number}: {column} {shorten_value(value)!r} is not "
        "a valid geo value; geo columns are ignored (reported once per file)"
    )
    return True


def _is_blank(line: str) -> bool:
    """An empty line, or one of separators only (Excel's ``,,,,,,,,,`` or,
    in a European export, ``;;;;;;;;;``)."""
    return not line.lstrip(BOM).strip(_BLANK_CHARACTERS)


def _is_header(cells: list[str]) -> bool:
    return bool(cells) and cells[0].lstrip(BOM).strip().lower() == HEADER_FIRST_CELL


def _has_bobo_width(cells: list[str]) -> bool:
    return len(cells) >= COLUMN_COUNT and not any(cells[COLUMN_COUNT:])


def _is_geo_value(value: str, is_status: bool, limit: float | None) -> bool:
    if is_status:
        return _INTEGER.fullmatch(value) is not None
    if not _DECIMAL.fullmatch(value):
        return False
    number = float(value.replace(",", "."))
    if limit is None:
        return number >= 0
    return -limit <= number <= limit


def _physical_lines(stream: TextIO) -> Iterator[tuple[str, int]]:
    """Yield each line without its end (CRLF, LF or CR), with its length
    in characters.

    The stream must be opened with ``newline=""`` so the three ends are
    recognised and not translated. An overlong line is cut at
    MAX_LINE_CHARS (its length is then greater than its text's); its
    remainder is read and dropped.
    """
    while True:
        line = stream.readline(MAX_LINE_CHARS)
        if not line:
            return
        text = _without_line_end(line)
        characters = len(text)
        if len(line) == MAX_LINE_CHARS and text == line:
            characters += _skip_rest_of_line(stream)
        yield text, characters


def _skip_rest_of_line(stream: TextIO) -> int:
    """Read to the end of the line; return its characters read (the line
    end not counted)."""
    skipped = 0
    while True:
        rest = stream.readline(MAX_LINE_CHARS)
        skipped += len(_without_line_end(rest))
        if not rest or rest.endswith(("\n", "\r")):
            return skipped


def _without_line_end(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith(("\n", "\r")):
        return line[:-1]
    return line


def _not_text_kind(path: Path) -> str | None:
    """Return "UTF-16" or "binary" when the file is no text CSV, else None."""
    with path.open("rb") as raw:
        head = raw.read(TEXT_CHECK_BYTES)
    if head.startswith(_UTF16_BOMS):
        return "UTF-16"
    if b"\x00" in head:
        return "binary"
    return None


def _inspect_bytes(path: Path) -> tuple[bool, bool]:
    """Return (starts with a UTF-8 BOM, is valid UTF-8), reading in chunks."""
    decoder = codecs.getincrementaldecoder(UTF8)(errors="strict")
    with path.open("rb") as raw:
        has_bom = raw.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8
        raw.seek(len(codecs.BOM_UTF8) if has_bom else 0)
        try:
            while chunk := raw.read(_READ_CHUNK_BYTES):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return has_bom, False
    return has_bom, True


def _open_text(path: Path, has_bom: bool, is_utf8: bool) -> io.TextIOWrapper:
    raw: BinaryIO = path.open("rb")
    if has_bom:
        raw.seek(len(codecs.BOM_UTF8))
    if is_utf8:
        return io.TextIOWrapper(raw, encoding=UTF8, newline="")
    # cp1252 leaves five bytes undefined; they must not stop the read.
    return io.TextIOWrapper(raw, encoding=WINDOWS_1252, errors="replace", newline="")


def _encoding_label(has_bom: bool, is_utf8: bool) -> str:
    if not is_utf8:
        return WINDOWS_1252
    return UTF8_WITH_BOM if has_bom else UTF8
