"""The `pdm` command line. Each command group lives next to the code it drives."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from pdm_gateway.cli import apikey_app
from pdm_tools.data_cli import data_app
from pdm_tools.db_cli import register as register_db
from pdm_tools.dlq_cli import dlq_app
from pdm_tools.maintenance_cli import schedule_app, technicians_app, workorders_app
from pdm_tools.models_cli import drift_app, models_app
from pdm_tools.replay_cli import replay_app
from pdm_tools.stack.cli import stack_app
from pdm_tools.train.cli import train_app

app = typer.Typer(
    no_args_is_help=True,
    help="Predictive-maintenance platform: embedded stack, migrations, services, DLQ tools.",
)
app.add_typer(stack_app, name="stack")
app.add_typer(dlq_app, name="dlq")
app.add_typer(train_app, name="train")
app.add_typer(replay_app, name="replay")
register_db(app)
app.add_typer(apikey_app, name="apikey")
app.add_typer(workorders_app, name="workorders")
app.add_typer(schedule_app, name="schedule")
app.add_typer(technicians_app, name="technicians")
app.add_typer(models_app, name="models")
app.add_typer(drift_app, name="drift")
app.add_typer(data_app, name="data")
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics of the platform.")
app.add_typer(topics_app, name="topics")


@topics_app.command("ensure")
def topics_ensure() -> None:
    """Create every platform topic (with .retry/.dlq companions) that does not exist yet."""
    from pdm_common import topics
    from pdm_common.broker import ensure_topics
    from pdm_common.settings import CommonSettings

    settings = CommonSettings()
    created = asyncio.run(
        ensure_topics(
            settings.kafka_bootstrap, topics.all_topics(), partitions=settings.kafka_partitions
        )
    )
    typer.echo(f"{len(topics.all_topics())} topics, {len(created)} created")


@topics_app.command("list")
def topics_list() -> None:
    """Print the platform's topic names."""
    from pdm_common import topics

    for name in topics.all_topics():
        typer.echo(name)


@app.command("config")
def config() -> None:
    """Print every PDM_* environment variable with its default and meaning (Markdown)."""
    from pdm_tools.config_doc import markdown

    typer.echo(markdown())


@app.command("services")
def services() -> None:
    """Print the platform's services: package, port, owned tables (Markdown, as in the README)."""
    from pdm_tools.catalog import markdown

    typer.echo(markdown())


@app.command("asyncapi")
def asyncapi() -> None:
    """Print the AsyncAPI document of every topic (JSON; also at /asyncapi.json per service)."""
    from pdm_common.asyncapi import render

    typer.echo(render(), nl=False)


@app.command("run")
def run(
    stop_stack: Annotated[bool, typer.Option(help="Also stop the stack on exit.")] = False,
    train: Annotated[
        bool, typer.Option(help="Train the initial models the registry lacks (a few minutes).")
    ] = True,
) -> None:
    """Stack up, migrate, train missing models, start every service, the fleet simulator and
    the API gateway; print the API URL and key; Ctrl-C stops them."""
    from pdm_tools.devrun import run as run_platform

    run_platform(stop_stack=stop_stack, train=train)


@app.command("inject")
def inject(
    asset: Annotated[str, typer.Option(help="Asset id.")] = "pump-001",
    sensor: Annotated[str, typer.Option(help="Sensor name.")] = "vibration",
    value: Annotated[float, typer.Option(help="Value to send.")] = 9.0,
) -> None:
    """Send one reading (e.g. a vibration beyond ISO 10816 zone D) to watch an alarm open."""
    from pdm_common.settings import CommonSettings
    from pdm_tools.devrun import publish_reading

    asyncio.run(publish_reading(CommonSettings().kafka_bootstrap, asset, {sensor: value}))
    typer.echo(f"sent {asset} {sensor}={value}; alarms: SELECT * FROM alarms ORDER BY opened_at")


@app.command("simulate")
def simulate(
    action: Annotated[str, typer.Argument(help="inject | clear | scenario | rate")],
    asset: Annotated[str | None, typer.Option(help="Asset id, e.g. pump-001.")] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            help="bearing_degradation, motor_overheating, sensor_interference, tool_wear, "
            "seal_leak."
        ),
    ] = None,
    severity: Annotated[str, typer.Option(help="low, medium, high, critical.")] = "medium",
    ramp_s: Annotated[float | None, typer.Option(help="Seconds to failure.")] = None,
    scenario: Annotated[
        str | None,
        typer.Option(help="normal, high_load, precision, cold_environment, high_speed."),
    ] = None,
    rate_hz: Annotated[float | None, typer.Option(help="Snapshots per second.")] = None,
) -> None:
    """Steer the fleet simulator (a command on pdm.simulator.commands.v1)."""
    from pydantic import ValidationError

    from pdm_common import topics
    from pdm_common.events import SimulatorCommand, describe_validation
    from pdm_common.settings import CommonSettings
    from pdm_tools.devrun import publish_json

    fields = {
        "action": action,
        "asset_id": asset,
        "mode": mode,
        "severity": severity,
        "ramp_s": ramp_s,
        "scenario": scenario,
        "rate_hz": rate_hz,
    }
    try:
        command = SimulatorCommand.model_validate(
            {k: v for k, v in fields.items() if v is not None}
        )
    except ValidationError as exc:
        raise typer.BadParameter(describe_validation(exc)) from None
    bootstrap = CommonSettings().kafka_bootstrap
    asyncio.run(
        publish_json(bootstrap, topics.SIMULATOR_COMMANDS, command.model_dump(mode="json"), asset)
    )
    typer.echo(
        f"sent {command.action} ({command.command_id}); refused commands: "
        "pdm dlq list pdm.simulator.commands.v1; ground truth on pdm.simulator.truth.v1"
    )


@app.command("predict")
def predict(
    asset: Annotated[str, typer.Option(help="Asset id.")],
    asset_type: Annotated[str, typer.Option(help="Asset type, e.g. milling or turbofan.")],
    readings: Annotated[
        str | None,
        typer.Option(help="Inline snapshot as JSON, e.g. '{\"torque\": 60}' (else stored)."),
    ] = None,
    attributes: Annotated[
        str | None, typer.Option(help='Snapshot attributes as JSON, e.g. \'{"quality": "L"}\'.')
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the reply.")] = 15.0,
) -> None:
    """Ask the prediction service for one asset (Kafka request/reply) and print the answer."""
    import json

    from pdm_common import topics
    from pdm_common.request_reply import ReplyClient, ReplyTimeout
    from pdm_common.settings import CommonSettings

    body: dict[str, object] = {"asset_id": asset, "asset_type": asset_type}
    for name, raw in (("readings", readings), ("attributes", attributes)):
        if raw is not None:
            try:
                body[name] = json.loads(raw)
            except ValueError as exc:
                raise typer.BadParameter(f"--{name} is not JSON: {exc}") from None

    async def ask() -> list[bytes]:
        async with ReplyClient(CommonSettings().kafka_bootstrap) as client:
            replies, _ = await client.call(
                topics.PREDICTION_REQUESTS, body, key=asset, timeout_s=timeout
            )
            return replies

    try:
        replies = asyncio.run(ask())
    except ReplyTimeout as exc:
        typer.echo(f"{exc}: is the prediction service running (`make run`)?", err=True)
        raise typer.Exit(2) from None
    answer = json.loads(replies[0])
    typer.echo(json.dumps(answer, indent=2))
    if answer.get("event_type") == "prediction.error":
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
