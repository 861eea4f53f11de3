"""How command results look on a terminal or in a pipe: reports, tables, JSON and progress."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from zos.backup import Backup
    from zos.migrator import DryRun, HistoryEntry, MigrationEvent, StatusReport
    from zos.migrator.rehearsal import BackfillSample, LockBusy

# A migration running longer than this shows it is alive.
ALIVE_AFTER_SECONDS = 2.0
# Without a terminal, how often a long migration prints a "still running" line.
PLAIN_INTERVAL_SECONDS = 10.0
_SPINNER = "|/-\\"


def print_json(document: Any) -> None:
    import json

    click.echo(json.dumps(document, indent=2))


def _iso(moment: Any) -> str:
    return str(moment.isoformat(timespec="microseconds")) + "Z"


def status(report: StatusReport) -> None:
    plan = report.plan
    descriptions = report.descriptions
    click.echo(f"Database: {report.database}")
    if report.running:
        click.echo(f"Migration run in progress: {report.running}")
    click.echo(f"Current version: {plan.current_version}")
    for row in plan.applied:
        # While a run holds the lock, its started migration is the one it is running now.
        if not row.finished and not report.running:
            if row.version in plan.resumable:
                what = "an interrupted backfill; 'zos db migrate' resumes it"
            else:
                what = "started and never finished; see the problems below"
            click.echo(f"Unfinished migration: {row.version}: {row.description} ({what})")
    click.echo(f"Available migrations: {len(plan.scripts)} (newest: {plan.latest_version})")
    if plan.gaps:
        ranges = (str(low) if low == high else f"{low}\u2013{high}" for low, high in plan.gaps)
        click.echo(f"Unused version numbers: {', '.join(ranges)}")
    if plan.pending:
        click.echo(f"Pending migrations: {len(plan.pending)}")
        for script in plan.pending:
            described = descriptions.get(script.version, f"({script.name} is invalid)")
            click.echo(f"  {script.version}: {described}")
    else:
        click.echo("No pending migrations")
    if report.problems:
        click.echo(f"Problems: {len(report.problems)}", err=True)
        for problem in report.problems:
            click.echo(f"  - {problem}", err=True)


def status_document(report: StatusReport) -> dict[str, Any]:
    plan = report.plan
    descriptions = report.descriptions
    return {
        "database": report.database,
        "current_version": plan.current_version,
        "latest_version": plan.latest_version,
        "available": len(plan.scripts),
        "gaps": [[low, high] for low, high in plan.gaps],
        "pending": [
            {"version": s.version, "description": descriptions.get(s.version), "file": s.name}
            for s in plan.pending
        ],
        "applied": [
            {
                "version": row.version,
                "description": row.description,
                "applied_at": _iso(row.applied_at),
                "checksum": row.checksum,
                "state": str(row.state),
                "duration_ms": row.duration_ms,
            }
            for row in plan.applied
        ],
        "problems": list(report.problems),
        "running": report.running,
        "unfinished": [row.version for row in plan.applied if not row.finished],
    }


def history(entries: list[HistoryEntry]) -> None:
    if not entries:
        click.echo("No migrations applied yet")
        return
    rows = [
        (
            f"{entry.version:03d}",
            entry.applied_at.strftime("%Y-%m-%d %H:%M:%S"),
            "-" if entry.duration_ms is None else f"{entry.duration_ms} ms",
            entry.file if entry.state == "applied" else f"{entry.file}, {entry.state}",
            entry.description,
        )
        for entry in entries
    ]
    header = ("Version", "Applied at (UTC)", "Took", "File", "Description")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(4)]
    for row in (header, *rows):
        cells = [row[i].ljust(widths[i]) if i != 2 else row[i].rjust(widths[i]) for i in range(4)]
        click.echo("  ".join([*cells, row[4]]).rstrip())


def history_document(entries: list[HistoryEntry]) -> list[dict[str, Any]]:
    return [
        {
            "version": entry.version,
            "description": entry.description,
            "applied_at": _iso(entry.applied_at),
            "duration_ms": entry.duration_ms,
            "state": entry.state,
            "file": entry.file,
            "checksum_ok": entry.file == "unchanged",
        }
        for entry in entries
    ]


def dry_run(rehearsal: DryRun) -> None:
    where = {
        "copy": f"a throwaway copy of {rehearsal.database}",
        "rollback": f"{rehearsal.database}, in a transaction that is rolled back",
        "plan": rehearsal.database,
    }[rehearsal.how]
    if rehearsal.changed:
        click.echo(
            f"Dry run on {where}; THE DATABASE MAY HAVE BEEN CHANGED: a migration committed "
            "part of its work itself (see below)."
        )
    else:
        click.echo(f"Dry run on {where}; nothing was changed.")
    if not rehearsal.results:
        click.echo(f"Database already at version {rehearsal.from_version}; nothing to do")
        return
    click.echo(f"Would migrate from version {rehearsal.from_version} to {rehearsal.to_version}:")
    for result in rehearsal.results:
        label = f"  {result.version:03d}: {result.description}"
        if result.not_run:
            click.echo(f"{label} ({result.not_run})")
        elif result.error:
            click.echo(f"{label} FAILED after {result.duration_ms} ms: {result.error}")
        elif result.lock_busy:
            click.echo(
                f"{label} LOCK BUSY after {result.duration_ms} ms: {result.lock_busy.waiting}"
            )
        elif rehearsal.how == "plan":
            click.echo(label)
        else:
            notes = [f"{result.duration_ms} ms"]
            if result.backfill is not None:
                notes.append(_sampled(result.backfill))
            if result.ends_rehearsal is not None:
                notes.append(f"{result.ends_rehearsal}, so what follows cannot be rehearsed")
            click.echo(f"{label} ({'; '.join(notes)})")
        for statement in result.statements:
            click.echo(f"      {statement}")
    if rehearsal.how == "plan":
        click.echo(
            "MariaDB/MySQL commit schema changes at once, so nothing was rehearsed; to time "
            "the migrations, run them on a copy of the database."
        )
    elif rehearsal.failed:
        failed = next(result for result in rehearsal.results if result.error)
        click.echo(
            f"Error: the rehearsal of {failed.version:03d} failed; the real run would stop there",
            err=True,
        )
    elif (busy := rehearsal.lock_busy) is not None and busy.lock_busy is not None:
        click.echo(f"Error: {_lock_busy(busy.version, busy.lock_busy)}", err=True)


def _lock_busy(version: int, busy: LockBusy) -> str:
    """Why a rehearsal that could not get a lock proved nothing, and what the real run does."""
    then = (
        "would give up too unless it is free by then"
        if busy.tries == 1
        else f"would wait up to {busy.seconds:g} s for it, {busy.tries} times with pauses"
    )
    return (
        f"the rehearsal of {version:03d} gave up {busy.waiting} after {busy.seconds:g} s, so "
        f"{version:03d} and what follows were not rehearsed; the real run {then}; dry-run "
        "again when that session has ended"
    )


def _sampled(sample: BackfillSample) -> str:
    if sample.projected_ms is None or sample.rows_done >= sample.rows_total:
        return f"backfill rehearsed on all {sample.rows_total:,} rows"
    return (
        f"backfill rehearsed on its first {sample.rows_done:,} of {sample.rows_total:,} rows; "
        f"the whole table would take about {sample.projected_ms / 1000:.1f} s"
    )


def backup_made(made: Backup | str, database: Path | None) -> None:
    from zos.backup import restore_instructions

    if isinstance(made, str) or database is None:
        click.echo("Database servers are backed up with their own tools; for example:")
        click.echo(f"  {made}")
        return
    _backup_written(made.version, str(made.path), restore_instructions(made, database))


def _backup_written(version: int, path: str, how_to_restore: str) -> None:
    click.echo(f"Backup of version {version} written to {path}")
    for line in how_to_restore.splitlines():
        click.echo(f"  {line}")


class Progress:
    """Renders migration events: a line as each migration starts and ends, and signs of life
    while a long one runs (a spinner on a terminal, a line every few seconds otherwise).

    One watcher thread serves the whole run, started with the first migration: a thread per
    migration was a measurable share of applying a long history of small ones.
    """

    def __init__(self) -> None:
        self._tty = sys.stdout.isatty()
        self._lock = threading.Lock()  # one writer at a time, and the state below
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None
        self._running: tuple[int, float] | None = None  # version and start of the migration
        self._last_shown = 0.0  # when a sign of life or progress was last written
        self._line_open = False  # a spinner or progress bar waits to be cleared

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closed.set()
        if self._watcher is not None:
            self._watcher.join()
        with self._lock:
            self._finish_line()

    def __call__(self, event: MigrationEvent) -> None:
        from zos.log import INFO, log
        from zos.migrator import EventKind

        log(
            INFO,
            f"migration.{event.kind}",
            version=event.version,
            duration_ms=event.duration_ms,
            rows_done=event.rows_done,
        )
        label = f"{event.version:03d}: {event.description}"
        with self._lock:
            if event.kind == EventKind.WAITING:
                held = f" ({event.detail})" if event.detail else ""
                click.echo(f"Waiting for another migration to finish{held}…", err=True)
            elif event.kind == EventKind.BACKED_UP:
                _backup_written(event.version, event.description, event.detail)
            elif event.kind == EventKind.BACKUP_ADVICE:
                click.echo(
                    "No copy taken: zos copies SQLite files only. Dump a server with its own "
                    "tools before\nmigrating it (--no-backup hides this), for example:"
                )
                click.echo(f"  {event.description}")
            elif event.kind == EventKind.STARTED:
                click.echo(f"  Applying {label} …")
                self._running = (event.version, time.monotonic())
                self._last_shown = 0.0
                self._watch()
            elif event.kind == EventKind.PROGRESS:
                self._progress(event)
            elif event.kind == EventKind.LOCK_WAIT:
                self._finish_line()
                click.echo(f"  … {event.version:03d}: {event.detail}")
                self._last_shown = time.monotonic()
            elif event.kind in (EventKind.APPLIED, EventKind.SKIPPED):
                self._running = None
                self._finish_line()
                if event.kind == EventKind.APPLIED:
                    click.echo(f"  Applied {label} ({event.duration_ms} ms)")
                else:
                    click.echo(f"  Skipped {label} (another runner applied it)")
            elif event.kind == EventKind.ADOPTED:
                click.echo(f"  Adopted {label} (already present; recorded without running)")

    def _progress(self, event: MigrationEvent) -> None:
        """A backfill's rows done, rate and time left: redrawn on a terminal, else a line
        every few seconds."""
        now = time.monotonic()
        if self._running is None or now - self._last_shown < (
            0.2 if self._tty else PLAIN_INTERVAL_SECONDS / 2
        ):
            return
        self._last_shown = now
        done, total = event.rows_done or 0, max(event.rows_total or 0, 1)
        rate = done / max(now - self._running[1], 1e-6)
        left = (total - done) / rate if rate > 0 else 0.0
        figures = (
            f"{event.version:03d}: {done:,}/{total:,} rows ({100 * done // total}%), "
            f"{rate:,.0f} rows/s, about {left:.0f} s left"
        )
        if self._tty:
            filled = 20 * done // total
            click.echo(f"\r\x1b[K  [{'#' * filled}{'.' * (20 - filled)}] {figures}", nl=False)
            self._line_open = True
        else:
            click.echo(f"  … {figures}")

    def _watch(self) -> None:
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._keep_watching, daemon=True)
            self._watcher.start()

    def _keep_watching(self) -> None:
        frames = itertools.cycle(_SPINNER)
        while not self._closed.wait(0.1):
            with self._lock:
                if self._running is None:
                    continue
                version, started = self._running
                now = time.monotonic()
                quiet = now - max(started, self._last_shown)
                if now - started < ALIVE_AFTER_SECONDS:
                    continue
                if self._tty and quiet >= 0.1 and not self._last_shown:
                    line = f"\r  {next(frames)} {version:03d} running for {now - started:.0f} s"
                    click.echo(line, nl=False)
                    self._line_open = True
                elif not self._tty and (not self._last_shown or quiet >= PLAIN_INTERVAL_SECONDS):
                    click.echo(f"  … {version:03d} still running ({now - started:.0f} s)")
                    self._last_shown = now

    def _finish_line(self) -> None:
        if self._line_open:
            click.echo("\r\x1b[K", nl=False)
            self._line_open = False
