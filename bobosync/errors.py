"""Exceptions of bobosync: one root, one subclass per kind of failure.

Each carries its context as attributes so the loop and the CLI can say what
failed and what the operator can check. No message ever holds a secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class BoboSyncError(Exception):
    """Root of every error bobosync raises on purpose."""


class ConfigError(BoboSyncError):
    """One or more settings are missing or invalid; start-up stops.

    ``problems`` holds one line per problem, each naming the setting, the bad
    value (never a secret's) and what is expected.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ApiError(BoboSyncError):
    """An AtHoc call failed.

    ``status`` is None when no HTTP answer came (connection refused, timeout,
    TLS or proxy failure). ``is_outage`` tells the loop whether the failure
    is the server's or the network's (files stay, no attempt counted) or an
    answer about the data (the file's attempt is counted).
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status: int | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.retry_after_seconds = retry_after_seconds
        # Results of the chunks AtHoc confirmed before this failure (a list
        # of athoc_client.SyncResult), so they are recorded, not resent.
        self.partial_results: list[Any] = []
        super().__init__(message)

    @property
    def is_outage(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500


class AuthError(ApiError):
    """The token endpoint refused us or could not be reached.

    ``error_code`` is the OAuth2 ``error`` value (``invalid_grant``...) when
    the server gave one. Always an outage: the file is not at fault.
    """

    def __init__(self, message: str, *, error_code: str = "", **context: Any) -> None:
        self.error_code = error_code
        super().__init__(message, **context)

    @property
    def is_outage(self) -> bool:
        return True


class CsvFormatError(BoboSyncError):
    """A BOBO row or file cannot be used; names the file, line and column."""

    def __init__(
        self,
        message: str,
        *,
        path: Path | str = "",
        line: int = 0,
        column: str = "",
        value: str = "",
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.value = value
        super().__init__(message)


class StoreError(BoboSyncError):
    """The SQLite database cannot be used. ``is_locked`` marks a lock held
    by another program, which is an outage, not a fault of any file."""

    def __init__(
        self, message: str, *, db_path: Path | str = "", is_locked: bool = False
    ) -> None:
        self.db_path = db_path
        self.is_locked = is_locked
        super().__init__(message)


class FolderError(BoboSyncError):
    """A folder bobosync reads or writes is missing or not accessible."""

    def __init__(self, message: str, *, path: Path | str = "") -> None:
        self.path = path
        super().__init__(message)


class InstanceLockedError(BoboSyncError):
    """Another bobosync already works on the same CSV_DIRECTORY and DB_PATH."""

    def __init__(self, message: str, *, lock_path: Path | str = "") -> None:
        self.lock_path = lock_path
        super().__init__(message)
