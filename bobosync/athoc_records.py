"""Pure: AtHoc query text and answer classification.

Criteria for /users/search/basic, the verdict on one SyncByCommonNames
answer object, and the records the client returns. No network, clock or
logging: the seen answer texts are in ``shared/athoc-api.md``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LOGIN_ID = "LOGIN_ID"
SUCCESS_OUTCOMES = frozenset({"ok", "not_found", "permission_denied"})

_NOT_FOUND = re.compile(
    r"\bdo(es)?\s*n[o']?t\s+exists?\b|\bnot\s+exists?\b|\bnot\s+found\b", re.I
)
# "Attribute X not found" is about our request, not a missing user: it must
# stay an error, never pass as a harmless not_found.
_ABOUT_ATTRIBUTE = re.compile(r"\battribute|\bfield\b", re.I)
_PERMISSION = re.compile(r"permission|denied|not\s+authori[sz]ed", re.I)


@dataclass
class UserRead:
    """Users read from a search; ``complete`` only when every user counted
    by ``TotalUsers`` arrived (distinct LOGIN_IDs)."""

    users: list[dict[str, str | None]]
    total_users: int
    complete: bool


@dataclass(frozen=True)
class SyncResult:
    """AtHoc's verdict on one user sent to SyncByCommonNames."""

    login_id: str
    outcome: str  # "ok" | "not_found" | "permission_denied" | "error" | "missing"
    details: str

    @property
    def is_success(self) -> bool:
        """Done for good: applied, or a case retrying cannot change."""
        return self.outcome in SUCCESS_OUTCOMES


@dataclass(frozen=True)
class DutyUpdate:
    """One duty-status value for one user; ``value`` "" clears the field."""

    login_id: str
    value: str


# --- Criteria and classification -------------------------------------------


def escape_criteria_value(value: str) -> str:
    """Double single quotes: AtHoc's query language quotes values in '...'."""
    return value.replace("'", "''")


def criteria_condition(field_name: str, operator: str, value: str) -> str:
    """``<field> <op> '<value>'`` with the value escaped."""
    return f"{field_name} {operator} '{escape_criteria_value(value)}'"


def criteria_eq(field_name: str, value: str) -> str:
    """``<field> eq '<value>'`` with the value escaped."""
    return criteria_condition(field_name, "eq", value)


def classify_sync_answer(item: Mapping[str, Any]) -> SyncResult:
    """Turn one SyncByCommonNames answer object into a SyncResult."""
    status = str(item.get(":SyncStatus") or "").strip().lower()
    details = str(item.get(":SyncDetails") or "").strip()
    login_id = str(item.get(LOGIN_ID) or "")
    if status == "ok":
        return SyncResult(login_id, "ok", details)
    if status == "partial":
        return SyncResult(login_id, "error", details)
    if _NOT_FOUND.search(details) and not _ABOUT_ATTRIBUTE.search(details):
        return SyncResult(login_id, "not_found", details)
    if _PERMISSION.search(details):
        return SyncResult(login_id, "permission_denied", details)
    return SyncResult(login_id, "error", details or f"SyncStatus={status!r}")
