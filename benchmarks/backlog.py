"""Benchmark: one tick over a backlog of BOBO rows, against the simulator.

    python benchmarks/backlog.py --rows 1000000 --files 20 --workers 5000

Prints the tick's time and the process's peak resident memory (where the
platform reports it), or with --trace-memory the peak Python allocation
(tracemalloc, which slows the tick about twofold). Figures, not assertions.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bobosync.athoc_client import AtHocClient  # noqa: E402
from bobosync.bobo_processor import BOBOProcessor  # noqa: E402
from bobosync.clock import ManualClock  # noqa: E402
from bobosync.settings import make_test_settings  # noqa: E402
from bobosync.simulator import AtHocSimulator  # noqa: E402

NOW = datetime(2025, 3, 14, 23, 0, 0)


def write_backlog(folder: Path, rows: int, files: int, workers: int, seed: int) -> None:
    """``rows`` random events spread over ``files`` files."""
    rng = random.Random(seed)
    per_file = rows // files
    start = NOW - timedelta(hours=20)
    for index in range(files):
        lines = []
        for _ in range(per_file):
            worker = rng.randrange(workers)
            when = start + timedelta(seconds=rng.randrange(20 * 3600))
            kind = rng.choice(("BON", "BOF"))
            lines.append(
                f"{kind},{worker + 1:05d},7{worker:05d},{when:%Y%m%d},{when:%H%M%S},"
                f"{when:%Y%m%d%H%M%S},1,51.5,-0.12,5"
            )
        path = folder / f"BOBO_{index:04d}.csv"
        path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")


def peak_resident_mib() -> str:
    """The process's peak resident set, where the platform tells it."""
    try:
        import resource  # POSIX only
    except ImportError:
        return "n/a"
    kibibytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return f"{kibibytes / 1024:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trace-memory", action="store_true")
    args = parser.parse_args(argv)

    users = [
        {"LOGIN_ID": f"worker{n + 1:05d}", "Collar-Number": f"{n + 1:05d}"}
        for n in range(args.workers)
    ]
    clock = ManualClock(NOW)
    with (
        tempfile.TemporaryDirectory() as folder,
        AtHocSimulator(users, clock=clock) as sim,
    ):
        settings = make_test_settings(
            Path(folder),
            **sim.settings_values(),
            file_settle_seconds=0,
            batch_size=args.files,
        )
        settings.csv_directory.mkdir(parents=True)
        write_backlog(
            settings.csv_directory, args.rows, args.files, args.workers, args.seed
        )
        client = AtHocClient(settings, clock=clock)
        processor = BOBOProcessor(settings, client=client, clock=clock)
        processor.sync_worker_mappings()
        if args.trace_memory:
            tracemalloc.start()
        started = time.perf_counter()
        report = processor.run_tick()
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        processor.close()
        print(f"rows={args.rows} files={args.files} workers={args.workers}")
        print(f"tick_seconds={elapsed:.2f} rows_per_second={args.rows / elapsed:,.0f}")
        if args.trace_memory:
            print(f"peak_python_allocation_mib={peak / 2**20:.1f}")
        print(f"peak_resident_memory_mib={peak_resident_mib()}")
        print(
            f"files_processed={report.files_processed} users_sent={report.users_sent} "
            f"sync_calls={len(sim.sync_calls)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
