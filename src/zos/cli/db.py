"""``zos db …``: migrate, inspect, check and back up the database."""

from __future__ import annotations

import click

from zos.cli import load, render


@click.group()
def db() -> None:
    """Migrate, inspect, check and back up the database."""


@db.command()
@click.option(
    "--target",
    type=click.IntRange(min=0),
    default=None,
    help="Migrate up to this version instead of the newest.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show the plan and rehearse it where it can be thrown away; change nothing.",
)
@click.option("--no-backup", is_flag=True, help="Do not copy an SQLite database to backups/ first.")
@click.pass_context
def migrate(ctx: click.Context, target: int | None, dry_run: bool, no_backup: bool) -> None:
    """Apply pending migrations, each in its own transaction."""
    from zos import migrator

    settings = load(ctx)
    if dry_run:
        rehearsal = migrator.dry_run(settings, target=target)
        render.dry_run(rehearsal)
        if rehearsal.failed or rehearsal.lock_busy:
            ctx.exit(1)
        return
    with render.Progress() as progress:
        result = migrator.migrate(settings, target=target, on_event=progress, backup=not no_backup)
    if result.applied:
        click.echo(f"Migrated from version {result.from_version} to {result.to_version}")
    else:
        click.echo(f"Database already at version {result.to_version}")


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the current version and pending migrations; changes nothing."""
    from zos import migrator

    report = migrator.status(load(ctx))
    if as_json:
        render.print_json(render.status_document(report))
    else:
        render.status(report)
    if report.problems:
        ctx.exit(1)


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def history(ctx: click.Context, as_json: bool) -> None:
    """List every applied migration, when, how long it took, and whether its file changed."""
    from zos import migrator

    entries = migrator.history(load(ctx))
    if as_json:
        render.print_json(render.history_document(entries))
    else:
        render.history(entries)


@db.command()
@click.argument("description")
@click.pass_context
def new(ctx: click.Context, description: str) -> None:
    """Write the next-numbered migration file for DESCRIPTION and print its path."""
    from zos.migrator import migrations_directory
    from zos.migrator.authoring import new_migration

    settings = load(ctx)
    directory = migrations_directory(settings)
    path = new_migration(directory, description, checkout_only=settings.migrations_dir is None)
    click.echo(str(path))


@db.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Exit 0 only if the database is current, its files unchanged and its schema as defined."""
    from zos import migrator
    from zos.migrator.verify_static import folder_problems

    settings = load(ctx)
    static = folder_problems(migrator.migrations_directory(settings))
    problems = [*static, *migrator.check_database(settings)]
    if problems:
        click.echo(f"{len(problems)} problem(s) found:", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
        ctx.exit(1)
    click.echo("Database is current and its schema matches the code")


@db.command()
@click.pass_context
def backup(ctx: click.Context) -> None:
    """Copy the SQLite database to backups/ now (or print the dump command for a server)."""
    from zos import migrator
    from zos.database import resolve_target

    settings = load(ctx)
    made = migrator.backup_now(settings)
    render.backup_made(made, resolve_target(settings).sqlite_path)


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
    migrator.repair(load(ctx), version, applied=applied is not None)
    done = "recorded as applied" if applied is not None else "forgotten; migrate will run it again"
    click.echo(f"Version {version} {done}")


def _register_verify() -> None:
    from zos.cli.verify import verify

    db.add_command(verify)


_register_verify()
