"""The C-MAPSS RUL pipeline against a real MLflow server: register, promote, reject, load."""

from __future__ import annotations

import uuid

import pytest

from pdm_common import registry
from pdm_ml.training import cmapss
from pdm_ml.training.cmapss import CmapssData, RulConfig, RulModel
from tests.datasets import DATA_DIR, require

pytestmark = pytest.mark.integration

CMAPSS_DIR = DATA_DIR / "cmapss"
SMALL = RulConfig(windows=(5, 10), n_splits=3, n_estimators=40, learning_rate=0.1)
WORSE = RulConfig(windows=(5,), n_splits=3, n_estimators=2, learning_rate=0.05)


@pytest.fixture(scope="module")
def data() -> CmapssData:
    require(CMAPSS_DIR / "train_FD001.txt")
    full = cmapss.load_subset(CMAPSS_DIR, "FD001")
    train = full.train[full.train["unit"] <= 15]
    test = full.test[full.test["unit"] <= 20]
    return CmapssData("FD001", train, test, full.test_rul.loc[:20])


def test_register_promote_reject_and_load(data: CmapssData, mlflow_uri: str) -> None:
    name = f"rul-it{uuid.uuid4().hex[:8]}"
    good = cmapss.train_cmapss(data, SMALL)
    first = cmapss.register(good, mlflow_uri, name=name)
    assert first.tags["task"] == "rul" and first.tags["asset_type"] == "turbofan"
    assert first.tags["dataset"] == "cmapss-FD001" and first.tags["feature_set"] == "windows:v1"
    decision = cmapss.promote(good, first, mlflow_uri)
    assert decision.moved and decision.champion_version == first.version
    event = decision.to_event("pdm-train")
    assert event.model_name == name and event.metrics["candidate_test_rmse"] > 0

    worse = cmapss.train_cmapss(data, WORSE)
    assert worse.evaluation.rmse > good.evaluation.rmse
    second = cmapss.register(worse, mlflow_uri, name=name)
    rejected = cmapss.promote(worse, second, mlflow_uri)
    assert not rejected.moved and rejected.champion_version == first.version
    # the champion was re-evaluated on the same test split, not read from its run
    assert rejected.champion_score == pytest.approx(good.evaluation.rmse)

    loaded = registry.load_champion(name, mlflow_uri)
    assert loaded.version == first.version
    model = loaded.model
    assert isinstance(model, RulModel) and model.model_version == first.version
    quantiles = model.predict_units(data.test)
    assert len(quantiles) == 20
    assert (quantiles["p10"] <= quantiles["p50"]).all()
    assert (quantiles["p50"] <= quantiles["p90"]).all()
    sample = registry.load_reference_sample(loaded_version(name, mlflow_uri), mlflow_uri)
    assert list(sample.columns) == list(model.features)


def loaded_version(name: str, uri: str) -> registry.RegisteredVersion:
    return registry.get_version(name, tracking_uri=uri)
