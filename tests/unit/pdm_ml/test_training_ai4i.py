"""The AI4I 2020 pipeline on a stratified sample of the real CSV (no MLflow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pdm_ml.features import machining
from pdm_ml.training import ai4i
from tests.datasets import DATA_DIR, require

DATA = DATA_DIR / "ai4i2020" / "ai4i2020.csv"


@pytest.fixture(autouse=True)
def _needs_data() -> None:
    require(DATA)


CONFIG = ai4i.Ai4iConfig(folds=3, n_jobs=1)


def sample(frame: pd.DataFrame, rows: int, seed: int = 0) -> pd.DataFrame:
    """All failures in proportion: a stratified sample on the target."""
    keep, _ = ai4i.split_holdout(frame, test_size=1 - rows / len(frame), seed=seed)
    return keep


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return sample(ai4i.load_ai4i(DATA), 3000)


@pytest.fixture(scope="module")
def trained(frame: pd.DataFrame) -> ai4i.Ai4iTraining:
    train, test = ai4i.split_holdout(frame, 0.25, seed=42)
    return ai4i.train_ai4i(train, test, CONFIG)


def test_loader_renames_and_keeps_labels() -> None:
    frame = ai4i.load_ai4i(DATA)
    assert len(frame) == 10_000
    assert int(frame[ai4i.TARGET].sum()) == 339
    assert set(machining.SENSORS) <= set(frame.columns)


def test_no_leakage_column_is_a_feature(frame: pd.DataFrame, trained: ai4i.Ai4iTraining) -> None:
    columns = set(ai4i.feature_matrix(frame).columns)
    assert columns == set(machining.FEATURES)
    assert not columns & set(ai4i.LEAKAGE_COLUMNS)
    assert list(trained.model.feature_name_) == list(machining.FEATURES)


def test_pipeline_trains_with_sane_metrics(trained: ai4i.Ai4iTraining) -> None:
    assert 0.0 < trained.threshold < 1.0
    for metrics in (trained.cv, trained.holdout):
        assert metrics["roc_auc"] > 0.9
        assert metrics["f1"] > 0.5
        assert 0.0 < metrics["pr_auc"] <= 1.0
    assert trained.holdout["mode_macro_f1"] > 0.6
    assert trained.holdout["mode_macro_f1_with_rnf"] <= trained.holdout["mode_macro_f1"]
    assert trained.modes.strategy in CONFIG.mode_strategies
    metrics = trained.metrics()
    assert {"cv_f1", "holdout_f1", "holdout_roc_auc", "holdout_pr_auc", "threshold"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())


def test_threshold_and_cv_never_see_the_held_out_labels(frame: pd.DataFrame) -> None:
    train, test = ai4i.split_holdout(frame, 0.25, seed=42)
    config = ai4i.Ai4iConfig(folds=3, n_jobs=1, mode_strategies=("multiclass",))
    flipped = test.assign(**{ai4i.TARGET: 1 - test[ai4i.TARGET]})
    a = ai4i.train_ai4i(train, test, config)
    b = ai4i.train_ai4i(train, flipped, config)
    assert a.threshold == b.threshold
    assert a.cv == b.cv
    assert a.holdout["f1"] != b.holdout["f1"]


def test_top_contributions_name_real_features(trained: ai4i.Ai4iTraining) -> None:
    rows = trained.test_features.iloc[:5]
    explained = machining.top_contributions(trained.model, rows, k=3)
    assert len(explained) == 5
    for top in explained:
        assert len(top) == 3
        assert {name for name, _ in top} <= set(machining.FEATURES)
        sizes = [abs(v) for _, v in top]
        assert sizes == sorted(sizes, reverse=True)
    # serving path: one features_row dict gives the same explanation as the frame row
    record = rows.iloc[0].to_dict()
    assert machining.top_contributions(trained.model, record, k=3)[0] == explained[0]


def test_explanations_sum_to_the_log_odds(trained: ai4i.Ai4iTraining) -> None:
    rows = trained.test_features.iloc[:20]
    contrib = trained.model.predict(rows, pred_contrib=True)
    raw = trained.model.predict(rows, raw_score=True)
    assert np.allclose(np.asarray(contrib).sum(axis=1), raw)


def test_mode_macro_f1_counts_rnf_as_unpredictable() -> None:
    true = np.array([[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 1]])
    predicted = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0]])
    scores = ai4i.mode_macro_f1(true, predicted)
    assert scores["mode_f1_TWF"] == 1.0
    assert scores["mode_macro_f1_with_rnf"] < scores["mode_macro_f1"]


def test_wrong_csv_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ai4i.Ai4iDataError, match="Machine failure"):
        ai4i.load_ai4i(path)
