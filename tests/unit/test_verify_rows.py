"""``verify`` fills tables whose CHECK constraints a plain generated value breaks, with values
taken from the constraints themselves; what it cannot satisfy it names."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text

from zos.migrator.verify_data import FillError, fill


@pytest.fixture
def engine() -> Engine:
    return create_engine("sqlite://")


def test_rows_satisfy_in_lists_and_ranges_named_by_checks(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE jobs (id INTEGER PRIMARY KEY,"
                " kind VARCHAR(10) NOT NULL CHECK (kind IN ('daily', 'weekly')),"
                " priority INTEGER NOT NULL UNIQUE,"
                " ratio NUMERIC(4, 2),"
                " CONSTRAINT priority_range CHECK (priority >= 10 AND priority <= 20),"
                " CONSTRAINT ratio_small CHECK (ratio BETWEEN -1 AND 1))"
            )
        )
        filled = fill(conn, 1, {})
        stored = conn.execute(text("SELECT kind, priority, ratio FROM jobs")).all()
    assert len(filled["jobs"].rows) == 3
    assert len(stored) == 3
    assert {kind for kind, _, _ in stored} <= {"daily", "weekly"}
    assert all(10 <= priority <= 20 for _, priority, _ in stored)
    assert len({priority for _, priority, _ in stored}) == 3
    assert all(ratio is None or -1 <= ratio <= 1 for _, _, ratio in stored)


def test_a_check_no_literal_satisfies_is_named_with_its_table_and_row(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE odd (id INTEGER PRIMARY KEY, n INTEGER NOT NULL,"
                " CHECK (n % 7 = 3 AND n > 1000))"
            )
        )
        with pytest.raises(FillError, match=r"^table odd: the database refused generated row"):
            fill(conn, 1, {})


@settings(derandomize=True, max_examples=40, deadline=None)
@given(
    allowed=st.lists(
        st.text(alphabet="abcxyz' -", min_size=1, max_size=8), min_size=3, max_size=6, unique=True
    ),
    low=st.integers(min_value=-1000, max_value=1000),
    width=st.integers(min_value=4, max_value=50),
)
def test_any_in_list_and_range_check_is_satisfied_or_named(
    allowed: list[str], low: int, width: int
) -> None:
    engine = create_engine("sqlite://")
    quoted = ", ".join("'" + value.replace("'", "''") + "'" for value in allowed)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE t (id INTEGER PRIMARY KEY, label VARCHAR(8) NOT NULL"
                f" CHECK (label IN ({quoted})), n INTEGER NOT NULL UNIQUE"
                f" CHECK (n > {low} AND n < {low + width}))"
            )
        )
        fill(conn, 1, {})
        stored = conn.execute(text("SELECT label, n FROM t")).all()
    assert len(stored) == 3
    assert all(label in allowed and low < n < low + width for label, n in stored)
