"""The pure half of the SQLite rebuild: the tokenizer gives back every character, the parser
finds each clause or refuses, and the planned statements change only what was asked."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zos.migrator.ops import Refused
from zos.migrator.ops.mysql import column_definition, modified_definition
from zos.migrator.ops.sqlite_rebuild import (
    SchemaEntry,
    add_constraint,
    alter_column,
    default_sql,
    drop_column,
    drop_constraint,
    plan_rebuild,
)
from zos.migrator.ops.sqlite_text import parse_table
from zos.migrator.ops.sqlite_tokens import DefinitionUnreadable, tokenize

AWKWARD = (
    'CREATE TABLE "Odd ""T""" (\n'
    "  [id x] INT PRIMARY KEY, -- not a rowid alias\n"
    "  `tag` TEXT COLLATE NOCASE DEFAULT '{\"version\":1}' CHECK (tag IN (':x', ':y', '100%')),\n"
    "  n NUMERIC(10, 2) NOT NULL ON CONFLICT REPLACE DEFAULT -1 /* (,) */,\n"
    "  g AS (n * 2) STORED,\n"
    "  p TEXT REFERENCES parent (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,\n"
    "  CONSTRAINT uq UNIQUE (tag COLLATE BINARY, n DESC) ON CONFLICT IGNORE,\n"
    "  CONSTRAINT ck CHECK (n > 0 OR tag = 'a,b')\n"
    ") STRICT, WITHOUT ROWID"
)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab '\"`[]()-*/,\n\\x1.e+:%é"), max_size=60))
def test_tokens_join_back_into_the_exact_text_or_the_quote_is_reported(sql: str) -> None:
    try:
        tokens = tokenize(sql)
    except DefinitionUnreadable:
        return
    assert "".join(token.text for token in tokens) == sql


def test_every_clause_of_an_awkward_table_is_found_with_its_exact_text() -> None:
    table = parse_table(AWKWARD)
    assert table.name == 'Odd "T"'
    assert [c.name for c in table.columns] == ["id x", "tag", "n", "g", "p"]
    assert [c.type_text for c in table.columns] == ["INT", "TEXT", "NUMERIC(10, 2)", "", "TEXT"]
    assert table.rowid_alias() is None
    assert table.options == ("STRICT", "WITHOUT", "ROWID")
    tag = table.columns[1]
    assert [c.kind for c in tag.constraints] == ["COLLATE", "DEFAULT", "CHECK"]
    default = tag.find("DEFAULT")[0].body
    assert AWKWARD[default.start : default.end] == "'{\"version\":1}'"
    assert [(c.kind, c.name, c.names) for c in table.constraints] == [
        ("UNIQUE", "uq", ("tag", "n")),
        ("CHECK", "ck", ("n", "OR", "tag")),
    ]


def test_changing_one_column_leaves_every_other_character_as_stored() -> None:
    table = parse_table(AWKWARD)
    changed = alter_column(table, "N", type_sql="INTEGER", nullable=True, default="'100%'")
    expected = AWKWARD.replace(
        "n NUMERIC(10, 2) NOT NULL ON CONFLICT REPLACE DEFAULT -1", "n INTEGER DEFAULT '100%'"
    )
    assert changed == expected


@pytest.mark.parametrize(
    ("default", "written"),
    [("0", "0"), ("-1", "-1"), ("'a:b'", "'a:b'"), ("CURRENT_TIMESTAMP", "CURRENT_TIMESTAMP"),
     ("(1 + 2)", "(1 + 2)"), ("1 + 2", "(1 + 2)"), ("lower('A')", "(lower('A'))")],
)  # fmt: skip
def test_a_default_is_written_as_sqlite_takes_it(default: str, written: str) -> None:
    assert default_sql(default) == written


def test_nullability_is_added_and_removed_without_touching_other_clauses() -> None:
    table = parse_table("CREATE TABLE t (a TEXT NULL COLLATE NOCASE, b INT NOT NULL UNIQUE)")
    assert alter_column(table, "a", nullable=False) == (
        "CREATE TABLE t (a TEXT COLLATE NOCASE NOT NULL, b INT NOT NULL UNIQUE)"
    )
    assert alter_column(table, "b", nullable=True) == (
        "CREATE TABLE t (a TEXT NULL COLLATE NOCASE, b INT UNIQUE)"
    )
    assert alter_column(table, "b", nullable=False) == table.sql  # already so: nothing changes


def test_named_constraints_are_added_and_dropped_where_they_stand() -> None:
    table = parse_table("CREATE TABLE t (a INT CONSTRAINT pos CHECK (a > 0), b INT, UNIQUE (b))")
    assert drop_constraint(table, "CHECK", "POS") == "CREATE TABLE t (a INT, b INT, UNIQUE (b))"
    added = add_constraint(table, "CONSTRAINT \"c\" CHECK (b LIKE 'a%')")
    assert added.endswith("UNIQUE (b), CONSTRAINT \"c\" CHECK (b LIKE 'a%'))")
    with pytest.raises(LookupError, match="no UNIQUE constraint named nope"):
        drop_constraint(table, "UNIQUE", "nope")


def test_dropping_a_column_takes_its_keys_but_refuses_a_check_that_reads_it() -> None:
    table = parse_table(
        "CREATE TABLE t (a INT, b INT, c INT, UNIQUE (a, b), FOREIGN KEY (b) REFERENCES p (x),"
        " CHECK (c > 0))"
    )
    assert drop_column(table, "b") == "CREATE TABLE t (a INT, c INT, CHECK (c > 0))"
    with pytest.raises(Refused, match="CHECK constraint"):
        drop_column(table, "c")


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE VIRTUAL TABLE f USING fts5(a)",
        "CREATE TABLE t (a INT DEFAULT)",
        "CREATE TABLE t (a INT(1) WEIRD)",
        "CREATE TABLE t (a INT, b 'unterminated)",
        "CREATE TABLE t (a INT,)",
        "CREATE TABLE t (a INT REFERENCES p ON DELETE EXPLODE)",
        "CREATE TABLE t (UNIQUE (a), a INT)",
    ],
)
def test_a_definition_outside_the_grammar_is_refused_not_guessed(sql: str) -> None:
    with pytest.raises(DefinitionUnreadable):
        parse_table(sql)


def test_the_planned_rebuild_copies_rowids_and_keeps_the_autoincrement_counter() -> None:
    old = parse_table("CREATE TABLE r (name TEXT NOT NULL, n INTEGER)")
    plan = plan_rebuild(
        old,
        alter_column(old, "name", nullable=True),
        [SchemaEntry("index", "ix", "r", "CREATE INDEX ix ON r (n)")],
    )
    assert plan.statements == [
        'CREATE TABLE "_zos_rebuild_r" (name TEXT, n INTEGER)',
        'INSERT INTO "_zos_rebuild_r" (rowid, "name", "n") SELECT rowid, "name", "n" FROM "r"',
        'DROP TABLE "r"',
        "PRAGMA legacy_alter_table = ON",
        'ALTER TABLE "_zos_rebuild_r" RENAME TO "r"',
        "PRAGMA legacy_alter_table = OFF",
        "CREATE INDEX ix ON r (n)",
    ]
    counted = parse_table("CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)")
    plan = plan_rebuild(counted, alter_column(counted, "v", nullable=False), [], sequence=41)
    assert (
        plan.statements[1] == 'INSERT INTO "_zos_rebuild_a" ("id", "v") SELECT "id", "v" FROM "a"'
    )
    assert plan.statements[-2:] == [
        "DELETE FROM sqlite_sequence WHERE name = 'a'",
        "INSERT INTO sqlite_sequence (name, seq) VALUES ('a', 41)",
    ]


def test_a_type_change_plans_a_check_that_every_value_converted() -> None:
    old = parse_table("CREATE TABLE t (v TEXT)")
    plan = plan_rebuild(old, alter_column(old, "v", type_sql="INTEGER"), [])
    checks = [check.sql for check in plan.checks]
    assert (
        "SELECT count(*) FROM \"_zos_rebuild_t\" WHERE typeof(\"v\") IN ('text', 'blob')" in checks
    )
    assert any("quote(" in sql for sql in checks)  # and that each value comes back the same


MARIADB_TABLE = (
    "CREATE TABLE `t` (\n"
    "  `id` int(11) NOT NULL AUTO_INCREMENT,\n"
    "  `qty` int(11) DEFAULT NULL CHECK (`qty` >= 0),\n"
    "  `doc` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL"
    " COMMENT 'it''s, (json)' CHECK (json_valid(`doc`)),\n"
    "  `at` timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),\n"
    "  PRIMARY KEY (`id`)\n"
    ") ENGINE=InnoDB"
)


def test_a_mariadb_column_keeps_every_attribute_it_was_not_asked_to_change() -> None:
    qty = column_definition(MARIADB_TABLE, "QTY")
    assert qty == "`qty` int(11) DEFAULT NULL CHECK (`qty` >= 0)"
    assert modified_definition(qty, type_sql=None, nullable=False, default=None) == (
        "`qty` int(11) NOT NULL CHECK (`qty` >= 0)"
    )
    doc = column_definition(MARIADB_TABLE, "doc")
    assert modified_definition(doc, type_sql=None, nullable=False) == (
        "`doc` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"
        " COMMENT 'it''s, (json)' CHECK (json_valid(`doc`))"
    )
    ident = column_definition(MARIADB_TABLE, "id")
    assert modified_definition(ident, type_sql="BIGINT", nullable=None) == (
        "`id` BIGINT NOT NULL AUTO_INCREMENT"
    )
    at = column_definition(MARIADB_TABLE, "at")
    assert modified_definition(at, type_sql=None, nullable=None, default="'2020-01-01'") == (
        "`at` timestamp NOT NULL DEFAULT '2020-01-01' ON UPDATE current_timestamp()"
    )


def test_what_sqlite_would_reject_in_the_new_table_is_refused_with_a_reason() -> None:
    counted = parse_table("CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)")
    with pytest.raises(Refused, match="AUTOINCREMENT"):
        alter_column(counted, "id", type_sql="TEXT")
    keyed = parse_table("CREATE TABLE k (a TEXT, b INT, PRIMARY KEY (a)) WITHOUT ROWID")
    with pytest.raises(Refused, match="WITHOUT ROWID"):
        drop_column(keyed, "a")
    assert drop_column(keyed, "b") == "CREATE TABLE k (a TEXT, PRIMARY KEY (a)) WITHOUT ROWID"
