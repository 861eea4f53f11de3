"""How long zos lets a driver wait for a server: ``database.connect_timeout_seconds`` and the
URL's own option, the smaller bound winning, and a URL's "no bound" (0) never lifting it."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event

from zos.config import Settings
from zos.database import get_engine


class _Captured(Exception):
    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__("captured")
        self.params = params


def driver_arguments(url: str, connect_timeout_seconds: float) -> dict[str, Any]:
    """The keyword arguments the engine would hand the driver, captured before any socket."""
    engine = get_engine(
        Settings(
            database={"url": url, "connect_timeout_seconds": connect_timeout_seconds}  # type: ignore[arg-type]
        )
    )

    def capture(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        raise _Captured(dict(params))

    event.listen(engine, "do_connect", capture)
    try:
        with pytest.raises(_Captured) as captured:
            engine.connect()
    finally:
        engine.dispose()
    return captured.value.params


SERVERS = {
    "postgresql": ("postgresql+psycopg://zos@127.0.0.1:5432/app", "connect_timeout", 2),
    "mariadb": ("mysql+pymysql://zos@127.0.0.1:3306/app", "connect_timeout", 1),
}


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    server=st.sampled_from(sorted(SERVERS)),
    configured=st.floats(min_value=0.01, max_value=86_400),
    from_url=st.none() | st.integers(min_value=0, max_value=100_000),
)
def test_the_smaller_of_the_setting_and_the_urls_connect_timeout_is_given_to_the_driver(
    server: str, configured: float, from_url: int | None
) -> None:
    base, key, floor = SERVERS[server]
    url = base if from_url is None else f"{base}?{key}={from_url}"
    given_seconds = driver_arguments(url, configured)[key]
    bound = math.ceil(configured)
    expected = bound if not from_url else min(bound, from_url)  # 0: the driver's "no bound"
    assert given_seconds == max(floor, expected)
    assert 0 < given_seconds <= max(floor, bound)


@pytest.mark.parametrize("from_url", [None, "1", "5", "600"])
def test_pymysql_reads_are_bounded_by_the_smaller_bound_until_the_handshake_is_done(
    from_url: str | None,
) -> None:
    url = SERVERS["mariadb"][0] + ("" if from_url is None else f"?read_timeout={from_url}")
    given_seconds = driver_arguments(url, 3)["read_timeout"]
    assert given_seconds == (3 if from_url is None else min(3, int(from_url)))
