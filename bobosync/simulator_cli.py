"""The simulator's command line and its demo users.

``python -m bobosync.simulator`` and ``bobosync simulator`` land in
``main``: it serves ``demo_users`` on loopback until Ctrl+C and prints the
``.env`` lines that point bobosync at it. ``AtHocSimulator`` is imported
inside ``main`` so that ``simulator`` can re-export these names without an
import cycle.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bobosync.simulator import AtHocSimulator

__all__ = ["demo_users", "main"]

_FIRST_NAMES = (
    "amira", "ben", "chloe", "daniel", "elena", "farid", "grace", "hugo",
    "ines", "jonas", "kate", "liam", "maya", "noah", "olga", "pavel",
    "quinn", "rosa", "samir", "tara",
)  # fmt: skip
# 23 is prime and shares no factor with len(_FIRST_NAMES) + 1, so the pairs
# below do not repeat before 20 * 23 users.
_LAST_NAMES = (
    "abbott", "brennan", "castillo", "dubois", "eriksen", "fischer", "gallo",
    "hughes", "ivanova", "jensen", "kowalski", "larsen", "moreno", "novak",
    "oconnor", "petrov", "quaid", "romero", "schmidt", "tanaka", "ueda",
    "vasquez", "walsh",
)  # fmt: skip


def demo_users(count: int) -> list[dict[str, str | None]]:
    """``count`` deterministic users: ``first.last`` logins, Collar-Number
    from 00101 upwards, an empty On-Duty-DTG."""
    users: list[dict[str, str | None]] = []
    pair_count = len(_FIRST_NAMES) * len(_LAST_NAMES)
    for index in range(count):
        round_, position = divmod(index, pair_count)
        turn, first_index = divmod(position, len(_FIRST_NAMES))
        last = _LAST_NAMES[(position + turn) % len(_LAST_NAMES)]
        suffix = str(round_ + 1) if round_ else ""
        users.append(
            {
                "LOGIN_ID": f"{_FIRST_NAMES[first_index]}.{last}{suffix}",
                "Collar-Number": f"{101 + index:05d}",
                "On-Duty-DTG": None,
            }
        )
    return users


def _parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bobosync simulator",
        description="Run an AtHoc simulator on loopback for trying bobosync.",
    )
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--users", type=int, default=40, help="number of demo users")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="seconds")
    parser.add_argument("--https-cert", help="PEM certificate (chain) to serve https")
    parser.add_argument("--https-key", help="PEM private key of --https-cert")
    arguments = parser.parse_args(argv)
    if bool(arguments.https_cert) != bool(arguments.https_key):
        parser.error("--https-cert and --https-key go together")
    return arguments


def _server_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context


def _env_lines(simulator: AtHocSimulator) -> list[str]:
    # Demo credentials of this simulator, not of any real system.
    return [
        f"ATHOC_SERVER_URL={simulator.url}",
        f"ORG_CODE={simulator.org_code}",
        f"CLIENT_ID={simulator.client_id}",
        f"CLIENT_SECRET={simulator._client_secret}",
        f"APIUSER={simulator.username}",
        f"PASSWORD={simulator._password}",
    ]


def main(argv: list[str] | None = None) -> int:
    """Serve demo users until Ctrl+C; returns the exit code."""
    # Imported here: bobosync.simulator re-exports this module's names.
    from bobosync.simulator import AtHocSimulator

    arguments = _parse_arguments(argv)
    try:
        context = None
        if arguments.https_cert:
            context = _server_context(arguments.https_cert, arguments.https_key)
        simulator = AtHocSimulator(
            demo_users(arguments.users),
            token_lifetime_seconds=arguments.token_lifetime,
            ssl_context=context,
            port=arguments.port,
        ).start()
    except (OSError, ssl.SSLError) as err:
        print(f"simulator cannot start: {err}", file=sys.stderr)
        return 2
    print(f"AtHoc simulator at {simulator.url}")
    print(f"org code: {simulator.org_code}, client id: {simulator.client_id}")
    collars = [user["Collar-Number"] for user in demo_users(arguments.users)]
    print(
        f"{arguments.users} demo users, Employee_ID (Collar-Number) "
        f"{collars[0]} to {collars[-1]}."
    )
    print("Point bobosync at it with these .env lines:")
    print("\n".join(_env_lines(simulator)))
    if context is not None:
        print("SSL_CERT_PATH=<the CA certificate that signed --https-cert, as PEM>")
    print("Press Ctrl+C to stop.", flush=True)
    try:
        while True:
            # Short sleeps: on Windows a long blocking wait ignores Ctrl+C.
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0
