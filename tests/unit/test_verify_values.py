"""What ``verify`` counts as the same value across a change of a column's type, and which
column it follows when one disappears; and the rows it generates, varied so a loss shows."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from zos.migrator.verify_data import ColumnShape, fill, read_rows, reflect
from zos.migrator.verify_values import comparable, follow_columns


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (1, "1"),
        (1, decimal.Decimal("1.00")),
        (1.5, decimal.Decimal("1.50")),
        (True, 1),
        (2**63 - 1, str(2**63 - 1)),
        (dt.datetime(2024, 2, 29, 12, 0, 0, 1), "2024-02-29 12:00:00.000001"),
        (
            dt.datetime(2024, 2, 29, 13, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            "2024-02-29T12:00:00",
        ),
        (dt.date(2024, 2, 29), dt.datetime(2024, 2, 29)),
        ({"n": 1, "a": [1]}, '{"a": [1], "n": 1}'),
        ('"0-note"', "0-note"),
        ("ab   ", "ab"),
    ],
)
def test_a_lossless_type_change_keeps_the_value_comparable(old: Any, new: Any) -> None:
    assert comparable(old) == comparable(new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("0-name", "0-"),
        (None, ""),
        ("1é…🙂", "1?…?"),
        (2**31 - 1, 2**15 - 1),
        (1.5, 2),
        (dt.datetime(2024, 2, 29, 12, 0, 0, 1), dt.datetime(2024, 2, 29, 12)),
        ("0-note", None),
    ],
)
def test_a_changed_value_stays_different(old: Any, new: Any) -> None:
    assert comparable(old) != comparable(new)


TEXT = ColumnShape("VARCHAR(40)", True)


def test_a_column_that_disappears_is_followed_to_the_added_column_with_its_values() -> None:
    before = [{"id": n, "a": f"{n}-a", "b": f"{n}-b"} for n in range(3)]
    after = [{"id": n, "x": f"{n}-b", "y": f"{n}-a"} for n in range(3)]
    old = {"id": TEXT, "a": TEXT, "b": TEXT}
    new = {"id": TEXT, "x": TEXT, "y": TEXT}
    assert follow_columns(old, new, before, after) == {"id": "id", "a": "y", "b": "x"}


def test_a_lone_column_replaced_by_a_lone_column_is_followed_even_when_its_values_are_lost() -> (
    None
):
    before = [{"id": n, "a": f"{n}-a"} for n in range(3)]
    after = [{"id": n, "x": None} for n in range(3)]
    followed = follow_columns({"id": TEXT, "a": TEXT}, {"id": TEXT, "x": TEXT}, before, after)
    assert followed == {"id": "id", "a": "x"}


def test_columns_gone_without_their_values_anywhere_are_dropped() -> None:
    before = [{"id": n, "a": f"{n}-a", "b": f"{n}-b"} for n in range(3)]
    after = [{"id": n} for n in range(3)]
    followed = follow_columns({"id": TEXT, "a": TEXT, "b": TEXT}, {"id": TEXT}, before, after)
    assert followed == {"id": "id", "a": None, "b": None}


def test_generated_rows_vary_and_point_at_their_own_table() -> None:
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE topics (id INTEGER NOT NULL PRIMARY KEY,"
                " parent_id INTEGER REFERENCES topics (id), name VARCHAR(40) NOT NULL,"
                " note TEXT, score INTEGER, big BIGINT NOT NULL,"
                " twice INTEGER GENERATED ALWAYS AS (score * 2) STORED)"
            )
        )
        fill(conn, 1, {})
        rows = sorted(read_rows(conn, reflect(conn).tables["topics"]), key=lambda r: r["id"])
    assert [r["parent_id"] for r in rows] == [None, rows[0]["id"], rows[0]["id"]]
    assert rows[0]["note"] is None and rows[0]["score"] is None
    for column in ("parent_id", "name", "note", "score", "big"):
        assert sum(r[column] not in (None, "") for r in rows) >= 2, column
    assert any(not r["name"].isascii() for r in rows)
    assert any(not str(r["note"]).isascii() for r in rows)
    assert rows[2]["score"] == 2**31 - 1 and rows[2]["big"] == 2**63 - 1
    assert [r["twice"] for r in rows] == [
        None if r["score"] is None else r["score"] * 2 for r in rows
    ]


def test_a_row_the_database_refuses_varied_is_inserted_plain() -> None:
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE pairs (id INTEGER NOT NULL PRIMARY KEY, a INTEGER, b INTEGER,"
                " CHECK (a IS NOT NULL AND b < 1000))"
            )
        )
        fill(conn, 1, {})
        rows = read_rows(conn, reflect(conn).tables["pairs"])
    assert len(rows) == 3 and all(r["a"] is not None and r["b"] < 1000 for r in rows)
