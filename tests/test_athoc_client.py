"""Tests of the AtHoc client: token, search paging, sync, errors, transport.

Most tests script the HTTP answers with ``responses``; the few that need real
sockets (Retry-After waits, timeouts, TLS) use a small server on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
import responses
import trustme

from bobosync.athoc_client import (
    AtHocClient,
    DutyUpdate,
    SyncResult,
    build_ssl_context,
    classify_sync_answer,
    criteria_eq,
    escape_criteria_value,
    is_proxy_bypassed,
    select_proxies,
)
from bobosync.clock import ManualClock
from bobosync.errors import ApiError, AuthError
from bobosync.settings import make_test_settings

BASE = "https://athoc.example.test"
TOKEN_URL = BASE + "/AuthServices/Auth/connect/token"
API = BASE + "/api/v2/orgs/1234"
SYNC_URL = API + "/users/SyncByCommonNames"
SEARCH_URL = API + "/users/search/basic"
SYNC_PATH = "/api/v2/orgs/1234/users/SyncByCommonNames"
TOKEN_PATH = "/AuthServices/Auth/connect/token"
START = datetime(2025, 3, 14, 23, 0, 0)
PROXY_PASSWORD = "Pr0xy%40pass"
SECRETS = (
    "test-password",
    "test-client-secret",
    "access-1",
    "refresh-1",
    "access-2",
    "refresh-2",
    PROXY_PASSWORD,
    "Pr0xy@pass",
)


# --- fixtures and helpers ---------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def make_client(tmp_path: Path, clock: ManualClock) -> Callable[..., AtHocClient]:
    def make(
        max_retries: int = 3, max_retry_after_seconds: float = 120.0, **overrides: Any
    ) -> AtHocClient:
        overrides.setdefault("athoc_server_url", BASE)
        overrides.setdefault("search_offset_mode", "record")
        settings = make_test_settings(tmp_path, **overrides)
        return AtHocClient(
            settings,
            clock=clock,
            retry_backoff_seconds=0,
            max_retries=max_retries,
            max_retry_after_seconds=max_retry_after_seconds,
        )

    return make


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def token_answer(number: int = 1, expires_in: int = 3600) -> dict[str, Any]:
    return {
        "access_token": f"access-{number}",
        "token_type": "Bearer",
        "expires_in": expires_in,
        "refresh_token": f"refresh-{number}",
    }


def add_tokens(api: responses.RequestsMock, *answers: dict[str, Any]) -> None:
    for answer in answers or (token_answer(),):
        api.add(responses.POST, TOKEN_URL, json=answer)


def echo_ok(request: Any) -> tuple[int, dict[str, str], str]:
    users = json.loads(request.body)
    answer = [
        {**user, ":SyncStatus": "OK", ":SyncDetails": "Updated", "USER_ID": 1}
        for user in users
    ]
    return 200, {}, json.dumps(answer)


def search_server(
    users: list[dict[str, Any]], mode: str = "record", total: int | None = None
) -> Callable[..., Any]:
    """A search endpoint whose Offset counts records or pages."""

    def callback(request: Any) -> tuple[int, dict[str, str], str]:
        limit, offset = int(request.params["Limit"]), int(request.params["Offset"])
        start = offset if mode == "record" else offset * limit
        page = users[start : start + limit]
        answer = {
            "Users": page,
            "TotalUsers": len(users) if total is None else total,
            "FetchedRecords": len(page),
        }
        return 200, {}, json.dumps(answer)

    return callback


def calls_to(api: responses.RequestsMock, url: str) -> list[Any]:
    return [call for call in api.calls if call.request.url.split("?")[0] == url]


def form_of(call: Any) -> dict[str, str]:
    return dict(parse_qsl(call.request.body))


def sync_bodies(api: responses.RequestsMock) -> list[list[dict[str, str]]]:
    return [json.loads(call.request.body) for call in calls_to(api, SYNC_URL)]


def users_named(count: int) -> list[dict[str, str]]:
    return [
        {"LOGIN_ID": f"user{index:04d}", "On-Duty-DTG": ""} for index in range(count)
    ]


# --- token ------------------------------------------------------------------


def test_password_grant_sends_tenant_scope_and_credentials(api, make_client):
    add_tokens(api)
    make_client().authenticate()

    assert form_of(api.calls[0]) == {
        "grant_type": "password",
        "client_id": "bobosync-test",
        "client_secret": "test-client-secret",
        "username": "svc_bobo_test",
        "password": "test-password",
        "scope": "openid profile athoc.iws.web.api offline_access",
        "acr_values": "tenant:1234",
    }


def test_first_api_call_authenticates_and_logs_user_and_org(api, make_client, caplog):
    add_tokens(api)
    api.add_callback(responses.POST, SYNC_URL, callback=echo_ok)
    client = make_client()
    assert len(api.calls) == 0

    with caplog.at_level(logging.INFO, logger="bobosync.athoc_client"):
        client.batch_update_duty_status([DutyUpdate("t.ashby", "")], "On-Duty-DTG")

    assert [call.request.url.split("?")[0] for call in api.calls] == [
        TOKEN_URL,
        SYNC_URL,
    ]
    assert (
        calls_to(api, SYNC_URL)[0].request.headers["Authorization"] == "Bearer access-1"
    )
    assert "Authentication successful: user=svc_bobo_test org=1234" in caplog.messages


def test_token_is_renewed_with_rotating_refresh_token_before_expiry(
    api, make_client, clock
):
    add_tokens(api, token_answer(1), token_answer(2), token_answer(3))
    api.add_callback(responses.POST, SYNC_URL, callback=echo_ok)
    client = make_client()
    update = [DutyUpdate("t.ashby", "")]

    client.batch_update_duty_status(update, "On-Duty-DTG")
    clock.advance(3539)  # 61 s before expiry: still good
    client.batch_update_duty_status(update, "On-Duty-DTG")
    clock.advance(2)  # 59 s before expiry: renew first
    client.batch_update_duty_status(update, "On-Duty-DTG")
    clock.advance(3541)
    client.batch_update_duty_status(update, "On-Duty-DTG")

    token_forms = [form_of(call) for call in calls_to(api, TOKEN_URL)]
    assert [form["grant_type"] for form in token_forms] == [
        "password",
        "refresh_token",
        "refresh_token",
    ]
    assert [form.get("refresh_token") for form in token_forms[1:]] == [
        "refresh-1",
        "refresh-2",
    ]
    assert "password" not in token_forms[1]
    bearers = [
        call.request.headers["Authorization"] for call in calls_to(api, SYNC_URL)
    ]
    assert bearers == [
        "Bearer access-1",
        "Bearer access-1",
        "Bearer access-2",
        "Bearer access-3",
    ]


def test_short_token_lifetime_is_renewed_at_ninety_percent(api, make_client, clock):
    add_tokens(api, token_answer(1, expires_in=100), token_answer(2, expires_in=100))
    api.add_callback(responses.POST, SYNC_URL, callback=echo_ok)
    client = make_client()
    update = [DutyUpdate("t.ashby", "")]

    client.batch_update_duty_status(update, "On-Duty-DTG")
    clock.advance(89)
    client.batch_update_duty_status(update, "On-Duty-DTG")
    assert len(calls_to(api, TOKEN_URL)) == 1
    clock.advance(2)
    client.batch_update_duty_status(update, "On-Duty-DTG")
    assert len(calls_to(api, TOKEN_URL)) == 2


def test_refused_refresh_token_falls_back_to_password_grant(api, make_client, clock):
    api.add(responses.POST, TOKEN_URL, json=token_answer(1))
    api.add(responses.POST, TOKEN_URL, status=400, json={"error": "invalid_grant"})
    api.add(responses.POST, TOKEN_URL, json=token_answer(2))
    api.add_callback(responses.POST, SYNC_URL, callback=echo_ok)
    client = make_client()

    client.authenticate()
    clock.advance(3600)
    client.batch_update_duty_status([DutyUpdate("t.ashby", "")], "On-Duty-DTG")

    grants = [form_of(call)["grant_type"] for call in calls_to(api, TOKEN_URL)]
    assert grants == ["password", "refresh_token", "password"]
    assert (
        calls_to(api, SYNC_URL)[0].request.headers["Authorization"] == "Bearer access-2"
    )


def test_401_reauthenticates_once_and_repeats_the_same_call(api, make_client):
    add_tokens(api, token_answer(1), token_answer(2))
    api.add(responses.POST, SYNC_URL, status=401)
    api.add_callback(responses.POST, SYNC_URL, callback=echo_ok)

    results = make_client().batch_update_duty_status(
        [DutyUpdate("t.ashby", "14/03/2025 07:15:02")], "On-Duty-DTG"
    )

    assert results == [SyncResult("t.ashby", "ok", "Updated")]
    assert len(calls_to(api, TOKEN_URL)) == 2
    first, repeat = calls_to(api, SYNC_URL)
    assert first.request.body == repeat.request.body
    assert repeat.request.headers["Authorization"] == "Bearer access-2"


def test_second_401_in_a_row_is_not_repeated_again(api, make_client):
    add_tokens(api, token_answer(1), token_answer(2))
    api.add(responses.POST, SYNC_URL, status=401)

    with pytest.raises(AuthError) as caught:
        make_client().batch_update_duty_status([DutyUpdate("t.ashby", "")], "X")

    assert caught.value.status == 401
    assert len(calls_to(api, TOKEN_URL)) == 2
    assert len(calls_to(api, SYNC_URL)) == 2


@pytest.mark.parametrize(
    ("status", "answer", "error_code", "advice"),
    [
        (
            400,
            {"error": "invalid_client"},
            "invalid_client",
            "invalid_client: check CLIENT_ID and CLIENT_SECRET and that the API"
            " application is enabled in AtHoc",
        ),
        (
            400,
            {"error": "invalid_grant"},
            "invalid_grant",
            "invalid_grant: check APIUSER=svc_bobo_test, PASSWORD and ORG_CODE=1234,"
            " or whether the account is locked",
        ),
        (
            401,
            {},
            "invalid_grant",
            "invalid_grant: check APIUSER=svc_bobo_test, PASSWORD and ORG_CODE=1234,"
            " or whether the account is locked",
        ),
        (
            400,
            {"error": "unsupported_grant_type"},
            "unsupported_grant_type",
            "unsupported_grant_type: the AtHoc API application does not allow the"
            " password grant; enable it for CLIENT_ID",
        ),
        (
            400,
            {"error": "invalid_scope"},
            "invalid_scope",
            "invalid_scope: check SCOPE='openid profile athoc.iws.web.api"
            " offline_access'; it needs 'openid profile athoc.iws.web.api'",
        ),
    ],
)
def test_each_token_error_names_what_to_check(
    api, make_client, status, answer, error_code, advice
):
    api.add(responses.POST, TOKEN_URL, status=status, json=answer)

    with pytest.raises(AuthError) as caught:
        make_client().authenticate()

    assert str(caught.value) == f"POST {TOKEN_PATH}: authentication failed: {advice}"
    assert caught.value.error_code == error_code
    assert caught.value.status == status
    assert caught.value.is_outage


def test_unreachable_token_endpoint_is_auth_error_without_status(api, make_client):
    api.add(
        responses.POST, TOKEN_URL, body=requests.exceptions.ConnectionError("refused")
    )

    with pytest.raises(AuthError) as caught:
        make_client().authenticate()

    assert caught.value.status is None
    assert caught.value.path == TOKEN_PATH
    assert "is ATHOC_SERVER_URL right and the server up?" in str(caught.value)


# --- sync ---------------------------------------------------------------------


def test_2500_users_go_in_three_chunks_with_existing_users_only(api, make_client):
    add_tokens(api)
    api.add_callback(responses.POST, SYNC_URL, callback=echo_ok)

    results = make_client(sync_chunk_size=1000).sync_users_by_common_names(
        users_named(2500)
    )

    assert [len(body) for body in sync_bodies(api)] == [1000, 1000, 500]
    assert calls_to(api, SYNC_URL)[0].request.params == {
        "syncExistingUsersOnly": "true",
        "AllowPartialUpdate": "false",
    }
    assert len(results) == 2500 and all(result.outcome == "ok" for result in results)


def test_answers_match_by_login_id_whatever_their_order_and_case(api, make_client):
    add_tokens(api)
    answer = [
        {
            "LOGIN_ID": "R.OKAFOR",
            ":SyncStatus": "Error",
            ":SyncDetails": "User: R.OKAFOR does not exists in the Organization",
        },
        {"LOGIN_ID": "t.ashby", ":SyncStatus": "OK", ":SyncDetails": "Updated"},
    ]
    api.add(responses.POST, SYNC_URL, json=answer)

    results = make_client().batch_update_duty_status(
        [DutyUpdate("t.ashby", ""), DutyUpdate("r.okafor", "")], "On-Duty-DTG"
    )

    assert [(r.login_id, r.outcome) for r in results] == [
        ("t.ashby", "ok"),
        ("r.okafor", "not_found"),
    ]


def test_user_absent_from_the_answer_is_missing_not_success(api, make_client, caplog):
    add_tokens(api)
    api.add(
        responses.POST,
        SYNC_URL,
        json=[{"LOGIN_ID": "t.ashby", ":SyncStatus": "OK", ":SyncDetails": "Updated"}],
    )

    with caplog.at_level(logging.WARNING):
        results = make_client().batch_update_duty_status(
            [DutyUpdate("t.ashby", ""), DutyUpdate("m.lindqvist", "")], "On-Duty-DTG"
        )

    assert results[1] == SyncResult("m.lindqvist", "missing", "not in AtHoc's answer")
    assert not results[1].is_success
    assert caplog.messages == [
        "sync unconfirmed, user missing from AtHoc's answer: users=1 "
        "login_id=m.lindqvist details=not in AtHoc's answer"
    ]


def test_failing_later_chunk_carries_the_confirmed_results(api, make_client):
    add_tokens(api)
    api.add_callback(responses.POST, SYNC_URL, callback=echo_ok)
    api.add(responses.POST, SYNC_URL, status=400, json={"message": "too many"})

    with pytest.raises(ApiError) as caught:
        make_client(sync_chunk_size=2).sync_users_by_common_names(users_named(5))

    assert caught.value.status == 400
    assert not caught.value.is_outage
    assert str(caught.value) == (
        f"POST {SYNC_PATH} failed: AtHoc answered HTTP 400"
        ' ({"message": "too many"}): if the chunk is large, lower SYNC_CHUNK_SIZE=2'
    )
    assert caught.value.partial_results == [
        SyncResult("user0000", "ok", "Updated"),
        SyncResult("user0001", "ok", "Updated"),
    ]


@pytest.mark.parametrize(
    ("status", "details", "outcome"),
    [
        ("OK", "Updated", "ok"),
        ("ok", "", "ok"),
        ("Partial", "Some attributes were not updated", "error"),
        ("Error", "User: b@x does not exists in the Organization", "not_found"),
        ("Error", "User: b@x does not exist in the Organization", "not_found"),
        ("Error", "User b@x doesn't exist", "not_found"),
        ("Error", "User not found", "not_found"),
        ("Error", "Permission denied for operator", "permission_denied"),
        ("Error", "Access DENIED", "permission_denied"),
        ("Error", "Operator is NOT AUTHORIZED to update users", "permission_denied"),
        ("Error", "Attribute On-Duty-DTG not found", "error"),
        ("Error", "Invalid value for On-Duty-DTG", "error"),
        ("", "", "error"),
    ],
)
def test_sync_answer_classification(status, details, outcome):
    item = {"LOGIN_ID": "b@x", ":SyncStatus": status, ":SyncDetails": details}

    result = classify_sync_answer(item)

    assert (result.login_id, result.outcome) == ("b@x", outcome)
    assert result.is_success == (outcome in ("ok", "not_found", "permission_denied"))


def test_not_found_user_is_logged_as_expected_at_info(api, make_client, caplog):
    add_tokens(api)
    api.add(
        responses.POST,
        SYNC_URL,
        json=[
            {
                "LOGIN_ID": "b@x",
                ":SyncStatus": "Error",
                "USER_ID": None,
                ":SyncDetails": "User: b@x does not exists in the Organization",
            }
        ],
    )

    with caplog.at_level(logging.INFO, logger="bobosync.athoc_client"):
        make_client().batch_update_duty_status([DutyUpdate("b@x", "")], "X")

    record = caplog.records[-1]
    assert (record.levelno, record.getMessage()) == (
        logging.INFO,
        "Expected: User b@x not found in AtHoc (will be treated as success)",
    )


# --- search -----------------------------------------------------------------

PEOPLE = [
    {"LOGIN_ID": f"p{index}", "Collar-Number": f"{index:05d}"} for index in range(5)
]


@pytest.mark.parametrize(
    ("mode", "offsets"), [("record", [0, 2, 4]), ("page", [0, 1, 2])]
)
def test_all_pages_are_read_in_either_offset_mode(api, make_client, mode, offsets):
    add_tokens(api)
    api.add_callback(responses.GET, SEARCH_URL, callback=search_server(PEOPLE, mode))

    read = make_client(
        search_offset_mode=mode, search_page_size=2
    ).get_all_users_with_attributes(["Collar-Number"])

    assert [
        int(call.request.params["Offset"]) for call in calls_to(api, SEARCH_URL)
    ] == offsets
    assert (
        calls_to(api, SEARCH_URL)[0].request.params["Fields"]
        == "LOGIN_ID,Collar-Number"
    )
    assert read.users == PEOPLE and read.total_users == 5 and read.complete


@pytest.mark.parametrize("mode", ["record", "page"])
def test_auto_mode_probes_offset_once_and_reads_every_page(api, make_client, mode):
    add_tokens(api)
    api.add_callback(responses.GET, SEARCH_URL, callback=search_server(PEOPLE, mode))
    client = make_client(search_offset_mode="auto", search_page_size=2)

    first = client.get_all_users_with_attributes(["Collar-Number"])
    second = client.get_all_users_with_attributes(["Collar-Number"])

    probes = [
        (call.request.params["Limit"], call.request.params["Offset"])
        for call in calls_to(api, SEARCH_URL)[:2]
    ]
    assert probes == [("4", "0"), ("2", "1")]
    assert len(calls_to(api, SEARCH_URL)) == 2 + 3 + 3
    assert first.users == second.users == PEOPLE and first.complete


def test_empty_page_before_total_gives_an_incomplete_read(api, make_client):
    add_tokens(api)
    api.add_callback(
        responses.GET, SEARCH_URL, callback=search_server(PEOPLE[:3], total=5)
    )

    read = make_client(search_page_size=2).get_all_users_with_attributes([])

    assert (len(read.users), read.total_users, read.complete) == (3, 5, False)


def test_null_empty_and_missing_attributes_all_read_as_none(api, make_client):
    add_tokens(api)
    api.add(
        responses.GET,
        SEARCH_URL,
        json={
            "TotalUsers": 3,
            "Users": [
                {"LOGIN_ID": "a", "On-Duty-DTG": None},
                {"LOGIN_ID": "b", "On-Duty-DTG": ""},
                {"LOGIN_ID": "c"},
            ],
        },
    )

    read = make_client().get_all_users_with_attributes(["On-Duty-DTG"])

    assert [user["On-Duty-DTG"] for user in read.users] == [None, None, None]


def test_quote_in_a_value_is_doubled_in_criteria(api, make_client):
    add_tokens(api)
    api.add(responses.GET, SEARCH_URL, json={"TotalUsers": 0, "Users": []})

    make_client().find_users_by_collar_ids(["O'Brien"])

    assert escape_criteria_value("O'Brien") == "O''Brien"
    assert criteria_eq("Collar-Number", "O'Brien") == "Collar-Number eq 'O''Brien'"
    criteria = calls_to(api, SEARCH_URL)[0].request.params["Criteria"]
    assert criteria == "(Collar-Number eq 'O''Brien')"


def test_digit_ids_match_stored_leading_zeros_only_in_canonical_form(api, make_client):
    add_tokens(api)
    api.add(
        responses.GET,
        SEARCH_URL,
        json={
            "TotalUsers": 3,
            "Users": [
                {"LOGIN_ID": "t.ashby", "Collar-Number": "00417"},
                {"LOGIN_ID": "x.other", "Collar-Number": "10417"},
                {"LOGIN_ID": "m.lindqvist", "Collar-Number": "00009"},
            ],
        },
    )

    found = make_client().find_users_by_collar_ids(["417", "0009 "])

    criteria = calls_to(api, SEARCH_URL)[0].request.params["Criteria"]
    assert criteria == "(Collar-Number ew '417' or Collar-Number ew '9')"
    assert [user["LOGIN_ID"] for user in found] == ["t.ashby", "m.lindqvist"]


def test_collar_lookup_asks_at_most_50_ids_per_search(api, make_client):
    add_tokens(api)
    api.add(responses.GET, SEARCH_URL, json={"TotalUsers": 0, "Users": []})

    make_client().find_users_by_collar_ids([f"A{index}" for index in range(120)])

    criteria = [call.request.params["Criteria"] for call in calls_to(api, SEARCH_URL)]
    assert [text.count(" eq ") for text in criteria] == [50, 50, 20]


def test_old_duty_status_is_cleared_with_empty_values(api, make_client):
    add_tokens(api)
    api.add(
        responses.GET,
        SEARCH_URL,
        json={
            "TotalUsers": 2,
            "Users": [
                {"LOGIN_ID": "t.ashby", "On-Duty-DTG": "13/03/2025 07:15:02"},
                {"LOGIN_ID": "gone", "On-Duty-DTG": "12/03/2025 07:15:02"},
            ],
        },
    )
    api.add(
        responses.POST,
        SYNC_URL,
        json=[
            {"LOGIN_ID": "t.ashby", ":SyncStatus": "OK", ":SyncDetails": "Updated"},
            {
                "LOGIN_ID": "gone",
                ":SyncStatus": "Error",
                ":SyncDetails": "User: gone does not exists in the Organization",
            },
        ],
    )

    cleared = make_client().clear_old_duty_status("On-Duty-DTG", 24)

    criteria = calls_to(api, SEARCH_URL)[0].request.params["Criteria"]
    assert criteria == "On-Duty-DTG pr and On-Duty-DTG lt '13/03/2025 23:00:00'"
    assert sync_bodies(api) == [
        [
            {"LOGIN_ID": "t.ashby", "On-Duty-DTG": ""},
            {"LOGIN_ID": "gone", "On-Duty-DTG": ""},
        ]
    ]
    assert cleared == 2


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "status", "is_outage"),
    [
        ({"status": 429}, 429, True),
        ({"status": 500}, 500, True),
        ({"status": 503}, 503, True),
        ({"status": 400, "json": {"message": "bad"}}, 400, False),
        ({"body": "<html>proxy login</html>"}, 502, True),
        ({"body": requests.exceptions.ConnectionError("refused")}, None, True),
        ({"body": requests.exceptions.ReadTimeout("read timed out")}, None, True),
    ],
)
def test_failures_become_api_errors_that_know_if_they_are_outages(
    api, make_client, answer, status, is_outage
):
    add_tokens(api)
    api.add(responses.POST, SYNC_URL, **answer)

    with pytest.raises(ApiError) as caught:
        make_client().batch_update_duty_status([DutyUpdate("t.ashby", "")], "X")

    assert (caught.value.status, caught.value.is_outage) == (status, is_outage)
    assert (caught.value.method, caught.value.path) == ("POST", SYNC_PATH)
    assert str(caught.value).startswith(f"POST {SYNC_PATH} failed: ")


def test_5xx_post_is_retried_a_bounded_number_of_times(api, make_client):
    add_tokens(api)
    api.add(responses.POST, SYNC_URL, status=503)

    with pytest.raises(ApiError):
        make_client(max_retries=3).batch_update_duty_status([DutyUpdate("a", "")], "X")

    assert len(calls_to(api, SYNC_URL)) == 4


def test_timeout_message_names_the_setting(api, make_client):
    add_tokens(api)
    api.add(responses.POST, SYNC_URL, body=requests.exceptions.ReadTimeout("timed out"))

    with pytest.raises(ApiError) as caught:
        make_client(request_timeout_seconds=7).batch_update_duty_status(
            [DutyUpdate("a", "")], "X"
        )

    assert str(caught.value) == (
        f"POST {SYNC_PATH} failed: no answer within REQUEST_TIMEOUT_SECONDS=7;"
        " is the server up and the network path open?"
    )


PROXY = f"http://svc:{PROXY_PASSWORD}@proxy.test:8080"
MASKED_PROXY = "http://svc:***@proxy.test:8080"


@pytest.mark.parametrize(
    ("failure", "proxy", "explanation"),
    [
        (
            requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] failed"),
            "",
            "the server's TLS certificate is not trusted (CERTIFICATE_VERIFY_FAILED):"
            " set SSL_CERT_PATH to your organisation's root CA certificate"
            " in PEM format",
        ),
        (
            requests.exceptions.SSLError("[SSL: TLSV1_ALERT_PROTOCOL_VERSION] alert"),
            "",
            "the server offers only TLS older than 1.2 (TLSV1_ALERT_PROTOCOL_VERSION);"
            " bobosync requires TLS 1.2 or newer: enable TLS 1.2 on the server",
        ),
        (
            requests.exceptions.SSLError("[SSL: WRONG_VERSION_NUMBER] wrong version"),
            PROXY,
            f"the proxy {MASKED_PROXY} did not work ([SSL: WRONG_VERSION_NUMBER] wrong"
            " version); check HTTPS_PROXY/HTTP_PROXY: most corporate proxies expect"
            " http:// even for HTTPS traffic, not https://",
        ),
        (
            requests.exceptions.ProxyError(f"Cannot connect to proxy {PROXY}"),
            PROXY,
            f"the proxy {MASKED_PROXY} did not work (Cannot connect to proxy"
            " http://svc:***@proxy.test:8080); check HTTPS_PROXY/HTTP_PROXY: most"
            " corporate proxies expect http:// even for HTTPS traffic, not https://",
        ),
    ],
)
def test_tls_and_proxy_failures_say_what_to_check(
    api, make_client, failure, proxy, explanation
):
    add_tokens(api)
    api.add(responses.POST, SYNC_URL, body=failure)

    with pytest.raises(ApiError) as caught:
        make_client(https_proxy=proxy).batch_update_duty_status(
            [DutyUpdate("a", "")], "X"
        )

    assert str(caught.value) == f"POST {SYNC_PATH} failed: {explanation}"
    assert caught.value.status is None and caught.value.is_outage


def test_secrets_are_in_no_log_record_or_error_text(api, make_client, caplog, clock):
    api.add(responses.POST, TOKEN_URL, json=token_answer(1))
    api.add(responses.POST, TOKEN_URL, json=token_answer(2))
    api.add(responses.POST, TOKEN_URL, status=400, json={"error": "invalid_grant"})
    api.add(responses.POST, SYNC_URL, status=401)
    api.add_callback(responses.POST, SYNC_URL, callback=echo_ok)
    client = make_client(
        https_proxy=f"http://svc:{PROXY_PASSWORD}@proxy.test:8080",
        no_proxy="athoc.example.test",
        log_level="DEBUG",
    )
    errors: list[str] = []

    with caplog.at_level(logging.DEBUG):
        client.batch_update_duty_status([DutyUpdate("t.ashby", "")], "On-Duty-DTG")
        clock.advance(4000)
        for _ in range(2):
            try:
                client.batch_update_duty_status([DutyUpdate("t.ashby", "")], "X")
            except ApiError as err:
                errors.append(str(err))

    texts = [record.getMessage() for record in caplog.records] + errors
    assert any('"LOGIN_ID": "t.ashby"' in text for text in texts)  # DEBUG answers
    assert len(errors) == 2
    assert [text for text in texts if any(secret in text for secret in SECRETS)] == []


def test_session_ignores_environment_proxies_and_uses_the_settings(
    api, make_client, monkeypatch
):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    add_tokens(api)
    direct = make_client()
    proxied = make_client(https_proxy="http://proxy.test:8080")

    direct.authenticate()
    proxied.authenticate()

    assert direct.session.trust_env is False
    assert api.calls[0].request.req_kwargs["proxies"] == {}
    assert api.calls[1].request.req_kwargs["proxies"] == {
        "https": "http://proxy.test:8080"
    }


@pytest.mark.parametrize(
    ("host", "no_proxy", "bypassed"),
    [
        ("athoc.example.org", "", False),
        ("athoc.example.org", "*", True),
        ("athoc.example.org", "athoc.example.org", True),
        ("ATHOC.example.org", "athoc.EXAMPLE.org", True),
        ("athoc.example.org", "example.org", True),
        ("athoc.example.org", ".example.org", True),
        ("athoc.example.org", "*.example.org", True),
        ("example.org", ".example.org", True),
        ("badexample.org", "example.org", False),
        ("athoc.example.org", "other.org, example.org:443", True),
        ("athoc.example.org", "other.org example.com", False),
        ("127.0.0.1", "127.0.0.1,localhost", True),
        ("127.0.0.2", "127.0.0.1", False),
        ("10.1.2.3", "10.0.0.0/8", True),
        ("::1", "[::1]", True),
        ("localhost", "127.0.0.1", False),
    ],
)
def test_no_proxy_matching(host, no_proxy, bypassed):
    assert is_proxy_bypassed(host, no_proxy) is bypassed


def test_no_proxy_host_gets_no_proxy(tmp_path):
    settings = make_test_settings(
        tmp_path,
        athoc_server_url="https://127.0.0.1:8443",
        http_proxy="http://p:8080",
        https_proxy="http://p:8080",
        no_proxy="127.0.0.1,localhost",
    )

    assert select_proxies(settings.athoc_server_url, settings) == {}
    assert select_proxies("https://athoc.test", settings) == {
        "http": "http://p:8080",
        "https": "http://p:8080",
    }


def test_runs_as_a_top_level_module_from_inside_the_package_folder():
    package_folder = Path(__file__).resolve().parent.parent / "bobosync"
    environment = {
        key: value for key, value in os.environ.items() if key != "PYTHONPATH"
    }

    finished = subprocess.run(
        [sys.executable, "-c", "from athoc_client import AtHocClient; print('ok')"],
        cwd=package_folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert (finished.returncode, finished.stdout.strip()) == (0, "ok"), finished.stderr


# --- real sockets: Retry-After, timeouts, TLS ---------------------------------


Answer = tuple[int, dict[str, str], Any]


class ScriptedServer:
    """HTTP(S) on 127.0.0.1 answering requests with scripted answers in
    order (the last one repeats); records method, path and arrival time."""

    def __init__(self, answers: list[Answer], context: ssl.SSLContext | None = None):
        self.answers = answers
        self.seen: list[tuple[str, str, float]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        if context is not None:
            self.server.socket = context.wrap_socket(
                self.server.socket, server_side=True
            )
        scheme = "https" if context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.seen.append((self.command, self.path, time.monotonic()))
                index = min(len(outer.seen), len(outer.answers)) - 1
                status, headers, body = outer.answers[index]
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {
                    **headers,
                    "Content-Length": str(len(data)),
                }.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(answers: list[Answer], context: ssl.SSLContext | None = None):
        servers.append(ScriptedServer(answers, context))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


SYNC_OK: Answer = (
    200,
    {},
    [{"LOGIN_ID": "t.ashby", ":SyncStatus": "OK", ":SyncDetails": "Updated"}],
)
TOKEN_OK: Answer = (200, {}, token_answer())


def test_retry_after_is_waited_before_the_same_post_is_sent_again(serve, make_client):
    server = serve([TOKEN_OK, (429, {"Retry-After": "1"}, {}), SYNC_OK])
    client = make_client(athoc_server_url=server.url)

    results = client.batch_update_duty_status([DutyUpdate("t.ashby", "")], "X")

    assert results == [SyncResult("t.ashby", "ok", "Updated")]
    (_, _, refused_at), (_, _, repeated_at) = server.seen[1:]
    assert repeated_at - refused_at >= 0.9


def test_retry_after_longer_than_allowed_is_not_waited(serve, make_client, caplog):
    server = serve([TOKEN_OK, (429, {"Retry-After": "86400"}, {})])
    client = make_client(athoc_server_url=server.url)
    started = time.monotonic()

    with caplog.at_level(logging.WARNING), pytest.raises(ApiError) as caught:
        client.batch_update_duty_status([DutyUpdate("t.ashby", "")], "X")

    assert time.monotonic() - started < 5
    assert len(server.seen) == 2
    assert (caught.value.status, caught.value.retry_after_seconds) == (429, 86400)
    assert caught.value.is_outage
    assert caplog.messages == [
        "AtHoc asked to wait 86400 s, more than the 120 s allowed; not waiting:"
        f" method=POST path={SYNC_PATH} status=429"
    ]


def test_server_that_never_answers_ends_within_the_timeout(make_client):
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    started = time.monotonic()
    try:
        with pytest.raises(AuthError) as caught:
            make_client(
                athoc_server_url=url, request_timeout_seconds=0.2, max_retries=1
            ).authenticate()
    finally:
        listener.close()

    assert time.monotonic() - started < 3
    assert caught.value.status is None
    assert "no answer within REQUEST_TIMEOUT_SECONDS=0.2" in str(caught.value)


def test_refused_connection_says_to_check_the_server_url(make_client):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"

    with pytest.raises(AuthError) as caught:
        make_client(athoc_server_url=url).authenticate()

    assert caught.value.status is None
    assert "is ATHOC_SERVER_URL right and the server up?" in str(caught.value)


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(serve, certificate_authority) -> ScriptedServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(context)
    return serve([TOKEN_OK, SYNC_OK], context)


def test_private_ca_in_ssl_cert_path_is_trusted(
    tls_server, make_client, certificate_authority, tmp_path
):
    ca_file = tmp_path / "root-ca.pem"
    certificate_authority.cert_pem.write_to_path(str(ca_file))
    client = make_client(athoc_server_url=tls_server.url, ssl_cert_path=ca_file)

    results = client.batch_update_duty_status([DutyUpdate("t.ashby", "")], "X")

    assert results == [SyncResult("t.ashby", "ok", "Updated")]


def test_unknown_ca_names_ssl_cert_path(tls_server, make_client):
    with pytest.raises(AuthError) as caught:
        make_client(athoc_server_url=tls_server.url, max_retries=0).authenticate()

    assert caught.value.status is None
    assert (
        "(CERTIFICATE_VERIFY_FAILED): set SSL_CERT_PATH to your organisation's"
        " root CA certificate in PEM format" in str(caught.value)
    )


def test_disabled_verification_connects_without_insecure_warnings(
    tls_server, make_client, recwarn
):
    make_client(athoc_server_url=tls_server.url, disable_ssl_verify=True).authenticate()

    assert [w for w in recwarn if "Unverified HTTPS" in str(w.message)] == []


def test_ssl_context_requires_tls_12_without_a_maximum(tmp_path):
    context = build_ssl_context(make_test_settings(tmp_path))

    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.MAXIMUM_SUPPORTED
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_secrets_are_in_no_transport_debug_log(serve, make_client, caplog):
    server = serve([TOKEN_OK, (401, {}, {}), (200, {}, token_answer(2)), SYNC_OK])
    client = make_client(
        athoc_server_url=server.url,
        https_proxy=PROXY,
        http_proxy=PROXY,
        no_proxy="127.0.0.1",
    )

    with caplog.at_level(logging.DEBUG):
        client.batch_update_duty_status([DutyUpdate("t.ashby", "")], "X")

    assert any(record.name.startswith("urllib3") for record in caplog.records)
    texts = [record.getMessage() for record in caplog.records]
    assert [text for text in texts if any(secret in text for secret in SECRETS)] == []
