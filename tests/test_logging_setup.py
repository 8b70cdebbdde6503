"""Logging set-up, Windows-safe daily rotation (B25) and log purge."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from bobosync.errors import FolderError
from bobosync.logging_setup import (
    LOG_FILE_NAME,
    SafeRotatingFileHandler,
    configure_logging,
    purge_old_logs,
    reset_logging,
)
from bobosync.settings import make_test_settings

WINDOWS_SHARING_VIOLATION = PermissionError(
    13, "The process cannot access the file because it is being used"
)


class FakeTime:
    """Epoch seconds that move only when told to."""

    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()


class FlakyRename:
    """A rotator whose rename fails a given number of times, as a viewer
    holding the log open without FILE_SHARE_DELETE makes it on Windows."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, source: str, dest: str) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise WINDOWS_SHARING_VIOLATION
        os.rename(source, dest)


@pytest.fixture
def clean_logging() -> Iterator[None]:
    reset_logging()
    yield
    reset_logging()


@pytest.fixture
def package_logger() -> Iterator[logging.Logger]:
    """The `bobosync` logger at DEBUG, its handlers restored afterwards."""
    logger = logging.getLogger("bobosync")
    handlers, level = list(logger.handlers), logger.level
    logger.setLevel(logging.DEBUG)
    yield logger
    for handler in list(logger.handlers):
        if handler not in handlers:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(level)


def attach_handler(
    logger: logging.Logger, log_file: Path, clock: FakeTime
) -> SafeRotatingFileHandler:
    handler = SafeRotatingFileHandler(log_file, time_source=clock)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return handler


def set_modified(path: Path, when: datetime) -> None:
    os.utime(path, (when.timestamp(), when.timestamp()))


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


# --- configure_logging ------------------------------------------------------


def test_configure_logging_writes_formatted_records_to_the_log_file(
    tmp_path: Path, clean_logging: None
) -> None:
    settings = make_test_settings(tmp_path, log_level="WARNING")

    log_file = configure_logging(settings, console=False)
    logging.getLogger("bobosync.demo").info("not written: below WARNING")
    logging.getLogger("bobosync.demo").warning("poll failed: file=%s", "a.csv")

    assert log_file == tmp_path / "logs" / LOG_FILE_NAME
    [line] = lines(log_file)
    assert line.endswith(" WARNING bobosync.demo: poll failed: file=a.csv")


def test_b25_second_set_up_call_adds_no_second_handler(
    tmp_path: Path, clean_logging: None
) -> None:
    settings = make_test_settings(tmp_path, log_level="INFO")

    configure_logging(settings)
    log_file = configure_logging(settings)
    logging.getLogger("bobosync.loop").info("tick done")

    handlers = logging.getLogger("bobosync").handlers
    file_handlers = [h for h in handlers if isinstance(h, logging.FileHandler)]
    assert len(handlers) == 2
    assert [h.baseFilename for h in file_handlers] == [str(log_file)]
    assert len(lines(log_file)) == 1


def test_console_handler_writes_to_stderr_only_when_asked(
    tmp_path: Path, clean_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(make_test_settings(tmp_path), console=True)
    logging.getLogger("bobosync.cli").info("started")
    configure_logging(make_test_settings(tmp_path), console=False)
    logging.getLogger("bobosync.cli").info("quiet")

    captured = capsys.readouterr()
    assert "INFO bobosync.cli: started" in captured.err
    assert "quiet" not in captured.err


def test_reset_logging_removes_the_handlers_it_added(
    tmp_path: Path, clean_logging: None
) -> None:
    configure_logging(make_test_settings(tmp_path))

    reset_logging()

    assert not [
        h
        for h in logging.getLogger("bobosync").handlers
        if (h.get_name() or "").startswith("bobosync:")
    ]


def test_unwritable_log_folder_raises_folder_error_naming_path_and_fix(
    tmp_path: Path, clean_logging: None
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x", encoding="utf-8")
    settings = make_test_settings(tmp_path, log_directory=blocker / "logs")

    with pytest.raises(FolderError) as caught:
        configure_logging(settings)

    assert caught.value.path == blocker / "logs"
    message = str(caught.value)
    assert message.startswith(f"LOG_DIRECTORY {blocker / 'logs'} is not writable (")
    assert message.endswith(
        "): create it and give this account write access, or set LOG_DIRECTORY"
        " to another folder"
    )


# --- B25: rotation ------------------------------------------------------------


def test_b25_midnight_rollover_moves_the_day_to_a_dated_backup(
    tmp_path: Path, package_logger: logging.Logger
) -> None:
    clock = FakeTime(datetime(2025, 3, 14, 23, 59, 0))
    log_file = tmp_path / LOG_FILE_NAME
    attach_handler(package_logger, log_file, clock)

    package_logger.info("before midnight")
    clock.set(datetime(2025, 3, 15, 0, 0, 5))
    package_logger.info("after midnight")

    assert lines(tmp_path / f"{LOG_FILE_NAME}.2025-03-14") == ["before midnight"]
    assert lines(log_file) == ["after midnight"]


def test_b25_failed_rename_keeps_records_retries_and_warns_once(
    tmp_path: Path,
    package_logger: logging.Logger,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = FakeTime(datetime(2025, 3, 14, 23, 59, 0))
    log_file = tmp_path / LOG_FILE_NAME
    handler = attach_handler(package_logger, log_file, clock)
    handler.rotator = rename = FlakyRename(failures=2)
    package_logger.info("23:59:00")

    for when in [(0, 0, 5), (0, 0, 30), (0, 1, 10), (0, 1, 30), (0, 2, 20)]:
        clock.set(datetime(2025, 3, 15, *when))
        package_logger.info("%02d:%02d:%02d", *when)

    assert rename.calls == 3  # 00:00:05 failed, 00:01:10 failed, 00:02:20 worked
    backup = tmp_path / f"{LOG_FILE_NAME}.2025-03-14"
    warning = (
        f"log rotation postponed: path={log_file} backup={backup}"
        f" reason={WINDOWS_SHARING_VIOLATION.strerror}; records stay in the"
        " current file, retrying every 60 s (close any program holding the log"
        " open)"
    )
    assert lines(backup) == [
        "23:59:00",
        "00:00:05",
        warning,
        "00:00:30",
        "00:01:10",
        "00:01:30",
    ]
    assert lines(log_file) == ["00:02:20"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [warning]
    assert "--- Logging error ---" not in capsys.readouterr().err


def test_b25_restarts_on_one_day_never_overwrite_a_dated_backup(
    tmp_path: Path, package_logger: logging.Logger
) -> None:
    log_file = tmp_path / LOG_FILE_NAME
    existing = tmp_path / f"{LOG_FILE_NAME}.2025-03-14"
    existing.write_text("rotated before the restart\n", encoding="utf-8")
    log_file.write_text("written at 23:59\n", encoding="utf-8")
    set_modified(log_file, datetime(2025, 3, 14, 23, 59, 0))

    clock = FakeTime(datetime(2025, 3, 15, 0, 0, 30))
    first = attach_handler(package_logger, log_file, clock)
    package_logger.info("started at 00:00:30")
    package_logger.removeHandler(first)
    first.close()
    set_modified(log_file, datetime(2025, 3, 15, 0, 0, 30))
    clock.set(datetime(2025, 3, 15, 10, 0, 0))
    attach_handler(package_logger, log_file, clock)
    package_logger.info("started at 10:00")

    assert lines(existing) == ["rotated before the restart"]
    assert lines(tmp_path / f"{LOG_FILE_NAME}.2025-03-14.1") == ["written at 23:59"]
    assert lines(log_file) == ["started at 00:00:30", "started at 10:00"]
    assert len(list(tmp_path.iterdir())) == 3


def test_b25_taken_backup_names_get_the_next_free_number(tmp_path: Path) -> None:
    clock = FakeTime(datetime(2025, 3, 14, 12, 0, 0))
    for name in [".2025-03-14", ".2025-03-14.1"]:
        (tmp_path / (LOG_FILE_NAME + name)).write_text("", encoding="utf-8")
    handler = SafeRotatingFileHandler(tmp_path / LOG_FILE_NAME, time_source=clock)

    backup = handler.free_backup_name()
    handler.close()

    assert backup == str(tmp_path / f"{LOG_FILE_NAME}.2025-03-14.2")


# --- log purge ----------------------------------------------------------------


def test_b25_purge_removes_only_own_backups_older_than_the_cutoff(
    tmp_path: Path,
) -> None:
    names = [
        LOG_FILE_NAME,
        f"{LOG_FILE_NAME}.2025-02-10",
        f"{LOG_FILE_NAME}.2025-02-10.1",
        f"{LOG_FILE_NAME}.2025-02-11",
        f"{LOG_FILE_NAME}.2025-02-12",
        f"{LOG_FILE_NAME}.2025-03-14",
        f"{LOG_FILE_NAME}.bak",
        f"{LOG_FILE_NAME}.2025-13-45",
        "other.log.2020-01-01",
        "notes.txt",
    ]
    for name in names:
        (tmp_path / name).write_text("x", encoding="utf-8")

    removed = purge_old_logs(tmp_path, 30, now=datetime(2025, 3, 14, 23, 0, 0))

    assert removed == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        set(names)
        - {
            f"{LOG_FILE_NAME}.2025-02-10",
            f"{LOG_FILE_NAME}.2025-02-10.1",
            f"{LOG_FILE_NAME}.2025-02-11",
        }
    )


def test_purge_of_a_missing_log_folder_removes_nothing(tmp_path: Path) -> None:
    assert purge_old_logs(tmp_path / "absent", 30, datetime(2025, 3, 14)) == 0
