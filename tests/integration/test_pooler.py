"""zos behind PgBouncer in transaction pooling mode (issue 10): reads work through the pooler
(no server-side prepared statements), a migration run refuses it at once with one line, and
with ``database.migrate_url`` pointing at the server several runners apply each migration once.

The fixture starts a PgBouncer of its own on a free local port, configured in a temporary
folder, in front of the test PostgreSQL server, and stops it afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from tests.conftest import Backend, MakeMigrations, _backend, migration, run_zos
from tests.integration.test_concurrency import counted_migrations, recorded_versions

RUNNERS = 4


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("postgresql", tmp_path)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def pgbouncer(pg: Backend) -> Iterator[str]:
    """The URL of ``pg``'s database through a PgBouncer in transaction pooling mode."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        if os.environ.get("CI") == "true":
            pytest.fail("pgbouncer is not installed (.ci/run installs it)")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    server = make_url(pg.url)
    folder = Path(tempfile.mkdtemp(prefix="zos-pgbouncer-"))
    port = _free_port()
    config = folder / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={server.host} port={server.port or 5432} user={server.username}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\npool_mode = transaction\n"
        "default_pool_size = 10\nmax_client_conn = 200\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
        f"logfile = {folder / 'pgbouncer.log'}\npidfile = {folder / 'pgbouncer.pid'}\n"
    )
    user: list[str] = []
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        account = pwd.getpwnam("postgres")
        os.chown(folder, account.pw_uid, account.pw_gid)
        os.chown(config, account.pw_uid, account.pw_gid)
        user = ["-u", "postgres"]
    process = subprocess.Popen(
        [binary, *user, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("pgbouncer did not start") from None
                time.sleep(0.05)
        yield server.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def pooled_env(pg: Backend, pooled: str, folder: Path, *, direct: bool) -> dict[str, str]:
    env = pg.env(folder)
    env["ZOS_DATABASE_URL"] = pooled
    if direct:
        env["ZOS_DATABASE__MIGRATE_URL"] = pg.url
    return env


def test_a_migration_run_through_a_transaction_pooler_refuses_at_once(
    pg: Backend, pgbouncer: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {"001_t.py": migration(1, "T", "conn.execute(text('CREATE TABLE t (id INTEGER)'))")}
    )
    env = pooled_env(pg, pgbouncer, folder, direct=False)
    for command in (("migrate",), ("repair", "--forget", "1")):
        result = run_zos("db", *command, env=env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, result.stderr
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(
            f"Error: {make_url(pgbouncer).render_as_string()} is a connection pooler"
        )
        assert lines[0].endswith("set database.migrate_url to the server directly")
    engine = pg.engine()
    assert inspect(engine).get_table_names() == []
    engine.dispose()
    # A rehearsal is one transaction and takes no run lock: it works through the pooler, and
    # changes nothing.
    rehearsal = run_zos("db", "migrate", "--dry-run", env=env)
    assert rehearsal.returncode == 0, rehearsal.stderr
    assert "  001: T (" in rehearsal.stdout
    engine = pg.engine()
    assert inspect(engine).get_table_names() == []
    engine.dispose()


def test_through_a_pooler_with_migrate_url_runners_apply_each_migration_once(
    pg: Backend, pgbouncer: str, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = counted_migrations(make_migrations, 4, pause=0.2)
    log = tmp_path / "runs.log"
    env = pooled_env(pg, pgbouncer, folder, direct=True)
    env["ZOS_TEST_RUN_LOG"] = str(log)
    runners = [
        subprocess.Popen(
            [sys.executable, "-m", "zos", "db", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(RUNNERS)
    ]
    outcomes = [runner.communicate(timeout=120) for runner in runners]
    assert [runner.returncode for runner in runners] == [0] * RUNNERS, outcomes
    assert recorded_versions(pg) == [1, 2, 3, 4]
    # Each body ran exactly once.
    assert sorted(line.split()[0] for line in log.read_text().splitlines()) == ["1", "2", "3", "4"]
    status = run_zos("db", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert "Current version: 4" in status.stdout
    assert "No pending migrations" in status.stdout


def test_status_history_and_check_work_through_a_transaction_pooler(
    pg: Backend, pgbouncer: str
) -> None:
    from tests.conftest import REAL_MIGRATIONS

    direct = run_zos("db", "migrate", env=pg.env(REAL_MIGRATIONS))
    assert direct.returncode == 0, direct.stderr
    env = pooled_env(pg, pgbouncer, REAL_MIGRATIONS, direct=False)
    for _ in range(2):
        check = run_zos("db", "check", env=env)
        assert check.returncode == 0, check.stderr
        assert "Database is current and its schema matches the code" in check.stdout
    history = run_zos("db", "history", env=env)
    assert history.returncode == 0, history.stderr
    assert "001" in history.stdout


def test_runners_started_together_through_a_pooler_all_refuse_and_change_nothing(
    pg: Backend, pgbouncer: str, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = counted_migrations(make_migrations, 3, pause=0.1)
    log = tmp_path / "runs.log"
    env = pooled_env(pg, pgbouncer, folder, direct=False)
    env["ZOS_TEST_RUN_LOG"] = str(log)
    runners = [
        subprocess.Popen(
            [sys.executable, "-m", "zos", "db", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(RUNNERS)
    ]
    outcomes = [runner.communicate(timeout=120) for runner in runners]
    assert [runner.returncode for runner in runners] == [2] * RUNNERS, outcomes
    for _out, err in outcomes:
        assert err.strip().endswith("set database.migrate_url to the server directly")
        assert "prepared statement" not in err
    assert not log.exists()  # no migration body ran
    engine = pg.engine()
    assert inspect(engine).get_table_names() == []
    engine.dispose()
