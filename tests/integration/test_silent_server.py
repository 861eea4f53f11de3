"""A server that accepts connections and never answers: every command gives up after
``database.connect_timeout_seconds`` with one ``Error: cannot connect …`` line (issue 10)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import Backend, MakeMigrations, migration, run_cli, run_zos

URLS = {
    "postgresql": "postgresql+psycopg://zos:secret-pw@127.0.0.1:{port}/app",
    "mariadb": "mysql+pymysql://zos:secret-pw@127.0.0.1:{port}/app",
}


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port whose listener accepts every connection and never writes a byte."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
@pytest.mark.parametrize(
    "command", [("status",), ("migrate",), ("check",), ("history",), ("migrate", "--dry-run")]
)
def test_a_server_that_never_answers_gives_one_cannot_connect_line(
    server: str, command: tuple[str, ...], silent_port: int, tmp_path: object
) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("ZOS_")}
    env["ZOS_DATABASE_URL"] = URLS[server].format(port=silent_port)
    env["ZOS_DATABASE__CONNECT_TIMEOUT_SECONDS"] = "2"
    # A hang is what this test exists to catch: the limit is a generous multiple of 2 s.
    result = run_zos("db", *command, env=env, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1, result.stderr
    shown = URLS[server].format(port=silent_port).replace("secret-pw", "***")
    assert lines[0].startswith(f"Error: cannot connect to {shown}"), lines[0]
    assert "secret-pw" not in result.stderr + result.stdout


def test_the_connect_bound_does_not_cut_short_a_long_statement(
    server_backend: Backend, make_migrations: MakeMigrations
) -> None:
    sleep = "SELECT pg_sleep(2.5)" if server_backend.name == "postgresql" else "SELECT SLEEP(2.5)"
    folder = make_migrations(
        {"001_slow.py": migration(1, "Slow", f"conn.execute(text({sleep!r}))")}
    )
    env = server_backend.env(folder) | {"ZOS_DATABASE__CONNECT_TIMEOUT_SECONDS": "1"}
    result = run_cli("db", "migrate", env=env)
    assert result.exit_code == 0, result.stderr
    assert "Applied 001: Slow" in result.stdout
