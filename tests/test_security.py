"""Security: no secret in anything bobosync writes; hostile input stays data.

A full DEBUG session with faults (a 401 mid-run, invalid_grant, 500s,
refresh tokens, a proxy with credentials) is run against the simulator over
https, then every byte bobosync wrote is searched for the password, the
client secret, each token the simulator issued and the proxy password. The
other tests show that a quote in a value cannot change an AtHoc query and
that a file name cannot make bobosync write outside its folders.
"""

from __future__ import annotations

import base64
import logging
import os
import traceback
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
import trustme

from bobosync.athoc_client import AtHocClient, escape_criteria_value
from bobosync.bobo_processor import BOBOProcessor, TickReport
from bobosync.clock import ManualClock
from bobosync.errors import ApiError, FolderError
from bobosync.inbox import write_new_file
from bobosync.logging_setup import configure_logging, reset_logging
from bobosync.settings import Settings, load_settings
from bobosync.simulator import AtHocSimulator
from tests.conftest import CASE_USERS, clean_environment, folder_names
from tests.test_network_cases import ConnectProxy, server_context

PASSWORD = "Pw-0riginal-7f3c1"
CHANGED_PASSWORD = "Pw-Changed-9d2e4"
CLIENT_SECRET = "Cs-8b1a-client-secret"
PROXY_USER, PROXY_PASSWORD = "svc_bobo", "Px@9c4e-proxy"
PROXY_PASSWORD_QUOTED = "Px%409c4e-proxy"
HEADER = (
    "Transaction_Type,Employee_ID,Payroll_ID,Clocking_Date,Clocking_Time,"
    "DateTime_Created,Geo_Status,Geo_Latitude,Geo_Longitude,Geo_Accuracy"
)


def bobo_file(folder: Path, name: str, *rows: tuple[str, str, str]) -> Path:
    """A BOBO file of (type, employee id, HHMMSS) rows on 14/03/2025."""
    lines = [HEADER] + [
        f"{kind},{employee},7{employee},20250314,{time},20250314{time},1,,,"
        for kind, employee, time in rows
    ]
    path = folder / name
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    return path


# --- a full DEBUG session with faults ------------------------------------------


@pytest.fixture
def session_setup(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[AtHocSimulator, ConnectProxy, Settings]]:
    clean_environment(monkeypatch)
    authority = trustme.CA()
    ca_file = tmp_path / "root-ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    simulator = AtHocSimulator(
        CASE_USERS,
        clock=clock,
        password=PASSWORD,
        client_secret=CLIENT_SECRET,
        token_lifetime_seconds=600,
        ssl_context=server_context(authority),
    ).start()
    proxy = ConnectProxy().start()
    proxy_url = f"http://{PROXY_USER}:{PROXY_PASSWORD_QUOTED}@127.0.0.1:{proxy.port}"
    env_file = tmp_path / "install" / ".env"
    (tmp_path / "install" / "in").mkdir(parents=True)
    lines = [
        f"ATHOC_SERVER_URL={simulator.url}",
        f"CLIENT_ID={simulator.client_id}",
        f"CLIENT_SECRET={CLIENT_SECRET}",
        f"APIUSER={simulator.username}",
        f"PASSWORD={PASSWORD}",
        f"ORG_CODE={simulator.org_code}",
        f"SSL_CERT_PATH={ca_file}",
        f"HTTPS_PROXY={proxy_url}",
        "LOG_LEVEL=DEBUG",
        "CSV_DIRECTORY=in",
        "FILE_SETTLE_SECONDS=0",
        "MAX_RETRY_ATTEMPTS=1",
    ]
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    yield simulator, proxy, load_settings(env_file, environ={})
    reset_logging()
    proxy.close()
    simulator.stop()


def run_faulty_session(
    simulator: AtHocSimulator, settings: Settings, clock: ManualClock
) -> tuple[list[TickReport], list[tuple[str, bytes]]]:
    """Ticks through every fault; returns the reports and the database bytes
    read while the database was still open."""
    inbox = settings.csv_directory
    client = AtHocClient(settings, clock=clock, retry_backoff_seconds=0.0)
    processor = BOBOProcessor(settings, client=client, clock=clock)
    reports = []

    def tick(name: str, *rows: tuple[str, str, str]) -> None:
        bobo_file(inbox, name, *rows)
        reports.append(processor.run_tick())
        clock.advance(60)

    tick("BOBO_1.csv", ("BON", "00417", "080100"), ("BRK", "04170", "080100"))
    simulator.revoke_tokens()  # 401 mid-run
    tick("BOBO_2.csv", ("BON", "04170", "080200"), ("BON", "99999", "080200"))
    clock.advance(600)  # expired: renewed with the refresh token
    tick("BOBO_3.csv", ("BOF", "00009", "080300"))
    simulator.fail_always("sync", 500)
    tick("BOBO_4.csv", ("BON", "00422", "080400"))
    simulator.clear_faults()
    simulator.reject_refresh_tokens()
    simulator.set_password(CHANGED_PASSWORD)
    clock.advance(600)
    tick("BOBO_5.csv", ("BON", "01234", "080500"))  # invalid_grant
    simulator.set_password(PASSWORD)
    tick("BOBO_6.csv", ("XXX", "00088", "080600"))  # no valid row: failed
    database_bytes = database_files_bytes(settings)
    processor.close()
    return reports, database_bytes


def database_files_bytes(settings: Settings) -> list[tuple[str, bytes]]:
    """The database, its -wal and -shm, by path, as they are now."""
    folder, name = settings.db_path.parent, settings.db_path.name
    paths = sorted(folder.glob(name + "*"))
    return [(f"open {path}", path.read_bytes()) for path in paths]


def failure_texts(settings: Settings, clock: ManualClock) -> list[str]:
    """Exception texts, with their whole cause chain, of a refused login
    and of a proxy with credentials that does not answer."""
    dead_proxy = f"http://{PROXY_USER}:{PROXY_PASSWORD_QUOTED}@127.0.0.1:9"
    failing = [
        replace(settings, password=CHANGED_PASSWORD),
        replace(settings, https_proxy=dead_proxy),
    ]
    texts = []
    for failing_settings in failing:
        client = AtHocClient(failing_settings, clock=clock, max_retries=0)
        with pytest.raises(ApiError) as caught:
            client.authenticate()
        texts.append("".join(traceback.format_exception(caught.value)))
        texts.append(repr(caught.value))
    return texts


def everything_written(settings: Settings) -> list[tuple[str, bytes]]:
    """Every file bobosync wrote, by path: logs, moved files, reports, DB."""
    folders = [
        settings.log_directory,
        settings.processed_directory,
        settings.failed_files_directory,
        settings.csv_directory,
        settings.db_path.parent,
    ]
    found = {
        path
        for folder in folders
        for path in folder.rglob("*")
        if path.is_file() and path.suffix != ".pem" and path.name != ".env"
    }
    return [(str(path), path.read_bytes()) for path in sorted(found)]


def secrets_in(simulator: AtHocSimulator) -> list[str]:
    proxy_basic = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
    fixed = [PASSWORD, CHANGED_PASSWORD, CLIENT_SECRET]
    fixed += [PROXY_PASSWORD, PROXY_PASSWORD_QUOTED, proxy_basic]
    return fixed + simulator.issued_tokens


def test_no_secret_in_logs_console_database_files_or_exceptions(
    session_setup, clock, caplog, capsys
):
    simulator, proxy, settings = session_setup
    configure_logging(settings)

    with caplog.at_level(logging.DEBUG):
        reports, database_bytes = run_faulty_session(simulator, settings, clock)
        exception_texts = failure_texts(settings, clock)
    reset_logging()

    # The faults really happened and the session recovered from each.
    grants = simulator.token_grants
    assert grants.count("refresh_token") >= 2 and grants.count("password") >= 4
    assert simulator.unauthorized_count >= 1
    assert [bool(report.outage) for report in reports] == [
        False, False, False, True, True, False,
    ]  # fmt: skip
    assert len(simulator.issued_tokens) >= 6
    assert all("CONNECT" in head for head in proxy.heads) and proxy.heads
    assert folder_names(settings.processed_directory) == [
        "BOBO_1.csv", "BOBO_2.csv", "BOBO_3.csv", "BOBO_4.csv", "BOBO_5.csv",
    ]  # fmt: skip
    assert folder_names(settings.failed_files_directory) == [
        "BOBO_1.csv.rejected.csv", "BOBO_6.csv",
    ]  # fmt: skip

    texts = [("stderr", capsys.readouterr().err)]
    texts += [(f"record {r.name}", r.getMessage()) for r in caplog.records]
    texts += [(f"traceback {r.name}", r.exc_text or "") for r in caplog.records]
    texts += [("tick outage", report.outage) for report in reports]
    texts += [("exception", text) for text in exception_texts]
    blobs = everything_written(settings)
    blobs += database_bytes
    assert any("bobo_processor.log" in where for where, _ in blobs)
    assert any(where.endswith("-wal") for where, _ in blobs)
    for secret in secrets_in(simulator):
        leaks = [where for where, text in texts if secret in text]
        leaks += [where for where, blob in blobs if secret.encode() in blob]
        assert leaks == [], f"a secret ({len(secret)} chars) leaked into {leaks}"


# --- AtHoc criteria: a quote is data ----------------------------------------------


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("O'Brien", "O''Brien"),
        ("x' or LOGIN_ID ne '", "x'' or LOGIN_ID ne ''"),
        ("''", "''''"),
        ("00417", "00417"),
    ],
)
def test_escape_criteria_value_doubles_every_quote(value, escaped):
    assert escape_criteria_value(value) == escaped


@pytest.fixture
def quote_simulator(clock: ManualClock) -> Iterator[AtHocSimulator]:
    users = [
        *CASE_USERS,
        {"LOGIN_ID": "q.obrien", "Collar-Number": "O'Brien-7"},
        {"LOGIN_ID": "q.attack", "Collar-Number": "x' or LOGIN_ID ne '"},
    ]
    with AtHocSimulator(users, clock=clock) as running:
        yield running


def look_up(simulator: AtHocSimulator, make_settings, clock, collar_id: str):
    settings = make_settings(
        athoc_server_url=simulator.url, search_offset_mode="record"
    )
    client = AtHocClient(settings, clock=clock, retry_backoff_seconds=0.0)
    simulator.reset_records()
    users = client.find_users_by_collar_ids([collar_id])
    return sorted(str(user["LOGIN_ID"]) for user in users)


@pytest.mark.parametrize(
    ("collar_id", "logins", "criteria"),
    [
        ("O'Brien-7", ["q.obrien"], "(Collar-Number eq 'O''Brien-7')"),
        (
            "x' or LOGIN_ID ne '",
            ["q.attack"],
            "(Collar-Number eq 'x'' or LOGIN_ID ne ''')",
        ),
        (
            "nobody' or LOGIN_ID ne '",
            [],
            "(Collar-Number eq 'nobody'' or LOGIN_ID ne ''')",
        ),
    ],
    ids=["apostrophe", "injection-held", "injection-nobody"],
)
def test_quote_in_collar_id_matches_literally_never_widens_the_search(
    collar_id, logins, criteria, quote_simulator, make_settings, clock
):
    found = look_up(quote_simulator, make_settings, clock, collar_id)

    assert found == logins
    assert [q["Criteria"] for q in quote_simulator.search_queries] == [criteria]


def test_quoted_employee_id_in_a_file_is_a_rejected_row_never_a_query(
    make_processor, simulator
):
    processor = make_processor()
    inbox = processor.settings.csv_directory
    quoted = ("BON", "x' or LOGIN_ID ne '", "071600")
    bobo_file(inbox, "BOBO_q.csv", ("BON", "00417", "071502"), quoted)

    report = processor.run_tick()

    assert report.is_success
    assert simulator.sent_updates() == {"t.ashby": "14/03/2025 07:15:02"}
    criteria = [q["Criteria"] or "" for q in simulator.search_queries]
    assert [c for c in criteria if "LOGIN_ID ne" in c] == []
    rejected = processor.settings.failed_files_directory / "BOBO_q.csv.rejected.csv"
    assert "x' or LOGIN_ID ne '" in rejected.read_text(encoding="utf-8")


# --- file names cannot lead outside the folders -------------------------------------


def all_paths(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.mark.skipif(os.name == "nt", reason="Windows names cannot hold these")
def test_file_names_that_cannot_be_moved_safely_are_ignored_with_a_warning(
    make_processor, simulator, tmp_path, caplog
):
    processor = make_processor()
    inbox = processor.settings.csv_directory
    names = [
        "..\\..\\evil.csv",
        "C:evil.csv",
        "\\\\server\\share\\x.csv",
        "a\nINFO x.csv",
    ]
    for name in names:
        bobo_file(inbox, name, ("BON", "00417", "071502"), ("BRK", "04170", "071502"))
    before = all_paths(tmp_path)

    with caplog.at_level(logging.WARNING, logger="bobosync"):
        reports = [processor.run_tick(), processor.run_tick()]

    assert all(report.is_success for report in reports)
    assert sorted(caplog.messages) == sorted(
        f"file ignored, its name cannot be moved safely: name={name!r}; rename it"
        " without \\, a drive prefix, control characters or bytes that are not"
        " UTF-8"
        for name in names
    )
    assert simulator.sync_calls == []
    assert sorted(p.name for p in inbox.iterdir() if p.suffix == ".csv") == sorted(
        names
    )
    assert {p.name for p in all_paths(tmp_path) - before} <= {
        "bobo_sync.db-wal", "bobo_sync.db-shm",
    }  # fmt: skip


def test_dot_dot_lookalike_name_is_processed_and_reported_inside_its_folders(
    make_processor, simulator, tmp_path
):
    processor = make_processor()
    settings = processor.settings
    name = "BOBO_..\u2215..\u2215evil.csv"  # U+2215 looks like "/" and is not
    rows = [("BON", "00417", "071502"), ("BRK", "04170", "071502")]
    bobo_file(settings.csv_directory, name, *rows)

    report = processor.run_tick()

    assert report.is_success
    assert simulator.sent_updates() == {"t.ashby": "14/03/2025 07:15:02"}
    assert folder_names(settings.processed_directory) == [name]
    assert folder_names(settings.failed_files_directory) == [f"{name}.rejected.csv"]


@pytest.mark.parametrize(
    "name", ["/tmp/abs.csv", "C:\\x.csv", "\\\\srv\\share\\x.csv", "a/../../x.csv"]
)
def test_report_name_that_is_absolute_looking_is_refused(tmp_path, name):
    folder = tmp_path / "failed"
    folder.mkdir()

    with pytest.raises(FolderError, match="would leave the folder"):
        write_new_file(folder, name, "x", now=datetime(2025, 3, 14, 23))

    assert all_paths(tmp_path) == {folder}
