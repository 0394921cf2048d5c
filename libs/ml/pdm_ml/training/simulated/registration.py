"""Logging and registering both models (`failure-<type>`, `rul-<type>`) and promoting them
against the champion re-scored on the candidate's held-out machines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from pdm_common import registry
from pdm_ml.training.ai4i import binary_metrics
from pdm_ml.training.simulated.config import FAILURE_METRIC, FEATURE_SET, RUL_METRIC
from pdm_ml.training.simulated.evaluation import evaluate_rul
from pdm_ml.training.simulated.fitting import SimTraining, _finite
from pdm_ml.training.simulated.models import SimFailureModel, SimRulModel

REFERENCE_ROWS = 2000


def _params(training: SimTraining, algorithm: str) -> dict[str, Any]:
    config = asdict(training.config)
    return {
        "algorithm": algorithm,
        **{k: (",".join(map(str, v)) if isinstance(v, tuple) else v) for k, v in config.items()},
    }


def _tags(training: SimTraining, task: str) -> dict[str, str]:
    c = training.config
    return {
        "asset_type": c.asset_type,
        "task": task,
        "dataset": training.dataset,
        "feature_set": FEATURE_SET,
        "holdout_split": training.split,
        "period_s": f"{c.period_s:g}",
    }


def _reference(training: SimTraining) -> pd.DataFrame:
    features = training.train_features
    sample = features.sample(min(REFERENCE_ROWS, len(features)), random_state=training.config.seed)
    return sample.reset_index(drop=True)


def register_failure(
    training: SimTraining, tracking_uri: str, *, name: str | None = None
) -> registry.RegisteredVersion:
    """Log and register the failure model (`failure-<type>`)."""
    model = training.failure
    reference = _reference(training)
    example = reference.head(5)
    return registry.log_and_register(
        model,
        name=name or registry.model_name("failure", training.config.asset_type),
        flavor="pyfunc",
        params=_params(training, "lightgbm_binary+multiclass_modes"),
        metrics=_finite(training.failure_metrics)
        | {"generate_seconds": training.generate_seconds, "fit_seconds": training.fit_seconds},
        tags=_tags(training, "failure")
        | {
            registry.THRESHOLD_TAG: repr(model.threshold),
            "horizon_h": f"{model.horizon_h:g}",
            "modes": ",".join(model.modes),
        },
        signature_input=example,
        signature_output=model.predict(example),
        input_example=example,
        reference_sample=reference,
        features=list(model.features),
        tracking_uri=tracking_uri,
    )


def register_rul(
    training: SimTraining, tracking_uri: str, *, name: str | None = None
) -> registry.RegisteredVersion:
    """Log and register the RUL model (`rul-<type>`)."""
    model = training.rul
    reference = _reference(training)
    example = reference.head(5)
    return registry.log_and_register(
        model,
        name=name or registry.model_name("rul", training.config.asset_type),
        flavor="pyfunc",
        params=_params(training, "lightgbm_quantile"),
        metrics=_finite(training.rul_metrics)
        | {"generate_seconds": training.generate_seconds, "fit_seconds": training.fit_seconds},
        tags=_tags(training, "rul") | {"rul_unit": model.rul_unit, "rul_cap_h": f"{model.cap_h:g}"},
        signature_input=example,
        signature_output=model.predict(example),
        input_example=example,
        reference_sample=reference,
        features=list(model.features),
        tracking_uri=tracking_uri,
    )


def _champion_score(
    training: SimTraining,
    tracking_uri: str,
    echo: Callable[[str], None],
    kind: type[SimFailureModel] | type[SimRulModel],
) -> Callable[[registry.RegisteredVersion], float]:
    """Re-score the champion on the candidate's held-out machines, featurised its own way."""

    def evaluate(champion: registry.RegisteredVersion) -> float:
        try:
            model = registry.load_version(champion, tracking_uri).model
            if not isinstance(model, kind):
                raise TypeError(f"{type(model).__name__} is not a {kind.__name__}")
            if isinstance(model, SimFailureModel):
                y = training.holdout["target"].to_numpy(dtype=np.int64)
                proba = model.probabilities(model.featurise(training.holdout))
                score = binary_metrics(y, proba, model.threshold)["pr_auc"]
            else:
                score = evaluate_rul(model, training.holdout).get(RUL_METRIC, float("nan"))
        except registry.RegistryUnavailable:
            raise
        except Exception as exc:  # an unusable champion cannot keep the alias
            echo(f"  champion v{champion.version} could not be evaluated ({exc!r})")
            return float("nan")
        echo(f"  champion v{champion.version} on the same held-out machines: {score:.4f}")
        return float(score)

    return evaluate


def promote_failure(
    training: SimTraining,
    version: registry.RegisteredVersion,
    tracking_uri: str,
    echo: Callable[[str], None] = lambda _line: None,
) -> registry.PromotionDecision:
    """Move `champion` when the held-out PR-AUC is at least the champion's (same machines)."""
    return registry.promote_if_better(
        version.name,
        version.version,
        metric=FAILURE_METRIC,
        higher_is_better=True,
        evaluate_champion=_champion_score(training, tracking_uri, echo, SimFailureModel),
        candidate_score=training.failure_metrics[FAILURE_METRIC],
        tracking_uri=tracking_uri,
    )


def promote_rul(
    training: SimTraining,
    version: registry.RegisteredVersion,
    tracking_uri: str,
    echo: Callable[[str], None] = lambda _line: None,
) -> registry.PromotionDecision:
    """Move `champion` when the held-out RMSE (hours) is at most the champion's."""
    return registry.promote_if_better(
        version.name,
        version.version,
        metric=RUL_METRIC,
        higher_is_better=False,
        evaluate_champion=_champion_score(training, tracking_uri, echo, SimRulModel),
        candidate_score=training.rul_metrics.get(RUL_METRIC, float("nan")),
        tracking_uri=tracking_uri,
    )
