"""The simulator's fault switches: failing, malformed, slow and hanging answers.

``FaultSwitches`` holds the switches tests set (``fail_next``, ``hang``,
``delay``...) and the look-ups the simulator makes for each request.
``AtHocSimulator`` inherits it; its lock guards this state too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ENDPOINT_NAMES = ("token", "search", "sync", "any")
HANG_MODES = ("no_answer", "stall_body")
PERMISSION_DENIED_DETAILS = (
    "Permission denied: operator is not authorized to update this user"
)


@dataclass
class Fault:
    status: int
    headers: dict[str, str]
    body: bytes
    remaining: int | None  # None: every call until cleared


class FaultSwitches:
    """Fault switches of the AtHoc simulator, keyed by endpoint name.

    Every public method is thread-safe under ``_lock``, which the simulator
    creates before calling ``_reset_fault_state``.
    """

    _lock: threading.RLock

    def fail_next(
        self,
        endpoint: str,
        status: int,
        *,
        count: int = 1,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | Any | None = None,
    ) -> None:
        """Answer ``status`` to the next ``count`` calls of ``endpoint``."""
        _check_endpoint(endpoint)
        fault = Fault(status, dict(headers or {}), _fault_body(status, body), count)
        with self._lock:
            self._next_faults.setdefault(endpoint, []).append(fault)

    def fail_always(
        self,
        endpoint: str,
        status: int,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | Any | None = None,
    ) -> None:
        """Answer ``status`` to every call of ``endpoint`` until cleared."""
        _check_endpoint(endpoint)
        fault = Fault(status, dict(headers or {}), _fault_body(status, body), None)
        with self._lock:
            self._always_faults[endpoint] = fault

    def malformed_json_next(self, endpoint: str, count: int = 1) -> None:
        """The next ``count`` calls get 200 with a truncated JSON body."""
        _check_endpoint(endpoint)
        with self._lock:
            self._malformed_counts[endpoint] = count

    def delay(self, endpoint: str, seconds: float) -> None:
        """Wait ``seconds`` (real time) before answering; 0 removes it."""
        _check_endpoint(endpoint)
        with self._lock:
            self._delays[endpoint] = seconds

    def hang(self, endpoint: str, mode: str) -> None:
        """Stop answering until clear_faults() or stop().

        ``no_answer`` reads the request and sends nothing; ``stall_body``
        sends the status line and headers, then stalls in the body.
        """
        _check_endpoint(endpoint)
        if mode not in HANG_MODES:
            raise ValueError(f"mode must be one of {HANG_MODES}, got {mode!r}")
        with self._lock:
            self._hangs[endpoint] = mode

    def clear_faults(self) -> None:
        """Remove every fault switch and end hangs and delays in progress."""
        with self._lock:
            self._release.set()
            self._reset_fault_state()

    def omit_from_sync_answer(
        self, logins: Iterable[str], *, apply: bool = True
    ) -> None:
        """Leave these users out of sync answers; ``apply``: still store them."""
        with self._lock:
            self._omitted.update({login.lower(): apply for login in logins})

    def empty_page_at(self, page_index: int) -> None:
        """That search page (counted from 0) answers no users."""
        with self._lock:
            self._empty_pages.add(page_index)

    def permission_denied_for(self, logins: Iterable[str]) -> None:
        with self._lock:
            for login in logins:
                self._sync_errors[login.lower()] = PERMISSION_DENIED_DETAILS

    def sync_error_for(self, login: str, details: str) -> None:
        with self._lock:
            self._sync_errors[login.lower()] = details

    def set_total_users_override(self, total_users: int | None) -> None:
        """Report this TotalUsers in every search answer; None restores it."""
        with self._lock:
            self._total_users_override = total_users

    def _reset_fault_state(self) -> None:
        self._release = threading.Event()
        self._next_faults: dict[str, list[Fault]] = {}
        self._always_faults: dict[str, Fault] = {}
        self._malformed_counts: dict[str, int] = {}
        self._delays: dict[str, float] = {}
        self._hangs: dict[str, str] = {}
        self._omitted: dict[str, bool] = {}
        self._empty_pages: set[int] = set()
        self._sync_errors: dict[str, str] = {}
        self._total_users_override = None

    def _take_fault(self, keys: tuple[str, ...]) -> Fault | None:
        """The fault due for this call, if any; counts a fail_next fault down."""
        for key in keys:
            queue = self._next_faults.get(key)
            if queue:
                return _count_down(queue)
        for key in keys:
            if key in self._always_faults:
                return self._always_faults[key]
        return None

    def _take_malformed(self, keys: tuple[str, ...]) -> bool:
        for key in keys:
            if self._malformed_counts.get(key, 0) > 0:
                self._malformed_counts[key] -= 1
                return True
        return False


def _count_down(queue: list[Fault]) -> Fault:
    """The first fault of ``queue``, dropped from it once used up."""
    fault = queue[0]
    if fault.remaining is not None:
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.pop(0)
    return fault


def _fault_body(status: int, body: bytes | str | Any | None) -> bytes:
    if body is None:
        body = {"Message": f"Simulated failure: HTTP {status}"}
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


def _check_endpoint(endpoint: str) -> None:
    if endpoint not in ENDPOINT_NAMES:
        raise ValueError(f"endpoint must be one of {ENDPOINT_NAMES}, got {endpoint!r}")
