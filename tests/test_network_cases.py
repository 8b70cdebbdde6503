"""Settings and network cases of EXPECTED.md through the whole daemon.

B09, B12, B13, B14, B17, B18, B19 and B20: each runs `python -m bobosync
--once --env-file X --clock-start 2025-03-14T23:00:00` as an operator would,
in-process through ``cli.main`` (its log file, console and log records are
all read back) or, where the working folder matters, as a subprocess. AtHoc
is the simulator on loopback, over http or over https with a throwaway CA
(trustme); a loopback CONNECT proxy stands for the corporate proxy.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
import urllib3

from bobosync import cli
from bobosync.athoc_client import AtHocClient, build_ssl_context
from bobosync.clock import ManualClock
from bobosync.database import BOBODatabase
from bobosync.logging_setup import reset_logging
from bobosync.settings import SETTING_NAMES, load_settings
from bobosync.simulator import AtHocSimulator
from tests.conftest import CASE_USERS, REPO_ROOT, case_file, clean_environment

CLOCK_START = "2025-03-14T23:00:00"
INBOX_FILE = "BOBO_0800.csv"
N04_SENT = {"t.ashby": "14/03/2025 07:15:02", "r.okafor": "14/03/2025 07:20:10"}
FOLDER_LINES = [
    "CSV_DIRECTORY=in",
    "PROCESSED_DIRECTORY=processed_files",
    "FAILED_FILES_DIRECTORY=failed_files",
    "DB_PATH=bobo.db",
    "LOG_DIRECTORY=logs",
    "FILE_SETTLE_SECONDS=0",
    "REQUEST_TIMEOUT_SECONDS=5",
]
# Variables other programs read that must not steer bobosync (R9).
FOREIGN_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
DIRECT = "setting: proxy: none (direct connection)"
PROXY_HINT = "most corporate proxies expect http:// even for HTTPS traffic"


# --- the install folder and the daemon run ----------------------------------


@dataclass
class Install:
    """A folder laid out like D:\\BoboSync: `.env`, the inbox `in/`, and the
    folders the `.env` names relative to itself."""

    folder: Path

    @property
    def env_file(self) -> Path:
        return self.folder / ".env"

    @property
    def inbox(self) -> Path:
        return self.folder / "in"

    @property
    def processed(self) -> Path:
        return self.folder / "processed_files"

    @property
    def failed(self) -> Path:
        return self.folder / "failed_files"

    @property
    def log_file(self) -> Path:
        return self.folder / "logs" / "bobo_processor.log"

    def write_env(self, lines: list[str], *, head: bytes = b"") -> Path:
        """Write `.env` with CRLF line ends after ``head`` (fixture bytes)."""
        body = "".join(line + "\r\n" for line in lines).encode("utf-8")
        self.env_file.write_bytes(head + body)
        return self.env_file

    def drop_file(self) -> None:
        """One BOBO file with the bytes of N04_with_header.csv."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        source = case_file("N04_with_header.csv")
        (self.inbox / INBOX_FILE).write_bytes(source.read_bytes())

    def attempts(self) -> int:
        with BOBODatabase(self.folder / "bobo.db") as database:
            return database.get_attempts(INBOX_FILE)


def csv_names(folder: Path) -> list[str]:
    """The BOBO files in a folder (the lock files in the inbox excluded)."""
    if not folder.exists():
        return []
    return sorted(path.name for path in folder.glob("*.csv"))


def simulator_lines(
    simulator: AtHocSimulator, *, skip: tuple[str, ...] = ()
) -> list[str]:
    """`.env` lines that log in to ``simulator``, leaving out ``skip``."""
    lines = {
        "ATHOC_SERVER_URL": simulator.url,
        "CLIENT_ID": simulator.client_id,
        "CLIENT_SECRET": simulator.client_secret,
        "APIUSER": simulator.username,
        "PASSWORD": simulator.password,
        "ORG_CODE": simulator.org_code,
    }
    return [f"{key}={value}" for key, value in lines.items() if key not in skip]


@dataclass
class Run:
    """What one `--once` run did and wrote."""

    exit_code: int
    records: list[logging.LogRecord]
    log_text: str
    stderr: str

    def messages(self, level: int) -> list[str]:
        return [
            record.getMessage()
            for record in self.records
            if record.levelno == level and record.name.startswith("bobosync")
        ]

    @property
    def everything(self) -> str:
        """Every line written: log file, console and every log record."""
        texts = [record.getMessage() for record in self.records]
        return "\n".join([self.log_text, self.stderr, *texts])


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    clean_environment(monkeypatch)
    for name in FOREIGN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield
    reset_logging()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's own retries, without urllib3's real back-off sleeps."""
    defaults = AtHocClient.__init__.__kwdefaults__
    monkeypatch.setitem(defaults, "retry_backoff_seconds", 0.0)


@pytest.fixture
def install(tmp_path: Path) -> Install:
    made = Install(tmp_path / "install")
    made.inbox.mkdir(parents=True)
    return made


@pytest.fixture
def run_once(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> Callable[[Install], Run]:
    def run(install: Install) -> Run:
        caplog.clear()
        capsys.readouterr()
        arguments = ["--once", "--env-file", str(install.env_file)]
        with caplog.at_level(logging.DEBUG):
            exit_code = cli.main([*arguments, "--clock-start", CLOCK_START])
        reset_logging()
        log_text = (
            install.log_file.read_text("utf-8") if install.log_file.exists() else ""
        )
        return Run(exit_code, list(caplog.records), log_text, capsys.readouterr().err)

    return run


def assert_file_stays(install: Install) -> None:
    """R7: an outage moves nothing and counts no attempt."""
    assert csv_names(install.inbox) == [INBOX_FILE]
    assert csv_names(install.processed) == []
    assert csv_names(install.failed) == []
    assert install.attempts() == 0


def assert_file_processed(install: Install, simulator: AtHocSimulator) -> None:
    assert simulator.sent_updates() == N04_SENT
    assert csv_names(install.inbox) == []
    assert csv_names(install.processed) == [INBOX_FILE]


# --- simulators over http and https, proxies -------------------------------


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_pem(tmp_path: Path, certificate_authority: trustme.CA) -> Path:
    path = tmp_path / "corporate-root.pem"
    certificate_authority.cert_pem.write_to_path(str(path))
    return path


def server_context(
    authority: trustme.CA,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    """A server context for 127.0.0.1 signed by ``authority``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 names
        if minimum is not None:
            context.minimum_version = minimum
        if maximum is not None:
            context.maximum_version = maximum
    if maximum is not None and maximum < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


@pytest.fixture
def start_simulator(clock: ManualClock) -> Iterator[Callable[..., AtHocSimulator]]:
    started: list[AtHocSimulator] = []

    def start(**options: Any) -> AtHocSimulator:
        started.append(AtHocSimulator(CASE_USERS, clock=clock, **options).start())
        return started[-1]

    yield start
    for simulator in started:
        simulator.stop()


@pytest.fixture
def tls_simulator(
    start_simulator: Callable[..., AtHocSimulator], certificate_authority: trustme.CA
) -> AtHocSimulator:
    return start_simulator(ssl_context=server_context(certificate_authority))


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


@dataclass
class ConnectProxy:
    """A plain-HTTP proxy on loopback that tunnels CONNECT.

    Records each request head. Like a real HTTP proxy it answers a TLS
    hello (a client treating it as an https:// proxy) with plain HTTP 400.
    """

    heads: list[str] = field(default_factory=list)
    listener: socket.socket = field(
        default_factory=lambda: socket.create_server(("127.0.0.1", 0))
    )
    sockets: list[socket.socket] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def start(self) -> ConnectProxy:
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def close(self) -> None:
        self.listener.close()
        for connection in self.sockets:
            connection.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(connection)
            threading.Thread(
                target=self._serve, args=(connection,), daemon=True
            ).start()

    def _serve(self, connection: socket.socket) -> None:
        head = connection.recv(1)
        if head[:1] == b"\x16":  # a TLS handshake record
            connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            connection.close()
            return
        while not head.endswith(b"\r\n\r\n"):
            chunk = connection.recv(1)
            if not chunk:
                return
            head += chunk
        self.heads.append(head.decode("latin-1"))
        method, target = head.split(b" ")[:2]
        if method != b"CONNECT":
            connection.sendall(b"HTTP/1.1 405 Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = target.decode().rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=5)
        self.sockets.append(upstream)
        connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=_pipe, args=(upstream, connection), daemon=True).start()
        _pipe(connection, upstream)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def connect_proxy() -> Iterator[ConnectProxy]:
    proxy = ConnectProxy().start()
    yield proxy
    proxy.close()


def tunnelled_to(proxy: ConnectProxy, simulator: AtHocSimulator) -> bool:
    address = simulator.url.removeprefix("https://")
    return any(head.startswith(f"CONNECT {address} ") for head in proxy.heads)


# --- B09: `$` and `${...}` in secrets -----------------------------------------


def test_b09_dollar_secrets_log_in_as_written_and_are_never_logged(
    install, start_simulator, run_once
):
    password, client_secret = "Qx${abc}7$def!", "s3cr${ET}x"
    simulator = start_simulator(
        username="svc_bobo_sync", password=password, client_secret=client_secret
    )
    head = case_file("B09_password_dollar.env").read_bytes()
    skip = ("APIUSER", "PASSWORD", "CLIENT_SECRET")
    lines = simulator_lines(simulator, skip=skip) + FOLDER_LINES
    install.write_env([*lines, "LOG_LEVEL=DEBUG"], head=head)
    install.drop_file()

    run = run_once(install)

    assert run.exit_code == 0
    assert simulator.token_grants == ["password"]
    assert any(
        m.startswith("Authentication successful") for m in run.messages(logging.INFO)
    )
    assert_file_processed(install, simulator)
    for secret in (password, client_secret, "Qx7$def!", "s3crx"):
        assert secret not in run.everything


# --- B12: `.env` saved with a byte-order mark ---------------------------------


BOM = b"\xef\xbb\xbf"


def test_b12_env_with_bom_first_key_server_url_syncs_end_to_end(
    install, simulator, run_once
):
    install.write_env(simulator_lines(simulator) + FOLDER_LINES, head=BOM)
    install.drop_file()

    run = run_once(install)

    assert run.exit_code == 0
    assert f"setting: ATHOC_SERVER_URL={simulator.url}" in run.messages(logging.INFO)
    assert_file_processed(install, simulator)


def child_environment(**extra: str) -> dict[str, str]:
    """The test's environment without bobosync settings, for a subprocess."""
    names = {"USERNAME", "ATHOC_USERNAME", *SETTING_NAMES, *FOREIGN_VARIABLES}
    environment = {key: value for key, value in os.environ.items() if key not in names}
    environment["PYTHONPATH"] = str(REPO_ROOT)
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    environment.update(extra)
    return environment


def run_subprocess(env_file: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bobosync", "--once", "--env-file", env_file]
    return subprocess.run(
        [*command, "--clock-start", CLOCK_START],
        cwd=cwd,
        env=child_environment(),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_b12_without_its_first_line_start_up_stops_naming_server_url(
    install, simulator
):
    fixture = case_file("B12_env_with_bom.env").read_bytes()
    without_first_line = BOM + fixture.split(b"\r\n", 1)[1]
    skip = ("ATHOC_SERVER_URL", "ORG_CODE", "APIUSER")
    install.write_env(
        simulator_lines(simulator, skip=skip) + FOLDER_LINES, head=without_first_line
    )
    install.drop_file()

    finished = run_subprocess(str(install.env_file), install.folder)

    assert finished.returncode == 2
    problems = finished.stderr.splitlines()[1:]
    assert problems == [
        (
            f"ATHOC_SERVER_URL is missing: set it in {install.env_file} or the"
            " process environment"
        )
    ]
    assert simulator.token_grants == [] and simulator.search_queries == []
    assert not install.log_file.exists()
    assert csv_names(install.inbox) == [INBOX_FILE]


# --- B13: where `.env` is found; relative paths ---------------------------------


def test_b13_env_file_folder_anchors_every_path_and_working_folder_stays_empty(
    tmp_path, install, simulator
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    install.write_env(simulator_lines(simulator) + FOLDER_LINES)
    install.drop_file()

    finished = run_subprocess(os.path.join("..", "install", ".env"), elsewhere)

    assert finished.returncode == 0, finished.stderr
    assert list(elsewhere.iterdir()) == []
    assert_file_processed(install, simulator)
    assert (install.folder / "bobo.db").is_file()
    assert install.log_file.is_file()
    expected = [
        f".env file: {install.env_file}",
        f"CSV_DIRECTORY={install.inbox}",
        f"PROCESSED_DIRECTORY={install.processed}",
        f"FAILED_FILES_DIRECTORY={install.failed}",
        f"DB_PATH={install.folder / 'bobo.db'}",
        f"LOG_DIRECTORY={install.folder / 'logs'}",
    ]
    log_text = install.log_file.read_text("utf-8")
    for line in expected:
        assert f"INFO bobosync.cli: setting: {line}\n" in log_text
        assert f"INFO bobosync.cli: setting: {line}\n" in finished.stderr
    assert simulator.password not in log_text + finished.stderr


# --- B14: a stale machine variable overrides `.env` ----------------------------


def write_b14_env(install: Install, simulator: AtHocSimulator) -> None:
    head = case_file("B14_env_override.env").read_bytes()
    install.write_env(
        simulator_lines(simulator, skip=("PASSWORD",)) + FOLDER_LINES, head=head
    )
    install.drop_file()


def test_b14_stale_environment_password_is_refused_once_and_files_stay(
    install, start_simulator, run_once, monkeypatch
):
    simulator = start_simulator(password="NewPass-2025")
    write_b14_env(install, simulator)
    monkeypatch.setenv("PASSWORD", "OldPass-2024")

    run = run_once(install)

    assert run.exit_code == 1
    override = (
        f"PASSWORD from the process environment overrides the value in"
        f" {install.env_file}"
    )
    assert run.messages(logging.WARNING) == [override]
    (error,) = run.messages(logging.ERROR)
    assert "authentication failed: invalid_grant" in error
    assert "check APIUSER=svc_bobo_sync, PASSWORD and ORG_CODE=BOBO" in error
    assert "OldPass-2024" not in run.everything
    assert "NewPass-2025" not in run.everything
    assert simulator.token_grants == ["password"]
    assert simulator.sync_calls == []
    assert_file_stays(install)


def test_b14_empty_https_proxy_means_direct_and_start_up_says_so(
    install, start_simulator, run_once, monkeypatch
):
    simulator = start_simulator(password="NewPass-2025")
    write_b14_env(install, simulator)
    monkeypatch.setenv("PASSWORD", "NewPass-2025")

    run = run_once(install)

    assert run.exit_code == 0
    assert DIRECT in run.messages(logging.INFO)
    assert run.messages(logging.WARNING) == []
    assert_file_processed(install, simulator)


# --- B17: proxy written with `https://` ------------------------------------------


def write_tls_env(
    install: Install, simulator: AtHocSimulator, ca_pem: Path | None, *extra: str
) -> None:
    certificate = [f"SSL_CERT_PATH={ca_pem}"] if ca_pem else []
    install.write_env(
        [*simulator_lines(simulator), *FOLDER_LINES, *certificate, *extra]
    )
    install.drop_file()


def test_b17_https_scheme_proxy_warns_then_fails_with_one_error_naming_it(
    install, tls_simulator, ca_pem, connect_proxy, run_once, fast_retries
):
    proxy = f"https://127.0.0.1:{connect_proxy.port}"
    write_tls_env(install, tls_simulator, ca_pem, f"HTTPS_PROXY={proxy}")

    run = run_once(install)

    assert run.exit_code == 1
    (warning,) = run.messages(logging.WARNING)
    assert warning.startswith(f"HTTPS_PROXY uses the https:// scheme ({proxy}):")
    assert PROXY_HINT in warning and "the value is used as written" in warning
    (error,) = run.messages(logging.ERROR)
    assert f"the proxy {proxy} did not work" in error
    assert "most corporate proxies expect http://" in error
    assert tls_simulator.token_grants == []
    assert_file_stays(install)


def test_b17_proxy_without_scheme_is_used_as_http_with_a_warning(
    install, tls_simulator, ca_pem, connect_proxy, run_once
):
    written = f"127.0.0.1:{connect_proxy.port}"
    write_tls_env(install, tls_simulator, ca_pem, f"HTTPS_PROXY={written}")

    run = run_once(install)

    assert run.exit_code == 0
    assert run.messages(logging.WARNING) == [
        f"HTTPS_PROXY has no scheme; using http://{written}"
    ]
    assert f"setting: proxy: HTTPS_PROXY=http://{written}" in run.messages(logging.INFO)
    assert tunnelled_to(connect_proxy, tls_simulator)
    assert_file_processed(install, tls_simulator)


def test_b17_proxy_credentials_are_masked_in_start_up_and_error(
    install, tls_simulator, ca_pem, run_once, fast_retries
):
    port = closed_port()
    proxy = f"http://svc_bobo:P%40ss@127.0.0.1:{port}"
    masked = f"http://svc_bobo:***@127.0.0.1:{port}"
    write_tls_env(install, tls_simulator, ca_pem, f"HTTPS_PROXY={proxy}")

    run = run_once(install)

    assert run.exit_code == 1
    assert f"setting: proxy: HTTPS_PROXY={masked}" in run.messages(logging.INFO)
    (error,) = run.messages(logging.ERROR)
    assert f"the proxy {masked} did not work" in error
    assert "P%40ss" not in run.everything and "P@ss" not in run.everything
    assert_file_stays(install)


# --- B18: where the proxy comes from ---------------------------------------------


def test_b18a_empty_https_proxy_is_direct(install, simulator, run_once):
    install.write_env([*simulator_lines(simulator), *FOLDER_LINES, "HTTPS_PROXY="])
    install.drop_file()

    run = run_once(install)

    assert run.exit_code == 0
    assert DIRECT in run.messages(logging.INFO)
    assert_file_processed(install, simulator)


def test_b18b_proxy_from_env_file_carries_https(
    install, tls_simulator, ca_pem, connect_proxy, run_once
):
    proxy = f"http://127.0.0.1:{connect_proxy.port}"
    write_tls_env(install, tls_simulator, ca_pem, f"HTTPS_PROXY={proxy}")

    run = run_once(install)

    assert run.exit_code == 0
    assert f"setting: proxy: HTTPS_PROXY={proxy}" in run.messages(logging.INFO)
    assert tunnelled_to(connect_proxy, tls_simulator)
    assert_file_processed(install, tls_simulator)


def test_b18c_stale_machine_proxy_overrides_env_file_and_fails_once(
    install, tls_simulator, ca_pem, connect_proxy, run_once, fast_retries, monkeypatch
):
    file_proxy = f"http://127.0.0.1:{connect_proxy.port}"
    old_proxy = f"http://127.0.0.1:{closed_port()}"
    write_tls_env(install, tls_simulator, ca_pem, f"HTTPS_PROXY={file_proxy}")
    monkeypatch.setenv("HTTPS_PROXY", old_proxy)

    run = run_once(install)

    assert run.exit_code == 1
    override = (
        f"HTTPS_PROXY from the process environment overrides the value in"
        f" {install.env_file}"
    )
    assert run.messages(logging.WARNING) == [override]
    assert f"setting: proxy: HTTPS_PROXY={old_proxy}" in run.messages(logging.INFO)
    (error,) = run.messages(logging.ERROR)
    assert f"the proxy {old_proxy} did not work" in error
    assert connect_proxy.heads == []
    assert_file_stays(install)


def test_b18d_environment_and_system_proxies_are_not_settings(
    install, simulator, run_once, monkeypatch
):
    if sys.platform == "win32":
        pytest.skip("on Windows https_proxy is the HTTPS_PROXY setting itself")
    dead = "http://127.0.0.1:9"
    for name in ("ALL_PROXY", "all_proxy", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, dead)
    system_proxies = {"http": dead, "https": dead}
    monkeypatch.setattr("urllib.request.getproxies", lambda: system_proxies)
    install.write_env(simulator_lines(simulator) + FOLDER_LINES)
    install.drop_file()

    run = run_once(install)

    assert run.exit_code == 0
    assert DIRECT in run.messages(logging.INFO)
    assert_file_processed(install, simulator)


def test_b18e_proxy_credentials_reach_the_proxy_and_no_log_line(
    install, tls_simulator, ca_pem, connect_proxy, run_once
):
    port = connect_proxy.port
    proxy = f"http://svc_bobo:P%40ss@127.0.0.1:{port}"
    write_tls_env(install, tls_simulator, ca_pem, f"HTTPS_PROXY={proxy}")

    run = run_once(install)

    assert run.exit_code == 0
    masked = f"setting: proxy: HTTPS_PROXY=http://svc_bobo:***@127.0.0.1:{port}"
    assert masked in run.messages(logging.INFO)
    credentials = base64.b64encode(b"svc_bobo:P@ss").decode()
    assert all(
        f"Proxy-Authorization: Basic {credentials}" in h for h in connect_proxy.heads
    )
    assert tunnelled_to(connect_proxy, tls_simulator)
    assert "P%40ss" not in run.everything and "P@ss" not in run.everything
    assert credentials not in run.everything
    assert_file_processed(install, tls_simulator)


def test_b18f_no_proxy_sends_the_simulator_direct(install, simulator, run_once):
    dead = "http://127.0.0.1:9"
    proxies = [
        f"HTTP_PROXY={dead}",
        f"HTTPS_PROXY={dead}",
        "NO_PROXY=127.0.0.1,localhost",
    ]
    install.write_env([*simulator_lines(simulator), *FOLDER_LINES, *proxies])
    install.drop_file()

    run = run_once(install)

    assert run.exit_code == 0
    expected = (
        f"setting: proxy: HTTP_PROXY={dead} HTTPS_PROXY={dead}"
        " NO_PROXY=127.0.0.1,localhost"
    )
    assert expected in run.messages(logging.INFO)
    assert_file_processed(install, simulator)


# --- B19: private root CA ----------------------------------------------------------


def test_b19a_ca_in_ssl_cert_path_is_trusted_with_the_default_roots(
    install, tls_simulator, ca_pem, certificate_authority, run_once
):
    write_tls_env(install, tls_simulator, ca_pem)

    run = run_once(install)

    assert run.exit_code == 0
    assert_file_processed(install, tls_simulator)
    settings = load_settings(install.env_file, environ={})
    trusted = build_ssl_context(settings).get_ca_certs(binary_form=True)
    ca_der = ssl.PEM_cert_to_DER_cert(certificate_authority.cert_pem.bytes().decode())
    assert ca_der in trusted
    assert len(trusted) > 1  # certifi's roots are still there


def der_copy(ca_pem: Path) -> Path:
    path = ca_pem.with_suffix(".cer")
    path.write_bytes(ssl.PEM_cert_to_DER_cert(ca_pem.read_text()))
    return path


@pytest.mark.parametrize(
    ("variant", "expected"),
    [("b", "is not a PEM file"), ("c", "which is not found")],
    ids=["B19b-der", "B19c-missing"],
)
def test_b19b_b19c_unusable_certificate_stops_start_up_before_any_request(
    variant, expected, install, tls_simulator, ca_pem
):
    path = der_copy(ca_pem) if variant == "b" else install.folder / "absent.pem"
    write_tls_env(install, tls_simulator, path)

    finished = run_subprocess(str(install.env_file), install.folder)

    assert finished.returncode == 2
    (problem,) = finished.stderr.splitlines()[1:]
    assert problem.startswith(f"SSL_CERT_PATH in {install.env_file} names '{path}'")
    assert expected in problem
    assert tls_simulator.token_grants == []
    assert not install.log_file.exists()


def test_b19d_disabled_verification_warns_once_per_start_not_per_request(
    install, tls_simulator, run_once
):
    write_tls_env(install, tls_simulator, None, "DISABLE_SSL_VERIFY=true")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = [run_once(install), run_once(install)]

    for run in runs:
        assert run.exit_code == 0
        (warning,) = run.messages(logging.WARNING)
        assert warning.startswith("TLS certificate verification DISABLED")
    insecure = [
        w
        for w in caught
        if issubclass(w.category, urllib3.exceptions.InsecureRequestWarning)
    ]
    assert insecure == []
    assert_file_processed(install, tls_simulator)


@pytest.mark.parametrize(
    "foreign", ["", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"]
)
def test_b19e_untrusted_certificate_is_one_error_with_the_hint(
    foreign, install, tls_simulator, ca_pem, run_once, fast_retries, monkeypatch
):
    if foreign:
        monkeypatch.setenv(foreign, str(ca_pem))  # R9: changes nothing
    write_tls_env(install, tls_simulator, None)

    run = run_once(install)

    assert run.exit_code == 1
    (error,) = run.messages(logging.ERROR)
    assert "(CERTIFICATE_VERIFY_FAILED): set SSL_CERT_PATH" in error
    assert tls_simulator.token_grants == []
    assert_file_stays(install)


@pytest.mark.parametrize("foreign", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_b19_foreign_ca_bundle_does_not_replace_ssl_cert_path(
    foreign, install, tls_simulator, ca_pem, run_once, monkeypatch, tmp_path
):
    unrelated = tmp_path / "unrelated.pem"
    trustme.CA().cert_pem.write_to_path(str(unrelated))
    monkeypatch.setenv(foreign, str(unrelated))
    write_tls_env(install, tls_simulator, ca_pem)

    run = run_once(install)

    assert run.exit_code == 0
    assert_file_processed(install, tls_simulator)


# --- B20: TLS 1.2 or newer ----------------------------------------------------------


@pytest.mark.parametrize("through_proxy", [False, True], ids=["direct", "proxy"])
@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls12", "tls13"]
)
def test_b20_tls_12_and_13_only_servers_are_accepted(
    version,
    through_proxy,
    install,
    start_simulator,
    certificate_authority,
    ca_pem,
    connect_proxy,
    run_once,
):
    context = server_context(certificate_authority, version, version)
    simulator = start_simulator(ssl_context=context)
    proxy = (
        [f"HTTPS_PROXY=http://127.0.0.1:{connect_proxy.port}"] if through_proxy else []
    )
    write_tls_env(install, simulator, ca_pem, *proxy)

    run = run_once(install)

    assert run.exit_code == 0
    assert simulator.token_grants == ["password"]
    assert tunnelled_to(connect_proxy, simulator) is through_proxy
    assert_file_processed(install, simulator)


def can_serve_old_tls(context: ssl.SSLContext, url: str) -> bool:
    """Whether this machine's OpenSSL completes a TLS 1.0/1.1 handshake."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.minimum_version = ssl.TLSVersion.TLSv1
    client.set_ciphers("DEFAULT:@SECLEVEL=0")
    host, port = url.removeprefix("https://").split(":")
    try:
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            client.wrap_socket(raw, server_hostname=host) as tls,
        ):
            return tls.version() in ("TLSv1", "TLSv1.1")
    except (OSError, ssl.SSLError):
        return False


@pytest.mark.parametrize("through_proxy", [False, True], ids=["direct", "proxy"])
def test_b20_server_offering_only_tls_10_11_is_refused_with_one_error(
    through_proxy,
    install,
    start_simulator,
    certificate_authority,
    ca_pem,
    connect_proxy,
    run_once,
    fast_retries,
):
    context = server_context(
        certificate_authority, ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
    )
    simulator = start_simulator(ssl_context=context)
    proxy = (
        [f"HTTPS_PROXY=http://127.0.0.1:{connect_proxy.port}"] if through_proxy else []
    )
    write_tls_env(install, simulator, ca_pem, *proxy)
    if not can_serve_old_tls(context, simulator.url):
        settings = load_settings(install.env_file, environ={})
        context = build_ssl_context(settings)
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert context.maximum_version == ssl.TLSVersion.MAXIMUM_SUPPORTED
        return

    run = run_once(install)

    assert run.exit_code == 1
    (error,) = run.messages(logging.ERROR)
    assert "the server offers only TLS older than 1.2" in error
    assert "bobosync requires TLS 1.2 or newer" in error
    assert simulator.token_grants == []
    assert tunnelled_to(connect_proxy, simulator) is through_proxy
    assert_file_stays(install)


def test_b20_one_context_serves_token_api_and_proxy(
    install, tls_simulator, ca_pem, connect_proxy, clock
):
    write_tls_env(
        install,
        tls_simulator,
        ca_pem,
        f"HTTPS_PROXY=http://127.0.0.1:{connect_proxy.port}",
    )
    client = AtHocClient(load_settings(install.env_file, environ={}), clock=clock)

    adapter = client.session.get_adapter(tls_simulator.url)
    manager = adapter.proxy_manager_for(f"http://127.0.0.1:{connect_proxy.port}")

    assert client.session.trust_env is False
    assert client.session.get_adapter("http://x") is adapter
    assert manager.connection_pool_kw["ssl_context"] is adapter.ssl_context
    assert adapter.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert adapter.ssl_context.maximum_version == ssl.TLSVersion.MAXIMUM_SUPPORTED
