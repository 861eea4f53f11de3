"""Property: whatever migration files a user writes, every command gives the same verdict on
the folder (the same problems, or none), exits 0, 1 or 2, and never shows a traceback.

Runs on SQLite in-process. Files are built from fragments: valid, annotated, broken, misnamed,
odd encodings, BOM, CRLF and numbers past what the version column holds. Bodies do nothing
when run, so a file that passes the static check also imports (import-time failures have their
own tests in test_discovery.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from zos import migrator
from zos.config import Settings
from zos.errors import SchemaNotCurrent

TRIED: list[tuple[int, bool]] = []  # per folder tried: files, and whether it was valid

VALID_NUMBERS = st.one_of(st.integers(1, 30), st.sampled_from([20261129, 2**31 - 1]))
BAD_NUMBERS = st.sampled_from([0, 2**31, 2**64 + 1, 10**25])
SLUGS = st.sampled_from(["a", "add_x", "b2", "z_z"])
BAD_NAMES = st.one_of(
    st.builds(lambda n, s: f"{n:03d}_{s}.py", BAD_NUMBERS, SLUGS),
    st.builds(lambda n, s: f"{n:04d}_{s}.py", VALID_NUMBERS, SLUGS),  # 0001 and 001 clash
    st.sampled_from(["2_short.py", "001-dash.py", "001_Upper.py", "_helper.py", "notes.txt"]),
    st.just(os.fsdecode(b"00\xff_bytes.py")),
)
# Each fragment: the forms every command must accept, then those it must refuse.
VERSIONS = (["VERSION = {n}", "VERSION: int = {n}"], ["VERSION = {m}", "VERSION = '{n}'", ""])
DESCRIPTIONS = (
    [
        'DESCRIPTION = "Add x"',
        "DESCRIPTION: str = 'Caf\u00e9 \u2013 \U0001f642'",
        "DESCRIPTION = ('Split '\n    'parts')",
    ],
    [
        "DESCRIPTION = ''",
        "DESCRIPTION = 'x'.upper()",
        "",
        "DESCRIPTION: str",
        "DESCRIPTION = 'a\\x1bb'",
    ],
)
BODIES = (
    [
        "def upgrade(conn):\n    pass\n",
        'def upgrade(conn) -> None:\n    """Doc."""\n',
        "from sqlalchemy import text\nfrom zos.migrator.backfill import Batches\n\n"
        "BATCHES = Batches('t{n}', 'id')\n\n\ndef upgrade(conn):\n"
        "    conn.execute(text('CREATE TABLE t{n} (id INTEGER PRIMARY KEY)'))\n\n\n"
        "def backfill(conn, low, high):\n    pass\n",
    ],
    [
        "async def upgrade(conn):\n    pass\n",
        "upgrade = None\n",
        "def upgrade(conn)\n    pass\n",
        "",
    ],
)
EXTRAS = (
    ["", "# just a comment\n", "TRANSACTIONAL = True\n", "import json\n"],
    [
        "TRANSACTIONAL = 1\n",
        "return 1\n",
        "VERSION = 99\n",
        # A module that cannot be found: status must refuse it as migrate does (issue 11).
        "import zos_no_such_module_zz\n",
        "from _no_helper_zz import x\n",
    ],
)
ENCODINGS = (["utf-8", "bom", "crlf", "latin-1"], ["utf-16", "nul"])


@st.composite
def source(draw: st.DrawFn, n: int, broken: bool) -> bytes:
    """A file numbered ``n``; ``broken``: at least one fragment is one that must be refused."""
    fragments = [VERSIONS, DESCRIPTIONS, BODIES, EXTRAS, ENCODINGS]
    bad = draw(st.sets(st.integers(0, len(fragments) - 1), min_size=1)) if broken else set()
    header, description, body, extra, encoding = (
        draw(st.sampled_from(pair[i in bad])) for i, pair in enumerate(fragments)
    )
    text = f"{header.format(n=n, m=n + 1)}\n{description}\n\n\n{body.format(n=n)}{extra}"
    if encoding == "latin-1":
        return ("# -*- coding: latin-1 -*-\n" + text).encode("latin-1", "replace")
    if encoding == "utf-16":
        return text.encode("utf-16")
    data = text.encode("utf-8")
    if encoding == "bom":
        return b"\xef\xbb\xbf" + data
    if encoding == "crlf":
        return data.replace(b"\n", b"\r\n")
    return data + b"\0" if encoding == "nul" else data


@st.composite
def folders(draw: st.DrawFn) -> dict[str, bytes]:
    """1 to 4 files: all valid, or some broken in content, and maybe a badly named one."""
    numbers = draw(st.lists(VALID_NUMBERS, min_size=1, max_size=4, unique=True))
    broken = draw(st.lists(st.booleans(), min_size=len(numbers), max_size=len(numbers)))
    files = {
        f"{n:03d}_{draw(SLUGS)}.py": draw(source(n, bad))
        for n, bad in zip(numbers, broken, strict=True)
    }
    if any(broken) and draw(st.booleans()):
        files[draw(BAD_NAMES)] = draw(source(1, draw(st.booleans())))
    return files


def problems_in(lines: list[str]) -> set[str]:
    """The problems a command listed, without those about the database rather than the files."""
    about_database = (
        "migration(s) pending",
        "the database is at version",
        "no database at",
        "the database schema is not current",
    )
    return {
        line
        for line in lines
        if line
        and not line.startswith("table ")
        and not any(phrase in line for phrase in about_database)
        and "problems with the migration" not in line
    }


def listed(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    first = lines[0].removeprefix("Error: ") if lines and lines[0].startswith("Error: ") else ""
    return [first, *(line.removeprefix("  - ") for line in lines if line.startswith("  - "))]


def guard_problems(config: Settings) -> tuple[bool, set[str]]:
    try:
        migrator.ensure_schema_current(config)
    except SchemaNotCurrent as exc:
        message = exc.message.removeprefix("the database schema is not current: ")
        return False, problems_in([message, *exc.details])
    return True, set()


@settings(
    derandomize=True,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(folders())
def test_every_command_gives_the_same_verdict_on_any_folder(generated: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "migrations"
        folder.mkdir()
        for name, data in generated.items():
            (folder / name).write_bytes(data)
        url = f"sqlite:///{Path(tmp) / 'zos.db'}"
        env = {"ZOS_DATABASE_URL": url, "ZOS_MIGRATIONS_DIR": str(folder)}
        config = Settings(database={"url": url}, migrations_dir=folder)  # type: ignore[arg-type]

        verdicts: dict[str, set[str]] = {}
        status = run_cli("db", "status", env=env)
        verdicts["status"] = problems_in(listed(status.stderr))
        verdicts["guard"] = guard_problems(config)[1]
        dry = run_cli("db", "migrate", "--dry-run", env=env)
        verdicts["dry-run"] = problems_in(listed(dry.stderr))
        real = run_cli("db", "migrate", env=env)
        verdicts["migrate"] = problems_in(listed(real.stderr))
        check = run_cli("db", "check", env=env)
        verdicts["check"] = problems_in(listed(check.stderr))
        after = run_cli("db", "status", env=env)

        for result in (status, dry, real, check, after):
            assert result.exit_code in (0, 1, 2), result.stderr
            assert "Traceback" not in result.stdout + result.stderr
        assert all(v == verdicts["status"] for v in verdicts.values()), verdicts
        valid = not verdicts["status"]
        TRIED.append((len(generated), valid))
        assert (status.exit_code, dry.exit_code, real.exit_code, after.exit_code) == (
            (0, 0, 0, 0) if valid else (1, 1, 1, 1)
        ), verdicts
        if valid:
            assert guard_problems(config) == (True, set())


def test_the_property_tried_enough_inputs() -> None:
    """Run after the property (file order): it must have tried folders, and reports how many."""
    if TRIED:
        files = sum(n for n, _ in TRIED)
        valid = sum(ok for _, ok in TRIED)
        print(f"\nproperty tried {len(TRIED)} folders ({valid} valid), {files} migration files")
        assert len(TRIED) >= 150 and 20 <= valid <= len(TRIED) - 20
