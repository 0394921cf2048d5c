"""`pdm apikey create|list|revoke`: manage the gateway's API keys from a shell (the first
admin key has to come from somewhere); the same as `/v1/apikeys` with an admin key."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from pdm_gateway.store.api_keys import KeyStore

apikey_app = typer.Typer(no_args_is_help=True, help="API keys of the gateway.")
T = TypeVar("T")


def _with_keys(work: Callable[[KeyStore], Awaitable[T]]) -> T:
    from pdm_common.db.pool import create_pool
    from pdm_common.settings import CommonSettings
    from pdm_gateway.store.api_keys import KeyStore
    from pdm_gateway.store.database import Database

    async def run() -> T:
        pool = await create_pool(CommonSettings().database_url, name="pdm-apikey")
        try:
            await pool.wait(timeout=10)
            return await work(KeyStore(Database(pool)))
        finally:
            await pool.close()

    try:
        return asyncio.run(run())
    except Exception as exc:
        typer.secho(
            f"error: {exc!r}\nIs PostgreSQL up and migrated (`pdm stack up`, `pdm migrate`)?",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(1) from None


@apikey_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="Who or what uses the key, e.g. cmms-sync.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: read, write, admin.")] = "read",
    rate_limit: Annotated[
        float | None, typer.Option(min=0.001, help="Requests/s (default: the gateway's).")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="Print only the key.")] = False,
) -> None:
    """Create a key and print it; it is shown this once (only its hash is stored)."""
    from pdm_gateway.keys import check_scopes

    try:
        checked = check_scopes([s.strip() for s in scopes.split(",") if s.strip()])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    key = _with_keys(
        lambda keys: keys.create(name, checked, f"cli:{getpass.getuser()}", rate_limit)
    )
    if quiet:
        typer.echo(key.token)
        return
    typer.echo(f"key id: {key.key_id}   scopes: {','.join(checked)}")
    typer.echo(f"API key (shown once, store it now): {key.token}")
    typer.echo(f"use it as:  curl -H 'Authorization: Bearer {key.token}' ...")


@apikey_app.command("list")
def list_keys() -> None:
    """List keys (ids, names, scopes, revocation); secrets are never shown."""
    rows = _with_keys(lambda keys: keys.all_keys())
    for row in rows:
        typer.echo(json.dumps(row, default=str))


@apikey_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key id (12 hex characters).")]) -> None:
    """Revoke a key; gateways refuse it within PDM_GATEWAY_KEY_CACHE_S seconds."""
    if not _with_keys(lambda keys: keys.revoke(key_id)):
        typer.secho(f"error: no live key {key_id!r} (see `pdm apikey list`)", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")
