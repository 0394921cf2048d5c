"""The `pdm` command line. Each command group lives next to the code it drives."""

from __future__ import annotations

import typer

from pdm_common.db.cli import register as register_db
from pdm_common.dlq_cli import dlq_app
from pdm_common.stack.cli import stack_app

app = typer.Typer(
    no_args_is_help=True,
    help="Predictive-maintenance platform: embedded stack, migrations, services, DLQ tools.",
)
app.add_typer(stack_app, name="stack")
app.add_typer(dlq_app, name="dlq")
register_db(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
