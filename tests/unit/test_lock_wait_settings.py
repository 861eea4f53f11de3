"""The per-migration lock-wait constants, checked without running the file and carried to the
runner; the table a waiting statement names; the pauses between tries (issue 10)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from zos.migrator.dialects.lockwaits import statement_table
from zos.migrator.discovery import find_migrations, load_migrations
from zos.migrator.lockwait import MAX_PAUSE_SECONDS, pause_seconds
from zos.migrator.source import read_source

HEAD = "VERSION = 1\nDESCRIPTION = 'One'\n"
UPGRADE = "\n\ndef upgrade(conn):\n    pass\n"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("DDL_LOCK_TIMEOUT_SECONDS = 0", "DDL_LOCK_TIMEOUT_SECONDS must be a number of seconds"),
        ("DDL_LOCK_TIMEOUT_SECONDS = -1", "DDL_LOCK_TIMEOUT_SECONDS must be a number of seconds"),
        ("DDL_LOCK_TIMEOUT_SECONDS = '5'", "DDL_LOCK_TIMEOUT_SECONDS must be a number"),
        ("DDL_LOCK_TIMEOUT_SECONDS = True", "DDL_LOCK_TIMEOUT_SECONDS must be a number"),
        ("DDL_LOCK_TIMEOUT_SECONDS = 86401", "at most 86400"),
        ("DDL_LOCK_TIMEOUT_SECONDS = 2 * 3", "DDL_LOCK_TIMEOUT_SECONDS must be a number"),
        ("DDL_LOCK_RETRIES = -1", "DDL_LOCK_RETRIES must be a whole number from 0 to 100"),
        ("DDL_LOCK_RETRIES = 1.5", "DDL_LOCK_RETRIES must be a whole number"),
        ("DDL_LOCK_RETRIES = 101", "DDL_LOCK_RETRIES must be a whole number"),
        ("DDL_LOCK_RETRIES = 1\nDDL_LOCK_RETRIES = 2", "binds DDL_LOCK_RETRIES more than once"),
    ],
)
def test_a_bad_lock_wait_constant_is_refused_before_the_file_runs(line: str, problem: str) -> None:
    facts = read_source((HEAD + line + UPGRADE).encode(), 1, "001_one.py")
    assert facts.code is None
    assert len(facts.problems) == 1 and problem in facts.problems[0], facts.problems


def test_lock_wait_constants_reach_the_loaded_migration(tmp_path: Path) -> None:
    (tmp_path / "001_one.py").write_text(
        HEAD + "DDL_LOCK_TIMEOUT_SECONDS = 2.5\nDDL_LOCK_RETRIES = 0" + UPGRADE
    )
    (tmp_path / "002_two.py").write_text("VERSION = 2\nDESCRIPTION = 'Two'\n" + UPGRADE)
    scripts, problems = find_migrations(tmp_path)
    assert problems == []
    loaded, load_problems = load_migrations(scripts)
    assert load_problems == []
    assert [(m.ddl_lock_timeout_seconds, m.ddl_lock_retries) for m in loaded] == [
        (2.5, 0),
        (None, None),
    ]


def test_a_lock_wait_constant_changed_by_the_import_is_refused(tmp_path: Path) -> None:
    (tmp_path / "001_one.py").write_text(
        HEAD + "DDL_LOCK_RETRIES = 1\nglobals()['DDL_LOCK_RETRIES'] = -3" + UPGRADE
    )
    scripts, _ = find_migrations(tmp_path)
    _, problems = load_migrations(scripts)
    assert problems == ["001_one.py: DDL_LOCK_RETRIES changed while the file was imported"]


@pytest.mark.parametrize(
    ("statement", "table"),
    [
        ("ALTER TABLE widgets ADD COLUMN note VARCHAR(20)", "widgets"),
        ("alter table `app`.`widgets` drop column x", "app.widgets"),
        ("CREATE INDEX ix_w ON widgets (name)", "widgets"),
        ("CREATE UNIQUE INDEX IF NOT EXISTS ix_w ON `widgets` (name)", "widgets"),
        ("DROP TABLE IF EXISTS old_things", "old_things"),
        ("UPDATE items SET n = n + 1 WHERE id > 5", "items"),
        ("INSERT INTO audit (x) VALUES (1)", "audit"),
        ("RENAME TABLE a TO b", "a"),
        ("SELECT 1", "a table"),
    ],
)
def test_the_waiting_statement_names_its_table(statement: str, table: str) -> None:
    assert statement_table(statement) == table


def test_pauses_between_tries_double_up_to_a_bound() -> None:
    pauses = [pause_seconds(n) for n in range(12)]
    assert pauses[:4] == [0.5, 1.0, 2.0, 4.0]
    assert all(later >= earlier for earlier, later in itertools.pairwise(pauses))
    assert max(pauses) == MAX_PAUSE_SECONDS
