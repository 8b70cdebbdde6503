"""Clocks: the site-local wall clock and a monotonic timer, injectable.

bobosync works in the site's naive local time (see docs on BOBO event
times). Tests and replays inject a clock instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Site-local naive wall-clock time."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start; never goes back."""

    def sleep(self, seconds: float) -> None:
        """Wait; an injected clock just moves on."""

    def timestamp(self) -> float:
        """Epoch seconds, comparable with file modification times."""


class SystemClock:
    """The machine's own clocks."""

    def now(self) -> datetime:
        return datetime.now()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def timestamp(self) -> float:
        return time.time()


class ShiftedClock(SystemClock):
    """Real time flowing from a given start (the CLI's ``--clock-start``)."""

    def __init__(self, start: datetime) -> None:
        self._offset = start - datetime.now()

    def now(self) -> datetime:
        return datetime.now() + self._offset


class ManualClock:
    """A clock that moves only when told to (tests); thread-safe."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._monotonic = 1000.0
        # File times are real: the epoch side starts at the real time so
        # files written by a test are already "now", then moves with advance().
        self._timestamp = time.time()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def timestamp(self) -> float:
        with self._lock:
            return self._timestamp

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._monotonic += seconds
            self._timestamp += seconds

    def set(self, when: datetime) -> None:
        with self._lock:
            step = max(0.0, (when - self._now).total_seconds())
            self._monotonic += step
            self._timestamp += step
            self._now = when
