"""``zos db verify``: renders the checks of ``zos.migrator.verify`` as lines or one JSON object."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from zos.cli import load

if TYPE_CHECKING:  # `zos --help` must not import SQLAlchemy
    from zos.migrator.verify import Check


def render_check(check: Check) -> str:
    """One line per check; a failure's problems and a note follow, indented."""
    version = "   " if check.version is None else f"{check.version:03d}"
    status = "ok" if check.ok else "FAILED"
    lines = [f"  {check.backend:<10} {version}  {check.name:<33} {check.seconds:6.2f} s  {status}"]
    lines += [f"      - {problem}" for problem in check.problems]
    lines += [f"      note: {note}" for note in check.notes]
    return "\n".join(lines)


@click.command()
@click.option(
    "--backend",
    "server_urls",
    multiple=True,
    metavar="URL",
    help="Also verify on a scratch database created (and dropped) on this server; repeatable.",
)
@click.option(
    "--metadata",
    "metadata_reference",
    metavar="MODULE:ATTRIBUTE",
    help="The schema the newest version must match, e.g. myapp.models:metadata (imported "
    "from the working directory; default: zos.database.metadata).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def verify(
    ctx: click.Context,
    server_urls: tuple[str, ...],
    metadata_reference: str | None,
    as_json: bool,
) -> None:
    """Prove every migration on populated throwaway databases; exit 1 if any check fails."""
    import dataclasses
    import json

    from zos.migrator.verify import verify as run_verify
    from zos.migrator.verify_hooks import load_metadata

    settings = load(ctx)
    metadata = None if metadata_reference is None else load_metadata(metadata_reference)
    show = (lambda _check: None) if as_json else (lambda check: click.echo(render_check(check)))
    report = run_verify(settings, server_urls, on_check=show, metadata=metadata)
    failed = [check for check in report.checks if not check.ok]
    if as_json:
        checks = [dataclasses.asdict(check) | {"ok": check.ok} for check in report.checks]
        click.echo(json.dumps({"ok": report.ok, "checks": checks}, indent=2))
    elif failed:
        click.echo(f"{len(failed)} check(s) failed", err=True)
    else:
        click.echo(f"Every check passed ({len(report.checks)} checks)")
    if failed:
        ctx.exit(1)
