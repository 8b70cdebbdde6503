"""Tests of the AtHoc simulator, driven over real HTTP with requests."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests
import trustme

from bobosync import simulator as simulator_module
from bobosync.clock import ManualClock
from bobosync.simulator import (
    PERMISSION_DENIED_DETAILS,
    AtHocSimulator,
    Combination,
    Comparison,
    CriteriaError,
    demo_users,
    parse_criteria,
)

CASE_USERS = [
    {"LOGIN_ID": "t.ashby", "Collar-Number": "00417", "On-Duty-DTG": None},
    {"LOGIN_ID": "r.okafor", "Collar-Number": "04170", "On-Duty-DTG": None},
    {"LOGIN_ID": "m.lindqvist", "Collar-Number": "00009", "On-Duty-DTG": None},
    {"LOGIN_ID": "s.varga", "Collar-Number": "00422", "On-Duty-DTG": None},
    {"LOGIN_ID": "k.moreau", "Collar-Number": "01234", "On-Duty-DTG": None},
    {"LOGIN_ID": "p.nandi", "Collar-Number": "00088", "On-Duty-DTG": None},
]
SORTED_LOGINS = sorted(user["LOGIN_ID"] for user in CASE_USERS)
TOKEN_PATH = "/AuthServices/Auth/connect/token"
SEARCH_PATH = "/api/v2/orgs/BOBO/users/search/basic"
SYNC_PATH = "/api/v2/orgs/BOBO/users/SyncByCommonNames"
SYNC_QUERY = "?syncExistingUsersOnly=true&AllowPartialUpdate=false"
FULL_SCOPE = "openid profile athoc.iws.web.api offline_access"
TIMEOUT_SECONDS = 5


def password_form(**overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "password",
        "client_id": "bobosync-demo",
        "client_secret": "demo-client-secret",
        "username": "svc_bobo_sync",
        "password": "demo-password",
        "scope": FULL_SCOPE,
        "acr_values": "tenant:BOBO",
    }
    form.update(overrides)
    return form


def refresh_form(refresh_token: str) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": "bobosync-demo",
        "client_secret": "demo-client-secret",
    }


def post_token(sim: AtHocSimulator, form: dict[str, str]) -> requests.Response:
    return requests.post(sim.url + TOKEN_PATH, data=form, timeout=TIMEOUT_SECONDS)


def fetch_token(sim: AtHocSimulator) -> str:
    answer = post_token(sim, password_form())
    assert answer.status_code == 200
    return str(answer.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def search(
    sim: AtHocSimulator, token: str, *, path: str = SEARCH_PATH, **params: Any
) -> requests.Response:
    return requests.get(
        sim.url + path, params=params, headers=bearer(token), timeout=TIMEOUT_SECONDS
    )


def sync(
    sim: AtHocSimulator, token: str, items: Any, query: str = SYNC_QUERY
) -> requests.Response:
    return requests.post(
        sim.url + SYNC_PATH + query,
        json=items,
        headers=bearer(token),
        timeout=TIMEOUT_SECONDS,
    )


def logins_of(answer: requests.Response) -> list[str]:
    return [user["LOGIN_ID"] for user in answer.json()["Users"]]


@pytest.fixture
def sim() -> Iterator[AtHocSimulator]:
    with AtHocSimulator(CASE_USERS) as started:
        yield started


@pytest.fixture
def token(sim: AtHocSimulator) -> str:
    return fetch_token(sim)


# --- token endpoint


def test_password_grant_answers_bearer_token_with_refresh_token(sim):
    answer = post_token(sim, password_form())

    assert answer.status_code == 200
    payload = answer.json()
    assert payload["token_type"] == "Bearer"
    assert payload["expires_in"] == 3600
    assert payload["access_token"] and payload["refresh_token"]


def test_password_grant_without_offline_access_has_no_refresh_token(sim):
    answer = post_token(sim, password_form(scope="openid profile athoc.iws.web.api"))

    assert answer.status_code == 200
    assert "refresh_token" not in answer.json()


def test_token_path_is_matched_in_any_case(sim):
    answer = requests.post(
        sim.url + TOKEN_PATH.lower(), data=password_form(), timeout=TIMEOUT_SECONDS
    )

    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"client_id": "someone-else"}, "invalid_client"),
        ({"client_secret": "wrong-secret"}, "invalid_client"),
        ({"username": "administrator"}, "invalid_grant"),
        ({"password": "wrong-password"}, "invalid_grant"),
        ({"acr_values": "tenant:OTHER"}, "invalid_grant"),
        ({"acr_values": ""}, "invalid_grant"),
        ({"scope": "openid profile"}, "invalid_scope"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
    ],
)
def test_bad_password_grant_answers_400_with_oauth_error(sim, overrides, error):
    answer = post_token(sim, password_form(**overrides))

    assert answer.status_code == 400
    assert answer.json()["error"] == error


def test_refresh_grant_rotates_and_spends_the_old_refresh_token(sim):
    first = post_token(sim, password_form()).json()["refresh_token"]

    renewed = post_token(sim, refresh_form(first))
    reused = post_token(sim, refresh_form(first))

    assert renewed.status_code == 200
    second = renewed.json()["refresh_token"]
    assert second != first
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert post_token(sim, refresh_form(second)).status_code == 200


def test_refresh_grant_checks_the_client_secret(sim):
    refresh_token = post_token(sim, password_form()).json()["refresh_token"]
    form = refresh_form(refresh_token) | {"client_secret": "wrong"}

    answer = post_token(sim, form)

    assert answer.json()["error"] == "invalid_client"


def test_rejected_refresh_tokens_answer_invalid_grant(sim):
    refresh_token = post_token(sim, password_form()).json()["refresh_token"]
    sim.reject_refresh_tokens()

    answer = post_token(sim, refresh_form(refresh_token))

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"


def test_changed_password_refuses_the_old_one(sim):
    sim.set_password("NewPass-2025")

    old = post_token(sim, password_form())
    new = post_token(sim, password_form(password="NewPass-2025"))

    assert old.json()["error"] == "invalid_grant"
    assert new.status_code == 200


def test_token_grants_record_only_the_grant_types(sim):
    refresh_token = post_token(sim, password_form()).json()["refresh_token"]
    post_token(sim, refresh_form(refresh_token))

    assert sim.token_grants == ["password", "refresh_token"]


# --- authorization


def test_token_expires_after_its_lifetime_by_the_injected_clock():
    clock = ManualClock(datetime(2025, 3, 14, 22, 0, 0))
    with AtHocSimulator(CASE_USERS, clock=clock, token_lifetime_seconds=60) as sim:
        token = fetch_token(sim)
        clock.advance(59)
        before_expiry = search(sim, token, Limit=1)
        clock.advance(1)
        after_expiry = search(sim, token, Limit=1)

    assert before_expiry.status_code == 200
    assert after_expiry.status_code == 401
    assert sim.unauthorized_count == 1


def test_revoked_tokens_answer_401_and_a_new_token_works(sim, token):
    sim.revoke_tokens()

    assert search(sim, token).status_code == 401
    assert search(sim, fetch_token(sim)).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}],
)
def test_call_without_a_valid_bearer_token_answers_401(sim, headers):
    answer = requests.get(sim.url + SEARCH_PATH, headers=headers, timeout=5)

    assert answer.status_code == 401
    assert sim.unauthorized_count == 1


def test_wrong_org_code_answers_404(sim, token):
    answer = search(sim, token, path="/api/v2/orgs/OTHER/users/search/basic")

    assert answer.status_code == 404


# --- user search


def test_search_answers_login_first_then_fields_ordered_by_login(sim, token):
    answer = search(sim, token, Fields="LOGIN_ID,Collar-Number,On-Duty-DTG")

    payload = answer.json()
    assert payload["TotalUsers"] == 6
    assert payload["FetchedRecords"] == 6
    assert logins_of(answer) == SORTED_LOGINS
    assert payload["Users"][0] == {
        "LOGIN_ID": "k.moreau",
        "Collar-Number": "01234",
        "On-Duty-DTG": None,
    }
    assert list(payload["Users"][0]) == ["LOGIN_ID", "Collar-Number", "On-Duty-DTG"]


@pytest.mark.parametrize(
    ("offset_mode", "limit", "offset", "expected"),
    [
        ("record", 4, 0, SORTED_LOGINS[0:4]),
        ("record", 2, 1, SORTED_LOGINS[1:3]),
        ("record", 4, 4, SORTED_LOGINS[4:6]),
        ("page", 4, 0, SORTED_LOGINS[0:4]),
        ("page", 2, 1, SORTED_LOGINS[2:4]),
        ("page", 4, 1, SORTED_LOGINS[4:6]),
        ("page", 4, 2, []),
    ],
)
def test_offset_counts_records_or_pages(offset_mode, limit, offset, expected):
    with AtHocSimulator(CASE_USERS, offset_mode=offset_mode) as sim:
        answer = search(sim, fetch_token(sim), Limit=limit, Offset=offset)

    assert logins_of(answer) == expected
    assert answer.json()["TotalUsers"] == 6
    assert answer.json()["FetchedRecords"] == len(expected)


def test_limit_above_max_page_size_is_cut_silently():
    with AtHocSimulator(CASE_USERS, max_page_size=4) as sim:
        answer = search(sim, fetch_token(sim), Limit=1000, Offset=0)

    assert logins_of(answer) == SORTED_LOGINS[:4]
    assert answer.json()["TotalUsers"] == 6


def test_search_queries_are_recorded(sim, token):
    search(sim, token, Criteria="LOGIN_ID eq 'x'", Fields="LOGIN_ID", Limit=5)

    assert sim.search_queries == [
        {
            "Criteria": "LOGIN_ID eq 'x'",
            "Fields": "LOGIN_ID",
            "Limit": "5",
            "Offset": None,
        }
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"Criteria": "Collar-Number eq"}, "Invalid search: expected a quoted value"),
        ({"Criteria": "Nickname eq 'x'"}, "Invalid search: unknown attribute"),
        ({"Limit": "0"}, "Invalid search: Limit must be a whole number >= 1"),
        ({"Offset": "-1"}, "Invalid search: Offset must be a whole number >= 0"),
    ],
)
def test_unreadable_search_answers_400_with_message(sim, token, params, message):
    answer = search(sim, token, **params)

    assert answer.status_code == 400
    assert answer.json()["Message"].startswith(message)


# --- the criteria language


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("", None),
        ("   ", None),
        ("Collar-Number eq '00417'", Comparison("Collar-Number", "eq", "00417")),
        ("LOGIN_ID SW 't.'", Comparison("LOGIN_ID", "sw", "t.")),
        ("On-Duty-DTG pr", Comparison("On-Duty-DTG", "pr", None)),
        ("On-Duty-DTG NPR", Comparison("On-Duty-DTG", "npr", None)),
        ("Surname eq 'O''Brien'", Comparison("Surname", "eq", "O'Brien")),
        ("Surname eq ''''", Comparison("Surname", "eq", "'")),
        ("Surname eq ''", Comparison("Surname", "eq", "")),
        ("Note co 'a (b) and c'", Comparison("Note", "co", "a (b) and c")),
        (
            # A value that tries to end its quotes early stays one value.
            "Collar-Number eq 'x'' or LOGIN_ID ne '''",
            Comparison("Collar-Number", "eq", "x' or LOGIN_ID ne '"),
        ),
        (
            "On-Duty-DTG pr and On-Duty-DTG lt '13/03/2025 23:00:00'",
            Combination(
                "and",
                (
                    Comparison("On-Duty-DTG", "pr", None),
                    Comparison("On-Duty-DTG", "lt", "13/03/2025 23:00:00"),
                ),
            ),
        ),
        (
            "a eq '1' or b eq '2' AND c eq '3'",
            Combination(
                "or",
                (
                    Comparison("a", "eq", "1"),
                    Combination(
                        "and", (Comparison("b", "eq", "2"), Comparison("c", "eq", "3"))
                    ),
                ),
            ),
        ),
        (
            "(a eq '1' or b eq '2') and c eq '3'",
            Combination(
                "and",
                (
                    Combination(
                        "or", (Comparison("a", "eq", "1"), Comparison("b", "eq", "2"))
                    ),
                    Comparison("c", "eq", "3"),
                ),
            ),
        ),
        (
            "(a eq '1' or a eq '2' or a eq '3')",
            Combination(
                "or",
                (
                    Comparison("a", "eq", "1"),
                    Comparison("a", "eq", "2"),
                    Comparison("a", "eq", "3"),
                ),
            ),
        ),
    ],
)
def test_parse_criteria(criteria, expected):
    assert parse_criteria(criteria) == expected


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        ("a eq 'x", "unterminated quoted value at position 5"),
        ("a eq", "expected a quoted value after 'eq' at position 4, found the end"),
        ("a is 'x'", "expected an operator after 'a' at position 2, found 'is'"),
        ("a eq x", "expected a quoted value after 'eq' at position 5, found 'x'"),
        ("a pr 'x'", "expected 'and', 'or' or the end at position 5, found 'x'"),
        (
            "a eq 'x' b eq 'y'",
            "expected 'and', 'or' or the end at position 9, found 'b'",
        ),
        ("(a eq 'x'", "expected ')' at position 9, found the end"),
        ("a eq 'x')", "expected 'and', 'or' or the end at position 8, found ')'"),
        (
            "a eq 'x' and",
            "expected an attribute name or '(' at position 12, found the end",
        ),
        (
            "and a eq 'x'",
            "expected an attribute name or '(' at position 0, found 'and'",
        ),
        ("'x' eq a", "expected an attribute name or '(' at position 0, found 'x'"),
    ],
)
def test_unreadable_criteria_is_refused_with_its_place(criteria, message):
    with pytest.raises(CriteriaError) as caught:
        parse_criteria(criteria)

    assert str(caught.value) == message


@pytest.fixture
def dated_sim(sim) -> AtHocSimulator:
    sim.add_user("a.obrien", **{"Collar-Number": "O'Brien", "On-Duty-DTG": ""})
    dates = {
        "t.ashby": "14/03/2025 07:15:02",
        "r.okafor": "12/03/2025 23:59:59",
        "m.lindqvist": "02/01/2025 08:00:00",
    }
    token = fetch_token(sim)
    items = [{"LOGIN_ID": login, "On-Duty-DTG": when} for login, when in dates.items()]
    assert sync(sim, token, items).status_code == 200
    return sim


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("Collar-Number eq '00417'", ["t.ashby"]),
        ("collar-number eq '00417'", "400"),
        ("Collar-Number EQ '00417'", ["t.ashby"]),
        ("Collar-Number ne '00417'", ["a.obrien", "k.moreau", "m.lindqvist",
                                     "p.nandi", "r.okafor", "s.varga"]),
        ("Collar-Number sw '004'", ["s.varga", "t.ashby"]),
        ("Collar-Number ew '17'", ["t.ashby"]),
        ("Collar-Number co '17'", ["r.okafor", "t.ashby"]),
        ("LOGIN_ID nc '.'", []),
        ("LOGIN_ID eq 'T.ASHBY'", ["t.ashby"]),
        ("Collar-Number eq 'O''Brien'", ["a.obrien"]),
        ("Collar-Number eq 'x'' or LOGIN_ID ne '''", []),
        ("On-Duty-DTG pr", ["m.lindqvist", "r.okafor", "t.ashby"]),
        ("On-Duty-DTG npr", ["a.obrien", "k.moreau", "p.nandi", "s.varga"]),
        ("On-Duty-DTG pr and On-Duty-DTG lt '13/03/2025 23:00:00'",
         ["m.lindqvist", "r.okafor"]),
        ("On-Duty-DTG gt '13/03/2025 23:00:00'", ["t.ashby"]),
        ("(Collar-Number eq '00009' or Collar-Number eq '00088') and "
         "On-Duty-DTG npr", ["p.nandi"]),
        ("Collar-Number eq '00009' or Collar-Number eq '00088' and "
         "On-Duty-DTG npr", ["m.lindqvist", "p.nandi"]),
        ("On-Duty-DTG eq '14/03/2025 07:15:02'", "400"),
        ("Collar-Number lt '00417'", "400"),
        ("On-Duty-DTG lt 'D:-1'", "400"),
        ("On-Duty-DTG lt '2025-03-13 23:00:00'", "400"),
    ],
)  # fmt: skip
def test_search_criteria_select_users(dated_sim, criteria, expected):
    answer = search(dated_sim, fetch_token(dated_sim), Criteria=criteria)

    if expected == "400":
        assert answer.status_code == 400
    else:
        assert logins_of(answer) == expected
        assert answer.json()["TotalUsers"] == len(expected)


# --- SyncByCommonNames


def test_sync_updates_known_user_and_answers_ok(sim, token):
    item = {"LOGIN_ID": "t.ashby", "On-Duty-DTG": "14/03/2025 07:15:02"}

    answer = sync(sim, token, [item])

    assert answer.status_code == 200
    assert answer.json() == [
        item | {":SyncStatus": "OK", ":SyncDetails": "Updated", "USER_ID": 2060001}
    ]
    assert sim.attribute("t.ashby", "On-Duty-DTG") == "14/03/2025 07:15:02"


def test_sync_with_empty_string_clears_the_value(sim, token):
    sync(sim, token, [{"LOGIN_ID": "t.ashby", "On-Duty-DTG": "14/03/2025 07:15:02"}])

    sync(sim, token, [{"LOGIN_ID": "t.ashby", "On-Duty-DTG": ""}])

    assert sim.attribute("t.ashby", "On-Duty-DTG") is None


def test_sync_matches_login_id_in_any_case_and_echoes_it(sim, token):
    answer = sync(sim, token, [{"LOGIN_ID": "T.Ashby", "On-Duty-DTG": ""}])

    assert answer.json()[0]["LOGIN_ID"] == "T.Ashby"
    assert answer.json()[0][":SyncStatus"] == "OK"


def test_sync_of_unknown_user_answers_the_seen_not_found_text(sim, token):
    answer = sync(sim, token, [{"LOGIN_ID": "x.nobody", "On-Duty-DTG": ""}])

    assert answer.json() == [
        {
            "LOGIN_ID": "x.nobody",
            "On-Duty-DTG": "",
            ":SyncStatus": "Error",
            ":SyncDetails": "User: x.nobody does not exists in the Organization",
            "USER_ID": None,
        }
    ]
    assert sim.created_users == []


@pytest.mark.parametrize(
    "query", ["", "?AllowPartialUpdate=false", "?syncExistingUsersOnly=false"]
)
def test_sync_without_existing_users_only_creates_the_user(sim, token, query):
    answer = sync(sim, token, [{"LOGIN_ID": "x.new", "On-Duty-DTG": ""}], query)

    assert answer.json()[0][":SyncStatus"] == "OK"
    assert answer.json()[0][":SyncDetails"] == "Created"
    assert sim.created_users == ["x.new"]
    assert "x.new" in sim.logins()


@pytest.mark.parametrize(
    ("item", "details"),
    [
        (
            {"LOGIN_ID": "t.ashby", "On-Duty-DTG": "2025-03-14 07:15:02"},
            "Attribute On-Duty-DTG: invalid value '2025-03-14 07:15:02' "
            "for a Date Time",
        ),
        (
            {"LOGIN_ID": "t.ashby", "On-Duty-DTG": 20250314},
            "Attribute On-Duty-DTG: invalid value 20250314",
        ),
        (
            {"LOGIN_ID": "t.ashby", "Duty-Start": ""},
            "Attribute Duty-Start does not exist in the Organization",
        ),
        ({"On-Duty-DTG": ""}, "LOGIN_ID is required"),
    ],
)
def test_sync_of_bad_item_answers_error_and_stores_nothing(sim, token, item, details):
    answer = sync(sim, token, [item])

    assert answer.json()[0][":SyncStatus"] == "Error"
    assert answer.json()[0][":SyncDetails"] == details
    assert sim.attribute("t.ashby", "On-Duty-DTG") is None


def test_sync_body_that_is_not_an_array_answers_400(sim, token):
    answer = sync(sim, token, {"LOGIN_ID": "t.ashby"})

    assert answer.status_code == 400


def test_sync_calls_and_query_params_are_recorded(sim, token):
    sync(sim, token, [{"LOGIN_ID": "t.ashby", "On-Duty-DTG": "14/03/2025 07:15:02"}])
    sync(sim, token, [{"LOGIN_ID": "t.ashby", "On-Duty-DTG": ""}])
    sync(sim, token, [{"LOGIN_ID": "x.nobody", "On-Duty-DTG": ""}])

    assert len(sim.sync_calls) == 3
    assert sim.sync_query_params[0] == {
        "syncExistingUsersOnly": "true",
        "AllowPartialUpdate": "false",
    }
    assert sim.sent_updates() == {"t.ashby": "", "x.nobody": ""}

    sim.reset_records()

    assert (sim.sync_calls, sim.sent_updates(), sim.token_grants) == ([], {}, [])


# --- fault switches


def test_fail_next_answers_the_status_then_serves_normally(sim, token):
    sim.fail_next("sync", 429, headers={"Retry-After": "1"})
    items = [{"LOGIN_ID": "t.ashby", "On-Duty-DTG": ""}]

    first = sync(sim, token, items)
    second = sync(sim, token, items)

    assert first.status_code == 429
    assert first.headers["Retry-After"] == "1"
    assert second.status_code == 200
    assert len(sim.sync_calls) == 2


def test_fail_next_with_count_and_body(sim, token):
    sim.fail_next("search", 503, count=2, body={"Message": "busy"})

    statuses = [search(sim, token).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    sim.fail_next("search", 502, body="Bad Gateway")
    assert search(sim, token).text == "Bad Gateway"


def test_fail_always_until_cleared_and_any_covers_token(sim):
    sim.fail_always("any", 500)

    assert post_token(sim, password_form()).status_code == 500
    assert post_token(sim, password_form()).status_code == 500

    sim.clear_faults()
    assert post_token(sim, password_form()).status_code == 200


def test_fault_switch_refuses_unknown_endpoint_name(sim):
    with pytest.raises(ValueError, match="endpoint must be one of"):
        sim.fail_next("users", 500)


def test_malformed_json_next_answers_200_with_truncated_json(sim, token):
    sim.malformed_json_next("search")

    answer = search(sim, token)

    assert answer.status_code == 200
    with pytest.raises(ValueError):
        answer.json()
    assert search(sim, token).json()["TotalUsers"] == 6


def test_delay_makes_a_short_client_timeout_expire(sim, token):
    sim.delay("search", 2)

    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(sim.url + SEARCH_PATH, headers=bearer(token), timeout=0.2)
    sim.clear_faults()
    assert search(sim, token).status_code == 200


def test_omitted_users_are_applied_but_missing_from_the_answer(sim, token):
    sim.omit_from_sync_answer(["t.ashby"])
    items = [
        {"LOGIN_ID": "t.ashby", "On-Duty-DTG": "14/03/2025 07:15:02"},
        {"LOGIN_ID": "r.okafor", "On-Duty-DTG": "14/03/2025 07:20:10"},
    ]

    answer = sync(sim, token, items)

    assert [item["LOGIN_ID"] for item in answer.json()] == ["r.okafor"]
    assert sim.attribute("t.ashby", "On-Duty-DTG") == "14/03/2025 07:15:02"


def test_omitted_users_with_apply_false_are_not_stored(sim, token):
    sim.omit_from_sync_answer(["t.ashby"], apply=False)

    answer = sync(
        sim, token, [{"LOGIN_ID": "t.ashby", "On-Duty-DTG": "14/03/2025 07:15:02"}]
    )

    assert answer.json() == []
    assert sim.attribute("t.ashby", "On-Duty-DTG") is None


def test_empty_page_at_answers_no_users_but_keeps_total(sim, token):
    sim.empty_page_at(1)

    pages = [search(sim, token, Limit=2, Offset=offset).json() for offset in (0, 2, 4)]

    assert [page["FetchedRecords"] for page in pages] == [2, 0, 2]
    assert pages[1] == {"Users": [], "TotalUsers": 6, "FetchedRecords": 0}


def test_permission_denied_for_answers_error_and_stores_nothing(sim, token):
    sim.permission_denied_for(["T.ASHBY"])

    answer = sync(
        sim, token, [{"LOGIN_ID": "t.ashby", "On-Duty-DTG": "14/03/2025 07:15:02"}]
    )

    assert answer.json()[0][":SyncStatus"] == "Error"
    assert answer.json()[0][":SyncDetails"] == PERMISSION_DENIED_DETAILS
    assert answer.json()[0]["USER_ID"] == 2060001
    assert sim.attribute("t.ashby", "On-Duty-DTG") is None


def test_sync_error_for_answers_that_detail(sim, token):
    sim.sync_error_for("r.okafor", "Attribute is locked by a rule")

    answer = sync(sim, token, [{"LOGIN_ID": "r.okafor", "On-Duty-DTG": ""}])

    assert answer.json()[0][":SyncStatus"] == "Error"
    assert answer.json()[0][":SyncDetails"] == "Attribute is locked by a rule"


def test_total_users_override_is_reported(sim, token):
    sim.set_total_users_override(9)

    answer = search(sim, token)

    assert answer.json()["TotalUsers"] == 9
    assert answer.json()["FetchedRecords"] == 6


@pytest.mark.parametrize(
    ("mode", "endpoint", "error"),
    [
        ("no_answer", "search", requests.exceptions.ReadTimeout),
        ("stall_body", "search", requests.exceptions.ConnectionError),
        ("no_answer", "token", requests.exceptions.ReadTimeout),
    ],
)
def test_hang_ends_with_client_timeout_and_stop_returns_at_once(mode, endpoint, error):
    sim = AtHocSimulator(CASE_USERS).start()
    token = fetch_token(sim)
    sim.hang(endpoint, mode)
    try:
        with pytest.raises(error):
            if endpoint == "token":
                requests.post(sim.url + TOKEN_PATH, data=password_form(), timeout=0.3)
            else:
                requests.get(sim.url + SEARCH_PATH, headers=bearer(token), timeout=0.3)
    finally:
        started = time.monotonic()
        sim.stop()

    assert time.monotonic() - started < 1


def test_clear_faults_ends_a_hang_and_serving_resumes(sim, token):
    sim.hang("search", "no_answer")
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(sim.url + SEARCH_PATH, headers=bearer(token), timeout=0.3)

    sim.clear_faults()

    assert search(sim, token).status_code == 200


# --- life cycle, https, quietness


def test_stop_returns_quickly_with_a_keep_alive_connection_open():
    sim = AtHocSimulator(CASE_USERS).start()
    session = requests.Session()
    session.post(sim.url + TOKEN_PATH, data=password_form(), timeout=5)

    started = time.monotonic()
    sim.stop()

    assert time.monotonic() - started < 1
    with pytest.raises(requests.exceptions.ConnectionError):
        session.post(sim.url + TOKEN_PATH, data=password_form(), timeout=5)


def test_url_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="not started"):
        _ = AtHocSimulator().url


def test_add_user_refuses_an_existing_login_in_any_case(sim):
    with pytest.raises(ValueError, match="exists already"):
        sim.add_user("T.Ashby", **{"Collar-Number": "1"})


def test_https_with_a_private_ca(tmp_path):
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))

    with AtHocSimulator(CASE_USERS, ssl_context=context) as sim:
        trusted = requests.post(
            sim.url + TOKEN_PATH, data=password_form(), verify=str(ca_path), timeout=5
        )
        with pytest.raises(requests.exceptions.SSLError):
            requests.post(sim.url + TOKEN_PATH, data=password_form(), timeout=5)

    assert sim.url.startswith("https://127.0.0.1:")
    assert trusted.status_code == 200


def test_simulator_prints_nothing_per_request(sim, token, capfd):
    search(sim, token)
    requests.get(sim.url + "/nowhere", timeout=5)
    sync(sim, token, [{"LOGIN_ID": "t.ashby", "On-Duty-DTG": ""}])

    assert capfd.readouterr() == ("", "")


# --- demo users and the command line


def test_demo_users_are_deterministic_and_realistic():
    users = demo_users(500)

    assert users == demo_users(500)
    assert users[0] == {
        "LOGIN_ID": "amira.abbott",
        "Collar-Number": "00101",
        "On-Duty-DTG": None,
    }
    assert users[1]["Collar-Number"] == "00102"
    assert len({user["LOGIN_ID"] for user in users}) == 500
    assert all(user["LOGIN_ID"].count(".") == 1 for user in users)


def test_main_prints_url_and_env_lines_then_stops_on_ctrl_c(monkeypatch, capsys):
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(simulator_module.time, "sleep", interrupt)

    exit_code = simulator_module.main(["--port", "0", "--users", "3"])

    output = capsys.readouterr().out
    assert exit_code == 0
    assert "ATHOC_SERVER_URL=http://127.0.0.1:" in output
    for line in ("ORG_CODE=BOBO", "CLIENT_ID=bobosync-demo", "APIUSER=svc_bobo_sync"):
        assert line in output.splitlines()


def test_main_refuses_a_certificate_without_its_key(capsys):
    with pytest.raises(SystemExit) as caught:
        simulator_module.main(["--https-cert", "cert.pem"])

    assert caught.value.code == 2
    assert "--https-cert and --https-key go together" in capsys.readouterr().err


def test_module_runs_with_python_dash_m():
    result = subprocess.run(
        [sys.executable, "-m", "bobosync.simulator", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0
    assert "--token-lifetime" in result.stdout
