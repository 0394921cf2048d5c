"""`pdm train cmapss --subset FD001`: the C-MAPSS RUL pipeline as a `pdm train` command.

`train_cli` wires it in with `cmapss_cli.register(train_app)`. The steps and their output
follow `pdm train anomaly`: train and evaluate, register `rul-turbofan`, compare with the
champion on the same test split, announce an alias move on `pdm.models.v1`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from pdm_common import registry
from pdm_tools.paths import DATA_DIR

#: C-MAPSS under the data directory (`PDM_DATA_DIR`, see `pdm_tools.paths`).
DEFAULT_DATA_DIR = DATA_DIR / "cmapss"
SUBSETS = ("FD001", "FD002", "FD003", "FD004")


def register(app: typer.Typer) -> None:
    """Add the `cmapss` command to a `pdm train` Typer app."""
    app.command("cmapss")(cmapss)


def cmapss(
    subset: Annotated[str, typer.Option(help="C-MAPSS subset: FD001, FD002, FD003 or FD004.")],
    data_dir: Annotated[
        Path, typer.Option(help="Folder with train_/test_/RUL_<subset>.txt.")
    ] = DEFAULT_DATA_DIR,
    seed: Annotated[int, typer.Option(help="Seed of clustering and LightGBM.")] = 0,
    promote: Annotated[
        bool, typer.Option(help="Move `champion` when the new version is at least as good.")
    ] = True,
    publish: Annotated[bool, typer.Option(help="Announce an alias move on pdm.models.v1.")] = True,
) -> None:
    """Train the turbofan RUL model (p10/p50/p90) on a NASA C-MAPSS subset."""
    from pdm_common.settings import CommonSettings
    from pdm_ml.training import cmapss as rul
    from pdm_tools.train.common import announce_step, fail, step

    subset = subset.upper()
    if subset not in SUBSETS:
        raise fail(f"--subset {subset!r}: use one of {', '.join(SUBSETS)}", code=2)
    settings = CommonSettings()
    uri = settings.mlflow_tracking_uri
    total = 5 if promote else 3
    try:
        step(1, total, f"loading C-MAPSS {subset} from {data_dir}")
        data = rul.load_subset(data_dir, subset)
        typer.echo(
            f"  {data.train[rul.UNIT].nunique()} training units ({len(data.train):,} cycles), "
            f"{len(data.test_rul)} test units"
        )
        config = replace(rul.RulConfig(), seed=seed)
        step(2, total, f"fitting p10/p50/p90 with {config.n_splits}-fold CV by engine")
        training = rul.train_cmapss(data, config, typer.echo)
        _print_training(training)
        step(3, total, f"logging and registering {rul.MODEL_NAME} at {uri}")
        version = rul.register(training, uri)
        typer.echo(f"  registered {version.name} v{version.version} (run {version.run_id})")
        if not promote:
            typer.echo("done; champion untouched (--no-promote)")
            return
        step(4, total, f"comparing with the champion on the {subset} test split")
        decision = rul.promote(training, version, uri, typer.echo)
        typer.echo(f"  {registry.describe(decision)}")
        step(5, total, "announcing on pdm.models.v1")
        announce_step(decision, settings, publish)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc), code=2) from exc
    except registry.RegistryError as exc:
        raise fail(str(exc)) from exc


def _print_training(training: object) -> None:
    from pdm_ml.training.cmapss import RulTraining

    assert isinstance(training, RulTraining)
    ev, cv = training.evaluation, training.cv
    typer.echo(
        f"  fit {training.fit_seconds:.0f} s; {len(training.model.features)} features; "
        f"CV RMSE {cv['cv_rmse']:.2f}, CV coverage {cv['cv_raw_coverage']:.1%} raw -> "
        f"{cv['cv_coverage']:.1%} calibrated (mean margin {cv['interval_margin_mean']:+.2f})"
    )
    typer.echo(f"  interval margins per p50 bin: {training.model.margins}")
    typer.echo(
        f"  test ({ev.units} units, last cycle, truth capped at {training.config.cap:g}): "
        f"RMSE {ev.rmse:.2f} (uncapped truth {ev.rmse_unclipped:.2f}), PHM08 {ev.phm08:.1f}, "
        f"p10-p90 coverage {ev.coverage:.0%}, mean width {ev.mean_width:.1f} cycles"
    )
