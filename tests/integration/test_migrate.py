"""``zos db migrate`` and ``zos db status`` end to end, on every backend."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData, Table, inspect, select, text

from tests.conftest import FIXTURES, REAL_MIGRATIONS, Backend, MakeMigrations, migration, run_cli
from tests.initial import initial_metadata
from zos import migrator
from zos.database import metadata
from zos.migrator.discovery import discover_migrations
from zos.migrator.source import read_source

CREATE_THING = "conn.execute(text('CREATE TABLE thing_{n} (id INTEGER PRIMARY KEY)'))"


def tables(backend: Backend) -> set[str]:
    engine = backend.engine()
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def version_rows(backend: Backend) -> list[tuple[int, str, str]]:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("_schema_version"):
                return []
            rows = conn.execute(
                text("SELECT version, state, checksum FROM _schema_version ORDER BY version")
            )
            return [(r.version, r.state, r.checksum) for r in rows]
    finally:
        engine.dispose()


def five_migrations(make_migrations: MakeMigrations) -> Path:
    return make_migrations(
        {
            f"{n:03d}_thing_{n}.py": migration(n, f"Create thing {n}", CREATE_THING.format(n=n))
            for n in range(1, 6)
        }
    )


def cli(backend: Backend, *args: str, migrations: Path | None = None) -> tuple[int, str, str]:
    result = run_cli(*args, env=backend.env(migrations))
    return result.exit_code, result.stdout, result.stderr


def test_a_fresh_database_is_at_version_0_and_status_creates_nothing(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    code, out, err = cli(backend, "db", "status", migrations=five_migrations(make_migrations))
    assert (code, err) == (0, "")
    assert "Current version: 0\n" in out
    assert "Available migrations: 5" in out
    assert "Pending migrations: 5\n  1: Create thing 1\n" in out
    if backend.name == "sqlite":
        assert not (backend.tmp_path / "data").exists()
    else:
        assert tables(backend) == set()


def test_status_on_a_migrated_database_leaves_files_and_tables_as_they_were(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    cli(backend, "db", "migrate", "--target", "3", migrations=folder)
    files_before = sorted(p.name for p in (backend.tmp_path / "data").glob("*"))
    tables_before, rows_before = tables(backend), version_rows(backend)
    for args in (("db", "status"), ("db", "status", "--json")):
        assert cli(backend, *args, migrations=folder)[0] == 0
    assert sorted(p.name for p in (backend.tmp_path / "data").glob("*")) == files_before
    assert (tables(backend), version_rows(backend)) == (tables_before, rows_before)


def test_migrate_applies_the_real_migrations_and_records_each_version(backend: Backend) -> None:
    scripts = discover_migrations(REAL_MIGRATIONS)
    code, out, err = cli(backend, "db", "migrate")
    assert (code, err) == (0, "")
    assert out.endswith(f"Migrated from version 0 to {scripts[-1].version}\n")
    for script in scripts:
        assert f"  Applied {script.version:03d}: {script.description} (" in out
    assert set(metadata.tables) | {"_schema_version"} == tables(backend)
    initial = (REAL_MIGRATIONS / "001_initial.py").read_bytes()
    assert scripts[0].checksum == read_source(initial, 1, "001_initial.py").checksum
    assert version_rows(backend) == [(s.version, "applied", s.checksum) for s in scripts]


def test_the_version_table_records_description_time_and_duration(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    before = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
    migrator.migrate(backend.settings(five_migrations(make_migrations)))
    after = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1)
    report = migrator.status(backend.settings(five_migrations(make_migrations)))
    rows = report.plan.applied
    assert [(r.version, r.description) for r in rows] == [
        (n, f"Create thing {n}") for n in range(1, 6)
    ]
    assert all(before <= r.applied_at <= after for r in rows)
    assert all(r.duration_ms is not None and r.duration_ms >= 0 for r in rows)


def test_a_second_migrate_is_a_no_op(backend: Backend, make_migrations: MakeMigrations) -> None:
    folder = five_migrations(make_migrations)
    assert cli(backend, "db", "migrate", migrations=folder)[0] == 0
    rows = version_rows(backend)
    code, out, _ = cli(backend, "db", "migrate", migrations=folder)
    assert (code, out) == (0, "Database already at version 5\n")
    assert version_rows(backend) == rows


def test_status_lists_pending_migrations_after_a_partial_run(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    assert cli(backend, "db", "migrate", "--target", "2", migrations=folder)[0] == 0
    code, out, _ = cli(backend, "db", "status", migrations=folder)
    assert code == 0
    assert "Current version: 2\nAvailable migrations: 5 (newest: 5)\nPending migrations: 3\n" in out
    assert "  3: Create thing 3\n  4: Create thing 4\n  5: Create thing 5\n" in out
    assert cli(backend, "db", "migrate", migrations=folder)[0] == 0
    assert cli(backend, "db", "status", migrations=folder)[1].endswith("No pending migrations\n")


def test_status_json_has_versions_pending_and_applied(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    import json

    folder = five_migrations(make_migrations)
    cli(backend, "db", "migrate", "--target", "4", migrations=folder)
    code, out, _ = cli(backend, "db", "status", "--json", migrations=folder)
    document = json.loads(out)
    assert code == 0
    assert (document["current_version"], document["latest_version"]) == (4, 5)
    assert document["pending"] == [
        {"version": 5, "description": "Create thing 5", "file": "005_thing_5.py"}
    ]
    assert [a["version"] for a in document["applied"]] == [1, 2, 3, 4]
    first = document["applied"][0]
    assert first["description"] == "Create thing 1" and len(first["checksum"]) == 64
    assert datetime.fromisoformat(first["applied_at"]).tzinfo is not None


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("duplicate_version", "002_a.py and 002_b.py share version 2"),
        ("misnamed", "2_add_thing.py: not a migration file name"),
        ("missing_version", "001_initial.py: does not define VERSION"),
        ("missing_description", "001_initial.py: does not define DESCRIPTION"),
        ("missing_upgrade", "001_initial.py: does not define upgrade()"),
        ("version_mismatch", "002_second.py: VERSION is 3 but the file name says 2"),
        ("syntax_error", "001_initial.py: syntax error at line 4"),
        ("import_error", "001_initial.py: fails to import: ModuleNotFoundError"),
    ],
)
def test_an_invalid_migration_file_stops_the_run_before_anything_is_applied(
    backend: Backend, scenario: str, message: str
) -> None:
    code, out, err = cli(backend, "db", "migrate", migrations=FIXTURES / scenario)
    assert code == 1
    assert err.startswith("Error: ") and message in err and "Traceback" not in err
    assert out == ""
    assert tables(backend) - {"_schema_version"} == set()
    assert version_rows(backend) == []


def test_every_problem_is_reported_before_anything_runs(backend: Backend) -> None:
    code, _, err = cli(backend, "db", "migrate", migrations=FIXTURES / "many_problems")
    assert code == 1
    assert err.startswith("Error: 3 problems with the migration files:\n")
    assert len([line for line in err.splitlines() if line.startswith("  - ")]) == 3
    assert tables(backend) == set()


def test_an_edited_applied_migration_is_refused_and_reported_by_status(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    cli(backend, "db", "migrate", "--target", "3", migrations=folder)
    path = folder / "002_thing_2.py"
    path.write_text(path.read_text() + "TWEAKED = True\n")
    code, _, err = cli(backend, "db", "migrate", migrations=folder)
    assert code == 1
    assert "Error: 002_thing_2.py was changed after it was applied" in err
    assert [row[0] for row in version_rows(backend)] == [1, 2, 3]
    code, out, err = cli(backend, "db", "status", migrations=folder)
    assert code == 1 and "Current version: 3" in out
    assert "002_thing_2.py was changed after it was applied" in err


def test_a_database_newer_than_the_code_is_refused(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    cli(backend, "db", "migrate", migrations=folder)
    older = make_migrations({p.name: p.read_text() for p in sorted(folder.iterdir())[:3]})
    code, _, err = cli(backend, "db", "migrate", migrations=older)
    assert code == 1
    assert "the database is at version 5, newer than the newest migration file (3)" in err


def test_a_migration_numbered_below_the_applied_head_is_refused(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    late = folder / "003_thing_3.py"
    body = late.read_text()
    late.unlink()
    cli(backend, "db", "migrate", migrations=folder)
    late.write_text(body)
    code, _, err = cli(backend, "db", "migrate", migrations=folder)
    assert code == 1
    assert "003_thing_3.py is not applied but the database is already at version 5" in err
    assert "thing_3" not in tables(backend)


def test_a_missing_applied_file_is_refused(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    cli(backend, "db", "migrate", migrations=folder)
    (folder / "002_thing_2.py").unlink()
    code, _, err = cli(backend, "db", "migrate", migrations=folder)
    assert code == 1
    assert (
        "version 2 (Create thing 2) is recorded as applied but its migration file is missing" in err
    )


def test_a_gap_in_the_numbering_is_allowed_and_shown_by_status(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    (folder / "003_thing_3.py").unlink()
    code, out, _ = cli(backend, "db", "migrate", migrations=folder)
    assert code == 0 and "Migrated from version 0 to 5" in out
    assert "Unused version numbers: 3" in cli(backend, "db", "status", migrations=folder)[1]


HALF_WAY = """
conn.execute(text('CREATE TABLE half_done (id INTEGER PRIMARY KEY)'))
conn.execute(text('INSERT INTO half_done (id) VALUES (1)'))
raise RuntimeError('boom half-way')
"""


def test_a_migration_that_raises_half_way_leaves_no_trace_where_ddl_is_transactional(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {
            "001_thing_1.py": migration(1, "One", CREATE_THING.format(n=1)),
            "002_half.py": migration(2, "Half", HALF_WAY),
        }
    )
    code, out, err = cli(backend, "db", "migrate", migrations=folder)
    assert code == 1
    assert "  Applied 001: One" in out
    assert err.startswith("Error: 002_half.py failed: boom half-way; ") and "Traceback" not in err
    if backend.name == "mariadb":
        # MariaDB commits DDL at once: the run is marked unfinished and later runs refuse.
        assert [row[:2] for row in version_rows(backend)] == [(1, "applied"), (2, "started")]
        code, _, err = cli(backend, "db", "migrate", migrations=folder)
        assert code == 1 and "002_half.py started at" in err and "zos db repair" in err
        code, out, err = cli(backend, "db", "status", migrations=folder)
        assert code == 1 and "never finished" in err
    else:
        assert "rolled back and the database is unchanged by it" in err
        assert "half_done" not in tables(backend)
        assert [row[:2] for row in version_rows(backend)] == [(1, "applied")]
        assert "Current version: 1" in cli(backend, "db", "status", migrations=folder)[1]


def test_target_migrates_up_to_the_named_version(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    code, out, _ = cli(backend, "db", "migrate", "--target", "0", migrations=folder)
    assert (code, out) == (0, "Database already at version 0\n")
    code, out, _ = cli(backend, "db", "migrate", "--target", "3", migrations=folder)
    assert code == 0 and out.endswith("Migrated from version 0 to 3\n")
    assert {"thing_1", "thing_2", "thing_3"} <= tables(backend)
    assert "thing_4" not in tables(backend)


@pytest.mark.parametrize(
    ("target", "message"),
    [("9", "--target 9 names no migration"), ("1", "--target 1 is below the current version 2")],
)
def test_a_target_that_cannot_be_reached_is_a_usage_error(
    backend: Backend, make_migrations: MakeMigrations, target: str, message: str
) -> None:
    folder = five_migrations(make_migrations)
    cli(backend, "db", "migrate", "--target", "2", migrations=folder)
    code, _, err = cli(backend, "db", "migrate", "--target", target, migrations=folder)
    assert code == 2 and err.startswith("Error: ") and message in err
    assert [row[0] for row in version_rows(backend)] == [1, 2]


def test_an_unversioned_version_1_database_is_adopted_and_keeps_its_rows(
    backend: Backend,
) -> None:
    engine = backend.engine()
    with engine.begin() as conn:
        initial_metadata().create_all(conn)
        servers = initial_metadata().tables["servers"]
        when = datetime(2024, 1, 1)
        row = {"id": "42", "name": "guild", "threads_as_topics": True, "created_at": when}
        conn.execute(servers.insert().values(**row))
    engine.dispose()
    code, out, _ = cli(backend, "db", "migrate", "--target", "1")
    assert code == 0
    assert "  Adopted 001: Create the version-1 schema" in out
    assert [row[:2] for row in version_rows(backend)] == [(1, "adopted")]
    engine = backend.engine()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM servers WHERE id = '42'")).scalar() == "guild"
    engine.dispose()


def test_a_version_1_database_missing_one_column_is_not_adopted(backend: Backend) -> None:
    """Adoption must not vouch for tables that are not exactly version 1: ``upgrade()`` then
    runs, fails on the existing tables, and nothing is recorded."""
    engine = backend.engine()
    with engine.begin() as conn:
        initial_metadata().create_all(conn)
        conn.execute(text("ALTER TABLE messages DROP COLUMN deleted_at"))
    engine.dispose()
    code, out, err = cli(backend, "db", "migrate", "--target", "1")
    assert code == 1
    assert "Adopted" not in out
    assert err.startswith("Error: ") and "001" in err and "Traceback" not in err
    # Nothing recorded anywhere: on MariaDB the server refused upgrade()'s first CREATE TABLE,
    # so the started mark written just before it was removed again.
    assert [row[:2] for row in version_rows(backend)] == []
    assert "deleted_at" not in {c["name"] for c in inspect_columns(backend, "messages")}


ADD_EDITED_AT = """
from sqlalchemy import Column, DateTime, Integer, text
from sqlalchemy.dialects import mysql
from sqlalchemy.schema import CreateColumn

VERSION = 2
DESCRIPTION = "Add messages.edited_at and messages.edit_count"


def upgrade(conn):
    microseconds = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    for column in (
        Column("edited_at", microseconds, nullable=True),
        Column("edit_count", Integer, nullable=False, server_default=text("0")),
    ):
        ddl = CreateColumn(column).compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE messages ADD COLUMN {ddl}"))
"""


def seed_messages(backend: Backend, count: int) -> None:
    engine = backend.engine()
    now = datetime(2026, 5, 1, 12, 0, 0, 123456)
    with engine.begin() as conn:
        conn.execute(metadata.tables["servers"].insert().values(id="s1"))
        conn.execute(
            metadata.tables["channels"].insert().values(id="c1", server_id="s1", type="text")
        )
        conn.execute(
            metadata.tables["messages"].insert(),
            [
                {
                    "id": str(i),
                    "channel_id": "c1",
                    "server_id": "s1",
                    "author_id": "a",
                    "content": f"message {i}",
                    "created_at": now,
                    "visibility_scope": "public",
                }
                for i in range(count)
            ],
        )
    engine.dispose()


def test_a_later_migration_adding_a_column_works_on_fresh_and_populated_databases(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    v1 = make_migrations({"001_initial.py": (REAL_MIGRATIONS / "001_initial.py").read_text()})
    v2 = make_migrations(
        {
            "001_initial.py": (REAL_MIGRATIONS / "001_initial.py").read_text(),
            "002_add_edited_at.py": ADD_EDITED_AT,
        }
    )
    fresh = backend.sibling()
    assert cli(fresh, "db", "migrate", migrations=v2)[1].endswith("Migrated from version 0 to 2\n")

    assert cli(backend, "db", "migrate", migrations=v1)[0] == 0
    seed_messages(backend, 250)
    code, out, _ = cli(backend, "db", "migrate", migrations=v2)
    assert code == 0 and out.endswith("Migrated from version 1 to 2\n")
    engine = backend.engine()
    with engine.connect() as conn:
        messages = Table("messages", MetaData(), autoload_with=conn)
        rows = conn.execute(select(messages)).all()
    engine.dispose()
    assert len(rows) == 250
    assert {(r.content, r.edited_at, r.edit_count) for r in rows if r.id == "7"} == {
        ("message 7", None, 0)
    }
    assert {r.created_at for r in rows} == {datetime(2026, 5, 1, 12, 0, 0, 123456)}
    for database in (fresh, backend):
        columns = {c["name"] for c in inspect_columns(database, "messages")}
        assert {"edited_at", "edit_count"} <= columns


def inspect_columns(backend: Backend, table: str) -> list[dict[str, object]]:
    engine = backend.engine()
    try:
        return list(inspect(engine).get_columns(table))  # type: ignore[arg-type]
    finally:
        engine.dispose()


def test_migrations_folder_copy_keeps_the_same_checksums(tmp_path: Path) -> None:
    """A copied checkout of the real migrations must not count as edited."""
    copy = tmp_path / "copy"
    shutil.copytree(REAL_MIGRATIONS, copy)
    from zos.migrator.discovery import discover_migrations

    assert [s.checksum for s in discover_migrations(copy)] == [
        s.checksum for s in discover_migrations(REAL_MIGRATIONS)
    ]


def mark_started(backend: Backend, folder: Path, version: int) -> None:
    """Leave the record a runner killed in the middle of a non-transactional migration leaves."""
    from zos.migrator import recorder
    from zos.migrator.discovery import discover_migrations

    script = next(s for s in discover_migrations(folder) if s.version == version)
    engine = backend.engine()
    with engine.begin() as conn:
        recorder.record(
            conn,
            version=version,
            description=f"Create thing {version}",
            checksum=script.checksum,
            state=recorder.State.STARTED,
        )
    engine.dispose()


@pytest.mark.parametrize("resolution", ["--applied", "--forget"])
def test_repair_resolves_an_unfinished_migration_so_migrate_can_go_on(
    backend: Backend, make_migrations: MakeMigrations, resolution: str
) -> None:
    folder = five_migrations(make_migrations)
    cli(backend, "db", "migrate", "--target", "2", migrations=folder)
    mark_started(backend, folder, 3)
    code, _, err = cli(backend, "db", "migrate", migrations=folder)
    assert code == 1 and "003_thing_3.py started at" in err
    code, out, _ = cli(backend, "db", "repair", resolution, "3", migrations=folder)
    assert code == 0 and out.startswith("Version 3 ")
    code, out, _ = cli(backend, "db", "migrate", migrations=folder)
    assert code == 0
    ran_again = "Applied 003" in out
    assert ran_again == (resolution == "--forget")
    assert ("thing_3" in tables(backend)) == (resolution == "--forget")
    assert [row[:2] for row in version_rows(backend)] == [(n, "applied") for n in range(1, 6)]


def test_repair_refuses_a_version_that_is_not_unfinished(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    cli(backend, "db", "migrate", migrations=folder)
    code, _, err = cli(backend, "db", "repair", "--forget", "2", migrations=folder)
    assert code == 2 and "Error: version 2 is not recorded as unfinished" in err
    assert len(version_rows(backend)) == 5


def test_a_migration_that_commits_on_its_own_is_stopped_before_the_commit(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    body = (
        "conn.execute(text('CREATE TABLE committed_early (id INTEGER PRIMARY KEY)'))\n"
        "conn.execute(text('INSERT INTO committed_early (id) VALUES (1)'))\n"
        "conn.commit()"
    )
    folder = make_migrations({"001_commits.py": migration(1, "Commits", body)})
    code, _, err = cli(backend, "db", "migrate", migrations=folder)
    assert code == 1
    assert "001_commits.py failed: upgrade() must not call conn.commit()" in err
    if backend.name == "mariadb":
        assert [row[:2] for row in version_rows(backend)] == [(1, "started")]
    else:
        assert "committed_early" not in tables(backend)
        assert version_rows(backend) == []


ORPHANS = {
    "delete": "conn.execute(text(\"DELETE FROM servers WHERE id = 's1'\"))",
    "drop": "conn.execute(text('DROP TABLE servers'))",
}


@pytest.mark.parametrize("how", sorted(ORPHANS))
def test_a_migration_that_would_orphan_child_rows_is_refused(
    backend: Backend, make_migrations: MakeMigrations, how: str
) -> None:
    """On SQLite enforcement is off during a migration, so the runner's check must catch it."""
    initial = (REAL_MIGRATIONS / "001_initial.py").read_text()
    folder = make_migrations(
        {"001_initial.py": initial, "002_orphan.py": migration(2, "Orphan", ORPHANS[how])}
    )
    cli(backend, "db", "migrate", "--target", "1", migrations=folder)
    seed_messages(backend, 3)
    code, _, err = cli(backend, "db", "migrate", migrations=folder)
    assert code == 1 and err.startswith("Error: 002_orphan.py failed: ")
    if backend.name == "sqlite":
        assert "it would break foreign keys" in err
    engine = backend.engine()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM servers")).scalar() == 1
        assert conn.execute(text("SELECT COUNT(*) FROM messages")).scalar() == 3
    engine.dispose()
    assert [row[0] for row in version_rows(backend) if row[1] == "applied"] == [1]


@pytest.mark.parametrize(
    ("body", "checked"),
    [
        ("conn.execute(text('ALTER TABLE servers ADD COLUMN note VARCHAR(20)'))", False),
        ("conn.execute(text('CREATE INDEX ix_servers_name ON servers (name)'))", False),
        (
            "conn.execute(text(\"INSERT INTO users (id, first_dm_acknowledged) VALUES ('u', 0)\"))",
            True,
        ),
        ("conn.execute(text('DROP TABLE draft_history'))", True),
    ],
    ids=["add-column", "create-index", "insert", "drop-table"],
)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_checks_foreign_keys_only_after_what_could_break_them(
    backend: Backend, make_migrations: MakeMigrations, body: str, checked: bool
) -> None:
    """The check reads every row with a foreign key: seconds on a big database, so it is
    skipped when the migration changed no row and dropped no table."""
    from tests.integration.test_ops import captured_sql

    initial = (REAL_MIGRATIONS / "001_initial.py").read_text()
    folder = make_migrations({"001_initial.py": initial, "002_change.py": migration(2, "C", body)})
    migrator.migrate(backend.settings(folder), target=1)
    with captured_sql() as statements:
        migrator.migrate(backend.settings(folder))
    assert ("PRAGMA foreign_key_check" in statements) == checked
