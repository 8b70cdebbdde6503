"""The command line: ``python -m bobosync [command]``.

Commands are thin: parse arguments, build settings, set up logging, call one
function, map errors to exit codes.

Exit codes: 0 the work was done; 1 it could not be done (AtHoc unreachable
or refusing the credentials, database or folders unusable); 2 configuration
error; 3 another bobosync already runs on the same DB_PATH / CSV_DIRECTORY.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from bobosync import __version__
from bobosync.bobo_processor import BOBOProcessor
from bobosync.clock import Clock, ShiftedClock, SystemClock
from bobosync.errors import (
    ApiError,
    ConfigError,
    FolderError,
    InstanceLockedError,
    StoreError,
)
from bobosync.instance_lock import InstanceLock
from bobosync.logging_setup import LOG_FILE_NAME, configure_logging
from bobosync.settings import (
    Settings,
    default_env_file,
    load_settings,
    read_env_file,
    resolve_path,
)

logger = logging.getLogger("bobosync.cli")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 3

OWN_LINE_SETTINGS = (
    ".env file",
    "proxy:",
    "ATHOC_SERVER_URL=",
    "CSV_DIRECTORY=",
    "PROCESSED_DIRECTORY=",
    "FAILED_FILES_DIRECTORY=",
    "DB_PATH=",
    "LOG_DIRECTORY=",
    "SSL_CERT_PATH=",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bobosync",
        description="Keep AtHoc's duty status in step with BOBO files.",
        epilog="Exit codes: 0 done, 1 could not work, 2 configuration error, "
        "3 another instance is running.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "--env-file", type=Path, help="the .env to read (default: beside the package)"
    )
    parser.add_argument("--once", action="store_true", help="run one tick and exit")
    parser.add_argument(
        "--clock-start",
        type=datetime.fromisoformat,
        help="run as if the site-local clock read this time at start "
        "(YYYY-MM-DDTHH:MM:SS), for replays and tests",
    )
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.add_parser("run", help="the daemon (the default)")
    commands.add_parser("sync-users", help="refresh the worker map from AtHoc now")
    cleanup = commands.add_parser(
        "cleanup", help="clear duty values older than N hours in AtHoc now"
    )
    cleanup.add_argument("--hours", type=float, help="default: AUTO_CLEANUP_HOURS")
    demo = commands.add_parser("demo", help="run the embedded demo on loopback")
    demo.add_argument("--folder", type=Path, help="where the demo writes its files")
    commands.add_parser("simulator", help="serve the AtHoc simulator (see --help)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulator"]:
        from bobosync.simulator import main as simulator_main

        return simulator_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from bobosync.demo import run_demo

        return run_demo(args.folder)
    try:
        settings = load_settings(args.env_file)
        log_file = _start_logging(settings)
    except (ConfigError, FolderError) as err:
        print(f"bobosync: configuration error:\n{err}", file=sys.stderr)
        append_to_existing_log(args.env_file, f"configuration error: {err}")
        return EXIT_CONFIG
    clock: Clock = ShiftedClock(args.clock_start) if args.clock_start else SystemClock()
    try:
        return _run_command(args, settings, clock, log_file)
    except InstanceLockedError as err:
        logger.error("%s", err)
        return EXIT_LOCKED
    except (ApiError, StoreError, FolderError) as err:
        logger.error("%s", err)
        return EXIT_FAILED


def append_to_existing_log(env_file: Path | None, message: str) -> None:
    """Put a start-up failure into the log operators tail, when it exists.

    Under Task Scheduler stderr goes nowhere. Best effort: the folder comes
    from the .env as written (or ``logs`` beside it) and is never created.
    """
    env_path = Path(env_file) if env_file else default_env_file()
    try:
        values = read_env_file(env_path) if env_path.is_file() else {}
    except (OSError, UnicodeError, ValueError):
        values = {}
    folder = resolve_path(values.get("LOG_DIRECTORY") or "logs", env_path.parent)
    if not folder.is_dir():
        return
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,000")
    lines = "".join(
        f"{stamp} ERROR bobosync.cli: {line}\n" for line in message.splitlines()
    )
    try:
        with (folder / LOG_FILE_NAME).open("a", encoding="utf-8") as stream:
            stream.write(lines)
    except OSError:
        pass


def _start_logging(settings: Settings) -> Path:
    log_file = configure_logging(settings)
    logger.info("bobosync %s starting: log=%s", __version__, log_file)
    for notice in settings.notices:
        logger.warning("%s", notice)
    # Paths and the connection one per line (operators grep them); the
    # other settings together, so a start does not fill the log.
    lines = settings.describe()
    for line in lines:
        if line.startswith(OWN_LINE_SETTINGS):
            logger.info("setting: %s", line)
    others = [line for line in lines if not line.startswith(OWN_LINE_SETTINGS)]
    logger.info("setting: %s", " ".join(others))
    return log_file


def _run_command(
    args: argparse.Namespace, settings: Settings, clock: Clock, log_file: Path
) -> int:
    with InstanceLock(settings.db_path, settings.csv_directory):
        stop_event = threading.Event()
        processor = BOBOProcessor(settings, clock=clock, stop_event=stop_event)
        try:
            if args.command == "sync-users":
                return _sync_users(processor)
            if args.command == "cleanup":
                hours = args.hours or settings.auto_cleanup_hours
                cleared = processor.cleanup.sweep_now(hours)
                print(f"cleared {cleared} users")
                return EXIT_OK
            if args.once:
                return EXIT_OK if processor.run_tick().is_success else EXIT_FAILED
            return _run_forever(processor, stop_event)
        finally:
            processor.close()


def _sync_users(processor: BOBOProcessor) -> int:
    result = processor.sync_worker_mappings()
    if result is None:
        print("mapping refresh incomplete: the map was left unchanged")
        return EXIT_FAILED
    print(
        f"mapped {result.mapped} of {result.users_read} AtHoc users "
        f"(added {result.added}, changed {result.changed}, removed {result.removed})"
    )
    return EXIT_OK


def _run_forever(processor: BOBOProcessor, stop_event: threading.Event) -> int:
    reason = {"signal": "stop requested"}

    def request_stop(signal_number: int, _frame: object) -> None:
        # Only set the flag: the loop finishes its current step and stops.
        reason["signal"] = signal.Signals(signal_number).name
        stop_event.set()

    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), request_stop)
    logger.info(
        "daemon running: one tick every %s s; Ctrl+C stops it",
        processor.settings.poll_interval_seconds,
    )
    processor.run_forever()
    logger.info("bobosync stopped: reason=%s", reason["signal"])
    return EXIT_OK
