"""The ``zos`` command: the root group, error rendering, and the small top-level commands.

Only the ``zos.cli`` package prints or exits. Heavy imports happen inside commands so that
``zos --help`` stays fast.
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


def load(ctx: click.Context) -> Settings:
    """The settings for this invocation, with logging configured from them."""
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
    from zos.urls import parse_url

    settings = load(ctx)
    path = ctx.meta.get("zos.config_path")
    if path is None and Path("config.yaml").is_file():
        path = Path("config.yaml")
    database = settings.database
    migrate_url = database.migrate_url and parse_url(database.migrate_url).display
    click.echo(f"Configuration is valid ({path or 'no config file, defaults'})")
    for key, value in (
        ("data_dir", settings.data_dir),
        ("log_level", settings.log_level),
        ("log_json", str(settings.log_json).lower()),
        ("database.url", parse_url(settings.database_url).display),
        ("database.migrate_url", migrate_url),
        ("database.schema", database.schema),
        ("database.busy_timeout_seconds", f"{database.busy_timeout_seconds:g}"),
        ("database.lock_timeout_seconds", f"{database.lock_timeout_seconds:g}"),
        ("database.connect_timeout_seconds", f"{database.connect_timeout_seconds:g}"),
        ("database.ddl_lock_timeout_seconds", f"{database.ddl_lock_timeout_seconds:g}"),
        ("backups.keep", settings.backups.keep),
        ("migrations_dir", settings.migrations_dir),
    ):
        if value is not None:
            click.echo(f"{key}: {value}")


def main() -> None:
    """Entry point of the ``zos`` console script and ``python -m zos``."""
    cli.main(prog_name="zos")


# Imported last: the db commands use ``load`` from this module.
from zos.cli.db import db  # noqa: E402

cli.add_command(db)
