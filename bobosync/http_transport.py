"""One requests.Session set up for AtHoc: TLS 1.2+, CA bundle, proxies, retries.

One TLS 1.2+ context serves direct and proxied connections and trusts the
default roots plus SSL_CERT_PATH. Proxies come from the settings only, never
from the environment, .netrc or the OS. Retries are bounded, and a
Retry-After longer than allowed is not waited out. Nothing here knows
AtHoc's paths or answers.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import sys
import warnings
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3.exceptions import InsecureRequestWarning, MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from bobosync.errors import ConfigError
from bobosync.settings import Settings

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_BACKOFF_MAX_SECONDS = 30.0


# --- Proxies ---------------------------------------------------------------


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


# --- TLS context, retries, adapter, session --------------------------------


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
