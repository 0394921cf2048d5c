"""Simulated-fleet training (`pdm train simulated`): plans, labels, the one feature path, a
quick end-to-end fit, save/load, and serving the models through the prediction service's
pure functions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pdm_ml.training import simulated as sim
from pdm_ml.training.simulated import MachinePlan, SimConfig


@pytest.fixture(scope="module")
def trained() -> sim.SimTraining:
    return sim.train_simulated(SimConfig.quick("pump"))


def test_plans_are_deterministic_stratified_and_use_real_failure_modes() -> None:
    config = SimConfig("compressor", machines=60)
    plans = sim.plan_fleet(config)
    assert plans == sim.plan_fleet(config)
    assert plans != sim.plan_fleet(replace(config, seed=1))
    kinds = pd.Series([p.kind for p in plans]).value_counts().to_dict()
    assert kinds == {"failure": 39, "healthy": 12, "interference": 9}
    failing = [p for p in plans if p.kind == "failure"]
    assert {p.mode for p in failing} == {"bearing_degradation", "motor_overheating", "seal_leak"}
    assert all(p.mode == "sensor_interference" for p in plans if p.kind == "interference")
    low, high = config.ramp_snapshots
    assert all(low <= p.ramp_rows <= high for p in failing)
    assert all(p.inject_at is not None and p.rows > p.inject_at for p in failing)
    followed = [p for p in failing if not p.censored and p.repair_at is None]
    assert followed and all(p.rows >= (p.failure_row or 0) for p in followed)
    assert all(p.step_s == config.period_s for p in plans)
    assert all(p.rows < (p.failure_row or 0) for p in failing if p.censored)
    repaired = [p for p in failing if p.repair_at is not None]
    assert repaired and not any(p.censored for p in repaired)
    assert all(p.inject_at is not None and p.inject_at < p.repair_at < p.rows for p in repaired)
    assert any(p.repair_at < (p.failure_row or 0) for p in repaired)  # preventive
    assert any(p.repair_at >= (p.failure_row or 0) for p in repaired)  # after the failure
    # every stratum (kind, mode) has held-out machines, about a quarter of them
    strata = {p.stratum for p in plans}
    assert strata == {p.stratum for p in plans if p.holdout}
    assert 0.2 <= np.mean([p.holdout for p in plans]) <= 0.35
    assert any(p.switches for p in plans)
    assert all(rows == sorted(rows) for rows in ([r for r, _ in p.switches] for p in plans))
    with pytest.raises(sim.SimTrainError, match="milling"):
        sim.plan_fleet(SimConfig("milling"))


def test_labels_start_at_the_injection_and_count_hours_to_failure() -> None:
    config = SimConfig("pump", period_s=600.0, horizon_h=1.0, rul_cap_h=2.0)
    plan = MachinePlan(
        "pump-001", "failure", 40, "normal", 0.0, "seal_leak", "high", inject_at=10, ramp_rows=20.0
    )
    labels = sim.label_frame(plan, config)
    assert not labels["active"][:10].any() and labels["active"][10:].all()
    assert labels["ttf_h"][:10].isna().all()
    # row 10: 20 rows of 10 min to failure = 3.33 h; row 30 fails; after it 0
    assert labels["ttf_h"][10] == pytest.approx(20 * 600 / 3600)
    assert labels["ttf_h"][24] == pytest.approx(1.0) and labels["ttf_h"][35] == 0.0
    assert labels["target"].tolist() == [0] * 24 + [1] * 16  # due within 1 h from row 24
    assert labels["rul_h"][:10].tolist() == [2.0] * 10  # no developing failure: the cap
    assert labels["rul_h"][18] == pytest.approx(2.0) and labels["rul_h"][27] == pytest.approx(0.5)
    assert set(labels["mode"][10:]) == {"seal_leak"} and set(labels["mode"][:10]) == {""}
    healthy = sim.label_frame(MachinePlan("pump-002", "healthy", 5, "normal", 0.0), config)
    assert healthy["target"].sum() == 0 and (healthy["rul_h"] == 2.0).all()
    interfered = replace(plan, kind="interference", mode="sensor_interference")
    assert sim.label_frame(interfered, config)["target"].sum() == 0  # a sensor fault
    # repaired at row 26 (preventive): healthy again, the first 64 rows after it settling
    repaired = sim.label_frame(replace(plan, rows=100, repair_at=26), config)
    assert repaired["active"][10:26].all() and not repaired["active"][26:].any()
    assert (repaired["rul_h"][26:] == 2.0).all() and repaired["target"][26:].sum() == 0
    assert repaired["settling"].tolist() == [False] * 26 + [True] * 64 + [False] * 10


def test_an_injected_failure_is_the_only_difference_from_a_healthy_twin() -> None:
    config = SimConfig("pump")
    plan = MachinePlan(
        "pump-007", "failure", 120, "normal", 3600.0, "bearing_degradation", "critical",
        inject_at=40, ramp_rows=60.0,
    )  # fmt: skip
    failing = sim.simulate(plan, config)
    healthy = sim.simulate(
        replace(plan, kind="healthy", mode=None, inject_at=None, ramp_rows=0.0), config
    )
    sensors = list(sim.sensors_of("pump"))
    assert np.isfinite(failing[sensors].to_numpy()).all()
    assert failing[sensors][:40].equals(healthy[sensors][:40])
    assert failing["vibration"][105:].mean() > 4 * healthy["vibration"][105:].mean()
    assert failing["target"][100:].all() and failing["rul_h"].iloc[-1] == 0.0


def test_training_and_serving_features_are_the_same_numbers() -> None:
    config = SimConfig("motor")
    plan = MachinePlan(
        "motor-001", "failure", 150, "high_load", 0.0, "motor_overheating", "high",
        inject_at=30, ramp_rows=100.0, switches=((70, "precision"),),
    )  # fmt: skip
    history = sim.simulate(plan, config)
    sensors = sim.sensors_of("motor")
    every = sim.featurise(history, sensors, config.windows)
    for end in (1, 4, 5, 63, 64, 65, 150):
        latest = sim.latest_features(history.iloc[:end], sensors, config.windows)
        assert list(latest) == list(every.columns)
        np.testing.assert_array_equal(np.array(list(latest.values())), every.iloc[end - 1])


def test_decision_threshold_respects_the_false_alarm_budget() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(10_000, dtype=np.int64), np.ones(500, dtype=np.int64)]
    proba = np.r_[rng.beta(1, 8, 10_000), rng.beta(6, 2, 500)]
    healthy = y == 0
    cut, f1_cut = sim.choose_cut(y, proba, healthy, 1e-3)
    assert cut >= f1_cut
    assert np.mean(proba[healthy] > cut) <= 1e-3
    lenient, _ = sim.choose_cut(y, proba, healthy, 0.5)
    assert lenient == f1_cut  # a loose budget leaves the F1 cut alone
    few = sim.choose_cut(y[9_000:], proba[9_000:], healthy[9_000:], 1e-4)
    assert few[0] == few[1]  # 1,000 healthy rows cannot measure 1e-4: the F1 cut stands


def test_quick_training_gives_both_models_and_held_out_metrics(trained: sim.SimTraining) -> None:
    f, r = trained.failure_metrics, trained.rul_metrics
    for key in ("holdout_pr_auc", "holdout_roc_auc", "holdout_f1", "cv_pr_auc", "threshold"):
        assert 0.0 <= f[key] <= 1.0, key
    assert f["holdout_pr_auc"] > 0.5 and f["holdout_roc_auc"] > 0.7
    assert 0.0 <= f["holdout_failures_alarmed"] <= 1.0
    assert sim.RUL_METRIC in r and r[sim.RUL_METRIC] >= 0.0
    assert 0.0 <= r["holdout_coverage"] <= 1.0
    model = trained.failure
    assert model.modes == ("bearing_degradation", "motor_overheating", "seal_leak")
    assert model.features == tuple(trained.train_features.columns)
    # held-out machines never trained on
    held = set(trained.holdout[sim.ASSET])
    assert held == {p.asset_id for p in trained.plans if p.holdout}
    assert not held & {p.asset_id for p in trained.plans if not p.holdout}


def test_models_survive_save_and_load(trained: sim.SimTraining, tmp_path: Path) -> None:
    rows = trained.train_features.head(50)
    trained.failure.save(tmp_path / "failure")
    trained.rul.save(tmp_path / "rul")
    failure = sim.load_model(tmp_path / "failure")
    rul = sim.load_model(tmp_path / "rul")
    assert isinstance(failure, sim.SimFailureModel) and isinstance(rul, sim.SimRulModel)
    assert failure.threshold == trained.failure.threshold
    pd.testing.assert_frame_equal(failure.predict(rows), trained.failure.predict(rows))
    pd.testing.assert_frame_equal(rul.predict(rows), trained.rul.predict(rows))
    assert rul.rul_unit == "hours" and rul.rul_cap == trained.config.rul_cap_h
    adapter = sim._load_pyfunc(str(tmp_path / "rul"))
    assert adapter.get_raw_model().features == rul.features
    with pytest.raises(ValueError, match="not a failure model"):
        sim.SimFailureModel.load(tmp_path / "rul")


def _histories(rows: int = 64, period_s: float = 60.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A pump whose bearing fails within the last hour of its history, and its healthy twin."""
    config = SimConfig("pump", period_s=period_s)
    plan = MachinePlan(
        "pump-900", "failure", rows, "normal", 0.0, "bearing_degradation", "critical",
        inject_at=4, ramp_rows=rows - 10.0,
    )  # fmt: skip
    healthy = replace(plan, kind="healthy", mode=None, inject_at=None, ramp_rows=0.0)
    sensors = list(sim.sensors_of("pump"))
    return sim.simulate(plan, config)[sensors], sim.simulate(healthy, config)[sensors]


def test_a_failing_history_scores_higher_and_shorter_than_its_healthy_twin(
    trained: sim.SimTraining,
) -> None:
    from pdm_prediction.serving import (
        Confidence,
        HistoryModel,
        history_features,
        predict_failures,
        predict_rul,
    )

    failing, healthy = _histories()
    failure, rul = trained.failure, trained.rul
    assert isinstance(failure, HistoryModel) and isinstance(rul, HistoryModel)
    rows = [
        history_features(failure, frame.to_dict("records"), Confidence(), 5)
        for frame in (failing, healthy)
    ]
    bad, good = predict_failures(failure, rows, k=3)
    assert bad.probability > good.probability and bad.predicted and not good.predicted
    assert bad.probability > 0.5 and good.probability < 0.5
    assert "24 h" in bad.horizon and bad.modes_basis == "conditional_on_failure"
    assert max(bad.modes, key=bad.modes.__getitem__) == "bearing_degradation"
    assert len(bad.factors) == 3 and all(f.value is not None for f in bad.factors)
    rul_bad = predict_rul(rul, failing.to_dict("records"), Confidence(), 5)
    rul_good = predict_rul(rul, healthy.to_dict("records"), Confidence(), 5)
    assert rul_bad["p50"] < rul_good["p50"]
    assert rul_bad["p10"] <= rul_bad["p50"] <= rul_bad["p90"] <= rul.cap_h


def test_serving_checks_history_of_a_simulated_model(trained: sim.SimTraining) -> None:
    from pdm_prediction.serving import (
        DEFAULT_ROUTES,
        Confidence,
        ServingError,
        health,
        history_columns,
        history_features,
        route,
        rul_cap,
        rul_unit,
        sampling_period,
    )

    assert route("pump", DEFAULT_ROUTES) == {"failure": "failure-pump", "rul": "rul-pump"}
    assert route("compressor", DEFAULT_ROUTES)["rul"] == "rul-compressor"
    model = trained.failure
    assert history_columns(model) == ("vibration", list(sim.sensors_of("pump")))
    _, healthy = _histories(rows=20)
    records = healthy.to_dict("records")
    with pytest.raises(ServingError) as info:
        history_features(model, records[:3], Confidence(), 5)
    assert info.value.code == "insufficient_history"
    lacking = [{"vibration": r["vibration"], "flow": r["flow"]} for r in records]
    with pytest.raises(ServingError) as info:
        history_features(model, lacking, Confidence(), 5)
    assert info.value.code == "missing_sensors" and "motor_current" in info.value.missing
    confidence = Confidence()
    one_gone = [{k: v for k, v in r.items() if k != "flow"} for r in records]
    features = history_features(model, one_gone, confidence, 5)
    assert np.isnan(features["flow__last"])
    assert any("flow" in r for r in confidence.reasons)
    assert any("20 rows" in r for r in confidence.reasons)  # shorter than the 64-row window
    # stored history sampled at 1 s for a model trained at 60 s: confidence drops, once
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = [start + timedelta(seconds=i) for i in range(20)]
    fast = Confidence()
    assert sampling_period(fast, times, model) == pytest.approx(1.0)
    sampling_period(fast, times, trained.rul)  # the RUL part reads the same rows
    assert fast.value == pytest.approx(0.7) and len(fast.reasons) == 1
    steady = Confidence()
    sampling_period(steady, [start + timedelta(minutes=i) for i in range(20)], model)
    assert steady.value == 1.0
    # health uses the RUL model's own cap (hours), not the C-MAPSS 125 cycles
    assert rul_cap(trained.rul) == trained.config.rul_cap_h and rul_unit(trained.rul) == "hours"
    score, _ = health(0.0, trained.config.rul_cap_h / 2, cap=rul_cap(trained.rul))
    assert score == pytest.approx(75.0)


def test_the_command_is_registered_and_refuses_unsimulated_types() -> None:
    import typer
    from typer.testing import CliRunner

    from pdm_tools.train import simulated as simulated_cli

    app = typer.Typer()
    simulated_cli.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `simulated` a subcommand
    result = CliRunner().invoke(app, ["simulated", "--asset-type", "milling"])
    assert result.exit_code == 2 and "pdm train ai4i" in result.output
    result = CliRunner().invoke(app, ["simulated", "--help"])
    assert result.exit_code == 0 and "--quick" in result.output and "--machines" in result.output
