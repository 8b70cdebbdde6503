"""Turn transport and HTTP failures into ApiError/AuthError messages.

Each message says what went wrong and what to check: the setting to fix,
the server feature to enable, or that AtHoc itself is down. The functions
here only build text; ``athoc_client`` raises the errors. Text that came
from the network passes through the client's ``scrub`` first, so no message
holds a password, secret or token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import requests
from urllib3.exceptions import MaxRetryError

from bobosync.settings import Settings, mask_url

__all__ = ["describe_failure", "status_advice", "token_advice"]

_OLD_TLS_REASONS = (
    "UNSUPPORTED_PROTOCOL",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "NO_PROTOCOLS_AVAILABLE",
    "WRONG_SSL_VERSION",
    "VERSION_TOO_LOW",
)
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>:?\s*")


def describe_failure(
    err: requests.RequestException,
    settings: Settings,
    proxy: str,
    scrub: Callable[[str], str],
) -> str:
    """What went wrong when no answer came, and what to check.

    ``proxy`` is the proxy URL the call went through, or "" for none;
    ``scrub`` masks the secrets in the error's own text.
    """
    text = str(err)
    reason = _reason(err, scrub)
    if proxy and (
        isinstance(err, requests.exceptions.ProxyError)
        or "WRONG_VERSION_NUMBER" in text.upper()
    ):
        return (
            f"the proxy {mask_url(proxy)} did not work ({reason});"
            " check HTTPS_PROXY/HTTP_PROXY: most corporate proxies expect"
            " http:// even for HTTPS traffic, not https://"
        )
    if isinstance(err, requests.exceptions.SSLError):
        return _describe_tls_failure(text, reason)
    if isinstance(err, requests.exceptions.Timeout) or "timed out" in text:
        return (
            f"no answer within REQUEST_TIMEOUT_SECONDS="
            f"{settings.request_timeout_seconds:g}; is the server"
            " up and the network path open?"
        )
    if isinstance(err, requests.exceptions.ConnectionError):
        return (
            f"could not connect to {mask_url(settings.athoc_server_url)}"
            f" ({reason}): is ATHOC_SERVER_URL right and the server up?"
        )
    return reason


def _describe_tls_failure(text: str, reason: str) -> str:
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


def _reason(err: Exception, scrub: Callable[[str], str]) -> str:
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
    return scrub(text)[:300]


def status_advice(
    status: int,
    body: str,
    settings: Settings,
    *,
    retry_after: float | None,
    is_sync_call: bool,
) -> str:
    """What an HTTP error ``status`` means and what to check.

    ``body`` is the start of the answer, secrets already masked;
    ``retry_after`` is the server's Retry-After in seconds, if readable.
    """
    answered = f"AtHoc answered HTTP {status}"
    if status == 429 or status >= 500:
        asked = f", asked to wait {retry_after:g} s" if retry_after is not None else ""
        return (
            f"{answered}{asked} (AtHoc is down or overloaded; retried"
            " later): if it lasts, check that the AtHoc server and its"
            " services are up"
        )
    if status == 401:
        return (
            f"{answered} to a fresh access token: check ORG_CODE="
            f"{settings.org_code} and the API user's access"
        )
    if status == 403:
        return (
            f"{answered}: the API user APIUSER={settings.api_user}"
            " needs the End Users Manager operator role"
        )
    if is_sync_call and status in (400, 413):
        return (
            f"{answered} ({body}): if the chunk is large, lower"
            f" SYNC_CHUNK_SIZE={settings.sync_chunk_size}"
        )
    return f"{answered} ({body}): the request was refused"


def token_advice(error_code: str, grant: str, settings: Settings) -> str:
    """What the token endpoint's OAuth ``error_code`` asks the operator to check."""
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
