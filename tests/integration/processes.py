"""Real ``zos`` processes for the run-lock, discipline and interrupt tests, and what they
leave behind: version rows, tables, rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import inspect, text

from tests.conftest import Backend

# A guard against a hang, never a measure of speed: generous on the slowest machine.
HANG_GUARD_SECONDS = 120


def start(backend: Backend, folder: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    """Start ``python -m zos ARGS`` against ``backend`` with migrations from ``folder``."""
    env = backend.env(folder) | extra
    return subprocess.Popen(
        [sys.executable, "-m", "zos", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=HANG_GUARD_SECONDS)
    return process.returncode, out, err


def wait_for(path: Path, process: subprocess.Popen[str] | None = None) -> None:
    """Wait until a migration wrote ``path`` (its signal that it is running now)."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not path.exists():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the runner ended before {path.name}: {out}{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.01)


def interrupt(process: subprocess.Popen[str], signum: int = signal.SIGINT) -> None:
    os.kill(process.pid, signum)


def states(backend: Backend) -> dict[int, str]:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("_schema_version"):
                return {}
            rows = conn.execute(text("SELECT version, state FROM _schema_version"))
            return {int(row.version): str(row.state) for row in rows}
    finally:
        engine.dispose()


def tables(backend: Backend) -> set[str]:
    engine = backend.engine()
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def scalar(backend: Backend, sql: str) -> object:
    engine = backend.engine()
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def one_error_line(err: str) -> str:
    """The single ``Error:`` line of a failed command; fails on a traceback or a second one."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, err
    return errors[0]
