"""`failure-milling` against a real MLflow server: register, promote, refuse a worse model,
and `pdm train ai4i` end to end (without Kafka: --no-publish)."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from pdm_common import registry
from pdm_ml.features import machining
from pdm_ml.training import ai4i
from pdm_tools.train.ai4i import register
from tests.datasets import DATA_DIR

DATA = DATA_DIR / "ai4i2020" / "ai4i2020.csv"
pytestmark = [
    pytest.mark.integration,
]
CONFIG = ai4i.Ai4iConfig(folds=3, n_jobs=1, mode_strategies=("multiclass",))


@pytest.fixture(scope="module")
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = ai4i.load_ai4i(DATA)
    small, _ = ai4i.split_holdout(frame, test_size=0.7, seed=1)  # 3,000 rows, stratified
    return ai4i.split_holdout(small, 0.25, seed=42)


def test_register_promote_and_refuse_a_worse_model(
    mlflow_uri: str, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    name = f"failure-it{uuid.uuid4().hex[:8]}"
    train, test = split
    good = ai4i.train_ai4i(train, test, CONFIG)
    first = ai4i.register_ai4i(good, tracking_uri=mlflow_uri, name=name)
    assert first.tags["task"] == "failure" and first.tags["asset_type"] == "milling"
    assert first.tags["dataset"] == "ai4i2020" and first.tags["feature_set"] == "machining:v1"
    assert first.tags["features"] == ",".join(machining.FEATURES)
    promoted = ai4i.promote_ai4i(good, first, tracking_uri=mlflow_uri)
    assert promoted.moved and promoted.champion_version == first.version
    assert promoted.candidate_score == pytest.approx(good.holdout["f1"])

    loaded = registry.load_champion(name, mlflow_uri)
    proba = loaded.model.predict_proba(good.test_features)[:, 1]
    assert np.allclose(proba, good.model.predict_proba(good.test_features)[:, 1])
    reference = registry.load_reference_sample(
        registry.get_version(name, tracking_uri=mlflow_uri), mlflow_uri
    )
    assert list(reference.columns) == list(machining.FEATURES)

    rng = np.random.default_rng(0)
    shuffled = train.assign(**{ai4i.TARGET: rng.permutation(train[ai4i.TARGET].to_numpy())})
    bad = ai4i.train_ai4i(shuffled, test, CONFIG)
    second = ai4i.register_ai4i(bad, tracking_uri=mlflow_uri, name=name)
    decision = ai4i.promote_ai4i(bad, second, tracking_uri=mlflow_uri)
    assert not decision.moved
    assert decision.champion_version == first.version
    assert decision.champion_score == pytest.approx(good.holdout["f1"])  # re-evaluated
    assert decision.candidate_score == pytest.approx(bad.holdout["f1"])
    assert decision.candidate_score < decision.champion_score

    tags = registry.get_version(name, version=second.version, tracking_uri=mlflow_uri).tags
    assert tags["promotion.decision"] == "rejected"
    assert float(tags["promotion.candidate_score"]) == pytest.approx(bad.holdout["f1"])
    assert float(tags["promotion.champion_score"]) == pytest.approx(good.holdout["f1"])
    assert registry.get_version(name, tracking_uri=mlflow_uri).version == first.version


def test_cli_trains_registers_and_promotes(
    mlflow_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = pd.read_csv(DATA, encoding="utf-8-sig")
    small = raw.groupby("Machine failure", group_keys=False).sample(frac=0.15, random_state=0)
    path = tmp_path / "ai4i_small.csv"
    small.to_csv(path, index=False)
    monkeypatch.setenv("PDM_MLFLOW_TRACKING_URI", mlflow_uri)
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """pdm train"""

    register(app)
    result = CliRunner().invoke(app, ["ai4i", "--data", str(path), "--no-publish"])
    assert result.exit_code == 0, result.output
    for step in ("[1/5] reading", "[2/5]", "[3/5] logging", "[4/5] comparing", "[5/5]"):
        assert step in result.output
    assert "held-out" in result.output and "failure-milling" in result.output

    missing = CliRunner().invoke(app, ["ai4i", "--data", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2
