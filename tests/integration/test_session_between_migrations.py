"""Each migration starts with the session the runner set, whatever the migration before it in
the same run left there: roles, temporary tables, locks, prepared statements, variables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import Backend, MakeMigrations, _backend, migration, run_cli


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Backend]:
    yield from _backend("postgresql", tmp_path)


# What a migration can leave in its session, and how the next one would notice.
LEAVES = {
    "postgresql": (
        "conn.execute(text('CREATE TEMPORARY TABLE scratch (x INTEGER)'))\n"
        "conn.execute(text('SELECT pg_advisory_lock(4242)'))\n"
        "conn.execute(text('PREPARE kept AS SELECT 1'))\n"
        "conn.execute(text('LISTEN zos_leak'))\n"
        "conn.execute(text(\"SET SESSION TIME ZONE 'Asia/Tokyo'\"))"
    ),
    "mariadb": (
        "conn.execute(text('CREATE TEMPORARY TABLE scratch (x INTEGER)'))\n"
        "conn.execute(text(\"SELECT GET_LOCK('zos_leak', 0)\"))\n"
        "conn.execute(text(\"PREPARE kept FROM 'SELECT 1'\"))\n"
        "conn.execute(text('SET NAMES latin1'))\n"
        "conn.execute(text(\"SET SESSION sql_mode = 'ANSI_QUOTES', time_zone = '+09:00'\"))\n"
        "conn.execute(text(\"SET @leak = 'leaked'\"))"
    ),
}
NOTICES = {
    "postgresql": (
        ("temporary table", "SELECT CAST(to_regclass('pg_temp.scratch') AS text)"),
        (
            "advisory lock",
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242"
            " AND pid = pg_backend_pid()",
        ),
        ("prepared", "SELECT COUNT(*) FROM pg_prepared_statements"),
        ("listening", "SELECT COUNT(*) FROM pg_listening_channels()"),
        ("time zone", "SELECT current_setting('TimeZone')"),
        ("user", "SELECT current_user || ' ' || session_user"),
    ),
    "mariadb": (
        ("named lock", "SELECT IS_USED_LOCK('zos_leak') <=> CONNECTION_ID()"),
        ("character set", "SELECT @@character_set_client"),
        ("sql mode", "SELECT @@sql_mode"),
        ("time zone", "SELECT @@time_zone"),
        ("user variable", "SELECT @leak"),
    ),
}


def look(backend: Backend) -> str:
    """003's body: write down what its session looks like."""
    lines = ["conn.execute(text('CREATE TABLE seen (k VARCHAR(40), v VARCHAR(200))'))"]
    if backend.name == "mariadb":
        # MariaDB 10.11 lists no temporary tables; a failed statement leaves its transaction
        # usable there.
        lines += [
            "try:",
            "    conn.execute(text('SELECT 1 FROM scratch'))",
            "    temporary = 'present'",
            "except Exception:",
            "    temporary = 'absent'",
            "conn.execute(text('INSERT INTO seen VALUES (:k, :v)'),"
            " {'k': 'temporary table', 'v': temporary})",
        ]
    for what, query in NOTICES[backend.name]:
        lines.append(
            f"conn.execute(text('INSERT INTO seen VALUES (:k, :v)'), {{'k': {what!r}, "
            f"'v': str(conn.execute(text({query!r})).scalar())}})"
        )
    return "\n".join(lines)


def seen(backend: Backend) -> dict[str, str]:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            return {row.k: row.v for row in conn.execute(text("SELECT k, v FROM seen"))}
    finally:
        engine.dispose()


def test_a_migration_sees_the_same_session_whether_or_not_another_ran_before_it(
    server_backend: Backend, make_migrations: MakeMigrations
) -> None:
    backend = server_backend
    alone = make_migrations(
        {"001_noop.py": migration(1, "Nothing"), "002_look.py": migration(2, "Look", look(backend))}
    )
    first = run_cli("db", "migrate", env=backend.env(alone))
    assert first.exit_code == 0, first.stderr
    expected = seen(backend)

    other = backend.sibling()
    after = make_migrations(
        {
            "001_leaves.py": migration(1, "Leaves", LEAVES[backend.name]),
            "002_look.py": migration(2, "Look", look(backend)),
        }
    )
    result = run_cli("db", "migrate", env=other.env(after))
    assert result.exit_code == 0, result.stderr
    assert seen(other) == expected


@pytest.mark.parametrize("statement", ["SET ROLE", "SET SESSION AUTHORIZATION"])
def test_a_migration_that_changes_its_role_is_recorded_and_the_next_runs_as_the_runner(
    pg: Backend, make_migrations: MakeMigrations, statement: str
) -> None:
    role = f"weak_{Path(pg.url).name[-12:]}"
    admin = pg.engine()
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} NOLOGIN"))
        conn.commit()
    try:
        alone = make_migrations(
            {"001_noop.py": migration(1, "Nothing"), "002_look.py": migration(2, "Look", look(pg))}
        )
        assert run_cli("db", "migrate", env=pg.env(alone)).exit_code == 0
        expected = seen(pg)

        other = pg.sibling()
        after = make_migrations(
            {
                "001_role.py": migration(1, "Role", f"conn.execute(text('{statement} {role}'))"),
                "002_look.py": migration(2, "Look", look(pg)),
            }
        )
        result = run_cli("db", "migrate", env=other.env(after))
        assert result.exit_code == 0, result.stderr
        assert seen(other) == expected
        status = run_cli("db", "status", env=other.env(after))
        assert "Current version: 2\n" in status.stdout, status.stdout
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
            conn.commit()
        admin.dispose()
