"""zos against Alembic, whole processes side by side, on SQLite files in WAL mode.

Run by hand, never in CI:  .venv/bin/python bench/run.py [--quick]
Everything happens in a temporary folder that is removed afterwards. The results table is
written between the <!-- results --> markers of bench/README.md, which says what each case is.
"""

from __future__ import annotations

import argparse
import json
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
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import bigtable
import pgbig
import projects
import servers
from harness import (
    Case,
    Row,
    Timing,
    check_call,
    clean_environment,
    measure,
    replace_marked_section,
    results_table,
)
from projects import ALEMBIC, DB_NAME, SQLITE_SHELL, ZOS

README = Path(__file__).with_name("README.md")
PARTS = ("startup", "history", "big", "pg-backfill")
VERSION_1_TABLES = 18
# Modules that must not be imported on the way of status, a no-op migrate or the guard on SQLite.
FORBIDDEN = ("sqlalchemy", "asyncio", "importlib.metadata", "pydantic", "pydantic_settings")
GUARD = (
    "from zos.config import load_settings; from zos.migrator import ensure_schema_current; "
    "ensure_schema_current(load_settings())"
)


@dataclass(frozen=True)
class Sizes:
    """How much work one run of the suite does."""

    startup_runs: int
    fresh_runs: int
    many: int  # migrations in the long history applied fresh
    many_runs: int
    status_many: int  # applied migrations in the long history that status reads
    rows: int  # rows in the big messages table
    big_runs: int
    guard_calls: int  # warm calls of the guard in one process


FULL = Sizes(
    startup_runs=21,
    fresh_runs=11,
    many=1000,
    many_runs=5,
    status_many=5000,
    rows=1_000_000,
    big_runs=5,
    guard_calls=200,
)
QUICK = Sizes(
    startup_runs=3,
    fresh_runs=1,
    many=30,
    many_runs=1,
    status_many=100,
    rows=5_000,
    big_runs=1,
    guard_calls=20,
)


class Backend:
    """Where a case's database lives: an SQLite file in its folder, or a scratch PostgreSQL
    database named after its folder."""

    key = ""
    name = ""

    def url(self, directory: Path) -> str:
        raise NotImplementedError

    def reset(self, directory: Path) -> None:
        """Make the folder's database empty (untimed, before a fresh run)."""
        raise NotImplementedError

    def tables(self, directory: Path) -> int:
        raise NotImplementedError

    def driver_read(self, directory: Path) -> list[str]:
        """A process that reads the newest version with the driver alone: the floor."""
        raise NotImplementedError


class Sqlite(Backend):
    key, name = "sqlite", "SQLite"

    def __init__(self, empty: Path) -> None:
        self.empty = empty

    def url(self, directory: Path) -> str:
        return f"sqlite:///{directory / DB_NAME}"

    def reset(self, directory: Path) -> None:
        projects.fresh_copy(self.empty, directory / DB_NAME)

    def tables(self, directory: Path) -> int:
        return _sqlite_tables(directory / DB_NAME)

    def driver_read(self, directory: Path) -> list[str]:
        return [
            sys.executable,
            "-c",
            "import sqlite3; c = sqlite3.connect('file:db.sqlite?mode=ro', uri=True); "
            "print(c.execute('SELECT MAX(version) FROM _schema_version').fetchone()[0])",
        ]


class Postgresql(Backend):
    key, name = "pg", "PostgreSQL"

    def __init__(self, pg: servers.Postgres) -> None:
        self.pg = pg

    def url(self, directory: Path) -> str:
        return self.pg.url(directory.name)

    def reset(self, directory: Path) -> None:
        self.pg.create(directory.name)

    def tables(self, directory: Path) -> int:
        return self.pg.tables(directory.name)

    def driver_read(self, directory: Path) -> list[str]:
        return [
            sys.executable,
            "-c",
            f"import psycopg; c = psycopg.connect({self.pg.libpq(directory.name)!r}); "
            "print(c.execute('SELECT MAX(version) FROM _schema_version').fetchone()[0])",
        ]


class Suite:
    """Every measurement, each in its own folder under one temporary root."""

    def __init__(self, root: Path, sizes: Sizes) -> None:
        self.root = root
        self.sizes = sizes
        self.env = clean_environment()
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.empty = projects.empty_wal_database(root / "empty.sqlite")
        self.zos_v1 = projects.zos_folder(root / "zos-v1", {}, with_version_1=True)
        self.backends: list[Backend] = [Sqlite(self.empty)]
        self.pg: servers.Postgres | None = None
        missing = servers.unavailable()
        if missing is None:
            self.pg = servers.Postgres()
            self.backends.append(Postgresql(self.pg))
        else:
            self.notes.append(f"PostgreSQL cases not run: {missing}.")
        self.alembic_v1 = projects.alembic_project(
            root / "alembic-v1", projects.alembic_version_1(), self.env
        )

    def close(self) -> None:
        if self.pg is not None:
            self.pg.drop_all()

    def folder(self, name: str) -> Path:
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def zos_env(self, backend: Backend, migrations: Path, directory: Path) -> dict[str, str]:
        return projects.zos_url_env(self.env, migrations, backend.url(directory), directory)

    def zos_case(
        self, backend: Backend, label: str, args: list[str], migrations: Path, directory: Path
    ) -> Case:
        return Case(label, [*ZOS, *args], directory, self.zos_env(backend, migrations, directory))

    def alembic_case(
        self, backend: Backend, label: str, project: Path, directory: Path, *command: str
    ) -> Case:
        ini = projects.alembic_ini_for(project, backend.url(directory), directory / "alembic.ini")
        return Case(label, projects.alembic_argv(ini, *command), directory, self.env)

    def fresh(self, backend: Backend, case: Case, tables: int) -> Case:
        """Start every run of ``case`` from an empty database; check it built ``tables`` tables."""
        directory = case.cwd
        case.prepare = lambda: backend.reset(directory)
        case.verify = lambda: _expect_tables(backend, directory, tables)
        return case

    def setup(self, case: Case) -> None:
        """Run ``case`` once, untimed (bringing its database to where the timed runs need it)."""
        check_call(case.argv, case.cwd, case.env)

    # --- 1 and 2: the version-1 schema ------------------------------------------------------

    def version_1(self, backend: Backend) -> None:
        name = backend.name
        section(f"1. {name}: status, no-op migrate and the start-up guard at version 1")
        yoyo = projects.yoyo_folder(
            self.root / f"{backend.key}-yoyo-v1",
            projects.yoyo_version_1("postgresql" if backend.key == "pg" else "sqlite"),
        )
        zos_dir, alembic_dir, yoyo_dir = (
            self.folder(f"{backend.key}-v1-{tool}") for tool in ("zos", "alembic", "yoyo")
        )
        for directory in (zos_dir, alembic_dir, yoyo_dir):
            backend.reset(directory)
        yoyo_url = backend.url(yoyo_dir)
        upgrade = self.alembic_case(
            backend, "alembic upgrade head (no-op)", self.alembic_v1, alembic_dir, "upgrade", "head"
        )
        migrate = self.zos_case(
            backend, "zos db migrate (no-op)", ["db", "migrate"], self.zos_v1, zos_dir
        )
        apply = Case(
            "yoyo apply (no-op)", projects.yoyo_argv("apply", yoyo_url, yoyo), yoyo_dir, self.env
        )
        for case in (migrate, upgrade, apply):
            self.setup(case)
        status = self.zos_case(backend, "zos db status", ["db", "status"], self.zos_v1, zos_dir)
        current = self.alembic_case(
            backend, "alembic current", self.alembic_v1, alembic_dir, "current"
        )
        listing = Case("yoyo list", projects.yoyo_argv("list", yoyo_url, yoyo), yoyo_dir, self.env)
        guard = Case(
            "start-up guard (python -c, a process)",
            [sys.executable, "-c", GUARD],
            zos_dir,
            self.zos_env(backend, self.zos_v1, zos_dir),
        )
        floor = Case("python -c pass", [sys.executable, "-c", "pass"], zos_dir, self.env)
        driver = Case(
            "the driver alone reads the version", backend.driver_read(zos_dir), zos_dir, self.env
        )
        cases = [status, current, listing, migrate, upgrade, apply, guard, floor, driver]
        if backend.key == "sqlite":
            cases += [
                self.zos_case(backend, "zos --help", ["--help"], self.zos_v1, zos_dir),
                Case("alembic --help", [*ALEMBIC, "--help"], alembic_dir, self.env),
            ]
        timings = dict(
            zip([c.label for c in cases], measure(cases, self.sizes.startup_runs), strict=True)
        )
        t = timings.__getitem__
        on = f" ({name})"
        sqlite = backend.key == "sqlite"
        self.rows += [
            Row(
                f"`zos db status` against `alembic current`{on}",
                t("zos db status"),
                t("alembic current"),
                "≤ 0.30" if sqlite else "≤ 0.50",
                0.30 if sqlite else 0.50,
            ),
            Row(
                f"`zos db status` against `yoyo list`{on}",
                t("zos db status"),
                t("yoyo list"),
                *(("≤ 0.70", 0.70) if sqlite else ()),
            ),
            Row(
                f"no-op `zos db migrate` against `alembic current`{on}",
                t("zos db migrate (no-op)"),
                t("alembic current"),
                *(("≤ 0.30", 0.30) if sqlite else ()),
            ),
            Row(
                f"no-op `zos db migrate` against `yoyo list`{on}",
                t("zos db migrate (no-op)"),
                t("yoyo list"),
                *(("≤ 0.70", 0.70) if sqlite else ()),
            ),
            Row(
                f"no-op `zos db migrate` against no-op `yoyo apply`{on}",
                t("zos db migrate (no-op)"),
                t("yoyo apply (no-op)"),
            ),
            Row(
                f"no-op `zos db migrate` against no-op `alembic upgrade head`{on}",
                t("zos db migrate (no-op)"),
                t("alembic upgrade head (no-op)"),
            ),
            Row(
                f"`zos db status` against the driver alone reading the version{on}",
                t("zos db status"),
                t("the driver alone reads the version"),
            ),
            Row(
                f"start-up guard as a process against `python -c pass`{on}",
                t("start-up guard (python -c, a process)"),
                t("python -c pass"),
                *(("≤ 4", 4.0) if sqlite else ()),
            ),
        ]
        self.guard_in_process(backend, zos_dir, t("python -c pass"))
        if sqlite:
            self.rows += [
                Row("`zos --help` against `python -c pass`", t("zos --help"), t("python -c pass")),
                Row("`zos --help` against `alembic --help`", t("zos --help"), t("alembic --help")),
            ]
        self.import_times(backend, status, migrate, guard, current, listing)

        section(f"2. {name}: fresh migrate of the version-1 schema")
        zos_dir, alembic_dir, yoyo_dir = (
            self.folder(f"{backend.key}-fresh-{tool}") for tool in ("zos", "alembic", "yoyo")
        )
        for directory in (yoyo_dir,):
            backend.reset(directory)
        cases = [
            self.fresh(
                backend,
                self.zos_case(backend, "zos db migrate", ["db", "migrate"], self.zos_v1, zos_dir),
                VERSION_1_TABLES,
            ),
            self.fresh(
                backend,
                self.alembic_case(
                    backend, "alembic upgrade head", self.alembic_v1, alembic_dir, "upgrade", "head"
                ),
                VERSION_1_TABLES,
            ),
            self.fresh(
                backend,
                Case(
                    "yoyo apply",
                    projects.yoyo_argv("apply", backend.url(yoyo_dir), yoyo),
                    yoyo_dir,
                    self.env,
                ),
                VERSION_1_TABLES,
            ),
        ]
        migrate_t, upgrade_t, apply_t = measure(cases, self.sizes.fresh_runs)
        self.rows += [
            Row(
                f"fresh migrate to version 1 (18 tables){on}",
                migrate_t,
                upgrade_t,
                "≤ 0.65" if sqlite else "≤ 0.80",
                0.65 if sqlite else 0.80,
            ),
            Row(f"fresh migrate to version 1 against `yoyo apply`{on}", migrate_t, apply_t),
        ]
        self.import_times(backend, cases[0])

    def guard_in_process(self, backend: Backend, directory: Path, floor: Timing) -> None:
        """The guard timed inside the process an application would call it from."""
        script = Path(__file__).with_name("guard.py")
        env = self.zos_env(backend, self.zos_v1, directory)
        first = Timing("first call, zos's imports included")
        warm = Timing(f"a further call (median of {self.sizes.guard_calls})")
        for _ in range(self.sizes.startup_runs):
            try:
                out = check_call(
                    [sys.executable, str(script), str(self.sizes.guard_calls)], directory, env
                )
            except RuntimeError as error:
                first.error = warm.error = str(error)
                break
            figures = json.loads(out.strip().splitlines()[-1])
            first.times.append(figures["first_s"])
            warm.times.append(figures["warm_s"])
        print(f"  guard in-process: {first.label} {first.cell()}; {warm.label} {warm.cell()}")
        on = f" ({backend.name})"
        self.rows += [
            Row(f"start-up guard in-process, first call (imports included){on}", first, floor),
            Row(f"start-up guard in-process, a further call{on}", warm),
        ]

    # --- 3: a long history ------------------------------------------------------------------

    def long_history(self, backend: Backend) -> None:
        many, status_many, on = self.sizes.many, self.sizes.status_many, f" ({backend.name})"
        section(
            f"3. {backend.name}: {many:,} fresh migrations, status with {status_many:,} applied"
        )
        zos_many = self.zos_small(many)
        alembic_many = self.alembic_small(many)
        zos_dir, alembic_dir = (
            self.folder(f"{backend.key}-many-{tool}") for tool in ("zos", "alembic")
        )
        started = time.perf_counter()
        migrate, upgrade = measure(
            [
                self.fresh(
                    backend,
                    self.zos_case(
                        backend, f"zos db migrate ({many:,})", ["db", "migrate"], zos_many, zos_dir
                    ),
                    many,
                ),
                self.fresh(
                    backend,
                    self.alembic_case(
                        backend,
                        f"alembic upgrade head ({many:,})",
                        alembic_many,
                        alembic_dir,
                        "upgrade",
                        "head",
                    ),
                    many,
                ),
            ],
            self.sizes.many_runs,
        )
        print(f"  ({time.perf_counter() - started:.0f} s)")
        self.rows.append(
            Row(f"fresh apply of {many:,} migrations{on}", migrate, upgrade, "≤ 0.35", 0.35)
        )

        # The fresh runs above leave each database with the whole history applied.
        big_dir, one_dir = (self.folder(f"{backend.key}-status-{n}") for n in (status_many, 1))
        zos_big, zos_one = self.zos_small(status_many), self.zos_small(1)
        started = time.perf_counter()
        for directory, folder in ((big_dir, zos_big), (one_dir, zos_one)):
            backend.reset(directory)
            self.setup(self.zos_case(backend, "setup", ["db", "migrate"], folder, directory))
        print(f"  applied {status_many:,} migrations in {time.perf_counter() - started:.0f} s")
        status_big, status_one, status_many_t, current_many = measure(
            [
                self.zos_case(
                    backend,
                    f"zos db status ({status_many:,} applied)",
                    ["db", "status"],
                    zos_big,
                    big_dir,
                ),
                self.zos_case(
                    backend, "zos db status (1 applied)", ["db", "status"], zos_one, one_dir
                ),
                self.zos_case(
                    backend,
                    f"zos db status ({many:,} applied)",
                    ["db", "status"],
                    zos_many,
                    zos_dir,
                ),
                self.alembic_case(
                    backend,
                    f"alembic current ({many:,} applied)",
                    alembic_many,
                    alembic_dir,
                    "current",
                ),
            ],
            self.sizes.startup_runs,
        )
        self.rows += [
            Row(
                f"`zos db status`, {status_many:,} applied, against 1 applied{on}",
                status_big,
                status_one,
                "≤ 1.15",
                1.15,
            ),
            Row(
                f"`zos db status` against `alembic current`, {many:,} applied{on}",
                status_many_t,
                current_many,
            ),
        ]

    def zos_small(self, count: int) -> Path:
        folder = self.root / f"zos-small-{count}"
        if not folder.exists():
            projects.zos_folder(folder, projects.zos_small_tables(count))
        return folder

    def alembic_small(self, count: int) -> Path:
        ini = self.root / f"alembic-small-{count}" / "alembic.ini"
        if not ini.exists():
            projects.alembic_project(ini.parent, projects.alembic_small_tables(count), self.env)
        return ini

    # --- 4 and 5: a big table ---------------------------------------------------------------

    def big_table(self) -> None:
        rows = self.sizes.rows
        small = max(rows // 50, 1000)
        section(f"4. SQLite: a {rows:,}-row messages table")
        stamp_ini = projects.alembic_project(
            self.root / "alembic-stamp", projects.alembic_version_1(), self.env
        )
        prepared = {}
        for count in (rows, small):
            folder = self.folder(f"big-prepared-{count}")
            started = time.perf_counter()
            bigtable.prepare_big_database(folder / DB_NAME, count, self.zos_v1, stamp_ini, self.env)
            size = (folder / DB_NAME).stat().st_size / 2**20
            print(
                f"  prepared {count:,} rows, {size:,.0f} MiB, in "
                f"{time.perf_counter() - started:.0f} s"
            )
            prepared[count] = folder / DB_NAME
        size = prepared[rows].stat().st_size / 2**20
        self.notes.append(f"The prepared {rows:,}-row SQLite file is {size:,.0f} MiB.")
        bench = bigtable.BigTableCases(self.root / "big", prepared[rows], rows, self.env)
        little = bigtable.BigTableCases(self.root / "big-small", prepared[small], small, self.env)

        shell, alembic, zos = measure(with_memory(bench.rebuild_cases()), self.sizes.big_runs)
        (_, _, zos_small) = measure(with_memory(little.rebuild_cases()), 1)
        self.rows += [
            Row(
                f"{rows:,}-row rebuild (content nullable): zos against the sqlite3 shell",
                zos,
                shell,
                "≤ 1.05",
                1.05,
                rows=rows,
                memory=True,
            ),
            Row(
                f"{rows:,}-row rebuild: zos against Alembic batch mode",
                zos,
                alembic,
                rows=rows,
                memory=True,
            ),
            memory_row(f"rebuild (SQLite), {rows:,} rows against {small:,}", zos, zos_small),
        ]
        shutil.rmtree(self.root / "big")

        shell, alembic, zos = measure(with_memory(bench.add_column_cases()), self.sizes.big_runs)
        (_, _, zos_small) = measure(with_memory(little.add_column_cases()), 1)
        self.rows += [
            Row(
                f"ADD COLUMN on {rows:,} rows: zos against the sqlite3 shell",
                zos,
                shell,
                memory=True,
            ),
            Row(f"ADD COLUMN on {rows:,} rows: zos against Alembic", zos, alembic, memory=True),
            memory_row(f"ADD COLUMN (SQLite), {rows:,} rows against {small:,}", zos, zos_small),
        ]
        shutil.rmtree(self.root / "big")

        section(f"5. SQLite: {rows:,}-row batched backfill beside a concurrent writer")
        case, writer = bigtable.zos_backfill_case(bench)
        small_case, small_writer = bigtable.zos_backfill_case(little)
        try:
            (backfill,) = measure(with_memory([case]), self.sizes.big_runs)
            (backfill_small,) = measure(with_memory([small_case]), 1)
        finally:
            writer.stop()
            small_writer.stop()
        longest = max(writer.longest_waits) if backfill.ok and writer.longest_waits else None
        text = backfill.cell(rows, memory=True)
        if longest is not None:
            text += f"; writer's longest wait {longest * 1000:,.0f} ms ({writer.inserts:,} inserts)"
        self.rows += [
            Row(
                f"{rows:,}-row batched backfill (SQLite): the concurrent writer's longest wait",
                backfill,
                target="≤ 1 s",
                limit=1.0,
                absolute_value=longest,
                zos_text=text,
            ),
            memory_row(
                f"batched backfill (SQLite), {rows:,} rows against {small:,}",
                backfill,
                backfill_small,
            ),
        ]
        shutil.rmtree(self.root / "big")
        shutil.rmtree(self.root / "big-small")

    def pg_backfill(self) -> None:
        if self.pg is None:
            return
        rows = self.sizes.rows
        small = max(rows // 50, 1000)
        section(f"6. PostgreSQL: {rows:,}-row batched backfill beside {pgbig.WRITERS} writers")
        for label, count in (("big_template", rows), ("small_template", small)):
            started = time.perf_counter()
            pgbig.prepare_template(self.pg, label, count, self.zos_v1, self.env)
            print(f"  prepared {count:,} rows in {time.perf_counter() - started:.0f} s")
        cases, writers = pgbig.backfill_cases(
            self.pg, "big_template", self.folder("pg-big"), rows, self.env
        )
        small_cases, small_writers = pgbig.backfill_cases(
            self.pg, "small_template", self.folder("pg-small"), small, self.env
        )
        try:
            zos, loop = measure(with_memory(cases), self.sizes.big_runs)
            (zos_small,) = measure(with_memory(small_cases[:1]), 1)
        finally:
            for writer in (*writers, *small_writers):
                writer.stop()

        def waited(timing: Timing, writer: pgbig.Writers) -> str:
            text = timing.cell(rows, memory=True)
            if timing.ok and writer.longest_waits:
                text += (
                    f"; writers' longest wait {max(writer.longest_waits) * 1000:,.0f} ms "
                    f"({writer.inserts:,} transactions)"
                )
            return text

        longest = max(writers[0].longest_waits) if zos.ok and writers[0].longest_waits else None
        self.rows += [
            Row(
                f"{rows:,}-row batched backfill (PostgreSQL, {pgbig.WRITERS} writers): "
                "rows/s against a hand-written loop",
                zos,
                loop,
                "≤ 1.05 (rows/s ≥ 0.95x)",
                1 / 0.95,
                zos_text=waited(zos, writers[0]),
                reference_text=f"{loop.label}: {waited(loop, writers[1])}",
            ),
            Row(
                f"{rows:,}-row batched backfill (PostgreSQL): the writers' longest wait",
                zos,
                target="≤ 1 s",
                limit=1.0,
                absolute_value=longest,
                zos_text=f"{longest * 1000:,.0f} ms" if longest is not None else zos.cell(),
            ),
            memory_row(
                f"batched backfill (PostgreSQL), {rows:,} rows against {small:,}", zos, zos_small
            ),
        ]
        for label in ("big_template", "small_template"):
            self.pg.drop(label)

    # --- where the start-up time goes -------------------------------------------------------

    def import_times(self, backend: Backend, *cases: Case) -> None:
        """One ``python -X importtime`` run of each command: the packages its imports cost most,
        and which of the modules zos must not load on these paths it loaded."""
        for case in cases:
            if case.prepare is not None:
                case.prepare()
            argv = case.argv if case.argv[0] == sys.executable else [sys.executable, *case.argv]
            done = subprocess.run(
                [argv[0], "-X", "importtime", *argv[1:]],
                cwd=case.cwd,
                env=case.env,
                capture_output=True,
                text=True,
            )
            total, top, modules = _top_imports(done.stderr)
            listed = ", ".join(f"{name} {ms:.0f}" for name, ms in top)
            loaded = [name for name in FORBIDDEN if name in modules]
            note = (
                f"{backend.name}: `{case.label}` imports {len(modules)} modules in {total:.0f} ms "
                f"(`-X importtime`, which inflates it somewhat); by package, in ms: {listed}."
            )
            if case.argv[0] != ALEMBIC[0] and case.argv[0] != projects.YOYO[0]:
                note += f" Of {', '.join(FORBIDDEN)}: {', '.join(loaded) or 'none'}."
            self.notes.append(note)


def _top_imports(stderr: str, count: int = 6) -> tuple[float, list[tuple[str, float]], set[str]]:
    """Total import time, the ``count`` costliest packages by their modules' own time, in ms,
    and every module imported."""
    by_package: dict[str, float] = {}
    modules: set[str] = set()
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s+(\S+)", line)
        if match:
            modules.add(match.group(2))
            package = match.group(2).split(".")[0]
            by_package[package] = by_package.get(package, 0.0) + int(match.group(1)) / 1000
    ranked = sorted(by_package.items(), key=lambda item: -item[1])
    return sum(by_package.values()), ranked[:count], modules


def _sqlite_tables(database: Path) -> int:
    conn = sqlite3.connect(database)
    try:
        # Each tool's own bookkeeping tables are not counted.
        found = conn.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE '\\_schema%' ESCAPE '\\' AND name != 'alembic_version' "
            "AND name NOT LIKE '\\_yoyo%' ESCAPE '\\' AND name != 'yoyo_lock'"
        ).fetchone()
    finally:
        conn.close()
    return int(found[0])


def _expect_tables(backend: Backend, directory: Path, count: int) -> None:
    found = backend.tables(directory)
    if found != count:
        raise AssertionError(
            f"{backend.name} database of {directory.name} has {found} tables, not {count}"
        )


def with_memory(cases: list[Case]) -> list[Case]:
    """The same cases, each run measuring its peak memory."""
    for case in cases:
        case.memory = True
    return cases


def memory_row(what: str, big: Timing, small: Timing) -> Row:
    """zos's peak memory at the full size against a fiftieth of it: flat means the same."""
    both = big.peak is not None and small.peak is not None and big.ok and small.ok
    ratio = big.peak / small.peak if both else None  # type: ignore[operator]
    text = f"peak {big.peak / 2**20:,.0f} MiB" if big.peak is not None else big.cell()
    reference = f"peak {small.peak / 2**20:,.0f} MiB" if small.peak is not None else small.cell()
    return Row(
        f"zos's peak memory: {what}",
        big,
        target="flat (≤ 1.10)",
        limit=1.10,
        absolute_value=ratio,
        zos_text=text,
        reference_text=reference,
        ratio_text=f"{ratio:.2f}" if ratio is not None else "",
    )


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
        f"yoyo {_version_of('yoyo-migrations')}, {_postgres_version()}, "
        f"zos {version('zos')} ({source})"
    )


def _version_of(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _postgres_version() -> str:
    if servers.unavailable() is not None:
        return "no PostgreSQL"
    import psycopg

    with psycopg.connect(f"postgresql://{servers.SERVER}/postgres", connect_timeout=5) as conn:
        return "PostgreSQL " + str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]


def report(suite: Suite, sizes: Sizes, quick: bool, seconds: float, load: float) -> str:
    runs = (
        f"Medians of {sizes.startup_runs} runs for status and start-up, {sizes.fresh_runs} for "
        f"fresh migrate, {sizes.many_runs} for the {sizes.many:,} migrations and "
        f"{sizes.big_runs} for the big tables, each after one warm-up run; (min-max) in brackets."
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
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run (default: all of {','.join(PARTS)}); a partial run "
        "prints its table but leaves README.md alone",
    )
    args = parser.parse_args()
    parts = set(args.only.split(","))
    if unknown := parts - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    sizes = QUICK if args.quick else FULL
    root = Path(tempfile.mkdtemp(prefix="zos-bench-"))
    started, load = time.perf_counter(), os.getloadavg()[0]
    print(f"Working in {root}")
    try:
        suite = Suite(root, sizes)
        try:
            if "startup" in parts:
                for backend in suite.backends:
                    suite.version_1(backend)
            if "history" in parts:
                for backend in suite.backends:
                    suite.long_history(backend)
            if "big" in parts:
                suite.big_table()
            if "pg-backfill" in parts:
                suite.pg_backfill()
        finally:
            suite.close()
    finally:
        if args.keep:
            print(f"Kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    body = report(suite, sizes, args.quick, time.perf_counter() - started, load)
    if parts == set(PARTS):
        replace_marked_section(README, body)
        print(f"\n{body}\n\nWritten to {README}")
    else:
        print(f"\n{body}\n\n(a partial run: {README} left as it was)")


if __name__ == "__main__":
    main()
