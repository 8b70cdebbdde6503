"""Auto-cleanup: clear duty values older than AUTO_CLEANUP_HOURS in AtHoc.

Two sources, every tick: what bobosync itself applied (free when nothing
is due, so an idle tick makes no call), and a full sweep of AtHoc at
start-up and then every CLEANUP_SWEEP_MINUTES, for values bobosync did not
write or no longer remembers.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bobosync.athoc_client import AtHocClient, DutyUpdate
from bobosync.clock import Clock
from bobosync.database import BOBODatabase
from bobosync.errors import ApiError
from bobosync.settings import Settings

logger = logging.getLogger(__name__)


class AutoCleanup:
    """Clears stale duty values; ``run`` returns how many users it cleared."""

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
        self._last_sweep_at: float | None = None

    def run(self) -> int:
        hours = self.settings.auto_cleanup_hours
        cutoff = self.clock.now() - timedelta(hours=hours)
        cleared = self.clear(self._logins_due(cutoff))
        if self._is_sweep_due():
            # Set first: a failed sweep waits its interval, not every tick.
            self._last_sweep_at = self.clock.monotonic()
            cleared |= self.sweep(hours, already_cleared=cleared)
        self._report(len(cleared), hours)
        return len(cleared)

    def _logins_due(self, cutoff: datetime) -> set[str]:
        """Users bobosync booked on before ``cutoff``, except a user that
        another employee booked on since (ids moved between users)."""
        due = self.database.on_duty_before(cutoff)
        busy = self.database.logins_on_duty_since(cutoff)
        superseded = [w.employee_id for w in due if w.login_id.casefold() in busy]
        if superseded:
            self.database.mark_employees_cleared(superseded, self.clock.now())
        return {w.login_id for w in due if w.login_id.casefold() not in busy}

    def sweep(
        self, hours: float, *, already_cleared: frozenset[str] | set[str] = frozenset()
    ) -> set[str]:
        """Clear every AtHoc user whose duty value is older than ``hours``."""
        users = self.client.query_users_with_old_duty_status(
            self.settings.duty_status_field, hours
        )
        found = {str(user["LOGIN_ID"]) for user in users if user.get("LOGIN_ID")}
        return self.clear(found - already_cleared)

    def _report(self, cleared: int, hours: float) -> None:
        if not cleared:
            logger.debug("Auto-cleanup: nothing to clear")
            return
        logger.info(
            "Auto-cleanup: cleared %d users (%s older than %g hours)",
            cleared,
            self.settings.duty_status_field,
            hours,
        )

    def sweep_now(self, hours: float) -> int:
        """The CLI's ``cleanup --hours N``: one sweep, reported like a tick's."""
        cleared = self.sweep(hours)
        self._report(len(cleared), hours)
        return len(cleared)

    def clear(self, logins: set[str]) -> set[str]:
        """Send "" for each user; returns the users AtHoc confirmed."""
        if not logins:
            return set()
        updates = [DutyUpdate(login, "") for login in sorted(logins)]
        try:
            results = self.client.batch_update_duty_status(
                updates, self.settings.duty_status_field
            )
        except ApiError as err:
            # Chunks confirmed before the failure are cleared: remember them.
            done = [r.login_id for r in err.partial_results if r.is_success]
            self.database.mark_cleared(done, self.clock.now())
            raise
        confirmed = {result.login_id for result in results if result.is_success}
        self.database.mark_cleared(confirmed, self.clock.now())
        return confirmed

    def _is_sweep_due(self) -> bool:
        if self._last_sweep_at is None:
            return True
        interval_seconds = self.settings.cleanup_sweep_minutes * 60
        return self.clock.monotonic() - self._last_sweep_at >= interval_seconds
