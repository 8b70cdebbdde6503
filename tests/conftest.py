"""Shared fixtures: the AtHoc simulator, settings, an injected clock, cases."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from bobosync.athoc_client import AtHocClient
from bobosync.bobo_processor import BOBOProcessor
from bobosync.clock import ManualClock
from bobosync.settings import Settings, make_test_settings
from bobosync.simulator import AtHocSimulator

REPO_ROOT = Path(__file__).resolve().parent.parent
# Byte-exact copies of the team's ../shared/cases (see test_case_fixtures.py).
CASES = REPO_ROOT / "tests" / "cases"
SHARED_CASES = REPO_ROOT.parent / "shared" / "cases"
CASE_TIME = datetime(2025, 3, 14, 23, 0, 0)
DUTY = "On-Duty-DTG"
COLLAR = "Collar-Number"

# The six AtHoc users of ../shared/cases/EXPECTED.md, "Test conventions".
CASE_USERS = [
    {"LOGIN_ID": "t.ashby", COLLAR: "00417", DUTY: None},
    {"LOGIN_ID": "r.okafor", COLLAR: "04170", DUTY: None},
    {"LOGIN_ID": "m.lindqvist", COLLAR: "00009", DUTY: None},
    {"LOGIN_ID": "s.varga", COLLAR: "00422", DUTY: None},
    {"LOGIN_ID": "k.moreau", COLLAR: "01234", DUTY: None},
    {"LOGIN_ID": "p.nandi", COLLAR: "00088", DUTY: None},
]


def case_file(name: str) -> Path:
    path = CASES / name
    if not path.exists():
        pytest.skip(f"the shared case file {path} is not available")
    return path


def copy_case(
    name: str, folder: Path, *, as_name: str | None = None, mtime: float | None = None
) -> Path:
    """Copy a fixture byte for byte into ``folder``; optionally set its mtime."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (as_name or Path(name).name)
    target.write_bytes(case_file(name).read_bytes())
    if mtime is not None:
        os.utime(target, (mtime, mtime))
    return target


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(CASE_TIME)


@pytest.fixture
def simulator(clock: ManualClock) -> Iterator[AtHocSimulator]:
    with AtHocSimulator(CASE_USERS, clock=clock) as running:
        yield running


def settings_for(
    tmp_path: Path, simulator: AtHocSimulator, **overrides: object
) -> Settings:
    values: dict[str, object] = dict(
        **simulator.settings_values(),
        auto_cleanup_hours=24,
        file_settle_seconds=0,
        request_timeout_seconds=5,
    )
    values.update(overrides)
    return make_test_settings(tmp_path, **values)


@pytest.fixture
def make_settings(tmp_path: Path, simulator: AtHocSimulator) -> Callable[..., Settings]:
    def build(**overrides: object) -> Settings:
        settings = settings_for(tmp_path, simulator, **overrides)
        settings.csv_directory.mkdir(parents=True, exist_ok=True)
        return settings

    return build


@pytest.fixture
def make_processor(
    clock: ManualClock, make_settings: Callable[..., Settings]
) -> Iterator[Callable[..., BOBOProcessor]]:
    made: list[BOBOProcessor] = []

    def build(settings: Settings | None = None, **overrides: object) -> BOBOProcessor:
        settings = settings or make_settings(**overrides)
        client = AtHocClient(settings, clock=clock, retry_backoff_seconds=0.0)
        processor = BOBOProcessor(settings, client=client, clock=clock)
        made.append(processor)
        return processor

    yield build
    for processor in made:
        processor.close()


def sent_in(simulator: AtHocSimulator) -> dict[str, str]:
    """Every update of the recorded sync calls; asserts one per user."""
    sent: dict[str, str] = {}
    for call in simulator.sync_calls:
        for user in call:
            login = user["LOGIN_ID"]
            assert login not in sent, f"{login} sent twice in one tick"
            sent[login] = user[DUTY]
    return sent


def run_tick(
    processor: BOBOProcessor,
    simulator: AtHocSimulator,
    caplog: pytest.LogCaptureFixture,
) -> tuple[dict[str, str], list[str]]:
    """One successful tick; returns its sent updates and WARNING texts."""
    simulator.reset_records()
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="bobosync"):
        report = processor.run_tick()
    assert report.is_success, report.outage
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return sent_in(simulator), warnings


def folder_names(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(
        p.name for p in folder.iterdir() if p.is_file() and p.name != ".gitkeep"
    )


def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every bobosync setting and proxy variable from the environment."""
    from bobosync import settings as settings_module

    names = {name.upper() for name in getattr(settings_module, "SETTING_NAMES", ())}
    names |= {
        "USERNAME",
        "APIUSER",
        "ATHOC_USERNAME",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
    }
    for key in list(os.environ):
        if key.upper() in names:
            monkeypatch.delenv(key, raising=False)


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target
