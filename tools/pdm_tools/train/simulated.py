"""`pdm train simulated --asset-type pump|motor|compressor`: failure + RUL models of the
simulated fleet, trained on histories generated offline from the simulator's machine models.

`train_cli` wires it in with `simulated_cli.register(train_app)`. The steps follow the other
`pdm train` commands: generate and train, evaluate on held-out machines, register
`failure-<type>` and `rul-<type>`, compare each with its champion on the same held-out
machines, announce the alias moves on `pdm.models.v1`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pdm_common import registry


def register(app: typer.Typer) -> None:
    """Add the `simulated` command to a `pdm train` Typer app."""
    app.command("simulated")(simulated)


def simulated(
    asset_type: Annotated[
        str, typer.Option("--asset-type", help="Simulated asset type: pump, motor or compressor.")
    ],
    machines: Annotated[
        int | None,
        typer.Option(min=12, help="Machines to generate (default 240; 80 with --quick)."),
    ] = None,
    quick: Annotated[
        bool, typer.Option(help="A few seconds: fewer, shorter histories and fewer trees.")
    ] = False,
    period_s: Annotated[
        float, typer.Option(min=0.001, help="Seconds between generated snapshots.")
    ] = 60.0,
    horizon_h: Annotated[
        float, typer.Option(min=0.001, help="Failure horizon: P(failure within this many h).")
    ] = 24.0,
    seed: Annotated[int, typer.Option(help="Seed of the fleet, the split and LightGBM.")] = 0,
    live_check: Annotated[
        bool,
        typer.Option(
            help="Also score new machines sampled like the live simulator (1 Hz, failures "
            "ramping in 30-600 s) and print what transfers."
        ),
    ] = False,
    promote: Annotated[
        bool, typer.Option(help="Move `champion` when the new version is at least as good.")
    ] = True,
    publish: Annotated[bool, typer.Option(help="Announce an alias move on pdm.models.v1.")] = True,
) -> None:
    """Train the failure and RUL models of a simulated asset type (failure-<type>, rul-<type>)."""
    from dataclasses import replace

    from pdm_common.settings import CommonSettings
    from pdm_ml.training import simulated as sim
    from pdm_tools.train.common import announce_step, fail, step

    base = sim.SimConfig.quick(asset_type, seed) if quick else sim.SimConfig(asset_type, seed=seed)
    config = replace(base, period_s=period_s, horizon_h=horizon_h)
    config = replace(config, rul_cap_h=max(config.rul_cap_h, horizon_h))
    if machines is not None:
        config = replace(config, machines=machines)
    try:
        config.check()
    except sim.SimTrainError as exc:
        raise fail(str(exc), code=2) from exc
    settings = CommonSettings()
    uri = settings.mlflow_tracking_uri
    total = 5 if promote else 3
    try:
        step(1, total, f"generating {config.machines} simulated {asset_type}s and training")
        training = sim.train_simulated(config, typer.echo)
        print_training(training)
        if live_check:
            print_transfer(sim.transfer_check(training.failure, training.rul, seed=seed + 1))
        step(2, total, f"logging and registering failure-{asset_type} at {uri}")
        failure = sim.register_failure(training, uri)
        typer.echo(f"  registered {failure.name} v{failure.version} (run {failure.run_id})")
        step(3, total, f"logging and registering rul-{asset_type} at {uri}")
        rul = sim.register_rul(training, uri)
        typer.echo(f"  registered {rul.name} v{rul.version} (run {rul.run_id})")
        if not promote:
            typer.echo("done; champions untouched (--no-promote)")
            return
        step(4, total, "comparing each with its champion on the same held-out machines")
        decisions = [
            sim.promote_failure(training, failure, uri, typer.echo),
            sim.promote_rul(training, rul, uri, typer.echo),
        ]
        for decision in decisions:
            typer.echo(f"  {registry.describe(decision)}")
        step(5, total, "announcing on pdm.models.v1")
        for decision in decisions:
            announce_step(decision, settings, publish)
    except sim.SimTrainError as exc:
        raise fail(str(exc), code=2) from exc
    except registry.RegistryError as exc:
        raise fail(str(exc)) from exc


def print_training(training: Any) -> None:
    """The evaluation a run prints (held-out machines, never tuned on)."""
    from pdm_ml.training.simulated import SETTLE_ROWS

    f, r = training.failure_metrics, training.rul_metrics
    model, c = training.failure, training.config
    typer.echo(
        f"  generated in {training.generate_seconds:.1f} s, fitted in {training.fit_seconds:.1f} s"
        f"; {len(model.features)} features over the last {'/'.join(map(str, c.windows))} "
        "snapshots"
    )
    typer.echo(
        f"  failure within {c.horizon_h:g} h, CV ({c.folds}-fold by machine): PR-AUC "
        f"{f['cv_pr_auc']:.3f}, F1 {f['cv_f1']:.3f}; threshold {model.threshold:.3f} chosen here"
    )
    typer.echo(
        f"  held-out snapshots: PR-AUC {f['holdout_pr_auc']:.3f}, ROC-AUC "
        f"{f['holdout_roc_auc']:.3f}, F1 {f['holdout_f1']:.3f} (P {f['holdout_precision']:.3f} "
        f"/ R {f['holdout_recall']:.3f}); failure mode macro-F1 "
        f"{f.get('holdout_mode_macro_f1', float('nan')):.3f}"
    )
    typer.echo(
        f"  held-out machines: {f['holdout_failures_alarmed']:.0%} of failures alarmed before "
        f"they happened, median lead {f['holdout_lead_h_median']:.1f} h "
        f"({f['holdout_lead_share_median']:.0%} of the ramp); false alarms: "
        f"{f['holdout_false_alarms_per_day']:.2f} snapshots per healthy machine-day, "
        f"{f['holdout_healthy_machines_alarmed']:.0%} of healthy and "
        f"{f['holdout_interference_machines_alarmed']:.0%} of interfered machines ever "
        f"alarmed, {f['holdout_repaired_machines_alarmed']:.0%} of repaired machines still "
        f"alarmed {SETTLE_ROWS} snapshots after the repair"
    )
    nan = float("nan")
    typer.echo(
        f"  RUL (hours, cap {c.rul_cap_h:g}): CV RMSE {r['cv_rmse_h']:.1f}, coverage "
        f"{r['cv_raw_coverage']:.0%} raw -> {r['cv_coverage']:.0%} calibrated; held-out "
        f"balanced RMSE {r.get('holdout_rmse_h', nan):.1f} h"
    )
    typer.echo(
        f"  held-out rows with a developing failure: RMSE "
        f"{r.get('holdout_rmse_degrading_h', nan):.1f} h, MAE "
        f"{r.get('holdout_mae_degrading_h', nan):.1f} h, p10-p90 coverage "
        f"{r.get('holdout_coverage', nan):.0%} (mean width "
        f"{r.get('holdout_mean_width_h', nan):.1f} h); other rows: RMSE "
        f"{r.get('holdout_rmse_other_h', nan):.1f} h, mean p50 "
        f"{r.get('holdout_other_p50_mean_h', nan):.1f} h"
    )


def print_transfer(metrics: dict[str, float]) -> None:
    """`transfer_check` on machines sampled at 1 Hz with failures ramping in 30-600 s."""
    m, nan = metrics, float("nan")
    typer.echo(
        f"  live-like check (new machines at 1 Hz, ramps 30-600 s, healthy for 1-2 h): PR-AUC "
        f"{m['pr_auc']:.3f}, "
        f"{m['failures_alarmed']:.0%} of failures alarmed before they happened (median "
        f"{m['lead_share_median']:.0%} of the ramp ahead), {m['failures_alarmed_ever']:.0%} "
        f"by the end of the history, {m['healthy_machines_alarmed']:.0%} "
        f"of healthy and {m['interference_machines_alarmed']:.0%} of interfered machines "
        f"ever alarmed ({m['false_alarms_per_day']:.1f} false-alarm snapshots per healthy "
        f"machine-day), {m['repaired_machines_alarmed']:.0%} of repaired machines still "
        f"alarmed 64 snapshots after the repair, mode macro-F1 "
        f"{m.get('mode_macro_f1', nan):.3f}"
    )
    typer.echo(
        f"  live-like RUL: RMSE {m.get('rmse_degrading_h', nan):.2f} h on rows with a "
        f"developing failure (true RUL <= 10 min): the model's hours assume its own sampling "
        f"period; rescaled by the sampling ratio "
        f"{m.get('rmse_degrading_h_rescaled', nan):.2f} h"
    )
