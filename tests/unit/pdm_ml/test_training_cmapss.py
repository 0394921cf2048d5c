"""C-MAPSS RUL pipeline: metrics by hand, target, folds by engine, a fast end-to-end fit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pdm_ml.training import cmapss
from pdm_ml.training.cmapss import (
    CmapssData,
    RulConfig,
    RulModel,
    capped_rul,
    conformal_margin,
    engine_folds,
    phm08_score,
    rmse,
    train_rul,
)
from tests.datasets import DATA_DIR, require

CMAPSS_DIR = DATA_DIR / "cmapss"
FAST = RulConfig(windows=(5, 10), n_splits=3, n_estimators=40, learning_rate=0.1)


def test_phm08_score_on_hand_values() -> None:
    # early by 13: e^1 - 1; late by 10: e^1 - 1; exact: 0
    assert phm08_score([50.0], [37.0]) == pytest.approx(math.e - 1)
    assert phm08_score([50.0], [60.0]) == pytest.approx(math.e - 1)
    assert phm08_score([50.0], [50.0]) == 0.0
    # it is a sum, and late costs more than early by the same amount
    total = phm08_score([100.0, 100.0], [80.0, 120.0])
    assert total == pytest.approx((math.exp(20 / 13) - 1) + (math.exp(2.0) - 1))
    assert phm08_score([10.0], [15.0]) > phm08_score([10.0], [5.0])


def test_rmse_by_hand() -> None:
    assert rmse([0.0, 0.0], [3.0, -4.0]) == pytest.approx(math.sqrt(12.5))


def test_rul_is_capped_piecewise_linear() -> None:
    frame = pd.DataFrame({"unit": [1] * 200 + [2] * 3, "cycle": [*range(1, 201), 1, 2, 3]})
    y = train_rul(frame, cap=125)
    assert y[0] == 125.0 and y[199] == 0.0 and y[198] == 1.0
    assert y[200:].tolist() == [2.0, 1.0, 0.0]
    assert np.all(np.diff(y[:200]) <= 0)
    assert capped_rul([7, 125, 145]).tolist() == [7.0, 125.0, 125.0]


def test_group_folds_never_split_an_engine() -> None:
    units = np.repeat(np.arange(1, 12), np.arange(5, 16))
    folds = engine_folds(units, 5)
    assert len(folds) == 5
    seen: set[int] = set()
    for fit_idx, val_idx in folds:
        assert not set(units[fit_idx]) & set(units[val_idx])
        seen |= set(units[val_idx])
    assert seen == set(units.tolist())


def test_conformal_margin_reaches_coverage() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=2000)
    low, high = np.full(2000, -0.5), np.full(2000, 0.5)  # far too narrow for 80%
    margin = conformal_margin(y, low, high, 0.8)
    assert margin > 0
    assert np.mean((y >= low - margin) & (y <= high + margin)) == pytest.approx(0.8, abs=0.01)


def _few_engines(units: int = 12) -> CmapssData:
    require(CMAPSS_DIR / "train_FD001.txt")
    data = cmapss.load_subset(CMAPSS_DIR, "FD001")
    train = data.train[data.train["unit"] <= units]
    test = data.test[data.test["unit"] <= units // 2]
    return CmapssData("FD001", train, test, data.test_rul.loc[: units // 2])


def test_load_subset_shapes() -> None:
    require(CMAPSS_DIR / "train_FD001.txt")
    data = cmapss.load_subset(CMAPSS_DIR, "FD001")
    assert data.train.shape == (20631, 26) and data.test.shape == (13096, 26)
    assert len(data.test_rul) == 100 and data.test_rul.loc[1] == 112.0


def test_fast_train_gives_finite_metrics_and_round_trips(tmp_path: Path) -> None:
    training = cmapss.train_cmapss(_few_engines(), FAST)
    ev = training.evaluation
    assert ev.units == 6
    assert all(math.isfinite(v) for v in ev.metrics().values())
    assert all(math.isfinite(v) for v in training.cv.values())
    assert "s1" not in training.model.sensors  # constant in FD001, measured not listed
    model = training.model
    model.save(tmp_path / "m")
    loaded = RulModel.load(tmp_path / "m")
    test = training.test
    pd.testing.assert_frame_equal(loaded.predict_units(test), model.predict_units(test))
    quantiles = loaded.predict_units(test)
    assert (quantiles["p10"] <= quantiles["p50"]).all()
    assert (quantiles["p50"] <= quantiles["p90"]).all()
    # serving one engine's raw history = the batch prediction at its last cycle
    one = test[test["unit"] == 3]
    assert loaded.predict_history(one) == pytest.approx(quantiles.loc[3].to_dict())


def test_mondrian_calibration_covers_each_bin() -> None:
    rng = np.random.default_rng(1)
    p50 = rng.uniform(0, 125, 4000)
    y = p50 + rng.normal(0, 1.0 + p50 / 10.0)  # noisier where RUL is larger
    raw = np.column_stack([p50 - 2.0, p50, p50 + 2.0])
    edges, margins = cmapss.conformal_bins(y, raw, 0.8, bins=4)
    assert len(edges) == 3 and len(margins) == 4 and margins[0] < margins[-1]
    out = cmapss.quantile_frame(raw, margins, edges)
    inside = (y >= out["p10"]) & (y <= out["p90"])
    for b in range(4):
        in_bin = np.searchsorted(edges, p50, side="right") == b
        assert inside[in_bin].mean() == pytest.approx(0.8, abs=0.02)


def test_cli_registers_the_command() -> None:
    import typer
    from typer.testing import CliRunner

    from pdm_tools.train import cmapss as cmapss_cli

    app = typer.Typer()
    cmapss_cli.register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps Typer from collapsing the group
        pass

    result = CliRunner().invoke(app, ["cmapss", "--help"])
    assert result.exit_code == 0
    for option in ("--subset", "--data-dir", "--seed", "--no-promote", "--no-publish"):
        assert option in result.output
    from pdm_tools.paths import data_dir

    assert data_dir() / "cmapss" == cmapss_cli.DEFAULT_DATA_DIR
