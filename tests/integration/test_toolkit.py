"""The operator's toolkit, through the real commands: history, dry run, backups, the start-up
guard and progress lines."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import REAL_MIGRATIONS, Backend, MakeMigrations, migration, run_cli, run_zos
from tests.integration.test_migrate import cli, five_migrations, tables, version_rows
from zos import migrator
from zos.errors import SchemaNotCurrent
from zos.migrator.discovery import discover_migrations

# history


def test_history_lists_each_applied_migration_with_its_file_state(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    cli(backend, "db", "migrate", "--target", "3", migrations=folder)
    (folder / "002_thing_2.py").write_text((folder / "002_thing_2.py").read_text() + "EDITED = 1\n")
    (folder / "003_thing_3.py").unlink()
    code, out, _ = cli(backend, "db", "history", migrations=folder)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["Version", "Applied", "at", "(UTC)", "Took", "File", "Description"]
    assert re.match(
        r"001 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +\d+ ms  unchanged  Create thing 1$", lines[1]
    )
    assert " changed " in lines[2] and lines[2].endswith("Create thing 2")
    assert " missing " in lines[3] and lines[3].endswith("Create thing 3")
    assert len(lines) == 4


def test_history_json_has_the_documented_fields(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    cli(backend, "db", "migrate", "--target", "2", migrations=folder)
    (folder / "002_thing_2.py").write_text("EDITED = 1\n" + (folder / "002_thing_2.py").read_text())
    code, out, _ = cli(backend, "db", "history", "--json", migrations=folder)
    entries = json.loads(out)
    assert code == 0
    assert [(e["version"], e["checksum_ok"], e["file"]) for e in entries] == [
        (1, True, "unchanged"),
        (2, False, "changed"),
    ]
    assert entries[0]["description"] == "Create thing 1"
    assert isinstance(entries[0]["duration_ms"], int)
    assert datetime.fromisoformat(entries[0]["applied_at"]).utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_history_of_a_fresh_database_is_empty_and_creates_nothing(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    assert cli(backend, "db", "history", migrations=folder)[:2] == (
        0,
        "No migrations applied yet\n",
    )
    assert cli(backend, "db", "history", "--json", migrations=folder)[1] == "[]\n"
    assert tables(backend) == set()


# dry run

FAILING_THIRD = "conn.execute(text('CREATE TABLE thing_1 (id INTEGER PRIMARY KEY)'))"


def test_dry_run_shows_the_plan_and_sql_and_changes_nothing(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    cli(backend, "db", "migrate", "--target", "2", migrations=folder)
    before = (tables(backend), version_rows(backend))
    files_before = sorted(p.name for p in (backend.tmp_path / "data").rglob("*"))
    code, out, err = cli(backend, "db", "migrate", "--dry-run", migrations=folder)
    assert (code, err) == (0, "")
    assert "nothing was changed" in out.splitlines()[0]
    assert "Would migrate from version 2 to 5:" in out
    for n in (3, 4, 5):
        assert f"  00{n}: Create thing {n}" in out
    if backend.name == "mariadb":
        assert "MariaDB/MySQL commit schema changes at once, so nothing was rehearsed" in out
    else:
        assert re.search(r"  003: Create thing 3 \(\d+ ms\)\n      CREATE TABLE thing_3", out)
    assert (tables(backend), version_rows(backend)) == before
    assert sorted(p.name for p in (backend.tmp_path / "data").rglob("*")) == files_before


def test_dry_run_reports_a_migration_that_would_fail_and_exits_1(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    (folder / "003_thing_3.py").write_text(migration(3, "Clash", FAILING_THIRD))
    cli(backend, "db", "migrate", "--target", "2", migrations=folder)
    before = (tables(backend), version_rows(backend))
    code, out, _ = cli(backend, "db", "migrate", "--dry-run", migrations=folder)
    if backend.name == "mariadb":
        assert code == 0 and "  003: Clash" in out  # the plan only: nothing can be rehearsed
    else:
        assert code == 1
        assert re.search(r"  003: Clash FAILED after \d+ ms: .*thing_1", out)
        assert "004" not in out.split("FAILED")[1]
    assert (tables(backend), version_rows(backend)) == before


def test_dry_run_on_a_database_with_nothing_pending(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    cli(backend, "db", "migrate", migrations=folder)
    code, out, _ = cli(backend, "db", "migrate", "--dry-run", migrations=folder)
    assert code == 0 and "Database already at version 5; nothing to do" in out


def test_dry_run_refuses_an_invalid_history_like_migrate(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    cli(backend, "db", "migrate", "--target", "2", migrations=folder)
    (folder / "001_thing_1.py").write_text((folder / "001_thing_1.py").read_text() + "EDITED = 1\n")
    code, _, err = cli(backend, "db", "migrate", "--dry-run", migrations=folder)
    assert code == 1 and "001_thing_1.py was changed after it was applied" in err


# backups


def backups(backend: Backend) -> list[str]:
    folder = backend.tmp_path / "data" / "backups"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_migrate_backs_up_an_sqlite_database_that_has_a_schema(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    code, out, _ = cli(backend, "db", "migrate", "--target", "2", migrations=folder)
    assert code == 0 and "Backup" not in out  # an empty database has nothing to lose
    code, out, _ = cli(backend, "db", "migrate", migrations=folder)
    assert code == 0
    if backend.name != "sqlite":
        tool = "pg_dump" if backend.name == "postgresql" else "mariadb-dump"
        assert "No copy taken: zos copies SQLite files only." in out
        assert out.index(tool) < out.index("Applying 003") and backups(backend) == []
        return
    [name] = backups(backend)
    assert re.fullmatch(r"zos-v002-\d{8}T\d{12}Z\.db", name)
    assert f"Backup of version 2 written to {backend.tmp_path / 'data' / 'backups' / name}" in out
    assert "Stop every zos process using" in out and "cp " in out
    assert out.index("Backup of version 2") < out.index("Applying 003")
    import sqlite3

    copy = sqlite3.connect(backend.tmp_path / "data" / "backups" / name)
    assert copy.execute("SELECT max(version) FROM _schema_version").fetchone() == (2,)
    copy.close()


def test_no_backup_skips_it_and_keep_limits_how_many_stay(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    cli(backend, "db", "migrate", "--target", "1", migrations=folder)
    env = backend.env(folder) | {"ZOS_BACKUPS__KEEP": "2"}
    assert run_cli("db", "migrate", "--target", "2", "--no-backup", env=env).exit_code == 0
    assert backups(backend) == []
    for target in ("3", "4", "5"):
        assert run_cli("db", "migrate", "--target", target, env=env).exit_code == 0
    expected = ["zos-v003", "zos-v004"] if backend.name == "sqlite" else []
    assert [name[:8] for name in backups(backend)] == expected


def test_backup_command_copies_sqlite_or_prints_the_server_dump_command(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    cli(backend, "db", "migrate", "--target", "4", migrations=folder)
    code, out, _ = cli(backend, "db", "backup", migrations=folder)
    assert code == 0
    if backend.name == "sqlite":
        [name] = backups(backend)
        assert name.startswith("zos-v004-")
        assert out.startswith("Backup of version 4 written to ")
    else:
        tool = "pg_dump" if backend.name == "postgresql" else "mariadb-dump"
        assert "backed up with their own tools" in out and tool in out
        assert backend.url.rsplit("/", 1)[1] in out


def test_backup_command_without_an_sqlite_database_is_an_error(tmp_path: Path) -> None:
    result = run_cli("db", "backup", env={"ZOS_DATA_DIR": str(tmp_path / "data")})
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: there is no SQLite database at")
    assert not (tmp_path / "data").exists()


# the start-up guard


def test_the_start_up_guard_passes_only_on_a_current_database(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = five_migrations(make_migrations)
    settings = backend.settings(folder)
    with pytest.raises(SchemaNotCurrent, match=r"5 migration\(s\) pending: .* at version 0"):
        migrator.ensure_schema_current(settings)
    migrator.migrate(settings)
    migrator.ensure_schema_current(settings)

    (folder / "002_thing_2.py").write_text((folder / "002_thing_2.py").read_text() + "EDITED = 1\n")
    with pytest.raises(SchemaNotCurrent, match=r"002_thing_2\.py was changed after it was applied"):
        migrator.ensure_schema_current(settings)

    older = make_migrations({"001_thing_1.py": (folder / "001_thing_1.py").read_text()})
    with pytest.raises(SchemaNotCurrent, match="newer than the newest migration file"):
        migrator.ensure_schema_current(backend.settings(older))


def test_the_start_up_guard_imports_no_migration_module(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"001_boom.py": migration(1, "Boom") + "raise SystemExit('!')\n"})
    with pytest.raises(SchemaNotCurrent, match="1 migration"):
        migrator.ensure_schema_current(backend.settings(folder))


# progress

SLOW_BODY = "import time\ntime.sleep(2.6)\nconn.execute(text('CREATE TABLE slow (id INTEGER)'))"


def test_each_migration_prints_a_start_and_an_end_line_and_a_long_one_shows_it_is_alive(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(
        {"001_quick.py": migration(1, "Quick"), "002_slow.py": migration(2, "Slow", SLOW_BODY)}
    )
    result = run_zos("db", "migrate", env=backend.env(folder))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "  Applying 001: Quick …"
    assert re.fullmatch(r"  Applied 001: Quick \(\d+ ms\)", lines[1])
    assert lines[2] == "  Applying 002: Slow …"
    # At least one heartbeat: a loaded machine may take long enough for a second one.
    alive = lines[3:-2]
    assert alive and all(re.fullmatch(r"  … 002 still running \(\d+ s\)", a) for a in alive)
    applied = re.fullmatch(r"  Applied 002: Slow \((\d+) ms\)", lines[-2])
    assert applied is not None and int(applied.group(1)) >= 2600
    assert lines[-1] == "Migrated from version 0 to 2"


# check


def test_check_passes_only_on_a_current_database_with_the_defined_schema(
    backend: Backend,
) -> None:
    code, _, err = cli(backend, "db", "check")
    assert code == 1
    head = discover_migrations(REAL_MIGRATIONS)[-1].version
    assert f"the database is at version 0, not {head}: pending 1" in err
    assert ("no database at" in err) == (backend.name == "sqlite")
    cli(backend, "db", "migrate")
    code, out, err = cli(backend, "db", "check")
    assert (code, out, err) == (0, "Database is current and its schema matches the code\n", "")


def test_check_names_each_hand_made_change_and_exits_1(backend: Backend) -> None:
    from sqlalchemy import text as sql

    cli(backend, "db", "migrate")
    drop_index = (
        "DROP INDEX ix_messages_author_created ON messages"
        if backend.name == "mariadb"
        else "DROP INDEX ix_messages_author_created"
    )
    engine = backend.engine()
    with engine.begin() as conn:
        conn.execute(sql("ALTER TABLE messages ADD COLUMN scratch_count INTEGER"))
        conn.execute(sql("DROP TABLE draft_history"))
        conn.execute(sql(drop_index))
    engine.dispose()
    code, out, err = cli(backend, "db", "check")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "3 problem(s) found:",
        "  - table draft_history is missing from the database",
        "  - table messages: column scratch_count is in the database but not in the schema",
        "  - table messages: index ix_messages_author_created is missing from the database",
    ]


def test_check_reports_pending_and_edited_migrations(
    backend: Backend, make_migrations: MakeMigrations
) -> None:
    from tests.conftest import REAL_MIGRATIONS

    folder = make_migrations(
        {
            "001_initial.py": (REAL_MIGRATIONS / "001_initial.py").read_text() + "EDITED = 1\n",
            "002_more.py": migration(2, "More"),
        }
    )
    cli(backend, "db", "migrate", "--target", "1", migrations=REAL_MIGRATIONS)
    code, _, err = cli(backend, "db", "check", migrations=folder)
    assert code == 1
    assert "the database is at version 1, not 2: pending 2" in err
    assert "001_initial.py was changed after it was applied" in err
