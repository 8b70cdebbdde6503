"""Crash safety: kills at any point lose no event and no file.

The first tests kill the real daemon (``python -m bobosync``) at random
points with files flowing, using the harness in tests/killtest.py. The
others put the daemon into the state a kill at one precise point leaves
(a kill is a BaseException raised from inside a step, which nothing in a
tick catches), start a new processor on the same folders and database, and
check that it finishes the work without sending twice or copying twice.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bobosync.inbox import TEMPORARY_SUFFIX
from bobosync.settings import Settings
from tests.conftest import copy_case, folder_names, sent_in
from tests.killtest import KillHarness

N04_SENT = {"t.ashby": "14/03/2025 07:15:02", "r.okafor": "14/03/2025 07:20:10"}
N04 = "N04_with_header.csv"


class SimulatedKill(BaseException):
    """Stands for SIGKILL: no except clause of a tick catches it."""


def kill_once_at(monkeypatch: pytest.MonkeyPatch, target: object, name: str, when=None):
    """Make ``target.name`` raise SimulatedKill on its first call for which
    ``when(*args)`` is true; later calls run normally."""
    real = getattr(target, name)
    state = {"killed": False}

    def fake(*args, **kwargs):
        if not state["killed"] and (when is None or when(*args)):
            state["killed"] = True
            raise SimulatedKill(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, fake)


def cross_volume_once(monkeypatch: pytest.MonkeyPatch, calls: list[str]) -> None:
    """The first rename fails with EXDEV, as between two volumes; every
    rename, fsync and remove is noted in ``calls``."""
    real_rename, real_fsync, real_remove = os.rename, os.fsync, os.remove
    state = {"refused": False}

    def rename(source, target):
        if not state["refused"]:
            state["refused"] = True
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        calls.append(f"rename {Path(source).name} -> {Path(target).name}")
        real_rename(source, target)

    def fsync(descriptor):
        calls.append("fsync")
        real_fsync(descriptor)

    def remove(path):
        calls.append(f"remove {Path(path).parent.name}/{Path(path).name}")
        real_remove(path)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "remove", remove)


def restart_and_tick(make_processor, settings, simulator):
    """A new processor on the same settings (a restarted daemon), one tick;
    returns what it sent."""
    simulator.reset_records()
    report = make_processor(settings).run_tick()
    assert report.is_success, report.outage
    return sent_in(simulator)


# -- the real daemon, killed at random ----------------------------------------


def test_daemon_killed_20_times_at_random_points_loses_no_event_and_no_file(
    tmp_path: Path,
) -> None:
    with KillHarness(tmp_path, seed=20250314) as harness:
        report = harness.run(kills=20)

    assert report.problems == [], "\n".join(report.summary_lines())
    assert report.kills == 20
    assert report.files_written > 20
    if os.name != "nt":
        assert report.drain_exit_code == 0


def _other_volume() -> Path | None:
    """A folder on another file system than the temporary folder, if any."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK):
        return None
    if shm.stat().st_dev == Path(tempfile.gettempdir()).stat().st_dev:
        return None
    return shm


def test_daemon_killed_while_moving_across_volumes_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    other = _other_volume()
    if other is None:
        pytest.skip("no second volume (/dev/shm) to move files to")
    with (
        tempfile.TemporaryDirectory(dir=other) as moved_to,
        KillHarness(tmp_path, seed=7, moved_to=Path(moved_to)) as harness,
    ):
        report = harness.run(kills=10)

    assert report.problems == [], "\n".join(report.summary_lines())
    assert report.kills == 10


# -- kills at precise points ------------------------------------------------


def test_temporary_copy_left_by_a_crash_is_removed_on_start_and_the_file_moved(
    make_settings, make_processor, simulator
) -> None:
    settings = make_settings()
    copy_case(N04, settings.csv_directory)
    settings.processed_directory.mkdir(parents=True)
    half_copy = settings.processed_directory / (N04 + TEMPORARY_SUFFIX)
    half_copy.write_bytes(b"Transaction_Type,Employee_ID,Pay")

    sent = restart_and_tick(make_processor, settings, simulator)

    assert sent == N04_SENT
    assert folder_names(settings.processed_directory) == [N04]
    assert folder_names(settings.csv_directory) == []


def test_kill_after_the_commit_before_the_move_moves_the_file_without_resending(
    make_settings, make_processor, simulator, monkeypatch
) -> None:
    settings = make_settings()
    copy_case(N04, settings.csv_directory)
    kill_once_at(monkeypatch, sys.modules["bobosync.file_keeper"], "move_file")
    with pytest.raises(SimulatedKill):
        make_processor(settings).run_tick()
    assert sent_in(simulator) == N04_SENT
    assert folder_names(settings.csv_directory) == [N04]

    sent = restart_and_tick(make_processor, settings, simulator)

    assert sent == {}
    assert folder_names(settings.processed_directory) == [N04]
    assert folder_names(settings.csv_directory) == []


def test_kill_before_the_commit_sends_again_and_moves_once(
    make_settings, make_processor, simulator, monkeypatch
) -> None:
    settings = make_settings()
    copy_case(N04, settings.csv_directory)
    database_module = sys.modules["bobosync.database"]
    kill_once_at(monkeypatch, database_module.BOBODatabase, "remember_processed")
    with pytest.raises(SimulatedKill):
        make_processor(settings).run_tick()

    sent = restart_and_tick(make_processor, settings, simulator)

    assert sent == N04_SENT  # at least once: the repeat is harmless
    assert folder_names(settings.processed_directory) == [N04]
    assert folder_names(settings.csv_directory) == []


def test_kill_between_the_cross_volume_copy_and_the_delete_leaves_one_copy(
    make_settings, make_processor, simulator, monkeypatch
) -> None:
    settings = make_settings()
    source = copy_case(N04, settings.csv_directory)
    cross_volume_once(monkeypatch, [])
    kill_once_at(monkeypatch, os, "remove", lambda path: Path(path) == source)
    with pytest.raises(SimulatedKill):
        make_processor(settings).run_tick()
    assert folder_names(settings.processed_directory) == [N04]
    assert folder_names(settings.csv_directory) == [N04]

    sent = restart_and_tick(make_processor, settings, simulator)

    assert sent == {}
    assert folder_names(settings.processed_directory) == [N04]
    assert folder_names(settings.csv_directory) == []


def _unusable_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "notes.csv"
    path.write_text("drop BOBO exports here\n", encoding="utf-8")
    return path


def _drop_for(destination: str, settings: Settings) -> tuple[str, Path]:
    """A file bound for ``destination`` in the inbox; its name and folder."""
    if destination == "processed":
        return copy_case(N04, settings.csv_directory).name, settings.processed_directory
    path = _unusable_file(settings.csv_directory)
    return path.name, settings.failed_files_directory


@pytest.mark.parametrize("destination", ["processed", "failed"])
def test_kill_during_a_cross_volume_copy_leaves_the_source_and_restart_moves_it(
    make_settings, make_processor, simulator, monkeypatch, destination
) -> None:
    settings = make_settings()
    name, folder = _drop_for(destination, settings)
    cross_volume_once(monkeypatch, [])
    kill_once_at(monkeypatch, os, "fsync")
    with pytest.raises(SimulatedKill):
        make_processor(settings).run_tick()
    assert folder_names(folder) == [name + TEMPORARY_SUFFIX]
    assert folder_names(settings.csv_directory) == [name]

    restart_and_tick(make_processor, settings, simulator)

    assert folder_names(folder) == [name]
    assert folder_names(settings.csv_directory) == []


@pytest.mark.parametrize("destination", ["processed", "failed"])
def test_cross_volume_move_copies_flushes_renames_then_deletes_the_source(
    make_settings, make_processor, simulator, monkeypatch, destination
) -> None:
    settings = make_settings()
    name, folder = _drop_for(destination, settings)
    calls: list[str] = []
    cross_volume_once(monkeypatch, calls)

    make_processor(settings).run_tick()

    assert calls == [
        "fsync",
        f"rename {name}{TEMPORARY_SUFFIX} -> {name}",
        f"remove csv_input/{name}",
    ]
    assert folder_names(folder) == [name]
    assert folder_names(settings.csv_directory) == []


def test_move_on_one_volume_is_a_single_rename(
    make_settings, make_processor, simulator, monkeypatch
) -> None:
    settings = make_settings()
    copy_case(N04, settings.csv_directory)
    calls: list[tuple[str, str]] = []
    real_rename = os.rename

    def rename(source, target):
        calls.append((Path(source).parent.name, Path(target).parent.name))
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "fsync", lambda descriptor: pytest.fail("copied"))

    make_processor(settings).run_tick()

    assert calls == [("csv_input", "processed_files")]
    assert folder_names(settings.processed_directory) == [N04]


# -- the single-instance lock -------------------------------------------------


@pytest.fixture
def lock_harness(tmp_path: Path):
    with KillHarness(tmp_path, seed=1, user_count=20) as harness:
        yield harness


def _start_and_wait_until_running(harness: KillHarness):
    process = harness.start_daemon()
    if not harness.wait_for_log("daemon running", process):
        process.kill()
        process.wait()
        pytest.fail(f"the daemon did not start; see {harness.output_file}")
    return process


def test_second_daemon_exits_at_once_with_code_3_naming_the_lock_and_holder(
    lock_harness: KillHarness,
) -> None:
    first = _start_and_wait_until_running(lock_harness)
    try:
        started = time.monotonic()
        second = lock_harness.run_once(timeout_seconds=30)
        elapsed = time.monotonic() - started
    finally:
        first.kill()
        first.wait()

    assert second.returncode == 3
    lock_path = lock_harness.db_path.with_name("bobo_sync.db.lock")
    assert f"another bobosync is already running: lock {lock_path}" in second.stderr
    assert f"is held by pid {first.pid} on " in second.stderr
    assert elapsed < 10  # interpreter start-up; no waiting for the lock


def test_lock_does_not_survive_a_kill_of_its_holder(lock_harness: KillHarness) -> None:
    first = _start_and_wait_until_running(lock_harness)
    first.kill()
    first.wait()

    after = lock_harness.run_once(timeout_seconds=30)

    assert after.returncode == 0, after.stderr
