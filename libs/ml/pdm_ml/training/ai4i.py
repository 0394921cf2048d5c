"""AI4I 2020 failure classifier: features, honest evaluation, LightGBM, MLflow registration.

Protocol (PROVENANCE.md, "How to use it"): a stratified held-out split (20 %, seed 42) is cut
first and used only for the final numbers and for the champion comparison. Everything that is
tuned (the decision threshold, the failure-mode strategy) is chosen on out-of-fold
predictions of a stratified k-fold CV over the training part only.

Models:

* `failure`: LightGBM binary classifier, P(Machine failure) from `machining.FEATURES`. The
  failure-mode flags (TWF/HDF/PWF/OSF/RNF), `UDI` and `Product ID` are never inputs.
* failure mode: among failures, which of TWF/HDF/PWF/OSF caused it; either one multi-class
  model over failures (`multiclass`) or one binary model per mode over all rows (`ovr`),
  picked on CV macro-F1. RNF is a 0.1 % coin flip independent of the inputs, so it is not
  modelled; macro-F1 is reported with RNF (counted, never predicted) and without it.

Explanations: `top_contributions` uses LightGBM's TreeSHAP (`pred_contrib=True`), in
log-odds of failure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from pdm_common import registry
from pdm_ml.features import machining

if TYPE_CHECKING:
    from lightgbm import LGBMClassifier

TARGET = "Machine failure"
MODES: tuple[str, ...] = ("TWF", "HDF", "PWF", "OSF", "RNF")
#: Modes a model can learn from the inputs (RNF is random by construction).
PREDICTABLE_MODES: tuple[str, ...] = ("TWF", "HDF", "PWF", "OSF")
#: Columns that must never be model inputs (sub-labels of the target and identifiers).
LEAKAGE_COLUMNS: tuple[str, ...] = (*MODES, "UDI", "Product ID", TARGET)
ASSET_TYPE = "milling"
MODEL_NAME = registry.model_name("failure", ASSET_TYPE)
PROMOTION_METRIC = "holdout_f1"
REFERENCE_ROWS = 2000
ModeStrategy = Literal["multiclass", "ovr"]

#: Picked on 5-fold CV of the training part (OOF F1 0.858 vs 0.853-0.854 for deeper trees).
FAILURE_PARAMS: dict[str, Any] = {
    "n_estimators": 500,
    "learning_rate": 0.03,
    "num_leaves": 7,
    "min_child_samples": 5,
}
MODE_PARAMS: dict[str, Any] = {
    "n_estimators": 300,
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_child_samples": 3,
}


class Ai4iDataError(ValueError):
    """The CSV is not the AI4I 2020 layout (the message says what is missing)."""


@dataclass(frozen=True, slots=True)
class Ai4iConfig:
    seed: int = 42
    test_size: float = 0.2
    folds: int = 5
    failure_params: Mapping[str, Any] = field(default_factory=lambda: dict(FAILURE_PARAMS))
    mode_params: Mapping[str, Any] = field(default_factory=lambda: dict(MODE_PARAMS))
    mode_strategies: tuple[ModeStrategy, ...] = ("multiclass", "ovr")
    n_jobs: int = 2


@dataclass(frozen=True, slots=True)
class ModeModel:
    """Failure-mode classifier(s) and how to turn their output into a mode per row."""

    strategy: ModeStrategy
    models: dict[str, LGBMClassifier]  # "all" (multiclass) or one per mode (ovr)
    modes: tuple[str, ...] = PREDICTABLE_MODES

    def proba(self, features: pd.DataFrame) -> np.ndarray:
        """(n, len(modes)) scores; rows of the multiclass model sum to 1."""
        x = features[list(machining.FEATURES)]
        if self.strategy == "multiclass":
            model = self.models["all"]
            out = np.zeros((len(x), len(self.modes)), dtype=float)
            out[:, np.asarray(model.classes_, dtype=int)] = model.predict_proba(x)  # absent: 0
            return out
        return np.column_stack([failure_proba(self.models[m], x) for m in self.modes])

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """(n, len(modes)) 0/1 indicator: modes scoring >= 0.5, else the best one."""
        return _indicator(self.proba(features))

    def to_json(self) -> dict[str, Any]:
        """Portable form (LightGBM model text per model) for the run's artifacts."""
        return {
            "strategy": self.strategy,
            "modes": list(self.modes),
            "features": list(machining.FEATURES),
            "models": {k: m.booster_.model_to_string() for k, m in self.models.items()},
        }


@dataclass(frozen=True, slots=True)
class Ai4iTraining:
    """Everything a run produced: models, chosen threshold, CV and held-out metrics."""

    model: LGBMClassifier
    threshold: float
    modes: ModeModel
    cv: dict[str, float]
    holdout: dict[str, float]
    mode_cv: dict[str, dict[str, float]]  # per strategy
    train_features: pd.DataFrame
    test_features: pd.DataFrame
    test_target: np.ndarray
    config: Ai4iConfig
    fit_seconds: float

    def metrics(self) -> dict[str, float]:
        out = {f"cv_{k}": v for k, v in self.cv.items()}
        out |= {f"holdout_{k}": v for k, v in self.holdout.items()}
        for strategy, values in self.mode_cv.items():
            out |= {f"cv_{strategy}_{k}": v for k, v in values.items()}
        return out | {"threshold": self.threshold, "fit_seconds": self.fit_seconds}


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def load_ai4i(path: str | Path) -> pd.DataFrame:
    """The CSV with platform sensor names (`machining.AI4I_COLUMNS`); labels kept as is.

    The file has a UTF-8 BOM (PROVENANCE.md), hence `utf-8-sig`.
    """
    frame = pd.read_csv(path, encoding="utf-8-sig")
    missing = [c for c in (*machining.AI4I_COLUMNS, TARGET, *MODES) if c not in frame.columns]
    if missing:
        raise Ai4iDataError(f"{path}: not the AI4I 2020 layout, missing columns {missing}")
    return machining.rename_ai4i(frame)


def split_holdout(
    frame: pd.DataFrame, test_size: float = 0.2, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified (on the target) train / held-out split; the held-out part is never tuned on."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        frame, test_size=test_size, stratify=frame[TARGET], random_state=seed
    )
    return train, test


def feature_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """Model inputs of `frame`; fails loudly if a leakage column ever becomes a feature."""
    features = machining.features_frame(frame)
    leaked = sorted(set(features.columns) & set(LEAKAGE_COLUMNS))
    if leaked:
        raise AssertionError(f"leakage columns among the features: {leaked}")
    return features


def mode_targets(frame: pd.DataFrame, modes: Sequence[str] = MODES) -> np.ndarray:
    """(n, len(modes)) 0/1 failure-mode flags (a row may carry several)."""
    return frame[list(modes)].to_numpy(dtype=int)


# --------------------------------------------------------------------------------------------
# Failure classifier
# --------------------------------------------------------------------------------------------


def _classifier(params: Mapping[str, Any], seed: int, n_jobs: int) -> LGBMClassifier:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(**dict(params), random_state=seed, n_jobs=n_jobs, verbose=-1)


def _folds(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def failure_proba(model: Any, features: pd.DataFrame) -> np.ndarray:
    """P(positive class) of a fitted binary classifier (column 1 of `predict_proba`)."""
    return np.asarray(model.predict_proba(features), dtype=float)[:, 1]


def out_of_fold(x: pd.DataFrame, y: np.ndarray, config: Ai4iConfig) -> np.ndarray:
    """Out-of-fold P(failure) for every training row (stratified k-fold)."""
    oof = np.zeros(len(y), dtype=float)
    for fit_idx, val_idx in _folds(y, config.folds, config.seed):
        model = _classifier(config.failure_params, config.seed, config.n_jobs)
        model.fit(x.iloc[fit_idx], y[fit_idx])
        oof[val_idx] = failure_proba(model, x.iloc[val_idx])
    return oof


def choose_threshold(y: np.ndarray, proba: np.ndarray) -> float:
    """The probability cut maximising F1 (meant for out-of-fold predictions only)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y, proba)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def binary_metrics(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    """F1 / precision / recall at `threshold`, plus the threshold-free ROC-AUC and PR-AUC."""
    from sklearn.metrics import (
        average_precision_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    pred = (proba >= threshold).astype(int)
    two_classes = len(np.unique(y)) == 2
    return {
        "f1": float(f1_score(y, pred, zero_division=0)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, proba)) if two_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, proba)) if two_classes else float("nan"),
    }


# --------------------------------------------------------------------------------------------
# Failure modes
# --------------------------------------------------------------------------------------------


def _indicator(scores: np.ndarray) -> np.ndarray:
    pred = (scores >= 0.5).astype(int)
    none = pred.sum(axis=1) == 0
    pred[none, np.argmax(scores[none], axis=1)] = 1
    return pred


def fit_modes(
    features: pd.DataFrame,
    flags: np.ndarray,
    failed: np.ndarray,
    strategy: ModeStrategy,
    config: Ai4iConfig,
) -> ModeModel:
    """Fit the mode model; `flags` are (n, 4) predictable-mode flags, `failed` the target.

    `multiclass` learns among failures with a mode (a row with two modes counts once per
    mode); `ovr` learns each mode against every other row, failures or not (more negatives
    to place the physical boundaries).
    """
    x = features[list(machining.FEATURES)]
    if strategy == "multiclass":
        rows, labels = np.nonzero(flags * failed[:, None])
        if len(rows) == 0:
            raise Ai4iDataError("no failure with a TWF/HDF/PWF/OSF flag to learn modes from")
        model = _classifier(config.mode_params, config.seed, config.n_jobs)
        model.fit(x.iloc[rows], labels)
        return ModeModel("multiclass", {"all": model})
    models = {}
    for j, mode in enumerate(PREDICTABLE_MODES):
        model = _classifier(config.mode_params, config.seed, config.n_jobs)
        models[mode] = model.fit(x, flags[:, j])
    return ModeModel("ovr", models)


def mode_macro_f1(true_flags: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Macro-F1 over failures: over TWF/HDF/PWF/OSF (a mode neither present nor predicted
    is left out), and over all 5 with RNF, which is never predicted and always scores 0
    (also when no RNF failure is present: the conservative reading)."""
    from sklearn.metrics import f1_score

    with_rnf = np.column_stack([predicted, np.zeros(len(predicted), dtype=int)])
    per_mode = f1_score(true_flags[:, :4], predicted, average=None, zero_division=0)
    out = {f"mode_f1_{m}": float(v) for m, v in zip(PREDICTABLE_MODES, per_mode, strict=True)}
    return out | {
        "mode_macro_f1": float(
            f1_score(true_flags[:, :4], predicted, average="macro", zero_division=np.nan)
        ),
        "mode_macro_f1_with_rnf": float(
            f1_score(true_flags, with_rnf, average="macro", zero_division=0)
        ),
    }


def _mode_eval_rows(frame: pd.DataFrame) -> np.ndarray:
    """Failures that carry at least one mode flag (9 failures in the file carry none)."""
    flags = mode_targets(frame)
    return np.asarray((frame[TARGET].to_numpy() == 1) & (flags.sum(axis=1) > 0))


def cv_modes(
    features: pd.DataFrame, frame: pd.DataFrame, strategy: ModeStrategy, config: Ai4iConfig
) -> dict[str, float]:
    """Out-of-fold mode macro-F1 of a strategy over the training part's failures."""
    flags = mode_targets(frame)
    failed = frame[TARGET].to_numpy()
    stratum = failed * (1 + np.argmax(flags[:, :4], axis=1))  # no failure / first mode
    evaluate = _mode_eval_rows(frame)
    predicted = np.zeros((len(frame), len(PREDICTABLE_MODES)), dtype=int)
    for fit_idx, val_idx in _folds(stratum, config.folds, config.seed):
        model = fit_modes(
            features.iloc[fit_idx], flags[fit_idx, :4], failed[fit_idx], strategy, config
        )
        predicted[val_idx] = model.predict(features.iloc[val_idx])
    return mode_macro_f1(flags[evaluate], predicted[evaluate])


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------


def train_ai4i(
    train: pd.DataFrame, test: pd.DataFrame, config: Ai4iConfig | None = None
) -> Ai4iTraining:
    """CV on `train` (threshold, mode strategy), fit on all of `train`, score on `test`."""
    config = config or Ai4iConfig()
    started = time.perf_counter()
    x_train, x_test = feature_matrix(train), feature_matrix(test)
    y_train, y_test = train[TARGET].to_numpy(dtype=int), test[TARGET].to_numpy(dtype=int)
    oof = out_of_fold(x_train, y_train, config)
    threshold = choose_threshold(y_train, oof)
    model = _classifier(config.failure_params, config.seed, config.n_jobs).fit(x_train, y_train)
    holdout = binary_metrics(y_test, failure_proba(model, x_test), threshold)

    mode_cv: dict[str, dict[str, float]] = {
        s: cv_modes(x_train, train, s, config) for s in config.mode_strategies
    }
    strategy = max(config.mode_strategies, key=lambda s: mode_cv[s]["mode_macro_f1"])
    flags = mode_targets(train)[:, :4]
    modes = fit_modes(x_train, flags, y_train, strategy, config)
    evaluate = _mode_eval_rows(test)
    if evaluate.any():
        holdout |= mode_macro_f1(mode_targets(test)[evaluate], modes.predict(x_test[evaluate]))
    return Ai4iTraining(
        model=model,
        threshold=threshold,
        modes=modes,
        cv=binary_metrics(y_train, oof, threshold),
        holdout=holdout,
        mode_cv=mode_cv,
        train_features=x_train,
        test_features=x_test,
        test_target=y_test,
        config=config,
        fit_seconds=time.perf_counter() - started,
    )


def holdout_f1(model: Any, threshold: float, features: pd.DataFrame, y: np.ndarray) -> float:
    """F1 of any fitted classifier at its own threshold on held-out features."""
    return binary_metrics(y, failure_proba(model, features), threshold)["f1"]


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def register_ai4i(
    result: Ai4iTraining,
    *,
    tracking_uri: str,
    data_path: str | Path = "",
    name: str = MODEL_NAME,
) -> registry.RegisteredVersion:
    """Log the run (params, metrics, features, signature, example, reference sample, the
    failure-mode models as `failure_modes.json`) and register a version of `name`."""
    import tempfile

    config = result.config
    reference = result.train_features.sample(
        min(REFERENCE_ROWS, len(result.train_features)), random_state=config.seed
    ).reset_index(drop=True)
    example = reference.head(5)
    params: dict[str, Any] = {
        "model": "lightgbm_binary",
        **{f"failure_{k}": v for k, v in config.failure_params.items()},
        **{f"mode_{k}": v for k, v in config.mode_params.items()},
        "mode_strategy": result.modes.strategy,
        "seed": config.seed,
        "test_size": config.test_size,
        "folds": config.folds,
        "threshold": round(result.threshold, 6),
        "train_rows": len(result.train_features),
        "holdout_rows": len(result.test_features),
        "data": str(data_path),
    }
    tags = {
        "asset_type": ASSET_TYPE,
        "task": "failure",
        "dataset": "ai4i2020",
        "feature_set": machining.FEATURE_SET,
        registry.THRESHOLD_TAG: repr(result.threshold),
        "mode_strategy": result.modes.strategy,
        "holdout_split": f"stratified test_size={config.test_size} seed={config.seed}",
    }
    with tempfile.TemporaryDirectory(prefix="pdm-ai4i-") as tmp:
        modes_path = Path(tmp) / registry.MODES_ARTIFACT
        modes_path.write_text(json.dumps(result.modes.to_json()))
        return registry.log_and_register(
            result.model,
            name=name,
            flavor="lightgbm",
            params=params,
            metrics=result.metrics(),
            tags=tags,
            signature_input=example,
            signature_output=failure_proba(result.model, example),
            input_example=example,
            reference_sample=reference,
            features=list(machining.FEATURES),
            artifacts=[modes_path],
            tracking_uri=tracking_uri,
        )


def champion_evaluator(
    result: Ai4iTraining, tracking_uri: str, echo: Callable[[str], None] = lambda _s: None
) -> Callable[[registry.RegisteredVersion], float]:
    """Score the champion on the candidate's held-out split, at the champion's threshold."""

    def evaluate(champion: registry.RegisteredVersion) -> float:
        try:
            loaded = registry.load_version(champion, tracking_uri)
            threshold = float(champion.tags.get(registry.THRESHOLD_TAG, "0.5"))
            names = champion.tags.get("features", ",".join(machining.FEATURES)).split(",")
            score = holdout_f1(
                loaded.model, threshold, result.test_features[names], result.test_target
            )
        except registry.RegistryUnavailable:
            raise
        except Exception as exc:  # an unusable champion cannot keep the alias
            echo(f"  champion v{champion.version} could not be evaluated ({exc!r})")
            return float("nan")
        echo(f"  champion v{champion.version} on the same held-out split: F1={score:.4f}")
        return score

    return evaluate


def promote_ai4i(
    result: Ai4iTraining,
    version: registry.RegisteredVersion,
    *,
    tracking_uri: str,
    echo: Callable[[str], None] = lambda _s: None,
) -> registry.PromotionDecision:
    """Move `champion` to `version` if its held-out F1 >= the champion's on the same split."""
    return registry.promote_if_better(
        version.name,
        version.version,
        metric=PROMOTION_METRIC,
        higher_is_better=True,
        evaluate_champion=champion_evaluator(result, tracking_uri, echo),
        candidate_score=result.holdout["f1"],
        tracking_uri=tracking_uri,
    )
