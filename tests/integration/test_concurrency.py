"""Many runners at once, a held lock, and a connection that drops mid-run, with real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from tests.conftest import Backend, MakeMigrations, run_zos
from zos.database import get_engine, resolve_target
from zos.migrator.dialects import RunLock, dialect_for

COUNTED = """
import os
import time

from sqlalchemy import text

VERSION = {n}
DESCRIPTION = "Create thing {n}"


def upgrade(conn):
    # A side effect outside the transaction: a body that runs twice leaves two lines.
    with open(os.environ["ZOS_TEST_RUN_LOG"], "a") as log:
        log.write("{n} %d\\n" % os.getpid())
    conn.execute(text("CREATE TABLE thing_{n} (id INTEGER PRIMARY KEY)"))
    conn.execute(text("INSERT INTO thing_{n} (id) VALUES (1)"))
    time.sleep({pause})
"""


def counted_migrations(make_migrations: MakeMigrations, count: int, pause: float) -> Path:
    return make_migrations(
        {f"{n:03d}_thing_{n}.py": COUNTED.format(n=n, pause=pause) for n in range(1, count + 1)}
    )


def start_zos(backend: Backend, folder: Path, log: Path, *args: str) -> subprocess.Popen[str]:
    env = backend.env(folder)
    env["ZOS_TEST_RUN_LOG"] = str(log)
    return subprocess.Popen(
        [sys.executable, "-m", "zos", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def recorded_versions(backend: Backend) -> list[int]:
    engine = backend.engine()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT version FROM _schema_version ORDER BY version"))
        versions = [row.version for row in rows]
    engine.dispose()
    return versions


def test_eight_runners_at_once_all_succeed_and_run_each_migration_once(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = counted_migrations(make_migrations, 5, pause=0.1)
    log = tmp_path / "runs.log"
    runners = [start_zos(backend, folder, log, "db", "migrate") for _ in range(8)]
    results = [(r.wait(timeout=120), *r.communicate()) for r in runners]
    assert [code for code, _, _ in results] == [0] * 8, results
    assert all("Traceback" not in err for _, _, err in results)
    bodies = [line.split()[0] for line in log.read_text().splitlines()]
    assert sorted(bodies) == ["1", "2", "3", "4", "5"]
    assert recorded_versions(backend) == [1, 2, 3, 4, 5]
    applied_lines = sum(out.count("  Applied ") for _, out, _ in results)
    assert applied_lines == 5


def hold_lock(backend: Backend) -> tuple[object, RunLock]:
    """Take the run lock the way another runner would; returns what keeps it held."""
    settings = backend.settings()
    engine = get_engine(settings)
    lock = dialect_for(resolve_target(settings)).run_lock(engine)
    assert lock.try_acquire()
    return engine, lock


def test_a_held_lock_makes_a_runner_wait_then_give_up_with_a_clear_error(
    backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = counted_migrations(make_migrations, 2, pause=0)
    run_zos(
        "db",
        "migrate",
        "--target",
        "1",
        env=backend.env(folder) | {"ZOS_TEST_RUN_LOG": str(tmp_path / "l")},
    )
    engine, holder = hold_lock(backend)
    try:
        env = backend.env(folder) | {
            "ZOS_TEST_RUN_LOG": str(tmp_path / "l"),
            "ZOS_DATABASE__LOCK_TIMEOUT_SECONDS": "1",
        }
        started = time.monotonic()
        result = run_zos("db", "migrate", env=env)
        waited = time.monotonic() - started
    finally:
        holder.release()
        engine.dispose()  # type: ignore[attr-defined]
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Waiting for another migration to finish (")
    assert lines[1].startswith("Error: ") and "after 1 s" in lines[1]
    assert len(lines) == 2 and "Traceback" not in result.stderr
    assert waited >= 1
    assert recorded_versions(backend) == [1]
    assert run_zos("db", "migrate", env=env).returncode == 0
    assert recorded_versions(backend) == [1, 2]


def with_password(url: str, password: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.set(password=password).render_as_string(hide_password=False)


def test_no_password_appears_in_any_output(
    server_backend: Backend, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    """Wrong password, right password, failing migration: the secret is never printed."""
    backend = server_backend
    secret = "s3cret-Pa55"
    folder = make_migrations(
        {
            "001_fails.py": "VERSION = 1\nDESCRIPTION = 'Fails'\n\n\ndef upgrade(conn):\n"
            "    raise RuntimeError('cannot do it')\n"
        }
    )
    env = backend.env(folder) | {"ZOS_DATABASE_URL": with_password(backend.url, secret)}
    outputs = [
        run_zos(*args, env=env)
        for args in (
            ("db", "status"),
            ("db", "status", "--json"),
            ("db", "migrate"),
            ("config", "check"),
            ("--traceback", "db", "migrate"),
        )
    ]
    text_seen = "".join(r.stdout + r.stderr for r in outputs)
    assert secret not in text_seen
    assert "***" in text_seen
    if backend.name == "mariadb":
        # root has no password here, so the server refuses: the error names the URL, masked.
        assert "Access denied" in outputs[0].stderr and outputs[0].returncode == 1
