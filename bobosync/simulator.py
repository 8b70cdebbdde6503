"""An AtHoc server on loopback, for tests and the demo.

Speaks the API described in ``athoc-api.md`` (token endpoint, user search,
SyncByCommonNames) over real HTTP, and offers fault switches (errors, slow
or hanging answers, revoked tokens, odd sync answers) so bobosync can be
tested against the failures a real server shows. Standard library only.

The server records what clients sent (token grant types, search queries,
sync bodies) so tests can assert on it; it never records a secret. The
command line and the demo users are in ``simulator_cli``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bobosync.clock import Clock
from bobosync.simulator_cli import demo_users, main
from bobosync.simulator_criteria import (
    DATE_OPERATORS,
    TEXT_OPERATORS,
    VALUELESS_OPERATORS,
    Combination,
    Comparison,
    CriteriaError,
    CriteriaNode,
    Predicate,
    Token,
    compile_criteria,
    parse_criteria,
    parse_date_value,
    tokenize_criteria,
)
from bobosync.simulator_faults import (
    ENDPOINT_NAMES,
    HANG_MODES,
    PERMISSION_DENIED_DETAILS,
    Fault,
    FaultSwitches,
)

# The criteria and fault names and the command line (demo_users, main) live
# in their own modules; tests and tools import them from here, as before the
# split.
__all__ = [
    "DATE_OPERATORS",
    "DEFAULT_SEARCH_LIMIT",
    "ENDPOINT_NAMES",
    "FIRST_USER_ID",
    "HANG_MODES",
    "NOT_FOUND_DETAILS",
    "PERMISSION_DENIED_DETAILS",
    "REQUIRED_SCOPE",
    "TEXT_OPERATORS",
    "TOKEN_PATH",
    "VALUELESS_OPERATORS",
    "AtHocSimulator",
    "Combination",
    "Comparison",
    "CriteriaError",
    "CriteriaNode",
    "Predicate",
    "Token",
    "compile_criteria",
    "demo_users",
    "main",
    "parse_criteria",
    "parse_date_value",
    "tokenize_criteria",
]

logger = logging.getLogger(__name__)

TOKEN_PATH = "/authservices/auth/connect/token"
REQUIRED_SCOPE = ("openid", "profile", "athoc.iws.web.api")
DEFAULT_SEARCH_LIMIT = 100
FIRST_USER_ID = 2060001
NOT_FOUND_DETAILS = "User: {login} does not exists in the Organization"
_API_PATH = re.compile(r"^/api/v2/orgs/(?P<org>[^/]+)/(?P<rest>.*)$", re.I)


# --- requests and answers


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: dict[str, str]
    authorization: str
    body: bytes


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang_mode: str = ""
    release: threading.Event | None = None


def _json_answer(status: int, payload: Any, **headers: str) -> _Answer:
    body = json.dumps(payload).encode("utf-8")
    return _Answer(status, body, {"Content-Type": "application/json", **headers})


def _message_answer(status: int, message: str) -> _Answer:
    return _json_answer(status, {"Message": message})


def _oauth_error(error: str, description: str) -> _Answer:
    payload = {"error": error, "error_description": description}
    return _json_answer(400, payload, **{"Cache-Control": "no-store"})


def _endpoint_of(path: str) -> str:
    """Which switchable endpoint a request path is: token, search, sync or ''."""
    lowered = path.lower().rstrip("/")
    if lowered == TOKEN_PATH:
        return "token"
    match = _API_PATH.match(lowered)
    rest = match.group("rest") if match else ""
    return {"users/search/basic": "search", "users/syncbycommonnames": "sync"}.get(
        rest, ""
    )


@dataclass
class _User:
    login_id: str
    user_id: int
    attributes: dict[str, str | None]


# --- the simulator


class AtHocSimulator(FaultSwitches):
    """An AtHoc server on 127.0.0.1 with fault switches; see the module doc.

    Every public method is thread-safe. Records (``sync_calls``...) hold what
    clients sent, including calls answered by a fault switch, as copies.
    """

    def __init__(
        self,
        users: Iterable[Mapping[str, str | None]] = (),
        *,
        org_code: str = "BOBO",
        client_id: str = "bobosync-demo",
        client_secret: str = "demo-client-secret",
        username: str = "svc_bobo_sync",
        password: str = "demo-password",
        token_lifetime_seconds: int = 3600,
        offset_mode: str = "record",
        max_page_size: int | None = None,
        datetime_format: str = "%d/%m/%Y %H:%M:%S",
        date_fields: Iterable[str] = ("On-Duty-DTG",),
        ssl_context: ssl.SSLContext | None = None,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if offset_mode not in ("record", "page"):
            raise ValueError(
                f"offset_mode must be 'record' or 'page', got {offset_mode!r}"
            )
        self.org_code = org_code
        self.client_id = client_id
        self._client_secret = client_secret
        self.username = username
        self._password = password
        self.token_lifetime_seconds = token_lifetime_seconds
        self.offset_mode = offset_mode
        self.max_page_size = max_page_size
        self.datetime_format = datetime_format
        self.date_fields = tuple(date_fields)
        self._ssl_context = ssl_context
        self._clock = clock
        self._address = (host, port)
        self._lock = threading.RLock()
        self._users: dict[str, _User] = {}
        self._attribute_names = {"LOGIN_ID", *self.date_fields}
        self._next_user_id = FIRST_USER_ID
        self._access_tokens: dict[str, float] = {}
        self._refresh_tokens: dict[str, str] = {}
        # Every token ever handed out, kept for tests that prove none leaks.
        self._issued_tokens: list[str] = []
        self._refresh_rejected = False
        self._server: _SimulatorServer | None = None
        self._url = ""
        self._serve_thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._reset_fault_state()
        self.reset_records()
        for user in users:
            attributes = dict(user)
            self.add_user(str(attributes.pop("LOGIN_ID")), **attributes)

    # --- life cycle

    def settings_values(self) -> dict[str, str]:
        """Settings fields (for ``make_test_settings``) that point bobosync
        at this simulator with the credentials it accepts."""
        return {
            "athoc_server_url": self.url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "api_user": self.username,
            "password": self.password,
            "org_code": self.org_code,
        }

    @property
    def client_secret(self) -> str:
        """The client secret this simulator accepts (a test value)."""
        return self._client_secret

    @property
    def password(self) -> str:
        """The password this simulator currently accepts (a test value)."""
        with self._lock:
            return self._password

    def start(self) -> AtHocSimulator:
        """Bind and serve in a daemon thread; returns self."""
        server = _SimulatorServer(self._address, _RequestHandler)
        server.simulator = self
        if self._ssl_context is not None:
            # The handshake runs in the handler thread, so a client that never
            # finishes it cannot block the accept loop.
            server.socket = self._ssl_context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        scheme = "https" if self._ssl_context is not None else "http"
        self._url = f"{scheme}://{server.server_name}:{server.server_port}"
        self._serve_thread = threading.Thread(
            target=server.serve_forever,
            # stop() waits up to one poll interval for the loop to notice.
            kwargs={"poll_interval": 0.02},
            name="athoc-simulator",
            daemon=True,
        )
        self._serve_thread.start()
        logger.info("simulator started: url=%s org_code=%s", self.url, self.org_code)
        return self

    def stop(self) -> None:
        """Stop serving, end hangs and delays, and drop open connections."""
        server = self._server
        if server is None:
            return
        self._release.set()
        server.shutdown()
        server.server_close()
        for connection in self._open_connections():
            _close_quietly(connection)
        if self._serve_thread is not None:
            self._serve_thread.join(timeout=5)
        self._server = None
        logger.info("simulator stopped")

    def __enter__(self) -> AtHocSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``; set by start()."""
        if not self._url:
            raise RuntimeError("the simulator is not started")
        return self._url

    # --- users

    def add_user(self, login_id: str, **attributes: str | None) -> None:
        """Add a user; raises ValueError if the LOGIN_ID exists (any case)."""
        with self._lock:
            if login_id.lower() in self._users:
                raise ValueError(f"user {login_id!r} exists already")
            self._store_user(login_id, attributes)

    def attribute(self, login_id: str, name: str) -> str | None:
        """A user's attribute value; None when empty. KeyError if no user."""
        with self._lock:
            return self._users[login_id.lower()].attributes.get(name) or None

    def set_attribute(self, login_id: str, name: str, value: str | None) -> None:
        """Set a user's attribute (a test resetting state). KeyError if no user."""
        with self._lock:
            self._users[login_id.lower()].attributes[name] = value
            self._attribute_names.add(name)

    def remove_user(self, login_id: str) -> None:
        """Delete a user (any case), as an administrator would. KeyError if
        there is none."""
        with self._lock:
            del self._users[login_id.lower()]

    def logins(self) -> list[str]:
        with self._lock:
            return [user.login_id for user in self._sorted_users()]

    def _store_user(self, login_id: str, attributes: Mapping[str, Any]) -> _User:
        user = _User(login_id, self._next_user_id, dict(attributes))
        self._next_user_id += 1
        self._users[login_id.lower()] = user
        self._attribute_names.update(attributes)
        return user

    def _sorted_users(self) -> list[_User]:
        return [self._users[key] for key in sorted(self._users)]

    # --- records

    def reset_records(self) -> None:
        with self._lock:
            self._sync_calls: list[list[dict[str, Any]]] = []
            self._sync_query_params: list[dict[str, str]] = []
            self._token_grants: list[str] = []
            self._search_queries: list[dict[str, str | None]] = []
            self._created_users: list[str] = []
            self._unauthorized_count = 0

    @property
    def sync_calls(self) -> list[list[dict[str, Any]]]:
        with self._lock:
            return [[dict(item) for item in call] for call in self._sync_calls]

    @property
    def sync_query_params(self) -> list[dict[str, str]]:
        with self._lock:
            return [dict(params) for params in self._sync_query_params]

    @property
    def token_grants(self) -> list[str]:
        with self._lock:
            return list(self._token_grants)

    @property
    def search_queries(self) -> list[dict[str, str | None]]:
        with self._lock:
            return [dict(query) for query in self._search_queries]

    @property
    def created_users(self) -> list[str]:
        with self._lock:
            return list(self._created_users)

    @property
    def unauthorized_count(self) -> int:
        with self._lock:
            return self._unauthorized_count

    @property
    def issued_tokens(self) -> list[str]:
        """Every access and refresh token issued since start, in order;
        reset_records() keeps them."""
        with self._lock:
            return list(self._issued_tokens)

    def sent_updates(self, field_name: str | None = None) -> dict[str, str]:
        """LOGIN_ID -> value sent for ``field_name`` (default: the first date
        field) over every sync call recorded; a later call wins."""
        wanted = field_name or self.date_fields[0]
        updates: dict[str, str] = {}
        for call in self.sync_calls:
            for item in call:
                if wanted in item and "LOGIN_ID" in item:
                    updates[str(item["LOGIN_ID"])] = item[wanted]
        return updates

    def _record_request(self, endpoint: str, request: _Request) -> None:
        if endpoint == "token":
            form = _parse_form(request.body)
            self._token_grants.append(form.get("grant_type", ""))
        elif endpoint == "search":
            names = ("Criteria", "Fields", "Limit", "Offset")
            self._search_queries.append({n: request.query.get(n) for n in names})
        elif endpoint == "sync":
            self._sync_query_params.append(dict(request.query))
            items = _parse_json(request.body)
            if isinstance(items, list):
                self._sync_calls.append([dict(i) for i in items if isinstance(i, dict)])

    # --- token switches (the other fault switches are in FaultSwitches)

    def revoke_tokens(self) -> None:
        """Every access token issued so far answers 401 from now on."""
        with self._lock:
            self._access_tokens.clear()

    def set_password(self, new_password: str) -> None:
        """Later password grants need ``new_password``; refresh tokens live."""
        with self._lock:
            self._password = new_password

    def reject_refresh_tokens(self) -> None:
        """Every later refresh grant answers invalid_grant."""
        with self._lock:
            self._refresh_rejected = True

    # --- answering

    def _answer(self, request: _Request) -> _Answer:
        """Answer one request: record it, apply fault switches, then serve."""
        endpoint = _endpoint_of(request.path)
        keys = (endpoint, "any") if endpoint else ("any",)
        with self._lock:
            self._record_request(endpoint, request)
            delay_seconds = max(self._delays.get(key, 0.0) for key in keys)
            hang_mode = next((self._hangs[k] for k in keys if k in self._hangs), "")
            release = self._release
        if delay_seconds > 0:
            release.wait(delay_seconds)
        if hang_mode:
            return _Answer(0, hang_mode=hang_mode, release=release)
        with self._lock:
            fault = self._take_fault(keys)
            if fault is not None:
                answer = _fault_answer(fault)
            else:
                answer = self._route(endpoint, request)
            if self._take_malformed(keys):
                answer = _Answer(
                    200, answer.body[: len(answer.body) // 2], answer.headers
                )
            if answer.status == 401:
                self._unauthorized_count += 1
        return answer

    def _route(self, endpoint: str, request: _Request) -> _Answer:
        if endpoint == "token":
            if request.method != "POST":
                return _message_answer(405, "The token endpoint takes POST only.")
            return self._answer_token(_parse_form(request.body))
        match = _API_PATH.match(request.path)
        if match is None:
            return _message_answer(404, "Not found.")
        if not self._is_authorized(request.authorization):
            return _json_answer(
                401,
                {"Message": "Authorization has been denied for this request."},
                **{"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if match.group("org") != self.org_code or not endpoint:
            return _message_answer(404, "Not found.")
        wanted_method = "GET" if endpoint == "search" else "POST"
        if request.method != wanted_method:
            return _message_answer(405, f"This endpoint takes {wanted_method} only.")
        if endpoint == "search":
            return self._answer_search(request.query)
        return self._answer_sync(request.query, request.body)

    # --- token endpoint

    def _answer_token(self, form: Mapping[str, str]) -> _Answer:
        grant_type = form.get("grant_type", "")
        if grant_type not in ("password", "refresh_token"):
            return _oauth_error("unsupported_grant_type", "Unknown grant type.")
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self._client_secret,
        ):
            return _oauth_error("invalid_client", "Unknown client or wrong secret.")
        if grant_type == "refresh_token":
            return self._answer_refresh_grant(form.get("refresh_token", ""))
        return self._answer_password_grant(form)

    def _answer_password_grant(self, form: Mapping[str, str]) -> _Answer:
        if (
            form.get("username") != self.username
            or form.get("password") != self._password
            or form.get("acr_values") != f"tenant:{self.org_code}"
        ):
            return _oauth_error(
                "invalid_grant", "Wrong user name, password or organization."
            )
        scope = form.get("scope", "")
        if not set(REQUIRED_SCOPE) <= set(scope.split()):
            return _oauth_error("invalid_scope", "The scope is not allowed.")
        return self._issue_tokens(scope)

    def _answer_refresh_grant(self, refresh_token: str) -> _Answer:
        scope = self._refresh_tokens.pop(refresh_token, None)
        if scope is None or self._refresh_rejected:
            return _oauth_error("invalid_grant", "Invalid or spent refresh token.")
        return self._issue_tokens(scope)

    def _issue_tokens(self, scope: str) -> _Answer:
        access_token = secrets.token_urlsafe(32)
        lifetime = self.token_lifetime_seconds
        self._access_tokens[access_token] = self._monotonic() + lifetime
        self._issued_tokens.append(access_token)
        payload: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope,
        }
        if "offline_access" in scope.split():
            refresh_token = secrets.token_urlsafe(32)
            self._refresh_tokens[refresh_token] = scope
            self._issued_tokens.append(refresh_token)
            payload["refresh_token"] = refresh_token
        return _json_answer(200, payload, **{"Cache-Control": "no-store"})

    def _is_authorized(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        expires_at = self._access_tokens.get(token.strip())
        return expires_at is not None and self._monotonic() < expires_at

    def _monotonic(self) -> float:
        return self._clock.monotonic() if self._clock else time.monotonic()

    # --- user search

    def _answer_search(self, query: Mapping[str, str]) -> _Answer:
        try:
            limit = _whole_number(query.get("Limit"), "Limit", DEFAULT_SEARCH_LIMIT, 1)
            offset = _whole_number(query.get("Offset"), "Offset", 0, 0)
            matches = compile_criteria(
                parse_criteria(query.get("Criteria", "")),
                known_attributes=self._attribute_names,
                date_fields=self.date_fields,
                datetime_format=self.datetime_format,
            )
        except CriteriaError as err:
            return _message_answer(400, f"Invalid search: {err}")
        if self.max_page_size is not None:
            limit = min(limit, self.max_page_size)
        found = [
            user
            for user in self._sorted_users()
            if matches({**user.attributes, "LOGIN_ID": user.login_id})
        ]
        page_index = offset if self.offset_mode == "page" else offset // limit
        first = offset * limit if self.offset_mode == "page" else offset
        page = [] if page_index in self._empty_pages else found[first : first + limit]
        fields = _field_names(query.get("Fields", ""))
        total = self._total_users_override
        return _json_answer(
            200,
            {
                "Users": [_user_row(user, fields) for user in page],
                "TotalUsers": len(found) if total is None else total,
                "FetchedRecords": len(page),
            },
        )

    # --- SyncByCommonNames

    def _answer_sync(self, query: Mapping[str, str], body: bytes) -> _Answer:
        items = _parse_json(body)
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            return _message_answer(400, "The body must be a JSON array of objects.")
        existing_only = query.get("syncExistingUsersOnly", "").lower() == "true"
        answers = []
        for item in items:
            login = str(item.get("LOGIN_ID") or "")
            # None: answered as usual; True: applied, not answered; False:
            # neither, as if the server had dropped the item.
            omitted = self._omitted.get(login.lower())
            if omitted is False:
                continue
            answer = self._sync_one(item, login, existing_only)
            if omitted is None:
                answers.append(answer)
        return _json_answer(200, answers)

    def _sync_one(
        self, item: dict[str, Any], login: str, existing_only: bool
    ) -> dict[str, Any]:
        if not login:
            return _sync_answer(item, "Error", "LOGIN_ID is required", None)
        user = self._users.get(login.lower())
        if user is None and existing_only:
            details = NOT_FOUND_DETAILS.format(login=login)
            return _sync_answer(item, "Error", details, None)
        problem = self._sync_errors.get(login.lower()) or self._check_values(item)
        if problem:
            user_id = user.user_id if user else None
            return _sync_answer(item, "Error", problem, user_id)
        values = {k: v for k, v in item.items() if k != "LOGIN_ID"}
        if user is None:
            user = self._store_user(login, values)
            self._created_users.append(login)
            return _sync_answer(item, "OK", "Created", user.user_id)
        user.attributes.update(values)
        return _sync_answer(item, "OK", "Updated", user.user_id)

    def _check_values(self, item: Mapping[str, Any]) -> str:
        """Why these values cannot be stored, or '' when they can."""
        for name, value in item.items():
            if name not in self._attribute_names:
                return f"Attribute {name} does not exist in the Organization"
            if value is not None and not isinstance(value, str):
                return f"Attribute {name}: invalid value {value!r}"
            if name in self.date_fields and not self._is_date_or_empty(value):
                return f"Attribute {name}: invalid value {value!r} for a Date Time"
        return ""

    def _is_date_or_empty(self, value: str | None) -> bool:
        # "" clears a Date Time attribute, so it is a valid value too.
        return not value or parse_date_value(value, self.datetime_format) is not None

    def _open_connections(self) -> list[socket.socket]:
        with self._lock:
            return list(self._connections)


def _fault_answer(fault: Fault) -> _Answer:
    headers = {"Content-Type": "application/json", **fault.headers}
    return _Answer(fault.status, fault.body, headers)


def _sync_answer(
    item: Mapping[str, Any], status: str, details: str, user_id: int | None
) -> dict[str, Any]:
    return {**item, ":SyncStatus": status, ":SyncDetails": details, "USER_ID": user_id}


def _user_row(user: _User, fields: list[str]) -> dict[str, str | None]:
    row: dict[str, str | None] = {"LOGIN_ID": user.login_id}
    for name in fields:
        row[name] = user.attributes.get(name) or None
    return row


def _field_names(fields: str) -> list[str]:
    names = (name.strip() for name in fields.split(","))
    return [name for name in names if name and name != "LOGIN_ID"]


def _whole_number(text: str | None, name: str, default: int, minimum: int) -> int:
    if text is None or text == "":
        return default
    if not text.isdigit() or int(text) < minimum:
        raise CriteriaError(f"{name} must be a whole number >= {minimum}, got {text!r}")
    return int(text)


def _parse_form(body: bytes) -> dict[str, str]:
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def _close_quietly(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


# --- the HTTP plumbing


class _SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive connections park a handler thread; stop() must not wait on them.
    block_on_close = False
    simulator: AtHocSimulator

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can take
        # seconds on machines without reverse DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug(
            "simulator connection ended: client=%s", client_address, exc_info=True
        )


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _SimulatorServer

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()
        with self.server.simulator._lock:
            self.server.simulator._connections.add(self.request)

    def finish(self) -> None:
        with self.server.simulator._lock:
            self.server.simulator._connections.discard(self.request)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the simulator prints nothing per request."""

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        query = {
            k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()
        }
        authorization = self.headers.get("Authorization", "")
        request = _Request(self.command, url.path, query, authorization, body)
        answer = self.server.simulator._answer(request)
        if answer.hang_mode:
            self._hang(answer)
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def _hang(self, answer: _Answer) -> None:
        """Hold the connection until released, then drop it unanswered."""
        if answer.hang_mode == "stall_body":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "4096")
            self.end_headers()
            self.wfile.write(b'{"Users": [')
            self.wfile.flush()
        assert answer.release is not None
        answer.release.wait()
        self.close_connection = True


if __name__ == "__main__":
    sys.exit(main())
