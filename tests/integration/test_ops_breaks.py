"""Cases found breaking issue 9's table-change helpers (zos.migrator.ops), each applied through
``zos db migrate`` as a migration author would. Every test states what should happen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import Engine

from tests.conftest import Backend, MakeMigrations, run_cli

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
MARIADB_ONLY = pytest.mark.parametrize("backend", ["mariadb"], indirect=True)


@pytest.fixture
def engine(backend: Backend) -> Iterator[Engine]:
    made = backend.engine()
    yield made
    made.dispose()


def run(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement, execution_options={"no_parameters": True})


def query(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(sql, execution_options={"no_parameters": True})
        return [tuple(row) for row in rows]


def migrate(backend: Backend, make_migrations: MakeMigrations, body: str) -> Result:
    """Apply one migration whose upgrade() runs ``body`` with ``ops`` and SQLAlchemy types."""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    source = (
        "from sqlalchemy import CHAR, BigInteger, Double, Float, Integer, String\n\n"
        "from zos.migrator import ops\n\nVERSION = 1\nDESCRIPTION = 'change a table'\n\n\n"
        f"def upgrade(conn):\n{indented}\n"
    )
    folder: Path = make_migrations({"001_change.py": source})
    return run_cli("db", "migrate", env=backend.env(folder))


@SQLITE_ONLY
def test_a_rebuild_keeps_a_trigger_whose_on_clause_spells_the_table_in_another_case(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    run(
        engine,
        "CREATE TABLE messages (a INT, b TEXT)",
        "CREATE TABLE log (x INT)",
        "CREATE TRIGGER tg AFTER INSERT ON Messages BEGIN INSERT INTO log VALUES (NEW.a); END",
    )
    result = migrate(
        backend, make_migrations, "ops.alter_column(conn, 'messages', 'b', nullable=False)"
    )
    assert result.exit_code == 0, result.stderr
    assert query(engine, "SELECT name FROM sqlite_master WHERE type = 'trigger'") == [("tg",)]
    run(engine, "INSERT INTO messages VALUES (5, 'x')")
    assert query(engine, "SELECT x FROM log") == [(5,)]


@SQLITE_ONLY
@pytest.mark.parametrize("strict", ["", " STRICT"])
@pytest.mark.parametrize("stored", ["007", "1.0", " 12"])
def test_sqlite_text_to_integer_fails_when_the_text_would_not_come_back_the_same(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations, strict: str, stored: str
) -> None:
    run(engine, f"CREATE TABLE v (x TEXT){strict}", f"INSERT INTO v VALUES ('{stored}')")
    result = migrate(backend, make_migrations, "ops.alter_column(conn, 'v', 'x', type_=Integer())")
    assert result.exit_code == 1, query(engine, "SELECT x, typeof(x) FROM v")
    assert query(engine, "SELECT x FROM v") == [(stored,)]


@SQLITE_ONLY
def test_sqlite_text_to_real_fails_when_the_text_would_not_come_back_the_same(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    run(engine, "CREATE TABLE v (x TEXT)", "INSERT INTO v VALUES ('1.10')")
    result = migrate(backend, make_migrations, "ops.alter_column(conn, 'v', 'x', type_=Float())")
    assert result.exit_code == 1, query(engine, "SELECT x, typeof(x) FROM v")
    assert query(engine, "SELECT x FROM v") == [("1.10",)]


@SQLITE_ONLY
def test_sqlite_integer_to_real_fails_when_the_integer_would_be_rounded(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    run(engine, "CREATE TABLE v (x INTEGER)", "INSERT INTO v VALUES (9007199254740993)")
    result = migrate(backend, make_migrations, "ops.alter_column(conn, 'v', 'x', type_=Float())")
    assert result.exit_code == 1, query(engine, "SELECT x, typeof(x) FROM v")
    assert query(engine, "SELECT x FROM v") == [(9007199254740993,)]


@MARIADB_ONLY
@pytest.mark.parametrize("stored", ["007", " 12"])
def test_mariadb_varchar_to_integer_fails_when_the_text_would_not_come_back_the_same(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations, stored: str
) -> None:
    run(engine, "CREATE TABLE v (x varchar(10))", f"INSERT INTO v VALUES ('{stored}')")
    result = migrate(backend, make_migrations, "ops.alter_column(conn, 'v', 'x', type_=Integer())")
    assert result.exit_code == 1, query(engine, "SELECT x FROM v")
    assert query(engine, "SELECT x FROM v") == [(stored,)]


@MARIADB_ONLY
def test_mariadb_bigint_to_double_fails_when_the_integer_would_be_rounded(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    run(engine, "CREATE TABLE v (x bigint)", "INSERT INTO v VALUES (9007199254740993)")
    result = migrate(backend, make_migrations, "ops.alter_column(conn, 'v', 'x', type_=Double())")
    assert result.exit_code == 1, query(engine, "SELECT x FROM v")
    assert query(engine, "SELECT x FROM v") == [(9007199254740993,)]


SERVERS = pytest.mark.parametrize("backend", ["postgresql", "mariadb"], indirect=True)
# A trigger on another table (b) that reads a.y.
OTHER_TABLE_TRIGGER = {
    "postgresql": [
        "CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN UPDATE a SET y = y + 1; RETURN NEW; END $$",
        "CREATE TRIGGER tb AFTER INSERT ON b FOR EACH ROW EXECUTE FUNCTION bump()",
    ],
    "mariadb": ["CREATE TRIGGER tb AFTER INSERT ON b FOR EACH ROW UPDATE a SET y = y + 1"],
}


@SERVERS
@pytest.mark.parametrize(
    "change",
    ["ops.rename_column(conn, 'a', 'y', 'yy')", "ops.drop_column(conn, 'a', 'y')"],
    ids=["rename", "drop"],
)
def test_a_column_read_by_a_trigger_on_another_table_is_not_renamed_or_dropped(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations, change: str
) -> None:
    run(
        engine,
        "CREATE TABLE a (x int, y int)",
        "CREATE TABLE b (x int)",
        *OTHER_TABLE_TRIGGER[backend.name],
        "INSERT INTO a VALUES (1, 2)",
    )
    result = migrate(backend, make_migrations, change)
    assert result.exit_code == 1, "applied: every INSERT INTO b now fails"
    run(engine, "INSERT INTO b VALUES (1)")
    assert query(engine, "SELECT x, y FROM a") == [(1, 3)]


@MARIADB_ONLY
@pytest.mark.parametrize(
    "change",
    ["ops.rename_column(conn, 'a', 'y', 'yy')", "ops.drop_column(conn, 'a', 'y')"],
    ids=["rename", "drop"],
)
def test_mariadb_a_column_read_by_a_view_through_an_alias_is_not_renamed_or_dropped(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations, change: str
) -> None:
    run(
        engine,
        "CREATE TABLE a (x int, y int)",
        "CREATE VIEW v AS SELECT q.y FROM a q",
        "INSERT INTO a VALUES (1, 2)",
    )
    result = migrate(backend, make_migrations, change)
    assert result.exit_code == 1, "applied: view v is now broken"
    assert query(engine, "SELECT y FROM v") == [(2,)]


@MARIADB_ONLY
def test_mariadb_varchar_to_char_fails_when_trailing_spaces_would_be_lost(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    run(engine, "CREATE TABLE t (c varchar(10))", "INSERT INTO t VALUES ('ab   ')")
    result = migrate(backend, make_migrations, "ops.alter_column(conn, 't', 'c', type_=CHAR(5))")
    assert result.exit_code == 1, query(engine, "SELECT concat('[', c, ']') FROM t")
    assert query(engine, "SELECT concat('[', c, ']') FROM t") == [("[ab   ]",)]


@SQLITE_ONLY
def test_sqlite_retyping_an_integer_primary_key_keeps_it_the_rowid_or_is_refused(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    run(engine, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t (v) VALUES ('a')")
    result = migrate(
        backend, make_migrations, "ops.alter_column(conn, 't', 'id', type_=BigInteger())"
    )
    if result.exit_code == 0:
        run(engine, "INSERT INTO t (v) VALUES ('b')")
        # A BIGINT PRIMARY KEY is no rowid alias: the new row's key is NULL.
        assert query(engine, "SELECT id, v FROM t ORDER BY rowid") == [(1, "a"), (2, "b")]
    else:
        assert query(engine, "SELECT sql FROM sqlite_master WHERE name = 't'") == [
            ("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",)
        ]


@SQLITE_ONLY
@pytest.mark.parametrize(
    "setup, name",
    [
        ("conn.exec_driver_sql('CREATE TEMP TABLE tt (a INT, b TEXT)')", "tt"),
        ("conn.exec_driver_sql('CREATE TABLE tt (a INT, b TEXT)')", "main.tt"),
    ],
    ids=["temp", "main-qualified"],
)
def test_sqlite_finds_temp_tables_and_schema_qualified_names_as_sqlite_does(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations, setup: str, name: str
) -> None:
    body = f"{setup}\nops.alter_column(conn, {name!r}, 'b', nullable=False, server_default=\"'x'\")"
    result = migrate(backend, make_migrations, body)
    assert result.exit_code == 0, result.stderr


@SQLITE_ONLY
def test_sqlite_main_qualified_name_changes_the_main_table_a_temp_table_hides(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    run(engine, "CREATE TABLE tt (a INT, b TEXT)", "INSERT INTO tt VALUES (1, 'm')")
    body = (
        "conn.exec_driver_sql('CREATE TEMP TABLE tt (a INT, b TEXT)')\n"
        "conn.exec_driver_sql(\"INSERT INTO temp.tt VALUES (2, 't')\")\n"
        "ops.alter_column(conn, 'main.tt', 'b', nullable=False)\n"
        "assert conn.exec_driver_sql('SELECT a FROM temp.tt').all() == [(2,)]"
    )
    result = migrate(backend, make_migrations, body)
    assert result.exit_code == 0, result.stderr
    assert query(engine, "SELECT a, b FROM tt") == [(1, "m")]
    assert query(engine, "SELECT name, \"notnull\" FROM pragma_table_info('tt')") == [
        ("a", 0),
        ("b", 1),
    ]


@SQLITE_ONLY
def test_sqlite_a_rebuild_refuses_rather_than_make_a_temp_trigger_permanent(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    run(engine, "CREATE TABLE t (a INT, b TEXT)", "CREATE TABLE log (x INT)")
    body = (
        "conn.exec_driver_sql('CREATE TEMP TRIGGER tg AFTER INSERT ON t"
        " BEGIN INSERT INTO log VALUES (NEW.a); END')\n"
        "ops.alter_column(conn, 't', 'b', nullable=False)"
    )
    result = migrate(backend, make_migrations, body)
    assert result.exit_code == 1
    assert "temporary trigger tg" in result.stderr
    assert query(engine, "SELECT name FROM sqlite_master WHERE type = 'trigger'") == []


POSTGRESQL_ONLY = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


@POSTGRESQL_ONLY
def test_postgresql_text_holding_json_becomes_jsonb(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    run(engine, "CREATE TABLE t (x text)", "INSERT INTO t VALUES ('{\"a\":1}')")
    result = migrate(
        backend,
        make_migrations,
        "from sqlalchemy.dialects.postgresql import JSONB\n"
        "ops.alter_column(conn, 't', 'x', type_=JSONB())",
    )
    assert result.exit_code == 0, result.stderr
    assert query(engine, "SELECT x FROM t") == [({"a": 1},)]


@SQLITE_ONLY
def test_sqlite_text_holding_json_becomes_json(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    run(engine, "CREATE TABLE t (x TEXT)", "INSERT INTO t VALUES ('{\"a\": 1}'), ('[1, 2]')")
    result = migrate(
        backend,
        make_migrations,
        "from sqlalchemy import JSON\nops.alter_column(conn, 't', 'x', type_=JSON())",
    )
    assert result.exit_code == 0, result.stderr
    assert query(engine, "SELECT x FROM t ORDER BY rowid") == [('{"a": 1}',), ("[1, 2]",)]


@SQLITE_ONLY
def test_sqlite_dropping_a_column_no_foreign_key_points_at_is_allowed(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    run(
        engine,
        "CREATE TABLE p (id INTEGER PRIMARY KEY, n TEXT)",
        "CREATE TABLE c (id INTEGER PRIMARY KEY, pid INT REFERENCES p)",  # p's primary key
        "INSERT INTO p VALUES (1, 'a')",
        "INSERT INTO c VALUES (1, 1)",
    )
    result = migrate(backend, make_migrations, "ops.drop_column(conn, 'p', 'n')")
    assert result.exit_code == 0, result.stderr
    assert query(engine, "SELECT * FROM p") == [(1,)]
    assert query(engine, "SELECT * FROM c") == [(1, 1)]


# Old column type (case-insensitive collation), and the case-sensitive collation asked for.
COLLATION_CHANGE = {
    "sqlite": ("TEXT COLLATE NOCASE", "RTRIM"),
    "postgresql": ('varchar(10) COLLATE "C"', "POSIX"),
    "mariadb": ("varchar(10) COLLATE utf8mb4_unicode_ci", "utf8mb4_bin"),
}


def test_a_type_change_with_a_collation_gives_the_column_that_collation(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    old, wanted = COLLATION_CHANGE[backend.name]
    run(engine, f"CREATE TABLE t (c {old})", "INSERT INTO t VALUES ('Ab')")
    result = migrate(
        backend,
        make_migrations,
        f"ops.alter_column(conn, 't', 'c', type_=String(20, collation={wanted!r}))",
    )
    assert result.exit_code == 0, result.stderr
    assert query(engine, "SELECT count(*) FROM t WHERE c = 'ab'") == [(0,)]
    if backend.name == "postgresql":
        collation = "SELECT collation_name FROM information_schema.columns WHERE table_name = 't'"
        assert query(engine, collation) == [(wanted,)]


@SQLITE_ONLY
@pytest.mark.parametrize("new_type", ["DateTime()", "Date()", "Time()"])
def test_sqlite_text_holding_dates_becomes_a_date_type(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations, new_type: str
) -> None:
    # SQLAlchemy stores dates as text on SQLite; DATETIME's NUMERIC affinity keeps them as text.
    stored = [("2020-01-02 03:04:05",), ("2020-01-02",), ("03:04:05",)]
    run(
        engine,
        "CREATE TABLE t (x TEXT)",
        "INSERT INTO t VALUES " + ", ".join(f"('{v}')" for (v,) in stored),
    )
    result = migrate(
        backend,
        make_migrations,
        f"from sqlalchemy import Date, DateTime, Time\n"
        f"ops.alter_column(conn, 't', 'x', type_={new_type})",
    )
    assert result.exit_code == 0, result.stderr
    assert query(engine, "SELECT x FROM t ORDER BY rowid") == stored


@SERVERS
@pytest.mark.parametrize(
    "change",
    [
        "ops.alter_column(conn, 'p%t', 'a%b', nullable=False)",
        "ops.rename_column(conn, 'p%t', 'a%b', 'c%d')",
        "ops.add_check(conn, 'p%t', 'ck', 'z > 0')",
        "ops.drop_column(conn, 'p%t', 'a%b')",
        "from sqlalchemy import Column\nops.add_column(conn, 'p%t', Column('n%m', Integer))",
    ],
    ids=["alter", "rename", "add_check", "drop", "add"],
)
def test_a_table_and_column_whose_names_hold_a_percent_sign_can_be_changed(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations, change: str
) -> None:
    q = "`" if backend.name == "mariadb" else '"'
    table = f"{q}p%t{q}"
    run(
        engine, f"CREATE TABLE {table} ({q}a%b{q} int, z int)", f"INSERT INTO {table} VALUES (1, 2)"
    )
    result = migrate(backend, make_migrations, change)
    assert result.exit_code == 0, result.stderr  # today: relation "p%%t" does not exist
    assert query(engine, f"SELECT z FROM {table}") == [(2,)]


@MARIADB_ONLY
@pytest.mark.parametrize(
    "default, inserted",
    [("\"b'011'\"", b"\x03"), ("None", None)],
    ids=["change", "remove"],
)
def test_mariadb_the_default_of_a_bit_column_can_be_changed_or_removed(
    backend: Backend,
    engine: Engine,
    make_migrations: MakeMigrations,
    default: str,
    inserted: object,
) -> None:
    # SHOW CREATE TABLE reports DEFAULT b'101': two tokens the MODIFY builder reads as one.
    run(engine, "CREATE TABLE t (id int, f bit(3) DEFAULT b'101')")
    result = migrate(
        backend, make_migrations, f"ops.alter_column(conn, 't', 'f', server_default={default})"
    )
    assert result.exit_code == 0, result.stderr
    run(engine, "INSERT INTO t (id) VALUES (1)")
    assert query(engine, "SELECT f FROM t") == [(inserted,)]


@SQLITE_ONLY
@pytest.mark.parametrize("old_type", ["REAL", "NUMERIC", "TEXT"])
def test_sqlite_a_fraction_does_not_stay_in_a_column_retyped_integer(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations, old_type: str
) -> None:
    # PostgreSQL and MariaDB refuse numeric -> integer over 3.75 (README); SQLite applies it
    # and keeps 3.75 as a REAL inside the INTEGER column.
    run(engine, f"CREATE TABLE t (x {old_type})", "INSERT INTO t VALUES (3.75)")
    result = migrate(backend, make_migrations, "ops.alter_column(conn, 't', 'x', type_=Integer())")
    assert result.exit_code == 1, query(engine, "SELECT x, typeof(x) FROM t")
    assert query(engine, "SELECT sql FROM sqlite_master WHERE name = 't'") == [
        (f"CREATE TABLE t (x {old_type})",)
    ]
