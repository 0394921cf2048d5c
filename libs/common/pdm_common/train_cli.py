"""`pdm train ...`: train a model, register it in MLflow, promote it if better, announce it.

Each pipeline lives in `pdm_common.training.<name>`; this module holds the commands and what
they share (progress lines, errors that say what to do, the `pdm.models.v1` announcement).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pdm_common import registry
from pdm_common.training.anomaly import (
    PROMOTION_METRIC,
    AnomalyTraining,
    TrainError,
    champion_evaluator,
    parse_when,
    read_history,
    register_anomaly,
    train_anomaly,
)

if TYPE_CHECKING:
    pass

train_app = typer.Typer(
    no_args_is_help=True,
    help="Train models from stored history, register them in MLflow, promote the better one.",
)

SOURCE = "pdm-train"


async def publish_alias_moved(bootstrap: str, event: Any, idempotent: bool) -> None:
    """Send the event on `pdm.models.v1` keyed by model name; wait for the ack."""
    from aiokafka import AIOKafkaProducer

    from pdm_common import topics
    from pdm_common.broker import ensure_topics
    from pdm_common.settings import CommonSettings

    await ensure_topics(bootstrap, [topics.MODELS], partitions=CommonSettings().kafka_partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=idempotent,
        request_timeout_ms=10_000,
        client_id=SOURCE,
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.MODELS,
            event.to_json(),
            key=event.model_name.encode(),
            headers=[("correlation_id", str(event.event_id).encode())],
        )
    finally:
        await producer.stop()


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def step(n: int, total: int, text: str) -> None:
    typer.echo(f"[{n}/{total}] {text}")


@train_app.command("anomaly")
def anomaly(
    asset_type: Annotated[str, typer.Option("--asset-type", help="Asset type, e.g. pump.")],
    since: Annotated[str, typer.Option(help="Window start: 7d, 12h or ISO time.")] = "7d",
    until: Annotated[
        str | None, typer.Option(help="Window end: a duration before now or ISO time (now).")
    ] = None,
    min_snapshots: Annotated[
        int, typer.Option(min=50, help="Fewest complete training snapshots to accept.")
    ] = 500,
    max_snapshots: Annotated[
        int, typer.Option(min=1000, help="Sample the window down to about this many.")
    ] = 50_000,
    false_alarm_target: Annotated[
        float, typer.Option(min=1e-6, max=0.2, help="Healthy snapshots flagged (per snapshot).")
    ] = 1e-3,
    holdout: Annotated[
        float, typer.Option(min=0.05, max=0.5, help="Newest fraction per asset to evaluate on.")
    ] = 0.2,
    promote: Annotated[
        bool, typer.Option(help="Move `champion` when the new version is at least as good.")
    ] = True,
    publish: Annotated[bool, typer.Option(help="Announce an alias move on pdm.models.v1.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of sampling and fault injection.")] = 0,
) -> None:
    """Fit the multivariate anomaly detector of an asset type on its stored history."""
    from pdm_anomaly.detectors.multivariate import MultivariateConfig
    from pdm_common.settings import CommonSettings

    settings = CommonSettings()
    now = datetime.now(UTC)
    end = parse_when(until, now) if until else now
    start = parse_when(since, end)
    if start >= end:
        raise fail(f"--since ({start:%Y-%m-%d %H:%M}) must be before --until", code=2)
    name = registry.model_name("anomaly", asset_type)
    total = 5 if promote else 3
    try:
        step(
            1,
            total,
            f"reading {asset_type} history {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC",
        )
        frame = read_history(
            settings.database_url, asset_type, start, end, max_snapshots, typer.echo
        )
        step(2, total, f"fitting on {len(frame):,} snapshots ({holdout:.0%} held out)")
        config = MultivariateConfig(false_alarm_target=false_alarm_target, seed=seed)
        result = train_anomaly(
            frame, config, holdout_fraction=holdout, min_snapshots=min_snapshots, seed=seed
        )
        _print_training(result)
        step(3, total, f"logging and registering {name} at {settings.mlflow_tracking_uri}")
        version = register_anomaly(
            result, name, asset_type, start, end, settings.mlflow_tracking_uri
        )
        typer.echo(f"  registered {name} v{version.version} (run {version.run_id})")
        if not promote:
            typer.echo("done; champion untouched (--no-promote)")
            return
        step(4, total, "comparing with the champion on the same held-out data")
        decision = registry.promote_if_better(
            name,
            version.version,
            metric=PROMOTION_METRIC,
            higher_is_better=True,
            evaluate_champion=champion_evaluator(
                result.holdout, result.faults, settings.mlflow_tracking_uri, typer.echo
            ),
            candidate_score=result.evaluation.youden_j,
            tracking_uri=settings.mlflow_tracking_uri,
        )
        typer.echo(f"  {registry.describe(decision)}")
        step(5, total, "announcing on pdm.models.v1")
        announce_step(decision, settings, publish)
    except registry.RegistryError as exc:
        raise fail(str(exc)) from exc
    except TrainError as exc:
        raise fail(str(exc)) from exc


@train_app.command("announce")
def announce(
    name: Annotated[str, typer.Argument(help="Registered model, e.g. anomaly-pump.")],
) -> None:
    """Publish the current champion of NAME on pdm.models.v1 (after a failed announcement)."""
    from pdm_common.settings import CommonSettings

    settings = CommonSettings()
    try:
        champion = registry.get_version(name, tracking_uri=settings.mlflow_tracking_uri)
    except registry.RegistryError as exc:
        raise fail(str(exc)) from exc
    decision = registry.PromotionDecision(
        name=name,
        candidate_version=champion.version,
        previous_version=None,
        moved=True,
        reason="re-announced by `pdm train announce`",
        metric=PROMOTION_METRIC,
        higher_is_better=True,
        candidate_score=float(champion.metrics.get(PROMOTION_METRIC, float("nan"))),
        champion_score=None,
        tags=champion.tags,
    )
    _announce(decision, settings)


def announce_step(decision: registry.PromotionDecision, settings: Any, publish: bool) -> None:
    """The last step of every `pdm train …`: tell serving processes the alias moved."""
    if not decision.moved:
        typer.echo("  nothing to announce: the alias did not move")
    elif not publish:
        typer.echo("  skipped (--no-publish): serving reloads on restart")
    else:
        _announce(decision, settings)


def _announce(decision: registry.PromotionDecision, settings: Any) -> None:
    event = decision.to_event(SOURCE)
    try:
        asyncio.run(
            publish_alias_moved(settings.kafka_bootstrap, event, settings.kafka_idempotent_producer)
        )
    except Exception as exc:
        raise fail(
            f"the alias moved, but announcing it on Kafka at {settings.kafka_bootstrap} failed "
            f"({exc!r}). Serving keeps the old model until restart; once Kafka is up run "
            f"`pdm train announce {decision.name}`."
        ) from exc
    typer.echo(f"  published {event.event_type} {event.model_name} -> v{event.version}")


def _print_training(result: AnomalyTraining) -> None:
    ev = result.evaluation
    model = result.model
    typer.echo(
        f"  sensors: {', '.join(model.sensors)}"
        + (
            f" (left out: {', '.join(model.training['dropped_sensors'])})"
            if model.training.get("dropped_sensors")
            else ""
        )
    )
    typer.echo(
        f"  fit {result.fit_seconds:.1f} s on {len(result.train):,} snapshots; scoring "
        f"{result.score_us_per_snapshot:.2f} µs/snapshot"
    )
    detection = ", ".join(f"{k} {v:.1%}" for k, v in ev.detection.items())
    typer.echo(
        f"  held-out false alarms {ev.false_alarm_rate:.3%} (target "
        f"{model.config.false_alarm_target:.3%}); detection {detection}; "
        f"top contributor right {ev.top_contributor_accuracy:.1%}; "
        f"{PROMOTION_METRIC}={ev.youden_j:.4f}"
    )


def _register_pipelines() -> None:
    """Training pipelines that live in their own modules add their commands here."""
    from pdm_common.training import ai4i_cli, cmapss_cli, simulated_cli

    ai4i_cli.register(train_app)
    cmapss_cli.register(train_app)
    simulated_cli.register(train_app)


_register_pipelines()
