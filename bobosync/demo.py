"""The embedded demo: the whole daemon against the simulator on loopback.

Starts the simulator with a few dozen users, writes realistic BOBO files
(book-ons, book-offs, an unknown worker, a bad row) into a fresh demo
folder, runs ticks until they are processed and prints the result.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from bobosync.bobo_processor import BOBOProcessor
from bobosync.clock import SystemClock
from bobosync.logging_setup import configure_logging, reset_logging
from bobosync.settings import Settings, make_test_settings
from bobosync.simulator import AtHocSimulator, demo_users

DEMO_USER_COUNT = 36
HEADER = (
    "Transaction_Type,Employee_ID,Payroll_ID,Clocking_Date,Clocking_Time,"
    "DateTime_Created,Geo_Status,Geo_Latitude,Geo_Longitude,Geo_Accuracy"
)
MAX_TICKS = 5


def default_demo_folder(now: datetime) -> Path:
    root = Path(__file__).resolve().parent.parent / "demo_run"
    return root / now.strftime("%Y%m%d_%H%M%S")


def bobo_row(kind: str, collar: str, when: datetime, geo: str = ",,,") -> str:
    """One BOBO line as the export writes it."""
    created = when + timedelta(seconds=3)
    return (
        f"{kind},{collar},7{collar},{when:%Y%m%d},{when:%H%M%S},"
        f"{created:%Y%m%d%H%M%S},{geo}"
    )


def write_demo_files(inbox: Path, collars: list[str], now: datetime) -> list[Path]:
    """Two shift files: morning book-ons, then book-offs and trouble."""
    start = now - timedelta(hours=6)
    morning = [HEADER] + [
        bobo_row(
            "BON", collar, start + timedelta(minutes=3 * index), "1,51.5074,-0.1278,8"
        )
        for index, collar in enumerate(collars[:12])
    ]
    later = now - timedelta(hours=1)
    afternoon = [
        bobo_row("BOF", collar, later + timedelta(minutes=index), "0,,,")
        for index, collar in enumerate(collars[:4])
    ]
    afternoon += [
        bobo_row("BON", collars[20], later + timedelta(minutes=10), "1,,,"),
        bobo_row("BON", "99999", later + timedelta(minutes=11), "1,,,"),
        "BRK,00105,700105,20250230,250000,,1,,,",
        bobo_row("BON", collars[21].lstrip("0"), later + timedelta(minutes=12), "1,,,"),
    ]
    files = [
        (inbox / f"BOBO_{start:%Y%m%d_%H%M}.csv", morning, start),
        (inbox / f"BOBO_{later:%Y%m%d_%H%M}.csv", afternoon, later),
    ]
    for path, lines, written in files:
        path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
        stamp = written.timestamp()
        os.utime(path, (stamp, stamp))
    return [path for path, _, _ in files]


def demo_settings(folder: Path, simulator: AtHocSimulator) -> Settings:
    return make_test_settings(
        folder,
        **simulator.settings_values(),
        file_settle_seconds=0,
        poll_interval_seconds=1,
        log_level="INFO",
    )


def run_demo(folder: Path | None = None, out: TextIO = sys.stdout) -> int:
    """Run the demo; returns 0 when every file was processed as expected."""
    clock = SystemClock()
    folder = folder or default_demo_folder(clock.now())
    users = demo_users(DEMO_USER_COUNT)
    with AtHocSimulator(users, clock=None) as simulator:
        settings = demo_settings(folder, simulator)
        settings.csv_directory.mkdir(parents=True, exist_ok=True)
        log_file = configure_logging(settings, console=False)
        try:
            return _run(simulator, settings, clock, users, log_file, out)
        finally:
            reset_logging()


def _run(
    simulator: AtHocSimulator,
    settings: Settings,
    clock: SystemClock,
    users: list[dict[str, str | None]],
    log_file: Path,
    out: TextIO,
) -> int:
    collars = [str(user["Collar-Number"]) for user in users]
    files = write_demo_files(settings.csv_directory, collars, clock.now())
    print(
        f"bobosync demo: AtHoc simulator at {simulator.url} with {len(users)} users",
        file=out,
    )
    print(f"wrote {len(files)} BOBO files into {settings.csv_directory}", file=out)
    processor = BOBOProcessor(settings, clock=clock)
    try:
        for _ in range(MAX_TICKS):
            processor.run_tick()
            if not any(settings.csv_directory.glob("*.csv")):
                break
    finally:
        processor.close()
    return _print_result(simulator, settings, log_file, out)


def _names(folder: Path, pattern: str = "*") -> list[str]:
    return sorted(p.name for p in folder.glob(pattern) if p.is_file())


def _print_result(
    simulator: AtHocSimulator, settings: Settings, log_file: Path, out: TextIO
) -> int:
    field = settings.duty_status_field
    on_duty = [
        (login, simulator.attribute(login, "Collar-Number"), value)
        for login in simulator.logins()
        if (value := simulator.attribute(login, field))
    ]
    print(f"\non duty in AtHoc ({field} set): {len(on_duty)}", file=out)
    for login, collar, value in on_duty:
        print(f"  {login:<24} collar {collar}  since {value}", file=out)
    booked_off = sorted(
        {u["LOGIN_ID"] for call in simulator.sync_calls for u in call if u[field] == ""}
    )
    print(f"booked off (cleared): {', '.join(booked_off) or 'none'}", file=out)
    print(
        "not sent: worker 99999 has no AtHoc user (see 'unmapped' in the log)", file=out
    )
    processed = _names(settings.processed_directory)
    failed = _names(settings.failed_files_directory)
    reports = [name for name in failed if name.endswith(".rejected.csv")]
    waiting = _names(settings.csv_directory, "*.csv")
    print(f"\nprocessed_files: {', '.join(processed) or 'none'}", file=out)
    print(
        f"failed files:    {', '.join(set(failed) - set(reports)) or 'none'}", file=out
    )
    print(f"row reports:     {', '.join(reports) or 'none'} (the bad row)", file=out)
    print(f"still waiting:   {', '.join(waiting) or 'none'}", file=out)
    print(f"\nlog file: {log_file}", file=out)
    ok = len(processed) == 2 and len(on_duty) == 10 and len(booked_off) == 4
    verdict = "OK" if ok and not waiting else "UNEXPECTED (see the log)"
    print(f"demo result: {verdict}", file=out)
    return 0 if verdict == "OK" else 1
