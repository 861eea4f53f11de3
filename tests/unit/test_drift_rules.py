"""What counts as the same definition once a database has stored it: server defaults and CHECK
text as PostgreSQL, MariaDB and SQLite give them back. Pure functions; no database."""

from __future__ import annotations

import pytest
from sqlalchemy import Dialect
from sqlalchemy.dialects import mysql, postgresql, sqlite

from zos.migrator.drift_catalog import _normal
from zos.migrator.drift_rules import action, default_text, literal


@pytest.mark.parametrize(
    ("stored", "declared"),
    [
        ("'x'::character varying", "'x'"),
        ("('x'::text)", "'x'"),
        ("'0'", "0"),
        ("(0)", "0"),
        ("'1.5'", "1.5"),
        ("now()", "CURRENT_TIMESTAMP"),
        ("current_timestamp()", "CURRENT_TIMESTAMP"),
        ("current_timestamp(6)", "now()"),
        ("CURRENT_TIMESTAMP", "CURRENT_TIMESTAMP"),
        ("'2024-01-01 00:00:00'::timestamp without time zone", "'2024-01-01 00:00:00'"),
        ("NULL", None),
    ],
)
def test_a_stored_default_counts_as_its_declaration(stored: str, declared: str | None) -> None:
    assert default_text(stored) == default_text(declared)


@pytest.mark.parametrize(
    ("stored", "declared"),
    [("'x'", "'y'"), ("0", "1"), ("'X'", "'x'"), ("now()", "'now'"), ("0", None)],
)
def test_a_different_default_stays_different(stored: str, declared: str | None) -> None:
    assert default_text(stored) != default_text(declared)


def test_a_plain_string_default_is_an_sql_literal() -> None:
    assert literal("it's") == "'it''s'"


@pytest.mark.parametrize(
    ("dialect", "stored", "declared"),
    [
        (
            postgresql.dialect(),
            "((a IS NOT NULL) OR (b IS NOT NULL))",
            "a IS NOT NULL OR b IS NOT NULL",
        ),
        (
            postgresql.dialect(),
            "((code)::text = ANY ((ARRAY['a'::character varying,"
            " 'b'::character varying])::text[]))",
            "code IN ('a', 'b')",
        ),
        (postgresql.dialect(), "((label)::text <> 'x'::text)", "label != 'x'"),
        (mysql.dialect(), "`a` is not null or `b` is not null", "a IS NOT NULL OR b IS NOT NULL"),
        (mysql.dialect(), "octet_length(`label`) > 0", "length(label) > 0"),
        (sqlite.dialect(), "count >= 0 AND ratio < 10", "count >= 0 AND ratio < 10"),
    ],
)
def test_a_stored_check_counts_as_its_declaration(
    dialect: Dialect, stored: str, declared: str
) -> None:
    assert _normal(stored, dialect) == _normal(declared, dialect)


@pytest.mark.parametrize(
    ("dialect", "stored", "declared"),
    [
        (postgresql.dialect(), "(a IS NOT NULL)", "a IS NOT NULL OR b IS NOT NULL"),
        (postgresql.dialect(), "(octet_length(label) > 0)", "length(label) > 0"),
        (postgresql.dialect(), "((code)::text IS NULL)", "code IS NOT NULL"),
        (mysql.dialect(), "`count` >= 1", "count >= 0"),
    ],
)
def test_a_different_check_stays_different(dialect: Dialect, stored: str, declared: str) -> None:
    assert _normal(stored, dialect) != _normal(declared, dialect)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("NO ACTION", None),
        ("no action", None),
        ("cascade", "ON DELETE CASCADE"),
        ("SET  NULL", "ON DELETE SET NULL"),
    ],
)
def test_foreign_key_actions_read_the_same_however_written(
    value: str | None, expected: str | None
) -> None:
    assert action(value, "ON DELETE") == expected
