"""Shared fixtures: isolation from the caller's environment, the ``backend`` fixture over the
three real databases, and throwaway migration folders."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from zos.cli import cli
from zos.config import Settings

# `zos db verify`'s checks of the real migrations as tests (servers: pyproject's zos_backends).
pytest_plugins = ["zos.testing.verify"]

SERVER_URLS = {
    "postgresql": os.environ.get(
        "ZOS_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("ZOS_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
FIXTURES = Path(__file__).parent / "fixtures" / "migrations"
REAL_MIGRATIONS = Path(__file__).parents[1] / "src" / "zos" / "migrations"


# Modules whose tests start many processes or wait on locks: under pytest-xdist
# (`--dist loadgroup`) they share one worker, so they never compete with each other for the CPU.
# test_faults is left out: its kill loops are the longest tests, and one worker running them all
# one after another would be the whole suite's critical path.
_SERIAL_MODULES = frozenset({"test_concurrency", "test_backfill"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return  # the marker is xdist's, unknown (and refused by --strict-markers) without it
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.split(".")[-1] in _SERIAL_MODULES:
            item.add_marker(pytest.mark.xdist_group("processes"))


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the caller's ZOS_* variables, ./config.yaml or ./data."""
    for name in list(os.environ):
        if name.startswith("ZOS_") and not name.startswith("ZOS_TEST_"):
            monkeypatch.delenv(name)
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)


@dataclass
class Backend:
    """An empty, throwaway database on one of the three supported backends."""

    name: str
    url: str
    tmp_path: Path
    sibling: Callable[[], Backend]  # another empty database on the same server

    def settings(self, migrations_dir: Path | None = None, **values: object) -> Settings:
        return Settings(
            data_dir=self.tmp_path / "data",
            database={"url": self.url, **values},  # type: ignore[arg-type]
            migrations_dir=migrations_dir,
        )

    def engine(self) -> Engine:
        from zos.database import get_engine

        return get_engine(self.settings())

    def env(self, migrations_dir: Path | None = None) -> dict[str, str]:
        """Environment for a ``zos`` process against this database."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZOS_")}
        env["ZOS_DATABASE_URL"] = self.url
        env["ZOS_DATA_DIR"] = str(self.tmp_path / "data")
        if migrations_dir is not None:
            env["ZOS_MIGRATIONS_DIR"] = str(migrations_dir)
        return env


_reachable: dict[str, str | None] = {}


def _server_problem(name: str) -> str | None:
    """None when the server answers, otherwise why it does not (checked once per session)."""
    if name not in _reachable:
        engine = create_engine(SERVER_URLS[name])
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            _reachable[name] = None
        except Exception as exc:  # any failure means the backend cannot be used
            where = make_url(SERVER_URLS[name]).render_as_string()
            _reachable[name] = f"{name} at {where} is unreachable: {str(exc).splitlines()[0]}"
        finally:
            engine.dispose()
    return _reachable[name]


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """An empty database on each supported backend in turn."""
    yield from _backend(request.param, tmp_path)


@pytest.fixture(params=["postgresql", "mariadb"])
def server_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """An empty database on each database server (not SQLite): for what only servers have."""
    yield from _backend(request.param, tmp_path)


@pytest.fixture
def mariadb_backend(tmp_path: Path) -> Iterator[Backend]:
    """An empty MariaDB database: for what only a database whose DDL commits at once shows."""
    yield from _backend("mariadb", tmp_path)


def _backend(name: str, tmp_path: Path) -> Iterator[Backend]:
    if name != "sqlite":
        problem = _server_problem(name)
        if problem is not None:
            if os.environ.get("CI") == "true":
                pytest.fail(problem)
            pytest.skip(problem)
    created: list[str] = []
    admin = (
        None if name == "sqlite" else create_engine(SERVER_URLS[name], isolation_level="AUTOCOMMIT")
    )

    def make() -> Backend:
        if admin is None:
            folder = tmp_path / f"sqlite_{len(created)}"
            created.append(str(folder))
            return Backend(name, f"sqlite:///{folder / 'data' / 'zos.db'}", folder, make)
        database = _take_database(name, admin)
        created.append(database)
        url = make_url(SERVER_URLS[name]).set(database=database)
        folder = tmp_path / database
        folder.mkdir()
        return Backend(name, url.render_as_string(hide_password=False), folder, make)

    try:
        yield make()
    finally:
        if admin is not None:
            for database in created:
                _give_back_database(name, admin, database)
            admin.dispose()


# PostgreSQL's CREATE DATABASE copies a template and syncs it (about 0.6 s here, DROP 0.4 s),
# most of a short test's time: each test worker keeps the databases its tests used and hands
# them out again once reset to what CREATE DATABASE gives (every schema dropped, public made
# anew, database and per-database role settings reset). MariaDB's are cheap and not kept.
_CLEAN_POSTGRESQL: list[str] = []
_PG_RESET = [
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    "DO $$ DECLARE s text; BEGIN FOR s IN SELECT nspname FROM pg_namespace"
    " WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
    " AND nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%'"
    " LOOP EXECUTE format('DROP SCHEMA %I CASCADE', s); END LOOP; END $$",
    "CREATE SCHEMA public AUTHORIZATION pg_database_owner",
    "GRANT USAGE ON SCHEMA public TO PUBLIC",
    "COMMENT ON SCHEMA public IS 'standard public schema'",
]


def _take_database(name: str, admin: Engine) -> str:
    if name == "postgresql" and _CLEAN_POSTGRESQL:
        return _CLEAN_POSTGRESQL.pop()
    database = f"zos_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {database}"))
    return database


def _give_back_database(name: str, admin: Engine, database: str) -> None:
    if name == "postgresql" and _reset_postgresql(admin, database):
        _CLEAN_POSTGRESQL.append(database)
        return
    force = " WITH (FORCE)" if name == "postgresql" else ""
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {database}{force}"))


def _reset_postgresql(admin: Engine, database: str) -> bool:
    """Reset ``database`` to what CREATE DATABASE gives; False when it could not be."""
    url = admin.url.set(database=database)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"ALTER DATABASE {database} RESET ALL"))
            conn.execute(text(f"ALTER ROLE ALL IN DATABASE {database} RESET ALL"))
        with engine.connect() as conn:
            for statement in _PG_RESET:
                conn.execute(text(statement))
            left = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n"
                    " ON n.oid = c.relnamespace WHERE n.nspname = 'public')"
                    " + (SELECT count(*) FROM pg_event_trigger)"
                    " + (SELECT count(*) FROM pg_publication)"
                    " + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')"
                )
            ).scalar_one()
        return left == 0
    except Exception:  # anything unexpected: the database is dropped instead
        return False
    finally:
        engine.dispose()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _CLEAN_POSTGRESQL:
        return
    admin = create_engine(SERVER_URLS["postgresql"], isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for database in _CLEAN_POSTGRESQL:
                conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
    finally:
        admin.dispose()
        _CLEAN_POSTGRESQL.clear()


MakeMigrations = Callable[[dict[str, str]], Path]


@pytest.fixture
def make_migrations(tmp_path: Path) -> MakeMigrations:
    """Write throwaway migration files into a fresh folder and return it."""
    counter = iter(range(1000))

    def make(files: dict[str, str]) -> Path:
        folder = tmp_path / f"migrations_{next(counter)}"
        folder.mkdir()
        for name, body in files.items():
            (folder / name).write_text(body)
        return folder

    return make


def migration(version: int, description: str, body: str = "pass") -> str:
    """Source of a small migration whose upgrade() runs ``body`` (indented for you)."""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return (
        "from sqlalchemy import text\n\n"
        f"VERSION = {version}\n"
        f"DESCRIPTION = {description!r}\n\n\n"
        "def upgrade(conn):\n"
        f"{indented}\n"
    )


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``zos`` in-process, keeping stdout and stderr apart."""
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def run_zos(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m zos`` as a separate process, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "zos", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
