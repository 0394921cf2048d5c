"""`pdm train anomaly`: fit the multivariate anomaly detector of an asset type on its stored
history, register it, promote it if better, announce it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from pdm_common import registry
from pdm_ml.training.anomaly import (
    PROMOTION_METRIC,
    AnomalyTraining,
    TrainError,
    champion_evaluator,
    parse_when,
    read_history,
    register_anomaly,
    train_anomaly,
)
from pdm_tools.train.common import announce_step, fail, step


def register(app: typer.Typer) -> None:
    app.command("anomaly")(anomaly)


def _when(text: str, now: datetime) -> datetime:
    try:
        return parse_when(text, now)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


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
    from pdm_common.settings import CommonSettings
    from pdm_ml.detectors.multivariate import MultivariateConfig

    settings = CommonSettings()
    now = datetime.now(UTC)
    end = _when(until, now) if until else now
    start = _when(since, end)
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
