"""The worker map: BOBO employee id -> AtHoc LOGIN_ID.

Refreshed from AtHoc once a day after SYNC_HOUR (at once when never done,
overdue or failed, then backing off), never from an incomplete or
suspicious read; ids missing from it are looked up in AtHoc directly, at
most once an hour each.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from bobosync.athoc_client import AtHocClient
from bobosync.bobo_entry import canonical_employee_id
from bobosync.clock import Clock
from bobosync.database import BOBODatabase, MappingChange, Tracking
from bobosync.errors import ApiError
from bobosync.settings import Settings

logger = logging.getLogger(__name__)

MAPPING_TRACKING = "mapping_refresh"
RETRY_FIRST_SECONDS = 300.0
RETRY_MAX_SECONDS = 6 * 3600.0


@dataclass(frozen=True)
class MappingRefreshResult:
    """The outcome of one mapping refresh."""

    users_read: int
    mapped: int
    added: int
    changed: int
    removed: int
    ambiguous: int


def mapping_refresh_due(
    tracking: Tracking | None, now: datetime, sync_hour: int, retry_days: int
) -> bool:
    """Whether the daily map refresh should run now (ignoring back-off)."""
    if tracking is None or tracking.last_success_at is None:
        return True
    if tracking.last_status == "failed":
        return True
    last = tracking.last_success_at
    if last > now:
        return True  # the clock went back: the schedule means nothing
    if now - last >= timedelta(days=retry_days):
        return True
    today_at_hour = now.replace(hour=sync_hour, minute=0, second=0, microsecond=0)
    return now >= today_at_hour > last


def backoff_delay(base_seconds: float, failures: int, cap_seconds: float) -> float:
    """Exponential back-off: base, 2*base, 4*base ... up to the cap."""
    if failures <= 0:
        return base_seconds
    return min(cap_seconds, base_seconds * 2 ** min(failures, 20))


def build_mapping(
    users: Iterable[Mapping[str, str | None]], collar_field: str
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Canonical employee id -> LOGIN_ID, and the ids claimed twice."""
    claims: dict[str, list[str]] = {}
    for user in users:
        login = (user.get("LOGIN_ID") or "").strip()
        raw_id = (user.get(collar_field) or "").strip()
        if login and raw_id:
            claims.setdefault(canonical_employee_id(raw_id), []).append(login)
    mapping = {key: logins[0] for key, logins in claims.items() if len(logins) == 1}
    ambiguous = {key: logins for key, logins in claims.items() if len(logins) > 1}
    return mapping, ambiguous


class WorkerMapping:
    """Keeps the map in the database fresh and answers look-ups."""

    def __init__(
        self,
        settings: Settings,
        client: AtHocClient,
        database: BOBODatabase,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.client = client
        self.database = database
        self.clock = clock
        self._failures = 0
        self._retry_at = 0.0

    def refresh_if_due(self) -> None:
        """Refresh when the schedule says so and no back-off holds it."""
        if not self.settings.sync_mappings:
            return
        tracking = self.database.get_tracking(MAPPING_TRACKING)
        settings = self.settings
        if not mapping_refresh_due(
            tracking, self.clock.now(), settings.sync_hour, settings.sync_retry_days
        ):
            return
        if self.clock.monotonic() < self._retry_at:
            logger.debug("mapping refresh backing off after a failure")
            return
        self.refresh()

    def refresh(self) -> MappingRefreshResult | None:
        """Refresh the map from AtHoc now.

        Returns None when the read was incomplete (the map is left as it
        was). Raises ApiError when AtHoc cannot be read.
        """
        now = self.clock.now()
        try:
            result = self._refresh(now)
        except ApiError as err:
            self._note_failure(now, str(err))
            raise
        if result is None:
            self._note_failure(now, "incomplete read")
            return None
        self.database.record_tracking(MAPPING_TRACKING, success=True, at=now)
        self._failures = 0
        self._retry_at = 0.0
        return result

    def _note_failure(self, now: datetime, detail: str) -> None:
        self.database.record_tracking(
            MAPPING_TRACKING, success=False, at=now, detail=detail
        )
        self._failures += 1
        delay = backoff_delay(
            RETRY_FIRST_SECONDS, self._failures - 1, RETRY_MAX_SECONDS
        )
        self._retry_at = self.clock.monotonic() + delay

    def _refresh(self, now: datetime) -> MappingRefreshResult | None:
        collar = self.settings.collar_id_field
        extra = [name for name in self.settings.user_attributes if name != collar]
        read = self.client.get_all_users_with_attributes([collar, *extra])
        if not read.complete:
            logger.warning(
                "mapping refresh incomplete: received=%d total=%d; the map is "
                "left unchanged and the refresh is tried again later",
                len(read.users),
                read.total_users,
            )
            return None
        mapping, ambiguous = build_mapping(read.users, collar)
        self._warn_ambiguous(ambiguous)
        if read.users and not mapping and not ambiguous:
            logger.warning(
                "no AtHoc user holds a value in COLLAR_ID_FIELD=%s: check the "
                "setting against the attribute's common name in AtHoc",
                collar,
            )
        change = self._replace(mapping, now)
        logger.info(
            "Worker mapping refreshed: users=%d mapped=%d added=%d changed=%d "
            "removed=%d ambiguous=%d",
            len(read.users),
            len(mapping),
            change.added,
            change.changed,
            change.removed,
            len(ambiguous),
        )
        return MappingRefreshResult(
            len(read.users),
            len(mapping),
            change.added,
            change.changed,
            change.removed,
            len(ambiguous),
        )

    def _warn_ambiguous(self, ambiguous: dict[str, list[str]]) -> None:
        for employee_id, logins in sorted(ambiguous.items()):
            logger.warning(
                "ambiguous employee id: id=%s is the %s of %s; neither is mapped",
                employee_id,
                self.settings.collar_id_field,
                " and ".join(logins),
            )

    def _replace(self, mapping: dict[str, str], now: datetime) -> MappingChange:
        existing = self.database.get_mapping()
        removals = sum(1 for key in existing if key not in mapping)
        # The safety valve: a read that would empty half the map is suspect.
        allow_removals = removals * 2 <= len(existing)
        if not allow_removals:
            logger.warning(
                "mapping refresh would remove %d of %d mappings; removing none "
                "(safety valve). Check COLLAR_ID_FIELD and the API user's rights",
                removals,
                len(existing),
            )
        return self.database.replace_mapping(
            mapping, now, allow_removals=allow_removals
        )

    def logins_for(self, employee_ids: Iterable[str]) -> dict[str, str]:
        """LOGIN_ID of each id that has one, looking up unknown ids in AtHoc."""
        wanted = list(employee_ids)
        mapping = self.database.get_mapping()
        missing = [key for key in wanted if key not in mapping]
        if missing:
            mapping.update(self._look_up(missing))
        return {key: mapping[key] for key in wanted if key in mapping}

    def _look_up(self, employee_ids: list[str]) -> dict[str, str]:
        """Ask AtHoc directly for ids missing from the map (once an hour each)."""
        now = self.clock.now()
        due = [key for key in employee_ids if self.database.lookup_due(key, now)]
        if not due:
            return {}
        users = self.client.find_users_by_collar_ids(due)
        found, ambiguous = build_mapping(users, self.settings.collar_id_field)
        self._warn_ambiguous(ambiguous)
        found = {key: login for key, login in found.items() if key in due}
        with self.database.transaction():
            for employee_id, login in found.items():
                self.database.add_mapping(employee_id, login, now)
            self.database.record_lookups(due, now)
        for employee_id, login in found.items():
            logger.info(
                "mapping found by direct look-up: id=%s login=%s", employee_id, login
            )
        return found
