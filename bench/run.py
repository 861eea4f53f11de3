"""zos against Alembic, whole processes side by side, on SQLite files in WAL mode.

Run by hand, never in CI:  .venv/bin/python bench/run.py [--quick]
Everything happens in a temporary folder that is removed afterwards. The results table is
written between the <!-- results --> markers of bench/README.md, which says what each case is.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import bigtable
import projects
from harness import (
    Case,
    Row,
    check_call,
    clean_environment,
    measure,
    replace_marked_section,
    results_table,
)
from projects import ALEMBIC, DB_NAME, SQLITE_SHELL, ZOS

README = Path(__file__).with_name("README.md")
VERSION_1_TABLES = 18


@dataclass(frozen=True)
class Sizes:
    """How much work one run of the suite does."""

    startup_runs: int
    fresh_runs: int
    many: int  # migrations in the long history
    many_runs: int
    rows: int  # rows in the big messages table
    big_runs: int


FULL = Sizes(startup_runs=21, fresh_runs=11, many=1000, many_runs=11, rows=1_000_000, big_runs=5)
QUICK = Sizes(startup_runs=3, fresh_runs=2, many=100, many_runs=1, rows=20_000, big_runs=1)


class Suite:
    """The five measurements, each in its own folder under one temporary root."""

    def __init__(self, root: Path, sizes: Sizes) -> None:
        self.root = root
        self.sizes = sizes
        self.env = clean_environment()
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.empty = projects.empty_wal_database(root / "empty.sqlite")
        self.zos_v1 = projects.zos_folder(root / "zos-v1", {}, with_version_1=True)

    def folder(self, name: str) -> Path:
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def zos_env(self, migrations: Path, directory: Path) -> dict[str, str]:
        return projects.zos_env(self.env, migrations, directory / DB_NAME)

    def zos_case(self, label: str, args: list[str], migrations: Path, directory: Path) -> Case:
        return Case(label, [*ZOS, *args], directory, self.zos_env(migrations, directory))

    def fresh(self, case: Case, tables: int) -> Case:
        """Start every run of ``case`` from an empty WAL file; check it built ``tables`` tables."""
        database = case.cwd / DB_NAME
        case.prepare = lambda: projects.fresh_copy(self.empty, database)
        case.verify = lambda: _expect_tables(database, tables)
        return case

    # --- 1 and 2: the version-1 schema ------------------------------------------------------

    def version_1(self) -> None:
        section("1. status on an up-to-date database, and the start-up floor")
        ini = projects.alembic_project(
            self.root / "alembic-v1", projects.alembic_version_1(), self.env
        )
        zos_dir, alembic_dir = self.folder("status-zos"), self.folder("status-alembic")
        check_call([*ZOS, "db", "migrate"], zos_dir, self.zos_env(self.zos_v1, zos_dir))
        projects.fresh_copy(self.empty, alembic_dir / DB_NAME)
        check_call(projects.alembic_argv(ini, "upgrade", "head"), alembic_dir, self.env)
        status_case = self.zos_case("zos db status", ["db", "status"], self.zos_v1, zos_dir)
        current_case = Case(
            "alembic current", projects.alembic_argv(ini, "current"), alembic_dir, self.env
        )
        status, current, help_, alembic_help, floor = measure(
            [
                status_case,
                current_case,
                self.zos_case("zos --help", ["--help"], self.zos_v1, zos_dir),
                Case("alembic --help", [*ALEMBIC, "--help"], alembic_dir, self.env),
                Case("python -c pass", [sys.executable, "-c", "pass"], alembic_dir, self.env),
            ],
            self.sizes.startup_runs,
        )
        self.rows += [
            Row("`zos db status`, up to date at version 1", status, current, "≤ 0.65", 0.65),
            Row("`zos --help` (start-up floor)", help_, floor),
            Row("`zos --help` against `alembic --help`", help_, alembic_help),
        ]
        self.import_times(status_case, current_case)

        section("2. fresh migrate of the version-1 schema")
        zos_dir, alembic_dir = self.folder("fresh-zos"), self.folder("fresh-alembic")
        cases = [
            self.fresh(
                self.zos_case("zos db migrate", ["db", "migrate"], self.zos_v1, zos_dir),
                VERSION_1_TABLES,
            ),
            self.fresh(
                Case(
                    "alembic upgrade head",
                    projects.alembic_argv(ini, "upgrade", "head"),
                    alembic_dir,
                    self.env,
                ),
                VERSION_1_TABLES,
            ),
        ]
        migrate, upgrade = measure(cases, self.sizes.fresh_runs)
        self.rows.append(
            Row("fresh migrate to version 1 (18 tables)", migrate, upgrade, "≤ 0.65", 0.65)
        )
        self.import_times(*cases)

    # --- 3: a long history ------------------------------------------------------------------

    def long_history(self) -> None:
        many = self.sizes.many
        section(f"3. {many:,} small migrations")
        zos_many = projects.zos_folder(self.root / "zos-many", projects.zos_small_tables(many))
        zos_one = projects.zos_folder(self.root / "zos-one", projects.zos_small_tables(1))
        ini = projects.alembic_project(
            self.root / "alembic-many", projects.alembic_small_tables(many), self.env
        )
        zos_dir, alembic_dir = self.folder("many-zos"), self.folder("many-alembic")
        started = time.perf_counter()
        migrate, upgrade = measure(
            [
                self.fresh(
                    self.zos_case(
                        f"zos db migrate ({many:,})", ["db", "migrate"], zos_many, zos_dir
                    ),
                    many,
                ),
                self.fresh(
                    Case(
                        f"alembic upgrade head ({many:,})",
                        projects.alembic_argv(ini, "upgrade", "head"),
                        alembic_dir,
                        self.env,
                    ),
                    many,
                ),
            ],
            self.sizes.many_runs,
        )
        print(f"  ({time.perf_counter() - started:.0f} s)")
        self.rows.append(
            Row(f"fresh apply of {many:,} migrations", migrate, upgrade, "≤ 0.70", 0.70)
        )

        # The fresh runs above leave each database with the whole history applied.
        one_dir = self.folder("one-zos")
        check_call([*ZOS, "db", "migrate"], one_dir, self.zos_env(zos_one, one_dir))
        status_many, status_one, current_many = measure(
            [
                self.zos_case(
                    f"zos db status ({many:,} applied)", ["db", "status"], zos_many, zos_dir
                ),
                self.zos_case("zos db status (1 applied)", ["db", "status"], zos_one, one_dir),
                Case(
                    f"alembic current ({many:,} applied)",
                    projects.alembic_argv(ini, "current"),
                    alembic_dir,
                    self.env,
                ),
            ],
            self.sizes.startup_runs,
        )
        self.rows += [
            Row(
                f"`zos db status`, {many:,} applied, against 1 applied",
                status_many,
                status_one,
                "≤ 1.15",
                1.15,
            ),
            Row(
                f"`zos db status` against `alembic current`, {many:,} applied",
                status_many,
                current_many,
            ),
        ]

    # --- 4 and 5: a big table ---------------------------------------------------------------

    def big_table(self) -> None:
        rows = self.sizes.rows
        section(f"4. a {rows:,}-row messages table")
        prepared = self.folder("big-prepared")
        stamp_ini = projects.alembic_project(
            self.root / "alembic-stamp", projects.alembic_version_1(), self.env
        )
        started = time.perf_counter()
        bigtable.prepare_big_database(prepared / DB_NAME, rows, self.zos_v1, stamp_ini, self.env)
        size = (prepared / DB_NAME).stat().st_size / 2**20
        print(
            f"  prepared {rows:,} rows, {size:,.0f} MiB, in {time.perf_counter() - started:.0f} s"
        )
        self.notes.append(f"The prepared {rows:,}-row file is {size:,.0f} MiB.")
        bench = bigtable.BigTableCases(self.root / "big", prepared / DB_NAME, rows, self.env)

        shell, alembic, zos = measure(bench.rebuild_cases(), self.sizes.big_runs)
        self.rows += [
            Row(
                f"{rows:,}-row rebuild (content nullable): zos against the sqlite3 shell",
                zos,
                shell,
                "≤ 1.05",
                1.05,
                rows=rows,
            ),
            Row(f"{rows:,}-row rebuild: zos against Alembic batch mode", zos, alembic, rows=rows),
        ]
        shutil.rmtree(self.root / "big")

        shell, alembic, zos = measure(bench.add_column_cases(), self.sizes.big_runs)
        self.rows += [
            Row(f"ADD COLUMN on {rows:,} rows: zos against the sqlite3 shell", zos, shell),
            Row(f"ADD COLUMN on {rows:,} rows: zos against Alembic", zos, alembic),
        ]
        shutil.rmtree(self.root / "big")

        section(f"5. {rows:,}-row batched backfill beside a concurrent writer")
        case, writer = bigtable.zos_backfill_case(bench)
        try:
            (backfill,) = measure([case], self.sizes.big_runs)
        finally:
            writer.stop()
        longest = max(writer.longest_waits) if backfill.ok and writer.longest_waits else None
        text = backfill.cell(rows)
        if longest is not None:
            text += f"; writer's longest wait {longest * 1000:,.0f} ms ({writer.inserts:,} inserts)"
        self.rows.append(
            Row(
                f"{rows:,}-row batched backfill: the concurrent writer's longest wait",
                backfill,
                target="≤ 1 s",
                limit=1.0,
                absolute_value=longest,
                zos_text=text,
            )
        )
        shutil.rmtree(self.root / "big")

    # --- where the start-up time goes -------------------------------------------------------

    def import_times(self, *cases: Case) -> None:
        """One ``python -X importtime`` run of each command: the packages its imports cost most."""
        for case in cases:
            if case.prepare is not None:
                case.prepare()
            script = Path(case.argv[0])
            done = subprocess.run(
                [sys.executable, "-X", "importtime", str(script), *case.argv[1:]],
                cwd=case.cwd,
                env=case.env,
                capture_output=True,
                text=True,
            )
            total, top = _top_imports(done.stderr)
            listed = ", ".join(f"{name} {ms:.0f}" for name, ms in top)
            self.notes.append(
                f"`{case.label}` spends {total:.0f} ms importing modules "
                f"(`-X importtime`, which inflates it somewhat); by package, in ms: {listed}."
            )


def _top_imports(stderr: str, count: int = 6) -> tuple[float, list[tuple[str, float]]]:
    """Total import time, and the ``count`` costliest packages by their modules' own time, in ms."""
    by_package: dict[str, float] = {}
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s+(\S+)", line)
        if match:
            package = match.group(2).split(".")[0]
            by_package[package] = by_package.get(package, 0.0) + int(match.group(1)) / 1000
    ranked = sorted(by_package.items(), key=lambda item: -item[1])
    return sum(by_package.values()), ranked[:count]


def _expect_tables(database: Path, count: int) -> None:
    conn = sqlite3.connect(database)
    try:
        # Each tool's own bookkeeping tables are not counted.
        found = conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE '\\_schema%' ESCAPE '\\' AND name != 'alembic_version'"
        ).fetchone()
    finally:
        conn.close()
    if found[0] != count:
        raise AssertionError(f"{database.name} has {found[0]} tables, not {count}")


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def environment_line() -> str:
    shell = subprocess.run([SQLITE_SHELL, "--version"], capture_output=True, text=True)
    here = Path(__file__).parent
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", "../src"],
        cwd=here,
        capture_output=True,
        text=True,
    ).stdout.strip()
    source = f"commit {commit or 'unknown'}" + (
        " with uncommitted changes in src/" if dirty else ""
    )
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.system()} {platform.machine()}, "
        f"`nproc` {len(os.sched_getaffinity(0))}; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version} (shell {shell.stdout.split()[0]}), "
        f"SQLAlchemy {version('sqlalchemy')}, Alembic {version('alembic')}, "
        f"zos {version('zos')} ({source})"
    )


def report(suite: Suite, sizes: Sizes, quick: bool, seconds: float, load: float) -> str:
    runs = (
        f"Medians of {sizes.startup_runs} runs for status and start-up, {sizes.fresh_runs} for "
        f"fresh migrate, {sizes.many_runs} for the {sizes.many:,} migrations and "
        f"{sizes.big_runs} for the big table, each after one warm-up run; (min-max) in brackets."
    )
    lines = [
        f"Measured {environment_line()}.",
        "",
        f"{runs} The whole run took {seconds / 60:.1f} minutes; the load average was "
        f"{load:.2f} before it and {os.getloadavg()[0]:.2f} after (other work on the machine "
        "shows up as noise).",
        "",
    ]
    if quick:
        lines += ["**Quick smoke run (`--quick`): small sizes, figures not meaningful.**", ""]
    lines += [results_table(suite.rows), ""]
    lines += [f"- {note}" for note in suite.notes]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few runs, small sizes: a smoke test")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    root = Path(tempfile.mkdtemp(prefix="zos-bench-"))
    started, load = time.perf_counter(), os.getloadavg()[0]
    print(f"Working in {root}")
    try:
        suite = Suite(root, sizes)
        suite.version_1()
        suite.long_history()
        suite.big_table()
    finally:
        if args.keep:
            print(f"Kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    body = report(suite, sizes, args.quick, time.perf_counter() - started, load)
    replace_marked_section(README, body)
    print(f"\n{body}\n\nWritten to {README}")


if __name__ == "__main__":
    main()
