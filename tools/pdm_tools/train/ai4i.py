"""`pdm train ai4i`: train the milling failure classifier on AI4I 2020, register, promote.

Wired into `pdm_tools.train.cli` with `register(train_app)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pdm_tools.paths import DATA_DIR

#: AI4I 2020 under the data directory (`PDM_DATA_DIR`, see `pdm_tools.paths`).
DEFAULT_DATA = DATA_DIR / "ai4i2020" / "ai4i2020.csv"


def _print_training(result: Any) -> None:
    cv, ho = result.cv, result.holdout
    typer.echo(
        f"  CV ({result.config.folds}-fold, training part): F1 {cv['f1']:.4f} "
        f"(P {cv['precision']:.3f} / R {cv['recall']:.3f}) ROC-AUC {cv['roc_auc']:.4f} "
        f"PR-AUC {cv['pr_auc']:.4f}; threshold {result.threshold:.3f} chosen here"
    )
    typer.echo(
        f"  held-out ({len(result.test_target):,} rows): F1 {ho['f1']:.4f} "
        f"(P {ho['precision']:.3f} / R {ho['recall']:.3f}) ROC-AUC {ho['roc_auc']:.4f} "
        f"PR-AUC {ho['pr_auc']:.4f}"
    )
    picked = ", ".join(f"{s} {v['mode_macro_f1']:.4f}" for s, v in result.mode_cv.items())
    typer.echo(
        f"  failure mode: CV macro-F1 {picked} -> {result.modes.strategy}; held-out macro-F1 "
        f"{ho['mode_macro_f1']:.4f} (with RNF, never predictable: "
        f"{ho['mode_macro_f1_with_rnf']:.4f}); fit {result.fit_seconds:.1f} s"
    )


def ai4i(
    data: Annotated[Path, typer.Option(help="AI4I 2020 CSV (UCI layout, UTF-8 with BOM).")] = (
        DEFAULT_DATA
    ),
    seed: Annotated[int, typer.Option(help="Seed of the held-out split, CV folds, LightGBM.")] = 42,
    promote: Annotated[
        bool, typer.Option(help="Move `champion` when the new version is at least as good.")
    ] = True,
    publish: Annotated[bool, typer.Option(help="Announce an alias move on pdm.models.v1.")] = True,
) -> None:
    """Train the milling failure classifier (failure-milling) on AI4I 2020."""
    from pdm_common import registry
    from pdm_common.settings import CommonSettings
    from pdm_ml.training import ai4i as pipeline
    from pdm_tools.train.common import announce_step, fail, step

    if not data.is_file():
        raise fail(f"{data} not found; pass --data PATH to the AI4I 2020 CSV", code=2)
    settings = CommonSettings()
    uri = settings.mlflow_tracking_uri
    config = pipeline.Ai4iConfig(seed=seed)
    total = 5 if promote else 3
    try:
        step(1, total, f"reading {data}")
        frame = pipeline.load_ai4i(data)
        train, test = pipeline.split_holdout(frame, config.test_size, seed)
        typer.echo(
            f"  {len(frame):,} rows, {int(frame[pipeline.TARGET].sum())} failures; "
            f"{len(test):,} held out (stratified, seed {seed}), never tuned on"
        )
        step(2, total, f"{config.folds}-fold CV, threshold, fit ({len(train):,} rows)")
        result = pipeline.train_ai4i(train, test, config)
        _print_training(result)
        step(3, total, f"logging and registering {pipeline.MODEL_NAME} at {uri}")
        version = pipeline.register_ai4i(result, tracking_uri=uri, data_path=data)
        typer.echo(f"  registered {version.name} v{version.version} (run {version.run_id})")
        if not promote:
            typer.echo("done; champion untouched (--no-promote)")
            return
        step(4, total, "comparing with the champion on the same held-out split")
        decision = pipeline.promote_ai4i(result, version, tracking_uri=uri, echo=typer.echo)
        typer.echo(f"  {registry.describe(decision)}")
        step(5, total, "announcing on pdm.models.v1")
        announce_step(decision, settings, publish)
    except (registry.RegistryError, pipeline.Ai4iDataError) as exc:
        raise fail(str(exc)) from exc


def register(app: typer.Typer) -> None:
    """Add `ai4i` to the `pdm train` app."""
    app.command("ai4i")(ai4i)
