"""The ``zos`` command. Parses options, calls the API, renders results and errors.

Only this module prints or exits. Heavy imports happen inside commands so ``zos --help`` is fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from zos import __version__
from zos.errors import ZosError

if TYPE_CHECKING:
    from zos.config import Settings
    from zos.migrator import MigrationEvent, StatusReport


class _ZosGroup(click.Group):
    """Renders every ``ZosError`` as one ``Error:`` line and its exit code; bugs keep tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ZosError as error:
            if ctx.meta.get("zos.traceback") or os.environ.get("ZOS_DEBUG") == "1":
                raise
            click.echo(f"Error: {error.message}", err=True)
            for detail in error.details:
                click.echo(f"  - {detail}", err=True)
            ctx.exit(error.exit_code)


@click.group(cls=_ZosGroup)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Configuration file (default: ./config.yaml when it exists).",
)
@click.option("--traceback", is_flag=True, help="Show the full traceback of any error.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, traceback: bool) -> None:
    """zos: the database foundation of the zos Discord agent."""
    ctx.meta["zos.config_path"] = config_path
    ctx.meta["zos.traceback"] = traceback


def _settings(ctx: click.Context) -> Settings:
    from zos.config import load_settings
    from zos.log import configure_logging

    settings = load_settings(ctx.meta.get("zos.config_path"))
    configure_logging(settings)
    return settings


@cli.command()
def version() -> None:
    """Print the version of zos."""
    click.echo(f"zos {__version__}")


@cli.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
@click.pass_context
def config_check(ctx: click.Context) -> None:
    """Validate the configuration and print the effective settings (passwords masked)."""
    from zos.database import resolve_target

    settings = _settings(ctx)
    path = ctx.meta.get("zos.config_path")
    if path is None and Path("config.yaml").is_file():
        path = Path("config.yaml")
    click.echo(f"Configuration is valid ({path or 'no config file, defaults'})")
    click.echo(f"data_dir: {settings.data_dir}")
    click.echo(f"log_level: {settings.log_level}")
    click.echo(f"log_json: {str(settings.log_json).lower()}")
    click.echo(f"database.url: {resolve_target(settings).display}")
    click.echo(f"database.busy_timeout_seconds: {settings.database.busy_timeout_seconds:g}")
    click.echo(f"database.lock_timeout_seconds: {settings.database.lock_timeout_seconds:g}")
    if settings.migrations_dir is not None:
        click.echo(f"migrations_dir: {settings.migrations_dir}")


@cli.group()
def db() -> None:
    """Migrate and inspect the database."""


@db.command()
@click.option(
    "--target",
    type=click.IntRange(min=0),
    default=None,
    help="Migrate up to this version instead of the newest.",
)
@click.pass_context
def migrate(ctx: click.Context, target: int | None) -> None:
    """Apply pending migrations, each in its own transaction."""
    from zos import migrator

    settings = _settings(ctx)
    result = migrator.migrate(settings, target=target, on_event=_render_event)
    if result.applied:
        click.echo(f"Migrated from version {result.from_version} to {result.to_version}")
    else:
        click.echo(f"Database already at version {result.to_version}")


def _render_event(event: MigrationEvent) -> None:
    from zos.log import get_logger
    from zos.migrator import EventKind

    get_logger("zos.migrate").info(
        f"migration.{event.kind}", version=event.version, duration_ms=event.duration_ms
    )
    label = f"{event.version:03d}: {event.description}"
    if event.kind == EventKind.WAITING:
        click.echo("Waiting for another migration to finish…", err=True)
    elif event.kind == EventKind.APPLIED:
        click.echo(f"  Applied {label} ({event.duration_ms} ms)")
    elif event.kind == EventKind.ADOPTED:
        click.echo(f"  Adopted {label} (already present; recorded without running)")
    elif event.kind == EventKind.SKIPPED:
        click.echo(f"  Skipped {label} (another runner applied it)")


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the current version and pending migrations; changes nothing."""
    from zos import migrator

    report = migrator.status(_settings(ctx))
    if as_json:
        import json

        click.echo(json.dumps(_status_document(report), indent=2))
    else:
        _print_status(report)
    if report.problems:
        ctx.exit(1)


@db.command()
@click.option("--applied", "applied", type=int, help="Record version N as applied.")
@click.option("--forget", "forget", type=int, help="Delete the record of version N.")
@click.pass_context
def repair(ctx: click.Context, applied: int | None, forget: int | None) -> None:
    """Resolve a migration that started but never finished.

    Check the schema by hand first. Use --applied N when all of its changes are present, or
    --forget N once they are all undone, so the next migrate runs it again.
    """
    from zos import migrator

    if (applied is None) == (forget is None):
        raise click.UsageError("give exactly one of --applied N or --forget N")
    version = applied if applied is not None else forget
    assert version is not None
    migrator.repair(_settings(ctx), version, applied=applied is not None)
    done = "recorded as applied" if applied is not None else "forgotten; migrate will run it again"
    click.echo(f"Version {version} {done}")


def _print_status(report: StatusReport) -> None:
    plan = report.plan
    descriptions = {m.script.version: m.description for m in report.pending}
    click.echo(f"Database: {report.database}")
    click.echo(f"Current version: {plan.current_version}")
    click.echo(f"Available migrations: {len(plan.scripts)} (newest: {plan.latest_version})")
    if plan.gaps:
        click.echo(f"Unused version numbers: {', '.join(str(v) for v in plan.gaps)}")
    if plan.pending:
        click.echo(f"Pending migrations: {len(plan.pending)}")
        for script in plan.pending:
            described = descriptions.get(script.version, f"({script.name} cannot be loaded)")
            click.echo(f"  {script.version}: {described}")
    else:
        click.echo("No pending migrations")
    if report.problems:
        click.echo(f"Problems: {len(report.problems)}", err=True)
        for problem in report.problems:
            click.echo(f"  - {problem}", err=True)


def _status_document(report: StatusReport) -> dict[str, Any]:
    plan = report.plan
    descriptions = {m.script.version: m.description for m in report.pending}
    return {
        "database": report.database,
        "current_version": plan.current_version,
        "latest_version": plan.latest_version,
        "available": len(plan.scripts),
        "gaps": list(plan.gaps),
        "pending": [
            {"version": s.version, "description": descriptions.get(s.version), "file": s.name}
            for s in plan.pending
        ],
        "applied": [
            {
                "version": row.version,
                "description": row.description,
                "applied_at": row.applied_at.isoformat(timespec="microseconds") + "Z",
                "checksum": row.checksum,
                "state": str(row.state),
                "duration_ms": row.duration_ms,
            }
            for row in plan.applied
        ],
        "problems": list(report.problems),
    }


def main() -> None:
    """Entry point of the ``zos`` console script and ``python -m zos``."""
    cli.main(prog_name="zos")
