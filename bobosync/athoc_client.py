"""AtHoc REST API v2 client: token, user search and SyncByCommonNames.

The facts this module relies on (paths, grants, answer shapes, the seen
texts of SyncByCommonNames) are in ``shared/athoc-api.md``. The client owns
its transport: proxies only from the settings, one TLS 1.2+ context for every
connection, bounded retries, a timeout on every call. Every failure becomes
an ``ApiError`` (or ``AuthError``) naming the method, the path and what to
check; no message or log line holds a password, secret or token.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import ssl
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3.exceptions import InsecureRequestWarning, MaxRetryError, ResponseError
from urllib3.util.retry import Retry

if not __package__:
    # The operators' runbook runs `AtHocClient()` from inside bobosync/, so
    # this file is then a top-level module: put the install folder on the
    # path so that the absolute `bobosync.` imports below resolve.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bobosync.bobo_entry import canonical_employee_id  # noqa: E402
from bobosync.clock import Clock, SystemClock  # noqa: E402
from bobosync.errors import ApiError, AuthError, ConfigError  # noqa: E402
from bobosync.settings import Settings, load_settings, mask_url  # noqa: E402

logger = logging.getLogger(__name__)

TOKEN_PATH = "/AuthServices/Auth/connect/token"
SYNC_PATH = "/users/SyncByCommonNames"
SEARCH_PATH = "/users/search/basic"
# syncExistingUsersOnly defaults to false on the server, which CREATES users.
SYNC_PARAMS = {"syncExistingUsersOnly": "true", "AllowPartialUpdate": "false"}
LOGIN_ID = "LOGIN_ID"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_BACKOFF_MAX_SECONDS = 30.0
RENEW_AHEAD_SECONDS = 60.0
LOOKUP_GROUP_SIZE = 50
DEFAULT_TOKEN_LIFETIME_SECONDS = 3600.0
SUCCESS_OUTCOMES = frozenset({"ok", "not_found", "permission_denied"})
# An answer whose body cannot be used counts as an outage, like a 502 from a
# gateway: the server misbehaved, the data did not (ApiError.is_outage).
UNUSABLE_ANSWER_STATUS = 502

_NOT_FOUND = re.compile(
    r"\bdo(es)?\s*n[o']?t\s+exists?\b|\bnot\s+exists?\b|\bnot\s+found\b", re.I
)
# "Attribute X not found" is about our request, not a missing user: it must
# stay an error, never pass as a harmless not_found.
_ABOUT_ATTRIBUTE = re.compile(r"\battribute|\bfield\b", re.I)
_PERMISSION = re.compile(r"permission|denied|not\s+authori[sz]ed", re.I)
_OLD_TLS_REASONS = (
    "UNSUPPORTED_PROTOCOL",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "NO_PROTOCOLS_AVAILABLE",
    "WRONG_SSL_VERSION",
    "VERSION_TOO_LOW",
)
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>:?\s*")


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


@dataclass
class _Token:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    renew_at_monotonic: float


# --- Pure helpers: criteria, classification, proxies -----------------------


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


def is_proxy_bypassed(host: str, no_proxy: str) -> bool:
    """True when NO_PROXY names ``host``.

    Entries are separated by commas or spaces: ``*`` (everything), a host
    name (also matching its subdomains; a leading ``.`` or ``*.`` is
    ignored), an IP address or a CIDR network. A ``:port`` on an entry is
    ignored. Never consults the OS (requests' own check reads the Windows
    registry).
    """
    host = host.strip("[]").rstrip(".").lower()
    for entry in re.split(r"[,\s]+", no_proxy.lower()):
        if entry == "*" or (entry and _entry_matches(host, entry)):
            return True
    return False


def _entry_matches(host: str, entry: str) -> bool:
    entry = _strip_port(entry)
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        domain = entry.removeprefix("*").strip(".")
        return bool(domain) and (host == domain or host.endswith("." + domain))
    try:
        return ipaddress.ip_address(host) in network
    except ValueError:
        return False


def _strip_port(entry: str) -> str:
    if entry.startswith("["):
        return entry[1:].partition("]")[0]
    if entry.count(":") == 1:
        return entry.partition(":")[0]
    return entry


def select_proxies(url: str, settings: Settings) -> dict[str, str]:
    """The proxies for ``url`` from HTTP_PROXY/HTTPS_PROXY/NO_PROXY only."""
    host = urlsplit(url).hostname or ""
    if is_proxy_bypassed(host, settings.no_proxy):
        return {}
    candidates = {"http": settings.http_proxy, "https": settings.https_proxy}
    return {scheme: proxy for scheme, proxy in candidates.items() if proxy}


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


# --- Transport: TLS context, adapter, retries ------------------------------


def build_ssl_context(settings: Settings) -> ssl.SSLContext:
    """One TLS 1.2+ context for the token endpoint, the API and proxies.

    SSL_CERT_PATH is trusted in addition to the default roots (certifi's,
    else the OS's). Raises ConfigError when that file cannot be loaded.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.disable_ssl_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    default_bundle = _default_ca_bundle()
    if default_bundle is not None:
        context.load_verify_locations(cafile=default_bundle)
    else:
        context.load_default_certs()
    if settings.ssl_cert_path is not None:
        try:
            context.load_verify_locations(cafile=str(settings.ssl_cert_path))
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(
                [
                    f"SSL_CERT_PATH {settings.ssl_cert_path} cannot be loaded as"
                    f" PEM CA certificates: {err}"
                ]
            ) from err
    return context


def _default_ca_bundle() -> str | None:
    try:
        import certifi
    except ImportError:  # requests brings certifi; else the OS roots serve
        return None
    return certifi.where()


class BoundedRetry(Retry):
    """urllib3 Retry that gives up at once when Retry-After is too long.

    A server asking for 86400 s must not hold the tick for a day: such an
    answer is returned as it is, and the client reports it as an outage.
    """

    def __init__(
        self, *args: Any, max_retry_after_seconds: float = 120.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_retry_after_seconds = max_retry_after_seconds
        # Newer urllib3 clamps Retry-After to retry_after_max and would then
        # wait that long; we want the server's real value to decide.
        self.retry_after_max = sys.maxsize

    def new(self, **kwargs: Any) -> BoundedRetry:
        retry = super().new(**kwargs)
        retry.max_retry_after_seconds = self.max_retry_after_seconds
        return retry

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> BoundedRetry:
        if response is not None and self.asks_too_long(response):
            # With raise_on_status=False urllib3 hands the answer back.
            raise MaxRetryError(_pool, url, ResponseError("Retry-After too long"))
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def asks_too_long(self, response: Any) -> bool:
        retry_after = self.get_retry_after(response)
        return retry_after is not None and retry_after > self.max_retry_after_seconds


def build_retry(
    max_retries: int, backoff_seconds: float, max_retry_after_seconds: float
) -> BoundedRetry:
    """Bounded retries for connection and read errors, 429 and 5xx.

    POST is included: SyncByCommonNames sends absolute values, so a repeat
    is harmless, and the token request is idempotent too.
    """
    return BoundedRetry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "POST"}),
        respect_retry_after_header=True,
        backoff_factor=backoff_seconds,
        backoff_jitter=backoff_seconds,
        backoff_max=RETRY_BACKOFF_MAX_SECONDS,
        raise_on_status=False,
        max_retry_after_seconds=max_retry_after_seconds,
    )


class TlsAdapter(HTTPAdapter):
    """HTTPAdapter whose direct and proxied connections share one context."""

    def __init__(self, ssl_context: ssl.SSLContext, max_retries: Retry) -> None:
        # Set before super().__init__, which builds the pool manager.
        self.ssl_context = ssl_context
        super().__init__(max_retries=max_retries)

    def init_poolmanager(
        self,
        connections: int,
        maxsize: int,
        block: bool = DEFAULT_POOLBLOCK,
        **pool_kwargs: Any,
    ) -> None:
        pool_kwargs["ssl_context"] = self.ssl_context
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs.setdefault("ssl_context", self.ssl_context)
        proxy_kwargs.setdefault("proxy_ssl_context", self.ssl_context)
        return super().proxy_manager_for(proxy, **proxy_kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # requests would point each connection at its own CA file, which
        # urllib3 then loads into our shared context: the context already
        # holds every root we trust.
        is_verified = self.ssl_context.verify_mode != ssl.CERT_NONE
        conn.cert_reqs = "CERT_REQUIRED" if is_verified else "CERT_NONE"
        conn.ca_certs = None
        conn.ca_cert_dir = None


def build_session(
    settings: Settings, retry: Retry, session: requests.Session | None = None
) -> requests.Session:
    """A session that ignores the environment, .netrc and the registry (R9)."""
    session = session or requests.Session()
    session.trust_env = False
    session.proxies = {}
    session.verify = not settings.disable_ssl_verify
    adapter = TlsAdapter(build_ssl_context(settings), retry)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    if settings.disable_ssl_verify:
        # Start-up warns once; one warning per request would drown the log.
        # simplefilter replaces an identical filter, so a repeat adds none.
        warnings.simplefilter("ignore", InsecureRequestWarning)
    return session


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
        self._settings = settings if settings is not None else load_settings()
        self._clock = clock if clock is not None else SystemClock()
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
            f" {self._token_advice(error_code, grant)}",
            error_code=error_code,
            method="POST",
            path=TOKEN_PATH,
            status=response.status_code,
        )

    def _token_advice(self, error_code: str, grant: str) -> str:
        settings = self._settings
        if error_code == "invalid_client":
            return (
                "invalid_client: check CLIENT_ID and CLIENT_SECRET and that"
                " the API application is enabled in AtHoc"
            )
        if error_code == "invalid_grant":
            return (
                f"invalid_grant: check APIUSER={settings.api_user}, PASSWORD"
                f" and ORG_CODE={settings.org_code}, or whether the account"
                " is locked"
            )
        if error_code == "unsupported_grant_type":
            return (
                f"unsupported_grant_type: the AtHoc API application does not"
                f" allow the {grant} grant; enable it for CLIENT_ID"
            )
        if error_code == "invalid_scope":
            return (
                f"invalid_scope: check SCOPE={settings.scope!r}; it needs"
                " 'openid profile athoc.iws.web.api'"
            )
        return (
            f"error={error_code or 'unknown'}: check CLIENT_ID, CLIENT_SECRET,"
            " APIUSER, PASSWORD, ORG_CODE and SCOPE"
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
            message = f"{method} {path} failed: {self._describe_failure(err)}"
            raise ApiError(message, method=method, path=path) from err

    def _describe_failure(self, err: requests.RequestException) -> str:
        """What went wrong when no answer came, and what to check."""
        text = str(err)
        reason = self._reason(err)
        if self._proxy and (
            isinstance(err, requests.exceptions.ProxyError)
            or "WRONG_VERSION_NUMBER" in text.upper()
        ):
            return (
                f"the proxy {mask_url(self._proxy)} did not work ({reason});"
                " check HTTPS_PROXY/HTTP_PROXY: most corporate proxies expect"
                " http:// even for HTTPS traffic, not https://"
            )
        if isinstance(err, requests.exceptions.SSLError):
            return self._describe_tls_failure(text, reason)
        if isinstance(err, requests.exceptions.Timeout) or "timed out" in text:
            return (
                f"no answer within REQUEST_TIMEOUT_SECONDS="
                f"{self._settings.request_timeout_seconds:g}; is the server"
                " up and the network path open?"
            )
        if isinstance(err, requests.exceptions.ConnectionError):
            return (
                f"could not connect to {mask_url(self._settings.athoc_server_url)}"
                f" ({reason}): is ATHOC_SERVER_URL right and the server up?"
            )
        return reason

    def _describe_tls_failure(self, text: str, reason: str) -> str:
        upper = text.upper()
        if "CERTIFICATE_VERIFY_FAILED" in upper:
            return (
                "the server's TLS certificate is not trusted"
                " (CERTIFICATE_VERIFY_FAILED): set SSL_CERT_PATH to your"
                " organisation's root CA certificate in PEM format"
            )
        for code in _OLD_TLS_REASONS:
            if code in upper:
                return (
                    f"the server offers only TLS older than 1.2 ({code});"
                    " bobosync requires TLS 1.2 or newer: enable TLS 1.2 on"
                    " the server"
                )
        return f"TLS handshake failed ({reason})"

    def _reason(self, err: Exception) -> str:
        """The innermost cause as short text, with every secret masked."""
        cause: Any = err
        while (
            isinstance(cause, BaseException)
            and cause.args
            and isinstance(cause.args[0], BaseException)
        ):
            cause = cause.args[0]
        if isinstance(cause, MaxRetryError) and cause.reason is not None:
            cause = cause.reason
        text = _OBJECT_REPR.sub("", str(cause)) or type(cause).__name__
        return self._scrub(text)[:300]

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
        message = f"{method} {path} failed: {self._status_advice(path, response)}"
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

    def _status_advice(self, path: str, response: requests.Response) -> str:
        status = response.status_code
        body = self._scrub(response.text[:200].strip())
        answered = f"AtHoc answered HTTP {status}"
        if status == 429 or status >= 500:
            wait = self._retry_after(response)
            asked = f", asked to wait {wait:g} s" if wait is not None else ""
            return (
                f"{answered}{asked} (AtHoc is down or overloaded; retried"
                " later): if it lasts, check that the AtHoc server and its"
                " services are up"
            )
        if status == 401:
            return (
                f"{answered} to a fresh access token: check ORG_CODE="
                f"{self._settings.org_code} and the API user's access"
            )
        if status == 403:
            return (
                f"{answered}: the API user APIUSER={self._settings.api_user}"
                " needs the End Users Manager operator role"
            )
        if path.endswith(SYNC_PATH) and status in (400, 413):
            return (
                f"{answered} ({body}): if the chunk is large, lower"
                f" SYNC_CHUNK_SIZE={self._settings.sync_chunk_size}"
            )
        return f"{answered} ({body}): the request was refused"

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
            _log_result(result)
            results.append(result)
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
        logger.info(
            "old duty status cleared: field=%s hours=%g found=%d cleared=%d",
            field_name,
            hours,
            len(users),
            cleared,
        )
        return cleared


def _log_result(result: SyncResult) -> None:
    if result.outcome == "ok":
        logger.debug("sync confirmed: login_id=%s", result.login_id)
    elif result.outcome == "not_found":
        logger.info(
            "Expected: User %s not found in AtHoc (will be treated as success)",
            result.login_id,
        )
    elif result.outcome == "permission_denied":
        logger.warning(
            "sync refused, permission denied: login_id=%s details=%s",
            result.login_id,
            result.details,
        )
    elif result.outcome == "missing":
        logger.warning(
            "sync unconfirmed, user missing from AtHoc's answer: login_id=%s",
            result.login_id,
        )
    else:
        logger.warning(
            "sync failed: login_id=%s details=%s", result.login_id, result.details
        )
