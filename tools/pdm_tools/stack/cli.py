"""`pdm stack up|down|status`: the embedded broker, PostgreSQL and MLflow for development.

Imports of the stack machinery happen inside the commands so `pdm --help` stays fast.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from pdm_common.settings import STATE_DIR

stack_app = typer.Typer(
    no_args_is_help=True,
    help="Embedded development stack: a Kafka-protocol broker (tansu, in-memory), "
    "PostgreSQL and MLflow on loopback ports, from Python packages only.",
)

StateDir = Annotated[
    Path,
    typer.Option(
        "--state-dir",
        envvar="PDM_STATE_DIR",
        help="Where pid files, logs, data and stack.env live.",
    ),
]


def _setup_logging() -> None:
    """Show the stack's warnings (e.g. a relocated data dir) without library chatter."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("pdm_tools.stack").setLevel(logging.INFO)


@stack_app.command()
def up(state_dir: StateDir = STATE_DIR) -> None:
    """Start the stack (no-op for what already runs) and write STATE_DIR/stack.env."""
    from pdm_tools.stack.processes import ServerStartError
    from pdm_tools.stack.stack import up as stack_up

    _setup_logging()
    try:
        stack_up(state_dir, log=typer.echo)
    except ServerStartError as exc:
        typer.secho(f"\nstack up failed: {exc}", fg=typer.colors.RED, err=True)
        typer.echo("Fix the cause, then `pdm stack down && pdm stack up`.", err=True)
        raise typer.Exit(1) from exc


@stack_app.command()
def down(state_dir: StateDir = STATE_DIR) -> None:
    """Stop every component (PostgreSQL and MLflow data stay; broker topics are lost)."""
    from pdm_tools.stack.stack import down as stack_down

    _setup_logging()
    stack_down(state_dir, log=typer.echo)


@stack_app.command()
def status(state_dir: StateDir = STATE_DIR) -> None:
    """Show each component's state, pid, port and URL. Exit code 1 unless all run."""
    from pdm_tools.stack.stack import format_status
    from pdm_tools.stack.stack import status as stack_status

    rows = stack_status(state_dir)
    typer.echo(format_status(rows))
    if not all(r.state == "running" for r in rows):
        raise typer.Exit(1)
