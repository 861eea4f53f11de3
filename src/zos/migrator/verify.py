"""``zos db verify``: every migration proven on populated, throwaway databases on each backend.

Creates and drops its own scratch databases; never touches the configured one.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, exc, text

from zos.config import Settings
from zos.database import connect, first_line, get_engine, open_connection, resolve_target
from zos.errors import Interrupted, ZosError
from zos.migrator.dialects.scratch import ddl_rolls_back, drop_database_sql, report_name
from zos.migrator.discovery import MigrationScript, discover_migrations
from zos.migrator.interrupts import Interrupts, RunInterrupted
from zos.migrator.verify_checks import (
    atomic_problems,
    data_problems,
    foreign_key_problems,
    schema_of,
    schema_problems,
)
from zos.migrator.verify_data import Factory, FillError, TableData, fill
from zos.migrator.verify_hooks import HookError, load_factories
from zos.migrator.verify_static import declared_changes, folder_problems


@dataclass(frozen=True)
class Check:
    """One check on one backend (``backend`` is "files" for the static check)."""

    backend: str
    name: str
    version: int | None
    seconds: float
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # information, not failure: what the backend cannot do

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class VerifyReport:
    """Every check ``verify`` ran, in order."""

    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


class VerifyFailed(ZosError):
    """``verify`` could not start: a scratch database could not be created."""


def verify(
    settings: Settings,
    server_urls: Sequence[str] = (),
    on_check: Callable[[Check], None] = lambda _check: None,
    *,
    metadata: MetaData | None = None,
    sqlite: bool = True,
) -> VerifyReport:
    """Run every check on a temporary SQLite file and on a scratch database of each server URL.

    The newest schema is compared with ``metadata`` (default: ``zos.database.metadata``);
    ``sqlite=False`` leaves out the SQLite file (the servers only).

    SIGINT and SIGTERM stop it at once, anywhere (a migration it runs included): everything
    it touches is its own and thrown away. The scratch databases and files are removed on the
    way out, and a second signal then is ignored so that the removal finishes.

    Raises:
        MigrationFileError: a migration file breaks the rules (nothing runs).
        HookError: the ``_verify.py`` hook, or one of its factories, fails.
        Interrupted: SIGINT or SIGTERM arrived (exit code 130 or 143).
        ConfigError: a URL cannot be parsed.
        DatabaseUnavailable: a server cannot be reached within
            ``database.connect_timeout_seconds``.
        VerifyFailed: a scratch database cannot be created or dropped.
    """
    from zos.migrator import migrations_directory

    directory = migrations_directory(settings)
    scripts = discover_migrations(directory)
    checks: list[Check] = []

    def report(check: Check) -> None:
        checks.append(check)
        on_check(check)

    interrupts = Interrupts()
    left: list[str] = []  # scratch databases that could not be dropped after a failure
    try:
        with interrupts.installed(), interrupts.interruptible():
            started = time.monotonic()
            static = tuple(folder_problems(directory))
            report(Check("files", "static", None, time.monotonic() - started, static))
            factories = load_factories(directory)
            _checks(
                settings, directory, scripts, factories, report, server_urls, metadata, sqlite, left
            )
    except RunInterrupted as stop:
        raise Interrupted(_interrupted(stop.signum, left), stop.signum) from None
    return VerifyReport(tuple(checks))


def _checks(
    settings: Settings,
    directory: Path,
    scripts: list[MigrationScript],
    factories: Mapping[str, Factory],
    report: Callable[[Check], None],
    server_urls: Sequence[str],
    metadata: MetaData | None,
    sqlite: bool,
    left: list[str],
) -> None:
    """Every backend's checks, in a temporary folder removed on the way out."""
    with tempfile.TemporaryDirectory(prefix="zos-verify-") as scratch_dir:
        work = Path(scratch_dir)
        for url in [*([None] if sqlite else []), *server_urls]:
            with _scratch(url, work, settings, left) as new_database:
                run = _Run(settings, directory, scripts, factories, new_database, work, report)
                run.metadata = metadata
                run.all_checks()


def _interrupted(signum: int, left: list[str]) -> str:
    name = signal.Signals(signum).name
    if left:
        return (
            f"interrupted by {name}; verify stopped, but could not drop its scratch databases "
            f"{', '.join(left)}: drop them by hand"
        )
    return f"interrupted by {name}; verify stopped and removed its scratch databases and files"


@dataclass
class _Run:
    settings: Settings
    directory: Path
    scripts: list[MigrationScript]
    factories: Mapping[str, Factory]
    new_database: Callable[[], str]
    work: Path
    report: Callable[[Check], None]
    backend: str = ""
    metadata: MetaData | None = None

    def settings_for(self, url: str, directory: Path | None = None) -> Settings:
        return Settings(
            data_dir=self.work / "data",
            log_level=self.settings.log_level,
            database=_scratch_database(url, self.settings),  # type: ignore[arg-type]
            migrations_dir=directory or self.directory,
        )

    def migrate(self, url: str, target: int | None, directory: Path | None = None) -> None:
        from zos.migrator import migrate

        try:
            migrate(self.settings_for(url, directory), target, backup=False)
        except Interrupted as stop:
            # Not a failed migration: the operator stopped verify. A BaseException, so that
            # no check takes it for one of its problems.
            raise RunInterrupted(stop.signum) from None

    def all_checks(self) -> None:
        url = self.new_database()
        self.backend = report_name(resolve_target(self.settings_for(url)).url.get_backend_name())
        self.timed("step-by-step equals all at once", None, lambda: self.step_by_step(url))
        for script in self.scripts:
            self.timed("data kept", script.version, partial(self.data, script.version))
        for script in self.scripts:
            self.timed("atomic", script.version, partial(self.atomic, script))

    def timed(
        self, name: str, version: int | None, run: Callable[[], tuple[list[str], list[str]]]
    ) -> None:
        started = time.monotonic()
        try:
            problems, notes = run()
        except HookError:
            raise  # the project's hook is broken: no check can run as it meant
        except ZosError as error:
            problems, notes = [str(error).splitlines()[0]], []
        seconds = time.monotonic() - started
        self.report(Check(self.backend, name, version, seconds, tuple(problems), tuple(notes)))

    def step_by_step(self, url: str) -> tuple[list[str], list[str]]:
        """All at once and one version at a time end in the same schema, which is metadata's,
        with every foreign key satisfied."""
        self.migrate(url, None)
        stepped = self.new_database()
        for script in self.scripts:
            self.migrate(stepped, script.version)
        with self.connection(url) as conn:
            all_at_once = schema_of(conn)
            problems = [f"the newest schema: {p}" for p in schema_problems(conn, self.metadata)]
        with self.connection(stepped) as conn:
            one_by_one = schema_of(conn)
        for table in sorted(set(all_at_once) | set(one_by_one)):
            if all_at_once.get(table) != one_by_one.get(table):
                problems.append(
                    f"table {table}: one version at a time gives {one_by_one.get(table)} but "
                    f"all at once gives {all_at_once.get(table)}"
                )
        return problems, []

    def data(self, version: int) -> tuple[list[str], list[str]]:
        """Rows filled at ``version`` survive every later migration, checked after each one."""
        url = self.new_database()
        self.migrate(url, version)
        try:
            with self.connection(url, begin=True) as conn:
                filled = fill(conn, version, self.factories)
        except FillError as error:
            return [f"version {version}: {error}"], []
        baseline = self.read(url, filled)
        declared: dict[str, frozenset[str]] = {}
        for script in (s for s in self.scripts if s.version > version):
            try:
                self.migrate(url, script.version)
            except ZosError as error:
                return [f"{script.name}: fails on a populated database: {error}"], []
            for table, columns in declared_changes(script.path).items():
                declared[table] = declared.get(table, frozenset()) | columns
            with self.connection(url) as conn:
                problems = data_problems(conn, filled, baseline, declared, script.name)
                problems += foreign_key_problems(conn, script.name)
            if problems:
                return problems, []
        with self.connection(url) as conn:
            return foreign_key_problems(conn, f"version {version}"), []

    def atomic(self, script: MigrationScript) -> tuple[list[str], list[str]]:
        """Made to fail right after its last statement, the migration leaves nothing behind."""
        url = self.new_database()
        earlier = [s.version for s in self.scripts if s.version < script.version]
        if earlier:
            self.migrate(url, earlier[-1])
            with self.connection(url, begin=True) as conn:
                try:
                    fill(conn, earlier[-1], self.factories)
                except FillError as error:
                    return [f"version {earlier[-1]}: {error}"], []
        planted = self.work / f"planted-{uuid.uuid4().hex[:8]}"
        shutil.copytree(self.directory, planted)
        return atomic_problems(
            script,
            planted,
            connect=lambda: self.connection(url),
            run=lambda: self.migrate(url, script.version, planted),
            backend=self.backend,
            transactional=ddl_rolls_back(self.backend) and _transactional(script),
        )

    def read(self, url: str, filled: Mapping[str, TableData]) -> dict[str, list[dict[str, Any]]]:
        from zos.migrator.verify_data import read_rows, reflect

        with self.connection(url) as conn:
            metadata = reflect(conn)
            return {name: read_rows(conn, metadata.tables[name]) for name in filled}

    @contextmanager
    def connection(self, url: str, *, begin: bool = False) -> Iterator[Any]:
        """A connection to a scratch database; a driver's error becomes a ``ZosError`` whose
        message is the driver's own first line, as in every other command."""
        engine = get_engine(self.settings_for(url))
        try:
            with connect(engine) as conn, conn.begin() if begin else contextlib.nullcontext():
                yield conn
        finally:
            engine.dispose()


def _transactional(script: MigrationScript) -> bool:
    """False for a ``TRANSACTIONAL = False`` migration, atomic on no backend by design."""
    from zos.migrator.source import read_source

    return read_source(script.path.read_bytes(), script.version, script.name).transactional


def _scratch_database(url: str, settings: Settings) -> dict[str, Any]:
    """The database settings of a scratch database: its URL, and the operator's bounds."""
    bounds = settings.database
    return {
        "url": url,
        "connect_timeout_seconds": bounds.connect_timeout_seconds,
        "busy_timeout_seconds": bounds.busy_timeout_seconds,
        "lock_timeout_seconds": bounds.lock_timeout_seconds,
        "ddl_lock_timeout_seconds": bounds.ddl_lock_timeout_seconds,
    }


@contextmanager
def _scratch(
    url: str | None, work: Path, settings: Settings, left: list[str]
) -> Iterator[Callable[[], str]]:
    """A maker of empty databases: SQLite files under ``work``, or databases on the server of
    ``url`` (created here, dropped on the way out). Connecting to the server is bounded by
    ``database.connect_timeout_seconds`` like every other command's connection. After a
    failure, the databases that could not be dropped are added to ``left``.

    Raises:
        DatabaseUnavailable: the server cannot be reached (one ``cannot connect to …`` line).
        VerifyFailed: the server refuses to create or drop a scratch database.
    """
    created: list[str] = []
    if url is None:

        def new_file() -> str:
            created.append(uuid.uuid4().hex[:12])
            return f"sqlite:///{work / ('db-' + created[-1] + '.db')}"

        yield new_file
        return
    admin_settings = Settings(database=_scratch_database(url, settings))  # type: ignore[arg-type]
    target = resolve_target(admin_settings)
    server = get_engine(admin_settings)
    admin = server.execution_options(isolation_level="AUTOCOMMIT")

    def run(statement: str, doing: str) -> None:
        with open_connection(admin, target.display) as conn:
            try:
                conn.execute(text(statement))
            except exc.DBAPIError as error:
                raise VerifyFailed(
                    f"cannot {doing} on {target.display}: {first_line(error.orig)}"
                ) from error

    def new_database() -> str:
        name = f"zos_verify_{uuid.uuid4().hex[:12]}"
        run(f"CREATE DATABASE {name}", "create a scratch database")
        created.append(name)
        return target.url.set(database=name).render_as_string(hide_password=False)

    failed = False
    stopped: RunInterrupted | None = None
    try:
        yield new_database
    except BaseException:
        failed = True
        raise
    finally:
        try:
            for name in list(created):
                drop = drop_database_sql(target.backend, name)
                try:
                    try:
                        run(drop, f"drop the scratch database {name}")
                    except RunInterrupted as stop:
                        # The first signal, during the clean-up: finish it (a second signal
                        # is ignored), then stop.
                        failed, stopped = True, stop
                        run(drop, f"drop the scratch database {name}")
                except ZosError:
                    if not failed:  # else the error that ended the checks is the one to tell
                        raise
                    left.append(name)
        finally:
            server.dispose()
        if stopped is not None:
            raise stopped
