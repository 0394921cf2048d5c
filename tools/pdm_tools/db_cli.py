"""`pdm migrate`: apply, inspect (`--status`) or preview (`--dry-run`) schema migrations."""

from __future__ import annotations

import enum
import logging
from typing import Annotated

import typer
from pydantic import ValidationError

from pdm_common.db import migrations as mig
from pdm_common.db.settings import StorageSettings
from pdm_common.settings import CommonSettings


class VariantChoice(enum.StrEnum):
    timescale = "timescale"
    plain = "plain"


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _settings() -> tuple[str, StorageSettings]:
    try:
        return CommonSettings().database_url, StorageSettings()
    except ValidationError as exc:
        raise _fail(f"invalid PDM_* setting:\n{exc}", code=2) from exc


def _print_status(url: str) -> None:
    report = mig.status(url)
    typer.echo(f"database: {mig.describe_target(url)}")
    branch = report.recorded_variant or "not chosen yet"
    available = "available" if report.timescale_available else "not available"
    typer.echo(f"storage branch: {branch} (timescaledb {available})")
    typer.echo(f"{'version':<8} {'name':<28} {'state':<8} {'variant':<10} applied_at")
    for row in report.migrations:
        applied_at = row.applied_at.isoformat(timespec="seconds") if row.applied_at else ""
        typer.echo(
            f"{row.version:04d}     {row.name:<28} {row.state:<8} {row.variant or '':<10} "
            f"{applied_at}"
        )
    if any(r.state == "changed" for r in report.migrations):
        typer.echo("changed: an applied migration was edited; `pdm migrate` will refuse to run.")
    if any(r.state == "unknown" for r in report.migrations):
        typer.echo("unknown: applied by a newer version of this code.")


def _print_plan(url: str, settings: StorageSettings, variant: VariantChoice | None) -> None:
    wanted: mig.Variant | None = None
    if variant is not None:
        wanted = "timescale" if variant is VariantChoice.timescale else "plain"
    try:
        planned = mig.plan(url, settings, variant=wanted)
        typer.echo(f"-- database: {mig.describe_target(url)}")
    except mig.DatabaseUnreachable as exc:
        if wanted is None:
            raise
        typer.echo(f"-- {exc}")
        typer.echo("-- showing every migration, as for an empty database")
        planned = mig.plan(None, settings, variant=wanted)
    if planned.note:
        typer.echo(f"-- {planned.note}")
    typer.echo(f"-- storage branch: {planned.variant}; nothing is executed")
    if not planned.steps:
        typer.echo("-- nothing to do: the schema is up to date")
    for step in planned.steps:
        typer.echo(f"\n-- {step.label}")
        for statement in step.statements:
            text = statement.strip()
            typer.echo(text if text.endswith(";") else f"{text};")


def migrate_command(
    status: Annotated[
        bool, typer.Option("--status", help="Show applied and pending migrations; change nothing.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the SQL that would run; change nothing.")
    ] = False,
    variant: Annotated[
        VariantChoice | None,
        typer.Option(
            help="With --dry-run: preview this storage branch instead of the detected one "
            "(works without a database)."
        ),
    ] = None,
) -> None:
    """Apply pending schema migrations to PDM_DATABASE_URL (services never migrate on start).

    Uses TimescaleDB when the server has it (PDM_TIMESCALE=auto|on|off), else plain tables.
    """
    if status and dry_run:
        raise _fail("choose either --status or --dry-run", code=2)
    if variant is not None and not dry_run:
        raise _fail("--variant only applies to --dry-run", code=2)
    url, settings = _settings()
    try:
        if status:
            _print_status(url)
        elif dry_run:
            _print_plan(url, settings, variant)
        else:
            if not logging.getLogger().handlers:
                logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
            typer.echo(f"database: {mig.describe_target(url)}")
            result = mig.migrate(url, settings, echo=typer.echo)
            total = len(mig.load_migrations())
            if result.applied:
                typer.echo(f"{len(result.applied)} migration(s) applied; {total} in total.")
            else:
                typer.echo(f"schema up to date ({total} migrations applied).")
    except mig.MigrationError as exc:
        raise _fail(str(exc)) from exc


def register(app: typer.Typer) -> None:
    """Add `migrate` to the root `pdm` command."""
    app.command("migrate")(migrate_command)
