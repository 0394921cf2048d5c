"""Labels of a generated history, per row, from its machine's plan."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pdm_ml.training.simulated.config import SETTLE_ROWS, SimConfig
from pdm_ml.training.simulated.plans import MachinePlan


def label_frame(plan: MachinePlan, config: SimConfig) -> pd.DataFrame:
    """Per row: `active` (a real failure is developing or has happened, not yet repaired),
    `ttf_h` (hours to it, NaN when none), `target` (due within the horizon), `rul_h`
    (capped), `mode`, and `settling`: the first `SETTLE_ROWS` rows after a repair, whose
    windows still hold the failure (negatives in training, left out of the false-alarm
    budget and of every held-out score: what to say there is a matter of taste)."""
    rows = np.arange(plan.rows, dtype=np.float64)
    due = plan.failure_row
    if due is None or plan.inject_at is None:
        active = np.zeros(plan.rows, dtype=bool)
        ttf = np.full(plan.rows, np.nan)
    else:
        active = rows >= plan.inject_at
        if plan.repair_at is not None:
            active &= rows < plan.repair_at
        ttf = np.where(active, np.maximum(due - rows, 0.0) * config.period_s / 3600.0, np.nan)
    target = active & (np.nan_to_num(ttf, nan=np.inf) <= config.horizon_h)
    settling = np.zeros(plan.rows, dtype=bool)
    if plan.repair_at is not None:
        settling = (rows >= plan.repair_at) & (rows < plan.repair_at + SETTLE_ROWS)
    cap = config.rul_cap_h
    return pd.DataFrame(
        {
            "active": active,
            "ttf_h": ttf,
            "target": target.astype(np.int64),
            "rul_h": np.where(active, np.minimum(np.nan_to_num(ttf), cap), cap),
            "mode": np.where(active, plan.mode or "", ""),
            "settling": settling,
        }
    )
