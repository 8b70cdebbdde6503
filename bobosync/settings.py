"""Settings: read `.env` and the process environment into one `Settings`.

The `.env` file is found beside the package, never through the working
folder (Task Scheduler starts programs in System32), and relative paths in it
resolve against the file's own folder. Values are read with python-dotenv's
quoting but without `$`/`${...}` interpolation, so secrets stay as written.
The process environment overrides the file, except `USERNAME`, which Windows
always sets to the logged-on account. Every setting is checked at start-up;
all problems are reported together, one line each, never with a secret.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from datetime import datetime
from functools import partial
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

import bobosync
from bobosync.errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SEARCH_OFFSET_MODES = ("auto", "record", "page")
SECRET_FIELDS = frozenset({"client_secret", "password"})
PROXY_FIELDS = ("http_proxy", "https_proxy")
PEM_MARKER = b"-----BEGIN CERTIFICATE-----"
FROM_ENVIRONMENT = "from the process environment"

_TRUE_WORDS = frozenset({"true", "yes", "1", "on"})
_FALSE_WORDS = frozenset({"false", "no", "0", "off"})
_NOT_SETTINGS = frozenset({"env_file", "notices"})
# A datetime with non-zero seconds: a format that drops them cannot be used
# to write or compare AtHoc's Date Time values.
_FORMAT_PROBE = datetime(2025, 3, 14, 7, 15, 2)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Validated settings; each field's setting name is its name in capitals
    (``api_user`` is APIUSER). Paths are absolute, or UNC/drive paths kept as
    written. ``notices`` are WARNING texts for the caller to log at start-up.
    """

    athoc_server_url: str
    client_id: str
    client_secret: str = field(repr=False)
    api_user: str
    password: str = field(repr=False)
    org_code: str
    scope: str = "openid profile athoc.iws.web.api offline_access"
    disable_ssl_verify: bool = False
    ssl_cert_path: Path | None = None
    # A proxy URL may carry a password: kept out of repr like the secrets.
    http_proxy: str = field(default="", repr=False)
    https_proxy: str = field(default="", repr=False)
    no_proxy: str = ""
    log_level: str = "INFO"
    log_directory: Path = Path("logs")
    log_purge_days: int = 30
    csv_directory: Path = Path("csv_input")
    processed_directory: Path = Path("processed_files")
    move_processed_files: bool = True
    processed_files_purge_days: int = 30
    batch_size: int = 500
    sync_chunk_size: int = 1000
    db_path: Path = Path("bobo_sync.db")
    sync_mappings: bool = True
    sync_hour: int = 2
    sync_retry_days: int = 1
    duty_status_field: str = "On-Duty-DTG"
    collar_id_field: str = "Collar-Number"
    user_attributes: tuple[str, ...] = ()
    auto_cleanup_hours: float = 24.0
    max_retry_attempts: int = 3
    failed_files_directory: Path = Path("failed_files")
    poll_interval_seconds: float = 60.0
    file_settle_seconds: float = 5.0
    request_timeout_seconds: float = 30.0
    cleanup_sweep_minutes: float = 60.0
    search_offset_mode: str = "auto"
    search_page_size: int = 1000
    athoc_datetime_format: str = "%d/%m/%Y %H:%M:%S"
    env_file: Path | None = None
    notices: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        """Lines for the start-up INFO log: the `.env` used, the proxy with
        its password masked, and every setting; secrets only as ``***``."""
        env_file = self.env_file or "none found (process environment only)"
        lines = [f".env file: {env_file}", self._describe_proxy()]
        for item in _setting_fields():
            if item.name not in PROXY_FIELDS:
                value = _describe_value(item.name, getattr(self, item.name))
                lines.append(f"{setting_name(item.name)}={value}")
        return lines

    def _describe_proxy(self) -> str:
        parts = [
            f"{setting_name(name)}={mask_url(getattr(self, name))}"
            for name in PROXY_FIELDS
            if getattr(self, name)
        ]
        if not parts:
            return "proxy: none (direct connection)"
        if self.no_proxy:
            parts.append(f"NO_PROXY={self.no_proxy}")
        return "proxy: " + " ".join(parts)


class _Problem(Exception):
    """A value refused: ``message`` says what is expected. ``shows_value``
    is True when the message already names the value (no ", got ...")."""

    def __init__(self, message: str, *, shows_value: bool = False) -> None:
        self.message = message
        self.shows_value = shows_value
        super().__init__(message)


class _Missing(Exception):
    """A required setting is unset or empty."""


Converter = Callable[[str], Any]


def setting_name(field_name: str) -> str:
    """The `.env`/environment name of a Settings field."""
    return "APIUSER" if field_name == "api_user" else field_name.upper()


def _setting_fields() -> list[Field[Any]]:
    return [item for item in fields(Settings) if item.name not in _NOT_SETTINGS]


# Every name bobosync reads from `.env` or the environment. Tests remove
# these (and USERNAME) from the environment before setting their own.
SETTING_NAMES: tuple[str, ...] = (
    *(setting_name(item.name) for item in _setting_fields()),
    "ATHOC_USERNAME",
)


def default_env_file() -> Path:
    """`.env` beside the package folder, whatever the working folder is."""
    return Path(bobosync.__file__).resolve().parent.parent / ".env"


def read_env_file(path: Path) -> dict[str, str]:
    """Read a `.env` file as written: BOM allowed, no interpolation.

    A bare ``KEY`` line reads as an empty value. Raises ConfigError when the
    file cannot be read or is not UTF-8.
    """
    try:
        values = dotenv_values(path, interpolate=False, encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(
            [f"{path} is not UTF-8 text: save it as UTF-8 (with or without BOM)"]
        ) from None
    except OSError as err:
        raise ConfigError([f"{path} cannot be read: {err.strerror}"]) from err
    return {key: value or "" for key, value in values.items()}


def load_settings(
    env_file: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read `.env` and the environment; the only reader of ``os.environ``.

    ``env_file`` None means `.env` beside the package, which may be missing
    (values may all come from the environment). A given file that does not
    exist raises ConfigError naming it.
    """
    if environ is None:
        environ = os.environ
    if env_file is None:
        used = default_env_file()
        if not used.is_file():
            return build_settings({}, environ, env_file=None, base_dir=used.parent)
    else:
        # abspath, not resolve(): resolve() turns a mapped drive into its
        # UNC target on Windows, which the operator never wrote.
        used = Path(os.path.abspath(env_file))
        if not used.is_file():
            raise ConfigError([f"settings file {used} not found (--env-file)"])
    return build_settings(
        read_env_file(used), environ, env_file=used, base_dir=used.parent
    )


def build_settings(
    file_values: Mapping[str, str],
    environ: Mapping[str, str],
    *,
    env_file: Path | None,
    base_dir: Path,
) -> Settings:
    """Merge file and environment values, validate all, build Settings.

    ``environ`` is looked up by exact name: on Windows ``os.environ`` ignores
    case itself (so ``https_proxy`` is HTTPS_PROXY there), while on Linux a
    lower-case ``https_proxy`` is not a bobosync setting. Relative paths
    resolve against ``base_dir``. Creates nothing; reads only the
    SSL_CERT_PATH file. Raises ConfigError with one line per problem.
    """
    raw, sources, notices = _merge(file_values, environ, env_file)
    converters = _converters(base_dir)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for item in _setting_fields():
        name = setting_name(item.name)
        text = raw.get(name, "")
        try:
            values[item.name] = _read_setting(
                item, text, converters[item.name], base_dir
            )
        except _Missing:
            problems.append(_missing_line(name, env_file))
        except _Problem as problem:
            shown = _shown_value(item.name, text)
            problems.append(_problem_line(name, sources[name], shown, problem))
    if problems:
        raise ConfigError(problems)

    notices += _value_notices(raw, values)
    return Settings(**values, env_file=env_file, notices=tuple(notices))


def _merge(
    file_values: Mapping[str, str],
    environ: Mapping[str, str],
    env_file: Path | None,
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Raw values by setting name, where each came from, and override and
    unknown-key notices (naming keys, never values)."""
    raw: dict[str, str] = {}
    sources: dict[str, str] = {}
    notices: list[str] = []
    for name in SETTING_NAMES:
        if name in environ:
            raw[name], sources[name] = environ[name], FROM_ENVIRONMENT
            if name in file_values and file_values[name] != environ[name]:
                notices.append(
                    f"{name} from the process environment overrides"
                    f" the value in {env_file}"
                )
        elif name in file_values:
            raw[name], sources[name] = file_values[name], f"in {env_file}"

    _pick_api_user(raw, sources, file_values, env_file)
    notices += [
        f"{key} in {env_file} is not a bobosync setting and is ignored"
        " (check its spelling)"
        for key in file_values
        if key not in SETTING_NAMES and key != "USERNAME"
    ]
    return raw, sources, notices


def _pick_api_user(
    raw: dict[str, str],
    sources: dict[str, str],
    file_values: Mapping[str, str],
    env_file: Path | None,
) -> None:
    """APIUSER, else ATHOC_USERNAME, else USERNAME written in the file.

    USERNAME from the environment is never used: Windows sets it to the
    logged-on account (Administrator), not the AtHoc API user.
    """
    if raw.get("APIUSER", "").strip():
        return
    if raw.get("ATHOC_USERNAME", "").strip():
        raw["APIUSER"] = raw["ATHOC_USERNAME"]
        sources["APIUSER"] = sources["ATHOC_USERNAME"]
    elif file_values.get("USERNAME", "").strip():
        raw["APIUSER"] = file_values["USERNAME"]
        sources["APIUSER"] = f"in {env_file}"


def _read_setting(
    item: Field[Any], text: str, convert: Converter, base_dir: Path
) -> Any:
    """One setting's value: its default when unset or empty, else converted."""
    # Double quotes make python-dotenv decode backslash escapes, so
    # "C:\bobo\new" arrives holding a backspace and a newline.
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise _Problem(
            f"holds control characters ({_shown_value(item.name, text)}):"
            " write Windows paths unquoted or in single quotes",
            shows_value=True,
        )
    if text.strip():
        # Secrets are used exactly as written, spaces included.
        return convert(text if item.name in SECRET_FIELDS else text.strip())
    if item.default is MISSING:
        raise _Missing
    if isinstance(item.default, Path):
        return resolve_path(str(item.default), base_dir)
    return item.default


def _problem_line(name: str, where: str, shown: str, problem: _Problem) -> str:
    """One ConfigError line: setting, where it came from, what is wrong."""
    if problem.shows_value:
        return f"{name} {where} {problem.message}"
    return f"{name} {where} {problem.message}, got {shown}"


def _missing_line(name: str, env_file: Path | None) -> str:
    place = env_file or ".env beside the bobosync folder"
    if name == "APIUSER":
        return (
            f"APIUSER is missing: set APIUSER (or ATHOC_USERNAME) in {place};"
            " the USERNAME environment variable is not used"
            " (Windows sets it to the logged-on account)"
        )
    return f"{name} is missing: set it in {place} or the process environment"


def _shown_value(field_name: str, text: str) -> str:
    """How a bad value appears in a problem line: repr, never a secret."""
    if field_name in SECRET_FIELDS:
        return "value not shown"
    if field_name in PROXY_FIELDS:
        return repr(mask_url(text))
    return repr(text)


def _value_notices(raw: Mapping[str, str], values: Mapping[str, Any]) -> list[str]:
    """WARNING texts about valid but risky values."""
    notices: list[str] = []
    for name in map(setting_name, PROXY_FIELDS):
        notices += _proxy_notices(name, raw.get(name, ""))
    if values["disable_ssl_verify"]:
        notices.append(
            "TLS certificate verification DISABLED (DISABLE_SSL_VERIFY=true):"
            " the connection to AtHoc can be intercepted; set SSL_CERT_PATH"
            " to the corporate root CA instead"
        )
    if is_unc_path(str(values["db_path"])):
        notices.append(
            f"DB_PATH {values['db_path']} is on a network share: SQLite"
            " locking is not reliable on network shares; use a local disk"
        )
    return notices


def _proxy_notices(name: str, text: str) -> list[str]:
    text = text.strip()
    if not text:
        return []
    if "://" not in text:
        return [f"{name} has no scheme; using {mask_url('http://' + text)}"]
    if text.lower().startswith("https://"):
        return [
            f"{name} uses the https:// scheme ({mask_url(text)}): most"
            " corporate proxies expect http:// even for HTTPS traffic;"
            " the value is used as written"
        ]
    return []


def mask_url(url: str) -> str:
    """Hide the password in a URL: ``http://u:p@h:8080`` -> ``http://u:***@h:8080``.

    A URL without a password comes back unchanged; never raises.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    authority_end = min(
        (index for index in map(rest.find, "/?#") if index >= 0),
        default=len(rest),
    )
    authority, tail = rest[:authority_end], rest[authority_end:]
    userinfo, at_sign, host = authority.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if not (at_sign and colon):
        return url
    return f"{scheme}{separator}{user}:***@{host}{tail}"


def is_unc_path(text: str) -> bool:
    r"""True for ``\\server\share\...`` (or ``//server/share``), on any OS."""
    return PureWindowsPath(text).drive.startswith("\\\\")


def resolve_path(text: str, base_dir: Path) -> Path:
    r"""An absolute path: ``text`` against ``base_dir`` when relative.

    ``X:\...`` and ``\\server\share\...`` are absolute on every OS and kept
    as written.
    """
    if PureWindowsPath(text).is_absolute() or PurePosixPath(text).is_absolute():
        return Path(text)
    return Path(os.path.normpath(base_dir / text))


def _converters(base_dir: Path) -> dict[str, Converter]:
    """How each field's text becomes its value; each raises _Problem."""
    at_least_one = partial(_to_whole_number, minimum=1)
    path = partial(resolve_path, base_dir=base_dir)
    return {
        "athoc_server_url": _to_url,
        "client_id": str,
        "client_secret": str,
        "api_user": str,
        "password": str,
        "org_code": str,
        "scope": str,
        "disable_ssl_verify": _to_bool,
        "ssl_cert_path": partial(_to_certificate_path, base_dir=base_dir),
        "http_proxy": _to_proxy,
        "https_proxy": _to_proxy,
        "no_proxy": str,
        "log_level": partial(_to_choice, choices=LOG_LEVELS),
        "log_directory": path,
        "log_purge_days": at_least_one,
        "csv_directory": path,
        "processed_directory": path,
        "move_processed_files": _to_bool,
        "processed_files_purge_days": at_least_one,
        "batch_size": at_least_one,
        "sync_chunk_size": at_least_one,
        "db_path": path,
        "sync_mappings": _to_bool,
        "sync_hour": partial(_to_whole_number, minimum=0, maximum=23),
        "sync_retry_days": at_least_one,
        "duty_status_field": str,
        "collar_id_field": str,
        "user_attributes": _to_name_list,
        "auto_cleanup_hours": _to_positive_number,
        "max_retry_attempts": at_least_one,
        "failed_files_directory": path,
        "poll_interval_seconds": _to_positive_number,
        "file_settle_seconds": _to_number_from_zero,
        "request_timeout_seconds": _to_positive_number,
        "cleanup_sweep_minutes": _to_number_from_zero,
        "search_offset_mode": partial(_to_choice, choices=SEARCH_OFFSET_MODES),
        "search_page_size": at_least_one,
        "athoc_datetime_format": _to_datetime_format,
    }


def _to_url(text: str) -> str:
    url = text.rstrip("/")
    if not _is_http_url(url):
        raise _Problem(
            "must be an http:// or https:// URL such as https://athoc.example.org"
        )
    return url


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port like ":80a"
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _to_bool(text: str) -> bool:
    word = text.lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise _Problem("must be true or false (also yes/no, 1/0, on/off)")


def _to_whole_number(text: str, *, minimum: int, maximum: int | None = None) -> int:
    if maximum is None:
        expected = f"must be a whole number of at least {minimum}"
    else:
        expected = f"must be a whole number from {minimum} to {maximum}"
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise _Problem(expected)
    number = int(text)
    if number < minimum or (maximum is not None and number > maximum):
        raise _Problem(expected)
    return number


def _to_number(text: str) -> float | None:
    """A finite number, or None (float() also accepts "nan" and "inf")."""
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _to_positive_number(text: str) -> float:
    number = _to_number(text)
    if number is None or number <= 0:
        raise _Problem("must be a number greater than 0")
    return number


def _to_number_from_zero(text: str) -> float:
    number = _to_number(text)
    if number is None or number < 0:
        raise _Problem("must be a number of 0 or more")
    return number


def _to_choice(text: str, *, choices: tuple[str, ...]) -> str:
    for choice in choices:
        if text.lower() == choice.lower():
            return choice
    raise _Problem("must be one of " + ", ".join(choices))


def _to_name_list(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _to_proxy(text: str) -> str:
    """A proxy URL; written without a scheme it is used as http://."""
    url = text if "://" in text else "http://" + text
    if not _is_http_url(url):
        raise _Problem("must be a proxy URL such as http://proxy.example.org:8080")
    return url


def _to_certificate_path(text: str, *, base_dir: Path) -> Path:
    """A PEM file with at least one CA certificate (added to the defaults)."""
    path = resolve_path(text, base_dir)
    if not path.exists():
        raise _Problem(f"names {str(path)!r}, which is not found", shows_value=True)
    try:
        content = path.read_bytes()
    except OSError as err:
        raise _Problem(
            f"names {str(path)!r}, which cannot be read ({err.strerror})",
            shows_value=True,
        ) from err
    if PEM_MARKER not in content:
        raise _Problem(
            f"names {str(path)!r}, which is not a PEM file (no"
            f" {PEM_MARKER.decode()} line): export the CA certificate as"
            " Base-64 encoded X.509",
            shows_value=True,
        )
    return path


def _to_datetime_format(text: str) -> str:
    """A strftime format that writes and reads back a time to the second."""
    try:
        written = _FORMAT_PROBE.strftime(text)
        is_round_trip = datetime.strptime(written, text) == _FORMAT_PROBE
    except ValueError:
        is_round_trip = False
    if not is_round_trip:
        raise _Problem(
            "must be a strftime format that keeps date and time to the second,"
            " such as %d/%m/%Y %H:%M:%S"
        )
    return text


def _describe_value(field_name: str, value: Any) -> str:
    if field_name in SECRET_FIELDS:
        return "***" if value else "(not set)"
    if field_name == "athoc_server_url":
        return mask_url(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value) or "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    if value is None or value == "":
        return "(not set)"
    return str(value)


def make_test_settings(base_dir: Path, **overrides: Any) -> Settings:
    """Valid Settings for tests and the demo: folders under ``base_dir``,
    dummy credentials, a server URL nothing listens on. Not validated."""
    values: dict[str, Any] = {
        "athoc_server_url": "http://127.0.0.1:1",
        "client_id": "bobosync-test",
        "client_secret": "test-client-secret",
        "api_user": "svc_bobo_test",
        "password": "test-password",
        "org_code": "1234",
        "log_directory": base_dir / "logs",
        "csv_directory": base_dir / "csv_input",
        "processed_directory": base_dir / "processed_files",
        "failed_files_directory": base_dir / "failed_files",
        "db_path": base_dir / "bobo_sync.db",
    }
    values.update(overrides)
    return Settings(**values)
