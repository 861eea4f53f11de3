"""Each case of issue 9 on the backends it names: a table change keeps rows, rowids and every
clause it was not asked to change, or refuses with nothing changed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Column, Connection, Engine, Integer, String, exc, text

from tests.conftest import Backend, MakeMigrations, run_cli
from zos.database import set_foreign_keys
from zos.migrator import ops

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
POSTGRESQL_ONLY = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
MARIADB_ONLY = pytest.mark.parametrize("backend", ["mariadb"], indirect=True)


@contextmanager
def migration_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection as the runner gives it to ``upgrade()``: in a transaction, and on SQLite
    with foreign keys off (set outside the transaction) and checked before the commit."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            set_foreign_keys(conn, False)
        with conn.begin():
            yield conn
            if sqlite:
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        if sqlite:
            set_foreign_keys(conn, True)


def run(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement, execution_options={"no_parameters": True})


def query(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.exec_driver_sql(sql)]


def stored_sql(engine: Engine, name: str) -> str:
    return str(query(engine, f"SELECT sql FROM sqlite_master WHERE name = '{name}'")[0][0])


def schema(engine: Engine) -> list[tuple[Any, ...]]:
    return query(engine, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")


def refused_unchanged(engine: Engine, change: Callable[[Connection], None], match: str) -> None:
    """``change`` raises inside the migration's transaction, and the schema and rows are as
    they were even before the transaction is rolled back (the change took its savepoint back)."""
    before = schema(engine)
    with engine.connect() as conn:
        set_foreign_keys(conn, False)
        with conn.begin():
            with pytest.raises((ops.Refused, exc.DBAPIError), match=match):
                change(conn)
            inside = conn.exec_driver_sql(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
            ).all()
            assert [tuple(row) for row in inside] == before
    assert schema(engine) == before


@pytest.fixture
def engine(backend: Backend) -> Iterator[Engine]:
    made = backend.engine()
    yield made
    made.dispose()


@SQLITE_ONLY
def test_a_rebuild_keeps_the_rowids_of_a_table_without_integer_primary_key(engine: Engine) -> None:
    run(
        engine,
        "CREATE TABLE r (name TEXT NOT NULL, n INTEGER)",
        "INSERT INTO r (rowid, name, n) VALUES (2, 'a', 1), (4, 'b', NULL)",
    )
    with migration_transaction(engine) as conn:
        ops.alter_column(conn, "r", "name", nullable=True)
    assert query(engine, "SELECT rowid, name, n FROM r ORDER BY rowid") == [
        (2, "a", 1),
        (4, "b", None),
    ]
    assert stored_sql(engine, "r") == 'CREATE TABLE "r" (name TEXT, n INTEGER)'


@SQLITE_ONLY
def test_an_int_primary_key_stays_as_declared_and_keeps_its_null_key(engine: Engine) -> None:
    run(
        engine,
        "CREATE TABLE k (id INT PRIMARY KEY, v TEXT NOT NULL)",
        "INSERT INTO k (rowid, id, v) VALUES (7, NULL, 'null key'), (9, 5, 'five')",
    )
    with migration_transaction(engine) as conn:
        ops.alter_column(conn, "k", "v", nullable=True)
    assert stored_sql(engine, "k") == 'CREATE TABLE "k" (id INT PRIMARY KEY, v TEXT)'
    assert query(engine, "SELECT rowid, id, v FROM k ORDER BY rowid") == [
        (7, None, "null key"),
        (9, 5, "five"),
    ]


@SQLITE_ONLY
def test_colons_and_percent_signs_in_defaults_and_checks_survive_a_rebuild(
    engine: Engine,
) -> None:
    run(
        engine,
        "CREATE TABLE c (doc TEXT DEFAULT '{\"version\":1}',"
        " tag TEXT CHECK (tag IN (':x', ':y', ':b')), pct TEXT DEFAULT '100%', n INT)",
    )
    with migration_transaction(engine) as conn:
        ops.alter_column(conn, "c", "n", nullable=False, server_default="0")
        ops.add_check(conn, "c", "ck_pct", "pct LIKE '%\\%' ESCAPE '\\' OR pct = ':n'")
    assert stored_sql(engine, "c") == (
        'CREATE TABLE "c" (doc TEXT DEFAULT \'{"version":1}\','
        " tag TEXT CHECK (tag IN (':x', ':y', ':b')), pct TEXT DEFAULT '100%', n INT NOT NULL"
        " DEFAULT 0, CONSTRAINT \"ck_pct\" CHECK (pct LIKE '%\\%' ESCAPE '\\' OR pct = ':n'))"
    )
    run(engine, "INSERT INTO c (tag) VALUES (':y')")
    assert query(engine, "SELECT doc, tag, pct, n FROM c") == [('{"version":1}', ":y", "100%", 0)]


@SQLITE_ONLY
def test_a_table_name_is_found_whatever_its_case_and_keeps_keys_checks_indexes_triggers(
    engine: Engine,
) -> None:
    run(
        engine,
        "CREATE TABLE messages (id TEXT PRIMARY KEY, body TEXT NOT NULL, n INT UNIQUE,"
        " CONSTRAINT positive CHECK (n > 0))",
        "CREATE INDEX ix_body ON messages (body)",
        "CREATE TABLE log (what TEXT)",
        "CREATE TRIGGER t_log AFTER INSERT ON messages BEGIN INSERT INTO log VALUES (NEW.id); END",
        "INSERT INTO messages VALUES ('a', 'x', 1)",
    )
    before = schema(engine)
    with migration_transaction(engine) as conn:
        ops.alter_column(conn, "Messages", "body", nullable=True)
    after = schema(engine)
    assert [row for row in after if row[1] != "messages"] == [
        row for row in before if row[1] != "messages"
    ]
    assert stored_sql(engine, "messages") == (
        'CREATE TABLE "messages" (id TEXT PRIMARY KEY, body TEXT, n INT UNIQUE,'
        " CONSTRAINT positive CHECK (n > 0))"
    )
    run(engine, "INSERT INTO messages VALUES ('b', NULL, 2)")
    assert query(engine, "SELECT what FROM log ORDER BY what") == [("a",), ("b",)]
    for key, n in (("a", 3), ("c", 2), ("d", -1)):  # primary key, UNIQUE, CHECK
        with pytest.raises(exc.IntegrityError):
            run(engine, f"INSERT INTO messages VALUES ('{key}', 'y', {n})")


@SQLITE_ONLY
def test_collate_nocase_is_kept_when_another_column_causes_the_rebuild(engine: Engine) -> None:
    run(
        engine,
        "CREATE TABLE u (name TEXT COLLATE NOCASE UNIQUE, age INT)",
        "INSERT INTO u VALUES ('Bob', 1)",
    )
    with migration_transaction(engine) as conn:
        ops.alter_column(conn, "u", "age", nullable=False)
    with pytest.raises(exc.IntegrityError):
        run(engine, "INSERT INTO u VALUES ('bob', 2)")
    assert "name TEXT COLLATE NOCASE UNIQUE" in stored_sql(engine, "u")


@SQLITE_ONLY
@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "not-indexed"])
def test_dropping_a_column_a_view_or_trigger_reads_is_refused(
    engine: Engine, indexed: bool
) -> None:
    run(
        engine,
        "CREATE TABLE p (id INTEGER PRIMARY KEY, score INT, note TEXT)",
        "CREATE TABLE audit (score INT)",
        "CREATE VIEW high AS SELECT id FROM p WHERE score > 10",
        "INSERT INTO p VALUES (1, 20, 'a')",
        *(["CREATE INDEX ix_score ON p (score)"] if indexed else []),
    )
    refused_unchanged(engine, lambda conn: ops.drop_column(conn, "p", "score"), "view high")
    run(engine, "DROP VIEW high")
    run(
        engine,
        "CREATE TRIGGER keep AFTER INSERT ON p BEGIN INSERT INTO audit VALUES (NEW.score); END",
    )
    refused_unchanged(engine, lambda conn: ops.drop_column(conn, "p", "score"), "trigger keep")
    assert query(engine, "SELECT * FROM p") == [(1, 20, "a")]


@SQLITE_ONLY
def test_a_type_change_fails_when_a_value_does_not_convert(engine: Engine) -> None:
    run(engine, "CREATE TABLE v (x TEXT, y TEXT)", "INSERT INTO v VALUES ('abc', '12')")
    refused_unchanged(
        engine,
        lambda conn: ops.alter_column(conn, "v", "x", type_=Integer()),
        "column x: a value cannot be stored as INTEGER",
    )
    with migration_transaction(engine) as conn:
        ops.alter_column(conn, "v", "y", type_=Integer())
    assert query(engine, "SELECT x, y, typeof(y) FROM v") == [("abc", 12, "integer")]


@SQLITE_ONLY
def test_a_real_that_text_would_round_is_refused(engine: Engine) -> None:
    run(engine, "CREATE TABLE f (x REAL)", "INSERT INTO f VALUES (0.1 + 0.2)")
    refused_unchanged(
        engine,
        lambda conn: ops.alter_column(conn, "f", "x", type_=String(40)),
        "cannot be stored as VARCHAR",
    )


@SQLITE_ONLY
def test_an_autoincrement_table_is_rebuilt_keeping_its_counter(engine: Engine) -> None:
    run(
        engine,
        "CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT NOT NULL)",
        "INSERT INTO a (v) VALUES ('one'), ('two'), ('three')",
        "DELETE FROM a WHERE id = 3",
    )
    with migration_transaction(engine) as conn:
        ops.alter_column(conn, "a", "v", nullable=True)
    run(engine, "INSERT INTO a (v) VALUES (NULL)")
    assert query(engine, "SELECT id, v FROM a ORDER BY id") == [
        (1, "one"),
        (2, "two"),
        (4, None),
    ]
    assert "AUTOINCREMENT" in stored_sql(engine, "a")


def test_percent_signs_in_a_check_and_a_default_reach_the_database(
    backend: Backend, engine: Engine
) -> None:
    run(engine, "CREATE TABLE codes (id INT PRIMARY KEY, code VARCHAR(20), rate VARCHAR(10))")
    run(engine, "INSERT INTO codes (id, code) VALUES (1, 'a1')")
    with migration_transaction(engine) as conn:
        ops.add_check(conn, "codes", "ck_code", "code LIKE 'a%'")
        ops.alter_column(conn, "codes", "rate", server_default="'100%'")
        ops.add_column(conn, "codes", Column("unit", String(10), server_default="5%"))
    run(engine, "INSERT INTO codes (id, code) VALUES (2, 'a2')")
    assert query(engine, "SELECT id, code, rate, unit FROM codes ORDER BY id") == [
        (1, "a1", None, "5%"),
        (2, "a2", "100%", "5%"),
    ]
    with pytest.raises(exc.DBAPIError):
        run(engine, "INSERT INTO codes (id, code) VALUES (3, 'b')")


@POSTGRESQL_ONLY
def test_postgresql_narrowing_a_varchar_over_a_long_value_fails_instead_of_truncating(
    engine: Engine,
) -> None:
    run(engine, "CREATE TABLE s (code VARCHAR(20))", "INSERT INTO s VALUES ('abcdefghij')")
    with pytest.raises(ops.Refused, match="would change"), migration_transaction(engine) as conn:
        ops.alter_column(conn, "s", "code", type_=String(5))
    assert query(engine, "SELECT code FROM s") == [("abcdefghij",)]
    assert query(engine, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                 " WHERE attrelid = 's'::regclass AND attname = 'code'") == [
        ("character varying(20)",)
    ]  # fmt: skip
    run(engine, "UPDATE s SET code = 'abc'")
    with migration_transaction(engine) as conn:
        ops.alter_column(conn, "s", "code", type_=String(5))
    assert query(engine, "SELECT code FROM s") == [("abc",)]


@POSTGRESQL_ONLY
def test_postgresql_changes_type_and_default_in_one_call(engine: Engine) -> None:
    run(engine, "CREATE TABLE d (n TEXT DEFAULT 'x')", "INSERT INTO d VALUES ('5')")
    with migration_transaction(engine) as conn:
        ops.alter_column(conn, "d", "n", type_=Integer(), server_default="7")
    run(engine, "INSERT INTO d DEFAULT VALUES")
    assert query(engine, "SELECT n FROM d ORDER BY n") == [(5,), (7,)]


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"], indirect=True)
def test_a_numeric_change_that_would_round_is_refused_on_the_servers(engine: Engine) -> None:
    run(engine, "CREATE TABLE m (x NUMERIC(10, 2))", "INSERT INTO m VALUES (3.75), (2.00)")
    with pytest.raises(ops.Refused, match="1 value"), migration_transaction(engine) as conn:
        ops.alter_column(conn, "m", "x", type_=Integer())
    assert [str(x) for (x,) in query(engine, "SELECT x FROM m ORDER BY x")] == ["2.00", "3.75"]
    run(engine, "DELETE FROM m WHERE x > 3")
    with migration_transaction(engine) as conn:
        ops.alter_column(conn, "m", "x", type_=Integer())
    assert query(engine, "SELECT x FROM m") == [(2,)]


def mariadb_column(engine: Engine, table: str, name: str) -> str:
    from zos.migrator.ops.mysql import column_definition

    create = query(engine, f"SHOW CREATE TABLE {table}")[0][1]
    return column_definition(str(create), name)


@MARIADB_ONLY
def test_mariadb_keeps_checks_json_validity_and_auto_increment(engine: Engine) -> None:
    run(
        engine,
        "CREATE TABLE inv (id INT AUTO_INCREMENT PRIMARY KEY, qty INT CHECK (qty >= 0),"
        " doc JSON COMMENT 'the % doc', name VARCHAR(20) COLLATE utf8mb4_bin,"
        " at TIMESTAMP NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp())",
        "INSERT INTO inv (qty, doc, name) VALUES (1, '{}', 'Bob')",
    )
    with migration_transaction(engine) as conn:
        ops.alter_column(conn, "inv", "qty", nullable=False)
        ops.alter_column(conn, "inv", "doc", nullable=False)
        ops.alter_column(conn, "inv", "id", type_=Integer())
        ops.alter_column(conn, "inv", "name", type_=String(40))
        ops.alter_column(conn, "inv", "at", nullable=False)
    assert mariadb_column(engine, "inv", "qty") == "`qty` int(11) NOT NULL CHECK (`qty` >= 0)"
    assert mariadb_column(engine, "inv", "doc") == (
        "`doc` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"
        " COMMENT 'the % doc' CHECK (json_valid(`doc`))"
    )
    assert "AUTO_INCREMENT" in mariadb_column(engine, "inv", "id")
    assert "COLLATE utf8mb4_bin" in mariadb_column(engine, "inv", "name")
    assert "ON UPDATE current_timestamp()" in mariadb_column(engine, "inv", "at")
    for qty, doc in (("-1", "'{}'"), ("1", "'not json'")):
        with pytest.raises(exc.DBAPIError):
            run(engine, f"INSERT INTO inv (qty, doc) VALUES ({qty}, {doc})")
    run(engine, "INSERT INTO inv (qty, doc) VALUES (2, '[]')")
    assert query(engine, "SELECT id, qty FROM inv ORDER BY id") == [(1, 1), (2, 2)]


@SQLITE_ONLY
def test_through_zos_db_migrate_a_rebuild_keeps_rowids_and_awkward_defaults(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    run(
        engine,
        "CREATE TABLE r (name TEXT NOT NULL, doc TEXT DEFAULT '{\"v\":1}' CHECK (doc <> ':b'))",
        "INSERT INTO r (rowid, name) VALUES (2, 'a'), (4, 'b')",
    )
    body = (
        "from zos.migrator import ops\n\nVERSION = 1\nDESCRIPTION = 'loosen r'\n\n\n"
        "def upgrade(conn):\n    ops.alter_column(conn, 'r', 'name', nullable=True)\n"
    )
    folder = make_migrations({"001_loosen.py": body})
    result = run_cli("db", "migrate", env=backend.env(folder))
    assert result.exit_code == 0, result.stderr
    assert query(engine, "SELECT rowid, name, doc FROM r ORDER BY rowid") == [
        (2, "a", '{"v":1}'),
        (4, "b", '{"v":1}'),
    ]
    assert stored_sql(engine, "r") == (
        "CREATE TABLE \"r\" (name TEXT, doc TEXT DEFAULT '{\"v\":1}' CHECK (doc <> ':b'))"
    )


@SQLITE_ONLY
def test_through_zos_db_migrate_a_value_that_does_not_convert_fails_the_migration(
    backend: Backend, engine: Engine, make_migrations: MakeMigrations
) -> None:
    run(engine, "CREATE TABLE v (x TEXT)", "INSERT INTO v VALUES ('abc')")
    body = (
        "from sqlalchemy import Integer\n\nfrom zos.migrator import ops\n\n"
        "VERSION = 1\nDESCRIPTION = 'x to integer'\n\n\n"
        "def upgrade(conn):\n    ops.alter_column(conn, 'v', 'x', type_=Integer())\n"
    )
    folder = make_migrations({"001_retype.py": body})
    result = run_cli("db", "migrate", env=backend.env(folder))
    assert result.exit_code == 1
    assert result.stderr.count("Error:") == 1 and "Traceback" not in result.stderr
    assert "cannot be stored as INTEGER" in result.stderr
    assert stored_sql(engine, "v") == "CREATE TABLE v (x TEXT)"
    assert query(engine, "SELECT x FROM v") == [("abc",)]


TRIGGERS = {
    "sqlite": [
        "CREATE TRIGGER keep AFTER INSERT ON p BEGIN INSERT INTO audit VALUES (NEW.score); END"
    ],
    "postgresql": [
        "CREATE FUNCTION keep_score() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN INSERT INTO audit VALUES (NEW.score); RETURN NEW; END $$",
        "CREATE TRIGGER keep AFTER INSERT ON p FOR EACH ROW EXECUTE FUNCTION keep_score()",
    ],
    "mariadb": [
        "CREATE TRIGGER keep AFTER INSERT ON p FOR EACH ROW INSERT INTO audit VALUES (NEW.score)"
    ],
}


def test_dropping_a_column_that_a_view_or_trigger_reads_is_refused_on_every_backend(
    backend: Backend, engine: Engine
) -> None:
    run(
        engine,
        "CREATE TABLE p (id INT PRIMARY KEY, score INT, note VARCHAR(10))",
        "CREATE TABLE audit (score INT)",
        "CREATE INDEX ix_score ON p (score)",
        "CREATE VIEW high AS SELECT id FROM p WHERE score > 10",
        "INSERT INTO p VALUES (1, 20, 'a')",
    )
    # PostgreSQL refuses the view itself ("other objects depend on it"); zos refuses elsewhere.
    refusal = exc.DBAPIError if backend.name == "postgresql" else ops.Refused
    with pytest.raises(refusal), migration_transaction(engine) as conn:
        ops.drop_column(conn, "p", "score")
    run(engine, "DROP VIEW high", *TRIGGERS[backend.name])
    with pytest.raises(ops.Refused, match="trigger keep"), migration_transaction(engine) as conn:
        ops.drop_column(conn, "p", "score")
    assert query(engine, "SELECT id, score, note FROM p") == [(1, 20, "a")]
    with migration_transaction(engine) as conn:
        ops.drop_column(conn, "p", "note")  # read by neither
    assert query(engine, "SELECT * FROM p") == [(1, 20)]


def test_a_text_default_whose_colon_sqlalchemy_would_drop_is_refused(
    backend: Backend, engine: Engine
) -> None:
    run(engine, "CREATE TABLE docs (id INT PRIMARY KEY)")
    column = Column("doc", String(20), server_default=text("'{\"v\":1}'"))
    with pytest.raises(ops.Refused, match=r":1"), migration_transaction(engine) as conn:
        ops.add_column(conn, "docs", column)
    escaped = Column("doc", String(20), server_default=text("'{\"v\"\\:1}'"))
    with migration_transaction(engine) as conn:
        ops.add_column(conn, "docs", escaped)
    run(engine, "INSERT INTO docs (id) VALUES (1)")
    assert query(engine, "SELECT doc FROM docs") == [('{"v":1}',)]


def test_renaming_a_column_carries_its_readers_along_or_is_refused(
    backend: Backend, engine: Engine
) -> None:
    """SQLite renames the column inside views and triggers, PostgreSQL inside views; what
    would keep the old name (a PostgreSQL trigger function, a MariaDB view or trigger) is
    refused with nothing changed."""
    run(
        engine,
        "CREATE TABLE p (id INT PRIMARY KEY, score INT, note VARCHAR(10))",
        "CREATE TABLE audit (score INT)",
        "CREATE VIEW high AS SELECT id, score FROM p WHERE score > 10",
        "INSERT INTO p VALUES (1, 20, 'a')",
    )
    if backend.name == "mariadb":
        with pytest.raises(ops.Refused, match="view high"), migration_transaction(engine) as conn:
            ops.rename_column(conn, "p", "score", "points")
        run(engine, "DROP VIEW high")
    else:
        with migration_transaction(engine) as conn:
            ops.rename_column(conn, "p", "score", "points")
        assert query(engine, "SELECT id FROM high") == [(1,)]
        with migration_transaction(engine) as conn:
            ops.rename_column(conn, "p", "points", "score")
    run(engine, *TRIGGERS[backend.name])
    if backend.name == "sqlite":
        with migration_transaction(engine) as conn:
            ops.rename_column(conn, "p", "score", "points")
        run(engine, "INSERT INTO p VALUES (2, 30, 'b')")
        assert query(engine, "SELECT score FROM audit") == [(30,)]
    else:
        with pytest.raises(ops.Refused, match="trigger keep"), migration_transaction(engine) as c:
            ops.rename_column(c, "p", "score", "points")
        assert query(engine, "SELECT id, score FROM p") == [(1, 20)]
