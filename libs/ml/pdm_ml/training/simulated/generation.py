"""Generated histories (pure: a history from a plan): the simulator's own machines stepped
through each plan, with the labels of every row."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd

from pdm_ml.training.simulated.config import ASSET, ROW, SimConfig, _check_type, sensors_of
from pdm_ml.training.simulated.labels import label_frame
from pdm_ml.training.simulated.plans import MachinePlan, plan_fleet

if TYPE_CHECKING:
    from pdm_ml.simulation.machines import AssetType

#: The first simulated timestamp (histories start at a random time of day after it).
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def simulate(plan: MachinePlan, config: SimConfig) -> pd.DataFrame:
    """One machine's history: sensor values per row, plus its labels (`label_frame`)."""
    from pdm_ml.simulation.machines import Machine

    asset_type = cast("AssetType", _check_type(config.asset_type))
    machine = Machine(plan.asset_id, asset_type, config.seed, plan.scenario)
    sensors = sensors_of(config.asset_type)
    values = np.empty((plan.rows, len(sensors)), dtype=np.float64)
    start = EPOCH + timedelta(seconds=plan.start_s)
    ramp = timedelta(seconds=plan.ramp_rows * plan.step_s)
    switches = dict(plan.switches)
    for i in range(plan.rows):
        t = start + timedelta(seconds=i * plan.step_s)
        if i in switches:
            machine.set_scenario(switches[i])
        if i == plan.inject_at and plan.mode is not None:
            machine.inject(plan.mode, plan.severity, t, ramp)
        if i == plan.repair_at and plan.mode is not None:
            machine.clear(plan.mode, t)
        step = machine.step(t)
        values[i] = [step[s] for s in sensors]
    frame = pd.DataFrame(values, columns=list(sensors))
    frame.insert(0, ROW, np.arange(plan.rows))
    frame.insert(0, ASSET, plan.asset_id)
    return pd.concat([frame, label_frame(plan, config)], axis=1)


def generate(
    config: SimConfig, echo: Callable[[str], None] = lambda _line: None
) -> tuple[list[MachinePlan], pd.DataFrame]:
    """Plans and the long frame of every machine's history (rows in time order)."""
    plans = plan_fleet(config)
    frames = [simulate(plan, config) for plan in plans]
    history = pd.concat(frames, ignore_index=True)
    history["holdout"] = history[ASSET].map({p.asset_id: p.holdout for p in plans})
    kinds = pd.Series([p.kind for p in plans]).value_counts().to_dict()
    echo(
        f"  {len(plans)} {config.asset_type}s ({', '.join(f'{v} {k}' for k, v in kinds.items())}"
        f"), {len(history):,} snapshots at one per {_sampling(config)} s "
        f"({len(history) * config.period_s / 86_400:,.0f} machine-days)"
    )
    return plans, history


def _sampling(config: SimConfig) -> str:
    if config.sampling_s is None:
        return f"{config.period_s:g}"
    low, high = config.sampling_s
    return f"{low:g}-{high:g} (labels: {config.period_s:g})"
