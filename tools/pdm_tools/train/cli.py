"""`pdm train ...`: train a model, register it in MLflow, promote it if better, announce it.

Each pipeline lives in `pdm_ml.training.<name>` and its command in `pdm_tools.train.<name>`;
shared command parts are in `pdm_tools.train.common`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pdm_common import registry
from pdm_ml.training.anomaly import PROMOTION_METRIC
from pdm_tools.train import ai4i, anomaly, cmapss, simulated
from pdm_tools.train.common import SOURCE, fail, publish_decision

__all__ = ["SOURCE", "train_app"]

train_app = typer.Typer(
    no_args_is_help=True,
    help="Train models from stored history, register them in MLflow, promote the better one.",
)
for _pipeline in (anomaly, ai4i, cmapss, simulated):
    _pipeline.register(train_app)


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
    publish_decision(decision, settings)
