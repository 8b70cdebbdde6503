"""Kill the daemon many times with files flowing and check nothing was lost.

    python benchmarks/kill_stress.py --kills 200 --seed 1

Starts the AtHoc simulator on loopback, then repeatedly drops BOBO files,
starts ``python -m bobosync``, SIGKILLs it at a random or chosen point
(while parsing, during the mapping refresh, between the AtHoc call and the
move, between moves, during auto-cleanup) and starts it again. At the end
the daemon drains the inbox, and the simulator, the folders and the
database are checked against the latest event per employee in the files.
Exit status 0 when nothing was lost or duplicated, 1 otherwise. The harness
is tests/killtest.py.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.killtest import KillHarness  # noqa: E402


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--users", type=int, default=300, help="AtHoc users")
    parser.add_argument(
        "--max-delay", type=float, default=1.5, help="longest random delay, seconds"
    )
    parser.add_argument(
        "--sync-delay",
        type=float,
        default=0.0,
        help="seconds the simulator waits before each sync answer",
    )
    parser.add_argument(
        "--moved-to",
        type=Path,
        help="put processed_files and failed_files here (another volume makes "
        "every move a copy, a rename and a delete)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder for inspection"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    work = Path(tempfile.mkdtemp(prefix="bobosync-kill-"))
    moved_to = None
    if arguments.moved_to is not None:
        moved_to = Path(
            tempfile.mkdtemp(prefix="bobosync-kill-", dir=arguments.moved_to)
        )
    print(f"kill stress: kills={arguments.kills} seed={arguments.seed} work={work}")
    try:
        with KillHarness(
            work,
            seed=arguments.seed,
            user_count=arguments.users,
            max_kill_delay_seconds=arguments.max_delay,
            sync_delay_seconds=arguments.sync_delay,
            moved_to=moved_to,
        ) as harness:
            report = harness.run(arguments.kills)
    finally:
        if not arguments.keep:
            shutil.rmtree(work, ignore_errors=True)
            if moved_to is not None:
                shutil.rmtree(moved_to, ignore_errors=True)
    print("\n".join(report.summary_lines()))
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
