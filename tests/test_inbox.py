"""Tests of bobosync.inbox: listing, fingerprints, moves and housekeeping."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bobosync.errors import FolderError
from bobosync.inbox import (
    FileFingerprint,
    SourceNotRemovedError,
    fingerprint_file,
    is_candidate_name,
    list_inbox,
    move_file,
    purge_old_files,
    remove_temporary_files,
    same_content,
    write_new_file,
)

NOW = datetime(2025, 3, 14, 23, 0, 0)
NOW_TIMESTAMP = NOW.timestamp()
N04_BYTES = (
    b"Transaction_Type,Employee_ID,Payroll_ID,Clocking_Date,Clocking_Time,"
    b"DateTime_Created,Geo_Status,Geo_Latitude,Geo_Longitude,Geo_Accuracy\r\n"
    b"BON,00417,700417,20250314,071502,20250314071505,1,51.507351,-0.127758,12.5\r\n"
    b"BON,04170,704170,20250314,072010,20250314072014,1,,,\r\n"
)
ROW_9 = b"BOF,00009,700009,20250314,073000,20250314073003,0,,,\r\n"

# ../shared/cases/N09_inbox/, byte for byte.
N09_FILES: dict[str, bytes] = {
    "BOBO_20250314_0800.csv": (
        b"BON,00417,700417,20250314,071502,20250314071505,1,51.507351,"
        b"-0.127758,12.5\r\n"
    ),
    "BOBO_20250314_0815.CSV": (
        b"BON,04170,704170,20250314,072010,20250314072014,1,,,\r\n"
    ),
    "BOBO_20250314_0830.csv.part": ROW_9,
    "BOBO_20250314_0845.tmp": ROW_9,
    "Thumbs.db": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 56,
    "desktop.ini": b"[.ShellClassInfo]\r\n",
    "readme.txt": b"drop BOBO exports here\r\n",
    "~$BOBO_20250314_0800.csv": b"\x0bOPERATOR" + b"\x00" * 153,
    "archive/BOBO_20250313_2300.csv": ROW_9,
}
SHARED_N09 = Path(__file__).resolve().parents[2] / "shared" / "cases" / "N09_inbox"


def write_file(path: Path, content: bytes, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def files_in(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir()}


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    source_dir, destination_dir = tmp_path / "in", tmp_path / "processed"
    source_dir.mkdir()
    destination_dir.mkdir()
    return source_dir, destination_dir


def fail_first_rename(
    monkeypatch: pytest.MonkeyPatch, error: OSError | None
) -> list[tuple]:
    """Make the first os.rename raise ``error`` (if any); record every call."""
    real_rename = os.rename
    calls: list[tuple] = []

    def rename(source: os.PathLike, target: os.PathLike) -> None:
        calls.append((Path(source), Path(target)))
        if len(calls) == 1 and error is not None:
            raise error
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename)
    return calls


def refuse(error: OSError) -> Callable[..., None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    return fail


def test_n09_copy_matches_the_shared_case() -> None:
    if not SHARED_N09.exists():
        pytest.skip(f"{SHARED_N09} not present")
    shared = {
        path.relative_to(SHARED_N09).as_posix(): path.read_bytes()
        for path in SHARED_N09.rglob("*")
        if path.is_file()
    }
    assert shared == N09_FILES


def test_n09_only_csv_files_directly_in_the_folder_are_ready(tmp_path: Path) -> None:
    settled = NOW_TIMESTAMP - 60
    for name, content in N09_FILES.items():
        write_file(tmp_path / name, content, settled)

    listing = list_inbox(tmp_path, settle_seconds=5, now_timestamp=NOW_TIMESTAMP)

    assert listing.ready == [
        tmp_path / "BOBO_20250314_0800.csv",
        tmp_path / "BOBO_20250314_0815.CSV",
    ]
    assert listing.waiting == []
    assert listing.ignored == sorted(
        [
            "BOBO_20250314_0830.csv.part",
            "BOBO_20250314_0845.tmp",
            "Thumbs.db",
            "archive",
            "desktop.ini",
            "readme.txt",
            "~$BOBO_20250314_0800.csv",
        ]
    )


@pytest.mark.parametrize(
    ("name", "is_candidate"),
    [
        ("BOBO_20250314_0800.csv", True),
        ("BOBO_20250314_0815.CSV", True),
        ("x.Csv", True),
        ("BOBO_20250314_0830.csv.part", False),
        ("BOBO_20250314_0845.tmp", False),
        ("x.csv.tmp", False),
        ("x.csv.bobosync-tmp", False),
        ("~$BOBO_20250314_0800.csv", False),
        (".hidden.csv", False),
        ("csv", False),
        ("readme.txt", False),
    ],
)
def test_n09_candidate_names(name: str, is_candidate: bool) -> None:
    assert is_candidate_name(name) is is_candidate


@pytest.mark.parametrize(
    ("age_seconds", "settle_seconds", "is_ready"),
    [
        (4.9, 5, False),
        (5, 5, True),
        (3600, 5, True),
        # A time stamp ahead of the clock: settled only when no wait is asked.
        (-30, 5, False),
        (-30, 0, True),
    ],
)
def test_b08_file_is_ready_only_once_settled(
    tmp_path: Path, age_seconds: float, settle_seconds: float, is_ready: bool
) -> None:
    path = write_file(tmp_path / "B08_empty.csv", b"", NOW_TIMESTAMP - age_seconds)

    listing = list_inbox(
        tmp_path, settle_seconds=settle_seconds, now_timestamp=NOW_TIMESTAMP
    )

    assert (listing.ready, listing.waiting) == (
        ([path], []) if is_ready else ([], [path])
    )


def test_ready_files_come_oldest_first_then_by_name(tmp_path: Path) -> None:
    old = NOW_TIMESTAMP - 300
    write_file(tmp_path / "c.csv", ROW_9, old - 10)
    write_file(tmp_path / "b.csv", ROW_9, old)
    write_file(tmp_path / "a.csv", ROW_9, old)

    listing = list_inbox(tmp_path, settle_seconds=5, now_timestamp=NOW_TIMESTAMP)

    assert [path.name for path in listing.ready] == ["c.csv", "a.csv", "b.csv"]


def test_b22_file_that_cannot_be_opened_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = write_file(tmp_path / "locked.csv", ROW_9, NOW_TIMESTAMP - 60)
    free = write_file(tmp_path / "free.csv", ROW_9, NOW_TIMESTAMP - 60)
    real_open = Path.open

    def open_unless_locked(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == locked.name:
            raise PermissionError(13, "used by another process", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_unless_locked)

    listing = list_inbox(tmp_path, settle_seconds=5, now_timestamp=NOW_TIMESTAMP)

    assert (listing.ready, listing.waiting) == ([free], [locked])


def test_missing_folder_raises_folder_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "gone"

    with pytest.raises(FolderError) as caught:
        list_inbox(missing, settle_seconds=5, now_timestamp=NOW_TIMESTAMP)

    assert str(caught.value).startswith(f"CSV_DIRECTORY {missing} is not accessible (")
    assert "mapped drive" not in str(caught.value)
    assert caught.value.path == missing
    assert not missing.exists()


def test_b24b_drive_letter_path_says_to_use_a_unc_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    directory = Path("Z:\\bobo\\in")
    monkeypatch.setattr(os, "scandir", refuse(FileNotFoundError(2, "not found")))

    with pytest.raises(FolderError) as caught:
        list_inbox(directory, settle_seconds=5, now_timestamp=NOW_TIMESTAMP)

    assert str(caught.value) == (
        "CSV_DIRECTORY Z:\\bobo\\in is not accessible (not found); a mapped "
        "drive letter exists only for the user who mapped it; use a UNC path "
        "(\\\\server\\share\\...)"
    )
    assert list(tmp_path.iterdir()) == []


def test_fingerprint_names_size_time_and_hash(tmp_path: Path) -> None:
    path = write_file(tmp_path / "BOBO_daily.csv", N04_BYTES, NOW_TIMESTAMP - 60)

    assert fingerprint_file(path) == FileFingerprint(
        name="BOBO_daily.csv",
        size=len(N04_BYTES),
        mtime_ns=path.stat().st_mtime_ns,
        sha256=hashlib.sha256(N04_BYTES).hexdigest(),
    )


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (N04_BYTES, N04_BYTES, True),
        (N04_BYTES, N04_BYTES + b"\r\n", False),
        (b"abc", b"abd", False),
        (b"", b"", True),
    ],
)
def test_same_content_compares_bytes(
    tmp_path: Path, first: bytes, second: bytes, expected: bool
) -> None:
    a = write_file(tmp_path / "a.csv", first)
    b = write_file(tmp_path / "b.csv", second)

    assert same_content(a, b) is expected


def test_move_on_one_volume_is_a_single_rename(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    source_dir, destination_dir = folders
    source = write_file(source_dir / "BOBO_daily.csv", N04_BYTES)
    calls = fail_first_rename(monkeypatch, None)

    moved = move_file(source, destination_dir, now=NOW)

    assert moved == destination_dir / "BOBO_daily.csv"
    assert calls == [(source, moved)]
    assert files_in(destination_dir) == {"BOBO_daily.csv": N04_BYTES}
    assert not source.exists()


def test_b23_taken_name_gets_a_timestamp_then_a_counter(
    folders: tuple[Path, Path],
) -> None:
    source_dir, destination_dir = folders
    write_file(destination_dir / "BOBO_daily.csv", b"yesterday")

    first = move_file(
        write_file(source_dir / "BOBO_daily.csv", N04_BYTES), destination_dir, now=NOW
    )
    second = move_file(
        write_file(source_dir / "BOBO_daily.csv", ROW_9), destination_dir, now=NOW
    )

    assert (first.name, second.name) == (
        "BOBO_daily_20250314_230000.csv",
        "BOBO_daily_20250314_230000_2.csv",
    )
    assert files_in(destination_dir) == {
        "BOBO_daily.csv": b"yesterday",
        "BOBO_daily_20250314_230000.csv": N04_BYTES,
        "BOBO_daily_20250314_230000_2.csv": ROW_9,
    }
    assert list(source_dir.iterdir()) == []


@pytest.mark.parametrize("use_winerror", [False, True])
def test_b24a_move_across_volumes_copies_renames_then_deletes(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, use_winerror: bool
) -> None:
    source_dir, destination_dir = folders
    mtime = NOW_TIMESTAMP - 3600
    source = write_file(source_dir / "BOBO_daily.csv", N04_BYTES, mtime)
    error = OSError(errno.EXDEV, "Invalid cross-device link")
    if use_winerror:
        error = OSError(errno.EACCES, "not the same device")
        error.winerror = 17  # type: ignore[attr-defined]
    calls = fail_first_rename(monkeypatch, error)

    moved = move_file(source, destination_dir, now=NOW)

    assert moved == destination_dir / "BOBO_daily.csv"
    assert calls[1] == (destination_dir / "BOBO_daily.csv.bobosync-tmp", moved)
    assert files_in(destination_dir) == {"BOBO_daily.csv": N04_BYTES}
    assert moved.stat().st_mtime == pytest.approx(mtime)
    assert not source.exists()


def test_b24a_source_not_deleted_leaves_one_copy_and_no_temporary_file(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    source_dir, destination_dir = folders
    source = write_file(source_dir / "BOBO_daily.csv", N04_BYTES)
    fail_first_rename(monkeypatch, OSError(errno.EXDEV, "cross-device"))
    monkeypatch.setattr(os, "remove", refuse(PermissionError(13, "Access is denied")))

    with pytest.raises(SourceNotRemovedError) as caught:
        move_file(source, destination_dir, now=NOW)

    copy = destination_dir / "BOBO_daily.csv"
    assert caught.value.destination == copy
    assert caught.value.path == source
    assert str(caught.value) == (
        f"copied {source} to {copy}, but could not remove the source: "
        f"Access is denied; bobosync's account needs delete rights on {source_dir}"
    )
    assert isinstance(caught.value, FolderError)
    assert files_in(destination_dir) == {"BOBO_daily.csv": N04_BYTES}
    assert source.read_bytes() == N04_BYTES


def test_b24a_retry_with_known_copy_only_deletes_the_source(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    source_dir, destination_dir = folders
    source = write_file(source_dir / "BOBO_daily.csv", N04_BYTES)
    copy = write_file(destination_dir / "BOBO_daily.csv", N04_BYTES)
    with monkeypatch.context() as patch:
        patch.setattr(os, "remove", refuse(PermissionError(13, "Access is denied")))
        with pytest.raises(SourceNotRemovedError):
            move_file(source, destination_dir, now=NOW, known_copy=copy)
        assert files_in(destination_dir) == {"BOBO_daily.csv": N04_BYTES}

    moved = move_file(source, destination_dir, now=NOW, known_copy=copy)

    assert moved == copy
    assert files_in(destination_dir) == {"BOBO_daily.csv": N04_BYTES}
    assert not source.exists()


def test_known_copy_with_other_bytes_is_not_trusted(folders: tuple[Path, Path]) -> None:
    source_dir, destination_dir = folders
    source = write_file(source_dir / "BOBO_daily.csv", N04_BYTES)
    stale = write_file(destination_dir / "BOBO_daily.csv", b"other")

    moved = move_file(source, destination_dir, now=NOW, known_copy=stale)

    assert moved.name == "BOBO_daily_20250314_230000.csv"
    assert moved.read_bytes() == N04_BYTES and stale.read_bytes() == b"other"


def test_failed_copy_removes_the_temporary_file_and_keeps_the_source(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    source_dir, destination_dir = folders
    source = write_file(source_dir / "BOBO_daily.csv", N04_BYTES)
    fail_first_rename(monkeypatch, OSError(errno.EXDEV, "cross-device"))
    monkeypatch.setattr(os, "fsync", refuse(OSError(errno.ENOSPC, "No space left")))

    with pytest.raises(FolderError, match="No space left") as caught:
        move_file(source, destination_dir, now=NOW)

    assert not isinstance(caught.value, SourceNotRemovedError)
    assert list(destination_dir.iterdir()) == []
    assert source.read_bytes() == N04_BYTES


def test_missing_destination_raises_and_leaves_the_source(tmp_path: Path) -> None:
    source = write_file(tmp_path / "in" / "BOBO_daily.csv", N04_BYTES)
    missing = tmp_path / "processed"

    with pytest.raises(FolderError) as caught:
        move_file(source, missing, now=NOW)

    assert str(caught.value) == (
        f"cannot move BOBO_daily.csv: folder {missing} does not exist or is not "
        "a folder; create it or correct the setting that names it"
    )
    assert source.read_bytes() == N04_BYTES
    assert not missing.exists()


def test_b23_refused_rename_raises_folder_error_naming_both_paths(
    folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    source_dir, destination_dir = folders
    source = write_file(source_dir / "BOBO_daily.csv", N04_BYTES)
    monkeypatch.setattr(os, "rename", refuse(PermissionError(13, "Access is denied")))

    with pytest.raises(FolderError) as caught:
        move_file(source, destination_dir, now=NOW)

    assert str(caught.value) == (
        f"cannot move {source} to {destination_dir}: Access is denied; check "
        "that the folder exists and that bobosync's account may write there, "
        "and that no program holds the file open"
    )
    assert source.read_bytes() == N04_BYTES


@pytest.mark.parametrize(
    "name", ["../escape.csv", "..\\escape.csv", "sub/x.csv", "..", ".", "", "C:x.csv"]
)
def test_a_crafted_name_cannot_leave_the_destination(tmp_path: Path, name: str) -> None:
    destination_dir = tmp_path / "failed"
    destination_dir.mkdir()

    with pytest.raises(FolderError, match="would leave the folder"):
        write_new_file(destination_dir, name, "x", now=NOW)

    assert list(tmp_path.rglob("*")) == [destination_dir]


@pytest.mark.skipif(os.name == "nt", reason="Windows names cannot hold a backslash")
def test_move_refuses_a_source_whose_name_would_escape(
    folders: tuple[Path, Path],
) -> None:
    source_dir, destination_dir = folders
    source = write_file(source_dir / "..\\escape.csv", ROW_9)

    with pytest.raises(FolderError, match="would leave the folder"):
        move_file(source, destination_dir, now=NOW)

    assert source.exists() and list(destination_dir.iterdir()) == []


def test_write_new_file_never_overwrites(tmp_path: Path) -> None:
    name = "N06_unknown_type.csv.rejected.csv"
    write_file(tmp_path / name, b"earlier")
    text = "BRK,04170\r\n,01234\r\n"

    written = write_new_file(tmp_path, name, text, now=NOW)

    assert written.name == "N06_unknown_type.csv.rejected_20250314_230000.csv"
    assert written.read_bytes() == text.encode()
    assert (tmp_path / name).read_bytes() == b"earlier"


def test_remove_temporary_files_deletes_only_leftovers(tmp_path: Path) -> None:
    leftover = write_file(tmp_path / "BOBO_daily.csv.bobosync-tmp", b"half")
    kept = write_file(tmp_path / "BOBO_daily.csv", N04_BYTES)

    assert remove_temporary_files(tmp_path) == [leftover]
    assert list(tmp_path.iterdir()) == [kept]


def test_purge_old_files_keeps_new_files_gitkeep_and_folders(tmp_path: Path) -> None:
    day = 86400
    write_file(tmp_path / "old.csv", ROW_9, NOW_TIMESTAMP - 31 * day)
    write_file(tmp_path / ".gitkeep", b"", NOW_TIMESTAMP - 400 * day)
    write_file(tmp_path / "new.csv", ROW_9, NOW_TIMESTAMP - 29 * day)
    write_file(tmp_path / "sub" / "old.csv", ROW_9, NOW_TIMESTAMP - 400 * day)

    assert purge_old_files(tmp_path, 0, NOW_TIMESTAMP) == 0
    assert purge_old_files(tmp_path, 30, NOW_TIMESTAMP) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        ".gitkeep",
        "new.csv",
        "sub",
    ]
    assert (tmp_path / "sub" / "old.csv").exists()


def test_n09_listing_logs_nothing_so_ignored_names_are_not_repeated_each_tick(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    write_file(tmp_path / "readme.txt", b"x", NOW_TIMESTAMP - 60)

    list_inbox(tmp_path, settle_seconds=5, now_timestamp=NOW_TIMESTAMP)

    assert caplog.records == []
