"""Evaluation on held-out machines (also how a champion is re-scored), and the transfer
check on machines sampled like the live simulator."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from pdm_ml.training.ai4i import binary_metrics
from pdm_ml.training.cmapss import interval_coverage, rmse
from pdm_ml.training.simulated.config import (
    ASSET,
    MIN_ROWS,
    ROW,
    RUL_METRIC,
    SETTLE_ROWS,
    SimConfig,
)
from pdm_ml.training.simulated.generation import generate
from pdm_ml.training.simulated.models import SimFailureModel, SimRulModel
from pdm_ml.training.simulated.plans import MachinePlan


def evaluate_failure(
    model: SimFailureModel,
    holdout: pd.DataFrame,
    plans: Sequence[MachinePlan],
    config: SimConfig,
) -> dict[str, float]:
    """Row metrics (PR-AUC, ROC-AUC, F1 at the model's threshold), machine metrics (failures
    alarmed before they happen and how early, false alarms on healthy and interfered
    machines) and the failure-mode macro-F1 on the positive rows."""
    from sklearn.metrics import f1_score

    features = model.featurise(holdout)
    proba = model.probabilities(features)
    y = holdout["target"].to_numpy(dtype=np.int64)
    out = {f"holdout_{k}": v for k, v in binary_metrics(y, proba, model.threshold).items()}
    out |= alarm_metrics(holdout, proba >= model.threshold, plans, config)
    positive = y == 1
    if model.modes and positive.any():
        modes = model.mode_probabilities(features[positive])
        predicted = [max(m, key=m.__getitem__) for m in modes]
        truth = holdout.loc[positive, "mode"].tolist()
        out["holdout_mode_macro_f1"] = float(
            f1_score(truth, predicted, labels=list(model.modes), average="macro", zero_division=0)
        )
        out["holdout_mode_accuracy"] = float(np.mean(np.asarray(truth) == np.asarray(predicted)))
    return out


def alarm_metrics(
    holdout: pd.DataFrame,
    alarmed: npt.NDArray[np.bool_],
    plans: Sequence[MachinePlan],
    config: SimConfig,
) -> dict[str, float]:
    """What an operator sees, per machine: share of the failures (observed up to failure or
    repair) alarmed before they happened and at all (also after: a failed machine keeps
    running at failure level), the median lead time (hours, and as a share of the ramp),
    false-alarm snapshots per machine-day on rows with no developing failure, and repaired
    machines still alarmed once their 64-snapshot window holds only repaired rows."""
    by_id = {p.asset_id: p for p in plans}
    frame = holdout.assign(alarmed=alarmed)
    leads_h: list[float] = []
    lead_shares: list[float] = []
    failures = 0
    ever = 0
    healthy_hit: list[bool] = []
    interfered_hit: list[bool] = []
    repaired_hit: list[bool] = []
    for asset_id, rows in frame.groupby(ASSET, sort=False):
        plan = by_id[str(asset_id)]
        due = plan.failure_row
        prevented = plan.repair_at is not None and due is not None and plan.repair_at < due
        if plan.kind == "failure" and not plan.censored and not prevented:
            failures += 1
            ever += bool((rows["active"] & rows["alarmed"]).any())
            before = rows[rows["active"] & (rows["ttf_h"] > 0) & rows["alarmed"]]
            if len(before):
                lead = float(before["ttf_h"].max())
                leads_h.append(lead)
                lead_shares.append(lead / (plan.ramp_rows * config.period_s / 3600.0))
        elif plan.kind == "healthy":
            healthy_hit.append(bool(rows["alarmed"].any()))
        elif plan.kind == "interference":
            interfered_hit.append(bool(rows["alarmed"].any()))
        if plan.repair_at is not None:
            later = rows[ROW] >= plan.repair_at + SETTLE_ROWS
            repaired_hit.append(bool(rows.loc[later, "alarmed"].any()))
    negative = frame[~frame["active"].astype(bool)]
    days = len(negative) * config.period_s / 86_400.0
    return {
        "holdout_failures_alarmed": _share(len(leads_h), failures),
        "holdout_failures_alarmed_ever": _share(ever, failures),
        "holdout_lead_h_median": _median(leads_h),
        "holdout_lead_share_median": _median(lead_shares),
        "holdout_false_alarms_per_day": _share(int(negative["alarmed"].sum()), days),
        "holdout_healthy_machines_alarmed": _share(sum(healthy_hit), len(healthy_hit)),
        "holdout_interference_machines_alarmed": _share(sum(interfered_hit), len(interfered_hit)),
        "holdout_repaired_machines_alarmed": _share(sum(repaired_hit), len(repaired_hit)),
    }


def _share(count: float, total: float) -> float:
    return float(count / total) if total else float("nan")


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if len(values) else float("nan")


def evaluate_rul(model: SimRulModel, holdout: pd.DataFrame) -> dict[str, float]:
    """Errors of p50 (hours) on held-out rows, split into rows with a developing failure
    (true RUL under the cap: RMSE, MAE, p10-p90 coverage and width) and the other rows
    (RMSE; mean p50). The promotion metric `RUL_METRIC` weighs the two halves equally,
    sqrt((MSE_degrading + MSE_other) / 2): a model that calls every machine about to fail
    must not win on the degrading rows alone, nor one that calls every machine healthy win
    on a mostly healthy fleet."""
    pred = model.predict(model.featurise(holdout))
    y = holdout["rul_h"].to_numpy(dtype=np.float64)
    degrading = holdout["active"].to_numpy(dtype=bool) & (y < model.cap_h)
    out = {"holdout_rmse_all_h": rmse(y, pred["p50"])}
    if degrading.any():
        p = pred[degrading]
        out |= {
            "holdout_rmse_degrading_h": rmse(y[degrading], p["p50"]),
            "holdout_mae_degrading_h": float(np.mean(np.abs(y[degrading] - p["p50"]))),
            "holdout_coverage": interval_coverage(y[degrading], p["p10"], p["p90"]),
            "holdout_mean_width_h": float((p["p90"] - p["p10"]).mean()),
        }
    if (~degrading).any():
        out |= {
            "holdout_rmse_other_h": rmse(y[~degrading], pred.loc[~degrading, "p50"]),
            "holdout_other_p50_mean_h": float(pred.loc[~degrading, "p50"].mean()),
        }
    if degrading.any() and (~degrading).any():
        mse = (out["holdout_rmse_degrading_h"] ** 2 + out["holdout_rmse_other_h"] ** 2) / 2
        out[RUL_METRIC] = math.sqrt(mse)
    return out


def transfer_check(
    failure: SimFailureModel,
    rul: SimRulModel,
    *,
    period_s: float = 1.0,
    ramp_s: tuple[float, float] = (30.0, 600.0),
    machines: int = 40,
    healthy_s: tuple[float, float] = (3600.0, 7200.0),
    switch_every_s: float = 12 * 3600.0,
    seed: int = 1,
) -> dict[str, float]:
    """Score trained models on NEW machines sampled every `period_s` with ramps of
    `ramp_s` seconds (default: the live simulator at 1 Hz and the README's compressed
    failures, 30-600 s), healthy histories of `healthy_s` seconds and scenario changes
    every `switch_every_s` on average (the training rate in wall-clock time). Labels are in
    wall-clock hours of that sampling. Also reports the RUL p50 rescaled by
    `period_s / model period` (what a model of snapshot time would say)."""
    base = SimConfig(failure.asset_type, machines=machines, seed=seed)
    config = replace(
        base,
        period_s=period_s,
        sampling_s=None,
        ramp_snapshots=(ramp_s[0] / period_s, ramp_s[1] / period_s),
        healthy_rows=(round(healthy_s[0] / period_s), round(healthy_s[1] / period_s)),
        switch_every=switch_every_s / period_s,
        horizon_h=failure.horizon_h,
        rul_cap_h=rul.cap_h,
        holdout=1.0,
    )
    plans, history = generate(config)
    history = history[(history[ROW] >= MIN_ROWS - 1) & ~history["settling"]]
    out = evaluate_failure(failure, history, plans, config)
    out |= evaluate_rul(rul, history)
    scale = period_s / rul.period_s
    pred = rul.predict(rul.featurise(history))
    y = history["rul_h"].to_numpy(dtype=np.float64)
    degrading = history["active"].to_numpy(dtype=bool) & (y < rul.cap_h)
    if degrading.any():
        rescaled = pred["p50"][degrading] * scale
        out["holdout_rmse_degrading_h_rescaled"] = rmse(y[degrading], rescaled)
    return {k.removeprefix("holdout_"): v for k, v in out.items()}
