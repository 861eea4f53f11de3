"""Discovery reads every migration file once, checks it without running it, and runs exactly
the code it checked and hashed, only when asked."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, MakeMigrations, migration
from zos.errors import MigrationFileError
from zos.migrator.discovery import discover_migrations, find_migrations, load_migrations
from zos.migrator.source import MAX_VERSION, read_source


def problems_of(folder: Path) -> list[str]:
    scripts, problems = find_migrations(folder)
    return problems + load_migrations(scripts)[1]


def test_files_are_listed_in_version_order_with_both_checksums(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(
        {"010_later.py": migration(10, "Later"), "002_early.py": migration(2, "Early")}
    )
    scripts = discover_migrations(folder)
    assert [s.version for s in scripts] == [2, 10]
    data = (folder / "002_early.py").read_bytes()
    assert scripts[0].legacy_checksum == hashlib.sha256(data).hexdigest()
    assert len(scripts[0].checksum) == 64 and scripts[0].checksum != scripts[0].legacy_checksum
    assert scripts[0].matches(hashlib.sha256(data).hexdigest())
    assert scripts[0].matches(scripts[0].checksum)
    assert not scripts[0].matches(scripts[1].checksum)


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(lambda b: b.replace(b"\n", b"\r\n"), id="crlf"),
        pytest.param(lambda b: b"\xef\xbb\xbf" + b, id="bom"),
        pytest.param(lambda b: b"\xef\xbb\xbf" + b.replace(b"\n", b"\r\n"), id="bom-and-crlf"),
    ],
)
def test_a_bom_or_crlf_checkout_of_the_same_file_keeps_both_checksums(
    make_migrations: MakeMigrations, transform: object
) -> None:
    body = migration(1, "One").encode()
    unix = make_migrations({})
    (unix / "001_one.py").write_bytes(body)
    other = make_migrations({})
    (other / "001_one.py").write_bytes(transform(body))  # type: ignore[operator]
    a, b = discover_migrations(unix)[0], discover_migrations(other)[0]
    assert (a.checksum, a.legacy_checksum) == (b.checksum, b.legacy_checksum)


ORIGINAL = '''\
"""Add a thing.

    Indented docstring text.
"""
from sqlalchemy import text  # the only import

VERSION: int = 7
DESCRIPTION: str = 'Add a thing'


def upgrade(conn):
    # Comments are not code.
    conn.execute(text('ALTER TABLE t ADD COLUMN x INTEGER'),)
    values = [1,2,
        3]
    return (values)
'''


@pytest.mark.parametrize(
    ("edited", "same"),
    [
        (ORIGINAL.replace("# the only import", "# edited comment"), True),
        (ORIGINAL.replace("'Add a thing'", '"Add a thing"'), True),
        (
            ORIGINAL.replace("[1,2,\n        3]", "[\n  1,\n  2,\n  3,\n]"),
            True,
        ),
        (ORIGINAL.replace("    Indented docstring text.", "Indented docstring text.   "), True),
        (ORIGINAL.replace("return (values)", "return values"), True),
        (ORIGINAL.replace("x INTEGER", "y INTEGER"), False),
        (ORIGINAL.replace("[1,2,", "[1,3,"), False),
        (ORIGINAL.replace("Indented docstring text.", "Other text."), False),
        (ORIGINAL.replace("return (values)", "return values,"), False),
        (ORIGINAL.replace("[1,2,", "[1,2.0,"), False),
    ],
    ids=[
        "comment",
        "quotes",
        "line-breaks-and-trailing-comma",
        "docstring-indentation",
        "parentheses",
        "sql-text",
        "list-value",
        "docstring-text",
        "tuple-not-parentheses",
        "int-to-float",
    ],
)
def test_only_a_change_to_what_the_code_does_changes_the_checksum(edited: str, same: bool) -> None:
    before = read_source(ORIGINAL.encode(), 7, "007_a.py")
    after = read_source(edited.encode(), 7, "007_a.py")
    assert before.problems == after.problems == ()
    assert (before.checksum == after.checksum) is same


def test_ruff_format_on_a_migration_keeps_its_checksum(tmp_path: Path) -> None:
    path = tmp_path / "007_add_a_thing.py"
    path.write_text(ORIGINAL)
    before = read_source(path.read_bytes(), 7, path.name)
    subprocess.run([sys.executable, "-m", "ruff", "format", "--quiet", str(path)], check=True)
    assert path.read_text() != ORIGINAL
    assert read_source(path.read_bytes(), 7, path.name).checksum == before.checksum


def test_the_canonical_checksum_is_pinned_so_every_python_version_records_the_same() -> None:
    """Records in databases depend on this value on every supported Python (3.11 to 3.13):
    the serialisation is zos's own, not ast.dump's. It must never change."""
    source = (
        'from sqlalchemy import text\n\nVERSION = 2\nDESCRIPTION = "Two"\n\n\n'
        "def upgrade(conn: object) -> None:\n"
        '    """Doc."""\n'
        '    conn.execute(text(f"SELECT {1 + 2!r:>3} -- {VERSION=}"), [b"x", 1.5, None, ...])\n'
    )
    facts = read_source(source.encode(), 2, "002_two.py")
    assert facts.problems == ()
    assert facts.checksum == "2000b73863542e5c2712acc7d2227a2de281d26b695d2e2d7bb78c541321622a"


def test_private_helpers_and_non_python_files_are_not_migrations(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(
        {"001_one.py": migration(1, "One"), "__init__.py": "", "_shared.py": "", "README.md": ""}
    )
    assert [s.name for s in discover_migrations(folder)] == ["001_one.py"]


def test_listing_and_checking_run_nothing_so_a_file_costs_nothing_until_it_must_run(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(
        {"001_boom.py": migration(1, "Boom") + "\nraise SystemExit('imported!')\n"}
    )
    assert [s.version for s in discover_migrations(folder)] == [1]
    _, problems = load_migrations(discover_migrations(folder))
    assert problems == ["001_boom.py: fails to import: SystemExit: imported!"]


def test_two_files_with_one_version_are_refused_naming_both() -> None:
    with pytest.raises(MigrationFileError, match=r"002_a\.py and 002_b\.py share version 2"):
        discover_migrations(FIXTURES / "duplicate_version")


def test_a_misnamed_python_file_is_refused() -> None:
    with pytest.raises(MigrationFileError, match=r"2_add_thing\.py: not a migration file name"):
        discover_migrations(FIXTURES / "misnamed")


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationFileError, match="does not exist"):
        discover_migrations(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("missing_version", r"001_initial\.py: does not define VERSION$"),
        ("missing_description", r"001_initial\.py: does not define DESCRIPTION$"),
        ("missing_upgrade", r"001_initial\.py: does not define upgrade\(\)$"),
        ("version_mismatch", r"002_second\.py: VERSION is 3 but the file name says 2$"),
        ("syntax_error", r"001_initial\.py: syntax error at line 4: "),
    ],
)
def test_an_incomplete_or_broken_file_is_found_without_running_it(
    scenario: str, expected: str
) -> None:
    scripts, problems = find_migrations(FIXTURES / scenario)
    assert len(problems) == 1 and re.search(expected, problems[0]), problems
    loaded, load_problems = load_migrations(scripts)
    assert load_problems == [] and len(loaded) == len(scripts) - 1


def test_a_module_that_cannot_be_found_is_found_without_importing_in_migrate_s_words() -> None:
    # Issue 11: status, check and the guard give the verdict migrate gives, in the same words.
    scripts, problems = find_migrations(FIXTURES / "import_error")
    assert problems == [
        "001_initial.py: fails to import: ModuleNotFoundError: No module named 'zos_no_such_module'"
    ]
    assert [script.code for script in scripts] == [None]


def test_what_only_importing_shows_is_reported_the_same_way(tmp_path: Path) -> None:
    (tmp_path / "001_initial.py").write_text(
        "from sqlalchemy import no_such_name_zz\nVERSION = 1\nDESCRIPTION = 'x'\n\n\n"
        "def upgrade(conn):\n    pass\n"
    )
    scripts, problems = find_migrations(tmp_path)
    assert problems == []
    _, load_problems = load_migrations(scripts)
    assert [p.split(":")[0] for p in load_problems] == ["001_initial.py"]
    assert re.match(r"001_initial\.py: fails to import: ImportError: ", load_problems[0])


HEAD = "VERSION = 1\nDESCRIPTION = 'One'\n"
UPGRADE = "\n\ndef upgrade(conn):\n    pass\n"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("VERSION = '1'\nDESCRIPTION = 'One'" + UPGRADE, "VERSION must be an integer literal"),
        ("VERSION = True\nDESCRIPTION = 'One'" + UPGRADE, "VERSION must be an integer literal"),
        ("VERSION = 0 + 1\nDESCRIPTION = 'One'" + UPGRADE, "VERSION must be an integer literal"),
        ("VERSION = 1\nDESCRIPTION = '  '" + UPGRADE, "DESCRIPTION must be a non-empty string"),
        ("VERSION = 1\nDESCRIPTION = 'x'.upper()" + UPGRADE, "DESCRIPTION must be a non-empty"),
        ("VERSION: int\nDESCRIPTION = 'One'" + UPGRADE, "does not define VERSION"),
        ("VERSION = 1\nDESCRIPTION = 'a\\x1b[2Jb'" + UPGRADE, "DESCRIPTION must be printable"),
        ("VERSION = 1\nDESCRIPTION = 'a\\ud800'" + UPGRADE, "DESCRIPTION must be printable"),
        (HEAD + "TRANSACTIONAL = 0" + UPGRADE, "TRANSACTIONAL must be True or False"),
        (HEAD + "\n\nasync def upgrade(conn):\n    pass\n", "upgrade must be a function defined"),
        (HEAD + "upgrade = print\n", "upgrade must be a function defined with def"),
        (HEAD + UPGRADE + "VERSION = 2\n", "binds VERSION more than once"),
        (HEAD + "BATCHES = Batches('t', 'id')" + UPGRADE, "a backfill needs both BATCHES"),
        (HEAD + "BATCHES = 5\n\n\ndef backfill(c, lo, hi):\n    pass\n", "BATCHES must be"),
        (
            HEAD + "TRANSACTIONAL = False\nBATCHES = Batches('t', 'id')\n\n\n"
            "def backfill(c, lo, hi):\n    pass\n",
            "a backfill commits batch by batch",
        ),
        (HEAD + UPGRADE + "return 5\n", "syntax error at line 7: 'return' outside function"),
        (HEAD + UPGRADE + "x = 1\0\n", "null bytes"),
        (HEAD.encode("utf-16").decode("latin-1") + UPGRADE, "syntax error"),
    ],
)
def test_every_rule_is_checked_without_running_the_file(source: str, problem: str) -> None:
    facts = read_source(source.encode("latin-1"), 1, "001_one.py")
    assert facts.code is None
    assert len(facts.problems) == 1 and problem in facts.problems[0], facts.problems


@pytest.mark.parametrize(
    "source",
    [
        "VERSION: int = 1\nDESCRIPTION: str = 'Annotated'" + UPGRADE,
        "VERSION = 1\nDESCRIPTION = ('Split '\n  'over lines')" + UPGRADE,
        "# -*- coding: latin-1 -*-\nVERSION = 1\nDESCRIPTION = 'Caf\xe9'" + UPGRADE,
        HEAD + "TRANSACTIONAL = False" + UPGRADE,
        HEAD + "from zos.migrator.backfill import Batches\nBATCHES = Batches('t', 'id')\n\n\n"
        "def backfill(c, lo, hi):\n    pass\n",
    ],
    ids=["annotated", "implicit-concatenation", "latin-1", "non-transactional", "backfill"],
)
def test_a_valid_file_passes_the_check_and_loads(source: str, tmp_path: Path) -> None:
    (tmp_path / "001_one.py").write_bytes(source.encode("latin-1"))
    scripts, problems = find_migrations(tmp_path)
    assert problems == []
    loaded, load_problems = load_migrations(scripts)
    assert load_problems == [] and len(loaded) == 1
    assert loaded[0].description == scripts[0].description != ""


def test_every_problem_is_reported_not_only_the_first() -> None:
    problems = problems_of(FIXTURES / "many_problems")
    assert len(problems) == 3, problems
    assert any("share version 3" in p for p in problems)
    assert any(p.startswith("001_first.py: does not define DESCRIPTION") for p in problems)
    assert any(p.startswith("002_second.py: syntax error") for p in problems)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        (f"{MAX_VERSION + 1}_too_big.py", f"version {MAX_VERSION + 1} is above 2,147,483,647"),
        ("9" * 30 + "_huge.py", "is above 2,147,483,647"),
        ("000_zero.py", "version 0 means no migration applied"),
        ("\u0661\u0662\u0663_arabic_digits.py", "not a migration file name"),
    ],
)
def test_a_number_the_version_column_cannot_hold_is_refused_in_one_line(
    make_migrations: MakeMigrations, name: str, problem: str
) -> None:
    folder = make_migrations({name: migration(1, "Anything")})
    scripts, problems = find_migrations(folder)
    assert scripts == [] and len(problems) == 1 and problem in problems[0], problems


def test_the_largest_version_the_column_holds_is_accepted(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({f"{MAX_VERSION}_last.py": migration(MAX_VERSION, "Last")})
    assert [s.version for s in discover_migrations(folder)] == [MAX_VERSION]


def test_a_loaded_migration_carries_its_description_and_transaction_mode(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(
        {
            "001_one.py": migration(1, "  One  "),
            "002_two.py": migration(2, "Two") + "\nTRANSACTIONAL = False\n",
        }
    )
    loaded, problems = load_migrations(discover_migrations(folder))
    assert problems == []
    assert [(m.description, m.transactional) for m in loaded] == [("One", True), ("Two", False)]


def test_the_code_that_runs_is_the_code_that_was_read_and_hashed(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({"001_one.py": migration(1, "One", "conn.append('read')")})
    path = folder / "001_one.py"
    scripts = discover_migrations(folder)
    stat = path.stat()
    # An edit that keeps the size and the modification time, as fooled __pycache__ before.
    path.write_text(path.read_text().replace("'read'", "'edit'"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    loaded, _ = load_migrations(scripts)
    ran: list[str] = []
    assert loaded[0].upgrade is not None
    loaded[0].upgrade(ran)  # type: ignore[arg-type]
    assert ran == ["read"]
    assert sorted(p.name for p in folder.iterdir()) == ["001_one.py"]


def test_private_helpers_import_from_a_custom_folder_and_stay_in_it(
    make_migrations: MakeMigrations,
) -> None:
    folders = [
        make_migrations(
            {
                "_common.py": f"from _names import NAME\nLABEL = NAME + '{n}'\n",
                "_names.py": "NAME = 'helper'\n",
                "001_one.py": migration(1, "One", "from _common import LABEL\nconn.append(LABEL)"),
                "002_two.py": "import _common\n"
                + migration(2, "Two", "conn.append(_common.LABEL)"),
            }
        )
        for n in (1, 2)
    ]
    ran: list[str] = []
    for folder in folders:
        loaded, problems = load_migrations(discover_migrations(folder))
        assert problems == []
        for m in loaded:
            m.upgrade(ran)  # type: ignore[arg-type, misc]
        assert sorted(p.name for p in folder.iterdir()) == [
            "001_one.py",
            "002_two.py",
            "_common.py",
            "_names.py",
        ]
    assert ran == ["helper1", "helper1", "helper2", "helper2"]
    assert "_common" not in sys.modules


def test_a_broken_helper_is_the_migrations_import_problem(make_migrations: MakeMigrations) -> None:
    folder = make_migrations(
        {
            "_common.py": "raise RuntimeError('no')\n",
            "001_one.py": "import _common\n" + HEAD + UPGRADE,
        }
    )
    _, problems = load_migrations(discover_migrations(folder))
    assert problems == ["001_one.py: fails to import: RuntimeError: no"]


def test_status_and_the_guard_check_every_file_without_importing_sqlalchemy(
    make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations(
        {
            "001_one.py": "from sqlalchemy import text\n" + migration(1, "One"),
            "002_bad.py": "VERSION = 2\nDESCRIPTION = ''\n",
        }
    )
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from zos import migrator\n"
        "from zos.config import Settings\n"
        f"settings = Settings(database={{'url': 'sqlite:///{tmp_path / 'x.db'}'}},\n"
        f"                    migrations_dir=Path({str(folder)!r}))\n"
        "report = migrator.status(settings)\n"
        "try:\n"
        "    migrator.ensure_schema_current(settings)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
        "print(len(report.problems), 'sqlalchemy' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == ["SchemaNotCurrent", "1 False"]


def test_helper_packages_and_relative_imports_of_helpers_load_from_the_folder(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "migrations"
    (folder / "_pkg" / "deep").mkdir(parents=True)
    (folder / "_pkg" / "__init__.py").write_text("ROOT = 'pkg'\n")
    (folder / "_pkg" / "names.py").write_text("from . import deep\nNAME = 'names'\n")
    (folder / "_pkg" / "deep" / "leaf.py").write_text("from ..names import NAME\nLEAF = NAME\n")
    (folder / "_c.py").write_text("C = 'c'\n")
    (folder / "001_one.py").write_text(
        "import _pkg.names\nfrom _pkg.deep.leaf import LEAF\nfrom . import _c\n"
        "from _pkg import ROOT\n"
        + migration(1, "One", "conn.extend([_pkg.names.NAME, LEAF, _c.C, ROOT])")
    )
    scripts, problems = find_migrations(folder)
    assert problems == []
    loaded, load_problems = load_migrations(scripts)
    assert load_problems == []
    ran: list[str] = []
    loaded[0].upgrade(ran)  # type: ignore[arg-type, misc]
    assert ran == ["names", "names", "c", "pkg"]
    assert not any(name.startswith("_pkg") for name in sys.modules)


@pytest.mark.parametrize(
    ("line", "missing"),
    [
        ("import zos_no_such_zz", "zos_no_such_zz"),
        ("from zos_no_such_zz.sub import x", "zos_no_such_zz"),
        ("import _no_helper_zz", "_no_helper_zz"),
        ("from . import _no_helper_zz", "_no_helper_zz"),
    ],
)
def test_a_top_level_import_that_cannot_be_found_is_the_static_verdict(
    make_migrations: MakeMigrations, line: str, missing: str
) -> None:
    folder = make_migrations({"001_one.py": f"{line}\n" + migration(1, "One")})
    scripts, problems = find_migrations(folder)
    assert problems == [
        f"001_one.py: fails to import: ModuleNotFoundError: No module named '{missing}'"
    ]
    assert load_migrations(scripts) == ([], [])


def test_an_import_inside_try_is_left_to_the_import(make_migrations: MakeMigrations) -> None:
    body = "try:\n    import zos_no_such_zz\nexcept ImportError:\n    zos_no_such_zz = None\n"
    folder = make_migrations({"001_one.py": body + migration(1, "One")})
    scripts, problems = find_migrations(folder)
    assert problems == []
    assert load_migrations(scripts)[1] == []


def test_an_unreadable_file_keeps_its_number(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"001_one.py": migration(1, "One")})
    (folder / "002_two.py").symlink_to(folder / "missing.py")
    scripts, problems = find_migrations(folder)
    assert [script.version for script in scripts] == [1, 2]
    assert problems == ["002_two.py: cannot be read: No such file or directory"]
