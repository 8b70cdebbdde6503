"""The vendored case fixtures are the team's shared ones, byte for byte."""

from __future__ import annotations

import pytest

from tests.conftest import CASES, SHARED_CASES


def shared_files() -> list[str]:
    if not SHARED_CASES.is_dir():
        return []
    return sorted(
        str(path.relative_to(SHARED_CASES))
        for path in SHARED_CASES.rglob("*")
        if path.is_file() and path.name != "EXPECTED.md"
    )


@pytest.mark.skipif(
    not SHARED_CASES.is_dir(), reason="../shared/cases not beside the repo"
)
@pytest.mark.parametrize("name", shared_files())
def test_vendored_fixture_matches_the_shared_case(name: str) -> None:
    assert (CASES / name).read_bytes() == (SHARED_CASES / name).read_bytes()


def test_every_vendored_fixture_is_present() -> None:
    names = {p.name for p in CASES.iterdir()}
    assert {"N04_with_header.csv", "B08_empty.csv", "N09_inbox"} <= names
    assert (CASES / "B08_empty.csv").stat().st_size == 0
