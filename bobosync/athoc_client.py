"""AtHoc REST API v2 client: token, user search and SyncByCommonNames.

The facts this module relies on (paths, grants, answer shapes, the seen
texts of SyncByCommonNames) are in ``shared/athoc-api.md``. The transport
(TLS, proxies, retries) is set up by ``http_transport``; the query text and
answer classification live in ``athoc_records``. This module owns the token,
the calls with a timeout each, paging, and error translation: every failure
becomes an ``ApiError`` (or ``AuthError``) naming the method, the path and
what to check (the advice text is built in ``athoc_errors``); no message or
log line holds a password, secret or token.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests

if not __package__:
    # The operators' runbook runs `AtHocClient()` from inside bobosync/, so
    # this file is then a top-level module: put the install folder on the
    # path so that the absolute `bobosync.` imports below resolve.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bobosync.athoc_errors import (  # noqa: E402
    describe_failure,
    status_advice,
    token_advice,
)
from bobosync.athoc_records import (  # noqa: E402
    LOGIN_ID,
    SUCCESS_OUTCOMES,
    DutyUpdate,
    SyncResult,
    UserRead,
    classify_sync_answer,
    criteria_condition,
    criteria_eq,
    escape_criteria_value,
)
from bobosync.bobo_entry import canonical_employee_id  # noqa: E402
from bobosync.clock import Clock, SystemClock  # noqa: E402
from bobosync.errors import ApiError, AuthError  # noqa: E402
from bobosync.http_transport import (  # noqa: E402
    RETRY_BACKOFF_MAX_SECONDS,
    RETRY_STATUSES,
    BoundedRetry,
    TlsAdapter,
    build_retry,
    build_session,
    build_ssl_context,
    is_proxy_bypassed,
    select_proxies,
)
from bobosync.logging_setup import configure_logging  # noqa: E402
from bobosync.settings import Settings, load_settings  # noqa: E402

# The public names, including those re-exported from athoc_records and
# http_transport: callers import them from here.
__all__ = [
    "DEFAULT_TOKEN_LIFETIME_SECONDS",
    "LOGIN_ID",
    "LOOKUP_GROUP_SIZE",
    "RENEW_AHEAD_SECONDS",
    "RETRY_BACKOFF_MAX_SECONDS",
    "RETRY_STATUSES",
    "SEARCH_PATH",
    "SUCCESS_OUTCOMES",
    "SYNC_PARAMS",
    "SYNC_PATH",
    "TOKEN_PATH",
    "UNUSABLE_ANSWER_STATUS",
    "AtHocClient",
    "BoundedRetry",
    "DutyUpdate",
    "SyncResult",
    "TlsAdapter",
    "UserRead",
    "build_retry",
    "build_session",
    "build_ssl_context",
    "classify_sync_answer",
    "criteria_condition",
    "criteria_eq",
    "escape_criteria_value",
    "is_proxy_bypassed",
    "select_proxies",
]

# Named, not __name__: the runbook imports this file as a top-level
# module, whose records must still reach the bobosync handlers.
logger = logging.getLogger("bobosync.athoc_client")

TOKEN_PATH = "/AuthServices/Auth/connect/token"
SYNC_PATH = "/users/SyncByCommonNames"
SEARCH_PATH = "/users/search/basic"
# syncExistingUsersOnly defaults to false on the server, which CREATES users.
SYNC_PARAMS = {"syncExistingUsersOnly": "true", "AllowPartialUpdate": "false"}
RENEW_AHEAD_SECONDS = 60.0
LOOKUP_GROUP_SIZE = 50
DEFAULT_TOKEN_LIFETIME_SECONDS = 3600.0
# An answer whose body cannot be used counts as an outage, like a 502 from a
# gateway: the server misbehaved, the data did not (ApiError.is_outage).
UNUSABLE_ANSWER_STATUS = 502

# Shorter secrets are not masked in server text (see _scrub).
_MIN_SCRUBBED_SECRET_CHARS = 4


@dataclass
class _Token:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    renew_at_monotonic: float


# --- Pure helpers: paging and search fields --------------------------------


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _normalize_user(
    row: Mapping[str, Any], fields: Sequence[str]
) -> dict[str, str | None]:
    """null, "" and a missing attribute all read as None."""
    user: dict[str, str | None] = {}
    for name in fields:
        value = row.get(name)
        user[name] = None if value is None or value == "" else str(value)
    return user


def _search_fields(fields: Sequence[str]) -> list[str]:
    return [LOGIN_ID, *(name for name in dict.fromkeys(fields) if name != LOGIN_ID)]


# --- The client -------------------------------------------------------------


class AtHocClient:
    """Calls the AtHoc API for one organisation; authenticates lazily.

    A given ``session`` is reconfigured (no environment proxies, our TLS
    context and retries). Raises ApiError/AuthError from every API method.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        session: requests.Session | None = None,
        clock: Clock | None = None,
        *,
        retry_backoff_seconds: float = 1.0,
        max_retries: int = 3,
        max_retry_after_seconds: float = 120.0,
    ) -> None:
        if settings is None:
            # The operators' runbook: read the .env and log like the daemon.
            settings = load_settings()
            configure_logging(settings)
        self._settings = settings
        self._clock = clock if clock is not None else SystemClock()
        self._refusals_warned_at: dict[tuple[str, str], float] = {}
        self._retry = build_retry(
            max_retries, retry_backoff_seconds, max_retry_after_seconds
        )
        self._session = build_session(self._settings, self._retry, session)
        server_url = self._settings.athoc_server_url
        self._proxies = select_proxies(server_url, self._settings)
        self._proxy = self._proxies.get(urlsplit(server_url).scheme.lower(), "")
        self._api_base = f"{server_url}/api/v2/orgs/{quote(self._settings.org_code)}"
        self._token: _Token | None = None
        self._offset_mode = self._settings.search_offset_mode
        self._secrets = self._known_secrets()
        self._long_waits_logged: set[str] = set()

    @property
    def session(self) -> requests.Session:
        return self._session

    # --- token ---

    def authenticate(self) -> None:
        """Log in with the password grant. Raises AuthError."""
        self._token = self._fetch_token(self._password_form(), "password")
        logger.info(
            "Authentication successful: user=%s org=%s",
            self._settings.api_user,
            self._settings.org_code,
        )

    def _access_token(self) -> str:
        if self._token is None:
            self.authenticate()
        elif self._clock.monotonic() >= self._token.renew_at_monotonic:
            self._renew_token()
        assert self._token is not None
        return self._token.access_token

    def _renew_token(self) -> None:
        """Refresh grant first: it keeps the password off the wire and away
        from lock-out policies; a refused refresh falls back to the password."""
        assert self._token is not None
        if not self._token.refresh_token:
            self.authenticate()
            return
        form = {
            "grant_type": "refresh_token",
            "refresh_token": self._token.refresh_token,
            "client_id": self._settings.client_id,
            "client_secret": self._settings.client_secret,
        }
        try:
            self._token = self._fetch_token(form, "refresh_token")
        except AuthError as err:
            if err.status not in (400, 401):
                raise
            logger.info(
                "refresh token refused, logging in again: error_code=%s", err.error_code
            )
            # A refused refresh token stays refused: while the password is
            # refused too, each later tick makes one token request, not two.
            self._token = None
            self.authenticate()
            return
        logger.debug("access token renewed with the refresh token")

    def _password_form(self) -> dict[str, str]:
        settings = self._settings
        return {
            "grant_type": "password",
            "client_id": settings.client_id,
            "client_secret": settings.client_secret,
            "username": settings.api_user,
            "password": settings.password,
            "scope": settings.scope,
            "acr_values": f"tenant:{settings.org_code}",
        }

    def _fetch_token(self, form: dict[str, str], grant: str) -> _Token:
        url = self._settings.athoc_server_url + TOKEN_PATH
        try:
            response = self._send("POST", TOKEN_PATH, url, data=form)
            if response.status_code in (400, 401):
                raise self._token_refused(response, grant)
            self._raise_for_status("POST", TOKEN_PATH, response)
            answer = self._decode_json("POST", TOKEN_PATH, response, log=False)
        except AuthError:
            raise
        except ApiError as err:
            raise AuthError(
                f"authentication failed: {err}",
                method="POST",
                path=TOKEN_PATH,
                status=err.status,
                retry_after_seconds=err.retry_after_seconds,
            ) from err
        return self._token_from_answer(answer)

    def _token_from_answer(self, answer: Any) -> _Token:
        if not isinstance(answer, dict) or not answer.get("access_token"):
            raise AuthError(
                f"POST {TOKEN_PATH}: the token answer holds no access_token",
                method="POST",
                path=TOKEN_PATH,
                status=UNUSABLE_ANSWER_STATUS,
            )
        try:
            lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_LIFETIME_SECONDS)
        except (TypeError, ValueError):
            lifetime = DEFAULT_TOKEN_LIFETIME_SECONDS
        token = _Token(
            access_token=str(answer["access_token"]),
            refresh_token=str(answer.get("refresh_token") or ""),
            # 60 s ahead, or at 90% of a lifetime shorter than 10 minutes.
            renew_at_monotonic=self._clock.monotonic()
            + lifetime
            - min(RENEW_AHEAD_SECONDS, lifetime * 0.1),
        )
        self._secrets = self._known_secrets(token)
        return token

    def _token_refused(self, response: requests.Response, grant: str) -> AuthError:
        try:
            error_code = str(response.json().get("error") or "")
        except (ValueError, AttributeError):
            error_code = ""
        if not error_code and response.status_code == 401:
            error_code = "invalid_grant"
        return AuthError(
            f"POST {TOKEN_PATH}: authentication failed:"
            f" {token_advice(error_code, grant, self._settings)}",
            error_code=error_code,
            method="POST",
            path=TOKEN_PATH,
            status=response.status_code,
        )

    # --- requests and errors ---

    def _call_api(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any],
        json_body: Any = None,
    ) -> Any:
        """One API call with a valid token; a 401 re-authenticates once."""
        url = self._api_base + path
        api_path = urlsplit(url).path
        response = self._send_with_token(method, api_path, url, params, json_body)
        if response.status_code == 401:
            logger.warning(
                "AtHoc refused the access token, logging in again: method=%s path=%s",
                method,
                api_path,
            )
            self._token = None
            response = self._send_with_token(method, api_path, url, params, json_body)
        self._raise_for_status(method, api_path, response)
        return self._decode_json(method, api_path, response)

    def _send_with_token(
        self,
        method: str,
        path: str,
        url: str,
        params: Mapping[str, Any],
        json_body: Any,
    ) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self._access_token()}",
            "Accept": "application/json",
        }
        return self._send(
            method, path, url, params=params, json=json_body, headers=headers
        )

    def _send(
        self, method: str, path: str, url: str, **kwargs: Any
    ) -> requests.Response:
        try:
            return self._session.request(
                method,
                url,
                timeout=self._settings.request_timeout_seconds,
                proxies=self._proxies,
                allow_redirects=False,
                **kwargs,
            )
        except requests.RequestException as err:
            failure = describe_failure(err, self._settings, self._proxy, self._scrub)
            message = f"{method} {path} failed: {failure}"
            raise ApiError(message, method=method, path=path) from err

    def _raise_for_status(
        self, method: str, path: str, response: requests.Response
    ) -> None:
        status = response.status_code
        if status < 400:
            return
        retry_after = self._retry_after(response)
        if (
            retry_after is not None
            and retry_after > self._retry.max_retry_after_seconds
        ):
            self._note_long_wait(method, path, status, retry_after)
        advice = status_advice(
            status,
            self._scrub(response.text[:200].strip()),
            self._settings,
            retry_after=retry_after,
            is_sync_call=path.endswith(SYNC_PATH),
        )
        message = f"{method} {path} failed: {advice}"
        if status in (401, 403):
            # The login itself, not the data: an outage for the loop.
            raise AuthError(message, method=method, path=path, status=status)
        raise ApiError(
            message,
            method=method,
            path=path,
            status=status,
            retry_after_seconds=retry_after,
        )

    def _note_long_wait(
        self, method: str, path: str, status: int, retry_after: float
    ) -> None:
        # Once per endpoint: a server that keeps asking for a day would
        # otherwise add a WARNING to every tick's ERROR reminder.
        level = logging.DEBUG if path in self._long_waits_logged else logging.WARNING
        self._long_waits_logged.add(path)
        logger.log(
            level,
            "AtHoc asked to wait %d s, more than the %d s allowed;"
            " not waiting: method=%s path=%s status=%d",
            retry_after,
            self._retry.max_retry_after_seconds,
            method,
            path,
            status,
        )

    def _retry_after(self, response: requests.Response) -> float | None:
        header = response.headers.get("Retry-After")
        if not header:
            return None
        try:
            return self._retry.parse_retry_after(header)
        except Exception:  # InvalidHeader: an unreadable value is no value
            return None

    def _decode_json(
        self, method: str, path: str, response: requests.Response, *, log: bool = True
    ) -> Any:
        try:
            answer = response.json()
        except ValueError as err:
            raise ApiError(
                f"{method} {path} failed: AtHoc answered HTTP"
                f" {response.status_code} with a body that is not JSON"
                " (a proxy or error page in the way?)",
                method=method,
                path=path,
                status=UNUSABLE_ANSWER_STATUS,
            ) from err
        if log and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "AtHoc answer: method=%s path=%s status=%d body=%s",
                method,
                path,
                response.status_code,
                json.dumps(answer),
            )
        return answer

    def _unusable(self, method: str, path: str, what: str) -> ApiError:
        return ApiError(
            f"{method} {path} failed: {what}",
            method=method,
            path=path,
            status=UNUSABLE_ANSWER_STATUS,
        )

    def _known_secrets(self, token: _Token | None = None) -> list[str]:
        settings = self._settings
        secrets = [settings.password, settings.client_secret]
        for proxy in (settings.http_proxy, settings.https_proxy):
            password = urlsplit(proxy).password if "://" in proxy else None
            if password:
                secrets += [password, unquote(password)]
        if token is not None:
            secrets += [token.access_token, token.refresh_token]
        return [secret for secret in secrets if secret]

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            # Substitution cannot hide a secret of 1-3 characters: with
            # PASSWORD=x, "proxy" became "pro***y", which garbles every
            # message and shows the secret all the same.
            if len(secret) >= _MIN_SCRUBBED_SECRET_CHARS:
                text = text.replace(secret, "***")
        return text

    # --- search ---

    def get_all_users_with_attributes(self, fields: Sequence[str]) -> UserRead:
        """Every user with ``fields`` (LOGIN_ID first), all pages."""
        return self._search_all(None, _search_fields(fields))

    def find_users_by_collar_ids(
        self, ids: Sequence[str]
    ) -> list[dict[str, str | None]]:
        """Users whose COLLAR_ID_FIELD equals one of ``ids`` in canonical form.

        All-digit ids are searched with ``ew`` so that stored leading zeros
        still match, then filtered here by canonical equality.
        """
        collar_field = self._settings.collar_id_field
        wanted = list(dict.fromkeys(canonical_employee_id(i) for i in ids if i.strip()))
        found: list[dict[str, str | None]] = []
        for group in _chunks(wanted, LOOKUP_GROUP_SIZE):
            conditions = [
                criteria_condition(
                    collar_field, "ew" if i.isascii() and i.isdigit() else "eq", i
                )
                for i in group
            ]
            read = self._search_all(
                f"({' or '.join(conditions)})", [LOGIN_ID, collar_field]
            )
            found += [
                user
                for user in read.users
                if canonical_employee_id(user[collar_field] or "") in group
            ]
        return found

    def query_users_with_old_duty_status(
        self, field_name: str, hours: float
    ) -> list[dict[str, str | None]]:
        """Users whose Date Time ``field_name`` is older than ``hours``."""
        cutoff = self._clock.now() - timedelta(hours=hours)
        cutoff_text = cutoff.strftime(self._settings.athoc_datetime_format)
        criteria = (
            f"{field_name} pr and {criteria_condition(field_name, 'lt', cutoff_text)}"
        )
        read = self._search_all(criteria, [LOGIN_ID, field_name])
        if not read.complete:
            logger.warning(
                "stale duty search incomplete: received=%d total=%d",
                len(read.users),
                read.total_users,
            )
        return read.users

    def _search_all(self, criteria: str | None, fields: list[str]) -> UserRead:
        """Read every page; stop on an empty page or one that adds nobody."""
        mode = self._resolve_offset_mode()
        page_size = self._settings.search_page_size
        users: dict[str, dict[str, str | None]] = {}
        total, received, page_index = 0, 0, 0
        while True:
            offset = received if mode == "record" else page_index
            rows, total = self._search_page(criteria, fields, page_size, offset)
            before = len(users)
            for row in rows:
                user = _normalize_user(row, fields)
                if user[LOGIN_ID]:
                    users.setdefault(str(user[LOGIN_ID]).lower(), user)
            received += len(rows)
            page_index += 1
            if not rows or len(users) == before or len(users) >= total:
                break
        return UserRead(list(users.values()), total, len(users) == total)

    def _search_page(
        self, criteria: str | None, fields: list[str], limit: int, offset: int
    ) -> tuple[list[Mapping[str, Any]], int]:
        params: dict[str, Any] = {
            "Fields": ",".join(fields),
            "Limit": limit,
            "Offset": offset,
        }
        if criteria is not None:
            params["Criteria"] = criteria
        answer = self._call_api("GET", SEARCH_PATH, params=params)
        users = answer.get("Users") if isinstance(answer, dict) else None
        if not isinstance(users, list):
            raise self._unusable(
                "GET",
                self._api_base_path(SEARCH_PATH),
                "the search answer holds no Users list",
            )
        try:
            total = int(answer.get("TotalUsers") or 0)
        except (TypeError, ValueError):
            total = 0
        return [row for row in users if isinstance(row, dict)], total

    def _api_base_path(self, path: str) -> str:
        return urlsplit(self._api_base + path).path

    def _resolve_offset_mode(self) -> str:
        """Whether Offset counts records or pages (undocumented): probe once."""
        if self._offset_mode != "auto":
            return self._offset_mode
        first, _ = self._search_page(None, [LOGIN_ID], 4, 0)
        second, _ = self._search_page(None, [LOGIN_ID], 2, 1)
        logins = [row.get(LOGIN_ID) for row in first]
        start = second[0].get(LOGIN_ID) if second else None
        if len(logins) >= 3 and start == logins[2]:
            self._offset_mode = "page"
        else:
            if len(logins) >= 3 and start != logins[1]:
                logger.warning(
                    "search paging probe inconclusive; Offset is taken"
                    " as a record count (set SEARCH_OFFSET_MODE)"
                )
            self._offset_mode = "record"
        logger.debug("search offset mode: mode=%s", self._offset_mode)
        return self._offset_mode

    # --- sync ---

    def sync_users_by_common_names(
        self, users: Sequence[Mapping[str, str]]
    ) -> list[SyncResult]:
        """Send ``users`` (each with LOGIN_ID) in chunks of SYNC_CHUNK_SIZE.

        On an ApiError the exception's ``partial_results`` holds the results
        of the chunks already answered.
        """
        results: list[SyncResult] = []
        for chunk in _chunks(users, self._settings.sync_chunk_size):
            try:
                results += self._sync_chunk(chunk)
            except ApiError as err:
                err.partial_results = list(results)
                raise
        return results

    def _sync_chunk(self, chunk: Sequence[Mapping[str, str]]) -> list[SyncResult]:
        body = [dict(user) for user in chunk]
        answer = self._call_api("POST", SYNC_PATH, params=SYNC_PARAMS, json_body=body)
        if not isinstance(answer, list):
            raise self._unusable(
                "POST",
                self._api_base_path(SYNC_PATH),
                "the SyncByCommonNames answer is not a list",
            )
        by_login = {
            str(item.get(LOGIN_ID) or "").lower(): item
            for item in answer
            if isinstance(item, dict)
        }
        results = []
        for user in chunk:
            login_id = user[LOGIN_ID]
            item = by_login.get(login_id.lower())
            if item is None:
                result = SyncResult(login_id, "missing", "not in AtHoc's answer")
            else:
                result = replace(classify_sync_answer(item), login_id=login_id)
            results.append(result)
        _log_results(results, self._refusals_warned_at, self._clock.monotonic())
        return results

    def batch_update_duty_status(
        self, updates: Sequence[DutyUpdate], field_name: str
    ) -> list[SyncResult]:
        """Write each update's value ("" clears) into ``field_name``."""
        users = [
            {LOGIN_ID: update.login_id, field_name: update.value} for update in updates
        ]
        return self.sync_users_by_common_names(users)

    def clear_old_duty_status(self, field_name: str, hours: float) -> int:
        """Clear ``field_name`` where older than ``hours``; returns how many
        users AtHoc confirmed."""
        users = self.query_users_with_old_duty_status(field_name, hours)
        updates = [DutyUpdate(str(user[LOGIN_ID]), "") for user in users]
        results = self.batch_update_duty_status(updates, field_name)
        cleared = sum(result.is_success for result in results)
        logger.log(
            logging.INFO if cleared else logging.DEBUG,
            "Auto-cleanup: cleared %d users (%s older than %g hours, found=%d)",
            cleared,
            field_name,
            hours,
            len(users),
        )
        return cleared


REFUSAL_REPEAT_SECONDS = 3600.0
_REFUSAL_WORDS = {
    "permission_denied": "sync refused, permission denied",
    "missing": "sync unconfirmed, user missing from AtHoc's answer",
}


def _log_results(
    results: list[SyncResult], warned_at: dict[tuple[str, str], float], now: float
) -> None:
    """One line per confirmed user at DEBUG, per not-found user at INFO, and
    one WARNING per kind of refusal, repeated at most hourly (at DEBUG in
    between), so a setting AtHoc rejects for every user does not write a
    thousand lines a tick, nor the same line every retry."""
    refused: dict[tuple[str, str], list[str]] = {}
    for result in results:
        if result.outcome == "ok":
            logger.debug("sync confirmed: login_id=%s", result.login_id)
        elif result.outcome == "not_found":
            logger.info(
                "Expected: User %s not found in AtHoc (will be treated as success)",
                result.login_id,
            )
        else:
            refused.setdefault((result.outcome, result.details), []).append(
                result.login_id
            )
    for (outcome, details), logins in refused.items():
        shown = ", ".join(logins[:10]) + (" ..." if len(logins) > 10 else "")
        last = warned_at.get((outcome, details))
        level = logging.WARNING
        if last is not None and now - last < REFUSAL_REPEAT_SECONDS:
            level = logging.DEBUG
        else:
            warned_at[(outcome, details)] = now
        logger.log(
            level,
            "%s: users=%d login_id=%s details=%s",
            _REFUSAL_WORDS.get(outcome, "sync failed"),
            len(logins),
            shown,
            details,
        )
