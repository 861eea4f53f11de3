"""Which tables a MariaDB schema change waits for, read from its text however it is spelled
(comments, case, backquoted names with any character, qualified names, lists)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zos.migrator.dialects.tablelocks import first_word, tables_to_lock, views_to_wait_for
from zos.migrator.marker import commits_something

CASES = {
    "-- why\nALTER TABLE widgets ADD COLUMN note INT": [(None, "widgets")],
    "/* why */ alter online table `widget parts` add note int": [(None, "widget parts")],
    "# why\nTRUNCATE widgets": [(None, "widgets")],
    "TRUNCATE TABLE app.widgets": [("app", "widgets")],
    "DROP TABLE IF EXISTS other, `app`.`widgets`": [(None, "other"), ("app", "widgets")],
    "RENAME TABLE a TO a2, `b c` TO d": [(None, "a"), (None, "b c")],
    "CREATE UNIQUE INDEX ix ON widgets (name)": [(None, "widgets")],
    "DROP INDEX IF EXISTS ix ON widgets": [(None, "widgets")],
    "CREATE DEFINER=`u`@`%` TRIGGER t BEFORE INSERT ON widgets FOR EACH ROW SET NEW.a = 'ON x'": [
        (None, "widgets")
    ],
    "CREATE TABLE fresh (id INT)": None,
    "CREATE TEMPORARY TABLE scratch (id INT)": None,
    "DROP TEMPORARY TABLE scratch": None,
    "UPDATE widgets SET name = 'x'": None,
    "CREATE OR REPLACE VIEW v AS SELECT 1": None,
}


@pytest.mark.parametrize(("statement", "expected"), CASES.items(), ids=list(range(len(CASES))))
def test_the_tables_a_schema_change_waits_for_are_read_from_its_text(
    statement: str, expected: list[tuple[str | None, str]] | None
) -> None:
    assert tables_to_lock(statement) == expected


def test_views_are_waited_for_not_locked() -> None:
    assert views_to_wait_for("DROP VIEW IF EXISTS a, `b c`") == [(None, "a"), (None, "b c")]
    assert views_to_wait_for("CREATE DEFINER='a'@'%' SQL SECURITY INVOKER VIEW v AS SELECT 1") == [
        (None, "v")
    ]
    assert views_to_wait_for("ALTER TABLE v ADD x INT") is None


def test_only_statements_that_commit_on_their_own_are_marked_first_in_a_transaction() -> None:
    assert commits_something("/* c */ alter table w add x int", in_transaction=True)
    assert not commits_something("UPDATE w SET x = 1", in_transaction=True)
    assert commits_something("UPDATE w SET x = 1", in_transaction=False)
    assert not commits_something("CREATE TEMPORARY TABLE s (id INT)", in_transaction=False)
    assert not commits_something("-- read\nSELECT 1", in_transaction=False)
    assert first_word("  -- a\n/* b */ select 1") == "SELECT"


names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=20,
)
comments = st.sampled_from(["", "-- note\n", "/* note */ ", "# note\n", "/* a\nb */\n"])
verbs = st.sampled_from(["ALTER TABLE {} ADD COLUMN n INT", "alter table {} drop column n"])


@settings(derandomize=True, max_examples=300, deadline=None)
@given(name=names, schema=st.none() | names, comment=comments, verb=verbs)
def test_any_backquoted_name_is_read_back_exactly(
    name: str, schema: str | None, comment: str, verb: str
) -> None:
    def quote(part: str) -> str:
        return "`" + part.replace("`", "``") + "`"

    qualified = quote(name) if schema is None else f"{quote(schema)}.{quote(name)}"
    assert tables_to_lock(comment + verb.format(qualified)) == [(schema, name)]
